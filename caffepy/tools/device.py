"""Where the commands compute: CPU threads, or one GPU (``--gpu ID``)."""

from __future__ import annotations

import logging

log = logging.getLogger("caffepy")


def set_threads(threads: int) -> None:
    """Use ``threads`` threads for BLAS and the kernels (0: leave the default)."""
    if threads:
        from caffepy.kernels.config import set_num_threads

        set_num_threads(threads)


def use_gpu(device_id: int | None) -> None:
    """Compute on GPU ``device_id`` (Caffe's ``Caffe::SetDevice`` then
    ``Caffe::set_mode(GPU)``); ``None`` leaves the mode as it is.

    Raises:
        GpuUnavailableError: no usable GPU (one line: what is missing and the
            ``pip install 'caffepy[gpu]'`` that fixes it).
    """
    if device_id is None:
        return
    from caffepy import backend

    backend.set_device(device_id)
    backend.set_mode_gpu()
    log.info("Using GPU %d", device_id)


def device_query(device_id: int) -> str:
    """The properties of GPU ``device_id``, as Caffe's ``caffe device_query``."""
    from caffepy.backend import cuda

    return cuda.device_query(device_id)
