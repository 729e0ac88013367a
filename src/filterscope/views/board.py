"""The dashboard: ModelInfo on top, then the layer, validation and cube views, one selection."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import ipywidgets
import xarray as xr

from filterscope.errors import InvalidParameterError
from filterscope.views._base import ViewWidget, require_log
from filterscope.views._live import DEFAULT_INTERVAL, Follower, check_interval, followed_path
from filterscope.views.cube import CubeView
from filterscope.views.layer import LayerView
from filterscope.views.model_info import ModelInfo
from filterscope.views.selection import Selection
from filterscope.views.validation import ValidationView

#: The views a dashboard can hold, by name, in the order they stack.
VIEWS: dict[str, Callable[..., ViewWidget]] = {
    "model_info": ModelInfo,
    "layer": LayerView,
    "validation": ValidationView,
    "cube": CubeView,
}


class Dashboard(Follower, ipywidgets.VBox):
    """DeepTracker's views of one log, stacked and linked by one :class:`Selection`.

    ModelInfo (loss, error, learning rate) on top, then :class:`LayerView`,
    :class:`ValidationView` and :class:`CubeView`, all on one time axis: hovering, brushing and
    zooming one moves the others in the browser (the views share the selection's ``link_id``),
    and picks, layer, filter, class and sample go through :attr:`selection` to Python, where
    ``observe`` and ``ipywidgets.link`` see them. Each view is also usable alone.

    Parameters
    ----------
    log : xarray.Dataset
        A filterscope log (:func:`filterscope.open_log`).
    selection : Selection, optional
        The shared selection; a new one if omitted. Pass one to link the dashboard with views
        elsewhere in the notebook.
    views : sequence of str, default ("model_info", "layer", "validation", "cube")
        Which views to show, in this order. Views whose data the log lacks (e.g. a log recorded
        without evaluation sets has nothing for ValidationView) must be left out.
    live : bool, default False
        Follow a run that is still training: show each snapshot as it commits
        (:meth:`follow`). The same as calling ``follow(interval)`` after opening it.
    interval : float, default 1.0
        Seconds between two looks at the log's commit record, when ``live``.
    **options : dict
        Keyword arguments of one view, by its name: ``layer={"max_points": 1000}``.

    Attributes
    ----------
    selection : Selection
        What is selected, shared by every view.
    views : dict of str to ViewWidget
        The views, by name.

    Raises
    ------
    InvalidParameterError
        Unknown view names, repeated names, options for a view that is not shown, or ``live``
        with a log not opened from its path or a bad ``interval``.

    Examples
    --------
    >>> import filterscope as fs
    >>> log = fs.open_log("runs/demo/log")  # doctest: +SKIP
    >>> board = fs.dashboard(log)  # doctest: +SKIP
    >>> board.selection.picked_steps = [120]  # every view marks step 120  # doctest: +SKIP
    >>> live = fs.dashboard(fs.open_log("runs/training"), live=True)  # doctest: +SKIP
    >>> live.stop()  # or live.close()  # doctest: +SKIP
    """

    def __init__(
        self,
        log: xr.Dataset,
        *,
        selection: Selection | None = None,
        views: Sequence[str] = tuple(VIEWS),
        live: bool = False,
        interval: float = DEFAULT_INTERVAL,
        **options: dict[str, Any],
    ) -> None:
        log = require_log(log)
        if live:
            followed_path(self, log)
            check_interval(interval)
        names = [views] if isinstance(views, str) else list(views)
        unknown = [name for name in names if name not in VIEWS]
        if unknown or len(set(names)) != len(names) or not names:
            raise InvalidParameterError(
                f"views must be distinct names from {list(VIEWS)}, got {list(names)}."
            )
        extra = sorted(set(options) - set(names))
        if extra:
            raise InvalidParameterError(
                f"options given for views that are not shown: {extra}; the dashboard shows {names}."
            )
        if selection is None:
            selection = Selection()
        elif not isinstance(selection, Selection):
            raise InvalidParameterError(
                f"selection must be a filterscope Selection, got {type(selection).__name__}."
            )
        self.selection = selection
        self.views: dict[str, ViewWidget] = {}
        try:
            for name in names:
                self.views[name] = VIEWS[name](log, selection=selection, **options.get(name, {}))
        except BaseException:
            for view in self.views.values():
                view.close()
            raise
        super().__init__(children=list(self.views.values()))
        self.add_class("filterscope-dashboard")
        self._log = log
        if live:
            self.follow(interval)

    def _followed_views(self) -> list[Any]:
        return list(self.views.values())

    def close(self) -> None:
        """Stop following, close every view (unlinking it from the selection), then itself."""
        self.stop()
        # getattr: ipywidgets closes a widget from __del__, also one whose __init__ refused its
        # arguments before any view existed.
        for view in getattr(self, "views", {}).values():
            view.close()
        super().close()

    def __repr__(self) -> str:
        return f"Dashboard(views={list(self.views)}, selection={self.selection!r})"


def dashboard(log: xr.Dataset, **kwargs: Any) -> Dashboard:
    """The dashboard of ``log``: ``Dashboard(log, **kwargs)``; see :class:`Dashboard`.

    ``dashboard(log, live=True)`` follows a run that is still training.
    """
    return Dashboard(log, **kwargs)
