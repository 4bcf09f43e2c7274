"""Fused parameter updates for the solvers.

Caffe updates a parameter in several passes (regularise, momentum, copy,
subtract), each over the whole array; these kernels make one parallel pass with
the same float operations in the same order, so the results are the same.
"""

from caffepy.kernels.config import pjit, prange


@pjit
def sgd_update(w, g, h, decay, rate, momentum):
    """SGD with momentum and L2 weight decay, as Caffe's Regularize,
    ComputeUpdateValue and Update.

    ``g += decay * w;  h = rate * g + momentum * h;  g = h;  w -= h``

    Args:
        w: flat weights, updated.
        g: flat gradient; holds the update h on exit (as Caffe's diff).
        h: flat momentum history, updated.
        decay: local weight decay (weight_decay * decay_mult); 0 skips it.
        rate: local learning rate (lr * lr_mult).
        momentum: the momentum.
    """
    for i in prange(w.size):
        gi = g[i]
        if decay != 0:
            gi = decay * w[i] + gi
        hi = rate * gi + momentum * h[i]
        h[i] = hi
        g[i] = hi
        w[i] = w[i] - hi
