"""Synthetic 2-D filter point clouds with known ground truth.

Each synthetic "filter" is a cloud of ``N`` points in the plane, like the 2-D PCA coordinates of
one filter's feature maps over ``N`` samples. Some clouds contain no outlier samples at all
(a single Gaussian, a heavy-tailed cloud, a few balanced clusters, elongated correlated clusters,
a skewed one-sided cloud); others are one of those plus a *planted* small group holding 1–5 % of
the samples far away from everything else. The anomaly rule of :class:`~filterscope.gmm.FilterGMM`
is measured against this ground truth (false-positive rate on the clean clouds, true-positive
rate and sample recall on the planted ones), and the benchmark uses the same generator.

Every cloud gets a random overall scale (10^-2 … 10^2) and offset, so the engine's per-filter
standardisation is exercised too.

Examples
--------
>>> from filterscope.gmm.synthetic import make_filter_points
>>> points, truth = make_filter_points(4, 300, kinds=("gaussian", "planted"), random_state=0)
>>> points.shape, truth.outliers.shape
((4, 300, 2), (4, 300))
>>> [str(k) for k in truth.kind]
['gaussian', 'planted', 'gaussian', 'planted']
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from sklearn.utils import check_random_state

from filterscope.errors import InvalidParameterError

#: Clouds with no outlier samples: a filter holding one of these must not be flagged.
CLEAN_KINDS: tuple[str, ...] = ("gaussian", "heavy", "clusters", "elongated", "skewed")
#: Every kind :func:`make_filter_points` knows; ``"planted"`` is a clean cloud plus a far group.
KINDS: tuple[str, ...] = (*CLEAN_KINDS, "planted")


@dataclass(frozen=True)
class SyntheticTruth:
    """Ground truth of :func:`make_filter_points`.

    Attributes
    ----------
    kind : ndarray of str, shape (F,)
        The kind of each filter's cloud (one of :data:`KINDS`).
    base : ndarray of str, shape (F,)
        The clean kind underneath; equal to ``kind`` except for planted filters.
    outliers : ndarray of bool, shape (F, N)
        True for the planted outlier samples (all False on clean filters).
    separation : ndarray of float, shape (F,)
        Mahalanobis distance of the planted group's centre from the nearest base cluster,
        measured with that cluster's covariance (NaN on clean filters).
    """

    kind: np.ndarray
    base: np.ndarray
    outliers: np.ndarray
    separation: np.ndarray

    @property
    def has_outliers(self) -> np.ndarray:
        """Bool (F,): the filter holds a planted outlier group."""
        return np.asarray(self.outliers.any(axis=1))


def _random_covariance(rng: np.random.RandomState, aspect: float) -> np.ndarray:
    """A 2×2 covariance with unit geometric-mean variance, the given axis ratio and a random
    rotation."""
    theta = rng.uniform(0.0, np.pi)
    rot = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    scales = np.array([np.sqrt(aspect), 1.0 / np.sqrt(aspect)])
    return rot @ np.diag(scales**2) @ rot.T


def _separated_centres(
    rng: np.random.RandomState, covs: list[np.ndarray], min_distance: float
) -> np.ndarray:
    """Centres for clusters with the given covariances, pairwise at least ``min_distance``
    apart in the Mahalanobis metric of the summed covariances (so they do not overlap)."""
    centres = [np.zeros(2)]
    for cov in covs[1:]:
        for _ in range(1000):
            cand = rng.uniform(-1.0, 1.0, size=2) * (min_distance + 2.0) * 2.0
            ok = True
            for c_prev, cov_prev in zip(centres, covs, strict=False):
                delta = cand - c_prev
                d2 = delta @ np.linalg.solve(cov + cov_prev, delta)
                if not (min_distance**2 <= d2 <= (3 * min_distance) ** 2):
                    ok = False
                    break
            if ok:
                break
        centres.append(cand)
    return np.array(centres)


def _clean_cloud(
    rng: np.random.RandomState, kind: str, n: int
) -> tuple[np.ndarray, list[tuple[np.ndarray, np.ndarray]]]:
    """Points of a clean cloud and its components (centre, covariance) for placing a group."""
    if kind == "gaussian":
        cov = _random_covariance(rng, rng.uniform(1.0, 10.0))
        pts = rng.multivariate_normal(np.zeros(2), cov, size=n)
        return pts, [(np.zeros(2), cov)]
    if kind == "heavy":
        # Elliptical Student-t: heavier tails than a Gaussian but still one cloud.
        df = rng.uniform(4.0, 10.0)
        cov = _random_covariance(rng, rng.uniform(1.0, 5.0))
        z = rng.multivariate_normal(np.zeros(2), cov, size=n)
        pts = z / np.sqrt(rng.chisquare(df, size=n) / df)[:, None]
        return pts, [(np.zeros(2), cov * df / (df - 2.0))]
    if kind == "skewed":
        # One-sided cloud like the PCA coordinates of ReLU maps: gamma along one axis.
        shape = rng.uniform(2.0, 6.0)
        a = rng.gamma(shape, 1.0, size=n)
        b = rng.normal(0.0, np.sqrt(shape) * rng.uniform(0.3, 1.0), size=n)
        theta = rng.uniform(0.0, 2 * np.pi)
        rot = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
        pts = np.column_stack([a - shape, b]) @ rot.T
        cov = np.cov(pts.T)
        return pts, [(pts.mean(axis=0), cov)]
    if kind in ("clusters", "elongated"):
        k = int(rng.randint(2, 5)) if kind == "clusters" else int(rng.randint(2, 4))
        if kind == "clusters":
            covs = [_random_covariance(rng, rng.uniform(1.0, 3.0)) for _ in range(k)]
        else:
            covs = [_random_covariance(rng, rng.uniform(4.0, 10.0)) for _ in range(k)]
        centres = _separated_centres(rng, covs, min_distance=rng.uniform(4.0, 8.0))
        # Balanced: every cluster holds at least 15 % of the samples.
        props = rng.dirichlet(np.full(k, 4.0))
        props = 0.15 + props * (1.0 - 0.15 * k)
        sizes = np.floor(props * n).astype(int)
        sizes[0] += n - sizes.sum()
        pts = np.concatenate(
            [
                rng.multivariate_normal(c, cov, size=s)
                for c, cov, s in zip(centres, covs, sizes, strict=True)
            ]
        )
        return pts, list(zip(centres, covs, strict=True))
    raise InvalidParameterError(f"unknown synthetic kind {kind!r}; expected one of {KINDS}")


def _plant_group(
    rng: np.random.RandomState,
    pts: np.ndarray,
    comps: list[tuple[np.ndarray, np.ndarray]],
    fraction: tuple[float, float],
    distance: tuple[float, float],
) -> tuple[np.ndarray, np.ndarray, float]:
    """Replace a random 1–5 % of the points by a compact group far from every component."""
    n = pts.shape[0]
    m = max(1, int(np.floor(rng.uniform(*fraction) * n)))
    target = rng.uniform(*distance)
    for _ in range(1000):
        c0, cov0 = comps[rng.randint(len(comps))]
        direction = rng.normal(size=2)
        # Place the group at the target Mahalanobis distance of the chosen component...
        step = direction / np.sqrt(direction @ np.linalg.solve(cov0, direction))
        centre = c0 + target * step
        # ...and make sure it is at least that far from every other component too.
        dists = [np.sqrt((centre - c) @ np.linalg.solve(cv, centre - c)) for c, cv in comps]
        if min(dists) >= target - 1e-9:
            break
    sep = float(min(dists))
    # Compact group: its spread is a fraction of the nearest component's smallest axis.
    small_axis = np.sqrt(np.linalg.eigvalsh(cov0)[0])
    gcov = (
        _random_covariance(rng, rng.uniform(1.0, 3.0)) * (rng.uniform(0.1, 0.5) * small_axis) ** 2
    )
    idx = rng.choice(n, size=m, replace=False)
    pts = pts.copy()
    pts[idx] = rng.multivariate_normal(centre, gcov, size=m)
    mask = np.zeros(n, dtype=bool)
    mask[idx] = True
    return pts, mask, sep


def make_filter_points(
    n_filters: int,
    n_samples: int,
    *,
    kinds: Sequence[str] = KINDS,
    outlier_fraction: tuple[float, float] = (0.01, 0.05),
    separation: tuple[float, float] = (6.0, 12.0),
    random_state: int | np.random.RandomState | None = 0,
) -> tuple[np.ndarray, SyntheticTruth]:
    """Generate ``n_filters`` 2-D point clouds with known outlier samples.

    Parameters
    ----------
    n_filters, n_samples : int
        Number of clouds (filters) and points per cloud (samples).
    kinds : sequence of str, default all of :data:`KINDS`
        Kinds to cycle through, filter by filter. ``"planted"`` draws a clean base kind at random
        and replaces a fraction of its points by a compact far-away group.
    outlier_fraction : (float, float), default (0.01, 0.05)
        Range of the planted group's size as a fraction of ``n_samples`` (at least one sample).
    separation : (float, float), default (6, 12)
        Range of the Mahalanobis distance of the planted group's centre from the nearest base
        cluster (in that cluster's own covariance).
    random_state : int, RandomState or None, default 0
        Seed; the same seed gives the same clouds.

    Returns
    -------
    points : ndarray of shape (n_filters, n_samples, 2), float64
    truth : SyntheticTruth

    Examples
    --------
    >>> points, truth = make_filter_points(6, 500, random_state=1)
    >>> bool(truth.has_outliers[5]), int(truth.outliers[5].sum()) <= 25
    (True, True)
    """
    for k in kinds:
        if k not in KINDS:
            raise InvalidParameterError(f"unknown synthetic kind {k!r}; expected one of {KINDS}")
    rng = check_random_state(random_state)
    points = np.empty((n_filters, n_samples, 2))
    kind_out = np.empty(n_filters, dtype=object)
    base_out = np.empty(n_filters, dtype=object)
    outliers = np.zeros((n_filters, n_samples), dtype=bool)
    sep_out = np.full(n_filters, np.nan)
    for f in range(n_filters):
        kind = kinds[f % len(kinds)]
        base = CLEAN_KINDS[rng.randint(len(CLEAN_KINDS))] if kind == "planted" else kind
        pts, comps = _clean_cloud(rng, base, n_samples)
        if kind == "planted":
            pts, outliers[f], sep_out[f] = _plant_group(
                rng, pts, comps, outlier_fraction, separation
            )
        scale = 10.0 ** rng.uniform(-2.0, 2.0)
        offset = rng.normal(size=2) * 10.0 * scale
        points[f] = pts * scale + offset
        kind_out[f] = kind
        base_out[f] = base
    truth = SyntheticTruth(
        kind=kind_out.astype(str),
        base=base_out.astype(str),
        outliers=outliers,
        separation=sep_out,
    )
    return points, truth
