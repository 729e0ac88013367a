import { afterEach, describe, expect, it } from "vitest";
import { linkBus } from "./bus";
import { colorIndex, colorScale } from "./canvas";
import {
  ancestors,
  columnOfPixel,
  horizonBand,
  horizonFills,
  type Normalize,
  normalizeGrid,
  type TreeNode,
  visibleRows,
} from "./horizon";
import {
  decodeFilterRows,
  filterPixels,
  LAYER_CLASS,
  type LayerState,
  ROW_NAN,
  ROW_STEPS,
  renderLayer,
  valueExtent,
} from "./layer";
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

// ---------------------------------------------------------------- filter rows on the wire
/**
 * The kernel's encoding (`filterscope.views.layer.encode_rows`), in float32 as there: per group
 * of `mode` the finite min and max, codes `floor((v − lo) · 254 / (hi − lo) + 0.5)`, 255 NaN.
 */
function encodeRows(values: Float32Array, rows: number, cols: number, mode: Normalize) {
  const f = Math.fround;
  const groups = mode === "filter" ? rows : mode === "snapshot" ? cols : 1;
  const key = (r: number, c: number) => (mode === "filter" ? r : mode === "snapshot" ? c : 0);
  const lo = new Float32Array(groups).fill(Number.NaN);
  const hi = new Float32Array(groups).fill(Number.NaN);
  for (let r = 0; r < rows; r++)
    for (let c = 0; c < cols; c++) {
      const v = values[r * cols + c] as number;
      if (!Number.isFinite(v)) continue;
      const g = key(r, c);
      if (!(v >= (lo[g] as number))) lo[g] = v;
      if (!(v <= (hi[g] as number))) hi[g] = v;
    }
  const codes = new Uint8Array(rows * cols);
  for (let r = 0; r < rows; r++)
    for (let c = 0; c < cols; c++) {
      const i = r * cols + c;
      const v = values[i] as number;
      const g = key(r, c);
      const span = f((hi[g] as number) - (lo[g] as number));
      const scale = span > 0 ? f(ROW_STEPS / span) : 0;
      const t = f(f(v - (lo[g] as number)) * scale);
      codes[i] = Number.isFinite(v)
        ? Math.floor(f(Math.min(Math.max(t, 0), ROW_STEPS) + 0.5))
        : ROW_NAN;
    }
  const nd = (data: Uint8Array | Float32Array, shape: number[]) => ({
    dtype: data instanceof Uint8Array ? ("uint8" as const) : ("float32" as const),
    shape,
    data,
  });
  return {
    normalize: mode,
    values: nd(codes, [rows, cols]),
    lo: nd(lo, [groups]),
    hi: nd(hi, [groups]),
  };
}

/** Colour step (0..255, -1 for NaN) of each cell as the page draws it: normalised, 256 colours. */
function colourSteps(
  values: ArrayLike<number>,
  rows: number,
  cols: number,
  mode: Normalize,
  range: readonly [number, number],
): number[] {
  return steps(normalizeGrid(values, rows, cols, mode, range));
}

function steps(normalized: ArrayLike<number>): number[] {
  const scale = colorScale([0, 1]);
  return Array.from(normalized, (t) => colorIndex(scale, t));
}

/** A seeded generator (mulberry32): the same rows on every run. */
function random(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

describe("filter rows on the wire (uint8 codes)", () => {
  const N = Number.NaN;
  const cases: [string, number, number, number[]][] = [
    [
      "NaN, constant, single-value and full rows",
      4,
      4,
      [N, N, N, N, 0.7, 0.7, 0.7, 0.7, N, 0.2, N, N, -1, 0.3, 1, 0.999],
    ],
    [
      "a tiny range near 1",
      2,
      5,
      [1, 0.99999994, 0.9999999, 0.9999998, 0.9999997, 0.99999994, 1, 1, 0.9999999, N],
    ],
    [
      "infinities are missing cells",
      2,
      3,
      [Number.POSITIVE_INFINITY, 0.5, 0.25, Number.NEGATIVE_INFINITY, 0, 1],
    ],
    ["one column", 3, 1, [0.1, N, 0.9]],
    ["one row", 1, 6, [0.1, 0.2, 0.30000001, 0.4, 0.5, 0.6]],
    ["every cell NaN", 2, 2, [N, N, N, N]],
    [
      "code boundaries: k / 254 of the range and halfway between",
      1,
      8,
      [0, 1, 0.5, 127.5 / 254, 1 / 508, 3 / 508, 253.5 / 254, 1 / 254],
    ],
  ];
  const rng = random(12);
  for (let k = 0; k < 12; k++) {
    const [rows, cols] = [1 + Math.floor(rng() * 40), 1 + Math.floor(rng() * 60)];
    // Cosines mostly near 1 with dips, some NaN, on several scales of spread.
    const spread = 10 ** -Math.floor(rng() * 6);
    const values = Array.from({ length: rows * cols }, () =>
      rng() < 0.05 ? N : Math.max(-1, 1 - spread * rng() ** 3 * (rng() < 0.1 ? 50 : 1)),
    );
    cases.push([`random rows ${k} (${rows} × ${cols}, spread ${spread})`, rows, cols, values]);
  }
  for (const [name, rows, cols, list] of cases) {
    it(`colours every cell as float32 does, up to one step: ${name}`, () => {
      const values = Float32Array.from(list);
      const finite = list.filter(Number.isFinite).map(Math.fround);
      const extent: [number, number] = finite.length
        ? [Math.min(...finite), Math.max(...finite)]
        : [0, 1];
      for (const mode of ["filter", "snapshot", "global"] as const) {
        // Global: the run's range holds the answer's; the answer's own extent is the worst case.
        for (const range of [extent, [-1, 1] as [number, number]]) {
          const wire = encodeRows(values, rows, cols, mode);
          const decoded = decodeFilterRows(wire, rows, cols);
          const want = colourSteps(values, rows, cols, mode, range);
          // Decoded and normalised again, and the page's path: codes through a table.
          const every = Int32Array.from({ length: cols }, (_, c) => c);
          for (const [path, got] of [
            ["decoded", colourSteps(decoded, rows, cols, mode, range)],
            ["drawn", steps(filterPixels(wire, rows, cols, every, mode, range))],
          ] as const) {
            for (let i = 0; i < want.length; i++) {
              const [w, g] = [want[i] as number, got[i] as number];
              if (w < 0 !== g < 0 || Math.abs(w - g) > 1)
                throw new Error(
                  `${path} ${mode} [${range}] cell ${i} (${list[i]}): ${g}, not ${w}`,
                );
            }
            expect(got.filter((c) => c < 0)).toHaveLength(want.filter((c) => c < 0).length);
          }
        }
      }
    });
  }

  it("gives a group's ends back exactly and NaN for code 255", () => {
    const values = Float32Array.from([0.25, 0.8, Number.NaN, -0.5, 0.1, 0.3]);
    const wire = encodeRows(values, 2, 3, "filter");
    expect(Array.from(wire.values.data)).toEqual([0, 254, 255, 0, 191, 254]);
    const decoded = decodeFilterRows(wire, 2, 3);
    expect([decoded[0], decoded[1], decoded[3], decoded[5]]).toEqual(
      [0.25, 0.8, -0.5, 0.3].map(Math.fround),
    );
    expect(decoded[2]).toBeNaN();
    expect(Math.abs((decoded[4] as number) - 0.1)).toBeLessThanOrEqual(0.8 / 508 + 1e-7);
  });

  it("draws pixels of the data columns, NaN outside, and answers of another range decoded", () => {
    const values = Float32Array.from([0.2, 0.4, 0.6, 0.9, 0.9, Number.NaN]);
    const map = Int32Array.from([-1, 0, 0, 1, 2]);
    const wire = encodeRows(values, 2, 3, "filter");
    const drawn = Array.from(filterPixels(wire, 2, 3, map, "filter", [0, 1]));
    expect(drawn).toEqual([Number.NaN, 0, 0, 0.5, 1, Number.NaN, 0.5, 0.5, 0.5, Number.NaN]);
    // Codes for "filter" drawn per snapshot: the decoded values, normalised per column.
    const other = filterPixels(wire, 2, 3, map, "snapshot", [0, 1]);
    const grid = normalizeGrid(decodeFilterRows(wire, 2, 3), 2, 3, "snapshot");
    const want = [0, 1].flatMap((r) =>
      Array.from(map, (c) => (c < 0 ? Number.NaN : grid[r * 3 + c])),
    );
    expect(Array.from(other)).toEqual(want);
  });

  it("decodes each mode's groups: per row, per column, one", () => {
    const codes = {
      dtype: "uint8" as const,
      shape: [2, 2],
      data: Uint8Array.from([0, 254, 127, 255]),
    };
    const nd = (a: number[]) => ({
      dtype: "float32" as const,
      shape: [a.length],
      data: Float32Array.from(a),
    });
    const at = (normalize: Normalize, lo: number[], hi: number[]) =>
      Array.from(decodeFilterRows({ normalize, values: codes, lo: nd(lo), hi: nd(hi) }, 2, 2));
    expect(at("filter", [0, 10], [1, 20])).toEqual([0, 1, 15, N]);
    expect(at("snapshot", [0, 10], [1, 20])).toEqual([0, 20, 0.5, N]);
    expect(at("global", [2], [4])).toEqual([2, 4, 3, N]);
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
        normalize: "filter",
        values: encode(Uint8Array.from([255, 0, 255, 0]), "uint8", [2, 2]),
        lo: encode(Float32Array.from([0.9, 0.6]), "float32"),
        hi: encode(Float32Array.from([0.9, 0.6]), "float32"),
      },
    });
    await tick();
    const block = root.querySelector('.fs-filters[data-layer="other"]') as HTMLElement;
    expect(block.dataset.rows).toBe("2");
    expect(root.dataset.loaded).toBe("other");
    expect(block.querySelector("canvas.fs-filter-chart")).not.toBeNull();
    model.set("filter_index", 4);
    expect(block.querySelectorAll(".fs-selected-filter")).toHaveLength(1);
    // Another colour range: the rows are asked again, encoded for it.
    model.set("normalize", "snapshot");
    const again = model.sent as { method: string; params: { normalize: string } }[];
    expect(again).toHaveLength(2);
    expect(again[1]?.method).toBe("filters");
    expect(again[1]?.params.normalize).toBe("snapshot");
    expect(sent[0]?.params).toMatchObject({ layer: "other", normalize: "filter" });
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
