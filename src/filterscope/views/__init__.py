"""JupyterLab views of a filterscope log, as anywidget widgets.

Owns the Python side of every view (one ``ViewWidget`` subclass per view), the shared
:class:`Selection` that links them, and the one serializer that turns numpy arrays into binary
widget messages (``_serialization``). The browser side lives in ``js/`` and is bundled into
``filterscope/static/widget.js``. Views only read a log (or, later, its index) and draw it: they
must not compute statistics, write to a log, or be imported by ``log``, ``gmm`` or ``dynamics``.

Importing this package registers the ``Dataset.filterscope`` accessor.

Examples
--------
>>> import filterscope as fs
>>> log = fs.open_log("runs/demo")  # doctest: +SKIP
>>> fs.ModelInfo(log)  # doctest: +SKIP
"""

from __future__ import annotations

import filterscope.accessor  # noqa: F401  - registers Dataset.filterscope
from filterscope.views.model_info import ModelInfo
from filterscope.views.selection import Selection

__all__ = ["ModelInfo", "Selection"]
