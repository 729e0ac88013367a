/**
 * The validation view (DeepTracker): class clusters → classes → images, one heat line each.
 *
 * A cluster or class line is coloured by accuracy on DeepTracker's diverging scale; triangles
 * mark the snapshots where a class's unstable-image count (abLeft up, abRight down one column
 * later) reaches the threshold, sized by the count. Clicking a class name expands it: its image
 * rows (green correct, red wrong, MDS order) are asked of the kernel (`rows` request) and the
 * class becomes the selection's `class_`; clicking an image row selects `sample_index` and shows
 * the thumbnail (`thumbnail` request, PNG bytes). The time axis is shared with the other views
 * of the selection through the link bus (hover, brush, zoom); picks and zoom are model state.
 * Everything is drawn into one canvas (`canvas.ts`' colour tables); labels are DOM text.
 * The Python side is `filterscope.views.validation.ValidationView`.
 */

import type { AnyModel, RenderProps } from "@anywidget/types";
import { type ColorScale, colorIndex, type RGBA } from "./canvas";
import { lastAtOrBefore } from "./chart";
import { formatStep, niceTicks } from "./scale";
import { pickColor } from "./theme";
import {
  attachPointer,
  TIME_AXIS_LAYOUT,
  TimeAxis,
  timeAxisArea,
  togglePick,
  type Window,
} from "./timeaxis";
import {
  type Decoded,
  decodeTree,
  type EncodedArray,
  type NdArray,
  type TypedArray,
} from "./transport";
import { linkAxis, mountView, type ViewContext, type ViewDefinition, zoomAxis } from "./view";

export const VALIDATION_CLASS = "filterscope-validation";

interface WireMarks {
  class: EncodedArray;
  col: EncodedArray;
  count: EncodedArray;
}

/** `ValidationView.data`: the overview (see docs/api.md). */
export interface WireValidation {
  step_range: [number, number];
  snapshot_step: EncodedArray;
  /** First and last step of each column (a snapshot, or a bucket of `2**level`). */
  x0: EncodedArray;
  x1: EncodedArray;
  level: number;
  labels: EncodedArray;
  names: string[];
  /** `(class, column)` accuracy as uint8 codes (`decodeAccuracy`). */
  accuracy: EncodedArray;
  /** Cluster of every class (empty: no clusters), `-1` for classes without samples. */
  cluster: EncodedArray;
  cluster_accuracy: EncodedArray;
  order_mds: EncodedArray;
  order_peak: EncodedArray;
  peak: EncodedArray;
  shown: EncodedArray;
  up: WireMarks;
  down: WireMarks;
  j: number;
  threshold: number;
  thumbnails: boolean;
  n_samples: number;
}

/** The answer to `rows`: one row per image of a class. */
export interface WireRows {
  class_: number | string;
  samples: EncodedArray;
  /** `(image, column)` fraction correct. */
  values: EncodedArray;
  total: number;
}

export interface WireThumbnail {
  sample: number;
  png: EncodedArray;
  width: number;
  height: number;
}

/** The answer to `window`: the columns over a zoomed window, at the finer level. */
export interface WireValidationWindow {
  window: [number, number];
  level: number;
  x0: EncodedArray;
  x1: EncodedArray;
  accuracy: EncodedArray;
  cluster_accuracy: EncodedArray;
  up: WireMarks;
  down: WireMarks;
}

export type ClassOrder = "mds" | "peak";

export interface ValidationState {
  _view: string;
  link_id?: string;
  data: WireValidation;
  picked_steps: number[];
  time_window: [number, number] | null;
  class_: number | string | null;
  sample_index: number | null;
  order: ClassOrder;
}

type Data = Decoded<WireValidation>;
/** What the canvas draws: the overview's columns, or a zoomed window's. */
type Columns = Pick<Data, "x0" | "x1" | "accuracy" | "cluster_accuracy" | "up" | "down"> & {
  level: number;
  window: [number, number] | null;
};
type Rows = Decoded<WireRows>;

// ---- accuracy on the wire ---------------------------------------------------------------------

/** Accuracy arrives as uint8 codes: `round(accuracy * 254)`, 255 where it is missing. */
export const ACCURACY_STEPS = 254;
export const ACCURACY_NAN = 255;

/**
 * The accuracies of a uint8 array of codes (`filterscope.views.validation.quantise_accuracy`)
 * as float32 in [0, 1], NaN for the missing code; a float array passes through unchanged.
 */
export function decodeAccuracy(array: NdArray): NdArray {
  if (array.dtype !== "uint8") return array;
  const codes = array.data;
  const out = new Float32Array(codes.length);
  for (let i = 0; i < codes.length; i++) {
    const code = codes[i] as number;
    out[i] = code === ACCURACY_NAN ? Number.NaN : code / ACCURACY_STEPS;
  }
  return { dtype: "float32", shape: array.shape, data: out };
}

/** `cols` with its accuracy arrays decoded (`decodeAccuracy`). */
function withAccuracy<T extends { accuracy: NdArray; cluster_accuracy: NdArray }>(cols: T): T {
  return {
    ...cols,
    accuracy: decodeAccuracy(cols.accuracy),
    cluster_accuracy: decodeAccuracy(cols.cluster_accuracy),
  };
}

// ---- colours ---------------------------------------------------------------------------------

/** DeepTracker's accuracy scale: value → colour at these positions, linear in between. */
export const ACCURACY_STOPS: readonly (readonly [number, string])[] = [
  [0, "#dd261c"],
  [0.5, "#ffffbf"],
  [0.52, "#d9ef8b"],
  [1, "#0e9247"],
];
export const CORRECT_COLOR = "#B6EB9D";
export const WRONG_COLOR = "#E88984";

export function hexToRgba(hex: string): RGBA {
  const n = Number.parseInt(hex.slice(1), 16);
  return [(n >> 16) & 255, (n >> 8) & 255, n & 255, 255];
}

/**
 * A `ColorScale` (canvas.ts) over [0, 1] through stops at arbitrary positions: step `i` shows
 * the colour at the centre of its bin, so each stop's value maps to its own colour.
 */
export function stopScale(
  stops: readonly (readonly [number, string])[] = ACCURACY_STOPS,
  steps = 1000,
): ColorScale {
  const points = stops.map(([at, hex]) => [at, hexToRgba(hex)] as const);
  const lut = new Uint8ClampedArray(steps * 4);
  for (let i = 0; i < steps; i++) {
    const v = (i + 0.5) / steps;
    let k = 0;
    while (k < points.length - 2 && v > (points[k + 1]?.[0] as number)) k++;
    const [a, ca] = points[k] as readonly [number, RGBA];
    const [b, cb] = points[Math.min(k + 1, points.length - 1)] as readonly [number, RGBA];
    const f = b > a ? Math.min(Math.max((v - a) / (b - a), 0), 1) : 0;
    for (let c = 0; c < 4; c++) {
      lut[i * 4 + c] = Math.round((ca[c] as number) + ((cb[c] as number) - (ca[c] as number)) * f);
    }
  }
  return { domain: [0, 1], lut, steps, missing: [0, 0, 0, 0] };
}

/** The colour of `value` under `scale`, as `[r, g, b, a]`. */
export function scaleColor(scale: ColorScale, value: number): RGBA {
  const i = colorIndex(scale, value);
  if (i < 0) return scale.missing;
  const l = scale.lut;
  return [l[i * 4] as number, l[i * 4 + 1] as number, l[i * 4 + 2] as number, 255];
}

// ---- geometry --------------------------------------------------------------------------------

export const CLASS_ROW = 14;
export const IMAGE_ROW = 5;
/** Gap between the class names and the plot, and the body's left margin. */
const LABEL_GAP = 6;
const BODY_MARGIN = 12;
/** Class names: the shared time-axis gutter less the margin and gap (long names: ellipsis). */
export const LABEL_WIDTH = TIME_AXIS_LAYOUT.left - BODY_MARGIN - LABEL_GAP;
/** The thumbnail panel, right of the plot: it fits in the time axis's right margin. */
export const THUMB_PANEL = 150;
const MIN_TRIANGLE = 5;

/**
 * Side of a triangle for `count` flagged images: `MIN_TRIANGLE` px at the threshold, the row
 * height at the largest count of the view, by the square root (area follows the count).
 */
export function triangleSize(
  count: number,
  threshold: number,
  maxCount: number,
  rowHeight = CLASS_ROW,
): number {
  if (count < threshold) return 0;
  if (maxCount <= threshold) return rowHeight;
  const t = Math.min((count - threshold) / (maxCount - threshold), 1);
  return MIN_TRIANGLE + (rowHeight - MIN_TRIANGLE) * Math.sqrt(t);
}

export type RowKind = "cluster" | "class" | "image";

export interface Row {
  kind: RowKind;
  /** Top in CSS pixels. */
  y: number;
  height: number;
  text: string;
  /** Cluster number (cluster rows), class position (class and image rows). */
  cluster: number;
  cls: number;
  /** Sample position (image rows). */
  sample: number;
  /** Values over the columns. */
  values: ArrayLike<number>;
}

export interface LayoutInput {
  names: readonly string[];
  /** Classes in display order (positions on the class axis). */
  order: ArrayLike<number>;
  accuracy: NdArray;
  cluster: ArrayLike<number>;
  clusterAccuracy: NdArray;
  collapsed: ReadonlySet<number>;
  expanded: ReadonlyMap<number, Rows | null>;
}

function rowOf(array: NdArray, i: number): TypedArray {
  const cols = array.shape[1] ?? 0;
  return array.data.subarray(i * cols, (i + 1) * cols);
}

/**
 * The rows shown, top to bottom: each cluster (in number order) then, unless collapsed, its
 * classes in `order`, each followed by its image rows when expanded; without clusters, the
 * classes alone. Classes without samples (cluster -1) come last.
 */
export function layoutRows(input: LayoutInput): Row[] {
  const rows: Row[] = [];
  let y = 0;
  const push = (row: Omit<Row, "y">) => {
    rows.push({ ...row, y });
    y += row.height;
  };
  const pushClass = (cls: number) => {
    push({
      kind: "class",
      height: CLASS_ROW,
      text: input.names[cls] ?? String(cls),
      cluster: (input.cluster[cls] as number | undefined) ?? -1,
      cls,
      sample: -1,
      values: rowOf(input.accuracy, cls),
    });
    const answer = input.expanded.get(cls);
    if (answer === undefined || answer === null) return;
    const n = answer.samples.data.length;
    for (let i = 0; i < n; i++) {
      push({
        kind: "image",
        height: IMAGE_ROW,
        text: "",
        cluster: -1,
        cls,
        sample: answer.samples.data[i] as number,
        values: rowOf(answer.values, i),
      });
    }
  };
  const order = Array.from(input.order);
  const k = input.clusterAccuracy.shape[0] ?? 0;
  if (input.cluster.length === 0 || k === 0) {
    for (const cls of order) pushClass(cls);
    return rows;
  }
  for (let c = 0; c < k; c++) {
    const members = order.filter((cls) => input.cluster[cls] === c);
    push({
      kind: "cluster",
      height: CLASS_ROW,
      text: `cluster ${c + 1} · ${members.length} ${members.length === 1 ? "class" : "classes"}`,
      cluster: c,
      cls: -1,
      sample: -1,
      values: rowOf(input.clusterAccuracy, c),
    });
    if (!input.collapsed.has(c)) for (const cls of members) pushClass(cls);
  }
  for (const cls of order.filter((cls) => (input.cluster[cls] as number) < 0)) pushClass(cls);
  return rows;
}

/** The row at `y` (CSS pixels), or null. */
export function rowAt(rows: readonly Row[], y: number): Row | null {
  let lo = 0;
  let hi = rows.length - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    const row = rows[mid] as Row;
    if (y < row.y) hi = mid - 1;
    else if (y >= row.y + row.height) lo = mid + 1;
    else return row;
  }
  return null;
}

/** The column whose step span is nearest `step` (its centre, `(x0 + x1) / 2`). */
export function columnAt(x0: TypedArray, x1: TypedArray, step: number): number {
  if (x0.length === 0) return -1;
  const i = lastAtOrBefore(x0, step);
  if (i < 0) return 0;
  if (i >= x0.length - 1) return x0.length - 1;
  const here = ((x0[i] as number) + (x1[i] as number)) / 2;
  const next = ((x0[i + 1] as number) + (x1[i + 1] as number)) / 2;
  return step - here <= next - step ? i : i + 1;
}

// ---- the view --------------------------------------------------------------------------------

const ACCURACY = stopScale();
const CORRECT = hexToRgba(CORRECT_COLOR);
const WRONG = hexToRgba(WRONG_COLOR);

class ValidationView {
  private readonly data: Data;
  private readonly overview: Columns;
  private cols: Columns;
  /** Id of the latest window request; older answers are dropped. */
  private latest = 0;
  private readonly axis: TimeAxis;
  private readonly model: AnyModel<ValidationState>;
  private readonly root: HTMLElement;
  private readonly scroller: HTMLElement;
  private readonly labels: HTMLElement;
  private readonly plot: HTMLElement;
  private readonly canvas: HTMLCanvasElement;
  private readonly overlay: HTMLElement;
  private readonly ticks: HTMLElement;
  private readonly thumb: HTMLElement;
  private readonly picksBox: HTMLElement;
  private readonly orderSelect: HTMLSelectElement;
  private readonly cleanups: (() => void)[] = [];
  private readonly collapsed = new Set<number>();
  /** Expanded classes: their rows, or null while the request is on its way. */
  private readonly expanded = new Map<number, Rows | null>();
  private rows: Row[] = [];
  private width: number;
  private pressY = 0;
  private destroyed = false;
  private thumbUrl: string | null = null;
  private thumbRequest = 0;
  private maxCount = 0;
  /** Show only DeepTracker's flagged classes (peak count ≥ threshold at ≥ 2 snapshots). */
  private flaggedOnly = false;

  constructor(private readonly context: ViewContext<ValidationState>) {
    const { model, root, bus } = context;
    this.model = model;
    this.root = root;
    this.width = context.width;
    this.data = withAccuracy(decodeTree(model.get("data")));
    const data = this.data;
    this.overview = { ...data, window: null };
    this.cols = this.overview;
    this.axis = new TimeAxis(data.step_range, data.snapshot_step.data);
    for (const marks of [data.up, data.down]) {
      for (const n of marks.count.data) this.maxCount = Math.max(this.maxCount, n as number);
    }
    if ((data.names.length ?? 0) > 40) {
      for (let c = 0; c < (data.cluster_accuracy.shape[0] ?? 0); c++) this.collapsed.add(c);
    }

    const header = div("fs-header");
    const title = span("fs-title", "Validation");
    this.picksBox = span("fs-picks");
    this.orderSelect = document.createElement("select");
    this.orderSelect.className = "fs-order";
    this.orderSelect.title = "Order of the classes";
    for (const [value, text] of [
      ["mds", "order: similar error (MDS)"],
      ["peak", "order: peak flag count"],
    ] as const) {
      const option = document.createElement("option");
      option.value = value;
      option.textContent = text;
      this.orderSelect.append(option);
    }
    this.orderSelect.addEventListener("change", () => {
      this.model.set("order", this.orderSelect.value as ClassOrder);
      this.model.save_changes();
    });
    const hint = span(
      "fs-hint",
      `click a class: its images · ▲▼ ≥ ${data.threshold} images flip after ${data.j + 1} steady snapshots`,
    );
    const flagged = document.createElement("label");
    flagged.className = "fs-hint fs-vflagged";
    const box = document.createElement("input");
    box.type = "checkbox";
    box.addEventListener("change", () => {
      this.flaggedOnly = box.checked;
      this.relayout();
    });
    flagged.append(box, " flagged classes only");
    flagged.title = `Classes with ≥ ${data.threshold} flips at two snapshots or more`;
    header.append(title, this.orderSelect, flagged, this.picksBox, hint);

    const body = div("fs-vbody");
    this.scroller = div("fs-vscroll");
    this.labels = div("fs-vlabels");
    this.plot = div("fs-vplot");
    this.canvas = document.createElement("canvas");
    this.canvas.className = "fs-heatmap fs-vcanvas";
    this.overlay = div("fs-voverlay");
    this.plot.append(this.canvas, this.overlay);
    this.scroller.append(this.labels, this.plot);
    this.thumb = div("fs-vthumb");
    body.append(this.scroller, this.thumb);
    this.ticks = div("fs-vticks");
    root.append(header, body, this.ticks);

    this.labels.addEventListener("click", (event) => this.labelClicked(event));
    this.canvas.addEventListener("pointerdown", (event) => {
      this.pressY = event.clientY - this.canvas.getBoundingClientRect().top;
    });
    this.cleanups.push(
      attachPointer(this.canvas, this.axis, {
        pick: (step) => this.canvasClicked(step),
        zoom: (w) => this.zoom(w),
      }),
      ...linkAxis(this.axis, bus, this, (change) => {
        if (change === "picks") this.renderPicks();
        if (change === "window") this.windowChanged();
        else this.drawOverlay();
      }),
    );
    this.orderSelect.value = model.get("order") ?? "mds";
    this.axis.setPicks(model.get("picked_steps") ?? []);
    this.axis.setWindow(model.get("time_window") ?? bus.last.window ?? null);
    this.renderPicks();
    this.root.dataset.level ??= String(this.cols.level);
    this.root.dataset.detail ??= "overview";
    this.relayout();
    this.showClass();
    this.showSample();
  }

  private get plotWidth(): number {
    return timeAxisArea(this.width).width;
  }

  resize(width: number): void {
    this.width = width;
    this.draw();
  }

  changed(key: string): void {
    if (key === "picked_steps") this.axis.setPicks(this.model.get("picked_steps") ?? []);
    if (key === "time_window") this.axis.setWindow(this.model.get("time_window") ?? null);
    if (key === "order") {
      this.orderSelect.value = this.model.get("order");
      this.relayout();
    }
    if (key === "class_") this.showClass();
    if (key === "sample_index") this.showSample();
  }

  // ---- selection ----------------------------------------------------------------------------

  private classPosition(label: number | string | null): number {
    if (label === null || label === undefined) return -1;
    const labels = this.data.labels.data;
    for (let i = 0; i < labels.length; i++) if (String(labels[i]) === String(label)) return i;
    return -1;
  }

  /** The kernel's `class_`: expand it (and its cluster) and mark it. */
  private showClass(): void {
    const cls = this.classPosition(this.model.get("class_"));
    this.root.dataset.selectedClass = cls < 0 ? "" : String(this.data.labels.data[cls]);
    if (cls >= 0) {
      const cluster = this.data.cluster.data[cls];
      if (cluster !== undefined) this.collapsed.delete(cluster as number);
      if (!this.expanded.has(cls)) this.expand(cls);
    }
    this.relayout();
  }

  private expand(cls: number): void {
    this.expanded.set(cls, null);
    this.root.dataset.pending = String((Number(this.root.dataset.pending) || 0) + 1);
    const label = this.data.labels.data[cls] as number;
    const cols = this.cols;
    const params: Record<string, unknown> = { class_: label };
    if (cols.window !== null) [params.start, params.stop] = cols.window;
    this.context.requests.request<WireRows>("rows", params).then(
      (answer) => {
        if (this.destroyed) return;
        this.root.dataset.pending = String(Number(this.root.dataset.pending) - 1);
        // Collapsed meanwhile, or the columns changed (a newer request is on its way).
        if (!this.expanded.has(cls) || cols !== this.cols) return;
        this.expanded.set(cls, answer);
        this.root.dataset.answered = String((Number(this.root.dataset.answered) || 0) + 1);
        this.relayout();
      },
      (error: Error) => {
        if (this.destroyed) return;
        this.root.dataset.pending = String(Number(this.root.dataset.pending) - 1);
        if (cols !== this.cols) return;
        this.expanded.delete(cls);
        this.relayout();
        console.warn(`filterscope: ValidationView could not load the images: ${error.message}`);
      },
    );
  }

  /**
   * The visible window moved. A bucketed overview asks the kernel for the window's columns at
   * the finer level (`window` request), then for the expanded classes' rows over them.
   */
  private windowChanged(): void {
    const [w0, w1] = this.axis.window;
    const whole = w0 <= this.axis.extent[0] && w1 >= this.axis.extent[1];
    if (this.data.level === 0 || whole) {
      this.latest += 1; // drop any answer still on its way
      this.setColumns(this.overview, "overview");
      return;
    }
    const id = ++this.latest;
    const start = Math.floor(w0);
    const stop = Math.ceil(w1);
    this.root.dataset.detail = "pending";
    this.draw(); // the overview's buckets, stretched, until the answer comes
    this.context.requests.latest<WireValidationWindow>("window", "window", { start, stop }).then(
      (answer) => {
        if (this.destroyed || id !== this.latest) return;
        this.setColumns(withAccuracy({ ...answer, window: [start, stop] }), `${start}-${stop}`);
      },
      (error: Error) => {
        if (this.destroyed || id !== this.latest) return;
        console.warn(
          `filterscope: ValidationView could not load the zoomed window: ${error.message}`,
        );
      },
    );
  }

  private setColumns(cols: Columns, detail: string): void {
    this.root.dataset.detail = detail;
    this.root.dataset.level = String(cols.level);
    if (cols === this.cols) {
      this.draw();
      return;
    }
    this.cols = cols;
    for (const cls of [...this.expanded.keys()]) this.expand(cls);
    this.relayout();
  }

  private labelClicked(event: Event): void {
    const target = (event.target as HTMLElement).closest<HTMLElement>("[data-kind]");
    if (target === null) return;
    if (target.dataset.kind === "cluster") {
      const c = Number(target.dataset.cluster);
      if (this.collapsed.has(c)) this.collapsed.delete(c);
      else this.collapsed.add(c);
      this.relayout();
      return;
    }
    const cls = Number(target.dataset.cls);
    const label = this.data.labels.data[cls] as number;
    if (this.expanded.has(cls) && this.classPosition(this.model.get("class_")) === cls) {
      // A second click on the selected class collapses it and clears the selection.
      this.expanded.delete(cls);
      this.model.set("class_", null);
    } else {
      if (!this.expanded.has(cls)) this.expand(cls);
      this.model.set("class_", label);
    }
    this.model.save_changes();
    this.relayout();
  }

  private canvasClicked(step: number): void {
    const row = rowAt(this.rows, this.pressY);
    if (row?.kind === "image") {
      this.model.set("sample_index", row.sample);
      this.model.save_changes();
      return;
    }
    this.model.set("picked_steps", togglePick(this.model.get("picked_steps") ?? [], step));
    this.model.save_changes();
  }

  private zoom(window: Window | null): void {
    zoomAxis(this.axis, this.context.bus, this, this.model, window);
  }

  /** The kernel's `sample_index`: show its thumbnail (or why there is none). */
  private showSample(): void {
    const sample = this.model.get("sample_index");
    this.root.dataset.selectedSample =
      sample === null || sample === undefined ? "" : String(sample);
    this.drawOverlay();
    const caption = div("fs-vthumb-caption");
    if (!this.data.thumbnails) {
      this.thumb.replaceChildren(
        placeholder("This log has no thumbnails (recorded with thumbnails=False, or not images)."),
      );
      return;
    }
    if (sample === null || sample === undefined) {
      this.thumb.replaceChildren(placeholder("Click an image row to see the image."));
      return;
    }
    const id = ++this.thumbRequest;
    caption.textContent = `sample ${sample} · loading…`;
    this.thumb.replaceChildren(caption);
    this.context.requests.request<WireThumbnail>("thumbnail", { sample }).then(
      (answer) => {
        if (this.destroyed || id !== this.thumbRequest) return;
        if (this.thumbUrl !== null) URL.revokeObjectURL(this.thumbUrl);
        const bytes = answer.png.data as Uint8Array;
        this.thumbUrl = URL.createObjectURL(
          new Blob([bytes.slice().buffer as ArrayBuffer], { type: "image/png" }),
        );
        const img = document.createElement("img");
        img.className = "fs-vthumb-img";
        img.src = this.thumbUrl;
        img.dataset.sample = String(answer.sample);
        const scale = Math.max(1, Math.floor(128 / Math.max(answer.width, answer.height)));
        img.width = answer.width * scale;
        img.height = answer.height * scale;
        img.alt = `thumbnail of sample ${answer.sample}`;
        const row = this.rows.find((r) => r.kind === "image" && r.sample === answer.sample);
        const name = row === undefined ? "" : ` · class ${this.data.names[row.cls] ?? ""}`;
        caption.textContent = `sample ${answer.sample}${name}`;
        this.thumb.replaceChildren(img, caption);
      },
      (error: Error) => {
        if (this.destroyed || id !== this.thumbRequest) return;
        this.thumb.replaceChildren(placeholder(error.message));
      },
    );
  }

  // ---- drawing ------------------------------------------------------------------------------

  private relayout(): void {
    const data = this.data;
    const order = this.model.get("order") === "peak" ? data.order_peak : data.order_mds;
    this.rows = layoutRows({
      names: data.names,
      order: this.flaggedOnly
        ? Array.from(order.data).filter((c) => data.shown.data[c] === 1)
        : order.data,
      accuracy: this.cols.accuracy,
      cluster: data.cluster.data,
      clusterAccuracy: this.cols.cluster_accuracy,
      collapsed: this.collapsed,
      expanded: this.expanded,
    });
    const selected = this.classPosition(this.model.get("class_"));
    const items: HTMLElement[] = [];
    for (const row of this.rows) {
      if (row.kind === "image") continue;
      const item = div(`fs-vlabel fs-vlabel-${row.kind}`);
      item.style.top = `${row.y}px`;
      item.style.height = `${row.height}px`;
      item.dataset.kind = row.kind;
      item.title = row.text;
      if (row.kind === "cluster") {
        item.dataset.cluster = String(row.cluster);
        item.textContent = `${this.collapsed.has(row.cluster) ? "▸" : "▾"} ${row.text}`;
      } else {
        item.dataset.cls = String(row.cls);
        item.dataset.label = String(data.labels.data[row.cls]);
        const open = this.expanded.has(row.cls);
        const answer = this.expanded.get(row.cls);
        const count = answer === undefined || answer === null ? "" : ` (${answer.total} images)`;
        item.textContent = `${open ? "▾" : "▸"} ${row.text}${count}`;
        if (row.cls === selected) item.classList.add("fs-selected");
      }
      items.push(item);
    }
    this.labels.replaceChildren(...items);
    const height = this.rows.reduce((h, r) => Math.max(h, r.y + r.height), 0);
    this.labels.style.height = `${height}px`;
    this.root.dataset.rows = String(this.rows.length);
    this.root.dataset.imageRows = String(this.rows.filter((r) => r.kind === "image").length);
    this.root.dataset.expanded = [...this.expanded.keys()]
      .map((c) => String(data.labels.data[c]))
      .join(",");
    this.draw();
  }

  private draw(): void {
    const width = this.plotWidth;
    const height = this.rows.reduce((h, r) => Math.max(h, r.y + r.height), 0);
    this.plot.style.width = `${width}px`;
    this.plot.style.height = `${height}px`;
    const ratio = globalThis.devicePixelRatio || 1;
    const w = Math.round(width * ratio);
    const h = Math.round(height * ratio);
    this.canvas.width = w;
    this.canvas.height = h;
    this.canvas.style.width = `${width}px`;
    this.canvas.style.height = `${height}px`;
    this.drawTicks(width);
    this.drawOverlay();
    const ctx = this.canvas.getContext("2d");
    if (ctx === null || w === 0 || h === 0) return;
    const { x0, x1 } = this.cols;
    const scale = this.axis.scale(0, w);
    const colOf = new Int32Array(w);
    for (let px = 0; px < w; px++) colOf[px] = columnAt(x0.data, x1.data, scale.invert(px + 0.5));
    const image = ctx.createImageData(w, h);
    const out = image.data;
    for (const row of this.rows) {
      const top = Math.round(row.y * ratio);
      // Leave a one-pixel gap under heat lines so neighbouring classes read apart.
      const gap = row.kind === "image" ? 0 : Math.max(1, Math.round(ratio));
      const bottom = Math.min(Math.round((row.y + row.height) * ratio) - gap, h);
      const colors = new Uint8ClampedArray(w * 4);
      for (let px = 0; px < w; px++) {
        const v = row.values[colOf[px] as number] as number;
        const c =
          row.kind === "image"
            ? v >= 0.5
              ? CORRECT
              : WRONG
            : Number.isFinite(v)
              ? scaleColor(ACCURACY, v)
              : ACCURACY.missing;
        colors.set(c, px * 4);
      }
      for (let y = top; y < bottom; y++) out.set(colors, y * w * 4);
    }
    ctx.putImageData(image, 0, 0);
    this.drawTriangles(ctx, ratio, scale);
  }

  private drawTriangles(
    ctx: CanvasRenderingContext2D,
    ratio: number,
    scale: ReturnType<TimeAxis["scale"]>,
  ): void {
    const { x0, x1 } = this.cols;
    const { threshold } = this.data;
    const classRow = new Map<number, Row>();
    for (const row of this.rows) if (row.kind === "class") classRow.set(row.cls, row);
    ctx.fillStyle = "#1f2937";
    ctx.strokeStyle = "rgba(255, 255, 255, 0.85)";
    ctx.lineWidth = ratio;
    // Where a column has both marks (the same images flip there after and before a steady
    // run), the up triangle goes left of the column's centre and the down one right of it.
    const keys = (marks: Data["up"]) =>
      new Set(Array.from(marks.class.data, (c, i) => `${c}:${marks.col.data[i] as number}`));
    const both = keys(this.cols.up);
    const downKeys = keys(this.cols.down);
    for (const key of [...both]) if (!downKeys.has(key)) both.delete(key);
    let drawn = 0;
    for (const [marks, up] of [
      [this.cols.up, true],
      [this.cols.down, false],
    ] as const) {
      for (let i = 0; i < marks.count.data.length; i++) {
        const row = classRow.get(marks.class.data[i] as number);
        if (row === undefined) continue;
        const col = marks.col.data[i] as number;
        const centre = scale(((x0.data[col] as number) + (x1.data[col] as number)) / 2) / ratio;
        if (centre < 0 || centre > this.plotWidth) continue;
        const side = triangleSize(marks.count.data[i] as number, threshold, this.maxCount) * ratio;
        const shared = both.has(`${marks.class.data[i] as number}:${col}`);
        const cx = centre * ratio + (shared ? ((up ? -1 : 1) * (side + ratio)) / 2 : 0);
        const cy = (row.y + CLASS_ROW / 2) * ratio;
        ctx.beginPath();
        if (up) {
          ctx.moveTo(cx, cy - side / 2);
          ctx.lineTo(cx + side / 2, cy + side / 2);
          ctx.lineTo(cx - side / 2, cy + side / 2);
        } else {
          ctx.moveTo(cx, cy + side / 2);
          ctx.lineTo(cx + side / 2, cy - side / 2);
          ctx.lineTo(cx - side / 2, cy - side / 2);
        }
        ctx.closePath();
        ctx.stroke();
        ctx.fill();
        drawn++;
      }
    }
    this.root.dataset.triangles = String(drawn);
  }

  private drawTicks(width: number): void {
    const scale = this.axis.scale(0, width);
    const [w0, w1] = this.axis.window;
    const ticks = niceTicks(w0, w1, Math.max(2, Math.floor(width / 90))).map((step) => {
      const tick = span("fs-vtick", formatStep(step));
      tick.style.left = `${TIME_AXIS_LAYOUT.left + scale(step)}px`;
      return tick;
    });
    const name = span("fs-vtick-title", "step");
    this.ticks.replaceChildren(name, ...ticks);
  }

  /** Hover line, brush, picks and the selected image row, as DOM over the canvas. */
  private drawOverlay(): void {
    const width = this.plotWidth;
    const scale = this.axis.scale(0, width);
    const parts: HTMLElement[] = [];
    const line = (step: number, className: string, color?: string) => {
      const x = scale(step);
      if (x < 0 || x > width) return;
      const el = div(className);
      el.style.left = `${x}px`;
      if (color !== undefined) el.style.setProperty("--pick-color", color);
      parts.push(el);
    };
    this.axis.picks.forEach((step, i) => {
      line(step, "fs-vpick", pickColor(i));
    });
    if (this.axis.hover !== null) line(this.axis.hover, "fs-vhover");
    if (this.axis.brush !== null) {
      const a = Math.max(scale(this.axis.brush[0]), 0);
      const b = Math.min(scale(this.axis.brush[1]), width);
      const el = div("fs-vbrush");
      el.style.left = `${a}px`;
      el.style.width = `${Math.max(b - a, 0)}px`;
      parts.push(el);
    }
    const sample = this.model.get("sample_index");
    const row = this.rows.find((r) => r.kind === "image" && r.sample === sample);
    if (row !== undefined) {
      const el = div("fs-vselected-row");
      el.style.top = `${row.y}px`;
      el.style.height = `${row.height}px`;
      parts.push(el);
    }
    this.overlay.replaceChildren(...parts);
  }

  private renderPicks(): void {
    const chips = this.axis.picks.map((step, i) => {
      const chip = document.createElement("button");
      chip.className = "fs-pick";
      chip.dataset.step = String(step);
      chip.style.setProperty("--pick-color", pickColor(i));
      chip.title = "Remove this pick";
      chip.textContent = `step ${formatStep(step)} ×`;
      chip.addEventListener("click", () => {
        this.model.set("picked_steps", togglePick(this.model.get("picked_steps") ?? [], step));
        this.model.save_changes();
      });
      return chip;
    });
    this.picksBox.replaceChildren(...chips);
    this.drawOverlay();
  }

  destroy(): void {
    this.destroyed = true;
    for (const cleanup of this.cleanups) cleanup();
    if (this.thumbUrl !== null) URL.revokeObjectURL(this.thumbUrl);
  }
}

function div(className: string): HTMLElement {
  const el = document.createElement("div");
  el.className = className;
  return el;
}

function span(className: string, text = ""): HTMLElement {
  const el = document.createElement("span");
  el.className = className;
  el.textContent = text;
  return el;
}

function placeholder(text: string): HTMLElement {
  const el = div("fs-vthumb-empty");
  el.textContent = text;
  return el;
}

const STYLE_ID = "filterscope-validation-styles";
const R = `.${VALIDATION_CLASS}`;
const CSS = `
${R} .fs-order {
  color: var(--fs-fg); background: var(--fs-bg); border: 1px solid var(--fs-axis);
  border-radius: 4px; font: inherit; font-size: var(--jp-ui-font-size0, 11px);
}
${R} .fs-vbody {
  display: flex; gap: 8px; margin: 0 0 0 ${BODY_MARGIN}px; align-items: flex-start;
}
${R} .fs-vscroll {
  display: flex; gap: ${LABEL_GAP}px; max-height: 560px; overflow-y: auto; overflow-x: hidden;
  flex: none;
}
${R} .fs-vlabels { position: relative; width: ${LABEL_WIDTH}px; flex: none; }
${R} .fs-vlabel {
  position: absolute; left: 0; right: 0; overflow: hidden; white-space: nowrap;
  text-overflow: ellipsis; font-size: 11px; line-height: ${CLASS_ROW}px; cursor: pointer;
  color: var(--fs-fg);
}
${R} .fs-vlabel:hover { color: var(--fs-accent); }
${R} .fs-vlabel-cluster { font-weight: 600; }
${R} .fs-vlabel-class { padding-left: 12px; }
${R} .fs-vlabel.fs-selected { color: var(--fs-accent); font-weight: 600; }
${R} .fs-vplot { position: relative; flex: none; }
${R} canvas.fs-vcanvas { position: absolute; left: 0; top: 0; }
${R} .fs-voverlay { position: absolute; inset: 0; pointer-events: none; }
${R} .fs-vhover, ${R} .fs-vpick {
  position: absolute; top: 0; bottom: 0; width: 0; border-left: 1px solid var(--fs-fg);
  opacity: 0.6;
}
${R} .fs-vpick { border-left: 2px dashed var(--pick-color); opacity: 1; }
${R} .fs-vbrush { position: absolute; top: 0; bottom: 0; background: var(--fs-accent); opacity: 0.15; }
${R} .fs-vselected-row { position: absolute; left: -4px; right: -4px; outline: 2px solid var(--fs-accent); }
${R} .fs-vflagged { display: inline-flex; align-items: center; gap: 3px; cursor: pointer; }
${R} .fs-vthumb {
  width: ${THUMB_PANEL}px; flex: none; display: flex; flex-direction: column; align-items: center;
  gap: 4px; padding: 6px 0; border: 1px solid var(--fs-grid); border-radius: 4px;
}
${R} .fs-vthumb-img { image-rendering: pixelated; background: #000; }
${R} .fs-vthumb-caption, ${R} .fs-vthumb-empty {
  color: var(--fs-fg-muted); font-size: var(--jp-ui-font-size0, 11px); text-align: center;
  padding: 0 6px; overflow-wrap: anywhere;
}
${R} .fs-vticks { position: relative; height: 18px; margin-top: 2px; }
${R} .fs-vtick, ${R} .fs-vtick-title {
  position: absolute; top: 2px; transform: translateX(-50%); color: var(--fs-fg-muted);
  font-size: 11px; font-variant-numeric: tabular-nums; white-space: nowrap;
}
${R} .fs-vtick-title { left: 12px; transform: none; }
`;

function injectValidationStyles(doc: Document): void {
  if (doc.getElementById(STYLE_ID) !== null) return;
  const style = doc.createElement("style");
  style.id = STYLE_ID;
  style.textContent = CSS;
  doc.head.appendChild(style);
}

export const VALIDATION: ViewDefinition<ValidationState> = {
  className: VALIDATION_CLASS,
  rebuildOn: ["data"],
  listen: ["picked_steps", "time_window", "class_", "sample_index", "order"],
  create: (context) => {
    injectValidationStyles(context.root.ownerDocument);
    return new ValidationView(context);
  },
};

/** anywidget `render` for `ValidationView`; returns the cleanup that detaches it. */
export function renderValidation({
  model,
  el,
}: Pick<RenderProps<ValidationState>, "model" | "el">): () => void {
  return mountView(VALIDATION, { model, el });
}
