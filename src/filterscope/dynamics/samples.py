"""Per-sample and per-class signals of the evaluation set over snapshots.

Transitions and class error follow DeepTracker (ACM TIST 2018); forgetting events follow
"An Empirical Study of Example Forgetting during Deep Neural Network Learning" (ICLR 2019);
confidence/variability regions follow "Dataset Cartography" (EMNLP 2020); the area under the
margin follows "Identifying Mislabeled Data using the Area Under the Margin Ranking"
(NeurIPS 2020).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
import xarray as xr

from filterscope.dynamics._common import (
    check_log,
    class_positions,
    class_sizes,
    class_sums,
    dim_coords,
    load,
    load_correct,
    sample_blocks,
)
from filterscope.errors import InvalidDataError

#: Cartography region names, in the order of the paper's map.
REGIONS = ("easy-to-learn", "ambiguous", "hard-to-learn", "other")


def transitions(log: xr.Dataset) -> xr.Dataset:
    """Count correctness transitions between consecutive snapshots.

    Parameters
    ----------
    log : xarray.Dataset
        A filterscope log with ``correct`` over ``snapshot, sample``.

    Returns
    -------
    xarray.Dataset
        ``wrong_to_right``, ``right_to_wrong``, ``right_to_right``, ``wrong_to_wrong``: int64
        over ``snapshot``, labelled by the snapshot each transition *ends* at, so the first
        snapshot (which has no predecessor) is absent. The four sum to the number of samples.

    Examples
    --------
    >>> import numpy as np
    >>> from filterscope.dynamics import from_arrays, transitions
    >>> v = np.array([[0, 1, 1], [1, 1, 0], [1, 0, 0]], bool)
    >>> t = transitions(from_arrays(v, labels=[0, 0, 1]))
    >>> t.snapshot.values.tolist(), t.wrong_to_right.values.tolist(), t.right_to_wrong.values.tolist()
    ([1, 2], [1, 0], [1, 1])
    """
    correct = load_correct(log)
    n_snapshots, n_samples = correct.shape
    steps = max(n_snapshots - 1, 0)
    right_right = np.zeros(steps, dtype=np.int64)
    right_before = np.zeros(steps, dtype=np.int64)
    right_after = np.zeros(steps, dtype=np.int64)
    for block in sample_blocks(n_snapshots, n_samples):
        prev, cur = correct[:-1, block], correct[1:, block]
        right_right += np.count_nonzero(prev & cur, axis=1)
        right_before += np.count_nonzero(prev, axis=1)
        right_after += np.count_nonzero(cur, axis=1)
    right_wrong = right_before - right_right
    wrong_right = right_after - right_right
    wrong_wrong = n_samples - right_right - right_wrong - wrong_right
    dims = ("snapshot",)
    return xr.Dataset(
        {
            "wrong_to_right": (dims, wrong_right),
            "right_to_wrong": (dims, right_wrong),
            "right_to_right": (dims, right_right),
            "wrong_to_wrong": (dims, wrong_wrong),
        },
        coords=dim_coords(log, "snapshot", slice(1, None)),
    )


def class_error(log: xr.Dataset) -> xr.DataArray:
    """Error of each class at each snapshot: ``1 - correct / size``.

    Parameters
    ----------
    log : xarray.Dataset
        A filterscope log with ``correct`` over ``snapshot, sample`` and ``label`` on ``sample``.

    Returns
    -------
    xarray.DataArray
        float64 over ``(snapshot, class)`` named ``class_error``, with a ``class_size``
        coordinate; NaN for classes without samples.

    Examples
    --------
    >>> import numpy as np
    >>> from filterscope.dynamics import from_arrays, class_error
    >>> v = np.array([[0, 1, 1], [1, 1, 0]], bool)
    >>> class_error(from_arrays(v, labels=[0, 0, 1])).values
    array([[0.5, 0. ],
           [0. , 1. ]])
    """
    correct = load_correct(log)
    classes, n_classes = class_positions(log)
    error = class_error_values(correct, classes, n_classes)
    sizes = class_sizes(classes, n_classes)
    coords: dict[Any, Any] = {**dim_coords(log, "snapshot"), **dim_coords(log, "class")}
    coords["class_size"] = (("class",), sizes)
    return xr.DataArray(error, dims=("snapshot", "class"), coords=coords, name="class_error")


def class_error_values(
    correct: npt.NDArray[Any], classes: npt.NDArray[np.intp], n_classes: int
) -> npt.NDArray[np.float64]:
    """Per-class error ``1 - correct / size`` of a ``(time, sample)`` array -> ``(time, class)``.

    The one implementation of class error: :func:`class_error`, the index's ``class_error``
    and ``cluster_error`` (``classes`` then holds each sample's cluster) all call it.

    Parameters
    ----------
    correct : array-like of bool or 0/1, shape (time, sample)
    classes : numpy.ndarray of int, shape (sample,)
        Position of every sample's class (or group), ``0 .. n_classes - 1``.
    n_classes : int
        Number of classes (groups); those without samples get NaN.

    Examples
    --------
    >>> import numpy as np
    >>> class_error_values(np.array([[1, 0, 1]], bool), np.array([0, 0, 1]), 3)
    array([[0.5, 0. , nan]])
    """
    values = np.asarray(correct)
    if values.dtype != np.bool_:
        values = values.astype(bool)
    right = class_sums(values, classes, n_classes)
    sizes = class_sizes(classes, n_classes)
    with np.errstate(invalid="ignore", divide="ignore"):
        return 1.0 - right / sizes


def forgetting(log: xr.Dataset) -> xr.Dataset:
    """Forgetting events of each sample, and which samples are unforgettable.

    A *forgetting event* is a correct -> incorrect transition between consecutive snapshots.
    A sample is *learned* at the first snapshot where it is correct. It is *unforgettable* when
    it is learned and never forgotten afterwards (no forgetting event at all, since none can
    happen before it is learned); samples never learned are reported apart, as
    ``never_learned``, and are not unforgettable.

    Parameters
    ----------
    log : xarray.Dataset
        A filterscope log with ``correct`` over ``snapshot, sample``.

    Returns
    -------
    xarray.Dataset
        Over ``sample``: ``forgetting_events`` (int64), ``unforgettable`` (bool),
        ``never_learned`` (bool) and ``first_learned`` (int64, the snapshot label where the
        sample is first correct, -1 when never).

    Examples
    --------
    >>> import numpy as np
    >>> from filterscope.dynamics import from_arrays, forgetting
    >>> v = np.array([[0, 0, 0], [1, 1, 0], [0, 1, 0], [1, 1, 0]], bool)
    >>> f = forgetting(from_arrays(v, labels=[0, 0, 0]))
    >>> f.forgetting_events.values.tolist(), f.unforgettable.values.tolist()
    ([1, 0, 0], [False, True, False])
    >>> f.never_learned.values.tolist(), f.first_learned.values.tolist()
    ([False, False, True], [1, 1, -1])
    """
    correct = load_correct(log)
    n_snapshots, n_samples = correct.shape
    events = np.zeros(n_samples, dtype=np.int64)
    learned = np.zeros(n_samples, dtype=bool)
    first = np.zeros(n_samples, dtype=np.intp)
    for block in sample_blocks(n_snapshots, n_samples):
        part = correct[:, block]
        events[block] = np.count_nonzero(part[:-1] & ~part[1:], axis=0)
        learned[block] = part.any(axis=0)
        if n_snapshots:
            first[block] = part.argmax(axis=0)
    snapshot_labels = np.asarray(log["snapshot"].values).astype(np.int64)
    first_learned = np.where(learned, snapshot_labels[first] if n_snapshots else -1, -1)
    dims = ("sample",)
    return xr.Dataset(
        {
            "forgetting_events": (dims, events),
            "unforgettable": (dims, learned & (events == 0)),
            "never_learned": (dims, ~learned),
            "first_learned": (dims, first_learned.astype(np.int64)),
        },
        coords=dim_coords(log, "sample"),
    )


def cartography(
    log: xr.Dataset,
    *,
    easy_confidence: float = 0.7,
    hard_confidence: float = 0.3,
    ambiguous_variability: float = 0.2,
) -> xr.Dataset:
    """Dataset cartography: confidence, variability and correctness of every sample.

    ``confidence`` is the mean over snapshots of ``p_true`` (the probability of the true
    class), ``variability`` its standard deviation (population, ``ddof=0``), ``correctness``
    the fraction of snapshots where the sample is correct. Regions, fixed thresholds:

    * ``"ambiguous"``: ``variability >= ambiguous_variability``;
    * ``"easy-to-learn"``: otherwise, ``confidence >= easy_confidence``;
    * ``"hard-to-learn"``: otherwise, ``confidence <= hard_confidence``;
    * ``"other"``: the rest (steady at middling confidence, or NaN statistics).

    Parameters
    ----------
    log : xarray.Dataset
        A filterscope log with ``p_true`` and ``correct`` over ``snapshot, sample``.
    easy_confidence, hard_confidence : float, default 0.7 and 0.3
        Confidence bounds of the easy and hard regions, ``0 <= hard < easy <= 1``.
    ambiguous_variability : float, default 0.2
        Variability from which a sample is ambiguous (the standard deviation of a probability
        is at most 0.5).

    Returns
    -------
    xarray.Dataset
        Over ``sample``: ``confidence``, ``variability``, ``correctness`` (float64) and
        ``region`` (str, one of :data:`REGIONS`).

    Examples
    --------
    >>> import numpy as np
    >>> from filterscope.dynamics import from_arrays, cartography
    >>> p = np.array([[0.9, 0.1, 0.1], [0.9, 0.1, 0.9], [0.9, 0.1, 0.1], [0.9, 0.1, 0.9]])
    >>> c = cartography(from_arrays(p > 0.5, labels=[0, 0, 0], p_true=p))
    >>> c.region.values.tolist()
    ['easy-to-learn', 'hard-to-learn', 'ambiguous']
    """
    if not 0.0 <= hard_confidence < easy_confidence <= 1.0:
        raise InvalidDataError(
            "need 0 <= hard_confidence < easy_confidence <= 1, got "
            f"hard_confidence={hard_confidence}, easy_confidence={easy_confidence}"
        )
    if not ambiguous_variability > 0.0:
        raise InvalidDataError(
            f"ambiguous_variability must be positive, got {ambiguous_variability}"
        )
    check_log(log, ["p_true"], ["snapshot", "sample"])
    p_true = load(log, "p_true", ("snapshot", "sample"))
    correct = load_correct(log)
    n_snapshots, n_samples = p_true.shape
    confidence = np.empty(n_samples)
    variability = np.empty(n_samples)
    correctness = np.empty(n_samples)
    for block in sample_blocks(n_snapshots, n_samples):
        # Reductions accumulate in float64 from the stored float16 without a float64 copy.
        confidence[block] = p_true[:, block].mean(axis=0, dtype=np.float64)
        variability[block] = p_true[:, block].std(axis=0, dtype=np.float64)
        correctness[block] = correct[:, block].mean(axis=0, dtype=np.float64)
    steady = variability < ambiguous_variability
    region = np.select(
        [
            variability >= ambiguous_variability,
            steady & (confidence >= easy_confidence),
            steady & (confidence <= hard_confidence),
        ],
        [REGIONS[1], REGIONS[0], REGIONS[2]],
        default=REGIONS[3],
    )
    dims = ("sample",)
    return xr.Dataset(
        {
            "confidence": (dims, confidence),
            "variability": (dims, variability),
            "correctness": (dims, correctness),
            "region": (dims, region.astype(str)),
        },
        coords=dim_coords(log, "sample"),
        attrs={
            "easy_confidence": easy_confidence,
            "hard_confidence": hard_confidence,
            "ambiguous_variability": ambiguous_variability,
        },
    )


def aum(log: xr.Dataset, *, quantile: float | None = None) -> xr.Dataset:
    """Area under the margin of every sample, flagging the possibly mislabeled ones.

    The AUM is the mean over snapshots of ``margin`` (true-class score minus the largest other
    score, as recorded). A sample is flagged as possibly mislabeled when its AUM is negative
    (``quantile=None``: on average another class beats the label), or, with ``quantile=q``,
    when its AUM is at most the ``q``-quantile of all AUMs (the lowest ``q`` fraction).

    Parameters
    ----------
    log : xarray.Dataset
        A filterscope log with ``margin`` over ``snapshot, sample``.
    quantile : float, optional
        Flag the bottom ``quantile`` fraction, ``0 < quantile < 1``, instead of ``AUM < 0``.

    Returns
    -------
    xarray.Dataset
        Over ``sample``: ``aum`` (float64) and ``possibly_mislabeled`` (bool); attribute
        ``rule`` says which rule flagged.

    Examples
    --------
    >>> import numpy as np
    >>> from filterscope.dynamics import from_arrays, aum
    >>> m = np.array([[2.0, -1.0, 0.5], [4.0, -2.0, -1.5]])
    >>> a = aum(from_arrays(m > 0, labels=[0, 0, 0], margin=m))
    >>> a.aum.values.tolist(), a.possibly_mislabeled.values.tolist()
    ([3.0, -1.5, -0.5], [False, True, True])
    """
    if quantile is not None and not 0.0 < quantile < 1.0:
        raise InvalidDataError(f"quantile must lie strictly between 0 and 1, got {quantile}")
    check_log(log, ["margin"], ["snapshot", "sample"])
    margin = load(log, "margin", ("snapshot", "sample"))
    n_snapshots, n_samples = margin.shape
    area = np.empty(n_samples)
    for block in sample_blocks(n_snapshots, n_samples):
        area[block] = margin[:, block].mean(axis=0, dtype=np.float64)
    if quantile is None:
        flagged = area < 0.0
        rule = "aum < 0"
    else:
        cut = float(np.nanquantile(area, quantile)) if n_samples else np.nan
        flagged = area <= cut
        rule = f"aum <= {quantile}-quantile ({cut:.6g})"
    dims = ("sample",)
    return xr.Dataset(
        {"aum": (dims, area), "possibly_mislabeled": (dims, flagged)},
        coords=dim_coords(log, "sample"),
        attrs={"rule": rule},
    )
