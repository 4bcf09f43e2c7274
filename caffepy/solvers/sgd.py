"""The six update rules of Caffe, each overriding only ``compute_update_value``.

On entry the parameter's diff holds the gradient g (normalised by iter_size and
regularised); on exit it holds the update u that ``apply_update`` subtracts
(w -= u). ``lr`` below is the local rate, base rate * lr_mult. All arithmetic is
in place on preallocated arrays of the parameter's dtype (Caffe's ``history_``,
``update_`` and ``temp_`` blobs), in the order Caffe performs it.
"""

import math

import numpy as np

from caffepy.registry import register_solver
from caffepy.solvers.base import Solver, _axpby


@register_solver("SGD")
class SGDSolver(Solver):
    """Stochastic gradient descent with momentum.

    h = momentum * h + lr * g;  u = h.
    Parameters: ``momentum`` (default 0). History: h, one per parameter.
    """

    def compute_update_value(self, param_id, rate):
        diff = self._params[param_id].diff
        h = self.history[param_id]
        _axpby(self.local_rate(param_id, rate), diff,
               self.scalar(self.param.momentum), h, self._update[param_id])
        np.copyto(diff, h)

    def update_param(self, i, rate):
        # NOTE: plain SGD with L2 (or no) decay runs as one fused kernel with the
        # same float operations; the subclasses' rules and L1 take the general path.
        if (type(self).compute_update_value is not SGDSolver.compute_update_value
                or self.param.regularization_type != "L2"):
            super().update_param(i, rate)
            return
        from caffepy.kernels.solver import sgd_update

        blob = self._params[i]
        decay = self.scalar(self.param.weight_decay) * self.scalar(self._decay_mult[i])
        sgd_update(blob.data.reshape(-1), blob.diff.reshape(-1),
                   self.history[i].reshape(-1), decay, self.local_rate(i, rate),
                   self.scalar(self.param.momentum))


@register_solver("Nesterov")
class NesterovSolver(SGDSolver):
    """Nesterov's accelerated gradient (Sutskever et al.'s formulation).

    h_prev = h;  h = momentum * h + lr * g;  u = (1 + momentum) * h - momentum * h_prev.
    Parameters: ``momentum``. History: h.
    """

    def compute_update_value(self, param_id, rate):
        diff = self._params[param_id].diff
        h = self.history[param_id]
        prev, tmp = self._update[param_id], self._temp[param_id]
        m = self.scalar(self.param.momentum)
        np.copyto(prev, h)
        _axpby(self.local_rate(param_id, rate), diff, m, h, tmp)
        # u = (1 + m) * h - m * h_prev: "step back, then over-step"
        np.multiply(h, self.scalar(1) + m, out=diff)
        np.multiply(prev, m, out=tmp)
        np.subtract(diff, tmp, out=diff)


@register_solver("AdaGrad")
class AdaGradSolver(SGDSolver):
    """AdaGrad (Duchi et al.): h += g^2;  u = lr * g / (sqrt(h) + delta).

    Parameters: ``delta`` (default 1e-8); ``momentum`` must be 0. History: h.
    """

    allows_momentum = False

    def compute_update_value(self, param_id, rate):
        diff = self._params[param_id].diff
        h, upd = self.history[param_id], self._update[param_id]
        np.square(diff, out=upd)
        np.add(h, upd, out=h)
        np.sqrt(h, out=upd)
        np.add(upd, self.scalar(self.param.delta), out=upd)
        np.divide(diff, upd, out=upd)
        np.multiply(upd, self.local_rate(param_id, rate), out=diff)


@register_solver("RMSProp")
class RMSPropSolver(SGDSolver):
    """RMSProp (Tieleman and Hinton).

    h = rms_decay * h + (1 - rms_decay) * g^2;  u = lr * g / (sqrt(h) + delta).
    Parameters: ``rms_decay`` (default 0.99, in [0, 1)), ``delta`` (1e-8);
    ``momentum`` must be 0. History: h.
    """

    allows_momentum = False
    checks_rms_decay = True

    def compute_update_value(self, param_id, rate):
        diff = self._params[param_id].diff
        h, upd = self.history[param_id], self._update[param_id]
        decay = self.scalar(self.param.rms_decay)
        np.square(diff, out=upd)
        np.multiply(h, decay, out=h)
        np.multiply(upd, self.scalar(1) - decay, out=upd)
        np.add(h, upd, out=h)
        np.sqrt(h, out=upd)
        np.add(upd, self.scalar(self.param.delta), out=upd)
        np.divide(diff, upd, out=upd)
        np.multiply(upd, self.local_rate(param_id, rate), out=diff)


@register_solver("AdaDelta")
class AdaDeltaSolver(SGDSolver):
    """AdaDelta (Zeiler), with Caffe's base_lr scaling the step.

    h1 = m * h1 + (1 - m) * g^2
    d  = g * sqrt((h2 + delta) / (h1 + delta))
    h2 = m * h2 + (1 - m) * d^2
    u  = lr * d
    Parameters: ``momentum`` (the decay m of both averages), ``delta`` (1e-8).
    History: h1 for every parameter, then h2 for every parameter.
    """

    history_sets = 2

    def compute_update_value(self, param_id, rate):
        diff = self._params[param_id].diff
        h1 = self.history[param_id]
        h2 = self.history[len(self._params) + param_id]
        upd, tmp = self._update[param_id], self._temp[param_id]
        m = self.scalar(self.param.momentum)
        one_m = self.scalar(1) - m
        delta = self.scalar(self.param.delta)
        np.square(diff, out=upd)
        np.multiply(upd, one_m, out=upd)
        np.multiply(h1, m, out=h1)
        np.add(h1, upd, out=h1)
        np.add(h2, delta, out=upd)
        np.add(h1, delta, out=tmp)
        np.divide(upd, tmp, out=upd)
        np.sqrt(upd, out=upd)
        np.multiply(diff, upd, out=diff)
        np.square(diff, out=upd)
        np.multiply(upd, one_m, out=upd)
        np.multiply(h2, m, out=h2)
        np.add(h2, upd, out=h2)
        np.multiply(diff, self.local_rate(param_id, rate), out=diff)


@register_solver("Adam")
class AdamSolver(SGDSolver):
    """Adam (Kingma and Ba), with the bias correction folded into the rate.

    m = b1 * m + (1 - b1) * g;  v = b2 * v + (1 - b2) * g^2
    u = lr * sqrt(1 - b2^t) / (1 - b1^t) * m / (sqrt(v) + delta),  t = iter + 1
    Parameters: ``momentum`` (b1), ``momentum2`` (b2, default 0.999), ``delta``
    (1e-8). History: m for every parameter, then v for every parameter.
    """

    history_sets = 2
    checks_betas = True

    def compute_update_value(self, param_id, rate):
        diff = self._params[param_id].diff
        m_ = self.history[param_id]
        v = self.history[len(self._params) + param_id]
        tmp = self._temp[param_id]
        b1 = self.scalar(self.param.momentum)
        b2 = self.scalar(self.param.momentum2)
        t = self.iter + 1
        # NOTE: as Caffe, the powers are taken in double and the correction
        # rounded to the blob type once.
        correction = self.scalar(
            math.sqrt(1.0 - float(b2) ** t) / (1.0 - float(b1) ** t))
        _axpby(self.scalar(1) - b1, diff, b1, m_, tmp)
        np.multiply(diff, diff, out=tmp)
        np.multiply(tmp, self.scalar(1) - b2, out=tmp)
        np.multiply(v, b2, out=v)
        np.add(v, tmp, out=v)
        np.sqrt(v, out=tmp)
        np.add(tmp, self.scalar(self.param.delta), out=tmp)
        np.divide(m_, tmp, out=tmp)
        np.multiply(tmp, self.local_rate(param_id, rate) * correction, out=diff)
