"""``benchmarks/bench_views.py --quick`` end to end: JupyterLab, Chromium and TensorBoard on a
small synthetic log. The table must hold every row, with figures that agree with each other
(no timing thresholds: the benchmark measures, it does not judge this machine)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from bench_tables import table_row, table_rows

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.xdist_group("jupyterlab")]

ROOT = Path(__file__).resolve().parents[1]


def _name(rows: dict, prefix: str) -> str:
    return next(k for k in rows if k.startswith(prefix))


def _within(printed: float, exact: float, half: float) -> bool:
    return abs(printed - exact) <= half + 1e-9


def test_bench_views_quick_prints_a_consistent_table(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "benchmarks/bench_views.py", "--quick", "--dir", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=170,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    lines = done.stdout.splitlines()
    assert lines[0].startswith("machine: ")
    assert "torch " in lines[0] and "xarray " in lines[0] and "Chromium " in lines[0]
    assert lines[1].startswith("log: 1000 images x 50 classes x 120 snapshots, resnet18 tree")
    assert lines[-1] == "command: python benchmarks/bench_views.py --quick --dir " + str(tmp_path)
    assert not any(line.startswith("WARNING") for line in lines), done.stdout
    rows = table_rows(lines)

    for prefix in (
        "log write",
        "index build",
        "open log + prebuilt index",
        "fs.dashboard(log) construction",
    ):
        value, unit, _, _ = table_row(rows, prefix)
        assert value > 0 and unit == "s", prefix

    # Every target row: the verdict follows from the printed value and its target.
    for name, (value, unit, target, verdict) in rows.items():
        if not target:
            assert verdict == "", name
            continue
        bound = re.match(r"(<=|>=) ([\d.]+) ?(s|ms|MB|x)", target)
        assert bound is not None and verdict in ("PASS", "MISS"), name
        assert unit == bound[3], name
        limit = float(bound[2])
        if name.startswith("frame time, median"):
            idle = float(re.search(r"idle cadence ([\d.]+) ms", name)[1])
            limit = max(limit, idle + 1.0)
        ok = value <= limit if bound[1] == "<=" else value >= limit
        # A value printed as equal to the bound may be either side of it.
        assert verdict == ("PASS" if ok else "MISS") or _within(value, limit, 0.05), name

    paint, unit, _, _ = table_row(rows, "first complete paint")
    assert paint > 0 and unit == "s"
    median, _, _, _ = table_row(rows, "frame time, median")
    p95, _, _, _ = table_row(rows, "frame time, p95")
    worst, _, _, _ = table_row(rows, "frame time, max")
    assert 0 < median <= p95 <= worst
    frames = int(re.search(r"\((\d+) frames", _name(rows, "frame time, median"))[1])
    assert frames >= 30

    kernel = [(k, v) for k, v in rows.items() if k.startswith("kernel request: ")]
    assert [k.split(" (")[0] for k, _ in kernel] == [
        "kernel request: layer filters",
        "kernel request: validation rows",
        "kernel request: validation window",
        "kernel request: cube faces page",
        "kernel request: model_info window",
    ]
    for name, (value, unit, _, _) in kernel:
        assert value > 0 and unit == "ms", name
        assert int(re.search(r"first \d+ ms, (\d+) kB", name)[1]) > 0, name
    page = [k for k in rows if k.startswith("page request -> answer applied: ")]
    # CubeView zooms a level-0 page in the browser: only the other views ask the kernel.
    assert {k.split(": ")[1].split(" ")[0] for k in page} >= {"model_info", "layer"}
    assert all(rows[k][0] > 0 for k in page)
    newest = [k for k in rows if k.startswith("page newest request -> its answer applied: ")]
    assert len(newest) == len(page)
    for k in page:
        view = k.split(": ")[1].split(" ")[0]
        # The newest request of a burst is answered no later than the burst ends.
        assert 0 <= rows[f"page newest request -> its answer applied: {view} (max shown)"][0]
        assert (
            rows[f"page newest request -> its answer applied: {view} (max shown)"][0]
            <= (rows[k][0])
        )

    # Bytes: the kernel's total is the sum of its printed parts, to their rounding.
    name = _name(rows, "first paint bytes, kernel state")
    total = rows[name][0]
    parts = [
        float(x)
        for x in re.search(r"JSON ([\d.]+) \+ buffers ([\d.]+) \+ bundle ([\d.]+)", name).groups()
    ]
    assert total > 0 and all(p >= 0 for p in parts)
    assert _within(total, sum(parts), 0.005 + 3 * 0.005)
    assert table_row(rows, "first paint bytes, websocket")[0] > 0

    # TensorBoard against filterscope: the ratio is the quotient of the printed times.
    n = int(re.search(r"TensorBoard write: (\d+) filters", _name(rows, "TensorBoard write"))[1])
    assert n == 500
    tb, _, _, _ = table_row(rows, "TensorBoard start -> every series served")
    ours, _, _, _ = table_row(rows, f"filterscope process start -> same {n} series")
    ratio, unit, _, _ = table_row(rows, "ratio TensorBoard / filterscope")
    assert unit == "x" and tb > 0 and ours > 0
    low, high = (tb - 0.005) / (ours + 0.005), (tb + 0.005) / (ours - 0.005)
    assert low - 0.05 <= ratio <= high + 0.05, (tb, ours, ratio)
    assert "CAPPED" not in _name(rows, "TensorBoard start")
    # The in-kernel ratio: data loaded on both sides, serving alone; also a quotient.
    served, _, _, _ = table_row(rows, "TensorBoard loaded -> every series served")
    query, _, _, _ = table_row(rows, f"filterscope log open -> same {n} series")
    warm, unit, target, _ = table_row(rows, "in-kernel ratio TensorBoard / filterscope")
    assert unit == "x" and target == ">= 100x" and 0 < served <= tb and query <= ours
    low = (served - 0.005) / (query + 0.005)
    high = (served + 0.005) / max(query - 0.005, 1e-9)
    assert low - 0.05 <= warm <= high + 0.05, (served, query, warm)
