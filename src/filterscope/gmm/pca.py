"""Batched 2-D PCA: every filter's ``(N, H·W)`` feature maps reduced to two components at once.

:func:`pca_2d` centres each filter's matrix over the samples and projects it onto its two
leading principal axes, for all ``C`` filters of a layer in a few batched products on the
device that holds the maps (a Gram eigensolver for small sides, a randomized block Krylov
method for large ones). :func:`~filterscope.gmm.extract.extract` calls :func:`reduce_maps`
on each layer's captured maps; see ``docs/performance.md`` for the solver's accuracy and speed.
"""

from __future__ import annotations

from typing import Literal

import torch

from filterscope.errors import InvalidDataError, InvalidParameterError, NonFiniteError

__all__ = ["PCA_METHODS", "PCAMethod", "pca_2d", "reduce_maps"]

PCAMethod = Literal["randomized", "full"]
#: The values of ``method`` (and of :func:`~filterscope.gmm.extract.extract`'s ``pca``).
PCA_METHODS: tuple[str, ...] = ("randomized", "full")

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
    InvalidParameterError
        When ``method`` is not one of ``"randomized"``, ``"full"``.
    InvalidDataError
        When ``maps`` is not 3-D.
    NonFiniteError
        When a filter's maps hold NaN or Inf.

    Examples
    --------
    >>> import torch
    >>> from filterscope.gmm.pca import pca_2d
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
        raise InvalidParameterError(
            f"method must be one of {PCA_METHODS} ('randomized': the fast solver, 'full': exact), "
            f"got {method!r}."
        )
    return reduce_maps(maps, method, random_state, layer=None)


def reduce_maps(
    maps: torch.Tensor, method: PCAMethod, random_state: int | None, layer: str | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`pca_2d` without the argument checks, for callers that made them; ``layer`` (a
    module name, or None) is named in the error for NaN or Inf maps."""
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
