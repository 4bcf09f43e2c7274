"""The solver registry and factory (Caffe's ``REGISTER_SOLVER_CLASS`` and
``SolverRegistry::CreateSolver``), keyed by the ``type`` string of a solver
prototxt."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from caffepy.errors import SolverError, did_you_mean

if TYPE_CHECKING:
    from caffepy.solvers.solver import Solver

_SOLVERS: dict[str, type[Solver]] = {}

S = TypeVar("S", bound="type[Solver]")


def register_solver(type_name: str) -> Callable[[S], S]:
    """Class decorator: make a Solver subclass the one for ``type: "<type_name>"``."""

    def wrap(cls: S) -> S:
        if type_name in _SOLVERS and _SOLVERS[type_name] is not cls:
            raise ValueError(f"solver type {type_name!r} registered twice")
        _SOLVERS[type_name] = cls
        cls.type_name = type_name
        return cls

    return wrap


def _load_builtin_solvers() -> None:
    # Importing the update rules registers them.
    import caffepy.solvers.sgd  # noqa: F401


def solver_class(type_name: str) -> type[Solver]:
    """The Solver subclass registered for ``type_name``.

    Raises:
        SolverError: an unknown type, naming the close ones and the known ones.
    """
    _load_builtin_solvers()
    cls = _SOLVERS.get(type_name)
    if cls is None:
        raise SolverError(
            f"unknown solver type {type_name!r}{did_you_mean(type_name, _SOLVERS)}; "
            f"known types: {', '.join(sorted(_SOLVERS))}"
        )
    return cls


def solver_type_list() -> list[str]:
    """Sorted names of the registered solver types."""
    _load_builtin_solvers()
    return sorted(_SOLVERS)


def get_solver(param_or_path: Any, **kwargs: Any) -> Solver:
    """Build the solver a solver prototxt (or SolverParameter) asks for with
    ``type`` (or the legacy ``solver_type``); pycaffe's ``caffe.get_solver``.

    Args:
        param_or_path: a solver prototxt path or a ``caffe_pb2.SolverParameter``.
        **kwargs: passed to the solver class (``dtype``, ``divergence_check``,
            ``memory_check``).

    Raises:
        SolverError: an unknown type (naming the close ones), or a bad parameter.
    """
    from caffepy.solvers.solver import read_solver_param

    param, path = read_solver_param(param_or_path)
    source = path if path is not None else kwargs.pop("source", None)
    return solver_class(param.type)(param, source=source, **kwargs)
