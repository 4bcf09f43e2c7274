"""Crash-safe file writes: temporary file in the same folder, flush, fsync, rename.

A kill or a full disk at any moment leaves either the old file or the new one,
never a torn file. A writer only ever replaces a regular file (never a device,
a FIFO, a directory or a symbolic link), and what it creates follows the umask
as ``open()`` would. :class:`AtomicGroup` writes several files and renames them
in a given order once all are written (a snapshot's weights, sidecar and state);
:func:`read_regular_bytes` refuses inputs that are not regular files before
reading them (a FIFO or ``/dev/zero`` would block or never end).
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
import zlib
from collections.abc import Callable

from caffepy.errors import InputFileError

_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def _kind(mode: int) -> str:
    for test, name in _KINDS:
        if test(mode):
            return name
    return "not a regular file"


def check_output_path(path: str | os.PathLike) -> None:
    """Refuse to replace ``path`` unless it is absent or a regular file.

    Raises:
        InputFileError: ``path`` is a symbolic link, a directory, a FIFO, a device
            or a socket.
    """
    path = os.fspath(path)
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if stat.S_ISLNK(st.st_mode):
        raise InputFileError(
            f"{path}: refusing to write over a symbolic link (it points to "
            f"{os.readlink(path)!r}); give the real path or remove the link"
        )
    if not stat.S_ISREG(st.st_mode):
        raise InputFileError(
            f"{path}: refusing to write over {_kind(st.st_mode)}; caffepy only "
            "replaces regular files"
        )


def _umask() -> int:
    """The process's umask, without changing it where /proc tells it."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)  # pragma: no cover - no /proc
    os.umask(mask)  # pragma: no cover
    return mask  # pragma: no cover


def _fsync_folder(folder: str) -> None:
    try:  # make the rename itself durable
        dfd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:  # pragma: no cover - some filesystems refuse fsync on dirs
        pass


def _temp_beside(path: str) -> tuple[int, str]:
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(
        prefix="." + os.path.basename(path) + ".", suffix=".tmp", dir=folder
    )
    # NOTE: mkstemp creates 0600; the file a user gets follows the umask.
    os.fchmod(fd, 0o666 & ~_umask())
    return fd, tmp


class AtomicGroup:
    """Files written to temporary names, then renamed in the order they were
    staged when the ``with`` block ends without an error; on an error (or a
    signal raising in it) every temporary file is removed and nothing is renamed.

    Example:
        with AtomicGroup() as group:
            group.write_bytes("a.caffemodel", model)
            group.write_bytes("a.solverstate", state)  # renamed last
    """

    def __init__(self) -> None:
        self._staged: list[tuple[str, str]] = []

    def __enter__(self) -> AtomicGroup:
        return self

    def stage(self, path: str | os.PathLike, write: Callable[[str], None]) -> str:
        """Reserve a temporary file beside ``path`` and call ``write(tmp)`` to
        fill it; return the temporary path."""
        path = os.fspath(path)
        check_output_path(path)
        fd, tmp = _temp_beside(path)
        os.close(fd)
        self._staged.append((tmp, path))
        write(tmp)
        return tmp

    def write_bytes(self, path: str | os.PathLike, data: bytes) -> str:
        """Stage ``data`` for ``path`` (flushed and fsynced); return the temp."""

        def write(tmp: str) -> None:
            with os.fdopen(os.open(tmp, os.O_WRONLY | os.O_TRUNC), "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())

        return self.stage(path, write)

    def rename_last(self, tmp: str) -> None:
        """Rename the staged temporary file ``tmp`` after every other one."""
        for k, (staged, _) in enumerate(self._staged):
            if staged == tmp:
                self._staged.append(self._staged.pop(k))
                return
        raise ValueError(f"{tmp} is not a staged file")

    def commit(self) -> None:
        """Rename every staged file over its target, in order."""
        folders = set()
        while self._staged:
            tmp, path = self._staged[0]
            check_output_path(path)
            os.replace(tmp, path)
            self._staged.pop(0)
            folders.add(os.path.dirname(os.path.abspath(path)))
        for folder in folders:
            _fsync_folder(folder)

    def discard(self) -> None:
        """Remove the temporary files not yet renamed."""
        for tmp, _ in self._staged:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        self._staged.clear()

    def __exit__(self, kind, value, tb) -> None:
        if kind is None:
            try:
                self.commit()
            except BaseException:
                self.discard()
                raise
        else:
            self.discard()


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` (bytes) to ``path`` atomically; raise OSError on failure
    (InputFileError when ``path`` is not a regular file)."""
    with AtomicGroup() as group:
        group.write_bytes(path, data)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` as UTF-8 to ``path`` atomically."""
    atomic_write_bytes(path, text.encode("utf-8"))


def check_input_file(path: str | os.PathLike, what: str = "input") -> None:
    """Refuse an existing ``path`` that is not a regular file (a FIFO, a device,
    a directory), before anything opens it.

    Raises:
        InputFileError: naming the path, what it is and ``what`` was expected.
    """
    path = os.fspath(path)
    try:
        st = os.stat(path)
    except OSError:
        return  # the reader reports a missing file in its own words
    if not stat.S_ISREG(st.st_mode):
        raise InputFileError(f"{path}: expected a {what} file, got {_kind(st.st_mode)}")


def read_regular_bytes(path: str | os.PathLike, what: str = "input") -> bytes:
    """The bytes of the regular file ``path``.

    The file is opened without blocking and checked before it is read, so a FIFO
    or a device given by mistake is refused instead of blocking or never ending.

    Raises:
        InputFileError: ``path`` is not a regular file.
        OSError: it cannot be opened or read (FileNotFoundError, ...).
    """
    path = os.fspath(path)
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise InputFileError(
                f"{path}: expected a {what} file, got {_kind(st.st_mode)}"
            )
        with os.fdopen(fd, "rb", closefd=False) as f:
            return f.read()
    finally:
        os.close(fd)


def file_crc32(path: str | os.PathLike) -> int:
    """CRC-32 of a file's bytes (read in 4 MiB chunks)."""
    crc = 0
    with open(path, "rb") as f:
        while chunk := f.read(1 << 22):
            crc = zlib.crc32(chunk, crc)
    return crc
