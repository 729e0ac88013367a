"""The :class:`Index`: one query API for every view, plot and user, at any level of detail."""

from __future__ import annotations

import os
import threading
import weakref
import zlib
from collections import OrderedDict
from collections.abc import Hashable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import pandas as pd
import xarray as xr
import zarr

from filterscope.errors import InvalidDataError, InvalidParameterError, LogFormatError
from filterscope.index.build import (
    CLUSTER_K,
    FIRST_STORED,
    INDEX_GROUP,
    NODE_VARS,
    VarSpec,
    committed_sizes,
    read_state,
)
from filterscope.index.build import build as build_
from filterscope.index.hierarchy import APPROXIMATE_STATS, LayerTree, layer_tree
from filterscope.index.pyramid import (
    AGGREGATES,
    choose_level,
    coarsen_pairs,
    first_level,
    n_levels,
)
from filterscope.index.unstable import read_correlation, read_counts

#: Arrays up to this size are read whole once and then answered from memory…
_SMALL_ARRAY_BYTES = 32 << 20
#: … keeping at most this much.
_CACHE_BYTES = 256 << 20


class Index:
    """Multi-resolution summaries of a log, and the window queries views make on them.

    For every variable over ``snapshot`` or ``step`` the index keeps a time pyramid: level
    ``k`` holds the NaN-aware min, max, mean and count of buckets of ``2**k`` entries, level 0
    the raw values. On top of the log's variables it keeps ``class_error`` (per class),
    ``cluster_error`` (per k-means cluster of classes, DeepTracker's validation view) and the
    layer-tree aggregates ``node_weight_stat``, ``node_grad_stat`` and ``node_change_ratio``
    (model, stages, blocks, layers). The index lives in the ``index`` group of the log's
    store; reach it with :func:`index_of` (a log opened from its path: opened, built on first
    use, extended as the log grows), or :func:`open_index` / :func:`build_index`.

    Parameters
    ----------
    log : xarray.Dataset
        The log the index summarises (as :func:`filterscope.open_log` returns it).
    store : str or pathlib.Path
        The zarr store holding the index (the log's own store).
    group : str, default "index"
        Group of the index inside ``store``.

    Raises
    ------
    filterscope.LogFormatError
        If ``store`` holds no index; build one with :func:`build_index`.

    Examples
    --------
    >>> import tempfile
    >>> import numpy as np
    >>> from filterscope.dynamics import from_arrays
    >>> from filterscope.index import build_index
    >>> rng = np.random.default_rng(0)
    >>> log = from_arrays(rng.random((100, 30)) < 0.8, labels=np.arange(30) % 3)
    >>> idx = build_index(log, tempfile.mkdtemp() + "/index.zarr")
    >>> err = idx.query("class_error", columns=25)  # 100 snapshots in buckets of 4
    >>> err.attrs["level"], dict(err.sizes)
    (2, {'agg': 4, 'snapshot': 25, 'class': 3})
    >>> err.bucket_start.values[:3].tolist(), err.bucket_stop.values[:3].tolist()
    ([0, 4, 8], [3, 7, 11])
    >>> raw = idx.query("correct", time=slice(0, 9), class_=1, level=0)  # drill down
    >>> bool((raw.sel(agg="mean") == log.correct.sel(snapshot=slice(0, 9), sample=raw.sample)).all())
    True
    """

    _signature: tuple[tuple[int, int, int, int] | None, ...] | None = None

    def __init__(self, log: xr.Dataset, store: str | Path, *, group: str = INDEX_GROUP) -> None:
        self.log = log
        self.store = str(store)
        self.group = group
        self._cache: OrderedDict[tuple[str, str], npt.NDArray[Any]] = OrderedDict()
        self._load()

    # ------------------------------------------------------------------ state
    def _load(self) -> None:
        state = read_state(self.store, self.group)
        if state is None:
            raise LogFormatError(
                f"{self.store} holds no filterscope index (group {self.group!r}); build it with "
                "filterscope.index.build_index(path)"
            )
        self.specs = {name: VarSpec.from_json(value) for name, value in state["variables"].items()}
        self.committed: dict[str, int] = {k: int(v) for k, v in state["committed"].items()}
        self._requested: list[str] | None = state.get("requested")
        self._root = zarr.open_group(self.store, path=self.group, mode="r")
        self._arrays: dict[tuple[str, str], zarr.Array] = {}
        self._cache.clear()
        log = self.log
        self._labels: dict[str, npt.NDArray[Any]] = {}
        self._coords: dict[str, dict[Hashable, npt.NDArray[Any]]] = {}
        dims = {d for spec in self.specs.values() for d in (spec.time, *spec.dims)}
        for dim in dims:
            if dim in log.dims:
                length = self.committed.get(dim, int(log.sizes[dim]))
                self._labels[dim] = (
                    np.asarray(log[dim].values[:length])
                    if dim in log.coords
                    else np.arange(length, dtype=np.int64)
                )
                self._coords[dim] = {
                    name: np.asarray(c.values[:length])
                    for name, c in log.coords.items()
                    if c.dims == (dim,) and name != dim
                }
        self.tree: LayerTree | None = None
        if any(spec.kind.startswith("node") for spec in self.specs.values()):
            tree = layer_tree(log)
            self.tree = tree
            self._labels["node"] = np.asarray(tree.name, dtype=object)
            self._coords["node"] = {
                "node_level": np.asarray(tree.level),
                "node_parent": np.asarray(tree.parent),
                "node_params": tree.node_params,
            }
        if "sample_order" in self._root:
            order = self._small("sample_order")
            self._sample_rank = np.empty_like(order)
            self._sample_rank[order] = np.arange(order.size)
        if "class_cluster" in self._root:
            n_clusters = int(state.get("cluster_k", 0))
            self._labels["cluster"] = np.arange(n_clusters, dtype=np.int64)
            self._coords["cluster"] = {}
            self.class_cluster: xr.DataArray | None = xr.DataArray(
                self._small("class_cluster"),
                dims="class",
                coords={
                    "class": self._labels["class"],
                    **{name: ("class", v) for name, v in self._coords.get("class", {}).items()},
                },
                name="class_cluster",
            )
        else:
            self.class_cluster = None

    def _small(self, name: str) -> npt.NDArray[Any]:
        array = self._root[name]
        assert isinstance(array, zarr.Array)
        return np.asarray(array[...])

    @property
    def variables(self) -> tuple[str, ...]:
        """Names that :meth:`query` accepts (log variables and derived ones)."""
        return tuple(self.specs)

    @property
    def stale(self) -> bool:
        """True when the log holds snapshots or steps the index has not summarised yet."""
        return committed_sizes(self.log) != self.committed

    def refresh(self, log: xr.Dataset | None = None) -> Index:
        """Bring the index up to date with ``log`` (default: the log it holds), in place.

        Only the blocks from the last partial one on are recomputed; a live training run calls
        this with ``filterscope.open_log(path)`` after new snapshots are committed.
        """
        if log is not None:
            self.log = log
        if self.stale:
            build_(self.log, self.store, group=self.group, variables=self._requested)
            self._load()
        return self

    def labels(self, dim: str) -> npt.NDArray[Any]:
        """Labels of ``dim`` (``snapshot``, ``step``, ``class``…) as far as the index covers it."""
        if dim not in self._labels:
            raise InvalidParameterError(
                f"the index has no dimension {dim!r}; it has {sorted(self._labels)}"
            )
        return self._labels[dim]

    def levels(self, var: str) -> int:
        """Index of the coarsest level of ``var`` (a single bucket covers all of time)."""
        spec = self._spec(var)
        return n_levels(self.committed.get(spec.time, 0))

    def nodes(self) -> xr.Dataset:
        """The layer tree: name, level, parent and weight count of every node."""
        if self.tree is None:
            raise InvalidDataError("this index has no layer statistics, hence no layer tree")
        return xr.Dataset(
            coords={
                "node": self._labels["node"],
                **{name: ("node", values) for name, values in self._coords["node"].items()},
            }
        )

    def unstable_counts(self, j: int) -> xr.Dataset | None:
        """The unstable-sample counts of every class at lag ``j``, if the index keeps them.

        ``ab_left`` and ``ab_right`` (int32 over ``snapshot, class``) as
        :func:`filterscope.dynamics.validation.lag_counts` computes them on the whole log, for
        the lags of the presets of :func:`~filterscope.dynamics.unstable_samples` (30 and 0),
        over the snapshots the index covers; None for another lag or an index without them.
        What :func:`~filterscope.dynamics.validation.class_marks` and
        :func:`~filterscope.dynamics.cube.cube_faces` take as ``counts``.
        """
        if "snapshot" not in self._labels or "class" not in self._labels:
            return None
        snapshots = self._labels["snapshot"]
        found = read_counts(self._root, int(j), len(snapshots))
        if found is None:
            return None
        coords = {"snapshot": snapshots, "class": self._labels["class"]}
        return xr.Dataset(
            {name: (("snapshot", "class"), values) for name, values in found.items()},
            coords=coords,
            attrs={"j": int(j)},
        )

    def cube_correlation(self, k: int, metric: str, preset: str) -> xr.DataArray | None:
        """The cube's layer × class correlation over the whole run, if the index keeps it for
        these settings (it keeps :data:`~filterscope.index.unstable.CUBE_DEFAULTS`: CubeView's
        defaults); what :func:`~filterscope.dynamics.cube.cube_faces` takes as
        ``correlation``. None otherwise."""
        if "snapshot" not in self._labels:
            return None
        found = read_correlation(
            self._root, len(self._labels["snapshot"]), k=k, metric=metric, preset=preset
        )
        if found is None or "layer" not in self.log.dims or "class" not in self._labels:
            return None
        return xr.DataArray(
            found,
            dims=("layer", "class"),
            coords={"layer": np.asarray(self.log["layer"].values), "class": self._labels["class"]},
            name="layer_class_correlation",
            attrs={"k": k, "metric": metric},
        )

    def class_order(self) -> npt.NDArray[np.intp] | None:
        """Positions of the classes in a 1-D MDS order of their error series over the whole
        run (:func:`~filterscope.dynamics.validation.order_classes` of ``class_error`` at level
        0), or None for an index without it."""
        if "class_mds" not in self._root:
            return None
        return self._small("class_mds").astype(np.intp)

    # ------------------------------------------------------------------ query
    def query(
        self,
        var: str,
        time: slice | None = None,
        columns: int = 2000,
        rows: Any = None,
        level: int | Literal["auto"] = "auto",
        *,
        node: str | Sequence[str] | None = None,
        class_: Any = None,
        cluster: Any = None,
    ) -> xr.DataArray:
        """Summaries of ``var`` over a time window, at the level that fills ``columns``.

        Parameters
        ----------
        var : str
            A variable of :attr:`variables`; ``weight_stat``, ``grad_stat`` and
            ``change_ratio`` with ``node=`` read the layer-tree aggregates.
        time : slice, optional
            Window of time labels, both ends included as in ``Dataset.sel``; default: all.
        columns : int, default 2000
            Pixels available. The answer holds at most ``columns`` buckets: the raw values
            when the window has at most ``columns`` entries, else the finest level whose
            buckets overlapping the window number at most ``columns`` (so more than about
            ``columns / 2``).
        rows : selector or dict, optional
            Labels to keep on the non-time dimensions, as in ``Dataset.sel``: a dict
            ``{dim: labels}`` or the labels of the first non-time dimension. A scalar label
            drops its dimension.
        level : int or "auto", default "auto"
            Force a level; 0 returns the exact raw values (drill-down).
        node : str or list of str, optional
            Layer-tree node(s), e.g. ``"layer2"`` or ``"layer2.0.conv1"``: selects the node
            aggregates of layer variables, or the filters under the node(s) for per-filter
            variables.
        class_ : label or list of labels, optional
            Classes: selects their samples for per-sample variables, or their rows of
            ``class_error``.
        cluster : int or list of int, optional
            Class clusters: selects their classes (``class_error``), their samples
            (per-sample variables) or their rows of ``cluster_error``.

        Returns
        -------
        xarray.DataArray
            Dimensions ``("agg", <time>, *rows)`` with ``agg`` = min, max, mean, count; the time
            coordinate holds each bucket's first label, ``bucket_start`` / ``bucket_stop`` its
            first and last label. Attributes: ``variable``, ``level``, ``bucket_size`` and
            ``approximate`` (node statistics that are weighted averages, not exact).

        Raises
        ------
        filterscope.InvalidParameterError
            On an unknown variable, label, node or level, a bad window or ``columns``; the
            message names the valid values.
        """
        spec, selection = self._select(var, rows, node, class_, cluster)
        start, stop = self._window(spec.time, time)
        top = n_levels(self.committed.get(spec.time, 0))
        if level == "auto":
            if not isinstance(columns, int | np.integer) or columns < 1:
                raise InvalidParameterError(f"columns must be a positive integer, got {columns!r}")
            lvl = choose_level(start, stop, int(columns), top)
        elif isinstance(level, int | np.integer) and 0 <= level <= top:
            lvl = int(level)
        else:
            raise InvalidParameterError(
                f"level must be 'auto' or an integer in 0..{top} for {var!r}, got {level!r}"
            )
        positions = [p for p, _ in selection]
        flat = self._flat_rows(spec, positions)
        b0, b1 = (start, stop) if lvl == 0 else (start >> lvl, -(-stop // (1 << lvl)))
        data = self._read(spec, lvl, b0, b1, flat)
        data = data.reshape(4, b1 - b0, *[p.size for p in positions])
        return self._label(spec, var, lvl, b0, b1, data, selection)

    # ------------------------------------------------------------------ helpers
    def _spec(self, var: str) -> VarSpec:
        if var not in self.specs:
            raise InvalidParameterError(
                f"the index has no variable {var!r}; it has {sorted(self.specs)}"
            )
        return self.specs[var]

    def _select(
        self, var: str, rows: Any, node: Any, class_: Any, cluster: Any
    ) -> tuple[VarSpec, list[tuple[npt.NDArray[np.intp], bool]]]:
        if node is not None and var in NODE_VARS:
            var = NODE_VARS[var]
        spec = self._spec(var)
        wanted: dict[str, Any] = {}
        if rows is not None:
            if isinstance(rows, dict):
                wanted.update(rows)
            elif spec.dims:
                wanted[spec.dims[0]] = rows
        positions: dict[str, tuple[npt.NDArray[np.intp], bool]] = {}
        if node is not None:
            if "node" in spec.dims:
                wanted["node"] = node
            elif spec.dims == ("filter",):
                positions["filter"] = (self._filters_under(node), False)
            else:
                raise InvalidParameterError(
                    f"node= applies to layer and filter variables, not {var!r}"
                )
        if class_ is not None or cluster is not None:
            classes = self._classes(class_, cluster)
            if spec.by_class:
                positions["sample"] = (self._samples_of(classes), False)
            elif spec.dims == ("class",):
                positions["class"] = (classes, False)
            elif spec.dims == ("cluster",) and class_ is None:
                wanted["cluster"] = cluster
            else:
                raise InvalidParameterError(
                    f"class_= / cluster= apply to per-sample variables, class_error and "
                    f"cluster_error, not {var!r}"
                )
        unknown = set(wanted) - set(spec.dims)
        if unknown:
            raise InvalidParameterError(
                f"{var!r} has no dimension(s) {sorted(unknown)}: {spec.dims}"
            )
        selection = []
        for dim, size in zip(spec.dims, spec.shape, strict=True):
            if dim in positions and dim in wanted:
                raise InvalidParameterError(
                    f"{dim!r} is selected twice; pass rows= or class_=/node="
                )
            if dim in positions:
                selection.append(positions[dim])
            elif dim in wanted:
                selection.append(self._positions(dim, wanted[dim]))
            else:
                selection.append((np.arange(size, dtype=np.intp), False))
        return spec, selection

    def _positions(self, dim: str, labels: Any) -> tuple[npt.NDArray[np.intp], bool]:
        axis = pd.Index(self._labels[dim])
        if isinstance(labels, slice):
            if labels.step is not None:
                raise InvalidParameterError(f"slices of {dim!r} take no step, got {labels!r}")
            where = axis.slice_indexer(labels.start, labels.stop)
            return np.arange(len(axis), dtype=np.intp)[where], False
        scalar = np.ndim(labels) == 0
        wanted = np.atleast_1d(np.asarray(labels, dtype=object if dim == "node" else None))
        found = axis.get_indexer(wanted)
        if (found < 0).any():
            bad = wanted[found < 0].tolist()
            raise InvalidParameterError(
                f"{bad} not found on {dim!r}, whose labels are {axis[:8].tolist()}"
                f"{' …' if len(axis) > 8 else ''}"
            )
        return found.astype(np.intp), scalar

    def _filters_under(self, node: Any) -> npt.NDArray[np.intp]:
        if self.tree is None or "filter_layer_index" not in self._coords.get("filter", {}):
            raise InvalidParameterError(
                "node= on filters needs the layer tree and filter_layer_index"
            )
        nodes = [node] if isinstance(node, str) else list(node)
        layers = np.unique(np.concatenate([self.tree.layers_under(n) for n in nodes]))
        return np.flatnonzero(np.isin(self._coords["filter"]["filter_layer_index"], layers))

    def _classes(self, class_: Any, cluster: Any) -> npt.NDArray[np.intp]:
        if class_ is not None and cluster is not None:
            raise InvalidParameterError("pass class_= or cluster=, not both")
        if class_ is not None:
            positions, _ = self._positions("class", class_)
            return positions
        if self.class_cluster is None:
            raise InvalidParameterError(
                f"this index has no class clusters (it needs at least {CLUSTER_K} classes); "
                "select classes with class_= instead"
            )
        clusters = np.atleast_1d(np.asarray(cluster))
        n_clusters = self._labels["cluster"].size
        if not np.isin(clusters, self._labels["cluster"]).all():
            raise InvalidParameterError(
                f"cluster must be in 0..{n_clusters - 1} (this index has {n_clusters} class "
                f"clusters), got {cluster!r}"
            )
        return np.flatnonzero(np.isin(self.class_cluster.values, clusters)).astype(np.intp)

    def _samples_of(self, classes: npt.NDArray[np.intp]) -> npt.NDArray[np.intp]:
        labels = self._coords["sample"]["label"]
        wanted = self._labels["class"][classes]
        samples = np.flatnonzero(np.isin(labels, wanted))
        return samples[np.argsort(self._sample_rank[samples], kind="stable")].astype(np.intp)

    def _window(self, dim: str, time: slice | None) -> tuple[int, int]:
        labels = self._labels[dim]
        if time is None:
            return 0, labels.size
        if not isinstance(time, slice) or time.step is not None:
            raise InvalidParameterError(
                f"time must be a slice(first, last) of {dim} labels (both included), got {time!r}"
            )
        start = 0 if time.start is None else int(np.searchsorted(labels, time.start, "left"))
        stop = (
            labels.size if time.stop is None else int(np.searchsorted(labels, time.stop, "right"))
        )
        if stop <= start:
            raise InvalidParameterError(
                f"the window {time!r} holds no {dim}; the index covers {dim} "
                f"{labels[:1].tolist()} to {labels[-1:].tolist()}"
            )
        return start, stop

    def _flat_rows(self, spec: VarSpec, positions: list[npt.NDArray[np.intp]]) -> Any:
        if spec.by_class:
            flat = self._sample_rank[positions[0]]
        elif len(positions) == 1:
            flat = positions[0]
        elif positions:
            flat = np.ravel_multi_index(np.ix_(*positions), spec.shape).ravel()
        else:
            flat = np.zeros(1, dtype=np.intp)
        if flat.size == 0:
            return slice(0, 0)
        if flat[-1] - flat[0] + 1 == flat.size and (np.diff(flat) == 1).all():
            return slice(int(flat[0]), int(flat[-1]) + 1)
        return flat

    def _array(self, spec: VarSpec, name: str) -> zarr.Array:
        key = (spec.name, name)
        if key not in self._arrays:
            array = self._root[f"{spec.name}/{name}"]
            assert isinstance(array, zarr.Array)
            self._arrays[key] = array
        return self._arrays[key]

    def _read(self, spec: VarSpec, level: int, b0: int, b1: int, rows: Any) -> npt.NDArray[Any]:
        name, where = spec.locate(level, b0, b1, self.committed[spec.time])
        array = self._array(spec, name)
        key = (spec.name, name)
        cached = self._cache.get(key)
        if cached is None and array.nbytes <= _SMALL_ARRAY_BYTES:
            cached = np.asarray(array[...])
            self._cache[key] = cached
            while sum(a.nbytes for a in self._cache.values()) > _CACHE_BYTES:
                self._cache.popitem(last=False)
        lead = () if name == "raw" else (slice(None),)
        if cached is not None:
            self._cache.move_to_end(key)
            part = (
                cached[(*lead, where, rows)]
                if isinstance(where, slice)
                else cached[(*lead, where)][..., rows]
            )
        elif isinstance(rows, slice) and isinstance(where, slice):
            part = array[(*lead, where, rows)]
        else:
            unique, inverse = (
                (rows, None) if isinstance(rows, slice) else np.unique(rows, return_inverse=True)
            )
            part = array.get_orthogonal_selection((*lead, where, unique))
            if inverse is not None:
                part = np.take(part, inverse, axis=-1)
        if level >= FIRST_STORED:
            return np.asarray(part)
        if level > 0:
            agg = first_level(np.asarray(part), spec.agg_dtype)
            return coarsen_pairs(agg) if level == 2 else agg
        values = np.asarray(part).astype(spec.agg_dtype)
        out = np.empty((4, *values.shape), dtype=values.dtype)
        out[0] = out[1] = out[2] = values
        np.logical_not(np.isnan(values), out=out[3], casting="unsafe")
        return out

    def _label(
        self,
        spec: VarSpec,
        var: str,
        level: int,
        b0: int,
        b1: int,
        data: npt.NDArray[Any],
        selection: list[tuple[npt.NDArray[np.intp], bool]],
    ) -> xr.DataArray:
        labels = self._labels[spec.time]
        size = 1 << level
        first = np.arange(b0, b1) * size
        last = np.minimum(first + size, labels.size) - 1
        coords: dict[Hashable, Any] = {
            "agg": list(AGGREGATES),
            spec.time: labels[first],
            "bucket_start": (spec.time, labels[first]),
            "bucket_stop": (spec.time, labels[last]),
        }
        for name, values in self._coords.get(spec.time, {}).items():
            coords[name] = (spec.time, values[first])
        dims: list[str] = ["agg", spec.time]
        index: list[Any] = [slice(None), slice(None)]
        for dim, (positions, scalar) in zip(spec.dims, selection, strict=True):
            axis_labels = self._labels.get(dim, np.arange(spec.shape[spec.dims.index(dim)]))
            extra = self._coords.get(dim, {})
            if scalar:
                index.append(0)
                coords[dim] = axis_labels[positions[0]]
                for name, values in extra.items():
                    coords[name] = values[positions[0]]
            else:
                index.append(slice(None))
                dims.append(dim)
                coords[dim] = axis_labels[positions]
                for name, values in extra.items():
                    coords[name] = (dim, values[positions])
        attrs: dict[str, Any] = {
            "variable": var,
            "level": level,
            "bucket_size": size,
            "approximate": [],
        }
        if spec.kind == "node_stat":
            stats = np.atleast_1d(np.asarray(coords["stat"])).tolist()
            attrs["approximate"] = [s for s in stats if s in APPROXIMATE_STATS]
        return xr.DataArray(data[tuple(index)], dims=dims, coords=coords, name=var, attrs=attrs)


def build_index(
    log: xr.Dataset | str | Path,
    store: str | Path | None = None,
    *,
    variables: Sequence[str] | None = None,
    rebuild: bool = False,
    block_elements: int | None = None,
) -> Index:
    """Build (or bring up to date) the index of a log and return it.

    Parameters
    ----------
    log : xarray.Dataset or path
        The log, or the path of its store (opened with :func:`filterscope.open_log`).
    store : path, optional
        Where to keep the index; default the log's own store (required when ``log`` is a
        Dataset that does not come from a path).
    variables : list of str, optional
        Index only these (default: every variable over ``snapshot`` or ``step`` but ``pred``,
        plus the derived ones).
    rebuild : bool, default False
        Recompute everything instead of extending an existing index.
    block_elements : int, optional
        Values each build task reads (its memory); default about 8 M, or what the index was
        built with.

    Returns
    -------
    Index

    Examples
    --------
    >>> import tempfile
    >>> import numpy as np
    >>> from filterscope.dynamics import from_arrays
    >>> from filterscope.index import build_index
    >>> log = from_arrays(np.random.default_rng(0).random((300, 40)) < 0.7,
    ...                   labels=np.arange(40) % 5)
    >>> store = tempfile.mkdtemp() + "/index.zarr"
    >>> idx = build_index(log, store)
    >>> idx.query("class_error", columns=100).attrs["level"]  # buckets of 4 snapshots
    2
    >>> longer = from_arrays(np.random.default_rng(0).random((400, 40)) < 0.7,
    ...                      labels=np.arange(40) % 5)
    >>> build_index(longer, store).committed  # extends the index to the new snapshots
    {'snapshot': 400}
    """
    log, store = _resolve(log, store)
    build_(log, store, variables=variables, rebuild=rebuild, block_elements=block_elements)
    return Index(log, store)


def open_index(path: str | Path, *, update: bool = True, progress: bool | None = None) -> Index:
    """Open the index of the log at ``path``, building or extending it when ``update``.

    The same as :func:`index_of` with ``build=update``. Staleness is the committed snapshot
    (and step) count recorded in the index differing from the log's; a missing or older-format
    index is built from scratch.

    Examples
    --------
    >>> import tempfile
    >>> from filterscope.data.synthetic import synthetic_log
    >>> path = tempfile.mkdtemp() + "/run"
    >>> log = synthetic_log(path, n_samples=200, n_classes=10, n_snapshots=20,
    ...                     layers="resnet18", plant=False)
    >>> idx = open_index(path)
    >>> idx.query("weight_stat", node="layer1", rows={"stat": "l2"}, columns=10).sizes["snapshot"]
    10
    """
    return index_of(Path(path), build=update, progress=progress)


def index_of(
    log: xr.Dataset | str | Path, *, build: bool = True, progress: bool | None = None
) -> Index:
    """The index of a log opened from its path: opened, built on first use, extended as it grows.

    The one way views, plots and the report reach a log's index (``log.filterscope.index()``
    forwards here). The index lives in the ``index`` group of the log's own store; a log the
    index has not seen all of (training went on) is summarised incrementally, only the blocks
    from the last partial one on being recomputed.

    Parameters
    ----------
    log : xarray.Dataset or path
        A log from :func:`filterscope.open_log` (it remembers its directory, also after
        ``sel``/``isel`` or arithmetic; see :func:`filterscope.log.reader.log_path`), or the
        log's path.
    build : bool, default True
        Build a missing index and extend a stale one (this writes into the log's store). False
        never writes: a stale index answers for the snapshots it covers (``idx.stale`` is True).
    progress : bool, optional
        Show a tqdm progress bar while building; default: only in a terminal or notebook.

    Returns
    -------
    Index
        Bound to the whole log as stored now (``Index.log``, primary evaluation set), whatever
        selection ``log`` was.

    Raises
    ------
    filterscope.InvalidParameterError
        If ``log`` was not opened from a path (e.g. built with
        :func:`filterscope.dynamics.from_arrays`): build its index with
        ``build_index(log, store=path)`` instead.
    filterscope.LogFormatError
        If ``build=False`` and the log has no index yet.

    Examples
    --------
    >>> import tempfile
    >>> import filterscope as fs
    >>> from filterscope.data.synthetic import synthetic_log
    >>> path = tempfile.mkdtemp() + "/run"
    >>> _ = synthetic_log(path, n_samples=100, n_classes=10, n_snapshots=12, plant=False)
    >>> log = fs.open_log(path)
    >>> idx = fs.index_of(log, progress=False)  # built on first use, in the log's store
    >>> idx.query("val_error", columns=6).attrs["level"]  # 12 snapshots in buckets of 2
    1
    >>> fs.index_of(log.isel(snapshot=slice(0, 3)), build=False).committed["snapshot"]
    12
    """
    from filterscope.log.reader import log_path, open_log

    if isinstance(log, str | Path):
        path = Path(log)
    elif isinstance(log, xr.Dataset):
        found = log_path(log)
        if found is None:
            raise InvalidParameterError(
                "this log Dataset was not opened from a path (filterscope.open_log), so its "
                "index has nowhere to live; build one with "
                "filterscope.index.build_index(log, store=path), or pass the log's path"
            )
        path = found
    else:
        raise InvalidParameterError(
            f"expected a log Dataset from filterscope.open_log or the path of a log, got "
            f"{type(log).__name__}"
        )
    key = str(path.absolute())
    with _OPEN_LOCK:
        opened = _OPEN.get(key)
        if opened is not None and opened._signature == _signature(path):
            if not (build and opened.stale):
                return opened
    # The log's part of the signature is taken before opening it: a commit landing meanwhile
    # makes the next call open the log anew rather than serve this one as current.
    log_signature = _signature(path)[0]
    full = open_log(path)
    state = read_state(path)
    current = state is not None and {
        k: int(v) for k, v in state["committed"].items()
    } == committed_sizes(full)
    if build and not current:
        with _progress(progress, f"indexing {path.name}"):
            build_(full, path, variables=None if state is None else state.get("requested"))
    index_signature = _signature(path)[1]
    index = Index(full, path)
    index._signature = (log_signature, index_signature)
    with _OPEN_LOCK:
        _OPEN[key] = index
    return index


# Indexes opened by index_of, by the log's path, while something holds them: every view of a
# log shares one (opening a log and its index costs a good part of a second on a large log).
# An entry serves while neither the log's commit record (its root zarr.json, replaced at every
# commit and by a new run) nor the index's attributes changed on disk.
_OPEN: weakref.WeakValueDictionary[str, Index] = weakref.WeakValueDictionary()
_OPEN_LOCK = threading.Lock()


def _signature(path: Path) -> tuple[tuple[int, int, int, int] | None, ...]:
    """The log's and the index's metadata documents as they are now: a change of either (a
    commit, a new run, an index build) changes it. Their contents count too (a few kB), so two
    commits within the file system's clock tick still differ."""
    out: list[tuple[int, int, int, int] | None] = []
    for file in (path / "zarr.json", path / INDEX_GROUP / "zarr.json"):
        try:
            stat = os.stat(file)
            content = file.read_bytes()
        except OSError:
            out.append(None)
        else:
            out.append((stat.st_ino, stat.st_mtime_ns, stat.st_size, zlib.crc32(content)))
    return tuple(out)


@contextmanager
def _progress(progress: bool | None, description: str) -> Iterator[None]:
    """A tqdm bar counting the dask tasks run inside the block (local schedulers only)."""
    if progress is False:
        yield
        return
    from dask.callbacks import Callback
    from tqdm.auto import tqdm

    bar = tqdm(total=0, desc=description, unit="task", disable=None if progress is None else False)

    class _Bar(Callback):  # type: ignore[misc]
        def _start_state(self, dsk: Any, state: Any) -> None:
            bar.total += sum(len(state[k]) for k in ("ready", "waiting", "running"))
            bar.refresh()

        def _posttask(self, key: Any, result: Any, dsk: Any, state: Any, worker_id: Any) -> None:
            bar.update(1)

    try:
        with _Bar():
            yield
    finally:
        bar.close()


def _resolve(log: xr.Dataset | str | Path, store: str | Path | None) -> tuple[xr.Dataset, str]:
    if isinstance(log, str | Path):
        from filterscope.log.reader import open_log

        return open_log(log), str(store if store is not None else log)
    if not isinstance(log, xr.Dataset):
        raise InvalidParameterError(
            f"expected a log Dataset or the path of a log, got {type(log).__name__}"
        )
    if store is None:
        raise InvalidParameterError(
            "pass store= (a path) to keep the index of a log Dataset; for a log opened from its "
            "path, filterscope.index_of(log) opens or builds the index in the log's own store"
        )
    return log, str(store)
