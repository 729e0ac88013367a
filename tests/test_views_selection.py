"""The shared Selection and the link between a selection and a view's traits."""

from __future__ import annotations

import pytest
import traitlets

from filterscope.errors import InvalidDataError
from filterscope.views import Selection
from filterscope.views.selection import link_selection


def test_picks_keep_pick_order_and_drop_repeats():
    sel = Selection(picked_steps=[30, 10, 30, 20, 10])
    assert sel.picked_steps == [30, 10, 20]


def test_negative_steps_are_refused_and_the_old_picks_stay():
    sel = Selection(picked_steps=[5])
    with pytest.raises(InvalidDataError, match="count from 0"):
        sel.picked_steps = [3, -1]
    assert sel.picked_steps == [5]


def test_picks_must_be_integers():
    with pytest.raises(traitlets.TraitError):
        Selection(picked_steps=[1.5])


@pytest.mark.parametrize("window", [(5, 5), (9, 2), (-1, 4)])
def test_time_window_must_be_increasing_and_non_negative(window):
    with pytest.raises(InvalidDataError, match="0 <= start < stop"):
        Selection(time_window=window)


def test_time_window_accepts_lists_from_the_browser_and_none():
    sel = Selection()
    sel.time_window = [10, 40]
    assert sel.time_window == (10, 40)
    sel.time_window = None
    assert sel.time_window is None


@pytest.mark.parametrize("name", ["filter", "class_", "sample"])
def test_indices_are_non_negative_or_none(name):
    sel = Selection(**{name: 3})
    assert getattr(sel, name) == 3
    setattr(sel, name, None)
    assert getattr(sel, name) is None
    with pytest.raises(InvalidDataError, match=name):
        setattr(sel, name, -2)


def test_observers_see_changes_and_repr_shows_what_is_set():
    sel = Selection()
    seen = []
    sel.observe(lambda change: seen.append((change.name, change.new)), ["layer", "picked_steps"])
    sel.layer = "layer2.0.conv1"
    sel.picked_steps = [4]
    assert seen == [("layer", "layer2.0.conv1"), ("picked_steps", [4])]
    assert repr(sel) == "Selection(picked_steps=[4], layer='layer2.0.conv1')"


class _Strict(traitlets.HasTraits):
    """A stand-in view whose picks must be below 100 (as a view's log bounds them)."""

    picked_steps = traitlets.List(traitlets.Int())
    time_window = traitlets.Tuple(
        traitlets.Int(), traitlets.Int(), default_value=None, allow_none=True
    )

    @traitlets.validate("picked_steps")
    def _check(self, proposal):
        if any(s >= 100 for s in proposal.value):
            raise InvalidDataError("steps must be below 100")
        return proposal.value


def test_link_starts_from_the_selection_and_syncs_both_ways():
    sel = Selection(picked_steps=[7], time_window=(0, 50))
    a, b = _Strict(), _Strict()
    link_selection(sel, a, ["picked_steps", "time_window"])
    link_selection(sel, b, ["picked_steps", "time_window"])
    assert a.picked_steps == [7] and a.time_window == (0, 50)
    a.picked_steps = [7, 9]
    assert sel.picked_steps == [7, 9] and b.picked_steps == [7, 9]
    sel.time_window = (10, 20)
    assert a.time_window == b.time_window == (10, 20)


def test_a_value_a_linked_view_rejects_is_rolled_back_everywhere():
    sel = Selection(picked_steps=[7])
    view = _Strict()
    link_selection(sel, view, ["picked_steps"])
    with pytest.raises(InvalidDataError, match="below 100"):
        sel.picked_steps = [7, 500]
    assert sel.picked_steps == [7]
    assert view.picked_steps == [7]


def test_unlink_stops_syncing():
    sel = Selection()
    view = _Strict()
    unlink = link_selection(sel, view, ["picked_steps"])
    unlink()
    view.picked_steps = [3]
    sel.picked_steps = [4]
    assert sel.picked_steps == [4] and view.picked_steps == [3]
