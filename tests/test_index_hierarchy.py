"""Layer-tree and class aggregates: exact where the statistic allows, flagged where it does not."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from filterscope.dynamics import class_clusters, class_error, class_error_values, from_arrays
from filterscope.index import (
    APPROXIMATE_STATS,
    build_index,
    layer_tree,
    node_ratios,
    node_stats,
)
from filterscope.log.schema import STATS, THRESHOLDS

# name, stage, block, has statistics, number of weights
LAYERS = [
    ("conv1", "conv1", "conv1", True, 27),
    ("bn1", "bn1", "bn1", False, 3),
    ("layer1.0.conv1", "layer1", "layer1.0", True, 81),
    ("layer1.0.conv2", "layer1", "layer1.0", True, 144),
    ("layer1.1.conv1", "layer1", "layer1.1", True, 36),
    ("fc", "fc", "fc", True, 40),
]


def _stats(w: np.ndarray) -> list[float]:
    """The recorder's 12 statistics of one tensor: population variance, linear quantiles."""
    q = np.quantile(w, [0.5, 0.25, 0.75])
    return [
        w.max(),
        w.min(),
        w.mean(),
        w.sum(),
        w.var(),
        w.std(),
        np.count_nonzero(w),
        np.abs(w).sum(),
        np.sqrt((w**2).sum()),
        *q,
    ]


def _ratios(w: np.ndarray, g: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        r = np.where(w == 0, np.where(g == 0, 0.0, np.inf), np.abs(g) / np.abs(w))
    return np.array([(r <= t).mean() for t in THRESHOLDS])


def _raw(n_snapshots: int, seed: int = 0):
    """Raw weights and gradients per snapshot and layer (None for batch norm)."""
    rng = np.random.default_rng(seed)
    weights, grads = [], []
    for _ in range(n_snapshots):
        ws, gs = [], []
        for i, (*_, stats, n) in enumerate(LAYERS):
            w = rng.normal(0.1 * i, 0.5 + 0.2 * i, n)
            w[rng.random(n) < 0.1] = 0.0  # exact zeros: l0 < n
            ws.append(w if stats else None)
            gs.append(rng.normal(0, 0.01, n) if stats else None)
        weights.append(ws)
        grads.append(gs)
    return weights, grads


def _log(weights, grads, with_params: bool = True) -> xr.Dataset:
    n_layers = len(LAYERS)
    stat = np.full((len(weights), n_layers, len(STATS)), np.nan)
    ratio = np.full((len(weights), n_layers, len(THRESHOLDS)), np.nan)
    for t, (ws, gs) in enumerate(zip(weights, grads, strict=True)):
        for i, (w, g) in enumerate(zip(ws, gs, strict=True)):
            if w is not None:
                stat[t, i] = _stats(w)
                ratio[t, i] = _ratios(w, g)
    coords = {
        "layer": np.arange(n_layers),
        "layer_name": ("layer", [layer[0] for layer in LAYERS]),
        "layer_stage": ("layer", [layer[1] for layer in LAYERS]),
        "layer_block": ("layer", [layer[2] for layer in LAYERS]),
        "layer_has_stats": ("layer", [layer[3] for layer in LAYERS]),
        "stat": list(STATS),
        "threshold": THRESHOLDS,
        "snapshot": np.arange(len(weights)),
    }
    if with_params:
        coords["layer_params"] = ("layer", [layer[4] for layer in LAYERS])
    return xr.Dataset(
        {
            "weight_stat": (("snapshot", "layer", "stat"), stat.astype(np.float32)),
            "change_ratio": (("snapshot", "layer", "threshold"), ratio.astype(np.float32)),
        },
        coords=coords,
    )


def test_tree_nodes_levels_and_members():
    tree = layer_tree(_log(*_raw(1)))
    assert tree.name == (
        "model",
        "conv1",
        "layer1",
        "fc",
        "layer1.0",
        "layer1.1",
        "layer1.0.conv1",
        "layer1.0.conv2",
        "layer1.1.conv1",
    )
    assert tree.level[:4] == ("model", "stage", "stage", "stage")
    assert tree.children("layer1") == ["layer1.0", "layer1.1"]
    assert tree.layers_under("layer1.0").tolist() == [2, 3]
    assert tree.layers_under("model").tolist() == [0, 2, 3, 4, 5]  # not batch norm
    assert tree.node_params[0] == sum(n for *_, s, n in LAYERS if s)


def test_exact_node_stats_equal_stats_of_the_raw_weights():
    weights, grads = _raw(3)
    log = _log(weights, grads)
    tree = layer_tree(log)
    ours = node_stats(log.weight_stat.values, list(STATS), tree, ddof=0)
    ratios = node_ratios(log.change_ratio.values, tree)
    for t in range(3):
        for row, name in enumerate(tree.name):
            members = tree.layers_under(name)
            w = np.concatenate([weights[t][i] for i in members])
            g = np.concatenate([grads[t][i] for i in members])
            truth = np.asarray(_stats(w))
            n = np.asarray([LAYERS[i][4] for i in members], float)
            per_layer = log.weight_stat.values[t, members].astype(np.float64)
            for s, stat in enumerate(STATS):
                if stat in APPROXIMATE_STATS:
                    # documented approximation: the weight-count-weighted average
                    expected = (n * per_layer[:, s]).sum() / n.sum()
                    np.testing.assert_allclose(ours[t, row, s], expected, rtol=1e-12)
                else:
                    np.testing.assert_allclose(ours[t, row, s], truth[s], rtol=2e-6, atol=1e-6)
            np.testing.assert_allclose(ratios[t, row], _ratios(w, g), rtol=1e-6, atol=1e-7)


def test_index_serves_node_aggregates_with_approximate_flags(tmp_path):
    weights, grads = _raw(20)
    log = _log(weights, grads)
    idx = build_index(log, tmp_path / "idx")
    got = idx.query("weight_stat", node="layer1", rows={"stat": "var"}, level=0)
    w = [np.concatenate([weights[t][i] for i in (2, 3, 4)]) for t in range(20)]
    np.testing.assert_allclose(got.sel(agg="mean").values, [x.var() for x in w], rtol=2e-6)
    assert got.attrs["approximate"] == []
    box = idx.query("weight_stat", node="model", rows={"stat": ["min", "q1", "median"]})
    assert box.attrs["approximate"] == ["q1", "median"]
    ratio = idx.query("change_ratio", node=["conv1", "fc"], rows={"threshold": 0.1}, level=0)
    assert ratio.sizes == {"agg": 4, "snapshot": 20, "node": 2}
    assert (ratio.sel(agg="count") == 1).all()
    # a leaf node is the layer itself
    leaf = idx.query("weight_stat", node="layer1.0.conv2", level=0).sel(agg="mean")
    np.testing.assert_allclose(leaf.values, log.weight_stat.isel(layer=3).values, rtol=1e-6)
    assert idx.nodes().node_level.sel(node="layer1.0").item() == "block"


def test_without_layer_params_the_counts_come_from_l0(tmp_path):
    weights, grads = _raw(2)
    tree = layer_tree(_log(weights, grads, with_params=False))
    assert not tree.params_exact
    l0 = [np.count_nonzero(weights[0][i]) if LAYERS[i][3] else 0 for i in range(len(LAYERS))]
    assert tree.params.tolist() == l0


def test_class_and_cluster_errors_match_the_dynamics(tmp_path):
    rng = np.random.default_rng(3)
    n_snapshots, n_samples = 80, 240
    labels = rng.permutation(np.arange(n_samples) % 12)
    # classes 0-2 learn late, the others early: clusters have distinct shapes
    onset = np.where(labels < 3, 0.7, 0.1)
    t = np.linspace(0, 1, n_snapshots)[:, None]
    correct = rng.random((n_snapshots, n_samples)) < 1 / (1 + np.exp(-(t - onset) * 20))
    log = from_arrays(correct, labels=labels)
    idx = build_index(log, tmp_path / "idx")
    ours = idx.query("class_error", level=0).sel(agg="mean")
    np.testing.assert_array_equal(ours.values, class_error(log).values)
    np.testing.assert_array_equal(class_error_values(correct, labels, 12), class_error(log).values)
    clusters = class_clusters(log)
    np.testing.assert_array_equal(idx.class_cluster.values, clusters.class_cluster.values)
    got = idx.query("cluster_error", level=0).sel(agg="mean")
    np.testing.assert_allclose(got.values, clusters.cluster_error.values, rtol=1e-12)
    late = clusters.class_cluster.values[0]
    assert set(np.flatnonzero(clusters.class_cluster.values == late)) == {0, 1, 2}
    rows = idx.query("class_error", cluster=late, level=0)
    assert rows["class"].values.tolist() == [0, 1, 2]
    samples = idx.query("correct", cluster=late, level=0)
    assert set(samples.label.values.tolist()) == {0, 1, 2}
    with pytest.raises(ValueError, match="class_= or cluster="):
        idx.query("correct", class_=1, cluster=late)


def test_pooled_moments_stay_exact_when_the_mean_dwarfs_the_spread():
    from filterscope.log.moments import pool_moments

    rng = np.random.default_rng(5)
    parts = [rng.normal(1e6, 1e-3, size=n) for n in (30, 50, 70)]
    members = np.array([[1, 1, 1], [0, 1, 1], [1, 0, 0]])
    counts, means, variances = pool_moments(
        [p.size for p in parts],
        [[p.mean() for p in parts]],
        [[p.var() for p in parts]],
        members,
    )
    for g, row in enumerate(members):
        values = np.concatenate([p for p, m in zip(parts, row, strict=True) if m])
        assert counts[g] == values.size
        np.testing.assert_allclose(means[0, g], values.mean(), rtol=1e-15)
        np.testing.assert_allclose(variances[0, g], values.var(), rtol=1e-6)
