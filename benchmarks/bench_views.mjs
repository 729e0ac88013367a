#!/usr/bin/env node
// The browser half of benchmarks/bench_views.py: drives a running JupyterLab in headless
// Chromium (playwright-core from js/node_modules, Debian's chromium) on the benchmark notebook
// and prints one JSON object of measurements on its last line (exit 1 with "error" on failure).
//
//   node benchmarks/bench_views.mjs '{"url": "http://127.0.0.1:8888/", "notebook": "bench.ipynb"}'
//
// The notebook (written by bench_views.py) has four cells: 0 opens the log and its prebuilt
// index, 1 builds and shows `fs.dashboard(log)` (the timed cell), 2 prints the kernel's own
// measurements (`STATS=<json>`), 3 opens the largest layer's filters and a class's image rows
// from Python (`DETAIL=<json>`), which the page then asks the kernel for.
//
// Definitions (all times from performance.now() in the page):
// * first complete paint: the cell's execution is started by `notebook:run-cell` at t0; every
//   one of the four views' roots is in the dashboard with a laid-out width, has drawn its
//   canvases or SVG (ModelInfo: a line path with data; LayerView: its node-chart canvases;
//   ValidationView and CubeView: their canvases, the cube's three faces) and has no request
//   pending (`data-pending` empty). A rAF loop checks this every frame; the paint time is the
//   timestamp of the next animation frame after the first frame where it holds (that frame
//   was committed).
// * frame time: deltas between consecutive requestAnimationFrame timestamps while the mouse
//   hovers, drags out a zoom and wheels over the views (playwright input, the real events).
// * page request time: from a view setting `data-pending` (request sent) to clearing it
//   (answer decoded and applied), seen by a MutationObserver on the four roots; and from the
//   newest request of such a burst (the last mark that set or changed `data-pending`) to it.
// * bytes: payload bytes of the kernel websocket frames the page received from t0 to the
//   paint.

import { existsSync } from "node:fs";
import { createRequire } from "node:module";
import {
  CHROMIUM_ARGS,
  DriverError,
  openNotebook,
  startCommand,
  waitForOutput,
  waitInPage,
  within,
} from "../tests/e2e/lib.mjs";

const require = createRequire(new URL("../js/package.json", import.meta.url));

const ROOTS = {
  model_info: ".filterscope-modelinfo",
  layer: ".filterscope-layer",
  validation: ".filterscope-validation",
  cube: ".filterscope-cube",
};

/** Select cell `index` and run it; retry once if the kernel did not take it. */
async function runCellAt(page, index, marker, ms) {
  for (let attempt = 1; attempt <= 2; attempt++) {
    await page.evaluate((i) => {
      const notebook = window.jupyterapp.shell.currentWidget.content;
      notebook.activeCellIndex = i;
    }, index);
    await startCommand(page, "notebook:run-cell");
    try {
      await waitInPage(
        page,
        `cell ${index} to start`,
        15_000,
        (i) => {
          const cell = window.jupyterapp.shell.currentWidget.content.widgets[i];
          return (
            cell.model.executionCount !== null ||
            cell.node.querySelector(".jp-InputPrompt")?.textContent?.includes("*")
          );
        },
        index,
      );
      break;
    } catch (error) {
      if (attempt === 2) throw error;
    }
  }
  return waitForOutput(page, marker, ms);
}

function jsonAfter(text, marker) {
  return JSON.parse(text.slice(text.indexOf(marker) + marker.length).split("\n")[0]);
}

/** Installed before the timed cell: the paint detector and the pending-request observer. */
function installProbes(roots) {
  const bench = {
    t0: null,
    complete: null,
    painted: null,
    pending: [],
    frames: null,
    observed: new WeakSet(),
  };
  window.__bench = bench;
  const drawn = {
    model_info: (r) =>
      [...r.querySelectorAll("path.fs-line")].some((p) => (p.getAttribute("d") ?? "").length > 2),
    layer: (r) => r.querySelectorAll("canvas.fs-node-chart").length > 0,
    validation: (r) => r.querySelectorAll("canvas").length > 0,
    cube: (r) => r.querySelectorAll("canvas[data-face]").length >= 3,
  };
  const idle = (r) => ["", "0", undefined].includes(r.dataset.pending);
  const observer = new MutationObserver((records) => {
    const now = performance.now();
    for (const record of records) {
      const node = record.target;
      const view = Object.keys(roots).find((k) => node.matches(roots[k]));
      bench.pending.push({ view, value: node.dataset.pending ?? "", t: now });
    }
  });
  bench.check = () => {
    const board = document.querySelector(".filterscope-dashboard");
    if (board === null) return false;
    let ok = true;
    for (const [name, selector] of Object.entries(roots)) {
      const root = board.querySelector(selector);
      if (root === null) return false;
      if (!bench.observed.has(root)) {
        bench.observed.add(root);
        observer.observe(root, { attributes: true, attributeFilter: ["data-pending"] });
      }
      ok = ok && root.getBoundingClientRect().width > 0 && drawn[name](root) && idle(root);
    }
    return ok;
  };
  const loop = () => {
    if (bench.t0 !== null && bench.complete === null && bench.check()) {
      bench.complete = performance.now();
      requestAnimationFrame((t) => {
        bench.painted = t;
      });
      return;
    }
    requestAnimationFrame(loop);
  };
  requestAnimationFrame(loop);
}

function startFrames() {
  const frames = { deltas: [], last: null, on: true };
  window.__bench.frames = frames;
  const tick = (t) => {
    if (!frames.on) return;
    if (frames.last !== null) frames.deltas.push(t - frames.last);
    frames.last = t;
    requestAnimationFrame(tick);
  };
  requestAnimationFrame(tick);
}

function stopFrames() {
  const frames = window.__bench.frames;
  frames.on = false;
  return frames.deltas;
}

/** Mouse sweeps, a drag-zoom and wheel turns over every view; returns the frame deltas. */
async function interact(page, config) {
  const moves = config.moves;
  const sweep = async (box, count) => {
    const y = box.y + box.height / 2;
    for (let i = 0; i < count; i++) {
      const f = 0.05 + (0.9 * i) / Math.max(count - 1, 1);
      await page.mouse.move(box.x + box.width * f, y);
    }
  };
  const boxOf = async (selector) => {
    const locator = page.locator(selector).first();
    await locator.scrollIntoViewIfNeeded();
    const box = await locator.boundingBox();
    if (box === null) throw new DriverError(`${selector} has no size`);
    return box;
  };
  // Idle cadence first: what the display's refresh alone gives.
  await page.evaluate(startFrames);
  await page.waitForTimeout(1000);
  const idle = await page.evaluate(stopFrames);

  await page.evaluate(startFrames);
  const started = Date.now();
  const plot = await boxOf(`${ROOTS.model_info} rect.fs-overlay`);
  await sweep(plot, moves);
  // Drag out a zoom over the middle fifth of ModelInfo: every view follows (and asks the
  // kernel for its window).
  const y = plot.y + plot.height / 2;
  await page.mouse.move(plot.x + plot.width * 0.4, y);
  await page.mouse.down();
  for (let i = 1; i <= 10; i++) await page.mouse.move(plot.x + plot.width * (0.4 + 0.02 * i), y);
  await page.mouse.up();
  await sweep(plot, moves);
  for (const selector of [
    `${ROOTS.layer} canvas.fs-node-chart`,
    `${ROOTS.validation} canvas`,
    `${ROOTS.cube} canvas[data-face="front"]`,
  ]) {
    const box = await boxOf(selector);
    await sweep(box, moves);
    for (let i = 0; i < 10; i++) await page.mouse.wheel(0, i < 5 ? 60 : -60);
  }
  const cube = await boxOf(`${ROOTS.cube} canvas[data-face]`);
  await page.mouse.move(cube.x + cube.width / 2, cube.y + cube.height / 2);
  await page.keyboard.down("Shift");
  for (let i = 0; i < 6; i++) await page.mouse.wheel(0, -60);
  await page.keyboard.up("Shift");
  const deltas = await page.evaluate(stopFrames);
  await page.mouse.move(0, 0);
  return { idle, deltas, seconds: (Date.now() - started) / 1000 };
}

async function allIdle(page, what, ms) {
  await waitInPage(
    page,
    what,
    ms,
    (roots) =>
      Object.values(roots).every((s) =>
        ["", "0", undefined].includes(document.querySelector(s)?.dataset.pending),
      ),
    ROOTS,
  );
}

/**
 * Request intervals from the pending marks, per view: `ms` from the mark that set it busy to
 * the one that cleared it (a burst: a zoom that goes on while answers are on their way keeps
 * a view busy until the last one), `newest_ms` from the burst's last busy mark (its newest
 * request) to the clear, and `marks`, the busy marks of the burst.
 */
function intervals(marks) {
  const out = [];
  const open = {};
  for (const { view, value, t } of marks) {
    const busy = !["", "0"].includes(value);
    if (busy && open[view] === undefined) open[view] = { first: t, last: t, marks: 1 };
    else if (busy) {
      open[view].last = t;
      open[view].marks += 1;
    } else if (open[view] !== undefined) {
      const burst = open[view];
      out.push({ view, ms: t - burst.first, newest_ms: t - burst.last, marks: burst.marks });
      delete open[view];
    }
  }
  return out;
}

async function bench(page, config, received) {
  await openNotebook(page, { ...config, scenario: "bench-views" });
  const setup = await runCellAt(page, 0, "READY=", config.timeout_ms);

  await page.evaluate(installProbes, ROOTS);
  const bytesBefore = received.bytes;
  const framesBefore = received.frames;
  await page.evaluate(() => {
    const notebook = window.jupyterapp.shell.currentWidget.content;
    notebook.activeCellIndex = 1;
    window.__bench.t0 = performance.now();
    window.jupyterapp.commands.execute("notebook:run-cell").catch((error) => {
      window.__filterscopeCommandErrors = [
        ...(window.__filterscopeCommandErrors ?? []),
        `run-cell: ${error}`,
      ];
    });
  });
  const paint = await waitInPage(
    page,
    "the dashboard's first complete paint",
    config.timeout_ms,
    () => {
      const b = window.__bench;
      return b.painted === null ? false : { t0: b.t0, complete: b.complete, painted: b.painted };
    },
  );
  const paintBytes = received.bytes - bytesBefore;
  const paintFrames = received.frames - framesBefore;
  const firstPaintMarks = (await page.evaluate(() => window.__bench.pending.length)) ?? 0;

  const frames = await interact(page, config);
  await allIdle(page, "the views' zoom requests to be answered", config.timeout_ms);

  const stats = jsonAfter(await runCellAt(page, 2, "STATS=", config.timeout_ms), "STATS=");
  const detail = jsonAfter(await runCellAt(page, 3, "DETAIL=", config.timeout_ms), "DETAIL=");
  const block = page.locator(`${ROOTS.layer} .fs-filters[data-layer="${detail.layer}"]`).first();
  await within(config.timeout_ms, "the layer's filter block", block.waitFor({ timeout: 60_000 }));
  await block.scrollIntoViewIfNeeded();
  await waitInPage(
    page,
    `the ${detail.layer} filters and the class ${detail.class_} rows`,
    config.timeout_ms,
    (layer) =>
      (document.querySelector(".filterscope-layer")?.dataset.loaded ?? "")
        .split(",")
        .includes(layer) &&
      Number(document.querySelector(".filterscope-validation")?.dataset.answered ?? 0) >= 1,
    detail.layer,
  );
  await allIdle(page, "every request to be answered", config.timeout_ms);
  const marks = await page.evaluate(() => window.__bench.pending);
  const requests = intervals(marks.slice(firstPaintMarks));
  const rows = await page
    .locator(`${ROOTS.layer} .fs-filters[data-layer="${detail.layer}"]`)
    .first()
    .evaluate((n) => Number(n.querySelector("canvas")?.height ?? 0));
  return {
    setup: jsonAfter(setup, "READY="),
    paint_ms: paint.painted - paint.t0,
    complete_ms: paint.complete - paint.t0,
    paint_ws_bytes: paintBytes,
    paint_ws_frames: paintFrames,
    idle_frames_ms: frames.idle,
    frames_ms: frames.deltas,
    interaction_s: frames.seconds,
    page_requests: requests,
    layer_block_canvas_height: rows,
    stats,
    detail,
  };
}

async function main() {
  const config = { timeout_ms: 120_000, moves: 60, ...JSON.parse(process.argv[2] ?? "{}") };
  const executablePath = process.env.CHROMIUM || "/usr/bin/chromium";
  if (!existsSync(executablePath)) throw new DriverError(`no browser at ${executablePath}`);
  const { chromium } = require("playwright-core");
  const browser = await within(
    30_000,
    "launching Chromium",
    chromium.launch({ executablePath, headless: true, args: CHROMIUM_ARGS }),
  );
  const problems = [];
  try {
    const page = await browser.newPage({ viewport: { width: 1280, height: 1100 } });
    page.on("console", (m) => {
      if (m.type() === "error") problems.push(`console: ${m.text()}`);
    });
    page.on("pageerror", (e) => problems.push(`page error: ${e.message}`));
    const received = { bytes: 0, frames: 0 };
    page.on("websocket", (ws) => {
      if (!ws.url().includes("/api/kernels/")) return;
      ws.on("framereceived", ({ payload }) => {
        received.bytes += typeof payload === "string" ? Buffer.byteLength(payload) : payload.length;
        received.frames += 1;
      });
    });
    const result = await bench(page, config, received);
    const errors = await page.evaluate(() => window.__filterscopeCommandErrors ?? []);
    problems.push(...errors.map((e) => `command: ${e}`));
    if (problems.length > 0)
      throw new DriverError(`the page reported errors:\n${problems.join("\n")}`);
    return { ok: true, chromium: browser.version(), ...result };
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
    process.stdout.write(`${JSON.stringify({ ok: false, error: message })}\n`);
    process.exit(1);
  },
);
