"""Build and extend the index: one dask task per block of time, written into the log's store.

Layout, inside the zarr group ``index`` of the log's store::

    index/                      attrs: format, committed sizes, variable specs, cluster count
    index/<variable>/0          (time, rows)         the raw values, in query-friendly chunks
    index/<variable>/<k>        (4, buckets, rows)   level k: min, max, mean, count
    index/sample_order          (sample,)            per-sample rows are stored class by class
    index/class_cluster         (class,)             k-means cluster of every class
    index/class_mds             (class,)             classes in 1-D MDS order of their error
    index/unstable/ab_left      (snapshot, class, lag)  unstable counts at the presets' lags
    index/unstable/ab_right     (snapshot, class, lag)  (see ``filterscope.index.unstable``)

Every variable's non-time dimensions are flattened into one ``rows`` axis. Time is cut into
blocks of ``2**b`` entries (``b`` chosen per variable so a block holds about 8 M values); one
task reads a block of the log and writes its levels ``0 .. b``, whose chunks never straddle two
blocks, so tasks never write the same chunk and can run anywhere a ``dask.distributed`` worker
can reach the store. A last small task per variable derives the levels above ``b`` from level
``b``. Appending snapshots recomputes only the blocks from the last partial one on.

The committed sizes recorded in the group's attributes are written last: an index interrupted
mid-build still describes what it held before, and the next build redoes the rest.
"""

from __future__ import annotations

import json
import shutil
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import dask
import dask.array as da
import numpy as np
import numpy.typing as npt
import xarray as xr
import zarr
from sklearn.exceptions import ConvergenceWarning
from zarr.codecs import BloscCodec

from filterscope.errors import InvalidParameterError, LogFormatError
from filterscope.index.hierarchy import (
    LayerTree,
    layer_tree,
    node_ratios,
    node_stats,
)
from filterscope.index.pyramid import (
    agg_dtype,
    block_levels,
    coarsen_pairs,
    n_buckets,
    n_levels,
)

#: Name of the index group inside the log's store.
INDEX_GROUP = "index"
#: Version of the index layout; an index of another version is rebuilt.
INDEX_FORMAT = 2
#: Dimensions that grow as training runs.
TIME_DIMS: tuple[str, ...] = ("snapshot", "step")
#: Per-snapshot variables left out by default: class numbers have no meaningful mean.
CATEGORICAL: tuple[str, ...] = ("pred",)
#: Layer variables and the node variables aggregated from them.
NODE_VARS: dict[str, str] = {
    "weight_stat": "node_weight_stat",
    "grad_stat": "node_grad_stat",
    "change_ratio": "node_change_ratio",
}
#: Number of class clusters (DeepTracker's validation view uses k = 4).
CLUSTER_K = 4

#: Default number of values one build task reads (about 32 MB of float32).
BLOCK_ELEMENTS = 1 << 23
#: Finest level stored; finer ones are computed from the raw values at query time.
FIRST_STORED = 3
_RAW_CHUNK = 1 << 16  # values per level-0 chunk (256 KB of float32)
_AGG_CHUNK = 1 << 14  # buckets x rows per aggregate chunk (4 aggregates: 256 KB of float32)
_UPPER_CHUNK = 64
_MIN_BLOCK, _MAX_BLOCK = 64, 1 << 16
_COMPRESSORS = (BloscCodec(cname="lz4", clevel=5, shuffle="shuffle"),)


@dataclass(frozen=True)
class VarSpec:
    """How one variable is indexed.

    Attributes
    ----------
    name : str
        Name in the index (``class_error``, ``node_weight_stat``… for derived variables).
    source : str
        Log variable it is computed from.
    kind : str
        ``"raw"``, ``"class_error"``, ``"node_stat"``, ``"node_ratio"`` or ``"cluster_error"``.
    time : str
        Time dimension, ``"snapshot"`` or ``"step"``.
    dims, shape : tuple
        The other dimensions and their sizes (flattened into ``rows``).
    dtype : str
        dtype of level 0 (the raw values).
    block : int
        Entries of time per build task, a power of two.
    by_class : bool
        True when rows are samples stored class by class (see ``sample_order``).
    """

    name: str
    source: str
    kind: str
    time: str
    dims: tuple[str, ...]
    shape: tuple[int, ...]
    dtype: str
    block: int
    by_class: bool = False

    @property
    def rows(self) -> int:
        """Number of flattened rows."""
        return int(np.prod(self.shape, dtype=np.int64))

    @property
    def agg_dtype(self) -> np.dtype[Any]:
        """dtype of levels 1 and up."""
        return agg_dtype(np.dtype(self.dtype))

    @property
    def block_level(self) -> int:
        """Level whose buckets are whole blocks."""
        return self.block.bit_length() - 1

    def layout(self, length: int) -> dict[str, tuple[tuple[int, ...], tuple[int, ...]]]:
        """Shape and chunk shape of the three arrays of this variable for ``length`` entries.

        ``raw`` ``(time, rows)``: level 0. Levels 1 and 2 are not stored: a query computes them
        from the raw values, reading no more than their stored aggregates would take (two or
        four values per bucket against four aggregates) with the same code as the build.
        ``pyramid`` ``(4, blocks * block / 4, rows)``: levels ``3 .. block_level``, block by
        block; inside the ``block / 4`` slots of block ``j``, level ``k`` occupies
        ``block >> k`` slots from offset ``block / 4 - (block >> (k - 1))`` (level 3 first,
        then 4, …), so one task writes one contiguous region and a chunk boundary separates
        level 3 from the coarser ones. ``upper`` ``(4, buckets, rows)``: the levels above
        ``block_level`` one after the other.
        """
        rows = max(1, self.rows)
        eighth = self.block // 8
        blocks = -(-length // self.block)
        upper = sum(n_buckets(length, k) for k in range(self.block_level + 1, n_levels(length) + 1))
        return {
            "raw": (
                (length, self.rows),
                (self.block, min(rows, max(1, _RAW_CHUNK // self.block))),
            ),
            "pyramid": (
                (4, blocks * self.block // 4, self.rows),
                (4, eighth, min(rows, max(1, _AGG_CHUNK // eighth))),
            ),
            "upper": (
                (4, upper, self.rows),
                (4, _UPPER_CHUNK, min(rows, max(1, _AGG_CHUNK // _UPPER_CHUNK))),
            ),
        }

    def locate(self, level: int, first: int, stop: int, length: int) -> tuple[str, Any]:
        """Array and time positions holding buckets ``first .. stop - 1`` of ``level``.

        For levels below :data:`FIRST_STORED` this is the raw window those buckets cover.
        """
        if level < FIRST_STORED:
            return "raw", slice(first << level, min(stop << level, length))
        if level <= self.block_level:
            per_block = self.block >> level
            quarter = self.block // 4
            offset = quarter - (self.block >> (level - 1))
            buckets = np.arange(first, stop)
            positions = (buckets // per_block) * quarter + offset + buckets % per_block
            if positions.size and positions[-1] - positions[0] + 1 == positions.size:
                return "pyramid", slice(int(positions[0]), int(positions[-1]) + 1)
            return "pyramid", positions
        offset = sum(n_buckets(length, k) for k in range(self.block_level + 1, level))
        return "upper", slice(offset + first, offset + stop)

    def to_json(self) -> dict[str, Any]:
        """JSON-ready form, kept in the index attributes."""
        return asdict(self)

    @classmethod
    def from_json(cls, value: Mapping[str, Any]) -> VarSpec:
        """Inverse of :meth:`to_json`."""
        return cls(
            **{**value, "dims": tuple(value["dims"]), "shape": tuple(map(int, value["shape"]))}
        )


def _block_size(rows: int, length: int, block_elements: int) -> int:
    """Entries of time per task: ~8 M values, and no more than the log's length needs.

    A short log gets a short block (so small files); when the log outgrows it the block
    doubles and that variable is rebuilt, which costs no more than the log itself
    (amortised), until the block reaches its full size and growth becomes incremental.
    """
    target = max(1, block_elements // max(rows, 1))
    full = int(np.clip(1 << (target.bit_length() - 1), _MIN_BLOCK, _MAX_BLOCK))
    needed = 1 << max(0, int(length - 1).bit_length())
    return max(_MIN_BLOCK, min(full, needed))


def variable_specs(
    log: xr.Dataset,
    variables: Sequence[str] | None = None,
    block_elements: int = BLOCK_ELEMENTS,
) -> list[VarSpec]:
    """The variables of ``log`` the index covers, raw and derived.

    Every numeric variable whose first dimension is ``snapshot`` or ``step`` (after moving it
    first), except :data:`CATEGORICAL`; plus ``class_error`` (from ``correct``), the node
    variables of :data:`NODE_VARS` and ``cluster_error``. ``variables`` restricts the list
    (derived names included); ``block_elements`` sets the values per build task.
    """
    specs: list[VarSpec] = []
    for name, var in log.data_vars.items():
        name = str(name)
        time = [d for d in var.dims if d in TIME_DIMS]
        if len(time) != 1 or name in CATEGORICAL:
            continue
        if not (np.issubdtype(var.dtype, np.number) or var.dtype == np.bool_):
            continue
        dims = tuple(str(d) for d in var.dims if d != time[0])
        shape = tuple(int(log.sizes[d]) for d in dims)
        specs.append(
            VarSpec(
                name=name,
                source=name,
                kind="raw",
                time=time[0],
                dims=dims,
                shape=shape,
                dtype=str(var.dtype),
                block=_block_size(
                    int(np.prod(shape, dtype=np.int64)), int(log.sizes[time[0]]), block_elements
                ),
                by_class=dims == ("sample",) and "label" in log.coords,
            )
        )
    names = {s.name for s in specs}
    if "correct" in names and "label" in log.coords and "class" in log.dims:
        n_samples, n_classes = int(log.sizes["sample"]), int(log.sizes["class"])
        for name, kind, dims, shape in (
            ("class_error", "class_error", ("class",), (n_classes,)),
            ("cluster_error", "cluster_error", ("cluster",), (CLUSTER_K,)),
        ):
            if kind == "cluster_error" and n_classes < CLUSTER_K:
                continue
            specs.append(
                VarSpec(
                    name=name,
                    source="correct",
                    kind=kind,
                    time="snapshot",
                    dims=dims,
                    shape=shape,
                    dtype="float64",
                    block=_block_size(n_samples, int(log.sizes["snapshot"]), block_elements),
                )
            )
    if "layer_name" in log.coords:
        tree: LayerTree | None = None
        for source, name in NODE_VARS.items():
            if source not in names:
                continue
            tree = tree or layer_tree(log)
            other = "stat" if source != "change_ratio" else "threshold"
            shape = (len(tree.name), int(log.sizes[other]))
            specs.append(
                VarSpec(
                    name=name,
                    source=source,
                    kind="node_stat" if other == "stat" else "node_ratio",
                    time="snapshot",
                    dims=("node", other),
                    shape=shape,
                    dtype="float32",
                    block=_block_size(
                        int(log.sizes["layer"]) * shape[1],
                        int(log.sizes["snapshot"]),
                        block_elements,
                    ),
                )
            )
    if variables is not None:
        wanted = set(variables)
        unknown = wanted - {s.name for s in specs}
        if unknown:
            raise InvalidParameterError(
                f"cannot index {sorted(unknown)}: the log offers {sorted(s.name for s in specs)}"
            )
        specs = [s for s in specs if s.name in wanted]
    return specs


# ---------------------------------------------------------------------------------- tasks
@dataclass(frozen=True)
class _Context:
    """What a block task needs besides its block: picklable plain data only."""

    store: str
    group: str
    spec: VarSpec
    length: int
    classes: npt.NDArray[np.intp] | None = None  # class position of every sample
    order: npt.NDArray[np.intp] | None = None  # storage order of samples
    tree: LayerTree | None = None
    stat_names: tuple[str, ...] = ()
    cluster_of_class: npt.NDArray[np.int64] | None = None


def _values(block: npt.NDArray[Any], ctx: _Context) -> npt.NDArray[Any]:
    """A block of the source variable as the index stores it: ``(time, rows)``."""
    spec = ctx.spec
    if spec.kind == "raw":
        values = block.reshape(block.shape[0], -1)
        return values[:, ctx.order] if spec.by_class else values
    if spec.kind in ("class_error", "cluster_error"):
        assert ctx.classes is not None
        classes = ctx.classes
        n_groups = spec.shape[0]
        if spec.kind == "cluster_error":
            assert ctx.cluster_of_class is not None
            classes = ctx.cluster_of_class[classes]
            n_groups = spec.shape[0] + 1  # the last group holds classes without a cluster
        from filterscope.dynamics.samples import class_error_values

        err = class_error_values(block, classes.astype(np.intp), n_groups)
        return err if spec.kind == "class_error" else err[:, : spec.shape[0]]
    assert ctx.tree is not None
    if spec.kind == "node_stat":
        out = node_stats(block, list(ctx.stat_names), ctx.tree)
    else:
        out = node_ratios(block, ctx.tree)
    return out.reshape(out.shape[0], -1).astype(np.float32)


# Arrays opened by build tasks in this process. Opening reads metadata, a round trip through
# zarr's event loop that costs more than writing a small block; the key holds everything the
# metadata depends on, so a resized or re-created array is opened afresh.
_OPENED: dict[tuple[str, str, int, int], zarr.Array] = {}


def _array(ctx: _Context, name: str) -> zarr.Array:
    path = f"{ctx.group}/{ctx.spec.name}/{name}"
    key = (ctx.store, path, ctx.length, ctx.spec.block)
    array = _OPENED.get(key)
    if array is None:
        if len(_OPENED) > 4096:
            _OPENED.clear()
        array = zarr.open_array(store=ctx.store, path=path, mode="r+")
        _OPENED[key] = array
    return array


def _write_block(block: npt.NDArray[Any], ctx: _Context, start: int) -> int:
    """Write level 0 and levels ``3 .. block_level`` of the block of time starting at ``start``."""
    spec = ctx.spec
    values = _values(np.asarray(block), ctx)
    _array(ctx, "raw")[start : start + values.shape[0]] = values.astype(spec.dtype, copy=False)
    quarter = spec.block // 4
    region = np.full((4, quarter, spec.rows), np.nan, dtype=spec.agg_dtype)
    region[3] = 0
    top = min(spec.block_level, n_levels(ctx.length))
    for level, agg in enumerate(block_levels(values, top, spec.agg_dtype), start=1):
        if level >= FIRST_STORED:
            offset = quarter - (spec.block >> (level - 1))
            region[:, offset : offset + agg.shape[1]] = agg
    _array(ctx, "pyramid")[:, start // 4 : start // 4 + quarter] = region
    return start


def _write_upper(ctx: _Context, done: Sequence[int]) -> int:
    """Levels above the block level, from the block level as stored (after ``done``)."""
    del done  # only orders this task after the block tasks
    spec, length = ctx.spec, ctx.length
    base = spec.block_level
    _, where = spec.locate(base, 0, n_buckets(length, base), length)
    current = np.asarray(_array(ctx, "pyramid").get_orthogonal_selection((slice(None), where)))
    levels = []
    for _ in range(base + 1, n_levels(length) + 1):
        current = coarsen_pairs(current)
        levels.append(current)
    _array(ctx, "upper")[...] = np.concatenate(levels, axis=1)
    return length


# ---------------------------------------------------------------------------------- build
def _store_path(store: str | Path) -> str:
    return str(store)


def read_state(store: str | Path, group: str = INDEX_GROUP) -> dict[str, Any] | None:
    """The index attributes of ``store``, or None when it has no (readable) index."""
    try:
        attrs = dict(zarr.open_group(_store_path(store), path=group, mode="r").attrs)
    except (FileNotFoundError, zarr.errors.GroupNotFoundError, KeyError, ValueError):
        return None
    if attrs.get("format") != INDEX_FORMAT or not isinstance(attrs.get("committed"), dict):
        return None
    return attrs


def committed_sizes(log: xr.Dataset) -> dict[str, int]:
    """Sizes of the time dimensions of ``log``, what the index is compared with."""
    return {dim: int(log.sizes[dim]) for dim in TIME_DIMS if dim in log.sizes}


def build(
    log: xr.Dataset,
    store: str | Path,
    *,
    group: str = INDEX_GROUP,
    variables: Sequence[str] | None = None,
    rebuild: bool = False,
    block_elements: int | None = None,
) -> dict[str, Any]:
    """Build the index of ``log`` into ``store``, or extend it to the log's new snapshots.

    Runs on dask's current scheduler: the local threads by default, or a
    ``dask.distributed`` cluster when a client is active. ``block_elements`` (default: the
    value the index was built with, else :data:`BLOCK_ELEMENTS`) bounds the values each task
    reads, hence its memory.

    Returns the index attributes as written.
    """
    store = _store_path(store)
    sizes = committed_sizes(log)
    state = None if rebuild else read_state(store, group)
    if block_elements is None:
        block_elements = int((state or {}).get("block_elements", BLOCK_ELEMENTS))
    if not isinstance(block_elements, int) or block_elements < 1:
        raise InvalidParameterError(
            f"block_elements must be a positive integer, got {block_elements!r}"
        )
    specs = variable_specs(log, variables, block_elements)
    old_specs = {} if state is None else state.get("variables", {})
    old_sizes = {} if state is None else state.get("committed", {})
    root = zarr.open_group(store, mode="a")
    if state is None and group in root:
        _remove(root, store, group)
    index = root.require_group(group)
    if state is not None:
        # Withdraw the commit while arrays change: a build interrupted from here on leaves an
        # index that the next build recognises as unusable and redoes from scratch.
        index.attrs["committed"] = None

    classes = order = None
    if any(s.by_class or s.kind.endswith("error") for s in specs):
        classes = _class_positions(log)
        order = np.argsort(classes, kind="stable")
        _put(index, "sample_order", order.astype(np.int64))
    tree = layer_tree(log) if any(s.kind.startswith("node") for s in specs) else None
    stat_names = tuple(str(s) for s in log["stat"].values) if "stat" in log.coords else ()

    def plan(spec: VarSpec, cluster_of_class: Any = None) -> list[Any]:
        length = sizes[spec.time]
        previous = old_specs.get(spec.name)
        fresh = previous is None or VarSpec.from_json(previous) != spec
        done_length = 0 if fresh or spec.kind == "cluster_error" else old_sizes.get(spec.time, 0)
        if done_length > length:
            done_length = 0  # the log was cut back: rebuild this variable
        _prepare_arrays(index, store, spec, length, fresh)
        if length == 0:
            return []
        ctx = _Context(
            store, group, spec, length, classes, order, tree, stat_names, cluster_of_class
        )
        first = (done_length // spec.block) * spec.block
        source = _source(log, spec)[first:length]
        # One dask chunk per block: each becomes the input of one task.
        blocks = source.rechunk((spec.block, *source.shape[1:])).to_delayed().ravel()
        tasks = [
            dask.delayed(_write_block, pure=False)(block, ctx, first + i * spec.block)
            for i, block in enumerate(blocks)
        ]
        if n_levels(length) > spec.block_level:
            tasks = [dask.delayed(_write_upper, pure=False)(ctx, tasks)]
        return tasks

    first = [s for s in specs if s.kind != "cluster_error"]
    dask.compute(*[t for spec in first for t in plan(spec)])
    if any(s.kind == "class_error" for s in specs):
        from filterscope.index.unstable import build_class_summaries

        raw = index["class_error/raw"]
        assert isinstance(raw, zarr.Array)
        done = 0 if state is None else int(old_sizes.get("snapshot", 0))
        build_class_summaries(log, index, done, raw)

    cluster_specs = [s for s in specs if s.kind == "cluster_error"]
    attrs_extra: dict[str, Any] = {}
    if cluster_specs and sizes.get("snapshot", 0) >= 2:
        from filterscope.dynamics import class_clusters

        with warnings.catch_warnings():
            # Early in a run many classes share one error series (all wrong): k-means then
            # finds fewer distinct clusters than asked, and an empty cluster has no error.
            warnings.simplefilter("ignore", ConvergenceWarning)
            warnings.simplefilter("ignore", RuntimeWarning)
            clusters = class_clusters(log, k=CLUSTER_K, random_state=0)
        cluster_of_class = np.asarray(clusters["class_cluster"].values, dtype=np.int64)
        _put(index, "class_cluster", cluster_of_class)
        # Classes without samples (cluster -1) go to an extra group, cut off in _values.
        cluster_of_class = np.where(cluster_of_class < 0, CLUSTER_K, cluster_of_class)
        dask.compute(*[t for spec in cluster_specs for t in plan(spec, cluster_of_class)])
        attrs_extra["cluster_k"] = CLUSTER_K
    elif cluster_specs:
        specs = [s for s in specs if s.kind != "cluster_error"]

    attrs = {
        "format": INDEX_FORMAT,
        "variables": {s.name: s.to_json() for s in specs},
        "nodes_exact_params": bool(tree.params_exact) if tree is not None else None,
        "block_elements": block_elements,
        "requested": None if variables is None else sorted(variables),
        **attrs_extra,
    }
    index.attrs.update(attrs)
    # Written last: the commit of this build.
    index.attrs["committed"] = sizes
    return {**attrs, "committed": sizes}


def _class_positions(log: xr.Dataset) -> npt.NDArray[np.intp]:
    labels = np.asarray(log["label"].values)
    classes = np.asarray(log["class"].values) if "class" in log.coords else np.unique(labels)
    positions = np.searchsorted(classes, labels)
    positions = np.clip(positions, 0, max(len(classes) - 1, 0))
    if labels.size and not np.array_equal(classes[positions], labels):
        raise LogFormatError(
            "every sample's label must be a value of the 'class' axis; some are not, so the "
            "per-class index cannot be built"
        )
    return positions.astype(np.intp)


def _source(log: xr.Dataset, spec: VarSpec) -> Any:
    var = log[spec.source]
    time = spec.time
    var = var.transpose(time, *[d for d in var.dims if d != time])
    if not isinstance(var.data, da.Array):
        # Wrap lazily: a log opened without dask must not be loaded whole here.
        var = var.chunk({time: spec.block})
    return var.data


def _put(group: zarr.Group, name: str, values: npt.NDArray[Any]) -> None:
    if name in group:
        existing = group[name]
        if isinstance(existing, zarr.Array) and existing.shape == values.shape:
            existing[:] = values
            return
        del group[name]
    group.create_array(name, data=values, compressors=_COMPRESSORS)


def _remove(group: zarr.Group, store: str, path: str) -> None:
    """Delete a member of ``group``; a local directory with ``shutil.rmtree`` directly."""
    local = Path(store, group.path, path)
    if local.is_dir():
        shutil.rmtree(local)
    else:
        del group[path]


def _prepare_arrays(group: zarr.Group, store: str, spec: VarSpec, length: int, fresh: bool) -> None:
    """Create (or resize) the arrays of ``spec`` for ``length`` entries of time."""
    if fresh and spec.name in group:
        _remove(group, store, spec.name)
    var_group = group.require_group(spec.name)
    existing = {} if fresh else dict(var_group.arrays())
    for key, (shape, chunks) in spec.layout(length).items():
        if key != "raw" and shape[1] == 0 and key not in existing:
            continue  # no level lives there yet (e.g. no level above the block level)
        if key in existing:
            if existing[key].shape != shape:
                existing[key].resize(shape)
            continue
        dtype = np.dtype(spec.dtype) if key == "raw" else spec.agg_dtype
        var_group.create_array(
            key,
            shape=shape,
            dtype=dtype,
            chunks=chunks,
            compressors=_COMPRESSORS,
            fill_value=np.nan if dtype.kind == "f" else 0,
            # Chunk files side by side ("c.3.0"), not one directory per chunk row.
            chunk_key_encoding={"name": "default", "separator": "."},
        )
    if fresh:
        var_group.attrs["spec"] = json.loads(json.dumps(spec.to_json()))
