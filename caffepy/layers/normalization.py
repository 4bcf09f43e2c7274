"""Normalization layers: BatchNorm, Scale, Bias, LRN, MVN (BVLC Caffe semantics).

BatchNorm has no scale/shift of its own (a following Scale layer with
``bias_term: true`` learns them) and keeps its statistics in three blobs that
are never learned. Scale and Bias broadcast a parameter (or a second bottom)
over the axes of the first bottom that it does not cover. The loops live in
:mod:`caffepy.kernels.normalization`.
"""

import numpy as np

from caffepy.errors import LayerError, ShapeError
from caffepy.layer import TEST, Layer, canonical_axis, want_param
from caffepy.registry import register_layer


def _param_shape(layer, bottom, axis, num_axes, what):
    """Shape of a Scale/Bias parameter covering ``num_axes`` axes from ``axis``."""
    axis = canonical_axis(layer, bottom, axis)
    if num_axes < -1:
        raise LayerError(
            layer,
            f"num_axes must be >= 0, or -1 to extend to the end of bottom[0]; got "
            f"{num_axes}",
        )
    if num_axes >= 0 and bottom.num_axes < axis + num_axes:
        raise LayerError(
            layer,
            f"{what} of {num_axes} axes from axis {axis} extends past bottom[0]'s "
            f"shape {bottom.shape}",
        )
    end = None if num_axes == -1 else axis + num_axes
    return tuple(bottom.shape[axis:end])


def _geometry(layer, bottom, param, axis, what):
    """(outer, dim, inner) of broadcasting ``param`` over ``bottom`` from ``axis``.

    As Caffe, a scalar (0-axis) parameter is applied with axis 0.
    """
    axis = 0 if param.num_axes == 0 else canonical_axis(layer, bottom, axis)
    if bottom.shape[axis : axis + param.num_axes] != param.shape:
        raise ShapeError(
            layer,
            f"{what} of shape {param.shape} does not match bottom[0] of shape "
            f"{bottom.shape} from axis {axis}",
        )
    return (
        bottom.count_range(0, axis),
        param.count,
        bottom.count_range(axis + param.num_axes),
    )


def _channel_sums(layer, a3, b3):
    """(sum of a3, sum of a3 * b3) over axes 0 and 2, in reused float64 buffers."""
    from caffepy.kernels.normalization import channel_reduce

    dim = a3.shape[1]
    bufs = getattr(layer, "_sums", None)
    if bufs is None or bufs[0].size != dim:
        bufs = layer._sums = (np.empty(dim, np.float64), np.empty(dim, np.float64))
    channel_reduce(a3, b3, bufs[0], bufs[1])
    return bufs


class _InPlaceCopy:
    """A reusable buffer holding a copy of an array (the input of an in-place layer)."""

    def __init__(self):
        self.array = None

    def keep(self, data):
        from caffepy.kernels.neuron import copy

        if self.array is None or self.array.shape != data.shape:
            self.array = np.empty_like(data)
        copy(data.reshape(-1), self.array.reshape(-1))
        return self.array


@register_layer("BatchNorm")
class BatchNormLayer(Layer):
    """Batch normalisation without scale or shift (Caffe's BatchNorm).

    ``y = (x - mean) / sqrt(var + eps)`` per channel (axis 1), statistics over
    the batch and every axis after 1.

    Parameters (``batch_norm_param``):
        use_global_stats (unset: true in TEST, false in TRAIN): normalise with the
            stored statistics instead of the batch's.
        moving_average_fraction (0.999): decay ``maf`` of the stored sums.
        eps (1e-5): added to the variance.

    Blobs (statistics, never learned: the Net gives them lr_mult 0 and, as Caffe,
    an explicit nonzero lr_mult is refused): ``blobs[0]`` running mean sum (C,),
    ``blobs[1]`` running variance sum (C,), ``blobs[2]`` their normaliser (1,).
    With batch statistics, forward updates them as Caffe:
    ``s = maf * s + 1``, ``mean_sum = maf * mean_sum + mean``,
    ``var_sum = maf * var_sum + m / (m - 1) * var`` (m = N * spatial; the
    normalisation itself uses the biased variance). Global statistics are
    ``blobs[0] / s`` and ``blobs[1] / s`` (0 when s == 0).

    Bottom: (N, C, ...) or (N,) (one channel). Top: same shape (in place allowed).

    Gradient: with batch statistics
    ``dx = (dy - mean(dy) - mean(dy * y) * y) / sqrt(var + eps)``; with global
    statistics ``dx = dy / sqrt(var + eps)``.
    """

    exact_num_bottom = 1
    exact_num_top = 1

    def setup(self, bottom, top):
        param = self.layer_param.batch_norm_param
        self.moving_average_fraction = float(param.moving_average_fraction)
        self.use_global_stats = self.phase == TEST
        if param.HasField("use_global_stats"):
            self.use_global_stats = bool(param.use_global_stats)
        self.eps = float(param.eps)
        if self.eps < 0:
            raise LayerError(self, f"eps must be >= 0, got {self.eps}")
        if bottom[0].num_axes == 0:
            raise LayerError(self, "needs a bottom with at least 1 axis, got a scalar")
        self.channels = 1 if bottom[0].num_axes == 1 else bottom[0].shape[1]
        for i, spec in enumerate(self.layer_param.param[:3]):
            if spec.lr_mult != 0:
                raise LayerError(
                    self,
                    f"param {i} has lr_mult {spec.lr_mult}; BatchNorm statistics "
                    "cannot be learned (use lr_mult: 0 or leave param out)",
                )
        if self.blobs:
            want = [(self.channels,), (self.channels,), (1,)]
            got = [b.count for b in self.blobs]
            if len(self.blobs) != 3 or got != [w[0] for w in want]:
                raise LayerError(
                    self,
                    f"expected 3 statistics blobs of shapes {want}, got "
                    f"{[b.shape for b in self.blobs]}",
                )
        else:
            for shape in ((self.channels,), (self.channels,), (1,)):
                self.new_blob(shape)  # zeros
        self.param_propagate_down = [False] * len(self.blobs)
        self._xnorm = None
        self._mean = np.zeros(self.channels, self.dtype)
        self._var = np.zeros(self.channels, self.dtype)
        self._std = np.zeros(self.channels, self.dtype)

    def reshape(self, bottom, top):
        shape = bottom[0].shape
        if len(shape) == 0 or (len(shape) > 1 and shape[1] != self.channels):
            raise ShapeError(
                self,
                f"bottom shape {shape} does not have the {self.channels} channels "
                "(axis 1) the layer was set up with",
            )
        if top[0] is not bottom[0]:
            top[0].reshape(shape)

    def _view(self, array):
        num = array.shape[0]
        return array.reshape(num, self.channels, -1) if num else array.reshape(0, 1, 1)

    def forward(self, bottom, top):
        from caffepy.kernels import normalization as K

        x3, y3 = self._view(bottom[0].data), self._view(top[0].data)
        if self.use_global_stats:
            s = float(self.blobs[2].data.reshape(-1)[0])
            factor = 0.0 if s == 0 else 1.0 / s
            np.multiply(self.blobs[0].data, factor, out=self._mean)
            np.multiply(self.blobs[1].data, factor, out=self._var)
            np.add(self._var, self.eps, out=self._std)
            np.sqrt(self._std, out=self._std)
            K.bn_global_forward(x3, self._mean, self._std, y3)
            return
        if self._xnorm is None or self._xnorm.shape != x3.shape:
            self._xnorm = np.empty_like(x3)
        K.bn_forward_train(
            x3, self.eps, y3, self._xnorm, self._mean, self._var, self._std
        )
        maf = self.moving_average_fraction
        stats = [b.data for b in self.blobs]
        stats[2] *= maf
        stats[2] += 1
        stats[0] *= maf
        stats[0] += self._mean
        m = bottom[0].count // self.channels
        # NOTE: the stored variance is unbiased (m / (m - 1)), the one used to
        # normalise this batch is not, as Caffe.
        correction = m / (m - 1) if m > 1 else 1.0
        stats[1] *= maf
        stats[1] += correction * self._var

    def backward(self, top, propagate_down, bottom):
        if not propagate_down[0]:
            return
        from caffepy.kernels import normalization as K

        dy3, dx3 = self._view(top[0].diff), self._view(bottom[0].diff)
        if self.use_global_stats:
            np.divide(dy3, self._std[:, None], out=dx3)
            return
        K.bn_backward_train(dy3, self._xnorm, self._std, dx3)


def _as1d(array):
    return array.reshape(-1)


@register_layer("Scale")
class ScaleLayer(Layer):
    """Multiply by a scale broadcast over the first bottom, optionally add a bias.

    ``y = x * s + b`` where s (and b) cover ``num_axes`` axes of x from ``axis``
    and are repeated over the others.

    Parameters (``scale_param``):
        axis (1): first axis of x the scale covers (negative counts from the end).
        num_axes (1): axes covered by a learned scale; 0 = a scalar, -1 = every axis
            from ``axis`` on. Ignored with a second bottom (its shape decides).
        filler (constant 1 when unset, as Caffe): learned-scale initialisation.
        bias_term (false): also learn a bias of the same coverage (as a Bias
            layer with the same axis and num_axes).
        bias_filler (constant 0): bias initialisation.

    Bottoms: x, and optionally the scale itself as bottom[1] (then no scale blob).
    Top: x's shape (in place allowed: the input is kept for the scale gradient).

    Blobs: [scale][, bias] — the scale only when it is not bottom[1].

    Gradient: ``dx = dy * s``; ``ds = sum of dy * x`` and ``db = sum of dy`` over
    the repeated axes (accumulated into a learned scale/bias, written into
    bottom[1].diff).
    """

    min_num_bottom = 1
    max_num_bottom = 2
    exact_num_top = 1

    def setup(self, bottom, top):
        param = self.layer_param.scale_param
        self.axis = param.axis
        if len(bottom) == 1 and not self.blobs:
            shape = _param_shape(self, bottom[0], param.axis, param.num_axes, "scale")
            if param.HasField("filler"):
                filler = param.filler
            else:
                from caffepy.proto import caffe_pb2

                filler = caffe_pb2.FillerParameter(type="constant", value=1.0)
            self.new_blob(shape, filler)
        self.bias_term = bool(param.bias_term)
        self.bias_id = None
        if self.bias_term:
            if len(self.blobs) + len(bottom) < 3:
                # NOTE: the bias follows Bias's rules with Scale's axis; with a
                # second bottom it covers as many axes as that bottom has.
                num_axes = bottom[1].num_axes if len(bottom) > 1 else param.num_axes
                shape = _param_shape(self, bottom[0], param.axis, num_axes, "bias")
                self.new_blob(shape, param.bias_filler)
            self.bias_id = len(self.blobs) - 1
        elif len(self.blobs) + len(bottom) > 2:
            raise LayerError(
                self,
                f"has {len(self.blobs)} blobs with {len(bottom)} bottom(s) but "
                "bias_term is false",
            )
        self._x_copy = _InPlaceCopy()

    def _scale_blob(self, bottom):
        return bottom[1] if len(bottom) > 1 else self.blobs[0]

    def reshape(self, bottom, top):
        scale = self._scale_blob(bottom)
        self.geom = _geometry(self, bottom[0], scale, self.axis, "scale")
        if self.bias_id is not None:
            bias = self.blobs[self.bias_id]
            self.bias_geom = _geometry(self, bottom[0], bias, self.axis, "bias")
        if top[0] is not bottom[0]:
            top[0].reshape(bottom[0].shape)

    def forward(self, bottom, top):
        from caffepy.kernels.normalization import channel_affine

        scale = self._scale_blob(bottom)
        if top[0] is bottom[0] and (len(bottom) > 1 or want_param(self, 0)):
            self._x_copy.keep(bottom[0].data)
        x3 = bottom[0].data.reshape(self.geom)
        y3 = top[0].data.reshape(self.geom)
        s = _as1d(scale.data)
        fused = self.bias_id is not None and self.bias_geom == self.geom
        b = _as1d(self.blobs[self.bias_id].data) if fused else s
        channel_affine(x3, s, b, True, fused, y3)
        if self.bias_id is not None and not fused:
            b = _as1d(self.blobs[self.bias_id].data)
            y3b = top[0].data.reshape(self.bias_geom)
            channel_affine(y3b, b, b, False, True, y3b)

    def backward(self, top, propagate_down, bottom):
        from caffepy.kernels.normalization import channel_affine

        # Parameter gradients first: in place, dx overwrites dy.
        dy3 = top[0].diff.reshape(self.geom)
        want_bias = self.bias_id is not None and want_param(self, self.bias_id)
        scale_is_param = len(bottom) == 1
        scale = self._scale_blob(bottom)
        if (scale_is_param and want_param(self, 0)) or (
            not scale_is_param and propagate_down[1]
        ):
            x = self._x_copy.array if top[0] is bottom[0] else bottom[0].data
            sum_dy, sum_dyx = _channel_sums(self, dy3, x.reshape(self.geom))
            if scale_is_param:
                scale.diff += sum_dyx.reshape(scale.shape)
            else:
                scale.diff[...] = sum_dyx.reshape(scale.shape)
            if want_bias and self.bias_geom == self.geom:
                bias = self.blobs[self.bias_id]
                bias.diff += sum_dy.reshape(bias.shape)
                want_bias = False
        if want_bias:
            dyb = top[0].diff.reshape(self.bias_geom)
            sum_dy, _ = _channel_sums(self, dyb, dyb)
            bias = self.blobs[self.bias_id]
            bias.diff += sum_dy.reshape(bias.shape)
        if propagate_down[0]:
            s = _as1d(scale.data)
            channel_affine(
                top[0].diff.reshape(self.geom),
                s,
                s,
                True,
                False,
                bottom[0].diff.reshape(self.geom),
            )


@register_layer("Bias")
class BiasLayer(Layer):
    """Add a bias broadcast over the first bottom: ``y = x + b``.

    Parameters (``bias_param``):
        axis (1): first axis of x the bias covers (negative counts from the end).
        num_axes (1): axes covered by a learned bias; 0 = a scalar, -1 = every axis
            from ``axis`` on. Ignored with a second bottom (its shape decides).
        filler (constant 0): learned-bias initialisation.

    Bottoms: x, and optionally the bias itself as bottom[1] (then no blob).
    Top: x's shape (in place allowed).

    Gradient: ``dx = dy``; ``db = sum of dy`` over the repeated axes (accumulated
    into a learned bias, written into bottom[1].diff).
    """

    min_num_bottom = 1
    max_num_bottom = 2
    exact_num_top = 1

    def setup(self, bottom, top):
        param = self.layer_param.bias_param
        self.axis = param.axis
        if len(bottom) == 1 and not self.blobs:
            shape = _param_shape(self, bottom[0], param.axis, param.num_axes, "bias")
            self.new_blob(shape, param.filler)

    def _bias_blob(self, bottom):
        return bottom[1] if len(bottom) > 1 else self.blobs[0]

    def reshape(self, bottom, top):
        self.geom = _geometry(
            self, bottom[0], self._bias_blob(bottom), self.axis, "bias"
        )
        if top[0] is not bottom[0]:
            top[0].reshape(bottom[0].shape)

    def forward(self, bottom, top):
        from caffepy.kernels.normalization import channel_affine

        b = _as1d(self._bias_blob(bottom).data)
        channel_affine(
            bottom[0].data.reshape(self.geom),
            b,
            b,
            False,
            True,
            top[0].data.reshape(self.geom),
        )

    def backward(self, top, propagate_down, bottom):
        bias_is_param = len(bottom) == 1
        bias = self._bias_blob(bottom)
        if (bias_is_param and want_param(self, 0)) or (
            not bias_is_param and propagate_down[1]
        ):
            dy3 = top[0].diff.reshape(self.geom)
            sum_dy, _ = _channel_sums(self, dy3, dy3)
            if bias_is_param:
                bias.diff += sum_dy.reshape(bias.shape)
            else:
                bias.diff[...] = sum_dy.reshape(bias.shape)
        if propagate_down[0] and top[0] is not bottom[0]:
            np.copyto(bottom[0].diff, top[0].diff)


@register_layer("LRN")
class LRNLayer(Layer):
    """Local response normalisation (Caffe's LRN).

    ACROSS_CHANNELS: ``y = x * (k + alpha/n * sum x^2) ^ -beta`` over the n
    channels centred on each one (zero-padded at the ends).

    WITHIN_CHANNEL: ``y = x * (1 + alpha/n^2 * sum x^2) ^ -beta`` over the n x n
    window centred on each position (``k`` is ignored). Caffe builds it from
    square -> AVE pooling (pad (n-1)/2, stride 1) -> power -> product, so the
    window is clipped to the image for the sum while the divisor stays n * n;
    the numbers here are that graph's.

    Parameters (``lrn_param``):
        local_size (5): n, odd. alpha (1). beta (0.75). k (1).
        norm_region (ACROSS_CHANNELS).

    Bottom: (N, C, H, W). Top: same shape.

    Gradient: ``dx = dy * scale^-beta - 2*alpha*beta/n * x * sum_window(dy*y/scale)``
    across channels; with ``n^2`` in place of ``n`` and the n x n window within.
    """

    exact_num_bottom = 1
    exact_num_top = 1

    def setup(self, bottom, top):
        param = self.layer_param.lrn_param
        self.size = int(param.local_size)
        if self.size % 2 != 1:
            raise LayerError(self, f"local_size must be odd, got {self.size}")
        self.alpha = float(param.alpha)
        self.beta = float(param.beta)
        self.k = float(param.k)
        self.within = param.norm_region == param.WITHIN_CHANNEL
        self._scale = None
        self._x_copy = _InPlaceCopy()

    def reshape(self, bottom, top):
        shape = bottom[0].shape
        if len(shape) != 4:
            raise ShapeError(
                self, f"needs a 4-D bottom (num, channels, height, width), got {shape}"
            )
        if top[0] is not bottom[0]:
            top[0].reshape(shape)
        if self._scale is None or self._scale.shape != shape:
            self._scale = np.empty(shape, self.dtype)

    def _view(self, array):
        n, c, h, w = array.shape
        return array.reshape(n * c, h, w) if self.within else array.reshape(n, c, h * w)

    def forward(self, bottom, top):
        from caffepy.kernels import normalization as K

        x = bottom[0].data
        if top[0] is bottom[0]:
            x = self._x_copy.keep(x)
        x3, y3, s3 = self._view(x), self._view(top[0].data), self._view(self._scale)
        if self.within:
            K.lrn_within_forward(x3, self.size, self.alpha, self.beta, s3, y3)
        else:
            K.lrn_across_forward(
                x3, self.size, self.alpha / self.size, self.k, self.beta, s3, y3
            )

    def backward(self, top, propagate_down, bottom):
        if not propagate_down[0]:
            return
        from caffepy.kernels import normalization as K

        x = self._x_copy.array if top[0] is bottom[0] else bottom[0].data
        args = (
            self._view(x),
            self._view(top[0].data),
            self._view(self._scale),
            self._view(top[0].diff),
            self.size,
        )
        dx = self._view(bottom[0].diff)
        if self.within:
            K.lrn_within_backward(*args, self.alpha, self.beta, dx)
        else:
            coeff = 2.0 * self.alpha * self.beta / self.size
            K.lrn_across_backward(*args, coeff, self.beta, dx)


@register_layer("MVN")
class MVNLayer(Layer):
    """Mean-variance normalisation per sample and channel (or per sample).

    ``y = (x - mean) / (std + eps)`` with mean and (biased) std over H, W of each
    (n, c), or over C, H, W of each n with ``across_channels``.
    NOTE: eps is added to the standard deviation, not the variance, as Caffe.

    Parameters (``mvn_param``):
        normalize_variance (true): divide by the std (else only subtract the mean).
        across_channels (false): statistics over every axis after 0.
        eps (1e-9).

    Bottom: (N, C, ...) or (N,). Top: same shape (in place allowed).

    Gradient (Caffe's): ``dx = (dy - mean(dy) - mean(dy * y) * y) / (std + eps)``,
    or ``dx = dy - mean(dy)`` without variance normalisation.
    NOTE: like Caffe this treats eps as 0 in the std's own derivative, so with a
    large eps it is close to, not exactly, the derivative of the forward.
    """

    exact_num_bottom = 1
    exact_num_top = 1

    def setup(self, bottom, top):
        param = self.layer_param.mvn_param
        self.normalize_variance = bool(param.normalize_variance)
        self.across_channels = bool(param.across_channels)
        self.eps = float(param.eps)
        self._std = None

    def reshape(self, bottom, top):
        shape = bottom[0].shape
        if not shape:
            raise ShapeError(self, "needs a bottom with at least 1 axis, got a scalar")
        if top[0] is not bottom[0]:
            top[0].reshape(shape)
        num = shape[0]
        if not self.across_channels and len(shape) > 1:
            num *= shape[1]
        self.num = num

    def _view(self, array):
        return array.reshape(self.num, -1) if self.num else array.reshape(0, 1)

    def forward(self, bottom, top):
        x2, y2 = self._view(bottom[0].data), self._view(top[0].data)
        mean = x2.mean(axis=1, keepdims=True)
        np.subtract(x2, mean, out=y2)
        if self.normalize_variance:
            std = np.square(y2).mean(axis=1, keepdims=True)
            np.sqrt(std, out=std)
            std += self.eps
            y2 /= std
            self._std = std

    def backward(self, top, propagate_down, bottom):
        if not propagate_down[0]:
            return
        dy2, dx2 = self._view(top[0].diff), self._view(bottom[0].diff)
        mean_dy = dy2.mean(axis=1, keepdims=True)
        if not self.normalize_variance:
            np.subtract(dy2, mean_dy, out=dx2)
            return
        y2 = self._view(top[0].data)
        mean_dyy = (dy2 * y2).mean(axis=1, keepdims=True)
        corr = y2 * mean_dyy
        corr += mean_dy
        np.subtract(dy2, corr, out=dx2)
        dx2 /= self._std
