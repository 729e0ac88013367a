"""A live dashboard in a real JupyterLab: while a notebook cell trains (blocking the kernel's
main thread), ModelInfo in the page grows commit by commit, sent from the live thread."""

from __future__ import annotations

from pathlib import Path

import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.xdist_group("jupyterlab")]

SETUP = """\
import time
import torch
from torch import nn
import filterscope as fs

torch.manual_seed(0)
model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 36, 3))
x, y = torch.randn(48, 1, 8, 8), torch.arange(48) % 3
opt = torch.optim.SGD(model.parameters(), lr=0.1)


def train(more, mode=None, pause=0.0):
    with fs.Recorder(
        model, "live_run", eval_sets={"val": (x, y)}, snapshot_every=4, optimizer=opt, mode=mode
    ) as rec:
        step = 0
        while more(step):
            opt.zero_grad()
            loss = nn.functional.cross_entropy(model(x), y)
            loss.backward()
            rec.step(loss)
            opt.step()
            step += 1
            time.sleep(pause)
    return step


train(lambda step: step < 8)
log = fs.open_log("live_run")
"""

BOARD = 'board = fs.dashboard(log, views=["model_info"], live=True, interval=0.2)\nboard'

# Trains in the kernel's main thread until the view was sent five lengths, and at least 8 s, so
# the page has time to show the updates the live thread sends while this cell runs.
TRAIN = """\
seen = set()
board.views["model_info"].observe(
    lambda change: seen.add(len(change.new["snapshot_step"])), "series"
)
start = time.monotonic()
steps = train(
    lambda step: time.monotonic() - start < 8 or (len(seen) < 5 and step < 20_000),
    mode="a",
    pause=0.01,
)
print(f"TRAINED steps={steps} lengths={len(seen)}")
"""


def test_a_live_dashboard_grows_while_a_cell_trains(jupyter_lab):
    jupyter_lab.write_notebook("live.ipynb", [SETUP, BOARD, TRAIN])

    result = jupyter_lab.drive("live", "live.ipynb", timeout=240)

    during = result["during"]
    assert during, "the page never showed the training-loss line"
    # The page's run grew while the training cell held the kernel: the updates came from the
    # live thread, not from a cell run after training.
    assert max(during) > during[0], during
    assert len(set(during)) >= 2, during
    assert result["after"] >= max(during)
    for shot in result["screenshots"]:
        assert Path(shot).stat().st_size > 5_000
