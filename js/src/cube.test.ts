import { describe, expect, it } from "vitest";
import { colorOf } from "./canvas";
import {
  ACCURACY_STOPS,
  BLUE_STOPS,
  blueScale,
  bucketAt,
  CUBE_CLASS,
  type CubeState,
  correlationValue,
  cubeLayout,
  LAYOUT,
  piecewiseScale,
  renderCube,
  rowAt,
  rowNormalize,
  scrollRows,
  stepToX,
  subGrid,
  zoomWindow,
} from "./cube";
import { encode, FakeModel } from "./test_helpers";
import { TIME_AXIS_LAYOUT, timeAxisArea } from "./timeaxis";
import widget from "./widget";

describe("cube layout", () => {
  it("puts the top face above the front face on the same iteration axis", () => {
    const l = cubeLayout(800, 10, 5);
    expect(l.top.x).toBe(l.front.x);
    expect(l.top.width).toBe(l.front.width);
    expect(l.top.y + l.top.height).toBeLessThan(l.front.y);
    expect(l.top.height).toBe(5 * LAYOUT.classPx);
  });

  it("puts the right face beside the front face on the same layer axis, as deep as the top", () => {
    const l = cubeLayout(800, 10, 5);
    expect(l.right.y).toBe(l.front.y);
    expect(l.right.height).toBe(l.front.height);
    expect(l.right.height).toBe(10 * LAYOUT.layerPx);
    expect(l.right.x).toBeGreaterThan(l.front.x + l.front.width);
    expect(l.right.width).toBe(l.top.height);
    expect(l.right.x + l.right.width).toBeLessThanOrEqual(800);
  });

  it("caps the rows shown; the right face holds as many classes as the right margin", () => {
    const l = cubeLayout(800, 53, 1000);
    expect(l.layerRows).toBe(LAYOUT.maxLayerRows);
    const room = Math.floor((LAYOUT.right - LAYOUT.gap - LAYOUT.pad) / LAYOUT.classPx);
    expect(l.classRows).toBe(Math.min(room, LAYOUT.maxClassRows));
    expect(l.right.width).toBe(l.classRows * LAYOUT.classPx);
    expect(l.right.x + l.right.width).toBeLessThanOrEqual(800 - LAYOUT.pad);
    // A wider page widens the iteration axis, never the right face.
    const wide = cubeLayout(1600, 53, 1000);
    expect(wide.classRows).toBe(l.classRows);
    expect(wide.front.width).toBe(l.front.width + 800);
  });

  it("puts the iteration axis on the shared time-axis plot area", () => {
    for (const width of [640, 800, 1234]) {
      const l = cubeLayout(width, 10, 30);
      const area = timeAxisArea(width);
      for (const face of [l.top, l.front]) {
        expect(face.x).toBe(TIME_AXIS_LAYOUT.left);
        expect(face.x).toBe(area.left);
        expect(face.x + face.width).toBe(width - TIME_AXIS_LAYOUT.right);
      }
    }
  });
});

describe("shared-axis scrolling", () => {
  it("clamps a row axis inside its total", () => {
    const axis = { offset: 0, visible: 10, total: 25 };
    expect(scrollRows(axis, 3).offset).toBe(3);
    expect(scrollRows(axis, 100).offset).toBe(15);
    expect(scrollRows(axis, -5).offset).toBe(0);
    expect(scrollRows({ offset: 0, visible: 10, total: 4 }, 3).offset).toBe(0);
  });

  it("maps a pixel of either face to the same scrolled row", () => {
    const axis = scrollRows({ offset: 0, visible: 10, total: 25 }, 7);
    // The front face's y and the right face's y hit the same layer; the top face's y and the
    // right face's x hit the same class (one row per classPx on both).
    expect(rowAt(axis, 0, 12)).toBe(7);
    expect(rowAt(axis, 12 * 3 + 5, 12)).toBe(10);
    expect(rowAt(axis, 12 * 10, 12)).toBeNull();
    expect(rowAt(axis, -1, 12)).toBeNull();
    expect(rowAt({ offset: 0, visible: 10, total: 2 }, 30, 12)).toBeNull();
  });

  it("maps time between pixels, buckets and steps", () => {
    const starts = [0, 100, 200, 300];
    const stops = [99, 199, 299, 399];
    expect(bucketAt(0, 400, 4)).toBe(0);
    expect(bucketAt(399.9, 400, 4)).toBe(3);
    expect(bucketAt(400, 400, 4)).toBeNull();
    expect(stepToX(200, starts, stops, 400)).toBe(200);
    expect(stepToX(250, starts, stops, 400)).toBe(250);
    expect(stepToX(400, starts, stops, 400)).toBeNull();
    expect(stepToX(-1, starts, stops, 400)).toBeNull();
  });

  it("zooms a step window around the pointer and stays inside the run", () => {
    expect(zoomWindow([0, 1000], [0, 1000], 0.5, 0.5)).toEqual([250, 750]);
    expect(zoomWindow([0, 1000], [0, 1000], 0, 0.5)).toEqual([0, 500]);
    expect(zoomWindow([800, 1000], [0, 1000], 1, 2)).toEqual([600, 1000]);
    expect(zoomWindow([0, 1000], [0, 1000], 0.5, 1.25)).toBeNull();
    expect(zoomWindow([10, 12], [0, 1000], 0.5, 0.1, 4)).toEqual([9, 13]);
  });
});

describe("colours", () => {
  it("the blue scale runs light to dark over 1..max and leaves 0 transparent", () => {
    const scale = blueScale(8);
    const light = colorOf(scale, 1);
    const dark = colorOf(scale, 8);
    expect(light).toEqual(BLUE_STOPS[0]);
    expect(dark).toEqual(BLUE_STOPS[BLUE_STOPS.length - 1]);
    const lum = (c: readonly number[]) => (c[0] as number) + (c[1] as number) + (c[2] as number);
    let previous = Number.POSITIVE_INFINITY;
    for (let v = 1; v <= 8; v++) {
      const c = colorOf(scale, v);
      expect(c[2]).toBeGreaterThanOrEqual(c[0] as number); // blue dominates
      expect(lum(c)).toBeLessThanOrEqual(previous);
      previous = lum(c);
    }
    expect(colorOf(scale, correlationValue(0))[3]).toBe(0);
    expect(correlationValue(3)).toBe(3);
    expect(colorOf(blueScale(0), 1)[3]).toBe(255);
  });

  it("the accuracy scale has DeepTracker's stops at their positions", () => {
    const scale = piecewiseScale([0, 1], ACCURACY_STOPS, 1001);
    expect(colorOf(scale, 0)).toEqual([0xdd, 0x26, 0x1c, 255]);
    expect(colorOf(scale, 0.5)).toEqual([0xff, 0xff, 0xbf, 255]);
    expect(colorOf(scale, 0.52)).toEqual([0xd9, 0xef, 0x8b, 255]);
    expect(colorOf(scale, 1)).toEqual([0x0e, 0x92, 0x47, 255]);
  });

  it("normalises each layer on its own log range and skips empty cells", () => {
    const out = rowNormalize([1, 10, 100, 5, 5, Number.NaN], 2, 3);
    expect(Array.from(out.slice(0, 3))).toEqual([0, 0.5, 1]);
    // One outlier out of 101 values does not take the whole range.
    const spiky = rowNormalize(
      [1e6, ...Array.from({ length: 100 }, (_, i) => 1 + i / 100)],
      1,
      101,
    );
    expect(spiky[0]).toBe(1);
    expect(spiky[100] as number).toBeGreaterThan(0.9);
    expect(out[3]).toBe(0.5);
    expect(Number.isNaN(out[5] as number)).toBe(true);
    expect(Array.from(subGrid([1, 2, 3, 4, 5, 6], 3, 1, 1, 1, 2))).toEqual([5, 6]);
  });
  it("takes a layer's range over the visible columns only when given them", () => {
    // Columns 1..2 visible: 10 → 0, 100 → 1; column 0 (1) and 3 (1000) clamp.
    const out = rowNormalize([1, 10, 100, 1000], 1, 4, 0, [1, 3]);
    expect(Array.from(out)).toEqual([0, 0, 1, 1]);
  });
});

function state(): CubeState {
  const i32 = (values: number[], shape?: number[]) =>
    encode(Int32Array.from(values), "int32", shape ?? [values.length]);
  const f32 = (values: number[], shape: number[]) =>
    encode(Float32Array.from(values), "float32", shape);
  return {
    _view: "cube",
    link_id: "",
    layer: null,
    class_: null,
    picked_steps: [],
    time_window: null,
    meta: {
      layers: ["conv1", "<b>conv2</b>"],
      n_classes: 3,
      step_range: [0, 300],
      correlation_max: 4,
      page_size: 2,
      k: 10,
      metric: "filter_cosine",
      preset: "sustained",
    },
    faces: {
      level: 0,
      bucket_step_start: i32([0, 100, 200, 300]),
      bucket_step_stop: i32([0, 100, 200, 300]),
      front: f32([1, 2, 3, 4, 5, 6, 7, 8], [2, 4]),
      offset: 0,
      classes: [2, 0],
      class_names: ["cat", "dog"],
      top: f32([0.1, 0.5, 0.9, 1, 0.2, 0.3, 0.4, 0.5], [2, 4]),
      flags: i32([0, 1, 1, 0, 0, 0, 0, 0], [2, 4]),
      correlation: i32([4, 0, 1, 2], [2, 2]),
      flag_steps: i32([100, 200]),
      flag_offsets: i32([0, 2, 2]),
    },
  };
}

describe("the cube view", () => {
  it("is registered, renders three faces and names as text", () => {
    const model = new FakeModel(state());
    const el = document.createElement("div");
    document.body.append(el);
    const cleanup = widget.render({ model: model as never, el } as never);
    const root = el.querySelector(`.${CUBE_CLASS}`) as HTMLElement;
    expect(root).not.toBeNull();
    expect(root.querySelectorAll("canvas.fs-face").length).toBe(3);
    const labels = [...root.querySelectorAll(".fs-cube-layer-labels .fs-cube-label")];
    expect(labels.map((n) => n.textContent)).toEqual(["conv1", "<b>conv2</b>"]);
    expect(root.querySelector("b")).toBeNull();
    expect(root.querySelector(".fs-cube-page")?.textContent).toBe("classes 1–2 of 3");
    cleanup();
    expect(el.children.length).toBe(0);
  });

  it("clicking labels sets layer, class and the class's flagged steps; Python's changes show", () => {
    const model = new FakeModel(state());
    const el = document.createElement("div");
    const cleanup = renderCube({ model: model as never, el });
    const root = el.querySelector(`.${CUBE_CLASS}`) as HTMLElement;
    (root.querySelectorAll(".fs-cube-layer-labels .fs-cube-label")[1] as HTMLElement).click();
    (root.querySelectorAll(".fs-cube-class-labels .fs-cube-label")[0] as HTMLElement).click();
    expect(model.get("layer")).toBe("<b>conv2</b>");
    expect(model.get("class_")).toBe(2);
    expect(model.get("picked_steps")).toEqual([100, 200]);
    expect(model.saves).toBe(2);
    expect(root.dataset.class).toBe("2");
    expect(root.querySelector(".fs-cube-selection")?.textContent).toContain("1 shared top filters");
    model.set("class_", 0);
    expect(root.dataset.class).toBe("0");
    expect(root.querySelector(".fs-cube-class-labels .fs-selected")?.textContent).toBe("dog (0)");
    cleanup();
  });

  it("zooms a level-0 page from what it holds: no request, exact buckets", () => {
    const model = new FakeModel(state());
    const el = document.createElement("div");
    const cleanup = renderCube({ model: model as never, el });
    const root = el.querySelector(`.${CUBE_CLASS}`) as HTMLElement;
    model.set("time_window", [100, 200]);
    expect(model.sent).toEqual([]); // every snapshot is in the page already
    expect(root.dataset.detail).toBe("local");
    expect(root.querySelector(".fs-cube-axis")?.textContent).toContain("step 100");
    expect(root.querySelector(".fs-cube-axis")?.textContent).toContain("step 200");
    // Another page of classes is not here: that one is asked for.
    (root.querySelector(".fs-cube-next") as HTMLElement).click();
    expect(model.sent).toHaveLength(1);
    expect((model.sent[0] as { params: Record<string, unknown> }).params).toMatchObject({
      offset: 2,
      start: 100,
      stop: 200,
    });
    cleanup();
  });

  it("asks the kernel when its page is bucketed", () => {
    const bucketed = state();
    bucketed.faces.level = 1;
    const model = new FakeModel(bucketed);
    const cleanup = renderCube({ model: model as never, el: document.createElement("div") });
    const before = model.sent.length;
    model.set("time_window", [100, 200]);
    expect(model.sent.length).toBe(before + 1);
    expect((model.sent.at(-1) as { method: string }).method).toBe("faces");
    cleanup();
  });
});
