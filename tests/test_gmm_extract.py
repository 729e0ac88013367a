"""Feature-map extraction and batched PCA, checked against scikit-learn and literal reference loops."""

from __future__ import annotations

import importlib

import numpy as np
import pytest
import torch
from sklearn.decomposition import PCA
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import filterscope as fs
from filterscope.data import digits
from filterscope.errors import (
    InvalidDataError,
    InvalidModelError,
    InvalidParameterError,
    NonFiniteError,
)
from filterscope.gmm import extract, pca_2d, select_samples
from filterscope.models import LeNet5, ResNet

# Float comparisons against oracles: `make test` reruns these under other CPU kernels.
pytestmark = pytest.mark.numerics


@pytest.fixture(scope="module")
def probe() -> tuple[torch.Tensor, torch.Tensor]:
    data = digits("val")
    return data.x[:160], data.y[:160]


@pytest.fixture(scope="module")
def lenet() -> LeNet5:
    torch.manual_seed(0)
    return LeNet5().eval()


def _maps(model: nn.Module, layer: str, x: torch.Tensor, fn=None) -> np.ndarray:
    """Reference: a layer's output for x as (C, N, H·W), by a plain hook."""
    out = {}
    module = dict(model.named_modules())[layer]
    handle = module.register_forward_hook(lambda m, i, o: out.__setitem__("o", o.detach()))
    with torch.no_grad():
        model(x)
    handle.remove()
    maps = out["o"] if fn is None else fn(out["o"])
    return maps.transpose(0, 1).flatten(2).numpy().astype(np.float64)


def _assert_same_up_to_sign(a: np.ndarray, b: np.ndarray, atol: float) -> None:
    for j in range(2):
        sign = 1.0 if np.dot(a[:, j], b[:, j]) >= 0 else -1.0
        np.testing.assert_allclose(a[:, j], sign * b[:, j], atol=atol)


def test_pca_matches_sklearn_per_filter(lenet, probe):
    x, y = probe
    ds = extract(lenet, (x, y), n_samples=None, device="cpu")
    for layer in ("features.conv1", "features.conv2"):
        maps = _maps(lenet, layer, x)
        sub = ds.sel(filter=ds.filter_layer == layer)
        assert sub.sizes["filter"] == maps.shape[0]
        for c in range(maps.shape[0]):
            # three exact components: the first two are PCA(n_components=2)'s, the third tells
            # whether the second axis is well defined
            reference = PCA(n_components=3, svd_solver="full").fit(maps[c])
            ratio = float(sub.explained_variance[c]) / reference.explained_variance_ratio_[:2].sum()
            assert ratio >= 0.9998, (layer, c, ratio)
            coords = reference.transform(maps[c])[:, :2]
            scale = np.abs(coords).max()
            # Where the 2nd and 3rd eigenvalues are well apart, the axes are unique up to sign.
            if reference.explained_variance_[1] > 1.2 * reference.explained_variance_[2]:
                _assert_same_up_to_sign(sub.points.values[c], coords, atol=2e-2 * scale)


def test_full_pca_equals_sklearn_coordinates(lenet, probe):
    x, _ = probe
    maps = _maps(lenet, "features.conv2", x)
    coords, explained = pca_2d(torch.from_numpy(maps).float(), method="full")
    for c in range(maps.shape[0]):
        reference = PCA(n_components=2, svd_solver="full").fit(maps[c])
        expected = reference.transform(maps[c])
        _assert_same_up_to_sign(coords[c].numpy(), expected, atol=1e-3 * np.abs(expected).max())
        assert explained[c].item() == pytest.approx(
            reference.explained_variance_ratio_.sum(), rel=1e-4
        )


def test_pca_batched_equals_one_filter_at_a_time(lenet, probe):
    x, _ = probe
    maps = torch.from_numpy(_maps(lenet, "features.conv1", x)).float()
    coords, explained = pca_2d(maps.clone())
    for c in range(maps.shape[0]):
        single, single_explained = pca_2d(maps[c : c + 1].clone())
        torch.testing.assert_close(single[0], coords[c], rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(single_explained[0], explained[c], rtol=1e-4, atol=1e-6)
    # and through extract: one layer alone gives the same points as all layers together
    both = extract(lenet, x, n_samples=64, device="cpu")
    alone = extract(lenet, x, layers=["features.conv2"], n_samples=64, device="cpu")
    conv2 = both.sel(filter=both.filter_layer == "features.conv2")
    np.testing.assert_allclose(alone.points.values, conv2.points.values, rtol=1e-4, atol=1e-4)


def _exact_top2(maps: np.ndarray) -> np.ndarray:
    """Exact fraction of each filter's variance in its top two components (float64)."""
    centred = maps - maps.mean(axis=1, keepdims=True)
    values = np.linalg.svd(centred, compute_uv=False) ** 2
    return values[:, :2].sum(axis=1) / values.sum(axis=1)


def _spectrum_maps(n: int, features: int, spectra: list[np.ndarray], seed: int = 0) -> np.ndarray:
    """(C, n, features) maps whose centred singular values follow the given spectra."""
    rng = np.random.default_rng(seed)
    out = []
    for spectrum in spectra:
        u = np.linalg.qr(rng.standard_normal((n, len(spectrum))))[0]
        v = np.linalg.qr(rng.standard_normal((features, len(spectrum))))[0]
        u -= u.mean(axis=0)  # centred samples
        out.append((u * spectrum) @ v.T + rng.standard_normal(features))  # plus a common offset
    return np.stack(out)


@pytest.mark.parametrize(("n", "features"), [(300, 40), (90, 400), (260, 300), (200, 16)])
def test_pca_solvers_match_exact_pca(n, features):
    # Both solvers (the Gram of side ≤ 128, block Krylov on X above it) against the exact top-2
    # variance, with the least fraction each kind of spectrum must keep: well separated leading
    # values, a tied leading pair, rank one and a second eigenvalue 1e-3 of the first (found
    # again with the first projected out) to ≥ 99.98 %; slowly decaying and nearly flat spectra
    # (noise-like maps, where every axis captures about as much) are the hard case.
    side = min(n, features)
    spectra = {
        "steep": (np.r_[10.0 * np.geomspace(1.0, 1e-2, 12), np.full(side - 12, 0.05)], 0.9998),
        "tied": (np.r_[5.0, 5.0, np.full(side - 2, 1.0)], 0.9998),
        "rank one": (np.r_[3.0, np.zeros(side - 1)], 0.9998),
        "weak second": (np.r_[1.0, 0.03, 0.02 * np.geomspace(1.0, 1e-2, side - 2)], 0.9998),
        "slow decay": (10.0 * np.geomspace(1.0, 1e-3, side), 0.998),
        "nearly flat": (1.0 + 0.05 * np.linspace(1, 0, side), 0.975),
    }
    maps = _spectrum_maps(n, features, [spectrum for spectrum, _ in spectra.values()])
    coords, explained = pca_2d(torch.from_numpy(maps).float())
    ratio = explained.double().numpy() / _exact_top2(maps)
    for (name, (_, least)), r in zip(spectra.items(), ratio, strict=True):
        assert least <= r <= 1.0001, (name, r)
    # the coordinates are the projections on the exact axes where those are well defined
    for c in (0, 2, 3):
        reference = PCA(n_components=2, svd_solver="full").fit_transform(maps[c])
        scale = np.abs(reference).max()
        if c == 2:  # rank one: no second axis
            assert float(coords[c, :, 1].abs().max()) <= 1e-3 * scale
            reference[:, 1] = 0.0
        _assert_same_up_to_sign(coords[c].numpy(), reference, atol=1e-3 * scale)


@pytest.mark.parametrize("features", [300, 40])  # block Krylov, Gram
def test_pca_chunks_do_not_change_results(monkeypatch, features):
    module = importlib.import_module("filterscope.gmm.pca")
    spectrum = np.geomspace(5, 0.1, min(200, features))
    maps = torch.from_numpy(_spectrum_maps(200, features, [spectrum] * 3)).float()
    whole = pca_2d(maps.clone())
    monkeypatch.setattr(module, "_CPU_CHUNK_BYTES", 1)  # one filter per chunk
    chunked = pca_2d(maps.clone())
    for a, b in zip(whole, chunked, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)


def test_pca_non_finite_maps_are_rejected():
    maps = torch.randn(4, 150, 200)
    maps[2, 7, 3] = float("nan")
    with pytest.raises(NonFiniteError, match=r"filter 2 .*1 filter"):
        pca_2d(maps)
    huge = torch.randn(3, 20, 9)
    huge[1] *= 1e25  # finite, but its sum of squares overflows float32
    with pytest.raises(NonFiniteError, match=r"filter 1.*too large"):
        pca_2d(huge)


def test_pca_flat_filter_has_nan_explained_variance():
    maps = torch.randn(2, 30, 9)
    maps[1] = 3.0  # the same map for every sample: no variance
    coords, explained = pca_2d(maps)
    assert torch.isnan(explained[1]) and bool((explained[0] > 0).all())
    assert bool((coords[1] == 0).all())


def test_sample_selection_is_deterministic_and_sorted():
    data = digits("val")
    a = select_samples(data, 50, random_state=3)
    b = select_samples(data, 50, random_state=3)
    c = select_samples(data, 50, random_state=4)
    np.testing.assert_array_equal(a.sample_id, b.sample_id)
    assert not np.array_equal(a.sample_id, c.sample_id)
    assert np.all(np.diff(a.sample_id) > 0)
    # a filterscope dataset's own sample ids are reported, with their labels and images
    rows = np.searchsorted(data.sample_ids, a.sample_id)
    np.testing.assert_array_equal(a.label, data.y.numpy()[rows])
    torch.testing.assert_close(a.x, data.x[torch.from_numpy(rows)])
    assert len(select_samples(data, None)) == len(data)


def test_data_forms_agree(lenet, probe):
    x, y = probe
    forms = {
        "pair": (x, y),
        "dataset": TensorDataset(x, y),
        "loader": DataLoader(TensorDataset(x, y), batch_size=7, shuffle=True),
        "numpy": (x.numpy().astype(np.float64), y.numpy()),
    }
    results = {
        name: extract(lenet, data, n_samples=40, device="cpu", random_state=1)
        for name, data in forms.items()
    }
    ref = results["pair"]
    for name, ds in results.items():
        np.testing.assert_array_equal(ds.sample_id.values, ref.sample_id.values, err_msg=name)
        np.testing.assert_array_equal(ds.label.values, ref.label.values, err_msg=name)
        np.testing.assert_allclose(ds.points.values, ref.points.values, atol=1e-4, err_msg=name)
    unlabelled = extract(lenet, x, n_samples=40, device="cpu", random_state=1)
    assert (unlabelled.label.values == -1).all()
    np.testing.assert_array_equal(unlabelled.sample_id.values, ref.sample_id.values)


def test_dataset_layout(lenet, probe):
    x, y = probe
    ds = extract(lenet, (x, y), n_samples=32, device="cpu")
    assert ds.points.dims == ("filter", "sample", "pc") and ds.points.dtype == np.float32
    assert ds.points.sizes == {"filter": 6 + 16, "sample": 32, "pc": 2}
    # and the probe images: one uint8 thumbnail per sample, at most 64 px a side
    assert ds.thumbnail.dims == ("sample", "thumb_y", "thumb_x", "thumb_channel")
    assert ds.thumbnail.dtype == np.uint8
    assert ds.thumbnail.shape == (32, *x.shape[2:], 1)
    assert set(ds.sizes) == {"filter", "sample", "pc", "thumb_y", "thumb_x", "thumb_channel"}
    assert ds.filter_layer.values.tolist() == ["features.conv1"] * 6 + ["features.conv2"] * 16
    assert ds.filter_channel.values.tolist() == [*range(6), *range(16)]
    assert ds.explained_variance.dims == ("filter",)
    assert ds.attrs["n_samples"] == 32 and ds.attrs["where"] == "output"
    assert ds.attrs["device"] == "cpu" and ds.attrs["n_passes"] == 1


def test_activation_follows_relu_module_and_batch_norm(probe):
    torch.manual_seed(1)
    net = ResNet(stages=(1, 1), widths=(4, 8), in_channels=1).eval()
    for m in net.modules():  # non-trivial batch-norm statistics
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    x = probe[0][:48]
    ds = extract(net, x, n_samples=None, where="activation", pca="full", device="cpu")
    # layer1.0.conv1 -> bn1 -> relu (the block's shared ReLU, first call)
    block = net.layer1[0]
    expected = _maps(net, "layer1.0.bn1", x, fn=torch.relu)
    got = ds.sel(filter=ds.filter_layer == "layer1.0.conv1")
    ref, _ = pca_2d(torch.from_numpy(expected).float(), method="full")
    np.testing.assert_allclose(got.points.values, ref.numpy(), rtol=1e-4, atol=1e-4)
    # layer2.0.downsample.0 -> downsample.1 (batch norm), then a conv runs: ReLU is applied
    expected = _maps(net, "layer2.0.downsample.1", x, fn=torch.relu)
    got = ds.sel(filter=ds.filter_layer == "layer2.0.downsample.0")
    ref, _ = pca_2d(torch.from_numpy(expected).float(), method="full")
    np.testing.assert_allclose(got.points.values, ref.numpy(), rtol=1e-4, atol=1e-4)
    assert block.training is False


def test_memory_budget_changes_passes_not_results(lenet, probe):
    x, _ = probe
    batches: list[int] = []
    handle = lenet.classifier.register_forward_hook(lambda m, i, o: batches.append(len(i[0])))
    one = extract(lenet, x, n_samples=64, device="cpu", max_memory=None)
    per_layer = extract(lenet, x, n_samples=64, device="cpu", max_memory=0)
    handle.remove()
    assert one.attrs["n_passes"] == 1 and per_layer.attrs["n_passes"] == 2
    np.testing.assert_array_equal(one.points.values, per_layer.points.values)
    # the classifier ran only in the two-sample tracing pass of each call: every pass over the
    # probe samples stops after its last layer
    assert batches == [2, 2]


def test_training_flags_are_restored(probe):
    net = LeNet5().train()
    net.features.conv2.eval()
    extract(net, probe[0], n_samples=16, device="cpu")
    assert net.training and net.classifier.training and not net.features.conv2.training


def test_model_without_conv_is_rejected():
    with pytest.raises(InvalidModelError, match="no Conv2d"):
        extract(nn.Sequential(nn.Flatten(), nn.Linear(4, 2)), torch.randn(8, 4))


def test_unknown_layer_is_rejected(lenet, probe):
    with pytest.raises(InvalidModelError, match="unknown layer"):
        extract(lenet, probe[0], layers=["features.conv9"])


def test_wrong_input_shape_is_explained(lenet):
    with pytest.raises(InvalidDataError, match=r"\(3, 32, 32\)"):
        extract(lenet, torch.randn(10, 3, 32, 32))


def test_non_finite_feature_maps_name_layer_and_filter(probe):
    net = LeNet5().eval()
    with torch.no_grad():
        net.features.conv2.weight[5, 0, 0, 0] = float("nan")
    with pytest.raises(NonFiniteError, match=r"features\.conv2.*filter 5"):
        extract(net, probe[0], n_samples=16, device="cpu")


def test_non_finite_inputs_name_samples(lenet, probe):
    x = probe[0][:20].clone()
    x[4, 0, 3, 3] = float("inf")
    with pytest.raises(NonFiniteError, match=r"sample_id \[4\]"):
        extract(lenet, x, n_samples=None, device="cpu")


def test_too_few_samples_is_rejected(lenet, probe):
    with pytest.raises(InvalidParameterError, match=r"n_samples must be None .* or an integer ≥ 2"):
        extract(lenet, probe[0], n_samples=1)
    with pytest.raises(InvalidDataError, match="at least 2"):
        extract(lenet, probe[0][:1], n_samples=None)


@pytest.mark.parametrize(
    ("params", "valid_range"),
    [
        ({"where": "input"}, r"where must be one of \('output', 'activation'\)"),
        ({"pca": "svd"}, r"pca must be one of \('randomized', 'full'\)"),
        ({"batch_size": 0}, "batch_size must be an integer ≥ 1"),
        ({"batch_size": 2.5}, "batch_size must be an integer ≥ 1"),
        ({"max_memory": -1}, r"max_memory must be None \(no limit\) or an integer ≥ 0"),
        ({"n_samples": 1.5}, r"n_samples must be None \(every sample\) or an integer ≥ 2"),
        ({"n_samples": True}, "n_samples must be None"),
    ],
)
def test_bad_parameters_raise_invalid_parameter_error_naming_the_range(
    lenet, probe, params, valid_range
):
    with pytest.raises(InvalidParameterError, match=valid_range) as err:
        extract(lenet, probe[0], device="cpu", **params)
    assert not isinstance(err.value, InvalidDataError)


def test_probe_and_pca_parameters_are_checked():
    with pytest.raises(InvalidParameterError, match=r"method must be one of \('randomized'"):
        pca_2d(torch.randn(2, 10, 4), method="svd")  # type: ignore[arg-type]
    with pytest.raises(InvalidDataError, match=r"\(filters, samples, features\)"):
        pca_2d(torch.randn(10, 4))
    with pytest.raises(InvalidParameterError, match="n_samples must be None"):
        select_samples(torch.zeros(10, 3), n_samples=0)
    if not torch.cuda.is_available():
        with pytest.raises(InvalidParameterError, match="CUDA is not available"):
            extract(LeNet5(), torch.zeros(4, 1, 28, 28), device="cuda")


def test_arguments_after_model_and_data_are_keyword_only(lenet, probe):
    with pytest.raises(TypeError, match="positional"):
        extract(lenet, probe[0], None, 16)  # type: ignore[misc]


def test_modules_are_split_by_job():
    from filterscope.gmm import pca as pca_module
    from filterscope.gmm import probe as probe_module

    extract_mod = importlib.import_module("filterscope.gmm.extract")
    assert fs.gmm.select_samples is probe_module.select_samples
    assert fs.gmm.ProbeSet is probe_module.ProbeSet
    assert fs.gmm.pca_2d is pca_module.pca_2d
    assert fs.extract is fs.gmm.extract is extract_mod.extract
    # Each job's module holds only its own names: no PCA in probe, no probing in pca.
    assert not hasattr(pca_module, "select_samples")
    assert not hasattr(probe_module, "pca_2d")
    assert not hasattr(extract_mod, "_krylov") and not hasattr(extract_mod, "_take_first")


@pytest.mark.cuda
def test_cuda_extraction_matches_cpu(lenet, probe):
    cpu = extract(lenet, probe, n_samples=64, device="cpu")
    gpu = extract(lenet, probe, n_samples=64, device="cuda")
    assert gpu.attrs["device"].startswith("cuda")
    assert next(lenet.parameters()).device.type == "cpu"  # the model went back home
    np.testing.assert_allclose(gpu.explained_variance, cpu.explained_variance, rtol=1e-3)
    for f in range(cpu.sizes["filter"]):
        scale = float(np.abs(cpu.points.values[f]).max())
        _assert_same_up_to_sign(gpu.points.values[f], cpu.points.values[f], atol=1e-2 * scale)


@pytest.mark.parametrize("hw", [16, 100, 400])
@pytest.mark.parametrize("n", [64, 300])
def test_constant_maps_sit_at_the_origin_and_leave_other_filters_alone(hw, n):
    # a dead ReLU channel (all 0) and a constant one (all 3): no principal axes, no NaN
    maps = torch.randn(4, n, hw, generator=torch.Generator().manual_seed(hw + n))
    maps[1] = 0.0
    maps[3] = 3.0
    coords, explained = pca_2d(maps.clone())
    assert bool(torch.isfinite(coords).all())
    assert bool((coords[[1, 3]] == 0).all())
    assert bool(torch.isnan(explained[[1, 3]]).all())
    alone, _ = pca_2d(maps[[0, 2]].clone())
    torch.testing.assert_close(coords[[0, 2]], alone, rtol=1e-4, atol=1e-4)
