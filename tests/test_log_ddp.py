"""Recording under torch.distributed (2 gloo processes) gives the single-process log."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import xarray as xr
from log_helpers import ddp_worker
from log_helpers.tiny import TinyCNN
from oracles import assert_close_in_stored_units

import filterscope as fs

# Float comparisons against oracles: `make test` reruns these under other CPU kernels.
pytestmark = pytest.mark.numerics

HELPER = Path(ddp_worker.__file__)


@pytest.mark.slow
def test_ddp_log_equals_the_single_process_log(tmp_path) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    args = [str(tmp_path / "rendezvous"), str(tmp_path / "ddp")]
    ranks = [
        subprocess.Popen(
            [sys.executable, str(HELPER), str(rank), "2", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for rank in range(2)
    ]
    # The single-process twin runs meanwhile.
    torch.manual_seed(0)
    ddp_worker.record(TinyCNN(dropout=0.0, norm=False), str(tmp_path / "single"), rank=0, world=1)
    for proc in ranks:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err

    ddp = fs.open_log(tmp_path / "ddp").drop_vars("step_time").compute()
    single = fs.open_log(tmp_path / "single").drop_vars("step_time").compute()
    # Only rank 0 writes: nothing else appeared beside the two logs (and gloo's rendezvous file).
    assert {p.name for p in tmp_path.iterdir()} <= {"ddp", "single", "rendezvous"}
    assert ddp.sizes == single.sizes and ddp.sizes["sample"] == 101
    np.testing.assert_array_equal(ddp.snapshot_step, [0, 3, 6, 7])
    # Per-sample results: each rank evaluated every other sample; rank 0 put them in order.
    np.testing.assert_array_equal(ddp.pred, single.pred)
    np.testing.assert_array_equal(ddp.correct, single.correct)
    np.testing.assert_array_equal(ddp.label, single.label)
    # Each rank evaluates a different batch, so BLAS rounds the float32 logits differently; after
    # the cast to the stored float16 a value may land one float16 step away. Compare in steps of
    # the stored dtype (plus float32-level error before the cast), never below one step.
    for name in ("p_true", "margin"):
        assert ddp[name].dtype == np.float16
        assert_close_in_stored_units(ddp[name].values, single[name].values, "float16", atol=1e-5)
    for name in ("sample_loss", "val_loss", "val_error"):
        xr.testing.assert_allclose(ddp[name], single[name], rtol=1e-4, atol=1e-5)
    # Statistics of the (all-reduced) gradients and the weights they produce.
    for name in ("weight_stat", "grad_stat", "change_ratio", "filter_cosine", "filter_grad_l2"):
        xr.testing.assert_allclose(ddp[name], single[name], rtol=1e-3, atol=1e-6)
    # Step scalars are averaged over ranks: the loss of the whole batch, its error rate.
    xr.testing.assert_allclose(ddp.loss, single.loss, rtol=1e-5)
    np.testing.assert_array_equal(ddp.train_error, single.train_error)
    np.testing.assert_array_equal(ddp.lr, single.lr)
