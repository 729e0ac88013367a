import { afterEach, describe, expect, it, vi } from "vitest";
import { RequestClient, RequestError, SupersededError } from "./requests";
import { FakeModel } from "./test_helpers";

afterEach(() => {
  vi.useRealTimers();
});

function answer(model: FakeModel<Record<string, unknown>>, index: number, reply: object) {
  const sent = model.sent[index] as { id: number };
  model.receive({ type: "response", id: sent.id, ...reply });
}

describe("RequestClient", () => {
  it("tags requests with ids and resolves each with its own answer, in any order", async () => {
    const model = new FakeModel({});
    const client = new RequestClient(model);
    const a = client.request("window", { start: 1, stop: 2 });
    const b = client.request("other");
    expect(model.sent).toEqual([
      { type: "request", id: 1, method: "window", params: { start: 1, stop: 2 } },
      { type: "request", id: 2, method: "other", params: {} },
    ]);
    answer(model, 1, { result: "second" });
    answer(model, 0, { result: { n: 1 } });
    await expect(a).resolves.toEqual({ n: 1 });
    await expect(b).resolves.toBe("second");
    expect(client.inFlight).toBe(0);
  });

  it("puts binary buffers back and decodes the arrays", async () => {
    const model = new FakeModel({});
    const client = new RequestClient(model);
    const pending = client.request<{ x: unknown }>("arrays");
    const bytes = new Float32Array([1.5, 2.5]);
    model.receive(
      {
        type: "response",
        id: 1,
        result: { x: { dtype: "float32", shape: [2] } },
        buffer_paths: [["x", "buffer"]],
      },
      [new DataView(bytes.buffer)],
    );
    const result = (await pending) as { x: { data: Float32Array } };
    expect(Array.from(result.x.data)).toEqual([1.5, 2.5]);
  });

  it("rejects with the kernel's error and ignores messages that are not its answers", async () => {
    const model = new FakeModel({});
    const client = new RequestClient(model);
    const pending = client.request("nope");
    model.receive({ type: "response", id: 99, result: 1 });
    model.receive({ type: "other" });
    model.receive("text");
    expect(client.inFlight).toBe(1);
    answer(model, 0, { error: "Echo has no request 'nope'" });
    await expect(pending).rejects.toThrow(RequestError);
    await expect(pending).rejects.toThrow("has no request 'nope'");
  });

  it("times out, and drops an answer that comes too late", async () => {
    vi.useFakeTimers();
    const model = new FakeModel({});
    const client = new RequestClient(model, 1000);
    const pending = client.request("slow");
    const outcome = pending.catch((error: Error) => error);
    vi.advanceTimersByTime(1001);
    expect(((await outcome) as Error).message).toContain('no answer to "slow" within 1 s');
    answer(model, 0, { result: 1 });
    expect(client.inFlight).toBe(0);
  });

  it("rejects what is in flight and stops listening when disposed", async () => {
    const model = new FakeModel({});
    const client = new RequestClient(model);
    const pending = client.request("window");
    expect(model.listenerCount()).toBe(1);
    client.dispose();
    await expect(pending).rejects.toThrow("cancelled");
    expect(model.listenerCount()).toBe(0);
  });

  it("latest: one request per key on its way, only the newest waiting call is sent next", async () => {
    const model = new FakeModel({});
    const client = new RequestClient(model);
    const first = client.latest("zoom", "window", { start: 0, stop: 10 });
    const second = client.latest("zoom", "window", { start: 0, stop: 8 });
    const third = client.latest("zoom", "window", { start: 0, stop: 6 });
    const other = client.latest("faces", "faces", {});
    // The first zoom and the other key go out; the second never does.
    expect(model.sent.map((m) => (m as { params: unknown }).params)).toEqual([
      { start: 0, stop: 10 },
      {},
    ]);
    await expect(second).rejects.toBeInstanceOf(SupersededError);
    answer(model, 0, { result: "ten" });
    await expect(first).resolves.toBe("ten");
    // The newest waiting call is sent once the one before it is answered.
    expect(model.sent).toHaveLength(3);
    expect((model.sent[2] as { params: unknown }).params).toEqual({ start: 0, stop: 6 });
    answer(model, 2, { result: "six" });
    await expect(third).resolves.toBe("six");
    answer(model, 1, { error: "bad" });
    await expect(other).rejects.toBeInstanceOf(RequestError);
    // Every lane is free again: the next call goes out at once.
    void client.latest("zoom", "window", { start: 1, stop: 2 }).catch(() => {});
    expect(model.sent).toHaveLength(4);
    client.dispose();
  });
});
