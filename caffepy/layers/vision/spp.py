"""SPP: spatial pyramid pooling (Caffe's ``spp_layer.cpp``)."""

from __future__ import annotations

from caffepy import backend
from caffepy.blob import Blob
from caffepy.errors import LayerError, ShapeError
from caffepy.layer import Layer
from caffepy.proto import caffe_pb2
from caffepy.registry import create_layer, register_layer

_POOL = {
    caffe_pb2.SPPParameter.MAX: caffe_pb2.PoolingParameter.MAX,
    caffe_pb2.SPPParameter.AVE: caffe_pb2.PoolingParameter.AVE,
    caffe_pb2.SPPParameter.STOCHASTIC: caffe_pb2.PoolingParameter.STOCHASTIC,
}


def level_pooling(level: int, height: int, width: int) -> tuple[int, int, int, int]:
    """Caffe's pooling window for pyramid level ``level`` (2^level bins a side):
    ``(kernel_h, kernel_w, pad_h, pad_w)``, the stride equal to the kernel.

    ``kernel = ceil(size / bins)``; ``pad = (kernel * bins - size + 1) // 2``, so
    the windows cover the whole (padded) input.
    """
    bins = 2**level
    kh, kw = -(-height // bins), -(-width // bins)
    return kh, kw, (kh * bins - height + 1) // 2, (kw * bins - width + 1) // 2


@register_layer("SPP")
class SPPLayer(Layer):
    """Spatial pyramid pooling: pool (N, C, H, W) into 1, 2x2, 4x4, ... bins and
    concatenate the levels, so any input size gives a fixed-length output.

    Parameters (``spp_param``): ``pyramid_height`` (required, >= 1), ``pool`` (MAX;
    AVE; STOCHASTIC is refused, as by Pooling).

    Level l pools with the window of :func:`level_pooling` (Caffe's Pooling
    rules: ceil rounding, AVE divides by the window clipped to the padded input).
    Top: (N, C * sum of 4^l) with each level flattened to (N, C * 4^l), levels in
    order; with ``pyramid_height`` 1 the single pooling's (N, C, 1, 1), as Caffe.

    Gradient: each level's Pooling backward, summed over the levels.
    """

    exact_num_bottom = 1
    exact_num_top = 1

    def setup(self, bottom, top):
        p = self.layer_param.spp_param
        if not p.HasField("pyramid_height") or p.pyramid_height < 1:
            given = p.pyramid_height if p.HasField("pyramid_height") else "none"
            raise LayerError(
                self, f"spp_param.pyramid_height must be >= 1, got {given}"
            )
        self.height = int(p.pyramid_height)
        self.pool = _POOL[p.pool]
        self._size = None
        self._split = [Blob((), self.dtype) for _ in range(self.height)]
        self._pooled = [Blob((), self.dtype) for _ in range(self.height)]
        self._flat = [Blob((), self.dtype) for _ in range(self.height)]

    def _make(self, type_name, suffix, configure=None):
        lp = caffe_pb2.LayerParameter(name=f"{self.name}_{suffix}", type=type_name)
        if configure is not None:
            configure(lp)
        return create_layer(lp, self.phase, self.dtype)

    def _pooling(self, level, h, w):
        kh, kw, ph, pw = level_pooling(level, h, w)
        if ph >= kh or pw >= kw:
            raise ShapeError(
                self,
                f"a {h}x{w} input is too small for pyramid_height {self.height}: "
                f"level {level} ({2**level}x{2**level} bins) pools with pad "
                f"[{ph}, {pw}], which must be smaller than its kernel [{kh}, {kw}]",
            )

        def configure(lp):
            pp = lp.pooling_param
            pp.pool = self.pool
            pp.kernel_h, pp.kernel_w, pp.pad_h, pp.pad_w = kh, kw, ph, pw
            pp.stride_h, pp.stride_w = kh, kw

        return self._make("Pooling", f"pool{level}", configure)

    def _build(self, bottom, top):
        """The internal layers for this input size (Caffe rebuilds the poolings
        when the bottom's shape changes): a Pooling per level, then Flatten and
        Concat, or the one Pooling straight to the top."""
        h, w = bottom[0].shape[2:]
        self._pools = [self._pooling(i, h, w) for i in range(self.height)]
        if self.height == 1:
            self._pools[0].SetUp(bottom, top)
            return
        self._flatten = [
            self._make("Flatten", f"flatten{i}") for i in range(self.height)
        ]
        self._concat = self._make("Concat", "concat")
        for i in range(self.height):
            self._pools[i].SetUp([self._split[i]], [self._pooled[i]])
            self._flatten[i].SetUp([self._pooled[i]], [self._flat[i]])
        self._concat.SetUp(self._flat, top)

    def reshape(self, bottom, top):
        x = bottom[0]
        if x.num_axes != 4:
            raise ShapeError(
                self, f"bottom must have 4 axes (N, C, H, W), got shape {x.shape}"
            )
        if x.shape[2] <= 0 or x.shape[3] <= 0:
            raise ShapeError(self, f"bottom {x.shape} has an empty spatial axis")
        for s in self._split:
            # NOTE: each level reads the bottom's data; its gradient goes to a diff
            # of its own, summed into the bottom's in backward (Caffe's Split).
            s.reshape(x.shape)
            s.share_data(x)
        if self._size != x.shape[2:]:
            self._size = x.shape[2:]
            self._build(bottom, top)
        if self.height == 1:
            self._pools[0].reshape(bottom, top)
            return
        for i in range(self.height):
            self._pools[i].reshape([self._split[i]], [self._pooled[i]])
            self._flatten[i].reshape([self._pooled[i]], [self._flat[i]])
        self._concat.reshape(self._flat, top)

    def forward(self, bottom, top):
        if self.height == 1:
            self._pools[0].forward(bottom, top)
            return
        for i in range(self.height):
            self._pools[i].forward([self._split[i]], [self._pooled[i]])
            self._flatten[i].forward([self._pooled[i]], [self._flat[i]])
        self._concat.forward(self._flat, top)

    def backward(self, top, propagate_down, bottom):
        if not propagate_down[0]:
            return
        if self.height == 1:
            self._pools[0].backward(top, propagate_down, bottom)
            return
        self._concat.backward(top, [True] * self.height, self._flat)
        for i in range(self.height):
            self._flatten[i].backward([self._flat[i]], [True], [self._pooled[i]])
            self._pools[i].backward([self._pooled[i]], [True], [self._split[i]])
        ops = backend.ops()
        dx = ops.mutable_diff(bottom[0])
        ops.copy(ops.diff(self._split[0]), dx)
        for s in self._split[1:]:
            dx += ops.diff(s)
