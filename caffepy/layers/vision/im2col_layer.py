"""Im2col: the patches of an image batch as channels (convolution's lowering)."""

from __future__ import annotations

from caffepy import backend
from caffepy.backend.base import ConvGeometry
from caffepy.errors import LayerError, ShapeError, UnsupportedError
from caffepy.kernels.im2col import conv_out_size
from caffepy.layer import Layer, canonical_axis
from caffepy.layers.vision.convolution import BaseConvolutionLayer
from caffepy.registry import register_layer


@register_layer("Im2col")
class Im2colLayer(Layer):
    """Each patch a convolution would see, unrolled along the channel axis
    (Caffe's ``Im2colLayer``).

    Parameters (``convolution_param``, as Convolution, without weights):
    ``kernel_size`` or ``kernel_h``/``kernel_w`` (required), ``pad`` (0),
    ``stride`` (1), ``dilation`` (1), ``axis`` (1, the channel axis);
    ``num_output``, ``group`` and the fillers are ignored. ``force_nd_im2col``
    changes nothing here (Caffe's N-D path computes the same columns).

    Bottom (N, C, H, W) -> top (N, C*kh*kw, H_out, W_out), rows ordered by
    channel, then kernel row, then kernel column; ``H_out = (H + 2*pad_h -
    (dilation_h*(kh-1) + 1)) / stride_h + 1`` (floor), likewise W_out. A 1-D
    spatial axis works the same way.

    Gradient: col2im of the top diff (overlapping patches summed, the padding
    dropped).
    """

    uses_ops = ("col2im", "im2col", "data", "diff", "mutable_data", "mutable_diff")

    exact_num_bottom = 1
    exact_num_top = 1

    # Caffe's kernel/pad/stride/dilation rules, shared with the convolutions.
    _geometry = BaseConvolutionLayer._geometry

    def setup(self, bottom, top):
        p = self.layer_param.convolution_param
        self.axis = canonical_axis(self, bottom[0], p.axis)
        self.num_spatial = bottom[0].num_axes - self.axis - 1
        if self.num_spatial < 1:
            raise LayerError(
                self,
                f"bottom {bottom[0].shape} has no spatial axis after the channel "
                f"axis {self.axis}",
            )
        if self.num_spatial > 2:
            raise UnsupportedError(
                f"{self.type} layer '{self.name}': {self.num_spatial} spatial axes "
                f"(bottom shape {bottom[0].shape}) are not supported; Im2col takes 1 "
                "or 2"
            )
        self.kernel = self._geometry(p, "kernel_size", "kernel", None)
        self.stride = self._geometry(p, "stride", "stride", 1)
        self.pad = self._geometry(p, "pad", "pad", 0)
        self.dilation = self._geometry(p, "dilation", None, 1)
        for what, values in (
            ("kernel size", self.kernel),
            ("stride", self.stride),
            ("dilation", self.dilation),
        ):
            if any(v < 1 for v in values):
                raise LayerError(self, f"{what} must be >= 1, got {list(values)}")
        self.geom = None

    def reshape(self, bottom, top):
        x = bottom[0]
        if x.num_axes != self.axis + 1 + self.num_spatial:
            raise ShapeError(
                self,
                f"bottom has {x.num_axes} axes ({x.shape}); the layer was set up "
                f"for {self.axis + 1 + self.num_spatial}",
            )
        channels = x.shape[self.axis]
        in_sp = x.shape[self.axis + 1 :]
        out_sp = tuple(
            conv_out_size(in_sp[i], self.kernel[i], self.pad[i], self.stride[i],
                          self.dilation[i])
            for i in range(self.num_spatial)
        )  # fmt: skip
        if min(out_sp) <= 0:
            raise ShapeError(
                self,
                f"bottom {x.shape} is too small for kernel {list(self.kernel)}, pad "
                f"{list(self.pad)}, stride {list(self.stride)}, dilation "
                f"{list(self.dilation)}: output size {out_sp}",
            )
        rows = channels
        for k in self.kernel:
            rows *= k
        top[0].reshape(x.shape[: self.axis] + (rows,) + out_sp)
        self.rows = rows
        self.geom = ConvGeometry(
            num=x.count_range(0, self.axis),
            in_channels=channels,
            out_channels=channels,
            in_spatial=tuple(in_sp),
            out_spatial=out_sp,
            kernel=self.kernel,
            pad=self.pad,
            stride=self.stride,
            dilation=self.dilation,
            group=1,
        )

    def _col(self, ops):
        """Scratch columns (rows, num, *out_spatial), the ops' layout."""
        g = self.geom
        shape = (self.rows, g.num) + g.out_spatial
        return self.workspace(ops).get("col", shape, self.dtype)

    def forward(self, bottom, top):
        ops = backend.ops()
        col = self._col(ops)
        ops.im2col(ops.data(bottom[0]), self.geom, col)
        y = ops.mutable_data(top[0]).reshape((self.geom.num, self.rows, -1))
        y[...] = ops.xp.swapaxes(col.reshape(self.rows, self.geom.num, -1), 0, 1)

    def backward(self, top, propagate_down, bottom):
        if not propagate_down[0]:
            return
        ops = backend.ops()
        col = self._col(ops)
        dy = ops.diff(top[0]).reshape((self.geom.num, self.rows, -1))
        col.reshape(self.rows, self.geom.num, -1)[...] = ops.xp.swapaxes(dy, 0, 1)
        ops.col2im(col, self.geom, ops.mutable_diff(bottom[0]))
