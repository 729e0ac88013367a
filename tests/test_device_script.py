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
import torch

from filterscope.models import LeNet5, SimpleCNN, resnet18_small, resnet50_like

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
    # --quick clusters 256 filters of 500 planted points (K = 1..8); the flags must recover the
    # planted truth, and the derived figures must follow from the measured ones.
    clustering = results["clustering"]
    assert (clustering["filters"], clustering["samples"]) == (256, 500)
    assert clustering["k_range"] == [1, 8]
    assert clustering["anomaly_agreement_with_truth"] >= 0.9
    assert clustering["filters_per_second"] == pytest.approx(256 / clustering["seconds"])
    reference = results["sklearn_reference"]
    assert reference["extrapolated_seconds"] == pytest.approx(256 * reference["per_filter_seconds"])
    assert reference["speedup"] == pytest.approx(
        reference["extrapolated_seconds"] / clustering["seconds"]
    )
    # Extraction covers every conv filter of resnet50_like, 16 images of 64², in one pass.
    extraction = results["extraction"]
    assert (extraction["images"], extraction["size"]) == (16, 64)
    for budget in ("one_pass", "default_2GiB"):
        part = extraction[budget]
        assert part["filters"] == _conv_filters(resnet50_like()) == 26_560
        assert part["passes"] == 1
        assert 0 < part["min_explained_variance"] <= 1
        assert part["ratio_to_plain"] == pytest.approx(
            part["seconds"] / extraction["plain_seconds"]
        )

    # bench_extract.py on the chosen device: one line per model, each with both target ratios.
    lines = (tmp_path / "bench_extract.txt").read_text().splitlines()
    assert lines[0].startswith("torch ") and lines[0].endswith("CPU")
    rows = [line for line in lines if "extract/forward" in line]
    assert [row.split()[0] for row in rows] == ["LeNet5", "SimpleCNN(16)", "resnet18_small"]
    models = [LeNet5(), SimpleCNN(width=16), resnet18_small()]
    for row, model in zip(rows, models, strict=True):
        assert "N=128 " in row and f"filters={_conv_filters(model)} " in row, row
        pca = re.search(r"pca: sklearn +([\d.]+)s ours +([\d.]+)s = +([\d.]+)x", row)
        ratio = re.search(r"forward +([\d.]+)s extract/forward = +([\d.]+)x", row)
        extract = re.search(r"extract +([\d.]+)s =", row)
        assert pca is not None and ratio is not None and extract is not None, row
        # The printed ratios are the quotients of the printed times, to the times' rounding.
        _assert_quotient(pca[3], pca[1], pca[2], ratio_half=0.05)
        _assert_quotient(ratio[2], extract[1], ratio[1], ratio_half=0.005)

    log = (tmp_path / "gmm_device.log").read_text()
    assert "no CUDA device: CUDA tests not run" in log
    assert "done, status 0" in log


def _conv_filters(model: torch.nn.Module) -> int:
    return sum(m.out_channels for m in model.modules() if isinstance(m, torch.nn.Conv2d))


def _assert_quotient(printed: str, numerator: str, denominator: str, ratio_half: float) -> None:
    # Each printed time is rounded to 3 decimals (±0.0005 s), the ratio to ±ratio_half.
    a, b, q = float(numerator), float(denominator), float(printed)
    half = 0.0005
    low, high = (a - half) / (b + half), (a + half) / max(b - half, 1e-9)
    assert low - ratio_half <= q <= high + ratio_half, (printed, numerator, denominator)
