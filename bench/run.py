"""``make bench``: caffepy against PyTorch CPU, side by side, on this machine.

Every measurement runs in a fresh worker process (caffepy and PyTorch never
share a process: their thread pools fight for the cores), the two frameworks
alternate within each round, and the table shows the median over the rounds.
Ratios are caffepy's speed over PyTorch's (> 1: caffepy is faster), and
caffepy's memory over PyTorch's.

    python bench/run.py                  # full: 3 rounds, 1 and 2 threads (~30 min)
    python bench/run.py --quick          # 1 round, small batches (~6 min)
    python bench/run.py --only resnet50,data   # some rows (see --list)
    python bench/run.py --write-readme   # also put the table in bench/README.md
    python bench/run.py --scaling --threads 1,2,4,8,16 --write-readme
                                         # the scaling table (a many-core machine)
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
WORKERS = {"caffepy": "caffepy_worker.py", "torch": "torch_worker.py"}
TITLES = {
    "lenet": "LeNet",
    "cifar10_quick": "CIFAR10-quick",
    "cifar10_full": "CIFAR10-full",
    "caffenet": "CaffeNet",
    "googlenet": "GoogLeNet",
    "vgg16": "VGG-16",
    "resnet50": "ResNet-50",
}

#: training: batch (full, --quick) and iterations (full, --quick): ``warmup``,
#: then ``blocks`` timed blocks of ``block`` iterations (the median block's rate
#: is reported). The batches are the train prototxts' (LeNet, CIFAR10) or 32
#: (their prototxts' 256/64/32 x iter_size do not fit a 2-core budget), VGG-16 8.
#: Estimated seconds per iteration on 2 quiet cores at batch 32, from the deploy
#: forwards (training ~ 3 forwards): CaffeNet ~1, GoogLeNet ~3 (PyTorch ~4),
#: ResNet-50 ~6, VGG-16 ~25; one thread takes twice that. A full run (3 rounds,
#: 1 and 2 threads, both frameworks) so spends ~1.5 min on CaffeNet, ~2.5 on
#: GoogLeNet, ~4 on ResNet-50 and ~3.5 on VGG-16 (batch 8) training; VGG-16 at
#: batch 32 would take ~14 min (``--batch vgg16=32`` on a bigger machine).
TRAIN = {
    "lenet": ((64, 64), (20, 6, 25), (10, 4, 20)),
    "cifar10_quick": ((100, 100), (3, 5, 2), (2, 3, 1)),
    "cifar10_full": ((100, 100), (2, 5, 1), (1, 3, 1)),
    "caffenet": ((32, 8), (1, 3, 1), (1, 2, 1)),
    "googlenet": ((32, 8), (1, 2, 1), (1, 2, 1)),
    "vgg16": ((8, 4), (1, 1, 1), (1, 1, 1)),
    "resnet50": ((32, 8), (1, 1, 1), (1, 1, 1)),
}
#: deploy forwards at batch 1 and 16: (reps, warmup) at batch 16, full and
#: quick (batch 1 takes twice the reps, at least 2 warmups)
DEPLOY = {
    "lenet": ((10, 2), (5, 2)),
    "cifar10_quick": ((10, 2), (5, 2)),
    "caffenet": ((3, 1), (2, 1)),
    "googlenet": ((3, 1), (2, 1)),
    "vgg16": ((2, 1), (1, 1)),
    "resnet50": ((3, 1), (1, 1)),
}
DEPLOY_BATCHES = (1, 16)
#: the nets of the scaling table (issue 15 item 3)
SCALING = ("lenet", "cifar10_quick", "resnet50")


# -- running workers -------------------------------------------------------------
def run_worker(fw, case, threads, spec, timeout=1800, env=None):
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


def _net(tmp, name, src, batch, phase, image_shape=None):
    dst = os.path.join(tmp, f"{name}.prototxt")
    inputs = prepare_net(os.path.join(REPO, src), dst, batch, phase, image_shape)
    return dst, {k: list(v) for k, v in inputs.items()}


#: ``--batch MODEL=N`` overrides
BATCH = {}


def train_batch(model, quick):
    return BATCH.get(model) or TRAIN[model][0][1 if quick else 0]


def train_spec(tmp, model, quick):
    """A training case: LeNet through its Data layer (the solver's own net; the
    PyTorch worker reads the same LMDB), the others on a fixed random batch."""
    batch = train_batch(model, quick)
    warmup, blocks, block = TRAIN[model][2 if quick else 1]
    spec = {
        "solver": f"models/{model}/solver.prototxt",
        "warmup": warmup,
        "blocks": blocks,
        "block": block,
    }
    file, inputs = _net(
        tmp,
        f"{model}_train_b{batch}",
        f"models/{model}/train_val.prototxt",
        batch,
        0,
        DATA_SHAPES[model],
    )
    spec["inputs"] = inputs
    if model == "lenet":
        # caffepy runs the solver's own net (Data layer, prefetch thread);
        # PyTorch the prepared net, fed from the same LMDB
        spec.update(torch_file=file, source=TRAIN_SOURCE, scale=0.00390625)
    else:
        spec["file"] = file
    return spec


def deploy_spec(tmp, model, quick):
    reps16, warm16 = DEPLOY[model][1 if quick else 0]
    items = []
    for batch in DEPLOY_BATCHES:
        f, inputs = _net(
            tmp, f"{model}_deploy_b{batch}", f"models/{model}/deploy.prototxt", batch, 1
        )
        big = batch > 1
        items.append(
            {
                "name": f"b{batch}",
                "file": f,
                "inputs": inputs,
                "backward": False,
                "reps": reps16 if big else 2 * reps16,
                "warmup": warm16 if big else 2,
                "seconds": 0.5 if quick else 1.0,
            }
        )
    return {"nets": items}


#: the ResNet basic block of the fb rows: batch, channels, height = width
BLOCK = (32, 64, 28)


def _block_unit(name, bottom, channels, relu):
    """conv3x3 - BatchNorm - Scale (- ReLU), in place from the BatchNorm on."""
    text = (
        f"layer {{ name: '{name}' type: 'Convolution' bottom: '{bottom}' "
        f"top: '{name}' convolution_param {{ num_output: {channels} "
        "kernel_size: 3 pad: 1 bias_term: false weight_filler { type: 'msra' } } }\n"
        f"layer {{ name: 'bn_{name}' type: 'BatchNorm' bottom: '{name}' "
        f"top: '{name}' }}\n"
        f"layer {{ name: 'scale_{name}' type: 'Scale' bottom: '{name}' "
        f"top: '{name}' scale_param {{ bias_term: true }} }}\n"
    )
    if relu:
        text += (
            f"layer {{ name: '{name}_relu' type: 'ReLU' bottom: '{name}' "
            f"top: '{name}' }}\n"
        )
    return text


def block_spec_net(tmp):
    """A ResNet basic block in train mode (conv3x3-BN-Scale-ReLU twice, the
    identity shortcut, ReLU), then global average pooling, a 10-way
    InnerProduct and SoftmaxWithLoss: the prototxt and its inputs."""
    batch, ch, size = BLOCK
    text = (
        "name: 'resnet_block'\n"
        "layer { name: 'data' type: 'Input' top: 'data' top: 'label' input_param "
        f"{{ shape {{ dim: {batch} dim: {ch} dim: {size} dim: {size} }} "
        f"shape {{ dim: {batch} }} }} }}\n"
        + _block_unit("a", "data", ch, True)
        + _block_unit("b", "a", ch, False)
        + "layer { name: 'sum' type: 'Eltwise' bottom: 'b' bottom: 'data' "
        "top: 'sum' }\n"
        "layer { name: 'sum_relu' type: 'ReLU' bottom: 'sum' top: 'sum' }\n"
        "layer { name: 'pool' type: 'Pooling' bottom: 'sum' top: 'pool' "
        "pooling_param { pool: AVE global_pooling: true } }\n"
        "layer { name: 'fc' type: 'InnerProduct' bottom: 'pool' top: 'fc' "
        "inner_product_param { num_output: 10 weight_filler { type: 'msra' } } }\n"
        "layer { name: 'loss' type: 'SoftmaxWithLoss' bottom: 'fc' "
        "bottom: 'label' top: 'loss' }\n"
    )
    dst = os.path.join(tmp, "resnet_block.prototxt")
    with open(dst, "w", encoding="utf-8") as f:
        f.write(text)
    return dst, {"data": [batch, ch, size, size], "label": [batch]}


def fb_spec(tmp, quick):
    """Forward and forward+backward of the LeNet and CIFAR10-quick train nets
    and of a ResNet basic block (no solver, no data): the convolution engine's
    and the BatchNorm/Scale layers' share of training."""
    sec = 0.5 if quick else 1.0
    items = []
    for model, batch, reps in (("lenet", 64, 10), ("cifar10_quick", 100, 5)):
        f, inputs = _net(
            tmp,
            f"{model}_fb_b{batch}",
            f"models/{model}/train_val.prototxt",
            batch,
            0,
            DATA_SHAPES[model],
        )
        items.append(
            {
                "name": model,
                "file": f,
                "inputs": inputs,
                "backward": True,
                "reps": reps,
                "seconds": sec * (1 if model == "lenet" else 2),
            }
        )
    f, inputs = block_spec_net(tmp)
    items.append(
        {
            "name": "resnet_block",
            "file": f,
            "inputs": inputs,
            "backward": True,
            "reps": 5,
            "seconds": sec * 2,
        }
    )
    return {"nets": items}


# -- what there is to run --------------------------------------------------------
def benchmarks():
    """Every selectable benchmark: name -> (case, threads "all" or "max")."""
    out = {}
    for model in TRAIN:
        out[f"train.{model}"] = ("train", "all")
    for model in DEPLOY:
        out[f"deploy.{model}"] = ("nets", "all")
    out["fb"] = ("nets", "all")
    out["data"] = ("data", "max")
    out["convert"] = ("convert", "max")
    out["startup"] = (None, "max")
    out["check"] = (None, None)
    return out


def select(only, scaling):
    """The benchmarks ``--only`` names: a name, or one part of it (``train``,
    ``resnet50``); ``memory`` means the training rows (they report it)."""
    names = list(benchmarks())
    if not only:
        if scaling:
            return [f"train.{m}" for m in SCALING] + ["check"]
        return names
    chosen = []
    for token in only.split(","):
        token = {"memory": "train"}.get(token.strip(), token.strip())
        hits = [n for n in names if token == n or token in n.split(".")]
        if not hits:
            raise SystemExit(
                f"--only: no benchmark called {token!r}; choose from "
                + ", ".join(names)
                + " or a part of one"
            )
        chosen += [h for h in hits if h not in chosen]
    if scaling:  # training rows only: `--only resnet50` is train.resnet50
        chosen = [n for n in chosen if n.startswith("train.")]
    # the translation check covers the nets that run
    if "check" not in chosen and any("." in n for n in chosen):
        chosen.append("check")
    return [n for n in names if n in chosen]


def prepare(tmp, names, quick):
    specs = {}
    for name in names:
        kind, _, model = name.partition(".")
        if kind == "train":
            specs[name] = train_spec(tmp, model, quick)
        elif kind == "deploy":
            specs[name] = deploy_spec(tmp, model, quick)
        elif name == "fb":
            specs[name] = fb_spec(tmp, quick)
        elif name == "data":
            specs[name] = {
                "net": "models/lenet/train_val.prototxt",
                "source": TRAIN_SOURCE,
                "batch": 64,
                "scale": 0.00390625,
                "batches": 150 if quick else 300,
            }
        elif name == "convert":
            root, listfile = write_pngs(tmp, 1000 if quick else 2000)
            specs[name] = {"root": root, "list": listfile}
        elif name == "startup":
            lenet = specs.get("train.lenet") or train_spec(tmp, "lenet", quick)
            specs[name] = {
                "solver": first_iter_solver(tmp),
                "first": dict(lenet, file=lenet["torch_file"]),
                "lenet_net": lenet["torch_file"],
            }
    return specs


# -- the rounds ------------------------------------------------------------------
def collect(results, key, fw, threads, values):
    if values:
        for k, v in values.items():
            if isinstance(v, (int, float)):
                results.setdefault((key, k, threads), {}).setdefault(fw, []).append(v)


def alternate(results, key, case, threads, specs, flip):
    order = ("torch", "caffepy") if flip else ("caffepy", "torch")
    for fw in order:
        spec = specs[fw] if fw in specs else specs["both"]
        collect(results, key, fw, threads, run_worker(fw, case, threads, spec))


def _fw_specs(name, spec):
    """The spec each framework's worker gets (LeNet training differs)."""
    if name == "train.lenet":
        return {
            "caffepy": {k: v for k, v in spec.items() if k != "torch_file"},
            "torch": dict(spec, file=spec["torch_file"]),
        }
    return {"both": spec}


def run_rounds(names, specs, args, results):
    table = benchmarks()
    for r in range(args.rounds):
        print(f"round {r + 1}/{args.rounds}", file=sys.stderr, flush=True)
        for threads in args.threads:
            for i, name in enumerate(names):
                case, which = table[name]
                if case is None or (which == "max" and threads != max(args.threads)):
                    continue
                t0 = time.perf_counter()
                flip = (r + i) % 2 == 1
                alternate(
                    results, name, case, threads, _fw_specs(name, specs[name]), flip
                )
                print(
                    f"  {name}, {threads} thread(s): {time.perf_counter() - t0:.0f} s",
                    file=sys.stderr,
                    flush=True,
                )


def run_startup(specs, args, results, tmp):
    nt = max(args.threads)
    cache = os.path.join(tmp, "numba-cache")
    spec = specs["startup"]
    for r in range(args.rounds):
        # cold: an empty Numba cache; the next runs reuse what it compiled
        if r == 0:
            shutil.rmtree(cache, ignore_errors=True)
            os.makedirs(cache)
            cold = time_caffepy_train(spec["solver"], cache, nt)
            collect(results, "startup", "caffepy", nt, {"cold_s": cold})
        warm = time_caffepy_train(spec["solver"], cache, nt)
        collect(results, "startup", "caffepy", nt, {"warm_s": warm})
        t = time.perf_counter()
        res = run_worker("torch", "first_iter", nt, spec["first"])
        if res:
            collect(
                results, "startup", "torch", nt, {"warm_s": time.perf_counter() - t}
            )


def run_check(names, results, quick):
    """bench/check_torch_net.py on the selected nets (float64, batch 2; --quick 1)."""
    models = sorted({n.partition(".")[2] for n in names if "." in n})
    if "fb" in names:
        models = sorted(set(models) | {"lenet", "cifar10_quick"})
    if not models:
        return
    print("checking the PyTorch translation ...", file=sys.stderr, flush=True)
    proc = subprocess.run(
        [
            sys.executable,
            os.path.join(HERE, "check_torch_net.py"),
            "--only",
            ",".join(models),
            "--batch",
            "1" if quick else "2",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    sys.stderr.write(
        "".join(line + "\n" for line in proc.stdout.splitlines() if "BENCH" not in line)
    )
    for line in proc.stdout.splitlines():
        if line.startswith("BENCH "):
            results["check"] = (proc.returncode, json.loads(line[6:]))
            return
    results["check"] = (proc.returncode or 1, {})


def run_time_check(specs, results):
    """`caffepy time` on the prepared LeNet net, for comparison with the table."""
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "caffepy.cli",
            "time",
            "--model",
            specs["fb"]["nets"][0]["file"],
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
def rows(args):
    """(title, key, metric, kind, target) of every row: kind "rate" (higher is
    better), "ms" (lower is better), "mem" (ratio caffepy / PyTorch, lower is
    better) or "abs" (caffepy's own value against an absolute target)."""
    out = []
    for m in TRAIN:
        feed = "Data layer" if m == "lenet" else "random batch"
        b = train_batch(m, args.quick)
        title = f"{TITLES[m]} training, iterations/s (batch {b}, {feed})"
        out.append((title, f"train.{m}", "it_s", "rate", 1.0))
    for m in DEPLOY:
        for b in DEPLOY_BATCHES:
            title = f"{TITLES[m]} deploy forward, ms (batch {b})"
            out.append((title, f"deploy.{m}", f"b{b}.fwd", "ms", 1.0))
    out += [
        ("LeNet forward, ms (batch 64, train net)", "fb", "lenet.fwd", "ms", None),
        ("LeNet forward+backward, ms", "fb", "lenet.fb", "ms", None),
        (
            "CIFAR10-quick forward, ms (batch 100, train net)",
            "fb",
            "cifar10_quick.fwd",
            "ms",
            None,
        ),
        ("CIFAR10-quick forward+backward, ms", "fb", "cifar10_quick.fb", "ms", None),
        (
            "ResNet basic block forward, ms (batch 32, 64 ch, 28x28, train net)",
            "fb",
            "resnet_block.fwd",
            "ms",
            None,
        ),
        (
            "ResNet basic block forward+backward, ms",
            "fb",
            "resnet_block.fb",
            "ms",
            None,
        ),
        ("Data layer, images/s (LeNet, prefetch)", "data", "images_s", "rate", 1.0),
        (
            "convert_imageset, images/s (Fashion-MNIST PNGs)",
            "convert",
            "images_s",
            "rate",
            1.0,
        ),
        (
            "start to first iteration, s (warm Numba cache)",
            "startup",
            "warm_s",
            "abs",
            2,
        ),
        (
            "start to first iteration, s (cold Numba cache)",
            "startup",
            "cold_s",
            "abs",
            5,
        ),
    ]
    for m in TRAIN:
        title = f"peak RSS of {TITLES[m]} training, MiB"
        out.append((title, f"train.{m}", "rss_mib", "mem", 1.0))
    return out


def _med(values):
    return statistics.median(values) if values else None


def _fmt(v):
    if v is None:
        return "-"
    return f"{v:.3g}" if abs(v) < 100 else f"{v:.0f}"


def _cell(results, key, metric, threads):
    cell = results.get((key, metric, threads)) or {}
    return _med(cell.get("caffepy", [])), _med(cell.get("torch", []))


def _ratio(ours, theirs, kind):
    if not (ours and theirs):
        return None
    kind = {"abs": "ms"}.get(kind, kind)
    return {"rate": ours / theirs, "ms": theirs / ours, "mem": ours / theirs}[kind]


def table(results, args):
    lines = [
        "| measurement | threads | caffepy | PyTorch | ratio | target |",
        "|---|---|---|---|---|---|",
    ]
    threads_all = sorted({k[2] for k in results if isinstance(k, tuple)})
    for title, key, metric, kind, target in rows(args):
        for threads in threads_all:
            if (key, metric, threads) not in results:
                continue
            ours, theirs = _cell(results, key, metric, threads)
            ratio = _ratio(ours, theirs, kind)
            goal = "-"
            if kind == "abs" and ours is not None:
                goal = f"<= {target:g} s " + ("met" if ours <= target else "**missed**")
            elif target is not None and ratio is not None:
                ok = ratio <= target if kind == "mem" else ratio >= target
                goal = f"{'<=' if kind == 'mem' else '>='} {target:g}x " + (
                    "met" if ok else "**missed**"
                )
            elif target is not None:
                goal = "no result"
            lines.append(
                f"| {title} | {threads} | {_fmt(ours)} | {_fmt(theirs)} | "
                f"{_fmt(ratio) + 'x' if ratio else '-'} | {goal} |"
            )
    for threads in threads_all:
        cell = {
            k[1]: _med(v.get("caffepy", []))
            for k, v in results.items()
            if isinstance(k, tuple) and k[0] == "train.lenet" and k[2] == threads
        }
        if cell.get("numba_threads") is not None:
            lines.append("")
            lines.append(
                f"`--threads {threads}`: caffepy ran {cell['numba_threads']:.0f} Numba "
                f"and {cell['blas_threads']:.0f} BLAS thread(s) (threadpoolctl) and "
                f"used {cell['cpu_ratio']:.2f} CPU-seconds per second while training "
                "LeNet."
            )
    lines += _check_lines(results, args)
    check = results.get("time_check")
    if check:
        lines.append("")
        lines.append(
            f"`caffepy time` on the same LeNet net (2 threads, mean of 50): "
            f"forward {check[0]:.2f} ms, forward+backward {check[1]:.2f} ms."
        )
    return "\n".join(lines)


def _check_lines(results, args):
    if "check" not in results:
        return []
    rc, res = results["check"]
    worst = {}
    for net, diffs in res.items():
        for k, d in (diffs or {}).items():
            if d > worst.get(k, (-1, ""))[0]:
                worst[k] = (d, net)
    failed = [n for n, d in res.items() if d is None]
    text = (
        f"Translation check (`bench/check_torch_net.py`, float64, batch "
        f"{1 if args.quick else 2}, caffepy's weights copied): {len(res)} nets, "
        + (
            "all match"
            if rc == 0
            else "**mismatch or failure** (" + (", ".join(failed) or "see log") + ")"
        )
        + "; largest relative differences: "
        + ", ".join(f"{k} {d:.0e} ({n})" for k, (d, n) in worst.items())
        + "."
    )
    return ["", text]


def scaling_table(results, args):
    """Training iterations/s at each thread count, both frameworks, and each
    framework's speed-up over its own 1-thread rate."""
    lines = [
        "| net | threads | caffepy it/s | PyTorch it/s | ratio | caffepy speed-up "
        "| PyTorch speed-up |",
        "|---|---|---|---|---|---|---|",
    ]
    base = min(args.threads)
    for m in TRAIN:
        key = f"train.{m}"
        if not any(k[0] == key for k in results if isinstance(k, tuple)):
            continue
        ours1, theirs1 = _cell(results, key, "it_s", base)
        for threads in args.threads:
            ours, theirs = _cell(results, key, "it_s", threads)
            ratio = _ratio(ours, theirs, "rate")
            up = [
                a / b if a and b else None
                for a, b in ((ours, ours1), (theirs, theirs1))
            ]
            lines.append(
                f"| {TITLES[m]} (batch {train_batch(m, args.quick)}) | {threads} | "
                f"{_fmt(ours)} | {_fmt(theirs)} | "
                f"{_fmt(ratio) + 'x' if ratio else '-'} | "
                + " | ".join(_fmt(u) + "x" if u else "-" for u in up)
                + " |"
            )
    lines.append("")
    lines.append(
        f"Speed-up: iterations/s at N threads over the same framework's at {base}; "
        "targets (issue 15): ratio >= 1x at every thread count, caffepy's speed-up "
        "at the most threads at least PyTorch's."
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
        from caffepy.kernels import blas

        if blas.NAME == "mkl":
            cpu += " (caffepy's kernels call Intel MKL, caffepy[mkl])"
        elif arch:
            cpu += f" (OpenBLAS kernels: {arch[0]})"
    except (OSError, ImportError):
        pass
    mode = " (--quick)" if args.quick else ""
    return (
        f"Date {datetime.date.today()}; {cpu}, {os.cpu_count()} cores; "
        f"Python {platform.python_version()}, numpy {numpy.__version__}, "
        f"numba {numba.__version__}, PyTorch {tv}; {args.rounds} round(s){mode}, "
        f"median; {seconds / 60:.1f} min."
    )


def write_readme(text, marker="bench"):
    path = os.path.join(HERE, "README.md")
    begin, end = f"<!-- {marker}:begin -->", f"<!-- {marker}:end -->"
    with open(path, encoding="utf-8") as f:
        readme = f.read()
    if begin not in readme:
        readme += f"\n{begin}\n{end}\n"
    head, rest = readme.split(begin, 1)
    tail = rest.split(end, 1)[1]
    with open(path, "w", encoding="utf-8") as f:
        f.write(f"{head}{begin}\n{text}\n{end}{tail}")


def main():
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n\n", 2)[2],
    )
    ap.add_argument(
        "--quick", action="store_true", help="one round, small batches, fewer reps"
    )
    ap.add_argument("--rounds", type=int, default=None, help="default 3 (--quick: 1)")
    ap.add_argument(
        "--threads",
        default=None,
        help="thread counts, e.g. 1,2,4,8,16 (default 1,2; --scaling: powers of "
        "two up to the core count)",
    )
    ap.add_argument(
        "--only",
        default="",
        help="comma-separated benchmarks or parts of their names (train, deploy, "
        "resnet50, train.vgg16, fb, data, convert, startup, memory); --list "
        "shows them",
    )
    ap.add_argument(
        "--batch",
        default="",
        help="training batch sizes, e.g. vgg16=32,resnet50=64 (default: see TRAIN "
        "in run.py)",
    )
    ap.add_argument("--list", action="store_true", help="list the benchmarks")
    ap.add_argument(
        "--scaling",
        action="store_true",
        help="the scaling table: LeNet, CIFAR10-quick and ResNet-50 training "
        "(unless --only says otherwise) at every --threads count",
    )
    ap.add_argument("--skip-startup", action="store_true")
    ap.add_argument(
        "--skip-check", action="store_true", help="skip the translation check"
    )
    ap.add_argument(
        "--write-readme",
        action="store_true",
        help="replace the table (--scaling: the scaling table) in bench/README.md",
    )
    args = ap.parse_args()
    if args.list:
        print("\n".join(benchmarks()))
        return
    args.rounds = args.rounds or (1 if args.quick else 3)
    for item in filter(None, args.batch.split(",")):
        model, _, size = item.partition("=")
        if model not in TRAIN or not size.isdigit():
            raise SystemExit(f"--batch: expected MODEL=N with MODEL in {list(TRAIN)}")
        BATCH[model] = int(size)
    if args.threads is None:
        cores = os.cpu_count() or 1
        counts = [1, 2] if not args.scaling else [1 << i for i in range(5)]
        args.threads = ",".join(str(t) for t in counts if t <= max(cores, 2))
    args.threads = [int(t) for t in args.threads.split(",")]
    names = select(args.only, args.scaling)
    if args.skip_startup or args.scaling:
        names = [n for n in names if n != "startup"]
    if args.skip_check:
        names = [n for n in names if n != "check"]
    start = time.perf_counter()
    ensure_data()
    tmp = tempfile.mkdtemp(prefix="caffepy-bench-")
    results = {}
    try:
        specs = prepare(tmp, names, args.quick)
        if "check" in names:
            run_check(names, results, args.quick)
        run_rounds(names, specs, args, results)
        if "startup" in names:
            run_startup(specs, args, results, tmp)
        if not args.quick and "fb" in names:
            run_time_check(specs, results)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    head = header(args, time.perf_counter() - start)
    if args.scaling:
        text = head + "\n\n" + scaling_table(results, args)
    else:
        text = head + "\n\n" + table(results, args)
    print(text)
    if args.write_readme:
        write_readme(text, "scaling" if args.scaling else "bench")


if __name__ == "__main__":
    main()
