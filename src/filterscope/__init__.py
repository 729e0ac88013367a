"""filterscope: see inside CNN training.

A :class:`Recorder` turns a PyTorch training loop into an xarray log on a zarr store;
:func:`open_log` reads it back lazily; :mod:`filterscope.gmm` finds anomaly filters;
:mod:`filterscope.views` draws everything as linked JupyterLab widgets and
:mod:`filterscope.plots` as static Bokeh figures and an offline HTML report.

Heavy modules (torch, bokeh, anywidget) are imported on first use of a name, so
``import filterscope`` stays cheap.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

import filterscope.accessor  # noqa: F401 - registers the Dataset.filterscope accessor
from filterscope._version import __version__
from filterscope.errors import (
    FilterscopeError,
    InvalidDataError,
    InvalidModelError,
    InvalidParameterError,
    InvalidSelectionError,
    LogAccessError,
    LogExistsError,
    LogFormatError,
    NonFiniteError,
)

# public name -> module that defines it
_LAZY: dict[str, str] = {
    "Recorder": "filterscope.log.recorder",
    "open_log": "filterscope.log.reader",
    "index_of": "filterscope.index.core",
    "FilterGMM": "filterscope.gmm.estimator",
    # Also scikit-learn's NotFittedError, so defined beside FilterGMM: importing scikit-learn
    # would make `import filterscope` about a second slower.
    "NotFittedError": "filterscope.gmm.estimator",
    "extract": "filterscope.gmm.extract",
    "analyze": "filterscope.gmm.analyze",
    "ModelInfo": "filterscope.views.model_info",
    "AnomalyTable": "filterscope.views.anomaly",
    "LayerView": "filterscope.views.layer",
    "CubeView": "filterscope.views.cube",
    "ValidationView": "filterscope.views.validation",
    "Dashboard": "filterscope.views.board",
    "dashboard": "filterscope.views.board",
    "write_report": "filterscope.plots.report",
}
_SUBMODULES = {"log", "models", "data", "gmm", "index", "dynamics", "views", "plots"}

__all__ = [
    "AnomalyTable",
    "CubeView",
    "Dashboard",
    "FilterGMM",
    "FilterscopeError",
    "InvalidDataError",
    "InvalidModelError",
    "InvalidParameterError",
    "InvalidSelectionError",
    "LayerView",
    "LogAccessError",
    "LogExistsError",
    "LogFormatError",
    "ModelInfo",
    "NonFiniteError",
    "NotFittedError",
    "Recorder",
    "ValidationView",
    "__version__",
    "analyze",
    "dashboard",
    "data",
    "dynamics",
    "extract",
    "gmm",
    "index",
    "index_of",
    "log",
    "models",
    "open_log",
    "plots",
    "views",
    "write_report",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    if name in _SUBMODULES:
        module = importlib.import_module(f"filterscope.{name}")
        globals()[name] = module
        return module
    raise AttributeError(f"module 'filterscope' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


if TYPE_CHECKING:
    from filterscope.gmm.analyze import analyze
    from filterscope.gmm.estimator import FilterGMM, NotFittedError
    from filterscope.gmm.extract import extract
    from filterscope.index.core import index_of
    from filterscope.log.reader import open_log
    from filterscope.log.recorder import Recorder
    from filterscope.plots.report import write_report
    from filterscope.views.anomaly import AnomalyTable
    from filterscope.views.board import Dashboard, dashboard
    from filterscope.views.cube import CubeView
    from filterscope.views.layer import LayerView
    from filterscope.views.model_info import ModelInfo
    from filterscope.views.validation import ValidationView
