"""Exceptions raised by lsmkv. All derive from LsmkvError."""
import os
from errno import EACCES, EEXIST, ENOENT, ENOTDIR


class LsmkvError(Exception):
    """Base class of every lsmkv error: one except clause catches them all.

    >>> import lsmkv, tempfile
    >>> db = lsmkv.DB(tempfile.mkdtemp())
    >>> db.close()
    >>> try:
    ...     db.get(b"k")
    ... except lsmkv.LsmkvError as e:
    ...     print(type(e).__name__, "-", e)
    ClosedError - the database is closed
    """


class CorruptionError(LsmkvError):
    """Stored data failed a checksum or a format check.

    Attributes: path (the file), offset (byte offset of the damaged record or
    block, or None when not known), detail (what was wrong).

    >>> import lsmkv
    >>> e = lsmkv.CorruptionError("/db/000012.sst", 4096, "block checksum mismatch")
    >>> print(e)
    corruption in /db/000012.sst at offset 4096: block checksum mismatch
    >>> e.path, e.offset, e.detail
    ('/db/000012.sst', 4096, 'block checksum mismatch')
    >>> print(lsmkv.CorruptionError("/db/MANIFEST-000003", None, "truncated record"))
    corruption in /db/MANIFEST-000003: truncated record
    """

    def __init__(self, path, offset, detail):
        self.path = str(path)
        self.offset = offset
        self.detail = detail
        where = self.path if offset is None else f"{self.path} at offset {offset}"
        super().__init__(f"corruption in {where}: {detail}")

    def __reduce__(self):
        return (type(self), (self.path, self.offset, self.detail))


class LockError(LsmkvError):
    """The database directory is locked by another process (the message gives its
    pid when the system tells it) or by another DB object or repair in this one.

    >>> import lsmkv, tempfile
    >>> d = tempfile.mkdtemp()
    >>> db = lsmkv.DB(d)
    >>> lsmkv.DB(d)
    Traceback (most recent call last):
      ...
    lsmkv.errors.LockError: ... is already open in this process (by a DB)
    >>> db.close()
    >>> lsmkv.DB(d).close()       # free again once closed
    """


class OpenError(LsmkvError):
    """lsmkv.DB(path) found no database it may open at path; a subclass says why.

    Each subclass is also the OSError it stands for (FileNotFoundError,
    FileExistsError, NotADirectoryError, PermissionError), with errno, strerror
    and filename set, so OSError handlers keep working. Attributes: path (the
    database directory), filename (the file or directory concerned). str(e)
    names the path. A directory with database files but no CURRENT raises
    CorruptionError instead, and a locked one LockError.

    >>> import lsmkv, tempfile
    >>> try:
    ...     lsmkv.DB(tempfile.mkdtemp() + "/nothing", create_if_missing=False)
    ... except lsmkv.OpenError as e:
    ...     print(type(e).__name__, isinstance(e, FileNotFoundError), e.path == e.filename)
    DatabaseNotFoundError True True
    """

    _ERRNO = None

    def __init__(self, path, message, filename=None, errno=None):
        self.path = str(path)
        self.message = message
        if isinstance(self, OSError):
            code = self._ERRNO if errno is None else errno
            OSError.__init__(self, code, os.strerror(code), self.path if filename is None else filename)
        else:
            super().__init__(message)

    def __str__(self):
        return self.message

    def __reduce__(self):
        return (type(self), (self.path, self.message, getattr(self, "filename", None),
                             getattr(self, "errno", None)))


class DatabaseNotFoundError(OpenError, FileNotFoundError):
    """No database at the path and create_if_missing=False: the directory is
    missing, or holds no CURRENT (and no database files). Nothing is created.

    >>> import os, lsmkv, tempfile
    >>> d = tempfile.mkdtemp()
    >>> lsmkv.DB(d, create_if_missing=False)
    Traceback (most recent call last):
      ...
    lsmkv.errors.DatabaseNotFoundError: no database in ...: CURRENT does not exist (create_if_missing is false)
    >>> os.listdir(d)                       # left as it was: not even a LOCK
    []
    """

    _ERRNO = ENOENT


class DatabaseExistsError(OpenError, FileExistsError):
    """A database exists at the path and error_if_exists=True.

    >>> import lsmkv, tempfile
    >>> d = tempfile.mkdtemp()
    >>> lsmkv.DB(d).close()
    >>> try:
    ...     lsmkv.DB(d, error_if_exists=True)
    ... except FileExistsError as e:
    ...     print(type(e).__name__, e.errno == 17, str(e).endswith("(error_if_exists is true)"))
    DatabaseExistsError True True
    """

    _ERRNO = EEXIST


class NotADatabaseError(OpenError, NotADirectoryError):
    """The path, or a directory on the way to it, is not a directory.

    >>> import lsmkv, tempfile
    >>> f = tempfile.mkstemp()[1]
    >>> lsmkv.DB(f)
    Traceback (most recent call last):
      ...
    lsmkv.errors.NotADatabaseError: ... is not a directory
    """

    _ERRNO = ENOTDIR


class DatabasePermissionError(OpenError, PermissionError):
    """Permission denied on the database directory or one of its files, at open.
    filename is what was refused; errno is EACCES or EPERM.

    >>> import lsmkv
    >>> e = lsmkv.DatabasePermissionError("/db", "cannot open the database at /db: "
    ...                                   "permission denied on /db/CURRENT", "/db/CURRENT")
    >>> isinstance(e, PermissionError), e.filename, e.errno
    (True, '/db/CURRENT', 13)
    """

    _ERRNO = EACCES


class ClosedError(LsmkvError):
    """An operation was attempted on a closed DB, snapshot or iterator.

    >>> import lsmkv, tempfile
    >>> db = lsmkv.DB(tempfile.mkdtemp())
    >>> db.close()
    >>> db.put(b"k", b"v")
    Traceback (most recent call last):
      ...
    lsmkv.errors.ClosedError: the database is closed
    """


class ForkedError(ClosedError):
    """A DB handle was used in a fork() child of the process that opened it.

    A handle does not survive fork(): its background threads are not in the child,
    and its log is shared with the parent. In the child every operation on the
    inherited handle raises this error (a ClosedError); close() there releases only
    the child's memory and touches no file. Open the database in the child instead,
    once the parent has closed it (multiprocessing, gunicorn and celery workers open
    their own handle after the fork; docs/getting-started.md, "Processes").

    >>> import lsmkv, os, tempfile
    >>> db = lsmkv.DB(tempfile.mkdtemp())
    >>> db.put(b"k", b"v")
    >>> pid = os.fork()
    >>> if pid == 0:                              # the child
    ...     try:
    ...         db.get(b"k")
    ...     except lsmkv.ForkedError:
    ...         os._exit(7)
    ...     os._exit(1)
    >>> os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]), db.get(b"k")
    (7, b'v')
    >>> db.close()
    """


class ReadOnlyError(LsmkvError):
    """A write (put, delete, write, flush, compact_range, sync_wal) on a DB opened
    with read_only=True or secondary=: those handles only read.

    >>> import lsmkv, tempfile
    >>> d = tempfile.mkdtemp()
    >>> lsmkv.DB(d).close()
    >>> with lsmkv.DB(d, read_only=True) as ro:
    ...     ro.put(b"k", b"v")
    Traceback (most recent call last):
      ...
    lsmkv.errors.ReadOnlyError: the database is open read-only (read_only=True): put, delete and write are refused
    """


class FollowerError(OpenError):
    """A read-only or secondary DB could not read a consistent state of a database
    another process was changing: every attempt found a file named by the MANIFEST
    already gone (the primary flushed, compacted or restarted meanwhile), or the
    follower was asked what it cannot do (a snapshot of a secondary). Trying
    again usually succeeds.

    >>> import lsmkv, tempfile
    >>> d, own = tempfile.mkdtemp(), tempfile.mkdtemp()
    >>> lsmkv.DB(d).close()
    >>> with lsmkv.DB(d, secondary=own) as sec:
    ...     sec.snapshot()
    Traceback (most recent call last):
      ...
    lsmkv.errors.FollowerError: a secondary has no snapshots: catch_up() replaces its state, and the primary's compactions drop what a snapshot of it would need; an iterator keeps the state it started with
    """


class BackgroundError(LsmkvError, OSError):
    """Background work (flush or compaction) failed; the DB is read-only until reopened.

    An OSError too, since the cause is almost always one (disk full, I/O error),
    so `except OSError` handlers catch it. Once raised, writes keep raising it
    until the DB is reopened; the message carries the cause.

    >>> import lsmkv
    >>> try:       # as a write raises it after a flush met a full disk
    ...     raise lsmkv.BackgroundError("background work failed: [Errno 28] No space left on device")
    ... except OSError as e:
    ...     print(isinstance(e, lsmkv.LsmkvError), e)
    True background work failed: [Errno 28] No space left on device
    """


class InvalidIteratorError(LsmkvError, ValueError):
    """key(), value(), item(), next() or prev() on an lsmkv.Iterator that stands on
    no entry: not positioned yet, or moved past either end (valid() is False).
    Like plyvel's IteratorInvalidError; a ValueError too.

    >>> import lsmkv, tempfile
    >>> db = lsmkv.DB(tempfile.mkdtemp())
    >>> with db.iterator() as it:
    ...     it.seek(b"a")                     # an empty DB: nothing at or after b"a"
    ...     try:
    ...         it.key()
    ...     except lsmkv.InvalidIteratorError as e:
    ...         print(it.valid(), isinstance(e, ValueError))
    False True
    >>> db.close()
    """


class ConflictError(LsmkvError):
    """A transaction's commit found that a key it wrote, or read with
    get_for_update(), was written by another commit (any write: a plain put or
    delete too) after the transaction began; nothing of the transaction was
    applied and it is over. Retry the work in a new transaction. Attribute: key
    (the first conflicting key found).

    >>> import lsmkv, tempfile
    >>> db = lsmkv.DB(tempfile.mkdtemp())
    >>> db.put(b"n", b"1")
    >>> txn = db.transaction()
    >>> n = int(txn.get_for_update(b"n"))
    >>> db.put(b"n", b"5")                 # another writer, after the transaction began
    >>> txn.put(b"n", b"%d" % (n + 1))
    >>> try:
    ...     txn.commit()
    ... except lsmkv.ConflictError as e:
    ...     print(e.key, db.get(b"n"))
    b'n' b'5'
    >>> db.close()
    """

    def __init__(self, message, key=None):
        self.key = key
        super().__init__(message)

    def __reduce__(self):
        return (type(self), (self.args[0], self.key))


class MergeOperatorError(LsmkvError, ValueError):
    """A merge operator cannot fold a key's operands (uint64add given a value that
    is not 8 bytes, a callable returning something other than bytes), a merge
    without a merge_operator, or a DB reopened with another merge operator than
    the one it records. A ValueError too.

    >>> import lsmkv, tempfile
    >>> db = lsmkv.DB(tempfile.mkdtemp())
    >>> try:
    ...     db.merge(b"k", b"x")
    ... except lsmkv.MergeOperatorError as e:
    ...     print(e)
    db.merge needs a merge operator: open the database with merge_operator=... (lsmkv.DB(path, merge_operator='uint64add'))
    >>> db.close()
    """


class ColumnFamilyError(LsmkvError, ValueError):
    """A column family that does not exist (db.column_family, drop_column_family),
    or one created under a name already taken. A ValueError too.

    >>> import lsmkv, tempfile
    >>> db = lsmkv.DB(tempfile.mkdtemp())
    >>> try:
    ...     db.column_family("users")
    ... except lsmkv.ColumnFamilyError as e:
    ...     print(e)
    no column family 'users' (families: 'default')
    >>> db.close()
    """
