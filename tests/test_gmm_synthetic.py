"""The synthetic filter generator keeps the ground truth it promises."""

from __future__ import annotations

import numpy as np
import pytest

from filterscope.gmm.synthetic import CLEAN_KINDS, KINDS, make_filter_points


def test_planted_groups_have_the_promised_size_and_separation():
    points, truth = make_filter_points(
        60, 400, outlier_fraction=(0.01, 0.05), separation=(6.0, 9.0), random_state=0
    )
    assert points.shape == (60, 400, 2) and np.isfinite(points).all()
    planted = truth.kind == "planted"
    assert planted.sum() == 10 and set(truth.kind) == set(KINDS)
    sizes = truth.outliers.sum(axis=1)
    assert (sizes[~planted] == 0).all()
    assert ((sizes[planted] >= 4) & (sizes[planted] <= 20)).all()
    assert (truth.separation[planted] >= 6.0 - 1e-9).all()
    assert np.isnan(truth.separation[~planted]).all()
    assert set(truth.base[planted]) <= set(CLEAN_KINDS)
    # on a Gaussian base the planted group lies far outside the rest of the cloud
    for f in np.flatnonzero(planted & (truth.base == "gaussian")):
        group, rest = points[f][truth.outliers[f]], points[f][~truth.outliers[f]]
        delta = group.mean(0) - rest.mean(0)
        maha = np.sqrt(delta @ np.linalg.solve(np.cov(rest.T), delta))
        assert maha > 5.0


def test_same_seed_same_clouds_and_unknown_kinds_fail():
    a, ta = make_filter_points(7, 100, random_state=3)
    b, tb = make_filter_points(7, 100, random_state=3)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(ta.outliers, tb.outliers)
    with pytest.raises(ValueError, match="unknown synthetic kind"):
        make_filter_points(2, 10, kinds=("gaussian", "spiral"))
