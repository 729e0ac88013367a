"""CubeView: DeepTracker's cube, three heat-map faces of a training run that share their axes."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import traitlets
import xarray as xr
from traitlets import Bunch, Dict, Int, List, Tuple, Unicode, Union

from filterscope.dynamics.cube import cube_faces, flags_in_buckets
from filterscope.dynamics.unstable import PRESETS
from filterscope.errors import InvalidParameterError, InvalidSelectionError
from filterscope.index import Index
from filterscope.index.summaries import class_accuracy, layer_mean_abs
from filterscope.views._base import PAGE_WRITABLE, ViewWidget, request, require_log
from filterscope.views._data import index_of, stored_counts
from filterscope.views._serialization import ARRAY_SERIALIZATION
from filterscope.views.selection import Selection, StepValidators, check_window

DEFAULT_COLUMNS = 600
"""Time buckets of the overview of a long run (the index level that fits this many columns)."""
EXACT_SNAPSHOTS = 2048
"""A run of at most this many snapshots arrives whole at level 0 (every snapshot, its exact
values) unless ``columns`` is given: the page then zooms it without asking the kernel."""
DEFAULT_PAGE = 40
"""Classes sent at once; the page asks for other classes with the ``faces`` request."""
MAX_COLUMNS = 4096
MAX_PAGE = 200
MAX_PICKS = 32
"""A click picks at most this many of a class's flagged snapshots (the first ones)."""


def _whole(name: str, value: Any, lo: int, hi: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise InvalidSelectionError(f"{name} must be a whole number, got {value!r}")
    if value < lo or (hi is not None and value > hi):
        upper = "" if hi is None else f" to {hi}"
        raise InvalidSelectionError(f"{name} must be from {lo}{upper}, got {value}")
    return int(value)


class _Cube:
    """What the cube draws: the index's layer and class summaries plus ``cube_faces``."""

    def __init__(self, log: xr.Dataset, faces: xr.Dataset, index: Index) -> None:
        self.index = index
        self.faces = faces
        overview = layer_mean_abs(self.index, "grad_stat", level=self.index.levels("grad_stat"))
        self.layer_labels = np.asarray(overview["layer"].values)
        self.layer_names = [str(n) for n in overview["layer_name"].values]
        self.class_labels = np.asarray(faces["class"].values)
        names = log["class_name"].values if "class_name" in log.coords else self.class_labels
        self.class_names = [str(n) for n in np.asarray(names)]
        self.order = np.asarray(faces["class_order"].values, dtype=np.int64)
        self.snapshots = np.asarray(log["snapshot"].values)
        self.snapshot_step = np.asarray(log["snapshot_step"].values, dtype=np.int64)
        self.correlation = np.asarray(
            faces["correlation"].sel(layer=self.layer_labels).transpose("layer", "class").values,
            dtype=np.int32,
        )
        self.flagged = np.asarray(faces["flagged"].transpose("snapshot", "class").values)
        steps = self.snapshot_step
        if "step" in log.dims:
            steps = np.concatenate([steps, np.asarray(log["step"].values, dtype=np.int64)])
        self.step_range = [int(steps.min()), int(steps.max())] if steps.size else [0, 0]

    def meta(self) -> dict[str, Any]:
        return {
            "layers": self.layer_names,
            "n_classes": len(self.class_labels),
            "step_range": self.step_range,
            "correlation_max": int(self.correlation.max(initial=0)),
            "k": int(self.faces.attrs["k"]),
            "metric": str(self.faces.attrs["metric"]),
            "preset": str(self.faces.attrs["preset"]),
        }

    def window_labels(self, start: int | None, stop: int | None) -> slice | None:
        """Snapshot labels of the snapshots whose step is in ``start..stop``.

        The whole run is the log's snapshots, not all the index holds: the index follows the
        log's store, which a run still training (or a ``sel`` of the log) may have outgrown.
        """
        if start is None or stop is None:
            return slice(self.snapshots[0], self.snapshots[-1]) if len(self.snapshots) else None
        first = int(np.searchsorted(self.snapshot_step, start, "left"))
        last = int(np.searchsorted(self.snapshot_step, stop, "right")) - 1
        if last < first:
            # A window between two snapshots shows the snapshot before it.
            first = last = max(min(last, len(self.snapshots) - 1), 0)
        return slice(self.snapshots[first], self.snapshots[last])

    def view(
        self, start: int | None, stop: int | None, offset: int, count: int, columns: int
    ) -> dict[str, Any]:
        time = self.window_labels(start, stop)
        front = layer_mean_abs(self.index, "grad_stat", time=time, columns=columns)
        page = self.order[offset : offset + count]
        labels = self.class_labels[page]
        top = class_accuracy(self.index, time=time, columns=columns, class_=list(labels))
        b_start = np.asarray(front["bucket_start"].values)
        b_stop = np.asarray(front["bucket_stop"].values)
        at = pd.Index(self.snapshots)
        flag_sel = self.flagged[:, page]
        steps: list[np.ndarray] = [
            self.snapshot_step[np.flatnonzero(flag_sel[:, i])] for i in range(len(page))
        ]
        return {
            "level": int(front.attrs["level"]),
            "bucket_step_start": self.snapshot_step[at.get_indexer(b_start)],
            "bucket_step_stop": self.snapshot_step[at.get_indexer(b_stop)],
            "front": np.asarray(
                front.sel(agg="mean").transpose("layer", ...).values, dtype=np.float32
            ),
            "offset": offset,
            "classes": [
                c.item() if hasattr(c, "item") else c for c in labels
            ],  # JSON labels (int or str)
            "class_names": [self.class_names[i] for i in page],
            "top": np.asarray(top.sel(agg="mean").transpose("class", ...).values, np.float32),
            "flags": flags_in_buckets(self.faces["flagged"], b_start, b_stop, labels),
            "correlation": np.ascontiguousarray(self.correlation[:, page]),
            "flag_steps": np.concatenate(steps) if steps else np.zeros(0, np.int64),
            "flag_offsets": np.cumsum([0, *map(len, steps)]).astype(np.int64),
        }


class CubeView(StepValidators, ViewWidget):
    """DeepTracker's cube: layers × iterations, classes × iterations and layers × classes.

    Three heat maps drawn on canvas, unfolded around the front face: the **front** face shows
    each layer's mean absolute gradient per weight over time (rows: layers, normalised per
    layer), the **top** face each class's accuracy over the same time buckets (rows: classes,
    with a mark where the class is flagged as unstable), and the **right** face the layer-class
    correlation (:func:`filterscope.dynamics.cube.cube_faces`: distinct top-changed filters of
    the layer over the class's flagged snapshots, on a sequential blue scale). Time buckets come
    from the log's index at the level that fits the face's width; zooming (drag, or shift+wheel,
    on the front or top face) re-queries the window and moves linked views through the
    selection. Scrolling the front or right face scrolls the layers of both; scrolling the top
    face scrolls its classes and the right face's columns; classes come in pages of
    ``page_size``, most correlated first. Clicking a cell selects its layer and class and picks
    the class's flagged iterations.

    Parameters
    ----------
    log : xarray.Dataset
        A filterscope log (:func:`filterscope.open_log`) with ``grad_stat``, ``correct`` and a
        per-filter change metric.
    selection : Selection, optional
        Shared selection (``layer``, ``class_``, ``picked_steps``, ``time_window``).
    columns : int, optional
        Time buckets of the first picture. Default: every snapshot (level 0) for a run of at
        most 2,048 snapshots, which the page then zooms without asking the kernel; else 600
        buckets, and the page asks for as many as it has pixels.
    page_size : int, default 40
        Classes sent at once (1 to 200).
    k, metric, preset
        Passed to :func:`~filterscope.dynamics.cube.cube_faces`.

    Attributes
    ----------
    layer : str or None
        Selected layer (a ``layer_name``).
    class_ : int or str or None
        Selected class (a label of the ``class`` coordinate).
    picked_steps : list of int
        Picked iterations; a click sets the class's flagged snapshot steps (at most 32).
    time_window : tuple of (int, int) or None
        Visible step range.
    meta, faces : dict
        What the page draws (read-only): layer names, class count, the correlation's maximum;
        the first page of classes over the whole run (shape in ``docs/api.md``).

    Raises
    ------
    InvalidParameterError
        On a bad ``columns``, ``page_size`` or ``selection``.
    LogFormatError
        If the log lacks what the cube draws.
    InvalidSelectionError
        When ``layer``/``class_`` is not in the log or a pick is outside the run.

    Examples
    --------
    >>> import filterscope as fs
    >>> view = fs.CubeView(fs.open_log("runs/demo"))  # doctest: +SKIP
    >>> view.layer, view.class_  # after a click on the right face  # doctest: +SKIP
    """

    _view = Unicode("cube", read_only=True).tag(sync=True)
    _selection_traits = ("layer", "class_", "picked_steps", "time_window")
    meta = Dict(read_only=True).tag(sync=True)
    faces = Dict(read_only=True).tag(sync=True, **ARRAY_SERIALIZATION)
    layer = Unicode(default_value=None, allow_none=True).tag(sync=True, **{PAGE_WRITABLE: True})
    class_ = Union([Int(), Unicode()], default_value=None, allow_none=True).tag(
        sync=True, **{PAGE_WRITABLE: True}
    )
    picked_steps = List(Int()).tag(sync=True, **{PAGE_WRITABLE: True})
    time_window = Tuple(Int(), Int(), default_value=None, allow_none=True).tag(
        sync=True, **{PAGE_WRITABLE: True}
    )

    def __init__(
        self,
        log: xr.Dataset,
        *,
        selection: Selection | None = None,
        columns: int | None = None,
        page_size: int = DEFAULT_PAGE,
        k: int = 10,
        metric: str = "filter_cosine",
        preset: str = "sustained",
    ) -> None:
        log = require_log(log, ["grad_stat", "correct", metric, "snapshot_step"])
        for name, value, hi in (
            ("columns", DEFAULT_COLUMNS if columns is None else columns, MAX_COLUMNS),
            ("page_size", page_size, MAX_PAGE),
        ):
            if isinstance(value, bool) or not isinstance(value, int | np.integer):
                raise InvalidParameterError(f"{name} must be an integer, got {value!r}")
            if not 1 <= value <= hi:
                raise InvalidParameterError(f"{name} must be from 1 to {hi}, got {value}")
        self._page_size = int(page_size)
        self._options: dict[str, Any] = {
            "k": k,
            "metric": metric,
            "preset": preset,
            # None: every snapshot of a short run, chosen anew for each (live) reload.
            "columns": None if columns is None else int(columns),
        }
        self._load(log)
        super().__init__(selection=selection)

    def _load(self, log: xr.Dataset) -> None:
        options = self._options
        index = index_of(log)
        preset = options["preset"]
        j = PRESETS[preset][0] if preset in PRESETS else None
        counts = None if j is None else stored_counts(log, index, j)
        faces = cube_faces(
            log,
            k=options["k"],
            metric=options["metric"],
            preset=preset,
            counts=counts,
            # Stored with the counts of the whole run, so valid where they are.
            correlation=None
            if counts is None
            else index.cube_correlation(options["k"], options["metric"], preset),
        )
        cube = _Cube(log, faces, index)
        self._log, self._cube = log, cube
        lo, hi = cube.step_range
        self._step_range = (int(lo), int(hi))  # picks outside it are refused
        self._all_layers = {str(name) for name in log["layer_name"].values}
        self.set_trait("meta", {**cube.meta(), "page_size": self._page_size})
        columns = options["columns"]
        if columns is None:
            n = int(log.sizes["snapshot"])
            columns = max(n, 1) if n <= EXACT_SNAPSHOTS else DEFAULT_COLUMNS
        self.set_trait("faces", cube.view(None, None, 0, self._page_size, columns))

    def _reload(self, log: xr.Dataset) -> None:
        self._load(require_log(log, ["grad_stat", "correct", self._options["metric"]]))

    @request("faces")
    def _faces(
        self,
        start: int | None = None,
        stop: int | None = None,
        offset: int = 0,
        count: int = DEFAULT_PAGE,
        columns: int = DEFAULT_COLUMNS,
    ) -> dict[str, Any]:
        """The faces over steps ``start..stop`` (whole run when None) for a page of classes."""
        if (start is None) != (stop is None):
            raise InvalidSelectionError("give both start and stop, or neither")
        if start is not None:
            check_window("window", (_whole("start", start, 0), _whole("stop", stop, 0)))
            lo, hi = self._cube.step_range
            if stop < lo or start > hi:  # type: ignore[operator]
                raise InvalidSelectionError(
                    f"the window ({start}, {stop}) is outside this run's snapshots {lo} to {hi}"
                )
        n = len(self._cube.class_labels)
        offset = _whole("offset", offset, 0, max(n - 1, 0))
        count = _whole("count", count, 1, MAX_PAGE)
        columns = _whole("columns", columns, 1, MAX_COLUMNS)
        return self._cube.view(start, stop, offset, count, columns)

    @traitlets.validate("layer")
    def _valid_layer(self, proposal: Bunch) -> str | None:
        value = proposal.value
        # Any layer of the log: a layer without statistics (normalisation) that another view
        # selects is simply not outlined here, so a shared selection never breaks on it.
        if value is not None and value not in self._all_layers:
            raise InvalidSelectionError(
                f"layer {value!r} is not a layer of the log; its layers include "
                f"{sorted(self._all_layers)[:8]}"
            )
        return value

    @traitlets.validate("class_")
    def _valid_class(self, proposal: Bunch) -> int | str | None:
        value = proposal.value
        if value is None:
            return None
        labels = self._cube.class_labels
        found = np.flatnonzero(labels.astype(str) == str(value))
        if found.size == 0:
            raise InvalidSelectionError(
                f"class {value!r} is not a class of this log; its labels are {labels[:8].tolist()}…"
            )
        label = labels[found[0]]
        return label.item() if hasattr(label, "item") else label  # type: ignore[no-any-return]

    def flagged_steps(self, class_: Any) -> list[int]:
        """Snapshot steps where ``class_`` is flagged (what a click on its cells picks)."""
        labels = self._cube.class_labels
        found = np.flatnonzero(labels.astype(str) == str(class_))
        if found.size == 0:
            raise InvalidSelectionError(f"class {class_!r} is not a class of this log")
        rows = np.flatnonzero(self._cube.flagged[:, found[0]])
        return [int(s) for s in self._cube.snapshot_step[rows]]
