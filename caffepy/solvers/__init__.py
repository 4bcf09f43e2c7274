"""Solvers: Caffe's training loop and its six update rules.

    solver = caffepy.get_solver("solver.prototxt")   # the class its `type` names
    solver.net.blobs["data"].data[...] = batch
    solver.step(1); solver.snapshot(); solver.restore("x_iter_3.solverstate")

Layout, as Caffe's: :mod:`~caffepy.solvers.solver` (the loop, test, display),
:mod:`~caffepy.solvers.sgd` (the update rules), :mod:`~caffepy.solvers.snapshot`
(snapshot and restore) with :mod:`~caffepy.solvers.state` (the files),
:mod:`~caffepy.solvers.display` (the log lines),
:mod:`~caffepy.solvers.lr_policy`, :mod:`~caffepy.solvers.memory`,
:mod:`~caffepy.solvers.divergence` and :mod:`~caffepy.solvers.registry`
(``register_solver``, ``get_solver``).
"""

from caffepy.solvers.registry import (
    get_solver,
    register_solver,
    solver_class,
    solver_type_list,
)
from caffepy.solvers.sgd import (
    AdaDeltaSolver,
    AdaGradSolver,
    AdamSolver,
    NesterovSolver,
    RMSPropSolver,
    SGDSolver,
)
from caffepy.solvers.solver import Solver, read_solver_param

__all__ = [
    "AdaDeltaSolver",
    "AdaGradSolver",
    "AdamSolver",
    "NesterovSolver",
    "RMSPropSolver",
    "SGDSolver",
    "Solver",
    "get_solver",
    "read_solver_param",
    "register_solver",
    "solver_class",
    "solver_type_list",
]
