"""Convolution, and the base both convolution layers share (Caffe's
``base_conv_layer.cpp``): parameters, weights and the geometry in the GEMM view.

The layers describe; the backend's ops (:meth:`~caffepy.backend.base.Ops.conv_forward`
and friends) run the GEMM lowering on a device.
"""

from __future__ import annotations

from caffepy import backend
from caffepy.backend.base import ConvGeometry
from caffepy.errors import LayerError, ShapeError
from caffepy.kernels.im2col import conv_out_size, deconv_out_size
from caffepy.layer import Layer, canonical_axis, want_param
from caffepy.layers.neuron.relu import fusable_relu
from caffepy.layers.vision.params import check_param_shapes
from caffepy.registry import register_layer

# Caffe's defaults for the repeated ConvolutionParameter fields (a repeated proto
# field cannot carry a default, so Caffe keeps them in base_conv_layer.cpp too).
_CONV_DEFAULT_PAD = 0
_CONV_DEFAULT_STRIDE = 1
_CONV_DEFAULT_DILATION = 1


class BaseConvolutionLayer(Layer):
    """Shared setup and geometry of Convolution and Deconvolution.

    In the GEMM view a convolution maps a "conv input" (C_in channels, H x W) to a
    "conv output" (C_out channels, oh x ow) with weights (C_out, C_in/group, kh,
    kw). Convolution's conv input is its bottom; Deconvolution swaps the roles
    (its forward is convolution's backward-data), exactly as Caffe's
    ``reverse_dimensions()``. ``reshape`` keeps the :class:`ConvGeometry` of the
    current bottom shape in ``self.geom``.
    """

    min_num_bottom = 1
    min_num_top = 1
    equal_num_bottom_top = True
    #: Deconvolution: the bottom is the conv output, the top the conv input.
    reverse = False
    #: The ops of one bottom/top pair (Deconvolution: the deconv_* pair).
    forward_op: str
    backward_op: str

    @classmethod
    def param_blob_count(cls, layer_param):
        return 1 + int(layer_param.convolution_param.bias_term)

    # -- setup ---------------------------------------------------------------
    def setup(self, bottom, top):
        p = self.layer_param.convolution_param
        self._geom_key = None
        self.geom = None
        self.num_output = int(p.num_output)
        if self.num_output <= 0:
            raise LayerError(self, f"num_output must be > 0, got {self.num_output}")
        self.group = int(p.group)
        if self.group <= 0:
            raise LayerError(self, f"group must be >= 1, got {self.group}")
        self.axis = canonical_axis(self, bottom[0], p.axis)
        self.num_spatial = bottom[0].num_axes - self.axis - 1
        self.kernel = self._geometry(p, "kernel_size", "kernel", None)
        self.stride = self._geometry(p, "stride", "stride", _CONV_DEFAULT_STRIDE)
        self.pad = self._geometry(p, "pad", "pad", _CONV_DEFAULT_PAD)
        self.dilation = self._geometry(p, "dilation", None, _CONV_DEFAULT_DILATION)
        for what, values, low in (
            ("kernel size", self.kernel, 1),
            ("stride", self.stride, 1),
            ("dilation", self.dilation, 1),
        ):
            if any(v < low for v in values):
                raise LayerError(self, f"{what} must be >= 1, got {list(values)}")

        self.channels = bottom[0].shape[self.axis]
        if self.channels % self.group:
            raise LayerError(
                self,
                f"input channels ({self.channels}) must be a multiple of group "
                f"({self.group})",
            )
        if self.num_output % self.group:
            raise LayerError(
                self,
                f"num_output ({self.num_output}) must be a multiple of group "
                f"({self.group})",
            )
        if self.reverse:
            self.conv_out_channels, self.conv_in_channels = (
                self.channels,
                self.num_output,
            )
        else:
            self.conv_out_channels, self.conv_in_channels = (
                self.num_output,
                self.channels,
            )
        self.bias_term = bool(p.bias_term)
        wshape = (self.conv_out_channels, self.conv_in_channels // self.group)
        wshape += self.kernel
        shapes = [wshape] + ([(self.num_output,)] if self.bias_term else [])
        if self.blobs:
            check_param_shapes(self, shapes)
        else:
            self.new_blob(wshape, p.weight_filler)
            if self.bias_term:
                self.new_blob((self.num_output,), p.bias_filler)

    def _geometry(self, p, repeated, short, default):
        """Caffe's rules: the _h/_w pair, or a repeated field given 0, 1 or n times."""
        ns = self.num_spatial
        values = list(getattr(p, repeated))
        if short is not None and (p.HasField(short + "_h") or p.HasField(short + "_w")):
            if ns != 2:
                raise LayerError(
                    self,
                    f"{short}_h/{short}_w can only be used for 2-D convolution, "
                    f"got {ns} spatial axes",
                )
            if values:
                raise LayerError(
                    self, f"give either {repeated} or {short}_h/{short}_w, not both"
                )
            return (int(getattr(p, short + "_h")), int(getattr(p, short + "_w")))
        if not values:
            if default is None:
                raise LayerError(
                    self, f"{repeated} is required (or {short}_h and {short}_w)"
                )
            return (default,) * ns
        if len(values) not in (1, ns):
            raise LayerError(
                self,
                f"{repeated} must be given once or once per spatial axis ({ns}), "
                f"got {len(values)} values {values}",
            )
        return tuple(int(values[0 if len(values) == 1 else i]) for i in range(ns))

    # -- shapes ----------------------------------------------------------------
    def reshape(self, bottom, top):
        first = bottom[0]
        axis, ns = self.axis, self.num_spatial
        if first.num_axes != axis + 1 + ns:
            raise ShapeError(
                self,
                f"bottom has {first.num_axes} axes ({first.shape}); the layer "
                f"was set up for {axis + 1 + ns}",
            )
        if first.shape[axis] != self.channels:
            raise ShapeError(
                self,
                f"bottom has {first.shape[axis]} channels ({first.shape}); the "
                f"weights expect {self.channels}",
            )
        for i, b in enumerate(bottom[1:], 1):
            if b.shape != first.shape:
                raise ShapeError(
                    self,
                    f"all bottoms must have one shape: bottom[0] {first.shape} vs "
                    f"bottom[{i}] {b.shape}",
                )
        in_sp = tuple(first.shape[axis + 1 :])
        size = deconv_out_size if self.reverse else conv_out_size
        out_sp = tuple(
            size(in_sp[i], self.kernel[i], self.pad[i], self.stride[i],
                 self.dilation[i])
            for i in range(ns)
        )  # fmt: skip
        if ns and min(out_sp) <= 0:
            raise ShapeError(
                self,
                f"bottom {first.shape} is too small for kernel {list(self.kernel)}"
                f", pad {list(self.pad)}, stride {list(self.stride)}, dilation "
                f"{list(self.dilation)}: output size {out_sp}",
            )
        top_shape = first.shape[:axis] + (self.num_output,) + out_sp
        for t in top:
            t.reshape(top_shape)
        if self._geom_key != first.shape:
            self._geom_key = first.shape
            if self.reverse:
                in_sp, out_sp = out_sp, in_sp
            self.geom = ConvGeometry(
                num=first.count_range(0, axis),
                in_channels=self.conv_in_channels,
                out_channels=self.conv_out_channels,
                in_spatial=in_sp,
                out_spatial=out_sp,
                kernel=self.kernel,
                pad=self.pad,
                stride=self.stride,
                dilation=self.dilation,
                group=self.group,
            )

    def forward(self, bottom, top):
        ops = backend.ops()
        run = getattr(ops, self.forward_op)
        w = ops.data(self.blobs[0])
        b = ops.data(self.blobs[1]) if self.bias_term else None
        ws = self.workspace(ops)
        for bot, t in zip(bottom, top):
            run(ops.data(bot), w, b, self.geom, ops.mutable_data(t), ws)

    def backward(self, top, propagate_down, bottom):
        ops = backend.ops()
        run = getattr(ops, self.backward_op)
        w = ops.data(self.blobs[0])
        dw, db = self._param_grads(ops)
        ws = self.workspace(ops)
        for i, (t, bot) in enumerate(zip(top, bottom)):
            dx = self._wanted(ops, propagate_down, i, bot)
            if dw is None and db is None and dx is None:
                continue
            run(ops.data(bot), ops.diff(t), w, self.geom, dw, db, dx, ws)

    def _wanted(self, ops, propagate_down, i, blob):
        """The bottom diff of pair i if its gradient is wanted, else None."""
        if i < len(propagate_down) and propagate_down[i]:
            return ops.mutable_diff(blob)
        return None

    def _param_grads(self, ops):
        """(dw, db): the parameter diffs to accumulate into, None where not
        wanted (``param_propagate_down``) or absent."""
        dw = ops.mutable_diff(self.blobs[0]) if want_param(self, 0) else None
        db = None
        if self.bias_term and want_param(self, 1):
            db = ops.mutable_diff(self.blobs[1])
        return dw, db


@register_layer("Convolution")
class ConvolutionLayer(BaseConvolutionLayer):
    """N-D convolution (1-D, 2-D, 3-D, ...), Caffe's cross-correlation with groups.

    ``y[n, m, i, j] = b[m] + sum_{c in group(m), ki, kj}
    W[m, c', ki, kj] * x[n, c, i*sh - ph + ki*dh, j*sw - pw + kj*dw]``
    (out-of-range x reads 0; c' is c's index within its group).

    Parameters (``convolution_param``): ``num_output`` (required), ``bias_term``
    (true), ``kernel_size`` / ``pad`` (0) / ``stride`` (1) / ``dilation`` (1), each
    given once for all spatial axes or once per axis, or the 2-D ``kernel_h/_w``,
    ``pad_h/_w``, ``stride_h/_w``; ``group`` (1): channels split into groups that
    convolve separately; ``axis`` (1): the channel axis, every later axis is
    spatial (3-D convolution on 5-D blobs N x C x D x H x W, and beyond);
    ``weight_filler``, ``bias_filler`` (constant 0).

    Blobs: weight (num_output, C/group, *kernel), e.g. (num_output, C/group, kh,
    kw); bias (num_output,).
    Bottoms/tops: any number of pairs sharing the weights; bottom
    (N, C, H, W) -> top (N, num_output, oh, ow),
    ``oh = (H + 2*ph - (dh*(kh-1)+1)) // sh + 1``.

    Gradient: dW = dy (x) columns(x), db = sum of dy over N and space,
    dx = col2im(W^T dy).
    """

    uses_ops = ("conv_backward", "conv_forward")
    forward_op, backward_op = "conv_forward", "conv_backward"

    # -- fused with the in-place layers after it ----------------------------------
    def fuse_following(self, following: list[Layer], bottom: list, top: list) -> int:
        """BatchNorm with stored statistics and the Scale after it (ResNet's
        deploy and test nets), then a ReLU of slope >= 0, each in place and
        either part alone: applied to each block of the top as the convolution
        writes it (``Ops.conv_forward_fused``, the same numbers). Backward runs
        the layers one by one."""
        from caffepy.layers.normalization.batch_norm import BatchNormLayer

        if len(bottom) != 1:
            return 0
        n = 0
        bn = following[0]
        if (
            len(following) > 1
            and type(bn) is BatchNormLayer
            and bn.use_global_stats
            and bn.fuse_next(following[1], top, top)
        ):
            n = 2
        if len(following) > n and fusable_relu(following[n]):
            n += 1
        return n

    def forward_following(
        self, following: list[Layer], bottom: list, top: list
    ) -> None:
        self.reshape(bottom, top)
        for layer in following:
            layer.reshape(top, top)
        ops = backend.ops()
        affine = keep = None
        if len(following) > 1:  # BatchNorm and Scale
            affine, keep = following[0].global_affine(ops, following[1], top)
        last = following[-1]
        slope = last.negative_slope if fusable_relu(last) else None
        w = ops.data(self.blobs[0])
        b = ops.data(self.blobs[1]) if self.bias_term else None
        x, y = ops.data(bottom[0]), ops.mutable_data(top[0])
        ws = self.workspace(ops)
        ops.conv_forward_fused(x, w, b, self.geom, y, ws, affine, keep, slope)
