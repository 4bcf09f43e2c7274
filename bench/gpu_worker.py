"""One framework's side of ``bench/gpu.py``: every case in one process (numba
compiles its kernels once), results as JSON lines.

    python bench/gpu_worker.py caffepy|torch --spec JSON

The spec holds ``t0`` (the driver's ``time.time()`` at launch), ``device``
(``cuda`` or ``cpu`` for the smoke run), ``budget`` (seconds after which no new
case starts, or None) and ``cases``: ``train`` (SGD
iterations on a prepared TRAIN net, a host batch copied in each iteration) and
``deploy`` (forward of a prepared TEST net). Each case reports the median ms of
its timed blocks and the peak device memory in MiB.
"""

import argparse
import gc
import json
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import REPO, emit, random_batch, read_net  # noqa: E402

sys.path.insert(0, REPO)


def _within_budget(spec):
    """The cases, until ``budget`` seconds have passed since the launch."""
    budget = spec.get("budget")
    for case in spec["cases"]:
        if budget is not None and time.time() - spec["t0"] > budget:
            emit({case["id"]: {"skipped": f"out of the {budget:g} s budget"}})
            continue
        yield case


def _blocks(step, sync, case):
    """Median ms per iteration over ``blocks`` blocks of ``iters`` iterations."""
    step(case.get("warmup", 2))
    sync()
    times = []
    for _ in range(case.get("blocks", 3)):
        t = time.perf_counter()
        step(case.get("iters", 5))
        sync()
        times.append((time.perf_counter() - t) * 1e3 / case.get("iters", 5))
    return statistics.median(times)


# -- caffepy ----------------------------------------------------------------------------
def _caffepy_solver(case):
    from google.protobuf import text_format

    import caffepy
    from caffepy.proto import caffe_pb2

    sp = caffe_pb2.SolverParameter()
    text_format.Merge(
        'type: "SGD" base_lr: 0.001 lr_policy: "fixed" momentum: 0.9 '
        "weight_decay: 0.0005 display: 0 max_iter: 1000000000 snapshot: 0 "
        "snapshot_after_train: false random_seed: 1",
        sp,
    )
    sp.net_param.CopyFrom(read_net(case["file"]))
    solver = caffepy.get_solver(sp)
    batches = [random_batch(case["inputs"], seed) for seed in range(2)]
    layer = solver.net.layers[0]
    state = {"i": 0}

    def forward(bottom, top):
        # the prefetched host batch, copied into the input blobs' fixed buffers
        batch = batches[state["i"] % len(batches)]
        state["i"] += 1
        for name, blob in zip(layer.layer_param.top, top):
            blob.data[...] = batch[name]
        return 0.0

    layer.Forward = forward
    return solver


def _caffepy_pool_mib():
    from caffepy.backend.cuda import memory

    if memory.simulated():
        return None
    import cupy

    total = cupy.get_default_memory_pool().total_bytes()
    return total / 2**20


def _caffepy_reset_pool():
    gc.collect()
    from caffepy.backend.cuda import memory

    if not memory.simulated():
        import cupy

        cupy.get_default_memory_pool().free_all_blocks()


def caffepy_case(case, first):
    import caffepy
    from caffepy.backend import mode
    from caffepy.backend.cuda import graph

    ops = mode.ops()
    out = {}
    _caffepy_reset_pool()
    if case["kind"] == "train":
        solver = _caffepy_solver(case)
        if first is not None:
            solver.step(1)
            ops.synchronize()
            out["first_iter_s"] = time.time() - first
        out["ms"] = _blocks(solver.step, ops.synchronize, case)
        g = graph.graph_of(solver)
        if g is not None and g.replays:
            out["graph"] = "yes"
        else:
            why = (
                g.reasons()
                if g is not None
                else graph.blockers(solver, graph.CupyGraphs.unavailable())
            )
            out["graph"] = "no: " + "; ".join(why)[:80]
        pool = _caffepy_pool_mib()
        if g is not None and getattr(g.backend, "pool", None) is not None:
            pool = (pool or 0) + g.backend.pool.total_bytes() / 2**20
        out["mem_mib"] = pool
    else:
        net = caffepy.Net(case["file"], caffepy.TEST)
        for layer in net.layers:
            if layer.type == "BatchNorm":
                layer.blobs[0].data[...] = 0
                layer.blobs[1].data[...] = 1
                layer.blobs[2].data[...] = 1
        for name, value in random_batch(case["inputs"]).items():
            net.blobs[name].data[...] = value

        def fwd(n):
            for _ in range(n):
                net.forward_prefilled()

        out["ms"] = _blocks(fwd, ops.synchronize, case)
        out["mem_mib"] = _caffepy_pool_mib()
    return out


def caffepy_main(spec):
    import caffepy

    caffepy.set_device(0)
    caffepy.set_mode_gpu()
    for i, case in enumerate(_within_budget(spec)):
        emit({case["id"]: caffepy_case(case, spec["t0"] if i == 0 else None)})


# -- PyTorch ----------------------------------------------------------------------------
def torch_case(case, first, dev):
    import torch
    from torch_net import TorchNet

    cuda = dev.type == "cuda"

    def sync():
        if cuda:
            torch.cuda.synchronize()

    gc.collect()
    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    # NOTE: built under the device so that the tensors the layers close over
    # (BatchNorm's statistics) live there too.
    with dev:
        model = TorchNet(read_net(case["file"]), case["inputs"])
    batches = [
        {k: torch.from_numpy(v) for k, v in random_batch(case["inputs"], s).items()}
        for s in range(2)
    ]
    out = {}
    if case["kind"] == "train":
        model.train()
        opt = torch.optim.SGD(model.param_groups(0.001, 0.0005), lr=0.001, momentum=0.9)
        state = {"i": 0}

        def step(n):
            for _ in range(n):
                host = batches[state["i"] % 2]
                state["i"] += 1
                feed = {k: v.to(dev) for k, v in host.items()}
                opt.zero_grad(set_to_none=False)
                model.loss(model(**feed)).backward()
                opt.step()

        if first is not None:
            step(1)
            sync()
            out["first_iter_s"] = time.time() - first
        out["ms"] = _blocks(step, sync, case)
    else:
        model.eval()
        feed = {k: v.to(dev) for k, v in batches[0].items()}

        def fwd(n):
            with torch.no_grad():
                for _ in range(n):
                    model(**feed)

        out["ms"] = _blocks(fwd, sync, case)
    if cuda:
        out["mem_mib"] = torch.cuda.max_memory_reserved() / 2**20
        out["alloc_mib"] = torch.cuda.max_memory_allocated() / 2**20
    return out


def torch_main(spec):
    import torch

    dev = torch.device(spec.get("device", "cuda"))
    if dev.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = False  # fp32, as caffepy
        torch.backends.cudnn.allow_tf32 = False
    for i, case in enumerate(_within_budget(spec)):
        emit({case["id"]: torch_case(case, spec["t0"] if i == 0 else None, dev)})


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("framework", choices=("caffepy", "torch"))
    ap.add_argument("--spec", required=True, help="JSON: t0, device, cases")
    args = ap.parse_args(argv)
    spec = json.loads(args.spec)
    (caffepy_main if args.framework == "caffepy" else torch_main)(spec)


if __name__ == "__main__":
    main()
