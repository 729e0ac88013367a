import { describe, expect, it } from "vitest";
import {
  componentEllipses,
  eigen2,
  ellipseAxes,
  ellipsePoints,
  nearestPoint,
  scatterExtent,
  scatterTransform,
} from "./scatter";

/** Mahalanobis distance² of `(x, y)` from `mean` under covariance `[a, b; b, c]`. */
function mahalanobis2(x: number, y: number, mean: number[], a: number, b: number, c: number) {
  const det = a * c - b * b;
  const dx = x - (mean[0] as number);
  const dy = y - (mean[1] as number);
  return (c * dx * dx - 2 * b * dx * dy + a * dy * dy) / det;
}

describe("eigen-decomposition of a 2×2 covariance", () => {
  it("finds the eigenvalues and the major eigenvector", () => {
    // [[2, 1], [1, 2]]: eigenvalues 3 and 1, major axis along (1, 1)/√2.
    const { l1, l2, v1 } = eigen2(2, 1, 2);
    expect(l1).toBeCloseTo(3, 12);
    expect(l2).toBeCloseTo(1, 12);
    expect(Math.abs(v1[0])).toBeCloseTo(Math.SQRT1_2, 12);
    expect(v1[0] * v1[1]).toBeGreaterThan(0);
  });

  it("satisfies A v = λ v for an arbitrary matrix", () => {
    const [a, b, c] = [4.3, -1.7, 0.9];
    const { l1, l2, v1 } = eigen2(a, b, c);
    expect(a * v1[0] + b * v1[1]).toBeCloseTo(l1 * v1[0], 10);
    expect(b * v1[0] + c * v1[1]).toBeCloseTo(l1 * v1[1], 10);
    expect(l1 + l2).toBeCloseTo(a + c, 10); // trace
    expect(l1 * l2).toBeCloseTo(a * c - b * b, 10); // determinant
  });

  it("keeps the axes of a diagonal matrix, whichever is larger", () => {
    expect(eigen2(1, 0, 9).v1).toEqual([0, 1]);
    expect(eigen2(9, 0, 1).v1).toEqual([1, 0]);
  });
});

describe("ellipse axes", () => {
  it("scales the semi-axes by σ: √λ at 1σ, 2√λ at 2σ", () => {
    const one = ellipseAxes([9, 0, 0, 4], 1);
    const two = ellipseAxes([9, 0, 0, 4], 2);
    expect([one.major, one.minor, one.angle]).toEqual([3, 2, 0]);
    expect([two.major, two.minor]).toEqual([6, 4]);
  });

  it("orients a correlated covariance at 45°", () => {
    const axes = ellipseAxes([2, 1, 1, 2], 1);
    expect(axes.angle).toBeCloseTo(Math.PI / 4, 12);
    expect(axes.major).toBeCloseTo(Math.sqrt(3), 12);
    expect(axes.minor).toBeCloseTo(1, 12);
  });

  it("puts every outline point at Mahalanobis distance σ", () => {
    const [a, b, c] = [3.1, -1.2, 0.8];
    const mean = [5, -2];
    for (const sigma of [1, 2]) {
      const xy = ellipsePoints(mean, ellipseAxes([a, b, b, c], sigma), 32);
      for (let i = 0; i < xy.length; i += 2) {
        const d2 = mahalanobis2(xy[i] as number, xy[i + 1] as number, mean, a, b, c);
        expect(Math.sqrt(d2)).toBeCloseTo(sigma, 9);
      }
    }
  });

  it("draws a degenerate covariance as a segment, not NaN", () => {
    const axes = ellipseAxes([1, 1, 1, 1], 1);
    expect(axes.minor).toBeCloseTo(0, 6);
    expect([...ellipsePoints([0, 0], axes, 8)].every(Number.isFinite)).toBe(true);
  });

  it("gives a 1σ and a 2σ outline per finite component", () => {
    const ellipses = componentEllipses({
      points: [0, 0],
      labels: [0],
      outlier: [0],
      mean: [0, 0, 5, 5, Number.NaN, 0],
      covariance: [1, 0, 0, 1, 2, 0, 0, 2, 1, 0, 0, 1],
      k: 3,
    });
    expect(ellipses.map(([c, s]) => `${c}:${s}`)).toEqual(["0:1", "0:2", "1:1", "1:2"]);
  });
});

describe("scatter placement", () => {
  it("pads the extent and maps corners to the plot's corners, y up", () => {
    const extent = scatterExtent([[0, 0, 10, 20]], 0);
    expect(extent).toEqual({ x0: 0, x1: 10, y0: 0, y1: 20 });
    const t = scatterTransform(extent, 100, 200);
    expect([t.x(0), t.y(0)]).toEqual([0, 200]);
    expect([t.x(10), t.y(20)]).toEqual([100, 0]);
    expect(t.invert(50, 100)).toEqual([5, 10]);
    const padded = scatterExtent([[0, 0, 10, 20]], 0.1);
    expect(padded).toEqual({ x0: -1, x1: 11, y0: -2, y1: 22 });
  });

  it("skips non-finite values and survives a single point", () => {
    expect(scatterExtent([[1, 1, Number.NaN, 5]], 0)).toEqual({ x0: 1, x1: 1, y0: 1, y1: 1 });
    const e = scatterExtent([[3, 3]], 0.5);
    expect(e.x1 - e.x0).toBeGreaterThan(0);
    expect(scatterExtent([[]])).toEqual({ x0: -1, x1: 1, y0: -1, y1: 1 });
  });

  it("finds the nearest point within the radius", () => {
    const t = scatterTransform({ x0: 0, x1: 10, y0: 0, y1: 10 }, 100, 100);
    const points = [1, 1, 5, 5, 9, 9];
    expect(nearestPoint(points, t, 52, 48)).toBe(1);
    expect(nearestPoint(points, t, 12, 88)).toBe(0);
    expect(nearestPoint(points, t, 30, 30)).toBe(-1);
  });
});
