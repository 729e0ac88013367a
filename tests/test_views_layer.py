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
from filterscope.plots.views import normalize_rows
from filterscope.views import LayerView, Selection
from filterscope.views.layer import NORMALIZE, ROW_NAN, ROW_STEPS, encode_rows

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


def decode_rows(answer: dict) -> np.ndarray:
    """The page's ``decodeFilterRows``: float32 values of a filters answer's uint8 codes."""
    codes = np.asarray(answer["values"])
    lo = np.asarray(answer["lo"], dtype=np.float64)
    hi = np.asarray(answer["hi"], dtype=np.float64)
    if answer["normalize"] == "filter":
        lo, hi = lo[:, None], hi[:, None]
    elif answer["normalize"] == "snapshot":
        lo, hi = lo[None, :], hi[None, :]
    out = lo + (hi - lo) * codes / ROW_STEPS
    return np.where(codes == ROW_NAN, np.nan, out).astype(np.float32)


def colour_steps(values, mode: str, global_range: tuple[float, float]) -> np.ndarray:
    """The page's colour step of each cell (``colorIndex`` over 0..1, 256 steps), -1 for NaN."""
    t = normalize_rows(values, mode, global_range)  # type: ignore[arg-type]
    steps = np.clip(np.floor(np.nan_to_num(t) * 256), 0, 255)
    return np.where(np.isnan(t), -1, steps).astype(np.int64)


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
    cosine = log.filter_cosine.values[:, mine].T
    np.testing.assert_allclose(view._filter_rows(layer).values, cosine, rtol=1e-6, equal_nan=True)
    # One byte per cell, per filter's range (the trait's default): within half a code.
    assert result["normalize"] == "filter" and result["values"].dtype == np.uint8
    assert result["values"].shape == cosine.shape and result["lo"].shape == (mine.size,)
    span = (result["hi"] - result["lo"]).astype(np.float64)[:, None]
    decoded = decode_rows(result)
    assert np.array_equal(np.isnan(decoded), np.isnan(cosine))
    assert np.nanmax(np.abs(decoded - cosine) - span / (2 * ROW_STEPS)) <= 1e-6
    view.normalize = "snapshot"
    assert request(view, "filters", layer=layer)["result"]["lo"].shape == (cosine.shape[1],)
    both = request(view, "filters", layer=layer, normalize="global")["result"]
    assert both["normalize"] == "global" and both["lo"].shape == (1,)
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
        {"layer": "LAYER", "normalize": "row"},
        {"layer": "LAYER", "normalize": 3},
        {"layer": "LAYER", "normalize": ["filter"]},
        {},
    ],
)
def test_bad_filters_requests_are_answered_with_errors(log, params):
    view = LayerView(log)
    params = {k: (str(log.layer_name.values[0]) if v == "LAYER" else v) for k, v in params.items()}
    answer = request(view, "filters", rid=7, **params)
    assert answer["id"] == 7 and "error" in answer and "result" not in answer


@pytest.mark.parametrize("mode", NORMALIZE)
def test_encoded_rows_colour_every_cell_as_float32_up_to_one_step(mode):
    rng = np.random.default_rng(3)
    nan = np.nan
    grids = [
        np.array([[nan, nan, nan], [0.7, 0.7, 0.7], [nan, 0.2, nan], [-1.0, 0.3, 1.0]]),
        np.array([[1.0, 0.99999994, 0.9999999], [0.9999998, 1.0, nan]]),  # float32 ulps near 1
        np.array([[np.inf, 0.5, 0.25], [-np.inf, 0.0, 1.0]]),
        np.array([[0.1], [nan], [0.9]]),
        np.full((2, 2), nan),
        np.array([[k / 254 for k in range(255)] + [(k + 0.5) / 254 for k in range(254)]]),
    ]
    for spread in (1.0, 1e-2, 1e-4, 1e-6):
        grid = 1 - spread * rng.random((37, 51)) ** 3
        grid[rng.random(grid.shape) < 0.05] = nan
        grids.append(np.maximum(grid, -1.0))
    for grid in grids:
        values = grid.astype(np.float32)
        codes, lo, hi = encode_rows(values, mode)
        assert codes.dtype == np.uint8 and codes.shape == values.shape
        assert lo.dtype == hi.dtype == np.float32
        decoded = decode_rows({"normalize": mode, "values": codes, "lo": lo, "hi": hi})
        finite = np.isfinite(values)
        assert np.array_equal(codes == ROW_NAN, ~finite)
        extent = (
            (float(values[finite].min()), float(values[finite].max())) if finite.any() else (0, 1)
        )
        for global_range in (extent, (-1.0, 1.0)):
            want = colour_steps(np.where(finite, values, nan), mode, global_range)
            got = colour_steps(decoded, mode, global_range)
            assert np.array_equal(want < 0, got < 0)
            assert np.abs(want - got).max(initial=0) <= 1, (mode, global_range, grid)
        # Each group's ends come back exactly: its normalised extent is the float32 one.
        axis = {"filter": 1, "snapshot": 0, "global": None}[mode]
        some = np.atleast_1d(finite.any(axis=axis))
        low = np.atleast_1d(np.where(np.isnan(decoded), np.inf, decoded).min(axis=axis))
        high = np.atleast_1d(np.where(np.isnan(decoded), -np.inf, decoded).max(axis=axis))
        np.testing.assert_array_equal(low[some], lo[some])
        np.testing.assert_array_equal(high[some], hi[some])
        assert np.isnan(lo[~some]).all() and np.isnan(hi[~some]).all()


def test_encode_rows_refuses_what_is_not_a_grid_or_a_mode():
    with pytest.raises(InvalidParameterError, match="2-D"):
        encode_rows(np.zeros(3), "filter")
    with pytest.raises(InvalidParameterError, match="normalize must be one of"):
        encode_rows(np.zeros((2, 2)), "row")
    codes, lo, hi = encode_rows(np.zeros((0, 4), np.float32), "snapshot")
    assert codes.shape == (0, 4) and np.isnan(lo).all() and lo.shape == hi.shape == (4,)


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
    # A quarter of float32's bytes: one per cell, and lo/hi per filter.
    assert answer["values"].dtype == np.uint8 and answer["lo"].shape == (2048,)
    floats = view._filter_rows(widest["name"], columns=6).values.astype(np.float32)
    assert answer["values"].nbytes + 2 * answer["lo"].nbytes <= floats.nbytes / 4 + 8 * 2048
    expected = node_series(view._index, columns=800).values[:, :, 0]
    np.testing.assert_allclose(view.series["values"][:, :, 0], expected, rtol=1e-6)
