"""Nothing silently wrong: the Recorder refuses, warns or records honestly where it used to guess.

Diverged models, resumes with other data or settings, unclosed recorders, misplaced ``step()``
calls and unusable arguments each give a clear error or warning and a log that does not
contradict itself.
"""

from __future__ import annotations

import gc
import inspect
import json
import subprocess
import sys
import textwrap
import warnings
import weakref
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from log_helpers.tiny import TinyCNN, digits
from torch import nn
from torch.utils.data import Dataset

import filterscope as fs
from filterscope.errors import (
    InvalidDataError,
    InvalidModelError,
    InvalidParameterError,
    LogExistsError,
)
from filterscope.log.store import LogStore, PendingWrites

TESTS = Path(__file__).parent


def _train_steps(rec: fs.Recorder, model: nn.Module, n: int, lr: float = 0.05) -> None:
    """``n`` correct training steps: backward, step(), optimizer step."""
    x, y = digits(0, 40)
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    for _ in range(n):
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        rec.step(loss)
        opt.step()


# ------------------------------------------------------------------ A: diverged models


class _PartlyNaN(nn.Module):
    """A 3-class linear model whose output is NaN (or Inf) for the samples flagged in ``x[:, 0]``."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.fc(x)
        out = torch.where(x[:, :1] > 1.5, torch.full_like(out, torch.nan), out)
        return torch.where(x[:, :1] < -1.5, out.clamp(max=0) + torch.tensor([torch.inf, 0, 0]), out)


def test_nan_outputs_are_recorded_as_wrong_with_one_warning(tmp_path) -> None:
    torch.manual_seed(0)
    x = torch.randn(12, 4).clamp(-1, 1)
    y = torch.arange(12) % 3
    x[[1, 5, 7], 0] = 2.0  # NaN logits
    x[[2], 0] = -2.0  # one +Inf logit
    model = _PartlyNaN()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with fs.Recorder(
            model, tmp_path / "run", eval_sets={"val": (x, y)}, snapshot_every=1
        ) as rec:
            for _ in range(3):
                F.cross_entropy(model(x[:1]), y[:1]).backward()
                rec.step(1.0)
    about = [w for w in caught if "not finite" in str(w.message)]
    assert len(about) == 1, about  # once per set, not at every snapshot
    assert issubclass(about[0].category, RuntimeWarning)
    about = [str(about[0].message)]
    assert "'val'" in about[0] and "snapshot 0 (step 0)" in about[0] and "4 of 12" in about[0]
    assert "not be warned again" in about[0]

    log = fs.open_log(tmp_path / "run").compute()
    bad = np.zeros(12, dtype=bool)
    bad[[1, 2, 5, 7]] = True
    for s in range(log.sizes["snapshot"]):
        snap = log.isel(snapshot=s)
        assert (snap.pred.values[bad] == -1).all()
        assert not snap.correct.values[bad].any()
        for name in ("p_true", "margin", "sample_loss"):
            assert np.isnan(snap[name].values[bad]).all(), name
            assert np.isfinite(snap[name].values[~bad]).all(), name
        with torch.no_grad():
            good = model(x[~bad])
        np.testing.assert_array_equal(snap.pred.values[~bad], good.argmax(1).numpy())
        expected_error = 1 - (good.argmax(1) == y[~bad]).sum().item() / 12
        assert float(snap.val_error) == pytest.approx(expected_error, abs=1e-6)
        assert np.isnan(float(snap.val_loss))  # a mean over samples some of which have no loss


def test_a_fully_diverged_model_scores_error_one(tmp_path) -> None:
    model = nn.Linear(4, 3)
    with torch.no_grad():
        model.weight.fill_(torch.nan)
    x, y = torch.randn(9, 4), torch.arange(9) % 3
    with (
        pytest.warns(RuntimeWarning, match=r"'val'.*9 of 9"),
        fs.Recorder(model, tmp_path / "run", eval_sets={"val": (x, y)}, snapshot_every=1) as rec,
    ):
        model.weight.grad = torch.ones_like(model.weight)
        rec.step(1.0)
    log = fs.open_log(tmp_path / "run")
    assert float(log.val_error[0]) == 1.0  # was 0.667: argmax of NaN is class 0
    assert (log.pred[0] == -1).all() and np.isnan(float(log.val_loss[0]))


# ------------------------------------------------------------------ B: resuming


def _record(path: Path, eval_sets, mode=None, **kwargs) -> None:
    model = TinyCNN()
    with fs.Recorder(model, path, eval_sets=eval_sets, mode=mode, **kwargs) as rec:
        _train_steps(rec, model, 1)


class _WithIds(Dataset):
    def __init__(self, x: torch.Tensor, y: torch.Tensor, ids: np.ndarray) -> None:
        self.x, self.targets, self.sample_ids = x, y, ids

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.x[i], self.targets[i]


def test_resume_refuses_other_labels(tmp_path) -> None:
    x, y = digits(300, 360)
    _record(tmp_path / "run", {"val": (x, y)})
    other = y.clone()
    other[[3, 10]] = (other[[3, 10]] + 1) % 10
    with pytest.raises(InvalidDataError, match=r"'val'.*labels.*2 of 60"):
        _record(tmp_path / "run", {"val": (x, other)}, mode="a")
    _record(tmp_path / "run", {"val": (x, y)}, mode="a")  # the same data resumes
    assert fs.open_log(tmp_path / "run").sizes["step"] == 2


def test_resume_refuses_other_sample_ids(tmp_path) -> None:
    x, y = digits(300, 340)
    ids = np.arange(100, 140)
    _record(tmp_path / "run", {"val": _WithIds(x, y, ids)})
    with pytest.raises(InvalidDataError, match=r"'val'.*sample ids"):
        _record(tmp_path / "run", {"val": _WithIds(x, y, ids[::-1].copy())}, mode="a")
    _record(tmp_path / "run", {"val": _WithIds(x, y, ids)}, mode="a")


def test_resume_of_a_log_without_fingerprints_compares_the_stored_arrays(tmp_path) -> None:
    # Logs written before the fingerprints existed have no such attribute.
    x, y = digits(300, 360)
    _record(tmp_path / "run", {"val": (x, y), "test": digits(400, 420)})
    meta_path = tmp_path / "run" / "zarr.json"
    meta = json.loads(meta_path.read_text())
    assert meta["attributes"].pop("eval_fingerprints", None) is not None
    meta_path.write_text(json.dumps(meta))
    other = y.clone()
    other[0] = (other[0] + 1) % 10
    with pytest.raises(InvalidDataError, match=r"'val'.*labels.*1 of 60"):
        _record(tmp_path / "run", {"val": (x, other), "test": digits(400, 420)}, mode="a")
    _record(tmp_path / "run", {"val": (x, y), "test": digits(400, 420)}, mode="a")


def test_resume_refuses_other_class_names(tmp_path) -> None:
    names = [f"digit {i}" for i in range(10)]
    _record(tmp_path / "run", digits(300, 330), class_names=names)
    renamed = [*names[:9], "nine"]
    with pytest.raises(InvalidDataError, match=r"class names.*'digit 9'.*'nine'"):
        _record(tmp_path / "run", digits(300, 330), mode="a", class_names=renamed)
    _record(tmp_path / "run", digits(300, 330), mode="a", class_names=names)


def test_resume_refuses_another_snapshot_every(tmp_path) -> None:
    _record(tmp_path / "run", digits(300, 330), snapshot_every=5)
    with pytest.raises(InvalidParameterError, match=r"snapshot_every=5"):
        _record(tmp_path / "run", digits(300, 330), mode="a", snapshot_every=10)
    _record(tmp_path / "run", digits(300, 330), mode="a", snapshot_every=5)
    assert fs.open_log(tmp_path / "run").sizes["step"] == 2


# ------------------------------------------------------------------ C: unclosed recorders


def test_a_script_that_never_closes_keeps_all_its_steps(tmp_path) -> None:
    script = textwrap.dedent(
        f"""
        import sys
        sys.path.insert(0, {str(TESTS)!r})
        import torch, torch.nn.functional as F
        import filterscope as fs
        from log_helpers.tiny import TinyCNN, digits

        torch.manual_seed(0)
        model = TinyCNN()
        x, y = digits(0, 40)
        opt = torch.optim.SGD(model.parameters(), lr=0.05)
        rec = fs.Recorder(model, sys.argv[1], eval_sets=digits(300, 330), snapshot_every=50)
        for _ in range(30):
            opt.zero_grad()
            loss = F.cross_entropy(model(x), y)
            loss.backward()
            rec.step(loss)
            opt.step()
        if sys.argv[2] == "raise":
            raise SystemExit("the script fails before close()")
        """
    )
    for how in ("end", "raise"):
        path = tmp_path / how
        done = subprocess.run(
            [sys.executable, "-c", script, str(path), how],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == (0 if how == "end" else 1), done.stderr
        assert "was not closed" in done.stderr
        log = fs.open_log(path)
        assert log.sizes["step"] == 30, how
        assert log.sizes["snapshot"] == 1  # no final snapshot: that would run the model at exit
        assert np.isfinite(log.loss).all()
        with fs.Recorder(TinyCNN(), path, eval_sets=digits(300, 330), mode="a", snapshot_every=50):
            pass  # the lock was released


def test_a_failed_notebook_cell_releases_the_log_when_the_recorder_is_collected(tmp_path) -> None:
    cell = textwrap.dedent(
        """
        rec = fs.Recorder(model, path, eval_sets=digits(300, 330), snapshot_every=4)
        rec.attach(opt)
        criterion = rec.track(nn.CrossEntropyLoss())
        for i in range(6):
            opt.zero_grad()
            criterion(model(x), y).backward()
            opt.step()
            if i == 5:
                raise KeyError("a bug in the cell")
        """
    )
    torch.manual_seed(0)
    model = TinyCNN()
    x, y = digits(0, 40)
    # Like IPython: the cell runs in the user namespace; the optimizer and the tracked loss
    # outlive the recorder there.
    namespace = {
        "fs": fs,
        "nn": nn,
        "digits": digits,
        "model": model,
        "path": tmp_path / "run",
        "opt": torch.optim.SGD(model.parameters(), lr=0.05),
        "x": x,
        "y": y,
    }
    with pytest.raises(KeyError, match="a bug in the cell"):
        exec(cell, namespace)
    alive = weakref.ref(namespace["rec"])
    with pytest.warns(RuntimeWarning, match="was not closed.*the log has 6 steps"):
        del namespace["rec"]
        gc.collect()
    assert alive() is None  # neither the optimizer hook nor the tracked loss keeps it
    namespace["opt"].step()  # the optimizer's hook is gone, not failing

    with fs.Recorder(
        model, tmp_path / "run", eval_sets=digits(300, 330), snapshot_every=4, mode="a"
    ) as rec:
        assert rec.step_ == 6
    log = fs.open_log(tmp_path / "run")
    np.testing.assert_array_equal(log.step, np.arange(6))
    assert np.isfinite(log.loss).all()


@pytest.mark.filterwarnings("ignore:at snapshot 0:RuntimeWarning")  # step() without backward
def test_a_recorder_watching_for_its_optimizer_is_collected(tmp_path) -> None:
    rec = fs.Recorder(TinyCNN(), tmp_path / "run", snapshot_every=10)
    rec.step(1.0)
    alive = weakref.ref(rec)
    with pytest.warns(RuntimeWarning, match="was not closed"):
        del rec
        gc.collect()
    assert alive() is None
    assert fs.open_log(tmp_path / "run").sizes["step"] == 1
    LogStore.open(tmp_path / "run", "a").close()  # unlocked


@pytest.mark.filterwarnings("ignore:at snapshot 0:RuntimeWarning")  # step() without backward
def test_a_closed_recorder_gives_no_warning_when_collected(tmp_path) -> None:
    rec = fs.Recorder(TinyCNN(), tmp_path / "run", snapshot_every=10)
    rec.step(1.0)
    rec.close()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        del rec
        gc.collect()


def test_a_live_recorder_in_this_process_is_named_when_the_log_is_busy(tmp_path) -> None:
    rec = fs.Recorder(TinyCNN(), tmp_path / "run", snapshot_every=10)
    line = inspect.currentframe().f_lineno - 1
    with pytest.raises(LogExistsError, match=r"Recorder") as info:
        fs.Recorder(TinyCNN(), tmp_path / "run", mode="a")
    assert f"{Path(__file__).name}:{line}" in str(info.value)
    assert "close()" in str(info.value)
    rec.close()
    fs.Recorder(TinyCNN(), tmp_path / "run", mode="a", snapshot_every=10).close()


def test_a_failed_write_is_not_committed_by_close(tmp_path, monkeypatch) -> None:
    # A snapshot whose files could not be written must not appear committed afterwards.
    model = TinyCNN()
    rec = fs.Recorder(model, tmp_path / "run", eval_sets=digits(300, 330), snapshot_every=2)
    _train_steps(rec, model, 3)
    rec.flush()
    assert fs.open_log(tmp_path / "run").sizes["snapshot"] == 2
    original, failed = PendingWrites.run, []

    def fail_once(self) -> None:  # a transient failure: the next write would succeed
        if not failed:
            failed.append(True)
            raise OSError("disk full")
        original(self)

    monkeypatch.setattr(PendingWrites, "run", fail_once)
    _train_steps(rec, model, 2)  # the snapshot at step 4 fails on the writer thread
    with pytest.raises(OSError, match="disk full"):
        rec.close()
    assert failed
    log = fs.open_log(tmp_path / "run").compute()
    assert log.sizes["snapshot"] == 2 and log.sizes["step"] == 3
    assert (log.pred >= 0).all()
    LogStore.open(tmp_path / "run", "a").close()  # unlocked


# ------------------------------------------------------------------ D: smaller items


def test_step_before_backward_warns_once(tmp_path) -> None:
    x, y = digits(0, 40)
    with pytest.warns(RuntimeWarning, match=r"after loss.backward\(\)") as caught:
        with fs.Recorder(TinyCNN(), tmp_path / "none", snapshot_every=2) as rec:
            for _ in range(5):  # no gradient at all; snapshots at steps 0, 2 and 4
                rec.step(1.0)
    assert sum("backward" in str(w.message) for w in caught) == 1  # once, not per snapshot

    model = TinyCNN()
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    F.cross_entropy(model(x), y).backward()  # gradients exist from the start
    with pytest.warns(RuntimeWarning, match=r"all zero.*after loss.backward\(\)"):
        with fs.Recorder(model, tmp_path / "zero", snapshot_every=2) as rec:
            for _ in range(3):
                opt.zero_grad(set_to_none=False)
                loss = F.cross_entropy(model(x), y)
                rec.step(loss)  # too early: backward() comes after
                loss.backward()
                opt.step()


def test_correct_use_gives_no_warning(tmp_path) -> None:
    model = TinyCNN()
    x, y = digits(0, 40)
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with fs.Recorder(model, tmp_path / "run", snapshot_every=2, optimizer=opt) as rec:
            for _ in range(5):
                opt.zero_grad()  # set_to_none: the final snapshot sees no gradients
                loss = F.cross_entropy(model(x), y)
                loss.backward()
                rec.step(loss)
                opt.step()
            opt.zero_grad()
            rec.snapshot()  # outside the step schedule, after zero_grad: not a misuse


@pytest.mark.parametrize(
    "loss",
    ["0.5", b"1", complex(1, 0), torch.tensor(1 + 0j), True, np.bool_(True), torch.tensor(True)],
)
def test_losses_that_are_not_real_numbers_are_refused(tmp_path, loss) -> None:
    with fs.Recorder(TinyCNN(), tmp_path / "run", snapshot_every=10) as rec:
        with pytest.raises(InvalidDataError, match="real scalar"):
            rec.step(loss)


@pytest.mark.filterwarnings("ignore:at snapshot 0:RuntimeWarning")  # step() without backward
def test_real_losses_of_any_kind_are_accepted(tmp_path) -> None:
    values = [np.float32(0.5), np.int64(2), 3, 1.5, Fraction(1, 4), torch.tensor([2.5])]
    with fs.Recorder(TinyCNN(), tmp_path / "run", snapshot_every=10) as rec:
        for value in values:
            rec.step(value)
    np.testing.assert_allclose(fs.open_log(tmp_path / "run").loss, [0.5, 2, 3, 1.5, 0.25, 2.5])


@pytest.mark.parametrize("names", ["abcdefghij", 10, [str(i) for i in range(9)] + [9]])
def test_class_names_must_be_a_sequence_of_strings(tmp_path, names) -> None:
    with pytest.raises(InvalidParameterError, match="class_names"):
        fs.Recorder(TinyCNN(), tmp_path / "run", eval_sets=digits(0, 10), class_names=names)
    assert not (tmp_path / "run").exists()


def test_class_names_may_be_a_tuple_or_an_array(tmp_path) -> None:
    names = np.array([f"c{i}" for i in range(10)])
    with fs.Recorder(TinyCNN(), tmp_path / "run", eval_sets=digits(0, 10), class_names=names):
        pass
    assert list(fs.open_log(tmp_path / "run").class_name.values) == list(names)


def test_a_model_on_the_meta_device_is_refused_before_anything_is_written(tmp_path) -> None:
    with torch.device("meta"):
        model = TinyCNN()
    with pytest.raises(InvalidModelError, match=r"meta device.*to_empty"):
        fs.Recorder(model, tmp_path / "run", eval_sets=digits(0, 10))
    assert list(tmp_path.iterdir()) == []
