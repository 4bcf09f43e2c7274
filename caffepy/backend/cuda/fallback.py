"""One op on the host for the rare geometries the device kernels do not cover
(N-d convolution, N-d pooling): Caffe's GPU code has the same gaps and its
layers fall back to ``Forward_cpu``; here only the op does, with counted copies."""

from __future__ import annotations

from typing import Any

import numpy as np

from caffepy.backend.base import Workspace


def on_host(ops: Any, name: str, *args: Any) -> None:
    """Run the CPU backend's op ``name`` on host copies of the device arrays in
    ``args`` and copy every array back (outputs and accumulated gradients).

    Args:
        ops: the device backend (its ``to_host``/``copy`` count the copies).
        name: an :class:`~caffepy.backend.base.Ops` method name.
        *args: the op's arguments; a :class:`Workspace` is replaced by a host
            workspace kept in its ``state``.
    """
    from caffepy.backend.mode import cpu_ops

    cpu = cpu_ops()
    host: dict[int, np.ndarray] = {}
    pairs: list[tuple[Any, np.ndarray]] = []
    call: list[Any] = []
    for a in args:
        if isinstance(a, Workspace):
            hw = a.state.get("host_ws")
            if hw is None:
                hw = a.state["host_ws"] = cpu.workspace()
            call.append(hw)
        elif isinstance(a, ops.xp.ndarray):
            h = host.get(id(a))
            if h is None:
                h = host[id(a)] = np.ascontiguousarray(ops.to_host(a))
                pairs.append((a, h))
            call.append(h)
        else:
            call.append(a)
    getattr(cpu, name)(*call)
    for dev, h in pairs:
        ops.copy(ops.from_host(h), dev)
