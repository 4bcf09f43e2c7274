"""Shared by the benchmark driver and its two workers (caffepy, PyTorch).

The driver writes every net a worker times as a prototxt of one phase
(:func:`prepare_net`), so caffepy and the PyTorch translation read the same
file: Data layers become Input layers of the same shapes, layers of the other
phase are dropped, the batch size is set, and deploy nets without fillers get
He (msra) weights so both frameworks compute on the same kind of numbers.
"""

import json
import os
import statistics
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

#: image shape (C, H, W) of each model's Data layer (after its crop)
DATA_SHAPES = {
    "lenet": (1, 28, 28),
    "cifar10_quick": (3, 32, 32),
    "cifar10_full": (3, 32, 32),
    "caffenet": (3, 227, 227),
    "googlenet": (3, 224, 224),
    "vgg16": (3, 224, 224),
    "resnet50": (3, 224, 224),
}


def _pb2():
    # NOTE: importing caffepy sets OPENBLAS_THREAD_TIMEOUT (for caffepy's own
    # BLAS); the PyTorch worker must run with PyTorch's defaults, so the
    # environment is restored after the import.
    saved = dict(os.environ)
    if REPO not in sys.path:
        sys.path.insert(0, REPO)
    from caffepy.proto import caffe_pb2

    os.environ.clear()
    os.environ.update(saved)
    return caffe_pb2


def read_net(path):
    from google.protobuf import text_format

    param = _pb2().NetParameter()
    with open(path, encoding="utf-8") as f:
        text_format.Merge(f.read(), param)
    return param


def _in_phase(lp, phase):
    if lp.include:
        return any(r.phase == phase for r in lp.include if r.HasField("phase"))
    return not any(r.HasField("phase") and r.phase == phase for r in lp.exclude)


def prepare_net(src, dst, batch, phase=0, image_shape=None, dropout_ratio=None):
    """Write ``src`` as a ``phase``-only net with Input layers of batch ``batch``.

    Args:
        src: a train_val or deploy prototxt.
        dst: where to write the prepared prototxt.
        batch: the batch size (first dimension of every input).
        phase: 0 TRAIN (keeps the loss), 1 TEST.
        image_shape: (C, H, W) of a Data layer's images (train_val nets).
        dropout_ratio: replaces every Dropout layer's ratio (0 for the
            translation check, which needs the same numbers in both frameworks).

    Returns:
        dict input name -> shape, for the workers.
    """
    from google.protobuf import text_format

    pb2 = _pb2()
    param = read_net(src)
    out = pb2.NetParameter()
    out.name = param.name
    shapes = {}
    for lp in param.layer:
        if not _in_phase(lp, phase):
            continue
        if lp.type in ("Data", "ImageData"):
            layer = out.layer.add(name=lp.name, type="Input", top=list(lp.top))
            dims = [(batch,) + tuple(image_shape), (batch,)][: len(lp.top)]
            for d in dims:
                layer.input_param.shape.add(dim=list(d))
            shapes.update(zip(lp.top, dims))
            continue
        layer = out.layer.add()
        layer.CopyFrom(lp)
        del layer.include[:]
        del layer.exclude[:]
        if lp.type == "Dropout" and dropout_ratio is not None:
            layer.dropout_param.dropout_ratio = dropout_ratio
        if lp.type == "Input":
            for s, name in zip(layer.input_param.shape, lp.top):
                s.dim[0] = batch
                shapes[name] = tuple(s.dim)
        for field in ("convolution_param", "inner_product_param"):
            if lp.type in ("Convolution", "InnerProduct") and lp.HasField(field):
                p = getattr(layer, field)
                if not p.HasField("weight_filler"):
                    p.weight_filler.type = "msra"
    with open(dst, "w", encoding="utf-8") as f:
        f.write(text_format.MessageToString(out))
    return shapes


def random_batch(inputs, seed=0, dtype="float32"):
    """A fixed random batch for a net's inputs ({name: shape}): N(0, 1) images,
    integer labels in 0..9 (valid for every benchmarked net), as float32 (or
    ``dtype``) arrays. Both workers feed these same numbers."""
    import numpy as np

    rng = np.random.default_rng(seed)
    out = {}
    for name, shape in inputs.items():
        if len(shape) == 1:
            out[name] = rng.integers(0, 10, shape).astype(dtype)
        else:
            out[name] = rng.standard_normal(shape, dtype=np.float32).astype(dtype)
    return out


def measure(fn, min_reps=5, min_seconds=1.0, warmup=2):
    """Median wall time of ``fn()`` in ms over at least ``min_reps`` calls and
    ``min_seconds`` (after ``warmup`` calls)."""
    for _ in range(warmup):
        fn()
    times = []
    start = time.perf_counter()
    while len(times) < min_reps or time.perf_counter() - start < min_seconds:
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
        if len(times) >= 200:
            break
    return statistics.median(times) * 1e3


def cpu_ratio(fn):
    """(result of fn(), CPU seconds / wall seconds while it ran): ~1 with one thread."""
    t0, c0 = time.perf_counter(), time.process_time()
    result = fn()
    wall = time.perf_counter() - t0
    return result, (time.process_time() - c0) / max(wall, 1e-9)


def peak_rss_mib():
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def emit(results):
    """Hand results to the driver: one JSON line on stdout."""
    print("BENCH " + json.dumps(results), flush=True)


def worker_args(argv=None):
    import argparse

    ap = argparse.ArgumentParser()
    ap.add_argument("case")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--spec", default="{}", help="JSON parameters of the case")
    args = ap.parse_args(argv)
    args.spec = json.loads(args.spec)
    return args
