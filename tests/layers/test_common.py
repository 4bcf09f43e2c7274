"""Common layers: Softmax, Concat, Slice, Split, Eltwise, Flatten, Reshape, Crop,
ArgMax, Reduction, Tile, Silence (caffepy/layers/common/).

Forward against PyTorch or tests/naive.py; backward with the GradientChecker.
"""

import numpy as np
import pytest

from caffepy import TEST
from caffepy.blob import Blob
from caffepy.errors import LayerError, ShapeError, UnsupportedError
from caffepy.testing import (
    GradientChecker,
    layer_from_text,
    lazy_module,
    make_blobs,
)
from tests import naive

torch = lazy_module("torch")  # forward oracle: imported on first call

DTYPES = [np.float32, np.float64]


def tol(dtype):
    return (
        {"rtol": 1e-5, "atol": 1e-6}
        if dtype == np.float32
        else {"rtol": 1e-12, "atol": 1e-12}
    )


def setup_forward(text, bottoms, ntop=1, dtype=np.float64, phase=TEST):
    layer = layer_from_text(text, phase, dtype)
    tops = [Blob((), dtype) for _ in range(ntop)]
    layer.SetUp(bottoms, tops)
    layer.Forward(bottoms, tops)
    return layer, tops


def checker(**kw):
    return GradientChecker(stepsize=1e-3, threshold=1e-4, **kw)


def B():
    """A float64 top blob (the gradient checks run in float64)."""
    return Blob((), np.float64)


def t(a):
    return torch.from_numpy(np.asarray(a))


# -- Softmax ---------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    "shape, axis", [((2, 5, 3), 1), ((2, 3, 6, 2), 2), ((3, 4), -1), ((4, 3), 0)]
)
def test_softmax_forward(dtype, shape, axis):
    (x,) = make_blobs(shape, dtype=dtype, low=-5, high=5)
    x.data[0] += 80  # large inputs: the max subtraction keeps it finite
    _, (y,) = setup_forward(
        f'type: "Softmax" softmax_param {{ axis: {axis} }}', [x], dtype=dtype
    )
    want = torch.softmax(t(x.data), dim=axis).numpy()
    assert y.data.dtype == dtype
    np.testing.assert_allclose(y.data, want, **tol(dtype))


@pytest.mark.parametrize("axis", [1, 2, -1])
def test_softmax_gradient(axis):
    bottom = make_blobs((2, 3, 4))
    layer = layer_from_text(f'type: "Softmax" softmax_param {{ axis: {axis} }}')
    checker().check_gradient(layer, bottom, [B()])


def test_softmax_in_place_matches():
    (x,) = make_blobs((2, 4, 3))
    ref = x.data.copy()
    layer, (y,) = setup_forward('type: "Softmax"', [x])
    y.diff[...] = np.linspace(-1, 1, y.count).reshape(y.shape)
    layer.Backward([y], [True], [x])
    want = x.diff.copy()
    (z,) = make_blobs((2, 4, 3))
    z.data[...] = ref
    layer = layer_from_text('type: "Softmax"')
    layer.SetUp([z], [z])
    layer.Forward([z], [z])
    np.testing.assert_allclose(z.data, y.data)
    z.diff[...] = y.diff
    layer.Backward([z], [True], [z])
    np.testing.assert_allclose(z.diff, want, rtol=1e-12, atol=1e-14)


def test_softmax_bad_axis():
    with pytest.raises(LayerError, match="axis 3 is out of range"):
        setup_forward('type: "Softmax" softmax_param { axis: 3 }', make_blobs((2, 3)))


# -- Concat / Slice / Split ------------------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    "param, axis",
    [
        ("", 1),
        ("concat_param { axis: 2 }", 2),
        ("concat_param { axis: -1 }", -1),
        ("concat_param { concat_dim: 0 }", 0),
    ],
)
def test_concat_forward(dtype, param, axis):
    shapes = []
    for k in (2, 3, 1):
        s = [2, 3, 4, 5]
        s[axis] = k
        shapes.append(tuple(s))
    bottom = make_blobs(*shapes, dtype=dtype)
    _, (y,) = setup_forward(f'type: "Concat" {param}', bottom, dtype=dtype)
    want = torch.cat([t(b.data) for b in bottom], dim=axis).numpy()
    np.testing.assert_array_equal(y.data, want)


@pytest.mark.parametrize("param", ["", "concat_param { axis: 2 }"])
def test_concat_gradient(param):
    bottom = make_blobs((2, 2, 3), (2, 3, 3))
    if param:
        bottom = make_blobs((2, 2, 3), (2, 2, 1))
    checker().check_gradient(layer_from_text(f'type: "Concat" {param}'), bottom, [B()])


def test_concat_single_bottom_and_errors():
    (x,) = make_blobs((2, 3))
    _, (y,) = setup_forward('type: "Concat"', [x])
    np.testing.assert_array_equal(y.data, x.data)
    with pytest.raises(ShapeError, match=r"bottom\[1\] has shape \(2, 3, 5\)"):
        setup_forward('type: "Concat"', make_blobs((2, 3, 4), (2, 3, 5)))
    with pytest.raises(LayerError, match="not both"):
        setup_forward(
            'type: "Concat" concat_param { axis: 1 concat_dim: 1 }',
            make_blobs((2, 3), (2, 3)),
        )


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    "param, ntop, sizes, axis",
    [
        ("slice_param { axis: 1 slice_point: 1 slice_point: 3 }", 3, [1, 2, 2], 1),
        ("slice_param { axis: 2 }", 3, [2, 2, 2], 2),
        ("slice_param { slice_dim: 0 slice_point: 1 }", 2, [1, 5], 0),
        ("", 1, [5], 1),
    ],
)
def test_slice_forward(dtype, param, ntop, sizes, axis):
    shape = [2, 5, 6, 2] if axis != 0 else [6, 5, 6, 2]
    (x,) = make_blobs(tuple(shape), dtype=dtype)
    _, tops = setup_forward(f'type: "Slice" {param}', [x], ntop, dtype=dtype)
    want = torch.split(t(x.data), sizes if axis else [1, 5], dim=axis)
    for y, w in zip(tops, want):
        np.testing.assert_array_equal(y.data, w.numpy())


@pytest.mark.parametrize(
    "param, ntop",
    [("slice_param { slice_point: 1 }", 2), ("slice_param { axis: -1 }", 2)],
)
def test_slice_gradient(param, ntop):
    bottom = make_blobs((2, 3, 4))
    checker().check_gradient(
        layer_from_text(f'type: "Slice" {param}'), bottom, [B() for _ in range(ntop)]
    )


@pytest.mark.parametrize(
    "param, ntop, err, match",
    [
        (
            "slice_param { slice_point: 1 }",
            3,
            LayerError,
            "1 slice_point values for 3 tops",
        ),
        ("slice_param { slice_point: 2 slice_point: 1 }", 3, LayerError, "increasing"),
        ("", 2, ShapeError, "do not evenly divide"),
        ("slice_param { slice_point: 9 }", 2, ShapeError, "beyond the size 3"),
    ],
)
def test_slice_errors(param, ntop, err, match):
    with pytest.raises(err, match=match):
        setup_forward(f'type: "Slice" {param}', make_blobs((2, 3)), ntop)


def test_split_forward_and_backward_sums():
    (x,) = make_blobs((2, 3, 4))
    layer, tops = setup_forward('type: "Split"', [x], 3)
    for y in tops:
        np.testing.assert_array_equal(y.data, x.data)
    for k, y in enumerate(tops):
        y.diff[...] = k + 1.0
    layer.Backward(tops, [True], [x])
    np.testing.assert_array_equal(x.diff, np.full(x.shape, 6.0))
    checker().check_gradient(
        layer_from_text('type: "Split"'), make_blobs((2, 3)), [B(), B()]
    )


def test_split_follows_bottom_reshape():
    (x,) = make_blobs((2, 3))
    layer, (y,) = setup_forward('type: "Split"', [x])
    x.reshape(4, 3)
    x.data[...] = 2.0
    layer.Forward([x], [y])
    assert y.shape == (4, 3) and (y.data == 2).all()


# -- Eltwise ---------------------------------------------------------------------------------
def distinct_blobs(n, shape, dtype=np.float64, seed=3):
    """Blobs whose values are all distinct by >= 0.01 (no MAX ties / kinks)."""
    gen = np.random.default_rng(seed)
    count = int(np.prod(shape))
    values = gen.permutation(np.linspace(-1, 1, n * count)).reshape(n, *shape)
    blobs = [Blob(shape, dtype) for _ in range(n)]
    for b, v in zip(blobs, values):
        b.data[...] = v
    return blobs


@pytest.mark.parametrize("dtype", DTYPES)
def test_eltwise_forward(dtype):
    a, b, c = make_blobs((2, 3, 4), (2, 3, 4), (2, 3, 4), dtype=dtype)
    ta, tb, tc = t(a.data), t(b.data), t(c.data)
    cases = [
        ("SUM coeff: 1 coeff: -0.5 coeff: 2", ta - 0.5 * tb + 2 * tc),
        ("SUM", ta + tb + tc),
        ("PROD", ta * tb * tc),
        ("MAX", torch.maximum(torch.maximum(ta, tb), tc)),
    ]
    for op, want in cases:
        _, (y,) = setup_forward(
            f'type: "Eltwise" eltwise_param {{ operation: {op} }}',
            [a, b, c],
            dtype=dtype,
        )
        np.testing.assert_allclose(y.data, want.numpy(), **tol(dtype))


@pytest.mark.parametrize(
    "param",
    [
        "operation: SUM coeff: 1 coeff: -0.5 coeff: 2",
        "operation: PROD",
        "operation: PROD stable_prod_grad: false",
        "operation: MAX",
    ],
)
def test_eltwise_gradient(param):
    bottom = distinct_blobs(3, (2, 3, 2))
    layer = layer_from_text(f'type: "Eltwise" eltwise_param {{ {param} }}')
    checker().check_gradient(layer, bottom, [B()])


def test_eltwise_max_ties_as_caffe():
    a, b, c = (Blob((3,)) for _ in range(3))
    a.data[...] = [1, 2, 3]
    b.data[...] = [1, 0, 3]
    c.data[...] = [1, 2, 3]
    layer, (y,) = setup_forward(
        'type: "Eltwise" eltwise_param { operation: MAX }', [a, b, c]
    )
    y.diff[...] = 1
    layer.Backward([y], [True, True, True], [a, b, c])
    # bottom 1 wins a tie with bottom 0; a later equal bottom does not replace.
    np.testing.assert_array_equal(a.diff, [0, 1, 0])
    np.testing.assert_array_equal(b.diff, [1, 0, 1])
    np.testing.assert_array_equal(c.diff, [0, 0, 0])


@pytest.mark.parametrize(
    "param, bottoms, err, match",
    [
        (
            "operation: PROD coeff: 1 coeff: 2",
            [(2,), (2,)],
            LayerError,
            "only for operation SUM",
        ),
        ("coeff: 1", [(2,), (2,)], LayerError, "1 coeff values for 2 bottoms"),
        ("", [(2, 3), (3, 2)], ShapeError, r"bottom\[1\] has shape \(3, 2\)"),
    ],
)
def test_eltwise_errors(param, bottoms, err, match):
    with pytest.raises(err, match=match):
        setup_forward(
            f'type: "Eltwise" eltwise_param {{ {param} }}', make_blobs(*bottoms)
        )


# -- Flatten / Reshape -------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("axis, end", [(1, -1), (2, 3), (1, 2), (0, -2), (-3, -2)])
def test_flatten_forward(dtype, axis, end):
    (x,) = make_blobs((2, 3, 4, 5), dtype=dtype)
    _, (y,) = setup_forward(
        f'type: "Flatten" flatten_param {{ axis: {axis} end_axis: {end} }}',
        [x],
        dtype=dtype,
    )
    want = torch.flatten(t(x.data), axis, end).numpy()
    assert y.shape == want.shape
    np.testing.assert_array_equal(y.data, want)


def test_flatten_gradient_and_errors():
    checker().check_gradient(
        layer_from_text('type: "Flatten"'), make_blobs((2, 3, 2)), [B()]
    )
    with pytest.raises(LayerError, match="end_axis 1 comes before axis 2"):
        setup_forward(
            'type: "Flatten" flatten_param { axis: 2 end_axis: 1 }',
            make_blobs((2, 3, 4)),
        )
    (x,) = make_blobs((2, 3))
    with pytest.raises(LayerError, match="in place"):
        layer_from_text('type: "Flatten"').SetUp([x], [x])


RESHAPES = [
    ((2, 3, 4, 5), [0, -1, 4], 0, -1),
    ((2, 3, 4, 5), [2, -1], 1, 2),
    ((4, 6), [2, 0, -1], 0, -1),
    ((2, 3, 4), [1], 1, 0),
    ((2, 3, 4), [1, 1], -1, 0),
    ((2, 3, 4), [-1], 0, -1),
    ((2, 3, 4), [2, 2], -2, 1),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape, dims, axis, num_axes", RESHAPES)
def test_reshape_forward(dtype, shape, dims, axis, num_axes):
    (x,) = make_blobs(shape, dtype=dtype)
    dim_text = " ".join(f"dim: {d}" for d in dims)
    text = (
        f'type: "Reshape" reshape_param {{ shape {{ {dim_text} }} axis: {axis} '
        f"num_axes: {num_axes} }}"
    )
    _, (y,) = setup_forward(text, [x], dtype=dtype)
    want_shape = naive.reshape_layer_shape(shape, dims, axis, num_axes)
    assert y.shape == want_shape
    np.testing.assert_array_equal(y.data, x.data.reshape(want_shape))


def test_reshape_gradient_and_view():
    text = 'type: "Reshape" reshape_param { shape { dim: 0 dim: -1 } }'
    checker().check_gradient(layer_from_text(text), make_blobs((2, 3, 2)), [B()])
    (x,) = make_blobs((2, 3, 2))
    _, (y,) = setup_forward(text, [x])
    x.data[...] = 4.0  # the top is a view of the bottom's data
    assert (y.data == 4).all()


@pytest.mark.parametrize(
    "dims, bottom, err, match",
    [
        ("dim: -1 dim: -1", (2, 3), LayerError, "at most one"),
        ("dim: -2", (2, 3), LayerError, "dim -2 is invalid"),
        ("dim: 4 dim: 2", (2, 3), ShapeError, "does not match bottom shape"),
        ("dim: 4 dim: -1", (2, 3), ShapeError, "cannot infer"),
        ("dim: 0 dim: 0 dim: 0", (2, 3), LayerError, "no axis 2"),
    ],
)
def test_reshape_errors(dims, bottom, err, match):
    with pytest.raises(err, match=match):
        setup_forward(
            f'type: "Reshape" reshape_param {{ shape {{ {dims} }} }}',
            make_blobs(bottom),
        )


# -- Crop -------------------------------------------------------------------------------------
CROPS = [
    ((2, 4, 9, 11), (1, 1, 5, 6), "axis: 2 offset: 1 offset: 3", 2, (1, 3)),
    ((2, 4, 9, 11), (2, 2, 6, 7), "axis: 1 offset: 1", 1, (1,)),
    ((2, 3, 6, 6), (2, 3, 4, 5), "", 2, ()),
    ((3, 4, 5), (2, 2, 2), "axis: -3 offset: 1 offset: 0 offset: 2", 0, (1, 0, 2)),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("xs, rs, param, axis, offset", CROPS)
def test_crop_forward(dtype, xs, rs, param, axis, offset):
    x, ref = make_blobs(xs, rs, dtype=dtype)
    _, (y,) = setup_forward(
        f'type: "Crop" crop_param {{ {param} }}', [x, ref], dtype=dtype
    )
    np.testing.assert_array_equal(y.data, naive.crop_layer(x.data, rs, axis, offset))


def test_crop_gradient_and_reference():
    x, ref = make_blobs((2, 3, 5, 4), (1, 1, 3, 2))
    layer = layer_from_text('type: "Crop" crop_param { offset: 1 }')
    checker().check_gradient(layer, [x, ref], [B()], check_bottom=[0])
    assert not layer.allow_force_backward(1)
    ref.diff[...] = 3
    layer.Backward([Blob((2, 3, 3, 2))], [False, True], [x, ref])
    assert not ref.diff.any()


@pytest.mark.parametrize(
    "param, xs, rs, err, match",
    [
        ("offset: 3", (2, 3, 5, 4), (2, 3, 3, 2), ShapeError, "cannot crop axis 2"),
        (
            "offset: 1 offset: 1 offset: 1",
            (2, 3, 5, 4),
            (2, 3, 3, 2),
            LayerError,
            "3 offsets for the 2 axes",
        ),
        ("axis: 4", (2, 3, 5, 4), (2, 3, 3, 2), LayerError, "axis 4 is out of range"),
    ],
)
def test_crop_errors(param, xs, rs, err, match):
    with pytest.raises(err, match=match):
        setup_forward(f'type: "Crop" crop_param {{ {param} }}', make_blobs(xs, rs))


# -- ArgMax -----------------------------------------------------------------------------------
ARGMAXES = [
    ((3, 7), "top_k: 2 out_max_val: true", {"top_k": 2, "out_max_val": True}),
    ((2, 5, 3, 4), "axis: 1 top_k: 2", {"top_k": 2, "axis": 1}),
    ((2, 3, 6), "axis: 2 out_max_val: true", {"out_max_val": True, "axis": 2}),
    ((2, 3, 2, 2), "", {}),
    ((2, 3, 4), "axis: -1 top_k: 3", {"top_k": 3, "axis": -1}),
    ((2, 6), "top_k: 6", {"top_k": 6}),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape, param, kw", ARGMAXES)
@pytest.mark.parametrize("ties", [False, True])
def test_argmax_forward(dtype, shape, param, kw, ties):
    (x,) = make_blobs(shape, dtype=dtype)
    if ties:  # few distinct values: equal values order by the larger index first
        x.data[...] = np.round(x.data * 1.5)
    _, (y,) = setup_forward(
        f'type: "ArgMax" argmax_param {{ {param} }}', [x], dtype=dtype
    )
    want = naive.argmax_layer(x.data, **kw)
    assert y.shape == want.shape
    np.testing.assert_array_equal(y.data, want)


def test_argmax_not_differentiable_and_errors():
    (x,) = make_blobs((2, 3))
    layer, (y,) = setup_forward('type: "ArgMax"', [x])
    assert not layer.allow_force_backward(0)
    layer.Backward([y], [False], [x])
    with pytest.raises(UnsupportedError, match="not differentiable"):
        layer.Backward([y], [True], [x])
    with pytest.raises(ShapeError, match="top_k 4 exceeds the 3 entries"):
        setup_forward('type: "ArgMax" argmax_param { top_k: 4 }', [x])
    with pytest.raises(LayerError, match="top_k must be at least 1"):
        setup_forward('type: "ArgMax" argmax_param { top_k: 0 }', [x])


# -- Reduction ----------------------------------------------------------------------------------
REDUCTIONS = [
    ("SUM", 1, 2.0, lambda x, a: x.sum(dim=tuple(range(a, x.dim())))),
    ("ASUM", 2, -1.0, lambda x, a: x.abs().sum(dim=tuple(range(a, x.dim())))),
    ("SUMSQ", 0, 0.5, lambda x, a: (x * x).sum()),
    ("MEAN", -1, 3.0, lambda x, a: x.mean(dim=-1)),
    ("MEAN", 1, 1.0, lambda x, a: x.mean(dim=(1, 2))),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("op, axis, coeff, fn", REDUCTIONS)
def test_reduction_forward(dtype, op, axis, coeff, fn):
    (x,) = make_blobs((2, 3, 4), dtype=dtype)
    text = (
        f'type: "Reduction" reduction_param {{ operation: {op} axis: {axis} '
        f"coeff: {coeff} }}"
    )
    _, (y,) = setup_forward(text, [x], dtype=dtype)
    want = (coeff * fn(t(x.data), axis % 3)).numpy()
    assert y.shape == want.shape
    np.testing.assert_allclose(y.data, want, **tol(dtype))


@pytest.mark.parametrize("op, axis, coeff, fn", REDUCTIONS)
def test_reduction_gradient(op, axis, coeff, fn):
    text = (
        f'type: "Reduction" reduction_param {{ operation: {op} axis: {axis} '
        f"coeff: {coeff} }}"
    )
    bottom = distinct_blobs(1, (2, 3, 2))  # no element at the |x| kink
    checker(kink=0.0, kink_range=2e-3).check_gradient(
        layer_from_text(text), bottom, [B()]
    )


def test_reduction_default_is_sum_to_scalar():
    (x,) = make_blobs((2, 2))
    _, (y,) = setup_forward('type: "Reduction"', [x])
    assert y.shape == ()
    np.testing.assert_allclose(y.data, x.data.sum())


# -- Tile / Silence -------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    "shape, param, axis, tiles",
    [
        ((2, 3, 2), "tiles: 3", 1, 3),
        ((2, 2, 3), "axis: -1 tiles: 2", 2, 2),
        ((1, 3, 2), "axis: 0 tiles: 4", 0, 4),
    ],
)
def test_tile_forward(dtype, shape, param, axis, tiles):
    (x,) = make_blobs(shape, dtype=dtype)
    _, (y,) = setup_forward(f'type: "Tile" tile_param {{ {param} }}', [x], dtype=dtype)
    reps = [1] * len(shape)
    reps[axis] = tiles
    np.testing.assert_array_equal(y.data, t(x.data).repeat(*reps).numpy())


def test_tile_gradient_and_errors():
    layer = layer_from_text('type: "Tile" tile_param { axis: 1 tiles: 3 }')
    checker().check_gradient(layer, make_blobs((2, 2, 2)), [B()])
    with pytest.raises(LayerError, match="tiles must be positive, got 0"):
        setup_forward('type: "Tile"', make_blobs((2, 2)))


def test_silence_zero_diffs():
    x, z = make_blobs((2, 3), (4,))
    layer, _ = setup_forward('type: "Silence"', [x, z], ntop=0)
    x.diff[...] = 5
    z.diff[...] = 5
    layer.Backward([], [True, False], [x, z])
    assert not x.diff.any() and (z.diff == 5).all()
