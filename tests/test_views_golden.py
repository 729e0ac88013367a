"""Golden payloads: what the Python views send, pinned in files the browser tests decode.

Each golden file in ``js/src/golden/`` is one message as it crosses the wire: the JSON part
(``message``: a ``series`` trait value, or a request's response exactly as sent), where the
binary buffers go in it (``buffer_paths``, as ipywidgets writes them) and the buffers
themselves (base64). This test rebuilds every payload from a deterministic in-memory log
and fails when a committed file differs, so a change of the wire format is a visible diff that
``js/src/golden.test.ts`` must also accept. Rewrite the files on purpose with
``FILTERSCOPE_UPDATE_GOLDEN=1 pytest tests/test_views_golden.py`` and commit them.
"""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import xarray as xr
from ipywidgets.widgets.widget import _remove_buffers

from filterscope.views import ModelInfo
from filterscope.views._base import encode_response

GOLDEN = Path(__file__).resolve().parents[1] / "js" / "src" / "golden"
UPDATE = os.environ.get("FILTERSCOPE_UPDATE_GOLDEN") == "1"


def golden_log() -> xr.Dataset:
    """5,000 steps, 11 snapshots, two eval sets; values exact in float32 on every platform."""
    steps = np.arange(5000)
    snaps = np.arange(0, 5001, 500)
    loss = 2.0 / (1.0 + steps / 100.0)
    loss[2100:2103] = np.nan  # a gap the browser must draw as one
    return xr.Dataset(
        {
            "loss": ("step", loss.astype(np.float32)),
            "train_error": ("step", (0.9 / (1.0 + steps / 250.0)).astype(np.float32)),
            "lr": ("step", np.where(steps < 2500, 0.1, 0.01).astype(np.float32)),
            "val_loss": ("snapshot", (2.5 / (1.0 + snaps / 80.0)).astype(np.float32)),
            "val_error": ("snapshot", (0.8 / (1.0 + snaps / 200.0)).astype(np.float32)),
            "test_loss": ("snapshot", (2.4 / (1.0 + snaps / 90.0)).astype(np.float32)),
            "test_error": ("snapshot", (0.7 / (1.0 + snaps / 210.0)).astype(np.float32)),
        },
        coords={
            "step": steps,
            "step_epoch": ("step", steps // 1000),
            "snapshot": np.arange(len(snaps)),
            "snapshot_step": ("snapshot", snaps),
        },
        attrs={"filterscope_format": 1, "eval_sets": ["val", "test"]},
    )


def wire(message: dict[str, Any], paths: list[list[Any]], buffers: list[Any]) -> dict[str, Any]:
    return {
        "message": message,
        "buffer_paths": paths,
        "buffers": [base64.b64encode(bytes(b)).decode("ascii") for b in buffers],
    }


def payloads() -> dict[str, dict[str, Any]]:
    view = ModelInfo(golden_log(), max_points=64)
    state, paths, buffers = _remove_buffers(view.get_state("series"))
    response = view.handle_request(
        {"type": "request", "id": 7, "method": "window", "params": {"start": 2090, "stop": 2120}}
    )
    content, out = encode_response(response)
    error = view.handle_request({"type": "request", "id": 8, "method": "nope", "params": {}})
    return {
        "model_info_series": wire(state["series"], [p[1:] for p in paths], buffers),
        # As sent: the response carries its own buffer_paths (inside "result").
        "model_info_window": wire(content, [["result", *p] for p in content["buffer_paths"]], out),
        "model_info_error": wire(error, [], []),
    }


@pytest.mark.parametrize("name", ["model_info_series", "model_info_window", "model_info_error"])
def test_committed_golden_payload_matches_what_python_sends(name):
    produced = payloads()[name]
    path = GOLDEN / f"{name}.json"
    text = json.dumps(produced, indent=1, sort_keys=True) + "\n"
    if UPDATE or not path.exists():
        path.write_text(text)
        if not UPDATE:
            pytest.fail(f"wrote the missing golden file {path}; commit it")
    committed = json.loads(path.read_text())
    assert committed == json.loads(text), (
        f"{name}: what Python sends changed. If that is intended, rewrite the golden files with "
        "FILTERSCOPE_UPDATE_GOLDEN=1 pytest tests/test_views_golden.py, make js/src/golden.test.ts "
        "accept them, and commit both"
    )


def test_the_golden_window_holds_raw_values_and_the_overview_buckets():
    log = golden_log()
    series = payloads()["model_info_series"]["message"]
    assert {line["level"] for c in series["charts"] for line in c["lines"] if "lo" in line} == {7}
    window = payloads()["model_info_window"]
    assert window["message"]["id"] == 7
    raw = base64.b64decode(window["buffers"][1])  # loss y: after the loss x
    assert window["message"]["buffer_paths"][:2] == [
        ["charts", 0, "lines", 0, "x", "buffer"],
        ["charts", 0, "lines", 0, "y", "buffer"],
    ]
    np.testing.assert_array_equal(np.frombuffer(raw, "<f4"), log.loss.values[2090:2122])
