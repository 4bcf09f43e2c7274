"""The numbers of a solver definition, checked when the solver is built.

Caffe CHECKs a few of them when it builds a solver; caffepy refuses every value
that cannot train (NaN, infinite, negative or out of its range) before the nets
are built, in one line naming the field, the value and, when the solver came from
a file, that file and the field's line.
"""

from __future__ import annotations

import math
import os
from typing import Any

from caffepy.errors import SolverError


def _where(solver: Any, field: str) -> str:
    """``"solver.prototxt:7: "`` for ``field`` of ``solver``'s file, else ""."""
    from caffepy.io.prototxt import field_location

    source = getattr(solver, "source", None)
    if not source or not os.path.isfile(source):
        return ""
    try:
        with open(source, encoding="utf-8") as f:
            text = f.read()
    except (OSError, UnicodeDecodeError):
        return f"{source}: "
    line = field_location(text, field)
    return f"{source}:{line}: " if line else f"{source}: "


def field_error(solver: Any, field: str, message: str) -> SolverError:
    """A SolverError for ``field``, prefixed with its file:line when known."""
    return SolverError(f"{_where(solver, field)}{message}")


def _describe(value: float) -> str:
    return f"{value:g}"


def check_range(
    solver: Any,
    field: str,
    low: float | None = None,
    high: float | None = None,
    *,
    low_open: bool = False,
    high_open: bool = False,
    why: str = "",
) -> None:
    """Refuse a solver field that is not finite or lies outside [low, high]
    (an end is excluded when ``low_open``/``high_open``; None: unbounded).

    Raises:
        SolverError: naming the field, its value and the range expected.
    """
    value = float(getattr(solver.param, field))
    ok = math.isfinite(value)
    if ok and low is not None:
        ok = value > low if low_open else value >= low
    if ok and high is not None:
        ok = value < high if high_open else value <= high
    if ok:
        return
    if low is not None and high is not None:
        expected = f"lie in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
    elif low is not None:
        expected = f"be {'>' if low_open else '>='} {low:g}"
    elif high is not None:
        expected = f"be {'<' if high_open else '<='} {high:g}"
    else:
        expected = "be finite"
    kind = getattr(solver, "type_name", None) or "the"
    raise field_error(
        solver,
        field,
        f"{kind} solver: {field} must {expected}; got {_describe(value)}{why}",
    )


def check_solver_numbers(solver: Any) -> None:
    """Check the fields every update rule reads (base_lr, weight_decay, the lr
    policy's gamma and power, clip_gradients, test_iter).

    Raises:
        SolverError: the first field out of range, with the file's line.
    """
    p = solver.param
    check_range(solver, "base_lr", 0)
    check_range(solver, "weight_decay", 0)
    if p.HasField("gamma"):
        check_range(solver, "gamma", why=" (the lr policy's factor)")
    if p.HasField("power"):
        check_range(solver, "power", why=" (the lr policy's exponent)")
    clip = float(p.clip_gradients)
    if math.isnan(clip) or clip == math.inf:
        raise field_error(
            solver,
            "clip_gradients",
            f"clip_gradients must be a finite norm (or negative to turn clipping "
            f"off); got {_describe(clip)}",
        )
    for i, n in enumerate(p.test_iter):
        if n < 1:
            raise field_error(
                solver,
                "test_iter",
                f"test_iter must be >= 1 (batches per test); got test_iter: {n} "
                f"for test net {i}",
            )
