"""A small pool of threads for CPU op work that releases the GIL.

The CPU backend's convolution and inner-product ops
(:mod:`caffepy.backend.cpu.conv`, :mod:`caffepy.backend.cpu.vision`) cut their
work into independent tasks (chunks of images, blocks of outputs) whose heavy
parts are BLAS calls and ``nogil`` Numba kernels, which run in parallel on
Python threads. The threads take the next
task from a shared counter until none is left (dynamic scheduling), so when
the OS delays one thread (another process on its core), the others take over
its share instead of waiting for it; an op synchronises once per pass,
instead of once per GEMM or kernel call.

While tasks run on several threads the BLAS runs single-threaded (each task's
GEMM is one thread's work), and is restored afterwards, so a lone GEMM outside
the pool still uses every BLAS thread.

The pool's size is :func:`caffepy.kernels.config.set_num_threads`'s (by
default the number of cores). Task functions are called as ``fn(task,
worker)``; ``worker`` (0 .. size-1) indexes per-thread scratch buffers.
"""

import itertools
import os
import threading

import numba


def _openblas_setters():
    """(get, set) ctypes functions of every OpenBLAS numpy loaded, or []."""
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:  # pragma: no cover
        return []
    found = []
    for lib in ThreadpoolController().select(internal_api="openblas").lib_controllers:
        if getattr(lib, "threading_layer", "") == "openmp":
            continue  # per-thread pools: a task's thread starts single-threaded
        for prefix, suffix in itertools.product(("", "scipy_"), ("", "64_", "_64")):
            get = getattr(lib.dynlib, f"{prefix}openblas_get_num_threads{suffix}", None)
            put = getattr(lib.dynlib, f"{prefix}openblas_set_num_threads{suffix}", None)
            if get is not None and put is not None:
                found.append((get, put))
                break
    return found


class _SingleThreadedBlas:
    """Context: the BLAS on one thread (OpenBLAS's own pool), restored on exit."""

    def __init__(self):
        self._libs = None

    def __enter__(self):
        if self._libs is None:
            self._libs = _openblas_setters()
        self._saved = [get() for get, _ in self._libs]
        for (_, put), n in zip(self._libs, self._saved):
            if n != 1:
                put(1)

    def __exit__(self, *exc):
        for (_, put), n in zip(self._libs, self._saved):
            if n != 1:
                put(n)


class TaskPool:
    """Run ``fn(task, worker)`` for ``task`` in ``range(n_tasks)`` on ``size``
    threads (the caller is worker 0)."""

    def __init__(self, size=1):
        self.size = max(1, int(size))
        self._threads = []
        self._cv = threading.Condition()
        self._job = None
        self._generation = 0
        self._busy = 0
        self._errors = []
        self._blas = _SingleThreadedBlas()
        self._lock = threading.Lock()  # one job at a time (callers on several threads)

    def resize(self, size):
        self.size = max(1, int(size))

    def _start_threads(self):
        while len(self._threads) < self.size - 1:
            worker = len(self._threads) + 1
            t = threading.Thread(
                target=self._serve,
                args=(worker,),
                daemon=True,
                name=f"caffepy-worker-{worker}",
            )
            self._threads.append(t)
            t.start()

    def _serve(self, worker):
        # NOTE: a task's kernels run on its own thread (Numba's thread count is
        # per thread); the pool is what runs them in parallel.
        numba.set_num_threads(1)
        seen = 0
        while True:
            with self._cv:
                while self._generation == seen:
                    self._cv.wait()
                seen = self._generation
                job = self._job
            if job is not None and worker < job[3]:
                self._work(job, worker)
                with self._cv:
                    self._busy -= 1
                    if self._busy == 0:
                        self._cv.notify_all()

    def _work(self, job, worker):
        fn, counter, n_tasks, _ = job
        try:
            for task in counter:
                if task >= n_tasks or self._errors:
                    break
                fn(task, worker)
        except BaseException as exc:  # noqa: BLE001 - re-raised by run()
            self._errors.append(exc)

    def run(self, fn, n_tasks, threads=None):
        """Call ``fn(task, worker)`` for every task; return when all are done.

        ``threads`` caps the threads used (default: the pool's size). The first
        exception a task raises is re-raised here (remaining tasks are skipped).
        """
        n = min(self.size if threads is None else threads, self.size, n_tasks)
        if n <= 1:
            for task in range(n_tasks):
                fn(task, 0)
            return
        with self._lock:
            self._start_threads()
            self._errors = []
            job = (fn, itertools.count(), n_tasks, n)
            kernel_threads = numba.get_num_threads()
            numba.set_num_threads(1)
            try:
                self._dispatch(job, n)
            finally:
                numba.set_num_threads(kernel_threads)
            if self._errors:
                raise self._errors[0]

    def _dispatch(self, job, n):
        with self._blas:
            with self._cv:
                self._job = job
                self._busy = n - 1
                self._generation += 1
                self._cv.notify_all()
            self._work(job, 0)
            with self._cv:
                while self._busy:
                    self._cv.wait()
                self._job = None


def _default_size():
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # pragma: no cover
        return os.cpu_count() or 1


#: The process's pool (sized by caffepy.kernels.config.set_num_threads).
POOL = TaskPool(_default_size())


def split(n, parts):
    """``parts`` contiguous ranges [a, b) covering range(n), sizes within 1."""
    parts = max(1, min(parts, n))
    base, extra = divmod(n, parts)
    out, a = [], 0
    for i in range(parts):
        b = a + base + (1 if i < extra else 0)
        out.append((a, b))
        a = b
    return out


__all__ = ["POOL", "TaskPool", "split"]
