"""Names of the files in a database directory.

    CURRENT              name of the live MANIFEST, one line
    LOCK                 held with fcntl by the process that has the DB open
    MANIFEST-NNNNNN      log of version edits
    NNNNNN.log           write-ahead log of one memtable
    NNNNNN.sst           a sorted table
    *.tmp                temporary (CURRENT replacement); removed at open
"""
import os
import re
import shutil

from lsmkv.core.fileio import fsync_dir  # noqa: F401 - re-exported: one GIL release per call

_PATTERN = re.compile(r"^(?:(\d{6,})\.(log|sst)|MANIFEST-(\d{6,}))$")


def log_name(dbpath, number):
    return os.path.join(dbpath, f"{number:06d}.log")


def table_name(dbpath, number):
    return os.path.join(dbpath, f"{number:06d}.sst")


def manifest_name(dbpath, number):
    return os.path.join(dbpath, f"MANIFEST-{number:06d}")


def current_name(dbpath):
    return os.path.join(dbpath, "CURRENT")


def lock_name(dbpath):
    return os.path.join(dbpath, "LOCK")


def parse(name):
    """(kind, number) for a DB file name: kind in {'log', 'sst', 'manifest'}; else None."""
    m = _PATTERN.match(name)
    if not m:
        return None
    if m.group(3):
        return "manifest", int(m.group(3))
    return m.group(2), int(m.group(1))


def set_current(dbpath, manifest_number):
    """Point CURRENT at MANIFEST-manifest_number atomically and durably:
    write a temp file, fsync it, rename over CURRENT, fsync the directory."""
    tmp = os.path.join(dbpath, f"CURRENT.{manifest_number:06d}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.write(fd, f"MANIFEST-{manifest_number:06d}\n".encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, current_name(dbpath))
    fsync_dir(dbpath)


def link_or_copy(src, dst):
    """Hard-link src to dst; where a link cannot be made (another file system, or
    links not allowed), copy it and fsync the copy."""
    try:
        os.link(src, dst)
    except OSError:              # another filesystem (EXDEV), or links not allowed
        shutil.copyfile(src, dst)
        fd = os.open(dst, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
