// Dashboard scenarios for tests/e2e/driver.mjs (see README.md beside this file).

import { DriverError, screenshot, screenshotInDarkTheme, waitForOutput, within } from "../lib.mjs";

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

export default {
  /**
   * Dashboard: the four views render in one output; hovering ModelInfo draws the hover line in
   * every other view (the shared link bus, no kernel); a pick made in Python reaches every
   * view (the notebook's last cell prints `BOARD=<json of every view's picked_steps>` after
   * setting `board.selection.picked_steps`); light and dark screenshots.
   */
  async dashboard(page, config) {
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
    const shot = await screenshot(board, config.artifacts, "dashboard.png");
    await page.mouse.move(0, 0);
    const dark = await screenshotInDarkTheme(page, board, config.artifacts, "dashboard-dark.png");
    return {
      hover_before: before,
      hover_during: during,
      output: printed,
      screenshots: [shot, dark],
    };
  },
};
