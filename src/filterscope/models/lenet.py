"""LeNet-5 (conv 6@5×5 → pool → conv 16@5×5 → pool → fc 120 → 84 → classes)."""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from filterscope.errors import InvalidModelError


class LeNet5(nn.Module):
    """LeNet-5 with ReLU activations and max pooling.

    The classic layout for 32×32 inputs; 28×28 inputs (MNIST-style) get a 2-pixel padding on the
    first convolution so every later shape matches the 32×32 network. Smaller images should be
    upsampled by the dataset (``filterscope.data.digits(size=32)`` does this for the 8×8 digits).

    Module names: ``features.conv1``, ``features.conv2`` (convolutions) and ``classifier.fc1``,
    ``classifier.fc2``, ``classifier.fc3`` (fully connected layers).

    Parameters
    ----------
    in_channels : int, default=1
        Number of input image channels.
    num_classes : int, default=10
        Number of output logits.
    input_size : int, default=32
        Side length of the square input images; at least 12.

    Examples
    --------
    >>> import torch
    >>> from filterscope.models import LeNet5
    >>> LeNet5(input_size=28)(torch.zeros(4, 1, 28, 28)).shape
    torch.Size([4, 10])
    """

    def __init__(self, in_channels: int = 1, num_classes: int = 10, input_size: int = 32) -> None:
        super().__init__()
        if input_size < 12:
            raise InvalidModelError(
                f"LeNet5 needs input images of at least 12×12 pixels, got input_size={input_size}; "
                "upsample the images (e.g. filterscope.data.digits(size=32))."
            )
        self.in_channels = in_channels
        self.num_classes = num_classes
        self.input_size = input_size
        # 28×28 MNIST-style inputs are padded to the 32×32 geometry LeNet-5 was designed for.
        padding = 2 if input_size < 32 else 0
        side = ((input_size + 2 * padding - 4) // 2 - 4) // 2
        self.features = nn.Sequential(
            OrderedDict(
                conv1=nn.Conv2d(in_channels, 6, kernel_size=5, padding=padding),
                relu1=nn.ReLU(),
                pool1=nn.MaxPool2d(2),
                conv2=nn.Conv2d(6, 16, kernel_size=5),
                relu2=nn.ReLU(),
                pool2=nn.MaxPool2d(2),
            )
        )
        self.classifier = nn.Sequential(
            OrderedDict(
                fc1=nn.Linear(16 * side * side, 120),
                relu3=nn.ReLU(),
                fc2=nn.Linear(120, 84),
                relu4=nn.ReLU(),
                fc3=nn.Linear(84, num_classes),
            )
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.features(x), 1))
