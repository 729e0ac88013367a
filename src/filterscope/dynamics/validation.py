"""What DeepTracker's validation view draws beyond the index's error lines.

The view's heat lines come from the index (``class_error``, ``cluster_error``, ``correct``); this
module adds the derivations on top of them: the class flags of the unstable-sample pattern as
triangle marks (:func:`class_marks`), the order of the classes (1-D MDS of their error series or
peak flag count, :func:`order_classes`) and the order of one class's images (:func:`order_rows`).
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import numpy.typing as npt
import xarray as xr

from filterscope.dynamics.ordering import mds_order
from filterscope.dynamics.unstable import unstable_samples
from filterscope.errors import InvalidDataError

__all__ = ["MAX_MDS_ROWS", "ORDERS", "class_marks", "order_classes", "order_rows"]

#: Class orders of the validation view: 1-D MDS of the error series, or peak flag count.
ORDERS: tuple[str, ...] = ("mds", "peak")


def class_marks(log: xr.Dataset, *, j: int = 30, threshold: int = 5) -> xr.Dataset:
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
    counts = unstable_samples(log, window=int(j) + 1, j=int(j), threshold=threshold)
    left = counts.ab_left.isel(lag=int(j)).values
    right = counts.ab_right.isel(lag=int(j)).values
    up = np.where(left >= threshold, left, 0).astype(np.int32)
    down = np.zeros_like(up)
    down[1:] = np.where(right[:-1] >= threshold, right[:-1], 0)
    sc = ("snapshot", "class")
    return xr.Dataset(
        {
            "up": (sc, up),
            "down": (sc, down),
            "peak_count": counts.peak_count,
            "flagged_snapshots": counts.flagged_snapshots,
            "class_shown": counts.class_shown,
        },
        coords={name: c for name, c in counts.coords.items() if set(c.dims) <= set(sc)},
        attrs={"j": int(j), "threshold": int(threshold)},
    )


def order_classes(
    error: npt.ArrayLike,
    by: Literal["mds", "peak"] = "mds",
    peak: npt.ArrayLike | None = None,
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
