import { afterEach, describe, expect, it, vi } from "vitest";
import { RequestClient, RequestError } from "./requests";
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
});
