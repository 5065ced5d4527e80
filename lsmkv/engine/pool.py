"""The process-wide background pools that run every open engine's background steps.

RocksDB's Env thread pools: one set of threads per process, shared by every open
DB, instead of threads of each DB's own. A Pool has three lanes, each a FIFO of
ready jobs served by its own threads, so that a flush never waits behind a long
compaction (RocksDB's HIGH and LOW pools):

  flush     flush steps                          (HIGH)  threads: see sizes()
  compact   compaction steps                     (LOW)   threads: see sizes()
  misc      janitor and adaptive-controller steps        one thread

The lanes and their jobs are lsmkv.engine.lanes: a job is one engine's recurring
step, run by a lane thread when woken or when its IDLE timeout passed, holding the
engine only through a weak reference between steps. An idle engine has queued
nothing and costs no thread.

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
`users` and `workers`; it is taken before a lane's lock (lsmkv.engine.lanes),
never after, and after any engine lock. Reentrant: the collector may run a DB
handle's finalizer in a thread holding it, and closing that DB leaves its pool
here. A finalizer in a pool thread closes from a new thread
(lsmkv.engine.engine.Engine.handle_dropped), since close waits for the DB's
running steps.

Invariants:
  1. A pool is in the registry while it has users; the last detach removes it,
     stops its lanes and closes its workers.
  2. The compact lane's thread slot i has worker i (len(workers) >= its size).
  3. After fork() the child has no pool: the registry is emptied without taking
     a lock, and the parent's workers are forgotten, not told anything.
"""
import os
import threading

from lsmkv.engine import lanes
from lsmkv.engine.lanes import AGAIN, IDLE, STOP, Job, Lane  # noqa: F401 - the steps' answers
from lsmkv.engine.worker import Worker

LANES = ("flush", "compact", "misc")

_lock = threading.RLock()               # reentrant (see the module docstring)
_pools = {}                              # (nice, cpus) -> Pool, while an engine uses it
_requested = {"flush": None, "compact": None}      # set_background_threads(); None: automatic


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
        """Threads per lane for the current users (_lock held). Users that run no
        flush and no compaction (a secondary's catch-up job: compactions None) need
        the misc lane only."""
        writers = [c for c in self.users.values() if c is not None]
        if self.users and not writers:
            return {"flush": 0, "compact": 0, "misc": 1}
        return _sizes(max(writers, default=1))

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
        cur = lanes.current
        ws = self.workers
        if getattr(cur, "lane", None) is self.lanes["compact"] and cur.slot < len(ws):
            return ws[cur.slot]
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
    caller keeps) counted as a user asking for `compactions` compaction threads
    (None: a user of the misc lane only)."""
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
    return lanes.in_lane_thread()


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
    global _lock, _pools
    old = list(_pools.values())
    _lock = threading.RLock()
    _pools = {}
    for pool in old:
        for w in pool.workers:
            w.forget()


os.register_at_fork(after_in_child=_after_fork_in_child)
