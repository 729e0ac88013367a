"""Evaluation sets: what a user may pass, its validation, and per-sample evaluation.

An evaluation set is always read in dataset-index order through the recorder's own loader, so
sample ``i`` of the log is item ``i`` of the dataset whatever the user's loader does (shuffling,
sampling). Under ``torch.distributed`` each rank evaluates the indices ``rank, rank + world, ...``
and rank 0 gathers the results as tensors (no pickling) and puts them back in index order.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset, IterableDataset, Subset, TensorDataset

from filterscope.errors import InvalidDataError
from filterscope.log.schema import RESERVED_SET_NAMES

_DEFAULT_BATCH = 256
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
#: Rows of :func:`evaluate`'s result, in order.
RESULT_ROWS = ("pred", "correct", "p_true", "margin", "sample_loss")
#: ``pred`` of a sample whose model output is not finite (labels are never negative).
NO_PREDICTION = -1


@dataclass
class EvalSet:
    """A validated evaluation set.

    Attributes
    ----------
    name : str
        Its name in the log (``<name>_loss``, group ``eval/<name>``).
    dataset : torch.utils.data.Dataset
        Map-style dataset yielding ``(x, y)`` items.
    batch_size : int
        Evaluation batch size.
    collate_fn : callable or None
        Collate function of the user's loader, if any.
    num_workers : int
        Loader worker processes.
    labels : numpy.ndarray
        int64 label of every item.
    sample_ids : numpy.ndarray
        int64 id of every item (``dataset.sample_ids`` when present, else the index).
    class_names : tuple of str or None
        ``dataset.class_names`` when present.
    """

    name: str
    dataset: Dataset[Any]
    batch_size: int
    collate_fn: Callable[[list[Any]], Any] | None
    num_workers: int
    labels: np.ndarray
    sample_ids: np.ndarray
    class_names: tuple[str, ...] | None

    def __len__(self) -> int:
        return len(self.sample_ids)

    def loader(self, indices: Sequence[int]) -> DataLoader[Any]:
        """A loader over ``indices`` in that order."""
        kwargs: dict[str, Any] = {}
        if self.collate_fn is not None:
            kwargs["collate_fn"] = self.collate_fn
        return DataLoader(
            self.dataset,
            batch_size=self.batch_size,
            sampler=list(indices),
            num_workers=self.num_workers,
            **kwargs,
        )


def make_eval_sets(eval_sets: Any, batch_size: int | None = None) -> list[EvalSet]:
    """Normalise the ``eval_sets`` argument of :class:`~filterscope.Recorder`.

    Parameters
    ----------
    eval_sets : mapping of str to data, data, or None
        Each data is a ``DataLoader`` over a map-style dataset, a map-style ``Dataset`` of
        ``(x, y)`` items, or an ``(x, y)`` pair of tensors/arrays. A bare data (not a mapping) is
        named ``"val"``.
    batch_size : int, optional
        Evaluation batch size; default the loader's, or 256.

    Returns
    -------
    list of EvalSet
        In the mapping's order; the first is the primary set.

    Raises
    ------
    InvalidDataError
        Unusable data, labels that are not integers, or bad names.
    """
    if eval_sets is None:
        return []
    if not isinstance(eval_sets, Mapping):
        eval_sets = {"val": eval_sets}
    result = []
    for name, data in eval_sets.items():
        if not isinstance(name, str) or not _NAME.match(name) or name in RESERVED_SET_NAMES:
            raise InvalidDataError(
                f"evaluation set name {name!r} is not usable: names must be Python identifiers "
                f"(they become variables '<name>_loss') and not one of {sorted(RESERVED_SET_NAMES)}."
            )
        result.append(_make_eval_set(name, data, batch_size))
    return result


def _make_eval_set(name: str, data: Any, batch_size: int | None) -> EvalSet:
    collate_fn = None
    workers = 0
    if isinstance(data, DataLoader):
        dataset = data.dataset
        collate_fn = data.collate_fn
        workers = data.num_workers
        batch_size = batch_size or data.batch_size or _DEFAULT_BATCH
    elif isinstance(data, Dataset):
        dataset = data
    elif isinstance(data, tuple | list) and len(data) == 2:
        x, y = (torch.as_tensor(np.asarray(v)) if not torch.is_tensor(v) else v for v in data)
        if len(x) != len(y):
            raise InvalidDataError(
                f"evaluation set {name!r}: x has {len(x)} samples but y has {len(y)}; pass an "
                "(x, y) pair of equal length."
            )
        dataset = TensorDataset(x, y)
    else:
        raise InvalidDataError(
            f"evaluation set {name!r} is a {type(data).__name__}; expected a DataLoader, a "
            "map-style Dataset of (x, y) items, or an (x, y) pair of tensors."
        )
    if isinstance(dataset, IterableDataset) or not hasattr(dataset, "__len__"):
        raise InvalidDataError(
            f"evaluation set {name!r} wraps an iterable-style dataset; the log needs a fixed, "
            "indexable set of samples (a map-style Dataset with __len__ and __getitem__)."
        )
    n = len(dataset)
    if n == 0:
        raise InvalidDataError(f"evaluation set {name!r} is empty; pass at least one sample.")
    batch_size = int(batch_size or _DEFAULT_BATCH)
    ev = EvalSet(
        name=name,
        dataset=dataset,
        batch_size=batch_size,
        collate_fn=collate_fn,
        num_workers=workers,
        labels=np.empty(0, dtype=np.int64),
        sample_ids=np.arange(n, dtype=np.int64),
        class_names=None,
    )
    ev.labels = _labels(ev)
    ids = getattr(dataset, "sample_ids", None)
    if ids is not None:
        ids = np.asarray(ids)
        if ids.shape == (n,) and ids.dtype.kind in "iu":
            ev.sample_ids = ids.astype(np.int64)
    names = getattr(dataset, "class_names", None)
    if names is not None:
        ev.class_names = tuple(str(c) for c in names)
    return ev


def _dataset_labels(dataset: Any) -> Any:
    if isinstance(dataset, TensorDataset) and len(dataset.tensors) >= 2:
        return dataset.tensors[1]
    if isinstance(dataset, Subset):
        inner = _dataset_labels(dataset.dataset)
        return None if inner is None else np.asarray(_as_numpy(inner))[np.asarray(dataset.indices)]
    return getattr(dataset, "targets", None)


def _as_numpy(values: Any) -> np.ndarray:
    if torch.is_tensor(values):
        return values.detach().cpu().numpy()
    return np.asarray(values)


def _labels(ev: EvalSet) -> np.ndarray:
    labels = _dataset_labels(ev.dataset)
    if labels is None:
        # No label array to read: go through the data once (without the model).
        with preserved_rng():
            parts = [_as_numpy(split_batch(b, ev.name)[1]) for b in ev.loader(range(len(ev)))]
        labels = np.concatenate(parts) if parts else np.empty(0, dtype=np.int64)
    labels = _as_numpy(labels)
    if labels.shape != (len(ev),) or labels.dtype.kind not in "iu":
        raise InvalidDataError(
            f"evaluation set {ev.name!r}: labels must be one integer class index per sample "
            f"(shape ({len(ev)},)), got dtype {labels.dtype} and shape {labels.shape}."
        )
    return labels.astype(np.int64)


def split_batch(batch: Any, name: str) -> tuple[Any, torch.Tensor]:
    """``(x, y)`` of a batch, or InvalidDataError explaining the expected form."""
    if not isinstance(batch, tuple | list) or len(batch) < 2:
        raise InvalidDataError(
            f"evaluation set {name!r} yields batches of type {type(batch).__name__}; expected "
            "(x, y) pairs (inputs, integer labels)."
        )
    x, y = batch[0], batch[1]
    if not torch.is_tensor(y):
        y = torch.as_tensor(np.asarray(y))
    return x, y


def to_device(x: Any, device: torch.device) -> Any:
    """Move a tensor, or the tensors in a (nested) list, tuple or dict, to ``device``."""
    if torch.is_tensor(x):
        return x.to(device, non_blocking=True)
    if isinstance(x, tuple | list):
        return type(x)(to_device(v, device) for v in x)
    if isinstance(x, dict):
        return {k: to_device(v, device) for k, v in x.items()}
    return x


@contextlib.contextmanager
def preserved_rng() -> Iterator[None]:
    """Restore torch's global random state (CPU and CUDA) on exit.

    Iterating a DataLoader draws a seed from the global generator even without shuffling; the
    recorder's own loaders must not shift the training run's random numbers (dropout masks,
    shuffling order).
    """
    cpu_state = torch.get_rng_state()
    cuda_state = (
        torch.cuda.get_rng_state_all()
        if torch.cuda.is_available() and torch.cuda.is_initialized()
        else None
    )
    try:
        yield
    finally:
        torch.set_rng_state(cpu_state)
        if cuda_state is not None:
            torch.cuda.set_rng_state_all(cuda_state)


@contextlib.contextmanager
def evaluation_mode(model: nn.Module) -> Iterator[None]:
    """Eval mode and :func:`preserved_rng`; every module's own training flag restored after."""
    flags = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        with preserved_rng():
            yield
    finally:
        for module, flag in flags:
            module.training = flag


def check_first_batch(model: nn.Module, ev: EvalSet, device: torch.device) -> int:
    """Run the model on the first batch of ``ev``; return its number of outputs (classes).

    Raises
    ------
    InvalidDataError
        If the batch is not ``(x, y)``, the model fails on it, or its output is not
        ``(batch, classes)``.
    """
    with preserved_rng():
        batch = next(iter(ev.loader(range(min(ev.batch_size, len(ev))))))
    x, y = split_batch(batch, ev.name)
    try:
        with evaluation_mode(model), torch.no_grad():
            out = model(to_device(x, device))
    except (RuntimeError, ValueError, TypeError, IndexError) as exc:
        shape = tuple(x.shape) if torch.is_tensor(x) else type(x).__name__
        raise InvalidDataError(
            f"the model cannot run on the first batch of evaluation set {ev.name!r} (inputs "
            f"{shape}): {exc}. Pass data shaped like the training inputs."
        ) from exc
    _check_output(out, len(y), ev.name)
    return int(out.shape[1])


def _check_output(out: Any, batch: int, name: str, classes: int | None = None) -> None:
    if not torch.is_tensor(out) or out.ndim != 2 or out.shape[0] != batch:
        shape = tuple(out.shape) if torch.is_tensor(out) else type(out).__name__
        raise InvalidDataError(
            f"on evaluation set {name!r} the model returned {shape} for a batch of {batch}; "
            "expected one row of class scores (logits) per sample: (batch, classes)."
        )
    if classes is not None and out.shape[1] != classes:
        raise InvalidDataError(
            f"on evaluation set {name!r} the model returned {out.shape[1]} class scores, but the "
            f"log has {classes} classes."
        )


def check_labels(ev: EvalSet, classes: int) -> None:
    """InvalidDataError unless every label of ``ev`` is in ``0 .. classes - 1``."""
    bad = (ev.labels < 0) | (ev.labels >= classes)
    if bad.any():
        values = np.unique(ev.labels[bad])[:10].tolist()
        raise InvalidDataError(
            f"evaluation set {ev.name!r} has labels {values} outside 0..{classes - 1} (the model "
            f"outputs {classes} class scores); labels must be class indices."
        )


def evaluate(
    model: nn.Module, ev: EvalSet, indices: np.ndarray, device: torch.device, classes: int
) -> np.ndarray:
    """Per-sample results of the model on ``ev[indices]``.

    A sample whose output row is not all finite (NaN or Inf, e.g. a diverged model) has no
    prediction: it is recorded as wrong, with ``pred`` :data:`NO_PREDICTION` and NaN
    ``p_true``, ``margin`` and ``sample_loss`` (``argmax`` of a NaN row would name class 0 and
    make a diverged model look like a guesser).

    Returns
    -------
    numpy.ndarray
        float64 ``(5, len(indices))``: rows :data:`RESULT_ROWS` (``pred``, ``correct``,
        ``p_true``, ``margin`` = true-class score minus the best other score, and the
        cross-entropy ``sample_loss``), in ``indices`` order.
    """
    parts = []
    with evaluation_mode(model), torch.no_grad():
        for batch in ev.loader(indices.tolist()):
            x, y = split_batch(batch, ev.name)
            y = y.to(device).long()
            out = model(to_device(x, device))
            _check_output(out, len(y), ev.name, classes)
            logits = out.float()
            finite = torch.isfinite(logits).all(dim=1)
            logp = F.log_softmax(logits, dim=1)
            col = y[:, None]
            lp_true = logp.gather(1, col)[:, 0]
            others = logits.scatter(1, col, -torch.inf).amax(dim=1)
            pred = torch.where(finite, logits.argmax(dim=1), NO_PREDICTION)
            scores = [lp_true.exp(), logits.gather(1, col)[:, 0] - others, -lp_true]
            rows = [pred, pred == y, *(torch.where(finite, r, torch.nan) for r in scores)]
            parts.append(torch.stack([r.double() for r in rows]))
    if not parts:
        return np.empty((len(RESULT_ROWS), 0))
    return torch.cat(parts, dim=1).cpu().numpy()


#: Longest side of a stored thumbnail, in pixels.
THUMBNAIL_SIDE = 64


def thumbnail_shape(height: int, width: int, side: int = THUMBNAIL_SIDE) -> tuple[int, int]:
    """``(rows, columns)`` of the thumbnail of a ``height × width`` image: the longer side at
    most ``side``, the aspect kept (each side at least 1); images that fit keep their size.

    Examples
    --------
    >>> thumbnail_shape(224, 224), thumbnail_shape(8, 8), thumbnail_shape(100, 300)
    ((64, 64), (8, 8), (21, 64))
    """
    longest = max(height, width)
    if longest <= side:
        return height, width
    return max(1, round(height * side / longest)), max(1, round(width * side / longest))


def image_thumbnails(x: Any, side: int = THUMBNAIL_SIDE) -> np.ndarray | None:
    """uint8 thumbnails ``(N, rows, columns, channels)`` of a batch of images, or None.

    ``x`` is ``(N, C, H, W)`` with 1 (grayscale), 3 (RGB) or 4 channels (RGBA: the alpha is
    dropped), or ``(N, H, W)`` (grayscale). Larger images are shrunk by area averaging to
    :func:`thumbnail_shape`; each thumbnail is then min-max scaled over all its pixels and
    channels to 0..255 (a constant image is all 0), so normalised inputs show with full contrast.
    Anything else (not a floating or integer tensor of those shapes) gives None: not an image.
    """
    if not torch.is_tensor(x) or x.dtype == torch.bool or x.is_complex():
        return None
    if x.ndim == 3:
        x = x[:, None]
    if x.ndim != 4 or x.shape[1] not in (1, 3, 4) or min(x.shape[2:]) < 1:
        return None
    x = x[:, :3].detach().to("cpu", torch.float64)
    rows, cols = thumbnail_shape(int(x.shape[2]), int(x.shape[3]), side)
    if (rows, cols) != tuple(x.shape[2:]):
        x = F.adaptive_avg_pool2d(x, (rows, cols))
    flat = x.reshape(len(x), -1)
    finite = torch.isfinite(flat)
    lo = torch.where(finite, flat, torch.inf).amin(dim=1)
    hi = torch.where(finite, flat, -torch.inf).amax(dim=1)
    lo, hi = torch.where(hi >= lo, lo, 0.0), torch.where(hi >= lo, hi, 0.0)  # none finite
    span = torch.where(hi > lo, hi - lo, torch.ones_like(hi))
    scaled = (torch.where(finite, flat, lo[:, None]) - lo[:, None]) / span[:, None] * 255.0
    out = scaled.clamp(0, 255).round().to(torch.uint8).reshape(x.shape)
    return out.permute(0, 2, 3, 1).contiguous().numpy()


def thumbnails(ev: EvalSet, side: int = THUMBNAIL_SIDE) -> np.ndarray | None:
    """Thumbnails of every sample of ``ev`` in index order (:func:`image_thumbnails`), or None
    when its inputs are not images (or not all of one size)."""
    parts: list[np.ndarray] = []
    with preserved_rng():
        for batch in ev.loader(range(len(ev))):
            thumbs = image_thumbnails(split_batch(batch, ev.name)[0], side)
            if thumbs is None or (parts and thumbs.shape[1:] != parts[0].shape[1:]):
                return None
            parts.append(thumbs)
    return np.concatenate(parts) if parts else None
