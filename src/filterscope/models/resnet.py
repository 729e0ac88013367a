"""ResNet family with torchvision's module names, sized from CIFAR toys up to ResNet-50."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
from torch import nn

from filterscope.errors import InvalidModelError


def _conv3x3(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_planes, out_planes, kernel_size=3, stride=stride, padding=1, bias=False)


def _conv1x1(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_planes, out_planes, kernel_size=1, stride=stride, bias=False)


class BasicBlock(nn.Module):
    """Two 3×3 convolutions with batch norm and an identity (or 1×1 projection) shortcut.

    Module names: ``conv1``, ``bn1``, ``conv2``, ``bn2`` and, when the shape changes,
    ``downsample.0`` (1×1 conv) and ``downsample.1`` (batch norm).

    Parameters
    ----------
    in_planes : int
        Input channels.
    planes : int
        Channels of both convolutions; the block outputs ``planes * BasicBlock.expansion``.
    stride : int, default=1
        Stride of the first convolution (2 halves the resolution at a stage start).
    """

    expansion = 1

    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = _conv3x3(in_planes, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = _conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = _shortcut(in_planes, planes * self.expansion, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    """1×1 reduce, 3×3 (strided, as in torchvision's ResNet v1.5), 1×1 expand ×4, with batch norm.

    Module names: ``conv1``…``conv3``, ``bn1``…``bn3`` and, when the shape changes,
    ``downsample.0`` / ``downsample.1``.

    Parameters
    ----------
    in_planes : int
        Input channels.
    planes : int
        Channels of the 1×1 and 3×3 convolutions; the block outputs ``planes * 4``.
    stride : int, default=1
        Stride of the 3×3 convolution.
    """

    expansion = 4

    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        out_planes = planes * self.expansion
        self.conv1 = _conv1x1(in_planes, planes)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = _conv3x3(planes, planes, stride)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = _conv1x1(planes, out_planes)
        self.bn3 = nn.BatchNorm2d(out_planes)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = _shortcut(in_planes, out_planes, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


def _shortcut(in_planes: int, out_planes: int, stride: int) -> nn.Sequential | None:
    if stride == 1 and in_planes == out_planes:
        return None
    return nn.Sequential(_conv1x1(in_planes, out_planes, stride), nn.BatchNorm2d(out_planes))


class ResNet(nn.Module):
    """A residual network organised in stages ``layer1``, ``layer2``, … of blocks.

    Module names follow torchvision (``conv1``, ``bn1``, ``layer2.1.conv1``,
    ``layer2.0.downsample.0``, ``fc``), which gives the recorder its stage → block → layer tree.
    Every stage after the first halves the resolution in its first block.

    Parameters
    ----------
    stages : sequence of int, default=(2, 2, 2, 2)
        Number of blocks per stage; one stage per entry.
    widths : sequence of int, default=(16, 32, 64, 128)
        Base channels per stage (a bottleneck block outputs four times as many).
    num_classes : int, default=10
        Number of output logits.
    in_channels : int, default=3
        Number of input image channels.
    block : {"basic", "bottleneck"}, default="basic"
        Residual block type.
    stem : {"cifar", "imagenet"}, default="cifar"
        ``"cifar"``: one 3×3 stride-1 convolution, no max pool (for 32×32 inputs).
        ``"imagenet"``: 7×7 stride-2 convolution then a 3×3 stride-2 max pool (for 224×224).

    Examples
    --------
    >>> import torch
    >>> from filterscope.models import ResNet
    >>> net = ResNet(stages=(1, 1), widths=(8, 16))
    >>> net(torch.zeros(2, 3, 32, 32)).shape
    torch.Size([2, 10])
    >>> [name for name, _ in net.named_modules() if name.startswith("layer2.0.downsample")]
    ['layer2.0.downsample', 'layer2.0.downsample.0', 'layer2.0.downsample.1']
    """

    def __init__(
        self,
        stages: Sequence[int] = (2, 2, 2, 2),
        widths: Sequence[int] = (16, 32, 64, 128),
        num_classes: int = 10,
        in_channels: int = 3,
        block: Literal["basic", "bottleneck"] = "basic",
        stem: Literal["cifar", "imagenet"] = "cifar",
    ) -> None:
        super().__init__()
        if len(stages) == 0 or len(stages) != len(widths) or min(stages) < 1:
            raise InvalidModelError(
                "ResNet needs one positive block count per stage and one width per stage, got "
                f"stages={tuple(stages)} and widths={tuple(widths)}; pass e.g. stages=(2, 2, 2, 2) "
                "with widths=(16, 32, 64, 128)."
            )
        block_types: dict[str, type[BasicBlock] | type[Bottleneck]] = {
            "basic": BasicBlock,
            "bottleneck": Bottleneck,
        }
        if block not in block_types:
            raise InvalidModelError(f"block must be 'basic' or 'bottleneck', got {block!r}.")
        if stem not in ("cifar", "imagenet"):
            raise InvalidModelError(f"stem must be 'cifar' or 'imagenet', got {stem!r}.")
        self.stages = tuple(stages)
        self.widths = tuple(widths)
        self.num_classes = num_classes
        self.in_channels = in_channels
        self.block = block
        self.stem = stem
        block_type = block_types[block]

        if stem == "imagenet":
            self.conv1 = nn.Conv2d(in_channels, widths[0], 7, stride=2, padding=3, bias=False)
        else:
            self.conv1 = _conv3x3(in_channels, widths[0])
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.relu = nn.ReLU(inplace=True)
        self.maxpool: nn.Module = (
            nn.MaxPool2d(3, stride=2, padding=1) if stem == "imagenet" else nn.Identity()
        )
        in_planes = widths[0]
        for i, (n_blocks, planes) in enumerate(zip(stages, widths, strict=True)):
            blocks = []
            for j in range(n_blocks):
                stride = 2 if (i > 0 and j == 0) else 1
                blocks.append(block_type(in_planes, planes, stride))
                in_planes = planes * block_type.expansion
            self.add_module(f"layer{i + 1}", nn.Sequential(*blocks))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(in_planes, num_classes)

        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        for i in range(len(self.stages)):
            x = getattr(self, f"layer{i + 1}")(x)
        return self.fc(torch.flatten(self.avgpool(x), 1))


def resnet18_small(num_classes: int = 10, in_channels: int = 3) -> ResNet:
    """ResNet-18's block layout (2, 2, 2, 2 basic blocks) at a quarter of its width, for 32×32.

    Examples
    --------
    >>> from filterscope.models import resnet18_small, count_conv_filters
    >>> count_conv_filters(resnet18_small())
    1200
    """
    return ResNet((2, 2, 2, 2), (16, 32, 64, 128), num_classes, in_channels, "basic", "cifar")


def resnet50_like(num_classes: int = 1000, in_channels: int = 3) -> ResNet:
    """ResNet-50's exact layout for 224×224 inputs, randomly initialised (no weights needed).

    Bottleneck blocks (3, 4, 6, 3) with widths (64, 128, 256, 512) and the ImageNet stem: 53
    convolutions (1 stem + 16 blocks × 3 + 4 projection shortcuts) holding 26,560 filters, 53
    batch norms and one fully connected layer; 25,557,032 parameters with 1,000 classes (the same
    count as torchvision's ``resnet50``).

    Examples
    --------
    >>> from filterscope.models import resnet50_like, conv_layers, count_conv_filters
    >>> net = resnet50_like()
    >>> len(conv_layers(net)), count_conv_filters(net)
    (53, 26560)
    """
    return ResNet(
        (3, 4, 6, 3), (64, 128, 256, 512), num_classes, in_channels, "bottleneck", "imagenet"
    )
