// Helpers shared by the browser driver and its scenario modules (tests/e2e/scenarios/*.mjs):
// timeouts, JupyterLab commands, cells, outputs, screenshots and themes.

import { join } from "node:path";

// Chromium floods a closed network with refused connections unless background traffic is off.
export const CHROMIUM_ARGS = [
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];

export class DriverError extends Error {}

/** Resolve `promise` or fail with `what` after `ms` milliseconds. */
export function within(ms, what, promise) {
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
export async function waitInPage(page, what, ms, fn, arg) {
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

export async function openNotebook(page, config) {
  const workspace = `e2e-${config.scenario}-${Date.now()}`;
  // Notebook 7 (config.ui "notebook") opens one notebook per page at /notebooks/<path>.
  const url =
    config.ui === "notebook"
      ? new URL(`notebooks/${config.notebook}`, config.url)
      : new URL(`lab/workspaces/${workspace}/tree/${config.notebook}`, config.url);
  if (config.ui !== "notebook") url.searchParams.set("reset", "");
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
export async function startCommand(page, command, args = {}) {
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
export async function runAllCells(page) {
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
export async function runCell(page, index) {
  await page.evaluate((i) => {
    const notebook = window.jupyterapp.shell.currentWidget.content;
    notebook.activeCellIndex = i < 0 ? notebook.widgets.length + i : i;
  }, index);
  await startCommand(page, "notebook:run-cell");
}

/** Wait for an output area to show `text`; returns the output's full text. */
/** The first element matching `selector`, once visible: a view's root after it rendered. */
export async function waitForView(page, selector, what, ms = 120_000) {
  const root = page.locator(selector).first();
  await within(ms, `${what} to render`, root.waitFor({ state: "visible", timeout: ms }));
  return root;
}

export async function waitForOutput(page, text, ms) {
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

export async function screenshot(target, artifacts, name) {
  const path = join(artifacts, name);
  await within(20_000, `screenshot ${name}`, target.screenshot({ path }));
  return path;
}

export async function setTheme(page, theme, light) {
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
export async function screenshotInDarkTheme(page, target, artifacts, name) {
  await setTheme(page, "JupyterLab Dark", false);
  const path = await screenshot(target, artifacts, name);
  await setTheme(page, "JupyterLab Light", true);
  return path;
}
