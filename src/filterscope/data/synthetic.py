"""A synthetic training log at ImageNet scale, with planted patterns of known ground truth.

The generator imitates a ResNet-50 trained on ImageNet for 90 epochs with step learning-rate
drops (×0.1 at 30 %, 60 % and 90 % of training): per-step loss, learning rate, train error and
step time; per-snapshot validation loss and error; per-sample correctness from a logistic model
of per-sample difficulty × training progress with time-correlated noise (so flips happen where
they would: around the decision boundary, more often while the learning rate is high); per-layer
weight and gradient statistics (the 12 statistics) and change ratios (56 thresholds) consistent
with Gaussian weights and gradients; and the 10 per-filter metrics (cosine near 1, drifting
with the learning rate).

Three patterns are planted, and their ground truth is stored in the log's ``ground_truth`` group
(read it with :func:`ground_truth`):

* **unstable classes** -- a quarter of the images of each such class (at least 10), held
  correct for 40 to 80 snapshots, turn wrong together at a planted snapshot and stay wrong for
  12, so DeepTracker's left-abnormal count (``j = 30``, ``threshold = 5``) flags the class at
  exactly that snapshot;
* **abrupt filters** -- at planted snapshots three filters change direction (cosine between
  consecutive snapshots 0.05-0.5, where every other filter stays above about 0.97), so they
  lead the top-changed filters there;
* **hard classes** -- a group of classes learned only after the second learning-rate drop, so
  their standardised error series form their own k-means cluster.

The log is written snapshot by snapshot through the normal store, so memory stays flat whatever
the size (the full default, 50,000 samples × 1,000 classes × 1,000 snapshots on ResNet-50's
107 layers and 27,560 filters, needs well under 2 GB).
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import xarray as xr

from filterscope.errors import InvalidDataError, LogFormatError
from filterscope.log.hierarchy import default_hierarchy
from filterscope.log.schema import (
    EVAL_GROUP,
    EVAL_SET_GROUP,
    FILTER_VARS,
    ROOT,
    SAMPLE_VARS,
    SET,
    STATS,
    THRESHOLDS,
    TIME_CHUNKS,
    coordinates_attr,
    layout,
)

#: Fractions of training where the learning rate drops by 10×.
LR_DROPS: tuple[float, ...] = (0.3, 0.6, 0.9)

_EPOCHS = 90
_LR0 = 0.1
_MU_DIFFICULTY = 5.6
_SD_DIFFICULTY = 1.45
_SD_CLASS = 0.55
_RHO = 0.85
_PRE_STEADY = 40
_POST_WRONG = 12
_Q = 0.6744897501960817  # standard normal quartile


@dataclass(frozen=True)
class LayerTable:
    """The layers of a model as the log lists them, with the parameters the generator needs.

    Attributes
    ----------
    name, kind, stage, block : tuple of str
        Module name, module type and the stage / block it belongs to.
    filters : numpy.ndarray of int64
        Output filters (units for ``Linear``, features for batch norm).
    params : numpy.ndarray of int64
        Number of weights the layer's statistics summarise (the weight tensor's size).
    fan_in : numpy.ndarray of int64
        Weights per output filter.
    has_stats : numpy.ndarray of bool
        False for batch norm, which the statistics skip.
    """

    name: tuple[str, ...]
    kind: tuple[str, ...]
    stage: tuple[str, ...]
    block: tuple[str, ...]
    filters: npt.NDArray[np.int64]
    params: npt.NDArray[np.int64]
    fan_in: npt.NDArray[np.int64]
    has_stats: npt.NDArray[np.bool_] = field(repr=False)

    @classmethod
    def from_layers(cls, layers: Sequence[Any]) -> LayerTable:
        """The table of a real model's layers, as :func:`filterscope.log.layers.discover_layers`
        lists them, so that a synthetic log has the same layer tree as a recorded one.

        Examples
        --------
        >>> from torch import nn
        >>> from filterscope.log.layers import discover_layers
        >>> net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(4, 2))
        >>> t = LayerTable.from_layers(discover_layers(net))
        >>> t.name, t.params.tolist(), t.n_filters
        (('0', '1', '3'), [36, 4, 8], 6)
        """
        filters = np.asarray([layer.filters for layer in layers], dtype=np.int64)
        fan_in = np.asarray([layer.fan_in for layer in layers], dtype=np.int64)
        return cls(
            name=tuple(layer.name for layer in layers),
            kind=tuple(layer.kind for layer in layers),
            stage=tuple(layer.stage for layer in layers),
            block=tuple(layer.block for layer in layers),
            filters=filters,
            params=filters * fan_in,
            fan_in=fan_in,
            has_stats=np.asarray([layer.has_stats for layer in layers], dtype=bool),
        )

    @property
    def n_filters(self) -> int:
        """Length of the flat ``filter`` axis: output filters of every layer with statistics."""
        return int(self.filters[self.has_stats].sum())


def resnet_layers(
    stages: tuple[int, ...],
    widths: tuple[int, ...],
    block: str,
    stem: str,
    num_classes: int,
    in_channels: int = 3,
) -> LayerTable:
    """The layer table of :class:`filterscope.models.ResNet`, computed without building it.

    Module names and order follow torchvision (``conv1``, ``bn1``, ``layer1.0.conv1``, …,
    ``layer2.0.downsample.0``, …, ``fc``); convolutions have no bias, ``fc`` has one.

    Examples
    --------
    >>> t = resnet_layers((3, 4, 6, 3), (64, 128, 256, 512), "bottleneck", "imagenet", 1000)
    >>> kinds = np.asarray(t.kind)
    >>> int((kinds == "Conv2d").sum()), int(t.filters[kinds == "Conv2d"].sum()), t.n_filters
    (53, 26560, 27560)
    """
    rows: list[tuple[str, str, int, int]] = []  # name, kind, out channels, fan-in

    def conv(name: str, c_in: int, c_out: int, k: int) -> None:
        rows.append((name, "Conv2d", c_out, c_in * k * k))
        bn = name.replace("conv", "bn") if "downsample" not in name else name[:-1] + "1"
        rows.append((bn, "BatchNorm2d", c_out, 1))

    conv("conv1", in_channels, widths[0], 7 if stem == "imagenet" else 3)
    expansion = 4 if block == "bottleneck" else 1
    c_in = widths[0]
    for s, (n_blocks, planes) in enumerate(zip(stages, widths, strict=True)):
        for b in range(n_blocks):
            prefix = f"layer{s + 1}.{b}"
            stride = 2 if (s > 0 and b == 0) else 1
            c_out = planes * expansion
            if block == "bottleneck":
                conv(f"{prefix}.conv1", c_in, planes, 1)
                conv(f"{prefix}.conv2", planes, planes, 3)
                conv(f"{prefix}.conv3", planes, c_out, 1)
            else:
                conv(f"{prefix}.conv1", c_in, planes, 3)
                conv(f"{prefix}.conv2", planes, planes, 3)
            if stride != 1 or c_in != c_out:
                conv(f"{prefix}.downsample.0", c_in, c_out, 1)
            c_in = c_out
    rows.append(("fc", "Linear", num_classes, c_in))
    names = tuple(r[0] for r in rows)
    filters = np.asarray([r[2] for r in rows], dtype=np.int64)
    fan_in = np.asarray([r[3] for r in rows], dtype=np.int64)
    kinds = tuple(r[1] for r in rows)
    has_stats = np.asarray([k != "BatchNorm2d" for k in kinds])
    return LayerTable(
        name=names,
        kind=kinds,
        stage=tuple(default_hierarchy(n)[0] for n in names),
        block=tuple(default_hierarchy(n)[1] for n in names),
        filters=filters,
        params=filters * fan_in,
        fan_in=fan_in,
        has_stats=has_stats,
    )


#: Layer layouts by name: ResNet-50 for ImageNet, and ResNet-18's layout at a quarter width.
LAYOUTS: dict[str, tuple[tuple[int, ...], tuple[int, ...], str, str]] = {
    "resnet50": ((3, 4, 6, 3), (64, 128, 256, 512), "bottleneck", "imagenet"),
    "resnet18": ((2, 2, 2, 2), (16, 32, 64, 128), "basic", "cifar"),
}


@dataclass(frozen=True)
class GroundTruth:
    """What the generator planted.

    Attributes
    ----------
    unstable_classes, unstable_snapshots : numpy.ndarray of int64
        Class ``unstable_classes[i]`` turns unstable at snapshot ``unstable_snapshots[i]``.
    unstable_samples : numpy.ndarray of int64
        Per planted class, the ``n`` samples that flip (shape ``(n_unstable, n)``).
    unstable_lead : numpy.ndarray of int64
        Per such sample, for how many snapshots before the flip it is held correct (at least
        40, so every flip follows a steady run longer than ``j + 1 = 31``).
    filter_events_snapshot, filter_events_filter : numpy.ndarray of int64
        Filter ``filter_events_filter[i]`` changes direction at ``filter_events_snapshot[i]``.
    hard_classes : numpy.ndarray of int64
        Classes learned late, forming their own cluster.
    lr_drop_snapshots : numpy.ndarray of int64
        First snapshot after each learning-rate drop.
    """

    unstable_classes: npt.NDArray[np.int64]
    unstable_snapshots: npt.NDArray[np.int64]
    unstable_samples: npt.NDArray[np.int64]
    unstable_lead: npt.NDArray[np.int64]
    filter_events_snapshot: npt.NDArray[np.int64]
    filter_events_filter: npt.NDArray[np.int64]
    hard_classes: npt.NDArray[np.int64]
    lr_drop_snapshots: npt.NDArray[np.int64]

    def to_dataset(self) -> xr.Dataset:
        """The ground truth as a Dataset (stored in the log's ``ground_truth`` group)."""
        return xr.Dataset(
            {
                "unstable_class": (("unstable",), self.unstable_classes),
                "unstable_snapshot": (("unstable",), self.unstable_snapshots),
                "unstable_sample": (("unstable", "unstable_member"), self.unstable_samples),
                "unstable_lead": (("unstable", "unstable_member"), self.unstable_lead),
                "filter_event_snapshot": (("filter_event",), self.filter_events_snapshot),
                "filter_event_filter": (("filter_event",), self.filter_events_filter),
                "hard_class": (("hard",), self.hard_classes),
                "lr_drop_snapshot": (("lr_drop",), self.lr_drop_snapshots),
            },
            attrs={"unstable_j": 30, "unstable_threshold": 5, "cluster_k": 4},
        )


class SyntheticRun:
    """The generator: coordinates, per-step and per-snapshot arrays, and the ground truth.

    Everything is drawn from ``seed``; snapshots are generated in order, one at a time, by
    :meth:`snapshots`, keeping only O(samples + filters) state.

    Parameters
    ----------
    n_samples, n_classes, n_snapshots : int
        Sizes of the primary evaluation set, the label set and the time axis.
    layers : {"resnet50", "resnet18"} or LayerTable
        Layer layout (see :data:`LAYOUTS`).
    steps_per_snapshot : int
        Optimizer steps logged between snapshots.
    seed : int
        Seed of every random draw.
    plant : bool
        Plant the three patterns (unstable classes, abrupt filters, hard classes).
    n_unstable, n_filter_events, n_hard : int or None
        How many of each to plant; ``None`` picks a size-dependent default.
    """

    def __init__(
        self,
        n_samples: int = 50_000,
        n_classes: int = 1000,
        n_snapshots: int = 1000,
        layers: str | LayerTable = "resnet50",
        steps_per_snapshot: int = 100,
        seed: int = 0,
        plant: bool = True,
        n_unstable: int | None = None,
        n_filter_events: int | None = None,
        n_hard: int | None = None,
    ) -> None:
        _check_sizes(n_samples, n_classes, n_snapshots, layers, steps_per_snapshot)
        self.n_samples = n_samples
        self.n_classes = n_classes
        self.n_snapshots = n_snapshots
        self.steps_per_snapshot = steps_per_snapshot
        self.seed = seed
        self.table = (
            layers
            if isinstance(layers, LayerTable)
            else resnet_layers(*LAYOUTS[layers], num_classes=n_classes)
        )
        rng = np.random.default_rng(seed)
        self._rng = rng

        # Samples: balanced classes in shuffled order (like ImageNet's validation set).
        self.labels = rng.permutation(np.arange(n_samples) % n_classes).astype(np.int64)
        class_offset = rng.normal(0.0, _SD_CLASS, n_classes)
        self.difficulty = (
            _MU_DIFFICULTY + class_offset[self.labels] + rng.normal(0.0, _SD_DIFFICULTY, n_samples)
        ).astype(np.float32)
        self.confuser = (
            (self.labels + rng.integers(1, max(n_classes, 2), n_samples)) % n_classes
        ).astype(np.int32)
        self.lr_drop_snapshots = np.asarray(
            [math.ceil(d * (n_snapshots - 1)) for d in LR_DROPS], dtype=np.int64
        )
        self.ground_truth = self._plant(plant, n_unstable, n_filter_events, n_hard)
        self._hard = np.zeros(n_classes, dtype=bool)
        self._hard[self.ground_truth.hard_classes] = True

        # Layers and filters.
        stats = self.table.has_stats
        self.filter_layer_index = np.repeat(np.flatnonzero(stats), self.table.filters[stats])
        self.filter_fan_in = self.table.fan_in[self.filter_layer_index].astype(np.float32)
        self._layer_sigma0 = np.sqrt(2.0 / np.maximum(self.table.filters, 1)) * np.where(
            np.asarray(self.table.kind) == "Linear", 0.25, 1.0
        )
        self._filter_sigma0 = (
            self._layer_sigma0[self.filter_layer_index]
            * rng.lognormal(0.0, 0.1, self.filter_layer_index.size)
        ).astype(np.float32)
        self._filter_speed = rng.lognormal(0.0, 0.3, self.filter_layer_index.size).astype(
            np.float32
        )
        self._layer_grad0 = 10 ** rng.uniform(-3.5, -2.5, len(self.table.name))

    # ------------------------------------------------------------------ schedule
    def fraction(self, snapshot: int | npt.NDArray[Any]) -> Any:
        """Fraction of training done at a snapshot (0 at the first, 1 at the last)."""
        return np.asarray(snapshot) / max(self.n_snapshots - 1, 1)

    def lr_at(self, x: Any) -> Any:
        """Learning rate at training fraction ``x``: 0.1, divided by 10 at each drop."""
        x = np.asarray(x, dtype=np.float64)
        drops = sum((x >= d).astype(np.float64) for d in LR_DROPS)
        return _LR0 * 0.1**drops

    def skill(self, x: Any, hard: Any = False) -> Any:
        """Model skill at fraction ``x``: fast early learning plus a jump after each drop."""
        x = np.asarray(x, dtype=np.float64)
        s = -2.0 + 7.3 * (1.0 - np.exp(-x / 0.07)) + 0.25 * x
        for drop, jump in zip(LR_DROPS, (0.9, 0.28, 0.06), strict=True):
            s = s + jump * np.clip((x - drop) / 0.012, 0.0, None).clip(max=1.0)
        # Hard classes carry a handicap that fades only after the second drop.
        handicap = 4.0 / (1.0 + np.exp((x - 0.64) / 0.015))
        return s - np.where(hard, handicap, 0.0)

    # ------------------------------------------------------------------ planting
    def _plant(
        self, plant: bool, n_unstable: int | None, n_filter_events: int | None, n_hard: int | None
    ) -> GroundTruth:
        rng = self._rng
        S, C = self.n_snapshots, self.n_classes
        empty = np.zeros(0, dtype=np.int64)
        if not plant:
            return GroundTruth(
                empty,
                empty,
                np.zeros((0, 0), np.int64),
                np.zeros((0, 0), np.int64),
                empty,
                empty,
                empty,
                self.lr_drop_snapshots,
            )
        n_hard = max(3, C // 20) if n_hard is None else n_hard
        n_unstable = max(3, C // 100) if n_unstable is None else n_unstable
        n_filter_events = max(4, S // 100) if n_filter_events is None else n_filter_events
        if n_hard + n_unstable > C:
            raise InvalidDataError(
                f"cannot plant {n_hard} hard and {n_unstable} unstable classes among {C} classes; "
                "lower n_hard / n_unstable or raise n_classes"
            )
        classes = rng.permutation(C)
        hard = np.sort(classes[:n_hard]).astype(np.int64)
        unstable = classes[n_hard : n_hard + n_unstable].astype(np.int64)
        # Unstable snapshots: late enough for a 40-snapshot steady run, away from the lr drops
        # (where many images flip at once by themselves) and from the end.
        allowed = np.arange(2 * _PRE_STEADY + 5, S - _POST_WRONG - 2)
        near_drop = np.abs(allowed[:, None] - self.lr_drop_snapshots[None, :]).min(axis=1) <= 6
        allowed = allowed[~near_drop]
        if allowed.size == 0:
            raise InvalidDataError(
                f"n_snapshots={S} is too short to plant unstable classes: each needs a steady "
                f"run of {_PRE_STEADY}+ snapshots before its flip, away from the learning-rate "
                "drops; use at least 120 snapshots or pass plant=False"
            )
        when = np.sort(rng.choice(allowed, n_unstable, replace=allowed.size < n_unstable))
        per_class = np.bincount(self.labels, minlength=C)
        n_members = max(10, int(per_class.min() * 0.25))
        if per_class[unstable].min() < n_members:
            raise InvalidDataError(
                f"unstable classes need at least {n_members} samples each, some have "
                f"{per_class[unstable].min()}; raise n_samples"
            )
        # The class's easiest images: correct long before the planted snapshot anyway.
        members = np.stack(
            [
                np.sort(
                    np.flatnonzero(self.labels == c)[
                        np.argsort(self.difficulty[self.labels == c], kind="stable")[:n_members]
                    ]
                )
                for c in unstable
            ]
        ).astype(np.int64)
        # Each member is held correct from its own start, spread over _PRE_STEADY snapshots, so
        # that any wrong -> right flips this causes never line up into a flag of their own.
        lead = _PRE_STEADY + rng.integers(0, _PRE_STEADY, members.shape)
        # Filter events: distinct snapshots, three filters each in three different layers.
        n_filters = self.table.n_filters
        event_snaps = np.sort(rng.choice(np.arange(2, S), min(n_filter_events, S - 2), False))
        ev_snap, ev_filter = [], []
        for s in event_snaps:
            ev_snap += [s] * 3
            ev_filter += rng.choice(n_filters, 3, replace=False).tolist()
        return GroundTruth(
            unstable_classes=unstable,
            unstable_snapshots=when.astype(np.int64),
            unstable_samples=members,
            unstable_lead=lead.astype(np.int64),
            filter_events_snapshot=np.asarray(ev_snap, dtype=np.int64),
            filter_events_filter=np.asarray(ev_filter, dtype=np.int64),
            hard_classes=hard,
            lr_drop_snapshots=self.lr_drop_snapshots,
        )

    # ------------------------------------------------------------------ coordinates
    def coords(self) -> dict[str, Any]:
        """Static coordinates: samples, classes, layers, filters and thresholds."""
        t = self.table
        stats = t.has_stats
        filter_names = np.repeat(np.asarray(t.name)[stats], t.filters[stats])
        return {
            "sample_id": np.arange(self.n_samples, dtype=np.int64),
            "label": self.labels,
            "class_name": np.asarray([f"n{c:08d}" for c in range(self.n_classes)]),
            "layer_name": np.asarray(t.name),
            "layer_kind": np.asarray(t.kind),
            "layer_stage": np.asarray(t.stage),
            "layer_block": np.asarray(t.block),
            "layer_filters": t.filters,
            "layer_params": t.params,
            "layer_has_stats": t.has_stats,
            "filter_layer": filter_names,
            "filter_layer_index": self.filter_layer_index.astype(np.int64),
            "filter_channel": np.concatenate(
                [np.arange(n, dtype=np.int64) for n in t.filters[stats]]
            ),
            "threshold": THRESHOLDS.copy(),
            "stat": np.asarray(STATS),
        }

    # ------------------------------------------------------------------ time series
    def steps(self, snapshot: int) -> dict[str, npt.NDArray[Any]]:
        """Per-step scalars for the steps that end at ``snapshot`` (none before snapshot 0)."""
        if snapshot == 0:
            return {}
        k = self.steps_per_snapshot
        rng = np.random.default_rng((self.seed, 1, snapshot))
        step = np.arange((snapshot - 1) * k, snapshot * k, dtype=np.int64)
        x = step / max((self.n_snapshots - 1) * k, 1)
        train_skill = self.skill(x) + 0.9 * x  # the train set is fitted better and better
        p = _norm_cdf((train_skill - _MU_DIFFICULTY) / 1.6)
        error = np.clip(1.0 - p + rng.normal(0, np.sqrt(p * (1 - p) / 256 + 1e-6)), 0, 1)
        loss = math.log(self.n_classes) * error**1.6 + 0.6 * error + rng.normal(0, 0.03, k)
        step_time = 0.25 * rng.lognormal(0.0, 0.05, k)
        step_time[-1] += 4.0  # the evaluation pass runs at every snapshot
        return {
            "step": step,
            "step_epoch": (x * _EPOCHS).astype(np.int64).clip(max=_EPOCHS - 1),
            "loss": np.maximum(loss, 0.01).astype(np.float32),
            "lr": self.lr_at(x).astype(np.float32),
            "train_error": error.astype(np.float32),
            "step_time": step_time.astype(np.float32),
        }

    def snapshots(self) -> Iterator[dict[str, Any]]:
        """Yield each snapshot's arrays in order: a dict of variable name -> numpy array."""
        S, N = self.n_snapshots, self.n_samples
        gt = self.ground_truth
        noise = np.random.default_rng((self.seed, 2)).normal(0.0, 1.0, N).astype(np.float32)
        sample_hard = self._hard[self.labels]
        # snapshot -> (samples held correct, samples held wrong)
        held: dict[int, tuple[list[int], list[int]]] = {}
        for when, members, leads in zip(
            gt.unstable_snapshots, gt.unstable_samples, gt.unstable_lead, strict=True
        ):
            for sample, lead in zip(members.tolist(), leads.tolist(), strict=True):
                for s in range(max(when - lead, 0), when):
                    held.setdefault(s, ([], []))[0].append(sample)
                for s in range(when, min(when + _POST_WRONG, S)):
                    held.setdefault(s, ([], []))[1].append(sample)
        events: dict[int, npt.NDArray[np.int64]] = {}
        for s, f in zip(gt.filter_events_snapshot, gt.filter_events_filter, strict=True):
            events.setdefault(int(s), np.zeros(0, np.int64))
            events[int(s)] = np.append(events[int(s)], f)
        prev_std = self._filter_sigma0.copy()

        for t in range(S):
            rng = np.random.default_rng((self.seed, 3, t))
            x = float(self.fraction(t))
            lr = float(self.lr_at(x))
            calm = math.sqrt(lr / _LR0)
            sigma = 0.25 + 0.55 * calm
            noise = _RHO * noise + math.sqrt(1 - _RHO**2) * rng.normal(0.0, 1.0, N).astype(
                np.float32
            )
            skill = np.where(sample_hard, self.skill(x, True), self.skill(x)).astype(np.float32)
            logit = skill - self.difficulty + sigma * noise
            if t in held:
                right, wrong = (np.asarray(h, dtype=np.int64) for h in held[t])
                logit[right] = 0.6 + np.abs(logit[right])
                logit[wrong] = -0.6 - np.abs(logit[wrong])
            yield {
                "snapshot": t,
                "step": t * self.steps_per_snapshot,
                "epoch": min(int(x * _EPOCHS), _EPOCHS - 1),
                **self._per_sample(logit, rng),
                **self._per_layer(x, lr, rng),
                **self._per_filter(t, x, calm, rng, events.get(t), prev_std),
            }

    def _per_sample(self, logit: npt.NDArray[np.float32], rng: np.random.Generator) -> dict:
        # The logit is the margin (true-class score minus the best other): correct iff > 0.
        # Keep it clear of 0 so that float16 storage cannot blur which side it is on.
        logit = np.where(np.abs(logit) < 2e-3, np.copysign(2e-3, logit), logit)
        correct = logit > 0
        wrong_pred = np.where(
            rng.random(logit.size) < 0.8,
            self.confuser,
            rng.integers(0, self.n_classes, logit.size),
        )
        wrong_pred = np.where(wrong_pred == self.labels, self.confuser, wrong_pred)
        pred = np.where(correct, self.labels, wrong_pred).astype(np.int32)
        scaled = 1.5 * logit.astype(np.float64)
        p_true = 1.0 / (1.0 + np.exp(-scaled))
        sample_loss = np.logaddexp(0.0, -scaled)
        return {
            "correct": correct,
            "pred": pred,
            "p_true": p_true.astype(np.float16),
            "margin": logit.astype(np.float16),
            "sample_loss": sample_loss.astype(np.float32),
            "val_loss": np.float32(sample_loss.mean()),
            "val_error": np.float32(1.0 - correct.mean()),
        }

    def _per_layer(self, x: float, lr: float, rng: np.random.Generator) -> dict:
        t = self.table
        n = t.params.astype(np.float64)
        L = len(t.name)
        # Weights shrink under weight decay; gradients follow the loss and the learning rate.
        w_sigma = self._layer_sigma0 * (1.0 - 0.35 * x) * rng.lognormal(0, 0.002, L)
        w_mean = -2e-4 * x * self._layer_sigma0 / self._layer_sigma0.max()
        g_sigma = self._layer_grad0 * (0.3 + 2.0 * math.exp(-x / 0.1)) * rng.lognormal(0, 0.1, L)
        g_mean = g_sigma * rng.normal(0, 0.01, L)
        weight = _gaussian_stats(w_mean, w_sigma, n, rng)
        grad = _gaussian_stats(g_mean, g_sigma, n, rng)
        weight[~t.has_stats] = np.nan
        grad[~t.has_stats] = np.nan
        # |g / w| of independent zero-mean Gaussians is Cauchy with scale g_sigma / w_sigma.
        thr = THRESHOLDS.copy()
        ratio = (2 / np.pi) * np.arctan(thr[None, :] * (w_sigma / g_sigma)[:, None])
        ratio[:, 0] = 1.0
        ratio[~t.has_stats] = np.nan
        return {
            "weight_stat": weight.astype(np.float32),
            "grad_stat": grad.astype(np.float32),
            "change_ratio": ratio.astype(np.float32),
        }

    def _per_filter(
        self,
        t: int,
        x: float,
        calm: float,
        rng: np.random.Generator,
        planted: npt.NDArray[np.int64] | None,
        prev_std: npt.NDArray[np.float32],
    ) -> dict:
        F = self.filter_layer_index.size
        fan_in = self.filter_fan_in
        std = (self._filter_sigma0 * (1.0 - 0.35 * x)).astype(np.float32)
        w_l2 = std * np.sqrt(fan_in)
        w_l1 = std * fan_in * math.sqrt(2 / math.pi)
        prev_l2 = prev_std * np.sqrt(fan_in)
        prev_l1 = prev_std * fan_in * math.sqrt(2 / math.pi)
        rel_l2 = (0.02 * calm * self._filter_speed * rng.lognormal(0, 0.3, F)).astype(np.float32)
        cosine = 1.0 - 0.5 * rel_l2**2
        if planted is not None and planted.size:
            cosine[planted] = rng.uniform(0.05, 0.5, planted.size)
            rel_l2[planted] = np.sqrt(2.0 * (1.0 - cosine[planted]))
        rel_l1 = rel_l2 * rng.lognormal(0, 0.05, F).astype(np.float32)
        grad_l2 = (
            self._layer_grad0[self.filter_layer_index]
            * np.sqrt(fan_in)
            * (0.3 + 2.0 * math.exp(-x / 0.1))
            * rng.lognormal(0, 0.2, F)
        ).astype(np.float32)
        grad_l1 = grad_l2 * np.sqrt(fan_in * 2 / math.pi)
        out = {
            "filter_cosine": cosine,
            "filter_l2": rel_l2 * prev_l2,
            "filter_l1": rel_l1 * prev_l1,
            "filter_rel_l1": rel_l1,
            "filter_rel_l2": rel_l2,
            "filter_grad_ratio_l1": grad_l1 / w_l1,
            "filter_grad_ratio_l2": grad_l2 / w_l2,
            "filter_grad_l1": grad_l1,
            "filter_grad_l2": grad_l2,
            "filter_std": std,
        }
        prev_std[:] = std
        for name in ("filter_cosine", "filter_l2", "filter_l1", "filter_rel_l1", "filter_rel_l2"):
            out[name] = out[name].astype(np.float32)
            if t == 0:
                out[name][:] = np.nan
        return {k: np.asarray(v, dtype=np.float32) for k, v in out.items()}


def _norm_cdf(z: Any) -> Any:
    from scipy.special import ndtr

    return ndtr(z)


def _gaussian_stats(
    mean: npt.NDArray[np.float64],
    sigma: npt.NDArray[np.float64],
    n: npt.NDArray[np.float64],
    rng: np.random.Generator,
) -> npt.NDArray[np.float64]:
    """The 12 statistics of ``n`` Gaussian values per layer, consistent with one another."""
    var = sigma**2
    extreme = sigma * np.sqrt(2 * np.log(np.maximum(n, 2))) * rng.lognormal(0, 0.05, n.size)
    out = np.empty((n.size, len(STATS)))
    out[:, 0] = mean + extreme
    out[:, 1] = mean - extreme * rng.lognormal(0, 0.05, n.size)
    out[:, 2] = mean
    out[:, 3] = mean * n
    out[:, 4] = var
    out[:, 5] = sigma
    out[:, 6] = n
    # E|w| of a Gaussian with a small mean; L2 from the second moment (population variance,
    # as the recorder computes it).
    out[:, 7] = n * sigma * math.sqrt(2 / math.pi)
    out[:, 8] = np.sqrt(n * (var + mean**2))
    out[:, 9] = mean
    out[:, 10] = mean - _Q * sigma
    out[:, 11] = mean + _Q * sigma
    return out


def _check_sizes(
    n_samples: int,
    n_classes: int,
    n_snapshots: int,
    layers: str | LayerTable,
    steps_per_snapshot: int,
) -> None:
    for name, value, low in (
        ("n_samples", n_samples, 1),
        ("n_classes", n_classes, 2),
        ("n_snapshots", n_snapshots, 2),
        ("steps_per_snapshot", steps_per_snapshot, 1),
    ):
        if not isinstance(value, int | np.integer) or value < low:
            raise InvalidDataError(f"{name} must be an integer >= {low}, got {value!r}")
    if n_samples < n_classes:
        raise InvalidDataError(
            f"n_samples={n_samples} must be at least n_classes={n_classes} so every class has "
            "samples"
        )
    if isinstance(layers, LayerTable):
        if layers.n_filters == 0:
            raise InvalidDataError(
                f"the layer table {list(layers.name)} has no layer with statistics (filters)"
            )
    elif layers not in LAYOUTS:
        raise InvalidDataError(
            f"layers must be one of {sorted(LAYOUTS)} or a LayerTable, got {layers!r}"
        )


# ------------------------------------------------------------------------------ writing
_EVAL_SET = "val"


def synthetic_log(
    path: str | Path,
    n_samples: int = 50_000,
    n_classes: int = 1000,
    n_snapshots: int = 1000,
    layers: str | LayerTable = "resnet50",
    seed: int = 0,
    plant: bool = True,
    *,
    steps_per_snapshot: int = 100,
    n_unstable: int | None = None,
    n_filter_events: int | None = None,
    n_hard: int | None = None,
    mode: Literal["w", "a"] | None = None,
    progress: bool = False,
) -> xr.Dataset:
    """Write a synthetic training log through the normal store and open it.

    Imitates ResNet-50 on ImageNet (see the module docstring for the model of every variable)
    and plants unstable classes, abrupt filters and a cluster of hard classes whose ground
    truth :func:`ground_truth` reads back. Snapshots are generated and committed in blocks of
    the store's time chunk (64), so memory stays flat and an interrupted run leaves a valid,
    shorter log.

    Parameters
    ----------
    path : str or pathlib.Path
        Directory of the new log.
    n_samples, n_classes, n_snapshots : int, default 50,000, 1,000, 1,000
        Validation images, classes and snapshots (ImageNet's validation set by default).
    layers : {"resnet50", "resnet18"} or LayerTable, default "resnet50"
        Layer layout: ResNet-50 (53 convolutions, 26,560 conv filters, 27,560 filters with
        ``fc``), ResNet-18's layout at a quarter width (for small test logs), or any layer
        table, e.g. a real model's (:meth:`LayerTable.from_layers`).
    seed : int, default 0
        Seed of every random draw; the same arguments give the same log.
    plant : bool, default True
        Plant the patterns with known ground truth.
    steps_per_snapshot : int, default 100
        Optimizer steps logged between snapshots.
    n_unstable, n_filter_events, n_hard : int, optional
        Planted unstable classes (default ``max(3, n_classes // 100)``), snapshots with
        abrupt filters (default ``max(4, n_snapshots // 100)``, three filters each) and hard
        classes (default ``max(3, n_classes // 20)``).
    mode : {None, "w", "a"}, optional
        As for :class:`filterscope.log.store.LogStore`: None refuses an existing path, "w"
        replaces an existing log.
    progress : bool, default False
        Show a progress bar.

    Returns
    -------
    xarray.Dataset
        The log, opened with :func:`filterscope.open_log`.

    Examples
    --------
    >>> import tempfile
    >>> from filterscope.data import synthetic_log, ground_truth
    >>> path = tempfile.mkdtemp() + "/synthetic"
    >>> log = synthetic_log(path, n_samples=2000, n_classes=50, n_snapshots=120,
    ...                     layers="resnet18")
    >>> dict(log.sizes)["sample"], dict(log.sizes)["snapshot"], dict(log.sizes)["filter"]
    (2000, 120, 1250)
    >>> ground_truth(path).unstable_class.size
    3
    """
    from filterscope.log.reader import open_log
    from filterscope.log.store import LogStore

    run = SyntheticRun(
        n_samples,
        n_classes,
        n_snapshots,
        layers,
        steps_per_snapshot,
        seed,
        plant,
        n_unstable,
        n_filter_events,
        n_hard,
    )
    store = LogStore.open(path, mode=mode)
    try:
        _define(store, run, layers if isinstance(layers, str) else "custom")
        store.publish()
        block = TIME_CHUNKS["snapshot"]
        buffer: list[dict[str, Any]] = []
        snapshots = run.snapshots()
        if progress:
            from tqdm.auto import tqdm

            snapshots = iter(tqdm(snapshots, total=n_snapshots, unit="snapshot"))
        for snap in snapshots:
            buffer.append(snap)
            if len(buffer) == block:
                _append(store, run, buffer)
                buffer = []
        if buffer:
            _append(store, run, buffer)
    finally:
        store.close()
    return open_log(path)


def ground_truth(path: str | Path) -> xr.Dataset:
    """The planted patterns of a log written by :func:`synthetic_log` (see :class:`GroundTruth`).

    Raises
    ------
    filterscope.LogFormatError
        If the log at ``path`` was not written by :func:`synthetic_log`.
    """
    try:
        return xr.open_zarr(path, group="ground_truth", consolidated=False, zarr_format=3).load()
    except (FileNotFoundError, KeyError, ValueError) as exc:
        raise LogFormatError(
            f"{path} has no 'ground_truth' group; only logs written by "
            "filterscope.data.synthetic_log carry one"
        ) from exc


#: Arrays on ``step``, written from :meth:`SyntheticRun.steps` (the keys are the array names).
_STEP_ARRAYS = tuple(v.name for v in layout(ROOT, dims=("step",)))


#: Side of the synthetic logs' thumbnails (grayscale): 64 bytes per sample.
_THUMB_SIDE = 8


def _thumbnails(run: SyntheticRun) -> dict[str, Any]:
    """Tiny generated thumbnails: a random 8×8 pattern per class plus per-sample noise, so the
    images of one class look alike (uint8, ``(sample, 8, 8, 1)``)."""
    rng = np.random.default_rng((run.seed, 4))
    pattern = rng.random((run.n_classes, _THUMB_SIDE, _THUMB_SIDE), dtype=np.float32)
    image = 0.75 * pattern[run.labels]
    image += 0.25 * rng.random(image.shape, dtype=np.float32)
    side = np.arange(_THUMB_SIDE, dtype=np.int64)
    return {
        "thumbnail": (image * 255).round().astype(np.uint8)[..., None],
        "thumb_y": side,
        "thumb_x": side,
        "thumb_channel": np.arange(1, dtype=np.int64),
    }


def _define(store: Any, run: SyntheticRun, layers: str) -> None:
    """Create the log's arrays, every one as :data:`filterscope.log.schema.LAYOUT` declares it."""
    coords = run.coords()
    values = {
        "layer": np.arange(len(run.table.name)),
        "filter": np.arange(run.table.n_filters),
        "class": np.arange(run.n_classes),
        "sample": np.arange(run.n_samples),
        **coords,
    }
    sizes = {
        "layer": len(run.table.name),
        "filter": run.table.n_filters,
        "stat": len(STATS),
        "threshold": THRESHOLDS.size,
        "sample": run.n_samples,
    }
    root = layout(ROOT)
    store.set_attrs(
        coordinates=coordinates_attr(ROOT, [v.name for v in root]),
        eval_sets=[_EVAL_SET],
        model=layers,
        synthetic={
            "n_samples": run.n_samples,
            "n_classes": run.n_classes,
            "n_snapshots": run.n_snapshots,
            "steps_per_snapshot": run.steps_per_snapshot,
            "seed": run.seed,
        },
    )
    values.update(_thumbnails(run))
    group = EVAL_SET_GROUP.replace(SET, _EVAL_SET)
    store.create_group(group, {"coordinates": coordinates_attr(EVAL_SET_GROUP, coords)})
    for var in (*root, *layout(EVAL_SET_GROUP)):
        key = var.key(_EVAL_SET)
        if var.appendable:
            inner = tuple(sizes[d] for d in var.dims[1:])
            store.create_appendable(key, list(var.dims), var.dtype, inner, fill=var.fill_value)
        else:
            store.create_static(key, var.array(values[var.name]), list(var.dims))
    truth = run.ground_truth.to_dataset()
    store.create_group("ground_truth", truth.attrs)
    for name, array in truth.data_vars.items():
        store.create_static(f"ground_truth/{name}", array.values, [str(d) for d in array.dims])


def _append(store: Any, run: SyntheticRun, block: list[dict[str, Any]]) -> None:
    """Append a block of snapshots (and the steps before them) and commit it."""
    steps = [run.steps(snap["snapshot"]) for snap in block]
    steps = [s for s in steps if s]
    if steps:
        for key in _STEP_ARRAYS:
            store.append(key, np.concatenate([s[key] for s in steps]))
    per_snapshot = {
        "snapshot": "snapshot",
        "snapshot_step": "step",
        "snapshot_epoch": "epoch",
        f"{_EVAL_SET}_loss": "val_loss",
        f"{_EVAL_SET}_error": "val_error",
    }
    for key, field_name in per_snapshot.items():
        store.append(key, np.asarray([snap[field_name] for snap in block]))
    for key in ("weight_stat", "grad_stat", "change_ratio", *FILTER_VARS):
        store.append(key, np.stack([snap[key] for snap in block]))
    for key in SAMPLE_VARS:
        store.append(f"{EVAL_GROUP}/{_EVAL_SET}/{key}", np.stack([snap[key] for snap in block]))
    store.commit()


# ------------------------------------------------------------------------------ command line
def add_synth_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``synth`` subcommand to a ``filterscope`` argument parser."""
    parser = subparsers.add_parser(
        "synth",
        help="write a synthetic ImageNet-scale log with planted patterns",
        description=synthetic_log.__doc__.split("\n")[0] if synthetic_log.__doc__ else None,
    )
    parser.add_argument("path", help="directory of the new log")
    parser.add_argument(
        "--samples", type=int, default=50_000, help="validation images (default 50,000)"
    )
    parser.add_argument("--classes", type=int, default=1000, help="classes (default 1,000)")
    parser.add_argument(
        "--snapshots", type=int, default=1000, help="snapshots of the run (default 1,000)"
    )
    parser.add_argument(
        "--layers",
        choices=sorted(LAYOUTS),
        default="resnet50",
        help="layer layout of the imitated network (default resnet50: 27,560 filters)",
    )
    parser.add_argument(
        "--steps-per-snapshot",
        type=int,
        default=100,
        help="optimizer steps between two snapshots (default 100)",
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="seed of the run and its planted patterns"
    )
    parser.add_argument(
        "--no-plant",
        action="store_true",
        help="plant no patterns (unstable classes, hard classes, abrupt filter changes)",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace an existing log")
    parser.add_argument(
        "--index", action="store_true", help="also build the log's index (in its store)"
    )
    parser.set_defaults(func=synth_command)
    return parser


def synth_command(args: argparse.Namespace) -> int:
    """Run ``filterscope synth``: write the log, optionally index it, print a summary."""
    log = synthetic_log(
        args.path,
        n_samples=args.samples,
        n_classes=args.classes,
        n_snapshots=args.snapshots,
        layers=args.layers,
        seed=args.seed,
        plant=not args.no_plant,
        steps_per_snapshot=args.steps_per_snapshot,
        mode="w" if args.overwrite else None,
        progress=True,
    )
    sizes = ", ".join(f"{k}={v}" for k, v in log.sizes.items())
    print(f"wrote {args.path}: {sizes}")
    if args.index:
        from filterscope.index import open_index

        idx = open_index(args.path)
        print(f"indexed {len(idx.variables)} variables")
    return 0
