"""LayerView in a real JupyterLab, in headless Chromium, beside ModelInfo on one selection: it
renders a recorded run, a click expands a layer (its filters arrive by request and are drawn)
and selects it in Python, and changes made in Python reach the page."""

from __future__ import annotations

from pathlib import Path

import pytest
from tiny_run import record_tiny_run

from filterscope.dynamics.layer_view import lowest_cosine_filters

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.xdist_group("jupyterlab")]

NOTEBOOK = [
    'import json\nimport filterscope as fs\n\nlog = fs.open_log("layer_run")\n'
    "sel = fs.views.Selection()",
    "m = fs.ModelInfo(log, selection=sel)\nm",
    "w = fs.LayerView(log, selection=sel)\nw",
    'print("READY")',
]


def test_layer_view_expands_requests_filters_and_links_with_python(jupyter_lab):
    log = record_tiny_run(jupyter_lab.root / "layer_run")
    jupyter_lab.write_notebook("layer.ipynb", NOTEBOOK)
    stage, layer = "features", "features.conv2"
    assert layer in log.layer_name.values
    pick = int(log.snapshot_step.values[5])

    result = jupyter_lab.drive(
        "layer", "layer.ipynb", timeout=240, stage=stage, layer=layer, pick=pick
    )

    # Collapsed below the model at first, every row drawn from the log's numbers.
    assert result["initial_rows"] == ["model", "features", "classifier"]
    assert all(result["extents"]), "every node chart must have a value range"
    assert result["node_pixels"] > 1000
    # The click expanded the layer: its filters came by request and were drawn.
    assert result["filter_rows"] == int((log.filter_layer.values == layer).sum())
    assert result["filter_pixels"] > 100
    # … and selected it in Python, in the view and the shared selection.
    w_layer, sel_layer, expanded = result["selected"]
    assert w_layer == sel_layer == layer
    assert {stage, layer} <= set(expanded)
    # Picks set in Python list the lowest-cosine filters in the page.
    expected = lowest_cosine_filters(log, [pick])["filter"].tolist()
    assert result["changed_kernel"] == expected and len(expected) == 10
    assert result["changed_dom"] == expected
    assert result["pick_lines"] == 1
    assert result["hover_lines"] == 1, "hovering ModelInfo must draw LayerView's hover line"
    for shot in result["screenshots"]:
        assert Path(shot).stat().st_size > 5_000


RESNET_NOTEBOOK = [
    'import filterscope as fs\n\nlog = fs.open_log("layer_r50")',
    "w = fs.LayerView(log)\nw",
    'print("READY")',
]


def test_layer_view_keeps_a_resnet50_tree_readable(jupyter_lab):
    import filterscope as fs
    from filterscope.data import synthetic_log

    log = synthetic_log(
        jupyter_lab.root / "layer_r50",
        layers="resnet50",
        n_samples=100,
        n_classes=10,
        n_snapshots=120,
        plant=False,
    )
    jupyter_lab.write_notebook("layer_r50.ipynb", RESNET_NOTEBOOK)
    path = ["layer4", "layer4.0", "layer4.0.conv3"]
    assert int(log.layer_filters.values[list(log.layer_name.values).index(path[-1])]) == 2048
    # model, 6 stages (conv1 and fc are stages of one layer), 16 blocks, 52 block layers
    n_nodes = fs.index_of(log, progress=False).nodes().sizes["node"]
    assert n_nodes == 75

    result = jupyter_lab.drive(
        "layer_resnet50", "layer_r50.ipynb", timeout=240, path=path, n_nodes=n_nodes
    )

    assert result["initial_rows"] == [
        "model",
        "conv1",
        "layer1",
        "layer2",
        "layer3",
        "layer4",
        "fc",
    ]
    assert result["filter_blocks_at_start"] == 0, "no filter rows before a layer opens"
    geometry = result["geometry"]
    assert geometry["rows"] == 2048
    assert geometry["canvas_height"] >= 2048, "every filter gets at least one pixel row"
    assert geometry["scroll_height"] <= 320, "a long filter list scrolls"
    assert result["filter_pixels"] > 2048 * 100
    assert result["all_rows"] == n_nodes
    # Every layer's block is there, but only those scrolled into view asked for their rows.
    assert result["blocks_after_expand_all"] == 54  # 53 convolutions and fc
    assert result["loaded_after_expand_all"] < 54
    assert result["body"]["scroll"] > result["body"]["client"], "the expanded tree scrolls"
