"""GMM engine at ResNet-50 scale on one accelerator: clustering time and extraction throughput.

Run by ``benchmarks/gmm_device.sh`` on a CUDA machine; also runs on the CPU with tiny sizes
(``--device cpu --quick``) to check the script itself. Prints one line per measurement and, with
``--out DIR``, writes them to ``DIR/device_gmm.json``.

Measurements
------------
``clustering``
    ``FilterGMM`` (K = 1..8) on ResNet-50's 26,560 filters × N = 2,000 synthetic 2-D points with
    planted outlier groups (``filterscope.gmm.synthetic``). To keep generation short, at most
    4,096 distinct clouds are drawn and tiled to the full filter count (the fit does not know).
    A scikit-learn ``GaussianMixture`` loop over a few filters gives the per-filter reference
    time, extrapolated linearly to every filter.
``extraction``
    ``resnet50_like`` at 224² (``--quick``: 64²): images/s of a plain ``model(x)`` inference
    pass vs ``filterscope.gmm.extract`` (hooks + on-device PCA of every filter), both from the
    same host tensor in batches of 128, once with every layer in one pass (large
    ``max_memory``) and once with the default 2 GiB budget (several truncated passes).

Usage::

    python benchmarks/device_gmm.py --device cuda --out "$OUT"
    python benchmarks/device_gmm.py --device cpu --quick
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

RESULTS: dict[str, Any] = {}


def record(key: str, value: Any, line: str) -> None:
    RESULTS[key] = value
    print(line, flush=True)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], Any], device: torch.device) -> tuple[float, Any]:
    sync(device)
    start = time.perf_counter()
    out = fn()
    sync(device)
    return time.perf_counter() - start, out


def environment(device: torch.device) -> None:
    info: dict[str, Any] = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "device": str(device),
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
        info["gpu_memory_gib"] = round(
            torch.cuda.get_device_properties(device).total_memory / 2**30, 1
        )
    for name in ("numpy", "xarray", "pandas", "scipy", "sklearn", "filterscope"):
        try:
            info[name] = __import__(name).__version__
        except Exception as err:  # report and go on: a missing package only skips its parts
            info[name] = f"missing ({type(err).__name__})"
    record("environment", info, "environment: " + ", ".join(f"{k}={v}" for k, v in info.items()))


def clustering(device: torch.device, quick: bool) -> None:
    from filterscope.gmm import FilterGMM
    from filterscope.gmm.synthetic import make_filter_points

    n_filters, n_samples = (256, 500) if quick else (26_560, 2_000)
    distinct = min(n_filters, 4_096)
    start = time.perf_counter()
    base, truth = make_filter_points(distinct, n_samples, random_state=0)
    reps = -(-n_filters // distinct)
    points = np.tile(base.astype(np.float32), (reps, 1, 1))[:n_filters]
    made = time.perf_counter() - start
    gmm = FilterGMM(device=device)
    # warm-up on a slice: CUDA context, kernels and allocator are not part of the fit time
    timed(lambda: FilterGMM(device=device).fit(points[:64]), device)
    seconds, _ = timed(lambda: gmm.fit(points), device)
    flagged = gmm.anomaly_[:distinct]
    agreement = float((flagged == truth.has_outliers).mean())
    record(
        "clustering",
        {
            "filters": n_filters,
            "samples": n_samples,
            "k_range": [1, 8],
            "seconds": seconds,
            "filters_per_second": n_filters / seconds,
            "points_generated_seconds": made,
            "anomaly_agreement_with_truth": agreement,
        },
        f"clustering: {n_filters} filters x {n_samples} points, K=1..8 on {device}: "
        f"{seconds:.1f} s ({n_filters / seconds:,.0f} filters/s); anomaly flags agree with "
        f"the planted truth on {agreement:.1%} of filters",
    )
    sklearn_reference(points[: 4 if quick else 24], n_filters, seconds)


def sklearn_reference(points: np.ndarray, n_filters: int, ours: float) -> None:
    try:
        from sklearn.mixture import GaussianMixture
        from threadpoolctl import threadpool_limits
    except ImportError as err:
        record("sklearn_reference", None, f"sklearn reference skipped: {err}")
        return
    start = time.perf_counter()
    with threadpool_limits(1):
        for cloud in points:
            for k in range(1, 9):
                GaussianMixture(k, covariance_type="full", random_state=0).fit(cloud)
    per_filter = (time.perf_counter() - start) / len(points)
    total = per_filter * n_filters
    record(
        "sklearn_reference",
        {"per_filter_seconds": per_filter, "extrapolated_seconds": total, "speedup": total / ours},
        f"scikit-learn loop (1 CPU thread, K=1..8): {per_filter * 1e3:.0f} ms/filter, "
        f"extrapolated {total / 3600:.2f} h for {n_filters} filters = {total / ours:,.0f}x slower",
    )


def extraction(device: torch.device, quick: bool) -> None:
    from filterscope.gmm import extract
    from filterscope.models import resnet50_like

    size, n = (64, 16) if quick else (224, 512)
    batch = 128
    torch.manual_seed(0)
    model = resnet50_like().eval().to(device)
    x = torch.randn(n, 3, size, size)
    if device.type == "cuda":
        x = x.pin_memory()

    def inference() -> None:
        with torch.no_grad():
            for start in range(0, n, batch):
                model(x[start : start + batch].to(device, non_blocking=True))

    inference()  # warm-up (cuDNN autotuning, allocator)
    t_plain, _ = timed(inference, device)
    line = {"images": n, "size": size, "plain_seconds": t_plain, "plain_images_per_s": n / t_plain}
    budgets = {"one_pass": None, "default_2GiB": 2 * 1024**3}
    for label, budget in budgets.items():
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        seconds, ds = timed(
            lambda b=budget: extract(
                model, x, n_samples=None, batch_size=batch, device=device, max_memory=b
            ),
            device,
        )
        peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None
        line[label] = {
            "seconds": seconds,
            "images_per_s": n / seconds,
            "ratio_to_plain": seconds / t_plain,
            "passes": int(ds.attrs["n_passes"]),
            "filters": int(ds.sizes["filter"]),
            "peak_device_gib": peak,
            "min_explained_variance": float(np.nanmin(ds.explained_variance.values)),
        }
    one, default = line["one_pass"], line["default_2GiB"]
    record(
        "extraction",
        line,
        f"extraction resnet50_like {size}² N={n} on {device}: plain {n / t_plain:,.0f} img/s; "
        f"extract one pass {one['images_per_s']:,.0f} img/s ({one['ratio_to_plain']:.2f}x plain"
        f"{_gib(one['peak_device_gib'])}); default budget {default['passes']} passes "
        f"{default['images_per_s']:,.0f} img/s ({default['ratio_to_plain']:.2f}x"
        f"{_gib(default['peak_device_gib'])})",
    )


def _gib(value: float | None) -> str:
    return "" if value is None else f", peak {value:.1f} GiB"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--quick", action="store_true", help="tiny sizes (checks the script)")
    parser.add_argument("--out", default=os.environ.get("OUT"), help="folder for the JSON")
    parser.add_argument("--only", choices=["clustering", "extraction"], help="run one part")
    args = parser.parse_args()
    device = torch.device(args.device)
    if device.type == "cpu":
        torch.set_num_threads(min(2, os.cpu_count() or 1))
    environment(device)
    failed = []
    for name, part in (("clustering", clustering), ("extraction", extraction)):
        if args.only and args.only != name:
            continue
        try:
            part(device, args.quick)
        except Exception:  # keep the other part's numbers; report the failure at the end
            failed.append(name)
            RESULTS[f"{name}_error"] = traceback.format_exc()
            print(f"{name} FAILED:\n{RESULTS[f'{name}_error']}", file=sys.stderr, flush=True)
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "device_gmm.json").write_text(json.dumps(RESULTS, indent=2, default=str))
        print(f"results written to {out / 'device_gmm.json'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
