#!/usr/bin/env bash
# GMM engine on a CUDA machine, one prepared run (about 5 minutes on one H100, plus at most 4 for
# the last step; a cut-off run keeps what the earlier steps wrote):
#   1. make filterscope importable (editable install without dependencies, else PYTHONPATH=src);
#   2. ResNet-50-scale clustering (26,560 filters x 2,000 points) and extraction throughput of
#      resnet50_like at 224^2 vs plain inference (benchmarks/device_gmm.py);
#   3. the CUDA tests (pytest -m cuda);
#   4. the extraction targets on the device (benchmarks/bench_extract.py: our PCA vs a
#      scikit-learn PCA loop on the host, extract vs a plain forward pass), at most 4 minutes.
# Run from the repository root. Results go to $OUT when it is set (else ./device-results).
# Every step runs even when an earlier one fails; the exit status is that of the first failure.
# Usage: bash benchmarks/gmm_device.sh [--quick] [--device cpu]
set -uo pipefail

PY=${PYTHON:-python3}
OUT_DIR=${OUT:-device-results}
mkdir -p "$OUT_DIR"
status=0
note() { echo "== $*" | tee -a "$OUT_DIR/gmm_device.log"; }

note "$(date -u +%FT%TZ) $($PY --version 2>&1) on $(hostname)"
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version \
  --format=csv,noheader | tee -a "$OUT_DIR/gmm_device.log"

# 1. filterscope importable. No network on the device: install nothing but the package itself.
if ! $PY -c "import filterscope" 2>/dev/null; then
  if ! $PY -m pip install -q --no-deps --no-build-isolation -e . >>"$OUT_DIR/gmm_device.log" 2>&1 \
     || ! $PY -c "import filterscope" 2>/dev/null; then
    note "editable install unavailable; using PYTHONPATH=src"
    export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
  fi
fi
missing=$($PY - <<'EOF'
import importlib.util
names = ["torch", "numpy", "xarray", "pandas", "scipy", "sklearn", "tqdm", "pytest", "threadpoolctl"]
print(" ".join(n for n in names if importlib.util.find_spec(n) is None))
EOF
)
[ -n "$missing" ] && note "missing packages (their parts are skipped or fail): $missing"
gpu=$($PY -c "import torch; print('cuda' if torch.cuda.is_available() else 'cpu')" 2>/dev/null \
  || echo cpu)

# 2. benchmarks (the script itself reports a failed part and keeps the other's numbers)
note "device_gmm.py $*"
$PY benchmarks/device_gmm.py --out "$OUT_DIR" "$@" 2>&1 | tee -a "$OUT_DIR/gmm_device.log"
rc=${PIPESTATUS[0]}; [ "$rc" -ne 0 ] && [ "$status" -eq 0 ] && status=$rc

# 3. CUDA tests, only where pytest and a GPU exist
if [[ " $missing " == *" pytest "* ]]; then
  note "pytest missing: CUDA tests not run"
elif [ "$gpu" != cuda ]; then
  note "no CUDA device: CUDA tests not run"
else
  note "pytest -m cuda"
  $PY -m pytest -m cuda -q -p no:cacheprovider tests 2>&1 | tee "$OUT_DIR/pytest_cuda.txt"
  rc=${PIPESTATUS[0]}; [ "$rc" -ne 0 ] && [ "$status" -eq 0 ] && status=$rc
fi

# 4. extraction targets, on the device named after --device (default: CUDA when available)
device=$gpu
extract_args=(--repeats 2)
prev=""
for arg in "$@"; do
  [ "$arg" = "--quick" ] && extract_args=(--quick --repeats 1)
  [ "$prev" = "--device" ] && device=$arg
  case $arg in --device=*) device=${arg#--device=} ;; esac
  prev=$arg
done
note "bench_extract.py --device $device ${extract_args[*]}"
timeout 240 $PY benchmarks/bench_extract.py --device "$device" "${extract_args[@]}" 2>&1 \
  | tee "$OUT_DIR/bench_extract.txt" | tee -a "$OUT_DIR/gmm_device.log"
rc=${PIPESTATUS[0]}; [ "$rc" -ne 0 ] && [ "$status" -eq 0 ] && status=$rc

note "done, status $status; results in $OUT_DIR"
exit "$status"
