"""The GMM engine: anomaly filters by clustering every filter's feature maps (arXiv 2412.10457).

Owns probe-sample selection (:mod:`~filterscope.gmm.probe`, :func:`select_samples`), the
batched PCA solver (:mod:`~filterscope.gmm.pca`, :func:`pca_2d`), activation capture
(:mod:`~filterscope.gmm.extract`, :func:`extract`), batched EM with Calinski–Harabasz selection
of K (:class:`FilterGMM`), the user-facing :func:`analyze` and the paper's three hypotheses (:func:`overfitting_curve`, :func:`filter_outliers`, :func:`gradient_norms` / :func:`compare_outliers`,
:func:`prune` / :func:`pruning_experiment`). Must not import any view, plot or widget: results
are plain pandas / xarray objects that views and plots read.

Examples
--------
>>> import torch
>>> from torch import nn
>>> from filterscope.gmm import extract
>>> net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU())
>>> extract(net, torch.randn(40, 1, 8, 8), n_samples=20).points.shape
(4, 20, 2)
"""

from __future__ import annotations

# Imported eagerly, not lazily: the functions `extract` and `analyze` share their modules' names,
# and a lazily resolved name would be shadowed by the submodule once it is imported.
from filterscope.gmm.analyze import AnalysisResult, analyze
from filterscope.gmm.estimator import FilterGMM, NotFittedError
from filterscope.gmm.extract import extract
from filterscope.gmm.hypotheses import (
    OutlierComparison,
    OverfittingCurve,
    PruneHandle,
    PruningExperiment,
    compare_outliers,
    filter_outliers,
    gradient_norms,
    overfitting_curve,
    prune,
    pruning_experiment,
)
from filterscope.gmm.pca import pca_2d
from filterscope.gmm.probe import ProbeSet, select_samples

__all__ = [
    "AnalysisResult",
    "FilterGMM",
    "NotFittedError",
    "OutlierComparison",
    "OverfittingCurve",
    "ProbeSet",
    "PruneHandle",
    "PruningExperiment",
    "analyze",
    "compare_outliers",
    "extract",
    "filter_outliers",
    "gradient_norms",
    "overfitting_curve",
    "pca_2d",
    "prune",
    "pruning_experiment",
    "select_samples",
]
