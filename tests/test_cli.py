"""The command line, end to end: a real (quick) demo run, then report and analyze on its log."""

from __future__ import annotations

import io
import re
from contextlib import redirect_stdout

import numpy as np
import pytest

import filterscope as fs
from filterscope.cli import main
from filterscope.data import digits, plant

_EXTERNAL = re.compile(
    r"<(?:script\b[^>]*\bsrc|link\b[^>]*\bhref)\s*=\s*[\"']?(?:https?:)?//", re.IGNORECASE
)

# One demo run serves every test here; the group keeps them on one xdist worker.
pytestmark = pytest.mark.xdist_group("cli_demo")


def _assert_offline(html: str) -> None:
    assert not _EXTERNAL.search(html)
    assert "BEGIN bokeh.min.js" in html  # BokehJS itself is inlined


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "run"
    buffer = io.StringIO()
    with redirect_stdout(buffer):
        status = main(["demo", "--quick", "--out", str(out), "--no-progress", "--threads", "1"])
    return status, out, buffer.getvalue()


def test_demo_records_a_log_analyses_it_and_writes_an_offline_report(demo_run):
    status, out, printed = demo_run
    assert status == 0
    log = fs.open_log(out / "log")
    # 4 quick epochs of 500 images in batches of 32, a snapshot per epoch plus one at step 0.
    assert log.sizes["step"] == 4 * 16
    assert log.sizes["snapshot"] == 5
    assert log.sizes["sample"] == 500
    assert list(log["class_name"].values) == [str(c) for c in range(10)]
    assert log["layer_name"].values.tolist()[:2] == ["features.conv1", "features.conv2"]
    # The printed summary reports what the log holds.
    val_acc = float(re.search(r"final val accuracy\s+([\d.]+)", printed).group(1))
    assert val_acc == pytest.approx(1 - float(log["val_error"][-1]), abs=1e-3)
    train_acc = float(re.search(r"final train accuracy\s+([\d.]+)", printed).group(1))
    assert train_acc > 0.8  # it really trained
    assert re.search(r"snapshots\s+5\b", printed)
    assert re.search(r"conv filters analysed\s+22\b", printed)
    n_anomalies = int(re.search(r"anomaly filters\s+(\d+)", printed).group(1))
    # The analysis ran during training (at the first and the last snapshot) into the log.
    analysis = fs.open_log(out / "log", group="analysis")
    assert analysis.sizes["analysis_snapshot"] == 2
    assert analysis.sizes["filter"] == 22  # LeNet-5's conv filters
    # The last one analysed the final weights (step 64) with the demo's own seed and data, so
    # the printed count, from the demo's separate analysis of the final model, is its count.
    assert analysis["analysis_step"].values.tolist() == [0, 64]
    last = analysis.isel(analysis_snapshot=-1)
    assert n_anomalies == int(last["anomaly"].sum())
    # The training set carries 3 % planted inverted digits (seeded): the stored analysis of the
    # final model isolates them, and the printed recall / precision are what it stores.
    planted = plant(digits("train", size=32, seed=0), "inverted", 0.03, seed=0).sample_ids
    assert re.search(r"planted inverted images\s+15\b", printed)
    flagged = last["outlier"].values[last["anomaly"].values].any(axis=0)
    isolated = last["sample_id"].values[flagged]
    probed = np.intersect1d(planted, last["sample_id"].values)
    assert len(probed) >= 3  # 200 of the 500 images are probed
    hits = len(np.intersect1d(isolated, probed))
    recall, precision = hits / len(probed), hits / max(1, len(isolated))
    assert recall >= 0.9 and precision >= 0.9
    assert float(re.search(r"planted recall\s+([\d.]+)", printed).group(1)) == pytest.approx(
        recall, abs=1e-3
    )
    assert float(re.search(r"planted precision\s+([\d.]+)", printed).group(1)) == pytest.approx(
        precision, abs=1e-3
    )
    report = out / "report.html"
    html = report.read_text(encoding="utf-8")
    _assert_offline(html)
    assert "Anomaly filters" in html and "features.conv2" in html
    assert "of 22 filters by anomaly score" in html
    assert "atypical inputs planted by the demo, found without labels" in html
    assert "not evidence of overfitting" in html


def test_report_subcommand_writes_beside_the_log(demo_run, capsys):
    _, out, _ = demo_run
    assert main(["report", str(out / "log"), "--title", "quick run"]) == 0
    written = out / "log.html"
    assert str(written) in capsys.readouterr().out
    html = written.read_text(encoding="utf-8")
    _assert_offline(html)
    assert "<title>quick run</title>" in html


def test_analyze_subcommand_lists_recorded_counts(demo_run, capsys):
    _, out, _ = demo_run
    assert main(["analyze", str(out / "log"), "--top", "3"]) == 0
    printed = capsys.readouterr().out
    analysis = fs.open_log(out / "log", group="analysis")
    counts = analysis["anomaly"].sum("filter").values
    rows = re.findall(r"^\s+(\d+)\s+(\d+)$", printed, flags=re.MULTILINE)
    np.testing.assert_array_equal([int(c) for _, c in rows], counts)
    np.testing.assert_array_equal([int(s) for s, _ in rows], analysis["analysis_step"].values)
    assert len(re.findall(r"features\.conv\d\[\d+\]", printed)) == 3
    # the three listed are the three highest scores of the last analysis, highest first
    listed = [float(v) for v in re.findall(r"score (-?[\d.]+)", printed)]
    scores = np.sort(analysis["anomaly_score"].isel(analysis_snapshot=-1).fillna(-1.0).values)
    np.testing.assert_allclose(listed, scores[::-1][:3], atol=5e-4)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ([], "required: COMMAND"),
        (["train"], "invalid choice: 'train'"),
        (["demo", "--epochs", "0"], "expected a positive integer, got 0"),
        (["demo", "--epochs", "many"], "expected a positive integer, got 'many'"),
        (["report"], "the following arguments are required: log"),
    ],
)
def test_bad_arguments_are_argparse_errors(argv, message, capsys):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


def test_missing_log_is_a_clear_error(tmp_path, capsys):
    assert main(["report", str(tmp_path / "nowhere")]) == 1
    assert "no log at" in capsys.readouterr().err
    assert not (tmp_path / "nowhere.html").exists()


def test_synth_then_report_on_a_resnet_layout(tmp_path, capsys):
    path = tmp_path / "synth"
    argv = ["synth", str(path), "--samples", "40", "--classes", "4", "--snapshots", "3"]
    argv += ["--layers", "resnet18", "--steps-per-snapshot", "2", "--no-plant"]
    assert main(argv) == 0
    log = fs.open_log(path)
    assert log.sizes["snapshot"] == 3 and log.sizes["class"] == 4
    assert main(["report", str(path)]) == 0
    html = (tmp_path / "synth.html").read_text(encoding="utf-8")
    _assert_offline(html)
    # Layer rows of the heatmaps come from the log's hierarchy; batch norms are left out.
    assert "layer2.0.downsample.0" in html and "layer2.0.downsample.1" not in html
    capsys.readouterr()
