"""Reference computations shared by tests: plain numpy, written for clarity, not speed."""

from __future__ import annotations

import numpy as np


def layer_stats(x: np.ndarray) -> list[float]:
    """The log's 12 per-layer statistics of ``x``, in the schema's ``stat`` order."""
    return [
        x.max(),
        x.min(),
        x.mean(),
        x.sum(),
        x.var(),
        x.std(),
        np.count_nonzero(x),
        np.abs(x).sum(),
        np.sqrt((x * x).sum()),
        np.median(x),
        np.quantile(x, 0.25),
        np.quantile(x, 0.75),
    ]
