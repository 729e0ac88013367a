"""Per-sample signals, filter rankings, orderings and clusters against direct computations."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from sklearn.metrics import adjusted_rand_score

from filterscope.dynamics import (
    aum,
    cartography,
    class_clusters,
    class_error,
    class_order,
    forgetting,
    from_arrays,
    layer_class_correlation,
    mds_order,
    sample_order,
    top_changed_filters,
    transitions,
)
from filterscope.errors import InvalidDataError, LogFormatError, NonFiniteError

LAYERS = {"conv1": 6, "conv2": 8, "fc": 5}
N_FILTERS = sum(LAYERS.values())


def random_log(seed: int = 0, n_snapshots: int = 30, n_samples: int = 200, n_classes: int = 5):
    rng = np.random.default_rng(seed)
    correct = np.cumsum(rng.random((n_snapshots, n_samples)) < 0.2, axis=0) % 2 == 1
    labels = rng.integers(0, n_classes, n_samples)
    p_true = rng.random((n_snapshots, n_samples)) ** rng.uniform(0.2, 5, n_samples)
    margin = rng.normal(rng.normal(0.5, 1.0, n_samples), 1.0, (n_snapshots, n_samples))
    # Rounded so that ties occur and the tie-breaking rule is exercised.
    cosine = np.round(rng.uniform(0.0, 1.0, (n_snapshots, N_FILTERS)), 1)
    cosine[0] = np.nan
    cosine[5, [2, 9]] = np.nan
    return from_arrays(
        correct,
        labels,
        n_classes=n_classes,
        p_true=p_true,
        margin=margin,
        layers=LAYERS,
        filter_metrics={"filter_cosine": cosine, "filter_l2": np.abs(1 - cosine) * 3},
    )


def test_transitions_partition_the_samples_and_match_numpy():
    log = random_log()
    v = log.correct.values
    t = transitions(log)
    assert t.snapshot.values.tolist() == list(range(1, 30))
    total = t.wrong_to_right + t.right_to_wrong + t.right_to_right + t.wrong_to_wrong
    assert (total == v.shape[1]).all()
    np.testing.assert_array_equal(t.wrong_to_right, (~v[:-1] & v[1:]).sum(axis=1))
    np.testing.assert_array_equal(t.right_to_wrong, (v[:-1] & ~v[1:]).sum(axis=1))
    np.testing.assert_array_equal(t.wrong_to_wrong, (~v[:-1] & ~v[1:]).sum(axis=1))
    assert t.snapshot_step.values.tolist() == list(range(1, 30))


def test_class_error_matches_a_loop_over_classes():
    log = random_log(n_classes=6)
    labels = log.label.values.copy()
    labels[labels == 5] = 4  # class 5 left without samples
    log = log.assign_coords(label=("sample", labels))
    err = class_error(log)
    v = log.correct.values
    for c in range(5):
        np.testing.assert_allclose(err.values[:, c], 1 - v[:, labels == c].mean(axis=1))
    assert np.isnan(err.values[:, 5]).all()
    assert err.class_size.values.tolist() == np.bincount(labels, minlength=6).tolist()


@pytest.mark.parametrize(
    ("series", "events", "unforgettable", "never", "first"),
    [
        ([1, 1, 1, 1], 0, True, False, 0),
        ([0, 0, 0, 0], 0, False, True, -1),
        ([0, 1, 0, 1], 1, False, False, 1),
        ([1, 0, 1, 0], 2, False, False, 0),
        ([0, 0, 1, 1], 0, True, False, 2),
        ([1, 0, 0, 0], 1, False, False, 0),
        ([0, 1, 1, 0], 1, False, False, 1),
    ],
)
def test_forgetting_on_hand_made_sequences(series, events, unforgettable, never, first):
    f = forgetting(from_arrays(np.array(series, bool)[:, None], labels=[0]))
    assert f.forgetting_events.item() == events
    assert f.unforgettable.item() is unforgettable
    assert f.never_learned.item() is never
    assert f.first_learned.item() == first


def test_forgetting_reports_snapshot_labels_and_matches_numpy():
    log = random_log(seed=1).isel(snapshot=slice(10, None))
    f = forgetting(log)
    v = log.correct.values
    events = (v[:-1] & ~v[1:]).sum(axis=0)
    np.testing.assert_array_equal(f.forgetting_events, events)
    learned = v.any(axis=0)
    np.testing.assert_array_equal(f.first_learned, np.where(learned, v.argmax(0) + 10, -1))
    np.testing.assert_array_equal(f.unforgettable, learned & (events == 0))


def test_cartography_matches_numpy_and_documented_regions():
    log = random_log(seed=2)
    c = cartography(log)
    p = log.p_true.values.astype(np.float64)
    confidence, variability = p.mean(axis=0), p.std(axis=0)
    np.testing.assert_allclose(c.confidence, confidence, rtol=1e-12)
    np.testing.assert_allclose(c.variability, variability, rtol=1e-12)
    np.testing.assert_allclose(c.correctness, log.correct.values.mean(axis=0))
    want = np.where(
        variability >= 0.2,
        "ambiguous",
        np.where(
            confidence >= 0.7,
            "easy-to-learn",
            np.where(confidence <= 0.3, "hard-to-learn", "other"),
        ),
    )
    np.testing.assert_array_equal(c.region, want)
    assert {"easy-to-learn", "hard-to-learn", "ambiguous"} <= set(c.region.values.tolist())
    with pytest.raises(InvalidDataError, match="hard_confidence"):
        cartography(log, easy_confidence=0.2, hard_confidence=0.5)


def test_aum_matches_numpy_for_both_rules():
    log = random_log(seed=3)
    m = log.margin.values.astype(np.float64)
    area = m.mean(axis=0)
    a = aum(log)
    np.testing.assert_allclose(a.aum, area, rtol=1e-12)
    np.testing.assert_array_equal(a.possibly_mislabeled, area < 0)
    q = aum(log, quantile=0.1)
    np.testing.assert_array_equal(q.possibly_mislabeled, area <= np.quantile(area, 0.1))
    assert int(q.possibly_mislabeled.sum()) == 20
    with pytest.raises(InvalidDataError, match="quantile"):
        aum(log, quantile=1.5)
    with pytest.raises(LogFormatError, match="'margin'"):
        aum(log.drop_vars("margin"))


def brute_top(values: np.ndarray, k: int, lowest_first: bool) -> list[int]:
    key = values if lowest_first else -values
    ranked = sorted((float(key[f]), f) for f in range(len(values)) if not np.isnan(values[f]))
    return [f for _, f in ranked[:k]]


@pytest.mark.parametrize(
    ("metric", "lowest_first"), [("filter_cosine", True), ("filter_l2", False)]
)
@pytest.mark.parametrize("k", [1, 4, 10, 30])
def test_top_changed_filters_match_a_brute_force_sort(metric, lowest_first, k):
    log = random_log(seed=4)
    values = log[metric].values
    for s in (1, 5, 17):
        df = top_changed_filters(log, s, k=k, metric=metric)
        want = brute_top(values[s], k, lowest_first)
        assert df["filter"].tolist() == want
        assert df[f"rank@{s}"].tolist() == list(range(1, len(want) + 1))
        np.testing.assert_array_equal(df[f"value@{s}"], values[s, want])
        np.testing.assert_array_equal(df["layer"], log.filter_layer.values[want])
        np.testing.assert_array_equal(df["channel"], log.filter_channel.values[want])
        assert df["in_all"].all()


def test_several_picks_give_the_intersection_first_then_the_union_by_frequency():
    log = random_log(seed=5)
    values = log.filter_cosine.values
    picks = [3, 8, 12]
    k = 8
    df = top_changed_filters(log, picks, k=k)
    tops = [brute_top(values[s], k, True) for s in picks]
    union = set().union(*tops)
    assert set(df["filter"]) == union
    assert set(df.loc[df.in_all, "filter"]) == set(tops[0]) & set(tops[1]) & set(tops[2])
    frequency = [sum(f in top for top in tops) for f in df["filter"]]
    assert df["n_picks"].tolist() == frequency
    assert frequency == sorted(frequency, reverse=True)
    for s, top in zip(picks, tops, strict=True):
        ranks = dict(zip(df["filter"], df[f"rank@{s}"], strict=True))
        assert top == sorted(top, key=lambda f: ranks[f])
        assert all(ranks[f] is pd.NA for f in union - set(top))


def test_empty_intersection_returns_no_in_all_rows_but_the_union():
    cosine = np.full((3, N_FILTERS), 0.9)
    cosine[0] = np.nan
    cosine[1, [0, 1]] = [0.1, 0.2]
    cosine[2, [7, 8]] = [0.1, 0.2]
    log = from_arrays(
        np.ones((3, 2), bool), [0, 1], layers=LAYERS, filter_metrics={"filter_cosine": cosine}
    )
    df = top_changed_filters(log, [1, 2], k=2)
    assert not df.in_all.any()
    assert df[df.in_all].empty
    assert df["filter"].tolist() == [0, 7, 1, 8]  # rank sums 1+3, 1+3, 2+3, 2+3
    assert top_changed_filters(log, 0, k=5).empty  # snapshot 0 is all NaN: nothing ranked
    assert top_changed_filters(log, [1, 1], k=2)["filter"].tolist() == [0, 1]
    with pytest.raises(InvalidDataError, match="not in the log"):
        top_changed_filters(log, 7)
    with pytest.raises(InvalidDataError, match="metric"):
        top_changed_filters(log, 1, metric="filter_std")


def test_layer_class_correlation_matches_sets():
    log = random_log(seed=6, n_classes=4)
    rng = np.random.default_rng(6)
    flags = xr.DataArray(rng.random((30, 4)) < 0.15, dims=("snapshot", "class"))
    k = 3
    got = layer_class_correlation(log, k=k, flagged=flags)
    layer_of = log.filter_layer_index.values
    for c in range(4):
        seen = set()
        for s in np.flatnonzero(flags.values[:, c]):
            seen |= set(brute_top(log.filter_cosine.values[s], k, True))
        for layer in range(3):
            assert got.values[layer, c] == sum(layer_of[f] == layer for f in seen)
    assert got.layer_name.values.tolist() == list(LAYERS)
    with pytest.raises(InvalidDataError, match="shape"):
        layer_class_correlation(log, flagged=flags.isel(snapshot=slice(3)))


def test_layer_class_correlation_finds_the_planted_layer():
    rng = np.random.default_rng(7)
    n_snapshots, per_class = 100, 10
    correct = np.cumsum(rng.random((n_snapshots, 3 * per_class)) < 0.3, axis=0) % 2 == 1
    correct[:, per_class : 2 * per_class] = False
    correct[40:80, per_class : 2 * per_class] = True  # class 1 flips at 40 and 80
    cosine = rng.uniform(0.6, 1.0, (n_snapshots, N_FILTERS))
    cosine[0] = np.nan
    cosine[40, 6:9] = 0.1  # conv2 filters 0..2 change at 40
    cosine[80, 8:11] = 0.1  # conv2 filters 2..4 change at 80
    log = from_arrays(
        correct,
        np.repeat([0, 1, 2], per_class),
        layers=LAYERS,
        filter_metrics={"filter_cosine": cosine},
    )
    got = layer_class_correlation(log, k=3)
    assert got.sel({"class": 1}).values.tolist() == [0, 5, 0]
    assert (got.sel({"class": [0, 2]}) == 0).all()


@pytest.mark.parametrize("n_rows", [40, 400])  # dense eigensolver, then Lanczos
def test_mds_order_recovers_a_planted_line(n_rows):
    rng = np.random.default_rng(8)
    angle = rng.uniform(0, np.pi / 2, n_rows)
    basis = np.linalg.qr(rng.normal(size=(30, 2)))[0]
    scale = rng.uniform(0.5, 3, (n_rows, 1))
    rows = np.stack([np.cos(angle), np.sin(angle)], 1) @ basis.T * scale
    order = mds_order(rows)
    want = np.argsort(angle)
    assert order.tolist() in (want.tolist(), want[::-1].tolist())
    assert mds_order(rows[want]).tolist() == list(range(n_rows))  # sorted input keeps its order


def test_mds_order_euclidean_and_edge_cases():
    rng = np.random.default_rng(8)
    position = rng.permutation(25)
    points = np.outer(position, rng.normal(size=6)) + rng.normal(0, 1e-3, (25, 6))
    want = np.argsort(position)
    assert mds_order(points, metric="euclidean").tolist() in (want.tolist(), want[::-1].tolist())
    assert mds_order(np.zeros((1, 3))).tolist() == [0]
    assert mds_order(np.ones((4, 3))).tolist() == [0, 1, 2, 3]  # no spread, no reordering
    with pytest.raises(NonFiniteError):
        mds_order([[0.0, np.nan], [1.0, 2.0]])
    with pytest.raises(InvalidDataError, match="metric"):
        mds_order(np.eye(3), metric="manhattan")


def test_class_and_sample_orders_recover_planted_onsets():
    rng = np.random.default_rng(9)
    t = np.arange(60)[:, None]
    # One sample per class, wrong until the class's onset: error series are shifted steps.
    class_onset = rng.permutation(np.arange(5, 55, 5))
    classes = class_order(from_arrays(t >= class_onset, np.arange(len(class_onset))))
    want = np.argsort(class_onset)
    assert classes.tolist() in (want.tolist(), want[::-1].tolist())
    # Class 1's samples are right from their own onsets; class 0's sample is noise.
    sample_onset = rng.permutation(np.arange(4, 52, 4))
    correct = np.concatenate([rng.random((60, 1)) < 0.5, t >= sample_onset], axis=1)
    log = from_arrays(correct, np.r_[0, np.ones(len(sample_onset), int)])
    want = np.argsort(sample_onset) + 1  # sample labels of class 1 start at 1
    assert sample_order(log, 1).tolist() in (want.tolist(), want[::-1].tolist())
    with pytest.raises(InvalidDataError, match="not on the class axis"):
        sample_order(log, 99)


def test_class_clusters_recover_planted_groups():
    rng = np.random.default_rng(10)
    n_snapshots, per_class, groups = 50, 20, 4
    t = np.arange(n_snapshots)[:, None] / n_snapshots
    columns, labels, truth = [], [], []
    for c in range(12):
        g = c % groups
        # Each group learns at its own time; noise makes the classes differ within a group.
        accuracy = 1 / (1 + np.exp(-25 * (t - (0.15 + 0.2 * g))))
        columns.append(rng.random((n_snapshots, per_class)) < accuracy)
        labels += [c] * per_class
        truth.append(g)
    labels_arr = np.asarray(labels)
    log = from_arrays(np.concatenate(columns, axis=1), labels_arr, n_classes=13)
    out = class_clusters(log, k=4)
    cluster = out.class_cluster.values
    assert cluster[12] == -1  # class without samples
    assert adjusted_rand_score(truth, cluster[:12]) == 1.0
    # Later learning means more error: labels follow the documented order by mean error.
    np.testing.assert_array_equal(cluster[:4], [0, 1, 2, 3])
    v = log.correct.values
    for g in range(4):
        members = np.isin(labels_arr, np.flatnonzero(cluster == g))
        np.testing.assert_allclose(out.cluster_error.values[:, g], 1 - v[:, members].mean(1))
    assert out.cluster_classes.values.tolist() == [3, 3, 3, 3]
    with pytest.raises(InvalidDataError, match="k=13"):
        class_clusters(log, k=13)
