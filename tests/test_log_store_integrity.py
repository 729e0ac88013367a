"""Nothing silently wrong: a log's writer and reader under misuse and damage.

A second writer in this process, a log replaced under an open Dataset, read-only directories,
deleted chunk files and damaged group metadata each give a clear, typed error instead of a
confusing one or wrong values.
"""

from __future__ import annotations

import gc
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from filterscope import LogAccessError, open_log
from filterscope.errors import LogExistsError, LogFormatError
from filterscope.log.schema import GENERATION_ATTR
from filterscope.log.store import LogStore

OWNER = "a Recorder created at 12:01:02 (train.py:40)"


def _write_log(path: Path, n: int = 3, offset: float = 0.0, **kwargs) -> Path:
    """A closed log with ``n`` snapshots: stat[i] = offset + i + [0, 1, 2], an eval set "val"."""
    store = LogStore.open(path, **kwargs)
    store.set_attrs(eval_sets=["val"], coordinates="layer_name")
    store.create_static("layer", np.arange(3), ["layer"])
    store.create_static("layer_name", np.array(["conv1", "layer1.0.conv1", "fc"]), ["layer"])
    store.create_appendable("snapshot", ["snapshot"], "int64")
    store.create_appendable("stat", ["snapshot", "layer"], "float32", (3,))
    store.create_group("eval/val", {"coordinates": "label"})
    store.create_static("eval/val/sample", np.arange(4), ["sample"])
    store.create_static("eval/val/label", np.array([0, 1, 0, 1]), ["sample"])
    store.create_appendable("eval/val/correct", ["snapshot", "sample"], "bool", (4,))
    store.create_group("state")
    store.create_slots("state/weights", 2, 5, ["state_slot", "state_param"])
    store.publish()
    _append(store, 0, n, offset)
    store.close()
    return path


def _append(store: LogStore, start: int, n: int, offset: float = 0.0) -> None:
    for i in range(start, start + n):
        store.append("snapshot", [i])
        store.append("stat", np.float32(offset + i) + np.arange(3, dtype=np.float32)[None])
        store.append("eval/val/correct", np.array([[i % 2 == 0, True, False, True]]))
        store.commit()


# --------------------------------------------------------------- 1. the holder in this process


def test_a_second_open_in_this_process_names_the_holder(tmp_path) -> None:
    path = tmp_path / "log"
    store = LogStore.open(path, owner=OWNER)
    store.publish()
    for mode in ("a", "w"):
        with pytest.raises(LogExistsError) as info:
            LogStore.open(path, mode=mode)
        assert str(info.value) == (
            f"{path} is still open for writing in this process by {OWNER}; call its close() "
            "(or use it in a `with` block) before opening it again."
        )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["log"]  # mode="w" left nothing
    store.close()
    LogStore.open(path, mode="a").close()  # released by close()


def test_the_default_owner_and_the_with_block(tmp_path) -> None:
    path = tmp_path / "log"
    with LogStore.open(path) as store:
        store.create_appendable("snapshot", ["snapshot"], "int64")
        store.publish()
        with pytest.raises(LogExistsError, match="in this process by a LogStore;"):
            LogStore.open(path, mode="a")
    with LogStore.open(path, mode="a") as store:  # the block closed (and released) it
        store.append("snapshot", [0])
    assert open_log(path).sizes["snapshot"] == 1
    with pytest.raises(RuntimeError, match="boom"), LogStore.open(path, mode="a") as store:
        store.append("snapshot", [1])
        raise RuntimeError("boom")
    assert open_log(path).sizes["snapshot"] == 1  # an exception commits nothing more
    LogStore.open(path, mode="a").close()


def test_a_store_replacing_a_log_holds_it_under_its_own_name(tmp_path) -> None:
    path = _write_log(tmp_path / "log")
    replacing = LogStore.open(path, mode="w", owner=OWNER)  # held from open to close
    held = f"in this process by {re.escape(OWNER)}"
    with pytest.raises(LogExistsError, match=held):
        LogStore.open(path, mode="a")
    replacing.create_appendable("snapshot", ["snapshot"], "int64")
    replacing.publish()
    with pytest.raises(LogExistsError, match=held):
        LogStore.open(path, mode="a")
    replacing.close()
    LogStore.open(path, mode="a").close()


def test_a_store_collected_without_close_releases_the_log(tmp_path) -> None:
    path = _write_log(tmp_path / "log")
    store = LogStore.open(path, mode="a")
    with pytest.raises(LogExistsError, match="in this process"):
        LogStore.open(path, mode="a")
    del store
    gc.collect()
    LogStore.open(path, mode="a").close()
    cyclic = LogStore.open(path, mode="a")
    cyclic.myself = cyclic  # unreachable after del, but only a garbage collection frees it
    del cyclic
    LogStore.open(path, mode="a").close()


_HOLD = """
import sys
from filterscope.log.store import LogStore
store = LogStore.open(sys.argv[1], mode="a")
print("held", flush=True)
sys.stdin.read()
store.close()
"""


@pytest.mark.skipif(sys.platform == "win32", reason="advisory locks are POSIX only")
def test_a_writer_in_another_process_is_named_as_such(tmp_path) -> None:
    path = _write_log(tmp_path / "log")
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLD, str(path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        for mode in ("a", "w"):
            with pytest.raises(LogExistsError, match="open for writing by another process"):
                LogStore.open(path, mode=mode)
    finally:
        holder.communicate("", timeout=60)
    assert holder.returncode == 0
    LogStore.open(path, mode="a").close()


# ------------------------------------------------------------- 2. a log replaced under a reader


def test_a_dataset_opened_before_a_replacement_refuses_to_read_the_new_log(tmp_path) -> None:
    path = _write_log(tmp_path / "log", n=3)
    old = open_log(path)
    _write_log(path, n=5, offset=100.0, mode="w")  # another run, at the same path
    for compute in (lambda: old.stat.values, old.compute, lambda: old.correct.load()):
        with pytest.raises(LogFormatError) as info:
            compute()
        assert str(info.value) == (
            f"the log at {path} was replaced since it was opened; open it again with "
            "filterscope.open_log."
        )
    new = open_log(path)
    np.testing.assert_array_equal(new.stat[:, 0], [100, 101, 102, 103, 104])

    _write_log(path, n=2, offset=200.0, mode="w")  # replaced again: still the old view refuses
    with pytest.raises(LogFormatError, match="was replaced since it was opened"):
        old.stat.load()
    with pytest.raises(LogFormatError, match="was replaced since it was opened"):
        new.stat.load()


def test_a_deleted_log_under_a_dataset_is_named(tmp_path) -> None:
    path = _write_log(tmp_path / "log")
    ds = open_log(path)
    shutil.rmtree(path)
    with pytest.raises(LogFormatError, match="was deleted or replaced since it was opened"):
        ds.stat.load()


def test_appending_in_place_keeps_an_open_dataset_valid(tmp_path) -> None:
    path = _write_log(tmp_path / "log", n=3)
    ds = open_log(path)
    store = LogStore.open(path, mode="a")  # same directory, same generation
    _append(store, 3, 2)
    np.testing.assert_array_equal(ds.stat[:, 0], [0, 1, 2])  # read while the writer is open
    store.close()
    np.testing.assert_array_equal(ds.stat[:, 0], [0, 1, 2])
    np.testing.assert_array_equal(ds.correct[:, 0], [True, False, True])
    np.testing.assert_array_equal(open_log(path).stat[:, 0], [0, 1, 2, 3, 4])


def test_every_log_has_its_own_generation_kept_by_appends(tmp_path) -> None:
    a = open_log(_write_log(tmp_path / "a")).attrs[GENERATION_ATTR]
    b = open_log(_write_log(tmp_path / "b")).attrs[GENERATION_ATTR]
    assert isinstance(a, str) and len(a) == 32 and a != b
    store = LogStore.open(tmp_path / "a", mode="a")
    _append(store, 3, 1)
    store.close()
    assert open_log(tmp_path / "a").attrs[GENERATION_ATTR] == a
    with pytest.raises(ValueError, match="managed by the store"):
        LogStore.open(tmp_path / "c").set_attrs(**{GENERATION_ATTR: "x"})


def test_a_log_without_a_generation_still_opens_appends_and_is_watched(tmp_path) -> None:
    path = _write_log(tmp_path / "log")
    meta = json.loads((path / "zarr.json").read_bytes())
    del meta["attributes"][GENERATION_ATTR]  # as written before generations existed
    (path / "zarr.json").write_text(json.dumps(meta))
    ds = open_log(path)
    store = LogStore.open(path, mode="a")
    _append(store, 3, 1)
    store.close()
    np.testing.assert_array_equal(ds.stat[:, 0], [0, 1, 2])
    assert GENERATION_ATTR not in open_log(path).attrs  # appends do not invent one
    _write_log(path, n=3, offset=50.0, mode="w")
    with pytest.raises(LogFormatError, match="was replaced since it was opened"):
        ds.stat.load()


# ---------------------------------------------------------------- 3. directories not writable


@pytest.fixture
def read_only() -> Iterator[Callable[[Path], None]]:
    """Make a directory read-only for this process for the rest of the test.

    Root ignores permission bits, so a root test run marks the directory immutable instead
    (``chattr +i``: nothing can be created, deleted or renamed in it, not even by root); where
    the file system or the container does not allow that, the test is skipped. Either way the
    check under test meets a really unwritable directory.
    """
    undo: list[Callable[[], object]] = []

    def make(directory: Path) -> None:
        if os.geteuid() != 0:
            directory.chmod(0o555)
            undo.append(lambda: directory.chmod(0o755))
            return
        chattr = shutil.which("chattr")
        done = chattr and subprocess.run([chattr, "+i", str(directory)], capture_output=True)
        if not done or done.returncode != 0:
            pytest.skip("running as root where directories cannot be made immutable")
        assert chattr is not None
        undo.append(lambda: subprocess.run([chattr, "-i", str(directory)], check=True))

    yield make
    for step in reversed(undo):
        step()


posix_only = pytest.mark.skipif(sys.platform == "win32", reason="POSIX permissions only")


@posix_only
def test_appending_to_a_read_only_log_fails_at_open(tmp_path, read_only) -> None:
    path = _write_log(tmp_path / "log")
    read_only(path)
    with pytest.raises(LogAccessError) as info:
        LogStore.open(path, mode="a")
    assert isinstance(info.value, PermissionError)
    message = str(info.value)
    assert message.startswith(f"{path} is not writable (") and "cannot be appended to" in message
    assert "Choose a writable path, or fix the directory's permissions" in message
    with pytest.raises(LogAccessError):  # again: the failed open released its lock
        LogStore.open(path, mode="a")


@posix_only
@pytest.mark.parametrize("mode", [None, "a", "w"])
def test_creating_a_log_in_a_read_only_directory_fails_at_open(tmp_path, read_only, mode) -> None:
    parent = tmp_path / "runs"
    parent.mkdir()
    read_only(parent)
    for path in (parent / "log", parent / "deeper" / "log"):  # a missing parent cannot be made
        with pytest.raises(LogAccessError) as info:
            LogStore.open(path, mode=mode)
        assert str(info.value).startswith(f"{parent} is not writable (")
        assert f"a new log cannot be created at {path}" in str(info.value)
    assert not list(parent.iterdir())


@posix_only
def test_replacing_a_log_that_cannot_be_deleted_fails_at_open(tmp_path, read_only) -> None:
    path = _write_log(tmp_path / "log")
    read_only(path)  # its parent is writable, the log itself is not
    with pytest.raises(LogAccessError, match=f"^{re.escape(str(path))} is not writable.*replaced"):
        LogStore.open(path, mode="w")
    np.testing.assert_array_equal(open_log(path).snapshot, [0, 1, 2])  # untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["log"]
    with pytest.raises(LogAccessError):  # again: the failed open released its lock
        LogStore.open(path, mode="w")


def test_opening_a_writable_log_leaves_no_probe_file(tmp_path) -> None:
    path = _write_log(tmp_path / "log")
    before = sorted(p.name for p in path.iterdir())
    LogStore.open(path, mode="a").close()
    assert sorted(p.name for p in path.iterdir()) == before


# ------------------------------------------------------------------ 4. deleted chunk files


def test_a_deleted_chunk_file_is_an_error_not_missing_values(tmp_path) -> None:
    path = _write_log(tmp_path / "log", n=70)  # snapshot chunks hold 64: two chunks
    chunk = path / "stat" / "c" / "1" / "0"
    chunk.unlink()
    ds = open_log(path)
    np.testing.assert_array_equal(ds.stat[:64, 0], np.arange(64))  # the other chunk reads
    np.testing.assert_array_equal(ds.snapshot, np.arange(70))  # and the other variables
    with pytest.raises(LogFormatError) as info:
        ds.stat.load()
    message = str(info.value)
    assert f"chunk file {chunk} is missing: the log is damaged" in message
    assert "Restore it from a copy of the log" in message and "delete the file" not in message


def test_a_deleted_chunk_of_a_group_or_coordinate_is_an_error(tmp_path) -> None:
    path = _write_log(tmp_path / "log")
    (path / "eval" / "val" / "correct" / "c" / "0" / "0").unlink()
    with pytest.raises(LogFormatError, match=r"correct/c/0/0 is missing"):
        open_log(path).correct.load()
    (path / "layer_name" / "c" / "0").unlink()  # labels are loaded when the log is opened
    with pytest.raises(LogFormatError, match=r"layer_name/c/0 is missing"):
        open_log(path)


def test_resuming_over_a_deleted_chunk_fails(tmp_path) -> None:
    path = _write_log(tmp_path / "log")
    (path / "stat" / "c" / "0" / "0").unlink()
    with pytest.raises(LogFormatError, match=r"stat/c/0/0 is missing.*cannot be resumed"):
        LogStore.open(path, mode="a")
    LogStore.open(path, mode="w").abandon()  # the message's way out: not held any more


def test_unwritten_state_slots_are_not_damage(tmp_path) -> None:
    path = _write_log(tmp_path / "log")
    assert not (path / "state" / "weights" / "c").exists()  # no weights recorded
    store = LogStore.open(path, mode="a")
    assert np.isnan(store.read_array("state/weights", 0, 1)).all()
    store.close()


def test_a_damaged_chunk_message_no_longer_advises_deleting_it(tmp_path) -> None:
    path = _write_log(tmp_path / "log")
    chunk = path / "stat" / "c" / "0" / "0"
    chunk.write_bytes(chunk.read_bytes()[:-3])
    with pytest.raises(LogFormatError, match="checksum does not match") as info:
        open_log(path).stat.load()
    assert "delete the file" not in str(info.value)


# ------------------------------------------------------------- 5. damaged group metadata


@pytest.mark.parametrize(
    ("node", "what"),
    [
        ("eval/val", "the group 'eval/val'"),
        ("eval", "the group 'eval'"),
        ("stat", "the array 'stat'"),
    ],
)
def test_damaged_metadata_names_the_node_it_belongs_to(tmp_path, node, what) -> None:
    path = _write_log(tmp_path / "log")
    meta_path = path / node / "zarr.json"
    meta_path.write_text("{not json")
    expected = f"{meta_path} is not valid JSON: the metadata of {what} is damaged"
    with pytest.raises(LogFormatError) as info:
        open_log(path)
    assert expected in str(info.value)
    with pytest.raises(LogFormatError) as info:
        LogStore.open(path, mode="a")
    assert expected in str(info.value) and "cannot be resumed" in str(info.value)


def test_metadata_of_an_unknown_node_says_it_could_be_either(tmp_path) -> None:
    path = _write_log(tmp_path / "log")
    (path / "extra").mkdir()
    (path / "extra" / "zarr.json").write_text("{not json")
    with pytest.raises(LogFormatError, match=r"metadata of the node 'extra' \(a group or an array"):
        LogStore.open(path, mode="a")
