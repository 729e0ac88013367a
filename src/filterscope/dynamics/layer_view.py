"""What DeepTracker's layer view draws, read from a log's index and its filter rankings.

Every number here comes from :meth:`filterscope.index.Index.query` on the layer tree (stage →
block → layer) or on the flat filter axis, and from :func:`top_changed_filters`; the view
(:class:`filterscope.views.layer.LayerView`) only draws it.

- :func:`node_series`: one chart per tree node over time, for the four chart kinds: a statistic
  (``mean_abs`` is DeepTracker's default, ``l1 / n``: the mean magnitude per parameter), the box
  ``min, q1, mean, q3, max`` or the change ratios at thresholds.
- :func:`filter_rows`: a layer's filters over time, coloured by the consecutive-snapshot cosine.
- :func:`lowest_cosine_filters`: the filters with the lowest consecutive-snapshot cosine at
  picked iterations (their intersection for several picks).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
import pandas as pd
import xarray as xr

from filterscope.dynamics.filters import top_changed_filters
from filterscope.errors import InvalidParameterError

if TYPE_CHECKING:  # the index imports dynamics; this module only receives an Index
    from filterscope.index.core import Index

#: Chart kinds of the layer view.
CHARTS: tuple[str, ...] = ("horizon", "line", "box", "bands")
#: Statistics of the box plot, bottom to top.
BOX_STATS: tuple[str, ...] = ("min", "q1", "mean", "q3", "max")
#: Change-ratio thresholds DeepTracker shows by default.
DEFAULT_THRESHOLDS: tuple[float, ...] = (0.1, 0.01, 0.001, 0.0001)
#: The mean magnitude per parameter, ``l1 / n`` (the default of the horizon graph).
MEAN_ABS = "mean_abs"
#: Log variable of each ``variable`` choice.
VARIABLES: dict[str, str] = {"gradient": "grad_stat", "weight": "weight_stat"}


def statistics(idx: Index) -> list[str]:
    """Statistics a node chart may show: ``mean_abs`` then the log's ``stat`` labels."""
    stats = [str(s) for s in idx.log["stat"].values] if "stat" in idx.log.coords else []
    return [MEAN_ABS, *stats] if "l1" in stats else stats


def snapshot_window(idx: Index, start: int, stop: int) -> slice:
    """The snapshots covering steps ``start..stop``: from the one at or before ``start`` to the
    first at or after ``stop`` (the points a chart needs to draw to both edges).

    Raises
    ------
    InvalidParameterError
        If the window holds no snapshot step and has none on both sides.
    """
    steps = np.asarray(idx.log["snapshot_step"].values, dtype=np.int64)
    labels = idx.labels("snapshot")
    steps = steps[: labels.size]
    if steps.size == 0:
        raise InvalidParameterError("the log has no snapshots")
    first = max(int(np.searchsorted(steps, start, "right")) - 1, 0)
    last = min(int(np.searchsorted(steps, stop, "left")), steps.size - 1)
    if last < first:
        last = first
    return slice(labels[first], labels[last])


def node_series(
    idx: Index,
    *,
    variable: str = "gradient",
    chart: str = "horizon",
    stat: str = MEAN_ABS,
    thresholds: Sequence[float] = DEFAULT_THRESHOLDS,
    time: slice | None = None,
    columns: int = 800,
    nodes: Sequence[str] | None = None,
) -> xr.DataArray:
    """Every tree node's chart values over time, at the index level that fits ``columns``.

    Parameters
    ----------
    idx : Index
        The log's index (with the layer-tree aggregates).
    variable : {"gradient", "weight"}
    chart : {"horizon", "line", "box", "bands"}
        ``horizon`` and ``line`` read ``stat``; ``box`` the five :data:`BOX_STATS`; ``bands``
        the change ratio (the fraction of a node's weights with ``|g / w| <= t``) at each of
        ``thresholds``.
    stat : str
        ``"mean_abs"`` (``l1`` over the node's weight count) or a label of the log's ``stat``.
    time : slice, optional
        Snapshot labels, both ends included (see :func:`snapshot_window`).
    columns : int
        Pixels across; longer windows come as bucket means of a coarser level.
    nodes : list of str, optional
        Tree nodes (default: all, in tree order).

    Returns
    -------
    xarray.DataArray
        ``(node, snapshot, part)`` of bucket means, float64; ``part`` is ``["value"]``, the box
        statistics or the thresholds. Coordinates ``snapshot_step`` (each bucket's first step);
        attrs ``level`` and ``approximate`` (node statistics that are weighted averages).

    Examples
    --------
    >>> import tempfile
    >>> from filterscope.data.synthetic import synthetic_log
    >>> from filterscope.index import open_index
    >>> path = tempfile.mkdtemp() + "/run"
    >>> _ = synthetic_log(path, n_samples=40, n_classes=4, n_snapshots=10, layers="resnet18",
    ...                   plant=False)
    >>> out = node_series(open_index(path, progress=False), chart="box", columns=5)
    >>> out.dims, out.sizes["snapshot"], out["part"].values.tolist()
    (('node', 'snapshot', 'part'), 5, ['min', 'q1', 'mean', 'q3', 'max'])
    """
    if variable not in VARIABLES:
        raise InvalidParameterError(f"variable must be one of {list(VARIABLES)}, got {variable!r}")
    if chart not in CHARTS:
        raise InvalidParameterError(f"chart must be one of {list(CHARTS)}, got {chart!r}")
    names = list(idx.nodes()["node"].values) if nodes is None else list(nodes)
    if chart == "bands":
        answer = idx.query(
            "change_ratio",
            time=time,
            columns=columns,
            node=names,
            rows={"threshold": list(thresholds)},
        )
        parts: list[Any] = [float(t) for t in thresholds]
        values = answer.sel(agg="mean").transpose("node", answer.dims[1], "threshold").values
    else:
        allowed = statistics(idx)
        wanted = list(BOX_STATS) if chart == "box" else [stat]
        bad = [s for s in wanted if s not in allowed]
        if bad:
            raise InvalidParameterError(f"stat must be one of {allowed}, got {bad[0]!r}")
        read = ["l1" if s == MEAN_ABS else s for s in wanted]
        answer = idx.query(
            VARIABLES[variable], time=time, columns=columns, node=names, rows={"stat": read}
        )
        values = answer.sel(agg="mean").transpose("node", answer.dims[1], "stat").values
        values = values.astype(np.float64)
        if stat == MEAN_ABS and chart != "box":
            params = np.asarray(answer["node_params"].values, dtype=np.float64)
            with np.errstate(invalid="ignore", divide="ignore"):
                values = values / np.where(params > 0, params, np.nan)[:, None, None]
        parts = wanted
    time_dim = answer.dims[1]
    return xr.DataArray(
        np.asarray(values, dtype=np.float64),
        dims=("node", "snapshot", "part"),
        coords={
            "node": names,
            "snapshot": answer[time_dim].values,
            "snapshot_step": ("snapshot", np.asarray(answer["snapshot_step"].values)),
            "part": parts,
        },
        name=f"{variable}_{chart}",
        attrs={
            "level": int(answer.attrs["level"]),
            "approximate": list(answer.attrs.get("approximate", [])),
        },
    )


def filter_rows(
    idx: Index,
    layer: str,
    *,
    metric: str = "filter_cosine",
    time: slice | None = None,
    columns: int = 800,
) -> xr.DataArray:
    """One row per filter of ``layer`` over time: the bucket means of ``metric``.

    Returns
    -------
    xarray.DataArray
        ``(filter, snapshot)`` float64 with ``filter_channel`` and ``snapshot_step``; attrs
        ``level``.
    """
    answer = idx.query(metric, time=time, columns=columns, node=layer)
    time_dim = answer.dims[1]
    out = answer.sel(agg="mean").transpose("filter", time_dim).astype(np.float64)
    out.attrs = {"level": int(answer.attrs["level"])}
    return out


def metric_extent(idx: Index, metric: str = "filter_cosine") -> tuple[float, float]:
    """Finite ``(min, max)`` of ``metric`` over every filter and snapshot (NaN, NaN if none)."""
    whole = idx.query(metric, level=idx.levels(metric))
    lo = np.asarray(whole.sel(agg="min").values, dtype=np.float64)
    hi = np.asarray(whole.sel(agg="max").values, dtype=np.float64)
    if not np.isfinite(lo).any():
        return float("nan"), float("nan")
    return float(np.nanmin(lo)), float(np.nanmax(hi))


def step_snapshots(log: xr.Dataset, steps: Sequence[int]) -> npt.NDArray[Any]:
    """Snapshot labels of picked steps: the last snapshot taken at or before each step."""
    snap_steps = np.asarray(log["snapshot_step"].values, dtype=np.int64)
    labels = np.asarray(log["snapshot"].values)
    at = np.searchsorted(snap_steps, np.asarray(list(steps), dtype=np.int64), "right") - 1
    return labels[np.clip(at, 0, max(labels.size - 1, 0))]


def lowest_cosine_filters(log: xr.Dataset, steps: Sequence[int], k: int = 10) -> pd.DataFrame:
    """The ``k`` filters with the lowest consecutive-snapshot cosine at picked iterations.

    DeepTracker's answer to picking iterations: at one pick, the ``k`` filters across all layers
    whose weights turned most since the previous snapshot; at several, those in every pick's
    ``k`` (the intersection, possibly empty). Each step maps to the last snapshot at or before
    it; ranking is :func:`filterscope.dynamics.top_changed_filters`.

    Returns
    -------
    pandas.DataFrame
        ``top_changed_filters``' columns, intersection rows only, in its order.

    Examples
    --------
    >>> import numpy as np
    >>> from filterscope.dynamics import from_arrays
    >>> cos = np.array([[np.nan] * 4, [0.9, 0.2, 0.95, 0.5], [0.1, 0.3, 0.99, 0.98]])
    >>> log = from_arrays(np.ones((3, 1), bool), labels=[0], layers={"a": 2, "b": 2},
    ...                   filter_metrics={"filter_cosine": cos})
    >>> log = log.assign_coords(snapshot_step=("snapshot", [0, 10, 20]))
    >>> lowest_cosine_filters(log, [10, 20], k=2)["filter"].tolist()
    [1]
    """
    if not steps:
        return top_changed_filters(log, [], k=k).iloc[0:0]
    snapshots = step_snapshots(log, steps)
    table = top_changed_filters(log, snapshots, k=k)
    return table[table["in_all"]].reset_index(drop=True)
