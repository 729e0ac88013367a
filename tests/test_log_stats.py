"""Per-layer and per-filter statistics against direct numpy computation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from oracles import layer_stats
from torch import nn

from filterscope.log.layers import discover_layers
from filterscope.log.schema import FILTER_VARS, STATS, THRESHOLDS
from filterscope.log.stats import StatsEngine

# Float comparisons against oracles: `make test` reruns these under other CPU kernels.
pytestmark = pytest.mark.numerics

METHODS = ["partition", "sort"]


def _model(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    net = nn.Sequential(
        nn.Conv2d(3, 8, 3),
        nn.BatchNorm2d(8),
        nn.Conv2d(8, 8, 3, groups=4),  # grouped
        nn.Conv2d(8, 8, 3, groups=8),  # depthwise
        nn.ConvTranspose2d(8, 6, 2, groups=2),
        nn.Conv1d(6, 5, 2),
        nn.Linear(5, 7, bias=False),
    )
    for p in net.parameters():
        p.grad = torch.randn_like(p) * 0.01
    # Exact zeros exercise l0 and the w = 0 rules of the change ratio.
    with torch.no_grad():
        net[0].weight[0, 0] = 0.0
        net[0].weight.grad[0, 0, 0] = 0.0
        net[6].weight.grad[1] = 0.0
    return net


def _filters_numpy(layer: nn.Module, tensor: torch.Tensor) -> np.ndarray:
    """Literal output-channel filters: rows of weight[c] or, for transposed convs, the slices
    of the input channels of each output channel's group."""
    t = tensor.detach().numpy().astype(np.float64)
    if isinstance(layer, nn.ConvTranspose2d):
        g = layer.groups
        per_in, per_out = t.shape[0] // g, t.shape[1]
        rows = []
        for o in range(per_out * g):
            gi, j = divmod(o, per_out)
            rows.append(t[gi * per_in : (gi + 1) * per_in, j].ravel())
        return np.array(rows)
    return t.reshape(t.shape[0], -1)


def _engine(net: nn.Module, method: str) -> tuple[StatsEngine, list[nn.Module]]:
    layers = [layer for layer in discover_layers(net) if layer.has_stats]
    modules = [
        m for m in net.modules() if "weight" in m._parameters and not isinstance(m, nn.BatchNorm2d)
    ]
    return StatsEngine(layers, torch.device("cpu"), quantile_method=method), modules


@pytest.mark.parametrize("method", METHODS)
def test_layer_statistics_match_numpy(method: str) -> None:
    net = _model()
    engine, modules = _engine(net, method)
    stats = engine.compute(engine.flatten(), previous=None)
    assert stats.weight_stat.shape == (len(modules), len(STATS))
    for i, module in enumerate(modules):
        for got, tensor in (
            (stats.weight_stat[i], module.weight),
            (stats.grad_stat[i], module.weight.grad),
        ):
            expected = np.array(layer_stats(tensor.detach().numpy().astype(np.float64).ravel()))
            scale = np.abs(tensor.detach().numpy()).sum()
            np.testing.assert_allclose(got, expected, rtol=2e-5, atol=1e-6 * scale)


def test_change_ratio_matches_a_literal_loop() -> None:
    net = _model()
    engine, modules = _engine(net, "partition")
    ratio = engine.compute(engine.flatten(), previous=None).change_ratio
    assert ratio.shape == (len(modules), 56)
    thresholds = THRESHOLDS.astype(np.float32)
    for i, module in enumerate(modules):
        w = module.weight.detach().numpy().ravel()
        g = module.weight.grad.numpy().ravel()
        counts = np.zeros(len(thresholds))
        for wi, gi in zip(w, g, strict=True):
            if wi == 0:
                r = np.float32(0.0) if gi == 0 else np.float32(np.inf)
            else:
                r = np.float32(abs(gi)) / np.float32(abs(wi))
            counts += r <= thresholds
        np.testing.assert_allclose(ratio[i], counts / w.size, atol=1e-7)
    assert np.all(ratio[:, 0] == 1.0)  # "all"
    assert np.all(np.diff(ratio, axis=1) <= 0)  # thresholds descend
    # net[6] has whole rows of zero gradient: they count under every threshold.
    assert ratio[-1, -1] >= 1 / 7


@pytest.mark.parametrize("method", METHODS)
def test_filter_metrics_match_numpy(method: str) -> None:
    net = _model()
    engine, modules = _engine(net, method)
    previous = engine.reference(engine.flatten()[0][0].clone())
    torch.manual_seed(1)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(torch.randn_like(p) * 0.05)
        net[0].weight[1] = 0.0  # an all-zero filter: cosine undefined
    stats = engine.compute(engine.flatten(), previous=previous)
    assert set(stats.filters) == set(FILTER_VARS)
    offset = 0
    first_filter = 0
    prev_flat = previous.weights.numpy().astype(np.float64)
    for module in modules:
        w = _filters_numpy(module, module.weight)
        g = _filters_numpy(module, module.weight.grad)
        p = prev_flat[offset : offset + w.size].reshape(w.shape)
        offset += w.size
        sl = slice(first_filter, first_filter + w.shape[0])
        first_filter += w.shape[0]
        d = w - p
        with np.errstate(divide="ignore", invalid="ignore"):
            expected = {
                "filter_grad_l1": np.abs(g).sum(1),
                "filter_grad_l2": np.sqrt((g * g).sum(1)),
                "filter_grad_ratio_l1": np.abs(g).sum(1) / np.abs(w).sum(1),
                "filter_grad_ratio_l2": np.sqrt((g * g).sum(1)) / np.sqrt((w * w).sum(1)),
                "filter_std": w.std(1),
                "filter_l1": np.abs(d).sum(1),
                "filter_l2": np.sqrt((d * d).sum(1)),
                "filter_rel_l1": np.abs(d).sum(1) / np.abs(p).sum(1),
                "filter_rel_l2": np.sqrt((d * d).sum(1)) / np.sqrt((p * p).sum(1)),
                "filter_cosine": np.clip(
                    [
                        wr @ pr / np.linalg.norm(wr) / np.linalg.norm(pr)
                        for wr, pr in zip(w, p, strict=True)
                    ],
                    -1,
                    1,
                ),
            }
        for name, values in expected.items():
            np.testing.assert_allclose(
                stats.filters[name][sl], values, rtol=2e-5, atol=1e-7, err_msg=name
            )
    assert (offset, first_filter) == (engine.n_params, engine.n_filters)
    assert np.isnan(stats.filters["filter_cosine"][1])


def test_first_snapshot_has_no_change_metrics_and_references_itself() -> None:
    engine, _ = _engine(_model(), "partition")
    flat = engine.flatten()
    stats = engine.compute(flat, previous=None)
    for name in ("filter_cosine", "filter_l1", "filter_l2", "filter_rel_l1", "filter_rel_l2"):
        assert np.isnan(stats.filters[name]).all()
    assert np.isfinite(stats.filters["filter_grad_l1"]).all()
    # The reference a snapshot hands on equals one rebuilt from its weights (as when resuming).
    rebuilt = engine.reference(stats.reference.weights.clone())
    assert torch.equal(rebuilt.weights, flat[0][0])
    np.testing.assert_allclose(rebuilt.l1, stats.reference.l1, rtol=1e-6)
    np.testing.assert_allclose(rebuilt.l2, stats.reference.l2, rtol=1e-6)
    again = engine.compute(flat, previous=rebuilt)
    np.testing.assert_allclose(again.filters["filter_cosine"], 1.0, rtol=1e-6)
    assert (again.filters["filter_l1"] == 0).all()


def test_missing_gradient_gives_nan_for_that_layer_only() -> None:
    net = _model()
    net[2].weight.grad = None
    engine, _ = _engine(net, "partition")
    stats = engine.compute(engine.flatten(), previous=None)
    assert np.isnan(stats.grad_stat[1]).all()
    assert np.isnan(stats.change_ratio[1]).all()
    assert np.isfinite(stats.grad_stat[[0, 2, 3, 4, 5]]).all()
    assert np.isfinite(stats.weight_stat).all()
    sl = slice(8, 16)  # filters of the grouped conv
    assert np.isnan(stats.filters["filter_grad_l1"][sl]).all()
    assert np.isfinite(stats.filters["filter_std"][sl]).all()


@pytest.mark.parametrize("method", METHODS)
def test_nan_gradient_makes_the_layer_quantiles_nan(method: str) -> None:
    net = _model()
    with torch.no_grad():
        net[0].weight.grad[2, 1, 0, 0] = torch.nan
    engine, _ = _engine(net, method)
    stats = engine.compute(engine.flatten(), previous=None)
    assert np.isnan(stats.grad_stat[0, STATS.index("median")])
    assert np.isnan(stats.grad_stat[0, STATS.index("sum")])
    assert np.isnan(stats.change_ratio[0]).all()
    assert np.isfinite(stats.grad_stat[1]).all() and np.isfinite(stats.change_ratio[1]).all()


@pytest.mark.slow
def test_quantiles_of_a_layer_beyond_torch_quantile_limit() -> None:
    # torch.quantile refuses inputs above 16M elements; the recorder must not.
    torch.manual_seed(0)
    net = nn.Linear(4100, 4100, bias=False)
    assert net.weight.numel() > 16_777_216
    net.weight.grad = torch.randn_like(net.weight)
    engine, _ = _engine(net, "partition")
    stats = engine.compute(engine.flatten(), previous=None)
    w = net.weight.detach().numpy().ravel()
    expected = np.quantile(w, [0.5, 0.25, 0.75])
    got = stats.weight_stat[0, [STATS.index(s) for s in ("median", "q1", "q3")]]
    np.testing.assert_allclose(got, expected, rtol=1e-6)
