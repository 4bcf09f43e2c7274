"""Crash-safe file writes: temporary file in the same folder, flush, fsync, rename.

A kill or a full disk at any moment leaves either the old file or the new one,
never a torn file.
"""

import os
import tempfile


def atomic_write_bytes(path, data):
    """Write ``data`` (bytes) to ``path`` atomically; raise OSError on failure."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp",
                               dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    try:  # make the rename itself durable
        dfd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:  # pragma: no cover - some filesystems refuse fsync on dirs
        pass


def atomic_write_text(path, text):
    atomic_write_bytes(path, text.encode("utf-8"))
