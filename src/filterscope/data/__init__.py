"""Offline datasets and the synthetic-log generator.

Owns small image datasets that need no download (scikit-learn's 8×8 digits, the Animal-MNIST
silhouettes shipped inside the ``animal-mnist`` package) with fixed, documented, stratified
splits (:mod:`~filterscope.data.datasets`), seeded planting of corrupted images
(:mod:`~filterscope.data.corrupt`), and a generator of synthetic ImageNet-scale logs
with planted patterns (:mod:`~filterscope.data.synthetic`). Must not import the GMM engine or
any view; the synthetic generator writes through the log's store like the recorder does.

Names load on first use, so ``filterscope.data.synthetic_log`` does not import torch.

Examples
--------
>>> from filterscope.data import digits
>>> train = digits("train")
>>> train.x.shape, train.class_names[:3]
(torch.Size([500, 1, 32, 32]), ('0', '1', '2'))
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# public name -> module that defines it
_LAZY: dict[str, str] = {
    "ANIMAL_MNIST_CLASSES": "filterscope.data.datasets",
    "ANIMAL_MNIST_SPLITS": "filterscope.data.datasets",
    "CORRUPTIONS": "filterscope.data.corrupt",
    "DIGITS_SPLITS": "filterscope.data.datasets",
    "ImageDataset": "filterscope.data.datasets",
    "animal_mnist": "filterscope.data.datasets",
    "digits": "filterscope.data.datasets",
    "loaders": "filterscope.data.datasets",
    "read_numpy_pickle": "filterscope.data.datasets",
    "Planted": "filterscope.data.corrupt",
    "corrupt_images": "filterscope.data.corrupt",
    "plant": "filterscope.data.corrupt",
    "ground_truth": "filterscope.data.synthetic",
    "synthetic_log": "filterscope.data.synthetic",
}

__all__ = [
    "ANIMAL_MNIST_CLASSES",
    "ANIMAL_MNIST_SPLITS",
    "CORRUPTIONS",
    "DIGITS_SPLITS",
    "ImageDataset",
    "Planted",
    "animal_mnist",
    "corrupt_images",
    "digits",
    "ground_truth",
    "loaders",
    "plant",
    "read_numpy_pickle",
    "synthetic_log",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'filterscope.data' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


if TYPE_CHECKING:
    from filterscope.data.corrupt import CORRUPTIONS, Planted, corrupt_images, plant
    from filterscope.data.datasets import (
        ANIMAL_MNIST_CLASSES,
        ANIMAL_MNIST_SPLITS,
        DIGITS_SPLITS,
        ImageDataset,
        animal_mnist,
        digits,
        loaders,
        read_numpy_pickle,
    )
    from filterscope.data.synthetic import ground_truth, synthetic_log
