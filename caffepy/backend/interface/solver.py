"""Solver update-rule ops: regularization and the update rules, one
learnable parameter at a time.

One learnable parameter at a time: ``w`` its data, ``g`` its diff (the
gradient on entry, the update to subtract on exit), ``h``/``h2`` the rule's
history, ``tmp``/``tmp2`` scratch of the same shape; all of the nets' float
type, any shape (treated as flat). Scalars are of that float type, so the
arithmetic stays in it, in Caffe's order (results are bit-identical to
Caffe's separate passes).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from caffepy.backend.interface.memory import MemoryInterface

if TYPE_CHECKING:
    from caffepy.backend.base import Array


class SolverInterface(MemoryInterface):
    """The solver ops of :class:`~caffepy.backend.base.Ops` (declarations only)."""

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
