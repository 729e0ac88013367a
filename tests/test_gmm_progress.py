"""analyze's progress display, and what an interrupt leaves behind."""

from __future__ import annotations

import importlib
import io
import sys

import pytest
import torch
from torch import nn

import filterscope as fs

# The module, not the function of the same name that filterscope.gmm exports.
analyze_module = importlib.import_module("filterscope.gmm.analyze")


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 3, 3), nn.ReLU(), nn.Conv2d(3, 4, 3), nn.Flatten(), nn.LazyLinear(2)
    )


def _hooks(model: nn.Module) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())


def test_an_interrupt_during_extraction_leaves_the_model_as_it_was(monkeypatch) -> None:
    model = _model()
    x = torch.randn(30, 1, 10, 10)
    model(x[:2])
    model.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    calls = []

    def interrupt(self, name: str) -> None:
        calls.append(name)
        raise KeyboardInterrupt

    monkeypatch.setattr(analyze_module._Bar, "layer_done", interrupt)
    with pytest.raises(KeyboardInterrupt):
        fs.analyze(model, x, n_samples=20, progress=True)
    assert calls  # the interrupt came in the middle of the extraction
    assert _hooks(model) == 0
    assert model.training and all(m.training for m in model.modules())
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    # and the model analyses normally afterwards
    monkeypatch.undo()
    result = fs.analyze(model, x, n_samples=20, progress=False)
    assert len(result.table) == 7


def test_progress_is_shown_on_a_terminal_and_hidden_in_a_pipe(monkeypatch) -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.delitem(sys.modules, "IPython", raising=False)
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    assert analyze_module._progress_bar(None, _model(), None) is None
    term = Terminal()
    monkeypatch.setattr(sys, "stderr", term)
    bar = analyze_module._progress_bar(None, _model(), None)
    assert bar is not None
    bar.layer_done("0")
    bar.close()
    assert "extract" in term.getvalue()
    assert analyze_module._progress_bar(False, _model(), None) is None
