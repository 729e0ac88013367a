import { describe, expect, it } from "vitest";
import { LinkBus, linkBus, liveBuses } from "./bus";

describe("LinkBus", () => {
  it("tells every other subscriber, never the one that published", () => {
    const bus = new LinkBus("a");
    const seen: string[] = [];
    const one = {};
    const two = {};
    bus.subscribe("hover", one, (step) => seen.push(`one ${step}`));
    bus.subscribe("hover", two, (step) => seen.push(`two ${step}`));
    bus.subscribe("window", two, (w) => seen.push(`two window ${w}`));
    bus.publish("hover", 40, one);
    bus.publish("window", [10, 20], one);
    bus.publish("hover", null, "someone else");
    expect(seen).toEqual(["two 40", "two window 10,20", "one null", "two null"]);
    expect(bus.last).toEqual({ hover: null, window: [10, 20] });
  });

  it("unsubscribes", () => {
    const bus = new LinkBus("a");
    const seen: unknown[] = [];
    const off = bus.subscribe("brush", {}, (b) => seen.push(b));
    off();
    bus.publish("brush", [1, 2], null);
    expect(seen).toEqual([]);
    expect(bus.size).toBe(0);
  });
});

describe("linkBus", () => {
  it("gives views of one link id the same bus, and forgets it when the last lets go", () => {
    const a = linkBus("sel-1");
    const b = linkBus("sel-1");
    const c = linkBus("sel-2");
    expect(a.bus).toBe(b.bus);
    expect(c.bus).not.toBe(a.bus);
    expect(liveBuses()).toEqual(expect.arrayContaining(["sel-1", "sel-2"]));
    a.release();
    a.release(); // twice is once
    expect(liveBuses()).toContain("sel-1");
    b.release();
    c.release();
    expect(liveBuses()).not.toContain("sel-1");
    expect(liveBuses()).not.toContain("sel-2");
  });

  it("gives a view without a link id a private bus", () => {
    expect(linkBus("").bus).not.toBe(linkBus("").bus);
    expect(liveBuses()).not.toContain("");
  });
});
