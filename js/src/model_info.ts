/**
 * The model-info view: linked line charts of loss, error and learning rate over training.
 *
 * All charts share one `TimeAxis`: hovering draws a vertical line on every chart, dragging zooms
 * all of them, and clicking picks the nearest snapshot step. Picks (`picked_steps`) and the zoom
 * window (`time_window`) are model state, so Python reads and sets them; hover, brush and zoom
 * also travel on the link bus, so every view of the same selection follows at once. A zoomed
 * window asks the kernel (`window` request) for its lines at the finer index level, down to the
 * raw values. The Python side is `filterscope.views.model_info.ModelInfo`.
 */

import type { AnyModel, RenderProps } from "@anywidget/types";
import { type ChartData, LineChart, type LineData, lastAtOrBefore } from "./chart";
import { formatStep } from "./scale";
import { GroupColors, pickColor } from "./theme";
import { attachPointer, TimeAxis, togglePick, type Window } from "./timeaxis";
import { type Decoded, decodeTree, type NdArray } from "./transport";
import { linkAxis, mountView, type ViewContext, type ViewDefinition, zoomAxis } from "./view";
import type { WireSeries, WireWindow } from "./wire";

export type { WireSeries } from "./wire";

export const MODEL_INFO_CLASS = "filterscope-modelinfo";

export interface ModelInfoState {
  _view: string;
  link_id?: string;
  series: WireSeries;
  picked_steps: number[];
  time_window: [number, number] | null;
}

type Series = Decoded<WireSeries>;

const CHART_HEIGHT = 132;
const BOTTOM_CHART_HEIGHT = 156;

function epochAt(series: Series, step: number): number | null {
  const first: NdArray = series.epoch_first_step;
  if (first.data.length === 0 || step < (first.data[0] as number)) return null;
  return series.epoch.data[lastAtOrBefore(first.data, step)] as number;
}

class ModelInfoView {
  private readonly axis: TimeAxis;
  private readonly charts: LineChart[];
  private readonly overview: LineData[][];
  private readonly coarse: boolean;
  private readonly picksBox: HTMLElement;
  private readonly stepReadout: HTMLElement;
  private readonly resetButton: HTMLButtonElement;
  private readonly cleanups: (() => void)[] = [];
  private readonly model: AnyModel<ModelInfoState>;
  private readonly root: HTMLElement;
  /** Set while applying an event from the bus, so it is not published back. */
  /** Id of the latest window request; older answers are dropped. */
  private latest = 0;
  private destroyed = false;

  constructor(private readonly context: ViewContext<ModelInfoState>) {
    const { model, root, bus } = context;
    this.model = model;
    this.root = root;
    const series = decodeTree(model.get("series"));
    this.axis = new TimeAxis(series.step_range, series.snapshot_step.data);

    const header = document.createElement("div");
    header.className = "fs-header";
    const title = document.createElement("span");
    title.className = "fs-title";
    title.textContent = "Model info";
    this.picksBox = document.createElement("span");
    this.picksBox.className = "fs-picks";
    this.resetButton = document.createElement("button");
    this.resetButton.className = "fs-button fs-reset";
    this.resetButton.textContent = "show all steps";
    this.resetButton.title = "Zoom out to the whole run";
    this.resetButton.addEventListener("click", () => this.zoom(null));
    const hint = document.createElement("span");
    hint.className = "fs-hint";
    hint.textContent = "click: pick iteration · drag: zoom · double-click: zoom out";
    this.stepReadout = document.createElement("span");
    this.stepReadout.className = "fs-hint fs-step-readout";
    header.append(title, this.picksBox, this.resetButton, hint, this.stepReadout);
    root.append(header);

    const colors = new GroupColors();
    const specs = series.charts as ChartData[];
    this.overview = specs.map((spec) => spec.lines);
    this.coarse = specs.some((spec) => spec.lines.some((line) => (line.level ?? 0) > 0));
    this.charts = specs.map(
      (spec, i) =>
        new LineChart(spec, this.axis, colors, {
          xAxis: i === specs.length - 1,
          height: i === specs.length - 1 ? BOTTOM_CHART_HEIGHT : CHART_HEIGHT,
        }),
    );
    const actions = {
      pick: (step: number) => this.pick(step),
      zoom: (w: Window | null) => this.zoom(w),
    };
    for (const chart of this.charts) {
      root.append(chart.root);
      this.cleanups.push(attachPointer(chart.plotArea, this.axis, actions));
    }

    this.cleanups.push(
      ...linkAxis(this.axis, bus, this, (change) => {
        if (change === "picks") this.renderPicks();
        if (change === "window") this.windowChanged();
        if (change === "hover") this.renderStepReadout(series);
      }),
    );
    this.axis.setPicks(model.get("picked_steps") ?? []);
    this.axis.setWindow(model.get("time_window") ?? null);
    this.renderPicks();
    this.windowChanged();
    this.resize(context.width);
  }

  resize(width: number): void {
    for (const chart of this.charts) chart.resize(width);
  }

  changed(key: string): void {
    if (key === "picked_steps") this.axis.setPicks(this.model.get("picked_steps") ?? []);
    if (key === "time_window") this.axis.setWindow(this.model.get("time_window") ?? null);
  }

  private pick(step: number): void {
    this.model.set("picked_steps", togglePick(this.model.get("picked_steps") ?? [], step));
    this.model.save_changes();
  }

  private zoom(window: Window | null): void {
    zoomAxis(this.axis, this.context.bus, this, this.model, window);
  }

  /** The window moved: show the overview, and ask for finer lines when it is bucketed. */
  private windowChanged(): void {
    const [w0, w1] = this.axis.window;
    const whole = w0 <= this.axis.extent[0] && w1 >= this.axis.extent[1];
    this.resetButton.hidden = whole;
    if (whole || !this.coarse) {
      this.latest += 1; // drop any answer still on its way
      this.showLines(this.overview, "overview");
      return;
    }
    const id = ++this.latest;
    const start = Math.floor(w0);
    const stop = Math.ceil(w1);
    this.root.dataset.pending = `${start}-${stop}`;
    this.context.requests.latest<WireWindow>("window", "window", { start, stop }).then(
      (answer) => {
        if (this.destroyed || id !== this.latest) return;
        const byKey = new Map(answer.charts.map((c) => [c.key, c.lines as LineData[]]));
        this.showLines(
          this.charts.map(
            (chart, i) => byKey.get(chart.root.dataset.key ?? "") ?? this.overview[i] ?? [],
          ),
          `${answer.window[0]}-${answer.window[1]}`,
        );
      },
      (error: Error) => {
        if (this.destroyed || id !== this.latest) return;
        // The overview stays drawn; the kernel said why it could not answer.
        this.root.dataset.pending = "";
        console.warn(`filterscope: ModelInfo could not load the zoomed window: ${error.message}`);
      },
    );
  }

  private showLines(lines: LineData[][], detail: string): void {
    this.charts.forEach((chart, i) => {
      const next = lines[i];
      if (next !== undefined && next !== chart.lines) chart.setLines(next);
    });
    this.root.dataset.detail = detail;
    this.root.dataset.pending = "";
  }

  private renderPicks(): void {
    const chips = this.axis.picks.map((step, i) => {
      const chip = document.createElement("button");
      chip.className = "fs-pick";
      chip.dataset.step = String(step);
      chip.style.setProperty("--pick-color", pickColor(i));
      chip.title = "Remove this pick";
      chip.textContent = `step ${formatStep(step)} ×`;
      chip.addEventListener("click", () => this.pick(step));
      return chip;
    });
    this.picksBox.replaceChildren(...chips);
  }

  private renderStepReadout(series: Series): void {
    const step = this.axis.hover;
    if (step === null) {
      this.stepReadout.textContent = "";
      return;
    }
    const epoch = epochAt(series, step);
    this.stepReadout.textContent = `step ${step}${epoch === null ? "" : ` · epoch ${epoch}`}`;
  }

  destroy(): void {
    this.destroyed = true;
    for (const cleanup of this.cleanups) cleanup();
    for (const chart of this.charts) chart.destroy();
  }
}

export const MODEL_INFO: ViewDefinition<ModelInfoState> = {
  className: MODEL_INFO_CLASS,
  rebuildOn: ["series"],
  listen: ["picked_steps", "time_window"],
  create: (context) => new ModelInfoView(context),
};

/** anywidget `render` for `ModelInfo`; returns the cleanup that detaches it from the model. */
export function renderModelInfo({
  model,
  el,
}: Pick<RenderProps<ModelInfoState>, "model" | "el">): () => void {
  return mountView(MODEL_INFO, { model, el });
}
