"""LayerView on a really recorded log and on a synthetic ResNet-50 log: state, validation,
requests, selection linking, and the picks → lowest-cosine filters logic against numpy."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import xarray as xr
from e2e.tiny_run import record_tiny_run

import filterscope as fs
from filterscope.data import synthetic_log
from filterscope.dynamics.layer_view import lowest_cosine_filters, node_series, step_snapshots
from filterscope.errors import InvalidParameterError, InvalidSelectionError, LogFormatError
from filterscope.views import LayerView, Selection

pytestmark = pytest.mark.xdist_group("views_layer")


@pytest.fixture(scope="session")
def log(tmp_path_factory) -> xr.Dataset:
    return record_tiny_run(tmp_path_factory.mktemp("layer_run") / "log.zarr")


@pytest.fixture(scope="session")
def r50(tmp_path_factory) -> xr.Dataset:
    path = tmp_path_factory.mktemp("r50") / "log"
    return synthetic_log(
        path, layers="resnet50", n_samples=100, n_classes=10, n_snapshots=12, plant=False
    )


def request(view, method, rid=1, **params):
    return view.handle_request({"type": "request", "id": rid, "method": method, "params": params})


# ------------------------------------------------------------------ state
def test_tree_and_default_series_are_mean_abs_gradient_per_weight(log):
    view = LayerView(log)
    nodes = view.tree["nodes"]
    names = [n["name"] for n in nodes]
    assert names[0] == "model" and nodes[0]["parent"] == ""
    layers = [str(n) for n in log.layer_name.values]
    assert {n["name"] for n in nodes if n["layer"]} == set(layers)
    assert view.chart == "horizon" and view.variable == "gradient" and view.stat == "mean_abs"
    assert view.expanded == ["model"], "the tree starts collapsed below the model"
    series = view.series
    values = series["values"]
    assert values.shape == (len(nodes), log.sizes["snapshot"], 1)
    assert series["x"].tolist() == log.snapshot_step.values.tolist()
    # Oracle: a layer node's value is the layer's gradient l1 over its weight count.
    l1 = log.grad_stat.sel(stat="l1").values
    params = log.layer_params.values
    for i, name in enumerate(layers):
        row = names.index(name)
        np.testing.assert_allclose(values[row, :, 0], l1[:, i] / params[i], rtol=1e-5)
    # The model node pools every layer: sum of l1 over all weights.
    np.testing.assert_allclose(values[0, :, 0], l1.sum(axis=1) / params.sum(), rtol=1e-5)


@pytest.mark.parametrize(
    ("chart", "parts"),
    [
        ("line", ["mean_abs"]),
        ("box", ["min", "q1", "mean", "q3", "max"]),
        ("bands", ["0.1", "0.01", "0.001", "0.0001"]),
    ],
)
def test_chart_kinds_send_their_parts(log, chart, parts):
    view = LayerView(log, chart=chart, variable="weight")
    assert view.series["chart"] == chart
    assert view.series["parts"] == parts
    assert view.series["values"].shape[2] == len(parts)
    if chart == "bands":
        v = view.series["values"]
        finite = v[np.isfinite(v)]
        assert ((finite >= 0) & (finite <= 1)).all()
        # Nested thresholds: the fraction under 0.1 holds the fraction under 0.01, …
        assert (np.diff(np.nan_to_num(v), axis=2) <= 1e-6).all()


def test_choices_update_the_series_and_bad_values_are_refused(log):
    view = LayerView(log)
    view.stat = "l2"
    assert view.series["stat"] == "l2"
    layers = list(log.layer_name.values)
    row = [n["name"] for n in view.tree["nodes"]].index(layers[0])
    np.testing.assert_allclose(
        view.series["values"][row, :, 0], log.grad_stat.sel(stat="l2").values[:, 0], rtol=1e-5
    )
    for name, bad in [
        ("chart", "pie"),
        ("variable", "bias"),
        ("stat", "kurtosis"),
        ("normalize", "row"),
        ("expanded", ["model", "nope"]),
        ("layer", "nope"),
        ("filter_index", log.sizes["filter"]),
        ("filter_index", -1),
        ("picked_steps", [10**9]),
        ("time_window", (5, 5)),
    ]:
        before = getattr(view, name)
        with pytest.raises(InvalidSelectionError):
            setattr(view, name, bad)
        assert getattr(view, name) == before
    with pytest.raises(InvalidParameterError):
        LayerView(log, max_points=1)
    with pytest.raises(InvalidParameterError):
        LayerView(log, colour="red")
    with pytest.raises(InvalidSelectionError):
        LayerView(log, chart="pie")
    with pytest.raises(LogFormatError):
        LayerView(log.drop_vars("filter_cosine"))


def test_the_page_may_set_only_its_choices(log, caplog):
    view = LayerView(log)
    with caplog.at_level(logging.WARNING):
        view.set_state({"chart": "box", "same_scale": True, "normalize": "snapshot"})
        assert (view.chart, view.same_scale, view.normalize) == ("box", True, "snapshot")
        view.set_state({"chart": "pie"})
        assert view.chart == "box"
        view.set_state({"series": {}})
    assert view.series["chart"] == "box"
    assert "refused" in caplog.text or "only the kernel sets" in caplog.text


def test_a_zoomed_window_requeries_the_series(log):
    view = LayerView(log)
    steps = log.snapshot_step.values
    view.time_window = (int(steps[3]), int(steps[6]))
    x = view.series["x"].tolist()
    assert x[0] <= steps[3] and x[-1] >= steps[6] and len(x) < len(steps)
    view.time_window = None
    assert view.series["x"].tolist() == steps.tolist()


# ------------------------------------------------------------------ requests
def test_filters_request_answers_one_row_per_filter(log):
    view = LayerView(log)
    layer = str(log.layer_name.values[1])
    answer = request(view, "filters", layer=layer)
    result = answer["result"]
    mine = np.flatnonzero(log.filter_layer.values == layer)
    assert result["filters"].tolist() == mine.tolist()
    np.testing.assert_allclose(
        result["values"], log.filter_cosine.values[:, mine].T, rtol=1e-6, equal_nan=True
    )
    coarse = request(view, "filters", layer=layer, columns=4)["result"]
    assert coarse["values"].shape == (mine.size, coarse["x"].size) and coarse["level"] > 0
    steps = log.snapshot_step.values
    window = request(view, "filters", layer=layer, start=int(steps[2]), stop=int(steps[5]))
    assert window["result"]["x"].tolist() == steps[2:6].tolist()


@pytest.mark.parametrize(
    "params",
    [
        {"layer": "nope"},
        {"layer": 3},
        {"layer": "LAYER", "columns": 1},
        {"layer": "LAYER", "columns": 10**6},
        {"layer": "LAYER", "columns": True},
        {"layer": "LAYER", "start": 50, "stop": 10},
        {"layer": "LAYER", "start": 5},
        {"layer": "LAYER", "start": -5, "stop": 10},
        {"layer": "LAYER", "colour": "red"},
        {},
    ],
)
def test_bad_filters_requests_are_answered_with_errors(log, params):
    view = LayerView(log)
    params = {k: (str(log.layer_name.values[0]) if v == "LAYER" else v) for k, v in params.items()}
    answer = request(view, "filters", rid=7, **params)
    assert answer["id"] == 7 and "error" in answer and "result" not in answer


def test_malformed_and_unknown_requests(log):
    view = LayerView(log)
    assert "error" in view.handle_request({"type": "request", "id": 1, "method": "nope"})
    assert "error" in view.handle_request({"type": "request", "id": "x", "method": "filters"})
    assert "error" in view.handle_request(["not", "a", "dict"])


# ------------------------------------------------------------------ picks and selection
def _oracle(log: xr.Dataset, steps: list[int], k: int = 10) -> set[int]:
    """Lowest-cosine filters at each pick, NaN excluded, ties to the lower index; intersection."""
    snap_steps = log.snapshot_step.values
    cos = log.filter_cosine.values.astype(np.float64)
    sets = []
    for step in steps:
        s = int(np.searchsorted(snap_steps, step, "right")) - 1
        row = cos[s]
        order = [int(i) for i in np.lexsort((np.arange(row.size), row)) if np.isfinite(row[i])]
        sets.append(set(order[:k]))
    return set.intersection(*sets)


def test_picks_list_the_lowest_cosine_filters_and_expand_the_tree(log):
    view = LayerView(log)
    steps = log.snapshot_step.values
    one = [int(steps[4])]
    view.picked_steps = one
    got = {f["filter"] for f in view.changed_filters}
    assert got == _oracle(log, one) and len(got) == 10
    layers = {f["layer"] for f in view.changed_filters}
    assert layers <= set(view.expanded)
    parents = {n["name"]: n["parent"] for n in view.tree["nodes"]}
    for layer in layers:
        assert parents[layer] in view.expanded
    two = [int(steps[4]), int(steps[5])]
    view.picked_steps = two
    assert {f["filter"] for f in view.changed_filters} == _oracle(log, two)
    # A pick between snapshots counts as the snapshot at or before it.
    between = [int(steps[4]) + 3]
    assert step_snapshots(log, between).tolist() == [4]
    assert set(lowest_cosine_filters(log, between)["filter"]) == _oracle(log, one)
    # The first snapshot has no previous one: nothing to rank.
    view.picked_steps = [int(steps[0])]
    assert view.changed_filters == []
    view.picked_steps = []
    assert view.changed_filters == []


def test_semantic_selection_round_trips_through_a_shared_selection(log):
    selection = Selection()
    view = LayerView(log, selection=selection)
    other = LayerView(log, selection=selection)
    layer = str(log.layer_name.values[2])
    view.set_state({"layer": layer, "filter_index": 5})
    assert (selection.layer, selection.filter_index) == (layer, 5)
    assert (other.layer, other.filter_index) == (layer, 5)
    step = int(log.snapshot_step.values[6])
    selection.picked_steps = [step]
    assert view.picked_steps == [step] and len(view.changed_filters) == 10
    with pytest.raises(InvalidSelectionError):
        selection.layer = "not a layer"
    assert selection.layer == layer
    assert view.link_id == selection.link_id
    view.close()
    other.close()


def test_a_layer_selected_elsewhere_opens_its_parents(log):
    selection = Selection()
    view = LayerView(log, selection=selection)
    layer = str(log.layer_name.values[3])
    parents = {n["name"]: n["parent"] for n in view.tree["nodes"]}
    selection.layer = layer
    assert parents[layer] in view.expanded and "model" in view.expanded
    assert layer not in view.expanded, "the layer shows; its filters open only when asked"


def test_accessor_and_lazy_export(log):
    assert fs.LayerView is LayerView
    assert isinstance(log.filterscope.layer_view(chart="line"), LayerView)


# ------------------------------------------------------------------ ResNet-50 scale
def test_resnet50_tree_is_sent_collapsed_and_filters_come_per_layer(r50):
    view = LayerView(r50)
    nodes = view.tree["nodes"]
    layers = [n for n in nodes if n["layer"]]
    conv = [n for n in layers if n["name"] != "fc"]
    assert len(conv) == 53 and sum(n["filters"] for n in conv) == 26_560
    assert {n["level"] for n in nodes} == {"model", "stage", "block", "layer"}
    assert view.expanded == ["model"]
    # The startup state holds node series only, never filter rows.
    assert view.series["values"].shape == (len(nodes), r50.sizes["snapshot"], 1)
    widest = max(conv, key=lambda n: n["filters"])
    answer = request(view, "filters", layer=widest["name"], columns=6)["result"]
    assert answer["values"].shape == (2048, answer["x"].size)
    assert answer["values"].dtype == np.float32
    expected = node_series(view._index, columns=800).values[:, :, 0]
    np.testing.assert_allclose(view.series["values"][:, :, 0], expected, rtol=1e-6)
