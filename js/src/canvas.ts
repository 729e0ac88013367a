/**
 * A canvas renderer for heat maps and pixel charts: a grid of `rows × cols` values drawn as
 * coloured cells into one `ImageData`, with no DOM node per cell, so 10⁵ cells and more redraw
 * in a few milliseconds.
 *
 * The maths is kept in pure functions (`colorScale`, `cellLayout`, `rasterize`) that tests check
 * without a canvas; `CanvasHeatmap` puts them on a `<canvas>` and maps pointer positions back to
 * cells.
 */

import type { TypedArray } from "./transport";

export type RGBA = readonly [number, number, number, number];

/** Perceptually ordered stops (viridis), readable on light and dark backgrounds. */
export const VIRIDIS: readonly RGBA[] = [
  [68, 1, 84, 255],
  [59, 82, 139, 255],
  [33, 145, 140, 255],
  [94, 201, 98, 255],
  [253, 231, 37, 255],
];

/** A lookup table of `steps` colours over `domain`; values outside clamp to the ends. */
export interface ColorScale {
  readonly domain: readonly [number, number];
  /** `steps × 4` bytes: RGBA of each step, first for `domain[0]`, last for `domain[1]`. */
  readonly lut: Uint8ClampedArray;
  readonly steps: number;
  /** Colour of NaN and missing cells (transparent by default: the background shows). */
  readonly missing: RGBA;
}

/** Build a colour scale interpolating `stops` linearly over `domain`, in `steps` colours. */
export function colorScale(
  domain: readonly [number, number],
  stops: readonly RGBA[] = VIRIDIS,
  steps = 256,
  missing: RGBA = [0, 0, 0, 0],
): ColorScale {
  if (stops.length === 0) throw new Error("a colour scale needs at least one stop");
  const lut = new Uint8ClampedArray(steps * 4);
  for (let i = 0; i < steps; i++) {
    const t = steps === 1 ? 0 : (i / (steps - 1)) * (stops.length - 1);
    const k = Math.min(Math.floor(t), stops.length - 2);
    const a = stops[Math.max(k, 0)] as RGBA;
    const b = stops[Math.min(k + 1, stops.length - 1)] as RGBA;
    const f = stops.length === 1 ? 0 : t - Math.max(k, 0);
    for (let c = 0; c < 4; c++) {
      const from = a[c] as number;
      lut[i * 4 + c] = Math.round(from + ((b[c] as number) - from) * f);
    }
  }
  return { domain: [domain[0], domain[1]], lut, steps, missing };
}

/** Step of the colour table for `value`: -1 for NaN, else clamped to `0..steps-1`. */
export function colorIndex(scale: ColorScale, value: number): number {
  if (Number.isNaN(value)) return -1;
  const [d0, d1] = scale.domain;
  const span = d1 - d0;
  const t = span === 0 ? 0.5 : (value - d0) / span;
  return Math.min(Math.max(Math.floor(t * scale.steps), 0), scale.steps - 1);
}

/** The colour of `value` under `scale`. */
export function colorOf(scale: ColorScale, value: number): RGBA {
  const i = colorIndex(scale, value);
  if (i < 0) return scale.missing;
  const { lut } = scale;
  return [
    lut[i * 4] as number,
    lut[i * 4 + 1] as number,
    lut[i * 4 + 2] as number,
    lut[i * 4 + 3] as number,
  ];
}

/** Finite min and max of `values`, or null when none is finite. */
export function finiteExtent(values: ArrayLike<number>): [number, number] | null {
  let lo = Number.POSITIVE_INFINITY;
  let hi = Number.NEGATIVE_INFINITY;
  for (let i = 0; i < values.length; i++) {
    const v = values[i] as number;
    if (!Number.isFinite(v)) continue;
    if (v < lo) lo = v;
    if (v > hi) hi = v;
  }
  return lo <= hi ? [lo, hi] : null;
}

/** Which cell each pixel column and row shows, for a grid stretched over `width × height`. */
export interface CellLayout {
  readonly rows: number;
  readonly cols: number;
  readonly width: number;
  readonly height: number;
  /** Cell column of each pixel column (the cell under the pixel's centre). */
  readonly colOfPixel: Int32Array;
  /** Cell row of each pixel row. */
  readonly rowOfPixel: Int32Array;
}

function pixelMap(cells: number, pixels: number): Int32Array {
  const out = new Int32Array(pixels);
  for (let p = 0; p < pixels; p++) {
    out[p] = Math.min(Math.floor(((p + 0.5) * cells) / pixels), cells - 1);
  }
  return out;
}

/** Lay `rows × cols` cells over `width × height` pixels (row 0 at the top). */
export function cellLayout(rows: number, cols: number, width: number, height: number): CellLayout {
  const w = Math.max(Math.floor(width), 0);
  const h = Math.max(Math.floor(height), 0);
  return {
    rows,
    cols,
    width: w,
    height: h,
    colOfPixel: cols > 0 ? pixelMap(cols, w) : new Int32Array(0),
    rowOfPixel: rows > 0 ? pixelMap(rows, h) : new Int32Array(0),
  };
}

/** The `[row, col]` under pixel `(x, y)`, or null outside the grid. */
export function cellAt(layout: CellLayout, x: number, y: number): [number, number] | null {
  const px = Math.floor(x);
  const py = Math.floor(y);
  if (px < 0 || py < 0 || px >= layout.width || py >= layout.height) return null;
  if (layout.rows === 0 || layout.cols === 0) return null;
  return [layout.rowOfPixel[py] as number, layout.colOfPixel[px] as number];
}

/**
 * Fill `out` (RGBA bytes of a `width × height` image) with the cells of `values`, a row-major
 * `rows × cols` grid. Colours are looked up once per cell, then copied per pixel.
 */
export function rasterize(
  values: TypedArray | ArrayLike<number>,
  layout: CellLayout,
  scale: ColorScale,
  out: Uint8ClampedArray,
): void {
  const { rows, cols, width, height, colOfPixel, rowOfPixel } = layout;
  if (values.length < rows * cols) {
    throw new Error(`a ${rows} × ${cols} grid needs ${rows * cols} values, got ${values.length}`);
  }
  if (out.length < width * height * 4) {
    throw new Error(`the image needs ${width * height * 4} bytes, got ${out.length}`);
  }
  const { lut, missing } = scale;
  const rowColors = new Uint8ClampedArray(cols * 4);
  let lastRow = -1;
  for (let y = 0; y < height; y++) {
    const row = rowOfPixel[y] as number;
    if (row !== lastRow) {
      for (let c = 0; c < cols; c++) {
        const i = colorIndex(scale, values[row * cols + c] as number);
        for (let k = 0; k < 4; k++) {
          rowColors[c * 4 + k] = (i < 0 ? missing[k] : lut[i * 4 + k]) as number;
        }
      }
      lastRow = row;
    }
    let o = y * width * 4;
    for (let x = 0; x < width; x++) {
      const c = (colOfPixel[x] as number) * 4;
      out[o] = rowColors[c] as number;
      out[o + 1] = rowColors[c + 1] as number;
      out[o + 2] = rowColors[c + 2] as number;
      out[o + 3] = rowColors[c + 3] as number;
      o += 4;
    }
  }
}

/** A heat map on a `<canvas>`: set the grid, size it, read cells back from pointer positions. */
export class CanvasHeatmap {
  readonly canvas: HTMLCanvasElement;
  private values: ArrayLike<number> = new Float32Array(0);
  private rows = 0;
  private cols = 0;
  private scale: ColorScale = colorScale([0, 1]);
  private layout: CellLayout = cellLayout(0, 0, 0, 0);
  private width = 0;
  private height = 0;

  constructor(className = "fs-heatmap") {
    this.canvas = document.createElement("canvas");
    this.canvas.className = className;
  }

  /** Show `values` (`rows × cols`, row-major) coloured over `domain` (default: their extent). */
  setData(
    values: ArrayLike<number>,
    rows: number,
    cols: number,
    domain?: readonly [number, number],
  ): void {
    this.values = values;
    this.rows = rows;
    this.cols = cols;
    this.scale = colorScale(domain ?? finiteExtent(values) ?? [0, 1]);
    this.draw();
  }

  /** Size the canvas in CSS pixels (drawn at the device's pixel ratio) and redraw. */
  resize(width: number, height: number): void {
    this.width = width;
    this.height = height;
    this.draw();
  }

  /** `[row, col]` under a pointer at `clientX, clientY`, or null. */
  cellAtClient(clientX: number, clientY: number): [number, number] | null {
    const box = this.canvas.getBoundingClientRect();
    if (box.width === 0 || box.height === 0) return null;
    const sx = this.layout.width / box.width;
    const sy = this.layout.height / box.height;
    return cellAt(this.layout, (clientX - box.left) * sx, (clientY - box.top) * sy);
  }

  draw(): void {
    const ratio = globalThis.devicePixelRatio || 1;
    const w = Math.round(this.width * ratio);
    const h = Math.round(this.height * ratio);
    this.canvas.width = w;
    this.canvas.height = h;
    this.canvas.style.width = `${this.width}px`;
    this.canvas.style.height = `${this.height}px`;
    this.layout = cellLayout(this.rows, this.cols, w, h);
    const ctx = this.canvas.getContext("2d");
    if (ctx === null || w === 0 || h === 0) return;
    const image = ctx.createImageData(w, h);
    rasterize(this.values, this.layout, this.scale, image.data);
    ctx.putImageData(image, 0, 0);
  }
}
