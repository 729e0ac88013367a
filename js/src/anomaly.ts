/**
 * The AnomalyTable: an analysis's filters ranked by anomaly score, paged from the kernel.
 *
 * The table asks for one page at a time (`rows` request: sort column and direction, layer, K,
 * flag and score-range filters); clicking a row selects the filter (`filter` trait) and asks for
 * its points (`filter` request), drawn by `scatter.ts` with 1σ/2σ ellipses and ringed outliers.
 * Hovering a point shows the sample's id, label and thumbnail (`thumbnails` request, PNG bytes);
 * a strip shows the filter's outlier thumbnails. The sample view pages the samples some filter
 * isolates (`samples` request); clicking a sample, or a point, sets the `sample` trait, which the
 * kernel passes on to the shared selection. All names are text nodes, never HTML.
 * The Python side is `filterscope.views.anomaly.AnomalyTable`.
 */

import type { AnyModel, RenderProps } from "@anywidget/types";
import { clusterColor, ScatterCanvas, type ScatterData } from "./scatter";
import { type Decoded, decodeTree, type EncodedArray } from "./transport";
import { mountView, type ViewContext, type ViewDefinition } from "./view";

export const ANOMALY_CLASS = "filterscope-anomaly";

export interface WireH1 {
  step: EncodedArray;
  n_anomaly: EncodedArray;
  gap: EncodedArray;
  val_set: string;
  spearman_r: number | null;
}

/** `AnomalyTable.data`: the overview (see docs/api.md). */
export interface WireAnomaly {
  n_filters: number;
  n_rows: number;
  n_samples: number;
  n_anomaly: number;
  n_isolated: number;
  layers: string[];
  ks: EncodedArray;
  score_range: [number, number];
  columns: string[];
  sample_id: EncodedArray;
  label: EncodedArray;
  class_labels: EncodedArray;
  class_names: string[];
  thumbnails: boolean;
  thumbnail_shape: [number, number];
  has_log: boolean;
  log_filters: boolean;
  h1: WireH1 | null;
  h1_reason: string;
  max_page_rows: number;
}

export interface WireRows {
  offset: number;
  total: number;
  sort: string;
  descending: boolean;
  rank: EncodedArray;
  score: EncodedArray;
  layer: EncodedArray;
  channel: EncodedArray;
  filter: EncodedArray;
  k: EncodedArray;
  ch: EncodedArray;
  smallest_cluster: EncodedArray;
  n_outliers: EncodedArray;
  anomaly: EncodedArray;
  dead: EncodedArray;
  explained_variance: EncodedArray;
}

export interface WireFilter {
  filter: number;
  row: number;
  layer: string;
  channel: number;
  score: number;
  anomaly: boolean;
  k: number;
  explained_variance: number;
  /** What the scatter's axes are, e.g. "PC 1 × PC 2". */
  axes: string;
  points: EncodedArray;
  labels: EncodedArray;
  outlier: EncodedArray;
  outliers: EncodedArray;
  mean: EncodedArray;
  covariance: EncodedArray;
  weight: EncodedArray;
  outlier_cluster: EncodedArray;
  log_filter: number;
}

export interface WireSamples {
  offset: number;
  total: number;
  sample: EncodedArray;
  count: EncodedArray;
  layer_ptr: EncodedArray;
  layer_codes: EncodedArray;
  loss: EncodedArray;
  correct: EncodedArray;
}

export interface WireThumbnails {
  samples: EncodedArray;
  offsets: EncodedArray;
  png: EncodedArray;
}

export interface AnomalyState {
  _view: string;
  link_id?: string;
  data: WireAnomaly;
  filter: number | null;
  sample: number | null;
}

type Data = Decoded<WireAnomaly>;
type Rows = Decoded<WireRows>;
type Filter = Decoded<WireFilter>;
type Samples = Decoded<WireSamples>;

// ---- paging state ----------------------------------------------------------------------------

export type Flag = "all" | "anomaly" | "normal" | "dead";

export interface RowQuery {
  sort: string;
  descending: boolean;
  layers: string[] | null;
  ks: number[] | null;
  flag: Flag;
  score_min: number | null;
  score_max: number | null;
}

/** Columns sorted ascending on their first click (names); the others start descending. */
const ASCENDING_FIRST = new Set(["layer", "channel", "filter"]);

/**
 * The table's paging state: the query, the page offset and the total the kernel last reported.
 * Each `request()` gets a sequence number; `accept` takes only the answer to the latest, so a
 * slow answer to an old page never overwrites a newer one.
 */
export class Pager {
  offset = 0;
  /** Rows passing the filters, as the kernel last said; -1 before the first answer. */
  total = -1;
  query: RowQuery = {
    sort: "score",
    descending: true,
    layers: null,
    ks: null,
    flag: "all",
    score_min: null,
    score_max: null,
  };
  private sent = 0;

  constructor(readonly limit: number) {}

  /** Click on column `name`: the same column flips direction, another starts at its default. */
  sortBy(name: string): void {
    if (this.query.sort === name) this.query.descending = !this.query.descending;
    else this.query = { ...this.query, sort: name, descending: !ASCENDING_FIRST.has(name) };
    this.offset = 0;
  }

  /** Change the filters; back to the first page. */
  filter(change: Partial<Omit<RowQuery, "sort" | "descending">>): void {
    this.query = { ...this.query, ...change };
    this.offset = 0;
  }

  get pages(): number {
    return this.total <= 0 ? 1 : Math.ceil(this.total / this.limit);
  }

  get page(): number {
    return Math.floor(this.offset / this.limit);
  }

  hasNext(): boolean {
    return this.total >= 0 && this.offset + this.limit < this.total;
  }

  hasPrevious(): boolean {
    return this.offset > 0;
  }

  next(): boolean {
    if (!this.hasNext()) return false;
    this.offset += this.limit;
    return true;
  }

  previous(): boolean {
    if (!this.hasPrevious()) return false;
    this.offset = Math.max(this.offset - this.limit, 0);
    return true;
  }

  /** Params of the `rows` request for the current state, and its sequence number. */
  request(): { seq: number; params: Record<string, unknown> } {
    this.sent += 1;
    return { seq: this.sent, params: { offset: this.offset, limit: this.limit, ...this.query } };
  }

  /** Take the answer to request `seq`; false (ignored) when a newer request was sent since. */
  accept(seq: number, answer: { offset: number; total: number }): boolean {
    if (seq !== this.sent) return false;
    this.total = answer.total;
    this.offset = answer.offset;
    return true;
  }

  /** "rows 1–50 of 26,560" (or "no rows"). */
  label(shown: number): string {
    if (this.total <= 0) return "no rows pass the filters";
    const first = this.offset + 1;
    return `rows ${first.toLocaleString("en")}–${(this.offset + shown).toLocaleString("en")} of ${this.total.toLocaleString("en")}`;
  }
}

// ---- formatting ------------------------------------------------------------------------------

export function formatNumber(value: number, digits = 3): string {
  if (!Number.isFinite(value)) return "–";
  if (value !== 0 && (Math.abs(value) >= 1e5 || Math.abs(value) < 1e-3)) {
    return value.toExponential(digits - 1);
  }
  return Number(value.toPrecision(digits)).toString();
}

interface Column {
  key: keyof WireRows;
  title: string;
  tip: string;
  format(rows: Rows, i: number, data: Data): string;
}

const num = (key: keyof WireRows) => (rows: Rows, i: number) =>
  formatNumber((rows[key] as { data: ArrayLike<number> }).data[i] as number);
const int = (key: keyof WireRows) => (rows: Rows, i: number) =>
  String((rows[key] as { data: ArrayLike<number> }).data[i]);

export const COLUMNS: readonly Column[] = [
  { key: "score", title: "score", tip: "anomaly score (continuous ranking)", format: num("score") },
  {
    key: "layer",
    title: "layer",
    tip: "layer (module name)",
    format: (rows, i, data) => data.layers[rows.layer.data[i] as number] ?? "?",
  },
  { key: "channel", title: "ch.", tip: "output channel", format: int("channel") },
  { key: "k", title: "K", tip: "chosen number of clusters", format: int("k") },
  { key: "ch", title: "CH", tip: "Calinski–Harabasz index at K", format: num("ch") },
  {
    key: "smallest_cluster",
    title: "min. cl.",
    tip: "samples in the smallest cluster",
    format: int("smallest_cluster"),
  },
  { key: "n_outliers", title: "outliers", tip: "outlier samples", format: int("n_outliers") },
  {
    key: "anomaly",
    title: "flag",
    tip: "anomaly filter by the rule",
    format: (rows, i) => (rows.anomaly.data[i] ? "yes" : rows.dead.data[i] ? "dead" : ""),
  },
  {
    key: "explained_variance",
    title: "EV",
    tip: "share of variance kept by the 2-D PCA",
    format: num("explained_variance"),
  },
];

const PAGE_ROWS = 25;
const SAMPLE_ROWS = 20;
const SCATTER_W = 300;
const SCATTER_H = 260;
const STRIP_MAX = 24;

function el<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  className = "",
  text = "",
): HTMLElementTagNameMap[K] {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text) node.textContent = text;
  return node;
}

/** The layers isolating a sample: the first few, then "+N more"; all of them in the tooltip. */
export function layerSummary(layers: readonly string[], shown = 3): string {
  if (layers.length <= shown) return layers.join(", ");
  return `${layers.slice(0, shown).join(", ")} +${layers.length - shown} more`;
}

function layerCell(layers: readonly string[]): HTMLTableCellElement {
  const td = el("td", "fs-atext fs-alayers", layerSummary(layers));
  td.title = layers.join(", ");
  return td;
}

// ---- the view --------------------------------------------------------------------------------

class AnomalyView {
  private readonly data: Data;
  private readonly pager = new Pager(PAGE_ROWS);
  private readonly samplePager = new Pager(SAMPLE_ROWS);
  private readonly root: HTMLElement;
  private readonly tbody: HTMLTableSectionElement;
  private readonly head: HTMLTableRowElement;
  private readonly pageLabel: HTMLElement;
  private readonly prevButton: HTMLButtonElement;
  private readonly nextButton: HTMLButtonElement;
  private readonly detailTitle: HTMLElement;
  private readonly detailHint: HTMLElement;
  private readonly scatter: ScatterCanvas;
  private readonly tooltip: HTMLElement;
  private readonly strip: HTMLElement;
  private readonly sampleBody: HTMLTableSectionElement;
  private readonly sampleLabel: HTMLElement;
  private readonly samplePrev: HTMLButtonElement;
  private readonly sampleNext: HTMLButtonElement;
  private readonly status: HTMLElement;
  private rows: Rows | null = null;
  private samples: Samples | null = null;
  private shown: Filter | null = null;
  private loadingFilter = -1;
  private filterSeq = 0;
  private readonly thumbs = new Map<number, string>();
  private readonly thumbWaiters = new Map<number, ((url: string | null) => void)[]>();
  private answered = 0;
  private pending = 0;
  private errors = 0;
  private destroyed = false;
  private selectStarted = 0;

  constructor(private readonly context: ViewContext<AnomalyState>) {
    this.data = decodeTree(context.model.get("data"));
    const { root } = context;
    this.root = root;
    const d = this.data;

    const header = el("div", "fs-header");
    header.append(
      el("span", "fs-title", "Anomaly filters"),
      el(
        "span",
        "fs-hint",
        `${d.n_rows.toLocaleString("en")} filters · ${d.n_anomaly.toLocaleString("en")} flagged · ranked by anomaly score`,
      ),
    );
    root.append(header);
    root.append(this.buildControls());

    const body = el("div", "fs-abody");
    const left = el("div", "fs-aleft");
    const table = el("table", "fs-atable");
    const thead = el("thead");
    this.head = el("tr");
    thead.append(this.head);
    this.tbody = el("tbody");
    table.append(thead, this.tbody);
    left.append(table);
    const pagerBar = el("div", "fs-apager");
    this.prevButton = el("button", "fs-button fs-aprev", "‹ previous");
    this.nextButton = el("button", "fs-button fs-anext", "next ›");
    this.pageLabel = el("span", "fs-hint fs-apage");
    pagerBar.append(this.prevButton, this.pageLabel, this.nextButton);
    left.append(pagerBar);
    this.prevButton.addEventListener("click", () => this.pager.previous() && this.loadRows());
    this.nextButton.addEventListener("click", () => this.pager.next() && this.loadRows());

    const right = el("div", "fs-aright");
    this.detailTitle = el("div", "fs-chart-title fs-adetail-title", "Select a filter");
    this.detailHint = el(
      "div",
      "fs-hint fs-adetail-hint",
      "Click a row: its 2-D PCA points, coloured by cluster, with 1σ (solid) and 2σ (dashed) ellipses; outliers ringed.",
    );
    const plot = el("div", "fs-aplot");
    this.scatter = new ScatterCanvas(SCATTER_W, SCATTER_H);
    this.tooltip = el("div", "fs-atooltip");
    this.tooltip.hidden = true;
    plot.append(this.scatter.canvas, this.tooltip);
    this.strip = el("div", "fs-astrip");
    right.append(this.detailTitle, this.detailHint, plot, el("div", "fs-hint", "Outlier samples"));
    right.append(this.strip);
    right.append(this.buildH1());
    body.append(left, right);
    root.append(body);

    const sampleHead = el("div", "fs-header fs-asamples-head");
    sampleHead.append(
      el("span", "fs-chart-title", "Isolated samples"),
      el(
        "span",
        "fs-hint",
        `${d.n_isolated.toLocaleString("en")} samples that some filter isolates: atypical inputs to check`,
      ),
    );
    const sampleTable = el("table", "fs-atable fs-asamples");
    const sh = el("tr");
    for (const title of ["", "sample id", "label", "filters", "layers", "loss", "correct"]) {
      sh.append(el("th", "", title));
    }
    const shead = el("thead");
    shead.append(sh);
    this.sampleBody = el("tbody");
    sampleTable.append(shead, this.sampleBody);
    const samplePager = el("div", "fs-apager");
    this.samplePrev = el("button", "fs-button", "‹ previous");
    this.sampleNext = el("button", "fs-button", "next ›");
    this.sampleLabel = el("span", "fs-hint");
    samplePager.append(this.samplePrev, this.sampleLabel, this.sampleNext);
    this.samplePrev.addEventListener(
      "click",
      () => this.samplePager.previous() && this.loadSamples(),
    );
    this.sampleNext.addEventListener("click", () => this.samplePager.next() && this.loadSamples());
    this.status = el("div", "fs-hint fs-astatus");
    const sampleScroll = el("div", "fs-asamples-scroll");
    sampleScroll.append(sampleTable);
    root.append(sampleHead, sampleScroll, samplePager, this.status);

    this.buildHead();
    this.bindScatter();
    this.setDataset();
    this.loadRows();
    if (d.n_isolated > 0) this.loadSamples();
    else this.sampleLabel.textContent = "no filter isolates any sample";
    const filter = context.model.get("filter");
    if (filter !== null && filter !== undefined) this.loadFilter(filter);
  }

  // ---- controls
  private buildControls(): HTMLElement {
    const bar = el("div", "fs-acontrols");
    const d = this.data;
    const select = (label: string, options: [string, string][], onChange: (v: string) => void) => {
      const wrap = el("label", "fs-acontrol");
      wrap.append(el("span", "fs-hint", label));
      const s = el("select");
      for (const [value, text] of options) {
        const o = el("option", "", text);
        o.value = value;
        s.append(o);
      }
      s.addEventListener("change", () => onChange(s.value));
      wrap.append(s);
      bar.append(wrap);
      return s;
    };
    const layerSelect = select(
      "layer",
      [["", "all layers"], ...d.layers.map((n): [string, string] => [n, n])],
      (v) => {
        this.pager.filter({ layers: v === "" ? null : [v] });
        this.loadRows();
      },
    );
    layerSelect.classList.add("fs-alayer");
    const ks = Array.from(d.ks.data as ArrayLike<number>);
    select(
      "K",
      [["", "any K"], ...ks.map((k): [string, string] => [String(k), `K = ${k}`])],
      (v) => {
        this.pager.filter({ ks: v === "" ? null : [Number(v)] });
        this.loadRows();
      },
    ).classList.add("fs-ak");
    select(
      "flag",
      [
        ["all", "all filters"],
        ["anomaly", "anomaly filters"],
        ["normal", "not flagged"],
        ["dead", "dead"],
      ],
      (v) => {
        this.pager.filter({ flag: v as Flag });
        this.loadRows();
      },
    ).classList.add("fs-aflag");
    const range = (label: string, key: "score_min" | "score_max") => {
      const wrap = el("label", "fs-acontrol");
      wrap.append(el("span", "fs-hint", label));
      const input = el("input", `fs-a${key}`);
      input.type = "number";
      input.step = "any";
      input.placeholder = formatNumber(d.score_range[key === "score_min" ? 0 : 1]);
      input.addEventListener("change", () => {
        const value = input.value.trim() === "" ? null : Number(input.value);
        this.pager.filter({ [key]: value !== null && Number.isFinite(value) ? value : null });
        this.loadRows();
      });
      wrap.append(input);
      bar.append(wrap);
    };
    range("score ≥", "score_min");
    range("score ≤", "score_max");
    return bar;
  }

  private buildHead(): void {
    this.head.replaceChildren(el("th", "", "#"));
    for (const column of COLUMNS) {
      const th = el("th", "fs-asort");
      th.dataset.col = column.key;
      th.title = `${column.tip}; click to sort`;
      const q = this.pager.query;
      const arrow = q.sort === column.key ? (q.descending ? " ▼" : " ▲") : "";
      th.textContent = column.title + arrow;
      if (q.sort === column.key) th.classList.add("fs-asorted");
      th.addEventListener("click", () => {
        this.pager.sortBy(column.key);
        this.buildHead();
        this.loadRows();
      });
      this.head.append(th);
    }
  }

  private buildH1(): HTMLElement {
    const box = el("div", "fs-ah1");
    const h1 = this.data.h1;
    if (h1 === null) {
      box.append(el("div", "fs-hint", `H1 panel: ${this.data.h1_reason}.`));
      return box;
    }
    box.append(el("div", "fs-chart-title", "Anomaly filters and the train − validation gap"));
    const steps = Array.from(h1.step.data as ArrayLike<number>);
    const counts = Array.from(h1.n_anomaly.data as ArrayLike<number>);
    const gaps = Array.from(h1.gap.data as ArrayLike<number>);
    const w = SCATTER_W;
    const h = 110;
    const svgNS = "http://www.w3.org/2000/svg";
    const svg = document.createElementNS(svgNS, "svg");
    svg.setAttribute("width", String(w));
    svg.setAttribute("height", String(h));
    svg.classList.add("fs-ah1-plot");
    const x0 = Math.min(...steps);
    const x1 = Math.max(...steps);
    const sx = (s: number) => 30 + ((s - x0) / (x1 - x0 || 1)) * (w - 60);
    const series = (values: number[], color: string, name: string) => {
      const finite = values.filter(Number.isFinite);
      const lo = Math.min(0, ...finite);
      const hi = Math.max(...finite, lo + 1e-9);
      const sy = (v: number) => h - 16 - ((v - lo) / (hi - lo)) * (h - 28);
      const path = document.createElementNS(svgNS, "path");
      const d = values
        .map((v, i) => (Number.isFinite(v) ? `${sx(steps[i] as number)},${sy(v)}` : null))
        .filter((p) => p !== null)
        .map((p, i) => `${i === 0 ? "M" : "L"}${p}`)
        .join("");
      path.setAttribute("d", d);
      path.setAttribute("class", "fs-line");
      path.setAttribute("stroke", color);
      path.dataset.name = name;
      svg.append(path);
    };
    series(counts, clusterColor(0), "n_anomaly");
    series(gaps, clusterColor(1), "gap");
    const legend = el("div", "fs-legend");
    for (const [name, color] of [
      ["anomaly filters", clusterColor(0)],
      [`gap (${h1.val_set} − train error)`, clusterColor(1)],
    ] as const) {
      const item = el("span");
      const swatch = el("span", "fs-swatch");
      swatch.style.setProperty("--swatch", color);
      item.append(swatch, document.createTextNode(name));
      legend.append(item);
    }
    const r = h1.spearman_r;
    box.append(
      legend,
      svg,
      el(
        "div",
        "fs-hint",
        `${steps.length} analysed snapshots, steps ${x0}–${x1}; Spearman r = ${r === null ? "–" : formatNumber(r, 2)} (each line on its own scale).`,
      ),
    );
    return box;
  }

  // ---- requests
  private track<T>(promise: Promise<T>, apply: (value: T) => void): void {
    this.pending += 1;
    this.setDataset();
    promise.then(
      (value) => {
        this.pending -= 1;
        if (this.destroyed) return;
        this.answered += 1;
        apply(value);
        this.setDataset();
      },
      (error: Error) => {
        this.pending -= 1;
        if (this.destroyed) return;
        this.errors += 1;
        this.status.textContent = `The kernel answered: ${error.message}`;
        this.setDataset();
      },
    );
  }

  private loadRows(): void {
    const { seq, params } = this.pager.request();
    this.track(this.context.requests.request<WireRows>("rows", params), (rows) => {
      if (!this.pager.accept(seq, rows)) return;
      this.rows = rows;
      this.renderRows();
    });
  }

  private renderRows(): void {
    const rows = this.rows;
    if (rows === null) return;
    const n = rows.rank.data.length;
    const selected = this.context.model.get("filter");
    const trs: HTMLTableRowElement[] = [];
    for (let i = 0; i < n; i++) {
      const tr = el("tr", "fs-arow");
      const filter = rows.filter.data[i] as number;
      tr.dataset.filter = String(filter);
      if (rows.anomaly.data[i]) tr.classList.add("fs-aflagged");
      if (filter === selected) tr.classList.add("fs-aselected");
      tr.append(el("td", "fs-anum", String(this.pager.offset + i + 1)));
      for (const column of COLUMNS) {
        const td = el("td", column.key === "layer" ? "fs-atext" : "fs-anum");
        td.textContent = column.format(rows, i, this.data);
        td.dataset.col = column.key;
        tr.append(td);
      }
      tr.addEventListener("click", () => this.selectFilter(filter));
      trs.push(tr);
    }
    this.tbody.replaceChildren(...trs);
    this.pageLabel.textContent = this.pager.label(n);
    this.prevButton.disabled = !this.pager.hasPrevious();
    this.nextButton.disabled = !this.pager.hasNext();
    const frame = globalThis.requestAnimationFrame ?? ((f: () => void) => setTimeout(f, 0));
    frame(() => {
      if (this.root.dataset.paintedAt === undefined) {
        this.root.dataset.paintedAt = String(performance.now());
      }
    });
  }

  private selectFilter(filter: number): void {
    this.selectStarted = performance.now();
    // Ask for the points first: the kernel answers them before it applies the trait update.
    this.loadFilter(filter);
    const { model } = this.context;
    if (model.get("filter") !== filter) {
      model.set("filter", filter);
      model.save_changes();
    }
  }

  private loadFilter(filter: number): void {
    if (filter === this.shown?.filter || filter === this.loadingFilter) return;
    this.loadingFilter = filter;
    const seq = ++this.filterSeq;
    if (this.selectStarted === 0) this.selectStarted = performance.now();
    this.track(this.context.requests.request<WireFilter>("filter", { filter }), (answer) => {
      if (seq !== this.filterSeq) return;
      this.loadingFilter = -1;
      this.showFilter(answer);
    });
  }

  private showFilter(f: Filter): void {
    this.shown = f;
    const flag = f.anomaly ? "anomaly filter" : "not flagged";
    this.detailTitle.textContent = `${f.layer} · channel ${f.channel}`;
    this.detailHint.textContent = `score ${formatNumber(f.score)} · ${flag} · K = ${f.k} · ${f.outliers.data.length} outliers · PCA keeps ${formatNumber(100 * f.explained_variance, 3)} % of the variance · axes ${f.axes}`;
    const data: ScatterData = {
      points: f.points.data,
      labels: f.labels.data,
      outlier: f.outlier.data,
      mean: f.mean.data,
      covariance: f.covariance.data,
      k: f.k,
    };
    const drawStart = performance.now();
    this.scatter.setData(data, this.context.model.get("sample") ?? -1);
    this.root.dataset.drawMs = String(performance.now() - drawStart);
    this.root.dataset.scatterFilter = String(f.filter);
    this.root.dataset.scatterPoints = String(f.points.data.length / 2);
    this.root.dataset.scatterOutliers = String(f.outliers.data.length);
    // Where the first outlier is drawn (canvas pixels), so a test can point at it.
    const first = f.outliers.data.length > 0 ? (f.outliers.data[0] as number) : -1;
    const at = first >= 0 ? this.scatter.pointPosition(first) : null;
    this.root.dataset.outlierSample = String(first);
    this.root.dataset.outlierAt = at === null ? "" : `${at[0].toFixed(1)},${at[1].toFixed(1)}`;
    const started = this.selectStarted;
    const frame = globalThis.requestAnimationFrame ?? ((cb: () => void) => setTimeout(cb, 0));
    frame(() => {
      this.root.dataset.scatterMs = String(performance.now() - started);
      this.root.dataset.scatterDrawn = String(f.filter);
    });
    this.selectStarted = 0;
    for (const tr of this.tbody.querySelectorAll<HTMLElement>("tr.fs-arow")) {
      tr.classList.toggle("fs-aselected", tr.dataset.filter === String(f.filter));
    }
    this.renderStrip(Array.from(f.outliers.data as ArrayLike<number>).slice(0, STRIP_MAX));
  }

  private renderStrip(samples: number[]): void {
    this.strip.replaceChildren();
    if (samples.length === 0) {
      this.strip.append(el("span", "fs-hint", "this filter isolates no sample"));
      return;
    }
    for (const s of samples) {
      const cell = el("button", "fs-astrip-item");
      cell.dataset.sample = String(s);
      cell.title = `sample id ${this.sampleId(s)} · label ${this.labelText(s)}`;
      if (this.data.thumbnails) {
        const img = el("img", "fs-athumb");
        img.alt = `sample ${this.sampleId(s)}`;
        this.thumbnail(s).then((url) => {
          if (url !== null) img.src = url;
        });
        cell.append(img);
      } else {
        cell.textContent = String(this.sampleId(s));
      }
      cell.addEventListener("click", () => this.selectSample(s));
      this.strip.append(cell);
    }
  }

  // ---- scatter hover and click
  private bindScatter(): void {
    const canvas = this.scatter.canvas;
    canvas.addEventListener("mousemove", (event) => {
      const box = canvas.getBoundingClientRect();
      const i = this.scatter.pointAt(event.clientX - box.left, event.clientY - box.top);
      this.scatter.setHover(i);
      this.showTooltip(i);
    });
    canvas.addEventListener("mouseleave", () => {
      this.scatter.setHover(-1);
      this.showTooltip(-1);
    });
    canvas.addEventListener("click", (event) => {
      const box = canvas.getBoundingClientRect();
      const i = this.scatter.pointAt(event.clientX - box.left, event.clientY - box.top);
      if (i >= 0) this.selectSample(i);
    });
  }

  private showTooltip(i: number): void {
    const tip = this.tooltip;
    if (i < 0) {
      tip.hidden = true;
      return;
    }
    const at = this.scatter.pointPosition(i);
    const f = this.shown;
    tip.replaceChildren();
    tip.dataset.sample = String(i);
    const text = `sample id ${this.sampleId(i)} · label ${this.labelText(i)}`;
    const cluster = f === null ? "" : ` · cluster ${f.labels.data[i]}`;
    const outlier = f?.outlier.data[i] ? " · outlier" : "";
    tip.append(el("div", "fs-atooltip-text", text + cluster + outlier));
    if (this.data.thumbnails) {
      const img = el("img", "fs-athumb fs-atooltip-img");
      img.alt = `sample ${this.sampleId(i)}`;
      this.thumbnail(i).then((url) => {
        if (url !== null && tip.dataset.sample === String(i)) img.src = url;
      });
      tip.append(img);
    }
    if (at !== null) {
      // Beside the point, on the side with room, so the tooltip never hides what it names.
      const right = at[0] > SCATTER_W / 2;
      const below = at[1] < SCATTER_H / 2;
      tip.style.left = `${right ? at[0] - 12 : at[0] + 12}px`;
      tip.style.top = `${below ? at[1] + 12 : at[1] - 12}px`;
      tip.style.transform = `translate(${right ? "-100%" : "0"}, ${below ? "0" : "-100%"})`;
    }
    tip.hidden = false;
  }

  private selectSample(sample: number): void {
    const { model } = this.context;
    model.set("sample", sample);
    model.save_changes();
    this.highlightSample();
  }

  private highlightSample(): void {
    const sample = this.context.model.get("sample");
    this.scatter.setHighlight(sample ?? -1);
    this.root.dataset.sample = sample === null || sample === undefined ? "" : String(sample);
    for (const tr of this.sampleBody.querySelectorAll<HTMLElement>("tr")) {
      tr.classList.toggle("fs-aselected", tr.dataset.sample === String(sample));
    }
  }

  // ---- samples
  private loadSamples(): void {
    const { seq, params } = this.samplePager.request();
    this.track(
      this.context.requests.request<WireSamples>("samples", {
        offset: params.offset,
        limit: params.limit,
      }),
      (answer) => {
        if (!this.samplePager.accept(seq, answer)) return;
        this.samples = answer;
        this.renderSamples();
      },
    );
  }

  private renderSamples(): void {
    const s = this.samples;
    if (s === null) return;
    const trs: HTMLTableRowElement[] = [];
    const n = s.sample.data.length;
    for (let i = 0; i < n; i++) {
      const sample = s.sample.data[i] as number;
      const tr = el("tr", "fs-asample");
      tr.dataset.sample = String(sample);
      const thumb = el("td");
      if (this.data.thumbnails) {
        const img = el("img", "fs-athumb");
        img.alt = `sample ${this.sampleId(sample)}`;
        this.thumbnail(sample).then((url) => {
          if (url !== null) img.src = url;
        });
        thumb.append(img);
      }
      const from = s.layer_ptr.data[i] as number;
      const to = s.layer_ptr.data[i + 1] as number;
      const layers: string[] = [];
      for (let j = from; j < to; j++)
        layers.push(this.data.layers[s.layer_codes.data[j] as number] ?? "?");
      const loss = s.loss.data[i] as number;
      const correct = s.correct.data[i] as number;
      tr.append(
        thumb,
        el("td", "fs-anum", String(this.sampleId(sample))),
        el("td", "fs-atext", this.labelText(sample)),
        el("td", "fs-anum", String(s.count.data[i])),
        layerCell(layers),
        el("td", "fs-anum", this.data.has_log ? formatNumber(loss) : "–"),
        el("td", "fs-atext", correct < 0 ? "–" : correct ? "yes" : "no"),
      );
      tr.addEventListener("click", () => this.selectSample(sample));
      trs.push(tr);
    }
    this.sampleBody.replaceChildren(...trs);
    this.sampleLabel.textContent = this.samplePager.label(n).replace("rows", "samples");
    this.samplePrev.disabled = !this.samplePager.hasPrevious();
    this.sampleNext.disabled = !this.samplePager.hasNext();
    this.highlightSample();
  }

  // ---- thumbnails
  private thumbnail(sample: number): Promise<string | null> {
    const cached = this.thumbs.get(sample);
    if (cached !== undefined) return Promise.resolve(cached);
    return new Promise((resolve) => {
      const waiting = this.thumbWaiters.get(sample);
      if (waiting !== undefined) {
        waiting.push(resolve);
        return;
      }
      this.thumbWaiters.set(sample, [resolve]);
      // Batch the thumbnails asked for in the same turn into one request.
      queueMicrotask(() => this.flushThumbnails());
    });
  }

  private flushThumbnails(): void {
    const wanted = [...this.thumbWaiters.keys()].filter((s) => !this.inFlightThumbs.has(s));
    for (let i = 0; i < wanted.length; i += 64) {
      const batch = wanted.slice(i, i + 64);
      for (const s of batch) this.inFlightThumbs.add(s);
      const settle = (s: number, url: string | null) => {
        this.inFlightThumbs.delete(s);
        for (const resolve of this.thumbWaiters.get(s) ?? []) resolve(url);
        this.thumbWaiters.delete(s);
      };
      this.context.requests.request<WireThumbnails>("thumbnails", { samples: batch }).then(
        (answer) => {
          if (this.destroyed) return;
          const offsets = answer.offsets.data;
          const bytes = answer.png.data as Uint8Array;
          const got = new Set<number>();
          for (let j = 0; j < answer.samples.data.length; j++) {
            const s = answer.samples.data[j] as number;
            const png = bytes.slice(offsets[j] as number, offsets[j + 1] as number);
            const url = URL.createObjectURL(
              new Blob([png.buffer as ArrayBuffer], { type: "image/png" }),
            );
            this.thumbs.set(s, url);
            got.add(s);
            settle(s, url);
          }
          for (const s of batch) if (!got.has(s)) settle(s, null);
        },
        () => {
          for (const s of batch) settle(s, null);
        },
      );
    }
  }

  private readonly inFlightThumbs = new Set<number>();

  // ---- helpers
  private sampleId(sample: number): number {
    return this.data.sample_id.data[sample] as number;
  }

  private labelText(sample: number): string {
    const label = this.data.label.data[sample] as number;
    const classes = this.data.class_labels.data;
    for (let i = 0; i < classes.length; i++) {
      const name = this.data.class_names[i] ?? "";
      if (classes[i] === label)
        return name === "" || name === String(label) ? name || String(label) : `${label} (${name})`;
    }
    return String(label);
  }

  private setDataset(): void {
    const ds = this.root.dataset;
    ds.answered = String(this.answered);
    ds.pending = String(this.pending);
    ds.errors = String(this.errors);
    ds.rowsShown = String(this.rows?.rank.data.length ?? 0);
    ds.total = String(this.pager.total);
    ds.offset = String(this.pager.offset);
    ds.sort = `${this.pager.query.sort}:${this.pager.query.descending ? "desc" : "asc"}`;
    ds.samplesShown = String(this.samples?.sample.data.length ?? 0);
    ds.samplesTotal = String(this.samplePager.total);
  }

  changed(key: string): void {
    if (key === "filter") {
      const filter = this.context.model.get("filter");
      if (filter !== null && filter !== undefined) this.loadFilter(filter);
    } else if (key === "sample") {
      this.highlightSample();
    }
  }

  destroy(): void {
    this.destroyed = true;
    for (const url of this.thumbs.values()) URL.revokeObjectURL(url);
    this.thumbs.clear();
  }
}

const STYLE_ID = "filterscope-anomaly-styles";
const R = `.${ANOMALY_CLASS}`;
const CSS = `
${R} .fs-acontrols { display: flex; flex-wrap: wrap; gap: 4px 14px; margin: 0 12px 6px; align-items: center; }
${R} .fs-acontrol { display: inline-flex; gap: 4px; align-items: center; }
${R} select, ${R} input {
  color: var(--fs-fg); background: var(--jp-layout-color1, transparent);
  border: 1px solid var(--fs-axis); border-radius: 3px; font: inherit;
  font-size: var(--jp-ui-font-size0, 11px);
}
${R} input[type="number"] { width: 72px; }
${R} .fs-abody { display: flex; flex-wrap: wrap; gap: 12px; margin: 0 12px; align-items: flex-start; }
${R} .fs-aleft { flex: 1 1 420px; min-width: 0; overflow-x: auto; }
${R} .fs-aright { flex: 0 0 ${SCATTER_W + 2}px; display: flex; flex-direction: column; gap: 4px; }
${R} table.fs-atable { border-collapse: collapse; width: 100%; font-variant-numeric: tabular-nums; }
${R} .fs-atable th, ${R} .fs-atable td {
  padding: 1px 4px; border-bottom: 1px solid var(--fs-grid); white-space: nowrap; text-align: right;
}
${R} .fs-atable th { color: var(--fs-fg-muted); font-weight: 600; position: sticky; top: 0; background: var(--fs-bg); }
${R} .fs-atable th.fs-asort { cursor: pointer; }
${R} .fs-atable th.fs-asorted { color: var(--fs-fg); }
${R} .fs-atable td.fs-atext { text-align: left; max-width: 130px; overflow: hidden; text-overflow: ellipsis; }
${R} .fs-atable tbody tr { cursor: pointer; }
${R} .fs-atable tbody tr:hover { background: var(--jp-layout-color2, rgba(0, 0, 0, 0.05)); }
${R} .fs-atable tr.fs-aflagged td:first-child { box-shadow: inset 3px 0 var(--fs-accent); }
${R} .fs-atable tr.fs-aselected { outline: 2px solid var(--fs-accent); outline-offset: -2px; }
${R} .fs-apager { display: flex; gap: 10px; align-items: center; margin: 4px 0; }
${R} .fs-apager button:disabled { opacity: 0.4; cursor: default; }
${R} .fs-aplot { position: relative; border: 1px solid var(--fs-grid); border-radius: 4px; width: ${SCATTER_W}px; height: ${SCATTER_H}px; }
${R} canvas.fs-ascatter { display: block; cursor: crosshair; }
${R} .fs-atooltip {
  position: absolute; pointer-events: none; padding: 4px 6px; border-radius: 4px; z-index: 2;
  background: var(--jp-layout-color1, #fff); color: var(--fs-fg); border: 1px solid var(--fs-axis);
  font-size: var(--jp-ui-font-size0, 11px); display: flex; flex-direction: column; gap: 3px;
}
${R} .fs-atooltip[hidden] { display: none; }
${R} .fs-atooltip-text { white-space: nowrap; }
${R} img.fs-athumb { width: 32px; height: 32px; image-rendering: pixelated; background: #000; display: block; }
${R} img.fs-atooltip-img { width: 64px; height: 64px; }
${R} .fs-astrip { display: flex; flex-wrap: wrap; gap: 3px; min-height: 36px; }
${R} button.fs-astrip-item {
  padding: 0; border: 1px solid var(--fs-grid); background: transparent; color: var(--fs-fg);
  cursor: pointer; font: inherit; font-size: var(--jp-ui-font-size0, 11px); min-width: 34px;
}
${R} .fs-ah1 { margin-top: 6px; }
${R} .fs-asamples-head { margin-top: 12px; }
${R} .fs-asamples-scroll { margin: 0 12px; max-height: 320px; overflow-y: auto; }
${R} .fs-asamples td.fs-alayers { max-width: 360px; white-space: normal; }
${R} .fs-asamples td { vertical-align: middle; }
${R} .fs-apager, ${R} .fs-astatus { margin-left: 12px; margin-right: 12px; }
`;

function injectAnomalyStyles(doc: Document): void {
  if (doc.getElementById(STYLE_ID) !== null) return;
  const style = doc.createElement("style");
  style.id = STYLE_ID;
  style.textContent = CSS;
  doc.head.appendChild(style);
}

export const ANOMALY: ViewDefinition<AnomalyState> = {
  className: ANOMALY_CLASS,
  rebuildOn: ["data"],
  listen: ["filter", "sample"],
  create: (context) => {
    injectAnomalyStyles(context.root.ownerDocument);
    return new AnomalyView(context);
  },
};

/** anywidget `render` for `AnomalyTable`; returns the cleanup that detaches it. */
export function renderAnomaly({
  model,
  el: element,
}: Pick<RenderProps<AnomalyState>, "model" | "el">): () => void {
  return mountView(ANOMALY, { model: model as AnyModel<AnomalyState>, el: element });
}
