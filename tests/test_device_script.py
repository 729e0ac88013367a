"""The prepared GPU script, run end to end on the CPU with tiny sizes.

``benchmarks/gmm_device.sh`` is meant for a lent CUDA machine, where there is one try and no time
to debug it; this runs the same script here (``--quick --device cpu``) so that it cannot rot.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_gmm_device_script_runs_on_cpu(tmp_path: Path) -> None:
    env = {**os.environ, "OUT": str(tmp_path), "PYTHON": sys.executable}
    done = subprocess.run(
        ["bash", "benchmarks/gmm_device.sh", "--quick", "--device", "cpu"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    results = json.loads((tmp_path / "device_gmm.json").read_text())
    assert not any(key.endswith("_error") for key in results), results
    clustering = results["clustering"]
    assert clustering["filters"] > 0 and clustering["seconds"] > 0
    extraction = results["extraction"]
    assert extraction["one_pass"]["filters"] > 0
    assert extraction["default_2GiB"]["ratio_to_plain"] > 0

    # bench_extract.py on the chosen device: one line per model, each with both target ratios.
    lines = (tmp_path / "bench_extract.txt").read_text().splitlines()
    assert lines[0].startswith("torch ") and lines[0].endswith("CPU")
    rows = [line for line in lines if "extract/forward" in line]
    assert [row.split()[0] for row in rows] == ["LeNet5", "SimpleCNN(16)", "resnet18_small"]
    for row in rows:
        pca = re.search(r"pca: sklearn +([\d.]+)s ours +([\d.]+)s = +([\d.]+)x", row)
        ratio = re.search(r"extract/forward = +([\d.]+)x", row)
        assert pca is not None and ratio is not None, row
        assert float(pca[1]) > 0 and float(pca[2]) > 0 and float(ratio[1]) > 0

    log = (tmp_path / "gmm_device.log").read_text()
    assert "no CUDA device: CUDA tests not run" in log
    assert "done, status 0" in log
