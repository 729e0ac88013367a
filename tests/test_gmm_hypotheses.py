"""H1–H3 experiments: against scipy, literal backward-pass loops and a real recorded log."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from log_helpers.analysed import record_analysed_lenet
from scipy import stats
from torch import nn

import filterscope as fs
from filterscope.data import digits
from filterscope.errors import InvalidDataError, InvalidModelError, InvalidParameterError
from filterscope.gmm import (
    compare_outliers,
    gradient_norms,
    overfitting_curve,
    prune,
    pruning_experiment,
)
from filterscope.models import LeNet5

# Float comparisons against oracles: `make test` reruns these under other CPU kernels.
pytestmark = pytest.mark.numerics


@pytest.fixture(scope="module")
def small_digits() -> tuple[torch.Tensor, torch.Tensor]:
    data = digits("val")
    return data.x[:48], data.y[:48]


@pytest.fixture(scope="module")
def trained_lenet(small_digits) -> LeNet5:
    torch.manual_seed(0)
    net = LeNet5()
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    x, y = small_digits
    for _ in range(15):
        opt.zero_grad()
        F.cross_entropy(net(x), y).backward()
        opt.step()
    return net.eval()


# --- H1 ------------------------------------------------------------------------------------


def test_overfitting_curve_from_records_matches_scipy():
    rng = np.random.default_rng(0)
    steps = [0, 10, 20, 30, 40, 50]
    counts = [1, 2, 2, 5, 4, 8]
    train = rng.uniform(0, 0.3, size=6)
    val = train + rng.uniform(0, 0.3, size=6)
    records = [(s, c, t, v) for s, c, t, v in zip(steps, counts, train, val, strict=True)][::-1]
    curve = overfitting_curve(records)
    assert curve.table["step"].tolist() == steps  # sorted by step
    gap = val - train
    np.testing.assert_allclose(curve.table["gap"], gap)
    assert curve.pearson_r == pytest.approx(stats.pearsonr(counts, gap).statistic)
    assert curve.pearson_p == pytest.approx(stats.pearsonr(counts, gap).pvalue)
    assert curve.spearman_r == pytest.approx(stats.spearmanr(counts, gap).statistic)
    assert curve.spearman_p == pytest.approx(stats.spearmanr(counts, gap).pvalue)


def test_overfitting_curve_constant_counts_give_nan():
    curve = overfitting_curve([(0, 3, 0.5, 0.5), (1, 3, 0.2, 0.4), (2, 3, 0.1, 0.4)])
    assert math.isnan(curve.spearman_r) and math.isnan(curve.pearson_p)


def test_overfitting_curve_from_a_recorded_log(tmp_path, small_digits):
    torch.manual_seed(0)
    x, y = small_digits
    path = tmp_path / "run"
    record_analysed_lenet(path, x, y, extra_eval_sets={"fit": (x, y)})
    log = fs.open_log(path)
    analysis = fs.open_log(path, group="analysis")
    curve = overfitting_curve(path, train_set="fit")
    table = curve.table
    assert table["step"].tolist() == analysis.analysis_step.values.tolist() == [0, 4, 8, 9]
    np.testing.assert_array_equal(table["n_anomaly"], analysis.anomaly.sum("filter").values)
    np.testing.assert_allclose(table["val_error"], log.val_error.values, rtol=1e-6)
    np.testing.assert_allclose(table["train_error"], log.fit_error.values, rtol=1e-6)
    np.testing.assert_allclose(table["gap"], log.val_error.values - log.fit_error.values)
    # the same from the two Datasets, and the per-step training error for "train"
    same = overfitting_curve(log, analysis=analysis, train_set="fit")
    pd.testing.assert_frame_equal(same.table, table)
    per_step = overfitting_curve(path).table["train_error"].to_numpy()
    steps = log.train_error.values
    expected = [steps[0], steps[1:5].mean(), steps[5:9].mean(), steps[8]]
    np.testing.assert_allclose(per_step, expected, rtol=1e-6)
    with pytest.raises(InvalidDataError, match="no 'nope_error'"):
        overfitting_curve(path, val_set="nope")


# --- H2 ------------------------------------------------------------------------------------


@pytest.mark.parametrize("params", ["all", "last"])
def test_gradient_norms_equal_a_backward_pass_per_sample(trained_lenet, small_digits, params):
    x, y = small_digits[0][:12], small_digits[1][:12]
    norms = gradient_norms(trained_lenet, (x, y), params=params, batch_size=5)
    chosen = (
        dict(trained_lenet.named_parameters())
        if params == "all"
        else dict(trained_lenet.classifier.fc3.named_parameters(prefix="classifier.fc3"))
    )
    expected = []
    for i in range(len(x)):
        trained_lenet.zero_grad()
        F.cross_entropy(trained_lenet(x[i : i + 1]), y[i : i + 1]).backward()
        expected.append(
            math.sqrt(sum(float(p.grad.double().square().sum()) for p in chosen.values()))
        )
    np.testing.assert_allclose(norms.values, expected, rtol=1e-4)
    assert norms.sample_id.values.tolist() == list(range(12))
    assert norms.label.values.tolist() == y.tolist()
    assert not trained_lenet.training


def test_gradient_norms_need_labels(trained_lenet, small_digits):
    with pytest.raises(InvalidDataError, match="labelled"):
        gradient_norms(trained_lenet, small_digits[0])


def test_gradient_norms_bad_params_is_a_parameter_error(trained_lenet, small_digits):
    with pytest.raises(InvalidParameterError, match="params must be 'all', 'last' or a list"):
        gradient_norms(trained_lenet, small_digits, params="first")
    with pytest.raises(InvalidParameterError, match="no parameter matches") as err:
        gradient_norms(trained_lenet, small_digits, params=["nope"])
    assert not isinstance(err.value, InvalidDataError)


def test_compare_outliers_matches_scipy():
    rng = np.random.default_rng(1)
    values = rng.gamma(2.0, size=40)
    values[[3, 17, 30]] += 4.0
    ids = np.arange(100, 140)
    result = compare_outliers(values, outlier_ids=[103, 117, 130], sample_ids=ids)
    out, rest = values[[3, 17, 30]], np.delete(values, [3, 17, 30])
    test = stats.mannwhitneyu(out, rest, alternative="greater")
    assert (result.n_outliers, result.n_normal) == (3, 37)
    assert result.median_outlier == pytest.approx(np.median(out))
    assert result.median_normal == pytest.approx(np.median(rest))
    assert result.ratio == pytest.approx(np.median(out) / np.median(rest))
    assert result.u_statistic == pytest.approx(test.statistic)
    assert result.p_value == pytest.approx(test.pvalue)
    assert result.p_value < 0.05
    with pytest.raises(InvalidDataError, match="no gradient norm"):
        compare_outliers(values, outlier_ids=[5], sample_ids=ids)
    empty = compare_outliers(values, outlier_ids=[], sample_ids=ids)
    assert empty.n_outliers == 0 and math.isnan(empty.p_value)


# --- H3 ------------------------------------------------------------------------------------


def _conv_outputs(net: nn.Module, x: torch.Tensor) -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    handles = [
        m.register_forward_hook(lambda m, i, o, n=n: out.__setitem__(n, o.detach().clone()))
        for n, m in net.named_modules()
        if isinstance(m, nn.Conv2d)
    ]
    with torch.no_grad():
        out["logits"] = net(x)
    for h in handles:
        h.remove()
    return out


def test_prune_zeroes_exactly_the_given_channels_and_remove_restores(trained_lenet, small_digits):
    x = small_digits[0][:16]
    before = _conv_outputs(trained_lenet, x)
    targets = [("features.conv1", 2), ("features.conv2", 0), ("features.conv2", 11)]
    handle = prune(trained_lenet, targets)
    # the pruning hooks run first, so these capture hooks see the pruned outputs
    pruned = _conv_outputs(trained_lenet, x)
    conv1, conv2 = pruned["features.conv1"], pruned["features.conv2"]
    assert torch.equal(conv1[:, 2], torch.zeros_like(conv1[:, 2]))
    keep = [c for c in range(6) if c != 2]
    assert torch.equal(conv1[:, keep], before["features.conv1"][:, keep])
    assert (conv2[:, [0, 11]] == 0).all()
    assert not torch.equal(pruned["logits"], before["logits"])
    handle.remove()
    after = _conv_outputs(trained_lenet, x)
    for name, value in before.items():
        assert torch.equal(after[name], value), name
    assert not handle.active


def test_prune_context_manager_and_table_input(trained_lenet, small_digits):
    x = small_digits[0][:8]
    with torch.no_grad():
        reference = trained_lenet(x)
    table = pd.DataFrame({"layer": ["features.conv2"], "channel": [4], "anomaly": [True]})
    with prune(trained_lenet, table) as handle:
        assert handle.filters == [("features.conv2", 4)]
        assert (_conv_outputs(trained_lenet, x)["features.conv2"][:, 4] == 0).all()
    with torch.no_grad():
        assert torch.equal(trained_lenet(x), reference)


def test_prune_rejects_unknown_layers_and_channels(trained_lenet):
    with pytest.raises(InvalidModelError, match="no layer"):
        prune(trained_lenet, [("features.conv7", 0)])
    with pytest.raises(InvalidDataError, match="6 output channels"):
        prune(trained_lenet, [("features.conv1", 6)])
    with pytest.raises(InvalidDataError, match="pairs"):
        prune(trained_lenet, ["features.conv1"])


def _accuracy(net: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        return float((net(x).argmax(1) == y).float().mean())


def test_pruning_experiment_against_manual_evaluation(trained_lenet, small_digits):
    x, y = small_digits
    anomalies = [("features.conv1", 1), ("features.conv2", 3), ("features.conv2", 9)]
    exp = pruning_experiment(trained_lenet, anomalies, (x, y), seeds=3, random_state=7)
    runs = exp.runs
    assert runs["condition"].tolist() == ["baseline", "anomaly", "random", "random", "random"]
    assert exp.baseline == pytest.approx(_accuracy(trained_lenet, x, y))
    with prune(trained_lenet, anomalies):
        assert exp.anomaly == pytest.approx(_accuracy(trained_lenet, x, y))
    for _, row in runs[runs.condition == "random"].iterrows():
        layers = pd.Series([layer for layer, _ in row.filters]).value_counts().to_dict()
        assert layers == {"features.conv1": 1, "features.conv2": 2}  # same count per layer
        assert not set(row.filters) & set(anomalies)  # drawn from the other filters
        with prune(trained_lenet, row.filters):
            assert row.accuracy == pytest.approx(_accuracy(trained_lenet, x, y))
    random_acc = runs.loc[runs.condition == "random", "accuracy"]
    assert exp.random_mean == pytest.approx(random_acc.mean())
    assert exp.random_std == pytest.approx(random_acc.std(ddof=1))
    again = pruning_experiment(trained_lenet, anomalies, (x, y), seeds=3, random_state=7)
    assert again.runs["filters"].tolist() == runs["filters"].tolist()
    assert exp.per_layer == {"features.conv1": 1, "features.conv2": 2}


# --- filter-level reading ------------------------------------------------------------------


@pytest.fixture(scope="module")
def lenet_with_dead_filter(small_digits):
    torch.manual_seed(0)
    net = LeNet5()
    with torch.no_grad():
        net.features.conv2.weight[5] = 0.0
        net.features.conv2.bias[5] = 0.0
    x, y = small_digits
    return fs.analyze(net, (x, y), n_samples=None, progress=False)


def test_filter_outliers_flags_a_dead_filter_and_it_isolates_nothing(lenet_with_dead_filter):
    from filterscope.gmm.hypotheses import filter_outliers

    result = lenet_with_dead_filter
    table = filter_outliers(result)
    assert len(table) == len(result.table)
    assert table["filter"].tolist() == result.table["filter"].tolist()
    dead = table[(table.layer == "features.conv2") & (table.channel == 5)].iloc[0]
    assert dead["k"] == 1 and dead["explained_variance"] == 0.0
    assert dead["flagged"] and dead["max_abs_z"] > 3.5
    assert dead["isolated_ids"] == []


def test_filter_outliers_z_scores_are_robust_z_within_the_layer(lenet_with_dead_filter):
    from filterscope.gmm.hypotheses import FILTER_STATISTICS, filter_outliers

    table = filter_outliers(lenet_with_dead_filter, threshold=2.0)
    for layer, g in table.groupby("layer"):
        for name in FILTER_STATISTICS:
            x = g[name].to_numpy()
            med = np.median(x)
            mad = 1.4826 * np.median(np.abs(x - med))
            if mad == 0:
                mad = 1.2533 * np.mean(np.abs(x - med))
            expected = (x - med) / mad if mad > 0 else np.zeros_like(x)
            np.testing.assert_allclose(g[f"z_{name}"].to_numpy(), expected, err_msg=layer)
    z = table[[f"z_{s}" for s in FILTER_STATISTICS]].abs().max(axis=1)
    np.testing.assert_array_equal(table["flagged"].to_numpy(), (z > 2.0).to_numpy())


def test_filter_outliers_isolated_samples_are_the_smallest_cluster(lenet_with_dead_filter):
    from filterscope.gmm.hypotheses import filter_outliers

    result = lenet_with_dead_filter
    table = filter_outliers(result, threshold=0.5, max_fraction=1.0)
    ds = result.dataset
    checked = 0
    for row in table[table.flagged & (table.k > 1)].itertuples():
        labels = ds["labels"].values[row.filter]
        sizes = np.bincount(labels, minlength=int(row.k))[: int(row.k)]
        held = np.where(sizes > 0, sizes, len(labels) + 1)
        expected = ds["sample_id"].values[labels == np.argmin(held)].tolist()
        assert row.isolated_ids == expected
        checked += 1
    assert checked > 0
    assert (table.loc[~table.flagged, "isolated_ids"].map(len) == 0).all()


def test_filter_outliers_rejects_bad_parameters(lenet_with_dead_filter):
    from filterscope.gmm.hypotheses import filter_outliers

    with pytest.raises(InvalidParameterError, match="threshold"):
        filter_outliers(lenet_with_dead_filter, threshold=0)
    with pytest.raises(InvalidParameterError, match="max_fraction"):
        filter_outliers(lenet_with_dead_filter, max_fraction=1.5)
    with pytest.raises(InvalidParameterError, match="unknown filter statistic"):
        filter_outliers(lenet_with_dead_filter, statistics=["k", "nope"])
