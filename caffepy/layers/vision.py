"""Vision layers: Convolution, Deconvolution, Pooling, InnerProduct, Embed.

Convolution is lowered to GEMMs over column matrices (:mod:`caffepy.kernels.im2col`)
built for chunks of images small enough to stay in the cache (``COL_BUFFER_ELEMENTS``):
one GEMM per group and chunk, instead of Caffe's one per image. A whole pass
(im2col, GEMMs, transposes of every chunk) runs as one parallel Numba region
that calls numpy's BLAS itself (:mod:`caffepy.kernels.conv`); InnerProduct
likewise splits its GEMMs into blocks. Where numpy's BLAS cannot be called from
kernels, and for Deconvolution, the same chunks run as numpy matmuls on the
layers' thread pool (:mod:`caffepy.kernels.parallel`). Pooling runs in Numba
kernels (:mod:`caffepy.kernels.pooling`). Scratch buffers live on the layer and
grow only when a shape needs more room, so a steady training loop allocates
nothing large.
"""

import contextlib

import numpy as np

from caffepy.errors import LayerError, ShapeError, UnsupportedError
from caffepy.kernels import blas as _blas
from caffepy.kernels import config as _config
from caffepy.kernels import im2col as _ic
from caffepy.kernels import parallel as _pool
from caffepy.kernels import pooling as _pk
from caffepy.layer import Layer, canonical_axis, want_param
from caffepy.registry import register_layer

# Caffe's defaults for the repeated ConvolutionParameter fields (a repeated proto
# field cannot carry a default, so Caffe keeps them in base_conv_layer.cpp too).
_CONV_DEFAULT_PAD = 0
_CONV_DEFAULT_STRIDE = 1
_CONV_DEFAULT_DILATION = 1

#: Most elements a convolution's column buffer holds per chunk of images (1 MiB
#: of float32, so a chunk's columns stay in the cache between im2col and its
#: GEMM): a batch whose columns need more is processed a few images at a time.
COL_BUFFER_ELEMENTS = 1 << 18

#: An InnerProduct GEMM of at least this many multiply-adds is split into
#: blocks for the pool's threads.
_IP_SPLIT_FLOPS = 1 << 20


def _serial_if(flag):
    """The kernels on the calling thread only when ``flag`` (small work)."""
    return _config.serial() if flag else contextlib.nullcontext()




class _Scratch:
    """Named flat work arrays of one dtype that grow but never shrink."""

    def __init__(self, dtype):
        self.dtype = dtype
        self._arrays = {}

    def get(self, name, shape):
        size = 1
        for d in shape:
            size *= int(d)
        buf = self._arrays.get(name)
        if buf is None or buf.size < size:
            buf = np.empty(size, self.dtype)
            self._arrays[name] = buf
        return buf[:size].reshape(shape)


def _check_param_shapes(layer, expected):
    """Parameter blobs given by the Net (copied or shared) must fit the layer."""
    if len(layer.blobs) != len(expected):
        raise LayerError(
            layer,
            f"has {len(layer.blobs)} parameter blob(s), expected {len(expected)} "
            f"(shapes {[tuple(s) for s in expected]})",
        )
    for j, (blob, shape) in enumerate(zip(layer.blobs, expected)):
        if tuple(blob.shape) != tuple(shape):
            raise LayerError(
                layer,
                f"parameter blob {j} has shape {blob.shape}, expected {tuple(shape)}",
            )




# ----------------------------------------------------------------------------
# Convolution and Deconvolution
# ----------------------------------------------------------------------------
class _BaseConvolution(Layer):
    """Shared setup and GEMM lowering of Convolution and Deconvolution.

    In the GEMM view a convolution maps a "conv input" (C_in channels, H x W) to a
    "conv output" (C_out channels, oh x ow) with weights (C_out, C_in/group, kh,
    kw). Convolution's conv input is its bottom; Deconvolution swaps the roles
    (its forward is convolution's backward-data), exactly as Caffe's
    ``reverse_dimensions()``.
    """

    min_num_bottom = 1
    min_num_top = 1
    equal_num_bottom_top = True
    #: Deconvolution: the bottom is the conv output, the top the conv input.
    reverse = False
    _cols_of = None

    # -- setup ---------------------------------------------------------------
    def setup(self, bottom, top):
        p = self.layer_param.convolution_param
        self._scratches = []
        self._group_scratches = []
        self._counter = None
        self._bacc = None
        self._no_bias = np.empty(0, self.dtype)
        self.num_output = int(p.num_output)
        if self.num_output <= 0:
            raise LayerError(self, f"num_output must be > 0, got {self.num_output}")
        self.group = int(p.group)
        if self.group <= 0:
            raise LayerError(self, f"group must be >= 1, got {self.group}")
        self.axis = canonical_axis(self, bottom[0], p.axis)
        self.num_spatial = bottom[0].num_axes - self.axis - 1
        if self.num_spatial > 2:
            raise UnsupportedError(
                f"{self.type} layer '{self.name}': {self.num_spatial}-D spatial "
                f"convolution (bottom shape {bottom[0].shape}, axis {self.axis}) is "
                "not supported; caffepy convolves over 1 or 2 spatial axes"
            )
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
        # 1-D (and 0-D) convolution runs as 2-D with leading kernel-1 axes.
        extra = 2 - self.num_spatial
        self.k2 = (1,) * extra + self.kernel
        self.s2 = (1,) * extra + self.stride
        self.p2 = (0,) * extra + self.pad
        self.d2 = (1,) * extra + self.dilation
        self.is_1x1 = self.k2 == (1, 1) and self.s2 == (1, 1) and self.p2 == (0, 0)

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
            _check_param_shapes(self, shapes)
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
        in_sp = (1,) * (2 - ns) + tuple(first.shape[axis + 1 :])
        size = _ic.deconv_out_size if self.reverse else _ic.conv_out_size
        out_sp = tuple(
            size(in_sp[i], self.k2[i], self.p2[i], self.s2[i], self.d2[i])
            for i in (0, 1)
        )
        if min(out_sp) <= 0:
            raise ShapeError(
                self,
                f"bottom {first.shape} is too small for kernel {list(self.kernel)}"
                f", pad {list(self.pad)}, stride {list(self.stride)}, dilation "
                f"{list(self.dilation)}: output size {out_sp[2 - ns :]}",
            )
        self.num = first.count_range(0, axis)
        top_shape = first.shape[:axis] + (self.num_output,) + out_sp[2 - ns :]
        for t in top:
            t.reshape(top_shape)
        if self.reverse:
            self.in_sp, self.out_sp = out_sp, in_sp
        else:
            self.in_sp, self.out_sp = in_sp, out_sp

    # -- views and buffers ------------------------------------------------------
    def _chunks(self):
        """Image ranges [n0, n1) processed as one task (one GEMM per group).

        A chunk's columns fit COL_BUFFER_ELEMENTS (so they stay in the cache
        between im2col and the GEMM); with several threads the batch is also cut
        into about four chunks per thread, so the pool can balance the load. A
        chunk holds at least one image.
        """
        rows = self.conv_in_channels * self.k2[0] * self.k2[1]
        per_image = max(1, rows * self.out_sp[0] * self.out_sp[1])
        step = max(1, COL_BUFFER_ELEMENTS // per_image)
        if _pool.POOL.size > 1:
            step = min(step, max(1, -(-self.num // (4 * _pool.POOL.size))))
        return [(n0, min(n0 + step, self.num)) for n0 in range(0, self.num, step)]

    def _scratch(self, worker):
        """The work arrays of one pool thread."""
        while len(self._scratches) <= worker:
            self._scratches.append(_Scratch(self.dtype))
        return self._scratches[worker]

    def _conv_in4(self, arr):
        """(N, C_in, H, W) view of a conv-input array."""
        return arr.reshape((self.num, self.conv_in_channels) + self.in_sp)

    def _conv_out3(self, arr):
        """(N, C_out, P) view of a conv-output array."""
        return arr.reshape(self.num, self.conv_out_channels, -1)

    def _weights3(self, arr):
        """(group, C_out/group, C_in/group*kh*kw) view of weights or their diff."""
        g = self.group
        return arr.reshape(g, self.conv_out_channels // g, -1)

    def _col(self, nb, worker):
        """The column buffer for nb images: (C_in*kh*kw, nb, oh, ow)."""
        rows = self.conv_in_channels * self.k2[0] * self.k2[1]
        return self._scratch(worker).get("col", (rows, nb) + self.out_sp)

    def _gemm_out(self, nb, worker):
        """Buffer for a GEMM result over nb images in (C_out, nb, P) layout."""
        p = self.out_sp[0] * self.out_sp[1]
        return self._scratch(worker).get("gemm", (self.conv_out_channels, nb, p))

    def _grouped(self, arr):
        """(group, rows/group, nb*P) view of a (rows, nb, ...) buffer."""
        return arr.reshape(self.group, arr.shape[0] // self.group, -1)

    # -- the lowered operations, on a chunk of nb images ---------------------------
    # NOTE: a chunk of one image needs no transposes: its (C, 1, P) column and
    # GEMM layouts are the image's own (C, P) memory, so 1x1 convolutions read
    # the bottom and write the top directly.
    def _im2col(self, x4, worker):
        """Columns of conv-input images x4 (nb, C_in, H, W), in the column buffer."""
        nb = x4.shape[0]
        if self.is_1x1 and nb == 1:
            return x4.reshape(self.conv_in_channels, 1, -1)
        col = self._col(nb, worker)
        if self.is_1x1:
            # NOTE: a 1x1/stride-1/pad-0 column matrix is the input with N and C
            # swapped: a plain transpose, no patch gathering.
            _ic.swap01(
                x4.reshape(nb, self.conv_in_channels, -1),
                self._no_bias,
                col.reshape(self.conv_in_channels, nb, -1),
            )
        else:
            (kh, kw), (ph, pw), (sh, sw), (dh, dw) = self.k2, self.p2, self.s2, self.d2
            _ic.im2col(x4, kh, kw, ph, pw, sh, sw, dh, dw, col)
        return col

    def _col2im_target(self, x4, worker):
        """Where W^T @ dy goes for images x4: x4 itself for one image of a 1x1
        convolution, else the column buffer (then folded by _col2im)."""
        if self.is_1x1 and x4.shape[0] == 1:
            return x4.reshape(self.conv_in_channels, 1, -1)
        return self._col(x4.shape[0], worker)

    def _col2im(self, col, x4):
        """Sum the columns back into conv-input images x4 (nb, C_in, H, W)."""
        nb = x4.shape[0]
        if self.is_1x1:
            if nb > 1:
                _ic.swap01(
                    col.reshape(self.conv_in_channels, nb, -1),
                    self._no_bias,
                    x4.reshape(nb, self.conv_in_channels, -1),
                )
        else:
            (kh, kw), (ph, pw), (sh, sw), (dh, dw) = self.k2, self.p2, self.s2, self.d2
            _ic.col2im(col, kh, kw, ph, pw, sh, sw, dh, dw, x4)

    def _forward_gemm(self, col, weights, bias, y3, worker):
        """y3 (nb, C_out, P) = W @ col (+ bias), via the (C_out, nb, P) buffer."""
        nb = y3.shape[0]
        res = y3.reshape(y3.shape[1], 1, -1) if nb == 1 else self._gemm_out(nb, worker)
        np.matmul(self._weights3(weights), self._grouped(col), out=self._grouped(res))
        if nb > 1:
            _ic.swap01(res, self._no_bias if bias is None else bias, y3)
        elif bias is not None:
            _ic.add_bias(res.reshape(res.shape[0], -1), bias)

    def _backward_gemm(self, y_t, weights, col):
        """col = W^T @ y_t, with y_t in (C_out, nb, P) layout."""
        w3 = self._weights3(weights)
        np.matmul(w3.transpose(0, 2, 1), self._grouped(y_t), out=self._grouped(col))

    def _weight_gemm(self, col, y_t, acc, first, worker):
        """acc (group, K, C_out/group) (+)= col @ y_t^T: the transposed weight
        gradient of one chunk, written (first) or added to its group's sum."""
        # NOTE: computing the transposed gradient (col @ dy^T) is measurably faster
        # with OpenBLAS than dy @ col^T for these long-K shapes.
        out = acc
        if not first:
            out = self._scratch(worker).get("wgrad", acc.shape)
        np.matmul(self._grouped(col), self._grouped(y_t).transpose(0, 2, 1), out=out)
        if not first:
            acc += out

    def _transposed(self, y3, worker):
        """Conv-output images y3 (nb, C_out, P) in (C_out, nb, P) layout."""
        nb = y3.shape[0]
        if nb == 1:
            return y3.reshape(y3.shape[1], 1, -1)
        res = self._gemm_out(nb, worker)
        _ic.swap01(y3, self._no_bias, res)
        return res

    # -- the fused path: one parallel Numba region per pass (kernels/conv.py) --
    def _fused(self):
        """Whether this pass runs as fused kernels (numpy's BLAS callable from
        Numba; Convolution only)."""
        return _blas.AVAILABLE and not self.reverse

    def _fused_args(self, workers, nb):
        """Geometry and per-thread scratch rows for kernels/conv.py."""
        rows = self.conv_in_channels * self.k2[0] * self.k2[1]
        p = self.out_sp[0] * self.out_sp[1]
        s = self._scratch(0)
        colbuf = s.get("fcol", (workers, max(1, rows * nb * p)))
        resbuf = s.get("fres", (workers, max(1, self.conv_out_channels * nb * p)))
        if self._counter is None:
            self._counter = np.zeros(1, np.int64)
        (kh, kw), (ph, pw), (sh, sw), (dh, dw) = self.k2, self.p2, self.s2, self.d2
        geom = (kh, kw, ph, pw, sh, sw, dh, dw)
        return geom, colbuf, resbuf

    def _w2(self, arr):
        """(C_out, C_in/group*kh*kw) view of weights."""
        return arr.reshape(self.conv_out_channels, -1)

    def _fused_forward(self, bottom, top):
        import numba

        from caffepy.kernels import conv as _ck

        w = self._w2(self.blobs[0].data)
        bias = self.blobs[1].data if self.bias_term else self._no_bias
        workers = numba.get_num_threads()
        nb = self._chunks()[0][1]
        geom, colbuf, resbuf = self._fused_args(workers, nb)
        gemm = _blas.gemm_address(self.dtype)
        for b, t in zip(bottom, top):
            x4 = self._conv_in4(b.data)
            y4 = t.data.reshape((self.num, self.num_output) + self.out_sp)
            if self.num == 1 and workers > 1:
                _ck.conv_forward_wide(x4, w, bias, *geom, self.group, gemm,
                                      _blas.SET_LOCAL_THREADS, workers, colbuf[0], y4)
            else:
                _ck.conv_forward(x4, w, bias, *geom, self.group, nb, gemm,
                                 _blas.SET_LOCAL_THREADS, workers, self._counter,
                                 colbuf, resbuf, y4)

    def _fused_backward(self, top, propagate_down, bottom, want_w, want_b):
        import numba

        from caffepy.kernels import conv as _ck

        w = self._w2(self.blobs[0].data)
        workers = numba.get_num_threads()
        nb = self._chunks()[0][1]
        geom, colbuf, resbuf = self._fused_args(workers, nb)
        n_chunks = -(-self.num // nb)
        n_groups = min(n_chunks, 4 * workers) if workers > 1 else 1
        g = self.group
        kg = self.conv_in_channels // g * self.k2[0] * self.k2[1]
        mg = self.conv_out_channels // g
        s = self._scratch(0)
        wacc = s.get("wacc", (n_groups, g, kg, mg))
        bacc = self._bacc
        if bacc is None or bacc.shape != (n_groups, self.num_output):
            bacc = self._bacc = np.zeros((n_groups, self.num_output), np.float64)
        w3 = self._weights3(self.blobs[0].diff)
        for i, (t, b) in enumerate(zip(top, bottom)):
            want_x = bool(i < len(propagate_down) and propagate_down[i])
            if not (want_w or want_b or want_x):
                continue
            x4 = self._conv_in4(b.data)
            dx4 = self._conv_in4(b.diff) if want_x else x4
            dy4 = t.diff.reshape((self.num, self.num_output) + self.out_sp)
            _ck.conv_backward(x4, dy4, w, want_w, want_b, want_x, *geom, g, nb,
                              n_groups, _blas.gemm_address(self.dtype),
                              _blas.SET_LOCAL_THREADS, workers, self._counter, colbuf,
                              resbuf, wacc, bacc, dx4)
            # NOTE: the groups' sums are added in order: the same bits every run.
            for q in range(n_groups):
                if want_w:
                    w3 += wacc[q].transpose(0, 2, 1)
                if want_b:
                    self.blobs[1].diff += bacc[q].astype(self.dtype)

    def _grad_sums(self, n_jobs, want_w, want_b):
        """Gradient sums for a backward pass of ``n_jobs`` chunks: the chunks are
        cut into contiguous groups, each summed in order into its own arrays
        (weights transposed, as _weight_gemm writes them; bias). Returns
        (groups, sums): groups[g] is a range of job indices, sums[g] its
        [weight sum, bias sum, weight sum written]."""
        # NOTE: the groups do not depend on which thread runs them, and
        # _reduce_grads adds them in order, so the gradients are the same bits
        # from run to run (a resumed training run stays bit-identical).
        pool = _pool.POOL
        n_groups = min(n_jobs, 4 * pool.size) if pool.size > 1 else 1
        groups = [range(a, b) for a, b in _pool.split(n_jobs, n_groups)]
        w3 = self._weights3(self.blobs[0].diff)
        wshape = (w3.shape[0], w3.shape[2], w3.shape[1])
        sums = []
        for g in range(len(groups)):
            s = self._group_scratch(g)
            acc_w = s.get("wacc", wshape) if want_w else None
            acc_b = s.get("bacc", (self.num_output,)) if want_b else None
            if want_b:
                acc_b[...] = 0
            sums.append([acc_w, acc_b, False])
        return groups, sums

    def _group_scratch(self, g):
        while len(self._group_scratches) <= g:
            self._group_scratches.append(_Scratch(self.dtype))
        return self._group_scratches[g]

    def _reduce_grads(self, sums):
        """Add the groups' gradient sums to the parameter diffs, in order."""
        w3 = self._weights3(self.blobs[0].diff)
        for acc_w, acc_b, written in sums:
            if written:
                w3 += acc_w.transpose(0, 2, 1)
            if acc_b is not None:
                self.blobs[1].diff += acc_b

    def _bias_grad(self, dy_t, acc_b, worker):
        """acc_b += the sum of dy_t (C_out, nb, P) over images and positions."""
        tmp = self._scratch(worker).get("bsum", (dy_t.shape[0],))
        np.sum(dy_t.reshape(dy_t.shape[0], -1), axis=1, out=tmp)
        acc_b += tmp


def _jobs(pairs, chunks):
    """(pair index, n0, n1) for every bottom/top pair and image chunk."""
    return [(i, n0, n1) for i in range(len(pairs)) for n0, n1 in chunks]


@register_layer("Convolution")
class ConvolutionLayer(_BaseConvolution):
    """2-D (and 1-D) convolution, Caffe's cross-correlation with groups.

    ``y[n, m, i, j] = b[m] + sum_{c in group(m), ki, kj}
    W[m, c', ki, kj] * x[n, c, i*sh - ph + ki*dh, j*sw - pw + kj*dw]``
    (out-of-range x reads 0; c' is c's index within its group).

    Parameters (``convolution_param``): ``num_output`` (required), ``bias_term``
    (true), ``kernel_size`` / ``pad`` (0) / ``stride`` (1) / ``dilation`` (1), each
    given once for all spatial axes or once per axis, or the 2-D ``kernel_h/_w``,
    ``pad_h/_w``, ``stride_h/_w``; ``group`` (1): channels split into groups that
    convolve separately; ``axis`` (1): the channel axis, later axes are spatial
    (1 or 2 of them; 3-D convolution raises UnsupportedError); ``weight_filler``,
    ``bias_filler`` (constant 0).

    Blobs: weight (num_output, C/group, kh, kw); bias (num_output,).
    Bottoms/tops: any number of pairs sharing the weights; bottom
    (N, C, H, W) -> top (N, num_output, oh, ow),
    ``oh = (H + 2*ph - (dh*(kh-1)+1)) // sh + 1``.

    Gradient: dW = dy (x) columns(x), db = sum of dy over N and space,
    dx = col2im(W^T dy).
    """

    def forward(self, bottom, top):
        if self._fused():
            self._cols_of = None
            self._fused_forward(bottom, top)
            return
        w = self.blobs[0].data
        bias = self.blobs[1].data if self.bias_term else None
        chunks = self._chunks()
        pairs = [(self._conv_in4(b.data), self._conv_out3(t.data))
                 for b, t in zip(bottom, top)]
        jobs = _jobs(pairs, chunks)

        def task(j, worker):
            i, n0, n1 = jobs[j]
            x4, y3 = pairs[i]
            col = self._im2col(x4[n0:n1], worker)
            self._forward_gemm(col, w, bias, y3[n0:n1], worker)

        _pool.POOL.run(task, len(jobs))
        # NOTE: when the columns of the whole batch fit in one buffer (and there is
        # one bottom), backward reuses them for the weight gradient instead of
        # unfolding the bottom again as Caffe does. That is exact as long as the
        # bottom's data does not change between forward and backward, which a Net
        # guarantees (it splits a blob read by several layers).
        reuse = len(bottom) == 1 and len(chunks) == 1 and not self.is_1x1
        self._cols_of = bottom[0] if reuse else None

    def backward(self, top, propagate_down, bottom):
        w = self.blobs[0].data
        want_w = want_param(self, 0)
        want_b = self.bias_term and want_param(self, 1)
        if self._fused():
            self._fused_backward(top, propagate_down, bottom, want_w, want_b)
            return
        chunks = self._chunks()
        pairs = []
        for i, (t, b) in enumerate(zip(top, bottom)):
            want_x = i < len(propagate_down) and propagate_down[i]
            if want_w or want_b or want_x:
                dx4 = self._conv_in4(b.diff) if want_x else None
                pairs.append((b, self._conv_in4(b.data), self._conv_out3(t.diff), dx4))
        jobs = _jobs(pairs, chunks)
        groups, sums = self._grad_sums(len(jobs), want_w, want_b)
        cols_of = self._cols_of
        self._cols_of = None

        def task(g, worker):
            for j in groups[g]:
                chunk(j, sums[g], worker)

        def chunk(j, acc, worker):
            i, n0, n1 = jobs[j]
            b, x4, dy3, dx4 = pairs[i]
            dy_t = self._transposed(dy3[n0:n1], worker)
            if want_b:
                self._bias_grad(dy_t, acc[1], worker)
            if want_w:
                if cols_of is b:
                    col = self._col(n1 - n0, worker)
                else:
                    col = self._im2col(x4[n0:n1], worker)
                self._weight_gemm(col, dy_t, acc[0], not acc[2], worker)
                acc[2] = True
            if dx4 is not None:
                col = self._col2im_target(dx4[n0:n1], worker)
                self._backward_gemm(dy_t, w, col)
                self._col2im(col, dx4[n0:n1])

        _pool.POOL.run(task, len(groups))
        self._reduce_grads(sums)


@register_layer("Deconvolution")
class DeconvolutionLayer(_BaseConvolution):
    """Transposed convolution: convolution's backward-data pass used as forward.

    Each input pixel scatters ``x[n, c, i, j] * W[c, m', :, :]`` into the output
    window at ``(i*sh - ph, j*sw - pw)`` (dilated by dh, dw), plus ``b[m]``.

    Parameters: as Convolution (``convolution_param``), with the roles of input
    and output swapped.

    Blobs: weight (C, num_output/group, kh, kw); bias (num_output,).
    Bottoms/tops: pairs; bottom (N, C, H, W) -> top (N, num_output, oh, ow),
    ``oh = sh*(H-1) + dh*(kh-1)+1 - 2*ph``.

    Gradient: dx = convolution of dy with W; dW = x (x) columns(dy); db = sum dy.
    """

    reverse = True

    def forward(self, bottom, top):
        w = self.blobs[0].data
        pairs = [(self._conv_out3(b.data), self._conv_in4(t.data))
                 for b, t in zip(bottom, top)]
        jobs = _jobs(pairs, self._chunks())

        def task(j, worker):
            i, n0, n1 = jobs[j]
            x3, y4 = pairs[i]
            x_t = self._transposed(x3[n0:n1], worker)
            col = self._col2im_target(y4[n0:n1], worker)
            self._backward_gemm(x_t, w, col)
            self._col2im(col, y4[n0:n1])

        _pool.POOL.run(task, len(jobs))
        if self.bias_term:
            for t in top:
                y3 = t.data.reshape(self.num, self.num_output, -1)
                y3 += self.blobs[1].data[:, None]

    def backward(self, top, propagate_down, bottom):
        w = self.blobs[0].data
        want_w = want_param(self, 0)
        want_b = self.bias_term and want_param(self, 1)
        pairs = []
        for i, (t, b) in enumerate(zip(top, bottom)):
            want_x = i < len(propagate_down) and propagate_down[i]
            if want_b:
                dy3 = t.diff.reshape(self.num, self.num_output, -1)
                self.blobs[1].diff += dy3.sum(axis=(0, 2))
            if want_w or want_x:
                dx3 = self._conv_out3(b.diff) if want_x else None
                pairs.append((self._conv_in4(t.diff), self._conv_out3(b.data), dx3))
        jobs = _jobs(pairs, self._chunks())
        groups, sums = self._grad_sums(len(jobs), want_w, False)

        def task(g, worker):
            acc = sums[g]
            for j in groups[g]:
                i, n0, n1 = jobs[j]
                dy4, x3, dx3 = pairs[i]
                col = self._im2col(dy4[n0:n1], worker)
                if want_w:
                    x_t = self._transposed(x3[n0:n1], worker)
                    self._weight_gemm(col, x_t, acc[0], not acc[2], worker)
                    acc[2] = True
                if dx3 is not None:
                    self._forward_gemm(col, w, None, dx3[n0:n1], worker)

        _pool.POOL.run(task, len(groups))
        self._reduce_grads(sums)


# ----------------------------------------------------------------------------
# Pooling
# ----------------------------------------------------------------------------
@register_layer("Pooling")
class PoolingLayer(Layer):
    """Max or average pooling over the spatial axes of (N, C, H, W).

    MAX: ``y = max over the window clipped to the input``; an optional second top
    holds the argmax as a float flat index ``h*W + w`` into the input plane.
    AVE: ``y = sum over the clipped window / pool_size``, where pool_size is the
    window clipped to the *padded* input (padding counts; the part of a ceil-mode
    window beyond the padding does not), as Caffe.

    Parameters (``pooling_param``): ``pool`` (MAX; STOCHASTIC raises
    UnsupportedError); ``kernel_size`` or ``kernel_h``+``kernel_w`` (required
    unless ``global_pooling``); ``pad`` (0) or ``pad_h``+``pad_w``, each < kernel;
    ``stride`` (1) or ``stride_h``+``stride_w``; ``global_pooling`` (false):
    kernel = H x W (pad must be 0 and stride 1); ``round_mode`` (CEIL) or FLOOR.

    Output size: ``ph = ceil((H + 2*pad_h - kh) / sh) + 1`` (floor for FLOOR);
    with padding, if ``(ph-1)*sh >= H + pad_h`` then ph -= 1, so the last window
    starts inside the padded input. Likewise for the width.

    Gradient: MAX routes dy to the argmax (summing where windows share it); AVE
    spreads dy/pool_size over the clipped window. The mask top has no gradient.
    """

    exact_num_bottom = 1
    min_num_top = 1
    max_num_top = 2

    def setup(self, bottom, top):
        p = self.layer_param.pooling_param
        P = type(p)
        self.pool = p.pool
        if self.pool == P.STOCHASTIC:
            raise UnsupportedError(
                f"{self.type} layer '{self.name}': pool: STOCHASTIC is not supported; "
                "use MAX or AVE"
            )
        if self.pool not in (P.MAX, P.AVE):
            raise LayerError(self, f"unknown pool method {self.pool}")
        if len(top) > 1 and self.pool != P.MAX:
            raise LayerError(
                self,
                f"only MAX pooling has a second (argmax mask) top; got "
                f"{len(top)} tops with pool {P.PoolMethod.Name(self.pool)}",
            )
        has = p.HasField
        self.global_pooling = p.global_pooling
        if self.global_pooling:
            if has("kernel_size") or has("kernel_h") or has("kernel_w"):
                raise LayerError(
                    self,
                    "global_pooling takes the kernel from the bottom; do not give "
                    "kernel_size or kernel_h/kernel_w",
                )
        else:
            square, rect = has("kernel_size"), has("kernel_h") or has("kernel_w")
            if square and rect:
                raise LayerError(
                    self,
                    "give the kernel as kernel_size OR kernel_h and kernel_w, not both",
                )
            if not square and not rect:
                raise LayerError(
                    self,
                    "needs kernel_size (or kernel_h and kernel_w, or "
                    "global_pooling: true)",
                )
            if rect and not (has("kernel_h") and has("kernel_w")):
                raise LayerError(
                    self, "a non-square kernel needs both kernel_h and kernel_w"
                )
        for short in ("pad", "stride"):
            pair = (has(short + "_h"), has(short + "_w"))
            if has(short) and any(pair):
                raise LayerError(
                    self, f"give {short} OR {short}_h and {short}_w, not both"
                )
            if pair[0] != pair[1]:
                raise LayerError(
                    self, f"{short}_h and {short}_w must be given together"
                )
        if has("kernel_size"):
            self.kernel = (p.kernel_size, p.kernel_size)
        else:
            self.kernel = (p.kernel_h, p.kernel_w)
        if has("pad_h"):
            self.pad = (p.pad_h, p.pad_w)
        else:
            self.pad = (p.pad, p.pad)
        if has("stride_h"):
            self.stride = (p.stride_h, p.stride_w)
        else:
            self.stride = (p.stride, p.stride)
        if self.global_pooling:
            if self.pad != (0, 0) or self.stride != (1, 1):
                raise LayerError(
                    self,
                    f"global_pooling needs pad 0 and stride 1, got pad "
                    f"{list(self.pad)} and stride {list(self.stride)}",
                )
        elif min(self.kernel) <= 0:
            raise LayerError(self, f"kernel size must be > 0, got {list(self.kernel)}")
        if min(self.stride) <= 0:
            raise LayerError(self, f"stride must be > 0, got {list(self.stride)}")
        if not self.global_pooling and (
            self.pad[0] >= self.kernel[0] or self.pad[1] >= self.kernel[1]
        ):
            raise LayerError(
                self,
                f"pad {list(self.pad)} must be smaller than the kernel "
                f"{list(self.kernel)}",
            )
        self.ceil_mode = p.round_mode == P.CEIL
        self.is_max = self.pool == P.MAX
        self._argmax = np.zeros(0, np.int32)

    def _pooled(self, size, k, pad, stride):
        span = size + 2 * pad - k
        pooled = (-(-span // stride) if self.ceil_mode else span // stride) + 1
        return pooled

    def reshape(self, bottom, top):
        x = bottom[0]
        if x.num_axes != 4:
            raise ShapeError(
                self, f"bottom must have 4 axes (N, C, H, W), got shape {x.shape}"
            )
        n, c, h, w = x.shape
        if self.global_pooling:
            self.kernel = (h, w)
        (kh, kw), (ph, pw), (sh, sw) = self.kernel, self.pad, self.stride
        out_h = self._pooled(h, kh, ph, sh)
        out_w = self._pooled(w, kw, pw, sw)
        if ph or pw:
            # NOTE: Caffe's clip rule (applied to both axes when either is padded):
            # the last window must start inside the padded input.
            if (out_h - 1) * sh >= h + ph:
                out_h -= 1
            if (out_w - 1) * sw >= w + pw:
                out_w -= 1
        if out_h <= 0 or out_w <= 0:
            raise ShapeError(
                self,
                f"bottom {x.shape} is smaller than the kernel {list(self.kernel)}"
                f" with pad {list(self.pad)}",
            )
        shape = (n, c, out_h, out_w)
        for t in top:
            t.reshape(shape)

    def forward(self, bottom, top):
        (kh, kw), (ph, pw), (sh, sw) = self.kernel, self.pad, self.stride
        x, y = bottom[0].data, top[0].data
        if self.is_max:
            count = y.size
            if self._argmax.size < count:
                self._argmax = np.empty(count, np.int32)
            arg = self._argmax[:count].reshape(y.shape)
            _pk.max_pool_forward(x, kh, kw, ph, pw, sh, sw, y, arg)
            if len(top) > 1:
                top[1].data[...] = arg
        else:
            _pk.ave_pool_forward(x, kh, kw, ph, pw, sh, sw, y)

    def backward(self, top, propagate_down, bottom):
        if not propagate_down[0]:
            return
        dy, dx = top[0].diff, bottom[0].diff
        if self.is_max:
            arg = self._argmax[: dy.size].reshape(dy.shape)
            _pk.max_pool_backward(dy, arg, dx)
        else:
            (kh, kw), (ph, pw), (sh, sw) = self.kernel, self.pad, self.stride
            _pk.ave_pool_backward(dy, kh, kw, ph, pw, sh, sw, dx)


# ----------------------------------------------------------------------------
# InnerProduct and Embed
# ----------------------------------------------------------------------------
@register_layer("InnerProduct")
class InnerProductLayer(Layer):
    """Fully connected layer: ``y = x W^T + b`` over flattened trailing axes.

    Parameters (``inner_product_param``): ``num_output`` (required), ``bias_term``
    (true), ``axis`` (1): axes before it are kept, it and the later ones are
    flattened into K; ``transpose`` (false): store W as (K, N) and compute
    ``y = x W + b``; ``weight_filler``, ``bias_filler`` (constant 0).

    Blobs: weight (N, K), or (K, N) with transpose; bias (N,).
    Bottom (d0, ..., d_{axis-1}, ...) with K trailing elements -> top
    (d0, ..., d_{axis-1}, N).

    Gradient: dx = dy W (dy W^T with transpose), dW = dy^T x (x^T dy),
    db = sum of dy over the rows.
    """

    exact_num_bottom = 1
    exact_num_top = 1

    def setup(self, bottom, top):
        p = self.layer_param.inner_product_param
        self.num_output = int(p.num_output)
        if self.num_output <= 0:
            raise LayerError(self, f"num_output must be > 0, got {self.num_output}")
        self.axis = canonical_axis(self, bottom[0], p.axis)
        self.K = bottom[0].count_range(self.axis)
        self.bias_term = bool(p.bias_term)
        self.transpose = bool(p.transpose)
        n, k = self.num_output, self.K
        wshape = (k, n) if self.transpose else (n, k)
        self._wgrad = None
        self._counter = np.zeros(1, np.int64)
        self._no_bias = np.empty(0, self.dtype)
        shapes = [wshape] + ([(n,)] if self.bias_term else [])
        if self.blobs:
            _check_param_shapes(self, shapes)
        else:
            self.new_blob(wshape, p.weight_filler)
            if self.bias_term:
                self.new_blob((n,), p.bias_filler)

    def reshape(self, bottom, top):
        x = bottom[0]
        if self.axis >= max(x.num_axes, 1):
            raise ShapeError(
                self, f"bottom {x.shape} has no axis {self.axis} to flatten from"
            )
        k = x.count_range(self.axis)
        if k != self.K:
            raise ShapeError(
                self,
                f"bottom {x.shape} flattens to K={k} from axis {self.axis}, but "
                f"the weights expect K={self.K}",
            )
        self.M = x.count_range(0, self.axis)
        top[0].reshape(x.shape[: self.axis] + (self.num_output,))

    def _w(self, arr):
        """The (N, K) weight matrix (a transposed view when stored as (K, N))."""
        return arr.T if self.transpose else arr

    def _blocks(self, size):
        """Column blocks [a, b) of a dimension of ``size`` for the pool's threads:
        one block (a single multi-threaded GEMM) for small products."""
        pool = _pool.POOL
        if pool.size == 1 or self.M * self.K * self.num_output < _IP_SPLIT_FLOPS:
            return [(0, size)]
        return _pool.split(size, 2 * pool.size)

    def _kernel_threads(self):
        """Threads for the GEMM kernels (kernels/conv.py): 1 for a small product
        (run on the calling thread), 0 without a BLAS the kernels can call."""
        if not _blas.AVAILABLE:
            return 0
        if self.M * self.K * self.num_output < _IP_SPLIT_FLOPS:
            return 1
        import numba

        return numba.get_num_threads()

    def forward(self, bottom, top):
        x = bottom[0].data.reshape(self.M, self.K)
        y = top[0].data.reshape(self.M, self.num_output)
        workers = self._kernel_threads()
        if workers:
            from caffepy.kernels.conv import ip_forward

            bias = self.blobs[1].data if self.bias_term else self._no_bias
            with _serial_if(workers == 1):
                ip_forward(x, self.blobs[0].data, self.transpose, bias,
                           min(self.num_output, 2 * workers),
                           _blas.gemm_address(self.dtype),
                           _blas.gemv_address(self.dtype), _blas.SET_LOCAL_THREADS,
                           workers, self._counter, y)
            return
        wt = self._w(self.blobs[0].data).T
        bias = self.blobs[1].data if self.bias_term else None
        blocks = self._blocks(self.num_output)

        def task(j, worker):
            a, b = blocks[j]
            np.matmul(x, wt[:, a:b], out=y[:, a:b])
            if bias is not None:
                y[:, a:b] += bias[a:b]

        _pool.POOL.run(task, len(blocks))

    def backward(self, top, propagate_down, bottom):
        dy = top[0].diff.reshape(self.M, self.num_output)
        want_w = want_param(self, 0)
        want_x = bool(propagate_down[0])
        workers = self._kernel_threads()
        if workers and (want_w or want_x):
            from caffepy.kernels.conv import ip_backward

            x = bottom[0].data.reshape(self.M, self.K)
            dx = bottom[0].diff.reshape(self.M, self.K) if want_x else x
            # NOTE: the weight gradient accumulates straight into the diff (GEMM
            # with beta 1); its blocks split the outputs, dx's the inputs.
            with _serial_if(workers == 1):
                ip_backward(x, dy, self.blobs[0].data, self.transpose, want_w,
                            want_x, min(self.num_output, 2 * workers),
                            min(self.K, 2 * workers), _blas.gemm_address(self.dtype),
                            _blas.SET_LOCAL_THREADS, workers, self._counter,
                            self.blobs[0].diff, dx)
            want_w = want_x = False
        if want_w:
            x = bottom[0].data.reshape(self.M, self.K)
            w_diff = self.blobs[0].diff
            if self._wgrad is None or self._wgrad.shape != w_diff.shape:
                self._wgrad = np.empty_like(w_diff)
            dw, tmp = w_diff, self._wgrad
        if want_x:
            w = self._w(self.blobs[0].data)
            dx = bottom[0].diff.reshape(self.M, self.K)
        n_blocks = self._blocks(self.num_output) if want_w else []
        k_blocks = self._blocks(self.K) if want_x else []
        if not (n_blocks or k_blocks):
            if self.bias_term and want_param(self, 1):
                self.blobs[1].diff += dy.sum(axis=0)
            return

        def task(j, worker):
            # NOTE: the weight gradient is split by output rows, the bottom
            # gradient by input columns: the blocks never overlap.
            if j < len(n_blocks):
                a, b = n_blocks[j]
                if self.transpose:  # stored (K, N): dW[:, a:b] = x^T dy[:, a:b]
                    np.matmul(x.T, dy[:, a:b], out=tmp[:, a:b])
                    dw[:, a:b] += tmp[:, a:b]
                else:
                    np.matmul(dy[:, a:b].T, x, out=tmp[a:b])
                    dw[a:b] += tmp[a:b]
            else:
                a, b = k_blocks[j - len(n_blocks)]
                np.matmul(dy, w[:, a:b], out=dx[:, a:b])

        _pool.POOL.run(task, len(n_blocks) + len(k_blocks))
        if self.bias_term and want_param(self, 1):
            self.blobs[1].diff += dy.sum(axis=0)


@register_layer("Embed")
class EmbedLayer(Layer):
    """Lookup table: ``y[..., :] = W[int(x[...]), :] + b``.

    Parameters (``embed_param``): ``num_output`` N (required), ``input_dim`` K
    (required; indices lie in [0, K)), ``bias_term`` (true), ``weight_filler``,
    ``bias_filler`` (constant 0).

    Blobs: weight (K, N); bias (N,).
    Bottom: indices stored as floats, any shape S (each value must be an integer
    in [0, K)); top: S + (N,).

    Gradient: dW[k] = sum of dy over the positions holding index k (repeated
    indices accumulate); db = sum of dy. The indices get no gradient: asking for
    one raises LayerError.
    """

    exact_num_bottom = 1
    exact_num_top = 1

    def setup(self, bottom, top):
        p = self.layer_param.embed_param
        self.num_output = int(p.num_output)
        self.input_dim = int(p.input_dim)
        if self.num_output <= 0:
            raise LayerError(self, f"num_output must be > 0, got {self.num_output}")
        if self.input_dim <= 0:
            raise LayerError(self, f"input_dim must be > 0, got {self.input_dim}")
        self.bias_term = bool(p.bias_term)
        wshape = (self.input_dim, self.num_output)
        shapes = [wshape] + ([(self.num_output,)] if self.bias_term else [])
        if self.blobs:
            _check_param_shapes(self, shapes)
        else:
            self.new_blob(wshape, p.weight_filler)
            if self.bias_term:
                self.new_blob((self.num_output,), p.bias_filler)
        self._index = np.zeros(0, np.intp)

    def allow_force_backward(self, bottom_index):
        return False

    def reshape(self, bottom, top):
        top[0].reshape(bottom[0].shape + (self.num_output,))

    def _indices(self, values):
        flat = values.reshape(-1)
        # NOTE: the range test comes first (NaN fails it), so the cast to int
        # never sees a value it cannot represent.
        bad = ~((flat >= 0) & (flat < self.input_dim))
        if not bad.any():
            index = flat.astype(np.intp)
            bad = index != flat
        if bad.any():
            k = int(np.flatnonzero(bad)[0])
            raise LayerError(
                self,
                f"bottom[0] holds {float(flat[k])!r} at flat position {k}; indices "
                f"must be integers in [0, input_dim={self.input_dim})",
            )
        return index

    def forward(self, bottom, top):
        self._index = self._indices(bottom[0].data)
        y = top[0].data.reshape(-1, self.num_output)
        # NOTE: mode="clip" lets take write straight into y (mode="raise" buffers);
        # the indices were checked above.
        np.take(self.blobs[0].data, self._index, axis=0, out=y, mode="clip")
        if self.bias_term:
            y += self.blobs[1].data

    def backward(self, top, propagate_down, bottom):
        if propagate_down and propagate_down[0]:
            raise LayerError(
                self,
                "cannot back-propagate to its index input (bottom[0]); "
                "propagate_down must be false for it",
            )
        dy = top[0].diff.reshape(-1, self.num_output)
        if want_param(self, 0):
            # NOTE: add.at sums the rows of repeated indices (a plain fancy-index
            # += would keep only the last one).
            np.add.at(self.blobs[0].diff, self._index, dy)
        if self.bias_term and want_param(self, 1):
            self.blobs[1].diff += dy.sum(axis=0)
