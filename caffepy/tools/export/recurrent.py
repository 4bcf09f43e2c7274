"""Recurrent layers (LSTM, RNN) as ONNX's ``LSTM`` and ``RNN`` operators.

Caffe's recurrent layers reset their state where ``cont`` is 0; ONNX's run each
sequence from a zero state over all T steps. The two agree exactly when every
sequence starts at t = 0 and runs to T (``cont`` = 0 at t = 0, 1 after): that is
what the export writes. ``cont`` is then not read (the graph drops it, and the
summary notes it); a net that restarts sequences inside the T steps gives other
results in ONNX. An ``x_static`` bottom or ``expose_hidden`` is refused.

- LSTM (gates ``W_xc x_t + b_c + W_hc h_{t-1}``, Caffe's order i, f, o, g; no
  peepholes, no cell clip): ``LSTM`` with the weight rows reordered to ONNX's
  i, o, f, c; ``B`` = [b_c, 0].
- RNN (``h_t = tanh(W_xh x_t + b_h + W_hh h_{t-1})``, ``o_t = tanh(W_ho h_t +
  b_o)``): ``RNN`` (Tanh) for h, then ``MatMul``, ``Add``, ``Tanh`` for o.

ONNX's ``Y`` is (T, 1, N, H): axis 1 (the direction) is squeezed away.
"""

from __future__ import annotations

import numpy as np

from caffepy.tools.export.convert import LayerView, converts

#: Caffe's gate blocks (i, f, o, g) in ONNX's order (i, o, f, c).
_ONNX_GATE_ORDER = (0, 2, 1, 3)


def _check_exportable(v: LayerView) -> None:
    """Refuse what ONNX's recurrent operators cannot express."""
    if v.layer.expose_hidden:
        raise v.unsupported(
            "recurrent_param.expose_hidden is set (the initial and final state are "
            "bottoms and tops, which the export does not map)"
        )
    if v.layer.static_input:
        raise v.unsupported(
            "it has an x_static bottom (ONNX's LSTM/RNN have no static input)"
        )


def _sequence_input(v: LayerView) -> str:
    """Bottom 0 as (T, N, I): Caffe flattens the axes from 2 on."""
    if len(v.bottom_shapes[0]) == 3:
        return v.x(0)
    return v.g.reshape(v.x(0), [0, 0, -1])


def _blob(v: LayerView, j: int) -> np.ndarray:
    return np.asarray(v.layer.blobs[j].data, np.float32)


def _finish(v: LayerView, y: str, out: str | None) -> str:
    """Squeeze ONNX's direction axis off ``Y`` (T, 1, N, H)."""
    v.remarks.append("cont not read (each sequence runs from t = 0 to T)")
    return v.g.node("Squeeze", [y, v.g.ints([1], "axes")], out)


@converts("LSTM")
def lstm(v: LayerView) -> None:
    _check_exportable(v)
    H = int(v.layer.num_output)

    def reorder(a: np.ndarray) -> np.ndarray:
        blocks = a.reshape((4, H) + a.shape[1:])
        return blocks[list(_ONNX_GATE_ORDER)].reshape(a.shape)

    g = v.g
    w = g.const(reorder(_blob(v, 0))[None], "W")
    r = g.const(reorder(_blob(v, 2))[None], "R")
    bias = np.concatenate([reorder(_blob(v, 1)), np.zeros(4 * H, np.float32)])
    b = g.const(bias[None], "B")
    y = g.node("LSTM", [_sequence_input(v), w, r, b], hidden_size=H)
    _finish(v, y, v.out())


@converts("RNN")
def rnn(v: LayerView) -> None:
    _check_exportable(v)
    H = int(v.layer.num_output)
    g = v.g
    w = g.const(_blob(v, 0)[None], "W_xh")
    r = g.const(_blob(v, 2)[None], "W_hh")
    b = g.const(np.concatenate([_blob(v, 1), np.zeros(H, np.float32)])[None], "B")
    y = g.node(
        "RNN", [_sequence_input(v), w, r, b], hidden_size=H, activations=["Tanh"]
    )
    h = _finish(v, y, None)
    o = g.node("MatMul", [h, g.const(_blob(v, 3).T, "W_ho_T")])
    o = g.node("Add", [o, g.const(_blob(v, 4), "b_o")])
    g.node("Tanh", [o], v.out())
