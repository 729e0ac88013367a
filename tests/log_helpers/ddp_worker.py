"""One rank of a 2-process DDP training recorded by filterscope (gloo, CPU).

Usage: ``python ddp_worker.py RANK WORLD RENDEZVOUS_FILE LOG_PATH``

Every global batch of 40 samples is split between the ranks (rank r takes samples r, r + world,
...); DDP averages the gradients, so the updates equal single-process training on the whole
batch. tests/test_log_ddp.py runs the single-process twin and compares the logs.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel

import filterscope as fs
from log_helpers.tiny import TinyCNN, digits

STEPS = 7
BATCH = 40
EVAL = (300, 401)  # 101 samples: the ranks get 51 and 50


def batches():
    x, y = digits(0, 280)
    for step in range(STEPS):
        yield x[step * BATCH : (step + 1) * BATCH], y[step * BATCH : (step + 1) * BATCH]


def record(model: torch.nn.Module, path: str, rank: int, world: int) -> None:
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    rec = fs.Recorder(
        model, path, eval_sets={"val": digits(*EVAL)}, snapshot_every=3, optimizer=opt
    )
    for x, y in batches():
        x, y = x[rank::world], y[rank::world]
        opt.zero_grad()
        out = model(x)
        loss = F.cross_entropy(out, y)
        loss.backward()
        rec.step(loss, out, y)
        opt.step()
    rec.close()


def main() -> None:
    rank, world, rendezvous, path = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{rendezvous}", rank=rank, world_size=world)
    try:
        torch.manual_seed(0)
        model = DistributedDataParallel(TinyCNN(dropout=0.0, norm=False))
        record(model, path, rank, world)
    finally:
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
