"""Data-parallel training over MPI: one process per rank, gradients averaged
before every update, records dealt round-robin, rank 0 alone logs, tests and
snapshots (Caffe's multi-GPU training, on CPUs and across machines).

``state`` holds the solver count and rank (no MPI); ``comm`` the communicators;
``reduce`` the gradient averaging on the host (whole net, or layer by layer
overlapping backward); ``nccl`` the same on GPUs with NCCL; ``launch`` rank
discovery, the start-up checks and the choice of reducer; ``watch`` the
watchdog process per rank that names a rank killed outright.
``mpiexec -n N caffepy train --solver S`` and ``caffepy train --gpu 0,1`` use
them through :mod:`caffepy.tools.train`.
"""

from caffepy.parallel.state import (
    multiprocess,
    root_solver,
    set_multiprocess,
    set_solver_count,
    set_solver_rank,
    solver_count,
    solver_rank,
)

__all__ = [
    "multiprocess",
    "root_solver",
    "set_multiprocess",
    "set_solver_count",
    "set_solver_rank",
    "solver_count",
    "solver_rank",
]
