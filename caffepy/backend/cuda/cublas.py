"""GEMMs through libcublas called directly (ctypes), for CUDA graph capture.

CuPy refuses every cuBLAS call while a stream is being captured ("calling cuBLAS
API during stream capture is currently unsupported"); libcublas itself captures
and replays correctly when it has its own handle, its own workspace
(``cublasSetWorkspace_v2``) and the capture stream (``cublasSetStream_v2``).

The arrays are row-major NumPy-style views (CuPy); cuBLAS is column-major. A
row-major (m, n) result C = A @ B is, read column-major, C^T = B^T @ A^T, so
cuBLAS is called with the operands swapped: its "A" is our B and its "B" our A,
and a row-major operand is, read column-major, already its transpose (op N)
while a column-major one (a ``.T`` / ``swapaxes`` view) needs op T.
:func:`plan_matmul` does that mapping for broadcast, batched ``matmul``
shapes and is pure (tested on the CPU against NumPy with a column-major
reference GEMM); :func:`matmul` runs a plan with cuBLAS.

TF32 is off (``CUBLAS_DEFAULT_MATH``: exact fp32) unless ``CAFFEPY_TF32=1``.
"""

from __future__ import annotations

import ctypes
import os
from dataclasses import dataclass
from typing import Any

import numpy as np

OP_N = 0
OP_T = 1
_CUBLAS_DEFAULT_MATH = 0
_CUBLAS_TF32_TENSOR_OP_MATH = 3
#: Workspace given to cuBLAS (it must not allocate during capture).
WORKSPACE_BYTES = 32 << 20


class CublasError(RuntimeError):
    """A libcublas call returned an error status, or the library is missing."""


@dataclass(frozen=True)
class GemmCall:
    """One cublas<t>gemmStridedBatched call, in cuBLAS's column-major terms.

    Offsets and strides are in elements from each array's first element; ``x``
    is cuBLAS's A (our B), ``y`` its B (our A), ``c`` the output.
    """

    trans_x: int
    trans_y: int
    m: int
    n: int
    k: int
    x_off: int
    ldx: int
    stride_x: int
    y_off: int
    ldy: int
    stride_y: int
    c_off: int
    ldc: int
    stride_c: int
    batch: int


def _layout(rows: int, cols: int, rs: int, cs: int, what: str) -> tuple[bool, int]:
    """(row_major, leading dimension) of a (rows, cols) view with element strides."""
    if cs == 1 and (rows <= 1 or rs >= cols):
        return True, max(rs if rows > 1 else cols, cols, 1)
    if rs == 1 and (cols <= 1 or cs >= rows):
        return False, max(cs if cols > 1 else rows, rows, 1)
    raise ValueError(
        f"cublas matmul: {what} of shape ({rows}, {cols}) with element strides "
        f"({rs}, {cs}) is neither row- nor column-major; copy it first"
    )


def _lead_strides(shape, strides, lead):
    """Strides of an operand over the broadcast leading shape (0 where broadcast)."""
    nl, own = len(lead), len(shape) - 2
    out = [0] * nl
    for i in range(own):
        j = nl - own + i
        out[j] = 0 if shape[i] == 1 and lead[j] != 1 else strides[i]
    return out


def plan_matmul(
    a_shape: tuple[int, ...],
    a_strides: tuple[int, ...],
    b_shape: tuple[int, ...],
    b_strides: tuple[int, ...],
    c_shape: tuple[int, ...],
    c_strides: tuple[int, ...],
) -> list[GemmCall]:
    """The cuBLAS calls computing ``c = a @ b`` (``numpy.matmul`` semantics).

    Args:
        a_shape, b_shape, c_shape: shapes, at least 2-D; the leading dims of a
            and b broadcast to c's.
        a_strides, b_strides, c_strides: strides in elements (not bytes).

    Returns:
        One :class:`GemmCall` per combination of the leading indices other than
        the batched axis (the largest leading one): one call unless a and b
        broadcast over two leading axes (grouped convolution: one per group).

    Raises:
        ValueError: shapes that do not multiply, a non-BLAS view, or c not
            row-major.
    """
    m, k = a_shape[-2:]
    k2, n = b_shape[-2:]
    lead = tuple(c_shape[:-2])
    if k2 != k or tuple(c_shape[-2:]) != (m, n):
        raise ValueError(
            f"cublas matmul: {a_shape} @ {b_shape} -> {c_shape} do not multiply"
        )
    if np.broadcast_shapes(tuple(a_shape[:-2]), tuple(b_shape[:-2]), lead) != lead:
        raise ValueError(
            f"cublas matmul: leading dims of {a_shape} and {b_shape} do not "
            f"broadcast to {c_shape}"
        )
    a_rm, lda = _layout(m, k, a_strides[-2], a_strides[-1], "a")
    b_rm, ldb = _layout(k, n, b_strides[-2], b_strides[-1], "b")
    c_rm, ldc = _layout(m, n, c_strides[-2], c_strides[-1], "c")
    if not c_rm:
        raise ValueError("cublas matmul: the output must be row-major")
    sa = _lead_strides(a_shape, a_strides, lead)
    sb = _lead_strides(b_shape, b_strides, lead)
    sc = _lead_strides(c_shape, c_strides, lead)
    if lead:
        ax = int(np.argmax(lead))
        batch = lead[ax]
        rest = [range(d) if i != ax else range(1) for i, d in enumerate(lead)]
    else:
        ax, batch, rest = None, 1, []
    calls = []
    for idx in np.ndindex(*[len(r) for r in rest]) if rest else [()]:

        def off(strides, idx=idx):
            return sum(i * s for i, s in zip(idx, strides))

        calls.append(
            GemmCall(
                trans_x=OP_N if b_rm else OP_T,
                trans_y=OP_N if a_rm else OP_T,
                m=n,
                n=m,
                k=k,
                x_off=off(sb),
                ldx=ldb,
                stride_x=sb[ax] if ax is not None else 0,
                y_off=off(sa),
                ldy=lda,
                stride_y=sa[ax] if ax is not None else 0,
                c_off=off(sc),
                ldc=ldc,
                stride_c=sc[ax] if ax is not None else 0,
                batch=batch,
            )
        )
    return calls


def reference_gemm(call: GemmCall, x: np.ndarray, y: np.ndarray, c: np.ndarray):
    """Run one :class:`GemmCall` with NumPy on flat arrays, reading them as cuBLAS
    does (column-major, leading dimensions, batch strides): the oracle of the
    mapping tests. ``c`` is written (beta = 0)."""
    for b in range(call.batch):

        def mat(buf, off, ld, rows, cols, trans):
            # column-major (rows x cols) with leading dimension ld, then op
            r, cc = (cols, rows) if trans else (rows, cols)
            v = np.array(
                [[buf[off + i + j * ld] for j in range(cc)] for i in range(r)],
                dtype=buf.dtype,
            ).reshape(r, cc)
            return v.T if trans else v

        xm = mat(x, call.x_off + b * call.stride_x, call.ldx, call.m, call.k,
                 call.trans_x)  # fmt: skip
        ym = mat(y, call.y_off + b * call.stride_y, call.ldy, call.k, call.n,
                 call.trans_y)  # fmt: skip
        r = xm @ ym
        base = call.c_off + b * call.stride_c
        for i in range(call.m):
            for j in range(call.n):
                c[base + i + j * call.ldc] = r[i, j]


# -- the library ---------------------------------------------------------------------


def tf32_enabled() -> bool:
    """True when TF32 tensor-core math is asked for (``CAFFEPY_TF32=1``); off by
    default, so GEMMs stay exact fp32 as Caffe's."""
    return os.environ.get("CAFFEPY_TF32", "0") not in ("", "0")


def _find_library() -> str:
    """The path of the libcublas CuPy loaded (else the first soname that loads)."""
    try:
        import cupy

        cupy.cuda.device.get_cublas_handle()  # makes CuPy load libcublas
        with open("/proc/self/maps", encoding="utf-8") as f:
            for line in f:
                path = line.rsplit(" ", 1)[-1].strip()
                if "/libcublas.so" in path:
                    return path
    except Exception:  # noqa: BLE001 - fall through to the sonames
        pass
    for name in (
        "libcublas.so.13",
        "libcublas.so.12",
        "libcublas.so.11",
        "libcublas.so",
    ):
        try:
            ctypes.CDLL(name)
            return name
        except OSError:
            continue
    raise CublasError("libcublas not found (CuPy loaded none, no soname loads)")


class Cublas:
    """A libcublas handle of its own, with a workspace, on a settable stream.

    Args:
        path: the library to load (default: the one CuPy uses).
    """

    def __init__(self, path: str | None = None):
        import cupy

        self.lib = ctypes.CDLL(path or _find_library())
        self.handle = ctypes.c_void_p()
        self._check(self.lib.cublasCreate_v2(ctypes.byref(self.handle)), "Create")
        self.workspace = cupy.empty(WORKSPACE_BYTES, dtype=np.uint8)
        self._check(
            self.lib.cublasSetWorkspace_v2(
                self.handle,
                ctypes.c_void_p(self.workspace.data.ptr),
                ctypes.c_size_t(WORKSPACE_BYTES),
            ),
            "SetWorkspace",
        )
        math = _CUBLAS_TF32_TENSOR_OP_MATH if tf32_enabled() else _CUBLAS_DEFAULT_MATH
        self._check(self.lib.cublasSetMathMode(self.handle, math), "SetMathMode")
        self._stream: int | None = None
        i, ll = ctypes.c_int, ctypes.c_longlong
        for name, real in (
            ("cublasSgemmStridedBatched", ctypes.c_float),
            ("cublasDgemmStridedBatched", ctypes.c_double),
        ):
            fn = getattr(self.lib, name)
            fn.argtypes = [ctypes.c_void_p, i, i, i, i, i, ctypes.POINTER(real),
                           ctypes.c_void_p, i, ll, ctypes.c_void_p, i, ll,
                           ctypes.POINTER(real), ctypes.c_void_p, i, ll,
                           i]  # fmt: skip

    @staticmethod
    def _check(status: int, what: str) -> None:
        if status != 0:
            raise CublasError(f"cublas{what} failed with status {status}")

    def set_stream(self, ptr: int) -> None:
        if ptr != self._stream:
            self._check(
                self.lib.cublasSetStream_v2(self.handle, ctypes.c_void_p(ptr)),
                "SetStream",
            )
            self._stream = ptr

    def run(self, calls: list[GemmCall], a: Any, b: Any, c: Any) -> None:
        """Run planned calls on CuPy arrays (alpha 1, beta 0)."""
        real: Any
        if c.dtype == np.float32:
            fn, real = self.lib.cublasSgemmStridedBatched, ctypes.c_float
        elif c.dtype == np.float64:
            fn, real = self.lib.cublasDgemmStridedBatched, ctypes.c_double
        else:
            raise CublasError(f"cublas matmul: dtype {c.dtype} is not float32/64")
        size = c.dtype.itemsize
        one, zero = real(1.0), real(0.0)
        ap, bp, cp = a.data.ptr, b.data.ptr, c.data.ptr
        for call in calls:
            if call.m == 0 or call.n == 0 or call.batch == 0:
                continue
            self._check(
                fn(self.handle, call.trans_x, call.trans_y, call.m, call.n,
                   call.k, ctypes.byref(one),
                   ctypes.c_void_p(bp + call.x_off * size), call.ldx, call.stride_x,
                   ctypes.c_void_p(ap + call.y_off * size), call.ldy, call.stride_y,
                   ctypes.byref(zero), ctypes.c_void_p(cp + call.c_off * size),
                   call.ldc, call.stride_c, call.batch),
                "GemmStridedBatched",
            )  # fmt: skip


_handles: dict[int, Cublas] = {}


def handle() -> Cublas:
    """This device's :class:`Cublas` (created on first use)."""
    import cupy

    dev = cupy.cuda.Device().id
    h = _handles.get(dev)
    if h is None:
        h = _handles[dev] = Cublas()
    return h


def _elem_strides(arr: Any) -> tuple[int, ...]:
    return tuple(s // arr.dtype.itemsize for s in arr.strides)


def matmul(a: Any, b: Any, out: Any) -> None:
    """``out[...] = a @ b`` on CuPy arrays through libcublas, on the current
    CuPy stream (capturable)."""
    import cupy

    calls = plan_matmul(
        a.shape, _elem_strides(a), b.shape, _elem_strides(b), out.shape,
        _elem_strides(out),
    )  # fmt: skip
    h = handle()
    h.set_stream(cupy.cuda.get_current_stream().ptr)
    h.run(calls, a, b, out)
