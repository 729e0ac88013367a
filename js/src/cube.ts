/**
 * The cube view: DeepTracker's three faces of a training run, unfolded around the front face.
 *
 * ```
 *  classes │ top:   classes × iterations (accuracy, ▲ where flagged)
 *  layers  │ front: layers × iterations (mean |grad|) │ right: layers × classes (correlation)
 * ```
 * The top face sits above the front face and shares its iteration axis, which is the shared
 * time-axis plot area of every view (`TIME_AXIS_LAYOUT`: layer and class names in the left
 * gutter), so a step is at the same x as in the other views of a dashboard and each bucket is
 * placed by its steps on the same linear scale. The right face sits beside the front face, in
 * the right margin of that contract, and shares its layer axis; its columns are the top face's
 * rows (the class axis is the cube's depth), as many classes as the margin holds. Scrolling the front or right face scrolls the layers of both; scrolling
 * the top face scrolls the classes of the top and right faces (locally); zooming time (drag or
 * shift+wheel on the front or top face) asks the kernel for the window at the finer index level
 * and tells linked views on the bus. Clicking a cell sets `layer`, `class_` and `picked_steps`
 * (the class's flagged iterations) on the model, so Python sees them. The Python side is
 * `filterscope.views.cube.CubeView`.
 */

import type { AnyModel, RenderProps } from "@anywidget/types";
import { type ColorScale, cellLayout, colorScale, type RGBA, rasterize, VIRIDIS } from "./canvas";
import { formatStep, type LinearScale, linearScale } from "./scale";
import { pickColor, ROOT_CLASS } from "./theme";
import { TIME_AXIS_LAYOUT } from "./timeaxis";
import type { EncodedArray } from "./transport";
import { type Decoded, decodeTree } from "./transport";
import { mountView, saveWindow, type ViewContext, type ViewDefinition } from "./view";

export const CUBE_CLASS = "filterscope-cube";

/** `CubeView.meta`. */
export interface CubeMeta {
  layers: string[];
  n_classes: number;
  step_range: [number, number];
  correlation_max: number;
  page_size: number;
  k: number;
  metric: string;
  preset: string;
}

/** `CubeView.faces` and its answer to the `faces` request. */
export interface WireCubeFaces {
  level: number;
  bucket_step_start: EncodedArray;
  bucket_step_stop: EncodedArray;
  /** layers × buckets: mean |gradient| per weight. */
  front: EncodedArray;
  offset: number;
  classes: (number | string)[];
  class_names: string[];
  /** classes × buckets: class accuracy. */
  top: EncodedArray;
  /** classes × buckets: flagged snapshots in the bucket. */
  flags: EncodedArray;
  /** layers × classes: distinct top-changed filters. */
  correlation: EncodedArray;
  flag_steps: EncodedArray;
  flag_offsets: EncodedArray;
}

export interface CubeState {
  _view: string;
  link_id?: string;
  meta: CubeMeta;
  faces: WireCubeFaces;
  layer: string | null;
  class_: number | string | null;
  picked_steps: number[];
  time_window: [number, number] | null;
}

type Faces = Decoded<WireCubeFaces>;

// ---- layout maths ---------------------------------------------------------------------------

export interface Rect {
  x: number;
  y: number;
  width: number;
  height: number;
}

export interface CubeLayout {
  width: number;
  height: number;
  /** Row labels of the top face (class names) and of the front face (layer names). */
  classLabels: Rect;
  layerLabels: Rect;
  top: Rect;
  front: Rect;
  right: Rect;
  /** Rows shown at once on each axis. */
  layerRows: number;
  classRows: number;
}

export interface LayoutOptions {
  /** Left edge of the iteration axis (top and front faces): the shared time-axis gutter. */
  left: number;
  /** Room right of the iteration axis (the shared right margin): the right face sits in it. */
  right: number;
  /** Empty room left of the row labels, and right of the right face. */
  pad: number;
  layerPx: number;
  classPx: number;
  maxLayerRows: number;
  maxClassRows: number;
  gap: number;
  axisHeight: number;
}

export const LAYOUT: LayoutOptions = {
  left: TIME_AXIS_LAYOUT.left,
  right: TIME_AXIS_LAYOUT.right,
  pad: 12,
  layerPx: 12,
  classPx: 12,
  maxLayerRows: 40,
  maxClassRows: 24,
  gap: 6,
  axisHeight: 18,
};

/**
 * Unfold the cube in `width` pixels: the top face above the front face (same x range: the
 * iteration axis, which is the shared time-axis plot area `[left, width - right]` of every view,
 * so a step lines up with the other views of a dashboard), the right face beside the front face
 * (same y range: the layer axis), inside the right margin, and as wide as the top face is high
 * (one class per `classPx`, the cube's depth: as many classes as the margin holds).
 */
export function cubeLayout(
  width: number,
  nLayers: number,
  nClasses: number,
  options: Partial<LayoutOptions> = {},
): CubeLayout {
  const o = { ...LAYOUT, ...options };
  const layerRows = Math.max(Math.min(nLayers, o.maxLayerRows), 0);
  // The right face lives in the right margin: it shows as many classes as fit there.
  const room = Math.floor((o.right - o.gap - o.pad) / o.classPx);
  const classRows = Math.max(Math.min(nClasses, o.maxClassRows, room), 0);
  const depth = classRows * o.classPx;
  const frontWidth = Math.max(Math.floor(width) - o.left - o.right, TIME_AXIS_LAYOUT.minWidth);
  const x = o.left;
  const top: Rect = { x, y: 0, width: frontWidth, height: depth };
  const frontY = depth + (depth > 0 ? o.gap : 0);
  const front: Rect = { x, y: frontY, width: frontWidth, height: layerRows * o.layerPx };
  const right: Rect = {
    x: x + frontWidth + o.gap,
    y: frontY,
    width: depth,
    height: front.height,
  };
  return {
    width,
    height: front.y + front.height + o.axisHeight,
    classLabels: { x: o.pad, y: 0, width: o.left - o.pad - 4, height: depth },
    layerLabels: { x: o.pad, y: frontY, width: o.left - o.pad - 4, height: front.height },
    top,
    front,
    right,
    layerRows,
    classRows,
  };
}

/** A scrollable row axis: `visible` rows from `offset` out of `total`. */
export interface RowAxis {
  offset: number;
  visible: number;
  total: number;
}

/** Scroll `axis` by `rows`, clamped so the window stays inside `0..total`. */
export function scrollRows(axis: RowAxis, rows: number): RowAxis {
  const max = Math.max(axis.total - axis.visible, 0);
  return { ...axis, offset: Math.min(Math.max(Math.round(axis.offset + rows), 0), max) };
}

/** Which row of the axis is `px` pixels into a face drawn `rowPx` per row, or null. */
export function rowAt(axis: RowAxis, px: number, rowPx: number): number | null {
  const i = Math.floor(px / rowPx);
  if (px < 0 || i >= axis.visible || axis.offset + i >= axis.total) return null;
  return axis.offset + i;
}

/** The bucket under `x` of a face `width` wide showing `n` equal buckets, or null. */
export function bucketAt(x: number, width: number, n: number): number | null {
  if (n <= 0 || width <= 0 || x < 0 || x >= width) return null;
  return Math.min(Math.floor((x / width) * n), n - 1);
}

/**
 * The bucket whose span holds `step` (the last one starting at or before it), or null outside
 * `starts[0]..stops[n - 1]`.
 */
export function bucketOfStep(
  step: number,
  starts: ArrayLike<number> & { length: number },
  stops: ArrayLike<number>,
): number | null {
  const n = starts.length;
  if (n === 0 || !(step >= (starts[0] as number)) || step > (stops[n - 1] as number) + 1) {
    return null;
  }
  let lo = 0;
  let hi = n - 1;
  while (lo < hi) {
    const mid = (lo + hi + 1) >> 1;
    if ((starts[mid] as number) <= step) lo = mid;
    else hi = mid - 1;
  }
  return lo;
}

/** Pixel x of `step` in a face of `width` whose buckets span `starts[i]..stops[i]` steps. */
export function stepToX(
  step: number,
  starts: ArrayLike<number>,
  stops: ArrayLike<number>,
  width: number,
): number | null {
  const n = starts.length;
  if (n === 0 || step < (starts[0] as number) || step > (stops[n - 1] as number)) return null;
  let lo = 0;
  let hi = n - 1;
  while (lo < hi) {
    const mid = (lo + hi + 1) >> 1;
    if ((starts[mid] as number) <= step) lo = mid;
    else hi = mid - 1;
  }
  const a = starts[lo] as number;
  const b = Math.max(stops[lo] as number, a);
  const within = b > a ? Math.min((step - a) / (b - a + 1), 1) : 0.5;
  return ((lo + within) / n) * width;
}

/**
 * Zoom the step window `current` by `factor` (< 1 zooms in) around the fraction `at` of it,
 * kept inside `extent` and at least `minSpan` steps wide; null when it covers the extent.
 */
export function zoomWindow(
  current: readonly [number, number],
  extent: readonly [number, number],
  at: number,
  factor: number,
  minSpan = 1,
): [number, number] | null {
  const [c0, c1] = current;
  const span = Math.max((c1 - c0) * factor, minSpan);
  const full = extent[1] - extent[0];
  if (span >= full) return null;
  const centre = c0 + (c1 - c0) * Math.min(Math.max(at, 0), 1);
  let start = centre - span * at;
  start = Math.min(Math.max(start, extent[0]), extent[1] - span);
  return [Math.floor(start), Math.ceil(start + span)];
}

// ---- colours --------------------------------------------------------------------------------

/** A colour scale through `stops` at their own positions in `0..1` of `domain`. */
export function piecewiseScale(
  domain: readonly [number, number],
  stops: readonly (readonly [number, RGBA])[],
  steps = 256,
  missing: RGBA = [0, 0, 0, 0],
): ColorScale {
  const lut = new Uint8ClampedArray(steps * 4);
  for (let i = 0; i < steps; i++) {
    const t = steps === 1 ? 0 : i / (steps - 1);
    let k = 0;
    while (k < stops.length - 2 && t > (stops[k + 1] as readonly [number, RGBA])[0]) k++;
    const [p0, c0] = stops[k] as readonly [number, RGBA];
    const [p1, c1] = (stops[Math.min(k + 1, stops.length - 1)] ?? stops[k]) as readonly [
      number,
      RGBA,
    ];
    const f = p1 > p0 ? Math.min(Math.max((t - p0) / (p1 - p0), 0), 1) : 0;
    for (let c = 0; c < 4; c++) {
      lut[i * 4 + c] = Math.round((c0[c] as number) + ((c1[c] as number) - (c0[c] as number)) * f);
    }
  }
  return { domain: [domain[0], domain[1]], lut, steps, missing };
}

function hex(color: string): RGBA {
  const n = Number.parseInt(color.slice(1), 16);
  return [(n >> 16) & 255, (n >> 8) & 255, n & 255, 255];
}

/** DeepTracker's class-accuracy scale: red at 0, pale yellow at 0.5, greens above. */
export const ACCURACY_STOPS: readonly (readonly [number, RGBA])[] = [
  [0, hex("#dd261c")],
  [0.5, hex("#ffffbf")],
  [0.52, hex("#d9ef8b")],
  [1, hex("#0e9247")],
];

/** Sequential blues of the correlation face, light to dark (ColorBrewer Blues 3..9). */
export const BLUE_STOPS: readonly RGBA[] = [
  hex("#c6dbef"),
  hex("#9ecae1"),
  hex("#6baed6"),
  hex("#4292c6"),
  hex("#2171b5"),
  hex("#08519c"),
  hex("#08306b"),
];

/** The blue scale for counts `1..max`; a count of 0 (no shared filter) is left transparent. */
export function blueScale(max: number): ColorScale {
  return colorScale([1, Math.max(max, 1)], BLUE_STOPS);
}

/** Count → value for `blueScale`: NaN (transparent) for 0. */
export function correlationValue(count: number): number {
  return count > 0 ? count : Number.NaN;
}

/**
 * Each row of a `rows × cols` grid scaled to `0..1` on a log scale over its own robust range
 * (the `tail` and `1 - tail` quantiles of its positive values, clamped): a layer's gradient
 * magnitude spans decades, differs between layers by more, and a few early steps would
 * otherwise take the whole colour range. `range` (columns `[first, end)`, default all) sets
 * which columns the range is taken over: the visible ones of a zoomed face.
 */
export function rowNormalize(
  values: ArrayLike<number>,
  rows: number,
  cols: number,
  tail = 0.02,
  range: readonly [number, number] = [0, cols],
): Float32Array {
  const out = new Float32Array(rows * cols);
  const logs = new Float64Array(cols);
  const [c0, c1] = range;
  for (let r = 0; r < rows; r++) {
    let n = 0;
    for (let c = c0; c < c1; c++) {
      const v = values[r * cols + c] as number;
      if (v > 0 && Number.isFinite(v)) logs[n++] = Math.log10(v);
    }
    const sorted = logs.subarray(0, n).sort();
    const lo = n > 0 ? (sorted[Math.floor(tail * (n - 1))] as number) : 0;
    const hi = n > 0 ? (sorted[Math.ceil((1 - tail) * (n - 1))] as number) : 0;
    for (let c = 0; c < cols; c++) {
      const v = values[r * cols + c] as number;
      if (!(v > 0) || !Number.isFinite(v)) out[r * cols + c] = Number.NaN;
      else if (hi > lo)
        out[r * cols + c] = Math.min(Math.max((Math.log10(v) - lo) / (hi - lo), 0), 1);
      else out[r * cols + c] = 0.5;
    }
  }
  return out;
}

/** Rows `offset..offset+count` and columns `c0..c0+nc` of a row-major `cols`-wide grid. */
export function subGrid(
  values: ArrayLike<number>,
  cols: number,
  offset: number,
  count: number,
  c0 = 0,
  nc = cols,
): Float32Array {
  const out = new Float32Array(count * nc);
  for (let r = 0; r < count; r++) {
    for (let c = 0; c < nc; c++) {
      out[r * nc + c] = values[(offset + r) * cols + c0 + c] as number;
    }
  }
  return out;
}

// ---- the view -------------------------------------------------------------------------------

const STYLE_ID = "filterscope-cube-styles";
const CSS = `
.${ROOT_CLASS}.${CUBE_CLASS} .fs-cube-stage { position: relative; margin: 0; }
.${ROOT_CLASS}.${CUBE_CLASS} canvas.fs-face {
  position: absolute; display: block; outline: 1px solid var(--fs-grid); cursor: crosshair;
}
.${ROOT_CLASS}.${CUBE_CLASS} .fs-cube-labels { position: absolute; overflow: hidden; }
.${ROOT_CLASS}.${CUBE_CLASS} .fs-cube-label {
  overflow: hidden; white-space: nowrap; text-overflow: ellipsis; text-align: right;
  font-size: 10px; color: var(--fs-fg-muted); cursor: pointer;
}
.${ROOT_CLASS}.${CUBE_CLASS} .fs-cube-label.fs-selected { color: var(--fs-fg); font-weight: 600; }
.${ROOT_CLASS}.${CUBE_CLASS} .fs-cube-axis {
  position: absolute; display: flex; justify-content: space-between; white-space: nowrap;
  font-size: 10px; color: var(--fs-fg-muted);
}
.${ROOT_CLASS}.${CUBE_CLASS} .fs-cube-hover {
  position: absolute; width: 1px; background: var(--fs-fg); opacity: 0.6; pointer-events: none;
}
.${ROOT_CLASS}.${CUBE_CLASS} .fs-cube-brush {
  position: absolute; background: var(--fs-accent); opacity: 0.2; pointer-events: none;
}
.${ROOT_CLASS}.${CUBE_CLASS} .fs-cube-legend {
  display: inline-block; width: 80px; height: 8px; vertical-align: middle; border-radius: 2px;
  background: linear-gradient(to right, ${BLUE_STOPS.map((c) => `rgb(${c[0]},${c[1]},${c[2]})`).join(", ")});
}
.${ROOT_CLASS}.${CUBE_CLASS} .fs-cube-selection { color: var(--fs-fg); }
`;

function injectCubeStyles(doc: Document): void {
  if (doc.getElementById(STYLE_ID) !== null) return;
  const style = doc.createElement("style");
  style.id = STYLE_ID;
  style.textContent = CSS;
  doc.head.append(style);
}

type Face = "top" | "front" | "right";

interface Hit {
  face: Face;
  layer: number | null;
  cls: number | null;
  bucket: number | null;
}

const DRAG_PX = 4;
const MAX_PICKS = 32;

function el<K extends keyof HTMLElementTagNameMap>(tag: K, className: string, text?: string) {
  const node = document.createElement(tag);
  node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function place(node: HTMLElement, r: Rect): void {
  node.style.left = `${r.x}px`;
  node.style.top = `${r.y}px`;
  node.style.width = `${r.width}px`;
  node.style.height = `${r.height}px`;
}

class CubeView {
  private readonly model: AnyModel<CubeState>;
  private readonly root: HTMLElement;
  private readonly meta: CubeMeta;
  private faces: Faces;
  private layout: CubeLayout;
  private layers: RowAxis;
  private classes: RowAxis;
  private readonly stage = el("div", "fs-cube-stage");
  private readonly canvases: Record<Face, HTMLCanvasElement>;
  private readonly layerLabels = el("div", "fs-cube-labels fs-cube-layer-labels");
  private readonly classLabels = el("div", "fs-cube-labels fs-cube-class-labels");
  private readonly axis = el("div", "fs-cube-axis");
  private readonly classAxis = el("div", "fs-cube-axis fs-cube-class-axis");
  private readonly hoverLines = [el("div", "fs-cube-hover"), el("div", "fs-cube-hover")];
  private readonly brushBox = el("div", "fs-cube-brush");
  private readonly readout = el("span", "fs-hint fs-cube-selection");
  private readonly pageInfo = el("span", "fs-hint fs-cube-page");
  private readonly resetButton = el("button", "fs-button fs-reset", "show all steps");
  private readonly prev = el("button", "fs-button fs-cube-prev", "‹");
  private readonly next = el("button", "fs-button fs-cube-next", "›");
  private readonly cleanups: (() => void)[] = [];
  private hover: number | null = null;
  private window: [number, number] | null = null;
  /** The faces of a page over the whole run at level 0 (every snapshot): zooms need no request. */
  private exact: Faces | null = null;
  private latest = 0;
  private destroyed = false;
  private fromBus = false;

  constructor(private readonly context: ViewContext<CubeState>) {
    const { model, root, bus } = context;
    this.model = model;
    this.root = root;
    injectCubeStyles(root.ownerDocument);
    this.meta = model.get("meta");
    this.faces = decodeTree(model.get("faces"));
    if (this.faces.level === 0) this.exact = this.faces;
    this.window = model.get("time_window") ?? null;

    const header = el("div", "fs-header");
    const legend = el("span", "fs-hint");
    legend.append(
      `correlation: top-${this.meta.k} changed filters over flagged iterations 1 `,
      el("span", "fs-cube-legend"),
      ` ${this.meta.correlation_max}`,
    );
    this.resetButton.title = "Zoom out to the whole run";
    this.resetButton.addEventListener("click", () => this.zoom(null));
    this.prev.title = "Previous classes";
    this.next.title = "Next classes";
    this.prev.addEventListener("click", () => this.page(-1));
    this.next.addEventListener("click", () => this.page(1));
    header.append(
      el("span", "fs-title", "Cube"),
      this.prev,
      this.pageInfo,
      this.next,
      this.resetButton,
      legend,
      this.readout,
    );
    const hint = el(
      "div",
      "fs-hint fs-cube-hint",
      "click: select layer + class · wheel: scroll rows · drag or shift+wheel: zoom time · double-click: zoom out",
    );
    hint.style.margin = "0 12px 4px";
    root.append(header, hint, this.stage);

    this.canvases = {
      top: el("canvas", "fs-face fs-face-top"),
      front: el("canvas", "fs-face fs-face-front"),
      right: el("canvas", "fs-face fs-face-right"),
    };
    for (const [face, canvas] of Object.entries(this.canvases) as [Face, HTMLCanvasElement][]) {
      canvas.dataset.face = face;
      this.attach(face, canvas);
    }
    this.stage.append(
      this.classLabels,
      this.layerLabels,
      this.canvases.top,
      this.canvases.front,
      this.canvases.right,
      this.axis,
      this.classAxis,
      ...this.hoverLines,
      this.brushBox,
    );
    this.brushBox.hidden = true;

    this.layout = cubeLayout(context.width, this.meta.layers.length, this.faces.classes.length);
    this.layers = { offset: 0, visible: this.layout.layerRows, total: this.meta.layers.length };
    this.classes = { offset: 0, visible: this.layout.classRows, total: this.faces.classes.length };

    this.cleanups.push(
      bus.subscribe("hover", this, (step) => {
        this.hover = step;
        this.drawHover();
      }),
      bus.subscribe("window", this, (w) =>
        this.fromLink(() => this.setWindow(w === null ? null : [w[0], w[1]])),
      ),
    );
    this.resize(context.width);
    // The first picture has the kernel's default width; ask for as many buckets as pixels.
    const n = this.faces.bucket_step_start.data.length;
    if (this.window !== null || n > this.layout.front.width) this.load();
  }

  private fromLink(apply: () => void): void {
    this.fromBus = true;
    try {
      apply();
    } finally {
      this.fromBus = false;
    }
  }

  resize(width: number): void {
    this.layout = cubeLayout(width, this.meta.layers.length, this.faces.classes.length);
    this.layers = scrollRows({ ...this.layers, visible: this.layout.layerRows }, 0);
    this.classes = scrollRows(
      { ...this.classes, visible: this.layout.classRows, total: this.faces.classes.length },
      0,
    );
    this.stage.style.height = `${this.layout.height}px`;
    this.draw();
  }

  changed(key: string): void {
    if (key === "time_window") {
      const w = this.model.get("time_window") ?? null;
      const same =
        w === this.window ||
        (w && this.window && w[0] === this.window[0] && w[1] === this.window[1]);
      if (!same) this.setWindow(w);
      return;
    }
    this.draw();
  }

  // ---- data ----------------------------------------------------------------------------------

  private setWindow(w: [number, number] | null): void {
    this.window = w;
    this.load();
  }

  private load(offset = this.faces.offset): void {
    const id = ++this.latest;
    if (this.exact !== null && this.exact.offset === offset) {
      // Every snapshot of this page is here already: any window is drawn from it, exactly.
      this.faces = this.exact;
      this.root.dataset.pending = "";
      this.root.dataset.detail = "local";
      this.draw();
      return;
    }
    const params: Record<string, unknown> = {
      offset,
      count: this.meta.page_size,
      columns: Math.max(Math.floor(this.layout.front.width), 1),
    };
    if (this.window !== null) {
      params.start = this.window[0];
      params.stop = this.window[1];
    }
    this.root.dataset.pending = "1";
    this.context.requests.latest<WireCubeFaces>("faces", "faces", params).then(
      (faces) => {
        if (this.destroyed || id !== this.latest) return;
        const newPage = faces.offset !== this.faces.offset;
        this.faces = faces;
        if (faces.level === 0 && params.start === undefined) this.exact = faces;
        this.root.dataset.detail = params.start === undefined ? "overview" : "window";
        if (newPage) this.classes = { ...this.classes, offset: 0 };
        this.root.dataset.pending = "";
        this.resize(this.context.width);
      },
      (error: Error) => {
        if (this.destroyed || id !== this.latest) return;
        this.root.dataset.pending = "";
        console.warn(`filterscope: CubeView could not load the faces: ${error.message}`);
      },
    );
  }

  private page(direction: number): void {
    const size = this.meta.page_size;
    const offset = this.faces.offset + direction * size;
    if (offset < 0 || offset >= this.meta.n_classes) return;
    this.load(offset);
  }

  private zoom(w: [number, number] | null): void {
    if (w !== null && w[1] <= w[0]) return;
    this.window = w;
    if (!this.fromBus) this.context.bus.publish("window", w, this);
    saveWindow(this.model, w);
    this.load();
  }

  // ---- time axis -----------------------------------------------------------------------------

  /** The visible steps: the zoom window, else the whole run (as every view's time axis). */
  private get steps(): [number, number] {
    return this.window ?? this.meta.step_range;
  }

  /** Steps → x in a face `width` pixels wide: linear, as the other views' time axes. */
  private timeScale(width: number): LinearScale {
    return linearScale(this.steps, [0, width]);
  }

  /** Buckets `[first, last + 1)` that overlap the visible steps (all when none do). */
  private visibleBuckets(): [number, number] {
    const f = this.faces;
    const [s0, s1] = this.steps;
    const n = f.bucket_step_start.data.length;
    let first = 0;
    while (first < n && (f.bucket_step_stop.data[first] as number) < s0) first++;
    let end = first;
    while (end < n && (f.bucket_step_start.data[end] as number) <= s1) end++;
    return end > first ? [first, end] : [0, n];
  }

  /** The bucket drawn at `x` pixels into a time face, or null. */
  private bucketAtX(x: number, width: number): number | null {
    if (x < 0 || x > width) return null;
    const f = this.faces;
    const step = this.timeScale(width).invert(x);
    return bucketOfStep(step, f.bucket_step_start.data, f.bucket_step_stop.data);
  }

  /** Bucket of every device-pixel column of a time face `w` device pixels wide (-1: none). */
  private columnsOf(w: number): Int32Array {
    const f = this.faces;
    const scale = linearScale(this.steps, [0, w]);
    const out = new Int32Array(w);
    for (let p = 0; p < w; p++) {
      const b = bucketOfStep(
        Math.round(scale.invert(p + 0.5)),
        f.bucket_step_start.data,
        f.bucket_step_stop.data,
      );
      out[p] = b ?? -1;
    }
    return out;
  }

  // ---- pointer -------------------------------------------------------------------------------

  private hit(face: Face, x: number, y: number): Hit {
    const L = LAYOUT;
    const r = this.layout[face];
    if (face === "front") {
      return {
        face,
        layer: rowAt(this.layers, y, L.layerPx),
        cls: null,
        bucket: this.bucketAtX(x, r.width),
      };
    }
    if (face === "top") {
      return {
        face,
        layer: null,
        cls: rowAt(this.classes, y, L.classPx),
        bucket: this.bucketAtX(x, r.width),
      };
    }
    return {
      face,
      layer: rowAt(this.layers, y, L.layerPx),
      cls: rowAt(this.classes, x, L.classPx),
      bucket: null,
    };
  }

  private attach(face: Face, canvas: HTMLCanvasElement): void {
    let down: { x: number; y: number } | null = null;
    const local = (event: MouseEvent) => {
      const box = canvas.getBoundingClientRect();
      return { x: event.clientX - box.left, y: event.clientY - box.top };
    };
    const stepRange = (x0: number, x1: number): [number, number] | null => {
      const w = this.layout[face].width;
      if (w <= 0) return null;
      const scale = this.timeScale(w);
      const a = scale.invert(Math.max(Math.min(x0, x1), 0));
      const b = scale.invert(Math.min(Math.max(x0, x1), w));
      return [Math.floor(a), Math.ceil(b)];
    };
    const onDown = (event: PointerEvent) => {
      down = local(event);
    };
    const onMove = (event: PointerEvent) => {
      const p = local(event);
      if (face !== "right") {
        const h = this.hit(face, p.x, p.y);
        const step =
          h.bucket === null ? null : (this.faces.bucket_step_start.data[h.bucket] as number);
        if (step !== this.hover) {
          this.hover = step;
          this.context.bus.publish("hover", step, this);
          this.drawHover();
        }
        if (down !== null && Math.abs(p.x - down.x) > DRAG_PX) {
          const r = this.layout[face];
          const x0 = Math.max(Math.min(down.x, p.x), 0);
          const x1 = Math.min(Math.max(down.x, p.x), r.width);
          place(this.brushBox, {
            x: r.x + x0,
            y: this.layout.top.y,
            width: x1 - x0,
            height: this.layout.front.y + this.layout.front.height - this.layout.top.y,
          });
          this.brushBox.hidden = false;
        }
      }
    };
    const onUp = (event: PointerEvent) => {
      const start = down;
      down = null;
      this.brushBox.hidden = true;
      if (start === null) return;
      const p = local(event);
      if (face !== "right" && Math.abs(p.x - start.x) > DRAG_PX) {
        const w = stepRange(start.x, p.x);
        if (w !== null && w[1] > w[0]) this.zoom(w);
        return;
      }
      this.click(this.hit(face, p.x, p.y));
    };
    const onLeave = () => {
      if (face !== "right" && this.hover !== null) {
        this.hover = null;
        this.context.bus.publish("hover", null, this);
        this.drawHover();
      }
    };
    const onWheel = (event: WheelEvent) => {
      const p = local(event);
      if (event.shiftKey && face !== "right") {
        if (this.faces.bucket_step_start.data.length === 0) return;
        event.preventDefault();
        const current = this.steps;
        const delta = event.deltaY || event.deltaX;
        const next = zoomWindow(
          current,
          this.meta.step_range,
          p.x / this.layout[face].width,
          delta > 0 ? 1.25 : 0.8,
        );
        this.zoom(next);
        return;
      }
      const alongClasses =
        face === "top" || (face === "right" && Math.abs(event.deltaX) > Math.abs(event.deltaY));
      const axis = alongClasses ? this.classes : this.layers;
      const rows = Math.sign(event.deltaY || event.deltaX) * 3;
      const moved = scrollRows(axis, rows);
      if (moved.offset === axis.offset) return; // let the notebook scroll
      event.preventDefault();
      if (alongClasses) this.classes = moved;
      else this.layers = moved;
      this.draw();
    };
    canvas.addEventListener("pointerdown", onDown);
    canvas.addEventListener("pointermove", onMove);
    canvas.addEventListener("pointerup", onUp);
    canvas.addEventListener("pointerleave", onLeave);
    canvas.addEventListener("wheel", onWheel, { passive: false });
    canvas.addEventListener("dblclick", () => this.zoom(null));
    this.cleanups.push(() => {
      canvas.removeEventListener("pointerdown", onDown);
      canvas.removeEventListener("pointermove", onMove);
      canvas.removeEventListener("pointerup", onUp);
      canvas.removeEventListener("pointerleave", onLeave);
      canvas.removeEventListener("wheel", onWheel);
    });
  }

  private click(h: Hit): void {
    const changes: Partial<CubeState> = {};
    if (h.layer !== null) changes.layer = this.meta.layers[h.layer] ?? null;
    if (h.cls !== null) {
      changes.class_ = this.faces.classes[h.cls] ?? null;
      changes.picked_steps = this.flaggedSteps(h.cls).slice(0, MAX_PICKS);
    }
    if (Object.keys(changes).length === 0) return;
    for (const [key, value] of Object.entries(changes)) {
      this.model.set(key as keyof CubeState, value as never);
    }
    this.model.save_changes();
    this.draw();
  }

  private flaggedSteps(cls: number): number[] {
    const offsets = this.faces.flag_offsets.data;
    const steps = this.faces.flag_steps.data;
    const out: number[] = [];
    for (let i = offsets[cls] as number; i < (offsets[cls + 1] as number); i++) {
      out.push(steps[i] as number);
    }
    return out;
  }

  // ---- drawing -------------------------------------------------------------------------------

  private paint(
    face: Face,
    grid: Float32Array,
    rows: number,
    cols: number,
    scale: ColorScale,
    time = false,
  ): CanvasRenderingContext2D | null {
    const canvas = this.canvases[face];
    const r = this.layout[face];
    place(canvas, r);
    canvas.hidden = r.width <= 0 || r.height <= 0;
    const ratio = globalThis.devicePixelRatio || 1;
    const w = Math.round(r.width * ratio);
    const h = Math.round(r.height * ratio);
    canvas.width = w;
    canvas.height = h;
    const ctx = canvas.getContext("2d");
    if (ctx === null || w === 0 || h === 0) return null;
    const image = ctx.createImageData(w, h);
    if (rows > 0 && cols > 0) {
      const cells = cellLayout(rows, cols, w, h);
      // Time faces place each bucket by its steps on the shared linear time axis.
      const layout = time ? { ...cells, colOfPixel: this.columnsOf(cells.width) } : cells;
      rasterize(grid, layout, scale, image.data);
    }
    ctx.putImageData(image, 0, 0);
    ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
    return ctx;
  }

  draw(): void {
    const f = this.faces;
    const nB = f.bucket_step_start.data.length;
    const nL = this.meta.layers.length;
    const nC = f.classes.length;
    const L = LAYOUT;
    const lay = this.layers;
    const cla = this.classes;
    const layerSel = this.model.get("layer");
    const classSel = this.model.get("class_");
    const selLayer = layerSel === null ? -1 : this.meta.layers.indexOf(layerSel);
    const selClass =
      classSel === null ? -1 : f.classes.findIndex((c) => String(c) === String(classSel));

    // Front: layers × buckets, each layer on its own log range.
    const front = subGrid(
      rowNormalize(f.front.data, nL, nB, 0.02, this.visibleBuckets()),
      nB,
      lay.offset,
      lay.visible,
    );
    const fctx = this.paint("front", front, lay.visible, nB, colorScale([0, 1], VIRIDIS), true);
    // Top: classes × buckets, accuracy, ▲ where flagged.
    const top = subGrid(f.top.data, nB, cla.offset, cla.visible);
    const tctx = this.paint(
      "top",
      top,
      cla.visible,
      nB,
      piecewiseScale([0, 1], ACCURACY_STOPS),
      true,
    );
    if (tctx !== null) {
      const sx = this.timeScale(this.layout.top.width);
      const size = L.classPx - 3;
      tctx.fillStyle = "#111827";
      tctx.strokeStyle = "#ffffff";
      tctx.lineWidth = 0.75;
      for (let r = 0; r < cla.visible; r++) {
        for (let b = 0; b < nB; b++) {
          if ((f.flags.data[(cla.offset + r) * nB + b] as number) <= 0) continue;
          const start = f.bucket_step_start.data[b] as number;
          const cx = sx((start + (f.bucket_step_stop.data[b] as number)) / 2);
          if (cx < 0 || cx > this.layout.top.width) continue;
          const cy = r * L.classPx + L.classPx / 2;
          tctx.beginPath();
          tctx.moveTo(cx, cy - size / 2);
          tctx.lineTo(cx + size / 2, cy + size / 2);
          tctx.lineTo(cx - size / 2, cy + size / 2);
          tctx.closePath();
          tctx.fill();
          tctx.stroke();
        }
      }
    }
    // Right: layers × classes, correlation on the blue scale, 0 transparent.
    const right = subGrid(f.correlation.data, nC, lay.offset, lay.visible, cla.offset, cla.visible);
    for (let i = 0; i < right.length; i++) right[i] = correlationValue(right[i] as number);
    const rctx = this.paint(
      "right",
      right,
      lay.visible,
      cla.visible,
      blueScale(this.meta.correlation_max),
    );

    // Selection outlines and picks.
    const outline = (ctx: CanvasRenderingContext2D | null, r: Rect) => {
      if (ctx === null) return;
      ctx.strokeStyle = "#e11d48";
      ctx.lineWidth = 1.5;
      ctx.strokeRect(
        r.x + 0.75,
        r.y + 0.75,
        Math.max(r.width - 1.5, 0),
        Math.max(r.height - 1.5, 0),
      );
    };
    const layerRow = selLayer - lay.offset;
    const classRow = selClass - cla.offset;
    if (selLayer >= 0 && layerRow >= 0 && layerRow < lay.visible) {
      outline(fctx, {
        x: 0,
        y: layerRow * L.layerPx,
        width: this.layout.front.width,
        height: L.layerPx,
      });
      outline(rctx, {
        x: 0,
        y: layerRow * L.layerPx,
        width: this.layout.right.width,
        height: L.layerPx,
      });
    }
    if (selClass >= 0 && classRow >= 0 && classRow < cla.visible) {
      outline(tctx, {
        x: 0,
        y: classRow * L.classPx,
        width: this.layout.top.width,
        height: L.classPx,
      });
      outline(rctx, {
        x: classRow * L.classPx,
        y: 0,
        width: L.classPx,
        height: this.layout.right.height,
      });
    }
    const picks = this.model.get("picked_steps") ?? [];
    for (const [face, ctx] of [
      ["top", tctx],
      ["front", fctx],
    ] as const) {
      if (ctx === null) continue;
      const r = this.layout[face];
      picks.forEach((step, i) => {
        const x = this.timeScale(r.width)(step);
        if (x < 0 || x > r.width) return;
        ctx.strokeStyle = pickColor(i);
        ctx.lineWidth = 1.5;
        ctx.beginPath();
        ctx.moveTo(x, 0);
        ctx.lineTo(x, r.height);
        ctx.stroke();
      });
    }

    this.drawLabels(selLayer, selClass);
    this.drawAxis();
    this.drawHover();
    const last = Math.min(f.offset + nC, this.meta.n_classes);
    this.pageInfo.textContent = `classes ${f.offset + 1}–${last} of ${this.meta.n_classes}`;
    this.prev.disabled = f.offset === 0;
    this.next.disabled = f.offset + this.meta.page_size >= this.meta.n_classes;
    this.resetButton.hidden = this.window === null;
    this.renderReadout(selLayer, selClass);
    this.root.dataset.level = String(f.level);
    // The buckets drawn: all of a page's, or those of the window zoomed into locally.
    const [b0, b1] = this.visibleBuckets();
    this.root.dataset.buckets = String(b1 - b0);
    this.root.dataset.classOffset = String(cla.offset);
    this.root.dataset.layerOffset = String(lay.offset);
  }

  private drawLabels(selLayer: number, selClass: number): void {
    place(this.layerLabels, this.layout.layerLabels);
    place(this.classLabels, this.layout.classLabels);
    const rows = (
      names: string[],
      axis: RowAxis,
      px: number,
      selected: number,
      onClick: (i: number) => void,
    ) => {
      const out: HTMLElement[] = [];
      for (let i = axis.offset; i < axis.offset + axis.visible && i < names.length; i++) {
        const row = el("div", `fs-cube-label${i === selected ? " fs-selected" : ""}`, names[i]);
        row.style.height = `${px}px`;
        row.style.lineHeight = `${px}px`;
        row.title = names[i] ?? "";
        row.addEventListener("click", () => onClick(i));
        out.push(row);
      }
      return out;
    };
    this.layerLabels.replaceChildren(
      ...rows(this.meta.layers, this.layers, LAYOUT.layerPx, selLayer, (i) =>
        this.click({ face: "front", layer: i, cls: null, bucket: null }),
      ),
    );
    const names = this.faces.class_names.map((n, i) => `${n} (${this.faces.classes[i]})`);
    this.classLabels.replaceChildren(
      ...rows(names, this.classes, LAYOUT.classPx, selClass, (i) =>
        this.click({ face: "top", layer: null, cls: i, bucket: null }),
      ),
    );
  }

  private drawAxis(): void {
    const f = this.faces;
    const n = f.bucket_step_start.data.length;
    const r = this.layout.front;
    place(this.axis, { x: r.x, y: r.y + r.height + 2, width: r.width, height: LAYOUT.axisHeight });
    if (n === 0) {
      this.axis.replaceChildren();
      return;
    }
    const [b0, b1] = this.visibleBuckets();
    const first = Math.max(f.bucket_step_start.data[b0] as number, this.steps[0]);
    const lastStep = Math.min(f.bucket_step_stop.data[b1 - 1] as number, this.steps[1]);
    this.axis.replaceChildren(
      el("span", "", `step ${formatStep(first)}`),
      el("span", "", "iterations →"),
      el("span", "", `step ${formatStep(lastStep)}`),
    );
    const rr = this.layout.right;
    place(this.classAxis, {
      x: rr.x,
      y: rr.y + rr.height + 2,
      width: rr.width,
      height: LAYOUT.axisHeight,
    });
    this.classAxis.hidden = rr.width < 48;
    // The right face sits in the narrow right margin of the shared time axis: a short caption.
    this.classAxis.title = "classes: the rows of the top face";
    this.classAxis.replaceChildren(el("span", "", "classes →"));
  }

  private drawHover(): void {
    for (const [i, face] of (["top", "front"] as const).entries()) {
      const line = this.hoverLines[i] as HTMLElement;
      const r = this.layout[face];
      const at = this.hover === null ? null : this.timeScale(r.width)(this.hover);
      const x = at === null || at < 0 || at > r.width ? null : at;
      line.hidden = x === null || r.height === 0;
      if (x !== null) place(line, { x: r.x + x, y: r.y, width: 1, height: r.height });
    }
  }

  private renderReadout(selLayer: number, selClass: number): void {
    const layer = this.model.get("layer");
    const cls = this.model.get("class_");
    this.root.dataset.layer = layer ?? "";
    this.root.dataset.class = cls === null ? "" : String(cls);
    const parts: string[] = [];
    if (layer !== null) parts.push(`layer ${layer}`);
    if (cls !== null) {
      const name = selClass >= 0 ? this.faces.class_names[selClass] : undefined;
      parts.push(`class ${name === undefined ? cls : `${name} (${cls})`}`);
    }
    if (selLayer >= 0 && selClass >= 0) {
      const nC = this.faces.classes.length;
      parts.push(`${this.faces.correlation.data[selLayer * nC + selClass]} shared top filters`);
    }
    const picks = this.model.get("picked_steps") ?? [];
    if (picks.length > 0) parts.push(`${picks.length} picked`);
    this.readout.textContent = parts.join(" · ");
  }

  destroy(): void {
    this.destroyed = true;
    for (const cleanup of this.cleanups) cleanup();
  }
}

export const CUBE: ViewDefinition<CubeState> = {
  className: CUBE_CLASS,
  rebuildOn: ["faces", "meta"],
  listen: ["layer", "class_", "picked_steps", "time_window"],
  create: (context) => new CubeView(context),
};

/** anywidget `render` for `CubeView`; returns the cleanup that detaches it from the model. */
export function renderCube({
  model,
  el: node,
}: Pick<RenderProps<CubeState>, "model" | "el">): () => void {
  return mountView(CUBE, { model, el: node });
}
