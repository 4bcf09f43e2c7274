"""Loss layers and Accuracy: forward against PyTorch or tests/naive.py, backward
with the GradientChecker (only the non-label bottoms are checked)."""

import numpy as np
import pytest

from caffepy import TEST, TRAIN
from caffepy.blob import Blob
from caffepy.errors import LayerError, ShapeError, UnsupportedError
from caffepy.io.blobproto import write_binaryproto
from caffepy.testing import (
    GradientChecker,
    layer_from_text,
    lazy_module,
    make_blobs,
)
from tests import naive

torch = lazy_module("torch")  # forward oracle: imported on first call
F = torch.nn.functional

DTYPES = [np.float32, np.float64]


def tol(dtype):
    return (
        {"rtol": 2e-5, "atol": 1e-6}
        if dtype == np.float32
        else {"rtol": 1e-10, "atol": 1e-12}
    )


def B(dtype=np.float64):
    return Blob((), dtype)


def labels_blob(shape, classes, dtype=np.float64, seed=5, ignore=None, n_ignore=0):
    gen = np.random.default_rng(seed)
    b = Blob(shape, dtype)
    lab = gen.integers(0, classes, size=shape)
    if ignore is not None:
        flat = lab.reshape(-1)
        flat[gen.choice(flat.size, n_ignore, replace=False)] = ignore
    b.data[...] = lab
    return b


def run(text, bottoms, ntop=1, dtype=np.float64, phase=TRAIN):
    layer = layer_from_text(text, phase, dtype)
    tops = [B(dtype) for _ in range(ntop)]
    layer.SetUp(bottoms, tops)
    loss = layer.Forward(bottoms, tops)
    return layer, tops, loss


def checker(**kw):
    return GradientChecker(stepsize=1e-3, threshold=1e-4, **kw)


def t(a):
    return torch.from_numpy(np.asarray(a))


def backward_with_weight(layer, tops, bottoms, weight, prop):
    tops[0].diff[...] = weight
    layer.Backward(tops, prop, bottoms)
    return [b.diff.copy() for b in bottoms]


# -- SoftmaxWithLoss ------------------------------------------------------------------------------
def torch_softmax_loss(scores, labels, axis, ignore, norm):
    x = t(scores).double()
    x = torch.movedim(x, axis, 1)  # cross_entropy wants classes on dim 1
    y = t(labels).long().reshape(x.shape[:1] + x.shape[2:])
    ii = -100 if ignore is None else ignore
    total = F.cross_entropy(x, y, ignore_index=ii, reduction="sum")
    valid = int((y != ii).sum())
    outer_inner = y.numel()
    div = {
        "VALID": valid,
        "FULL": outer_inner,
        "BATCH_SIZE": int(np.prod(scores.shape[:axis])),
        "NONE": 1,
    }[norm]
    return float(total) / max(1, div)


SOFTMAX_LOSSES = [
    # (scores shape, axis, loss_param text, softmax axis text, ignore, norm)
    ((6, 5), 1, "", "", None, "VALID"),
    ((2, 4, 3), 1, "normalize: false", "", None, "BATCH_SIZE"),
    ((2, 3, 4), 2, "", "softmax_param { axis: 2 }", None, "VALID"),
    ((2, 4, 3, 5), 1, "ignore_label: 1 normalization: VALID", "", 1, "VALID"),
    ((2, 4, 3, 5), 1, "ignore_label: 1 normalization: BATCH_SIZE", "", 1, "BATCH_SIZE"),
    ((2, 4, 3, 5), 1, "ignore_label: 1 normalization: FULL", "", 1, "FULL"),
    ((2, 4, 3, 5), 1, "ignore_label: 1 normalization: NONE", "", 1, "NONE"),
    ((2, 4, 3), 1, "ignore_label: -1 normalize: true", "", -1, "VALID"),
    ((3, 2, 4), -1, "ignore_label: 0", "softmax_param { axis: -1 }", 0, "VALID"),
]


def softmax_loss_inputs(shape, axis, ignore, dtype):
    (s,) = make_blobs(shape, dtype=dtype, low=-3, high=3)
    ax = axis % len(shape)
    lab_shape = shape[:ax] + shape[ax + 1 :]
    n = int(np.prod(lab_shape))
    lab = labels_blob(
        lab_shape,
        shape[ax],
        dtype,
        ignore=ignore,
        n_ignore=n // 3 if ignore is not None else 0,
    )
    return s, lab


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape, axis, lp, sp, ignore, norm", SOFTMAX_LOSSES)
def test_softmax_loss_forward(dtype, shape, axis, lp, sp, ignore, norm):
    s, lab = softmax_loss_inputs(shape, axis, ignore, dtype)
    text = f'type: "SoftmaxWithLoss" loss_param {{ {lp} }} {sp}'
    _, (loss,), total = run(text, [s, lab], dtype=dtype)
    want = torch_softmax_loss(s.data, lab.data, axis % len(shape), ignore, norm)
    assert loss.shape == () and loss.data.dtype == dtype
    np.testing.assert_allclose(float(loss.data), want, **tol(dtype))
    assert total == pytest.approx(float(loss.data))  # loss_weight 1 by default


@pytest.mark.parametrize("shape, axis, lp, sp, ignore, norm", SOFTMAX_LOSSES)
def test_softmax_loss_gradient(shape, axis, lp, sp, ignore, norm):
    s, lab = softmax_loss_inputs(shape, axis, ignore, np.float64)
    layer = layer_from_text(f'type: "SoftmaxWithLoss" loss_param {{ {lp} }} {sp}')
    checker().check_gradient(layer, [s, lab], [B()], check_bottom=[0])


def test_softmax_loss_matches_torch_gradient_and_weight():
    s, lab = softmax_loss_inputs((4, 5, 3), 1, 2, np.float64)
    layer, tops, _ = run(
        'type: "SoftmaxWithLoss" loss_weight: 3 loss_param { ignore_label: 2 }',
        [s, lab],
    )
    (ds, _) = backward_with_weight(layer, tops, [s, lab], 3.0, [True, False])
    x = t(s.data).requires_grad_()
    y = t(lab.data).long()
    loss = 3 * F.cross_entropy(x, y, ignore_index=2)
    loss.backward()
    np.testing.assert_allclose(ds, x.grad.numpy(), rtol=1e-10, atol=1e-12)
    ignored = (lab.data == 2)[:, None, :].repeat(5, axis=1)
    assert not ds[ignored].any()


def test_softmax_loss_prob_top():
    s, lab = softmax_loss_inputs((3, 4, 2), 1, None, np.float64)
    layer, (_, prob), _ = run('type: "SoftmaxWithLoss"', [s, lab], ntop=2)
    assert layer.loss_weights == [1.0, 0.0]
    np.testing.assert_allclose(
        prob.data, torch.softmax(t(s.data), 1).numpy(), rtol=1e-12
    )


def test_softmax_loss_all_ignored_is_zero():
    s = make_blobs((2, 3))[0]
    lab = Blob((2,), np.float64)
    lab.data[...] = 7
    layer, tops, _ = run(
        'type: "SoftmaxWithLoss" loss_param { ignore_label: 7 }', [s, lab]
    )
    assert float(tops[0].data) == 0
    ds, _ = backward_with_weight(layer, tops, [s, lab], 1.0, [True, False])
    assert not ds.any()


@pytest.mark.parametrize("value", [5, -1, 3])
def test_softmax_loss_bad_label(value):
    s = make_blobs((2, 3))[0]
    lab = Blob((2,), np.float64)
    lab.data[...] = [0, value]
    text = 'name: "loss" type: "SoftmaxWithLoss"'
    if value == 3:
        text += " loss_param { ignore_label: 0 }"
    with pytest.raises(LayerError, match=f"'loss': label {value} is out of range"):
        run(text, [s, lab])


def test_softmax_loss_label_count_mismatch():
    s = make_blobs((2, 3, 4))[0]
    lab = Blob((2, 3), np.float64)
    with pytest.raises(
        ShapeError, match=r"\(2, 3, 4\) needs 8 labels .* shape \(2, 3\)"
    ):
        run('type: "SoftmaxWithLoss"', [s, lab])


def test_softmax_loss_no_label_gradient():
    s, lab = softmax_loss_inputs((2, 3), 1, None, np.float64)
    layer, tops, _ = run('type: "SoftmaxWithLoss"', [s, lab])
    assert not layer.allow_force_backward(1) and layer.allow_force_backward(0)
    with pytest.raises(LayerError, match="label input"):
        layer.Backward(tops, [True, True], [s, lab])


def test_softmax_loss_lenet_speed():
    """Runs every LeNet iteration: a forward+backward must stay well under 1 ms."""
    import time

    s, lab = softmax_loss_inputs((64, 10), 1, None, np.float32)
    layer, tops, _ = run('type: "SoftmaxWithLoss"', [s, lab], dtype=np.float32)
    best = 1.0
    for _ in range(5):
        t0 = time.perf_counter()
        for _ in range(20):
            layer.Forward([s, lab], tops)
            layer.Backward(tops, [True, False], [s, lab])
        best = min(best, (time.perf_counter() - t0) / 20)
    assert best < 1e-3, f"{best * 1e6:.0f} us per forward+backward"


# -- Accuracy --------------------------------------------------------------------------------------
ACCURACIES = [
    ((8, 6), "", {}),
    ((8, 6), "top_k: 3 ignore_label: 2", {"top_k": 3, "ignore_label": 2}),
    ((2, 4, 3, 3), "top_k: 2 axis: 1 ignore_label: 0", {"top_k": 2, "ignore_label": 0}),
    ((2, 3, 5), "axis: 2", {"axis": 2}),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape, param, kw", ACCURACIES)
@pytest.mark.parametrize("ties", [False, True])
def test_accuracy_forward(dtype, shape, param, kw, ties):
    (s,) = make_blobs(shape, dtype=dtype)
    if ties:
        s.data[...] = np.round(s.data * 1.5)
    axis = kw.get("axis", 1)
    lab = labels_blob(
        shape[:axis] + shape[axis + 1 :],
        shape[axis],
        dtype,
        ignore=kw.get("ignore_label"),
        n_ignore=2 if "ignore_label" in kw else 0,
    )
    layer, (acc, per), total = run(
        f'type: "Accuracy" accuracy_param {{ {param} }}',
        [s, lab],
        ntop=2,
        dtype=dtype,
        phase=TEST,
    )
    want, want_per = naive.accuracy_layer(s.data, lab.data, **kw)
    assert acc.shape == () and per.shape == (shape[axis],)
    np.testing.assert_allclose(float(acc.data), want, rtol=1e-6)
    np.testing.assert_allclose(per.data, want_per, rtol=1e-6)
    assert total == 0 and layer.loss_weights == [0.0, 0.0]  # not a loss


def test_accuracy_top1_matches_torch_argmax():
    (s,) = make_blobs((50, 7))
    lab = labels_blob((50,), 7)
    _, (acc,), _ = run('type: "Accuracy"', [s, lab], phase=TEST)
    want = (t(s.data).argmax(1) == t(lab.data).long()).double().mean()
    assert float(acc.data) == pytest.approx(float(want))


def test_accuracy_tie_with_true_class_counts_against():
    s = Blob((1, 3), np.float64)
    s.data[...] = [[1.0, 1.0, 0.0]]
    lab = Blob((1,), np.float64)
    for label, want in ((0, 0.0), (1, 0.0), (2, 0.0)):
        lab.data[...] = label
        _, (acc,), _ = run('type: "Accuracy"', [s, lab], phase=TEST)
        assert float(acc.data) == want
    lab.data[...] = 1
    _, (acc,), _ = run(
        'type: "Accuracy" accuracy_param { top_k: 2 }', [s, lab], phase=TEST
    )
    assert float(acc.data) == 1.0


def test_accuracy_errors_and_backward():
    (s,) = make_blobs((4, 3))
    lab = labels_blob((4,), 3)
    layer, tops, _ = run('type: "Accuracy"', [s, lab], phase=TEST)
    assert not layer.allow_force_backward(0)
    layer.Backward(tops, [False, False], [s, lab])
    with pytest.raises(UnsupportedError, match="not differentiable"):
        layer.Backward(tops, [True, False], [s, lab])
    with pytest.raises(LayerError, match="top_k 4 exceeds the 3 classes"):
        run('type: "Accuracy" accuracy_param { top_k: 4 }', [s, lab], phase=TEST)
    with pytest.raises(ShapeError, match="needs 4 labels"):
        run('type: "Accuracy"', [s, labels_blob((5,), 3)], phase=TEST)
    lab.data[0] = 9
    with pytest.raises(LayerError, match="label 9 is out of range"):
        run('type: "Accuracy"', [s, lab], phase=TEST)


def test_accuracy_all_ignored():
    (s,) = make_blobs((3, 4))
    lab = Blob((3,), np.float64)
    lab.data[...] = 1
    _, (acc, per), _ = run(
        'type: "Accuracy" accuracy_param { ignore_label: 1 }',
        [s, lab],
        ntop=2,
        phase=TEST,
    )
    assert float(acc.data) == 0 and not per.data.any()


# -- EuclideanLoss -----------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(4, 3, 2), (5, 6)])
def test_euclidean_forward(dtype, shape):
    a, b = make_blobs(shape, shape, dtype=dtype)
    _, (loss,), _ = run('type: "EuclideanLoss"', [a, b], dtype=dtype)
    want = (
        F.mse_loss(t(a.data).double(), t(b.data).double(), reduction="sum")
        / shape[0]
        / 2
    )
    np.testing.assert_allclose(float(loss.data), float(want), **tol(dtype))


def test_euclidean_gradient_both_bottoms():
    a, b = make_blobs((3, 2, 2), (3, 4))
    layer = layer_from_text('type: "EuclideanLoss"')
    checker().check_gradient(layer, [a, b], [B()])
    assert layer.allow_force_backward(1)


def test_euclidean_weight_and_errors():
    a, b = make_blobs((3, 2), (3, 2))
    layer, tops, _ = run('type: "EuclideanLoss" loss_weight: 0.5', [a, b])
    da, db = backward_with_weight(layer, tops, [a, b], 0.5, [True, True])
    np.testing.assert_allclose(da, 0.5 * (a.data - b.data) / 3)
    np.testing.assert_allclose(db, -da)
    with pytest.raises(ShapeError, match="same count"):
        run('type: "EuclideanLoss"', make_blobs((3, 2), (3, 3)))
    with pytest.raises(ShapeError, match="same batch size"):
        run('type: "EuclideanLoss"', make_blobs((3, 2), (2, 3)))


# -- SigmoidCrossEntropyLoss -------------------------------------------------------------------------
SIGMOIDS = [
    ("", None, "BATCH_SIZE"),
    ("ignore_label: -1 normalization: VALID", -1, "VALID"),
    ("ignore_label: -1 normalize: true", -1, "VALID"),
    ("normalize: false", None, "BATCH_SIZE"),
    ("normalization: FULL", None, "FULL"),
    ("ignore_label: -1 normalization: NONE", -1, "NONE"),
]


def sigmoid_inputs(shape, ignore, dtype):
    x, tt = make_blobs(shape, shape, dtype=dtype, low=-6, high=6)
    gen = np.random.default_rng(7)
    tt.data[...] = gen.uniform(0, 1, shape)
    if ignore is not None:
        tt.data.reshape(-1)[gen.choice(tt.count, tt.count // 4, replace=False)] = ignore
    return x, tt


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("lp, ignore, norm", SIGMOIDS)
def test_sigmoid_cross_entropy_forward(dtype, lp, ignore, norm):
    x, tt = sigmoid_inputs((3, 2, 4), ignore, dtype)
    x.data.reshape(-1)[:2] = [40.0, -40.0]  # far in the tails: must stay finite
    _, (loss,), _ = run(
        f'type: "SigmoidCrossEntropyLoss" loss_param {{ {lp} }}', [x, tt], dtype=dtype
    )
    valid = np.ones(x.shape, bool) if ignore is None else tt.data.astype(int) != ignore
    per = F.binary_cross_entropy_with_logits(
        t(x.data).double(), t(tt.data).double(), reduction="none"
    ).numpy()
    div = {"VALID": valid.sum(), "BATCH_SIZE": 3, "FULL": x.count, "NONE": 1}[norm]
    np.testing.assert_allclose(float(loss.data), per[valid].sum() / div, **tol(dtype))


@pytest.mark.parametrize("lp, ignore, norm", SIGMOIDS)
def test_sigmoid_cross_entropy_gradient(lp, ignore, norm):
    x, tt = sigmoid_inputs((2, 3, 2), ignore, np.float64)
    layer = layer_from_text(f'type: "SigmoidCrossEntropyLoss" loss_param {{ {lp} }}')
    checker().check_gradient(layer, [x, tt], [B()], check_bottom=[0])


def test_sigmoid_cross_entropy_count_mismatch():
    with pytest.raises(ShapeError, match="same count"):
        run('type: "SigmoidCrossEntropyLoss"', make_blobs((2, 3), (2, 4)))


# -- HingeLoss ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("norm", ["L1", "L2"])
@pytest.mark.parametrize("shape", [(6, 4), (3, 2, 2)])
def test_hinge_forward(dtype, norm, shape):
    (s,) = make_blobs(shape, dtype=dtype, low=-2, high=2)
    lab = labels_blob(shape[:1], int(np.prod(shape[1:])), dtype)
    _, (loss,), _ = run(
        f'type: "HingeLoss" hinge_loss_param {{ norm: {norm} }}', [s, lab], dtype=dtype
    )
    want = naive.hinge_loss_layer(s.data, lab.data, norm)
    np.testing.assert_allclose(float(loss.data), want, **tol(dtype))


@pytest.mark.parametrize("norm", ["L1", "L2"])
def test_hinge_gradient(norm):
    (s,) = make_blobs((4, 3), low=-2, high=2)
    lab = labels_blob((4,), 3)
    layer = layer_from_text(f'type: "HingeLoss" hinge_loss_param {{ norm: {norm} }}')
    # kinks where a margin is 0: |s| == 1
    for kink in (1.0, -1.0):
        assert not (np.abs(s.data - kink) < 2e-3).any()
    checker().check_gradient(layer, [s, lab], [B()], check_bottom=[0])


def test_hinge_bad_label():
    (s,) = make_blobs((2, 3))
    lab = labels_blob((2,), 3)
    lab.data[1] = 3
    with pytest.raises(
        LayerError,
        match=r"label 3 is out of range: expected an integer in "
        r"\[0, 3\)",
    ):
        run('type: "HingeLoss"', [s, lab])


# -- MultinomialLogisticLoss -----------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES)
def test_multinomial_logistic_forward(dtype):
    (p,) = make_blobs((6, 5), dtype=dtype, low=0.05, high=1.0)
    p.data[0, :] = 0  # log(0) is clipped at 1e-20
    lab = labels_blob((6,), 5, dtype)
    _, (loss,), _ = run('type: "MultinomialLogisticLoss"', [p, lab], dtype=dtype)
    logp = torch.log(torch.clamp(t(p.data).double(), min=1e-20))
    want = F.nll_loss(logp, t(lab.data).long(), reduction="sum") / 6
    np.testing.assert_allclose(float(loss.data), float(want), **tol(dtype))


def test_multinomial_logistic_gradient():
    (p,) = make_blobs((4, 3, 1, 1), low=0.2, high=1.0)
    lab = labels_blob((4,), 3)
    layer = layer_from_text('type: "MultinomialLogisticLoss"')
    checker().check_gradient(layer, [p, lab], [B()], check_bottom=[0])


# -- InfogainLoss -----------------------------------------------------------------------------------------
INFOGAINS = [
    ((6, 4), "", None, "VALID", 1),
    ((5, 3), "loss_param { ignore_label: 1 }", 1, "VALID", 1),
    (
        (2, 3, 4),
        "infogain_loss_param { axis: 1 } loss_param { normalization: FULL }",
        None,
        "FULL",
        1,
    ),
    (
        (2, 4, 3),
        (
            "infogain_loss_param { axis: -1 } loss_param { ignore_label: 0 "
            "normalization: BATCH_SIZE }"
        ),
        0,
        "BATCH_SIZE",
        2,
    ),
]


def infogain_inputs(shape, axis, ignore, dtype):
    (s,) = make_blobs(shape, dtype=dtype, low=-3, high=3)
    ax = axis % len(shape)
    C = shape[ax]
    lab = labels_blob(
        shape[:ax] + shape[ax + 1 :],
        C,
        dtype,
        ignore=ignore,
        n_ignore=2 if ignore is not None else 0,
    )
    H = Blob((C, C), dtype)
    H.data[...] = np.random.default_rng(9).uniform(0, 1.5, (C, C))
    return s, lab, H


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape, param, ignore, norm, axis", INFOGAINS)
def test_infogain_forward(dtype, shape, param, ignore, norm, axis):
    s, lab, H = infogain_inputs(
        shape, axis if "axis: -1" not in param else -1, ignore, dtype
    )
    ax = -1 if "axis: -1" in param else axis
    _, (loss, prob), _ = run(
        f'type: "InfogainLoss" {param}', [s, lab, H], ntop=2, dtype=dtype
    )
    want = naive.infogain_loss_layer(
        s.data, lab.data, H.data, ax % len(shape), ignore, norm
    )
    np.testing.assert_allclose(float(loss.data), want, **tol(dtype))
    np.testing.assert_allclose(
        prob.data, torch.softmax(t(s.data), ax).numpy(), **tol(dtype)
    )


@pytest.mark.parametrize("shape, param, ignore, norm, axis", INFOGAINS)
def test_infogain_gradient(shape, param, ignore, norm, axis):
    ax = -1 if "axis: -1" in param else axis
    s, lab, H = infogain_inputs(shape, ax, ignore, np.float64)
    layer = layer_from_text(f'type: "InfogainLoss" {param}')
    checker().check_gradient(layer, [s, lab, H], [B()], check_bottom=[0])


def test_infogain_identity_is_softmax_loss():
    s, lab, H = infogain_inputs((5, 4), 1, None, np.float64)
    H.data[...] = np.eye(4)
    _, (loss,), _ = run('type: "InfogainLoss"', [s, lab, H])
    want = F.cross_entropy(t(s.data), t(lab.data).long())
    assert float(loss.data) == pytest.approx(float(want), rel=1e-12)


def test_infogain_source_file(tmp_path, monkeypatch):
    s, lab, H = infogain_inputs((4, 3), 1, None, np.float64)
    monkeypatch.chdir(tmp_path)
    write_binaryproto("H.binaryproto", H.data.reshape(1, 1, 3, 3))
    _, (loss,), _ = run(
        'type: "InfogainLoss" infogain_loss_param { source: "H.binaryproto" }', [s, lab]
    )
    want = naive.infogain_loss_layer(s.data, lab.data, H.data.astype(np.float32))
    assert float(loss.data) == pytest.approx(want, rel=1e-6)
    with pytest.raises(LayerError, match="missing.binaryproto"):
        run(
            'type: "InfogainLoss" infogain_loss_param { source: "missing.binaryproto" }',
            [s, lab],
        )


@pytest.mark.parametrize(
    "text, bottoms, err, match",
    [
        ('type: "InfogainLoss"', 2, LayerError, "needs the infogain matrix"),
        (
            'type: "InfogainLoss" loss_param { normalize: true }',
            3,
            LayerError,
            "deprecated",
        ),
        ('type: "InfogainLoss"', "badH", ShapeError, r"expected 3 x 3"),
    ],
)
def test_infogain_errors(text, bottoms, err, match):
    s, lab, H = infogain_inputs((4, 3), 1, None, np.float64)
    blobs = [s, lab] if bottoms == 2 else [s, lab, H]
    if bottoms == "badH":
        blobs = [s, lab, Blob((2, 2), np.float64)]
    with pytest.raises(err, match=match):
        run(text, blobs)


def test_infogain_refuses_h_gradient():
    s, lab, H = infogain_inputs((4, 3), 1, None, np.float64)
    layer, tops, _ = run('type: "InfogainLoss"', [s, lab, H])
    assert [layer.allow_force_backward(i) for i in range(3)] == [True, False, False]
    with pytest.raises(LayerError, match="infogain matrix input"):
        layer.Backward(tops, [True, False, True], [s, lab, H])


# -- ContrastiveLoss -----------------------------------------------------------------------------------
def contrastive_inputs(dtype, seed=11):
    a, b = make_blobs(
        (6, 4, 1, 1), (6, 4, 1, 1), dtype=dtype, seed=seed, low=-0.6, high=0.6
    )
    y = Blob((6,), dtype)
    y.data[...] = [1, 0, 0, 1, 0, 0]
    return a, b, y


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    "margin, legacy", [(1.5, False), (1.0, True), (1.0, False), (0.6, True)]
)
def test_contrastive_forward(dtype, margin, legacy):
    a, b, y = contrastive_inputs(dtype)
    text = (
        f'type: "ContrastiveLoss" contrastive_loss_param {{ margin: {margin} '
        f"legacy_version: {str(legacy).lower()} }}"
    )
    _, (loss,), _ = run(text, [a, b, y], dtype=dtype)
    want = naive.contrastive_loss_layer(a.data, b.data, y.data, margin, legacy)
    np.testing.assert_allclose(float(loss.data), want, **tol(dtype))


@pytest.mark.parametrize("margin, legacy", [(1.5, False), (1.0, True), (1.2, False)])
def test_contrastive_gradient(margin, legacy):
    a, b, y = contrastive_inputs(np.float64)
    text = (
        f'type: "ContrastiveLoss" contrastive_loss_param {{ margin: {margin} '
        f"legacy_version: {str(legacy).lower()} }}"
    )
    layer = layer_from_text(text)
    # NOTE: the non-legacy gradient divides by d + 1e-4 rather than d (as Caffe), so
    # it is checked with a tolerance that covers that 1e-4 relative bias.
    thr = 1e-4 if legacy else 1e-3
    GradientChecker(stepsize=1e-3, threshold=thr).check_gradient(
        layer, [a, b, y], [B()], check_bottom=[0, 1]
    )
    assert not layer.allow_force_backward(2)


def test_contrastive_nonlegacy_gradient_formula():
    a, b, y = contrastive_inputs(np.float64)
    layer, tops, _ = run(
        'type: "ContrastiveLoss" contrastive_loss_param { margin: 1.5 }', [a, b, y]
    )
    da, db = backward_with_weight(layer, tops, [a, b, y], 1.0, [True, True, False])[:2]
    d = (a.data - b.data).reshape(6, -1)
    dist = np.sqrt((d * d).sum(1))
    sim = y.data != 0
    beta = np.where(sim, 1.0, -np.maximum(1.5 - dist, 0) / (dist + 1e-4))
    np.testing.assert_allclose(da.reshape(6, -1), beta[:, None] * d / 6, rtol=1e-12)
    np.testing.assert_allclose(db, -da)


def test_contrastive_shape_errors():
    a, b, y = contrastive_inputs(np.float64)
    with pytest.raises(ShapeError, match="same shape"):
        run('type: "ContrastiveLoss"', [a, make_blobs((6, 3, 1, 1))[0], y])
    with pytest.raises(ShapeError, match="one similarity label per pair"):
        run('type: "ContrastiveLoss"', [a, b, Blob((6, 2), np.float64)])
