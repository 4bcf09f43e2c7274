"""Run an exported model in ONNX Runtime beside caffepy's forward and compare.

The inputs are seeded random numbers of the net's input shapes (standard
normal; indices in range for a blob an Embed layer reads). Each graph output
that is a blob of the net is compared element by element: the largest absolute
difference, and the largest difference relative to ``max(1, |caffepy|)``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from caffepy.errors import CaffepyError

#: The seed of the random inputs.
SEED = 1701


def import_onnxruntime() -> Any:
    """The ``onnxruntime`` module, or a one-line error saying how to install it."""
    try:
        import onnxruntime
    except ImportError:
        raise CaffepyError(
            "--check runs the model in ONNX Runtime: pip install 'caffepy[onnx]'"
        ) from None
    return onnxruntime


def session(model: Any) -> Any:
    """An ONNX Runtime CPU session of ``model`` (a ModelProto, bytes or path)."""
    ort = import_onnxruntime()
    if hasattr(model, "SerializeToString"):
        model = model.SerializeToString()
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    return ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"])


def random_inputs(net: Any, names: list[str], seed: int = SEED) -> dict[str, Any]:
    """Random arrays for the net's input blobs ``names`` (their current shapes)."""
    rng = np.random.default_rng(seed)
    index_range = {}
    for lp in net.layer_param:
        if lp.type == "Embed":
            index_range[lp.bottom[0]] = int(lp.embed_param.input_dim)
    feeds = {}
    for name in names:
        shape = net.blobs[name].shape
        if name in index_range:
            arr = rng.integers(0, index_range[name], size=shape).astype(np.float32)
        else:
            arr = rng.standard_normal(shape).astype(np.float32)
        feeds[name] = arr
    return feeds


def differences(got: np.ndarray, want: np.ndarray) -> tuple[float, float]:
    """(max abs difference, max difference relative to max(1, |want|))."""
    got = np.asarray(got, np.float64).reshape(np.shape(want))
    want = np.asarray(want, np.float64)
    if not want.size:
        return 0.0, 0.0
    diff = np.abs(got - want)
    return float(diff.max()), float((diff / np.maximum(1.0, np.abs(want))).max())


def compare_with_caffepy(
    model: Any, net: Any, seed: int = SEED
) -> list[tuple[str, float, float]]:
    """Run ``model`` in ONNX Runtime and ``net`` in caffepy on the same random
    inputs; (output, max abs diff, max relative diff) per output the net has."""
    sess = session(model)
    names = [i.name for i in sess.get_inputs()]
    feeds = random_inputs(net, names, seed)
    outs = [o.name for o in sess.get_outputs()]
    results = dict(zip(outs, sess.run(outs, feeds)))
    for name, arr in feeds.items():
        net.blobs[name].data[...] = arr
    net.forward()
    return [
        (name, *differences(results[name], net.blobs[name].data))
        for name in outs
        if name in net.blobs
    ]
