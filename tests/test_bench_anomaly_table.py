"""``benchmarks/bench_anomaly_table.py --quick`` end to end: JupyterLab and Chromium on a small
synthetic analysis. The table must hold every row, with figures that agree with each other (no
timing thresholds: the benchmark measures, it does not judge this machine)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from bench_tables import table_row, table_rows

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.xdist_group("jupyterlab")]

ROOT = Path(__file__).resolve().parents[1]


def test_bench_anomaly_table_quick_prints_a_consistent_table(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "benchmarks/bench_anomaly_table.py", "--quick", "--dir", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    lines = done.stdout.splitlines()
    assert lines[0].startswith("machine: ") and "Chromium " in lines[0]
    assert lines[1].startswith("result: 1200 filters (resnet18 convolutions) x 500 samples")
    assert (
        lines[-1] == f"command: python benchmarks/bench_anomaly_table.py --quick --dir {tmp_path}"
    )
    rows = table_rows(lines)

    build, unit, _, _ = table_row(rows, "fs.AnomalyTable(result) construction")
    assert build > 0 and unit == "s"
    paint, unit, target, verdict = table_row(rows, "first paint (cell run")
    assert unit == "s" and target == "<= 1.0 s" and paint > 0
    assert verdict == ("PASS" if paint <= 1.0 else "MISS")
    ratio, unit, _, _ = table_row(rows, "ratio first paint / target")
    assert unit == "x" and abs(ratio - paint / 1.0) <= 0.01
    name = next(k for k in rows if k.startswith("select a filter -> scatter drawn, median"))
    assert re.search(r"median of 4 \(500 points\)", name), name
    median, unit, target, verdict = rows[name]
    worst, _, _, _ = table_row(rows, "select a filter -> scatter drawn, max")
    assert unit == "ms" and target == "<= 100 ms" and 0 < median <= worst
    assert verdict == ("PASS" if median <= 100 else "MISS")
    draw, unit, _, _ = table_row(rows, "of which drawing the scatter")
    assert unit == "ms" and 0 <= draw <= worst
    ratio, _, _, _ = table_row(rows, "ratio select median / target")
    assert abs(ratio - median / 100) <= 0.01
    size, unit, _, _ = table_row(rows, "first paint bytes, widget state")
    assert unit == "MB" and 0 < size < 1  # the overview holds no rows
    kernel = [k for k in rows if k.startswith("kernel request: ")]
    assert len(kernel) == 3 and all(rows[k][0] > 0 and rows[k][1] == "ms" for k in kernel)
    screenshot = next(line for line in lines if line.startswith("screenshot: "))
    assert Path(screenshot.split(": ", 1)[1]).stat().st_size > 10_000
