"""Parallel kernels as a small launcher and a serial task called by address.

A parallel kernel (``prange``) is costly to compile when its loop body is big:
Numba compiles the body as a gufunc, links it into two wrappers and into the
kernel, and LLVM optimises and generates machine code for the body in each of
these four modules. A first run of LeNet spent two thirds of its 30 s start
there. Here the body is a plain ``njit`` function, the *task*, compiled once
for its signature (and cached); the parallel region is one launcher for every
task, :func:`_launch`, compiled once: its loop calls a small *entry* compiled
per argument types (:func:`_entry`, about 0.05 s to compile where a launcher
per signature took 0.4 s), which reads the arguments from a buffer that
:func:`launch` fills (in Numba's data model: :func:`_pack` in Python, then
:func:`_put`, compiled, once a signature is hot) and calls the task
through its address (as the kernels call the BLAS). The run-time cost is two
indirect calls per loop iteration and storing the arguments once per launch
(about 1 us once hot).

A task takes its arguments, then the loop index and the kernel thread's id
(``numba.get_thread_id()`` of the launcher: a task loaded from Numba's cache
must not call it itself, since the threading layer may not have started yet).
Arrays a task takes are C-contiguous (checked when the launcher compiles).
"""

import ctypes
import struct

import numba
import numpy as np
from numba import types
from numba._dispatcher import compute_fingerprint
from numba.core.errors import TypingError
from numba.extending import intrinsic

from caffepy.kernels.blas import set_local_threads
from caffepy.kernels.config import njit, pjit, prange


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


@intrinsic
def _load(typingctx, buf, kind):
    """The tuple of type ``kind`` stored at address ``buf`` (see :func:`_store`)."""
    tupty = kind.instance_type

    def codegen(context, builder, signature, llargs):
        model = context.data_model_manager[tupty]
        ptr = builder.inttoptr(llargs[0], model.get_data_type().as_pointer())
        return model.load_from_data_pointer(builder, ptr)

    return tupty(buf, kind), codegen


@intrinsic
def _store(typingctx, buf, args):
    """Store the tuple ``args`` at address ``buf`` as :func:`_load` reads it,
    each array without its meminfo and parent (the caller keeps them alive)."""
    if not isinstance(args, types.BaseTuple):
        raise TypingError(f"a task's arguments are a tuple, received {args}")

    def codegen(context, builder, signature, llargs):
        tup = llargs[1]
        for i, t in enumerate(args):
            if isinstance(t, types.Array):
                ary = context.make_array(t)(
                    context, builder, builder.extract_value(tup, i)
                )
                ary.meminfo = context.get_constant_null(types.MemInfoPointer(t.dtype))
                ary.parent = context.get_constant_null(types.pyobject)
                tup = builder.insert_value(tup, ary._getvalue(), i)
        model = context.data_model_manager[args]
        ptr = builder.inttoptr(llargs[0], model.get_data_type().as_pointer())
        builder.store(model.as_data(builder, tup), ptr)
        return context.get_dummy_value()

    return types.void(buf, args), codegen


@njit
def _put(buf, args):
    """``args`` stored at ``buf`` (:func:`_store`), from Python: one call."""
    _store(buf, args)


@intrinsic
def _call_entry(typingctx, entry, task, buf, index, tid):
    """Call ``entry(task, buf, index, tid, <a type>)``, a :func:`_entry`
    compiled for one argument tuple: the type argument is an opaque pointer
    (``TypeRef``'s data model), passed as null."""
    argtys = (types.int64,) * 4 + (types.voidptr,)
    sig = types.void(entry, task, buf, index, tid)

    def codegen(context, builder, signature, llargs):
        conv = context.call_conv
        fnty = conv.get_function_type(types.none, argtys)
        fn = builder.inttoptr(llargs[0], fnty.as_pointer())
        values = [
            context.cast(builder, v, t, types.int64)
            for v, t in zip(llargs[1:], signature.args[1:], strict=True)
        ]
        values.append(context.get_constant_null(types.voidptr))
        status, _ = conv.call_function(builder, fn, types.none, argtys, values)
        with builder.if_then(status.is_error, likely=False):
            conv.return_status_propagate(builder, status)
        return context.get_dummy_value()

    return sig, codegen


@njit
def _entry(task, buf, index, tid, kind):
    """The task at ``task`` called with the arguments stored at ``buf``."""
    _call(task, _load(buf, kind), index, tid)


@pjit
def _launch(entry, task, buf, n, local):
    for i in prange(n):
        _call_entry(entry, task, buf, i, numba.get_thread_id())
    if local != 0:
        set_local_threads(local, 0)  # the calling thread's BLAS as it was


@njit
def _reset_local(local):
    """The calling thread's BLAS as it was, after a task that set it."""
    set_local_threads(local, 0)


#: struct codes of the scalars a task may take (native alignment, as LLVM's).
_SCALARS = {
    types.boolean: "?",
    types.int8: "b",
    types.uint8: "B",
    types.int16: "h",
    types.uint16: "H",
    types.int32: "i",
    types.uint32: "I",
    types.int64: "q",
    types.uint64: "Q",
    types.float32: "f",
    types.float64: "d",
}


def _layout(argtypes):
    """The ``struct`` format of a tuple of ``argtypes`` in Numba's data model:
    an array is (meminfo, parent, size, itemsize, data, shape..., strides...)."""
    fmt = "@"
    for t in argtypes:
        if isinstance(t, types.Array):
            fmt += "PPqqP" + "q" * (2 * t.ndim)
        elif t in _SCALARS:
            fmt += _SCALARS[t]
        else:
            raise TypingError(f"a task takes arrays and numbers, received {t}")
    return struct.Struct(fmt)


_BYTE = ctypes.c_char


def _data(a):
    """The address of ``a``'s first element."""
    # NOTE: through the buffer protocol, 0.3 us; ``a.ctypes.data`` takes 1 us.
    # Read-only and empty arrays take the slow way.
    try:
        return ctypes.addressof(_BYTE.from_buffer(a))
    except (TypeError, ValueError):
        return a.ctypes.data


def _pack(layout, args, buf):
    """``args`` stored in ``buf`` as :func:`_load` reads them, in Python (arrays
    without their meminfo: the caller keeps them alive)."""
    values = []
    for a in args:
        if isinstance(a, np.ndarray):
            values += (0, 0, a.size, a.itemsize, _data(a))
            values += a.shape
            values += a.strides
        else:
            values.append(a)
    layout.pack_into(buf, 0, *values)


#: Parallel launches of one signature after which its arguments are stored by a
#: compiled :func:`_put` (0.6 us for a dozen) instead of :func:`_pack` (5-6 us).
#: Compiling it takes about 85 ms per signature, which the first iterations of
#: a cold start should not pay; the cache keeps it for later processes.
HOT_LAUNCHES = 64


class _Compiled:
    """What :func:`launch` needs of one task and argument signature."""

    __slots__ = ("addr", "entry", "kind", "layout", "launches", "put")

    def __init__(self, addr, entry, kind, layout):
        self.addr, self.entry, self.kind, self.layout = addr, entry, kind, layout
        self.launches = 0
        self.put = False  # _put compiled for this signature


_ENTRIES = {}


def _compile(task, args):
    """The task's and its entry's addresses for ``task`` called with ``args``."""
    argtypes = tuple(numba.typeof(a) for a in args)
    sig = argtypes + (types.int64, types.int64)
    task.compile(sig)
    cres = task.overloads[sig]
    addr = cres.library.get_pointer_to_function(cres.fndesc.llvm_func_name)
    kind = types.TypeRef(types.Tuple(argtypes))
    esig = (types.int64,) * 4 + (kind,)
    _entry.compile(esig)
    eres = _entry.overloads[esig]
    entry = eres.library.get_pointer_to_function(eres.fndesc.llvm_func_name)
    return _Compiled(addr, entry, kind.instance_type, _layout(argtypes))


def _lookup(task, args):
    # NOTE: Numba's own type fingerprint of the arguments (dtype, ndim, layout,
    # writeable; 0.3 us for twenty of them) keys the compiled tasks.
    key = (task, compute_fingerprint(args))
    found = _ENTRIES.get(key)
    if found is None:
        found = _ENTRIES[key] = _compile(task, args)
    return found


def address(task, args):
    """The address of ``task`` (an ``njit`` function) compiled for ``*args`` and
    two int64s (the loop index and the thread id)."""
    return _lookup(task, args).addr


#: Inner-loop steps below which a kernel's pass runs as one task on the calling
#: thread: waking the kernel threads and storing the arguments cost 4-8 us,
#: the work of some 16K steps (max pooling on 2 threads of the 2-core Xeon VMs
#: of 2026-12-06: 50x8x8 planes 4.2 us serial, 8-9 us split; 32x16x16 3x3 15 us
#: serial, 13 us split).
SERIAL_WORK = 1 << 14


def blocks(items, work, most):
    """How many tasks to cut a pass of ``items`` independent items (``work``
    inner-loop steps in all) into: one below :data:`SERIAL_WORK` or on one
    thread, else ``min(items, most)``."""
    if work < SERIAL_WORK or numba.get_num_threads() == 1:
        return 1
    return max(1, min(items, most))


def launch(task, args, n, local=0):
    """Run ``task(*args, i, tid)`` for i in [0, n) on the kernel threads.

    Args:
        task: a serial ``njit`` function (see the module docstring).
        args: its arguments (a tuple of C-contiguous arrays and numbers).
        n: the loop's length.
        local: :data:`caffepy.kernels.blas.SET_LOCAL_THREADS` when the task
            sets its thread's BLAS threads (reset on the calling thread after
            the loop), else 0.
    """
    found = _lookup(task, args)
    if n == 1:
        # NOTE: one task runs on the calling thread through Numba's dispatcher
        # (0.7 us for a dozen arguments), which finds the overload _lookup
        # compiled; packing the arguments takes 3-4 us.
        task(*args, 0, 0)
        if local != 0:
            _reset_local(local)
        return
    buf = (_BYTE * found.layout.size)()
    at = ctypes.addressof(buf)
    if found.put:
        _put(at, args)
    else:
        _pack(found.layout, args, buf)
        found.launches += 1
        if found.launches >= HOT_LAUNCHES:
            _put.compile((types.int64, found.kind))
            found.put = True
    _launch(found.entry, found.addr, at, n, local)


__all__ = ["SERIAL_WORK", "address", "blocks", "launch"]
