"""Orderings and groupings of classes and samples for display.

DeepTracker (ACM TIST 2018) orders the rows of its validation view by a one-dimensional
multidimensional scaling of the cosine distances between their series, so rows that behave
alike sit together, and groups classes by k-means on their standardised error series.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import scipy.linalg
import scipy.sparse.linalg
import xarray as xr
from scipy.spatial.distance import cdist
from sklearn.cluster import KMeans

from filterscope.dynamics._common import (
    class_positions,
    class_sizes,
    dim_coords,
    load_correct,
)
from filterscope.dynamics.samples import class_error, class_error_values
from filterscope.errors import InvalidDataError, NonFiniteError

# Up to this many rows a dense eigensolver is cheap; above it, Lanczos is much faster.
_DENSE_EIGH_MAX = 200


def mds_order(
    series: npt.ArrayLike, metric: Literal["cosine", "euclidean"] = "cosine"
) -> npt.NDArray[np.intp]:
    """Order the rows of ``series`` along a one-dimensional classical MDS embedding.

    Classical (Torgerson) MDS double-centres the squared distance matrix and takes its leading
    eigenvector; it is deterministic and needs no random start. The embedding's sign is fixed
    so that it increases with row position on average: rows already in order keep it. Cosine distance between two all-zero
    rows is 0 and between an all-zero row and another row is 1 (cosine is undefined there).
    Cost: O(n²) memory; the leading eigenvector comes from a dense solver up to 200 rows and
    from Lanczos iterations (O(n²) each, fixed start) above.

    Parameters
    ----------
    series : array-like, shape (n_rows, n_features)
        One row per item (a class's error series, a sample's correctness series...).
    metric : {"cosine", "euclidean"}, default "cosine"
        Distance between rows.

    Returns
    -------
    numpy.ndarray of int
        Row positions, from the lowest embedding coordinate to the highest.

    Raises
    ------
    filterscope.InvalidDataError
        If ``series`` is not 2-D or ``metric`` is unknown.
    filterscope.NonFiniteError
        If ``series`` holds NaN or infinity.

    Examples
    --------
    >>> import numpy as np
    >>> from filterscope.dynamics import mds_order
    >>> angle = np.array([0.9, 0.1, 0.5, 0.3])
    >>> rows = np.stack([np.cos(angle), np.sin(angle)], axis=1)
    >>> mds_order(rows).tolist()
    [0, 2, 3, 1]
    """
    x = np.asarray(series, dtype=np.float64)
    if x.ndim != 2:
        raise InvalidDataError(f"series must be 2-D (rows, features), got shape {x.shape}")
    if not np.isfinite(x).all():
        raise NonFiniteError("series holds NaN or infinity; fill or drop those rows first")
    n = x.shape[0]
    if n < 2:
        return np.arange(n, dtype=np.intp)
    if metric == "cosine":
        norms = np.linalg.norm(x, axis=1)
        zero = norms == 0
        unit = x / np.where(zero, 1.0, norms)[:, None]
        similarity = unit @ unit.T
        similarity[np.ix_(zero, zero)] = 1.0
        distance = np.clip(1.0 - similarity, 0.0, 2.0)
    elif metric == "euclidean":
        distance = cdist(x, x)
    else:
        raise InvalidDataError(f"metric must be 'cosine' or 'euclidean', got {metric!r}")
    squared = distance**2
    gram = -0.5 * (squared - squared.mean(axis=0) - squared.mean(axis=1)[:, None] + squared.mean())
    if not np.abs(gram).max() > 0:  # every row at distance 0 from every other: no axis
        return np.arange(n, dtype=np.intp)
    if n <= _DENSE_EIGH_MAX:
        value, vector = scipy.linalg.eigh(gram, subset_by_index=[n - 1, n - 1])
    else:
        # Lanczos needs only matrix-vector products: O(n²) per step instead of O(n³) once.
        # A fixed random start keeps it deterministic (ones would be in the kernel of gram).
        start = np.random.default_rng(0).standard_normal(n)
        value, vector = scipy.sparse.linalg.eigsh(gram, k=1, which="LA", v0=start)
    coordinate = vector[:, 0] * np.sqrt(max(float(value[0]), 0.0))
    # Orient the axis along the input order, so rows already in MDS order keep their order.
    if coordinate @ (np.arange(n) - (n - 1) / 2) < 0:
        coordinate = -coordinate
    return np.argsort(coordinate, kind="stable").astype(np.intp)


def class_order(
    log: xr.Dataset, metric: Literal["cosine", "euclidean"] = "cosine"
) -> npt.NDArray[Any]:
    """Order classes by a 1-D MDS of their error series (see :func:`mds_order`).

    Classes without samples (undefined error) come last, in axis order.

    Parameters
    ----------
    log : xarray.Dataset
        A filterscope log with ``correct`` and ``label``.
    metric : {"cosine", "euclidean"}, default "cosine"

    Returns
    -------
    numpy.ndarray
        Labels of the ``class`` coordinate in display order; ``log.sel({"class": order})``
        reorders a log.

    Examples
    --------
    >>> import numpy as np
    >>> from filterscope.dynamics import from_arrays, class_order
    >>> v = np.array([[0, 0, 1, 1], [0, 1, 1, 0], [1, 1, 0, 0]], bool)
    >>> class_order(from_arrays(v, labels=[0, 1, 2, 3])).tolist()
    [1, 0, 3, 2]
    """
    error = class_error(log).transpose("class", "snapshot")
    defined = np.flatnonzero(error["class_size"].values > 0)
    order = defined[mds_order(error.values[defined], metric)]
    empty = np.flatnonzero(error["class_size"].values == 0)
    return np.asarray(error["class"].values)[np.concatenate([order, empty])]


def sample_order(
    log: xr.Dataset, class_: Any, metric: Literal["cosine", "euclidean"] = "cosine"
) -> npt.NDArray[Any]:
    """Order one class's samples by a 1-D MDS of their correctness series.

    Parameters
    ----------
    log : xarray.Dataset
        A filterscope log with ``correct`` and ``label``.
    class_ : label of the ``class`` coordinate
        The class whose samples to order.
    metric : {"cosine", "euclidean"}, default "cosine"
        Distance between correctness series (as 0/1 vectors); with cosine, samples never
        correct are at distance 1 from every sample that ever is.

    Returns
    -------
    numpy.ndarray
        Labels of the ``sample`` coordinate in display order.

    Raises
    ------
    filterscope.InvalidDataError
        If ``class_`` is not on the class axis.

    Examples
    --------
    >>> import numpy as np
    >>> from filterscope.dynamics import from_arrays, sample_order
    >>> v = np.array([[0, 0, 1, 0], [0, 1, 1, 0], [1, 1, 1, 0]], bool)
    >>> sample_order(from_arrays(v, labels=[1, 1, 1, 0]), 1).tolist()
    [0, 1, 2]
    """
    classes, _ = class_positions(log)
    axis = np.asarray(log["class"].values)
    where = np.flatnonzero(axis == class_)
    if len(where) != 1:
        raise InvalidDataError(
            f"class {class_!r} is not on the class axis (labels {axis[:5].tolist()}...); pass a "
            "label of the 'class' coordinate"
        )
    members = np.flatnonzero(classes == where[0])
    correct = load_correct(log)
    order = mds_order(correct[:, members].T.astype(np.float64), metric)
    return np.asarray(log["sample"].values)[members[order]]


def class_clusters(log: xr.Dataset, k: int = 4, random_state: int | None = 0) -> xr.Dataset:
    """Group classes whose error series have the same shape.

    Each class's error series is standardised (zero mean, unit variance over snapshots; a
    constant series becomes all zeros) and the classes are clustered by k-means
    (``n_init=10``). Clusters are numbered by increasing mean error, so labels do not depend on
    k-means' internal order. A cluster's aggregated error line is the error of the union of its
    classes' samples, ``1 - sum(correct) / sum(size)``.

    Parameters
    ----------
    log : xarray.Dataset
        A filterscope log with ``correct`` and ``label``.
    k : int, default 4
        Number of clusters; at most the number of classes that have samples.
    random_state : int or None, default 0
        Seed of k-means.

    Returns
    -------
    xarray.Dataset
        ``class_cluster`` (int64 over ``class``; -1 for classes without samples),
        ``cluster_error`` (float64 over ``snapshot, cluster``) and ``cluster_classes``
        (int64 over ``cluster``, number of classes).

    Examples
    --------
    >>> import numpy as np
    >>> from filterscope.dynamics import from_arrays, class_clusters
    >>> rng = np.random.default_rng(0)
    >>> early = rng.random((20, 40)) < np.linspace(0.1, 0.95, 20)[:, None] ** 0.3
    >>> late = rng.random((20, 40)) < np.linspace(0.1, 0.95, 20)[:, None] ** 3
    >>> log = from_arrays(np.concatenate([early, late], axis=1), labels=np.arange(80) // 10)
    >>> class_clusters(log, k=2).class_cluster.values.tolist()
    [0, 0, 0, 0, 1, 1, 1, 1]
    """
    if not isinstance(k, int | np.integer) or k < 1:
        raise InvalidDataError(f"k must be a positive integer, got {k!r}")
    correct = load_correct(log)
    classes, n_classes = class_positions(log)
    sizes = class_sizes(classes, n_classes)
    defined = np.flatnonzero(sizes > 0)
    if k > len(defined):
        raise InvalidDataError(
            f"k={k} clusters need at least {k} classes with samples, the log has {len(defined)}"
        )
    error = class_error_values(correct, classes, n_classes)[:, defined]
    spread = error.std(axis=0)
    standard = (error - error.mean(axis=0)) / np.where(spread > 0, spread, 1.0)
    raw = KMeans(n_clusters=k, n_init=10, random_state=random_state).fit_predict(standard.T)
    # Renumber by increasing mean error so the labels mean something and are stable.
    raw_onehot = raw[:, None] == np.arange(k)
    mean_error = error.mean(axis=0) @ raw_onehot / raw_onehot.sum(axis=0)
    rename = np.empty(k, dtype=np.int64)
    rename[np.argsort(mean_error, kind="stable")] = np.arange(k)
    cluster = np.full(n_classes, -1, dtype=np.int64)
    cluster[defined] = rename[raw]
    member = cluster[defined]
    onehot = (member[:, None] == np.arange(k)).astype(np.int64)  # (defined class, cluster)
    # Every sample belongs to a class with samples, hence to a cluster.
    cluster_error = class_error_values(correct, cluster[classes].astype(np.intp), k)
    return xr.Dataset(
        {
            "class_cluster": (("class",), cluster),
            "cluster_error": (("snapshot", "cluster"), cluster_error),
            "cluster_classes": (("cluster",), onehot.sum(axis=0)),
        },
        coords={
            **dim_coords(log, "snapshot"),
            **dim_coords(log, "class"),
            "cluster": (("cluster",), np.arange(k, dtype=np.int64)),
        },
        attrs={"k": k},
    )
