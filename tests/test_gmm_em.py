"""The batched EM engine against scikit-learn and literal reference computations."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from scipy import stats as st
from sklearn.exceptions import ConvergenceWarning
from sklearn.mixture import GaussianMixture
from sklearn.mixture._gaussian_mixture import _estimate_gaussian_parameters

from filterscope.gmm import em
from filterscope.gmm.synthetic import make_filter_points

KS = tuple(range(1, 9))


def _sklearn_init(points: np.ndarray, k: int, seed: int) -> GaussianMixture:
    """scikit-learn's own k-means initial parameters (max_iter=0 stops right after init)."""
    gm = GaussianMixture(k, max_iter=0, random_state=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        gm.fit(points)
    return gm


@pytest.mark.parametrize("k", [2, 3, 5])
def test_em_matches_sklearn_from_the_same_initial_parameters(k):
    points, _ = make_filter_points(18, 300, random_state=k)
    inits = [_sklearn_init(p, k, seed) for seed, p in enumerate(points)]
    fit = em.fit_from_init(
        points,
        weights=np.stack([g.weights_ for g in inits]),
        means=np.stack([g.means_ for g in inits]),
        precisions=np.stack([g.precisions_ for g in inits]),
    )
    for i, (p, g0) in enumerate(zip(points, inits, strict=True)):
        gm = GaussianMixture(
            k, weights_init=g0.weights_, means_init=g0.means_, precisions_init=g0.precisions_
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            labels = gm.fit_predict(p)
        assert fit.n_iter[i] == gm.n_iter_
        assert fit.converged[i] == gm.converged_
        assert abs(fit.lower_bound[i] - gm.lower_bound_) < 1e-8
        assert abs(fit.loglik[i] - gm.score(p)) < 1e-8
        np.testing.assert_allclose(fit.weights[i], gm.weights_, rtol=1e-7, atol=1e-10)
        np.testing.assert_allclose(fit.means[i], gm.means_, rtol=1e-7, atol=1e-8 * np.abs(p).max())
        np.testing.assert_allclose(
            fit.covariances[i],
            gm.covariances_,
            rtol=1e-6,
            atol=1e-9 * np.abs(gm.covariances_).max(),
        )
        np.testing.assert_array_equal(fit.labels[i], labels)


def test_em_from_responsibilities_estimates_initial_parameters_like_sklearn():
    points, _ = make_filter_points(8, 250, random_state=4)
    rng = np.random.default_rng(0)
    resp = rng.dirichlet(np.ones(3), size=(8, 250))
    fit = em.fit_from_init(points, resp=resp, max_iter=5, tol=0.0)
    for i, p in enumerate(points):
        _, means, covs = _estimate_gaussian_parameters(p, resp[i], 1e-6, "full")
        weights = resp[i].sum(0) / 250 + 10 * np.finfo(float).eps / 250
        gm = GaussianMixture(
            3,
            weights_init=weights / weights.sum(),
            means_init=means,
            precisions_init=np.linalg.inv(covs),
            max_iter=5,
            tol=0.0,
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            gm.fit(p)
        assert fit.n_iter[i] == gm.n_iter_ == 5
        assert abs(fit.lower_bound[i] - gm.lower_bound_) < 1e-8
        assert abs(fit.loglik[i] - gm.score(p)) < 1e-8


def test_own_initialisation_is_statistically_no_worse_than_sklearn():
    # 256 synthetic filters, two K each: paired final log-likelihoods from our batched
    # k-means++ / Lloyd initialisation against scikit-learn's default k-means one.
    points, _ = make_filter_points(256, 300, random_state=21)
    uniforms = np.random.RandomState(0).random_sample((256, 1, em.n_uniforms(4)))
    ours = em.fit_chunk(
        points,
        uniforms,
        (2, 4),
        tol=1e-3,
        reg_covar=1e-6,
        max_iter=100,
        dtype=torch.float64,
        device="cpu",
        budget=em.CPU_BUDGET,
    )["loglik"]
    theirs = np.empty_like(ours)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        for i, p in enumerate(points):
            for j, k in enumerate((2, 4)):
                theirs[i, j] = GaussianMixture(k, random_state=i).fit(p).score(p)
    diff = (ours - theirs).ravel()
    assert np.median(diff) >= -1e-3
    # one-sided: is ours systematically lower? Must not be significant.
    assert st.wilcoxon(diff, alternative="less", zero_method="zsplit").pvalue > 0.01
    worse, better = int((diff < -1e-3).sum()), int((diff > 1e-3).sum())
    assert st.binomtest(worse, worse + better, alternative="greater").pvalue > 0.01


def test_e_step_is_an_exact_log_sum_exp_even_for_very_far_points():
    # A tight and a broad component, and one point 400 standard deviations from both: its
    # terms are all far below any float's range unless each point's largest term is factored out.
    for dtype in (torch.float32, torch.float64):
        xs = torch.tensor([[[0.0, 0.0], [0.5, -0.2], [0.01, 0.0], [400.0, 0.0]]], dtype=dtype)
        feats = em.make_features(xs)
        par = torch.tensor(
            [[[0.5, 0.5], [0.0, 0.5], [0.0, 0.0], [1e-4, 1.0], [0.0, 0.1], [1e-4, 1.0]]],
            dtype=dtype,
        )
        dens, norm, top = em.e_step(par, feats)
        logp = torch.log(norm) + np.log(2) * top
        p = par[0].double()
        x = xs[0].double()
        terms = []
        for j in range(2):
            w, mx, my, a, b, c = p[:, j]
            det = a * c - b * b
            dx, dy = x[:, 0] - mx, x[:, 1] - my
            maha = (c * dx * dx - 2 * b * dx * dy + a * dy * dy) / det
            terms.append(torch.log(w) - np.log(2 * np.pi) - 0.5 * torch.log(det) - 0.5 * maha)
        ref = torch.stack(terms)
        assert ref[:, 3].max() < -1e4  # exp() of it underflows in any dtype
        expected = torch.logsumexp(ref, dim=0)
        tol = 1e-10 if dtype == torch.float64 else 2e-3
        np.testing.assert_allclose(logp[0].double(), expected, rtol=tol, atol=tol)
        mean = em.mean_loglik(norm, top, 2)
        np.testing.assert_allclose(mean.double(), expected.mean(), rtol=tol, atol=tol)
        resp = (dens / norm[:, None, :])[0].double()
        np.testing.assert_allclose(resp, torch.softmax(ref, 0), atol=1e-5)


def test_first_max_is_argmax_with_first_index_on_ties_and_its_one_hot():
    rng = np.random.default_rng(1)
    x = torch.tensor(rng.integers(0, 3, size=(5, 6, 40)), dtype=torch.float32)
    labels, onehot = em.first_max(x - x.amax(dim=1, keepdim=True))
    want = np.argmax(x.numpy(), axis=1)
    np.testing.assert_array_equal(labels.numpy(), want)
    np.testing.assert_array_equal(onehot.numpy(), np.eye(6)[want].transpose(0, 2, 1))


def test_kmeanspp_seeds_are_data_points_and_independent_of_batching():
    points, _ = make_filter_points(12, 200, random_state=2)
    std = em.standardize(points, torch.float64, torch.device("cpu"))
    u = torch.as_tensor(np.random.RandomState(3).random_sample((12, em.n_uniforms(6))))
    whole = em.kmeanspp_seeds(std.features, 6, u)
    parts = torch.cat(
        [em.kmeanspp_seeds(std.features[i : i + 5], 6, u[i : i + 5]) for i in (0, 5, 10)]
    )
    assert torch.equal(whole, parts)
    xs = std.features[:, 1:3].transpose(1, 2)
    for f in range(12):
        is_point = (whole[f][:, None, :] == xs[f][None, :, :]).all(-1).any(-1)
        assert bool(is_point.all())  # every seed is one of the points
        assert len({tuple(c.tolist()) for c in whole[f]}) == 6  # and they are distinct


def test_results_do_not_depend_on_chunking_or_pool_width():
    points, _ = make_filter_points(10, 300, random_state=5)
    u = np.random.RandomState(0).random_sample((10, 2, em.n_uniforms(4)))
    kw = {"tol": 1e-3, "reg_covar": 1e-6, "max_iter": 100, "dtype": torch.float64}
    whole = em.fit_chunk(points, u, (1, 2, 3, 4), device="cpu", budget=em.CPU_BUDGET, **kw)
    narrow = em.fit_chunk(points, u, (1, 2, 3, 4), device="cpu", budget=1 << 14, **kw)
    halves = [
        em.fit_chunk(points[s], u[s], (1, 2, 3, 4), device="cpu", budget=em.CPU_BUDGET, **kw)
        for s in (slice(0, 4), slice(4, 10))
    ]
    for key in ("loglik", "lower_bound", "n_iter", "labels", "means"):
        np.testing.assert_allclose(whole[key], narrow[key], rtol=1e-12, atol=1e-12)
        joined = np.concatenate([h[key] for h in halves])
        np.testing.assert_allclose(whole[key], joined, rtol=1e-12, atol=1e-12)


def test_float32_agrees_with_float64_and_results_are_scale_invariant():
    points, _ = make_filter_points(16, 400, random_state=6)
    u = np.random.RandomState(0).random_sample((16, 1, em.n_uniforms(3)))
    kw = {"tol": 1e-3, "reg_covar": 1e-9, "max_iter": 100, "device": "cpu", "budget": em.CPU_BUDGET}
    f64 = em.fit_chunk(points, u, (1, 2, 3), dtype=torch.float64, **kw)
    f32 = em.fit_chunk(points.astype(np.float32), u, (1, 2, 3), dtype=torch.float32, **kw)
    np.testing.assert_allclose(f32["loglik"], f64["loglik"], atol=5e-3)
    # same clustering up to a handful of boundary points
    assert (f32["labels"] == f64["labels"]).mean() > 0.98
    # a change of units only shifts the log-likelihood by -2 log(scale)
    scaled = em.fit_chunk(points * 1000.0 + 5.0, u, (1, 2, 3), dtype=torch.float64, **kw)
    np.testing.assert_allclose(scaled["loglik"], f64["loglik"] - 2 * np.log(1000.0), atol=1e-6)
    np.testing.assert_array_equal(scaled["labels"], f64["labels"])


def test_standardisation_is_the_same_at_any_scale_and_never_squares_raw_points():
    # Scaling by a power of two is exact in floating point, so the standardised features must
    # be bit for bit the same; before, 2^-600 underflowed the variance (every filter "dead")
    # and 2^600 overflowed it (features all 0, log(scale) inf).
    points, _ = make_filter_points(6, 200, random_state=9)
    points = np.concatenate([points, np.full((1, 200, 2), -3.0)])  # plus a constant filter
    cpu = torch.device("cpu")
    ref = em.standardize(points, torch.float64, cpu)
    assert ref.dead.tolist() == [False] * 6 + [True]
    for e in (-600, -60, 60, 600):
        std = em.standardize(np.ldexp(points, e), torch.float64, cpu)
        assert torch.equal(std.features, ref.features), e
        np.testing.assert_array_equal(std.dead, ref.dead)
        np.testing.assert_array_equal(std.scale, np.ldexp(ref.scale, e))
        np.testing.assert_array_equal(std.centre, np.ldexp(ref.centre, e))
        live = ~ref.dead
        np.testing.assert_allclose(std.log_scale[live], ref.log_scale[live] + e * np.log(2.0))
        assert np.isfinite(std.log_scale).all()
    # powers of ten round the points themselves, and so the features, by a few ulps only
    for scale in (1e-300, 1e-20, 1e154, 1e300):
        std = em.standardize(points * scale, torch.float64, cpu)
        np.testing.assert_allclose(std.features, ref.features, rtol=1e-13, atol=1e-13)
        np.testing.assert_array_equal(std.dead, ref.dead)


def test_reg_covar_is_relative_to_each_filters_spread():
    # fit_chunk adds reg_covar to the standardised covariances, so even reg_covar=1e-6 on
    # points spread ~1e-6 (where it is as large as their variance, in their units) changes
    # nothing; fit_from_init adds it in the caller's units, as scikit-learn does.
    points, _ = make_filter_points(8, 300, random_state=10)
    u = np.random.RandomState(0).random_sample((8, 1, em.n_uniforms(4)))
    kw = {"tol": 1e-3, "reg_covar": 1e-6, "max_iter": 100, "device": "cpu", "budget": em.CPU_BUDGET}
    for dtype in (torch.float32, torch.float64):
        ref = em.fit_chunk(points, u, (1, 2, 3, 4), dtype=dtype, **kw)
        tiny = em.fit_chunk(points * 1e-6, u, (1, 2, 3, 4), dtype=dtype, **kw)
        np.testing.assert_array_equal(tiny["labels"], ref["labels"])
        np.testing.assert_allclose(tiny["loglik"], ref["loglik"] - 2 * np.log(1e-6), atol=1e-6)
        np.testing.assert_allclose(tiny["covariances"], ref["covariances"] * 1e-12, rtol=1e-6)
    resp = np.eye(2)[np.random.default_rng(0).integers(0, 2, size=(8, 300))]
    wide = em.fit_from_init(points, resp=resp, reg_covar=1e-6, max_iter=0)
    tiny = em.fit_from_init(points * 1e-3, resp=resp, reg_covar=1e-6 * 1e-6, max_iter=0)
    np.testing.assert_allclose(tiny.covariances, wide.covariances * 1e-6, rtol=1e-9)


def test_degenerate_filters_give_finite_results():
    rng = np.random.default_rng(0)
    n = 200
    constant = np.full((n, 2), 3.25)
    duplicates = np.concatenate([np.full((150, 2), [1.0, -2.0]), rng.normal(size=(50, 2))])
    on_a_line = np.column_stack([rng.normal(size=n), np.full(n, 7.0)])
    two_points = np.repeat([[0.0, 0.0], [5.0, 5.0]], n // 2, axis=0)
    points = np.stack([constant, duplicates, on_a_line, two_points])
    u = np.random.RandomState(0).random_sample((4, 1, em.n_uniforms(8)))
    for dtype, data in ((torch.float64, points), (torch.float32, points.astype(np.float32))):
        res = em.fit_chunk(
            data,
            u,
            KS,
            tol=1e-3,
            reg_covar=1e-6,
            max_iter=100,
            dtype=dtype,
            device="cpu",
            budget=em.CPU_BUDGET,
        )
        assert res["dead"].tolist() == [True, False, False, False]
        for key, value in res.items():
            if value.dtype.kind == "f":
                assert np.isfinite(value).all(), key
        # the constant filter collapses onto its point with covariance reg_covar I
        np.testing.assert_allclose(res["means"][0, :, 0], [[3.25, 3.25]] * 8)
        np.testing.assert_allclose(res["loglik"][0], -np.log(2 * np.pi) - np.log(1e-6))
        # two distinct values: K = 2 puts each in its own component
        assert sorted(np.bincount(res["labels"][3, 1], minlength=2)) == [100, 100]


def test_refilling_slots_from_views_leaves_the_inputs_alone():
    # n_init=1 loads slots from views of the features; a narrow pool refills them many times
    points, _ = make_filter_points(12, 300, random_state=7)
    u = np.random.RandomState(1).random_sample((12, 1, em.n_uniforms(3)))
    kw = {"tol": 1e-3, "reg_covar": 1e-6, "max_iter": 100, "dtype": torch.float64}
    wide = em.fit_chunk(points, u, (1, 2, 3), device="cpu", budget=em.CPU_BUDGET, **kw)
    narrow = em.fit_chunk(points, u, (1, 2, 3), device="cpu", budget=3 * 300 * 15, **kw)
    for key in ("loglik", "lower_bound", "n_iter", "labels", "means"):
        np.testing.assert_allclose(wide[key], narrow[key], rtol=1e-12, atol=1e-12)
    std = em.standardize(points, torch.float64, torch.device("cpu"))
    before = std.features.clone()
    par0 = em.kmeans_init(
        std.features,
        torch.arange(12),
        std.features[:, 1:3, :3].transpose(1, 2).contiguous(),
        torch.full((12,), 1e-6),
        max_lloyd=1,
        budget=em.CPU_BUDGET,
    )
    em.em_pool(
        std.features,
        torch.arange(12),
        par0,
        torch.full((12,), 1e-6),
        tol=1e-3,
        max_iter=100,
        budget=3 * 300 * 15,
    )
    assert torch.equal(std.features, before)


@pytest.mark.parametrize("n", [2000, 512, 301, 1])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_mean_log_equals_the_mean_of_logs(n, dtype):
    rng = np.random.default_rng(n)
    for bound in (1.0, 2.0, 8.0, 40.0):
        norm = torch.as_tensor(1 + (bound - 1) * rng.random((5, n)), dtype=dtype)
        norm[:, 0] = bound  # the largest value allowed, so the products' range is exercised
        got = em.mean_log(norm, bound)
        want = torch.log(norm.double()).mean(dim=1)
        tol = 1e-6 if dtype == torch.float32 else 1e-13
        np.testing.assert_allclose(got.double(), want, rtol=0, atol=tol)


def test_final_pass_labels_take_the_first_of_tied_components():
    points, _ = make_filter_points(4, 200, random_state=8)
    std = em.standardize(points, torch.float64, torch.device("cpu"))
    u = torch.as_tensor(np.random.RandomState(2).random_sample((4, em.n_uniforms(3))))
    seeds = em.kmeanspp_seeds(std.features, 3, u)
    par = em.kmeans_init(
        std.features,
        torch.arange(4),
        seeds,
        torch.full((4,), 1e-6),
        max_lloyd=1,
        budget=em.CPU_BUDGET,
    )
    par[:2, :, 2] = par[:2, :, 0]  # filters 0 and 1: components 0 and 2 are identical
    fin = em.final_pass(std.features, torch.arange(4), par, budget=em.CPU_BUDGET)
    rel, _ = em.relative_log2_density(par, std.features)
    want = np.argmax(rel.numpy(), axis=1)  # numpy's argmax takes the first maximum too
    np.testing.assert_array_equal(fin.labels.numpy(), want)
    assert not (fin.labels[:2] == 2).any()  # ties went to component 0
    assert (fin.labels[:2] == 0).any()
    onehot = np.eye(3)[want].transpose(0, 2, 1)
    stats = np.einsum("wjn,wkn->wjk", std.features.numpy(), onehot)
    np.testing.assert_allclose(fin.label_stats.numpy(), stats, rtol=1e-12, atol=1e-9)
