// ValidationView scenarios for tests/e2e/driver.mjs.

import {
  DriverError,
  runCell,
  screenshot,
  screenshotInDarkTheme,
  waitForOutput,
  waitForView,
  waitInPage,
  within,
} from "../lib.mjs";

const ROOT = ".filterscope-validation";

export default {
  /**
   * ValidationView: class lines render; clicking a class name sends a `rows` request whose
   * answer adds one row per image and sets `class_` in Python; clicking an image row shows its
   * thumbnail and sets `sample_index`; a class set in Python expands it in the page. The
   * notebook's cell 2 prints `STATE=<json of class_ and sample_index>`, its last cell sets
   * `w.class_ = python_label` when run again.
   */
  async validation(page, config) {
    const root = await waitForView(page, ROOT, "the ValidationView widget", 120_000);
    await waitForOutput(page, 'STATE={"class_":null', 30_000);
    await root.locator(".fs-vlabel-class").first().waitFor({ timeout: 10_000 });
    await root.scrollIntoViewIfNeeded();
    const classLabels = await root
      .locator(".fs-vlabel-class")
      .evaluateAll((nodes) => nodes.map((n) => n.dataset.label));
    const clusters = await root.locator(".fs-vlabel-cluster").count();
    const triangles = Number(await root.evaluate((n) => n.dataset.triangles ?? "0"));
    const before = await screenshot(root, config.artifacts, "validation.png");

    // Hover the plot: the shared hover line appears.
    const canvas = root.locator("canvas.fs-vcanvas");
    const box = await canvas.boundingBox();
    if (box === null) throw new DriverError("the validation canvas has no size");
    await page.mouse.move(box.x + box.width * 0.4, box.y + 5);
    const hoverLines = await root.locator(".fs-vhover").count();

    // Click a class name: a request for its images, then its image rows.
    const label = root.locator(`.fs-vlabel-class[data-label="${config.click_label}"]`);
    await label.click();
    const answered = await waitInPage(
      page,
      "the class's image rows from the kernel",
      30_000,
      (selector) => {
        const node = document.querySelector(selector);
        return Number(node?.dataset.imageRows ?? 0) > 0 ? Number(node.dataset.answered) : false;
      },
      ROOT,
    );
    const imageRows = Number(await root.evaluate((n) => n.dataset.imageRows));
    const expanded = (await root.evaluate((n) => n.dataset.expanded)).split(",");

    // Click the first image row (just under the class line) in the middle of the plot.
    const labelBox = await label.boundingBox();
    const plotBox = await canvas.boundingBox();
    await page.mouse.click(plotBox.x + plotBox.width * 0.5, labelBox.y + labelBox.height + 2);
    const img = root.locator("img.fs-vthumb-img");
    await img.waitFor({ timeout: 20_000 });
    await waitInPage(
      page,
      "the thumbnail to load",
      10_000,
      (selector) => document.querySelector(selector)?.complete === true,
      `${ROOT} img.fs-vthumb-img`,
    );
    const thumbnailSample = Number(await img.evaluate((n) => n.dataset.sample));
    const thumbnailSize = await img.evaluate((n) => [n.naturalWidth * 16, n.width]);
    const expandedShot = await screenshot(root, config.artifacts, "validation-expanded.png");

    await runCell(page, 2);
    const printed = await waitForOutput(
      page,
      `STATE={"class_":${config.click_label},"sample_index":${thumbnailSample}}`,
      20_000,
    );
    const kernel = JSON.parse(printed.slice(printed.indexOf("STATE=") + 6).split("\n")[0]);

    // Python sets the class: the page expands and selects it.
    await runCell(page, -1);
    await waitForOutput(page, `SET=${config.python_label}`, 20_000);
    const selected = await waitInPage(
      page,
      "the class set in Python to show in the page",
      20_000,
      ([selector, want]) => {
        const node = document.querySelector(selector);
        return node?.dataset.selectedClass === want && node.dataset.pending === "0"
          ? node.dataset.selectedClass
          : false;
      },
      [ROOT, String(config.python_label)],
    );
    const expandedAfter = (await root.evaluate((n) => n.dataset.expanded)).split(",");
    const dark = await screenshotInDarkTheme(page, root, config.artifacts, "validation-dark.png");
    return {
      class_labels: classLabels,
      clusters,
      triangles,
      hover_lines: hoverLines,
      answered_after_click: answered,
      image_rows: imageRows,
      expanded,
      thumbnail_sample: thumbnailSample,
      thumbnail_size: thumbnailSize,
      kernel,
      selected_after_python: selected,
      expanded_after_python: expandedAfter,
      screenshots: [before, expandedShot, dark],
    };
  },
  /**
   * ValidationView beside ModelInfo on one Selection, with a bucketed overview (`max_points`):
   * hovering the validation canvas draws ModelInfo's hover line; dragging on it zooms both
   * (the link bus) and asks the kernel for the window's columns at the finer level; the last
   * cell prints `WINDOW=<json of the selection's time_window>`.
   */
  async validation_linked(page, config) {
    const root = page.locator(ROOT).first();
    const info = page.locator(".filterscope-modelinfo").first();
    await within(
      120_000,
      "both views to render",
      Promise.all([
        root.waitFor({ state: "visible", timeout: 120_000 }),
        info.waitFor({ state: "visible", timeout: 120_000 }),
      ]),
    );
    await waitForOutput(page, "WINDOW=null", 30_000);
    const levelBefore = Number(await root.evaluate((n) => n.dataset.level));
    const canvas = root.locator("canvas.fs-vcanvas");
    await root.scrollIntoViewIfNeeded();
    const box = await canvas.boundingBox();
    if (box === null) throw new DriverError("the validation canvas has no size");
    const y = box.y + 5;
    await page.mouse.move(box.x + box.width * 0.5, y);
    const infoHover = await info.locator("line.fs-hover").count();
    const [f0, f1] = config.zoom_fractions;
    await page.mouse.move(box.x + box.width * f0, y);
    await page.mouse.down();
    await page.mouse.move(box.x + box.width * ((f0 + f1) / 2), y, { steps: 4 });
    await page.mouse.move(box.x + box.width * f1, y, { steps: 4 });
    await page.mouse.up();
    const detail = await waitInPage(
      page,
      "the zoomed window's columns from the kernel",
      30_000,
      (selector) => {
        const d = document.querySelector(selector)?.dataset.detail ?? "";
        return /^\d+-\d+$/.test(d) ? d : false;
      },
      ROOT,
    );
    const levelAfter = Number(await root.evaluate((n) => n.dataset.level));
    const infoZoomed = await info.locator("button.fs-reset").isVisible();
    const both = page.locator(".widget-vbox").first();
    const shot = await screenshot(both, config.artifacts, "validation-linked.png");
    await runCell(page, -1);
    const printed = await waitForOutput(page, "WINDOW=[", 20_000);
    const window = JSON.parse(printed.slice(printed.indexOf("WINDOW=") + 7).split("\n")[0]);
    return {
      level_before: levelBefore,
      level_after: levelAfter,
      detail,
      model_info_hover_lines: infoHover,
      model_info_zoomed: infoZoomed,
      window,
      screenshots: [shot],
    };
  },
};
