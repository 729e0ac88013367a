"""Where views get their data: the log's :class:`~filterscope.index.Index`, nothing else.

Views never shrink a series themselves: they ask the index for a window at the level that fits
the pixels they have. A log opened from a path (:func:`filterscope.open_log`, also after
``sel``/``isel``) is drawn from the index kept in its own store
(:func:`filterscope.index.index_of`, built on first use); a Dataset made in memory has no store,
so it gets a private index of its own values in a temporary folder, removed with the Dataset.

:data:`DATA_LOCK` serialises the views' index reads (their requests, from the kernel's main
thread) with a live view's update (``views/_live.py``), which extends the index in the log's store
from a background thread: a request never reads index chunks while they are rewritten. The
recorder never takes it: readers only read committed data.
"""

from __future__ import annotations

import shutil
import tempfile
import threading
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import xarray as xr

from filterscope.index import Index, build_index
from filterscope.index import index_of as stored_index
from filterscope.log.reader import eval_set_names, log_path

__all__ = ["DATA_LOCK", "eval_set_names", "given_index", "index_of", "stored_counts"]

#: Held while a view reads its index and while a live view extends it (re-entrant).
DATA_LOCK = threading.RLock()

# Private indexes of in-memory logs by (id of the log, variables), while some view holds one.
# An index holds its log, so the id cannot be reused while the entry lives.
_PRIVATE: weakref.WeakValueDictionary[tuple[int, tuple[str, ...]], Index] = (
    weakref.WeakValueDictionary()
)


# The index a live update hands to the views it reloads (per thread: the live thread's own).
_GIVEN = threading.local()


@contextmanager
def given_index(index: Index) -> Iterator[None]:
    """Inside, :func:`index_of` answers ``index`` for every log of its store.

    The live poller extends the log's index once and reloads its views inside this: each view
    reuses that index instead of opening (or extending) it again.
    """
    previous = getattr(_GIVEN, "index", None)
    _GIVEN.index = index
    try:
        yield
    finally:
        _GIVEN.index = previous


def index_of(log: xr.Dataset, variables: list[str] | None = None) -> Index:
    """The index a view of ``log`` queries.

    Parameters
    ----------
    log : xarray.Dataset
        A log from :func:`filterscope.open_log` (its stored index, whatever part of the log
        ``log`` selects: query it with the labels of ``log``), or a Dataset made in memory.
    variables : list of str, optional
        What a private index of an in-memory log summarises (default: everything).
    """
    path = log_path(log)
    if path is not None:
        given: Index | None = getattr(_GIVEN, "index", None)
        if given is not None and Path(given.store).absolute() == Path(path).absolute():
            return given
        return stored_index(log, progress=False)
    key = (id(log), tuple(variables or ()))
    found = _PRIVATE.get(key)
    if found is not None:
        return found
    store = tempfile.mkdtemp(prefix="filterscope-index-")
    try:
        index = build_index(log, store, variables=variables)
    except BaseException:
        shutil.rmtree(store, ignore_errors=True)
        raise
    _PRIVATE[key] = index
    # The temporary store goes with the last view that used it.
    weakref.finalize(index, shutil.rmtree, store, True)
    return index


def stored_counts(log: xr.Dataset, index: Index, j: int) -> xr.Dataset | None:
    """The index's unstable counts at lag ``j`` when they are those of ``log`` itself.

    They are when ``log`` is the whole run the index covers (same snapshots, samples and
    classes); for a part of it (``sel``/``isel``) or a lag the index does not keep, None, and
    the view computes them from ``log``.
    """
    whole = index.log
    for dim in ("snapshot", "sample", "class"):
        if dim not in log.sizes or dim not in whole.sizes:
            return None
        if log.sizes[dim] != whole.sizes[dim]:
            return None
    try:
        labels = index.labels("snapshot")
    except Exception:
        return None
    if not np.array_equal(np.asarray(log["snapshot"].values), labels):
        return None
    if not np.array_equal(np.asarray(log["class"].values), index.labels("class")):
        return None
    return index.unstable_counts(j)
