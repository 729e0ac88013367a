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

import { existsSync, mkdirSync } from "node:fs";
import { createRequire } from "node:module";
import { join } from "node:path";

const require = createRequire(new URL("../../js/package.json", import.meta.url));

// Chromium floods a closed network with refused connections unless background traffic is off.
const CHROMIUM_ARGS = [
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];

class DriverError extends Error {}

/** Resolve `promise` or fail with `what` after `ms` milliseconds. */
function within(ms, what, promise) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(
      () => reject(new DriverError(`timed out after ${ms / 1000} s: ${what}`)),
      ms,
    );
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** Wait until `fn(arg)` evaluated in the page is truthy; returns its value. */
async function waitInPage(page, what, ms, fn, arg) {
  try {
    const handle = await page.waitForFunction(fn, arg, { timeout: ms, polling: 200 });
    return await handle.jsonValue();
  } catch (error) {
    if (error?.name === "TimeoutError")
      throw new DriverError(`timed out after ${ms / 1000} s: ${what}`);
    throw error;
  }
}

// ---- JupyterLab helpers (run in the page) --------------------------------------------------

async function openNotebook(page, config) {
  const workspace = `e2e-${config.scenario}-${Date.now()}`;
  const url = new URL(`lab/workspaces/${workspace}/tree/${config.notebook}`, config.url);
  url.searchParams.set("reset", "");
  await within(30_000, `loading ${url}`, page.goto(url.href, { waitUntil: "domcontentloaded" }));
  await waitInPage(page, "window.jupyterapp", 60_000, () => window.jupyterapp !== undefined);
  await within(
    60_000,
    "JupyterLab to start and restore",
    page.evaluate(async () => {
      await window.jupyterapp.started;
      await window.jupyterapp.restored;
    }),
  );
  await waitInPage(
    page,
    `the notebook ${config.notebook} to open with an idle kernel`,
    60_000,
    (path) => {
      const panel = window.jupyterapp.shell.currentWidget;
      const session = panel?.sessionContext;
      return panel?.context?.path === path && session?.session?.kernel?.status === "idle";
    },
    config.notebook,
  );
}

/**
 * Start a notebook command without awaiting it: its promise settles only when the cells finish,
 * which the scenarios wait for through what the cells show. A rejection is kept for the report.
 */
async function startCommand(page, command, args = {}) {
  await within(
    10_000,
    `starting ${command}`,
    page.evaluate(
      ([id, options]) => {
        window.jupyterapp.commands.execute(id, options).catch((error) => {
          window.__filterscopeCommandErrors = [
            ...(window.__filterscopeCommandErrors ?? []),
            `${id}: ${error}`,
          ];
        });
      },
      [command, args],
    ),
  );
}

/** Run every cell; the first run right after the kernel turns idle is sometimes lost: retry. */
async function runAllCells(page) {
  for (let attempt = 1; attempt <= 2; attempt++) {
    await startCommand(page, "notebook:run-all-cells");
    try {
      await waitInPage(page, "the first cell to start running", 15_000, () => {
        const cell = window.jupyterapp.shell.currentWidget.content.widgets[0];
        return (
          cell.model.executionCount !== null ||
          cell.node.querySelector(".jp-InputPrompt")?.textContent?.includes("*")
        );
      });
      return attempt;
    } catch (error) {
      if (attempt === 2) throw error;
    }
  }
}

/** Run cell `index` again (negative counts from the end). */
async function runCell(page, index) {
  await page.evaluate((i) => {
    const notebook = window.jupyterapp.shell.currentWidget.content;
    notebook.activeCellIndex = i < 0 ? notebook.widgets.length + i : i;
  }, index);
  await startCommand(page, "notebook:run-cell");
}

/** Wait for an output area to show `text`; returns the output's full text. */
async function waitForOutput(page, text, ms) {
  return waitInPage(
    page,
    `an output showing ${JSON.stringify(text)}`,
    ms,
    (t) => {
      for (const node of document.querySelectorAll(".jp-OutputArea-output")) {
        if (node.textContent.includes(t)) return node.textContent.trim();
      }
      return false;
    },
    text,
  );
}

async function screenshot(target, artifacts, name) {
  const path = join(artifacts, name);
  await within(20_000, `screenshot ${name}`, target.screenshot({ path }));
  return path;
}

async function setTheme(page, theme, light) {
  await startCommand(page, "apputils:change-theme", { theme });
  await waitInPage(
    page,
    `the theme ${theme}`,
    20_000,
    (isLight) => document.body.dataset.jpThemeLight === String(isLight),
    light,
  );
  // JupyterLab covers the page with its splash screen while it swaps the theme's stylesheet.
  await waitInPage(
    page,
    "the splash screen of the theme change to go",
    20_000,
    () => document.getElementById("jupyterlab-splash") === null,
  );
  // The theme's stylesheet applies a frame after the attribute flips.
  await page.evaluate(
    () => new Promise((resolve) => requestAnimationFrame(() => requestAnimationFrame(resolve))),
  );
}

/**
 * Screenshot `target` in JupyterLab's dark theme (the views must follow it), then switch back:
 * the theme is a user setting, which later tests on the same server would inherit.
 */
async function screenshotInDarkTheme(page, target, artifacts, name) {
  await setTheme(page, "JupyterLab Dark", false);
  const path = await screenshot(target, artifacts, name);
  await setTheme(page, "JupyterLab Light", true);
  return path;
}

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
    page.on("pageerror", (error) => problems.push(`page error: ${error.message}`));
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
