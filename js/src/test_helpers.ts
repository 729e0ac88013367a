/** Test doubles: an anywidget model that behaves like the Backbone one, and array encoders. */

import type { AnyModel } from "@anywidget/types";
import type { DType, EncodedArray, TypedArray } from "./transport";

// `never` parameters accept every callback shape anywidget's `on` overloads allow.
type Handler = (...args: never[]) => void;

/**
 * An in-memory anywidget model. Like ipywidgets' Backbone model, `set` fires `change:<key>`
 * synchronously (only when the value changed) and `save_changes` is what would sync to Python.
 */
// biome-ignore lint/suspicious/noExplicitAny: the same constraint as AnyModel's own ObjectHash
export class FakeModel<T extends Record<string, any>> implements AnyModel<T> {
  saves = 0;
  readonly sent: unknown[] = [];
  private readonly handlers = new Map<string, Set<Handler>>();
  readonly widget_manager = {
    get_model: () => Promise.reject(new Error("no widget manager in tests")),
  };

  constructor(private readonly state: T) {}

  get<K extends keyof T>(key: K): T[K] {
    return this.state[key];
  }

  set<K extends keyof T>(key: K, value: T[K]): void {
    if (JSON.stringify(this.state[key]) === JSON.stringify(value)) return;
    this.state[key] = value;
    for (const handler of this.handlers.get(`change:${String(key)}`) ?? []) handler();
  }

  on(eventName: string, callback: Handler): void {
    const set = this.handlers.get(eventName) ?? new Set();
    set.add(callback);
    this.handlers.set(eventName, set);
  }

  off(eventName?: string | null, callback?: Handler | null): void {
    if (eventName == null) {
      this.handlers.clear();
      return;
    }
    if (callback == null) this.handlers.delete(eventName);
    else this.handlers.get(eventName)?.delete(callback);
  }

  /** Number of handlers still attached, to check that cleanups detach everything. */
  listenerCount(): number {
    let n = 0;
    for (const set of this.handlers.values()) n += set.size;
    return n;
  }

  save_changes(): void {
    this.saves += 1;
  }

  send(content: unknown): void {
    this.sent.push(content);
  }

  /** Deliver a custom message from the kernel, as ipywidgets does: `msg:custom` handlers. */
  receive(content: unknown, buffers: DataView[] = []): void {
    for (const handler of [...(this.handlers.get("msg:custom") ?? [])]) {
      (handler as unknown as (msg: unknown, buffers: DataView[]) => void)(content, buffers);
    }
  }
}

/** A golden payload file (`tests/test_views_golden.py`): JSON, buffer paths, base64 buffers. */
export interface GoldenFile {
  message: unknown;
  buffer_paths: (string | number)[][];
  buffers: string[];
}

/** The buffers of a golden file as the browser receives them: DataViews over message bytes. */
export function goldenBuffers(file: GoldenFile): DataView[] {
  return file.buffers.map((b64) => {
    const text = atob(b64);
    // Start 1 byte into a larger buffer, as inside a websocket message: forces the copy path.
    const bytes = new Uint8Array(text.length + 1);
    for (let i = 0; i < text.length; i++) bytes[i + 1] = text.charCodeAt(i);
    return new DataView(bytes.buffer, 1, text.length);
  });
}

/**
 * Encode a typed array the way it arrives from the kernel: a DataView over a larger message
 * buffer, starting `offset` bytes in (an odd offset forces the decoder to copy).
 */
export function encode(
  data: TypedArray,
  dtype: DType,
  shape = [data.length],
  offset = 8,
): EncodedArray {
  const message = new ArrayBuffer(offset + data.byteLength + 3);
  new Uint8Array(message, offset).set(
    new Uint8Array(data.buffer, data.byteOffset, data.byteLength),
  );
  return { dtype, shape, buffer: new DataView(message, offset, data.byteLength) };
}
