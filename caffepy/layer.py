"""Layer: the base class of every layer, with pycaffe's contract.

The base owns the entry points (:meth:`Layer.SetUp`, :meth:`Layer.Forward`,
:meth:`Layer.Backward`): blob-count checks, loss weights, reshape before forward.
A subclass overrides only the hooks, the same four a pycaffe Python layer has::

    setup(bottom, top)      read parameters (once), create self.blobs
    reshape(bottom, top)    shape the tops (cheap: runs on every forward)
    forward(bottom, top)    compute top data
    backward(top, propagate_down, bottom)
                            write bottom diffs where propagate_down[i];
                            *accumulate* into parameter diffs where
                            self.param_propagate_down[j]

``bottom`` and ``top`` are lists of :class:`~caffepy.blob.Blob`. In-place layers
(top[0] is bottom[0]) must be correct when both are the same Blob.
"""

from __future__ import annotations

import numpy as np

from caffepy.backend import mode as _mode
from caffepy.blob import Blob
from caffepy.errors import LayerError, ShapeError
from caffepy.phase import TEST, TRAIN  # noqa: F401 - re-exported


def want_param(layer, j):
    """Whether backward must accumulate the gradient of parameter blob j
    (a missing ``param_propagate_down`` entry means yes)."""
    pd = layer.param_propagate_down
    return j >= len(pd) or bool(pd[j])


def canonical_axis(layer, blob, axis, what="axis"):
    """``blob.canonical_axis(axis)``, with a LayerError naming the layer on failure."""
    from caffepy.errors import CaffepyError

    try:
        return blob.canonical_axis(int(axis))
    except CaffepyError:
        n = blob.num_axes
        raise LayerError(
            layer,
            f"{what} {axis} is out of range for a bottom of shape {blob.shape} "
            f"(expected -{n} <= {what} < {n})",
        ) from None


class BlobVec(list):
    """A layer's parameter blobs (pycaffe's ``layer.blobs``)."""

    def __init__(self, dtype=np.float32):
        super().__init__()
        self.dtype = dtype

    def add_blob(self, *shape):
        blob = Blob(shape, self.dtype)
        self.append(blob)
        return blob


class Layer:
    """Base class of all layers (and of user ``type: "Python"`` layers).

    Attributes:
        layer_param: the layer's ``caffe_pb2.LayerParameter``.
        name, type: from the prototxt.
        phase: ``caffepy.TRAIN`` or ``caffepy.TEST``.
        blobs: learnable (or state) parameter blobs.
        param_propagate_down: per parameter blob, whether backward must compute
            its gradient (False for ``lr_mult: 0``); set by the Net.
    """

    # Arity is data, checked in one place (None: unchecked).
    exact_num_bottom: int | None = None
    min_num_bottom: int | None = None
    max_num_bottom: int | None = None
    exact_num_top: int | None = None
    min_num_top: int | None = None
    max_num_top: int | None = None
    equal_num_bottom_top = False
    #: Loss layers put an implicit loss_weight of 1 on their first top.
    is_loss = False
    type_name = None

    def __init__(self, layer_param, phase=TRAIN, dtype=np.float32):
        self.layer_param = layer_param
        self.name = layer_param.name
        self.type = layer_param.type or self.type_name
        self.phase = phase
        self.dtype = np.dtype(dtype)
        self.blobs = BlobVec(self.dtype)
        self.param_propagate_down = []
        self.loss_weights = []

    # -- hooks ---------------------------------------------------------------
    def setup(self, bottom, top):
        """Read parameters and create ``self.blobs`` (runs once)."""

    def reshape(self, bottom, top):
        raise NotImplementedError(f"{self.type} layer does not implement reshape")

    def forward(self, bottom, top):
        raise NotImplementedError(f"{self.type} layer does not implement forward")

    def backward(self, top, propagate_down, bottom):
        raise NotImplementedError(f"{self.type} layer does not implement backward")

    def allow_force_backward(self, bottom_index):
        """Whether force_backward may ask for this bottom's gradient (not labels)."""
        return True

    @classmethod
    def param_blob_count(cls, layer_param) -> int:
        """How many parameter blobs a layer of this ``layer_param`` creates, known
        before it is built (to edit its ``param`` specs, e.g. when fine-tuning).

        Layers with learnable parameters override this; the default is 0.
        """
        return 0

    @classmethod
    def fixed_lr_mults(cls, layer_param) -> list[float] | None:
        """The ``lr_mult`` per parameter blob that this layer type imposes, or
        None when the prototxt's ``param`` specs decide (the default).

        BatchNorm returns zeros: its blobs are statistics, never learned. The Net
        applies these, and a fixed ``lr_mult`` of 0 also means ``decay_mult`` 0.
        """
        return None

    def fuse_next(self, nxt: Layer, bottom: list, top: list) -> bool:
        """Whether this layer can also do the work of ``nxt``, the next layer of
        the net, which computes in place on this layer's only top: asked once by
        the Net after building. The Net then runs :meth:`forward_fused` (and
        :meth:`backward_fused`) instead of the two layers' own passes whenever it
        runs both, on the CPU, without debug_info. False by default.
        """
        return False

    def forward_fused(self, nxt: Layer, bottom: list, top: list) -> None:
        """This layer's forward then ``nxt``'s, on the top they share (the
        same numbers as the two passes); see :meth:`fuse_next`."""
        raise NotImplementedError(f"{self.type} layer does not fuse")

    def fuse_following(self, following: list[Layer], bottom: list, top: list) -> int:
        """How many of ``following`` (the layers after this one that compute in
        place on its only top, in net order, none with a loss) this layer's
        :meth:`forward_following` computes with its own forward: asked once by
        the Net after building. The Net then runs :meth:`forward_following`
        instead of those layers' forwards whenever it runs all of them, on the
        CPU, without debug_info; backward runs them one by one (a pair may
        still fuse it: :meth:`backward_fused`). By default the pair of
        :meth:`fuse_next`: 1 if it fuses ``following[0]``, else 0.
        """
        return 1 if self.fuse_next(following[0], bottom, top) else 0

    def forward_following(
        self, following: list[Layer], bottom: list, top: list
    ) -> None:
        """This layer's forward, then those of ``following`` (as many as
        :meth:`fuse_following` said), on the top they share: the same numbers
        as the passes one by one. By default :meth:`forward_fused`."""
        self.forward_fused(following[0], bottom, top)

    def backward_fused(
        self, nxt: Layer, top: list, propagate_down: list, bottom: list
    ) -> bool:
        """``nxt``'s backward then this layer's, when both run and ``nxt``
        propagates to the shared top; return False to have the Net run them one
        by one instead."""
        return False

    def close(self) -> None:
        """Release what the layer holds outside the net (data readers, prefetch
        threads, open databases). A no-op by default; ``Net.close`` calls it."""

    def workspace(self, ops):
        """This layer's :class:`~caffepy.backend.base.Workspace` on ``ops``'s
        device: one per layer, a new one after a mode switch."""
        ws = self.__dict__.get("_layer_ws")
        if ws is None or ws[0] is not ops:
            ws = self._layer_ws = (ops, ops.workspace())
        return ws[1]

    # -- entry points ----------------------------------------------------------
    def SetUp(self, bottom, top):
        self.check_blob_counts(bottom, top)
        self.setup(bottom, top)
        self.reshape(bottom, top)
        self._set_loss_weights(top)

    def Forward(self, bottom, top):
        """Reshape, compute, and return the weighted loss of this layer's tops."""
        ops = _mode.ops()
        if ops.name == "cpu" or ops.supports(self):
            self.reshape(bottom, top)
            self.forward(bottom, top)
        else:
            # NOTE: Caffe's Forward_gpu defaults to Forward_cpu: the hooks run on
            # the CPU backend and the blobs sync through their host accessors.
            with _mode.cpu_fallback():
                self.reshape(bottom, top)
                self.forward(bottom, top)
        loss = 0.0
        for weight, blob in zip(self.loss_weights, top):
            if weight:
                # NOTE: as Caffe, a loss top's diff holds its loss weight, which is
                # the gradient that backward starts from. The sum runs where the
                # top lives: one scalar comes back from a device.
                ops.mutable_diff(blob)[...] = weight
                loss += weight * ops.asum(ops.data(blob))
        return loss

    def Backward(self, top, propagate_down, bottom):
        ops = _mode.ops()
        if ops.name == "cpu" or ops.supports(self):
            self.backward(top, propagate_down, bottom)
        else:
            with _mode.cpu_fallback():
                self.backward(top, propagate_down, bottom)

    # -- helpers -------------------------------------------------------------
    def check_blob_counts(self, bottom, top):
        nb, nt = len(bottom), len(top)

        def bad(what, n, rule):
            raise LayerError(self, f"takes {rule} {what} blob(s), got {n}")

        if self.exact_num_bottom is not None and nb != self.exact_num_bottom:
            bad("bottom", nb, f"exactly {self.exact_num_bottom}")
        if self.min_num_bottom is not None and nb < self.min_num_bottom:
            bad("bottom", nb, f"at least {self.min_num_bottom}")
        if self.max_num_bottom is not None and nb > self.max_num_bottom:
            bad("bottom", nb, f"at most {self.max_num_bottom}")
        if self.exact_num_top is not None and nt != self.exact_num_top:
            bad("top", nt, f"exactly {self.exact_num_top}")
        if self.min_num_top is not None and nt < self.min_num_top:
            bad("top", nt, f"at least {self.min_num_top}")
        if self.max_num_top is not None and nt > self.max_num_top:
            bad("top", nt, f"at most {self.max_num_top}")
        if self.equal_num_bottom_top and nb != nt:
            raise LayerError(
                self, f"needs as many tops as bottoms, got {nb} bottoms and {nt} tops"
            )

    def _set_loss_weights(self, top):
        given = list(self.layer_param.loss_weight)
        if given and len(given) != len(top):
            raise LayerError(
                self,
                f"has {len(given)} loss_weight values but {len(top)} tops; give one "
                "per top",
            )
        if not given:
            given = [1.0 if (self.is_loss and i == 0) else 0.0 for i in range(len(top))]
        self.loss_weights = [float(w) for w in given]

    def new_blob(self, shape, filler=None):
        """Create a parameter blob in ``self.blobs``, optionally filled."""
        blob = self.blobs.add_blob(*shape)
        if filler is not None:
            from caffepy.fillers import fill

            fill(blob, filler, self)
        return blob

    def check_shape(self, ok, message):
        if not ok:
            raise ShapeError(self, message)

    def __repr__(self):
        return f"<{type(self).__name__} {self.name!r} ({self.type})>"


class NeuronLayer(Layer):
    """Element-wise layer: one bottom, one top of the same shape (in-place safe)."""

    exact_num_bottom = 1
    exact_num_top = 1

    def reshape(self, bottom, top):
        if top[0] is not bottom[0]:
            top[0].reshape(bottom[0].shape)


class LossLayer(Layer):
    """Loss layer: predictions and targets in, a scalar loss out (loss_weight 1).

    Checks that the first two bottoms agree on the batch size (axis 0).
    """

    min_num_bottom = 2
    exact_num_top = None
    min_num_top = 1
    max_num_top = 1
    is_loss = True

    def allow_force_backward(self, bottom_index):
        return bottom_index != 1

    def reshape(self, bottom, top):
        if bottom[0].shape[:1] != bottom[1].shape[:1]:
            raise ShapeError(
                self,
                f"bottoms must have the same batch size: {bottom[0].shape} vs "
                f"{bottom[1].shape}",
            )
        top[0].reshape(())
