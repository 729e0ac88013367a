"""fs.analyze: a planted anomaly filter is found, the table is ranked, the dataset appends to a log."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import filterscope as fs
from filterscope.gmm import AnalysisResult
from filterscope.gmm.analyze import TABLE_COLUMNS
from filterscope.log.store import LogStore

# Float comparisons against oracles: `make test` reruns these under other CPU kernels.
pytestmark = pytest.mark.numerics

N = 200
PLANTED = [7, 40, 81, 122, 160, 199]


def _planted_problem(seed: int = 0) -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    """Filter 0 reads a channel that is blank except for a bright patch in six samples; filters
    1 and 2 read pure noise. Ground truth: filter 0 is the only anomaly filter, with exactly the
    planted samples as outliers."""
    g = torch.Generator().manual_seed(seed)
    x = torch.zeros(N, 2, 8, 8)
    x[:, 0] = torch.randn(N, 8, 8, generator=g)
    x[PLANTED, 1, :3, :3] = 5.0
    x[:, 1] += 0.05 * torch.randn(N, 8, 8, generator=g)
    conv = nn.Conv2d(2, 3, 3, bias=False)
    with torch.no_grad():
        conv.weight.zero_()
        conv.weight[0, 1] = 1 / 9
        conv.weight[1, 0] = torch.randn(3, 3, generator=g)
        conv.weight[2, 0] = torch.randn(3, 3, generator=g)
    return nn.Sequential(conv), x, torch.arange(N) % 3


@pytest.fixture(scope="module")
def planted() -> tuple[AnalysisResult, nn.Module, torch.Tensor, torch.Tensor]:
    model, x, y = _planted_problem()
    result = fs.analyze(model, (x, y), n_samples=None, k_range=(1, 4), progress=False)
    return result, model, x, y


def test_analyze_is_the_public_entry_point():
    assert fs.analyze is fs.gmm.analyze
    assert fs.analyze.__module__ == "filterscope.gmm.analyze"


def test_arguments_after_model_and_data_are_keyword_only():
    model, x, y = _planted_problem()
    with pytest.raises(TypeError, match="positional"):
        fs.analyze(model, (x, y), None)  # type: ignore[misc]


@pytest.mark.parametrize(
    ("keyword", "suggestion"),
    [
        ("n_component", "did you mean 'k_range'"),
        ("n_sample", "did you mean 'n_samples'"),
        ("outlier_frac", "did you mean 'outlier_fraction'"),
        ("zzz_unknown", None),
    ],
)
def test_unknown_keyword_names_the_forwarded_parameters(keyword, suggestion):
    model, x, y = _planted_problem()
    with pytest.raises(fs.InvalidParameterError) as err:
        fs.analyze(model, (x, y), progress=False, **{keyword: 3})
    message = str(err.value)
    assert f"analyze() got an unknown keyword {keyword!r}" in message
    assert "passes keywords on to FilterGMM, whose parameters are" in message
    assert "k_range" in message and "outlier_fraction" in message
    if suggestion is None:
        assert "did you mean" not in message
    else:
        assert suggestion in message


def test_bad_forwarded_parameter_is_an_invalid_parameter_error():
    model, x, y = _planted_problem()
    with pytest.raises(fs.InvalidParameterError, match="n_init must be an integer ≥ 1") as err:
        fs.analyze(model, (x, y), n_samples=None, n_init=0, progress=False)
    assert not isinstance(err.value, fs.InvalidDataError)


def test_planted_anomaly_filter_is_found_and_ranked_first(planted):
    result, _, _, _ = planted
    table = result.table
    assert table.columns.tolist() == list(TABLE_COLUMNS)
    assert table.loc[0, "filter"] == 0 and table.loc[0, "layer"] == "0"
    assert table["anomaly"].tolist() == [True, False, False]
    assert table.loc[0, "outlier_ids"] == PLANTED
    assert table.loc[0, "n_outliers"] == len(PLANTED)
    assert table.loc[0, "smallest_cluster"] == len(PLANTED)
    assert (np.diff(table["score"].to_numpy()) <= 0).all()
    np.testing.assert_array_equal(result.outlier_ids(), PLANTED)
    assert result.anomalies["filter"].tolist() == [0]


def test_table_agrees_with_the_fitted_estimator_and_dataset(planted):
    result, _, _, _ = planted
    gmm, ds = result.gmm, result.dataset
    by_filter = result.table.set_index("filter").sort_index()
    np.testing.assert_array_equal(by_filter["k"], gmm.k_)
    np.testing.assert_array_equal(by_filter["anomaly"], gmm.anomaly_)
    np.testing.assert_allclose(by_filter["score"], gmm.anomaly_score_)
    for f in range(ds.sizes["filter"]):
        k = int(gmm.k_[f])
        expected_ch = gmm.ch_[f, list(gmm.ks_).index(k)]
        assert by_filter.loc[f, "ch"] == pytest.approx(expected_ch, nan_ok=True)
        sizes = gmm.cluster_sizes_[f, :k]
        assert by_filter.loc[f, "smallest_cluster"] == sizes.min()
        mask = ds.outlier.values[f]
        assert by_filter.loc[f, "outlier_ids"] == ds.sample_id.values[mask].tolist()
    np.testing.assert_allclose(by_filter["explained_variance"], ds.explained_variance, rtol=1e-6)


def test_dataset_dims_are_fixed_and_it_appends_to_a_log(planted, tmp_path):
    first, model, x, y = planted
    with torch.no_grad():  # a different model state, same probe: same layout
        model[0].weight.add_(0.3 * torch.randn_like(model[0].weight))
    second = fs.analyze(model, (x, y), n_samples=None, k_range=(1, 4), progress=False)
    a, b = first.dataset, second.dataset
    assert dict(a.sizes) == dict(b.sizes)
    assert {k: (v.dims, v.dtype) for k, v in a.data_vars.items()} == {
        k: (v.dims, v.dtype) for k, v in b.data_vars.items()
    }
    for name in ("points", "outlier", "n_clusters", "ch", "loglik", "anomaly", "anomaly_score"):
        assert name in a.data_vars
    assert a.points.dims == ("filter", "sample", "pc")
    assert a.outlier.dims == ("filter", "sample") and a.outlier.dtype == bool

    path = tmp_path / "log"
    store = LogStore.open(path)
    store.publish()
    store.append_group("analysis", a, "analysis_snapshot", coords={"analysis_step": 0})
    store.append_group("analysis", b, "analysis_snapshot", coords={"analysis_step": 50})
    store.close()
    log = fs.open_log(path, group="analysis")
    assert log.analysis_step.values.tolist() == [0, 50]
    np.testing.assert_array_equal(log.anomaly.values, np.stack([a.anomaly, b.anomaly]))
    np.testing.assert_array_equal(log.outlier.values[0], a.outlier.values)
    assert log.filter_layer.values.tolist() == ["0", "0", "0"]
    np.testing.assert_array_equal(log.sample_id.values, a.sample_id.values)


def test_gmm_parameters_pass_through():
    model, x, y = _planted_problem(seed=1)
    strict = fs.analyze(
        model, (x, y), n_samples=None, k_range=(1, 3), outlier_fraction=0.01, progress=False
    )
    # six planted samples are 3 % of 200: above a 1 % outlier fraction, so no anomaly
    assert not strict.table["anomaly"].any()
    assert strict.dataset.sizes["k"] == 3
