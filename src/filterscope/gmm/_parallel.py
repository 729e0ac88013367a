"""Independent chunks of work side by side in threads, each running torch on one thread.

torch releases the GIL inside its operations, so Python threads that each own a chunk keep
several cores busy. On small operations this beats torch's own intra-op threads, which split
every operation and meet at its end: on the 2-vCPU development machine FilterGMM ran
1.10–1.25× faster with two chunks side by side than with two intra-op threads
(``python benchmarks/bench_gmm.py``, both rows of one run).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import TypeVar

import torch

T = TypeVar("T")
R = TypeVar("R")

_local = threading.local()


class Cancelled(Exception):
    """Raised inside a chunk whose :func:`map_chunks` call is being abandoned."""


def check_cancelled() -> None:
    """Raise :class:`Cancelled` when this thread's chunk should stop: another chunk failed, or
    the caller was interrupted (Ctrl-C). Long loops call it once per iteration; outside
    :func:`map_chunks` it does nothing."""
    stop = getattr(_local, "stop", None)
    if stop is not None and stop.is_set():
        raise Cancelled


@contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run the block with torch's intra-op thread count set to ``n``; restore it after.

    Threads started inside the block take the count when they first run a parallel operation.
    """
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def map_chunks(fn: Callable[[T], R], items: Sequence[T], jobs: int) -> list[R]:
    """``[fn(item) for item in items]``, in order; with ``jobs > 1`` and more than one item,
    in up to ``jobs`` threads that each run torch on one thread.

    When a chunk raises, or the caller is interrupted while waiting, the chunks not started are
    dropped and the running ones stop at their next :func:`check_cancelled`, so the error (or
    the ``KeyboardInterrupt``) comes back promptly instead of after all the work.
    """
    if jobs <= 1 or len(items) <= 1:
        return [fn(item) for item in items]
    stop = threading.Event()

    def run(item: T) -> R:
        _local.stop = stop
        try:
            return fn(item)
        finally:
            _local.stop = None

    with torch_threads(1):
        pool = ThreadPoolExecutor(min(jobs, len(items)))
        try:
            return list(pool.map(run, items))
        except BaseException:
            stop.set()
            raise
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
