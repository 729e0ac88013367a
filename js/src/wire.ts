/**
 * The wire format between the Python views and the page, defined once.
 *
 * Every shape here is what a Python view sends (see `docs/api.md`, "Wire format"); arrays are
 * `EncodedArray`s from `filterscope.views._serialization` and become `NdArray`s after
 * `decodeTree`. Golden payloads written by `tests/test_views_golden.py` (in `golden/`) pin
 * both ends: Python fails when what it sends changes, vitest when the page cannot read it.
 */

import type { BufferPath, EncodedArray } from "./transport";

/** One line of a chart: exact `y` at `x` (level 0), or a `lo`/`hi` band per bucket from `x`. */
export interface WireLine {
  name: string;
  /** Lines of one group share a colour across charts (e.g. "train", "val"). */
  group: string;
  x: EncodedArray;
  y?: EncodedArray;
  lo?: EncodedArray;
  hi?: EncodedArray;
  /** Index level the line was read at: 0 is the raw values, k buckets of 2**k entries. */
  level?: number;
  /** Draw a dot at every point (sparse series such as per-snapshot evaluations). */
  markers?: boolean;
}

/** `ModelInfo.series`: the overview of a run. */
export interface WireSeries {
  step_range: [number, number];
  snapshot_step: EncodedArray;
  epoch_first_step: EncodedArray;
  epoch: EncodedArray;
  charts: { key: string; title: string; lines: WireLine[] }[];
}

/** `ModelInfo`'s answer to the `window` request: every chart's lines over `window`. */
export interface WireWindow {
  window: [number, number];
  charts: { key: string; lines: WireLine[] }[];
}

/** A request from the page: a custom message. */
export interface RequestMessage {
  type: "request";
  id: number;
  method: string;
  params: Record<string, unknown>;
}

/** The kernel's answer; `result` arrays arrive as binary buffers placed by `buffer_paths`. */
export interface ResponseMessage {
  type: "response";
  id: number | null;
  result?: unknown;
  buffer_paths?: BufferPath[];
  error?: string;
}
