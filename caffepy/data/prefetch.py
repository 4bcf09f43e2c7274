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

import collections
import queue
import threading
import time

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


def _run(source, free, full, stop, drain):
    """The prefetch thread's loop (a function, so it holds no layer reference).
    ``stop``: quit now (what is prefetched is dropped); ``drain``: quit before
    the next batch (what is prefetched stays on ``full``)."""
    while not stop.is_set() and not drain.is_set():
        try:
            batch = free.get(timeout=0.05)
        except queue.Empty:
            continue
        if stop.is_set():
            return
        if drain.is_set():
            free.put(batch)
            return
        try:
            source.fill(batch)
            batch.state = source.state()
            _to_device(batch)
        except BaseException as exc:  # noqa: BLE001 - re-raised by the consumer
            full.put(_Failure(exc))
            return
        full.put(batch)


#: Batches through the thread over which the period per batch is measured before
#: the prefetcher tries filling in the consumer's thread, and batches it then
#: measures that way.
_WINDOW = 16
_MEASURE = 8
#: Batches through the thread between two tries, once filling in the caller was
#: the slower way.
_RETRY_AFTER = 2000


class Prefetcher:
    """Fill batches from ``source`` ahead of time in a daemon thread.

    Where the consumer's own work between batches is short (a small net, or the
    Data layer timed alone), the thread cannot hide the reading, and the
    hand-offs of the GIL between the two threads cost more than the reading
    itself (LeNet's batches of 64: 66 us to fill in one thread, 190-230 us per
    batch through the thread). So after every :data:`_WINDOW` batches through
    the thread (then every :data:`_RETRY_AFTER`) the prefetcher lets the thread
    finish, hands out what it prefetched, and fills :data:`_MEASURE` batches in
    the caller: where the period per batch is shorter than it was through the
    thread, it fills in the caller for the next :data:`_RETRY_AFTER` batches,
    else it goes back to the thread for as many, and then measures again. The
    batches and their order are the same either way.

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
        self._stop = self._drain = None
        self._free = self._full = None
        self._ready = collections.deque()  # prefetched, handed out before filling
        self.in_caller = False  # filling in the consumer's thread (adaptive)
        self._seen = collections.deque(maxlen=_WINDOW)  # s per batch, threaded
        self._returned = None  # when next() last returned
        self._threaded_period = None  # s per batch through the thread
        self._caller = []  # s per batch of the batches measured here
        self._retry = 0  # batches until the thread may be left again
        self._stay = 0  # batches still to fill here before measuring again

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
        self._stop, self._drain = threading.Event(), threading.Event()
        self._thread = threading.Thread(
            target=_run,
            args=(self.source, self._free, self._full, self._stop, self._drain),
            name=self.name,
            daemon=True,
        )
        self._thread.start()

    def _fill_here(self):
        batch = self._batches[0]
        self.source.fill(batch)
        batch.state = self.source.state()
        _to_device(batch)
        return batch

    def next(self):
        """The next filled batch (blocks until ready); give it back with release."""
        now = time.perf_counter()
        gap = None if self._returned is None else now - self._returned
        if self.depth == 0:
            batch = self._fill_here()
        elif self._ready:
            batch = self._ready.popleft()
            if isinstance(batch, _Failure):
                self.stop()
                raise batch.exc
        elif self.in_caller:
            batch = self._fill_here()
            self._judge_caller(gap, time.perf_counter() - now)
        else:
            batch = self._from_thread(gap, now)
        self._returned = time.perf_counter()
        return batch

    def _from_thread(self, gap, now):
        self.start()
        try:
            item = self._full.get_nowait()
        except queue.Empty:
            item = self._wait()
        if isinstance(item, _Failure):
            self.stop()
            raise item.exc
        if self._retry:
            self._retry -= 1
        elif gap is not None:
            seen = self._seen
            seen.append(gap + time.perf_counter() - now)
            if len(seen) == seen.maxlen:
                self._threaded_period = sorted(seen)[len(seen) // 2]
                self._leave_thread()
        return item

    def _wait(self):
        while True:
            try:
                return self._full.get(timeout=1.0)
            except queue.Empty:
                if not self._thread.is_alive() and self._full.empty():
                    self._thread = None
                    raise DataError(
                        f"{self.name}: the prefetch thread stopped"
                    ) from None

    def _leave_thread(self):
        """Let the thread finish its batch and keep what it prefetched."""
        thread, self._thread = self._thread, None
        self._drain.set()
        thread.join()
        while True:
            try:
                item = self._full.get_nowait()
            except queue.Empty:
                break
            self._ready.append(item)  # a failure too: raised in its turn
        self._free = self._full = None
        self.in_caller = True
        self._seen.clear()
        self._caller = []
        self._stay = 0

    def _judge_caller(self, gap, fill):
        """After :data:`_MEASURE` batches filled here: stay for
        :data:`_RETRY_AFTER` batches if the period per batch is shorter than it
        was through the thread, else go back to the thread (and stay there as
        long); after that stay, go back to the thread to measure again."""
        if self._stay:
            self._stay -= 1
            if not self._stay:
                self.in_caller = False
            return
        if gap is None:
            return
        self._caller.append(gap + fill)
        if len(self._caller) < _MEASURE:
            return
        period = sorted(self._caller)[len(self._caller) // 2]
        self._caller = []
        if self._threaded_period is not None and period < self._threaded_period:
            self._stay = _RETRY_AFTER
        else:
            self.in_caller = False
            self._retry = _RETRY_AFTER
        self._threaded_period = None

    def release(self, batch):
        """Give a consumed batch back to the thread."""
        if self._free is not None and self._thread is not None:
            self._free.put(batch)

    def stop(self):
        """Stop the thread and drop prefetched batches (the source has moved on:
        restore its state before starting again)."""
        self._ready.clear()
        self._returned = None
        self._seen.clear()
        thread, self._thread = self._thread, None
        if thread is None:
            return
        self._stop.set()
        thread.join()
        self._free = self._full = None
