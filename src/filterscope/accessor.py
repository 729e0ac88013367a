"""The ``Dataset.filterscope`` accessor: thin forwarders to filterscope's typed functions.

Registered when this module is imported (``filterscope`` imports it). The accessor holds no
state beyond the dataset: every method builds a fresh object from the public API, so
``log.filterscope.model_info()`` and ``filterscope.ModelInfo(log)`` are the same thing.

Examples
--------
>>> import filterscope as fs
>>> log = fs.open_log("runs/demo")  # doctest: +SKIP
>>> log.filterscope.model_info()  # doctest: +SKIP
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import xarray as xr

if TYPE_CHECKING:
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
