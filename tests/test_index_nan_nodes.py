"""A layer whose statistics are not finite makes its tree nodes' statistics NaN."""

from __future__ import annotations

import numpy as np
import xarray as xr
from oracles import layer_stats

from filterscope.index.hierarchy import LayerTree, layer_tree, node_stats
from filterscope.log.schema import STATS

NAMES = list(STATS)


def _tree() -> LayerTree:
    log = xr.Dataset(
        coords={
            "layer_name": ("layer", ["conv1", "layer1.0.conv1", "layer1.0.conv2", "fc"]),
            "layer_stage": ("layer", ["conv1", "layer1", "layer1", "fc"]),
            "layer_block": ("layer", ["conv1", "layer1.0", "layer1.0", "fc"]),
            "layer_has_stats": ("layer", [True, True, True, True]),
            "layer_params": ("layer", [10, 20, 6, 30]),
        }
    )
    return layer_tree(log)


def test_a_non_finite_layer_makes_every_node_above_it_nan() -> None:
    rng = np.random.default_rng(1)
    tree = _tree()
    sizes = (10, 20, 6, 30)
    per_layer = np.array([[layer_stats(rng.normal(size=n)) for n in sizes] for _ in range(3)])
    per_layer[1, 2, :] = np.nan  # layer1.0.conv2 diverged at time 1
    out = node_stats(per_layer, NAMES, tree)
    names = [str(n) for n in tree.name]
    nan_nodes = {names.index(n) for n in ("model", "layer1", "layer1.0", "layer1.0.conv2")}
    for node in range(len(names)):
        assert np.all(np.isnan(out[1, node])) == (node in nan_nodes), names[node]
    # Other times are untouched and finite.
    assert np.all(np.isfinite(out[[0, 2]]))
