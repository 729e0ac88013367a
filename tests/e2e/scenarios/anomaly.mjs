// AnomalyTable scenarios for tests/e2e/driver.mjs.

import {
  DriverError,
  runCell,
  screenshot,
  screenshotInDarkTheme,
  waitForOutput,
  waitForView,
  waitInPage,
} from "../lib.mjs";

const ROOT = ".filterscope-anomaly";

/** Wait until the view has no request pending and `key` of its dataset equals `want`. */
function settled(page, what, key, want, ms = 30_000) {
  return waitInPage(
    page,
    what,
    ms,
    ([selector, k, w]) => {
      const node = document.querySelector(selector);
      return node?.dataset.pending === "0" && node.dataset[k] === w ? node.dataset[k] : false;
    },
    [ROOT, key, want],
  );
}

async function rowTexts(root, column) {
  return root
    .locator(`tr.fs-arow td[data-col="${column}"]`)
    .evaluateAll((cells) => cells.map((c) => c.textContent));
}

export default {
  /**
   * AnomalyTable: the first page of rows renders; clicking the top row draws its scatter;
   * hovering its first outlier shows the sample's id and thumbnail, and a click selects it
   * (the notebook's last cell prints `STATE=<json>` with the widget's and selection's picks);
   * the sample view lists the isolated samples; a header click sorts by layer and "next"
   * pages; screenshots in the light and dark themes.
   */
  async anomaly(page, config) {
    const root = await waitForView(page, ROOT, "the AnomalyTable widget", 120_000);
    await waitForOutput(page, 'STATE={"filter":null', 30_000);
    await waitInPage(
      page,
      "the first page of rows and samples",
      30_000,
      (selector) => {
        const node = document.querySelector(selector);
        return (
          Number(node?.dataset.rowsShown ?? 0) > 0 &&
          Number(node.dataset.samplesShown ?? 0) > 0 &&
          node.dataset.pending === "0"
        );
      },
      ROOT,
    );
    await root.scrollIntoViewIfNeeded();
    const firstPage = {
      rows: Number(await root.evaluate((n) => n.dataset.rowsShown)),
      total: Number(await root.evaluate((n) => n.dataset.total)),
      filters: await root
        .locator("tr.fs-arow")
        .evaluateAll((rows) => rows.map((r) => Number(r.dataset.filter))),
      label: await root.locator(".fs-apage").textContent(),
    };

    // Select the top-ranked filter: its scatter is drawn from the kernel's answer.
    const top = firstPage.filters[0];
    await root.locator("tr.fs-arow").first().click();
    await settled(page, "the selected filter's scatter", "scatterDrawn", String(top));
    const scatter = await root.evaluate((n) => ({
      filter: Number(n.dataset.scatterFilter),
      points: Number(n.dataset.scatterPoints),
      outliers: Number(n.dataset.scatterOutliers),
      at: n.dataset.outlierAt,
    }));
    const strip = await root.locator(".fs-astrip-item").count();

    // Hover the first outlier: the tooltip names the sample and shows its thumbnail.
    if (!scatter.at) throw new DriverError("the top filter has no outlier to point at");
    const [x, y] = scatter.at.split(",").map(Number);
    const canvas = root.locator("canvas.fs-ascatter");
    const box = await canvas.boundingBox();
    if (box === null) throw new DriverError("the scatter canvas has no size");
    await page.mouse.move(box.x + x, box.y + y);
    const tooltip = root.locator(".fs-atooltip");
    await tooltip.waitFor({ state: "visible", timeout: 10_000 });
    await waitInPage(
      page,
      "the hovered sample's thumbnail",
      20_000,
      (selector) => {
        const img = document.querySelector(selector);
        return img?.complete && img.naturalWidth > 0;
      },
      `${ROOT} img.fs-atooltip-img`,
    );
    const hovered = Number(await tooltip.evaluate((n) => n.dataset.sample));
    const tooltipText = await tooltip.locator(".fs-atooltip-text").textContent();
    const hoverShot = await screenshot(root, config.artifacts, "anomaly.png");

    // Click it: the widget's sample, and through it the shared selection, in Python.
    await page.mouse.click(box.x + x, box.y + y);
    await settled(page, "the clicked sample to be selected", "sample", String(hovered));
    await runCell(page, -1);
    const printed = await waitForOutput(page, `STATE={"filter":${top},"sample":${hovered}`, 20_000);
    const kernel = JSON.parse(printed.slice(printed.indexOf("STATE=") + 6).split("\n")[0]);

    // The sample view: every isolated sample (first page), thumbnails loaded.
    const sampleIds = await root
      .locator("tr.fs-asample")
      .evaluateAll((rows) => rows.map((r) => Number(r.children[1].textContent)));
    const samplesTotal = Number(await root.evaluate((n) => n.dataset.samplesTotal));
    const selectedSampleRows = await root.locator("tr.fs-asample.fs-aselected").count();

    // Sort by layer (ascending on the first click), then page forward.
    await root.locator('th[data-col="layer"]').click();
    await settled(page, "rows sorted by layer", "sort", "layer:asc");
    await settled(page, "the sorted first page", "offset", "0");
    const sortedLayers = await rowTexts(root, "layer");
    await root.locator("button.fs-anext").click();
    await settled(page, "the second page", "offset", String(firstPage.rows));
    const secondPage = {
      rows: Number(await root.evaluate((n) => n.dataset.rowsShown)),
      layers: await rowTexts(root, "layer"),
      label: await root.locator(".fs-apage").textContent(),
    };
    const light = await screenshot(root, config.artifacts, "anomaly-sorted.png");
    const dark = await screenshotInDarkTheme(page, root, config.artifacts, "anomaly-dark.png");
    const errors = Number(await root.evaluate((n) => n.dataset.errors));
    return {
      first_page: firstPage,
      scatter,
      strip,
      hovered,
      tooltip: tooltipText,
      kernel,
      sample_ids: sampleIds,
      samples_total: samplesTotal,
      selected_sample_rows: selectedSampleRows,
      sorted_layers: sortedLayers,
      second_page: secondPage,
      errors,
      screenshots: [hoverShot, light, dark],
    };
  },

  /**
   * Benchmark (benchmarks/bench_anomaly_table.py): the time from running the cell that shows
   * the table to its first page painted, and from a row click to its scatter drawn, for
   * `config.clicks` rows; the cell's kernel time is printed by the notebook.
   */
  async anomaly_bench(page, config) {
    // "Run all" set the data up and armed cells 1 and 2; now show the table, timed in the page.
    await waitForOutput(page, "ARMED=2", config.timeout_ms ?? 120_000);
    const started = await page.evaluate(() => performance.now());
    await runCell(page, 1);
    const paintedAt = await waitInPage(
      page,
      "the AnomalyTable's first page",
      config.timeout_ms ?? 120_000,
      ([selector, after]) => {
        const nodes = document.querySelectorAll(selector);
        const node = nodes[nodes.length - 1];
        const at = Number(node?.dataset.paintedAt ?? 0);
        return at > after ? at : false;
      },
      [ROOT, started],
    );
    const root = page.locator(ROOT).last();
    await root.scrollIntoViewIfNeeded();
    const points = [];
    const times = [];
    const draws = [];
    const rows = await root.locator("tr.fs-arow").count();
    for (let i = 0; i < Math.min(config.clicks, rows); i++) {
      const row = root.locator("tr.fs-arow").nth(i);
      const filter = await row.evaluate((r) => r.dataset.filter);
      await row.click();
      await waitInPage(
        page,
        `the scatter of filter ${filter}`,
        30_000,
        ([selector, f]) => {
          const nodes = document.querySelectorAll(selector);
          return nodes[nodes.length - 1]?.dataset.scatterDrawn === f;
        },
        [ROOT, filter],
      );
      const drawn = await root.evaluate((n) => ({
        ms: Number(n.dataset.scatterMs),
        draw: Number(n.dataset.drawMs),
        points: Number(n.dataset.scatterPoints),
      }));
      times.push(drawn.ms);
      draws.push(drawn.draw);
      points.push(drawn.points);
    }
    const shot = await screenshot(root, config.artifacts, "bench-anomaly.png");
    await runCell(page, 2);
    const printed = await waitForOutput(page, "STATS=", config.timeout_ms ?? 120_000);
    const stats = JSON.parse(printed.slice(printed.indexOf("STATS=") + 6).split("\n")[0]);
    return {
      stats,
      first_paint_ms: paintedAt - started,
      select_ms: times,
      draw_ms: draws,
      points,
      total: Number(await root.evaluate((n) => n.dataset.total)),
      screenshots: [shot],
    };
  },
};
