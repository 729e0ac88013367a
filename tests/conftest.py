"""Shared pytest configuration.

Tests run two at a time (pytest-xdist, ``-n 2``) on a 2-core machine, so each worker keeps torch
to one intra-op thread: oversubscription makes CPU tests slower and timing-sensitive ones flaky.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")


def pytest_configure(config):
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a hard dependency
        return
    torch.set_num_threads(1)


def pytest_collection_modifyitems(config, items):
    # `make test` deselects these (-m "not cuda"); a plain `pytest` run reports them as skipped
    # with the reason instead of failing on a machine without a GPU.
    import pytest
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(
        reason="needs a CUDA device: run benchmarks/gmm_device.sh on a GPU machine"
    )
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)
