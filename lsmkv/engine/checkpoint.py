"""db.checkpoint(dir): a consistent copy of an open DB that opens as a DB.

The copy is made as RocksDB's Checkpoint makes one: flush the memtables (so
no log is needed), then, while no version edit may be installed (the engine's
manifest_lock) and no compaction runs, hard-link every live table into the
new directory (copy it where a link cannot be made:
another file system) and copy CURRENT and the MANIFEST it names. A hard link
costs no space until the source DB's compaction deletes its name for the table.

Thread safety: writes may go on during a checkpoint; the copy holds every
write acknowledged before the flush, and possibly some after it (those a
later flush installed before the copy), always whole batches and a prefix of
the writes (a flush writes the oldest memtable, whose writes all come before
the newer ones'). A flush finishing meanwhile waits for the copy.

With column families (lsmkv/engine/family.py) the families' flushes are separate
MANIFEST edits, so flushed tables alone could hold one family's part of a batch
and not another's: the live logs are copied too, under the engine mutex (no write
in flight), and the copy's open replays them into each family, every batch whole.

Invariants:
  1. The copied MANIFEST names exactly the tables linked (both are read under
     manifest_lock; checked by reading the copy back: a difference raises
     CorruptionError).
  2. Nothing is written into a directory that exists and is not empty.
"""
import os

from lsmkv.engine import filenames, mergeop
from lsmkv.engine.version import VersionSet
from lsmkv.errors import CorruptionError, LsmkvError


def checkpoint(db, dest):
    """Make a consistent copy of the open DB `db` in `dest` (new, or an empty
    directory); returns the number of tables linked or copied. See the module
    docstring; the DB method is lsmkv.DB.checkpoint."""
    dest = os.path.abspath(os.fspath(dest))
    check_destination(db.path, dest)
    if db.core.read_only:
        db.core.check_open()
        raise db.core.read_only_error("checkpoint() flushes the memtable into a table first")
    db.flush()
    os.makedirs(dest, exist_ok=True)
    # manifest_lock holds off every version edit (a flush's or a compaction's
    # install, a MANIFEST roll-over) while the tables are linked and the MANIFEST
    # copied, so the copy names exactly the linked tables; a table leaves the disk
    # only after an edit drops it, so none of them goes meanwhile
    with db.no_background_compactions(), db.core.manifest_lock:
        numbers = sorted(db.core.versions.live_numbers())
        for n in numbers:
            filenames.link_or_copy(filenames.table_name(db.path, n), filenames.table_name(dest, n))
        manifest = copy_manifest(db.path, dest)
        mergeop.record(dest, db.core.merge_op)      # the copy's operands need the same operator
        if db.core.versions.families:
            copy_logs(db.core, dest)
    filenames.fsync_dir(dest)
    check_copy(dest, numbers, manifest)
    return len(numbers)


def check_destination(src, dest):
    """LsmkvError unless dest is a new or empty directory other than the DB's."""
    if os.path.realpath(dest) == os.path.realpath(src):
        raise LsmkvError(f"checkpoint directory {dest} is the database itself")
    if os.path.exists(dest) and (not os.path.isdir(dest) or os.listdir(dest)):
        raise LsmkvError(f"checkpoint directory {dest} exists and is not empty")


def copy_manifest(src, dest):
    """Copy CURRENT and the MANIFEST it names from src to dest, each synced;
    returns the MANIFEST's name."""
    with open(filenames.current_name(src), "rb") as fh:
        current = fh.read()
    name = current.decode("ascii", "replace").strip()
    with open(os.path.join(src, name), "rb") as fh:
        data = fh.read()
    write_synced(os.path.join(dest, name), data)
    write_synced(filenames.current_name(dest), current)
    return name


def copy_logs(engine, dest):
    """Copy every log a family may still need (numbered from the smallest family
    log_number on), under the engine mutex: no write is half in them."""
    with engine.mutex:
        floor = engine.versions.min_log_number()
        for name in sorted(os.listdir(engine.path)):
            p = filenames.parse(name)
            if p and p[0] == "log" and p[1] >= floor:
                with open(os.path.join(engine.path, name), "rb") as fh:
                    data = fh.read()
                write_synced(os.path.join(dest, name), data)


def write_synced(path, data):
    """Write data to a new file at path and fsync it."""
    with open(path, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


def check_copy(dest, numbers, manifest):
    """The copied MANIFEST names exactly the tables that were linked."""
    vs = VersionSet(dest)
    vs.recover()
    named = vs.live_numbers()
    vs.close()
    if named != set(numbers):
        raise CorruptionError(os.path.join(dest, manifest), None,
                              "checkpoint manifest changed while it was copied; retry")
