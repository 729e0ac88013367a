"""Aggregates over the model's layer tree.

The layer tree is model → stage → block → layer, read from the log's ``layer_stage``,
``layer_block`` and ``layer_name`` coordinates; only layers with statistics (not batch norm)
contribute. A node's statistics are exact functions of its layers' statistics and weight
counts ``n``:

* ``max``/``min``: max/min of the layers'; ``sum``, ``l0``, ``l1``: sums;
  ``l2 = sqrt(sum(l2**2))``;
* ``mean = sum(n * mean) / N``;
* ``var`` pooled: ``(sum((n - ddof) * var) + sum(n * (mean - node_mean)**2)) / (N - ddof)``
  and ``std = sqrt(var)`` (``ddof`` 0: the recorder stores population variances), by
  :func:`filterscope.log.moments.pool_moments`, the formula the recorder pools filters with;
* ``median``, ``q1``, ``q3`` cannot be recovered from the layers' and are approximated by
  their ``n``-weighted average (flagged in :data:`APPROXIMATE_STATS`).

A node's change ratio (the fraction of its weights with ``|g / w| <= t``) is the ``n``-weighted
mean of its layers', which is exact. Per-class error lives in
:func:`filterscope.dynamics.class_error_values`, which the index calls.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp
import xarray as xr

from filterscope.errors import InvalidParameterError, LogFormatError
from filterscope.log.moments import pool_moments

#: Statistics whose node values are approximations (weighted averages of the layers').
APPROXIMATE_STATS: tuple[str, ...] = ("median", "q1", "q3")

_LEVELS = ("model", "stage", "block", "layer")


@dataclass(frozen=True)
class LayerTree:
    """The nodes of the layer tree and which layers (with statistics) each one holds.

    Attributes
    ----------
    name, level, parent : tuple of str
        Node names (``"model"`` for the root), their level (model, stage, block, layer) and
        their parent's name (``""`` for the root). A name met at several levels (a stage made
        of one layer, like ``conv1`` or ``fc``) is one node, at its coarsest level.
    members : scipy.sparse.csr_array of float64, shape (n_nodes, n_layers)
        1 where the node contains the layer and the layer has statistics.
    params : numpy.ndarray of int64
        Number of weights per layer, the ``n`` of the formulas above.
    params_exact : bool
        True when ``params`` come from the log's ``layer_params`` coordinate; False when
        estimated from the first snapshot's ``l0`` (exact unless weights are exactly zero).
    """

    name: tuple[str, ...]
    level: tuple[str, ...]
    parent: tuple[str, ...]
    members: sp.csr_array
    params: npt.NDArray[np.int64]
    params_exact: bool

    @property
    def node_params(self) -> npt.NDArray[np.int64]:
        """Number of weights per node."""
        return np.asarray(self.members @ self.params.astype(np.float64)).round().astype(np.int64)

    def children(self, node: str) -> list[str]:
        """Names of the direct children of ``node``."""
        return [n for n, p in zip(self.name, self.parent, strict=True) if p == node]

    def layers_under(self, node: str) -> npt.NDArray[np.intp]:
        """Positions on the ``layer`` axis of the layers (with statistics) under ``node``."""
        try:
            row = self.name.index(node)
        except ValueError:
            raise InvalidParameterError(
                f"no node {node!r} in the layer tree; nodes are 'model', the stages, blocks and "
                f"layers with statistics, e.g. {list(self.name[:6])}"
            ) from None
        return np.asarray(self.members[[row]].indices, dtype=np.intp)


def layer_tree(log: xr.Dataset) -> LayerTree:
    """Build the layer tree of a log from its ``layer_*`` coordinates.

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> log = xr.Dataset(coords={
    ...     "layer_name": ("layer", ["conv1", "layer1.0.conv1", "layer1.0.bn1", "fc"]),
    ...     "layer_stage": ("layer", ["conv1", "layer1", "layer1", "fc"]),
    ...     "layer_block": ("layer", ["conv1", "layer1.0", "layer1.0", "fc"]),
    ...     "layer_has_stats": ("layer", [True, True, False, True]),
    ...     "layer_params": ("layer", [10, 20, 4, 30])})
    >>> tree = layer_tree(log)
    >>> list(zip(tree.name, tree.level))  # doctest: +NORMALIZE_WHITESPACE
    [('model', 'model'), ('conv1', 'stage'), ('layer1', 'stage'), ('fc', 'stage'),
     ('layer1.0', 'block'), ('layer1.0.conv1', 'layer')]
    >>> tree.node_params.tolist()
    [60, 10, 20, 30, 20, 20]
    """
    for coord in ("layer_name", "layer_stage", "layer_block"):
        if coord not in log.coords:
            raise LogFormatError(
                f"the log has no {coord!r} coordinate on 'layer'; filterscope_format 1 stores the "
                "model's stage / block / layer tree there"
            )
    names = [str(v) for v in log["layer_name"].values]
    stages = [str(v) for v in log["layer_stage"].values]
    blocks = [str(v) for v in log["layer_block"].values]
    has_stats = (
        np.asarray(log["layer_has_stats"].values, dtype=bool)
        if "layer_has_stats" in log.coords
        else np.ones(len(names), dtype=bool)
    )
    params, exact = _layer_params(log, has_stats)

    node_index: dict[str, int] = {}
    node_level: list[str] = []
    node_parent: list[str] = []
    rows: list[int] = []
    cols: list[int] = []

    def add(name: str, level: str, parent: str) -> int:
        if name not in node_index:
            node_index[name] = len(node_level)
            node_level.append(level)
            node_parent.append(parent)
        return node_index[name]

    # Nodes in breadth-first order (model, stages, blocks, layers), each level in layer order.
    paths = [
        ("model", stage, block, name)
        for stage, block, name in zip(stages, blocks, names, strict=True)
    ]
    for depth in range(4):
        for layer, path in enumerate(paths):
            if not has_stats[layer]:
                continue
            # A name seen at a coarser level (stage "fc" -> block "fc") stays one node there.
            add(path[depth], _LEVELS[depth], path[depth - 1] if depth else "")
    for layer, path in enumerate(paths):
        if has_stats[layer]:
            for node in set(path):
                rows.append(node_index[node])
                cols.append(layer)
    members = sp.csr_array(
        (np.ones(len(rows)), (np.asarray(rows, dtype=np.intp), np.asarray(cols, dtype=np.intp))),
        shape=(len(node_level), len(names)),
    )
    members.sort_indices()
    return LayerTree(
        name=tuple(node_index),
        level=tuple(node_level),
        parent=tuple(node_parent),
        members=members,
        params=params,
        params_exact=exact,
    )


def _layer_params(
    log: xr.Dataset, has_stats: npt.NDArray[np.bool_]
) -> tuple[npt.NDArray[np.int64], bool]:
    if "layer_params" in log.coords:
        return np.asarray(log["layer_params"].values, dtype=np.int64), True
    if "weight_stat" not in log.data_vars or log.sizes.get("snapshot", 0) == 0:
        raise LogFormatError(
            "node statistics need each layer's number of weights: the log has neither a "
            "'layer_params' coordinate nor a 'weight_stat' variable to read them from"
        )
    l0 = np.asarray(log["weight_stat"].isel(snapshot=0).sel(stat="l0").values, dtype=np.float64)
    return np.where(has_stats, np.nan_to_num(l0), 0).round().astype(np.int64), False


def node_stats(
    stats: npt.NDArray[Any],
    stat_names: list[str],
    tree: LayerTree,
    ddof: int = 0,
) -> npt.NDArray[np.float64]:
    """Node statistics from layer statistics: ``(time, layer, stat)`` -> ``(time, node, stat)``.

    Parameters
    ----------
    stats : array-like, shape (time, layer, stat)
        Per-layer statistics (NaN for layers without statistics).
    stat_names : list of str
        Name of each entry of the last axis (the log's ``stat`` coordinate).
    tree : LayerTree
        Nodes, their layers and the layers' weight counts.
    ddof : int, default 0
        Delta degrees of freedom of ``var`` and ``std`` (0: population, as recorded).

    Returns
    -------
    numpy.ndarray of float64, shape (time, node, stat)
        Exact for every statistic but those of :data:`APPROXIMATE_STATS`.

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> rng = np.random.default_rng(0)
    >>> w = [rng.normal(size=n) for n in (50, 80)]
    >>> names = ["max", "min", "mean", "sum", "var", "std", "l0", "l1", "l2"]
    >>> def stat(x):
    ...     return [x.max(), x.min(), x.mean(), x.sum(), x.var(), x.std(),
    ...             np.count_nonzero(x), np.abs(x).sum(), np.sqrt((x ** 2).sum())]
    >>> per_layer = np.array([[stat(x) for x in w]])
    >>> log = xr.Dataset(coords={"layer_name": ("layer", ["a", "b"]),
    ...     "layer_stage": ("layer", ["s", "s"]), "layer_block": ("layer", ["s", "s"]),
    ...     "layer_params": ("layer", [50, 80])})
    >>> out = node_stats(per_layer, names, layer_tree(log))
    >>> np.allclose(out[0, 0], stat(np.concatenate(w)))  # node "model" == all weights
    True
    """
    values = np.asarray(stats, dtype=np.float64)
    col = {name: i for i, name in enumerate(stat_names)}
    members = tree.members
    n = tree.params.astype(np.float64)
    weights = members.multiply(n[None, :]).tocsr()  # (node, layer) weight counts
    total = np.asarray(weights.sum(axis=1)).ravel()  # N per node
    member_layers = [members[[row]].indices for row in range(members.shape[0])]
    out = np.full((values.shape[0], members.shape[0], len(stat_names)), np.nan)

    def weighted(x: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        # sum over layers of n * x, NaN-free layers only (members exclude batch norm)
        return np.asarray((weights @ np.nan_to_num(x).T).T)

    def extreme(x: npt.NDArray[np.float64], reduce: Any) -> npt.NDArray[np.float64]:
        result = np.full((x.shape[0], len(member_layers)), np.nan)
        for row, layers in enumerate(member_layers):
            if layers.size:
                result[:, row] = reduce(x[:, layers], axis=1)
        return result

    def plain_sum(x: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        return np.asarray((members @ np.nan_to_num(x).T).T)

    with np.errstate(invalid="ignore", divide="ignore"):
        mean = weighted(values[:, :, col["mean"]]) / total if "mean" in col else None
        for name, i in col.items():
            x = values[:, :, i]
            if name == "max":
                out[:, :, i] = extreme(x, np.max)
            elif name == "min":
                out[:, :, i] = extreme(x, np.min)
            elif name in ("sum", "l0", "l1"):
                out[:, :, i] = plain_sum(x)
            elif name == "l2":
                out[:, :, i] = np.sqrt(plain_sum(x**2))
            elif name == "mean" and mean is not None:
                out[:, :, i] = mean
            elif name in ("var", "std") and mean is not None:
                var = values[:, :, col["var"]] if "var" in col else values[:, :, col["std"]] ** 2
                # The recorder's formula (filterscope.log.moments), one level up the tree.
                _, _, pooled = pool_moments(n, values[:, :, col["mean"]], var, members, ddof)
                out[:, :, i] = pooled if name == "var" else np.sqrt(pooled)
            else:  # median, quartiles and anything unknown: the n-weighted average
                out[:, :, i] = weighted(x) / total
    # A member layer whose statistic is not finite (a diverged step, gradients not yet taken)
    # makes its nodes' statistic NaN too, never a pooled value that silently drops the layer.
    t, layers, n_stats = values.shape
    missing = np.isnan(values).transpose(1, 0, 2).reshape(layers, t * n_stats)
    hit = np.asarray(members @ missing.astype(np.float64)) > 0
    out[hit.reshape(-1, t, n_stats).transpose(1, 0, 2)] = np.nan
    return out


def node_ratios(ratio: npt.NDArray[Any], tree: LayerTree) -> npt.NDArray[np.float64]:
    """Node change ratios, ``(time, layer, threshold)`` -> ``(time, node, threshold)``.

    Exact: the fraction of the node's weights under each threshold.
    """
    values = np.nan_to_num(np.asarray(ratio, dtype=np.float64))
    n = tree.params.astype(np.float64)
    weights = tree.members.multiply(n[None, :]).tocsr()
    total = np.asarray(weights.sum(axis=1)).ravel()
    t, layers, thresholds = values.shape
    flat = values.transpose(1, 0, 2).reshape(layers, t * thresholds)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = (weights @ flat) / total[:, None]
    return np.asarray(out).reshape(-1, t, thresholds).transpose(1, 0, 2)
