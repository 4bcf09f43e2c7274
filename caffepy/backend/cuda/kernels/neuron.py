"""Elementwise kernels: neuron activations and Eltwise (Caffe's ``*_layer.cu``).

Arrays are flat and of one dtype; ``n`` is their size.
"""

from __future__ import annotations

import math

from caffepy.backend.cuda.kernels.launch import cuda


@cuda.jit
def relu_forward(n, x, negative_slope, y):
    """y = x if x > 0 else negative_slope * x."""
    start = cuda.grid(1)
    for i in range(start, n, cuda.gridsize(1)):
        v = x[i]
        y[i] = v if v > 0 else v * negative_slope


@cuda.jit
def relu_backward(n, x, dy, negative_slope, dx):
    """dx = dy * (x > 0 ? 1 : negative_slope) (x: the forward input, or its top)."""
    start = cuda.grid(1)
    for i in range(start, n, cuda.gridsize(1)):
        g = dy[i]
        dx[i] = g if x[i] > 0 else g * negative_slope


@cuda.jit
def sigmoid_forward(n, x, y):
    """y = 0.5 * tanh(0.5 * x) + 0.5 (Caffe's form: no overflow in exp)."""
    start = cuda.grid(1)
    for i in range(start, n, cuda.gridsize(1)):
        y[i] = 0.5 * math.tanh(0.5 * x[i]) + 0.5


@cuda.jit
def sigmoid_backward(n, y, dy, dx):
    """dx = dy * y * (1 - y), y the forward output."""
    start = cuda.grid(1)
    for i in range(start, n, cuda.gridsize(1)):
        s = y[i]
        dx[i] = dy[i] * s * (1 - s)


@cuda.jit
def tanh_forward(n, x, y):
    start = cuda.grid(1)
    for i in range(start, n, cuda.gridsize(1)):
        y[i] = math.tanh(x[i])


@cuda.jit
def tanh_backward(n, y, dy, dx):
    """dx = dy * (1 - y^2), y the forward output."""
    start = cuda.grid(1)
    for i in range(start, n, cuda.gridsize(1)):
        t = y[i]
        dx[i] = dy[i] * (1 - t * t)


@cuda.jit
def elu_forward(n, x, alpha, y):
    """y = x if x > 0 else alpha * (exp(x) - 1)."""
    start = cuda.grid(1)
    for i in range(start, n, cuda.gridsize(1)):
        v = x[i]
        y[i] = v if v > 0 else alpha * (math.exp(v) - 1)


@cuda.jit
def elu_backward(n, x, y, dy, alpha, dx):
    """dx = dy if x > 0 else dy * (y + alpha)."""
    start = cuda.grid(1)
    for i in range(start, n, cuda.gridsize(1)):
        g = dy[i]
        dx[i] = g if x[i] > 0 else g * (y[i] + alpha)


@cuda.jit
def bnll_forward(n, x, y):
    """y = log(1 + exp(x)), computed as x + log(1 + exp(-x)) for x > 0."""
    start = cuda.grid(1)
    for i in range(start, n, cuda.gridsize(1)):
        v = x[i]
        y[i] = v + math.log(1 + math.exp(-v)) if v > 0 else math.log(1 + math.exp(v))


@cuda.jit
def dropout_forward(n, x, mask, threshold, scale, y):
    """y = x * scale where mask > threshold, else 0 (mask: uint32 random bits)."""
    start = cuda.grid(1)
    for i in range(start, n, cuda.gridsize(1)):
        y[i] = x[i] * scale if mask[i] > threshold else x[i] * 0


@cuda.jit
def eltwise_sum(n, a, coeff_a, b, coeff_b, y):
    """y = coeff_a * a + coeff_b * b (y may be a)."""
    start = cuda.grid(1)
    for i in range(start, n, cuda.gridsize(1)):
        y[i] = coeff_a * a[i] + coeff_b * b[i]


@cuda.jit
def eltwise_prod(n, a, b, y):
    start = cuda.grid(1)
    for i in range(start, n, cuda.gridsize(1)):
        y[i] = a[i] * b[i]


@cuda.jit
def eltwise_max(n, a, b, blob_b, y, mask):
    """y = max(y-so-far a, b); mask records which bottom won (first wins ties).

    For the first pair call with ``a`` = bottom 0 and ``mask`` pre-set to 0.
    """
    start = cuda.grid(1)
    for i in range(start, n, cuda.gridsize(1)):
        if b[i] > a[i]:
            y[i] = b[i]
            mask[i] = blob_b
        else:
            y[i] = a[i]


@cuda.jit
def eltwise_max_backward(n, dy, mask, blob, dx):
    """dx = dy where bottom ``blob`` won the max, else 0."""
    start = cuda.grid(1)
    for i in range(start, n, cuda.gridsize(1)):
        dx[i] = dy[i] if mask[i] == blob else dy[i] * 0


@cuda.jit
def masked_scale(n, a, bits, threshold, scale, out):
    """out = a * scale where bits < threshold, else 0 (Dropout forward and
    backward; the CPU backend's rule, so every device drops the same units).

    Args:
        n: size. a: flat input. bits: flat uint32. threshold: uint64 (up to
            2^32). out: flat output (may be a).
    """
    start = cuda.grid(1)
    for i in range(start, n, cuda.gridsize(1)):
        v = a[i]
        out[i] = v * scale if bits[i] < threshold else v * 0
