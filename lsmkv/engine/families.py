"""Families: the registry of a DB's column families, and the rules that span them.

The engine (lsmkv.engine.engine.Engine) is the DB and its default family; every
other family is an lsmkv.engine.family.Family. The engine owns one Families, which
keeps which families exist and what the DB does across them:

  registry     engine.cfs: id -> Family; names(), get(), open(), create(), drop(),
               reload() (a read-only or secondary engine's, from the MANIFEST)
  logs         release_old_logs(): a family written rarely does not keep every
               log after its memtable's; log_bound(): the logs no memtable needs
  memory       switch_largest_memtable(): every family's active memtable together
               holds about engine.cf_total_limit (db_write_buffer_size);
               memtables(): every family's, for the engine's memory_usage()
  jobs         flush_step(), compaction_step(): the families' part of the
               engine's background steps
  lifecycle    close(), inherited_by_fork(): the families' part of the engine's
               close() and fork hook

engine.cfs and engine.cf_total_limit are fields of the compiled Core (which the
engine is), set only here (cfs starts as None): the write path (Core._writable,
Core._write_batch_cf) reads them without a Python call, and calls
db.switch_largest_memtable(), which the engine binds to this one's (no call between).

Thread safety: engine.cfs is guarded by the engine mutex. It is changed only with
the mutex held and never in place: a new dict replaces it, so the background steps
and names() walk the one they read without the mutex. create() and drop() log
their MANIFEST edit under the engine's manifest_lock, taken before the mutex (the
engine's lock order). The other methods run with the mutex held (each says so), at
open, or at close.

Invariants:
  1. engine.cfs holds every family whose create edit is applied and whose drop edit
     is not (in a read-only or secondary engine: of the MANIFEST it last loaded),
     and nothing else; it is None, not empty, while there is none, so the write
     path of a DB without families tests one pointer.
  2. A family is in the registry only once its create edit is durable in the
     MANIFEST, and leaves it only once its drop edit is. From drop()'s start it is
     `dropped`: get() does not find it, its writes and reads raise ClosedError, no
     flush or compaction of it starts, and the running ones end before the edit.
  3. A log is obsolete only below log_bound(): every family has flushed past it
     (lsmkv.engine.family, invariant 2).
  4. When a log switch leaves LOGS_PER_FAMILY logs retired per family (the default
     too), every family whose active memtable holds data from the oldest of them
     is made to flush, unless max_write_buffer_number - 1 of its memtables wait.
"""
import time

from lsmkv.core import merge
from lsmkv.core.memtable import MemTable
from lsmkv.engine import background, family
from lsmkv.engine.version import VersionEdit
from lsmkv.errors import BackgroundError, ColumnFamilyError


LOGS_PER_FAMILY = 4     # retired logs per column family before the oldest one's holders flush


class Families:
    """The column families of one engine (see the module docstring)."""

    def __init__(self, engine):
        self.engine = engine
        opts = engine.options
        engine.cf_total_limit = opts.db_write_buffer_size or opts.write_buffer_size

    def every(self):
        """The engine (the default family) and every other family (mutex held; some
        exist)."""
        return (self.engine,) + tuple(self.engine.cfs.values())

    # ------------------------------------------------------------------ registry

    def names(self):
        """Names of the families other than the default, in creation order (mutex not needed)."""
        return [f.cf_name for f in sorted((self.engine.cfs or {}).values(), key=lambda f: f.cf_id)]

    def get(self, name):
        """The Family named name (ColumnFamilyError if none)."""
        for f in list((self.engine.cfs or {}).values()):
            if f.cf_name == name:
                if f.dropped:
                    raise ColumnFamilyError(f"column family {name!r} is being dropped")
                return f
        names = ", ".join(repr(n) for n in ["default"] + self.names())
        raise ColumnFamilyError(f"no column family {name!r} (families: {names})")

    def open(self, fid, name, recorded):
        """A Family object for a family of the MANIFEST (mutex held or at open)."""
        e = self.engine
        fam = self._new(fid, name, recorded)
        cfs = dict(e.cfs or {})
        cfs[fid] = fam
        e.cfs = cfs             # replaced whole: the background steps walk it without the mutex
        return fam

    def _new(self, fid, name, recorded):
        return family.Family(self.engine, fid, name, family.build_options(self.engine.options, recorded))

    def create(self, name, options):
        """Create column family name (DB.create_column_family): a durable MANIFEST
        edit, then the family, with an empty memtable, in the current log."""
        e = self.engine
        recorded = family.check_options(name, options)
        build = family.build_options(e.options, recorded)        # validates the values
        merge.resolve(build.merge_operator)
        if e.read_only:
            e.check_open()
            raise e.read_only_error("create_column_family() writes the MANIFEST")
        with e.manifest_lock:
            with e.mutex:
                e.check_open()
                if name in self.names():
                    raise ColumnFamilyError(f"column family {name!r} exists")
                vs = e.versions
                fid = vs.next_family_id
                vs.next_family_id += 1
                edit = create_edit(fid, name, recorded, e.wal.number)
                edit.last_sequence = e.last_seq
            vs.log(edit)
            with e.mutex:
                vs.apply(edit)
                fam = self.open(fid, name, recorded)
                fam.last_seq = e.last_seq
                fam.install(MemTable(log_number=e.wal.number), ())
        return fam

    def drop(self, name):
        """Drop column family name (DB.drop_column_family): writes to it stop, its
        running flush and compactions end, a durable MANIFEST edit drops it; its
        tables are deleted once no iterator pins them."""
        e = self.engine
        if e.read_only:
            e.check_open()
            raise e.read_only_error("drop_column_family() writes the MANIFEST")
        with e.mutex:
            e.check_open()
            fam = self.get(name)        # a family being dropped is not found: one drop goes on
            fam.dropped = True          # no flush or compaction of it starts from now on
            fam.closed = True           # its writes and reads raise ClosedError
        with fam.compactions.no_background():       # the ones running end first
            with e.mutex:
                while fam.flusher.flushing is not None:
                    if e.bg_error is not None:      # a failed flush: the DB is read-only anyway
                        raise BackgroundError(f"background work failed: {e.bg_error}")
                    e.cv.wait(0.05)
            with e.manifest_lock:
                edit = drop_edit(fam.cf_id)
                edit.last_sequence = e.last_seq
                e.versions.log(edit)
                with e.mutex:
                    e.versions.apply(edit)
                    cfs = dict(e.cfs)
                    del cfs[fam.cf_id]
                    e.cfs = cfs or None
                    # a handle kept after the drop must not keep its memtables and open
                    # tables (deleted files' disk space): it reads nothing now
                    fam.release_all()
                    e.files.collect()
        e.janitor_pass()

    def reload(self, vs, fmems, last_seq):
        """A read-only or secondary engine's families made those of vs, each on its
        replayed memtable (mutex held): a family kept by the primary keeps its object
        (its handles go on), a dropped one is closed."""
        e = self.engine
        old = e.cfs or {}
        cfs = {}
        for fid, fs in vs.families.items():
            fam = old.get(fid)
            if fam is None or fam.cf_name != fs.name:
                fam = self._new(fid, fs.name, fs.options)
            cfs[fid] = fam
        for fid, fam in old.items():
            if cfs.get(fid) is not fam:
                fam.dropped = fam.closed = True
        e.cfs = cfs or None
        for fid, fam in cfs.items():
            fam.install(fmems[fid], ())
            fam.last_seq = last_seq

    # ------------------------------------------------------------------ logs and memory

    def release_old_logs(self):
        """After a log switch, with column families (mutex held): a family written
        rarely keeps the log its memtable started in, and every log after it, until
        it flushes. Past LOGS_PER_FAMILY logs per family, the families whose active
        memtable holds the oldest retired log are made to flush (their memtable
        becomes immutable, a new one starts in the active log), as RocksDB's
        max_total_wal_size does."""
        e = self.engine
        if len(e.retired_logs) < LOGS_PER_FAMILY * (len(e.cfs) + 1) or not e.retired_logs:
            return
        oldest = min(log.number for log in e.retired_logs)
        for f in self.every():
            sv = f.sv
            if (len(sv.mem) or sv.mem.range_dels) and sv.mem.log_number <= oldest and \
                    len(sv.imms) < f.options.max_write_buffer_number - 1:
                f.install(MemTable(log_number=e.wal.number), (sv.mem,) + sv.imms)

    def switch_largest_memtable(self):
        """The active memtables of every column family hold db_write_buffer_size
        bytes together (mutex held; Core._writable, through the engine): make the
        largest one that may switch immutable, so that its flush brings the total
        down (RocksDB's db_write_buffer_size), else 8 families written in turn would
        hold 8 write buffers; then the next largest, until the others hold at most
        half the limit. So the total swings between half the limit and the limit, as
        one family's memtable swings between empty and full, rather than staying at
        the limit with one switch per 1/N of it: an insert searches less memory and
        the process holds less (8 families round-robin, bench/families.py --rounds 5:
        392k -> 406k puts/s, peak RSS 375 -> 349 MB), for the same flushes. A memtable under 1/16 of the limit is left as it is:
        with many families the total may then pass the limit, by at most that much
        each, rather than switch logs for a few writes each. When every memtable
        that could switch still waits for its previous one's flush (flushes behind
        the writes), the writer waits for a flush, as make_room does for one family:
        the total stays bounded by the limit rather than by the families' write
        buffers."""
        e = self.engine
        limit = e.cf_total_limit
        stalled_at = None
        try:
            while True:
                best, most, total, blocked = None, 0, 0, False
                for f in (e,) + tuple(e.cfs.values()):      # not every(): at times called per write
                    used = f.sv.mem.arena_used
                    total += used
                    if used * 16 < limit:
                        continue
                    if len(f.sv.imms) >= f.options.max_write_buffer_number - 1:
                        blocked = True
                    elif used > most:
                        best, most = f, used
                if best is not None:
                    e.stats.family_memtable_switches += 1
                    best.switch_memtable()
                    if total - most > limit // 2:
                        continue
                    return
                if not blocked or total < limit:
                    return
                if stalled_at is None:
                    stalled_at = time.monotonic()
                    e.stats.stall_count += 1
                    e.stats.stall_causes["memtables"] += 1
                if e.bg_error is not None:
                    raise BackgroundError(f"background work failed: {e.bg_error}")
                if e.shutting_down or e.closed:
                    raise e.state.error()
                e.cv.notify_all()
                e.cv.wait(1.0)
        finally:
            if stalled_at is not None:
                dt = time.monotonic() - stalled_at
                e.stats.stall_seconds += dt
                e.stats.memtable_stall_seconds += dt

    def log_bound(self):
        """Logs numbered below this hold no write a memtable still needs (mutex held):
        the MANIFEST's log_number without column families; with them, the oldest
        log any family's memtables with data need (every family has flushed past
        the logs below it), or the active log if none holds data."""
        e = self.engine
        if not e.cfs:
            return e.versions.log_number
        need = [n for n in (family.holds_data(e),) + tuple(f.holds_data() for f in e.cfs.values())
                if n is not None]
        return min(need) if need else e.wal.number

    def memtables(self):
        """(bytes of the active memtables, the immutable ones) of every family, the
        default's first (mutex held): a memtable the flush thread still holds after
        it was installed as flushed counts as immutable."""
        e = self.engine
        active = 0
        imms = []
        for f in (e,) + tuple((e.cfs or {}).values()):
            active += f.sv.mem.resident_bytes
            imms += list(f.sv.imms)
            flushing = f.flusher.flushing
            if flushing is not None and all(m is not flushing for m in imms):
                imms.append(flushing)
        return active, imms

    # ------------------------------------------------------------------ background jobs

    def flush_step(self):
        """The families' part of the engine's flush step: one memtable flushed per
        family that has one ready. AGAIN if any flushed, STOP if one stopped."""
        r = background.IDLE
        for fam in list(self.engine.cfs.values()):
            s = fam.flusher.step()
            if s is background.STOP and not fam.dropped:
                return s
            if s is background.AGAIN:
                r = s
        return r

    def compaction_step(self, i):
        """The families' part of compaction job i's step."""
        r = background.IDLE
        for fam in list(self.engine.cfs.values()):
            s = fam.compactions.step(i)
            if s is background.STOP and not fam.dropped:
                return s
            if s is background.AGAIN:
                r = s
        return r

    # ------------------------------------------------------------------ close

    def close(self):
        """The engine closes (mutex held): every family's handles are closed with it."""
        for fam in (self.engine.cfs or {}).values():
            fam.closed = True

    def inherited_by_fork(self, mutex, manifest_lock):
        """In a fork() child (the engine's fork hook): every family is dead there too,
        and shares the engine's fresh mutex and manifest_lock."""
        for fam in (self.engine.cfs or {}).values():
            fam.closed = True
            fam.mutex = mutex
            fam.manifest_lock = manifest_lock


def create_edit(fid, name, options, log_number):
    e = VersionEdit()
    e.create_family = (fid, name, options)
    e.family = fid
    e.log_number = log_number
    return e


def drop_edit(fid):
    e = VersionEdit()
    e.drop_family = fid
    return e
