"""RecurrentLayer: the base of LSTM and RNN (Caffe's ``recurrent_layer.cpp``).

A recurrent layer is a small net of ordinary layers unrolled over the T time
steps of its input, built once in ``setup`` from a ``NetParameter`` that the
subclass fills (:meth:`RecurrentLayer.fill_unrolled_net`). Parameters are shared
across time steps by ``param { name }``, as in Caffe; the layer's own blobs are
the unrolled net's parameter owners, so solvers, snapshots and weight copies see
exactly Caffe's blobs in Caffe's order.
"""

from __future__ import annotations

from collections.abc import Sequence

from caffepy import backend
from caffepy.blob import Blob
from caffepy.errors import LayerError, ShapeError
from caffepy.layer import Layer
from caffepy.layers.vision.params import check_param_shapes
from caffepy.proto import caffe_pb2


def add_layer(
    net: caffe_pb2.NetParameter,
    type_name: str,
    name: str,
    bottom: Sequence[str] = (),
    top: Sequence[str] = (),
) -> caffe_pb2.LayerParameter:
    """Append a layer of ``type_name`` with these bottoms and tops to ``net``."""
    lp = net.layer.add()
    lp.type, lp.name = type_name, name
    lp.bottom.extend(bottom)
    lp.top.extend(top)
    return lp


def add_inner_product(
    net: caffe_pb2.NetParameter,
    recurrent: caffe_pb2.RecurrentParameter,
    name: str,
    bottom: str,
    top: str,
    num_output: int,
    params: Sequence[str],
    axis: int = 2,
) -> caffe_pb2.LayerParameter:
    """An InnerProduct of the unrolled net: the recurrent layer's fillers, shared
    parameters named ``params`` (a bias when there are two)."""
    lp = add_layer(net, "InnerProduct", name, [bottom], [top])
    ip = lp.inner_product_param
    ip.num_output, ip.axis = num_output, axis
    ip.bias_term = len(params) == 2
    ip.weight_filler.CopyFrom(recurrent.weight_filler)
    if ip.bias_term:
        ip.bias_filler.CopyFrom(recurrent.bias_filler)
    for pname in params:
        lp.param.add().name = pname
    return lp


def add_static_transform(
    net: caffe_pb2.NetParameter,
    recurrent: caffe_pb2.RecurrentParameter,
    prefix: str,
    num_output: int,
) -> str:
    """``W_{prefix}_static * x_static`` reshaped to one time step (1, N, num_output),
    added to every step's pre-activation; returns the name of that blob."""
    pre, out = f"W_{prefix}_x_static_preshape", f"W_{prefix}_x_static"
    lp = add_inner_product(
        net, recurrent, out, "x_static", pre, num_output, [f"W_{prefix}_static"], 1
    )
    lp.propagate_down.append(True)
    reshape = add_layer(net, "Reshape", f"{out}_reshape", [pre], [out])
    reshape.reshape_param.shape.dim.extend([1, -1, num_output])
    return out


class RecurrentLayer(Layer):
    """Base of LSTM and RNN: a net of existing layers unrolled over T steps.

    Bottoms: ``x`` (T, N, ...), the input at each time step (flattened from axis
    2); ``cont`` (T, N), 0 where a sequence starts (the hidden state is reset
    there) and 1 where it continues; optionally ``x_static`` (N, ...), an input
    added at every step (flattened from axis 1); with ``expose_hidden`` then the
    initial recurrent state (for LSTM ``h_0``, ``c_0``; for RNN ``h_0``), each
    (1, N, num_output).

    Tops: the output (T, N, num_output); with ``expose_hidden`` also the final
    recurrent state, in the order of the initial-state bottoms.

    Parameters (``recurrent_param``): ``num_output`` (required, > 0),
    ``weight_filler``, ``bias_filler``, ``expose_hidden`` (false). Without
    ``expose_hidden`` the state at the end of a forward becomes the initial state
    of the next one (zeros at first), as in Caffe; ``cont`` = 0 forgets it.

    Gradient: back-propagation through the unrolled net to ``x``, ``x_static``
    and the parameters (summed over the time steps); none to ``cont``, nor to
    the exposed initial state, nor across forwards (as Caffe).
    """

    min_num_bottom = 2
    min_num_top = 1
    #: The parameter blobs without a static input (subclasses set it).
    base_param_count = 0

    # -- what a subclass defines ----------------------------------------------
    def recurrent_input_names(self) -> list[str]:
        """Names of the unrolled net's initial-state blobs (h_0, ...)."""
        raise NotImplementedError

    def recurrent_output_names(self) -> list[str]:
        """Names of the final-state blobs, paired with the inputs."""
        raise NotImplementedError

    def output_names(self) -> list[str]:
        """Names of the unrolled net's outputs, one per (non-hidden) top."""
        raise NotImplementedError

    def fill_unrolled_net(self, net: caffe_pb2.NetParameter) -> None:
        """Add the recurrent architecture's layers to ``net`` (whose first layer
        already has the tops ``x``, ``cont`` and, with a static input,
        ``x_static``)."""
        raise NotImplementedError

    def recurrent_input_shapes(self) -> list[tuple[int, ...]]:
        """The shape of each initial-state blob: one step, N streams."""
        return [(1, self.N, self.num_output)] * len(self.recurrent_input_names())

    # -- Caffe's counts ----------------------------------------------------------
    @classmethod
    def num_recurrent(cls) -> int:
        """How many state blobs (h, c, ...) the architecture carries."""
        raise NotImplementedError

    @classmethod
    def has_static_input(cls, layer_param: caffe_pb2.LayerParameter) -> bool:
        """Whether the layer has an ``x_static`` bottom (the third one)."""
        exposed = cls.num_recurrent() * bool(layer_param.recurrent_param.expose_hidden)
        return len(layer_param.bottom) > 2 + exposed

    @classmethod
    def param_blob_count(cls, layer_param: caffe_pb2.LayerParameter) -> int:
        return cls.base_param_count + int(cls.has_static_input(layer_param))

    def allow_force_backward(self, bottom_index):
        return bottom_index == 0 or (self.static_input and bottom_index == 2)

    # -- setup -------------------------------------------------------------------
    def setup(self, bottom, top):
        p = self.layer_param.recurrent_param
        self.num_output = int(p.num_output)
        if self.num_output <= 0:
            raise LayerError(
                self, f"recurrent_param.num_output must be > 0, got {self.num_output}"
            )
        x = bottom[0]
        if x.num_axes < 2:
            raise ShapeError(
                self,
                f"bottom[0] must have at least 2 axes (time steps, streams, ...), got "
                f"shape {x.shape}",
            )
        self.T, self.N = x.shape[0], x.shape[1]
        self.expose_hidden = bool(p.expose_hidden)
        num_rec = self.num_recurrent()
        exposed = num_rec if self.expose_hidden else 0
        self.static_input = len(bottom) > 2 + exposed
        if len(bottom) > 3 + exposed:
            raise LayerError(
                self,
                f"takes at most {3 + exposed} bottoms (x, cont, x_static"
                f"{', the initial state' if exposed else ''}), got {len(bottom)}",
            )
        want_tops = len(self.output_names()) + exposed
        if len(top) != want_tops:
            raise LayerError(
                self,
                f"takes {want_tops} top(s) with expose_hidden {self.expose_hidden}, got "
                f"{len(top)}",
            )
        self._check_shapes(bottom)
        self._build(bottom)

    def _build(self, bottom):
        """Create the unrolled net and take its parameter owners as ``blobs``."""
        from caffepy.net import Net

        net = caffe_pb2.NetParameter(name=f"{self.name}_unrolled")
        inputs = add_layer(net, "Input", "input", top=["x", "cont"])
        shapes = [bottom[0].shape, bottom[1].shape]
        if self.static_input:
            inputs.top.append("x_static")
            shapes.append(bottom[2].shape)
        for shape in shapes:
            inputs.input_param.shape.add().dim.extend(shape)
        self.fill_unrolled_net(net)
        if self.name:
            for lp in net.layer:
                lp.name = f"{self.name}_{lp.name}"
        # NOTE: a loss on each output makes the net compute the backward of every
        # layer under it (force_backward would also reach cont); these layers
        # never run: forward and backward stop below them.
        for name in self.output_names():
            loss = add_layer(net, "Reduction", f"{name}_pseudoloss", [name])
            loss.top.append(f"{name}_pseudoloss")
            loss.loss_weight.append(1.0)
        self.unrolled = unrolled = Net(param=net, phase=self.phase, dtype=self.dtype)
        self._last = len(unrolled.layers) - 1 - len(self.output_names())

        blobs = unrolled.blobs
        self._x, self._cont = blobs["x"], blobs["cont"]
        self._x_static = blobs["x_static"] if self.static_input else None
        self._recur_in = [blobs[n] for n in self.recurrent_input_names()]
        self._recur_out = [blobs[n] for n in self.recurrent_output_names()]
        self._outputs = [blobs[n] for n in self.output_names()]
        for blob in self._recur_out:
            blob.mutable_cpu_diff()[...] = 0  # no back-propagation across forwards

        owners, self._param_map = [], []
        for li, j, owner in unrolled.param_owners:
            if owner is None:
                self._param_map.append((unrolled.layers[li].blobs[j], len(owners)))
                owners.append(unrolled.layers[li].blobs[j])
        for li, j, owner in unrolled.param_owners:
            if owner is not None:
                src = unrolled.layers[owner[0]].blobs[owner[1]]
                k = next(k for b, k in self._param_map if b is src)
                self._param_map.append((unrolled.layers[li].blobs[j], k))
        if self.blobs:
            check_param_shapes(self, [b.shape for b in owners])
        else:
            self.blobs.extend(owners)
        self._share_params()

    def _share_params(self):
        """Point every parameter blob of the unrolled net at this layer's blob.

        NOTE: the outer net may replace a blob's memory after setup (shared
        ``param { name }``, Caffe's ShareTrainedLayersWith), so this runs on every
        reshape, as Caffe re-shares the unrolled weights at each TEST forward.
        """
        for blob, k in self._param_map:
            own = self.blobs[k]
            if blob is not own:
                blob.share_data(own)
                blob.share_diff(own)

    def _check_shapes(self, bottom):
        x, cont = bottom[0], bottom[1]
        if x.num_axes < 2 or x.shape[0] != self.T:
            raise ShapeError(
                self,
                f"bottom[0] must keep its {self.T} time steps (T, N, ...), got shape "
                f"{x.shape}",
            )
        n = x.shape[1]
        if cont.shape != (self.T, n):
            raise ShapeError(
                self,
                f"cont (bottom[1]) must be (T, N) = ({self.T}, {n}), got shape "
                f"{cont.shape}",
            )
        if self.static_input and (bottom[2].num_axes < 1 or bottom[2].shape[0] != n):
            raise ShapeError(
                self,
                f"x_static (bottom[2]) must be (N, ...) with N = {n}, got shape "
                f"{bottom[2].shape}",
            )

    # -- running -----------------------------------------------------------------
    def reshape(self, bottom, top):
        self._check_shapes(bottom)
        self.N = bottom[0].shape[1]
        self._x.reshape(bottom[0].shape)
        self._cont.reshape(bottom[1].shape)
        if self.static_input:
            self._x_static.reshape(bottom[2].shape)
        for blob, shape in zip(self._recur_in, self.recurrent_input_shapes()):
            blob.reshape(shape)
        self.unrolled.reshape()
        _share(self._x, bottom[0], diff=True)
        _share(self._cont, bottom[1], diff=False)
        if self.static_input:
            _share(self._x_static, bottom[2], diff=True)
        if self.expose_hidden:
            first = 2 + int(self.static_input)
            for j, (blob, given) in enumerate(zip(self._recur_in, bottom[first:])):
                if given.shape != blob.shape:
                    raise ShapeError(
                        self,
                        f"bottom[{first + j}] is the initial "
                        f"'{self.recurrent_input_names()[j]}' and must have shape "
                        f"{blob.shape}, got {given.shape}",
                    )
                blob.share_data(given)
        for t, out in zip(top, self._outputs):
            t.reshape_like(out)
            _share(t, out, diff=True)
        for t, out in zip(top[len(self._outputs) :], self._recur_out):
            t.reshape_like(out)
        self._share_params()

    def forward(self, bottom, top):
        ops = backend.ops()
        if not self.expose_hidden:
            for src, dst in zip(self._recur_out, self._recur_in):
                ops.copy(ops.data(src), ops.mutable_data(dst))
        self.unrolled.forward_from_to(0, self._last)
        for t, out in zip(top[len(self._outputs) :], self._recur_out):
            t.share_data(out)

    def backward(self, top, propagate_down, bottom):
        # NOTE: as Caffe, the whole unrolled net runs backward whatever
        # propagate_down says: the layer needs backward for x, x_static or its
        # parameters, and each of them needs the gradient through time.
        self.unrolled.backward_from_to(self._last, 0)

    def close(self) -> None:
        unrolled = self.__dict__.get("unrolled")
        if unrolled is not None:
            unrolled.close()


def _share(blob: Blob, other: Blob, diff: bool) -> None:
    """``blob`` takes ``other``'s data (and diff) memory."""
    blob.share_data(other)
    if diff:
        blob.share_diff(other)
