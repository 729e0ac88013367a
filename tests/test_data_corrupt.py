"""Planting corrupted images: each kind does what it says, seeded, and nothing else changes."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import TensorDataset

from filterscope.data import CORRUPTIONS, ImageDataset, Planted, corrupt_images, digits, plant
from filterscope.errors import InvalidDataError, InvalidParameterError


@pytest.fixture(scope="module")
def train() -> ImageDataset:
    return digits("train", size=32)


def _images(n: int = 6, side: int = 12) -> torch.Tensor:
    """Dark background (-1) with a bright off-centre bar (2.0) and a dimmer square (0.5)."""
    x = torch.full((n, 1, side, side), -1.0)
    x[:, :, 2:9, 3:5] = 2.0
    x[:, :, 4:6, 6:8] = 0.5
    return x


def test_inverted_swaps_the_range_and_is_its_own_inverse():
    x = _images()
    out = corrupt_images(x, "inverted")
    torch.testing.assert_close(out, 1.0 - x)  # min + max = -1 + 2
    torch.testing.assert_close(corrupt_images(out, "inverted"), x)


def test_blank_is_the_background_everywhere():
    out = corrupt_images(_images(), "blank")
    assert bool((out == -1.0).all())


def test_rotated_is_a_180_degree_turn():
    x = torch.randn(3, 2, 7, 9)
    out = corrupt_images(x, "rotated")
    torch.testing.assert_close(out, torch.rot90(x, 2, dims=(2, 3)))


def test_shifted_moves_the_content_by_four_tenths_of_the_side():
    x = _images(n=20)
    out = corrupt_images(x, "shifted", seed=3)
    d = round(0.4 * 12)
    directions = set()
    for i in range(len(x)):
        matches = [
            (dy, dx)
            for dy, dx in [(d, 0), (-d, 0), (0, d), (0, -d)]
            if torch.equal(
                out[i, 0],
                _shift(x[i, 0], dy, dx, fill=-1.0),
            )
        ]
        assert len(matches) == 1
        directions.add(matches[0])
    assert len(directions) > 1  # the direction is drawn per image


def _shift(img: torch.Tensor, dy: int, dx: int, fill: float) -> torch.Tensor:
    out = torch.full_like(img, fill)
    h, w = img.shape
    for y in range(h):
        for x in range(w):
            if 0 <= y - dy < h and 0 <= x - dx < w:
                out[y, x] = img[y - dy, x - dx]
    return out


def test_noise_adds_gaussian_noise_of_one_and_a_half_pixel_sds():
    x = torch.randn(50, 1, 32, 32) * 0.3
    out = corrupt_images(x, "noise", seed=1)
    added = (out - x).flatten(1)
    ratio = added.std(dim=1) / x.flatten(1).std(dim=1)
    assert float(ratio.mean()) == pytest.approx(1.5, rel=0.02)
    assert abs(float(added.mean())) < 0.01
    torch.testing.assert_close(corrupt_images(x, "noise", seed=1), out)
    assert not torch.equal(corrupt_images(x, "noise", seed=2), out)


def test_scaled_shrinks_the_content_to_half_about_the_centre():
    x = _images(side=16)
    out = corrupt_images(x, "scaled")
    inner = out[:, :, 4:12, 4:12]
    expected = torch.nn.functional.interpolate(x, size=(8, 8), mode="bilinear")
    torch.testing.assert_close(inner, expected)
    ring = out.clone()
    ring[:, :, 4:12, 4:12] = -1.0
    assert bool((ring == -1.0).all())


def test_patch_paints_a_quarter_side_square_at_the_brightest_value_in_a_corner():
    x = _images(n=12, side=16)
    out = corrupt_images(x, "patch", seed=0)
    changed = (out != x).flatten(1).sum(dim=1)
    assert bool((changed > 0).all())
    for i in range(len(x)):
        ys, xs = torch.nonzero(out[i, 0] != x[i, 0], as_tuple=True)
        # inside one 4x4 square that touches a 1-pixel margin of a corner
        assert int(ys.max() - ys.min()) < 4 and int(xs.max() - xs.min()) < 4
        assert int(ys.min()) in (1, 11) and int(xs.min()) in (1, 11)
        assert bool((out[i, 0, ys, xs] == 2.0).all())


def test_corrupt_images_leaves_its_input_alone():
    x = _images()
    before = x.clone()
    for kind in CORRUPTIONS:
        corrupt_images(x, kind)
    torch.testing.assert_close(x, before)


def test_plant_replaces_rate_times_n_images_and_keeps_everything_else(train):
    planted = plant(train, "inverted", rate=0.03, seed=0)
    assert isinstance(planted, Planted)
    data = planted.data
    assert isinstance(data, ImageDataset)
    assert data.class_names == train.class_names
    np.testing.assert_array_equal(data.sample_ids, train.sample_ids)
    torch.testing.assert_close(data.y, train.y)
    assert len(planted.index) == 15
    assert np.all(np.diff(planted.index) > 0)
    assert planted.kinds == ("inverted",) * 15
    np.testing.assert_array_equal(planted.sample_ids, train.sample_ids[planted.index])
    changed = (data.x != train.x).flatten(1).any(dim=1).numpy()
    np.testing.assert_array_equal(np.flatnonzero(changed), planted.index)
    idx = torch.from_numpy(planted.index)
    torch.testing.assert_close(data.x[idx], corrupt_images(train.x[idx], "inverted"))
    # the original dataset is untouched
    assert float((train.x - digits("train", size=32).x).abs().max()) == 0.0


def test_plant_is_seeded(train):
    a = plant(train, ["noise", "patch"], rate=0.02, seed=5)
    b = plant(train, ["noise", "patch"], rate=0.02, seed=5)
    c = plant(train, ["noise", "patch"], rate=0.02, seed=6)
    np.testing.assert_array_equal(a.index, b.index)
    torch.testing.assert_close(a.data.tensors[0], b.data.tensors[0])
    assert not np.array_equal(a.index, c.index)


def test_plant_several_kinds_disjointly(train):
    planted = plant(train, list(CORRUPTIONS), rate=0.01, seed=0)
    assert len(planted.index) == 5 * len(CORRUPTIONS)
    assert len(np.unique(planted.index)) == len(planted.index)
    for kind in CORRUPTIONS:
        ids = planted.ids_of(kind)
        assert len(ids) == 5
        assert set(ids) <= set(planted.sample_ids.tolist())


def test_plant_on_a_tensor_and_a_tensor_dataset():
    x = torch.rand(40, 1, 8, 8)
    y = torch.arange(40)
    from_tensor = plant(x, "blank", rate=0.1, seed=0)
    assert isinstance(from_tensor.data, TensorDataset) and len(from_tensor.data.tensors) == 1
    np.testing.assert_array_equal(from_tensor.sample_ids, from_tensor.index)
    from_pair = plant(TensorDataset(x, y), "blank", rate=0.1, seed=0)
    torch.testing.assert_close(from_pair.data.tensors[1], y)
    torch.testing.assert_close(from_pair.data.tensors[0], from_tensor.data.tensors[0])
    assert len(plant(x, "blank", rate=0.001).index) == 1  # at least one image


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"kinds": "smudged"}, InvalidParameterError, "unknown corruption 'smudged'"),
        ({"kinds": []}, InvalidParameterError, "kinds is empty"),
        ({"kinds": ["blank", "blank"]}, InvalidParameterError, "more than once"),
        ({"rate": 0.0}, InvalidParameterError, "rate must be a share"),
        ({"rate": 1.5}, InvalidParameterError, "rate must be a share"),
        ({"rate": True}, InvalidParameterError, "rate must be a share"),
        ({"kinds": list(CORRUPTIONS), "rate": 0.2}, InvalidParameterError, "need 70 images"),
    ],
)
def test_plant_refuses_bad_parameters(kwargs, error, message):
    with pytest.raises(error, match=message):
        plant(torch.rand(50, 1, 8, 8), **kwargs)


def test_bad_images_are_refused():
    with pytest.raises(InvalidDataError, match="floating-point images"):
        plant(torch.zeros(10, 8, 8), "blank")
    with pytest.raises(InvalidDataError, match="ImageDataset, a TensorDataset or a tensor"):
        plant(np.zeros((10, 1, 8, 8)), "blank")
    with pytest.raises(InvalidDataError, match=r"floating-point tensor \(N, C, H, W\)"):
        corrupt_images(torch.zeros(4, 1, 8, 8, dtype=torch.int64), "inverted")
    with pytest.raises(InvalidParameterError, match="choose from inverted, blank"):
        corrupt_images(torch.zeros(4, 1, 8, 8), "upside-down")
