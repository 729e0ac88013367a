#!/usr/bin/env node
// Drives a running JupyterLab in headless Chromium: opens a notebook in a fresh workspace, runs
// it, then plays one named scenario against the widget it shows. Prints one JSON object on
// stdout and exits 0 when the scenario passed, 1 (with "error" in the JSON) when it did not.
//
//   node tests/e2e/driver.mjs '{"url": "http://127.0.0.1:8888/", "notebook": "model_info.ipynb",
//                               "scenario": "model_info", "artifacts": "test-artifacts/e2e", ...}'
//
// playwright-core comes from js/node_modules (never `playwright install`: the browser is
// Debian's chromium, found at $CHROMIUM or /usr/bin/chromium).

import { existsSync, mkdirSync, readdirSync } from "node:fs";
import { createRequire } from "node:module";
import {
  CHROMIUM_ARGS,
  DriverError,
  openNotebook,
  runAllCells,
  runCell,
  screenshot,
  screenshotInDarkTheme,
  waitForOutput,
  waitInPage,
  within,
} from "./lib.mjs";

const require = createRequire(new URL("../../js/package.json", import.meta.url));

// ---- scenarios -----------------------------------------------------------------------------

const scenarios = {
  /**
   * ModelInfo: charts render; hover draws a line on every chart; a click picks a step that the
   * browser lists and the kernel then prints (the notebook's last cell prints
   * `PICKED=<json of w.picked_steps>`).
   */
  async model_info(page, config) {
    const root = page.locator(".filterscope-modelinfo").first();
    await within(
      90_000,
      "the ModelInfo widget to render",
      root.waitFor({ state: "visible", timeout: 90_000 }),
    );
    await waitForOutput(page, "PICKED=[]", 20_000);
    await root.locator("path.fs-line, path.fs-band").first().waitFor({ timeout: 10_000 });
    await root.scrollIntoViewIfNeeded();
    const charts = await root
      .locator(".fs-chart")
      .evaluateAll((nodes) => nodes.map((n) => n.dataset.key));
    const before = await screenshot(root, config.artifacts, "model_info.png");

    const plot = root.locator("rect.fs-overlay").first();
    const box = await plot.boundingBox();
    if (box === null) throw new DriverError("the first chart's plot area has no size");
    const y = box.y + box.height / 2;
    await page.mouse.move(box.x + box.width * 0.3, y);
    const hoverLines = await root.locator("line.fs-hover").count();

    await page.mouse.click(box.x + box.width * config.click_fraction, y);
    await root.locator("button.fs-pick").first().waitFor({ timeout: 10_000 });
    const pickedDom = await root
      .locator("button.fs-pick")
      .evaluateAll((nodes) => nodes.map((n) => Number(n.dataset.step)));
    const markers = await root.locator("line.fs-pick-line").count();
    const after = await screenshot(root, config.artifacts, "model_info-picked.png");

    await runCell(page, -1);
    const expected = `PICKED=${JSON.stringify(pickedDom)}`;
    const printed = await waitForOutput(page, expected, 20_000);
    const pickedKernel = JSON.parse(printed.slice(printed.indexOf("PICKED=") + 7).split("\n")[0]);
    const dark = await screenshotInDarkTheme(page, root, config.artifacts, "model_info-dark.png");
    return {
      charts,
      hover_lines: hoverLines,
      picked_dom: pickedDom,
      picked_kernel: pickedKernel,
      pick_markers: markers,
      screenshots: [before, after, dark],
    };
  },

  /**
   * ModelInfo on a long run: the overview arrives as index buckets; dragging out a short window
   * sends a `window` request, and the answer (raw values, level 0) replaces the buckets. Reports
   * the levels and point counts before and after, the hover read-out inside the window and the
   * window the kernel holds (the notebook's last cell prints `WINDOW=<json of w.time_window>`).
   */
  async model_info_zoom(page, config) {
    const root = page.locator(".filterscope-modelinfo").first();
    await within(
      90_000,
      "the ModelInfo widget to render",
      root.waitFor({ state: "visible", timeout: 90_000 }),
    );
    await waitForOutput(page, "WINDOW=null", 20_000);
    const train = root.locator('.fs-chart[data-key="loss"] path[data-name="train"]');
    await train.waitFor({ timeout: 10_000 });
    await root.scrollIntoViewIfNeeded();
    const before = await train.evaluate((p) => ({
      level: Number(p.dataset.level),
      points: Number(p.dataset.points),
      className: p.getAttribute("class"),
    }));
    const overview = await screenshot(root, config.artifacts, "model_info_zoom-overview.png");

    const plot = root.locator("rect.fs-overlay").first();
    const box = await plot.boundingBox();
    if (box === null) throw new DriverError("the first chart's plot area has no size");
    const y = box.y + box.height / 2;
    const [f0, f1] = config.zoom_fractions;
    await page.mouse.move(box.x + box.width * f0, y);
    await page.mouse.down();
    await page.mouse.move(box.x + box.width * ((f0 + f1) / 2), y, { steps: 4 });
    await page.mouse.move(box.x + box.width * f1, y, { steps: 4 });
    await page.mouse.up();
    const detail = await waitInPage(
      page,
      "the zoomed window's answer from the kernel",
      30_000,
      () => {
        const node = document.querySelector(".filterscope-modelinfo");
        const d = node?.dataset.detail ?? "";
        return /^\d+-\d+$/.test(d) && node.dataset.pending === "" ? d : false;
      },
    );
    const after = await train.evaluate((p) => ({
      level: Number(p.dataset.level),
      points: Number(p.dataset.points),
      className: p.getAttribute("class"),
    }));
    // Hover the middle of the zoomed window: the read-out shows the value at the snapped step.
    const zoomedBox = await plot.boundingBox();
    await page.mouse.move(zoomedBox.x + zoomedBox.width * 0.5, y);
    const readout = await root.locator('.fs-chart[data-key="loss"] .fs-readout').textContent();
    const stepText = await root.locator(".fs-step-readout").textContent();
    const zoomed = await screenshot(root, config.artifacts, "model_info_zoom-zoomed.png");

    await runCell(page, -1);
    const printed = await waitForOutput(page, "WINDOW=[", 20_000);
    const window = JSON.parse(printed.slice(printed.indexOf("WINDOW=") + 7).split("\n")[0]);
    return {
      before,
      after,
      detail,
      readout,
      hover_step: Number(/step (\d+)/.exec(stepText ?? "")?.[1]),
      window,
      screenshots: [overview, zoomed],
    };
  },
};

// ---- main ----------------------------------------------------------------------------------

async function main() {
  const config = {
    click_fraction: 0.6,
    zoom_fractions: [0.5, 0.55],
    artifacts: "test-artifacts/e2e",
    ...JSON.parse(process.argv[2] ?? "{}"),
  };
  // Each view's scenarios may live in a module of its own: tests/e2e/scenarios/<view>.mjs,
  // default-exporting an object of scenario functions (page, config) => result.
  const folder = new URL("./scenarios/", import.meta.url);
  if (existsSync(folder)) {
    for (const file of readdirSync(folder)
      .filter((f) => f.endsWith(".mjs"))
      .sort()) {
      const module = await import(new URL(file, folder).href);
      Object.assign(scenarios, module.default);
    }
  }
  const scenario = scenarios[config.scenario];
  if (scenario === undefined)
    throw new DriverError(
      `unknown scenario ${JSON.stringify(config.scenario)}; known: ${Object.keys(scenarios).join(", ")}`,
    );
  const executablePath = process.env.CHROMIUM || "/usr/bin/chromium";
  if (!existsSync(executablePath)) {
    throw new DriverError(
      `no browser at ${executablePath}: install Debian's chromium (apt-get install chromium, or \`make chromium\`) or set CHROMIUM`,
    );
  }
  let chromium;
  try {
    ({ chromium } = require("playwright-core"));
  } catch {
    throw new DriverError(
      "playwright-core is not installed: run `npm ci` in js/ (make js/node_modules/.package-lock.json)",
    );
  }
  mkdirSync(config.artifacts, { recursive: true });

  const started = Date.now();
  const browser = await within(
    30_000,
    "launching Chromium",
    chromium.launch({ executablePath, headless: true, args: CHROMIUM_ARGS }),
  );
  const problems = [];
  let page;
  try {
    page = await browser.newPage({ viewport: { width: 1280, height: 1100 } });
    page.on("console", (message) => {
      if (message.type() === "error") problems.push(`console: ${message.text()}`);
    });
    // config.known_page_errors: exact messages a front end's own code is known to raise on
    // load (listed and explained by the test that passes them); any other page error fails.
    const known = new Set(config.known_page_errors ?? []);
    page.on("pageerror", (error) => {
      if (!known.has(error.message)) problems.push(`page error: ${error.message}`);
    });
    await openNotebook(page, config);
    const opened = Date.now();
    const attempts = await runAllCells(page);
    const result = await scenario(page, config);
    const commandErrors = await page.evaluate(() => window.__filterscopeCommandErrors ?? []);
    problems.push(...commandErrors.map((e) => `command: ${e}`));
    if (problems.length > 0)
      throw new DriverError(`the page reported errors:\n${problems.join("\n")}`);
    return {
      ok: true,
      ...result,
      run_all_attempts: attempts,
      seconds: { open: (opened - started) / 1000, total: (Date.now() - started) / 1000 },
    };
  } catch (error) {
    if (page !== undefined)
      await screenshot(page, config.artifacts, `${config.scenario}-failure.png`).catch(
        () => undefined,
      );
    error.problems = problems;
    throw error;
  } finally {
    await browser.close();
  }
}

main().then(
  (result) => {
    process.stdout.write(`${JSON.stringify(result)}\n`);
    process.exit(0);
  },
  (error) => {
    const message = error instanceof DriverError ? error.message : String(error?.stack ?? error);
    process.stdout.write(
      `${JSON.stringify({ ok: false, error: message, problems: error?.problems ?? [] })}\n`,
    );
    process.exit(1);
  },
);
