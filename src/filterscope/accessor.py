"""The ``Dataset.filterscope`` accessor: thin forwarders to filterscope's typed functions.

Registered when this module is imported (``filterscope`` imports it). The accessor holds no
state beyond the dataset: every method builds a fresh object from the public API, so
``log.filterscope.model_info()`` and ``filterscope.ModelInfo(log)`` are the same thing.

Examples
--------
>>> import tempfile
>>> import filterscope as fs
>>> from filterscope.data import synthetic_log
>>> path = tempfile.mkdtemp() + "/run"
>>> _ = synthetic_log(
...     path, layers="resnet18", n_samples=40, n_classes=4, n_snapshots=30, plant=False
... )
>>> log = fs.open_log(path)
>>> loss = log.filterscope.index(progress=False).query("loss", columns=10)
>>> loss.attrs["level"] > 0, dict(loss.sizes)["agg"]
(True, 4)
>>> type(log.filterscope.model_info()).__name__
'ModelInfo'
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import xarray as xr

if TYPE_CHECKING:
    from filterscope.index.core import Index
    from filterscope.views.anomaly import AnomalyTable
    from filterscope.views.board import Dashboard
    from filterscope.views.cube import CubeView
    from filterscope.views.layer import LayerView
    from filterscope.views.model_info import ModelInfo
    from filterscope.views.validation import ValidationView


@xr.register_dataset_accessor("filterscope")
class FilterscopeAccessor:
    """Methods on a filterscope log, reached as ``log.filterscope.<method>``."""

    def __init__(self, log: xr.Dataset) -> None:
        self._log = log

    def dashboard(self, **kwargs: Any) -> Dashboard:
        """Every view of the log, linked by one selection; see :class:`filterscope.Dashboard`."""
        from filterscope.views.board import Dashboard

        return Dashboard(self._log, **kwargs)

    def model_info(self, **kwargs: Any) -> ModelInfo:
        """Line charts of loss, error and learning rate; see :class:`filterscope.ModelInfo`."""
        from filterscope.views.model_info import ModelInfo

        return ModelInfo(self._log, **kwargs)

    def cube_view(self, **kwargs: Any) -> CubeView:
        """DeepTracker's cube of layers, classes and iterations; see :class:`filterscope.CubeView`."""
        from filterscope.views.cube import CubeView

        return CubeView(self._log, **kwargs)

    def layer_view(self, **kwargs: Any) -> LayerView:
        """DeepTracker's layer tree of per-node charts; see :class:`filterscope.LayerView`."""
        from filterscope.views.layer import LayerView

        return LayerView(self._log, **kwargs)

    def validation_view(self, **kwargs: Any) -> ValidationView:
        """DeepTracker's class → image heat lines; see :class:`filterscope.ValidationView`."""
        from filterscope.views.validation import ValidationView

        return ValidationView(self._log, **kwargs)

    def anomaly_table(self, result: Any, **kwargs: Any) -> AnomalyTable:
        """An analysis's ranked anomaly filters beside this log; see
        :class:`filterscope.AnomalyTable`."""
        from filterscope.views.anomaly import AnomalyTable

        return AnomalyTable(result, log=self._log, **kwargs)

    def index(self, *, build: bool = True, progress: bool | None = None) -> Index:
        """The log's index, opened or built in its store; see :func:`filterscope.index_of`."""
        from filterscope.index.core import index_of

        return index_of(self._log, build=build, progress=progress)
