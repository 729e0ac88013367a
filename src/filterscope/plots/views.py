"""Static Bokeh figures of the dashboard's views: LayerView, ValidationView and CubeView.

Each figure asks the same functions the widget asks (:mod:`filterscope.dynamics.layer_view`,
:mod:`filterscope.dynamics.validation`, :mod:`filterscope.dynamics.cube`,
:mod:`filterscope.index.summaries` and :meth:`filterscope.index.Index.query`), so a figure in a
script or report shows the numbers the widget shows. What is ported from the page is drawing
only: the colour scales (:mod:`filterscope.plots.colors`), the horizon bands, the colour range of
a layer's filter rows (:func:`normalize_rows`), the cube's per-layer log range
(:func:`row_log_normalize`), the triangle size and which data column each pixel column shows
(:func:`column_of_pixel`). Names (layers, classes, samples) are drawn as text on the canvas,
never as HTML.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import xarray as xr
from bokeh.layouts import gridplot
from bokeh.models import FixedTicker, LinearColorMapper
from bokeh.models.annotations import ColorBar, Span
from bokeh.models.layouts import LayoutDOM
from bokeh.models.ranges import Range1d
from bokeh.models.sources import ColumnDataSource
from bokeh.models.tools import HoverTool
from bokeh.plotting import figure
from bokeh.transform import linear_cmap

from filterscope.dynamics.cube import cube_faces, flags_in_buckets
from filterscope.dynamics.layer_view import (
    CHARTS,
    MEAN_ABS,
    filter_rows,
    metric_extent,
    node_series,
)
from filterscope.dynamics.validation import ORDERS, class_marks, order_classes, order_rows
from filterscope.errors import InvalidParameterError
from filterscope.index.summaries import class_accuracy, layer_mean_abs
from filterscope.plots.colors import (
    ACCURACY_PALETTE,
    BAND_COLORS,
    BLUE_PALETTE,
    CORRECT_COLOR,
    HORIZON_NEGATIVE,
    HORIZON_POSITIVE,
    VIRIDIS_PALETTE,
    WRONG_COLOR,
)
from filterscope.plots.figures import (
    NAN_COLOR,
    WIDTH,
    LogOrIndex,
    _cell_edges,
    _figure,
    _index,
    _require,
    shared_axes,
)

__all__ = [
    "class_rows_figure",
    "column_of_pixel",
    "cube_figures",
    "filter_pixel_figure",
    "layer_tree_figure",
    "normalize_rows",
    "row_log_normalize",
    "triangle_size",
    "validation_figure",
]

#: Data columns asked of the index for a view figure (the widgets ask for their pixel width).
VIEW_COLUMNS = 300
#: Horizon bands (as the page draws them).
HORIZON_BANDS = 3
#: Height of one tree node's chart, of one class heat line, in pixels.
NODE_ROW_PX = 30
CLASS_ROW_PX = 14
#: Smallest triangle side, at the threshold (the page's ``MIN_TRIANGLE``).
MIN_TRIANGLE = 5
#: Class heat lines drawn at most; the rest of the order is left out (the title says so).
MAX_CLASS_LINES = 60
#: Image rows drawn at most for one class.
MAX_IMAGE_ROWS = 200
#: Pixel columns of an image-like chart (filter rows, image rows).
IMAGE_WIDTH = WIDTH - 100


# ------------------------------------------------------------------------ drawing maths


def column_of_pixel(x: npt.ArrayLike, w0: float, w1: float, width: int) -> npt.NDArray[np.int64]:
    """For each of ``width`` pixel columns over the step window ``w0..w1``, the data column it
    shows: the point of ``x`` (ascending steps) nearest the pixel's centre, ties to the earlier;
    -1 more than half a gap before the first point or after the last (``horizon.ts``).

    Examples
    --------
    >>> column_of_pixel([0, 10, 20], 0, 20, 4).tolist()
    [0, 1, 1, 2]
    """
    xs = np.asarray(x, dtype=np.float64)
    out = np.full(max(width, 0), -1, dtype=np.int64)
    n = xs.size
    if n == 0:
        return out
    before = (xs[1] - xs[0]) / 2 if n > 1 else np.inf
    after = (xs[-1] - xs[-2]) / 2 if n > 1 else np.inf
    i = 0
    for p in range(width):
        step = w0 + ((p + 0.5) / width) * (w1 - w0)
        if step < xs[0] - before or step > xs[-1] + after:
            continue
        while i + 1 < n and xs[i + 1] - step < step - xs[i]:
            i += 1
        out[p] = i
    return out


def normalize_rows(
    values: npt.ArrayLike,
    mode: Literal["global", "filter", "snapshot"],
    global_range: tuple[float, float] = (0.0, 1.0),
) -> npt.NDArray[np.float64]:
    """Scale a ``(rows, columns)`` grid to 0..1 as the layer view colours filter rows
    (``normalizeGrid`` in ``horizon.ts``): over ``global_range`` (the run's range of the metric),
    each row's own finite range (``"filter"``) or each column's (``"snapshot"``). NaN stays NaN;
    a flat range maps to 0.5.

    Examples
    --------
    >>> normalize_rows([[1.0, 3.0], [2.0, 2.0]], "filter").tolist()
    [[0.0, 1.0], [0.5, 0.5]]
    """
    v = np.asarray(values, dtype=np.float64)
    finite = np.isfinite(v)
    if mode == "global":
        lo = np.full(v.shape, float(global_range[0]))
        hi = np.full(v.shape, float(global_range[1]))
    elif mode in ("filter", "snapshot"):
        axis = 1 if mode == "filter" else 0
        lo_1 = np.where(finite, v, np.inf).min(axis=axis, keepdims=True)
        hi_1 = np.where(finite, v, -np.inf).max(axis=axis, keepdims=True)
        lo, hi = np.broadcast_to(lo_1, v.shape), np.broadcast_to(hi_1, v.shape)
    else:
        raise InvalidParameterError(
            f"normalize must be one of ['global', 'filter', 'snapshot'], got {mode!r}"
        )
    span = hi - lo
    with np.errstate(invalid="ignore", divide="ignore"):
        scaled = np.where(span > 0, np.clip((v - lo) / np.where(span > 0, span, 1), 0, 1), 0.5)
    return np.where(finite, scaled, np.nan)


def row_log_normalize(values: npt.ArrayLike, tail: float = 0.02) -> npt.NDArray[np.float64]:
    """Each row on its own log range, as the cube's front face (``rowNormalize`` in
    ``cube.ts``): ``log10`` scaled from the row's ``tail`` to ``1 - tail`` order statistic to
    0..1; values that are not positive and finite are NaN; a flat row is 0.5.

    Examples
    --------
    >>> row_log_normalize([[1.0, 10.0, 100.0]], tail=0.0).tolist()
    [[0.0, 0.5, 1.0]]
    """
    v = np.asarray(values, dtype=np.float64)
    out = np.full(v.shape, np.nan)
    for r in range(v.shape[0]):
        ok = np.isfinite(v[r]) & (v[r] > 0)
        logs = np.sort(np.log10(v[r][ok]))
        n = logs.size
        if n == 0:
            continue
        lo = logs[int(np.floor(tail * (n - 1)))]
        hi = logs[int(np.ceil((1 - tail) * (n - 1)))]
        with np.errstate(divide="ignore", invalid="ignore"):
            row = np.log10(np.where(ok, v[r], 1.0))
        out[r] = np.where(ok, np.clip((row - lo) / (hi - lo), 0, 1) if hi > lo else 0.5, np.nan)
    return out


def triangle_size(count: float, threshold: float, max_count: float, row: float) -> float:
    """Side in pixels of a flag triangle (``triangleSize`` in ``validation.ts``): the smallest at
    the threshold, the row height at the largest count drawn, by the square root of the count.

    Examples
    --------
    >>> triangle_size(5, 5, 9, 14), triangle_size(9, 5, 9, 14), triangle_size(4, 5, 9, 14)
    (5.0, 14.0, 0.0)
    """
    if count < threshold:
        return 0.0
    if max_count <= threshold:
        return float(row)
    t = min((count - threshold) / (max_count - threshold), 1.0)
    return float(MIN_TRIANGLE + (row - MIN_TRIANGLE) * np.sqrt(t))


def _horizon_fills(value: float, top: float, bands: int = HORIZON_BANDS) -> list[float]:
    """Fill (0..1) of each band of a horizon graph for ``value`` over ``0..top``."""
    fills = [0.0] * bands
    if not np.isfinite(value) or not top > 0:
        return fills
    size = top / bands
    magnitude = abs(value)
    if magnitude >= top:
        return [1.0] * bands
    band = min(int(magnitude // size), bands - 1)
    for b in range(band):
        fills[b] = 1.0
    fills[band] = (magnitude - band * size) / size
    return fills


def _extent(values: np.ndarray) -> tuple[float, float] | None:
    finite = values[np.isfinite(values)]
    return (float(finite.min()), float(finite.max())) if finite.size else None


def _row_axis(p: Any, labels: Sequence[str], *, axis: str = "y") -> None:
    """Row ``i`` of ``n`` spans ``n-1-i .. n-i`` (first row on top); label its centre as text."""
    n = len(labels)
    ticks = [n - 1 - i + 0.5 for i in range(n)]
    target = p.yaxis if axis == "y" else p.xaxis
    target.ticker = FixedTicker(ticks=ticks)
    target.major_label_overrides = {t: str(label) for t, label in zip(ticks, labels, strict=True)}
    target.major_tick_line_color = None
    target.minor_tick_line_color = None
    target.major_label_text_font_size = "10px"


def _number(value: Any) -> float:
    """A range end as a float (ends are numbers here: steps)."""
    return float(value)


def _rows_range(n: int) -> Range1d:
    return Range1d(start=0, end=max(n, 1), bounds=(0, max(n, 1)))


def _pixel_image(
    values: np.ndarray, x: np.ndarray, x_range: tuple[float, float], width: int
) -> np.ndarray:
    """``values`` ``(rows, columns)`` resampled to ``width`` pixel columns over ``x_range``
    (each pixel shows the column nearest it, NaN outside), first row at the top of the image."""
    cols = column_of_pixel(x, x_range[0], x_range[1], width)
    out = np.full((values.shape[0], width), np.nan)
    hit = cols >= 0
    out[:, hit] = values[:, cols[hit]]
    return out[::-1]


# ----------------------------------------------------------------------------- layer view


def layer_tree_figure(
    log: LogOrIndex,
    *,
    variable: Literal["gradient", "weight"] = "gradient",
    chart: Literal["horizon", "line", "box", "bands"] = "horizon",
    stat: str = MEAN_ABS,
    same_scale: bool = False,
    nodes: Sequence[str] | None = None,
    columns: int = VIEW_COLUMNS,
    x_range: Range1d | None = None,
    crosshair: Span | None = None,
) -> figure:
    """The layer view's tree: one chart per node (model, stages, blocks, layers) over the run.

    The values are :func:`filterscope.dynamics.layer_view.node_series` at the index level that
    fits ``columns``; each node's row is drawn as the page draws it: a horizon graph of three
    bands (blues above zero, reds below) over the node's largest magnitude, a line, a box plot
    (min–max whisker, q1–q3 box, mean tick) or the change-ratio bands stacked from the largest
    threshold. Node names are indented by depth.

    Parameters
    ----------
    log : xarray.Dataset or Index
        A log opened with :func:`filterscope.open_log`, or its index.
    variable, chart, stat
        As :class:`filterscope.LayerView`'s traits.
    same_scale : bool, default False
        One value range for every node instead of one per node.
    nodes : list of str, optional
        Tree nodes to draw, in this order (default: the whole tree in tree order).
    columns : int, default 300
        Columns asked of the index.
    x_range, crosshair : optional
        Shared range and span from :func:`filterscope.plots.shared_axes`.

    Returns
    -------
    bokeh.plotting.figure
        Its first renderer's source holds ``node``, ``x`` (the column's first step), ``part``
        and ``value`` (the ``node_series`` value) of every drawn cell.

    Examples
    --------
    >>> import filterscope as fs
    >>> # layer_tree_figure(fs.open_log("runs/demo"), chart="box")
    """
    idx = _index(log)
    _require(idx, "grad_stat" if variable == "gradient" else "weight_stat")
    if chart not in CHARTS:
        raise InvalidParameterError(f"chart must be one of {list(CHARTS)}, got {chart!r}")
    depth, tree_order = _node_depths(idx.nodes())
    data = node_series(
        idx,
        variable=variable,
        chart=chart,
        stat=stat,
        columns=columns,
        nodes=tree_order if nodes is None else nodes,
    )
    names = [str(n) for n in data["node"].values]
    values = np.asarray(data.values, dtype=np.float64)  # node, column, part
    n_nodes, n_cols, n_parts = values.shape
    x = np.asarray(data["snapshot_step"].values, dtype=np.float64)
    edges = _cell_edges(x)
    left, right = np.repeat(edges[:-1][None], n_nodes, 0), np.repeat(edges[1:][None], n_nodes, 0)
    base = (n_nodes - 1 - np.arange(n_nodes, dtype=np.float64))[:, None] + 0.05
    height = 0.9
    extents = [_extent(values[i]) for i in range(n_nodes)]
    if same_scale:
        whole = _extent(values)
        extents = [whole] * n_nodes
    what = "gradient" if variable == "gradient" else "weight"
    label = {"horizon": stat, "line": stat, "box": "min, q1, mean, q3, max", "bands": "|g/w| ≤ t"}
    p = _figure(
        f"Layers: {what} {label[chart]} per node ({chart}"
        f"{', one scale' if same_scale else ', each node on its own scale'})",
        x_range,
        crosshair,
        max(120, 40 + NODE_ROW_PX * n_nodes),
        y_range=_rows_range(n_nodes),
    )
    p.ygrid.visible = False
    parts = [str(v) for v in data["part"].values]
    cells = {
        "node": np.repeat(np.array(names, dtype=object), n_cols * n_parts),
        "x": np.tile(np.repeat(x, n_parts), n_nodes),
        "part": np.tile(np.array(parts, dtype=object), n_nodes * n_cols),
        "value": values.ravel(),
        "y": np.repeat(base[:, 0] + height / 2, n_cols * n_parts),
    }
    quads: dict[str, list[Any]] = {k: [] for k in ("left", "right", "bottom", "top", "color")}

    def add(i: int, c: int, bottom: float, top: float, color: str) -> None:
        quads["left"].append(left[i, c])
        quads["right"].append(right[i, c])
        quads["bottom"].append(base[i, 0] + bottom * height)
        quads["top"].append(base[i, 0] + top * height)
        quads["color"].append(color)

    lines_x: list[list[float]] = []
    lines_y: list[list[float]] = []
    for i in range(n_nodes):
        ext = extents[i]
        if chart == "horizon":
            if ext is None:
                continue
            top = max(abs(ext[0]), abs(ext[1]))
            for c in range(n_cols):
                v = values[i, c, 0]
                palette = HORIZON_NEGATIVE if v < 0 else HORIZON_POSITIVE
                for b, fill in enumerate(_horizon_fills(v, top)):
                    if fill > 0:
                        add(i, c, 0.0, fill, palette[b])
        elif chart == "bands":
            for c in range(n_cols):
                for k in range(n_parts):
                    v = values[i, c, k]
                    if np.isfinite(v):
                        add(i, c, 0.0, min(max(v, 0.0), 1.0), BAND_COLORS[k % len(BAND_COLORS)])
        else:
            if ext is None:
                continue
            lo, hi = ext
            scale = (hi - lo) or 1.0

            def y(v: np.ndarray, lo: float = lo, scale: float = scale) -> np.ndarray:
                return (v - lo) / scale

            if chart == "line":
                lines_x.append(list(x))
                lines_y.append(list(base[i, 0] + y(values[i, :, 0]) * height))
            else:  # box: min, q1, mean, q3, max
                box = y(values[i])
                for c in range(n_cols):
                    vmin, q1, mean, q3, vmax = box[c]
                    if not np.isfinite([vmin, q1, q3, vmax]).all():
                        continue
                    add(i, c, q1, max(q3, q1 + 0.02), "#3b82f6")
                    lines_x.append([x[c], x[c]])
                    lines_y.append([base[i, 0] + vmin * height, base[i, 0] + vmax * height])
                    if np.isfinite(mean):
                        width = (right[i, c] - left[i, c]) * 0.8
                        lines_x.append([x[c] - width / 2, x[c] + width / 2])
                        lines_y.append([base[i, 0] + mean * height] * 2)
    # The data first, drawn invisibly: its points carry the hover read-out.
    source = ColumnDataSource(cells)
    points = p.scatter("x", "y", source=source, size=0, alpha=0)
    if quads["left"]:
        p.quad(
            left="left",
            right="right",
            bottom="bottom",
            top="top",
            color="color",
            source=ColumnDataSource(quads),
            line_width=0,
        )
    if lines_x:
        p.multi_line(
            lines_x,
            lines_y,
            color="#1f2937" if chart == "box" else "#3b82f6",
            line_width=1.5 if chart == "line" else 1,
        )
    labels = ["  " * depth.get(n, 0) + n for n in names]
    _row_axis(p, labels)
    p.add_tools(
        HoverTool(
            renderers=[points],
            tooltips=[("node", "@node"), ("step", "@x"), ("part", "@part"), ("value", "@value")],
        )
    )
    return p


def _node_depths(tree: xr.Dataset) -> tuple[dict[str, int], list[str]]:
    """Depth of every tree node and the nodes in tree order (each node before its children,
    children in the index's order), as the layer view lists them fully expanded."""
    names = [str(n) for n in tree["node"].values]
    parent = dict(zip(names, (str(p) for p in tree["node_parent"].values), strict=True))
    children: dict[str, list[str]] = {}
    roots = []
    for name in names:
        if parent[name] in parent and parent[name] != name:
            children.setdefault(parent[name], []).append(name)
        else:
            roots.append(name)
    depth: dict[str, int] = {}
    order: list[str] = []
    stack = [(r, 0) for r in reversed(roots)]
    while stack:
        name, d = stack.pop()
        depth[name] = d
        order.append(name)
        stack.extend((c, d + 1) for c in reversed(children.get(name, [])))
    return depth, order


def filter_pixel_figure(
    log: LogOrIndex,
    layer: str,
    *,
    normalize: Literal["global", "filter", "snapshot"] = "filter",
    metric: str = "filter_cosine",
    columns: int = VIEW_COLUMNS,
    x_range: Range1d | None = None,
    crosshair: Span | None = None,
) -> figure:
    """A layer's filters as a pixel chart: one row per filter, coloured by ``metric`` (the
    cosine to the previous snapshot), as the layer view draws an expanded layer.

    Rows are :func:`filterscope.dynamics.layer_view.filter_rows`; colours are viridis over
    :func:`normalize_rows` (``"global"`` uses
    :func:`~filterscope.dynamics.layer_view.metric_extent`, the run's range), so dark cells are
    the filters that turned most.

    Parameters
    ----------
    log : xarray.Dataset or Index
    layer : str
        A ``layer_name`` of the log.
    normalize : {"global", "filter", "snapshot"}, default "filter"
    metric : str, default "filter_cosine"
    columns : int, default 300
    x_range, crosshair : optional
        Shared range and span from :func:`filterscope.plots.shared_axes`.

    Returns
    -------
    bokeh.plotting.figure
        An ``image`` glyph (first row on top) over the figure's step range; its source also
        holds ``rows`` (the ``filter_rows`` values, filter × column), ``filters``, ``x``.
    """
    idx = _index(log)
    _require(idx, metric)
    names = [str(n) for n in idx.log["layer_name"].values] if "layer_name" in idx.log else []
    if layer not in names:
        raise InvalidParameterError(
            f"layer must be a layer name of this log, e.g. {names[:4]}; got {layer!r}"
        )
    rows = filter_rows(idx, layer, metric=metric, columns=columns)
    values = np.asarray(rows.values, dtype=np.float64)
    x = np.asarray(rows["snapshot_step"].values, dtype=np.float64)
    lo, hi = metric_extent(idx, metric) if normalize == "global" else (0.0, 1.0)
    scaled = normalize_rows(values, normalize, (lo, hi))
    n = values.shape[0]
    if x_range is None:
        x_range, _ = shared_axes(idx)
    p = _figure(
        f"Filters of {layer}: {metric} to the previous snapshot "
        f"(normalised per {normalize}; dark: changed most)",
        x_range,
        crosshair,
        max(120, 90 + min((14 if n <= 24 else 4) * n, 400)),
        y_range=_rows_range(n),
    )
    span = (_number(x_range.start), _number(x_range.end))
    image = _pixel_image(scaled, x, span, IMAGE_WIDTH)
    mapper = LinearColorMapper(palette=VIRIDIS_PALETTE, low=0.0, high=1.0, nan_color=NAN_COLOR)
    source = ColumnDataSource(
        {
            "image": [image],
            "rows": [values],
            "filters": [np.asarray(rows["filter"].values)],
            "x": [x],
        }
    )
    p.image(
        image="image",
        x=span[0],
        y=0,
        dw=span[1] - span[0],
        dh=max(n, 1),
        color_mapper=mapper,  # type: ignore[call-arg]  # an image property the stubs omit
        source=source,
    )
    channels = rows["filter_channel"].values if "filter_channel" in rows.coords else range(n)
    if n <= 24:
        _row_axis(p, [f"{layer}[{int(c)}]" for c in channels])
    else:
        p.yaxis.axis_label = f"{n} filters (first on top)"
    p.ygrid.visible = False
    p.add_layout(ColorBar(color_mapper=mapper, width=10), "right")
    return p


# ------------------------------------------------------------------------ validation view


def _class_names(log: xr.Dataset) -> list[str]:
    if "class_name" in log.coords:
        return [str(n) for n in log["class_name"].values]
    return [str(c) for c in log["class"].values]


def validation_figure(
    log: LogOrIndex,
    *,
    j: int = 30,
    threshold: int = 5,
    order: Literal["mds", "peak"] = "mds",
    columns: int = VIEW_COLUMNS,
    max_classes: int = MAX_CLASS_LINES,
    x_range: Range1d | None = None,
    crosshair: Span | None = None,
) -> figure:
    """The validation view's class heat lines with their abLeft / abRight triangles.

    One line per class, coloured by its accuracy (one minus the index's ``class_error`` at the
    level that fits ``columns``) on DeepTracker's scale; ▲ where
    :func:`filterscope.dynamics.validation.class_marks` ``up`` reaches ``threshold``, ▼ where
    ``down`` does (the largest count in each column), sized by the count; classes in
    :func:`~filterscope.dynamics.validation.order_classes` order. With more than
    ``max_classes`` classes only the first ``max_classes`` of that order are drawn (with
    ``order="peak"``: the most unstable).

    Returns
    -------
    bokeh.plotting.figure
        Renderers: the heat cells (source ``class``, ``name``, ``x``, ``accuracy``), then the
        up and down triangles (``class``, ``x``, ``count``).
    """
    idx = _index(log)
    _require(idx, "class_error")
    if order not in ORDERS:
        raise InvalidParameterError(f"order must be one of {list(ORDERS)}, got {order!r}")
    ds = idx.log
    marks = class_marks(ds, j=j, threshold=threshold)
    error = idx.query("class_error", columns=columns)
    mean_error = np.asarray(error.sel(agg="mean").transpose(error.dims[1], "class").values)
    peak = np.asarray(marks["peak_count"].values)
    ordering = np.asarray(order_classes(mean_error, order, peak))
    shown = ordering[:max_classes]
    names = _class_names(ds)
    accuracy = 1.0 - mean_error.T  # class, column
    snapshots = np.asarray(ds["snapshot"].values)
    snap_x = np.asarray(ds["snapshot_step"].values, dtype=np.float64)
    starts = np.clip(np.searchsorted(snapshots, error["bucket_start"].values), 0, snap_x.size - 1)
    stops = np.clip(np.searchsorted(snapshots, error["bucket_stop"].values), 0, snap_x.size - 1)
    x = (snap_x[starts] + snap_x[stops]) / 2
    edges = _cell_edges(x)
    n_rows = len(shown)
    title = f"Validation: class accuracy (j={j}, threshold={threshold}, order {order})"
    if len(ordering) > n_rows:
        title += f"; the first {n_rows} of {len(ordering)} classes"
    p = _figure(
        title,
        x_range,
        crosshair,
        max(140, 70 + CLASS_ROW_PX * n_rows),
        y_range=_rows_range(n_rows),
    )
    cells: dict[str, list[Any]] = {
        k: [] for k in ("class", "name", "x", "left", "right", "bottom", "top", "accuracy")
    }
    for r, c in enumerate(shown):
        for col in range(x.size):
            cells["class"].append(int(c))
            cells["name"].append(names[c])
            cells["x"].append(x[col])
            cells["left"].append(edges[col])
            cells["right"].append(edges[col + 1])
            cells["bottom"].append(n_rows - 1 - r + 0.08)
            cells["top"].append(n_rows - r - 0.08)
            cells["accuracy"].append(accuracy[c, col])
    heat = p.quad(
        left="left",
        right="right",
        bottom="bottom",
        top="top",
        source=ColumnDataSource(cells),
        line_width=0,
        fill_color=linear_cmap(
            "accuracy", palette=ACCURACY_PALETTE, low=0.0, high=1.0, nan_color=NAN_COLOR
        ),
    )
    # Each column's largest count, per class, as the widget sends them.
    col_of = np.searchsorted(starts, np.arange(snapshots.size), "right") - 1
    row_of = {int(c): r for r, c in enumerate(shown)}
    counts = {kind: np.asarray(marks[kind].values) for kind in ("up", "down")}
    max_count = max([int(counts[k][:, shown].max(initial=0)) for k in counts] + [threshold])
    tri_renderers: list[Any] = []
    for kind, marker, shift in (("up", "triangle", -0.25), ("down", "inverted_triangle", 0.25)):
        grid = np.zeros((accuracy.shape[0], x.size), dtype=np.int64)
        snap, cls = np.nonzero(counts[kind])
        np.maximum.at(grid, (cls, col_of[snap]), counts[kind][snap, cls])
        tri: dict[str, list[Any]] = {
            k: [] for k in ("class", "name", "x", "px", "y", "count", "size")
        }
        for c, col in zip(*np.nonzero(grid), strict=True):
            if int(c) not in row_of:
                continue
            width = edges[col + 1] - edges[col]
            tri["class"].append(int(c))
            tri["name"].append(names[c])
            tri["x"].append(x[col])
            tri["px"].append(x[col] + shift * width)
            tri["y"].append(n_rows - 1 - row_of[int(c)] + 0.5)
            tri["count"].append(int(grid[c, col]))
            tri["size"].append(triangle_size(grid[c, col], threshold, max_count, CLASS_ROW_PX))
        tri_renderers.append(
            p.scatter(
                "px",
                "y",
                marker=marker,
                size="size",
                source=ColumnDataSource(tri),
                fill_color="#111827",
                line_color="#ffffff",
                line_width=0.75,
            )
        )
    _row_axis(p, [names[c] for c in shown])
    p.ygrid.visible = False
    p.add_tools(
        HoverTool(
            renderers=[heat],
            tooltips=[("class", "@name"), ("step", "@x"), ("accuracy", "@accuracy{0.000}")],
        ),
        HoverTool(
            renderers=tri_renderers,
            tooltips=[("class", "@name"), ("step", "@x"), ("flipped images", "@count")],
        ),
    )
    return p


def class_rows_figure(
    log: LogOrIndex,
    class_: Any,
    *,
    columns: int = VIEW_COLUMNS,
    limit: int = MAX_IMAGE_ROWS,
    x_range: Range1d | None = None,
    crosshair: Span | None = None,
) -> figure:
    """An expanded class of the validation view: one row per image, green where it is
    classified correctly, red where it is wrong, rows in
    :func:`~filterscope.dynamics.validation.order_rows` (1-D MDS) order.

    Values are the index's ``correct`` for the class (fraction correct per column); a cell is
    green at 0.5 or more, as in the page. At most ``limit`` rows (the first in that order).

    Returns
    -------
    bokeh.plotting.figure
        An ``image_rgba`` glyph; its source also holds ``samples`` (positions on ``sample``,
        display order) and ``values`` (image × column).
    """
    idx = _index(log)
    _require(idx, "correct")
    ds = idx.log
    labels = np.asarray(ds["class"].values)
    found = np.flatnonzero(labels.astype(str) == str(class_))
    if found.size == 0 or isinstance(class_, bool):
        raise InvalidParameterError(
            f"class {class_!r} is not in this log; its class labels are {labels[:8].tolist()}"
        )
    label = labels[found[0]]
    name = _class_names(ds)[int(found[0])]
    answer = idx.query("correct", columns=columns, class_=label)
    values = np.asarray(answer.sel(agg="mean").transpose("snapshot", "sample").values)
    samples = np.asarray(answer["sample"].values, np.int64)
    order = np.asarray(order_rows(values))[:limit]
    grid = np.nan_to_num(values[:, order].T, nan=0.0)  # image, column
    snapshots = np.asarray(ds["snapshot"].values)
    snap_x = np.asarray(ds["snapshot_step"].values, dtype=np.float64)
    first = np.clip(np.searchsorted(snapshots, answer["bucket_start"].values), 0, snap_x.size - 1)
    last = np.clip(np.searchsorted(snapshots, answer["bucket_stop"].values), 0, snap_x.size - 1)
    x = (snap_x[first] + snap_x[last]) / 2
    if x_range is None:
        x_range, _ = shared_axes(idx)
    n = grid.shape[0]
    p = _figure(
        f"Images of class {name}: {n} of {samples.size}, correct (green) or wrong (red) "
        "per snapshot",
        x_range,
        crosshair,
        max(120, 60 + min(4 * n, 400)),
        y_range=_rows_range(n),
    )
    span = (_number(x_range.start), _number(x_range.end))
    image = _pixel_image(grid, x, span, IMAGE_WIDTH)
    rgba = np.zeros(image.shape, dtype=np.uint32)
    view = rgba.view(dtype=np.uint8).reshape((*image.shape, 4))
    for color, mask in ((CORRECT_COLOR, image >= 0.5), (WRONG_COLOR, image < 0.5)):
        view[mask] = [*(int(color[i : i + 2], 16) for i in (1, 3, 5)), 255]
    source = ColumnDataSource(
        {"image": [rgba], "samples": [samples[order]], "values": [grid], "x": [x]}
    )
    p.image_rgba(image="image", x=span[0], y=0, dw=span[1] - span[0], dh=max(n, 1), source=source)
    p.yaxis.axis_label = "images (1-D MDS order)"
    p.ygrid.visible = False
    return p


# ------------------------------------------------------------------------------- cube view


def cube_figures(
    log: LogOrIndex,
    *,
    k: int = 10,
    metric: str = "filter_cosine",
    preset: Literal["sustained", "immediate"] = "sustained",
    columns: int = VIEW_COLUMNS,
    classes: int = 40,
) -> LayoutDOM:
    """The cube's three faces on shared axes, as the cube view unfolds them.

    - top: classes × iterations, class accuracy
      (:func:`filterscope.index.summaries.class_accuracy`) on DeepTracker's scale, ▲ where the
      class is flagged (:func:`filterscope.dynamics.cube.flags_in_buckets`);
    - front: layers × iterations, the mean absolute gradient per weight
      (:func:`~filterscope.index.summaries.layer_mean_abs`), each layer on its own log range
      (:func:`row_log_normalize`), viridis;
    - right: layers × classes, the correlation of :func:`~filterscope.dynamics.cube.cube_faces`
      (distinct top-``k`` changed filters of the layer over the class's flagged snapshots) on
      sequential blues, 0 blank.

    Front and top share the time axis, front and right the layers, top and right the classes
    (the first ``classes`` of the cube's class order, most correlated first).

    Returns
    -------
    bokeh.models.LayoutDOM
        A grid ``[[top, None], [front, right]]``; each face's first renderer's source holds the
        values drawn (``value``; for the front also ``mean_abs``).
    """
    idx = _index(log)
    _require(idx, "grad_stat", "correct")
    ds = idx.log
    faces = cube_faces(ds, k=k, metric=metric, preset=preset)
    overview = layer_mean_abs(idx, "grad_stat", level=idx.levels("grad_stat"))
    layer_labels = np.asarray(overview["layer"].values)
    layer_names = [str(n) for n in overview["layer_name"].values]
    front = layer_mean_abs(idx, "grad_stat", columns=columns)
    page = np.asarray(faces["class_order"].values, dtype=np.int64)[:classes]
    class_labels = np.asarray(faces["class"].values)[page]
    class_names = [_class_names(ds)[int(i)] for i in page]
    top = class_accuracy(idx, columns=columns, class_=list(class_labels))
    b_start = np.asarray(front["bucket_start"].values)
    b_stop = np.asarray(front["bucket_stop"].values)
    flags = flags_in_buckets(faces["flagged"], b_start, b_stop, class_labels)
    correlation = np.asarray(
        faces["correlation"].sel(layer=layer_labels).transpose("layer", "class").values
    )[:, page]
    front_values = np.asarray(front.sel(agg="mean").transpose("layer", ...).values, np.float64)
    top_values = np.asarray(top.sel(agg="mean").transpose("class", ...).values, np.float64)
    snapshots = np.asarray(ds["snapshot"].values)
    snap_x = np.asarray(ds["snapshot_step"].values, dtype=np.float64)
    at = np.clip(np.searchsorted(snapshots, b_start), 0, snap_x.size - 1)
    to = np.clip(np.searchsorted(snapshots, b_stop), 0, snap_x.size - 1)
    x = (snap_x[at] + snap_x[to]) / 2
    edges = _cell_edges(x)
    n_layers, n_classes = len(layer_names), len(class_names)
    x_range = Range1d(start=float(edges[0]), end=float(edges[-1])) if x.size else None
    layers_range, classes_range = _rows_range(n_layers), _rows_range(n_classes)
    face_w, side_w = WIDTH - 260, 260
    row_px = 12
    bottom = 80  # room under the front and right faces (axis, rotated class names): one frame

    def grid_face(
        values: np.ndarray,
        xs: tuple[np.ndarray, np.ndarray],
        color: Any,
        extra: dict[str, Any],
        **fig: Any,
    ) -> tuple[figure, Any]:
        rows, cols = values.shape
        data: dict[str, list[Any]] = {"left": [], "right": [], "bottom": [], "top": [], "value": []}
        for key in extra:
            data[key] = []
        for r in range(rows):
            for c in range(cols):
                data["left"].append(xs[0][c])
                data["right"].append(xs[1][c])
                data["bottom"].append(rows - 1 - r)
                data["top"].append(rows - r)
                data["value"].append(values[r, c])
                for key, fn in extra.items():
                    data[key].append(fn(r, c))
        p = figure(tools="xpan,xwheel_zoom,reset,save", toolbar_location="above", **fig)
        p.toolbar.logo = None
        renderer = p.quad(
            left="left",
            right="right",
            bottom="bottom",
            top="top",
            source=ColumnDataSource(data),
            fill_color=color,
            line_width=0,
        )
        p.grid.visible = False
        return p, renderer

    front_scaled = row_log_normalize(front_values)
    front_fig, front_r = grid_face(
        front_scaled,
        (edges[:-1], edges[1:]),
        linear_cmap("value", VIRIDIS_PALETTE, 0.0, 1.0, nan_color=NAN_COLOR),
        {
            "layer": lambda r, c: layer_names[r],
            "mean_abs": lambda r, c: front_values[r, c],
            "x": lambda r, c: x[c],
        },
        title="Front: layers × iterations, mean |gradient| per weight (log, per layer)",
        width=face_w,
        height=bottom + 30 + max(row_px * n_layers, 60),
        min_border_bottom=bottom,
        x_range=x_range,
        y_range=layers_range,
        x_axis_label="step",
    )
    _row_axis(front_fig, layer_names)
    top_fig, top_r = grid_face(
        top_values,
        (edges[:-1], edges[1:]),
        linear_cmap("value", ACCURACY_PALETTE, 0.0, 1.0, nan_color=NAN_COLOR),
        {"class_name": lambda r, c: class_names[r], "x": lambda r, c: x[c]},
        title="Top: classes × iterations, accuracy (▲ flagged)",
        width=face_w,
        height=60 + max(row_px * n_classes, 60),
        x_range=front_fig.x_range,
        y_range=classes_range,
    )
    fr, fc = np.nonzero(flags)
    top_fig.scatter(
        x[fc] if fc.size else [],
        (n_classes - 1 - fr + 0.5) if fr.size else [],
        marker="triangle",
        size=row_px - 3,
        fill_color="#111827",
        line_color="#ffffff",
        line_width=0.75,
    )
    _row_axis(top_fig, class_names)
    corr_max = max(int(correlation.max(initial=0)), 1)
    right_values = np.where(correlation > 0, correlation, np.nan).astype(np.float64)
    class_edges = np.arange(n_classes + 1, dtype=np.float64)
    right_fig, right_r = grid_face(
        right_values,
        (class_edges[:-1], class_edges[1:]),
        linear_cmap("value", BLUE_PALETTE, 1.0, float(corr_max), nan_color="#ffffff00"),
        {"layer": lambda r, c: layer_names[r], "class_name": lambda r, c: class_names[c]},
        title="Right: layers × classes" + ("" if correlation.any() else " (none flagged)"),
        width=side_w,
        height=bottom + 30 + max(row_px * n_layers, 60),
        min_border_bottom=bottom,
        x_range=Range1d(start=0, end=max(n_classes, 1)),
        y_range=front_fig.y_range,
    )
    right_fig.xaxis.ticker = FixedTicker(ticks=[c + 0.5 for c in range(n_classes)])
    # Names cut to 12 characters: the face is small; the top face and the hover show them whole.
    right_fig.xaxis.major_label_overrides = {
        c + 0.5: n if len(n) <= 12 else n[:11] + "…" for c, n in enumerate(class_names)
    }
    right_fig.xaxis.major_label_orientation = np.pi / 2
    right_fig.xaxis.major_label_text_font_size = "9px"
    right_fig.yaxis.visible = False
    for fig_, renderer, tips in (
        (front_fig, front_r, [("layer", "@layer"), ("step", "@x"), ("mean |g|", "@mean_abs")]),
        (top_fig, top_r, [("class", "@class_name"), ("step", "@x"), ("accuracy", "@value")]),
        (
            right_fig,
            right_r,
            [("layer", "@layer"), ("class", "@class_name"), ("filters", "@value")],
        ),
    ):
        fig_.add_tools(HoverTool(renderers=[renderer], tooltips=tips))
    return gridplot(
        [[top_fig, None], [front_fig, right_fig]], merge_tools=False, toolbar_options={"logo": None}
    )
