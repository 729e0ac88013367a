"""Reading a log: :func:`open_log`, the committed view it reads through, and root checks.

Readers trust only the commit record (``docs/log-format.md``): :func:`open_log` reads the root
``zarr.json`` once and presents every array cut to the committed length, so a log killed at any
moment opens with exactly the snapshots completed before the kill, and a log being written can be
read at the same time. Every chunk read is checksummed; a chunk missing inside the committed
extent is an error, not fill values; a Dataset opened before ``mode="w"`` replaced the log
refuses to read the new one. The writer is :mod:`filterscope.log.store`.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from zarr.core.buffer import Buffer, BufferPrototype, default_buffer_prototype
from zarr.storage import LocalStore

from filterscope.errors import (
    InvalidParameterError,
    LogFormatError,
)
from filterscope.log._zarrio import (
    PARTIAL_SUFFIX,
    checksum_ok,
)
from filterscope.log.schema import (
    COMMIT_ATTR,
    EVAL_GROUP,
    FORMAT_ATTR,
    FORMAT_VERSION,
    GENERATION_ATTR,
    GROUPS_ATTR,
    STATE_GROUP,
)

if TYPE_CHECKING:
    import xarray as xr

#: Key under which :func:`open_log` records the log's directory, in both ``Dataset.encoding``
#: and ``Dataset.attrs`` (see :func:`log_path`).
PATH_KEY = "filterscope_path"


# ------------------------------------------------------------------------- root metadata checks


def read_root_metadata(path: str | os.PathLike[str]) -> tuple[dict[str, Any], bytes]:
    """Validated root metadata of a log.

    Parameters
    ----------
    path : path-like
        Log directory.

    Returns
    -------
    metadata : dict
        The root ``zarr.json`` content.
    raw : bytes
        Its bytes as read (readers serve these, so attributes and commit record agree).

    Raises
    ------
    FileNotFoundError
        If nothing exists at ``path``.
    LogFormatError
        If ``path`` is not a filterscope log, is damaged or was written by a newer version.
    """
    root = Path(path)
    if not root.exists():
        raise FileNotFoundError(
            f"no filterscope log at {root}: the path does not exist. A Recorder creates it when "
            "it starts; check the path."
        )
    if not root.is_dir():
        raise LogFormatError(f"{root} is a file, not a filterscope log (a log is a directory).")
    meta_path = root / "zarr.json"
    if not meta_path.is_file():
        if (root / ".zgroup").exists() or (root / ".zarray").exists():
            what = "a zarr version 2 store written by another program"
        else:
            what = "not a zarr store (it has no zarr.json)"
        raise LogFormatError(
            f"{root} is {what}, not a filterscope log; pass the directory a "
            "filterscope.Recorder wrote."
        )
    raw = meta_path.read_bytes()
    try:
        meta = json.loads(raw)
    except ValueError as exc:
        raise LogFormatError(
            f"{meta_path} is not valid JSON ({exc}); the log's root metadata is damaged. Restore "
            "it from a copy of the log."
        ) from None
    if (
        not isinstance(meta, dict)
        or meta.get("zarr_format") != 3
        or meta.get("node_type") != "group"
    ):
        node = meta.get("node_type") if isinstance(meta, dict) else None
        raise LogFormatError(
            f"{root} is not a filterscope log: its zarr.json describes a zarr "
            f"{node or 'node'} (format {meta.get('zarr_format') if isinstance(meta, dict) else '?'}) "
            "written by another program, where a log has a zarr v3 group."
        )
    attrs = meta.get("attributes")
    if not isinstance(attrs, dict) or FORMAT_ATTR not in attrs:
        raise LogFormatError(
            f"{root} is a zarr store written by another program (its root has no "
            f"{FORMAT_ATTR!r} attribute), not a filterscope log; open it with xarray or zarr "
            "directly."
        )
    version = attrs[FORMAT_ATTR]
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise LogFormatError(
            f"{meta_path} has a damaged {FORMAT_ATTR!r} attribute ({version!r}, expected a "
            "positive integer); restore the log from a copy."
        )
    if version > FORMAT_VERSION:
        raise LogFormatError(
            f"{root} was written by a newer filterscope (log format {version}; this version reads "
            f"format {FORMAT_VERSION} and older); upgrade filterscope to read it."
        )
    commit = attrs.get(COMMIT_ATTR)
    if not isinstance(commit, dict) or not all(
        isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in commit.values()
    ):
        raise LogFormatError(
            f"{meta_path} has a missing or damaged commit record ({COMMIT_ATTR!r} = {commit!r}; "
            "expected committed lengths such as {'step': 120, 'snapshot': 3}). Without it the "
            "completed snapshots cannot be told from unfinished ones; restore the log from a copy."
        )
    return meta, raw


def _is_filterscope_log(path: Path) -> bool:
    try:
        read_root_metadata(path)
    except (LogFormatError, OSError):
        return False
    return True


def _generation(meta: Mapping[str, Any]) -> str:
    # Logs written before generations existed have none: "" is their generation.
    return str(meta.get("attributes", {}).get(GENERATION_ATTR, ""))


def _metadata_owner(root: Path, key: str, attrs: Mapping[str, Any]) -> str:
    """What the metadata document ``key`` (``<node>/zarr.json``) belongs to, for messages.

    A document that is not valid JSON cannot tell its node type itself, so it is inferred from
    the log's structure: the groups the root attributes name, then the directory (an array with
    data has a ``c`` chunk directory, a group has children with metadata).
    """
    node = key.removesuffix("zarr.json").rstrip("/")

    def names(value: Any, prefix: str = "") -> list[str]:
        return [prefix + v for v in value if isinstance(v, str)] if isinstance(value, list) else []

    named = [
        EVAL_GROUP,
        STATE_GROUP,
        *names(attrs.get(GROUPS_ATTR)),
        *names(attrs.get("eval_sets"), f"{EVAL_GROUP}/"),
    ]
    groups = {"/".join(g.split("/")[: i + 1]) for g in named for i in range(g.count("/") + 1)}
    directory = root / node
    if node in groups:
        return f"the group {node!r}"
    if (directory / "c").is_dir():
        return f"the array {node!r}"
    try:
        if any((child / "zarr.json").is_file() for child in directory.iterdir()):
            return f"the group {node!r}"
    except OSError:
        pass
    return f"the node {node!r} (a group or an array)"


# ------------------------------------------------------------------------------ reading

# zarr's default v3 chunk key: <array>/c/<i>/<j>/... (just <array>/c for a 0-d array).
_CHUNK_KEY = re.compile(r"^(?:(.*)/)?c((?:/\d+)*)$")
_LOST_CHUNK_ADVICE = (
    "Restore it from a copy of the log. Without one, its entries are lost; everything else "
    "still reads, including this variable's other chunks (select around it, e.g. with .isel)."
)
_RESUME_ADVICE = (
    "The log cannot be resumed: restore the file from a copy of the log, or start a new log "
    "with mode='w' or another path."
)


class _CommittedView(LocalStore):
    """Read-only view of a log cut to a commit record, with checked file reads.

    Array metadata is served with the appendable dimension's length replaced by its committed
    length, so xarray (and zarr) never see rows of an unfinished snapshot. Every read is checked,
    so that nothing wrong is served silently, each failure a
    :class:`~filterscope.errors.LogFormatError` naming the file:

    * every chunk file ends in a CRC32C of its content (the ``crc32c`` codec): a mismatch is
      reported instead of a codec error;
    * a chunk file missing inside the committed extent is an error, where zarr would read the
      fill value (the writer writes every chunk it commits; only the ``state`` slots may be
      unwritten);
    * with ``watch``, a log replaced since the view was made (``mode="w"``) is reported, where
      zarr would read the new run's files under the old run's shapes.

    Parameters
    ----------
    root : pathlib.Path
        Log directory.
    counts : mapping of str to int
        The commit record to cut to.
    attrs : mapping
        Root attributes (the generation to watch, the group names for messages).
    root_meta : bytes, optional
        The root metadata as read, served for the root ``zarr.json`` (default: the file).
    watch : bool, default=True
        Check at every read that the log is still the generation ``attrs`` names.
    advice : str, optional
        What a damaged or missing chunk file's message tells to do (default: for a reader).
    """

    def __init__(
        self,
        root: Path,
        counts: Mapping[str, int],
        *,
        attrs: Mapping[str, Any],
        root_meta: bytes | None = None,
        watch: bool = True,
        advice: str = _LOST_CHUNK_ADVICE,
    ) -> None:
        super().__init__(root, read_only=True)
        self._advice = advice
        self._counts = dict(counts)
        self._attrs = dict(attrs)
        self._root_meta = root_meta
        self._watch = watch
        self._generation = _generation({"attributes": attrs})
        self._root_meta_path = os.path.join(root, "zarr.json")  # a str: stat() it at every read
        # Identity of the root zarr.json last seen holding our generation (None: not yet seen).
        self._verified: tuple[int, ...] | None = None
        # Array key -> (served shape, chunk shape, whether every chunk in it must exist).
        self._extents: dict[str, tuple[list[int], list[int], bool]] = {}

    def with_read_only(self, read_only: bool = False) -> _CommittedView:
        return self

    def _check_generation(self) -> None:
        """Raise if the log at ``root`` is no longer the one this view was made for.

        Run after every file read: if the root still holds our generation after the read, what
        was read belongs to it (a generation never comes back). ``mode="w"`` renames a whole new
        directory into place, while appends (``mode="a"``, a live writer) keep the directory and
        the generation; the check must tell the two apart, at every chunk read, cheaply. One
        ``stat`` of the root ``zarr.json`` does: every commit replaces that file (new inode,
        mtime), so while its identity is the one last verified nothing happened; when it
        changed, the file is read once and its generation compared. That costs one JSON parse
        per commit, not per chunk. The directory's inode alone would not do: a replaced log's
        inode number is free for the next replacement to reuse.
        """
        try:
            st = os.stat(self._root_meta_path)
            ident = (st.st_ino, st.st_dev, st.st_mtime_ns, st.st_size)
            if ident == self._verified:
                return
            meta, _ = read_root_metadata(self.root)
        except FileNotFoundError:
            raise LogFormatError(
                f"the log at {self.root} was deleted or replaced since it was opened; open it "
                "again with filterscope.open_log once it exists."
            ) from None
        if _generation(meta) != self._generation:
            raise LogFormatError(
                f"the log at {self.root} was replaced since it was opened; open it again with "
                "filterscope.open_log."
            )
        # The identity taken before the read: if the file changed in between, the next check
        # sees a different identity and reads it again.
        self._verified = ident

    def _serve(self, key: str, buf: Buffer | None, prototype: BufferPrototype) -> Buffer | None:
        if key == "zarr.json" and self._root_meta is not None:
            return prototype.buffer.from_bytes(self._root_meta)
        if self._watch:
            self._check_generation()
        if key.endswith("zarr.json"):
            if buf is None:
                return None
            try:
                meta = json.loads(buf.to_bytes())
            except ValueError:
                owner = _metadata_owner(self.root, key, self._attrs)
                raise LogFormatError(
                    f"{self.root / key} is not valid JSON: the metadata of {owner} is damaged. "
                    "Restore the file from a copy of the log."
                ) from None
            if not isinstance(meta, dict) or meta.get("node_type") != "array":
                return buf
            dims = meta.get("dimension_names") or [None]
            served = buf
            if dims[0] in self._counts:
                meta["shape"][0] = self._counts[dims[0]]
                served = prototype.buffer.from_bytes(json.dumps(meta).encode())
            self._remember_extent(key.removesuffix("zarr.json").rstrip("/"), meta)
            return served
        if buf is None:
            self._check_missing(key)
            return None
        if not checksum_ok(buf.to_bytes()):
            raise LogFormatError(
                f"chunk file {self.root / key} is damaged (its checksum does not match: truncated "
                f"or overwritten after filterscope wrote it). {self._advice}"
            )
        return buf

    def _remember_extent(self, node: str, meta: Mapping[str, Any]) -> None:
        try:
            shape = [int(s) for s in meta["shape"]]
            chunks = [int(c) for c in meta["chunk_grid"]["configuration"]["chunk_shape"]]
        except (KeyError, TypeError, ValueError):
            return  # zarr itself reports metadata this broken
        # The state slots are rewritten whole and may never have been written (a resume reads
        # an all-NaN slot as "none yet"); every other chunk in the extent is written with it.
        required = node != STATE_GROUP and not node.startswith(f"{STATE_GROUP}/")
        self._extents[node] = (shape, chunks, required)

    def _check_missing(self, key: str) -> None:
        match = _CHUNK_KEY.match(key)
        if match is None:
            return
        node, indices = match.group(1) or "", match.group(2)
        extent = self._extents.get(node)
        if extent is None:
            return
        shape, chunks, required = extent
        index = [int(i) for i in indices.split("/") if i]
        if not required or len(index) != len(shape):
            return
        if all(i * c < s for i, c, s in zip(index, chunks, shape, strict=True)):
            raise LogFormatError(
                f"chunk file {self.root / key} is missing: the log is damaged (the file was "
                f"deleted or never copied; filterscope writes every chunk it commits). "
                f"{self._advice}"
            )

    async def get(
        self,
        key: str,
        prototype: BufferPrototype | None = None,
        byte_range: Any = None,
    ) -> Buffer | None:
        prototype = prototype or default_buffer_prototype()
        buf = await super().get(key, prototype, byte_range)
        if byte_range is not None:  # partial reads: not used by the log's codecs
            if self._watch:
                self._check_generation()
            return buf
        return self._serve(key, buf, prototype)

    def get_sync(
        self,
        key: str,
        *,
        prototype: BufferPrototype | None = None,
        byte_range: Any = None,
    ) -> Buffer | None:
        prototype = prototype or default_buffer_prototype()
        buf = super().get_sync(key, prototype=prototype, byte_range=byte_range)
        if byte_range is not None:  # partial reads: not used by the log's codecs
            if self._watch:
                self._check_generation()
            return buf
        return self._serve(key, buf, prototype)

    async def list_dir(self, prefix: str) -> Any:
        # Temporary files of an interrupted write are not part of the log.
        async for key in super().list_dir(prefix):
            if not key.endswith(PARTIAL_SUFFIX):
                yield key


def open_log(
    path: str | os.PathLike[str],
    eval_set: str | None = None,
    group: str | None = None,
    chunks: Any = None,
) -> xr.Dataset:
    """Open a filterscope log as a lazy, dask-backed :class:`xarray.Dataset`.

    Only committed data is visible: a log that is still being written, or whose writer was
    killed, shows every snapshot completed so far and nothing of an unfinished one.

    Parameters
    ----------
    path : path-like
        The directory a :class:`filterscope.Recorder` writes.
    eval_set : str, optional
        Which evaluation set's per-sample variables (``correct``, ``pred``, ``p_true``,
        ``margin``, ``sample_loss`` on ``sample``) to include; default the primary (first) one.
    group : str, optional
        ``"analysis"`` for the GMM analysis group (or any group listed in
        ``attrs["filterscope_groups"]``) instead of the main log.
    chunks : optional
        Dask chunking passed to :func:`xarray.open_zarr`; default None gives one dask chunk per
        on-disk chunk (see ``docs/log-format.md``).

    Returns
    -------
    xarray.Dataset
        Dimensions, variables and attributes as documented in ``docs/log-format.md``;
        ``attrs["eval_set"]`` names the evaluation set shown.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    LogFormatError
        If ``path`` is not a filterscope log, is damaged, or was written by a newer version.
        Damaged or missing chunk files raise it when their data is computed, and so does
        computing data after the log was replaced (``mode="w"``) since it was opened: open it
        again to read the new log.
    filterscope.InvalidParameterError
        Unknown ``eval_set`` or ``group`` (the message lists the valid ones); a
        :class:`ValueError` too.

    Notes
    -----
    The Dataset remembers its directory (``encoding`` and ``attrs["filterscope_path"]``), so
    :func:`filterscope.index_of` and ``log.filterscope.index()`` reach the log's index; see
    :func:`log_path`.

    Examples
    --------
    >>> import tempfile, torch
    >>> from torch import nn
    >>> import filterscope as fs
    >>> model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
    >>> data = (torch.randn(8, 4), torch.arange(8) % 3)
    >>> path = tempfile.mkdtemp() + "/run"
    >>> with fs.Recorder(model, path, eval_sets={"val": data}, snapshot_every=2) as rec:
    ...     for _ in range(4):
    ...         loss = nn.functional.cross_entropy(model(data[0]), data[1])
    ...         loss.backward()
    ...         rec.step(loss)
    >>> log = fs.open_log(path)
    >>> log.sizes["step"], log.sizes["snapshot"], log.sizes["sample"]
    (4, 3, 8)
    >>> log.correct.dims
    ('snapshot', 'sample')
    """
    import xarray as xr

    root = Path(path).absolute()
    meta, raw = read_root_metadata(root)
    attrs = meta["attributes"]
    view = _CommittedView(root, attrs[COMMIT_ATTR], attrs=attrs, root_meta=raw)
    groups = list(attrs.get(GROUPS_ATTR, []))
    sets = list(attrs.get("eval_sets", []))

    def load(name: str | None) -> xr.Dataset:
        try:
            ds = xr.open_zarr(
                view, group=name, consolidated=False, zarr_format=3, chunks=chunks or {}
            )
            # Label coordinates (layer and class names) are small: load them so that they
            # behave like numpy strings rather than dask object arrays.
            labels = [k for k, v in ds.coords.items() if v.dtype.kind in "OUT" and k not in ds.dims]
            return ds.assign_coords({k: ds[k].load() for k in labels})
        except LogFormatError:
            raise
        except Exception as exc:  # zarr and xarray raise many types for damaged metadata
            where = root if name is None else root / name
            raise LogFormatError(
                f"cannot read {where} as part of a filterscope log ({type(exc).__name__}: {exc}); "
                "the log is damaged or was modified by another program."
            ) from exc

    if group is not None:
        if group not in groups:
            raise InvalidParameterError(
                f"the log at {root} has no group {group!r}; it has {groups or 'none'}"
                + (" (no analysis has been recorded yet)" if group == "analysis" else "")
                + "."
            )
        return _tag(load(group), root)
    ds = load(None)
    if sets:
        name = sets[0] if eval_set is None else eval_set
        if name not in sets:
            raise InvalidParameterError(
                f"the log at {root} has no evaluation set {name!r}; it has {sets}."
            )
        ds = xr.merge([ds, load(f"{EVAL_GROUP}/{name}")], join="exact", combine_attrs="override")
        ds.attrs["eval_set"] = name
    elif eval_set is not None:
        raise InvalidParameterError(
            f"the log at {root} has no evaluation sets (it was recorded without any); leave "
            "eval_set=None."
        )
    return _tag(ds, root)


def _tag(ds: xr.Dataset, root: Path) -> xr.Dataset:
    # Both places, because users reshape logs before handing them on: ``encoding`` is what
    # xarray means for "where this came from" and never reaches a saved copy's metadata, but
    # ``merge``, ``where`` and friends drop it; ``attrs`` survive those (and, by default,
    # arithmetic and ``sel``/``isel``), so they are the fallback :func:`log_path` reads.
    ds.encoding[PATH_KEY] = str(root)
    ds.attrs[PATH_KEY] = str(root)
    return ds


def log_path(log: xr.Dataset) -> Path | None:
    """The directory of the log ``log`` was opened from, or None (e.g. an in-memory log).

    :func:`open_log` records it in ``log.encoding["filterscope_path"]`` and
    ``log.attrs["filterscope_path"]``. Selections (``sel``, ``isel``, ``log[[...]]``) and
    arithmetic keep both; ``xr.merge`` and ``where`` drop the encoding but keep the attribute,
    which is read when the encoding is gone. A Dataset built in memory has neither.

    Examples
    --------
    >>> import xarray as xr
    >>> log_path(xr.Dataset()) is None
    True
    >>> log_path(xr.Dataset(attrs={"filterscope_path": "/runs/demo"})).as_posix()
    '/runs/demo'
    """
    value = log.encoding.get(PATH_KEY) or log.attrs.get(PATH_KEY)
    return Path(value) if isinstance(value, str | os.PathLike) and str(value) else None


def eval_set_names(log: xr.Dataset) -> list[str]:
    """Names of the evaluation sets with a ``<set>_loss`` or ``<set>_error`` over ``snapshot``.

    In the log's order: the sets of ``attrs["eval_sets"]`` (the recorder's order, the primary
    set first), then any other set found among the variables, in variable order. The one
    function views, plots and the report use to find the per-snapshot curves.

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> log = xr.Dataset(
    ...     {"test_loss": ("snapshot", np.ones(3)), "val_error": ("snapshot", np.ones(3)),
    ...      "train_error": ("step", np.ones(9))},
    ...     attrs={"eval_sets": ["val", "test"]},
    ... )
    >>> eval_set_names(log)
    ['val', 'test']
    """
    import numpy as np

    found: list[str] = []
    for name, var in log.data_vars.items():
        prefix, _, metric = str(name).rpartition("_")
        if prefix and metric in ("loss", "error") and var.dims == ("snapshot",):
            if prefix not in found:
                found.append(prefix)
    listed = [str(s) for s in np.atleast_1d(log.attrs.get("eval_sets", [])) if str(s) in found]
    return listed + [s for s in found if s not in listed]
