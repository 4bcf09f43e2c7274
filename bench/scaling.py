"""Data-parallel scaling: training images/s of LeNet (or CIFAR10-quick) with 1, 2,
... ranks under ``mpiexec``, and the gradient reduction's share of an iteration.

    python bench/scaling.py                      # LeNet, 1 and 2 ranks
    python bench/scaling.py --model cifar10_quick --ranks 1,2,4,8 --iters 60
    python bench/scaling.py --layer-wise false   # only the whole-net reduction

Each run trains the model's train net (its Data layer reading a synthetic LMDB
of random images of the model's shape, no test net) for ``--iters`` iterations
with ``display: --display``; the rate comes from the solver's own display lines
after the first (compilation and start-up left out), so the images/s is
``iter/s x batch x ranks``. Ranks share the cores (``threads = cores / ranks``).
The reduction time caffepy logs at the end includes waiting for the slowest rank.
With N > 1 ranks each reduction is measured both ways (``--layer-wise both``):
``layer_wise_reduce: true`` (a non-blocking reduction per layer, started as its
backward ends) and ``false`` (one reduction of the whole net after backward).
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
    # the ranks run in the scratch folder: let them import this checkout
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (REPO, os.environ.get("PYTHONPATH", "")) if p
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
    parser.add_argument(
        "--repeat", type=int, default=1, help="runs of each configuration (median)"
    )
    parser.add_argument(
        "--layer-wise",
        default="both",
        choices=["both", "true", "false"],
        help="layer_wise_reduce of the N > 1 rank runs (both: one run each)",
    )
    args = parser.parse_args()
    modes = ["true", "false"] if args.layer_wise == "both" else [args.layer_wise]
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
        solvers = {}
        for mode in modes:
            solvers[mode] = os.path.join(work, f"solver_{mode}.prototxt")
            with open(solvers[mode], "w") as f:
                f.write(
                    f'net: "{net}"\nbase_lr: 0.001\nmomentum: 0.9\n'
                    f'lr_policy: "fixed"\nmax_iter: {args.iters}\n'
                    f"display: {args.display}\nsnapshot_after_train: false\n"
                    f"random_seed: 1701\nlayer_wise_reduce: {mode}\n"
                )
        from google.protobuf import text_format

        sys.path.insert(0, REPO)
        from caffepy.proto import caffe_pb2

        p = caffe_pb2.NetParameter()
        text_format.Parse(open(net).read(), p)
        batch = next(la.data_param.batch_size for la in p.layer if la.type == "Data")
        base = None
        print(f"{args.model}, batch {batch} per rank, {os.cpu_count()} cores")
        print(
            "ranks  layer-wise  iter/s  images/s  efficiency  reduce ms/iter  "
            "reduce share"
        )
        runs = [
            (int(r), mode)
            for r in args.ranks.split(",")
            for mode in (modes if int(r) > 1 else modes[:1])
        ]
        got: dict[tuple[int, str], list[tuple[float, float]]] = {k: [] for k in runs}
        # NOTE: the configurations take turns, so a busy spell of the machine
        # does not fall on one of them only; each row is the median run.
        for _ in range(args.repeat):
            for n, mode in runs:
                got[(n, mode)].append(_run(mpiexec, n, solvers[mode], work))
        for n, mode in runs:
            rate = float(np.median([r for r, _ in got[(n, mode)]]))
            reduce_ms = float(np.median([m for _, m in got[(n, mode)]]))
            images = rate * batch * n
            base = base or images / n
            share = reduce_ms * rate / 1e3
            print(
                f"{n:5d}  {mode if n > 1 else '-':>10}  {rate:6.2f}  "
                f"{images:8.1f}  {images / (n * base):9.0%}  "
                f"{reduce_ms:14.2f}  {share:11.0%}",
                flush=True,
            )
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
