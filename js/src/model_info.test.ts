import { afterEach, describe, expect, it, vi } from "vitest";
import { MODEL_INFO_CLASS, type ModelInfoState, renderModelInfo } from "./model_info";
import { encode, FakeModel } from "./test_helpers";
import { PICK_COLORS } from "./theme";
import widget from "./widget";

/** A payload shaped like `ModelInfo._series` for 0..100 steps with snapshots every 25. */
function state(): ModelInfoState {
  const steps = Int32Array.from({ length: 101 }, (_, i) => i);
  const snaps = Int32Array.from([0, 25, 50, 75, 100]);
  const f32 = (f: (i: number) => number, n: number) =>
    Float32Array.from({ length: n }, (_, i) => f(i));
  return {
    _view: "model_info",
    picked_steps: [],
    time_window: null,
    series: {
      step_range: [0, 100],
      snapshot_step: encode(snaps, "int32"),
      epoch_first_step: encode(Int32Array.from([0, 50]), "int32"),
      epoch: encode(Int32Array.from([0, 1]), "int32"),
      charts: [
        {
          key: "loss",
          title: "Loss",
          lines: [
            {
              name: "train",
              group: "train",
              x: encode(steps, "int32"),
              y: encode(
                f32((i) => 2 / (1 + i), 101),
                "float32",
                [101],
                5,
              ),
            },
            {
              name: "val",
              group: "val",
              x: encode(snaps, "int32"),
              y: encode(
                f32((i) => 1 / (1 + i), 5),
                "float32",
              ),
              markers: true,
            },
          ],
        },
        {
          key: "error",
          title: "Error",
          lines: [
            {
              name: "val",
              group: "val",
              x: encode(snaps, "int32"),
              y: encode(
                f32(() => 0.1, 5),
                "float32",
              ),
              markers: true,
            },
          ],
        },
        {
          key: "lr",
          title: "Learning rate",
          lines: [
            {
              name: "train",
              group: "train",
              x: encode(steps, "int32"),
              y: encode(
                f32(() => 0.01, 101),
                "float32",
              ),
            },
          ],
        },
      ],
    },
  };
}

function mount(initial = state()) {
  const model = new FakeModel(initial);
  const el = document.createElement("div");
  document.body.append(el);
  const cleanup = renderModelInfo({ model, el });
  const root = el.querySelector(`.${MODEL_INFO_CLASS}`) as HTMLElement;
  const plots = [...root.querySelectorAll<SVGRectElement>("rect.fs-overlay")];
  for (const plot of plots) {
    // Each plot area: 400 px wide from x = 60, so step s sits at 60 + 4 s.
    vi.spyOn(plot, "getBoundingClientRect").mockReturnValue(
      DOMRect.fromRect({ x: 60, y: 0, width: 400, height: 100 }),
    );
  }
  return { model, el, root, plots, cleanup };
}

function click(target: Element, clientX: number) {
  target.dispatchEvent(new PointerEvent("pointerdown", { clientX, button: 0, pointerId: 1 }));
  target.dispatchEvent(new PointerEvent("pointerup", { clientX, button: 0, pointerId: 1 }));
}

afterEach(() => {
  document.body.replaceChildren();
});

describe("renderModelInfo", () => {
  it("draws one chart per series chart, under a scoped root with shared styles", () => {
    const { root } = mount();
    expect(root.classList.contains("filterscope")).toBe(true);
    expect(
      [...root.querySelectorAll(".fs-chart")].map((c) => (c as HTMLElement).dataset.key),
    ).toEqual(["loss", "error", "lr"]);
    expect(root.querySelectorAll("path.fs-line")).toHaveLength(4);
    expect(document.querySelectorAll("style#filterscope-styles")).toHaveLength(1);
    mount();
    expect(document.querySelectorAll("style#filterscope-styles")).toHaveLength(1);
  });

  it("colours a group the same on every chart", () => {
    const { root } = mount();
    const strokes = [...root.querySelectorAll(".fs-chart")].map((chart) =>
      [...chart.querySelectorAll("path.fs-line")].map((p) => p.getAttribute("stroke")),
    );
    expect(strokes[1]?.[0]).toBe(strokes[0]?.[1]); // val
    expect(strokes[2]?.[0]).toBe(strokes[0]?.[0]); // train
  });

  it("sends a click as a toggled pick of the nearest snapshot step", () => {
    const { model, plots } = mount();
    click(plots[1] as Element, 60 + 4 * 60); // step 60 -> snapshot 50
    expect(model.get("picked_steps")).toEqual([50]);
    expect(model.saves).toBe(1);
    click(plots[2] as Element, 60 + 4 * 80); // step 80 -> 75
    expect(model.get("picked_steps")).toEqual([50, 75]);
    click(plots[0] as Element, 60 + 4 * 49); // 50 again: removed
    expect(model.get("picked_steps")).toEqual([75]);
    expect(model.saves).toBe(3);
  });

  it("marks picks set from Python on every chart and lists them as removable chips", () => {
    const { model, root } = mount();
    model.set("picked_steps", [25, 100]);
    for (const chart of root.querySelectorAll(".fs-chart")) {
      const lines = [...chart.querySelectorAll("line.fs-pick-line")];
      expect(lines.map((l) => l.getAttribute("data-step"))).toEqual(["25", "100"]);
      expect(lines.map((l) => l.getAttribute("stroke"))).toEqual([PICK_COLORS[0], PICK_COLORS[1]]);
    }
    const chips = [...root.querySelectorAll<HTMLButtonElement>("button.fs-pick")];
    expect(chips.map((c) => c.dataset.step)).toEqual(["25", "100"]);
    chips[0]?.click();
    expect(model.get("picked_steps")).toEqual([100]);
    expect(root.querySelectorAll("button.fs-pick")).toHaveLength(1);
  });

  it("draws the hover line on all charts at once, with the step and epoch", () => {
    const { root, plots } = mount();
    plots[0]?.dispatchEvent(new PointerEvent("pointermove", { clientX: 60 + 4 * 70 }));
    const hovers = root.querySelectorAll("line.fs-hover");
    expect(hovers).toHaveLength(3);
    expect(new Set([...hovers].map((h) => h.getAttribute("x1"))).size).toBe(1);
    expect(root.querySelector(".fs-step-readout")?.textContent).toBe("step 75 · epoch 1");
    plots[0]?.dispatchEvent(new PointerEvent("pointerleave"));
    expect(root.querySelectorAll("line.fs-hover")).toHaveLength(0);
  });

  it("zooms every chart through the model's time window", () => {
    const { model, root, plots } = mount();
    const reset = root.querySelector<HTMLButtonElement>("button.fs-reset");
    expect(reset?.hidden).toBe(true);
    const plot = plots[0] as Element;
    plot.dispatchEvent(
      new PointerEvent("pointerdown", { clientX: 60 + 4 * 20, button: 0, pointerId: 1 }),
    );
    plot.dispatchEvent(new PointerEvent("pointermove", { clientX: 60 + 4 * 60, pointerId: 1 }));
    plot.dispatchEvent(
      new PointerEvent("pointerup", { clientX: 60 + 4 * 60, button: 0, pointerId: 1 }),
    );
    expect(model.get("time_window")).toEqual([20, 60]);
    expect(reset?.hidden).toBe(false);
    const ticks = [...root.querySelectorAll("text.fs-tick-x")].map((t) => Number(t.textContent));
    expect(ticks.length).toBeGreaterThan(2);
    expect(Math.min(...ticks)).toBeGreaterThanOrEqual(20);
    expect(Math.max(...ticks)).toBeLessThanOrEqual(60);
    reset?.click();
    expect(model.get("time_window")).toBeNull();
    expect(reset?.hidden).toBe(true);
  });

  it("rebuilds when the series change and detaches everything on cleanup", () => {
    const { model, el, cleanup } = mount();
    const next = state();
    next.series.charts = next.series.charts.slice(0, 1);
    model.set("series", next.series);
    expect(el.querySelectorAll(".fs-chart")).toHaveLength(1);
    cleanup();
    expect(el.children).toHaveLength(0);
    expect(model.listenerCount()).toBe(0);
  });
});

describe("an empty run", () => {
  it("renders empty charts without errors", () => {
    const empty = state();
    const none = encode(new Int32Array(0), "int32");
    empty.series = {
      step_range: [0, 0],
      snapshot_step: none,
      epoch_first_step: none,
      epoch: none,
      charts: [
        {
          key: "loss",
          title: "Loss",
          lines: [
            { name: "train", group: "train", x: none, y: encode(new Float32Array(0), "float32") },
          ],
        },
      ],
    };
    const { root, plots } = mount(empty);
    expect(root.querySelector("path.fs-line")?.getAttribute("d")).toBe("");
    plots[0]?.dispatchEvent(new PointerEvent("pointermove", { clientX: 100 }));
    expect(root.querySelector(".fs-readout")?.textContent).toBe("");
  });
});

describe("widget entry", () => {
  it("dispatches on the model's _view and names unknown views", () => {
    const model = new FakeModel(state());
    const el = document.createElement("div");
    const cleanup = widget.render({ model, el } as never);
    expect(el.querySelector(`.${MODEL_INFO_CLASS}`)).not.toBeNull();
    cleanup();
    const other = new FakeModel({ ...state(), _view: "nope" });
    expect(() => widget.render({ model: other, el } as never)).toThrow('no view named "nope"');
  });
});

/** `state()` with its per-step lines sent as buckets of 4 (level 2), as the index sends them. */
function coarseState(linkId = ""): ModelInfoState {
  const s = state();
  s.link_id = linkId;
  const x = encode(
    Int32Array.from({ length: 26 }, (_, i) => i * 4),
    "int32",
  );
  const lo = encode(
    Float32Array.from({ length: 26 }, (_, i) => 1 / (1 + i)),
    "float32",
  );
  const hi = encode(
    Float32Array.from({ length: 26 }, (_, i) => 2 / (1 + i)),
    "float32",
  );
  for (const chart of s.series.charts) {
    chart.lines = chart.lines.map((line) =>
      line.markers ? line : { name: line.name, group: line.group, x, lo, hi, level: 2 },
    );
  }
  return s;
}

/** The kernel's answer to a window request: raw per-step values, the eval lines as they are. */
function windowAnswer(id: number, start: number, stop: number) {
  const steps = Int32Array.from({ length: stop - start + 2 }, (_, i) => start + i);
  const train = {
    name: "train",
    group: "train",
    x: encode(steps, "int32"),
    y: encode(
      Float32Array.from(steps, (s) => 1 / (1 + s)),
      "float32",
    ),
    level: 0,
  };
  const charts = state().series.charts.map((chart) => ({
    key: chart.key,
    lines: chart.lines.map((line) => (line.markers ? line : { ...train, name: line.name })),
  }));
  return { type: "response", id, result: { window: [start, stop], charts } };
}

const tick = () => new Promise((resolve) => setTimeout(resolve, 0));

describe("zooming into a bucketed run", () => {
  it("asks the kernel for the window and draws the raw values it answers", async () => {
    const { model, root } = mount(coarseState());
    expect(root.querySelectorAll("path.fs-band")).toHaveLength(2); // loss and lr per step
    model.set("time_window", [20, 40]);
    expect(model.sent).toEqual([
      { type: "request", id: 1, method: "window", params: { start: 20, stop: 40 } },
    ]);
    expect(root.dataset.pending).toBe("20-40");
    model.receive(windowAnswer(1, 20, 40));
    await tick();
    expect(root.dataset.detail).toBe("20-40");
    const loss = root.querySelector('.fs-chart[data-key="loss"] path[data-name="train"]');
    expect(loss?.getAttribute("class")).toContain("fs-line");
    expect(loss?.getAttribute("data-level")).toBe("0");
    expect(loss?.getAttribute("data-points")).toBe("22");
    // Zooming out shows the overview again, without asking.
    model.set("time_window", null);
    expect(model.sent).toHaveLength(1);
    expect(root.dataset.detail).toBe("overview");
    expect(root.querySelectorAll("path.fs-band")).toHaveLength(2);
  });

  it("drops an answer to a window the user has already left", async () => {
    const { model, root } = mount(coarseState());
    model.set("time_window", [20, 40]);
    model.set("time_window", [50, 60]);
    model.receive(windowAnswer(1, 20, 40));
    await tick();
    expect(root.dataset.detail).toBe("overview");
    model.receive(windowAnswer(2, 50, 60));
    await tick();
    expect(root.dataset.detail).toBe("50-60");
  });

  it("keeps the overview when the kernel answers with an error", async () => {
    const warn = vi.spyOn(console, "warn").mockImplementation(() => undefined);
    const { model, root } = mount(coarseState());
    model.set("time_window", [20, 40]);
    model.receive({ type: "response", id: 1, error: "the window is outside this run" });
    await tick();
    expect(root.querySelectorAll("path.fs-band")).toHaveLength(2);
    expect(warn).toHaveBeenCalledWith(expect.stringContaining("outside this run"));
    warn.mockRestore();
  });

  it("does not ask when every line is already exact", () => {
    const { model } = mount();
    model.set("time_window", [20, 40]);
    expect(model.sent).toEqual([]);
  });
});

describe("views of one selection", () => {
  it("share hover, brush and zoom in the browser, with no kernel round trip for hover", () => {
    const a = mount(coarseState("sel-A"));
    const b = mount(coarseState("sel-A"));
    const other = mount(coarseState("sel-B"));
    a.plots[0]?.dispatchEvent(new PointerEvent("pointermove", { clientX: 60 + 4 * 70 }));
    expect(b.root.querySelectorAll("line.fs-hover")).toHaveLength(3);
    expect(b.root.querySelector(".fs-step-readout")?.textContent).toBe("step 75 · epoch 1");
    expect(other.root.querySelectorAll("line.fs-hover")).toHaveLength(0);
    expect(a.model.saves + b.model.saves).toBe(0);
    // A drag in one view zooms the other at once; each also tells its own kernel side.
    const plot = a.plots[0] as Element;
    plot.dispatchEvent(
      new PointerEvent("pointerdown", { clientX: 60 + 4 * 20, button: 0, pointerId: 1 }),
    );
    plot.dispatchEvent(new PointerEvent("pointermove", { clientX: 60 + 4 * 40, pointerId: 1 }));
    expect(b.root.querySelectorAll("rect.fs-brush")).toHaveLength(3);
    plot.dispatchEvent(
      new PointerEvent("pointerup", { clientX: 60 + 4 * 40, button: 0, pointerId: 1 }),
    );
    expect(b.root.querySelectorAll("rect.fs-brush")).toHaveLength(0);
    expect(a.model.get("time_window")).toEqual([20, 40]);
    expect(b.root.querySelector<HTMLButtonElement>("button.fs-reset")?.hidden).toBe(false);
    expect(b.root.dataset.pending).toBe("20-40");
    expect(other.root.querySelector<HTMLButtonElement>("button.fs-reset")?.hidden).toBe(true);
    a.plots[0]?.dispatchEvent(new PointerEvent("pointerleave"));
    expect(b.root.querySelectorAll("line.fs-hover")).toHaveLength(0);
    for (const view of [a, b, other]) view.cleanup();
  });
});
