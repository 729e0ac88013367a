/**
 * The time-axis layout contract (`TIME_AXIS_LAYOUT` in timeaxis.ts): mounted at the same width,
 * as in a dashboard, every view's time-axis plot area spans the same `[left, width - right]` of
 * its root, and a hovered step's line is at the same x in all of them.
 *
 * jsdom does no layout, so offsets are read where the views set them: SVG attributes, inline
 * styles, and the widths and margins of the views' style sheets (`getComputedStyle`).
 */

import { afterEach, describe, expect, it } from "vitest";
import { linkBus } from "./bus";
import { CUBE_CLASS, type CubeState, renderCube } from "./cube";
import type { TreeNode } from "./horizon";
import { LAYER_CLASS, type LayerState, renderLayer } from "./layer";
import { MODEL_INFO_CLASS, type ModelInfoState, renderModelInfo } from "./model_info";
import { encode, FakeModel } from "./test_helpers";
import { TIME_AXIS_LAYOUT, timeAxisArea } from "./timeaxis";
import { renderValidation, VALIDATION_CLASS, type ValidationState } from "./validation";
import { FALLBACK_WIDTH } from "./view";

const LINK = "alignment-test";
const STEPS: [number, number] = [0, 40];
const SNAPS = [0, 10, 20, 30, 40];
const i32 = (values: number[], shape?: number[]) =>
  encode(Int32Array.from(values), "int32", shape ?? [values.length]);
const f32 = (length: number, f: (i: number) => number, shape?: number[]) =>
  encode(
    Float32Array.from({ length }, (_, i) => f(i)),
    "float32",
    shape ?? [length],
  );

function modelInfo(): ModelInfoState {
  const steps = Array.from({ length: 41 }, (_, i) => i);
  return {
    _view: "model_info",
    link_id: LINK,
    picked_steps: [],
    time_window: null,
    series: {
      step_range: STEPS,
      snapshot_step: i32(SNAPS),
      epoch_first_step: i32([0]),
      epoch: i32([0]),
      charts: [
        {
          key: "loss",
          title: "Loss",
          lines: [{ name: "train", group: "train", x: i32(steps), y: f32(41, (i) => 1 / (1 + i)) }],
        },
        {
          key: "lr",
          title: "Learning rate",
          lines: [{ name: "train", group: "train", x: i32(steps), y: f32(41, () => 0.1) }],
        },
      ],
    },
  };
}

function layer(): LayerState {
  const node = (name: string, parent: string, level: string, filters = 0): TreeNode => ({
    name,
    parent,
    level,
    params: 10,
    layer: filters > 0,
    filters,
  });
  const nodes = [
    node("model", "", "model"),
    node("a-stage-with-a-name-far-longer-than-the-gutter-is-wide", "model", "stage"),
    node("conv", "a-stage-with-a-name-far-longer-than-the-gutter-is-wide", "layer", 3),
  ];
  return {
    _view: "layer",
    link_id: LINK,
    tree: {
      step_range: STEPS,
      snapshot_step: i32(SNAPS),
      nodes,
      stats: ["mean_abs"],
      thresholds: [0.1],
      cosine_range: [0.5, 1],
    },
    series: {
      chart: "horizon",
      variable: "gradient",
      stat: "mean_abs",
      parts: ["mean_abs"],
      x: i32(SNAPS),
      level: 0,
      approximate: [],
      values: f32(nodes.length * 5, (i) => (i % 5) + 1, [nodes.length, 5, 1]),
    },
    changed_filters: [],
    chart: "horizon",
    variable: "gradient",
    stat: "mean_abs",
    same_scale: false,
    normalize: "filter",
    expanded: ["model", "a-stage-with-a-name-far-longer-than-the-gutter-is-wide"],
    layer: null,
    filter_index: null,
    picked_steps: [],
    time_window: null,
  };
}

function validation(): ValidationState {
  const names = ["cat", "a class name far longer than the gutter is wide, cut with an ellipsis"];
  return {
    _view: "validation",
    link_id: LINK,
    picked_steps: [],
    time_window: null,
    class_: null,
    sample_index: null,
    order: "mds",
    data: {
      step_range: STEPS,
      snapshot_step: i32(SNAPS),
      x0: i32(SNAPS),
      x1: i32(SNAPS),
      level: 0,
      labels: i32([0, 1]),
      names,
      accuracy: f32(10, (i) => (i % 5) / 4, [2, 5]),
      cluster: i32([]),
      cluster_accuracy: f32(0, () => 0, [0, 5]),
      order_mds: i32([0, 1]),
      order_peak: i32([1, 0]),
      peak: i32([0, 0]),
      shown: encode(Uint8Array.from([1, 1]), "uint8"),
      up: { class: i32([]), col: i32([]), count: i32([]) },
      down: { class: i32([]), col: i32([]), count: i32([]) },
      j: 1,
      threshold: 5,
      thumbnails: false,
      n_samples: 4,
    },
  };
}

function cube(): CubeState {
  return {
    _view: "cube",
    link_id: LINK,
    layer: null,
    class_: null,
    picked_steps: [],
    time_window: null,
    meta: {
      layers: ["conv1", "conv2"],
      n_classes: 2,
      step_range: STEPS,
      correlation_max: 4,
      page_size: 2,
      k: 10,
      metric: "filter_cosine",
      preset: "sustained",
    },
    faces: {
      level: 0,
      bucket_step_start: i32(SNAPS),
      bucket_step_stop: i32(SNAPS),
      front: f32(10, (i) => i + 1, [2, 5]),
      offset: 0,
      classes: [0, 1],
      class_names: ["cat", "dog"],
      top: f32(10, (i) => (i % 5) / 4, [2, 5]),
      flags: i32([0, 0, 1, 0, 0, 0, 0, 0, 0, 0], [2, 5]),
      correlation: i32([1, 0, 2, 3], [2, 2]),
      flag_steps: i32([20]),
      flag_offsets: i32([0, 1, 1]),
    },
  };
}

const cleanups: (() => void)[] = [];
afterEach(() => {
  for (const cleanup of cleanups.splice(0)) cleanup();
  document.body.replaceChildren();
});

/** Mount the four views as a dashboard does: one after another, same width, one link id. */
function mountBoard(): Record<string, HTMLElement> {
  const roots: Record<string, HTMLElement> = {};
  const views = [
    [
      "model_info",
      MODEL_INFO_CLASS,
      (el: HTMLElement) => renderModelInfo({ model: new FakeModel(modelInfo()), el }),
    ],
    ["layer", LAYER_CLASS, (el: HTMLElement) => renderLayer({ model: new FakeModel(layer()), el })],
    [
      "validation",
      VALIDATION_CLASS,
      (el: HTMLElement) => renderValidation({ model: new FakeModel(validation()), el }),
    ],
    ["cube", CUBE_CLASS, (el: HTMLElement) => renderCube({ model: new FakeModel(cube()), el })],
  ] as const;
  for (const [name, className, render] of views) {
    const el = document.createElement("div");
    document.body.append(el);
    cleanups.push(render(el));
    roots[name] = el.querySelector(`.${className}`) as HTMLElement;
  }
  return roots;
}

/** A length in pixels from a style (inline or computed); 0 when unset. */
function px(value: string | null | undefined): number {
  const n = Number.parseFloat(value ?? "");
  return Number.isFinite(n) ? n : 0;
}

const css = (node: Element | null) => getComputedStyle(node as Element);

/** Left and right edge, relative to each view's root, of its time-axis plot areas. */
function plotAreas(roots: Record<string, HTMLElement>): Record<string, [number, number][]> {
  const out: Record<string, [number, number][]> = {};
  const info = roots.model_info as HTMLElement;
  // The charts' SVGs span the root; their overlay rectangles are the plot areas.
  out.model_info = [...info.querySelectorAll("rect.fs-overlay")].map((rect) => {
    const x = px(rect.getAttribute("x"));
    return [x, x + px(rect.getAttribute("width"))];
  });
  const layerRoot = roots.layer as HTMLElement;
  // Each tree row: the label column (the gutter), then the chart canvas.
  out.layer = [...layerRoot.querySelectorAll(".fs-node-row")].map((row) => {
    const label = row.querySelector(".fs-node-label");
    const canvas = row.querySelector("canvas.fs-node-chart") as HTMLElement;
    const left = px(css(layerRoot.querySelector(".fs-body")).marginLeft) + px(css(label).width);
    return [left, left + px(canvas.style.width)];
  });
  const v = roots.validation as HTMLElement;
  // Body margin, class names, the gap between names and plot, then the canvas.
  const vLeft =
    px(css(v.querySelector(".fs-vbody")).marginLeft) +
    px(css(v.querySelector(".fs-vlabels")).width) +
    px(css(v.querySelector(".fs-vscroll")).columnGap || css(v.querySelector(".fs-vscroll")).gap);
  const vCanvas = v.querySelector("canvas.fs-vcanvas") as HTMLElement;
  out.validation = [[vLeft, vLeft + px(vCanvas.style.width)]];
  const c = roots.cube as HTMLElement;
  const stage = px(css(c.querySelector(".fs-cube-stage")).marginLeft);
  out.cube = ["top", "front"].map((face) => {
    const canvas = c.querySelector(`canvas.fs-face-${face}`) as HTMLElement;
    const left = stage + px(canvas.style.left);
    return [left, left + px(canvas.style.width)];
  });
  return out;
}

describe("the time-axis layout contract", () => {
  it("puts every view's plot area on the same [left, width - right]", () => {
    const roots = mountBoard();
    const width = FALLBACK_WIDTH; // jsdom lays nothing out: every view gets the same width
    const area = timeAxisArea(width);
    expect(area.left).toBe(TIME_AXIS_LAYOUT.left);
    expect(area.left + area.width).toBe(width - TIME_AXIS_LAYOUT.right);
    const areas = plotAreas(roots);
    expect(Object.keys(areas)).toEqual(["model_info", "layer", "validation", "cube"]);
    for (const [name, rects] of Object.entries(areas)) {
      expect(rects.length, name).toBeGreaterThan(0);
      for (const rect of rects) expect(rect, name).toEqual([area.left, area.left + area.width]);
    }
  });

  it("draws a hovered step's line at the same x in every view", () => {
    const roots = mountBoard();
    const area = timeAxisArea(FALLBACK_WIDTH);
    const link = linkBus(LINK);
    cleanups.push(link.release);
    link.bus.publish("hover", 30, "test");
    const expected = area.left + ((30 - STEPS[0]) / (STEPS[1] - STEPS[0])) * area.width;
    const info = roots.model_info as HTMLElement;
    const xs: Record<string, number[]> = {
      model_info: [...info.querySelectorAll("line.fs-hover")].map((l) => px(l.getAttribute("x1"))),
      layer: [...(roots.layer as HTMLElement).querySelectorAll<HTMLElement>(".fs-hover-line")].map(
        (l) => px(l.style.left),
      ),
    };
    const v = roots.validation as HTMLElement;
    const vLeft = plotAreas(roots).validation?.[0]?.[0] ?? Number.NaN;
    xs.validation = [...v.querySelectorAll<HTMLElement>(".fs-vhover")].map(
      (l) => vLeft + px(l.style.left),
    );
    xs.cube = [...(roots.cube as HTMLElement).querySelectorAll<HTMLElement>(".fs-cube-hover")]
      .filter((l) => !l.hidden)
      .map((l) => px(l.style.left));
    expect(xs.model_info).toHaveLength(2);
    expect(xs.cube).toHaveLength(2);
    for (const [name, values] of Object.entries(xs)) {
      expect(values.length, name).toBeGreaterThan(0);
      for (const x of values)
        expect(Math.abs(x - expected), `${name} at ${x}`).toBeLessThanOrEqual(0.5);
    }
  });

  it("cuts names wider than the gutter with an ellipsis, keeping the full name as a title", () => {
    const roots = mountBoard();
    const layerLabel = [
      ...(roots.layer as HTMLElement).querySelectorAll<HTMLElement>(".fs-node-label"),
    ].find((l) => l.textContent?.includes("far-longer"));
    expect(css(layerLabel ?? null).textOverflow).toBe("ellipsis");
    expect(css(layerLabel ?? null).overflow).toBe("hidden");
    expect(layerLabel?.title).toContain("a-stage-with-a-name-far-longer-than-the-gutter-is-wide");
    const vLabel = (roots.validation as HTMLElement).querySelector<HTMLElement>(
      '.fs-vlabel[data-cls="1"]',
    );
    expect(css(vLabel).textOverflow).toBe("ellipsis");
    expect(vLabel?.title).toContain("far longer than the gutter");
  });
});
