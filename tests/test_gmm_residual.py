"""``features="pca-residual"``: the first principal component and the distance from the plane."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import filterscope as fs
from filterscope.errors import InvalidParameterError
from filterscope.gmm import extract


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 3, 3), nn.ReLU(), nn.Conv2d(3, 2, 3))


def test_residual_is_the_distance_from_the_two_component_plane():
    x = torch.randn(60, 1, 9, 9)
    net = _net()
    plain = extract(net, x, n_samples=None, pca="full")
    both = extract(net, x, n_samples=None, pca="full", features="pca-residual")
    assert both.attrs["features"] == "pca-residual" and plain.attrs["features"] == "pca"
    np.testing.assert_array_equal(both.points[..., 0], plain.points[..., 0])
    np.testing.assert_array_equal(both.explained_variance, plain.explained_variance)
    with torch.no_grad():
        maps = [net[0](x), net[2](net[1](net[0](x)))]
    residuals = []
    for m in maps:
        for c in range(m.shape[1]):
            a = m[:, c].flatten(1).double().numpy()
            a = a - a.mean(axis=0)
            _, _, vt = np.linalg.svd(a, full_matrices=False)
            proj = a @ vt[:2].T @ vt[:2]
            residuals.append(np.linalg.norm(a - proj, axis=1))
    expected = np.stack(residuals).astype(np.float32)
    np.testing.assert_allclose(both.points[..., 1], expected, rtol=1e-3, atol=1e-4 * expected.max())


def test_noised_images_sit_inside_the_plane_but_far_out_on_the_residual():
    # Images made of two patterns (a 2-D family) plus 4 images of the same family under
    # heavy noise: the noise is spread over all other directions.
    g = torch.Generator().manual_seed(0)
    basis = torch.randn(2, 1, 12, 12, generator=g)
    coef = torch.randn(200, 2, generator=g)
    x = torch.einsum("nk,kchw->nchw", coef, basis)
    noisy = torch.arange(4) * 50
    x[noisy] += 1.5 * x.std() * torch.randn(4, 1, 12, 12, generator=g)
    net = nn.Sequential(nn.Conv2d(1, 1, 1, bias=False))
    with torch.no_grad():
        net[0].weight.fill_(1.0)
    both = extract(net, x, n_samples=None, features="pca-residual").points.values[0]
    plain = extract(net, x, n_samples=None).points.values[0]
    far = np.argsort(-both[:, 1])[:4]
    assert sorted(far.tolist()) == noisy.tolist()
    clean = np.setdiff1d(np.arange(200), noisy.numpy())
    assert both[noisy.numpy(), 1].min() > 5 * both[clean, 1].max()
    # in the two components the noised images are not the farthest out
    radius = np.linalg.norm(plain, axis=1)
    assert len(set(np.argsort(-radius)[:4].tolist()) & set(noisy.tolist())) < 4


def test_analyze_passes_features_on_and_refuses_unknown_values():
    x = torch.randn(40, 1, 9, 9)
    result = fs.analyze(_net(), x, n_samples=None, features="pca-residual", progress=False)
    assert result.dataset.attrs["features"] == "pca-residual"
    assert bool((result.dataset.points.values[..., 1] >= 0).all())
    with pytest.raises(InvalidParameterError, match="features must be one of"):
        extract(_net(), x, features="residual")
