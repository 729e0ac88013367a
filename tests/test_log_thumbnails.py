"""Thumbnails of the evaluation samples: stored once, small, uint8, opt-out."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from log_helpers.tiny import TinyCNN, digits
from torch import nn

import filterscope as fs
from filterscope.errors import InvalidParameterError
from filterscope.log.evaluation import THUMBNAIL_SIDE, image_thumbnails, thumbnail_shape
from filterscope.log.schema import VARIABLES

pytestmark = pytest.mark.filterwarnings("ignore:.*step\\(\\) must be called after loss.backward")


def _record(path, model, x, y, *, steps=4, **kwargs):
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    with fs.Recorder(
        model, path, {"val": (x, y)}, snapshot_every=2, optimizer=opt, **kwargs
    ) as rec:
        for _ in range(steps):
            opt.zero_grad()
            out = model(x)
            loss = F.cross_entropy(out, y)
            loss.backward()
            rec.step(loss, out, y)
            opt.step()
    return fs.open_log(path)


def _scaled(x: np.ndarray) -> np.ndarray:
    lo, hi = x.min(), x.max()
    return np.round((x - lo) / (hi - lo) * 255).astype(np.uint8)


def test_a_recorded_log_stores_every_eval_sample_once(tmp_path):
    torch.manual_seed(0)
    x, y = digits(0, 40)
    log = _record(tmp_path / "run", TinyCNN(), x, y)
    thumbs = log.thumbnail
    assert thumbs.dims == ("sample", "thumb_y", "thumb_x", "thumb_channel")
    assert thumbs.dtype == np.uint8 and thumbs.shape == (40, 8, 8, 1)
    # 8 × 8 grayscale: 64 bytes per sample, as docs/log-format.md states.
    assert thumbs.values[0].nbytes == 64
    for i in (0, 17, 39):
        np.testing.assert_array_equal(thumbs.values[i, :, :, 0], _scaled(x[i, 0].numpy()))
    assert log.thumb_y.values.tolist() == list(range(8))
    # Static: not along snapshot, and the recorded array's metadata says so.
    meta = json.loads((tmp_path / "run" / "eval" / "val" / "thumbnail" / "zarr.json").read_text())
    assert meta["dimension_names"] == ["sample", "thumb_y", "thumb_x", "thumb_channel"]
    assert meta["chunk_grid"]["configuration"]["chunk_shape"] == [256, 8, 8, 1]
    assert not VARIABLES["eval/<set>", "thumbnail"].appendable


def test_resuming_keeps_the_thumbnails(tmp_path):
    torch.manual_seed(0)
    x, y = digits(0, 30)
    model = TinyCNN()
    first = _record(tmp_path / "run", model, x, y).thumbnail.values
    again = _record(tmp_path / "run", model, x, y, mode="a").thumbnail.values
    np.testing.assert_array_equal(first, again)


def test_opting_out_stores_none(tmp_path):
    torch.manual_seed(0)
    x, y = digits(0, 30)
    log = _record(tmp_path / "run", TinyCNN(), x, y, thumbnails=False)
    assert "thumbnail" not in log.variables and "thumb_y" not in log.dims
    assert not (tmp_path / "run" / "eval" / "val" / "thumbnail").exists()
    with pytest.raises(InvalidParameterError, match="thumbnails"):
        fs.Recorder(TinyCNN(), tmp_path / "bad", {"val": (x, y)}, thumbnails="yes")  # type: ignore[arg-type]


def test_inputs_that_are_not_images_get_no_thumbnails(tmp_path):
    torch.manual_seed(0)
    x, y = torch.randn(24, 16), torch.arange(24) % 4
    log = _record(tmp_path / "run", nn.Sequential(nn.Linear(16, 4)), x, y)
    assert "thumbnail" not in log.variables
    assert image_thumbnails(torch.randn(4, 2, 8, 8)) is None  # two channels: not an image
    assert image_thumbnails(torch.zeros(4, 3, 8, 8, dtype=torch.bool)) is None


def test_large_rgb_inputs_shrink_by_area_averaging_keeping_the_aspect(tmp_path):
    torch.manual_seed(0)
    x = torch.rand(10, 3, 128, 96)
    y = torch.arange(10) % 2
    model = nn.Sequential(
        nn.Conv2d(3, 2, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2, 2)
    )
    log = _record(tmp_path / "run", model, x, y, steps=2)
    assert log.thumbnail.shape == (10, 64, 48, 3)
    # 64 × 48 × 3 = 9,216 bytes per sample: within the documented 64 × 64 × 3 = 12,288.
    assert log.thumbnail.values[0].nbytes == 9216 <= THUMBNAIL_SIDE * THUMBNAIL_SIDE * 3
    # Halving 128 × 96: every thumbnail pixel is the mean of a 2 × 2 block, min-max scaled.
    blocks = x[3].numpy().reshape(3, 64, 2, 48, 2).mean(axis=(2, 4)).transpose(1, 2, 0)
    got = log.thumbnail.values[3].astype(int)
    assert np.abs(got - _scaled(blocks).astype(int)).max() <= 1


def test_thumbnail_shapes_and_scaling():
    assert thumbnail_shape(224, 224) == (64, 64)
    assert thumbnail_shape(300, 100) == (64, 21)
    assert thumbnail_shape(1000, 1) == (64, 1)
    assert thumbnail_shape(28, 28) == (28, 28)
    rgba = torch.rand(2, 4, 10, 10)
    assert image_thumbnails(rgba).shape == (2, 10, 10, 3)  # alpha dropped
    assert image_thumbnails(torch.rand(2, 7, 9)).shape == (2, 7, 9, 1)  # (N, H, W)
    flat = image_thumbnails(torch.full((1, 1, 3, 3), 5.0))
    assert (flat == 0).all()  # a constant image is all 0
    nan = torch.rand(1, 1, 4, 4)
    nan[0, 0, 0, 0] = float("nan")
    out = image_thumbnails(nan)
    assert out.min() == 0 and out.max() == 255 and out[0, 0, 0, 0] == 0
