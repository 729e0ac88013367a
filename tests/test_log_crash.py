"""A recording process killed with SIGKILL at random moments leaves a readable, exact log."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

import filterscope as fs
from filterscope.log.store import LogStore

TRIALS = 20
HELPER = Path(__file__).parent / "log_helpers" / "kill_trials.py"


def _comparable(ds: xr.Dataset) -> xr.Dataset:
    # Wall-clock step times and the creation time differ between runs; everything else must not.
    return ds.drop_vars("step_time").drop_attrs().compute()


@pytest.mark.slow
@pytest.mark.skipif(sys.platform == "win32", reason="needs fork and SIGKILL")
def test_sigkill_at_random_moments_leaves_exact_committed_prefixes(tmp_path) -> None:
    done = subprocess.run(
        [sys.executable, str(HELPER), str(tmp_path), str(TRIALS), "1234"],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert done.returncode == 0, done.stderr
    reference, *trials = json.loads(done.stdout)
    assert not reference["killed"] and reference["exit"] == 0
    full = _comparable(fs.open_log(reference["path"]))
    assert full.sizes["snapshot"] == 16 and full.sizes["step"] == 30  # steps 0, 2, ..., 28, close

    counts = []
    for trial in trials:
        path = Path(trial["path"])
        if trial["reported"] is None:
            # Killed while the log was being created: either nothing is there, or an empty log.
            if not path.exists():
                counts.append(-1)
                continue
        log = _comparable(fs.open_log(path))
        n = log.sizes["snapshot"]
        reported = trial["reported"] or 0
        # Each commit is reported right after it is written, so at most one is unreported.
        assert reported <= n <= reported + 1, trial
        counts.append(n)
        # Step scalars are committed with the snapshot of their last step.
        expected_steps = min(int(log.snapshot_step[-1]) + 1, 30) if n else 0
        assert log.sizes["step"] == expected_steps, trial
        prefix = full.isel(snapshot=slice(0, n), step=slice(0, log.sizes["step"]))
        xr.testing.assert_identical(log, prefix)
        if not trial["killed"]:
            assert n == 16
        # The writer can resume the killed log: leftovers are cleaned, the tail chunks read.
        LogStore.open(path, mode="a").close()
        xr.testing.assert_identical(_comparable(fs.open_log(path)), prefix)
        assert not list(path.rglob("*.partial"))
    killed_mid_run = [c for c, t in zip(counts, trials, strict=True) if t["killed"] and 0 < c < 16]
    assert len(killed_mid_run) >= TRIALS // 2, counts  # the kills really hit running training
    assert len(set(counts)) >= 5, counts
    assert np.all(np.isfinite(full.loss))
