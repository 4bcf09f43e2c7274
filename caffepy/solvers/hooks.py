"""The hooks a :class:`~caffepy.solvers.solver.Solver` offers the CLI, pycaffe
and data parallelism: callbacks after each iteration and test, pycaffe's
two-function callbacks (Caffe's ``Solver::Callback``), calls after each layer's
backward (``layer_wise_reduce``), and actions requested from signal handlers.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any

from caffepy.errors import SolverError

_ACTIONS = ("stop", "snapshot")


class SolverHooks:
    """Mixin of :class:`~caffepy.solvers.solver.Solver`: who gets called when."""

    _callbacks: list[Callable]
    _pycaffe_callbacks: list[tuple[Callable, Callable]]
    _test_callbacks: list[Callable]
    _after_backward: list[Callable[[int], None]]
    _actions: deque[str]

    def _init_hooks(self) -> None:
        self._callbacks = []
        self._pycaffe_callbacks = []
        self._test_callbacks = []
        self._after_backward = []
        self._actions = deque()

    def add_callback(
        self, fn: Callable, on_gradients_ready: Callable | None = None
    ) -> None:
        """Call ``fn(iter, loss, lr)`` after each iteration.

        ``iter`` is the number of updates done (``solver.iter`` after the update),
        ``loss`` that iteration's loss (mean over iter_size), ``lr`` the rate used.
        pycaffe's two-function form ``add_callback(on_start, on_gradients_ready)``
        is also accepted: ``on_start()`` runs before the forward passes and
        ``on_gradients_ready()`` before the update; so is one object with those
        two methods (Caffe's ``Solver::Callback``, e.g. ``caffe.NCCL``).
        """
        if on_gradients_ready is None and hasattr(fn, "on_gradients_ready"):
            callback: Any = fn
            fn, on_gradients_ready = callback.on_start, callback.on_gradients_ready
        if on_gradients_ready is None:
            self._callbacks.append(fn)
        else:
            self._pycaffe_callbacks.append((fn, on_gradients_ready))

    def add_after_backward(self, fn: Callable[[int], None]) -> None:
        """Call ``fn(layer_index)`` as soon as each train-net layer's backward is
        done, in the last of the ``iter_size`` passes (Caffe's
        ``Net::add_after_backward``, which ``layer_wise_reduce`` uses to start a
        layer's gradient reduction while the layers below compute theirs)."""
        self._after_backward.append(fn)

    def add_test_callback(self, fn: Callable) -> None:
        """Call ``fn(iter, test_net_id, results)`` after each test, ``results`` an
        ordered list of (output name, mean value)."""
        self._test_callbacks.append(fn)

    def request_action(self, action: str) -> None:
        """Ask for ``"stop"`` or ``"snapshot"`` at the next iteration boundary
        (safe to call from a signal handler)."""
        if action not in _ACTIONS:
            raise SolverError(
                f"unknown solver action {action!r}; expected one of "
                f"{', '.join(_ACTIONS)}"
            )
        self._actions.append(action)

    def _take_actions(self) -> set[str]:
        """The set of actions requested since the last call."""
        got = set()
        while self._actions:
            got.add(self._actions.popleft())
        return got
