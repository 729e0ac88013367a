"""What a log's creation leaves beside it when the writer dies or forgets it."""

from __future__ import annotations

import fcntl
import gc
import os
import subprocess
import sys
import textwrap
from pathlib import Path

from filterscope.log.store import LogStore


def _siblings(path: Path) -> list[str]:
    return sorted(p.name for p in path.parent.iterdir() if p.name.startswith(f".{path.name}."))


def test_a_store_collected_before_publish_leaves_no_staging_directory(tmp_path: Path) -> None:
    final = tmp_path / "log"
    store = LogStore.open(final)
    staging = store.root
    assert staging.is_dir() and staging != final
    del store
    gc.collect()
    assert not staging.exists()
    assert _siblings(final) == []
    assert not final.exists()


def test_a_published_store_collected_keeps_its_log(tmp_path: Path) -> None:
    final = tmp_path / "log"
    store = LogStore.open(final)
    store.publish()
    del store
    gc.collect()
    assert (final / "zarr.json").is_file()
    assert _siblings(final) == []


def test_staging_of_a_killed_writer_is_swept_at_the_next_creation(tmp_path: Path) -> None:
    final = tmp_path / "log"
    # A process that dies (os._exit skips finalizers) after creating its staging directory.
    code = textwrap.dedent(
        f"""
        import os
        from filterscope.log.store import LogStore
        store = LogStore.open({str(final)!r})
        print(store.root, flush=True)
        os._exit(0)
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    left = Path(out.strip())
    assert left.is_dir() and left.name.endswith(".creating")
    store = LogStore.open(final)
    try:
        assert not left.exists()
        assert _siblings(final) == [store.root.name]
    finally:
        store.abandon()
    assert _siblings(final) == []


def test_a_live_writers_staging_directory_is_not_swept(tmp_path: Path) -> None:
    final = tmp_path / "log"
    other = tmp_path / ".log.0000.creating"
    other.mkdir()
    fd = os.open(other, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # as a live writer in another process
        store = LogStore.open(final)
        store.abandon()
        assert other.is_dir()
    finally:
        os.close(fd)


def test_trash_of_a_cut_short_replacement_is_kept_while_the_log_is_missing(
    tmp_path: Path,
) -> None:
    final = tmp_path / "log"
    trash = tmp_path / ".log.0000.deleting"
    trash.mkdir()
    (trash / "zarr.json").write_text("{}")
    store = LogStore.open(final)  # the old log (now trash) is the only copy: keep it
    store.abandon()
    assert (trash / "zarr.json").is_file()
    store = LogStore.open(final)
    store.publish()
    store.close()
    store = LogStore.open(final, mode="w")  # the log exists again: the trash is stale
    store.abandon()
    assert not trash.exists()
    assert (final / "zarr.json").is_file()
