"""Per-filter change rankings: which filters changed most at picked snapshots.

DeepTracker (ACM TIST 2018) answers a picked iteration with the ten filters, across all
layers, whose weights moved most since the previous snapshot (lowest cosine similarity), and
several picks with the intersection of their top tens. Its cube view correlates layers with
classes: a cell counts the distinct top-changed filters of a layer over the snapshots where a
class is flagged as unstable.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
import scipy.sparse as sp
import xarray as xr

from filterscope.dynamics._common import (
    block_length,
    check_log,
    dim_coords,
    snapshot_positions,
)
from filterscope.dynamics.unstable import unstable_samples
from filterscope.errors import InvalidDataError, LogFormatError

#: Change metrics that can rank filters -> True when the lowest value is the largest change.
CHANGE_METRICS: dict[str, bool] = {
    "filter_cosine": True,
    "filter_l2": False,
    "filter_l1": False,
    "filter_rel_l1": False,
    "filter_rel_l2": False,
}

_FILTER_COORDS = ("filter_layer", "filter_layer_index", "filter_channel")


def top_changed_filters(
    log: xr.Dataset,
    snapshots: Any,
    k: int = 10,
    metric: str = "filter_cosine",
) -> pd.DataFrame:
    """Rank the filters that changed most at each picked snapshot, across all layers.

    At each pick, filters are ranked by ``metric`` (change since the previous snapshot):
    lowest first for ``filter_cosine``, highest first for the distances ``filter_l2``,
    ``filter_l1``, ``filter_rel_l1`` and ``filter_rel_l2``; ties go to the lower filter index
    and NaN values (every filter at snapshot 0) are never ranked. The top ``k`` of each pick are
    kept.

    The result is the union of the picks' top ``k``, ranked by frequency: filters in every
    pick's top ``k`` (the intersection, ``in_all``) come first, then those in fewer picks, ties
    broken by the sum of ranks (a missing rank counting ``k + 1``) and then by filter index. So
    ``df[df.in_all]`` is the intersection — empty when no filter is in every top ``k`` — and
    the rest of the table is what remains to show in that case. With one pick the table is
    that pick's top ``k``.

    Parameters
    ----------
    log : xarray.Dataset
        A filterscope log with ``metric`` over ``snapshot, filter`` and the ``filter_layer``,
        ``filter_layer_index``, ``filter_channel`` coordinates.
    snapshots : int or sequence of int
        Snapshot label(s) picked; repeats are ignored.
    k : int, default 10
        Filters kept per pick.
    metric : str, default "filter_cosine"
        One of :data:`CHANGE_METRICS`.

    Returns
    -------
    pandas.DataFrame
        Columns ``filter`` (label on the flat filter axis), ``layer`` (layer name),
        ``layer_index``, ``channel``, ``n_picks`` (picks whose top ``k`` hold the filter),
        ``in_all`` (bool), then per pick ``s`` the 1-based ``rank@s`` (nullable Int64, missing
        outside the top ``k``) and the metric's ``value@s``. ``df.attrs`` records ``metric``,
        ``k`` and ``snapshots``.

    Raises
    ------
    filterscope.InvalidDataError
        If ``k < 1``, ``metric`` is not a change metric or a snapshot is not in the log.

    Examples
    --------
    >>> import numpy as np
    >>> from filterscope.dynamics import from_arrays, top_changed_filters
    >>> cos = np.array([[np.nan] * 4, [0.9, 0.2, 0.95, 0.5], [0.1, 0.3, 0.99, 0.98]])
    >>> log = from_arrays(np.ones((3, 1), bool), labels=[0], layers={"conv1": 2, "conv2": 2},
    ...                   filter_metrics={"filter_cosine": cos})
    >>> top_changed_filters(log, 1, k=2)[["layer", "channel", "rank@1"]].to_dict("list")
    {'layer': ['conv1', 'conv2'], 'channel': [1, 1], 'rank@1': [1, 2]}
    >>> df = top_changed_filters(log, [1, 2], k=2)
    >>> df["filter"].tolist(), df["in_all"].tolist()
    ([1, 0, 3], [True, False, False])
    """
    lowest_first = _check_metric(log, metric, k)
    positions = snapshot_positions(log, snapshots)
    _, first = np.unique(positions, return_index=True)
    positions = positions[np.sort(first)]
    labels = np.asarray(log["snapshot"].values)[positions]
    values = np.asarray(
        log[metric].isel(snapshot=positions).transpose("snapshot", "filter").values,
        dtype=np.float64,
    )
    row, col, rank = _top_k(values, k, lowest_first)
    union, member = np.unique(col, return_inverse=True)
    ranks = np.zeros((len(positions), len(union)), dtype=np.int64)
    ranks[row, member] = rank + 1
    n_picks = (ranks > 0).sum(axis=0)
    rank_sum = np.where(ranks > 0, ranks, k + 1).sum(axis=0)
    order = np.lexsort((union, rank_sum, -n_picks))
    union, ranks, n_picks = union[order], ranks[:, order], n_picks[order]

    table: dict[str, Any] = {
        column: np.asarray(log[name].values)[union]
        for column, name in (
            ("filter", "filter"),
            ("layer", "filter_layer"),
            ("layer_index", "filter_layer_index"),
            ("channel", "filter_channel"),
        )
    }
    table.update(
        {
            "n_picks": n_picks,
            "in_all": n_picks == len(positions),
        }
    )
    for i, label in enumerate(labels.tolist()):
        table[f"rank@{label}"] = pd.array(np.where(ranks[i] > 0, ranks[i], None), dtype="Int64")
        table[f"value@{label}"] = values[i, union]
    df = pd.DataFrame(table)
    df.attrs.update({"metric": metric, "k": k, "snapshots": labels.tolist()})
    return df


def layer_class_correlation(
    log: xr.Dataset,
    k: int = 10,
    metric: str = "filter_cosine",
    *,
    flagged: xr.DataArray | None = None,
) -> xr.DataArray:
    """Correlate layers with classes through the filters that change when a class is unstable.

    A cell ``(layer, class)`` counts the distinct filters of that layer that are among the top
    ``k`` changed filters (see :func:`top_changed_filters`) at one or more of the snapshots
    where the class is flagged.

    Parameters
    ----------
    log : xarray.Dataset
        A filterscope log with ``correct``, ``metric`` and the filter coordinates.
    k : int, default 10
        Top changed filters taken per snapshot.
    metric : str, default "filter_cosine"
        One of :data:`CHANGE_METRICS`.
    flagged : xarray.DataArray of bool over (snapshot, class), optional
        Which classes are flagged when; defaults to ``unstable_samples(log).flagged``. Pass
        e.g. ``unstable_samples(log, preset="immediate").flagged`` for other settings.

    Returns
    -------
    xarray.DataArray
        int64 over ``(layer, class)`` named ``layer_class_correlation``, with the log's layer
        and class coordinates.

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> from filterscope.dynamics import from_arrays, layer_class_correlation
    >>> cos = np.array([[np.nan] * 3, [0.1, 0.9, 0.2], [0.9, 0.1, 0.8]])
    >>> log = from_arrays(np.ones((3, 2), bool), labels=[0, 1], layers={"a": 2, "b": 1},
    ...                   filter_metrics={"filter_cosine": cos})
    >>> flags = xr.DataArray([[False, False], [True, True], [False, True]],
    ...                      dims=("snapshot", "class"))
    >>> layer_class_correlation(log, k=1, flagged=flags).values
    array([[1, 2],
           [0, 0]])
    """
    lowest_first = _check_metric(log, metric, k)
    check_log(log, [], ["snapshot", "class", "layer", "filter"])
    if flagged is None:
        flagged = unstable_samples(log).flagged
    flags = _aligned_flags(log, flagged)
    picked = np.flatnonzero(flags.any(axis=1))
    values = log[metric].isel(snapshot=picked).transpose("snapshot", "filter").values
    row, col, _ = _top_k(values, k, lowest_first)

    n_filters = log.sizes["filter"]
    n_layers = log.sizes["layer"]
    top = sp.csr_array(
        (np.ones(len(row), dtype=np.int64), (row, col)), shape=(len(picked), n_filters)
    )
    class_by_pick = sp.csr_array(flags[picked].T.astype(np.int64))
    # (class, filter) > 0: the filter is top-k at some flagged snapshot of the class.
    seen = (class_by_pick @ top).astype(bool).astype(np.int64)
    layer_pos = pd.Index(np.asarray(log["layer"].values)).get_indexer(
        np.asarray(log["filter_layer_index"].values)
    )
    if (layer_pos < 0).any():
        raise LogFormatError(
            "filter_layer_index names layers missing from the 'layer' axis; "
            "select filters and layers together"
        )
    filter_layer = sp.csr_array(
        (np.ones(n_filters, dtype=np.int64), (np.arange(n_filters), layer_pos)),
        shape=(n_filters, n_layers),
    )
    counts = np.asarray((seen @ filter_layer).todense()).T
    return xr.DataArray(
        counts.astype(np.int64),
        dims=("layer", "class"),
        coords={**dim_coords(log, "layer"), **dim_coords(log, "class")},
        name="layer_class_correlation",
        attrs={"k": k, "metric": metric},
    )


def _check_metric(log: xr.Dataset, metric: str, k: int) -> bool:
    if metric not in CHANGE_METRICS:
        raise InvalidDataError(f"metric must be one of {list(CHANGE_METRICS)}, got {metric!r}")
    if not isinstance(k, int | np.integer) or k < 1:
        raise InvalidDataError(f"k must be a positive integer, got {k!r}")
    check_log(log, [metric], ["snapshot", "filter"])
    missing = [c for c in _FILTER_COORDS if c not in log.coords]
    if missing:
        raise LogFormatError(
            f"the log lacks the filter coordinate(s) {missing}; filterscope_format 1 stores "
            "each filter's layer and channel on the 'filter' axis"
        )
    return CHANGE_METRICS[metric]


def _aligned_flags(log: xr.Dataset, flagged: xr.DataArray) -> npt.NDArray[np.bool_]:
    if not isinstance(flagged, xr.DataArray) or set(flagged.dims) != {"snapshot", "class"}:
        raise InvalidDataError(
            "flagged must be a bool DataArray over (snapshot, class), such as "
            f"unstable_samples(log).flagged; got {type(flagged).__name__} "
            f"with dims {getattr(flagged, 'dims', None)}"
        )
    flags = flagged.transpose("snapshot", "class")
    expected = (log.sizes["snapshot"], log.sizes["class"])
    if flags.shape != expected:
        raise InvalidDataError(
            f"flagged has shape {flags.shape} over (snapshot, class), the log {expected}; "
            "compute the flags from the same log"
        )
    for dim in ("snapshot", "class"):
        if dim in flags.coords and not np.array_equal(flags[dim].values, log[dim].values):
            raise InvalidDataError(
                f"flagged's {dim!r} labels differ from the log's; compute them from the same log"
            )
    return np.asarray(flags.values, dtype=bool)


def _top_k(
    values: npt.NDArray[np.floating], k: int, lowest_first: bool
) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.intp], npt.NDArray[np.intp]]:
    """Top ``k`` columns of every row of ``values``, NaN excluded, ties to the lower column.

    Returns flat ``(row, column, rank)`` arrays, rank 0 being the largest change.
    """
    n_rows, n_cols = values.shape
    kk = min(k, n_cols)
    rows, cols, ranks = [], [], []
    per_chunk = block_length(n_cols)
    for start in range(0, n_rows if kk else 0, per_chunk):
        part = values[start : start + per_chunk].astype(np.float64)
        keys = part if lowest_first else -part
        valid = ~np.isnan(keys)
        keys = np.where(valid, keys, np.inf)
        # Every value at or below the k-th smallest is a candidate, so ties at the cut are kept
        # and settled by column below, not by argpartition's arbitrary order.
        kth = np.partition(keys, kk - 1, axis=1)[:, kk - 1 : kk]
        r, c = np.nonzero((keys <= kth) & valid)
        order = np.lexsort((c, keys[r, c], r))
        r, c = r[order], c[order]
        rank = np.arange(len(r)) - np.searchsorted(r, r, side="left")
        keep = rank < kk
        rows.append(r[keep] + start)
        cols.append(c[keep])
        ranks.append(rank[keep])
    if not rows:
        empty = np.zeros(0, dtype=np.intp)
        return empty, empty, empty
    return np.concatenate(rows), np.concatenate(cols), np.concatenate(ranks)


def anomaly_counts(analysis: xr.Dataset) -> xr.DataArray:
    """Number of anomaly filters at each analysed snapshot: ``(analysis_snapshot,)``.

    Parameters
    ----------
    analysis : xarray.Dataset
        The log's analysis group (``filterscope.open_log(path, group="analysis")``) or
        :attr:`AnalysisResult.dataset`, with the bool ``anomaly`` over
        ``analysis_snapshot, filter``.

    Examples
    --------
    >>> import xarray as xr
    >>> from filterscope.dynamics import anomaly_counts
    >>> analysis = xr.Dataset({"anomaly": (("analysis_snapshot", "filter"), [[True, False]])})
    >>> anomaly_counts(analysis).values.tolist()
    [1]
    """
    check_log(analysis, ["anomaly"], ["filter"])
    return analysis["anomaly"].astype(np.int64).sum("filter").compute().rename("anomaly_count")
