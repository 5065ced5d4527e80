"""Test hooks: named ways for tests and tools to inspect or poke a DB's internals
(LevelDB's DBImpl::TEST_* idea). Not part of the public API: nothing here is
stable, and nothing here is needed to use lsmkv.

Every function takes a DB handle (lsmkv.DB) and reaches its engine through the
components' public interfaces (lsmkv.engine.engine), so that tests depend on
this module, not on the layout of the engine.

Thread safety: as the component each function reaches (see its module): the
functions that change state take the lock that guards it (take_spare_log,
forget_log_number, adaptive_tick); those returning a live container (log_numbers,
flushed_logs, table_readers) return it unlocked, for tests that know the engine
is quiet or that copy it in one call.
"""
from contextlib import contextmanager

from lsmkv.engine.version import torn_append  # noqa: F401 - the MANIFEST's torn-tail rule


def engine(db):
    """The lsmkv.engine.engine.Engine behind a handle."""
    return db.core


# -- versions and tables

def current_version(db):
    """The current lsmkv.engine.version.Version (.levels, .files(), .numbers(), .check())."""
    return db.core.versions.current


def level_files(db):
    """The current version's files, one list of FileMeta per level."""
    return [list(files) for files in db.core.versions.current.levels]


def covered_inputs_of(db, snapshot=None):
    """The numbers of the tables a compaction of every table would drop unread
    (lsmkv.engine.scheduler.covered_inputs), as of snapshot (None: no snapshot)."""
    from lsmkv.engine.scheduler import covered_inputs
    e = db.core
    with e.mutex:
        inputs = {lv: list(files) for lv, files in enumerate(e.versions.current.levels) if files}
        return covered_inputs(inputs, e.tables, e.last_seq if snapshot is None else snapshot)


def table_readers(db):
    """number -> lsmkv.core.table.TableReader of every table not yet deleted (the live dict)."""
    return db.core.tables.readers


def live_table_numbers(db):
    """Numbers of every table a live version or a pending output claims."""
    e = db.core
    with e.mutex:
        return e.files.live_tables()


def cache(db):
    """The block cache (lsmkv.core.cache), or None."""
    return db.core.tables.cache


# -- the write path

def mutex(db):
    """The engine mutex (a threading.Lock)."""
    return db.core.mutex


def wal(db):
    """The active log (lsmkv.core.wal.LogWriter)."""
    return db.core.wal


def compaction_lock(db):
    """The lock a manual compaction holds: holding it keeps background compactions off."""
    return db.core.compactions.lock


def manifest_lock(db):
    """The lock every MANIFEST edit (flush, compaction, creating or dropping a
    column family) holds while it appends and syncs."""
    return db.core.manifest_lock


# -- logs

def spare_log(db):
    """The log the janitor made ahead for the next memtable switch, or None."""
    return db.core.logs.spare


def take_spare_log(db):
    """Remove the spare log (under the mutex) and return it, or None; the caller
    disposes of it (abandon(), unlink, forget_log_number())."""
    e = db.core
    with e.mutex:
        spare, e.logs.spare = e.logs.spare, None
    return spare


def log_numbers(db):
    """The numbers of the logs on disk this engine created or opened (the live set)."""
    return db.core.logs.numbers


class GuardedSet(set):
    """A set that records every use made while `lock` is free (guard_log_numbers)."""

    def __init__(self, items, lock, violations):
        super().__init__(items)
        self.lock = lock
        self.violations = violations

    def checked(self, what):
        if not self.lock.locked():
            import traceback
            self.violations.append((what, "".join(traceback.format_stack(limit=6))))

    def add(self, item):
        self.checked("add")
        super().add(item)

    def discard(self, item):
        self.checked("discard")
        super().discard(item)

    def difference_update(self, *others):
        self.checked("difference_update")
        super().difference_update(*others)

    def __iter__(self):
        self.checked("iterate")
        return super().__iter__()


def guard_log_numbers(db):
    """Swap the engine's set of log numbers for one that records (in the returned
    list, as (operation, stack)) every add, discard or walk made while the engine
    mutex is free: the set is guarded by the mutex, and a change made without it
    once broke a walk in another thread ('Set changed size during iteration')."""
    violations = []
    e = db.core
    with e.mutex:
        e.logs.numbers = GuardedSet(e.logs.numbers, e.mutex, violations)
    return violations


def forget_log_number(db, number):
    with db.core.mutex:
        db.core.logs.numbers.discard(number)


def flushed_logs(db):
    """Logs of flushed memtables that the janitor has not closed yet (the live deque)."""
    return db.core.logs.flushed


def new_log(db, number):
    """Create log `number` as a memtable switch or the janitor would (the engine's
    own way, also within new_log_hook)."""
    logs = db.core.logs
    return type(logs).new_log(logs, number)


@contextmanager
def new_log_hook(db, fn):
    """Within: the engine creates new logs with fn(number) (fn may call new_log())."""
    logs = db.core.logs
    logs.new_log = fn
    try:
        yield
    finally:
        del logs.new_log


def prepare_spare_log(db):
    """Run the janitor's spare-log step in this thread."""
    db.core.logs.prepare_spare()


# -- files

def queue_obsolete(db, path, size):
    """Queue path for deletion as an obsolete file (size None: a log)."""
    db.core.files.obsolete.append((path, size))


def run_janitor(db):
    """Run the janitor's pass in this thread: close flushed logs, delete obsolete files."""
    db.core.janitor_pass()


# -- adaptive memory

def adaptive_tick(db, now=None):
    """One sample of the adaptive_memory controller at monotonic time now; returns
    the write buffer size."""
    return db.core.adaptive.tick(now)


# -- background work (the process-wide pool, lsmkv.engine.pool)

def background_threads(db):
    """The pool threads that run the DB's background steps, flush lane first
    (shared with every open DB of the same background priority and CPU set)."""
    return db.core.threads.threads()


def background_thread_ids(db):
    """Background thread name (e.g. "lsmkv-flush-0") -> native thread id."""
    return dict(db.core.threads.tids)


def background_jobs(db):
    """The DB's background jobs ("flush", "compact-0", "delete", "adapt") -> state:
    "idle", "queued", "running" or "done" (after close)."""
    return db.core.threads.job_states()


def run_in_pool(db, fn, lane="misc"):
    """Run fn() once in a thread of the DB's pool lane ("flush", "compact", "misc"),
    as one of its steps would run; returns a threading.Event set when fn returned."""
    import threading
    import weakref
    from lsmkv.engine.pool import STOP
    done = threading.Event()

    def step(engine):
        try:
            fn()
        finally:
            done.set()
        return STOP

    db.core.threads.pool.job(lane, weakref.ref(db.core), step, (), None, f"test:{db.core.path}")
    return done
