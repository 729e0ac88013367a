"""``benchmarks/bench_atypical.py --quick`` end to end: real training on digits with planted
corrupted images, the table's structure, and the inverted digits found by the anomaly filters."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from bench_atypical import HEADER  # noqa: E402 - the columns the script prints


def _cell(text: str) -> float | None:
    return None if text == "-" else float(text)


def test_quick_benchmark_prints_one_table_and_finds_the_inverted_digits():
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "bench_atypical.py"), "--quick"],
        capture_output=True,
        text=True,
        timeout=900,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    lines = [ln for ln in done.stdout.splitlines() if ln.startswith("|")]
    assert [c.strip() for c in lines[0].strip("|").split("|")] == list(HEADER)
    assert set(lines[1].replace("|", "")) == {"-"}
    rows = [[c.strip() for c in ln.strip("|").split("|")] for ln in lines[2:]]
    assert [r[:3] for r in rows] == [
        ["lenet-digits", "inverted", "3%"],
        ["lenet-digits", "blank", "3%"],
        ["lenet-digits", "noise", "3%"],
    ]
    for row in rows:
        assert len(row) == len(HEADER)
        planted, flagged = int(row[3]), int(row[4])
        assert planted == 15  # 3 % of the 500 training images
        recall, precision, f1 = (_cell(c) for c in row[5:8])
        assert 0.0 <= recall <= 1.0
        # precision is undefined ("-") exactly when nothing is flagged
        assert (precision is None) == (flagged == 0)
        hits = round(recall * planted)
        assert f1 == pytest.approx(2 * hits / (flagged + planted), abs=0.006)
        for baseline in row[8:11]:
            value = _cell(baseline)
            assert value is not None and 0.0 <= value <= 1.0
            # precision@k with k = 15: a multiple of 1/15
            assert round(value * 15) == pytest.approx(value * 15, abs=0.08)
    inverted = rows[0]
    assert float(inverted[5]) >= 0.9
    assert float(inverted[6]) >= 0.9
    assert "filters" in inverted[11]  # better than (or as good as) every baseline
