"""CubeView in a real JupyterLab, in headless Chromium: three faces render from a synthetic log,
a click on a correlation cell reaches the kernel, and a change made in Python reaches the page."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from filterscope.data import synthetic_log
from filterscope.views.cube import CubeView

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.xdist_group("jupyterlab")]

# Cell 3 sets the class and layer from Python, but only when the test runs it again (its first
# run, in "run all", leaves the view as the page first shows it).
NOTEBOOK = [
    'import json\nimport filterscope as fs\n\nlog = fs.open_log("cube_run")\nruns = 0',
    "w = fs.CubeView(log, page_size=40)\nw",
    'print("CUBE=" + json.dumps({"layer": w.layer, "class": w.class_, "picks": w.picked_steps},'
    ' separators=(",", ":")))',
    "runs += 1\nif runs > 1:\n    w.class_ = {cls}\n    w.layer = {layer!r}",
    'print("WINDOW=" + json.dumps(w.time_window))',
]


def test_cube_renders_and_links_with_the_kernel(jupyter_lab):
    log = synthetic_log(
        jupyter_lab.root / "cube_run",
        n_samples=2000,
        n_classes=50,
        n_snapshots=120,
        layers="resnet18",
    )
    # What the kernel's view will send, to aim the click at the strongest correlation cell.
    view = CubeView(log, page_size=40)
    faces, layers = view.faces, view.meta["layers"]
    shown = faces["correlation"][: min(len(layers), 40), :20]
    row, col = (int(i) for i in np.unravel_index(np.argmax(shown), shown.shape))
    assert shown[row, col] > 0
    expected_class = faces["classes"][col]
    other_class = faces["classes"][(col + 1) % 20]
    other_layer = layers[(row + 1) % len(layers)]
    picks = view.flagged_steps(expected_class)[:32]
    view.close()
    cells = [*NOTEBOOK[:3], NOTEBOOK[3].format(cls=other_class, layer=other_layer), NOTEBOOK[4]]
    jupyter_lab.write_notebook("cube.ipynb", cells)

    result = jupyter_lab.drive(
        "cube",
        "cube.ipynb",
        cell=[row, col],
        python={"layer": other_layer, "class": other_class},
    )

    assert sorted(f["face"] for f in result["faces"]) == ["front", "right", "top"]
    assert all(f["width"] > 0 and f["height"] > 0 for f in result["faces"])
    assert result["layer_labels"] == min(len(layers), 40)
    assert result["class_labels"] >= 10
    assert result["clicked"] == {"layer": layers[row], "class": str(expected_class)}
    assert result["kernel"] == {"layer": layers[row], "class": expected_class, "picks": picks}
    assert f"{int(shown[row, col])} shared top filters" in result["readout"]
    assert result["from_python"] == {"layer": other_layer, "class": str(other_class)}
    assert len(result["selected_labels"]) == 2
    # Wheel over the top face scrolls the classes (top rows and right columns together).
    assert result["scrolled"]["first_class"] != result["before_scroll"]["first_class"]
    assert result["scrolled"]["class_offset"] == "3"
    # Shift+wheel over the front face zooms time: fewer buckets, and the kernel has the window.
    lo, hi = result["window"]
    steps = log.snapshot_step.values
    assert 0 <= lo < hi <= int(log.step[-1]) and hi - lo < steps[-1] - steps[0]
    assert result["zoomed_buckets"] < result["buckets"]
    for shot in result["screenshots"]:
        assert Path(shot).stat().st_size > 10_000
