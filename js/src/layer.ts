/**
 * The layer view (DeepTracker): the model's stage → block → layer tree, one chart per node over
 * the shared time axis, and a pixel chart of a layer's filters when it is expanded.
 *
 * Node charts (horizon by default, line, box, change-ratio bands) come in the `series` trait,
 * one pixel column per step window column; a layer's filter rows (consecutive-snapshot cosine)
 * come by a `filters` request when it opens, one byte per cell (`decodeFilterRows`), and again
 * when the window or the colour range (`normalize`) changes. Expansion,
 * chart choices, the selected layer/filter and the picks are model traits, so Python sees them;
 * hover, brush and zoom also travel on the link bus. Names are text, never HTML. The Python
 * side is `filterscope.views.layer.LayerView`.
 */

import type { AnyModel, RenderProps } from "@anywidget/types";
import { CanvasHeatmap } from "./canvas";
import {
  ancestors,
  columnOfPixel,
  horizonFills,
  type Normalize,
  normalizeGrid,
  type TreeNode,
  visibleRows,
} from "./horizon";
import { formatStep, formatValue, niceTicks } from "./scale";
import { pickColor, SERIES_COLORS } from "./theme";
import {
  attachPointer,
  TIME_AXIS_LAYOUT,
  TimeAxis,
  timeAxisArea,
  togglePick,
  type Window,
} from "./timeaxis";
import { type Decoded, decodeTree, type EncodedArray } from "./transport";
import { linkAxis, mountView, type ViewContext, type ViewDefinition, zoomAxis } from "./view";

export const LAYER_CLASS = "filterscope-layer";

export interface WireLayerTree {
  step_range: [number, number];
  snapshot_step: EncodedArray;
  nodes: TreeNode[];
  stats: string[];
  thresholds: number[];
  cosine_range: [number, number];
}

export interface WireLayerSeries {
  chart: string;
  variable: string;
  stat: string;
  parts: string[];
  x: EncodedArray;
  level: number;
  approximate: string[];
  /** `(node, column, part)` float32. */
  values: EncodedArray;
}

export interface WireFilters {
  layer: string;
  filters: EncodedArray;
  channels: EncodedArray;
  x: EncodedArray;
  level: number;
  /** The colour range the codes were made for: `lo`/`hi` per filter, per snapshot or one. */
  normalize: Normalize;
  /** `(filter, column)` uint8 codes: `lo + code / 254 · (hi − lo)` of the group; 255 is NaN. */
  values: EncodedArray;
  lo: EncodedArray;
  hi: EncodedArray;
}

/** Codes 0..254 of a filters answer span its group's `[lo, hi]`; 255 is a missing cell. */
export const ROW_STEPS = 254;
export const ROW_NAN = 255;

/**
 * The cosine values of a filters answer (`filter × column`, row-major) from its uint8 codes.
 *
 * A group (a filter's row, a snapshot's column or every cell, after `normalize`) comes back
 * within half a code of its float value, `(hi − lo) / 508`, with its ends exact: normalised
 * over that group's range (or any range holding it) a cell gets the same colour of a 256-step
 * scale as its float value, or the next one.
 */
export function decodeFilterRows(
  answer: Pick<Decoded<WireFilters>, "normalize" | "values" | "lo" | "hi">,
  rows: number,
  cols: number,
): Float32Array {
  const codes = answer.values.data;
  const lo = answer.lo.data;
  const hi = answer.hi.data;
  const mode = answer.normalize;
  const out = new Float32Array(rows * cols);
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < cols; c++) {
      const i = r * cols + c;
      const code = codes[i] as number;
      if (code === ROW_NAN) {
        out[i] = Number.NaN;
        continue;
      }
      const g = mode === "filter" ? r : mode === "snapshot" ? c : 0;
      const a = lo[g] as number;
      out[i] = a + (((hi[g] as number) - a) * code) / ROW_STEPS;
    }
  }
  return out;
}

/**
 * The pixel grid of a filters answer (`rows × map.length`, values 0..1 or NaN) as the page
 * colours it: each row's cells at the data columns `map` gives per pixel (-1: NaN), normalised
 * per `mode` over the group's range, `range` for `"global"` (`normalizeGrid`).
 *
 * When the answer was encoded for `mode`, a code is its normalised value (`code / 254`, 0.5 for
 * a flat group), so a 256-entry table per group kind replaces decoding and normalising;
 * otherwise the values are decoded and normalised again.
 */
export function filterPixels(
  answer: Pick<Decoded<WireFilters>, "normalize" | "values" | "lo" | "hi">,
  rows: number,
  cols: number,
  map: Int32Array,
  mode: Normalize,
  range: readonly [number, number],
): Float32Array {
  const width = map.length;
  const out = new Float32Array(rows * width);
  if (answer.normalize !== mode) {
    const grid = normalizeGrid(decodeFilterRows(answer, rows, cols), rows, cols, mode, range);
    for (let r = 0; r < rows; r++)
      for (let p = 0; p < width; p++) {
        const c = map[p] as number;
        out[r * width + p] = c < 0 ? Number.NaN : (grid[r * cols + c] as number);
      }
    return out;
  }
  const codes = answer.values.data;
  const lo = answer.lo.data;
  const hi = answer.hi.data;
  const ramp = new Float32Array(256);
  const flat = new Float32Array(256).fill(0.5);
  if (mode === "global") {
    const [a, b] = [lo[0] as number, hi[0] as number];
    const span = range[1] - range[0];
    for (let k = 0; k < ROW_NAN; k++) {
      const v = a + ((b - a) * k) / ROW_STEPS;
      ramp[k] = span > 0 ? Math.min(Math.max((v - range[0]) / span, 0), 1) : 0.5;
    }
  } else for (let k = 0; k < ROW_NAN; k++) ramp[k] = k / ROW_STEPS;
  ramp[ROW_NAN] = Number.NaN;
  flat[ROW_NAN] = Number.NaN;
  // A flat row (per filter) or column (per snapshot) is drawn mid-scale, as normalizeGrid does.
  const sloped = (g: number) => mode === "global" || (hi[g] as number) > (lo[g] as number);
  for (let r = 0; r < rows; r++) {
    const lut = mode === "filter" && !sloped(r) ? flat : ramp;
    const base = r * cols;
    const at = r * width;
    if (mode === "snapshot") {
      for (let p = 0; p < width; p++) {
        const c = map[p] as number;
        out[at + p] =
          c < 0 ? Number.NaN : ((sloped(c) ? ramp : flat)[codes[base + c] as number] as number);
      }
    } else {
      for (let p = 0; p < width; p++) {
        const c = map[p] as number;
        out[at + p] = c < 0 ? Number.NaN : (lut[codes[base + c] as number] as number);
      }
    }
  }
  return out;
}

export interface ChangedFilter {
  filter: number;
  layer: string;
  channel: number;
}

export interface LayerState {
  _view: string;
  link_id?: string;
  tree: WireLayerTree;
  series: WireLayerSeries;
  changed_filters: ChangedFilter[];
  chart: string;
  variable: string;
  stat: string;
  same_scale: boolean;
  normalize: string;
  expanded: string[];
  layer: string | null;
  filter_index: number | null;
  picked_steps: number[];
  time_window: [number, number] | null;
}

/** The tree column: the shared time-axis gutter (long names end in an ellipsis). */
export const LABEL_WIDTH = TIME_AXIS_LAYOUT.left;
export const ROW_HEIGHT = 30;
const HORIZON_BANDS = 3;
const POSITIVE = ["#9ecae1", "#4292c6", "#08519c"];
const NEGATIVE = ["#fcae91", "#fb6a4a", "#a50f15"];
const BAND_COLORS = ["#c7e9c0", "#74c476", "#31a354", "#006d2c"];
/** Filter rows of this many pixels (or more when there is room); never below one. */
const FILTER_ROWS_PX = 240;
const PAGE_SIZE = 40;

const STYLE_ID = "filterscope-layer-styles";
const CSS = `
.filterscope.${LAYER_CLASS} .fs-controls { display: flex; flex-wrap: wrap; gap: 4px 10px; align-items: center; }
.filterscope.${LAYER_CLASS} select, .filterscope.${LAYER_CLASS} label {
  font: inherit; font-size: var(--jp-ui-font-size0, 11px); color: var(--fs-fg);
}
.filterscope.${LAYER_CLASS} select {
  background: var(--jp-layout-color1, #fff); border: 1px solid var(--fs-axis); border-radius: 3px;
}
.filterscope.${LAYER_CLASS} .fs-changed { margin: 0 12px 4px; display: flex; flex-wrap: wrap; gap: 4px; align-items: center; }
.filterscope.${LAYER_CLASS} .fs-body {
  position: relative; max-height: 560px; overflow-y: auto; overflow-x: hidden;
  border-top: 1px solid var(--fs-grid); border-bottom: 1px solid var(--fs-grid);
}
.filterscope.${LAYER_CLASS} .fs-node-row {
  display: flex; align-items: center; height: ${ROW_HEIGHT}px; border-bottom: 1px solid var(--fs-grid);
}
.filterscope.${LAYER_CLASS} .fs-node-row.fs-selected .fs-node-label { background: var(--jp-layout-color2, #eee); }
.filterscope.${LAYER_CLASS} .fs-node-label {
  box-sizing: border-box; width: ${LABEL_WIDTH}px; flex: none; height: 100%; display: flex; align-items: center;
  gap: 4px; overflow: hidden; white-space: nowrap; text-overflow: ellipsis; cursor: pointer;
}
.filterscope.${LAYER_CLASS} .fs-toggle { width: 12px; flex: none; color: var(--fs-fg-muted); text-align: center; }
.filterscope.${LAYER_CLASS} .fs-node-name { overflow: hidden; text-overflow: ellipsis; }
.filterscope.${LAYER_CLASS} .fs-node-meta { color: var(--fs-fg-muted); font-size: var(--jp-ui-font-size0, 11px); }
.filterscope.${LAYER_CLASS} canvas.fs-node-chart { display: block; cursor: crosshair; }
.filterscope.${LAYER_CLASS} .fs-filters { display: flex; border-bottom: 1px solid var(--fs-grid); }
.filterscope.${LAYER_CLASS} .fs-filters-label {
  box-sizing: border-box; width: ${LABEL_WIDTH}px; flex: none; padding: 2px 6px;
  color: var(--fs-fg-muted); font-size: var(--jp-ui-font-size0, 11px);
}
.filterscope.${LAYER_CLASS} .fs-filters-scroll { position: relative; max-height: 320px; overflow-y: auto; }
.filterscope.${LAYER_CLASS} .fs-filter-mark {
  position: absolute; left: 0; right: 0; pointer-events: none; box-sizing: border-box;
  border: 1px solid #e11d48; min-height: 2px;
}
.filterscope.${LAYER_CLASS} .fs-filter-mark.fs-selected-filter { border: 2px solid var(--fs-fg); }
.filterscope.${LAYER_CLASS} .fs-vline { position: absolute; top: 0; width: 0; pointer-events: none; }
.filterscope.${LAYER_CLASS} .fs-vline.fs-hover-line { border-left: 1px solid var(--fs-fg); opacity: 0.55; }
.filterscope.${LAYER_CLASS} .fs-vline.fs-pick-vline { border-left: 1.5px dashed var(--pick-color); }
.filterscope.${LAYER_CLASS} .fs-vline.fs-brush-box { background: var(--fs-accent); opacity: 0.12; }
.filterscope.${LAYER_CLASS} .fs-xaxis { position: relative; height: 18px; margin-left: ${LABEL_WIDTH}px; }
.filterscope.${LAYER_CLASS} .fs-xaxis span {
  position: absolute; transform: translateX(-50%); color: var(--fs-fg-muted); font-size: 11px;
}
.filterscope.${LAYER_CLASS} button.fs-more { margin-left: 20px; }
.filterscope.${LAYER_CLASS} .fs-caption { color: var(--fs-fg-muted); font-size: var(--jp-ui-font-size0, 11px); margin-right: -6px; }
.filterscope.${LAYER_CLASS} .fs-layer-readout { margin-left: 0; min-width: 1px; }
.filterscope.${LAYER_CLASS} select:disabled { opacity: 0.5; }
`;

function injectLayerStyles(doc: Document): void {
  if (doc.getElementById(STYLE_ID) !== null) return;
  const style = doc.createElement("style");
  style.id = STYLE_ID;
  style.textContent = CSS;
  doc.head.appendChild(style);
}

function el<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  className = "",
  text?: string,
): HTMLElementTagNameMap[K] {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

type Series = Decoded<WireLayerSeries>;
type Filters = Decoded<WireFilters>;

/** Value range a node chart is drawn over, from its values (all parts), or null. */
export function valueExtent(
  values: ArrayLike<number>,
  from: number,
  to: number,
): [number, number] | null {
  let lo = Number.POSITIVE_INFINITY;
  let hi = Number.NEGATIVE_INFINITY;
  for (let i = from; i < to; i++) {
    const v = values[i] as number;
    if (!Number.isFinite(v)) continue;
    if (v < lo) lo = v;
    if (v > hi) hi = v;
  }
  return lo <= hi ? [lo, hi] : null;
}

/** Draw one node's chart into `ctx` (`width × height` CSS pixels). */
export function drawNodeChart(
  ctx: CanvasRenderingContext2D,
  series: Series,
  node: number,
  columns: Int32Array,
  extent: [number, number],
  height: number,
  ink: string,
): void {
  const parts = series.parts.length;
  const cols = series.x.data.length;
  const values = series.values.data;
  const at = (c: number, p: number) => values[(node * cols + c) * parts + p] as number;
  const width = columns.length;
  const [lo, hi] = extent;
  const y = (v: number) => height - 2 - ((v - lo) / (hi - lo || 1)) * (height - 4);
  if (series.chart === "horizon") {
    const max = Math.max(Math.abs(lo), Math.abs(hi));
    for (let p = 0; p < width; p++) {
      const c = columns[p] as number;
      if (c < 0) continue;
      const v = at(c, 0);
      const fills = horizonFills(v, max, HORIZON_BANDS);
      const palette = v < 0 ? NEGATIVE : POSITIVE;
      fills.forEach((f, b) => {
        if (f <= 0) return;
        ctx.fillStyle = palette[b] as string;
        const h = f * height;
        ctx.fillRect(p, height - h, 1, h);
      });
    }
  } else if (series.chart === "bands") {
    for (let p = 0; p < width; p++) {
      const c = columns[p] as number;
      if (c < 0) continue;
      // Thresholds from the largest: each ratio holds the next (|g/w| <= 0.1 ⊇ <= 0.01 …).
      for (let k = 0; k < parts; k++) {
        const v = at(c, k);
        if (!Number.isFinite(v)) continue;
        ctx.fillStyle = BAND_COLORS[k % BAND_COLORS.length] as string;
        const h = Math.min(Math.max(v, 0), 1) * (height - 2);
        ctx.fillRect(p, height - h, 1, h);
      }
    }
  } else if (series.chart === "box") {
    ctx.fillStyle = SERIES_COLORS[0];
    ctx.strokeStyle = ink;
    let previous = -2;
    for (let p = 0; p < width; p++) {
      const c = columns[p] as number;
      if (c < 0 || c === previous) continue;
      previous = c;
      let end = p;
      while (end + 1 < width && columns[end + 1] === c) end++;
      const [vmin, q1, mean, q3, vmax] = [0, 1, 2, 3, 4].map((k) => at(c, k)) as number[];
      const mid = (p + end + 1) / 2;
      ctx.globalAlpha = 0.8;
      ctx.fillRect(mid - 0.5, y(vmax as number), 1, y(vmin as number) - y(vmax as number));
      const boxW = Math.max(end - p - 1, 1);
      ctx.globalAlpha = 0.45;
      ctx.fillRect(
        mid - boxW / 2,
        y(q3 as number),
        boxW,
        Math.max(y(q1 as number) - y(q3 as number), 1),
      );
      ctx.globalAlpha = 1;
      ctx.fillRect(mid - boxW / 2, y(mean as number) - 0.5, boxW, 1.5);
    }
    ctx.globalAlpha = 1;
  } else {
    ctx.strokeStyle = SERIES_COLORS[0];
    ctx.lineWidth = 1.5;
    ctx.beginPath();
    let pen = false;
    for (let p = 0; p < width; p++) {
      const c = columns[p] as number;
      const v = c < 0 ? Number.NaN : at(c, 0);
      if (!Number.isFinite(v)) {
        pen = false;
        continue;
      }
      if (pen) ctx.lineTo(p + 0.5, y(v));
      else ctx.moveTo(p + 0.5, y(v));
      pen = true;
    }
    ctx.stroke();
  }
}

interface RowNodes {
  row: HTMLElement;
  canvas: HTMLCanvasElement;
  index: number;
}

interface FilterBlock {
  root: HTMLElement;
  label: HTMLElement;
  scroll: HTMLElement;
  heatmap: CanvasHeatmap;
  marks: HTMLElement;
  data?: Filters;
  /** The filters were asked for (at once when clicked open, else once the block shows). */
  requested: boolean;
}

class LayerView {
  private readonly model: AnyModel<LayerState>;
  private readonly root: HTMLElement;
  private readonly axis: TimeAxis;
  private readonly nodes: TreeNode[];
  private readonly nodeIndex: Map<string, number>;
  private readonly body: HTMLElement;
  private readonly overlay: HTMLElement;
  private readonly xaxis: HTMLElement;
  private readonly changedBox: HTMLElement;
  private readonly legend: HTMLElement;
  private readonly readout: HTMLElement;
  /** Layer the user just clicked open: its filters load at once. */
  private clicked: string | null = null;
  /** Loads the filters of layers opened from Python once they scroll into view. */
  private readonly visibility: IntersectionObserver | null;
  /** Tree node whose chart the pointer is over, for the read-out. */
  private hoverNode: number | null = null;
  private readonly controls: Record<string, HTMLSelectElement | HTMLInputElement> = {};
  private readonly cleanups: (() => void)[] = [];
  private rowCleanups: (() => void)[] = [];
  private rows: RowNodes[] = [];
  private readonly blocks = new Map<string, FilterBlock>();
  private readonly shown = new Map<string, number>();
  private series: Series;
  private width: number;
  private destroyed = false;
  /** Request generation: answers of older windows are dropped. */
  private generation = 0;

  constructor(private readonly context: ViewContext<LayerState>) {
    const { model, root, bus } = context;
    injectLayerStyles(root.ownerDocument);
    this.model = model;
    this.root = root;
    this.width = context.width;
    const tree = decodeTree(model.get("tree"));
    this.nodes = tree.nodes;
    this.nodeIndex = new Map(this.nodes.map((n, i) => [n.name, i]));
    this.series = decodeTree(model.get("series"));
    this.axis = new TimeAxis(tree.step_range, tree.snapshot_step.data);

    const header = el("div", "fs-header");
    header.append(el("span", "fs-title", "Layers"));
    const controls = el("span", "fs-controls");
    const select = (
      key: "chart" | "variable" | "stat" | "normalize",
      options: string[],
      title: string,
      caption: string,
    ) => {
      const node = el("select", `fs-select-${key}`);
      controls.append(el("span", "fs-caption", caption));
      node.title = title;
      for (const option of options) node.append(el("option", "", option));
      node.value = String(model.get(key));
      node.addEventListener("change", () => this.save({ [key]: node.value }));
      this.controls[key] = node;
      controls.append(node);
    };
    select("chart", ["horizon", "line", "box", "bands"], "Chart of every node", "chart");
    select("variable", ["gradient", "weight"], "Weights or their gradients", "of");
    select(
      "stat",
      tree.stats,
      "Statistic of the horizon and line charts (mean_abs: l1 per weight)",
      "stat",
    );
    select(
      "normalize",
      ["filter", "snapshot", "global"],
      "Colour range of the filter rows: per filter, per snapshot or the whole run",
      "filter colours per",
    );
    const same = el("input", "fs-same-scale");
    same.type = "checkbox";
    same.checked = Boolean(model.get("same_scale"));
    same.addEventListener("change", () => this.save({ same_scale: same.checked }));
    this.controls.same_scale = same;
    const sameLabel = el("label", "", " same scale");
    sameLabel.prepend(same);
    controls.append(sameLabel);
    this.legend = el("span", "fs-legend fs-layer-legend");
    this.readout = el("span", "fs-readout fs-layer-readout");
    header.append(
      controls,
      this.legend,
      el("span", "fs-hint", "click a name: expand · click a chart: pick · drag: zoom"),
      this.readout,
    );
    this.visibility =
      typeof IntersectionObserver === "undefined"
        ? null
        : new IntersectionObserver((entries) => {
            for (const entry of entries) {
              if (!entry.isIntersecting) continue;
              const layer = (entry.target as HTMLElement).dataset.layer ?? "";
              const block = this.blocks.get(layer);
              if (block !== undefined && !block.requested) this.loadFilters(layer, block);
            }
          });
    this.changedBox = el("div", "fs-changed");
    this.body = el("div", "fs-body");
    this.overlay = el("div", "fs-overlay-layer");
    this.xaxis = el("div", "fs-xaxis");
    root.append(header, this.changedBox, this.body, this.xaxis);

    this.cleanups.push(
      ...linkAxis(this.axis, bus, this, (change) => {
        if (change === "window") this.redraw();
        else this.drawOverlay();
      }),
    );
    this.axis.setPicks(model.get("picked_steps") ?? []);
    this.axis.setWindow(model.get("time_window") ?? null);
    this.renderChanged();
    this.buildRows();
  }

  private save(values: Partial<LayerState>): void {
    for (const [key, value] of Object.entries(values)) {
      this.model.set(key as keyof LayerState, value as never);
    }
    this.model.save_changes();
  }

  private get plotWidth(): number {
    return timeAxisArea(this.width).width;
  }

  private get expanded(): Set<string> {
    return new Set(this.model.get("expanded") ?? []);
  }

  // ---------------------------------------------------------------- tree rows
  private buildRows(): void {
    for (const cleanup of this.rowCleanups) cleanup();
    this.rowCleanups = [];
    this.rows = [];
    const expanded = this.expanded;
    const selected = this.model.get("layer");
    const actions = {
      pick: (step: number) =>
        this.save({ picked_steps: togglePick(this.model.get("picked_steps") ?? [], step) }),
      zoom: (w: Window | null) => this.zoom(w),
    };
    const children: HTMLElement[] = [];
    for (const visible of visibleRows(this.nodes, expanded, PAGE_SIZE, this.shown)) {
      const { node, depth, more } = visible;
      if (more !== undefined) {
        const button = el(
          "button",
          "fs-button fs-more",
          `show ${Math.min(more.hidden, PAGE_SIZE)} more of ${more.hidden}`,
        );
        button.style.marginLeft = `${20 + depth * 14}px`;
        button.addEventListener("click", () => {
          this.shown.set(more.parent, (this.shown.get(more.parent) ?? PAGE_SIZE) + PAGE_SIZE);
          this.buildRows();
        });
        children.push(button);
        continue;
      }
      const row = el("div", "fs-node-row");
      row.dataset.node = node.name;
      row.dataset.level = node.level;
      if (node.name === selected) row.classList.add("fs-selected");
      const label = el("div", "fs-node-label");
      label.style.paddingLeft = `${6 + depth * 14}px`;
      const open = expanded.has(node.name);
      const canOpen = node.layer || this.nodes.some((n) => n.parent === node.name);
      label.append(el("span", "fs-toggle", canOpen ? (open ? "▾" : "▸") : ""));
      label.append(el("span", "fs-node-name", node.name));
      label.append(el("span", "fs-node-meta", node.layer ? `${node.filters} f` : node.level));
      label.title = `${node.name} (${node.level}, ${node.params} weights${node.layer ? `, ${node.filters} filters` : ""})`;
      label.addEventListener("click", () => this.clickNode(node));
      const canvas = el("canvas", "fs-node-chart");
      row.append(label, canvas);
      children.push(row);
      this.rows.push({ row, canvas, index: this.nodeIndex.get(node.name) ?? 0 });
      const index = this.nodeIndex.get(node.name) ?? 0;
      const enter = () => {
        this.hoverNode = index;
      };
      const leave = () => {
        this.hoverNode = null;
      };
      canvas.addEventListener("pointerenter", enter);
      canvas.addEventListener("pointerleave", leave);
      this.rowCleanups.push(attachPointer(canvas, this.axis, actions), () => {
        canvas.removeEventListener("pointerenter", enter);
        canvas.removeEventListener("pointerleave", leave);
      });
      if (node.layer && open) children.push(this.filterBlock(node).root);
    }
    this.body.replaceChildren(...children, this.overlay);
    this.redraw();
  }

  private clickNode(node: TreeNode): void {
    const expanded = this.expanded;
    if (expanded.has(node.name)) expanded.delete(node.name);
    else expanded.add(node.name);
    const update: Partial<LayerState> = { expanded: [...expanded] };
    if (node.layer) update.layer = node.name;
    this.clicked = node.layer && expanded.has(node.name) ? node.name : null;
    this.save(update);
  }

  // ---------------------------------------------------------------- filters
  private filterBlock(node: TreeNode): FilterBlock {
    let block = this.blocks.get(node.name);
    if (block === undefined) {
      const root = el("div", "fs-filters");
      root.dataset.layer = node.name;
      const label = el("div", "fs-filters-label", `${node.filters} filters · loading…`);
      const scroll = el("div", "fs-filters-scroll");
      const heatmap = new CanvasHeatmap("fs-heatmap fs-filter-chart");
      const marks = el("div", "fs-filter-marks");
      scroll.append(heatmap.canvas, marks);
      root.append(label, scroll);
      const made: FilterBlock = { root, label, scroll, heatmap, marks, requested: false };
      block = made;
      this.blocks.set(node.name, made);
      heatmap.canvas.addEventListener("click", (event) => {
        const cell = heatmap.cellAtClient(event.clientX, event.clientY);
        const filters = made.data?.filters.data;
        if (cell === null || filters === undefined) return;
        this.save({ layer: node.name, filter_index: filters[cell[0]] as number });
      });
      heatmap.canvas.addEventListener("pointermove", (event) => {
        const box = heatmap.canvas.getBoundingClientRect();
        if (box.width === 0) return;
        const step = this.axis.scale(0, box.width).invert(event.clientX - box.left);
        this.axis.setHover(this.axis.snap(step));
      });
      heatmap.canvas.addEventListener("pointerleave", () => this.axis.setHover(null));
      // The layer clicked open loads now; layers opened from Python (a whole tree, say) load
      // when they scroll into view, so no more filter rows travel than are looked at.
      if (this.clicked === node.name || this.visibility === null) this.loadFilters(node.name, made);
      else this.visibility.observe(root);
    }
    return block;
  }

  private loadFilters(layer: string, block: FilterBlock): void {
    block.requested = true;
    this.visibility?.unobserve(block.root);
    const generation = this.generation;
    const [w0, w1] = this.axis.window;
    const whole = w0 <= this.axis.extent[0] && w1 >= this.axis.extent[1];
    const params: Record<string, unknown> = {
      layer,
      columns: Math.max(this.plotWidth, 2),
      normalize: this.model.get("normalize") ?? "filter",
    };
    if (!whole) Object.assign(params, { start: Math.floor(w0), stop: Math.ceil(w1) });
    this.root.dataset.pending = layer;
    this.context.requests.request<WireFilters>("filters", params).then(
      (answer) => {
        if (this.destroyed || generation !== this.generation) return;
        block.data = answer;
        this.root.dataset.pending = "";
        this.root.dataset.loaded = [...this.blocks.values()]
          .filter((b) => b.data)
          .map((b) => b.root.dataset.layer)
          .join(",");
        this.drawFilters(block);
      },
      (error: Error) => {
        if (this.destroyed) return;
        this.root.dataset.pending = "";
        block.label.textContent = `filters could not load: ${error.message}`;
        console.warn(
          `filterscope: LayerView could not load the filters of ${layer}: ${error.message}`,
        );
      },
    );
  }

  private drawFilters(block: FilterBlock): void {
    const data = block.data;
    const mode = (this.model.get("normalize") ?? "filter") as Normalize;
    // Codes made for another colour range: the picture stays until the new answer arrives.
    if (data === undefined || data.normalize !== mode) return;
    const rows = data.filters.data.length;
    const cols = data.x.data.length;
    const width = this.plotWidth;
    const [w0, w1] = this.axis.window;
    const map = columnOfPixel(data.x.data, w0, w1, width);
    const tree = decodeTree(this.model.get("tree"));
    const grid = filterPixels(data, rows, cols, map, mode, tree.cosine_range);
    const rowPx = Math.max(1, Math.min(8, Math.floor(FILTER_ROWS_PX / Math.max(rows, 1))));
    block.heatmap.setData(grid, rows, width, [0, 1]);
    block.heatmap.resize(width, rows * rowPx);
    block.root.dataset.rows = String(rows);
    block.label.textContent = `${rows} filters · cosine to the previous snapshot (${this.model.get("normalize")}; dark: changed most)`;
    // Marks: the lowest-cosine filters at the picks, and the selected filter.
    const filters = Array.from(data.filters.data as ArrayLike<number>);
    const marks: HTMLElement[] = [];
    const mark = (filter: number, className: string) => {
      const r = filters.indexOf(filter);
      if (r < 0) return;
      const node = el("div", className);
      node.style.top = `${r * rowPx}px`;
      node.style.height = `${rowPx}px`;
      node.dataset.filter = String(filter);
      marks.push(node);
    };
    for (const changed of this.model.get("changed_filters") ?? [])
      mark(changed.filter, "fs-filter-mark fs-changed-filter");
    const selected = this.model.get("filter_index");
    if (selected !== null && selected !== undefined)
      mark(selected, "fs-filter-mark fs-selected-filter");
    block.marks.replaceChildren(...marks);
  }

  // ---------------------------------------------------------------- drawing
  private redraw(): void {
    const width = this.plotWidth;
    const [w0, w1] = this.axis.window;
    const series = this.series;
    const map = columnOfPixel(series.x.data, w0, w1, width);
    const cols = series.x.data.length;
    const parts = series.parts.length;
    const values = series.values.data;
    const visibleCols = new Set(map);
    const extentOf = (node: number): [number, number] | null => {
      let lo = Number.POSITIVE_INFINITY;
      let hi = Number.NEGATIVE_INFINITY;
      for (const c of visibleCols) {
        if (c < 0) continue;
        const e = valueExtent(values, (node * cols + c) * parts, (node * cols + c + 1) * parts);
        if (e !== null) [lo, hi] = [Math.min(lo, e[0]), Math.max(hi, e[1])];
      }
      return lo <= hi ? [lo, hi] : null;
    };
    let shared: [number, number] | null = null;
    if (this.model.get("same_scale")) {
      for (const { index } of this.rows) {
        const e = extentOf(index);
        if (e !== null)
          shared = shared === null ? e : [Math.min(shared[0], e[0]), Math.max(shared[1], e[1])];
      }
    }
    const ink = getComputedStyle(this.root).getPropertyValue("--fs-fg-muted").trim() || "#888";
    const ratio = globalThis.devicePixelRatio || 1;
    for (const { canvas, index, row } of this.rows) {
      canvas.width = Math.round(width * ratio);
      canvas.height = Math.round(ROW_HEIGHT * ratio);
      canvas.style.width = `${width}px`;
      canvas.style.height = `${ROW_HEIGHT - 1}px`;
      const extent =
        series.chart === "bands" ? ([0, 1] as [number, number]) : (shared ?? extentOf(index));
      row.dataset.extent = extent === null ? "" : extent.map(formatValue).join("–");
      row.title = extent === null ? "" : `${series.stat} ${row.dataset.extent}`;
      const ctx = canvas.getContext("2d");
      if (ctx === null || extent === null) continue;
      ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
      ctx.clearRect(0, 0, width, ROW_HEIGHT);
      drawNodeChart(ctx, series, index, map, extent, ROW_HEIGHT - 1, ink);
    }
    this.root.dataset.chart = series.chart;
    this.renderLegend();
    this.root.dataset.level = String(series.level);
    for (const block of this.blocks.values()) if (block.root.isConnected) this.drawFilters(block);
    this.drawAxis();
    this.drawOverlay();
  }

  private drawAxis(): void {
    const [w0, w1] = this.axis.window;
    const sx = this.axis.scale(0, this.plotWidth);
    const ticks = niceTicks(w0, w1, Math.max(2, Math.round(this.plotWidth / 110))).filter(
      Number.isInteger,
    );
    this.xaxis.replaceChildren(
      ...ticks.map((t) => {
        const span = el("span", "", formatStep(t));
        span.style.left = `${sx(t)}px`;
        return span;
      }),
    );
  }

  private drawOverlay(): void {
    const sx = this.axis.scale(LABEL_WIDTH, this.plotWidth);
    const height = `${this.body.scrollHeight}px`;
    const lines: HTMLElement[] = [];
    const line = (className: string, x: number, w = 0) => {
      const node = el("div", `fs-vline ${className}`);
      node.style.left = `${x}px`;
      node.style.height = height;
      if (w > 0) node.style.width = `${w}px`;
      lines.push(node);
      return node;
    };
    this.axis.picks.forEach((step, i) => {
      const node = line("fs-pick-vline", sx(step));
      node.style.setProperty("--pick-color", pickColor(i));
      node.dataset.step = String(step);
    });
    if (this.axis.brush !== null) {
      const [b0, b1] = this.axis.brush.map((s) => sx(s)) as [number, number];
      line("fs-brush-box", b0, Math.max(b1 - b0, 1));
    }
    if (this.axis.hover !== null) line("fs-hover-line", sx(this.axis.hover));
    this.overlay.replaceChildren(...lines);
    this.renderReadout();
  }

  private renderLegend(): void {
    const series = this.series;
    const swatch = (color: string, text: string) => {
      const item = el("span", "fs-legend-item");
      const box = el("span", "fs-swatch");
      box.style.setProperty("--swatch", color);
      item.append(box, text);
      return item;
    };
    const items =
      series.chart === "bands"
        ? series.parts.map((t, k) =>
            swatch(BAND_COLORS[k % BAND_COLORS.length] as string, `|g/w| ≤ ${t}`),
          )
        : series.chart === "horizon"
          ? [
              swatch(POSITIVE[2] as string, `${series.stat} (3 bands, darker: larger)`),
              swatch(NEGATIVE[2] as string, "below 0"),
            ]
          : series.chart === "box"
            ? [swatch(SERIES_COLORS[0], "min · q1 · mean · q3 · max")]
            : [swatch(SERIES_COLORS[0], series.stat)];
    if (series.approximate.length > 0) {
      const note = el(
        "span",
        "fs-hint",
        `${series.approximate.join(", ")} of stages and blocks: weighted means of their layers'`,
      );
      items.push(note);
    }
    this.legend.replaceChildren(...items);
    const stat = this.controls.stat;
    if (stat !== undefined) stat.disabled = series.chart === "box" || series.chart === "bands";
  }

  /** Hover read-out: the hovered node's values at the hovered step. */
  private renderReadout(): void {
    const step = this.axis.hover;
    const node = this.hoverNode;
    const series = this.series;
    const xs = series.x.data;
    if (step === null || node === null || xs.length === 0) {
      this.readout.textContent = step === null ? "" : `step ${formatStep(step)}`;
      return;
    }
    let c = 0;
    while (c + 1 < xs.length && (xs[c + 1] as number) - step < step - (xs[c] as number)) c++;
    const parts = series.parts.length;
    const values = series.values.data;
    const base = (node * xs.length + c) * parts;
    const shown = series.parts
      .map(
        (p, k) =>
          `${series.chart === "bands" ? `≤${p}` : p} ${formatValue(values[base + k] as number)}`,
      )
      .join(" · ");
    this.readout.textContent = `${this.nodes[node]?.name ?? ""} @ step ${formatStep(step)}: ${shown}`;
  }

  private renderChanged(): void {
    const changed = this.model.get("changed_filters") ?? [];
    const picks = this.model.get("picked_steps") ?? [];
    const items: HTMLElement[] = [];
    if (picks.length > 0) {
      items.push(
        el(
          "span",
          "fs-hint",
          changed.length === 0
            ? "no filter is among the 10 lowest-cosine filters at every picked step"
            : `lowest cosine at ${picks.map(formatStep).join(", ")}:`,
        ),
      );
    }
    for (const f of changed) {
      const chip = el("button", "fs-button fs-changed-chip", `${f.layer} #${f.channel}`);
      chip.dataset.filter = String(f.filter);
      chip.title = `Select filter ${f.channel} of ${f.layer}`;
      chip.addEventListener("click", () => {
        const expanded = new Set([...this.expanded, ...ancestors(this.nodes, f.layer), f.layer]);
        this.save({ layer: f.layer, filter_index: f.filter, expanded: [...expanded] });
      });
      items.push(chip);
    }
    this.changedBox.replaceChildren(...items);
  }

  private zoom(window: Window | null): void {
    zoomAxis(this.axis, this.context.bus, this, this.model, window);
  }

  // ---------------------------------------------------------------- lifecycle
  resize(width: number): void {
    this.width = width;
    this.reloadFilters();
    this.redraw();
  }

  private reloadFilters(): void {
    this.generation += 1;
    for (const [layer, block] of this.blocks) {
      if (!block.root.isConnected) {
        this.visibility?.unobserve(block.root);
        this.blocks.delete(layer);
      } else if (block.requested) this.loadFilters(layer, block);
    }
  }

  changed(key: string): void {
    const model = this.model;
    if (key === "series") {
      this.series = decodeTree(model.get("series"));
      for (const k of ["chart", "variable", "stat"] as const) {
        const control = this.controls[k];
        if (control) control.value = String(model.get(k));
      }
      this.redraw();
    } else if (key === "expanded" || key === "layer") {
      this.buildRows();
    } else if (key === "picked_steps") {
      this.axis.setPicks(model.get("picked_steps") ?? []);
      this.renderChanged();
    } else if (key === "changed_filters") {
      this.renderChanged();
      this.redraw();
    } else if (key === "time_window") {
      this.axis.setWindow(model.get("time_window") ?? null);
      this.reloadFilters();
    } else if (key === "same_scale") {
      (this.controls.same_scale as HTMLInputElement).checked = Boolean(model.get("same_scale"));
      this.redraw();
    } else if (key === "normalize" || key === "filter_index") {
      const control = this.controls.normalize;
      if (control) control.value = String(model.get("normalize"));
      // The filter rows travel encoded for one colour range: ask again for the new one.
      if (key === "normalize") this.reloadFilters();
      this.redraw();
    } else {
      const control = this.controls[key];
      if (control) control.value = String(model.get(key as keyof LayerState));
    }
  }

  destroy(): void {
    this.destroyed = true;
    this.visibility?.disconnect();
    for (const cleanup of [...this.cleanups, ...this.rowCleanups]) cleanup();
  }
}

export const LAYER: ViewDefinition<LayerState> = {
  className: LAYER_CLASS,
  rebuildOn: ["tree"],
  listen: [
    "series",
    "expanded",
    "layer",
    "filter_index",
    "picked_steps",
    "changed_filters",
    "time_window",
    "same_scale",
    "normalize",
    "chart",
    "variable",
    "stat",
  ],
  create: (context) => new LayerView(context),
};

/** anywidget `render` for `LayerView`; returns the cleanup that detaches it from the model. */
export function renderLayer({
  model,
  el: host,
}: Pick<RenderProps<LayerState>, "model" | "el">): () => void {
  return mountView(LAYER, { model, el: host });
}
