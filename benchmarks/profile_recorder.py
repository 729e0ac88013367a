"""Where the Recorder's time goes: the cost of one ``step()`` and one snapshot, and a profile.

``bench_recorder.py`` measures the overhead ratio of whole training runs; this script splits it
into its two parts, measured on LeNet-5 (61,706 weights in 5 measured layers) with real
gradients:

* ``step()`` alone (what every training step pays): the loss stays a tensor, nothing is
  synchronised or written;
* one snapshot without an evaluation set (what every ``snapshot_every``-th step pays): the
  statistics over all weights and gradients, and encoding the snapshot's chunks; the files are
  written by a background thread;

then prints the training-thread functions that take the most time inside snapshots (cProfile,
sorted by own time). The overhead of recording is about
``(snapshot_ms / snapshot_every + step_us / 1000) / plain_step_ms``.

Usage::

    python benchmarks/profile_recorder.py            # 20,000 steps, 40 snapshots
    python benchmarks/profile_recorder.py --quick
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import statistics
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

import filterscope as fs
from filterscope.data import digits
from filterscope.models import LeNet5


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer steps and snapshots")
    args = parser.parse_args()
    torch.set_num_threads(1)
    n_steps, n_snapshots = (2_000, 8) if args.quick else (20_000, 40)

    train = digits("train", size=32)
    x, y = train.x[:64], train.y[:64]
    model = LeNet5()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    loss = F.cross_entropy(model(x), y)
    loss.backward()  # real gradients for the statistics

    # A plain training step, for scale.
    plain = []
    for _ in range(20):
        start = time.perf_counter()
        opt.zero_grad()
        out = F.cross_entropy(model(x), y)
        out.backward()
        opt.step()
        plain.append(time.perf_counter() - start)
    plain_ms = 1e3 * statistics.median(plain)

    path = Path(tempfile.mkdtemp(prefix="profile_recorder_")) / "run"
    rec = fs.Recorder(model, path, optimizer=opt, snapshot_every=10**9)
    value = loss.detach()
    rec.step(value)  # step 0 takes the first snapshot
    rec.flush()
    start = time.perf_counter()
    for _ in range(n_steps):
        rec.step(value)
    step_us = 1e6 * (time.perf_counter() - start) / n_steps

    times = []
    parts: dict[str, list[float]] = {"stats": [], "encode": []}
    profile = cProfile.Profile()
    for _ in range(n_snapshots):
        rec.step(value)
        start = time.perf_counter()
        profile.enable()
        rec.snapshot()
        profile.disable()
        times.append(time.perf_counter() - start)
        for key in parts:
            parts[key].append(rec.snapshot_seconds_[key])
        rec.flush()  # keep the background writes out of the next measurement
    snapshot_ms = 1e3 * statistics.median(times)
    rec.close()

    print(f"LeNet-5, batch 64, 32x32, torch {torch.__version__}, 1 thread")
    print(f"plain training step        {plain_ms:8.3f} ms (median of 20)")
    print(f"Recorder.step()            {step_us:8.2f} us per call ({n_steps} calls)")
    print(
        f"one snapshot (no eval set) {snapshot_ms:8.3f} ms median of {n_snapshots}, profiled: "
        f"stats {1e3 * statistics.median(parts['stats']):.3f} ms, "
        f"encode {1e3 * statistics.median(parts['encode']):.3f} ms"
    )
    for every in (10, 50, 200):
        share = (snapshot_ms / every + step_us / 1e3) / plain_ms
        print(f"estimated overhead at snapshot_every={every:<4d} {100 * share:6.2f} %")
    print("\nInside snapshots, by own time (cProfile):")
    pstats.Stats(profile).sort_stats("tottime").print_stats(12)


if __name__ == "__main__":
    main()
