import { describe, expect, it } from "vitest";
import {
  type ChartData,
  LineChart,
  type LineData,
  lastAtOrBefore,
  lineExtent,
  valueAt,
  visibleRange,
} from "./chart";
import { GroupColors, PICK_COLORS, SERIES_COLORS } from "./theme";
import { TimeAxis } from "./timeaxis";
import type { NdArray } from "./transport";

const nd = (values: number[], dtype: "int32" | "float32" = "float32"): NdArray => ({
  dtype,
  shape: [values.length],
  data: dtype === "int32" ? Int32Array.from(values) : Float32Array.from(values),
});

const exact: LineData = {
  name: "train",
  group: "train",
  x: nd([0, 1, 2, 3, 4], "int32"),
  y: nd([5, 4, Number.NaN, 2, 1]),
};
const band: LineData = {
  name: "train",
  group: "train",
  x: nd([0, 10, 20], "int32"),
  lo: nd([1, 0.5, Number.NaN]),
  hi: nd([3, 0.75, Number.NaN]),
};
const sparse: LineData = {
  name: "val",
  group: "val",
  x: nd([0, 10, 20], "int32"),
  y: nd([0.9, 0.4, 0.3]),
  markers: true,
};

describe("lookups", () => {
  it("finds the last x at or before a value", () => {
    const xs = Int32Array.from([0, 10, 20, 30]);
    expect(lastAtOrBefore(xs, -5)).toBe(0);
    expect(lastAtOrBefore(xs, 10)).toBe(1);
    expect(lastAtOrBefore(xs, 29)).toBe(2);
    expect(lastAtOrBefore(xs, 99)).toBe(3);
  });

  it("includes one point beyond each edge of the window", () => {
    const xs = Int32Array.from([0, 10, 20, 30, 40]);
    expect(visibleRange(xs, 12, 28)).toEqual([1, 3]);
    expect(visibleRange(xs, 0, 40)).toEqual([0, 4]);
    expect(visibleRange(new Int32Array(0), 0, 1)).toEqual([0, -1]);
  });

  it("takes extents over finite values of exact lines and envelopes", () => {
    expect(lineExtent(exact, 0, 4)).toEqual([1, 5]);
    expect(lineExtent(exact, 2, 2)).toBeNull();
    expect(lineExtent(band, 0, 2)).toEqual([0.5, 3]);
  });

  it("reads values for the hover read-out", () => {
    expect(valueAt(exact, 3)).toBe("2");
    expect(valueAt(exact, 2)).toBeNull();
    expect(valueAt(band, 12)).toBe("0.5–0.75");
    expect(valueAt(sparse, 14)).toBe("0.4");
    expect(valueAt(sparse, 16)).toBe("0.3");
    expect(valueAt(sparse, -1)).toBeNull();
  });
});

describe("LineChart", () => {
  const spec: ChartData = { key: "loss", title: "Loss", lines: [band, sparse] };

  function chart(xAxis = true) {
    const axis = new TimeAxis([0, 20], [0, 10, 20]);
    const c = new LineChart(spec, axis, new GroupColors(), { xAxis, height: 150 });
    document.body.append(c.root);
    c.resize(700);
    return { axis, c };
  }

  it("draws a band for an envelope, a line and dots for a sparse series, and a legend", () => {
    const { c } = chart();
    const bandPath = c.root.querySelector("path.fs-band");
    expect(bandPath?.getAttribute("fill")).toBe(SERIES_COLORS[0]);
    // Two finite buckets: lo forward then hi backward, closed; the NaN bucket is a gap.
    expect(bandPath?.getAttribute("d")?.match(/[ML]/g)?.length).toBe(4);
    expect(bandPath?.getAttribute("d")?.endsWith("Z")).toBe(true);
    const line = c.root.querySelector("path.fs-line");
    expect(line?.getAttribute("stroke")).toBe(SERIES_COLORS[1]);
    expect(c.root.querySelectorAll("circle.fs-dot")).toHaveLength(3);
    const legend = [...c.root.querySelectorAll(".fs-legend-item")].map((n) => n.textContent);
    expect(legend).toEqual(["train", "val"]);
    expect(c.root.querySelector(".fs-chart-title")?.textContent).toBe("Loss");
  });

  it("labels steps only on a chart that has the x-axis", () => {
    const withAxis = chart(true).c;
    const labels = [...withAxis.root.querySelectorAll("text")].map((t) => t.textContent);
    expect(labels).toContain("step");
    expect(labels).toContain("10");
    const without = chart(false).c;
    expect([...without.root.querySelectorAll("text")].map((t) => t.textContent)).not.toContain(
      "step",
    );
  });

  it("draws one coloured marker per pick, the hover line and a read-out", () => {
    const { axis, c } = chart();
    axis.setPicks([10, 20]);
    const pickLines = [...c.root.querySelectorAll("line.fs-pick-line")];
    expect(pickLines.map((l) => l.getAttribute("data-step"))).toEqual(["10", "20"]);
    expect(pickLines.map((l) => l.getAttribute("stroke"))).toEqual([
      PICK_COLORS[0],
      PICK_COLORS[1],
    ]);
    axis.setHover(10);
    const hover = c.root.querySelector("line.fs-hover");
    // The plot spans the shared time-axis area, x = 200..520 of 700, for steps 0..20, so step
    // 10 sits at 360.
    expect(hover?.getAttribute("x1")).toBe("360");
    expect(c.root.querySelector(".fs-readout")?.textContent).toBe("train 0.5–0.75 · val 0.4");
    axis.setHover(null);
    expect(c.root.querySelector("line.fs-hover")).toBeNull();
    expect(c.root.querySelector(".fs-readout")?.textContent).toBe("");
  });

  it("redraws for a zoomed window and stops listening once destroyed", () => {
    const { axis, c } = chart();
    axis.setWindow([12, 20]);
    // Points from the one just before the window (step 10, left of the plot, clipped) onwards.
    const d = c.root.querySelector("path.fs-line")?.getAttribute("d") ?? "";
    expect(d.match(/[ML]/g)?.length).toBe(2);
    // x = 200 + (10 - 12) / 8 * 320.
    expect(d.startsWith("M120,")).toBe(true);
    expect([...c.root.querySelectorAll("text")].map((t) => t.textContent)).toContain("16");
    c.destroy();
    expect(c.root.isConnected).toBe(false);
    axis.setHover(10);
    expect(c.root.querySelector("line.fs-hover")).toBeNull();
  });
});

describe("updates in place", () => {
  it("keeps its nodes across window changes and new lines", () => {
    const axis = new TimeAxis([0, 20], []);
    const chart = new LineChart(
      { key: "loss", title: "Loss", lines: [band, sparse] },
      axis,
      new GroupColors(),
      { xAxis: true, height: 120 },
    );
    chart.resize(400);
    const [path, dotsPath] = [...chart.root.querySelectorAll("path[data-name]")];
    const grid = chart.root.querySelector("g.fs-grid");
    expect(path?.getAttribute("class")).toBe("fs-band");
    axis.setWindow([5, 15]);
    chart.setLines([exact, sparse]);
    const after = [...chart.root.querySelectorAll("path[data-name]")];
    expect(after[0]).toBe(path);
    expect(after[1]).toBe(dotsPath);
    expect(chart.root.querySelector("g.fs-grid")).toBe(grid);
    expect(path?.getAttribute("class")).toBe("fs-line fs-line-dense");
    expect(path?.getAttribute("data-level")).toBe("0");
    expect(chart.root.querySelectorAll("circle.fs-dot")).toHaveLength(3);
    axis.setWindow([0, 4]);
    expect(path?.getAttribute("data-points")).toBe("5");
    expect(chart.root.querySelectorAll("circle.fs-dot")).toHaveLength(2);
  });
});
