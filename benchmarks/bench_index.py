"""Index benchmark on the synthetic ImageNet-scale log, with TensorBoard side by side.

Prints, for one run on this machine:

* writing the synthetic log through the normal store: wall time and peak RSS;
* building the index: wall time and peak RSS (targets: <= 3 minutes, <= 2 GB);
* 1,000 random view queries at <= 2,000 columns: median and p95 latency (targets: <= 20 ms,
  <= 50 ms) and bytes per answer;
* TensorBoard loading the same per-filter change series (``filter_cosine``) from scalar event
  files with ``EventAccumulator(size_guidance={scalars: 0})`` against opening the log's index
  and answering the first view. TensorBoard is given a subset of the filters (500 by default)
  and its time is scaled linearly to all filters; both the measured and the scaled numbers are
  printed (goal: scaled ratio >= 100x).

Each phase runs in its own process so that its peak RSS is its own. ``--small`` runs a
2,000-sample, 50-class, 120-snapshot ResNet-18-layout log in well under a minute.

Usage::

    python benchmarks/bench_index.py            # the full log: 50,000 x 1,000 x 1,000, ResNet-50
    python benchmarks/bench_index.py --small
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

FULL = {"n_samples": 50_000, "n_classes": 1000, "n_snapshots": 1000, "layers": "resnet50"}
SMALL = {"n_samples": 2000, "n_classes": 50, "n_snapshots": 120, "layers": "resnet18"}
VIEWPORT_ROWS = 256  # rows a view shows at once (heat lines of >= 2-3 pixels each)


def _peak_rss_mb() -> float:
    # ru_maxrss is in kilobytes on Linux
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def phase_write(path: Path, sizes: dict) -> dict:
    from filterscope.data.synthetic import synthetic_log

    start = time.perf_counter()
    log = synthetic_log(path, **sizes, mode="w")
    seconds = time.perf_counter() - start
    return {
        "seconds": seconds,
        "peak_rss_mb": _peak_rss_mb(),
        "sizes": {str(k): int(v) for k, v in log.sizes.items()},
        "disk_mb": _du(path) / 2**20,
    }


def phase_index(path: Path) -> dict:
    from filterscope.index import build_index
    from filterscope.log.reader import open_log

    start = time.perf_counter()
    idx = build_index(open_log(path), path, rebuild=True)
    seconds = time.perf_counter() - start
    return {
        "seconds": seconds,
        "peak_rss_mb": _peak_rss_mb(),
        "variables": len(idx.variables),
        "index_disk_mb": _du(path / "index") / 2**20,
    }


def _view_queries(idx, filter_layer: np.ndarray, n: int, seed: int) -> list[dict]:
    """Random queries of the kinds the views make, each at most 2,000 columns wide."""
    rng = np.random.default_rng(seed)
    tree = idx.tree
    layers = [name for name, level in zip(tree.name, tree.level, strict=True) if level == "layer"]
    n_classes = idx.specs["class_error"].shape[0]
    queries = []
    for _ in range(n):
        kind = rng.choice(
            [
                "model_info",
                "validation",
                "layer_node",
                "change_bands",
                "filters",
                "classes",
                "class_images",
            ]
        )
        q: dict = {"columns": int(rng.integers(200, 2001))}
        if kind == "model_info":
            q["var"] = str(rng.choice(["loss", "lr", "train_error", "val_error", "val_loss"]))
        elif kind == "validation":
            q["var"] = "cluster_error"
        elif kind == "layer_node":
            q["var"] = str(rng.choice(["weight_stat", "grad_stat"]))
            q["node"] = str(rng.choice(tree.name))
            boxes = ["min", "q1", "mean", "q3", "max"]
            q["rows"] = {"stat": boxes if rng.random() < 0.5 else str(rng.choice(boxes))}
        elif kind == "change_bands":
            q["var"] = "change_ratio"
            q["node"] = str(rng.choice(tree.name))
            q["rows"] = {"threshold": [0.1, 0.01, 0.001, 0.0001]}
        elif kind == "filters":
            q["var"] = str(rng.choice(["filter_cosine", "filter_rel_l2", "filter_grad_ratio_l2"]))
            layer = str(rng.choice(layers))
            where = np.flatnonzero(filter_layer == layer)
            first = int(rng.integers(0, max(1, where.size - VIEWPORT_ROWS + 1)))
            q["rows"] = slice(
                int(where[first]), int(where[min(first + VIEWPORT_ROWS, where.size) - 1])
            )
        elif kind == "classes":
            first = int(rng.integers(0, max(1, n_classes - VIEWPORT_ROWS + 1)))
            q["var"] = "class_error"
            q["rows"] = slice(first, min(first + VIEWPORT_ROWS, n_classes) - 1)
        else:
            q["var"] = str(rng.choice(["correct", "p_true", "margin"]))
            q["class_"] = int(rng.integers(0, n_classes))
        time_dim = idx.specs[q["var"] if "node" not in q else "node_" + q["var"]].time
        length = idx.committed[time_dim]
        width = int(np.exp(rng.uniform(np.log(min(32, length)), np.log(length))))
        start = int(rng.integers(0, length - width + 1))
        q["time"] = slice(start, start + width - 1)
        queries.append(q)
    return queries


def phase_query(path: Path, n_queries: int, tb_filters: int) -> dict:
    import dask.array  # noqa: F401 - imported before timing, as TensorBoard's side is
    import xarray  # noqa: F401
    import zarr  # noqa: F401

    from filterscope.index import Index
    from filterscope.log.reader import open_log

    # Open and first view: what a user waits for before the layer view shows filters.
    start = time.perf_counter()
    log = open_log(path)
    idx = Index(log, path)
    subset = slice(0, tb_filters - 1)
    first = idx.query("filter_cosine", rows=subset, columns=2000)
    first_view = time.perf_counter() - start
    assert first.sizes["filter"] == tb_filters

    latencies, sizes = [], []
    for q in _view_queries(idx, log.filter_layer.values, n_queries, seed=0):
        t0 = time.perf_counter()
        answer = idx.query(**q)
        latencies.append(time.perf_counter() - t0)
        sizes.append(answer.nbytes)
    ms = np.asarray(latencies) * 1e3
    return {
        "open_first_view_s": first_view,
        "median_ms": float(np.median(ms)),
        "p95_ms": float(np.percentile(ms, 95)),
        "max_ms": float(ms.max()),
        "median_bytes": float(np.median(sizes)),
        "max_bytes": int(max(sizes)),
        "peak_rss_mb": _peak_rss_mb(),
    }


def phase_tensorboard(path: Path, events: Path, tb_filters: int) -> dict:
    from tensorboard.backend.event_processing.event_accumulator import SCALARS, EventAccumulator
    from torch.utils.tensorboard import SummaryWriter

    from filterscope.log.reader import open_log

    log = open_log(path)
    values = np.asarray(log.filter_cosine.isel(filter=slice(0, tb_filters)).values)
    layers = log.filter_layer.values[:tb_filters]
    channels = log.filter_channel.values[:tb_filters]
    tags = [
        f"filter_cosine/{layer}/{channel}" for layer, channel in zip(layers, channels, strict=True)
    ]
    start = time.perf_counter()
    writer = SummaryWriter(str(events))
    for snapshot in range(values.shape[0]):
        for f, tag in enumerate(tags):
            writer.add_scalar(tag, float(values[snapshot, f]), snapshot)
    writer.close()
    write_seconds = time.perf_counter() - start

    start = time.perf_counter()
    acc = EventAccumulator(str(events), size_guidance={SCALARS: 0})
    acc.Reload()
    series = [acc.Scalars(tag) for tag in tags]
    load_seconds = time.perf_counter() - start
    assert len(series) == tb_filters and len(series[0]) == values.shape[0]
    return {
        "write_s": write_seconds,
        "load_s": load_seconds,
        "events": int(values.size),
        "all_filters": int(log.sizes["filter"]),
        "event_mb": _du(events) / 2**20,
    }


def _du(path: Path) -> int:
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file())


def _child(phase: str, *args: str) -> dict:
    out = subprocess.run(
        [sys.executable, __file__, "--phase", phase, *args],
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--small", action="store_true", help="a small log, for a quick check")
    parser.add_argument("--dir", help="working directory (default: a temporary one, removed)")
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--tb-filters", type=int, default=500)
    parser.add_argument("--phase", help=argparse.SUPPRESS)
    parser.add_argument("--sizes", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.phase:
        path = Path(args.dir)
        if args.phase == "write":
            result = phase_write(path / "log", json.loads(args.sizes))
        elif args.phase == "index":
            result = phase_index(path / "log")
        elif args.phase == "query":
            result = phase_query(path / "log", args.queries, args.tb_filters)
        else:
            result = phase_tensorboard(path / "log", path / "events", args.tb_filters)
        print(json.dumps(result))
        return

    sizes = SMALL if args.small else FULL
    work = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="bench_index_"))
    work.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(work / "events", ignore_errors=True)
    common = [
        "--dir",
        str(work),
        "--queries",
        str(args.queries),
        "--tb-filters",
        str(args.tb_filters),
    ]
    try:
        print(f"synthetic log {sizes} in {work}  ({os.cpu_count()} CPUs)")
        w = _child("write", *common, "--sizes", json.dumps(sizes))
        print(
            f"write      {w['seconds']:8.1f} s   peak RSS {w['peak_rss_mb']:7.0f} MB   "
            f"log {w['disk_mb']:.0f} MB on disk   sizes {w['sizes']}"
        )
        i = _child("index", *common)
        print(
            f"index      {i['seconds']:8.1f} s   peak RSS {i['peak_rss_mb']:7.0f} MB   "
            f"index {i['index_disk_mb']:.0f} MB on disk, {i['variables']} variables   "
            f"(targets <= 180 s, <= 2048 MB)"
        )
        q = _child("query", *common)
        print(
            f"queries    median {q['median_ms']:.1f} ms   p95 {q['p95_ms']:.1f} ms   "
            f"max {q['max_ms']:.1f} ms   (targets <= 20 / <= 50 ms; {args.queries} random view "
            f"queries <= 2000 columns, <= {VIEWPORT_ROWS} rows)"
        )
        print(
            f"answers    median {q['median_bytes'] / 1e3:.0f} kB   max {q['max_bytes'] / 1e6:.1f} MB"
        )
        t = _child("tensorboard", *common)
        scale = t["all_filters"] / args.tb_filters
        ours = q["open_first_view_s"]
        print(
            f"tensorboard {args.tb_filters} filters x {t['events'] // args.tb_filters} snapshots "
            f"= {t['events']} scalar events ({t['event_mb']:.0f} MB, written in "
            f"{t['write_s']:.1f} s): EventAccumulator load {t['load_s']:.2f} s"
        )
        print(
            f"filterscope open index + first view of the same {args.tb_filters} filters: "
            f"{ours * 1e3:.0f} ms"
        )
        print(
            f"ratio      measured {t['load_s'] / ours:.0f}x; scaled to all {t['all_filters']} "
            f"filters (x{scale:.1f}, linear in events, an extrapolation) "
            f"{t['load_s'] * scale / ours:.0f}x   (goal >= 100x)"
        )
    finally:
        if not args.dir:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
