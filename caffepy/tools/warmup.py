"""``caffepy warmup``: compile the common Numba kernels into the cache ahead of use.

Numba compiles each kernel the first time it runs and, with ``cache=True``,
keeps the machine code in its cache (``__pycache__`` beside the kernels, or
``NUMBA_CACHE_DIR``, or a user folder when the package folder is read-only).
A first ``caffepy train`` of LeNet otherwise spends most of its start compiling
(the fused convolution passes are the largest). Warming up runs each common
kernel once on tiny float32 inputs, through the layers that call them (so the
compiled signatures are the ones training uses), in several processes at once:
Numba compiles one function at a time per process.

Units (each one process's work): ``conv.backward``, ``conv.forward`` (the
im2col + GEMM passes), ``rows.backward``, ``rows.forward`` (the row-column
passes the backend picks for small images and wider layers),
``conv.forward1`` (batch 1: the deploy path spread over the threads),
``pool.max``, ``pool.ave``, ``solver`` (InnerProduct, ReLU, SoftmaxWithLoss
and the fused SGD update), ``data`` (the Data layer's transformation). With
``all``: also ``lrn``, ``batchnorm`` (BatchNorm and Scale), ``dropout``,
``eltwise``, ``winograd`` (3x3 convolutions over 64 channels or more).
"""

from __future__ import annotations

import collections
import logging
import os
import threading
import time
from concurrent.futures import as_completed

log = logging.getLogger(__name__)

#: The units a plain ``caffepy warmup`` compiles, the slowest first.
COMMON = (
    "conv.backward",
    "rows.backward",
    "conv.forward",
    "rows.forward",
    "conv.forward1",
    "pool.max",
    "solver",
    "pool.ave",
    "data",
)
#: What ``--all`` adds.
EXTRA = ("lrn", "batchnorm", "dropout", "eltwise", "winograd")


def _layer(text, bottoms, ntop=1):
    """A float32 layer set up on random bottoms of the given shapes."""
    import numpy as np

    from caffepy import TRAIN, Blob
    from caffepy.testing import layer_from_text

    gen = np.random.default_rng(0)
    layer = layer_from_text(text, TRAIN, np.float32)
    bottom = []
    for shape in bottoms:
        blob = Blob(shape, np.float32)
        blob.data[...] = gen.uniform(-1, 1, shape)
        bottom.append(blob)
    top = [Blob((1,), np.float32) for _ in range(ntop)]
    layer.SetUp(bottom, top)
    return layer, bottom, top


def _forward_backward(layer, bottom, top, forward=True, backward=True):
    if forward:
        layer.Forward(bottom, top)
    if backward:
        for t in top:
            t.diff[...] = 1
        layer.Backward(top, [True] * len(bottom), bottom)


_CONV = (
    'type: "Convolution" convolution_param { num_output: 4 kernel_size: 5 '
    'weight_filler { type: "xavier" } }'
)


_WINOGRAD = (
    'type: "Convolution" convolution_param { num_output: 64 kernel_size: 3 '
    'pad: 1 weight_filler { type: "xavier" } }'
)


def _conv(shape, forward, backward):
    _forward_backward(*_layer(_CONV, [shape]), forward, backward)


def _pool(method):
    text = (
        f'type: "Pooling" pooling_param {{ pool: {method} kernel_size: 2 stride: 2 }}'
    )
    _forward_backward(*_layer(text, [(2, 2, 6, 6)]))


def _solver():
    from google.protobuf import text_format

    import caffepy
    from caffepy.proto import caffe_pb2

    param = text_format.Parse(
        """
        type: "SGD" base_lr: 0.01 momentum: 0.9 weight_decay: 0.0005
        lr_policy: "inv" gamma: 0.0001 power: 0.75 max_iter: 1 display: 0
        snapshot_after_train: false
        net_param {
          layer { name: "in" type: "Input" top: "x" top: "y"
                  input_param { shape { dim: 4 dim: 6 } shape { dim: 4 } } }
          layer { name: "ip1" type: "InnerProduct" bottom: "x" top: "h"
                  inner_product_param { num_output: 5
                                        weight_filler { type: "xavier" } } }
          layer { name: "relu" type: "ReLU" bottom: "h" top: "h" }
          layer { name: "ip2" type: "InnerProduct" bottom: "h" top: "z"
                  inner_product_param { num_output: 3
                                        weight_filler { type: "xavier" } } }
          layer { name: "loss" type: "SoftmaxWithLoss" bottom: "z" bottom: "y"
                  top: "loss" }
        }
        """,
        caffe_pb2.SolverParameter(),
    )
    quiet = logging.getLogger("caffepy")
    level = quiet.level
    quiet.setLevel(logging.WARNING)  # not this stand-in solver's set-up lines
    try:
        solver = caffepy.get_solver(param)
        solver.net.blobs["x"].data[...] = 0.5
        solver.net.blobs["y"].data[...] = [0, 1, 2, 1]
        solver.step(1)
    finally:
        quiet.setLevel(level)


def _data():
    import numpy as np

    from caffepy import TRAIN
    from caffepy.data.datum import RawBatchParser, array_to_datum
    from caffepy.data.transformer import DataTransformer
    from caffepy.proto import caffe_pb2

    # NOTE: the Data layer's own path: records parsed in a batch, then the
    # transformation from the joined bytes (uint8) into float32.
    values = [
        array_to_datum(np.zeros((1, 4, 4), np.uint8), i).SerializeToString()
        for i in range(2)
    ]
    buf, offsets, _, shape = RawBatchParser().parse(values)
    param = caffe_pb2.TransformationParameter(scale=0.5)
    tr = DataTransformer(param, TRAIN, rng=np.random.default_rng(0))
    tr.transform_flat(buf, offsets, shape)
    tr.transform(np.zeros((2, 1, 4, 4), np.uint8))


def _eltwise_relu():
    """An Eltwise SUM and the in-place ReLU after it, as a Net runs them."""
    import numpy as np

    from caffepy import TRAIN, Blob
    from caffepy.testing import layer_from_text

    a, b, y = (Blob((2, 3, 4, 4), np.float32) for _ in range(3))
    sum_, relu = (
        layer_from_text(f'type: "{kind}"', TRAIN, np.float32)
        for kind in ("Eltwise", "ReLU")
    )
    sum_.SetUp([a, b], [y])
    relu.SetUp([y], [y])
    sum_.forward_fused(relu, [a, b], [y])


def _run_unit(name):
    """Compile one unit's kernels (in this process); returns (name, seconds)."""
    t = time.perf_counter()
    # NOTE: the CPU backend chooses the convolution kernel by shape: one
    # channel over 40x40 runs on kernels/conv.py (few rows, a larger image),
    # LeNet's convolutions on kernels/conv_rows.py, and a batch of one over the
    # threads on conv.py's wide pass (one channel) or conv_rows in bands.
    if name == "conv.forward":
        _conv((2, 1, 40, 40), True, False)
    elif name == "conv.backward":
        _conv((2, 1, 40, 40), False, True)
    elif name == "rows.forward":
        _conv((2, 20, 12, 12), True, False)
    elif name == "rows.backward":
        _conv((2, 20, 12, 12), False, True)
    elif name == "conv.forward1":
        _conv((1, 1, 28, 28), True, False)
    elif name == "winograd":
        _forward_backward(*_layer(_WINOGRAD, [(1, 64, 12, 12)]), True, False)
    elif name == "pool.max":
        _pool("MAX")
    elif name == "pool.ave":
        _pool("AVE")
    elif name == "solver":
        _solver()
        # NOTE: the stand-in net's ReLU runs fused into its InnerProduct; a ReLU
        # after a pooling (CIFAR10-quick) or an Eltwise runs on its own kernel
        _forward_backward(*_layer('type: "ReLU"', [(2, 3)]))
    elif name == "data":
        _data()
    elif name == "lrn":
        for region in ("ACROSS_CHANNELS", "WITHIN_CHANNEL"):
            text = f'type: "LRN" lrn_param {{ local_size: 3 norm_region: {region} }}'
            _forward_backward(*_layer(text, [(2, 4, 5, 5)]))
    elif name == "batchnorm":
        _forward_backward(*_layer('type: "BatchNorm"', [(2, 3, 4, 4)]))
        _forward_backward(
            *_layer('type: "Scale" scale_param { bias_term: true }', [(2, 3, 4, 4)])
        )
    elif name == "dropout":
        _forward_backward(*_layer('type: "Dropout"', [(2, 3, 4, 4)]))
    elif name == "eltwise":
        _forward_backward(*_layer('type: "Eltwise"', [(2, 3, 4, 4)] * 2))
        _eltwise_relu()
    else:
        raise ValueError(f"unknown warmup unit {name!r}")
    return name, time.perf_counter() - t


def _worker(name, threads):
    if threads:
        from caffepy.kernels.config import set_num_threads

        set_num_threads(threads)
    return _run_unit(name)


def warmup(units=COMMON, jobs=None, threads=None, log=None, here=False):
    """Compile the kernels of ``units`` into Numba's cache.

    Args:
        units: unit names (:data:`COMMON`, :data:`EXTRA`).
        jobs: processes compiling at once (default: one per core, at most the
            number of units); 1 compiles in this process.
        threads: the kernel threads of each process (default: Numba's, all
            cores); a thread count above 1 is what selects the batch-1
            convolution of ``conv.forward1``.
        log: a function called with one line per unit done, or None.
        here: this process is one of the ``jobs``: it compiles units too (they
            are then loaded here already), and a unit that fails in a helper
            process is left to be compiled on first use instead of raising.

    Returns:
        dict: ``seconds`` (wall time), ``units`` (name -> seconds in its
        process) and ``cache`` (where Numba keeps them, when known).
    """
    units = list(dict.fromkeys(units))
    jobs = max(1, min(int(jobs or cpu_count()), len(units) or 1))
    t = time.perf_counter()
    done = {}

    def record(name, seconds):
        done[name] = seconds
        if log:
            log(f"{name}: {seconds:.1f} s")

    if jobs == 1:
        for name in units:
            record(*_worker(name, threads))
    elif here:
        _share(units, jobs, threads, record)
    else:
        with _processes(jobs) as pool:
            futures = [pool.submit(_worker, name, threads) for name in units]
            for future in as_completed(futures):
                record(*future.result())
    return {
        "seconds": time.perf_counter() - t,
        "units": done,
        "cache": cache_dir(),
    }


def cpu_count():
    """The cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def _processes(jobs):
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    # NOTE: fresh interpreters (spawn), not forks of a process whose OpenMP
    # threads may already run.
    return ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn"))


def _share(units, jobs, threads, record):
    """Compile ``units`` here and in ``jobs - 1`` helper processes, each taking
    the next unit as it finishes one (the list's order: the slowest first)."""
    pending = collections.deque(units)
    lock = threading.Condition()
    busy = [0]

    def take():
        with lock:
            return pending.popleft() if pending else None

    with _processes(jobs - 1) as pool:

        def feed(future=None):
            if future is not None:
                try:
                    record(*future.result())
                except Exception as exc:  # noqa: BLE001 - compiled on first use
                    log.debug("warmup unit failed in a helper process: %s", exc)
                with lock:
                    busy[0] -= 1
                    lock.notify_all()
            name = take()
            if name is not None:
                with lock:
                    busy[0] += 1
                try:
                    pool.submit(_worker, name, threads).add_done_callback(feed)
                except RuntimeError:  # the pool shut down after a helper died
                    with lock:
                        busy[0] -= 1
                        pending.appendleft(name)
                        lock.notify_all()

        for _ in range(jobs - 1):
            feed()
        while True:
            name = take()
            if name is None:
                with lock:
                    while busy[0] and not pending:
                        lock.wait()
                    if not pending:
                        break
                continue
            record(*_run_unit(name))


#: Every unit, about the slowest to compile first (measured on 2 cores).
_SLOWEST_FIRST = (
    "conv.backward",
    "rows.backward",
    "solver",
    "conv.forward",
    "conv.forward1",
    "pool.max",
    "rows.forward",
    "winograd",
    "lrn",
    "batchnorm",
    "pool.ave",
    "eltwise",
    "dropout",
    "data",
)
#: Training layers' units (beyond the convolutions, chosen by their shapes).
_LAYER_UNITS = {
    "LRN": "lrn",
    "BatchNorm": "batchnorm",
    "Scale": "batchnorm",
    "Dropout": "dropout",
    "Eltwise": "eltwise",
}


def units_for(net, backward=True):
    """The units whose kernels a CPU pass of ``net`` (a built Net) runs, the
    slowest first: what a first run compiles ahead in parallel."""
    from caffepy.backend.cpu.conv import kernel_paths
    from caffepy.proto import caffe_pb2

    pool = caffe_pb2.PoolingParameter
    found = set()
    for layer, need in zip(net.layers, net.layer_need_backward, strict=False):
        kind = layer.type
        if kind == "Convolution" and getattr(layer, "geom", None) is not None:
            fwd, bwd = kernel_paths(layer.geom)
            one = "1" if layer.geom.num == 1 else ""
            if fwd == "rows":
                found.add("rows.forward")  # one image in bands: the same task
            elif fwd == "winograd":
                found.add("winograd")
            elif fwd == "fused":
                found.add("conv.forward" + one)
            if backward and need and bwd in ("rows", "fused"):
                found.add(("rows" if bwd == "rows" else "conv") + ".backward")
        elif kind == "Pooling":
            method = layer.layer_param.pooling_param.pool
            if method in (pool.MAX, pool.AVE):
                found.add("pool.max" if method == pool.MAX else "pool.ave")
        elif kind in ("InnerProduct", "ReLU", "Softmax", "SoftmaxWithLoss"):
            found.add("solver")
        elif kind in ("Data", "ImageData"):
            found.add("data")
        elif kind in _LAYER_UNITS:
            found.add(_LAYER_UNITS[kind])
    return [u for u in _SLOWEST_FIRST if u in found]


#: One kernel per unit whose cache entry tells whether the unit is compiled.
_PROBES = {
    "conv.backward": ("conv", "_backward_task"),
    "conv.forward": ("conv", "_forward_task"),
    "conv.forward1": ("conv", "_wide_gemm_task"),
    "rows.backward": ("conv_rows", "_backward_task"),
    "rows.forward": ("conv_rows", "_forward_task"),
    "winograd": ("winograd", "_input_task"),
    "pool.max": ("pooling", "_max_forward_task"),
    "pool.ave": ("pooling", "_ave_forward_task"),
    "solver": ("inner_product", "_forward_task"),
    "data": ("data", "transform_batch"),
    "lrn": ("lrn", "lrn_across_forward"),
    "batchnorm": ("normalization", "bn_forward_train"),
    "dropout": ("neuron", "masked_scale"),
    "eltwise": ("neuron", "axpby"),
}


def kernels_cached(units=("conv.backward",)):
    """Whether Numba's cache holds the kernels of ``units`` compiled for this
    machine and this source: True, False, or None when it cannot tell. Reads
    one small index file per unit (the unit's largest kernel)."""
    import importlib

    try:
        for unit in units:
            module, name = _PROBES[unit]
            kernel = getattr(importlib.import_module(f"caffepy.kernels.{module}"), name)
            cache = kernel._cache
            index = cache._cache_file._load_index()
            _, magic, code = cache._index_key(None, kernel.targetctx.codegen())
            if not any(key[1:] == (magic, code) for key in index):
                return False
    except Exception:  # pragma: no cover - Numba internals changed
        return None
    return True


def cache_dir():
    """Where Numba caches caffepy's kernels (the folder of one kernel's index)."""
    from caffepy.kernels import data

    try:
        cache = data.transform_batch._cache
        return cache._cache_path
    except AttributeError:  # pragma: no cover - Numba internals changed
        return None
