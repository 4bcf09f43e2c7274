"""The op interface every backend implements, and the one workspace mechanism.

Conventions for every op:

- Arguments are arrays of the backend's own kind (``ops.data(blob)`` and
  friends, ``ops.empty``), never Blobs, protos or layers: inputs first, geometry
  and scalars next, outputs last.
- An op *assigns* its outputs, except parameter gradients (``dw``, ``db``,
  ...), which it *accumulates* (Caffe's ``param_propagate_down`` contract). An
  output given as ``None`` is not wanted and is not computed.
- Scratch memory comes from a :class:`Workspace` the caller owns (one per layer),
  so steady-state training allocates nothing.

Sections below name the layer families they serve; a backend may leave an op
unimplemented (``NotImplementedError``), and the layer then falls back to the
CPU backend with explicit host syncs (Caffe's ``Forward_gpu`` calling
``Forward_cpu``).
"""

from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType
from typing import Any

import numpy as np

Array = Any
"""A backend's array: ``numpy.ndarray`` on the CPU, a device array on CUDA."""


class Workspace:
    """Named work arrays of one backend that grow but never shrink.

    ``ws.get("col", shape, dtype)`` returns an uninitialised array of that shape
    backed by a buffer kept under that name; a later call with a larger size
    reallocates, a smaller one reuses the buffer. One per layer (or per op
    owner), created by :meth:`Ops.workspace`.

    Attributes:
        state: small host values an op keeps between calls on this workspace
            (e.g. which input a convolution's columns were unfolded from, so
            backward can reuse them).
    """

    def __init__(self, ops: Ops):
        self._ops = ops
        self._arrays: dict[tuple[str, str], Array] = {}
        self._views: dict[tuple, Array] = {}
        self.state: dict[str, Any] = {}

    def get(self, name: str, shape: tuple[int, ...], dtype: Any = np.float32) -> Array:
        # NOTE: the views handed out are cached by (name, dtype, shape): a layer's
        # steady state asks for the same few every pass, and building a view costs
        # microseconds, a dict lookup a tenth of that.
        try:
            view = self._views.get((name, dtype, shape))
        except TypeError:  # an unhashable shape (a list)
            shape = tuple(shape)
            view = self._views.get((name, dtype, shape))
        if view is not None:
            return view
        size = 1
        for d in shape:
            size *= int(d)
        key = (name, np.dtype(dtype).str)
        buf = self._arrays.get(key)
        if buf is None or buf.size < size:
            buf = self._ops.empty((max(size, 1),), dtype)
            self._arrays[key] = buf
            self._views.clear()  # views of the replaced buffer must not be reused
        view = buf[:size].reshape(shape)
        if len(self._views) >= 256:
            self._views.clear()
        self._views[(name, dtype, shape)] = view
        return view

    def zeros(self, name: str, shape: tuple[int, ...], dtype: Any = np.float32) -> Array:
        arr = self.get(name, shape, dtype)
        arr[...] = 0
        return arr

    def keep(self, name: str, src: Array) -> Array:
        """A copy of ``src`` kept under ``name`` (the input of an in-place layer,
        needed again by backward)."""
        dst = self.get(name, src.shape, src.dtype)
        self._ops.copy(src, dst)
        return dst

    def clear(self) -> None:
        self._arrays.clear()
        self._views.clear()
        self.state.clear()


@dataclass(frozen=True)
class ConvGeometry:
    """The geometry of a (de)convolution in its GEMM view.

    A convolution maps a *conv input* (``in_channels`` x ``in_spatial``) to a
    *conv output* (``out_channels`` x ``out_spatial``) with weights
    ``(out_channels, in_channels // group, *kernel)``. Deconvolution swaps the
    roles (its forward is convolution's backward-data), as Caffe's
    ``reverse_dimensions()``. Spatial tuples have one entry per spatial axis.
    """

    num: int
    in_channels: int
    out_channels: int
    in_spatial: tuple[int, ...]
    out_spatial: tuple[int, ...]
    kernel: tuple[int, ...]
    pad: tuple[int, ...]
    stride: tuple[int, ...]
    dilation: tuple[int, ...]
    group: int

    @property
    def is_1x1(self) -> bool:
        return (
            all(k == 1 for k in self.kernel)
            and all(s == 1 for s in self.stride)
            and all(p == 0 for p in self.pad)
        )


@dataclass(frozen=True)
class PoolGeometry:
    """Pooling windows over (N, C, H, W): kernel, stride, pad and the pooled size
    (Caffe's ceil rounding, last window clipped)."""

    kernel: tuple[int, int]
    stride: tuple[int, int]
    pad: tuple[int, int]
    pooled: tuple[int, int]


class Ops:
    """One device's memory and numeric ops. Subclasses: the CPU and CUDA backends.

    Attributes:
        name: ``"cpu"`` or ``"cuda"``.
        xp: the array module of this backend's arrays (``numpy``, or ``cupy``),
            for small array expressions that need no kernel of their own.
    """

    name: str = "abstract"
    xp: ModuleType = np

    # -- memory and blob access -------------------------------------------------
    def empty(self, shape: tuple[int, ...], dtype: Any = np.float32) -> Array:
        raise NotImplementedError

    def zeros(self, shape: tuple[int, ...], dtype: Any = np.float32) -> Array:
        raise NotImplementedError

    def copy(self, src: Array, dst: Array) -> None:
        """dst[...] = src (same shape and backend)."""
        raise NotImplementedError

    def to_host(self, arr: Array) -> np.ndarray:
        raise NotImplementedError

    def from_host(self, arr: np.ndarray) -> Array:
        raise NotImplementedError

    def workspace(self) -> Workspace:
        return Workspace(self)

    def data(self, blob: Any) -> Array:
        """The blob's data on this device, for reading."""
        raise NotImplementedError

    def mutable_data(self, blob: Any) -> Array:
        """The blob's data on this device, to be written (this device becomes its
        head)."""
        raise NotImplementedError

    def diff(self, blob: Any) -> Array:
        raise NotImplementedError

    def mutable_diff(self, blob: Any) -> Array:
        raise NotImplementedError

    def asum(self, arr: Array) -> float:
        """sum(arr) as a Python float (the one device-to-host read of a loss)."""
        raise NotImplementedError

    def synchronize(self) -> None:
        """Wait for queued device work (a no-op on the CPU)."""

    # -- vision: convolution, deconvolution, inner product, pooling, im2col ------
    # (owned by the vision work; insert methods below this line)
    #
    # Convolution ops take a :class:`ConvGeometry` in the GEMM view: the *conv
    # input* holds ``num * in_channels * prod(in_spatial)`` elements, viewed as
    # (num, in_channels, *in_spatial), the *conv output* (num, out_channels,
    # *out_spatial), the weights (out_channels, in_channels // group, *kernel).
    # Convolution reads the conv input (its bottom) and writes the conv output;
    # deconvolution the reverse. Arrays are C-contiguous, float32 or float64.
    def conv_forward(
        self,
        x: Array,
        w: Array,
        b: Array | None,
        geom: ConvGeometry,
        y: Array,
        ws: Workspace,
    ) -> None:
        """Convolution (Caffe's cross-correlation with groups): y = W * x + b.

        Args:
            x: (num, in_channels, *in_spatial) input.
            w: (out_channels, in_channels // group, *kernel) weights.
            b: (out_channels,) bias, or None.
            geom: the geometry.
            y: (num, out_channels, *out_spatial), assigned.
            ws: the caller's workspace (columns, per-thread scratch; state kept
                for :meth:`conv_backward` of the same ``x``).
        """
        raise NotImplementedError

    def conv_backward(
        self,
        x: Array,
        dy: Array,
        w: Array,
        geom: ConvGeometry,
        dw: Array | None,
        db: Array | None,
        dx: Array | None,
        ws: Workspace,
    ) -> None:
        """Convolution gradients: dW = dy (x) columns(x), db = sum of dy over num
        and space, dx = col2im(W^T dy).

        Args:
            x: (num, in_channels, *in_spatial) forward input.
            dy: (num, out_channels, *out_spatial) gradient of the output.
            w: weights, as in :meth:`conv_forward`.
            geom: the geometry.
            dw: w's shape, accumulated (+=), or None.
            db: (out_channels,), accumulated, or None.
            dx: x's shape, assigned, or None.
            ws: the workspace given to :meth:`conv_forward` (it may reuse the
                forward's columns of ``x``).
        """
        raise NotImplementedError

    def deconv_forward(
        self,
        x: Array,
        w: Array,
        b: Array | None,
        geom: ConvGeometry,
        y: Array,
        ws: Workspace,
    ) -> None:
        """Deconvolution (convolution's backward-data as forward):
        y = col2im(W^T x) + b.

        Args:
            x: (num, out_channels, *out_spatial) input (the conv output side).
            w: (out_channels, in_channels // group, *kernel) weights.
            b: (in_channels,) bias, or None.
            geom: the geometry (deconvolution's top is the conv input).
            y: (num, in_channels, *in_spatial), assigned.
            ws: the caller's workspace.
        """
        raise NotImplementedError

    def deconv_backward(
        self,
        x: Array,
        dy: Array,
        w: Array,
        geom: ConvGeometry,
        dw: Array | None,
        db: Array | None,
        dx: Array | None,
        ws: Workspace,
    ) -> None:
        """Deconvolution gradients: dx = convolution of dy with W (no bias),
        dW = x (x) columns(dy), db = sum of dy over num and space.

        Args:
            x: (num, out_channels, *out_spatial) forward input.
            dy: (num, in_channels, *in_spatial) gradient of the output.
            w: weights, as in :meth:`deconv_forward`.
            geom: the geometry.
            dw: w's shape, accumulated, or None.
            db: (in_channels,), accumulated, or None.
            dx: x's shape, assigned, or None.
            ws: the caller's workspace.
        """
        raise NotImplementedError

    def im2col(self, x: Array, geom: ConvGeometry, col: Array) -> None:
        """Unfold the patches of a batch into columns (padding reads as 0).

        Args:
            x: (num, in_channels, *in_spatial) input.
            geom: the geometry (channels and sizes of x, kernel, pad, stride,
                dilation; ``out_spatial`` the number of patch positions).
            col: (in_channels * prod(kernel), num, *out_spatial), assigned.
        """
        raise NotImplementedError

    def col2im(self, col: Array, geom: ConvGeometry, x: Array) -> None:
        """Fold columns back into images, summing overlapping patches (the
        adjoint of :meth:`im2col`); positions in the padding are dropped.

        Args:
            col: (in_channels * prod(kernel), num, *out_spatial) columns.
            geom: the geometry, as in :meth:`im2col`.
            x: (num, in_channels, *in_spatial), assigned.
        """
        raise NotImplementedError

    def inner_product_forward(
        self,
        x: Array,
        w: Array,
        b: Array | None,
        transpose: bool,
        y: Array,
        ws: Workspace,
    ) -> None:
        """y = x W^T + b (y = x W + b when ``transpose``).

        Args:
            x: (M, K) input.
            w: (N, K) weights, or (K, N) when ``transpose``.
            b: (N,) bias, or None.
            transpose: W is stored (K, N).
            y: (M, N), assigned.
            ws: the caller's workspace.
        """
        raise NotImplementedError

    def inner_product_backward(
        self,
        x: Array,
        dy: Array,
        w: Array,
        transpose: bool,
        dw: Array | None,
        db: Array | None,
        dx: Array | None,
        ws: Workspace,
    ) -> None:
        """InnerProduct gradients: dW = dy^T x (x^T dy when ``transpose``),
        db = sum of dy over the rows, dx = dy W (dy W^T when ``transpose``).

        Args:
            x: (M, K) forward input; dy: (M, N) gradient of the output.
            w: weights as stored; transpose: as in :meth:`inner_product_forward`.
            dw: w's shape, accumulated, or None.
            db: (N,), accumulated, or None.
            dx: (M, K), assigned, or None.
            ws: the caller's workspace.
        """
        raise NotImplementedError

    def pool_forward(
        self,
        x: Array,
        geom: PoolGeometry,
        method: str,
        y: Array,
        mask: Array | None,
        ws: Workspace,
    ) -> None:
        """Max (``method="max"``) or average (``"ave"``) pooling, Caffe's windows:
        clipped to the input for max, divided by the window clipped to the padded
        input for average.

        Args:
            x: (N, C, H, W) input.
            geom: kernel, pad, stride and pooled size.
            method: ``"max"`` or ``"ave"``.
            y: (N, C, PH, PW), assigned.
            mask: for max, None or y's shape and dtype, assigned the argmax as a
                flat index ``h * W + w`` into the input plane (Caffe's second top).
            ws: the caller's workspace; max keeps its argmax there for
                :meth:`pool_backward`.
        """
        raise NotImplementedError

    def pool_backward(
        self,
        dy: Array,
        geom: PoolGeometry,
        method: str,
        dx: Array,
        ws: Workspace,
    ) -> None:
        """Pooling gradient: max routes dy to the forward's argmax (summing where
        windows share one), average spreads dy / pool_size over the window.

        Args:
            dy: (N, C, PH, PW) gradient of the output.
            geom, method: as in :meth:`pool_forward`.
            dx: (N, C, H, W), assigned.
            ws: the workspace given to :meth:`pool_forward`.
        """
        raise NotImplementedError

    def embed_forward(
        self, x: Array, w: Array, b: Array | None, y: Array, ws: Workspace
    ) -> None:
        """Lookup: y[i, :] = w[int(x[i]), :] + b.

        Args:
            x: indices stored as floats, any shape with S elements, each an
                integer in [0, K) (the caller checks).
            w: (K, N) table; b: (N,) bias, or None.
            y: (S, N), assigned.
            ws: the caller's workspace.
        """
        raise NotImplementedError

    def embed_backward(
        self,
        x: Array,
        dy: Array,
        dw: Array | None,
        db: Array | None,
        ws: Workspace,
    ) -> None:
        """Embed gradients: dw[k] += the sum of the rows of dy whose index is k
        (repeated indices accumulate), db += sum of dy over the rows.

        Args:
            x: the forward's indices (S elements); dy: (S, N).
            dw: (K, N), accumulated, or None; db: (N,), accumulated, or None.
            ws: the caller's workspace.
        """
        raise NotImplementedError

    # -- neuron and elementwise ----------------------------------------------------
    # (owned by the neuron/common work; insert methods below this line)
    #
    # Neuron ops (ReLU ... Dropout): ``x``, ``y``, ``dy``, ``dx`` (and ``sig``) are
    # arrays of one shape (any) and one float dtype (float32 or float64); ``y`` may
    # be ``x`` and ``dx`` may be ``dy`` (in-place layers). Backward ops read the
    # forward's input ``x`` or output ``y``, whichever the formula needs.
    def relu_forward(self, x: Array, negative_slope: float, y: Array) -> None:
        """y = x if x > 0 else negative_slope * x."""
        raise NotImplementedError

    def relu_backward(
        self, x: Array, dy: Array, negative_slope: float, dx: Array
    ) -> None:
        """dx = dy if x > 0 else negative_slope * dy (``x`` may be the forward's
        output when negative_slope >= 0: it has the input's sign)."""
        raise NotImplementedError

    def prelu_forward(self, x: Array, slope: Array, y: Array) -> None:
        """y = max(x, 0) + slope[c] * min(x, 0) on (N, C, S) arrays; ``slope`` is
        (C,), or one element shared by every channel."""
        raise NotImplementedError

    def prelu_backward(
        self,
        x: Array,
        dy: Array,
        slope: Array,
        dx: Array | None,
        dslope: Array | None,
        ws: Workspace,
    ) -> None:
        """PReLU gradients on (N, C, S) arrays.

        Args:
            x, dy: (N, C, S) input of the forward and gradient of the top.
            slope: (C,) slopes, or one shared element.
            dx: (N, C, S), assigned ``dy * (x > 0 ? 1 : slope[c])``; may be ``dy``.
            dslope: ``slope``'s gradient, *accumulated* with the sum over n, s
                (and c when shared) of ``dy * x * (x <= 0)``.
            ws: the caller's workspace (per-channel partial sums).
        """
        raise NotImplementedError

    def elu_forward(self, x: Array, alpha: float, y: Array) -> None:
        """y = x if x > 0 else alpha * (exp(x) - 1)."""
        raise NotImplementedError

    def elu_backward(
        self, x: Array, y: Array, dy: Array, alpha: float, dx: Array
    ) -> None:
        """dx = dy if x > 0 else dy * (y + alpha)."""
        raise NotImplementedError

    def sigmoid_forward(self, x: Array, y: Array) -> None:
        """y = 0.5 * tanh(0.5 * x) + 0.5 (Caffe's form of the logistic)."""
        raise NotImplementedError

    def sigmoid_backward(self, y: Array, dy: Array, dx: Array) -> None:
        """dx = dy * y * (1 - y)."""
        raise NotImplementedError

    def tanh_forward(self, x: Array, y: Array) -> None:
        """y = tanh(x)."""
        raise NotImplementedError

    def tanh_backward(self, y: Array, dy: Array, dx: Array) -> None:
        """dx = dy * (1 - y^2)."""
        raise NotImplementedError

    def absval_forward(self, x: Array, y: Array) -> None:
        """y = |x|."""
        raise NotImplementedError

    def absval_backward(self, x: Array, dy: Array, dx: Array) -> None:
        """dx = sign(x) * dy."""
        raise NotImplementedError

    def bnll_forward(self, x: Array, y: Array) -> None:
        """y = max(x, 0) + log(1 + exp(-|x|)) (softplus without overflow)."""
        raise NotImplementedError

    def bnll_backward(self, x: Array, dy: Array, dx: Array) -> None:
        """dx = dy * e / (e + 1), e = exp(min(x, 50)) (Caffe's kBNLL_THRESHOLD)."""
        raise NotImplementedError

    def power_forward(
        self, x: Array, power: float, scale: float, shift: float, y: Array
    ) -> None:
        """y = (shift + scale * x) ^ power; the constant ``1 if power == 0 else
        shift ^ power`` when power * scale == 0 (Caffe)."""
        raise NotImplementedError

    def power_backward(
        self, x: Array, dy: Array, power: float, scale: float, shift: float, dx: Array
    ) -> None:
        """dx = dy * power * scale * (shift + scale * x) ^ (power - 1) (0 when
        power * scale == 0; ``x`` is not read when power == 1)."""
        raise NotImplementedError

    def exp_forward(
        self, x: Array, inner_scale: float, outer_scale: float, y: Array
    ) -> None:
        """y = outer_scale * exp(inner_scale * x)."""
        raise NotImplementedError

    def exp_backward(self, y: Array, dy: Array, inner_scale: float, dx: Array) -> None:
        """dx = dy * y * inner_scale."""
        raise NotImplementedError

    def log_forward(
        self, x: Array, scale: float, shift: float, base_scale: float, y: Array
    ) -> None:
        """y = base_scale * ln(shift + scale * x) (base_scale = 1 / ln(base))."""
        raise NotImplementedError

    def log_backward(
        self, x: Array, dy: Array, scale: float, shift: float, coeff: float, dx: Array
    ) -> None:
        """dx = dy * coeff / (shift + scale * x) (coeff = scale / ln(base))."""
        raise NotImplementedError

    def threshold_forward(self, x: Array, threshold: float, y: Array) -> None:
        """y = 1 if x > threshold else 0."""
        raise NotImplementedError

    def clip_forward(self, x: Array, lo: float, hi: float, y: Array) -> None:
        """y = max(lo, min(x, hi))."""
        raise NotImplementedError

    def clip_backward(
        self, x: Array, dy: Array, lo: float, hi: float, dx: Array
    ) -> None:
        """dx = dy where lo <= x <= hi, else 0."""
        raise NotImplementedError

    def swish_forward(self, x: Array, beta: float, sig: Array, y: Array) -> None:
        """sig = sigmoid(beta * x) (Caffe's tanh form), y = x * sig; ``sig`` must
        not alias ``x``."""
        raise NotImplementedError

    def swish_backward(
        self, y: Array, sig: Array, dy: Array, beta: float, dx: Array
    ) -> None:
        """dx = dy * (beta * y + sig * (1 - beta * y))."""
        raise NotImplementedError

    def dropout_forward(
        self, x: Array, bits: Array, threshold: int, scale: float, y: Array
    ) -> None:
        """y = x * scale where bits < threshold, else 0 (inverted dropout).

        Args:
            x: input, any shape.
            bits: uint32 random bits, ``x.size`` of them (drawn on the host from
                :mod:`caffepy.rng`, so every device drops the same units).
            threshold: keep probability times 2^32.
            scale: factor of the kept units.
            y: output of x's shape, assigned (may be ``x``).
        """
        raise NotImplementedError

    def dropout_backward(
        self, dy: Array, bits: Array, threshold: int, scale: float, dx: Array
    ) -> None:
        """dx = dy * scale where bits < threshold, else 0 (the forward's mask)."""
        raise NotImplementedError

    # Common layers (Eltwise, Reduction, ArgMax). Eltwise ``operation`` is
    # EltwiseParameter's: PROD 0, SUM 1, MAX 2.
    def eltwise_forward(
        self,
        xs: list[Array],
        operation: int,
        coeffs: list[float],
        y: Array,
        mask: Array | None,
    ) -> None:
        """y = prod(xs), sum(coeff_i * x_i) or max(xs), element-wise.

        Args:
            xs: two or more inputs of one shape.
            operation: PROD (0), SUM (1) or MAX (2).
            coeffs: one per input (SUM only; cast to the arrays' float type).
            y: output of that shape, assigned (may be one of ``xs`` for SUM/PROD).
            mask: int32 of that shape for MAX, assigned the index of the input
                that gave each maximum (ties: input 1 over input 0, then a later
                input only when strictly greater); None otherwise.
        """
        raise NotImplementedError

    def eltwise_backward(
        self,
        xs: list[Array],
        y: Array,
        dy: Array,
        mask: Array | None,
        operation: int,
        coeffs: list[float],
        stable_prod_grad: bool,
        index: int,
        dx: Array,
    ) -> None:
        """The gradient for input ``index``, assigned to ``dx``.

        SUM: coeff * dy; PROD: dy * prod of the other inputs (stable) or
        dy * y / x (not stable); MAX: dy where ``mask == index``, else 0.
        """
        raise NotImplementedError

    def reduction_forward(
        self, x: Array, operation: int, coeff: float, y: Array
    ) -> None:
        """y[i] = coeff * reduce_j x[i, j] over (num, dim) ``x``; ``y`` holds num
        values (the top's shape, () when num is 1 and the top is 0-d).

        ``operation`` is ReductionParameter's: SUM 1, ASUM 2 (sum |x|), SUMSQ 3
        (sum x^2), MEAN 4 (sum / dim).
        """
        raise NotImplementedError

    def reduction_backward(
        self, x: Array, dy: Array, operation: int, coeff: float, dx: Array
    ) -> None:
        """dx[i, j] = coeff * dy[i] * (1, sign(x), 2x, 1/dim)[operation] on
        (num, dim) arrays (``dy`` (num,)); ``dx`` assigned."""
        raise NotImplementedError

    def argmax_forward(
        self, x: Array, top_k: int, out_max_val: bool, axis: int | None, y: Array
    ) -> None:
        """Indices (as floats) and/or values of the top_k largest entries.

        Args:
            x: the input, any shape.
            top_k: how many per search.
            out_max_val: output values (with ``axis``: only the values; without:
                the indices then the values).
            axis: the axis searched, or None for each item's flattened entries
                (all axes after 0).
            y: with ``axis``, x's shape with shape[axis] = top_k; without,
                (N, 1 or 2, top_k, 1...) as Caffe. Assigned. Among equal values
                the larger index comes first (Caffe's partial_sort on (value,
                index) pairs).
        """
        raise NotImplementedError

    # -- normalization: LRN, BatchNorm, MVN, Scale/Bias reductions -----------------
    # (owned by the normalization work; insert methods below this line)
    #
    # Arrays are float32 or float64 (one dtype per call) except where float64 is
    # named. Outputs may alias inputs where said (in-place layers).
    def batch_norm_forward_train(
        self,
        x: Array,
        eps: float,
        y: Array,
        xnorm: Array,
        mean: Array,
        var: Array,
        std: Array,
    ) -> None:
        """BatchNorm with the batch's statistics (Caffe's TRAIN pass).

        Per channel: ``mean = E[x]``, ``var = E[(x - mean)^2]`` (biased),
        ``std = sqrt(var + eps)``, ``y = xnorm = (x - mean) / std``.

        Args:
            x: (N, C, S) input.
            eps: added to the variance.
            y: (N, C, S), assigned (may be ``x``).
            xnorm: (N, C, S), assigned a copy of ``y`` (kept for backward).
            mean, var, std: (C,), assigned.
        """
        raise NotImplementedError

    def batch_norm_update_stats(
        self,
        mean: Array,
        var: Array,
        moving_average_fraction: float,
        correction: float,
        mean_sum: Array,
        var_sum: Array,
        norm: Array,
    ) -> None:
        """Fold a batch's statistics into BatchNorm's stored sums, in place.

        ``norm = maf * norm + 1``, ``mean_sum = maf * mean_sum + mean``,
        ``var_sum = maf * var_sum + correction * var`` (maf the moving average
        fraction; correction m / (m - 1) makes the stored variance unbiased).
        ``mean``, ``var``, ``mean_sum``, ``var_sum``: (C,); ``norm``: (1,).
        """
        raise NotImplementedError

    def batch_norm_global_stats(
        self,
        mean_sum: Array,
        var_sum: Array,
        norm: Array,
        eps: float,
        mean: Array,
        var: Array,
        std: Array,
    ) -> None:
        """BatchNorm's stored statistics: ``mean = mean_sum / norm``, ``var =
        var_sum / norm`` (both 0 when norm is 0), ``std = sqrt(var + eps)``; all
        (C,) but ``norm`` (1,); ``mean``, ``var``, ``std`` assigned."""
        raise NotImplementedError

    def batch_norm_forward_global(
        self, x: Array, mean: Array, std: Array, y: Array
    ) -> None:
        """y = (x - mean[c]) / std[c] on (N, C, S) arrays (y may be x)."""
        raise NotImplementedError

    def batch_norm_backward_train(
        self, dy: Array, xnorm: Array, std: Array, dx: Array
    ) -> None:
        """dx = (dy - mean(dy) - mean(dy * xnorm) * xnorm) / std[c] on (N, C, S)
        arrays, means over n and s (dx may be dy)."""
        raise NotImplementedError

    def batch_norm_backward_global(self, dy: Array, std: Array, dx: Array) -> None:
        """dx = dy / std[c] on (N, C, S) arrays (dx may be dy)."""
        raise NotImplementedError

    def channel_affine(
        self, x: Array, scale: Array | None, bias: Array | None, y: Array
    ) -> None:
        """y = x * scale[d] + bias[d] on (O, D, I) arrays (Scale and Bias).

        ``scale`` and ``bias`` are (D,); ``None`` leaves that term out. ``y`` is
        assigned and may be ``x``.
        """
        raise NotImplementedError

    def channel_sums(
        self, a: Array, b: Array | None, out_sum: Array, out_dot: Array | None
    ) -> None:
        """Per-d sums over o and i of (O, D, I) arrays: ``out_sum = sum a`` and
        ``out_dot = sum a * b`` (the bias and scale gradients in one pass);
        outputs (D,) float64, assigned. ``b``/``out_dot`` may be None."""
        raise NotImplementedError

    def lrn_forward(
        self,
        x: Array,
        size: int,
        alpha: float,
        beta: float,
        k: float,
        within: bool,
        scale: Array,
        y: Array,
    ) -> None:
        """Local response normalisation of (N, C, H, W) arrays.

        Across channels: ``scale = k + alpha / n * sum x^2`` over the n channels
        centred on each (zero-padded); within a channel: ``scale = 1 + alpha / n^2
        * sum x^2`` over the n x n window, clipped to the image (Caffe's AVE
        pooling graph; ``k`` unused). Then ``y = x * scale ^ -beta``.

        Args:
            x: (N, C, H, W) input; not aliased by ``y``.
            size: the odd window size n.
            alpha, beta, k: the formula's constants.
            within: WITHIN_CHANNEL rather than ACROSS_CHANNELS.
            scale: (N, C, H, W), assigned (kept for backward).
            y: (N, C, H, W), assigned.
        """
        raise NotImplementedError

    def lrn_backward(
        self,
        x: Array,
        y: Array,
        scale: Array,
        dy: Array,
        size: int,
        alpha: float,
        beta: float,
        within: bool,
        dx: Array,
    ) -> None:
        """LRN's gradient: ``dx = dy * scale^-beta - 2 alpha beta / n' * x *
        sum_window(dy * y / scale)`` with n' = n across channels, n^2 within, on
        (N, C, H, W) arrays from the forward; ``dx`` assigned (may be ``dy``)."""
        raise NotImplementedError

    def mvn_forward(
        self, x: Array, normalize_variance: bool, eps: float, y: Array, std: Array
    ) -> None:
        """Mean-variance normalisation of the rows of (R, M) arrays.

        ``y = x - mean(x)``, then (with normalize_variance) ``std = sqrt(mean(y^2))
        + eps`` and ``y /= std``. ``y`` (may be ``x``) and ``std`` (R, 1) are
        assigned (``std`` only with normalize_variance).
        """
        raise NotImplementedError

    def mvn_backward(
        self, y: Array, dy: Array, std: Array, normalize_variance: bool, dx: Array
    ) -> None:
        """MVN's gradient (Caffe's) on (R, M) rows: ``dx = (dy - mean(dy) -
        mean(dy * y) * y) / std``, or ``dy - mean(dy)`` without variance
        normalisation; ``std`` (R, 1) from the forward; ``dx`` may be ``dy``."""
        raise NotImplementedError

    # -- softmax and losses ------------------------------------------------------
    # (owned by the loss work; insert methods below this line)
    #
    # Softmax works on (outer, channels, inner) views: the class axis in the
    # middle. Labels are the label blob's float array (``outer * inner`` values,
    # any shape), read as Caffe's ``static_cast<int>`` (truncation). A loss op
    # writes the 0-d ``loss`` array (the top's data) and, where the divisor may
    # depend on the data, the divisor it used into ``norm`` (a (1,) float64 work
    # array), which the backward op reads back: nothing leaves the device.
    # ``loss_weight`` is the loss top's 0-d diff (Net writes the weight there).
    def softmax_forward(self, x: Array, y: Array) -> None:
        """y = exp(x - max) / sum(exp(x - max)) over axis 1.

        Args:
            x: (outer, channels, inner) input.
            y: (outer, channels, inner) output, assigned; may be ``x``. Computed
                in the arrays' float type, as Caffe.
        """
        raise NotImplementedError

    def softmax_backward(self, y: Array, dy: Array, dx: Array) -> None:
        """dx = y * (dy - sum_c(dy * y)) on (outer, channels, inner) arrays.

        ``dx`` is assigned and may be ``dy``; ``y`` is the forward's output.
        """
        raise NotImplementedError

    def check_labels(
        self, labels: Array, num_classes: int, ignore_label: int | None
    ) -> float | None:
        """The first label outside [0, num_classes) that is not ``ignore_label``,
        or None when every label is valid (a backend may skip the check and
        return None, as Caffe's GPU code does)."""
        raise NotImplementedError

    def softmax_loss_forward(
        self,
        prob: Array,
        labels: Array,
        ignore_label: int | None,
        normalizer: float | None,
        loss: Array,
        norm: Array,
    ) -> None:
        """loss = -sum_valid log(max(prob[label], FLT_MIN)) / divisor.

        Args:
            prob: (outer, C, inner) softmax output.
            labels: outer * inner labels in [0, C) or ``ignore_label``.
            ignore_label: positions with this label are skipped (None: none).
            normalizer: the divisor, or None for the number of non-ignored
                positions (at least 1; Caffe's VALID with an ignore_label).
            loss: 0-d output, assigned.
            norm: (1,) float64, assigned the divisor used.
        """
        raise NotImplementedError

    def softmax_loss_backward(
        self,
        prob: Array,
        labels: Array,
        ignore_label: int | None,
        norm: Array,
        loss_weight: Array,
        dx: Array,
    ) -> None:
        """dx = (prob - onehot(label)) * loss_weight / norm, 0 at ignored positions.

        ``prob``, ``dx``: (outer, C, inner); ``dx`` is assigned.
        """
        raise NotImplementedError

    def infogain_loss_forward(
        self,
        prob: Array,
        labels: Array,
        H: Array,
        ignore_label: int | None,
        normalizer: float | None,
        loss: Array,
        norm: Array,
    ) -> None:
        """loss = -sum_valid sum_l H[label, l] log(max(prob_l, 1e-20)) / divisor.

        ``prob`` (outer, C, inner), ``H`` (C, C); the rest as
        :meth:`softmax_loss_forward`.
        """
        raise NotImplementedError

    def infogain_loss_backward(
        self,
        prob: Array,
        labels: Array,
        H: Array,
        ignore_label: int | None,
        norm: Array,
        loss_weight: Array,
        dx: Array,
    ) -> None:
        """dx[:, l] = (prob_l sum_k H[label, k] - H[label, l]) * loss_weight / norm
        (0 at ignored positions); ``dx`` (outer, C, inner) is assigned."""
        raise NotImplementedError

    def multinomial_logistic_loss_forward(
        self, prob: Array, labels: Array, loss: Array
    ) -> None:
        """loss = -sum_n log(max(prob[n, label_n], 1e-20)) / N; ``prob`` (N, D)."""
        raise NotImplementedError

    def multinomial_logistic_loss_backward(
        self, prob: Array, labels: Array, loss_weight: Array, dx: Array
    ) -> None:
        """dx = -loss_weight / (N max(prob, 1e-20)) at the labels, 0 elsewhere;
        ``prob``, ``dx`` (N, D), ``dx`` assigned."""
        raise NotImplementedError

    def sigmoid_cross_entropy_loss_forward(
        self,
        x: Array,
        t: Array,
        ignore_label: int | None,
        normalizer: float | None,
        loss: Array,
        norm: Array,
    ) -> None:
        """loss = -sum_valid [x (t - [x >= 0]) - log(1 + exp(-|x|))] / divisor.

        Args:
            x: scores, any shape; t: targets of x's count (a target whose int
                equals ``ignore_label`` is skipped).
            normalizer, loss, norm: as :meth:`softmax_loss_forward`.
        """
        raise NotImplementedError

    def sigmoid_cross_entropy_loss_backward(
        self,
        x: Array,
        t: Array,
        ignore_label: int | None,
        norm: Array,
        loss_weight: Array,
        dx: Array,
    ) -> None:
        """dx = (sigmoid(x) - t) * loss_weight / norm, 0 where ignored; ``dx`` of
        x's shape, assigned."""
        raise NotImplementedError

    def euclidean_loss_forward(
        self, a: Array, b: Array, num: int, d: Array, loss: Array
    ) -> None:
        """d = a - b (flat, kept for backward); loss = d.d / num / 2."""
        raise NotImplementedError

    def euclidean_loss_backward(
        self, d: Array, loss_weight: Array, sign: float, num: int, dx: Array
    ) -> None:
        """dx = d * sign * loss_weight / num (flat, assigned)."""
        raise NotImplementedError

    def hinge_loss_forward(
        self, scores: Array, labels: Array, norm_type: int, margin: Array, loss: Array
    ) -> None:
        """margin = max(0, 1 - t s) with t = +1 at the label, -1 elsewhere (N, D),
        kept for backward; loss = sum(margin) / N (L1, ``norm_type`` 1) or
        sum(margin^2) / N (L2, 2)."""
        raise NotImplementedError

    def hinge_loss_backward(
        self,
        margin: Array,
        labels: Array,
        norm_type: int,
        loss_weight: Array,
        dx: Array,
    ) -> None:
        """dx = -t [margin > 0] (L1) or -2 t margin (L2), times loss_weight / N;
        (N, D), assigned."""
        raise NotImplementedError

    def contrastive_loss_forward(
        self,
        a: Array,
        b: Array,
        similar: Array,
        margin: float,
        legacy: bool,
        d: Array,
        dist_sq: Array,
        loss: Array,
    ) -> None:
        """Contrastive loss of pairs (a_n, b_n), (N, D) each.

        d = a - b (N, D) and dist_sq = |d_n|^2 (N,) are assigned and kept for
        backward; loss = sum_n [y_n dist_sq_n + (1 - y_n) m_n] / (2 N) with
        y_n = int(similar_n) != 0 and m_n = max(margin - |d_n|, 0)^2
        (legacy: max(margin - dist_sq_n, 0)).
        """
        raise NotImplementedError

    def contrastive_loss_backward(
        self,
        d: Array,
        dist_sq: Array,
        similar: Array,
        margin: float,
        legacy: bool,
        loss_weight: Array,
        sign: float,
        dx: Array,
    ) -> None:
        """dx = sign * c_n * d * loss_weight / N, c_n = 1 for similar pairs, else
        -(margin - |d_n|) / (|d_n| + 1e-4) where positive (legacy: -1), else 0.
        ``dx`` (N, D), assigned."""
        raise NotImplementedError

    def accuracy_forward(
        self,
        scores: Array,
        labels: Array,
        top_k: int,
        ignore_label: int | None,
        accuracy: Array,
        per_class: Array | None,
    ) -> None:
        """Top-k accuracy of (outer, C, inner) scores: a position is correct when
        fewer than top_k other classes score at least as high as its label.

        ``accuracy`` (0-d) is assigned the fraction of correct non-ignored
        positions (0 when there are none); ``per_class`` (C,), when wanted, the
        fraction per label class (0 for a class without labels).
        """
        raise NotImplementedError

    # -- solver update rules -----------------------------------------------------
    # (owned by the solver work; insert methods below this line)
    #
    # One learnable parameter at a time: ``w`` its data, ``g`` its diff (the
    # gradient on entry, the update to subtract on exit), ``h``/``h2`` the rule's
    # history, ``tmp``/``tmp2`` scratch of the same shape; all of the nets' float
    # type, any shape (treated as flat). Scalars are of that float type, so the
    # arithmetic stays in it, in Caffe's order (results are bit-identical to
    # Caffe's separate passes).
    def sumsq(self, x: Array) -> float:
        """sum(x**2) as a Python float (Caffe's ``caffe_cpu_dot(x, x)``; the
        gradient norm of ``clip_gradients``)."""
        raise NotImplementedError

    def scal(self, alpha: Any, x: Array) -> None:
        """x *= alpha, in place (Caffe's ``caffe_scal``)."""
        raise NotImplementedError

    def axpby(self, alpha: Any, x: Array, beta: Any, y: Array, tmp: Array) -> None:
        """y = alpha * x + beta * y (Caffe's ``caffe_cpu_axpby``); ``tmp`` scratch."""
        raise NotImplementedError

    def l2_regularize(self, w: Array, decay: Any, g: Array, tmp: Array) -> None:
        """g += decay * w (L2 weight decay); ``tmp`` scratch."""
        raise NotImplementedError

    def l1_regularize(self, w: Array, decay: Any, g: Array, tmp: Array) -> None:
        """g += decay * sign(w) (L1 weight decay); ``tmp`` scratch."""
        raise NotImplementedError

    def blob_update(self, g: Array, w: Array) -> None:
        """w -= g (Caffe's ``Blob::Update``)."""
        raise NotImplementedError

    def sgd_update(
        self, w: Array, g: Array, h: Array, decay: Any, rate: Any, momentum: Any
    ) -> None:
        """Fused SGD step with L2 decay: ``g += decay * w; h = rate * g + momentum
        * h; g = h; w -= h`` (one pass; same float operations as the separate ones).

        ``w``, ``g`` and ``h`` are written; ``decay`` 0 skips the decay.
        """
        raise NotImplementedError

    def sgd_compute_update(
        self, g: Array, h: Array, rate: Any, momentum: Any, tmp: Array
    ) -> None:
        """SGD with momentum: h = rate * g + momentum * h; g = h."""
        raise NotImplementedError

    def nesterov_compute_update(
        self, g: Array, h: Array, rate: Any, momentum: Any, prev: Array, tmp: Array
    ) -> None:
        """Nesterov: prev = h; h = rate * g + momentum * h;
        g = (1 + momentum) * h - momentum * prev (``prev``, ``tmp`` scratch)."""
        raise NotImplementedError

    def adagrad_compute_update(
        self, g: Array, h: Array, rate: Any, delta: Any, tmp: Array
    ) -> None:
        """AdaGrad: h += g**2; g = rate * g / (sqrt(h) + delta)."""
        raise NotImplementedError

    def rmsprop_compute_update(
        self, g: Array, h: Array, rate: Any, rms_decay: Any, delta: Any, tmp: Array
    ) -> None:
        """RMSProp: h = rms_decay * h + (1 - rms_decay) * g**2;
        g = rate * g / (sqrt(h) + delta)."""
        raise NotImplementedError

    def adadelta_compute_update(
        self,
        g: Array,
        h: Array,
        h2: Array,
        rate: Any,
        momentum: Any,
        delta: Any,
        tmp: Array,
        tmp2: Array,
    ) -> None:
        """AdaDelta: h = m * h + (1 - m) * g**2;
        g = g * sqrt((h2 + delta) / (h + delta)); h2 = m * h2 + (1 - m) * g**2;
        g = rate * g (``m`` the momentum)."""
        raise NotImplementedError

    def adam_compute_update(
        self,
        g: Array,
        m: Array,
        v: Array,
        rate: Any,
        beta1: Any,
        beta2: Any,
        delta: Any,
        tmp: Array,
    ) -> None:
        """Adam: m = beta1 * m + (1 - beta1) * g; v = beta2 * v + (1 - beta2) * g**2;
        g = rate * m / (sqrt(v) + delta), ``rate`` with the bias correction
        sqrt(1 - beta2**t) / (1 - beta1**t) already folded in."""
        raise NotImplementedError
