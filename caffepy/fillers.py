"""Weight fillers: constant, uniform, gaussian (+sparse), xavier, msra,
positive_unitball, bilinear — Caffe's ``FillerParameter`` types.

For a blob of shape (N, C, ...), ``fan_in = count / N`` and
``fan_out = count / C`` (Caffe's convention for conv and InnerProduct weights).

=================  ==========================================================
type               draws
=================  ==========================================================
constant           ``value``
uniform            U(min, max)
gaussian           N(mean, std²); with ``sparse >= 0`` each weight is kept
                   with probability sparse / N, else 0
xavier             U(-a, a), a = sqrt(3 / n)
msra               N(0, 2 / n)
positive_unitball  U(0, 1), each of the N rows normalised to sum 1
bilinear           a bilinear up-sampling kernel (for Deconvolution)
=================  ==========================================================

n is fan_in, fan_out or their mean by ``variance_norm`` (default FAN_IN).
Random numbers come from :mod:`caffepy.rng`.
"""

import math

import numpy as np

from caffepy import rng as _rng
from caffepy.errors import CaffepyError, LayerError, did_you_mean

FILLERS = (
    "constant",
    "uniform",
    "gaussian",
    "xavier",
    "msra",
    "positive_unitball",
    "bilinear",
)


def _fans(shape):
    count = int(np.prod(shape)) if shape else 1
    fan_in = count / shape[0] if shape else count
    fan_out = count / shape[1] if len(shape) > 1 else count
    return fan_in, fan_out


def _norm(param, shape):
    fan_in, fan_out = _fans(shape)
    vn = param.variance_norm  # FAN_IN = 0, FAN_OUT = 1, AVERAGE = 2
    if vn == 1:
        return fan_out
    if vn == 2:
        return (fan_in + fan_out) / 2.0
    return fan_in


def filler_values(param, shape, dtype=np.float32, rng=None):
    """Return a new array of ``shape`` filled as ``param`` (a FillerParameter) says."""
    rng = rng or _rng.get_rng()
    shape = tuple(shape)
    kind = param.type
    if kind == "constant":
        return np.full(shape, param.value, dtype)
    if kind == "uniform":
        if param.min > param.max:
            raise CaffepyError(
                f"uniform filler needs min <= max, got min {param.min:g} and max "
                f"{param.max:g}"
            )
        return rng.uniform(param.min, param.max, shape).astype(dtype)
    if kind == "gaussian":
        if not param.std >= 0:
            raise CaffepyError(f"gaussian filler needs std >= 0, got {param.std:g}")
        out = rng.normal(param.mean, param.std, shape).astype(dtype)
        if param.sparse >= 0:
            if len(shape) < 1:
                raise CaffepyError("sparse gaussian filler needs a blob with >= 1 axis")
            keep = param.sparse / shape[0]
            out *= rng.random(shape) < keep
        return out
    if kind == "xavier":
        a = math.sqrt(3.0 / _norm(param, shape))
        return rng.uniform(-a, a, shape).astype(dtype)
    if kind == "msra":
        std = math.sqrt(2.0 / _norm(param, shape))
        return rng.normal(0.0, std, shape).astype(dtype)
    if kind == "positive_unitball":
        out = rng.uniform(0.0, 1.0, shape)
        rows = out.reshape(shape[0], -1)
        rows /= rows.sum(axis=1, keepdims=True)
        return out.astype(dtype)
    if kind == "bilinear":
        if len(shape) != 4 or shape[2] != shape[3]:
            raise CaffepyError(
                f"bilinear filler needs a 4-D blob with square kernels, got {shape}"
            )
        k = shape[3]
        f = math.ceil(k / 2.0)
        c = (k - 1) / (2.0 * f)
        x = np.arange(k)
        w1 = 1 - np.abs(x / f - c)
        kernel = np.outer(w1, w1)
        return np.broadcast_to(kernel, shape).astype(dtype).copy()
    raise CaffepyError(
        f"unknown filler type {kind!r}{did_you_mean(kind, FILLERS)}; known: "
        + ", ".join(FILLERS)
    )


def fill(blob, param, layer=None):
    """Fill ``blob.data`` in place from a FillerParameter."""
    try:
        blob.data[...] = filler_values(param, blob.shape, blob.dtype)
    except CaffepyError as err:
        if layer is not None:
            raise LayerError(layer, str(err)) from None
        raise
