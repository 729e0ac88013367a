import { afterEach, describe, expect, it } from "vitest";
import { encode, FakeModel } from "./test_helpers";
import { decodeArray } from "./transport";
import {
  ACCURACY_NAN,
  ACCURACY_STEPS,
  ACCURACY_STOPS,
  CLASS_ROW,
  columnAt,
  decodeAccuracy,
  hexToRgba,
  IMAGE_ROW,
  layoutRows,
  renderValidation,
  rowAt,
  scaleColor,
  stopScale,
  triangleSize,
  VALIDATION_CLASS,
  type ValidationState,
} from "./validation";
import widget from "./widget";

const XSS = "<img src=x onerror=alert(1)>";

function near(a: readonly number[], b: readonly number[], tolerance: number): boolean {
  return a.every((v, i) => Math.abs(v - (b[i] as number)) <= tolerance);
}

describe("accuracy on the wire", () => {
  it("decodes uint8 codes to accuracies in [0, 1], 255 as missing", () => {
    const codes = new Uint8Array([0, 127, 254, ACCURACY_NAN, 51, 203]);
    const out = decodeAccuracy({ dtype: "uint8", shape: [2, 3], data: codes });
    expect(out.dtype).toBe("float32");
    expect(out.shape).toEqual([2, 3]);
    const v = Array.from(out.data);
    expect(v[0]).toBe(0);
    expect(v[2]).toBe(1);
    expect(Number.isNaN(v[3])).toBe(true);
    // Within half a step of what Python quantised (0.5 -> 127, 0.2 -> 51, 0.8 -> 203).
    for (const [i, want] of [
      [1, 0.5],
      [4, 0.2],
      [5, 0.8],
    ] as const) {
      expect(Math.abs((v[i] as number) - want)).toBeLessThanOrEqual(0.5 / ACCURACY_STEPS);
    }
  });
  it("passes float arrays through", () => {
    const f = { dtype: "float32" as const, shape: [1], data: new Float32Array([0.25]) };
    expect(decodeAccuracy(f)).toBe(f);
  });
});

describe("the accuracy colour scale", () => {
  const scale = stopScale();
  it("gives DeepTracker's colours at its stops", () => {
    for (const [at, hex] of ACCURACY_STOPS) {
      expect(near(scaleColor(scale, at), hexToRgba(hex), 2), `${at} ${hex}`).toBe(true);
    }
    expect(scaleColor(scale, 0)).toEqual([0xdd, 0x26, 0x1c, 255]);
    expect(scaleColor(scale, 1)).toEqual([0x0e, 0x92, 0x47, 255]);
  });
  it("is yellow below 0.5 + ε and green from 0.52, clamping outside [0, 1]", () => {
    const mid = scaleColor(scale, 0.51);
    expect(near(mid, [0xec, 0xf7, 0xa5, 255], 6)).toBe(true); // half way to light green
    expect(scaleColor(scale, -1)).toEqual(scaleColor(scale, 0));
    expect(scaleColor(scale, 2)).toEqual(scaleColor(scale, 1));
    expect(scaleColor(scale, Number.NaN)).toEqual([0, 0, 0, 0]);
  });
});

describe("triangle sizing", () => {
  it("grows from 5 px at the threshold to the row height at the largest count", () => {
    expect(triangleSize(4, 5, 20)).toBe(0);
    expect(triangleSize(5, 5, 20)).toBe(5);
    expect(triangleSize(20, 5, 20)).toBe(CLASS_ROW);
    expect(triangleSize(30, 5, 20)).toBe(CLASS_ROW);
    // By the square root: a quarter of the way in count is half way in size.
    expect(triangleSize(5 + 15 / 4, 5, 20)).toBeCloseTo(5 + (CLASS_ROW - 5) / 2);
    expect(triangleSize(7, 7, 7)).toBe(CLASS_ROW);
  });
});

function grid(rows: number, cols: number, f: (r: number, c: number) => number) {
  const data = Float32Array.from({ length: rows * cols }, (_, i) =>
    f(Math.floor(i / cols), i % cols),
  );
  return decodeArray(encode(data, "float32", [rows, cols]));
}

describe("row layout", () => {
  const base = {
    names: ["a", "b", "c", "d"],
    order: [2, 0, 3, 1],
    accuracy: grid(4, 3, (r) => r / 4),
    cluster: [1, 0, 1, -1],
    clusterAccuracy: grid(2, 3, (r) => r),
    collapsed: new Set<number>(),
    expanded: new Map(),
  };
  it("lists clusters, then their classes in order, then classes without samples", () => {
    const rows = layoutRows(base);
    expect(rows.map((r) => [r.kind, r.kind === "cluster" ? r.cluster : r.cls, r.y])).toEqual([
      ["cluster", 0, 0],
      ["class", 1, CLASS_ROW],
      ["cluster", 1, 2 * CLASS_ROW],
      ["class", 2, 3 * CLASS_ROW],
      ["class", 0, 4 * CLASS_ROW],
      ["class", 3, 5 * CLASS_ROW],
    ]);
    expect(Array.from(rows[1]?.values ?? [])).toEqual([0.25, 0.25, 0.25]);
    expect(rows[0]?.text).toBe("cluster 1 · 1 class");
  });
  it("hides collapsed clusters' classes and puts image rows under an expanded class", () => {
    const answer = {
      class_: 2,
      samples: decodeArray(encode(Int32Array.from([7, 5]), "int32")),
      values: grid(2, 3, (r, c) => (r + c) % 2),
      total: 2,
    };
    const rows = layoutRows({
      ...base,
      collapsed: new Set([0]),
      expanded: new Map([[2, answer]]),
    });
    expect(rows.map((r) => r.kind)).toEqual([
      "cluster",
      "cluster",
      "class",
      "image",
      "image",
      "class",
      "class",
    ]);
    const images = rows.filter((r) => r.kind === "image");
    expect(images.map((r) => [r.sample, r.y, r.height])).toEqual(
      [
        [7, 3 * CLASS_ROW],
        [5, 3 * CLASS_ROW + IMAGE_ROW],
      ].map(([s, y]) => [s, y, IMAGE_ROW]),
    );
    expect(rowAt(rows, 3 * CLASS_ROW + IMAGE_ROW + 1)?.sample).toBe(5);
    expect(rowAt(rows, -1)).toBeNull();
    expect(rowAt(rows, 1e6)).toBeNull();
  });
  it("lists classes alone without clusters", () => {
    const rows = layoutRows({ ...base, cluster: [], clusterAccuracy: grid(0, 3, () => 0) });
    expect(rows.map((r) => r.cls)).toEqual([2, 0, 3, 1]);
  });
});

describe("columns", () => {
  it("maps a step to the column whose span centre is nearest", () => {
    const x0 = Int32Array.from([0, 10, 20]);
    expect([0, 4, 6, 14, 16, 99, -5].map((s) => columnAt(x0, x0, s))).toEqual([
      0, 0, 1, 1, 2, 2, 0,
    ]);
  });
});

function state(names: string[]): ValidationState {
  const n = names.length;
  const cols = 5;
  const f32 = (length: number, f: (i: number) => number) =>
    Float32Array.from({ length }, (_, i) => f(i));
  const i32 = (values: number[]) => encode(Int32Array.from(values), "int32");
  return {
    _view: "validation",
    picked_steps: [],
    time_window: null,
    class_: null,
    sample_index: null,
    order: "mds",
    data: {
      step_range: [0, 40],
      snapshot_step: i32([0, 10, 20, 30, 40]),
      x0: i32([0, 10, 20, 30, 40]),
      x1: i32([0, 10, 20, 30, 40]),
      level: 0,
      labels: i32(names.map((_, i) => i)),
      names,
      accuracy: encode(
        f32(n * cols, (i) => (i % cols) / 4),
        "float32",
        [n, cols],
      ),
      cluster: i32([]),
      cluster_accuracy: encode(new Float32Array(0), "float32", [0, cols]),
      order_mds: i32(names.map((_, i) => i)),
      order_peak: i32(names.map((_, i) => n - 1 - i)),
      peak: i32(names.map(() => 6)),
      shown: encode(Uint8Array.from(names.map(() => 1)), "uint8"),
      up: { class: i32([0]), col: i32([2]), count: i32([6]) },
      down: { class: i32([0]), col: i32([3]), count: i32([6]) },
      j: 1,
      threshold: 5,
      thumbnails: false,
      n_samples: 8,
    },
  };
}

describe("the view", () => {
  let cleanup: (() => void) | null = null;
  afterEach(() => {
    cleanup?.();
    cleanup = null;
    document.body.replaceChildren();
  });

  it("shows class names as text, expands a clicked class through a request", async () => {
    const model = new FakeModel(state(["cat", XSS]));
    const el = document.createElement("div");
    document.body.append(el);
    cleanup = renderValidation({ model, el });
    const root = el.querySelector(`.${VALIDATION_CLASS}`) as HTMLElement;
    expect(root).not.toBeNull();
    expect(el.querySelector("img")).toBeNull(); // the name is text, not markup
    const labels = [...el.querySelectorAll<HTMLElement>(".fs-vlabel-class")];
    expect(labels.map((l) => l.textContent)).toEqual(["▸ cat", `▸ ${XSS}`]);
    expect(el.querySelector(".fs-vthumb-empty")?.textContent).toMatch(/no thumbnails/);

    labels[1]?.click();
    expect(model.get("class_")).toBe(1);
    expect(model.saves).toBe(1);
    const sent = model.sent.at(-1) as { id: number; method: string; params: object };
    expect(sent.method).toBe("rows");
    expect(sent.params).toEqual({ class_: 1 });
    model.receive({
      type: "response",
      id: sent.id,
      result: {
        class_: 1,
        samples: encode(Int32Array.from([3, 1, 6]), "int32"),
        values: encode(new Float32Array(15), "float32", [3, 5]),
        total: 3,
      },
    });
    await Promise.resolve();
    await Promise.resolve();
    expect(root.dataset.imageRows).toBe("3");
    expect(root.dataset.expanded).toBe("1");
    expect(el.querySelector(".fs-vlabel.fs-selected")?.textContent).toBe(`▾ ${XSS} (3 images)`);
  });

  it("follows the kernel's class_ and order, and detaches on cleanup", () => {
    const model = new FakeModel(state(["a", "b", "c"]));
    const el = document.createElement("div");
    cleanup = renderValidation({ model, el });
    model.set("order", "peak");
    const names = () =>
      [...el.querySelectorAll<HTMLElement>(".fs-vlabel-class")].map((l) => l.dataset.label);
    expect(names()).toEqual(["2", "1", "0"]);
    model.set("class_", 0);
    const sent = model.sent.at(-1) as { method: string; params: object };
    expect(sent).toMatchObject({ method: "rows", params: { class_: 0 } });
    expect(el.querySelector<HTMLElement>(".filterscope-validation")?.dataset.selectedClass).toBe(
      "0",
    );
    cleanup();
    cleanup = null;
    expect(model.listenerCount()).toBe(0);
  });

  it("shows only the flagged classes when asked", () => {
    const st = state(["a", "b", "c"]);
    st.data.shown = encode(Uint8Array.from([1, 0, 1]), "uint8");
    const model = new FakeModel(st);
    const el = document.createElement("div");
    cleanup = renderValidation({ model, el });
    const box = el.querySelector<HTMLInputElement>(".fs-vflagged input") as HTMLInputElement;
    box.checked = true;
    box.dispatchEvent(new Event("change"));
    const names = [...el.querySelectorAll<HTMLElement>(".fs-vlabel-class")].map(
      (l) => l.dataset.label,
    );
    expect(names).toEqual(["0", "2"]);
  });

  it("asks for a zoomed window's columns when the overview is bucketed", async () => {
    const st = state(["a", "b"]);
    st.data.level = 2;
    const model = new FakeModel(st);
    const el = document.createElement("div");
    cleanup = renderValidation({ model, el });
    const root = el.querySelector<HTMLElement>(`.${VALIDATION_CLASS}`) as HTMLElement;
    model.set("class_", 1);
    const rows = model.sent.at(-1) as { id: number; method: string; params: object };
    expect(rows).toMatchObject({ method: "rows", params: { class_: 1 } });
    model.set("time_window", [10, 20]);
    const sent = model.sent.at(-1) as { id: number; method: string; params: object };
    expect(sent).toMatchObject({ method: "window", params: { start: 10, stop: 20 } });
    expect(root.dataset.detail).toBe("pending");
    const i32 = (values: number[]) => encode(Int32Array.from(values), "int32");
    const none = { class: i32([]), col: i32([]), count: i32([]) };
    model.receive({
      type: "response",
      id: sent.id,
      result: {
        window: [10, 20],
        level: 0,
        x0: i32([10, 15, 20]),
        x1: i32([10, 15, 20]),
        accuracy: encode(new Float32Array(6), "float32", [2, 3]),
        cluster_accuracy: encode(new Float32Array(0), "float32", [0, 3]),
        up: none,
        down: none,
      },
    });
    await Promise.resolve();
    await Promise.resolve();
    expect(root.dataset.detail).toBe("10-20");
    expect(root.dataset.level).toBe("0");
    // The expanded class's rows are asked again, over the window's columns.
    expect(model.sent.at(-1)).toMatchObject({
      method: "rows",
      params: { class_: 1, start: 10, stop: 20 },
    });
    model.set("time_window", null);
    expect(root.dataset.detail).toBe("overview");
  });

  it("is registered in the bundle's view table", () => {
    const model = new FakeModel(state(["a"]));
    const el = document.createElement("div");
    const undo = widget.render({ model, el } as never) as () => void;
    expect(el.querySelector(`.${VALIDATION_CLASS}`)).not.toBeNull();
    undo();
  });
});
