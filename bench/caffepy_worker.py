"""caffepy side of ``make bench``: one case per process, results as a JSON line.

    python bench/caffepy_worker.py CASE --threads N --spec JSON

Cases: ``train`` (LeNet solver iterations/s through the Data layer, peak RSS),
``nets`` (forward / forward+backward ms of prepared nets), ``data`` (Data layer
images/s), ``convert`` (convert_imageset images/s), ``first_iter`` (exits after
the first training iteration; the driver times the process).
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import REPO, cpu_ratio, emit, measure, peak_rss_mib, worker_args  # noqa: E402

sys.path.insert(0, REPO)


def _threads(n):
    from caffepy.kernels.config import set_num_threads

    set_num_threads(n)
    import numba
    from threadpoolctl import threadpool_info

    blas = max(
        [i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"] or [0]
    )
    return {"numba_threads": numba.get_num_threads(), "blas_threads": blas}


def _solver(spec, max_iter=10**9):
    import caffepy
    from caffepy.solvers import read_solver_param

    param, _ = read_solver_param(os.path.join(REPO, spec["solver"]))
    param.test_interval = 10**9
    param.test_initialization = False
    param.display = 0
    param.snapshot = 0
    param.snapshot_after_train = False
    param.max_iter = max_iter
    return caffepy.get_solver(param)


def case_train(spec):
    """Training iterations/s: solver.step in blocks, median block rate."""
    import statistics
    import time

    solver = _solver(spec)
    solver.step(spec.get("warmup", 20))
    block, rates = spec.get("block", 25), []

    def run():
        for _ in range(spec.get("blocks", 6)):
            t = time.perf_counter()
            solver.step(block)
            rates.append(block / (time.perf_counter() - t))

    _, ratio = cpu_ratio(run)
    return {
        "it_s": statistics.median(rates),
        "cpu_ratio": ratio,
        "rss_mib": peak_rss_mib(),
    }


def _fill_deploy(net):
    """BatchNorm statistics of a net without weights: mean 0, variance 1."""
    for layer in net.layers:
        if layer.type == "BatchNorm":
            layer.blobs[0].data[...] = 0
            layer.blobs[1].data[...] = 1
            layer.blobs[2].data[...] = 1


def _time_net(item, rng):
    import caffepy

    phase = caffepy.TRAIN if item["backward"] else caffepy.TEST
    net = caffepy.Net(item["file"], phase)
    _fill_deploy(net)
    for name, shape in item["inputs"].items():
        if len(shape) == 1:
            net.blobs[name].data[...] = rng.integers(0, 10, shape)
        else:
            net.blobs[name].data[...] = rng.standard_normal(shape)
    reps, seconds = item.get("reps", 5), item.get("seconds", 1.0)
    out = {}
    out["fwd"], out["cpu_ratio"] = cpu_ratio(
        lambda: measure(net.forward_prefilled, reps, seconds)
    )
    if item["backward"]:

        def fb():
            net.clear_param_diffs()
            net.forward_backward()

        out["fb"] = measure(fb, reps, seconds)
    return out


def case_nets(spec):
    """Forward and forward+backward ms of each prepared net (median of calls)."""
    import numpy as np

    rng = np.random.default_rng(0)
    out = {}
    for item in spec["nets"]:
        for key, value in _time_net(item, rng).items():
            out[f"{item['name']}.{key}"] = value
    return out


def case_data(spec):
    """Data layer images/s: forwards of the LeNet train net's Data layer alone."""
    import time

    import caffepy
    from caffepy.io.prototxt import read_net

    param = read_net(os.path.join(REPO, spec["net"]))
    keep = [
        lp
        for lp in param.layer
        if lp.type == "Data" and any(r.phase == caffepy.TRAIN for r in lp.include)
    ]
    del param.layer[:]
    param.layer.add().CopyFrom(keep[0])
    net = caffepy.Net(param=param, phase=caffepy.TRAIN)
    batch = net.blobs["data"].shape[0]
    n = spec.get("batches", 300)
    for _ in range(5):
        net.forward_prefilled()
    t = time.perf_counter()
    for _ in range(n):
        net.forward_prefilled()
    return {"images_s": n * batch / (time.perf_counter() - t)}


def case_convert(spec):
    """convert_imageset images/s on a folder of PNGs."""
    import shutil
    import tempfile
    import time

    from caffepy.tools.convert_imageset import convert_imageset

    tmp = tempfile.mkdtemp(prefix="caffepy-bench-db-")
    try:
        t = time.perf_counter()
        stats = convert_imageset(
            spec["root"],
            spec["list"],
            os.path.join(tmp, "db"),
            gray=True,
            progress=False,
        )
        dt = time.perf_counter() - t
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return {"images_s": stats["written"] / dt}


def main():
    args = worker_args()
    info = _threads(args.threads)
    os.chdir(REPO)
    result = globals()["case_" + args.case](args.spec)
    result.update(info)
    emit(result)


if __name__ == "__main__":
    main()
