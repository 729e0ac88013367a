"""Feature-map extraction: probe samples → per-filter feature maps → 2-D PCA coordinates.

For every hooked layer ``l`` with ``C`` filters the feature maps of ``N`` probe samples form a
tensor ``(C, N, H·W)``; each filter's ``(N, H·W)`` matrix is centred over the samples and reduced
to its top two principal components, all ``C`` filters at once, on the device that ran the
model. Only the ``(C, N, 2)`` coordinates leave the device (arXiv 2412.10457, D^l ∈ R^{N×C×2}).

Memory and passes
-----------------
A layer's activations ``(C, N, H·W)`` are needed all at once (PCA is over samples), and a deep
network's activations for all layers do not fit anywhere (ResNet-50: 42 MB per 224² image, so
21 GB for N = 512). :func:`extract` therefore plans *groups* of consecutive layers (in execution
order) whose buffers fit ``max_memory`` bytes, and runs one forward pass over the probe samples
per group, stopped right after the group's last layer. Within a group all layers are captured
in the same pass, straight into preallocated ``(C, N, H·W)`` buffers; after the pass each layer
is reduced and its buffer freed.

* Small networks (every layer fits the budget) take one pass: extraction costs a forward pass
  plus the PCA.
* ``max_memory=0`` holds exactly one layer's activations at a time, at the cost of one
  (truncated) pass per layer, about ``L/2`` full forward passes for ``L`` evenly spread layers.
* In between, the time is the sum of the groups' prefix passes and the peak memory is
  ``max(max_memory, largest layer) + the probe inputs + the model's own forward workspace``.

The default budget (2 GiB) keeps small networks at one pass, which matters more for time than
the strict one-layer rule does for memory. Measured on a 2-core CPU with ``resnet50_like`` at
224² (26,560 filters, batch 32): N = 128 took 3 passes and 2.80 GiB peak RSS, N = 384 10 passes
and 3.13 GiB: the peak follows the budget, not N (``benchmarks/bench_extract.py --rss``).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch
import xarray as xr
from torch import nn
from torch.utils.data import DataLoader, Dataset, IterableDataset

from filterscope.errors import InvalidDataError, InvalidModelError, NonFiniteError

__all__ = ["DEFAULT_MAX_MEMORY", "ProbeSet", "extract", "pca_2d", "select_samples"]

Where = Literal["output", "activation"]
PCAMethod = Literal["randomized", "full"]

#: Default byte budget for the activations held at once on the device (see the module docstring).
DEFAULT_MAX_MEMORY = 2 * 1024**3

# PCA solver settings (see pca_2d and docs/performance.md). At N = 512 every filter of LeNet-5
# and SimpleCNN (real images) keeps ≥ 99.996 % of the exact top-2 variance, resnet18_small on
# noise images (nearly flat spectra, the hard case) ≥ 95.1 % (the previous range finder with 10
# passes: 99.99 % and 92.5 %; scikit-learn's default solver: 100 % and 96 %).
_GRAM_MAX = 128  # Gram side up to which one Gram product beats the passes over X
# Krylov blocks of 4 directions, 5 deep: 10 thin passes over X, 20 directions. A product with 4
# columns takes about 60 % of the time of one with 16 (a quarter of the flops, at a lower rate),
# so this is faster than 3 blocks of 16 and, of higher degree, more accurate where the spectrum
# is flat: 95.1 % against 94.6 % (6 deep: 96.9 %, but 15 % slower).
_BLOCK = 4
_DEPTH = 5
_RITZ = 8  # directions of the iterative solver for small symmetric problems
_RITZ_STEPS = 4  # its subspace steps with the 4th power of the problem
_EXACT_MAX = 16  # small problems up to this side are solved exactly
# Filters reduced together: on a CPU a chunk stays in the cache across the passes over it.
_CPU_CHUNK_BYTES = 8 * 1024**2
_DEVICE_CHUNK_BYTES = 1024**3

_NORMALISATION = (
    nn.modules.batchnorm._NormBase,
    nn.GroupNorm,
    nn.LayerNorm,
    nn.LocalResponseNorm,
)
_ACTIVATIONS = (
    nn.ReLU,
    nn.ReLU6,
    nn.LeakyReLU,
    nn.PReLU,
    nn.ELU,
    nn.SELU,
    nn.CELU,
    nn.GELU,
    nn.SiLU,
    nn.Mish,
    nn.Hardswish,
    nn.Hardsigmoid,
    nn.Hardtanh,
    nn.Sigmoid,
    nn.Tanh,
    nn.Softplus,
)


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

    Examples
    --------
    >>> import torch
    >>> from filterscope.gmm.extract import select_samples
    >>> probe = select_samples((torch.zeros(10, 1, 4, 4), torch.arange(10)), n_samples=3)
    >>> probe.x.shape, probe.sample_id.tolist() == sorted(probe.sample_id.tolist())
    (torch.Size([3, 1, 4, 4]), True)
    """
    if n_samples is not None and (not isinstance(n_samples, int | np.integer) or n_samples < 2):
        raise InvalidDataError(
            f"n_samples must be an integer of at least 2 (PCA needs a spread of samples), got "
            f"{n_samples!r}."
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


# --- batched PCA ---------------------------------------------------------------------------


def pca_2d(
    maps: torch.Tensor,
    method: PCAMethod = "randomized",
    random_state: int | None = 0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Reduce every filter's ``(N, H·W)`` feature maps to 2-D principal-component coordinates.

    Each filter's matrix ``X`` is centred over the samples (as scikit-learn's ``PCA`` does) and
    projected onto its two leading principal axes, for all ``C`` filters at once. With
    ``D = min(N, H·W)``:

    * ``D ≤ 128``: one batched product forms each filter's Gram matrix ``XᵀX`` (H·W ≤ N) or
      ``XXᵀ`` (N < H·W), whose two leading eigenpairs are found exactly (``D ≤ 16``) or by
      subspace iteration on its 4th power (8 directions, 4 steps, then Rayleigh–Ritz; where
      the second eigenvalue is below 6 % of the first, again after deflating the first);
    * larger ``D``: a randomized block Krylov method on ``X`` itself, started from 4 of the
      samples (5 blocks of 4 directions, 10 thin passes over ``X``, then Rayleigh–Ritz on the
      20 directions), which never forms a ``D × D`` matrix;
    * ``method="full"``: the exact eigendecomposition of the Gram (float64), for reference.

    Filters are processed in chunks (on a CPU, a few MiB that stay in the cache across the
    passes). The random choices depend only on ``random_state`` and the matrix sizes, so a
    filter gets the same coordinates whether it is reduced alone or together with others. Sign
    convention: along each component, the sample farthest from the mean has a positive
    coordinate.

    Parameters
    ----------
    maps : torch.Tensor
        ``(C, N, H·W)`` feature maps (C filters, N samples); centred **in place** when float32.
    method : {"randomized", "full"}, default="randomized"
        Solver, see above.
    random_state : int or None, default=0
        Seed of the random choices (None: 0).

    Returns
    -------
    coords : torch.Tensor
        ``(C, N, 2)`` float32 coordinates on the device of ``maps``.
    explained : torch.Tensor
        ``(C,)`` float32 fraction of each filter's total variance captured by the two
        components; NaN for a filter whose maps do not vary over the samples.

    Raises
    ------
    NonFiniteError
        When a filter's maps hold NaN or Inf.

    Examples
    --------
    >>> import torch
    >>> from filterscope.gmm.extract import pca_2d
    >>> maps = torch.randn(3, 50, 16) * torch.tensor([5.0, 3.0] + [0.1] * 14)
    >>> coords, explained = pca_2d(maps)
    >>> coords.shape, bool((explained > 0.9).all())
    (torch.Size([3, 50, 2]), True)
    """
    if maps.ndim != 3:
        raise InvalidDataError(
            f"maps must be (filters, samples, features), got shape {tuple(maps.shape)}."
        )
    if method not in ("randomized", "full"):
        raise InvalidDataError(f"pca must be 'randomized' or 'full', got {method!r}.")
    return _reduce(maps, method, random_state, layer=None)


def _reduce(
    maps: torch.Tensor, method: PCAMethod, random_state: int | None, layer: str | None
) -> tuple[torch.Tensor, torch.Tensor]:
    x = maps if maps.dtype == torch.float32 else maps.float()
    c, n, hw = x.shape
    seed = 0 if random_state is None else int(random_state)
    side = min(n, hw)
    krylov = method == "randomized" and side > _GRAM_MAX
    per_filter = 4 * n * hw if krylov else 4 * n * hw + 32 * side * side  # data + Gram workspace
    budget = _CPU_CHUNK_BYTES if x.device.type == "cpu" else _DEVICE_CHUNK_BYTES
    chunks = -(-c // max(1, budget // per_filter))
    step = -(-c // chunks)  # chunks of equal size
    total = x.new_empty(c)
    parts: list[torch.Tensor] = []
    smalls: list[torch.Tensor] = []
    for start in range(0, c, step):
        chunk = x[start : start + step]
        # One pass brings the chunk into the cache; the later passes find it there.
        chunk -= chunk.mean(dim=1, keepdim=True)
        sq = torch.linalg.vector_norm(chunk, dim=(1, 2)).square()
        if not bool(torch.isfinite(sq).all()):
            raise _non_finite(x, start, sq, layer)
        total[start : start + step] = sq
        if krylov:
            basis, small = _krylov(chunk, seed)
            parts.append(basis)
            smalls.append(small)
        else:
            parts.append(_gram_coords(chunk, method == "full", seed))
    if krylov:
        # The small Rayleigh–Ritz problems of all chunks at once: one call per step.
        values, vectors = _top_eigenpairs(torch.cat(smalls), False, seed)
        weights = (vectors * values.clamp(min=0).sqrt().unsqueeze(1)).to(x.dtype)
        coords = torch.bmm(torch.cat(parts), weights)
    else:
        coords = torch.cat(parts)
    if coords.shape[-1] < 2:  # one pixel per map: the second axis does not exist, pad with 0
        coords = torch.cat([coords, coords.new_zeros(c, n, 2 - coords.shape[-1])], dim=-1)
    # A filter whose maps are equal for every sample (e.g. a dead ReLU channel) has no
    # principal axes: its samples all sit at the origin (the eigensolvers would give 0/0).
    coords = torch.where((total > 0)[:, None, None], coords, torch.zeros_like(coords))
    peak = coords.abs().argmax(dim=1, keepdim=True)
    coords = torch.where(coords.gather(1, peak) < 0, -coords, coords)
    captured = coords.square().sum(dim=(1, 2))
    explained = torch.where(total > 0, captured / total, torch.full_like(total, float("nan")))
    return coords, explained


def _non_finite(x: torch.Tensor, start: int, sq: torch.Tensor, layer: str | None) -> NonFiniteError:
    """The error for a chunk whose sum of squares is NaN or Inf (the rest is not centred yet)."""
    channel = start + int(torch.nonzero(~torch.isfinite(sq))[0, 0])
    rest = x[start + len(sq) :]
    count = int((~torch.isfinite(sq)).sum()) + int((~torch.isfinite(rest.sum(dim=(1, 2)))).sum())
    where = f"layer {layer!r}, filter {channel}" if layer is not None else f"filter {channel}"
    if bool(torch.isfinite(x[channel]).all()):
        return NonFiniteError(
            f"{where}: the feature maps are too large for float32 statistics (their sum of "
            "squares overflows); check the model's weights and the inputs' scale."
        )
    scope = " of this layer" if layer is not None else ""
    return NonFiniteError(
        f"{where} produced NaN or Inf feature maps ({count} filter(s){scope} are affected); "
        "check the model's weights (e.g. a diverged training run) and the inputs' scale."
    )


def _directions(rows: int, cols: int, seed: int, like: torch.Tensor) -> torch.Tensor:
    # Drawn on the CPU so that coordinates do not depend on the device's random generator.
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(rows, cols, generator=generator).to(device=like.device, dtype=like.dtype)


def _orthonormal(y: torch.Tensor, passes: int = 2) -> torch.Tensor:
    """Orthonormal float64 columns spanning ``y``'s (C, D, k) columns: Cholesky QR in float64;
    a second pass restores the orthogonality the first loses to rounding, and a tiny diagonal
    shift keeps rank-deficient blocks finite."""
    y = y.double()
    eye = torch.eye(y.shape[-1], dtype=y.dtype, device=y.device)
    for _ in range(passes):
        gram = torch.bmm(y.mT, y)
        shift = gram.diagonal(dim1=1, dim2=2).sum(-1) * 1e-13 + 1e-200
        factor = torch.linalg.cholesky_ex(gram + eye * shift[:, None, None]).L
        inverse = torch.linalg.solve_triangular(factor, eye.expand_as(factor), upper=False)
        y = torch.bmm(y, inverse.mT)
    return y


def _krylov(x: torch.Tensor, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Block Krylov basis ``Q`` (C, N, k·d) of centred ``x`` (C, N, HW) and the Rayleigh–Ritz
    matrix ``Qᵀ X Xᵀ Q`` (C, k·d, k·d, float64), for blocks of k = 4 directions, d = 5 deep.

    ``Q`` spans ``(X Xᵀ)ⁱ S`` for i = 1..d and k randomly chosen samples ``S``: 2·d passes over
    ``X`` (the products ``Qᵀ X`` are needed anyway for the next block).
    """
    n = x.shape[1]
    # The first block starts from samples themselves: X Xᵀ applied to them costs one pass,
    # where random sample weights would cost two, and captures as much.
    picked = torch.randperm(n, generator=torch.Generator().manual_seed(seed))[:_BLOCK]
    rows = x[:, picked.sort().values.to(x.device)]  # (C, k, HW)
    basis: torch.Tensor | None = None
    blocks = []
    for _ in range(_DEPTH):
        y = torch.bmm(x, rows.mT)  # X Xᵀ · previous block
        scale = torch.linalg.vector_norm(y, dim=1).amax(dim=1)
        if basis is not None:
            for _ in range(2):  # block Gram–Schmidt against the earlier blocks, twice
                y = y - torch.bmm(basis, torch.bmm(basis.mT, y))
        q, r = torch.linalg.qr(y)
        # Directions that were only rounding noise (the Krylov space ran out) are dropped.
        keep = r.diagonal(dim1=1, dim2=2).abs() > 1e-5 * scale.unsqueeze(1)
        q = q * keep.unsqueeze(1)
        basis = q if basis is None else torch.cat([basis, q], dim=2)
        rows = torch.bmm(q.mT, x)  # Qᵀ X
        blocks.append(rows)
    assert basis is not None
    projected = torch.cat(blocks, dim=1)
    return basis, torch.bmm(projected, projected.mT).double()


def _gram_coords(x: torch.Tensor, exact: bool, seed: int) -> torch.Tensor:
    n, hw = x.shape[1:]
    by_feature = hw <= n
    gram = torch.bmm(x.mT, x) if by_feature else torch.bmm(x, x.mT)
    values, vectors = _top_eigenpairs(gram, exact, seed)
    if by_feature:
        # X·V, computed as (Vᵀ·Xᵀ)ᵀ: far faster than a two-column product on this layout.
        return torch.bmm(vectors.mT.to(x.dtype), x.mT).mT
    # Eigenvectors of XXᵀ are the left singular vectors: the coordinates are U·σ.
    return vectors.to(x.dtype) * values.clamp(min=0).sqrt().to(x.dtype).unsqueeze(1)


def _top_eigenpairs(
    matrix: torch.Tensor, exact: bool, seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """The two leading eigenpairs of a batch of symmetric PSD matrices (fewer if the side is
    below 2), values descending: float64 ``(C, k)`` values and ``(C, D, k)`` vectors."""
    side = matrix.shape[-1]
    k = min(2, side)
    if exact or side <= _EXACT_MAX:
        values, vectors = torch.linalg.eigh(matrix.double())
        return values[..., -k:].flip(-1), vectors[..., -k:].flip(-1)
    values, vectors = _subspace_eigenpairs(matrix, seed)
    # The 4th power keeps a second eigenvalue only down to ~eps^(1/4) of the first (2 % in
    # float32). Where it is weaker, the second pair is found again with the first projected out.
    weak = values[:, 1] < 3 * torch.finfo(matrix.dtype).eps ** 0.25 * values[:, 0]
    if bool(weak.any()):
        a = matrix[weak].double()
        first = vectors[weak, :, :1]
        projector = torch.eye(side, dtype=a.dtype, device=a.device) - first @ first.mT
        second = projector @ _subspace_eigenpairs(projector @ a @ projector, seed)[1][..., :1]
        second = second / torch.linalg.vector_norm(second, dim=1, keepdim=True).clamp(min=1e-150)
        values[weak, 1] = (second.mT @ a @ second)[:, 0, 0]
        vectors[weak, :, 1] = second[..., 0]
    return values, vectors


def _subspace_eigenpairs(matrix: torch.Tensor, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    # Subspace iteration with the 4th power, then Rayleigh–Ritz on the 8 directions: a few
    # small batched products instead of one slow eigensolver per matrix. Scaled by the
    # Frobenius norm, the eigenvalues lie in [-1, 1] (a deflated matrix need not be PSD).
    side = matrix.shape[-1]
    scale = torch.linalg.matrix_norm(matrix).clamp(min=1e-30)[:, None, None]
    a = matrix / scale
    power = torch.bmm(a, a)
    power = torch.bmm(power, power)
    z = torch.matmul(power, _directions(side, _RITZ, seed, a))
    for _ in range(_RITZ_STEPS - 1):  # one Cholesky QR pass keeps the block well conditioned
        z = torch.bmm(power, _orthonormal(z, passes=1).to(a.dtype))
    z = _orthonormal(z)
    ritz = torch.linalg.eigh(torch.bmm(z.mT, torch.bmm(a, z.to(a.dtype)).double())).eigenvectors
    vectors = torch.bmm(z, ritz[..., -2:].flip(-1))
    # Where the block was rank deficient (e.g. a rank-one matrix), the shifted Cholesky QR
    # leaves it short of orthonormal: make the two vectors orthonormal, the values their
    # Rayleigh quotients (never above the true eigenvalues).
    first = vectors[..., :1] / torch.linalg.vector_norm(vectors[..., :1], dim=1, keepdim=True)
    second = vectors[..., 1:] - first * (first.mT @ vectors[..., 1:])
    second = second / torch.linalg.vector_norm(second, dim=1, keepdim=True).clamp(min=1e-150)
    vectors = torch.cat([first.nan_to_num(), second], dim=2)
    values = (vectors * (a @ vectors.to(a.dtype)).double()).sum(dim=1) * scale[..., 0].double()
    return values, vectors


# --- extraction ----------------------------------------------------------------------------


@dataclass
class _Capture:
    """Where to read one layer's feature maps during a forward pass."""

    layer: str
    module: str  # module whose forward hook provides the tensor
    call: int  # which call of that module within one forward pass
    relu: bool  # apply relu to the hooked tensor (post-activation without an activation module)
    order: int  # position in the forward pass's execution order
    channels: int = 0
    spatial: tuple[int, ...] = ()
    buffer: torch.Tensor | None = field(default=None, repr=False)

    @property
    def features(self) -> int:
        return math.prod(self.spatial)


class _StopForward(Exception):
    """Raised from a hook to end a forward pass once the last needed layer has run."""


def extract(
    model: nn.Module,
    data: Any,
    layers: Sequence[str] | None = None,
    n_samples: int | None = 512,
    device: str | torch.device | None = None,
    where: Where = "output",
    batch_size: int = 128,
    random_state: int | None = 0,
    pca: PCAMethod = "randomized",
    *,
    max_memory: int | None = DEFAULT_MAX_MEMORY,
    progress: bool | Callable[[str], None] = False,
) -> xr.Dataset:
    """Extract every filter's feature maps for probe samples and reduce them to 2-D by PCA.

    Forward hooks on every ``Conv2d`` (or the named ``layers``) capture the feature maps of
    ``n_samples`` probe samples; each filter's maps are flattened, centred and reduced to their
    two leading principal components on ``device`` (see :func:`pca_2d`). The model runs in eval
    mode under ``torch.no_grad()``; its training flags (and its device, when it had to move) are
    restored afterwards. How many forward passes are made depends on ``max_memory`` (see the
    module docstring).

    Parameters
    ----------
    model : torch.nn.Module
        A CNN; hooked layers must output ``(batch, channels, *spatial)`` tensors.
    data : Dataset, DataLoader, Tensor, ndarray or tuple (x, y)
        Where probe samples come from; see :func:`select_samples`.
    layers : sequence of str, optional
        Module names (as in ``model.named_modules()``) to analyse, in the order wanted; default
        every ``Conv2d`` in registration order.
    n_samples : int or None, default=512
        Number of probe samples, drawn deterministically with ``random_state``; None uses all.
    device : str or torch.device, optional
        Where the model runs and the PCA is computed. Default: the model's device when it is on
        a GPU, else CUDA when available, else the CPU.
    where : {"output", "activation"}, default="output"
        ``"output"``: the layer's own output. ``"activation"``: the output of the first
        activation module (ReLU, GELU, …) executed after the layer, skipping normalisation layers
        (batch norm, …) in between; when no activation module follows (e.g. ``F.relu`` inside
        ``forward``) ReLU is applied to the output of the layer, or of the normalisation layers
        that directly follow it.
    batch_size : int, default=128
        Probe samples per forward pass batch.
    random_state : int or None, default=0
        Seed of the sample selection and of the randomized PCA.
    pca : {"randomized", "full"}, default="randomized"
        PCA solver, see :func:`pca_2d`.
    max_memory : int or None, keyword-only, default=2 GiB
        Bytes of activations held at once on ``device``; layers are grouped into forward passes
        under this budget. ``0`` holds one layer at a time; None means no limit (one pass).
    progress : bool or callable, keyword-only, default=False
        True shows a tqdm bar over layers; a callable is called with each finished layer's name.

    Returns
    -------
    xarray.Dataset
        ``points(filter, sample, pc)`` float32 and ``explained_variance(filter)`` float32 (the
        fraction of the filter's variance captured by the two components, NaN when it has none),
        with coords ``filter_layer`` (str), ``filter_channel`` (int) on ``filter``, ``sample_id``,
        ``label`` on ``sample`` and ``pc = [0, 1]``; attrs ``n_samples``, ``where``, ``device``,
        ``pca``, ``random_state``, ``n_passes``.

    Raises
    ------
    InvalidModelError
        When the model has no ``Conv2d`` (and no ``layers`` are given), a name is unknown, or a
        layer does not output ``(batch, channels, ...)`` tensors.
    InvalidDataError
        When the data cannot be read or does not fit the model's input.
    NonFiniteError
        When an input or a feature map holds NaN or Inf (the message names the layer and filter).

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> from filterscope.gmm import extract
    >>> net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Conv2d(4, 2, 3))
    >>> ds = extract(net, torch.randn(64, 1, 10, 10), n_samples=32)
    >>> ds.points.shape, ds.filter_layer.values.tolist()
    ((6, 32, 2), ['0', '0', '0', '0', '2', '2'])
    """
    if not isinstance(model, nn.Module):
        raise InvalidModelError(f"model must be a torch.nn.Module, got {type(model).__name__}.")
    if where not in ("output", "activation"):
        raise InvalidDataError(f"where must be 'output' or 'activation', got {where!r}.")
    if pca not in ("randomized", "full"):
        raise InvalidDataError(f"pca must be 'randomized' or 'full', got {pca!r}.")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise InvalidDataError(f"batch_size must be a positive integer, got {batch_size!r}.")
    if max_memory is not None and max_memory < 0:
        raise InvalidDataError(f"max_memory must be ≥ 0 bytes or None, got {max_memory!r}.")
    names = _layer_names(model, layers)
    probe = select_samples(data, n_samples, random_state)
    _check_finite_inputs(probe)
    run_device = _resolve_device(model, device)

    with _evaluating(model, run_device):
        x = _match_dtype(model, probe.x)
        captures = _trace(model, names, x[: min(2, len(x))].to(run_device), where)
        groups = _plan(captures, len(probe), max_memory)
        results: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        report = _progress(progress, len(names))
        for group in groups:
            _run_group(model, group, x, run_device, batch_size)
            for cap in sorted(group, key=lambda c: c.order):
                assert cap.buffer is not None
                maps, cap.buffer = cap.buffer, None
                # Also checks the maps for NaN/Inf, naming the layer and filter.
                coords, captured = _reduce(maps, pca, random_state, cap.layer)
                del maps
                results[cap.layer] = (coords.cpu().numpy(), captured.cpu().numpy())
                report(cap.layer)
        report(None)

    points = np.concatenate([results[name][0] for name in names]).astype(np.float32)
    explained = np.concatenate([results[name][1] for name in names]).astype(np.float32)
    by_name = {cap.layer: cap for cap in captures}
    layer_of = np.concatenate([np.full(by_name[n].channels, n, dtype=object) for n in names])
    channel_of = np.concatenate([np.arange(by_name[n].channels) for n in names])
    return xr.Dataset(
        {
            "points": (("filter", "sample", "pc"), points),
            "explained_variance": (("filter",), explained),
        },
        coords={
            "filter": np.arange(len(points), dtype=np.int64),
            "filter_layer": ("filter", layer_of.astype(str)),
            "filter_channel": ("filter", channel_of.astype(np.int64)),
            "sample": np.arange(len(probe), dtype=np.int64),
            "sample_id": ("sample", probe.sample_id),
            "label": ("sample", probe.label),
            "pc": np.array([0, 1], dtype=np.int64),
        },
        attrs={
            "n_samples": len(probe),
            "where": where,
            "device": str(run_device),
            "pca": pca,
            "random_state": -1 if random_state is None else int(random_state),
            "n_passes": len(groups),
        },
    )


def _layer_names(model: nn.Module, layers: Sequence[str] | None) -> list[str]:
    modules = dict(model.named_modules())
    convs = [name for name, m in modules.items() if isinstance(m, nn.Conv2d)]
    if layers is None:
        if not convs:
            raise InvalidModelError(
                f"{type(model).__name__} has no Conv2d layer to analyse; pass layers=[...] with "
                "the names of modules that output (batch, channels, height, width) feature maps."
            )
        return convs
    if isinstance(layers, str):
        layers = [layers]
    names = list(layers)
    unknown = [name for name in names if name not in modules or name == ""]
    if unknown:
        raise InvalidModelError(
            f"unknown layer name(s) {unknown} in {type(model).__name__}; use names from "
            f"model.named_modules(), e.g. the Conv2d layers {convs[:8]}."
        )
    if len(set(names)) != len(names):
        raise InvalidModelError(f"layers lists a name more than once: {names}.")
    if not names:
        raise InvalidModelError("layers is empty; pass None to analyse every Conv2d layer.")
    return names


def _check_finite_inputs(probe: ProbeSet) -> None:
    x = probe.x
    if x.is_floating_point() or x.is_complex():
        finite = torch.isfinite(x.reshape(len(x), -1)).all(dim=1)
        if not bool(finite.all()):
            bad = probe.sample_id[(~finite).numpy()]
            raise NonFiniteError(
                f"probe inputs hold NaN or Inf (sample_id {bad[:10].tolist()}); clean or drop "
                "these samples before extraction."
            )


def _resolve_device(model: nn.Module, device: str | torch.device | None) -> torch.device:
    if device is not None:
        resolved = torch.device(device)
        if resolved.type == "cuda" and not torch.cuda.is_available():
            raise InvalidDataError(
                f"device={device!r} was requested but CUDA is not available; pass device='cpu'."
            )
        return resolved
    current = next((p.device for p in model.parameters()), torch.device("cpu"))
    if current.type != "cpu":
        return current
    return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")


@contextlib.contextmanager
def _evaluating(model: nn.Module, device: torch.device) -> Iterator[None]:
    """Eval mode, no_grad and the model on ``device``; everything restored afterwards."""
    flags = [(m, m.training) for m in model.modules()]
    tensor = next(iter([*model.parameters(), *model.buffers()]), None)
    home = tensor.device if tensor is not None else device
    model.eval()
    if home != device:
        model.to(device)
    try:
        with torch.no_grad():
            yield
    finally:
        if home != device:
            model.to(home)
        for module, training in flags:
            module.training = training


def _match_dtype(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    # float64 arrays (numpy's default) would fail against float32 weights; integer inputs (e.g.
    # token ids) are left alone.
    param = next((p for p in model.parameters() if p.is_floating_point()), None)
    if param is not None and x.is_floating_point() and x.dtype != param.dtype:
        return x.to(param.dtype)
    return x


def _trace(model: nn.Module, names: list[str], x: torch.Tensor, where: Where) -> list[_Capture]:
    """Run one small batch, recording the execution order and shapes of the modules."""
    modules = dict(model.named_modules())
    wanted = set(names)
    events: list[tuple[str, int, Any]] = []  # (module name, call index, output)
    calls: dict[str, int] = {}

    def recorder(name: str) -> Callable[..., None]:
        def hook(_module: nn.Module, _inputs: Any, output: Any) -> None:
            k = calls.get(name, 0)
            calls[name] = k + 1
            shape = tuple(output.shape) if isinstance(output, torch.Tensor) else None
            events.append((name, k, shape))

        return hook

    traced = [n for n, m in modules.items() if n and (n in wanted or not any(m.children()))]
    handles = [modules[n].register_forward_hook(recorder(n)) for n in traced]
    try:
        model(x)
    except (RuntimeError, ValueError, TypeError, IndexError) as err:
        raise InvalidDataError(
            f"{type(model).__name__} cannot run on the probe inputs: each sample has shape "
            f"{tuple(x.shape[1:])} and dtype {x.dtype}, and the forward pass failed with: "
            f"{err}. Pass inputs shaped as the model was trained on, e.g. (channels, height, "
            "width) images for a Conv2d network."
        ) from err
    finally:
        for handle in handles:
            handle.remove()

    first: dict[str, tuple[int, tuple[int, ...] | None]] = {}
    for pos, (name, k, shape) in enumerate(events):
        if name in wanted and k == 0:
            first[name] = (pos, shape)
    captures = []
    for name in names:
        if name not in first:
            raise InvalidModelError(
                f"layer {name!r} did not run in {type(model).__name__}'s forward pass; pass "
                "layers that the forward pass uses."
            )
        pos, shape = first[name]
        if shape is None or len(shape) < 3:
            raise InvalidModelError(
                f"layer {name!r} outputs {'a non-tensor' if shape is None else shape}; feature "
                "maps must be (batch, channels, *spatial) tensors, as Conv2d layers produce."
            )
        cap = _Capture(layer=name, module=name, call=0, relu=False, order=pos)
        if where == "activation":
            cap = _activation_capture(cap, events, pos, modules)
        cap.channels = shape[1]
        cap.spatial = shape[2:]
        captures.append(cap)
    return captures


def _activation_capture(
    cap: _Capture, events: list[tuple[str, int, Any]], pos: int, modules: dict[str, nn.Module]
) -> _Capture:
    source = pos  # the last tensor of the layer → normalisation chain
    shape = events[pos][2]
    for later in range(pos + 1, len(events)):
        name, k, out_shape = events[later]
        module = modules[name]
        if out_shape != shape:
            break
        if isinstance(module, _NORMALISATION):
            source = later
            continue
        if isinstance(module, _ACTIVATIONS):
            return _Capture(cap.layer, name, k, relu=False, order=later)
        break
    name, k, _ = events[source]
    return _Capture(cap.layer, name, k, relu=True, order=source)


def _plan(captures: list[_Capture], n: int, max_memory: int | None) -> list[list[_Capture]]:
    """Group captures, in execution order, into forward passes under the memory budget."""
    groups: list[list[_Capture]] = []
    used = 0
    for cap in sorted(captures, key=lambda c: c.order):
        size = cap.channels * cap.features * n * 4
        if groups and (max_memory is None or used + size <= max_memory):
            groups[-1].append(cap)
            used += size
        else:
            groups.append([cap])
            used = size
    return groups


def _run_group(
    model: nn.Module, group: list[_Capture], x: torch.Tensor, device: torch.device, batch_size: int
) -> None:
    """One forward pass over the probe samples, filling the group's ``(C, N, H·W)`` buffers."""
    n = len(x)
    for cap in group:
        cap.buffer = torch.empty(cap.channels, n, cap.features, dtype=torch.float32, device=device)
    last = max(group, key=lambda c: c.order)
    by_module: dict[str, list[_Capture]] = {}
    for cap in group:
        by_module.setdefault(cap.module, []).append(cap)
    calls: dict[str, int] = {}
    start = 0

    def hook_for(module_name: str) -> Callable[..., None]:
        targets = by_module[module_name]

        def hook(_module: nn.Module, _inputs: Any, output: torch.Tensor) -> None:
            k = calls.get(module_name, 0)
            calls[module_name] = k + 1
            hit = [cap for cap in targets if cap.call == k]
            for cap in hit:
                assert cap.buffer is not None
                b = output.shape[0]
                # Straight into the (C, N, H·W) layout: no batch-sized temporary.
                view = cap.buffer[:, start : start + b].view(cap.channels, b, *cap.spatial)
                if cap.relu and output.dtype == view.dtype:
                    torch.clamp_min(output.transpose(0, 1), 0, out=view)
                else:
                    view.copy_((torch.relu(output) if cap.relu else output).transpose(0, 1))
            if any(cap is last for cap in hit):
                raise _StopForward

        return hook

    modules = dict(model.named_modules())
    handles = [modules[name].register_forward_hook(hook_for(name)) for name in by_module]
    try:
        for start in range(0, n, batch_size):
            calls.clear()
            batch = x[start : start + batch_size].to(device, non_blocking=True)
            try:
                model(batch)
            except _StopForward:
                pass
    finally:
        for handle in handles:
            handle.remove()


def _progress(progress: bool | Callable[[str], None], total: int) -> Callable[[str | None], None]:
    if callable(progress):
        callback = progress

        def report(name: str | None) -> None:
            if name is not None:
                callback(name)

        return report
    if not progress:
        return lambda name: None
    from tqdm.auto import tqdm

    bar = tqdm(total=total, desc="extract", unit="layer")

    def report_bar(name: str | None) -> None:
        if name is None:
            bar.close()
        else:
            bar.set_postfix_str(name, refresh=False)
            bar.update()

    return report_bar
