"""The three hypotheses of arXiv 2412.10457, as experiments anyone can rerun on their own model.

* **H1** — the number of anomaly filters grows as the model overfits:
  :func:`overfitting_curve` pairs each analysis snapshot of a log with the train/validation
  error at that step and correlates the anomaly count with the generalisation gap.
* **H2** — outlier samples drive overfitting through larger gradients: :func:`gradient_norms`
  computes per-sample gradient norms (``torch.func``), :func:`compare_outliers` tests whether the
  outlier samples' norms are larger (one-sided Mann–Whitney U).
* **H3** — pruning anomaly filters improves generalisation: :func:`prune` silences output
  channels reversibly, :func:`pruning_experiment` compares test accuracy after pruning the
  anomaly filters with pruning as many random filters of the same layers, over several seeds.

Each function returns plain numbers and tables; deciding whether a hypothesis holds for a run is
left to the caller (e.g. ``curve.spearman_r > 0 and curve.spearman_p < 0.05``).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
import xarray as xr
from scipy import stats
from torch import nn

from filterscope.errors import InvalidDataError, InvalidModelError, InvalidParameterError
from filterscope.gmm.analyze import AnalysisResult
from filterscope.gmm.probe import ProbeSet, select_samples

__all__ = [
    "FILTER_STATISTICS",
    "OutlierComparison",
    "OverfittingCurve",
    "PruneHandle",
    "PruningExperiment",
    "compare_outliers",
    "filter_outliers",
    "gradient_norms",
    "overfitting_curve",
    "prune",
    "pruning_experiment",
]


# --- H1 ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class OverfittingCurve:
    """Anomaly-filter count against the generalisation gap, one row per analysis snapshot.

    Attributes
    ----------
    table : pandas.DataFrame
        Columns ``step``, ``n_anomaly`` (anomaly filters), ``n_filters``, ``anomaly_fraction``,
        ``train_error``, ``val_error`` and ``gap`` (train accuracy − validation accuracy, i.e.
        ``val_error − train_error``), sorted by step.
    pearson_r, pearson_p, spearman_r, spearman_p : float
        Correlation of ``n_anomaly`` with ``gap`` and its two-sided p-value; NaN with fewer than
        three snapshots or when either column is constant.
    """

    table: pd.DataFrame
    pearson_r: float
    pearson_p: float
    spearman_r: float
    spearman_p: float


def overfitting_curve(
    log: Any,
    analysis: xr.Dataset | None = None,
    train_set: str = "train",
    val_set: str = "val",
) -> OverfittingCurve:
    """H1: does the number of anomaly filters grow with the generalisation gap?

    For every analysis snapshot (the ``"analysis"`` group a :class:`~filterscope.Recorder`
    writes with ``analyze_every=k, analyze_data=...``) the anomaly filters are counted and paired
    with the errors at the same step: a ``<set>_error`` variable on the ``snapshot`` dim is read
    at the snapshot whose ``snapshot_step`` equals the analysis step; the per-step ``train_error``
    of the training batches (what ``train_set="train"`` reads, as "train" is reserved for it) is
    averaged over the logged steps since the previous analysis, up to and including the analysis
    step (the last logged step when there is none, e.g. for the final snapshot). Record an evaluation set on training
    samples (e.g. ``eval_sets={"val": val, "fit": train_subset}``) and pass ``train_set="fit"``
    for a clean, per-snapshot training error.

    Parameters
    ----------
    log : path-like, xarray.Dataset or sequence of records
        A log directory; or the main log Dataset (``fs.open_log(path)``) together with
        ``analysis``; or records ``(step, result, train_error, val_error)`` where ``result`` is
        an :class:`AnalysisResult`, its ``dataset``, or the anomaly count.
    analysis : xarray.Dataset, optional
        The analysis group (``fs.open_log(path, group="analysis")``) when ``log`` is a Dataset.
    train_set, val_set : str, default "train", "val"
        Names of the training and validation error sources in the log.

    Returns
    -------
    OverfittingCurve

    Examples
    --------
    >>> from filterscope.gmm import overfitting_curve
    >>> records = [(0, 1, 0.5, 0.5), (10, 3, 0.2, 0.4), (20, 6, 0.0, 0.35), (30, 9, 0.0, 0.4)]
    >>> curve = overfitting_curve(records)
    >>> curve.table.gap.round(2).tolist(), round(curve.spearman_r, 2)
    ([0.0, 0.2, 0.35, 0.4], 1.0)
    """
    if isinstance(log, str | os.PathLike):
        from filterscope.log.reader import open_log

        main = open_log(log)
        try:
            analysis = open_log(log, group="analysis")
        except ValueError as err:
            raise InvalidDataError(
                f"{err} Record with fs.Recorder(..., analyze_every=k, analyze_data=probe) to "
                "store an analysis per k snapshots."
            ) from err
        table = _curve_from_log(main, analysis, train_set, val_set)
    elif isinstance(log, xr.Dataset):
        if analysis is None:
            raise InvalidDataError(
                "overfitting_curve got a log Dataset but no analysis; pass "
                "analysis=fs.open_log(path, group='analysis'), or pass the log's path."
            )
        table = _curve_from_log(log, analysis, train_set, val_set)
    elif isinstance(log, Sequence):
        table = _curve_from_records(log)
    else:
        raise InvalidDataError(
            f"log must be a log path, a log Dataset or a list of (step, result, train_error, "
            f"val_error) records, got {type(log).__name__}."
        )
    table["gap"] = table["val_error"] - table["train_error"]
    table = table.sort_values("step", kind="stable").reset_index(drop=True)
    pr, pp, sr, sp = _correlations(table["n_anomaly"].to_numpy(), table["gap"].to_numpy())
    return OverfittingCurve(table, pr, pp, sr, sp)


def _curve_from_log(
    main: xr.Dataset, analysis: xr.Dataset, train_set: str, val_set: str
) -> pd.DataFrame:
    if "anomaly" not in analysis or "analysis_step" not in analysis.coords:
        raise InvalidDataError(
            "the analysis Dataset has no 'anomaly' variable with an 'analysis_step' coordinate; "
            "pass the log's analysis group, fs.open_log(path, group='analysis')."
        )
    steps = np.asarray(analysis["analysis_step"].values, dtype=np.int64)
    n_anomaly = np.asarray(analysis["anomaly"].sum("filter").values, dtype=np.int64)
    train = _errors_at(main, train_set, steps)
    val = _errors_at(main, val_set, steps)
    return pd.DataFrame(
        {
            "step": steps,
            "n_anomaly": n_anomaly,
            "n_filters": analysis.sizes["filter"],
            "anomaly_fraction": n_anomaly / analysis.sizes["filter"],
            "train_error": train,
            "val_error": val,
        }
    )


def _errors_at(main: xr.Dataset, name: str, steps: np.ndarray) -> np.ndarray:
    var = f"{name}_error"
    if var not in main:
        found = sorted(str(v) for v in main.data_vars if str(v).endswith("_error"))
        raise InvalidDataError(
            f"the log has no {var!r} variable; error variables in it: {found}. Pass "
            "train_set=/val_set= with the evaluation-set names the Recorder was given."
        )
    da = main[var]
    if "snapshot" in da.dims:
        at = pd.Series(np.arange(main.sizes["snapshot"]), index=main["snapshot_step"].values)
        at = at[~at.index.duplicated(keep="last")]
        missing = sorted(set(steps.tolist()) - set(at.index.tolist()))
        if missing:
            raise InvalidDataError(
                f"the log has no snapshot at analysis step(s) {missing[:5]}; the analysis and "
                "the main log disagree (was the log truncated?)."
            )
        values = np.asarray(da.values, dtype=np.float64)
        return values[at.loc[steps].to_numpy()]
    if "step" in da.dims:
        values = np.asarray(da.values, dtype=np.float64)
        logged = np.asarray(main["step"].values, dtype=np.int64)
        out = np.full(len(steps), np.nan)
        previous = -1
        for i in np.argsort(steps, kind="stable"):
            window = (logged > previous) & (logged <= steps[i])
            if not window.any():  # e.g. the final snapshot, taken after the last logged step
                window = logged == logged[logged <= steps[i]].max(initial=-1)
            if window.any():
                out[i] = np.nanmean(values[window])
            previous = steps[i]
        return out
    raise InvalidDataError(f"{var!r} has dims {da.dims}; expected 'snapshot' or 'step'.")


def _curve_from_records(records: Sequence[Any]) -> pd.DataFrame:
    rows = []
    for i, record in enumerate(records):
        if not isinstance(record, tuple | list) or len(record) != 4:
            raise InvalidDataError(
                f"record {i} is {record!r}; each record must be (step, result, train_error, "
                "val_error)."
            )
        step, result, train, val = record
        count, total = _count_anomalies(result)
        rows.append((int(step), count, total, float(train), float(val)))
    if not rows:
        raise InvalidDataError("overfitting_curve needs at least one record.")
    table = pd.DataFrame(
        rows, columns=["step", "n_anomaly", "n_filters", "train_error", "val_error"]
    )
    table["anomaly_fraction"] = table["n_anomaly"] / table["n_filters"]
    return table[["step", "n_anomaly", "n_filters", "anomaly_fraction", "train_error", "val_error"]]


def _count_anomalies(result: Any) -> tuple[int, float]:
    if isinstance(result, AnalysisResult):
        result = result.dataset
    if isinstance(result, xr.Dataset):
        return int(result["anomaly"].sum()), float(result.sizes["filter"])
    if isinstance(result, int | np.integer):
        return int(result), float("nan")
    raise InvalidDataError(
        f"a record's result must be an AnalysisResult, its dataset or an int, got "
        f"{type(result).__name__}."
    )


def _correlations(a: np.ndarray, b: np.ndarray) -> tuple[float, float, float, float]:
    ok = np.isfinite(a) & np.isfinite(b)
    a, b = a[ok].astype(np.float64), b[ok].astype(np.float64)
    if len(a) < 3 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return (math.nan,) * 4
    pearson = stats.pearsonr(a, b)
    spearman = stats.spearmanr(a, b)
    return (
        float(pearson.statistic),
        float(pearson.pvalue),
        float(spearman.statistic),
        float(spearman.pvalue),
    )


# --- A filter-level reading -----------------------------------------------------------------

#: Per-filter clustering statistics that :func:`filter_outliers` compares within a layer.
FILTER_STATISTICS = ("k", "log_ch", "smallest_fraction", "score", "explained_variance")


def filter_outliers(
    result: AnalysisResult,
    threshold: float = 3.5,
    statistics: Sequence[str] = FILTER_STATISTICS,
    max_fraction: float = 0.1,
) -> pd.DataFrame:
    """A filter-level reading: filters whose clustering statistics are outliers within their layer.

    The sample rule of :class:`~filterscope.gmm.FilterGMM` flags a filter by its own clustering
    (a small, well-separated cluster). This reading instead compares every filter with the other
    filters of its layer: for each statistic, a robust z-score ``(x − median) / (1.4826 · MAD)``
    over the layer's filters (the mean absolute deviation, ``1.2533 · meanAD``, stands in when
    the MAD is 0; a statistic constant over the layer gives z = 0), and a filter is flagged when
    ``|z| > threshold`` for at least one statistic (the modified z-score rule of Iglewicz and
    Hoaglin). Layers with fewer than three filters flag nothing.

    The statistics: ``k`` (chosen number of clusters), ``log_ch`` (``log1p`` of the
    Calinski–Harabasz index at ``k``, 0 for ``k = 1``), ``smallest_fraction`` (share of the
    samples in the smallest cluster, 1 for ``k = 1``), ``score`` (anomaly score) and
    ``explained_variance`` (share of the variance kept by the 2-D PCA).

    A flagged filter *isolates* the samples of its smallest cluster when it has ``k ≥ 2`` and that
    cluster holds at most ``max_fraction`` of the samples; a filter flagged for collapsing to
    ``k = 1`` isolates none.

    Parameters
    ----------
    result : AnalysisResult
        What :func:`~filterscope.gmm.analyze` returned.
    threshold : float, default=3.5
        Robust z-score above which a statistic is an outlier.
    statistics : sequence of str, default=FILTER_STATISTICS
        Which of :data:`FILTER_STATISTICS` to compare.
    max_fraction : float, default=0.1
        Largest share of the samples a flagged filter's smallest cluster may hold to isolate them.

    Returns
    -------
    pandas.DataFrame
        One row per filter, in the order of ``result.table``: ``layer``, ``channel``, ``filter``,
        the statistics, ``z_<statistic>`` for each, ``max_abs_z``, ``flagged`` and
        ``isolated_ids`` (sample ids, empty unless flagged).

    Raises
    ------
    InvalidParameterError
        When ``threshold`` or ``max_fraction`` is out of range or a statistic is unknown.

    Examples
    --------
    >>> import torch
    >>> import filterscope as fs
    >>> from filterscope.gmm.hypotheses import filter_outliers
    >>> from filterscope.models import LeNet5
    >>> _ = torch.manual_seed(0)
    >>> result = fs.analyze(LeNet5(), torch.randn(64, 1, 32, 32), n_samples=64, progress=False)
    >>> table = filter_outliers(result)
    >>> len(table) == len(result.table), table["flagged"].dtype
    (True, dtype('bool'))
    """
    if not (math.isfinite(threshold) and threshold > 0):
        raise InvalidParameterError(f"threshold must be a positive number, got {threshold!r}.")
    if not 0 < max_fraction <= 1:
        raise InvalidParameterError(f"max_fraction must be in (0, 1], got {max_fraction!r}.")
    unknown = [s for s in statistics if s not in FILTER_STATISTICS]
    if unknown or not statistics:
        raise InvalidParameterError(
            f"unknown filter statistic(s) {unknown}; choose from {list(FILTER_STATISTICS)}."
        )
    table = result.table
    ds = result.dataset
    n = ds.sizes["sample"]
    k = table["k"].to_numpy(dtype=np.float64)
    out = pd.DataFrame(
        {
            "layer": table["layer"].to_numpy(),
            "channel": table["channel"].to_numpy(),
            "filter": table["filter"].to_numpy(),
            "k": k,
            "log_ch": np.where(k > 1, np.log1p(np.nan_to_num(table["ch"].to_numpy(), nan=0.0)), 0),
            "smallest_fraction": np.where(
                k > 1, table["smallest_cluster"].to_numpy(dtype=np.float64) / n, 1.0
            ),
            "score": table["score"].to_numpy(dtype=np.float64),
            "explained_variance": np.nan_to_num(table["explained_variance"].to_numpy(), nan=0.0),
        }
    )
    z_abs = np.zeros(len(out))
    for name in statistics:
        z = out.groupby("layer", sort=False)[name].transform(_robust_z).to_numpy()
        out[f"z_{name}"] = z
        z_abs = np.maximum(z_abs, np.abs(z))
    out["max_abs_z"] = z_abs
    out["flagged"] = z_abs > threshold
    labels = ds["labels"].values
    sizes = ds["cluster_size"].values
    sample_ids = ds["sample_id"].values
    isolated: list[list[int]] = []
    for row in out.itertuples(index=False):
        ids: list[int] = []
        f = int(row.filter)
        if row.flagged and row.k > 1:
            held = np.where(sizes[f, : int(row.k)] > 0, sizes[f, : int(row.k)], n + 1)
            smallest = int(np.argmin(held))
            if held[smallest] <= max_fraction * n:
                ids = sample_ids[labels[f] == smallest].tolist()
        isolated.append(ids)
    out["isolated_ids"] = isolated
    return out


def _robust_z(values: pd.Series) -> pd.Series:
    x = values.to_numpy(dtype=np.float64)
    if len(x) < 3:
        return pd.Series(np.zeros(len(x)), index=values.index)
    med = np.median(x)
    mad = 1.4826 * np.median(np.abs(x - med))
    if mad <= 0:
        mad = 1.2533 * np.mean(np.abs(x - med))
    z = (x - med) / mad if mad > 0 else np.zeros(len(x))
    return pd.Series(z, index=values.index)


# --- H2 ------------------------------------------------------------------------------------


def gradient_norms(
    model: nn.Module,
    data: Any,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = F.cross_entropy,
    params: Literal["all", "last"] | Sequence[str] = "all",
    *,
    n_samples: int | None = None,
    random_state: int | None = 0,
    batch_size: int = 64,
    device: str | torch.device | None = None,
) -> xr.DataArray:
    """H2: the L2 norm of every sample's loss gradient with respect to the parameters.

    Computed with ``torch.func`` (``vmap(grad(...))`` over ``functional_call``): one vectorised
    pass per batch, numerically the same as a backward pass per sample. The model is evaluated
    in eval mode (dropout off, batch norm with its running statistics); its flags are restored.

    Parameters
    ----------
    model : torch.nn.Module
    data : Dataset, DataLoader or tuple (x, y)
        Labelled samples; selected as in :func:`~filterscope.gmm.probe.select_samples` (use the
        analysis's ``n_samples`` and ``random_state`` to get the same probe samples).
    loss_fn : callable, default=torch.nn.functional.cross_entropy
        ``loss_fn(output, target)`` for a batch of one sample, returning a scalar.
    params : "all", "last" or sequence of str, default="all"
        Which parameters: all; those of the last module that has parameters (e.g. the final
        linear layer); or names / name prefixes from ``model.named_parameters()``.
    n_samples : int or None, default=None
        Samples to use (None: all).
    random_state : int or None, default=0
        Seed of the sample selection.
    batch_size : int, default=64
        Samples per vectorised pass.
    device : str or torch.device, optional
        Default: the model's device.

    Returns
    -------
    xarray.DataArray
        ``grad_norm(sample)`` float64 with coords ``sample_id`` and ``label``.

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> from filterscope.gmm import gradient_norms
    >>> net = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
    >>> norms = gradient_norms(net, (torch.randn(10, 4), torch.arange(10) % 3))
    >>> norms.dims, norms.sizes["sample"]
    (('sample',), 10)
    """
    from torch.func import functional_call, grad, vmap

    probe = select_samples(data, n_samples, random_state)
    if probe.y is None:
        raise InvalidDataError(
            "gradient_norms needs labelled data: pass an (x, y) pair or a Dataset of (x, y) items."
        )
    chosen = _parameter_names(model, params)
    dev = torch.device(device) if device is not None else _model_device(model)
    flags = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        named = dict(model.named_parameters())
        trained = {k: named[k].detach().to(dev) for k in chosen}
        frozen = {k: v.detach().to(dev) for k, v in named.items() if k not in trained}
        buffers = {k: v.detach().to(dev) for k, v in model.named_buffers()}

        # functional_call swaps in every parameter and buffer, so the tensors' device decides
        # where this runs and the model itself never moves.
        def sample_loss(p: dict[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor) -> Any:
            out = functional_call(model, (p, frozen, buffers), (x.unsqueeze(0),))
            return loss_fn(out, y.unsqueeze(0))

        per_sample = vmap(grad(sample_loss), in_dims=(None, 0, 0))
        x = _as_model_input(model, probe.x)
        norms = []
        for start in range(0, len(probe), batch_size):
            xb = x[start : start + batch_size].to(dev)
            yb = probe.y[start : start + batch_size].to(dev)
            grads = per_sample(trained, xb, yb)
            sq = sum(g.reshape(len(xb), -1).double().square().sum(1) for g in grads.values())
            norms.append(torch.as_tensor(sq).sqrt().cpu())
    finally:
        for module, training in flags:
            module.training = training
    return xr.DataArray(
        torch.cat(norms).numpy(),
        dims=("sample",),
        coords={"sample_id": ("sample", probe.sample_id), "label": ("sample", probe.label)},
        name="grad_norm",
        attrs={"params": params if isinstance(params, str) else ",".join(params)},
    )


def _parameter_names(model: nn.Module, params: str | Sequence[str]) -> list[str]:
    names = [name for name, p in model.named_parameters() if p.requires_grad]
    if not names:
        raise InvalidModelError(f"{type(model).__name__} has no trainable parameters.")
    if params == "all":
        return names
    if params == "last":
        owners = [mod for mod, m in model.named_modules() if any(True for _ in m.parameters(False))]
        last = owners[-1]
        prefix = f"{last}." if last else ""
        return [n for n in names if n.startswith(prefix) and "." not in n[len(prefix) :]]
    if isinstance(params, str):
        raise InvalidParameterError(
            f"params must be 'all', 'last' or a list of parameter or module names, got {params!r}."
        )
    chosen = [n for n in names if any(n == p or n.startswith(f"{p}.") for p in params)]
    if not chosen:
        raise InvalidParameterError(
            f"no parameter matches params={list(params)}; pass 'all', 'last' or names from "
            f"model.named_parameters() (or their modules), e.g. {names[:6]}."
        )
    return chosen


def _model_device(model: nn.Module) -> torch.device:
    return next((p.device for p in model.parameters()), torch.device("cpu"))


def _as_model_input(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    param = next((p for p in model.parameters() if p.is_floating_point()), None)
    if param is not None and x.is_floating_point() and x.dtype != param.dtype:
        return x.to(param.dtype)
    return x


@dataclass(frozen=True)
class OutlierComparison:
    """Gradient norms of outlier samples against the other samples (H2).

    Attributes
    ----------
    n_outliers, n_normal : int
    median_outlier, median_normal : float
    ratio : float
        ``median_outlier / median_normal``.
    u_statistic, p_value : float
        One-sided Mann–Whitney U test, alternative "outlier norms are larger"; NaN when either
        group is empty.
    """

    n_outliers: int
    n_normal: int
    median_outlier: float
    median_normal: float
    ratio: float
    u_statistic: float
    p_value: float


def compare_outliers(
    norms: xr.DataArray | np.ndarray | Sequence[float],
    outlier_ids: Iterable[int],
    sample_ids: Sequence[int] | np.ndarray | None = None,
) -> OutlierComparison:
    """H2: are the outlier samples' gradient norms larger than the others'?

    Parameters
    ----------
    norms : xarray.DataArray or array-like
        Per-sample gradient norms, e.g. from :func:`gradient_norms` (its ``sample_id``
        coordinate is used when ``sample_ids`` is not given).
    outlier_ids : iterable of int
        Sample ids of the outlier samples, e.g. ``result.outlier_ids()`` of an analysis.
    sample_ids : array-like, optional
        Sample id of each norm; default the DataArray's ``sample_id``, else ``0..len-1``.

    Returns
    -------
    OutlierComparison

    Examples
    --------
    >>> import numpy as np
    >>> from filterscope.gmm import compare_outliers
    >>> c = compare_outliers(np.array([1.0, 1.1, 0.9, 1.0, 5.0, 6.0]), outlier_ids=[4, 5])
    >>> c.ratio > 4, c.n_outliers
    (True, 2)
    """
    if sample_ids is None:
        if isinstance(norms, xr.DataArray) and "sample_id" in norms.coords:
            sample_ids = norms["sample_id"].values
        else:
            sample_ids = np.arange(len(norms))
    values = np.asarray(norms, dtype=np.float64)
    ids = np.asarray(sample_ids, dtype=np.int64)
    if values.ndim != 1 or len(values) != len(ids):
        raise InvalidDataError(
            f"norms must be 1-D with one sample id each; got norms of shape {values.shape} and "
            f"{len(ids)} sample ids."
        )
    wanted = np.unique(np.asarray(list(outlier_ids), dtype=np.int64))
    missing = np.setdiff1d(wanted, ids)
    if missing.size:
        raise InvalidDataError(
            f"outlier sample ids {missing[:10].tolist()} have no gradient norm; compute the norms "
            "on the same probe samples as the analysis (same data, n_samples and random_state)."
        )
    is_outlier = np.isin(ids, wanted)
    out, rest = values[is_outlier], values[~is_outlier]
    med_out = float(np.median(out)) if out.size else math.nan
    med_rest = float(np.median(rest)) if rest.size else math.nan
    if out.size and rest.size:
        test = stats.mannwhitneyu(out, rest, alternative="greater")
        u, p = float(test.statistic), float(test.pvalue)
    else:
        u = p = math.nan
    ratio = med_out / med_rest if rest.size and out.size and med_rest > 0 else math.nan
    return OutlierComparison(int(out.size), int(rest.size), med_out, med_rest, ratio, u, p)


# --- H3 ------------------------------------------------------------------------------------


class PruneHandle:
    """Channels silenced by :func:`prune`; :meth:`remove` (or leaving the ``with``) restores them.

    Attributes
    ----------
    filters : list of (str, int)
        The pruned ``(layer, channel)`` pairs.
    """

    def __init__(self, filters: list[tuple[str, int]], handles: list[Any]) -> None:
        self.filters = filters
        self._handles = handles

    def remove(self) -> None:
        """Remove the hooks: the model computes exactly what it did before pruning."""
        for handle in self._handles:
            handle.remove()
        self._handles = []

    @property
    def active(self) -> bool:
        """Whether the channels are still silenced."""
        return bool(self._handles)

    def __enter__(self) -> PruneHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()

    def __repr__(self) -> str:
        return f"PruneHandle({len(self.filters)} filters, active={self.active})"


def prune(model: nn.Module, filters: Any) -> PruneHandle:
    """H3: silence output channels of a model, reversibly.

    A forward hook on each named layer replaces the given channels of its output with zeros
    (other channels pass through bit for bit); the weights are untouched. In a network where a
    batch norm follows the convolution, name the batch-norm layer to silence the channel
    completely (a zeroed convolution output still receives the batch norm's shift).

    Parameters
    ----------
    model : torch.nn.Module
    filters : iterable of (str, int), pandas.DataFrame or AnalysisResult
        ``(layer_name, channel)`` pairs; a table with ``layer`` and ``channel`` columns (every
        row is pruned, e.g. ``result.anomalies``); or an :class:`AnalysisResult`, whose anomaly
        filters are pruned.

    Returns
    -------
    PruneHandle
        Call ``.remove()`` or use it as a context manager to restore the model.

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> from filterscope.gmm import prune
    >>> net = nn.Sequential(nn.Conv2d(1, 3, 1))
    >>> with prune(net, [("0", 1)]):
    ...     out = net(torch.ones(1, 1, 2, 2))
    >>> out[0, 1].abs().sum().item()
    0.0
    """
    pairs = _filter_pairs(filters)
    modules = dict(model.named_modules())
    by_layer: dict[str, list[int]] = {}
    for layer, channel in pairs:
        if layer not in modules or layer == "":
            raise InvalidModelError(
                f"prune: {type(model).__name__} has no layer {layer!r}; use names from "
                "model.named_modules()."
            )
        width = _out_channels(modules[layer])
        if channel < 0 or (width is not None and channel >= width):
            raise InvalidDataError(
                f"prune: layer {layer!r} has {width} output channels; channel {channel} does not "
                "exist."
            )
        by_layer.setdefault(layer, [])
        if channel not in by_layer[layer]:
            by_layer[layer].append(channel)
    handles = [
        modules[layer].register_forward_hook(_zero_channels(layer, sorted(channels)))
        for layer, channels in by_layer.items()
    ]
    return PruneHandle([(lay, c) for lay, chs in by_layer.items() for c in sorted(chs)], handles)


def _zero_channels(layer: str, channels: list[int]) -> Callable[..., torch.Tensor]:
    cache: dict[torch.device, torch.Tensor] = {}

    def hook(_module: nn.Module, _inputs: Any, output: torch.Tensor) -> torch.Tensor:
        if not isinstance(output, torch.Tensor) or output.ndim < 2:
            raise InvalidModelError(
                f"prune: layer {layer!r} does not output a (batch, channels, ...) tensor."
            )
        if channels[-1] >= output.shape[1]:
            raise InvalidDataError(
                f"prune: layer {layer!r} outputs {output.shape[1]} channels; channel "
                f"{channels[-1]} does not exist."
            )
        index = cache.get(output.device)
        if index is None:
            index = cache[output.device] = torch.tensor(channels, device=output.device)
        # index_fill is out of place: autograd-safe and the kept channels stay bit-identical.
        return output.index_fill(1, index, 0)

    return hook


def _out_channels(module: nn.Module) -> int | None:
    for attr in ("out_channels", "out_features", "num_features"):
        value = getattr(module, attr, None)
        if isinstance(value, int):
            return value
    return None


def _filter_pairs(filters: Any) -> list[tuple[str, int]]:
    if isinstance(filters, AnalysisResult):
        filters = filters.anomalies
    if isinstance(filters, pd.DataFrame):
        if not {"layer", "channel"} <= set(filters.columns):
            raise InvalidDataError(
                f"a filter table needs 'layer' and 'channel' columns, got {list(filters.columns)}."
            )
        return [(str(a), int(b)) for a, b in zip(filters["layer"], filters["channel"], strict=True)]
    pairs = []
    for item in filters:
        if (
            not isinstance(item, tuple | list)
            or len(item) != 2
            or not isinstance(item[0], str)
            or not isinstance(item[1], int | np.integer)
        ):
            raise InvalidDataError(
                f"filters must be (layer_name, channel) pairs, got {item!r}; e.g. "
                "[('features.conv1', 3)]."
            )
        pairs.append((item[0], int(item[1])))
    return pairs


@dataclass(frozen=True)
class PruningExperiment:
    """Test accuracy after pruning anomaly filters vs as many random filters (H3).

    Attributes
    ----------
    runs : pandas.DataFrame
        One row per evaluation: ``condition`` ("baseline", "anomaly" or "random"), ``seed``
        (-1 unless random), ``n_pruned``, ``accuracy`` and ``filters`` (the pruned
        ``(layer, channel)`` pairs).
    summary : pandas.DataFrame
        Per condition: ``mean``, ``std`` (sample std over seeds, 0 for single runs), ``n``.
    per_layer : dict of str to int
        Filters pruned per layer (the same in both pruned conditions).
    """

    runs: pd.DataFrame
    summary: pd.DataFrame
    per_layer: dict[str, int] = field(default_factory=dict)

    @property
    def baseline(self) -> float:
        """Unpruned test accuracy."""
        return float(self.summary.loc["baseline", "mean"])

    @property
    def anomaly(self) -> float:
        """Test accuracy with the anomaly filters pruned."""
        return float(self.summary.loc["anomaly", "mean"])

    @property
    def random_mean(self) -> float:
        """Mean test accuracy with random filters pruned."""
        return float(self.summary.loc["random", "mean"])

    @property
    def random_std(self) -> float:
        """Standard deviation over seeds of the random-pruning accuracy."""
        return float(self.summary.loc["random", "std"])


def pruning_experiment(
    model: nn.Module,
    anomalies: Any,
    test_data: Any,
    seeds: int | Sequence[int] = 5,
    *,
    layer_sizes: Mapping[str, int] | None = None,
    random_state: int = 0,
    batch_size: int = 256,
    device: str | torch.device | None = None,
) -> PruningExperiment:
    """H3: does pruning the anomaly filters improve test accuracy more than random pruning?

    Evaluates the unpruned model, the model with the anomaly filters silenced (:func:`prune`),
    and, for every seed, the model with as many *random* filters silenced **per layer** (the
    same count in each layer, so the control removes capacity where the anomaly pruning does).
    The random filters are drawn from the layer's non-anomaly filters when there are enough of
    them, otherwise from all of the layer's filters.

    Parameters
    ----------
    model : torch.nn.Module
    anomalies : AnalysisResult, pandas.DataFrame or iterable of (str, int)
        Filters to prune; an :class:`AnalysisResult` gives its anomaly filters.
    test_data : Dataset, DataLoader or tuple (x, y)
        Labelled test samples (all are used).
    seeds : int or sequence of int, default=5
        Number of random draws (seeds 0..seeds-1) or the seeds themselves.
    layer_sizes : mapping of str to int, optional
        Filters per layer to draw from; default the layer's ``out_channels`` (or the analysis
        table's filters when ``anomalies`` is an AnalysisResult).
    random_state : int, default=0
        Combined with each seed to draw the random filters.
    batch_size : int, default=256
    device : str or torch.device, optional
        Default: the model's device.

    Returns
    -------
    PruningExperiment

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> from filterscope.gmm import pruning_experiment
    >>> _ = torch.manual_seed(0)
    >>> net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.Flatten(), nn.Linear(4 * 4 * 4, 2))
    >>> data = (torch.randn(20, 1, 6, 6), torch.arange(20) % 2)
    >>> exp = pruning_experiment(net, [("0", 1)], data, seeds=3)
    >>> exp.runs.condition.tolist()
    ['baseline', 'anomaly', 'random', 'random', 'random']
    """
    pairs = _filter_pairs(anomalies)
    sizes = dict(layer_sizes or {})
    if isinstance(anomalies, AnalysisResult) and not sizes:
        sizes = anomalies.table.groupby("layer")["channel"].max().add(1).to_dict()
    modules = dict(model.named_modules())
    per_layer: dict[str, list[int]] = {}
    for layer, channel in pairs:
        chosen = per_layer.setdefault(layer, [])
        if channel not in chosen:
            chosen.append(channel)
    for layer in per_layer:
        if layer not in sizes:
            width = _out_channels(modules[layer]) if layer in modules else None
            if width is None:
                raise InvalidDataError(
                    f"cannot tell how many filters layer {layer!r} has; pass layer_sizes="
                    f"{{{layer!r}: n}}."
                )
            sizes[layer] = width
    seed_list = list(range(seeds)) if isinstance(seeds, int) else [int(s) for s in seeds]
    probe = select_samples(test_data, None)
    if probe.y is None:
        raise InvalidDataError("pruning_experiment needs labelled test data: pass (x, y).")
    dev = torch.device(device) if device is not None else _model_device(model)

    rows: list[tuple[str, int, int, float, list[tuple[str, int]]]] = [
        ("baseline", -1, 0, _accuracy(model, probe, dev, batch_size), [])
    ]
    with prune(model, pairs) as handle:
        accuracy = _accuracy(model, probe, dev, batch_size)
        rows.append(("anomaly", -1, len(handle.filters), accuracy, handle.filters))
    for seed in seed_list:
        rng = np.random.default_rng([random_state, seed])
        control: list[tuple[str, int]] = []
        for layer, chosen in per_layer.items():
            pool = np.setdiff1d(np.arange(sizes[layer]), chosen)
            if len(pool) < len(chosen):
                pool = np.arange(sizes[layer])
            picks = rng.choice(pool, size=len(chosen), replace=False)
            control += [(layer, int(c)) for c in np.sort(picks)]
        with prune(model, control) as handle:
            accuracy = _accuracy(model, probe, dev, batch_size)
            rows.append(("random", seed, len(control), accuracy, handle.filters))
    runs = pd.DataFrame(rows, columns=["condition", "seed", "n_pruned", "accuracy", "filters"])
    grouped = runs.groupby("condition", sort=False)["accuracy"]
    summary = pd.DataFrame(
        {"mean": grouped.mean(), "std": grouped.std(ddof=1).fillna(0.0), "n": grouped.size()}
    )
    if "random" not in summary.index:
        summary.loc["random"] = [math.nan, math.nan, 0]
    return PruningExperiment(runs, summary, {k: len(v) for k, v in per_layer.items()})


def _accuracy(model: nn.Module, probe: ProbeSet, device: torch.device, batch_size: int) -> float:
    assert probe.y is not None
    flags = [(m, m.training) for m in model.modules()]
    home = _model_device(model)
    model.eval()
    if home != device:
        model.to(device)
    correct = 0
    try:
        with torch.no_grad():
            x = _as_model_input(model, probe.x)
            for start in range(0, len(probe), batch_size):
                out = model(x[start : start + batch_size].to(device))
                y = probe.y[start : start + batch_size].to(device)
                correct += int((out.argmax(1) == y).sum())
    finally:
        if home != device:
            model.to(home)
        for module, training in flags:
            module.training = training
    return correct / len(probe)
