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


def assert_close_in_stored_units(
    actual: np.ndarray,
    desired: np.ndarray,
    dtype: np.dtype | str,
    *,
    ulps: float = 1.0,
    atol: float = 0.0,
) -> None:
    """Assert ``actual`` and ``desired`` agree to ``ulps`` steps of the dtype they are stored in.

    Values rounded to a narrow dtype (the log stores ``p_true`` and ``margin`` as float16) can
    differ by a whole step of that dtype when the float32 values before the cast differ by far
    less: two CPUs, two batch sizes or two BLAS kernels round differently, and a value just
    either side of a rounding boundary lands on neighbouring float16 numbers. A relative
    tolerance below one step of the stored dtype therefore fails on some machines and not on
    others. The tolerance here is ``ulps`` steps of ``dtype`` at the larger magnitude, plus
    ``atol`` for the error of the computation before the cast (cancellation near zero, where
    float16 steps are tiny). NaN must match NaN.
    """
    dtype = np.dtype(dtype)
    a = np.asarray(actual, dtype=np.float64)
    d = np.asarray(desired, dtype=np.float64)
    assert a.shape == d.shape, f"shapes differ: {a.shape} vs {d.shape}"
    nan = np.isnan(a) | np.isnan(d)
    np.testing.assert_array_equal(np.isnan(a), np.isnan(d), err_msg="NaN at different places")
    scale = np.maximum(np.abs(a), np.abs(d))[~nan].astype(dtype)
    step = np.spacing(scale).astype(np.float64)
    diff = np.abs(a - d)[~nan]
    bad = diff > ulps * step + atol
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise AssertionError(
            f"{int(bad.sum())} of {diff.size} values differ by more than {ulps:g} {dtype} step(s)"
            f" + {atol}: first at flat index {i}: {a[~nan][i]!r} vs {d[~nan][i]!r} "
            f"(difference {diff[i]:.3g}, one step there {step[i]:.3g})"
        )
