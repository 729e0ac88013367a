import { afterEach, describe, expect, it } from "vitest";
import {
  ANOMALY_CLASS,
  type AnomalyState,
  formatNumber,
  layerSummary,
  Pager,
  renderAnomaly,
} from "./anomaly";
import { encode, FakeModel } from "./test_helpers";

const XSS = "<img src=x onerror=alert(1)>";

describe("Pager", () => {
  it("pages forward and back within the total", () => {
    const pager = new Pager(10);
    expect(pager.hasNext()).toBe(false); // no answer yet
    const first = pager.request();
    expect(first.params).toMatchObject({ offset: 0, limit: 10, sort: "score", descending: true });
    expect(pager.accept(first.seq, { offset: 0, total: 25 })).toBe(true);
    expect(pager.pages).toBe(3);
    expect(pager.next()).toBe(true);
    expect(pager.next()).toBe(true);
    expect(pager.offset).toBe(20);
    expect(pager.next()).toBe(false);
    expect(pager.label(5)).toBe("rows 21–25 of 25");
    expect(pager.previous()).toBe(true);
    expect(pager.page).toBe(1);
  });

  it("sorts: a new column starts at its default direction, the same column flips", () => {
    const pager = new Pager(10);
    pager.offset = 30;
    pager.sortBy("layer");
    expect(pager.query).toMatchObject({ sort: "layer", descending: false });
    expect(pager.offset).toBe(0);
    pager.sortBy("layer");
    expect(pager.query.descending).toBe(true);
    pager.sortBy("n_outliers");
    expect(pager.query).toMatchObject({ sort: "n_outliers", descending: true });
  });

  it("filters reset the page and travel in the request", () => {
    const pager = new Pager(10);
    pager.offset = 10;
    pager.filter({ layers: ["conv1"], ks: [2], flag: "anomaly", score_min: 0.5 });
    expect(pager.offset).toBe(0);
    expect(pager.request().params).toEqual({
      offset: 0,
      limit: 10,
      sort: "score",
      descending: true,
      layers: ["conv1"],
      ks: [2],
      flag: "anomaly",
      score_min: 0.5,
      score_max: null,
    });
  });

  it("ignores the answer to a request that a newer one replaced", () => {
    const pager = new Pager(10);
    const old = pager.request();
    pager.sortBy("k");
    const latest = pager.request();
    expect(pager.accept(old.seq, { offset: 0, total: 99 })).toBe(false);
    expect(pager.total).toBe(-1);
    expect(pager.accept(latest.seq, { offset: 0, total: 12 })).toBe(true);
    expect(pager.total).toBe(12);
    expect(new Pager(10).label(0)).toBe("no rows pass the filters");
  });
});

describe("layerSummary", () => {
  it("lists a few layers, then counts the rest", () => {
    expect(layerSummary(["a", "b"])).toBe("a, b");
    expect(layerSummary(["a", "b", "c", "d", "e"])).toBe("a, b, c +2 more");
  });
});

describe("formatNumber", () => {
  it("rounds to significant digits, switches to exponents at the extremes", () => {
    expect(formatNumber(0.123456)).toBe("0.123");
    expect(formatNumber(1234567)).toBe("1.23e+6");
    expect(formatNumber(Number.NaN)).toBe("–");
    expect(formatNumber(0)).toBe("0");
  });
});

const i32 = (values: number[]) => encode(Int32Array.from(values), "int32");
const f32 = (values: number[], shape?: number[]) =>
  encode(Float32Array.from(values), "float32", shape);
const u8 = (values: number[]) => encode(Uint8Array.from(values), "uint8");

function state(): AnomalyState {
  return {
    _view: "anomaly",
    link_id: "",
    filter: null,
    sample: null,
    data: {
      n_filters: 3,
      n_rows: 3,
      n_samples: 4,
      n_anomaly: 1,
      n_isolated: 1,
      layers: ["conv1", XSS],
      ks: i32([1, 2]),
      score_range: [0, 5],
      columns: ["score"],
      sample_id: i32([10, 11, 12, 13]),
      label: i32([0, 1, 0, 1]),
      class_labels: i32([]),
      class_names: [],
      thumbnails: false,
      thumbnail_shape: [0, 0],
      has_log: false,
      log_filters: false,
      h1: null,
      h1_reason: "no log given",
      max_page_rows: 500,
    },
  };
}

function rowsAnswer(id: number) {
  return {
    type: "response",
    id,
    result: {
      offset: 0,
      total: 3,
      sort: "score",
      descending: true,
      rank: i32([0, 1, 2]),
      score: f32([5, 1, 0]),
      layer: i32([1, 0, 0]),
      channel: i32([2, 0, 1]),
      filter: i32([2, 0, 1]),
      k: i32([2, 1, 1]),
      ch: f32([40, Number.NaN, Number.NaN]),
      smallest_cluster: i32([1, 4, 4]),
      n_outliers: i32([1, 0, 0]),
      anomaly: u8([1, 0, 0]),
      dead: u8([0, 0, 0]),
      explained_variance: f32([0.9, 0.8, 0.7]),
    },
  };
}

type Sent = { id: number; method: string; params: Record<string, unknown> };

async function settle() {
  for (let i = 0; i < 4; i++) await Promise.resolve();
}

describe("the view", () => {
  let cleanup: (() => void) | null = null;
  afterEach(() => {
    cleanup?.();
    cleanup = null;
    document.body.replaceChildren();
  });

  it("pages rows from the kernel and shows names as text", async () => {
    const model = new FakeModel(state());
    const el = document.createElement("div");
    document.body.append(el);
    cleanup = renderAnomaly({ model, el });
    const root = el.querySelector(`.${ANOMALY_CLASS}`) as HTMLElement;
    const sent = model.sent as Sent[];
    expect(sent.map((m) => m.method)).toEqual(["rows", "samples"]);
    expect(sent[0]?.params).toMatchObject({ offset: 0, sort: "score", descending: true });
    model.receive(rowsAnswer(sent[0]?.id as number));
    await settle();
    expect(root.dataset.rowsShown).toBe("3");
    expect(root.dataset.total).toBe("3");
    expect(el.querySelector("img")).toBeNull(); // the layer name is text, not markup
    const cells = [...el.querySelectorAll<HTMLElement>('tr.fs-arow td[data-col="layer"]')];
    expect(cells.map((c) => c.textContent)).toEqual([XSS, "conv1", "conv1"]);
    expect(el.querySelector(".fs-apage")?.textContent).toBe("rows 1–3 of 3");
    expect((el.querySelector(".fs-anext") as HTMLButtonElement).disabled).toBe(true);

    // Sorting by a column asks for the first page again, sorted.
    (el.querySelector('th[data-col="layer"]') as HTMLElement).click();
    expect(sent.at(-1)).toMatchObject({
      method: "rows",
      params: { sort: "layer", descending: false, offset: 0 },
    });
    expect(el.querySelector("th.fs-asorted")?.textContent).toBe("layer ▲");
  });

  it("selects a filter: sets the trait and draws its scatter from the answer", async () => {
    const model = new FakeModel(state());
    const el = document.createElement("div");
    document.body.append(el);
    cleanup = renderAnomaly({ model, el });
    const root = el.querySelector(`.${ANOMALY_CLASS}`) as HTMLElement;
    const sent = model.sent as Sent[];
    model.receive(rowsAnswer(sent[0]?.id as number));
    await settle();
    (el.querySelector('tr.fs-arow[data-filter="2"]') as HTMLElement).click();
    expect(model.get("filter")).toBe(2);
    const asks = sent.filter((m) => m.method === "filter");
    expect(asks).toHaveLength(1); // the trait change does not ask again
    const ask = asks[0] as Sent;
    expect(ask).toMatchObject({ method: "filter", params: { filter: 2 } });
    model.receive({
      type: "response",
      id: ask.id,
      result: {
        filter: 2,
        row: 0,
        layer: XSS,
        channel: 2,
        score: 5,
        anomaly: true,
        k: 2,
        explained_variance: 0.9,
        axes: "PC 1 × PCA residual",
        points: f32([0, 0, 1, 1, 0, 1, 9, 9], [4, 2]),
        labels: encode(Int16Array.from([0, 0, 0, 1]), "int16"),
        outlier: u8([0, 0, 0, 1]),
        outliers: i32([3]),
        mean: encode(Float64Array.from([0.3, 0.6, 9, 9]), "float64", [2, 2]),
        covariance: encode(Float64Array.from([1, 0, 0, 1, 0.1, 0, 0, 0.1]), "float64", [2, 2, 2]),
        weight: encode(Float64Array.from([0.75, 0.25]), "float64"),
        outlier_cluster: u8([0, 1]),
        log_filter: -1,
      },
    });
    await settle();
    expect(root.dataset.scatterFilter).toBe("2");
    expect(root.dataset.scatterPoints).toBe("4");
    expect(root.dataset.scatterOutliers).toBe("1");
    expect(el.querySelector(".fs-adetail-title")?.textContent).toBe(`${XSS} · channel 2`);
    expect(el.textContent).toContain("axes PC 1 × PCA residual");
    expect(el.querySelector("img")).toBeNull();
    // The outlier strip (no thumbnails): one button per outlier; a click selects the sample.
    const item = el.querySelector<HTMLElement>(".fs-astrip-item");
    expect(item?.textContent).toBe("13");
    item?.click();
    expect(model.get("sample")).toBe(3);
    expect(root.dataset.sample).toBe("3");
  });

  it("draws the H1 panel: anomaly count and gap per analysed snapshot", () => {
    const st = state();
    st.data.h1 = {
      step: i32([0, 10, 20]),
      n_anomaly: i32([1, 3, 2]),
      gap: f32([0, 0.1, 0.3]),
      val_set: XSS,
      spearman_r: 0.5,
    };
    const model = new FakeModel(st);
    const el = document.createElement("div");
    document.body.append(el);
    cleanup = renderAnomaly({ model, el });
    const paths = [...el.querySelectorAll<SVGPathElement>(".fs-ah1 path")];
    expect(paths.map((p) => p.dataset.name)).toEqual(["n_anomaly", "gap"]);
    expect(paths.every((p) => (p.getAttribute("d")?.match(/[ML]/g) ?? []).length === 3)).toBe(true);
    expect(el.querySelector(".fs-ah1")?.textContent).toContain(`gap (${XSS} − train error)`);
    expect(el.querySelector(".fs-ah1")?.textContent).toContain("steps 0–20; Spearman r = 0.5");
    expect(el.querySelector("img")).toBeNull();
  });

  it("shows a kernel error and keeps working", async () => {
    const model = new FakeModel(state());
    const el = document.createElement("div");
    document.body.append(el);
    cleanup = renderAnomaly({ model, el });
    const root = el.querySelector(`.${ANOMALY_CLASS}`) as HTMLElement;
    const sent = model.sent as Sent[];
    model.receive({ type: "response", id: sent[0]?.id, error: "offset 99 is past the last" });
    await settle();
    expect(root.dataset.errors).toBe("1");
    expect(el.querySelector(".fs-astatus")?.textContent).toMatch(/offset 99/);
    (el.querySelector('th[data-col="k"]') as HTMLElement).click();
    model.receive(rowsAnswer(sent.at(-1)?.id as number));
    await settle();
    expect(root.dataset.rowsShown).toBe("3");
    cleanup();
    cleanup = null;
    expect(model.listenerCount()).toBe(0);
  });
});
