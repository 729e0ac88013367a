"""Atypical training images: found by the anomaly filters, and by the baselines a user would try.

For each model / dataset, corruption kind and rate, the script plants corrupted images into the
training set (``filterscope.data.corrupt.plant``, seeded), trains the model on it (seeded, the
corrupted images keep their labels), runs ``fs.analyze`` with the probe set = the whole training
set, and scores the outlier samples of the anomaly filters (``result.outlier_ids()``) against the
planted ones: recall, precision and F1.

Beside it, in the same run and on the same trained model, three baselines that need no
clustering, each ranking the training images and picking its top k with **k = the number of
planted images** (an oracle count, which favours the baselines: the detector gets no such
hint), so their precision@k = recall@k = F1:

* ``loss``: the per-sample cross-entropy at the end of training (highest first);
* ``knn``: the mean Euclidean distance to the 5 nearest other training images in the
  penultimate features (the input of the last linear layer), farthest first;
* ``iforest``: scikit-learn's ``IsolationForest`` on the same features (most anomalous first).

Settings:

* ``lenet-digits``: LeNet-5 on the 500-image digits train split (32×32), Adam 2e-3, batch 32,
  30 epochs, as ``filterscope demo``;
* ``simplecnn-animal``: SimpleCNN (width 16) on the first 1,000 images of the Animal-MNIST train
  split (28×28), Adam 2e-3, batch 64, 15 epochs.

Usage::

    python benchmarks/bench_atypical.py                 # 2 settings x 7 kinds x 1, 3, 5 %
    python benchmarks/bench_atypical.py --quick         # LeNet-5 / digits, 3 kinds, 3 %
    python benchmarks/bench_atypical.py --features pca-residual   # first PC + PCA residual
    python benchmarks/bench_atypical.py --kinds noise --rates 0.03 --where activation

Other ``fs.analyze`` settings can be compared with ``--where``, ``--features`` and
``--min-separation``.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import filterscope as fs
from filterscope.data import animal_mnist, digits
from filterscope.data.corrupt import CORRUPTIONS, plant
from filterscope.data.datasets import ImageDataset
from filterscope.models import LeNet5, SimpleCNN

SETTINGS = ("lenet-digits", "simplecnn-animal")
QUICK_KINDS = ("inverted", "blank", "noise")
HEADER = (
    "setting",
    "kind",
    "rate",
    "planted",
    "flagged",
    "recall",
    "precision",
    "F1",
    "loss@k",
    "knn@k",
    "iforest@k",
    "best",
)


@dataclass
class Row:
    """One line of the table."""

    setting: str
    kind: str
    rate: float
    planted: int
    flagged: int
    recall: float
    precision: float
    f1: float
    baselines: dict[str, float]

    @property
    def best(self) -> str:
        scores = {"filters": self.f1, **self.baselines}
        top = max(scores.values())
        if top == 0:
            return "-"
        return "/".join(name for name, v in scores.items() if v == top)

    def cells(self) -> list[str]:
        return [
            self.setting,
            self.kind,
            f"{self.rate:.0%}",
            str(self.planted),
            str(self.flagged),
            _fmt(self.recall),
            _fmt(self.precision),
            _fmt(self.f1),
            *(_fmt(self.baselines[b]) for b in ("loss", "knn", "iforest")),
            self.best,
        ]


def _fmt(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:.2f}"


def load(setting: str, seed: int) -> tuple[ImageDataset, nn.Module, dict[str, Any]]:
    """The clean training set, an untrained model and the training settings of a setting."""
    torch.manual_seed(seed)
    if setting == "lenet-digits":
        train = digits("train", size=32, seed=seed)
        return train, LeNet5(1, train.num_classes, 32), {"epochs": 30, "batch": 32}
    if setting == "simplecnn-animal":
        full = animal_mnist("train", seed=seed)
        n = 1000
        train = ImageDataset(
            full.x[:n].clone(),
            full.y[:n].clone(),
            sample_ids=full.sample_ids[:n],
            class_names=full.class_names,
            name=full.name,
            split=full.split,
        )
        return train, SimpleCNN(1, train.num_classes, 16), {"epochs": 15, "batch": 64}
    raise SystemExit(f"unknown setting {setting!r}; choose from {', '.join(SETTINGS)}")


def train_model(
    model: nn.Module, data: TensorDataset, epochs: int, batch: int, seed: int
) -> nn.Module:
    """Adam 2e-3, shuffled mini-batches, seeded."""
    torch.manual_seed(seed)
    loader = DataLoader(
        data, batch_size=batch, shuffle=True, generator=torch.Generator().manual_seed(seed)
    )
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
    model.train()
    for _ in range(epochs):
        for x, y in loader:
            optimizer.zero_grad()
            F.cross_entropy(model(x), y).backward()
            optimizer.step()
    model.eval()
    return model


def losses_and_features(model: nn.Module, data: TensorDataset) -> tuple[np.ndarray, np.ndarray]:
    """Per-sample cross-entropy and penultimate features (input of the last Linear)."""
    last = [m for m in model.modules() if isinstance(m, nn.Linear)][-1]
    captured: list[torch.Tensor] = []
    handle = last.register_forward_pre_hook(lambda _m, inputs: captured.append(inputs[0]))
    x, y = data.tensors[0], data.tensors[1]
    try:
        with torch.no_grad():
            logits = model(x)
    finally:
        handle.remove()
    loss = F.cross_entropy(logits, y, reduction="none")
    return loss.numpy().astype(np.float64), captured[0].numpy().astype(np.float64)


def baseline_scores(loss: np.ndarray, features: np.ndarray, seed: int) -> dict[str, np.ndarray]:
    """Each baseline's atypicality score per sample (higher = more atypical)."""
    from sklearn.ensemble import IsolationForest
    from sklearn.neighbors import NearestNeighbors

    nn_index = NearestNeighbors(n_neighbors=6).fit(features)
    dist, _ = nn_index.kneighbors(features)
    knn = dist[:, 1:].mean(axis=1)  # the first neighbour is the sample itself
    forest = IsolationForest(random_state=seed).fit(features)
    return {"loss": loss, "knn": knn, "iforest": -forest.score_samples(features)}


def precision_at_k(scores: np.ndarray, truth: np.ndarray, k: int) -> float:
    """Share of the k highest-scoring samples that are planted (ties broken by position)."""
    top = np.argsort(-scores, kind="stable")[:k]
    return float(truth[top].mean()) if k else float("nan")


def run_one(setting: str, kind: str, rate: float, seed: int, analyze_kwargs: dict[str, Any]) -> Row:
    clean, model, cfg = load(setting, seed)
    planted = plant(clean, kind, rate, seed=seed)
    data = planted.data
    model = train_model(model, data, cfg["epochs"], cfg["batch"], seed)
    result = fs.analyze(
        model, data, n_samples=None, random_state=seed, progress=False, **analyze_kwargs
    )
    flagged = result.outlier_ids()
    planted_ids = planted.sample_ids
    hits = len(np.intersect1d(flagged, planted_ids))
    recall = hits / len(planted_ids)
    precision = hits / len(flagged) if len(flagged) else float("nan")
    f1 = 2 * hits / (len(flagged) + len(planted_ids))
    truth = np.zeros(len(data), dtype=bool)
    truth[planted.index] = True
    loss, feats = losses_and_features(model, data)
    scores = baseline_scores(loss, feats, seed)
    k = len(planted_ids)
    baselines = {name: precision_at_k(s, truth, k) for name, s in scores.items()}
    return Row(setting, kind, rate, k, len(flagged), recall, precision, f1, baselines)


def format_table(rows: Sequence[Row]) -> str:
    """The rows as one Markdown table."""
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    lines += ["| " + " | ".join(r.cells()) + " |" for r in rows]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="LeNet-5 / digits, 3 kinds, 3 %%")
    parser.add_argument("--settings", nargs="+", choices=SETTINGS, default=None)
    parser.add_argument("--kinds", nargs="+", choices=CORRUPTIONS, default=None)
    parser.add_argument("--rates", nargs="+", type=float, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    parser.add_argument("--where", choices=("output", "activation"), default="output")
    parser.add_argument("--features", choices=("pca", "pca-residual"), default="pca")
    parser.add_argument("--min-separation", type=float, default=None)
    args = parser.parse_args(argv)
    settings = args.settings or (("lenet-digits",) if args.quick else SETTINGS)
    kinds = args.kinds or (QUICK_KINDS if args.quick else CORRUPTIONS)
    rates = args.rates or ((0.03,) if args.quick else (0.01, 0.03, 0.05))
    analyze_kwargs: dict[str, Any] = {"where": args.where, "features": args.features}
    if args.min_separation is not None:
        analyze_kwargs["min_separation"] = args.min_separation
    torch.set_num_threads(args.threads)
    print(
        f"atypical training images: probe = the training set, seed {args.seed}, "
        f"fs.analyze({', '.join(f'{k}={v!r}' for k, v in analyze_kwargs.items())}); "
        "baselines pick k = planted count (precision@k = recall@k = F1)",
        flush=True,
    )
    started = time.perf_counter()
    rows = []
    for setting in settings:
        for kind in kinds:
            for rate in rates:
                t0 = time.perf_counter()
                rows.append(run_one(setting, kind, rate, args.seed, analyze_kwargs))
                print(
                    f"  {setting} {kind} {rate:.0%}: {time.perf_counter() - t0:.1f} s",
                    file=sys.stderr,
                    flush=True,
                )
    print(format_table(rows))
    print(f"total {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
