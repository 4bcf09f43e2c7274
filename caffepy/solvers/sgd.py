"""The six update rules of Caffe (``sgd_solvers.hpp``), each overriding only
``compute_update_value`` (and ``check_update_param`` for its own parameters).

On entry the parameter's diff holds the gradient g (normalised by iter_size and
regularised); on exit it holds the update u that ``apply_update`` subtracts
(w -= u). ``lr`` below is the local rate, base rate * lr_mult. The arithmetic is
the backend's solver ops, in place on preallocated arrays of the parameter's
dtype (Caffe's ``history_``, ``update_`` and ``temp_`` blobs), in the order
Caffe performs it.
"""

from __future__ import annotations

import math

from caffepy.solvers.registry import register_solver
from caffepy.solvers.solver import Solver
from caffepy.solvers.validate import check_range, field_error


def _check_unit_interval(solver: Solver, field: str) -> None:
    check_range(solver, field, 0, 1, high_open=True)


def _check_delta(solver: Solver) -> None:
    check_range(
        solver,
        "delta",
        0,
        low_open=True,
        why=" (it keeps a zero gradient from dividing 0 by 0)",
    )


def _check_no_momentum(solver: Solver) -> None:
    name, momentum = solver.type_name, solver.param.momentum
    if momentum != 0:
        raise field_error(
            solver,
            "momentum",
            f"{name} solver: momentum must be 0 (Caffe: momentum cannot be used "
            f"with {name}); got momentum: {momentum:g}",
        )


@register_solver("SGD")
class SGDSolver(Solver):
    """Stochastic gradient descent with momentum.

    h = momentum * h + lr * g;  u = h.
    Parameters: ``momentum`` (default 0). History: h, one per parameter.
    """

    def check_update_param(self) -> None:
        check_range(self, "momentum", 0, 1)

    def compute_update_value(self, param_id: int, rate: float) -> None:
        ops = self.ops
        ops.sgd_compute_update(
            ops.mutable_diff(self._params[param_id]),
            self.history[param_id],
            self.local_rate(param_id, rate),
            self.scalar(self.param.momentum),
            self._update[param_id],
        )

    def update_param(self, i: int, rate: float) -> None:
        # NOTE: plain SGD with L2 (or no) decay runs as one fused op with the same
        # float operations; the subclasses' rules and L1 take the general path.
        if (
            type(self).compute_update_value is not SGDSolver.compute_update_value
            or self.param.regularization_type != "L2"
        ):
            super().update_param(i, rate)
            return
        ops, blob = self.ops, self._params[i]
        ops.sgd_update(
            ops.mutable_data(blob),
            ops.mutable_diff(blob),
            self.history[i],
            self.local_decay(i),
            self.local_rate(i, rate),
            self.scalar(self.param.momentum),
        )


@register_solver("Nesterov")
class NesterovSolver(SGDSolver):
    """Nesterov's accelerated gradient (Sutskever et al.'s formulation).

    h_prev = h;  h = momentum * h + lr * g;  u = (1 + momentum) * h - momentum * h_prev.
    Parameters: ``momentum``. History: h.
    """

    def compute_update_value(self, param_id: int, rate: float) -> None:
        ops = self.ops
        ops.nesterov_compute_update(
            ops.mutable_diff(self._params[param_id]),
            self.history[param_id],
            self.local_rate(param_id, rate),
            self.scalar(self.param.momentum),
            self._update[param_id],
            self._temp[param_id],
        )


@register_solver("AdaGrad")
class AdaGradSolver(SGDSolver):
    """AdaGrad (Duchi et al.): h += g^2;  u = lr * g / (sqrt(h) + delta).

    Parameters: ``delta`` (default 1e-8); ``momentum`` must be 0. History: h.
    """

    def check_update_param(self) -> None:
        _check_no_momentum(self)
        _check_delta(self)

    def compute_update_value(self, param_id: int, rate: float) -> None:
        ops = self.ops
        ops.adagrad_compute_update(
            ops.mutable_diff(self._params[param_id]),
            self.history[param_id],
            self.local_rate(param_id, rate),
            self.scalar(self.param.delta),
            self._update[param_id],
        )


@register_solver("RMSProp")
class RMSPropSolver(SGDSolver):
    """RMSProp (Tieleman and Hinton).

    h = rms_decay * h + (1 - rms_decay) * g^2;  u = lr * g / (sqrt(h) + delta).
    Parameters: ``rms_decay`` (default 0.99, in [0, 1)), ``delta`` (1e-8);
    ``momentum`` must be 0. History: h.
    """

    def check_update_param(self) -> None:
        _check_no_momentum(self)
        _check_unit_interval(self, "rms_decay")
        _check_delta(self)

    def compute_update_value(self, param_id: int, rate: float) -> None:
        ops = self.ops
        ops.rmsprop_compute_update(
            ops.mutable_diff(self._params[param_id]),
            self.history[param_id],
            self.local_rate(param_id, rate),
            self.scalar(self.param.rms_decay),
            self.scalar(self.param.delta),
            self._update[param_id],
        )


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

    def check_update_param(self) -> None:
        _check_unit_interval(self, "momentum")
        _check_delta(self)

    def compute_update_value(self, param_id: int, rate: float) -> None:
        ops = self.ops
        ops.adadelta_compute_update(
            ops.mutable_diff(self._params[param_id]),
            self.history[param_id],
            self.history[len(self._params) + param_id],
            self.local_rate(param_id, rate),
            self.scalar(self.param.momentum),
            self.scalar(self.param.delta),
            self._update[param_id],
            self._temp[param_id],
        )


@register_solver("Adam")
class AdamSolver(SGDSolver):
    """Adam (Kingma and Ba), with the bias correction folded into the rate.

    m = b1 * m + (1 - b1) * g;  v = b2 * v + (1 - b2) * g^2
    u = lr * sqrt(1 - b2^t) / (1 - b1^t) * m / (sqrt(v) + delta),  t = iter + 1
    Parameters: ``momentum`` (b1), ``momentum2`` (b2, default 0.999), ``delta``
    (1e-8); b1 and b2 in [0, 1). History: m for every parameter, then v for
    every parameter.
    """

    history_sets = 2

    def check_update_param(self) -> None:
        _check_unit_interval(self, "momentum")
        _check_unit_interval(self, "momentum2")
        _check_delta(self)

    def compute_update_value(self, param_id: int, rate: float) -> None:
        ops = self.ops
        b1 = self.scalar(self.param.momentum)
        b2 = self.scalar(self.param.momentum2)
        t = self.iter + 1
        # NOTE: as Caffe, the powers are taken in double and the correction
        # rounded to the blob type once.
        correction = self.scalar(
            math.sqrt(1.0 - float(b2) ** t) / (1.0 - float(b1) ** t)
        )
        ops.adam_compute_update(
            ops.mutable_diff(self._params[param_id]),
            self.history[param_id],
            self.history[len(self._params) + param_id],
            self.local_rate(param_id, rate) * correction,
            b1,
            b2,
            self.scalar(self.param.delta),
            self._temp[param_id],
        )
