"""CNN architectures used by the demo, the tests, the notebooks and the benchmarks.

Owns plain ``torch.nn.Module`` definitions (no torchvision, no pretrained weights): LeNet-5, a
small AlexNet, a simple CNN and a ResNet family with torchvision-compatible module names
(``layer2.1.conv1``, ``layer2.0.downsample.0``), so the recorder can read the stage → block →
layer hierarchy from the names. Must not import the log, the GMM engine or any view: models know
nothing about how they are recorded.

Examples
--------
>>> import torch
>>> from filterscope.models import LeNet5
>>> LeNet5()(torch.zeros(2, 1, 32, 32)).shape
torch.Size([2, 10])
"""

from __future__ import annotations

from filterscope.models.alexnet import SmallAlexNet
from filterscope.models.lenet import LeNet5
from filterscope.models.resnet import BasicBlock, Bottleneck, ResNet, resnet18_small, resnet50_like
from filterscope.models.simple import SimpleCNN
from filterscope.models.summary import conv_layers, count_conv_filters, count_parameters

__all__ = [
    "BasicBlock",
    "Bottleneck",
    "LeNet5",
    "ResNet",
    "SimpleCNN",
    "SmallAlexNet",
    "conv_layers",
    "count_conv_filters",
    "count_parameters",
    "resnet18_small",
    "resnet50_like",
]
