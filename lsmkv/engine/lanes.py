"""Lanes of the background pool: a FIFO of ready jobs and the threads that serve it.

A job (Job) is one engine's recurring task: step(engine, *args) -> STOP, IDLE or
AGAIN, run by a thread of its lane whenever the job was woken (Job.set(), as an
Event would be) or its IDLE timeout passed: AGAIN puts it back at the end of the
queue (busy engines take turns), IDLE parks it until woken or timed out, STOP ends
it. A job holds the engine only through a weak reference; a lane thread holds it
strongly only while one step runs (run_step). lsmkv.engine.pool groups lanes into
pools and sizes them; lsmkv.engine.background makes an engine's jobs.

Thread safety: each Lane's `cond` (reentrant: the collector may run a finalizer
that closes a DB, and so cancels its jobs, in a thread holding it) guards its
queue, its timers, its threads and every state field of its jobs. It is taken
after any engine lock and never held while a step runs. Lane.tids is written by
each lane thread for itself (one dict operation) and read as a copy. `current`
(a thread-local) says which lane and slot the calling thread serves.

Invariants:
  1. A job is in at most one place: queued once, or running on one thread, or
     idle (then perhaps in the timer heap, as its current generation), or done.
  2. A wake-up is never lost: set() on a running job makes it run again after
     its step, whatever the step returns (unless STOP or cancelled).
  3. cancel() returns only when none of the given jobs is running, and none will
     run again.
"""
import heapq
import itertools
import os
import sys
import threading
import time
from collections import deque

from lsmkv.engine import numa
from lsmkv.engine.worker import set_nice

STOP, IDLE, AGAIN = 0, 1, 2        # a step's answer

# Job states
_IDLE, _QUEUED, _RUNNING, _DONE = "idle", "queued", "running", "done"

current = threading.local()        # .lane, .slot of a lane thread (unset elsewhere)


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
                self.cond.notify()       # a wake-up meant for this thread goes to another
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
        current.lane = self
        current.slot = slot
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


def in_lane_thread():
    """Is the calling thread a lane's (of any pool)?"""
    return getattr(current, "lane", None) is not None


def _after_fork_in_child():
    """Only the forking thread exists in the child, and it serves no lane there."""
    global current
    current = threading.local()


os.register_at_fork(after_in_child=_after_fork_in_child)
