"""Static Bokeh plots of a filterscope log and the offline HTML report.

Owns the Bokeh versions of the widgets' charts (:mod:`~filterscope.plots.figures`: training
curves; :mod:`~filterscope.plots.views`: the layer, validation and cube views, coloured by
:mod:`~filterscope.plots.colors`, the widgets' own scales) and
:func:`write_report`, a single self-contained HTML file with BokehJS inlined (nothing is fetched
when it opens). Every number drawn comes from :meth:`filterscope.index.Index.query` (through
:func:`filterscope.index_of`, at the level that fits the figure's width),
:mod:`filterscope.index.summaries` or :mod:`filterscope.dynamics`: plots compute no statistic
and shrink no series themselves. Must not train, write to a log other than through the index,
or import a widget.

Examples
--------
>>> import filterscope as fs
>>> # fs.write_report(fs.open_log("runs/demo"), "runs/demo/report.html")
"""

from __future__ import annotations

from filterscope.plots.figures import (
    anomaly_count_figure,
    change_ratio_figure,
    class_accuracy_figure,
    error_figure,
    filter_cosine_figure,
    gradient_figure,
    heatmap_figure,
    loss_figure,
    lr_figure,
    shared_axes,
    training_figures,
)
from filterscope.plots.report import analysis_table, isolated_samples, view_sections, write_report
from filterscope.plots.views import (
    class_rows_figure,
    cube_figures,
    filter_pixel_figure,
    layer_tree_figure,
    validation_figure,
)

__all__ = [
    "analysis_table",
    "anomaly_count_figure",
    "change_ratio_figure",
    "class_accuracy_figure",
    "class_rows_figure",
    "cube_figures",
    "error_figure",
    "filter_cosine_figure",
    "filter_pixel_figure",
    "gradient_figure",
    "heatmap_figure",
    "isolated_samples",
    "layer_tree_figure",
    "loss_figure",
    "lr_figure",
    "shared_axes",
    "training_figures",
    "validation_figure",
    "view_sections",
    "write_report",
]
