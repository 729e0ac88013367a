"""FilterGMM: the estimator contract, inputs, errors, flags against planted ground truth."""

from __future__ import annotations

import math
import subprocess
import sys
import threading
import warnings

import numpy as np
import pytest
import torch
import xarray as xr
from scipy import stats as st
from sklearn.base import clone
from sklearn.exceptions import NotFittedError as SklearnNotFittedError
from sklearn.utils.validation import check_is_fitted

import filterscope as fs
from filterscope.errors import (
    FilterscopeError,
    InvalidDataError,
    InvalidParameterError,
    NonFiniteError,
)
from filterscope.gmm import estimator
from filterscope.gmm.estimator import FilterGMM, NotFittedError
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


@pytest.mark.parametrize(
    ("params", "valid_range"),
    [
        ({"k_range": (0, 3)}, "1 <= k_min <= k_max <= 127"),
        ({"k_range": (4, 2)}, "1 <= k_min <= k_max <= 127"),
        ({"n_init": 0}, "n_init must be an integer ≥ 1"),
        ({"n_init": True}, "n_init must be an integer ≥ 1"),
        ({"tol": -1.0}, "tol must be a finite number ≥ 0"),
        ({"reg_covar": 0.0}, "reg_covar must be a finite number > 0"),
        ({"max_iter": -1}, "max_iter must be an integer ≥ 0"),
        ({"outlier_fraction": 0.7}, "0 < outlier_fraction < 0.5"),
        ({"min_separation": float("nan")}, "min_separation must be a finite number ≥ 0"),
        ({"selection": "aic"}, r"selection must be one of \('ch-bic', 'ch'\)"),
        ({"dtype": "float16"}, "must be 'float32' or 'float64'"),
        ({"chunk_size": 0}, r"chunk_size must be None \(sized to memory\) or an integer ≥ 1"),
        ({"n_jobs": 0}, r"n_jobs must be None, -1 \(every core\) or an integer ≥ 1"),
        ({"n_jobs": -2}, "n_jobs must be None, -1"),
        ({"n_jobs": 1.5}, "n_jobs must be None, -1"),
        ({"random_state": "seed"}, r"random_state must be None, an integer in \[0, 2\*\*32 - 1\]"),
        ({"device": "bogus"}, "'cpu', 'cuda', 'cuda:0'"),
    ],
)
def test_bad_parameters_raise_invalid_parameter_error_naming_the_range(params, valid_range):
    points = np.random.default_rng(7).normal(size=(2, 50, 2))
    with pytest.raises(InvalidParameterError, match=valid_range) as err:
        FilterGMM(**params).fit(points)
    # A parameter error is not a data error: `except InvalidDataError` is for the points.
    assert not isinstance(err.value, InvalidDataError)
    assert isinstance(err.value, ValueError)


def test_unfitted_estimator_raises_sklearn_not_fitted_error():
    gmm = FilterGMM(k_range=(1, 3), device="cpu")
    with pytest.raises(NotFittedError, match=r"call fit\(points\)") as err:
        gmm.to_dataset()
    assert isinstance(err.value, SklearnNotFittedError)
    assert isinstance(err.value, FilterscopeError)
    for name in estimator.FITTED_ATTRIBUTES:
        with pytest.raises(NotFittedError, match=f"FilterGMM.{name} is learned by fit"):
            getattr(gmm, name)
    assert not hasattr(gmm, "labels_")  # a NotFittedError is an AttributeError too
    with pytest.raises(AttributeError) as plain:
        gmm.no_such_attribute_  # noqa: B018 - not a fitted attribute: a plain AttributeError
    assert not isinstance(plain.value, NotFittedError)
    with pytest.raises(SklearnNotFittedError):
        check_is_fitted(gmm)
    assert fs.NotFittedError is fs.gmm.NotFittedError is NotFittedError

    gmm.fit(np.random.default_rng(0).normal(size=(2, 50, 2)))
    check_is_fitted(gmm)  # no error once fitted
    assert set(estimator.FITTED_ATTRIBUTES) <= set(vars(gmm))
    with pytest.raises(SklearnNotFittedError):
        check_is_fitted(clone(gmm))  # a clone is unfitted


def test_not_fitted_error_keeps_import_filterscope_free_of_sklearn():
    # scikit-learn costs about a second to import; fs.NotFittedError loads it only when used.
    code = (
        "import sys, filterscope as fs; assert 'sklearn' not in sys.modules, 'eager'; "
        "from sklearn.exceptions import NotFittedError; "
        "assert issubclass(fs.NotFittedError, NotFittedError); "
        "assert issubclass(fs.NotFittedError, fs.FilterscopeError)"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.fixture(scope="module")
def scaled_points():
    """Clean and planted filters plus one constant filter, the fit at scale 1 in float32 and
    float64, and the truth."""
    points, truth = make_filter_points(
        8, 500, kinds=("gaussian", "planted", "clusters", "planted"), random_state=12
    )
    points = np.concatenate([points, np.full((1, 500, 2), 2.5)])
    fits = {dt: FilterGMM(device="cpu", dtype=dt).fit(points) for dt in ("float32", "float64")}
    return points, truth, fits


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("scale", [1e-20, 1e154, 1e-200])
def test_a_planted_group_is_found_at_any_scale_with_finite_log_likelihoods(
    scaled_points, dtype, scale
):
    # Points are standardised per filter in float64 (without squaring the raw values) and
    # reg_covar is relative to each filter's spread, so a change of units changes nothing but
    # the units of the reported parameters. Before, 1e-20 gave NaN log-likelihoods and 1e154
    # -inf ones, and both flagged nothing.
    points, truth, fits = scaled_points
    ref = fits[dtype]
    planted = np.append(truth.has_outliers, False)
    assert ref.anomaly_[planted].all() and not ref.anomaly_[~planted].any()
    assert ref.dead_.tolist() == [False] * 8 + [True]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        gmm = FilterGMM(device="cpu", dtype=dtype).fit(points * scale)
    np.testing.assert_array_equal(gmm.anomaly_, ref.anomaly_)
    np.testing.assert_array_equal(gmm.k_, ref.k_)
    np.testing.assert_array_equal(gmm.labels_, ref.labels_)
    for got, want in zip(gmm.outliers_, ref.outliers_, strict=True):
        np.testing.assert_array_equal(got, want)
    np.testing.assert_allclose(gmm.anomaly_score_, ref.anomaly_score_, rtol=1e-6)
    np.testing.assert_allclose(gmm.ch_[:, 1:], ref.ch_[:, 1:], rtol=1e-6)
    # log-likelihoods are densities in the points' units: shifted by -2 log(scale), finite
    live = ~ref.dead_
    for name in ("loglik_", "lower_bound_"):
        got, want = getattr(gmm, name), getattr(ref, name)
        assert np.isfinite(got).all(), name
        np.testing.assert_allclose(
            got[live], want[live] - 2 * math.log(scale), rtol=1e-9, atol=1e-6
        )
    np.testing.assert_allclose(gmm.means_[live], ref.means_[live] * scale, rtol=1e-6)
    np.testing.assert_allclose(gmm.scale_[live], ref.scale_[live] * scale, rtol=1e-12)
    # the constant filter keeps its documented fit: its point, covariance reg_covar I
    assert gmm.dead_[-1] and gmm.k_[-1] == 1 and not gmm.anomaly_[-1]
    np.testing.assert_allclose(gmm.means_[-1, 0], [2.5 * scale] * 2)
    np.testing.assert_array_equal(gmm.covariances_[-1, 0], 1e-6 * np.eye(2))
    np.testing.assert_allclose(gmm.loglik_[-1], -math.log(2 * math.pi) - math.log(1e-6))
    # covariances (s² times the standardised ones) are in float64's range up to s ≈ 1e154 only:
    # beyond it they are inf (below 1e-154, 0), said by a warning
    spread = ref.scale_[live] * scale
    out_of_range = (spread.max() > 1e150) | (spread.min() < 1e-150)
    warned = [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]
    if out_of_range:
        assert len(warned) == 1 and "outside float64's range" in warned[0]
    else:
        assert not warned
        np.testing.assert_allclose(
            gmm.covariances_[live], ref.covariances_[live] * scale**2, rtol=1e-6
        )


def test_low_precision_points_are_fitted_as_their_float32_copy():
    # numpy has no bfloat16 (a bfloat16 tensor used to raise a bare TypeError); float16 and
    # bfloat16 are converted to float32 exactly, so the fit is that of the float32 copy
    points, _ = make_filter_points(6, 300, kinds=("gaussian", "planted"), random_state=13)
    for low in (
        torch.as_tensor(points).to(torch.bfloat16),
        torch.as_tensor(points).to(torch.float16),
        points.astype(np.float16),
    ):
        copy = torch.as_tensor(low).float().numpy()
        want = FilterGMM(k_range=(1, 4), device="cpu").fit(copy)
        got = FilterGMM(k_range=(1, 4), device="cpu").fit(low)
        np.testing.assert_array_equal(got.labels_, want.labels_)
        np.testing.assert_array_equal(got.loglik_, want.loglik_)
        np.testing.assert_array_equal(got.anomaly_, want.anomaly_)
    for bad in (points.astype(np.complex64), torch.as_tensor(points) > 0):
        with pytest.raises(InvalidDataError, match="takes float64, float32, float16 and bfloat16"):
            FilterGMM(device="cpu").fit(bad)


@pytest.mark.parametrize("device", ["bogus", "cuda:x", "mps", "meta", 5])
def test_unusable_devices_are_parameter_errors_naming_the_valid_ones(device, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    points = np.random.default_rng(0).normal(size=(2, 50, 2))
    with pytest.raises(InvalidParameterError, match=r"'cpu', 'cuda', 'cuda:0'") as err:
        FilterGMM(device=device).fit(points)
    assert not isinstance(err.value, InvalidDataError)  # a parameter, not the data


def test_a_missing_cuda_device_is_a_clear_error(monkeypatch):
    points = np.random.default_rng(0).normal(size=(2, 50, 2))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    for device in ("cuda", "cuda:0", torch.device("cuda", 0)):
        with pytest.raises(InvalidParameterError, match="torch sees no CUDA device"):
            FilterGMM(device=device).fit(points)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(InvalidParameterError, match=r"sees 1 CUDA device\(s\), cuda:0 to cuda:0"):
        FilterGMM(device="cuda:3").fit(points)
    # a torch.device for the CPU is fine
    FilterGMM(k_range=(1, 2), device=torch.device("cpu")).fit(points)


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
