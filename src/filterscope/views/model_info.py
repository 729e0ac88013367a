"""ModelInfo: linked line charts of loss, error and learning rate over a training run."""

from __future__ import annotations

from typing import Any

import numpy as np
import xarray as xr
from traitlets import Dict, Int, List, Tuple, Unicode

from filterscope.errors import InvalidParameterError, InvalidSelectionError
from filterscope.index import Index
from filterscope.views._base import PAGE_WRITABLE, ViewWidget, request, require_log
from filterscope.views._data import eval_set_names, index_of
from filterscope.views._serialization import ARRAY_SERIALIZATION
from filterscope.views.selection import Selection, StepValidators, check_window

DEFAULT_MAX_POINTS = 2000
"""Columns a chart asks the index for: longer windows come as min/max buckets of a coarser level."""

#: (key, title, per-step variable, metric of the eval-set lines or None)
_CHARTS = (
    ("loss", "Loss", "loss", "loss"),
    ("error", "Error", "train_error", "error"),
    ("lr", "Learning rate", "lr", None),
)


def _as_int(values: Any) -> np.ndarray:
    return np.asarray(values, dtype=np.int64)


class _Charts:
    """What ModelInfo draws, read from the index: the overview and any zoomed window."""

    def __init__(self, log: xr.Dataset, columns: int) -> None:
        self.columns = columns
        self.steps = _as_int(log["step"].values)
        self.snapshot_step = (
            _as_int(log["snapshot_step"].values)
            if "snapshot_step" in log.coords
            else np.zeros(0, dtype=np.int64)
        )
        self.snapshots = (
            _as_int(log["snapshot"].values) if "snapshot" in log.dims else self.snapshot_step[:0]
        )
        eval_sets = eval_set_names(log)
        # (key, title, [(variable, name, group, markers)])
        self.specs: list[tuple[str, str, list[tuple[str, str, str, bool]]]] = []
        for key, title, train, metric in _CHARTS:
            lines = []
            if train in log.data_vars and log[train].dims == ("step",):
                # Per-step lines share the "train" colour; the lr line is named for what it is.
                lines.append((train, "train" if metric else train, "train", False))
            for name in eval_sets if metric else []:
                var = f"{name}_{metric}"
                if var in log.data_vars and log[var].dims == ("snapshot",):
                    lines.append((var, name, name, True))
            if lines:
                self.specs.append((key, title, lines))
        variables = [var for _, _, lines in self.specs for var, *_ in lines]
        self.index: Index | None = (
            index_of(log, variables) if len(self.steps) and variables else None
        )
        all_steps = np.concatenate([self.steps, self.snapshot_step])
        self.step_range = (int(all_steps.min()), int(all_steps.max())) if len(all_steps) else (0, 0)
        if "step_epoch" in log.coords and len(self.steps):
            epoch = _as_int(log["step_epoch"].values)
            first = np.flatnonzero(np.r_[True, epoch[1:] != epoch[:-1]])
            self.epoch_first_step, self.epoch = self.steps[first], epoch[first]
        else:
            self.epoch_first_step = self.epoch = np.zeros(0, dtype=np.int64)

    def overview(self) -> dict[str, Any]:
        """The ``series`` trait: step range, snapshot steps, epochs and every chart's lines."""
        return {
            "step_range": list(self.step_range),
            "snapshot_step": self.snapshot_step,
            "epoch_first_step": self.epoch_first_step,
            "epoch": self.epoch,
            "charts": [
                {"key": key, "title": title, "lines": self.lines(lines, None)}
                for key, title, lines in self.specs
            ],
        }

    def window(self, start: int, stop: int) -> dict[str, Any]:
        """The lines of every chart over steps ``start..stop``, at the level that fits."""
        return {
            "window": [start, stop],
            "charts": [
                {"key": key, "lines": self.lines(lines, (start, stop))}
                for key, _, lines in self.specs
            ],
        }

    def lines(
        self, specs: list[tuple[str, str, str, bool]], window: tuple[int, int] | None
    ) -> list[dict[str, Any]]:
        out = []
        for var, name, group, markers in specs:
            at = self.snapshot_step if markers else self.steps
            line: dict[str, Any] = {"name": name, "group": group}
            if markers:
                line["markers"] = True
            out.append({**line, **self._query(var, at, window, by_snapshot=markers)})
        return out

    def _query(
        self,
        var: str,
        at: np.ndarray,
        window: tuple[int, int] | None,
        *,
        by_snapshot: bool,
    ) -> dict[str, Any]:
        """One line from the index: exact ``y`` at level 0, else ``lo``/``hi`` per bucket.

        A window starts at the entry at or before its start and ends one entry beyond its stop,
        the points a chart needs to draw its line to both edges.
        """
        if self.index is None or len(at) == 0:
            return {"x": at[:0], "y": np.zeros(0, dtype=np.float32), "level": 0}
        first, last = 0, len(at) - 1
        if window is not None:
            first = max(int(np.searchsorted(at, window[0], "right")) - 1, 0)
            last = min(int(np.searchsorted(at, window[1], "right")), len(at) - 1)
        # Snapshot variables are indexed by snapshot number; per-step ones by step label.
        labels = self.snapshots if by_snapshot else at
        q = self.index.query(
            var, time=slice(int(labels[first]), int(labels[last])), columns=self.columns
        )
        x = _as_int(q["snapshot_step"].values if by_snapshot else q["bucket_start"].values)
        level = int(q.attrs["level"])
        if level == 0:
            return {"x": x, "y": q.sel(agg="mean").values, "level": 0}
        return {
            "x": x,
            "lo": q.sel(agg="min").values,
            "hi": q.sel(agg="max").values,
            "level": level,
        }


class ModelInfo(StepValidators, ViewWidget):
    """Linked line charts of loss, error and learning rate over a training run.

    Training loss and error are drawn per optimizer step, each eval set's loss and error per
    snapshot, and the learning rate per step; all of it comes from the log's index. A long run
    arrives as exact min/max buckets that fill ``max_points`` columns; zooming in asks the view
    for the window (a request), which answers at the finer level, down to the raw values. The
    charts share one time axis: hovering draws a vertical line on all of them, dragging zooms
    all of them, double-clicking zooms out, and clicking picks the nearest snapshot step
    (clicking a picked step again, or its chip, removes it). Each pick gets a coloured marker on
    every chart.

    Parameters
    ----------
    log : xarray.Dataset
        A filterscope log, as returned by :func:`filterscope.open_log` (also after ``sel`` or
        ``isel`` of a step or snapshot range): it is drawn from the index in its store, over the
        steps it holds. A Dataset made in memory is drawn from a private index of its values.
    selection : Selection, optional
        Shared selection to link ``picked_steps`` and ``time_window`` with; a new one if omitted.
        Give several views the same selection to link them (in the page too: hover and zoom).
    max_points : int, default 2000
        Columns asked of the index: a window with more steps than this arrives as min/max
        buckets (at most this many), which look the same at screen resolution.

    Attributes
    ----------
    picked_steps : list of int
        Picked iterations (optimizer steps) in pick order; read it, observe it or set it.
    time_window : tuple of (int, int) or None
        Visible ``(start, stop)`` step range; ``None`` shows the whole run.
    selection : Selection
        The selection this view is linked to.
    series : dict
        The overview the browser draws (read-only, from Python and from the page): step range,
        snapshot steps, epochs and the charts' lines; the shape is in ``docs/api.md``.

    Raises
    ------
    InvalidDataError
        If ``log`` is not a Dataset.
    InvalidParameterError
        If ``selection`` is not a :class:`Selection` or ``max_points`` is below 2.
    LogFormatError
        If ``log`` is not a filterscope log or has no ``loss``.
    InvalidSelectionError
        When ``picked_steps`` or ``time_window`` is set to steps outside the run, negative steps
        or a window whose start is not below its stop; the previous value stays. The same
        values from the page are refused too, and the page is sent back the kept value.

    Examples
    --------
    >>> import filterscope as fs
    >>> log = fs.open_log("runs/demo")  # doctest: +SKIP
    >>> view = fs.ModelInfo(log)  # doctest: +SKIP
    >>> view  # doctest: +SKIP
    >>> view.picked_steps = [int(log.snapshot_step[3])]  # doctest: +SKIP
    >>> view.observe(lambda change: print(change.new), "picked_steps")  # doctest: +SKIP
    """

    _view = Unicode("model_info", read_only=True).tag(sync=True)
    _selection_traits = ("picked_steps", "time_window")
    series = Dict(read_only=True).tag(sync=True, **ARRAY_SERIALIZATION)
    # The page sets only these two (clicks and zooms); everything else it receives is the kernel's.
    picked_steps = List(Int()).tag(sync=True, **{PAGE_WRITABLE: True})
    time_window = Tuple(Int(), Int(), default_value=None, allow_none=True).tag(
        sync=True, **{PAGE_WRITABLE: True}
    )

    def __init__(
        self,
        log: xr.Dataset,
        *,
        selection: Selection | None = None,
        max_points: int = DEFAULT_MAX_POINTS,
    ) -> None:
        log = require_log(log, ["loss"])
        if (
            isinstance(max_points, bool)
            or not isinstance(max_points, int | np.integer)
            or max_points < 2
        ):
            raise InvalidParameterError(
                f"max_points must be an integer >= 2 (columns of the charts), got {max_points!r}"
            )
        # Set before the widget opens its comm, so the first message already carries the data.
        self._load(log, int(max_points))
        super().__init__(selection=selection)

    def _load(self, log: xr.Dataset, columns: int) -> None:
        charts = _Charts(log, columns)
        self._log, self._charts = log, charts
        lo, hi = charts.step_range
        self._step_range = (int(lo), int(hi))  # picks outside it are refused
        self.set_trait("series", charts.overview())

    def _reload(self, log: xr.Dataset) -> None:
        self._load(require_log(log, ["loss"]), self._charts.columns)

    @request("window")
    def _window(self, start: int, stop: int) -> dict[str, Any]:
        """Every chart's lines over steps ``start..stop``, as fine as ``max_points`` allows."""
        if any(isinstance(v, bool) or not isinstance(v, int) for v in (start, stop)):
            raise InvalidSelectionError(
                f"a window is two whole steps (start, stop), got {start!r}, {stop!r}"
            )
        check_window("window", (start, stop))
        lo, hi = self._charts.step_range
        if stop < lo or start > hi:
            raise InvalidSelectionError(
                f"the window ({start}, {stop}) is outside this run's steps {lo} to {hi}"
            )
        return self._charts.window(start, stop)
