// LayerView scenarios for tests/e2e/driver.mjs (see README.md here).

import {
  DriverError,
  screenshot,
  screenshotInDarkTheme,
  waitForOutput,
  waitForView,
  waitInPage,
  within,
} from "../lib.mjs";

/** Run `code` in the notebook's kernel; resolves with what it printed on stdout. */
async function kernelRun(page, code) {
  return within(
    30_000,
    `the kernel to run ${JSON.stringify(code.slice(0, 60))}`,
    page.evaluate(async (source) => {
      const kernel = window.jupyterapp.shell.currentWidget.sessionContext.session.kernel;
      const future = kernel.requestExecute({ code: source, store_history: false });
      let out = "";
      let error = null;
      future.onIOPub = (msg) => {
        if (msg.header.msg_type === "stream") out += msg.content.text;
        if (msg.header.msg_type === "error") error = `${msg.content.ename}: ${msg.content.evalue}`;
      };
      await future.done;
      if (error !== null) throw new Error(error);
      return out;
    }, code),
  );
}

/** Non-transparent pixels of the canvases matching `selector` inside `root`. */
function paintedPixels(root, selector) {
  return root.evaluate((node, sel) => {
    let painted = 0;
    for (const canvas of node.querySelectorAll(sel)) {
      if (canvas.width === 0 || canvas.height === 0) continue;
      const data = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
      for (let i = 3; i < data.length; i += 4) if (data[i] > 0) painted += 1;
    }
    return painted;
  }, selector);
}

const rowNames = (root) =>
  root.locator(".fs-node-row").evaluateAll((nodes) => nodes.map((n) => n.dataset.node));

export default {
  /**
   * LayerView beside ModelInfo on one selection: the tree renders real data; clicking a stage
   * and then a layer expands them, requests the layer's filters and draws them, and sets
   * `layer` in Python; picks set in Python list the lowest-cosine filters in the page; hovering
   * ModelInfo draws the hover line in LayerView; light and dark screenshots.
   */
  async layer(page, config) {
    const root = await waitForView(page, ".filterscope-layer", "the LayerView widget", 90_000);
    await waitForOutput(page, "READY", 30_000);
    await root.scrollIntoViewIfNeeded();
    const initialRows = await rowNames(root);
    const extents = await root
      .locator(".fs-node-row")
      .evaluateAll((nodes) => nodes.map((n) => n.dataset.extent ?? ""));
    const nodePixels = await paintedPixels(root, "canvas.fs-node-chart");
    const initial = await screenshot(root, config.artifacts, "layer.png");

    // Expand the stage, then the layer: a filters request, a pixel chart, a selection.
    await root.locator(`.fs-node-row[data-node="${config.stage}"] .fs-node-label`).click();
    const layerLabel = root.locator(`.fs-node-row[data-node="${config.layer}"] .fs-node-label`);
    await layerLabel.waitFor({ timeout: 10_000 });
    await layerLabel.click();
    await waitInPage(
      page,
      `the filters of ${config.layer} to arrive`,
      30_000,
      (layer) =>
        (document.querySelector(".filterscope-layer")?.dataset.loaded ?? "")
          .split(",")
          .includes(layer),
      config.layer,
    );
    const block = root.locator(`.fs-filters[data-layer="${config.layer}"]`);
    const filterRows = Number(await block.getAttribute("data-rows"));
    const filterPixels = await paintedPixels(block, "canvas.fs-filter-chart");
    const selected = JSON.parse(
      (await kernelRun(page, "print(json.dumps([w.layer, sel.layer, w.expanded]))")).trim(),
    );

    // A change made in Python reaches the page: picks → lowest-cosine filters, chart kind.
    const changedKernel = JSON.parse(
      (
        await kernelRun(
          page,
          `sel.picked_steps = [${config.pick}]\nprint(json.dumps([f["filter"] for f in w.changed_filters]))`,
        )
      ).trim(),
    );
    await root.locator(".fs-changed-chip").first().waitFor({ timeout: 15_000 });
    const changedDom = await root
      .locator(".fs-changed-chip")
      .evaluateAll((nodes) => nodes.map((n) => Number(n.dataset.filter)));
    // Layers opened from Python load their filters once they scroll into view.
    const blocks = root.locator(".fs-filters");
    for (let i = 0; i < (await blocks.count()); i++) {
      const block = blocks.nth(i);
      await block.scrollIntoViewIfNeeded();
      await within(
        30_000,
        "an opened layer's filters to load once shown",
        block.locator("xpath=.").and(root.locator(".fs-filters[data-rows]")).waitFor(),
      );
    }
    await root.scrollIntoViewIfNeeded();
    const pickLines = await root.locator(".fs-pick-vline").count();
    const picked = await screenshot(root, config.artifacts, "layer-picked.png");

    await kernelRun(page, 'w.chart = "bands"');
    await waitInPage(
      page,
      "the bands chart",
      15_000,
      () => document.querySelector(".filterscope-layer")?.dataset.chart === "bands",
    );
    const bands = await screenshot(root, config.artifacts, "layer-bands.png");
    await kernelRun(page, 'w.chart = "box"');
    await waitInPage(
      page,
      "the box chart",
      15_000,
      () => document.querySelector(".filterscope-layer")?.dataset.chart === "box",
    );
    const boxShot = await screenshot(root, config.artifacts, "layer-box.png");
    await kernelRun(page, 'w.chart = "horizon"');
    await waitInPage(
      page,
      "the horizon chart again",
      15_000,
      () => document.querySelector(".filterscope-layer")?.dataset.chart === "horizon",
    );

    // Hovering ModelInfo moves LayerView's hover line (the shared time axis, in the page).
    const info = page.locator(".filterscope-modelinfo").first();
    await info.scrollIntoViewIfNeeded();
    const plot = info.locator("rect.fs-overlay").first();
    const box = await plot.boundingBox();
    if (box === null) throw new DriverError("ModelInfo's plot area has no size");
    await page.mouse.move(box.x + box.width * 0.5, box.y + box.height / 2);
    const hoverLines = await root.locator(".fs-hover-line").count();
    await page.mouse.move(0, 0);

    await root.scrollIntoViewIfNeeded();
    const dark = await screenshotInDarkTheme(page, root, config.artifacts, "layer-dark.png");
    return {
      initial_rows: initialRows,
      extents,
      node_pixels: nodePixels,
      filter_rows: filterRows,
      filter_pixels: filterPixels,
      selected,
      changed_kernel: changedKernel,
      changed_dom: changedDom,
      pick_lines: pickLines,
      hover_lines: hoverLines,
      screenshots: [initial, picked, bands, boxShot, dark],
    };
  },

  /**
   * LayerView on a ResNet-50-shaped log: the collapsed tree, a 2,048-filter layer opened by
   * clicks (one pixel row per filter at least, scrolled), then every node expanded from Python.
   */
  async layer_resnet50(page, config) {
    const root = await waitForView(page, ".filterscope-layer", "the LayerView widget", 90_000);
    await waitForOutput(page, "READY", 60_000);
    await root.scrollIntoViewIfNeeded();
    const initialRows = await rowNames(root);
    const startupBlocks = await page.evaluate(
      () => document.querySelectorAll(".fs-filters").length,
    );
    const initial = await screenshot(root, config.artifacts, "layer_resnet50.png");
    for (const name of config.path) {
      const label = root.locator(`.fs-node-row[data-node="${name}"] .fs-node-label`);
      await label.waitFor({ timeout: 10_000 });
      await label.click();
    }
    const layer = config.path[config.path.length - 1];
    await waitInPage(
      page,
      `the filters of ${layer} to arrive`,
      60_000,
      (name) =>
        (document.querySelector(".filterscope-layer")?.dataset.loaded ?? "")
          .split(",")
          .includes(name),
      layer,
    );
    const block = root.locator(`.fs-filters[data-layer="${layer}"]`);
    const geometry = await block.evaluate((node) => {
      const canvas = node.querySelector("canvas.fs-filter-chart");
      const scroll = node.querySelector(".fs-filters-scroll");
      return {
        rows: Number(node.dataset.rows),
        canvas_height: canvas.getBoundingClientRect().height,
        scroll_height: scroll.clientHeight,
      };
    });
    const filterPixels = await paintedPixels(block, "canvas.fs-filter-chart");
    const opened = await screenshot(root, config.artifacts, "layer_resnet50-filters.png");
    await kernelRun(page, 'w.expanded = [node["name"] for node in w.tree["nodes"]]');
    await waitInPage(
      page,
      "every node to show",
      20_000,
      (n) => document.querySelectorAll(".filterscope-layer .fs-node-row").length === n,
      config.n_nodes,
    );
    const allRows = await root.locator(".fs-node-row").count();
    const loadedAfterExpandAll = await root.locator(".fs-filters[data-rows]").count();
    const blocksAfterExpandAll = await root.locator(".fs-filters").count();
    const body = await root
      .locator(".fs-body")
      .evaluate((node) => ({ client: node.clientHeight, scroll: node.scrollHeight }));
    const expanded = await screenshot(root, config.artifacts, "layer_resnet50-expanded.png");
    return {
      initial_rows: initialRows,
      filter_blocks_at_start: startupBlocks,
      geometry,
      filter_pixels: filterPixels,
      all_rows: allRows,
      loaded_after_expand_all: loadedAfterExpandAll,
      blocks_after_expand_all: blocksAfterExpandAll,
      body,
      screenshots: [initial, opened, expanded],
    };
  },
};
