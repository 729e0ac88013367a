"""Bokeh figures and the offline report, on a hand-built log that follows the log schema.

Every summary the figures draw is checked against a literal numpy loop over the planted data,
and every figure against the numbers it was given, so a figure cannot silently draw the wrong
variable. Figures draw from the log's index; ``tests/test_data_path.py`` checks they draw what
``Index.query`` answers for long logs too.
"""

from __future__ import annotations

import re
from pathlib import Path

import bokeh
import numpy as np
import pandas as pd
import pytest
import xarray as xr
from bokeh.core.validation import check_integrity
from bokeh.models import CategoricalAxis, ColumnDataSource, CrosshairTool, GlyphRenderer, LogAxis
from oracles import layer_stats

from filterscope.dynamics import anomaly_counts
from filterscope.dynamics.cube import cube_faces
from filterscope.dynamics.layer_view import filter_rows, metric_extent, node_series
from filterscope.dynamics.validation import class_marks, order_classes, order_rows
from filterscope.errors import InvalidDataError, InvalidParameterError, LogFormatError
from filterscope.index import build_index
from filterscope.index.summaries import class_accuracy, layer_filter_mean, layer_mean_abs
from filterscope.plots import (
    change_ratio_figure,
    class_accuracy_figure,
    class_rows_figure,
    colors,
    cube_figures,
    filter_cosine_figure,
    filter_pixel_figure,
    gradient_figure,
    layer_tree_figure,
    loss_figure,
    training_figures,
    validation_figure,
    write_report,
)
from filterscope.plots.figures import ACCURACY_PALETTE
from filterscope.plots.views import (
    column_of_pixel,
    normalize_rows,
    row_log_normalize,
    triangle_size,
)

STATS = ["max", "min", "mean", "sum", "var", "std", "l0", "l1", "l2", "median", "q1", "q3"]
THRESHOLDS = np.array(
    [np.inf, *[m * 10.0**-d for d in range(7) for m in range(10, 0, -1) if not (d and m == 10)]]
)[:56]
LAYERS = [  # name, kind, filters, parameters per filter
    ("conv1", "Conv2d", 4, 9),
    ("bn1", "BatchNorm2d", 4, 1),
    ("conv2", "Conv2d", 6, 36),
    ("fc", "Linear", 3, 6),
]


def hand_built_log(seed: int = 0, n_snapshots: int = 6, steps_per_snapshot: int = 5):
    """A small log with the schema's dims, coords and variables, plus the raw gradients."""
    rng = np.random.default_rng(seed)
    n_steps = n_snapshots * steps_per_snapshot
    n_samples, n_classes = 30, 3
    stat_layers = [i for i, (_, kind, _, _) in enumerate(LAYERS) if kind != "BatchNorm2d"]
    grads = {
        i: rng.normal(scale=10.0 ** -(i + 1), size=(n_snapshots, LAYERS[i][2] * LAYERS[i][3]))
        for i in stat_layers
    }
    grad_stat = np.full((n_snapshots, len(LAYERS), len(STATS)), np.nan, dtype=np.float32)
    weight_stat = grad_stat.copy()
    change_ratio = np.full((n_snapshots, len(LAYERS), len(THRESHOLDS)), np.nan, np.float32)
    for i in stat_layers:
        for s in range(n_snapshots):
            grad_stat[s, i] = layer_stats(grads[i][s])
            weight_stat[s, i] = layer_stats(rng.normal(size=grads[i].shape[1]))
            change_ratio[s, i] = np.sort(rng.uniform(size=len(THRESHOLDS)))[::-1]
    filter_layer_index = np.concatenate([[i] * LAYERS[i][2] for i in stat_layers])
    n_filters = len(filter_layer_index)
    labels = np.arange(n_samples) % n_classes
    cosine = rng.uniform(0.5, 1.0, size=(n_snapshots, n_filters)).astype(np.float32)
    cosine[0] = np.nan
    log = xr.Dataset(
        {
            "loss": ("step", np.linspace(2.3, 0.1, n_steps).astype(np.float32)),
            "lr": ("step", np.full(n_steps, 1e-3, np.float32)),
            "train_error": ("step", np.linspace(0.9, 0.0, n_steps).astype(np.float32)),
            "step_time": ("step", np.full(n_steps, 0.01, np.float32)),
            "val_loss": ("snapshot", rng.uniform(0.2, 2.0, n_snapshots).astype(np.float32)),
            "val_error": ("snapshot", rng.uniform(0.0, 1.0, n_snapshots).astype(np.float32)),
            "train_loss": ("snapshot", rng.uniform(0.0, 2.0, n_snapshots).astype(np.float32)),
            "correct": (("snapshot", "sample"), rng.uniform(size=(n_snapshots, n_samples)) < 0.7),
            "weight_stat": (("snapshot", "layer", "stat"), weight_stat),
            "grad_stat": (("snapshot", "layer", "stat"), grad_stat),
            "change_ratio": (("snapshot", "layer", "threshold"), change_ratio),
            "filter_cosine": (("snapshot", "filter"), cosine),
        },
        coords={
            "step": np.arange(n_steps, dtype=np.int64),
            "step_epoch": ("step", np.arange(n_steps) // steps_per_snapshot),
            "snapshot": np.arange(n_snapshots, dtype=np.int64),
            "snapshot_step": ("snapshot", np.arange(n_snapshots) * steps_per_snapshot + 4),
            "snapshot_epoch": ("snapshot", np.arange(n_snapshots)),
            "sample": np.arange(n_samples),
            "sample_id": ("sample", np.arange(n_samples) * 7),
            "label": ("sample", labels),
            "class": np.arange(n_classes),
            "class_name": ("class", ["cat", "dog", "owl"]),
            "layer": np.arange(len(LAYERS)),
            "layer_name": ("layer", [n for n, _, _, _ in LAYERS]),
            # a flat model: every layer is its own stage and block
            "layer_stage": ("layer", [n for n, _, _, _ in LAYERS]),
            "layer_block": ("layer", [n for n, _, _, _ in LAYERS]),
            "layer_kind": ("layer", [k for _, k, _, _ in LAYERS]),
            "layer_filters": ("layer", [f for _, _, f, _ in LAYERS]),
            "layer_has_stats": ("layer", [k != "BatchNorm2d" for _, k, _, _ in LAYERS]),
            "filter": np.arange(n_filters),
            "filter_layer": ("filter", [LAYERS[i][0] for i in filter_layer_index]),
            "filter_layer_index": ("filter", filter_layer_index),
            "filter_channel": (
                "filter",
                np.concatenate([np.arange(LAYERS[i][2]) for i in stat_layers]),
            ),
            "stat": STATS,
            "threshold": THRESHOLDS,
        },
        attrs={"filterscope_format": 1},
    )
    return log, grads


def _sources(fig) -> list[ColumnDataSource]:
    return [r.data_source for r in fig.renderers if isinstance(r, GlyphRenderer)]


def indexed_log(tmp_path, **kwargs):
    log, grads = hand_built_log(**kwargs)
    return build_index(log, tmp_path / "index.zarr"), log, grads


def test_layer_mean_abs_matches_the_raw_gradients(tmp_path):
    idx, _, grads = indexed_log(tmp_path)
    got = layer_mean_abs(idx, "grad_stat", level=0).sel(agg="mean")
    assert got.dims == ("snapshot", "layer")
    assert got["layer"].values.tolist() == [0, 2, 3]  # batch norm has no statistics
    for i, g in grads.items():
        np.testing.assert_allclose(got.sel(layer=i).values, np.abs(g).mean(axis=1), rtol=1e-4)


def test_layer_filter_mean_and_class_accuracy_match_literal_loops(tmp_path):
    idx, log, _ = indexed_log(tmp_path)
    cos = log["filter_cosine"].values
    fli = log["filter_layer_index"].values
    got = layer_filter_mean(idx, "filter_cosine", level=0).sel(agg="mean")
    assert got["layer"].values.tolist() == [0, 2, 3]
    for layer in (0, 2, 3):
        for s in range(log.sizes["snapshot"]):
            cells = cos[s, fli == layer]
            if s:
                assert got.sel(layer=layer).values[s] == pytest.approx(cells.mean(), rel=1e-6)
            else:
                assert np.isnan(got.sel(layer=layer).values[s])  # no change at snapshot 0
    correct, labels = log["correct"].values, log["label"].values
    acc = class_accuracy(idx, level=0).sel(agg="mean")
    for c in range(3):
        for s in range(log.sizes["snapshot"]):
            assert acc.values[s, c] == pytest.approx(correct[s, labels == c].mean())
    # Buckets of two snapshots: the accuracy's min is one minus the error's max.
    coarse = class_accuracy(idx, level=1)
    err = idx.query("class_error", level=1)
    np.testing.assert_allclose(coarse.sel(agg="min"), 1 - err.sel(agg="max"))


def test_loss_figure_draws_the_logged_values(tmp_path):
    idx, log, _ = indexed_log(tmp_path)
    fig = loss_figure(idx)
    assert isinstance(fig.yaxis[0], LogAxis)
    sources = _sources(fig)
    by_len = {len(src.data["x"]): src.data for src in sources}
    np.testing.assert_allclose(by_len[log.sizes["step"]]["y"], log["loss"].values)
    # Both evaluation sets (val, train) appear at their snapshot steps, as line and markers.
    snapshot_series = [s.data for s in sources if len(s.data["x"]) == log.sizes["snapshot"]]
    drawn = sorted(tuple(np.round(d["y"], 6)) for d in snapshot_series)
    expected = sorted(
        tuple(np.round(log[f"{n}_loss"].values.astype(float), 6)) for n in ("val", "train")
    )
    assert sorted(set(drawn)) == expected
    for d in snapshot_series:
        np.testing.assert_array_equal(d["x"], log["snapshot_step"].values)


def test_heatmaps_draw_aggregates_and_skip_batch_norm(tmp_path):
    idx, log, _ = indexed_log(tmp_path)
    fig = gradient_figure(idx)
    (cells,) = _sources(fig)
    rows = list(dict.fromkeys(cells.data["row"]))
    assert rows == ["conv1", "conv2", "fc"]
    expected = layer_mean_abs(idx, level=0).sel(agg="mean").transpose("layer", "snapshot")
    np.testing.assert_allclose(cells.data["value"], expected.values.ravel())
    assert list(fig.y_range.factors) == ["fc", "conv2", "conv1"]  # first layer on top
    assert isinstance(fig.yaxis[0], CategoricalAxis)
    # Cells sit on the snapshot steps, as wide as the gaps between them.
    np.testing.assert_allclose(cells.data["x"][:6], log["snapshot_step"].values)
    np.testing.assert_allclose(cells.data["w"][:6], 5.0)

    (cells,) = _sources(change_ratio_figure(idx, threshold=0.01))
    t = int(np.argmin(np.abs(THRESHOLDS - 0.01)))
    np.testing.assert_allclose(
        cells.data["value"], log["change_ratio"].values[:, [0, 2, 3], t].T.ravel()
    )
    (cells,) = _sources(filter_cosine_figure(idx))
    assert np.isnan(cells.data["value"][0])  # no change at snapshot 0

    fig = class_accuracy_figure(idx)
    (cells,) = _sources(fig)
    assert list(dict.fromkeys(cells.data["row"])) == ["cat", "dog", "owl"]
    acc = class_accuracy(idx, level=0).sel(agg="mean").transpose("class", "snapshot")
    np.testing.assert_allclose(cells.data["value"], acc.values.ravel())
    assert fig.renderers[0].glyph.fill_color["transform"].palette == list(ACCURACY_PALETTE)


def test_accuracy_palette_hits_the_published_stops():
    assert len(ACCURACY_PALETTE) == 256
    assert ACCURACY_PALETTE[0] == "#dd261c" and ACCURACY_PALETTE[-1] == "#0e9247"


def test_training_figures_share_x_range_and_hover_line(tmp_path):
    idx, log, _ = indexed_log(tmp_path)
    analysis = xr.Dataset(
        {"anomaly": (("analysis_snapshot", "filter"), [[True, False, True], [False] * 3])},
        coords={"analysis_step": ("analysis_snapshot", [9, 29])},
    )
    layout = training_figures(idx, analysis)
    issues = check_integrity(layout.references())
    assert not issues.error and not issues.warning, issues  # e.g. a scale that fits no range
    figs = layout.children
    assert len(figs) == 8
    assert len({id(f.x_range) for f in figs}) == 1
    spans = {id(t.overlay) for f in figs for t in f.tools if isinstance(t, CrosshairTool)}
    assert len(spans) == 1
    assert anomaly_counts(analysis).values.tolist() == [2, 0]
    x_range = figs[0].x_range
    assert x_range.start <= 0 and x_range.end >= log["step"].values[-1]


def test_partial_log_plots_what_it_has(tmp_path):
    log, _ = hand_built_log()
    layout = training_figures(build_index(log[["loss", "lr"]], tmp_path / "a"))
    assert [f.title.text for f in layout.children] == ["Loss", "Learning rate"]
    with pytest.raises(LogFormatError, match="'grad_stat'"):
        gradient_figure(build_index(log[["loss"]], tmp_path / "b"))


def test_a_log_built_in_memory_needs_its_index_passed(tmp_path):
    log, _ = hand_built_log()
    with pytest.raises(InvalidParameterError, match=r"build_index\(log, store="):
        loss_figure(log)
    with pytest.raises(InvalidParameterError, match="not opened from a path"):
        write_report(log, tmp_path / "r.html")


_EXTERNAL = re.compile(
    r"<(?:script\b[^>]*\bsrc|link\b[^>]*\bhref)\s*=\s*[\"']?(?:https?:)?//", re.IGNORECASE
)


def assert_offline_html(text: str) -> None:
    """No script or stylesheet is loaded from the network, and BokehJS itself is inlined."""
    assert not _EXTERNAL.search(text)
    assert "<script" in text and "Bokeh" in text
    assert bokeh.__version__ in text  # the inlined BokehJS carries its version
    assert "BEGIN bokeh.min.js" in text and "cdn.bokeh.org" not in text


def test_write_report_is_offline_and_lists_top_anomalies(tmp_path):
    idx, _, _ = indexed_log(tmp_path)
    table = pd.DataFrame(
        {
            "layer": [f"layer{i}" for i in range(30)],
            "filter": np.arange(30),
            "k": np.full(30, 2),
            "smallest_cluster": np.arange(30) % 5,
            "outlier_ids": [list(range(i % 12)) for i in range(30)],
            "score": np.linspace(0.0, 1.0, 30),
        }
    )
    out = write_report(idx, tmp_path / "sub" / "report.html", anomalies=table, title="A <b> test")
    text = out.read_text(encoding="utf-8")
    assert_offline_html(text)
    assert "A &lt;b&gt; test" in text  # the title is escaped
    # The 20 highest scores are listed; the lowest ten are not.
    assert "layer29" in text and "layer10" in text and "layer9\\" not in text
    assert '"layer9"' not in text
    assert "Top 20 of 30" in text
    assert "final val error" in text


def test_write_report_rejects_bad_inputs(tmp_path):
    idx, _, _ = indexed_log(tmp_path)
    with pytest.raises(InvalidDataError, match="anomalies must be"):
        write_report(idx, tmp_path / "r.html", anomalies=[1, 2, 3])
    with pytest.raises(InvalidParameterError, match="log must be"):
        write_report(42, tmp_path / "r.html")  # type: ignore[arg-type]
    assert not (tmp_path / "r.html").exists()


def test_many_classes_draw_the_lowest_accuracy_ones(tmp_path, monkeypatch):
    import filterscope.plots.figures as figures

    idx, log, _ = indexed_log(tmp_path)
    monkeypatch.setattr(figures, "MAX_CLASS_ROWS", 2)
    fig = class_accuracy_figure(idx)
    (cells,) = _sources(fig)
    correct, labels = log["correct"].values, log["label"].values
    mean_acc = [correct[:, labels == c].mean() for c in range(3)]
    worst = sorted(np.argsort(mean_acc, kind="stable")[:2])
    assert list(dict.fromkeys(cells.data["row"])) == [["cat", "dog", "owl"][c] for c in worst]
    assert "the 2 of 3 classes with the lowest mean accuracy" in fig.title.text


# ------------------------------------------------------------------ the views' static figures

JS_SRC = Path(__file__).resolve().parents[1] / "js" / "src"


def _ts_hexes(file: str, name: str) -> list[str]:
    """The hex colours of the TypeScript constant ``name`` in ``js/src/<file>``."""
    text = (JS_SRC / file).read_text(encoding="utf-8")
    match = re.search(rf"const {name}\b[^=]*=\s*(\[.*?\n\]|\[[^\n]*\]|\"[^\"]*\")", text, re.DOTALL)
    assert match, f"{name} not found in {file}"
    return [h.lower() for h in re.findall(r"#[0-9a-fA-F]{6}", match.group(1))]


def _ts_rgba(file: str, name: str) -> list[str]:
    text = (JS_SRC / file).read_text(encoding="utf-8")
    match = re.search(rf"const {name}\b[^=]*=\s*\[(.*?)\n\];", text, re.DOTALL)
    assert match, f"{name} not found in {file}"
    rows = re.findall(r"\[(\d+),\s*(\d+),\s*(\d+),\s*255\]", match.group(1))
    return ["#{:02x}{:02x}{:02x}".format(*map(int, row)) for row in rows]


def _ts_stops(file: str, name: str) -> list[tuple[float, str]]:
    text = (JS_SRC / file).read_text(encoding="utf-8")
    match = re.search(rf"const {name}\b[^=]*=\s*\[(.*?)\n\];", text, re.DOTALL)
    assert match, f"{name} not found in {file}"
    found = re.findall(r"\[\s*([0-9.]+),\s*(?:hex\()?\"(#[0-9a-fA-F]{6})\"", match.group(1))
    return [(float(at), color.lower()) for at, color in found]


def test_colour_scales_are_the_widgets_own():
    assert _ts_rgba("canvas.ts", "VIRIDIS") == list(colors.VIRIDIS_STOPS)
    assert _ts_stops("validation.ts", "ACCURACY_STOPS") == list(colors.ACCURACY_STOPS)
    assert _ts_stops("cube.ts", "ACCURACY_STOPS") == list(colors.ACCURACY_STOPS)
    assert _ts_hexes("validation.ts", "CORRECT_COLOR") == [colors.CORRECT_COLOR]
    assert _ts_hexes("validation.ts", "WRONG_COLOR") == [colors.WRONG_COLOR]
    assert _ts_hexes("cube.ts", "BLUE_STOPS") == list(colors.BLUE_STOPS)
    assert _ts_hexes("layer.ts", "POSITIVE") == list(colors.HORIZON_POSITIVE)
    assert _ts_hexes("layer.ts", "NEGATIVE") == list(colors.HORIZON_NEGATIVE)
    assert _ts_hexes("layer.ts", "BAND_COLORS") == list(colors.BAND_COLORS)
    # The 256-step tables hit the stops where the page's tables do.
    for palette, first, last in (
        (colors.VIRIDIS_PALETTE, "#440154", "#fde725"),
        (colors.BLUE_PALETTE, "#c6dbef", "#08306b"),
        (ACCURACY_PALETTE, "#dd261c", "#0e9247"),
    ):
        assert len(palette) == 256 and palette[0] == first and palette[-1] == last
    # Either side of 0.5: step 127 (t = 127/255) is 99.6 % of the way from red to pale yellow,
    # step 128 is 9.8 % of the way from pale yellow to light green (0.5 to 0.52).
    assert colors.ACCURACY_PALETTE[127] == "#fffebe"
    assert colors.ACCURACY_PALETTE[128] == "#fbfdba"


def test_drawing_maths_matches_hand_computed_values():
    # Nearest column, ties to the earlier; nothing beyond half a gap outside the points.
    assert column_of_pixel([10, 20, 30], 0, 40, 8).tolist() == [-1, 0, 0, 1, 1, 2, 2, -1]
    grid = np.array([[1.0, 3.0, np.nan], [2.0, 2.0, 4.0]])
    np.testing.assert_array_equal(
        normalize_rows(grid, "filter"), [[0.0, 1.0, np.nan], [0.0, 0.0, 1.0]]
    )
    np.testing.assert_array_equal(
        normalize_rows(grid, "snapshot"), [[0.0, 1.0, np.nan], [1.0, 0.0, 0.5]]
    )
    np.testing.assert_array_equal(
        normalize_rows(grid, "global", (0.0, 4.0)), [[0.25, 0.75, np.nan], [0.5, 0.5, 1.0]]
    )
    with pytest.raises(InvalidParameterError, match="normalize must be one of"):
        normalize_rows(grid, "row")  # type: ignore[arg-type]
    logs = row_log_normalize([[1e-3, 1e-2, 1e-1, 0.0], [5.0, 5.0, np.nan, 5.0]], tail=0.0)
    np.testing.assert_allclose(logs[0, :3], [0.0, 0.5, 1.0])
    assert np.isnan(logs[0, 3]) and np.isnan(logs[1, 2])
    np.testing.assert_array_equal(logs[1, [0, 1, 3]], 0.5)
    assert triangle_size(4, 5, 20, 14) == 0.0
    assert triangle_size(20, 5, 20, 14) == 14.0
    assert triangle_size(5 + 15 / 4, 5, 20, 14) == pytest.approx(5 + 9 * 0.5)


def _nan_equal(a, b) -> None:
    np.testing.assert_array_equal(np.asarray(a, dtype=float), np.asarray(b, dtype=float))


@pytest.mark.parametrize("chart", ["horizon", "line", "box", "bands"])
def test_layer_tree_figure_draws_the_node_series(tmp_path, chart):
    idx, _, _ = indexed_log(tmp_path)
    fig = layer_tree_figure(idx, chart=chart, variable="weight" if chart == "line" else "gradient")
    assert not check_integrity(fig.references()).error
    cells = _sources(fig)[0].data
    expected = node_series(
        idx, variable="weight" if chart == "line" else "gradient", chart=chart, columns=300
    )
    # Tree order: the model, then its children in the index's order.
    assert list(dict.fromkeys(cells["node"])) == ["model", "conv1", "conv2", "fc"]
    _nan_equal(cells["value"], expected.sel(node=["model", "conv1", "conv2", "fc"]).values.ravel())
    labels = list(fig.yaxis[0].major_label_overrides.values())
    assert labels == ["model", "  conv1", "  conv2", "  fc"]  # indented by depth
    if chart == "horizon":  # band heights follow each node's own largest magnitude
        quads = _sources(fig)[1].data
        assert set(quads["color"]) <= set(colors.HORIZON_POSITIVE) | set(colors.HORIZON_NEGATIVE)
        top = np.nanmax(np.abs(expected.sel(node="fc").values))
        full = [t - b for t, b in zip(quads["top"], quads["bottom"], strict=True)]
        assert max(full) == pytest.approx(0.9 * 1.0) and top > 0


def test_filter_pixel_figure_draws_filter_rows_normalised(tmp_path):
    idx, log, _ = indexed_log(tmp_path)
    for mode in ("filter", "global"):
        fig = filter_pixel_figure(idx, "conv2", normalize=mode)
        (source,) = _sources(fig)
        rows = filter_rows(idx, "conv2", columns=300)
        _nan_equal(source.data["rows"][0], rows.values)
        cosine = log["filter_cosine"].values[:, log["filter_layer_index"].values == 2].T
        _nan_equal(source.data["rows"][0], cosine)  # the raw log values, at level 0
        image = source.data["image"][0][::-1]  # first filter on top
        x = log["snapshot_step"].values
        span = (fig.x_range.start, fig.x_range.end)
        cols = column_of_pixel(x, *span, image.shape[1])
        lo, hi = metric_extent(idx) if mode == "global" else (0, 1)
        _nan_equal(image[:, cols >= 0], normalize_rows(cosine, mode, (lo, hi))[:, cols[cols >= 0]])
    with pytest.raises(InvalidParameterError, match="layer must be a layer name"):
        filter_pixel_figure(idx, "<b>nope</b>")


def test_validation_figure_draws_accuracy_and_flip_triangles(tmp_path):
    idx, log, _ = indexed_log(tmp_path)
    fig = validation_figure(idx, j=0, threshold=2)
    heat, up, down = (r.data_source.data for r in fig.renderers)
    marks = class_marks(log, j=0, threshold=2)
    err = idx.query("class_error", columns=300).sel(agg="mean").values  # snapshot, class
    order = list(order_classes(err, "mds"))
    assert list(dict.fromkeys(heat["class"])) == order
    for c in range(3):
        rows = np.asarray(heat["class"]) == c
        _nan_equal(np.asarray(heat["accuracy"])[rows], 1 - err[:, c])
    for drawn, kind in ((up, "up"), (down, "down")):
        counts = marks[kind].values  # snapshot, class (one column per snapshot here)
        snap, cls = np.nonzero(counts)
        expected = sorted(
            zip(
                cls.tolist(),
                log["snapshot_step"].values[snap].tolist(),
                counts[snap, cls].tolist(),
                strict=True,
            )
        )
        got = sorted(zip(drawn["class"], drawn["x"], drawn["count"], strict=True))
        assert got == [(c, float(x), n) for c, x, n in expected]
        assert all(s >= 5 for s in drawn["size"])
    assert up["class"] or down["class"]  # the planted data flips somewhere


def test_class_rows_figure_draws_the_index_rows_in_mds_order(tmp_path):
    idx, log, _ = indexed_log(tmp_path)
    fig = class_rows_figure(idx, 1)
    (source,) = _sources(fig)
    answer = idx.query("correct", columns=300, class_=1).sel(agg="mean")
    values = answer.transpose("snapshot", "sample").values
    order = order_rows(values)
    np.testing.assert_array_equal(source.data["samples"][0], answer["sample"].values[order])
    np.testing.assert_array_equal(source.data["values"][0], values[:, order].T)
    correct = log["correct"].values[:, log["label"].values == 1]
    np.testing.assert_array_equal(source.data["values"][0], correct[:, order].T)
    with pytest.raises(InvalidParameterError, match="class 7 is not in this log"):
        class_rows_figure(idx, 7)


def test_cube_figures_draw_the_cube_faces(tmp_path):
    idx, log, _ = indexed_log(tmp_path)
    grid = cube_figures(idx, k=2)
    assert not check_integrity(grid.references()).error
    (top, _), (front, _), (right, _) = ((c[0], c[1:]) for c in grid.children)
    faces = cube_faces(log, k=2)
    page = faces["class_order"].values
    front_src, top_src, right_src = (_sources(f)[0].data for f in (front, top, right))
    mean_abs = layer_mean_abs(idx, "grad_stat", columns=300).sel(agg="mean").values.T
    _nan_equal(front_src["mean_abs"], mean_abs.ravel())
    _nan_equal(front_src["value"], row_log_normalize(mean_abs).ravel())
    acc = (
        class_accuracy(idx, columns=300, class_=list(page)).sel(agg="mean").transpose("class", ...)
    )
    _nan_equal(top_src["value"], acc.values.ravel())
    corr = faces["correlation"].sel(layer=[0, 2, 3]).transpose("layer", "class").values[:, page]
    _nan_equal(right_src["value"], np.where(corr > 0, corr, np.nan).ravel())
    assert front.x_range is top.x_range and front.y_range is right.y_range


def test_names_are_drawn_as_text(tmp_path):
    log, _ = hand_built_log()
    hostile = "<img src=x onerror=alert(1)>"
    log = log.assign_coords(class_name=("class", [hostile, "dog", "owl"]))
    idx = build_index(log, tmp_path / "i.zarr")
    fig = validation_figure(idx)
    # Tick labels and tooltips are canvas text: the name is kept as it is, never parsed.
    assert hostile in fig.yaxis[0].major_label_overrides.values()
    text = write_report(idx, tmp_path / "r.html").read_text(encoding="utf-8")
    assert "<img src=x" not in text and "&lt;img src=x onerror=alert(1)&gt;" in text
