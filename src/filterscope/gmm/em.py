"""Batched EM for many small 2-D Gaussian mixtures at once, in torch (CPU and CUDA alike).

Every filter gives one *problem* per K (and per initialisation): fit a K-component,
full-covariance Gaussian mixture to that filter's ``N`` points in the plane. Thousands of such
problems are solved together:

* **Standardisation.** Each filter's points are centred and divided by one scale
  ``s = sqrt((var_x + var_y) / 2)``, so float32 is accurate; an isotropic scale keeps k-means
  equivalent. The statistics are taken in float64 on the points divided by a power of two near
  their largest magnitude, so no square overflows or underflows: any finite points, at any
  scale, give the same standardised problem. :func:`fit_chunk` adds ``reg_covar`` in these standardised units
  (results do not depend on the units of the points); :func:`fit_from_init`, the
  scikit-learn parity front end, adds it in the caller's units (``reg_covar / s²``). Results
  are mapped back at the end (means ``· s + centre``, covariances ``· s²``, log-likelihoods
  ``- 2 log s``).
* **Linear E-step.** For 2-D points ``log(w_k N(x | mu_k, Sigma_k))`` is linear in the features
  ``phi(x) = [1, x, y, x², xy, y²]``; with closed-form 2×2 inverses and determinants, the E-step
  of W problems is one ``bmm`` of coefficients (W, K, 6) by features (W, 6, N). N is innermost
  so every later pass is a contiguous, vectorised sweep.
* **Base-2 exponentials.** Coefficients are scaled by ``log2 e`` so the E-step exponentiates
  with ``exp2``, about twice as fast as ``exp`` on CPU; each point's largest term is subtracted
  (a fast ``amax`` over the short K axis), and terms more than 2^60 (float32) below it are
  clipped before ``exp2``: an underflowing input takes a slow path, and a subnormal
  responsibility would slow the M-step's matmul a hundredfold.
* **M-step by one more matmul.** Responsibility-weighted sufficient statistics are
  ``phi @ R.T`` (W, 6, K): counts, first and second moments, from which weights, means and
  covariances follow exactly as in scikit-learn (``nk + 10 eps``, ``reg_covar`` on the diagonal).
* **Cheap log-likelihood.** Each point's normaliser lies in ``[1, K]`` after the max is
  subtracted, so the mean of their logs is taken over products of 16–32 of them
  (:func:`mean_log`): ``log`` costs more than ten multiplications on CPU.
* **A pool of slots.** Problems stream through a fixed-width working set; as soon as a problem
  converges (``|Δ mean log-likelihood| < tol``, scikit-learn's rule) its slot is refilled with
  the next one. Cost follows the mean iteration count, the working set stays cache-sized on a
  CPU, and Python overhead is paid per batch, not per filter. With one initialisation per
  filter a refill copies the features straight from the input (no gather). The final E-step
  (labels and the final log-likelihood) runs afterwards over full batches; its one-hot labels
  are one comparison with 0 (each point's largest relative term is exactly 0), and the label
  index and the tie check come from one small matmul.
* **Initialisation**, a batched version of what ``init_params="kmeans"`` does in scikit-learn:
  greedy k-means++ seeding with :data:`N_LOCAL_TRIALS` local trials, one seeding per filter
  shared by every K (the first K of K = 8's centres are a valid k-means++ seeding for K), then
  :data:`MAX_LLOYD` (one) Lloyd iteration (an empty cluster keeps its centre), then weights,
  means and covariances from the hard labels of the final centres, all in full batches.
  scikit-learn runs Lloyd to convergence; on synthetic filters the final EM log-likelihoods of
  both are statistically indistinguishable (``tests/test_gmm_em.py``).

Index reductions over a short middle dimension (``argmax(dim=1)``) and broadcasts of a stride-0
innermost dimension are one to two orders of magnitude slower than plain elementwise work in
torch on CPU; the code avoids both (see :func:`first_max`, used only to break exact ties).

This module knows nothing about filters, logs or selection rules.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, fields

import numpy as np
import torch

from filterscope.gmm._parallel import check_cancelled

#: Lloyd iterations of the k-means initialisation (scikit-learn: to convergence, up to 300;
#: more did not improve the final fits on synthetic filters, see docs/gmm.md).
MAX_LLOYD = 1
#: Local trials of the greedy k-means++ seeding (scikit-learn: 2 + ln K, i.e. 2–4 for K ≤ 8).
N_LOCAL_TRIALS = 4
#: Smallest diagonal regulariser per dtype, in standardised units (relative to the filter's own
#: ``s²``): the regulariser is raised to it, so no component is narrower. float32 keeps the
#: expanded quadratic form accurate to about 1e-2 nats down to this width (it exceeds the
#: default ``reg_covar=1e-6``); float64's floor only matters for ``reg_covar < 1e-12``.
VARIANCE_FLOOR = {torch.float32: 1e-4, torch.float64: 1e-12}
#: Floor of ``log2`` responsibilities relative to a point's largest term, per dtype: far below
#: the dtype's precision, yet high enough that every responsibility × feature product in the
#: M-step's matmul stays a normal number (subnormal arithmetic is ~100x slower on x86).
EXP2_FLOOR = {torch.float32: -60.0, torch.float64: -600.0}
#: Working-set size in floats (``slots × N × (12 + K)``): cache-sized on a CPU.
CPU_BUDGET = 1 << 21
CUDA_BUDGET = 1 << 28

_LOG_2PI = math.log(2.0 * math.pi)
_LOG2E = 1.0 / math.log(2.0)
# rows [const, pa, pb, p11, p12, p22] of coefficients() -> base-2 coefficients of
# [1, x, y, x², xy, y²]
_COEF_SCALE = (_LOG2E, _LOG2E, _LOG2E, -0.5 * _LOG2E, _LOG2E, -0.5 * _LOG2E)
_coef_scale_cache: dict[tuple[torch.dtype, torch.device], torch.Tensor] = {}


def _coef_scale(like: torch.Tensor) -> torch.Tensor:
    """:data:`_COEF_SCALE` as a (6,) tensor in ``like``'s dtype and device, made once."""
    key = (like.dtype, like.device)
    if key not in _coef_scale_cache:
        _coef_scale_cache[key] = torch.tensor(_COEF_SCALE, dtype=like.dtype).to(like.device)
    return _coef_scale_cache[key]


_LN2 = math.log(2.0)


# ---------------------------------------------------------------------------------------------
# Standardisation and features.


@dataclass
class Standardized:
    """Per-filter standardisation ``x' = (x - centre) / scale`` and the features of ``x'``.

    ``features`` is (F, 6, N) ``[1, x', y', x'², x'y', y'²]`` in the compute dtype; ``scale`` is
    0 and ``dead`` True for a filter whose points are all equal. ``log_scale`` is ``log(scale)``
    computed without forming ``scale`` (finite for every live filter), 0 for dead filters.
    """

    features: torch.Tensor
    centre: np.ndarray
    scale: np.ndarray
    dead: np.ndarray
    log_scale: np.ndarray


def standardize(points: np.ndarray, dtype: torch.dtype, device: torch.device) -> Standardized:
    """Centre and scale each filter's points (statistics in float64) and build the features.

    The statistics are computed on the points divided by a power of two near each filter's
    largest magnitude ``m = max|x|`` (an exact division), so squares neither overflow
    (``|x| > 1e154``) nor underflow (``|x| < 1e-154``): the standardised points, and so every
    fit, are the same at any scale.
    A filter is dead when its spread is at the level of the input's own rounding
    (``s <= 8 eps m``), e.g. a constant feature map. Runs in torch on ``device``; one pass over
    the points per statistic, once per fit (never per EM iteration).
    """
    src = torch.as_tensor(np.asarray(points) if not torch.is_tensor(points) else points)
    eps = torch.finfo(src.dtype if src.is_floating_point() else torch.float64).eps
    pts = src.to(device=device, dtype=torch.float64, copy=True)
    top = pts.abs().amax(dim=(1, 2))
    # A power of two at least max|x| (2^0 for all-zero points): dividing by it is exact, so
    # the statistics are bit for bit those of the raw points wherever those do not overflow.
    # Capped at 2^1023 (2^1024 is not a float64), where |rel| <= 2.
    exponent = torch.frexp(top).exponent.clamp_max(1023)
    unit = torch.ldexp(torch.ones_like(top), exponent)
    rel = pts.div_(unit[:, None, None])  # pts is our own copy: reuse it
    centre_rel = rel.mean(dim=1)
    diff = rel.sub_(centre_rel[:, None, :])
    # scale = scale_rel · unit is at most max|x| (a variance is at most the second moment)
    scale_rel = diff.square().mean(dim=(1, 2)).sqrt_()
    dead = scale_rel <= 8 * eps * top / unit
    safe = torch.where(dead, 1.0, scale_rel)
    xs = diff.div_(safe[:, None, None]).masked_fill_(dead[:, None, None], 0.0)
    # Coordinates below 1e-15 become 0, so no feature (x², xy, y²) is a subnormal float: one
    # would make the matmuls crawl (subnormal arithmetic is about a hundred times slower).
    xs.masked_fill_(xs.abs() < 1e-15, 0.0)
    log_scale = torch.where(dead, 0.0, torch.log(safe) + exponent.double() * _LN2)
    return Standardized(
        features=make_features(xs.to(dtype)),
        centre=(centre_rel * unit[:, None]).cpu().numpy(),
        scale=torch.where(dead, 0.0, scale_rel * unit).cpu().numpy(),
        dead=dead.cpu().numpy(),
        log_scale=log_scale.cpu().numpy(),
    )


def make_features(xs: torch.Tensor) -> torch.Tensor:
    """Features ``[1, x, y, x², xy, y²]`` of points (B, N, 2) as (B, 6, N)."""
    x, y = xs[..., 0], xs[..., 1]
    return torch.stack([torch.ones_like(x), x, y, x * x, x * y, y * y], dim=1).contiguous()


def scaled_reg(reg_covar: float, scale: np.ndarray, dtype: torch.dtype) -> np.ndarray:
    """``reg_covar`` given in the caller's units, in standardised units per filter
    (``reg_covar / s²``, computed as ``(sqrt(reg_covar) / s)²`` so that ``s²`` cannot underflow
    or overflow on the way), at least the dtype's variance floor."""
    safe = np.where(scale > 0, scale, 1.0)
    with np.errstate(over="ignore", under="ignore"):
        return np.maximum((math.sqrt(reg_covar) / safe) ** 2, VARIANCE_FLOOR[dtype])


def relative_reg(reg_covar: float, n_filters: int, dtype: torch.dtype) -> np.ndarray:
    """``reg_covar`` given in standardised units (relative to each filter's ``s²``), (F,), at
    least the dtype's variance floor."""
    return np.full(n_filters, max(reg_covar, VARIANCE_FLOOR[dtype]))


# ---------------------------------------------------------------------------------------------
# Closed-form 2×2 Gaussian algebra. Parameters are packed as (W, 6, K): rows
# [weight, mean x, mean y, cov xx, cov xy, cov yy], so every row is a contiguous (W, K) slice.


def coefficients(par: torch.Tensor) -> torch.Tensor:
    """Base-2 log-density coefficients (W, K, 6): ``log2(w_k N(x | mu_k, Sigma_k)) =
    coef[:, k] · phi(x)``, with the 2×2 inverse and determinant in closed form.

    Written on the six (W, K) rows that one ``unbind`` returns: on CPU every op, and every
    indexing expression, costs microseconds of dispatch, and a step runs this once per batch.
    """
    w, mx, my, a, b, c = par.unbind(1)
    det = torch.addcmul(a * c, b, b, value=-1)
    inv = det.reciprocal()
    # precision [[p11, -p12], [-p12, p22]]; the xy coefficient is -2 · (-p12) / 2 = p12
    p11, p12, p22 = c * inv, b * inv, a * inv
    pa = torch.addcmul(p11 * mx, p12, my, value=-1)  # (P mu)_x
    pb = torch.addcmul(p22 * my, p12, mx, value=-1)  # (P mu)_y
    quad = torch.addcmul(mx * pa, my, pb)  # muᵀ P mu
    const = torch.log(w).add_(torch.log(det), alpha=-0.5).add_(quad, alpha=-0.5).sub_(_LOG_2PI)
    return torch.stack([const, pa, pb, p11, p12, p22], dim=2).mul_(_coef_scale(par))


def relative_log2_density(
    par: torch.Tensor,
    feats: torch.Tensor,
    out: torch.Tensor | None = None,
    top: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``log2(w_k N_k(x_n))`` minus its maximum over k, (W, K, N), and that maximum (W, N).

    One ``bmm`` of base-2 coefficients by the features, one fast ``amax`` and one subtraction;
    the maximum entry of every point is exactly 0 afterwards. ``out`` receives the result
    and ``top`` (W, N) the maximum (reusing buffers avoids page-faulting fresh memory every
    iteration); both are allocated when not given.
    """
    logd = torch.bmm(coefficients(par), feats, out=out)
    if top is None:
        top = torch.empty(feats.shape[0], feats.shape[2], dtype=feats.dtype, device=feats.device)
    torch.amax(logd, dim=1, out=top)
    return logd.sub_(top[:, None, :]), top


def exp2_sum(rel: torch.Tensor, norm: torch.Tensor | None = None) -> torch.Tensor:
    """Exponentiate relative log2 densities (W, K, N) in place; return their sum over K (W, N).

    Clips at the floor first: exp2 of an underflowing input takes a slow path, and the floor
    keeps every later product a normal number. A clipped term is below 2^floor of its point's
    largest, far under the dtype's precision. ``norm`` receives the sum when given.
    """
    rel.clamp_min_(EXP2_FLOOR[rel.dtype]).exp2_()
    return torch.sum(rel, dim=1, out=norm)


def e_step(
    par: torch.Tensor,
    feats: torch.Tensor,
    out: torch.Tensor | None = None,
    top: torch.Tensor | None = None,
    norm: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One E-step for W problems.

    Returns ``dens`` (W, K, N), proportional to the responsibilities, ``norm`` (W, N), its sum
    over K (the caller divides by it), and ``top`` (W, N), each point's largest log2 term; a
    point's log-likelihood is ``log(norm) + ln 2 · top`` (:func:`mean_loglik` averages it).
    ``out``, ``top`` and ``norm`` are optional buffers for the results.
    """
    dens, top = relative_log2_density(par, feats, out, top)
    return dens, exp2_sum(dens, norm), top


def mean_loglik(norm: torch.Tensor, top: torch.Tensor, n_components: int) -> torch.Tensor:
    """Mean log-likelihood (W,) of each problem's points from an E-step's ``norm`` and ``top``:
    ``mean(log norm) + ln 2 · mean(top)``; every ``norm`` lies in ``[1, K]``."""
    return mean_log(norm, n_components).add_(top.mean(dim=1), alpha=_LN2)


def mean_log(norm: torch.Tensor, bound: float) -> torch.Tensor:
    """``log(norm).mean(dim=1)`` for ``norm`` (W, N) with entries in ``[1, bound]``.

    ``log`` costs more than ten multiplications on CPU, so values are first multiplied in
    groups of ``g`` (a power of two dividing N, as large as keeps ``bound^g`` far inside the
    dtype's range): one ``prod`` over a (W, g, N/g) view, then the log of N/g products.
    Rounding: about ``g`` ulps per product, i.e. ~1e-6 nats per product in float32 and far
    below tolerance for the mean.
    """
    limit = 2.0**100 if norm.dtype == torch.float32 else 2.0**1000
    w, n = norm.shape
    g, b = 1, max(float(bound), 2.0)
    while (n // g) % 2 == 0 and b * b < limit:
        g, b = 2 * g, b * b
    p = norm.reshape(w, g, n // g).prod(dim=1) if g > 1 else norm
    return torch.log(p).sum(dim=1).div_(n)


def m_step(stats: torch.Tensor, reg: torch.Tensor, n_samples: int | None = None) -> torch.Tensor:
    """Packed parameters (W, 6, K) from sufficient statistics (W, 6, K), as scikit-learn does.

    ``nk = Σr + 10 eps``; means ``Σ r x / nk``; covariances ``Σ r (x - mu)(x - mu)ᵀ / nk +
    reg I`` (expanded, then clipped to positive semi-definite before ``reg`` so rounding can
    never make a determinant negative); weights ``nk / Σ nk``, or ``nk / n_samples`` when given
    (scikit-learn's initialisation). ``reg`` is (W,). Written on (W, K) rows, like
    :func:`coefficients`.
    """
    s0, sx, sy, sxx, sxy, syy = stats.unbind(1)
    nk = s0 + 10 * torch.finfo(stats.dtype).eps
    inv = nk.reciprocal()
    mx, my = sx * inv, sy * inv
    # Σ r (x - mu)(x - mu)ᵀ / nk = S2 / nk - (2 - s0 / nk) mu muᵀ
    f = torch.mul(s0, inv).neg_().add_(2.0)
    fx, fy = f * mx, f * my
    cxx = torch.addcmul(sxx * inv, fx, mx, value=-1).clamp_min_(0)
    cyy = torch.addcmul(syy * inv, fy, my, value=-1).clamp_min_(0)
    lim = torch.mul(cxx, cyy).sqrt_()
    cxy = torch.addcmul(sxy * inv, fx, my, value=-1).clamp_(min=-lim, max=lim)
    r = reg.unsqueeze(1)
    w = nk / (nk.sum(dim=1, keepdim=True) if n_samples is None else n_samples)
    return torch.stack([w, mx, my, cxx.add_(r), cxy, cyy.add_(r)], dim=1)


def first_max(diff: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``argmax(dim=1)`` (W, N) of (W, K, N) values whose maximum over K is exactly 0, and its
    one-hot (W, K, N).

    An index reduction over a short middle dimension is about a hundred times slower than
    ``amax`` on CPU, and so is an indexed scatter, so both are built arithmetically:
    ``sign(diff) + 1`` marks the maxima; weighting them K, K-1, ..., 1, the largest weight
    belongs to the first maximum (as ``argmax`` picks), and ``sign(weight - largest) + 1`` is 1
    there only.
    """
    k, n = diff.shape[1], diff.shape[2]
    rank = torch.arange(k, 0, -1, dtype=diff.dtype, device=diff.device)
    # materialised (1, K, N): broadcasting a stride-0 innermost dimension is slow on CPU
    rank = rank[:, None].expand(k, n).contiguous()[None]
    weight = diff.sign().add_(1).mul_(rank)
    top = weight.amax(dim=1)
    onehot = weight.sub_(top[:, None, :]).sign_().add_(1)
    return (k - top).long(), onehot


def one_hot_nearest(centres: torch.Tensor, feats: torch.Tensor) -> torch.Tensor:
    """One-hot (W, K, N) of each point's nearest centre (a tie marks both)."""
    # ||x - c||² - ||x||² = ||c||² - 2 c·x is linear in the features [1, x, y]
    coef = torch.cat([(centres * centres).sum(-1, keepdim=True), -2 * centres], dim=-1)
    d = torch.bmm(coef, feats[:, :3])
    return torch.eq(d, d.amin(dim=1, keepdim=True), out=d)


# ---------------------------------------------------------------------------------------------
# The slot pool.


def _taker(
    feats: torch.Tensor, problem_filter: torch.Tensor
) -> Callable[[torch.Tensor], torch.Tensor]:
    """``take(pids)``: the features of problems ``pids`` (consecutive ids, as the pool loads them).

    With one problem per filter in filter order (``n_init=1``) this is a view of a slice, so a
    load copies the features once, into the slots, instead of gathering them first.
    """
    p = problem_filter.numel()
    identity = p == feats.shape[0] and torch.equal(problem_filter, torch.arange(p))

    def take(pids: torch.Tensor) -> torch.Tensor:
        if identity and pids.numel():
            a = int(pids[0])
            return feats[a : a + pids.numel()]
        return feats[problem_filter[pids].to(feats.device)]

    return take


State = dict[str, torch.Tensor]


def run_pool(
    n_problems: int,
    width: int,
    load: Callable[[torch.Tensor], State],
    step: Callable[[State], tuple[State, torch.Tensor]],
    finish: Callable[[State, torch.Tensor], None],
) -> None:
    """Stream ``n_problems`` through a working set of ``width`` slots.

    ``load(pids)`` returns the initial state of problems ``pids`` (every tensor's first dim is
    the slot, and ``"pid"`` holds the problem ids; views of the caller's tensors are fine); ``step(state)`` advances every slot once and
    returns the new state and a bool mask of finished slots; ``finish(state, slots)`` stores the
    results of the finished slots. Finished slots are refilled in place with the next problems.
    Once the queue is empty, freed slots idle (``pid`` -1, results ignored) until a quarter of
    the working set idles, and only then is it compacted: compacting copies every slot's
    state, features included.
    """
    if n_problems == 0:
        return
    nxt = min(width, n_problems)
    # the working set is written in place: copy, in case ``load`` returned views of its inputs
    state = {key: value.clone() for key, value in load(torch.arange(nxt)).items()}
    idle = 0
    while True:
        check_cancelled()
        state, done = step(state)
        done &= state["pid"] >= 0
        if not bool(done.any()):
            continue
        slots = done.nonzero().squeeze(1)
        finish(state, slots)
        n_done = slots.numel()
        m = min(n_done, n_problems - nxt)
        if m:
            new = load(torch.arange(nxt, nxt + m))
            nxt += m
            fill = slots.narrow(0, 0, m)
            for key, value in new.items():
                state[key].index_copy_(0, fill, value)
        if n_done > m:
            state["pid"].index_fill_(0, slots.narrow(0, m, n_done - m), -1)
            idle += n_done - m
            if idle == state["pid"].numel():
                return
            if 4 * idle >= state["pid"].numel():
                keep = (state["pid"] >= 0).nonzero().squeeze(1)
                state = {k: v.index_select(0, keep) for k, v in state.items()}
                idle = 0


def pool_width(n_samples: int, n_components: int, budget: int) -> int:
    """Slots so that a slot's features, scaled features and densities fit ``budget`` floats."""
    return max(1, budget // (n_samples * (12 + n_components)))


# ---------------------------------------------------------------------------------------------
# EM over pools; the final pass and the initialisation over full batches.


@dataclass
class EMResult:
    """Per-problem EM results in standardised units (P problems, K components).

    ``par`` (P, 6, K) packed parameters; ``lower_bound`` is scikit-learn's ``lower_bound_``
    (mean log-likelihood at the last E-step, before the last M-step).
    """

    par: torch.Tensor
    lower_bound: torch.Tensor
    n_iter: torch.Tensor
    converged: torch.Tensor


def em_pool(
    feats: torch.Tensor,
    problem_filter: torch.Tensor,
    par0: torch.Tensor,
    reg: torch.Tensor,
    *,
    tol: float,
    max_iter: int,
    budget: int,
) -> EMResult:
    """Run EM to convergence for P problems of K components.

    Parameters
    ----------
    feats : (F, 6, N)
        Standardised features of every filter.
    problem_filter : (P,) long, on the CPU
        Which filter each problem fits.
    par0 : (P, 6, K)
        Initial packed parameters.
    reg : (F,)
        ``reg_covar`` in standardised units per filter.
    """
    n_problems, _, k = par0.shape
    dev, dt = feats.device, feats.dtype
    out = EMResult(
        par=torch.empty_like(par0),
        lower_bound=torch.empty(n_problems, dtype=dt, device=dev),
        n_iter=torch.zeros(n_problems, dtype=torch.long, device=dev),
        converged=torch.zeros(n_problems, dtype=torch.bool, device=dev),
    )
    if max_iter == 0:
        out.par.copy_(par0)
        return out

    take = _taker(feats, problem_filter)

    def load(pids: torch.Tensor) -> State:
        f = problem_filter.index_select(0, pids).to(dev)
        p = pids.to(dev)
        return {
            "pid": p,
            "feats": take(pids),
            "reg": reg.index_select(0, f),
            "par": par0.index_select(0, p),
            "lb": torch.full((pids.numel(),), -math.inf, dtype=dt, device=dev),
            "it": torch.zeros(pids.numel(), dtype=torch.long, device=dev),
        }

    n = feats.shape[2]
    width = pool_width(n, k, budget)
    dens_buf = torch.empty(width, k, n, dtype=dt, device=dev)
    feat_buf = torch.empty(width if k >= 6 else 0, 6, n, dtype=dt, device=dev)
    point_buf = torch.empty(2, width, n, dtype=dt, device=dev)  # top, norm
    # views of the buffers for the current number of slots (it changes only on compaction)
    views: dict[int, tuple[torch.Tensor, ...]] = {}

    def step(st: State) -> tuple[State, torch.Tensor]:
        x = st["feats"]
        w = x.shape[0]
        if w not in views:
            views[w] = (dens_buf[:w], *point_buf[:, :w], feat_buf[: w if k >= 6 else 0])
        dens_w, top_w, norm_w, feat_w = views[w]
        dens, norm, top = e_step(st["par"], x, dens_w, top_w, norm_w)
        lb = mean_loglik(norm, top, k)
        # responsibilities r = dens / norm: divide whichever has fewer rows, dens or features
        if k < 6:
            stats = torch.bmm(x, dens.div_(norm.unsqueeze(1)).transpose(1, 2))
        else:
            stats = torch.bmm(torch.div(x, norm.unsqueeze(1), out=feat_w), dens.transpose(1, 2))
        par = m_step(stats, st["reg"])
        it = st["it"] + 1
        conv = (lb - st["lb"]).abs() < tol
        st = dict(st, par=par, lb=lb, it=it, conv=conv)
        return st, conv | (it >= max_iter)

    def finish(st: State, slots: torch.Tensor) -> None:
        pid = st["pid"].index_select(0, slots)
        out.par.index_copy_(0, pid, st["par"].index_select(0, slots))
        out.lower_bound.index_copy_(0, pid, st["lb"].index_select(0, slots))
        out.n_iter.index_copy_(0, pid, st["it"].index_select(0, slots))
        out.converged.index_copy_(0, pid, st["conv"].index_select(0, slots))

    run_pool(n_problems, width, load, step, finish)
    return out


@dataclass
class FinalPass:
    """Final E-step of each problem: hard labels (P, N) int8, mean log-likelihood (P,)
    (``GaussianMixture.score``) and the labels' per-cluster feature sums (P, 6, K) float64
    (accumulated in the compute dtype)."""

    labels: torch.Tensor
    loglik: torch.Tensor
    label_stats: torch.Tensor


def final_pass(
    feats: torch.Tensor, problem_filter: torch.Tensor, par: torch.Tensor, *, budget: int
) -> FinalPass:
    """Labels, log-likelihood and label statistics of fitted problems, in full batches."""
    n_problems, _, k = par.shape
    n = feats.shape[2]
    dev, dt = feats.device, feats.dtype
    out = FinalPass(
        labels=torch.empty(n_problems, n, dtype=torch.int8, device=dev),
        loglik=torch.empty(n_problems, dtype=dt, device=dev),
        label_stats=torch.empty(n_problems, 6, k, dtype=torch.float64, device=dev),
    )
    width = min(pool_width(n, k, budget), n_problems)
    take = _taker(feats, problem_filter)
    rel_buf = torch.empty(width, k, n, dtype=dt, device=dev)
    hot_buf = torch.empty(width, k, n, dtype=dt, device=dev)
    point_buf = torch.empty(2, width, n, dtype=dt, device=dev)
    # [1, ..., 1] and [0, 1, ..., K-1]: one bmm with the one-hot counts the maxima and sums their index
    count_index = torch.stack([torch.ones(k, dtype=dt), torch.arange(k, dtype=dt)]).to(dev)
    count_index = count_index.expand(width, 2, k).contiguous()
    for i in range(0, n_problems, width):
        sl = slice(i, min(i + width, n_problems))
        w = sl.stop - sl.start
        x = take(torch.arange(sl.start, sl.stop))
        top, norm = point_buf[:, :w]
        rel, _ = relative_log2_density(par[sl], x, out=rel_buf[:w], top=top)
        # the largest term of every point is exactly 0: its one-hot is one comparison
        onehot = torch.eq(rel, 0, out=hot_buf[:w])
        count, index = torch.bmm(count_index[:w], onehot).unbind(dim=1)
        if bool((count != 1).any()):  # a tie: argmax takes the first maximum
            labels, onehot = first_max(rel.clone())
        else:
            labels = index
        out.labels[sl] = labels.to(torch.int8)
        out.label_stats[sl] = torch.bmm(x, onehot.transpose(1, 2))
        out.loglik[sl] = mean_loglik(exp2_sum(rel, norm), top, k)
    return out


def kmeanspp_seeds(feats: torch.Tensor, n_clusters: int, uniforms: torch.Tensor) -> torch.Tensor:
    """Greedy k-means++ seeding, batched: centres (B, n_clusters, 2) from features (B, 6, N).

    ``uniforms`` (B, 1 + (n_clusters - 1) * N_LOCAL_TRIALS) in [0, 1) drive every random choice,
    so results do not depend on the device or on how filters are batched. The first centre is a
    uniformly chosen point; each next one is the best (lowest potential) of
    :data:`N_LOCAL_TRIALS` candidates drawn with probability proportional to the squared distance
    to the closest centre so far (scikit-learn's ``kmeans_plusplus``).
    """
    b, _, n = feats.shape
    rows = torch.arange(b, device=feats.device)
    u = uniforms.to(device=feats.device, dtype=torch.float64)
    xs = feats[:, 1:3].transpose(1, 2)  # (B, N, 2)
    sq = feats[:, 3] + feats[:, 5]  # ||x||², (B, N)
    first = (u[:, 0] * n).long().clamp_max(n - 1)
    centres = torch.empty(b, n_clusters, 2, dtype=feats.dtype, device=feats.device)
    centres[:, 0] = xs[rows, first]

    def dist2(p: torch.Tensor) -> torch.Tensor:
        # ||x - p||² = ||x||² - 2 p·x + ||p||², clipped at 0 against rounding; (B, T, N)
        coef = torch.cat([(p * p).sum(-1, keepdim=True), -2 * p], dim=-1)
        return torch.bmm(coef, feats[:, :3]).add_(sq[:, None, :]).clamp_min_(0)

    closest = dist2(centres[:, :1])[:, 0]  # (B, N)
    t = N_LOCAL_TRIALS
    for c in range(1, n_clusters):
        cum = torch.cumsum(closest.to(torch.float64), dim=1)
        target = u[:, 1 + (c - 1) * t : 1 + c * t] * cum[:, -1:]
        cand = torch.searchsorted(cum, target).clamp_max(n - 1)  # (B, T)
        pts = xs[rows[:, None], cand]  # (B, T, 2)
        d = torch.minimum(dist2(pts), closest[:, None, :])
        best = d.sum(-1).argmin(dim=1)
        closest = d[rows, best]
        centres[:, c] = pts[rows, best]
    return centres


def kmeans_init(
    feats: torch.Tensor,
    problem_filter: torch.Tensor,
    seeds: torch.Tensor,
    reg: torch.Tensor,
    *,
    max_lloyd: int,
    budget: int,
) -> torch.Tensor:
    """Initial packed parameters (P, 6, K) from k-means seeds (P, K, 2), in full batches.

    First up to ``max_lloyd`` Lloyd iterations from the seeds (an empty cluster keeps its
    centre; a problem stops once its summed squared centre shift is at most ``1e-4``), then, like
    scikit-learn's ``_initialize`` with one-hot responsibilities, weights ``nk / N``, means and
    covariances from the hard labels of the final centres. ``reg`` is per problem (P,).
    """
    n_problems, k, _ = seeds.shape
    n = feats.shape[2]
    out = torch.empty(n_problems, 6, k, dtype=feats.dtype, device=feats.device)
    width = pool_width(n, k, budget)
    take = _taker(feats, problem_filter)
    for i in range(0, n_problems, width):
        sl = slice(i, min(i + width, n_problems))
        x = take(torch.arange(sl.start, sl.stop))
        c = seeds[sl]
        done = torch.zeros(c.shape[0], dtype=torch.bool, device=c.device)
        for _ in range(max_lloyd):
            sums = torch.bmm(one_hot_nearest(c, x), x[:, :3].transpose(1, 2))  # n, Σx, Σy
            cnt = sums[..., :1]
            new = torch.where(cnt > 0, sums[..., 1:3] / cnt.clamp_min(1), c)
            shift = ((new - c) ** 2).sum(dim=(1, 2))
            c = torch.where(done[:, None, None], c, new)
            done |= shift <= 1e-4
            if bool(done.all()):
                break
        stats = torch.bmm(x, one_hot_nearest(c, x).transpose(1, 2))
        out[sl] = m_step(stats, reg[sl], n_samples=n)
    return out


# ---------------------------------------------------------------------------------------------
# Front ends: EM from given initial parameters (parity with scikit-learn) and a whole chunk of
# filters for every K (the estimator).


@dataclass
class MixtureFit:
    """One K's fit of B problems in the caller's units (numpy, float64)."""

    weights: np.ndarray  # (B, K)
    means: np.ndarray  # (B, K, 2)
    covariances: np.ndarray  # (B, K, 2, 2)
    lower_bound: np.ndarray  # (B,)
    loglik: np.ndarray  # (B,)
    n_iter: np.ndarray  # (B,)
    converged: np.ndarray  # (B,)
    labels: np.ndarray  # (B, N) int8
    label_stats: np.ndarray  # (B, K, 6), standardised units


def to_user_units(
    em: EMResult,
    fin: FinalPass,
    centre: np.ndarray,
    scale: np.ndarray,
    log_scale: np.ndarray | None = None,
) -> MixtureFit:
    """Map standardised results back: ``centre`` (B, 2), ``scale`` (B,) and optionally
    ``log_scale`` (B,) per problem (:class:`Standardized`'s; by default ``log(scale)``, 0
    where ``scale`` is 0).

    Log-likelihoods subtract ``2 log s`` (the log-determinant of the standardisation), which
    is finite at any scale. Means and covariances are products in float64: a covariance of
    points spread beyond about ``1e154`` (or under ``1e-154``) is outside float64's range and
    comes back as inf (or 0); nothing else does.
    """
    s = np.where(scale > 0, scale, 1.0)
    log_s = np.log(s) if log_scale is None else log_scale
    par = em.par.double().cpu().numpy()
    cxx, cxy, cyy = par[:, 3], par[:, 4], par[:, 5]
    cov = np.stack([cxx, cxy, cxy, cyy], axis=-1).reshape(*cxx.shape, 2, 2)
    with np.errstate(over="ignore", under="ignore"):
        means = par[:, 1:3].transpose(0, 2, 1) * s[:, None, None] + centre[:, None, :]
        # (cov · s) · s: s² alone overflows from s ≈ 1.3e154 even where cov · s² does not
        covariances = cov * s[:, None, None, None] * s[:, None, None, None]
    return MixtureFit(
        weights=par[:, 0],
        means=means,
        covariances=covariances,
        lower_bound=em.lower_bound.double().cpu().numpy() - 2 * log_s,
        loglik=fin.loglik.double().cpu().numpy() - 2 * log_s,
        n_iter=em.n_iter.cpu().numpy(),
        converged=em.converged.cpu().numpy(),
        labels=fin.labels.cpu().numpy(),
        label_stats=fin.label_stats.transpose(1, 2).cpu().numpy(),
    )


def fit_from_init(
    points: np.ndarray,
    *,
    weights: np.ndarray | None = None,
    means: np.ndarray | None = None,
    precisions: np.ndarray | None = None,
    resp: np.ndarray | None = None,
    tol: float = 1e-3,
    reg_covar: float = 1e-6,
    max_iter: int = 100,
    dtype: torch.dtype = torch.float64,
    device: torch.device | str = "cpu",
    budget: int = CPU_BUDGET,
) -> MixtureFit:
    """Run batched EM on B independent problems from given initial parameters.

    Either ``weights`` (B, K), ``means`` (B, K, 2) and ``precisions`` (B, K, 2, 2), like
    scikit-learn's ``weights_init``/``means_init``/``precisions_init``, or initial
    responsibilities ``resp`` (B, N, K), from which the first parameters are estimated as
    scikit-learn's ``_initialize`` does. ``points`` is (B, N, 2) in the caller's units; the
    points must not be constant. ``reg_covar`` is in the caller's units too, as in
    scikit-learn (:func:`fit_chunk`, unlike this, adds it in standardised units).

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> pts = rng.normal(size=(3, 100, 2))
    >>> resp = np.eye(2)[rng.integers(0, 2, size=(3, 100))]
    >>> fit = fit_from_init(pts, resp=resp)
    >>> fit.weights.shape, fit.labels.shape
    ((3, 2), (3, 100))
    """
    dev = torch.device(device)
    std = standardize(points, dtype, dev)
    b, n, _ = np.shape(points)
    reg = torch.as_tensor(scaled_reg(reg_covar, std.scale, dtype), dtype=dtype, device=dev)
    s = np.where(std.scale > 0, std.scale, 1.0)
    if resp is not None:
        r = torch.as_tensor(np.asarray(resp), dtype=dtype, device=dev)
        par0 = m_step(torch.bmm(std.features, r), reg, n_samples=n)
    else:
        if weights is None or means is None or precisions is None:
            raise ValueError("give either resp or all of weights, means and precisions")
        cov = np.linalg.inv(np.asarray(precisions, dtype=np.float64))
        cov = cov / s[:, None, None, None] / s[:, None, None, None]
        mu = (np.asarray(means, dtype=np.float64) - std.centre[:, None, :]) / s[:, None, None]
        par = np.stack(
            [
                np.asarray(weights),
                mu[..., 0],
                mu[..., 1],
                cov[..., 0, 0],
                cov[..., 0, 1],
                cov[..., 1, 1],
            ],
            axis=1,
        )
        par0 = torch.as_tensor(par, dtype=dtype, device=dev)
    pf = torch.arange(b)
    res = em_pool(std.features, pf, par0, reg, tol=tol, max_iter=max_iter, budget=budget)
    fin = final_pass(std.features, pf, res.par, budget=budget)
    return to_user_units(res, fin, std.centre, std.scale, std.log_scale)


def n_uniforms(k_max: int) -> int:
    """Uniform random numbers one k-means++ seeding of up to ``k_max`` centres consumes."""
    return 1 + (k_max - 1) * N_LOCAL_TRIALS


def fit_chunk(
    points: np.ndarray,
    uniforms: np.ndarray,
    ks: tuple[int, ...],
    *,
    tol: float,
    reg_covar: float,
    max_iter: int,
    dtype: torch.dtype,
    device: torch.device | str,
    budget: int,
    max_lloyd: int = MAX_LLOYD,
) -> dict[str, np.ndarray]:
    """Fit every K in ``ks`` to every filter of a chunk; keep the best initialisation.

    Parameters
    ----------
    points : ndarray (F, N, 2)
        Finite points of F filters.
    uniforms : ndarray (F, n_init, n_uniforms(max(ks)))
        Random numbers of the k-means++ seedings (one seeding per filter and initialisation,
        shared by every K).
    reg_covar : float
        Added to the diagonal of every covariance of the *standardised* points, i.e.
        ``reg_covar · s²`` in the caller's units (at least the dtype's
        :data:`VARIANCE_FLOOR`), so the fits do not depend on the points' units. A dead
        filter's single component has covariance ``reg_covar · I`` in the caller's units
        (it has no scale).

    Returns
    -------
    dict of numpy arrays (nK = len(ks), Kmax = max(ks)), in the caller's units:
    ``weights`` (F, nK, Kmax), ``means`` (F, nK, Kmax, 2), ``covariances`` (F, nK, Kmax, 2, 2),
    ``lower_bound``, ``loglik``, ``n_iter``, ``converged`` (F, nK), ``labels`` (F, nK, N) int8,
    ``label_stats`` (F, nK, Kmax, 6) in standardised units, ``centre`` (F, 2), ``scale`` (F,),
    ``log_scale`` (F,), ``dead`` (F,). Components beyond K are zero-weight padding.
    Log-likelihoods are finite at any scale; see :func:`to_user_units` for covariances of
    points spread beyond float64's squared range.
    """
    dev = torch.device(device)
    f_all, n, _ = points.shape
    n_init = uniforms.shape[1]
    k_max = max(ks)
    std = standardize(points, dtype, dev)
    live = np.flatnonzero(~std.dead)
    nk = len(ks)
    res = {
        "weights": np.zeros((f_all, nk, k_max)),
        "means": np.zeros((f_all, nk, k_max, 2)),
        "covariances": np.zeros((f_all, nk, k_max, 2, 2)),
        "lower_bound": np.zeros((f_all, nk)),
        "loglik": np.zeros((f_all, nk)),
        "n_iter": np.zeros((f_all, nk), dtype=np.int64),
        "converged": np.ones((f_all, nk), dtype=bool),
        "labels": np.zeros((f_all, nk, n), dtype=np.int8),
        "label_stats": np.zeros((f_all, nk, k_max, 6)),
        "centre": std.centre,
        "scale": std.scale,
        "log_scale": std.log_scale,
        "dead": std.dead,
    }
    _fill_dead(res, std, reg_covar, n)
    if live.size == 0:
        return res
    feats = std.features[torch.as_tensor(live, device=dev)]
    reg = torch.as_tensor(relative_reg(reg_covar, live.size, dtype), dtype=dtype, device=dev)
    # Problem p fits filter p // n_init with initialisation p % n_init.
    problem_filter = torch.arange(live.size * n_init) // n_init
    u = torch.as_tensor(uniforms[live].reshape(live.size * n_init, -1))
    step = max(1, budget // (n * (6 + N_LOCAL_TRIALS)))
    take = _taker(feats, problem_filter)
    n_p = problem_filter.numel()
    seeds = torch.cat(
        [
            kmeanspp_seeds(take(torch.arange(i, min(i + step, n_p))), k_max, u[i : i + step])
            for i in range(0, n_p, step)
        ]
    )
    reg_p = reg[problem_filter.to(dev)]
    for j, k in enumerate(ks):
        check_cancelled()
        par0 = kmeans_init(
            feats, problem_filter, seeds[:, :k], reg_p, max_lloyd=max_lloyd, budget=budget
        )
        fit = em_pool(feats, problem_filter, par0, reg, tol=tol, max_iter=max_iter, budget=budget)
        # scikit-learn keeps the initialisation with the largest lower bound
        best = fit.lower_bound.view(live.size, n_init).argmax(dim=1)
        pick = torch.arange(live.size, device=dev) * n_init + best
        fit = EMResult(**{fl.name: getattr(fit, fl.name)[pick] for fl in fields(EMResult)})
        fin = final_pass(feats, torch.arange(live.size), fit.par, budget=budget)
        user = to_user_units(fit, fin, std.centre[live], std.scale[live], std.log_scale[live])
        res["weights"][live, j, :k] = user.weights
        res["means"][live, j, :k] = user.means
        res["covariances"][live, j, :k] = user.covariances
        res["lower_bound"][live, j] = user.lower_bound
        res["loglik"][live, j] = user.loglik
        res["n_iter"][live, j] = user.n_iter
        res["converged"][live, j] = user.converged
        res["labels"][live, j] = user.labels
        res["label_stats"][live, j, :k] = user.label_stats
    return res


def _fill_dead(res: dict[str, np.ndarray], std: Standardized, reg_covar: float, n: int) -> None:
    """A constant filter: every K collapses onto its one point with covariance ``reg_covar I``."""
    dead = np.flatnonzero(std.dead)
    if dead.size == 0:
        return
    res["weights"][dead, :, 0] = 1.0
    res["means"][dead, :, 0] = std.centre[dead][:, None, :]
    res["covariances"][dead, :, 0] = reg_covar * np.eye(2)
    ll = -_LOG_2PI - math.log(reg_covar)
    res["lower_bound"][dead] = ll
    res["loglik"][dead] = ll
    res["n_iter"][dead] = 1
    res["label_stats"][dead, :, 0, 0] = n
