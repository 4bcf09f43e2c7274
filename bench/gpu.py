"""caffepy GPU mode against PyTorch CUDA on the same GPU, in the same run.

    python bench/gpu.py [--quick] [--rounds N] [--write-readme] [--smoke]

The same prepared nets as the CPU benchmark (``bench/common.py``'s
``prepare_net``; PyTorch runs ``bench/torch_net.py``'s translation), fp32
(TF32 off on both sides), medians:

- training iteration (forward, backward, SGD update with momentum and weight
  decay, the host batch copied in): LeNet b64, CIFAR10-quick b100, CaffeNet,
  GoogLeNet, ResNet-50 at b32 and b128;
- deploy forward of the five nets at batch 1 and 64;
- peak device memory (caffepy: CuPy's pools; PyTorch: max_memory_reserved);
- start to first training iteration (process start to the end of LeNet's first
  iteration, imports, CUDA context and kernel compilation included).

Each framework runs every case in one process (``bench/gpu_worker.py``); with
``--rounds N`` both run N times, alternating which goes first, and the table
shows medians. Without a GPU (or CuPy, numba's CUDA target, PyTorch CUDA) it
prints one line and exits 0. ``--smoke`` runs end to end on the CPU (numba's
CUDA simulator, CPU PyTorch, a tiny net at batch 2, one iteration) to check
the harness itself; its numbers mean nothing.
"""

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import DATA_SHAPES, REPO, prepare_net  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
README = os.path.join(HERE, "README.md")
BEGIN = "<!-- gpu-bench:begin -->"
END = "<!-- gpu-bench:end -->"

#: (model, batches) of the training cases
TRAIN = [
    ("lenet", (64,)),
    ("cifar10_quick", (100,)),
    ("resnet50", (32, 128)),
    ("googlenet", (32, 128)),
    ("caffenet", (32, 128)),
]
SMALL = ("lenet", "cifar10_quick", "smoke")
DEPLOY = ["lenet", "cifar10_quick", "caffenet", "googlenet", "resnet50"]
DEPLOY_BATCHES = (1, 64)


# NOTE: the simulator runs every CUDA thread in Python: LeNet's first iteration
# alone takes about a minute there, so the smoke run uses a net this small.
_SMOKE_LAYERS = """
layer { name: "conv" type: "Convolution" bottom: "data" top: "conv"
  convolution_param { num_output: 2 kernel_size: 3 weight_filler { type: "xavier" } } }
layer { name: "pool" type: "Pooling" bottom: "conv" top: "pool"
  pooling_param { pool: MAX kernel_size: 2 stride: 2 } }
layer { name: "ip" type: "InnerProduct" bottom: "pool" top: "ip"
  inner_product_param { num_output: 4 weight_filler { type: "xavier" } } }
layer { name: "relu" type: "ReLU" bottom: "ip" top: "ip" }
layer { name: "score" type: "InnerProduct" bottom: "ip" top: "score"
  inner_product_param { num_output: 10 weight_filler { type: "xavier" } } }
"""
SMOKE_NET = {
    "train": 'name: "smoke"\n'
    'layer { name: "in" type: "Input" top: "data" top: "label"\n'
    "  input_param { shape { dim: 2 dim: 1 dim: 6 dim: 6 } shape { dim: 2 } } }"
    + _SMOKE_LAYERS
    + 'layer { name: "loss" type: "SoftmaxWithLoss" bottom: "score" '
    'bottom: "label" top: "loss" }\n',
    "deploy": 'name: "smoke"\n'
    'layer { name: "in" type: "Input" top: "data"\n'
    "  input_param { shape { dim: 1 dim: 1 dim: 6 dim: 6 } } }"
    + _SMOKE_LAYERS
    + 'layer { name: "prob" type: "Softmax" bottom: "score" top: "prob" }\n',
}


def unavailable():
    """Why the GPU benchmark cannot run here (one line), or None."""
    try:
        import cupy

        if cupy.cuda.runtime.getDeviceCount() < 1:
            return "no CUDA device (CuPy found none)"
    except Exception as exc:  # noqa: BLE001 - ImportError or a driver error
        return f"CuPy unusable ({type(exc).__name__}: {exc})"
    try:
        import torch

        if not torch.cuda.is_available():
            return "PyTorch has no CUDA (torch.cuda.is_available() is False)"
    except ImportError:
        return "PyTorch is not installed"
    sys.path.insert(0, REPO)
    try:
        from caffepy.backend import cuda

        cuda.check_available(0)
    except Exception as exc:  # noqa: BLE001 - GpuUnavailableError, ImportError
        return f"caffepy GPU mode unavailable ({exc})"
    return None


def cases(tmp, quick, smoke):
    """The case list (same for both workers) with prepared net files."""
    out = []

    def prep(model, kind, batch):
        src = "train_val" if kind == "train" else "deploy"
        dst = os.path.join(tmp, f"{model}_{kind}_b{batch}.prototxt")
        phase = 0 if kind == "train" else 1
        if model == "smoke":
            path = os.path.join(tmp, f"smoke_{src}.prototxt")
            with open(path, "w", encoding="utf-8") as f:
                f.write(SMOKE_NET[kind])
        else:
            path = os.path.join(REPO, f"models/{model}/{src}.prototxt")
        shape = DATA_SHAPES.get(model) if kind == "train" else None
        inputs = prepare_net(path, dst, batch, phase, shape)
        return dst, {k: list(v) for k, v in inputs.items()}

    if smoke:
        plan = [("train", "smoke", 2), ("deploy", "smoke", 1)]
    else:
        # cheap cases first, so a worker out of --budget still reports them
        train = [("train", m, b) for m, bs in TRAIN for b in bs]
        plan = [c for c in train if c[1] in SMALL]
        plan += [("deploy", m, b) for m in DEPLOY for b in DEPLOY_BATCHES]
        plan += [c for c in train if c[1] not in SMALL]
    for kind, model, batch in plan:
        f, inputs = prep(model, kind, batch)
        big = model not in SMALL
        if smoke:
            timing = {"warmup": 1, "blocks": 1, "iters": 1}
        elif big:
            timing = {"warmup": 2, "blocks": 3, "iters": 2 if quick else 5}
        else:
            timing = {"warmup": 10, "blocks": 5, "iters": 20 if quick else 50}
        out.append(
            dict(
                timing,
                id=f"{kind}:{model}:b{batch}",
                kind=kind,
                model=model,
                batch=batch,
                file=f,
                inputs=inputs,
            )
        )
    return out


def run_worker(framework, spec, smoke, timeout):
    """Run one worker; its results by case id (missing cases: it failed)."""
    env = dict(os.environ)
    if smoke:
        env["NUMBA_ENABLE_CUDASIM"] = "1"
    spec = dict(spec, t0=time.time())
    cmd = [sys.executable, os.path.join(HERE, "gpu_worker.py"), framework,
           "--spec", json.dumps(spec)]  # fmt: skip
    try:
        proc = subprocess.run(
            cmd, env=env, capture_output=True, text=True, timeout=timeout
        )
    except subprocess.TimeoutExpired as exc:
        out, err = exc.stdout or "", f"timed out after {timeout} s"
        if isinstance(out, bytes):
            out = out.decode()
    else:
        out, err = proc.stdout, proc.stderr if proc.returncode else ""
    results = {}
    for line in out.splitlines():
        if line.startswith("BENCH "):
            results.update(json.loads(line[6:]))
    if err:
        tail = err.strip().splitlines()[-1:] or [""]
        print(f"# {framework} worker: {tail[0]}", file=sys.stderr)
    return results


def versions(smoke):
    """(GPU name, driver, versions line)."""
    import numpy

    vs = [f"Python {platform.python_version()}", f"NumPy {numpy.__version__}"]
    gpu, driver = "none (smoke run: numba CUDA simulator, CPU PyTorch)", "-"
    try:
        import numba

        vs.append(f"numba {numba.__version__}")
    except ImportError:
        pass
    try:
        from importlib.metadata import version

        vs.append(f"numba-cuda {version('numba-cuda')}")
    except Exception:  # noqa: BLE001 - not installed
        pass
    try:
        import torch

        vs.append(f"PyTorch {torch.__version__}")
        if not smoke:
            vs.append(f"cuDNN {torch.backends.cudnn.version()}")
    except ImportError:
        pass
    if not smoke:
        import cupy

        vs.append(f"CuPy {cupy.__version__}")
        rt = cupy.cuda.runtime
        props = rt.getDeviceProperties(0)
        name = props["name"]
        gpu = name.decode() if isinstance(name, bytes) else name
        d = rt.driverGetVersion()
        driver = f"CUDA driver API {d // 1000}.{d % 1000 // 10}"
        try:
            smi = subprocess.run(
                ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                capture_output=True,
                text=True,
                timeout=20,
            )
            if smi.returncode == 0 and smi.stdout.strip():
                driver = f"{smi.stdout.strip().splitlines()[0]} ({driver})"
        except (OSError, subprocess.TimeoutExpired):
            pass
    return gpu, driver, ", ".join(vs)


def _median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def _fmt(v, digits=2):
    if v is None:
        return "-"
    return f"{v:.{digits}f}"


def table(case_list, rounds):
    """Markdown table of medians over rounds: {fw: [results, ...]}."""
    rows = [
        "| case | caffepy ms | PyTorch ms | PyTorch / caffepy | caffepy MiB "
        "| PyTorch MiB | caffepy graph |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    for case in case_list:
        cid = case["id"]
        got = {fw: [r.get(cid, {}) for r in rounds[fw]] for fw in rounds}
        c = _median([r.get("ms") for r in got["caffepy"]])
        t = _median([r.get("ms") for r in got["torch"]])
        cm = _median([r.get("mem_mib") for r in got["caffepy"]])
        tm = _median([r.get("mem_mib") for r in got["torch"]])
        ratio = t / c if c and t else None
        graph = next((r["graph"] for r in got["caffepy"] if "graph" in r), "")
        skipped = [r["skipped"] for r in got["caffepy"] if "skipped" in r]
        if skipped:
            graph = f"not run ({skipped[0]})"
        elif not any(got["caffepy"]):
            graph = "caffepy failed"
        elif case["kind"] != "train":
            graph = "(forward only)"
        name = f"{case['kind']} {case['model']} b{case['batch']}"
        rows.append(
            f"| {name} | {_fmt(c)} | {_fmt(t)} | {_fmt(ratio)} | {_fmt(cm, 0)} "
            f"| {_fmt(tm, 0)} | {graph} |"
        )
    first = {}
    for fw in rounds:
        first[fw] = _median(
            [r.get(case_list[0]["id"], {}).get("first_iter_s") for r in rounds[fw]]
        )
    rows.append("")
    rows.append(
        f"Start to first training iteration ({case_list[0]['model']} "
        f"b{case_list[0]['batch']}, a fresh process): caffepy "
        f"{_fmt(first['caffepy'])} s, PyTorch {_fmt(first['torch'])} s."
    )
    return "\n".join(rows)


def write_readme(text):
    """Put ``text`` between the GPU section's markers in bench/README.md."""
    with open(README, encoding="utf-8") as f:
        doc = f.read()
    if BEGIN not in doc or END not in doc:
        raise SystemExit(f"bench/gpu.py: {README} has no {BEGIN} ... {END} block")
    head, rest = doc.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    with open(README, "w", encoding="utf-8") as f:
        f.write(f"{head}{BEGIN}\n{text}\n{END}{tail}")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer timed iterations")
    ap.add_argument("--rounds", type=int, default=1, help="runs of each worker")
    ap.add_argument(
        "--write-readme",
        action="store_true",
        help="also write the table into bench/README.md's GPU section",
    )
    ap.add_argument(
        "--smoke",
        action="store_true",
        help="run on the CPU (CUDA simulator, CPU PyTorch) to test the harness",
    )
    ap.add_argument(
        "--timeout", type=float, default=1800, help="seconds per worker run"
    )
    ap.add_argument(
        "--budget",
        type=float,
        default=None,
        help="seconds per worker run after which it starts no new case (the "
        "table shows '-' for the cases left)",
    )
    args = ap.parse_args(argv)
    if not args.smoke:
        why = unavailable()
        if why is not None:
            print(f"bench/gpu.py: skipped, {why}")
            return 0
    with tempfile.TemporaryDirectory(prefix="caffepy-gpu-bench-") as tmp:
        case_list = cases(tmp, args.quick, args.smoke)
        device = "cpu" if args.smoke else "cuda"
        spec = {"cases": case_list, "device": device, "budget": args.budget}
        rounds = {"caffepy": [], "torch": []}
        for r in range(max(1, args.rounds)):
            order = ("torch", "caffepy") if r % 2 else ("caffepy", "torch")
            for fw in order:
                rounds[fw].append(run_worker(fw, spec, args.smoke, args.timeout))
    gpu, driver, vs = versions(args.smoke)
    text = "\n".join(
        [
            f"GPU: {gpu}; driver: {driver}; {vs}; "
            f"{max(1, args.rounds)} round(s), {time.strftime('%Y-%m-%d')}.",
            "",
            table(case_list, rounds),
        ]
    )
    print(text)
    if args.write_readme:
        write_readme(text)
    ok = all(all(c["id"] in r for c in case_list) for fw in rounds for r in rounds[fw])
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
