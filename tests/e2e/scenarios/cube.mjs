// CubeView scenarios for tests/e2e/driver.mjs (see README.md beside this file).

import {
  DriverError,
  runCell,
  screenshot,
  screenshotInDarkTheme,
  waitForOutput,
  waitForView,
  waitInPage,
} from "../lib.mjs";

const ROOT = ".filterscope-cube";

/** The cube's root dataset: the selection it shows and its time buckets. */
function shown(page) {
  return page.evaluate((selector) => {
    const node = document.querySelector(selector);
    return { ...(node?.dataset ?? {}) };
  }, ROOT);
}

export default {
  /**
   * CubeView: the three faces render; a click on the correlation cell (config.cell = [layer row,
   * class column]) sets layer, class and picks, which the kernel prints (the notebook's third
   * cell prints `CUBE=<json of layer, class, picks>`); the fourth cell sets the class and layer
   * from Python, which the page must show (config.python = {layer, class}).
   */
  async cube(page, config) {
    const root = await waitForView(page, ROOT, "the CubeView widget", 90_000);
    await waitForOutput(page, 'CUBE={"layer":null', 30_000);
    const right = root.locator('canvas[data-face="right"]');
    await right.waitFor({ timeout: 10_000 });
    await root.scrollIntoViewIfNeeded();
    const faces = await root
      .locator("canvas.fs-face")
      .evaluateAll((nodes) =>
        nodes.map((n) => ({ face: n.dataset.face, width: n.width, height: n.height })),
      );
    const layerLabels = await root.locator(".fs-cube-layer-labels .fs-cube-label").count();
    const classLabels = await root.locator(".fs-cube-class-labels .fs-cube-label").count();
    const light = await screenshot(root, config.artifacts, "cube.png");

    const box = await right.boundingBox();
    if (box === null) throw new DriverError("the correlation face has no size");
    const [row, col] = config.cell;
    await page.mouse.click(box.x + col * 12 + 6, box.y + row * 12 + 6);
    await waitInPage(
      page,
      "the click to select a class",
      10_000,
      (selector) => {
        const node = document.querySelector(selector);
        return Boolean(node?.dataset.class);
      },
      ROOT,
    );
    const clicked = await shown(page);
    const readout = await root.locator(".fs-cube-selection").textContent();
    const picked = await screenshot(root, config.artifacts, "cube-picked.png");

    await runCell(page, 2);
    const printed = await waitForOutput(
      page,
      `CUBE=${JSON.stringify({ layer: clicked.layer })}`.slice(0, -1),
      20_000,
    );
    const kernel = JSON.parse(printed.slice(printed.indexOf("CUBE=") + 5).split("\n")[0]);

    await runCell(page, 3);
    await waitInPage(
      page,
      "the page to show the class and layer set in Python",
      20_000,
      ([selector, want]) => {
        const node = document.querySelector(selector);
        return node?.dataset.class === String(want.class) && node?.dataset.layer === want.layer;
      },
      [ROOT, config.python],
    );
    const fromPython = await shown(page);
    const selectedLabels = await root
      .locator(".fs-cube-label.fs-selected")
      .evaluateAll((nodes) => nodes.map((n) => n.textContent));

    // Wheel over the top face: its classes scroll, and the right face's columns with them.
    const top = root.locator('canvas[data-face="top"]');
    const topBox = await top.boundingBox();
    if (topBox === null) throw new DriverError("the top face has no size");
    const firstClass = () =>
      root.locator(".fs-cube-class-labels .fs-cube-label").first().textContent();
    const beforeScroll = { first_class: await firstClass() };
    await page.mouse.move(topBox.x + topBox.width / 2, topBox.y + topBox.height / 2);
    await page.mouse.wheel(0, 100);
    await waitInPage(
      page,
      "the classes to scroll",
      10_000,
      (selector) => {
        return document.querySelector(selector)?.dataset.classOffset === "3";
      },
      ROOT,
    );
    const scrolled = {
      first_class: await firstClass(),
      class_offset: (await shown(page)).classOffset,
    };

    // Shift+wheel over the front face zooms time: the kernel answers with the window.
    const buckets = Number((await shown(page)).buckets);
    const front = root.locator('canvas[data-face="front"]');
    const frontBox = await front.boundingBox();
    if (frontBox === null) throw new DriverError("the front face has no size");
    await page.mouse.move(frontBox.x + frontBox.width / 2, frontBox.y + frontBox.height / 2);
    await page.keyboard.down("Shift");
    await page.mouse.wheel(0, -100);
    await page.keyboard.up("Shift");
    await waitInPage(
      page,
      "the zoomed faces",
      20_000,
      ([selector, n]) => {
        const node = document.querySelector(selector);
        return node?.dataset.pending === "" && Number(node?.dataset.buckets) < n;
      },
      [ROOT, buckets],
    );
    const zoomedBuckets = Number((await shown(page)).buckets);
    const zoomed = await screenshot(root, config.artifacts, "cube-zoomed.png");
    await runCell(page, 4);
    const printedWindow = await waitForOutput(page, "WINDOW=[", 20_000);
    const window = JSON.parse(
      printedWindow.slice(printedWindow.indexOf("WINDOW=") + 7).split("\n")[0],
    );
    const dark = await screenshotInDarkTheme(page, root, config.artifacts, "cube-dark.png");
    return {
      faces,
      layer_labels: layerLabels,
      class_labels: classLabels,
      clicked: { layer: clicked.layer, class: clicked.class },
      readout,
      kernel,
      from_python: { layer: fromPython.layer, class: fromPython.class },
      selected_labels: selectedLabels,
      before_scroll: beforeScroll,
      scrolled,
      buckets,
      zoomed_buckets: zoomedBuckets,
      window,
      screenshots: [light, picked, zoomed, dark],
    };
  },
};
