"""Calinski–Harabasz, Duda–Hart, separation and the K / anomaly rule on literal oracles."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import calinski_harabasz_score

from filterscope.gmm import select as sel

# Float comparisons against oracles: `make test` reruns these under other CPU kernels.
pytestmark = pytest.mark.numerics


def test_calinski_harabasz_equals_sklearn_batched_with_empty_clusters():
    rng = np.random.default_rng(0)
    points = rng.normal(size=(20, 150, 2)) * rng.uniform(0.1, 50, size=(20, 1, 2))
    labels = rng.integers(0, 6, size=(20, 150))
    labels[::2][labels[::2] == 3] = 5  # cluster 3 empty in every second filter
    got = sel.calinski_harabasz(points, labels)
    want = [calinski_harabasz_score(p, lab) for p, lab in zip(points, labels, strict=True)]
    np.testing.assert_allclose(got, want, rtol=1e-10)
    # from per-cluster sums laid out with more (empty) clusters than used: same values
    stats = sel.label_stats(points, labels, 8)
    np.testing.assert_allclose(sel.calinski_harabasz_from_stats(stats), want, rtol=1e-10)


def test_calinski_harabasz_degenerate_cases():
    pts = np.array([[0.0, 0.0], [0.0, 0.0], [1.0, 1.0], [1.0, 1.0]])
    # zero within-cluster dispersion: scikit-learn returns 1.0
    assert sel.calinski_harabasz(pts, np.array([0, 0, 1, 1])) == 1.0
    assert calinski_harabasz_score(pts, [0, 0, 1, 1]) == 1.0
    # a single non-empty cluster has no between-cluster dispersion
    assert sel.calinski_harabasz_from_stats(sel.label_stats(pts, np.zeros(4, int), 3)) == 0.0


def test_label_stats_are_per_cluster_feature_sums():
    rng = np.random.default_rng(1)
    pts = rng.normal(size=(50, 2))
    labels = rng.integers(0, 3, size=50)
    stats = sel.label_stats(pts, labels, 4)
    for k in range(4):
        p = pts[labels == k]
        x, y = p[:, 0], p[:, 1]
        want = [len(p), x.sum(), y.sum(), (x * x).sum(), (x * y).sum(), (y * y).sum()]
        np.testing.assert_allclose(stats[k], want, atol=1e-12)


def test_duda_hart_ratio_and_critical_value():
    rng = np.random.default_rng(2)
    pts = rng.normal(size=(400, 2))
    labels = (pts[:, 0] > 0).astype(int)
    je1 = ((pts - pts.mean(0)) ** 2).sum()
    je2 = sum(((pts[labels == k] - pts[labels == k].mean(0)) ** 2).sum() for k in (0, 1))
    got = sel.duda_hart_ratio(sel.label_stats(pts, labels, 2))
    assert got == pytest.approx(je2 / je1, rel=1e-12)
    crit = 1 - 2 / (math.pi * 2) - 3.2 * math.sqrt(2 * (1 - 8 / (math.pi**2 * 2)) / (400 * 2))
    assert sel.duda_hart_critical(400) == pytest.approx(crit)
    # a Gaussian split in half is not a real split; two far blobs are
    assert got > crit
    blobs = np.concatenate(
        [rng.normal(size=(200, 2)), rng.normal(size=(200, 2)) + np.array([8, 0])]
    )
    split = sel.duda_hart_ratio(sel.label_stats(blobs, np.repeat([0, 1], 200), 2))
    assert split < crit


def test_separation_is_the_mahalanobis_distance_to_the_nearest_big_cluster():
    rng = np.random.default_rng(3)
    big_a = rng.normal(size=(500, 2)) * np.array([2.0, 0.5])
    big_b = rng.normal(size=(400, 2)) + np.array([30.0, 0.0])
    small = rng.normal(size=(20, 2)) * 0.3 + np.array([0.0, 6.0])
    pts = np.concatenate([big_a, big_b, small])
    labels = np.repeat([0, 1, 2], [500, 400, 20])
    small_mask, sep = sel.separation(sel.label_stats(pts, labels, 4), 0.05)
    assert small_mask.tolist() == [False, False, True, False]
    d = []
    for big in (big_a, big_b):
        delta = small.mean(0) - big.mean(0)
        cov = np.cov(small.T, bias=True) + np.cov(big.T, bias=True)
        d.append(math.sqrt(delta @ np.linalg.solve(cov, delta)))
    assert sep[2] == pytest.approx(min(d), rel=1e-9)
    assert sep[0] == sep[1] == sep[3] == 0.0


def _stats_for(points: np.ndarray, labelings: list[np.ndarray], k_max: int) -> np.ndarray:
    """(1, nK, Kmax, 6) label sums of one filter for a list of labelings."""
    return np.stack([sel.label_stats(points, lab, k_max) for lab in labelings])[None]


def _loglik(points: np.ndarray, labels: np.ndarray) -> float:
    """Mean log-likelihood of the hard-label Gaussian mixture (a stand-in for the EM fit)."""
    total = 0.0
    for k in np.unique(labels):
        p = points[labels == k]
        cov = np.cov(p.T, bias=True) + 1e-6 * np.eye(2)
        d = p - p.mean(0)
        maha = np.einsum("ni,ij,nj->n", d, np.linalg.inv(cov), d)
        w = len(p) / len(points)
        total += (
            np.log(w) - np.log(2 * np.pi) - 0.5 * np.log(np.linalg.det(cov)) - 0.5 * maha
        ).sum()
    return total / len(points)


def test_select_rules_on_a_bulk_with_a_far_group():
    rng = np.random.default_rng(4)
    # three big clusters and a compact 2 % group six standard deviations from the first
    centres = np.array([[0.0, 0.0], [12.0, 0.0], [6.0, 10.0]])
    pts = np.concatenate([rng.normal(size=(330, 2)) + c for c in centres])
    group = rng.normal(size=(20, 2)) * 0.3 + np.array([-6.0, 0.0])
    pts = np.concatenate([pts, group])
    truth = np.repeat([0, 1, 2, 3], [330, 330, 330, 20])
    merged = np.where(truth == 3, 0, truth)  # the group merged into the nearest big cluster
    labelings = [np.zeros(1010, int), merged % 2, merged, truth]
    ks = np.array([1, 2, 3, 4])
    stats = _stats_for(pts, labelings, 4)
    loglik = np.array([[_loglik(pts, lab) for lab in labelings]])
    ch = sel.calinski_harabasz_from_stats(stats)[0]
    # CH prefers merging the small group (K = 3) ...
    assert ch[2] > ch[3]
    literal = sel.select(stats, loglik, ks, 1010, selection="ch")
    assert literal.k.tolist() == [3] and not literal.anomaly[0]
    # ... BIC prefers K = 4, and only its clustering isolates the group: K = 4, flagged
    res = sel.select(stats, loglik, ks, 1010)
    assert res.k.tolist() == [4] and res.anomaly.tolist() == [True]
    assert res.outlier_clusters[0].tolist() == [False, False, False, True]
    assert res.cluster_sizes[0].tolist() == [330, 330, 330, 20]
    assert res.anomaly_score[0] == pytest.approx(res.separation[0, 3]) and res.anomaly_score[0] > 4
    # a stricter separation threshold than the group's keeps K = 4 from CH's view: not flagged
    strict = sel.select(stats, loglik, ks, 1010, min_separation=res.anomaly_score[0] + 1)
    assert strict.k.tolist() == [3] and not strict.anomaly[0]


def test_select_keeps_one_cluster_when_bic_prefers_one_gaussian():
    rng = np.random.default_rng(5)
    pts = rng.normal(size=(600, 2)) @ np.array([[3.0, 0.0], [2.0, 0.4]])  # elongated
    labelings = [np.zeros(600, int), (pts[:, 0] > 0).astype(int)]
    stats = _stats_for(pts, labelings, 2)
    loglik = np.array([[_loglik(pts, lab) for lab in labelings]])
    res = sel.select(stats, loglik, np.array([1, 2]), 600)
    assert res.k.tolist() == [1] and not res.anomaly[0] and res.anomaly_score[0] == 0.0
    assert np.isnan(res.ch[0, 0]) and res.ch[0, 1] > 0
    # dead filters are K = 1 whatever the statistics say
    forced = sel.select(
        np.repeat(stats, 2, 0),
        np.repeat(loglik, 2, 0),
        np.array([1, 2]),
        600,
        selection="ch",
        dead=np.array([True, False]),
    )
    assert forced.k.tolist() == [1, 2]


def test_bic_formula():
    ll = np.array([[-3.0, -2.5]])
    np.testing.assert_allclose(
        sel.bic(ll, np.array([1, 2]), 100), [[600 + 5 * math.log(100), 500 + 11 * math.log(100)]]
    )
