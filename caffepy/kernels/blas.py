"""numpy's own BLAS GEMM, callable from inside Numba kernels.

A layer pass (im2col, GEMM and transposes for every chunk of images) then runs
as one parallel Numba region: one wake-up of the kernel threads per layer,
instead of one per GEMM and per kernel, and no second thread pool (OpenBLAS's)
competing with Numba's for the cores. Inside the region every thread calls the
single-threaded GEMM on its own chunk (``openblas_set_num_threads_local``).

The C functions are found in the OpenBLAS that numpy loaded (via threadpoolctl),
or in Intel MKL where its wheel is installed (``pip install 'caffepy[mkl]'``,
chosen by :func:`_find`), and called through their addresses, which the kernels
take as arguments: the compiled kernels hold no process-specific pointer, so
Numba can cache them. ``AVAILABLE`` is False when numpy's BLAS is not an
OpenBLAS with these functions; the CPU backend then uses numpy's matmul from
Python threads.
"""

import ctypes
import itertools
import os
import warnings

import numpy as np
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

ROW_MAJOR, NO_TRANS, TRANS = 101, 111, 112


#: Intel MKL's threading layer without threads (``MKL_Set_Threading_Layer``):
#: the kernels run one BLAS call per task on their own threads.
_MKL_THREADING_SEQUENTIAL = 1


def _openblas():
    """(sgemm, dgemm, sgemv, dgemv, set_num_threads_local) addresses and whether
    they take 64-bit integers, of the OpenBLAS numpy loaded; or None."""
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:  # pragma: no cover
        return None
    import numpy.linalg  # noqa: F401 - make sure numpy's BLAS is loaded

    for lib in ThreadpoolController().select(internal_api="openblas").lib_controllers:
        if getattr(lib, "threading_layer", "") == "openmp":
            continue
        dll = ctypes.CDLL(lib.filepath)
        local = getattr(dll, "openblas_set_num_threads_local", None)
        if local is None:
            continue
        for prefix, suffix in itertools.product(("", "scipy_"), ("", "64_", "_64")):
            names = ("sgemm", "dgemm", "sgemv", "dgemv")
            funcs = [getattr(dll, f"{prefix}cblas_{n}{suffix}", None) for n in names]
            if all(f is not None for f in funcs):
                addr = [ctypes.cast(f, ctypes.c_void_p).value for f in funcs + [local]]
                # 64-bit integers when the suffix says so (numpy's ILP64 build)
                return addr, bool(suffix)
    return None


def _mkl_library():
    """The path of ``libmkl_rt`` from the ``mkl`` wheel (``pip install
    'caffepy[mkl]'``), or None."""
    from importlib import metadata

    try:
        files = metadata.files("mkl") or []
    except metadata.PackageNotFoundError:
        return None
    for f in files:
        if f.name.startswith("libmkl_rt.so") or f.name == "mkl_rt.2.dll":
            return str(f.locate())
    return None


def _intel_cpu():
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            return "GenuineIntel" in f.read(4096)
    except OSError:  # pragma: no cover - not Linux
        return False


def _mkl(path, ilp64):
    """Intel MKL's CBLAS in ``path`` with the integer width of numpy's BLAS (so
    the compiled kernels, which hold that width, stay valid), sequential."""
    dll = ctypes.CDLL(path)
    dll.MKL_Set_Threading_Layer.argtypes = [ctypes.c_int]
    dll.MKL_Set_Threading_Layer(_MKL_THREADING_SEQUENTIAL)
    suffix = "_64" if ilp64 else ""
    names = [f"cblas_{n}{suffix}" for n in ("sgemm", "dgemm", "sgemv", "dgemv")]
    # NOTE: the C entry; lowercase mkl_set_num_threads_local is the Fortran one
    # (its argument by reference).
    funcs = [getattr(dll, n) for n in names] + [dll.MKL_Set_Num_Threads_Local]
    return [ctypes.cast(f, ctypes.c_void_p).value for f in funcs], ilp64


def _find():
    """(addresses, ilp64, name) of the BLAS the kernels call, or None.

    ``CAFFEPY_BLAS``: ``mkl`` (Intel MKL from the ``mkl`` wheel), ``openblas``
    (numpy's), or unset: MKL where it is installed and the CPU is Intel's (on
    the AVX-512 Xeons its SGEMM is 1.15-1.5x OpenBLAS's at the convolutions'
    shapes), else numpy's OpenBLAS.
    """
    found = _openblas()
    if found is None:
        return None
    want = os.environ.get("CAFFEPY_BLAS", "").strip().lower()
    if want not in ("", "mkl", "openblas"):
        warnings.warn(
            f"CAFFEPY_BLAS={want!r} is not 'mkl' or 'openblas'; ignored", stacklevel=2
        )
        want = ""
    if want == "openblas" or (want == "" and not _intel_cpu()):
        return (*found, "openblas")
    path = _mkl_library()
    if path is None:
        if want == "mkl":
            warnings.warn(
                "CAFFEPY_BLAS=mkl: Intel MKL is not installed "
                "(pip install 'caffepy[mkl]'); the kernels call numpy's OpenBLAS",
                stacklevel=2,
            )
        return (*found, "openblas")
    try:
        return (*_mkl(path, found[1]), "mkl")
    except (OSError, AttributeError) as err:  # pragma: no cover - a broken wheel
        warnings.warn(
            f"Intel MKL at {path} did not load ({err}); using OpenBLAS", stacklevel=2
        )
        return (*found, "openblas")


_FOUND = _find()
#: Whether the kernels can call the BLAS themselves.
AVAILABLE = _FOUND is not None
#: Which: "mkl", "openblas", or None (numpy's matmul from Python threads).
NAME = _FOUND[2] if AVAILABLE else None
SGEMM, DGEMM, SGEMV, DGEMV, SET_LOCAL_THREADS = _FOUND[0] if AVAILABLE else (0,) * 5
_INT = ir.IntType(64 if (_FOUND[1] if AVAILABLE else True) else 32)


def gemm_address(dtype):
    """The GEMM for arrays of ``dtype`` (float32 or float64)."""
    return SGEMM if np.dtype(dtype) == np.float32 else DGEMM


def gemv_address(dtype):
    """The GEMV for arrays of ``dtype`` (float32 or float64)."""
    return SGEMV if np.dtype(dtype) == np.float32 else DGEMV


@intrinsic
def gemm(typingctx, addr, transa, transb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc):
    """cblas_?gemm(RowMajor, transa, transb, m, n, k, alpha, a, lda, b, ldb, beta,
    c, ldc) at address ``addr``; a, b, c are addresses (int64), alpha and beta
    float32 (sgemm) or float64 (dgemm)."""
    real = alpha
    sig = types.void(
        types.int64,
        types.int64,
        types.int64,
        types.int64,
        types.int64,
        types.int64,
        real,
        types.int64,
        types.int64,
        types.int64,
        types.int64,
        real,
        types.int64,
        types.int64,
    )

    def codegen(context, builder, signature, args):
        i32 = ir.IntType(32)
        fp = ir.FloatType() if real == types.float32 else ir.DoubleType()
        ptr = ir.IntType(8).as_pointer()
        fnty = ir.FunctionType(
            ir.VoidType(),
            [i32, i32, i32, _INT, _INT, _INT, fp, ptr, _INT, ptr, _INT, fp, ptr, _INT],
        )
        (addr_, ta, tb, m_, n_, k_, al, a_, lda_, b_, ldb_, be, c_, ldc_) = args
        fn = builder.inttoptr(addr_, fnty.as_pointer())

        def size(v):
            return builder.trunc(v, _INT) if _INT.width < 64 else v

        builder.call(
            fn,
            [
                ir.Constant(i32, ROW_MAJOR),
                builder.trunc(ta, i32),
                builder.trunc(tb, i32),
                size(m_),
                size(n_),
                size(k_),
                al,
                builder.inttoptr(a_, ptr),
                size(lda_),
                builder.inttoptr(b_, ptr),
                size(ldb_),
                be,
                builder.inttoptr(c_, ptr),
                size(ldc_),
            ],
        )
        return context.get_dummy_value()

    return sig, codegen


@intrinsic
def gemv(typingctx, addr, trans, m, n, alpha, a, lda, x, incx, beta, y, incy):
    """cblas_?gemv(RowMajor, trans, m, n, alpha, a, lda, x, incx, beta, y, incy)
    at address ``addr``; a, x, y are addresses (int64)."""
    real = alpha
    sig = types.void(
        types.int64,
        types.int64,
        types.int64,
        types.int64,
        real,
        types.int64,
        types.int64,
        types.int64,
        types.int64,
        real,
        types.int64,
        types.int64,
    )

    def codegen(context, builder, signature, args):
        i32 = ir.IntType(32)
        fp = ir.FloatType() if real == types.float32 else ir.DoubleType()
        ptr = ir.IntType(8).as_pointer()
        fnty = ir.FunctionType(
            ir.VoidType(),
            [i32, i32, _INT, _INT, fp, ptr, _INT, ptr, _INT, fp, ptr, _INT],
        )
        (addr_, tr, m_, n_, al, a_, lda_, x_, incx_, be, y_, incy_) = args

        def size(v):
            return builder.trunc(v, _INT) if _INT.width < 64 else v

        fn = builder.inttoptr(addr_, fnty.as_pointer())
        builder.call(
            fn,
            [
                ir.Constant(i32, ROW_MAJOR),
                builder.trunc(tr, i32),
                size(m_),
                size(n_),
                al,
                builder.inttoptr(a_, ptr),
                size(lda_),
                builder.inttoptr(x_, ptr),
                size(incx_),
                be,
                builder.inttoptr(y_, ptr),
                size(incy_),
            ],
        )
        return context.get_dummy_value()

    return sig, codegen


@intrinsic
def set_local_threads(typingctx, addr, n):
    """openblas_set_num_threads_local(n) at ``addr``: this thread's BLAS threads."""
    sig = types.void(types.int64, types.int64)

    def codegen(context, builder, signature, args):
        i32 = ir.IntType(32)
        fnty = ir.FunctionType(i32, [i32])
        fn = builder.inttoptr(args[0], fnty.as_pointer())
        builder.call(fn, [builder.trunc(args[1], i32)])
        return context.get_dummy_value()

    return sig, codegen


@intrinsic
def fetch_add(typingctx, counter, value):
    """Atomically add ``value`` to ``counter[0]`` (an int64 array); return the
    value before (a shared work counter for dynamic scheduling)."""
    if not (isinstance(counter, types.Array) and counter.dtype == types.int64):
        return None
    sig = types.int64(counter, types.int64)

    def codegen(context, builder, signature, args):
        arr = context.make_array(signature.args[0])(context, builder, args[0])
        ptr = cgutils.get_item_pointer(
            context,
            builder,
            signature.args[0],
            arr,
            [context.get_constant(types.intp, 0)],
        )
        return builder.atomic_rmw("add", ptr, args[1], "seq_cst")

    return sig, codegen


def address(arr):
    """The address of an array's first element (for the kernels' GEMM calls)."""
    return arr.ctypes.data


__all__ = [
    "AVAILABLE",
    "address",
    "fetch_add",
    "gemm",
    "gemm_address",
    "gemv",
    "gemv_address",
    "set_local_threads",
]
