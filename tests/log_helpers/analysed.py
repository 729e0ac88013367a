"""A LeNet-5 run recorded with the GMM analysis at every snapshot (shared by several tests)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

import filterscope as fs
from filterscope.data import digits
from filterscope.models import LeNet5

#: The analysis every snapshot runs (small: 32 probe samples, K up to 3).
ANALYZE_KWARGS = {"n_samples": 32, "k_range": (1, 3), "progress": False}


def record_analysed_lenet(
    path: Path, x: torch.Tensor, y: torch.Tensor, extra_eval_sets: dict[str, Any] | None = None
) -> tuple[torch.nn.Module, torch.Tensor, torch.Tensor]:
    """Train LeNet-5 on ``(x, y)`` for 9 full-batch Adam steps, recording to ``path`` with a
    snapshot every 4 steps, the first 40 digits test images as ``val`` (plus
    ``extra_eval_sets``) and the analysis of those 40 images at every snapshot.

    Returns the trained model and the ``val`` images and labels. The caller seeds torch.
    """
    val = digits("test")
    val_x, val_y = val.x[:40], val.y[:40]
    net = LeNet5()
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    with fs.Recorder(
        net,
        path,
        eval_sets={"val": (val_x, val_y), **(extra_eval_sets or {})},
        snapshot_every=4,
        optimizer=opt,
        analyze_every=1,
        analyze_data=(val_x, val_y),
        analyze_kwargs=dict(ANALYZE_KWARGS),
    ) as rec:
        for _ in range(9):
            opt.zero_grad()
            out = net(x)
            loss = F.cross_entropy(out, y)
            loss.backward()
            rec.step(loss, out, y)
            opt.step()
    return net, val_x, val_y
