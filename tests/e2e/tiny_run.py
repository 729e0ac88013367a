"""A really trained, really recorded tiny run: the log the view tests draw.

A small CNN learns scikit-learn's 8×8 digits for a few seconds with SGD and a step learning-rate
schedule, under :class:`filterscope.Recorder` with two eval sets (``val``, ``test``), and the
log is read back with :func:`filterscope.open_log`. Used by the view unit tests and, from the
pytest process, by the end-to-end tests (the notebooks only open the log it wrote).
"""

from __future__ import annotations

from pathlib import Path

import torch
import xarray as xr
from torch import nn

import filterscope as fs
from filterscope.data import digits
from filterscope.models import SimpleCNN


def record_tiny_run(
    path: str | Path,
    *,
    epochs: int = 10,
    batch_size: int = 32,
    snapshot_every: int = 10,
    seed: int = 0,
) -> xr.Dataset:
    """Train and record for a few seconds into ``path``; return the log opened lazily."""
    torch.manual_seed(seed)
    train, val, test = (digits(split, size=8, seed=seed) for split in ("train", "val", "test"))
    model = SimpleCNN(width=4)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.2, momentum=0.9)
    schedule = torch.optim.lr_scheduler.StepLR(optimizer, step_size=4, gamma=0.3)
    shuffle = torch.Generator().manual_seed(seed)
    steps_per_epoch = -(-len(train) // batch_size)
    with fs.Recorder(
        model,
        path,
        eval_sets={"val": val, "test": test},
        snapshot_every=snapshot_every,
        optimizer=optimizer,
        steps_per_epoch=steps_per_epoch,
    ) as recorder:
        for _ in range(epochs):
            for batch in torch.randperm(len(train), generator=shuffle).split(batch_size):
                x, y = train.x[batch], train.y[batch]
                optimizer.zero_grad()
                output = model(x)
                loss = nn.functional.cross_entropy(output, y)
                loss.backward()
                recorder.step(loss, output, y)
                optimizer.step()
            schedule.step()
    return fs.open_log(path)
