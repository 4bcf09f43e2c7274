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


def parse_gpus(text: str) -> int | list[int] | str:
    """Caffe's ``-gpu`` value: ``"0"`` -> 0, ``"0,1"`` -> [0, 1], ``"all"``.

    Raises:
        ValueError: not ids separated by commas, a negative or repeated id.
    """
    text = str(text).strip()
    if text == "all":
        return "all"
    try:
        ids = [int(t) for t in text.split(",")]
    except ValueError:
        raise ValueError(
            f"expected a GPU id such as 0, ids such as 0,1, or 'all'; got {text!r}"
        ) from None
    if any(i < 0 for i in ids):
        raise ValueError(f"a GPU id is 0 or more, got {text!r}")
    if len(set(ids)) != len(ids):
        raise ValueError(f"each GPU may be named once, got {text!r}")
    return ids[0] if len(ids) == 1 else ids


def gpu_count() -> int:
    """How many CUDA devices this machine has.

    Raises:
        GpuUnavailableError: no GPU packages or no CUDA device (one line).
    """
    from caffepy.backend import cuda
    from caffepy.backend.cuda import memory

    cuda.check_available(0)
    return len(memory.import_numba_cuda().gpus)


def resolve_gpus(spec: int | list[int] | str, count: int | None = None) -> list[int]:
    """The device ids of a ``--gpu`` value, checked against the machine.

    Args:
        spec: from :func:`parse_gpus`.
        count: the number of devices (default: :func:`gpu_count`).

    Raises:
        GpuUnavailableError: a named GPU does not exist, in one line.
    """
    from caffepy.errors import GpuUnavailableError

    label = spec if isinstance(spec, str) else ",".join(map(str, _as_list(spec)))
    try:
        count = gpu_count() if count is None else int(count)
    except GpuUnavailableError as err:
        raise GpuUnavailableError(f"--gpu {label}: {err}") from None
    ids = list(range(count)) if spec == "all" else _as_list(spec)
    missing = [i for i in ids if i >= count]
    if missing or not ids:
        have = f"{count} CUDA device{'s' if count != 1 else ''}"
        names = ", ".join(map(str, missing))
        raise GpuUnavailableError(
            f"--gpu {label}: GPU {names or 'none'} does not exist on this machine "
            f"({have}{': ' + ','.join(map(str, range(count))) if count else ''})"
        )
    return ids


def _as_list(spec: int | list[int] | str) -> list[int]:
    return [spec] if isinstance(spec, int) else list(spec)  # type: ignore[arg-type]
