"""Engine: the components behind one DB handle, wired together, and their open and close order.

The DB handle (lsmkv.engine.db.DB) owns one Engine. Engine is a Python subclass
of the compiled lsmkv.core.dbcore.Core, whose per-operation paths (put, get,
delete, write, iteration) run without a Python call; Core reaches the Python side
only on cold paths, through the components it holds (writes, logs, files) and
switch_largest_memtable() (the families', bound on the engine).

  stats        lsmkv.engine.stats.Stats              the counters of stats()
  threads      lsmkv.engine.background.Threads       its background jobs (on the shared pool)
  tables       lsmkv.engine.tables.Tables            table readers, the block cache
  logs         lsmkv.engine.logs.LogSet              retired, flushed and spare logs
  files        lsmkv.engine.files.Files              pins, pending outputs, obsolete files
  snapshots    lsmkv.engine.snapshots.Snapshots      live snapshot sequences
  writes       lsmkv.engine.writes.WriteController   room for writes, L0 pacing, budget
  flusher      lsmkv.engine.flush.Flusher            the flush job
  compactions  lsmkv.engine.scheduler.Compactions    compaction jobs, manual compactions
  adaptive     lsmkv.engine.adaptive.AdaptiveController, with adaptive_memory
  families     lsmkv.engine.families.Families        the column families other than the
                                                     default (the engine is the default): cfs
Recovery (lsmkv.engine.recovery) runs at open; lsmkv.engine.lifecycle holds the
open engines for the fork and exit hooks.

Thread safety: any number of threads may call any method. Engine state changes
hold `mutex` (shared with Core's write path); `cv` is a Condition on it, used for
write stalls and to wake the background jobs. Reads take no lock (see
lsmkv.core.dbcore). Locks, in the order they are taken (a lock is never held
while taking an earlier one): compactions.lock, manifest_lock, mutex, logs.lock.
logs.close_lock and files.purge_lock are taken alone. Each component's module
says which of its fields each lock guards.

Invariants:
  1. A WAL file is deleted only after the MANIFEST edit saying its memtable is
     in an SST is durable (its number < versions.log_number).
  2. An SST file is deleted only when no live version references it: not the
     current one, nor one pinned by an open iterator.
  3. Files are created with numbers from versions.new_file_number(); a file on
     disk that no version, log or pending output claims is removed at open.
  4. At most one background job flushes. Up to max_background_jobs - 1
     compactions run at once, on inputs that do not conflict; a manual compaction
     holds compactions.lock and waits until none runs.
  5. The background pool (lsmkv.engine.pool) holds the engine only while a step
     of its work runs (a weak reference otherwise), so a handle that nobody
     references is finalized, and its finalizer closes the engine, while its jobs
     wait; after close() no step of it runs; open engines are closed at
     interpreter exit.
  6. An engine inherited by a fork() child is dead there: every use raises
     ForkedError; at the fork (lsmkv.engine.lifecycle) and at close() it
     releases only the child's memory and descriptors, writing no file, no log
     and no lock (the parent owns them all).
"""
import os
import threading
import warnings

from lsmkv.core.dbcore import Core, SuperVersion, check_bound, now_ms
from lsmkv.core import merge
from lsmkv.core.memtable import MemTable
from lsmkv.engine import lifecycle, mergeop, recovery
from lsmkv.engine.adaptive import AdaptiveController
from lsmkv.engine.background import IDLE, STOP, Signal, Threads
from lsmkv.engine.dirlock import DirLock
from lsmkv.engine.families import Families
from lsmkv.engine.files import Files
from lsmkv.engine.flush import Flusher, flush_and_wait
from lsmkv.engine.killpoint import killpoint
from lsmkv.engine.logs import LogSet, seal
from lsmkv.engine.scheduler import Compactions
from lsmkv.engine.snapshots import Snapshots
from lsmkv.engine.stats import Stats
from lsmkv.engine.tables import Tables
from lsmkv.engine.writes import WriteController
from lsmkv.engine.follower import Follower
from lsmkv.errors import BackgroundError, DatabasePermissionError, OpenError, ReadOnlyError
from lsmkv.options import Options


class Engine(Core):
    """The engine behind a DB handle (see the module docstring).

    Owned by exactly one DB handle, which closes it when closed or finalized; the
    background pool holds the engine (its steps run on it), never the handle."""

    def __init__(self, path, options=None, **kwargs):
        opts = Options.build(options, **kwargs)
        self.options = opts
        self.path = os.path.abspath(os.fspath(path))
        self.clock = opts.clock
        self.write_buffer_size = opts.write_buffer_size
        self.merge_op = merge.resolve(opts.merge_operator)
        self.default_ttl = opts.default_ttl
        self.state.path = self.path
        n_compactions = opts.max_background_jobs - 1     # one job is the flush

        # -- constant after construction (or owned by the thread that opens and closes)
        self.dirlock = None                   # DirLock while this process holds the LOCK
        self.inherited_released = False       # close() in a fork() child is done
        self.versions = None                  # lsmkv.engine.version.VersionSet, from recovery
        self.manifest_lock = threading.Lock()     # MANIFEST appends, kept in their apply order
        self.stats = Stats(self.mutex)
        self.threads = Threads(opts, n_compactions)
        self.cv = Signal(self.mutex, [])           # wakes: the jobs, once started
        self.tables = Tables(self)
        self.logs = LogSet(self)
        self.files = Files(self)
        self.snapshots = Snapshots(self)
        self.writes = WriteController(self)
        self.flusher = Flusher(self)
        self.compactions = Compactions(self, n_compactions)
        self.compactions_n = n_compactions
        self.families = Families(self)       # sets cfs and cf_total_limit, which Core reads
        # Core._writable calls db.switch_largest_memtable(), at times on every write:
        # the Families method itself, with no call in between
        self.switch_largest_memtable = self.families.switch_largest_memtable
        self.adaptive = AdaptiveController(self) if opts.adaptive_memory else None
        if self.adaptive is not None:
            self.write_buffer_size = self.adaptive.policy.size
        # a read-only or secondary engine follows files another process may write
        self.follower = None
        if opts.read_only or opts.secondary is not None:
            mode = "secondary" if opts.secondary is not None else "read_only"
            self.follower = Follower(self, mode, None if opts.secondary is None
                                     else os.path.abspath(os.fspath(opts.secondary)))
            self.read_only = True
            self.read_only_as = "as a secondary" if mode == "secondary" else "read-only (read_only=True)"
        # -- guarded by the mutex (Core's too: sv, wal, last_seq, bg_error, l0_files, ...)
        self.shutting_down = False
        # as RocksDB sanitizes them: never slow writes before compaction would start
        self.l0_slowdown = max(opts.level0_slowdown_writes_trigger, opts.level0_file_num_compaction_trigger)
        self.l0_stop = max(opts.level0_stop_writes_trigger, self.l0_slowdown)
        if self.follower is not None:
            mergeop.check(self.path, self.merge_op)
            self.follower.open()
            self.closed = False
            lifecycle.register(self)
            if opts.catch_up_interval:      # a secondary that follows by itself
                self.threads.start_follower(self, _catch_up_step, opts.catch_up_interval)
            return              # no flush, no compaction: it writes nothing
        self.open()
        self.closed = False
        lifecycle.register(self)
        # the pool holds the engine weakly (lsmkv.engine.background); the steps are
        # unbound functions, so no job or thread references it
        self.threads.start(self, _flush_step, _compaction_step, _janitor_step,
                           _adaptive_step if self.adaptive is not None else None,
                           opts.adaptive_interval)
        self.cv.wakes = self.threads.wakes()

    # ------------------------------------------------------------------ open

    def open(self):
        wbm = self.options.write_buffer_manager
        try:
            recovery.check_directory(self.path, self.options)
            self.dirlock = DirLock.acquire(self.path, "a DB")
            if wbm is not None:          # first: the engine's write_buffer_size becomes the share
                wbm.attach(self)
            mergeop.check(self.path, self.merge_op)
            recovery.recover(self)
            mergeop.record(self.path, self.merge_op)
        except BaseException as e:
            if wbm is not None:
                wbm.detach(self)
            if self.dirlock is not None:
                self.dirlock.release()
                self.dirlock = None
            if isinstance(e, PermissionError) and not isinstance(e, OpenError):
                where = "" if e.filename in (None, self.path) else f" on {e.filename}"
                raise DatabasePermissionError(self.path, f"cannot open the database at {self.path}: "
                                              f"permission denied{where}", e.filename, e.errno) from e
            raise

    def catch_up(self):
        """A secondary reads what its primary wrote since (DB.catch_up)."""
        self.check_open()
        if self.follower is None or self.follower.mode != "secondary":
            raise ReadOnlyError("catch_up() is for a DB opened with secondary=<directory>")
        return self.follower.catch_up()

    def holds_lock(self):
        """Does this process hold the directory LOCK (open, not yet closed)?"""
        return self.dirlock is not None

    # ------------------------------------------------------------------ versions

    def now_ms(self):
        return now_ms(self.clock)

    def super_version(self, mem, imms, v):
        """A SuperVersion of memtables mem and imms over version v's tables (mutex held)."""
        tables = self.tables
        l0 = tuple(tables.open(f.number, 0) for f in v.levels[0])
        levels = []
        for level, files in enumerate(v.levels[1:], 1):
            if files:
                levels.append((tuple(tables.open(f.number, level) for f in files),
                               [f.largest for f in files],
                               [f.smallest_user_key for f in files]))
        return SuperVersion(mem, tuple(imms), l0, tuple(levels), v)

    def install(self, mem, imms):
        """Publish a new SuperVersion from the current version (mutex held)."""
        self.sv = self.super_version(mem, imms, self.versions.current)
        self.l0_files = len(self.sv.l0)
        if self.options.memory_budget:
            self.writes.apply_budget()

    def switch_log(self):
        """Seal the active log and make the next one active (mutex held). The new log
        is usually the spare the janitor thread created ahead, so the writer pays
        neither its preallocation nor a directory fsync; taking it wakes the janitor
        to make the next one. The old log is closed by the janitor once every
        memtable with writes in it is flushed (synced first by a sync write)."""
        seal(self.wal, self.last_seq + 1)     # done being written (a failure leaves it as it was)
        wal = self.logs.take_next()
        self.retired_logs.append(self.wal)
        self.wal = wal
        killpoint("wal.switch")
        self.threads.janitor_wake.set()

    def switch_memtable(self):
        """Make the active memtable immutable and start a new one with a new log
        (mutex held; switch_log)."""
        self.switch_log()
        sv = self.sv
        self.install(MemTable(log_number=self.wal.number), (sv.mem,) + sv.imms)
        if self.cfs:
            self.families.release_old_logs()
        self.cv.notify_all()

    def log_and_apply(self, edit, installed=None):
        """Record edit durably in the MANIFEST, then make it current and call
        installed(), both under the mutex. Called without the mutex: writers go on
        during the fsyncs. manifest_lock keeps edits applied in their log order."""
        with self.manifest_lock:
            killpoint("compaction.before_install" if edit.deleted else "")
            edit.last_sequence = self.last_seq
            self.versions.log(edit)
            with self.mutex:
                self.versions.apply(edit)
                if installed is not None:
                    installed()

    # ------------------------------------------------------------------ background

    def fail_background(self, e):
        """A background thread's fatal error: writers get it (BackgroundError) from now on."""
        with self.mutex:
            self.bg_error = e
            self.cv.notify_all()

    def janitor_pass(self):
        """Close flushed logs, then delete what is obsolete. A failure to close or
        delete loses no data (the file is no longer referenced): it is counted in
        stats()["file_delete_errors"] and the file is left for the next open."""
        errors = self.logs.close_flushed()
        try:
            self.files.purge()
        except OSError:
            errors += 1
        if errors:
            self.stats.add(file_delete_errors=errors)

    def check_open(self):
        if self.closed or self.shutting_down:
            raise self.state.error()

    def wait_bg(self):
        if self.bg_error is not None:
            raise BackgroundError(f"background work failed: {self.bg_error}")
        self.cv.wait(1.0)
        if self.bg_error is not None:
            raise BackgroundError(f"background work failed: {self.bg_error}")
        self.check_open()

    # ------------------------------------------------------------------ flush / compaction

    def flush(self):
        """Write the memtable to a level-0 SST and wait (DB.flush)."""
        flush_and_wait(self, self.janitor_pass)

    def compact_range(self, start=None, stop=None):
        """Compact [start, stop] below level 0 (DB.compact_range)."""
        start = check_bound("start", start)
        stop = check_bound("stop", stop)
        if self.read_only:
            self.check_open()
            raise self.read_only_error("compact_range() writes tables")
        self.flush()
        with self.compactions.no_background():
            self.compactions.compact_range(start, stop)
        self.janitor_pass()       # the inputs are gone when compact_range() returns (unless pinned)

    # ------------------------------------------------------------------ memory

    def memory_usage(self):
        """Where the engine's memory is (DB.memory_usage)."""
        from lsmkv.core.table import read_pool_stats
        with self.mutex:
            tables = list(self.tables.readers.values())
            logs = self.logs.mapped()
            active, imms = self.families.memtables()
        cache = self.tables.cache
        cs = cache.stats() if cache is not None else None
        u = {
            "memtable_active": active,
            "memtable_immutable": sum(m.resident_bytes for m in imms),
            "cache_payload": cs["usage"] if cs else 0,
            "cache_overhead": cs["overhead"] if cs else 0,
            "pinned": cs["pinned_bytes"] if cs else 0,
            "index_filter": sum(t.memory_bytes() for t in tables),
            "wal_mapped": sum(w.mapped_bytes for w in logs if w is not None),
            "sst_mapped": sum(t.mapped_resident() for t in tables),
            "read_buffers": read_pool_stats()["held_bytes"],
        }
        u["total"] = sum(v for k, v in u.items() if k != "pinned")
        return u

    # ------------------------------------------------------------------ close

    def close(self):
        """Stop its background jobs, sync the log, release the lock (DB.close)."""
        if self.state.forked:
            self.release_inherited()
            return
        if self.follower is not None:
            self.follower.close()
            return
        if self.dirlock is None:
            return
        with self.mutex:
            self.shutting_down = True
            self.state.closed = True        # its iterators and snapshots are closed with it
            self.families.close()           # its column families' handles too
            self.cv.notify_all()
        self.threads.join()
        self.janitor_pass()
        if self.options.write_buffer_manager is not None:
            self.options.write_buffer_manager.detach(self)      # the others get its share
        # manifest_lock: a MANIFEST edit of a user thread (create or drop a column
        # family, compact_range) that is appending finishes first; one that comes
        # later finds the MANIFEST closed (ClosedError)
        with self.manifest_lock, self.mutex:
            self.families.close()
            try:
                self.tables.close()
                self.logs.close()
                self.versions.close()
            finally:
                self.closed = True
                self.dirlock.release()
                self.dirlock = None
                lifecycle.unregister(self)

    def handle_dropped(self):
        """The DB handle's finalizer: the last reference to it went without close()."""
        if self.state.forked:
            self.release_inherited()
            return
        if self.dirlock is None and (self.follower is None or self.closed):
            return
        try:
            warnings.warn(f"lsmkv.DB {self.path!r} was not closed; closing it now", ResourceWarning,
                          stacklevel=2)
        finally:            # also when warnings are errors
            if self.threads.is_own(threading.current_thread()):
                # the garbage collector finalized the handle (in a reference cycle) in a
                # pool thread, whose lane close() may wait for: close from another
                threading.Thread(target=self.close, name=f"lsmkv-close:{self.path}").start()
            else:
                self.close()

    def inherited_by_fork(self):
        """In a fork() child (lsmkv's at-fork hook; only this thread exists here):
        the handle is dead. Every use raises ForkedError from now on. Nothing is
        closed or written: the log, the LOCK and the files are the parent's, and the
        child's close() only lets go of its own copies."""
        self.state.forked = True
        self.state.closed = True
        self.closed = True
        self.shutting_down = True
        # locks held at the fork by threads that do not exist here would never be
        # released: the child gets fresh ones, so that close() and a snapshot's or
        # an iterator's release cannot hang
        self.mutex = threading.Lock()
        self.stats.mutex = self.mutex
        # a parent thread in a MANIFEST edit (a flush's, a compaction's) held this one:
        # create_column_family takes it before it can see that the handle is dead
        self.manifest_lock = threading.Lock()
        self.families.inherited_by_fork(self.mutex, self.manifest_lock)   # its families are dead here too
        self.cv = Signal(self.mutex, [])
        self.logs.fresh_locks()
        self.files.fresh_locks()

    def release_inherited(self):
        """In a fork() child, right after the fork (lsmkv.engine.lifecycle) and at
        close(): unmap this process's view of the logs (no sync, no truncation, no
        unlink), drop the memtables, tables and cache it inherited (every family's),
        and forget the parent's compaction workers without touching them."""
        if self.inherited_released:
            return
        self.inherited_released = True
        self.logs.release_inherited()     # the parent's workers: forgotten by the pool's fork hook
        self.versions.close()       # this process's descriptor only; nothing is written
        self.sv = None
        for fam in (self.cfs or {}).values():   # their memtables and open tables too
            fam.sv = None
            fam.flusher.flushing = None
        self.tables.release_inherited()
        self.flusher.flushing = None


# The background jobs' steps: unbound, so that no job or pool thread references an engine.

def _flush_step(engine):
    r = engine.flusher.step()
    if engine.cfs is None or r is STOP:
        return r
    f = engine.families.flush_step()
    return f if f is not IDLE else r


def _compaction_step(engine, i):
    r = engine.compactions.step(i)
    if engine.cfs is None or r is STOP:
        return r
    f = engine.families.compaction_step(i)
    return f if f is not IDLE else r


def _adaptive_step(engine):
    return engine.adaptive.step()


def _catch_up_step(engine):
    """A secondary's catch_up_interval: catch up, then wait the interval. A failure
    is kept in stats()["follower"]["last_error"] and the next step tries again (the
    primary may be restarting)."""
    if engine.shutting_down:
        return STOP
    engine.follower.background_catch_up()
    return STOP if engine.shutting_down else IDLE


def _janitor_step(engine):
    """Housekeeping off the flush and compaction threads, at the background
    priority: creates the log the next memtable switch will take (woken by the
    switch that took the last one), closes the logs of flushed memtables and
    unlinks obsolete files. In a 3M-put fill, with the flush thread doing these,
    unlinking alone took 22 ms on average and up to 155 ms per call (a large
    SST's cached pages are dropped), creating a log 6-25 ms (fallocate, fsyncs),
    and the writer waited for a flush in 55-77 of 110 memtable switches
    (docs/tuning.md)."""
    try:
        engine.logs.prepare_spare()
        engine.janitor_pass()
    except BaseException as e:   # noqa: BLE001 - a bug here must not pass silently
        engine.fail_background(e)
        return STOP
    return STOP if engine.shutting_down else IDLE
