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

import xarray as xr

from filterscope.index import Index, build_index
from filterscope.index import index_of as stored_index
from filterscope.log.reader import eval_set_names, log_path

__all__ = ["DATA_LOCK", "eval_set_names", "index_of"]

#: Held while a view reads its index and while a live view extends it (re-entrant).
DATA_LOCK = threading.RLock()

# Private indexes of in-memory logs by (id of the log, variables), while some view holds one.
# An index holds its log, so the id cannot be reused while the entry lives.
_PRIVATE: weakref.WeakValueDictionary[tuple[int, tuple[str, ...]], Index] = (
    weakref.WeakValueDictionary()
)


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
    if log_path(log) is not None:
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
