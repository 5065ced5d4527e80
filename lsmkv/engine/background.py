"""The engine's background threads: the weak-reference runner, the condition that
wakes them, and their start, priority and stop.

Each thread runs run(): a loop of steps, each a function of the engine that says
what the thread does next (STOP, IDLE: wait for a wake-up, AGAIN). Between steps
the thread holds the engine only through a weak reference and waits on its own
Event, so an idle thread keeps nothing alive.

Thread safety: Threads.start() and Threads.join() are called by the thread that
opens and closes the engine. tids is written by each background thread for its
own name (one dict assignment) and read as a copy. Signal.notify_all() is called
with the engine mutex held, as Condition requires.

Invariants:
  1. A background thread holds a strong reference to the engine only while one
     step runs; the step functions are unbound, so neither the Thread object nor
     its arguments reference the engine.
  2. A wake-up is never lost: a thread's event is cleared before its step looks
     for work, and whoever hands it work sets the event afterwards.
  3. Signal.notify_all() also sets the flush and compaction threads' events, so
     every change that may give them work wakes them.
"""
import threading

from lsmkv.engine import numa
from lsmkv.engine.worker import set_nice

BACKGROUND_NICE = 19       # background_priority='low' (RocksDB's CpuPriority::kLow)

# A background thread's step says what the thread does next.
STOP, IDLE, AGAIN = 0, 1, 2


def run(ref, step, wake, timeout, *args):
    """Body of every background thread: run step(engine, *args) while the engine lives.

    The thread holds the engine (ref() of a weak reference) only while a step runs
    and waits on its own Event, not on the engine's condition, so an idle thread
    keeps no engine alive. The event is cleared before each step, so a wake-up that
    comes while the step looks for work is not lost."""
    engine = ref()
    if engine is None:
        return
    engine.threads.lower_priority()
    del engine
    while True:
        wake.clear()
        engine = ref()
        if engine is None:
            return
        what = step(engine, *args)
        del engine            # may be the last reference
        if what == STOP:
            return
        if what == IDLE:
            wake.wait(timeout)


class Signal(threading.Condition):
    """The engine's condition variable on its mutex. notify_all() also sets the wake
    events of the flush and compaction threads, which wait on those rather than
    here (a thread waiting here would hold the engine alive)."""

    def __init__(self, lock, events):
        super().__init__(lock)
        self.events = events

    def notify_all(self):
        super().notify_all()
        for e in self.events:
            e.set()


class Threads:
    """The engine's background threads: flush, compaction (n_compactions of them),
    the janitor (spare logs, closing flushed logs, deleting files) and the
    adaptive_memory controller; their wake events, CPU priority and affinity."""

    def __init__(self, options, n_compactions):
        # -- constant after construction
        self.nice = BACKGROUND_NICE if options.background_priority == "low" else 0
        self.cpus = numa.resolve_cpus(options.background_cpus, options.numa_node)
        # what the threads wait on between steps; each is set by whoever hands the
        # thread work, and by close()
        self.flush_wake = threading.Event()
        self.compaction_wakes = [threading.Event() for _ in range(n_compactions)]
        self.janitor_wake = threading.Event()
        self.adaptive_wake = threading.Event()
        # -- written by the opening thread, read by others
        self.flush = None
        self.compactions = []
        self.janitor = None
        self.adaptive = None
        # -- one dict assignment per background thread (its own name)
        self.tids = {}                   # background thread name -> native id (for stats)

    def all(self):
        """Every thread started, flush first."""
        return [t for t in (self.flush, *self.compactions, self.janitor, self.adaptive) if t is not None]

    def start(self, ref, path, what, step, wake, timeout, *args):
        t = threading.Thread(target=run, args=(ref, step, wake, timeout) + args,
                             name=f"lsmkv-{what}:{path}", daemon=True)
        t.start()
        return t

    def lower_priority(self):
        """Background threads run at a low CPU priority (option background_priority),
        so on a busy machine the scheduler does not preempt the writer for them:
        in an instrumented 3M-put fill (2 cores) puts >= 50 us fell from 2,040 to
        806-1,340 (docs/tuning.md)."""
        if self.nice:
            set_nice(threading.get_native_id(), self.nice)
        numa.bind_current_thread(self.cpus)
        self.tids[threading.current_thread().name.split(":")[0]] = threading.get_native_id()

    def join(self):
        """Stop order at close: the flush and compaction threads first (they see
        shutting_down), then the janitor and the controller, woken to see it."""
        me = threading.current_thread()
        for t in [self.flush] + self.compactions:
            if t is not None and t is not me:
                t.join()
        self.janitor_wake.set()
        self.adaptive_wake.set()
        for t in (self.janitor, self.adaptive):
            if t is not None and t is not me:
                t.join()

    def is_own(self, thread):
        return thread in self.all()
