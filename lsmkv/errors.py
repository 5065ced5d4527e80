"""Exceptions raised by lsmkv. All derive from LsmkvError."""


class LsmkvError(Exception):
    """Base class of every lsmkv error."""


class CorruptionError(LsmkvError):
    """Stored data failed a checksum or a format check.

    Attributes: path (the file), offset (byte offset of the damaged record or
    block, or None when not known), detail (what was wrong)."""

    def __init__(self, path, offset, detail):
        self.path = str(path)
        self.offset = offset
        self.detail = detail
        where = self.path if offset is None else f"{self.path} at offset {offset}"
        super().__init__(f"corruption in {where}: {detail}")

    def __reduce__(self):
        return (type(self), (self.path, self.offset, self.detail))


class LockError(LsmkvError):
    """The database directory is locked by another process (or another DB object)."""


class ClosedError(LsmkvError):
    """An operation was attempted on a closed DB, snapshot or iterator."""


class BackgroundError(LsmkvError, OSError):
    """Background work (flush or compaction) failed; the DB is read-only until reopened.

    An OSError too, since the cause is almost always one (disk full, I/O error)."""
