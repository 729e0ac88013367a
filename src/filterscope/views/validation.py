"""ValidationView: DeepTracker's class clusters → classes → images heat lines over training."""

from __future__ import annotations

import struct
import zlib
from typing import Any

import numpy as np
import traitlets
import xarray as xr
from traitlets import Bunch, Dict, Enum, Int, List, Tuple, Unicode, Union

from filterscope.dynamics.validation import ORDERS, class_marks, order_classes, order_rows
from filterscope.errors import InvalidParameterError, InvalidSelectionError
from filterscope.views._base import PAGE_WRITABLE, ViewWidget, request, require_log
from filterscope.views._data import index_of, stored_counts
from filterscope.views._serialization import ARRAY_SERIALIZATION
from filterscope.views.selection import Selection, StepValidators, check_window

DEFAULT_MAX_POINTS = 2000
"""Snapshot columns asked of the index; longer runs arrive as bucket means."""

MAX_ROWS = 2000
"""Most image rows one ``rows`` answer holds (the first ones in display order)."""

_WRITABLE = {PAGE_WRITABLE: True}

ACCURACY_STEPS = 254
"""Accuracy travels as uint8: ``round(accuracy * 254)``, steps of 1/254 (0.4 %)."""
ACCURACY_NAN = 255
"""The uint8 code of a missing accuracy (a class without images, a bucket without values)."""


def quantise_accuracy(values: np.ndarray) -> np.ndarray:
    """Accuracies in [0, 1] as the uint8 codes the page decodes (``js/src/validation.ts``).

    ``round(value * 254)``, and :data:`ACCURACY_NAN` (255) where the value is NaN; the page
    divides by 254. A quarter of float32's bytes, finer than the colour scale draws.

    Examples
    --------
    >>> quantise_accuracy(np.array([0.0, 0.5, 1.0, np.nan])).tolist()
    [0, 127, 254, 255]
    """
    array = np.asarray(values, dtype=np.float64)
    missing = ~np.isfinite(array)
    codes = np.rint(np.clip(np.nan_to_num(array), 0.0, 1.0) * ACCURACY_STEPS).astype(np.uint8)
    codes[missing] = ACCURACY_NAN
    return codes


def png_bytes(image: np.ndarray) -> bytes:
    """Encode a uint8 ``(rows, columns, 1 or 3)`` image as PNG (grayscale or RGB), no Pillow.

    Examples
    --------
    >>> png_bytes(np.zeros((2, 3, 1), np.uint8))[:8]
    b'\\x89PNG\\r\\n\\x1a\\n'
    """
    image = np.ascontiguousarray(image, dtype=np.uint8)
    rows, cols, channels = image.shape
    raw = np.concatenate(
        [np.zeros((rows, 1), np.uint8), image.reshape(rows, cols * channels)], axis=1
    )

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))

    header = struct.pack(">IIBBBBB", cols, rows, 8, 0 if channels == 1 else 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw.tobytes()))
        + chunk(b"IEND", b"")
    )


def _positive(name: str, value: Any, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < low:
        raise InvalidParameterError(f"{name} must be an integer >= {low}, got {value!r}")
    return int(value)


class ValidationView(StepValidators, ViewWidget):
    """DeepTracker's validation view: how each class's accuracy evolves, and which images flip.

    One heat line per class over the snapshots, coloured by the class's accuracy on DeepTracker's
    diverging scale (red at 0, pale yellow at 0.5, greens from 0.52 to 1), under one aggregated
    line per class cluster (k-means of the standardised error series, from the index). Up
    triangles mark the snapshots where ``abLeft`` at lag ``j`` reaches ``threshold`` (images
    that flip after holding the other state for ``j + 1`` snapshots), down triangles one column
    later where ``abRight`` does; their size follows the count. Classes are ordered by a 1-D MDS
    of their error series, or by peak flag count (``order``). Clicking a class name expands it:
    the page asks for its images (a request), one row per image, green where it is correct and
    red where it is wrong, ordered by a 1-D MDS of their correctness series; clicking an image
    row shows its thumbnail (when the log has thumbnails). The time axis is shared with the
    other views of the selection: hover, zoom (drag; double-click zooms out) and picks (click a
    heat line).

    Parameters
    ----------
    log : xarray.Dataset
        A filterscope log with ``correct`` (as :func:`filterscope.open_log` returns it, or an
        in-memory one, which gets a private index).
    selection : Selection, optional
        Shared selection linking ``picked_steps``, ``time_window``, ``class_`` and
        ``sample_index``; a new one if omitted.
    j : int, default 30
        Lag of the unstable-image counts (0 with ``threshold=30`` is DeepTracker's "immediate
        change" mode).
    threshold : int, default 5
        Count at which a snapshot gets a triangle.
    order : {"mds", "peak"}, default "mds"
        Initial class order.
    max_points : int, default 2000
        Snapshot columns asked of the index; longer runs arrive as bucket means.

    Attributes
    ----------
    class_ : int, str or None
        Selected class (a label of the ``class`` coordinate); the page expands it.
    sample_index : int or None
        Selected image (a position on ``sample``); the page shows its thumbnail.
    picked_steps, time_window
        As in :class:`~filterscope.ModelInfo`.
    order : str
        ``"mds"`` or ``"peak"``; the page may change it.
    data : dict
        What the page draws (read-only); the shape is in ``docs/api.md``.

    Raises
    ------
    InvalidDataError, LogFormatError
        If ``log`` is not a filterscope log with ``correct`` and classes.
    InvalidParameterError
        On a bad ``j``, ``threshold``, ``order`` or ``max_points``.
    InvalidSelectionError
        When a trait is set to a class, sample or step the log does not have.

    Examples
    --------
    >>> import filterscope as fs
    >>> view = fs.ValidationView(fs.open_log("runs/demo"))  # doctest: +SKIP
    >>> view.class_ = 3  # expands class 3 in the page  # doctest: +SKIP
    """

    _view = Unicode("validation", read_only=True).tag(sync=True)
    _selection_traits = ("picked_steps", "time_window", "class_", "sample_index")
    data = Dict(read_only=True).tag(sync=True, **ARRAY_SERIALIZATION)
    picked_steps = List(Int()).tag(sync=True, **_WRITABLE)
    time_window = Tuple(Int(), Int(), default_value=None, allow_none=True).tag(
        sync=True, **_WRITABLE
    )
    class_ = Union([Int(), Unicode()], default_value=None, allow_none=True).tag(
        sync=True, **_WRITABLE
    )
    sample_index = Int(default_value=None, allow_none=True).tag(sync=True, **_WRITABLE)
    order = Enum(ORDERS, default_value="mds").tag(sync=True, **_WRITABLE)

    def __init__(
        self,
        log: xr.Dataset,
        *,
        selection: Selection | None = None,
        j: int = 30,
        threshold: int = 5,
        order: str = "mds",
        max_points: int = DEFAULT_MAX_POINTS,
    ) -> None:
        log = require_log(log, ["correct"])
        if "class" not in log.dims or "label" not in log.coords:
            raise InvalidParameterError(
                "ValidationView needs a log with classes (a 'class' axis and sample labels)"
            )
        j = _positive("j", j, 0)
        threshold = _positive("threshold", threshold, 1)
        self._columns = _positive("max_points", max_points, 2)
        if order not in ORDERS:
            raise InvalidParameterError(f"order must be one of {list(ORDERS)}, got {order!r}")
        self._load(log, j, threshold)
        super().__init__(selection=selection)
        self.order = order

    def _load(self, log: xr.Dataset, j: int, threshold: int) -> None:
        self._log = log
        self._labels = np.asarray(log["class"].values)
        self._n_samples = int(log.sizes["sample"])
        self._index = index_of(log, ["correct", "class_error", "cluster_error"])
        self.set_trait("data", self._overview(j, threshold))

    def _reload(self, log: xr.Dataset) -> None:
        self._load(require_log(log, ["correct"]), int(self.data["j"]), int(self.data["threshold"]))

    # ------------------------------------------------------------------ data
    def _overview(self, j: int, threshold: int) -> dict[str, Any]:
        log = self._log
        snapshot_step = np.asarray(
            log["snapshot_step"].values if "snapshot_step" in log.coords else log["snapshot"]
        ).astype(np.int64)
        self._snapshot_step = snapshot_step
        self._snapshots = np.asarray(log["snapshot"].values)
        steps = np.asarray(log["step"].values, np.int64) if "step" in log.dims else snapshot_step
        every = np.concatenate([steps, snapshot_step])
        self._step_range = (int(every.min()), int(every.max())) if every.size else (0, 0)
        idx = self._index
        counts = stored_counts(log, idx, j)
        marks = class_marks(log, j=j, threshold=threshold, counts=counts)
        self._marks = {name: np.asarray(marks[name].values) for name in ("up", "down")}
        columns = self._columns_of(0, len(snapshot_step) - 1)
        mean_error = 1.0 - columns.pop("accuracy_f64")
        peak = np.asarray(marks.peak_count.values)
        # The index's MDS order of the whole run is this one when the columns are the raw
        # snapshots of the whole run.
        mds = idx.class_order() if counts is not None and columns["level"] == 0 else None
        if mds is None or len(mds) != mean_error.shape[1]:
            mds = order_classes(mean_error, "mds")
        names = (
            [str(n) for n in log["class_name"].values]
            if "class_name" in log.coords
            else [str(label) for label in self._labels]
        )
        return {
            "step_range": list(self._step_range),
            "snapshot_step": snapshot_step,
            **columns,
            "labels": self._labels,
            "names": names,
            "cluster": np.asarray(idx.class_cluster.values, np.int64)
            if self._clustered and idx.class_cluster is not None
            else np.zeros(0, np.int64),
            "order_mds": np.asarray(mds, np.intp),
            "order_peak": order_classes(mean_error, "peak", peak, mds=mds),
            "peak": peak,
            "shown": np.asarray(marks.class_shown.values),
            "j": j,
            "threshold": threshold,
            "thumbnails": "thumbnail" in log.variables,
            "n_samples": self._n_samples,
        }

    @property
    def _clustered(self) -> bool:
        return "cluster_error" in self._index.variables and self._index.class_cluster is not None

    def _time(self, first: int, last: int) -> slice:
        """The index's time window of the log's snapshots ``first..last`` (positions)."""
        return slice(int(self._snapshots[first]), int(self._snapshots[last]))

    def _columns_of(self, first: int, last: int) -> dict[str, Any]:
        """Columns over the log's snapshots ``first..last``: their steps, the class and cluster
        accuracy per column (at the level that fits ``max_points``) and the triangles."""
        idx, time = self._index, self._time(first, last)
        error = idx.query("class_error", time=time, columns=self._columns)
        level = int(error.attrs["level"])
        mean_error = error.sel(agg="mean").transpose("snapshot", "class").values
        # Bucket edges as positions on the log's snapshots (the index speaks in labels; a
        # bucket may start before a subset log's first snapshot).
        labels, top = self._snapshots, len(self._snapshots) - 1
        starts = np.clip(np.searchsorted(labels, error["bucket_start"].values, "left"), 0, top)
        stops = np.clip(np.searchsorted(labels, error["bucket_stop"].values, "right") - 1, 0, top)
        n_cols = len(starts)
        cluster_accuracy = np.zeros((0, n_cols))
        if self._clustered:
            cluster_error = idx.query("cluster_error", time=time, columns=self._columns)
            cluster_accuracy = 1.0 - cluster_error.sel(agg="mean").values.T
        # Column of each of the window's snapshots: the bucket holding it.
        col_of = np.searchsorted(starts, np.arange(first, last + 1), "right") - 1
        return {
            "x0": self._snapshot_step[starts],
            "x1": self._snapshot_step[stops],
            "level": level,
            "accuracy": quantise_accuracy(1.0 - mean_error.T),
            "accuracy_f64": 1.0 - mean_error,
            "cluster_accuracy": quantise_accuracy(cluster_accuracy),
            **{
                name: self._sparse(counts[first : last + 1], col_of, n_cols)
                for name, counts in self._marks.items()
            },
        }

    def _window_positions(self, start: Any, stop: Any) -> tuple[int, int]:
        """Snapshots (positions) drawn for steps ``start..stop``: from the one at or before
        ``start`` to the one after ``stop``, as ModelInfo draws its lines to both edges."""
        if any(isinstance(v, bool) or not isinstance(v, int) for v in (start, stop)):
            raise InvalidSelectionError(
                f"a window is two whole steps (start, stop), got {start!r}, {stop!r}"
            )
        check_window("window", (start, stop))
        lo, hi = self._step_range
        if stop < lo or start > hi:
            raise InvalidSelectionError(
                f"the window ({start}, {stop}) is outside this run's steps {lo} to {hi}"
            )
        at, n = self._snapshot_step, len(self._snapshot_step)
        first = max(int(np.searchsorted(at, start, "right")) - 1, 0)
        last = min(int(np.searchsorted(at, stop, "right")), n - 1)
        return first, last

    @staticmethod
    def _sparse(counts: np.ndarray, col_of: np.ndarray, n_cols: int) -> dict[str, np.ndarray]:
        """Marks ``(snapshot, class)`` as lists: class, column, count (largest per column)."""
        snapshot, cls = np.nonzero(counts)
        grid = np.zeros((counts.shape[1], max(n_cols, 1)), np.int32)
        np.maximum.at(grid, (cls, col_of[snapshot]), counts[snapshot, cls])
        where_class, where_col = np.nonzero(grid)
        return {
            "class": where_class.astype(np.int32),
            "col": where_col.astype(np.int32),
            "count": grid[where_class, where_col],
        }

    def _class_position(self, label: Any) -> int:
        found = np.flatnonzero(self._labels.astype(str) == str(label))
        if isinstance(label, bool) or found.size == 0:
            shown = self._labels[:8].tolist()
            raise InvalidSelectionError(
                f"class {label!r} is not in this log; its class labels are {shown}"
                f"{' …' if len(self._labels) > 8 else ''}"
            )
        return int(found[0])

    # ------------------------------------------------------------------ requests
    @request("window")
    def _window(self, start: int, stop: int) -> dict[str, Any]:
        """The columns over steps ``start..stop``, at the finer level that fits ``max_points``."""
        columns = self._columns_of(*self._window_positions(start, stop))
        columns.pop("accuracy_f64")
        return {"window": [start, stop], **columns}

    @request("rows")
    def _rows(
        self, class_: Any, limit: int = MAX_ROWS, start: Any = None, stop: Any = None
    ) -> dict[str, Any]:
        """One row per image of ``class_``: fraction correct per column, in MDS order; over the
        columns of the window ``start..stop`` (steps) when given, else of the whole run."""
        if not isinstance(class_, int | str):
            raise InvalidSelectionError(f"class_ must be a class label, got {class_!r}")
        label = self._labels[self._class_position(class_)]
        limit = _positive("limit", limit, 1)
        first, last = (
            (0, len(self._snapshots) - 1)
            if start is None and stop is None
            else self._window_positions(start, stop)
        )
        answer = self._index.query(
            "correct", time=self._time(first, last), columns=self._columns, class_=label
        )
        values = answer.sel(agg="mean").transpose("snapshot", "sample").values
        samples = np.asarray(answer["sample"].values, np.int64)
        order = order_rows(values)[:limit]
        return {
            "class_": label.item(),
            "samples": samples[order],
            "values": np.nan_to_num(values[:, order].T, nan=0.0).astype(np.float32),
            "total": len(samples),
        }

    @request("thumbnail")
    def _thumbnail(self, sample: int) -> dict[str, Any]:
        """The PNG bytes of image ``sample``'s thumbnail."""
        if isinstance(sample, bool) or not isinstance(sample, int):
            raise InvalidSelectionError(f"sample must be a sample position, got {sample!r}")
        if not 0 <= sample < self._n_samples:
            raise InvalidSelectionError(
                f"sample {sample} is outside this log's samples 0..{self._n_samples - 1}"
            )
        if "thumbnail" not in self._log.variables:
            raise InvalidParameterError(
                "this log has no thumbnails: record with filterscope.Recorder(thumbnails=True) "
                "(the default) and image inputs"
            )
        image = np.asarray(self._log["thumbnail"].isel(sample=sample).values, np.uint8)
        return {
            "sample": sample,
            "png": np.frombuffer(png_bytes(image), np.uint8),
            "width": int(image.shape[1]),
            "height": int(image.shape[0]),
        }

    # ------------------------------------------------------------------ validation
    @traitlets.validate("class_")
    def _valid_class(self, proposal: Bunch) -> Any:
        if proposal.value is None:
            return None
        return self._labels[self._class_position(proposal.value)].item()

    @traitlets.validate("sample_index")
    def _valid_sample(self, proposal: Bunch) -> int | None:
        value = proposal.value
        if value is not None and not 0 <= value < self._n_samples:
            raise InvalidSelectionError(
                f"sample_index must be a position on this log's samples, 0..{self._n_samples - 1}; "
                f"got {value!r}"
            )
        return value
