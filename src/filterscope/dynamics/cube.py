"""DeepTracker's cube: the layer × class correlation face and the class flags it is built on.

The cube (ACM TIST 2018) shows three faces that share axes: layers × iterations (the layer
view), classes × iterations (the validation view) and layers × classes (the correlation view).
A correlation cell counts the distinct filters of a layer that are among the top ``k`` changed
filters (:func:`~filterscope.dynamics.top_changed_filters`) at one or more snapshots where the
class is flagged as unstable (:func:`~filterscope.dynamics.unstable_samples`).
:func:`cube_faces` gathers, in one pass over the log, what a cube needs beyond the index: that
correlation, the flags and counts behind it, and an order of the classes (most correlated
first). :func:`flags_in_buckets` counts the flagged snapshots of each class inside the time
buckets an :meth:`~filterscope.index.Index.query` answer uses, so the flags line up with the
index's columns at any level.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import pandas as pd
import xarray as xr

from filterscope.dynamics.filters import layer_class_correlation
from filterscope.dynamics.unstable import PRESETS, Mode, _check_params
from filterscope.dynamics.validation import lag_count_arrays, lag_flags, lazy_coords
from filterscope.errors import InvalidDataError

__all__ = ["cube_faces", "flags_in_buckets"]


def cube_faces(
    log: xr.Dataset,
    *,
    k: int = 10,
    metric: str = "filter_cosine",
    window: int = 100,
    j: int | None = None,
    threshold: int | None = None,
    mode: Mode = "left",
    preset: Literal["sustained", "immediate"] = "sustained",
    counts: xr.Dataset | None = None,
    correlation: xr.DataArray | None = None,
) -> xr.Dataset:
    """The data of DeepTracker's cube beyond the index's series: flags and correlation.

    Parameters
    ----------
    log : xarray.Dataset
        A filterscope log with ``correct`` (``snapshot, sample``), ``label``, ``metric`` over
        ``snapshot, filter`` and the filter coordinates.
    k : int, default 10
        Top changed filters taken per snapshot (:func:`top_changed_filters`).
    metric : str, default "filter_cosine"
        One of :data:`~filterscope.dynamics.CHANGE_METRICS`.
    window, j, threshold, mode, preset
        As in :func:`~filterscope.dynamics.unstable_samples`, which flags the classes: a class
        is flagged where its count at lag ``j`` reaches ``threshold``.
    counts : xarray.Dataset, optional
        ``ab_left`` and ``ab_right`` at lag ``j`` over ``(snapshot, class)`` of this log, as
        :meth:`filterscope.index.Index.unstable_counts` keeps them; computed with
        :func:`~filterscope.dynamics.validation.lag_counts` when omitted.
    correlation : xarray.DataArray, optional
        The layer × class correlation under these flags, ``k`` and ``metric``, as
        :meth:`filterscope.index.Index.cube_correlation` keeps it (this function's own result,
        stored); computed with :func:`~filterscope.dynamics.layer_class_correlation` when
        omitted.

    Returns
    -------
    xarray.Dataset
        correlation : int64 (layer, class)
            :func:`~filterscope.dynamics.layer_class_correlation` under these flags.
        flagged : bool (snapshot, class)
            Where each class is flagged.
        flag_count : int32 (snapshot, class)
            The count that flags: unstable samples at lag ``j`` (``ab_left``, ``ab_right`` or
            their maximum for ``mode="both"``).
        flagged_snapshots, peak_count : int64 (class)
            Number of flagged snapshots and largest ``flag_count`` of each class.
        class_rank : int64 (class)
            Position of each class in the cube's order: most correlated filters first (the sum
            of its correlation column), then most flagged snapshots, then highest peak, then
            the class axis order.
        class_order : int64 (rank)
            Positions on the ``class`` axis in that order (``class_order[class_rank] == arange``).

        Attributes ``k``, ``metric``, ``window``, ``j``, ``threshold``, ``mode``, ``preset``.

    Examples
    --------
    >>> import numpy as np
    >>> from filterscope.dynamics import from_arrays
    >>> from filterscope.dynamics.cube import cube_faces
    >>> v = np.array([[1, 1], [1, 1], [0, 1], [0, 1]], bool)  # sample 0 (class 0) flips at 2
    >>> cos = np.array([[np.nan] * 3, [0.9, 0.8, 0.7], [0.1, 0.9, 0.8], [0.9, 0.9, 0.9]])
    >>> log = from_arrays(v, labels=[0, 1], layers={"a": 2, "b": 1},
    ...                   filter_metrics={"filter_cosine": cos})
    >>> faces = cube_faces(log, k=1, window=3, j=1, threshold=1)
    >>> faces.correlation.values.tolist(), faces.class_order.values.tolist()
    ([[1, 0], [0, 0]], [0, 1])
    """
    if preset not in PRESETS:
        raise InvalidDataError(f"preset must be one of {sorted(PRESETS)}, got {preset!r}")
    j = PRESETS[preset][0] if j is None else j
    threshold = PRESETS[preset][1] if threshold is None else threshold
    _check_params(window, j, threshold, mode)
    sc = ("snapshot", "class")
    left, right = lag_count_arrays(log, int(j), counts)
    flags = lag_flags(left, right, int(threshold), mode)
    flagged = xr.DataArray(
        flags["flagged"],
        dims=sc,
        coords=lazy_coords(log, "snapshot", "class"),
    )
    if correlation is None:
        correlation = layer_class_correlation(log, k=k, metric=metric, flagged=flagged)
    elif correlation.shape != (log.sizes["layer"], log.sizes["class"]):
        raise InvalidDataError(
            f"correlation must be (layer, class) = ({log.sizes['layer']}, "
            f"{log.sizes['class']}) like the log, got {correlation.shape}"
        )
    n_flagged = np.asarray(flags["flagged_snapshots"], dtype=np.int64)
    peak = np.asarray(flags["peak_count"], dtype=np.int64)
    total = correlation.sum("layer").values.astype(np.int64)
    n_classes = total.size
    # lexsort sorts by the last key first: correlation, then flags, peak, then position.
    order = np.lexsort((np.arange(n_classes), -peak, -n_flagged, -total)).astype(np.int64)
    rank = np.empty(n_classes, dtype=np.int64)
    rank[order] = np.arange(n_classes)
    return xr.Dataset(
        {
            "correlation": correlation,
            "flagged": (sc, np.asarray(flags["flagged"], dtype=bool)),
            "flag_count": (sc, np.asarray(flags["score"], dtype=np.int32)),
            "flagged_snapshots": (("class",), n_flagged),
            "peak_count": (("class",), peak),
            "class_rank": (("class",), rank),
            "class_order": (("rank",), order),
        },
        coords=lazy_coords(log, "snapshot", "class", "layer"),
        attrs={
            "k": k,
            "metric": metric,
            "window": window,
            "j": j,
            "threshold": threshold,
            "mode": mode,
            "preset": preset,
        },
    )


def flags_in_buckets(
    flagged: xr.DataArray,
    bucket_start: Any,
    bucket_stop: Any,
    classes: Any = None,
) -> npt.NDArray[np.int32]:
    """Flagged snapshots of each class inside time buckets given by their first and last label.

    Parameters
    ----------
    flagged : xarray.DataArray of bool over (snapshot, class)
        ``cube_faces(log).flagged`` or ``unstable_samples(log).flagged``.
    bucket_start, bucket_stop : array-like of snapshot labels
        First and last snapshot of each bucket, both included, as an
        :meth:`~filterscope.index.Index.query` answer's ``bucket_start`` / ``bucket_stop``.
    classes : array-like of class labels, optional
        Classes to count, in this order; default: every class.

    Returns
    -------
    numpy.ndarray of int32, shape (len(classes), len(bucket_start))

    Raises
    ------
    filterscope.InvalidDataError
        If a label is not on the snapshot or class axis, or a bucket ends before it starts.

    Examples
    --------
    >>> import xarray as xr
    >>> from filterscope.dynamics.cube import flags_in_buckets
    >>> f = xr.DataArray([[1, 0], [1, 1], [0, 0], [0, 1]], dims=("snapshot", "class"),
    ...                  coords={"snapshot": [0, 1, 2, 3], "class": [0, 1]}).astype(bool)
    >>> flags_in_buckets(f, [0, 2], [1, 3]).tolist()
    [[2, 0], [1, 1]]
    """
    if not isinstance(flagged, xr.DataArray) or set(flagged.dims) != {"snapshot", "class"}:
        raise InvalidDataError(
            "flagged must be a bool DataArray over (snapshot, class), such as "
            "cube_faces(log).flagged"
        )
    flags = flagged.transpose("snapshot", "class")
    snapshots = pd.Index(_labels(flags, "snapshot"))
    first = snapshots.get_indexer(np.asarray(bucket_start).ravel())
    last = snapshots.get_indexer(np.asarray(bucket_stop).ravel())
    if first.shape != last.shape or (first < 0).any() or (last < 0).any() or (last < first).any():
        raise InvalidDataError(
            "bucket_start and bucket_stop must be snapshot labels of the flags, pairwise in "
            "order (the bucket_start / bucket_stop of an Index.query answer)"
        )
    columns = np.arange(flags.sizes["class"])
    if classes is not None:
        columns = pd.Index(_labels(flags, "class")).get_indexer(np.asarray(classes).ravel())
        if (columns < 0).any():
            raise InvalidDataError("classes must be labels of the flags' 'class' axis")
    values = np.asarray(flags.values, dtype=bool)[:, columns]
    cumulative = np.zeros((values.shape[0] + 1, values.shape[1]), dtype=np.int64)
    np.cumsum(values, axis=0, out=cumulative[1:])
    return (cumulative[last + 1] - cumulative[first]).T.astype(np.int32)


def _labels(da: xr.DataArray, dim: str) -> npt.NDArray[Any]:
    if dim in da.coords:
        return np.asarray(da[dim].values)
    return np.arange(da.sizes[dim])
