"""Gradient reduction on GPUs with NCCL (through CuPy's ``cupy.cuda.nccl``).

One rank per GPU. The gradients never leave the devices: each parameter's diff
is summed in place across the ranks by ``ncclAllReduce`` on its device buffer
(all of a reduction's calls in one NCCL group), on the stream the net computes
on, then scaled by 1/N there, as Caffe's ``NCCL::on_gradients_ready`` does.
With ``layer_wise_reduce`` a layer's reductions are enqueued as soon as its
backward is done (Caffe's ``NCCL::run(layer)``); NCCL runs them while the
layers below compute, and the update, enqueued after them on the same stream,
waits for them without a host synchronisation.

The ranks agree on NCCL's unique id through MPI (``mpiexec``, or the re-exec of
``caffepy train --gpu 0,1``), or through pycaffe's ``caffe.NCCL.new_uid()``
passed to each process. The small stop/snapshot flags travel over MPI (host).

Nothing here imports CuPy until a reducer is made for a real GPU; the tests
drive :class:`NcclReducer` with a stand-in communicator on host arrays.
"""

from __future__ import annotations

import time
from types import SimpleNamespace
from typing import Any

import numpy as np

from caffepy.errors import ParallelError
from caffepy.parallel.comm import Communicator
from caffepy.parallel.reduce import (
    _ACTIONS,
    Reducer,
    _get_actions,
    _put_actions,
    ready_layers,
)

#: NCCL's enum values (nccl.h), for stand-ins when CuPy is absent.
CONSTANTS = SimpleNamespace(NCCL_FLOAT32=7, NCCL_FLOAT64=8, NCCL_SUM=0)

NO_NCCL = (
    "NCCL needs CuPy's NCCL bindings and a CUDA GPU (pip install 'caffepy[gpu]' "
    "on a machine with NVIDIA GPUs)"
)


def nccl_module() -> Any | None:
    """``cupy.cuda.nccl`` when it imports and NCCL is there, else ``None``."""
    try:
        from cupy.cuda import nccl
    except Exception:  # noqa: BLE001 - no CuPy, or CuPy without NCCL/driver
        return None
    if not getattr(nccl, "available", True):
        return None
    return nccl


def has_nccl() -> bool:
    """Whether NCCL can reduce here: CuPy's NCCL imports and a GPU exists (never
    under numba's CUDA simulator)."""
    from caffepy.backend.cuda import memory

    if memory.simulated() or nccl_module() is None:
        return False
    try:
        import cupy

        return cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:  # noqa: BLE001 - no driver, no device
        return False


def new_uid() -> bytes:
    """A fresh NCCL unique id (128 bytes) for the ranks to share.

    Raises:
        ParallelError: no NCCL here (see :func:`has_nccl`).
    """
    if not has_nccl():
        raise ParallelError(f"cannot make an NCCL id: {NO_NCCL}")
    uid = nccl_module().get_unique_id()
    return bytes(int(c) & 0xFF for c in uid)


def open_comm(size: int, uid: bytes, rank: int) -> Any:
    """This rank's NCCL communicator of ``size`` ranks over ``uid``, on the
    current device.

    Raises:
        ParallelError: no NCCL here, or an id that is not 128 bytes.
    """
    nccl = nccl_module()
    if nccl is None or not has_nccl():
        raise ParallelError(f"cannot start NCCL: {NO_NCCL}")
    uid = bytes(uid)
    if len(uid) != 128:
        raise ParallelError(
            f"an NCCL id is 128 bytes (caffe.NCCL.new_uid()), got {len(uid)}"
        )
    signed = tuple(b - 256 if b > 127 else b for b in uid)
    return nccl.NcclCommunicator(int(size), signed, int(rank))


def device_pointer(arr: Any) -> int:
    """The address of an array's first element: a device pointer for a CUDA
    array, the host address of a NumPy array (the CPU stand-ins' case)."""
    iface = getattr(arr, "__cuda_array_interface__", None)
    if iface is not None:
        return int(iface["data"][0])
    return int(np.asarray(arr).ctypes.data)


def current_stream() -> int:
    """The stream the nets compute on (0, the legacy default, without CuPy)."""
    try:
        import cupy

        return int(cupy.cuda.get_current_stream().ptr)
    except Exception:  # noqa: BLE001 - no CuPy: the simulator or a stand-in
        return 0


class NcclReducer(Reducer):
    """Averages a solver's gradients over the ranks with NCCL, on the devices.

    Args:
        comm: the NCCL communicator (CuPy's ``NcclCommunicator``, or anything
            with its ``allReduce(send, recv, count, dtype, op, stream)``,
            ``bcast(buf, count, dtype, root, stream)`` and ``size()``).
        net: the solver's train net.
        dtype: the nets' float type.
        host: the MPI ranks, to agree on stop/snapshot (None: no agreement, as
            pycaffe's NCCL).
        layer_wise: enqueue each layer's reductions as its backward ends.
        lib: the module with ``groupStart``/``groupEnd`` and the NCCL constants
            (default: ``cupy.cuda.nccl``, or :data:`CONSTANTS` without it).
        stream: the stream to enqueue on (default: :func:`current_stream`).
    """

    def __init__(
        self,
        comm: Any,
        net: Any,
        dtype: Any,
        *,
        host: Communicator | None = None,
        layer_wise: bool = False,
        lib: Any = None,
        stream: int | None = None,
    ) -> None:
        self.comm = comm
        self.net = net
        self.dtype = np.dtype(dtype)
        self.host = host
        self.layer_wise = bool(layer_wise)
        self.lib = lib if lib is not None else (nccl_module() or CONSTANTS)
        self.stream = current_stream() if stream is None else int(stream)
        self.size = int(comm.size())
        self.nccl_dtype = (
            self.lib.NCCL_FLOAT64 if self.dtype == np.float64 else self.lib.NCCL_FLOAT32
        )
        self.params = list(net.learnable_params)
        ready = ready_layers(net)
        self.by_layer: dict[int, list[int]] = {}
        for i, layer in enumerate(ready):
            self.by_layer.setdefault(layer, []).append(i)
        self.flags = np.zeros(len(_ACTIONS), np.float64)
        self.reductions = 0
        self.seconds = 0.0
        self._done: set[int] = set()

    @staticmethod
    def _ops() -> Any:
        from caffepy.backend.mode import ops

        return ops()

    def _allreduce(self, indices: list[int]) -> None:
        """Enqueue the in-place sum of these parameters' diffs (one group)."""
        if not indices:
            return
        ops = self._ops()
        group = hasattr(self.lib, "groupStart")
        if group:
            self.lib.groupStart()
        try:
            for i in indices:
                diff = ops.mutable_diff(self.params[i])
                ptr = device_pointer(diff)
                self.comm.allReduce(
                    ptr,
                    ptr,
                    int(self.params[i].count),
                    self.nccl_dtype,
                    self.lib.NCCL_SUM,
                    self.stream,
                )
        finally:
            if group:
                self.lib.groupEnd()
        self._done.update(indices)

    def on_layer(self, li: int) -> None:
        """Layer ``li``'s backward is done: enqueue its parameters' reductions."""
        t0 = time.perf_counter()
        self._allreduce(self.by_layer.get(li, []))
        self.seconds += time.perf_counter() - t0

    def reduce(self, actions: set[str] | frozenset[str] = frozenset()) -> set[str]:
        """Sum what is not summed yet, scale every diff by 1/N on its device, and
        agree on the actions over ``host``; return the agreed actions."""
        t0 = time.perf_counter()
        self._allreduce([i for i in range(len(self.params)) if i not in self._done])
        self._done = set()
        ops = self._ops()
        # NOTE: scaled in the nets' float type, on the device, after the sums
        # (same stream: no host synchronisation).
        scale = self.dtype.type(1.0) / self.dtype.type(self.size)
        for blob in self.params:
            diff = ops.mutable_diff(blob)
            diff *= scale
        agreed = set(actions)
        if self.host is not None and self.host.size > 1:
            _put_actions(self.flags, 0, actions)
            self.host.allreduce_sum(self.flags, "the agreement on stop/snapshot")
            agreed = _get_actions(self.flags, 0)
        self.reductions += 1
        self.seconds += time.perf_counter() - t0
        return agreed

    def bcast_params(self) -> None:
        """Give every rank rank 0's weights, device to device."""
        ops = self._ops()
        for blob in self.params:
            data = ops.mutable_data(blob)
            self.comm.bcast(
                device_pointer(data),
                int(blob.count),
                self.nccl_dtype,
                0,
                self.stream,
            )

    def attach(self, solver: Any) -> None:
        """Reduce before every update (layer by layer when ``layer_wise``)."""
        rank = self.host.rank if self.host is not None else 0

        def on_start() -> None:
            self._done = set()

        def on_gradients_ready() -> None:
            self._apply(solver, self.reduce(solver._take_actions()), rank)

        if self.layer_wise:
            solver.add_after_backward(self.on_layer)
        solver.add_callback(on_start, on_gradients_ready)
