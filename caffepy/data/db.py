"""LMDB databases of Datum records: a positional reader and a crash-safe writer.

Reading: ``lmdb.open(path, readonly=True, lock=False)``, so read-only folders
(fixtures, shared datasets) and concurrent readers work. LMDB refuses to open the
same environment twice in one process, so readers of the same path (a train and
a test net over one database) share one environment, each with its own read
transaction and cursor.

Writing: into ``<path>.partial``, renamed to ``<path>`` once complete, so a
killed conversion never looks like a finished database. A writer holds an
exclusive lock (``<path>.partial.lock``) while it writes, so a second writer
to the same path refuses instead of deleting the first one's work; a writer
never touches an existing database.

Caffe's other backend, LevelDB, is read and written through plyvel (the
``leveldb`` extra; :mod:`caffepy.data.leveldb`): :func:`open_db_reader` and
:func:`open_db_writer` choose the backend, and read a database of the other kind
than the prototxt says with a warning, as LMDB folders under ``backend: LEVELDB``.
"""

import contextlib
import fcntl
import os
import shutil
import threading
import warnings

from caffepy.data import busguard
from caffepy.errors import DataError

#: DataParameter.DB values (as caffe.proto).
LEVELDB, LMDB = 0, 1

_ENVS = {}
_ENVS_LOCK = threading.Lock()


def _lmdb():
    try:
        import lmdb
    except ImportError:  # pragma: no cover - a dependency of caffepy
        raise DataError(
            "reading databases needs the lmdb package: pip install lmdb"
        ) from None
    return lmdb


def _is_leveldb(folder):
    names = os.listdir(folder)
    return "CURRENT" in names and any(n.startswith("MANIFEST") for n in names)


def resolve_source(path, backend=LMDB, what="data source"):
    """Check that ``path`` is an LMDB database and return it.

    A prototxt with ``backend: LEVELDB`` (the proto's default, so also one with
    no backend) whose folder holds an LMDB database is read as LMDB, with a
    warning.

    Raises:
        DataError: missing path, a LevelDB database (with how to convert it), or
            a folder that is no database.
    """
    path = os.fspath(path)
    if not os.path.exists(path) and os.path.exists(path + ".partial"):
        if _write_locked(path + ".partial"):
            raise DataError(
                f"{what} {path!r} is locked: another process is still writing it "
                f"(into {path}.partial); wait for the conversion to finish"
            )
        raise DataError(
            f"{what} {path!r} does not exist, but {path}.partial does: a conversion "
            "was killed before it finished; remove the .partial folder and convert "
            "again"
        )
    if not os.path.exists(path):
        where = "" if os.path.isabs(path) else f" (relative to {os.getcwd()})"
        raise DataError(f"{what} {path!r} does not exist{where}")
    if os.path.isdir(path):
        if os.path.isfile(os.path.join(path, "data.mdb")):
            is_lmdb = True
        elif _is_leveldb(path):
            raise DataError(
                f"{what} {path!r} is a LevelDB database; caffepy reads LMDB only. "
                "Convert the images again with `caffepy convert_imageset ... "
                "--backend lmdb` and point the source at the new database"
            )
        else:
            raise DataError(f"{what} {path!r} is not an LMDB database (no data.mdb)")
    else:
        is_lmdb = True  # an LMDB written with subdir=False is a single file
    if is_lmdb and backend == LEVELDB:
        warnings.warn(
            f"{what} {path!r}: backend is LEVELDB (the default when no backend is "
            "given) but the database is LMDB; reading it as LMDB (set backend: LMDB)",
            UserWarning,
            stacklevel=3,
        )
    return path


class _Env:
    """One open environment, shared by the readers of its path: a descriptor
    of its data file and the file's size at open, to see a truncation."""

    __slots__ = ("env", "users", "fd", "size", "data_file", "path")

    def __init__(self, env, fd, size, data_file, path):
        self.env, self.users, self.fd, self.size = env, 0, fd, size
        self.data_file, self.path = data_file, path


def _acquire_env(path):
    lmdb = _lmdb()
    key = os.path.realpath(path)
    with _ENVS_LOCK:
        entry = _ENVS.get(key)
        if entry is None:
            subdir = os.path.isdir(path)
            try:
                env = lmdb.open(
                    path,
                    readonly=True,
                    lock=False,
                    readahead=True,
                    subdir=subdir,
                    max_readers=512,
                )
            except (
                lmdb.InvalidError,
                lmdb.CorruptedError,
                lmdb.VersionMismatchError,
            ) as err:
                raise DataError(
                    f"LMDB database {path!r} is corrupt or not an LMDB database "
                    f"({_lmdb_reason(err)})"
                ) from None
            except lmdb.Error as err:
                raise DataError(
                    f"cannot open LMDB database {path!r}: {_lmdb_reason(err)}"
                ) from None
            data_file = os.path.join(path, "data.mdb") if subdir else path
            try:
                size = _check_complete(env, data_file, path)
                fd = os.open(data_file, os.O_RDONLY)
            except BaseException:
                env.close()
                raise
            entry = _ENVS[key] = _Env(env, fd, size, data_file, path)
            busguard.guard(path)
        entry.users += 1
        return key, entry


def _lmdb_reason(err):
    """The useful part of an lmdb error ("MDB_INVALID: File is not an LMDB file")."""
    text = str(err)
    return text.split(": ", 1)[1] if text.count(": ") >= 2 else text


def _check_complete(env, data_file, path):
    """Refuse a database whose data file is shorter than its pages say (a copy or
    download cut short): LMDB maps the file, and reading a page past its end
    would kill the process with SIGBUS instead of raising an error. Returns
    the file's size, which must not shrink while the database is read."""
    needed = (env.info()["last_pgno"] + 1) * env.stat()["psize"]
    size = os.path.getsize(data_file)
    if size < needed:
        raise DataError(
            f"LMDB database {path!r} is truncated: {data_file} holds {size} bytes "
            f"but its pages need {needed}; copy or convert it again"
        )
    return size


def _corrupt(path, err):
    return DataError(f"LMDB database {path!r} is corrupt: {_lmdb_reason(err)}")


def _release_env(key):
    with _ENVS_LOCK:
        entry = _ENVS.get(key)
        if entry is None:
            return
        entry.users -= 1
        if entry.users <= 0:
            del _ENVS[key]
            entry.env.close()
            os.close(entry.fd)
            busguard.unguard(entry.path)


class LMDBReader:
    """Records of an LMDB database in key order, with an integer position.

    ``read()`` returns the record at the position and advances, wrapping
    around to the first record after the last, so ``position`` (0 .. len-1) is
    all a snapshot needs to resume exactly. One reader must be used by one
    thread at a time.

    Args:
        path: the database folder (or file); see :func:`resolve_source`.
        backend: ``LMDB`` or ``LEVELDB`` as the prototxt says.

    Raises:
        DataError: missing, not LMDB, unreadable, or empty.
    """

    def __init__(self, path, backend=LMDB):
        self.path = resolve_source(path, backend)
        self._key, entry = _acquire_env(self.path)
        env, self._fd, self._size = entry.env, entry.fd, entry.size
        self._data_file = entry.data_file
        lmdb = _lmdb()
        try:
            try:
                self._txn = env.begin(buffers=False)
                self._len = self._txn.stat()["entries"]
                if self._len == 0:
                    raise DataError(
                        f"LMDB database {self.path!r} is empty (no records)"
                    )
                self._cursor = self._txn.cursor()
                self._cursor.first()
            except lmdb.Error as err:
                raise _corrupt(self.path, err) from None
        except BaseException:
            self._txn = None
            _release_env(self._key)
            raise
        self.position = 0

    def __len__(self):
        return self._len

    def check_unchanged(self):
        """Raise a DataError if the data file shrank since the database was
        opened (another process truncated it): reading on would fault."""
        busguard.check_size(self._fd, self._size, self.path, self._data_file)

    def peek(self):
        """(key, value) at the position, without advancing."""
        # NOTE: one lseek per record (well under a microsecond on Linux) turns a
        # truncation between reads into an error instead of a bus error.
        self.check_unchanged()
        try:
            return (self._cursor.key().decode("utf-8", "replace"), self._cursor.value())
        except _lmdb().Error as err:
            raise _corrupt(self.path, err) from None

    def read(self):
        """(key, value) at the position; then advance (wrapping around)."""
        item = self.peek()
        self.position += 1
        try:
            if not self._cursor.next():
                self._cursor.first()
                self.position = 0
        except _lmdb().Error as err:
            raise _corrupt(self.path, err) from None
        return item

    def seek(self, position):
        """Move to the ``position``-th record in key order (0-based)."""
        position = int(position)
        if not 0 <= position < self._len:
            raise DataError(
                f"position {position} is out of range for {self.path!r} "
                f"({self._len} records)"
            )
        cursor = self._cursor
        self.check_unchanged()
        try:
            if position < self.position:
                cursor.first()
                self.position = 0
            while self.position < position:
                cursor.next()
                self.position += 1
        except _lmdb().Error as err:
            raise _corrupt(self.path, err) from None

    def items(self):
        """Every (key, value) from the first record to the last (moves the cursor)."""
        self._cursor.first()
        self.position = 0
        for _ in range(self._len):
            yield self.read()

    def close(self):
        if self._txn is not None:
            self._txn.abort()
            self._txn = self._cursor = None
            _release_env(self._key)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        with contextlib.suppress(Exception):  # interpreter shutdown
            self.close()


def _lock_path(partial):
    return partial + ".lock"


def _try_lock(partial):
    """An open descriptor holding the exclusive write lock of ``partial``, or None
    when another process holds it."""
    fd = os.open(_lock_path(partial), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


def _write_locked(partial):
    """Whether a writer is writing ``partial`` now (holds its lock)."""
    if not os.path.exists(_lock_path(partial)):
        return False
    try:
        fd = os.open(_lock_path(partial), os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def db_is_nonempty(path):
    """Whether ``path`` exists and is not an empty folder."""
    if not os.path.lexists(path):
        return False
    return not (os.path.isdir(path) and not os.listdir(path))


class LMDBWriter:
    """Write an LMDB database crash-safely (``<path>.partial`` then rename).

    Puts are committed every ``commit_every`` records (Caffe commits every 1000);
    when the memory map is full, the transaction is redone with a doubled map.

    Args:
        path: the database folder to create; must not exist (or be empty).
        map_size: the initial map size in bytes (grown as needed).
        commit_every: records per transaction.

    Raises:
        DataError: ``path`` exists and is not empty, or another process is
            writing it.
    """

    def __init__(self, path, map_size=1 << 28, commit_every=1000):
        lmdb = _lmdb()
        self.path = os.path.normpath(os.fspath(path))
        self._env = self._lock = None
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
            if os.path.isdir(self.partial):  # left by a killed conversion
                shutil.rmtree(self.partial)
            elif os.path.lexists(self.partial):
                os.unlink(self.partial)
            self.map_size = int(map_size)
            self.commit_every = int(commit_every)
            self.count = 0
            self._pending = []
            # NOTE: no fsync per commit: the records are in <path>.partial until
            # close(), which syncs once before the rename.
            self._env = lmdb.open(
                self.partial,
                map_size=self.map_size,
                subdir=True,
                meminit=False,
                sync=False,
            )
        except BaseException:
            self._unlock()
            raise

    def _unlock(self):
        if self._lock is not None:
            with contextlib.suppress(OSError):
                os.unlink(_lock_path(self.partial))
            os.close(self._lock)
            self._lock = None

    def put(self, key, value):
        """Add one record (key: str or bytes; value: bytes)."""
        if isinstance(key, str):
            key = key.encode("utf-8")
        self._pending.append((key, value))
        self.count += 1
        if len(self._pending) >= self.commit_every:
            self.commit()

    def commit(self):
        """Write the pending records in one transaction, growing the map if needed."""
        lmdb = _lmdb()
        while self._pending:
            try:
                with self._env.begin(write=True) as txn:
                    for key, value in self._pending:
                        txn.put(key, value)
            except lmdb.MapFullError:
                # NOTE: the aborted transaction wrote nothing; redo it in a bigger map.
                self.map_size *= 2
                self._env.set_mapsize(self.map_size)
                continue
            self._pending = []

    def close(self):
        """Commit, sync, and rename the finished database into place."""
        if self._env is None:
            return
        try:
            self.commit()
            self._env.sync(True)
            self._env.close()
            self._env = None
            try:
                if os.path.isdir(self.path) and not os.listdir(self.path):
                    os.rmdir(self.path)  # an empty folder: replaced by the rename
                os.rename(self.partial, self.path)
            except OSError as err:
                raise DataError(
                    f"{self.path}: cannot move the finished database into place "
                    f"({err.strerror}); did another program create it meanwhile? "
                    f"The records are kept in {self.partial}"
                ) from None
        finally:
            self._unlock()

    def abort(self):
        """Discard everything written (removes ``<path>.partial``)."""
        if self._env is not None:
            self._env.close()
            self._env = None
        if self._lock is not None:
            shutil.rmtree(self.partial, ignore_errors=True)
            self._unlock()

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self.close()
        else:
            self.abort()

    def __del__(self):
        with contextlib.suppress(Exception):  # interpreter shutdown
            self._unlock()


def count_records(path):
    """The number of records in an LMDB or LevelDB database (0 when unreadable)."""
    lmdb = _lmdb()
    try:
        with open_db_reader(path) as reader:
            return len(reader)
    except (DataError, lmdb.Error):
        return 0


def is_leveldb(path):
    """Whether ``path`` is a LevelDB database folder (CURRENT and a MANIFEST)."""
    path = os.fspath(path)
    return os.path.isdir(path) and _is_leveldb(path)


def _backend_code(backend):
    if isinstance(backend, str):
        name = backend.strip().lower()
        if name not in ("lmdb", "leveldb"):
            raise DataError(
                f"unknown database backend {backend!r}; expected lmdb or leveldb"
            )
        return LMDB if name == "lmdb" else LEVELDB
    return int(backend)


def open_db_reader(path, backend=LMDB, what="data source"):
    """A positional reader of the database at ``path``: LevelDB when the folder
    is one (a warning when ``backend`` says LMDB), else LMDB (see
    :class:`LMDBReader`, which warns for an LMDB under ``backend: LEVELDB``).

    Args:
        path: the database folder.
        backend: ``LMDB``/``LEVELDB`` (DataParameter.DB) or "lmdb"/"leveldb".
        what: what the database is, for messages.

    Raises:
        DataError: as the readers (a LevelDB without plyvel names the extra).
    """
    code = _backend_code(backend)
    if is_leveldb(path):
        from caffepy.data.leveldb import LevelDBReader

        if code == LMDB:
            warnings.warn(
                f"{what} {os.fspath(path)!r}: backend is LMDB but the database is "
                "LevelDB; reading it as LevelDB (set backend: LEVELDB)",
                UserWarning,
                stacklevel=2,
            )
        return LevelDBReader(path)
    return LMDBReader(path, code)


def open_db_writer(path, backend="lmdb"):
    """A crash-safe writer of a new database: :class:`LMDBWriter` or
    :class:`~caffepy.data.leveldb.LevelDBWriter` (``backend`` "lmdb"/"leveldb"
    or LMDB/LEVELDB)."""
    if _backend_code(backend) == LEVELDB:
        from caffepy.data.leveldb import LevelDBWriter

        return LevelDBWriter(path)
    return LMDBWriter(path)
