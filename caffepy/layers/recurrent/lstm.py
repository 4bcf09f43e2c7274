"""LSTM: long short-term memory, unrolled over time (Caffe's ``lstm_layer.cpp``)."""

from __future__ import annotations

from caffepy.layers.recurrent.base import (
    RecurrentLayer,
    add_inner_product,
    add_layer,
    add_static_transform,
)
from caffepy.proto import caffe_pb2
from caffepy.registry import register_layer


@register_layer("LSTM")
class LSTMLayer(RecurrentLayer):
    """LSTM over T steps of N streams (see :class:`RecurrentLayer` for the bottoms,
    tops, ``cont`` and ``expose_hidden``), with H = ``num_output``::

        gates_t = W_xc x_t + b_c [+ W_xc_static x_static] + W_hc (cont_t * h_{t-1})
        i, f, o, g = sigmoid, sigmoid, sigmoid, tanh of the four H-slices of gates_t
        c_t = cont_t * f * c_{t-1} + i * g
        h_t = o * tanh(c_t)

    The top is h (T, N, H); the recurrent state is ``h_0``, ``c_0`` (1, N, H).
    Blobs, in Caffe's order: W_xc (4H, D_x), b_c (4H,), [W_xc_static (4H,
    D_static) with a static input], W_hc (4H, H); the 4H axis is ordered i, f, o, g.
    Each step is an :class:`~caffepy.layers.recurrent.lstm_unit.LSTMUnitLayer`.
    """

    base_param_count = 3

    @classmethod
    def num_recurrent(cls) -> int:
        return 2

    def recurrent_input_names(self) -> list[str]:
        return ["h_0", "c_0"]

    def recurrent_output_names(self) -> list[str]:
        return [f"h_{self.T}", "c_T"]

    def output_names(self) -> list[str]:
        return ["h"]

    def fill_unrolled_net(self, net: caffe_pb2.NetParameter) -> None:
        rp = self.layer_param.recurrent_param
        H, T = self.num_output, self.T
        state = add_layer(net, "Input", "state_input", top=["c_0", "h_0"])
        for _ in range(2):
            state.input_param.shape.add().dim.extend((1, self.N, H))
        cont_slice = add_layer(net, "Slice", "cont_slice", ["cont"])
        cont_slice.slice_param.axis = 0
        x_ip = add_inner_product(
            net, rp, "x_transform", "x", "W_xc_x", 4 * H, ["W_xc", "b_c"]
        )
        x_ip.propagate_down.append(True)
        static = (
            add_static_transform(net, rp, "xc", 4 * H) if self.static_input else None
        )
        x_slice = add_layer(net, "Slice", "W_xc_x_slice", ["W_xc_x"])
        x_slice.slice_param.axis = 0
        concat = caffe_pb2.LayerParameter(name="h_concat", type="Concat", top=["h"])
        concat.concat_param.axis = 0
        for t in range(1, T + 1):
            prev = t - 1
            cont_slice.top.append(f"cont_{t}")
            x_slice.top.append(f"W_xc_x_{t}")
            # h_conted_{t-1} = cont_t * h_{t-1}: the state is flushed at a start.
            scale = add_layer(
                net, "Scale", f"h_conted_{prev}", [f"h_{prev}", f"cont_{t}"],
                [f"h_conted_{prev}"],
            )  # fmt: skip
            scale.scale_param.axis = 0
            add_inner_product(
                net, rp, f"transform_{t}", f"h_conted_{prev}", f"W_hc_h_{prev}",
                4 * H, ["W_hc"],
            )  # fmt: skip
            terms = [f"W_hc_h_{prev}", f"W_xc_x_{t}"] + ([static] if static else [])
            add_layer(net, "Eltwise", f"gate_input_{t}", terms, [f"gate_input_{t}"])
            add_layer(
                net, "LSTMUnit", f"unit_{t}",
                [f"c_{prev}", f"gate_input_{t}", f"cont_{t}"], [f"c_{t}", f"h_{t}"],
            )  # fmt: skip
            concat.bottom.append(f"h_{t}")
        add_layer(net, "Split", "c_T_copy", [f"c_{T}"], ["c_T"])
        net.layer.add().CopyFrom(concat)
