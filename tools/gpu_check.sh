#!/usr/bin/env bash
# One command for a GPU machine: install what is missing from a local wheel folder,
# run the GPU test suite on real CUDA, and print LeNet and CIFAR10-quick GPU step
# times.  Usage (from the repository root):
#
#     tools/gpu_check.sh [WHEEL_DIR]      # WHEEL_DIR defaults to ./wheels
#
# The machine needs no network: every package pip lacks must be in WHEEL_DIR.
set -euo pipefail

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

echo "== device"
"$PY" -m caffepy.cli device_query --gpu 0

echo "== GPU tests on real CUDA"
CAFFEPY_TEST_REAL_GPU=1 "$PY" -m pytest tests/gpu -q -p no:randomly

echo "== Fashion-MNIST LMDBs (for LeNet)"
# The IDX files from Debian's dataset-fashion-mnist, or FASHION_MNIST=DIR.
FASHION="${FASHION_MNIST:-/usr/share/datasets/fashion-mnist}"
if [ ! -d data/fashion_mnist_train_lmdb ] && [ -d "$FASHION" ]; then
    "$PY" -m caffepy.cli data fashion-mnist data --source "$FASHION" --no-download | tail -n 1
fi

echo "== step times (forward + backward, GPU 0)"
# CIFAR10-quick's train net needs its LMDBs; its deploy net times without data.
for model in models/lenet/train_val.prototxt models/cifar10_quick/deploy.prototxt; do
    echo "-- $model"
    "$PY" -m caffepy.cli time --model "$model" --gpu 0 --iterations 50 2>&1 | tail -n 3
done

if [ -d data/fashion_mnist_train_lmdb ]; then
    echo "== LeNet, 2,000 iterations in GPU mode"
    start=$(date +%s)
    "$PY" -m caffepy.cli train --solver models/lenet/solver_2000.prototxt --gpu 0 \
        --no-progress 2>&1 | grep -E "Iteration 2000, Testing|accuracy =" | tail -n 2
    echo "   wall $(( $(date +%s) - start )) s"
fi
