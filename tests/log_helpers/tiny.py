"""A tiny CNN with batch norm and dropout, and the 8×8 digits, for fast recorder tests."""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits
from torch import nn


class TinyCNN(nn.Module):
    """conv1 → bn1 → pool → layer1.0 (conv) → layer1.1 (conv) → dropout → fc, on 8×8 inputs.

    Module names give the hierarchy stage ``layer1`` with blocks ``layer1.0`` and ``layer1.1``.
    """

    def __init__(self, dropout: float = 0.2, norm: bool = True) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 4, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(4) if norm else nn.Identity()
        self.layer1 = nn.Sequential(nn.Conv2d(4, 6, 3, padding=1), nn.Conv2d(6, 6, 1))
        self.drop = nn.Dropout(dropout)
        self.fc = nn.Linear(6 * 4 * 4, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(F.relu(self.bn1(self.conv1(x))), 2)
        x = F.relu(self.layer1(x))
        return self.fc(self.drop(x.flatten(1)))


@functools.cache
def _digits() -> tuple[np.ndarray, np.ndarray]:
    data = load_digits()
    x = (data.images / 16.0).astype(np.float32)[:, None]
    return x, data.target.astype(np.int64)


def digits(start: int, stop: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Samples ``start:stop`` of scikit-learn's digits as ``(x (N, 1, 8, 8), y)`` tensors."""
    x, y = _digits()
    return torch.from_numpy(x[start:stop].copy()), torch.from_numpy(y[start:stop].copy())


def record_resumable_run(
    path: Any, steps: int, weights: Any, *, mode: str | None = None, n_samples: int = 48
) -> None:
    """Train a tiny conv net for ``steps`` steps into a log at ``path``, saving its weights.

    With ``mode="a"`` the net starts from ``weights`` and the log is resumed: a run that goes on,
    as a live index or ``index_of`` sees it grow.
    """
    import filterscope as fs

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 36, 3))
    if mode == "a":
        model.load_state_dict(torch.load(weights, weights_only=True))
    x = torch.randn(n_samples, 1, 8, 8)
    y = torch.arange(n_samples) % 3
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with fs.Recorder(
        model, path, eval_sets={"val": (x, y)}, snapshot_every=2, optimizer=opt, mode=mode
    ) as rec:
        for _ in range(steps):
            opt.zero_grad()
            loss = nn.functional.cross_entropy(model(x), y)
            loss.backward()
            rec.step(loss)
            opt.step()
    torch.save(model.state_dict(), weights)
