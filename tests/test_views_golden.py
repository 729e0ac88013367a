"""Golden payloads: what the Python views send, pinned in files the browser tests decode.

Each golden file in ``js/src/golden/`` is one message as it crosses the wire: the JSON part
(``message``: a view's array traits, or a request's response exactly as sent), where the
binary buffers go in it (``buffer_paths``, as ipywidgets writes them) and the buffers
themselves (base64). This test rebuilds every payload, ModelInfo's from a deterministic
in-memory log, LayerView's, ValidationView's and CubeView's from a small synthetic log
written through the recorder's store (:func:`filterscope.data.synthetic.synthetic_log`, seeded),
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

from filterscope.data.synthetic import synthetic_log
from filterscope.views import CubeView, LayerView, ModelInfo, ValidationView
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


def _state(view: Any, traits: list[str]) -> dict[str, Any]:
    """The view's array traits as the kernel sends them: one message, buffers taken out."""
    state, paths, buffers = _remove_buffers(view.get_state(traits))
    return wire(state, paths, buffers)


def _answer(view: Any, request_id: int, method: str, params: dict[str, Any]) -> dict[str, Any]:
    response = view.handle_request(
        {"type": "request", "id": request_id, "method": method, "params": params}
    )
    assert "error" not in response, response
    content, out = encode_response(response)
    return wire(content, [["result", *p] for p in content["buffer_paths"]], out)


def view_payloads(path: Path) -> dict[str, dict[str, Any]]:
    """LayerView, ValidationView and CubeView on a 6-class, 12-snapshot ResNet-18 log."""
    log = synthetic_log(
        path, n_samples=120, n_classes=6, n_snapshots=12, layers="resnet18", plant=False
    )
    layer = LayerView(log)
    validation = ValidationView(log, j=1, threshold=2)
    cube = CubeView(log, page_size=4)
    steps = log.snapshot_step.values
    window = {"start": int(steps[3]), "stop": int(steps[8])}
    return {
        "layer_state": _state(layer, ["tree", "series"]),
        "layer_filters": _answer(layer, 11, "filters", {"layer": "conv1", "columns": 12}),
        "validation_data": _state(validation, ["data"]),
        "validation_window": _answer(validation, 12, "window", window),
        "validation_rows": _answer(validation, 13, "rows", {"class_": 2}),
        "cube_state": _state(cube, ["meta", "faces"]),
        "cube_faces": _answer(cube, 14, "faces", {**window, "offset": 4, "count": 4}),
    }


MODEL_INFO = ["model_info_series", "model_info_window", "model_info_error"]
VIEWS = [
    "layer_state",
    "layer_filters",
    "validation_data",
    "validation_window",
    "validation_rows",
    "cube_state",
    "cube_faces",
]


@pytest.fixture(scope="module")
def produced_views(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    return view_payloads(tmp_path_factory.mktemp("golden") / "run")


@pytest.mark.parametrize("name", MODEL_INFO + VIEWS)
def test_committed_golden_payload_matches_what_python_sends(name, request):
    produced = (
        payloads()[name] if name in MODEL_INFO else request.getfixturevalue("produced_views")[name]
    )
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


def test_the_golden_views_carry_typed_arrays_the_page_decodes(produced_views):
    data = produced_views["validation_data"]
    state = data["message"]["data"]
    assert state["accuracy"]["dtype"] == "uint8" and state["accuracy"]["shape"] == [6, 12]
    at = data["buffer_paths"].index(["data", "accuracy", "buffer"])
    codes = np.frombuffer(base64.b64decode(data["buffers"][at]), np.uint8)
    assert codes.max() <= 255 and codes.size == 72
    filters = produced_views["layer_filters"]["message"]["result"]
    assert filters["layer"] == "conv1" and filters["values"]["shape"] == [16, 12]  # 16 filters
    # Filter rows travel as one byte per cell with each filter's float32 range.
    assert filters["values"]["dtype"] == "uint8" and filters["normalize"] == "filter"
    assert filters["lo"] == {"dtype": "float32", "shape": [16]} == filters["hi"]
    answer = produced_views["layer_filters"]
    at = answer["buffer_paths"].index(["result", "values", "buffer"])
    codes = np.frombuffer(base64.b64decode(answer["buffers"][at]), np.uint8).reshape(16, 12)
    assert (codes[:, 0] == 255).all() and (codes[:, 1:] <= 254).all()  # no cosine before 1
    faces = produced_views["cube_faces"]["message"]["result"]
    assert faces["offset"] == 4 and len(faces["classes"]) == 2  # the last page: classes 4, 5
