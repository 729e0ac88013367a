"""The synthetic log: real layer layouts, schema-conforming, realistic, planted patterns found."""

from __future__ import annotations

import argparse

import numpy as np
import pytest
from torch.nn import Conv2d, Linear

from filterscope.data.synthetic import (
    SyntheticRun,
    add_synth_parser,
    ground_truth,
    resnet_layers,
    synthetic_log,
)
from filterscope.dynamics import class_clusters, top_changed_filters, unstable_samples
from filterscope.errors import InvalidDataError, LogExistsError
from filterscope.log.layers import discover_layers
from filterscope.log.reader import open_log
from filterscope.log.schema import FILTER_VARS, SAMPLE_VARS, STATS, STEP_VARS, THRESHOLDS
from filterscope.models import resnet18_small, resnet50_like

SMALL = {"n_samples": 2000, "n_classes": 50, "n_snapshots": 120, "layers": "resnet18"}


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    path = tmp_path_factory.mktemp("synthetic") / "log"
    synthetic_log(path, **SMALL, steps_per_snapshot=20, seed=1)
    return path


@pytest.mark.parametrize(
    ("layout", "model", "n_conv", "conv_filters", "n_filters"),
    [
        ("resnet50", lambda: resnet50_like(1000), 53, 26_560, 27_560),
        ("resnet18", lambda: resnet18_small(50), 20, 1_200, 1_250),
    ],
)
def test_layer_table_is_the_recorders_table_of_the_real_model(
    layout, model, n_conv, conv_filters, n_filters
):
    from filterscope.data.synthetic import LAYOUTS

    ours = resnet_layers(*LAYOUTS[layout], num_classes=1000 if layout == "resnet50" else 50)
    theirs = discover_layers(model())
    assert list(ours.name) == [layer.name for layer in theirs]
    assert list(ours.kind) == [layer.kind for layer in theirs]
    assert list(ours.stage) == [layer.stage for layer in theirs]
    assert list(ours.block) == [layer.block for layer in theirs]
    assert ours.filters.tolist() == [layer.filters for layer in theirs]
    assert ours.fan_in.tolist() == [layer.fan_in for layer in theirs]
    assert ours.has_stats.tolist() == [layer.has_stats for layer in theirs]
    kinds = np.asarray(ours.kind)
    assert (kinds == "Conv2d").sum() == n_conv
    assert ours.filters[kinds == "Conv2d"].sum() == conv_filters
    assert ours.n_filters == n_filters


def test_written_log_follows_the_schema(small):
    log = open_log(small)
    assert log.attrs["filterscope_format"] == 1
    assert dict(log.sizes) == {
        "step": 119 * 20,
        "snapshot": 120,
        "sample": 2000,
        "class": 50,
        "layer": 41,
        "filter": 1250,
        "stat": 12,
        "threshold": 56,
        # Generated 8 × 8 grayscale thumbnails (filterscope.ValidationView shows them).
        "thumb_y": 8,
        "thumb_x": 8,
        "thumb_channel": 1,
    }
    for name, (dtype, _) in SAMPLE_VARS.items():
        assert log[name].dims == ("snapshot", "sample") and log[name].dtype == dtype
    for name, dtype in STEP_VARS.items():
        assert log[name].dims == ("step",) and log[name].dtype == dtype
    for name in FILTER_VARS:
        assert log[name].dims == ("snapshot", "filter")
    assert log.weight_stat.dims == ("snapshot", "layer", "stat")
    assert list(log.stat.values) == list(STATS)
    np.testing.assert_array_equal(log.threshold.values, THRESHOLDS)
    assert log.snapshot_step.values.tolist() == list(range(0, 120 * 20, 20))
    assert np.bincount(log.label.values).tolist() == [40] * 50
    model = resnet18_small(50)
    weights = [m.weight.numel() for m in model.modules() if isinstance(m, Conv2d | Linear)]
    assert log.layer_params.sel(layer=log.layer_has_stats).values.tolist() == weights


def test_curves_are_realistic_and_consistent(small):
    log = open_log(small).load()
    truth = ground_truth(small)
    err = log.val_error.values
    assert err[0] > 0.99 and 0.15 < err[-1] < 0.35
    for drop in truth.lr_drop_snapshot.values:  # every lr drop lowers the error within a few
        assert err[drop + 3] < err[drop - 2] - 0.005
    lr = log.lr.values
    assert np.unique(np.round(lr, 8)).size == 4 and lr[0] == pytest.approx(0.1)
    correct = log.correct.values
    assert ((log.p_true.values > 0.5) == correct).all()
    assert ((log.margin.values > 0) == correct).all()
    assert ((log.pred.values == log.label.values) == correct).all()
    flips = (correct[1:] != correct[:-1]).sum()
    assert 1 < flips / correct.shape[1] < 20  # samples flip, but not at every snapshot
    for name in ("filter_cosine", "filter_l2", "filter_rel_l2"):
        assert np.isnan(log[name].values[0]).all() and np.isfinite(log[name].values[1:]).all()
    w = log.weight_stat.sel(layer=log.layer_has_stats).astype(np.float64)
    n = log.layer_params.sel(layer=log.layer_has_stats)
    np.testing.assert_allclose(w.sel(stat="std") ** 2, w.sel(stat="var"), rtol=1e-5)
    second_moment = (n * (w.sel(stat="var") + w.sel(stat="mean") ** 2)).transpose(*w.dims[:2])
    np.testing.assert_allclose(w.sel(stat="l2") ** 2, second_moment, rtol=1e-4)
    assert np.isnan(log.weight_stat.sel(layer=~log.layer_has_stats)).all()
    ratio = log.change_ratio.sel(layer=log.layer_has_stats).values
    assert (ratio[..., 0] == 1).all() and (np.diff(ratio, axis=-1) <= 0).all()


def test_planted_patterns_are_recovered(small):
    log = open_log(small)
    truth = ground_truth(small)
    flags = unstable_samples(log, j=30, threshold=5).flagged
    planted = set(
        zip(
            truth.unstable_snapshot.values.tolist(),
            truth.unstable_class.values.tolist(),
            strict=True,
        )
    )
    snap, cls = np.nonzero(flags.values)
    found = set(zip(snap.tolist(), cls.tolist(), strict=True))
    assert planted <= found
    # Outside the planted events, flags come only right after a learning-rate drop or from
    # the hard classes being learned late: the two natural causes of mass flips.
    drops = truth.lr_drop_snapshot.values
    hard = set(truth.hard_class.values.tolist())
    for s, c in found - planted:
        assert np.abs(drops - s).min() <= 3 or c in hard, (s, c)

    for s in np.unique(truth.filter_event_snapshot.values):
        top = top_changed_filters(log, int(s), k=10)
        expected = truth.filter_event_filter.values[truth.filter_event_snapshot.values == s]
        assert set(expected.tolist()) <= set(top["filter"].tolist())

    clusters = class_clusters(log).class_cluster.values
    hard_cluster = np.unique(clusters[truth.hard_class.values])
    assert hard_cluster.size == 1
    assert set(np.flatnonzero(clusters == hard_cluster[0])) == hard


def test_same_seed_same_log_other_seed_other_log():
    def first(seed: int) -> dict:
        run = SyntheticRun(300, 10, 20, "resnet18", steps_per_snapshot=5, seed=seed, plant=False)
        snaps = run.snapshots()
        next(snaps)
        return next(snaps)

    a, b, c = first(4), first(4), first(5)
    for key in ("correct", "filter_cosine", "weight_stat"):
        np.testing.assert_array_equal(a[key], b[key])
    assert not np.array_equal(a["filter_cosine"], c["filter_cosine"])


def test_bad_arguments_raise_typed_errors(tmp_path):
    with pytest.raises(InvalidDataError, match="at least n_classes"):
        synthetic_log(tmp_path / "a", n_samples=5, n_classes=10, n_snapshots=10)
    with pytest.raises(InvalidDataError, match="layers must be one of"):
        synthetic_log(tmp_path / "b", n_samples=50, n_classes=5, n_snapshots=10, layers="vgg")
    with pytest.raises(InvalidDataError, match="too short to plant"):
        synthetic_log(tmp_path / "c", n_samples=200, n_classes=10, n_snapshots=30)
    assert not (tmp_path / "a").exists() and not (tmp_path / "c").exists()


def test_synth_command(tmp_path, capsys):
    parser = argparse.ArgumentParser(prog="filterscope")
    add_synth_parser(parser.add_subparsers())
    path = tmp_path / "cli"
    argv = [str(path), "--samples", "200", "--classes", "10", "--snapshots", "20"]
    args = parser.parse_args(["synth", *argv, "--layers", "resnet18", "--no-plant", "--index"])
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert "snapshot=20" in out and "indexed" in out
    assert open_log(path).sizes["sample"] == 200
    assert ground_truth(path).unstable_class.size == 0
    with pytest.raises(LogExistsError):
        args.func(args)
    args = parser.parse_args(["synth", *argv, "--layers", "resnet18", "--no-plant", "--overwrite"])
    assert args.func(args) == 0


def test_layer_table_from_a_real_models_layers(tmp_path):
    from filterscope.data.synthetic import LAYOUTS, LayerTable

    ours = LayerTable.from_layers(discover_layers(resnet18_small(50)))
    theirs = resnet_layers(*LAYOUTS["resnet18"], num_classes=50)
    for field in ("name", "kind", "stage", "block"):
        assert getattr(ours, field) == getattr(theirs, field)
    for field in ("filters", "params", "fan_in", "has_stats"):
        np.testing.assert_array_equal(getattr(ours, field), getattr(theirs, field))
    log = synthetic_log(
        tmp_path / "custom", n_samples=20, n_classes=5, n_snapshots=2, layers=ours, plant=False
    )
    assert log.attrs["model"] == "custom"
    assert log.layer_name.values.tolist() == list(ours.name)
    assert log.layer_params.values.tolist() == ours.params.tolist()
    norm_only = LayerTable.from_layers(discover_layers(resnet18_small(50)))
    norm_only = LayerTable(
        *(getattr(norm_only, f) for f in ("name", "kind", "stage", "block", "filters", "params")),
        fan_in=norm_only.fan_in,
        has_stats=np.zeros(len(norm_only.name), dtype=bool),
    )
    with pytest.raises(InvalidDataError, match="no layer with statistics"):
        SyntheticRun(n_samples=20, n_classes=5, n_snapshots=2, layers=norm_only)
    with pytest.raises(InvalidDataError, match="or a LayerTable"):
        SyntheticRun(n_samples=20, n_classes=5, n_snapshots=2, layers="vgg")
