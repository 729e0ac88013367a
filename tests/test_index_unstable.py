"""The index's per-class summaries: unstable counts at the presets' lags and the class order."""

from __future__ import annotations

import numpy as np
import pytest

from filterscope.dynamics import PRESETS, from_arrays, unstable_samples
from filterscope.dynamics.validation import order_classes
from filterscope.index import build_index
from filterscope.index.unstable import LAGS


def _correct(n_snapshots: int, n_samples: int, seed: int = 0) -> np.ndarray:
    """Series with long runs (so lag-30 counts are not all zero) and some noise."""
    rng = np.random.default_rng(seed)
    switch = rng.random((n_snapshots, n_samples)) < 0.04
    return (np.cumsum(switch, axis=0) % 2).astype(bool)


def _log(values: np.ndarray, n_classes: int = 7):
    return from_arrays(values, labels=np.arange(values.shape[1]) % n_classes)


def test_lags_are_the_presets() -> None:
    assert LAGS == tuple(sorted({j for j, _ in PRESETS.values()}))


def test_counts_equal_unstable_samples(tmp_path) -> None:
    values = _correct(120, 300)
    log = _log(values)
    idx = build_index(log, tmp_path / "index.zarr")
    full = unstable_samples(log, window=100, j=30, threshold=5)
    for j in LAGS:
        counts = idx.unstable_counts(j)
        assert counts is not None
        np.testing.assert_array_equal(counts.ab_left.values, full.ab_left.isel(lag=j).values)
        np.testing.assert_array_equal(counts.ab_right.values, full.ab_right.isel(lag=j).values)
    assert int(idx.unstable_counts(30).ab_left.values.sum()) > 0
    assert idx.unstable_counts(5) is None  # not a preset's lag


@pytest.mark.parametrize("steps", [(40, 41, 75, 150), (1, 33, 150), (100, 150)])
def test_extension_matches_a_fresh_build(tmp_path, steps) -> None:
    values = _correct(150, 240, seed=3)
    store = tmp_path / "index.zarr"
    for n in steps:
        idx = build_index(_log(values[:n]), store)
    fresh = build_index(_log(values), tmp_path / "fresh.zarr")
    for j in LAGS:
        grown, whole = idx.unstable_counts(j), fresh.unstable_counts(j)
        assert grown is not None and whole is not None
        assert grown.sizes["snapshot"] == 150
        np.testing.assert_array_equal(grown.ab_left.values, whole.ab_left.values)
        np.testing.assert_array_equal(grown.ab_right.values, whole.ab_right.values)
    np.testing.assert_array_equal(idx.class_order(), fresh.class_order())


def test_class_order_is_the_mds_of_class_error(tmp_path) -> None:
    log = _log(_correct(80, 200, seed=5), n_classes=9)
    idx = build_index(log, tmp_path / "index.zarr")
    error = idx.query("class_error", level=0).sel(agg="mean").transpose("snapshot", "class")
    expected = order_classes(error.values, "mds")
    np.testing.assert_array_equal(idx.class_order(), expected)
    # The stored order feeds "peak" without recomputing the MDS, with the same result.
    peak = np.arange(9)[::-1]
    np.testing.assert_array_equal(
        order_classes(error.values, "peak", peak, mds=idx.class_order()),
        order_classes(error.values, "peak", peak),
    )


def test_index_of_shares_one_open_index_until_the_log_or_index_changes(tmp_path) -> None:
    import filterscope as fs
    from filterscope.data.synthetic import synthetic_log

    path = tmp_path / "run"
    sizes = {"n_samples": 60, "n_classes": 6, "layers": "resnet18", "plant": False}
    synthetic_log(path, n_snapshots=10, **sizes)
    log = fs.open_log(path)
    first = fs.index_of(log, progress=False)
    assert fs.index_of(log, progress=False) is first
    assert fs.index_of(path, build=False) is first
    # Another run written at the path: its own index, not the one held.
    synthetic_log(path, n_snapshots=14, seed=1, mode="w", **sizes)
    again = fs.index_of(fs.open_log(path), progress=False)
    assert again is not first and again.committed["snapshot"] == 14
    counts = again.unstable_counts(30)
    assert counts is not None and counts.sizes["snapshot"] == 14
