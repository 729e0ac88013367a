"""The dashboard in a real JupyterLab, in headless Chromium: four views in one output, hover
linked across all of them in the page, a pick made in Python reaching every view."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tiny_run import record_tiny_run

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.xdist_group("jupyterlab")]

NOTEBOOK = [
    'import json\nimport filterscope as fs\n\nlog = fs.open_log("board_run")\n'
    "board = fs.dashboard(log)\nboard",
    "step = int(log.snapshot_step.values[3])\nboard.selection.picked_steps = [step]\n"
    'print("BOARD=" + json.dumps({k: v.picked_steps for k, v in board.views.items()}))',
]


def test_dashboard_renders_every_view_and_links_hover_and_picks(jupyter_lab):
    log = record_tiny_run(jupyter_lab.root / "board_run")
    jupyter_lab.write_notebook("board.ipynb", NOTEBOOK)
    step = int(log.snapshot_step.values[3])

    result = jupyter_lab.drive("dashboard", "board.ipynb", timeout=240)

    views = ["model_info", "layer", "validation", "cube"]
    # Nothing hovered: no hover line anywhere. Hovering ModelInfo: one in every view.
    assert result["hover_before"] == dict.fromkeys(views, 0)
    during = result["hover_during"]
    assert all(during[name] >= 1 for name in views), during
    picks = json.loads(result["output"].split("BOARD=", 1)[1].splitlines()[0])
    assert picks == {name: [step] for name in views}
    for shot in result["screenshots"]:
        assert Path(shot).stat().st_size > 5_000
