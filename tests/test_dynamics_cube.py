"""The cube's correlation face against a plain-numpy oracle, on a synthetic log with planted
unstable classes and abrupt filters."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from filterscope.data import ground_truth, synthetic_log
from filterscope.dynamics import cube_faces, flags_in_buckets, layer_class_correlation
from filterscope.errors import InvalidDataError

pytestmark = pytest.mark.xdist_group("dynamics_cube")


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> tuple[xr.Dataset, xr.Dataset]:
    path = tmp_path_factory.mktemp("cube") / "log"
    log = synthetic_log(path, n_samples=2000, n_classes=50, n_snapshots=120, layers="resnet18")
    return log.load(), ground_truth(path)


def oracle_flags(
    correct: np.ndarray, labels: np.ndarray, n_classes: int, window: int, j: int, threshold: int
) -> tuple[np.ndarray, np.ndarray]:
    """DeepTracker's left walk, literally: per sample, per flip, step back while the state differs."""
    n_snap, n_samples = correct.shape
    count = np.zeros((n_snap, n_classes), dtype=np.int64)
    for s in range(n_samples):
        v = correct[:, s]
        for i in np.flatnonzero(v[1:] != v[:-1]) + 1:
            steps, k = 0, i - 1
            while k >= 0 and v[k] != v[i] and steps < window:
                steps += 1
                k -= 1
            if steps > j:  # abLeft[i][j] counts walks of more than j steps
                count[i, labels[s]] += 1
    return count, count >= threshold


def oracle_correlation(
    cosine: np.ndarray, filter_layer: np.ndarray, n_layers: int, flagged: np.ndarray, k: int
) -> np.ndarray:
    """Distinct top-k (lowest cosine, NaN never, ties to the lower filter) filters per layer."""
    n_snap, n_classes = flagged.shape
    top = []
    for i in range(n_snap):
        row = cosine[i]
        valid = np.flatnonzero(~np.isnan(row))
        order = valid[np.lexsort((valid, row[valid]))]
        top.append(set(order[:k].tolist()))
    out = np.zeros((n_layers, n_classes), dtype=np.int64)
    for c in range(n_classes):
        seen: set[int] = set()
        for i in np.flatnonzero(flagged[:, c]):
            seen |= top[i]
        for f in seen:
            out[filter_layer[f], c] += 1
    return out


def test_correlation_matches_a_numpy_oracle_on_planted_unstable_classes(run):
    log, truth = run
    faces = cube_faces(log)
    labels = np.asarray(log.label.values)
    count, flagged = oracle_flags(
        np.asarray(log.correct.values, bool), labels, log.sizes["class"], 100, 30, 5
    )
    np.testing.assert_array_equal(faces.flag_count.values, count)
    np.testing.assert_array_equal(faces.flagged.values, flagged)
    layer_pos = np.searchsorted(log.layer.values, log.filter_layer_index.values)
    expected = oracle_correlation(
        np.asarray(log.filter_cosine.values, np.float64),
        layer_pos,
        log.sizes["layer"],
        flagged,
        10,
    )
    np.testing.assert_array_equal(faces.correlation.values, expected)
    assert faces.correlation.dims == ("layer", "class")
    # The planted unstable classes are flagged, correlated with some layer, and come first.
    planted = set(truth.unstable_class.values.tolist())
    assert all(faces.flagged_snapshots.sel({"class": c}) > 0 for c in planted)
    assert all(faces.correlation.sel({"class": c}).sum() > 0 for c in planted)
    first = set(faces.class_order.values[: len(planted) + 3].tolist())
    assert planted <= first


def test_class_order_follows_correlation_then_flags(run):
    log, _ = run
    faces = cube_faces(log)
    total = faces.correlation.sum("layer").values
    n_flagged = faces.flagged.sum("snapshot").values
    order = faces.class_order.values
    keys = list(
        zip(-total[order], -n_flagged[order], -faces.peak_count.values[order], order, strict=True)
    )
    assert keys == sorted(keys)
    np.testing.assert_array_equal(order[faces.class_rank.values], np.arange(len(order)))


def test_it_reuses_layer_class_correlation_with_other_settings(run):
    log, _ = run
    faces = cube_faces(log, k=3, metric="filter_l2", preset="immediate")
    assert faces.attrs["k"] == 3 and faces.attrs["preset"] == "immediate"
    assert faces.attrs["j"] == 0 and faces.attrs["threshold"] == 30
    from filterscope.dynamics import unstable_samples

    flags = unstable_samples(log, preset="immediate").flagged
    expected = layer_class_correlation(log, k=3, metric="filter_l2", flagged=flags)
    xr.testing.assert_equal(faces.correlation, expected)
    with pytest.raises(InvalidDataError):
        cube_faces(log, k=0)
    with pytest.raises(InvalidDataError):
        cube_faces(log, metric="nope")


def test_flags_in_buckets_counts_flagged_snapshots_per_bucket(run):
    log, _ = run
    flagged = cube_faces(log).flagged
    starts = log.snapshot.values[::8]
    stops = np.minimum(starts + 7, log.snapshot.values[-1])
    classes = [37, 0, 15]
    got = flags_in_buckets(flagged, starts, stops, classes)
    assert got.shape == (3, len(starts)) and got.dtype == np.int32
    for r, c in enumerate(classes):
        column = flagged.sel({"class": c}).values
        expected = [column[a : b + 1].sum() for a, b in zip(starts, stops, strict=True)]
        np.testing.assert_array_equal(got[r], expected)
    assert flags_in_buckets(flagged, starts, stops).shape == (log.sizes["class"], len(starts))
    with pytest.raises(InvalidDataError):
        flags_in_buckets(flagged, [5], [4])
    with pytest.raises(InvalidDataError):
        flags_in_buckets(flagged, [0], [10_000])
    with pytest.raises(InvalidDataError):
        flags_in_buckets(flagged, [0], [1], classes=[999])
    with pytest.raises(InvalidDataError):
        flags_in_buckets(flagged.isel(snapshot=0), [0], [1])


def test_both_mode_counts_the_larger_of_left_and_right(run):
    from filterscope.dynamics import unstable_samples

    log, _ = run
    faces = cube_faces(log, mode="both", j=2, threshold=3)
    u = unstable_samples(log, mode="both", j=2, threshold=3)
    expected = np.maximum(u.ab_left.isel(lag=2).values, u.ab_right.isel(lag=2).values)
    np.testing.assert_array_equal(faces.flag_count.values, expected)
    np.testing.assert_array_equal(faces.flagged.values, u.flagged.values)
