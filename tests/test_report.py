"""The offline report on a really trained, really recorded and really analysed run.

A small CNN learns the 8×8 digits; 4 % of its validation images are inverted (atypical inputs)
and the Recorder analyses that set every few snapshots, so the report has anomaly filters, the
samples they isolate and those samples' thumbnails. One class is named like an HTML injection.
``tests/e2e/test_report_offline.py`` opens the same report in Chromium.
"""

from __future__ import annotations

import html
import re
from pathlib import Path

import pytest
import torch
import xarray as xr
from test_plots import assert_offline_html
from torch import nn

import filterscope as fs
from filterscope.cli import main
from filterscope.data import digits
from filterscope.data.datasets import ImageDataset
from filterscope.errors import InvalidParameterError
from filterscope.gmm.analyze import outlier_sample_ids
from filterscope.models import SimpleCNN
from filterscope.plots import analysis_table, isolated_samples, write_report

HOSTILE = "<img src=x onerror=alert(1)>"
#: Every 25th validation image is inverted.
INVERT_EVERY = 25


def record_report_run(path: str | Path, *, epochs: int = 4, seed: int = 0) -> xr.Dataset:
    """Train and record a tiny CNN with analyses of its validation set; return the log."""
    torch.manual_seed(seed)
    train, val = digits("train", size=8, seed=seed), digits("val", size=8, seed=seed)
    x = val.x.clone()
    x[::INVERT_EVERY] = -x[::INVERT_EVERY]
    probe = ImageDataset(
        x,
        val.y,
        sample_ids=val.sample_ids,
        class_names=[HOSTILE, *val.class_names[1:]],
        name="digits",
        split="val",
    )
    model = SimpleCNN(width=4)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.2, momentum=0.9)
    shuffle = torch.Generator().manual_seed(seed)
    with fs.Recorder(
        model,
        path,
        eval_sets={"val": probe},
        snapshot_every=10,
        optimizer=optimizer,
        steps_per_epoch=-(-len(train) // 32),
        analyze_every=3,
        analyze_data=probe,
        analyze_kwargs={"progress": False, "n_samples": None},
    ) as recorder:
        for _ in range(epochs):
            for batch in torch.randperm(len(train), generator=shuffle).split(32):
                output = model(train.x[batch])
                loss = nn.functional.cross_entropy(output, train.y[batch])
                optimizer.zero_grad()
                loss.backward()
                recorder.step(loss, output, train.y[batch])
                optimizer.step()
    return fs.open_log(path)


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("report") / "run"
    record_report_run(path)
    return path


@pytest.fixture(scope="module")
def report(run: Path) -> tuple[Path, str]:
    out = write_report(run, run.parent / "report.html", note="Atypical <inputs> & more")
    return out, out.read_text(encoding="utf-8")


def test_analysis_table_is_the_last_analysis(run):
    analysis = fs.open_log(run, group="analysis")
    table, last, step = analysis_table(analysis)
    assert step == int(analysis["analysis_step"].values[-1])
    scores = analysis["anomaly_score"].values[-1]
    assert len(table) == scores.size
    assert table["score"].tolist() == sorted(scores.tolist(), reverse=True)
    ids = analysis["sample_id"].values
    outlier = analysis["outlier"].values[-1]
    for row in table.itertuples():
        assert row.anomaly == bool(analysis["anomaly"].values[-1, row.filter])
        assert row.outlier_ids == ids[outlier[row.filter]].tolist()
        assert row.layer == str(analysis["filter_layer"].values[row.filter])
    assert last["sample_id"].values.tolist() == ids.tolist()


def test_isolated_samples_count_filters_and_layers(run):
    table, _, _ = analysis_table(fs.open_log(run, group="analysis"))
    found = isolated_samples(table)
    assert found["sample_id"].tolist() == sorted(
        outlier_sample_ids(table).tolist(),
        key=lambda i: (-found.set_index("sample_id").loc[i, "filters"], i),
    )
    flagged = table[table["anomaly"]]
    for sample_id, filters, layers in found.itertuples(index=False):
        holders = flagged[[sample_id in ids for ids in flagged["outlier_ids"]]]
        assert filters == len(holders)
        assert sorted(layers) == sorted(set(holders["layer"]))


def test_report_lists_anomalies_isolated_samples_and_thumbnails(run, report):
    _, text = report
    assert_offline_html(text)
    # Bokeh stores each Div's HTML escaped once inside the page's JSON: unescaped, it is the
    # markup the browser renders.
    markup = html.unescape(text)
    table, _, step = analysis_table(fs.open_log(run, group="analysis"))
    flagged = int(table["anomaly"].sum())
    assert flagged > 0  # the inverted images give the analysis something to isolate
    assert f"{flagged} of {len(table)} filters are flagged as anomaly filters at step {step:,}" in (
        markup
    )
    found = isolated_samples(table)
    rows = re.findall(r"<tr class='fs-isolated-row'>(.*?)</tr>", markup)
    assert len(rows) == min(len(found), 60) > 0
    log = fs.open_log(run)
    names = dict(zip(log["class"].values.tolist(), log["class_name"].values, strict=True))
    labels = dict(zip(log["sample_id"].values.tolist(), log["label"].values.tolist(), strict=True))
    for row, (sample_id, filters, layers) in zip(rows, found.itertuples(index=False), strict=False):
        # Its thumbnail (the analysed samples are the log's evaluation samples), id, class name
        # as text, how many anomaly filters isolate it and their layers.
        cells = re.findall(r"<td>(.*?)</td>", row)
        assert cells[0].startswith("<img class='fs-thumb'") and "data:image/png;base64," in cells[0]
        assert cells[1:] == [
            str(sample_id),
            html.escape(str(names[labels[sample_id]])),
            str(filters),
            ", ".join(layers),
        ]
    # The note is text, above the anomaly section.
    assert "<p class='fs-note'>Atypical &lt;inputs&gt; &amp; more</p>" in markup
    assert markup.index("fs-note") < markup.index("<h2>Anomaly filters</h2>")
    # Names are text: the class named like markup is escaped in the HTML and never raw markup
    # in the file (axis labels and tooltips are canvas text).
    assert "<img src=x" not in text
    assert "<td>&lt;img src=x onerror=alert(1)&gt;</td>" in markup


def test_report_without_flags_still_ranks_by_score(run, tmp_path):
    analysis = fs.open_log(run, group="analysis").compute()
    analysis["anomaly"] = xr.zeros_like(analysis["anomaly"])
    out = write_report(run, tmp_path / "r.html", analysis=analysis, views=False)
    text = html.unescape(out.read_text(encoding="utf-8"))
    assert "No filter is flagged as an anomaly filter" in text
    best = float(analysis["anomaly_score"].values[-1].max())
    assert f"{round(best, 4)}" in text  # the highest score is listed
    assert "No anomaly filter, so no isolated sample." in text
    assert "Layers</h2>" not in text and "Anomaly filters" in text


def test_report_shows_no_thumbnails_of_other_samples(run, tmp_path):
    analysis = fs.open_log(run, group="analysis").compute()
    labels = analysis["label"].values
    analysis = analysis.assign_coords(label=("sample", (labels + 1) % 10))  # other data
    out = write_report(run, tmp_path / "r.html", analysis=analysis, views=False)
    text = html.unescape(out.read_text(encoding="utf-8"))
    assert "not the log&#x27;s evaluation samples" in text
    assert "fs-thumb" not in text and "fs-isolated-row" in text


def test_report_rejects_a_note_that_is_not_text(run, tmp_path):
    with pytest.raises(InvalidParameterError, match="note must be text"):
        write_report(run, tmp_path / "r.html", note=3)  # type: ignore[arg-type]
    assert not (tmp_path / "r.html").exists()


def test_report_command(run, tmp_path, capsys):
    out = tmp_path / "cli.html"
    assert main(["report", str(run), "--out", str(out), "--note", "n<b>", "--no-views"]) == 0
    text = html.unescape(out.read_text(encoding="utf-8"))
    assert "<p class='fs-note'>n&lt;b&gt;</p>" in text
    assert "Layers</h2>" not in text and "Isolated samples" in text
    assert capsys.readouterr().out.strip() == f"wrote {out}"
    assert main(["report", str(tmp_path / "missing")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no log at" in err
    with pytest.raises(SystemExit) as exit_:
        main(["report", "--help"])
    assert exit_.value.code == 0
    help_text = capsys.readouterr().out
    for option in ("--out", "--title", "--note", "--no-views"):
        assert option in help_text
