"""The process-wide background pools that run every open engine's background steps.

RocksDB's Env thread pools: one set of threads per process, shared by every open
DB, instead of threads of each DB's own. A Pool has three lanes, each a FIFO of
ready jobs served by its own threads, so that a flush never waits behind a long
compaction (RocksDB's HIGH and LOW pools):

  flush     flush steps                          (HIGH)  threads: see sizes()
  compact   compaction steps                     (LOW)   threads: see sizes()
  misc      janitor and adaptive-controller steps        one thread

A job (Job) is one engine's recurring task: step(engine, *args) -> STOP, IDLE or
AGAIN (lsmkv.engine.background), run by a lane thread whenever the job was woken
(Job.set(), as an Event would be) or its IDLE timeout passed. A job holds the
engine only through a weak reference; a thread holds it strongly only while one
step runs. An idle engine has queued nothing and costs no thread.

Pools are keyed by the CPU priority and CPU set their threads run at (options
background_priority, background_cpus, numa_node): engines with the same settings
share one Pool; each distinct setting has its own (usually there is one). A Pool
lives while an engine uses it: the last engine to leave stops its threads and
its compaction worker processes. The compact lane has one worker process slot per
thread (lsmkv.engine.worker.Worker): thread i runs its jobs in worker i, so a
process has at most as many workers as compaction threads, whatever the number
of DBs; a manual compaction (in the caller's thread) uses worker 0.

Sizes (RocksDB's Env::SetBackgroundThreads and IncBackgroundThreadsIfNeeded):
set_background_threads(n, lane) fixes a lane's thread count; unset, the flush lane
has one thread and the compact lane as many as the most any open engine asks for
(its max_background_jobs - 1). An engine never runs more of its compactions at
once than its max_background_jobs - 1 allows, nor more than the lane has threads.

Thread safety: `_lock` guards the registry (_pools, _requested) and each Pool's
`users`; it is taken before a lane's lock, never after. Each Lane's `cond` guards
its queue, its timers, its threads and every state field of its jobs. Job.set()
may be called with an engine mutex held (Signal.notify_all): lane locks come after
every engine lock, and no engine lock is taken under a lane lock (steps run with
none held). Both locks are reentrant: the collector may run a DB handle's
finalizer in a thread holding one, and closing that DB cancels its jobs and
leaves its pool here. A finalizer in a pool thread closes from a new thread
(lsmkv.engine.engine.Engine.handle_dropped), since close waits for the DB's
running steps. Lane.tids is written by each lane thread for itself (one dict
operation) and read as a copy.

Invariants:
  1. A job is in at most one place: queued once, or running on one thread, or
     idle (then perhaps in the timer heap, as its current generation), or done.
  2. A wake-up is never lost: set() on a running job makes it run again after
     its step, whatever the step returns (unless STOP or cancelled).
  3. cancel() returns only when none of the given jobs is running, and none will
     run again.
  4. After fork() the child has no pool: the registry is emptied without taking
     a lock, and the parent's workers are forgotten, not told anything.
"""
import heapq
import itertools
import os
import sys
import threading
import time
from collections import deque

from lsmkv.engine import numa
from lsmkv.engine.worker import Worker, set_nice

STOP, IDLE, AGAIN = 0, 1, 2        # a step's answer (lsmkv.engine.background re-exports them)
LANES = ("flush", "compact", "misc")

# Job states
_IDLE, _QUEUED, _RUNNING, _DONE = "idle", "queued", "running", "done"

_lock = threading.RLock()               # reentrant, as Lane.cond is
_pools = {}                              # (nice, cpus) -> Pool, while an engine uses it
_requested = {"flush": None, "compact": None}      # set_background_threads(); None: automatic
_local = threading.local()               # .lane, .slot of a pool thread


class Job:
    """One engine's recurring background task in a lane (see the module docstring).
    set() wakes it, as Event.set() would wake a thread waiting for work."""

    __slots__ = ("lane", "ref", "step", "args", "timeout", "name", "state", "again",
                 "cancelled", "gen", "__weakref__")

    def __init__(self, lane, ref, step, args, timeout, name):
        self.lane = lane
        self.ref = ref                   # weakref.ref(engine)
        self.step = step                 # unbound: step(engine, *args)
        self.args = args
        self.timeout = timeout           # seconds an IDLE step waits at most (None: no limit)
        self.name = name
        # -- guarded by lane.cond
        self.state = _IDLE
        self.again = False               # woken while running
        self.cancelled = False
        self.gen = 0                     # timer entries of older generations are stale

    def set(self):
        """Wake the job: it runs its step soon (again, if it is running)."""
        self.lane.wake(self)

    def is_set(self):
        """Is the job queued or running (Event-like, for tests)?"""
        return self.state in (_QUEUED, _RUNNING)


class Lane:
    """A FIFO of ready jobs and the threads that serve it."""

    def __init__(self, pool, name):
        self.pool = pool
        self.name = name
        # reentrant: a finalizer the garbage collector runs while this thread holds
        # it may close another engine, which cancels its jobs here
        self.cond = threading.Condition(threading.RLock())
        # -- guarded by cond
        self.ready = deque()             # jobs to run, in the order woken
        self.timers = []                 # heap of (deadline, seq, gen, job) for idle jobs
        self.seq = itertools.count()
        self.size = 0                    # threads wanted
        self.threads = {}                # slot -> Thread
        self.tids = {}                   # thread name -> native id
        self.stopping = False

    # -- jobs

    def add(self, job):
        """A new job: it runs its first step at once."""
        with self.cond:
            job.state = _QUEUED
            self.ready.append(job)
            self.cond.notify()

    def wake(self, job):
        with self.cond:
            if job.state == _IDLE:
                job.state = _QUEUED
                job.gen += 1
                self.ready.append(job)
                self.cond.notify()
            elif job.state == _RUNNING:
                job.again = True

    def cancel(self, jobs):
        """Take jobs out for good; wait until none of them runs (never from a
        thread of this lane: it would wait for itself)."""
        with self.cond:
            for j in jobs:
                j.cancelled = True
                if j.state == _QUEUED:
                    self.ready.remove(j)
                if j.state != _RUNNING:
                    j.state = _DONE
                    j.gen += 1
            while any(j.state == _RUNNING for j in jobs):
                self.cond.wait()

    # -- threads

    def resize(self, n):
        """Run n threads (more start now; extra ones exit when idle)."""
        with self.cond:
            self.size = n
            for slot in range(n):
                if slot not in self.threads:
                    t = threading.Thread(target=self.serve, args=(slot,), daemon=True,
                                         name=f"lsmkv-{self.name}-{slot}")
                    self.threads[slot] = t
                    t.start()
            self.cond.notify_all()

    def stop(self):
        """Ask every thread to exit; returns them, for the caller to join."""
        with self.cond:
            self.stopping = True
            self.cond.notify_all()
            return list(self.threads.values())

    def next_job(self, slot):
        """The next job to run (cond held), or None when this thread should exit."""
        while True:
            if self.stopping or slot >= self.size:
                self.threads.pop(slot, None)
                self.tids.pop(f"lsmkv-{self.name}-{slot}", None)
                return None
            now = time.monotonic()
            timers = self.timers
            while timers and timers[0][0] <= now:
                _, _, gen, job = heapq.heappop(timers)
                if job.gen == gen and job.state == _IDLE:
                    job.state = _QUEUED
                    self.ready.append(job)
            if self.ready:
                job = self.ready.popleft()
                job.state = _RUNNING
                job.again = False
                return job
            self.cond.wait(timers[0][0] - now if timers else None)

    def finished(self, job, what):
        """Where a job goes after its step (cond held)."""
        if job.cancelled or what == STOP:
            job.state = _DONE
            self.cond.notify_all()           # a cancel() may be waiting for it
        elif what == AGAIN or job.again:
            job.state = _QUEUED
            self.ready.append(job)
        else:
            job.state = _IDLE
            job.gen += 1
            if job.timeout is not None:
                heapq.heappush(self.timers, (time.monotonic() + job.timeout, next(self.seq),
                                             job.gen, job))

    def serve(self, slot):
        """Body of a lane thread: run ready jobs' steps until the lane stops."""
        pool = self.pool
        if pool.nice:
            set_nice(threading.get_native_id(), pool.nice)
        numa.bind_current_thread(pool.cpus)
        _local.lane = self
        _local.slot = slot
        self.tids[threading.current_thread().name] = threading.get_native_id()
        cond = self.cond
        with cond:
            while True:
                job = self.next_job(slot)
                if job is None:
                    break
                cond.release()
                try:
                    what = run_step(job)
                finally:
                    cond.acquire()
                self.finished(job, what)
        ws = pool.workers
        if self is pool.lanes["compact"] and slot < len(ws):
            ws[slot].close()     # its own worker (the thread's exit would SIGKILL it); restarts on use


def run_step(job):
    """One step of a job, holding its engine only meanwhile. A step that raises
    (a bug: steps report their failures through the engine) stops its job, with
    the traceback printed as an uncaught thread exception would be."""
    engine = job.ref()
    if engine is None:
        return STOP
    try:
        return job.step(engine, *job.args)
    except BaseException:    # noqa: BLE001 - printed; the pool thread goes on for other engines
        sys.excepthook(*sys.exc_info())
        return STOP
    finally:
        del engine            # may be the last reference


class Pool:
    """The lanes and compaction workers shared by the engines of one (nice, cpus)."""

    def __init__(self, nice, cpus):
        # -- constant
        self.nice = nice
        self.cpus = cpus
        self.lanes = {name: Lane(self, name) for name in LANES}
        # -- guarded by the module's _lock
        self.users = {}                  # id(user token) -> compaction threads it asks for
        self.workers = []                # compaction worker processes, one per compact thread slot

    def sizes(self):
        """Threads per lane for the current users (_lock held)."""
        return _sizes(max(self.users.values(), default=1))

    def apply_sizes(self):
        """Start or retire threads to match sizes() (_lock held)."""
        sizes = self.sizes()
        while len(self.workers) < sizes["compact"]:
            self.workers.append(Worker(self.nice, self.cpus))
        for name, n in sizes.items():
            self.lanes[name].resize(n)

    def job(self, lane, engine_ref, step, args, timeout, name):
        """A new job in `lane`, running its first step now."""
        j = Job(self.lanes[lane], engine_ref, step, args, timeout, name)
        self.lanes[lane].add(j)
        return j

    def worker(self):
        """The compaction worker for the calling thread: its own in the compact lane,
        else worker 0 (a manual compaction; runs after that worker's current job);
        None once the pool stopped (the caller merges in its thread)."""
        lane = getattr(_local, "lane", None)
        ws = self.workers
        if lane is self.lanes["compact"] and _local.slot < len(ws):
            return ws[_local.slot]
        return ws[0] if ws else None      # None: the pool stopped (its last DB closed meanwhile)

    def tids(self):
        """Thread name -> native id of every running thread of the pool."""
        out = {}
        for lane in self.lanes.values():
            out.update(lane.tids)
        return out

    def threads(self):
        """Every thread of the pool, flush lane first."""
        out = []
        for lane in self.lanes.values():
            with lane.cond:
                out.extend(lane.threads[s] for s in sorted(lane.threads))
        return out

    def stats(self):
        """stats()["background_pool"]."""
        with _lock:
            dbs = len(self.users)
        return {"dbs": dbs, "workers": sum(1 for w in self.workers if w.pid is not None),
                **{name: lane.size for name, lane in self.lanes.items()}}


def _sizes(compactions):
    """Threads per lane when open engines ask for at most `compactions` compaction
    threads (_lock held)."""
    return {"flush": _requested["flush"] or 1,
            "compact": _requested["compact"] or max(1, compactions),
            "misc": 1}


def attach(token, nice, cpus, compactions):
    """The Pool for (nice, cpus), created if needed, with token (any object the
    caller keeps) counted as a user asking for `compactions` compaction threads."""
    key = (nice, cpus)
    with _lock:
        pool = _pools.get(key)
        if pool is None:
            pool = _pools[key] = Pool(nice, cpus)
        pool.users[id(token)] = compactions
        pool.apply_sizes()
    return pool


def detach(pool, token):
    """token no longer uses pool. The last user stops the pool: its threads are
    joined (all but the calling one) and its worker processes closed."""
    with _lock:
        pool.users.pop(id(token), None)
        if pool.users:
            pool.apply_sizes()
            return
        if _pools.get((pool.nice, pool.cpus)) is pool:
            del _pools[(pool.nice, pool.cpus)]
        threads = [t for lane in pool.lanes.values() for t in lane.stop()]
        workers, pool.workers = pool.workers, []
    me = threading.current_thread()
    for t in threads:
        if t is not me:
            t.join()
    for w in workers:
        w.close()


def in_pool_thread():
    """Is the calling thread one of a pool's? (A close from there must not wait
    for its own lane.)"""
    return getattr(_local, "lane", None) is not None


def set_background_threads(n, lane="compact"):
    """Set how many threads a background lane of every pool runs: 'compact'
    (compactions, RocksDB's LOW pool) or 'flush' (flushes, HIGH); None goes back
    to automatic (flush: 1; compact: the most any open DB's max_background_jobs - 1
    asks for). Takes effect at once for open DBs and for DBs opened later.

    >>> import lsmkv
    >>> lsmkv.set_background_threads(2)
    >>> lsmkv.background_threads()["compact"]
    2
    >>> lsmkv.set_background_threads(None)
    """
    if lane not in _requested:
        raise ValueError(f"set_background_threads: lane must be 'flush' or 'compact', not {lane!r}")
    if n is not None and (not isinstance(n, int) or isinstance(n, bool) or n < 1):
        raise ValueError(f"set_background_threads: n must be an int >= 1 or None, got {n!r}")
    with _lock:
        _requested[lane] = n
        for pool in _pools.values():
            pool.apply_sizes()


def background_threads():
    """Threads per lane a pool runs now ('flush', 'compact', 'misc'), and how many
    pools there are ('pools': one per distinct background priority and CPU set).
    Every open DB shares them: ten DBs run on these threads, not thirty.

    >>> import lsmkv
    >>> lsmkv.background_threads()["flush"]
    1
    """
    with _lock:
        sizes = next(iter(_pools.values())).sizes() if _pools else _sizes(1)
        return dict(sizes, pools=len(_pools))


def _after_fork_in_child():
    """Only the forking thread exists in the child, and a lock another thread held
    at the fork stays held: start from no pool, with fresh locks; the parent's
    worker processes are forgotten (a word to them would reach the parent's)."""
    global _lock, _pools, _local
    old = list(_pools.values())
    _lock = threading.RLock()
    _pools = {}
    _local = threading.local()
    for pool in old:
        for w in pool.workers:
            w.forget()


os.register_at_fork(after_in_child=_after_fork_in_child)
