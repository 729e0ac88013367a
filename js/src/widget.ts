/**
 * The one ES module behind every filterscope view.
 *
 * Each Python view class loads this bundle as its `_esm` and names itself in the `_view` trait;
 * `initialize` sets up what a model needs once (its request client), and `render` dispatches on
 * the view name, so the views share their lifecycle, transport, theme and time-axis code
 * instead of shipping one copy per view.
 */

import type { AnyModel, RenderProps } from "@anywidget/types";
import { renderAnomaly } from "./anomaly";
import { renderCube } from "./cube";
import { renderLayer } from "./layer";
import { renderModelInfo } from "./model_info";
import { renderValidation } from "./validation";
import { initializeModel } from "./view";

type ViewRender = (props: { model: AnyModel; el: HTMLElement }) => () => void;

const VIEWS: Record<string, ViewRender> = {
  anomaly: renderAnomaly as unknown as ViewRender,
  cube: renderCube as unknown as ViewRender,
  layer: renderLayer as unknown as ViewRender,
  model_info: renderModelInfo as unknown as ViewRender,
  validation: renderValidation as unknown as ViewRender,
};

export default {
  initialize({ model }: { model: AnyModel }): () => void {
    return initializeModel(model);
  },
  render({ model, el }: RenderProps): () => void {
    const name = model.get("_view");
    const view = VIEWS[name];
    if (view === undefined) {
      throw new Error(
        `filterscope: no view named "${name}" in this bundle (known: ${Object.keys(VIEWS).join(", ")}); ` +
          "the Python package and its widget.js are out of step: rebuild with `make js`",
      );
    }
    return view({ model, el });
  },
};
