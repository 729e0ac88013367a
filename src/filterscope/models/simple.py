"""A simple three-convolution CNN with global average pooling."""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn


class SimpleCNN(nn.Module):
    """Three 3×3 convolutions (``width``, ``2·width``, ``4·width`` filters), then one linear layer.

    Global average pooling makes the network independent of the input size (at least 4×4).
    Module names: ``features.conv1`` … ``features.conv3`` and ``classifier.fc``.

    Parameters
    ----------
    in_channels : int, default=1
        Number of input image channels.
    num_classes : int, default=10
        Number of output logits.
    width : int, default=16
        Number of filters of the first convolution; later ones double it twice.

    Examples
    --------
    >>> import torch
    >>> from filterscope.models import SimpleCNN
    >>> SimpleCNN(width=8)(torch.zeros(2, 1, 28, 28)).shape
    torch.Size([2, 10])
    """

    def __init__(self, in_channels: int = 1, num_classes: int = 10, width: int = 16) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.num_classes = num_classes
        self.width = width
        w1, w2, w3 = width, 2 * width, 4 * width
        self.features = nn.Sequential(
            OrderedDict(
                conv1=nn.Conv2d(in_channels, w1, kernel_size=3, padding=1),
                relu1=nn.ReLU(),
                pool1=nn.MaxPool2d(2),
                conv2=nn.Conv2d(w1, w2, kernel_size=3, padding=1),
                relu2=nn.ReLU(),
                pool2=nn.MaxPool2d(2),
                conv3=nn.Conv2d(w2, w3, kernel_size=3, padding=1),
                relu3=nn.ReLU(),
                pool3=nn.AdaptiveAvgPool2d(1),
            )
        )
        self.classifier = nn.Sequential(OrderedDict(fc=nn.Linear(w3, num_classes)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.features(x), 1))
