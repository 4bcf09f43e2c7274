#!/usr/bin/env bash
# One command for a GPU machine: install what is missing from a local wheel folder,
# then, most telling first, each step under its own time limit:
#   1. CUDA graph vs eager training (LeNet, CIFAR10-quick: equality, ms/iter),
#   2. bench/gpu.py --quick (caffepy vs PyTorch on this GPU; the table goes into
#      bench/README.md's GPU section),
#   3. the GPU test suite on real CUDA (CAFFEPY_TEST_REAL_GPU=1),
#   4. `caffepy time --gpu 0` on LeNet and CIFAR10-quick,
#   5. LeNet, 2,000 iterations in GPU mode (when its LMDBs can be built).
# A failing step does not stop the others; the summary lists each step's status.
# GPU_CHECK_STEPS picks steps (default "graph bench tests time lenet"); on a
# 15-minute device lease run e.g. GPU_CHECK_STEPS="graph bench time" (about 9 min
# at the limits below, plus the machine's start).
# With $OUT set (the device runner's output folder) the logs and the README go
# there too.  Usage (from the repository root):
#
#     tools/gpu_check.sh [WHEEL_DIR]      # WHEEL_DIR defaults to ./wheels
#
# The machine needs no network: every package pip lacks must be in WHEEL_DIR.
set -uo pipefail

cd "$(dirname "$0")/.."
WHEELS="${1:-wheels}"
PY="${PYTHON:-python3}"

echo "== installing what is missing (from $WHEELS, no network)"
missing=()
for mod_pkg in lmdb:lmdb grpc_tools:grpcio-tools click:click google.protobuf:protobuf \
               numba:numba cupy:cupy-cuda13x numba.cuda:numba-cuda pytest:pytest; do
    mod="${mod_pkg%%:*}"; pkg="${mod_pkg##*:}"
    # numba-cuda needs numpy.row_stack on numpy >= 2.5 (see caffepy/backend/cuda/memory.py)
    if ! "$PY" -c "import numpy as np; np.row_stack = getattr(np, 'row_stack', np.vstack); import $mod" \
            >/dev/null 2>&1; then
        missing+=("$pkg")
    fi
done
if ((${#missing[@]})); then
    echo "   missing: ${missing[*]}"
    "$PY" -m pip install --no-index --find-links "$WHEELS" "${missing[@]}"
fi
"$PY" -m pip install --no-deps --no-build-isolation -e . >/dev/null

LOGS="${OUT:-/tmp}/gpu_check"
mkdir -p "$LOGS"
declare -a SUMMARY=()

STEPS=" ${GPU_CHECK_STEPS:-graph bench tests time lenet} "

# step NAME LIMIT_S COMMAND...: run with a time limit, log to $LOGS/NAME.log
# (skipped unless NAME's first word is in GPU_CHECK_STEPS)
step() {
    local name="$1" limit="$2"; shift 2
    case "$STEPS" in *" ${name%%_*} "*) ;; *) echo "== $name: skipped"; return ;; esac
    echo "== $name (limit ${limit} s)"
    local t0=$(date +%s)
    timeout "$limit" "$@" 2>&1 | tee "$LOGS/$name.log"
    local rc=${PIPESTATUS[0]}
    SUMMARY+=("$name: exit $rc, $(( $(date +%s) - t0 )) s")
}

echo "== device"
"$PY" -m caffepy.cli device_query --gpu 0 | tee "$LOGS/device.log"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv 2>/dev/null \
    | tee -a "$LOGS/device.log" || true

step graph_vs_eager 180 env CAFFEPY_TEST_REAL_GPU=1 "$PY" -m pytest -q -s \
    -p no:randomly tests/gpu/test_real_gpu_graph.py

step bench_gpu 300 "$PY" bench/gpu.py --quick --budget 110 --write-readme

step tests_gpu 240 env CAFFEPY_TEST_REAL_GPU=1 "$PY" -m pytest tests/gpu -q \
    -p no:randomly -m "not slow" --deselect tests/gpu/test_real_gpu_graph.py

echo "== Fashion-MNIST LMDBs (for LeNet)"
# The IDX files from Debian's dataset-fashion-mnist, or FASHION_MNIST=DIR.
FASHION="${FASHION_MNIST:-/usr/share/datasets/fashion-mnist}"
if [ ! -d data/fashion_mnist_train_lmdb ] && [ -d "$FASHION" ]; then
    "$PY" -m caffepy.cli data fashion-mnist data --source "$FASHION" --no-download | tail -n 1
fi

# CIFAR10-quick's train net needs its LMDBs; its deploy net times without data.
time_nets() {
    for model in models/lenet/train_val.prototxt models/cifar10_quick/deploy.prototxt; do
        echo "-- $model"
        "$PY" -m caffepy.cli time --model "$model" --gpu 0 --iterations 50 2>&1 | tail -n 12
    done
}
step time_caffepy 90 bash -c "$(declare -p PY); $(declare -f time_nets); time_nets"

if [ -d data/fashion_mnist_train_lmdb ]; then
    step lenet_2000 150 bash -c "'$PY' -m caffepy.cli train \
        --solver models/lenet/solver_2000.prototxt --gpu 0 --no-progress 2>&1 \
        | grep -E 'Iteration 2000, Testing|accuracy =|CUDA graph' | tail -n 4"
fi

if [ -n "${OUT:-}" ]; then
    cp bench/README.md "$OUT/bench_README.md"
fi
echo "== summary"
printf '   %s\n' "${SUMMARY[@]}" | tee "$LOGS/summary.log"
