"""The crash-safe zarr store: on-disk format, commit protocol, resuming, and damaged stores."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
import zarr
from zarr.codecs import BytesCodec, Crc32cCodec, ZstdCodec

from filterscope import open_log
from filterscope.errors import InvalidDataError, LogExistsError, LogFormatError
from filterscope.log import _zarrio
from filterscope.log.schema import COMMIT_ATTR, FORMAT_ATTR
from filterscope.log.store import LogStore


def _new_store(path: Path, **kwargs) -> LogStore:
    store = LogStore.open(path, **kwargs)
    store.create_static("layer", np.arange(3), ["layer"])
    store.create_static("layer_name", np.array(["conv1", "layer1.0.conv1", "fc"]), ["layer"])
    store.create_appendable("snapshot", ["snapshot"], "int64")
    store.create_appendable("stat", ["snapshot", "layer"], "float32", (3,))
    store.create_appendable("flag", ["snapshot", "layer"], "bool", (3,))
    store.create_appendable("step", ["step"], "int64")
    store.publish()
    return store


def _append(store: LogStore, start: int, n: int) -> None:
    for i in range(start, start + n):
        store.append("snapshot", [i])
        store.append("stat", np.full((1, 3), i, dtype=np.float32) + np.arange(3))
        store.append("flag", np.array([[i % 2 == 0, True, False]]))


@pytest.mark.parametrize(
    ("dtype", "fill", "inner"),
    [
        ("bool", False, (3,)),
        ("int32", -1, (5,)),
        ("int64", 0, ()),
        ("float16", np.nan, (2, 3)),
        ("float32", np.nan, (7,)),
        ("float64", np.nan, ()),
    ],
)
def test_metadata_and_chunks_are_what_zarr_writes(tmp_path, dtype, fill, inner) -> None:
    chunks = (4, *inner)
    mine = _zarrio.array_meta(
        (10, *inner), chunks, np.dtype(dtype), fill, ["snapshot", "a", "b"][: 1 + len(inner)]
    )
    theirs_array = zarr.create_array(
        zarr.storage.LocalStore(tmp_path / "z"),
        shape=(10, *inner),
        chunks=chunks,
        dtype=dtype,
        fill_value=fill,
        serializer=BytesCodec(endian="little"),
        compressors=[ZstdCodec(level=1), Crc32cCodec()],
        dimension_names=["snapshot", "a", "b"][: 1 + len(inner)],
    )
    assert mine == json.loads((tmp_path / "z" / "zarr.json").read_bytes())
    # Our encoder's chunk files decode with zarr to the same values.
    rng = np.random.default_rng(0)
    values = (rng.random((10, *inner)) * 10).astype(dtype)
    store = LogStore.open(tmp_path / "log")
    store.create_appendable("x", ["snapshot", "a", "b"][: 1 + len(inner)], dtype, inner, fill=fill)
    store.append("x", values[:6])
    store.append("x", values[6:])
    store.close()
    np.testing.assert_array_equal(zarr.open_array(str(tmp_path / "log" / "x"), mode="r")[:], values)
    theirs_array[:] = values
    np.testing.assert_array_equal(theirs_array[:], values)


def test_string_coordinates_read_back_with_zarr(tmp_path) -> None:
    store = LogStore.open(tmp_path / "log")
    names = np.array(["conv1", "layer2.1.conv1", "fc-ü"])
    store.create_static("layer_name", names, ["layer"])
    store.publish()
    store.close()
    assert list(zarr.open_array(str(tmp_path / "log" / "layer_name"), mode="r")[:]) == list(names)


def test_appends_across_chunks_then_close_gives_exact_shapes(tmp_path) -> None:
    store = _new_store(tmp_path / "log")
    for start in range(0, 70, 7):  # snapshot chunks hold 64 entries
        _append(store, start, 7)
        store.commit()
    store.append("step", np.arange(5000))  # crosses the 4096-entry step chunk
    store.commit()
    live = open_log(tmp_path / "log")
    assert live.sizes["snapshot"] == 70 and live.sizes["step"] == 5000
    store.close()
    for ds in (open_log(tmp_path / "log"), xr.open_zarr(tmp_path / "log", consolidated=False)):
        np.testing.assert_array_equal(ds.snapshot, np.arange(70))
        np.testing.assert_array_equal(ds.stat[:, 2], np.arange(70) + 2.0)
        np.testing.assert_array_equal(ds.flag[:, 0], np.arange(70) % 2 == 0)
        np.testing.assert_array_equal(ds.step, np.arange(5000))
        assert list(ds.layer_name.values) == ["conv1", "layer1.0.conv1", "fc"]
        assert ds.stat.chunks[0][0] == 64


@pytest.mark.parametrize("sizes", [[64, 64, 1], [0, 63, 1, 0, 130], [4096, 0, 4095, 2, 8190]])
def test_appends_of_any_length_land_in_order(tmp_path, sizes) -> None:
    # Runs that end exactly on a chunk boundary, span several chunks or are empty.
    store = _new_store(tmp_path / "log")
    total = 0
    for n in sizes:
        store.append("step", np.arange(total, total + n))
        total += n
        store.commit()
    store.close()
    np.testing.assert_array_equal(open_log(tmp_path / "log").step, np.arange(total))


def test_uncommitted_rows_are_invisible_then_dropped_on_resume(tmp_path) -> None:
    path = tmp_path / "log"
    store = _new_store(path)
    _append(store, 0, 3)
    store.commit()
    _append(store, 100, 2)  # written but never committed: as if killed here
    store._unlock()
    log = open_log(path)
    assert log.attrs[COMMIT_ATTR] == {"snapshot": 3, "step": 0}
    np.testing.assert_array_equal(log.stat[:, 0].values, [0, 1, 2])
    assert json.loads((path / "stat" / "zarr.json").read_bytes())["shape"][0] == 64

    resumed = LogStore.open(path, mode="a")
    assert resumed.arrays["stat"].n == 3
    _append(resumed, 3, 2)
    resumed.commit()
    resumed.close()
    np.testing.assert_array_equal(open_log(path).stat[:, 0].values, [0, 1, 2, 3, 4])


def test_an_open_dataset_keeps_its_commit_while_the_writer_goes_on(tmp_path) -> None:
    store = _new_store(tmp_path / "log")
    _append(store, 0, 2)
    store.commit()
    before = open_log(tmp_path / "log")
    _append(store, 2, 3)
    store.commit()
    assert before.sizes["snapshot"] == 2
    np.testing.assert_array_equal(before.stat[:, 1].values, [1, 2])  # computed after the commit
    assert open_log(tmp_path / "log").sizes["snapshot"] == 5
    store.close()


def test_a_log_being_created_does_not_exist_until_published(tmp_path) -> None:
    store = LogStore.open(tmp_path / "log")
    store.create_appendable("snapshot", ["snapshot"], "int64")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        open_log(tmp_path / "log")
    store.publish()
    assert open_log(tmp_path / "log").sizes["snapshot"] == 0
    store.close()


def test_durable_mode_commits_the_same_data(tmp_path) -> None:
    store = _new_store(tmp_path / "log", durable=True)
    _append(store, 0, 3)
    store.commit()
    store.close()
    np.testing.assert_array_equal(open_log(tmp_path / "log").snapshot, [0, 1, 2])


def test_append_group_stores_entries_along_a_new_dimension(tmp_path) -> None:
    store = _new_store(tmp_path / "log")
    rng = np.random.default_rng(0)
    entries = []
    for step in (0, 50, 100):
        entry = xr.Dataset(
            {
                "k": ("filter", rng.integers(1, 5, 6)),
                "ch": (("filter", "k_candidate"), rng.random((6, 4))),
                "anomaly": ("filter", rng.random(6) > 0.5),
            },
            coords={
                "filter": np.arange(6),
                "k_candidate": [1, 2, 3, 4],
                "filter_layer": ("filter", list("aabbcc")),
            },
        )
        entries.append(entry)
        store.append_group("analysis", entry, "analysis_snapshot", coords={"analysis_step": step})
    store.close()
    got = open_log(tmp_path / "log", group="analysis")
    assert got.ch.dims == ("analysis_snapshot", "filter", "k_candidate")
    np.testing.assert_array_equal(got.analysis_step, [0, 50, 100])
    np.testing.assert_array_equal(got.analysis_snapshot, [0, 1, 2])
    assert list(got.filter_layer.values) == list("aabbcc")
    for i, entry in enumerate(entries):
        xr.testing.assert_equal(
            got.isel(analysis_snapshot=i)[["k", "ch", "anomaly"]]
            .drop_vars(["analysis_step", "analysis_snapshot"])
            .compute(),
            entry,
        )
    assert open_log(tmp_path / "log").attrs["filterscope_groups"] == ["analysis"]


def test_append_group_rejects_changing_or_unsupported_entries(tmp_path) -> None:
    store = _new_store(tmp_path / "log")
    first = xr.Dataset({"score": ("filter", np.zeros(4))})
    store.append_group("analysis", first, "analysis_snapshot")
    with pytest.raises(InvalidDataError, match="shape"):
        store.append_group(
            "analysis", xr.Dataset({"score": ("filter", np.zeros(5))}), "analysis_snapshot"
        )
    with pytest.raises(InvalidDataError, match="variables"):
        store.append_group("analysis", first.assign(extra=first.score), "analysis_snapshot")
    with pytest.raises(InvalidDataError, match="dtype"):
        store.append_group(
            "other", xr.Dataset({"name": ("filter", np.array(["a"]))}), "analysis_snapshot"
        )
    store.close()
    assert open_log(tmp_path / "log", group="analysis").sizes["analysis_snapshot"] == 1
    with pytest.raises(ValueError, match="no group 'nothing'"):
        open_log(tmp_path / "log", group="nothing")


def test_existing_path_needs_a_mode(tmp_path) -> None:
    _new_store(tmp_path / "log").close()
    with pytest.raises(LogExistsError, match=r"mode='w'.*mode='a'"):
        LogStore.open(tmp_path / "log")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("keep me")
    with pytest.raises(LogExistsError, match="not a filterscope log"):
        LogStore.open(tmp_path / "other")
    with pytest.raises(LogFormatError, match="not a zarr store"):
        LogStore.open(tmp_path / "other", mode="w")
    assert (tmp_path / "other" / "notes.txt").read_text() == "keep me"
    (tmp_path / "empty").mkdir()
    LogStore.open(tmp_path / "empty").close()  # an empty directory is no log to protect
    assert open_log(tmp_path / "empty").attrs[FORMAT_ATTR] == 1


def test_mode_w_replaces_a_log(tmp_path) -> None:
    store = _new_store(tmp_path / "log")
    _append(store, 0, 4)
    store.close()
    fresh = LogStore.open(tmp_path / "log", mode="w")
    fresh.create_appendable("snapshot", ["snapshot"], "int64")
    fresh.publish()
    fresh.close()
    log = open_log(tmp_path / "log")
    assert "stat" not in log and log.sizes["snapshot"] == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["log"]


def test_one_writer_at_a_time(tmp_path) -> None:
    # Held by this process; a holder in another process: tests/test_log_store_integrity.py.
    store = _new_store(tmp_path / "log")
    with pytest.raises(LogExistsError, match="still open for writing in this process"):
        LogStore.open(tmp_path / "log", mode="a")
    with pytest.raises(LogExistsError, match="still open for writing in this process"):
        LogStore.open(tmp_path / "log", mode="w").publish()
    assert [p.name for p in tmp_path.iterdir()] == ["log"]  # the replacement was removed
    store.close()
    LogStore.open(tmp_path / "log", mode="a").close()


def _committed_log(tmp_path: Path) -> Path:
    store = _new_store(tmp_path / "log")
    _append(store, 0, 3)
    store.close()
    return tmp_path / "log"


def test_foreign_and_damaged_stores_raise_log_format_error(tmp_path) -> None:
    with pytest.raises(FileNotFoundError):
        open_log(tmp_path / "missing")
    (tmp_path / "file").write_text("x")
    with pytest.raises(LogFormatError, match="is a file"):
        open_log(tmp_path / "file")

    zarr.create_array(str(tmp_path / "array"), shape=(3,), dtype="f4", zarr_format=3)
    with pytest.raises(LogFormatError, match=r"zarr array .*another program"):
        open_log(tmp_path / "array")
    group = zarr.create_group(str(tmp_path / "v3"), zarr_format=3, attributes={"title": "x"})
    group.create_array("temperature", shape=(3,), dtype="f4")
    with pytest.raises(LogFormatError, match="another program"):
        open_log(tmp_path / "v3")
    zarr.create_group(str(tmp_path / "v2"), zarr_format=2)
    with pytest.raises(LogFormatError, match="version 2"):
        open_log(tmp_path / "v2")

    log = _committed_log(tmp_path)
    meta_path = log / "zarr.json"
    meta = json.loads(meta_path.read_bytes())

    meta_path.write_text(json.dumps(meta)[:40])
    with pytest.raises(LogFormatError, match="not valid JSON") as info:
        open_log(log)
    assert str(meta_path) in str(info.value)

    del meta["attributes"][COMMIT_ATTR]
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(LogFormatError, match="commit record"):
        open_log(log)
    with pytest.raises(LogFormatError, match="commit record"):
        LogStore.open(log, mode="a")

    meta["attributes"][COMMIT_ATTR] = {"snapshot": 3}
    meta["attributes"][FORMAT_ATTR] = 2
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(LogFormatError, match=r"newer filterscope.*upgrade"):
        open_log(log)


def test_truncated_chunk_file_names_the_file(tmp_path) -> None:
    log = _committed_log(tmp_path)
    chunk = log / "stat" / "c" / "0" / "0"
    data = chunk.read_bytes()
    chunk.write_bytes(data[: len(data) // 2])
    ds = open_log(log)  # lazy: the damage shows when the data is read
    assert ds.snapshot.values.tolist() == [0, 1, 2]
    with pytest.raises(LogFormatError, match="damaged") as info:
        ds.stat.load()
    assert str(chunk) in str(info.value)
    with pytest.raises(LogFormatError, match="damaged"):
        LogStore.open(log, mode="a")


def test_garbled_array_metadata_is_a_log_format_error(tmp_path) -> None:
    log = _committed_log(tmp_path)
    (log / "stat" / "zarr.json").write_text("{not json")
    with pytest.raises(LogFormatError, match="stat"):
        open_log(log)


def test_leftover_temporary_files_are_ignored_and_cleaned(tmp_path) -> None:
    log = _committed_log(tmp_path)
    (log / ".zarr.json.123-abcd.partial").write_text("half a commit")
    (log / "stat" / "c" / "0" / ".0.123-abcd.partial").write_bytes(b"half a chunk")
    np.testing.assert_array_equal(open_log(log).stat[:, 0].values, [0, 1, 2])
    LogStore.open(log, mode="a").close()
    assert not list(log.rglob("*.partial"))
    shutil.rmtree(log)
