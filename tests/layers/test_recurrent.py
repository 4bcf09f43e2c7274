"""Recurrent layers: LSTM, RNN, LSTMUnit (caffepy/layers/recurrent/).

Forward against explicit per-step loops written from the equations (and PyTorch's
LSTM/RNN for plain sequences); backward with the GradientChecker; the Caffe
golden cases are in tests/test_golden_layers_2.py.
"""

from __future__ import annotations

import numpy as np
import pytest

import caffepy
from caffepy import TEST
from caffepy.blob import Blob
from caffepy.errors import LayerError, ShapeError
from caffepy.layers.recurrent import LSTMLayer, RNNLayer
from caffepy.proto import caffe_pb2
from caffepy.testing import GradientChecker, layer_from_text, lazy_module, make_blobs

torch = lazy_module("torch")  # forward oracle: imported on first call

FILLERS = (
    'weight_filler { type: "uniform" min: -0.6 max: 0.6 } '
    'bias_filler { type: "uniform" min: -0.4 max: 0.4 }'
)


def recurrent_text(kind: str, num_output: int, expose: bool = False) -> str:
    expose_text = " expose_hidden: true" if expose else ""
    return (
        f'type: "{kind}" recurrent_param {{ num_output: {num_output} {FILLERS}'
        f"{expose_text} }}"
    )


def B():
    """A float64 top blob (the gradient checks run in float64)."""
    return Blob((), np.float64)


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


# -- naive references, one loop step per time step ---------------------------------
def naive_lstm(x, cont, params, h0=None, c0=None, x_static=None):
    """h (T, N, H) and the final (h, c) of Caffe's LSTM, step by step."""
    T, N = cont.shape
    W_xc, b_c = params[0], params[1]
    W_hc = params[-1]
    H = W_hc.shape[1]
    h = np.zeros((N, H)) if h0 is None else h0.reshape(N, H).copy()
    c = np.zeros((N, H)) if c0 is None else c0.reshape(N, H).copy()
    xs = x.reshape(T, N, -1)
    out = np.zeros((T, N, H))
    for t in range(T):
        keep = cont[t][:, None]
        pre = xs[t] @ W_xc.T + b_c + (keep * h) @ W_hc.T
        if x_static is not None:
            pre = pre + x_static.reshape(N, -1) @ params[2].T
        i = sigmoid(pre[:, :H])
        f = sigmoid(pre[:, H : 2 * H])
        o = sigmoid(pre[:, 2 * H : 3 * H])
        g = np.tanh(pre[:, 3 * H :])
        c = keep * f * c + i * g
        h = o * np.tanh(c)
        out[t] = h
    return out, h, c


def naive_rnn(x, cont, params, h0=None, x_static=None):
    """o (T, N, H) and the final h of Caffe's RNN, step by step."""
    T, N = cont.shape
    W_xh, b_h = params[0], params[1]
    W_hh, W_ho, b_o = params[-3], params[-2], params[-1]
    H = W_hh.shape[0]
    h = np.zeros((N, H)) if h0 is None else h0.reshape(N, H).copy()
    xs = x.reshape(T, N, -1)
    out = np.zeros((T, N, H))
    for t in range(T):
        pre = xs[t] @ W_xh.T + b_h + (cont[t][:, None] * h) @ W_hh.T
        if x_static is not None:
            pre = pre + x_static.reshape(N, -1) @ params[2].T
        h = np.tanh(pre)
        out[t] = np.tanh(h @ W_ho.T + b_o)
    return out, h


NAIVE = {"LSTM": naive_lstm, "RNN": naive_rnn}


def _inputs(T, N, x_tail, static_dim=None, dtype=np.float64, seed=3):
    shapes = [(T, N) + x_tail, (T, N)]
    if static_dim is not None:
        shapes.append((N, static_dim))
    blobs = make_blobs(*shapes, dtype=dtype, seed=seed)
    gen = np.random.default_rng(seed)
    cont = (gen.uniform(size=(T, N)) > 0.3).astype(dtype)
    cont[0] = 0  # every stream starts a sequence at t = 0
    cont[T // 2, 0] = 0  # and one restarts in the middle
    blobs[1].data[...] = cont
    return blobs


def _run(text, bottoms, ntop=1, dtype=np.float64):
    layer = layer_from_text(text, TEST, dtype)
    tops = [Blob((), dtype) for _ in range(ntop)]
    layer.SetUp(bottoms, tops)
    layer.Forward(bottoms, tops)
    return layer, tops


def _params(layer):
    return [np.array(b.data, np.float64) for b in layer.blobs]


# -- LSTMUnit ----------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_lstm_unit_forward_matches_the_equations(dtype):
    c_prev, x, cont = make_blobs((1, 3, 4), (1, 3, 16), (1, 3), dtype=dtype, low=-2)
    cont.data[...] = [[1, 0, 1]]
    _, (c, h) = _run('type: "LSTMUnit"', [c_prev, x, cont], 2, dtype)
    gates = x.data.reshape(3, 4, 4).astype(np.float64)
    i, f, o = sigmoid(gates[:, 0]), sigmoid(gates[:, 1]), sigmoid(gates[:, 2])
    g = np.tanh(gates[:, 3])
    want_c = cont.data.reshape(3, 1) * f * c_prev.data[0] + i * g
    tol = 1e-6 if dtype == np.float32 else 1e-13
    np.testing.assert_allclose(c.data[0], want_c, rtol=tol, atol=tol)
    np.testing.assert_allclose(h.data[0], o * np.tanh(want_c), rtol=tol, atol=tol)


def test_lstm_unit_gradient():
    bottom = make_blobs((1, 3, 2), (1, 3, 8), (1, 3), low=-2, high=2)
    bottom[2].data[...] = [[1, 0, 1]]
    layer = layer_from_text('type: "LSTMUnit"')
    GradientChecker(1e-3, 1e-4).check_gradient(
        layer, bottom, [B(), B()], check_bottom=[0, 1]
    )


def test_lstm_unit_large_inputs_stay_finite():
    c_prev, x, cont = make_blobs((1, 2, 2), (1, 2, 8), (1, 2))
    x.data[...] = np.tile([-1e4, 1e4], 8).reshape(1, 2, 8)
    _, (c, h) = _run('type: "LSTMUnit"', [c_prev, x, cont], 2)
    assert np.isfinite(c.data).all() and np.isfinite(h.data).all()


def test_lstm_unit_refuses_a_bad_gate_input():
    bottom = make_blobs((1, 3, 4), (1, 3, 15), (1, 3))
    with pytest.raises(ShapeError, match=r"\(1, 3, 16\)"):
        _run('type: "LSTMUnit"', bottom, 2)


# -- LSTM and RNN forward ------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["LSTM", "RNN"])
@pytest.mark.parametrize("static", [None, 3])
def test_forward_matches_the_step_loop(kind, static):
    bottom = _inputs(5, 3, (2, 2), static)
    layer, (y,) = _run(recurrent_text(kind, 4), bottom)
    xs = bottom[2].data if static else None
    want = NAIVE[kind](bottom[0].data, bottom[1].data, _params(layer), x_static=xs)[0]
    assert y.shape == (5, 3, 4)
    np.testing.assert_allclose(y.data, want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("kind", ["LSTM", "RNN"])
def test_float32_forward_matches_the_step_loop(kind):
    bottom = _inputs(4, 2, (3,), dtype=np.float32)
    layer, (y,) = _run(recurrent_text(kind, 3), bottom, dtype=np.float32)
    want = NAIVE[kind](bottom[0].data, bottom[1].data, _params(layer))[0]
    np.testing.assert_allclose(y.data, want, rtol=1e-5, atol=1e-6)


def test_lstm_forward_matches_pytorch():
    T, N, D, H = 4, 3, 5, 6
    x, cont = _inputs(T, N, (D,))
    cont.data[...] = 1
    cont.data[0] = 0
    layer, (y,) = _run(recurrent_text("LSTM", H), [x, cont])
    W_xc, b_c, W_hc = _params(layer)
    lstm = torch.nn.LSTM(D, H).double()
    # NOTE: Caffe orders the gates i, f, o, g; PyTorch i, f, g, o.
    order = np.r_[0:H, H : 2 * H, 3 * H : 4 * H, 2 * H : 3 * H]
    with torch.no_grad():
        lstm.weight_ih_l0.copy_(torch.from_numpy(W_xc[order]))
        lstm.weight_hh_l0.copy_(torch.from_numpy(W_hc[order]))
        lstm.bias_ih_l0.copy_(torch.from_numpy(b_c[order]))
        lstm.bias_hh_l0.zero_()
        want, _ = lstm(torch.from_numpy(x.data.copy()))
    np.testing.assert_allclose(y.data, want.numpy(), rtol=1e-10, atol=1e-12)


def test_rnn_hidden_state_matches_pytorch():
    T, N, D, H = 4, 2, 3, 5
    x, cont = _inputs(T, N, (D,))
    cont.data[...] = 1
    cont.data[0] = 0
    layer, (o,) = _run(recurrent_text("RNN", H), [x, cont])
    W_xh, b_h, W_hh, W_ho, b_o = _params(layer)
    rnn = torch.nn.RNN(D, H, nonlinearity="tanh").double()
    with torch.no_grad():
        rnn.weight_ih_l0.copy_(torch.from_numpy(W_xh))
        rnn.weight_hh_l0.copy_(torch.from_numpy(W_hh))
        rnn.bias_ih_l0.copy_(torch.from_numpy(b_h))
        rnn.bias_hh_l0.zero_()
        h, _ = rnn(torch.from_numpy(x.data.copy()))
    want = np.tanh(h.numpy() @ W_ho.T + b_o)
    np.testing.assert_allclose(o.data, want, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("kind", ["LSTM", "RNN"])
def test_state_carries_to_the_next_forward(kind):
    bottom = _inputs(3, 2, (2,))
    bottom[1].data[0] = [1, 0]  # stream 0 continues from the previous forward
    layer, (y,) = _run(recurrent_text(kind, 3), bottom)
    first = NAIVE[kind](bottom[0].data, bottom[1].data, _params(layer))
    np.testing.assert_allclose(y.data, first[0], rtol=1e-12, atol=1e-12)
    layer.Forward(bottom, [y])
    state = dict(h0=first[1]) if kind == "RNN" else dict(h0=first[1], c0=first[2])
    second = NAIVE[kind](bottom[0].data, bottom[1].data, _params(layer), **state)[0]
    np.testing.assert_allclose(y.data, second, rtol=1e-12, atol=1e-12)
    assert not np.allclose(second[:, 0], first[0][:, 0])
    np.testing.assert_allclose(y.data[:, 1], first[0][:, 1], rtol=1e-12)


@pytest.mark.parametrize("kind", ["LSTM", "RNN"])
def test_expose_hidden_takes_and_gives_the_state(kind):
    T, N, H = 3, 2, 3
    nrec = 2 if kind == "LSTM" else 1
    bottom = _inputs(T, N, (4,)) + make_blobs(*[(1, N, H)] * nrec, seed=9)
    bottom[1].data[0] = 1  # continue from the given state
    layer, tops = _run(recurrent_text(kind, H, expose=True), bottom, 1 + nrec)
    state = [b.data for b in bottom[2:]]
    want = NAIVE[kind](bottom[0].data, bottom[1].data, _params(layer), *state)
    np.testing.assert_allclose(tops[0].data, want[0], rtol=1e-12, atol=1e-12)
    for top, final in zip(tops[1:], want[1:]):
        assert top.shape == (1, N, H)
        np.testing.assert_allclose(top.data[0], final, rtol=1e-12, atol=1e-12)
    # A second forward starts again from the given state (nothing carried).
    layer.Forward(bottom, tops)
    np.testing.assert_allclose(tops[0].data, want[0], rtol=1e-12, atol=1e-12)


# -- gradients ---------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["LSTM", "RNN"])
@pytest.mark.parametrize("static", [None, 2])
def test_gradient(kind, static):
    bottom = _inputs(3, 2, (2,), static)
    layer = layer_from_text(recurrent_text(kind, 2))
    check = [0, 2] if static else [0]
    GradientChecker(1e-3, 1e-4).check_gradient(layer, bottom, [B()], check)


@pytest.mark.parametrize("kind", ["LSTM", "RNN"])
def test_gradient_with_exposed_hidden_state(kind):
    nrec = 2 if kind == "LSTM" else 1
    bottom = _inputs(3, 2, (2,)) + make_blobs(*[(1, 2, 2)] * nrec, seed=5)
    bottom[1].data[0] = 1
    layer = layer_from_text(recurrent_text(kind, 2, expose=True))
    tops = [B() for _ in range(1 + nrec)]
    checker = GradientChecker(1e-3, 1e-4)
    # The objective is the output (top 0): the final state has no gradient.
    for k in (0, 5, 11):
        checker.check_gradient(layer, bottom, tops, [0], top_id=0, top_data_id=k)


def test_gradient_float32():
    bottom = _inputs(2, 2, (2,), dtype=np.float32)
    layer = layer_from_text(recurrent_text("LSTM", 2), dtype=np.float32)
    GradientChecker(1e-2, 1e-2).check_gradient(layer, bottom, [Blob((), np.float32)], 0)


# -- parameters, counts, errors ---------------------------------------------------------------
@pytest.mark.parametrize(
    "kind, static, expose, count",
    [
        ("LSTM", False, False, 3),
        ("LSTM", True, False, 4),
        ("LSTM", True, True, 4),
        ("RNN", False, False, 5),
        ("RNN", True, True, 6),
    ],
)
def test_param_blob_count_matches_the_built_layer(kind, static, expose, count):
    nrec = (2 if kind == "LSTM" else 1) if expose else 0
    shapes = [(2, 3, 4), (2, 3)] + ([(3, 2)] if static else []) + [(1, 3, 5)] * nrec
    text = recurrent_text(kind, 5, expose)
    param = caffe_pb2.LayerParameter(type=kind)
    param.bottom.extend([f"b{i}" for i in range(len(shapes))])
    param.recurrent_param.expose_hidden = expose
    cls = LSTMLayer if kind == "LSTM" else RNNLayer
    assert cls.param_blob_count(param) == count
    layer, _ = _run(text, make_blobs(*shapes), 1 + nrec)
    assert len(layer.blobs) == count


def test_lstm_blob_shapes_are_caffes():
    layer, _ = _run(recurrent_text("LSTM", 5), _inputs(3, 2, (4,), 3))
    assert [b.shape for b in layer.blobs] == [(20, 4), (20,), (20, 3), (20, 5)]


def test_weights_set_on_the_layer_reach_every_time_step():
    bottom = _inputs(3, 2, (2,))
    layer, (y,) = _run(recurrent_text("RNN", 2), bottom)
    layer.blobs[2].data[...] = 0  # W_hh: no recurrence left
    layer.Forward(bottom, [y])
    params = _params(layer)
    xs = bottom[0].data
    want = np.tanh(np.tanh(xs @ params[0].T + params[1]) @ params[3].T + params[4])
    np.testing.assert_allclose(y.data, want, rtol=1e-12, atol=1e-12)


def test_num_output_is_required():
    with pytest.raises(LayerError, match="num_output must be > 0, got 0"):
        _run('type: "LSTM"', _inputs(2, 2, (2,)))


def test_cont_must_be_t_by_n():
    x, _ = _inputs(3, 2, (2,))
    (cont,) = make_blobs((3, 3))
    with pytest.raises(ShapeError, match=r"must be \(T, N\) = \(3, 2\)"):
        _run(recurrent_text("RNN", 2), [x, cont])


def test_time_steps_cannot_change():
    bottom = _inputs(3, 2, (2,))
    layer, (y,) = _run(recurrent_text("LSTM", 2), bottom)
    bottom[0].reshape((4, 2, 2))
    bottom[1].reshape((4, 2))
    with pytest.raises(ShapeError, match="3 time steps"):
        layer.Forward(bottom, [y])


def test_batch_size_may_change():
    bottom = _inputs(3, 2, (2,))
    layer, (y,) = _run(recurrent_text("LSTM", 2), bottom)
    bigger = _inputs(3, 4, (2,), seed=8)
    layer.Forward(bigger, [y])
    want = naive_lstm(bigger[0].data, bigger[1].data, _params(layer))[0]
    np.testing.assert_allclose(y.data, want, rtol=1e-12, atol=1e-12)


def test_too_many_bottoms():
    with pytest.raises(LayerError, match="at most 3 bottoms"):
        _run(recurrent_text("LSTM", 2), make_blobs((2, 2, 2), (2, 2), (2, 1), (2, 1)))


# -- in a net ------------------------------------------------------------------------------
LSTM_NET = (
    'layer { name: "in" type: "Input" top: "x" top: "cont" input_param { '
    "shape { dim: 3 dim: 2 dim: 4 } shape { dim: 3 dim: 2 } } }\n"
    'layer { name: "lstm" type: "LSTM" bottom: "x" bottom: "cont" top: "h" '
    f"recurrent_param {{ num_output: 3 {FILLERS} }} }}\n"
)


def _lstm_net(tmp_path, name="net.prototxt"):
    path = tmp_path / name
    path.write_text(LSTM_NET)
    net = caffepy.Net(str(path), caffepy.TEST)
    x, cont = _inputs(3, 2, (4,), seed=4)
    net.blobs["x"].data[...] = x.data
    net.blobs["cont"].data[...] = cont.data
    return net


def test_saved_weights_load_into_every_time_step(tmp_path):
    net = _lstm_net(tmp_path)
    net.forward()
    net.save(str(tmp_path / "w.caffemodel"))
    other = _lstm_net(tmp_path)
    other.copy_from(str(tmp_path / "w.caffemodel"))
    other.forward()
    np.testing.assert_array_equal(other.blobs["h"].data, net.blobs["h"].data)


def test_shared_weights_reach_every_time_step(tmp_path):
    train, test = _lstm_net(tmp_path), _lstm_net(tmp_path)
    test.share_weights(train)  # the solver's test net, as Caffe's
    for blob in train.params["lstm"]:
        blob.data[...] *= 0.5
    test.forward()
    params = [np.array(b.data, np.float64) for b in train.params["lstm"]]
    cont = test.blobs["cont"].data.astype(np.float64)
    want = naive_lstm(test.blobs["x"].data.astype(np.float64), cont, params)[0]
    np.testing.assert_allclose(test.blobs["h"].data, want, rtol=1e-5, atol=1e-6)
