"""Architectures: shapes, parameter and filter counts, module names, and that each one learns."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from filterscope.errors import InvalidModelError
from filterscope.models import (
    LeNet5,
    ResNet,
    SimpleCNN,
    SmallAlexNet,
    conv_layers,
    count_conv_filters,
    count_parameters,
    resnet18_small,
    resnet50_like,
)


def _conv_params(c_in: int, c_out: int, k: int, bias: bool = True) -> int:
    return c_out * (c_in * k * k + bias)


def _linear_params(n_in: int, n_out: int) -> int:
    return n_out * (n_in + 1)


@pytest.mark.parametrize(
    ("make", "input_shape"),
    [
        (lambda: LeNet5(), (3, 1, 32, 32)),
        (lambda: LeNet5(input_size=28), (3, 1, 28, 28)),
        (lambda: LeNet5(in_channels=3, num_classes=7), (3, 3, 32, 32)),
        (lambda: SimpleCNN(width=4), (3, 1, 28, 28)),
        (lambda: SimpleCNN(in_channels=3, num_classes=100, width=4), (3, 3, 32, 32)),
        (lambda: SmallAlexNet(), (3, 3, 32, 32)),
        (lambda: SmallAlexNet(num_classes=5, in_channels=1), (3, 1, 28, 28)),
        (lambda: resnet18_small(), (3, 3, 32, 32)),
        (lambda: ResNet((1, 1), (4, 8), num_classes=4, block="bottleneck"), (3, 3, 16, 16)),
    ],
)
def test_output_shape(make, input_shape):
    model = make().eval()
    with torch.no_grad():
        out = model(torch.randn(*input_shape))
    num_classes = getattr(model, "num_classes", 10)
    assert out.shape == (input_shape[0], num_classes)
    assert torch.isfinite(out).all()


def test_lenet5_matches_the_classic_layout():
    model = LeNet5()
    expected = (
        _conv_params(1, 6, 5)
        + _conv_params(6, 16, 5)
        + _linear_params(16 * 5 * 5, 120)
        + _linear_params(120, 84)
        + _linear_params(84, 10)
    )
    assert count_parameters(model) == expected
    assert [(n, m.out_channels) for n, m in conv_layers(model)] == [
        ("features.conv1", 6),
        ("features.conv2", 16),
    ]
    linear = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    assert linear == ["classifier.fc1", "classifier.fc2", "classifier.fc3"]
    # 28×28 inputs are padded to the same geometry, so the parameter count is unchanged.
    assert count_parameters(LeNet5(input_size=28)) == expected


def test_lenet5_rejects_tiny_inputs():
    with pytest.raises(InvalidModelError, match="upsample"):
        LeNet5(input_size=8)


def test_small_alexnet_has_five_convs_and_three_fcs():
    model = SmallAlexNet()
    assert [n for n, _ in conv_layers(model)] == [f"features.conv{i}" for i in range(1, 6)]
    linear = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    assert linear == ["classifier.fc1", "classifier.fc2", "classifier.fc3"]


def test_resnet_module_hierarchy():
    names = {n for n, _ in resnet18_small().named_modules()}
    for stage in range(1, 5):
        for block in range(2):
            for leaf in ("conv1", "bn1", "conv2", "bn2"):
                assert f"layer{stage}.{block}.{leaf}" in names
    # Projection shortcuts exactly where the resolution or the width changes.
    downsample = sorted(n for n in names if n.endswith("downsample.0"))
    assert downsample == [f"layer{s}.0.downsample.0" for s in (2, 3, 4)]
    assert {"conv1", "bn1", "fc"} <= names
    assert "layer5" not in names


def test_resnet50_like_has_resnet50_layout():
    model = resnet50_like()
    convs = conv_layers(model)
    blocks = (3, 4, 6, 3)
    widths = (64, 128, 256, 512)
    # Reference loop over the published layout: stem, three convs per bottleneck block, one
    # projection shortcut per stage.
    expected_filters = 64 + sum(
        n * (w + w + 4 * w) + 4 * w for n, w in zip(blocks, widths, strict=True)
    )
    assert len(convs) == 1 + 3 * sum(blocks) + len(blocks) == 53
    assert count_conv_filters(model) == expected_filters == 26_560
    assert sum(isinstance(m, nn.BatchNorm2d) for m in model.modules()) == 53
    # torchvision's resnet50 parameter count, the layout's fingerprint.
    assert count_parameters(model) == 25_557_032
    names = dict(convs)
    assert names["layer4.2.conv3"].out_channels == 2048
    assert names["layer3.0.conv2"].stride == (2, 2)  # stride on the 3×3 conv (v1.5)
    assert names["layer1.0.downsample.0"].stride == (1, 1)
    model.eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, 64, 64)).shape == (1, 1000)


def test_resnet_rejects_mismatched_stages():
    with pytest.raises(InvalidModelError, match="one width per stage"):
        ResNet(stages=(2, 2), widths=(16,))
    with pytest.raises(InvalidModelError, match="block"):
        ResNet(block="dense")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("make", "input_shape", "lr"),
    [
        (lambda: LeNet5(), (16, 1, 32, 32), 3e-3),
        (lambda: SimpleCNN(width=8), (16, 1, 16, 16), 1e-2),
        (lambda: SmallAlexNet(dropout=0.0), (16, 3, 32, 32), 1e-3),
        (lambda: ResNet((1, 1), (8, 16)), (16, 3, 16, 16), 3e-3),
        (lambda: ResNet((1, 1), (4, 8), block="bottleneck"), (16, 3, 16, 16), 3e-3),
    ],
)
def test_model_trains_on_a_tiny_batch(make, input_shape, lr):
    torch.manual_seed(0)
    model = make()
    # A learnable batch: each of 4 classes is a fixed random image plus noise.
    y = torch.arange(input_shape[0]) % 4
    x = torch.randn(4, *input_shape[1:])[y] + 0.5 * torch.randn(*input_shape)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    losses = []
    for _ in range(30):
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]
