"""Fused update rules: regularise, compute the update, apply it, in one pass.

Each kernel does, per element, what Caffe's ``Regularize``,
``ComputeUpdateValue`` and ``Blob::Update`` do in several passes: ``g`` (the
parameter diff) gets the weight decay (L2: ``decay * w``, L1: ``decay *
sign(w)``), the rule computes the update ``u``, ``g`` is left holding ``u`` (as
Caffe's diff) and ``w -= u``. ``rate`` and ``decay`` already include the
parameter's ``lr_mult`` and ``decay_mult``.
"""

from __future__ import annotations

import math

from caffepy.backend.cuda.kernels.launch import cuda


@cuda.jit(device=True)
def _regularized(w, g, decay, l1):
    if decay == 0:
        return g
    if l1:
        if w > 0:
            return decay + g
        if w < 0:
            return g - decay
        return g
    return decay * w + g


@cuda.jit
def sgd_update(n, w, g, h, decay, l1, rate, momentum):
    """h = rate * g + momentum * h;  u = h."""
    start = cuda.grid(1)
    for i in range(start, n, cuda.gridsize(1)):
        gi = _regularized(w[i], g[i], decay, l1)
        hi = rate * gi + momentum * h[i]
        h[i] = hi
        g[i] = hi
        w[i] = w[i] - hi


@cuda.jit
def nesterov_update(n, w, g, h, decay, l1, rate, momentum):
    """h' = rate * g + momentum * h;  u = (1 + momentum) * h' - momentum * h."""
    start = cuda.grid(1)
    for i in range(start, n, cuda.gridsize(1)):
        gi = _regularized(w[i], g[i], decay, l1)
        prev = h[i]
        hi = rate * gi + momentum * prev
        h[i] = hi
        u = hi * (1 + momentum) - prev * momentum
        g[i] = u
        w[i] = w[i] - u


@cuda.jit
def adagrad_update(n, w, g, h, decay, l1, rate, delta):
    """h += g^2;  u = rate * g / (sqrt(h) + delta)."""
    start = cuda.grid(1)
    for i in range(start, n, cuda.gridsize(1)):
        gi = _regularized(w[i], g[i], decay, l1)
        hi = h[i] + gi * gi
        h[i] = hi
        u = gi / (math.sqrt(hi) + delta) * rate
        g[i] = u
        w[i] = w[i] - u


@cuda.jit
def rmsprop_update(n, w, g, h, decay, l1, rate, rms_decay, delta):
    """h = rms_decay * h + (1 - rms_decay) * g^2;  u = rate * g / (sqrt(h) + delta)."""
    start = cuda.grid(1)
    for i in range(start, n, cuda.gridsize(1)):
        gi = _regularized(w[i], g[i], decay, l1)
        hi = h[i] * rms_decay + gi * gi * (1 - rms_decay)
        h[i] = hi
        u = gi / (math.sqrt(hi) + delta) * rate
        g[i] = u
        w[i] = w[i] - u


@cuda.jit
def adadelta_update(n, w, g, h1, h2, decay, l1, rate, momentum, delta):
    """h1 = m h1 + (1-m) g^2;  d = g sqrt((h2+delta)/(h1+delta));
    h2 = m h2 + (1-m) d^2;  u = rate * d."""
    start = cuda.grid(1)
    for i in range(start, n, cuda.gridsize(1)):
        gi = _regularized(w[i], g[i], decay, l1)
        a = h1[i] * momentum + gi * gi * (1 - momentum)
        h1[i] = a
        d = gi * math.sqrt((h2[i] + delta) / (a + delta))
        h2[i] = h2[i] * momentum + d * d * (1 - momentum)
        u = d * rate
        g[i] = u
        w[i] = w[i] - u


@cuda.jit
def adam_update(n, w, g, m, v, decay, l1, rate_corrected, beta1, beta2, delta):
    """m = b1 m + (1-b1) g;  v = b2 v + (1-b2) g^2;
    u = rate_corrected * m / (sqrt(v) + delta), the bias correction folded in."""
    start = cuda.grid(1)
    for i in range(start, n, cuda.gridsize(1)):
        gi = _regularized(w[i], g[i], decay, l1)
        mi = gi * (1 - beta1) + m[i] * beta1
        m[i] = mi
        vi = v[i] * beta2 + gi * gi * (1 - beta2)
        v[i] = vi
        u = mi / (math.sqrt(vi) + delta) * rate_corrected
        g[i] = u
        w[i] = w[i] - u
