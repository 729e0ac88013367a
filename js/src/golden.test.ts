/**
 * Golden payloads written by `tests/test_views_golden.py`: the page must read exactly what the
 * Python views send. If these fail after a Python change, the wire format changed: update
 * `wire.ts` and the views together.
 */

import { afterEach, describe, expect, it, vi } from "vitest";
import errorFile from "./golden/model_info_error.json";
import seriesFile from "./golden/model_info_series.json";
import windowFile from "./golden/model_info_window.json";
import { MODEL_INFO_CLASS, renderModelInfo } from "./model_info";
import { FakeModel, type GoldenFile, goldenBuffers } from "./test_helpers";
import { decodeTree, type NdArray, putBuffers } from "./transport";
import type { ResponseMessage, WireSeries, WireWindow } from "./wire";

function decode<T>(file: GoldenFile): ReturnType<typeof decodeTree<T>> {
  const message = structuredClone(file.message) as T;
  putBuffers(message, file.buffer_paths, goldenBuffers(file));
  return decodeTree(message);
}

const values = (a: NdArray | undefined) => Array.from(a?.data ?? []);

afterEach(() => {
  document.body.replaceChildren();
});

describe("golden ModelInfo payloads", () => {
  it("decodes the overview: bucketed per-step lines, exact per-snapshot ones", () => {
    const series = decode<WireSeries>(seriesFile as GoldenFile);
    expect(series.step_range).toEqual([0, 5000]);
    expect(series.charts.map((c) => c.key)).toEqual(["loss", "error", "lr"]);
    expect(values(series.snapshot_step)).toEqual([
      0, 500, 1000, 1500, 2000, 2500, 3000, 3500, 4000, 4500, 5000,
    ]);
    expect(values(series.epoch_first_step)).toEqual([0, 1000, 2000, 3000, 4000]);
    const [train, val, test] = series.charts[0]?.lines ?? [];
    expect([train?.name, val?.name, test?.name]).toEqual(["train", "val", "test"]);
    expect(train?.level).toBe(7);
    expect(train?.y).toBeUndefined();
    expect(train?.x.dtype).toBe("int32");
    expect(train?.lo?.dtype).toBe("float32");
    expect(values(train?.x).slice(0, 3)).toEqual([0, 128, 256]);
    expect(train?.lo?.data.length).toBe(train?.x.data.length);
    // The first bucket's max is the first step's loss, 2 / (1 + 0).
    expect(train?.hi?.data[0]).toBe(2);
    expect(val?.markers).toBe(true);
    expect(val?.level).toBe(0);
    expect(values(val?.y)[0]).toBeCloseTo(2.5, 6);
  });

  it("decodes a window answer: raw values with the NaN gap, from the kernel's buffers", () => {
    const file = windowFile as GoldenFile;
    const message = structuredClone(file.message) as ResponseMessage;
    expect(message).toMatchObject({ type: "response", id: 7 });
    expect(file.buffer_paths).toEqual((message.buffer_paths ?? []).map((p) => ["result", ...p]));
    putBuffers(message, file.buffer_paths, goldenBuffers(file));
    const answer = decodeTree(message.result as WireWindow);
    expect(answer.window).toEqual([2090, 2120]);
    const train = answer.charts[0]?.lines[0];
    expect(train?.level).toBe(0);
    expect(values(train?.x)).toEqual(Array.from({ length: 32 }, (_, i) => 2090 + i));
    const y = values(train?.y);
    expect(y.slice(10, 13).every(Number.isNaN)).toBe(true);
    expect(y[0]).toBe(Math.fround(2 / (1 + 2090 / 100)));
  });

  it("reads an error answer", () => {
    const message = (errorFile as GoldenFile).message as ResponseMessage;
    expect(message.id).toBe(8);
    expect(message.error).toContain("has no request 'nope'");
    expect(message.result).toBeUndefined();
  });

  it("renders the golden overview as bands, and the golden window as exact lines", async () => {
    const file = seriesFile as GoldenFile;
    const wireSeries = structuredClone(file.message) as WireSeries;
    putBuffers(wireSeries, file.buffer_paths, goldenBuffers(file));
    const model = new FakeModel({
      _view: "model_info",
      link_id: "",
      series: wireSeries,
      picked_steps: [] as number[],
      time_window: null as [number, number] | null,
    });
    const el = document.createElement("div");
    document.body.append(el);
    const cleanup = renderModelInfo({ model, el });
    const warnings: unknown[] = [];
    const warn = vi.spyOn(console, "warn").mockImplementation((...args) => warnings.push(args));
    const root = el.querySelector(`.${MODEL_INFO_CLASS}`) as HTMLElement;
    expect(root.querySelectorAll("path.fs-band")).toHaveLength(3);
    model.set("time_window", [2090, 2120]);
    expect(model.sent).toEqual([
      { type: "request", id: 1, method: "window", params: { start: 2090, stop: 2120 } },
    ]);
    const answer = windowFile as GoldenFile;
    // The golden answer is to request 7; this page's first request has id 1.
    model.receive({ ...(answer.message as object), id: 1 }, goldenBuffers(answer));
    await new Promise((resolve) => setTimeout(resolve, 0));
    expect(warnings).toEqual([]);
    expect(root.dataset.detail).toBe("2090-2120");
    expect(root.querySelectorAll("path.fs-band")).toHaveLength(0);
    const loss = root.querySelector('.fs-chart[data-key="loss"] path[data-name="train"]');
    expect(loss?.getAttribute("data-level")).toBe("0");
    expect(loss?.getAttribute("data-points")).toBe("32");
    cleanup();
    warn.mockRestore();
  });
});
