"""lsmkv: an embedded LSM-tree key-value store with its hot paths in Cython.

Start reading at lsmkv/engine/db.py (the DB), lsmkv/engine/engine.py (its engine and
components), then lsmkv/core/dbcore.pyx (the per-operation path); docs/architecture.md
maps the rest. lsmkv.testing holds the hooks tests use to look inside.

    >>> import lsmkv, tempfile
    >>> d = tempfile.mkdtemp()
    >>> with lsmkv.DB(d) as db:
    ...     db.put(b"key", b"value")
    ...     db.get(b"key")
    b'value'
"""
from lsmkv.core.cursor import Iterator
from lsmkv.core.dbcore import WriteBatch
from lsmkv.core.merge import AppendOperator, MaxOperator, MergeOperator, UInt64AddOperator
from lsmkv.engine.db import DB, Snapshot
from lsmkv.engine.transaction import Transaction
from lsmkv.errors import (BackgroundError, ClosedError, ColumnFamilyError, ConflictError, CorruptionError,
                          FollowerError,
                          ForkedError, InvalidIteratorError, LockError, LsmkvError, MergeOperatorError,
                          ReadOnlyError)
from lsmkv.errors import (DatabaseExistsError, DatabaseNotFoundError, DatabasePermissionError,
                          NotADatabaseError, OpenError)
from lsmkv.engine.destroy import destroy
from lsmkv.engine.memory import memory_usage
from lsmkv.engine.repair import repair
from lsmkv.engine.pool import background_threads, set_background_threads
from lsmkv.engine.sharedcache import Cache
from lsmkv.engine.writebuffers import WriteBufferManager
from lsmkv.options import Options

__version__ = "0.1.0"
__all__ = ["DB", "Options", "Cache", "WriteBufferManager", "WriteBatch", "Snapshot", "Iterator", "LsmkvError", "CorruptionError",
           "LockError", "ClosedError", "ForkedError", "BackgroundError", "InvalidIteratorError", "OpenError",
           "MergeOperatorError", "MergeOperator", "AppendOperator", "MaxOperator", "UInt64AddOperator",
           "ReadOnlyError", "FollowerError", "ConflictError", "Transaction", "ColumnFamilyError",
           "DatabaseNotFoundError", "DatabaseExistsError", "NotADatabaseError",
           "DatabasePermissionError", "set_background_threads", "background_threads", "memory_usage",
           "destroy", "repair",
           "__version__"]
