"""ModelInfo in a real JupyterLab, in headless Chromium: it renders, hovers, and a click reaches
the kernel."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from tiny_run import record_tiny_run

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.xdist_group("jupyterlab")]

CLICK_FRACTION = 0.6

NOTEBOOK = [
    'import json\nimport filterscope as fs\n\nlog = fs.open_log("model_info_run")',
    "w = fs.ModelInfo(log)\nw",
    'print("PICKED=" + json.dumps(w.picked_steps, separators=(",", ":")))',
]


def test_model_info_renders_and_a_click_reaches_the_kernel(jupyter_lab):
    log = record_tiny_run(jupyter_lab.root / "model_info_run")
    jupyter_lab.write_notebook("model_info.ipynb", NOTEBOOK)

    result = jupyter_lab.drive("model_info", "model_info.ipynb", click_fraction=CLICK_FRACTION)

    assert result["charts"] == ["loss", "error", "lr"]
    assert result["hover_lines"] == 3, "hovering one chart must draw the line on all three"
    # The click lands at 60 % of the plot width over the whole run; it must pick the snapshot
    # step nearest that position, the browser must list it, and the kernel must have it.
    snapshots = log.snapshot_step.values
    first, last = 0, max(int(log.step[-1]), int(snapshots[-1]))
    clicked = first + CLICK_FRACTION * (last - first)
    expected = int(snapshots[np.argmin(np.abs(snapshots - clicked))])
    assert result["picked_dom"] == [expected]
    assert result["picked_kernel"] == [expected]
    assert result["pick_markers"] == 3, "the pick must be marked on every chart"
    for shot in result["screenshots"]:
        assert Path(shot).stat().st_size > 10_000
