"""Layer discovery and the stage → block → layer hierarchy."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from filterscope.errors import InvalidModelError, InvalidParameterError
from filterscope.log.hierarchy import default_hierarchy, resolve_hierarchy
from filterscope.log.layers import discover_layers, unwrap_model
from filterscope.models import ResNet


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("layer2.1.conv1", ("layer2", "layer2.1")),
        ("layer2.0.downsample.0", ("layer2", "layer2.0")),
        ("features.conv1", ("features", "features.conv1")),
        ("fc", ("fc", "fc")),
    ],
)
def test_default_hierarchy_reads_module_names(name, expected) -> None:
    assert default_hierarchy(name) == expected


def test_hierarchy_overrides() -> None:
    names = ["conv1", "blocks.3.conv", "head"]
    assert resolve_hierarchy(names, {"head": ("classifier", "head")}) == [
        ("conv1", "conv1"),
        ("blocks", "blocks.3"),
        ("classifier", "head"),
    ]
    assert resolve_hierarchy(names, lambda n: ("all", n)) == [("all", n) for n in names]
    with pytest.raises(InvalidParameterError, match=r"None .*, a mapping .* or a callable"):
        resolve_hierarchy(names, ["conv1"])  # type: ignore[arg-type]
    with pytest.raises(InvalidParameterError, match=r"'head'.*\(stage, block\) pair"):
        resolve_hierarchy(names, {"head": "classifier"})  # type: ignore[dict-item]
    with pytest.raises(InvalidParameterError, match="layer_name -> "):
        discover_layers(nn.Linear(2, 2), hierarchy=3)  # type: ignore[arg-type]


def test_resnet_layers_stages_and_blocks() -> None:
    layers = discover_layers(ResNet(stages=(1, 1), widths=(8, 16)))
    table = {layer.name: layer for layer in layers}
    assert list(table)[:3] == ["conv1", "bn1", "layer1.0.conv1"]
    down = table["layer2.0.downsample.0"]
    assert (down.kind, down.stage, down.block, down.filters, down.fan_in) == (
        "Conv2d",
        "layer2",
        "layer2.0",
        16,
        8,
    )
    assert not table["layer2.0.downsample.1"].has_stats  # batch norm: listed, not measured
    assert table["fc"].has_stats and table["fc"].filters == 10
    assert sum(layer.has_stats for layer in layers) == 1 + 2 + 3 + 1


def test_filters_of_transposed_and_grouped_convolutions() -> None:
    net = nn.Sequential(nn.ConvTranspose2d(4, 6, 3, groups=2), nn.Conv2d(6, 6, 3, groups=3))
    transposed, grouped = discover_layers(net)
    assert (transposed.filters, transposed.fan_in) == (6, 2 * 9)
    assert (grouped.filters, grouped.fan_in) == (6, 2 * 9)
    w = torch.arange(net[0].weight.numel(), dtype=torch.float32).reshape(net[0].weight.shape)
    rows = transposed.filter_rows(w)
    # Output channel 4 is channel 1 of group 1: input channels 2..3, weight[2:4, 1].
    assert torch.equal(rows[4], w[2:4, 1].reshape(-1))


def test_tied_weights_count_once_and_wrappers_are_unwrapped() -> None:
    emb = nn.Linear(4, 4)
    net = nn.Sequential(emb, nn.ReLU(), nn.Linear(4, 4))
    net[2].weight = emb.weight
    assert [layer.name for layer in discover_layers(net)] == ["0"]
    assert unwrap_model(nn.DataParallel(net)) is net
    assert discover_layers(nn.Linear(3, 2))[0].name == "Linear"


def test_a_model_without_weights_is_refused() -> None:
    with pytest.raises(InvalidModelError, match="no layer with weights"):
        discover_layers(nn.Sequential(nn.BatchNorm1d(3), nn.ReLU()))
