"""The offline report in headless Chromium with the network blocked: nothing is requested, nothing
fails, and the figures, the anomaly table and the thumbnails render.

``report_offline.mjs`` (playwright-core from ``js/node_modules``, Debian's chromium) opens the
file written by ``filterscope report`` for a really trained and analysed run, aborts and records
every request other than the file itself, and measures what rendered; a screenshot goes to
``test-artifacts/e2e/report_offline.png``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from test_report import HOSTILE, record_report_run

import filterscope as fs
from filterscope.cli import main
from filterscope.plots import analysis_table, isolated_samples

pytestmark = [pytest.mark.e2e]

REPO = Path(__file__).resolve().parents[2]
SCRIPT = Path(__file__).resolve().parent / "report_offline.mjs"
ARTIFACTS = REPO / "test-artifacts" / "e2e"
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")


def _node() -> str:
    """Fail (never skip) when the browser or Node.js is missing."""
    if not Path(CHROMIUM).exists():
        pytest.fail(f"the report test needs Chromium at {CHROMIUM}: run `make chromium`")
    node = shutil.which("node")
    if node is None:
        pytest.fail("the report test needs Node.js (node) on PATH")
    return node


def test_report_opens_offline_and_renders(tmp_path):
    node = _node()
    run = tmp_path / "run"
    record_report_run(run)
    out = tmp_path / "report.html"
    note = "The isolated samples are atypical inputs found without labels."
    assert main(["report", str(run), "--out", str(out), "--note", note]) == 0
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    screenshot = ARTIFACTS / "report_offline.png"
    proc = subprocess.run(
        [node, str(SCRIPT), json.dumps({"report": str(out), "screenshot": str(screenshot)})],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
    )
    lines = proc.stdout.strip().splitlines()
    assert lines, f"the script printed nothing (exit {proc.returncode}):\n{proc.stderr}"
    result = json.loads(lines[-1])
    assert proc.returncode == 0 and "error" not in result, result.get("error", proc.stderr)

    # Offline: not one request besides the file itself, and nothing failed.
    assert result["requests"] == []
    assert result["console_errors"] == [] and result["page_errors"] == []
    # The class named like markup stayed text: no element made of it, no alert.
    assert result["dialogs"] == [] and result["injected_images"] == 0
    # Figures rendered: every Bokeh plot paints on canvas (one of each pair is its hit/overlay
    # layer); the view figures make the page far more than the training figures alone.
    painted = [c for c in result["canvases"] if c["inked"] > 500]
    assert len(painted) >= 12, result["canvases"]
    # The anomaly table shows its top rows; each isolated sample its thumbnail.
    table, _, _ = analysis_table(fs.open_log(run, group="analysis"))
    assert result["table_rows"] == min(20, len(table))
    best = table.iloc[0]
    assert f"{best['layer']}" in result["table_text"]
    found = isolated_samples(table)
    assert len(found) > 0
    assert result["isolated_rows"] == min(len(found), 60)
    assert result["thumbnails"] == result["thumbnails_loaded"] == result["isolated_rows"]
    assert note in result["page_text"]
    assert HOSTILE not in result["page_text"]  # headings and paragraphs never hold it
    assert screenshot.stat().st_size > 10_000
