import { describe, expect, it } from "vitest";
import {
  formatStep,
  formatTick,
  formatValue,
  linearScale,
  niceExtent,
  niceTicks,
  tickStep,
} from "./scale";

describe("linearScale", () => {
  it("maps the domain onto the range and back", () => {
    const s = linearScale([100, 300], [50, 450]);
    expect(s(100)).toBe(50);
    expect(s(200)).toBe(250);
    expect(s(300)).toBe(450);
    expect(s.invert(250)).toBe(200);
    expect(s.invert(s(123.5))).toBeCloseTo(123.5, 10);
  });

  it("handles inverted ranges (y grows downwards on screen)", () => {
    const s = linearScale([0, 1], [200, 0]);
    expect(s(0.25)).toBe(150);
    expect(s.invert(50)).toBe(0.75);
  });

  it("puts a zero-width domain in the middle instead of dividing by zero", () => {
    const s = linearScale([5, 5], [0, 100]);
    expect(s(5)).toBe(50);
    expect(s.invert(80)).toBe(5);
  });
});

describe("ticks", () => {
  it("uses 1-2-5 steps", () => {
    expect(tickStep(0, 1, 5)).toBe(0.2);
    expect(tickStep(0, 1000, 4)).toBe(200);
    expect(tickStep(0, 0.003, 3)).toBe(0.001);
    expect(tickStep(0, 70, 2)).toBe(50);
    expect(tickStep(3, 3, 5)).toBe(0);
  });

  it("lists multiples of the step inside the extent, without float noise", () => {
    expect(niceTicks(0, 1, 5)).toEqual([0, 0.2, 0.4, 0.6, 0.8, 1]);
    expect(niceTicks(0.05, 0.35, 3)).toEqual([0.1, 0.2, 0.3]);
    expect(niceTicks(-13, 27, 4)).toEqual([-10, 0, 10, 20]);
    expect(niceTicks(2, 2, 4)).toEqual([2]);
  });

  it("rounds extents outwards to ticks and pads flat ones", () => {
    expect(niceExtent(0.13, 2.31, 4)).toEqual([0, 2.5]);
    expect(niceExtent(4, 4, 4)).toEqual([3.6, 4.4]);
    expect(niceExtent(0, 0, 4)).toEqual([-1, 1]);
  });
});

describe("formatting", () => {
  it("gives tick labels the decimals their step needs", () => {
    expect(formatTick(0.4, 0.2)).toBe("0.4");
    expect(formatTick(2.5, 0.5)).toBe("2.5");
    expect(formatTick(200, 100)).toBe("200");
    expect(formatTick(0.05, 0.01)).toBe("0.05");
    expect(formatTick(0.0002, 0.0001)).toBe("2e-4");
    expect(formatTick(0, 0.1)).toBe("0");
  });

  it("shortens large step counts", () => {
    expect(formatStep(950)).toBe("950");
    expect(formatStep(12_000)).toBe("12k");
    expect(formatStep(12_500)).toBe("12.5k");
    expect(formatStep(2_500_000)).toBe("2.5M");
  });

  it("shows read-out values with four significant digits", () => {
    expect(formatValue(0.123456)).toBe("0.1235");
    expect(formatValue(2.5)).toBe("2.5");
    expect(formatValue(12345.6)).toBe("12346");
    expect(formatValue(0.0001234)).toBe("1.234e-4");
    expect(formatValue(Number.NaN)).toBe("NaN");
  });
});
