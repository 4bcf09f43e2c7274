"""One line, not a crash dump, when a database is truncated under a reader.

LMDB (and LevelDB's table files) are read through a memory map. When another
process truncates the file, touching a page past the new end raises SIGBUS: a
synchronous fault that a Python-level ``signal.signal`` handler cannot catch
(the faulting instruction would run again, forever). While a database is open,
:func:`guard` installs a C-level SIGBUS handler (a ctypes callback given to
libc's ``signal``) that writes one precomputed line naming the open databases
and ends the process at once with ``os._exit``; when the last database closes,
the previous handler (Python's faulthandler, or the default) comes back.

Readers also compare the data file's size with the size seen at open before
each read (:func:`check_size`), so a truncation between reads is a clean
:class:`~caffepy.errors.DataError`; the handler covers the rest (a truncation
during a read, or a page the check cannot see).
"""

from __future__ import annotations

import ctypes
import os
import signal
import threading

from caffepy.errors import DataError

#: The exit status after a bus error while reading a database (128 + SIGBUS).
BUS_ERROR_EXIT = 128 + int(getattr(signal, "SIGBUS", 7))

_LOCK = threading.Lock()
_open: list[str] = []  # the guarded paths, one entry per open (a multiset)
# NOTE: the handler must not build anything: the line is prepared here whenever
# the set of open databases changes, and the handler only writes it.
_message = [b""]
_state: dict = {"installed": False, "old": None, "libc": None, "callback": None}


def _on_bus_error(signum: int) -> None:  # pragma: no cover - runs in a child
    os.write(2, _message[0])
    os._exit(BUS_ERROR_EXIT)


def _libc():
    """libc with ``signal`` and ``sigaction`` typed, or None where there is none."""
    if _state["libc"] is None:
        if not hasattr(signal, "SIGBUS"):
            _state["libc"] = False
            return None
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.signal.restype = ctypes.c_void_p
            libc.signal.argtypes = (ctypes.c_int, ctypes.c_void_p)
            libc.sigaction.restype = ctypes.c_int
            libc.sigaction.argtypes = (ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p)
        except (OSError, AttributeError):
            libc = False
        _state["libc"] = libc
    return _state["libc"] or None


def _set_message() -> None:
    names = " or ".join(dict.fromkeys(_open))
    _message[0] = (
        f"caffepy: error: database {names} was truncated or changed while being "
        "read (bus error)\n"
    ).encode("utf-8", "replace")


def _install() -> None:
    libc = _libc()
    if libc is None:
        return
    # NOTE: the old action is saved as opaque bytes (larger than any libc's
    # struct sigaction) and given back as is, flags included.
    old = ctypes.create_string_buffer(1024)
    if libc.sigaction(signal.SIGBUS, None, old) != 0:
        return
    if _state["callback"] is None:
        _state["callback"] = ctypes.CFUNCTYPE(None, ctypes.c_int)(_on_bus_error)
    handler = ctypes.cast(_state["callback"], ctypes.c_void_p)
    if libc.signal(signal.SIGBUS, handler) == ctypes.c_void_p(-1).value:
        return
    _state["old"], _state["installed"] = old, True


def _uninstall() -> None:
    libc = _libc()
    if libc is not None and _state["installed"]:
        libc.sigaction(signal.SIGBUS, _state["old"], None)
    _state["installed"], _state["old"] = False, None


def guard(path: str | os.PathLike) -> None:
    """Name ``path`` in the bus-error line; install the handler for the first."""
    with _LOCK:
        _open.append(os.path.abspath(os.fspath(path)))
        _set_message()
        if not _state["installed"]:
            _install()


def unguard(path: str | os.PathLike) -> None:
    """Forget one :func:`guard` of ``path``; restore the old handler after the
    last."""
    with _LOCK:
        name = os.path.abspath(os.fspath(path))
        if name in _open:
            _open.remove(name)
        _set_message()
        if not _open:
            _uninstall()


def installed() -> bool:
    """Whether the SIGBUS handler is in place now."""
    return bool(_state["installed"])


def check_size(fd: int, size: int, path: str, data_file: str) -> None:
    """Refuse to read on when the data file behind ``fd`` is now shorter than
    ``size`` (its size at open): reading its mapped pages would fault.

    Raises:
        DataError: the file shrank (another process truncated or rewrote it).
    """
    # NOTE: lseek to the end is the cheapest way to the current size (no stat
    # structure); the descriptor is never read, so its offset does not matter.
    now = os.lseek(fd, 0, os.SEEK_END)
    if now < size:
        raise DataError(
            f"database {path!r} was truncated while being read: {data_file} shrank "
            f"from {size} to {now} bytes (another process rewrote or truncated it); "
            "stop the other process or read a copy"
        )
