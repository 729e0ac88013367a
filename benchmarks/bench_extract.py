"""Extraction + batched PCA vs a scikit-learn PCA loop, and vs a plain forward pass.

Prints, per model, measured side by side in one run:

* ``pca``: our batched randomized PCA of every filter's (N, H·W) maps vs a loop of
  ``sklearn.decomposition.PCA(n_components=2)`` (default solver) over the same maps, one BLAS
  thread (target ≥ 10×);
* ``pipeline``: ``filterscope.gmm.extract`` (hooks + PCA) vs a plain hook-collection forward
  pass followed by the scikit-learn loop;
* ``extract/forward``: ``extract`` time over a plain ``model(x)`` forward pass (eval mode,
  ``torch.no_grad()``) over the same samples and batch size (target ≤ 1.5×).

``--device cuda`` runs the model, ``extract`` and ``pca_2d`` on the GPU (inputs start on the host
and move batch by batch, as in ``extract``; timers synchronise the device); the scikit-learn
loop stays on the host CPU, as a user without our package would run it.

Every time is the best of ``--repeats`` runs for both sides; within a repeat the contenders run
one after the other, so that a busy stretch of a shared machine slows all of them alike. The
PCA inputs are copied before each timed call, not inside it. The scikit-learn loop runs with one
BLAS thread: with two (OpenBLAS's threads contending with torch's on a 2-core machine) it ran
20–30× slower on the 512 × 256 and 512 × 1024 maps, which flattered the PCA ratio.

``--rss`` instead runs extraction of ``resnet50_like`` at 224² in a child process per N and
reports its peak resident memory (``ru_maxrss``).

Usage::

    python benchmarks/bench_extract.py            # all models, N = 512
    python benchmarks/bench_extract.py --quick    # N = 128, small models only
    python benchmarks/bench_extract.py --device cuda
    python benchmarks/bench_extract.py --rss 64 128
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

# Idle OpenMP threads sleep instead of spinning: on two cores shared with other jobs, spinning
# threads make two-thread timings erratic. Read once when torch loads, so set before importing it.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np
import torch
from sklearn.decomposition import PCA
from threadpoolctl import threadpool_limits
from torch import nn

CPU = torch.device("cpu")
Timed = Callable[[], Any] | tuple[Callable[[], Any], Callable[[Any], Any]]


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def best_of(
    contenders: dict[str, Timed], repeats: int, device: torch.device = CPU
) -> dict[str, float]:
    """Best time of each contender over ``repeats`` rounds, the contenders interleaved per round.

    A contender is a function, or a pair ``(prepare, fn)`` timed as ``fn(prepare())`` with only
    ``fn`` inside the timer (``prepare`` copies inputs that ``fn`` changes). The timer waits for
    ``device`` to finish its queued work at both ends.
    """
    best = dict.fromkeys(contenders, float("inf"))
    for _ in range(repeats):
        for name, contender in contenders.items():
            if isinstance(contender, tuple):
                prepare, fn = contender
                arg = prepare()
                sync(device)
                start = time.perf_counter()
                fn(arg)
            else:
                sync(device)
                start = time.perf_counter()
                contender()
            sync(device)
            best[name] = min(best[name], time.perf_counter() - start)
    return best


def collect_maps(
    model: nn.Module, x: torch.Tensor, batch_size: int, device: torch.device = CPU
) -> dict[str, np.ndarray]:
    """The reference collection: one forward pass, every Conv2d output kept on the host as
    (C, N, H·W) arrays."""
    outputs: dict[str, list[torch.Tensor]] = {}
    handles = [
        m.register_forward_hook(
            lambda m, i, o, n=n: outputs.setdefault(n, []).append(o.detach().cpu())
        )
        for n, m in model.named_modules()
        if isinstance(m, nn.Conv2d)
    ]
    with torch.no_grad():
        for start in range(0, len(x), batch_size):
            model(x[start : start + batch_size].to(device, non_blocking=True))
    for h in handles:
        h.remove()
    return {n: torch.cat(v).transpose(0, 1).flatten(2).numpy() for n, v in outputs.items()}


def sklearn_loop(maps: dict[str, np.ndarray]) -> None:
    """What a user would write: scikit-learn's default PCA per filter, one BLAS thread."""
    with threadpool_limits(limits=1):
        for layer in maps.values():
            for c in range(layer.shape[0]):
                PCA(n_components=2, random_state=0).fit_transform(layer[c])


def run_model(
    name: str, model: nn.Module, x: torch.Tensor, repeats: int, device: torch.device
) -> None:
    from filterscope.gmm.extract import extract
    from filterscope.gmm.pca import pca_2d

    model.eval().to(device)
    if device.type == "cuda":
        x = x.pin_memory()
    batch = 128
    n = len(x)

    def forward() -> None:
        with torch.no_grad():
            for start in range(0, n, batch):
                model(x[start : start + batch].to(device, non_blocking=True))

    def ours() -> None:
        extract(model, x, n_samples=None, batch_size=batch, device=device)

    maps = collect_maps(model, x, batch, device)
    tensors = [torch.from_numpy(v).to(device) for v in maps.values()]
    filters = sum(v.shape[0] for v in maps.values())

    def copies() -> list[torch.Tensor]:
        return [t.clone() for t in tensors]  # pca_2d centres its input in place

    def pca(inputs: list[torch.Tensor]) -> None:
        for t in inputs:
            pca_2d(t)

    # Warm-up outside the timers: cuDNN autotuning, the allocators, and the first calls into
    # LAPACK and xarray (about 0.25 s once per process on the CPU).
    forward()
    extract(model, x[:8], n_samples=None, batch_size=batch, device=device)
    t = best_of({"forward": forward, "extract": ours}, repeats, device)
    t |= best_of({"pca": (copies, pca), "sklearn": lambda: sklearn_loop(maps)}, repeats, device)
    t |= best_of({"collect": lambda: collect_maps(model, x, batch, device)}, repeats, device)
    sk_pipeline = t["collect"] + t["sklearn"]
    print(
        f"{name:<34} N={n:<4} filters={filters:<5} "
        f"pca: sklearn {t['sklearn']:7.3f}s ours {t['pca']:6.3f}s = "
        f"{t['sklearn'] / t['pca']:5.1f}x | "
        f"pipeline: sklearn {sk_pipeline:7.3f}s extract {t['extract']:6.3f}s = "
        f"{sk_pipeline / t['extract']:5.1f}x | "
        f"forward {t['forward']:6.3f}s extract/forward = {t['extract'] / t['forward']:4.2f}x",
        flush=True,
    )


def models(quick: bool, n: int) -> list[tuple[str, nn.Module, torch.Tensor]]:
    from filterscope.data import animal_mnist, digits
    from filterscope.errors import InvalidDataError
    from filterscope.models import LeNet5, SimpleCNN, resnet18_small, resnet50_like

    torch.manual_seed(0)
    dig = digits("val").x[:n]
    try:
        ani, ani_name = animal_mnist("val").x[:n], "animal-mnist 28²"
    except InvalidDataError as err:  # e.g. a device machine without the animal-mnist package
        print(f"animal-mnist unavailable ({err}); SimpleCNN runs on 28² noise", flush=True)
        ani, ani_name = torch.randn(n, 1, 28, 28), "28² noise"
    out = [
        ("LeNet5 / digits 32²", LeNet5(), dig),
        (f"SimpleCNN(16) / {ani_name}", SimpleCNN(width=16), ani),
        ("resnet18_small / 32² noise", resnet18_small(), torch.randn(n, 3, 32, 32)),
    ]
    if not quick:
        out.append(("resnet50_like / 224² noise", resnet50_like(), torch.randn(32, 3, 224, 224)))
    return out


def rss_child(n: int, max_memory: int) -> None:
    from filterscope.gmm.extract import extract
    from filterscope.models import resnet50_like

    torch.manual_seed(0)
    model = resnet50_like().eval()
    x = torch.randn(n, 3, 224, 224)
    start = time.perf_counter()
    ds = extract(model, x, n_samples=None, batch_size=32, device="cpu", max_memory=max_memory)
    elapsed = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2  # KiB → GiB
    print(
        f"resnet50_like 224² N={n:<4} filters={ds.sizes['filter']} passes={ds.attrs['n_passes']} "
        f"max_memory={max_memory / 1024**3:.2f} GiB: {elapsed:6.1f}s, peak RSS {peak:5.2f} GiB",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one repeat, no ResNet-50")
    parser.add_argument("--n", type=int, help="probe samples (default 512, --quick 128)")
    parser.add_argument("--repeats", type=int, default=3, help="best of (default 3)")
    parser.add_argument("--threads", type=int, default=2, help="torch's CPU threads")
    parser.add_argument("--device", default="cpu", help="where torch runs: cpu or cuda")
    parser.add_argument("--rss", type=int, nargs="*", help="peak RSS of resnet50_like for each N")
    parser.add_argument("--max-memory", type=float, default=2.0, help="GiB, with --rss")
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    budget = int(args.max_memory * 1024**3)
    if args.child is not None:
        rss_child(args.child, budget)
        return
    if args.rss is not None:
        for n in args.rss or [64]:
            cmd = [
                sys.executable,
                __file__,
                "--child",
                str(n),
                "--max-memory",
                str(args.max_memory),
            ]
            subprocess.run([*cmd, "--threads", str(args.threads)], check=True)
        return
    n = args.n or (128 if args.quick else 512)
    device = torch.device(args.device)
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {where}")
    for name, model, x in models(args.quick, n):
        run_model(name, model, x, args.repeats, device)


if __name__ == "__main__":
    main()
