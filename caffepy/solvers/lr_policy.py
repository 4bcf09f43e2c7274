"""Learning-rate policies: Caffe's ``SGDSolver::GetLearningRate``, as one table.

With ``it`` the current iteration (the number of updates done so far):

    fixed      base_lr
    step       base_lr * gamma ^ floor(it / stepsize)
    exp        base_lr * gamma ^ it
    inv        base_lr * (1 + gamma * it) ^ (-power)
    multistep  base_lr * gamma ^ (number of stepvalues reached so far)
    poly       base_lr * (1 - it / max_iter) ^ power
    sigmoid    base_lr * 1 / (1 + exp(-gamma * (it - stepsize)))

``step`` and ``multistep`` keep a position, ``current_step`` (saved in the
solverstate): ``step`` recomputes it from ``it``; ``multistep`` advances it by at
most one stepvalue per call, exactly as Caffe does, so a run resumed from a
snapshot walks the same schedule.
"""

import itertools
import logging
import math

from caffepy.errors import SolverError, did_you_mean

log = logging.getLogger("caffepy")


def _fixed(p, it, step):
    return p.base_lr, step


def _step(p, it, step):
    step = it // p.stepsize
    return p.base_lr * p.gamma**step, step


def _exp(p, it, step):
    return p.base_lr * p.gamma**it, step


def _inv(p, it, step):
    return p.base_lr * (1.0 + p.gamma * it) ** (-p.power), step


def _multistep(p, it, step):
    if step < len(p.stepvalue) and it >= p.stepvalue[step]:
        step += 1
        log.info("MultiStep Status: Iteration %d, step = %d", it, step)
    return p.base_lr * p.gamma**step, step


def _poly(p, it, step):
    return p.base_lr * (1.0 - it / p.max_iter) ** p.power, step


def _sigmoid(p, it, step):
    return p.base_lr / (1.0 + math.exp(-p.gamma * (it - p.stepsize))), step


#: policy name -> f(solver_param, iter, current_step) -> (rate, current_step)
POLICIES = {
    "fixed": _fixed,
    "step": _step,
    "exp": _exp,
    "inv": _inv,
    "multistep": _multistep,
    "poly": _poly,
    "sigmoid": _sigmoid,
}

# Fields each policy reads besides base_lr; a missing one is an error where Caffe
# would abort (stepsize), a warning where Caffe silently uses 0.
_NEEDS = {
    "step": ("stepsize", "gamma"),
    "exp": ("gamma",),
    "inv": ("gamma", "power"),
    "multistep": ("gamma",),
    "poly": ("power", "max_iter"),
    "sigmoid": ("gamma", "stepsize"),
}


def check_lr_policy(param):
    """Validate the lr policy fields of a SolverParameter; raise SolverError.

    Refuses what Caffe aborts on (an unknown policy, a non-positive stepsize for
    ``step``/``sigmoid``, a negative gamma) and what would divide by zero
    (``poly`` without max_iter); warns about fields Caffe would read as 0.
    """
    policy = param.lr_policy
    if not policy:
        raise SolverError(
            "lr_policy is not set; expected one of " + ", ".join(sorted(POLICIES))
        )
    if policy not in POLICIES:
        raise SolverError(
            f"unknown lr_policy {policy!r}{did_you_mean(policy, POLICIES)}; "
            f"expected one of {', '.join(sorted(POLICIES))}"
        )
    needs = _NEEDS.get(policy, ())
    if "stepsize" in needs and param.stepsize <= 0:
        raise SolverError(
            f"lr_policy {policy!r} needs stepsize > 0; got stepsize: {param.stepsize}"
        )
    if policy == "poly" and param.max_iter <= 0:
        raise SolverError(
            f"lr_policy 'poly' needs max_iter > 0; got max_iter: {param.max_iter}"
        )
    if "gamma" in needs and param.gamma < 0:
        raise SolverError(
            f"lr_policy {policy!r} needs gamma >= 0; got gamma: {param.gamma}"
        )
    for field in needs:
        if field in ("stepsize", "max_iter"):
            continue
        if not param.HasField(field):
            log.warning(
                "lr_policy %r reads %s, which is not set (Caffe uses 0)", policy, field
            )
    if policy == "multistep":
        values = list(param.stepvalue)
        if not values:
            log.warning(
                "lr_policy 'multistep' without stepvalue: the rate stays base_lr"
            )
        elif any(b <= a for a, b in itertools.pairwise(values)):
            raise SolverError(
                f"lr_policy 'multistep' needs increasing stepvalue; got {values}"
            )


def learning_rate(param, it, current_step=0):
    """The rate Caffe uses for the update made at iteration ``it``.

    Args:
        param: the SolverParameter (``lr_policy``, ``base_lr``, ...).
        it: the current iteration (updates done so far).
        current_step: the policy position so far (``step``/``multistep``).

    Returns:
        (rate, current_step): the rate as a Python float and the new position.
    """
    fn = POLICIES.get(param.lr_policy)
    if fn is None:
        check_lr_policy(param)  # raises the error with the close names
    return fn(param, it, current_step)
