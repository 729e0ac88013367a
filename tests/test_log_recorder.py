"""The Recorder end to end: schema, values against independent oracles, and bad input."""

from __future__ import annotations

import copy
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import xarray as xr
from log_helpers.tiny import TinyCNN, digits
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import filterscope as fs
from filterscope.errors import InvalidDataError, InvalidModelError, LogExistsError
from filterscope.log.schema import FILTER_VARS, STATS, THRESHOLDS
from filterscope.log.store import PendingWrites

# Float comparisons against oracles: `make test` reruns these under other CPU kernels. Several
# tests log steps without backward() on purpose (the scalars are what they check); the warning
# that this gives is pinned in test_log_integrity.py.
pytestmark = [
    pytest.mark.numerics,
    pytest.mark.filterwarnings("ignore:.*step\\(\\) must be called after loss.backward"),
]

LAYERS = ["conv1", "bn1", "layer1.0", "layer1.1", "fc"]


def _train(
    path: Path | None,
    *,
    steps: int = 12,
    snapshot_every: int = 4,
    capture: bool = False,
    seed: int = 0,
    **recorder_kwargs,
):
    """Train TinyCNN on 300 digits (shuffled by the global RNG); optionally record and capture
    the model at every snapshot step as an oracle."""
    torch.manual_seed(seed)
    model = TinyCNN()
    x, y = digits(0, 300)
    train = DataLoader(TensorDataset(x, y), batch_size=50, shuffle=True)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    rec = None
    if path is not None:
        recorder_kwargs.setdefault(
            "eval_sets", {"val": DataLoader(TensorDataset(*digits(300, 420)), 64)}
        )
        rec = fs.Recorder(
            model, path, snapshot_every=snapshot_every, optimizer=opt, **recorder_kwargs
        )
    losses, captured, step = [], {}, 0
    while step < steps:
        for xb, yb in train:
            opt.zero_grad()
            out = model(xb)
            loss = F.cross_entropy(out, yb)
            loss.backward()
            if capture and step % snapshot_every == 0:
                captured[step] = (
                    copy.deepcopy(model),
                    {n: p.grad.clone() for n, p in model.named_parameters()},
                )
            if rec is not None:
                rec.step(loss, out, yb)
            opt.step()
            losses.append(loss.item())
            step += 1
            if step == steps:
                break
    if rec is not None:
        rec.close()
    if capture:
        captured[steps] = (
            copy.deepcopy(model),
            {n: p.grad.clone() for n, p in model.named_parameters()},
        )
    return model, losses, captured


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    path = tmp_path_factory.mktemp("rec") / "run"
    _, losses, captured = _train(path, capture=True, steps_per_epoch=6)
    return path, losses, captured


def test_log_follows_the_schema_contract(recorded) -> None:
    path, losses, _ = recorded
    log = fs.open_log(path)
    assert log.attrs["filterscope_format"] == 1
    assert log.attrs["eval_sets"] == ["val"] and log.attrs["eval_set"] == "val"
    assert dict(log.sizes) == {
        "step": 12,
        "snapshot": 4,
        "sample": 120,
        "class": 10,
        "layer": 5,
        "filter": 4 + 6 + 6 + 10,
        "stat": 12,
        "threshold": 56,
        # The 8 × 8 grayscale inputs' thumbnails (stored once, at creation).
        "thumb_y": 8,
        "thumb_x": 8,
        "thumb_channel": 1,
    }
    np.testing.assert_array_equal(log.step, np.arange(12))
    np.testing.assert_array_equal(log.step_epoch, np.arange(12) // 6)
    np.testing.assert_array_equal(log.snapshot_step, [0, 4, 8, 12])
    np.testing.assert_array_equal(log.snapshot_epoch, [0, 0, 1, 2])
    assert list(log.layer_name.values) == LAYERS
    assert list(log.layer_stage.values) == ["conv1", "bn1", "layer1", "layer1", "fc"]
    assert list(log.layer_block.values) == ["conv1", "bn1", "layer1.0", "layer1.1", "fc"]
    assert list(log.layer_kind.values) == ["Conv2d", "BatchNorm2d", "Conv2d", "Conv2d", "Linear"]
    assert log.layer_filters.values.tolist() == [4, 4, 6, 6, 10]
    assert log.layer_has_stats.values.tolist() == [True, False, True, True, True]
    assert log.filter_layer.values[[0, 4, 10, 16]].tolist() == [
        "conv1",
        "layer1.0",
        "layer1.1",
        "fc",
    ]
    assert log.filter_layer_index.values[[0, 4, 10, 16]].tolist() == [0, 2, 3, 4]
    assert log.filter_channel.values[[0, 3, 4, 25]].tolist() == [0, 3, 0, 9]
    assert list(log.stat.values) == list(STATS)
    np.testing.assert_array_equal(log.threshold, THRESHOLDS)
    assert list(log.class_name.values) == [str(i) for i in range(10)]
    np.testing.assert_array_equal(log.label, digits(300, 420)[1])
    np.testing.assert_array_equal(log.sample_id, np.arange(120))
    dtypes = {
        "loss": "float32",
        "lr": "float64",
        "train_error": "float32",
        "step_time": "float64",
        "val_loss": "float32",
        "val_error": "float32",
        "correct": "bool",
        "pred": "int32",
        "p_true": "float16",
        "margin": "float16",
        "sample_loss": "float32",
        "weight_stat": "float32",
        "grad_stat": "float32",
        "change_ratio": "float32",
        **dict.fromkeys(FILTER_VARS, "float32"),
        "thumbnail": "uint8",
    }
    assert set(log.data_vars) == set(dtypes)
    for name, dtype in dtypes.items():
        assert log[name].dtype == dtype, name
        assert log[name].chunks is not None, f"{name} is not lazy"
    assert log.correct.dims == ("snapshot", "sample")
    assert log.change_ratio.dims == ("snapshot", "layer", "threshold")
    assert np.isnan(log.weight_stat.sel(layer=1)).all()  # batch norm: listed, no statistics
    np.testing.assert_allclose(log.loss, losses, rtol=1e-6)
    assert np.isnan(log.step_time[0]) and (log.step_time[1:] > 0).all()


def _evaluate_oracle(model: nn.Module) -> dict[str, np.ndarray]:
    x, y = digits(300, 420)
    model.eval()
    with torch.no_grad():
        logits = model(x).double().numpy()
    y = y.numpy()
    shifted = logits - logits.max(1, keepdims=True)
    prob = np.exp(shifted) / np.exp(shifted).sum(1, keepdims=True)
    true = logits[np.arange(len(y)), y]
    others = np.where(np.eye(10, dtype=bool)[y], -np.inf, logits).max(1)
    return {
        "pred": logits.argmax(1),
        "correct": logits.argmax(1) == y,
        "p_true": prob[np.arange(len(y)), y],
        "margin": true - others,
        "sample_loss": -np.log(prob[np.arange(len(y)), y]),
    }


def test_snapshots_hold_the_model_as_it_was_at_that_step(recorded) -> None:
    path, _, captured = recorded
    log = fs.open_log(path).compute()
    previous = None
    for s, step in enumerate(log.snapshot_step.values.tolist()):
        model, grads = captured[step]
        oracle = _evaluate_oracle(model)
        snap = log.isel(snapshot=s)
        np.testing.assert_array_equal(snap.pred, oracle["pred"])
        np.testing.assert_array_equal(snap.correct, oracle["correct"])
        np.testing.assert_allclose(snap.p_true, oracle["p_true"], rtol=2e-3, atol=1e-4)
        np.testing.assert_allclose(snap.margin, oracle["margin"], rtol=2e-3, atol=1e-2)
        np.testing.assert_allclose(snap.sample_loss, oracle["sample_loss"], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(snap.val_loss, oracle["sample_loss"].mean(), rtol=1e-5)
        np.testing.assert_allclose(snap.val_error, 1 - oracle["correct"].mean(), atol=1e-6)
        w = model.fc.weight.detach().numpy().astype(np.float64)
        g = grads["fc.weight"].numpy().astype(np.float64)
        fc = snap.sel(layer=4)
        np.testing.assert_allclose(fc.weight_stat.sel(stat="l2"), np.linalg.norm(w), rtol=1e-5)
        np.testing.assert_allclose(fc.weight_stat.sel(stat="median"), np.median(w), rtol=1e-5)
        np.testing.assert_allclose(fc.grad_stat.sel(stat="l1"), np.abs(g).sum(), rtol=1e-5)
        np.testing.assert_allclose(fc.grad_stat.sel(stat="max"), g.max(), rtol=1e-6)
        conv = model.layer1[0].weight.detach().numpy().reshape(6, -1).astype(np.float64)
        cosine = snap.filter_cosine.values[4:10]
        if previous is None:
            assert np.isnan(cosine).all()
        else:
            before = previous.layer1[0].weight.detach().numpy().reshape(6, -1).astype(np.float64)
            expected = (
                (conv * before).sum(1)
                / np.linalg.norm(conv, axis=1)
                / np.linalg.norm(before, axis=1)
            )
            np.testing.assert_allclose(cosine, np.clip(expected, -1, 1), rtol=1e-5)
            np.testing.assert_allclose(
                snap.filter_l1.values[4:10], np.abs(conv - before).sum(1), rtol=1e-4
            )
        previous = model


def test_step_scalars(recorded, tmp_path) -> None:
    path, _, _ = recorded
    log = fs.open_log(path)
    np.testing.assert_array_equal(log.lr, np.full(12, 0.1))
    assert ((log.train_error >= 0) & (log.train_error <= 1)).all()
    # train_error is the misclassified fraction of the step's batch: check one step exactly.
    torch.manual_seed(0)
    model = TinyCNN()
    x, y = digits(0, 50)
    rec = fs.Recorder(model, tmp_path / "run", snapshot_every=100)
    out = model(x)
    rec.step(F.cross_entropy(out, y), out, y)
    rec.step(1.5)
    rec.close()
    log = fs.open_log(tmp_path / "run")
    assert float(log.train_error[0]) == pytest.approx((out.argmax(1) != y).float().mean().item())
    assert np.isnan(log.train_error[1]) and float(log.loss[1]) == 1.5
    assert "sample" not in log.dims and "val_loss" not in log


def test_recording_does_not_change_training(tmp_path) -> None:
    plain_model, plain, _ = _train(None, steps=15, snapshot_every=3)
    recorded_model, with_rec, _ = _train(
        tmp_path / "run",
        steps=15,
        snapshot_every=3,
        eval_sets={"val": DataLoader(TensorDataset(*digits(300, 420)), 64, shuffle=True)},
    )
    assert plain == with_rec  # bitwise: dropout masks and shuffling unaffected
    for a, b in zip(
        plain_model.state_dict().values(), recorded_model.state_dict().values(), strict=True
    ):
        assert torch.equal(a, b)  # batch-norm running statistics included


def test_each_module_keeps_its_own_training_flag(tmp_path) -> None:
    model = TinyCNN()
    model.train()
    model.bn1.eval()  # a frozen batch norm stays frozen
    x, y = digits(0, 40)
    with fs.Recorder(model, tmp_path / "run", eval_sets=(x, y), snapshot_every=1) as rec:
        rec.step(F.cross_entropy(model(x), y))
        assert model.training and model.fc.training and not model.bn1.training


def test_nan_and_inf_losses_are_recorded_with_a_warning(tmp_path) -> None:
    model = TinyCNN()
    rec = fs.Recorder(model, tmp_path / "run", snapshot_every=5)
    for loss in (1.0, 0.5, float("nan"), torch.tensor(float("inf"))):
        rec.step(loss)
    with pytest.warns(RuntimeWarning, match=r"NaN/Inf at step 2, 3"):
        rec.close()
    loss = fs.open_log(tmp_path / "run").loss.values
    assert loss[:2].tolist() == [1.0, 0.5] and np.isnan(loss[2]) and np.isinf(loss[3])


def test_attach_and_track_record_the_same_log_as_step(tmp_path) -> None:
    def run(path: Path, hooked: bool) -> None:
        torch.manual_seed(0)
        model = TinyCNN()
        x, y = digits(0, 200)
        opt = torch.optim.SGD(model.parameters(), lr=0.05)
        rec = fs.Recorder(model, path, eval_sets=digits(300, 360), snapshot_every=3, optimizer=opt)
        criterion = nn.CrossEntropyLoss()
        if hooked:
            criterion = rec.attach(opt).track(criterion)
        for i in range(8):
            xb, yb = x[i * 25 : (i + 1) * 25], y[i * 25 : (i + 1) * 25]
            opt.zero_grad()
            out = model(xb)
            loss = criterion(out, yb)
            loss.backward()
            if not hooked:
                rec.step(loss, out, yb)
            opt.step()
        rec.close()

    run(tmp_path / "manual", hooked=False)
    run(tmp_path / "hooked", hooked=True)
    manual = fs.open_log(tmp_path / "manual").drop_vars("step_time").compute()
    hooked = fs.open_log(tmp_path / "hooked").drop_vars("step_time").compute()
    xr.testing.assert_identical(manual.drop_attrs(), hooked.drop_attrs())
    assert manual.sizes["step"] == 8 and np.isfinite(manual.train_error).all()


def test_learning_rate_comes_from_the_optimizer_that_steps(tmp_path) -> None:
    model = TinyCNN()
    x, y = digits(0, 32)
    opt = torch.optim.SGD(model.parameters(), lr=0.2)
    other = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=9.0)
    schedule = torch.optim.lr_scheduler.StepLR(opt, step_size=2, gamma=0.5)
    with fs.Recorder(model, tmp_path / "run", snapshot_every=100) as rec:
        for _ in range(5):
            opt.zero_grad()
            F.cross_entropy(model(x), y).backward()
            rec.step(1.0)
            other.step()  # not the model's optimizer: ignored
            opt.step()
            schedule.step()
    lr = fs.open_log(tmp_path / "run").lr.values
    # Step 0 is logged before any optimizer step revealed which one trains the model.
    assert np.isnan(lr[0])
    np.testing.assert_allclose(lr[1:], [0.2, 0.1, 0.1, 0.05])


def test_resume_continues_steps_and_filter_changes(tmp_path) -> None:
    def run(path: Path, splits: list[int]) -> None:
        torch.manual_seed(0)
        model = TinyCNN(dropout=0.0)
        x, y = digits(0, 200)
        opt = torch.optim.SGD(model.parameters(), lr=0.05)
        step = 0
        for part, stop in enumerate(splits):
            mode = None if part == 0 else "a"
            with fs.Recorder(
                model, path, eval_sets=digits(300, 360), snapshot_every=5, mode=mode
            ) as rec:
                assert rec.step_ == step
                while step < stop:
                    xb, yb = x[(step % 8) * 25 :][:25], y[(step % 8) * 25 :][:25]
                    opt.zero_grad()
                    loss = F.cross_entropy(model(xb), yb)
                    loss.backward()
                    rec.step(loss)
                    opt.step()
                    step += 1

    run(tmp_path / "once", [20])
    run(tmp_path / "twice", [10, 20])
    once = fs.open_log(tmp_path / "once").compute()
    twice = fs.open_log(tmp_path / "twice").compute()
    np.testing.assert_array_equal(twice.step, np.arange(20))
    np.testing.assert_array_equal(twice.snapshot_step, once.snapshot_step)  # 0, 5, 10, 15, 20
    np.testing.assert_array_equal(twice.loss, once.loss)
    for name in ("weight_stat", *FILTER_VARS[:5], "filter_std"):
        xr.testing.assert_allclose(twice[name], once[name], rtol=1e-6)
    # The snapshot at step 10 closed the first run: its gradients are those of step 9, and its
    # evaluation ran before step 10's forward pass moved the batch-norm running statistics.
    keep = twice.snapshot_step != 10
    for name in ("grad_stat", "sample_loss"):
        xr.testing.assert_allclose(twice[name][keep], once[name][keep], rtol=1e-6)
    np.testing.assert_array_equal(twice.correct[keep], once.correct[keep])


def test_resume_refuses_a_different_model_or_eval_sets(tmp_path) -> None:
    with fs.Recorder(TinyCNN(), tmp_path / "run", eval_sets=digits(300, 360)) as rec:
        rec.step(1.0)
    other = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
    with pytest.raises(InvalidModelError, match="layers"):
        fs.Recorder(other, tmp_path / "run", eval_sets=digits(300, 360), mode="a")
    with pytest.raises(InvalidDataError, match="evaluation sets"):
        fs.Recorder(TinyCNN(), tmp_path / "run", eval_sets=digits(300, 350), mode="a")
    assert fs.open_log(tmp_path / "run").sizes["step"] == 1


def test_a_log_can_be_read_while_it_is_recorded(tmp_path) -> None:
    model = TinyCNN()
    x, y = digits(0, 50)
    rec = fs.Recorder(model, tmp_path / "run", eval_sets=digits(300, 340), snapshot_every=2)
    for _ in range(3):
        rec.step(F.cross_entropy(model(x), y))
    rec.flush()
    early = fs.open_log(tmp_path / "run")
    assert early.sizes["snapshot"] == 2 and early.sizes["step"] == 3
    for _ in range(3):
        rec.step(F.cross_entropy(model(x), y))
    rec.flush()
    assert fs.open_log(tmp_path / "run").sizes["snapshot"] == 3
    assert early.correct.shape == (2, 40)
    rec.close()
    assert fs.open_log(tmp_path / "run").sizes["snapshot"] == 4


def test_several_eval_sets(tmp_path) -> None:
    model = TinyCNN()
    names = [f"digit {i}" for i in range(10)]
    sets = {"val": digits(300, 360), "test": DataLoader(TensorDataset(*digits(400, 425)), 10)}
    with fs.Recorder(
        model, tmp_path / "run", eval_sets=sets, class_names=names, snapshot_every=1
    ) as rec:
        rec.step(1.0)
    val = fs.open_log(tmp_path / "run")
    test = fs.open_log(tmp_path / "run", eval_set="test")
    assert val.sizes["sample"] == 60 and test.sizes["sample"] == 25
    assert test.attrs["eval_set"] == "test" and "test_loss" in val and "val_loss" in test
    np.testing.assert_array_equal(test.label, digits(400, 425)[1])
    np.testing.assert_allclose(test.test_error, 1 - test.correct.mean("sample"), atol=1e-6)
    assert list(val.class_name.values) == names
    with pytest.raises(ValueError, match="no evaluation set 'train'"):
        fs.open_log(tmp_path / "run", eval_set="train")


def test_hierarchy_override(tmp_path) -> None:
    def tree(name: str) -> tuple[str, str]:
        return ("features", name) if name != "fc" else ("head", "head")

    with fs.Recorder(TinyCNN(), tmp_path / "call", hierarchy=tree) as rec:
        rec.step(1.0)
    log = fs.open_log(tmp_path / "call")
    assert list(log.layer_stage.values) == ["features"] * 4 + ["head"]
    with fs.Recorder(TinyCNN(), tmp_path / "map", hierarchy={"fc": ("head", "fc")}) as rec:
        rec.step(1.0)
    assert fs.open_log(tmp_path / "map").layer_stage.values[-2:].tolist() == ["layer1", "head"]


def test_analysis_group(tmp_path) -> None:
    seen = []

    def conv_norms(model: nn.Module, data: torch.Tensor, scale: float) -> xr.Dataset:
        assert not model.training  # analysed in eval mode
        norms = model.conv1.weight.detach().flatten(1).norm(dim=1).numpy() * scale
        seen.append(norms)
        return xr.Dataset({"norm": ("filter", norms)}, coords={"filter": np.arange(4)})

    model = TinyCNN()
    x, y = digits(0, 50)
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    rec = fs.Recorder(
        model,
        tmp_path / "run",
        snapshot_every=2,
        analyze_every=2,
        analyze_data=x,
        analyze_kwargs={"scale": 2.0},
        analyze_fn=conv_norms,
    )
    for _ in range(7):
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        rec.step(1.0)
        opt.step()
    rec.close()
    assert model.training
    analysis = fs.open_log(tmp_path / "run", group="analysis")
    # Snapshots at steps 0, 2, 4, 6 and the final one at 7; analysed: 0, 2 (index 0, 2) and final.
    np.testing.assert_array_equal(analysis.analysis_step, [0, 4, 7])
    np.testing.assert_allclose(analysis.norm, np.stack(seen))
    assert analysis.norm.dims == ("analysis_snapshot", "filter")


def test_analysis_with_the_gmm_engine(tmp_path) -> None:
    model = TinyCNN()
    x, y = digits(0, 64)
    kwargs = {"n_samples": 32, "progress": False}
    rec = fs.Recorder(
        model,
        tmp_path / "run",
        snapshot_every=2,
        analyze_every=2,
        analyze_data=(x, y),
        analyze_kwargs=kwargs,
    )
    for _ in range(3):
        F.cross_entropy(model(x), y).backward()
        rec.step(1.0)
    rec.close()
    analysis = fs.open_log(tmp_path / "run", group="analysis")
    expected = fs.analyze(model, (x, y), **kwargs).dataset  # the final model, analysed again
    np.testing.assert_array_equal(analysis.analysis_step, [0, 3])
    # The probe's thumbnails stay with the result: the log keeps its own, once.
    assert "thumbnail" in expected and "thumbnail" not in analysis
    assert set(expected.data_vars) - {"thumbnail"} == set(analysis.data_vars)
    np.testing.assert_array_equal(analysis.n_clusters[-1], expected.n_clusters)
    np.testing.assert_allclose(analysis.points[-1], expected.points, rtol=1e-5)
    assert list(analysis.filter_layer.values) == list(expected.filter_layer.values)
    assert analysis.attrs["k_range"] == expected.attrs["k_range"]


def test_exception_in_the_loop_keeps_the_steps(tmp_path) -> None:
    model = TinyCNN()
    with (
        pytest.raises(RuntimeError, match="boom"),
        fs.Recorder(model, tmp_path / "run", snapshot_every=2) as rec,
    ):
        for i in range(5):
            rec.step(float(i))
        raise RuntimeError("boom")
    log = fs.open_log(tmp_path / "run")
    np.testing.assert_array_equal(log.loss, [0, 1, 2, 3, 4])
    np.testing.assert_array_equal(log.snapshot_step, [0, 2, 4])  # no final snapshot


# ---------------------------------------------------------------------------- bad input


def test_model_without_weights(tmp_path) -> None:
    with pytest.raises(InvalidModelError, match="no layer with weights"):
        fs.Recorder(nn.Sequential(nn.ReLU(), nn.Flatten()), tmp_path / "run")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    ("eval_set", "match"),
    [
        (
            (torch.randn(10, 3, 8, 8), torch.zeros(10, dtype=torch.long)),
            "cannot run on the first batch",
        ),
        ((torch.randn(10, 1, 8, 8), torch.full((10,), 12)), r"labels \[12\] outside 0..9"),
        ((torch.randn(10, 1, 8, 8), torch.rand(10)), "integer class index"),
        (
            (torch.randn(10, 1, 8, 8), torch.zeros(9, dtype=torch.long)),
            "x has 10 samples but y has 9",
        ),
        ("digits.npz", "expected a DataLoader"),
        (DataLoader(TensorDataset(torch.randn(4, 1, 8, 8)), 2), r"\(x, y\) pairs"),
    ],
)
def test_bad_eval_sets_are_refused_before_anything_is_written(tmp_path, eval_set, match) -> None:
    with pytest.raises(InvalidDataError, match=match):
        fs.Recorder(TinyCNN(), tmp_path / "run", eval_sets={"val": eval_set})
    assert not (tmp_path / "run").exists()
    assert list(tmp_path.iterdir()) == []


def test_model_output_must_be_class_scores(tmp_path) -> None:
    with pytest.raises(InvalidDataError, match=r"expected one row of class scores"):
        fs.Recorder(nn.Conv2d(1, 2, 3), tmp_path / "run", eval_sets=digits(0, 10))
    with pytest.raises(InvalidDataError, match="class_names has 3 classes"):
        fs.Recorder(
            TinyCNN(), tmp_path / "run", eval_sets=digits(0, 10), class_names=["a", "b", "c"]
        )
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("value", [0, -5, 2.5, True])
def test_snapshot_every_must_be_a_positive_integer(tmp_path, value) -> None:
    with pytest.raises(fs.InvalidParameterError, match="snapshot_every must be a positive integer"):
        fs.Recorder(TinyCNN(), tmp_path / "run", snapshot_every=value)
    assert not (tmp_path / "run").exists()


def test_a_failed_start_leaves_nothing_behind(tmp_path, monkeypatch) -> None:
    # Writing the new log fails (as on a full disk): its half-built directory must go.
    def fail(self) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(PendingWrites, "run", fail)
    with pytest.raises(OSError, match="disk full"):
        fs.Recorder(TinyCNN(), tmp_path / "run")
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(fs.InvalidParameterError, match="mode must be"):
        fs.Recorder(TinyCNN(), tmp_path / "run", mode="x")


def test_existing_log_is_not_clobbered(tmp_path) -> None:
    with fs.Recorder(TinyCNN(), tmp_path / "run") as rec:
        rec.step(1.0)
    before = {p: p.read_bytes() for p in (tmp_path / "run").rglob("*") if p.is_file()}
    with pytest.raises(LogExistsError, match="mode='w'"):
        fs.Recorder(TinyCNN(), tmp_path / "run")
    assert {p: p.read_bytes() for p in (tmp_path / "run").rglob("*") if p.is_file()} == before
    with fs.Recorder(TinyCNN(), tmp_path / "run", mode="w") as rec:
        rec.step(2.0)
        rec.step(3.0)
    assert fs.open_log(tmp_path / "run").loss.values.tolist() == [2.0, 3.0]


def test_non_scalar_loss_is_refused_and_the_log_stays_usable(tmp_path) -> None:
    rec = fs.Recorder(TinyCNN(), tmp_path / "run", snapshot_every=10)
    rec.step(1.0)
    with pytest.raises(InvalidDataError, match="scalar loss"):
        rec.step(torch.ones(3))
    with pytest.raises(InvalidDataError, match="one label per output row"):
        rec.step(1.0, torch.zeros(4, 10), torch.zeros(3, dtype=torch.long))
    rec.close()
    assert fs.open_log(tmp_path / "run").loss.values.tolist() == [1.0]
    with pytest.raises(fs.FilterscopeError, match="closed"), warnings.catch_warnings():
        rec.step(1.0)
