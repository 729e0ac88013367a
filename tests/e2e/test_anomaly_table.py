"""AnomalyTable in a real JupyterLab, in headless Chromium: the first page of a real analysis
(the engine fitted on filter clouds with planted groups, over a recorded run's layers and
samples) renders; clicking the top row draws its scatter; hovering and clicking an outlier shows
its thumbnail and sets the selection in Python; the sample view lists the isolated samples; a
header sorts and "next" pages; no console errors; light and dark screenshots."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from anomaly_result import planted_result
from tiny_run import record_tiny_run

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.xdist_group("jupyterlab")]

NOTEBOOK = [
    "import json\nimport pickle\nimport filterscope as fs\n\n"
    'log = fs.open_log("anomaly_run")\n'
    'with open("anomaly_result.pkl", "rb") as f:\n    result = pickle.load(f)\n'
    "sel = fs.views.Selection()",
    "w = fs.AnomalyTable(result, log=log, selection=sel)\nw",
    'print("STATE=" + json.dumps({"filter": w.filter, "sample": w.sample, '
    '"sample_index": sel.sample_index, "layer": sel.layer, "filter_index": sel.filter_index}, '
    'separators=(",", ":")))',
]


def test_anomaly_table_renders_selects_links_sorts_and_pages(jupyter_lab):
    log = record_tiny_run(jupyter_lab.root / "anomaly_run", epochs=2)
    names = log.filter_layer.values.astype(object).astype(str)
    conv = [(str(n), int((names == n).sum())) for n in pd.unique(names) if "conv" in str(n)]
    ids = np.asarray(log.sample_id.values)
    result, _ = planted_result(conv, n_samples=len(ids), sample_ids=ids, random_state=2)
    with open(jupyter_lab.root / "anomaly_result.pkl", "wb") as f:
        pickle.dump(result, f)
    jupyter_lab.write_notebook("anomaly.ipynb", NOTEBOOK)

    got = jupyter_lab.drive("anomaly", "anomaly.ipynb", timeout=300)

    table = result.table
    n_rows = len(table)
    # The first page is the analysis's ranking, paged: 25 of the 28 conv filters.
    page = got["first_page"]
    assert page["total"] == n_rows == 28
    assert page["rows"] == 25 and page["filters"] == table["filter"].tolist()[:25]
    assert page["label"] == f"rows 1–25 of {n_rows}"
    # The top filter's scatter: every probe sample, its outliers ringed and in the strip.
    top = int(table["filter"].iloc[0])
    outliers = np.flatnonzero(result.dataset.outlier.values[top])
    assert got["scatter"]["filter"] == top and got["scatter"]["points"] == len(ids)
    assert got["scatter"]["outliers"] == len(outliers) > 0
    assert got["strip"] == min(len(outliers), 24)
    # Hover and click on an outlier: its id in the tooltip, then the selection in Python.
    hovered = got["hovered"]
    assert f"sample id {ids[hovered]}" in got["tooltip"]
    kernel = got["kernel"]
    assert kernel["filter"] == top and kernel["sample"] == hovered
    assert kernel["sample_index"] == int(np.flatnonzero(log.sample_id.values == ids[hovered])[0])
    assert kernel["layer"] == str(result.dataset.filter_layer.values[top])
    at = kernel["filter_index"]
    assert str(log.filter_layer.values[at]) == kernel["layer"]
    assert int(log.filter_channel.values[at]) == int(result.dataset.filter_channel.values[top])
    # The sample view lists the isolated samples, most isolating filters first.
    isolated = np.flatnonzero(result.dataset.outlier.values.any(0))
    assert got["samples_total"] == len(isolated)
    assert set(got["sample_ids"]) <= set(ids[isolated].tolist())
    assert len(got["sample_ids"]) == min(len(isolated), 20)
    # Sorted by layer (names ascending), then the second page holds the last rows.
    layer_order = sorted(names for names, _ in conv)
    assert got["sorted_layers"] == sorted(got["sorted_layers"])
    assert got["sorted_layers"][0] == layer_order[0]
    assert got["second_page"]["rows"] == n_rows - 25
    assert got["second_page"]["layers"] == [layer_order[-1]] * (n_rows - 25)
    assert got["second_page"]["label"] == f"rows 26–{n_rows} of {n_rows}"
    assert got["errors"] == 0
    for shot in got["screenshots"]:
        assert Path(shot).stat().st_size > 10_000
