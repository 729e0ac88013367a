"""Counting helpers shared by the model tests, the benchmarks and the demo summary."""

from __future__ import annotations

from torch import nn


def conv_layers(model: nn.Module) -> list[tuple[str, nn.Conv2d]]:
    """Return every ``Conv2d`` of ``model`` with its qualified module name, in definition order.

    Examples
    --------
    >>> from filterscope.models import LeNet5, conv_layers
    >>> [name for name, _ in conv_layers(LeNet5())]
    ['features.conv1', 'features.conv2']
    """
    return [(name, m) for name, m in model.named_modules() if isinstance(m, nn.Conv2d)]


def count_conv_filters(model: nn.Module) -> int:
    """Return the number of convolution filters: the output channels summed over every ``Conv2d``.

    This is the size of the log's flat ``filter`` axis restricted to convolutions, and the number
    of per-filter mixtures the GMM engine fits.

    Examples
    --------
    >>> from filterscope.models import LeNet5, count_conv_filters
    >>> count_conv_filters(LeNet5())
    22
    """
    return sum(m.out_channels for _, m in conv_layers(model))


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Return the number of scalar parameters of ``model`` (buffers such as BN statistics excluded).

    Examples
    --------
    >>> from filterscope.models import LeNet5, count_parameters
    >>> count_parameters(LeNet5())
    61706
    """
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)
