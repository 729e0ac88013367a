"""One data path for every view: a log knows its store, ``index_of`` reaches (or builds) its
index, and the report's figures draw exactly what ``Index.query`` answers for their width."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import xarray as xr
from bokeh.models import ColumnDataSource, GlyphRenderer
from log_helpers.tiny import record_resumable_run

import filterscope as fs
from filterscope.data.synthetic import synthetic_log
from filterscope.dynamics import from_arrays
from filterscope.errors import InvalidParameterError, LogFormatError
from filterscope.index import Index, choose_level, index_of
from filterscope.index.summaries import best_value, class_accuracy, last_value, layer_mean_abs
from filterscope.log.reader import eval_set_names, log_path
from filterscope.plots import training_figures
from filterscope.plots.figures import LINE_COLUMNS, MAX_COLUMNS
from filterscope.plots.report import summary


@pytest.fixture(scope="module")
def long_run(tmp_path_factory):
    """A log longer than a figure is wide: 2000 steps, 400 snapshots."""
    path = tmp_path_factory.mktemp("data_path") / "log"
    synthetic_log(
        path,
        n_samples=120,
        n_classes=12,
        n_snapshots=400,
        layers="resnet18",
        plant=False,
        steps_per_snapshot=5,
    )
    return path


# ------------------------------------------------------------------ a log knows its store
def test_open_log_remembers_its_directory_through_common_operations(long_run):
    log = fs.open_log(long_run)
    where = long_run.absolute()
    assert log.encoding["filterscope_path"] == str(where)
    assert log.attrs["filterscope_path"] == str(where)
    kept = {
        "isel": log.isel(snapshot=slice(0, 10)),
        "sel": log.sel(step=slice(10, 20)),
        "subset": log[["loss", "val_error"]],
        "arithmetic": log[["loss"]] * 2,
        "reduction": log[["val_error"]].mean("snapshot"),
        "merge": xr.merge([log[["loss"]], xr.Dataset({"extra": 1})]),  # drops the encoding
        "where": log[["val_error"]].where(log.val_error > 0.5),  # drops the encoding
        "eval set": fs.open_log(long_run, eval_set="val"),
    }
    for name, ds in kept.items():
        assert log_path(ds) == where, name
    assert log_path(from_arrays(np.ones((3, 2), bool), labels=[0, 1])) is None


def test_open_log_parameter_errors_name_the_valid_values(long_run):
    with pytest.raises(InvalidParameterError, match=r"no evaluation set 'test'; it has \['val'\]"):
        fs.open_log(long_run, eval_set="test")
    with pytest.raises(InvalidParameterError, match="no group 'analysis'"):
        fs.open_log(long_run, group="analysis")
    with pytest.raises(ValueError):  # still a ValueError for callers that caught that
        fs.open_log(long_run, eval_set="test")


def test_eval_set_names_follow_the_log_order():
    log = xr.Dataset(
        {
            "extra_loss": ("snapshot", np.ones(2)),
            "test_error": ("snapshot", np.ones(2)),
            "val_loss": ("snapshot", np.ones(2)),
            "train_error": ("step", np.ones(4)),  # per step: the training error, not a set
        },
        attrs={"eval_sets": ["val", "test", "missing"]},
    )
    assert eval_set_names(log) == ["val", "test", "extra"]


# ------------------------------------------------------------------ index_of
def test_index_of_builds_once_then_extends_as_the_log_grows(tmp_path, capsys, monkeypatch):
    torch.set_num_threads(1)
    path = tmp_path / "run"
    record_resumable_run(path, 5, tmp_path / "w.pt", n_samples=24)
    log = fs.open_log(path)
    with pytest.raises(LogFormatError, match="no filterscope index"):
        index_of(log, build=False)
    idx = fs.index_of(log.isel(snapshot=slice(0, 1)), progress=True)  # any selection will do
    assert isinstance(idx, Index) and not idx.stale
    assert idx.committed == {"step": 5, "snapshot": log.sizes["snapshot"]}
    assert "indexing run" in capsys.readouterr().err  # the progress bar
    # Current: nothing is built again.
    import filterscope.index.core as core

    calls = []
    real = core.build_

    def counting(*args, **kwargs):
        calls.append(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(core, "build_", counting)
    again = log.filterscope.index(progress=False)
    assert calls == [] and again.committed == idx.committed
    assert capsys.readouterr().err == ""
    # The run goes on: the next call extends the index to the new snapshots.
    record_resumable_run(path, 6, tmp_path / "w.pt", mode="a", n_samples=24)
    assert index_of(log, build=False).stale  # build=False never writes
    grown = index_of(log, progress=False)
    assert len(calls) == 1 and not grown.stale
    assert grown.committed["step"] == 11 and grown.committed["snapshot"] > idx.committed["snapshot"]
    np.testing.assert_array_equal(
        grown.query("loss", level=0).sel(agg="mean").values,
        fs.open_log(path).loss.values.astype(np.float32),
    )


def test_index_of_a_log_built_in_memory_says_what_to_do():
    log = from_arrays(np.ones((3, 2), bool), labels=[0, 1])
    with pytest.raises(InvalidParameterError, match=r"build_index\(log, store=path\)"):
        index_of(log)
    with pytest.raises(InvalidParameterError, match="not opened from a path"):
        log.filterscope.index()
    with pytest.raises(InvalidParameterError, match="got int"):
        index_of(3)  # type: ignore[arg-type]


# ------------------------------------------------------------------ figures == Index.query
def _sources(fig) -> list[ColumnDataSource]:
    return [r.data_source for r in fig.renderers if isinstance(r, GlyphRenderer)]


def _by_title(layout):
    return {f.title.text.split(":")[0]: f for f in layout.children}


def test_report_figures_draw_what_the_index_answers_for_their_width(long_run):
    log = fs.open_log(long_run)
    idx = index_of(log, progress=False)
    figures = _by_title(training_figures(log))  # what write_report draws

    # Per-step loss: 2000 steps in a 900-pixel figure -> buckets of 4, the envelope drawn too.
    level = choose_level(0, log.sizes["step"], LINE_COLUMNS, idx.levels("loss"))
    assert level == 2
    expected = idx.query("loss", columns=LINE_COLUMNS)
    assert expected.attrs["level"] == level
    renderers = [r for r in figures["Loss"].renderers if isinstance(r, GlyphRenderer)]
    (band,) = [r for r in renderers if type(r.glyph).__name__ == "VArea"]  # min-max envelope
    line = band.data_source.data  # shared with the mean line
    np.testing.assert_array_equal(line["y"], expected.sel(agg="mean").values.astype(float))
    np.testing.assert_array_equal(line["low"], expected.sel(agg="min").values.astype(float))
    np.testing.assert_array_equal(line["high"], expected.sel(agg="max").values.astype(float))
    np.testing.assert_array_equal(line["step"], expected["bucket_start"].values)
    assert len(line["y"]) <= LINE_COLUMNS < log.sizes["step"]

    # Per-snapshot validation error: 400 snapshots fit, so the raw values at their steps.
    val = idx.query("val_error", columns=LINE_COLUMNS)
    drawn = [s.data for s in _sources(figures["Error rate"]) if len(s.data["y"]) == 400]
    np.testing.assert_array_equal(drawn[0]["y"], val.sel(agg="mean").values.astype(float))
    np.testing.assert_array_equal(drawn[0]["x"], log.snapshot_step.values)

    # Heat maps: 400 snapshots in 300 cells -> buckets of 2 snapshots.
    (cells,) = _sources(figures["Class accuracy (primary evaluation set)"])
    acc = class_accuracy(idx, columns=MAX_COLUMNS)
    assert acc.attrs["level"] == 1
    np.testing.assert_array_equal(
        cells.data["value"], acc.sel(agg="mean").transpose("class", "snapshot").values.ravel()
    )
    (cells,) = _sources(figures["Mean |gradient| per parameter"])
    mean_abs = layer_mean_abs(idx, columns=MAX_COLUMNS).sel(agg="mean")
    np.testing.assert_array_equal(
        cells.data["value"], mean_abs.transpose("layer", "snapshot").values.ravel()
    )

    # The summary numbers come from the index too.
    numbers = summary(log)
    assert numbers["final val error"] == last_value(idx, "val_error")
    value, at = best_value(idx, "val_error")
    errors = log.val_error.values.astype(np.float32)
    assert value == pytest.approx(float(errors.min())) and at == int(np.argmin(errors))
    assert numbers["best val error"] == f"{value:.4f} at snapshot {at}"


def test_widget_report_and_index_agree_on_the_same_window(long_run):
    # The three readers of one window: Index.query, the report's figure, and the ModelInfo
    # payload (the widget asked for as many columns as the figure is wide). Same buckets,
    # same numbers, from one query path.
    log = fs.open_log(long_run)
    idx = index_of(log, progress=False)
    expected = idx.query("loss", columns=LINE_COLUMNS)
    assert expected.attrs["level"] > 0  # buckets, not raw values: the interesting case

    figures = _by_title(training_figures(log))
    renderers = [r for r in figures["Loss"].renderers if isinstance(r, GlyphRenderer)]
    (band,) = [r for r in renderers if type(r.glyph).__name__ == "VArea"]
    drawn = band.data_source.data

    view = fs.ModelInfo(log, max_points=LINE_COLUMNS)
    try:
        (chart,) = [c for c in view.series["charts"] if c["key"] == "loss"]
        (sent,) = [line for line in chart["lines"] if line["name"] == "train"]
        assert sent["level"] == expected.attrs["level"]
        for agg, widget_key, figure_key in (("min", "lo", "low"), ("max", "hi", "high")):
            want = expected.sel(agg=agg).values.astype(float)
            np.testing.assert_array_equal(np.asarray(sent[widget_key], dtype=float), want)
            np.testing.assert_array_equal(np.asarray(drawn[figure_key], dtype=float), want)
        np.testing.assert_array_equal(sent["x"], expected["bucket_start"].values)
        np.testing.assert_array_equal(drawn["step"], expected["bucket_start"].values)
    finally:
        view.close()
