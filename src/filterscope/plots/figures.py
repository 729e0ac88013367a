"""Bokeh figures of a filterscope log: the widgets' charts as static plots.

Every figure takes a log (opened with ``filterscope.open_log``, whose index
:func:`filterscope.index_of` opens or builds) or an :class:`~filterscope.index.Index`, and draws
what :meth:`Index.query`, :mod:`filterscope.index.summaries` and :mod:`filterscope.dynamics`
return for a window at the level that fits the figure's width: the same call, hence the same
numbers, as a widget showing that window. A long series is drawn as the mean of each bucket
with its min-max envelope; nothing is thinned or reduced here. Figures draw against the
optimizer step on their x axis, so figures passed the same ``x_range`` pan and zoom together and
figures passed the same ``crosshair`` span show one synchronised hover line (as in DeepTracker,
ACM TIST 2018). :func:`training_figures` builds the whole linked stack.
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

from filterscope.dynamics import anomaly_counts
from filterscope.errors import LogFormatError
from filterscope.index import Index, index_of
from filterscope.index.summaries import (
    class_accuracy,
    layer_filter_mean,
    layer_mean_abs,
    lowest_accuracy_classes,
    stat_layers,
)
from filterscope.log.reader import eval_set_names
from filterscope.plots.colors import ACCURACY_PALETTE

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
#: Buckets a line is drawn with: one per pixel of the figure's width, as a view asks for.
LINE_COLUMNS = WIDTH
#: Cells per heat-map row (at least 3 pixels each): the page stays responsive with many rows.
MAX_COLUMNS = 300
# Class heat lines beyond this many show only the classes with the lowest mean accuracy.
MAX_CLASS_ROWS = 50
NAN_COLOR = "#f0f0f0"


LogOrIndex = xr.Dataset | Index


def _index(log: LogOrIndex) -> Index:
    """The index to draw from: ``log`` itself, or the index of a log opened from its path."""
    return log if isinstance(log, Index) else index_of(log)


def _require(idx: Index, *names: str) -> None:
    missing = [n for n in names if n not in idx.specs]
    if missing:
        raise LogFormatError(
            f"the log has no {', '.join(repr(m) for m in missing)} to draw; expected a "
            "filterscope log (open it with filterscope.open_log). Its index holds: "
            f"{', '.join(sorted(idx.specs)) or 'no variables'}."
        )


def shared_axes(log: LogOrIndex) -> tuple[Range1d, Span]:
    """An x range covering every step and snapshot of ``log``, and a vertical crosshair span.

    Pass both to each figure function to link pan/zoom and the hover line.
    """
    ds = log.log if isinstance(log, Index) else log
    ends: list[float] = []
    if "step" in ds.dims and ds.sizes["step"]:
        step = ds["step"].values
        ends += [float(step[0]), float(step[-1])]
    edges = _snapshot_edges(ds)
    if edges.size:
        ends += [float(edges[0]), float(edges[-1])]
    start, end = (min(ends), max(ends)) if ends else (0.0, 1.0)
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
    y_range: Range1d | DataRange1d | FactorRange | None = None,
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


def _cell_edges(x: np.ndarray) -> np.ndarray:
    """Edges of cells centred on the (sorted) x positions: midpoints, extended at both ends."""
    if x.size == 0:
        return x
    if x.size == 1:
        return np.array([x[0] - 0.5, x[0] + 0.5])
    mid = (x[1:] + x[:-1]) / 2
    return np.concatenate([[2 * x[0] - mid[0]], mid, [2 * x[-1] - mid[-1]]])


def _snapshot_x(log: xr.Dataset) -> np.ndarray:
    """Where each snapshot sits on the step axis: ``snapshot_step`` (else the labels)."""
    for name in ("snapshot_step", "snapshot"):
        if name in log.coords:
            return np.asarray(log[name].values, dtype=float)
    return np.zeros(0)


def _snapshot_edges(log: xr.Dataset) -> np.ndarray:
    return _cell_edges(_snapshot_x(log))


def _bucket_extent(idx: Index, values: xr.DataArray, time: str) -> tuple[np.ndarray, np.ndarray]:
    """Left and right x (in steps) of every bucket of an index answer over ``time``: a
    snapshot bucket spans its snapshots' cells, a step bucket its steps."""
    first = np.asarray(values["bucket_start"].values)
    last = np.asarray(values["bucket_stop"].values)
    if time == "step":
        return first.astype(float) - 0.5, last.astype(float) + 0.5
    labels = idx.labels("snapshot")
    edges = _snapshot_edges(idx.log)[: labels.size + 1]
    return (
        edges[np.searchsorted(labels, first)],
        edges[np.searchsorted(labels, last) + 1],
    )


def _line_source(idx: Index, answer: xr.DataArray) -> ColumnDataSource:
    """One row per bucket: x at the bucket's centre, the mean, and the min-max envelope."""
    time = str(answer.dims[1])
    left, right = _bucket_extent(idx, answer, time)
    x = answer["bucket_start"].values if answer.attrs["level"] == 0 and time == "step" else None
    if time == "snapshot" and answer.attrs["level"] == 0:
        x = _snapshot_x(idx.log)[np.searchsorted(idx.labels("snapshot"), answer[time])]
    return ColumnDataSource(
        {
            "x": (left + right) / 2 if x is None else np.asarray(x),
            "y": np.asarray(answer.sel(agg="mean").values, dtype=float),
            "low": np.asarray(answer.sel(agg="min").values, dtype=float),
            "high": np.asarray(answer.sel(agg="max").values, dtype=float),
            time: np.asarray(answer["bucket_start"].values),
        }
    )


def _line(
    p: figure,
    idx: Index,
    name: str,
    color: str,
    label: str,
    hover: list,
    *,
    markers: bool = False,
    columns: int = LINE_COLUMNS,
) -> None:
    answer = idx.query(name, columns=columns)
    source = _line_source(idx, answer)
    if answer.attrs["level"] > 0:  # buckets: show what each mean summarises
        p.varea("x", "low", "high", source=source, color=color, alpha=0.2, legend_label=label)
    hover.append(
        p.line(
            "x",
            "y",
            source=source,
            color=color,
            alpha=0.7 if not markers else 1.0,
            line_width=2 if markers else 1,
            legend_label=label,
        )
    )
    if markers and answer.attrs["level"] == 0:
        p.scatter("x", "y", source=source, color=color, size=4, legend_label=label)


def _curves(
    idx: Index,
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
    if train_name in idx.specs and idx.specs[train_name].time == "step":
        _line(p, idx, train_name, "#999999", "train (per step)", lines)
    for i, name in enumerate(eval_set_names(idx.log)):
        # An eval set named "train" shares its error's name with the per-step train error.
        var = f"{name}_{kind}"
        if var in idx.specs and idx.specs[var].time == "snapshot" and not idx.specs[var].dims:
            color = Category10_10[i % 10]
            _line(p, idx, var, color, f"{name} (per snapshot)", lines, markers=True)
    p.add_tools(HoverTool(renderers=lines, tooltips=[("step", "@x"), (kind, "@y{0.0000}")]))
    p.legend.click_policy = "hide"
    p.legend.location = "top_right"
    return p


def loss_figure(
    log: LogOrIndex, *, x_range: Range1d | None = None, crosshair: Span | None = None
) -> figure:
    """Train loss per step and every evaluation set's loss per snapshot, on a log scale.

    The log scale keeps the overfitting gap readable: the training loss falls by orders of
    magnitude while the validation loss turns upward. Series longer than the figure is wide
    are drawn as bucket means with their min-max envelope, at the index level a view of the
    same width would ask for.

    Parameters
    ----------
    log : xarray.Dataset or Index
        A log from :func:`filterscope.open_log` (its index is opened, or built on first use,
        with :func:`filterscope.index_of`), or an index (e.g. from
        :func:`filterscope.index.build_index` for a log built in memory).
    x_range, crosshair : optional
        Shared range and span from :func:`shared_axes`.

    Examples
    --------
    >>> from filterscope.plots import loss_figure
    >>> # loss_figure(fs.open_log("runs/demo")) returns a bokeh figure
    """
    idx = _index(log)
    _require(idx, "loss")
    return _curves(idx, "loss", "Loss", x_range, crosshair, y_axis_type="log")


def error_figure(
    log: LogOrIndex, *, x_range: Range1d | None = None, crosshair: Span | None = None
) -> figure:
    """Train error per step and every evaluation set's error per snapshot (see
    :func:`loss_figure` for ``log``)."""
    return _curves(_index(log), "error", "Error rate", x_range, crosshair, DataRange1d(start=0))


def lr_figure(
    log: LogOrIndex, *, x_range: Range1d | None = None, crosshair: Span | None = None
) -> figure:
    """Learning rate per step (see :func:`loss_figure` for ``log``)."""
    idx = _index(log)
    _require(idx, "lr")
    p = _figure(
        "Learning rate", x_range, crosshair, 140, y_axis_label="lr", y_range=DataRange1d(start=0)
    )
    lines: list = []
    _line(p, idx, "lr", Category10_10[3], "lr", lines)
    p.legend.visible = False
    p.add_tools(HoverTool(renderers=lines, tooltips=[("step", "@x"), ("lr", "@y{0.000000}")]))
    return p


def heatmap_figure(
    values: xr.DataArray,
    log: LogOrIndex,
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
    """Draw a ``(row, snapshot)`` index answer as one coloured cell per row and bucket.

    A cell spans the snapshots of its bucket (``bucket_start`` to ``bucket_stop``), each
    snapshot's cell centred on its ``snapshot_step`` and as wide as the gaps to its neighbours;
    rows run top to bottom in ``row_labels`` order. Values that are NaN (or not positive with
    ``log_scale``) are drawn grey.

    Parameters
    ----------
    values : xarray.DataArray
        ``(row, snapshot)`` with ``bucket_start`` / ``bucket_stop`` on ``snapshot``: one
        aggregate of :meth:`Index.query` (e.g. ``.sel(agg="mean")``), transposed.
    log : xarray.Dataset or Index
        The log or its index, for ``snapshot_step``.
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
    idx = _index(log)
    data = np.asarray(values.values, dtype=float)
    left, right = _bucket_extent(idx, values, "snapshot")
    n_rows, n_cols = data.shape
    labels = [str(r) for r in row_labels]
    source = ColumnDataSource(
        {
            "x": np.tile((left + right) / 2, n_rows),
            "w": np.tile(right - left, n_rows),
            "row": np.repeat(labels, n_cols).tolist(),
            "snapshot": np.tile(np.asarray(values["bucket_start"].values), n_rows),
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


def gradient_figure(
    log: LogOrIndex,
    *,
    variable: str = "grad_stat",
    x_range: Range1d | None = None,
    crosshair: Span | None = None,
) -> figure:
    """Heatmap, layers × snapshots, of the mean absolute gradient (or weight) per parameter.

    DeepTracker's default layer chart; log colour scale. Values from
    :func:`filterscope.index.summaries.layer_mean_abs`.
    """
    idx = _index(log)
    _require(idx, variable)
    mean_abs = layer_mean_abs(idx, variable, columns=MAX_COLUMNS).sel(agg="mean")
    what = "gradient" if variable == "grad_stat" else "weight"
    return heatmap_figure(
        mean_abs.transpose("layer", "snapshot"),
        idx,
        title=f"Mean |{what}| per parameter",
        row_labels=[str(n) for n in mean_abs["layer_name"].values],
        log_scale=True,
        x_range=x_range,
        crosshair=crosshair,
    )


def change_ratio_figure(
    log: LogOrIndex,
    threshold: float = 0.01,
    *,
    x_range: Range1d | None = None,
    crosshair: Span | None = None,
) -> figure:
    """Heatmap, layers × snapshots, of the fraction of weights with ``|g / w| ≤ threshold``.

    The recorded threshold nearest to ``threshold`` is drawn.
    """
    idx = _index(log)
    _require(idx, "change_ratio")
    t = idx.log["threshold"].sel(threshold=threshold, method="nearest").values.item()
    layers = stat_layers(idx)
    ratio = idx.query(
        "change_ratio", columns=MAX_COLUMNS, rows={"layer": layers.values, "threshold": t}
    ).sel(agg="mean")
    names = idx.log["layer_name"].sel(layer=layers.values).values
    return heatmap_figure(
        ratio.transpose("layer", "snapshot"),
        idx,
        title=f"Change ratio: fraction of weights with |g/w| ≤ {t:g}",
        row_labels=[str(n) for n in names],
        palette=Cividis256,
        low=0.0,
        high=1.0,
        x_range=x_range,
        crosshair=crosshair,
    )


def filter_cosine_figure(
    log: LogOrIndex, *, x_range: Range1d | None = None, crosshair: Span | None = None
) -> figure:
    """Heatmap, layers × snapshots, of the mean cosine between each filter and its previous value.

    Dark cells are layers whose filters turned the most since the previous snapshot. Values
    from :func:`filterscope.index.summaries.layer_filter_mean`.
    """
    idx = _index(log)
    _require(idx, "filter_cosine")
    cosine = layer_filter_mean(idx, "filter_cosine", columns=MAX_COLUMNS).sel(agg="mean")
    return heatmap_figure(
        cosine.transpose("layer", "snapshot"),
        idx,
        title="Filter cosine similarity to the previous snapshot (layer mean)",
        row_labels=[str(n) for n in cosine["layer_name"].values],
        palette=Viridis256,
        high=1.0,
        x_range=x_range,
        crosshair=crosshair,
    )


def class_accuracy_figure(
    log: LogOrIndex, *, x_range: Range1d | None = None, crosshair: Span | None = None
) -> figure:
    """One heat line per class: the primary evaluation set's class accuracy at every snapshot.

    With more than :data:`MAX_CLASS_ROWS` classes only that many are drawn: those with the
    lowest mean accuracy over the run (the index's coarsest level), in class order.
    """
    idx = _index(log)
    _require(idx, "class_error")
    title = "Class accuracy (primary evaluation set)"
    classes = idx.labels("class")
    wanted = None
    if classes.size > MAX_CLASS_ROWS:
        wanted = lowest_accuracy_classes(idx, MAX_CLASS_ROWS)
        title += f": the {MAX_CLASS_ROWS} of {classes.size} classes with the lowest mean accuracy"
    acc = class_accuracy(idx, columns=MAX_COLUMNS, class_=wanted).sel(agg="mean")
    if "class_name" in acc.coords:
        labels = [str(n) for n in acc["class_name"].values]
    else:
        labels = [str(c) for c in acc["class"].values]
    return heatmap_figure(
        acc.transpose("class", "snapshot"),
        idx,
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
    """Number of anomaly filters at each analysed snapshot (hypothesis H1, arXiv 2412.10457).

    Counts from :func:`filterscope.dynamics.anomaly_counts`; analysed snapshots are few (one
    every ``analyze_every``), so every one is drawn.
    """
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


def training_figures(log: LogOrIndex, analysis: xr.Dataset | None = None) -> LayoutDOM:
    """Every figure the log supports, stacked, with linked x ranges and one hover line.

    Figures whose variables the log lacks are left out, so partial logs still plot.

    Parameters
    ----------
    log : xarray.Dataset or Index
        A log opened from its path (its index is opened or built with
        :func:`filterscope.index_of`), or an index.
    analysis : xarray.Dataset, optional
        The log's analysis group (``open_log(path, group="analysis")``); adds the anomaly-filter
        count per analysed snapshot.

    Returns
    -------
    bokeh.models.LayoutDOM
        A column of figures.
    """
    idx = _index(log)
    x_range, crosshair = shared_axes(idx)
    has = set(idx.specs)
    figures = []
    if "loss" in has:
        figures.append(loss_figure(idx, x_range=x_range, crosshair=crosshair))
    if "train_error" in has or any(f"{s}_error" in has for s in eval_set_names(idx.log)):
        figures.append(error_figure(idx, x_range=x_range, crosshair=crosshair))
    if "lr" in has:
        figures.append(lr_figure(idx, x_range=x_range, crosshair=crosshair))
    if "class_error" in has:
        figures.append(class_accuracy_figure(idx, x_range=x_range, crosshair=crosshair))
    if "grad_stat" in has and "node_grad_stat" in has:
        figures.append(gradient_figure(idx, x_range=x_range, crosshair=crosshair))
    if "change_ratio" in has:
        figures.append(change_ratio_figure(idx, x_range=x_range, crosshair=crosshair))
    if "filter_cosine" in has:
        figures.append(filter_cosine_figure(idx, x_range=x_range, crosshair=crosshair))
    if analysis is not None and "anomaly" in analysis:
        figures.append(anomaly_count_figure(analysis, x_range=x_range, crosshair=crosshair))
    return column(*figures)
