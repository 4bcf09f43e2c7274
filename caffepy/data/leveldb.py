"""LevelDB databases of Datum records (Caffe's other backend), through plyvel.

The same interface as :class:`~caffepy.data.db.LMDBReader` and
:class:`~caffepy.data.db.LMDBWriter`: a positional reader that wraps around, and a
crash-safe writer (``<path>.partial`` renamed when complete, under an exclusive
lock). Keys are read in LevelDB's order (bytewise, as LMDB's). plyvel comes with
the ``leveldb`` extra.

LevelDB lets one process open a database at a time (its ``LOCK`` file), and
needs a writable folder even to read: readers of one path in this process share
one handle.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import threading
from collections.abc import Iterator
from typing import Any

from caffepy.data import busguard
from caffepy.errors import DataError

INSTALL_HINT = "pip install 'caffepy[leveldb]'"

_DBS: dict[str, list[Any]] = {}
_DBS_LOCK = threading.Lock()


def plyvel_module() -> Any:
    """The plyvel module, or a DataError naming the extra that installs it."""
    try:
        import plyvel
    except ImportError:
        raise DataError(
            f"LevelDB databases need the plyvel package: {INSTALL_HINT}"
        ) from None
    return plyvel


def _reason(err: Exception) -> str:
    text = err.args[0] if err.args else err
    return text.decode("utf-8", "replace") if isinstance(text, bytes) else str(text)


def _acquire(path: str) -> tuple[str, Any]:
    plyvel = plyvel_module()
    key = os.path.realpath(path)
    with _DBS_LOCK:
        entry = _DBS.get(key)
        if entry is None:
            try:
                db = plyvel.DB(path, create_if_missing=False)
            except plyvel.CorruptionError as err:
                raise DataError(
                    f"LevelDB database {path!r} is corrupt ({_reason(err)}); convert "
                    "the data again (caffepy convert_imageset ... --backend leveldb)"
                ) from None
            except (plyvel.Error, OSError) as err:
                raise DataError(
                    f"cannot open LevelDB database {path!r} ({_reason(err)}); LevelDB needs a "
                    "writable folder and one process at a time"
                ) from None
            entry = _DBS[key] = [db, 0]
            # NOTE: LevelDB maps its table files: a truncation faults as LMDB's.
            busguard.guard(key)
        entry[1] += 1
        return key, entry[0]


def _release(key: str) -> None:
    with _DBS_LOCK:
        entry = _DBS.get(key)
        if entry is None:
            return
        entry[1] -= 1
        if entry[1] <= 0:
            del _DBS[key]
            entry[0].close()
            busguard.unguard(key)


class LevelDBReader:
    """Records of a LevelDB database in key order, with an integer position.

    ``read()`` returns the record at the position and advances, wrapping around
    after the last; ``position`` is all a snapshot needs to resume. The records
    are those of a LevelDB snapshot taken when the reader opens.

    Args:
        path: the database folder.

    Raises:
        DataError: plyvel missing, not a LevelDB database, locked, corrupt or
            empty.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = os.fspath(path)
        self._key: str | None = None
        self._key, db = _acquire(self.path)
        try:
            self._snap = db.snapshot()
            self._len = sum(1 for _ in self._snap.iterator(include_value=False))
        except Exception as err:  # plyvel's errors: corrupt tables
            _release(self._key)
            self._key = None
            raise DataError(
                f"LevelDB database {self.path!r} is corrupt ({_reason(err)})"
            ) from None
        if self._len == 0:
            self.close()
            raise DataError(f"LevelDB database {self.path!r} is empty (no records)")
        self._rewind()

    def _rewind(self) -> None:
        self._it = self._snap.iterator()
        self._current = next(self._it)
        self.position = 0

    def __len__(self) -> int:
        return self._len

    def peek(self) -> tuple[str, bytes]:
        """(key, value) at the position, without advancing."""
        key, value = self._current
        return key.decode("utf-8", "replace"), value

    def read(self) -> tuple[str, bytes]:
        """(key, value) at the position; then advance (wrapping around)."""
        item = self.peek()
        try:
            self._current = next(self._it)
            self.position += 1
        except StopIteration:
            self._rewind()
        return item

    def seek(self, position: int) -> None:
        """Move to the ``position``-th record in key order (0-based)."""
        position = int(position)
        if not 0 <= position < self._len:
            raise DataError(
                f"position {position} is out of range for {self.path!r} "
                f"({self._len} records)"
            )
        if position < self.position:
            self._rewind()
        while self.position < position:
            self.read()

    def items(self) -> Iterator[tuple[str, bytes]]:
        """Every (key, value) from the first record to the last."""
        self._rewind()
        for _ in range(self._len):
            yield self.read()

    def close(self) -> None:
        if self._key is not None:
            self._it = self._snap = self._current = None
            _release(self._key)
            self._key = None

    def __enter__(self) -> LevelDBReader:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self.close()


class LevelDBWriter:
    """Write a LevelDB database crash-safely (``<path>.partial`` then rename), with
    Caffe's options (``write_buffer_size`` 256 MiB, ``block_size`` 64 KiB) and
    a write batch every ``commit_every`` records.

    Raises:
        DataError: plyvel missing, ``path`` exists and is not empty, or another
            process is writing it.
    """

    def __init__(self, path: str | os.PathLike, commit_every: int = 1000) -> None:
        from caffepy.data.db import _lock_path, _try_lock, db_is_nonempty

        plyvel = plyvel_module()
        self.path = os.path.normpath(os.fspath(path))
        self._db = self._lock = None
        if db_is_nonempty(self.path):
            raise DataError(
                f"{self.path}: DB exists, refusing to overwrite; remove it or choose "
                "another path"
            )
        self.partial = self.path + ".partial"
        os.makedirs(os.path.dirname(os.path.abspath(self.partial)), exist_ok=True)
        self._lock = _try_lock(self.partial)
        if self._lock is None:
            raise DataError(
                f"{self.path}: another process is writing this database (it holds "
                f"{_lock_path(self.partial)}); refusing to write it too"
            )
        try:
            if os.path.lexists(self.partial):  # left by a killed conversion
                shutil.rmtree(self.partial, ignore_errors=True)
            self._db = plyvel.DB(
                self.partial,
                create_if_missing=True,
                error_if_exists=True,
                write_buffer_size=256 << 20,
                block_size=64 << 10,
            )
        except BaseException:
            self._unlock()
            raise
        self.commit_every = int(commit_every)
        self.count = 0
        self._batch = self._db.write_batch()
        self._pending = 0

    def _unlock(self) -> None:
        from caffepy.data.db import _lock_path

        if self._lock is not None:
            with contextlib.suppress(OSError):
                os.unlink(_lock_path(self.partial))
            os.close(self._lock)
            self._lock = None

    def put(self, key: str | bytes, value: bytes) -> None:
        """Add one record."""
        if isinstance(key, str):
            key = key.encode("utf-8")
        self._batch.put(key, value)
        self.count += 1
        self._pending += 1
        if self._pending >= self.commit_every:
            self.commit()

    def commit(self) -> None:
        """Write the pending records (one LevelDB write batch)."""
        if self._pending:
            self._batch.write()
            self._batch = self._db.write_batch()
            self._pending = 0

    def close(self) -> None:
        """Commit, close and rename the finished database into place."""
        if self._db is None:
            return
        try:
            self.commit()
            self._db.close()
            self._db = None
            if os.path.isdir(self.path) and not os.listdir(self.path):
                os.rmdir(self.path)
            os.rename(self.partial, self.path)
        except OSError as err:
            raise DataError(
                f"{self.path}: cannot move the finished database into place "
                f"({err.strerror}); the records are kept in {self.partial}"
            ) from None
        finally:
            self._unlock()

    def abort(self) -> None:
        """Discard everything written."""
        if self._db is not None:
            self._db.close()
            self._db = None
        if self._lock is not None:
            shutil.rmtree(self.partial, ignore_errors=True)
            self._unlock()

    def __enter__(self) -> LevelDBWriter:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self._unlock()
