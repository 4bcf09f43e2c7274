"""Parallel kernels as a small launcher and a serial task called by address.

A parallel kernel (``prange``) is costly to compile when its loop body is big:
Numba compiles the body as a gufunc, links it into two wrappers and into the
kernel, and LLVM optimises and generates machine code for the body in each of
these four modules. A first run of LeNet spent two thirds of its 30 s start
there. Here the body is a plain ``njit`` function, the *task*, compiled once
for its signature (and cached); the parallel region is one generic launcher,
:func:`launch`, whose loop calls the task through its address (as the kernels
call the BLAS): the launcher stays small, the task is compiled once, and the
run-time cost is one indirect call per loop iteration.

A task takes its arguments, then the loop index and the kernel thread's id
(``numba.get_thread_id()`` of the launcher: a task loaded from Numba's cache
must not call it itself, since the threading layer may not have started yet).
Arrays a task takes are C-contiguous (checked when the launcher compiles).
"""

import numba
from numba import types
from numba._dispatcher import compute_fingerprint
from numba.core.errors import TypingError
from numba.extending import intrinsic

from caffepy.kernels.blas import set_local_threads
from caffepy.kernels.config import pjit, prange


@intrinsic
def _call(typingctx, addr, args, index, tid):
    """Call the task at ``addr`` with ``*args, index, tid`` (Numba's calling
    convention; an exception the task raises propagates)."""
    if not isinstance(args, types.BaseTuple):
        raise TypingError(f"a task's arguments are a tuple, received {args}")
    for t in args:
        if isinstance(t, types.Array) and t.layout != "C":
            raise TypingError(f"a task takes C-contiguous arrays, received {t}")
    argtys = tuple(args) + (index, tid)
    sig = types.void(addr, args, index, tid)

    def codegen(context, builder, signature, llargs):
        conv = context.call_conv
        fnty = conv.get_function_type(types.none, argtys)
        fn = builder.inttoptr(llargs[0], fnty.as_pointer())
        values = [builder.extract_value(llargs[1], i) for i in range(len(args))]
        status, _ = conv.call_function(
            builder, fn, types.none, argtys, values + [llargs[2], llargs[3]]
        )
        with builder.if_then(status.is_error, likely=False):
            conv.return_status_propagate(builder, status)
        return context.get_dummy_value()

    return sig, codegen


@pjit
def _launch(task, args, n, local):
    for i in prange(n):
        _call(task, args, i, numba.get_thread_id())
    if local != 0:
        set_local_threads(local, 0)  # the calling thread's BLAS as it was


_ADDRESSES = {}


def address(task, args):
    """The address of ``task`` (an ``njit`` function) compiled for ``*args`` and
    two int64s (the loop index and the thread id)."""
    # NOTE: Numba's own type fingerprint of the arguments (dtype, ndim, layout,
    # writeable; 0.3 us for twenty of them) keys the compiled tasks.
    key = (task, compute_fingerprint(args))
    addr = _ADDRESSES.get(key)
    if addr is None:
        sig = tuple(numba.typeof(a) for a in args) + (types.int64, types.int64)
        task.compile(sig)
        cres = task.overloads[sig]
        addr = cres.library.get_pointer_to_function(cres.fndesc.llvm_func_name)
        _ADDRESSES[key] = addr
    return addr


def launch(task, args, n, local=0):
    """Run ``task(*args, i, tid)`` for i in [0, n) on the kernel threads.

    Args:
        task: a serial ``njit`` function (see the module docstring).
        args: its arguments (a tuple; arrays C-contiguous).
        n: the loop's length.
        local: :data:`caffepy.kernels.blas.SET_LOCAL_THREADS` when the task
            sets its thread's BLAS threads (reset on the calling thread after
            the loop), else 0.
    """
    _launch(address(task, args), args, n, local)


__all__ = ["address", "launch"]
