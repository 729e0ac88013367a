"""The dashboard: every view on one log, linked through one Selection, closed together."""

from __future__ import annotations

import pytest

import filterscope as fs
from filterscope.data.synthetic import synthetic_log
from filterscope.errors import InvalidParameterError
from filterscope.views import CubeView, LayerView, ModelInfo, Selection, ValidationView

pytestmark = pytest.mark.xdist_group("views_dashboard")


@pytest.fixture(scope="module")
def log(tmp_path_factory):
    path = tmp_path_factory.mktemp("dashboard") / "log"
    synthetic_log(
        path, n_samples=200, n_classes=10, n_snapshots=150, layers="resnet18", steps_per_snapshot=4
    )
    return fs.open_log(path)


def test_every_view_on_one_selection(log) -> None:
    board = fs.dashboard(log)
    try:
        assert list(board.views) == ["model_info", "layer", "validation", "cube"]
        kinds = [ModelInfo, LayerView, ValidationView, CubeView]
        assert len(board.children) == len(kinds)
        assert all(isinstance(v, k) for v, k in zip(board.children, kinds, strict=True))
        # One link_id: hover, brush and zoom link in the browser without the kernel.
        assert {view.link_id for view in board.children} == {board.selection.link_id}

        # A pick made in Python reaches every view that shows time...
        step = int(log.snapshot_step.values[40])
        board.selection.picked_steps = [step]
        assert all(view.picked_steps == [step] for view in board.children)
        # ... and one made in a view (as the page would) reaches the selection and the others.
        other = int(log.snapshot_step.values[90])
        board.views["cube"].picked_steps = [step, other]
        assert board.selection.picked_steps == [step, other]
        assert board.views["model_info"].picked_steps == [step, other]

        # Every layer of the log, also one the cube does not draw (a normalisation layer has
        # no statistics): the selection never breaks on a value only some views show.
        for layer in map(str, log.layer_name.values[:4]):
            board.views["layer"].layer = layer
            assert board.selection.layer == layer == board.views["cube"].layer
        assert not log.layer_has_stats.values[:4].all()
        label = log["class"].values[2].item()
        board.views["validation"].class_ = label
        assert board.selection.class_ == label == board.views["cube"].class_
        assert "filterscope-dashboard" in board._dom_classes
    finally:
        board.close()
    # Closed views are unlinked: the selection moves on alone.
    board.selection.picked_steps = []
    assert board.views["model_info"].picked_steps == [step, other]


def test_a_given_selection_joins_views_outside_the_dashboard(log) -> None:
    shared = Selection()
    alone = fs.ModelInfo(log, selection=shared)
    board = log.filterscope.dashboard(selection=shared, views=["model_info", "cube"])
    try:
        assert board.selection is shared and list(board.views) == ["model_info", "cube"]
        step = int(log.snapshot_step.values[10])
        alone.picked_steps = [step]
        assert board.views["cube"].picked_steps == [step]
    finally:
        board.close()
        alone.close()


def test_options_go_to_their_view(log) -> None:
    board = fs.dashboard(log, views=["model_info"], model_info={"max_points": 64})
    try:
        (chart, *_) = board.views["model_info"].series["charts"]
        assert all(len(line["x"]) <= 64 for line in chart["lines"])
    finally:
        board.close()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"views": ["model_info", "histograms"]}, "distinct names"),
        ({"views": ["cube", "cube"]}, "distinct names"),
        ({"views": []}, "distinct names"),
        ({"views": ["cube"], "layer": {"max_points": 10}}, "not shown"),
        ({"selection": "everything"}, "Selection"),
    ],
)
def test_bad_arguments_say_what_is_valid(log, kwargs, message) -> None:
    with pytest.raises(InvalidParameterError, match=message):
        fs.dashboard(log, **kwargs)
