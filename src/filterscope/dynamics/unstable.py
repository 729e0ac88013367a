"""Unstable samples: images whose correctness flips after holding one state for a long time.

DeepTracker (ACM TIST 2018) scans each validation image's correctness series ``v[0..T-1]``:

* left-abnormal at ``i``: when ``v[i-1] != v[i]``, walk back ``k = i-1, i-2, ...`` while
  ``v[k] != v[i]``, at most ``W`` steps, adding one to ``abLeft[i][i-k-1]`` at each step;
* right-abnormal at ``i``: when ``v[i+1] != v[i]``, walk forward ``k = i+1, ...`` while
  ``v[k] != v[i]``, at most ``W`` steps, adding one to ``abRight[i][k-i-1]``.

The walk back from a flip at ``i`` takes ``min(run, W)`` steps, where ``run`` is the length of
the run of equal values that ends at ``i-1``; the walk forward from ``i`` takes ``min(run, W)``
steps over the run starting at ``i+1``. So one run-length encoding of every series gives every
walk at once: ``abLeft[i][j]`` counts the flips at ``i`` whose walk took more than ``j`` steps,
a reverse cumulative sum over ``j`` of a histogram of walk lengths. Cost is O(S·N) for the
encoding plus O(S·C·W) for the histograms, with no loop over samples or snapshots.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import numpy.typing as npt
import xarray as xr

from filterscope.dynamics._common import (
    block_length,
    class_positions,
    class_sizes,
    dim_coords,
    load_correct,
    sample_blocks,
)
from filterscope.errors import InvalidDataError

#: ``(j, threshold)`` of each named preset: "sustained" flags flips after at least 31 snapshots
#: in the other state (the default), "immediate" flags 30 or more flips at one snapshot.
PRESETS: dict[str, tuple[int, int]] = {"sustained": (30, 5), "immediate": (0, 30)}

Mode = Literal["left", "right", "both"]


def unstable_samples(
    log: xr.Dataset,
    *,
    window: int = 100,
    j: int | None = None,
    threshold: int | None = None,
    mode: Mode = "left",
    preset: Literal["sustained", "immediate"] = "sustained",
) -> xr.Dataset:
    """Count unstable samples per snapshot, class and lag, and flag the classes that have many.

    Parameters
    ----------
    log : xarray.Dataset
        A filterscope log (``correct`` over ``snapshot, sample``, ``label`` on ``sample``).
    window : int, default 100
        ``W``: the longest walk, so the number of lags ``0 .. W-1``.
    j : int, optional
        Lag whose count flags a class: a flip counts when the previous state (``mode="left"``)
        or the next state (``"right"``) lasted at least ``j + 1`` snapshots. Defaults to the
        preset's (30).
    threshold : int, optional
        A class is flagged at snapshot ``i`` when at least ``threshold`` of its samples count
        at lag ``j``. Defaults to the preset's (5).
    mode : {"left", "right", "both"}, default "left"
        Which count flags: ``ab_left``, ``ab_right``, or either. Right counts sit at the
        snapshot *before* the change (the reference's indexing); views draw them one column
        later.
    preset : {"sustained", "immediate"}, default "sustained"
        Supplies ``j`` and ``threshold`` when they are not given: ``(30, 5)`` or ``(0, 30)``;
        see :data:`PRESETS`.

    Returns
    -------
    xarray.Dataset
        ab_left, ab_right : int32 (snapshot, class, lag)
            ``abLeft[i][j]`` / ``abRight[i][j]`` summed over each class's samples.
        model_ab_left, model_ab_right : int64 (snapshot, lag)
            The same summed over classes.
        flip_left_run, flip_right_run : unsigned int (snapshot, sample)
            Per sample, the number of steps of the left (right) walk at each snapshot, that is
            the length of the run held before the flip at ``i`` (kept after the change following
            ``i``) capped at ``window``; 0 where there is no flip. Hence
            ``ab_left[i, c, j] == (flip_left_run[i, samples of c] > j).sum()``.
        flagged_left, flagged_right : bool (snapshot, class)
            ``ab_left[..., j] >= threshold`` and likewise for the right count.
        flagged : bool (snapshot, class)
            The flags of ``mode`` (their union for ``"both"``).
        peak_count : int (class)
            Largest count at lag ``j`` over snapshots, of the counts ``mode`` uses.
        flagged_snapshots : int (class)
            Number of flagged snapshots.
        class_shown : bool (class)
            ``peak_count >= threshold`` and flagged at two snapshots or more: the classes a
            validation view lists.
        class_size : int (class)
            Number of samples of each class.

        Attributes ``window``, ``j``, ``threshold``, ``mode`` and ``preset`` record the call.

    Raises
    ------
    filterscope.LogFormatError
        If ``log`` is not a filterscope log.
    filterscope.InvalidDataError
        If a parameter is out of range.

    Examples
    --------
    >>> import numpy as np
    >>> from filterscope.dynamics import from_arrays, unstable_samples
    >>> v = np.array([[0], [0], [0], [1], [1], [0]], bool)  # one sample, six snapshots
    >>> out = unstable_samples(from_arrays(v, labels=[0]), window=5, j=1, threshold=1)
    >>> out.ab_left.sel({"class": 0}).values[:, :3]
    array([[0, 0, 0],
           [0, 0, 0],
           [0, 0, 0],
           [1, 1, 1],
           [0, 0, 0],
           [1, 1, 0]], dtype=int32)
    >>> out.flip_left_run.values.ravel().tolist()
    [0, 0, 0, 3, 0, 2]
    >>> out.flagged.values.ravel().tolist()
    [False, False, False, True, False, True]
    """
    if preset not in PRESETS:
        raise InvalidDataError(f"preset must be one of {sorted(PRESETS)}, got {preset!r}")
    j = PRESETS[preset][0] if j is None else j
    threshold = PRESETS[preset][1] if threshold is None else threshold
    _check_params(window, j, threshold, mode)
    correct = load_correct(log)
    classes, n_classes = class_positions(log)
    n_snapshots, n_samples = correct.shape

    run_dtype = np.min_scalar_type(window)
    left_run = np.zeros((n_snapshots, n_samples), dtype=run_dtype)
    right_run = np.zeros((n_snapshots, n_samples), dtype=run_dtype)
    # Sparse histograms of walk lengths, one (cells, counts) pair per block of samples, where
    # cell (i, c, m - 1) counts the flips of class c at i whose walk took m steps.
    shape = (n_snapshots, n_classes, window)
    left_cells, right_cells = [], []
    for block in sample_blocks(n_snapshots, n_samples):
        sample, at, before, after = _flips(correct[:, block])
        cls = classes[block][sample]
        steps_left = np.minimum(before, window)
        steps_right = np.minimum(after, window)
        left_run[at, sample + block.start] = steps_left
        right_run[at - 1, sample + block.start] = steps_right
        left_cells.append(_cell_counts(shape, at, cls, steps_left))
        right_cells.append(_cell_counts(shape, at - 1, cls, steps_right))
    ab_left = _reverse_cumsum(shape, left_cells)
    ab_right = _reverse_cumsum(shape, right_cells)

    flagged_left = ab_left[:, :, j] >= threshold
    flagged_right = ab_right[:, :, j] >= threshold
    if mode == "left":
        flagged, score = flagged_left, ab_left[:, :, j]
    elif mode == "right":
        flagged, score = flagged_right, ab_right[:, :, j]
    else:
        flagged = flagged_left | flagged_right
        score = np.maximum(ab_left[:, :, j], ab_right[:, :, j])
    peak = score.max(axis=0, initial=0).astype(np.int64)
    n_flagged = flagged.sum(axis=0).astype(np.int64)

    lag = np.arange(window, dtype=np.int64)
    coords = {
        **dim_coords(log, "snapshot"),
        **dim_coords(log, "sample"),
        **dim_coords(log, "class"),
        "lag": (("lag",), lag),
    }
    scl = ("snapshot", "class", "lag")
    sc = ("snapshot", "class")
    out = xr.Dataset(
        {
            "ab_left": (scl, ab_left, {"long_name": "samples flipping after >= lag+1 steady"}),
            "ab_right": (scl, ab_right, {"long_name": "samples flipping, then >= lag+1 steady"}),
            "model_ab_left": (("snapshot", "lag"), ab_left.sum(axis=1, dtype=np.int64)),
            "model_ab_right": (("snapshot", "lag"), ab_right.sum(axis=1, dtype=np.int64)),
            "flip_left_run": (("snapshot", "sample"), left_run),
            "flip_right_run": (("snapshot", "sample"), right_run),
            "flagged_left": (sc, flagged_left),
            "flagged_right": (sc, flagged_right),
            "flagged": (sc, flagged),
            "peak_count": (("class",), peak),
            "flagged_snapshots": (("class",), n_flagged),
            "class_shown": (("class",), (peak >= threshold) & (n_flagged >= 2)),
            "class_size": (("class",), class_sizes(classes, n_classes)),
        },
        coords=coords,
        attrs={"window": window, "j": j, "threshold": threshold, "mode": mode, "preset": preset},
    )
    return out


def _check_params(window: int, j: int, threshold: int, mode: str) -> None:
    if not isinstance(window, int | np.integer) or window < 1:
        raise InvalidDataError(f"window must be a positive integer, got {window!r}")
    if not isinstance(j, int | np.integer) or not 0 <= j < window:
        raise InvalidDataError(
            f"j must be an integer lag in 0..window-1 = 0..{window - 1}, got {j!r}; "
            "raise window or lower j"
        )
    if not isinstance(threshold, int | np.integer) or threshold < 1:
        raise InvalidDataError(f"threshold must be a positive integer, got {threshold!r}")
    if mode not in ("left", "right", "both"):
        raise InvalidDataError(f"mode must be 'left', 'right' or 'both', got {mode!r}")


def _flips(
    block: npt.NDArray[np.bool_],
) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.intp], npt.NDArray[np.intp], npt.NDArray[np.intp]]:
    """Every flip of a (snapshot, sample) block with the runs around it.

    Returns, one entry per flip (``v[at-1] != v[at]``): the sample, ``at``, the length of the run
    ending at ``at - 1`` and the length of the run starting at ``at``.
    """
    n_snapshots = block.shape[0]
    # Run starts, sample-major so that np.nonzero lists each sample's runs in time order.
    starts = np.empty(block.shape[::-1], dtype=bool)
    starts[:, :1] = True
    np.not_equal(block.T[:, 1:], block.T[:, :-1], out=starts[:, 1:])
    sample, start = np.nonzero(starts)
    # Each sample's first run starts at 0, so the entry before a flip is its own previous run.
    flip = np.flatnonzero(start > 0)
    next_start = np.empty_like(start)
    next_start[:-1] = start[1:]
    next_start[-1:] = n_snapshots
    last_run = np.ones(start.shape, dtype=bool)
    last_run[:-1] = sample[1:] != sample[:-1]
    next_start[last_run] = n_snapshots
    at = start[flip]
    return sample[flip], at, at - start[flip - 1], next_start[flip] - at


def _cell_counts(
    shape: tuple[int, int, int],
    snapshot: npt.NDArray[np.intp],
    cls: npt.NDArray[np.intp],
    steps: npt.NDArray[np.intp],
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int32]]:
    """Sorted distinct flat cells ``(snapshot, cls, steps - 1)`` of ``shape`` and their counts."""
    _, n_classes, window = shape
    key = (snapshot.astype(np.int64) * n_classes + cls) * window + (steps - 1)
    cells, counts = np.unique(key, return_counts=True)
    return cells, counts.astype(np.int32)


def _reverse_cumsum(
    shape: tuple[int, int, int],
    blocks: list[tuple[npt.NDArray[np.int64], npt.NDArray[np.int32]]],
) -> npt.NDArray[np.int32]:
    """Dense ``out[i, c, j]`` = sum over ``m > j`` of the histogram cells ``(i, c, m - 1)``.

    Built a few snapshots at a time in one reused lag-major buffer, so the (possibly huge)
    output is written once, in order (scattering straight into it would fault its pages in at
    random), and the suffix sums run over contiguous rows of the buffer.
    """
    n_snapshots, n_classes, window = shape
    out = np.empty(shape, dtype=np.int32)
    row = n_classes * window
    per_chunk = block_length(row)
    buffer = np.empty((window, min(per_chunk, n_snapshots) * n_classes), dtype=np.int32)
    for start in range(0, n_snapshots, per_chunk):
        stop = min(start + per_chunk, n_snapshots)
        width = (stop - start) * n_classes
        hist = buffer[:, :width]
        hist.fill(0)
        for cells, counts in blocks:
            lo, hi = np.searchsorted(cells, [start * row, stop * row])
            snapshot_class, lags = np.divmod(cells[lo:hi] - start * row, window)
            # Cells are distinct within a block, so fancy-index += adds each count once.
            hist[lags, snapshot_class] += counts[lo:hi]
        for j in range(window - 2, -1, -1):
            hist[j] += hist[j + 1]
        out[start:stop] = np.moveaxis(hist.reshape(window, stop - start, n_classes), 0, -1)
    return out
