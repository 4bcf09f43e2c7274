"""The backend: how layer and solver work runs on a device.

Layers *describe* (shapes, parameters, which blobs); the backend *executes*. A
layer asks for the active backend's :class:`~caffepy.backend.base.Ops` and calls
one op per piece of numeric work, handing it arrays that the same backend gave
out for the layer's blobs::

    ops = backend.ops()                    # the device of the current mode
    x, y = ops.data(bottom[0]), ops.mutable_data(top[0])
    ops.relu_forward(x, self.negative_slope, y)

Two backends implement :class:`~caffepy.backend.base.Ops`:

- ``cpu`` (:mod:`caffepy.backend.cpu`): NumPy arrays, the Numba kernels of
  :mod:`caffepy.kernels`, the thread policy and chunking of the convolutions.
- ``cuda`` (:mod:`caffepy.backend.cuda`): device arrays (CuPy's, or NumPy arrays
  under numba's CUDA simulator), numba.cuda kernels and cuBLAS.

The mode is process-wide, as Caffe's ``Caffe::mode()``: :func:`set_mode_cpu`,
:func:`set_mode_gpu` and :func:`set_device`.
"""

from caffepy.backend.base import Ops, Workspace
from caffepy.backend.mode import (
    CPU,
    GPU,
    get_device,
    get_mode,
    ops,
    set_device,
    set_mode_cpu,
    set_mode_gpu,
)

__all__ = [
    "CPU",
    "GPU",
    "Ops",
    "Workspace",
    "get_device",
    "get_mode",
    "ops",
    "set_device",
    "set_mode_cpu",
    "set_mode_gpu",
]
