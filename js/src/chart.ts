/**
 * A line chart over the shared time axis, drawn with plain SVG.
 *
 * A line is either exact (`y` at each `x`) or a min/max envelope (`lo`/`hi` over the bucket that
 * starts at each `x`, drawn as a band), which is how long per-step series arrive from the index.
 * The chart redraws its data when the axis window, its width or its lines change (`setLines`,
 * when a zoomed window arrives at a finer level), and only its overlay (hover line, pick
 * markers, brush) when those change, so hovering stays cheap however long the series are. It
 * updates its SVG in place: each line keeps its path, ticks and dots reuse their nodes.
 */

import {
  formatStep,
  formatTick,
  formatValue,
  type LinearScale,
  linearScale,
  niceExtent,
  niceTicks,
  tickStep,
} from "./scale";
import { type GroupColors, pickColor } from "./theme";
import { type AxisChange, TIME_AXIS_LAYOUT, type TimeAxis, timeAxisArea } from "./timeaxis";
import type { NdArray, TypedArray } from "./transport";

export interface LineData {
  name: string;
  /** Lines of one group share a colour across charts (e.g. "train", "val"). */
  group: string;
  x: NdArray;
  y?: NdArray;
  lo?: NdArray;
  hi?: NdArray;
  /** Draw a dot at every point (sparse series such as per-snapshot evaluations). */
  markers?: boolean;
  /** Index level: 0 for raw values, k for buckets of 2**k entries. */
  level?: number;
}

export interface ChartData {
  key: string;
  title: string;
  lines: LineData[];
}

export interface ChartOptions {
  /** Draw step labels under this chart (the bottom chart of a stack). */
  xAxis: boolean;
  height: number;
}

const SVG_NS = "http://www.w3.org/2000/svg";
/** Left edge of the plot area: the shared time-axis gutter (y tick labels sit in it). */
export const PLOT_LEFT = TIME_AXIS_LAYOUT.left;
const PLOT_TOP = 6;
const X_AXIS_HEIGHT = 24;
/** Above this many visible points the per-point dots would only blur the line. */
const MAX_DOTS = 300;

let clipCounter = 0;

function svg<K extends keyof SVGElementTagNameMap>(
  tag: K,
  attrs: Record<string, string | number> = {},
): SVGElementTagNameMap[K] {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
  return node;
}

function html<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  className: string,
  text?: string,
): HTMLElementTagNameMap[K] {
  const node = document.createElement(tag);
  node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

const px = (v: number) => Math.round(v * 10) / 10;

/** Index of the last element `<= value` in ascending `xs` (0 when none is). */
export function lastAtOrBefore(xs: TypedArray, value: number): number {
  let lo = 0;
  let hi = xs.length - 1;
  while (lo < hi) {
    const mid = (lo + hi + 1) >> 1;
    if ((xs[mid] as number) <= value) lo = mid;
    else hi = mid - 1;
  }
  return lo;
}

/** Index range `[first, last]` of the points needed to draw `[w0, w1]`: one beyond each edge. */
export function visibleRange(xs: TypedArray, w0: number, w1: number): [number, number] {
  if (xs.length === 0) return [0, -1];
  const first = lastAtOrBefore(xs, w0);
  const last = Math.min(lastAtOrBefore(xs, w1) + 1, xs.length - 1);
  return [first, last];
}

/** Finite min and max of the line's values over an index range; null when none are finite. */
export function lineExtent(line: LineData, first: number, last: number): [number, number] | null {
  const low = (line.y ?? line.lo)?.data;
  const high = (line.y ?? line.hi)?.data;
  if (low === undefined || high === undefined) return null;
  let min = Number.POSITIVE_INFINITY;
  let max = Number.NEGATIVE_INFINITY;
  for (let i = first; i <= last; i++) {
    const a = low[i] as number;
    const b = high[i] as number;
    if (Number.isFinite(a) && a < min) min = a;
    if (Number.isFinite(b) && b > max) max = b;
  }
  return min <= max ? [min, max] : null;
}

/** SVG path data through the finite points, starting a new sub-path after every gap. */
function linePath(
  xs: TypedArray,
  ys: TypedArray,
  first: number,
  last: number,
  sx: LinearScale,
  sy: LinearScale,
): string {
  let d = "";
  let pen = false;
  for (let i = first; i <= last; i++) {
    const y = ys[i] as number;
    if (!Number.isFinite(y)) {
      pen = false;
      continue;
    }
    d += `${pen ? "L" : "M"}${px(sx(xs[i] as number))},${px(sy(y))}`;
    pen = true;
  }
  return d;
}

/** SVG path data of the band between `lo` and `hi`, one closed polygon per finite run. */
function bandPath(
  xs: TypedArray,
  lo: TypedArray,
  hi: TypedArray,
  first: number,
  last: number,
  sx: LinearScale,
  sy: LinearScale,
): string {
  let d = "";
  let start = -1;
  const close = (end: number) => {
    let top = "";
    for (let j = end; j >= start; j--)
      top += `L${px(sx(xs[j] as number))},${px(sy(hi[j] as number))}`;
    d += `${top}Z`;
  };
  for (let i = first; i <= last; i++) {
    const ok = Number.isFinite(lo[i] as number) && Number.isFinite(hi[i] as number);
    if (ok && start < 0) {
      start = i;
      d += `M${px(sx(xs[i] as number))},${px(sy(lo[i] as number))}`;
    } else if (ok) {
      d += `L${px(sx(xs[i] as number))},${px(sy(lo[i] as number))}`;
    } else if (start >= 0) {
      close(i - 1);
      start = -1;
    }
  }
  if (start >= 0) close(last);
  return d;
}

/** The value a hover read-out shows for `line` at `step`, or null outside the data. */
export function valueAt(line: LineData, step: number): string | null {
  const xs = line.x.data;
  if (xs.length === 0 || step < (xs[0] as number)) return null;
  const i = lastAtOrBefore(xs, step);
  if (line.y !== undefined) {
    // Sparse lines show the point nearest the hover, dense ones the point at or before it.
    const next = Math.min(i + 1, xs.length - 1);
    const j = line.markers && (xs[next] as number) - step < step - (xs[i] as number) ? next : i;
    const v = line.y.data[j] as number;
    return Number.isFinite(v) ? formatValue(v) : null;
  }
  const lo = line.lo?.data[i] as number;
  const hi = line.hi?.data[i] as number;
  if (!Number.isFinite(lo) || !Number.isFinite(hi)) return null;
  return lo === hi ? formatValue(lo) : `${formatValue(lo)}–${formatValue(hi)}`;
}

/** Make `group` hold exactly `count` children of `tag` (reusing the ones it has); return them. */
function reuse<K extends keyof SVGElementTagNameMap>(
  group: SVGGElement,
  tag: K,
  count: number,
  attrs: Record<string, string | number> = {},
): SVGElementTagNameMap[K][] {
  while (group.childElementCount > count) group.lastElementChild?.remove();
  while (group.childElementCount < count) group.append(svg(tag, attrs));
  return [...group.children] as SVGElementTagNameMap[K][];
}

function setAttrs(node: Element, attrs: Record<string, string | number>): void {
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
}

interface LineNodes {
  path: SVGPathElement;
  dots: SVGGElement;
}

export class LineChart {
  readonly root: HTMLDivElement;
  private readonly svgRoot: SVGSVGElement;
  private readonly grid: SVGGElement;
  private readonly labels: SVGGElement;
  private readonly baseline: SVGLineElement;
  private readonly lineLayer: SVGGElement;
  private readonly overlayLayer: SVGGElement;
  private readonly overlay: SVGRectElement;
  private readonly clipRect: SVGRectElement;
  private readonly readout: HTMLSpanElement;
  private readonly unsubscribe: () => void;
  private readonly clipId = `fs-clip-${++clipCounter}`;
  private nodes: LineNodes[] = [];
  private width = 0;

  constructor(
    private data: ChartData,
    private readonly axis: TimeAxis,
    private readonly colors: GroupColors,
    private readonly options: ChartOptions,
  ) {
    this.root = html("div", "fs-chart");
    this.root.dataset.key = data.key;

    const head = html("div", "fs-chart-head");
    head.style.marginLeft = `${PLOT_LEFT}px`;
    head.append(html("span", "fs-chart-title", data.title));
    const legend = html("span", "fs-legend");
    for (const line of data.lines) {
      const item = html("span", "fs-legend-item");
      const swatch = html("span", "fs-swatch");
      swatch.style.setProperty("--swatch", colors.color(line.group));
      item.append(swatch, line.name);
      legend.append(item);
    }
    this.readout = html("span", "fs-readout");
    head.append(legend, this.readout);

    this.svgRoot = svg("svg", { class: "fs-chart-svg" });
    const clip = svg("clipPath", { id: this.clipId });
    this.clipRect = svg("rect");
    clip.append(this.clipRect);
    const defs = svg("defs");
    defs.append(clip);
    const dataLayer = svg("g", { class: "fs-data" });
    this.grid = svg("g", { class: "fs-grid" });
    this.labels = svg("g", { class: "fs-axis" });
    this.baseline = svg("line", { class: "fs-axis-line" });
    this.lineLayer = svg("g", { class: "fs-lines", "clip-path": `url(#${this.clipId})` });
    dataLayer.append(this.grid, this.baseline, this.lineLayer, this.labels);
    this.overlayLayer = svg("g", { class: "fs-marks", "clip-path": `url(#${this.clipId})` });
    this.overlay = svg("rect", { class: "fs-overlay" });
    this.svgRoot.append(defs, dataLayer, this.overlayLayer, this.overlay);
    this.root.append(head, this.svgRoot);
    this.makeLineNodes();

    this.unsubscribe = axis.subscribe((change: AxisChange) => {
      if (change === "window") this.render();
      else this.renderOverlay();
    });
  }

  /** The lines drawn now. */
  get lines(): readonly LineData[] {
    return this.data.lines;
  }

  /**
   * Draw `lines` instead of the current ones (same names and order: a finer window of the same
   * series, or the overview again) and redraw in place.
   */
  setLines(lines: LineData[]): void {
    this.data = { ...this.data, lines };
    if (this.nodes.length !== lines.length) this.makeLineNodes();
    this.render();
  }

  private makeLineNodes(): void {
    this.lineLayer.replaceChildren();
    this.nodes = this.data.lines.map((line) => {
      const path = svg("path");
      path.dataset.name = line.name;
      const dots = svg("g", { class: "fs-dots" });
      this.lineLayer.append(path, dots);
      return { path, dots };
    });
  }

  /** The transparent rectangle over the plot area that receives pointer input. */
  get plotArea(): SVGRectElement {
    return this.overlay;
  }

  private get plotWidth(): number {
    return timeAxisArea(this.width).width;
  }

  private get plotHeight(): number {
    const axisRoom = this.options.xAxis ? X_AXIS_HEIGHT : 4;
    return Math.max(this.options.height - PLOT_TOP - axisRoom, 10);
  }

  /** Set the chart's full width in pixels and redraw. */
  resize(width: number): void {
    if (width === this.width) return;
    this.width = width;
    this.render();
  }

  private xScale(): LinearScale {
    return this.axis.scale(PLOT_LEFT, this.plotWidth);
  }

  /** Redraw axes and data for the current window, width and lines. */
  render(): void {
    const { plotWidth: w, plotHeight: h } = this;
    const [w0, w1] = this.axis.window;
    setAttrs(this.svgRoot, { width: this.width, height: this.options.height });
    for (const rect of [this.overlay, this.clipRect]) {
      setAttrs(rect, { x: PLOT_LEFT, y: PLOT_TOP, width: w, height: h });
    }
    const lines = this.data.lines;
    const ranges = lines.map((line) => visibleRange(line.x.data, w0, w1));
    let yMin = Number.POSITIVE_INFINITY;
    let yMax = Number.NEGATIVE_INFINITY;
    lines.forEach((line, k) => {
      const [first, last] = ranges[k] as [number, number];
      const extent = lineExtent(line, first, last);
      if (extent !== null) {
        yMin = Math.min(yMin, extent[0]);
        yMax = Math.max(yMax, extent[1]);
      }
    });
    if (!(yMin <= yMax)) [yMin, yMax] = [0, 1];
    const yTickCount = Math.max(2, Math.round(h / 36));
    const yDomain = niceExtent(yMin, yMax, yTickCount);
    const sx = this.xScale();
    const sy = linearScale(yDomain, [PLOT_TOP + h, PLOT_TOP]);

    const yStep = tickStep(yDomain[0], yDomain[1], yTickCount);
    const yTicks = niceTicks(yDomain[0], yDomain[1], yTickCount);
    const xTicks = niceTicks(w0, w1, Math.max(2, Math.round(w / 90))).filter(Number.isInteger);
    const gridLines = reuse(this.grid, "line", yTicks.length + xTicks.length);
    yTicks.forEach((t, i) => {
      const y = px(sy(t));
      setAttrs(gridLines[i] as SVGLineElement, { x1: PLOT_LEFT, x2: PLOT_LEFT + w, y1: y, y2: y });
    });
    xTicks.forEach((t, i) => {
      const x = px(sx(t));
      setAttrs(gridLines[yTicks.length + i] as SVGLineElement, {
        x1: x,
        x2: x,
        y1: PLOT_TOP,
        y2: PLOT_TOP + h,
      });
    });
    const xLabels = this.options.xAxis ? xTicks : [];
    const texts = reuse(
      this.labels,
      "text",
      yTicks.length + xLabels.length + (this.options.xAxis ? 1 : 0),
    );
    yTicks.forEach((t, i) => {
      const label = texts[i] as SVGTextElement;
      setAttrs(label, {
        class: "fs-tick-y",
        x: PLOT_LEFT - 6,
        y: px(sy(t)),
        "text-anchor": "end",
        dy: "0.32em",
      });
      label.textContent = formatTick(t, yStep);
    });
    xLabels.forEach((t, i) => {
      const label = texts[yTicks.length + i] as SVGTextElement;
      const x = px(sx(t));
      setAttrs(label, {
        class: "fs-tick-x",
        x,
        y: PLOT_TOP + h + 15,
        // A label at the left edge starts there, clear of the axis title ("step").
        "text-anchor": x - PLOT_LEFT < 14 ? "start" : "middle",
        dy: 0,
      });
      label.textContent = formatStep(t);
    });
    if (this.options.xAxis) {
      const title = texts[texts.length - 1] as SVGTextElement;
      setAttrs(title, {
        class: "fs-axis-title",
        x: PLOT_LEFT - 6,
        y: PLOT_TOP + h + 15,
        "text-anchor": "end",
        dy: 0,
      });
      title.textContent = "step";
    }
    setAttrs(this.baseline, {
      x1: PLOT_LEFT,
      x2: PLOT_LEFT + w,
      y1: PLOT_TOP + h + 0.5,
      y2: PLOT_TOP + h + 0.5,
    });

    let level = 0;
    lines.forEach((line, k) => {
      const [first, last] = ranges[k] as [number, number];
      const { path, dots } = this.nodes[k] as LineNodes;
      const color = this.colors.color(line.group);
      const xs = line.x.data;
      level = Math.max(level, line.level ?? 0);
      path.dataset.level = String(line.level ?? 0);
      path.dataset.points = String(Math.max(last - first + 1, 0));
      let dotCount = 0;
      if (line.y !== undefined) {
        setAttrs(path, {
          class: line.markers ? "fs-line" : "fs-line fs-line-dense",
          stroke: color,
          fill: "none",
          d: linePath(xs, line.y.data, first, last, sx, sy),
        });
        if (line.markers && last - first < MAX_DOTS) {
          const ys = line.y.data;
          const shown: number[] = [];
          for (let i = first; i <= last; i++) if (Number.isFinite(ys[i] as number)) shown.push(i);
          const circles = reuse(dots, "circle", shown.length, { class: "fs-dot", r: 2.5 });
          shown.forEach((i, j) => {
            setAttrs(circles[j] as SVGCircleElement, {
              cx: px(sx(xs[i] as number)),
              cy: px(sy(ys[i] as number)),
              fill: color,
            });
          });
          dotCount = shown.length;
        }
      } else if (line.lo !== undefined && line.hi !== undefined) {
        setAttrs(path, {
          class: "fs-band",
          fill: color,
          stroke: color,
          d: bandPath(xs, line.lo.data, line.hi.data, first, last, sx, sy),
        });
      }
      if (dotCount === 0) dots.replaceChildren();
    });
    this.root.dataset.level = String(level);
    this.renderOverlay();
  }

  /** Redraw the hover line, pick markers and brush, and the hover read-out. */
  renderOverlay(): void {
    const { axis } = this;
    const h = this.plotHeight;
    const sx = this.xScale();
    const marks: SVGElement[] = [];
    axis.picks.forEach((step, i) => {
      const x = px(sx(step));
      const color = pickColor(i);
      const line = svg("line", {
        class: "fs-pick-line",
        x1: x,
        x2: x,
        y1: PLOT_TOP,
        y2: PLOT_TOP + h,
        stroke: color,
      });
      line.dataset.step = String(step);
      const marker = svg("path", {
        class: "fs-pick-marker",
        d: `M${x - 5},${PLOT_TOP}L${x + 5},${PLOT_TOP}L${x},${PLOT_TOP + 7}Z`,
        fill: color,
      });
      marks.push(line, marker);
    });
    if (axis.brush !== null) {
      const [b0, b1] = axis.brush.map((s) => sx(s)) as [number, number];
      marks.push(
        svg("rect", { class: "fs-brush", x: px(b0), y: PLOT_TOP, width: px(b1 - b0), height: h }),
      );
    }
    if (axis.hover !== null) {
      const x = px(sx(axis.hover));
      marks.push(svg("line", { class: "fs-hover", x1: x, x2: x, y1: PLOT_TOP, y2: PLOT_TOP + h }));
    }
    this.overlayLayer.replaceChildren(...marks);

    const hover = axis.hover;
    this.readout.textContent =
      hover === null
        ? ""
        : this.data.lines
            .map((line) => {
              const value = valueAt(line, hover);
              return value === null ? null : `${line.name} ${value}`;
            })
            .filter((part) => part !== null)
            .join(" · ");
  }

  destroy(): void {
    this.unsubscribe();
    this.root.remove();
  }
}
