"""CubeView on a synthetic log: what it sends, what it accepts, how it answers and links."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

import filterscope as fs
from filterscope.data import ground_truth, synthetic_log
from filterscope.dynamics import cube_faces
from filterscope.errors import InvalidParameterError, InvalidSelectionError, LogFormatError
from filterscope.index.summaries import class_accuracy, layer_mean_abs
from filterscope.views import CubeView, Selection
from filterscope.views._base import encode_response

pytestmark = pytest.mark.xdist_group("views_cube")


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> tuple[xr.Dataset, xr.Dataset]:
    path = tmp_path_factory.mktemp("cube") / "log"
    log = synthetic_log(path, n_samples=2000, n_classes=50, n_snapshots=120, layers="resnet18")
    return log, ground_truth(path)


@pytest.fixture(scope="module")
def view(run) -> CubeView:
    return CubeView(run[0], columns=40, page_size=20)


def ask(view: CubeView, method: str = "faces", **params) -> dict:
    return view.handle_request({"type": "request", "id": 7, "method": method, "params": params})


def test_a_short_run_arrives_whole_at_level_0_and_a_long_one_in_buckets(run):
    log = run[0]
    whole = CubeView(log, page_size=5)
    steps = log.snapshot_step.values
    assert whole.faces["level"] == 0
    assert whole.faces["bucket_step_start"].tolist() == steps.tolist()
    assert whole.faces["front"].shape == (len(whole.meta["layers"]), len(steps))
    # The counts the index keeps for the presets give the faces computing them gives.
    idx = fs.index_of(log)
    kept = idx.cube_correlation(10, "filter_cosine", "sustained")
    assert kept is not None and idx.cube_correlation(5, "filter_cosine", "sustained") is None
    stored = cube_faces(log, counts=idx.unstable_counts(30), correlation=kept)
    computed = cube_faces(log)
    for name in ("correlation", "flagged", "flag_count", "class_order"):
        np.testing.assert_array_equal(stored[name].values, computed[name].values)
    assert int(computed["flagged"].values.sum()) > 0
    assert CubeView(log, columns=40, page_size=5).faces["level"] > 0


def test_state_comes_from_the_index_and_dynamics(run, view):
    log, truth = run
    meta, faces = view.meta, view.faces
    idx = fs.index_of(log)
    front = layer_mean_abs(idx, "grad_stat", columns=40)
    assert meta["layers"] == [str(n) for n in front.layer_name.values]
    assert meta["n_classes"] == 50 and meta["page_size"] == 20
    assert faces["level"] == front.attrs["level"] > 0  # 120 snapshots into at most 40 columns
    np.testing.assert_allclose(
        faces["front"], front.sel(agg="mean").transpose("layer", ...).values, rtol=1e-6
    )
    cube = cube_faces(log)
    page = cube.class_order.values[:20]
    assert faces["classes"] == log["class"].values[page].tolist()
    assert faces["class_names"] == [str(n) for n in log.class_name.values[page]]
    top = class_accuracy(idx, columns=40, class_=faces["classes"]).sel(agg="mean")
    np.testing.assert_allclose(faces["top"], top.transpose("class", ...).values, rtol=1e-6)
    corr = cube.correlation.sel(layer=front.layer.values).values[:, page]
    np.testing.assert_array_equal(faces["correlation"], corr)
    assert meta["correlation_max"] == int(corr.max()) or meta["correlation_max"] >= corr.max()
    # Bucket steps are snapshot steps; flags count flagged snapshots per bucket.
    steps = log.snapshot_step.values
    assert faces["bucket_step_start"][0] == steps[0]
    assert faces["bucket_step_stop"][-1] == steps[-1]
    assert faces["flags"].sum() == int(cube.flagged.values[:, page].sum())
    # The planted unstable classes lead the page, with their flagged steps to pick.
    planted = truth.unstable_class.values.tolist()
    assert set(planted) <= set(faces["classes"][:6])
    offsets = faces["flag_offsets"]
    for i, label in enumerate(faces["classes"][:3]):
        got = faces["flag_steps"][offsets[i] : offsets[i + 1]]
        np.testing.assert_array_equal(got, view.flagged_steps(label))
    # Everything travels as binary arrays.
    message, buffers = encode_response({"type": "response", "id": 1, "result": faces})
    assert len(buffers) >= 8 and message["buffer_paths"]


def test_names_and_public_api(run, view):
    assert fs.CubeView is CubeView
    assert isinstance(run[0].filterscope.cube_view(columns=8, page_size=3), CubeView)
    assert view._view == "cube"


def test_selection_traits_validate_and_link(run):
    log, _ = run
    selection = Selection()
    view = CubeView(log, selection=selection, columns=16, page_size=5)
    view.layer = "layer1.0.conv1"
    view.class_ = "37"  # a label as text is the label
    assert view.class_ == 37 and selection.class_ == 37
    assert selection.layer == "layer1.0.conv1"
    with pytest.raises(InvalidSelectionError):
        view.layer = "nope"
    with pytest.raises(InvalidSelectionError):
        view.class_ = 999
    assert view.layer == "layer1.0.conv1" and view.class_ == 37
    with pytest.raises(InvalidSelectionError):
        view.picked_steps = [10**9]
    with pytest.raises(InvalidSelectionError):
        view.time_window = (50, 10)
    selection.picked_steps = view.flagged_steps(37)
    assert view.picked_steps == view.flagged_steps(37)
    selection.time_window = (100, 5000)
    assert view.time_window == (100, 5000)
    with pytest.raises(InvalidSelectionError):
        view.flagged_steps(12345)
    view.close()


def test_the_page_sets_only_selections_and_bad_values_roll_back(run):
    log, _ = run
    view = CubeView(log, columns=16, page_size=5)
    view.set_state({"layer": "fc", "class_": 15, "picked_steps": [3700]})
    assert (view.layer, view.class_, view.picked_steps) == ("fc", 15, [3700])
    view.set_state({"layer": "conv1", "class_": 4242})  # rolled back together
    assert (view.layer, view.class_) == ("fc", 15)
    before = view.meta
    view.set_state({"meta": {"layers": ["<script>"]}})
    assert view.meta == before
    view.close()


def test_faces_request_zooms_and_pages(run, view):
    log, _ = run
    answer = ask(view, start=3000, stop=6000, offset=20, count=20, columns=100)
    result = answer["result"]
    steps = log.snapshot_step.values
    assert result["level"] == 0  # 31 snapshots fit 100 columns: the raw values
    np.testing.assert_array_equal(
        result["bucket_step_start"], steps[(steps >= 3000) & (steps <= 6000)]
    )
    assert result["offset"] == 20 and len(result["classes"]) == 20
    order = cube_faces(log).class_order.values
    assert result["classes"] == log["class"].values[order[20:40]].tolist()
    assert result["front"].shape == (len(view.meta["layers"]), len(result["bucket_step_start"]))
    assert result["top"].shape == (20, len(result["bucket_step_start"]))
    assert result["correlation"].shape == (len(view.meta["layers"]), 20)
    last = ask(view, offset=40, count=20)["result"]
    assert len(last["classes"]) == 10  # the last page holds what is left
    between = ask(view, start=3701, stop=3702)["result"]  # between two snapshots
    assert len(between["bucket_step_start"]) == 1


@pytest.mark.parametrize(
    "params",
    [
        {"start": 10},
        {"start": 10, "stop": 5},
        {"start": True, "stop": 5},
        {"start": -5, "stop": 5},
        {"start": 10**9, "stop": 10**9 + 5},
        {"offset": -1},
        {"offset": 50},
        {"offset": "0"},
        {"count": 0},
        {"count": 10_000},
        {"columns": 0},
        {"columns": 1.5},
        {"bogus": 1},
    ],
)
def test_malformed_or_out_of_range_requests_get_errors(view, params):
    answer = ask(view, **params)
    assert "error" in answer and "result" not in answer
    assert "internal error" not in answer["error"]


def test_unknown_and_malformed_messages(view):
    assert "error" in ask(view, "nope")
    assert "error" in view.handle_request({"type": "request", "method": "faces"})
    assert "error" in view.handle_request(["not", "a", "dict"])


def test_constructor_validates(run):
    log, _ = run
    for bad in ({"columns": 0}, {"columns": True}, {"page_size": 0}, {"page_size": 10_000}):
        with pytest.raises(InvalidParameterError):
            CubeView(log, **bad)
    with pytest.raises(InvalidParameterError):
        CubeView(log, selection="nope")  # type: ignore[arg-type]
    with pytest.raises(LogFormatError):
        CubeView(log.drop_vars("grad_stat"))


def test_a_large_log_stays_bounded(tmp_path):
    log = synthetic_log(
        tmp_path / "big", n_samples=3000, n_classes=300, n_snapshots=256, layers="resnet18"
    )
    view = CubeView(log, columns=64, page_size=30)
    faces = view.faces
    assert faces["front"].shape[1] <= 64 and faces["top"].shape == (30, faces["front"].shape[1])
    assert faces["correlation"].shape[1] == 30 and len(faces["class_names"]) == 30
    _, buffers = encode_response({"type": "response", "id": 1, "result": faces})
    assert sum(b.nbytes for b in buffers) < 64 * 1024
    view.close()
