"""Solvers: Caffe's training loop and its six update rules.

    solver = caffepy.get_solver("solver.prototxt")   # the class its `type` names
    solver.net.blobs["data"].data[...] = batch
    solver.step(1); solver.snapshot(); solver.restore("x_iter_3.solverstate")
"""

from caffepy.solvers.base import Solver
from caffepy.solvers.sgd import (
    AdaDeltaSolver,
    AdaGradSolver,
    AdamSolver,
    NesterovSolver,
    RMSPropSolver,
    SGDSolver,
)


def get_solver(param_or_path, **kwargs):
    """Build the solver a solver prototxt (or SolverParameter) asks for with
    ``type`` (or the legacy ``solver_type``); pycaffe's ``caffe.get_solver``.

    Raises:
        SolverError: an unknown type (naming the close ones), or a bad parameter.
    """
    return Solver(param_or_path, **kwargs)


__all__ = [
    "AdaDeltaSolver", "AdaGradSolver", "AdamSolver", "NesterovSolver",
    "RMSPropSolver", "SGDSolver", "Solver", "get_solver",
]
