"""``make bench``: caffepy against PyTorch CPU, side by side, on this machine.

Every measurement runs in a fresh worker process (caffepy and PyTorch never
share a process: their thread pools fight for the cores), the two frameworks
alternate within each round, and the table shows the median over the rounds.
Ratios are caffepy's speed over PyTorch's (> 1: caffepy is faster), and
caffepy's memory over PyTorch's.

    python bench/run.py            # full: 3 rounds, 1 and 2 threads (< 10 min)
    python bench/run.py --quick    # 1 round, shorter runs (~2-3 min)
    python bench/run.py --write-readme   # also put the table in bench/README.md
"""

import argparse
import datetime
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from common import DATA_SHAPES, REPO, prepare_net  # noqa: E402

TRAIN_SOURCE = "data/fashion_mnist_train_lmdb"
SOLVER = "models/lenet/solver.prototxt"
DEPLOY = ("caffenet", "googlenet", "resnet50")
WORKERS = {"caffepy": "caffepy_worker.py", "torch": "torch_worker.py"}


# -- running workers -------------------------------------------------------------
def run_worker(fw, case, threads, spec, timeout=600, env=None):
    cmd = [
        sys.executable,
        os.path.join(HERE, WORKERS[fw]),
        case,
        "--threads",
        str(threads),
        "--spec",
        json.dumps(spec),
    ]
    try:
        proc = subprocess.run(
            cmd, capture_output=True, text=True, timeout=timeout, cwd=REPO, env=env
        )
    except subprocess.TimeoutExpired:
        print(f"  ! {fw} {case} ({threads} threads) timed out", file=sys.stderr)
        return None
    for line in proc.stdout.splitlines():
        if line.startswith("BENCH "):
            return json.loads(line[6:])
    tail = "\n".join((proc.stderr or "").splitlines()[-8:])
    print(f"  ! {fw} {case} ({threads} threads) failed:\n{tail}", file=sys.stderr)
    return None


def time_caffepy_train(solver, cache_dir, threads):
    """Seconds from `caffepy train` start to the end of its first iteration."""
    env = dict(os.environ, NUMBA_CACHE_DIR=cache_dir)
    cmd = [
        sys.executable,
        "-m",
        "caffepy.cli",
        "train",
        "--solver",
        solver,
        "--threads",
        str(threads),
        "--no-progress",
    ]
    t = time.perf_counter()
    proc = subprocess.Popen(
        cmd,
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    first = None
    for line in proc.stderr:
        if first is None and re.search(r"Iteration 0 \(", line):
            first = time.perf_counter() - t
    proc.wait()
    return first if proc.returncode == 0 else None


# -- preparing inputs ------------------------------------------------------------
def ensure_data():
    if os.path.isdir(os.path.join(REPO, TRAIN_SOURCE)):
        return
    print("Fashion-MNIST LMDBs missing: running `caffepy data fashion-mnist data`")
    subprocess.run(
        [sys.executable, "-m", "caffepy.cli", "data", "fashion-mnist", "data"],
        cwd=REPO,
        check=True,
    )


def write_pngs(tmp, count):
    """``count`` Fashion-MNIST training images as PNGs and a list file."""
    import cv2
    import lmdb
    import numpy as np
    from common import _pb2

    root = os.path.join(tmp, "png") + os.sep
    os.makedirs(root)
    datum = _pb2().Datum()
    env = lmdb.open(os.path.join(REPO, TRAIN_SOURCE), readonly=True, lock=False)
    lines = []
    with env.begin() as txn:
        for i, (_, value) in enumerate(txn.cursor()):
            if i >= count:
                break
            datum.ParseFromString(value)
            img = np.frombuffer(datum.data, np.uint8).reshape(datum.height, datum.width)
            cv2.imwrite(f"{root}{i:05d}.png", img)
            lines.append(f"{i:05d}.png {datum.label}\n")
    env.close()
    listfile = os.path.join(tmp, "list.txt")
    with open(listfile, "w", encoding="utf-8") as f:
        f.writelines(lines)
    return root, listfile


def first_iter_solver(tmp):
    path = os.path.join(tmp, "first_iter_solver.prototxt")
    with open(os.path.join(REPO, SOLVER), encoding="utf-8") as f:
        text = f.read()
    for key in (
        "test_interval",
        "test_initialization",
        "display",
        "max_iter",
        "snapshot",
        "snapshot_prefix",
        "snapshot_after_train",
    ):
        text = re.sub(rf"(?m)^{key}:.*$", "", text)
    text += (
        "test_interval: 1000000\ntest_initialization: false\ndisplay: 1\n"
        "max_iter: 1\nsnapshot: 0\nsnapshot_after_train: false\n"
        f'snapshot_prefix: "{os.path.join(tmp, "snap")}"\n'
    )
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
    return path


def prepare(tmp, quick):
    """Prepared nets and the specs of every case."""

    def net(name, src, batch, phase, image_shape=None):
        dst = os.path.join(tmp, f"{name}.prototxt")
        inputs = prepare_net(os.path.join(REPO, src), dst, batch, phase, image_shape)
        return dst, {k: list(v) for k, v in inputs.items()}

    lenet, lenet_in = net(
        "lenet_b64", "models/lenet/train_val.prototxt", 64, 0, DATA_SHAPES["lenet"]
    )
    cifar, cifar_in = net(
        "cifar_b100",
        "models/cifar10_quick/train_val.prototxt",
        100,
        0,
        DATA_SHAPES["cifar10_quick"],
    )
    scale = 0.00390625
    train = {
        "solver": SOLVER,
        "file": lenet,
        "inputs": lenet_in,
        "loss": "loss",
        "source": TRAIN_SOURCE,
        "scale": scale,
        "blocks": 4 if quick else 6,
        "block": 20 if quick else 25,
    }
    sec = 0.5 if quick else 1.0
    small = {
        "nets": [
            {
                "name": "lenet",
                "file": lenet,
                "inputs": lenet_in,
                "backward": True,
                "loss": "loss",
                "reps": 10,
                "seconds": sec,
            },
            {
                "name": "cifar10_quick",
                "file": cifar,
                "inputs": cifar_in,
                "backward": True,
                "loss": "loss",
                "reps": 5,
                "seconds": 2 * sec,
            },
        ]
    }
    deploy = {}
    for model in DEPLOY:
        items = []
        for batch in (1, 16):
            f, inputs = net(
                f"{model}_b{batch}", f"models/{model}/deploy.prototxt", batch, 1
            )
            items.append(
                {
                    "name": f"{model}.b{batch}",
                    "file": f,
                    "inputs": inputs,
                    "backward": False,
                    "reps": 3 if batch > 1 else 5,
                    "seconds": sec,
                }
            )
        deploy[model] = {"nets": items}
    root, listfile = write_pngs(tmp, 1000 if quick else 2000)
    data = {
        "net": "models/lenet/train_val.prototxt",
        "source": TRAIN_SOURCE,
        "batch": 64,
        "scale": scale,
        "batches": 150 if quick else 300,
    }
    convert = {"root": root, "list": listfile}
    first = dict(train, inputs=lenet_in)
    return {
        "train": train,
        "small": small,
        "deploy": deploy,
        "data": data,
        "convert": convert,
        "first": first,
        "solver": first_iter_solver(tmp),
        "lenet_net": lenet,
    }


# -- the rounds ------------------------------------------------------------------
def collect(results, key, fw, threads, values):
    if values:
        for k, v in values.items():
            if isinstance(v, (int, float)):
                results.setdefault((key, k, threads), {}).setdefault(fw, []).append(v)


def alternate(results, key, case, threads, spec, flip):
    order = ("torch", "caffepy") if flip else ("caffepy", "torch")
    for fw in order:
        collect(results, key, fw, threads, run_worker(fw, case, threads, spec))


def run_rounds(specs, args, results):
    threads_list = args.threads
    for r in range(args.rounds):
        print(f"round {r + 1}/{args.rounds}", file=sys.stderr, flush=True)
        flip = r % 2 == 1
        for threads in threads_list:
            t0 = time.perf_counter()
            alternate(results, "train", "train", threads, specs["train"], flip)
            alternate(results, "nets", "nets", threads, specs["small"], not flip)
            for model in DEPLOY:
                alternate(
                    results, "nets", "nets", threads, specs["deploy"][model], flip
                )
            print(
                f"  {threads} thread(s): {time.perf_counter() - t0:.0f} s",
                file=sys.stderr,
                flush=True,
            )
        nt = max(threads_list)
        alternate(results, "data", "data", nt, specs["data"], flip)
        alternate(results, "convert", "convert", nt, specs["convert"], not flip)


def run_startup(specs, args, results, tmp):
    nt = max(args.threads)
    cache = os.path.join(tmp, "numba-cache")
    for r in range(args.rounds):
        # cold: an empty Numba cache; the next runs reuse what it compiled
        if r == 0:
            shutil.rmtree(cache, ignore_errors=True)
            os.makedirs(cache)
            cold = time_caffepy_train(specs["solver"], cache, nt)
            collect(results, "startup", "caffepy", nt, {"cold_s": cold})
        warm = time_caffepy_train(specs["solver"], cache, nt)
        collect(results, "startup", "caffepy", nt, {"warm_s": warm})
        t = time.perf_counter()
        res = run_worker("torch", "first_iter", nt, specs["first"])
        if res:
            collect(
                results, "startup", "torch", nt, {"warm_s": time.perf_counter() - t}
            )


def run_time_check(specs, results):
    """`caffepy time` on the prepared LeNet net, for comparison with the table."""
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "caffepy.cli",
            "time",
            "--model",
            specs["lenet_net"],
            "--iterations",
            "50",
            "--threads",
            "2",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
    ).stdout
    fwd = re.search(r"Average Forward pass: ([\d.]+)", out)
    fb = re.search(r"Average Forward-Backward: ([\d.]+)", out)
    if fwd and fb:
        results["time_check"] = (float(fwd.group(1)), float(fb.group(1)))


# -- the table -------------------------------------------------------------------
ROWS = (
    [
        # (title, key, metric, kind, target): kind "rate" (higher is better), "ms"
        # (lower is better) or "mem" (lower is better, ratio caffepy / PyTorch)
        (
            "LeNet training, iterations/s (batch 64, Data layer)",
            "train",
            "it_s",
            "rate",
            1.0,
        ),
        ("LeNet forward, ms (batch 64)", "nets", "lenet.fwd", "ms", None),
        ("LeNet forward+backward, ms", "nets", "lenet.fb", "ms", None),
        (
            "CIFAR10-quick forward, ms (batch 100)",
            "nets",
            "cifar10_quick.fwd",
            "ms",
            None,
        ),
        ("CIFAR10-quick forward+backward, ms", "nets", "cifar10_quick.fb", "ms", 0.8),
    ]
    + [
        (f"{m} deploy forward, ms (batch {b})", "nets", f"{m}.b{b}.fwd", "ms", 0.7)
        for m in DEPLOY
        for b in (1, 16)
    ]
    + [
        ("Data layer, images/s (LeNet, prefetch)", "data", "images_s", "rate", None),
        (
            "convert_imageset, images/s (Fashion-MNIST PNGs)",
            "convert",
            "images_s",
            "rate",
            None,
        ),
        (
            "start to first iteration, s (warm Numba cache)",
            "startup",
            "warm_s",
            "ms",
            None,
        ),
        (
            "start to first iteration, s (cold Numba cache)",
            "startup",
            "cold_s",
            "ms",
            None,
        ),
        ("peak RSS of LeNet training, MiB", "train", "rss_mib", "mem", 1.5),
    ]
)


def _med(values):
    return statistics.median(values) if values else None


def _fmt(v):
    if v is None:
        return "-"
    return f"{v:.3g}" if abs(v) < 100 else f"{v:.0f}"


def table(results, args):
    lines = [
        "| measurement | threads | caffepy | PyTorch | ratio | target |",
        "|---|---|---|---|---|---|",
    ]
    threads_all = sorted({k[2] for k in results if isinstance(k, tuple)})
    for title, key, metric, kind, target in ROWS:
        for threads in threads_all:
            cell = results.get((key, metric, threads))
            if not cell:
                continue
            ours, theirs = _med(cell.get("caffepy", [])), _med(cell.get("torch", []))
            ratio = None
            if ours and theirs:
                ratio = {
                    "rate": ours / theirs,
                    "ms": theirs / ours,
                    "mem": ours / theirs,
                }[kind]
            goal = "-"
            if target is not None and ratio is not None:
                ok = ratio <= target if kind == "mem" else ratio >= target
                goal = f"{'<=' if kind == 'mem' else '>='} {target:g}x " + (
                    "met" if ok else "**missed**"
                )
            if key == "startup" and metric == "warm_s" and ours is not None:
                goal = "<= 3 s " + ("met" if ours <= 3 else "**missed**")
            lines.append(
                f"| {title} | {threads} | {_fmt(ours)} | {_fmt(theirs)} | "
                f"{_fmt(ratio) + 'x' if ratio else '-'} | {goal} |"
            )
    for threads in threads_all:
        cell = {
            k[1]: _med(v.get("caffepy", []))
            for k, v in results.items()
            if isinstance(k, tuple) and k[0] == "train" and k[2] == threads
        }
        if cell.get("numba_threads") is not None:
            lines.append("")
            lines.append(
                f"`--threads {threads}`: caffepy ran {cell['numba_threads']:.0f} Numba "
                f"and {cell['blas_threads']:.0f} BLAS thread(s) (threadpoolctl) and "
                f"used {cell['cpu_ratio']:.2f} CPU-seconds per second while training "
                "LeNet."
            )
    check = results.get("time_check")
    if check:
        lines.append("")
        lines.append(
            f"`caffepy time` on the same LeNet net (2 threads, mean of 50): "
            f"forward {check[0]:.2f} ms, forward+backward {check[1]:.2f} ms."
        )
    return "\n".join(lines)


def header(args, seconds):
    import numba
    import numpy

    try:
        import torch

        tv = torch.__version__
    except ImportError:  # pragma: no cover
        tv = "missing"
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            m = re.search(r"model name\s*:\s*(.*)", f.read())
            cpu = m.group(1).strip() if m else cpu
    except OSError:
        pass
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            flags = f.read()
        cpu += (
            ", AVX-512" if "avx512f" in flags else (", AVX2" if "avx2" in flags else "")
        )
        from threadpoolctl import threadpool_info

        arch = [
            i.get("architecture")
            for i in threadpool_info()
            if i.get("internal_api") == "openblas"
        ]
        if arch:
            cpu += f" (OpenBLAS kernels: {arch[0]})"
    except (OSError, ImportError):
        pass
    return (
        f"Date {datetime.date.today()}; {cpu}, {os.cpu_count()} cores; "
        f"Python {platform.python_version()}, numpy {numpy.__version__}, "
        f"numba {numba.__version__}, PyTorch {tv}; {args.rounds} round(s), "
        f"median; {seconds / 60:.1f} min."
    )


def write_readme(text):
    path = os.path.join(HERE, "README.md")
    begin, end = "<!-- bench:begin -->", "<!-- bench:end -->"
    with open(path, encoding="utf-8") as f:
        readme = f.read()
    if begin not in readme:
        readme += f"\n{begin}\n{end}\n"
    head, rest = readme.split(begin, 1)
    tail = rest.split(end, 1)[1]
    with open(path, "w", encoding="utf-8") as f:
        f.write(f"{head}{begin}\n{text}\n{end}{tail}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="one round, shorter runs")
    ap.add_argument("--rounds", type=int, default=None)
    ap.add_argument("--threads", default="1,2", help="thread counts (default 1,2)")
    ap.add_argument("--skip-startup", action="store_true")
    ap.add_argument(
        "--write-readme",
        action="store_true",
        help="replace the table in bench/README.md",
    )
    args = ap.parse_args()
    args.rounds = args.rounds or (1 if args.quick else 3)
    args.threads = [int(t) for t in args.threads.split(",")]
    start = time.perf_counter()
    ensure_data()
    tmp = tempfile.mkdtemp(prefix="caffepy-bench-")
    results = {}
    try:
        specs = prepare(tmp, args.quick)
        run_rounds(specs, args, results)
        if not args.skip_startup:
            run_startup(specs, args, results, tmp)
        if not args.quick:
            run_time_check(specs, results)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    text = header(args, time.perf_counter() - start) + "\n\n" + table(results, args)
    print(text)
    if args.write_readme:
        write_readme(text)


if __name__ == "__main__":
    main()
