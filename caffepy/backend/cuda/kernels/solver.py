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


# -- every parameter in one launch ----------------------------------------------------
#: Rule codes of :func:`packed_update` (the solver types it covers).
SGD, NESTEROV, ADAGRAD, RMSPROP, ADADELTA, ADAM = range(6)
#: Slots of its ``scalars`` array (device-resident, so a CUDA graph replays new values).
RATE, MOMENTUM, DELTA, DECAY2, CORRECTION = range(5)


@cuda.jit(device=True)
def _segment(offsets, nseg, i):
    """The parameter whose [offsets[p], offsets[p+1]) holds element i."""
    lo = 0
    hi = nseg
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if offsets[mid] <= i:
            lo = mid
        else:
            hi = mid
    return lo


@cuda.jit
def packed_update(n, rule, offsets, nseg, w, g, h1, h2, lr_mult, decay, l1, scalars):
    """The update rule ``rule`` over all parameters packed in flat buffers.

    Args:
        n: total elements (offsets[nseg]).
        rule: one of SGD, NESTEROV, ADAGRAD, RMSPROP, ADADELTA, ADAM.
        offsets: int64 (nseg + 1,) start of each parameter in w, g, h1, h2.
        w, g, h1, h2: flat weights, gradients (left holding the update, as
            Caffe's diff), history (h2: AdaDelta's and Adam's second set;
            any array for the others).
        lr_mult, decay: per parameter, lr_mult and weight_decay * decay_mult
            in the parameter dtype.
        l1: L1 regularisation instead of L2.
        scalars: [rate, momentum / beta1 / rms_decay, delta, beta2, Adam's
            bias correction], read on the device at each launch.

    The per-element arithmetic is that of the one-parameter kernels above, with
    the local rate ``(rate * lr_mult) * correction`` rounded as the solver's.
    """
    start = cuda.grid(1)
    for i in range(start, n, cuda.gridsize(1)):
        p = _segment(offsets, nseg, i)
        rate = scalars[RATE] * lr_mult[p]
        mom = scalars[MOMENTUM]
        delta = scalars[DELTA]
        gi = _regularized(w[i], g[i], decay[p], l1)
        if rule == SGD:
            u = rate * gi + mom * h1[i]
            h1[i] = u
        elif rule == NESTEROV:
            prev = h1[i]
            hi = rate * gi + mom * prev
            h1[i] = hi
            u = hi * (1 + mom) - prev * mom
        elif rule == ADAGRAD:
            hi = h1[i] + gi * gi
            h1[i] = hi
            u = gi / (math.sqrt(hi) + delta) * rate
        elif rule == RMSPROP:
            hi = h1[i] * mom + gi * gi * (1 - mom)
            h1[i] = hi
            u = gi / (math.sqrt(hi) + delta) * rate
        elif rule == ADADELTA:
            a = h1[i] * mom + gi * gi * (1 - mom)
            h1[i] = a
            d = gi * math.sqrt((h2[i] + delta) / (a + delta))
            h2[i] = h2[i] * mom + d * d * (1 - mom)
            u = d * rate
        else:  # ADAM
            b2 = scalars[DECAY2]
            mi = gi * (1 - mom) + h1[i] * mom
            h1[i] = mi
            vi = h2[i] * b2 + gi * gi * (1 - b2)
            h2[i] = vi
            u = mi / (math.sqrt(vi) + delta) * (rate * scalars[CORRECTION])
        g[i] = u
        w[i] = w[i] - u
