"""The selection every view shares: picked iterations, a time window, a layer, filter, class, sample.

A :class:`Selection` is plain Python state (a :class:`traitlets.HasTraits`), so user code can
``observe`` it and set it, and several views given the same instance stay linked: each view
links its own synced traits to it with :func:`link_selection`. Hover, brush and the zoom in
progress stay in the browser (linked there through :attr:`Selection.link_id`); only these
semantic choices travel through Python.

Labels and positions are kept apart as xarray's ``sel`` and ``isel`` keep them: a trait named
after a dimension holds a *label* of it (``layer`` is a ``layer_name``, ``class_`` a label of the
``class`` coordinate), a trait ending in ``_index`` holds a *position* along it (``filter_index``
on the flat ``filter`` axis, ``sample_index`` on ``sample``). :meth:`Selection.isel` turns the
whole selection into positions for a given log.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np
import traitlets
import xarray as xr
from traitlets import Bunch, HasTraits, Int, List, Tuple, Unicode, Union

from filterscope.errors import InvalidSelectionError


def unique_steps(name: str, steps: Iterable[int]) -> list[int]:
    """Validate a list of steps: non-negative integers, each kept once, in the order first given.

    Parameters
    ----------
    name : str
        Trait name, for the error message.
    steps : iterable of int
        Steps in pick order; repeats are dropped.

    Returns
    -------
    list of int
        The steps without repeats, each where it first appeared.

    Raises
    ------
    InvalidSelectionError
        If a step is negative or a bool (JSON ``true`` from the page would otherwise be step 1).

    Examples
    --------
    >>> unique_steps("picked_steps", [30, 10, 30, 20])
    [30, 10, 20]
    """
    steps = list(steps)
    bad = [step for step in steps if isinstance(step, bool) or step < 0]
    if bad:
        shown = ", ".join(map(repr, bad[:5])) + (", …" if len(bad) > 5 else "")
        raise InvalidSelectionError(
            f"{name} holds optimizer steps, whole numbers which count from 0; got {shown}. "
            "Pick steps of the log, such as int(log.snapshot_step[i])"
        )
    # A dict keeps the first of equal keys, in insertion order, and finds repeats by hash: linear
    # in len(steps), where testing membership in the growing list was quadratic.
    return list(dict.fromkeys(steps))


def check_window(name: str, window: tuple[int, int] | None) -> tuple[int, int] | None:
    """Validate a ``(start, stop)`` step window (``None`` means the whole run).

    Raises
    ------
    InvalidSelectionError
        Unless ``0 <= start < stop`` (bools are refused as not steps).
    """
    if window is None:
        return None
    if any(isinstance(bound, bool) for bound in window) or not 0 <= window[0] < window[1]:
        raise InvalidSelectionError(
            f"{name} must be (start, stop) with 0 <= start < stop, or None for the whole run; "
            f"got {window}"
        )
    return window


def check_picks(name: str, steps: Any, step_range: Sequence[int]) -> list[int]:
    """:func:`unique_steps` of ``steps``, all within a run's ``(first, last)`` step range.

    Raises
    ------
    InvalidSelectionError
        For steps that are not non-negative integers or lie outside the run.
    """
    picked = unique_steps(name, steps)
    lo, hi = step_range
    outside = [s for s in picked if not lo <= s <= hi]
    if outside:
        shown = ", ".join(map(str, outside[:5])) + (", …" if len(outside) > 5 else "")
        raise InvalidSelectionError(
            f"{name} must be steps of this run ({lo} to {hi}); got {shown}. "
            "Pick from log.snapshot_step or log.step"
        )
    return picked


class StepValidators:
    """The ``picked_steps`` and ``time_window`` validators of every view with a time axis.

    A view mixes this in before its widget base and gives ``_step_range``: the run's first and
    last snapshot step, outside which a pick is refused.
    """

    _step_range: tuple[int, int]

    @traitlets.validate("picked_steps")
    def _valid_picks(self, proposal: Bunch) -> list[int]:
        return check_picks("picked_steps", proposal.value, self._step_range)

    @traitlets.validate("time_window")
    def _valid_window(self, proposal: Bunch) -> tuple[int, int] | None:
        return check_window("time_window", proposal.value)


class Selection(HasTraits):
    """What the user has selected, shared by every view it is given to.

    Traits named after a dimension hold labels (as ``Dataset.sel`` takes them); traits ending in
    ``_index`` hold positions (as ``Dataset.isel`` takes them).

    Parameters
    ----------
    picked_steps : list of int, default []
        Picked iterations (optimizer steps, labels of ``step``) in pick order; repeats dropped.
    time_window : tuple of (int, int) or None, default None
        Visible ``(start, stop)`` step range; ``None`` is the whole run.
    layer : str or None
        Selected layer, by name (a value of ``log.layer_name``).
    filter_index : int or None
        Selected filter, by position on the log's flat ``filter`` axis.
    class_ : int, str or None
        Selected class, by label (a value of ``log["class"]``); the trailing underscore avoids
        the keyword.
    sample_index : int or None
        Selected sample, by position on the ``sample`` axis of the primary eval set.

    Attributes
    ----------
    link_id : str
        Random id, read-only: views given this selection send it to the page, which links their
        hover, brush and zoom in the browser.

    Examples
    --------
    >>> from filterscope.views import Selection
    >>> sel = Selection(picked_steps=[120, 40, 120])
    >>> sel.picked_steps
    [120, 40]
    >>> seen = []
    >>> sel.observe(lambda change: seen.append(change.new), "layer")
    >>> sel.layer = "conv1"
    >>> seen
    ['conv1']
    """

    picked_steps = List(Int())
    time_window = Tuple(Int(), Int(), default_value=None, allow_none=True)
    layer = Unicode(default_value=None, allow_none=True)
    filter_index = Int(default_value=None, allow_none=True)
    class_ = Union([Int(), Unicode()], default_value=None, allow_none=True)
    sample_index = Int(default_value=None, allow_none=True)
    link_id = Unicode(read_only=True)

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.set_trait("link_id", uuid.uuid4().hex)

    @traitlets.validate("picked_steps")
    def _valid_picks(self, proposal: Bunch) -> list[int]:
        return unique_steps("picked_steps", proposal.value)

    @traitlets.validate("time_window")
    def _valid_window(self, proposal: Bunch) -> tuple[int, int] | None:
        return check_window("time_window", proposal.value)

    @traitlets.validate("filter_index", "sample_index")
    def _valid_index(self, proposal: Bunch) -> int | None:
        if proposal.value is not None and (isinstance(proposal.value, bool) or proposal.value < 0):
            raise InvalidSelectionError(
                f"{proposal.trait.name} is a position along a log dimension, counted from 0; "
                f"got {proposal.value!r}"
            )
        return proposal.value

    def isel(self, log: xr.Dataset) -> dict[str, int]:
        """Positions of the selected layer, filter, class and sample in ``log``, for ``isel``.

        Only what is selected appears; labels are looked up in ``log`` (``layer_name``,
        ``class``).

        Raises
        ------
        InvalidSelectionError
            If a label is not in ``log`` or a position is beyond its dimension.

        Examples
        --------
        >>> import xarray as xr
        >>> log = xr.Dataset(coords={"layer_name": ("layer", ["conv1", "fc"]), "class": [3, 7]})
        >>> Selection(layer="fc", class_=7).isel(log)
        {'layer': 1, 'class': 1}
        """
        out: dict[str, int] = {}
        for dim, coord, label in (
            ("layer", "layer_name", self.layer),
            ("class", "class", self.class_),
        ):
            if label is None:
                continue
            names = np.asarray(log[coord].values) if coord in log.variables else np.zeros(0)
            found = np.flatnonzero(names.astype(str) == str(label))
            if found.size == 0:
                raise InvalidSelectionError(
                    f"{dim} {label!r} is not in this log; its {coord} are {names[:8].tolist()}"
                )
            out[dim] = int(found[0])
        for dim, position in (("filter", self.filter_index), ("sample", self.sample_index)):
            if position is None:
                continue
            size = int(log.sizes.get(dim, 0))
            if position >= size:
                raise InvalidSelectionError(
                    f"{dim}_index {position} is beyond this log's {size} {dim}s"
                )
            out[dim] = position
        return out

    def __repr__(self) -> str:
        names = ("picked_steps", "time_window", "layer", "filter_index", "class_", "sample_index")
        chosen = {name: getattr(self, name) for name in names}
        shown = ", ".join(f"{k}={v!r}" for k, v in chosen.items() if v not in (None, []))
        return f"Selection({shown})"


def link_selection(
    selection: Selection, widget: HasTraits, names: Iterable[str]
) -> Callable[[], None]:
    """Keep ``widget``'s traits ``names`` equal to ``selection``'s, both ways.

    The widget takes the selection's current values first. When the widget rejects a value set
    on the selection (say, a step outside its log), the selection is put back to its previous
    value and the error reaches whoever set it, so linked views never disagree.

    Returns
    -------
    callable
        Call it to unlink.
    """
    names = list(names)
    for name in names:
        setattr(widget, name, getattr(selection, name))

    def to_widget(change: Bunch) -> None:
        try:
            setattr(widget, change.name, change.new)
        except Exception:
            selection.set_trait(change.name, change.old)
            raise

    def to_selection(change: Bunch) -> None:
        setattr(selection, change.name, change.new)

    selection.observe(to_widget, names)
    widget.observe(to_selection, names)

    def unlink() -> None:
        selection.unobserve(to_widget, names)
        widget.unobserve(to_selection, names)

    return unlink
