"""LayerView: DeepTracker's layer view, a collapsible tree of per-node charts over training."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
import traitlets
import xarray as xr
from traitlets import Bool, Bunch, Dict, Int, List, Tuple, Unicode

from filterscope.dynamics.layer_view import (
    CHARTS,
    DEFAULT_THRESHOLDS,
    MEAN_ABS,
    VARIABLES,
    filter_rows,
    lowest_cosine_filters,
    metric_extent,
    node_series,
    snapshot_window,
    statistics,
)
from filterscope.errors import InvalidParameterError, InvalidSelectionError
from filterscope.views._base import PAGE_WRITABLE, ViewWidget, request, require_log
from filterscope.views._data import DATA_LOCK, index_of
from filterscope.views._serialization import ARRAY_SERIALIZATION
from filterscope.views.selection import Selection, StepValidators, check_window

DEFAULT_MAX_POINTS = 800
"""Columns asked of the index for the node charts and a layer's filter rows."""

NORMALIZE = ("global", "filter", "snapshot")
"""How a layer's filter rows are coloured: one range for all, per filter row, per snapshot."""

ROW_STEPS = 254
"""Codes ``0..254`` of a filter-rows answer span a range linearly; see :func:`encode_rows`."""
ROW_NAN = 255
"""Code of a NaN cell in a filter-rows answer."""

_PAGE = {PAGE_WRITABLE: True}
_VARIABLES = [
    "weight_stat",
    "grad_stat",
    "change_ratio",
    "filter_cosine",
    "snapshot_step",
    "layer_name",
    "layer_stage",
    "layer_block",
]


def encode_rows(
    values: npt.ArrayLike, normalize: str
) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.float32], npt.NDArray[np.float32]]:
    """Quantise filter rows (filter × column) to one byte per cell for the page.

    The page colours a cell on a 256-step scale after normalising it over a range: the
    filter's row (``"filter"``), the snapshot's column (``"snapshot"``) or one range
    (``"global"``, the run's ``metric_extent``, which holds every value of the answer). Each
    group of that ``normalize`` (a row, a column, or all cells) is sent as ``lo``, ``hi``
    (its finite float32 min and max) and codes ``round((v - lo) / (hi - lo) * 254)``, with
    :data:`ROW_NAN` (255) where ``v`` is NaN (or infinite) and 0 where ``hi == lo``. Decoded
    as ``lo + code / 254 * (hi - lo)``, a value is off by at most ``(hi - lo) / 508``: half a
    colour step of the group's range, never more than one colour step under any range that
    holds the group; the group's ends come back exactly, so its normalised extent is the same.

    Parameters
    ----------
    values : array_like
        ``(filters, columns)`` float values.
    normalize : {"global", "filter", "snapshot"}
        The grouping; ``lo`` and ``hi`` have one value per filter, per column or one.

    Returns
    -------
    codes : numpy.ndarray
        uint8, ``values``' shape.
    lo, hi : numpy.ndarray
        float32 per group; NaN for a group with no finite value.

    Examples
    --------
    >>> codes, lo, hi = encode_rows([[0.5, 1.0, np.nan]], "global")
    >>> codes.tolist(), lo.tolist(), hi.tolist()
    ([[0, 254, 255]], [0.5], [1.0])
    """
    v = np.asarray(values, dtype=np.float32)
    if v.ndim != 2:
        raise InvalidParameterError(f"filter rows are 2-D (filter × column), got {v.shape}")
    if normalize not in NORMALIZE:
        raise InvalidParameterError(
            f"normalize must be one of {list(NORMALIZE)}, got {normalize!r}"
        )
    finite = np.isfinite(v)
    every = bool(finite.all())
    if not every:
        v = np.where(finite, v, np.float32(np.nan))  # infinities are missing cells too
    axis = {"filter": 1, "snapshot": 0, "global": None}[normalize]
    if v.size == 0:
        groups = {"filter": v.shape[0], "snapshot": v.shape[1], "global": 1}[normalize]
        empty = np.full(groups, np.nan, dtype=np.float32)
        return np.zeros(v.shape, dtype=np.uint8), empty, empty.copy()
    # fmin/fmax skip NaN; a group of NaN only stays NaN.
    lo = np.fmin.reduce(v, axis=axis, keepdims=True)
    hi = np.fmax.reduce(v, axis=axis, keepdims=True)
    span = hi - lo
    scale = np.zeros_like(span)
    np.divide(np.float32(ROW_STEPS), span, out=scale, where=span > 0)
    t = v - lo
    t *= scale
    np.clip(t, 0, ROW_STEPS, out=t)
    t += np.float32(0.5)
    if not every:
        t[~finite] = ROW_NAN
    codes = t.astype(np.uint8)
    return codes, lo.reshape(-1), hi.reshape(-1)


def _whole(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise InvalidSelectionError(f"{name} must be a whole number, got {value!r}")
    return int(value)


class LayerView(StepValidators, ViewWidget):
    """DeepTracker's layer view: the model's stage → block → layer tree, one chart per node.

    Each node of the tree (the model, its stages, blocks and layers) gets one chart over the
    run: a horizon graph by default (the mean magnitude of the gradient per parameter, ``l1 /
    n``), a line, a box plot (min, q1, mean, q3, max: node quartiles are weighted averages of
    their layers') or stacked change-ratio bands (the fraction of weights with ``|g / w| <= t``
    for ``t`` in 0.1, 0.01, 0.001, 0.0001). Expanding a layer shows its filters as a pixel
    chart, one row per filter coloured by the cosine similarity between consecutive snapshots,
    asked of the kernel when the layer opens. Picking iterations (``picked_steps``, shared with
    ModelInfo) lists the 10 filters with the lowest cosine there (the intersection for several
    picks) in ``changed_filters`` and expands the tree to them. The time axis (hover, zoom) is
    shared with the other views of the same selection.

    Parameters
    ----------
    log : xarray.Dataset
        A filterscope log from :func:`filterscope.open_log`, with ``weight_stat``,
        ``grad_stat``, ``change_ratio`` and ``filter_cosine``.
    selection : Selection, optional
        Links ``picked_steps``, ``time_window``, ``layer`` and ``filter_index``.
    max_points : int, default 800
        Columns asked of the index: longer runs arrive as bucket means.
    chart, variable, stat, same_scale, normalize : optional
        Initial values of the traits of the same names.

    Attributes
    ----------
    chart : {"horizon", "line", "box", "bands"}
    variable : {"gradient", "weight"}
    stat : str
        ``"mean_abs"`` or a label of the log's ``stat`` (horizon and line charts).
    same_scale : bool
        One value range for every node's chart instead of one per chart.
    normalize : {"global", "filter", "snapshot"}
        Colour range of the filter rows: the run's whole range, per filter (default), per
        snapshot.
    expanded : list of str
        Open tree nodes.
    layer, filter_index, picked_steps, time_window
        The shared selection: a layer name, a position on the flat ``filter`` axis, picked
        steps, the visible step window.
    changed_filters : list of dict (read-only)
        The lowest-cosine filters at the picks: ``filter``, ``layer``, ``channel``.
    tree, series : dict (read-only)
        What the page draws; shapes in ``docs/api.md``.

    Raises
    ------
    InvalidParameterError
        On a bad ``max_points`` or initial choice.
    InvalidSelectionError
        When a trait is set to a value outside its choices (the previous value stays; the same
        from the page is refused and re-sent).

    Examples
    --------
    >>> import filterscope as fs
    >>> view = fs.LayerView(fs.open_log("runs/demo"))  # doctest: +SKIP
    >>> view.picked_steps = [1200]  # doctest: +SKIP
    >>> view.changed_filters[:2]  # doctest: +SKIP
    """

    _view = Unicode("layer", read_only=True).tag(sync=True)
    _selection_traits = ("picked_steps", "time_window", "layer", "filter_index")
    tree = Dict(read_only=True).tag(sync=True, **ARRAY_SERIALIZATION)
    series = Dict(read_only=True).tag(sync=True, **ARRAY_SERIALIZATION)
    changed_filters = List(Dict(), read_only=True).tag(sync=True)
    chart = Unicode("horizon").tag(sync=True, **_PAGE)
    variable = Unicode("gradient").tag(sync=True, **_PAGE)
    stat = Unicode(MEAN_ABS).tag(sync=True, **_PAGE)
    same_scale = Bool(False).tag(sync=True, **_PAGE)
    normalize = Unicode("filter").tag(sync=True, **_PAGE)
    expanded = List(Unicode(), default_value=["model"]).tag(sync=True, **_PAGE)
    layer = Unicode(default_value=None, allow_none=True).tag(sync=True, **_PAGE)
    filter_index = Int(default_value=None, allow_none=True).tag(sync=True, **_PAGE)
    picked_steps = List(Int()).tag(sync=True, **_PAGE)
    time_window = Tuple(Int(), Int(), default_value=None, allow_none=True).tag(sync=True, **_PAGE)

    def __init__(
        self,
        log: xr.Dataset,
        *,
        selection: Selection | None = None,
        max_points: int = DEFAULT_MAX_POINTS,
        **choices: Any,
    ) -> None:
        log = require_log(log, ["weight_stat", "grad_stat", "change_ratio", "filter_cosine"])
        if (
            isinstance(max_points, bool)
            or not isinstance(max_points, int | np.integer)
            or max_points < 2
        ):
            raise InvalidParameterError(
                f"max_points must be an integer >= 2 (columns of the charts), got {max_points!r}"
            )
        known = {"chart", "variable", "stat", "same_scale", "normalize"}
        unknown = sorted(set(choices) - known)
        if unknown:
            raise InvalidParameterError(f"LayerView takes no {unknown}; it takes {sorted(known)}")
        self._columns = int(max_points)
        self._load(log)
        for name, value in choices.items():
            setattr(self, name, value)  # validated below; a bad one raises
        self._update_series()
        super().__init__(selection=selection)
        self.observe(self._on_choice, ["chart", "variable", "stat", "time_window"])
        self.observe(self._on_picks, ["picked_steps"])
        self.observe(self._show_layer, ["layer"])
        if self.time_window is not None:
            self._update_series()
        self._update_changed()

    def _load(self, log: xr.Dataset) -> None:
        """Read the tree and the index of ``log``: everything but the series (``_update_series``)."""
        self._log = log
        self._index = index_of(log, _VARIABLES)
        nodes = self._index.nodes()
        self._nodes = [str(n) for n in nodes["node"].values]
        self._layer_names = [str(n) for n in log["layer_name"].values]
        self._filter_count = int(log.sizes["filter"])
        self._stats = statistics(self._index)
        snap_steps = np.asarray(log["snapshot_step"].values, dtype=np.int64)
        steps = np.asarray(log["step"].values, dtype=np.int64) if "step" in log.dims else snap_steps
        every = np.concatenate([steps, snap_steps])
        self._step_range = (int(every.min()), int(every.max())) if every.size else (0, 0)
        filters = (
            dict(zip(self._layer_names, map(int, log["layer_filters"].values), strict=True))
            if "layer_filters" in log.coords
            else {}
        )
        lo, hi = metric_extent(self._index)
        self.set_trait(
            "tree",
            {
                "step_range": list(self._step_range),
                "snapshot_step": snap_steps,
                "nodes": [
                    {
                        "name": name,
                        "level": str(level),
                        "parent": str(parent),
                        "params": int(params),
                        "layer": name in filters,
                        "filters": filters.get(name, 0),
                    }
                    for name, level, parent, params in zip(
                        self._nodes,
                        nodes["node_level"].values,
                        nodes["node_parent"].values,
                        nodes["node_params"].values,
                        strict=True,
                    )
                ],
                "stats": self._stats,
                "thresholds": list(DEFAULT_THRESHOLDS),
                "cosine_range": [lo, hi],
            },
        )

    # A choice made in Python or the page re-reads the index: not while a live update rewrites it.
    def _on_choice(self, _change: Bunch) -> None:
        with DATA_LOCK:
            self._update_series()

    def _on_picks(self, _change: Bunch) -> None:
        with DATA_LOCK:
            self._update_changed()

    def _reload(self, log: xr.Dataset) -> None:
        self._load(require_log(log, ["weight_stat", "grad_stat", "change_ratio", "filter_cosine"]))
        self._update_series()

    # ------------------------------------------------------------------ data
    def _time(self, window: tuple[int, int] | None) -> slice | None:
        return None if window is None else snapshot_window(self._index, *window)

    def _update_series(self) -> None:
        chart = self.chart
        data = node_series(
            self._index,
            variable=self.variable,
            chart=chart,
            stat=self.stat,
            time=self._time(self.time_window),
            columns=self._columns,
        )
        self.set_trait(
            "series",
            {
                "chart": chart,
                "variable": self.variable,
                "stat": self.stat,
                "parts": [str(p) for p in data["part"].values],
                "x": np.asarray(data["snapshot_step"].values, dtype=np.int64),
                "level": int(data.attrs["level"]),
                "approximate": data.attrs["approximate"],
                "values": data.values.astype(np.float32),
            },
        )

    def _update_changed(self) -> None:
        table = lowest_cosine_filters(self._log, self.picked_steps) if self.picked_steps else None
        rows = (
            []
            if table is None
            else [
                {"filter": int(f), "layer": str(layer), "channel": int(c)}
                for f, layer, c in zip(
                    table["filter"], table["layer"], table["channel"], strict=True
                )
            ]
        )
        self.set_trait("changed_filters", rows)
        if rows:
            self.expanded = self._with_ancestors(self.expanded, [str(r["layer"]) for r in rows])

    def _show_layer(self, change: Bunch) -> None:
        """A layer selected anywhere (another view, user code) shows: its parents open."""
        parent = {n["name"]: n["parent"] for n in self.tree["nodes"]}.get(change.new)
        if parent:
            self.expanded = self._with_ancestors(self.expanded, [parent])

    def _with_ancestors(self, opened: list[str], layers: list[str]) -> list[str]:
        parent = {n["name"]: n["parent"] for n in self.tree["nodes"]}
        out = list(opened)
        for name in layers:
            node = name
            while node and node in parent:
                if node not in out:
                    out.append(node)
                node = parent[node]
        return out

    @request("filters")
    def _filters(
        self,
        layer: str,
        start: int | None = None,
        stop: int | None = None,
        columns: int | None = None,
        normalize: str | None = None,
    ) -> dict[str, Any]:
        """One layer's filters over time: ``filter_cosine`` rows at the level that fits.

        The rows travel as one byte per cell (:func:`encode_rows`) for the colour range
        ``normalize`` (default: the trait); ``_filter_rows`` gives the float values.
        """
        mode = self.normalize if normalize is None else normalize
        if mode not in NORMALIZE:
            raise InvalidSelectionError(f"normalize must be one of {list(NORMALIZE)}, got {mode!r}")
        rows = self._filter_rows(layer, start, stop, columns)
        codes, lo, hi = encode_rows(rows.values, mode)
        return {
            "layer": layer,
            "filters": np.asarray(rows["filter"].values, dtype=np.int64),
            "channels": np.asarray(rows["filter_channel"].values, dtype=np.int64),
            "x": np.asarray(rows["snapshot_step"].values, dtype=np.int64),
            "level": int(rows.attrs["level"]),
            "normalize": mode,
            "values": codes,
            "lo": lo,
            "hi": hi,
        }

    def _filter_rows(
        self,
        layer: str,
        start: int | None = None,
        stop: int | None = None,
        columns: int | None = None,
    ) -> xr.DataArray:
        """The float rows a ``filters`` request encodes: ``filter_rows`` of a checked request."""
        if not isinstance(layer, str) or layer not in self._layer_names:
            raise InvalidSelectionError(
                f"layer must be a layer name of this log, e.g. {self._layer_names[:4]}; "
                f"got {layer!r}"
            )
        cols = self._columns if columns is None else _whole("columns", columns)
        if not 2 <= cols <= 4 * self._columns:
            raise InvalidSelectionError(f"columns must be in 2..{4 * self._columns}, got {cols}")
        window = None
        if start is not None or stop is not None:
            window = check_window("window", (_whole("start", start), _whole("stop", stop)))
        return filter_rows(self._index, layer, time=self._time(window), columns=cols)

    # ------------------------------------------------------------------ validation
    @staticmethod
    def _choice(name: str, value: Any, choices: list[str] | tuple[str, ...]) -> Any:
        if value not in choices:
            raise InvalidSelectionError(f"{name} must be one of {list(choices)}, got {value!r}")
        return value

    @traitlets.validate("chart")
    def _valid_chart(self, proposal: Bunch) -> str:
        return str(self._choice("chart", proposal.value, CHARTS))

    @traitlets.validate("variable")
    def _valid_variable(self, proposal: Bunch) -> str:
        return str(self._choice("variable", proposal.value, tuple(VARIABLES)))

    @traitlets.validate("stat")
    def _valid_stat(self, proposal: Bunch) -> str:
        return str(self._choice("stat", proposal.value, self._stats))

    @traitlets.validate("normalize")
    def _valid_normalize(self, proposal: Bunch) -> str:
        return str(self._choice("normalize", proposal.value, NORMALIZE))

    @traitlets.validate("expanded")
    def _valid_expanded(self, proposal: Bunch) -> list[str]:
        bad = [n for n in proposal.value if n not in self._nodes]
        if bad:
            raise InvalidSelectionError(
                f"expanded holds tree nodes, e.g. {self._nodes[:4]}; {bad[:3]} are not"
            )
        return list(dict.fromkeys(proposal.value))

    @traitlets.validate("layer")
    def _valid_layer(self, proposal: Bunch) -> str | None:
        if proposal.value is not None and proposal.value not in self._layer_names:
            raise InvalidSelectionError(
                f"layer must be a layer name of this log, e.g. {self._layer_names[:4]}; "
                f"got {proposal.value!r}"
            )
        return proposal.value

    @traitlets.validate("filter_index")
    def _valid_filter(self, proposal: Bunch) -> int | None:
        value = proposal.value
        if value is not None and (isinstance(value, bool) or not 0 <= value < self._filter_count):
            raise InvalidSelectionError(
                f"filter_index is a position on the filter axis, 0..{self._filter_count - 1}; "
                f"got {value!r}"
            )
        return value
