"""Slow explicit-loop reference implementations used as test oracles."""

import math

import numpy as np


# -- common and loss layers (ArgMax, Accuracy, Crop, HingeLoss, InfogainLoss,
# ContrastiveLoss, Reshape) -------------------------------------------------------------
def argmax_layer(x, top_k=1, out_max_val=False, axis=None):
    """ArgMax layer: per search vector, sort (value, index) pairs descending."""

    x = np.asarray(x, np.float64)
    if axis is None:
        flat = x.reshape(x.shape[0], -1)
        out = np.zeros((x.shape[0], 2 if out_max_val else 1, top_k))
        for n in range(flat.shape[0]):
            pairs = sorted(
                ((flat[n, j], j) for j in range(flat.shape[1])), reverse=True
            )
            for k in range(top_k):
                out[n, 0, k] = pairs[k][1]
                if out_max_val:
                    out[n, 1, k] = pairs[k][0]
        return out.reshape(out.shape + (1,) * max(0, x.ndim - 3))
    axis = axis % x.ndim
    moved = np.moveaxis(x, axis, -1)
    res = np.zeros(moved.shape[:-1] + (top_k,))
    for idx in np.ndindex(*moved.shape[:-1]):
        vec = moved[idx]
        pairs = sorted(((vec[j], j) for j in range(vec.shape[0])), reverse=True)
        for k in range(top_k):
            res[idx + (k,)] = pairs[k][0] if out_max_val else pairs[k][1]
    return np.moveaxis(res, -1, axis)


def accuracy_layer(scores, labels, top_k=1, axis=1, ignore_label=None):
    """Accuracy layer (BVLC 1.0 rule: correct when fewer than top_k other classes
    score >= the true class). Returns (accuracy, per_class)."""

    x = np.asarray(scores, np.float64)
    outer = int(np.prod(x.shape[:axis]))
    C = x.shape[axis]
    inner = int(np.prod(x.shape[axis + 1 :]))
    x = x.reshape(outer, C, inner)
    lab = np.asarray(labels).reshape(outer, inner)
    hits, count = 0, 0
    nums, per_hits = np.zeros(C), np.zeros(C)
    for i in range(outer):
        for j in range(inner):
            y = int(lab[i, j])
            if ignore_label is not None and y == ignore_label:
                continue
            nums[y] += 1
            better = sum(1 for c in range(C) if c != y and x[i, c, j] >= x[i, y, j])
            if better < top_k:
                hits += 1
                per_hits[y] += 1
            count += 1
    per = np.array([per_hits[c] / nums[c] if nums[c] else 0.0 for c in range(C)])
    return (hits / count if count else 0.0), per


def crop_layer(x, ref_shape, axis=2, offset=()):
    """Crop layer: explicit index loops over the output."""

    x = np.asarray(x)
    n = x.ndim
    axis = axis % n
    offs = [0] * n
    shape = list(x.shape)
    for i in range(axis, n):
        shape[i] = ref_shape[i]
        if len(offset) == 1:
            offs[i] = offset[0]
        elif len(offset) > 1:
            offs[i] = offset[i - axis]
    out = np.zeros(shape, x.dtype)
    for idx in np.ndindex(*shape):
        out[idx] = x[tuple(i + o for i, o in zip(idx, offs))]
    return out


def hinge_loss_layer(scores, labels, norm="L1"):
    """HingeLoss layer, one-vs-all, loop over items and classes."""

    s = np.asarray(scores, np.float64)
    s = s.reshape(s.shape[0], -1)
    loss = 0.0
    for n in range(s.shape[0]):
        for c in range(s.shape[1]):
            t = 1.0 if c == int(labels[n]) else -1.0
            m = max(0.0, 1.0 - t * s[n, c])
            loss += m if norm == "L1" else m * m
    return loss / s.shape[0]


def infogain_loss_layer(
    scores, labels, H, axis=1, ignore_label=None, normalization="VALID"
):
    """InfogainLoss layer: softmax over ``axis`` then -sum H[y, l] log p_l."""

    x = np.asarray(scores, np.float64)
    outer = int(np.prod(x.shape[:axis]))
    C = x.shape[axis]
    inner = int(np.prod(x.shape[axis + 1 :]))
    x = x.reshape(outer, C, inner)
    lab = np.asarray(labels).reshape(outer, inner)
    H = np.asarray(H, np.float64).reshape(C, C)
    loss, count = 0.0, 0
    for i in range(outer):
        for j in range(inner):
            y = int(lab[i, j])
            if ignore_label is not None and y == ignore_label:
                continue
            m = max(x[i, c, j] for c in range(C))
            z = sum(math.exp(x[i, c, j] - m) for c in range(C))
            for c in range(C):
                p = math.exp(x[i, c, j] - m) / z
                loss -= H[y, c] * math.log(max(p, 1e-20))
            count += 1
    norm = {
        "VALID": count if ignore_label is not None else outer * inner,
        "FULL": outer * inner,
        "BATCH_SIZE": outer,
        "NONE": 1,
    }[normalization]
    return loss / max(1, norm)


def contrastive_loss_layer(a, b, y, margin=1.0, legacy=False):
    """ContrastiveLoss layer: loop over pairs."""

    a = np.asarray(a, np.float64).reshape(len(y), -1)
    b = np.asarray(b, np.float64).reshape(len(y), -1)
    loss = 0.0
    for n in range(len(y)):
        d2 = sum((a[n, k] - b[n, k]) ** 2 for k in range(a.shape[1]))
        if int(y[n]):
            loss += d2
        elif legacy:
            loss += max(margin - d2, 0.0)
        else:
            loss += max(margin - math.sqrt(d2), 0.0) ** 2
    return loss / len(y) / 2


def reshape_layer_shape(bottom_shape, dims, axis=0, num_axes=-1):
    """Reshape layer's top shape, written from the rules (0 copies, -1 infers)."""
    n = len(bottom_shape)
    start = axis if axis >= 0 else n + axis + 1
    end = n if num_axes == -1 else start + num_axes
    mid = []
    for i, d in enumerate(dims):
        mid.append(bottom_shape[start + i] if d == 0 else d)
    shape = list(bottom_shape[:start]) + mid + list(bottom_shape[end:])
    total = 1
    for d in bottom_shape:
        total *= d
    if -1 in shape:
        known = 1
        for d in shape:
            if d != -1:
                known *= d
        shape[shape.index(-1)] = total // known
    return tuple(shape)


# -- vision layers (Convolution, Deconvolution, Pooling) ------------------------------
def convolution_layer(
    x, w, b=None, pad=(0, 0), stride=(1, 1), dilation=(1, 1), group=1
):
    """Convolution layer, Caffe's direct definition (cross-correlation with groups).

    x: (N, C, H, W); w: (M, C/group, kh, kw); b: (M,) or None.
    """
    x = np.asarray(x, np.float64)
    w = np.asarray(w, np.float64)
    n_img, _, height, width = x.shape
    m_out, cg, kh, kw = w.shape
    mg = m_out // group
    (ph, pw), (sh, sw), (dh, dw) = pad, stride, dilation
    oh = (height + 2 * ph - (dh * (kh - 1) + 1)) // sh + 1
    ow = (width + 2 * pw - (dw * (kw - 1) + 1)) // sw + 1
    y = np.zeros((n_img, m_out, oh, ow))
    for n in range(n_img):
        for m in range(m_out):
            g = m // mg
            for i in range(oh):
                for j in range(ow):
                    acc = 0.0 if b is None else float(b[m])
                    for c in range(cg):
                        for ki in range(kh):
                            iy = i * sh - ph + ki * dh
                            if not 0 <= iy < height:
                                continue
                            for kj in range(kw):
                                ix = j * sw - pw + kj * dw
                                if 0 <= ix < width:
                                    acc += w[m, c, ki, kj] * x[n, g * cg + c, iy, ix]
                    y[n, m, i, j] = acc
    return y


def deconvolution_layer(
    x, w, b=None, pad=(0, 0), stride=(1, 1), dilation=(1, 1), group=1
):
    """Deconvolution layer: every input pixel scatters its weighted kernel.

    x: (N, C, H, W); w: (C, M/group, kh, kw); b: (M,) or None.
    """
    x = np.asarray(x, np.float64)
    w = np.asarray(w, np.float64)
    n_img, chans, height, width = x.shape
    _, mg, kh, kw = w.shape
    cg = chans // group
    (ph, pw), (sh, sw), (dh, dw) = pad, stride, dilation
    oh = sh * (height - 1) + dh * (kh - 1) + 1 - 2 * ph
    ow = sw * (width - 1) + dw * (kw - 1) + 1 - 2 * pw
    y = np.zeros((n_img, mg * group, oh, ow))
    for n in range(n_img):
        for c in range(chans):
            g = c // cg
            for i in range(height):
                for j in range(width):
                    v = x[n, c, i, j]
                    for m in range(mg):
                        for ki in range(kh):
                            oy = i * sh - ph + ki * dh
                            if not 0 <= oy < oh:
                                continue
                            for kj in range(kw):
                                ox = j * sw - pw + kj * dw
                                if 0 <= ox < ow:
                                    y[n, g * mg + m, oy, ox] += v * w[c, m, ki, kj]
    if b is not None:
        y += np.asarray(b, np.float64)[None, :, None, None]
    return y


def pooling_output_size(size, kernel, pad, stride, ceil_mode=True, any_pad=None):
    """Caffe's pooled size: ceil (or floor) rounding, then the pad clip rule."""
    span = size + 2 * pad - kernel
    pooled = (math.ceil(span / stride) if ceil_mode else math.floor(span / stride)) + 1
    if (pad if any_pad is None else any_pad) and (pooled - 1) * stride >= size + pad:
        pooled -= 1
    return pooled


def pooling_layer(
    x,
    method="MAX",
    kernel=(2, 2),
    pad=(0, 0),
    stride=(1, 1),
    ceil_mode=True,
    global_pooling=False,
):
    """Pooling layer, Caffe's exact rules. Returns (top, argmax mask or None).

    MAX: the first strictly greater element of the window clipped to the input
    (start -FLT_MAX, mask -1); AVE: sum over the clipped window divided by the
    window clipped to [-pad, size + pad).
    """
    x = np.asarray(x, np.float64)
    n_img, chans, height, width = x.shape
    if global_pooling:
        kernel, pad, stride = (height, width), (0, 0), (1, 1)
    (kh, kw), (ph, pw), (sh, sw) = kernel, pad, stride
    any_pad = ph or pw
    oh = pooling_output_size(height, kh, ph, sh, ceil_mode, any_pad)
    ow = pooling_output_size(width, kw, pw, sw, ceil_mode, any_pad)
    y = np.zeros((n_img, chans, oh, ow))
    mask = np.full((n_img, chans, oh, ow), -1.0) if method == "MAX" else None
    flt_max = float(np.finfo(np.float32).max)
    for n in range(n_img):
        for c in range(chans):
            for i in range(oh):
                for j in range(ow):
                    hs, ws = i * sh - ph, j * sw - pw
                    if method == "MAX":
                        best, where = -flt_max, -1
                        for yy in range(max(hs, 0), min(hs + kh, height)):
                            for xx in range(max(ws, 0), min(ws + kw, width)):
                                if x[n, c, yy, xx] > best:
                                    best, where = x[n, c, yy, xx], yy * width + xx
                        y[n, c, i, j], mask[n, c, i, j] = best, where
                    else:
                        he = min(hs + kh, height + ph)
                        we = min(ws + kw, width + pw)
                        size = (he - hs) * (we - ws)
                        acc = 0.0
                        for yy in range(max(hs, 0), min(he, height)):
                            for xx in range(max(ws, 0), min(we, width)):
                                acc += x[n, c, yy, xx]
                        y[n, c, i, j] = acc / size
    return y, mask


# -- neuron and normalization layers (LRN, MVN, BatchNorm, Scale, Bias, PReLU) ----------
def lrn_layer(x, local_size=5, alpha=1.0, beta=0.75, k=1.0, region="ACROSS_CHANNELS"):
    """LRN. ACROSS_CHANNELS: x * (k + alpha/n * sum over the n channels centred on c,
    zero-padded)^-beta. WITHIN_CHANNEL: x * (1 + alpha/n^2 * sum over the n x n
    window centred on (h, w), clipped to the image)^-beta (k unused)."""

    x = np.asarray(x, np.float64)
    N, C, H, W = x.shape
    pre = (local_size - 1) // 2
    y = np.zeros_like(x)
    for n in range(N):
        for c in range(C):
            for h in range(H):
                for w in range(W):
                    acc = 0.0
                    if region == "ACROSS_CHANNELS":
                        for cc in range(c - pre, c + pre + 1):
                            if 0 <= cc < C:
                                acc += x[n, cc, h, w] ** 2
                        scale = k + alpha / local_size * acc
                    else:
                        for hh in range(h - pre, h + pre + 1):
                            for ww in range(w - pre, w + pre + 1):
                                if 0 <= hh < H and 0 <= ww < W:
                                    acc += x[n, c, hh, ww] ** 2
                        scale = 1.0 + alpha / (local_size * local_size) * acc
                    y[n, c, h, w] = x[n, c, h, w] * scale**-beta
    return y


def mvn_layer(x, normalize_variance=True, across_channels=False, eps=1e-9):
    """MVN: (x - mean) / (std + eps) per (n, c), or per n with across_channels."""

    x = np.asarray(x, np.float64)
    groups = x.shape[0] if across_channels else x.shape[0] * x.shape[1]
    flat = x.reshape(groups, -1)
    y = np.zeros_like(flat)
    for g in range(groups):
        vals = flat[g]
        mean = sum(vals) / len(vals)
        y[g] = [v - mean for v in vals]
        if normalize_variance:
            std = math.sqrt(sum((v - mean) ** 2 for v in vals) / len(vals))
            y[g] = y[g] / (std + eps)
    return y.reshape(x.shape)


def batch_norm_layer(x, eps=1e-5, mean=None, var=None):
    """BatchNorm without scale/shift; batch statistics (biased variance) over every
    axis but 1 unless mean/var are given. Returns (y, mean, var)."""

    x = np.asarray(x, np.float64)
    x3 = x.reshape(x.shape[0], x.shape[1] if x.ndim > 1 else 1, -1)
    N, C, S = x3.shape
    if mean is None:
        mean = np.zeros(C)
        var = np.zeros(C)
        for c in range(C):
            vals = [x3[n, c, s] for n in range(N) for s in range(S)]
            mean[c] = sum(vals) / len(vals)
            var[c] = sum((v - mean[c]) ** 2 for v in vals) / len(vals)
    y = np.zeros_like(x3)
    for n in range(N):
        for c in range(C):
            for s in range(S):
                y[n, c, s] = (x3[n, c, s] - mean[c]) / math.sqrt(var[c] + eps)
    return y.reshape(x.shape), np.asarray(mean), np.asarray(var)


def scale_layer(x, scale=None, bias=None, axis=1):
    """Scale / Bias: y = x * scale + bias, the parameters covering x's axes
    [axis, axis + param.ndim) and repeated over the others (scalar: axis ignored)."""

    x = np.asarray(x, np.float64)
    param = scale if scale is not None else bias
    nd = np.ndim(param)
    axis = 0 if nd == 0 else axis % x.ndim
    y = np.zeros_like(x)
    for idx in np.ndindex(*x.shape):
        p = idx[axis : axis + nd]
        v = x[idx]
        if scale is not None:
            v = v * np.asarray(scale)[p]
        if bias is not None:
            v = v + np.asarray(bias)[p]
        y[idx] = v
    return y


def prelu_layer(x, slope):
    """PReLU: max(x, 0) + slope[c] * min(x, 0), c on axis 1 (slope () = shared)."""

    x = np.asarray(x, np.float64)
    slope = np.asarray(slope, np.float64)
    y = np.zeros_like(x)
    for idx in np.ndindex(*x.shape):
        a = slope if slope.ndim == 0 else slope[idx[1]]
        y[idx] = x[idx] if x[idx] > 0 else a * x[idx]
    return y
