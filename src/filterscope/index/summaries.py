"""Per-layer and per-class summaries read from the index, for views, plots and the report.

Each function asks :meth:`Index.query` for a window at the level that fits ``columns`` and
returns a labelled answer with the same ``agg`` / ``bucket_start`` / ``bucket_stop`` layout, so
a figure, a widget and a test that ask for the same window get the same numbers. The few
derivations on top of a query (a layer's mean ``|x|`` per weight, the mean over a layer's
filters, accuracy from error) live here, not in the drawing code.
"""

from __future__ import annotations

import warnings
from typing import Any, Literal

import numpy as np
import xarray as xr

from filterscope.errors import InvalidParameterError
from filterscope.index.core import Index

__all__ = [
    "best_value",
    "class_accuracy",
    "last_value",
    "layer_filter_mean",
    "layer_mean_abs",
    "lowest_accuracy_classes",
    "stat_layers",
]

#: Entries read at the end of a series to find its last finite value.
_TAIL = 1024


def stat_layers(idx: Index) -> xr.DataArray:
    """The ``layer`` labels of the layers with statistics (batch norm has none), with names."""
    log = idx.log
    layers = log["layer"]
    if "layer_has_stats" in log.coords:
        layers = layers[np.asarray(log["layer_has_stats"].values, dtype=bool)]
    return layers


def layer_mean_abs(
    idx: Index,
    variable: str = "grad_stat",
    *,
    time: slice | None = None,
    columns: int = 2000,
    level: int | Literal["auto"] = "auto",
) -> xr.DataArray:
    """Mean absolute weight (or gradient) per parameter of every layer with statistics.

    ``l1 / n`` of each layer: the index's node ``l1`` (its layers' sum) over the node's weight
    count. Dividing every aggregate by the fixed count keeps min, max and mean exact.

    Returns
    -------
    xarray.DataArray
        ``(agg, snapshot, layer)``, ``layer`` labelled as in the log, with ``layer_name``.

    Examples
    --------
    >>> import tempfile
    >>> from filterscope.data.synthetic import synthetic_log
    >>> from filterscope.index import open_index
    >>> path = tempfile.mkdtemp() + "/run"
    >>> _ = synthetic_log(path, n_samples=50, n_classes=5, n_snapshots=8, plant=False)
    >>> layer_mean_abs(open_index(path, progress=False), columns=4).sizes["snapshot"]
    4
    """
    if variable not in ("grad_stat", "weight_stat"):
        raise InvalidParameterError(
            f"variable must be 'grad_stat' or 'weight_stat', got {variable!r}"
        )
    layers = stat_layers(idx)
    names = [str(n) for n in idx.log["layer_name"].sel(layer=layers).values]
    answer = idx.query(
        variable, time=time, columns=columns, level=level, node=names, rows={"stat": "l1"}
    )
    per_weight = answer / answer["node_params"].where(answer["node_params"] > 0)
    per_weight.loc[{"agg": "count"}] = answer.sel(agg="count")
    per_weight = per_weight.rename(node="layer").assign_coords(
        layer=layers.values, layer_name=("layer", names)
    )
    per_weight.attrs = {**answer.attrs, "variable": f"{variable} l1 per weight"}
    return per_weight.rename(f"{variable}_mean_abs")


def layer_filter_mean(
    idx: Index,
    variable: str,
    *,
    time: slice | None = None,
    columns: int = 2000,
    level: int | Literal["auto"] = "auto",
) -> xr.DataArray:
    """Mean over each layer's filters of a per-filter variable (``filter_cosine``…).

    Per bucket: the NaN-aware mean over the layer's filters of each filter's bucket mean (equal
    to the mean over all the bucket's values when every filter has as many, as recorded), the
    min of their minima, the max of their maxima and the sum of their counts. Layers without
    filter values (batch norm) are left out.

    Returns
    -------
    xarray.DataArray
        ``(agg, snapshot, layer)``, ``layer`` labelled as in the log, with ``layer_name``.
    """
    answer = idx.query(variable, time=time, columns=columns, level=level)
    if "filter" not in answer.dims or "filter_layer_index" not in answer.coords:
        raise InvalidParameterError(
            f"{variable!r} is not a per-filter variable with a 'filter_layer_index'; per-filter "
            "variables are those over (snapshot, filter), e.g. 'filter_cosine'"
        )
    layer_of = np.asarray(answer["filter_layer_index"].values)
    layers = stat_layers(idx)
    positions = np.flatnonzero(np.isin(np.asarray(idx.log["layer"].values), layers.values))
    present = [p for p in positions if (layer_of == p).any()]
    parts = []
    with warnings.catch_warnings():
        # nanmin / nanmean of an all-NaN bucket warn; an empty bucket is NaN by design.
        warnings.simplefilter("ignore", RuntimeWarning)
        for p in present:
            cells = answer.values[:, :, layer_of == p]
            parts.append(
                np.stack(
                    [
                        np.nanmin(cells[0], axis=-1),
                        np.nanmax(cells[1], axis=-1),
                        np.nanmean(cells[2], axis=-1),
                        cells[3].sum(axis=-1),
                    ]
                )
            )
    data = np.stack(parts, axis=-1) if parts else np.zeros((4, answer.sizes[answer.dims[1]], 0))
    labels = np.asarray(idx.log["layer"].values)[present]
    time_dim = answer.dims[1]
    return xr.DataArray(
        data,
        dims=("agg", time_dim, "layer"),
        coords={
            **{k: v for k, v in answer.coords.items() if set(v.dims) <= {"agg", time_dim}},
            "layer": labels,
            "layer_name": ("layer", [str(n) for n in idx.log["layer_name"].values[present]]),
        },
        name=f"{variable}_layer_mean",
        attrs={**answer.attrs, "variable": f"{variable} mean over each layer's filters"},
    )


def class_accuracy(
    idx: Index,
    *,
    time: slice | None = None,
    columns: int = 2000,
    level: int | Literal["auto"] = "auto",
    class_: Any = None,
) -> xr.DataArray:
    """Accuracy of every class of the primary evaluation set: ``1 - class_error``.

    The min and max aggregates swap (the lowest accuracy is one minus the highest error).

    Returns
    -------
    xarray.DataArray
        ``(agg, snapshot, class)``, like ``idx.query("class_error", ...)``.

    Examples
    --------
    >>> import tempfile
    >>> import numpy as np
    >>> from filterscope.dynamics import from_arrays
    >>> from filterscope.index import build_index
    >>> log = from_arrays(np.array([[1, 0, 1], [1, 1, 1]], bool), labels=[0, 0, 1])
    >>> idx = build_index(log, tempfile.mkdtemp() + "/index.zarr")
    >>> class_accuracy(idx, level=0).sel(agg="mean").values.tolist()
    [[0.5, 1.0], [1.0, 1.0]]
    """
    error = idx.query("class_error", time=time, columns=columns, level=level, class_=class_)
    accuracy = 1.0 - error
    accuracy.loc[{"agg": "min"}] = 1.0 - error.sel(agg="max")
    accuracy.loc[{"agg": "max"}] = 1.0 - error.sel(agg="min")
    accuracy.loc[{"agg": "count"}] = error.sel(agg="count")
    accuracy.attrs = {**error.attrs, "variable": "class_accuracy"}
    return accuracy.rename("class_accuracy")


def lowest_accuracy_classes(idx: Index, k: int) -> np.ndarray:
    """Labels of the ``k`` classes with the lowest mean accuracy over the run, in class order.

    The mean over the run is the index's coarsest level (one bucket); classes without samples
    (NaN) come last.
    """
    if not isinstance(k, int | np.integer) or k < 1:
        raise InvalidParameterError(f"k must be a positive integer, got {k!r}")
    overall = class_accuracy(idx, level=idx.levels("class_error")).sel(agg="mean")
    worst = np.argsort(np.nan_to_num(overall.values.ravel(), nan=np.inf), kind="stable")
    return np.asarray(idx.labels("class"))[np.sort(worst[:k])]


def last_value(idx: Index, variable: str) -> float:
    """The last finite value of a 1-D series (``loss``, ``val_error``…), NaN when none.

    Only the last entries are read (at most 1024 raw values).
    """
    spec = idx.specs.get(variable)
    if spec is None or spec.dims:
        raise InvalidParameterError(
            f"{variable!r} is not a 1-D series of the index; it has "
            f"{sorted(n for n, s in idx.specs.items() if not s.dims)}"
        )
    labels = idx.labels(spec.time)
    if labels.size == 0:
        return float("nan")
    tail = idx.query(variable, time=slice(labels[max(0, labels.size - _TAIL)], None), level=0)
    values = np.asarray(tail.sel(agg="mean").values, dtype=np.float64)
    finite = values[np.isfinite(values)]
    return float(finite[-1]) if finite.size else float("nan")


def best_value(idx: Index, variable: str) -> tuple[float, Any]:
    """The lowest value of a 1-D series and the label (snapshot or step) it is first reached at.

    Found from the top of the pyramid down: the global minimum is the coarsest level's ``min``;
    each finer level is read only inside the first bucket holding it, so a long series costs a
    few small reads. ``(nan, None)`` when the series has no finite value.

    Examples
    --------
    >>> import tempfile
    >>> import numpy as np, xarray as xr
    >>> from filterscope.index import build_index
    >>> errors = np.array([0.9, 0.5, 0.3, 0.4, 0.3, 0.6], np.float32)
    >>> log = xr.Dataset({"val_error": ("snapshot", errors)}, coords={"snapshot": np.arange(6)})
    >>> idx = build_index(log, tempfile.mkdtemp() + "/index.zarr")
    >>> value, at = best_value(idx, "val_error")
    >>> round(value, 4), int(at)
    (0.3, 2)
    """
    spec = idx.specs.get(variable)
    if spec is None or spec.dims:
        raise InvalidParameterError(
            f"{variable!r} is not a 1-D series of the index; it has "
            f"{sorted(n for n, s in idx.specs.items() if not s.dims)}"
        )
    top = idx.levels(variable)
    whole = idx.query(variable, level=top)
    lowest = whole.sel(agg="min").values
    if not np.isfinite(lowest).any():
        return float("nan"), None
    best = float(np.nanmin(lowest))
    window: slice | None = None
    for level in range(top, -1, -1):
        answer = idx.query(variable, time=window, level=level)
        hit = int(np.flatnonzero(answer.sel(agg="min").values == best)[0])
        start, stop = answer["bucket_start"].values[hit], answer["bucket_stop"].values[hit]
        window = slice(start, stop)
    return best, start
