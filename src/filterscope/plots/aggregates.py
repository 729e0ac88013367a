"""The few reductions the static figures need, each a function of the log Dataset.

Figures only draw; anything beyond picking a variable happens here so the same numbers can be
checked in tests and reused by the report. Every function returns a plain (computed) xarray
object with ``snapshot`` as its last dimension.
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from filterscope.errors import LogFormatError

__all__ = [
    "anomaly_counts",
    "class_accuracy",
    "eval_set_names",
    "layer_filter_mean",
    "mean_abs_per_parameter",
    "require",
]


def require(log: xr.Dataset, *names: str) -> None:
    """Raise :class:`~filterscope.errors.LogFormatError` unless ``log`` has every variable named."""
    missing = [n for n in names if n not in log.variables]
    if missing:
        raise LogFormatError(
            f"the log has no {', '.join(repr(m) for m in missing)}; expected a filterscope log "
            "(open it with filterscope.open_log). Present: "
            f"{', '.join(sorted(map(str, log.data_vars))) or 'no variables'}."
        )


def eval_set_names(log: xr.Dataset) -> list[str]:
    """Names of the evaluation sets: every ``<set>`` with a ``<set>_loss`` or ``<set>_error``
    over ``snapshot``, in the log's variable order.

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> from filterscope.plots.aggregates import eval_set_names
    >>> log = xr.Dataset({"val_loss": ("snapshot", np.ones(3)), "loss": ("step", np.ones(9))})
    >>> eval_set_names(log)
    ['val']
    """
    names: dict[str, None] = {}
    for name, var in log.data_vars.items():
        base, _, kind = str(name).rpartition("_")
        if base and kind in ("loss", "error") and var.dims == ("snapshot",):
            names[base] = None
    return list(names)


def layer_filter_mean(log: xr.Dataset, variable: str) -> xr.DataArray:
    """Mean of a per-filter variable over each layer's filters: ``(layer, snapshot)``.

    Layers without per-filter values (batch norm) hold NaN.

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> from filterscope.plots.aggregates import layer_filter_mean
    >>> log = xr.Dataset(
    ...     {"filter_cosine": (("snapshot", "filter"), [[1.0, 0.5, 0.2]])},
    ...     coords={"layer": [0, 1], "filter_layer_index": ("filter", [0, 0, 1])},
    ... )
    >>> layer_filter_mean(log, "filter_cosine").values
    array([[0.75],
           [0.2 ]])
    """
    require(log, variable)
    da = log[variable].compute()
    means = da.groupby(log["filter_layer_index"].compute()).mean("filter")
    means = means.rename(filter_layer_index="layer").reindex(layer=log["layer"].values)
    return means.transpose("layer", "snapshot")


def mean_abs_per_parameter(log: xr.Dataset, variable: str = "grad_stat") -> xr.DataArray:
    """Mean absolute value per parameter of each layer's weights or gradients: ``(layer, snapshot)``.

    The log keeps moments, not parameter counts, so the count ``n`` is recovered from them:
    ``l2² = Σ x² = n (var + mean²)`` with the population variance, hence
    ``mean |x| = l1 / n = l1 (var + mean²) / l2²``. NaN where every value is zero.

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> from filterscope.plots.aggregates import mean_abs_per_parameter
    >>> g = np.array([1.0, -3.0])
    >>> stats = [g.max(), g.min(), g.mean(), g.sum(), g.var(), g.std(), 2, np.abs(g).sum(),
    ...          np.sqrt((g**2).sum()), 0, 0, 0]
    >>> names = ["max", "min", "mean", "sum", "var", "std", "l0", "l1", "l2", "median", "q1", "q3"]
    >>> log = xr.Dataset({"grad_stat": (("snapshot", "layer", "stat"), [[stats]])},
    ...                  coords={"stat": names})
    >>> round(float(mean_abs_per_parameter(log)[0, 0]), 6)
    2.0
    """
    require(log, variable)
    stat = log[variable].compute()
    l1, l2 = stat.sel(stat="l1", drop=True), stat.sel(stat="l2", drop=True)
    second_moment = stat.sel(stat="var", drop=True) + stat.sel(stat="mean", drop=True) ** 2
    with np.errstate(divide="ignore", invalid="ignore"):
        mean_abs = (l1 * second_moment / l2**2).where(l2 > 0)
    return mean_abs.transpose("layer", "snapshot")


def class_accuracy(log: xr.Dataset) -> xr.DataArray:
    """Accuracy of every class of the primary evaluation set at each snapshot: ``(class, snapshot)``.

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> from filterscope.plots.aggregates import class_accuracy
    >>> log = xr.Dataset(
    ...     {"correct": (("snapshot", "sample"), [[True, False, True]])},
    ...     coords={"label": ("sample", [0, 0, 1]), "class": [0, 1]},
    ... )
    >>> class_accuracy(log).values.tolist()
    [[0.5], [1.0]]
    """
    require(log, "correct")
    correct = log["correct"].astype(np.float32).compute()
    acc = correct.groupby(log["label"].compute()).mean("sample").rename(label="class")
    if "class" in log.dims:
        acc = acc.reindex({"class": log["class"].values})
    return acc.transpose("class", "snapshot")


def anomaly_counts(analysis: xr.Dataset) -> xr.DataArray:
    """Number of anomaly filters at each analysed snapshot: ``(analysis_snapshot,)``.

    Examples
    --------
    >>> import xarray as xr
    >>> from filterscope.plots.aggregates import anomaly_counts
    >>> analysis = xr.Dataset({"anomaly": (("analysis_snapshot", "filter"), [[True, False]])})
    >>> anomaly_counts(analysis).values.tolist()
    [1]
    """
    require(analysis, "anomaly")
    return analysis["anomaly"].astype(np.int64).sum("filter").compute()
