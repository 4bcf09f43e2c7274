"""The process-wide solver count and rank (Caffe's ``Caffe::solver_count()``,
``Caffe::solver_rank()`` and ``Caffe::multiprocess()``).

Plain values, no MPI: the data layers read them to deal records round-robin
(rank r of N keeps record k when ``k % N == r``), and pycaffe's functions of the
same names read and set them. :func:`caffepy.parallel.launch.init_parallel`
sets them from the MPI launch; until something sets them, they are what the MPI
launcher's environment says (1 and 0 outside ``mpiexec``), so a pycaffe script
started by ``mpiexec -n N`` sees the MPI world without importing MPI.
"""

from __future__ import annotations

from caffepy.errors import ParallelError

_state: dict = {"count": None, "rank": None, "multiprocess": False}


def _from_launcher() -> None:
    from caffepy.parallel.launch import env_rank_size

    rank, count = env_rank_size()
    if _state["count"] is None:
        _state["count"] = count
    if _state["rank"] is None:
        _state["rank"] = rank


def solver_count() -> int:
    """How many solvers (ranks) train together; 1 for a single process."""
    if _state["count"] is None:
        _from_launcher()
    return _state["count"]


def solver_rank() -> int:
    """This solver's rank among :func:`solver_count` (0 alone)."""
    if _state["rank"] is None:
        _from_launcher()
    return _state["rank"]


def root_solver() -> bool:
    """Whether this is rank 0, the one that logs, tests and snapshots."""
    return solver_rank() == 0


def multiprocess() -> bool:
    """Whether solvers run one per process (pycaffe's ``set_multiprocess``)."""
    return bool(_state["multiprocess"])


def set_solver_count(count: int) -> None:
    """Set the number of solvers training together.

    Raises:
        ParallelError: a count below 1.
    """
    count = int(count)
    if count < 1:
        raise ParallelError(f"solver_count must be 1 or more, got {count}")
    _state["count"] = count


def set_solver_rank(rank: int) -> None:
    """Set this solver's rank (0 .. solver_count - 1).

    Raises:
        ParallelError: a negative rank.
    """
    rank = int(rank)
    if rank < 0:
        raise ParallelError(f"solver_rank must be 0 or more, got {rank}")
    _state["rank"] = rank


def set_multiprocess(multiprocess: bool) -> None:
    """Say whether solvers run one per process (pycaffe's flag)."""
    _state["multiprocess"] = bool(multiprocess)
