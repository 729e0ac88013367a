/**
 * The one view lifecycle every filterscope view shares.
 *
 * anywidget calls `initialize` once per model (connections and caches: the request client) and
 * `render` once per displayed output (DOM). `mountView` does what every view's `render` needs:
 * the scoped root element and shared styles, the link bus of the view's `link_id`, a
 * `ResizeObserver`, the model listeners (keys that rebuild the view, keys it updates in place),
 * and a cleanup that undoes all of it. A view is then a `ViewDefinition`: a class name, the keys
 * it listens to, and `create`, which builds it in the root and returns its handlers.
 */

import type { AnyModel } from "@anywidget/types";
import { type LinkBus, linkBus } from "./bus";
import { RequestClient } from "./requests";
import { injectStyles, ROOT_CLASS } from "./theme";
import type { AxisChange, TimeAxis, Window } from "./timeaxis";

/** The line above a view that shows the kernel's `notice` (hidden when empty). */
export const NOTICE_CLASS = "filterscope-notice";

/** Width used until the element is laid out and a ResizeObserver reports the real one. */
export const FALLBACK_WIDTH = 760;

// biome-ignore lint/suspicious/noExplicitAny: the same constraint as AnyModel's own ObjectHash
type State = Record<string, any>;

/** What a view gets to build itself. */
export interface ViewContext<S extends State> {
  model: AnyModel<S>;
  /** The view's root element, emptied before every (re)build. */
  root: HTMLElement;
  requests: RequestClient;
  /** Hover, brush and zoom shared with every view of the same selection. */
  bus: LinkBus;
  /** Current width of the root in pixels. */
  width: number;
}

/** A built view: what the lifecycle calls back. */
export interface ViewInstance {
  resize?(width: number): void;
  /** A key of the definition's `listen` changed on the model. */
  changed?(key: string): void;
  destroy?(): void;
}

export interface ViewDefinition<S extends State> {
  /** Class on the root element, beside the shared `filterscope` class. */
  className: string;
  /** Model keys whose change rebuilds the view (its data). */
  rebuildOn: readonly (keyof S & string)[];
  /** Model keys passed to `changed` (selections the view updates in place). */
  listen: readonly (keyof S & string)[];
  create(context: ViewContext<S>): ViewInstance;
}

/**
 * Milliseconds a zoom rests before the kernel hears of it. The page follows a zoom at once (the
 * link bus); the kernel's `time_window` (and what Python derives from it, such as LayerView's
 * series) only needs the window the user stops at, not every wheel turn on the way.
 */
export const WINDOW_SAVE_MS = 120;

const windowTimers = new WeakMap<object, ReturnType<typeof setTimeout>>();

/**
 * Set `time_window` on `model` now and send it to the kernel once no other zoom followed for
 * `ms` milliseconds (one message for a wheel or drag that moves on, the last window).
 */
export function saveWindow<S extends State>(
  model: AnyModel<S>,
  window: [number, number] | null,
  ms = WINDOW_SAVE_MS,
): void {
  model.set("time_window" as keyof S & string, window as never);
  const previous = windowTimers.get(model);
  if (previous !== undefined) clearTimeout(previous);
  windowTimers.set(
    model,
    setTimeout(() => {
      windowTimers.delete(model);
      model.save_changes();
    }, ms),
  );
}

/**
 * Zoom a view's time axis to `window` (widened to whole steps; null: the whole run): the
 * linked views follow at once through the bus, Python hears of it through `time_window`
 * (debounced by {@link saveWindow}). An empty window is ignored.
 */
export function zoomAxis<S extends State>(
  axis: TimeAxis,
  bus: LinkBus,
  owner: object,
  model: AnyModel<S>,
  window: Window | null,
): void {
  let next: [number, number] | null = null;
  if (window !== null) {
    next = [Math.floor(window[0]), Math.ceil(window[1])];
    if (next[1] <= next[0]) return;
  }
  bus.publish("window", next, owner);
  axis.setWindow(next);
  saveWindow(model, next);
}

/**
 * Link a view's time axis to the link bus, the same way in every view: its own hover and brush
 * go out to the other views; theirs, and their zoom windows, come in without being sent back.
 * `changed` hears every change of the axis first. Returns the cleanups.
 */
export function linkAxis(
  axis: TimeAxis,
  bus: LinkBus,
  owner: object,
  changed: (change: AxisChange) => void,
): (() => void)[] {
  let fromBus = false;
  const fromLink = (apply: () => void) => {
    fromBus = true;
    try {
      apply();
    } finally {
      fromBus = false;
    }
  };
  return [
    axis.subscribe((change) => {
      changed(change);
      if (!fromBus && change === "hover") bus.publish("hover", axis.hover, owner);
      if (!fromBus && change === "brush") bus.publish("brush", axis.brush, owner);
    }),
    bus.subscribe("hover", owner, (step) => fromLink(() => axis.setHover(step))),
    bus.subscribe("brush", owner, (brush) => fromLink(() => axis.setBrush(brush))),
    bus.subscribe("window", owner, (w) => fromLink(() => axis.setWindow(w))),
  ];
}

const clients = new WeakMap<AnyModel, RequestClient>();

/** anywidget `initialize`: one request client per model; returns its cleanup. */
export function initializeModel<S extends State>(model: AnyModel<S>): () => void {
  const key = model as unknown as AnyModel;
  const client = new RequestClient(key);
  clients.set(key, client);
  return () => {
    client.dispose();
    if (clients.get(key) === client) clients.delete(key);
  };
}

/** Mount `definition` in `el` for `model`; returns the cleanup that detaches everything. */
export function mountView<S extends State>(
  definition: ViewDefinition<S>,
  { model, el }: { model: AnyModel<S>; el: HTMLElement },
): () => void {
  injectStyles(el.ownerDocument);
  // The kernel's `notice` (e.g. the followed log was replaced by another run), as text.
  const notice = document.createElement("div");
  notice.className = NOTICE_CLASS;
  notice.setAttribute("role", "status");
  const showNotice = () => {
    const text = String(model.get("notice" as keyof S & string) ?? "");
    notice.textContent = text;
    notice.hidden = text === "";
  };
  showNotice();
  const root = document.createElement("div");
  root.className = `${ROOT_CLASS} ${definition.className}`;
  el.append(notice, root);

  // A model rendered without `initialize` (tests, old front ends) gets a client of its own.
  const shared = clients.get(model as unknown as AnyModel);
  const requests = shared ?? new RequestClient(model as unknown as AnyModel);
  const link = linkBus(String(model.get("link_id" as keyof S & string) ?? ""));
  let width = root.clientWidth || FALLBACK_WIDTH;

  const build = (): ViewInstance => {
    root.replaceChildren();
    return definition.create({ model, root, requests, bus: link.bus, width });
  };
  let view = build();

  const handlers: [string, () => void][] = [
    ["change:notice", showNotice],
    ...definition.rebuildOn.map((key): [string, () => void] => [
      `change:${key}`,
      () => {
        view.destroy?.();
        view = build();
      },
    ]),
    ...definition.listen.map((key): [string, () => void] => [
      `change:${key}`,
      () => view.changed?.(key),
    ]),
  ];
  for (const [event, handler] of handlers) model.on(event, handler);

  const observer = new ResizeObserver((entries) => {
    const next = entries[0]?.contentRect.width;
    if (next !== undefined && next > 0 && Math.floor(next) !== width) {
      width = Math.floor(next);
      view.resize?.(width);
    }
  });
  observer.observe(root);

  return () => {
    observer.disconnect();
    for (const [event, handler] of handlers) model.off(event, handler);
    view.destroy?.();
    link.release();
    if (shared === undefined) requests.dispose();
    notice.remove();
    root.remove();
  };
}
