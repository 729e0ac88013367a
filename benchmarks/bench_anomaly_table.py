"""AnomalyTable benchmark: first paint and filter selection in a real JupyterLab and Chromium.

One command, one table. The analysis result is synthesised at ResNet-50 scale (53 convolution
layers, 26,560 filters, as :func:`filterscope.data.synthetic.resnet_layers` lays them out) over
2,000 probe samples: per filter one to four Gaussian components with random means and
covariances, the 2-D points drawn from them, about 3 % of the filters with a planted compact
far-away group of 1–5 % of the samples (flagged, their samples outliers, score = the group's
Mahalanobis separation), about 1 % dead filters, and a small continuous score on a fifth of the
rest. It has every column of :data:`filterscope.gmm.analyze.TABLE_COLUMNS` and the dataset
variables the table reads (labels are int8, points float32, to keep the kernel's memory near
1 GB); no GMM is fitted (``gmm`` is None), as only the table and dataset are shown.

Measured, in one run:

* **first paint** (target <= 1 s): in Chromium, from the page running the cell
  ``w = fs.AnomalyTable(result); w`` (``notebook:run-cell``, ``performance.now()``) to the
  animation frame after the first page of rows is in the DOM. The kernel's construction time
  is printed on its own row;
* **select a filter** (target <= 100 ms): in Chromium, from the click on a row to the animation
  frame after its 2,000-point scatter (points, 1σ/2σ ellipses, outlier rings) is drawn, over
  the first ``--clicks`` rows of the first page (median and max);
* in the kernel, ``handle_request`` plus encoding for a ``rows`` page (default, and sorted by
  another column with a flag filter) and a ``filter`` answer, medians of repeats, with bytes;
* the overview's bytes (the widget state sent for the first paint, bundle excluded).

Each row prints the ratio of the measured value to its target. No target makes the script
fail (it is a measurement); an error does (exit status 1).

Usage::

    python benchmarks/bench_anomaly_table.py            # 26,560 filters x 2,000 samples
    python benchmarks/bench_anomaly_table.py --quick    # 1,200 filters x 500 samples
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
HERE = Path(__file__).resolve().parent
DRIVER = ROOT / "tests" / "e2e" / "driver.mjs"
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")

FULL = {"layout": "resnet50", "n_samples": 2000, "clicks": 10}
QUICK = {"layout": "resnet18", "n_samples": 500, "clicks": 4}
TARGET_PAINT_S = 1.0
TARGET_SELECT_MS = 100.0


# ---- the synthetic result --------------------------------------------------------------------


def synthetic_result(layout: str = "resnet50", n_samples: int = 2000, seed: int = 0) -> Any:
    """An :class:`~filterscope.gmm.AnalysisResult` of the shape described in the module
    docstring, for the convolution layers of ``layout`` ("resnet50" or "resnet18")."""
    import pandas as pd
    import xarray as xr

    from filterscope.data.synthetic import LAYOUTS, resnet_layers
    from filterscope.gmm.analyze import TABLE_COLUMNS, AnalysisResult

    table = resnet_layers(*LAYOUTS[layout], 1000 if layout == "resnet50" else 10)
    kinds = np.asarray(table.kind)
    conv = kinds == "Conv2d"
    names = np.asarray(table.name)[conv]
    widths = np.asarray(table.filters)[conv].astype(np.int64)
    layer_of = np.repeat(names, widths).astype(str)
    channel_of = np.concatenate([np.arange(w) for w in widths]).astype(np.int64)
    f, n, kmax = len(layer_of), n_samples, 4
    rng = np.random.default_rng(seed)

    k = rng.choice([1, 2, 3], size=f, p=[0.5, 0.3, 0.2])
    anomaly = rng.random(f) < 0.03
    dead = ~anomaly & (rng.random(f) < 0.01)
    k[dead] = 1
    weight = rng.dirichlet(np.full(kmax, 2.0), size=f)
    weight[np.arange(kmax)[None, :] >= k[:, None]] = 0
    weight /= weight.sum(1, keepdims=True)
    mean = rng.normal(scale=3.0, size=(f, kmax, 2))
    a = rng.normal(scale=0.7, size=(f, kmax, 2, 2))
    cov = a @ np.swapaxes(a, -1, -2) + 0.1 * np.eye(2)
    points = np.empty((f, n, 2), np.float32)
    labels = np.empty((f, n), np.int8)
    outlier = np.zeros((f, n), bool)
    score = np.where(rng.random(f) < 0.2, rng.exponential(0.5, f), 0.0)
    chunk = 1024
    for lo in range(0, f, chunk):
        hi = min(lo + chunk, f)
        u = rng.random((hi - lo, n, 1))
        lab = (u > np.cumsum(weight[lo:hi], 1)[:, None, :]).sum(-1).clip(0, kmax - 1)
        rows = np.arange(hi - lo)[:, None]
        chol = np.linalg.cholesky(cov[lo:hi])[rows, lab]
        z = rng.normal(size=(hi - lo, n, 2, 1))
        points[lo:hi] = mean[lo:hi][rows, lab] + (chol @ z)[..., 0]
        labels[lo:hi] = lab
    # Planted groups: a new compact component far from the first one.
    planted = np.flatnonzero(anomaly)
    outlier_cluster = np.zeros((f, kmax), bool)
    for i in planted:
        c = min(int(k[i]), kmax - 1)
        m = max(int(rng.uniform(0.01, 0.05) * n), 1)
        members = rng.choice(n, m, replace=False)
        sep = rng.uniform(6, 12)
        spread = np.sqrt(np.linalg.eigvalsh(cov[i, 0])[-1])
        direction = rng.normal(size=2)
        mean[i, c] = mean[i, 0] + sep * spread * direction / np.linalg.norm(direction)
        cov[i, c] = 0.05 * spread**2 * np.eye(2)
        points[i, members] = mean[i, c] + rng.normal(scale=np.sqrt(0.05) * spread, size=(m, 2))
        labels[i, members] = c
        outlier[i, members] = True
        outlier_cluster[i, c] = True
        k[i] = c + 1
        score[i] = sep
    points[dead] = 0.0
    counts = np.stack([(labels == c).sum(1) for c in range(kmax)], 1)
    sizes = np.where(np.arange(kmax)[None, :] < k[:, None], counts, np.iinfo(np.int64).max)
    smallest = sizes.min(1)
    ch = np.where(k > 1, rng.lognormal(6, 1.5, f), np.nan)
    explained = rng.uniform(0.3, 0.95, f)
    sample_id = np.sort(rng.choice(50_000, n, replace=False)).astype(np.int64)
    label = rng.integers(0, 1000, n)
    dataset = xr.Dataset(
        {
            "points": (("filter", "sample", "pc"), points),
            "labels": (("filter", "sample"), labels),
            "outlier": (("filter", "sample"), outlier),
            "n_clusters": ("filter", k.astype(np.int64)),
            "mean": (("filter", "component", "pc"), mean),
            "covariance": (("filter", "component", "pc", "pc_col"), cov),
            "weight": (("filter", "component"), weight),
            "outlier_cluster": (("filter", "component"), outlier_cluster),
            "anomaly": ("filter", anomaly),
            "anomaly_score": ("filter", score),
            "dead": ("filter", dead),
            "explained_variance": ("filter", explained),
            "smallest_cluster": ("filter", smallest),
            "n_outliers": ("filter", outlier.sum(1)),
        },
        coords={
            "filter": np.arange(f),
            "filter_layer": ("filter", layer_of),
            "filter_channel": ("filter", channel_of),
            "sample": np.arange(n),
            "sample_id": ("sample", sample_id),
            "label": ("sample", label),
        },
    )
    frame = pd.DataFrame(
        {
            "layer": layer_of,
            "channel": channel_of,
            "filter": np.arange(f),
            "k": k,
            "ch": ch,
            "smallest_cluster": smallest,
            "n_outliers": outlier.sum(1),
            "outlier_ids": [sample_id[np.flatnonzero(row)].tolist() for row in outlier],
            "score": score,
            "anomaly": anomaly,
            "dead": dead,
            "explained_variance": explained,
        },
        columns=list(TABLE_COLUMNS),
    )
    order = np.lexsort((frame["filter"].to_numpy(), -frame["score"].to_numpy()))
    frame = frame.iloc[order].reset_index(drop=True)
    return AnalysisResult(table=frame, dataset=dataset, gmm=None)  # type: ignore[arg-type]


# ---- the notebook ----------------------------------------------------------------------------

SETUP_CELL = """\
import json, statistics, sys, time
sys.path.insert(0, {here!r})
from ipywidgets.widgets.widget import _remove_buffers
import filterscope as fs
from filterscope.views import anomaly as _anomaly  # the view's module (and bundle) load here
from filterscope.views._base import encode_response
from bench_anomaly_table import synthetic_result

t0 = time.perf_counter()
result = synthetic_result({layout!r}, {n_samples})
print("READY=" + json.dumps({{"synth_s": time.perf_counter() - t0}}))"""

# "Run all" only arms the next two cells (so the first display is the timed one): the browser
# runs them again, one at a time.
SHOW_CELL = """\
try:
    _shown += 1
except NameError:
    _shown = 0
if _shown:
    t0 = time.perf_counter()
    w = fs.AnomalyTable(result)
    BUILD_S = time.perf_counter() - t0
    display(w)
else:
    print("ARMED=1")"""

STATS_CELL = """\
def _request(view, method, params, repeats=7):
    times = []
    for i in range(repeats + 1):
        t = time.perf_counter()
        response = view.handle_request(
            {"type": "request", "id": i + 1, "method": method, "params": params}
        )
        message, buffers = encode_response(response)
        times.append(time.perf_counter() - t)
        if "error" in response:
            raise RuntimeError(f"{method} {params}: {response['error']}")
    size = len(json.dumps(message, default=str).encode()) + sum(b.nbytes for b in buffers)
    return {"first_ms": times[0] * 1e3, "median_ms": statistics.median(times[1:]) * 1e3,
            "bytes": size}


def _stats(w):
    state, _, buffers = _remove_buffers(w.get_state())
    state.pop("_esm", None)
    top = int(result.table["filter"].iloc[0])
    return {
        "build_s": BUILD_S,
        "n_filters": int(result.dataset.sizes["filter"]),
        "n_samples": int(result.dataset.sizes["sample"]),
        "n_anomaly": int(result.table["anomaly"].sum()),
        "state_bytes": len(json.dumps(state, default=str).encode()),
        "buffer_bytes": sum(memoryview(b).nbytes for b in buffers),
        "requests": {
            "rows, first page (25 rows by score)": _request(w, "rows", {"limit": 25}),
            "rows, sorted by CH ascending, K = 2, not flagged": _request(
                w, "rows", {"limit": 25, "sort": "ch", "descending": False, "ks": [2],
                            "flag": "normal"}
            ),
            "filter (top row's points)": _request(w, "filter", {"filter": top}),
        },
    }


if "w" in globals():
    print("STATS=" + json.dumps(_stats(w)))
else:
    print("ARMED=2")"""


def write_notebook(path: Path, sizes: dict) -> None:
    import nbformat

    nb = nbformat.v4.new_notebook()
    setup = SETUP_CELL.format(here=str(HERE), layout=sizes["layout"], n_samples=sizes["n_samples"])
    nb.cells = [nbformat.v4.new_code_cell(c) for c in (setup, SHOW_CELL, STATS_CELL)]
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nbformat.write(nb, path)


def run_browser(work: Path, sizes: dict, timeout: float) -> dict:
    sys.path.insert(0, str(HERE))
    from bench_views import _stop, drive, start_lab

    node = shutil.which("node")
    if node is None or not Path(CHROMIUM).exists():
        raise RuntimeError(f"needs node on PATH and Chromium at {CHROMIUM}")
    proc, url, root = start_lab(work / "lab")
    try:
        write_notebook(root / "bench_anomaly.ipynb", sizes)
        config = {
            "url": url,
            "notebook": "bench_anomaly.ipynb",
            "scenario": "anomaly_bench",
            "artifacts": str(work / "artifacts"),
            "clicks": sizes["clicks"],
            "timeout_ms": timeout * 1000,
        }
        return drive(node, DRIVER, config, work, timeout)
    finally:
        _stop(proc)


def chromium_version() -> str:
    try:
        done = subprocess.run([CHROMIUM, "--version"], capture_output=True, text=True, timeout=30)
        return done.stdout.split()[1] if done.stdout.split()[1:] else "?"
    except (OSError, subprocess.TimeoutExpired):
        return "?"


def report(args: argparse.Namespace, sizes: dict, b: dict, load: float) -> None:
    stats = b["stats"]
    paint_s = b["first_paint_ms"] / 1e3
    select = np.asarray(b["select_ms"], dtype=float)
    print(
        f"machine: {os.cpu_count()} CPU cores, {platform.machine()}, Python "
        f"{platform.python_version()}, Chromium {chromium_version()}; load average "
        f"{load:.1f} before the browser, {os.getloadavg()[0]:.1f} at the end"
    )
    print(
        f"result: {stats['n_filters']} filters ({sizes['layout']} convolutions) x "
        f"{stats['n_samples']} samples, {stats['n_anomaly']} flagged"
    )
    rows: list[tuple[str, str, str, str]] = [
        ("measure", "value", "target", "verdict"),
        ("fs.AnomalyTable(result) construction (kernel)", f"{stats['build_s']:.3f} s", "", ""),
        (
            "first paint (cell run -> first page of rows drawn)",
            f"{paint_s:.3f} s",
            f"<= {TARGET_PAINT_S:.1f} s",
            "PASS" if paint_s <= TARGET_PAINT_S else "MISS",
        ),
        ("ratio first paint / target", f"{paint_s / TARGET_PAINT_S:.2f} x", "", ""),
        (
            f"select a filter -> scatter drawn, median of {len(select)} "
            f"({int(np.median(b['points']))} points)",
            f"{np.median(select):.1f} ms",
            f"<= {TARGET_SELECT_MS:.0f} ms",
            "PASS" if np.median(select) <= TARGET_SELECT_MS else "MISS",
        ),
        (
            f"select a filter -> scatter drawn, max (click {int(select.argmax()) + 1} of "
            f"{len(select)}; all: {', '.join(f'{v:.0f}' for v in select)} ms)",
            f"{select.max():.1f} ms",
            f"<= {TARGET_SELECT_MS:.0f} ms",
            "PASS" if select.max() <= TARGET_SELECT_MS else "MISS",
        ),
        ("ratio select median / target", f"{np.median(select) / TARGET_SELECT_MS:.2f} x", "", ""),
        (
            "of which drawing the scatter (canvas), median",
            f"{np.median(np.asarray(b['draw_ms'], dtype=float)):.1f} ms",
            "",
            "",
        ),
        (
            f"first paint bytes, widget state (JSON {stats['state_bytes'] / 1e6:.3f} + buffers "
            f"{stats['buffer_bytes'] / 1e6:.3f}, bundle excluded)",
            f"{(stats['state_bytes'] + stats['buffer_bytes']) / 1e6:.3f} MB",
            "",
            "",
        ),
    ]
    for name, r in stats["requests"].items():
        rows.append(
            (
                f"kernel request: {name} (first {r['first_ms']:.0f} ms, {r['bytes'] / 1e3:.0f} kB)",
                f"{r['median_ms']:.1f} ms",
                "",
                "",
            )
        )
    for row in rows:
        print(" | ".join(row))
    print(f"screenshot: {b['screenshots'][0]}")
    shown = " ".join(a for a in sys.argv[1:])
    print(f"command: python benchmarks/bench_anomaly_table.py {shown}".rstrip())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="1,200 filters x 500 samples")
    parser.add_argument("--dir", type=Path, default=None, help="work folder (default: a temp one)")
    parser.add_argument("--clicks", type=int, default=None, help="rows clicked (default 10, 4)")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds per browser wait")
    args = parser.parse_args()
    sizes = dict(QUICK if args.quick else FULL)
    if args.clicks is not None:
        sizes["clicks"] = args.clicks
    work = args.dir if args.dir is not None else Path(tempfile.mkdtemp(prefix="bench_anomaly_"))
    work.mkdir(parents=True, exist_ok=True)
    load = os.getloadavg()[0]
    started = time.perf_counter()
    b = run_browser(work, sizes, args.timeout)
    b["stats"] = b.pop("stats", None) or {}
    if not b["stats"]:
        raise RuntimeError("the notebook printed no STATS")
    report(args, sizes, b, load)
    print(f"wall time: {time.perf_counter() - started:.0f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
