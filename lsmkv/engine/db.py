"""The DB: a handle (DB) that owns an engine (Engine), plus Snapshot.

DB is what users hold. Its per-operation paths (put, get, delete, write,
iteration) are compiled in lsmkv.core.dbcore.CoreDB, which DB subclasses, and call
straight into the engine's compiled Core. Engine, a Python subclass of Core, does
the rest: open and recovery, memtable switches, background flush, compaction entry
points, file garbage collection, snapshots, stats and close.

Thread safety: any number of threads may call any method. Engine state changes
hold `engine.mutex` (shared with Core's write path); `engine._cv` is a Condition
on it, used for write stalls and to wake the background threads. Reads take no
lock (see lsmkv.core.dbcore).

Invariants:
  1. A WAL file is deleted only after the MANIFEST edit saying its memtable is
     in an SST is durable (its number < versions.log_number).
  2. An SST file is deleted only when no live version references it: not the
     current one, nor one pinned by an open iterator.
  3. Files are created with numbers from versions.new_file_number(); a file on
     disk that no version, log or pending output claims is removed at open.
  4. At most one background thread flushes. Up to max_background_jobs - 1
     compactions run at once, on inputs that do not conflict (lsmkv.engine.compaction);
     a manual compaction holds _compaction_lock and waits until none runs.
  5. Background threads hold the DB only while a step of their work runs (a weak
     reference otherwise), so a DB that nobody references is finalized, and its
     finalizer closes it, while they wait; open DBs are closed at interpreter exit.
  6. A handle inherited by a fork() child is dead there: every use raises
     ForkedError and close() releases only the child's memory, touching no file,
     no log and no lock (the parent owns them all).

Process lifecycle: _LIVE holds every open DB weakly, for the fork and exit hooks
registered at import (os.register_at_fork, atexit).
"""
import atexit
import collections
import os
import stat
import threading
import time
import warnings
import weakref
from contextlib import contextmanager

from sortedcontainers import SortedList

from lsmkv.engine import filenames, numa
from lsmkv.engine.adaptive import AdaptiveSplit, Sample, bounds as adaptive_bounds
from lsmkv.core.cache import LRUCache, SlabCache
from lsmkv.core.dbcore import Core, CoreDB, SuperVersion, WriteBatch, check_bound, replay_batch
from lsmkv.core.memtable import MemTable, MemTableIterator
from lsmkv.core.table import TableBuilder, TableReader, write_tables
from lsmkv.core.wal import LogWriter
from lsmkv.engine.dirlock import DirLock
from lsmkv.errors import (BackgroundError, ClosedError, CorruptionError, DatabaseExistsError,
                          DatabaseNotFoundError, DatabasePermissionError, NotADatabaseError, OpenError)
from lsmkv.engine.killpoint import killpoint
from lsmkv.engine.logformat import read_log
from lsmkv.options import Options
from lsmkv.engine.version import FileMeta, VersionEdit, VersionSet
from lsmkv.engine.worker import Worker, WorkerUnavailable, interpreter_problem, run_job, set_nice

_NO_LIMIT = (1 << 63) - 1
_DELAY_QUANTUM = 0.004     # seconds of pacing debt a delayed write sleeps off at once
BACKGROUND_NICE = 19       # background_priority='low' (RocksDB's CpuPriority::kLow)

MODE_ITEMS, MODE_KEYS, MODE_VALUES = 0, 1, 2

# ---------------------------------------------------------------- process lifecycle

_LIVE = weakref.WeakSet()          # every open DB of this process (guarded by _LIVE_LOCK)
_LIVE_LOCK = threading.Lock()


def _live_dbs():
    with _LIVE_LOCK:
        return list(_LIVE)


def _before_fork():
    _LIVE_LOCK.acquire()       # the set is consistent in the child


def _after_fork_in_parent():
    _LIVE_LOCK.release()


def _after_fork_in_child():
    """Only the forking thread exists in the child, and any lock another thread held
    at the fork stays held: mark every inherited DB dead without taking one."""
    global _LIVE_LOCK
    _LIVE_LOCK = threading.Lock()
    for db in list(_LIVE):
        db._inherited_by_fork()


def _close_at_exit():
    """atexit: close what the program left open, so that nothing acknowledged waits
    on a daemon thread and no compaction worker outlives the interpreter."""
    for db in _live_dbs():
        try:
            db.close()
        except Exception as e:      # noqa: BLE001 - reported; the other DBs still close
            warnings.warn(f"lsmkv: closing {db.path} at interpreter exit failed: {e!r}",
                          RuntimeWarning, stacklevel=1)


os.register_at_fork(before=_before_fork, after_in_parent=_after_fork_in_parent,
                    after_in_child=_after_fork_in_child)
atexit.register(_close_at_exit)

# A background thread's step says what the thread does next.
_STOP, _IDLE, _AGAIN = 0, 1, 2


def _background(ref, step, wake, timeout, *args):
    """Body of every background thread: run step(db, *args) while the DB lives.

    The thread holds the DB (ref() of a weak reference) only while a step runs and
    waits on its own Event, not on the DB's condition, so an idle thread keeps no
    DB alive: dropping the last user reference finalizes the DB, whose finalizer
    closes it and so stops this thread. The event is cleared before each step, so a
    wake-up that comes while the step looks for work is not lost."""
    db = ref()
    if db is None:
        return
    db._lower_priority()
    del db
    while True:
        wake.clear()
        db = ref()
        if db is None:
            return
        what = step(db, *args)
        del db            # may be the last reference: the finalizer runs here, closing it
        if what == _STOP:
            return
        if what == _IDLE:
            wake.wait(timeout)


class _Signal(threading.Condition):
    """The DB's condition variable on its mutex. notify_all() also sets the wake
    events of the flush and compaction threads, which wait on those rather than
    here (a thread waiting here would hold the DB alive)."""

    def __init__(self, lock, events):
        super().__init__(lock)
        self._events = events

    def notify_all(self):
        super().notify_all()
        for e in self._events:
            e.set()


class Snapshot:
    """A consistent read-only view of the DB as of its creation.

    Reads through a snapshot see exactly the writes acknowledged before it was
    taken (expiry still follows the clock). Close it to let compaction drop
    the versions it keeps; it is also a context manager. Made by DB.snapshot().

    >>> import lsmkv, tempfile
    >>> db = lsmkv.DB(tempfile.mkdtemp())
    >>> db.put(b"a", b"1")
    >>> with db.snapshot() as snap:
    ...     db.put(b"a", b"2")
    ...     db.put(b"b", b"3")
    ...     snap.get(b"a"), b"b" in snap, db.get(b"a")
    (b'1', False, b'2')
    >>> db.close()
    """

    def __init__(self, db, seq):
        self._db = db                 # the DB handle: kept alive while the snapshot is
        self._state = db.core.state   # closed with the handle
        self.sequence = seq
        self._closed = False

    def _check(self):
        if self._closed:
            raise ClosedError("the snapshot is closed")
        if self._state.closed:        # its DB was closed (or this is a fork() child)
            raise self._state.error()

    def get(self, key, default=None):
        """The value key had when the snapshot was taken, or default if it was
        absent then (or has expired since).

        >>> import lsmkv, tempfile
        >>> db = lsmkv.DB(tempfile.mkdtemp())
        >>> db.put(b"k", b"old")
        >>> snap = db.snapshot()
        >>> db.put(b"k", b"new"); db.delete(b"gone")
        >>> snap.get(b"k"), snap.get(b"gone", b"-"), snap[b"k"]
        (b'old', b'-', b'old')
        >>> snap.close(); db.close()
        """
        self._check()
        return self._db.get_at(key, self.sequence, default)

    def __getitem__(self, key):
        v = self.get(key)
        if v is None:
            raise KeyError(key)
        return v

    def __contains__(self, key):
        return self.get(key) is not None

    def ttl(self, key):
        """Seconds until key expires as this snapshot sees it (the expiry it had
        then, measured against the clock now), None if it never expires; KeyError
        if absent in the snapshot or expired.

        >>> import lsmkv, tempfile
        >>> now = [1000.0]                        # a clock the example controls
        >>> db = lsmkv.DB(tempfile.mkdtemp(), clock=lambda: now[0])
        >>> db.put(b"s", b"token", ttl=30); db.put(b"p", b"forever")
        >>> snap = db.snapshot()
        >>> db.put(b"s", b"token", ttl=300)       # the snapshot keeps the old expiry
        >>> now[0] += 10
        >>> snap.ttl(b"s"), db.ttl(b"s"), snap.ttl(b"p")
        (20.0, 290.0, None)
        >>> snap.ttl(b"missing")
        Traceback (most recent call last):
          ...
        KeyError: b'missing'
        >>> snap.close(); db.close()
        """
        self._check()
        return self._db.ttl_at(key, self.sequence)

    def items(self, start=None, stop=None, *, reverse=False):
        """(key, value) pairs for start <= key < stop as of the snapshot, in key
        order (or reverse); see DB.items().

        >>> import lsmkv, tempfile
        >>> db = lsmkv.DB(tempfile.mkdtemp())
        >>> db.put(b"a", b"1"); db.put(b"b", b"2")
        >>> with db.snapshot() as snap:
        ...     db.put(b"c", b"3"); db.delete(b"a")
        ...     list(snap.items()), list(snap.items(b"b", reverse=True))
        ([(b'a', b'1'), (b'b', b'2')], [(b'b', b'2')])
        >>> db.close()
        """
        self._check()
        return self._db._iterate(start, stop, reverse, MODE_ITEMS, self.sequence)

    def keys(self, start=None, stop=None, *, reverse=False):
        """Like items(), yielding keys only.

        >>> import lsmkv, tempfile
        >>> db = lsmkv.DB(tempfile.mkdtemp())
        >>> db.put(b"a", b"1"); db.put(b"b", b"2")
        >>> with db.snapshot() as snap:
        ...     db.put(b"ab", b"3")
        ...     list(snap.keys(b"a", b"b")), list(db.keys(b"a", b"b"))
        ([b'a'], [b'a', b'ab'])
        >>> db.close()
        """
        self._check()
        return self._db._iterate(start, stop, reverse, MODE_KEYS, self.sequence)

    def values(self, start=None, stop=None, *, reverse=False):
        """Like items(), yielding values only.

        >>> import lsmkv, tempfile
        >>> db = lsmkv.DB(tempfile.mkdtemp())
        >>> db.put(b"a", b"1"); db.put(b"b", b"2")
        >>> with db.snapshot() as snap:
        ...     db.put(b"a", b"9")
        ...     list(snap.values(reverse=True))
        [b'2', b'1']
        >>> db.close()
        """
        self._check()
        return self._db._iterate(start, stop, reverse, MODE_VALUES, self.sequence)

    def close(self):
        """Release the snapshot (idempotent): compaction may then drop the versions
        only it kept. Reading a closed snapshot raises ClosedError.

        >>> import lsmkv, tempfile
        >>> db = lsmkv.DB(tempfile.mkdtemp())
        >>> snap = db.snapshot()
        >>> db.stats()["snapshots"]
        1
        >>> snap.close(); snap.close()
        >>> db.stats()["snapshots"]
        0
        >>> snap.get(b"k")
        Traceback (most recent call last):
          ...
        lsmkv.errors.ClosedError: the snapshot is closed
        >>> db.close()
        """
        if not self._closed:
            self._closed = True
            self._db._release_snapshot(self.sequence)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        # never block here: the garbage collector may run this while this very
        # thread holds the DB mutex
        if not self._closed:
            self._closed = True
            self._db._release_snapshot(self.sequence, blocking=False)


def _find_malloc_trim():
    try:
        import ctypes
        return ctypes.CDLL(None).malloc_trim     # glibc only
    except (OSError, AttributeError, ImportError):
        return None


_malloc_trim = _find_malloc_trim()


def _make_cache(opts):
    if opts.block_cache_size <= 0:
        return None
    if opts.block_cache == "lru":
        return LRUCache(opts.block_cache_size)
    return SlabCache(opts.block_cache_size, opts.slab_page_size, float(opts.slab_growth_factor))


class Engine(Core):
    """The engine behind a DB handle: open and recovery, memtable switches, the
    background threads, flush, compaction, file GC, snapshots, stats and close.

    Owned by exactly one DB handle, which closes it when closed or finalized; the
    background threads hold the engine (their steps run on it), never the handle.
    Its per-operation state and paths are the compiled Core's."""

    def __init__(self, path, options=None, **kwargs):
        opts = Options.build(options, **kwargs)
        self.options = opts
        self.path = os.path.abspath(os.fspath(path))
        self.clock = opts.clock
        self.write_buffer_size = opts.write_buffer_size
        self.state.path = self.path
        n_compactions = opts.max_background_jobs - 1     # one job is the flush thread

        # -- Constant after construction (or owned by the thread that opens and closes)
        self._dirlock = None                  # lsmkv.engine.dirlock.DirLock while this process holds the LOCK
        self._inherited_released = False     # close() in a fork() child is done
        self._cache = _make_cache(opts)       # thread-safe itself
        self._bg_nice = BACKGROUND_NICE if opts.background_priority == "low" else 0
        self._bg_cpus = numa.resolve_cpus(opts.background_cpus, opts.numa_node)
        self._bg_thread = None
        self._compact_threads = []
        self._janitor_thread = None
        self._adaptive_thread = None
        self._adaptive = None                 # lsmkv.engine.adaptive.AdaptiveSplit with adaptive_memory
        self._tls = threading.local()         # .worker: the compaction thread's worker process
        # what the background threads wait on between steps (see _background); each
        # is set by whoever hands the thread work, and by close()
        self._flush_wake = threading.Event()
        self._compaction_wakes = [threading.Event() for _ in range(n_compactions)]
        self._janitor_wake = threading.Event()
        self._adaptive_wake = threading.Event()

        # -- Locks, in the order they are taken (a lock is never held while taking an
        #    earlier one): _compaction_lock, _manifest_lock, mutex, _log_lock.
        #    _close_lock and _purge_lock are taken alone.
        self._compaction_lock = threading.Lock()   # picking a compaction; held throughout by manual ones
        self._manifest_lock = threading.Lock()     # MANIFEST appends, kept in their apply order
        self._cv = _Signal(self.mutex, [self._flush_wake] + self._compaction_wakes)
        self._log_lock = threading.Lock()          # removing from / syncing retired_logs
        self._close_lock = threading.Lock()        # closing flushed logs
        self._purge_lock = threading.Lock()        # unlinking obsolete files

        # -- Guarded by the mutex (Core's too: sv, wal, last_seq, bg_error, l0_files, ...)
        self._shutting_down = False
        self._spare_wal = None                # the next log, created ahead by the janitor thread
        self._log_numbers = set()             # logs on disk that this DB created or opened
        self._tables = {}                     # number -> TableReader, for every SST not yet deleted
        self._pending_outputs = set()         # numbers of files being written
        self._snapshots = SortedList()        # sequences of live snapshots (sortedcontainers: min + removal)
        self._running_compactions = []        # lsmkv.engine.compaction.Running of merges in progress
        self._compact_pointers = {}           # level -> largest user key of its last compaction
        self._pace = 0.0                      # delayed writes: when the bytes written so far are paid for
        self._garbage_checked_version = None
        self._next_expiry = 0
        self._budget = dict(stalls=0, stall_seconds=0.0, cache_resizes=0, cache_capacity=0)
        self._adaptive_prev = None            # (counters, monotonic time) of the last sample
        self._adaptive_switches = 0           # memtables switched early to hand memory to the cache
        # retired_logs (Core): appended under the mutex, removed under _log_lock, synced
        # holding both; each change one list operation, every walk over a copy

        # -- Single atomic operations from any thread (the GIL makes each one whole;
        #    readers copy them in one call, e.g. list(d.values()), never iterate live)
        self._pins = {}                       # id(Pin) -> pinned version (lsmkv.core.dbcore.Pin)
        self._gc_pending = False              # a pin was released while the mutex was busy
        self._released_snapshots = collections.deque()   # drained into _snapshots under the mutex
        self._obsolete = collections.deque()  # (path, size or None for a log): queued under the
        #                                       mutex, unlinked under _purge_lock
        self._flushed_logs = collections.deque()  # appended under _log_lock, closed under _close_lock
        self._bg_tids = {}                    # background thread name -> native id (for stats)

        # -- Written by one thread, read by others (one reference assignment)
        self._flushing = None                 # flush thread: the memtable it holds, for memory_usage()
        self._preparing_wal = None            # janitor: the spare log it is making, for memory_usage()
        self._adaptive_armed = False          # adaptive thread: its first step only waits
        if opts.adaptive_memory:
            # it starts at the smallest write buffer (the cache gets the rest): stalls
            # and absorbed overwrites grow it within a few samples, while a start at
            # write_buffer_size took seconds of probing to give the cache its share
            lo, l0, fl, hi = adaptive_bounds(opts.memory_budget, opts.max_write_buffer_number,
                                             opts.memory_budget // 8)
            self._adaptive = AdaptiveSplit(lo, lo, l0, fl, hi)
            self.write_buffer_size = self._adaptive.size
        # why compactions run in-process although compaction_worker='process' (None: they do not)
        self._worker_fallback = interpreter_problem() if opts.compaction_worker == "process" else None
        self._workers = ([Worker(self._bg_nice, self._bg_cpus) for _ in range(n_compactions)]
                         if opts.compaction_worker == "process" and self._worker_fallback is None
                         else [])                  # thread-safe each
        # the counters of stats(): guarded by the mutex (_count() adds from elsewhere)
        self._stat = dict(flushes=0, flush_bytes=0, flush_seconds=0.0, flush_max_seconds=0.0,
                          compactions=0, compactions_without_dict=0, max_compactions_running=0, compaction_bytes_read=0, compaction_bytes_written=0, stall_seconds=0.0, stall_count=0,
                          slowdown_count=0, stop_count=0, memtable_stall_seconds=0.0,
                          stall_causes={"memtables": 0, "level0_slowdown": 0, "level0_stop": 0,
                                       "memory_budget": 0},
                          compactions_by_reason={},
                          files_deleted=0, bytes_reclaimed=0, wal_recovery_dropped_bytes=0,
                          wal_recovery_dropped_logs=0, wal_recovery_gap=None,
                          recovered_records=0, dropped_hidden=0, dropped_deletes=0,
                          ttl_dropped=0, logs_deleted=0, file_delete_errors=0,
                          heap_trims=0, heap_trim_seconds=0.0,
                          flushed_entries=0, flush_output_entries=0)
        # as RocksDB sanitizes them: never slow writes before compaction would start
        self.l0_slowdown = max(opts.level0_slowdown_writes_trigger, opts.level0_file_num_compaction_trigger)
        self.l0_stop = max(opts.level0_stop_writes_trigger, self.l0_slowdown)
        self._open()
        self.closed = False
        with _LIVE_LOCK:
            _LIVE.add(self)
        # each thread holds the DB weakly (see _background); the steps are unbound
        # functions, so neither the Thread object nor its arguments reference the DB
        ref = weakref.ref(self)
        cls = type(self)

        def start(what, step, wake, timeout, *args):
            t = threading.Thread(target=_background, args=(ref, step, wake, timeout) + args,
                                 name=f"lsmkv-{what}:{self.path}", daemon=True)
            t.start()
            return t

        self._bg_thread = start("flush", cls._flush_step, self._flush_wake, None)
        for i in range(n_compactions):
            self._compact_threads.append(start(f"compact-{i}", cls._compaction_step,
                                               self._compaction_wakes[i], 1.0, i))
        self._janitor_thread = start("delete", cls._janitor_step, self._janitor_wake, None)
        if self._adaptive is not None:
            self._adaptive_thread = start("adapt", cls._adaptive_step, self._adaptive_wake,
                                          opts.adaptive_interval)

    # ------------------------------------------------------------------ open

    def _open(self):
        try:
            self._check_directory()
            self._dirlock = DirLock.acquire(self.path, "a DB")
            self._recover()
        except BaseException as e:
            if self._dirlock is not None:
                self._dirlock.release()
                self._dirlock = None
            if isinstance(e, PermissionError) and not isinstance(e, OpenError):
                where = "" if e.filename in (None, self.path) else f" on {e.filename}"
                raise DatabasePermissionError(self.path, f"cannot open the database at {self.path}: "
                                              f"permission denied{where}", e.filename, e.errno) from e
            raise

    def _check_directory(self):
        """Raise an OpenError unless self.path is a directory that holds a database
        or may get one (create_if_missing), creating it if missing and allowed.
        Nothing else is created here, and nothing at all with create_if_missing=False
        in a directory without CURRENT and database files (_recover checks again
        under the lock)."""
        path = self.path
        try:
            st = os.stat(path)
        except FileNotFoundError:
            if not self.options.create_if_missing:
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
        if not self.options.create_if_missing:
            try:
                os.stat(filenames.current_name(path))
            except FileNotFoundError:
                if not any(filenames.parse(name) for name in os.listdir(path)):
                    raise self._not_found() from None
                # database files without CURRENT: _recover raises CorruptionError

    def _not_found(self):
        return DatabaseNotFoundError(self.path, f"no database in {self.path}: CURRENT does not exist "
                                     f"(create_if_missing is false)", filenames.current_name(self.path))

    def _recover(self):
        opts = self.options
        vs = self._versions = VersionSet(self.path)
        listing = os.listdir(self.path)
        parsed = {name: filenames.parse(name) for name in listing}
        if os.path.exists(filenames.current_name(self.path)):
            if opts.error_if_exists:
                raise DatabaseExistsError(self.path, f"a database already exists at {self.path} "
                                          f"(error_if_exists is true)", filenames.current_name(self.path))
            vs.recover()
        elif any(p is not None for p in parsed.values()):
            raise CorruptionError(filenames.current_name(self.path), None,
                                  "CURRENT is missing but the directory holds database files")
        elif not opts.create_if_missing:
            raise self._not_found()         # removed since _check_directory looked
        # open every table the version names (verifies footers and meta blocks)
        for level, f in vs.current.files():
            path = filenames.table_name(self.path, f.number)
            if not os.path.exists(path):
                raise CorruptionError(path, None, "table named by the manifest is missing")
            self._open_table(f.number, level)
        # replay the logs the manifest does not cover, oldest first
        logs = sorted(p[1] for p in parsed.values() if p and p[0] == "log" and p[1] >= vs.log_number)
        for p in parsed.values():
            if p and p[1] >= vs.next_file_number:
                vs.next_file_number = p[1] + 1
        edit = VersionEdit()
        last_seq = vs.last_sequence
        mem = MemTable()
        # Sequence numbers run on from one log to the next. A log whose first record
        # does not follow the previous log's last one means the end of that log was
        # lost (a power loss wrote the newer log's pages back but not the older's
        # unsynced tail): replay stops there, so the writes that survive are a prefix
        # of the write order (point-in-time recovery, as RocksDB's). A sync=True
        # write syncs the older logs first, so no durable write is after such a gap.
        expected = None        # the sequence the next record must carry
        gap = False
        for number in logs:
            path = filenames.log_name(self.path, number)
            with open(path, "rb") as fh:
                data = fh.read()
            res = read_log(path, data)
            self._stat["wal_recovery_dropped_bytes"] += res.dropped_bytes
            if res.records and expected is not None and not gap:
                first = int.from_bytes(res.records[0][1][:8], "little")
                if first > expected:
                    gap = True
                    self._stat["wal_recovery_gap"] = {"log": os.path.basename(path),
                                                      "expected_sequence": expected,
                                                      "found_sequence": first}
            if gap:
                self._stat["wal_recovery_dropped_bytes"] += sum(len(p) for _, p in res.records)
                self._stat["wal_recovery_dropped_logs"] += 1
                continue
            for off, payload in res.records:
                if expected is not None and len(payload) >= 8 and \
                        int.from_bytes(payload[:8], "little") < expected:
                    raise CorruptionError(path, off, f"sequence number goes back (expected "
                                                     f"{expected} or more)")
                first, count = replay_batch(mem, payload, path, off)
                self._stat["recovered_records"] += 1
                if count:
                    last_seq = max(last_seq, first + count - 1)
                    expected = first + count
                if mem.arena_used >= opts.write_buffer_size:
                    self._flush_at_open(mem, edit)
                    mem = MemTable()
        if len(mem):
            self._flush_at_open(mem, edit)
        # a new log for new writes; a fresh MANIFEST with the whole state
        wal_number = vs.new_file_number()
        self.wal = LogWriter(filenames.log_name(self.path, wal_number), wal_number, self._wal_prealloc(),
                             self.options.wal_mmap)
        self._log_numbers.add(wal_number)
        edit.log_number = wal_number
        edit.last_sequence = last_seq
        vs.write_snapshot(edit)        # the old manifest goes with the orphans below
        self.last_seq = last_seq
        self.sv = None
        self._install(MemTable(log_number=wal_number), ())
        # remove what no version, live log or manifest claims (leftovers of a crash)
        for name in os.listdir(self.path):
            p = filenames.parse(name)
            full = os.path.join(self.path, name)
            if name.endswith(".tmp") or (p and p[0] == "log" and p[1] != wal_number) or \
                    (p and p[0] == "manifest" and p[1] != vs.manifest_number) or \
                    (p and p[0] == "sst" and p[1] not in self._tables):
                try:
                    os.unlink(full)
                except FileNotFoundError:
                    pass
        filenames.fsync_dir(self.path)

    def _wal_prealloc(self):
        return self.options.wal_preallocate or min(self.write_buffer_size, 256 << 20)

    def _flush_at_open(self, mem, edit):
        metas = write_tables(MemTableIterator(mem), self._new_builder_locked,
                             self._oldest_snapshot(), False, self._now_ms(), _NO_LIMIT, self._stat)
        for m in metas:
            number = self._number_of(m)
            self._open_table(number, 0)
            edit.add_file(0, FileMeta.from_meta(number, m))
            self._pending_outputs.discard(number)
            self._stat["flushes"] += 1
            self._stat["flush_bytes"] += m["file_size"]

    def _number_of(self, meta):
        return filenames.parse(os.path.basename(meta["path"]))[1]

    def _new_builder_locked(self):
        """A TableBuilder for a flush output (mutex held). Flushes train no zstd
        dictionary: training doubled the time of a measured flush, and L0
        files are rewritten soon; compaction outputs get one (lsmkv.engine.worker)."""
        number = self._versions.new_file_number()
        self._pending_outputs.add(number)
        o = self.options
        return TableBuilder(filenames.table_name(self.path, number), o.block_size, o.compression,
                            o.compression_level, o.bloom_bits_per_key, o.block_restart_interval, 0)

    def _new_builder(self):
        with self.mutex:
            return self._new_builder_locked()

    def _reserve_numbers(self, count):
        """count fresh file numbers, held as pending outputs (mutex held)."""
        numbers = [self._versions.new_file_number() for _ in range(count)]
        self._pending_outputs.update(numbers)
        return numbers

    def _run_job(self, job):
        """Run a compaction job (lsmkv.engine.worker) where options.compaction_worker says:
        in the calling compaction thread's worker process (the first one for a
        manual compaction, which runs only when no other compaction does). Where
        no worker can run (lsmkv.engine.worker.WorkerUnavailable), this DB compacts in
        its threads from then on."""
        if self._workers and self._worker_fallback is None:
            try:
                return getattr(self._tls, "worker", self._workers[0]).run(job)
            except WorkerUnavailable as e:
                self._worker_fallback = str(e)
        return run_job(job)

    def _cache_meta(self, level):
        """Whether a table opened at level keeps its index and filter blocks in the
        block cache (evictable) rather than resident: option
        cache_index_and_filter_blocks, but not for L0 tables while
        pin_l0_index_and_filter (every get reads them). A table never changes
        level: compaction writes new files, so the choice made at open holds."""
        o = self.options
        return o.cache_index_and_filter_blocks and not (level == 0 and o.pin_l0_index_and_filter)

    def _new_reader(self, number, level):
        """A TableReader for table `number` of `level` (reads its index and filter)."""
        return TableReader(filenames.table_name(self.path, number), number, self._cache,
                           self.options.mmap_reads, self._cache_meta(level))

    def _open_table(self, number, level):
        t = self._tables.get(number)
        if t is None:
            t = self._tables[number] = self._new_reader(number, level)
        return t

    def _now_ms(self):
        return int(self.clock() * 1000)

    def _install(self, mem, imms):
        """Publish a new SuperVersion from the current version (mutex held)."""
        v = self._versions.current
        l0 = tuple(self._open_table(f.number, 0) for f in v.levels[0])
        levels = []
        for level, files in enumerate(v.levels[1:], 1):
            if files:
                levels.append((tuple(self._open_table(f.number, level) for f in files),
                               [f.largest for f in files],
                               [f.smallest_user_key for f in files]))
        self.sv = SuperVersion(mem, tuple(imms), l0, tuple(levels), v)
        self.l0_files = len(l0)
        if self.options.memory_budget:
            self._apply_budget()

    def _budget_floor(self):
        return self.options.memory_budget // 8

    def _memtable_charge(self):
        """Bytes the memory budget charges to memtables: the active one at its full
        write_buffer_size (it will grow to that before it is switched) or at what
        it holds if more (after adaptive_memory shrank the write buffer), the
        immutable ones at what they hold."""
        sv = self.sv
        return max(self.write_buffer_size, sv.mem.memory_usage) + sum(m.memory_usage for m in sv.imms)

    def _apply_budget(self):
        """One memory budget (option memory_budget): the block cache gets what the
        memtables leave, never less than 1/8 of the budget (mutex held). Called at
        every memtable switch and flush install; shrinking releases cache pages now."""
        cap = max(self.options.memory_budget - self._memtable_charge(), self._budget_floor())
        if self._cache is not None and cap != self._cache.capacity:
            self._cache.set_capacity(cap)
            self._budget["cache_resizes"] += 1
        self._budget["cache_capacity"] = cap

    def _fail_background(self, e):
        """A background thread's fatal error: writers get it (BackgroundError) from now on."""
        with self.mutex:
            self.bg_error = e
            self._cv.notify_all()

    def _adaptive_step(self):
        """Controller thread of adaptive_memory: one sample every adaptive_interval
        (the first one an interval after the open)."""
        if self._shutting_down:
            return _STOP
        if not self._adaptive_armed:
            self._adaptive_armed = True
            return _IDLE
        try:
            self._adaptive_tick()
        except BaseException as e:   # noqa: BLE001 - a bug here must not pass silently
            self._fail_background(e)
            return _STOP
        return _IDLE

    def _adaptive_counters(self):
        """(writes, reads, flush stall s, L0 stall s, cache hits, misses, usage,
        capacity, flushes, flushed entries, flush output entries) now. Budget stalls
        are left out: memtables that wait for budget must not be answered with
        bigger memtables."""
        c = self._cache.stats()
        st = self._stat
        flush_wait = st["memtable_stall_seconds"] - self._budget["stall_seconds"]
        return (self.n_puts + self.n_deletes, self.n_gets, flush_wait,
                st["stall_seconds"] - st["memtable_stall_seconds"],
                c["hits"], c["misses"], c["usage"] + c["reserved"], c["capacity"],
                st["flushes"], st["flushed_entries"], st["flush_output_entries"])

    def _adaptive_tick(self, now=None):
        """Sample the counters, let the policy decide, apply its answer. A smaller
        write buffer that the active memtable already exceeds switches it now (if a
        memtable slot is free), so its memory reaches the cache after the flush even
        when no write comes to switch it. Returns the write buffer size."""
        now = time.monotonic() if now is None else now
        with self.mutex:
            if self.closed or self._shutting_down:
                return self.write_buffer_size
            cur = self._adaptive_counters()
            prev = self._adaptive_prev
            self._adaptive_prev = (cur, now)
            if prev is None or now <= prev[1]:
                return self.write_buffer_size
            p, t0 = prev
            sample = Sample(seconds=now - t0, writes=cur[0] - p[0], reads=cur[1] - p[1],
                            flush_stall_seconds=cur[2] - p[2], l0_stall_seconds=cur[3] - p[3],
                            cache_hits=cur[4] - p[4], cache_misses=cur[5] - p[5],
                            cache_usage=cur[6], cache_capacity=cur[7], flushes=cur[8] - p[8],
                            flushed_entries=cur[9] - p[9], flush_output_entries=cur[10] - p[10])
            old = self.write_buffer_size
            new = self._adaptive.decide(sample)
            if new == old:
                return old
            self.write_buffer_size = new
            sv = self.sv
            if (new < old and len(sv.mem) and sv.mem.arena_used >= new
                    and len(sv.imms) < self.options.max_write_buffer_number - 1):
                self._switch_memtable()        # installs, which applies the budget
                self._adaptive_switches += 1
            else:
                self._apply_budget()
            return new

    # ------------------------------------------------------------------ writes

    def _make_room_for_write(self):
        """Called by the write path (mutex held) when the memtable is full."""
        stalled_at = None
        try:
            while True:
                if self.bg_error is not None:
                    raise BackgroundError(f"background work failed: {self.bg_error}")
                if self._shutting_down or self.closed:
                    raise self.state.error()
                if self.sv.mem.arena_used < self.write_buffer_size:
                    return
                if len(self.sv.imms) >= self.options.max_write_buffer_number - 1:
                    if stalled_at is None:
                        stalled_at = time.monotonic()
                        self._stat["stall_count"] += 1
                        self._stat["stall_causes"]["memtables"] += 1
                    self._cv.wait(1.0)
                    continue
                if (self.options.memory_budget and self.sv.imms and
                        self._memtable_charge() + self.write_buffer_size >
                        self.options.memory_budget - self._budget_floor()):
                    # a new memtable would push the cache below its floor: wait for a flush
                    if stalled_at is None:
                        stalled_at = time.monotonic()
                        self._stat["stall_count"] += 1
                        self._stat["stall_causes"]["memory_budget"] += 1
                        self._budget["stalls"] += 1
                    t0 = time.monotonic()
                    self._cv.wait(1.0)
                    self._budget["stall_seconds"] += time.monotonic() - t0
                    continue
                self._switch_memtable()
                return
        finally:
            if stalled_at is not None:
                dt = time.monotonic() - stalled_at
                self._stat["stall_seconds"] += dt
                self._stat["memtable_stall_seconds"] += dt

    def _level0_stall(self, nbytes):
        """Called by the write path (mutex held) when level 0 has too many files.

        From the slowdown trigger, writes are paced (as RocksDB's delayed_write_rate):
        the allowed rate falls linearly from options.delayed_write_rate at the
        slowdown trigger to 1/16 of it just below the stop trigger. Writes run free
        until they are _DELAY_QUANTUM ahead of that pace, then one write sleeps the
        debt off: a slowdown delays one write in a few hundred by a few ms instead of
        every write (docs/tuning.md has the measured effect on put latency).
        At the stop trigger writes wait until compaction brings L0 down. A failed
        background job ends the wait with its error."""
        t0 = time.monotonic()
        if self.l0_files >= self.l0_stop:
            try:
                self._stat["stop_count"] += 1
                self._stat["stall_causes"]["level0_stop"] += 1
                while self.l0_files >= self.l0_stop:
                    if self.bg_error is not None:
                        raise BackgroundError(f"background work failed: {self.bg_error}")
                    self._check_open()
                    self._cv.notify_all()
                    self._cv.wait(1.0)
            finally:
                self._stat["stall_seconds"] += time.monotonic() - t0
            return
        over = (self.l0_files - self.l0_slowdown) / max(1, self.l0_stop - self.l0_slowdown)
        rate = self.options.delayed_write_rate * (1.0 - over * 15 / 16)
        self._pace = max(self._pace, t0) + nbytes / rate
        wait = self._pace - t0
        if wait < _DELAY_QUANTUM:
            return
        self._stat["slowdown_count"] += 1
        self._stat["stall_causes"]["level0_slowdown"] += 1
        self.mutex.release()
        try:
            time.sleep(wait)
        finally:
            self.mutex.acquire()
            self._stat["stall_seconds"] += time.monotonic() - t0

    def _switch_memtable(self):
        """Make the active memtable immutable and start a new one with a new log.
        The new log is usually the spare the janitor thread created ahead, so the
        writer pays neither its preallocation nor a directory fsync; taking it
        wakes the janitor to make the next one. The old log is closed by the
        janitor once its memtable is flushed (synced first by a sync write)."""
        wal, self._spare_wal = self._spare_wal, None
        if wal is None:
            number = self._versions.new_file_number()
            wal = self._new_log(number)
            self._log_numbers.add(number)
        self.retired_logs.append(self.wal)
        self.wal = wal
        killpoint("wal.switch")
        sv = self.sv
        self._install(MemTable(log_number=wal.number), (sv.mem,) + sv.imms)
        self._cv.notify_all()
        self._janitor_wake.set()

    def _new_log(self, number):
        """A new, preallocated log whose directory entry is durable (one GIL release).
        The caller adds its number to _log_numbers, under the mutex."""
        return LogWriter(filenames.log_name(self.path, number), number, self._wal_prealloc(),
                         self.options.wal_mmap, sync_dir=self.path)

    def _prepare_spare_log(self):
        """Janitor thread: create the next log ahead of the memtable switch. A failure
        (disk full) is left for the switch to meet and report."""
        with self.mutex:
            if self._spare_wal is not None or self._shutting_down:
                return
            number = self._versions.new_file_number()
            # claimed before the file exists, so that a reopen's orphan rule and this
            # DB's obsolete-log rule agree on it (a set the mutex guards: it was added
            # to here without the mutex while other threads iterated it)
            self._log_numbers.add(number)
        try:
            wal = self._new_log(number)
        except OSError:
            with self.mutex:
                self._log_numbers.discard(number)
            return
        # mapped and populated: memory_usage() counts it from now on (it waited on the
        # mutex here while a reader of memory_usage() held it, and missed the log)
        self._preparing_wal = wal
        with self.mutex:
            self._preparing_wal = None
            # logs are replayed in number order: a switch that created its own log
            # meanwhile has a higher number, and this one must not follow it
            if self._spare_wal is None and not self._shutting_down and number > self.wal.number:
                self._spare_wal = wal
                return
            self._log_numbers.discard(number)
        wal.abandon()
        try:
            os.unlink(wal.path)
        except FileNotFoundError:
            # while it was being made, flushes moved log_number past it and a purge
            # in another thread (flush(), compact_range(), a released iterator)
            # deleted it as an obsolete log
            pass

    def _sync_retired_logs(self):
        """Write path of a sync write (mutex held): older logs become durable first,
        so a synced write never outlives an unsynced older one."""
        with self._log_lock:
            for log in list(self.retired_logs):
                log.sync()

    def _retire_flushed_log(self, number):
        """Flush thread, once the flush's MANIFEST edit is durable: hand the log of
        the flushed memtable to the janitor, which closes it unsynced (its data is
        in an SST now; a sync write syncs it first while it is still listed as
        retired)."""
        with self._log_lock:
            for log in list(self.retired_logs):
                if log.number == number:
                    self.retired_logs.remove(log)
                    self._flushed_logs.append(log)



    # ------------------------------------------------------------------ background

    def _lower_priority(self):
        """Background threads run at a low CPU priority (option background_priority),
        so on a busy machine the scheduler does not preempt the writer for them:
        in an instrumented 3M-put fill (2 cores) puts >= 50 us fell from 2,040 to
        806-1,340 (docs/tuning.md)."""
        if self._bg_nice:
            set_nice(threading.get_native_id(), self._bg_nice)
        numa.bind_current_thread(self._bg_cpus)
        self._bg_tids[threading.current_thread().name.split(":")[0]] = threading.get_native_id()

    def _flush_step(self):
        """The flush thread's step: flush the oldest immutable memtable, and nothing
        else (the janitor thread does the housekeeping), so that a writer that
        finds the memtables full waits for one flush only."""
        with self.mutex:
            if self._shutting_down or self.bg_error is not None:
                return _STOP
            if not self.sv.imms:
                return _IDLE
            imm = self._flushing = self.sv.imms[-1]
        try:
            self._flush_memtable(imm)
        except BaseException as e:   # noqa: BLE001 - surfaced to writers via bg_error
            self._fail_background(e)
            return _STOP
        # drop the flushed memtable now: a reference kept here would keep its whole
        # arena (write_buffer_size bytes) alive (found by comparing memory_usage() with RSS)
        del imm
        self._flushing = None
        self._trim_heap()
        return _AGAIN

    def _trim_heap(self):
        """Give the heap pages a flush freed (its block and filter buffers) back to
        the OS (glibc malloc_trim; the GIL is released during the call). Without it
        ~2 MB per flushing thread stayed in the RSS unaccounted (tests/test_memory.py)."""
        if _malloc_trim is None:
            return
        t0 = time.monotonic()
        _malloc_trim(0)
        self._count(heap_trims=1, heap_trim_seconds=time.monotonic() - t0)

    def _count(self, **deltas):
        """Add to counters of stats() from a thread that does not hold the mutex
        (the mutex guards _stat: a `+=` from two threads at once loses one)."""
        with self.mutex:
            for k, v in deltas.items():
                self._stat[k] += v

    def _janitor_step(self):
        """Housekeeping off the flush and compaction threads, at the background
        priority: creates the log the next memtable switch will take (woken by the
        switch that took the last one), closes the logs of flushed memtables and
        unlinks obsolete files. In a 3M-put fill, with the flush thread doing these,
        unlinking alone took 22 ms on average and up to 155 ms per call (a large
        SST's cached pages are dropped), creating a log 6-25 ms (fallocate, fsyncs),
        and the writer waited for a flush in 55-77 of 110 memtable switches
        (docs/tuning.md)."""
        try:
            self._prepare_spare_log()
            self._janitor_pass()
        except BaseException as e:   # noqa: BLE001 - a bug here must not pass silently
            self._fail_background(e)
            return _STOP
        return _STOP if self._shutting_down else _IDLE

    def _janitor_pass(self):
        """Close flushed logs, then delete what is obsolete. A failure to close or
        delete loses no data (the file is no longer referenced): it is counted in
        stats()["file_delete_errors"] and the file is left for the next open."""
        errors = 0
        with self._close_lock:
            # a log leaves the deque only once closed, so memory_usage() sees its
            # mapping until it is gone; the lock keeps two passes (the janitor's and
            # flush()'s) from closing one log twice, and makes flush() wait for it
            while self._flushed_logs:
                log = self._flushed_logs[0]
                try:
                    log.close(sync=False)
                except OSError:
                    errors += 1
                self._flushed_logs.popleft()
        try:
            self._purge_obsolete_files()
        except OSError:
            errors += 1
        if errors:
            self._count(file_delete_errors=errors)

    def _wake_janitor(self):
        self._janitor_wake.set()

    def _compaction_step(self, i):
        """Compaction thread i's step (lsmkv.engine.compaction.compact_auto), using worker
        process i. The thread wakes on every version change and at least once a
        second, so expired data is collected without writes. When what is due
        conflicts with compactions other threads are running, it waits for the next
        change."""
        from lsmkv.engine.compaction import compact_auto, needs_compaction
        if self._workers:
            self._tls.worker = self._workers[i]
        with self.mutex:
            if self._shutting_down or self.bg_error is not None:
                return _STOP
            if not needs_compaction(self):
                return _IDLE
        try:
            pick = compact_auto(self)
        except BaseException as e:   # noqa: BLE001 - surfaced to writers via bg_error
            self._fail_background(e)
            return _STOP
        if pick is None:
            return _IDLE
        with self.mutex:
            self._cv.notify_all()
        return _AGAIN

    def _flush_memtable(self, imm):
        t0 = time.monotonic()
        with self.mutex:
            snapshot = self._oldest_snapshot()
        metas = write_tables(MemTableIterator(imm), self._new_builder, snapshot,
                             False, self._now_ms(), _NO_LIMIT, self._stat)
        numbers = [self._number_of(m) for m in metas]
        killpoint("flush.after_table_write")
        edit = VersionEdit()
        for number, m in zip(numbers, metas):
            edit.add_file(0, FileMeta.from_meta(number, m))
        self._preopen_tables(numbers, 0)
        with self.mutex:
            sv = self.sv
            remaining = tuple(m for m in sv.imms if m is not imm)
            # memtables switched in meanwhile are newer: the oldest unflushed one stays the same
            oldest = remaining[-1] if remaining else sv.mem
            edit.log_number = oldest.log_number

        def installed():
            sv = self.sv
            self._pending_outputs.difference_update(numbers)
            self._install(sv.mem, tuple(m for m in sv.imms if m is not imm))
            self._stat["flush_bytes"] += sum(m["file_size"] for m in metas)
            self._stat["flushes"] += 1
            self._stat["flushed_entries"] += len(imm)       # adaptive_memory: overwrites absorbed
            self._stat["flush_output_entries"] += sum(m["num_entries"] for m in metas)
            took = time.monotonic() - t0
            self._stat["flush_seconds"] += took
            self._stat["flush_max_seconds"] = max(self._stat["flush_max_seconds"], took)
            self._collect_obsolete_files()
            self._cv.notify_all()

        self._log_and_apply(edit, installed)
        self._retire_flushed_log(imm.log_number)
        self._wake_janitor()

    def _garbage_check_due(self):
        """Should the compaction thread look for garbage-heavy files (mutex held)?
        Yes after a version change, and when the clock passes the earliest expiry."""
        if self._versions.current is not self._garbage_checked_version:
            return True
        return bool(self._next_expiry) and self._now_ms() >= self._next_expiry

    def _garbage_checked(self, version):
        self._garbage_checked_version = version
        exps = [f.min_expiry for _, f in version.files() if f.min_expiry]
        self._next_expiry = min(exps) if exps else 0

    def _log_and_apply(self, edit, installed=None):
        """Record edit durably in the MANIFEST, then make it current and call
        installed(), both under the mutex. Called without the mutex: writers go on
        during the fsyncs. _manifest_lock keeps edits applied in their log order."""
        with self._manifest_lock:
            killpoint("compaction.before_install" if edit.deleted else "")
            edit.last_sequence = self.last_seq
            self._versions.log(edit)
            with self.mutex:
                self._versions.apply(edit)
                if installed is not None:
                    installed()

    def _preopen_tables(self, numbers, level):
        """Open new tables of level (reading their index and filter) before the
        mutex is taken to install them."""
        opened = [(n, self._new_reader(n, level)) for n in numbers]
        with self.mutex:
            for n, t in opened:
                self._tables.setdefault(n, t)

    def _oldest_snapshot(self):
        s = self._snapshots
        while self._released_snapshots:
            try:
                s.remove(self._released_snapshots.popleft())
            except ValueError:
                pass
        return s[0] if s else self.last_seq

    # ------------------------------------------------------------------ file GC

    def _gc_soon(self):
        """A pin was released: delete what it held, unless the mutex is busy (then
        the next read or background step does)."""
        if self.state.forked:
            return          # the files are the parent's
        if self.mutex.acquire(blocking=False):
            try:
                self._collect_obsolete_files()
            finally:
                self.mutex.release()
            self._purge_obsolete_files(blocking=False)
        else:
            self._gc_pending = True

    def _live_tables(self):
        live = self._versions.current.numbers()
        for v in list(self._pins.values()):
            live |= v.numbers()
        return live | self._pending_outputs

    def _collect_obsolete_files(self):
        """Queue for deletion the SSTs no live version references and the logs
        already in SSTs (mutex held; no I/O here, so writers never wait on an
        unlink: _purge_obsolete_files does that after the mutex is released)."""
        self._gc_pending = False
        if self.closed and self._dirlock is None:
            return
        live = self._live_tables()
        for number in [n for n in self._tables if n not in live]:
            t = self._tables.pop(number)   # its file closes when the last reader drops it
            self._obsolete.append((filenames.table_name(self.path, number), t.file_size))
            if self._cache is not None:
                self._cache.erase_file(number)
        log_number = self._versions.log_number
        for number in [n for n in self._log_numbers if n < log_number]:
            self._log_numbers.discard(number)
            self._obsolete.append((filenames.log_name(self.path, number), None))

    def _purge_obsolete_files(self, blocking=True):
        """Unlink what _collect_obsolete_files queued (mutex not held). Without
        blocking (a pin released by the garbage collector, maybe inside a purge of
        this very thread), a purge already running is left to take the new entries."""
        if self.state.forked:
            return          # the files are the parent's
        if not self._purge_lock.acquire(blocking=blocking):
            return
        logs = files = reclaimed = 0
        try:
            while self._obsolete:
                path, size = self._obsolete.popleft()
                try:
                    os.unlink(path)
                except FileNotFoundError:
                    continue
                if size is None:
                    logs += 1
                else:
                    files += 1
                    reclaimed += size
        finally:
            self._purge_lock.release()
            if logs or files:
                self._count(logs_deleted=logs, files_deleted=files, bytes_reclaimed=reclaimed)

    # ------------------------------------------------------------------ reads

    def _new_snapshot(self):
        """The sequence of a new snapshot, registered until released."""
        with self.mutex:
            if self.closed:
                raise self.state.error()
            seq = self.last_seq
            self._snapshots.add(seq)
        return seq

    def _release_snapshot(self, seq, blocking=True):
        if not self.mutex.acquire(blocking=blocking):
            self._released_snapshots.append(seq)    # removed by the next mutex holder
            return
        try:
            self._snapshots.remove(seq)
        except ValueError:
            pass
        finally:
            self.mutex.release()

    # ------------------------------------------------------------------ flush / compaction

    def flush(self):
        """Write the memtable to a level-0 SST and wait (DB.flush)."""
        with self.mutex:
            self._check_open()
            if len(self.sv.mem):
                while len(self.sv.imms) >= self.options.max_write_buffer_number - 1:
                    self._wait_bg()
                self._switch_memtable()
            while self.sv.imms:
                self._wait_bg()
        self._janitor_pass()       # the flushed logs are gone when flush() returns

    @contextmanager
    def no_background_compactions(self):
        """No background compaction runs within (DB.no_background_compactions)."""
        with self._compaction_lock:
            with self.mutex:
                while self._running_compactions:
                    if self.bg_error is not None:
                        raise BackgroundError(f"background work failed: {self.bg_error}")
                    self._cv.wait(1.0)
            yield

    def _wait_bg(self):
        if self.bg_error is not None:
            raise BackgroundError(f"background work failed: {self.bg_error}")
        self._cv.wait(1.0)
        if self.bg_error is not None:
            raise BackgroundError(f"background work failed: {self.bg_error}")
        self._check_open()

    def _check_open(self):
        if self.closed or self._shutting_down:
            raise self.state.error()

    def compact_range(self, start=None, stop=None):
        """Compact [start, stop] below level 0 (DB.compact_range)."""
        start = check_bound("start", start)
        stop = check_bound("stop", stop)
        self.flush()
        from lsmkv.engine.compaction import compact_range
        with self.no_background_compactions():
            compact_range(self, start, stop)
        self._janitor_pass()       # the inputs are gone when compact_range() returns (unless pinned)

    # ------------------------------------------------------------------ stats

    def stats(self):
        """Counters and sizes (DB.stats)."""
        sv = self.sv
        s = {
            "puts": self.n_puts, "deletes": self.n_deletes, "gets": self.n_gets,
            "get_hits": self.n_get_hits, "view_pins": self.n_view_pins,
            "writes": self.n_writes, "batches": self.n_batches,
            "syncs": self.n_syncs, "wal_bytes": self.n_wal_bytes, "user_bytes": self.n_user_bytes,
            "bloom_checks": self.n_bloom_checks, "bloom_useful": self.n_bloom_useful,
            "last_sequence": self.last_seq,
            "memtable_bytes": sv.mem.memory_usage,
            "memtable_entries": len(sv.mem),
            "immutable_memtables": len(sv.imms),
            "immutable_memtable_bytes": sum(m.memory_usage for m in sv.imms),
            "snapshots": len(self._snapshots),
            "pinned_versions": len(self._pins),
            "background_error": None if self.bg_error is None else str(self.bg_error),
        }
        s.update(self._stat)
        s["stall_causes"] = dict(self._stat["stall_causes"])
        s["compactions_by_reason"] = dict(self._stat["compactions_by_reason"])
        from lsmkv.engine.compaction import level_max_bytes, level_scores
        scores = level_scores(sv.version, self.options)
        levels = []
        live_bytes = 0
        pending = 0
        for i, files in enumerate(sv.version.levels):
            b = sum(f.file_size for f in files)
            live_bytes += b
            levels.append({"level": i, "files": len(files), "bytes": b, "score": round(scores[i], 3)})
            if 0 < i < len(sv.version.levels) - 1:
                pending += max(0, b - level_max_bytes(self.options, i))
        if scores[0] >= 1:
            pending += levels[0]["bytes"]
        s["levels"] = levels
        s["live_sst_bytes"] = live_bytes
        s["pending_compaction_bytes"] = pending
        written = self.n_wal_bytes + s["flush_bytes"] + s["compaction_bytes_written"]
        s["write_amplification"] = round(written / self.n_user_bytes, 3) if self.n_user_bytes else 0.0
        # live data estimate: the deepest non-empty level (where most of the data
        # of a leveled tree lives once compacted), as RocksDB estimates it
        deepest = next((lv["bytes"] for lv in reversed(levels) if lv["bytes"]), 0)
        s["space_amplification"] = round(live_bytes / deepest, 3) if deepest else 0.0
        total = 0
        for number in list(self._tables):
            try:
                total += os.path.getsize(filenames.table_name(self.path, number))
            except OSError:
                pass
        s["total_sst_bytes"] = total
        s["block_cache"] = self._cache.stats() if self._cache is not None else None
        ws = self._workers
        s["compaction_worker"] = ({"mode": "process", "pid": ws[0].pid, "pids": [w.pid for w in ws],
                                   "jobs": sum(w.jobs for w in ws), "restarts": sum(w.restarts for w in ws)}
                                  if ws and self._worker_fallback is None else {"mode": "thread"})
        s["compaction_worker"]["requested"] = self.options.compaction_worker
        if self._worker_fallback is not None:
            s["compaction_worker"]["reason"] = self._worker_fallback
        s["compactions_running"] = len(self._running_compactions)
        s["background_jobs"] = {"flush": 1, "compaction": len(self._compact_threads)}
        s["background_nice"] = self._bg_nice
        s["memory_budget"] = (dict(self._budget, budget=self.options.memory_budget,
                                   memtable_charge=self._memtable_charge())
                              if self.options.memory_budget else None)
        s["adaptive_memory"] = (dict(self._adaptive.stats(), early_switches=self._adaptive_switches,
                                     cache_capacity=self._budget["cache_capacity"])
                                if self._adaptive is not None else None)
        s["numa"] = self._numa_stats()
        return s

    def _numa_stats(self):
        """The topology, the CPU set asked for, and each background thread's and
        worker's affinity read back from the kernel."""
        applied = {name: numa.thread_affinity(tid) for name, tid in list(self._bg_tids.items())}
        for i, w in enumerate(self._workers):
            if w.pid is not None:
                applied[f"lsmkv-worker-{i}"] = numa.thread_affinity(w.pid)
        return {"nodes": numa.topology(),
                "background_cpus": sorted(self._bg_cpus) if self._bg_cpus is not None else None,
                "numa_node": self.options.numa_node,
                "applied": applied}

    def memory_usage(self):
        """Where the engine's memory is (DB.memory_usage)."""
        from lsmkv.core.table import read_pool_stats
        with self.mutex:
            sv = self.sv
            tables = list(self._tables.values())
            logs = [self.wal, self._spare_wal, self._preparing_wal] + list(self.retired_logs) + \
                list(self._flushed_logs)
            imms = list(sv.imms)
            f = self._flushing
            if f is not None and all(m is not f for m in imms):
                imms.append(f)           # installed, but the flush thread still holds it
        cs = self._cache.stats() if self._cache is not None else None
        u = {
            "memtable_active": sv.mem.memory_usage,
            "memtable_immutable": sum(m.memory_usage for m in imms),
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
        """Stop the threads, sync the log, release the lock (DB.close)."""
        if self.state.forked:
            self._release_inherited()
            return
        if self._dirlock is None:
            return
        with self.mutex:
            self._shutting_down = True
            self.state.closed = True        # its iterators and snapshots are closed with it
            self._cv.notify_all()
        for t in [self._bg_thread] + self._compact_threads:
            if t is not None and t is not threading.current_thread():
                t.join()
        self._janitor_wake.set()
        self._adaptive_wake.set()
        for t in (self._janitor_thread, self._adaptive_thread):
            if t is not None and t is not threading.current_thread():
                t.join()
        self._janitor_pass()
        for w in self._workers:
            w.close()
        with self.mutex:
            try:
                for log in self.retired_logs:
                    log.close()
                self.retired_logs = []
                if self._spare_wal is not None:
                    self._spare_wal.abandon()
                    os.unlink(self._spare_wal.path)
                    self._spare_wal = None
                if self.wal is not None:
                    self.wal.close()
                self._versions.close()
            finally:
                self.closed = True
                self._dirlock.release()
                self._dirlock = None
                with _LIVE_LOCK:
                    _LIVE.discard(self)

    def _handle_dropped(self):
        """The DB handle's finalizer: the last reference to it went without close()."""
        if self.state.forked:
            self._release_inherited()
            return
        if self._dirlock is None:
            return
        try:
            warnings.warn(f"lsmkv.DB {self.path!r} was not closed; closing it now", ResourceWarning,
                          stacklevel=2)
        finally:            # also when warnings are errors
            me = threading.current_thread()
            if me in (self._bg_thread, self._janitor_thread, self._adaptive_thread, *self._compact_threads):
                # the garbage collector finalized the handle (in a reference cycle) in one
                # of this engine's own threads, which close() would join: close from another
                threading.Thread(target=self.close, name=f"lsmkv-close:{self.path}").start()
            else:
                self.close()

    def _inherited_by_fork(self):
        """In a fork() child (lsmkv's at-fork hook; only this thread exists here):
        the handle is dead. Every use raises ForkedError from now on. Nothing is
        closed or written: the log, the LOCK and the files are the parent's, and the
        child's close() only lets go of its own copies."""
        self.state.forked = True
        self.state.closed = True
        self.closed = True
        self._shutting_down = True
        # locks held at the fork by threads that do not exist here would never be
        # released: the child gets fresh ones, so that close() and a snapshot's or
        # an iterator's release cannot hang
        self.mutex = threading.Lock()
        self._cv = _Signal(self.mutex, [])
        self._log_lock = threading.Lock()
        self._purge_lock = threading.Lock()
        self._close_lock = threading.Lock()
        self._obsolete.clear()

    def _release_inherited(self):
        """close() in a fork() child: unmap this process's view of the logs (no sync,
        no truncation, no unlink), drop the memtables, tables and cache it inherited,
        and forget the parent's compaction workers without touching them."""
        if self._inherited_released:
            return
        self._inherited_released = True
        logs = [self.wal, self._spare_wal, self._preparing_wal] + list(self.retired_logs) + \
            list(self._flushed_logs)
        self.wal = self._spare_wal = self._preparing_wal = None
        self.retired_logs = []
        self._flushed_logs.clear()
        for log in logs:
            if log is not None:
                log.abandon()
        for w in self._workers:
            w.forget()
        self._workers = []
        self._versions.close()       # this process's descriptor only; nothing is written
        self.sv = None
        self._tables = {}
        self._cache = None
        self._flushing = None


class DB(CoreDB):
    """An LSM-tree key-value store in the directory `path`.

    Options come as an lsmkv.Options and/or keyword arguments (see Options).
    The directory is created if missing and locked while the DB is open; a DB
    is also a context manager that closes it. Keys and values are bytes (or
    any bytes-like object).

    Example:
        >>> import lsmkv, tempfile
        >>> d = tempfile.mkdtemp()
        >>> with lsmkv.DB(d, write_buffer_size=1 << 20) as db:
        ...     db[b"k"] = b"v"
        ...     db.get(b"k"), b"k" in db, list(db)
        (b'v', True, [b'k'])
        >>> with lsmkv.DB(d) as db:          # reopened: the data is still there
        ...     db[b"k"]
        b'v'
    """

    def __init__(self, path, options=None, **kwargs):
        super().__init__(Engine(path, options, **kwargs))

    def __getattr__(self, name):
        # the engine's other attributes (path, options, closed, ...) read through the handle
        return getattr(self.core, name)

    def __setattr__(self, name, value):
        setattr(self.core, name, value)     # the handle has no state of its own

    def __delattr__(self, name):
        delattr(self.core, name)

    def snapshot(self):
        """A Snapshot of the current state (see Snapshot). Close it when done.

        >>> import lsmkv, tempfile
        >>> db = lsmkv.DB(tempfile.mkdtemp())
        >>> db.put(b"k", b"1")
        >>> snap = db.snapshot()
        >>> db.put(b"k", b"2")
        >>> snap.get(b"k"), db.get(b"k")
        (b'1', b'2')
        >>> snap.close(); db.close()
        """
        return Snapshot(self, self.core._new_snapshot())

    def flush(self):
        """Write the memtable to a level-0 SST now, and wait until it is done.

        >>> import lsmkv, tempfile
        >>> db = lsmkv.DB(tempfile.mkdtemp())
        >>> db.put(b"k", b"v")
        >>> db.flush()
        >>> s = db.stats()
        >>> s["memtable_entries"], s["levels"][0]["files"], db.get(b"k")
        (0, 1, b'v')
        >>> db.close()
        """
        return self.core.flush()

    @contextmanager
    def no_background_compactions(self):
        """Within this block no background compaction runs or starts (the caller may
        run its own, or copy files knowing no compaction replaces them). Writes and
        flushes go on.

        >>> import lsmkv, tempfile
        >>> db = lsmkv.DB(tempfile.mkdtemp(), level0_file_num_compaction_trigger=1)
        >>> with db.no_background_compactions():
        ...     for i in range(2):
        ...         db.put(b"k", b"v%d" % i); db.flush()
        ...     [lv["files"] for lv in db.stats()["levels"][:2]]   # both stay in L0
        [2, 0]
        >>> db.close()
        """
        with self.core.no_background_compactions():
            yield

    def compact_range(self, start=None, stop=None):
        """Compact every file overlapping [start, stop] (None: unbounded) into one
        sorted run below level 0, dropping overwritten, deleted and expired data.
        Flushes the memtable first; returns when done.

        >>> import lsmkv, tempfile
        >>> db = lsmkv.DB(tempfile.mkdtemp())
        >>> for i in range(3):
        ...     db.put(b"k", b"v%d" % i); db.flush()
        >>> db.delete(b"k"); db.put(b"x", b"1")
        >>> db.compact_range()
        >>> [(lv["level"], lv["files"]) for lv in db.stats()["levels"] if lv["files"]]
        [(1, 1)]
        >>> list(db.items())
        [(b'x', b'1')]
        >>> db.close()
        """
        return self.core.compact_range(start, stop)

    def stats(self):
        """Counters and sizes, as a dict; see docs/architecture.md for each field.

        >>> import lsmkv, tempfile
        >>> db = lsmkv.DB(tempfile.mkdtemp())
        >>> db.put(b"a", b"1"); db.put(b"b", b"2"); db.delete(b"a")
        >>> _ = db.get(b"b"), db.get(b"a")
        >>> s = db.stats()
        >>> s["puts"], s["deletes"], s["gets"], s["get_hits"], s["memtable_entries"]
        (2, 1, 2, 1, 3)
        >>> s["levels"][0]
        {'level': 0, 'files': 0, 'bytes': 0, 'score': 0.0}
        >>> db.close()
        """
        return self.core.stats()

    def memory_usage(self):
        """Where the engine's memory is, in bytes (docs/tuning.md, memory rows):

        memtable_active, memtable_immutable: arena chunks mapped (exact;
        immutable includes a flushed memtable until the flush thread drops it);
        cache_payload: block bytes in the cache; cache_overhead: slab bytes held
        beyond the payload plus the cache's bookkeeping; pinned: the part of the
        payload readers pin now (included in cache_payload); index_filter: index
        and filter blocks open tables hold resident (with
        cache_index_and_filter_blocks, those in the block cache are part of
        cache_payload instead: stats()["block_cache"]["index_filter_cached"]);
        wal_mapped: log files mapped and
        populated for appends; sst_mapped: the 64 KiB windows of table mappings
        reads touched (what fault-around maps into the RSS while the files stay
        in the page cache, which the kernel may drop); read_buffers: pooled pread
        buffers. total is their sum without pinned.

        >>> db.memory_usage()["total"]          # doctest: +SKIP
        41943040
        """
        return self.core.memory_usage()

    def close(self):
        """Wait for background work, sync the log and release the directory lock.
        Unflushed memtables stay in their logs and are replayed at the next open.
        Closing twice is harmless; any other use of a closed DB raises ClosedError.

        >>> import lsmkv, tempfile
        >>> d = tempfile.mkdtemp()
        >>> db = lsmkv.DB(d)
        >>> db.put(b"k", b"v")
        >>> db.close(); db.close()
        >>> db.closed, repr(db).endswith("closed>")
        (True, True)
        >>> with lsmkv.DB(d) as db2:          # the lock is free; the log is replayed
        ...     db2.get(b"k")
        b'v'
        """
        return self.core.close()

    @contextmanager
    def write_batch(self, *, sync=False):
        """A WriteBatch applied atomically when the block exits without error
        (nothing of it is applied if the block raises). sync=True returns only
        once the batch is on stable storage.

        >>> import lsmkv, tempfile
        >>> db = lsmkv.DB(tempfile.mkdtemp())
        >>> db.put(b"b", b"old")
        >>> with db.write_batch(sync=True) as wb:
        ...     wb.put(b"a", b"1"); wb.delete(b"b")
        >>> db.get(b"a"), db.get(b"b")
        (b'1', None)
        >>> try:
        ...     with db.write_batch() as wb:
        ...         wb.put(b"c", b"3")
        ...         raise RuntimeError("changed my mind")
        ... except RuntimeError:
        ...     pass
        >>> db.get(b"c") is None
        True
        >>> db.close()
        """
        wb = WriteBatch(self.clock)
        yield wb
        self.write(wb, sync=sync)

    def batch(self):
        """An empty WriteBatch to fill and pass to write(). It uses the DB's clock,
        so its puts may have a ttl; it can be cleared and reused.

        >>> import lsmkv, tempfile
        >>> db = lsmkv.DB(tempfile.mkdtemp(), clock=lambda: 1000.0)   # a fixed clock
        >>> wb = db.batch()
        >>> wb.put(b"a", b"1"); wb.put(b"session", b"t", ttl=60)
        >>> db.write(wb)
        >>> db.get(b"a"), db.ttl(b"session")
        (b'1', 60.0)
        >>> db.close()
        """
        return WriteBatch(self.clock)

    def __iter__(self):
        return self.keys()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self):
        return f"<lsmkv.DB {self.path!r}{' closed' if self.closed else ''}>"

    def __reduce__(self):
        raise TypeError("a lsmkv.DB cannot be pickled or sent to another process: open the "
                        "database by its path in that process (docs/getting-started.md, "
                        "\"Processes\")")

    def __del__(self):
        # the last reference to the handle went: close the engine as close() would
        dropped = getattr(self.core, "_handle_dropped", None)   # None: the placeholder Core
        if dropped is not None:
            dropped()
