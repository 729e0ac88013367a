/**
 * A canvas scatter of one filter's 2-D PCA points: coloured by cluster, with 1σ and 2σ ellipses
 * of each Gaussian component and the outlier samples ringed.
 *
 * The maths is in pure functions (`eigen2`, `ellipseAxes`, `ellipsePoints`, `scatterExtent`,
 * `scatterTransform`, `nearestPoint`) that tests check without a canvas; `ScatterCanvas` puts
 * them on a `<canvas>` (one path per cluster, no DOM node per point) and maps the pointer back to
 * the nearest point.
 */

import { SERIES_COLORS } from "./theme";

/** Eigen-decomposition of the symmetric 2×2 matrix `[[a, b], [b, c]]`. */
export interface Eigen2 {
  /** Larger eigenvalue. */
  l1: number;
  /** Smaller eigenvalue. */
  l2: number;
  /** Unit eigenvector of `l1`. */
  v1: [number, number];
}

export function eigen2(a: number, b: number, c: number): Eigen2 {
  const mean = (a + c) / 2;
  const radius = Math.hypot((a - c) / 2, b);
  const l1 = mean + radius;
  const l2 = mean - radius;
  let v: [number, number];
  if (Math.abs(b) > 1e-300) v = [l1 - c, b];
  else v = a >= c ? [1, 0] : [0, 1];
  const norm = Math.hypot(v[0], v[1]);
  return { l1, l2, v1: [v[0] / norm, v[1] / norm] };
}

/** Semi-axes and orientation of the `sigma`-σ ellipse of a 2×2 covariance. */
export interface EllipseAxes {
  /** Semi-axis along the major direction: `sigma · √l1`. */
  major: number;
  /** Semi-axis along the minor direction: `sigma · √l2` (0 for a degenerate covariance). */
  minor: number;
  /** Angle of the major axis from the x axis, radians in (-π/2, π/2]. */
  angle: number;
}

/** `cov` holds `[c00, c01, c10, c11]` (row-major); the off-diagonal is averaged. */
export function ellipseAxes(cov: ArrayLike<number>, sigma: number): EllipseAxes {
  const a = cov[0] as number;
  const b = ((cov[1] as number) + (cov[2] as number)) / 2;
  const c = cov[3] as number;
  const { l1, l2, v1 } = eigen2(a, b, c);
  let angle = Math.atan2(v1[1], v1[0]);
  if (angle > Math.PI / 2) angle -= Math.PI;
  if (angle <= -Math.PI / 2) angle += Math.PI;
  return {
    major: sigma * Math.sqrt(Math.max(l1, 0)),
    minor: sigma * Math.sqrt(Math.max(l2, 0)),
    angle,
  };
}

/** `n` points `[x0, y0, x1, y1, ...]` on the ellipse of `axes` centred on `mean`. */
export function ellipsePoints(mean: ArrayLike<number>, axes: EllipseAxes, n = 64): Float64Array {
  const out = new Float64Array(n * 2);
  const cos = Math.cos(axes.angle);
  const sin = Math.sin(axes.angle);
  for (let i = 0; i < n; i++) {
    const t = (2 * Math.PI * i) / n;
    const u = axes.major * Math.cos(t);
    const v = axes.minor * Math.sin(t);
    out[2 * i] = (mean[0] as number) + u * cos - v * sin;
    out[2 * i + 1] = (mean[1] as number) + u * sin + v * cos;
  }
  return out;
}

export interface Extent {
  x0: number;
  x1: number;
  y0: number;
  y1: number;
}

/** Bounds of interleaved `[x, y, ...]` arrays (finite values only), padded by `pad` of the span. */
export function scatterExtent(parts: readonly ArrayLike<number>[], pad = 0.05): Extent {
  let x0 = Infinity;
  let x1 = -Infinity;
  let y0 = Infinity;
  let y1 = -Infinity;
  for (const xy of parts) {
    for (let i = 0; i + 1 < xy.length; i += 2) {
      const x = xy[i] as number;
      const y = xy[i + 1] as number;
      if (!Number.isFinite(x) || !Number.isFinite(y)) continue;
      if (x < x0) x0 = x;
      if (x > x1) x1 = x;
      if (y < y0) y0 = y;
      if (y > y1) y1 = y;
    }
  }
  if (x0 > x1) return { x0: -1, x1: 1, y0: -1, y1: 1 };
  const dx = x1 - x0 || Math.abs(x0) || 1;
  const dy = y1 - y0 || Math.abs(y0) || 1;
  return { x0: x0 - dx * pad, x1: x1 + dx * pad, y0: y0 - dy * pad, y1: y1 + dy * pad };
}

/** Data → pixel mapping of a plot `width × height` (y up), and back. */
export interface Transform {
  x(value: number): number;
  y(value: number): number;
  invert(px: number, py: number): [number, number];
}

export function scatterTransform(extent: Extent, width: number, height: number): Transform {
  const sx = width / (extent.x1 - extent.x0);
  const sy = height / (extent.y1 - extent.y0);
  return {
    x: (v) => (v - extent.x0) * sx,
    y: (v) => height - (v - extent.y0) * sy,
    invert: (px, py) => [extent.x0 + px / sx, extent.y0 + (height - py) / sy],
  };
}

/** Index of the point nearest pixel `(px, py)` within `radius` pixels, or -1. */
export function nearestPoint(
  points: ArrayLike<number>,
  transform: Transform,
  px: number,
  py: number,
  radius = 8,
): number {
  let best = -1;
  let bestD = radius * radius;
  for (let i = 0; 2 * i + 1 < points.length; i++) {
    const dx = transform.x(points[2 * i] as number) - px;
    const dy = transform.y(points[2 * i + 1] as number) - py;
    const d = dx * dx + dy * dy;
    if (d <= bestD) {
      bestD = d;
      best = i;
    }
  }
  return best;
}

export function clusterColor(cluster: number): string {
  const n = SERIES_COLORS.length;
  return SERIES_COLORS[((cluster % n) + n) % n] as string;
}

/** What one scatter shows. */
export interface ScatterData {
  /** `(n, 2)` points, interleaved. */
  points: ArrayLike<number>;
  labels: ArrayLike<number>;
  outlier: ArrayLike<number>;
  /** `(k, 2)` component means and `(k, 2, 2)` covariances. */
  mean: ArrayLike<number>;
  covariance: ArrayLike<number>;
  k: number;
}

const SIGMAS = [1, 2] as const;

/** The ellipse outlines of every component, 1σ then 2σ, as `[component, sigma, points]`. */
export function componentEllipses(data: ScatterData): [number, number, Float64Array][] {
  const out: [number, number, Float64Array][] = [];
  for (let c = 0; c < data.k; c++) {
    const mean = [data.mean[2 * c] as number, data.mean[2 * c + 1] as number];
    const cov = Array.from({ length: 4 }, (_, i) => data.covariance[4 * c + i] as number);
    if (!mean.every(Number.isFinite) || !cov.every(Number.isFinite)) continue;
    for (const sigma of SIGMAS) out.push([c, sigma, ellipsePoints(mean, ellipseAxes(cov, sigma))]);
  }
  return out;
}

/** A `<canvas>` scatter; `draw` redraws everything (2,000 points take well under a frame). */
export class ScatterCanvas {
  readonly canvas: HTMLCanvasElement;
  private data: ScatterData | null = null;
  private transform: Transform | null = null;
  private highlight = -1;
  private hover = -1;

  constructor(
    readonly width: number,
    readonly height: number,
  ) {
    this.canvas = document.createElement("canvas");
    this.canvas.className = "fs-ascatter";
    const ratio = globalThis.devicePixelRatio || 1;
    this.canvas.width = Math.round(width * ratio);
    this.canvas.height = Math.round(height * ratio);
    this.canvas.style.width = `${width}px`;
    this.canvas.style.height = `${height}px`;
  }

  /** Show `data` and highlight point `highlight` (-1: none); one redraw. */
  setData(data: ScatterData | null, highlight = this.highlight): void {
    this.highlight = highlight;
    this.data = data;
    this.hover = -1;
    if (data === null) {
      this.transform = null;
    } else {
      const ellipses = componentEllipses(data).map(([, , xy]) => xy);
      const extent = scatterExtent([data.points, ...ellipses]);
      this.transform = scatterTransform(extent, this.width - 12, this.height - 12);
    }
    this.draw();
  }

  /** Sample (point index) drawn highlighted, -1 for none. */
  setHighlight(index: number): void {
    this.highlight = index;
    this.draw();
  }

  setHover(index: number): void {
    if (index === this.hover) return;
    this.hover = index;
    this.draw();
  }

  /** Point under client position `(x, y)` relative to the canvas, or -1. */
  pointAt(x: number, y: number): number {
    if (this.data === null || this.transform === null) return -1;
    return nearestPoint(this.data.points, this.transform, x - 6, y - 6);
  }

  /** Pixel position of point `i` in canvas CSS pixels. */
  pointPosition(i: number): [number, number] | null {
    if (this.data === null || this.transform === null) return null;
    return [
      this.transform.x(this.data.points[2 * i] as number) + 6,
      this.transform.y(this.data.points[2 * i + 1] as number) + 6,
    ];
  }

  draw(): void {
    const ctx = this.canvas.getContext("2d");
    if (ctx === null) return;
    const ratio = this.canvas.width / this.width;
    ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
    ctx.clearRect(0, 0, this.width, this.height);
    const { data, transform: t } = this;
    if (data === null || t === null) return;
    const style = getComputedStyle(this.canvas);
    const fg = style.getPropertyValue("--fs-fg").trim() || "#222";
    const accent = style.getPropertyValue("--fs-accent").trim() || "#1976d2";
    ctx.save();
    ctx.translate(6, 6);
    const n = Math.floor(data.points.length / 2);
    // Points, one path per cluster.
    const clusters = new Set<number>();
    for (let i = 0; i < n; i++) clusters.add(data.labels[i] as number);
    for (const c of clusters) {
      ctx.fillStyle = clusterColor(c);
      ctx.globalAlpha = 0.75;
      ctx.beginPath();
      for (let i = 0; i < n; i++) {
        if (data.labels[i] !== c) continue;
        const x = t.x(data.points[2 * i] as number);
        const y = t.y(data.points[2 * i + 1] as number);
        ctx.moveTo(x + 2.2, y);
        ctx.arc(x, y, 2.2, 0, 2 * Math.PI);
      }
      ctx.fill();
    }
    ctx.globalAlpha = 1;
    // Ellipses: 1σ solid, 2σ dashed.
    ctx.lineWidth = 1.25;
    for (const [c, sigma, xy] of componentEllipses(data)) {
      ctx.strokeStyle = clusterColor(c);
      ctx.setLineDash(sigma === 1 ? [] : [4, 3]);
      ctx.beginPath();
      for (let i = 0; i < xy.length; i += 2) {
        const x = t.x(xy[i] as number);
        const y = t.y(xy[i + 1] as number);
        if (i === 0) ctx.moveTo(x, y);
        else ctx.lineTo(x, y);
      }
      ctx.closePath();
      ctx.stroke();
    }
    ctx.setLineDash([]);
    // Outliers ringed.
    ctx.strokeStyle = fg;
    ctx.lineWidth = 1.25;
    ctx.beginPath();
    for (let i = 0; i < n; i++) {
      if (!data.outlier[i]) continue;
      const x = t.x(data.points[2 * i] as number);
      const y = t.y(data.points[2 * i + 1] as number);
      ctx.moveTo(x + 5, y);
      ctx.arc(x, y, 5, 0, 2 * Math.PI);
    }
    ctx.stroke();
    for (const [index, color, r] of [
      [this.highlight, accent, 7],
      [this.hover, fg, 4],
    ] as const) {
      if (index < 0 || index >= n) continue;
      ctx.strokeStyle = color;
      ctx.lineWidth = 2;
      ctx.beginPath();
      ctx.arc(
        t.x(data.points[2 * index] as number),
        t.y(data.points[2 * index + 1] as number),
        r,
        0,
        2 * Math.PI,
      );
      ctx.stroke();
    }
    ctx.restore();
  }
}
