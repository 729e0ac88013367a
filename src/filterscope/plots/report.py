"""A self-contained, offline HTML report of a filterscope log."""

from __future__ import annotations

import base64
import html
import io
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr
from bokeh.embed import file_html
from bokeh.layouts import column
from bokeh.models.layouts import LayoutDOM
from bokeh.models.sources import ColumnDataSource
from bokeh.models.widgets.markups import Div
from bokeh.models.widgets.tables import DataTable, TableColumn
from bokeh.resources import INLINE

from filterscope.errors import InvalidDataError, InvalidParameterError
from filterscope.index import Index, index_of
from filterscope.index.summaries import best_value, last_value
from filterscope.log.reader import eval_set_names, log_path
from filterscope.plots.figures import WIDTH, shared_axes, training_figures
from filterscope.plots.views import (
    _node_depths,
    class_rows_figure,
    cube_figures,
    filter_pixel_figure,
    layer_tree_figure,
    validation_figure,
)

__all__ = [
    "analysis_table",
    "isolated_samples",
    "store_size",
    "summary",
    "view_sections",
    "write_report",
]

TOP_ANOMALIES = 20
_STYLE = (
    "<style>.fs-summary td,.fs-summary th{padding:2px 12px 2px 0;text-align:left;"
    "font-family:sans-serif;font-size:13px}.fs-summary th{font-weight:600}</style>"
)


def store_size(path: str | os.PathLike[str]) -> int:
    """Bytes on disk of a log store (a directory) or file.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> from filterscope.plots.report import store_size
    >>> with tempfile.TemporaryDirectory() as d:
    ...     _ = (pathlib.Path(d) / "a").write_bytes(b"12345")
    ...     store_size(d)
    5
    """
    p = Path(path)
    if p.is_file():
        return p.stat().st_size
    return sum(f.stat().st_size for f in p.rglob("*") if f.is_file())


def summary(log: xr.Dataset | Index) -> dict[str, Any]:
    """Headline numbers of a log: sizes, the last value of every loss and error curve and the
    best error of every evaluation set, read from its index.

    Parameters
    ----------
    log : xarray.Dataset or Index
        A log opened from its path (its index comes from :func:`filterscope.index_of`), or an
        index.

    Examples
    --------
    >>> import tempfile
    >>> import numpy as np, xarray as xr
    >>> from filterscope.index import build_index
    >>> from filterscope.plots.report import summary
    >>> log = xr.Dataset(
    ...     {"loss": ("step", [2.0, 1.0]), "val_error": ("snapshot", [0.5, 0.25])},
    ...     coords={"step": [0, 1], "snapshot": [0, 1]},
    ... )
    >>> numbers = summary(build_index(log, tempfile.mkdtemp() + "/index.zarr"))
    >>> numbers["final val error"], numbers["best val error"]
    (0.25, '0.2500 at snapshot 1')
    """
    idx = log if isinstance(log, Index) else index_of(log)
    ds = idx.log
    out: dict[str, Any] = {}
    for attr, label in (("model", "model"), ("n_parameters", "weights in measured layers")):
        if attr in ds.attrs:
            out[label] = ds.attrs[attr]
    for key, label in (
        ("step", "steps"),
        ("snapshot", "snapshots"),
        ("sample", "evaluated samples"),
        ("class", "classes"),
        ("filter", "filters"),
    ):
        if key in ds.sizes:
            out[label] = int(ds.sizes[key])
    if "layer" in ds.sizes:
        out["layers"] = int(ds.sizes["layer"])
    if "step_epoch" in ds.coords and ds.sizes.get("step", 0):
        out["epochs"] = int(ds["step_epoch"].values[-1]) + 1  # epochs count up from 0
    for name in ("loss", "train_error"):
        if name in idx.specs and idx.specs[name].time == "step" and ds.sizes.get("step", 0):
            out[f"final {name.replace('_', ' ')} (step)"] = last_value(idx, name)
    if not ds.sizes.get("snapshot", 0):
        return out
    for s in eval_set_names(ds):
        per_snapshot = [
            f"{s}_{kind}"
            for kind in ("loss", "error")
            if f"{s}_{kind}" in idx.specs and idx.specs[f"{s}_{kind}"].time == "snapshot"
        ]
        for name in per_snapshot:
            out[f"final {name.replace('_', ' ')}"] = last_value(idx, name)
        if f"{s}_error" in per_snapshot:
            best, at = best_value(idx, f"{s}_error")
            if at is not None:
                out[f"best {s} error"] = f"{best:.4f} at snapshot {at}"
    return out


def _anomaly_table(anomalies: Any) -> pd.DataFrame:
    table = getattr(anomalies, "table", anomalies)
    if not isinstance(table, pd.DataFrame):
        raise InvalidDataError(
            "anomalies must be the result of filterscope.analyze (with a .table) or a pandas "
            f"DataFrame, got {type(anomalies).__name__}."
        )
    if "score" in table.columns:
        table = table.sort_values("score", ascending=False, kind="stable")
    return table.head(TOP_ANOMALIES).reset_index(drop=True)


def _cell(value: Any) -> Any:
    if isinstance(value, list | tuple | np.ndarray):
        items = list(np.asarray(value).ravel())
        shown = ", ".join(str(v) for v in items[:8])
        return shown + (f", … (+{len(items) - 8})" if len(items) > 8 else "")
    if isinstance(value, float | np.floating):
        return round(float(value), 4)
    if isinstance(value, np.integer | np.bool_):
        return value.item()
    return value


# Relative column widths (the table fits its width); names and id lists need the room.
_COLUMN_WIDTHS = {"layer": 170, "outlier_ids": 170, "explained_variance": 90}


def _table_widget(table: pd.DataFrame) -> DataTable:
    columns = [str(c) for c in table.columns]
    data = {c: [_cell(v) for v in table[c].tolist()] for c in columns}
    return DataTable(
        source=ColumnDataSource(data),
        columns=[TableColumn(field=c, title=c, width=_COLUMN_WIDTHS.get(c, 60)) for c in columns],
        width=WIDTH,
        height=min(640, 40 + 26 * max(1, len(table))),
        index_position=None,
    )


def _summary_div(title: str, numbers: Mapping[str, Any], source: str | None) -> Div:
    rows = "".join(
        f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(_format(v))}</td></tr>"
        for k, v in numbers.items()
    )
    where = f"<p>Log: <code>{html.escape(source)}</code></p>" if source else ""
    return Div(
        text=f"{_STYLE}<h1>{html.escape(title)}</h1>{where}"
        f"<table class='fs-summary'>{rows}</table>",
        width=WIDTH,
    )


def _format(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def write_report(
    log: xr.Dataset | Index | str | os.PathLike[str],
    path: str | os.PathLike[str],
    anomalies: Any = None,
    title: str = "filterscope report",
    *,
    analysis: xr.Dataset | None = None,
    note: str | None = None,
    views: bool = True,
) -> Path:
    """Write a self-contained HTML report of a log: summary numbers, linked figures, the views,
    the anomaly filters and the samples they isolate.

    BokehJS is inlined and thumbnails are embedded as PNG data, so the file opens offline (it
    requests nothing) and can be mailed or archived as is. Every name (layer, class, sample) is
    shown as text, never as HTML.

    Sections: the summary; the training figures (:func:`~filterscope.plots.training_figures`);
    with ``views``, the layer tree (:func:`~filterscope.plots.layer_tree_figure`) and the
    filters of one layer, the validation view's class heat lines and the rows of its most
    unstable class, and the cube's faces (each where the log has what it needs); ``note``; the
    anomaly table (the filters with the highest continuous ``score``, also when none is
    flagged) and the isolated samples: every sample that an anomaly filter isolates, with how
    many filters isolate it, in which layers, and its thumbnail where the log holds it.

    Parameters
    ----------
    log : xarray.Dataset, Index or path
        A log from :func:`filterscope.open_log` or the store's path (then the store size is
        reported and its analysis group, if any, is read); its index is opened, or built on
        first use, with :func:`filterscope.index_of`. For a log built in memory pass its index
        (:func:`filterscope.index.build_index`).
    path : path
        Where to write the HTML file (parent folders are created).
    anomalies : AnalysisResult or pandas.DataFrame, optional
        The result of :func:`filterscope.analyze` (or its ``.table``). Default: the last
        snapshot of the log's analysis group, when it has one.
    title : str, default="filterscope report"
        Page and heading title.
    analysis : xarray.Dataset, optional
        The log's analysis group; adds the anomaly-filter count per analysed snapshot and, when
        ``anomalies`` is not given, the table of its last snapshot. Read from the store when
        ``log`` was opened from a path and this is not given.
    note : str, optional
        A paragraph shown above the anomaly section (as text), e.g. what the isolated samples
        are.
    views : bool, default True
        Add the figures of the layer, validation and cube views.

    Returns
    -------
    pathlib.Path
        The written file.

    Raises
    ------
    InvalidParameterError
        If ``log`` is not a log, index or path, or ``note`` is not text.
    InvalidDataError
        If ``anomalies`` is neither an analysis result nor a DataFrame.

    Examples
    --------
    >>> import filterscope as fs
    >>> # fs.write_report("runs/demo", "runs/demo/report.html", fs.analyze(model, data))
    """
    import filterscope as fs

    if note is not None and not isinstance(note, str):
        raise InvalidParameterError(
            f"note must be text (a str) or None, got {type(note).__name__}."
        )
    table = None if anomalies is None else _anomaly_table(anomalies)
    source: str | None = None
    numbers: dict[str, Any] = {}
    if isinstance(log, str | os.PathLike):
        source = os.fspath(log)
        idx = index_of(fs.open_log(source))
    elif isinstance(log, xr.Dataset):
        idx = index_of(log)
        found = log_path(log)
        source = None if found is None else str(found)
    elif isinstance(log, Index):
        idx = log
        found = log_path(idx.log)
        source = None if found is None else str(found)
    else:
        raise InvalidParameterError(
            f"log must be an xarray.Dataset from filterscope.open_log, its Index or a log path, "
            f"got {type(log).__name__}."
        )
    if analysis is None and source is not None:
        analysis = _analysis_group(source, idx.log)
    numbers.update(summary(idx))
    if source is not None:
        numbers["store size on disk"] = f"{store_size(source) / 1e6:.2f} MB"
    parts: list[LayoutDOM] = [
        _summary_div(title, numbers, source),
        training_figures(idx, analysis),
    ]
    if views:
        parts += view_sections(idx, table)
    if note is not None:
        parts.append(Div(text=f"<p class='fs-note'>{html.escape(note)}</p>", width=WIDTH))
    samples: xr.Dataset | None = getattr(anomalies, "dataset", None)
    full = None if anomalies is None else getattr(anomalies, "table", anomalies)
    at_step = None
    if anomalies is None and analysis is not None and _has_analysis_table(analysis):
        full, samples, at_step = analysis_table(analysis)
        table = _anomaly_table(full)
    if table is not None and full is not None:
        parts += _anomaly_sections(table, full, at_step)
        parts += _isolated_sections(full, samples, idx.log)
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(file_html(column(*parts), resources=INLINE, title=title), encoding="utf-8")
    return out


def _has_analysis_table(analysis: xr.Dataset) -> bool:
    return all(v in analysis for v in ("anomaly", "anomaly_score", "outlier"))


def analysis_table(analysis: xr.Dataset) -> tuple[pd.DataFrame, xr.Dataset, int | None]:
    """The anomaly table of the last snapshot of a log's analysis group.

    The columns of :attr:`~filterscope.gmm.AnalysisResult.table` that the group records
    (``layer``, ``channel``, ``filter``, ``k``, ``smallest_cluster``, ``n_outliers``,
    ``outlier_ids``, ``score``, ``anomaly``, ``dead``, ``explained_variance``), ranked by score
    (highest first).

    Returns
    -------
    table : pandas.DataFrame
    samples : xarray.Dataset
        That snapshot (its ``sample_id``, ``label`` and, if recorded, ``thumbnail``).
    step : int or None
        The optimizer step of that analysis.
    """
    has_time = "analysis_snapshot" in analysis.dims
    last = (analysis.isel(analysis_snapshot=-1) if has_time else analysis).compute()
    n = last.sizes["filter"]
    ids = np.asarray(
        last["sample_id"].values if "sample_id" in last.coords else last["sample"].values
    )
    outlier = np.asarray(last["outlier"].values, dtype=bool)

    def coord(name: str, default: Any) -> Any:
        return last[name].values if name in last.variables else default

    table = pd.DataFrame(
        {
            "layer": [str(v) for v in np.asarray(coord("filter_layer", np.full(n, "?")))],
            "channel": np.asarray(coord("filter_channel", np.arange(n))).astype(np.int64),
            "filter": np.arange(n, dtype=np.int64),
            "k": np.asarray(coord("n_clusters", np.zeros(n))).astype(np.int64),
            "smallest_cluster": np.asarray(coord("smallest_cluster", np.zeros(n))),
            "n_outliers": outlier.sum(axis=1),
            "outlier_ids": [ids[row].tolist() for row in outlier],
            "score": np.asarray(last["anomaly_score"].values, dtype=np.float64),
            "anomaly": np.asarray(last["anomaly"].values, dtype=bool),
        }
    )
    for name in ("dead", "explained_variance"):
        if name in last:
            table[name] = np.asarray(last[name].values)
    order = np.lexsort((table["filter"].to_numpy(), -np.nan_to_num(table["score"], nan=-1.0)))
    step = int(last["analysis_step"].values) if "analysis_step" in last.coords else None
    return table.iloc[order].reset_index(drop=True), last, step


def _anomaly_sections(table: pd.DataFrame, full: pd.DataFrame, step: int | None) -> list[Any]:
    flagged = int(np.asarray(full["anomaly"], dtype=bool).sum()) if "anomaly" in full else None
    where = "" if step is None else f" at step {step:,}"
    if flagged is None:
        verdict = ""
    elif flagged == 0:
        verdict = (
            f" No filter is flagged as an anomaly filter{where}; the table lists the highest "
            "continuous scores."
        )
    else:
        verdict = f" {flagged} of {len(full)} filters are flagged as anomaly filters{where}."
    return [
        Div(
            text=f"<h2>Anomaly filters</h2><p>Top {len(table)} of {len(full)} filters by "
            f"anomaly score (arXiv 2412.10457).{html.escape(verdict)}</p>",
            width=WIDTH,
        ),
        _table_widget(table),
    ]


#: Isolated samples listed at most (those isolated by the most anomaly filters first).
MAX_ISOLATED = 60
_TABLE_STYLE = (
    "<style>.fs-isolated td,.fs-isolated th{padding:2px 10px 2px 0;text-align:left;"
    "font-family:sans-serif;font-size:12px;vertical-align:middle}"
    ".fs-isolated img{image-rendering:pixelated;width:48px;height:48px;object-fit:contain;"
    "background:#000}</style>"
)


def isolated_samples(table: pd.DataFrame) -> pd.DataFrame:
    """Every sample that an anomaly filter isolates, with how many filters isolate it and in
    which layers.

    Parameters
    ----------
    table : pandas.DataFrame
        An anomaly table (:attr:`~filterscope.gmm.AnalysisResult.table` or
        :func:`analysis_table`) with ``anomaly``, ``outlier_ids`` and ``layer``.

    Returns
    -------
    pandas.DataFrame
        ``sample_id``, ``filters`` (anomaly filters isolating it), ``layers`` (their layers, in
        first-seen order), most filters first, then by id.

    Examples
    --------
    >>> import pandas as pd
    >>> t = pd.DataFrame({"anomaly": [True, True, False], "layer": ["a", "b", "b"],
    ...                   "outlier_ids": [[5, 2], [5], [7]]})
    >>> isolated_samples(t).values.tolist()
    [[5, 2, ['a', 'b']], [2, 1, ['a']]]
    """
    from filterscope.gmm.analyze import outlier_sample_ids  # imports torch: only when needed

    ids = outlier_sample_ids(table)
    flagged = table[np.asarray(table["anomaly"], dtype=bool)]
    filters = {int(i): 0 for i in ids}
    layers: dict[int, list[str]] = {int(i): [] for i in ids}
    for layer, outliers in zip(flagged["layer"], flagged["outlier_ids"], strict=True):
        for sample in {int(v) for v in np.asarray(outliers, dtype=np.int64).ravel()}:
            filters[sample] += 1
            if str(layer) not in layers[sample]:
                layers[sample].append(str(layer))
    out = pd.DataFrame(
        {
            "sample_id": np.asarray(list(filters), dtype=np.int64),
            "filters": np.asarray(list(filters.values()), dtype=np.int64),
            "layers": list(layers.values()),
        }
    )
    order = np.lexsort((out["sample_id"].to_numpy(), -out["filters"].to_numpy()))
    return out.iloc[order].reset_index(drop=True)


def _thumbnails(
    samples: xr.Dataset | None, log: xr.Dataset, wanted: list[int]
) -> tuple[dict[int, np.ndarray], dict[int, Any], str]:
    """Thumbnails of the ``wanted`` sample ids and labels of the analysed samples, by sample id,
    and where the thumbnails come from.

    The analysis's own ``thumbnail`` when it has one; else the log's evaluation thumbnails,
    only when the analysed samples are the log's: every sample id they share carries the same
    label in both (an analysis of other data shows no images rather than wrong ones).
    """
    if samples is None or "sample_id" not in samples.coords:
        return {}, {}, "The analysis does not record its sample ids, so no images are shown."
    ids = np.asarray(samples["sample_id"].values, dtype=np.int64).tolist()
    labels: dict[int, Any] = {}
    if "label" in samples.coords:
        labels = dict(zip(ids, np.asarray(samples["label"].values).tolist(), strict=True))
    if "thumbnail" in samples:
        at = {v: i for i, v in enumerate(ids)}
        keep = [i for i in wanted if i in at]
        images = np.asarray(samples["thumbnail"].isel(sample=[at[i] for i in keep]).values)
        return dict(zip(keep, images, strict=True)), labels, "Images: the analysis's own."
    if "thumbnail" not in log or "sample_id" not in log.coords or "label" not in log.coords:
        return {}, labels, "The log holds no thumbnails of the analysed samples."
    log_labels = np.asarray(log["label"].values).tolist()
    position = {int(v): i for i, v in enumerate(np.asarray(log["sample_id"].values))}
    shared = [i for i in ids if i in position]
    if not labels or not shared or any(labels[i] != log_labels[position[i]] for i in shared):
        return (
            {},
            labels,
            "The analysed samples are not the log's evaluation samples (their ids or labels "
            "differ), so the log's thumbnails are not shown for them.",
        )
    keep = [i for i in wanted if i in position]
    # One read of just the wanted thumbnails (a log may hold 50,000).
    images = np.asarray(log["thumbnail"].isel(sample=[position[i] for i in keep]).values)
    return (
        dict(zip(keep, images.astype(np.uint8), strict=True)),
        labels,
        "Images: the log's thumbnails of its evaluation samples (the analysed samples are "
        "among them).",
    )


def _png_data_url(image: np.ndarray) -> str:
    from PIL import Image

    pixels = image[..., 0] if image.ndim == 3 and image.shape[-1] == 1 else image
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(pixels, dtype=np.uint8)).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _isolated_sections(
    full: pd.DataFrame, samples: xr.Dataset | None, log: xr.Dataset
) -> list[Any]:
    if not {"anomaly", "outlier_ids", "layer"} <= set(full.columns):
        return []
    found = isolated_samples(full)
    heading = "<h2>Isolated samples</h2>"
    if found.empty:
        return [Div(text=f"{heading}<p>No anomaly filter, so no isolated sample.</p>", width=WIDTH)]
    shown = found.head(MAX_ISOLATED)
    images, labels, origin = _thumbnails(samples, log, [int(i) for i in shown["sample_id"]])
    names: dict[Any, Any] = {}
    if "class_name" in log.coords and "class" in log.coords:
        names = dict(
            zip(np.asarray(log["class"].values).tolist(), log["class_name"].values, strict=True)
        )
    rows = []
    for sample_id, filters, layers in shown.itertuples(index=False):
        label = labels.get(int(sample_id))
        label_text = "" if label is None else str(names.get(label, label))
        image = images.get(int(sample_id))
        cell = (
            f"<img class='fs-thumb' alt='sample {int(sample_id)}' src='{_png_data_url(image)}'>"
            if image is not None
            else "—"
        )
        rows.append(
            "<tr class='fs-isolated-row'>"
            f"<td>{cell}</td><td>{int(sample_id)}</td><td>{html.escape(label_text)}</td>"
            f"<td>{int(filters)}</td><td>{html.escape(', '.join(layers))}</td></tr>"
        )
    more = f" (the first {len(shown)} listed)" if len(found) > len(shown) else ""
    return [
        Div(
            text=f"{_TABLE_STYLE}{heading}<p>{len(found)} samples are isolated by at least one "
            f"anomaly filter{more}. {html.escape(origin)}</p>"
            "<table class='fs-isolated'><tr><th>image</th><th>sample id</th><th>label</th>"
            "<th>anomaly filters</th><th>layers</th></tr>" + "".join(rows) + "</table>",
            width=WIDTH,
        )
    ]


def view_sections(log: xr.Dataset | Index, table: pd.DataFrame | None = None) -> list[Any]:
    """The report's figures of the layer, validation and cube views, each where the log has
    what it needs, on one shared time axis.

    Parameters
    ----------
    log : xarray.Dataset or Index
        A log opened with :func:`filterscope.open_log`, or its index.
    table : pandas.DataFrame, optional
        An anomaly table: the layer of its first (highest-scoring) filter gets its filter rows
        drawn (else the first layer with filters).

    Returns
    -------
    list of bokeh.models.LayoutDOM
        Headings and figures, in page order.
    """
    idx = log if isinstance(log, Index) else index_of(log)
    ds = idx.log
    has = set(idx.specs)
    x_range, crosshair = shared_axes(idx)
    out: list[Any] = []

    def heading(text: str, detail: str) -> None:
        out.append(Div(text=f"<h2>{text}</h2><p>{html.escape(detail)}</p>", width=WIDTH))

    if idx.tree is not None and "grad_stat" in has:
        depth, order = _node_depths(idx.nodes())
        nodes = order if len(order) <= 80 else [n for n in order if depth[n] <= 2]
        heading(
            "Layers",
            "The layer view's tree: mean |gradient| per weight of every node as a horizon "
            "graph (darker bands: larger), each node on its own scale"
            + ("." if len(nodes) == len(order) else f"; the {len(nodes)} nodes down to blocks."),
        )
        out.append(layer_tree_figure(idx, nodes=nodes, x_range=x_range, crosshair=crosshair))
        layer = _report_layer(ds, order, table)
        if "filter_cosine" in has and layer is not None:
            out.append(filter_pixel_figure(idx, layer, x_range=x_range, crosshair=crosshair))
    if {"class_error", "correct"} <= has and "class" in ds.dims and "label" in ds.coords:
        heading(
            "Validation",
            "Class accuracy per snapshot on DeepTracker's scale; ▲/▼ where images flip "
            "(abLeft/abRight at lag j reach the threshold); classes with the most flips first. "
            "Below: the images of the first class, correct or wrong at every snapshot.",
        )
        lines = validation_figure(idx, order="peak", x_range=x_range, crosshair=crosshair)
        out.append(lines)
        heat: Any = lines.renderers[0]  # the heat cells' glyph renderer
        drawn = heat.data_source.data["class"]  # class positions, first line first
        if len(drawn):
            first = np.asarray(ds["class"].values)[int(drawn[0])].item()
            out.append(class_rows_figure(idx, first, x_range=x_range, crosshair=crosshair))
    if {"grad_stat", "correct", "filter_cosine"} <= has and "snapshot_step" in ds.coords:
        heading(
            "Cube",
            "Layers × iterations (front), classes × iterations (top) and layers × classes "
            "(right): how many of each layer's most-changed filters change while each class "
            "is unstable.",
        )
        out.append(cube_figures(idx))
    return out


def _report_layer(ds: xr.Dataset, order: list[str], table: pd.DataFrame | None) -> str | None:
    """The layer whose filters the report draws: the top anomaly filter's, else the first."""
    if "layer_name" not in ds.coords:
        return None
    names = [str(n) for n in ds["layer_name"].values]
    drawn = set(names)
    for flag in ("layer_filters", "layer_has_stats"):
        if flag in ds.coords:
            drawn &= {n for n, f in zip(names, ds[flag].values, strict=True) if f}
    if table is not None and len(table) and "layer" in table:
        top = str(table["layer"].iloc[0])
        if top in drawn and top in order:
            return top
    return next((n for n in order if n in drawn), None)


def _analysis_group(source: str, log: xr.Dataset) -> xr.Dataset | None:
    import filterscope as fs

    # A log that was never analysed has no analysis group; the report then omits its figure.
    if "analysis" not in log.attrs.get("filterscope_groups", []):
        return None
    return fs.open_log(source, group="analysis")
