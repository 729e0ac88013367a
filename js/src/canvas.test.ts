import { describe, expect, it } from "vitest";
import {
  CanvasHeatmap,
  cellAt,
  cellLayout,
  colorIndex,
  colorOf,
  colorScale,
  finiteExtent,
  type RGBA,
  rasterize,
} from "./canvas";

const BLACK: RGBA = [0, 0, 0, 255];
const WHITE: RGBA = [255, 255, 255, 255];

describe("colour scale", () => {
  it("maps the domain's ends to the first and last stop and interpolates between", () => {
    const scale = colorScale([0, 10], [BLACK, WHITE], 256);
    expect(colorOf(scale, 0)).toEqual(BLACK);
    expect(colorOf(scale, 10)).toEqual(WHITE);
    const mid = colorOf(scale, 5);
    expect(mid[0]).toBeGreaterThanOrEqual(127);
    expect(mid[0]).toBeLessThanOrEqual(129);
    expect(mid[3]).toBe(255);
  });

  it("clamps values outside the domain and gives NaN the missing colour", () => {
    const scale = colorScale([0, 1], [BLACK, WHITE], 4);
    expect(colorIndex(scale, -3)).toBe(0);
    expect(colorIndex(scale, 0.3)).toBe(1);
    expect(colorIndex(scale, 0.99)).toBe(3);
    expect(colorIndex(scale, 7)).toBe(3);
    expect(colorIndex(scale, Number.NaN)).toBe(-1);
    expect(colorOf(scale, Number.NaN)).toEqual([0, 0, 0, 0]);
    expect(colorOf(scale, Number.POSITIVE_INFINITY)).toEqual(WHITE);
  });

  it("puts a flat domain in the middle and handles one stop", () => {
    const scale = colorScale([2, 2], [BLACK, WHITE], 3);
    expect(colorIndex(scale, 2)).toBe(1);
    expect(colorOf(colorScale([0, 1], [WHITE]), 0.5)).toEqual(WHITE);
  });

  it("finds the finite extent", () => {
    expect(finiteExtent([3, Number.NaN, -1, Number.POSITIVE_INFINITY])).toEqual([-1, 3]);
    expect(finiteExtent([Number.NaN])).toBeNull();
  });
});

describe("cell layout", () => {
  it("stretches few cells over many pixels", () => {
    const layout = cellLayout(2, 3, 6, 4);
    expect(Array.from(layout.colOfPixel)).toEqual([0, 0, 1, 1, 2, 2]);
    expect(Array.from(layout.rowOfPixel)).toEqual([0, 0, 1, 1]);
    expect(cellAt(layout, 5.5, 3.9)).toEqual([1, 2]);
    expect(cellAt(layout, 6, 0)).toBeNull();
    expect(cellAt(layout, -1, 0)).toBeNull();
  });

  it("samples many cells into few pixels, each pixel showing the cell under its centre", () => {
    const layout = cellLayout(1, 10, 4, 1);
    expect(Array.from(layout.colOfPixel)).toEqual([1, 3, 6, 8]);
    expect(cellAt(cellLayout(0, 0, 4, 4), 1, 1)).toBeNull();
  });
});

describe("rasterize", () => {
  it("fills each pixel with its cell's colour", () => {
    const scale = colorScale([0, 5], [BLACK, WHITE], 6);
    const layout = cellLayout(2, 3, 6, 4);
    const out = new Uint8ClampedArray(6 * 4 * 4);
    rasterize(Float32Array.from([0, 1, 2, 3, 4, Number.NaN]), layout, scale, out);
    const pixel = (x: number, y: number) =>
      Array.from(out.slice((y * 6 + x) * 4, (y * 6 + x) * 4 + 4));
    expect(pixel(0, 0)).toEqual([0, 0, 0, 255]);
    expect(pixel(1, 1)).toEqual([0, 0, 0, 255]);
    expect(pixel(2, 0)).toEqual(colorOf(scale, 1));
    expect(pixel(3, 3)).toEqual(colorOf(scale, 4));
    expect(pixel(5, 3)).toEqual([0, 0, 0, 0]);
  });

  it("draws 10^5 cells without a node per cell", () => {
    const rows = 100;
    const cols = 1000;
    const values = Float32Array.from({ length: rows * cols }, (_, i) => i % 97);
    const layout = cellLayout(rows, cols, 800, 300);
    const out = new Uint8ClampedArray(800 * 300 * 4);
    rasterize(values, layout, colorScale([0, 96]), out);
    const [row, col] = cellAt(layout, 400, 150) as [number, number];
    const x = 400;
    const y = 150;
    expect(Array.from(out.slice((y * 800 + x) * 4, (y * 800 + x) * 4 + 4))).toEqual(
      colorOf(colorScale([0, 96]), values[row * cols + col] as number),
    );
  });

  it("refuses grids and images of the wrong size", () => {
    const layout = cellLayout(2, 2, 2, 2);
    expect(() =>
      rasterize([1, 2, 3], layout, colorScale([0, 1]), new Uint8ClampedArray(16)),
    ).toThrow("needs 4 values");
    expect(() =>
      rasterize([1, 2, 3, 4], layout, colorScale([0, 1]), new Uint8ClampedArray(8)),
    ).toThrow("needs 16 bytes");
  });
});

describe("CanvasHeatmap", () => {
  it("is one canvas element whatever the number of cells, and maps pointers to cells", () => {
    const heatmap = new CanvasHeatmap();
    heatmap.setData(new Float32Array(100 * 1000), 100, 1000);
    heatmap.resize(500, 200);
    expect(heatmap.canvas.childElementCount).toBe(0);
    expect(heatmap.canvas.style.width).toBe("500px");
    heatmap.canvas.getBoundingClientRect = () =>
      DOMRect.fromRect({ x: 10, y: 20, width: 500, height: 200 });
    // Two cells per pixel: each pixel shows the cell under its centre.
    expect(heatmap.cellAtClient(10, 20)).toEqual([0, 1]);
    expect(heatmap.cellAtClient(509, 219)).toEqual([99, 999]);
    expect(heatmap.cellAtClient(600, 20)).toBeNull();
  });
});
