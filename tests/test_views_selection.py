"""The shared Selection and the link between a selection and a view's traits."""

from __future__ import annotations

import numpy as np
import pytest
import traitlets
import xarray as xr
from hypothesis import given
from hypothesis import strategies as st

from filterscope.errors import InvalidDataError, InvalidParameterError, InvalidSelectionError
from filterscope.views import Selection
from filterscope.views.selection import link_selection, unique_steps


def test_picks_keep_pick_order_and_drop_repeats():
    sel = Selection(picked_steps=[30, 10, 30, 20, 10])
    assert sel.picked_steps == [30, 10, 20]


def test_negative_steps_are_refused_and_the_old_picks_stay():
    sel = Selection(picked_steps=[5])
    with pytest.raises(InvalidSelectionError, match="count from 0; got -1"):
        sel.picked_steps = [3, -1]
    assert sel.picked_steps == [5]


def test_selection_errors_are_parameter_errors_and_trait_errors():
    # ValueError for callers' `except ValueError`, TraitError so traitlets rolls values back.
    assert issubclass(InvalidSelectionError, InvalidParameterError)
    assert issubclass(InvalidSelectionError, ValueError)
    assert issubclass(InvalidSelectionError, traitlets.TraitError)


@pytest.mark.parametrize(
    ("name", "bad"),
    [
        ("picked_steps", [4, -1]),
        ("time_window", (9, 2)),
        ("filter_index", -1),
        ("sample_index", -3),
    ],
)
def test_a_refused_value_set_under_held_notifications_is_rolled_back(name, bad):
    # ipywidgets applies the page's updates under hold_trait_notifications, where traitlets
    # validates on leaving and puts values back only when the validator raised a TraitError.
    sel = Selection(picked_steps=[5], time_window=(0, 10), filter_index=2, sample_index=1)
    before = getattr(sel, name)
    seen = []
    sel.observe(seen.append, name)
    with pytest.raises(InvalidSelectionError), sel.hold_trait_notifications():
        setattr(sel, name, bad)
    assert getattr(sel, name) == before
    assert seen == []


@pytest.mark.parametrize("picks", [[1.5], ["3"], [True], [2, False], None])
def test_picks_must_be_integers(picks):
    with pytest.raises(traitlets.TraitError):
        Selection(picked_steps=picks)


@pytest.mark.parametrize("window", [(5, 5), (9, 2), (-1, 4), (True, 4), (0, True)])
def test_time_window_must_be_increasing_and_non_negative(window):
    with pytest.raises(InvalidSelectionError, match="0 <= start < stop"):
        Selection(time_window=window)


def first_occurrences(steps):
    """The obvious reference: each step where it first appears."""
    out = []
    for step in steps:
        if step not in out:
            out.append(step)
    return out


@given(st.lists(st.integers(min_value=0, max_value=50) | st.integers(min_value=0)))
def test_unique_steps_keeps_first_occurrences_in_order(steps):
    assert unique_steps("picked_steps", steps) == first_occurrences(steps)
    assert unique_steps("picked_steps", iter(steps)) == first_occurrences(steps)


@given(st.lists(st.integers(min_value=0)), st.integers(max_value=-1), st.data())
def test_unique_steps_refuses_any_negative_step(steps, negative, data):
    at = data.draw(st.integers(min_value=0, max_value=len(steps)))
    with pytest.raises(InvalidSelectionError, match=f"got {negative}"):
        unique_steps("picked_steps", [*steps[:at], negative, *steps[at:]])


class _CountingStep(int):
    """An int that counts how often it is compared for equality."""

    comparisons = 0

    def __eq__(self, other):
        _CountingStep.comparisons += 1
        return int.__eq__(self, other)

    __hash__ = int.__hash__


def test_unique_steps_does_a_bounded_amount_of_work_per_pick():
    # Not a timing: an operation count. Testing each pick against the list kept so far compared
    # 2,000 distinct picks about 2 million times; looking repeats up by hash compares a handful.
    steps = [_CountingStep(s) for s in range(2000, 0, -1)] * 2
    _CountingStep.comparisons = 0
    assert unique_steps("picked_steps", steps) == list(range(2000, 0, -1))
    assert _CountingStep.comparisons <= 10 * len(steps)


def first_occurrences_by_set(steps):
    """The reference for long inputs, where the list version is too slow to run."""
    seen, out = set(), []
    for step in steps:
        if step not in seen:
            seen.add(step)
            out.append(step)
    return out


def test_forty_thousand_picks_keep_their_order():
    picks = list(range(80_000, 0, -2)) + list(range(0, 90_000, 3))
    sel = Selection(picked_steps=picks)
    assert sel.picked_steps[:3] == [80_000, 79_998, 79_996]
    assert len(sel.picked_steps) == len(set(picks)) > 40_000
    assert sel.picked_steps == first_occurrences_by_set(picks)


def test_time_window_accepts_lists_from_the_browser_and_none():
    sel = Selection()
    sel.time_window = [10, 40]
    assert sel.time_window == (10, 40)
    sel.time_window = None
    assert sel.time_window is None


@pytest.mark.parametrize("name", ["filter_index", "sample_index"])
def test_positions_are_non_negative_or_none(name):
    sel = Selection(**{name: 3})
    assert getattr(sel, name) == 3
    setattr(sel, name, None)
    assert getattr(sel, name) is None
    with pytest.raises(InvalidSelectionError, match=name):
        setattr(sel, name, -2)


def test_labels_and_positions_become_isel_positions():
    log = xr.Dataset(
        coords={
            "layer_name": ("layer", ["conv1", "conv2", "fc"]),
            "class": [3, 5, 7],
            "filter": np.arange(10),
            "sample": np.arange(4),
        }
    )
    sel = Selection(layer="fc", class_=5, filter_index=9, sample_index=0)
    assert sel.isel(log) == {"layer": 2, "class": 1, "filter": 9, "sample": 0}
    assert Selection().isel(log) == {}
    with pytest.raises(InvalidSelectionError, match="'nope' is not in this log"):
        Selection(layer="nope").isel(log)
    with pytest.raises(InvalidSelectionError, match="beyond this log's 4 samples"):
        Selection(sample_index=4).isel(log)


def test_link_id_is_fixed_and_distinct():
    a, b = Selection(), Selection()
    assert a.link_id != b.link_id and len(a.link_id) == 32
    with pytest.raises(traitlets.TraitError, match="read-only"):
        a.link_id = "x"


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
