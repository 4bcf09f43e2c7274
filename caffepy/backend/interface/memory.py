"""Memory and blob access: allocation, copies, host transfers, a blob's
arrays on the device.
"""

from __future__ import annotations

from types import ModuleType
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from caffepy.backend.base import Array, Workspace


class MemoryInterface:
    """The memory ops of :class:`~caffepy.backend.base.Ops`, and the base of every
    family interface (so a backend's family mixin can use them).

    Attributes:
        name: ``"cpu"`` or ``"cuda"``.
        xp: the array module of this backend's arrays (``numpy``, or ``cupy``),
            for small array expressions that need no kernel of their own.
    """

    name: str = "abstract"
    xp: ModuleType = np

    def empty(self, shape: tuple[int, ...], dtype: Any = np.float32) -> Array:
        raise NotImplementedError

    def zeros(self, shape: tuple[int, ...], dtype: Any = np.float32) -> Array:
        raise NotImplementedError

    def copy(self, src: Array, dst: Array) -> None:
        """dst[...] = src (same shape and backend)."""
        raise NotImplementedError

    def to_host(self, arr: Array) -> np.ndarray:
        raise NotImplementedError

    def from_host(self, arr: np.ndarray) -> Array:
        raise NotImplementedError

    def workspace(self) -> Workspace:
        """A new :class:`~caffepy.backend.base.Workspace` of this backend
        (implemented once, on :class:`~caffepy.backend.base.Ops`)."""
        raise NotImplementedError

    def data(self, blob: Any) -> Array:
        """The blob's data on this device, for reading."""
        raise NotImplementedError

    def mutable_data(self, blob: Any) -> Array:
        """The blob's data on this device, to be written (this device becomes its
        head)."""
        raise NotImplementedError

    def diff(self, blob: Any) -> Array:
        raise NotImplementedError

    def mutable_diff(self, blob: Any) -> Array:
        raise NotImplementedError

    def asum(self, arr: Array) -> float:
        """sum(arr) as a Python float (the one device-to-host read of a loss)."""
        raise NotImplementedError

    def synchronize(self) -> None:
        """Wait for queued device work (a no-op on the CPU)."""
