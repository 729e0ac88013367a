"""Chunks side by side in threads: order, torch's thread count, and prompt cancellation."""

from __future__ import annotations

import threading
import time

import pytest
import torch

from filterscope.gmm import FilterGMM, _parallel
from filterscope.gmm._parallel import Cancelled, check_cancelled, map_chunks
from filterscope.gmm.synthetic import make_filter_points

# Float comparisons against oracles: `make test` reruns these under other CPU kernels.
pytestmark = pytest.mark.numerics


def test_map_chunks_keeps_order_uses_one_torch_thread_each_and_restores_the_count():
    before = torch.get_num_threads()
    out = map_chunks(lambda i: (i, torch.get_num_threads(), threading.get_ident()), range(6), 2)
    assert [o[0] for o in out] == list(range(6))
    assert all(o[1] == 1 and o[2] != threading.get_ident() for o in out)
    assert torch.get_num_threads() == before
    # one job: the caller's thread, torch untouched
    assert map_chunks(lambda i: threading.get_ident(), range(3), 1) == [threading.get_ident()] * 3


@pytest.mark.parametrize("error", [ValueError("chunk 0 failed"), KeyboardInterrupt()])
def test_a_failing_chunk_stops_the_others_promptly(error):
    started: list[int] = []
    cancelled: list[int] = []

    def work(i: int) -> int:
        started.append(i)
        if i == 0:
            time.sleep(0.05)
            raise error
        try:
            for _ in range(1000):  # 10 s unless cancelled
                check_cancelled()
                time.sleep(0.01)
        except Cancelled:
            cancelled.append(i)
            raise
        return i

    before = torch.get_num_threads()
    start = time.perf_counter()
    with pytest.raises(type(error)):
        map_chunks(work, range(8), 2)
    assert time.perf_counter() - start < 5
    # the chunk running beside the failure stopped; chunks not started were dropped
    assert cancelled and set(cancelled) <= set(started) - {0}
    assert len(started) < 8
    assert torch.get_num_threads() == before


def test_check_cancelled_is_a_no_op_outside_map_chunks_and_stops_a_fit_inside():
    check_cancelled()  # no map_chunks around it: nothing happens
    points, _ = make_filter_points(4, 100, random_state=0)
    stop = threading.Event()
    stop.set()
    _parallel._local.stop = stop
    try:
        with pytest.raises(Cancelled):
            FilterGMM(k_range=(1, 3), device="cpu", n_jobs=1).fit(points)
    finally:
        _parallel._local.stop = None
