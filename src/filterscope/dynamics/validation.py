"""What DeepTracker's validation view draws beyond the index's error lines.

The view's heat lines come from the index (``class_error``, ``cluster_error``, ``correct``); this
module adds the derivations on top of them: the unstable-sample counts of every class at given
lags (:func:`lag_counts`, which the index stores for the presets' lags), the flags those counts
raise (:func:`lag_flags`), the class flags as triangle marks (:func:`class_marks`), the order of
the classes (1-D MDS of their error series or peak flag count, :func:`order_classes`) and the
order of one class's images (:func:`order_rows`).
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import Literal

import numpy as np
import numpy.typing as npt
import xarray as xr

from filterscope.dynamics.ordering import mds_order
from filterscope.dynamics.unstable import Mode, unstable_samples
from filterscope.errors import InvalidDataError

__all__ = [
    "MAX_MDS_ROWS",
    "ORDERS",
    "class_marks",
    "lag_counts",
    "lag_flags",
    "lazy_coords",
    "order_classes",
    "order_rows",
]

#: Class orders of the validation view: 1-D MDS of the error series, or peak flag count.
ORDERS: tuple[str, ...] = ("mds", "peak")


def lazy_coords(log: xr.Dataset, *dims: str) -> dict[Hashable, xr.Variable]:
    """The coordinates of ``log`` that lie on one of ``dims`` alone, as they are (not loaded)."""
    return {
        name: coord.variable
        for name, coord in log.coords.items()
        if len(coord.dims) == 1 and coord.dims[0] in dims
    }


def lag_counts(log: xr.Dataset, lags: Sequence[int]) -> xr.Dataset:
    """Unstable-sample counts of every class at a few lags: ``abLeft`` and ``abRight``.

    The columns ``lags`` of :func:`~filterscope.dynamics.unstable_samples`'s ``ab_left`` and
    ``ab_right``, which do not depend on its ``window`` (any window longer than the lag gives
    the same counts): all that class flags, triangle marks and the cube's class order need. The
    index keeps them for the presets' lags (:meth:`filterscope.index.Index.unstable_counts`),
    so views read them instead of scanning every image's series.

    Parameters
    ----------
    log : xarray.Dataset
        A filterscope log with ``correct`` and ``label``.
    lags : sequence of int
        Lags ``j`` (0 or more).

    Returns
    -------
    xarray.Dataset
        ``ab_left`` and ``ab_right``, int32 over ``(snapshot, class, lag)``.

    Examples
    --------
    >>> import numpy as np
    >>> from filterscope.dynamics import from_arrays
    >>> v = np.array([[0], [0], [0], [1], [1], [0]], bool)
    >>> lag_counts(from_arrays(v, labels=[0]), [0, 2]).ab_left.values[:, 0].tolist()
    [[0, 0], [0, 0], [0, 0], [1, 1], [0, 0], [1, 0]]
    """
    wanted = [int(j) for j in lags]
    if not wanted or any(isinstance(j, bool) or j < 0 for j in lags):
        raise InvalidDataError(f"lags must be integers >= 0, got {list(lags)!r}")
    counts = unstable_samples(log, window=max(wanted) + 1, j=0, threshold=1)
    return xr.Dataset(
        {name: counts[name].isel(lag=wanted) for name in ("ab_left", "ab_right")},
        attrs={"lags": wanted},
    )


def lag_count_arrays(
    log: xr.Dataset, j: int, counts: xr.Dataset | None = None
) -> tuple[npt.NDArray[np.integer], npt.NDArray[np.integer]]:
    """abLeft and abRight of lag ``j`` as ``(snapshot, class)`` arrays.

    From ``counts`` (one lag of :func:`lag_counts`, e.g. precomputed by the index) when given,
    checked against the log's sizes; else computed from the log.
    """
    sc = ("snapshot", "class")
    if counts is None:
        counts = lag_counts(log, [int(j)]).isel(lag=0)
    left = np.asarray(counts["ab_left"].transpose(*sc).values)
    right = np.asarray(counts["ab_right"].transpose(*sc).values)
    if left.shape != (log.sizes["snapshot"], log.sizes["class"]) or right.shape != left.shape:
        raise InvalidDataError(
            f"counts must be (snapshot, class) = ({log.sizes['snapshot']}, "
            f"{log.sizes['class']}) like the log, got {left.shape}"
        )
    return left, right


def lag_flags(
    left: npt.ArrayLike, right: npt.ArrayLike, threshold: int, mode: Mode = "left"
) -> dict[str, npt.NDArray[np.generic]]:
    """Where the counts at one lag flag each class, as :func:`unstable_samples` flags them.

    Parameters
    ----------
    left, right : array-like of int, shape (snapshot, class)
        ``ab_left`` and ``ab_right`` at the lag (:func:`lag_counts`).
    threshold : int
        Count that flags.
    mode : {"left", "right", "both"}, default "left"
        Which count flags (both: either).

    Returns
    -------
    dict
        ``flagged`` (bool, snapshot × class), ``score`` (the count ``mode`` uses), and per
        class ``peak_count`` (largest score), ``flagged_snapshots`` and ``class_shown`` (peak
        at least ``threshold`` and flagged at two snapshots or more).

    Examples
    --------
    >>> flags = lag_flags([[0, 3], [2, 3]], [[0, 0], [0, 0]], threshold=2)
    >>> flags["flagged_snapshots"].tolist(), flags["class_shown"].tolist()
    ([1, 2], [False, True])
    """
    left_counts = np.asarray(left)
    right_counts = np.asarray(right)
    flagged_left = left_counts >= threshold
    flagged_right = right_counts >= threshold
    if mode == "left":
        flagged, score = flagged_left, left_counts
    elif mode == "right":
        flagged, score = flagged_right, right_counts
    else:
        flagged = flagged_left | flagged_right
        score = np.maximum(left_counts, right_counts)
    peak = score.max(axis=0, initial=0).astype(np.int64)
    n_flagged = flagged.sum(axis=0).astype(np.int64)
    return {
        "flagged": flagged,
        "score": score,
        "peak_count": peak,
        "flagged_snapshots": n_flagged,
        "class_shown": (peak >= threshold) & (n_flagged >= 2),
    }


def class_marks(
    log: xr.Dataset, *, j: int = 30, threshold: int = 5, counts: xr.Dataset | None = None
) -> xr.Dataset:
    """DeepTracker's triangles: where a class's ``abLeft`` / ``abRight`` at lag ``j`` reach
    ``threshold``.

    ``abLeft[i][j]`` counts the class's images that flip at snapshot ``i`` after holding the
    other state for at least ``j + 1`` snapshots (an up-triangle at ``i``); ``abRight[i][j]``
    those that change right after ``i`` and keep the new state for at least ``j + 1`` (a
    down-triangle, drawn one column later, at ``i + 1``, where the change shows). Counted with
    :func:`~filterscope.dynamics.unstable_samples` over a window of ``j + 1`` snapshots, which
    gives the same counts at lag ``j`` as any longer window.

    Parameters
    ----------
    log : xarray.Dataset
        A filterscope log with ``correct`` and ``label``.
    j : int, default 30
        Lag (DeepTracker's default; 0 is the "immediate change" mode).
    threshold : int, default 5
        Smallest count that marks a snapshot (30 in the "immediate change" mode).
    counts : xarray.Dataset, optional
        ``ab_left`` and ``ab_right`` at lag ``j`` over ``(snapshot, class)`` of this log, as
        :meth:`filterscope.index.Index.unstable_counts` keeps them; computed with
        :func:`lag_counts` when omitted.

    Returns
    -------
    xarray.Dataset
        ``up`` and ``down`` (int32 over ``snapshot, class``: the count where it reaches the
        threshold, else 0; ``down`` already moved to the snapshot after), ``peak_count`` (the
        largest left count per class), ``flagged_snapshots`` and ``class_shown`` (peak at least
        ``threshold`` and flagged at two snapshots or more), with attributes ``j`` and
        ``threshold``.

    Examples
    --------
    >>> import numpy as np
    >>> from filterscope.dynamics import from_arrays
    >>> v = np.array([[0, 0], [0, 0], [1, 1], [1, 1]], bool)  # two images flip at snapshot 2
    >>> marks = class_marks(from_arrays(v, labels=[0, 0]), j=1, threshold=2)
    >>> marks.up.values[:, 0].tolist(), marks.down.values[:, 0].tolist()
    ([0, 0, 2, 0], [0, 0, 2, 0])
    """
    if isinstance(j, bool) or not isinstance(j, int | np.integer) or j < 0:
        raise InvalidDataError(f"j must be a lag, an integer >= 0, got {j!r}")
    if isinstance(threshold, bool) or not isinstance(threshold, int | np.integer):
        raise InvalidDataError(f"threshold must be a positive integer, got {threshold!r}")
    if threshold < 1:
        raise InvalidDataError(f"threshold must be a positive integer, got {threshold!r}")
    sc = ("snapshot", "class")
    left, right = lag_count_arrays(log, int(j), counts)
    flags = lag_flags(left, right, int(threshold))
    up = np.where(left >= threshold, left, 0).astype(np.int32)
    down = np.zeros_like(up)
    down[1:] = np.where(right[:-1] >= threshold, right[:-1], 0)
    return xr.Dataset(
        {
            "up": (sc, up),
            "down": (sc, down),
            **{
                name: (("class",), flags[name])
                for name in ("peak_count", "flagged_snapshots", "class_shown")
            },
        },
        coords=lazy_coords(log, "snapshot", "class"),
        attrs={"j": int(j), "threshold": int(threshold)},
    )


def order_classes(
    error: npt.ArrayLike,
    by: Literal["mds", "peak"] = "mds",
    peak: npt.ArrayLike | None = None,
    mds: npt.ArrayLike | None = None,
) -> npt.NDArray[np.intp]:
    """Display order of the classes: positions along the class axis.

    Parameters
    ----------
    error : array-like, shape (snapshot, class)
        Each class's error series (the index's ``class_error``); classes without samples are
        NaN throughout and come last.
    by : {"mds", "peak"}, default "mds"
        ``"mds"``: a 1-D MDS of the cosine distances between the error series, so classes that
        behave alike sit together; ``"peak"``: by ``peak`` count, largest first (ties by MDS).
    peak : array-like, shape (class,), optional
        Peak flag count per class (``class_marks(...).peak_count``); needed for ``"peak"``.
    mds : array-like of int, optional
        The ``"mds"`` order of this ``error`` when already known (the index keeps the one of
        the whole run, :meth:`filterscope.index.Index.class_order`); saves computing it again.

    Examples
    --------
    >>> import numpy as np
    >>> err = np.array([[0.9, 0.1, 0.8], [0.1, 0.9, 0.2]])
    >>> order_classes(err).tolist(), order_classes(err, "peak", [0, 3, 1]).tolist()
    ([0, 2, 1], [1, 2, 0])
    """
    if by not in ORDERS:
        raise InvalidDataError(f"by must be one of {list(ORDERS)}, got {by!r}")
    series = np.asarray(error, dtype=np.float64).T
    if series.ndim != 2:
        raise InvalidDataError(
            f"error must be 2-D (snapshot, class), got shape {series.shape[::-1]}"
        )
    defined = np.flatnonzero(np.isfinite(series).any(axis=1))
    if mds is not None:
        given = np.asarray(mds, dtype=np.intp)
        if sorted(given.tolist()) != list(range(series.shape[0])):
            raise InvalidDataError(
                f"mds must be an order of the {series.shape[0]} classes (each position once)"
            )
        order = given[np.isin(given, defined)]
    else:
        values = np.nan_to_num(series[defined])
        order = defined[mds_order(values)] if len(defined) else defined
    if by == "peak":
        if peak is None:
            raise InvalidDataError("by='peak' needs the peak count of every class")
        counts = np.asarray(peak)
        order = order[np.argsort(-counts[order], kind="stable")]
    empty = np.setdiff1d(np.arange(series.shape[0]), defined)
    return np.concatenate([order, empty]).astype(np.intp)


#: Most images :func:`order_rows` orders by MDS (its distance matrix is O(n²) memory).
MAX_MDS_ROWS = 4000


def order_rows(values: npt.ArrayLike, max_mds: int = MAX_MDS_ROWS) -> npt.NDArray[np.intp]:
    """Order the images of one class by a 1-D MDS of their correctness series.

    ``values`` is ``(snapshot, image)``: correct (1) or wrong (0) at each snapshot, or the
    fraction correct over a bucket of snapshots (NaN counts as wrong). Above ``max_mds``
    images (the MDS needs an ``n × n`` distance matrix) they are ordered by their mean
    correctness instead, ties by image position.

    Examples
    --------
    >>> import numpy as np
    >>> v = np.array([[0, 0, 1], [0, 1, 1], [1, 1, 1]])
    >>> order_rows(v).tolist()
    [0, 1, 2]
    """
    rows = np.nan_to_num(np.asarray(values, dtype=np.float64)).T
    if rows.shape[0] > max_mds:
        return np.argsort(rows.mean(axis=1), kind="stable").astype(np.intp)
    return mds_order(rows)
