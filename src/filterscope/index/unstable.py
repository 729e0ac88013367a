"""Per-class summaries the index keeps besides its time pyramids: unstable counts, class order.

What the validation view and the cube need at start-up, derived once per build (and extended
with the log) instead of once per view:

* ``unstable/ab_left``, ``unstable/ab_right`` ``(snapshot, class, lag)`` int32: the
  unstable-sample counts of every class at the lags of the presets
  (:data:`filterscope.dynamics.unstable.PRESETS`: 30 and 0), computed with
  :func:`filterscope.dynamics.validation.lag_counts`. A left count at snapshot ``i`` depends on
  snapshots ``<= i`` only and a right count on the ``j + 2`` snapshots after it at most, so an
  extension recomputes the last ``max(lag) + 2`` snapshots and the new ones, reading
  ``max(lag) + 1`` snapshots before them (enough for every walk to reach its cap).
* ``class_mds`` ``(class,)``: the classes in the order of a 1-D MDS of their error series
  over the whole run (:func:`filterscope.dynamics.validation.order_classes`), recomputed at
  every build from the stored ``class_error``.
* ``cube_correlation`` ``(layer, class)`` int64: the cube's layer × class correlation with its
  defaults (:data:`CUBE_DEFAULTS`: top 10 ``filter_cosine`` filters, the sustained preset's
  flags), from :func:`filterscope.dynamics.cube.cube_faces` on the stored counts, recomputed at
  every build (a flag at any snapshot can add filters to a cell).
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import numpy.typing as npt
import xarray as xr
import zarr

from filterscope.index.build import _COMPRESSORS, _put

__all__ = [
    "CUBE_DEFAULTS",
    "LAGS",
    "UNSTABLE_GROUP",
    "build_class_summaries",
    "read_correlation",
    "read_counts",
]

#: Group of the counts inside the index group.
UNSTABLE_GROUP = "unstable"
#: Snapshots per chunk of the count arrays.
_CHUNK = 256


#: Lags whose counts are stored: those of the presets of ``unstable_samples`` (sustained 30,
#: immediate 0; a test holds them equal).
LAGS: tuple[int, ...] = (0, 30)
#: The cube settings whose correlation face is stored (``CubeView``'s defaults).
CUBE_DEFAULTS: dict[str, Any] = {"k": 10, "metric": "filter_cosine", "preset": "sustained"}


def build_class_summaries(
    log: xr.Dataset, index: zarr.Group, done: int, class_error: zarr.Array | None
) -> None:
    """Write (or extend from ``done`` committed snapshots) the counts and the class order.

    Parameters
    ----------
    log : xarray.Dataset
        The whole log being indexed (``correct``, ``label``, ``class``).
    index : zarr.Group
        The index group (open for writing).
    done : int
        Snapshots the previous commit covered (0: compute everything).
    class_error : zarr.Array, optional
        The index's level-0 ``class_error`` ``(snapshot, class)`` just written; when given,
        ``class_mds`` is recomputed from it.
    """
    from filterscope.dynamics.validation import lag_counts, order_classes

    n, n_classes = int(log.sizes["snapshot"]), int(log.sizes["class"])
    lags = list(LAGS)
    group = index.require_group(UNSTABLE_GROUP)
    arrays = dict(group.arrays())
    same = (
        group.attrs.get("lags") == lags
        and all(name in arrays for name in ("ab_left", "ab_right"))
        and all(arrays[name].shape[1:] == (n_classes, len(lags)) for name in arrays)
    )
    kept = min(done, *(arrays[name].shape[0] for name in arrays)) if same else 0
    if kept > n:
        kept = 0  # the log was cut back: recompute
    # Right counts of the last max(lag) + 2 snapshots wait for the snapshots after them.
    start = max(0, kept - (max(lags) + 2))
    context = max(0, start - (max(lags) + 1))
    if n > 0:
        counts = lag_counts(log.isel(snapshot=slice(context, n)), lags)
        for name in ("ab_left", "ab_right"):
            values = np.asarray(
                counts[name].transpose("snapshot", "class", "lag").values[start - context :],
                dtype=np.int32,
            )
            if same:
                array = arrays[name]
                array.resize((n, n_classes, len(lags)))
            else:
                if name in arrays:
                    del group[name]
                array = group.create_array(
                    name,
                    shape=(n, n_classes, len(lags)),
                    dtype=np.int32,
                    chunks=(_CHUNK, n_classes, len(lags)),
                    compressors=_COMPRESSORS,
                    fill_value=0,
                )
            array[start:n] = values
    group.attrs["lags"] = lags
    group.attrs["snapshots"] = n
    _build_correlation(log, index, group, n)
    if class_error is not None and n > 0:
        error = np.asarray(class_error[:n])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            order = order_classes(error, "mds")
        _put(index, "class_mds", np.asarray(order, dtype=np.int64))


def read_counts(root: zarr.Group, j: int, length: int) -> dict[str, npt.NDArray[Any]] | None:
    """``ab_left`` and ``ab_right`` at lag ``j`` over the first ``length`` snapshots, or None
    when the index does not keep that lag (or not that many snapshots)."""
    if UNSTABLE_GROUP not in root:
        return None
    group = root[UNSTABLE_GROUP]
    assert isinstance(group, zarr.Group)
    stored_lags: Any = group.attrs.get("lags", [])
    stored_length: Any = group.attrs.get("snapshots", -1)
    lags = [int(x) for x in stored_lags]
    if j not in lags or int(stored_length) < length:
        return None
    at = lags.index(j)
    out = {}
    for name in ("ab_left", "ab_right"):
        array = group[name]
        assert isinstance(array, zarr.Array)
        out[name] = np.asarray(array[:length, :, at])
    return out


def _build_correlation(log: xr.Dataset, index: zarr.Group, group: zarr.Group, n: int) -> None:
    from filterscope.dynamics.cube import cube_faces
    from filterscope.dynamics.unstable import PRESETS

    metric = CUBE_DEFAULTS["metric"]
    needed = ("filter", "layer")
    if n == 0 or metric not in log.data_vars or any(d not in log.dims for d in needed):
        if "cube_correlation" in index:
            del index["cube_correlation"]
        return
    j = PRESETS[CUBE_DEFAULTS["preset"]][0]
    found = read_counts(index, j, n)
    assert found is not None
    counts = xr.Dataset({name: (("snapshot", "class"), values) for name, values in found.items()})
    faces = cube_faces(
        log, k=CUBE_DEFAULTS["k"], metric=metric, preset=CUBE_DEFAULTS["preset"], counts=counts
    )
    values = np.asarray(faces["correlation"].transpose("layer", "class").values, np.int64)
    _put(index, "cube_correlation", values)
    index["cube_correlation"].attrs.update({**CUBE_DEFAULTS, "snapshots": n})


def read_correlation(root: zarr.Group, length: int, **settings: Any) -> npt.NDArray[Any] | None:
    """The stored cube correlation ``(layer, class)`` when it was built for ``settings`` over
    ``length`` snapshots, else None."""
    if "cube_correlation" not in root:
        return None
    array = root["cube_correlation"]
    assert isinstance(array, zarr.Array)
    attrs = dict(array.attrs)
    if any(attrs.get(key) != value for key, value in settings.items()):
        return None
    stored: Any = attrs.get("snapshots", -1)
    if int(stored) != length:
        return None
    return np.asarray(array[...])
