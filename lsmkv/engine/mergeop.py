"""The merge operator a database was opened with, recorded in its directory.

The file MERGE_OPERATOR (docs/format.md) holds the operator's name (UTF-8, no
newline). It is written, atomically (a synced temporary file renamed, then the
directory synced), the first time the database is opened with a merge_operator,
and checked at every open after that: merge operands written under one operator
mean nothing to another, so opening with another operator, or with none (the
database may hold operands: reads and compactions could not fold them), raises
MergeOperatorError before anything is read or written.

Thread safety: called by the thread that opens the engine, with the directory
LOCK held (a read-only or secondary open only checks).
"""
import os

from lsmkv.engine import filenames
from lsmkv.errors import MergeOperatorError

NAME = "MERGE_OPERATOR"


def recorded(path):
    """The recorded operator name, or None."""
    try:
        with open(os.path.join(path, NAME), "rb") as fh:
            return fh.read().decode("utf-8")
    except FileNotFoundError:
        return None


def check(path, op):
    """Raise MergeOperatorError unless op (a MergeOperator or None) agrees with
    what the database at path records."""
    name = recorded(path)
    if name is None:
        return
    if op is None:
        raise MergeOperatorError(
            f"the database at {path} was opened with merge operator {name!r} and may hold merge "
            f"operands: open it with merge_operator={name!r} (or a callable of that name)")
    if op.name != name:
        raise MergeOperatorError(
            f"the database at {path} records merge operator {name!r}, not {op.name!r}: its merge "
            f"operands would be folded by another operator; open it with the one it records")


def record(path, op):
    """Record op's name (if op is not None and none is recorded yet)."""
    if op is None or recorded(path) is not None:
        return
    final = os.path.join(path, NAME)
    tmp = final + ".tmp"
    with open(tmp, "wb") as fh:
        fh.write(op.name.encode("utf-8"))
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, final)
    filenames.fsync_dir(path)


def builtin_recorded(path):
    """The recorded operator's name if it is a built-in's (a tool can open the DB
    with it: lsmkv.core.merge.resolve takes the name), else None."""
    name = recorded(path)
    if name is None or not (name in ("uint64add", "append", "max") or name.startswith("append:")):
        return None
    return name
