"""Element-wise kernels for the hot neuron layers (ReLU, PReLU, Dropout).

NumPy ufuncs run on one core and need a temporary for every mask; these
kernels make one parallel pass over flat (1-D) or (N, C, S) arrays. All of them
are safe when an output aliases an input (in-place layers): each element is
read before it is written, and no element is read after another is written.
"""

from numba import uint64 as u64

from caffepy.kernels.config import njit, pjit, prange


@pjit
def relu_forward(x, negative_slope, y):
    """y = x if x > 0 else negative_slope * x.

    Args:
        x: flat input.
        negative_slope: slope for x <= 0.
        y: flat output (may be ``x``), overwritten.
    """
    for i in prange(x.size):
        v = x[i]
        y[i] = v if v > 0 else v * negative_slope


@njit
def rectify(yf, start, stop, negative_slope):
    """:func:`relu_forward` in place on ``yf[start:stop]`` (flat), the same
    operations: a ReLU fused into the pass that has just written those
    elements (a convolution's or an inner product's output block)."""
    for k in range(stop - start):
        i = u64(start + k)
        v = yf[i]
        yf[i] = v if v > 0 else v * negative_slope


@njit
def finish_channel(yf, start, stop, c, affine, kf, relu, slope):
    """The layers fused after a convolution, on ``yf[start:stop]`` (flat), the
    elements of output channel ``c`` that the convolution has just written:
    BatchNorm with stored statistics and the Scale after it when ``affine`` (4, C:
    mean, std, scale, bias) has rows, as :func:`normalization.bn_scale_forward_global`
    (the normalised values also to ``kf``, laid out as ``yf``, when it is not
    empty: the Scale's kept input), then the ReLU of negative slope ``slope``
    when ``relu``; the same operations as those layers' own kernels."""
    if affine.shape[0] > 0:
        mu, sd = affine[0, c], affine[1, c]
        a, b = affine[2, c], affine[3, c]
        if kf.size > 0:
            for k in range(stop - start):
                i = u64(start + k)
                xn = (yf[i] - mu) / sd
                kf[i] = xn
                yf[i] = xn * a + b
        else:
            for k in range(stop - start):
                i = u64(start + k)
                yf[i] = (yf[i] - mu) / sd * a + b
    if relu:
        rectify(yf, start, stop, slope)


@pjit
def relu_backward(x, dy, negative_slope, dx):
    """dx = dy where x > 0 else negative_slope * dy (Caffe: x <= 0 takes the slope).

    Args:
        x: flat input of the forward pass (or its output when the slope is >= 0,
            which has the same sign).
        dy: flat gradient of the top.
        negative_slope: slope for x <= 0.
        dx: flat gradient of the bottom (may be ``dy``), overwritten.
    """
    for i in prange(x.size):
        g = dy[i]
        dx[i] = g if x[i] > 0 else g * negative_slope


@pjit
def prelu_forward(x, slope, y):
    """y = max(x, 0) + slope[c] * min(x, 0) on (N, C, S) arrays.

    Args:
        x: (N, C, S) input.
        slope: (C,) slopes, or (1,) for one slope shared by every channel.
        y: (N, C, S) output (may be ``x``), overwritten.
    """
    num, chans, inner = x.shape
    shared = slope.size == 1
    for t in prange(num * chans):
        n = t // chans
        c = t - n * chans
        a = slope[0] if shared else slope[c]
        for s in range(inner):
            v = x[n, c, s]
            y[n, c, s] = v if v > 0 else v * a


@pjit
def prelu_backward(x, dy, slope, want_dx, want_dslope, dx, dslope):
    """PReLU gradients on (N, C, S) arrays.

    Args:
        x: (N, C, S) input of the forward pass.
        dy: (N, C, S) gradient of the top.
        slope: (C,) or (1,) slopes.
        want_dx: whether to write ``dx``.
        want_dslope: whether to write ``dslope``.
        dx: (N, C, S) gradient of the bottom (may be ``dy``), overwritten when
            ``want_dx``.
        dslope: (C,) output, overwritten when ``want_dslope`` with the sum over
            n, s of dy * x * (x <= 0) per channel (the caller sums it for a shared
            slope).
    """
    num, chans, inner = x.shape
    shared = slope.size == 1
    # NOTE: the slope gradient is reduced per channel first (one task each, float64
    # accumulator), then dx is written: with dx aliasing dy, every dy is read
    # before it is overwritten.
    if want_dslope:
        for c in prange(chans):
            acc = 0.0
            for n in range(num):
                for s in range(inner):
                    v = x[n, c, s]
                    if v <= 0:
                        acc += dy[n, c, s] * v
            dslope[c] = acc
    if want_dx:
        for t in prange(num * chans):
            n = t // chans
            c = t - n * chans
            a = slope[0] if shared else slope[c]
            for s in range(inner):
                g = dy[n, c, s]
                dx[n, c, s] = g if x[n, c, s] > 0 else g * a


@pjit
def masked_scale(a, bits, threshold, scale, out):
    """out = a * scale where bits < threshold, else 0 (Dropout forward and backward).

    Args:
        a: flat input (data in forward, top gradient in backward).
        bits: flat uniform random uint32: a unit is kept when ``bits < threshold``.
        threshold: keep probability times 2^32 (an int up to 2^32).
        scale: factor applied to kept units.
        out: flat output (may be ``a``), overwritten.
    """
    for i in prange(a.size):
        out[i] = a[i] * scale if bits[i] < threshold else a[i] * 0


@pjit
def axpby(a, alpha, b, beta, y):
    """y = a * alpha + b * beta over flat arrays (Eltwise SUM of two bottoms).

    Args:
        a, b: flat inputs.
        alpha, beta: their coefficients (1 multiplies exactly).
        y: flat output (may be ``a`` or ``b``), overwritten.
    """
    for i in prange(a.size):
        y[i] = a[i] * alpha + b[i] * beta


@pjit
def axpby_relu(a, alpha, b, beta, negative_slope, y):
    """:func:`axpby` then :func:`relu_forward` in the same pass (an Eltwise SUM
    of two bottoms and the in-place ReLU after it): the same operations."""
    for i in prange(a.size):
        v = a[i] * alpha + b[i] * beta
        y[i] = v if v > 0 else v * negative_slope


@pjit
def copy(a, y):
    """y = a over flat arrays, in parallel (the input kept by an in-place layer)."""
    for i in prange(a.size):
        y[i] = a[i]
