"""Shared plumbing of the dynamics functions: log checks, block iteration and class sums.

Every public function loads a per-sample variable once (a dask-backed log is computed in one
pass, so chunked stores are read once) and then walks it in blocks of samples, which bounds the
temporaries to ``_BLOCK_ELEMENTS`` values whatever the size of the log.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterator, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
import scipy.sparse as sp
import xarray as xr

from filterscope.errors import InvalidDataError, LogFormatError

# About 4 M values per block: 4 MB of bool, 32 MB of float64 temporaries at most.
_BLOCK_ELEMENTS = 1 << 22


def check_log(log: Any, variables: Sequence[str], dims: Sequence[str]) -> xr.Dataset:
    """Return ``log`` after checking it is a Dataset holding ``variables`` over ``dims``."""
    if not isinstance(log, xr.Dataset):
        raise LogFormatError(
            f"expected the xarray.Dataset of a filterscope log, got {type(log).__name__}; "
            "open one with filterscope.open_log(path) or build one with "
            "filterscope.dynamics.from_arrays(...)"
        )
    missing_dims = [d for d in dims if d not in log.dims]
    if missing_dims:
        raise LogFormatError(
            f"the log lacks the dimension(s) {missing_dims}; it has {sorted(map(str, log.dims))}. "
            "Pass the Dataset returned by filterscope.open_log(path) without dropping them."
        )
    for name in variables:
        if name not in log.variables:
            raise LogFormatError(
                f"the log has no variable {name!r}; it has {sorted(map(str, log.data_vars))}. "
                "Pass a log written by filterscope.Recorder; per-sample variables of another "
                "evaluation set come from filterscope.open_log(path, eval_set=...)."
            )
    return log


def load(log: xr.Dataset, name: str, dims: tuple[str, ...]) -> npt.NDArray[Any]:
    """Return variable ``name`` as a numpy array ordered as ``dims`` (computing dask once)."""
    da = log[name]
    if set(da.dims) != set(dims):
        raise LogFormatError(
            f"variable {name!r} should span {dims}, it spans {da.dims}; "
            "the log does not follow filterscope_format 1."
        )
    return da.transpose(*dims).values


def load_correct(log: xr.Dataset) -> npt.NDArray[np.bool_]:
    """Return ``correct`` as a (snapshot, sample) bool array."""
    check_log(log, ["correct"], ["snapshot", "sample"])
    values = load(log, "correct", ("snapshot", "sample"))
    if values.dtype != np.bool_:
        if values.size and not np.isin(values, (0, 1)).all():
            raise InvalidDataError(
                f"'correct' must hold booleans (or 0/1), got dtype {values.dtype} with other "
                "values; record correctness as prediction == label."
            )
        values = values.astype(bool)
    return values


def class_positions(log: xr.Dataset) -> tuple[npt.NDArray[np.intp], int]:
    """Return each sample's position on the ``class`` axis and the number of classes."""
    check_log(log, [], ["sample", "class"])
    if "label" not in log.coords:
        raise LogFormatError(
            "the log has no 'label' coordinate on 'sample'; filterscope_format 1 stores each "
            "sample's true class there."
        )
    labels = np.asarray(log["label"].transpose("sample").values)
    classes = pd.Index(np.asarray(log["class"].values))
    positions = classes.get_indexer(labels)
    if (positions < 0).any():
        bad = int(np.flatnonzero(positions < 0)[0])
        raise InvalidDataError(
            f"sample {bad} has label {labels[bad]!r}, which is not on the class axis "
            f"({len(classes)} classes); when selecting classes, select their samples too, "
            "e.g. log.where(log.label.isin(classes), drop=True)."
        )
    return positions.astype(np.intp), len(classes)


def block_length(row_size: int) -> int:
    """Number of rows of ``row_size`` values that fit in one block of ``_BLOCK_ELEMENTS``."""
    return max(1, _BLOCK_ELEMENTS // max(row_size, 1))


def sample_blocks(n_snapshots: int, n_samples: int) -> Iterator[slice]:
    """Yield slices over samples holding about ``_BLOCK_ELEMENTS`` values each."""
    step = block_length(n_snapshots)
    for start in range(0, n_samples, step):
        yield slice(start, min(start + step, n_samples))


def class_sums(
    values: npt.NDArray[Any], classes: npt.NDArray[np.intp], n_classes: int
) -> npt.NDArray[np.int64]:
    """Sum a (snapshot, sample) array of 0/1 values over each class's samples -> (snapshot, class)."""
    n_snapshots, n_samples = values.shape
    out = np.zeros((n_snapshots, n_classes), dtype=np.int64)
    for block in sample_blocks(n_snapshots, n_samples):
        size = block.stop - block.start
        # A one-hot (sample, class) matrix turns the per-class sum into one sparse product.
        onehot = sp.csr_array(
            (np.ones(size, dtype=np.int32), (np.arange(size), classes[block])),
            shape=(size, n_classes),
        )
        out += onehot.T.dot(values[:, block].T.astype(np.int32)).T
    return out


def class_sizes(classes: npt.NDArray[np.intp], n_classes: int) -> npt.NDArray[np.int64]:
    """Number of samples of each class."""
    return np.bincount(classes, minlength=n_classes).astype(np.int64)


def dim_coords(
    log: xr.Dataset, dim: str, index: slice | None = None
) -> dict[Hashable, tuple[tuple[Hashable, ...], npt.NDArray[Any]]]:
    """Every coordinate of ``log`` that lies on ``dim`` alone, optionally sliced."""
    out: dict[Hashable, tuple[tuple[Hashable, ...], npt.NDArray[Any]]] = {}
    for name, coord in log.coords.items():
        if coord.dims == (dim,):
            values = np.asarray(coord.values)
            out[name] = ((dim,), values if index is None else values[index])
    return out


def snapshot_positions(log: xr.Dataset, snapshots: Any) -> npt.NDArray[np.intp]:
    """Positions of the snapshot labels ``snapshots`` (one label or several) on the log's axis."""
    check_log(log, [], ["snapshot"])
    labels = np.atleast_1d(np.asarray(snapshots))
    if labels.ndim != 1:
        raise InvalidDataError(
            f"snapshots must be one snapshot label or a 1-D sequence of them, got shape "
            f"{labels.shape}"
        )
    axis = pd.Index(np.asarray(log["snapshot"].values))
    positions = axis.get_indexer(labels)
    if (positions < 0).any():
        bad = labels[positions < 0].tolist()
        raise InvalidDataError(
            f"snapshot(s) {bad} are not in the log, whose snapshots run from "
            f"{axis.min() if len(axis) else None} to {axis.max() if len(axis) else None}; "
            "pick labels of the 'snapshot' coordinate."
        )
    return positions.astype(np.intp)
