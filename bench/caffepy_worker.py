"""caffepy side of ``make bench``: one case per process, results as a JSON line.

    python bench/caffepy_worker.py CASE --threads N --spec JSON

Cases: ``train`` (a solver's iterations/s and the process's peak RSS: LeNet
through its Data layer, the other nets on a fixed random batch in Input
layers), ``nets`` (forward / forward+backward ms of prepared nets), ``data``
(Data layer images/s), ``convert`` (convert_imageset images/s).
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import (  # noqa: E402
    REPO,
    cpu_ratio,
    emit,
    measure,
    peak_rss_mib,
    random_batch,
    worker_args,
)

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


def make_solver(spec):
    """The solver of ``spec["solver"]``, timed as it trains: no test nets,
    snapshots or display, ``iter_size`` 1 (one forward+backward per update).
    With ``spec["file"]`` it trains that prepared net (Input layers), whose
    inputs are filled once with :func:`common.random_batch`; without, the
    solver's own net (LeNet with its Data layer)."""
    import caffepy
    from caffepy.solvers import read_solver_param

    param, _ = read_solver_param(os.path.join(REPO, spec["solver"]))
    if spec.get("file"):
        for field in ("train_net", "net_param", "train_net_param"):
            param.ClearField(field)
        param.net = spec["file"]
    for field in ("test_net", "test_net_param", "test_iter", "test_state"):
        param.ClearField(field)
    param.test_interval = 10**9
    param.test_initialization = False
    param.display = 0
    param.snapshot = 0
    param.snapshot_after_train = False
    param.iter_size = 1
    # as `caffepy train` builds it (inner gradients share memory)
    solver = caffepy.get_solver(
        param, dtype=spec.get("dtype", "float32"), share_diffs=True
    )
    if spec.get("file"):
        for name, value in random_batch(spec["inputs"], spec.get("seed", 0)).items():
            solver.net.blobs[name].data[...] = value
    return solver


def case_train(spec):
    """Training iterations/s: solver.step in blocks, median block rate."""
    import statistics
    import time

    solver = make_solver(spec)
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


def _time_net(item):
    import caffepy

    phase = caffepy.TRAIN if item["backward"] else caffepy.TEST
    net = caffepy.Net(item["file"], phase)
    _fill_deploy(net)
    for name, value in random_batch(item["inputs"]).items():
        net.blobs[name].data[...] = value
    reps, seconds = item.get("reps", 5), item.get("seconds", 1.0)
    warmup = item.get("warmup", 2)
    out = {}
    out["fwd"], out["cpu_ratio"] = cpu_ratio(
        lambda: measure(net.forward_prefilled, reps, seconds, warmup)
    )
    if item["backward"]:

        def fb():
            net.clear_param_diffs()
            net.forward_backward()

        out["fb"] = measure(fb, reps, seconds, warmup)
    net.close()
    return out


def case_nets(spec):
    """Forward and forward+backward ms of each prepared net (median of calls)."""
    out = {}
    for item in spec["nets"]:
        for key, value in _time_net(item).items():
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
