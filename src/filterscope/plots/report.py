"""A self-contained, offline HTML report of a filterscope log."""

from __future__ import annotations

import html
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
from filterscope.plots.figures import WIDTH, training_figures

__all__ = ["store_size", "summary", "write_report"]

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
) -> Path:
    """Write a self-contained HTML report of a log: summary numbers, linked figures, anomalies.

    BokehJS is inlined, so the file opens offline and can be mailed or archived as is.

    Parameters
    ----------
    log : xarray.Dataset, Index or path
        A log from :func:`filterscope.open_log` or the store's path (then the store size is
        reported and its analysis group, if any, is plotted); its index is opened, or built on
        first use, with :func:`filterscope.index_of`. For a log built in memory pass its index
        (:func:`filterscope.index.build_index`).
    path : path
        Where to write the HTML file (parent folders are created).
    anomalies : AnalysisResult or pandas.DataFrame, optional
        The result of :func:`filterscope.analyze` (or its ``.table``); the 20 highest-scoring
        filters are listed.
    title : str, default="filterscope report"
        Page and heading title.
    analysis : xarray.Dataset, optional
        The log's analysis group; adds the anomaly-filter count per analysed snapshot. Read from
        the store when ``log`` is a path and this is not given.

    Returns
    -------
    pathlib.Path
        The written file.

    Examples
    --------
    >>> import filterscope as fs
    >>> # fs.write_report("runs/demo", "runs/demo/report.html", fs.analyze(model, data))
    """
    import filterscope as fs

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
    if table is not None:
        total = len(getattr(anomalies, "table", anomalies))
        parts.append(
            Div(
                text=f"<h2>Anomaly filters</h2><p>Top {len(table)} of {total} filters by "
                "anomaly score (arXiv 2412.10457).</p>",
                width=WIDTH,
            )
        )
        parts.append(_table_widget(table))
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(file_html(column(*parts), resources=INLINE, title=title), encoding="utf-8")
    return out


def _analysis_group(source: str, log: xr.Dataset) -> xr.Dataset | None:
    import filterscope as fs

    # A log that was never analysed has no analysis group; the report then omits its figure.
    if "analysis" not in log.attrs.get("filterscope_groups", []):
        return None
    return fs.open_log(source, group="analysis")
