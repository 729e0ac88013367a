"""Index queries on a real log: level choice, exact drill-down, hierarchy, staleness, live runs."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import zarr
from log_helpers.tiny import record_resumable_run

from filterscope.data.synthetic import synthetic_log
from filterscope.errors import InvalidParameterError, LogFormatError
from filterscope.index import Index, build_index, choose_level, open_index
from filterscope.log.reader import open_log


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    path = tmp_path_factory.mktemp("query") / "log"
    synthetic_log(
        path, n_samples=600, n_classes=12, n_snapshots=130, layers="resnet18", steps_per_snapshot=9
    )
    return path, open_index(path)


def test_open_index_builds_once_and_covers_every_variable(run):
    path, idx = run
    log = open_log(path)
    assert not idx.stale
    assert idx.committed == {"snapshot": 130, "step": 129 * 9}
    per_time = {n for n, v in log.data_vars.items() if {"snapshot", "step"} & set(v.dims)}
    assert set(idx.variables) == (per_time - {"pred"}) | {
        "class_error",
        "cluster_error",
        "node_weight_stat",
        "node_grad_stat",
        "node_change_ratio",
    }
    before = zarr.open_group(str(path), path="index", mode="r").attrs["committed"]
    assert open_index(path).committed == before  # fresh: nothing rebuilt


@pytest.mark.parametrize("columns", [7, 40, 64, 65, 100, 130, 500])
def test_query_picks_the_level_that_fills_the_columns(run, columns):
    _, idx = run
    for var, time, start, stop in (
        ("val_error", None, 0, 130),
        ("loss", slice(100, 1000), 100, 1001),
    ):
        out = idx.query(var, time=time, columns=columns)
        n = stop - start
        assert out.attrs["level"] == choose_level(start, stop, columns, idx.levels(var))
        buckets = out.sizes[out.dims[1]]
        assert buckets <= columns
        if out.attrs["level"]:
            assert buckets > columns / 2 - 1  # the finer level would not have fitted
        else:
            assert buckets == n
        assert (out.bucket_start.values[1:] == out.bucket_stop.values[:-1] + 1).all()


def test_buckets_summarise_the_raw_values_they_cover(run):
    path, idx = run
    log = open_log(path)
    out = idx.query("filter_cosine", time=slice(37, 121), columns=10, node="layer2.0.conv1")
    assert out.attrs["level"] == 4  # buckets of 16 overlapping [37, 121]: 32..127
    assert out.bucket_start.values[0] == 32 and out.bucket_stop.values[-1] == 127
    raw = log.filter_cosine.sel(filter=out["filter"]).values
    for i, (a, b) in enumerate(zip(out.bucket_start.values, out.bucket_stop.values, strict=True)):
        part = raw[a : b + 1]
        np.testing.assert_allclose(out.sel(agg="min").values[i], np.nanmin(part, 0), rtol=1e-7)
        np.testing.assert_allclose(out.sel(agg="max").values[i], np.nanmax(part, 0), rtol=1e-7)
        np.testing.assert_allclose(out.sel(agg="mean").values[i], np.nanmean(part, 0), rtol=1e-5)
        np.testing.assert_array_equal(out.sel(agg="count").values[i], (~np.isnan(part)).sum(0))
    assert set(out.filter_layer.values) == {"layer2.0.conv1"}


def test_drill_down_returns_the_exact_raw_values(run):
    path, idx = run
    log = open_log(path)
    cls = idx.query("correct", time=slice(10, 30), class_=3, level=0)
    expected = log.correct.sel(snapshot=slice(10, 30), sample=cls["sample"]).values
    np.testing.assert_array_equal(cls.sel(agg="mean").values, expected)
    assert (cls.label == 3).all() and cls.sizes["sample"] == 50
    p = idx.query("p_true", rows=[5, 1, 600 - 1], level=0).sel(agg="max")
    np.testing.assert_array_equal(p.values, log.p_true.isel(sample=[5, 1, 599]).values)
    stat = idx.query("weight_stat", rows={"layer": 2, "stat": "l1"}, level=0).sel(agg="min")
    np.testing.assert_array_equal(stat.values, log.weight_stat.isel(layer=2).sel(stat="l1"))
    loss = idx.query("loss", time=slice(500, 520), level=0)
    np.testing.assert_array_equal(loss.sel(agg="mean").values, log.loss.values[500:521])
    assert loss.sizes["step"] == 21 and loss.attrs["bucket_size"] == 1


def test_bad_queries_raise_typed_errors(run):
    _, idx = run
    with pytest.raises(InvalidParameterError, match="no variable 'accuracy'"):
        idx.query("accuracy")
    with pytest.raises(InvalidParameterError, match=r"level must be .* 0\.\.\d+"):
        idx.query("val_error", level=99)
    with pytest.raises(InvalidParameterError, match="not found on 'stat'"):
        idx.query("weight_stat", rows={"stat": "kurtosis"})
    with pytest.raises(InvalidParameterError, match="holds no snapshot"):
        idx.query("val_error", time=slice(500, 600))
    with pytest.raises(InvalidParameterError, match="columns must be"):
        idx.query("val_error", columns=0)
    with pytest.raises(InvalidParameterError, match="no node"):
        idx.query("filter_l2", node="layer9")
    with pytest.raises(InvalidParameterError, match="no dimension"):
        idx.query("val_error", rows={"filter": 3})
    with pytest.raises(InvalidParameterError, match=r"cluster must be in 0\.\.3"):
        idx.query("class_error", cluster=7)
    with pytest.raises(InvalidParameterError, match="no dimension 'epoch'"):
        idx.labels("epoch")
    # Parameter errors are ValueErrors too, as before.
    with pytest.raises(ValueError):
        idx.query("val_error", level=-1)


def test_missing_index_is_a_typed_error(tmp_path, run):
    path, _ = run
    with pytest.raises(LogFormatError, match="no filterscope index"):
        Index(open_log(path), tmp_path / "nothing")


def test_a_live_run_keeps_its_index_current(tmp_path):
    torch.set_num_threads(1)
    path = tmp_path / "run"
    record_resumable_run(path, 7, tmp_path / "model.pt")
    idx = open_index(path)
    first = idx.committed["snapshot"]
    # The run goes on: more snapshots are committed.
    record_resumable_run(path, 9, tmp_path / "model.pt", mode="a")
    idx.refresh(open_log(path))
    assert idx.committed["snapshot"] > first and not idx.stale
    full = build_index(open_log(path), tmp_path / "full")
    for var in idx.variables:
        a = idx.query(var, level=0)
        b = full.query(var, level=0)
        np.testing.assert_array_equal(a.values, b.values, err_msg=var)
        top = idx.levels(var)
        np.testing.assert_array_equal(
            idx.query(var, level=top).values, full.query(var, level=top).values, err_msg=var
        )
