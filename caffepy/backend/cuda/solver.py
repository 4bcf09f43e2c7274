"""The solver update rules on the device.

The separate passes are the CPU backend's own NumPy ufunc calls: NumPy hands
ufuncs on CuPy arrays to CuPy (``__array_ufunc__``/``__array_function__``), so
the same passes run on the GPU in the same order; under the simulator they are
NumPy's. The fused SGD step is a numba.cuda kernel.
"""

from __future__ import annotations

from typing import Any

from caffepy import syncedmem
from caffepy.backend.base import Array
from caffepy.backend.cpu.solver import SolverOps
from caffepy.backend.interface.solver import SolverInterface


class CudaSolverOps(SolverOps, SolverInterface):
    """Mixin of :class:`~caffepy.backend.cuda.CudaOps`: the update-rule ops."""

    def update_all_params(self, solver: Any, rate: float) -> bool:
        """Normalise and update every learnable parameter of ``solver`` in one
        launch (:mod:`caffepy.backend.cuda.packed`); False where the solver must
        take its per-parameter path (an update rule of its own, ...)."""
        from caffepy.backend.cuda import packed

        return packed.update_all(solver, rate)

    def sumsq(self, x: Array) -> float:
        flat = x.reshape(-1)
        total = self.xp.dot(flat, flat)
        syncedmem.count_copy("d2h", flat.dtype.itemsize)
        return float(total)

    def sgd_update(
        self, w: Array, g: Array, h: Array, decay: Any, rate: Any, momentum: Any
    ) -> None:
        from caffepy.backend.cuda.kernels import solver
        from caffepy.backend.cuda.kernels.launch import launch

        launch(
            solver.sgd_update,
            w.size,
            w.reshape(-1),
            g.reshape(-1),
            h.reshape(-1),
            decay,
            False,
            rate,
            momentum,
        )
