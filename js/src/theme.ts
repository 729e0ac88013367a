/**
 * Colours and CSS shared by every view.
 *
 * All rules are scoped under the `.filterscope` root class (plus one class per view), and take
 * their neutral colours from JupyterLab's `--jp-*` variables, so the views follow light and dark
 * themes. Data colours are mid-luminance hues that read on both backgrounds.
 */

/** Class on the root element of every view. */
export const ROOT_CLASS = "filterscope";

/** One colour per series group (train, then each eval set in the order the log lists them). */
export const SERIES_COLORS = [
  "#3b82f6",
  "#f97316",
  "#10b981",
  "#a855f7",
  "#eab308",
  "#ec4899",
] as const;

/** One colour per picked iteration, in the order they were picked. */
export const PICK_COLORS = [
  "#e11d48",
  "#7c3aed",
  "#0891b2",
  "#65a30d",
  "#c2410c",
  "#be185d",
  "#4338ca",
  "#0f766e",
] as const;

function cycle(palette: readonly string[], index: number): string {
  const n = palette.length;
  return palette[((index % n) + n) % n] as string;
}

export function pickColor(index: number): string {
  return cycle(PICK_COLORS, index);
}

/** Assigns colours to group names in order of first request, so a group keeps its colour. */
export class GroupColors {
  private readonly assigned = new Map<string, string>();

  color(group: string): string {
    let color = this.assigned.get(group);
    if (color === undefined) {
      color = cycle(SERIES_COLORS, this.assigned.size);
      this.assigned.set(group, color);
    }
    return color;
  }
}

const STYLE_ID = "filterscope-styles";

const CSS = `
.${ROOT_CLASS} {
  --fs-fg: var(--jp-ui-font-color1, rgba(0, 0, 0, 0.87));
  --fs-fg-muted: var(--jp-ui-font-color2, rgba(0, 0, 0, 0.6));
  --fs-bg: var(--jp-layout-color0, #fff);
  --fs-grid: var(--jp-border-color2, #e0e0e0);
  --fs-axis: var(--jp-border-color1, #bdbdbd);
  --fs-accent: var(--jp-brand-color1, #1976d2);
  box-sizing: border-box;
  width: 100%;
  padding: 6px 0 4px;
  color: var(--fs-fg);
  background: var(--fs-bg);
  font-family: var(--jp-ui-font-family, system-ui, -apple-system, "Segoe UI", sans-serif);
  font-size: var(--jp-ui-font-size1, 13px);
  line-height: 1.4;
  user-select: none;
}
.${ROOT_CLASS} .fs-header {
  display: flex;
  flex-wrap: wrap;
  align-items: center;
  gap: 6px 14px;
  margin: 0 12px 4px;
}
.${ROOT_CLASS} .fs-title { font-weight: 600; font-size: var(--jp-ui-font-size2, 15px); }
.${ROOT_CLASS} .fs-hint { color: var(--fs-fg-muted); font-size: var(--jp-ui-font-size0, 11px); }
.${ROOT_CLASS} .fs-picks { display: flex; flex-wrap: wrap; gap: 6px; }
.${ROOT_CLASS} button.fs-pick, .${ROOT_CLASS} button.fs-button {
  border: 1px solid var(--fs-axis);
  border-radius: 10px;
  padding: 0 8px;
  color: var(--fs-fg);
  background: transparent;
  font: inherit;
  font-size: var(--jp-ui-font-size0, 11px);
  line-height: 18px;
  cursor: pointer;
}
.${ROOT_CLASS} button.fs-pick { border-color: var(--pick-color); }
.${ROOT_CLASS} button.fs-pick::before {
  content: "";
  display: inline-block;
  width: 8px;
  height: 8px;
  margin-right: 5px;
  border-radius: 50%;
  background: var(--pick-color);
}
.${ROOT_CLASS} button.fs-pick:hover, .${ROOT_CLASS} button.fs-button:hover {
  background: var(--jp-layout-color2, #eee);
}
.${ROOT_CLASS} .fs-chart { position: relative; }
.${ROOT_CLASS} .fs-chart-head {
  display: flex;
  align-items: baseline;
  gap: 14px;
  min-height: 18px;
  margin-right: 12px;
}
.${ROOT_CLASS} .fs-chart-title { font-weight: 600; }
.${ROOT_CLASS} .fs-legend { display: flex; gap: 12px; color: var(--fs-fg-muted); }
.${ROOT_CLASS} .fs-swatch {
  display: inline-block;
  width: 14px;
  height: 3px;
  margin-right: 5px;
  vertical-align: middle;
  border-radius: 1px;
  background: var(--swatch);
}
.${ROOT_CLASS} .fs-readout {
  margin-left: auto;
  color: var(--fs-fg-muted);
  font-size: var(--jp-ui-font-size0, 11px);
  font-variant-numeric: tabular-nums;
  white-space: nowrap;
}
.${ROOT_CLASS} svg { display: block; overflow: visible; }
.${ROOT_CLASS} svg text {
  fill: var(--fs-fg-muted);
  font-size: 11px;
  font-variant-numeric: tabular-nums;
}
.${ROOT_CLASS} .fs-grid line { stroke: var(--fs-grid); shape-rendering: crispEdges; }
.${ROOT_CLASS} .fs-axis-line { stroke: var(--fs-axis); shape-rendering: crispEdges; }
.${ROOT_CLASS} .fs-line { fill: none; stroke-width: 1.75; stroke-linejoin: round; }
.${ROOT_CLASS} .fs-line-dense { stroke-width: 1; stroke-opacity: 0.85; }
.${ROOT_CLASS} .fs-band { stroke-width: 0.75; fill-opacity: 0.35; }
.${ROOT_CLASS} .fs-dot { stroke: var(--fs-bg); stroke-width: 1; }
.${ROOT_CLASS} .fs-hover { stroke: var(--fs-fg); stroke-opacity: 0.55; pointer-events: none; }
.${ROOT_CLASS} .fs-pick-line { stroke-width: 1.5; stroke-dasharray: 4 3; pointer-events: none; }
.${ROOT_CLASS} .fs-brush { fill: var(--fs-accent); fill-opacity: 0.12; pointer-events: none; }
.${ROOT_CLASS} .fs-overlay { fill: transparent; cursor: crosshair; touch-action: none; }
.${ROOT_CLASS} canvas.fs-heatmap { display: block; image-rendering: pixelated; cursor: crosshair; }
.${ROOT_CLASS}-notice {
  margin: 0 0 4px;
  padding: 4px 8px;
  border-left: 3px solid var(--jp-warn-color0, #f57c00);
  background: var(--jp-warn-color3, #fff3e0);
  color: var(--jp-ui-font-color1, #222);
  font-size: var(--jp-ui-font-size1, 13px);
}
`;

/** Add the shared style sheet to `doc` once; later calls find it by id and do nothing. */
export function injectStyles(doc: Document): void {
  if (doc.getElementById(STYLE_ID) !== null) return;
  const style = doc.createElement("style");
  style.id = STYLE_ID;
  style.textContent = CSS;
  doc.head.appendChild(style);
}
