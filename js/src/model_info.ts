/**
 * The model-info view: linked line charts of loss, error and learning rate over training.
 *
 * All charts share one `TimeAxis`: hovering draws a vertical line on every chart, dragging zooms
 * all of them, and clicking picks the nearest snapshot step. Picks (`picked_steps`) and the zoom
 * window (`time_window`) are model state, so Python reads and sets them; hover stays in the
 * browser. The Python side is `filterscope.views.model_info.ModelInfo`.
 */

import type { AnyModel, RenderProps } from "@anywidget/types";
import { type ChartData, LineChart, lastAtOrBefore } from "./chart";
import { formatStep } from "./scale";
import { GroupColors, injectStyles, pickColor, ROOT_CLASS } from "./theme";
import { attachPointer, TimeAxis, togglePick, type Window } from "./timeaxis";
import { type Decoded, decodeTree, type EncodedArray, type NdArray } from "./transport";

export const MODEL_INFO_CLASS = "filterscope-modelinfo";

interface WireLine {
  name: string;
  group: string;
  x: EncodedArray;
  y?: EncodedArray;
  lo?: EncodedArray;
  hi?: EncodedArray;
  markers?: boolean;
}

/** What `ModelInfo._series` sends; arrays are encoded by `views._serialization`. */
export interface WireSeries {
  step_range: [number, number];
  snapshot_step: EncodedArray;
  epoch_first_step: EncodedArray;
  epoch: EncodedArray;
  charts: { key: string; title: string; lines: WireLine[] }[];
}

export interface ModelInfoState {
  _view: string;
  series: WireSeries;
  picked_steps: number[];
  time_window: [number, number] | null;
}

type Series = Decoded<WireSeries>;

const CHART_HEIGHT = 132;
const BOTTOM_CHART_HEIGHT = 156;
/** Width used until the element is laid out and a ResizeObserver reports the real one. */
const FALLBACK_WIDTH = 760;

function epochAt(series: Series, step: number): number | null {
  const first: NdArray = series.epoch_first_step;
  if (first.data.length === 0 || step < (first.data[0] as number)) return null;
  return series.epoch.data[lastAtOrBefore(first.data, step)] as number;
}

class ModelInfoView {
  private readonly axis: TimeAxis;
  private readonly charts: LineChart[];
  private readonly picksBox: HTMLElement;
  private readonly stepReadout: HTMLElement;
  private readonly resetButton: HTMLButtonElement;
  private readonly cleanups: (() => void)[] = [];

  constructor(
    private readonly model: AnyModel<ModelInfoState>,
    private readonly root: HTMLElement,
  ) {
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
      this.axis.subscribe((change) => {
        if (change === "picks") this.renderPicks();
        if (change === "window") this.renderZoomState();
        if (change === "hover") this.renderStepReadout(series);
      }),
    );
    this.axis.setPicks(model.get("picked_steps") ?? []);
    this.axis.setWindow(model.get("time_window") ?? null);
    this.renderPicks();
    this.renderZoomState();
    this.resize(root.clientWidth || FALLBACK_WIDTH);
  }

  resize(width: number): void {
    for (const chart of this.charts) chart.resize(width);
  }

  syncPicks(): void {
    this.axis.setPicks(this.model.get("picked_steps") ?? []);
  }

  syncWindow(): void {
    this.axis.setWindow(this.model.get("time_window") ?? null);
  }

  private pick(step: number): void {
    this.model.set("picked_steps", togglePick(this.model.get("picked_steps") ?? [], step));
    this.model.save_changes();
  }

  private zoom(window: Window | null): void {
    if (window !== null) {
      const lo = Math.floor(window[0]);
      const hi = Math.ceil(window[1]);
      if (hi <= lo) return;
      this.model.set("time_window", [lo, hi]);
    } else {
      this.model.set("time_window", null);
    }
    this.model.save_changes();
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

  private renderZoomState(): void {
    const [w0, w1] = this.axis.window;
    const zoomed = w0 > this.axis.extent[0] || w1 < this.axis.extent[1];
    this.resetButton.hidden = !zoomed;
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
    for (const cleanup of this.cleanups) cleanup();
    for (const chart of this.charts) chart.destroy();
    this.root.replaceChildren();
  }
}

/** anywidget `render` for `ModelInfo`; returns the cleanup that detaches it from the model. */
export function renderModelInfo({
  model,
  el,
}: Pick<RenderProps<ModelInfoState>, "model" | "el">): () => void {
  injectStyles(el.ownerDocument);
  const root = document.createElement("div");
  root.className = `${ROOT_CLASS} ${MODEL_INFO_CLASS}`;
  el.append(root);
  let view = new ModelInfoView(model, root);

  const onSeries = () => {
    view.destroy();
    view = new ModelInfoView(model, root);
  };
  const onPicks = () => view.syncPicks();
  const onWindow = () => view.syncWindow();
  model.on("change:series", onSeries);
  model.on("change:picked_steps", onPicks);
  model.on("change:time_window", onWindow);

  const observer = new ResizeObserver((entries) => {
    const width = entries[0]?.contentRect.width;
    if (width !== undefined && width > 0) view.resize(Math.floor(width));
  });
  observer.observe(root);

  return () => {
    observer.disconnect();
    model.off("change:series", onSeries);
    model.off("change:picked_steps", onPicks);
    model.off("change:time_window", onWindow);
    view.destroy();
    root.remove();
  };
}
