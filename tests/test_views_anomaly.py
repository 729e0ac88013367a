"""AnomalyTable: the kernel side of paging, sorting, filtering, filter detail, samples and
thumbnails; bad requests; traits from the page; the link to the shared selection and a log;
detection of a planted group of samples by the engine the table shows."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import traitlets
from anomaly_result import planted_result
from e2e.tiny_run import record_tiny_run

import filterscope as fs
from filterscope.errors import InvalidParameterError
from filterscope.views import AnomalyTable, Selection
from filterscope.views._base import encode_response
from filterscope.views.anomaly import MAX_PAGE_ROWS, SORT_COLUMNS

XSS = "<img src=x onerror=alert(1)>"


@pytest.fixture(scope="module")
def planted():
    return planted_result((("conv1", 4), (XSS, 6)), n_samples=200)


@pytest.fixture
def view(planted):
    table = AnomalyTable(planted[0])
    yield table
    table.close()


def ask(view, method, **params):
    answer = view.handle_request({"type": "request", "id": 7, "method": method, "params": params})
    assert answer["id"] == 7
    return answer


def ok(view, method, **params):
    answer = ask(view, method, **params)
    assert "error" not in answer, answer.get("error")
    return answer["result"]


def error(view, method, **params):
    answer = ask(view, method, **params)
    assert "result" not in answer
    return answer["error"]


# ---------------------------------------------------------------------- construction
def test_show_returns_the_table_and_overview_holds_no_rows(planted):
    result, _ = planted
    shown = result.show()
    try:
        assert isinstance(shown, AnomalyTable) and fs.AnomalyTable is AnomalyTable
        data = shown.data
        assert data["n_rows"] == len(result.table) == 10
        assert data["layers"] == ["conv1", XSS]  # in the analysis's order, as text
        assert data["n_anomaly"] == int(result.table["anomaly"].sum())
        assert data["thumbnails"] is False and data["h1"] is None
        # No per-filter column travels in the overview: rows are paged.
        assert not any(
            isinstance(v, np.ndarray) and v.shape == (len(result.table),) for v in data.values()
        )
    finally:
        shown.close()


def test_refuses_what_is_not_an_analysis_result():
    with pytest.raises(InvalidParameterError, match="AnalysisResult"):
        AnomalyTable(pd.DataFrame())


# ---------------------------------------------------------------------- rows
def test_pages_cover_every_row_once_in_rank_order(view, planted):
    table = planted[0].table
    seen = []
    offset = 0
    while True:
        page = ok(view, "rows", offset=offset, limit=3)
        assert page["total"] == len(table) and page["offset"] == offset
        seen += page["filter"].tolist()
        offset += 3
        if offset >= page["total"]:
            break
    assert seen == table["filter"].tolist()  # the analysis's ranking: score, then filter


@pytest.mark.parametrize("column", SORT_COLUMNS)
@pytest.mark.parametrize("descending", [False, True])
def test_every_column_sorts(view, planted, column, descending):
    table = planted[0].table
    page = ok(view, "rows", limit=MAX_PAGE_ROWS, sort=column, descending=descending)
    key = table[column].astype(str) if column == "layer" else table[column].astype(float)
    got = np.array([key[table.index[table["filter"] == f][0]] for f in page["filter"]])
    finite = got[~pd.isna(got)]
    assert list(finite) == sorted(finite, reverse=descending), column
    # NaN (the CH index of K = 1) sorts last in both directions.
    nan = pd.isna(got)
    assert not nan.any() or nan[np.argmax(nan) :].all()
    assert sorted(page["filter"].tolist()) == sorted(table["filter"].tolist())


def test_rows_filter_by_layer_k_flag_and_score(view, planted):
    table = planted[0].table
    page = ok(view, "rows", layers=[XSS], limit=50)
    assert page["total"] == int((table["layer"] == XSS).sum()) == 6
    assert set(page["layer"].tolist()) == {1}
    k = int(table["k"].iloc[0])
    assert ok(view, "rows", ks=[k])["total"] == int((table["k"] == k).sum())
    flagged = ok(view, "rows", flag="anomaly", limit=50)
    assert sorted(flagged["filter"].tolist()) == sorted(table.loc[table.anomaly, "filter"])
    assert ok(view, "rows", flag="normal")["total"] == int((~table["anomaly"]).sum())
    low = float(table["score"].median())
    assert ok(view, "rows", score_min=low)["total"] == int((table["score"] >= low).sum())
    high = float(table["score"].max())
    window = ok(view, "rows", score_min=low, score_max=high, limit=50)
    assert (window["score"] >= low).all() and (window["score"] <= high).all()
    empty = ok(view, "rows", score_min=high + 1)
    assert empty["total"] == 0 and len(empty["filter"]) == 0


# ---------------------------------------------------------------------- bad requests
@pytest.mark.parametrize(
    ("params", "match"),
    [
        ({"offset": 10}, "past the last"),
        ({"offset": -1}, "offset must be >= 0"),
        ({"offset": True}, "whole number"),
        ({"limit": 0}, "limit must be in"),
        ({"limit": MAX_PAGE_ROWS + 1}, "limit must be in"),
        ({"sort": "outlier_ids"}, "sort must be one of"),
        ({"descending": "yes"}, "true or false"),
        ({"flag": "weird"}, "flag must be one of"),
        ({"layers": ["nope"]}, "not in this analysis"),
        ({"layers": "conv1"}, "list of layer names"),
        ({"ks": [0]}, "a K must be >= 1"),
        ({"score_min": 2.0, "score_max": 1.0}, "above score_max"),
        ({"score_min": "1"}, "a number or null"),
        ({"colour": 1}, "bad params"),
    ],
)
def test_bad_rows_requests_get_an_error_and_the_view_keeps_working(view, params, match):
    assert match in error(view, "rows", **params)
    assert ok(view, "rows", limit=2)["total"] == 10


def test_bad_detail_requests(view):
    assert "filter must be in 0..9" in error(view, "filter", filter=10)
    assert "whole number" in error(view, "filter", filter="3")
    assert "offset 1000" in error(view, "samples", offset=1000)
    assert "at most 64" in error(view, "thumbnails", samples=list(range(65)))
    assert "a sample must be in" in error(view, "thumbnails", samples=[999])
    assert "no thumbnails" in error(view, "thumbnails", samples=[0])
    assert "has no request" in error(view, "drop_tables")
    big = {"type": "request", "id": 3, "method": "rows", "params": {"layers": ["x" * 70_000]}}
    assert "limited to" in view.handle_request(big)["error"]
    malformed = view.handle_request({"type": "request", "method": "rows"})
    assert "integer 'id'" in malformed["error"]
    assert ok(view, "filter", filter=0)["filter"] == 0


def test_an_answer_over_the_limit_is_refused(view, monkeypatch):
    import filterscope.views.anomaly as anomaly

    monkeypatch.setattr(anomaly, "MAX_ANSWER_BYTES", 1000)
    assert "answers are limited to 1000 bytes" in error(view, "filter", filter=0)
    monkeypatch.undo()
    assert ok(view, "filter", filter=0)["points"].shape == (200, 2)


def _number_lists(value) -> bool:
    """Whether a JSON-able value holds a list of numbers longer than a shape."""
    if isinstance(value, dict):
        return any(_number_lists(v) for k, v in value.items() if k != "shape")
    if isinstance(value, list):
        return any(isinstance(v, int | float) for v in value) or any(map(_number_lists, value))
    return False


def test_answers_travel_as_binary_buffers(view):
    message, buffers = encode_response(ask(view, "rows", limit=MAX_PAGE_ROWS))
    assert len(buffers) >= len(SORT_COLUMNS)
    assert not _number_lists(message)
    assert all(
        isinstance(v, dict) and set(v) == {"dtype", "shape"}
        for k, v in message["result"].items()
        if k not in ("offset", "total", "sort", "descending")
    )
    message, buffers = encode_response(ask(view, "filter", filter=3))
    assert not _number_lists(message)
    assert message["result"]["points"]["shape"] == [200, 2]
    assert sum(b.nbytes for b in buffers) < 8 * 2**20


# ---------------------------------------------------------------------- detail and samples
def test_filter_detail_matches_the_dataset(view, planted):
    ds = planted[0].dataset
    for f in range(ds.sizes["filter"]):
        d = ok(view, "filter", filter=f)
        k = int(ds.n_clusters[f])
        assert d["k"] == k and d["mean"].shape == (k, 2) and d["covariance"].shape == (k, 2, 2)
        np.testing.assert_array_equal(d["points"], ds.points.values[f].astype(np.float32))
        np.testing.assert_array_equal(d["labels"], ds.labels.values[f])
        np.testing.assert_array_equal(d["outliers"], np.flatnonzero(ds.outlier.values[f]))
        np.testing.assert_array_equal(d["covariance"], ds.covariance.values[f, :k])
        assert d["axes"] == "PC 1 × PC 2"


def test_filter_detail_names_the_residual_axis(planted):
    result = planted[0]
    ds = result.dataset.copy()
    ds.attrs["features"] = "pca-residual"
    residual = type(result)(table=result.table, dataset=ds, gmm=result.gmm)
    assert ok(fs.AnomalyTable(residual), "filter", filter=0)["axes"] == "PC 1 × PCA residual"


def test_detects_the_planted_group_and_lists_its_samples(view, planted):
    result, truth = planted
    table = result.table
    flagged = table.loc[table["anomaly"], "filter"].to_numpy()
    assert len(flagged) >= 2
    # Every flagged filter holds a planted group, and its outliers are mostly planted samples.
    for f in flagged:
        assert truth.kind[f] == "planted"
        outliers = ok(view, "filter", filter=int(f))["outliers"]
        hits = int(truth.outliers[f, outliers].sum())
        assert hits >= 0.8 * len(outliers), (hits, len(outliers))  # precision
        assert hits >= 0.8 * truth.outliers[f].sum()  # recall
    # The top of the ranking is planted filters, whatever the flag.
    top = ok(view, "rows", limit=len(flagged))["filter"]
    assert all(truth.kind[f] == "planted" for f in top)
    # The sample view: every isolated sample once, with its filter count and layers.
    samples = ok(view, "samples", limit=MAX_PAGE_ROWS)
    outlier = result.dataset.outlier.values
    isolated = np.flatnonzero(outlier.any(0))
    assert samples["total"] == len(isolated) == view.data["n_isolated"]
    assert sorted(samples["sample"].tolist()) == isolated.tolist()
    np.testing.assert_array_equal(samples["count"], outlier[:, samples["sample"]].sum(0))
    assert (np.diff(samples["count"]) <= 0).all()  # most isolating filters first
    layer_names = np.array(view.data["layers"])
    layer_of = result.dataset.filter_layer.values
    ptr = samples["layer_ptr"]
    for i, s in enumerate(samples["sample"]):
        got = set(layer_names[samples["layer_codes"][ptr[i] : ptr[i + 1]]])
        assert got == set(layer_of[outlier[:, s]])
    assert np.isnan(samples["loss"]).all() and (samples["correct"] == -1).all()


# ---------------------------------------------------------------------- traits
def test_page_sets_filter_and_sample_but_not_data(view):
    view.set_state({"filter": 4, "sample": 17})
    assert view.filter == 4 and view.sample == 17
    assert view.selection.sample_index == 17  # without a log: the result's sample position
    before = dict(view.data)
    view.set_state({"data": {}})
    assert view.data.keys() == before.keys()
    view.set_state({"filter": 99})
    assert view.filter == 4
    with pytest.raises(traitlets.TraitError, match="filter must be in"):
        view.filter = -1
    view.selection.sample_index = 5
    assert view.sample == 5
    view.selection.sample_index = 5000  # not a sample of this analysis
    assert view.sample is None


def test_thumbnails_from_the_result(planted):
    thumbs = np.arange(200 * 4 * 4, dtype=np.uint8).reshape(200, 4, 4, 1)
    result, _ = planted_result((("conv1", 2),), n_samples=200, thumbnails=thumbs)
    table = AnomalyTable(result)
    try:
        assert table.data["thumbnails"] and table.data["thumbnail_shape"] == [4, 4]
        answer = ok(table, "thumbnails", samples=[3, 7])
        assert answer["samples"].tolist() == [3, 7]
        png = answer["png"].tobytes()
        first = png[answer["offsets"][0] : answer["offsets"][1]]
        assert first.startswith(b"\x89PNG") and png[answer["offsets"][1] :].startswith(b"\x89PNG")
    finally:
        table.close()


# ---------------------------------------------------------------------- with a log
@pytest.fixture(scope="module")
def tiny_log(tmp_path_factory):
    return record_tiny_run(tmp_path_factory.mktemp("anomaly") / "log.zarr", epochs=2)


def test_log_links_filters_samples_thumbnails_and_losses(tiny_log):
    log = tiny_log
    names = log.filter_layer.values.astype(object).astype(str)
    conv = [(str(n), int((names == n).sum())) for n in pd.unique(names)[:2]]
    n = int(log.sizes["sample"])
    ids = np.asarray(log.sample_id.values)[::-1].copy()  # the probe in another order
    result, _ = planted_result(conv, n_samples=n, sample_ids=ids, random_state=1)
    selection = Selection()
    table = AnomalyTable(result, log=log, selection=selection)
    layer_view = fs.LayerView(log, selection=selection)
    validation = fs.ValidationView(log, selection=selection)
    try:
        assert table.data["thumbnails"] and table.data["has_log"]
        assert "analysis group" in table.data["h1_reason"]
        f = int(result.table["filter"].iloc[0])
        table.filter = f
        assert selection.layer == str(result.dataset.filter_layer.values[f])
        channel = int(result.dataset.filter_channel.values[f])
        at = selection.filter_index
        assert str(log.filter_layer.values[at]) == selection.layer
        assert int(log.filter_channel.values[at]) == channel
        # A LayerView of the same selection shows the filter's row.
        assert (layer_view.layer, layer_view.filter_index) == (selection.layer, at)
        table.sample = 0  # probe sample 0 is the log's last sample
        assert selection.sample_index == n - 1
        assert validation.sample_index == n - 1  # selected in a ValidationView too
        selection.sample_index = 0
        assert table.sample == n - 1
        thumbs = ok(table, "thumbnails", samples=[0])
        assert len(thumbs["png"]) > 0
        samples = ok(table, "samples", limit=MAX_PAGE_ROWS)
        positions = n - 1 - samples["sample"]
        want = log.sample_loss.isel(snapshot=-1).values[positions]
        np.testing.assert_array_equal(samples["loss"], want.astype(np.float32))
        correct = log.correct.isel(snapshot=-1).values[positions]
        np.testing.assert_array_equal(samples["correct"], correct.astype(np.int8))
    finally:
        for view in (table, layer_view, validation):
            view.close()


def test_h1_panel_from_the_logs_analysis_group(tmp_path):
    import torch
    from log_helpers.analysed import ANALYZE_KWARGS, record_analysed_lenet

    from filterscope.data import digits
    from filterscope.gmm import overfitting_curve

    torch.manual_seed(0)
    train = digits("val")
    path = tmp_path / "run"
    net, val_x, val_y = record_analysed_lenet(path, train.x[:48], train.y[:48])
    log = fs.open_log(path)
    result = fs.analyze(net, (val_x, val_y), **ANALYZE_KWARGS)
    table = AnomalyTable(result, log=log)
    try:
        h1 = table.data["h1"]
        curve = overfitting_curve(log, analysis=fs.open_log(path, group="analysis")).table
        assert h1["step"].tolist() == curve["step"].tolist() == [0, 4, 8, 9]
        np.testing.assert_array_equal(h1["n_anomaly"], curve["n_anomaly"])
        np.testing.assert_array_equal(h1["gap"], curve["gap"].to_numpy())
        assert h1["val_set"] == "val" and table.data["h1_reason"] == ""
        same = log.filterscope.anomaly_table(result)
        assert same.data["has_log"] and same.data["h1"]["step"].tolist() == [0, 4, 8, 9]
        same.close()
        # Filters map onto the log's by layer and channel; samples by id.
        assert table.data["log_filters"]
        f = int(result.table["filter"].iloc[0])
        table.filter = f
        at = table.selection.filter_index
        assert str(log.filter_layer.values[at]) == str(result.dataset.filter_layer.values[f])
    finally:
        table.close()
