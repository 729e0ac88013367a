"""Time pyramids: NaN-aware min, max, mean and count over buckets of ``2**k`` snapshots.

Level ``k`` splits the time axis into buckets ``[b * 2**k, (b + 1) * 2**k)``; the last bucket
may be partial. Each level is stored as one array of shape ``(4, n_buckets, n_rows)`` holding
the four aggregates in the order of :data:`AGGREGATES`, so one read answers a query. Level 0 is
the raw values themselves (min = max = mean = value, count = 1 where not NaN).

Level ``k + 1`` is always computed from level ``k`` *as stored* (rounded to the storage dtype),
so a pyramid built in one pass and one extended snapshot by snapshot are bit-identical.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import numpy.typing as npt

#: Names of the aggregates along the first axis of every level array.
AGGREGATES: tuple[str, str, str, str] = ("min", "max", "mean", "count")


def agg_dtype(source: np.dtype[Any]) -> np.dtype[Any]:
    """Storage dtype of the aggregates of a source dtype: float64 stays, all else is float32."""
    return np.dtype(np.float64) if source == np.float64 else np.dtype(np.float32)


def n_buckets(length: int, level: int) -> int:
    """Number of (possibly partial) buckets of ``2**level`` entries covering ``length`` entries."""
    return -(-length // (1 << level))


def n_levels(length: int) -> int:
    """Index of the coarsest level: the first whose single bucket covers ``length`` entries."""
    return max(1, int(length - 1).bit_length()) if length > 1 else 1


def level_from_raw(raw: npt.NDArray[Any], dtype: np.dtype[Any]) -> npt.NDArray[Any]:
    """Aggregates of level 0: ``raw`` of shape ``(time, rows)`` -> ``(4, time, rows)``."""
    values = raw.astype(dtype, copy=False)
    out = np.empty((4, *values.shape), dtype=dtype)
    out[0] = values
    out[1] = values
    out[2] = values
    np.logical_not(np.isnan(values), out=out[3], casting="unsafe")
    return out


def coarsen_pairs(level: npt.NDArray[Any]) -> npt.NDArray[Any]:
    """Combine neighbouring buckets two by two: level ``k`` -> level ``k + 1``.

    ``level`` has shape ``(4, n, rows)``; an odd last bucket is combined with an empty one, so
    the result has ``ceil(n / 2)`` buckets. Empty buckets (count 0) hold NaN for min, max and
    mean. The mean is combined in float64 weighted by the counts, then rounded to the dtype of
    ``level``.
    """
    n = level.shape[1]
    half = n // 2
    out = np.empty((4, -(-n // 2), *level.shape[2:]), dtype=level.dtype)
    first, second = level[:, 0 : 2 * half : 2], level[:, 1 : 2 * half : 2]
    np.fmin(first[0], second[0], out=out[0, :half])
    np.fmax(first[1], second[1], out=out[1, :half])
    c1 = first[3].astype(np.float64)
    c2 = second[3].astype(np.float64)
    total = c1 + c2
    weighted = np.where(c1 > 0, first[2], 0.0) * c1 + np.where(c2 > 0, second[2], 0.0) * c2
    with np.errstate(invalid="ignore", divide="ignore"):
        out[2, :half] = np.where(total > 0, weighted / np.where(total > 0, total, 1.0), np.nan)
    out[3, :half] = total
    if n % 2:
        out[:, half] = level[:, n - 1]
    return out


def first_level(raw: npt.NDArray[Any], dtype: np.dtype[Any]) -> npt.NDArray[Any]:
    """Level 1 straight from raw values ``(time, rows)``: the same as
    ``coarsen_pairs(level_from_raw(raw, dtype))`` without the four copies of level 0."""
    values = raw.astype(dtype, copy=False)
    n = values.shape[0]
    if n % 2:
        pad = np.full((1, *values.shape[1:]), np.nan, dtype=dtype)
        values = np.concatenate([values, pad])
    first, second = values[0::2], values[1::2]
    out = np.empty((4, *first.shape), dtype=dtype)
    np.fmin(first, second, out=out[0])
    np.fmax(first, second, out=out[1])
    c1 = ~np.isnan(first)
    c2 = ~np.isnan(second)
    total = c1.astype(np.float64) + c2
    weighted = np.where(c1, first, 0.0) + np.where(c2, second, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        out[2] = np.where(total > 0, weighted / np.where(total > 0, total, 1.0), np.nan)
    out[3] = total
    return out


def block_levels(
    raw: npt.NDArray[Any], top: int, dtype: np.dtype[Any]
) -> Iterator[npt.NDArray[Any]]:
    """Levels ``1 .. top`` of one block of raw values ``(time, rows)``, finest first."""
    if top < 1:
        return
    current = first_level(raw, dtype)
    yield current
    for _ in range(top - 1):
        current = coarsen_pairs(current)
        yield current


def choose_level(start: int, stop: int, columns: int, top: int) -> int:
    """Level whose buckets best fill ``columns`` pixels for the window ``[start, stop)``.

    Level 0 (raw values) when the window holds at most ``columns`` entries; otherwise the
    finest level ``k`` whose buckets overlapping the window number at most ``columns`` -- so
    at least about ``columns / 2`` of them, since level ``k - 1`` had more than ``columns``.
    """
    if stop - start <= columns:
        return 0
    for level in range(1, top + 1):
        if -(-stop // (1 << level)) - start // (1 << level) <= columns:
            return level
    return top
