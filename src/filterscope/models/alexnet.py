"""AlexNet scaled down for 32×32 images (five convolutions, three fully connected layers)."""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn


class SmallAlexNet(nn.Module):
    """AlexNet's layout (5 convolutions with 3 max pools, 3 fully connected layers with dropout)
    with widths and kernels scaled for 32×32 inputs such as CIFAR-10.

    Convolutions: 5×5/32, 5×5/64, 3×3/96, 3×3/96, 3×3/64 filters, each followed by ReLU; max pools
    (3×3, stride 2) after the first, second and fifth bring 32×32 down to 3×3; an adaptive average
    pool keeps other input sizes (28×28 and up) working. Fully connected: 576 → 256 → 128 →
    classes. Module names: ``features.conv1`` … ``features.conv5``, ``classifier.fc1`` …
    ``classifier.fc3``.

    Parameters
    ----------
    num_classes : int, default=10
        Number of output logits.
    in_channels : int, default=3
        Number of input image channels.
    dropout : float, default=0.5
        Dropout probability before the first two fully connected layers.

    Examples
    --------
    >>> import torch
    >>> from filterscope.models import SmallAlexNet
    >>> SmallAlexNet()(torch.zeros(2, 3, 32, 32)).shape
    torch.Size([2, 10])
    """

    def __init__(self, num_classes: int = 10, in_channels: int = 3, dropout: float = 0.5) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.in_channels = in_channels
        self.dropout = dropout
        self.features = nn.Sequential(
            OrderedDict(
                conv1=nn.Conv2d(in_channels, 32, kernel_size=5, padding=2),
                relu1=nn.ReLU(),
                pool1=nn.MaxPool2d(3, stride=2),
                conv2=nn.Conv2d(32, 64, kernel_size=5, padding=2),
                relu2=nn.ReLU(),
                pool2=nn.MaxPool2d(3, stride=2),
                conv3=nn.Conv2d(64, 96, kernel_size=3, padding=1),
                relu3=nn.ReLU(),
                conv4=nn.Conv2d(96, 96, kernel_size=3, padding=1),
                relu4=nn.ReLU(),
                conv5=nn.Conv2d(96, 64, kernel_size=3, padding=1),
                relu5=nn.ReLU(),
                pool5=nn.MaxPool2d(3, stride=2),
            )
        )
        self.avgpool = nn.AdaptiveAvgPool2d((3, 3))
        self.classifier = nn.Sequential(
            OrderedDict(
                drop1=nn.Dropout(dropout),
                fc1=nn.Linear(64 * 3 * 3, 256),
                relu6=nn.ReLU(),
                drop2=nn.Dropout(dropout),
                fc2=nn.Linear(256, 128),
                relu7=nn.ReLU(),
                fc3=nn.Linear(128, num_classes),
            )
        )
        # He initialisation keeps the signal alive through eight ReLU layers; with PyTorch's
        # default (uniform, gain 1/sqrt(3)) the logits start near zero and small batches stall.
        for m in self.modules():
            if isinstance(m, nn.Conv2d | nn.Linear) and m is not self.classifier.fc3:
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
                nn.init.zeros_(m.bias)  # type: ignore[arg-type]  # every layer here has a bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))
