"""Vision ops: convolution, deconvolution, im2col, inner product, pooling,
embedding.

Convolution ops take a :class:`ConvGeometry` in the GEMM view: the *conv
input* holds ``num * in_channels * prod(in_spatial)`` elements, viewed as
(num, in_channels, *in_spatial), the *conv output* (num, out_channels,
*out_spatial), the weights (out_channels, in_channels // group, *kernel).
Convolution reads the conv input (its bottom) and writes the conv output;
deconvolution the reverse. Arrays are C-contiguous, float32 or float64.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from caffepy.backend.interface.memory import MemoryInterface

if TYPE_CHECKING:
    from caffepy.backend.base import Array, ConvGeometry, PoolGeometry, Workspace


class VisionInterface(MemoryInterface):
    """The vision ops of :class:`~caffepy.backend.base.Ops` (declarations only)."""

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

    def conv_forward_fused(
        self,
        x: Array,
        w: Array,
        b: Array | None,
        geom: ConvGeometry,
        y: Array,
        ws: Workspace,
        affine: Array | None,
        keep: Array | None,
        negative_slope: float | None,
    ) -> None:
        """:meth:`conv_forward` and the in-place layers after it that the Net runs
        with it (:meth:`caffepy.layer.Layer.fuse_following`), on ``y``:

        - with ``affine`` ((4, out_channels): mean, std, scale, bias), a BatchNorm
          with stored statistics and the Scale after it, as
          :meth:`batch_norm_scale_forward_global` (``keep``: where the normalised
          values go, shaped as ``y``, or None);
        - with ``negative_slope``, a ReLU, as :meth:`relu_forward`.

        The same numbers as the ops one by one; the CPU backend applies them to
        each block of ``y`` as its kernels write it.
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

    def inner_product_relu_forward(
        self,
        x: Array,
        w: Array,
        b: Array | None,
        transpose: bool,
        y: Array,
        ws: Workspace,
        negative_slope: float,
    ) -> None:
        """:meth:`inner_product_forward`, then :meth:`relu_forward` in place on
        ``y`` (an InnerProduct and the in-place ReLU after it; see
        :meth:`conv_forward_fused`)."""
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

    def pool_relu_forward(
        self,
        x: Array,
        geom: PoolGeometry,
        method: str,
        y: Array,
        mask: Array | None,
        ws: Workspace,
        negative_slope: float,
    ) -> None:
        """:meth:`pool_forward`, then :meth:`relu_forward` in place on ``y`` (a
        Pooling and the in-place ReLU after it, CIFAR-10's pool1/relu1; see
        :meth:`conv_forward_fused`). The mask is the pooling's."""
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

    def stochastic_pool_forward(
        self,
        x: Array,
        geom: PoolGeometry,
        rand: Array | None,
        y: Array,
        index: Array | None,
    ) -> None:
        """Stochastic pooling (Caffe's GPU kernels), windows without padding.

        TRAIN (``rand`` given): each window's element is sampled with probability
        proportional to its value, the first whose running sum reaches
        ``rand * sum(window)``. TEST (``rand`` None): the probability-weighted
        average ``sum(x^2) / (FLT_MIN + sum(x))``.

        Args:
            x: (N, C, H, W) non-negative input.
            geom: kernel, stride and pooled size (pad is 0).
            rand: TRAIN: (N, C, PH, PW) uniform draws in [0, 1); TEST: None.
            y: (N, C, PH, PW), assigned.
            index: TRAIN: y's shape, int32, assigned the sampled flat index
                ``h * W + w`` into the input plane; TEST: None.
        """
        raise NotImplementedError

    def stochastic_pool_backward(
        self,
        x: Array,
        dy: Array,
        geom: PoolGeometry,
        index: Array | None,
        dx: Array,
    ) -> None:
        """Gradient of :meth:`stochastic_pool_forward`.

        TRAIN (``index`` given): dy goes to the sampled element (summed where
        windows share one), as Caffe's ``StoPoolBackward``. TEST (``index``
        None): the gradient of the weighted average,
        ``(2 x_i S - Q) / S^2`` per window (Q = sum x^2, S = FLT_MIN + sum x).

        Args:
            x: (N, C, H, W) the forward's input (read in TEST only).
            dy: (N, C, PH, PW) gradient of the output.
            geom: as in :meth:`stochastic_pool_forward`.
            index: the forward's sampled indices (TRAIN), or None (TEST).
            dx: (N, C, H, W), assigned.
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
