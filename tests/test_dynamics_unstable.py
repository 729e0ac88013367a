"""Unstable samples: the vectorised counts against the literal reference walk, and planted flips."""

from __future__ import annotations

from unittest import mock

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from filterscope.dynamics import _common, from_arrays, unstable_samples
from filterscope.errors import InvalidDataError, LogFormatError


def reference_walks(v: list[int], window: int) -> tuple[np.ndarray, np.ndarray]:
    """DeepTracker's abLeft/abRight walk for one image, written literally (one row per i)."""
    t = len(v)
    ab_left = np.zeros((t, window), dtype=np.int64)
    ab_right = np.zeros((t, window), dtype=np.int64)
    for i in range(t):
        if i >= 1 and v[i - 1] != v[i]:
            k = i - 1
            steps = 0
            while k >= 0 and v[k] != v[i] and steps < window:
                ab_left[i][i - k - 1] += 1
                k -= 1
                steps += 1
        if i + 1 <= t - 1 and v[i + 1] != v[i]:
            k = i + 1
            steps = 0
            while k <= t - 1 and v[k] != v[i] and steps < window:
                ab_right[i][k - i - 1] += 1
                k += 1
                steps += 1
    return ab_left, ab_right


@st.composite
def correctness_logs(draw):
    n_snapshots = draw(st.integers(1, 40))
    n_samples = draw(st.integers(1, 6))
    n_classes = draw(st.integers(1, 3))
    flip_rate = draw(st.sampled_from([0.05, 0.3, 0.7]))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    # A random walk over correctness: long runs at low flip rates, short ones at high rates.
    flips = rng.random((n_snapshots, n_samples)) < flip_rate
    flips[0] = rng.random(n_samples) < 0.5
    correct = np.cumsum(flips, axis=0) % 2 == 1
    labels = rng.integers(0, n_classes, n_samples)
    return correct, labels, n_classes


@settings(max_examples=200, deadline=None)
@given(
    data=correctness_logs(),
    window=st.sampled_from([3, 5, 100]),
    lag=st.integers(0, 4),
    threshold=st.integers(1, 3),
    block=st.sampled_from([1, 7, 1 << 22]),
)
def test_counts_match_reference_walk(data, window, lag, threshold, block):
    correct, labels, n_classes = data
    j = min(lag, window - 1)
    log = from_arrays(correct, labels, n_classes=n_classes)
    # Tiny blocks force the multi-block paths (per-sample chunks, chunked cumulative sums).
    with mock.patch.object(_common, "_BLOCK_ELEMENTS", block):
        out = unstable_samples(log, window=window, j=j, threshold=threshold, mode="left")

    n_snapshots, n_samples = correct.shape
    want_left = np.zeros((n_snapshots, n_classes, window), dtype=np.int64)
    want_right = np.zeros_like(want_left)
    for n in range(n_samples):
        left, right = reference_walks(correct[:, n].astype(int).tolist(), window)
        want_left[:, labels[n]] += left
        want_right[:, labels[n]] += right
        np.testing.assert_array_equal(out.flip_left_run.values[:, n], left.sum(axis=1))
        np.testing.assert_array_equal(out.flip_right_run.values[:, n], right.sum(axis=1))

    np.testing.assert_array_equal(out.ab_left.values, want_left)
    np.testing.assert_array_equal(out.ab_right.values, want_right)
    np.testing.assert_array_equal(out.model_ab_left.values, want_left.sum(axis=1))
    np.testing.assert_array_equal(out.model_ab_right.values, want_right.sum(axis=1))
    flagged = want_left[:, :, j] >= threshold
    np.testing.assert_array_equal(out.flagged.values, flagged)
    np.testing.assert_array_equal(out.flagged_right.values, want_right[:, :, j] >= threshold)
    peak = want_left[:, :, j].max(axis=0)
    shown = (peak >= threshold) & (flagged.sum(axis=0) >= 2)
    np.testing.assert_array_equal(out.class_shown.values, shown)


def planted_log(seed: int = 0):
    """Classes 0 and 2 flip at random (short runs); class 1 flips together at 40 and 80 after
    holding for 40 snapshots; class 3 has 32 samples that all flip at 50 after short runs."""
    rng = np.random.default_rng(seed)
    n_snapshots, per_class = 120, 12
    noisy = np.cumsum(rng.random((n_snapshots, 2 * per_class)) < 0.3, axis=0) % 2 == 1
    steady = np.zeros((n_snapshots, per_class), dtype=bool)
    steady[40:80] = True
    burst_noise = np.cumsum(rng.random((n_snapshots, 32)) < 0.3, axis=0) % 2 == 1
    burst = burst_noise.copy()
    burst[50] = ~burst[49]  # every sample of class 3 changes state at 50
    correct = np.concatenate([noisy[:, :per_class], steady, noisy[:, per_class:], burst], axis=1)
    labels = np.repeat([0, 1, 2, 3], [per_class, per_class, per_class, 32])
    return from_arrays(correct, labels, class_names=["a", "b", "c", "d"])


def test_planted_sustained_flip_is_flagged_where_planted():
    out = unstable_samples(planted_log())
    flagged = out.flagged.transpose("class", "snapshot").values
    assert np.flatnonzero(flagged[1]).tolist() == [40, 80]
    assert not flagged[[0, 2, 3]].any()
    assert out.class_shown.values.tolist() == [False, True, False, False]
    assert int(out.ab_left.sel({"class": 1, "snapshot": 40, "lag": 30})) == 12
    assert out.class_name.values.tolist() == ["a", "b", "c", "d"]


def test_planted_right_flags_sit_before_the_change():
    out = unstable_samples(planted_log(), mode="right")
    flagged = out.flagged.transpose("class", "snapshot").values
    # After the change at 40 the new state holds 40 snapshots; the one at 80 holds 40 too.
    assert np.flatnonzero(flagged[1]).tolist() == [39, 79]
    assert not flagged[[0, 2, 3]].any()
    both = unstable_samples(planted_log(), mode="both").flagged.sel({"class": 1}).values
    assert np.flatnonzero(both).tolist() == [39, 40, 79, 80]


def test_immediate_preset_flags_simultaneous_flips_only():
    out = unstable_samples(planted_log(), preset="immediate")
    assert (out.attrs["j"], out.attrs["threshold"]) == (0, 30)
    flagged = out.flagged.transpose("class", "snapshot").values
    assert np.flatnonzero(flagged[3]).tolist() == [50]
    assert not flagged[[0, 1, 2]].any()
    # Flagged at one snapshot only, so the class is not listed.
    assert not out.class_shown.any()


def test_lazy_log_gives_the_same_counts():
    log = planted_log(seed=3)
    eager = unstable_samples(log, window=20, j=3, threshold=2)
    lazy = unstable_samples(log.chunk({"snapshot": 17, "sample": 9}), window=20, j=3, threshold=2)
    assert lazy.identical(eager)


def test_bad_parameters_raise_typed_errors():
    log = planted_log()
    with pytest.raises(InvalidDataError, match="j must be"):
        unstable_samples(log, window=10, j=10)
    with pytest.raises(InvalidDataError, match="window"):
        unstable_samples(log, window=0)
    with pytest.raises(InvalidDataError, match="mode"):
        unstable_samples(log, mode="up")
    with pytest.raises(InvalidDataError, match="preset"):
        unstable_samples(log, preset="slow")
    with pytest.raises(LogFormatError, match=r"xarray\.Dataset"):
        unstable_samples(log.correct)
    with pytest.raises(LogFormatError, match="'correct'"):
        unstable_samples(log.drop_vars("correct"))
    with pytest.raises(InvalidDataError, match="not on the class axis"):
        unstable_samples(log.isel({"class": [0, 1]}))
