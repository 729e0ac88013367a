"""The layer table: which modules the recorder tracks and how their weights split into filters.

A layer is a module with its own ``weight`` parameter. Normalisation layers (batch, instance,
group, layer and RMS norm) are listed but get no statistics, as in DeepTracker. A filter is one
output channel (or output unit) of a layer's weight: ``weight[c]`` for convolutions and linear
layers, the matching output-channel slice for transposed convolutions. Biases are not part of
any statistic.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from filterscope.errors import InvalidModelError
from filterscope.log.hierarchy import Hierarchy, resolve_hierarchy

_NORM_TYPES: tuple[type[nn.Module], ...] = (
    nn.modules.batchnorm._NormBase,
    nn.GroupNorm,
    nn.LayerNorm,
    nn.RMSNorm,
)


@dataclass(frozen=True)
class Layer:
    """One tracked module.

    Attributes
    ----------
    name : str
        Module name (the class name for a model that is itself a single layer).
    kind : str
        Module class name, e.g. ``"Conv2d"``.
    stage, block : str
        Position in the stage → block → layer tree.
    filters : int
        Number of output filters (channels or units).
    fan_in : int
        Number of weights per filter.
    has_stats : bool
        False for normalisation layers, which are listed but not measured.
    weight : torch.nn.Parameter
        The layer's weight parameter.
    """

    name: str
    kind: str
    stage: str
    block: str
    filters: int
    fan_in: int
    has_stats: bool
    weight: nn.Parameter = field(repr=False, compare=False)
    transposed_groups: int = field(default=0, repr=False)

    def filter_rows(self, tensor: torch.Tensor) -> torch.Tensor:
        """The weight-shaped ``tensor`` (weight or gradient) as ``(filters, fan_in)``."""
        if self.transposed_groups:
            # ConvTranspose weights are (in, out / groups, *kernel): regroup so that rows are
            # output channels, each holding the weights that produce that channel.
            g = self.transposed_groups
            t = tensor.reshape(g, tensor.shape[0] // g, tensor.shape[1], -1)
            return t.transpose(1, 2).reshape(self.filters, self.fan_in)
        return tensor.reshape(self.filters, self.fan_in)


def unwrap_model(model: nn.Module) -> nn.Module:
    """The user's module inside DistributedDataParallel, DataParallel or torch.compile wrappers."""
    while True:
        if isinstance(model, nn.parallel.DistributedDataParallel | nn.DataParallel):
            model = model.module
        elif hasattr(model, "_orig_mod") and isinstance(model._orig_mod, nn.Module):
            model = model._orig_mod
        else:
            return model


def discover_layers(model: nn.Module, hierarchy: Hierarchy | None = None) -> list[Layer]:
    """Every module of ``model`` that owns a ``weight`` parameter, in module order.

    Parameters
    ----------
    model : torch.nn.Module
        The (unwrapped) model.
    hierarchy : mapping or callable, optional
        Stage/block override, see :func:`filterscope.log.hierarchy.resolve_hierarchy`.

    Returns
    -------
    list of Layer

    Raises
    ------
    InvalidModelError
        If no module with weights, other than normalisation layers, exists.

    Examples
    --------
    >>> from torch import nn
    >>> net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(4, 2))
    >>> [(l.name, l.kind, l.filters, l.fan_in, l.has_stats) for l in discover_layers(net)]
    [('0', 'Conv2d', 4, 9, True), ('1', 'BatchNorm2d', 4, 1, False), ('3', 'Linear', 2, 4, True)]
    """
    found: list[tuple[str, nn.Module, nn.Parameter]] = []
    seen: set[int] = set()
    for name, module in model.named_modules():
        weight = module._parameters.get("weight")
        # Tied weights are tracked once, under the first module that owns them.
        if weight is None or id(weight) in seen:
            continue
        seen.add(id(weight))
        found.append((name or type(module).__name__, module, weight))
    if not any(not isinstance(module, _NORM_TYPES) for _, module, _ in found):
        raise InvalidModelError(
            f"{type(model).__name__} has no layer with weights to record (expected at least one "
            "Conv1d/2d/3d, Linear or other module with a 'weight' parameter, found "
            f"{[n for n, _, _ in found] or 'none'}); pass the network itself, not a container "
            "without parameters."
        )
    tree = resolve_hierarchy([n for n, _, _ in found], hierarchy)
    layers = []
    for (name, module, weight), (stage, block) in zip(found, tree, strict=True):
        has_stats = not isinstance(module, _NORM_TYPES)
        groups = 0
        if isinstance(module, nn.modules.conv._ConvTransposeNd):
            groups = module.groups
            filters = weight.shape[1] * groups
        else:
            filters = weight.shape[0] if weight.ndim else 1
        layers.append(
            Layer(
                name=name,
                kind=type(module).__name__,
                stage=stage,
                block=block,
                filters=int(filters),
                fan_in=int(weight.numel() // max(filters, 1)),
                has_stats=has_stats,
                weight=weight,
                transposed_groups=groups,
            )
        )
    return layers
