import { afterEach, describe, expect, it } from "vitest";
import { linkBus } from "./bus";
import {
  ancestors,
  columnOfPixel,
  horizonBand,
  horizonFills,
  normalizeGrid,
  type TreeNode,
  visibleRows,
} from "./horizon";
import { LAYER_CLASS, type LayerState, renderLayer, valueExtent } from "./layer";
import { encode, FakeModel } from "./test_helpers";
import widget from "./widget";

describe("horizon bands", () => {
  it("maps a value to its band and the offset inside it", () => {
    // max 3, 3 bands of 1: 0.5 half fills band 0, 1.25 a quarter of band 1, 2.999 nearly tops band 2.
    expect(horizonBand(0.5, 3, 3)).toEqual({ band: 0, offset: 0.5, negative: false });
    expect(horizonBand(1.25, 3, 3)).toEqual({ band: 1, offset: 0.25, negative: false });
    expect(horizonBand(2, 3, 3)).toEqual({ band: 2, offset: 0, negative: false });
    expect(horizonBand(0, 3, 3)).toEqual({ band: 0, offset: 0, negative: false });
  });
  it("clamps at the top, mirrors negatives and skips what cannot be drawn", () => {
    expect(horizonBand(7, 3, 3)).toEqual({ band: 2, offset: 1, negative: false });
    expect(horizonBand(-1.5, 3, 3)).toEqual({ band: 1, offset: 0.5, negative: true });
    expect(horizonBand(Number.NaN, 3, 3)).toBeNull();
    expect(horizonBand(1, 0, 3)).toBeNull();
    expect(horizonBand(1, 3, 0)).toBeNull();
  });
  it("fills every band below the value's band", () => {
    expect(horizonFills(1.25, 3, 3)).toEqual([1, 0.25, 0]);
    expect(horizonFills(3, 3, 3)).toEqual([1, 1, 1]);
    expect(horizonFills(Number.NaN, 3, 3)).toEqual([0, 0, 0]);
  });
});

const node = (name: string, parent: string, level: string, filters = 0): TreeNode => ({
  name,
  parent,
  level,
  params: 10,
  layer: filters > 0,
  filters,
});

const TREE: TreeNode[] = [
  node("model", "", "model"),
  node("conv1", "model", "stage", 4),
  node("layer1", "model", "stage"),
  node("layer1.0", "layer1", "block"),
  node("layer1.0.conv1", "layer1.0", "layer", 3),
  node("layer1.0.conv2", "layer1.0", "layer", 3),
  node("layer1.1", "layer1", "block"),
  node("layer1.1.conv1", "layer1.1", "layer", 3),
];

describe("tree expansion", () => {
  const names = (rows: ReturnType<typeof visibleRows>) =>
    rows.map((r) => (r.more ? `more:${r.more.hidden}` : `${r.depth}:${r.node.name}`));
  it("shows the children of expanded nodes only, depth first", () => {
    expect(names(visibleRows(TREE, new Set()))).toEqual(["0:model"]);
    expect(names(visibleRows(TREE, new Set(["model"])))).toEqual([
      "0:model",
      "1:conv1",
      "1:layer1",
    ]);
    expect(names(visibleRows(TREE, new Set(["model", "layer1", "layer1.1"])))).toEqual([
      "0:model",
      "1:conv1",
      "1:layer1",
      "2:layer1.0",
      "2:layer1.1",
      "3:layer1.1.conv1",
    ]);
    // An expanded node under a collapsed one stays hidden.
    expect(names(visibleRows(TREE, new Set(["layer1.0"])))).toEqual(["0:model"]);
  });
  it("pages long child lists", () => {
    expect(names(visibleRows(TREE, new Set(["model", "layer1", "layer1.0"]), 1))).toEqual([
      "0:model",
      "1:conv1",
      "more:1",
    ]);
    const shown = new Map([["model", 2]]);
    expect(names(visibleRows(TREE, new Set(["model"]), 1, shown))).toEqual([
      "0:model",
      "1:conv1",
      "1:layer1",
    ]);
  });
  it("finds the ancestors to open for a layer", () => {
    expect(ancestors(TREE, "layer1.1.conv1")).toEqual(["layer1.1", "layer1", "model"]);
    expect(ancestors(TREE, "model")).toEqual([]);
  });
});

describe("filter normalisation", () => {
  // 2 filters × 3 snapshots; the first snapshot has no previous one (NaN).
  const grid = [Number.NaN, 0.9, 0.5, Number.NaN, 0.7, 0.7];
  it("per filter scales each row to its own range", () => {
    const out = Array.from(normalizeGrid(grid, 2, 3, "filter"));
    expect(out[0]).toBeNaN();
    expect(out.slice(1)).toEqual([1, 0, Number.NaN, 0.5, 0.5]);
  });
  it("per snapshot scales each column", () => {
    const out = Array.from(normalizeGrid(grid, 2, 3, "snapshot"));
    expect(out[1]).toBe(1);
    expect(out[4]).toBe(0);
    expect(out[2]).toBe(0);
    expect(out[5]).toBe(1);
  });
  it("globally uses the run's range and clamps", () => {
    const out = Array.from(normalizeGrid(grid, 2, 3, "global", [0.5, 1]));
    expect(out[1]).toBeCloseTo(0.8);
    expect(out[2]).toBe(0);
    expect(Array.from(normalizeGrid([2], 1, 1, "global", [0, 1]))).toEqual([1]);
  });
});

describe("pixel columns", () => {
  it("shows the point nearest each pixel's step, nothing beyond half a gap outside", () => {
    // Points at steps 0, 10, 20; window 0..40 over 8 pixels centred at 2.5, 7.5, … 37.5.
    expect(Array.from(columnOfPixel([0, 10, 20], 0, 40, 8))).toEqual([0, 1, 1, 2, 2, -1, -1, -1]);
    // The last point at the window's end still gets its pixels.
    expect(Array.from(columnOfPixel([0, 10, 20], 0, 20, 4))).toEqual([0, 1, 1, 2]);
    expect(Array.from(columnOfPixel([5], 0, 20, 2))).toEqual([0, 0]);
    expect(Array.from(columnOfPixel([], 0, 40, 3))).toEqual([-1, -1, -1]);
  });
  it("finds a value extent over a slice", () => {
    expect(valueExtent([5, Number.NaN, 1, 3], 1, 4)).toEqual([1, 3]);
    expect(valueExtent([Number.NaN], 0, 1)).toBeNull();
  });
});

// ---------------------------------------------------------------- the rendered view
const NASTY = "<img src=x onerror=alert(1)>";

function state(): LayerState {
  const nodes = [
    node("model", "", "model"),
    node("stage", "model", "stage"),
    node(NASTY, "stage", "layer", 3),
    node("other", "stage", "layer", 2),
  ];
  const cols = 5;
  const values = Float32Array.from({ length: nodes.length * cols }, (_, i) => (i % cols) + 1);
  return {
    _view: "layer",
    tree: {
      step_range: [0, 40],
      snapshot_step: encode(Int32Array.from([0, 10, 20, 30, 40]), "int32"),
      nodes,
      stats: ["mean_abs", "l1"],
      thresholds: [0.1, 0.01, 0.001, 0.0001],
      cosine_range: [0.5, 1],
    },
    series: {
      chart: "horizon",
      variable: "gradient",
      stat: "mean_abs",
      parts: ["mean_abs"],
      x: encode(Int32Array.from([0, 10, 20, 30, 40]), "int32"),
      level: 0,
      approximate: [],
      values: encode(values, "float32", [nodes.length, cols, 1]),
    },
    changed_filters: [],
    chart: "horizon",
    variable: "gradient",
    stat: "mean_abs",
    same_scale: false,
    normalize: "filter",
    expanded: ["model"],
    layer: null,
    filter_index: null,
    picked_steps: [],
    time_window: null,
  };
}

let cleanups: (() => void)[] = [];
afterEach(() => {
  for (const c of cleanups) c();
  cleanups = [];
});

function mount(s = state()) {
  const model = new FakeModel(s);
  const el = document.createElement("div");
  document.body.append(el);
  const cleanup = renderLayer({ model, el });
  cleanups.push(() => {
    cleanup();
    el.remove();
  });
  const root = el.querySelector(`.${LAYER_CLASS}`) as HTMLElement;
  return { model, root, el };
}

const tick = () => new Promise((resolve) => setTimeout(resolve, 0));
const rowNames = (root: HTMLElement) =>
  [...root.querySelectorAll<HTMLElement>(".fs-node-row")].map((r) => r.dataset.node);

describe("LayerView in the page", () => {
  it("renders the collapsed tree and expands a node on click", () => {
    const { model, root } = mount();
    expect(rowNames(root)).toEqual(["model", "stage"]);
    (root.querySelector('[data-node="stage"] .fs-node-label') as HTMLElement).click();
    expect(model.get("expanded")).toEqual(["model", "stage"]);
    expect(model.saves).toBe(1);
    expect(rowNames(root)).toEqual(["model", "stage", NASTY, "other"]);
    // Names are text: nothing was parsed as HTML.
    expect(root.querySelector("img")).toBeNull();
    expect(root.textContent).toContain(NASTY);
  });

  it("asks for a layer's filters when it opens, draws them and selects a filter", async () => {
    const s = state();
    s.expanded = ["model", "stage"];
    const { model, root } = mount(s);
    (root.querySelector('[data-node="other"] .fs-node-label') as HTMLElement).click();
    expect(model.get("layer")).toBe("other");
    const sent = model.sent as { id: number; method: string; params: { layer: string } }[];
    expect(sent).toHaveLength(1);
    expect(sent[0]?.method).toBe("filters");
    expect(sent[0]?.params.layer).toBe("other");
    model.receive({
      type: "response",
      id: sent[0]?.id,
      result: {
        layer: "other",
        filters: encode(Int32Array.from([3, 4]), "int32"),
        channels: encode(Int32Array.from([0, 1]), "int32"),
        x: encode(Int32Array.from([0, 20]), "int32"),
        level: 1,
        values: encode(Float32Array.from([Number.NaN, 0.9, Number.NaN, 0.6]), "float32", [2, 2]),
      },
    });
    await tick();
    const block = root.querySelector('.fs-filters[data-layer="other"]') as HTMLElement;
    expect(block.dataset.rows).toBe("2");
    expect(root.dataset.loaded).toBe("other");
    expect(block.querySelector("canvas.fs-filter-chart")).not.toBeNull();
    model.set("filter_index", 4);
    expect(block.querySelectorAll(".fs-selected-filter")).toHaveLength(1);
  });

  it("follows Python: picks, changed filters, chart choices", () => {
    const { model, root } = mount();
    model.set("picked_steps", [20]);
    expect(root.querySelectorAll(".fs-pick-vline")).toHaveLength(1);
    model.set("changed_filters", [{ filter: 3, layer: "other", channel: 0 }]);
    const chip = root.querySelector(".fs-changed-chip") as HTMLElement;
    expect(chip.textContent).toBe("other #0");
    chip.click();
    expect(model.get("filter_index")).toBe(3);
    expect(model.get("expanded")).toEqual(expect.arrayContaining(["model", "stage", "other"]));
    const select = root.querySelector(".fs-select-chart") as HTMLSelectElement;
    select.value = "box";
    select.dispatchEvent(new Event("change"));
    expect(model.get("chart")).toBe("box");
  });

  it("draws every row on one scale when same_scale is on", () => {
    const s = state();
    s.expanded = ["model", "stage"];
    // Rows hold 1..5, but the model's row 10..50: per-row scales differ, one shared scale not.
    const values = Float32Array.from({ length: 20 }, (_, i) =>
      i < 5 ? 10 * (i + 1) : (i % 5) + 1,
    );
    s.series.values = encode(values, "float32", [4, 5, 1]);
    const { model, root } = mount(s);
    const extents = () =>
      [...root.querySelectorAll<HTMLElement>(".fs-node-row")].map((r) => r.dataset.extent);
    expect(extents()).toEqual(["10–50", "1–5", "1–5", "1–5"]);
    model.set("same_scale", true);
    expect(extents()).toEqual(["1–50", "1–50", "1–50", "1–50"]);
  });

  it("is reached through the widget entry and detaches on cleanup", () => {
    const model = new FakeModel(state());
    const el = document.createElement("div");
    const cleanup = widget.render({ model, el } as never);
    expect(el.querySelector(`.${LAYER_CLASS}`)).not.toBeNull();
    cleanup();
    expect(el.children).toHaveLength(0);
    expect(model.listenerCount()).toBe(0);
  });
});

describe("the link bus registry", () => {
  it("lives on the page's global object, shared by every copy of the bundle", () => {
    // anywidget loads the bundle once per widget (a blob URL each): the copies must find one bus.
    const { bus, release } = linkBus("shared-by-copies");
    const registry = (globalThis as Record<string, unknown>).__filterscopeLinkBuses;
    expect(registry).toBeInstanceOf(Map);
    expect((registry as Map<string, unknown>).get("shared-by-copies")).toBe(bus);
    release();
    expect((registry as Map<string, unknown>).has("shared-by-copies")).toBe(false);
  });
});
