"""A real :class:`~filterscope.gmm.AnalysisResult` over synthetic filter point clouds.

The clouds come from :func:`filterscope.gmm.synthetic.make_filter_points` (some filters hold a
planted far-away group of samples, the ground truth); the Gaussian mixtures, K selection and
anomaly rule are the engine's own (:class:`~filterscope.gmm.FilterGMM`), and the result is
assembled as :func:`filterscope.analyze` assembles it. Used by the AnomalyTable tests.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import xarray as xr

from filterscope.gmm import AnalysisResult, FilterGMM
from filterscope.gmm.analyze import _dataset, _table
from filterscope.gmm.synthetic import SyntheticTruth, make_filter_points


def planted_result(
    layers: Sequence[tuple[str, int]] = (("conv1", 4), ("conv2", 6)),
    n_samples: int = 200,
    *,
    sample_ids: np.ndarray | None = None,
    labels: np.ndarray | None = None,
    thumbnails: np.ndarray | None = None,
    random_state: int = 0,
) -> tuple[AnalysisResult, SyntheticTruth]:
    """Fit the engine on synthetic clouds, every other filter with a planted group.

    ``layers`` are ``(name, channels)``; ``sample_ids`` and ``labels`` default to
    ``0..n_samples-1`` and ``id % 10``; ``thumbnails`` (uint8, sample × row × column × channel)
    are carried in the result's dataset when given.
    """
    n_filters = sum(c for _, c in layers)
    points, truth = make_filter_points(
        n_filters, n_samples, kinds=("gaussian", "planted"), random_state=random_state
    )
    ids = np.arange(n_samples, dtype=np.int64) if sample_ids is None else sample_ids
    label = ids % 10 if labels is None else labels
    layer_of = np.concatenate([[name] * c for name, c in layers]).astype(str)
    channel_of = np.concatenate([np.arange(c) for _, c in layers]).astype(np.int64)
    ds = xr.Dataset(
        {
            "points": (("filter", "sample", "pc"), points.astype(np.float32)),
            "explained_variance": (("filter",), np.full(n_filters, 0.8, np.float32)),
        },
        coords={
            "filter": np.arange(n_filters, dtype=np.int64),
            "filter_layer": ("filter", layer_of),
            "filter_channel": ("filter", channel_of),
            "sample": np.arange(n_samples, dtype=np.int64),
            "sample_id": ("sample", np.asarray(ids, np.int64)),
            "label": ("sample", np.asarray(label, np.int64)),
            "pc": np.array([0, 1], dtype=np.int64),
        },
        attrs={"n_samples": n_samples, "where": "output", "device": "cpu"},
    )
    gmm = FilterGMM(k_range=(1, 4), random_state=random_state, device="cpu")
    gmm.fit(ds)
    dataset = _dataset(ds, gmm)
    if thumbnails is not None:
        dataset["thumbnail"] = (("sample", "row", "column", "channel"), thumbnails)
    return AnalysisResult(table=_table(dataset, gmm), dataset=dataset, gmm=gmm), truth
