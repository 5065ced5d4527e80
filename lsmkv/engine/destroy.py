"""lsmkv.destroy(path): remove a database's files, and only those.

Like LevelDB's DestroyDB: take the directory lock (so an open DB, in this
process or another, makes it fail with LockError), delete the files a database
owns (CURRENT, MANIFEST-*, *.log, *.sst, CURRENT.*.tmp, then LOCK), and remove
the directory if nothing else is left in it. Files the database does not own
stay, and so does their directory.

Invariants:
  1. Only names lsmkv.engine.filenames recognises are removed (plus CURRENT, its
     temporaries and LOCK): a user's file in the directory is never touched.
  2. A directory that holds no database (no CURRENT and no database file) is
     refused with NotADatabaseError before anything is removed; a missing path
     is not an error (there is nothing to destroy).
  3. CURRENT goes first: an interrupted destroy leaves no directory that opens
     as a DB with part of its tables.
"""
import os
import re
from typing import Union

from lsmkv.engine import filenames
from lsmkv.engine.dirlock import DirLock
from lsmkv.errors import NotADatabaseError

_CURRENT_TMP = re.compile(r"^CURRENT\.\d+\.tmp$")


def owned(name: str) -> bool:
    """Whether a file of this name in a database directory belongs to the DB
    (LOCK excluded: it is removed last, after the lock is released)."""
    return name in ("CURRENT", "MERGE_OPERATOR") or filenames.parse(name) is not None or \
        bool(_CURRENT_TMP.match(name))


def destroy(path: "Union[str, os.PathLike[str]]") -> None:
    """Remove the database at path: its files, and the directory if that leaves
    it empty. Raises LockError if the DB is open, NotADatabaseError if path is
    not a directory or holds no database; a missing path is not an error.

    >>> import os, lsmkv, tempfile
    >>> d = tempfile.mkdtemp()
    >>> with lsmkv.DB(d) as db:
    ...     db.put(b"k", b"v")
    >>> open(os.path.join(d, "notes.txt"), "w").close()     # not the DB's
    >>> lsmkv.destroy(d)
    >>> os.listdir(d)
    ['notes.txt']
    >>> lsmkv.destroy(d)
    Traceback (most recent call last):
      ...
    lsmkv.errors.NotADatabaseError: ... holds no database
    """
    path = os.path.abspath(os.fspath(path))
    if not os.path.lexists(path):
        return
    if not os.path.isdir(path):
        raise NotADatabaseError(path, f"{path} is not a directory")
    if not any(owned(name) for name in os.listdir(path)):
        raise NotADatabaseError(path, f"{path} holds no database")
    with DirLock.acquire(path, "lsmkv.destroy"):
        names = [n for n in os.listdir(path) if owned(n)]
        names.sort(key=lambda n: n != "CURRENT")      # CURRENT first (invariant 3)
        for name in names:
            try:
                os.unlink(os.path.join(path, name))
            except FileNotFoundError:
                pass
        # LOCK goes while it is held: an opener that opened it before checks that
        # the file it locked is still the LOCK (lsmkv.engine.dirlock) and tries again
        try:
            os.unlink(filenames.lock_name(path))
        except FileNotFoundError:
            pass
        filenames.fsync_dir(path)
    try:
        os.rmdir(path)
    except OSError:
        pass                    # other files remain: they are not the DB's
