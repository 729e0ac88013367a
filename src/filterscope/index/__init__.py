"""Hierarchical index: multi-resolution aggregates of a log and the window queries views make.

Owns the time pyramids (NaN-aware min, max, mean and count over buckets of ``2**k`` snapshots
or steps, built incrementally as snapshots are committed), the aggregates over the layer tree
(model → stage → block → layer) and over classes and class clusters, their storage in the
``index`` group of the log's store, :func:`index_of` (the index of a log opened from its path, built on
first use and extended as the log grows), and :meth:`Index.query`, the one call every view,
Bokeh plot and user makes to fetch a window at the resolution it can show;
:mod:`~filterscope.index.summaries` derives the per-layer and per-class series figures draw
from it. Built with dask, so a
``dask.distributed`` cluster can build it.

Must not touch widgets, plots or training: it reads committed log data and writes only its own
group.

Examples
--------
>>> import numpy as np
>>> from filterscope.index import choose_level
>>> choose_level(0, 1000, columns=2000, top=10)  # few snapshots: the raw values
0
>>> choose_level(0, 100_000, columns=2000, top=17)  # buckets of 2**6 = 64 steps
6
"""

from __future__ import annotations

from filterscope.index.build import CLUSTER_K, INDEX_GROUP, NODE_VARS, VarSpec, variable_specs
from filterscope.index.core import Index, build_index, index_of, open_index
from filterscope.index.hierarchy import (
    APPROXIMATE_STATS,
    LayerTree,
    layer_tree,
    node_ratios,
    node_stats,
)
from filterscope.index.pyramid import AGGREGATES, choose_level, coarsen_pairs, level_from_raw

__all__ = [
    "AGGREGATES",
    "APPROXIMATE_STATS",
    "CLUSTER_K",
    "INDEX_GROUP",
    "NODE_VARS",
    "Index",
    "LayerTree",
    "VarSpec",
    "build_index",
    "choose_level",
    "coarsen_pairs",
    "index_of",
    "layer_tree",
    "level_from_raw",
    "node_ratios",
    "node_stats",
    "open_index",
    "variable_specs",
]
