"""The Solver surface only pycaffe has, as a mixin :class:`caffepy.Solver` inherits.

Nothing here imports :mod:`caffepy.solvers` at import time: the Solver imports
this module.
"""

from __future__ import annotations

from typing import Any


class PycaffeSolverMixin:
    """``solver.lr``: the learning rate of the next update, read without moving
    the lr policy's position (``current_step``)."""

    # Provided by Solver.
    param: Any
    iter: int
    current_step: int

    @property
    def lr(self) -> float:
        """The rate the next update will use (``base_lr`` under the lr policy at
        iteration ``iter``); reading it changes nothing."""
        from caffepy.solvers.lr_policy import learning_rate

        rate, _ = learning_rate(self.param, self.iter, self.current_step)
        return float(rate)
