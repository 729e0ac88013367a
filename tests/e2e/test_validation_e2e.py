"""ValidationView in a real JupyterLab, in headless Chromium: it renders a recorded run, a class
click expands the class through a request and reaches the kernel, an image click shows its
thumbnail, and a class set in Python updates the page."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from tiny_run import record_tiny_run

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.xdist_group("jupyterlab")]

CLICK_LABEL = 3
PYTHON_LABEL = 7

NOTEBOOK = [
    'import json\nimport filterscope as fs\n\nlog = fs.open_log("validation_run")',
    "w = fs.ValidationView(log, j=2, threshold=3)\nw",
    'print("STATE=" + json.dumps({"class_": w.class_, "sample_index": w.sample_index}, '
    'separators=(",", ":")))',
    # A no-op when "run all" runs it; the scenario runs it again to change the class in Python.
    "try:\n    _runs += 1\nexcept NameError:\n    _runs = 0\n"
    f'if _runs:\n    w.class_ = {PYTHON_LABEL}\n    print("SET={PYTHON_LABEL}")',
]


def test_validation_view_renders_expands_and_links(jupyter_lab):
    log = record_tiny_run(jupyter_lab.root / "validation_run")
    jupyter_lab.write_notebook("validation.ipynb", NOTEBOOK)

    result = jupyter_lab.drive(
        "validation",
        "validation.ipynb",
        timeout=240,
        click_label=CLICK_LABEL,
        python_label=PYTHON_LABEL,
    )

    # Real data: one labelled heat line per class of the log, under the 4 class clusters.
    assert sorted(result["class_labels"]) == sorted(str(c) for c in log["class"].values)
    assert result["clusters"] == 4
    assert result["triangles"] > 0, "the tiny run flags classes at j=2, threshold=3"
    # The click asked the kernel for the class's images, one row per image.
    members = int((log.label.values == CLICK_LABEL).sum())
    assert result["answered_after_click"] >= 1
    assert result["image_rows"] == members
    assert result["expanded"] == [str(CLICK_LABEL)]
    # ... and set the selection in Python, as did the image click.
    assert result["kernel"]["class_"] == CLICK_LABEL
    assert result["kernel"]["sample_index"] == result["thumbnail_sample"]
    assert int(log.label.values[result["thumbnail_sample"]]) == CLICK_LABEL
    assert result["thumbnail_size"] == [128, 128]  # 8 × 8 shown at 16× with crisp pixels
    # A class set in Python expanded and selected it in the page.
    assert result["selected_after_python"] == str(PYTHON_LABEL)
    assert str(PYTHON_LABEL) in result["expanded_after_python"]
    for shot in result["screenshots"]:
        assert Path(shot).stat().st_size > 10_000
    assert np.isfinite(result["seconds"]["total"])


LINKED = [
    "import json\nimport ipywidgets\nimport filterscope as fs\n\n"
    'log = fs.open_log("validation_linked_run")\nsel = fs.views.Selection()',
    "m = fs.ModelInfo(log, selection=sel)\n"
    "v = fs.ValidationView(log, selection=sel, j=2, threshold=3, max_points=8)\n"
    "ipywidgets.VBox([m, v])",
    'print("WINDOW=" + json.dumps(sel.time_window, separators=(",", ":")))',
]


def test_validation_view_shares_hover_and_zoom_with_model_info(jupyter_lab):
    record_tiny_run(jupyter_lab.root / "validation_linked_run")
    jupyter_lab.write_notebook("validation_linked.ipynb", LINKED)

    result = jupyter_lab.drive(
        "validation_linked", "validation_linked.ipynb", timeout=240, zoom_fractions=[0.3, 0.5]
    )

    assert result["model_info_hover_lines"] == 3, "hovering the validation view moves ModelInfo's"
    # 17 snapshots in 8 columns: buckets of 4; a fifth of the run comes back raw.
    assert result["level_before"] == 2 and result["level_after"] == 0
    assert result["model_info_zoomed"], "dragging on the validation view zooms ModelInfo too"
    start, stop = (int(v) for v in result["detail"].split("-"))
    assert result["window"] == [start, stop]
    for shot in result["screenshots"]:
        assert Path(shot).stat().st_size > 10_000
