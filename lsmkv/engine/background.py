"""One engine's background work: its jobs in the process-wide pool, the condition
that wakes them, and their start and stop.

An engine has no thread of its own: its flush, compaction, janitor and
adaptive-controller steps are jobs (lsmkv.engine.lanes.Job) run by the threads of
the pool shared by every open engine with the same background priority and CPU
set (lsmkv.engine.pool). Each step is a function of the engine that says what the
job does next (STOP, IDLE: wait to be woken or for its timeout, AGAIN). Between
steps the pool holds the engine only through a weak reference, so an idle engine
keeps nothing alive.

Thread safety: Threads.start() and Threads.join() are called by the thread that
opens and closes the engine. Each wake (a Job) may be set from any thread, also
with the engine mutex held. Signal.notify_all() is called with the engine mutex
held, as Condition requires.

Invariants:
  1. The pool holds a strong reference to the engine only while one of its steps
     runs; the step functions are unbound, so no job or thread references it.
  2. A wake-up is never lost: setting a running job's wake makes it run again
     (lsmkv.engine.lanes, invariant 2).
  3. Signal.notify_all() also sets the flush and compaction jobs' wakes, so every
     change that may give them work wakes them.
  4. After join() no step of this engine runs or will run, and the engine no
     longer counts toward its pool's size (the last engine stops the pool).
"""
import threading
import weakref

from lsmkv.engine import numa, pool
from lsmkv.engine.pool import AGAIN, IDLE, STOP  # noqa: F401 - the steps' answers

BACKGROUND_NICE = 19       # background_priority='low' (RocksDB's CpuPriority::kLow)


class Signal(threading.Condition):
    """The engine's condition variable on its mutex. notify_all() also sets the wakes
    of the flush and compaction jobs, which wait on those rather than here (a
    thread waiting here would hold the engine alive)."""

    def __init__(self, lock, wakes):
        super().__init__(lock)
        self.wakes = wakes

    def notify_all(self):
        super().notify_all()
        for w in self.wakes:
            w.set()


class Threads:
    """The engine's background jobs: flush, compaction (n_compactions of them), the
    janitor (spare logs, closing flushed logs, deleting files) and the
    adaptive_memory controller, in the pool for its CPU priority and affinity."""

    def __init__(self, options, n_compactions):
        # -- constant after construction
        self.nice = BACKGROUND_NICE if options.background_priority == "low" else 0
        self.cpus = numa.resolve_cpus(options.background_cpus, options.numa_node)
        self.n_compactions = n_compactions
        # -- written by the opening thread (start), cleared by the closing one (join)
        self.pool = None
        self.flush_wake = None           # the jobs; set() wakes one
        self.compaction_wakes = []
        self.janitor_wake = None
        self.adaptive_wake = None

    def start(self, engine, flush, compaction, janitor, adaptive=None, adaptive_interval=None):
        """Attach to the pool and add the engine's jobs (each runs a first step now).
        flush, compaction(engine, i), janitor, adaptive: unbound step functions."""
        ref = weakref.ref(engine)
        p = self.pool = pool.attach(self, self.nice, self.cpus, self.n_compactions)
        path = engine.path
        # the janitor's job first: a flush or compaction step, which runs as soon as
        # its job is added, wakes it when done (janitor_wake.set())
        self.janitor_wake = p.job("misc", ref, janitor, (), None, f"delete:{path}")
        self.flush_wake = p.job("flush", ref, flush, (), None, f"flush:{path}")
        self.compaction_wakes = [p.job("compact", ref, compaction, (i,), 1.0, f"compact-{i}:{path}")
                                 for i in range(self.n_compactions)]
        if adaptive is not None:
            self.adaptive_wake = p.job("misc", ref, adaptive, (), adaptive_interval, f"adapt:{path}")

    def start_follower(self, engine, catch_up, interval):
        """A secondary with catch_up_interval: one job on the pool's misc lane that
        runs catch_up(engine) every `interval` seconds (no flush, no compaction)."""
        p = self.pool = pool.attach(self, self.nice, self.cpus, None)
        self.adaptive_wake = p.job("misc", weakref.ref(engine), catch_up, (), interval,
                                   f"catch-up:{engine.path}")

    def wakes(self):
        """The flush and compaction jobs, which Signal.notify_all() wakes."""
        return [self.flush_wake] + self.compaction_wakes

    def jobs(self):
        """Every job added, flush first."""
        return [j for j in (self.flush_wake, *self.compaction_wakes, self.janitor_wake,
                            self.adaptive_wake) if j is not None]

    def join(self):
        """At close: cancel every job of this engine, waiting for any step of it that
        runs, then leave the pool (the last engine stops the pool's threads)."""
        p = self.pool
        if p is None:
            return
        for j in self.jobs():
            j.lane.cancel([j])
        self.pool = None
        pool.detach(p, self)

    def is_own(self, thread):
        """Could joining from `thread` wait for itself (a thread of any pool)?"""
        return thread is threading.current_thread() and pool.in_pool_thread()

    def worker(self):
        """The compaction worker process for the calling thread (lsmkv.engine.pool)."""
        return self.pool.worker() if self.pool is not None else None

    @property
    def tids(self):
        """Background thread name -> native id, for the pool this engine's jobs run in."""
        p = self.pool
        return p.tids() if p is not None else {}

    def threads(self):
        """The pool threads that run this engine's steps (none once closed)."""
        p = self.pool
        return p.threads() if p is not None else []

    def job_states(self):
        """Job name (without the path) -> its state: idle, queued, running, done."""
        return {j.name.split(":")[0]: j.state for j in self.jobs()}
