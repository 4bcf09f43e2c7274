"""Data-parallel scaling: training images/s of LeNet (or CIFAR10-quick) with 1, 2,
... ranks under ``mpiexec``, and the gradient reduction's share of an iteration.

    python bench/scaling.py                      # LeNet, 1 and 2 ranks
    python bench/scaling.py --model cifar10_quick --ranks 1,2,4,8 --iters 60

Each run trains the model's train net (its Data layer reading a synthetic LMDB
of random images of the model's shape, no test net) for ``--iters`` iterations
with ``display: --display``; the rate comes from the solver's own display lines
after the first (compilation and start-up left out), so the images/s is
``iter/s x batch x ranks``. Ranks share the cores (``threads = cores / ranks``).
The reduction time caffepy logs at the end includes waiting for the slowest rank.
Not run by the tests.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHAPES = {"lenet": (1, 28, 28), "cifar10_quick": (3, 32, 32)}
RATE = re.compile(r"Iteration (\d+) \(([\d.e+-]+) iter/s")
REDUCE = re.compile(r"Gradient reduction over \d+ ranks: \d+ reductions, ([\d.]+) ms")


def _write_db(path: str, shape: tuple[int, ...], n: int) -> None:
    import lmdb

    sys.path.insert(0, REPO)
    from caffepy.data.datum import array_to_datum

    gen = np.random.default_rng(1701)
    env = lmdb.open(path, map_size=1 << 30)
    with env.begin(write=True) as txn:
        for i in range(n):
            image = gen.integers(0, 256, shape, dtype=np.uint8)
            datum = array_to_datum(image, int(gen.integers(0, 10)))
            txn.put(f"{i:08d}".encode(), datum.SerializeToString())
    env.close()


def _train_net(model: str, db: str) -> str:
    """The model's train_val net, TRAIN layers only, reading ``db``."""
    from google.protobuf import text_format

    sys.path.insert(0, REPO)
    from caffepy.proto import caffe_pb2

    param = caffe_pb2.NetParameter()
    with open(os.path.join(REPO, "models", model, "train_val.prototxt")) as f:
        text_format.Parse(f.read(), param)
    keep = []
    for layer in param.layer:
        phases = {r.phase for r in layer.include if r.HasField("phase")}
        if phases and caffe_pb2.TRAIN not in phases:
            continue
        if layer.type == "Data":
            layer.data_param.source = db
            layer.data_param.backend = caffe_pb2.DataParameter.LMDB
            layer.ClearField("transform_param")
            layer.transform_param.scale = 0.00390625
        if layer.type == "Accuracy":
            continue
        keep.append(layer)
    del param.layer[:]
    param.layer.extend(keep)
    return text_format.MessageToString(param)


def _run(mpiexec: str, ranks: int, solver: str, cwd: str) -> tuple[float, float]:
    cmd = [sys.executable, "-c", "from caffepy.cli import main; main()"]
    cmd += ["train", "--solver", solver]
    cmd += ["--no-progress"]
    if ranks > 1:
        cmd = [mpiexec, "-n", str(ranks), *cmd]
    env = dict(
        os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1"
    )
    if ranks == 1:
        env.setdefault("NUMBA_NUM_THREADS", str(os.cpu_count() or 1))
    res = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    if res.returncode:
        sys.exit(f"{ranks} rank(s) failed:\n{res.stderr[-3000:]}")
    rates = [float(m.group(2)) for m in RATE.finditer(res.stderr)]
    steady = rates[2:] if len(rates) > 3 else rates[1:]  # skip warm-up windows
    reduce_ms = REDUCE.search(res.stderr)
    return float(np.median(steady)), float(reduce_ms.group(1)) if reduce_ms else 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="lenet", choices=sorted(SHAPES))
    parser.add_argument("--ranks", default="1,2")
    parser.add_argument("--iters", type=int, default=200)
    parser.add_argument("--display", type=int, default=20)
    args = parser.parse_args()
    mpiexec = os.path.join(os.path.dirname(sys.executable), "mpiexec")
    if not os.access(mpiexec, os.X_OK):
        mpiexec = shutil.which("mpiexec") or sys.exit(
            "no mpiexec: pip install 'caffepy[mpi]'"
        )
    work = tempfile.mkdtemp(prefix="caffepy-scaling-")
    try:
        db = os.path.join(work, "db")
        _write_db(db, SHAPES[args.model], 4096)
        net = os.path.join(work, "net.prototxt")
        with open(net, "w") as f:
            f.write(_train_net(args.model, db))
        solver = os.path.join(work, "solver.prototxt")
        with open(solver, "w") as f:
            f.write(
                f'net: "{net}"\nbase_lr: 0.001\nmomentum: 0.9\nlr_policy: "fixed"\n'
                f"max_iter: {args.iters}\ndisplay: {args.display}\n"
                "snapshot_after_train: false\nrandom_seed: 1701\n"
            )
        from google.protobuf import text_format

        sys.path.insert(0, REPO)
        from caffepy.proto import caffe_pb2

        p = caffe_pb2.NetParameter()
        text_format.Parse(open(net).read(), p)
        batch = next(la.data_param.batch_size for la in p.layer if la.type == "Data")
        base = None
        print(f"{args.model}, batch {batch} per rank, {os.cpu_count()} cores")
        print("ranks  iter/s  images/s  efficiency  reduce ms/iter  reduce share")
        for n in [int(r) for r in args.ranks.split(",")]:
            rate, reduce_ms = _run(mpiexec, n, solver, work)
            images = rate * batch * n
            base = base or images / n
            share = reduce_ms * rate / 1e3
            print(
                f"{n:5d}  {rate:6.2f}  {images:8.1f}  {images / (n * base):9.0%}  "
                f"{reduce_ms:14.2f}  {share:11.0%}"
            )
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
