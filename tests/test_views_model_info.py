"""ModelInfo built from a really recorded log: what it sends, what it accepts, how it links."""

from __future__ import annotations

import json
import logging
import math
import shutil
import subprocess
from pathlib import Path

import comm
import numpy as np
import pytest
import traitlets
import xarray as xr
from comm.base_comm import BaseComm
from e2e.tiny_run import record_tiny_run
from ipywidgets.widgets.widget import _put_buffers, _remove_buffers

import filterscope as fs
from filterscope.errors import (
    InvalidDataError,
    InvalidParameterError,
    InvalidSelectionError,
    LogFormatError,
)
from filterscope.views import ModelInfo, Selection
from filterscope.views._base import ViewWidget
from filterscope.views._serialization import from_json
from filterscope.views.model_info import _Charts

# One worker runs this module, and the session-scoped fixture trains and records the run once
# on it, whatever order the worker runs the tests in.
pytestmark = pytest.mark.xdist_group("views_model_info")


@pytest.fixture(scope="session")
def log(tmp_path_factory) -> xr.Dataset:
    return record_tiny_run(tmp_path_factory.mktemp("run") / "log.zarr")


UNHANDLED = "Exception in widget method"
"""What ipywidgets logs outside a kernel where, in one, it prints a traceback into the notebook."""


class Page(BaseComm):
    """The page at the other end of a widget's comm, as the kernel's comm manager drives it.

    ``state`` is what the page's model holds: it starts from the open message, takes the page's
    own edits, and takes every ``update`` and ``echo_update`` the kernel sends.
    """

    def __init__(self, **kwargs):
        self.state: dict = {}
        self.updates: list[dict] = []
        super().__init__(**kwargs)

    def publish_msg(self, msg_type, data=None, metadata=None, buffers=None, **keys):
        data = json.loads(json.dumps(data))  # what crosses the wire: tuples become lists
        if data and "state" in data:
            _put_buffers(data["state"], data.get("buffer_paths", []), list(buffers or []))
            self.state.update(data["state"])
            if data.get("method") == "update":
                self.updates.append(data["state"])

    def send_update(self, state: dict) -> None:
        """The page sets ``state`` on its model and saves it: one comm "update" message."""
        self.state.update(state)
        self.updates.clear()
        stripped, paths, buffers = _remove_buffers(state)
        data = {"method": "update", "state": stripped, "buffer_paths": paths}
        self.handle_msg({"content": {"comm_id": self.comm_id, "data": data}, "buffers": buffers})


@pytest.fixture
def page(monkeypatch) -> None:
    """Give widgets made in the test a :class:`Page` as their comm; ``view.comm`` is the page."""
    monkeypatch.setattr(comm, "create_comm", lambda **kwargs: Page(**kwargs))


def in_memory(log: xr.Dataset) -> xr.Dataset:
    """``log`` as if made in memory: no path, so views index its own (changed) values."""
    out = log.copy()
    out.attrs.pop("filterscope_path", None)
    out.encoding = {k: v for k, v in out.encoding.items() if k != "filterscope_path"}
    return out


def _series(log: xr.Dataset, max_points: int = 2000) -> dict:
    return _Charts(log, max_points).overview()


def lines_of(series: dict, key: str) -> dict[str, dict]:
    (chart,) = [c for c in series["charts"] if c["key"] == key]
    return {line["name"]: line for line in chart["lines"]}


def test_public_name_and_accessor_give_the_same_view(log):
    assert fs.ModelInfo is ModelInfo
    via_accessor = log.filterscope.model_info(max_points=50)
    assert isinstance(via_accessor, ModelInfo)
    np.testing.assert_array_equal(
        lines_of(via_accessor.series, "loss")["train"]["lo"],  # buckets at max_points=50
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


def reference_buckets(steps, values, level):
    """Literal loop: buckets of 2**level consecutive steps, NaN-ignoring min and max."""
    size = 2**level
    x, lo, hi = [], [], []
    for start in range(0, len(steps), size):
        bucket = [v for v in values[start : start + size] if not math.isnan(v)]
        x.append(steps[start])
        lo.append(min(bucket) if bucket else math.nan)
        hi.append(max(bucket) if bucket else math.nan)
    return np.array(x), np.array(lo), np.array(hi)


@pytest.mark.parametrize("max_points", [2, 7, 40, 159])
def test_long_series_come_from_the_index_as_exact_min_max_buckets(log, max_points):
    loss = log.loss.values.astype(np.float64)
    loss[10:12] = np.nan  # a bucket with some gaps
    loss[-40:] = np.nan  # whole buckets of gaps at the end
    series = _series(in_memory(log.assign(loss=("step", loss))), max_points)
    train = lines_of(series, "loss")["train"]
    assert "y" not in train
    assert len(train["x"]) <= max_points
    x, lo, hi = reference_buckets(log.step.values, loss, train["level"])
    np.testing.assert_array_equal(train["x"], x)
    np.testing.assert_array_equal(train["lo"], lo.astype(np.float32))
    np.testing.assert_array_equal(train["hi"], hi.astype(np.float32))


def window_request(view, start, stop, rid=1):
    return view.handle_request(
        {"type": "request", "id": rid, "method": "window", "params": {"start": start, "stop": stop}}
    )


def test_a_zoomed_window_is_answered_with_raw_values(log):
    view = ModelInfo(log, max_points=20)
    assert lines_of(view.series, "loss")["train"]["level"] > 0
    response = window_request(view, 30, 45, rid=7)
    assert response["id"] == 7 and "error" not in response
    assert response["result"]["window"] == [30, 45]
    charts = {
        c["key"]: {line["name"]: line for line in c["lines"]} for c in response["result"]["charts"]
    }
    train = charts["loss"]["train"]
    assert train["level"] == 0
    # From the step at or before the start to one past the stop: the line reaches both edges.
    np.testing.assert_array_equal(train["x"], np.arange(30, 47))
    np.testing.assert_array_equal(train["y"], log.loss.values[30:47])
    val = charts["loss"]["val"]
    snaps = log.snapshot_step.values
    inside = (snaps >= 30) & (snaps <= 50)
    np.testing.assert_array_equal(val["x"], snaps[inside])
    np.testing.assert_array_equal(val["y"], log.val_loss.values[inside])


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


_ASK_THE_BUNDLE = """
const { default: widget } = await import(process.argv[1]);
const names = JSON.parse(process.argv[2]);
const found = {};
for (const name of names) {
  try {
    widget.render({ model: { get: (key) => (key === "_view" ? name : undefined) }, el: {} });
    found[name] = "rendered";
  } catch (error) {
    found[name] = error.message;
  }
}
console.log(JSON.stringify(found));
"""


def test_the_bundle_renders_every_python_view_by_name():
    # Run the built bundle's own dispatch: the views' _view names and its table must agree.
    node = shutil.which("node")
    if node is None:
        pytest.skip("needs node, which `make js` also needs, to load the browser bundle")
    bundle = Path(fs.__file__).parent / "static" / "widget.js"
    # filterscope's own views (test modules define small views of their own).
    views = sorted(
        cls.class_traits()["_view"].default_value
        for cls in ViewWidget.__subclasses__()
        if cls.__module__.startswith("filterscope.")
    )
    assert "model_info" in views
    asked = [*views, "no_such_view"]
    done = subprocess.run(
        [node, "--input-type=module", "-e", _ASK_THE_BUNDLE, bundle.as_uri(), json.dumps(asked)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    found = json.loads(done.stdout)
    missing = 'no view named "no_such_view" in this bundle'
    assert missing in found.pop("no_such_view")
    # A fake element fails later inside the view; what matters is that a view was found.
    for name, outcome in found.items():
        assert "no view named" not in outcome, f"the bundle has no {name!r} view: {outcome}"


def test_picks_are_validated_against_the_run(log):
    view = ModelInfo(log)
    snaps = [int(s) for s in log.snapshot_step.values]
    view.picked_steps = [snaps[3], snaps[1], snaps[3]]
    assert view.picked_steps == [snaps[3], snaps[1]]
    last = view.series["step_range"][1]
    with pytest.raises(InvalidSelectionError, match=f"steps of this run \\(0 to {last}\\)"):
        view.picked_steps = [snaps[2], last + 1]
    with pytest.raises(InvalidSelectionError, match="count from 0"):
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


@pytest.mark.parametrize(
    "update",
    [
        {"picked_steps": [-1]},
        {"picked_steps": [3, -1]},
        {"picked_steps": [10**6]},
        {"picked_steps": ["12"]},
        {"picked_steps": [1.5]},
        {"picked_steps": [True]},
        {"picked_steps": None},
        {"picked_steps": 12},
        {"time_window": [5, 1]},
        {"time_window": [5, 5]},
        {"time_window": [-1, 4]},
        {"time_window": [0, 10**6, 3]},
        {"time_window": ["0", 4]},
        {"picked_steps": [20], "time_window": [5, 1]},
    ],
    ids=repr,
)
def test_a_bad_update_from_the_page_is_refused_and_the_page_told_the_kept_value(
    log, page, caplog, update
):
    view = ModelInfo(log)
    snap = int(log.snapshot_step[3])
    view.picked_steps, view.time_window = [snap], (10, 90)
    # The page may still send what it meant: neither the kernel nor the page may keep it.
    with caplog.at_level(logging.WARNING):
        view.comm.send_update(update)
    assert view.picked_steps == view.selection.picked_steps == [snap]
    assert view.time_window == view.selection.time_window == (10, 90)
    assert view.comm.state["picked_steps"] == [snap]
    assert view.comm.state["time_window"] == [10, 90]
    assert set(update) <= set(view.comm.updates[-1])
    assert "refused the page's update" in caplog.text
    assert UNHANDLED not in caplog.text


def test_a_good_update_from_the_page_is_kept_and_not_sent_back(log, page):
    view = ModelInfo(log)
    seen = []
    view.selection.observe(lambda change: seen.append(change.new), "picked_steps")
    step = int(log.snapshot_step[4])
    view.comm.send_update({"picked_steps": [step], "time_window": [10, 90]})
    assert view.picked_steps == view.selection.picked_steps == [step]
    assert view.time_window == view.selection.time_window == (10, 90)
    assert seen == [[step]]
    assert view.comm.updates == []
    # ipywidgets' own front end counts displayed views in _view_count once it is not None.
    view._view_count = 0
    view.comm.send_update({"_view_count": 1})
    assert view._view_count == 1


@pytest.mark.parametrize(
    "update",
    [
        {"_view": "other_view"},
        {"series": {}},
        {"series": {"step_range": [0, 1]}, "_view": "x"},
        {"_esm": "export default {}"},
        {"_model_name": "OtherModel"},
        {"tooltip": "hi"},
        {"link_id": "another-selection"},
    ],
    ids=repr,
)
def test_the_page_cannot_overwrite_what_the_kernel_owns(log, page, caplog, update):
    view = ModelInfo(log)
    before = {name: getattr(view, name) for name in update}
    step = int(log.snapshot_step[2])
    with caplog.at_level(logging.WARNING):
        view.comm.send_update({**update, "picked_steps": [step]})
    assert view._view == "model_info"
    assert view.series["step_range"] == list(_series(log)["step_range"])
    assert {name: getattr(view, name) for name in update} == before
    # The rest of the update is kept; the refused traits are sent back as the kernel has them.
    assert view.picked_steps == view.selection.picked_steps == [step]
    assert set(view.comm.updates[-1]) == set(update)
    for name in update:
        expected = view.get_state(name)[name]
        if name == "series":
            expected = from_json(expected)
            assert view.comm.state[name]["step_range"] == expected["step_range"]
            np.testing.assert_array_equal(
                from_json(view.comm.state[name])["snapshot_step"], expected["snapshot_step"]
            )
        else:
            assert view.comm.state[name] == expected
    assert "which only the kernel sets" in caplog.text
    assert UNHANDLED not in caplog.text


def test_the_kernel_still_sets_what_it_owns_and_the_page_gets_it(log, page):
    view = ModelInfo(log)
    with pytest.raises(traitlets.TraitError, match="read-only"):
        view.series = {}
    short = _series(log.isel(step=slice(0, 50), snapshot=slice(0, 3)))
    view.set_trait("series", short)
    assert view.series["step_range"] == short["step_range"]
    assert view.comm.updates[-1].keys() == {"series"}
    assert view.comm.state["series"]["step_range"] == short["step_range"]


def test_a_page_pick_another_linked_view_refuses_is_undone_everywhere(log, page, caplog):
    # Two runs of different lengths: a step of the long one is outside the short one.
    sel = Selection()
    long_view = ModelInfo(log, selection=sel)
    short_view = ModelInfo(log.isel(step=slice(0, 50), snapshot=slice(0, 3)), selection=sel)
    kept = int(log.snapshot_step[1])
    sel.picked_steps = [kept]
    late = int(log.snapshot_step[-1])
    assert late > short_view.series["step_range"][1]
    with caplog.at_level(logging.WARNING):
        long_view.comm.send_update({"picked_steps": [kept, late]})
    assert UNHANDLED not in caplog.text
    assert sel.picked_steps == long_view.picked_steps == short_view.picked_steps == [kept]
    assert long_view.comm.state["picked_steps"] == [kept]
    assert short_view.comm.state["picked_steps"] == [kept]


def test_views_sharing_a_selection_are_linked(log):
    sel = Selection()
    a, b = ModelInfo(log, selection=sel), ModelInfo(log, selection=sel)
    step = int(log.snapshot_step[5])
    a.picked_steps = [step]
    assert b.picked_steps == [step] == sel.picked_steps
    sel.time_window = (0, 100)
    assert a.time_window == b.time_window == (0, 100)
    with pytest.raises(InvalidSelectionError):
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
    with pytest.raises(InvalidParameterError, match="Selection"):
        ModelInfo(log, selection={"picked_steps": []})
    with pytest.raises(InvalidParameterError, match="max_points"):
        ModelInfo(log, max_points=1)
    with pytest.raises(InvalidSelectionError, match="0 <= start < stop"):
        ModelInfo(log).time_window = (50, 10)


def test_a_log_with_no_steps_yet_still_opens(log):
    empty = log.isel(step=slice(0, 0), snapshot=slice(0, 0))
    series = ModelInfo(empty).series
    assert series["step_range"] == [0, 0]
    assert len(lines_of(series, "loss")["train"]["x"]) == 0
    assert len(series["epoch_first_step"]) == 0
