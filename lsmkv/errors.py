"""Exceptions raised by lsmkv. All derive from LsmkvError."""


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
