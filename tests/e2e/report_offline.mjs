#!/usr/bin/env node
// Opens an HTML report (a local file) in headless Chromium with every network request blocked
// and recorded, waits for Bokeh to render, and prints one JSON object on stdout: the requests
// attempted, console errors and page errors, dialogs, and what rendered (canvases with their
// non-blank pixel counts, anomaly-table rows, thumbnails, an element injected by a name).
//
//   node tests/e2e/report_offline.mjs '{"report": "/tmp/r.html", "screenshot": "out.png"}'
//
// Exit status 0 when the page was measured, 1 on a driver error ("error" in the JSON). The
// assertions live in tests/e2e/test_report_offline.py. playwright-core comes from js/node_modules;
// the browser is Debian's chromium ($CHROMIUM or /usr/bin/chromium).

import { existsSync } from "node:fs";
import { createRequire } from "node:module";
import { pathToFileURL } from "node:url";
import { CHROMIUM_ARGS, within } from "./lib.mjs";

const require = createRequire(new URL("../../js/package.json", import.meta.url));

async function main(config) {
  const executablePath = process.env.CHROMIUM || "/usr/bin/chromium";
  if (!existsSync(executablePath)) throw new Error(`no browser at ${executablePath}`);
  const { chromium } = require("playwright-core");
  const browser = await within(
    30_000,
    "launching Chromium",
    chromium.launch({ executablePath, headless: true, args: CHROMIUM_ARGS }),
  );
  const result = { requests: [], console_errors: [], page_errors: [], dialogs: [] };
  try {
    const context = await browser.newContext({ viewport: { width: 1000, height: 900 } });
    const reportUrl = pathToFileURL(config.report).href;
    // Every request but the report itself is recorded and aborted: data: URLs (the inline
    // thumbnails) never reach the network and are not requests.
    await context.route("**/*", (route) => {
      const url = route.request().url();
      if (url === reportUrl) return route.continue();
      result.requests.push(url);
      return route.abort();
    });
    const page = await context.newPage();
    page.on("request", (request) => {
      const url = request.url();
      if (url !== reportUrl && !url.startsWith("data:") && !result.requests.includes(url))
        result.requests.push(url);
    });
    page.on("console", (message) => {
      if (message.type() === "error") result.console_errors.push(message.text());
    });
    page.on("pageerror", (error) => result.page_errors.push(String(error)));
    page.on("dialog", async (dialog) => {
      result.dialogs.push(dialog.message());
      await dialog.dismiss();
    });
    await within(30_000, `loading ${reportUrl}`, page.goto(reportUrl, { waitUntil: "load" }));
    // Bokeh renders after load, into shadow roots: wait until its views are idle.
    await page.waitForFunction(
      () => {
        const docs = window.Bokeh?.documents ?? [];
        if (docs.length === 0) return false;
        const index = window.Bokeh.index ?? {};
        const views = index instanceof Map ? [...index.values()] : Object.values(index);
        return views.length > 0 && views.every((v) => v.is_idle !== false);
      },
      undefined,
      { timeout: 60_000, polling: 250 },
    );
    await page.waitForTimeout(500);
    Object.assign(
      result,
      await page.evaluate(() => {
        const all = [];
        const walk = (root) => {
          for (const el of root.querySelectorAll("*")) {
            all.push(el);
            if (el.shadowRoot) walk(el.shadowRoot);
          }
        };
        walk(document);
        const canvases = all
          .filter((el) => el.tagName === "CANVAS" && el.width > 0 && el.height > 0)
          .map((canvas) => {
            const ctx = canvas.getContext("2d");
            const { data } = ctx.getImageData(0, 0, canvas.width, canvas.height);
            let inked = 0;
            for (let i = 0; i < data.length; i += 4) {
              const [r, g, b, a] = [data[i], data[i + 1], data[i + 2], data[i + 3]];
              if (a > 0 && !(r > 245 && g > 245 && b > 245)) inked++;
            }
            return { width: canvas.width, height: canvas.height, inked };
          });
        const texts = all
          .filter((el) => el.classList?.contains("slick-row"))
          .map((el) => el.textContent);
        const thumbs = all.filter(
          (el) => el.tagName === "IMG" && el.classList.contains("fs-thumb") && el.complete,
        );
        return {
          bokeh_version: window.Bokeh?.version ?? null,
          canvases,
          table_rows: texts.length,
          table_text: texts.join("\n"),
          thumbnails: thumbs.length,
          thumbnails_loaded: thumbs.filter((img) => img.naturalWidth > 0).length,
          isolated_rows: all.filter((el) => el.classList?.contains("fs-isolated-row")).length,
          injected_images: all.filter(
            (el) => el.tagName === "IMG" && el.getAttribute("src") === "x",
          ).length,
          page_text: all
            .filter((el) => el.tagName === "P" || el.tagName === "H2")
            .map((el) => el.textContent)
            .join("\n"),
        };
      }),
    );
    if (config.screenshot)
      await page.screenshot({ path: config.screenshot, fullPage: config.full_page ?? true });
  } finally {
    await browser.close();
  }
  return result;
}

const config = JSON.parse(process.argv[2] ?? "{}");
main(config).then(
  (result) => {
    process.stdout.write(`${JSON.stringify(result)}\n`);
  },
  (error) => {
    process.stdout.write(`${JSON.stringify({ error: String(error?.stack ?? error) })}\n`);
    process.exitCode = 1;
  },
);
