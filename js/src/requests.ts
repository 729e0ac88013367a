/**
 * Requests from the page to its Python view: id-tagged custom messages answered by promises.
 *
 * `client.request("window", {start, stop})` sends `{type: "request", id, method, params}`; the
 * view's `ViewWidget` answers `{type: "response", id, result | error}` with the result's arrays
 * as binary buffers. A request settles once: with the decoded result, or with a `RequestError`
 * carrying the kernel's message, on timeout, or when the view is cleaned up.
 */

import type { AnyModel } from "@anywidget/types";
import { type Decoded, decodeTree, putBuffers } from "./transport";
import type { RequestMessage, ResponseMessage } from "./wire";

export class RequestError extends Error {
  override name = "RequestError";
}

/** Milliseconds a request waits for its answer (a kernel busy with a cell answers late). */
export const REQUEST_TIMEOUT_MS = 30_000;

/** A `latest` call replaced by a newer one before it was sent. */
export class SupersededError extends RequestError {
  override name = "SupersededError";
}

interface Waiting {
  method: string;
  params: Record<string, unknown>;
  resolve(value: unknown): void;
  reject(error: Error): void;
}

interface Pending {
  resolve(value: unknown): void;
  reject(error: Error): void;
  timer: ReturnType<typeof setTimeout>;
}

export class RequestClient {
  private nextId = 1;
  private readonly pending = new Map<number, Pending>();
  /** `latest` keys with a request on its way, and the call waiting for it (if any). */
  private readonly lanes = new Map<string, { waiting: Waiting | null }>();
  private readonly onMessage = (msg: unknown, buffers: DataView[] = []) =>
    this.receive(msg, buffers);

  constructor(
    private readonly model: AnyModel,
    private readonly timeoutMs = REQUEST_TIMEOUT_MS,
  ) {
    model.on("msg:custom", this.onMessage);
  }

  /** Number of requests still waiting for an answer. */
  get inFlight(): number {
    return this.pending.size;
  }

  /** Ask the view to run `method`; resolves with the decoded result. */
  request<T>(method: string, params: Record<string, unknown> = {}): Promise<Decoded<T>> {
    const id = this.nextId++;
    const message: RequestMessage = { type: "request", id, method, params };
    return new Promise<Decoded<T>>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new RequestError(`no answer to "${method}" within ${this.timeoutMs / 1000} s`));
      }, this.timeoutMs);
      this.pending.set(id, { resolve: resolve as (v: unknown) => void, reject, timer });
      this.model.send(message);
    });
  }

  /**
   * Ask like `request`, with at most one `key` request on its way: a call made while one is
   * in flight waits for it and takes the place of any call waiting before it, which rejects
   * with a `SupersededError`. A zoom that moves on while the kernel works so asks for the
   * newest window only, instead of queueing every intermediate one in the kernel.
   */
  latest<T>(
    key: string,
    method: string,
    params: Record<string, unknown> = {},
  ): Promise<Decoded<T>> {
    return new Promise<Decoded<T>>((resolve, reject) => {
      const call: Waiting = {
        method,
        params,
        resolve: resolve as (v: unknown) => void,
        reject,
      };
      const lane = this.lanes.get(key);
      if (lane === undefined) {
        this.lanes.set(key, { waiting: null });
        this.sendLatest(key, call);
        return;
      }
      lane.waiting?.reject(new SupersededError(`"${method}" superseded by a newer one`));
      lane.waiting = call;
    });
  }

  private sendLatest(key: string, call: Waiting): void {
    const settle = (ok: boolean, value: unknown) => {
      const lane = this.lanes.get(key);
      const next = lane?.waiting ?? null;
      if (next === null) this.lanes.delete(key);
      else if (lane !== undefined) lane.waiting = null;
      if (ok) call.resolve(value);
      else call.reject(value as Error);
      if (next !== null) this.sendLatest(key, next);
    };
    this.request(call.method, call.params).then(
      (value) => settle(true, value),
      (error: Error) => settle(false, error),
    );
  }

  private receive(msg: unknown, buffers: DataView[]): void {
    if (typeof msg !== "object" || msg === null) return;
    const response = msg as ResponseMessage;
    if (response.type !== "response") return;
    const pending = typeof response.id === "number" ? this.pending.get(response.id) : undefined;
    if (pending === undefined) return; // timed out, disposed, or not ours
    this.pending.delete(response.id as number);
    clearTimeout(pending.timer);
    if (response.error !== undefined) {
      pending.reject(new RequestError(response.error));
      return;
    }
    try {
      const holder = { result: response.result };
      putBuffers(
        holder,
        (response.buffer_paths ?? []).map((p) => ["result", ...p]),
        buffers,
      );
      pending.resolve(decodeTree(holder.result));
    } catch (error) {
      pending.reject(error instanceof Error ? error : new RequestError(String(error)));
    }
  }

  /** Stop listening and reject every request still waiting. */
  dispose(): void {
    this.model.off("msg:custom", this.onMessage);
    for (const lane of this.lanes.values()) {
      lane.waiting?.reject(new RequestError("request cancelled: the view was closed"));
    }
    this.lanes.clear();
    for (const [id, pending] of this.pending) {
      clearTimeout(pending.timer);
      pending.reject(new RequestError(`request ${id} cancelled: the view was closed`));
    }
    this.pending.clear();
  }
}
