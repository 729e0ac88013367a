/**
 * Golden payloads written by `tests/test_views_golden.py`: the page must read exactly what the
 * Python views send. If these fail after a Python change, the wire format changed: update
 * `wire.ts` and the views together.
 */

import { afterEach, describe, expect, it, vi } from "vitest";
import cubeFacesFile from "./golden/cube_faces.json";
import cubeStateFile from "./golden/cube_state.json";
import layerFiltersFile from "./golden/layer_filters.json";
import layerStateFile from "./golden/layer_state.json";
import errorFile from "./golden/model_info_error.json";
import seriesFile from "./golden/model_info_series.json";
import windowFile from "./golden/model_info_window.json";
import validationDataFile from "./golden/validation_data.json";
import validationRowsFile from "./golden/validation_rows.json";
import validationWindowFile from "./golden/validation_window.json";
import type { Normalize } from "./horizon";
import { decodeFilterRows, ROW_NAN } from "./layer";
import { MODEL_INFO_CLASS, renderModelInfo } from "./model_info";
import { FakeModel, type GoldenFile, goldenBuffers } from "./test_helpers";
import { decodeTree, type NdArray, putBuffers } from "./transport";
import {
  decodeAccuracy,
  renderValidation,
  VALIDATION_CLASS,
  type WireRows,
  type WireValidation,
  type WireValidationWindow,
} from "./validation";
import type { ResponseMessage, WireSeries, WireWindow } from "./wire";

function decode<T>(file: GoldenFile): ReturnType<typeof decodeTree<T>> {
  const message = structuredClone(file.message) as T;
  putBuffers(message, file.buffer_paths, goldenBuffers(file));
  return decodeTree(message);
}

const values = (a: NdArray | undefined) => Array.from(a?.data ?? []);

afterEach(() => {
  document.body.replaceChildren();
});

describe("golden ModelInfo payloads", () => {
  it("decodes the overview: bucketed per-step lines, exact per-snapshot ones", () => {
    const series = decode<WireSeries>(seriesFile as GoldenFile);
    expect(series.step_range).toEqual([0, 5000]);
    expect(series.charts.map((c) => c.key)).toEqual(["loss", "error", "lr"]);
    expect(values(series.snapshot_step)).toEqual([
      0, 500, 1000, 1500, 2000, 2500, 3000, 3500, 4000, 4500, 5000,
    ]);
    expect(values(series.epoch_first_step)).toEqual([0, 1000, 2000, 3000, 4000]);
    const [train, val, test] = series.charts[0]?.lines ?? [];
    expect([train?.name, val?.name, test?.name]).toEqual(["train", "val", "test"]);
    expect(train?.level).toBe(7);
    expect(train?.y).toBeUndefined();
    expect(train?.x.dtype).toBe("int32");
    expect(train?.lo?.dtype).toBe("float32");
    expect(values(train?.x).slice(0, 3)).toEqual([0, 128, 256]);
    expect(train?.lo?.data.length).toBe(train?.x.data.length);
    // The first bucket's max is the first step's loss, 2 / (1 + 0).
    expect(train?.hi?.data[0]).toBe(2);
    expect(val?.markers).toBe(true);
    expect(val?.level).toBe(0);
    expect(values(val?.y)[0]).toBeCloseTo(2.5, 6);
  });

  it("decodes a window answer: raw values with the NaN gap, from the kernel's buffers", () => {
    const file = windowFile as GoldenFile;
    const message = structuredClone(file.message) as ResponseMessage;
    expect(message).toMatchObject({ type: "response", id: 7 });
    expect(file.buffer_paths).toEqual((message.buffer_paths ?? []).map((p) => ["result", ...p]));
    putBuffers(message, file.buffer_paths, goldenBuffers(file));
    const answer = decodeTree(message.result as WireWindow);
    expect(answer.window).toEqual([2090, 2120]);
    const train = answer.charts[0]?.lines[0];
    expect(train?.level).toBe(0);
    expect(values(train?.x)).toEqual(Array.from({ length: 32 }, (_, i) => 2090 + i));
    const y = values(train?.y);
    expect(y.slice(10, 13).every(Number.isNaN)).toBe(true);
    expect(y[0]).toBe(Math.fround(2 / (1 + 2090 / 100)));
  });

  it("reads an error answer", () => {
    const message = (errorFile as GoldenFile).message as ResponseMessage;
    expect(message.id).toBe(8);
    expect(message.error).toContain("has no request 'nope'");
    expect(message.result).toBeUndefined();
  });

  it("renders the golden overview as bands, and the golden window as exact lines", async () => {
    const file = seriesFile as GoldenFile;
    const wireSeries = structuredClone(file.message) as WireSeries;
    putBuffers(wireSeries, file.buffer_paths, goldenBuffers(file));
    const model = new FakeModel({
      _view: "model_info",
      link_id: "",
      series: wireSeries,
      picked_steps: [] as number[],
      time_window: null as [number, number] | null,
    });
    const el = document.createElement("div");
    document.body.append(el);
    const cleanup = renderModelInfo({ model, el });
    const warnings: unknown[] = [];
    const warn = vi.spyOn(console, "warn").mockImplementation((...args) => warnings.push(args));
    const root = el.querySelector(`.${MODEL_INFO_CLASS}`) as HTMLElement;
    expect(root.querySelectorAll("path.fs-band")).toHaveLength(3);
    model.set("time_window", [2090, 2120]);
    expect(model.sent).toEqual([
      { type: "request", id: 1, method: "window", params: { start: 2090, stop: 2120 } },
    ]);
    const answer = windowFile as GoldenFile;
    // The golden answer is to request 7; this page's first request has id 1.
    model.receive({ ...(answer.message as object), id: 1 }, goldenBuffers(answer));
    await new Promise((resolve) => setTimeout(resolve, 0));
    expect(warnings).toEqual([]);
    expect(root.dataset.detail).toBe("2090-2120");
    expect(root.querySelectorAll("path.fs-band")).toHaveLength(0);
    const loss = root.querySelector('.fs-chart[data-key="loss"] path[data-name="train"]');
    expect(loss?.getAttribute("data-level")).toBe("0");
    expect(loss?.getAttribute("data-points")).toBe("32");
    cleanup();
    warn.mockRestore();
  });
});

/** The `result` of a golden response, its buffers put back in and decoded. */
function decodeAnswer<T>(file: GoldenFile): ReturnType<typeof decodeTree<T>> {
  const message = structuredClone(file.message) as ResponseMessage;
  expect(file.buffer_paths).toEqual((message.buffer_paths ?? []).map((p) => ["result", ...p]));
  putBuffers(message, file.buffer_paths, goldenBuffers(file));
  return decodeTree(message.result as T);
}

const isPermutation = (a: NdArray, n: number) =>
  [...values(a)].sort((x, y) => x - y).join() === Array.from({ length: n }, (_, i) => i).join();

describe("golden LayerView payloads (6 classes, 12 snapshots, ResNet-18)", () => {
  interface Node {
    name: string;
    parent: string;
    layer: boolean;
    filters: number;
  }
  it("decodes the tree and one series row per node over the snapshots", () => {
    const state = decode<{
      tree: { nodes: Node[]; snapshot_step: unknown; step_range: [number, number] };
      series: { values: unknown; x: unknown; level: number };
    }>(layerStateFile as GoldenFile);
    const nodes = state.tree.nodes;
    expect(nodes[0]?.name).toBe("model");
    const names = new Set(nodes.map((n) => n.name));
    expect(nodes.slice(1).every((n) => names.has(n.parent))).toBe(true);
    const series = state.series as unknown as { values: NdArray; x: NdArray; level: number };
    const steps = state.tree.snapshot_step as unknown as NdArray;
    expect(series.values.dtype).toBe("float32");
    expect(series.values.shape).toEqual([nodes.length, 12, 1]);
    expect(values(series.x)).toEqual(values(steps));
    expect(values(steps)[11]).toBe(state.tree.step_range[1]);
    // Mean |gradient| is positive wherever it is defined.
    expect(
      values(series.values)
        .filter(Number.isFinite)
        .every((v) => v >= 0),
    ).toBe(true);
  });

  it("decodes a filters answer: one row of uint8 cosine codes per filter of the layer", () => {
    const answer = decodeAnswer<{
      layer: string;
      filters: unknown;
      x: unknown;
      values: unknown;
    }>(layerFiltersFile as GoldenFile) as unknown as {
      layer: string;
      normalize: Normalize;
      filters: NdArray;
      x: NdArray;
      values: NdArray;
      lo: NdArray;
      hi: NdArray;
    };
    const conv1 = (
      (layerStateFile as GoldenFile).message as { tree: { nodes: Node[] } }
    ).tree.nodes.find((n) => n.name === "conv1");
    expect(answer.layer).toBe("conv1");
    expect(answer.filters.data.length).toBe(conv1?.filters);
    expect(answer.values.shape).toEqual([conv1?.filters, answer.x.data.length]);
    // Per filter (the view's default colour range): codes 0..254 over [lo, hi] of the row.
    expect(answer.values.dtype).toBe("uint8");
    expect(answer.normalize).toBe("filter");
    expect(answer.lo.shape).toEqual([conv1?.filters]);
    expect(answer.hi.shape).toEqual([conv1?.filters]);
    const rows = answer.filters.data.length;
    const cols = answer.x.data.length;
    const decoded = decodeFilterRows(answer, rows, cols);
    const cosines = Array.from(decoded).filter(Number.isFinite);
    expect(cosines.length).toBeGreaterThan(0);
    expect(cosines.every((v) => v >= -1 && v <= 1)).toBe(true);
    // The first snapshot has no previous one: NaN (code 255) in every row.
    for (let r = 0; r < rows; r++) expect(answer.values.data[r * cols]).toBe(ROW_NAN);
    // Each row's ends come back exactly.
    for (let r = 0; r < rows; r++) {
      const row = Array.from(decoded.subarray(r * cols, (r + 1) * cols)).filter(Number.isFinite);
      expect([Math.min(...row), Math.max(...row)]).toEqual([answer.lo.data[r], answer.hi.data[r]]);
    }
  });
});

describe("golden ValidationView payloads", () => {
  it("decodes the overview: uint8 accuracy codes to [0, 1], orders, marks", () => {
    const { data } = decode<{ data: WireValidation }>(validationDataFile as GoldenFile);
    expect(data.accuracy.dtype).toBe("uint8");
    expect(data.accuracy.shape).toEqual([6, 12]);
    const accuracy = decodeAccuracy(data.accuracy);
    expect(accuracy.dtype).toBe("float32");
    const v = values(accuracy);
    expect(v.every((a) => Number.isNaN(a) || (a >= 0 && a <= 1))).toBe(true);
    // 20 images a class: every accuracy is a multiple of 1/20, within half a code step.
    for (const a of v) expect(Math.abs(a * 20 - Math.round(a * 20))).toBeLessThan(20 / 508);
    expect(decodeAccuracy(data.cluster_accuracy).shape).toEqual([4, 12]);
    expect(isPermutation(data.order_mds, 6)).toBe(true);
    expect(isPermutation(data.order_peak, 6)).toBe(true);
    expect(data.up.class.data.length).toBe(data.up.count.data.length);
    expect(values(data.up.count).every((c) => c >= data.threshold)).toBe(true);
  });

  it("decodes a window answer and a class's rows", () => {
    const window = decodeAnswer<WireValidationWindow>(validationWindowFile as GoldenFile);
    expect(window.window).toEqual([300, 800]);
    const cols = window.x0.data.length;
    expect(window.accuracy.shape).toEqual([6, cols]);
    expect(values(decodeAccuracy(window.accuracy)).every((a) => a >= 0 && a <= 1)).toBe(true);
    const rows = decodeAnswer<WireRows>(validationRowsFile as GoldenFile);
    expect(rows.class_).toBe(2);
    expect(rows.total).toBe(20);
    expect(rows.values.shape).toEqual([20, 12]);
    expect(values(rows.values).every((c) => c === 0 || c === 1)).toBe(true);
  });

  it("renders the golden overview with no warning", () => {
    const file = validationDataFile as GoldenFile;
    const data = structuredClone(file.message) as { data: WireValidation };
    putBuffers(data, file.buffer_paths, goldenBuffers(file));
    const model = new FakeModel({
      _view: "validation",
      link_id: "",
      data: data.data,
      picked_steps: [] as number[],
      time_window: null as [number, number] | null,
      class_: null as number | string | null,
      sample_index: null as number | null,
      order: "mds" as const,
    });
    const warn = vi.spyOn(console, "warn");
    const el = document.createElement("div");
    document.body.append(el);
    const cleanup = renderValidation({ model, el });
    const root = el.querySelector(`.${VALIDATION_CLASS}`) as HTMLElement;
    expect(root.querySelector("canvas")).not.toBeNull();
    expect(root.textContent).toContain("n00000002");
    expect(warn).not.toHaveBeenCalled();
    cleanup();
    warn.mockRestore();
  });
});

describe("golden CubeView payloads", () => {
  interface Faces {
    front: NdArray;
    top: NdArray;
    flags: NdArray;
    correlation: NdArray;
    bucket_step_start: NdArray;
    bucket_step_stop: NdArray;
    classes: (number | string)[];
    offset: number;
  }
  it("decodes the first page and a later page over a window, on shared axes", () => {
    const state = decode<{ meta: { layers: string[]; n_classes: number }; faces: unknown }>(
      cubeStateFile as GoldenFile,
    );
    const faces = state.faces as Faces;
    const layers = state.meta.layers.length;
    const cols = faces.bucket_step_start.data.length;
    expect(faces.front.shape).toEqual([layers, cols]);
    expect(faces.top.shape).toEqual([faces.classes.length, cols]);
    expect(faces.flags.shape).toEqual([faces.classes.length, cols]);
    expect(faces.correlation.shape).toEqual([layers, faces.classes.length]);
    expect(faces.classes).toEqual([0, 1, 2, 3]);
    const page = decodeAnswer<unknown>(cubeFacesFile as GoldenFile) as unknown as Faces;
    expect(page.offset).toBe(4);
    expect(page.classes).toEqual([4, 5]);
    const starts = values(page.bucket_step_start);
    expect(starts[0]).toBeGreaterThanOrEqual(300);
    expect(values(page.bucket_step_stop).at(-1)).toBeLessThanOrEqual(800);
    expect(page.front.shape).toEqual([layers, starts.length]);
  });
});
