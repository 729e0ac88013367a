"""ModelInfo on a 20,000-step run in a real JupyterLab: zooming asks the kernel for the window
and the chart then shows the log's raw values, not stretched buckets."""

from __future__ import annotations

from pathlib import Path

import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.xdist_group("jupyterlab")]

# A synthetic log made in the notebook, and again here to know what the chart must show.
LOG_CODE = """\
import numpy as np
import xarray as xr

steps = np.arange(20_000)
snaps = np.arange(0, 20_001, 100)
wiggle = ((steps * 7919) % 101) / 101.0
log = xr.Dataset(
    {
        "loss": ("step", (2.0 / (1.0 + steps / 500.0) + 0.2 * wiggle).astype(np.float32)),
        "lr": ("step", np.where(steps < 10_000, 0.1, 0.01).astype(np.float32)),
        "val_loss": ("snapshot", (2.2 / (1.0 + snaps / 500.0)).astype(np.float32)),
    },
    coords={"step": steps, "snapshot": np.arange(len(snaps)), "snapshot_step": ("snapshot", snaps)},
    attrs={"filterscope_format": 1, "eval_sets": ["val"]},
)
"""

NOTEBOOK = [
    LOG_CODE,
    "import json\nimport filterscope as fs\n\nw = fs.ModelInfo(log)\nw",
    'print("WINDOW=" + json.dumps(w.time_window))',
]


def test_zooming_a_long_run_requeries_and_shows_raw_values(jupyter_lab):
    jupyter_lab.write_notebook("model_info_zoom.ipynb", NOTEBOOK)
    namespace: dict = {}
    exec(LOG_CODE, namespace)
    log = namespace["log"]

    result = jupyter_lab.drive(
        "model_info_zoom", "model_info_zoom.ipynb", zoom_fractions=[0.5, 0.55]
    )

    # The overview: 20,000 steps as min/max buckets that fit 2,000 columns.
    assert result["before"]["level"] >= 4 and result["before"]["className"] == "fs-band"
    assert result["before"]["points"] <= 2000
    # The drag zoomed about 1,000 steps around the middle; the kernel holds that window ...
    start, stop = result["window"]
    assert 9_000 < start < stop < 11_500 and 800 < stop - start < 1_200
    # ... and answered the page's request for it with the raw values, one point per step.
    assert result["detail"] == f"{start}-{stop}"
    assert result["after"]["level"] == 0
    assert result["after"]["className"] == "fs-line fs-line-dense"
    # From the step at the window's start to one past its stop: every raw step in the window.
    assert result["after"]["points"] == stop - start + 2
    # The read-out at the hovered step is that step's raw loss (four significant digits).
    step = result["hover_step"]
    assert start <= step <= stop
    shown = result["readout"].split(" · ")[0]
    assert shown.startswith("train ") and "–" not in shown, result["readout"]
    raw = float(log.loss.values[step])
    assert float(shown.removeprefix("train ")) == pytest.approx(raw, rel=5e-4)
    for shot in result["screenshots"]:
        assert Path(shot).stat().st_size > 10_000
