"""ModelInfo built from a really recorded log: what it sends, what it accepts, how it links."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import traitlets
import xarray as xr
from e2e.tiny_run import record_tiny_run
from ipywidgets.widgets.widget import _put_buffers, _remove_buffers

import filterscope as fs
from filterscope.errors import InvalidDataError, LogFormatError
from filterscope.views import ModelInfo, Selection
from filterscope.views._serialization import from_json
from filterscope.views.model_info import _series

# One worker runs this module, and the session-scoped fixture trains and records the run once
# on it, whatever order the worker runs the tests in.
pytestmark = pytest.mark.xdist_group("views_model_info")


@pytest.fixture(scope="session")
def log(tmp_path_factory) -> xr.Dataset:
    return record_tiny_run(tmp_path_factory.mktemp("run") / "log.zarr")


def lines_of(series: dict, key: str) -> dict[str, dict]:
    (chart,) = [c for c in series["charts"] if c["key"] == key]
    return {line["name"]: line for line in chart["lines"]}


def test_public_name_and_accessor_give_the_same_view(log):
    assert fs.ModelInfo is ModelInfo
    via_accessor = log.filterscope.model_info(max_points=50)
    assert isinstance(via_accessor, ModelInfo)
    np.testing.assert_array_equal(
        lines_of(via_accessor.series, "loss")["train"]["lo"],
        lines_of(_series(log, 50), "loss")["train"]["lo"],
    )
    # The accessor keeps no widget state: each call is a new, independent view.
    other = log.filterscope.model_info()
    other.picked_steps = [int(log.snapshot_step[2])]
    assert via_accessor.picked_steps == []


def test_short_runs_are_sent_exactly(log):
    series = ModelInfo(log).series
    steps = log.step.values
    # The final snapshot is taken after the last update, one step past the last logged step.
    assert series["step_range"] == [0, max(int(steps[-1]), int(log.snapshot_step[-1]))]
    assert [c["key"] for c in series["charts"]] == ["loss", "error", "lr"]
    for key, var, name in [
        ("loss", "loss", "train"),
        ("error", "train_error", "train"),
        ("lr", "lr", "lr"),
    ]:
        train = lines_of(series, key)[name]
        np.testing.assert_array_equal(train["x"], steps)
        np.testing.assert_array_equal(train["y"], log[var].values)
    for key in ("loss", "error"):
        lines = lines_of(series, key)
        assert list(lines) == ["train", "val", "test"]
        for name in ("val", "test"):
            np.testing.assert_array_equal(lines[name]["x"], log.snapshot_step.values)
            np.testing.assert_array_equal(lines[name]["y"], log[f"{name}_{key}"].values)
            assert lines[name]["markers"] is True
    np.testing.assert_array_equal(series["snapshot_step"], log.snapshot_step.values)


def test_epochs_start_where_step_epoch_changes(log):
    series = _series(log)
    step_epoch = log.step_epoch.values
    expected = [
        (int(s), int(e))
        for i, (s, e) in enumerate(zip(log.step.values, step_epoch, strict=True))
        if i == 0 or e != step_epoch[i - 1]
    ]
    assert (
        list(zip(series["epoch_first_step"].tolist(), series["epoch"].tolist(), strict=True))
        == expected
    )


def reference_envelope(steps, values, max_points):
    """Literal loop: buckets of ceil(n / max_points) steps, NaN-ignoring min and max."""
    size = math.ceil(len(steps) / max_points)
    x, lo, hi = [], [], []
    for start in range(0, len(steps), size):
        bucket = [v for v in values[start : start + size] if not math.isnan(v)]
        x.append(steps[start])
        lo.append(min(bucket) if bucket else math.nan)
        hi.append(max(bucket) if bucket else math.nan)
    return np.array(x), np.array(lo), np.array(hi)


@pytest.mark.parametrize("max_points", [2, 7, 40, 159])
def test_long_series_become_exact_min_max_envelopes(log, max_points):
    loss = log.loss.values.astype(np.float64)
    loss[10:12] = np.nan  # a bucket with some gaps
    loss[-40:] = np.nan  # whole buckets of gaps at the end
    series = _series(log.assign(loss=("step", loss)), max_points)
    train = lines_of(series, "loss")["train"]
    assert "y" not in train
    x, lo, hi = reference_envelope(log.step.values, loss, max_points)
    assert len(train["x"]) <= max_points
    np.testing.assert_array_equal(train["x"], x)
    np.testing.assert_array_equal(train["lo"], lo)
    np.testing.assert_array_equal(train["hi"], hi)


def test_eval_sets_follow_the_logs_eval_sets_attribute(log):
    reordered = log.copy()
    reordered.attrs["eval_sets"] = ["test", "val"]
    assert list(lines_of(_series(reordered), "error")) == ["train", "test", "val"]


def test_logs_without_lr_or_snapshots_still_draw_loss(log):
    bare = log.drop_vars(["lr", "train_error", "val_loss", "val_error", "test_loss", "test_error"])
    bare = bare.drop_dims("snapshot")
    series = ModelInfo(bare).series
    assert [c["key"] for c in series["charts"]] == ["loss"]
    assert len(series["snapshot_step"]) == 0


def test_state_crosses_the_wire_as_binary_frames(log):
    view = ModelInfo(log, max_points=50)
    state = view.get_state()
    assert state["_view"] == "model_info"
    stripped, paths, buffers = _remove_buffers(state)
    assert buffers and all(isinstance(b, memoryview) for b in buffers)
    assert sum(b.nbytes for b in buffers) < 20_000  # a few KB for 300 steps: no JSON number lists
    _put_buffers(stripped, paths, [bytes(b) for b in buffers])
    received = from_json(stripped["series"])
    sent = view.series
    np.testing.assert_array_equal(
        lines_of(received, "loss")["train"]["hi"],
        lines_of(sent, "loss")["train"]["hi"].astype(np.float32),
    )
    np.testing.assert_array_equal(
        received["snapshot_step"], log.snapshot_step.values.astype(np.int32)
    )


def test_the_bundle_knows_this_view():
    bundle = Path(fs.__file__).parent / "static" / "widget.js"
    assert '"model_info"' in bundle.read_text() or "model_info:" in bundle.read_text()


def test_picks_are_validated_against_the_run(log):
    view = ModelInfo(log)
    snaps = [int(s) for s in log.snapshot_step.values]
    view.picked_steps = [snaps[3], snaps[1], snaps[3]]
    assert view.picked_steps == [snaps[3], snaps[1]]
    last = view.series["step_range"][1]
    with pytest.raises(InvalidDataError, match=f"steps of this run \\(0 to {last}\\)"):
        view.picked_steps = [snaps[2], last + 1]
    with pytest.raises(InvalidDataError, match="count from 0"):
        view.picked_steps = [-3]
    with pytest.raises(traitlets.TraitError):
        view.picked_steps = ["12"]
    assert view.picked_steps == [snaps[3], snaps[1]]


def test_a_pick_from_the_browser_reaches_python_observers(log):
    view = ModelInfo(log)
    seen = []
    view.selection.observe(lambda change: seen.append(change.new), "picked_steps")
    step = int(log.snapshot_step[4])
    # What the comm does with a browser "update" message.
    view.set_state({"picked_steps": [step]})
    assert view.picked_steps == [step]
    assert seen == [[step]]
    view.set_state({"time_window": [10, 90]})
    assert view.time_window == (10, 90) == view.selection.time_window
    view.set_state({"time_window": None})
    assert view.selection.time_window is None


def test_views_sharing_a_selection_are_linked(log):
    sel = Selection()
    a, b = ModelInfo(log, sel), ModelInfo(log, selection=sel)
    step = int(log.snapshot_step[5])
    a.picked_steps = [step]
    assert b.picked_steps == [step] == sel.picked_steps
    sel.time_window = (0, 100)
    assert a.time_window == b.time_window == (0, 100)
    with pytest.raises(InvalidDataError):
        sel.picked_steps = [10**6]
    assert sel.picked_steps == a.picked_steps == b.picked_steps == [step]
    a.close()
    b.picked_steps = []
    assert a.picked_steps == [step]


@pytest.mark.parametrize(
    ("make", "error", "match"),
    [
        (
            lambda log: log.loss,
            InvalidDataError,
            "expected the xarray.Dataset of a filterscope log, got DataArray",
        ),
        (
            lambda log: log.assign_attrs(filterscope_format=None).drop_attrs(),
            LogFormatError,
            "not a filterscope log",
        ),
        (lambda log: log.assign_attrs(filterscope_format=2), LogFormatError, "format 2"),
        (lambda log: log.drop_vars("loss"), LogFormatError, r"lacks \['loss'\]"),
    ],
    ids=["not-a-dataset", "no-format", "newer-format", "no-loss"],
)
def test_bad_logs_get_clear_errors(log, make, error, match):
    with pytest.raises(error, match=match):
        ModelInfo(make(log))


def test_bad_arguments_get_clear_errors(log):
    with pytest.raises(InvalidDataError, match="Selection"):
        ModelInfo(log, selection={"picked_steps": []})
    with pytest.raises(InvalidDataError, match="max_points"):
        ModelInfo(log, max_points=1)
    with pytest.raises(InvalidDataError, match="0 <= start < stop"):
        ModelInfo(log).time_window = (50, 10)


def test_a_log_with_no_steps_yet_still_opens(log):
    empty = log.isel(step=slice(0, 0), snapshot=slice(0, 0))
    series = ModelInfo(empty).series
    assert series["step_range"] == [0, 0]
    assert len(lines_of(series, "loss")["train"]["x"]) == 0
    assert len(series["epoch_first_step"]) == 0
