/**
 * The pure maths of the layer view, kept apart from the DOM so tests check it directly:
 * horizon-graph bands, the visible rows of a collapsible tree, the colour range of a layer's
 * filter rows (global, per filter, per snapshot) and which data column each pixel column shows.
 */

/** Band index (0 = lowest) and the fill of that band (0..1) of `value` in a horizon graph. */
export interface HorizonBand {
  band: number;
  offset: number;
  /** True for values below zero (drawn mirrored, in the negative hue). */
  negative: boolean;
}

/**
 * Where `value` falls in a horizon graph of `bands` bands over `[0, max]`: the band of its
 * magnitude and how far it fills that band. Magnitudes at or above `max` fill the top band;
 * NaN and a non-positive `max` give null (nothing to draw).
 */
export function horizonBand(value: number, max: number, bands: number): HorizonBand | null {
  if (!Number.isFinite(value) || !(max > 0) || bands < 1) return null;
  const size = max / bands;
  const magnitude = Math.abs(value);
  if (magnitude >= max) return { band: bands - 1, offset: 1, negative: value < 0 };
  const band = Math.min(Math.floor(magnitude / size), bands - 1);
  return { band, offset: (magnitude - band * size) / size, negative: value < 0 };
}

/**
 * Heights (fractions of the row) of the `bands` layers drawn for `value`: every band below the
 * value's band is full, its own band is filled to its offset, the ones above are empty.
 */
export function horizonFills(value: number, max: number, bands: number): number[] {
  const at = horizonBand(value, max, bands);
  const fills = new Array<number>(bands).fill(0);
  if (at === null) return fills;
  for (let b = 0; b < at.band; b++) fills[b] = 1;
  fills[at.band] = at.offset;
  return fills;
}

export interface TreeNode {
  name: string;
  level: string;
  parent: string;
  params: number;
  /** A layer with filters (expanding it shows its pixel chart). */
  layer: boolean;
  filters: number;
}

export interface VisibleRow {
  node: TreeNode;
  depth: number;
  /** Row of the "show more" button under a parent whose children are paged. */
  more?: { parent: string; hidden: number };
}

/** Children of every node, in tree order. */
export function childrenOf(nodes: readonly TreeNode[]): Map<string, TreeNode[]> {
  const out = new Map<string, TreeNode[]>();
  for (const node of nodes) {
    const list = out.get(node.parent) ?? [];
    list.push(node);
    out.set(node.parent, list);
  }
  return out;
}

/**
 * The rows the tree shows: the roots, and the children of every expanded node, depth first.
 * A parent with more than `pageSize` children shows `shown.get(parent) ?? pageSize` of them
 * and then a "more" row.
 */
export function visibleRows(
  nodes: readonly TreeNode[],
  expanded: ReadonlySet<string>,
  pageSize = 40,
  shown: ReadonlyMap<string, number> = new Map(),
): VisibleRow[] {
  const children = childrenOf(nodes);
  const rows: VisibleRow[] = [];
  const visit = (node: TreeNode, depth: number) => {
    rows.push({ node, depth });
    if (!expanded.has(node.name)) return;
    const kids = children.get(node.name) ?? [];
    const limit = shown.get(node.name) ?? pageSize;
    for (const child of kids.slice(0, limit)) visit(child, depth + 1);
    if (kids.length > limit)
      rows.push({
        node,
        depth: depth + 1,
        more: { parent: node.name, hidden: kids.length - limit },
      });
  };
  for (const root of children.get("") ?? []) visit(root, 0);
  return rows;
}

/** Names of `node` and its ancestors (what to expand so that `node` shows). */
export function ancestors(nodes: readonly TreeNode[], name: string): string[] {
  const parent = new Map(nodes.map((n) => [n.name, n.parent]));
  const out: string[] = [];
  let at: string | undefined = parent.get(name);
  while (at) {
    out.push(at);
    at = parent.get(at);
  }
  return out;
}

export type Normalize = "global" | "filter" | "snapshot";

/**
 * Scale a `rows × cols` grid (row-major) to 0..1: over `global` (the run's range of the metric),
 * each row's own range ("filter") or each column's ("snapshot"). NaN stays NaN; a flat range
 * maps to 0.5.
 */
export function normalizeGrid(
  values: ArrayLike<number>,
  rows: number,
  cols: number,
  mode: Normalize,
  global: readonly [number, number] = [0, 1],
): Float32Array {
  const out = new Float32Array(rows * cols);
  const lo = new Float64Array(mode === "filter" ? rows : mode === "snapshot" ? cols : 1);
  const hi = new Float64Array(lo.length);
  lo.fill(Number.POSITIVE_INFINITY);
  hi.fill(Number.NEGATIVE_INFINITY);
  const key = (r: number, c: number) => (mode === "filter" ? r : mode === "snapshot" ? c : 0);
  if (mode === "global") {
    lo[0] = global[0];
    hi[0] = global[1];
  } else {
    for (let r = 0; r < rows; r++) {
      for (let c = 0; c < cols; c++) {
        const v = values[r * cols + c] as number;
        if (!Number.isFinite(v)) continue;
        const k = key(r, c);
        if (v < (lo[k] as number)) lo[k] = v;
        if (v > (hi[k] as number)) hi[k] = v;
      }
    }
  }
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < cols; c++) {
      const v = values[r * cols + c] as number;
      const k = key(r, c);
      const a = lo[k] as number;
      const span = (hi[k] as number) - a;
      out[r * cols + c] = !Number.isFinite(v)
        ? Number.NaN
        : span > 0
          ? Math.min(Math.max((v - a) / span, 0), 1)
          : 0.5;
    }
  }
  return out;
}

/**
 * For each of `width` pixel columns over the step window `[w0, w1]`, the data column it shows:
 * the point of `xs` (ascending steps, one per snapshot or bucket) nearest the pixel's step, ties
 * to the earlier; -1 more than half a gap before the first point or after the last. So every
 * snapshot, the last one included, gets the pixels around its step.
 */
export function columnOfPixel(
  xs: ArrayLike<number>,
  w0: number,
  w1: number,
  width: number,
): Int32Array {
  const out = new Int32Array(Math.max(width, 0)).fill(-1);
  const n = xs.length;
  if (n === 0) return out;
  const first = xs[0] as number;
  const last = xs[n - 1] as number;
  const before = n > 1 ? ((xs[1] as number) - first) / 2 : Number.POSITIVE_INFINITY;
  const after = n > 1 ? (last - (xs[n - 2] as number)) / 2 : Number.POSITIVE_INFINITY;
  let i = 0;
  for (let p = 0; p < width; p++) {
    const step = w0 + ((p + 0.5) / width) * (w1 - w0);
    if (step < first - before || step > last + after) continue;
    while (i + 1 < n && (xs[i + 1] as number) - step < step - (xs[i] as number)) i++;
    out[p] = i;
  }
  return out;
}
