"""Time pyramids: equal to xarray's coarsen, NaN-aware, and the same built at once or growing."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr
import zarr
from hypothesis import given, settings
from hypothesis import strategies as st

from filterscope.dynamics import from_arrays
from filterscope.index import AGGREGATES, build_index, choose_level, coarsen_pairs, level_from_raw
from filterscope.index.build import read_state


def _pyramid(raw: np.ndarray, top: int) -> list[np.ndarray]:
    levels = [level_from_raw(raw, np.dtype(np.float32))]
    for _ in range(top):
        levels.append(coarsen_pairs(levels[-1]))
    return levels


def _coarsened(da: xr.DataArray, level: int, boundary: str) -> xr.DataArray:
    c = da.coarsen(snapshot=2**level, boundary=boundary)
    return xr.concat([c.min(), c.max(), c.mean(), c.count()], dim="agg").transpose(
        "agg", "snapshot", ...
    )


@settings(max_examples=25, deadline=None)
@given(
    length=st.integers(1, 70),
    rows=st.integers(1, 4),
    nan_fraction=st.sampled_from([0.0, 0.3, 1.0]),
    seed=st.integers(0, 2**16),
)
def test_levels_equal_xarray_coarsen_pad_and_trim(length, rows, nan_fraction, seed):
    rng = np.random.default_rng(seed)
    raw = rng.normal(size=(length, rows)).astype(np.float32)
    raw[rng.random(raw.shape) < nan_fraction] = np.nan
    da = xr.DataArray(raw, dims=("snapshot", "row"))
    levels = _pyramid(raw, 7)
    for level in range(1, 8):
        ours = levels[level]
        # boundary="pad": the partial last bucket summarises what it has (count tells how much)
        padded = _coarsened(da, level, "pad").values
        np.testing.assert_allclose(ours, padded, rtol=2e-6, atol=1e-6, equal_nan=True)
        # boundary="trim": complete buckets only
        if length >= 2**level:
            trimmed = _coarsened(da, level, "trim").values
            full = length // 2**level
            np.testing.assert_allclose(
                ours[:, :full], trimmed, rtol=2e-6, atol=1e-6, equal_nan=True
            )


def test_level_zero_and_counts_of_bool_and_nan():
    raw = np.array([[True, False], [True, True], [False, True]])
    zero = level_from_raw(raw, np.dtype(np.float32))
    assert zero.shape == (4, 3, 2)
    np.testing.assert_array_equal(zero[0], raw)
    np.testing.assert_array_equal(zero[3], np.ones((3, 2)))
    one = coarsen_pairs(zero)
    np.testing.assert_array_equal(one[2], [[1.0, 0.5], [0.0, 1.0]])  # mean = fraction correct
    np.testing.assert_array_equal(one[3], [[2, 2], [1, 1]])  # the last bucket is partial
    empty = coarsen_pairs(level_from_raw(np.full((2, 1), np.nan, np.float32), np.float32))
    assert np.isnan(empty[:3]).all() and empty[3, 0, 0] == 0


@pytest.mark.parametrize(
    ("start", "stop", "columns", "expected"),
    [
        (0, 1000, 2000, 0),  # fewer snapshots than pixels: raw
        (0, 1000, 1000, 0),
        (0, 1000, 999, 1),  # 500 buckets of 2
        (0, 1000, 500, 1),
        (0, 1000, 499, 2),
        (0, 100_000, 2000, 6),  # 1563 buckets of 64
        (3, 9, 2, 3),  # buckets [0, 8) and [8, 16) overlap the window
    ],
)
def test_choose_level_is_the_finest_level_that_fits(start, stop, columns, expected):
    level = choose_level(start, stop, columns, top=17)
    assert level == expected
    if level:
        buckets = -(-stop // 2**level) - start // 2**level
        finer = -(-stop // 2 ** (level - 1)) - start // 2 ** (level - 1)
        assert buckets <= columns < finer


def _log(n_snapshots: int, seed: int = 0) -> xr.Dataset:
    rng = np.random.default_rng(seed)
    n_samples, n_filters = 60, 9
    correct = rng.random((n_snapshots, n_samples)) < np.linspace(0.2, 0.9, n_snapshots)[:, None]
    cosine = rng.random((n_snapshots, n_filters)).astype(np.float32)
    cosine[0] = np.nan
    cosine[rng.random(cosine.shape) < 0.05] = np.nan
    log = from_arrays(
        correct,
        labels=rng.permutation(np.arange(n_samples) % 6),
        p_true=rng.random((n_snapshots, n_samples)),
        layers={"conv1": 4, "conv2": 5},
        filter_metrics={"filter_cosine": cosine},
    )
    loss = rng.random(3 * n_snapshots).astype(np.float32)
    return log.assign(loss=("step", loss))


def _arrays(store) -> dict[str, np.ndarray]:
    group = zarr.open_group(str(store), path="index", mode="r")
    out = {}
    for name, node in group.members(max_depth=None):
        if isinstance(node, zarr.Array):
            out[name] = np.asarray(node[...])
    return out


def test_stored_levels_equal_coarsen_of_the_log(tmp_path):
    log = _log(150)
    idx = build_index(log, tmp_path / "idx")
    for var in ("filter_cosine", "p_true", "correct", "loss"):
        da = log[var].astype(np.float32)
        time = da.dims[0]
        for level in range(1, idx.levels(var) + 1):
            stored = idx.query(var, level=level)
            c = da.coarsen({time: 2**level}, boundary="pad")
            expected = xr.concat([c.min(), c.max(), c.mean(), c.count()], dim="agg")
            if "sample" in da.dims:  # the index returns samples class by class
                expected = expected.sel(sample=stored.sample)
            np.testing.assert_allclose(
                stored.transpose("agg", time, ...).values,
                expected.transpose("agg", time, ...).values,
                rtol=5e-6,
                atol=1e-6,
                equal_nan=True,
            )
            assert list(stored.agg.values) == list(AGGREGATES)


def test_incremental_build_equals_full_rebuild(tmp_path):
    full_log = _log(300)
    growing = tmp_path / "growing"
    # Small tasks (64 snapshots per block) so that growth goes through partial blocks, several
    # complete blocks left untouched, block-size changes of the small variables and new levels.
    for n in (1, 40, 65, 131, 300):
        part = full_log.isel(snapshot=slice(0, n), step=slice(0, 3 * n))
        idx = build_index(part, growing, block_elements=256)
        assert not idx.stale
        assert read_state(growing)["committed"] == {"snapshot": n, "step": 3 * n}
    assert idx.specs["correct"].block == 64  # 5 blocks: the last update rewrote blocks 2..4
    build_index(full_log, tmp_path / "full", block_elements=256)
    grown, full = _arrays(growing), _arrays(tmp_path / "full")
    assert grown.keys() == full.keys()
    for name in full:
        np.testing.assert_array_equal(grown[name], full[name], err_msg=name)


def test_an_interrupted_update_is_redone_from_scratch(tmp_path, monkeypatch):
    import filterscope.index.build as build_module

    log = _log(200)
    store = tmp_path / "idx"
    build_index(log.isel(snapshot=slice(0, 100), step=slice(0, 300)), store, block_elements=256)

    def killed(*args, **kwargs):
        raise RuntimeError("killed mid-build")

    with monkeypatch.context() as patch:
        patch.setattr(build_module, "_write_block", killed)
        with pytest.raises(RuntimeError, match="killed"):
            build_index(log, store, block_elements=256)
    assert read_state(store) is None  # no commit: nobody trusts the half-written arrays
    build_index(log, store, block_elements=256)
    build_index(log, tmp_path / "full", block_elements=256)
    redone, full = _arrays(store), _arrays(tmp_path / "full")
    for name in full:
        np.testing.assert_array_equal(redone[name], full[name], err_msg=name)


@pytest.mark.slow
def test_distributed_build_equals_local_build(tmp_path):
    import distributed

    log = _log(200)
    build_index(log, tmp_path / "local")
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, dashboard_address=None, processes=True
        ) as cluster,
        distributed.Client(cluster),
    ):
        build_index(log, tmp_path / "cluster")
    local, remote = _arrays(tmp_path / "local"), _arrays(tmp_path / "cluster")
    assert local.keys() == remote.keys()
    for name in local:
        np.testing.assert_array_equal(local[name], remote[name], err_msg=name)
