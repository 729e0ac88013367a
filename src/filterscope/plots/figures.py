"""Bokeh figures of a filterscope log: the widgets' charts as static plots.

Every figure takes the log Dataset (``filterscope.open_log``) and draws against the optimizer
step on its x axis, so figures passed the same ``x_range`` pan and zoom together and figures
passed the same ``crosshair`` span show one synchronised hover line (as in DeepTracker, ACM TIST
2018). :func:`training_figures` builds the whole linked stack. Reductions live in
:mod:`filterscope.plots.aggregates`; this module only draws.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import xarray as xr
from bokeh.layouts import column
from bokeh.models.annotations import ColorBar, Span
from bokeh.models.layouts import LayoutDOM
from bokeh.models.ranges import DataRange1d, FactorRange, Range1d
from bokeh.models.sources import ColumnDataSource
from bokeh.models.tools import CrosshairTool, HoverTool
from bokeh.palettes import Category10_10, Cividis256, Viridis256
from bokeh.plotting import figure
from bokeh.transform import linear_cmap, log_cmap

from filterscope.plots.aggregates import (
    anomaly_counts,
    class_accuracy,
    eval_set_names,
    layer_filter_mean,
    mean_abs_per_parameter,
    require,
)

__all__ = [
    "ACCURACY_PALETTE",
    "anomaly_count_figure",
    "change_ratio_figure",
    "class_accuracy_figure",
    "error_figure",
    "filter_cosine_figure",
    "gradient_figure",
    "heatmap_figure",
    "loss_figure",
    "lr_figure",
    "shared_axes",
    "training_figures",
]

WIDTH = 900
LINE_HEIGHT = 200
TOOLS = "xpan,xwheel_zoom,box_zoom,reset,save"
# A static page stays responsive with this many points per line and cells per heatmap row;
# longer logs are drawn at every k-th step / snapshot (the widgets show everything).
MAX_LINE_POINTS = 5000
MAX_COLUMNS = 300
# Class heat lines beyond this many show only the classes with the lowest mean accuracy.
MAX_CLASS_ROWS = 50
NAN_COLOR = "#f0f0f0"


def _interpolate_palette(stops: Sequence[tuple[float, str]], n: int = 256) -> tuple[str, ...]:
    positions = np.array([p for p, _ in stops])
    rgb = np.array([[int(c[i : i + 2], 16) for i in (1, 3, 5)] for _, c in stops], dtype=float)
    grid = np.linspace(0.0, 1.0, n)
    channels = [np.interp(grid, positions, rgb[:, k]) for k in range(3)]
    return tuple("#{:02x}{:02x}{:02x}".format(*(round(ch[i]) for ch in channels)) for i in range(n))


#: DeepTracker's class-accuracy scale: red at 0, pale yellow at 0.5, light green just above 0.5,
#: dark green at 1, so "worse than chance between two classes" reads red at a glance.
ACCURACY_PALETTE = _interpolate_palette(
    [(0.0, "#dd261c"), (0.5, "#ffffbf"), (0.52, "#d9ef8b"), (1.0, "#0e9247")]
)


def shared_axes(log: xr.Dataset) -> tuple[Range1d, Span]:
    """An x range covering every step and snapshot of ``log``, and a vertical crosshair span.

    Pass both to each figure function to link pan/zoom and the hover line.
    """
    steps = [np.asarray(log["step"].values)] if "step" in log.dims else []
    if "snapshot_step" in log.coords:
        edges = _cell_edges(np.asarray(log["snapshot_step"].values, dtype=float))
        steps.append(edges)
    values = np.concatenate([s.astype(float) for s in steps if s.size]) if steps else np.zeros(1)
    start, end = float(values.min()), float(values.max())
    if end <= start:
        end = start + 1.0
    return (
        Range1d(start=start, end=end),
        Span(dimension="height", line_color="#555555", line_width=1),
    )


def _figure(
    title: str,
    x_range: Range1d | None,
    crosshair: Span | None,
    height: int,
    y_axis_label: str | None = None,
    y_range: DataRange1d | FactorRange | None = None,
    y_axis_type: Literal["auto", "log"] = "auto",
) -> figure:
    # Ranges go to the constructor, which picks the matching scale (categorical for factors).
    ranges: dict[str, Any] = {}
    if x_range is not None:
        ranges["x_range"] = x_range
    if y_range is not None:
        ranges["y_range"] = y_range
    p = figure(
        title=title,
        width=WIDTH,
        height=height,
        tools=TOOLS,
        active_scroll="xwheel_zoom",
        x_axis_label="step",
        y_axis_label=y_axis_label,
        y_axis_type=y_axis_type,
        **ranges,
    )
    if crosshair is not None:
        p.add_tools(CrosshairTool(overlay=crosshair))
    p.toolbar.logo = None
    return p


def _thin(n: int, limit: int) -> np.ndarray:
    return np.arange(0, n, max(1, -(-n // limit)))


def _cell_edges(x: np.ndarray) -> np.ndarray:
    """Edges of cells centred on the (sorted) x positions: midpoints, extended at both ends."""
    if x.size == 0:
        return x
    if x.size == 1:
        return np.array([x[0] - 0.5, x[0] + 0.5])
    mid = (x[1:] + x[:-1]) / 2
    return np.concatenate([[2 * x[0] - mid[0]], mid, [2 * x[-1] - mid[-1]]])


def _step_line(p: figure, log: xr.Dataset, name: str, color: str, label: str, hover: list) -> None:
    idx = _thin(log.sizes["step"], MAX_LINE_POINTS)
    values = log[name].isel(step=idx)
    source = ColumnDataSource(
        {"x": log["step"].values[idx], "y": np.asarray(values.values, dtype=float)}
    )
    hover.append(p.line("x", "y", source=source, color=color, alpha=0.7, legend_label=label))


def _snapshot_line(
    p: figure, log: xr.Dataset, name: str, color: str, label: str, hover: list
) -> None:
    source = ColumnDataSource(
        {
            "x": log["snapshot_step"].values,
            "y": np.asarray(log[name].values, dtype=float),
            "snapshot": log["snapshot"].values,
        }
    )
    hover.append(p.line("x", "y", source=source, color=color, line_width=2, legend_label=label))
    p.scatter("x", "y", source=source, color=color, size=4, legend_label=label)


def _curves(
    log: xr.Dataset,
    kind: str,
    title: str,
    x_range: Range1d | None,
    crosshair: Span | None,
    y_range: DataRange1d | None = None,
    y_axis_type: Literal["auto", "log"] = "auto",
) -> figure:
    train_name = "loss" if kind == "loss" else "train_error"
    p = _figure(
        title,
        x_range,
        crosshair,
        LINE_HEIGHT,
        y_axis_label=kind,
        y_range=y_range,
        y_axis_type=y_axis_type,
    )
    lines: list = []
    if train_name in log:
        _step_line(p, log, train_name, "#999999", "train (per step)", lines)
    for i, name in enumerate(eval_set_names(log)):
        # An eval set named "train" shares its error's name with the per-step train error.
        if f"{name}_{kind}" in log and log[f"{name}_{kind}"].dims == ("snapshot",):
            color = Category10_10[i % 10]
            _snapshot_line(p, log, f"{name}_{kind}", color, f"{name} (per snapshot)", lines)
    p.add_tools(HoverTool(renderers=lines, tooltips=[("step", "@x"), (kind, "@y{0.0000}")]))
    p.legend.click_policy = "hide"
    p.legend.location = "top_right"
    return p


def loss_figure(
    log: xr.Dataset, *, x_range: Range1d | None = None, crosshair: Span | None = None
) -> figure:
    """Train loss per step and every evaluation set's loss per snapshot, on a log scale.

    The log scale keeps the overfitting gap readable: the training loss falls by orders of
    magnitude while the validation loss turns upward.

    Examples
    --------
    >>> from filterscope.plots import loss_figure
    >>> # loss_figure(fs.open_log("runs/demo")) returns a bokeh figure
    """
    require(log, "loss")
    return _curves(log, "loss", "Loss", x_range, crosshair, y_axis_type="log")


def error_figure(
    log: xr.Dataset, *, x_range: Range1d | None = None, crosshair: Span | None = None
) -> figure:
    """Train error per step and every evaluation set's error per snapshot."""
    return _curves(log, "error", "Error rate", x_range, crosshair, DataRange1d(start=0))


def lr_figure(
    log: xr.Dataset, *, x_range: Range1d | None = None, crosshair: Span | None = None
) -> figure:
    """Learning rate per step."""
    require(log, "lr")
    p = _figure(
        "Learning rate", x_range, crosshair, 140, y_axis_label="lr", y_range=DataRange1d(start=0)
    )
    lines: list = []
    _step_line(p, log, "lr", Category10_10[3], "lr", lines)
    p.legend.visible = False
    p.add_tools(HoverTool(renderers=lines, tooltips=[("step", "@x"), ("lr", "@y{0.000000}")]))
    return p


def heatmap_figure(
    values: xr.DataArray,
    log: xr.Dataset,
    *,
    title: str,
    row_labels: Sequence[str],
    palette: Sequence[str] = Viridis256,
    log_scale: bool = False,
    low: float | None = None,
    high: float | None = None,
    x_range: Range1d | None = None,
    crosshair: Span | None = None,
) -> figure:
    """Draw a ``(row, snapshot)`` array as one coloured cell per row and snapshot.

    Cells are centred on ``snapshot_step`` and as wide as the gap to the neighbouring
    snapshots; rows run top to bottom in ``row_labels`` order. Values that are NaN (or not
    positive with ``log_scale``) are drawn grey.

    Parameters
    ----------
    values : xarray.DataArray
        Two-dimensional, ``snapshot`` last.
    log : xarray.Dataset
        The log, for ``snapshot_step``.
    title : str
        Figure title.
    row_labels : sequence of str
        One label per row of ``values``.
    palette : sequence of str, default=Viridis256
        Colour palette, low to high.
    log_scale : bool, default=False
        Map colours on a log scale.
    low, high : float, optional
        Colour range; defaults to the finite data range.
    x_range, crosshair : optional
        Shared range and span from :func:`shared_axes`.
    """
    s_idx = _thin(values.sizes["snapshot"], MAX_COLUMNS)
    data = np.asarray(values.isel(snapshot=s_idx).values, dtype=float)
    steps = np.asarray(log["snapshot_step"].values, dtype=float)[s_idx]
    edges = _cell_edges(steps)
    n_rows, n_cols = data.shape
    labels = [str(r) for r in row_labels]
    source = ColumnDataSource(
        {
            "x": np.tile(steps, n_rows),
            "w": np.tile(np.diff(edges), n_rows) if n_cols else np.zeros(0),
            "row": np.repeat(labels, n_cols).tolist(),
            "snapshot": np.tile(np.asarray(log["snapshot"].values)[s_idx], n_rows),
            "value": data.ravel(),
        }
    )
    finite = data[np.isfinite(data) & ((data > 0) if log_scale else True)]
    lo = low if low is not None else (float(finite.min()) if finite.size else 0.0)
    hi = high if high is not None else (float(finite.max()) if finite.size else 1.0)
    if hi <= lo:
        hi = lo * 10 if log_scale and lo > 0 else lo + 1.0
    make_cmap = log_cmap if log_scale else linear_cmap
    cmap = make_cmap("value", list(palette), lo, hi, nan_color=NAN_COLOR)
    height = max(140, min(900, 50 + 22 * n_rows))
    p = _figure(
        title,
        x_range,
        crosshair,
        height,
        y_range=FactorRange(factors=labels[::-1], range_padding=0),
    )
    cells = p.rect("x", "row", "w", 1, source=source, fill_color=cmap, line_color=None)
    p.add_tools(
        HoverTool(
            renderers=[cells],
            tooltips=[
                ("row", "@row"),
                ("snapshot", "@snapshot"),
                ("step", "@x"),
                ("value", "@value"),
            ],
        )
    )
    p.add_layout(ColorBar(color_mapper=cmap["transform"], width=10), "right")
    p.grid.visible = False
    return p


def _stat_rows(log: xr.Dataset, values: xr.DataArray) -> tuple[xr.DataArray, list[str]]:
    """Keep the layers that have statistics (batch norm is listed but skipped)."""
    if "layer_has_stats" in log.coords:
        keep = np.asarray(log["layer_has_stats"].values, dtype=bool)
        values = values.isel(layer=np.flatnonzero(keep))
    names = log["layer_name"].sel(layer=values["layer"]).values if "layer_name" in log else None
    labels = [str(n) for n in names] if names is not None else [str(i) for i in values["layer"]]
    return values, labels


def gradient_figure(
    log: xr.Dataset,
    *,
    variable: str = "grad_stat",
    x_range: Range1d | None = None,
    crosshair: Span | None = None,
) -> figure:
    """Heatmap, layers × snapshots, of the mean absolute gradient (or weight) per parameter.

    DeepTracker's default layer chart; log colour scale.
    """
    values, labels = _stat_rows(log, mean_abs_per_parameter(log, variable))
    what = "gradient" if variable == "grad_stat" else "weight"
    return heatmap_figure(
        values,
        log,
        title=f"Mean |{what}| per parameter",
        row_labels=labels,
        log_scale=True,
        x_range=x_range,
        crosshair=crosshair,
    )


def change_ratio_figure(
    log: xr.Dataset,
    threshold: float = 0.01,
    *,
    x_range: Range1d | None = None,
    crosshair: Span | None = None,
) -> figure:
    """Heatmap, layers × snapshots, of the fraction of weights with ``|g / w| ≤ threshold``."""
    require(log, "change_ratio")
    values = log["change_ratio"].sel(threshold=threshold, method="nearest")
    t = float(values["threshold"])
    values, labels = _stat_rows(log, values.transpose("layer", "snapshot").compute())
    return heatmap_figure(
        values,
        log,
        title=f"Change ratio: fraction of weights with |g/w| ≤ {t:g}",
        row_labels=labels,
        palette=Cividis256,
        low=0.0,
        high=1.0,
        x_range=x_range,
        crosshair=crosshair,
    )


def filter_cosine_figure(
    log: xr.Dataset, *, x_range: Range1d | None = None, crosshair: Span | None = None
) -> figure:
    """Heatmap, layers × snapshots, of the mean cosine between each filter and its previous value.

    Dark cells are layers whose filters turned the most since the previous snapshot.
    """
    values, labels = _stat_rows(log, layer_filter_mean(log, "filter_cosine"))
    return heatmap_figure(
        values,
        log,
        title="Filter cosine similarity to the previous snapshot (layer mean)",
        row_labels=labels,
        palette=Viridis256,
        high=1.0,
        x_range=x_range,
        crosshair=crosshair,
    )


def class_accuracy_figure(
    log: xr.Dataset, *, x_range: Range1d | None = None, crosshair: Span | None = None
) -> figure:
    """One heat line per class: the primary evaluation set's class accuracy at every snapshot.

    With more than :data:`MAX_CLASS_ROWS` classes only that many are drawn: those with the
    lowest mean accuracy over the run, in class order.
    """
    acc = class_accuracy(log)
    title = "Class accuracy (primary evaluation set)"
    n_classes = acc.sizes["class"]
    if n_classes > MAX_CLASS_ROWS:
        worst = np.argsort(np.nan_to_num(acc.mean("snapshot").values, nan=np.inf), kind="stable")
        acc = acc.isel({"class": np.sort(worst[:MAX_CLASS_ROWS])})
        title += f": the {MAX_CLASS_ROWS} of {n_classes} classes with the lowest mean accuracy"
    if "class_name" in log.coords:
        labels = [str(n) for n in log["class_name"].sel({"class": acc["class"]}).values]
    else:
        labels = [str(c) for c in acc["class"].values]
    return heatmap_figure(
        acc,
        log,
        title=title,
        row_labels=labels,
        palette=ACCURACY_PALETTE,
        low=0.0,
        high=1.0,
        x_range=x_range,
        crosshair=crosshair,
    )


def anomaly_count_figure(
    analysis: xr.Dataset, *, x_range: Range1d | None = None, crosshair: Span | None = None
) -> figure:
    """Number of anomaly filters at each analysed snapshot (hypothesis H1, arXiv 2412.10457)."""
    counts = anomaly_counts(analysis)
    x = (
        analysis["analysis_step"].values
        if "analysis_step" in analysis.coords
        else np.arange(counts.size)
    )
    p = _figure(
        "Anomaly filters per analysed snapshot",
        x_range,
        crosshair,
        LINE_HEIGHT,
        y_axis_label="anomaly filters",
        y_range=DataRange1d(start=0),
    )
    source = ColumnDataSource({"x": x, "y": counts.values})
    line = p.line("x", "y", source=source, color=Category10_10[3], line_width=2)
    p.scatter("x", "y", source=source, color=Category10_10[3], size=6)
    p.add_tools(HoverTool(renderers=[line], tooltips=[("step", "@x"), ("anomaly filters", "@y")]))
    return p


def training_figures(log: xr.Dataset, analysis: xr.Dataset | None = None) -> LayoutDOM:
    """Every figure the log supports, stacked, with linked x ranges and one hover line.

    Figures whose variables the log lacks are left out, so partial logs still plot.

    Parameters
    ----------
    log : xarray.Dataset
        A filterscope log.
    analysis : xarray.Dataset, optional
        The log's analysis group (``open_log(path, group="analysis")``); adds the anomaly-filter
        count per analysed snapshot.

    Returns
    -------
    bokeh.models.LayoutDOM
        A column of figures.
    """
    x_range, crosshair = shared_axes(log)
    figures = []
    if "loss" in log:
        figures.append(loss_figure(log, x_range=x_range, crosshair=crosshair))
    if "train_error" in log or any(f"{s}_error" in log for s in eval_set_names(log)):
        figures.append(error_figure(log, x_range=x_range, crosshair=crosshair))
    if "lr" in log:
        figures.append(lr_figure(log, x_range=x_range, crosshair=crosshair))
    if "correct" in log and "label" in log.coords:
        figures.append(class_accuracy_figure(log, x_range=x_range, crosshair=crosshair))
    if "grad_stat" in log:
        figures.append(gradient_figure(log, x_range=x_range, crosshair=crosshair))
    if "change_ratio" in log:
        figures.append(change_ratio_figure(log, x_range=x_range, crosshair=crosshair))
    if "filter_cosine" in log:
        figures.append(filter_cosine_figure(log, x_range=x_range, crosshair=crosshair))
    if analysis is not None and "anomaly" in analysis:
        figures.append(anomaly_count_figure(analysis, x_range=x_range, crosshair=crosshair))
    return column(*figures)
