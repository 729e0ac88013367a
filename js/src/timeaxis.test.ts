import { describe, expect, it, vi } from "vitest";
import { attachPointer, clipWindow, DRAG_THRESHOLD_PX, TimeAxis, togglePick } from "./timeaxis";

describe("TimeAxis", () => {
  it("snaps to the nearest pickable step, ties to the earlier", () => {
    const axis = new TimeAxis([0, 300], [200, 0, 100, 300]);
    expect(axis.snap(40)).toBe(0);
    expect(axis.snap(50)).toBe(0);
    expect(axis.snap(51)).toBe(100);
    expect(axis.snap(-20)).toBe(0);
    expect(axis.snap(999)).toBe(300);
    expect(axis.snap(260)).toBe(300);
  });

  it("snaps to whole steps when there is nothing to snap to", () => {
    expect(new TimeAxis([0, 10], []).snap(3.6)).toBe(4);
  });

  it("notifies subscribers of each kind of change until they unsubscribe", () => {
    const axis = new TimeAxis([0, 100], []);
    const seen: string[] = [];
    const stop = axis.subscribe((change) => seen.push(change));
    axis.setHover(10);
    axis.setHover(10);
    axis.setWindow([20, 60]);
    axis.setWindow([20, 60]);
    axis.setPicks([5]);
    axis.setBrush([60, 20]);
    expect(axis.brush).toEqual([20, 60]);
    stop();
    axis.setHover(null);
    expect(seen).toEqual(["hover", "window", "picks", "brush"]);
  });

  it("scales the visible window onto pixels", () => {
    const axis = new TimeAxis([0, 1000], []);
    axis.setWindow([200, 400]);
    const sx = axis.scale(50, 200);
    expect(sx(200)).toBe(50);
    expect(sx(300)).toBe(150);
    expect(sx.invert(250)).toBe(400);
  });
});

describe("clipWindow and togglePick", () => {
  it("clips windows to the extent and falls back to it", () => {
    expect(clipWindow([-50, 40], [0, 100])).toEqual([0, 40]);
    expect(clipWindow([80, 30], [0, 100])).toEqual([30, 80]);
    expect(clipWindow([200, 300], [0, 100])).toEqual([0, 100]);
    expect(clipWindow(null, [0, 100])).toEqual([0, 100]);
  });

  it("adds new picks at the end and removes repeated ones", () => {
    expect(togglePick([30, 10], 20)).toEqual([30, 10, 20]);
    expect(togglePick([30, 10, 20], 10)).toEqual([30, 20]);
  });
});

function pointer(type: string, clientX: number, button = 0): Event {
  return new PointerEvent(type, { clientX, button, pointerId: 1, bubbles: true });
}

describe("attachPointer", () => {
  function setup() {
    const target = document.createElement("div");
    // 200 px wide plot starting 100 px from the viewport's left edge.
    vi.spyOn(target, "getBoundingClientRect").mockReturnValue(
      DOMRect.fromRect({ x: 100, y: 0, width: 200, height: 80 }),
    );
    const axis = new TimeAxis([0, 400], [0, 100, 200, 300, 400]);
    const pick = vi.fn();
    const zoom = vi.fn();
    const detach = attachPointer(target, axis, { pick, zoom });
    return { target, axis, pick, zoom, detach };
  }

  it("hovers the snapped step under the pointer and clears it on leave", () => {
    const { target, axis } = setup();
    target.dispatchEvent(pointer("pointermove", 100 + 160)); // step 320 -> 300
    expect(axis.hover).toBe(300);
    target.dispatchEvent(new PointerEvent("pointerleave"));
    expect(axis.hover).toBeNull();
  });

  it("picks the snapped step on a click", () => {
    const { target, pick, zoom } = setup();
    target.dispatchEvent(pointer("pointerdown", 100 + 55)); // step 110 -> 100
    target.dispatchEvent(pointer("pointerup", 100 + 56));
    expect(pick).toHaveBeenCalledWith(100);
    expect(zoom).not.toHaveBeenCalled();
  });

  it("zooms into a dragged window and shows the brush meanwhile", () => {
    const { target, axis, pick, zoom } = setup();
    target.dispatchEvent(pointer("pointerdown", 100 + 150)); // step 300
    target.dispatchEvent(pointer("pointermove", 100 + 150 - DRAG_THRESHOLD_PX - 1));
    target.dispatchEvent(pointer("pointermove", 100 + 50)); // step 100
    expect(axis.brush).toEqual([100, 300]);
    target.dispatchEvent(pointer("pointerup", 100 + 50));
    expect(zoom).toHaveBeenCalledWith([100, 300]);
    expect(pick).not.toHaveBeenCalled();
    expect(axis.brush).toBeNull();
  });

  it("zooms out on double-click, ignores other buttons, and detaches", () => {
    const { target, pick, zoom, detach } = setup();
    target.dispatchEvent(new MouseEvent("dblclick"));
    expect(zoom).toHaveBeenCalledWith(null);
    target.dispatchEvent(pointer("pointerdown", 150, 2));
    target.dispatchEvent(pointer("pointerup", 150, 2));
    expect(pick).not.toHaveBeenCalled();
    detach();
    target.dispatchEvent(pointer("pointerdown", 150));
    target.dispatchEvent(pointer("pointerup", 150));
    expect(pick).not.toHaveBeenCalled();
  });
});
