"""AnomalyTable: the ranked anomaly filters of an analysis, their scatters and isolated samples.

The table's rows stay in the kernel: the page asks for one page at a time (``rows``), sorted by
any column and filtered by layer, K, flag and score range. Selecting a filter asks for its 2-D
PCA points, cluster labels, outliers and per-component Gaussians (``filter``), which the page
draws on a canvas scatter with 1σ and 2σ ellipses. The sample view (``samples``) lists every
sample that some filter isolates. Thumbnails travel as PNG bytes (``thumbnails``). Every array
travels as a binary buffer; no answer exceeds :data:`MAX_ANSWER_BYTES`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import traitlets
import xarray as xr
from traitlets import Bunch, Dict, Int, Unicode

from filterscope.errors import FilterscopeError, InvalidParameterError, InvalidSelectionError
from filterscope.views._base import PAGE_WRITABLE, ViewWidget, request, require_log
from filterscope.views._serialization import ARRAY_SERIALIZATION
from filterscope.views.selection import Selection
from filterscope.views.validation import png_bytes

#: Columns the page may sort by (``layer`` sorts by name, the rest by value).
SORT_COLUMNS = (
    "score",
    "layer",
    "channel",
    "filter",
    "k",
    "ch",
    "smallest_cluster",
    "n_outliers",
    "anomaly",
    "dead",
    "explained_variance",
)
#: The scatter's axes for each ``features`` setting of :func:`filterscope.analyze`.
AXES = {"pca": "PC 1 × PC 2", "pca-residual": "PC 1 × PCA residual"}
#: Values of the ``flag`` row filter.
FLAGS = ("all", "anomaly", "normal", "dead")
MAX_PAGE_ROWS = 500
"""Most table rows one ``rows`` answer holds."""
MAX_SAMPLE_ROWS = 500
"""Most samples one ``samples`` answer holds."""
MAX_THUMBNAILS = 64
"""Most thumbnails one ``thumbnails`` answer holds."""
MAX_ANSWER_BYTES = 8 * 2**20
"""Largest answer (its arrays' bytes) the view sends; a bigger one is refused with an error."""

_WRITABLE = {PAGE_WRITABLE: True}


def _integer(name: str, value: Any, low: int, high: int | None = None) -> int:
    """``value`` as an int in ``low..high`` (inclusive), or an InvalidParameterError."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise InvalidParameterError(f"{name} must be a whole number, got {value!r}")
    if value < low or (high is not None and value > high):
        span = f"in {low}..{high}" if high is not None else f">= {low}"
        raise InvalidParameterError(f"{name} must be {span}, got {value!r}")
    return int(value)


def _number(name: str, value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float | np.number):
        raise InvalidParameterError(f"{name} must be a number or null, got {value!r}")
    if not np.isfinite(value):
        raise InvalidParameterError(f"{name} must be finite, got {value!r}")
    return float(value)


def _text(values: Any) -> np.ndarray:
    """Labels as a fixed-width str array, whatever their dtype (numpy's StringDType too)."""
    return np.asarray(values).astype(object).astype(str)


def _answer_bytes(value: Any) -> int:
    if isinstance(value, np.ndarray):
        return int(value.nbytes)
    if isinstance(value, dict):
        return sum(_answer_bytes(v) for v in value.values())
    if isinstance(value, list | tuple):
        return sum(_answer_bytes(v) for v in value) + 8 * len(value)
    return 8


def _bounded(answer: dict[str, Any]) -> dict[str, Any]:
    size = _answer_bytes(answer)
    if size > MAX_ANSWER_BYTES:
        raise InvalidParameterError(
            f"the answer would be {size} bytes; answers are limited to {MAX_ANSWER_BYTES} bytes: "
            "ask for fewer rows"
        )
    return answer


class AnomalyTable(ViewWidget):
    """The anomaly filters of an analysis: a ranked table, each filter's scatter, its samples.

    One row per filter of :attr:`AnalysisResult.table`, ranked by the continuous anomaly
    ``score`` (always shown, so the top filters are worth a look even when none is flagged).
    Rows are paged from the kernel; any column sorts; rows filter by layer, K, flag and score
    range. Selecting a filter draws its 2-D PCA points coloured by cluster, with 1σ and 2σ
    ellipses per Gaussian component and its outlier samples ringed; hovering a point shows the
    sample's id, label and thumbnail; a strip shows its outlier samples' thumbnails. With a
    ``log`` the filter also becomes the selection's ``layer`` and ``filter_index`` (so a
    :class:`~filterscope.LayerView` of the same selection shows its row), and when the log has an
    ``"analysis"`` group a panel shows the anomaly count per analysed snapshot beside the
    train − validation gap. The sample view lists every sample some filter isolates, with its
    thumbnail, label, how many filters isolate it and in which layers, and (with a log) its
    loss and correctness at the last snapshot. Selecting a sample sets the selection's
    ``sample_index``, which highlights it in every scatter and in a ValidationView of the
    same selection.

    Parameters
    ----------
    result : AnalysisResult
        What :func:`filterscope.analyze` returned.
    log : xarray.Dataset, optional
        The run's log (:func:`filterscope.open_log`): thumbnails, per-sample loss and
        correctness, the LayerView link and the H1 panel. Samples are matched by
        ``sample_id``; filters by layer name and channel.
    selection : Selection, optional
        Shared selection; a new one if omitted.

    Attributes
    ----------
    filter : int or None
        Selected filter, a position on ``result.dataset``'s ``filter`` axis (the page sets it).
    sample : int or None
        Selected sample, a position on ``result.dataset``'s ``sample`` axis (the page sets it).
    data : dict
        The overview the page draws first (read-only); the shape is in ``docs/api.md``.

    Thumbnails come from the log's ``thumbnail`` variable when a log is given, otherwise from a
    ``thumbnail(sample, row, column, channel)`` uint8 variable of ``result.dataset`` when the
    result carries one, else there are none.

    Raises
    ------
    InvalidParameterError
        If ``result`` is not an AnalysisResult.
    InvalidDataError, LogFormatError
        If ``log`` is not a filterscope log.
    InvalidSelectionError
        When ``filter`` or ``sample`` is set outside the result.

    Examples
    --------
    >>> import filterscope as fs
    >>> result = fs.analyze(model, probe)  # doctest: +SKIP
    >>> table = fs.AnomalyTable(result, log=fs.open_log("runs/demo"))  # doctest: +SKIP
    >>> table.filter = int(result.table.filter[0])  # the top-ranked filter  # doctest: +SKIP
    """

    _view = Unicode("anomaly", read_only=True).tag(sync=True)
    data = Dict(read_only=True).tag(sync=True, **ARRAY_SERIALIZATION)
    filter = Int(default_value=None, allow_none=True).tag(sync=True, **_WRITABLE)
    sample = Int(default_value=None, allow_none=True).tag(sync=True, **_WRITABLE)

    def __init__(
        self,
        result: Any,
        log: xr.Dataset | None = None,
        selection: Selection | None = None,
    ) -> None:
        from filterscope.gmm.analyze import AnalysisResult

        if not isinstance(result, AnalysisResult):
            raise InvalidParameterError(
                f"AnomalyTable needs the AnalysisResult of filterscope.analyze(model, data), "
                f"got {type(result).__name__}"
            )
        self._result = result
        self._log = require_log(log) if log is not None else None
        self._load_result(result)
        self._load_log(self._log)
        self._order_cache: tuple[tuple[Any, ...], np.ndarray] | None = None
        self._syncing = False
        super().__init__(selection=selection)
        self.set_trait("data", self._overview())
        self.observe(self._on_filter, "filter")
        self.observe(self._on_sample, "sample")
        self.selection.observe(self._on_selection_sample, "sample_index")
        self.selection.observe(self._on_selection_filter, ["layer", "filter_index"])

    # ------------------------------------------------------------------ data
    def _load_result(self, result: Any) -> None:
        table: pd.DataFrame = result.table
        ds: xr.Dataset = result.dataset
        self._ds = ds
        self._n_filters = int(ds.sizes["filter"])
        self._n_samples = int(ds.sizes["sample"])
        names, codes = np.unique(_text(table["layer"].to_numpy()), return_inverse=True)
        # Layers in the order the analysis met them (its filter order), not alphabetical.
        first = np.full(len(names), np.iinfo(np.int64).max)
        np.minimum.at(first, codes, table["filter"].to_numpy())
        rank = np.argsort(np.argsort(first, kind="stable"), kind="stable")
        self._layers = [str(names[i]) for i in np.argsort(first, kind="stable")]
        self._columns: dict[str, np.ndarray] = {
            "layer": rank[codes].astype(np.int32),
            "channel": table["channel"].to_numpy(np.int64),
            "filter": table["filter"].to_numpy(np.int64),
            "k": table["k"].to_numpy(np.int64),
            "ch": table["ch"].to_numpy(np.float64),
            "smallest_cluster": table["smallest_cluster"].to_numpy(np.int64),
            "n_outliers": table["n_outliers"].to_numpy(np.int64),
            "score": table["score"].to_numpy(np.float64),
            "anomaly": table["anomaly"].to_numpy(bool),
            "dead": table["dead"].to_numpy(bool),
            "explained_variance": table["explained_variance"].to_numpy(np.float64),
        }
        # Layer names sort alphabetically, as a user reading the column expects.
        alpha = np.argsort(np.argsort(np.array(self._layers, dtype=object), kind="stable"))
        self._layer_alpha = alpha.astype(np.int32)
        # Row of each filter of the dataset.
        self._row_of_filter = np.empty(self._n_filters, np.int64)
        self._row_of_filter[self._columns["filter"]] = np.arange(len(table))
        self._sample_id = np.asarray(ds["sample_id"].values, np.int64)
        self._label = (
            np.asarray(ds["label"].values, np.int64)
            if "label" in ds.coords
            else np.full(self._n_samples, -1, np.int64)
        )
        # Samples some filter isolates: how many filters, and in which layers. Only the filters
        # with outliers are read (a few percent of a large model's).
        outlier = ds["outlier"].values
        if "n_outliers" in ds.variables:
            with_outliers = np.flatnonzero(np.asarray(ds["n_outliers"].values) > 0)
        else:
            with_outliers = np.flatnonzero(outlier.any(axis=1))
        sub = np.asarray(outlier[with_outliers], bool)
        counts = sub.sum(axis=0)
        self._isolated = np.flatnonzero(counts)
        self._isolated_count = counts[self._isolated].astype(np.int64)
        layer_of_filter = np.empty(self._n_filters, np.int64)
        layer_of_filter[self._columns["filter"]] = self._columns["layer"]
        hit_filters, hit_samples = np.nonzero(sub[:, self._isolated])
        n_layers = max(len(self._layers), 1)
        pairs = np.unique(hit_samples * n_layers + layer_of_filter[with_outliers[hit_filters]])
        self._isolated_layer_ptr = np.searchsorted(
            pairs // n_layers, np.arange(len(self._isolated) + 1)
        ).astype(np.int32)
        self._isolated_layers = (pairs % n_layers).astype(np.int32)
        self._thumbs_from_result = (
            "thumbnail" in ds.variables and ds["thumbnail"].dims[0] == "sample"
        )

    def _load_log(self, log: xr.Dataset | None) -> None:
        self._log_sample = np.full(self._n_samples, -1, np.int64)
        self._log_filter = np.full(self._n_filters, -1, np.int64)
        self._h1: dict[str, Any] | None = None
        self._h1_reason = "no log given"
        if log is None:
            return
        if "sample_id" in log.coords and "sample" in log.dims:
            ids = np.asarray(log["sample_id"].values, np.int64)
            order = np.argsort(ids, kind="stable")
            at = np.clip(np.searchsorted(ids[order], self._sample_id), 0, max(len(ids) - 1, 0))
            found = ids[order][at] == self._sample_id if len(ids) else np.zeros(0, bool)
            self._log_sample = np.where(found, order[at], -1) if len(ids) else self._log_sample
        if "filter_layer" in log.coords and "filter_channel" in log.coords:
            keys = pd.MultiIndex.from_arrays(
                [_text(log["filter_layer"].values), log["filter_channel"].values]
            )
            wanted = pd.MultiIndex.from_arrays(
                [
                    _text(self._ds["filter_layer"].values),
                    self._ds["filter_channel"].values.astype(np.int64),
                ]
            )
            self._log_filter = keys.get_indexer(wanted).astype(np.int64)
        self._h1, self._h1_reason = self._h1_curve(log)

    @staticmethod
    def _h1_curve(log: xr.Dataset) -> tuple[dict[str, Any] | None, str]:
        from filterscope.gmm.hypotheses import overfitting_curve
        from filterscope.log.reader import log_path, open_log

        path = log_path(log)
        if path is None or "analysis" not in list(log.attrs.get("filterscope_groups", [])):
            return None, "the log has no analysis group (record with analyze_every=k)"
        try:
            analysis = open_log(path, group="analysis")
            val = next(
                (str(name) for name in log.attrs.get("eval_sets", []) if f"{name}_error" in log),
                "val",
            )
            curve = overfitting_curve(log, analysis, val_set=val)
        except (FilterscopeError, ValueError) as error:
            return None, f"no H1 panel: {error}"
        table = curve.table
        return {
            "step": table["step"].to_numpy(np.int64),
            "n_anomaly": table["n_anomaly"].to_numpy(np.int64),
            "gap": table["gap"].to_numpy(np.float64),
            "val_set": val,
            "spearman_r": float(curve.spearman_r) if np.isfinite(curve.spearman_r) else None,
        }, ""

    def _thumbnail_shape(self) -> tuple[int, int] | None:
        if self._log is not None and "thumbnail" in self._log.variables:
            shape = self._log["thumbnail"].shape
            return int(shape[1]), int(shape[2])
        if self._log is None and self._thumbs_from_result:
            shape = self._ds["thumbnail"].shape
            return int(shape[1]), int(shape[2])
        return None

    def _overview(self) -> dict[str, Any]:
        score = self._columns["score"]
        finite = score[np.isfinite(score)]
        shape = self._thumbnail_shape()
        class_names = (
            [str(n) for n in self._log["class_name"].values]
            if self._log is not None and "class_name" in self._log.coords
            else []
        )
        classes = (
            np.asarray(self._log["class"].values, np.int64)
            if self._log is not None and "class" in self._log.coords and class_names
            else np.zeros(0, np.int64)
        )
        return {
            "n_filters": self._n_filters,
            "n_rows": len(score),
            "n_samples": self._n_samples,
            "n_anomaly": int(self._columns["anomaly"].sum()),
            "n_isolated": len(self._isolated),
            "layers": self._layers,
            "ks": np.unique(self._columns["k"]).astype(np.int32),
            "score_range": [float(finite.min()), float(finite.max())] if finite.size else [0, 0],
            "columns": list(SORT_COLUMNS),
            "sample_id": self._sample_id,
            "label": self._label,
            "class_labels": classes,
            "class_names": class_names,
            "thumbnails": shape is not None,
            "thumbnail_shape": list(shape) if shape is not None else [0, 0],
            "has_log": self._log is not None,
            "log_filters": bool((self._log_filter >= 0).any()),
            "h1": self._h1,
            "h1_reason": self._h1_reason,
            "max_page_rows": MAX_PAGE_ROWS,
        }

    # ------------------------------------------------------------------ rows
    def _order(
        self,
        sort: str,
        descending: bool,
        layers: tuple[str, ...] | None,
        ks: tuple[int, ...] | None,
        flag: str,
        score_min: float | None,
        score_max: float | None,
    ) -> np.ndarray:
        """Table rows passing the filters, in sort order (cached for paging)."""
        key = (sort, descending, layers, ks, flag, score_min, score_max)
        if self._order_cache is not None and self._order_cache[0] == key:
            return self._order_cache[1]
        cols = self._columns
        keep = np.ones(len(cols["score"]), bool)
        if layers is not None:
            codes = [self._layers.index(name) for name in layers]
            keep &= np.isin(cols["layer"], codes)
        if ks is not None:
            keep &= np.isin(cols["k"], ks)
        if flag == "anomaly":
            keep &= cols["anomaly"]
        elif flag == "normal":
            keep &= ~cols["anomaly"]
        elif flag == "dead":
            keep &= cols["dead"]
        if score_min is not None:
            keep &= cols["score"] >= score_min
        if score_max is not None:
            keep &= cols["score"] <= score_max
        rows = np.flatnonzero(keep)
        values = self._layer_alpha[cols["layer"]] if sort == "layer" else cols[sort]
        values = values[rows].astype(np.float64)
        # NaN (the Calinski–Harabasz index of K = 1) sorts last either way; ties keep the rank.
        nan = np.isnan(values)
        primary = np.where(nan, 0.0, -values if descending else values)
        order = rows[np.lexsort((rows, primary, nan))]
        self._order_cache = (key, order)
        return order

    @request("rows")
    def _rows(
        self,
        offset: int = 0,
        limit: int = 50,
        sort: str = "score",
        descending: bool = True,
        layers: Sequence[str] | None = None,
        ks: Sequence[int] | None = None,
        flag: str = "all",
        score_min: float | None = None,
        score_max: float | None = None,
    ) -> dict[str, Any]:
        """One page of table rows: ``limit`` rows from ``offset`` in the filtered, sorted order."""
        offset = _integer("offset", offset, 0)
        limit = _integer("limit", limit, 1, MAX_PAGE_ROWS)
        if sort not in SORT_COLUMNS:
            raise InvalidParameterError(f"sort must be one of {list(SORT_COLUMNS)}, got {sort!r}")
        if not isinstance(descending, bool):
            raise InvalidParameterError(f"descending must be true or false, got {descending!r}")
        if flag not in FLAGS:
            raise InvalidParameterError(f"flag must be one of {list(FLAGS)}, got {flag!r}")
        layer_key: tuple[str, ...] | None = None
        if layers is not None:
            if not isinstance(layers, list) or not all(isinstance(n, str) for n in layers):
                raise InvalidParameterError(f"layers must be a list of layer names, got {layers!r}")
            unknown = [n for n in layers if n not in self._layers]
            if unknown:
                raise InvalidParameterError(
                    f"layers {unknown[:3]} are not in this analysis; its layers are "
                    f"{self._layers[:8]}{' …' if len(self._layers) > 8 else ''}"
                )
            layer_key = tuple(sorted(set(layers)))
        k_key: tuple[int, ...] | None = None
        if ks is not None:
            if not isinstance(ks, list):
                raise InvalidParameterError(f"ks must be a list of whole numbers, got {ks!r}")
            k_key = tuple(sorted({_integer("a K", k, 1) for k in ks}))
        low, high = _number("score_min", score_min), _number("score_max", score_max)
        if low is not None and high is not None and low > high:
            raise InvalidParameterError(f"score_min {low} is above score_max {high}")
        order = self._order(sort, descending, layer_key, k_key, flag, low, high)
        total = len(order)
        if offset > total or (offset == total and total > 0):
            raise InvalidParameterError(
                f"offset {offset} is past the last of the {total} rows that pass the filters"
            )
        rows = order[offset : offset + limit]
        cols = self._columns
        return _bounded(
            {
                "offset": offset,
                "total": total,
                "sort": sort,
                "descending": descending,
                "rank": rows.astype(np.int32),
                **{name: cols[name][rows] for name in SORT_COLUMNS},
            }
        )

    def _filter_index(self, name: str, value: Any) -> int:
        return _integer(name, value, 0, self._n_filters - 1)

    def _sample_index(self, name: str, value: Any) -> int:
        return _integer(name, value, 0, self._n_samples - 1)

    @request("filter")
    def _filter_detail(self, filter: int) -> dict[str, Any]:
        """One filter's points, clusters, outliers and Gaussian components."""
        f = self._filter_index("filter", filter)
        ds = self._ds.isel(filter=f)
        k = int(ds["n_clusters"].values)
        row = int(self._row_of_filter[f])
        outlier = np.asarray(ds["outlier"].values, bool)
        return _bounded(
            {
                "filter": f,
                "row": row,
                "layer": self._layers[int(self._columns["layer"][row])],
                "channel": int(self._columns["channel"][row]),
                "score": float(self._columns["score"][row]),
                "anomaly": bool(self._columns["anomaly"][row]),
                "k": k,
                "explained_variance": float(self._columns["explained_variance"][row]),
                # What the scatter's two axes are (analyze(features=...)).
                "axes": AXES.get(str(self._ds.attrs.get("features", "pca")), AXES["pca"]),
                "points": np.asarray(ds["points"].values, np.float32),
                "labels": np.asarray(ds["labels"].values).astype(np.int16),
                "outlier": outlier,
                "outliers": np.flatnonzero(outlier).astype(np.int32),
                "mean": np.asarray(ds["mean"].values[:k], np.float64),
                "covariance": np.asarray(ds["covariance"].values[:k], np.float64),
                "weight": np.asarray(ds["weight"].values[:k], np.float64),
                "outlier_cluster": np.asarray(ds["outlier_cluster"].values[:k], bool),
                "log_filter": int(self._log_filter[f]),
            }
        )

    @request("samples")
    def _samples(self, offset: int = 0, limit: int = 100) -> dict[str, Any]:
        """A page of the samples some filter isolates, most isolating filters first."""
        offset = _integer("offset", offset, 0)
        limit = _integer("limit", limit, 1, MAX_SAMPLE_ROWS)
        total = len(self._isolated)
        if offset > total or (offset == total and total > 0):
            raise InvalidParameterError(
                f"offset {offset} is past the last of the {total} isolated samples"
            )
        order = np.lexsort((self._isolated, -self._isolated_count))[offset : offset + limit]
        samples = self._isolated[order]
        ptr = self._isolated_layer_ptr
        layer_ptr = np.concatenate([[0], np.cumsum(ptr[order + 1] - ptr[order])]).astype(np.int32)
        layer_codes = (
            np.concatenate([self._isolated_layers[ptr[i] : ptr[i + 1]] for i in order])
            if len(order)
            else np.zeros(0, np.int32)
        ).astype(np.int32)
        loss = np.full(len(samples), np.nan, np.float32)
        correct = np.full(len(samples), -1, np.int8)
        log = self._log
        at = self._log_sample[samples]
        known = at >= 0
        if log is not None and known.any() and "snapshot" in log.dims:
            positions = at[known]
            if "sample_loss" in log.variables:
                values = log["sample_loss"].isel(snapshot=-1, sample=positions).values
                loss[known] = np.asarray(values, np.float32)
            if "correct" in log.variables:
                values = log["correct"].isel(snapshot=-1, sample=positions).values
                correct[known] = np.asarray(values).astype(np.int8)
        return _bounded(
            {
                "offset": offset,
                "total": total,
                "sample": samples.astype(np.int32),
                "count": self._isolated_count[order].astype(np.int32),
                "layer_ptr": layer_ptr,
                "layer_codes": layer_codes,
                "loss": loss,
                "correct": correct,
            }
        )

    @request("thumbnails")
    def _thumbnails(self, samples: list[int]) -> dict[str, Any]:
        """PNG thumbnails of ``samples`` (positions on the result's samples), concatenated."""
        if not isinstance(samples, list) or not samples:
            raise InvalidParameterError(f"samples must be a non-empty list, got {samples!r}")
        if len(samples) > MAX_THUMBNAILS:
            raise InvalidParameterError(
                f"at most {MAX_THUMBNAILS} thumbnails per request, got {len(samples)}"
            )
        wanted = [self._sample_index("a sample", s) for s in samples]
        if self._thumbnail_shape() is None:
            raise InvalidParameterError(
                "no thumbnails: pass a log recorded with Recorder(thumbnails=True) on image "
                "inputs, or a result whose dataset has a 'thumbnail' variable"
            )
        pngs: list[bytes] = []
        have: list[int] = []
        for s in wanted:
            image = self._thumbnail(s)
            if image is not None:
                pngs.append(png_bytes(image))
                have.append(s)
        offsets = np.cumsum([0, *(len(p) for p in pngs)]).astype(np.int32)
        return _bounded(
            {
                "samples": np.asarray(have, np.int32),
                "offsets": offsets,
                "png": np.frombuffer(b"".join(pngs), np.uint8),
            }
        )

    def _thumbnail(self, sample: int) -> np.ndarray | None:
        if self._log is not None:
            at = int(self._log_sample[sample])
            if at < 0 or "thumbnail" not in self._log.variables:
                return None
            return np.asarray(self._log["thumbnail"].isel(sample=at).values, np.uint8)
        return np.asarray(self._ds["thumbnail"].isel(sample=sample).values, np.uint8)

    # ------------------------------------------------------------------ selection
    @traitlets.validate("filter")
    def _valid_filter(self, proposal: Bunch) -> int | None:
        if proposal.value is None:
            return None
        try:
            return self._filter_index("filter", proposal.value)
        except InvalidParameterError as error:
            raise InvalidSelectionError(
                f"{error}: filter is a position on the analysis's filter axis"
            ) from None

    @traitlets.validate("sample")
    def _valid_sample(self, proposal: Bunch) -> int | None:
        if proposal.value is None:
            return None
        try:
            return self._sample_index("sample", proposal.value)
        except InvalidParameterError as error:
            raise InvalidSelectionError(
                f"{error}: sample is a position on the analysis's sample axis"
            ) from None

    def _on_filter(self, change: Bunch) -> None:
        if self._syncing or change.new is None or self._log is None:
            return
        at = int(self._log_filter[change.new])
        if at < 0:
            return
        self._syncing = True
        try:
            self.selection.layer = str(self._ds["filter_layer"].values[change.new])
            self.selection.filter_index = at
        finally:
            self._syncing = False

    def _on_sample(self, change: Bunch) -> None:
        if self._syncing:
            return
        if change.new is None:
            target = None
        elif self._log is None:
            target = int(change.new)
        else:
            at = int(self._log_sample[change.new])
            target = at if at >= 0 else None
        self._syncing = True
        try:
            self.selection.sample_index = target
        finally:
            self._syncing = False

    def _on_selection_sample(self, change: Bunch) -> None:
        if self._syncing:
            return
        value = change.new
        if value is None:
            found: int | None = None
        elif self._log is None:
            found = int(value) if 0 <= value < self._n_samples else None
        else:
            hits = np.flatnonzero(self._log_sample == value)
            found = int(hits[0]) if hits.size else None
        self._syncing = True
        try:
            self.sample = found
        finally:
            self._syncing = False

    def _on_selection_filter(self, change: Bunch) -> None:
        if self._syncing or self._log is None or self.selection.filter_index is None:
            return
        hits = np.flatnonzero(self._log_filter == self.selection.filter_index)
        if hits.size:
            self._syncing = True
            try:
                self.filter = int(hits[0])
            finally:
                self._syncing = False

    def close(self) -> None:
        """Stop following the selection and close the widget."""
        selection = getattr(self, "selection", None)
        if selection is not None:
            for handler, names in (
                (self._on_selection_sample, "sample_index"),
                (self._on_selection_filter, ["layer", "filter_index"]),
            ):
                try:
                    selection.unobserve(handler, names)
                except ValueError:
                    pass
        super().close()
