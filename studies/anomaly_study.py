"""The paper's three hypotheses on anomaly filters (arXiv 2412.10457), rerun with null baselines.

One seeded command::

    .venv/bin/python studies/anomaly_study.py --out runs/anomaly-study --figures docs/_static/study
    .venv/bin/python studies/anomaly_study.py --quick --out /tmp/study   # about a minute

Settings that truly overfit: LeNet-5 on scikit-learn's digits and SimpleCNN on Animal-MNIST,
small training sets, 0, 10 and 20 % flipped labels, trained with Adam from initialisation to
memorisation; the probe samples are the training set. Null baselines: untrained networks
(several seeds) and training on shuffled labels.

Readings, at every checkpoint:

* ``sample_default`` — the sample rule of :class:`~filterscope.gmm.FilterGMM` at its defaults;
* ``sample_relaxed`` — the same rule with relaxed thresholds (:data:`RELAXED`);
* ``filter_level`` — :func:`~filterscope.gmm.hypotheses.filter_outliers` on the default fit.

Outputs under ``--out``: ``results.json`` (configuration, every test with raw and Holm-adjusted
p-values, verdicts), ``checkpoints.csv`` (one row per run, checkpoint and reading),
``samples.csv`` (per probe sample at the final checkpoint: gradient norm, flipped, memorised,
outlier under each reading), ``pruning.csv`` and ``tests.csv``; with ``--figures DIR`` also a
standalone Bokeh page (inline resources) ``DIR/anomaly_study.html``.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from scipy import stats
from torch import nn

import filterscope as fs
from filterscope.data import animal_mnist, digits
from filterscope.gmm.hypotheses import (
    filter_outliers,
    gradient_norms,
    prune,
    pruning_experiment,
)
from filterscope.models import LeNet5, SimpleCNN

#: Relaxed thresholds of the sample rule (fixed before any run; the defaults are 0.05 and 3.5).
RELAXED = {"outlier_fraction": 0.10, "min_separation": 2.0}
READINGS = ("sample_default", "sample_relaxed", "filter_level")
ALPHA = 0.05


@dataclass(frozen=True)
class Setting:
    """One model / data pair."""

    name: str
    n_train: int
    n_val: int
    width: int = 16


@dataclass(frozen=True)
class Config:
    """Everything that decides the study's numbers."""

    seed: int = 0
    settings: tuple[Setting, ...] = (
        Setting("lenet5_digits", n_train=300, n_val=500),
        Setting("simplecnn_animal", n_train=500, n_val=1000, width=16),
    )
    flip_rates: tuple[float, ...] = (0.0, 0.1, 0.2)
    shuffled: bool = True
    checkpoints: tuple[int, ...] = (0, 1, 2, 4, 8, 15, 30, 60, 100, 150)
    untrained_seeds: int = 5
    pruning_seeds: int = 5
    permutations: int = 9999
    batch_size: int = 32
    lr: float = 2e-3
    relaxed: dict[str, float] = field(default_factory=lambda: dict(RELAXED))


QUICK = Config(
    settings=(
        Setting("lenet5_digits", n_train=100, n_val=200),
        Setting("simplecnn_animal", n_train=100, n_val=200, width=4),
    ),
    flip_rates=(0.0, 0.2),
    checkpoints=(0, 3, 10),
    untrained_seeds=2,
    pruning_seeds=2,
    permutations=199,
)


# --- data and models ----------------------------------------------------------------------


@dataclass
class Data:
    x: torch.Tensor
    y_true: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    num_classes: int


def load(setting: Setting, seed: int) -> Data:
    source: Callable[..., Any] = digits if setting.name.startswith("lenet5") else animal_mnist
    train, val, test = source("train"), source("val"), source("test")
    rng = np.random.default_rng([seed, 1])
    pick = np.sort(rng.choice(len(train), size=setting.n_train, replace=False))
    vpick = np.sort(rng.choice(len(val), size=min(setting.n_val, len(val)), replace=False))
    return Data(
        train.x[pick],
        train.y[pick],
        val.x[vpick],
        val.y[vpick],
        test.x,
        test.y,
        train.num_classes,
    )


def make_model(setting: Setting, num_classes: int) -> nn.Module:
    if setting.name.startswith("lenet5"):
        return LeNet5(num_classes=num_classes)
    return SimpleCNN(num_classes=num_classes, width=setting.width)


def corrupt(y: torch.Tensor, kind: str, rate: float, num_classes: int, seed: int) -> torch.Tensor:
    """Training labels: ``rate`` of them flipped to another class, or all shuffled."""
    rng = np.random.default_rng([seed, 2])
    labels = y.numpy().copy()
    if kind == "shuffled":
        return torch.from_numpy(rng.permutation(labels))
    n_flip = round(rate * len(labels))
    idx = rng.choice(len(labels), size=n_flip, replace=False)
    shift = rng.integers(1, num_classes, size=n_flip)
    labels[idx] = (labels[idx] + shift) % num_classes
    return torch.from_numpy(labels)


def predict(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    model.eval()
    with torch.no_grad():
        return torch.cat([model(x[i : i + 512]).argmax(1) for i in range(0, len(x), 512)])


# --- readings -----------------------------------------------------------------------------


def readings(model: nn.Module, x: torch.Tensor, y: torch.Tensor, cfg: Config) -> dict[str, Any]:
    """Flagged filters and outlier samples of each reading, probe = every training sample."""
    probe = (x, y)
    default = fs.analyze(model, probe, n_samples=None, random_state=cfg.seed, progress=False)
    relaxed = fs.analyze(
        model,
        probe,
        n_samples=None,
        random_state=cfg.seed,
        progress=False,
        outlier_fraction=cfg.relaxed["outlier_fraction"],
        min_separation=cfg.relaxed["min_separation"],
    )
    level = filter_outliers(default)
    out: dict[str, Any] = {}
    for name, result in (("sample_default", default), ("sample_relaxed", relaxed)):
        flagged = result.anomalies
        out[name] = {
            "filters": [
                (str(a), int(b)) for a, b in zip(flagged.layer, flagged.channel, strict=True)
            ],
            "samples": result.outlier_ids(),
        }
    flagged = level[level.flagged]
    ids = [np.asarray(v, dtype=np.int64) for v in flagged.isolated_ids]
    out["filter_level"] = {
        "filters": [(str(a), int(b)) for a, b in zip(flagged.layer, flagged.channel, strict=True)],
        "samples": np.unique(np.concatenate(ids)) if ids else np.zeros(0, dtype=np.int64),
        "collapsed": int((flagged.k == 1).sum()),
    }
    out["layer_sizes"] = default.table.groupby("layer")["channel"].max().add(1).to_dict()
    out["mean_k"] = float(default.table.k.mean())
    return out


def enrichment(outliers: np.ndarray, marked: np.ndarray) -> dict[str, float]:
    """Share of marked samples among outliers over their share in the probe; Fisher's test."""
    n = len(marked)
    is_out = np.zeros(n, dtype=bool)
    is_out[outliers] = True
    a = int((is_out & marked).sum())
    b = int((is_out & ~marked).sum())
    c = int((~is_out & marked).sum())
    d = int((~is_out & ~marked).sum())
    base = marked.mean() if n else math.nan
    if a + b == 0 or base == 0:
        return {"n_outliers": a + b, "n_marked_outliers": a, "enrichment": math.nan, "p": math.nan}
    res = stats.fisher_exact([[a, b], [c, d]], alternative="two-sided")
    return {
        "n_outliers": a + b,
        "n_marked_outliers": a,
        "enrichment": float((a / (a + b)) / base),
        "p": float(res.pvalue),
    }


def mann_whitney(norms: np.ndarray, is_out: np.ndarray) -> dict[str, float]:
    """H2: Mann–Whitney U (two-sided) of outlier vs other norms, rank-biserial effect size."""
    out, rest = norms[is_out], norms[~is_out]
    row = {
        "n_outliers": int(out.size),
        "n_other": int(rest.size),
        "median_outlier": float(np.median(out)) if out.size else math.nan,
        "median_other": float(np.median(rest)) if rest.size else math.nan,
        "u": math.nan,
        "rank_biserial": math.nan,
        "p": math.nan,
    }
    if out.size and rest.size:
        res = stats.mannwhitneyu(out, rest, alternative="two-sided")
        row["u"] = float(res.statistic)
        row["rank_biserial"] = float(2 * res.statistic / (out.size * rest.size) - 1)
        row["p"] = float(res.pvalue)
    return row


# --- correlation tests --------------------------------------------------------------------


def _rank(a: np.ndarray) -> np.ndarray:
    return np.asarray(stats.rankdata(a), dtype=np.float64)


def _corr_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pearson correlation of every row of ``a`` with ``b``."""
    a = a - a.mean(axis=-1, keepdims=True)
    b = b - b.mean()
    denom = np.sqrt((a * a).sum(-1) * (b * b).sum())
    with np.errstate(invalid="ignore", divide="ignore"):
        return (a * b).sum(-1) / denom


def _residual(y: np.ndarray, x: np.ndarray) -> np.ndarray:
    design = np.column_stack([np.ones_like(x), x])
    coef, *_ = np.linalg.lstsq(design, y, rcond=None)
    return np.asarray(y - design @ coef)


def correlation_tests(
    count: np.ndarray, gap: np.ndarray, epoch: np.ndarray, n_perm: int, seed: int
) -> dict[str, dict[str, float]]:
    """Spearman correlations with two-sided permutation p-values.

    ``gap`` and ``epoch``: Spearman of the count with each, permuting the count. ``gap_given_epoch``:
    partial Spearman (Pearson of the rank residuals after regressing on the epoch's ranks),
    permuting the count's residuals (Freedman–Lane). NaN when the count or the other variable
    is constant.
    """
    rng = np.random.default_rng([seed, 3])
    rc, rg, re = _rank(count), _rank(gap), _rank(epoch)
    perms = np.array([rng.permutation(len(count)) for _ in range(n_perm)])
    out: dict[str, dict[str, float]] = {}
    for name, other in (("gap", rg), ("epoch", re)):
        if np.ptp(count) == 0 or np.ptp(other) == 0:
            out[name] = {"statistic": math.nan, "p": math.nan}
            continue
        r = float(_corr_rows(rc[None], other)[0])
        null = _corr_rows(rc[perms], other)
        p = (1 + np.sum(np.abs(null) >= abs(r) - 1e-12)) / (n_perm + 1)
        out[name] = {"statistic": r, "p": float(p)}
    res_c, res_g = _residual(rc, re), _residual(rg, re)
    if np.ptp(count) == 0 or np.ptp(res_c) < 1e-9 or np.ptp(res_g) < 1e-9:
        out["gap_given_epoch"] = {"statistic": math.nan, "p": math.nan}
    else:
        r = float(_corr_rows(res_c[None], res_g)[0])
        null = _corr_rows(res_c[perms], res_g)
        p = (1 + np.sum(np.abs(null) >= abs(r) - 1e-12)) / (n_perm + 1)
        out["gap_given_epoch"] = {"statistic": r, "p": float(p)}
    return out


def holm(p: np.ndarray) -> np.ndarray:
    """Holm's step-down adjustment; NaN p-values are left out and stay NaN."""
    p = np.asarray(p, dtype=np.float64)
    adjusted = np.full_like(p, np.nan)
    ok = np.flatnonzero(np.isfinite(p))
    order = ok[np.argsort(p[ok], kind="stable")]
    m = len(order)
    running = 0.0
    for i, j in enumerate(order):
        running = max(running, min(1.0, (m - i) * p[j]))
        adjusted[j] = running
    return adjusted


# --- one training run ---------------------------------------------------------------------


def train_run(
    setting: Setting, data: Data, kind: str, rate: float, cfg: Config, log: Callable[[str], None]
) -> dict[str, Any]:
    """Train from initialisation to memorisation, reading every checkpoint."""
    run = f"{setting.name}/{kind}" + (f"{round(rate * 100)}" if kind == "flip" else "")
    y_train = corrupt(data.y_true, kind, rate, data.num_classes, cfg.seed)
    flipped = (y_train != data.y_true).numpy()
    torch.manual_seed(cfg.seed)
    model = make_model(setting, data.num_classes)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    gen = torch.Generator().manual_seed(cfg.seed)
    rows: list[dict[str, Any]] = []
    final: dict[str, Any] = {}
    epoch = 0
    for target in cfg.checkpoints:
        while epoch < target:
            model.train()
            order = torch.randperm(len(y_train), generator=gen)
            for i in range(0, len(order), cfg.batch_size):
                idx = order[i : i + cfg.batch_size]
                opt.zero_grad()
                F.cross_entropy(model(data.x[idx]), y_train[idx]).backward()
                opt.step()
            epoch += 1
        pred = predict(model, data.x).numpy()
        train_acc = float((pred == y_train.numpy()).mean())
        val_acc = float((predict(model, data.x_val) == data.y_val).float().mean())
        memorised = flipped & (pred == y_train.numpy())
        found = readings(model, data.x, y_train, cfg)
        for reading in READINGS:
            r = found[reading]
            flip = enrichment(r["samples"], flipped)
            mem = enrichment(r["samples"], memorised)
            rows.append(
                {
                    "run": run,
                    "setting": setting.name,
                    "kind": kind,
                    "flip_rate": rate if kind == "flip" else math.nan,
                    "epoch": epoch,
                    "reading": reading,
                    "n_filters": len(r["filters"]),
                    "n_outlier_samples": len(r["samples"]),
                    "n_collapsed": r.get("collapsed", 0),
                    "mean_k": found["mean_k"],
                    "train_acc": train_acc,
                    "clean_train_acc": float((pred == data.y_true.numpy()).mean()),
                    "val_acc": val_acc,
                    "gap": train_acc - val_acc,
                    "n_flipped": int(flipped.sum()),
                    "n_memorised": int(memorised.sum()),
                    "n_flipped_outliers": flip["n_marked_outliers"],
                    "enrichment_flipped": flip["enrichment"],
                    "n_memorised_outliers": mem["n_marked_outliers"],
                    "enrichment_memorised": mem["enrichment"],
                }
            )
        final = {"found": found, "flipped": flipped, "memorised": memorised}
        log(
            f"{run:34s} epoch {epoch:4d} train {train_acc:.3f} val {val_acc:.3f} "
            + " ".join(f"{k}={len(found[k]['filters'])}" for k in READINGS)
        )
    norms = gradient_norms(model, (data.x, y_train), n_samples=None).values
    samples = pd.DataFrame(
        {
            "run": run,
            "sample": np.arange(len(y_train)),
            "label": y_train.numpy(),
            "true_label": data.y_true.numpy(),
            "flipped": final["flipped"],
            "memorised": final["memorised"],
            "grad_norm": norms,
        }
    )
    for reading in READINGS:
        samples[f"outlier_{reading}"] = np.isin(
            samples["sample"], final["found"][reading]["samples"]
        )
    pruning = []
    for reading in READINGS:
        pruning.append(h3(model, final["found"], reading, data, cfg, run))
    return {"run": run, "rows": rows, "samples": samples, "pruning": pruning}


def h3(
    model: nn.Module, found: dict[str, Any], reading: str, data: Data, cfg: Config, run: str
) -> dict[str, Any]:
    """Prune the reading's filters vs as many random filters per layer; McNemar vs unpruned."""
    filters = found[reading]["filters"]
    row: dict[str, Any] = {"run": run, "reading": reading, "n_pruned": len(filters)}
    if not filters:
        return row | {
            "baseline": math.nan,
            "pruned": math.nan,
            "random_mean": math.nan,
            "random_std": math.nan,
            "random": [],
            "p": math.nan,
        }
    exp = pruning_experiment(
        model,
        filters,
        (data.x_test, data.y_test),
        seeds=cfg.pruning_seeds,
        layer_sizes=found["layer_sizes"],
        random_state=cfg.seed,
    )
    base = predict(model, data.x_test) == data.y_test
    with prune(model, filters):
        pruned = predict(model, data.x_test) == data.y_test
    better = int((pruned & ~base).sum())
    worse = int((~pruned & base).sum())
    p = stats.binomtest(better, better + worse, 0.5).pvalue if better + worse else 1.0
    random_acc = exp.runs.loc[exp.runs.condition == "random", "accuracy"].tolist()
    return row | {
        "baseline": exp.baseline,
        "pruned": exp.anomaly,
        "random_mean": exp.random_mean,
        "random_std": exp.random_std,
        "random": random_acc,
        "n_better": better,
        "n_worse": worse,
        "p": float(p),
    }


def untrained(setting: Setting, data: Data, cfg: Config) -> tuple[list[dict[str, Any]], list]:
    """Null baseline: the readings and H2 on freshly initialised networks."""
    rows, h2 = [], []
    for s in range(cfg.untrained_seeds):
        torch.manual_seed(1000 + cfg.seed * 100 + s)
        model = make_model(setting, data.num_classes)
        found = readings(model, data.x, data.y_true, cfg)
        norms = gradient_norms(model, (data.x, data.y_true), n_samples=None).values
        for reading in READINGS:
            is_out = np.isin(np.arange(len(norms)), found[reading]["samples"])
            rows.append(
                {
                    "setting": setting.name,
                    "init_seed": s,
                    "reading": reading,
                    "n_filters": len(found[reading]["filters"]),
                    "n_outlier_samples": int(is_out.sum()),
                }
            )
            h2.append(
                {"setting": setting.name, "init_seed": s, "reading": reading}
                | mann_whitney(norms, is_out)
            )
    return rows, h2


# --- the study ----------------------------------------------------------------------------


def run_study(cfg: Config, out: Path, figures: Path | None, quiet: bool = False) -> dict[str, Any]:
    start = time.perf_counter()
    # One thread: on a shared, busy CPU, multi-threaded torch spends most of its time waiting
    # for cores (measured 40x slower under load). Always one, so the numbers repeat exactly.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _run_study(cfg, out, figures, quiet, start)
    finally:
        torch.set_num_threads(threads)


def _run_study(
    cfg: Config, out: Path, figures: Path | None, quiet: bool, start: float
) -> dict[str, Any]:

    def log(msg: str) -> None:
        if not quiet:
            print(f"[{time.perf_counter() - start:6.1f}s] {msg}", flush=True)

    rows: list[dict[str, Any]] = []
    samples: list[pd.DataFrame] = []
    pruning: list[dict[str, Any]] = []
    null_rows: list[dict[str, Any]] = []
    null_h2: list[dict[str, Any]] = []
    for setting in cfg.settings:
        data = load(setting, cfg.seed)
        r, h = untrained(setting, data, cfg)
        null_rows += r
        null_h2 += h
        log(f"{setting.name}: untrained nulls done")
        jobs = [("flip", rate) for rate in cfg.flip_rates]
        if cfg.shuffled:
            jobs.append(("shuffled", 1.0))
        for kind, rate in jobs:
            result = train_run(setting, data, kind, rate, cfg, log)
            rows += result["rows"]
            samples.append(result["samples"])
            pruning += result["pruning"]
    checkpoints = pd.DataFrame(rows)
    sample_table = pd.concat(samples, ignore_index=True)
    nulls = pd.DataFrame(null_rows)
    tests = collect_tests(cfg, checkpoints, sample_table, pruning, pd.DataFrame(null_h2))
    tests["p_holm"] = holm(tests["p"].to_numpy())
    verdicts = decide(tests, checkpoints, nulls, pd.DataFrame(null_h2), pruning)
    runtime = time.perf_counter() - start
    summary = {
        "config": _jsonable(asdict(cfg)),
        "runtime_s": runtime,
        "machine": {
            "platform": platform.platform(),
            "python": sys.version.split()[0],
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
        },
        "n_tests": int(np.isfinite(tests["p"]).sum()),
        "tests": _jsonable(tests.to_dict(orient="records")),
        "verdicts": _jsonable(verdicts),
        "untrained": _jsonable(nulls.to_dict(orient="records")),
        "untrained_h2": _jsonable(null_h2),
        "pruning": _jsonable(pruning),
        "counts": _jsonable(
            checkpoints[["run", "epoch", "reading", "n_filters", "n_outlier_samples"]].to_dict(
                orient="records"
            )
        ),
    }
    out.mkdir(parents=True, exist_ok=True)
    checkpoints.to_csv(out / "checkpoints.csv", index=False)
    sample_table.to_csv(out / "samples.csv", index=False)
    tests.to_csv(out / "tests.csv", index=False)
    pd.DataFrame(pruning).drop(columns=["random"]).to_csv(out / "pruning.csv", index=False)
    nulls.to_csv(out / "untrained.csv", index=False)
    (out / "results.json").write_text(json.dumps(summary, indent=1, allow_nan=True))
    if figures is not None:
        write_figures(checkpoints, tests, nulls, pruning, figures / "anomaly_study.html")
    log(f"done in {runtime:.0f} s; results in {out}")
    return summary


def collect_tests(
    cfg: Config,
    checkpoints: pd.DataFrame,
    samples: pd.DataFrame,
    pruning: list[dict[str, Any]],
    null_h2: pd.DataFrame,
) -> pd.DataFrame:
    """Every test of the study, one row each (raw p; Holm is applied over all of them)."""
    tests: list[dict[str, Any]] = []
    for (run, reading), g in checkpoints.groupby(["run", "reading"], sort=False):
        g = g.sort_values("epoch")
        res = correlation_tests(
            g.n_filters.to_numpy(float),
            g.gap.to_numpy(),
            g.epoch.to_numpy(float),
            cfg.permutations,
            cfg.seed,
        )
        for against, r in res.items():
            tests.append(
                {
                    "hypothesis": "H1",
                    "run": run,
                    "reading": reading,
                    "test": f"spearman_count_{against}",
                    **r,
                }
            )
        last = g.iloc[-1]
        if last.kind == "flip" and last.n_flipped > 0:
            sub = samples[samples.run == run]
            for mark in ("flipped", "memorised"):
                e = enrichment(
                    np.flatnonzero(sub[f"outlier_{reading}"].to_numpy()), sub[mark].to_numpy()
                )
                tests.append(
                    {
                        "hypothesis": "enrichment",
                        "run": run,
                        "reading": reading,
                        "test": f"fisher_{mark}",
                        "statistic": e["enrichment"],
                        "p": e["p"],
                        "n_outliers": e["n_outliers"],
                        "n_marked_outliers": e["n_marked_outliers"],
                    }
                )
    for run, sub in samples.groupby("run", sort=False):
        for reading in READINGS:
            mw = mann_whitney(sub.grad_norm.to_numpy(), sub[f"outlier_{reading}"].to_numpy())
            tests.append(
                {
                    "hypothesis": "H2",
                    "run": run,
                    "reading": reading,
                    "test": "mann_whitney_grad_norm",
                    "statistic": mw["rank_biserial"],
                    **{k: v for k, v in mw.items() if k != "rank_biserial"},
                }
            )
    for _, row in null_h2.iterrows():
        tests.append(
            {
                "hypothesis": "H2",
                "run": f"{row.setting}/untrained{row.init_seed}",
                "reading": row.reading,
                "test": "mann_whitney_grad_norm",
                "statistic": row.rank_biserial,
                "p": row.p,
                "n_outliers": row.n_outliers,
                "n_other": row.n_other,
                "median_outlier": row.median_outlier,
                "median_other": row.median_other,
                "u": row.u,
            }
        )
    for row in pruning:
        if row["n_pruned"]:
            tests.append(
                {
                    "hypothesis": "H3",
                    "run": row["run"],
                    "reading": row["reading"],
                    "test": "mcnemar_pruned_vs_unpruned",
                    "statistic": row["pruned"] - row["baseline"],
                    "p": row["p"],
                }
            )
    return pd.DataFrame(tests)


def decide(
    tests: pd.DataFrame,
    checkpoints: pd.DataFrame,
    nulls: pd.DataFrame,
    null_h2: pd.DataFrame,
    pruning: list[dict[str, Any]],
) -> list[dict[str, Any]]:
    """One verdict per hypothesis and reading over the trained flipped-label runs.

    Rules (fixed before the runs): **H1** is supported when, in most runs, the count's partial
    Spearman correlation with the gap given the epoch is positive with Holm p < 0.05 *and* the
    final count exceeds every untrained network's count. **Enrichment** when the flipped
    samples are enriched (> 1) with Holm p < 0.05 in most runs with flipped labels. **H2** when
    the outliers' norms are larger (rank-biserial > 0, Holm p < 0.05) in most runs and the
    effect exceeds every untrained network's. **H3** when pruning the flagged filters raises test
    accuracy (Holm p < 0.05) in most runs and beats the random-pruning mean.
    """
    trained = tests[~tests.run.str.contains("untrained") & ~tests.run.str.contains("shuffled")]
    final = checkpoints.sort_values("epoch").groupby(["run", "reading"]).tail(1)
    final = final[final.kind == "flip"]
    out = []
    for reading in READINGS:
        null_max = nulls[nulls.reading == reading].groupby("setting").n_filters.max()
        fin = final[final.reading == reading]
        beats_null = fin.n_filters.to_numpy() > null_max.reindex(fin.setting).to_numpy()
        h1 = trained[
            (trained.hypothesis == "H1")
            & (trained.reading == reading)
            & (trained.test == "spearman_count_gap_given_epoch")
        ]
        sig = (h1.statistic > 0) & (h1.p_holm < ALPHA)
        n_runs = len(fin)
        out.append(
            _verdict(
                "H1",
                reading,
                "partial Spearman(count, gap | epoch)",
                h1,
                int(sig.sum()),
                n_runs,
                extra=f"final count > untrained max in {int(beats_null.sum())}/{n_runs}",
                ok=bool(sig.sum() > n_runs / 2 and beats_null.sum() > n_runs / 2),
            )
        )
        h1g = trained[
            (trained.hypothesis == "H1")
            & (trained.reading == reading)
            & (trained.test == "spearman_count_gap")
        ]
        sig_g = (h1g.statistic > 0) & (h1g.p_holm < ALPHA)
        out.append(
            _verdict(
                "H1 (gap only)",
                reading,
                "Spearman(count, gap)",
                h1g,
                int(sig_g.sum()),
                n_runs,
                extra="not controlled for the epoch",
                ok=None,
            )
        )
        h1e = trained[
            (trained.hypothesis == "H1")
            & (trained.reading == reading)
            & (trained.test == "spearman_count_epoch")
        ]
        sig_e1 = (h1e.statistic > 0) & (h1e.p_holm < ALPHA)
        out.append(
            _verdict(
                "H1 (epoch)",
                reading,
                "Spearman(count, epoch)",
                h1e,
                int(sig_e1.sum()),
                n_runs,
                extra="training progress",
                ok=None,
            )
        )
        en = trained[
            (trained.hypothesis == "enrichment")
            & (trained.reading == reading)
            & (trained.test == "fisher_flipped")
        ]
        sig_e = (en.statistic > 1) & (en.p_holm < ALPHA)
        n_en = int((final[final.reading == reading].n_flipped > 0).sum())
        out.append(
            _verdict(
                "enrichment",
                reading,
                "flipped share among outliers / in probe",
                en,
                int(sig_e.sum()),
                n_en,
                ok=bool(sig_e.sum() > n_en / 2),
            )
        )
        h2 = trained[(trained.hypothesis == "H2") & (trained.reading == reading)]
        null_r = null_h2[null_h2.reading == reading].rank_biserial
        null_top = float(null_r.max()) if null_r.notna().any() else -1.0
        sig_2 = (h2.statistic > 0) & (h2.p_holm < ALPHA) & (h2.statistic > null_top)
        out.append(
            _verdict(
                "H2",
                reading,
                "rank-biserial r (grad norm, outliers vs rest)",
                h2,
                int(sig_2.sum()),
                n_runs,
                extra=f"untrained max r = {null_top:.2f}",
                ok=bool(sig_2.sum() > n_runs / 2),
            )
        )
        h3 = trained[(trained.hypothesis == "H3") & (trained.reading == reading)]
        rnd = {(p["run"], p["reading"]): p for p in pruning}
        beats = [
            row.statistic > 0
            and row.p_holm < ALPHA
            and rnd[(row.run, reading)]["pruned"] > rnd[(row.run, reading)]["random_mean"]
            for row in h3.itertuples()
        ]
        out.append(
            _verdict(
                "H3",
                reading,
                "test accuracy change after pruning",
                h3,
                int(sum(beats)),
                n_runs,
                extra=f"{len(h3)}/{n_runs} runs flagged any filter",
                ok=bool(sum(beats) > n_runs / 2),
            )
        )
    return out


def _verdict(
    hyp: str,
    reading: str,
    statistic: str,
    rows: pd.DataFrame,
    n_sig: int,
    n_runs: int,
    extra: str = "",
    ok: bool | None = None,
) -> dict[str, Any]:
    stat = rows.statistic.dropna()
    p = rows.p_holm.dropna()
    text = "descriptive" if ok is None else ("supported" if ok else "not supported")
    return {
        "hypothesis": hyp,
        "reading": reading,
        "statistic": statistic,
        "statistic_min": float(stat.min()) if len(stat) else math.nan,
        "statistic_max": float(stat.max()) if len(stat) else math.nan,
        "p_holm_min": float(p.min()) if len(p) else math.nan,
        "n_tests": len(p),
        "n_significant": n_sig,
        "n_runs": n_runs,
        "note": extra,
        "verdict": text,
    }


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.generic):
        return _jsonable(obj.item())
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist())
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


# --- figures ------------------------------------------------------------------------------

_COLOURS = {"flip0": "#1b9e77", "flip10": "#d95f02", "flip20": "#7570b3", "shuffled": "#e7298a"}


def _legend(p: Any) -> None:
    p.legend.location = "top_right"
    p.legend.label_text_font_size = "7pt"
    p.legend.background_fill_alpha = 0.3
    p.legend.border_line_alpha = 0.0
    p.legend.click_policy = "hide"
    p.legend.spacing = 0
    p.legend.padding = 2


def write_figures(
    checkpoints: pd.DataFrame,
    tests: pd.DataFrame,
    nulls: pd.DataFrame,
    pruning: list[dict[str, Any]],
    path: Path,
) -> None:
    """One standalone Bokeh page (inline resources, works offline) with the study's figures."""
    from bokeh.embed import file_html
    from bokeh.layouts import column, gridplot
    from bokeh.models import Div, FactorRange, Range1d, Whisker  # type: ignore[attr-defined]
    from bokeh.plotting import ColumnDataSource, figure
    from bokeh.resources import INLINE

    parts: list[Any] = [Div(text="<h2>Anomaly-filter study</h2>")]
    for setting, g in checkpoints.groupby("setting", sort=False):
        row = []
        for reading in READINGS:
            p = figure(
                width=330,
                height=260,
                title=f"{setting}: {reading}",
                x_axis_type="log",
                x_axis_label="epoch + 1",
                y_axis_label="flagged filters",
            )
            for run, r in g[g.reading == reading].groupby("run", sort=False):
                tag = run.split("/")[1]
                src = ColumnDataSource({"x": r.epoch + 1, "y": r.n_filters, "gap": r.gap})
                p.line(
                    "x",
                    "y",
                    source=src,
                    color=_COLOURS.get(tag, "grey"),
                    legend_label=tag,
                    line_width=2,
                )
                p.scatter("x", "y", source=src, color=_COLOURS.get(tag, "grey"), size=5)
            null = nulls[(nulls.setting == setting) & (nulls.reading == reading)]
            if len(null):
                p.scatter(
                    np.ones(len(null)),
                    null.n_filters.to_numpy(),
                    marker="x",
                    size=10,
                    color="black",
                    legend_label="untrained",
                )
            _legend(p)
            row.append(p)
        gap = figure(
            width=330,
            height=260,
            title=f"{setting}: train − validation gap",
            x_axis_type="log",
            x_axis_label="epoch + 1",
            y_axis_label="gap",
        )
        for run, r in g[g.reading == READINGS[0]].groupby("run", sort=False):
            tag = run.split("/")[1]
            gap.line(
                r.epoch + 1, r.gap, color=_COLOURS.get(tag, "grey"), legend_label=tag, line_width=2
            )
        _legend(gap)
        parts.append(Div(text=f"<h3>H1 — {setting}</h3>"))
        parts.append(gridplot([[*row, gap]], toolbar_location="right"))
    h2 = tests[(tests.hypothesis == "H2") & tests.statistic.notna()].copy()
    if len(h2):
        h2["label"] = h2.run + " · " + h2.reading
        h2["colour"] = np.where(h2.run.str.contains("untrained"), "#999999", "#1f77b4")
        p = figure(
            width=900,
            height=max(250, 16 * len(h2)),
            y_range=FactorRange(factors=list(h2.label)),
            x_range=Range1d(start=-1, end=1),
            title="H2 — rank-biserial r of gradient norms "
            "(outliers vs rest; grey = untrained null)",
            x_axis_label="r",
        )
        p.hbar(
            y="label",
            right="statistic",
            height=0.7,
            color="colour",
            source=ColumnDataSource(h2[["label", "statistic", "colour"]]),
        )
        parts += [Div(text="<h3>H2</h3>"), p]
    pr = pd.DataFrame([r for r in pruning if r["n_pruned"]])
    if len(pr):
        pr["label"] = pr.run + " · " + pr.reading
        p = figure(
            width=900,
            height=max(250, 22 * len(pr)),
            y_range=FactorRange(factors=list(pr.label)),
            title="H3 — test accuracy: unpruned (|), flagged filters pruned (●), "
            "random filters pruned (mean ± std)",
            x_axis_label="test accuracy",
        )
        src = ColumnDataSource(
            {
                "label": pr.label,
                "base": pr.baseline,
                "pruned": pr.pruned,
                "lo": pr.random_mean - pr.random_std,
                "hi": pr.random_mean + pr.random_std,
                "mean": pr.random_mean,
            }
        )
        p.scatter(
            "base", "label", source=src, marker="dash", size=14, color="black", angle=math.pi / 2
        )
        p.scatter("pruned", "label", source=src, size=8, color="#d62728")
        p.scatter("mean", "label", source=src, marker="square", size=7, color="#7f7f7f")
        p.add_layout(
            Whisker(
                source=src,
                base="label",
                lower="lo",
                upper="hi",
                dimension="width",
                line_color="#7f7f7f",
            )
        )
        parts += [Div(text="<h3>H3</h3>"), p]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(file_html(column(*parts), INLINE, "Anomaly-filter study"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small settings (about a minute)")
    parser.add_argument("--out", type=Path, default=Path("runs/anomaly-study"))
    parser.add_argument(
        "--figures",
        type=Path,
        default=None,
        help="folder for the standalone Bokeh page (e.g. docs/_static/study)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    base = QUICK if args.quick else Config()
    cfg = Config(**{**{f: getattr(base, f) for f in base.__dataclass_fields__}, "seed": args.seed})
    summary = run_study(cfg, args.out, args.figures, quiet=args.quiet)
    if not args.quiet:
        table = pd.DataFrame(summary["verdicts"])
        cols = [
            "hypothesis",
            "reading",
            "statistic_min",
            "statistic_max",
            "p_holm_min",
            "n_significant",
            "n_runs",
            "verdict",
        ]
        print(table[cols].to_string(index=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
