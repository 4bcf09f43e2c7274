"""N-D (3-D) Convolution and Deconvolution on 5-D blobs, and the N-D im2col kernels.

Forward against PyTorch's conv3d / conv_transpose3d (CPU, float64) and a naive
loop; backward with the GradientChecker and against torch's autograd.
"""

import numpy as np
import pytest

from caffepy.backend.base import ConvGeometry
from caffepy.backend.cpu import conv_nd
from caffepy.blob import Blob
from caffepy.kernels import im2col_nd
from caffepy.testing import GradientChecker, layer_from_text, lazy_module, make_blobs

torch = lazy_module("torch")  # forward oracle: imported on first call

# (convolution_param text, bottom shape, torch kwargs)
CONV_CASES = {
    "k3_pad1": (
        "num_output: 4 kernel_size: 3 pad: 1",
        (2, 3, 4, 5, 6),
        dict(padding=1),
    ),
    "per_axis": (
        "num_output: 3 kernel_size: 2 kernel_size: 3 kernel_size: 1 "
        "pad: 1 pad: 0 pad: 2 stride: 2 stride: 1 stride: 3",
        (2, 2, 5, 4, 7),
        dict(padding=(1, 0, 2), stride=(2, 1, 3)),
    ),
    "dilation_group": (
        "num_output: 4 kernel_size: 2 dilation: 2 dilation: 1 dilation: 2 "
        "group: 2 pad: 1",
        (1, 4, 5, 4, 6),
        dict(padding=1, dilation=(2, 1, 2), groups=2),
    ),
    "no_bias_stride2": (
        "num_output: 2 kernel_size: 3 stride: 2 bias_term: false",
        (3, 2, 7, 6, 5),
        dict(stride=2),
    ),
}


def _conv_text(kind, params):
    return (
        f'name: "c" type: "{kind}" convolution_param {{ {params} '
        'weight_filler { type: "gaussian" std: 0.5 } '
        'bias_filler { type: "uniform" min: -1 max: 1 } }'
    )


def _build(kind, params, shape, dtype=np.float64):
    layer = layer_from_text(_conv_text(kind, params), dtype=dtype)
    bottom, top = make_blobs(shape, dtype=dtype), [Blob((), dtype)]
    layer.SetUp(bottom, top)
    return layer, bottom, top


def _torch_args(layer, bottom):
    x = torch.from_numpy(bottom[0].data.astype(np.float64)).requires_grad_()
    w = torch.from_numpy(layer.blobs[0].data.astype(np.float64)).requires_grad_()
    b = None
    if len(layer.blobs) > 1:
        b = torch.from_numpy(layer.blobs[1].data.astype(np.float64)).requires_grad_()
    return x, w, b


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", sorted(CONV_CASES))
def test_conv3d_forward_and_backward_match_torch(case, dtype):
    params, shape, kw = CONV_CASES[case]
    layer, bottom, top = _build("Convolution", params, shape, dtype)
    layer.Forward(bottom, top)
    x, w, b = _torch_args(layer, bottom)
    ref = torch.nn.functional.conv3d(x, w, b, **kw)
    tol = dict(rtol=1e-4, atol=1e-4) if dtype == np.float32 else dict(rtol=1e-10)
    assert top[0].shape == tuple(ref.shape)
    np.testing.assert_allclose(top[0].data, ref.detach().numpy(), **tol)

    dy = np.random.default_rng(3).standard_normal(top[0].shape)
    top[0].diff[...] = dy
    for blob in layer.blobs:
        blob.diff[...] = 0
    layer.Backward(top, [True], bottom)
    ref.backward(torch.from_numpy(dy.astype(dtype).astype(np.float64)))
    np.testing.assert_allclose(bottom[0].diff, x.grad.numpy(), **tol)
    np.testing.assert_allclose(layer.blobs[0].diff, w.grad.numpy(), **tol)
    if b is not None:
        np.testing.assert_allclose(layer.blobs[1].diff, b.grad.numpy(), **tol)


# (convolution_param text, bottom shape, torch conv_transpose3d kwargs)
DECONV_CASES = {
    "k3_s2_p1": (
        "num_output: 3 kernel_size: 3 stride: 2 pad: 1",
        (2, 2, 3, 4, 3),
        dict(stride=2, padding=1),
    ),
    "per_axis_group": (
        "num_output: 4 kernel_size: 2 kernel_size: 3 kernel_size: 2 "
        "stride: 1 stride: 2 stride: 3 group: 2 dilation: 2",
        (1, 4, 3, 2, 3),
        dict(stride=(1, 2, 3), groups=2, dilation=2),
    ),
}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", sorted(DECONV_CASES))
def test_deconv3d_forward_and_backward_match_torch(case, dtype):
    params, shape, kw = DECONV_CASES[case]
    layer, bottom, top = _build("Deconvolution", params, shape, dtype)
    layer.Forward(bottom, top)
    x, w, b = _torch_args(layer, bottom)
    ref = torch.nn.functional.conv_transpose3d(x, w, b, **kw)
    tol = dict(rtol=1e-4, atol=1e-4) if dtype == np.float32 else dict(rtol=1e-10)
    assert top[0].shape == tuple(ref.shape)
    np.testing.assert_allclose(top[0].data, ref.detach().numpy(), **tol)

    dy = np.random.default_rng(4).standard_normal(top[0].shape)
    top[0].diff[...] = dy
    for blob in layer.blobs:
        blob.diff[...] = 0
    layer.Backward(top, [True], bottom)
    ref.backward(torch.from_numpy(dy.astype(dtype).astype(np.float64)))
    np.testing.assert_allclose(bottom[0].diff, x.grad.numpy(), **tol)
    np.testing.assert_allclose(layer.blobs[0].diff, w.grad.numpy(), **tol)
    np.testing.assert_allclose(layer.blobs[1].diff, b.grad.numpy(), **tol)


@pytest.mark.parametrize(
    "kind, params, shape",
    [
        ("Convolution", "num_output: 2 kernel_size: 2 pad: 1 stride: 2", (2, 2, 3, 3, 4)),
        ("Convolution", "num_output: 2 kernel_size: 2 group: 2", (1, 2, 3, 2, 3)),
        ("Deconvolution", "num_output: 2 kernel_size: 2 stride: 2 pad: 1", (1, 2, 2, 3, 2)),
    ],
)  # fmt: skip
def test_nd_conv_gradient(kind, params, shape):
    layer, bottom, top = _build(kind, params, shape)
    GradientChecker(stepsize=1e-3, threshold=1e-4).check_gradient(layer, bottom, top)


def test_conv4d_matches_naive_loop():
    """Four spatial axes (6-D blobs): against an explicit loop."""
    params = "num_output: 2 kernel_size: 2 pad: 1 stride: 2 bias_term: false"
    layer, bottom, top = _build("Convolution", params, (1, 2, 3, 2, 3, 2))
    layer.Forward(bottom, top)
    x = np.pad(bottom[0].data, [(0, 0), (0, 0)] + [(1, 1)] * 4)
    w = layer.blobs[0].data
    ref = np.zeros(top[0].shape)
    for m in range(2):
        for pos in np.ndindex(*top[0].shape[2:]):
            window = tuple(slice(2 * p, 2 * p + 2) for p in pos)
            ref[(0, m) + pos] = np.sum(x[(0, slice(None)) + window] * w[m])
    np.testing.assert_allclose(top[0].data, ref, rtol=1e-12)


def test_im2col_nd_and_col2im_nd_are_adjoint():
    """<im2col(x), c> == <x, col2im(c)> for random x and c (the fold is the
    unfold's transpose), and im2col matches a naive unfold."""
    gen = np.random.default_rng(0)
    geom = ConvGeometry(
        num=2, in_channels=2, out_channels=1, in_spatial=(3, 4, 5),
        out_spatial=(2, 4, 2), kernel=(2, 1, 3), pad=(0, 1, 1), stride=(1, 1, 2),
        dilation=(1, 2, 1), group=1,
    )  # fmt: skip
    x = gen.standard_normal((2, 2, 3, 4, 5))
    rows = 2 * 2 * 1 * 3
    col = np.empty((rows, 2, 2, 4, 2))
    conv_nd.im2col(x, geom, col)
    xp = np.pad(x, [(0, 0), (0, 0), (0, 0), (1, 1), (1, 1)])
    naive = np.empty_like(col)
    for r, (c, ka, kb, kc) in enumerate(np.ndindex(2, 2, 1, 3)):
        for n, a, b, cc in np.ndindex(2, 2, 4, 2):
            naive[r, n, a, b, cc] = xp[n, c, a + ka, b + 2 * kb, 2 * cc + kc]
    np.testing.assert_array_equal(col, naive)
    c = gen.standard_normal(col.shape)
    back = np.empty_like(x)
    conv_nd.col2im(c, geom, back)
    np.testing.assert_allclose(np.vdot(col, c), np.vdot(x, back), rtol=1e-12)


def test_nd_kernels_are_the_2d_kernels_on_2d_geometry():
    """On a 2-D geometry the N-D unfold gives the 2-D kernel's columns."""
    from caffepy.backend.cpu import conv as conv2d

    gen = np.random.default_rng(1)
    geom = ConvGeometry(
        num=2, in_channels=3, out_channels=1, in_spatial=(5, 6), out_spatial=(3, 3),
        kernel=(3, 2), pad=(1, 0), stride=(2, 2), dilation=(1, 1), group=1,
    )  # fmt: skip
    x = gen.standard_normal((2, 3, 5, 6))
    a = np.empty((18, 2, 3, 3))
    b = np.empty_like(a)
    conv2d.im2col(x, geom, a)
    args = [np.asarray(v, np.int64) for v in (
        geom.in_spatial, geom.out_spatial, geom.kernel, geom.pad, geom.stride,
        geom.dilation)]  # fmt: skip
    im2col_nd.im2col_nd(x, *args, b)
    np.testing.assert_array_equal(a, b)


def test_nd_conv_in_chunks_matches_one_chunk(monkeypatch):
    """A batch unfolded a few images at a time gives the same results."""
    params, shape, _ = CONV_CASES["k3_pad1"]
    layer, bottom, top = _build("Convolution", params, shape)
    layer.Forward(bottom, top)
    want = top[0].data.copy()
    top[0].diff[...] = np.random.default_rng(5).standard_normal(top[0].shape)
    layer.blobs[0].diff[...] = 0
    layer.Backward(top, [True], bottom)
    want_dx, want_dw = bottom[0].diff.copy(), layer.blobs[0].diff.copy()
    monkeypatch.setattr(conv_nd, "COL_BUFFER_ELEMENTS", 1)
    layer.Forward(bottom, top)
    np.testing.assert_allclose(top[0].data, want, rtol=1e-12)
    layer.blobs[0].diff[...] = 0
    layer.Backward(top, [True], bottom)
    np.testing.assert_allclose(bottom[0].diff, want_dx, rtol=1e-12)
    np.testing.assert_allclose(layer.blobs[0].diff, want_dw, rtol=1e-12)


def test_nd_conv_in_gpu_mode_runs_the_host_op():
    """In GPU mode a 3-D convolution runs its op on the host (the device kernels
    are 2-D) and gives the CPU results."""
    from caffepy.backend import cuda, mode

    try:
        cuda.check_available(0)
    except cuda.GpuUnavailableError as exc:
        pytest.skip(str(exc))
    params, shape, _ = CONV_CASES["per_axis"]
    layer, bottom, top = _build("Deconvolution", params, shape, np.float32)
    layer.Forward(bottom, top)
    top[0].diff[...] = np.random.default_rng(6).standard_normal(top[0].shape)
    layer.Backward(top, [True], bottom)
    want = (top[0].data.copy(), bottom[0].diff.copy(), layer.blobs[0].diff.copy())
    layer.blobs[0].diff[...] = 0
    layer.blobs[1].diff[...] = 0
    mode.set_device(0)
    mode.set_mode_gpu()
    try:
        layer.Forward(bottom, top)
        layer.Backward(top, [True], bottom)
        got = (top[0].data, bottom[0].diff, layer.blobs[0].diff)
        for g, w in zip(got, want):
            np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-5)
    finally:
        mode.set_mode_cpu()
