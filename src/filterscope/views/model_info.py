"""ModelInfo: linked line charts of loss, error and learning rate over a training run."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import traitlets
import xarray as xr
from traitlets import Bunch, Dict, Int, List, Tuple, Unicode

from filterscope.errors import InvalidDataError, InvalidSelectionError
from filterscope.views._base import PAGE_WRITABLE, ViewWidget, require_log
from filterscope.views._serialization import ARRAY_SERIALIZATION
from filterscope.views.selection import Selection, check_window, link_selection, unique_steps

DEFAULT_MAX_POINTS = 2000
"""Per-step series longer than this are sent as min/max envelopes of about this many buckets."""


def _envelope_line(
    name: str, group: str, steps: np.ndarray, values: np.ndarray, max_points: int
) -> dict[str, Any]:
    """A per-step line: exact when short, else the exact min and max of each bucket of steps.

    Bucket ``i`` covers ``steps[starts[i] : starts[i + 1]]``; NaNs are skipped inside a bucket
    and a bucket of only NaNs stays NaN (a gap in the chart).
    """
    if len(steps) <= max_points:
        return {"name": name, "group": group, "x": steps, "y": values}
    size = -(-len(steps) // max_points)
    starts = np.arange(0, len(steps), size)
    return {
        "name": name,
        "group": group,
        "x": steps[starts],
        "lo": np.fmin.reduceat(values, starts),
        "hi": np.fmax.reduceat(values, starts),
    }


def _eval_sets(log: xr.Dataset) -> list[str]:
    """Names of the eval sets with per-snapshot ``<set>_loss`` / ``<set>_error``, in log order."""
    found: list[str] = []
    for name, var in log.data_vars.items():
        prefix, _, metric = str(name).rpartition("_")
        if var.dims == ("snapshot",) and metric in ("loss", "error") and prefix not in found:
            found.append(prefix)
    listed = [str(s) for s in np.atleast_1d(log.attrs.get("eval_sets", [])) if str(s) in found]
    return listed + [s for s in found if s not in listed]


def _series(log: xr.Dataset, max_points: int = DEFAULT_MAX_POINTS) -> dict[str, Any]:
    """Everything ModelInfo draws, as numpy arrays ready for the browser.

    This is the view's only data preparation: it reads 1-D variables and reduces long per-step
    series to exact min/max envelopes, and computes no statistics.
    """
    steps = np.asarray(log["step"].values, dtype=np.int64)
    snapshot_step = (
        np.asarray(log["snapshot_step"].values, dtype=np.int64)
        if "snapshot_step" in log.coords
        else np.zeros(0, dtype=np.int64)
    )
    eval_sets = _eval_sets(log)

    def per_step(name: str) -> np.ndarray | None:
        if name not in log.data_vars or log[name].dims != ("step",):
            return None
        return np.asarray(log[name].values, dtype=np.float64)

    def chart(key: str, title: str, train: str, metric: str | None) -> dict[str, Any] | None:
        lines = []
        values = per_step(train)
        if values is not None:
            # Per-step lines share the "train" colour; the lr line is named for what it is.
            name = "train" if metric else train
            lines.append(_envelope_line(name, "train", steps, values, max_points))
        for name in eval_sets if metric else []:
            var = f"{name}_{metric}"
            if var in log.data_vars:
                y = np.asarray(log[var].values, dtype=np.float64)
                lines.append(
                    {"name": name, "group": name, "x": snapshot_step, "y": y, "markers": True}
                )
        return {"key": key, "title": title, "lines": lines} if lines else None

    charts = [
        chart("loss", "Loss", "loss", "loss"),
        chart("error", "Error", "train_error", "error"),
        chart("lr", "Learning rate", "lr", None),
    ]

    if "step_epoch" in log.coords and len(steps):
        epoch = np.asarray(log["step_epoch"].values, dtype=np.int64)
        first = np.flatnonzero(np.r_[True, epoch[1:] != epoch[:-1]])
        epoch_first_step, epoch_at = steps[first], epoch[first]
    else:
        epoch_first_step = epoch_at = np.zeros(0, dtype=np.int64)

    all_steps = np.concatenate([steps, snapshot_step])
    step_range = [int(all_steps.min()), int(all_steps.max())] if len(all_steps) else [0, 0]
    return {
        "step_range": step_range,
        "snapshot_step": snapshot_step,
        "epoch_first_step": epoch_first_step,
        "epoch": epoch_at,
        "charts": [c for c in charts if c is not None],
    }


class ModelInfo(ViewWidget):
    """Linked line charts of loss, error and learning rate over a training run.

    Training loss and error are drawn per optimizer step (long runs as exact min/max envelopes),
    each eval set's loss and error per snapshot, and the learning rate per step. The charts
    share one time axis: hovering draws a vertical line on all of them, dragging zooms all of
    them, double-clicking zooms out, and clicking picks the nearest snapshot step (clicking a
    picked step again, or its chip, removes it). Each pick gets a coloured marker on every chart.

    Parameters
    ----------
    log : xarray.Dataset
        A filterscope log, as returned by :func:`filterscope.open_log`.
    selection : Selection, optional
        Shared selection to link ``picked_steps`` and ``time_window`` with; a new one if omitted.
        Give several views the same selection to link them.
    max_points : int, default 2000
        Per-step series longer than this are sent as min/max envelopes of at most this many
        buckets, which look the same at screen resolution.

    Attributes
    ----------
    picked_steps : list of int
        Picked iterations (optimizer steps) in pick order; read it, observe it or set it.
    time_window : tuple of (int, int) or None
        Visible ``(start, stop)`` step range; ``None`` shows the whole run.
    selection : Selection
        The selection this view is linked to.
    series : dict
        What the browser draws (read-only, from Python and from the page): step range, snapshot
        steps and the charts' lines.

    Raises
    ------
    InvalidDataError
        If ``log`` is not a Dataset, ``selection`` not a :class:`Selection`, or ``max_points``
        below 2.
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
    series = Dict(read_only=True).tag(sync=True, **ARRAY_SERIALIZATION)
    # The page sets only these two (clicks and zooms); everything else it receives is the kernel's.
    picked_steps = List(Int()).tag(sync=True, **{PAGE_WRITABLE: True})
    time_window = Tuple(Int(), Int(), default_value=None, allow_none=True).tag(
        sync=True, **{PAGE_WRITABLE: True}
    )

    # Set once linked; ipywidgets calls close() from __del__ even when __init__ raised.
    _unlink: Callable[[], None] | None = None

    def __init__(
        self,
        log: xr.Dataset,
        selection: Selection | None = None,
        *,
        max_points: int = DEFAULT_MAX_POINTS,
    ) -> None:
        log = require_log(log, ["loss"])
        if selection is not None and not isinstance(selection, Selection):
            raise InvalidDataError(
                f"selection must be a filterscope.views.Selection, got {type(selection).__name__}"
            )
        if not isinstance(max_points, int | np.integer) or max_points < 2:
            raise InvalidDataError(f"max_points must be an integer >= 2, got {max_points!r}")
        series = _series(log, int(max_points))
        self._step_range: tuple[int, int] = tuple(series["step_range"])  # type: ignore[assignment]
        # Set before the widget opens its comm, so the first message already carries the data.
        self.set_trait("series", series)
        super().__init__()
        self.selection = selection if selection is not None else Selection()
        self._unlink = link_selection(self.selection, self, ("picked_steps", "time_window"))

    @traitlets.validate("picked_steps")
    def _valid_picks(self, proposal: Bunch) -> list[int]:
        steps = unique_steps("picked_steps", proposal.value)
        lo, hi = self._step_range
        outside = [s for s in steps if not lo <= s <= hi]
        if outside:
            shown = ", ".join(map(str, outside[:5])) + (", …" if len(outside) > 5 else "")
            raise InvalidSelectionError(
                f"picked_steps must be steps of this run ({lo} to {hi}); got {shown}. "
                "Pick from log.snapshot_step or log.step"
            )
        return steps

    @traitlets.validate("time_window")
    def _valid_window(self, proposal: Bunch) -> tuple[int, int] | None:
        return check_window("time_window", proposal.value)

    def close(self) -> None:
        """Unlink from the selection and close the widget."""
        if self._unlink is not None:
            self._unlink()
            self._unlink = None
        super().close()
