/**
 * The in-browser selection bus: hover, brush and zoom/pan shared by every view of one selection.
 *
 * Views of one Python `Selection` share its `link_id`; `linkBus(id)` hands them the same bus,
 * so moving the pointer over one chart moves the hover line of every linked view at frame rate,
 * with no kernel round trip. Semantic choices (picks, layer, class, sample) do not travel here:
 * they are traits, which go through Python so user code can observe them.
 */

export type Window = readonly [number, number];

export interface LinkEvents {
  /** Time (step) under the pointer, or null when it left. */
  hover: number | null;
  /** Time range being dragged out, or null. */
  brush: Window | null;
  /** Visible time range; null is everything. */
  window: Window | null;
}

type Listener<K extends keyof LinkEvents> = (value: LinkEvents[K], source: unknown) => void;

export class LinkBus {
  private readonly listeners: { [K in keyof LinkEvents]: Set<Listener<K>> } = {
    hover: new Set(),
    brush: new Set(),
    window: new Set(),
  };
  /** Last value published per event, for views that mount later. */
  readonly last: Partial<LinkEvents> = {};
  /** Views holding this bus; the registry forgets the bus when it drops to zero. */
  users = 0;

  constructor(readonly id: string) {}

  /** Tell every other subscriber; `source` (the publishing view) does not hear its own event. */
  publish<K extends keyof LinkEvents>(event: K, value: LinkEvents[K], source: unknown): void {
    this.last[event] = value;
    for (const listener of [...this.listeners[event]] as Listener<K>[]) {
      if ((listener as { source?: unknown }).source !== source) listener(value, source);
    }
  }

  /** Listen to `event` from other sources; returns the unsubscribe function. */
  subscribe<K extends keyof LinkEvents>(
    event: K,
    source: unknown,
    listener: (value: LinkEvents[K]) => void,
  ): () => void {
    const wrapped = Object.assign((value: LinkEvents[K]) => listener(value), { source });
    const set = this.listeners[event] as Set<Listener<K>>;
    set.add(wrapped);
    return () => {
      set.delete(wrapped);
    };
  }

  /** Number of listeners, to check that views detach. */
  get size(): number {
    return this.listeners.hover.size + this.listeners.brush.size + this.listeners.window.size;
  }
}

// anywidget imports each widget's module from a blob URL of its own, so two views in one page
// run separate copies of this module: the registry lives on the page's global object, where
// every copy finds it.
const REGISTRY = "__filterscopeLinkBuses";
const page = globalThis as Record<string, unknown>;
if (!(page[REGISTRY] instanceof Map)) page[REGISTRY] = new Map<string, LinkBus>();
const buses = page[REGISTRY] as Map<string, LinkBus>;

/**
 * The bus of `linkId`, shared by every view in this page that asks for it; an empty id gives a
 * private bus. Call the returned `release` when the view goes away.
 */
export function linkBus(linkId: string): { bus: LinkBus; release: () => void } {
  if (!linkId) return { bus: new LinkBus(""), release: () => undefined };
  let bus = buses.get(linkId);
  if (bus === undefined) {
    bus = new LinkBus(linkId);
    buses.set(linkId, bus);
  }
  bus.users += 1;
  const held = bus;
  let released = false;
  return {
    bus: held,
    release: () => {
      if (released) return;
      released = true;
      held.users -= 1;
      if (held.users === 0) buses.delete(linkId);
    },
  };
}

/** Ids of the buses alive now (for tests). */
export function liveBuses(): string[] {
  return [...buses.keys()];
}
