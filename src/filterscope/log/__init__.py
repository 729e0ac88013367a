"""The training log: recording a PyTorch run and reading it back.

Owns the log's schema (names, dimensions, dtypes, format version), the statistics computed while
recording, the crash-safe zarr writer (``store``) and the reader :func:`open_log` (``reader``). The public entry points are
:class:`Recorder` (write) and :func:`open_log` (read, a lazy :class:`xarray.Dataset`);
:class:`LogStore` is the low-level writer, also used to append analysis results to a log.

Must not import the index, dynamics, GMM (except lazily, to run an analysis the user asked for),
views or plots: everything else reads the log, the log reads nothing else.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from filterscope.log.reader import open_log
from filterscope.log.store import LogStore

__all__ = ["LogStore", "Recorder", "open_log"]


def __getattr__(name: str) -> Any:
    # Reading a log must not import torch: the recorder (which does) loads on first use.
    if name == "Recorder":
        from filterscope.log.recorder import Recorder

        return Recorder
    raise AttributeError(f"module 'filterscope.log' has no attribute {name!r}")


if TYPE_CHECKING:
    from filterscope.log.recorder import Recorder
