"""ModelInfo and the dashboard in Notebook 7 (``/notebooks/``), in headless Chromium.

The same scenarios as in JupyterLab 4 (``model_info``, and ``dashboard`` inside
``notebook7_dashboard``, which also reports the front end's name and version and screenshots the
whole page) on a Notebook 7 server started like the JupyterLab one; the screenshots go to
``test-artifacts/e2e/notebook7/``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from test_dashboard_e2e import assert_one_time_axis
from tiny_run import record_tiny_run

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.xdist_group("jupyterlab")]

SHOTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "e2e" / "notebook7"
CLICK_FRACTION = 0.6
# Notebook 7.6.5's keyboard-shortcut plugin raises this on every page load, before any cell runs
# (a plain `jupyter notebook` server opening an empty notebook shows it too): its settings
# listener reads the schema of a plugin the registry did not load. Only this exact message is
# tolerated; every other page or console error still fails the test.
NOTEBOOK7_LOAD_ERRORS = ["Cannot read properties of undefined (reading 'schema')"]


def test_model_info_in_notebook7(jupyter_notebook7):
    log = record_tiny_run(jupyter_notebook7.root / "nb7_model_info_run")
    jupyter_notebook7.write_notebook(
        "nb7_model_info.ipynb",
        [
            'import json\nimport filterscope as fs\n\nlog = fs.open_log("nb7_model_info_run")',
            "w = fs.ModelInfo(log)\nw",
            'print("PICKED=" + json.dumps(w.picked_steps, separators=(",", ":")))',
        ],
    )

    result = jupyter_notebook7.drive(
        "model_info",
        "nb7_model_info.ipynb",
        click_fraction=CLICK_FRACTION,
        artifacts=str(SHOTS),
        known_page_errors=NOTEBOOK7_LOAD_ERRORS,
    )

    assert result["charts"] == ["loss", "error", "lr"]
    assert result["hover_lines"] == 3
    snapshots = log.snapshot_step.values
    first, last = 0, max(int(log.step[-1]), int(snapshots[-1]))
    clicked = first + CLICK_FRACTION * (last - first)
    expected = int(snapshots[np.argmin(np.abs(snapshots - clicked))])
    assert result["picked_dom"] == [expected]
    assert result["picked_kernel"] == [expected]
    for shot in result["screenshots"]:
        assert Path(shot).parent == SHOTS
        assert Path(shot).stat().st_size > 10_000


def test_dashboard_in_notebook7(jupyter_notebook7):
    log = record_tiny_run(jupyter_notebook7.root / "nb7_board_run")
    jupyter_notebook7.write_notebook(
        "nb7_board.ipynb",
        [
            'import json\nimport filterscope as fs\n\nlog = fs.open_log("nb7_board_run")\n'
            "board = fs.dashboard(log)\nboard",
            "step = int(log.snapshot_step.values[3])\nboard.selection.picked_steps = [step]\n"
            'print("BOARD=" + json.dumps({k: v.picked_steps for k, v in board.views.items()}))',
        ],
    )
    step = int(log.snapshot_step.values[3])

    result = jupyter_notebook7.drive(
        "notebook7_dashboard",
        "nb7_board.ipynb",
        timeout=240,
        artifacts=str(SHOTS),
        known_page_errors=NOTEBOOK7_LOAD_ERRORS,
    )

    assert result["app"]["name"] == "Jupyter Notebook", result["app"]
    assert result["app"]["version"].startswith("7."), result["app"]
    views = ["model_info", "layer", "validation", "cube"]
    assert result["hover_before"] == dict.fromkeys(views, 0)
    assert all(result["hover_during"][name] >= 1 for name in views), result["hover_during"]
    assert_one_time_axis(result["axes"], views)
    picks = json.loads(result["output"].split("BOARD=", 1)[1].splitlines()[0])
    assert picks == {name: [step] for name in views}
    for shot in result["screenshots"]:
        assert Path(shot).stat().st_size > 5_000
