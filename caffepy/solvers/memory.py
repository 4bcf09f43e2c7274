"""The solver's memory estimate: refuse, before training, a net that cannot fit."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from caffepy.errors import ResourceError
from caffepy.syncedmem import format_size, memory_limit

__all__ = [
    "ScratchViews",
    "available_memory",
    "check_memory",
    "format_size",
    "largest_layer",
    "memory_estimate",
]


class ScratchViews:
    """Scratch arrays of the given shapes, all views of one buffer (allocated on
    first use, the size of the largest): ``views[i]`` is an array of
    ``shapes[i]`` whose contents the previous user may have left.

    Args:
        shapes: the shape of each view.
        dtype: their dtype.
        zeros: the backend's ``zeros(shape, dtype)``.
    """

    def __init__(self, shapes: list[tuple[int, ...]], dtype: Any, zeros: Any) -> None:
        self._shapes = [tuple(s) for s in shapes]
        self._dtype = dtype
        self._zeros = zeros
        self._buf: Any = None
        self._views: dict[int, Any] = {}

    def __len__(self) -> int:
        return len(self._shapes)

    def __getitem__(self, i: int) -> Any:
        view = self._views.get(i)
        if view is None:
            if self._buf is None:
                size = max((math.prod(s) for s in self._shapes), default=0)
                self._buf = self._zeros((max(size, 1),), self._dtype)
            shape = self._shapes[i]
            view = self._views[i] = self._buf[: math.prod(shape)].reshape(shape)
        return view

    @property
    def nbytes(self) -> int:
        """The bytes of the buffer (allocated or not), for the estimate."""
        size = max((math.prod(s) for s in self._shapes), default=0)
        return size * np.dtype(self._dtype).itemsize


def available_memory() -> int | None:
    """The bytes training may use: ``CAFFEPY_MEMORY_LIMIT`` when set, else
    MemAvailable from /proc/meminfo; None where neither is known."""
    return memory_limit()


def memory_estimate(nets: list[Any], arrays: list[Any]) -> int:
    """Bytes a training holds at least.

    Args:
        nets: the train net first, then the test nets: every blob of every net
            counts once (in-place, shared and split blobs share one buffer), and
            the train net's gradients once per buffer.
        arrays: the solver's own arrays (history and scratch), by ``nbytes``.

    Layers' own scratch buffers (im2col columns, ...) come on top.
    """
    seen, total = set(), 0
    for k, net in enumerate(nets):
        blobs = list(net.blobs.values())
        blobs += [b for layer in net.layers for b in layer.blobs]
        for blob in blobs:
            data = blob.data
            key = id(data.base if data.base is not None else data)
            if key in seen:  # in place, shared or split: one buffer
                continue
            seen.add(key)
            total += blob.count * blob.dtype.itemsize
        if k == 0:
            # the train net's gradients, allocated on first use; blobs that share
            # their gradient memory (Net.share_diffs) count it once
            for blob in blobs:
                buf = blob.diff_mem.host_buffer
                base = buf.base if buf is not None else None
                key = id(base if base is not None else blob.diff_mem)
                if key not in seen:
                    seen.add(key)
                    total += (
                        base.nbytes
                        if base is not None
                        else blob.count * blob.dtype.itemsize
                    )
    for array in arrays:
        total += array.nbytes
    return total


def largest_layer(nets: list[Any]) -> tuple[str, str, int] | None:
    """(name, type, bytes) of the layer whose tops and parameters take the most
    bytes (by shape and dtype, without touching the buffers), or None."""
    best = None
    for net in nets:
        for layer, tops in zip(net.layers, net.top_vecs):
            size = sum(b.count * b.dtype.itemsize for b in [*tops, *layer.blobs])
            if best is None or size > best[2]:
                best = (layer.name, layer.type, size)
    return best


def check_memory(
    need: int, type_name: str, log: Any, nets: list[Any] | None = None
) -> None:
    """Log ``need`` and refuse it when it exceeds the available memory, naming
    the largest layer of ``nets``.

    Raises:
        ResourceError: ``need`` bytes do not fit in MemAvailable.
    """
    available = available_memory()
    log.info("Memory: the nets and solver need at least %s", format_size(need))
    if available is not None and need > available:
        big = largest_layer(nets or [])
        where = (
            f"; the largest layer is {big[1]} layer '{big[0]}' ({format_size(big[2])}"
            " of outputs and parameters)"
            if big
            else ""
        )
        raise ResourceError(
            f"training this net needs at least {format_size(need)} (blobs, "
            f"gradients, parameters and {type_name} solver history) but only "
            f"{format_size(available)} of memory is available; reduce batch_size "
            f"(or the test nets' batch size), or free memory{where}"
        )
