"""LSTM and RNN exported as ONNX ``LSTM``/``RNN``: ONNX Runtime against
caffepy's unrolled forward, for sequences that start at t = 0 and run to T."""

import numpy as np
import pytest

import caffepy
from caffepy.errors import UnsupportedError
from caffepy.proto import caffe_pb2

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from caffepy.tools.export import export_net  # noqa: E402
from caffepy.tools.export.check import session  # noqa: E402

T, N, H = 4, 3, 5


def _net(layer_type, x_shape, expose_hidden=False):
    from google.protobuf import text_format

    state = ""
    if expose_hidden:
        shapes = ["h0"] + (["c0"] if layer_type == "LSTM" else [])
        state = "".join(
            f'layer {{ name: "{s}" type: "Input" top: "{s}" '
            f"input_param {{ shape {{ dim: 1 dim: {N} dim: {H} }} }} }}\n"
            for s in shapes
        )
    dims = " ".join(f"dim: {d}" for d in x_shape)
    bottoms = ['"x"', '"cont"'] + (
        [f'"{s}"' for s in (["h0", "c0"] if layer_type == "LSTM" else ["h0"])]
        if expose_hidden
        else []
    )
    tops = ['"y"'] + (
        [f'"{s}"' for s in (["hT", "cT"] if layer_type == "LSTM" else ["hT"])]
        if expose_hidden
        else []
    )
    text = f"""
    name: "rec"
    layer {{ name: "x" type: "Input" top: "x" input_param {{ shape {{ {dims} }} }} }}
    layer {{ name: "cont" type: "Input" top: "cont"
             input_param {{ shape {{ dim: {T} dim: {N} }} }} }}
    {state}
    layer {{ name: "rec" type: "{layer_type}"
             {" ".join(f"bottom: {b}" for b in bottoms)}
             {" ".join(f"top: {t}" for t in tops)}
             recurrent_param {{ num_output: {H} expose_hidden: {str(expose_hidden).lower()}
               weight_filler {{ type: "uniform" min: -0.8 max: 0.8 }}
               bias_filler {{ type: "uniform" min: -0.5 max: 0.5 }} }} }}
    """
    param = text_format.Parse(text, caffe_pb2.NetParameter())
    return caffepy.Net(param=param, phase=caffepy.TEST)


def _caffepy_forward(net, x):
    cont = np.ones((T, N), np.float32)
    cont[0] = 0
    net.blobs["x"].data[...] = x
    net.blobs["cont"].data[...] = cont
    # NOTE: twice, so the state a first forward leaves behind is in play (cont
    # = 0 at t = 0 must flush it)
    net.forward()
    net.forward()
    return net.blobs["y"].data.copy()


@pytest.mark.parametrize("layer_type", ["LSTM", "RNN"])
@pytest.mark.parametrize("x_shape", [(T, N, 6), (T, N, 2, 3)])
def test_recurrent_matches_caffepy(layer_type, x_shape):
    np.random.seed(7)
    net = _net(layer_type, x_shape)
    rng = np.random.default_rng(3)
    for blob in net.params["rec"]:
        blob.data[...] = rng.uniform(-0.8, 0.8, blob.shape)
    x = rng.standard_normal(x_shape).astype(np.float32)
    want = _caffepy_forward(net, x)

    model, summary = export_net(net)
    sess = session(model)
    assert [i.name for i in sess.get_inputs()] == ["x"]  # cont is dropped
    assert layer_type in summary.nodes
    assert "cont not read" in summary.format()
    (got,) = sess.run(["y"], {"x": x})
    assert got.shape == (T, N, H)
    assert np.abs(got - want).max() <= 1e-5


def test_lstm_gate_order_matters():
    """The oracle can tell a wrong gate order: swapping f and o changes h."""
    net = _net("LSTM", (T, N, 6))
    rng = np.random.default_rng(5)
    for blob in net.params["rec"]:
        blob.data[...] = rng.uniform(-0.8, 0.8, blob.shape)
    x = rng.standard_normal((T, N, 6)).astype(np.float32)
    want = _caffepy_forward(net, x)
    for j in (0, 1, 2):  # swap Caffe's f and o blocks in every blob
        w = net.params["rec"][j].data
        w[H : 2 * H], w[2 * H : 3 * H] = w[2 * H : 3 * H].copy(), w[H : 2 * H].copy()
    model, _ = export_net(net)
    (got,) = session(model).run(["y"], {"x": x})
    assert np.abs(got - want).max() > 1e-3


@pytest.mark.parametrize("layer_type", ["LSTM", "RNN"])
def test_expose_hidden_is_refused(layer_type):
    net = _net(layer_type, (T, N, 6), expose_hidden=True)
    with pytest.raises(UnsupportedError, match="'rec'.*expose_hidden"):
        export_net(net)
