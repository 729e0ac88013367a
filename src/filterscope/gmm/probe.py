"""Probe sets: the N samples whose feature maps the GMM engine analyses.

:func:`select_samples` reads a data source (a map-style or iterable ``Dataset``, a
``DataLoader``, a tensor or array of inputs, or an ``(x, y)`` pair) and chooses ``N`` samples
from it deterministically, returning a :class:`ProbeSet` of inputs, sample ids and labels.
:func:`~filterscope.gmm.extract.extract` captures the feature maps of these samples and the
hypothesis experiments (:mod:`filterscope.gmm.hypotheses`) evaluate on them.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, IterableDataset

from filterscope.errors import InvalidDataError, InvalidParameterError

__all__ = ["ProbeSet", "select_samples"]


@dataclass(frozen=True)
class ProbeSet:
    """The probe samples chosen from a data source, in a fixed order.

    Attributes
    ----------
    x : torch.Tensor
        Inputs ``(N, ...)`` on the CPU.
    sample_id : numpy.ndarray
        int64 id of every sample: the dataset's ``sample_ids`` attribute when it has one (the
        datasets of :mod:`filterscope.data` do), else its index in the data source.
    label : numpy.ndarray
        int64 label of every sample, -1 where the data source has no labels.
    y : torch.Tensor or None
        The targets as given (for losses), or None.
    """

    x: torch.Tensor
    sample_id: np.ndarray
    label: np.ndarray
    y: torch.Tensor | None = None

    def __len__(self) -> int:
        return len(self.sample_id)


def select_samples(
    data: Any, n_samples: int | None = 512, random_state: int | None = 0
) -> ProbeSet:
    """Choose ``n_samples`` probe samples from a data source, deterministically.

    When the source holds more than ``n_samples`` samples, ``n_samples`` indices are drawn
    without replacement with ``numpy.random.default_rng(random_state)`` and sorted, so the same
    source and seed always give the same samples in source order; otherwise every sample is
    used. An iterable-style source (no length) gives its first ``n_samples`` samples.

    Parameters
    ----------
    data : Dataset, DataLoader, Tensor, ndarray or tuple (x, y)
        A map-style ``torch.utils.data.Dataset`` whose items are ``x`` or ``(x, y, ...)``; a
        ``DataLoader`` (its dataset is used, not its shuffling or batch size); a tensor or array
        of inputs ``(M, ...)`` (no labels); or an ``(x, y)`` pair of inputs and integer labels.
    n_samples : int or None, default=512
        Number of samples to take; None takes all.
    random_state : int or None, default=0
        Seed of the selection.

    Returns
    -------
    ProbeSet

    Raises
    ------
    InvalidParameterError
        When ``n_samples`` is neither None nor an integer ≥ 2.
    InvalidDataError
        When the data cannot be read, or holds fewer than 2 samples.

    Examples
    --------
    >>> import torch
    >>> from filterscope.gmm.probe import select_samples
    >>> probe = select_samples((torch.zeros(10, 1, 4, 4), torch.arange(10)), n_samples=3)
    >>> probe.x.shape, probe.sample_id.tolist() == sorted(probe.sample_id.tolist())
    (torch.Size([3, 1, 4, 4]), True)
    """
    if n_samples is not None and (
        not isinstance(n_samples, int | np.integer) or isinstance(n_samples, bool) or n_samples < 2
    ):
        raise InvalidParameterError(
            f"n_samples must be None (every sample) or an integer ≥ 2 (PCA needs a spread of "
            f"samples), got {n_samples!r}."
        )
    if isinstance(data, DataLoader):
        if isinstance(data.dataset, IterableDataset) or not hasattr(data.dataset, "__len__"):
            return _take_first(iter(data), n_samples)
        data = data.dataset

    if isinstance(data, torch.Tensor | np.ndarray):
        x, y = _as_tensor(data, "inputs"), None
    elif isinstance(data, tuple | list) and len(data) == 2 and not isinstance(data[0], int):
        x, y = _as_tensor(data[0], "inputs"), _as_tensor(data[1], "labels")
        if len(y) != len(x):
            raise InvalidDataError(
                f"inputs and labels differ in length: {len(x)} inputs, {len(y)} labels; pass "
                "(x, y) with one label per input."
            )
    elif isinstance(data, Dataset) and hasattr(data, "__len__"):
        idx = _choose(len(data), n_samples, random_state)
        ids = _source_ids(data, idx)
        return _stack_items([data[int(i)] for i in idx], ids)
    elif isinstance(data, IterableDataset) or hasattr(data, "__iter__"):
        return _take_first(iter(data), n_samples)
    else:
        raise InvalidDataError(
            f"cannot read probe samples from a {type(data).__name__}; pass a torch Dataset, a "
            "DataLoader, a tensor of inputs or an (inputs, labels) pair."
        )
    if x.ndim < 2:
        raise InvalidDataError(
            f"inputs must have a leading sample axis and at least one more axis, got shape "
            f"{tuple(x.shape)}; pass e.g. images shaped (samples, channels, height, width)."
        )
    idx = _choose(len(x), n_samples, random_state)
    index = torch.from_numpy(idx)
    y_sel = None if y is None else y[index]
    return ProbeSet(
        x=x[index],
        sample_id=idx.astype(np.int64),
        label=_labels_of(y_sel, len(idx)),
        y=y_sel,
    )


def _choose(m: int, n_samples: int | None, random_state: int | None) -> np.ndarray:
    if m < 2:
        raise InvalidDataError(f"the data holds {m} sample(s); at least 2 are needed.")
    if n_samples is None or n_samples >= m:
        return np.arange(m, dtype=np.int64)
    rng = np.random.default_rng(random_state)
    return np.sort(rng.choice(m, size=n_samples, replace=False)).astype(np.int64)


def _source_ids(data: Any, idx: np.ndarray) -> np.ndarray:
    ids = getattr(data, "sample_ids", None)
    if ids is not None and len(ids) == len(data):
        return np.asarray(ids, dtype=np.int64)[idx]
    return idx


def _as_tensor(value: Any, what: str) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu()
    try:
        return torch.as_tensor(np.asarray(value))
    except (TypeError, ValueError) as err:
        raise InvalidDataError(
            f"{what} must be a tensor or numeric array, got {type(value).__name__}: {err}."
        ) from err


def _split_item(item: Any) -> tuple[Any, Any]:
    if isinstance(item, tuple | list):
        if len(item) == 0:
            raise InvalidDataError("the data yielded an empty item; expected x or (x, y, ...).")
        return item[0], item[1] if len(item) > 1 else None
    return item, None


def _stack_items(items: Sequence[Any], ids: np.ndarray) -> ProbeSet:
    xs, ys = zip(*(_split_item(item) for item in items), strict=True)
    try:
        x = torch.stack([_as_tensor(v, "inputs") for v in xs])
    except RuntimeError as err:
        raise InvalidDataError(
            f"the probe samples have different shapes and cannot be batched: {err}; make every "
            "input the same shape (e.g. resize the images)."
        ) from err
    y = None if any(v is None for v in ys) else torch.stack([_as_tensor(v, "labels") for v in ys])
    return ProbeSet(x=x, sample_id=ids.astype(np.int64), label=_labels_of(y, len(ids)), y=y)


def _take_first(batches: Iterator[Any], n_samples: int | None) -> ProbeSet:
    xs: list[torch.Tensor] = []
    ys: list[torch.Tensor] = []
    has_y = True
    total = 0
    for batch in batches:
        x, y = _split_item(batch)
        x = _as_tensor(x, "inputs")
        xs.append(x)
        has_y = has_y and y is not None
        if y is not None:
            ys.append(_as_tensor(y, "labels"))
        total += len(x)
        if n_samples is not None and total >= n_samples:
            break
    if total < 2:
        raise InvalidDataError(f"the data yielded {total} sample(s); at least 2 are needed.")
    n = total if n_samples is None else min(total, n_samples)
    x_all = torch.cat(xs)[:n]
    y_all = torch.cat(ys)[:n] if has_y and ys else None
    return ProbeSet(
        x=x_all, sample_id=np.arange(n, dtype=np.int64), label=_labels_of(y_all, n), y=y_all
    )


def _labels_of(y: torch.Tensor | None, n: int) -> np.ndarray:
    if y is None:
        return np.full(n, -1, dtype=np.int64)
    if y.ndim != 1 or y.is_floating_point() or y.is_complex():
        # Soft labels, one-hot rows or regression targets: keep them for losses, but there is
        # no class label to show.
        return np.full(n, -1, dtype=np.int64)
    return y.numpy().astype(np.int64)
