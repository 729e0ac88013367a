// Dashboard scenarios for tests/e2e/driver.mjs (see README.md beside this file).

import { join } from "node:path";
import { DriverError, screenshotInDarkTheme, waitForOutput, within } from "../lib.mjs";

const ROOTS = {
  model_info: ".filterscope-modelinfo",
  layer: ".filterscope-layer",
  validation: ".filterscope-validation",
  cube: ".filterscope-cube",
};

/** Hover lines each view shows now (visible ones only), by view. */
function hoverLines(page) {
  return page.evaluate(
    ({ roots, lines }) => {
      const out = {};
      for (const [name, selector] of Object.entries(roots)) {
        const root = document.querySelector(selector);
        const nodes = root ? [...root.querySelectorAll(lines[name])] : [];
        out[name] = nodes.filter((n) => !n.hidden && n.getClientRects().length > 0).length;
      }
      return out;
    },
    {
      roots: ROOTS,
      lines: {
        model_info: "line.fs-hover",
        layer: ".fs-hover-line",
        validation: ".fs-vhover",
        cube: ".fs-cube-hover",
      },
    },
  );
}

/**
 * Where each view's time axis is on the page: the left and right edges of its plot areas and
 * the x of its visible hover lines (page pixels), by view. Hover lines are 1 px wide (a border
 * or an SVG line of no width), so their left edge is the hovered step's x.
 */
function timeAxes(page) {
  return page.evaluate(
    ({ roots, plots, lines }) => {
      const out = {};
      const shown = (n) => !n.hidden && n.getClientRects().length > 0;
      for (const [name, selector] of Object.entries(roots)) {
        const root = document.querySelector(selector);
        const areas = root ? [...root.querySelectorAll(plots[name])].filter(shown) : [];
        const hovers = root ? [...root.querySelectorAll(lines[name])].filter(shown) : [];
        out[name] = {
          plots: areas.map((n) => {
            const r = n.getBoundingClientRect();
            return [r.left, r.right];
          }),
          hover: hovers.map((n) => n.getBoundingClientRect().left),
          root: root ? [root.getBoundingClientRect().left, root.getBoundingClientRect().right] : [],
        };
      }
      return out;
    },
    {
      roots: ROOTS,
      plots: {
        model_info: "rect.fs-overlay",
        layer: "canvas.fs-node-chart",
        validation: "canvas.fs-vcanvas",
        cube: "canvas.fs-face-top, canvas.fs-face-front",
      },
      lines: {
        model_info: "line.fs-hover",
        layer: ".fs-hover-line",
        validation: ".fs-vhover",
        cube: ".fs-cube-hover",
      },
    },
  );
}

export default {
  /**
   * Dashboard: the four views render in one output; hovering ModelInfo draws the hover line in
   * every other view (the shared link bus, no kernel); a pick made in Python reaches every
   * view (the notebook's last cell prints `BOARD=<json of every view's picked_steps>` after
   * setting `board.selection.picked_steps`); while hovering, where every view's time axis and
   * hover line are on the page (`axes`: they must agree, one time axis); light and dark
   * screenshots, the light one taken while hovering in a viewport tall enough for every view.
   */
  async dashboard(page, config) {
    // Tall enough that the whole dashboard shows at once: the hover line is seen through all.
    await page.setViewportSize({ width: 1280, height: 2600 });
    for (const [name, selector] of Object.entries(ROOTS)) {
      await within(
        90_000,
        `the dashboard's ${name} view to render`,
        page.locator(selector).first().waitFor({ state: "visible", timeout: 90_000 }),
      );
    }
    const printed = await waitForOutput(page, "BOARD=", 60_000);
    const board = page.locator(".filterscope-dashboard").first();
    const info = page.locator(ROOTS.model_info).first();
    await info.scrollIntoViewIfNeeded();
    const plot = info.locator("rect.fs-overlay").first();
    const box = await plot.boundingBox();
    if (box === null) throw new DriverError("ModelInfo's plot area has no size");
    const before = await hoverLines(page);
    await page.mouse.move(box.x + box.width * 0.5, box.y + box.height / 2);
    await page.waitForTimeout(300);
    const during = await hoverLines(page);
    const axes = await timeAxes(page);
    // A screenshot of the page region (no scrolling, which could move the hover) while hovering.
    const boardBox = await board.boundingBox();
    if (boardBox === null) throw new DriverError("the dashboard has no size");
    const viewport = page.viewportSize();
    const clip = {
      x: Math.max(boardBox.x, 0),
      y: Math.max(boardBox.y, 0),
      width: Math.min(boardBox.width, viewport.width - Math.max(boardBox.x, 0)),
      height: Math.min(boardBox.height, viewport.height - Math.max(boardBox.y, 0)),
    };
    const shot = join(config.artifacts, "dashboard.png");
    await within(20_000, "screenshot dashboard.png", page.screenshot({ path: shot, clip }));
    await page.mouse.move(0, 0);
    const dark = await screenshotInDarkTheme(page, board, config.artifacts, "dashboard-dark.png");
    return {
      hover_before: before,
      hover_during: during,
      axes,
      output: printed,
      screenshots: [shot, dark],
    };
  },
};
