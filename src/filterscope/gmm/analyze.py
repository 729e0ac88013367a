"""``fs.analyze``: extraction → PCA → batched GMM → a ranked table of anomaly filters.

The one-call entry point of the GMM engine (arXiv 2412.10457). Its ``dataset`` has the same
variables and dimension sizes for every call with the same model, probe data and parameters, so
the :class:`~filterscope.Recorder` can append one per analysis snapshot to a log's
``"analysis"`` group.
"""

from __future__ import annotations

import difflib
import inspect
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch
import xarray as xr
from torch import nn

from filterscope.errors import InvalidParameterError
from filterscope.gmm.estimator import FilterGMM
from filterscope.gmm.extract import DEFAULT_MAX_MEMORY, Features, Where, extract
from filterscope.gmm.pca import PCAMethod

__all__ = ["TABLE_COLUMNS", "AnalysisResult", "analyze", "outlier_sample_ids"]

#: Columns of :attr:`AnalysisResult.table`, in order.
TABLE_COLUMNS = (
    "layer",
    "channel",
    "filter",
    "k",
    "ch",
    "smallest_cluster",
    "n_outliers",
    "outlier_ids",
    "score",
    "anomaly",
    "dead",
    "explained_variance",
)


@dataclass
class AnalysisResult:
    """What :func:`analyze` found.

    Attributes
    ----------
    table : pandas.DataFrame
        One row per filter, ranked by anomaly score (highest first), columns
        :data:`TABLE_COLUMNS`: ``layer`` (module name), ``channel``, ``filter`` (index on the
        dataset's ``filter`` dim), ``k`` (chosen number of clusters), ``ch`` (Calinski–Harabasz
        index at ``k``, NaN for ``k = 1``), ``smallest_cluster`` (samples in the chosen
        clustering's smallest cluster), ``n_outliers``, ``outlier_ids`` (sample ids of the
        outlier samples), ``score`` (anomaly score), ``anomaly``, ``dead`` (constant feature
        maps) and ``explained_variance`` (share of the filter's variance kept by the 2-D PCA).
    dataset : xarray.Dataset
        Per-filter and per-point results with fixed dimensions ``filter``, ``sample``, ``k``,
        ``component``, ``pc``, ``pc_col``: every variable of :meth:`FilterGMM.to_dataset`
        (``n_clusters``, ``labels``, ``outlier``, ``loglik``, ``ch``, ``anomaly``,
        ``anomaly_score``, ``dead``, ...) plus ``points(filter, sample, pc)``,
        ``explained_variance``, ``smallest_cluster`` and ``n_outliers`` (filter); coordinates
        ``filter_layer``, ``filter_channel``, ``sample_id``, ``label``.
    gmm : FilterGMM
        The fitted estimator.
    """

    table: pd.DataFrame
    dataset: xr.Dataset
    gmm: FilterGMM

    @property
    def anomalies(self) -> pd.DataFrame:
        """The rows of :attr:`table` that are anomaly filters."""
        return self.table[self.table["anomaly"]]

    def outlier_ids(self) -> np.ndarray:
        """Sorted unique sample ids that some anomaly filter isolates (see
        :func:`outlier_sample_ids`)."""
        return outlier_sample_ids(self.table)

    def show(self, log: xr.Dataset | None = None, selection: Any = None) -> Any:
        """The :class:`~filterscope.AnomalyTable` of this result (display it in Jupyter).

        Parameters
        ----------
        log : xarray.Dataset, optional
            The run's log, for thumbnails, per-sample loss, the LayerView link and H1 panel.
        selection : filterscope.views.Selection, optional
            Selection shared with other views.
        """
        from filterscope.views.anomaly import AnomalyTable

        return AnomalyTable(self, log=log, selection=selection)

    def _repr_html_(self) -> str:
        return self.table.head(20)._repr_html_()  # type: ignore[operator]


def outlier_sample_ids(table: pd.DataFrame) -> np.ndarray:
    """Sorted unique sample ids isolated by the anomaly filters of an analysis table.

    Parameters
    ----------
    table : pandas.DataFrame
        :attr:`AnalysisResult.table` (or a subset of its rows).

    Returns
    -------
    numpy.ndarray
        int64 sample ids.

    Examples
    --------
    >>> import pandas as pd
    >>> t = pd.DataFrame({"anomaly": [True, False], "outlier_ids": [[5, 2], []]})
    >>> outlier_sample_ids(t).tolist()
    [2, 5]
    """
    rows = table.loc[table["anomaly"].astype(bool), "outlier_ids"]
    if len(rows) == 0:
        return np.zeros(0, dtype=np.int64)
    return np.unique(np.concatenate([np.asarray(v, dtype=np.int64) for v in rows]))


def analyze(
    model: nn.Module,
    data: Any,
    *,
    n_samples: int | None = 512,
    layers: Sequence[str] | None = None,
    where: Where = "output",
    device: str | torch.device | None = None,
    random_state: int | None = 0,
    batch_size: int = 128,
    pca: PCAMethod = "randomized",
    max_memory: int | None = DEFAULT_MAX_MEMORY,
    progress: bool | None = None,
    features: Features = "pca",
    **gmm_kwargs: Any,
) -> AnalysisResult:
    """Find a model's anomaly filters: filters whose feature maps isolate a few samples.

    Runs :func:`~filterscope.gmm.extract` (feature maps of ``n_samples`` probe samples → 2-D PCA
    per filter) and fits a :class:`~filterscope.gmm.FilterGMM` to every filter's points (K
    chosen by the Calinski–Harabasz index; a filter is an anomaly filter when its clustering has
    a small, well-separated cluster, whose samples are its outliers). Every argument after
    ``data`` is keyword-only.

    Parameters
    ----------
    model : torch.nn.Module
        The CNN to analyse (training flags are restored afterwards).
    data : Dataset, DataLoader, Tensor, ndarray or tuple (x, y)
        Probe data; see :func:`~filterscope.gmm.probe.select_samples`.
    n_samples : int or None, default=512
        Probe samples drawn deterministically with ``random_state`` (None: all).
    layers : sequence of str, optional
        Module names to analyse; default every ``Conv2d``.
    where : {"output", "activation"}, default="output"
        Feature maps after the layer or after its activation; see :func:`extract`.
    device : str or torch.device, optional
        Where extraction, PCA and EM run; default CUDA when available, else the CPU.
    random_state : int or None, default=0
        Seeds the sample selection, the PCA and the GMM initialisation.
    batch_size, pca, max_memory
        Passed to :func:`extract`.
    progress : bool or None, default=None
        Progress over the layers, then the clustering: a widget in Jupyter, a tqdm bar on a
        terminal. None shows it there and hides it in logs and pipes; True always, False never.
        An interrupt (or any error) stops it and leaves the model as it was: no hooks, its
        training flags restored, no partial result.
    features : {"pca", "pca-residual"}, default="pca"
        Each sample's 2-D point: two principal components, or the first and the PCA residual
        (see :func:`extract`; the residual also finds heavily noised inputs).
    **gmm_kwargs
        Parameters of :class:`FilterGMM` (``k_range``, ``n_init``, ``outlier_fraction``,
        ``min_separation``, ``selection``, ``dtype``, ``n_jobs``, ...).

    Returns
    -------
    AnalysisResult

    Raises
    ------
    InvalidParameterError
        When a parameter is outside its range, or a keyword is neither one of the above nor a
        :class:`FilterGMM` parameter (the message suggests the closest names).
    InvalidModelError, InvalidDataError, NonFiniteError
        As :func:`extract` and :meth:`FilterGMM.fit` raise them.

    Examples
    --------
    >>> import torch
    >>> import filterscope as fs
    >>> from filterscope.data import digits
    >>> from filterscope.models import LeNet5
    >>> _ = torch.manual_seed(0)
    >>> result = fs.analyze(LeNet5(), digits("val"), n_samples=128, progress=False)
    >>> result.table.columns.tolist()[:4], len(result.table)
    (['layer', 'channel', 'filter', 'k'], 22)
    >>> result.dataset.points.shape
    (22, 128, 2)
    """
    _check_gmm_kwargs(gmm_kwargs)
    bar = _progress_bar(progress, model, layers)
    try:
        points = extract(
            model,
            data,
            layers=layers,
            n_samples=n_samples,
            device=device,
            where=where,
            batch_size=batch_size,
            random_state=random_state,
            pca=pca,
            max_memory=max_memory,
            progress=bar.layer_done if bar is not None else False,
            features=features,
        )
        if bar is not None:
            bar.clustering()
        gmm = FilterGMM(random_state=random_state, device=points.attrs["device"], **gmm_kwargs)
        gmm.fit(points)
    finally:
        if bar is not None:
            bar.close()
    dataset = _dataset(points, gmm)
    return AnalysisResult(table=_table(dataset, gmm), dataset=dataset, gmm=gmm)


#: Names from other libraries (scikit-learn's GaussianMixture, ...) and what analyze calls them.
_ALIASES = {
    "n_components": "k_range",
    "n_component": "k_range",
    "n_clusters": "k_range",
    "k": "k_range",
    "seed": "random_state",
}


def _check_gmm_kwargs(gmm_kwargs: dict[str, Any]) -> None:
    """Refuse a keyword that neither :func:`analyze` nor :class:`FilterGMM` takes, before any
    work is done (FilterGMM would only fail after the extraction)."""
    own = [
        name
        for name, p in inspect.signature(analyze).parameters.items()
        if p.kind is not inspect.Parameter.VAR_KEYWORD
    ]
    # random_state and device are analyze's own and passed on by it.
    forwarded = [name for name in FilterGMM._get_param_names() if name not in own]
    for name in gmm_kwargs:
        if name in forwarded:
            continue
        close = [_ALIASES[name]] if name in _ALIASES else []
        close += difflib.get_close_matches(name, own[2:] + forwarded, n=3)
        hint = f"; did you mean {' or '.join(map(repr, close))}?" if close else "."
        raise InvalidParameterError(
            f"analyze() got an unknown keyword {name!r}; it passes keywords on to FilterGMM, "
            f"whose parameters are {', '.join(forwarded)} (analyze's own: "
            f"{', '.join(own[2:])}){hint}"
        )


def _dataset(points: xr.Dataset, gmm: FilterGMM) -> xr.Dataset:
    fitted = gmm.to_dataset()
    sizes = fitted["cluster_size"].where(fitted["component"] < fitted["n_clusters"])
    smallest = sizes.min("component").fillna(0).astype(np.int64)
    ds = fitted.assign(
        points=points["points"],
        explained_variance=points["explained_variance"],
        smallest_cluster=smallest,
        n_outliers=fitted["outlier"].sum("sample").astype(np.int64),
    )
    if "thumbnail" in points:
        ds["thumbnail"] = points["thumbnail"]
    ds.attrs.update(points.attrs)
    ds.attrs["k_range"] = [int(k) for k in gmm.k_range]
    return ds


def _table(ds: xr.Dataset, gmm: FilterGMM) -> pd.DataFrame:
    f = ds.sizes["filter"]
    k = ds["n_clusters"].values
    ks = list(gmm.ks_)
    ch_all = ds["ch"].values
    ch = np.array([ch_all[i, ks.index(int(k[i]))] for i in range(f)], dtype=np.float64)
    sample_ids = ds["sample_id"].values
    table = pd.DataFrame(
        {
            "layer": ds["filter_layer"].values.astype(str),
            "channel": ds["filter_channel"].values.astype(np.int64),
            "filter": np.arange(f, dtype=np.int64),
            "k": k.astype(np.int64),
            "ch": ch,
            "smallest_cluster": ds["smallest_cluster"].values,
            "n_outliers": ds["n_outliers"].values,
            "outlier_ids": [sample_ids[idx].tolist() for idx in gmm.outliers_],
            "score": ds["anomaly_score"].values.astype(np.float64),
            "anomaly": ds["anomaly"].values.astype(bool),
            "dead": ds["dead"].values.astype(bool),
            "explained_variance": ds["explained_variance"].values.astype(np.float64),
        },
        columns=list(TABLE_COLUMNS),
    )
    order = np.lexsort((table["filter"].to_numpy(), -table["score"].to_numpy()))
    return table.iloc[order].reset_index(drop=True)


class _Bar:
    """A tqdm bar over the layers plus one clustering step."""

    def __init__(self, total: int, disable: bool | None) -> None:
        from tqdm.auto import tqdm

        self._bar = tqdm(total=total + 1, desc="extract", unit="step", disable=disable)

    def layer_done(self, name: str) -> None:
        self._bar.set_postfix_str(name, refresh=False)
        self._bar.update()

    def clustering(self) -> None:
        self._bar.set_description("cluster")
        self._bar.update()

    def close(self) -> None:
        self._bar.close()


def _progress_bar(
    progress: bool | None, model: nn.Module, layers: Sequence[str] | None
) -> _Bar | None:
    if progress is False:
        return None
    n = (
        len(layers)
        if layers is not None
        else sum(isinstance(m, nn.Conv2d) for m in model.modules())
    )
    # None: shown on a terminal and in a Jupyter kernel (tqdm.auto draws a widget there),
    # hidden in logs and pipes; True forces it.
    if progress is None and not _interactive():
        return None
    return _Bar(n, disable=False)


def _interactive() -> bool:
    """Whether a person is watching: a Jupyter kernel, or standard error on a terminal."""
    shell = sys.modules.get("IPython")
    if shell is not None:
        ip = shell.get_ipython()  # type: ignore[attr-defined]
        if ip is not None and getattr(ip, "kernel", None) is not None:
            return True
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):  # replaced or closed stderr
        return False
