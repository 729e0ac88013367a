// Live-view scenarios for tests/e2e/driver.mjs (see README.md beside this file).

import { DriverError, screenshot, waitForView } from "../lib.mjs";

export default {
  /**
   * A live dashboard while a notebook cell trains (the notebook's training cell prints
   * `TRAINED` when done): samples the points of ModelInfo's training-loss line every 100 ms
   * until the cell is done, so the test sees the page's run grow while the kernel was busy.
   */
  async live(page, config) {
    const root = await waitForView(page, ".filterscope-modelinfo", "the live ModelInfo", 90_000);
    const points = () =>
      page.evaluate(() => {
        const path = document.querySelector(
          '.filterscope-modelinfo .fs-chart[data-key="loss"] path[data-name="train"]',
        );
        return path?.dataset.points ? Number(path.dataset.points) : null;
      });
    const trained = () =>
      page.evaluate(() =>
        [...document.querySelectorAll(".jp-OutputArea-output")].some((n) =>
          n.textContent.includes("TRAINED"),
        ),
      );
    const during = [];
    const deadline = Date.now() + (config.train_ms ?? 150_000);
    while (!(await trained())) {
      if (Date.now() > deadline) throw new DriverError("the training cell did not finish");
      const p = await points();
      if (p !== null) during.push(p);
      await page.waitForTimeout(100);
    }
    await page.waitForTimeout(1_500); // the last commit's update
    const after = await points();
    const shot = await screenshot(root, config.artifacts, "live_model_info.png");
    return { during, after, screenshots: [shot] };
  },
};
