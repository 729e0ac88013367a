"""What recording costs: training time with the Recorder against the same training without it.

Prints, measured side by side in one run (repetitions interleaved, medians reported):

* the wall-time ratio of a training epoch with the recorder (statistics only: no evaluation
  set) to the same epoch without it, at the default ``snapshot_every=50``, for a LeNet-5 on the
  digits and for a small ResNet-style network on synthetic 32×32 images; next to it the same
  ratio of the training thread's CPU time, which other processes on a shared machine disturb
  far less than wall time (the background writer's CPU time is not in it);
* the cost of one snapshot, split into statistics, chunk encoding, evaluation (measured
  separately, with an evaluation set) and the background write;
* bytes on disk per snapshot.

Usage::

    python benchmarks/bench_recorder.py            # the full measurement
    python benchmarks/bench_recorder.py --quick    # a short check that it runs
    python benchmarks/bench_recorder.py --device cuda
    python benchmarks/bench_recorder.py --threads 1   # steadier on a busy machine

Target: ratio <= 1.05 at the defaults.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

import filterscope as fs
from filterscope.data import digits
from filterscope.models import LeNet5, ResNet


@dataclass
class Workload:
    name: str
    make_model: Callable[[], nn.Module]
    train: tuple[torch.Tensor, torch.Tensor]
    val: tuple[torch.Tensor, torch.Tensor]
    batch: int


def workloads() -> list[Workload]:
    train, val = digits("train", size=32), digits("val", size=32)
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(512, 3, 32, 32, generator=generator)
    labels = torch.randint(0, 10, (512,), generator=generator)
    return [
        Workload("LeNet5 / digits", LeNet5, (train.x, train.y), (val.x, val.y), 64),
        Workload(
            "ResNet(1,1,1) / synthetic 32x32",
            lambda: ResNet(stages=(1, 1, 1), widths=(8, 16, 32)),
            (images[:384], labels[:384]),
            (images[384:], labels[384:]),
            32,
        ),
    ]


def batches(work: Workload, epochs: int, device: torch.device) -> Iterator[tuple]:
    x, y = work.train
    generator = torch.Generator().manual_seed(1)
    for _ in range(epochs):
        order = torch.randperm(len(x), generator=generator)
        for start in range(0, len(x), work.batch):
            idx = order[start : start + work.batch]
            yield x[idx].to(device), y[idx].to(device)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def train(
    work: Workload, epochs: int, device: torch.device, path: Path | None, **recorder_kwargs
) -> tuple[float, float, fs.Recorder | None]:
    """Wall and training-thread CPU seconds per epoch of the training loop (recorder
    construction and close excluded)."""
    torch.manual_seed(0)
    model = work.make_model().to(device)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    rec = fs.Recorder(model, path, optimizer=opt, **recorder_kwargs) if path else None
    data = list(batches(work, epochs, device))
    sync(device)
    start, cpu_start = time.perf_counter(), time.thread_time()
    for x, y in data:
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        if rec is not None:
            rec.step(loss)
        opt.step()
    if rec is not None:
        rec.flush()  # the background writes count too
    sync(device)
    seconds = (time.perf_counter() - start) / epochs
    cpu = (time.thread_time() - cpu_start) / epochs
    return seconds, cpu, rec


def disk_bytes(path: Path) -> int:
    """Bytes of a log, without the fixed-size weight state kept for resuming."""
    files = (p for p in path.rglob("*") if p.is_file())
    return sum(p.stat().st_size for p in files if "state" not in p.relative_to(path).parts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="few steps and repetitions")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--reps", type=int, default=None)
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    reps = args.reps or (3 if args.quick else 7)
    steps = 100 if args.quick else 300  # 2 or 6 snapshot intervals at snapshot_every=50
    tmp = Path(tempfile.mkdtemp(prefix="bench_recorder_"))
    print(
        f"filterscope recorder benchmark: device {device}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, {reps} interleaved repetitions, medians"
    )
    header = (
        f"{'workload':34s} {'steps':>5s} {'plain s/epoch':>14s} {'recorded s/epoch':>17s} "
        f"{'ratio':>6s} {'cpu ratio':>10s}"
    )
    print("\nTraining with the recorder (statistics only, snapshot_every=50):")
    print(header)
    details = []
    for work in workloads():
        steps_per_epoch = -(-len(work.train[0]) // work.batch)
        epochs = max(1, steps // steps_per_epoch)
        # Warm-up: first-call initialisation (kernels, lazy imports) is a one-off, not per epoch.
        train(work, 1, device, None)
        _, _, warm = train(work, 1, device, tmp / f"{work.name[:6]}-warm")
        assert warm is not None
        warm.close()
        runs: dict[bool, list[tuple[float, float]]] = {False: [], True: []}
        for rep in range(reps):
            order = [False, True] if rep % 2 == 0 else [True, False]
            for record in order:
                path = tmp / f"{work.name[:6]}-{rep}" if record else None
                seconds, cpu, rec = train(work, epochs, device, path)
                if rec is not None:
                    rec.close()
                runs[record].append((seconds, cpu))
        wall = [r[0] / p[0] for r, p in zip(runs[True], runs[False], strict=True)]
        cpu = [r[1] / p[1] for r, p in zip(runs[True], runs[False], strict=True)]
        print(
            f"{work.name:34s} {epochs * steps_per_epoch:5d} "
            f"{statistics.median(s for s, _ in runs[False]):14.4f} "
            f"{statistics.median(s for s, _ in runs[True]):17.4f} "
            f"{statistics.median(wall):6.3f} {statistics.median(cpu):10.3f}"
        )

        # One snapshot's parts, with an evaluation set, and the bytes it adds on disk.
        path = tmp / f"{work.name[:6]}-eval"
        _, _, rec = train(work, 2, device, path, eval_sets={"val": work.val}, snapshot_every=1)
        assert rec is not None
        seconds = rec.snapshot_seconds_
        write = rec.write_seconds_
        rec.close()
        details.append((work, seconds, write, rec.n_snapshots_, path))

    print("\nOne snapshot (milliseconds; eval = the whole evaluation set, write = background):")
    print(
        f"{'workload':34s} {'stats':>8s} {'encode':>8s} {'eval':>8s} {'samples':>8s} {'write':>8s}"
    )
    for work, seconds, write, _, _ in details:
        print(
            f"{work.name:34s} {1e3 * seconds['stats']:8.2f} {1e3 * seconds['encode']:8.2f} "
            f"{1e3 * seconds['eval']:8.2f} {len(work.val[0]):8d} {1e3 * write:8.2f}"
        )
    print("\nDisk (with the evaluation set; the resume state, 2 x 4 B per weight, not included):")
    for work, _, _, snapshots, path in details:
        empty = tmp / f"{work.name[:6]}-empty"  # one snapshot, no steps
        fs.Recorder(work.make_model().to(device), empty, eval_sets={"val": work.val}).close()
        per = (disk_bytes(path) - disk_bytes(empty)) / (snapshots - 1)
        print(
            f"{work.name:34s} {per:10.0f} B per snapshot   "
            f"({snapshots} snapshots: {disk_bytes(path)} B)"
        )


if __name__ == "__main__":
    main()
