"""FilterGMM: the estimator contract, inputs, errors, flags against planted ground truth."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch
import xarray as xr
from scipy import stats as st
from sklearn.base import clone

from filterscope.errors import InvalidDataError, NonFiniteError
from filterscope.gmm import estimator
from filterscope.gmm.estimator import FilterGMM
from filterscope.gmm.synthetic import CLEAN_KINDS, make_filter_points


@pytest.fixture(scope="module")
def planted():
    """Six kinds of synthetic filters (five clean, one with a planted far group) and a fit."""
    points, truth = make_filter_points(360, 1000, random_state=2024)
    gmm = FilterGMM(device="cpu").fit(points.astype(np.float32))
    return points, truth, gmm


def test_flags_have_low_false_positive_and_high_true_positive_rates(planted):
    _, truth, gmm = planted
    clean, dirty = ~truth.has_outliers, truth.has_outliers
    fpr = gmm.anomaly_[clean].mean()
    tpr = gmm.anomaly_[dirty].mean()
    assert fpr <= 0.05, f"false-positive rate {fpr:.3f}"
    assert tpr >= 0.90, f"true-positive rate {tpr:.3f}"
    for kind in CLEAN_KINDS:
        assert gmm.anomaly_[truth.kind == kind].mean() <= 0.10, kind
    # the outlier samples of flagged filters are the planted ones
    found = np.zeros_like(truth.outliers)
    for f, idx in enumerate(gmm.outliers_):
        found[f, idx] = True
    recall = (found & truth.outliers).sum() / truth.outliers.sum()
    precision = (found & truth.outliers).sum() / max(found[dirty].sum(), 1)
    assert recall >= 0.90 and precision >= 0.95, (recall, precision)
    # a single Gaussian is K = 1
    assert (gmm.k_[truth.kind == "gaussian"] == 1).mean() >= 0.95


def test_anomaly_score_ranks_filters_by_the_separation_of_their_group(planted):
    _, truth, gmm = planted
    dirty = truth.has_outliers & gmm.anomaly_
    rho = st.spearmanr(truth.separation[dirty], gmm.anomaly_score_[dirty]).statistic
    assert rho > 0.5
    # as a detector of planted filters the score has an area under the ROC curve near 1
    u = st.mannwhitneyu(
        gmm.anomaly_score_[truth.has_outliers], gmm.anomaly_score_[~truth.has_outliers]
    ).statistic
    auc = u / (truth.has_outliers.sum() * (~truth.has_outliers).sum())
    assert auc > 0.95


def test_learned_attributes_and_dataset(planted):
    points, _, gmm = planted
    f, n, _ = points.shape
    assert gmm.ks_.tolist() == list(range(1, 9))
    assert gmm.k_.shape == (f,) and set(np.unique(gmm.k_)) <= set(range(1, 9))
    assert gmm.labels_.shape == (f, n) and gmm.labels_.max() < gmm.k_.max()
    for name in ("loglik_", "lower_bound_", "ch_", "converged_", "n_iter_"):
        assert getattr(gmm, name).shape == (f, 8), name
    assert np.isnan(gmm.ch_[:, 0]).all() and np.isfinite(gmm.ch_[:, 1:]).all()
    assert gmm.converged_.mean() > 0.95
    assert (gmm.cluster_sizes_.sum(1) == n).all()
    beyond_k = np.arange(8)[None, :] >= gmm.k_[:, None]
    assert (gmm.cluster_sizes_[beyond_k] == 0).all() and (gmm.weights_[beyond_k] == 0).all()
    for i in range(f):
        np.testing.assert_array_equal(
            np.bincount(gmm.labels_[i], minlength=8), gmm.cluster_sizes_[i]
        )
    np.testing.assert_allclose(gmm.weights_.sum(1), 1.0, rtol=1e-5)
    assert gmm.means_.shape == (f, 8, 2) and gmm.covariances_.shape == (f, 8, 2, 2)
    assert not gmm.dead_.any()
    ds = gmm.to_dataset()
    assert dict(ds.sizes) == {
        "filter": f,
        "sample": n,
        "k": 8,
        "component": 8,
        "pc": 2,
        "pc_col": 2,
    }
    np.testing.assert_array_equal(ds.n_clusters.values, gmm.k_)
    np.testing.assert_array_equal(ds.ch.values, gmm.ch_)
    assert ds.outlier.values.sum() == sum(len(o) for o in gmm.outliers_)
    assert ds.attrs["selection"] == "ch-bic" and ds.attrs["k_range"] == [1, 8]


def test_dataset_input_carries_coordinates_and_names_bad_filters():
    points, _ = make_filter_points(6, 120, kinds=("gaussian", "planted"), random_state=3)
    ds = xr.Dataset(
        {"points": (("filter", "sample", "pc"), points.astype(np.float32))},
        coords={
            "filter": np.arange(6),
            "filter_layer": ("filter", ["conv1"] * 3 + ["conv2"] * 3),
            "filter_channel": ("filter", [0, 1, 2, 0, 1, 2]),
            "sample": np.arange(120),
            "sample_id": ("sample", np.arange(120) * 7),
            "label": ("sample", np.arange(120) % 10),
            "pc": [0, 1],
        },
    )
    gmm = FilterGMM(k_range=(1, 4), device="cpu").fit(ds)
    out = gmm.to_dataset()
    assert out.filter_layer.values.tolist() == ds.filter_layer.values.tolist()
    np.testing.assert_array_equal(out.sample_id.values, ds.sample_id.values)
    np.testing.assert_array_equal(out.label.values, ds.label.values)
    # transposed dims are fine
    again = FilterGMM(k_range=(1, 4), device="cpu").fit(
        ds.points.transpose("pc", "filter", "sample")
    )
    np.testing.assert_array_equal(again.labels_, gmm.labels_)
    bad = ds.copy(deep=True)
    bad.points[4, 7, 1] = np.nan
    with pytest.raises(
        NonFiniteError, match=r"filter 4 \(filter_layer='conv2', filter_channel=1\)"
    ):
        FilterGMM(device="cpu").fit(bad)


def test_numpy_torch_and_chunked_inputs_give_identical_results():
    points, _ = make_filter_points(9, 150, random_state=4)
    ref = FilterGMM(k_range=(1, 4), n_init=2, device="cpu", dtype="float64").fit(points)
    for other in (
        FilterGMM(k_range=(1, 4), n_init=2, device="cpu", dtype="float64").fit(
            torch.as_tensor(points)
        ),
        FilterGMM(k_range=(1, 4), n_init=2, device="cpu", dtype="float64", chunk_size=4).fit(
            points
        ),
    ):
        np.testing.assert_array_equal(other.labels_, ref.labels_)
        np.testing.assert_allclose(other.loglik_, ref.loglik_, rtol=1e-12)
    # same seed: same result; another seed: a different initialisation
    again = clone(ref).fit(points)
    np.testing.assert_array_equal(again.loglik_, ref.loglik_)
    other_seed = clone(ref).set_params(random_state=99).fit(points)
    assert not np.array_equal(other_seed.lower_bound_, ref.lower_bound_)


def test_threaded_chunks_match_one_chunk_and_restore_torch_threads(monkeypatch):
    points, _ = make_filter_points(10, 200, random_state=11)
    one = FilterGMM(k_range=(1, 5), device="cpu", n_jobs=1).fit(points)
    seen: list[tuple[int, int, int]] = []
    fit_chunk = estimator._fit_chunk

    def spy(pts, uniforms, **kwargs):
        seen.append((threading.get_ident(), torch.get_num_threads(), len(pts)))
        return fit_chunk(pts, uniforms, **kwargs)

    monkeypatch.setattr(estimator, "_fit_chunk", spy)
    before = torch.get_num_threads()
    two = FilterGMM(k_range=(1, 5), device="cpu", n_jobs=2).fit(points)
    assert torch.get_num_threads() == before
    # two chunks of five filters, each fitted off the caller's thread with one torch thread
    assert sorted(n for _, _, n in seen) == [5, 5]
    assert all(ident != threading.get_ident() and nt == 1 for ident, nt, _ in seen)
    np.testing.assert_array_equal(two.labels_, one.labels_)
    np.testing.assert_array_equal(two.k_, one.k_)
    np.testing.assert_allclose(two.loglik_, one.loglik_, rtol=1e-6)


def test_n_init_keeps_the_best_lower_bound():
    points, _ = make_filter_points(24, 200, kinds=("clusters", "elongated"), random_state=5)
    one = FilterGMM(k_range=(1, 5), device="cpu", dtype="float64").fit(points)
    three = FilterGMM(k_range=(1, 5), n_init=3, device="cpu", dtype="float64").fit(points)
    # the first of three initialisations is the single one, so the best is never worse
    assert (three.lower_bound_ >= one.lower_bound_ - 1e-12).all()


def test_constant_and_duplicated_filters_are_handled_without_nan():
    rng = np.random.default_rng(6)
    normal = rng.normal(size=(100, 2))
    constant = np.full((100, 2), -1.5)
    duplicated = np.concatenate([np.zeros((90, 2)), rng.normal(size=(10, 2)) * 0.1 + 5])
    points = np.stack([normal, constant, duplicated]).astype(np.float32)
    gmm = FilterGMM(device="cpu").fit(points)
    assert gmm.dead_.tolist() == [False, True, False]
    assert gmm.k_[1] == 1 and not gmm.anomaly_[1] and gmm.anomaly_score_[1] == 0
    for name in ("loglik_", "lower_bound_", "weights_", "means_", "covariances_", "anomaly_score_"):
        assert np.isfinite(getattr(gmm, name)).all(), name
    assert np.isfinite(gmm.ch_[:, 1:]).all()
    assert np.isfinite(gmm.to_dataset().drop_vars("ch").to_array()).all()


def test_bad_input_raises_typed_errors_that_say_what_to_do():
    rng = np.random.default_rng(7)
    with pytest.raises(InvalidDataError, match="more samples than the largest K"):
        FilterGMM(k_range=(1, 8)).fit(rng.normal(size=(2, 8, 2)))
    with pytest.raises(InvalidDataError, match=r"shape \(filters, samples, 2\)"):
        FilterGMM().fit(rng.normal(size=(2, 50, 3)))
    with pytest.raises(InvalidDataError, match="dims"):
        FilterGMM().fit(xr.DataArray(rng.normal(size=(2, 50, 2)), dims=("unit", "sample", "pc")))
    pts = rng.normal(size=(3, 50, 2))
    pts[2, 0, 0] = np.inf
    with pytest.raises(NonFiniteError, match="filter 2"):
        FilterGMM(device="cpu").fit(pts)
    for params in (
        {"k_range": (0, 3)},
        {"k_range": (4, 2)},
        {"n_init": 0},
        {"tol": -1.0},
        {"reg_covar": 0.0},
        {"outlier_fraction": 0.7},
        {"selection": "aic"},
        {"dtype": "float16"},
        {"chunk_size": 0},
        {"n_jobs": 0},
        {"n_jobs": -2},
        {"n_jobs": 1.5},
    ):
        with pytest.raises(InvalidDataError):
            FilterGMM(**params).fit(rng.normal(size=(2, 50, 2)))
    with pytest.raises(InvalidDataError, match="not fitted"):
        FilterGMM().to_dataset()


def test_literal_ch_rule_is_available():
    points, _ = make_filter_points(12, 300, kinds=("gaussian", "clusters"), random_state=8)
    gmm = FilterGMM(selection="ch", device="cpu").fit(points)
    ch = np.where(np.isnan(gmm.ch_), -np.inf, gmm.ch_)
    multi = gmm.k_ > 1
    assert multi.any()
    np.testing.assert_array_equal(gmm.k_[multi], ch[multi].argmax(1) + 1)


def test_dask_client_spreads_chunks_and_matches_a_local_fit():
    distributed = pytest.importorskip("distributed")
    points, _ = make_filter_points(8, 150, random_state=9)
    local = FilterGMM(k_range=(1, 3), device="cpu", dtype="float64").fit(points)
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        spread = FilterGMM(
            k_range=(1, 3), device="cpu", dtype="float64", chunk_size=3, client=client
        ).fit(points)
    np.testing.assert_array_equal(spread.labels_, local.labels_)
    np.testing.assert_allclose(spread.loglik_, local.loglik_, rtol=1e-12)


@pytest.mark.cuda
def test_cuda_fit_matches_cpu():
    points, _ = make_filter_points(64, 500, random_state=10)
    cpu = FilterGMM(device="cpu", dtype="float64").fit(points)
    gpu = FilterGMM(device="cuda", dtype="float64").fit(points)
    # same initialisation (random numbers are drawn on the host) and float64: the fits agree
    # except where rounding flips a convergence decision at |Δ loglik| ≈ tol
    assert (np.abs(gpu.loglik_ - cpu.loglik_) < 1e-3).mean() > 0.99
    assert (gpu.k_ == cpu.k_).mean() >= 0.95
    assert (gpu.anomaly_ == cpu.anomaly_).mean() >= 0.95
    f32 = FilterGMM(device="cuda").fit(points.astype(np.float32))
    assert (f32.anomaly_ == cpu.anomaly_).mean() >= 0.9
