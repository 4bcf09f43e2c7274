"""Prefetching: a background thread fills batches while the net computes.

Caffe's ``BasePrefetchingDataLayer``: a fixed pool of ``depth`` batches moves
between a *free* queue and a *full* queue. The thread takes a free batch, fills
it from the source and puts it on the full queue; the layer's forward takes a
full batch, copies it into its tops and gives it back. Nothing is allocated in
the steady state, and at most ``depth`` batches are ready ahead.

Each batch carries the source's state *after* it was filled, so the layer knows
the state as of the batches it consumed (not those merely prefetched): restoring
that state and prefetching again yields exactly the batches that came next.

The thread is a daemon and references only the source and the queues, never the
layer, so a layer that is garbage-collected can stop it (``weakref.finalize``).
An exception in the thread is handed to the consumer and re-raised there.

In GPU mode the thread also moves each filled batch to the device (on its own
CUDA stream on a real GPU; a plain copy under numba's simulator), so the forward
pass copies device to device: that is the batch's one host-to-device copy, off
the critical path, as Caffe's ``BasePrefetchingDataLayer::InternalThreadEntry``.
"""

import queue
import threading

import numpy as np

from caffepy.blob import Blob
from caffepy.errors import DataError


class Batch:
    """One prefetched batch: data and label blobs, and the source state after it."""

    __slots__ = ("data", "label", "state")

    def __init__(self, dtype=np.float32):
        self.data = Blob((0,), dtype)
        self.label = Blob((0,), dtype)
        self.state = None

    def copy_into(self, top):
        """Reshape ``top[0]`` (and ``top[1]``, if given) like this batch and copy
        the data (and labels) there, on the device of the current mode."""
        from caffepy.backend import mode

        ops = mode.ops()
        for src, dst in zip((self.data, self.label), top[:2]):
            dst.reshape(src.shape)
            ops.copy(ops.data(src), ops.mutable_data(dst))


_local = threading.local()


def _to_device(batch):
    """In GPU mode, move a filled batch to the device (its own stream on a GPU)."""
    from caffepy.backend import mode

    if not mode.is_gpu():
        return
    from caffepy.backend.cuda import memory

    blobs = [b for b in (batch.data, batch.label) if b.count]
    if memory.simulated():
        for b in blobs:
            b.gpu_data()
        return
    import cupy

    stream = getattr(_local, "stream", None)
    if stream is None:
        stream = _local.stream = cupy.cuda.Stream(non_blocking=True)
    with stream:
        for b in blobs:
            b.gpu_data()
    stream.synchronize()


class _Failure:
    __slots__ = ("exc",)

    def __init__(self, exc):
        self.exc = exc


def _run(source, free, full, stop):
    """The prefetch thread's loop (a function, so it holds no layer reference)."""
    while not stop.is_set():
        try:
            batch = free.get(timeout=0.05)
        except queue.Empty:
            continue
        if stop.is_set():
            return
        try:
            source.fill(batch)
            batch.state = source.state()
            _to_device(batch)
        except BaseException as exc:  # noqa: BLE001 - re-raised by the consumer
            full.put(_Failure(exc))
            return
        full.put(batch)


class Prefetcher:
    """Fill batches from ``source`` ahead of time in a daemon thread.

    Args:
        source: an object with ``fill(batch)`` (fill a :class:`Batch`) and
            ``state()`` (a snapshot of its position and RNG); used only by the
            thread while it runs.
        depth: how many batches may be ready ahead (``data_param.prefetch``);
            0 fills each batch synchronously in the caller, without a thread.
        dtype: the batches' float dtype.
        name: the thread's name.
    """

    def __init__(self, source, depth, dtype=np.float32, name="caffepy-prefetch"):
        self.source = source
        self.depth = int(depth)
        self.name = name
        self._batches = [Batch(dtype) for _ in range(max(1, self.depth))]
        self._thread = None
        self._stop = None
        self._free = self._full = None

    @property
    def running(self):
        return self._thread is not None

    def start(self):
        """Start the thread (no-op when running or when depth is 0)."""
        if self._thread is not None or self.depth == 0:
            return
        self._free, self._full = queue.Queue(), queue.Queue()
        for batch in self._batches:
            self._free.put(batch)
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=_run,
            args=(self.source, self._free, self._full, self._stop),
            name=self.name,
            daemon=True,
        )
        self._thread.start()

    def next(self):
        """The next filled batch (blocks until ready); give it back with release."""
        if self.depth == 0:
            batch = self._batches[0]
            self.source.fill(batch)
            batch.state = self.source.state()
            _to_device(batch)
            return batch
        self.start()
        while True:
            try:
                item = self._full.get(timeout=1.0)
                break
            except queue.Empty:
                if not self._thread.is_alive() and self._full.empty():
                    self._thread = None
                    raise DataError(
                        f"{self.name}: the prefetch thread stopped"
                    ) from None
        if isinstance(item, _Failure):
            self.stop()
            raise item.exc
        return item

    def release(self, batch):
        """Give a consumed batch back to the thread."""
        if self._free is not None and self._thread is not None:
            self._free.put(batch)

    def stop(self):
        """Stop the thread and drop prefetched batches (the source has moved on:
        restore its state before starting again)."""
        thread, self._thread = self._thread, None
        if thread is None:
            return
        self._stop.set()
        thread.join()
        self._free = self._full = None
