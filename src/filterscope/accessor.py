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
    from filterscope.views.model_info import ModelInfo


@xr.register_dataset_accessor("filterscope")
class FilterscopeAccessor:
    """Methods on a filterscope log, reached as ``log.filterscope.<method>``."""

    def __init__(self, log: xr.Dataset) -> None:
        self._log = log

    def model_info(self, **kwargs: Any) -> ModelInfo:
        """Line charts of loss, error and learning rate; see :class:`filterscope.ModelInfo`."""
        from filterscope.views.model_info import ModelInfo

        return ModelInfo(self._log, **kwargs)

    def index(self, *, build: bool = True, progress: bool | None = None) -> Index:
        """The log's index, opened or built in its store; see :func:`filterscope.index_of`."""
        from filterscope.index.core import index_of

        return index_of(self._log, build=build, progress=progress)
