"""The Recorder: turns a PyTorch training loop into a filterscope log."""

from __future__ import annotations

import datetime
import functools
import hashlib
import importlib
import itertools
import math
import numbers
import queue
import sys
import threading
import time
import warnings
import weakref
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np
import torch
from torch import nn

from filterscope._version import __version__
from filterscope.errors import (
    FilterscopeError,
    InvalidDataError,
    InvalidModelError,
    InvalidParameterError,
)
from filterscope.log.evaluation import (
    NO_PREDICTION,
    EvalSet,
    check_first_batch,
    check_labels,
    evaluate,
    evaluation_mode,
    make_eval_sets,
    thumbnails,
)
from filterscope.log.hierarchy import Hierarchy
from filterscope.log.layers import Layer, discover_layers, unwrap_model
from filterscope.log.schema import (
    ANALYSIS_GROUP,
    EVAL_GROUP,
    EVAL_SET_GROUP,
    FILTER_VARS,
    ROOT,
    SET,
    STATE_GROUP,
    STATS,
    STEP_VARS,
    THRESHOLDS,
    VARIABLES,
    coordinates_attr,
    layout,
)
from filterscope.log.stats import Reference, SnapshotStats, StatsEngine
from filterscope.log.store import LogStore, Mode, PendingWrites

_STATE_VAR = VARIABLES[STATE_GROUP, "weights"]
_STATE_KEY = _STATE_VAR.key()
#: Root attribute: sha256 of every evaluation set's labels and sample ids, checked on resume.
_FINGERPRINTS = "eval_fingerprints"
_L0 = STATS.index("l0")


class Recorder:
    """Record a training run into a crash-safe xarray/zarr log.

    Call :meth:`step` after ``loss.backward()`` and before ``optimizer.step()``: it logs the
    step's scalars, and every ``snapshot_every`` steps (and at :meth:`close`) it takes a snapshot
    of the model exactly as it is at that call: per-sample results on every evaluation set,
    per-layer weight and gradient statistics, change ratios and per-filter metrics. Each snapshot
    is committed atomically; :func:`filterscope.open_log` reads the log, also while it is written.

    Close it with :meth:`close` or use it as a ``with`` block. A Recorder that is never closed
    (a script that ends without ``close()``, a notebook cell that fails) still commits the steps
    logged since its last snapshot, without a final snapshot, and unlocks the log when it is
    garbage-collected or the interpreter exits, with a RuntimeWarning.

    Parameters
    ----------
    model : torch.nn.Module
        The network (DistributedDataParallel, DataParallel and ``torch.compile`` wrappers are
        looked through). Every module with a ``weight`` parameter is a layer; normalisation
        layers are listed without statistics.
    path : path-like
        Log directory to create.
    eval_sets : mapping of str to data, data, or None
        Evaluation sets, each a ``DataLoader`` over a map-style dataset, a map-style ``Dataset`` of
        ``(x, y)`` items or an ``(x, y)`` pair of tensors. The first is the primary set. Samples
        are always evaluated in dataset order, whatever the loader's sampler.
    snapshot_every : int, default=50
        Take a snapshot at every step whose index is a multiple of this (steps 0, 50, 100, ...).
    class_names : sequence of str, optional
        Name of every class (a list, tuple or array of str, one per class output of the model);
        default ``dataset.class_names`` of the first evaluation set when it has one, else
        ``"0"``, ``"1"``, ...
    optimizer : torch.optim.Optimizer, optional
        Source of the learning rate (``param_groups[0]["lr"]``). Without it, the recorder adopts
        the first optimizer whose ``step()`` updates the model's parameters; steps logged before
        that optimizer's first ``step()`` have ``lr`` NaN.
    mode : {None, "w", "a"}, default=None
        None refuses an existing path (:class:`~filterscope.errors.LogExistsError`); ``"w"``
        replaces an existing log; ``"a"`` resumes one: steps continue from the last committed
        step, filter changes from the last stored snapshot's weights. A resume needs the same
        layers, evaluation sets (samples, labels and sample ids, in the same order),
        ``class_names`` and ``snapshot_every`` as the log.
    hierarchy : mapping or callable, optional
        Stage/block of layers, overriding the default read from module names
        (``layer2.1.conv1`` → stage ``layer2``, block ``layer2.1``).
    steps_per_epoch : int, optional
        Derive ``step_epoch`` as ``step // steps_per_epoch``; otherwise the epoch is what
        :meth:`set_epoch` last set (0 at first).
    eval_batch_size : int, optional
        Evaluation batch size; default the loader's batch size, or 256.
    analyze_every : int, optional
        Run the GMM analysis at every ``analyze_every``-th snapshot (snapshot 0, k, 2k, ...) and
        at the final one, appending its Dataset to the log's ``"analysis"`` group.
    analyze_data : optional
        Data given to the analysis (required with ``analyze_every``).
    analyze_kwargs : mapping, optional
        Keyword arguments of the analysis.
    analyze_fn : callable, optional
        ``fn(model, analyze_data, **analyze_kwargs)`` returning an xarray Dataset or an object
        with a ``.dataset``; default :func:`filterscope.analyze`.
    keep_weights : bool, default=True
        Store the last snapshot's weights (float32, in the log's ``state`` group) so that a run
        resumed with ``mode="a"`` continues the filter change metrics. With False the first
        snapshot after a resume has NaN change metrics; saves one weight copy of disk writes per
        snapshot for very large models.
    durable : bool, default=False
        ``fsync`` every file before each commit, so a commit also survives an operating-system
        crash or power loss (a killed process never loses a commit either way).
    thumbnails : bool, default=True
        Store a small thumbnail of every evaluation sample when the log is created (uint8, the
        longer side at most 64 px, at most 12,288 bytes per sample before compression), which
        :class:`~filterscope.ValidationView` shows; only for image inputs (``(N, C, H, W)``
        with 1, 3 or 4 channels, or ``(N, H, W)``). It costs one pass over each evaluation set
        without the model. False stores none.

    Attributes
    ----------
    layers_ : list of Layer
        The layer table.
    class_names_ : tuple of str or None
        Class names (None without evaluation sets or ``class_names``).
    step_ : int
        Global index of the next step.
    n_snapshots_ : int
        Snapshots taken so far. They are written to disk by a background thread, in order;
        :meth:`close` waits for them.
    snapshot_seconds_ : dict of str to float
        Wall time the training loop spent on the last snapshot: ``"eval"``, ``"stats"`` (also
        the step scalars' transfer), ``"analysis"`` and ``"encode"`` (compressing its chunks).
    write_seconds_ : float
        Time the writer thread took to write and commit the last snapshot's files (overlapped
        with training).

    Examples
    --------
    >>> import tempfile, torch
    >>> from torch import nn
    >>> import filterscope as fs
    >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
    <torch._C.Generator object at ...>
    >>> model = nn.Sequential(nn.Flatten(), nn.Linear(16, 4))
    >>> x, y = torch.randn(32, 16), torch.arange(32) % 4
    >>> opt = torch.optim.SGD(model.parameters(), lr=0.1)
    >>> path = tempfile.mkdtemp() + "/run"
    >>> with fs.Recorder(model, path, eval_sets={"val": (x, y)}, snapshot_every=5,
    ...                  optimizer=opt) as rec:
    ...     for _ in range(10):
    ...         opt.zero_grad()
    ...         loss = nn.functional.cross_entropy(model(x), y)
    ...         loss.backward()
    ...         rec.step(loss)
    ...         opt.step()
    >>> log = fs.open_log(path)
    >>> log.sizes["step"], log.sizes["snapshot"]
    (10, 3)
    >>> float(log.lr[0])
    0.1
    """

    def __init__(
        self,
        model: nn.Module,
        path: str | Path,
        eval_sets: Any = None,
        *,
        snapshot_every: int = 50,
        class_names: Sequence[str] | None = None,
        optimizer: torch.optim.Optimizer | None = None,
        mode: Mode = None,
        hierarchy: Hierarchy | None = None,
        steps_per_epoch: int | None = None,
        eval_batch_size: int | None = None,
        analyze_every: int | None = None,
        analyze_data: Any = None,
        analyze_kwargs: Mapping[str, Any] | None = None,
        analyze_fn: Callable[..., Any] | None = None,
        keep_weights: bool = True,
        durable: bool = False,
        thumbnails: bool = True,
    ) -> None:
        self.model = model
        self.path = Path(path)
        self.eval_sets = eval_sets
        self.snapshot_every = snapshot_every
        self.class_names = class_names
        self.optimizer = optimizer
        self.mode = mode
        self.hierarchy = hierarchy
        self.steps_per_epoch = steps_per_epoch
        self.eval_batch_size = eval_batch_size
        self.analyze_every = analyze_every
        self.analyze_data = analyze_data
        self.analyze_kwargs = analyze_kwargs
        self.analyze_fn = analyze_fn
        self.keep_weights = keep_weights
        self.durable = durable
        self.thumbnails = thumbnails

        self._check_params()
        self._module = unwrap_model(model)
        # Everything below validates before anything touches the disk.
        _check_materialised(self._module)
        self.layers_: list[Layer] = discover_layers(self._module, hierarchy)
        self._device = self.layers_[0].weight.device
        self._stats_index = np.array([i for i, layer in enumerate(self.layers_) if layer.has_stats])
        self._sets: list[EvalSet] = make_eval_sets(eval_sets, eval_batch_size)
        self._classes = self._check_eval_sets()
        self.class_names_ = self._resolve_class_names()
        self._dist = _Distributed.detect(self._device)
        self._engine = StatsEngine([self.layers_[i] for i in self._stats_index], self._device)

        self.step_ = 0
        self.n_snapshots_ = 0
        self.snapshot_seconds_: dict[str, float] = {}
        self._epoch = 0
        self._last_snapshot_step = -1
        self._prev: Reference | None = None
        self._last_exit: float | None = None
        self._tracked: tuple[Any, Any, Any] | None = None
        self._lr_source = optimizer
        # Warned once per Recorder: evaluation sets with non-finite outputs, missing gradients.
        self._warned_sets: set[str] = set()
        self._warned_gradients = False
        # The open log (store, writer, buffered steps, hooks) lives in a separate object that
        # never refers back to this Recorder, so that a finalizer can close it.
        self._sink = _Sink(self.path, self._device)

        if self._dist.rank == 0:
            owner = _creation_site()
            try:
                self._sink.store = self._open_store(owner)
            except BaseException as exc:
                self._dist.agree(ok=False)
                raise exc
            self._sink.writer = _Writer()
        # A Recorder that is garbage-collected unclosed, or still open at interpreter exit,
        # commits its buffered steps and unlocks the log.
        self._finalizer = weakref.finalize(self, _close_unclosed, self._sink)
        resume = self._dist.agree(
            ok=True,
            values=[self.step_, self.n_snapshots_, self._epoch, self._last_snapshot_step],
        )
        self.step_, self.n_snapshots_, self._epoch, self._last_snapshot_step = resume
        if optimizer is None:
            self._watch_for_optimizer()

    # ------------------------------------------------------------------ validation

    def _check_params(self) -> None:
        for name in ("snapshot_every", "steps_per_epoch", "eval_batch_size", "analyze_every"):
            value = getattr(self, name)
            if value is None and name != "snapshot_every":
                continue
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise InvalidParameterError(f"{name} must be a positive integer, got {value!r}.")
        if not isinstance(self.thumbnails, bool):
            raise InvalidParameterError(
                f"thumbnails must be True or False, got {self.thumbnails!r}."
            )
        if self.mode not in (None, "w", "a"):
            raise InvalidParameterError(f"mode must be None, 'w' or 'a', got {self.mode!r}.")
        if self.analyze_every is not None and self.analyze_data is None:
            raise InvalidParameterError(
                "analyze_every needs analyze_data: the samples whose feature maps the analysis "
                "clusters."
            )
        if not isinstance(self.model, nn.Module):
            raise InvalidModelError(
                f"model must be a torch.nn.Module, got {type(self.model).__name__}."
            )
        names = self.class_names
        if names is not None:
            # A str is a sequence too: "abc" would silently become three classes "a", "b", "c".
            if isinstance(names, str | bytes) or not (
                isinstance(names, Sequence) or (isinstance(names, np.ndarray) and names.ndim == 1)
            ):
                raise InvalidParameterError(
                    f"class_names must be a sequence of str, one name per class, got "
                    f"{type(names).__name__} {names!r:.60}; pass e.g. class_names=['cat', 'dog']."
                )
            bad = [name for name in names if not isinstance(name, str)]
            if bad:
                raise InvalidParameterError(
                    f"class_names must all be str, got {bad[0]!r} ({type(bad[0]).__name__}); "
                    "pass [str(name) for name in names] if that is what you mean."
                )

    def _check_eval_sets(self) -> int | None:
        classes = len(self.class_names) if self.class_names is not None else None
        for ev in self._sets:
            n = check_first_batch(self._module, ev, self._device)
            if classes is not None and n != classes:
                what = "class_names has" if self.class_names is not None else "the first set gives"
                raise InvalidDataError(
                    f"on evaluation set {ev.name!r} the model outputs {n} class scores but "
                    f"{what} {classes} classes; they must agree."
                )
            classes = n
            check_labels(ev, n)
        return classes

    def _resolve_class_names(self) -> tuple[str, ...] | None:
        if self.class_names is not None:
            return tuple(str(c) for c in self.class_names)
        if self._classes is None:
            return None
        if self._sets and self._sets[0].class_names is not None:
            if len(self._sets[0].class_names) == self._classes:
                return self._sets[0].class_names
        return tuple(str(i) for i in range(self._classes))

    # ------------------------------------------------------------------ the store

    def _open_store(self, owner: str) -> LogStore:
        store = LogStore.open(self.path, self.mode, durable=self.durable, owner=owner)
        try:
            if store.is_new:
                self._define(store)
                store.publish()
            else:
                self._resume(store)
        except BaseException:
            store.abandon()
            raise
        return store

    def _define(self, store: LogStore) -> None:
        # Every array comes from the layout table (filterscope.log.schema.LAYOUT): names, dims,
        # dtypes and fill values are declared there once.
        layers = self.layers_
        stats_layers = [layers[i] for i in self._stats_index]
        per_filter = _filters(stats_layers)
        values: dict[str, Any] = {
            "layer": np.arange(len(layers)),
            "layer_name": [layer.name for layer in layers],
            "layer_stage": [layer.stage for layer in layers],
            "layer_block": [layer.block for layer in layers],
            "layer_kind": [layer.kind for layer in layers],
            "layer_filters": [layer.filters for layer in layers],
            "layer_params": _layer_params(layers),
            "layer_has_stats": [layer.has_stats for layer in layers],
            "filter": np.arange(self._engine.n_filters),
            "filter_layer": np.repeat([layer.name for layer in stats_layers], per_filter),
            "filter_layer_index": np.repeat(self._stats_index, per_filter),
            "filter_channel": np.concatenate([np.arange(n) for n in per_filter]),
            "stat": list(STATS),
            "threshold": THRESHOLDS,
        }
        if self.class_names_ is not None:
            values["class"] = np.arange(len(self.class_names_))
            values["class_name"] = list(self.class_names_)
        sizes = {
            "layer": len(layers),
            "filter": self._engine.n_filters,
            "stat": len(STATS),
            "threshold": len(THRESHOLDS),
        }
        root = layout(ROOT)
        present = [v.name for v in root if not v.when or v.name in values]
        store.set_attrs(
            coordinates=coordinates_attr(ROOT, present),
            eval_sets=[ev.name for ev in self._sets],
            snapshot_every=self.snapshot_every,
            model=type(self._module).__name__,
            n_parameters=self._engine.n_params,
            filterscope_version=__version__,
            torch_version=torch.__version__,
            created=datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            **{_FINGERPRINTS: {ev.name: _fingerprint(ev) for ev in self._sets}},
        )
        for var in root:
            if var.appendable:
                if var.per == "log":  # per-set arrays (<set>_loss) come with their set below
                    inner = tuple(sizes[d] for d in var.dims[1:])
                    store.create_appendable(
                        var.name, list(var.dims), var.dtype, inner, fill=var.fill_value
                    )
            elif var.name in values:
                store.create_static(var.name, var.array(values[var.name]), list(var.dims))
            else:
                # Only conditional arrays (class coordinates without classes) may be left out.
                assert var.when, f"the layout declares {var.name!r}; _define gives no values"
        eval_vars = layout(EVAL_SET_GROUP)
        for ev in self._sets:
            for var in root:
                if var.per == "set":
                    store.create_appendable(
                        var.key(ev.name), list(var.dims), var.dtype, fill=var.fill_value
                    )
            group = EVAL_SET_GROUP.replace(SET, ev.name)
            names = [v.name for v in eval_vars]
            store.create_group(group, {"coordinates": coordinates_attr(EVAL_SET_GROUP, names)})
            static = {"sample": np.arange(len(ev)), "sample_id": ev.sample_ids, "label": ev.labels}
            static.update(self._thumbnails(ev))
            for var in eval_vars:
                if var.name not in static and not var.appendable:
                    assert var.when, f"the layout declares {var.name!r}; _define gives no values"
                elif var.name == "thumbnail":
                    # One chunk per 256 thumbnails: a view reads one without decompressing 8192.
                    thumbs = var.array(static[var.name])
                    store.create_static(
                        var.key(ev.name), thumbs, list(var.dims), chunks=(256, *thumbs.shape[1:])
                    )
                elif var.appendable:
                    store.create_appendable(
                        var.key(ev.name), list(var.dims), var.dtype, (len(ev),), fill=var.fill_value
                    )
                else:
                    store.create_static(
                        var.key(ev.name), var.array(static[var.name]), list(var.dims)
                    )
        if self.keep_weights:
            self._create_state(store)

    def _thumbnails(self, ev: EvalSet) -> dict[str, np.ndarray]:
        """The ``thumbnail`` array of ``ev`` and its pixel coordinates, or nothing."""
        thumbs = thumbnails(ev) if self.thumbnails else None
        if thumbs is None:
            return {}
        return {
            "thumbnail": thumbs,
            **{
                dim: np.arange(size, dtype=np.int64)
                for dim, size in zip(
                    ("thumb_y", "thumb_x", "thumb_channel"), thumbs.shape[1:], strict=True
                )
            },
        }

    def _create_state(self, store: LogStore) -> None:
        store.create_group(STATE_GROUP)
        store.create_slots(_STATE_KEY, 2, self._engine.n_params, list(_STATE_VAR.dims))

    def _resume(self, store: LogStore) -> None:
        names = [str(v) for v in store.read_array("layer_name")]
        filters = store.read_array("layer_filters").tolist()
        mine = [layer.name for layer in self.layers_]
        if names != mine or filters != [layer.filters for layer in self.layers_]:
            raise InvalidModelError(
                f"the log at {store.path} was recorded from a model with layers {names} "
                f"(filters {filters}); this model has {mine} (filters "
                f"{[layer.filters for layer in self.layers_]}). Resume with the same architecture, or "
                "start a new log (another path or mode='w')."
            )
        if store.attrs.get("n_parameters") != self._engine.n_params:
            raise InvalidModelError(
                f"the log at {store.path} was recorded from a model with "
                f"{store.attrs.get('n_parameters')} weights in its measured layers; this model "
                f"has {self._engine.n_params}. Resume with the same architecture."
            )
        params = _layer_params(self.layers_)
        if store.has_array("layer_params"):
            stored_params = store.read_array("layer_params").tolist()
            if stored_params != params:
                raise InvalidModelError(
                    f"the log at {store.path} was recorded from a model whose layers have "
                    f"{stored_params} weights; this model's have {params}. Resume with the "
                    "same architecture."
                )
        else:
            # A log from before real logs carried layer_params gains it.
            var = VARIABLES[ROOT, "layer_params"]
            store.create_static(var.name, var.array(params), list(var.dims))
            names = str(store.attrs.get("coordinates", "")).split()
            store.set_attrs(coordinates=coordinates_attr(ROOT, [*names, var.name]))
        stored_every = store.attrs.get("snapshot_every")
        if stored_every is not None and stored_every != self.snapshot_every:
            # One schedule per log: snapshot_step would otherwise change its spacing mid-log.
            raise InvalidParameterError(
                f"the log at {store.path} takes a snapshot every {stored_every} steps; this "
                f"Recorder was given snapshot_every={self.snapshot_every}. Resume with "
                f"snapshot_every={stored_every}, or start a new log (another path or mode='w')."
            )
        stored_sets = list(store.attrs.get("eval_sets", []))
        sizes = {name: len(store.read_array(f"{EVAL_GROUP}/{name}/sample")) for name in stored_sets}
        mine_sets = {ev.name: len(ev) for ev in self._sets}
        if sizes != mine_sets or list(mine_sets) != stored_sets:
            raise InvalidDataError(
                f"the log at {store.path} has evaluation sets {sizes} (name: samples); this "
                f"recorder was given {mine_sets}. Resume with the same evaluation sets."
            )
        fingerprints = dict(store.attrs.get(_FINGERPRINTS) or {})
        for ev in self._sets:
            fingerprint = _fingerprint(ev)
            if fingerprints.get(ev.name) != fingerprint:
                # No fingerprint (a log from before they existed) or another one: the stored
                # arrays decide, and say what differs.
                _compare_eval_set(store, ev)
                fingerprints[ev.name] = fingerprint
        self._check_class_names(store)
        if fingerprints != store.attrs.get(_FINGERPRINTS):
            store.set_attrs(**{_FINGERPRINTS: fingerprints})
        self.step_ = store.committed.get("step", 0)
        self.n_snapshots_ = store.committed.get("snapshot", 0)
        if self.step_:
            self._epoch = int(store.read_array("step_epoch")[-1])
        if self.n_snapshots_:
            self._last_snapshot_step = int(store.read_array("snapshot_step")[-1])
            if self.keep_weights and store.has_array(_STATE_KEY):
                slot = (self.n_snapshots_ - 1) % 2
                prev = store.read_array(_STATE_KEY, slot, slot + 1)[0]
                # All NaN: the slot was never written (the log was recorded without weights).
                if not np.isnan(prev).all():
                    self._prev = self._engine.reference(torch.as_tensor(prev))
        if self.keep_weights and not store.has_array(_STATE_KEY):
            self._create_state(store)

    def _check_class_names(self, store: LogStore) -> None:
        stored = (
            [str(v) for v in store.read_array("class_name")]
            if store.has_array("class_name")
            else None
        )
        mine = list(self.class_names_) if self.class_names_ is not None else None
        if stored == mine:
            return
        if stored is None or mine is None or len(stored) != len(mine):
            what = (
                f"the log has {'no' if stored is None else len(stored)} class names, this "
                f"Recorder {'none' if mine is None else len(mine)}"
            )
        else:
            diff = [i for i, (a, b) in enumerate(zip(stored, mine, strict=True)) if a != b]
            what = f"{len(diff)} of {len(mine)} class names differ: " + ", ".join(
                f"class {i} is {stored[i]!r} in the log but {mine[i]!r} here" for i in diff[:3]
            )
            what += " ..." if len(diff) > 3 else ""
        if stored is None:
            hint = "no class_names"
        elif len(stored) <= 20:
            hint = f"class_names={stored!r}"
        else:
            hint = "the log's class_names (open_log(path).class_name.values)"
        raise InvalidDataError(
            f"the log at {store.path} was recorded with other class names: {what}. Resume with "
            f"{hint}, or start a new log (another path or mode='w')."
        )

    # ------------------------------------------------------------------ training-loop API

    def step(
        self,
        loss: torch.Tensor | float | None,
        output: torch.Tensor | None = None,
        target: torch.Tensor | None = None,
    ) -> None:
        """Log one optimizer step; take a snapshot when one is due.

        Call it after ``loss.backward()`` and before ``optimizer.step()``. It does not
        synchronise with the device: the loss stays a tensor until the next snapshot.

        Parameters
        ----------
        loss : torch.Tensor, float or None
            The step's loss: a real scalar (one-element) tensor, a Python int or float, or a
            numpy real scalar; None records NaN. A NaN or Inf loss is recorded as is, with a
            RuntimeWarning naming the step (at the next snapshot).
        output : torch.Tensor, optional
            The model's ``(batch, classes)`` output for this step.
        target : torch.Tensor, optional
            The batch's labels. With ``output``, ``train_error`` is the fraction misclassified;
            without them it is NaN.
        """
        self._check_open()
        entered = time.perf_counter()
        index = self.step_
        self._sink.buffer.add(
            index=index,
            epoch=self._current_epoch(index),
            loss=_loss_tensor(loss),
            wrong=_wrong(output, target),
            lr=self._lr(),
            step_time=math.nan if self._last_exit is None else entered - self._last_exit,
        )
        self.step_ += 1
        if index % self.snapshot_every == 0 and index != self._last_snapshot_step:
            self._snapshot(index, final=False, in_step=True)
        self._last_exit = time.perf_counter()

    def snapshot(self) -> None:
        """Take a snapshot now (e.g. at the end of an epoch), outside the step schedule.

        Its ``snapshot_step`` is the number of steps logged so far: call it after
        ``optimizer.step()``, when that many updates are in the weights.
        """
        self._check_open()
        if self.step_ != self._last_snapshot_step:
            self._snapshot(self.step_, final=False)
        self._last_exit = time.perf_counter()

    def flush(self) -> None:
        """Wait until every snapshot taken so far is committed (readable with ``open_log``)."""
        self._check_open()
        if self._sink.writer is not None:
            self._sink.writer.wait()

    def set_epoch(self, epoch: int) -> None:
        """Set the epoch recorded with the following steps (like ``DistributedSampler``)."""
        self._epoch = int(epoch)

    def attach(self, optimizer: torch.optim.Optimizer) -> Recorder:
        """Log a step automatically at every ``optimizer.step()``, so the loop needs no ``step``.

        A step pre-hook on ``optimizer`` calls :meth:`step` right before each update, which is
        exactly where a manual call goes. The loss (and output/target for ``train_error``) comes
        from a loss function wrapped with :meth:`track`; without one the loss is NaN.

        Returns
        -------
        Recorder
            self.

        Examples
        --------
        >>> import tempfile, torch
        >>> from torch import nn
        >>> import filterscope as fs
        >>> model = nn.Linear(4, 2)
        >>> opt = torch.optim.SGD(model.parameters(), lr=0.1)
        >>> rec = fs.Recorder(model, tempfile.mkdtemp() + "/run", snapshot_every=2).attach(opt)
        >>> criterion = rec.track(nn.CrossEntropyLoss())
        >>> for _ in range(3):
        ...     opt.zero_grad()
        ...     criterion(model(torch.randn(8, 4)), torch.zeros(8, dtype=torch.long)).backward()
        ...     opt.step()
        >>> rec.close()
        >>> rec.step_
        3
        """
        self._check_open()
        self._sink.remove_hooks()
        self._lr_source = optimizer
        # A weak reference: the optimizer must not keep an unclosed Recorder (and its lock)
        # alive; once the Recorder is collected, the hook is removed.
        method = weakref.WeakMethod(self._before_optimizer_step)

        def before_step(optimizer: Any, args: Any, kwargs: Any) -> None:
            bound = method()
            if bound is not None:
                bound(optimizer, args, kwargs)

        self._sink.hooks.append(optimizer.register_step_pre_hook(before_step))
        return self

    def track(self, loss_fn: Callable[..., torch.Tensor]) -> Callable[..., torch.Tensor]:
        """Wrap a loss function so that :meth:`attach` logs its last loss, output and target.

        Parameters
        ----------
        loss_fn : callable
            ``loss_fn(output, target, ...)`` returning a scalar tensor.

        Returns
        -------
        callable
            Same signature and result; it also remembers ``(loss, output, target)``.
        """

        recorder = weakref.ref(self)  # the wrapped loss must not keep the Recorder alive

        def tracked(output: torch.Tensor, target: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
            loss = loss_fn(output, target, *args, **kwargs)
            rec = recorder()
            if rec is not None:
                rec._tracked = (loss.detach(), output.detach(), target)
            return loss

        return tracked

    def close(self) -> None:
        """Take the final snapshot (if the weights changed since the last one) and close the log."""
        self._close(failed=False)

    def __enter__(self) -> Recorder:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._close(failed=exc_type is not None)

    @property
    def write_seconds_(self) -> float:
        """Time the writer thread took to write and commit the last snapshot's files."""
        return self._sink.write_seconds

    def __repr__(self) -> str:
        state = "closed" if self._sink.closed else "open"
        return (
            f"Recorder({type(self._module).__name__}, {str(self.path)!r}, "
            f"eval_sets={[ev.name for ev in self._sets]}, snapshot_every={self.snapshot_every}, "
            f"step_={self.step_}, n_snapshots_={self.n_snapshots_}, {state})"
        )

    # ------------------------------------------------------------------ internals

    def _check_open(self) -> None:
        if self._sink.closed:
            raise FilterscopeError(f"the Recorder for {self.path} is closed; create a new one.")

    def _current_epoch(self, index: int) -> int:
        if self.steps_per_epoch is not None:
            return index // self.steps_per_epoch
        return self._epoch

    def _lr(self) -> float:
        if self._lr_source is None:
            return math.nan
        lr = self._lr_source.param_groups[0]["lr"]
        return float(lr)

    def _before_optimizer_step(self, optimizer: Any, args: Any, kwargs: Any) -> None:
        loss, output, target = self._tracked or (None, None, None)
        self._tracked = None
        self.step(loss, output, target)

    def _watch_for_optimizer(self) -> None:
        from torch.optim.optimizer import register_optimizer_step_pre_hook

        mine = {id(p) for p in self._module.parameters()}
        checked: set[int] = set()

        def adopt(optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
            if id(optimizer) in checked:
                return
            checked.add(id(optimizer))
            params = (p for group in optimizer.param_groups for p in group["params"])
            if any(id(p) in mine for p in params):
                handle.remove()
                rec = recorder()
                if rec is not None:
                    rec._lr_source = optimizer
                    rec._sink.buffer.fill_lr(rec._lr())

        # The global hook holds a weak reference only, so that it keeps no Recorder alive.
        recorder = weakref.ref(self)
        handle = register_optimizer_step_pre_hook(adopt)
        self._sink.hooks.append(handle)

    def _snapshot(self, at_step: int, final: bool, in_step: bool = False) -> None:
        seconds = {}
        start = time.perf_counter()
        per_sample = {ev.name: self._evaluate(ev) for ev in self._sets}
        mark = time.perf_counter()
        seconds["eval"] = mark - start
        index = self.n_snapshots_
        epoch = self._current_epoch(at_step)
        job = None
        writer = self._sink.writer
        if writer is not None:
            self._check_outputs(per_sample, index, at_step)
            stats = self._engine.compute(self._engine.flatten(), self._prev)
            if in_step:
                # Only snapshots inside step() must see this step's gradients; close() and
                # snapshot() come after optimizer.step(), often after zero_grad().
                self._check_gradients(stats, index, at_step)
            self._prev = stats.reference
            steps = self._flush_steps(reduce=True)
            seconds["stats"] = time.perf_counter() - mark
            mark = time.perf_counter()
            analysis = self._analyze() if self._analysis_due(index, final) else None
            seconds["analysis"] = time.perf_counter() - mark
            weights = stats.reference.weights.cpu().numpy()
            snap = _Snapshot(index, at_step, epoch, stats, per_sample, weights, analysis)
            mark = time.perf_counter()
            job = self._prepare(steps, snap)
            seconds["encode"] = time.perf_counter() - mark
        else:
            self._flush_steps(reduce=True)
        self.n_snapshots_ += 1
        self._last_snapshot_step = at_step
        self.snapshot_seconds_ = seconds
        if job is not None and writer is not None:
            writer.submit(job)

    def _check_outputs(
        self, per_sample: Mapping[str, np.ndarray | None], index: int, at_step: int
    ) -> None:
        for name, rows in per_sample.items():
            if rows is None or name in self._warned_sets:
                continue
            bad = int((rows[0] == NO_PREDICTION).sum())
            if bad:
                self._warned_sets.add(name)
                warnings.warn(
                    f"evaluation set {name!r}: the model's outputs are not finite (NaN or Inf) "
                    f"for {bad} of {rows.shape[1]} samples at snapshot {index} (step {at_step}); "
                    f"they are recorded as wrong (pred {NO_PREDICTION}, correct False, p_true, "
                    f"margin and sample_loss NaN) and {name}_loss is NaN. The model may have "
                    "diverged. Later snapshots will not be warned again for this set.",
                    RuntimeWarning,
                    stacklevel=4,
                )

    def _check_gradients(self, stats: SnapshotStats, index: int, at_step: int) -> None:
        # grad_stat's l0 (non-zero count) is NaN for a layer whose gradient is None.
        if self._warned_gradients:
            return
        nonzero = stats.grad_stat[:, _L0]
        if np.isnan(nonzero).all():
            what = "no measured layer has a gradient (every .grad is None)"
        elif (np.isnan(nonzero) | (nonzero == 0)).all():
            what = "the gradients of all measured layers are None or all zero"
        else:
            return
        self._warned_gradients = True
        warnings.warn(
            f"at snapshot {index} (step {at_step}) {what}: step() must be called after "
            "loss.backward() and before optimizer.step(), so that it sees this step's gradients; "
            "this snapshot's gradient statistics, change ratios and gradient filter metrics "
            "describe no gradient (if those layers are frozen on purpose, ignore this). Later "
            "snapshots will not be warned again.",
            RuntimeWarning,
            stacklevel=4,
        )

    def _analysis_due(self, index: int, final: bool) -> bool:
        every = self.analyze_every
        return every is not None and (final or index % every == 0)

    def _analyze(self) -> Any:
        fn = self.analyze_fn
        if fn is None:
            # Imported on first use: the GMM engine is heavy and optional for recording.
            fn = importlib.import_module("filterscope.gmm.analyze").analyze
        with evaluation_mode(self._module):
            result = fn(self._module, self.analyze_data, **dict(self.analyze_kwargs or {}))
        dataset = getattr(result, "dataset", result)
        import xarray as xr

        if not isinstance(dataset, xr.Dataset):
            raise InvalidDataError(
                f"the analysis returned {type(result).__name__}; expected an xarray.Dataset or an "
                "object with a .dataset attribute."
            )
        # The probe's thumbnails are the same at every analysed snapshot: the log keeps its own
        # thumbnails of the evaluation samples, and appending these each time would only repeat.
        return dataset.drop_vars("thumbnail", errors="ignore")

    def _evaluate(self, ev: EvalSet) -> np.ndarray | None:
        assert self._classes is not None
        indices = np.arange(self._dist.rank, len(ev), self._dist.world)
        local = evaluate(self._module, ev, indices, self._device, self._classes)
        if self._dist.world == 1:
            return local
        return self._dist.gather_samples(local, indices, len(ev))

    def _flush_steps(self, reduce: bool) -> dict[str, np.ndarray] | None:
        steps = self._sink.buffer.take(self._dist if reduce else None, self._device)
        if steps is not None and self._dist.rank == 0:
            _warn_nonfinite_losses(steps, self.path, stacklevel=4)
        return steps

    def _prepare(
        self, steps: Mapping[str, np.ndarray] | None, snap: _Snapshot
    ) -> Callable[[], None]:
        # Encode every row of the snapshot here; the returned job only writes files.
        store = self._sink.store
        assert store is not None
        if steps is not None:
            self._sink.append_steps(steps)
        store.append("snapshot", [snap.index])
        store.append("snapshot_step", [snap.step])
        store.append("snapshot_epoch", [snap.epoch])
        n_layers = len(self.layers_)
        stats = snap.stats
        for name, values, width in (
            ("weight_stat", stats.weight_stat, len(STATS)),
            ("grad_stat", stats.grad_stat, len(STATS)),
            ("change_ratio", stats.change_ratio, len(THRESHOLDS)),
        ):
            full = np.full((n_layers, width), np.nan, dtype=np.float32)
            full[self._stats_index] = values
            store.append(name, full[None])
        for name in FILTER_VARS:
            store.append(name, stats.filters[name][None])
        for ev in self._sets:
            rows = snap.per_sample[ev.name]
            assert rows is not None
            pred, correct, p_true, margin, sample_loss = rows
            store.append(f"{ev.name}_loss", [np.float32(sample_loss.mean())])
            store.append(f"{ev.name}_error", [np.float32(1.0 - correct.mean())])
            group = f"{EVAL_GROUP}/{ev.name}"
            store.append(f"{group}/correct", correct.astype(bool)[None])
            store.append(f"{group}/pred", pred.astype(np.int32)[None])
            store.append(f"{group}/p_true", p_true.astype(np.float16)[None])
            store.append(f"{group}/margin", margin.astype(np.float16)[None])
            store.append(f"{group}/sample_loss", sample_loss.astype(np.float32)[None])
        if self.keep_weights:
            store.write_slot(_STATE_KEY, snap.index % 2, snap.weights)
        if snap.analysis is not None:
            store.append_group(
                ANALYSIS_GROUP,
                snap.analysis,
                "analysis_snapshot",
                coords={"analysis_step": np.int64(snap.step)},
                commit=False,
            )
        batch = store.commit(deferred=True)
        assert batch is not None
        return functools.partial(self._sink.run_batch, batch)

    def _close(self, failed: bool) -> None:
        if self._sink.closed:
            return
        self._finalizer.detach()  # closed here: nothing left for the finalizer
        steps = None
        try:
            if not failed and self.step_ != self._last_snapshot_step:
                self._snapshot(self.step_, final=True)
            else:
                # After an exception, collectives could hang: rank 0 keeps its own values.
                steps = self._flush_steps(reduce=not failed)
        finally:
            self._sink.finish(steps)


@dataclass
class _Snapshot:
    """What the writer thread needs of one snapshot (host arrays only)."""

    index: int
    step: int
    epoch: int
    stats: SnapshotStats
    per_sample: Mapping[str, np.ndarray | None]
    weights: np.ndarray
    analysis: Any


class _Sink:
    """The open log of a Recorder: store, writer, buffered steps and hooks.

    It never refers to its Recorder, so that :func:`_close_unclosed`, the Recorder's finalizer,
    can hold it without keeping the Recorder alive, and can commit the buffered steps and unlock
    the log once the Recorder is gone.
    """

    def __init__(self, path: Path, device: torch.device) -> None:
        self.path = path
        self.device = device
        self.store: LogStore | None = None  # rank 0 only
        self.writer: _Writer | None = None  # rank 0 only
        self.buffer = _StepBuffer()
        self.hooks: list[Any] = []
        self.closed = False
        self.write_seconds = math.nan

    def run_batch(self, batch: PendingWrites) -> None:
        started = time.perf_counter()
        batch.run()
        self.write_seconds = time.perf_counter() - started

    def append_steps(self, steps: Mapping[str, np.ndarray]) -> None:
        store = self.store
        assert store is not None
        store.append("step", steps["step"])
        store.append("step_epoch", steps["epoch"])
        for name in STEP_VARS:
            store.append(name, steps[name])

    def remove_hooks(self) -> None:
        for handle in self.hooks:
            handle.remove()
        self.hooks.clear()

    def finish(self, steps: Mapping[str, np.ndarray] | None) -> bool:
        """Wait for queued snapshots, append ``steps``, commit and unlock; False if not committed.

        After a failed write nothing more is committed: the commit record would otherwise
        claim rows whose files were never written. The log keeps its last good commit.
        """
        if self.closed:
            return False
        self.closed = True
        self.remove_hooks()
        store, writer = self.store, self.writer
        if store is None or writer is None:
            return False
        try:
            writer.close()  # raises a write failure not reported yet
        except BaseException:
            store.abandon()
            raise
        if writer.failed:  # reported earlier, at submit() or flush()
            store.abandon()
            return False
        try:
            if steps is not None:
                self.append_steps(steps)
        finally:
            store.close()  # commits (on this thread) and unlocks
        return True


def _close_unclosed(sink: _Sink) -> None:
    """Finalizer of a Recorder that was not closed (garbage-collected, or at interpreter exit).

    Commits the steps logged since the last snapshot, without a final snapshot (that would run
    the model, perhaps at interpreter exit), as ``close()`` does after an exception, and unlocks
    the log.
    """
    if sink.closed:
        return
    writer = sink.writer
    if writer is not None and threading.current_thread() is writer.thread:
        # Garbage collection can run on any thread, the writer's included, which cannot wait
        # for itself: close from a thread of its own (not a daemon: exit waits for it).
        threading.Thread(target=_close_unclosed, args=(sink,), name="filterscope-log-close").start()
        return
    store = sink.store
    pending = len(sink.buffer.index)
    try:
        steps = sink.buffer.take(None, sink.device) if store is not None else None
        if steps is not None:
            _warn_nonfinite_losses(steps, sink.path, stacklevel=2)
        committed = sink.finish(steps)
    except BaseException as exc:
        if store is not None:
            store.abandon()  # at least unlock
        warnings.warn(
            f"the Recorder for {sink.path} was not closed, and closing it failed ({exc!r}); the "
            "log keeps what was committed before. Call close() or use the Recorder as a `with` "
            "block.",
            RuntimeWarning,
            stacklevel=2,
        )
        return
    if store is None:
        return
    if committed:
        done = f"its last {pending} step(s) were committed without a final snapshot"
    else:
        done = f"an earlier write had failed, so its last {pending} step(s) were not committed"
    warnings.warn(
        f"the Recorder for {sink.path} was not closed (call close() or use it as a `with` block): "
        f"{done}; the log has {store.committed.get('step', 0)} steps and "
        f"{store.committed.get('snapshot', 0)} snapshots.",
        RuntimeWarning,
        stacklevel=2,
    )


class _Writer:
    """One background thread that writes prepared snapshots, in order.

    Writing means many small file replacements, which cost milliseconds each on a busy disk;
    on this thread they overlap with training. Jobs only do file I/O, which releases the GIL:
    CPU work (encoding, compression) stays on the training thread, because a background thread
    holding the GIL would stall training's many short GIL-releasing torch calls. Jobs run
    strictly in submission order, so commits stay in snapshot order. The queue is short: if the
    disk cannot keep up, :meth:`submit` blocks rather than holding many snapshots in memory. A
    failed job stops all later writes for good (nothing after it commits): its error is raised
    in the training thread at the next :meth:`submit`, :meth:`wait` or :meth:`close`, and every
    later :meth:`submit` or :meth:`wait` refuses.
    """

    def __init__(self, depth: int = 2) -> None:
        self._queue: queue.Queue[Callable[[], None] | None] = queue.Queue(maxsize=depth)
        self._error: BaseException | None = None
        self._reported = False
        # A daemon thread never blocks interpreter exit; the Recorder's finalizer closes the
        # writer (waiting for queued snapshots) when a script forgets close().
        self.thread = threading.Thread(target=self._run, name="filterscope-log-writer")
        self.thread.daemon = True
        self.thread.start()

    @property
    def failed(self) -> bool:
        """Whether a job failed (then nothing after it was written)."""
        return self._error is not None

    def _run(self) -> None:
        while True:
            job = self._queue.get()
            try:
                if job is None:
                    return
                if self._error is None:
                    job()
            except BaseException as exc:
                self._error = exc
            finally:
                self._queue.task_done()

    def submit(self, job: Callable[[], None]) -> None:
        self._raise(again=True)
        self._queue.put(job)

    def wait(self) -> None:
        self._queue.join()
        self._raise(again=True)

    def close(self) -> None:
        if self.thread.is_alive():
            self._queue.put(None)
            self.thread.join()
        self._raise(again=False)

    def _raise(self, again: bool) -> None:
        # The failure itself once; afterwards (again=True) an error saying why nothing is written.
        error = self._error
        if error is None:
            return
        if not self._reported:
            self._reported = True
            raise error
        if again:
            raise FilterscopeError(
                f"an earlier write of the log failed ({error!r}), so nothing after it can be "
                "committed; the log keeps every snapshot committed before the failure. Close "
                "this Recorder, fix the cause, and resume the log with mode='a'."
            )


def _layer_params(layers: Sequence[Layer]) -> list[int]:
    """``layer_params``: the number of weights of every layer (also those without statistics)."""
    return [int(layer.weight.numel()) for layer in layers]


def _filters(layers: Sequence[Layer]) -> list[int]:
    return [layer.filters for layer in layers]


def _creation_site() -> str:
    """Who holds a log open, for the error of a second writer in this process."""
    frame = sys._getframe(2)  # the caller of Recorder(...)
    when = datetime.datetime.now().strftime("%Y-%m-%d %H:%M:%S")
    return f"a Recorder created at {when} ({Path(frame.f_code.co_filename).name}:{frame.f_lineno})"


def _check_materialised(module: nn.Module) -> None:
    tensors = itertools.chain(module.named_parameters(), module.named_buffers())
    meta = [name for name, t in tensors if t.is_meta]
    if meta:
        shown = ", ".join(meta[:3]) + (f" and {len(meta) - 3} more" if len(meta) > 3 else "")
        raise InvalidModelError(
            f"the model's {shown} are on the meta device: they have shapes but no values, so "
            "nothing can be evaluated or measured. Materialise the model first, e.g. "
            "model.to_empty(device='cpu') (or your device) and then load its weights "
            "(model.load_state_dict(...)) or initialise them."
        )


def _fingerprint(ev: EvalSet) -> dict[str, str]:
    return {
        "labels": hashlib.sha256(ev.labels.astype("<i8").tobytes()).hexdigest(),
        "sample_ids": hashlib.sha256(ev.sample_ids.astype("<i8").tobytes()).hexdigest(),
    }


def _compare_eval_set(store: LogStore, ev: EvalSet) -> None:
    """InvalidDataError naming what differs between ``ev`` and the log's copy of it."""
    group = f"{EVAL_GROUP}/{ev.name}"
    differences = []
    for what, key, mine in (
        ("sample ids", "sample_id", ev.sample_ids),
        ("labels", "label", ev.labels),
    ):
        stored = store.read_array(f"{group}/{key}")
        wrong = np.flatnonzero(stored != mine)
        if wrong.size:
            differences.append(
                f"its {what} differ at {wrong.size} of {len(ev)} samples (first at sample "
                f"{wrong[0]}: {stored[wrong[0]]} in the log, {mine[wrong[0]]} here)"
            )
    if differences:
        raise InvalidDataError(
            f"evaluation set {ev.name!r} is not the one recorded in the log at {store.path}: "
            f"{' and '.join(differences)}. Resume with the same samples in the same order, or "
            "start a new log (another path or mode='w')."
        )


def _warn_nonfinite_losses(steps: Mapping[str, np.ndarray], path: Path, stacklevel: int) -> None:
    bad = ~np.isfinite(steps["loss"]) & steps["loss_given"]
    if bad.any():
        kinds = "NaN" if np.isnan(steps["loss"][bad]).all() else "NaN/Inf"
        where = steps["step"][bad][:10].tolist()
        warnings.warn(
            f"loss is {kinds} at step {', '.join(map(str, where))}"
            f"{' ...' if bad.sum() > 10 else ''} (recorded as is in {path}); "
            "training may have diverged.",
            RuntimeWarning,
            stacklevel=stacklevel + 1,
        )


def _loss_tensor(loss: Any) -> torch.Tensor | None:
    if loss is None:
        return None
    if torch.is_tensor(loss):
        # A bool or complex loss is a mistake (a comparison, a wrong function), not a number.
        if loss.dtype == torch.bool or loss.is_complex():
            raise InvalidDataError(
                f"step() needs the loss as a real scalar tensor or a Python int/float, got a "
                f"{loss.dtype} tensor; pass the (real) loss you call backward() on."
            )
        if loss.numel() != 1:
            raise InvalidDataError(
                f"step() needs the scalar loss, got a tensor of shape {tuple(loss.shape)}; pass "
                "loss.mean() or the reduced loss you call backward() on."
            )
        return loss.detach().reshape(())
    if isinstance(loss, numbers.Real) and not isinstance(loss, bool | np.bool_):
        return torch.tensor(float(loss))
    if isinstance(loss, np.ndarray) and loss.size == 1 and loss.dtype.kind in "iuf":
        return torch.tensor(float(loss.reshape(())))
    raise InvalidDataError(
        "step() needs the loss as a real scalar tensor or a Python int/float (numpy real "
        f"scalars too), got {type(loss).__name__} {loss!r:.40}; pass the loss tensor you call "
        "backward() on, or loss.item()."
    )


def _wrong(output: Any, target: Any) -> tuple[torch.Tensor, int] | None:
    if output is None or target is None:
        return None
    if not torch.is_tensor(output) or output.ndim != 2 or not torch.is_tensor(target):
        raise InvalidDataError(
            "step(output=..., target=...) needs the (batch, classes) output tensor and the "
            f"label tensor, got {getattr(output, 'shape', type(output).__name__)} and "
            f"{getattr(target, 'shape', type(target).__name__)}."
        )
    if target.shape != output.shape[:1]:
        raise InvalidDataError(
            f"step(): output has {output.shape[0]} rows but target has shape "
            f"{tuple(target.shape)}; pass one label per output row."
        )
    return (output.detach().argmax(dim=1) != target).sum(), int(target.numel())


class _StepBuffer:
    """Steps logged since the last write; losses stay on the device until :meth:`take`."""

    def __init__(self) -> None:
        self.index: list[int] = []
        self.epoch: list[int] = []
        self.loss: list[torch.Tensor | None] = []
        self.wrong: list[tuple[torch.Tensor, int] | None] = []
        self.lr: list[float] = []
        self.step_time: list[float] = []

    def add(
        self,
        index: int,
        epoch: int,
        loss: torch.Tensor | None,
        wrong: tuple[torch.Tensor, int] | None,
        lr: float,
        step_time: float,
    ) -> None:
        self.index.append(index)
        self.epoch.append(epoch)
        self.loss.append(loss)
        self.wrong.append(wrong)
        self.lr.append(lr)
        self.step_time.append(step_time)

    def fill_lr(self, lr: float) -> None:
        self.lr = [lr if math.isnan(v) else v for v in self.lr]

    def take(self, dist: _Distributed | None, device: torch.device) -> dict[str, np.ndarray] | None:
        if not self.index:
            return None
        n = len(self.index)
        # One (n, 3) tensor [loss, wrong, total]: a single transfer (and a single all-reduce).
        cols = torch.full((n, 3), math.nan, dtype=torch.float64, device=device)
        given = np.array([v is not None for v in self.loss])
        if given.any():
            losses = [v for v in self.loss if v is not None]
            try:  # one stack, one conversion: a .to() per loss cost ~10 us a step
                values = torch.stack(losses).to(device, torch.float64)
            except RuntimeError:  # losses on several devices
                values = torch.stack([v.to(device, torch.float64) for v in losses])
            cols[torch.as_tensor(np.flatnonzero(given), device=device), 0] = values
        counted = np.array([w is not None for w in self.wrong])
        if counted.any():
            wrong = torch.stack([w[0].to(device, torch.float64) for w in self.wrong if w])
            rows = torch.as_tensor(np.flatnonzero(counted), device=device)
            cols[rows, 1] = wrong
            totals = [float(w[1]) for w in self.wrong if w]
            cols[rows, 2] = torch.tensor(totals, dtype=torch.float64, device=device)
        if dist is not None and dist.world > 1:
            cols = dist.all_reduce_sum(cols)
            cols[:, 0] /= dist.world
        host = cols.cpu().numpy()
        result = {
            "step": np.array(self.index, dtype=np.int64),
            "epoch": np.array(self.epoch, dtype=np.int64),
            "loss": host[:, 0].astype(np.float32),
            "loss_given": given,
            "lr": np.array(self.lr, dtype=np.float64),
            "train_error": (host[:, 1] / host[:, 2]).astype(np.float32),
            "step_time": np.array(self.step_time, dtype=np.float64),
        }
        self.clear()
        return result

    def clear(self) -> None:
        for values in (self.index, self.epoch, self.loss, self.wrong, self.lr, self.step_time):
            values.clear()


class _Distributed:
    """Rank, world size and the few tensor collectives the recorder needs (no pickling)."""

    def __init__(self, rank: int, world: int, device: torch.device) -> None:
        self.rank = rank
        self.world = world
        self.device = device

    @classmethod
    def detect(cls, model_device: torch.device) -> _Distributed:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            # NCCL communicates device tensors only; gloo (and the others) host tensors.
            device = model_device if dist.get_backend() == "nccl" else torch.device("cpu")
            return cls(dist.get_rank(), dist.get_world_size(), device)
        return cls(0, 1, torch.device("cpu"))

    def agree(self, ok: bool, values: Sequence[int] = ()) -> list[int]:
        """Rank 0's ``values`` on every rank; raises on the others if rank 0 failed."""
        if self.world == 1:
            return list(values)
        import torch.distributed as dist

        message = torch.tensor([int(ok), *values] if ok else [0] * 5, dtype=torch.int64)
        message = message.to(self.device)
        dist.broadcast(message, src=0)
        if not message[0]:
            if self.rank == 0:
                return []
            raise FilterscopeError(
                "rank 0 could not open the log (its traceback has the reason); every rank stops."
            )
        return [int(v) for v in message[1:].cpu()]

    def all_reduce_sum(self, values: torch.Tensor) -> torch.Tensor:
        import torch.distributed as dist

        work = values.to(self.device)
        dist.all_reduce(work)
        return work.to(values.device)

    def gather_samples(
        self, local: np.ndarray, indices: np.ndarray, total: int
    ) -> np.ndarray | None:
        """Every rank's per-sample rows, on rank 0, back in dataset order."""
        import torch.distributed as dist

        width = -(-total // self.world)
        packed = torch.full((local.shape[0] + 1, width), -1.0, dtype=torch.float64)
        packed[0, : len(indices)] = torch.as_tensor(indices, dtype=torch.float64)
        packed[1:, : len(indices)] = torch.as_tensor(local)
        packed = packed.to(self.device)
        parts = [torch.empty_like(packed) for _ in range(self.world)]
        dist.all_gather(parts, packed)
        if self.rank != 0:
            return None
        everything = torch.cat(parts, dim=1).cpu().numpy()
        everything = everything[:, everything[0] >= 0]
        return everything[1:, np.argsort(everything[0], kind="stable")]
