"""JupyterLab views of a filterscope log, as anywidget widgets.

Owns the Python side of every view: the framework (``_base``: ``ViewWidget`` with validation,
kernel-owned traits, selection linking and the request handler), one small ``ViewWidget``
subclass per view, the shared :class:`Selection` that links them, where views get their data
(``_data``: the log's index) and the one serializer that turns numpy arrays into binary widget
messages (``_serialization``). The browser side lives in ``js/`` and is bundled into
``filterscope/static/widget.js``. Views draw what ``Index.query`` (and ``filterscope.dynamics``)
answer: they must not compute statistics or shrink series themselves, write to a log, or be
imported by ``log``, ``index``, ``gmm`` or ``dynamics``.

Importing this package registers the ``Dataset.filterscope`` accessor.

Examples
--------
>>> import filterscope as fs
>>> log = fs.open_log("runs/demo")  # doctest: +SKIP
>>> fs.ModelInfo(log)  # doctest: +SKIP
"""

from __future__ import annotations

import filterscope.accessor  # noqa: F401  - registers Dataset.filterscope
from filterscope.views.anomaly import AnomalyTable
from filterscope.views.board import Dashboard, dashboard
from filterscope.views.cube import CubeView
from filterscope.views.layer import LayerView
from filterscope.views.model_info import ModelInfo
from filterscope.views.selection import Selection
from filterscope.views.validation import ValidationView

__all__ = [
    "AnomalyTable",
    "CubeView",
    "Dashboard",
    "LayerView",
    "ModelInfo",
    "Selection",
    "ValidationView",
    "dashboard",
]
