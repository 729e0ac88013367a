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
  const root = document.createElement("div");
  root.className = `${ROOT_CLASS} ${definition.className}`;
  el.append(root);

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
    root.remove();
  };
}
