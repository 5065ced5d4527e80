"""Recovery at open: the directory check, log replay, flush at open, orphan cleanup.

Thread safety: runs in the opening thread before any background thread starts,
with the directory LOCK held (lsmkv.engine.dirlock); nothing else sees the engine
yet, so it takes no lock of its own.

Invariants:
  1. Nothing is created in a directory without a database unless
     create_if_missing; an existing database is refused with error_if_exists.
  2. Every table the MANIFEST names is opened (footer and meta blocks verified)
     before anything is written.
  3. Logs the MANIFEST does not cover are replayed oldest first; sequence numbers
     run on from one log to the next, and replay stops at the first gap, so the
     writes that survive are a prefix of the write order (point-in-time
     recovery). A sequence that goes back is corruption.
  4. With column families, one replay routes each record to its family's memtable
     (lsmkv.core.dbcore.replay_batch_cf); a family takes records only from logs
     at or after its log_number, and records of a dropped family are skipped.
  5. After recovery the MANIFEST is fresh (the whole state in one snapshot edit),
     one new log takes new writes, and every file no version, log or MANIFEST
     claims is removed (invariant 3 of lsmkv.engine.engine).
"""
import os
import stat

from lsmkv.core.dbcore import replay_batch_cf
from lsmkv.core.memtable import MemTable
from lsmkv.engine import filenames
from lsmkv.engine.logformat import read_log
from lsmkv.engine.version import VersionEdit, VersionSet
from lsmkv.errors import (CorruptionError, DatabaseExistsError, DatabaseNotFoundError,
                          NotADatabaseError)


def not_found(path):
    return DatabaseNotFoundError(path, f"no database in {path}: CURRENT does not exist "
                                 f"(create_if_missing is false)", filenames.current_name(path))


def check_directory(path, options):
    """Raise an OpenError unless path is a directory that holds a database or may
    get one (create_if_missing), creating it if missing and allowed. Nothing else
    is created here, and nothing at all with create_if_missing=False in a
    directory without CURRENT and database files (recover() checks again under
    the lock)."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        if not options.create_if_missing:
            raise DatabaseNotFoundError(path, f"{path} does not exist (create_if_missing is false)") from None
        try:
            os.makedirs(path, exist_ok=True)
        except (NotADirectoryError, FileExistsError):
            raise NotADatabaseError(path, f"{path} is not a directory (part of the path is a file)") from None
        return
    except NotADirectoryError:
        raise NotADatabaseError(path, f"{path} is not a directory (part of the path is a file)") from None
    if not stat.S_ISDIR(st.st_mode):
        raise NotADatabaseError(path, f"{path} is not a directory")
    if not options.create_if_missing:
        try:
            os.stat(filenames.current_name(path))
        except FileNotFoundError:
            if not any(filenames.parse(name) for name in os.listdir(path)):
                raise not_found(path) from None
            # database files without CURRENT: recover() raises CorruptionError


def recover(engine):
    """Bring engine to the state on disk (see the module invariants)."""
    e = engine
    opts = e.options
    path = e.path
    st = e.stats
    vs = e.versions = VersionSet(path)
    listing = os.listdir(path)
    parsed = {name: filenames.parse(name) for name in listing}
    if os.path.exists(filenames.current_name(path)):
        if opts.error_if_exists:
            raise DatabaseExistsError(path, f"a database already exists at {path} "
                                      f"(error_if_exists is true)", filenames.current_name(path))
        vs.recover()
    elif any(p is not None for p in parsed.values()):
        raise CorruptionError(filenames.current_name(path), None,
                              "CURRENT is missing but the directory holds database files")
    elif not opts.create_if_missing:
        raise not_found(path)         # removed since check_directory looked
    # open every table the version names (verifies footers and meta blocks)
    fams = {}
    for fid, fs in sorted(vs.families.items()):
        fams[fid] = e.families.open(fid, fs.name, fs.options)
    for v in [vs.current] + [fs.current for fs in vs.families.values()]:
        for level, f in v.files():
            tpath = filenames.table_name(path, f.number)
            if not os.path.exists(tpath):
                raise CorruptionError(tpath, None, "table named by the manifest is missing")
            e.tables.open(f.number, level)
    # replay the logs the manifest does not cover, oldest first
    logs = sorted(p[1] for p in parsed.values() if p and p[0] == "log" and p[1] >= vs.min_log_number())
    for p in parsed.values():
        if p and p[1] >= vs.next_file_number:
            vs.next_file_number = p[1] + 1
    edit = VersionEdit()
    last_seq = vs.last_sequence
    mem = MemTable()
    fmems = {fid: MemTable() for fid in fams}
    fedits = {fid: VersionEdit() for fid in fams}
    # Sequence numbers run on from one log to the next. A log whose first record
    # does not follow the previous log's last one means the end of that log was
    # lost (a power loss wrote the newer log's pages back but not the older's
    # unsynced tail): replay stops there. A sync=True write syncs the older logs
    # first, so no durable write is after such a gap.
    expected = None        # the sequence the next record must carry
    gap = False
    for number in logs:
        lpath = filenames.log_name(path, number)
        with open(lpath, "rb") as fh:
            data = fh.read()
        res = read_log(lpath, data)
        st.wal_recovery_dropped_bytes += res.dropped_bytes
        if res.records and expected is not None and not gap:
            first = int.from_bytes(res.records[0][1][:8], "little")
            if first > expected:
                gap = True
                st.wal_recovery_gap = {"log": os.path.basename(lpath),
                                       "expected_sequence": expected,
                                       "found_sequence": first}
        if gap:
            st.wal_recovery_dropped_bytes += sum(len(p) for _, p in res.records)
            st.wal_recovery_dropped_logs += 1
            continue
        # the families that take this log's records (the others' tables hold them)
        dflt = mem if number >= vs.log_number else None
        takes = {fid: fmems[fid] for fid in fams if number >= vs.families[fid].log_number}
        for off, payload in res.records:
            if expected is not None and len(payload) >= 8 and \
                    int.from_bytes(payload[:8], "little") < expected:
                raise CorruptionError(lpath, off, f"sequence number goes back (expected "
                                                  f"{expected} or more)")
            first, count = replay_batch_cf(takes, dflt, payload, lpath, off)
            if count:                   # (an empty batch is a log's seal: nothing to count)
                st.recovered_records += 1
                last_seq = max(last_seq, first + count - 1)
                expected = first + count
            if mem.arena_used >= opts.write_buffer_size:
                e.flusher.flush_at_open(mem, edit)
                mem = dflt = MemTable()
            for fid, fm in list(takes.items()):
                if fm.arena_used >= fams[fid].write_buffer_size:
                    fams[fid].flusher.flush_at_open(fm, fedits[fid])
                    takes[fid] = fmems[fid] = MemTable()
    if len(mem) or mem.range_dels:
        e.flusher.flush_at_open(mem, edit)
    for fid, fm in fmems.items():
        if len(fm) or fm.range_dels:
            fams[fid].flusher.flush_at_open(fm, fedits[fid])
    # a new log for new writes; a fresh MANIFEST with the whole state
    wal_number = vs.new_file_number()
    e.wal = e.logs.open_first(wal_number)
    edit.log_number = wal_number
    edit.last_sequence = last_seq
    for fid, fe in fedits.items():
        fe.family = fid
        fe.log_number = wal_number
        fe.last_sequence = last_seq
        vs.apply(fe)
    vs.write_snapshot(edit)        # the old manifest goes with the orphans below
    e.last_seq = last_seq
    e.sv = None
    e.install(MemTable(log_number=wal_number), ())
    for fam in fams.values():
        fam.last_seq = last_seq
        fam.install(MemTable(log_number=wal_number), ())
    # remove what no version, live log or manifest claims (leftovers of a crash)
    for name in os.listdir(path):
        p = filenames.parse(name)
        full = os.path.join(path, name)
        if name.endswith(".tmp") or (p and p[0] == "log" and p[1] != wal_number) or \
                (p and p[0] == "manifest" and p[1] != vs.manifest_number) or \
                (p and p[0] == "sst" and p[1] not in e.tables.readers):
            try:
                os.unlink(full)
            except FileNotFoundError:
                pass
    filenames.fsync_dir(path)
