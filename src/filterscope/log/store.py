"""The append-only, crash-safe zarr v3 writer of a log; :mod:`~filterscope.log.reader` reads it.

Commit protocol (details in ``docs/log-format.md``):

1. Data first. Rows are appended to in-memory copies of each array's last time chunk, and every
   chunk they touch is written whole: encoded, written to a temporary file beside it and moved into
   place with ``os.replace``. A chunk file therefore always holds either its old or its new content;
   rows already committed are identical in both.
2. Then the commit record. The root ``zarr.json`` carries ``attrs["filterscope_commit"]``, the
   committed length of every appendable dimension; it is replaced atomically the same way, last.
3. Readers trust only the commit record: :func:`open_log` reads it once and presents every array
   cut to the committed length, so a log killed at any moment opens with exactly the snapshots
   completed before the kill, and a log being written can be read at the same time.

A new log is built in a hidden sibling directory and renamed into place once its empty structure
is complete, so the path either does not exist or holds a valid log. One writer at a time: an
advisory ``flock`` on the directory (which the kernel releases if the writer dies) keeps out other
processes, and a registry of the directories held here names the holder in this process. Each log
carries a random generation token, so a Dataset opened before ``mode="w"`` replaced the log
refuses to read the new one instead of mixing two runs.
"""

from __future__ import annotations

import errno
import gc
import json
import os
import secrets
import shutil
import threading
import weakref
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import zarr

from filterscope.errors import (
    InvalidDataError,
    InvalidParameterError,
    LogAccessError,
    LogExistsError,
    LogFormatError,
)
from filterscope.log._zarrio import (
    PARTIAL_SUFFIX,
    array_meta,
    atomic_write,
    chunk_keys,
    dumps,
    encode_chunk,
    fsync_path,
    group_meta,
    is_string,
    meta_dtype,
    pad,
    parse_fill,
)
from filterscope.log.reader import (
    _RESUME_ADVICE,
    _CommittedView,
    _is_filterscope_log,
    _metadata_owner,
    read_root_metadata,
)
from filterscope.log.schema import (
    COMMIT_ATTR,
    FORMAT_ATTR,
    FORMAT_VERSION,
    GENERATION_ATTR,
    GROUPS_ATTR,
    STATE_CHUNK,
    TIME_CHUNKS,
    WIDE_CHUNK,
)

if TYPE_CHECKING:
    import xarray as xr

try:  # advisory locks exist on POSIX only; elsewhere a single writer is the user's duty
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

Mode = Literal["w", "a"] | None

# A chunk rewritten at every append stays at most this many elements (8 MiB of float32).
_MAX_CHUNK_ELEMENTS = 1 << 21


def _chunk_shape(time_chunk: int, inner: Sequence[int]) -> tuple[int, ...]:
    # Full extent along the inner axes, capped at WIDE_CHUNK, then halved until a chunk stays
    # small enough to rewrite at every append.
    chunks = [max(1, min(int(s), WIDE_CHUNK)) for s in inner]
    while chunks and time_chunk * int(np.prod(chunks)) > _MAX_CHUNK_ELEMENTS:
        i = int(np.argmax(chunks))
        if chunks[i] == 1:
            break
        chunks[i] = (chunks[i] + 1) // 2
    return (time_chunk, *chunks)


# ------------------------------------------------------------------------- access and locks

# Log directories held by a LogStore of this process -> who holds them. A flock taken through a
# second descriptor conflicts within one process exactly as across processes, so only this
# registry can tell "still open here (close it)" from "another process writes it (wait)".
_HELD: dict[Path, str] = {}
# Re-entrant: a garbage collection can run a collected store's finalizer (_release) on a thread
# that already holds the guard.
_HELD_GUARD = threading.RLock()


def _release(fds: list[int], keys: set[Path], unpublished: list[Path] | None = None) -> None:
    """Close a store's lock descriptors (which releases its flocks) and forget its entries.

    ``unpublished`` holds the staging directory of a new log that was never published: a store
    collected (or a process exiting) before :meth:`LogStore.publish` leaves no log behind, so
    the directory is deleted rather than left beside the log's path.
    """
    with _HELD_GUARD:
        for fd in fds:
            os.close(fd)
        fds.clear()
        for key in keys:
            _HELD.pop(key, None)
        keys.clear()
    for staging in unpublished or ():
        shutil.rmtree(staging, ignore_errors=True)
    if unpublished:
        unpublished.clear()


#: Suffixes of the directories a log's creation or replacement makes beside it.
_STAGING_SUFFIXES = (".creating", ".deleting")


def _sweep_stale_staging(final: Path) -> list[Path]:
    """Delete what killed writers left beside ``final``: unpublished ``.creating`` staging
    directories and ``.deleting`` trash of a replacement cut short.

    A directory is stale when nobody holds its flock (the kernel drops the locks of a dead
    process) and no store of this process holds it. Trash is removed only once ``final`` exists
    again: a writer killed between moving the old log aside and moving the new one in leaves
    the old log there, intact, to be renamed back by hand. Returns the directories removed.
    """
    removed: list[Path] = []
    if fcntl is None or not final.parent.is_dir():
        return removed
    prefix = f".{final.name}."
    try:
        candidates = [
            p
            for p in final.parent.iterdir()
            if p.name.startswith(prefix) and p.name.endswith(_STAGING_SUFFIXES) and p.is_dir()
        ]
        if not final.exists():
            candidates = [p for p in candidates if p.name.endswith(".creating")]
    except OSError:
        return removed
    for path in candidates:
        with _HELD_GUARD:
            if path.resolve() in _HELD:
                continue
            try:
                fd = os.open(path, os.O_RDONLY)
            except OSError:
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:  # a live writer's staging directory
                os.close(fd)
                continue
            try:
                shutil.rmtree(path, ignore_errors=True)
            finally:
                os.close(fd)
        if not path.exists():
            removed.append(path)
    return removed


def _access_error(directory: Path, exc: OSError, consequence: str) -> LogAccessError:
    reason = exc.strerror or type(exc).__name__
    return LogAccessError(
        f"{directory} is not writable ({reason}), so {consequence}. Choose a writable path, or "
        "fix the directory's permissions (or remount it read-write)."
    )


def _is_access_error(exc: OSError) -> bool:
    return isinstance(exc, PermissionError) or exc.errno == errno.EROFS


def _require_writable(directory: Path, consequence: str) -> None:
    """Raise :class:`LogAccessError` unless a file can be created in ``directory``.

    Creating (and deleting) a file is the test that holds everywhere: ``os.access`` answers from
    permission bits, which root bypasses, and cannot know what a network file system's server
    will allow. The probe ends in the temporary-file suffix, so readers skip it and a resume
    deletes it if this process dies in between.
    """
    probe = directory / f".write-test.{os.getpid()}-{secrets.token_hex(4)}{PARTIAL_SUFFIX}"
    try:
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError as exc:
        if _is_access_error(exc):
            raise _access_error(directory, exc, consequence) from None
        raise
    os.close(fd)
    probe.unlink()


# ------------------------------------------------------------------------- appendable arrays


class _AppendArray:
    """An array that grows along its first dimension, one whole-chunk rewrite per append.

    The rows of the current (last) time chunk live in ``tail``; appending never reads the disk.
    """

    def __init__(self, store: LogStore, key: str, meta: dict[str, Any], n: int) -> None:
        self.store = store
        self.key = key
        self.meta = meta
        self.dim: str = meta["dimension_names"][0]
        self.chunks = tuple(int(c) for c in meta["chunk_grid"]["configuration"]["chunk_shape"])
        self.dtype = meta_dtype(meta)
        self.fill = parse_fill(meta["fill_value"], self.dtype)
        self.inner = tuple(int(s) for s in meta["shape"][1:])
        self.compress = any(c["name"] == "zstd" for c in meta["codecs"])
        self.n = n
        self.tail = np.full((self.chunks[0], *self.inner), self.fill, dtype=self.dtype)

    @property
    def capacity(self) -> int:
        return int(self.meta["shape"][0])

    def load_tail(self) -> None:
        start = (self.n // self.chunks[0]) * self.chunks[0]
        if self.n > start:
            self.tail[: self.n - start] = self.store.read_array(self.key, start, self.n)

    def append(self, rows: np.ndarray) -> None:
        if rows.shape[1:] != self.inner:
            raise InvalidDataError(
                f"rows for {self.key!r} have shape {rows.shape[1:]} per entry, expected "
                f"{self.inner}."
            )
        ct = self.chunks[0]
        done = 0
        # Whole runs of rows at a time: a snapshot appends ~50 steps, a resume thousands.
        while done < rows.shape[0]:
            at = self.n % ct
            take = min(ct - at, rows.shape[0] - done)
            self.tail[at : at + take] = rows[done : done + take]
            self.n += take
            done += take
            if self.n % ct == 0:
                self._write_chunk(self.n // ct - 1)
                self.tail.fill(self.fill)
        if self.n % ct and rows.shape[0]:
            self._write_chunk(self.n // ct)

    def write_exact_shape(self) -> None:
        if self.capacity != self.n:
            self.meta["shape"][0] = self.n
            self.store.write_json(f"{self.key}/zarr.json", self.meta)

    def _write_chunk(self, index: int) -> None:
        ct = self.chunks[0]
        if self.capacity < (index + 1) * ct:
            # Capacity grows a whole chunk at a time; readers cut at the committed length.
            self.meta["shape"][0] = (index + 1) * ct
            self.store.write_json(f"{self.key}/zarr.json", self.meta)
        origin = (index,) + (0,) * len(self.inner)
        self.store.write_chunks(self.key, self.tail, self.chunks, origin, self.fill, self.compress)


# ---------------------------------------------------------------------------------- LogStore


class LogStore:
    """Writer of a filterscope log directory (zarr v3), crash-safe and append-only.

    Use :meth:`open` to create or reopen one; :class:`filterscope.Recorder` does this for you.
    Readers use :func:`open_log`.

    Parameters
    ----------
    root : pathlib.Path
        Where the log is (or, before :meth:`publish`, where it is being built).
    path : pathlib.Path
        The log's final location.
    durable : bool
        Also ``fsync`` every file and directory before each commit.
    owner : str, default="a LogStore"
        Who holds the store, named to anyone in this process who opens the log meanwhile.

    Attributes
    ----------
    path : pathlib.Path
        The log's location.
    owner : str
        Who holds the store.
    is_new : bool
        True while a new log is being built (define its arrays, then :meth:`publish`).
    committed : dict of str to int
        Committed length of every appendable dimension.
    attrs : dict
        Root attributes (without the commit record).

    Examples
    --------
    >>> import tempfile, numpy as np, xarray as xr
    >>> path = tempfile.mkdtemp() + "/log"
    >>> store = LogStore.open(path)
    >>> store.publish()
    >>> item = xr.Dataset({"score": ("filter", np.arange(3.0))})
    >>> store.append_group("analysis", item, "analysis_snapshot", coords={"analysis_step": 10})
    >>> store.close()
    >>> from filterscope import open_log
    >>> open_log(path, group="analysis").score.shape
    (1, 3)
    """

    def __init__(self, root: Path, path: Path, *, durable: bool, owner: str = "a LogStore") -> None:
        self.root = root
        self.path = path
        self.durable = durable
        self.owner = owner
        self.is_new = root != path
        self.committed: dict[str, int] = {}
        self.attrs: dict[str, Any] = {}
        self.arrays: dict[str, _AppendArray] = {}
        self._metas: dict[str, dict[str, Any]] = {}
        self._lock_fds: list[int] = []
        self._held: set[Path] = set()
        # A store collected without close() releases its locks, as the kernel does for a dead
        # process; otherwise nothing in this process could ever write the log again.
        self._unpublished: list[Path] = [root] if root != path else []
        weakref.finalize(self, _release, self._lock_fds, self._held, self._unpublished)
        self._pending: list[tuple[str, bytes]] = []
        self._replace: Path | None = None
        self._closed = False

    # ------------------------------------------------------------------ opening

    @classmethod
    def open(
        cls,
        path: str | os.PathLike[str],
        mode: Mode = None,
        *,
        durable: bool = False,
        owner: str | None = None,
    ) -> LogStore:
        """Start a new log at ``path`` or reopen an existing one for appending.

        Parameters
        ----------
        path : path-like
            Log directory.
        mode : {None, "w", "a"}, default=None
            None: create, refuse an existing non-empty path. ``"w"``: create, replacing an
            existing filterscope log (never anything else). ``"a"``: append to an existing log,
            or create one if nothing is there.
        durable : bool, default=False
            ``fsync`` data and commit record at every commit (survives power loss, not only a
            killed process; slower).
        owner : str, optional
            Who holds the store, e.g. ``"a Recorder created at 12:01:02 (train.py:40)"``: an
            attempt in this process to open the log while this store is open names it. Default
            ``"a LogStore"``.

        Returns
        -------
        LogStore
            When ``is_new``, define arrays, then call :meth:`publish`.

        Raises
        ------
        LogExistsError
            Existing path with ``mode=None``, or a log that is open for writing (by another
            process, or by a store of this process that was not closed: the message names it).
        LogFormatError
            ``mode="w"`` or ``"a"`` on something that is not an intact filterscope log.
        LogAccessError
            The log's directory (``"a"``, ``"w"``) or the one that would hold a new log is not
            writable. Checked here, before anything is written.
        """
        if mode not in (None, "w", "a"):
            raise InvalidParameterError(f"mode must be None, 'w' or 'a', got {mode!r}.")
        owner = "a LogStore" if owner is None else str(owner)
        final = Path(path).absolute()
        exists = final.exists() and (not final.is_dir() or any(final.iterdir()))
        if exists and mode is None:
            if _is_filterscope_log(final):
                hint = "pass mode='w' to overwrite it or mode='a' to append to it"
            else:
                hint = "it is not a filterscope log, so choose another path"
            raise LogExistsError(f"{final} already exists; {hint}.")
        if exists and mode == "a":
            read_root_metadata(final)
            store = cls(final, final, durable=durable, owner=owner)
            store._lock(final)
            try:
                _require_writable(final, "the log cannot be appended to")
                store._reopen()
            except BaseException:
                store._unlock()
                raise
            return store
        _sweep_stale_staging(final)
        staging = final.with_name(f".{final.name}.{secrets.token_hex(4)}.creating")
        store = cls(staging, final, durable=durable, owner=owner)
        try:
            if exists:  # mode == "w": only ever replace a log, never other data
                read_root_metadata(final)
                # Held from here to publish(): nobody starts writing a log about to be replaced,
                # and a writer already there is refused before any work.
                store._lock(final)
                _require_writable(final, "the log there cannot be replaced (deleted)")
            try:
                final.parent.mkdir(parents=True, exist_ok=True)
                staging.mkdir()
            except OSError as exc:
                if _is_access_error(exc):
                    # The directory refused is the parent of the one mkdir tried to make.
                    where = Path(exc.filename).parent if exc.filename else final.parent
                    consequence = f"a new log cannot be created at {final}"
                    raise _access_error(where, exc, consequence) from None
                raise
            store._lock(staging)
        except BaseException:
            store._unlock()
            raise
        store._replace = final if exists else None
        store.attrs = {
            FORMAT_ATTR: FORMAT_VERSION,
            GENERATION_ATTR: secrets.token_hex(16),
            GROUPS_ATTR: [],
        }
        return store

    def publish(self) -> None:
        """Commit the (empty) new log and move it into place; no-op for a reopened log."""
        if not self.is_new:
            return
        staging_key = self.root.resolve()
        self.commit()
        if self.durable:
            for directory, _, _ in os.walk(self.root, topdown=False):
                fsync_path(Path(directory))
        old = self._replace
        if old is not None:  # locked since open()
            trash = old.with_name(f".{old.name}.{secrets.token_hex(4)}.deleting")
            os.rename(old, trash)
            os.rename(self.root, old)
            shutil.rmtree(trash, ignore_errors=True)
        else:
            try:
                os.rename(self.root, self.path)  # also replaces an empty directory, atomically
            except OSError:
                shutil.rmtree(self.root, ignore_errors=True)
                self._unlock()
                raise LogExistsError(
                    f"{self.path} appeared while the log was being created; pass mode='w' to "
                    "overwrite it or mode='a' to append to it."
                ) from None
        if self.durable:
            fsync_path(self.path.parent)
        # The staging directory's lock moved with it; so does its entry in the registry.
        with _HELD_GUARD:
            _HELD.pop(staging_key, None)
            self._held.discard(staging_key)
            final_key = self.path.resolve()
            _HELD[final_key] = self.owner
            self._held.add(final_key)
        self.root = self.path
        self.is_new = False
        self._unpublished.clear()

    def _reopen(self) -> None:
        meta, _ = read_root_metadata(self.root)
        attrs = dict(meta["attributes"])
        self.committed = dict(attrs.pop(COMMIT_ATTR))
        self.attrs = attrs
        for dirpath, _, files in os.walk(self.root):
            for name in files:
                if name.endswith(PARTIAL_SUFFIX):  # left by a killed writer
                    Path(dirpath, name).unlink(missing_ok=True)
            if "zarr.json" not in files:
                continue
            key = Path(dirpath).relative_to(self.root).as_posix()
            try:
                node = json.loads(Path(dirpath, "zarr.json").read_bytes())
            except ValueError:
                owner = _metadata_owner(self.root, f"{key}/zarr.json", self.attrs)
                raise LogFormatError(
                    f"{Path(dirpath, 'zarr.json')} is not valid JSON: the metadata of {owner} is "
                    "damaged, so the log cannot be resumed. Restore the file from a copy of the "
                    "log, or start a new log with mode='w' or another path."
                ) from None
            if node.get("node_type") != "array":
                continue
            self._metas[key] = node
            dims = node.get("dimension_names") or [None]
            if dims[0] not in TIME_CHUNKS:
                continue
            arr = _AppendArray(self, key, node, self.committed.get(dims[0], 0))
            if arr.capacity < arr.n:
                raise LogFormatError(
                    f"{self.root / key} holds {arr.capacity} entries but the commit record says "
                    f"{arr.n}; the log is damaged. Start a new log with mode='w' or another path."
                )
            arr.load_tail()
            self._drop_uncommitted_chunks(arr)
            self.arrays[key] = arr

    def _drop_uncommitted_chunks(self, arr: _AppendArray) -> None:
        # Chunks past the committed tail hold rows of snapshots that never committed.
        last = (arr.n - 1) // arr.chunks[0] if arr.n else -1
        chunk_dir = self.root / arr.key / "c"
        if chunk_dir.is_dir():
            for entry in chunk_dir.iterdir():
                if entry.name.isdigit() and int(entry.name) > last:
                    if entry.is_dir():
                        shutil.rmtree(entry)
                    else:
                        entry.unlink()

    # ------------------------------------------------------------------ locking

    def _lock(self, path: Path) -> None:
        key = path.resolve()
        with _HELD_GUARD:
            holder = _HELD.get(key)
        if holder is not None:
            # A holder nobody can reach any more (a Recorder deleted while in a reference
            # cycle) releases its lock when collected: collect before blaming it.
            gc.collect()
        # Under the guard: two threads of this process cannot both pass the registry check.
        with _HELD_GUARD:
            holder = _HELD.get(key)
            if holder is not None:
                raise LogExistsError(
                    f"{path} is still open for writing in this process by {holder}; call its "
                    "close() (or use it in a `with` block) before opening it again."
                )
            if fcntl is not None:
                fd = os.open(path, os.O_RDONLY)
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    os.close(fd)
                    raise LogExistsError(
                        f"{path} is open for writing by another process (a Recorder or "
                        "LogStore); wait for it to finish or choose another path."
                    ) from None
                self._lock_fds.append(fd)
            _HELD[key] = self.owner
            self._held.add(key)

    def _unlock(self) -> None:
        _release(self._lock_fds, self._held)

    # ------------------------------------------------------------------ defining arrays

    def set_attrs(self, **attrs: Any) -> None:
        """Set root attributes (written with the next commit)."""
        for key in attrs:
            if key in (FORMAT_ATTR, COMMIT_ATTR, GENERATION_ATTR, GROUPS_ATTR):
                raise ValueError(f"root attribute {key!r} is managed by the store.")
        self.attrs.update(attrs)

    def create_group(self, name: str, attrs: Mapping[str, Any] | None = None) -> None:
        """Create a group (and any missing parent groups) with attributes."""
        parts = name.split("/")
        for i in range(1, len(parts)):
            parent = "/".join(parts[:i])
            if not (self.root / parent / "zarr.json").exists():
                self.write_json(f"{parent}/zarr.json", group_meta())
        self.write_json(f"{name}/zarr.json", group_meta(attrs))

    def create_static(
        self,
        key: str,
        values: Any,
        dims: Sequence[str],
        attrs: Mapping[str, Any] | None = None,
        chunks: Sequence[int] | None = None,
    ) -> None:
        """Write an array that never changes (a coordinate such as ``layer_name``).

        ``chunks`` overrides the default chunk shape (every axis up to 8192).
        """
        values = np.asarray(values)
        if is_string(values.dtype):
            values = values.astype(str).astype(object)
            fill: Any = ""
        else:
            fill = np.nan if values.dtype.kind == "f" else 0
        if chunks is None:
            chunks = tuple(max(1, min(int(s), WIDE_CHUNK)) for s in values.shape)
        chunks = tuple(int(c) for c in chunks)
        meta = array_meta(values.shape, chunks, values.dtype, fill, dims, attrs=attrs)
        self.write_json(f"{key}/zarr.json", meta)
        self._metas[key] = meta
        if values.size:
            self.write_chunks(key, values, chunks, (0,) * values.ndim, fill, True)

    def create_appendable(
        self,
        key: str,
        dims: Sequence[str],
        dtype: Any,
        inner_shape: Sequence[int] = (),
        *,
        fill: Any = None,
        compress: bool = True,
        attrs: Mapping[str, Any] | None = None,
    ) -> None:
        """Define an array that grows along ``dims[0]`` (``step``, ``snapshot``, ...)."""
        dtype = np.dtype(dtype)
        if dtype.kind not in "biuf":
            raise InvalidDataError(
                f"{key!r} has dtype {dtype}; appendable log arrays hold numbers or booleans."
            )
        if dims[0] not in TIME_CHUNKS:
            raise ValueError(f"{dims[0]!r} is not an appendable dimension {sorted(TIME_CHUNKS)}.")
        inner = tuple(int(s) for s in inner_shape)
        if fill is None:
            fill = np.nan if dtype.kind == "f" else 0
        chunks = _chunk_shape(TIME_CHUNKS[dims[0]], inner)
        meta = array_meta((0, *inner), chunks, dtype, fill, dims, compress=compress, attrs=attrs)
        self.write_json(f"{key}/zarr.json", meta)
        self._metas[key] = meta
        self.arrays[key] = _AppendArray(self, key, meta, self.committed.get(dims[0], 0))

    def create_slots(self, key: str, n_slots: int, size: int, dims: Sequence[str]) -> None:
        """Define a fixed ``(n_slots, size)`` float32 array whose rows are rewritten whole."""
        chunks = (1, max(1, min(size, STATE_CHUNK)))
        meta = array_meta(
            (n_slots, size), chunks, np.dtype("float32"), np.nan, dims, compress=False
        )
        self.write_json(f"{key}/zarr.json", meta)
        self._metas[key] = meta

    # ------------------------------------------------------------------ writing

    def append(self, key: str, rows: Any) -> None:
        """Append rows (``rows[i]`` is one entry along the appendable dimension) to an array."""
        self.arrays[key].append(np.asarray(rows))

    def write_slot(self, key: str, index: int, values: np.ndarray) -> None:
        """Rewrite row ``index`` of an array made by :meth:`create_slots`."""
        meta = self._metas[key]
        chunks = tuple(meta["chunk_grid"]["configuration"]["chunk_shape"])
        block = np.asarray(values, dtype=np.float32)[None]
        self.write_chunks(key, block, chunks, (index, 0), np.float32(np.nan), False)

    def commit(self, *, deferred: bool = False) -> PendingWrites | None:
        """Record every appended row as committed.

        Appends only prepare files in memory (encoded chunks and metadata); the commit writes
        them, in order, then replaces the commit record.

        Parameters
        ----------
        deferred : bool, default=False
            Return the prepared writes instead of performing them, for a background thread to
            run with :meth:`PendingWrites.run`. Batches must run in the order they were made.

        Returns
        -------
        PendingWrites or None
            The batch, when ``deferred``.
        """
        counts: dict[str, int] = dict(self.committed)
        seen: dict[str, tuple[str, int]] = {}
        for key, arr in self.arrays.items():
            if arr.dim in seen and seen[arr.dim][1] != arr.n:
                other, n = seen[arr.dim]
                raise RuntimeError(
                    f"cannot commit: {key!r} has {arr.n} entries along {arr.dim!r} but {other!r} "
                    f"has {n}; every array of a dimension must be appended together."
                )
            seen[arr.dim] = (key, arr.n)
            counts[arr.dim] = arr.n
        self.write_json("zarr.json", group_meta({**self.attrs, COMMIT_ATTR: counts}))
        self.committed = counts
        batch = PendingWrites(self.root, self._pending, dict(counts), self.durable)
        self._pending = []
        if deferred:
            return batch
        batch.run()
        return None

    def append_group(
        self,
        name: str,
        dataset: xr.Dataset,
        dim: str,
        coords: Mapping[str, Any] | None = None,
        *,
        commit: bool = True,
    ) -> None:
        """Append a Dataset as one new entry of a group, along a new leading dimension.

        The first call creates the group: each data variable becomes an array with dims
        ``(dim, *var.dims)``; the Dataset's coordinates and attributes are stored once (taken
        from this first entry); ``coords`` are scalars
        recorded per entry along ``dim`` (e.g. ``{"analysis_step": 150}``). Later calls must give
        the same variables with the same shapes. :func:`open_log` reads the group with
        ``group=name``.

        Parameters
        ----------
        name : str
            Group path, e.g. ``"analysis"``.
        dataset : xarray.Dataset
            Variables of numeric or boolean dtype.
        dim : str
            The leading dimension, one of the appendable dimensions (``"analysis_snapshot"``).
        coords : mapping of str to scalar, optional
            Per-entry coordinates along ``dim``.
        commit : bool, default=True
            Commit at once; pass False to commit together with other appends.

        Raises
        ------
        InvalidDataError
            Variables of another dtype, or variables and shapes that differ from the first entry.
        """
        coords = dict(coords or {})
        index_key = f"{name}/{dim}"
        if index_key not in self.arrays:
            self._create_group_from(name, dataset, dim, coords)
        else:
            self._check_group(name, dataset, dim, coords)
        self.arrays[index_key].append(np.array([self.arrays[index_key].n], dtype=np.int64))
        for cname, value in coords.items():
            self.arrays[f"{name}/{cname}"].append(np.asarray(value)[None])
        for vname, var in dataset.data_vars.items():
            self.arrays[f"{name}/{vname}"].append(np.asarray(var.values)[None])
        if commit:
            self.commit()

    def _create_group_from(
        self, name: str, dataset: xr.Dataset, dim: str, coords: Mapping[str, Any]
    ) -> None:
        if dim not in TIME_CHUNKS or dim in ("step", "snapshot"):
            choices = sorted(set(TIME_CHUNKS) - {"step", "snapshot"})
            raise InvalidParameterError(f"dim must be one of {choices}, got {dim!r}.")
        for vname, var in dataset.data_vars.items():
            if var.dtype.kind not in "biuf":
                raise InvalidDataError(
                    f"variable {vname!r} of the {name!r} dataset has dtype {var.dtype}; only "
                    "numbers and booleans can be appended to a log group."
                )
        if any(a.dim == dim for a in self.arrays.values()):
            raise ValueError(f"dimension {dim!r} already belongs to another group of the log.")
        static = [str(c) for c in dataset.coords if c not in dataset.dims]
        # The first entry's Dataset attributes describe the group (e.g. the analysis settings).
        self.create_group(name, {**dataset.attrs, "coordinates": " ".join([*coords, *static])})
        for cname, c in dataset.coords.items():
            self.create_static(f"{name}/{cname}", c.values, [str(d) for d in c.dims], c.attrs)
        self.create_appendable(f"{name}/{dim}", [dim], "int64")
        for cname, value in coords.items():
            self.create_appendable(f"{name}/{cname}", [dim], np.asarray(value).dtype)
        for vname, var in dataset.data_vars.items():
            self.create_appendable(
                f"{name}/{vname}",
                [dim, *(str(d) for d in var.dims)],
                var.dtype,
                var.shape,
                attrs=var.attrs,
            )
        self.attrs[GROUPS_ATTR] = sorted({*self.attrs.get(GROUPS_ATTR, []), name})

    def _check_group(
        self, name: str, dataset: xr.Dataset, dim: str, coords: Mapping[str, Any]
    ) -> None:
        expected = {k for k, a in self.arrays.items() if k.startswith(f"{name}/") and a.dim == dim}
        given = {f"{name}/{v}" for v in [dim, *coords, *map(str, dataset.data_vars)]}
        if given != expected:
            raise InvalidDataError(
                f"the {name!r} entry has variables {sorted(given)} but the group holds "
                f"{sorted(expected)}; every entry must have the same variables."
            )
        for vname, var in dataset.data_vars.items():
            inner = self.arrays[f"{name}/{vname}"].inner
            if tuple(var.shape) != inner:
                raise InvalidDataError(
                    f"variable {vname!r} of the {name!r} entry has shape {var.shape}, but earlier "
                    f"entries have {inner}; group entries must keep their shapes."
                )

    def abandon(self) -> None:
        """Stop without committing anything more: delete a log still being created, unlock."""
        if self.is_new:
            shutil.rmtree(self.root, ignore_errors=True)
        self._closed = True
        self._unlock()

    def close(self) -> None:
        """Write exact array shapes (so plain zarr readers see no padding), commit, unlock."""
        if self._closed:
            return
        self._closed = True
        try:
            if self.is_new:
                self.publish()
            for arr in self.arrays.values():
                arr.write_exact_shape()
            self.commit()
        finally:
            self._unlock()

    def __enter__(self) -> LogStore:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *exc: object) -> None:
        # After an exception the appended rows may be incomplete: keep only what was committed,
        # as if the process had been killed (a log never published is deleted).
        if exc_type is None:
            self.close()
        else:
            self.abandon()

    # ------------------------------------------------------------------ reading (resume)

    def has_array(self, key: str) -> bool:
        """Whether an array exists at ``key``."""
        return key in self._metas

    def read_array(self, key: str, start: int = 0, stop: int | None = None) -> np.ndarray:
        """Values of an array along its first axis (appendable arrays: committed rows only).

        Read through the same checks as :func:`open_log`: a damaged or missing chunk file raises
        :class:`~filterscope.errors.LogFormatError` rather than resuming from wrong values.
        """
        # The lock keeps the directory from being replaced, so there is no generation to watch.
        view = _CommittedView(
            self.root, self.committed, attrs=self.attrs, watch=False, advice=_RESUME_ADVICE
        )
        array = zarr.open_array(view, path=key, mode="r", zarr_format=3)
        if key in self.arrays:
            limit = self.committed.get(self.arrays[key].dim, 0)
            stop = limit if stop is None else min(stop, limit)
        try:
            return np.asarray(array[start:stop])
        except LogFormatError:
            raise
        except ValueError as exc:  # decompression failure behind a matching checksum
            raise LogFormatError(
                f"{self.root / key} is damaged ({exc}); the log cannot be resumed. Start a new "
                "log with mode='w' or another path."
            ) from None

    # ------------------------------------------------------------------ low level

    def write_json(self, key: str, meta: Mapping[str, Any]) -> None:
        """Prepare a metadata document (written at the next commit)."""
        self._pending.append((key, dumps(meta)))

    def write_chunks(
        self,
        key: str,
        block: np.ndarray,
        chunks: Sequence[int],
        origin: Sequence[int],
        fill: Any,
        compress: bool,
    ) -> None:
        """Encode every chunk of ``block``, whose first chunk is at ``origin``, for the next commit."""
        for parts, part in chunk_keys(block, chunks, origin):
            # zarr's default v3 chunk key: c/<i>/<j>/... with one component per dimension. The
            # writer creates missing directories (off the training thread).
            relative = "/".join((key, "c", *parts))
            self._pending.append((relative, encode_chunk(pad(part, chunks, fill), compress)))


class PendingWrites:
    """Files prepared by a :class:`LogStore` commit, the commit record last.

    Running it only does file I/O, which releases the GIL: a background thread can write one
    snapshot while training goes on, without slowing the training thread.

    Attributes
    ----------
    counts : dict of str to int
        The commit record this batch ends with.
    """

    def __init__(
        self, root: Path, files: list[tuple[str, bytes]], counts: dict[str, int], durable: bool
    ) -> None:
        self.root = root
        self.files = files
        self.counts = counts
        self.durable = durable

    def run(self) -> None:
        """Write every file atomically, in order; with ``durable``, fsync before the commit."""
        *data, (commit_key, commit) = self.files
        for key, content in data:
            atomic_write(self.root / key, content, self.durable)
        if self.durable:
            # Make the renames, and any directories created for them, durable too.
            directories = {self.root}
            for key, _ in data:
                directories.update((self.root / key).parents)
            for directory in directories:
                if directory.is_relative_to(self.root):
                    fsync_path(directory)
        atomic_write(self.root / commit_key, commit, self.durable)
        if self.durable:
            fsync_path(self.root)
