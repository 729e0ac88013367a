"""Train, record, and get killed: the subprocess side of tests/test_log_crash.py.

Usage: ``python kill_trials.py WORKDIR TRIALS SEED``

This process imports torch and filterscope once, then forks one real training process per
trial (the import would otherwise dominate every trial). Trial 0 runs to completion and is the
reference; every later trial is sent SIGKILL at a seeded random moment: one in five anywhere
from its start (often while the log is being created), the others a random fraction of a write
cycle after a random number of commits, so that the kills land mid-run whatever the speed. Each training process
appends the committed snapshot count to ``<trial>.commits`` right after each commit is written, so
the last line is a lower bound of what the log must hold. A JSON summary goes to stdout.

Before forking, this process runs one single-threaded training step (so that every child does not
pay torch's lazy initialisation again) but never starts a thread: no multi-threaded torch, no
Recorder, no zarr I/O. Forked children must not inherit thread pools or event loops.
"""

from __future__ import annotations

import json
import os
import random
import signal
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch
import torch.nn.functional as F

import filterscope as fs
from filterscope.log.store import PendingWrites
from log_helpers.tiny import TinyCNN, digits

STEPS = 30
SNAPSHOT_EVERY = 2


def train(path: Path, commits: Path) -> None:
    """One deterministic recorded training run (in a forked child)."""
    original = PendingWrites.run
    fd = os.open(commits, os.O_WRONLY | os.O_CREAT | os.O_APPEND)

    def run(self: PendingWrites) -> None:
        original(self)
        os.write(fd, f"{self.counts.get('snapshot', 0)}\n".encode())

    PendingWrites.run = run  # type: ignore[method-assign]
    torch.manual_seed(0)
    model = TinyCNN()
    x, y = digits(0, 400)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    rec = fs.Recorder(
        model,
        path,
        eval_sets={"val": digits(400, 500)},
        snapshot_every=SNAPSHOT_EVERY,
        optimizer=opt,
    )
    for step in range(STEPS):
        xb, yb = x[(step % 8) * 50 :][:50], y[(step % 8) * 50 :][:50]
        opt.zero_grad()
        out = model(xb)
        loss = F.cross_entropy(out, yb)
        loss.backward()
        rec.step(loss, out, yb)
        opt.step()
    rec.close()


def _reported(commits: Path) -> int:
    lines = commits.read_text().split() if commits.exists() else []
    return int(lines[-1]) if lines else 0


def run_trial(
    workdir: Path, trial: int, after_commits: int | None, delay: float | None
) -> dict[str, object]:
    """Run one training process; kill it ``delay`` seconds after it reported ``after_commits``
    commits (or after its start when None); never kill it when ``delay`` is None."""
    path = workdir / f"run{trial}"
    commits = workdir / f"run{trial}.commits"
    start = time.perf_counter()
    pid = os.fork()
    if pid == 0:  # the training process
        code = 0
        try:
            train(path, commits)
        except BaseException:
            code = 1
        os._exit(code)
    if delay is not None:
        if after_commits is not None:
            while _reported(commits) < after_commits and os.waitpid(pid, os.WNOHANG) == (0, 0):
                time.sleep(0.002)
        time.sleep(delay)
        os.kill(pid, signal.SIGKILL)
    _, status = os.waitpid(pid, 0)
    lines = commits.read_text().split() if commits.exists() else []
    return {
        "path": str(path),
        "after_commits": after_commits,
        "delay": delay,
        "seconds": time.perf_counter() - start,
        "killed": os.WIFSIGNALED(status),
        "exit": os.WEXITSTATUS(status) if os.WIFEXITED(status) else None,
        "reported": int(lines[-1]) if lines else None,
    }


def main() -> None:
    workdir, trials, seed = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    torch.set_num_threads(1)
    warm = TinyCNN()
    x, y = digits(0, 50)
    opt = torch.optim.SGD(warm.parameters(), lr=0.1, momentum=0.9)
    F.cross_entropy(warm(x), y).backward()
    opt.step()
    rng = random.Random(seed)
    reference = run_trial(workdir, 0, None, None)
    results = [reference]
    for trial in range(1, trials + 1):
        if trial % 5 == 1:
            # Anywhere from the start: often while the log is being created.
            results.append(run_trial(workdir, trial, None, rng.uniform(0.0, 0.6)))
        else:
            # Mid-run, at a random point of the write cycle after a random commit.
            target = rng.randint(1, STEPS // SNAPSHOT_EVERY - 1)
            results.append(run_trial(workdir, trial, target, rng.uniform(0.0, 0.08)))
    print(json.dumps(results))


if __name__ == "__main__":
    main()
