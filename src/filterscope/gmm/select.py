"""Choosing K per filter and flagging anomaly filters, from per-cluster sums only.

Everything here works on *label statistics*: for each filter, each K and each cluster, the sums
``[count, Σx, Σy, Σx², Σxy, Σy²]`` over the samples hard-assigned to that cluster. They come
for free from the batched EM (:mod:`filterscope.gmm.em`) and can be computed for any other
clustering with :func:`label_stats` (the benchmark feeds scikit-learn's labels through the same
rule). All functions are batched over leading dimensions and never loop over filters.

The rule (documented with measured error rates in ``docs/gmm.md``):

1. **Calinski–Harabasz** ``CH = [SSB / (K - 1)] / [SSW / (N - K)]`` on each K's hard labels,
   with K the number of non-empty clusters (scikit-learn's ``calinski_harabasz_score``).
2. **Choosing K** (``selection="ch-bic"``, the default). ``K_BIC`` minimises the Bayesian
   information criterion ``-2 N loglik + (6K - 1) ln N`` over all K; ``K_BIC = 1`` is the
   one-cluster test (one Gaussian explains the cloud best) and gives K = 1. Otherwise K is the
   CH-best K among ``2 <= K <= K_BIC``: CH alone keeps splitting elongated and heavy-tailed
   clouds (it chose K = 7–8 for most elongated two- or three-cluster clouds), BIC caps it.
   CH also merges a small far group into a big cluster when there are several big ones (its
   ``K - 1`` penalty outweighs the small group's share of SSB), so when only the ``K_BIC``
   clustering isolates a small, well-separated cluster (step 3), K is ``K_BIC``.
   ``selection="ch"`` is the literal rule: the CH-best K ≥ 2, or K = 1 when the K = 2 split
   fails the Duda–Hart test ``Je(2)/Je(1) < 1 - 2/(πd) - z sqrt(2 (1 - 8/(π² d)) / (N d))``
   (d = 2, z = 3.2). It misses a third of the planted groups (Duda–Hart compares a split's
   within-cluster scatter with the total, which a group of 1–5 % barely moves).
3. **Anomaly rule.** In the chosen clustering a cluster is *small* when it holds between 1 and
   ``outlier_fraction · N`` samples; its *separation* is the smallest Mahalanobis distance between
   its mean and the mean of a non-small cluster, in the metric of the two clusters' summed
   covariances. Small clusters separated by at least ``min_separation`` hold the filter's
   outlier samples; the filter is an anomaly filter when there is at least one. The
   ``anomaly_score`` is the largest separation of a small cluster (0 without one), so ranking by
   it orders filters by how far their isolated group lies from the rest.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from filterscope.errors import InvalidParameterError

#: z of the Duda–Hart critical value (one-sided, about 0.07 % false splits of a Gaussian).
DUDA_HART_Z = 3.2


def label_stats(points: np.ndarray, labels: np.ndarray, n_clusters: int) -> np.ndarray:
    """Per-cluster sums ``[count, Σx, Σy, Σx², Σxy, Σy²]`` for hard labels.

    Parameters
    ----------
    points : ndarray (..., N, 2)
    labels : int ndarray (..., N), values in ``[0, n_clusters)``
    n_clusters : int

    Returns
    -------
    ndarray (..., n_clusters, 6), float64

    Examples
    --------
    >>> pts = np.array([[0.0, 0.0], [2.0, 0.0], [10.0, 1.0]])
    >>> label_stats(pts, np.array([0, 0, 1]), 2)[:, :3]
    array([[ 2.,  2.,  0.],
           [ 1., 10.,  1.]])
    """
    pts = np.asarray(points, dtype=np.float64)
    x, y = pts[..., 0], pts[..., 1]
    feats = np.stack([np.ones_like(x), x, y, x * x, x * y, y * y], axis=-1)  # (..., N, 6)
    onehot = np.asarray(labels)[..., None] == np.arange(n_clusters)  # (..., N, K)
    return np.einsum("...nk,...nf->...kf", onehot.astype(np.float64), feats)


def _moments(stats: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Counts (..., K), means (..., K, 2) and biased covariances (..., K, 2, 2) per cluster."""
    n = stats[..., 0]
    safe = np.where(n > 0, n, 1.0)
    mean = stats[..., 1:3] / safe[..., None]
    mx, my = mean[..., 0], mean[..., 1]
    cxx = np.maximum(stats[..., 3] / safe - mx * mx, 0.0)
    cyy = np.maximum(stats[..., 5] / safe - my * my, 0.0)
    cxy = stats[..., 4] / safe - mx * my
    cov = np.stack([cxx, cxy, cxy, cyy], axis=-1).reshape(*cxx.shape, 2, 2)
    return n, mean, cov


def calinski_harabasz_from_stats(stats: np.ndarray) -> np.ndarray:
    """Calinski–Harabasz index from per-cluster sums (..., K, 6).

    Empty clusters are ignored (K is the number of non-empty clusters), so the value equals
    :func:`sklearn.metrics.calinski_harabasz_score` on the same labels. As there, a clustering
    with zero within-cluster dispersion scores 1.0; one with fewer than two non-empty clusters
    (where scikit-learn raises) scores 0.0, since it has no between-cluster dispersion.
    """
    n_k = stats[..., 0]
    occupied = n_k > 0
    safe = np.where(occupied, n_k, 1.0)
    n = n_k.sum(-1)
    k_eff = occupied.sum(-1)
    total = stats[..., 1:3].sum(-2)  # (..., 2)
    grand = total / np.where(n > 0, n, 1.0)[..., None]
    mean_k = stats[..., 1:3] / safe[..., None]
    ssb = np.where(occupied, n_k * ((mean_k - grand[..., None, :]) ** 2).sum(-1), 0.0).sum(-1)
    within = stats[..., 3] + stats[..., 5] - (stats[..., 1] ** 2 + stats[..., 2] ** 2) / safe
    ssw = np.where(occupied, np.maximum(within, 0.0), 0.0).sum(-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        ch = ssb * (n - k_eff) / (ssw * (k_eff - 1))
    ch = np.where(ssw == 0, 1.0, ch)
    return np.where(k_eff < 2, 0.0, ch)


def calinski_harabasz(points: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Batched Calinski–Harabasz index of hard labels.

    Parameters
    ----------
    points : ndarray (..., N, 2)
    labels : int ndarray (..., N)

    Returns
    -------
    ndarray (...) of float64

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> pts = np.concatenate([rng.normal(0, 1, (50, 2)), rng.normal(8, 1, (50, 2))])
    >>> labels = np.repeat([0, 1], 50)
    >>> from sklearn.metrics import calinski_harabasz_score
    >>> bool(np.isclose(calinski_harabasz(pts, labels), calinski_harabasz_score(pts, labels)))
    True
    """
    labels = np.asarray(labels)
    return calinski_harabasz_from_stats(label_stats(points, labels, int(labels.max()) + 1))


def duda_hart_critical(n_samples: int | np.ndarray, d: int = 2, z: float = DUDA_HART_Z):
    """Duda–Hart critical value of ``Je(2)/Je(1)``: below it, a 2-split is real."""
    return 1 - 2 / (math.pi * d) - z * np.sqrt(2 * (1 - 8 / (math.pi**2 * d)) / (n_samples * d))


def duda_hart_ratio(stats2: np.ndarray) -> np.ndarray:
    """``Je(2)/Je(1)`` of a 2-cluster split from its per-cluster sums (..., 2, 6)."""
    total = stats2.sum(-2)
    n = total[..., 0]
    je1 = total[..., 3] + total[..., 5] - (total[..., 1] ** 2 + total[..., 2] ** 2) / n
    n_k = np.where(stats2[..., 0] > 0, stats2[..., 0], 1.0)
    je2 = (stats2[..., 3] + stats2[..., 5] - (stats2[..., 1] ** 2 + stats2[..., 2] ** 2) / n_k).sum(
        -1
    )
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(je1 > 0, je2 / je1, 1.0)


def bic(loglik: np.ndarray, ks: np.ndarray, n_samples: int) -> np.ndarray:
    """Bayesian information criterion of full-covariance 2-D mixtures (lower is better).

    ``loglik`` (..., len(ks)) is the mean per-sample log-likelihood; ``6K - 1`` free parameters.
    """
    return -2.0 * n_samples * loglik + (6 * np.asarray(ks) - 1) * math.log(n_samples)


def separation(stats: np.ndarray, outlier_fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """Separation of each small cluster from the non-small ones.

    Parameters
    ----------
    stats : ndarray (..., K, 6)
        Per-cluster sums of one clustering per filter.
    outlier_fraction : float
        A cluster is small when ``1 <= count <= outlier_fraction * N``.

    Returns
    -------
    small : bool ndarray (..., K)
    sep : ndarray (..., K)
        For small clusters, ``min_b sqrt((m_j - m_b)^T (C_j + C_b)^-1 (m_j - m_b))`` over the
        non-small clusters b; 0 for the others.
    """
    n_k, mean, cov = _moments(stats)
    n = n_k.sum(-1, keepdims=True)
    small = (n_k >= 1) & (n_k <= outlier_fraction * n)
    big = n_k > outlier_fraction * n
    # Tiny ridge so that two degenerate (single-point or duplicated) clusters stay comparable.
    spread = (stats[..., 3] + stats[..., 5]).sum(-1) / np.maximum(n[..., 0], 1)
    ridge = 1e-12 * np.maximum(spread, 1e-300)
    pair = cov[..., :, None, :, :] + cov[..., None, :, :, :]  # (..., K, K, 2, 2)
    a = pair[..., 0, 0] + ridge[..., None, None]
    b = pair[..., 0, 1]
    c = pair[..., 1, 1] + ridge[..., None, None]
    delta = mean[..., :, None, :] - mean[..., None, :, :]  # (..., K, K, 2)
    dx, dy = delta[..., 0], delta[..., 1]
    det = a * c - b * b
    with np.errstate(divide="ignore", invalid="ignore"):
        d2 = (c * dx * dx - 2 * b * dx * dy + a * dy * dy) / det
    d2 = np.where(big[..., None, :], np.nan_to_num(d2, nan=np.inf, posinf=np.inf), np.inf)
    sep = np.sqrt(np.maximum(d2.min(-1), 0.0))
    sep = np.where(small & np.isfinite(sep), sep, 0.0)
    return small, sep


@dataclass(frozen=True)
class Selection:
    """Result of :func:`select` for F filters, nK candidate K values and Kmax components."""

    k_index: np.ndarray  # (F,) index into ks of the chosen K
    k: np.ndarray  # (F,) chosen K
    ch: np.ndarray  # (F, nK), NaN for K = 1
    bic: np.ndarray  # (F, nK)
    cluster_sizes: np.ndarray  # (F, Kmax) of the chosen K, 0-padded
    separation: np.ndarray  # (F, Kmax) separation of each small cluster of the chosen K, else 0
    outlier_clusters: np.ndarray  # (F, Kmax) bool: clusters holding outlier samples
    anomaly: np.ndarray  # (F,) bool
    anomaly_score: np.ndarray  # (F,) float


SELECTIONS = ("ch-bic", "ch")


def select(
    stats: np.ndarray,
    loglik: np.ndarray,
    ks: np.ndarray,
    n_samples: int,
    *,
    outlier_fraction: float = 0.05,
    min_separation: float = 3.5,
    selection: str = "ch-bic",
    dead: np.ndarray | None = None,
) -> Selection:
    """Pick K per filter and apply the anomaly rule (see the module docstring).

    Parameters
    ----------
    stats : ndarray (F, nK, Kmax, 6)
        Per-cluster label sums of every filter's fit for every K (clusters beyond K are empty).
    loglik : ndarray (F, nK)
        Mean per-sample log-likelihood of each fit.
    ks : ndarray (nK,)
        The K values, increasing and consecutive.
    n_samples : int
    outlier_fraction, min_separation : float
        The anomaly rule's size and separation thresholds.
    selection : {"ch-bic", "ch"}
        ``"ch-bic"``: K = 1 when one Gaussian has the lowest BIC; otherwise the CH-best K among
        ``2 <= K <= K_BIC``, replaced by ``K_BIC`` when only the BIC-best clustering isolates a
        small, well-separated cluster. ``"ch"``: the CH-best K ≥ 2, or 1 when the K = 2 split
        fails the Duda–Hart test.
    dead : bool ndarray (F,), optional
        Filters with constant points: always K = 1, never anomalous.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> pts = np.concatenate([rng.normal(0, 1, (190, 2)), rng.normal(9, 0.2, (10, 2))])
    >>> one, two = np.zeros(200, int), np.repeat([0, 1], [190, 10])
    >>> stats = np.stack([label_stats(pts, one, 2), label_stats(pts, two, 2)])[None]
    >>> loglik = np.array([[-4.0, -2.9]])  # mean log-likelihoods of the K = 1 and K = 2 fits
    >>> sel = select(stats, loglik, np.array([1, 2]), 200)
    >>> sel.k.tolist(), sel.anomaly.tolist(), sel.cluster_sizes.tolist()
    ([2], [True], [[190, 10]])
    """
    if selection not in SELECTIONS:
        raise InvalidParameterError(f"selection must be one of {SELECTIONS}, got {selection!r}.")
    ks = np.asarray(ks)
    f = stats.shape[0]
    rows = np.arange(f)
    ch = np.where(ks[None, :] == 1, np.nan, calinski_harabasz_from_stats(stats))
    crit = bic(loglik, ks, n_samples)
    small_all, sep_all = separation(stats, outlier_fraction)  # (F, nK, Kmax)
    isolates = (small_all & (sep_all >= min_separation)).any(axis=-1) & (ks[None, :] >= 2)
    multi = ks >= 2
    one = int(np.flatnonzero(ks == 1)[0]) if (ks == 1).any() else None
    ch_key = np.nan_to_num(ch, nan=-np.inf)
    if not multi.any():
        k_index = np.zeros(f, dtype=int)
    elif selection == "ch":
        k_index = np.where(multi[None, :], ch_key, -np.inf).argmax(axis=1)
        if one is not None and (ks == 2).any():
            j2 = int(np.flatnonzero(ks == 2)[0])
            real = duda_hart_ratio(stats[:, j2, :2]) < duda_hart_critical(n_samples)
            k_index = np.where(real, k_index, one)
    else:
        k_bic = crit.argmin(axis=1)
        capped = multi[None, :] & (np.arange(len(ks))[None, :] <= k_bic[:, None])
        k_ch = np.where(capped, ch_key, -np.inf).argmax(axis=1)
        k_index = np.where(isolates[rows, k_ch] | ~isolates[rows, k_bic], k_ch, k_bic)
        if one is not None:
            k_index = np.where(k_bic == one, one, k_index)
    if dead is not None and one is not None:
        k_index = np.where(np.asarray(dead, dtype=bool), one, k_index)
    chosen = stats[rows, k_index]  # (F, Kmax, 6)
    small, sep = small_all[rows, k_index], sep_all[rows, k_index]
    multi_chosen = (ks[k_index] >= 2)[:, None]
    outlier_clusters = small & (sep >= min_separation) & multi_chosen
    sep = np.where(small & multi_chosen, sep, 0.0)
    return Selection(
        k_index=k_index,
        k=ks[k_index],
        ch=ch,
        bic=crit,
        cluster_sizes=np.rint(chosen[..., 0]).astype(np.int64),
        separation=sep,
        outlier_clusters=outlier_clusters,
        anomaly=np.asarray(outlier_clusters.any(axis=1)),
        anomaly_score=sep.max(axis=1),
    )
