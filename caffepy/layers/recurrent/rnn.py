"""RNN: a simple (Elman) recurrent net, unrolled over time (Caffe's
``rnn_layer.cpp``)."""

from __future__ import annotations

from caffepy.layers.recurrent.base import (
    RecurrentLayer,
    add_inner_product,
    add_layer,
    add_static_transform,
)
from caffepy.proto import caffe_pb2
from caffepy.registry import register_layer


@register_layer("RNN")
class RNNLayer(RecurrentLayer):
    """A tanh RNN over T steps of N streams (see :class:`RecurrentLayer` for the
    bottoms, tops, ``cont`` and ``expose_hidden``), with H = ``num_output``::

        h_t = tanh(W_xh x_t + b_h [+ W_xh_static x_static] + W_hh (cont_t * h_{t-1}))
        o_t = tanh(W_ho h_t + b_o)

    The top is o (T, N, H); the recurrent state is ``h_0`` (1, N, H).
    Blobs, in Caffe's order: W_xh (H, D_x), b_h (H,), [W_xh_static (H, D_static)
    with a static input], W_hh (H, H), W_ho (H, H), b_o (H,).
    """

    base_param_count = 5

    @classmethod
    def num_recurrent(cls) -> int:
        return 1

    def recurrent_input_names(self) -> list[str]:
        return ["h_0"]

    def recurrent_output_names(self) -> list[str]:
        return [f"h_{self.T}"]

    def output_names(self) -> list[str]:
        return ["o"]

    def fill_unrolled_net(self, net: caffe_pb2.NetParameter) -> None:
        rp = self.layer_param.recurrent_param
        H, T = self.num_output, self.T
        state = add_layer(net, "Input", "state_input", top=["h_0"])
        state.input_param.shape.add().dim.extend((1, self.N, H))
        cont_slice = add_layer(net, "Slice", "cont_slice", ["cont"])
        cont_slice.slice_param.axis = 0
        x_ip = add_inner_product(
            net, rp, "x_transform", "x", "W_xh_x", H, ["W_xh", "b_h"]
        )
        x_ip.propagate_down.append(True)
        static = add_static_transform(net, rp, "xh", H) if self.static_input else None
        x_slice = add_layer(net, "Slice", "W_xh_x_slice", ["W_xh_x"])
        x_slice.slice_param.axis = 0
        concat = caffe_pb2.LayerParameter(name="o_concat", type="Concat", top=["o"])
        concat.concat_param.axis = 0
        for t in range(1, T + 1):
            prev = t - 1
            cont_slice.top.append(f"cont_{t}")
            x_slice.top.append(f"W_xh_x_{t}")
            # h_conted_{t-1} = cont_t * h_{t-1}: the state is flushed at a start.
            scale = add_layer(
                net, "Scale", f"h_conted_{prev}", [f"h_{prev}", f"cont_{t}"],
                [f"h_conted_{prev}"],
            )  # fmt: skip
            scale.scale_param.axis = 0
            add_inner_product(
                net, rp, f"W_hh_h_{prev}", f"h_conted_{prev}", f"W_hh_h_{prev}", H,
                ["W_hh"],
            )  # fmt: skip
            terms = [f"W_hh_h_{prev}", f"W_xh_x_{t}"] + ([static] if static else [])
            add_layer(
                net, "Eltwise", f"h_input_sum_{t}", terms, [f"h_neuron_input_{t}"]
            )
            add_layer(net, "TanH", f"h_neuron_{t}", [f"h_neuron_input_{t}"], [f"h_{t}"])
            add_inner_product(
                net, rp, f"W_ho_h_{t}", f"h_{t}", f"W_ho_h_{t}", H, ["W_ho", "b_o"]
            )
            add_layer(net, "TanH", f"o_neuron_{t}", [f"W_ho_h_{t}"], [f"o_{t}"])
            concat.bottom.append(f"o_{t}")
        net.layer.add().CopyFrom(concat)
