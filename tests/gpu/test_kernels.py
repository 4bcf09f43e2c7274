"""Each numba.cuda kernel against its CPU twin (the Numba CPU kernels or NumPy),
with tiny shapes for the simulator."""

import numpy as np
import pytest

from caffepy.backend.cuda import memory
from caffepy.kernels import im2col as cpu_im2col
from caffepy.kernels import lrn as cpu_lrn
from caffepy.kernels import pooling as cpu_pool

pytest.importorskip("numba.cuda")
from caffepy.backend.cuda.kernels import neuron, normalization, softmax, solver, vision  # noqa: E402
from caffepy.backend.cuda.kernels.launch import launch  # noqa: E402

RNG = np.random.default_rng(1701)


def dev(a):
    return memory.from_host(np.ascontiguousarray(a))


def host(a):
    return memory.to_host(a)


def rand(*shape):
    return RNG.standard_normal(shape).astype(np.float32)


@pytest.mark.parametrize(
    "geom",
    [(3, 3, 1, 1, 1, 1, 1, 1), (2, 3, 0, 1, 2, 1, 1, 2), (3, 2, 1, 0, 2, 2, 2, 1)],
)
def test_im2col_col2im_match_cpu(geom):
    kh, kw, ph, pw, sh, sw, dh, dw = geom
    c, h, w = 2, 5, 6
    oh = cpu_im2col.conv_out_size(h, kh, ph, sh, dh)
    ow = cpu_im2col.conv_out_size(w, kw, pw, sw, dw)
    x = rand(1, c, h, w)
    want = np.empty((c * kh * kw, 1, oh, ow), np.float32)
    cpu_im2col.im2col(x, kh, kw, ph, pw, sh, sw, dh, dw, want)
    col = memory.empty((c * kh * kw * oh * ow,))
    launch(
        vision.im2col,
        c * oh * ow,
        dev(x.ravel()),
        c,
        h,
        w,
        kh,
        kw,
        ph,
        pw,
        sh,
        sw,
        dh,
        dw,
        oh,
        ow,
        col,
    )
    np.testing.assert_array_equal(host(col), want.ravel())

    cols = rand(c * kh * kw, 1, oh, ow)
    want_img = np.empty((1, c, h, w), np.float32)
    cpu_im2col.col2im(cols, kh, kw, ph, pw, sh, sw, dh, dw, want_img)
    img = memory.empty((c * h * w,))
    launch(
        vision.col2im,
        c * h * w,
        dev(cols.ravel()),
        c,
        h,
        w,
        kh,
        kw,
        ph,
        pw,
        sh,
        sw,
        dh,
        dw,
        oh,
        ow,
        img,
    )
    np.testing.assert_allclose(host(img), want_img.ravel(), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("geom", [(3, 3, 0, 0, 2, 2), (2, 3, 1, 1, 2, 1)])
def test_pooling_matches_cpu(geom):
    kh, kw, ph, pw, sh, sw = geom
    n, c, h, w = 1, 2, 5, 6
    oh = -(-(h + 2 * ph - kh) // sh) + 1
    ow = -(-(w + 2 * pw - kw) // sw) + 1
    if ph and (oh - 1) * sh >= h + ph:
        oh -= 1
    if pw and (ow - 1) * sw >= w + pw:
        ow -= 1
    x = rand(n, c, h, w)
    top = np.empty((n, c, oh, ow), np.float32)
    arg = np.empty((n, c, oh, ow), np.int32)
    cpu_pool.max_pool_forward(x, kh, kw, ph, pw, sh, sw, top, arg)
    m = n * c * oh * ow
    gtop, garg = memory.empty((m,)), memory.empty((m,), np.int32)
    args = (h, w, oh, ow, kh, kw, ph, pw, sh, sw)
    launch(vision.max_pool_forward, m, dev(x.ravel()), *args, gtop, garg)
    np.testing.assert_array_equal(host(gtop), top.ravel())
    np.testing.assert_array_equal(host(garg), arg.ravel())

    dy = rand(n, c, oh, ow)
    want = np.empty_like(x)
    cpu_pool.max_pool_backward(dy, arg, want)
    got = memory.empty((x.size,))
    launch(vision.max_pool_backward, x.size, dev(dy.ravel()), garg, *args, got)
    np.testing.assert_allclose(host(got), want.ravel(), rtol=1e-5)

    cpu_pool.ave_pool_forward(x, kh, kw, ph, pw, sh, sw, top)
    launch(vision.ave_pool_forward, m, dev(x.ravel()), *args, gtop)
    np.testing.assert_allclose(host(gtop), top.ravel(), rtol=1e-5)  # FMA on a GPU
    cpu_pool.ave_pool_backward(dy, kh, kw, ph, pw, sh, sw, want)
    launch(vision.ave_pool_backward, x.size, dev(dy.ravel()), *args, got)
    np.testing.assert_allclose(host(got), want.ravel(), rtol=1e-5, atol=1e-7)


def test_neuron_kernels():
    x, dy = rand(37), rand(37)
    y = memory.empty((37,))
    dx = memory.empty((37,))
    gx, gdy = dev(x), dev(dy)
    launch(neuron.relu_forward, 37, gx, np.float32(0.1), y)
    np.testing.assert_allclose(host(y), np.where(x > 0, x, x * np.float32(0.1)))
    launch(neuron.relu_backward, 37, gx, gdy, np.float32(0.1), dx)
    np.testing.assert_allclose(host(dx), np.where(x > 0, dy, dy * np.float32(0.1)))
    launch(neuron.sigmoid_forward, 37, gx, y)
    s = 1 / (1 + np.exp(-x.astype(np.float64)))
    np.testing.assert_allclose(host(y), s, rtol=1e-6)
    launch(neuron.sigmoid_backward, 37, y, gdy, dx)
    np.testing.assert_allclose(host(dx), dy * s * (1 - s), rtol=1e-5, atol=1e-7)
    launch(neuron.tanh_forward, 37, gx, y)
    np.testing.assert_allclose(host(y), np.tanh(x), rtol=1e-6)
    launch(neuron.tanh_backward, 37, y, gdy, dx)
    np.testing.assert_allclose(
        host(dx), dy * (1 - np.tanh(x) ** 2), rtol=1e-5, atol=1e-7
    )
    launch(neuron.elu_forward, 37, gx, np.float32(1.0), y)
    np.testing.assert_allclose(host(y), np.where(x > 0, x, np.expm1(x)), atol=1e-6)
    launch(neuron.bnll_forward, 37, gx, y)
    np.testing.assert_allclose(host(y), np.logaddexp(0, x), rtol=1e-5)


def test_eltwise_kernels():
    a, b = rand(11), rand(11)
    y = memory.empty((11,))
    launch(neuron.eltwise_sum, 11, dev(a), np.float32(2), dev(b), np.float32(-1), y)
    np.testing.assert_allclose(host(y), 2 * a - b, rtol=1e-6)
    launch(neuron.eltwise_prod, 11, dev(a), dev(b), y)
    np.testing.assert_allclose(host(y), a * b)
    mask = memory.zeros((11,), np.int32)
    launch(neuron.eltwise_max, 11, dev(a), dev(b), 1, y, mask)
    np.testing.assert_array_equal(host(y), np.maximum(a, b))
    np.testing.assert_array_equal(host(mask), (b > a).astype(np.int32))


def test_softmax_and_loss():
    outer, ch, inner = 2, 4, 3
    x = rand(outer, ch, inner)
    e = np.exp(x - x.max(axis=1, keepdims=True))
    p = e / e.sum(axis=1, keepdims=True)
    y = memory.empty((x.size,))
    launch(softmax.softmax_forward, outer * inner, dev(x.ravel()), ch, inner, y)
    np.testing.assert_allclose(host(y), p.ravel(), rtol=1e-6)
    dy = rand(outer, ch, inner)
    dx = memory.empty((x.size,))
    launch(softmax.softmax_backward, outer * inner, y, dev(dy.ravel()), ch, inner, dx)
    want = p * (dy - (dy * p).sum(axis=1, keepdims=True))
    np.testing.assert_allclose(host(dx), want.ravel(), rtol=1e-5, atol=1e-6)

    label = np.array([[0, 3, 1], [2, 2, 0]], np.float32)
    loss, counts = memory.empty((outer * inner,)), memory.empty((outer * inner,))
    launch(
        softmax.softmax_loss_forward,
        outer * inner,
        y,
        dev(label.ravel()),
        ch,
        inner,
        True,
        3,
        loss,
        counts,
    )
    lab = label.astype(int)
    picked = np.take_along_axis(p, lab[:, None, :], axis=1)[:, 0, :]
    want_loss = np.where(lab == 3, 0, -np.log(picked))
    np.testing.assert_allclose(host(loss), want_loss.ravel(), rtol=1e-5)
    np.testing.assert_array_equal(host(counts), (lab != 3).ravel())
    launch(
        softmax.softmax_loss_backward,
        outer * inner,
        y,
        dev(label.ravel()),
        ch,
        inner,
        True,
        3,
        np.float32(0.5),
        dx,
    )
    onehot = np.zeros_like(p)
    np.put_along_axis(onehot, lab[:, None, :] % ch, 1, axis=1)
    want = 0.5 * (p - onehot) * (lab != 3)[:, None, :]
    np.testing.assert_allclose(host(dx), want.ravel(), rtol=1e-5, atol=1e-7)


def test_lrn_across_channels_matches_cpu():
    n, c, s, size = 2, 5, 3, 3
    alpha, beta, k = np.float32(1e-1), np.float32(0.75), np.float32(1.0)
    x = rand(n, c, s)
    scale, y = np.empty_like(x), np.empty_like(x)
    cpu_lrn.lrn_across_forward(x, size, alpha / size, k, beta, scale, y)
    gs, gy = memory.empty((x.size,)), memory.empty((x.size,))
    gx = dev(x.ravel())
    launch(
        normalization.lrn_across_forward,
        n * s,
        gx,
        c,
        s,
        size,
        alpha / size,
        k,
        beta,
        gs,
        gy,
    )
    np.testing.assert_allclose(host(gs), scale.ravel(), rtol=1e-6)
    np.testing.assert_allclose(host(gy), y.ravel(), rtol=1e-5)
    dy = rand(n, c, s)
    dx = np.empty_like(x)
    coeff = np.float32(2) * alpha * beta / size
    cpu_lrn.lrn_across_backward(x, y, scale, dy, size, coeff, beta, dx)
    gdx = memory.empty((x.size,))
    launch(
        normalization.lrn_across_backward,
        n * s,
        gx,
        gy,
        gs,
        dev(dy.ravel()),
        c,
        s,
        size,
        coeff,
        beta,
        gdx,
    )
    np.testing.assert_allclose(host(gdx), dx.ravel(), rtol=1e-4, atol=1e-6)


def test_channel_sums_and_affine():
    n, c, s = 2, 3, 4
    a, b = rand(n, c, s), rand(n, c, s)
    gs, gd = memory.empty((c,)), memory.empty((c,))
    launch(
        normalization.channel_sums, c, dev(a.ravel()), dev(b.ravel()), n, c, s, gs, gd
    )
    np.testing.assert_allclose(host(gs), a.sum(axis=(0, 2)), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(host(gd), (a * b).sum(axis=(0, 2)), rtol=1e-5, atol=1e-6)
    sc, bi = rand(c), rand(c)
    y = memory.empty((a.size,))
    launch(
        normalization.channel_affine, a.size, dev(a.ravel()), dev(sc), dev(bi), c, s, y
    )
    want = a * sc[None, :, None] + bi[None, :, None]
    np.testing.assert_allclose(host(y), want.ravel(), rtol=1e-6)


def _reference_update(rule, w, g, hs, decay, l1, rate, p):
    g = g + decay * (np.sign(w) if l1 else w)
    if rule == "sgd":
        h = rate * g + p["momentum"] * hs[0]
        return w - h, [h]
    if rule == "nesterov":
        h = rate * g + p["momentum"] * hs[0]
        u = (1 + p["momentum"]) * h - p["momentum"] * hs[0]
        return w - u, [h]
    if rule == "adagrad":
        h = hs[0] + g * g
        return w - rate * g / (np.sqrt(h) + p["delta"]), [h]
    if rule == "rmsprop":
        h = p["rms_decay"] * hs[0] + (1 - p["rms_decay"]) * g * g
        return w - rate * g / (np.sqrt(h) + p["delta"]), [h]
    if rule == "adadelta":
        m = p["momentum"]
        h1 = m * hs[0] + (1 - m) * g * g
        d = g * np.sqrt((hs[1] + p["delta"]) / (h1 + p["delta"]))
        return w - rate * d, [h1, m * hs[1] + (1 - m) * d * d]
    b1, b2 = p["momentum"], p["momentum2"]
    m = b1 * hs[0] + (1 - b1) * g
    v = b2 * hs[1] + (1 - b2) * g * g
    return w - rate * m / (np.sqrt(v) + p["delta"]), [m, v]


@pytest.mark.parametrize(
    "rule", ["sgd", "nesterov", "adagrad", "rmsprop", "adadelta", "adam"]
)
@pytest.mark.parametrize("l1", [False, True])
def test_update_rules(rule, l1):
    p = {"momentum": 0.9, "delta": 1e-8, "rms_decay": 0.98, "momentum2": 0.999}
    n = 13
    w = rand(n).astype(np.float64)
    g = rand(n).astype(np.float64)
    hs = [np.abs(rand(n)).astype(np.float64) for _ in range(2)]
    decay, rate = 5e-4, 0.01
    want_w, want_h = _reference_update(rule, w, g, hs, decay, l1, rate, p)
    gw, gg = dev(w), dev(g)
    gh = [dev(h) for h in hs]
    if rule in ("sgd", "nesterov"):
        kern = getattr(solver, f"{rule}_update")
        launch(kern, n, gw, gg, gh[0], decay, l1, rate, p["momentum"])
    elif rule == "adagrad":
        launch(solver.adagrad_update, n, gw, gg, gh[0], decay, l1, rate, p["delta"])
    elif rule == "rmsprop":
        launch(
            solver.rmsprop_update,
            n,
            gw,
            gg,
            gh[0],
            decay,
            l1,
            rate,
            p["rms_decay"],
            p["delta"],
        )
    elif rule == "adadelta":
        launch(
            solver.adadelta_update,
            n,
            gw,
            gg,
            gh[0],
            gh[1],
            decay,
            l1,
            rate,
            p["momentum"],
            p["delta"],
        )
    else:
        launch(
            solver.adam_update,
            n,
            gw,
            gg,
            gh[0],
            gh[1],
            decay,
            l1,
            rate,
            p["momentum"],
            p["momentum2"],
            p["delta"],
        )
    np.testing.assert_allclose(host(gw), want_w, rtol=1e-12)
    for got, want in zip(gh, want_h):
        np.testing.assert_allclose(host(got), want, rtol=1e-12)
