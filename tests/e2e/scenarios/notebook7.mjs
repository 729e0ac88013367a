// Notebook 7 scenarios for tests/e2e/driver.mjs (see README.md beside this file).

import { join } from "node:path";
import { DriverError, within } from "../lib.mjs";
import dashboardScenarios from "./dashboard.mjs";

export default {
  /**
   * The dashboard scenario on Notebook 7's /notebooks/ page, plus proof of where it ran: the
   * front end's name and version as the page reports them, and a screenshot of the whole page
   * (Notebook 7's own header and toolbar around the views).
   */
  async notebook7_dashboard(page, config) {
    const app = await page.evaluate(() => ({
      name: window.jupyterapp.name,
      version: window.jupyterapp.version,
      path: window.location.pathname,
    }));
    if (!app.path.includes("/notebooks/"))
      throw new DriverError(`expected Notebook 7's /notebooks/ page, got ${app.path}`);
    const result = await dashboardScenarios.dashboard(page, config);
    await page.setViewportSize({ width: 1280, height: 1100 });
    const whole = join(config.artifacts, "notebook7-page.png");
    await within(20_000, "screenshot notebook7-page.png", page.screenshot({ path: whole }));
    return { ...result, app, screenshots: [...result.screenshots, whole] };
  },
};
