/**
 * The shared time axis of every view: one x-axis (optimizer steps) that several charts draw
 * against, so hover, zoom and picks stay in sync across them.
 *
 * `TimeAxis` holds the browser-only state (visible window, hover, brush) and the picked
 * iterations; charts subscribe to it and redraw. `attachPointer` turns pointer input on a plot
 * area into axis changes: move to hover, click to pick the nearest pickable step, drag to zoom
 * into a window, double-click to zoom out. Picks and windows are semantic selections, so they
 * go through the caller's `actions` (which write them to the model); the model's echo then
 * updates the axis, keeping Python the owner of that state.
 */

import { type LinearScale, linearScale } from "./scale";

/**
 * The layout contract of the time axis, shared by every view: a view's time-axis plot area
 * starts `left` pixels from its root's left edge (the gutter: y ticks, the layer tree, class
 * and layer names; text wider than it is cut with an ellipsis, never widening it) and ends
 * `right` pixels before its right edge (room for side panels: ValidationView's thumbnail,
 * CubeView's right face). In a dashboard every view's root has the container's width, so a
 * step is at the same page x in every view and the hover line reads as one line.
 */
export const TIME_AXIS_LAYOUT = { left: 200, right: 180, minWidth: 10 } as const;

/** The time-axis plot area of a view `width` pixels wide: `[left, left + width]` of its root. */
export function timeAxisArea(width: number): { left: number; width: number } {
  const { left, right, minWidth } = TIME_AXIS_LAYOUT;
  return { left, width: Math.max(Math.floor(width) - left - right, minWidth) };
}

export type AxisChange = "window" | "hover" | "brush" | "picks";
export type Window = readonly [number, number];

export class TimeAxis {
  /** Full step range of the data, `[first, last]`. */
  readonly extent: Window;
  /** Steps a click snaps to, ascending (e.g. snapshot steps); empty means any whole step. */
  readonly snapPoints: Float64Array;
  /** Visible step range. */
  window: Window;
  /** Snapped step under the pointer, or null. */
  hover: number | null = null;
  /** Step range being dragged out, or null. */
  brush: Window | null = null;
  /** Picked steps in pick order. */
  picks: readonly number[] = [];
  private readonly listeners = new Set<(change: AxisChange) => void>();

  constructor(extent: Window, snapPoints: ArrayLike<number>) {
    this.extent = [Math.min(extent[0], extent[1]), Math.max(extent[0], extent[1])];
    this.snapPoints = Float64Array.from(snapPoints).sort();
    this.window = this.extent;
  }

  /** Call `listener` on every change; returns the unsubscribe function. */
  subscribe(listener: (change: AxisChange) => void): () => void {
    this.listeners.add(listener);
    return () => {
      this.listeners.delete(listener);
    };
  }

  private emit(change: AxisChange): void {
    for (const listener of this.listeners) listener(change);
  }

  /** The pickable step nearest to `step` (ties go to the earlier); the nearest whole step if none. */
  snap(step: number): number {
    const points = this.snapPoints;
    if (points.length === 0) return Math.round(step);
    let lo = 0;
    let hi = points.length - 1;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if ((points[mid] as number) < step) lo = mid + 1;
      else hi = mid;
    }
    const after = points[lo] as number;
    const before = lo > 0 ? (points[lo - 1] as number) : after;
    return step - before <= after - step ? before : after;
  }

  /** Map the visible window onto pixels `[left, left + width]`. */
  scale(left: number, width: number): LinearScale {
    return linearScale(this.window, [left, left + width]);
  }

  setHover(step: number | null): void {
    if (step === this.hover) return;
    this.hover = step;
    this.emit("hover");
  }

  setBrush(brush: Window | null): void {
    this.brush = brush === null ? null : [Math.min(...brush), Math.max(...brush)];
    this.emit("brush");
  }

  /** Show `window` clipped to the extent; null shows everything. */
  setWindow(window: Window | null): void {
    const next = clipWindow(window, this.extent);
    if (next[0] === this.window[0] && next[1] === this.window[1]) return;
    this.window = next;
    this.emit("window");
  }

  setPicks(picks: readonly number[]): void {
    this.picks = [...picks];
    this.emit("picks");
  }
}

/** Clip a window to the extent; null, empty or disjoint windows give the whole extent. */
export function clipWindow(window: Window | null, extent: Window): Window {
  if (window === null) return extent;
  const lo = Math.max(Math.min(window[0], window[1]), extent[0]);
  const hi = Math.min(Math.max(window[0], window[1]), extent[1]);
  return lo < hi ? [lo, hi] : extent;
}

/** Add `step` to the picks, or remove it when it is already picked; order of picking is kept. */
export function togglePick(picks: readonly number[], step: number): number[] {
  return picks.includes(step) ? picks.filter((p) => p !== step) : [...picks, step];
}

export interface PointerActions {
  /** The user clicked the plot; `step` is already snapped to a pickable step. */
  pick(step: number): void;
  /** The user dragged out a window, or double-clicked (null) to see everything. */
  zoom(window: Window | null): void;
}

/** Pixels the pointer must travel with the button down before a press counts as a drag. */
export const DRAG_THRESHOLD_PX = 4;

/**
 * Wire pointer input on `target` (the transparent rectangle over a plot area) to `axis`.
 * Positions are measured against the target's bounding box, which spans the visible window.
 * Returns a function that removes the listeners.
 */
export function attachPointer(
  target: Element,
  axis: TimeAxis,
  actions: PointerActions,
): () => void {
  let pressX: number | null = null;
  let dragging = false;

  const stepAt = (clientX: number): number => {
    const box = target.getBoundingClientRect();
    const x = Math.min(Math.max(clientX - box.left, 0), box.width);
    return axis.scale(0, box.width).invert(x);
  };

  const onDown = (event: Event) => {
    const e = event as PointerEvent;
    if (e.button !== 0) return;
    pressX = e.clientX;
    dragging = false;
    target.setPointerCapture?.(e.pointerId);
  };
  const onMove = (event: Event) => {
    const e = event as PointerEvent;
    if (pressX !== null && (dragging || Math.abs(e.clientX - pressX) > DRAG_THRESHOLD_PX)) {
      dragging = true;
      axis.setBrush([stepAt(pressX), stepAt(e.clientX)]);
    }
    axis.setHover(axis.snap(stepAt(e.clientX)));
  };
  const onUp = (event: Event) => {
    const e = event as PointerEvent;
    if (pressX === null) return;
    const start = stepAt(pressX);
    pressX = null;
    if (dragging) {
      dragging = false;
      const end = stepAt(e.clientX);
      axis.setBrush(null);
      actions.zoom([Math.min(start, end), Math.max(start, end)]);
    } else {
      actions.pick(axis.snap(stepAt(e.clientX)));
    }
  };
  const onLeave = () => {
    if (pressX === null) axis.setHover(null);
  };
  const onCancel = () => {
    pressX = null;
    dragging = false;
    axis.setBrush(null);
  };
  const onDoubleClick = () => actions.zoom(null);

  const listeners: [string, (event: Event) => void][] = [
    ["pointerdown", onDown],
    ["pointermove", onMove],
    ["pointerup", onUp],
    ["pointerleave", onLeave],
    ["pointercancel", onCancel],
    ["dblclick", onDoubleClick],
  ];
  for (const [name, fn] of listeners) target.addEventListener(name, fn);
  return () => {
    for (const [name, fn] of listeners) target.removeEventListener(name, fn);
  };
}
