"""An analysis carries small images of its probe samples, so a result alone shows them."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

import filterscope as fs
from filterscope.log.evaluation import image_thumbnails


class _Conv5(nn.Module):
    """A CNN over 5-channel inputs: not images a thumbnail could show."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(5, 4, 3)
        self.head = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.conv(x).mean((2, 3)))


def test_probe_thumbnails_are_the_probe_images_in_sample_order() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 3, 3), nn.ReLU(), nn.Flatten(), nn.LazyLinear(4))
    x = torch.randn(40, 1, 12, 12)
    x[7] = -x[7]
    y = torch.arange(40) % 4
    model(x[:2])
    result = fs.analyze(model, (x, y), n_samples=24, progress=False)
    ds = result.dataset
    thumbs = ds["thumbnail"]
    assert thumbs.dims == ("sample", "thumb_y", "thumb_x", "thumb_channel")
    assert thumbs.dtype == np.uint8
    ids = ds["sample_id"].values
    expected = image_thumbnails(x[torch.as_tensor(ids)])
    assert expected is not None
    np.testing.assert_array_equal(thumbs.values, expected)
    assert len(set(ids.tolist())) == 24  # a real subset, in the result's own sample order


def test_no_thumbnails_when_the_inputs_are_not_images() -> None:
    torch.manual_seed(0)
    x = torch.randn(30, 5, 9, 9)
    y = torch.arange(30) % 3
    result = fs.analyze(_Conv5(), (x, y), n_samples=20, progress=False)
    assert "thumbnail" not in result.dataset
    assert result.dataset.sizes["sample"] == 20
