"""Atypical inputs on purpose: plant corrupted images into an image dataset, seeded.

:func:`plant` replaces a random share of a dataset's images with corrupted copies of
themselves (inverted polarity, blank, shifted, rotated by 180°, heavy noise, shrunk, a bright
patch) and returns the new dataset together with where and what was planted, so a detector of
atypical inputs can be scored against the truth (``benchmarks/bench_atypical.py``, the demo).
:func:`corrupt_images` applies one kind to a batch of images. Labels are kept: a corrupted
image keeps its class, as a mislabelled scan or a broken camera frame would.

Every corruption works in each image's own pixel range, so it applies to raw ``[0, 1]`` images
and to standardised ones alike: the *background* of an image is its median pixel (the digits
and silhouettes of :mod:`filterscope.data` cover less than half of the frame), its *ink* its
largest pixel.

Examples
--------
>>> from filterscope.data import digits
>>> from filterscope.data.corrupt import plant
>>> planted = plant(digits("train"), "inverted", rate=0.03, seed=0)
>>> len(planted.index), planted.kinds[0], planted.data.x.shape
(15, 'inverted', torch.Size([500, 1, 32, 32]))
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import TensorDataset

from filterscope.errors import InvalidDataError, InvalidParameterError

__all__ = ["CORRUPTIONS", "Planted", "corrupt_images", "plant"]

#: The kinds of corruption, in a fixed order.
CORRUPTIONS: tuple[str, ...] = (
    "inverted",
    "blank",
    "shifted",
    "rotated",
    "noise",
    "scaled",
    "patch",
)


@dataclass(frozen=True)
class Planted:
    """A dataset with corrupted images planted in it, and the truth about them.

    Attributes
    ----------
    data : torch.utils.data.TensorDataset
        The dataset with the planted images in place (same type, labels, sample ids and class
        names as the input when it is an :class:`~filterscope.data.ImageDataset`; a new
        ``TensorDataset(x, y)`` otherwise).
    index : numpy.ndarray
        int64 positions of the planted images in the dataset, sorted.
    kinds : tuple of str
        The corruption applied at each position of ``index``.
    sample_ids : numpy.ndarray
        int64 ``sample_ids`` of the planted images (the dataset's own ids when it has them,
        else the positions).
    """

    data: TensorDataset
    index: np.ndarray
    kinds: tuple[str, ...]
    sample_ids: np.ndarray

    def ids_of(self, kind: str) -> np.ndarray:
        """Sample ids of the images planted with ``kind``."""
        mask = np.array([k == kind for k in self.kinds], dtype=bool)
        return self.sample_ids[mask] if len(mask) else self.sample_ids[:0]


def corrupt_images(x: torch.Tensor, kind: str, *, seed: int | None = 0) -> torch.Tensor:
    """Return corrupted copies of images ``(N, C, H, W)``; the input is not changed.

    Parameters
    ----------
    x : torch.Tensor
        Floating-point images ``(N, C, H, W)``.
    kind : str
        One of :data:`CORRUPTIONS`:

        * ``"inverted"`` — polarity inverted within each image's range (``min + max − x``);
        * ``"blank"`` — every pixel set to the image's background (its median);
        * ``"shifted"`` — content moved by 40 % of the side (random direction per image),
          background filled in;
        * ``"rotated"`` — rotated by 180°;
        * ``"noise"`` — Gaussian noise with 1.5 × the image's pixel standard deviation added;
        * ``"scaled"`` — content shrunk to half its size about the centre;
        * ``"patch"`` — a square of a quarter of the side at the image's largest value, in a
          random corner.
    seed : int or None, default=0
        Seed of the random choices (directions, noise, corners).

    Returns
    -------
    torch.Tensor
        Same shape and dtype as ``x``.

    Raises
    ------
    InvalidParameterError
        When ``kind`` is unknown.
    InvalidDataError
        When ``x`` is not a 4-D floating-point tensor.

    Examples
    --------
    >>> import torch
    >>> x = torch.arange(4.0).reshape(1, 1, 2, 2)
    >>> corrupt_images(x, "inverted")[0, 0].tolist()
    [[3.0, 2.0], [1.0, 0.0]]
    """
    _check_kind(kind)
    if not isinstance(x, torch.Tensor) or x.ndim != 4 or not x.is_floating_point():
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise InvalidDataError(
            f"images must be a floating-point tensor (N, C, H, W), got {shape}; convert with "
            "torch.as_tensor(images, dtype=torch.float32) and add a channel axis if needed."
        )
    n, _, h, w = x.shape
    if n == 0:
        return x.clone()
    gen = torch.Generator().manual_seed(0 if seed is None else int(seed))
    flat = x.reshape(n, -1)
    lo = flat.min(dim=1).values.view(n, 1, 1, 1)
    hi = flat.max(dim=1).values.view(n, 1, 1, 1)
    background = flat.median(dim=1).values.view(n, 1, 1, 1)
    if kind == "inverted":
        return lo + hi - x
    if kind == "blank":
        return background.expand_as(x).clone()
    if kind == "rotated":
        return torch.flip(x, dims=(2, 3))
    if kind == "noise":
        std = flat.std(dim=1).view(n, 1, 1, 1)
        noise = torch.randn(x.shape, generator=gen, dtype=torch.float32).to(x.dtype)
        return x + 1.5 * std * noise
    if kind == "shifted":
        out = background.expand_as(x).clone()
        dy, dx = round(0.4 * h), round(0.4 * w)
        moves = [(dy, 0), (-dy, 0), (0, dx), (0, -dx)]
        choice = torch.randint(0, 4, (n,), generator=gen).tolist()
        for i, c in enumerate(choice):
            my, mx = moves[c]
            src_y = slice(max(0, -my), h - max(0, my))
            dst_y = slice(max(0, my), h - max(0, -my))
            src_x = slice(max(0, -mx), w - max(0, mx))
            dst_x = slice(max(0, mx), w - max(0, -mx))
            out[i, :, dst_y, dst_x] = x[i, :, src_y, src_x]
        return out
    if kind == "scaled":
        sh, sw = max(1, h // 2), max(1, w // 2)
        small = F.interpolate(x, size=(sh, sw), mode="bilinear", align_corners=False)
        out = background.expand_as(x).clone()
        top, left = (h - sh) // 2, (w - sw) // 2
        out[:, :, top : top + sh, left : left + sw] = small
        return out
    # patch
    out = x.clone()
    ph, pw = max(1, h // 4), max(1, w // 4)
    corner = torch.randint(0, 4, (n,), generator=gen).tolist()
    for i, c in enumerate(corner):
        top = 1 if c < 2 else h - ph - 1
        left = 1 if c % 2 == 0 else w - pw - 1
        top, left = max(0, top), max(0, left)
        out[i, :, top : top + ph, left : left + pw] = hi[i]
    return out


def plant(
    data: Any,
    kinds: str | Sequence[str] = "inverted",
    rate: float = 0.03,
    *,
    seed: int | None = 0,
) -> Planted:
    """Replace a random share of a dataset's images with corrupted copies.

    For each kind, ``round(rate · N)`` images (at least one) are drawn without replacement with
    ``numpy.random.default_rng(seed)`` from the images not yet planted and replaced by
    :func:`corrupt_images` of themselves; labels and sample ids are kept. The same data, kinds,
    rate and seed always plant the same images the same way.

    Parameters
    ----------
    data : ImageDataset, TensorDataset or torch.Tensor
        Images ``(N, C, H, W)`` (a dataset's first tensor); a dataset's other tensors (labels)
        are carried over.
    kinds : str or sequence of str, default="inverted"
        One or more of :data:`CORRUPTIONS`; each plants ``rate · N`` images.
    rate : float, default=0.03
        Share of the images planted per kind, in (0, 1); all kinds together must not exceed
        the dataset.
    seed : int or None, default=0
        Seed of the choice of images and of the corruptions' random parts.

    Returns
    -------
    Planted

    Raises
    ------
    InvalidParameterError
        When a kind is unknown, ``rate`` is outside (0, 1), or the kinds need more images than
        the dataset holds.
    InvalidDataError
        When ``data`` holds no 4-D floating-point images.

    Examples
    --------
    >>> import torch
    >>> planted = plant(torch.rand(100, 1, 8, 8), ["blank", "noise"], rate=0.05, seed=1)
    >>> planted.index.shape, sorted(set(planted.kinds))
    ((10,), ['blank', 'noise'])
    """
    names = [kinds] if isinstance(kinds, str) else list(kinds)
    if not names:
        raise InvalidParameterError(f"kinds is empty; pass one or more of {CORRUPTIONS}.")
    for kind in names:
        _check_kind(kind)
    if len(set(names)) != len(names):
        raise InvalidParameterError(f"kinds lists a kind more than once: {names}.")
    if isinstance(rate, bool) or not isinstance(rate, int | float) or not 0 < rate < 1:
        raise InvalidParameterError(
            f"rate must be a share of the images in (0, 1), e.g. 0.03 for 3 %, got {rate!r}."
        )
    rest: tuple[torch.Tensor, ...] = ()
    if isinstance(data, torch.Tensor):
        x = data
    elif isinstance(data, TensorDataset):
        x, rest = data.tensors[0], tuple(data.tensors[1:])
    else:
        raise InvalidDataError(
            f"data must be an ImageDataset, a TensorDataset or a tensor of images, got "
            f"{type(data).__name__}."
        )
    if x.ndim != 4 or not x.is_floating_point():
        raise InvalidDataError(
            f"data must hold floating-point images (N, C, H, W), got {x.dtype} of shape "
            f"{tuple(x.shape)}."
        )
    n = len(x)
    per_kind = max(1, round(rate * n))
    if per_kind * len(names) > n:
        raise InvalidParameterError(
            f"{len(names)} kinds at rate {rate} need {per_kind * len(names)} images, but the "
            f"dataset holds {n}; lower the rate or plant fewer kinds."
        )
    rng = np.random.default_rng(seed)
    chosen = rng.choice(n, size=per_kind * len(names), replace=False)
    new_x = x.clone()
    index_parts: list[np.ndarray] = []
    kind_parts: list[str] = []
    for j, kind in enumerate(names):
        idx = np.sort(chosen[j * per_kind : (j + 1) * per_kind]).astype(np.int64)
        sub_seed = int(rng.integers(2**31))
        new_x[torch.from_numpy(idx)] = corrupt_images(x[torch.from_numpy(idx)], kind, seed=sub_seed)
        index_parts.append(idx)
        kind_parts += [kind] * len(idx)
    index = np.concatenate(index_parts)
    order = np.argsort(index, kind="stable")
    index = index[order]
    kinds_out = tuple(kind_parts[i] for i in order)
    ids = getattr(data, "sample_ids", None)
    sample_ids = np.asarray(ids, dtype=np.int64)[index] if ids is not None else index.copy()
    return Planted(
        data=_rebuild(data, new_x, rest), index=index, kinds=kinds_out, sample_ids=sample_ids
    )


def _rebuild(data: Any, x: torch.Tensor, rest: tuple[torch.Tensor, ...]) -> TensorDataset:
    from filterscope.data.datasets import ImageDataset

    if isinstance(data, ImageDataset):
        return ImageDataset(
            x,
            data.y,
            sample_ids=data.sample_ids,
            class_names=data.class_names,
            name=data.name,
            split=data.split,
        )
    return TensorDataset(x, *rest)


def _check_kind(kind: Any) -> None:
    if kind not in CORRUPTIONS:
        raise InvalidParameterError(
            f"unknown corruption {kind!r}; choose from {', '.join(CORRUPTIONS)}."
        )
