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
    # Kept beside the screenshots, to see where each view's time axis was.
    axes_file = Path(result["screenshots"][0]).parent / "dashboard-axes.json"
    axes_file.write_text(json.dumps(result["axes"], indent=1))
    assert_one_time_axis(result["axes"], views)
    picks = json.loads(result["output"].split("BOARD=", 1)[1].splitlines()[0])
    assert picks == {name: [step] for name in views}
    for shot in result["screenshots"]:
        assert Path(shot).stat().st_size > 5_000


def assert_one_time_axis(axes: dict, views: list[str]) -> None:
    """Every view's time axis is at the same page x: same plot-area edges, one hover line.

    ``axes[name]`` holds the page-pixel ``[left, right]`` of each plot area of the view (one per
    chart, tree row, canvas or cube face on the iteration axis) and the x of each visible hover
    line, measured while hovering ModelInfo.
    """
    # The views' roots span the same width: the contract (TIME_AXIS_LAYOUT) then puts the plot
    # areas at the same x, whatever that width is.
    roots = {name: axes[name]["root"] for name in views}
    first = roots[views[0]]
    assert all(abs(r[0] - first[0]) <= 1 and abs(r[1] - first[1]) <= 1 for r in roots.values()), (
        roots
    )
    plots = {name: axes[name]["plots"] for name in views}
    assert all(plots[name] for name in views), plots
    left, right = plots["model_info"][0]
    for name, rects in plots.items():
        for a, b in rects:
            assert abs(a - left) <= 1 and abs(b - right) <= 1, (name, (a, b), (left, right), plots)
    hovers = {name: axes[name]["hover"] for name in views}
    assert all(hovers[name] for name in views), hovers
    x = hovers["model_info"][0]
    assert left <= x <= right, (x, left, right)
    for name, xs in hovers.items():
        for h in xs:
            assert abs(h - x) <= 1, (name, h, x, hovers)
