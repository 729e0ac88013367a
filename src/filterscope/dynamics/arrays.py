"""Wrap plain arrays as a log Dataset, so the dynamics run on data recorded elsewhere."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import numpy.typing as npt
import xarray as xr

from filterscope.errors import InvalidDataError
from filterscope.log.schema import (
    EVAL_SET_GROUP,
    FILTER_CHANGE_VARS,
    FORMAT_ATTR,
    FORMAT_VERSION,
    ROOT,
    VARIABLES,
)

_FILTER_METRICS = FILTER_CHANGE_VARS
_SAMPLE_GROUP_VARS = frozenset(name for group, name in VARIABLES if group == EVAL_SET_GROUP)


def _entry(name: str, values: npt.ArrayLike) -> tuple[tuple[str, ...], npt.NDArray]:
    """``(dims, values)`` of a log variable, with the dims and dtype the log's layout declares."""
    var = VARIABLES[EVAL_SET_GROUP if name in _SAMPLE_GROUP_VARS else ROOT, name]
    return var.dims, var.array(values)


def from_arrays(
    correct: npt.ArrayLike,
    labels: npt.ArrayLike,
    *,
    n_classes: int | None = None,
    class_names: Sequence[str] | None = None,
    p_true: npt.ArrayLike | None = None,
    margin: npt.ArrayLike | None = None,
    layers: Mapping[str, int] | None = None,
    filter_metrics: Mapping[str, npt.ArrayLike] | None = None,
) -> xr.Dataset:
    """Build an in-memory log holding the variables the dynamics functions read.

    The result follows ``filterscope_format`` 1 for the variables it holds (the ``correct``,
    ``p_true``, ``margin`` per-sample variables and the per-filter change metrics, with their
    coordinates), so every function of :mod:`filterscope.dynamics` accepts it exactly as it
    accepts ``filterscope.open_log(path)``.

    Parameters
    ----------
    correct : array-like of bool, shape (n_snapshots, n_samples)
        Whether each sample was classified correctly at each snapshot.
    labels : array-like of int, shape (n_samples,)
        True class of each sample, in ``0 .. n_classes - 1``.
    n_classes : int, optional
        Number of classes; defaults to ``max(labels) + 1``.
    class_names : sequence of str, optional
        Name of each class; defaults to the class numbers as strings.
    p_true, margin : array-like of float, shape (n_snapshots, n_samples), optional
        Probability of the true class and true-class score minus the best other score; stored
        as float16 like the recorder does.
    layers : mapping of str to int, optional
        Layer name -> number of output filters, in network order. Required with
        ``filter_metrics``; the flat ``filter`` axis concatenates the layers' filters.
    filter_metrics : mapping of str to array-like, optional
        Any of ``filter_cosine``, ``filter_l2``, ``filter_l1``, ``filter_rel_l1``,
        ``filter_rel_l2``, each of shape (n_snapshots, n_filters).

    Returns
    -------
    xarray.Dataset

    Raises
    ------
    filterscope.InvalidDataError
        If shapes disagree or labels fall outside the classes.

    Examples
    --------
    >>> import numpy as np
    >>> from filterscope.dynamics import from_arrays
    >>> log = from_arrays(np.array([[0, 1], [1, 1], [1, 0]], bool), labels=[0, 1])
    >>> dict(log.sizes)
    {'snapshot': 3, 'sample': 2, 'class': 2}
    """
    correct_arr = np.asarray(correct)
    if correct_arr.ndim != 2:
        raise InvalidDataError(
            f"correct must be 2-D (snapshot, sample), got shape {correct_arr.shape}"
        )
    n_snapshots, n_samples = correct_arr.shape
    label_arr = np.asarray(labels)
    if label_arr.shape != (n_samples,) or not np.issubdtype(label_arr.dtype, np.integer):
        raise InvalidDataError(
            f"labels must be {n_samples} integers (one per sample), got shape {label_arr.shape} "
            f"and dtype {label_arr.dtype}"
        )
    n_cls = int(label_arr.max(initial=-1)) + 1 if n_classes is None else int(n_classes)
    if n_samples and (label_arr.min() < 0 or label_arr.max() >= n_cls):
        raise InvalidDataError(
            f"labels must lie in 0..{n_cls - 1}, got {label_arr.min()}..{label_arr.max()}; "
            "pass n_classes to cover them"
        )
    names = [str(c) for c in range(n_cls)] if class_names is None else list(class_names)
    if len(names) != n_cls:
        raise InvalidDataError(f"class_names needs {n_cls} names, got {len(names)}")

    snapshots = np.arange(n_snapshots)
    data_vars = {"correct": _entry("correct", correct_arr.astype(bool))}
    for name, values in (("p_true", p_true), ("margin", margin)):
        if values is not None:
            dims, arr = _entry(name, values)
            if arr.shape != correct_arr.shape:
                raise InvalidDataError(
                    f"{name} must have the shape of correct {correct_arr.shape}, got {arr.shape}"
                )
            data_vars[name] = (dims, arr)
    coords = {
        "snapshot": _entry("snapshot", snapshots),
        "snapshot_step": _entry("snapshot_step", snapshots),
        "snapshot_epoch": _entry("snapshot_epoch", snapshots),
        "sample": _entry("sample", np.arange(n_samples)),
        "sample_id": _entry("sample_id", np.arange(n_samples)),
        "label": _entry("label", label_arr),
        "class": _entry("class", np.arange(n_cls)),
        "class_name": _entry("class_name", names),
    }
    if filter_metrics:
        if not layers:
            raise InvalidDataError("filter_metrics need layers={name: n_filters, ...}")
        unknown = sorted(set(filter_metrics) - set(_FILTER_METRICS))
        if unknown:
            raise InvalidDataError(
                f"unknown filter metric(s) {unknown}; expected some of {list(_FILTER_METRICS)}"
            )
        sizes = np.asarray(list(layers.values()), dtype=np.int64)
        n_filters = int(sizes.sum())
        layer_names = np.asarray(list(layers), dtype=str)
        coords.update(
            {
                "layer": _entry("layer", np.arange(len(sizes))),
                "layer_name": _entry("layer_name", layer_names),
                "layer_stage": _entry("layer_stage", layer_names),
                "layer_block": _entry("layer_block", layer_names),
                "layer_kind": _entry("layer_kind", np.full(len(sizes), "Conv2d")),
                "layer_filters": _entry("layer_filters", sizes),
                "layer_has_stats": _entry("layer_has_stats", np.ones(len(sizes), dtype=bool)),
                "filter": _entry("filter", np.arange(n_filters)),
                "filter_layer": _entry("filter_layer", np.repeat(layer_names, sizes)),
                "filter_layer_index": _entry(
                    "filter_layer_index", np.repeat(np.arange(len(sizes)), sizes)
                ),
                "filter_channel": _entry(
                    "filter_channel", np.concatenate([np.arange(n) for n in sizes])
                ),
            }
        )
        for name, values in filter_metrics.items():
            dims, arr = _entry(name, values)
            if arr.shape != (n_snapshots, n_filters):
                raise InvalidDataError(
                    f"{name} must have shape (n_snapshots, n_filters) = "
                    f"{(n_snapshots, n_filters)}, got {arr.shape}"
                )
            data_vars[name] = (dims, arr)
    return xr.Dataset(data_vars, coords=coords, attrs={FORMAT_ATTR: FORMAT_VERSION})
