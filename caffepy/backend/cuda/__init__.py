"""The CUDA backend: device memory from CuPy (NumPy under numba's CUDA
simulator), numba.cuda kernels (:mod:`caffepy.backend.cuda.kernels`) and cuBLAS
GEMMs through ``xp.matmul`` (libcublas directly, :mod:`.cublas`, inside a CUDA
graph, :mod:`.graph`).

Nothing here is imported in CPU mode. :func:`check_available` says in one line
what is missing when GPU mode cannot run.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from caffepy import syncedmem
from caffepy.backend.base import Array, Ops
from caffepy.backend.cuda import graph, memory
from caffepy.backend.cuda.common import CudaCommonOps
from caffepy.backend.cuda.loss import CudaLossOps
from caffepy.backend.cuda.neuron import CudaNeuronOps
from caffepy.backend.cuda.normalization import CudaNormalizationOps
from caffepy.backend.cuda.solver import CudaSolverOps
from caffepy.backend.cuda.vision import CudaVisionOps
from caffepy.errors import GpuUnavailableError

__all__ = ["CudaOps", "GpuUnavailableError", "check_available", "device_query"]

_PACKAGES = "GPU mode needs the GPU packages: pip install 'caffepy[gpu]'"


def _cuda_module() -> Any:
    try:
        cuda = memory.import_numba_cuda()
        if not memory.simulated():
            from caffepy.backend.cuda.cublas import tf32_enabled

            # NOTE: CuPy reads CUPY_TF32 when it is imported; caffepy's opt-in
            # (CAFFEPY_TF32=1) turns on TF32 for CuPy's GEMMs and libcublas's.
            if tf32_enabled():
                os.environ.setdefault("CUPY_TF32", "1")
            import cupy  # noqa: F401
    except ImportError as exc:
        raise GpuUnavailableError(f"{_PACKAGES} ({exc})") from None
    return cuda


def check_available(device_id: int = 0) -> None:
    """Raise unless GPU mode can run on ``device_id``.

    Raises:
        GpuUnavailableError: one line: the packages are missing, there is no CUDA
            device, or ``device_id`` does not exist.
    """
    cuda = _cuda_module()
    try:
        available = bool(cuda.is_available())
        count = len(cuda.gpus) if available else 0
    except Exception as exc:  # a broken driver reads as "no device"
        raise GpuUnavailableError(
            f"no CUDA device (numba.cuda could not query the driver: {exc})"
        ) from None
    if not available or count == 0:
        raise GpuUnavailableError("no CUDA device (numba.cuda found none)")
    if not 0 <= int(device_id) < count:
        plural = "device" if count == 1 else "devices"
        raise GpuUnavailableError(
            f"device {device_id} does not exist ({count} CUDA {plural})"
        )


def device_query(device_id: int = 0) -> str:
    """Caffe's ``caffe device_query``: the device's properties, one per line."""
    check_available(device_id)
    if memory.simulated():
        cuda = memory.import_numba_cuda()
        dev = cuda.gpus[device_id]
        major, minor = dev.compute_capability
        free, total = dev.get_memory_info()
        lines = [
            ("Device id", device_id),
            ("Name", "numba CUDA simulator"),
            ("Major revision number", major),
            ("Minor revision number", minor),
            ("Total global memory", total),
            ("Free global memory", free),
        ]
    else:
        import cupy

        p = cupy.cuda.runtime.getDeviceProperties(device_id)
        name = p["name"]
        lines = [
            ("Device id", device_id),
            ("Name", name.decode() if isinstance(name, bytes) else name),
            ("Major revision number", p["major"]),
            ("Minor revision number", p["minor"]),
            ("Total global memory", p["totalGlobalMem"]),
            ("Total shared memory per block", p["sharedMemPerBlock"]),
            ("Total registers per block", p["regsPerBlock"]),
            ("Warp size", p["warpSize"]),
            ("Maximum threads per block", p["maxThreadsPerBlock"]),
            ("Maximum dimension of block", tuple(p["maxThreadsDim"])),
            ("Maximum dimension of grid", tuple(p["maxGridSize"])),
            ("Clock rate", p["clockRate"]),
            ("Total constant memory", p["totalConstMem"]),
            ("Number of multiprocessors", p["multiProcessorCount"]),
            (
                "Kernel execution timeout",
                "Yes" if p["kernelExecTimeoutEnabled"] else "No",
            ),
        ]
    return "\n".join(f"{k}: {v}" for k, v in lines)


class CudaOps(
    CudaVisionOps,
    CudaSolverOps,
    CudaNeuronOps,
    CudaNormalizationOps,
    CudaCommonOps,
    CudaLossOps,
    Ops,
):
    """Ops on device memory: CuPy arrays on a GPU, NumPy arrays under the simulator.

    Blob arrays are the blob's device views (``gpu_data()`` and friends), so a
    layer's work stays on the device; the host is touched only through the
    blobs' host accessors.

    Args:
        device_id: the CUDA device (Caffe's ``--gpu``).
    """

    name = "cuda"

    def __init__(self, device_id: int = 0):
        check_available(device_id)
        memory.use_device(device_id)
        self.device_id = int(device_id)
        self.xp = memory.xp()
        self._supported: dict[type, bool] = {}

    # -- memory and blob access -------------------------------------------------
    def empty(self, shape: tuple[int, ...], dtype: Any = np.float32) -> Array:
        return self.xp.empty(shape, dtype)

    def zeros(self, shape: tuple[int, ...], dtype: Any = np.float32) -> Array:
        return self.xp.zeros(shape, dtype)

    def copy(self, src: Array, dst: Array) -> None:
        dst[...] = src

    def to_host(self, arr: Array) -> np.ndarray:
        out = np.empty(arr.shape, arr.dtype)
        memory.to_host_into(arr, out)
        syncedmem.count_copy("d2h", out.nbytes)
        return out

    def from_host(self, arr: np.ndarray) -> Array:
        syncedmem.count_copy("h2d", arr.nbytes)
        return memory.from_host(arr)

    def data(self, blob: Any) -> Array:
        return blob.gpu_data()

    def mutable_data(self, blob: Any) -> Array:
        return blob.mutable_gpu_data()

    def diff(self, blob: Any) -> Array:
        return blob.gpu_diff()

    def mutable_diff(self, blob: Any) -> Array:
        return blob.mutable_gpu_diff()

    def asum(self, arr: Array) -> float:
        # NOTE: the sum runs on the device; only the scalar comes back. While a
        # CUDA graph is captured it stays there (the graph's loss output).
        total = arr.sum(dtype=arr.dtype)
        if graph.capturing():
            return total
        syncedmem.count_copy("d2h", arr.dtype.itemsize)
        return float(total)

    def synchronize(self) -> None:
        memory.synchronize()

    def iteration_graph(self, solver: Any) -> tuple[float, float] | None:
        """Run one training iteration of ``solver`` from a CUDA graph (captured
        on first use, replayed after): (loss, rate), or None when it must run
        eagerly (see :func:`caffepy.backend.cuda.graph.blockers`)."""
        return graph.run_iteration(solver)

    def supports(self, layer: Any) -> bool:
        """Whether ``layer`` runs natively here (else it falls back to the CPU).

        A layer lists the ops it calls in a class attribute ``uses_ops`` (names
        of :class:`~caffepy.backend.base.Ops` methods); it runs here when every
        one of them is implemented by this backend. A layer without the list
        falls back.
        """
        cls = type(layer)
        known = self._supported.get(cls)
        if known is None:
            names = getattr(cls, "uses_ops", None) or ()
            known = bool(names) and all(
                getattr(type(self), n, None) is not None
                and getattr(type(self), n) is not getattr(Ops, n, None)
                for n in names
            )
            self._supported[cls] = known
        return known
