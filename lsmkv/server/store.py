"""How the server calls the engine without blocking its event loop.

Reads run inline on the loop: a get from the memtable or from a cached block
takes microseconds (docs/server.md has the measurement); long scans go to a
reader thread. Writes go through one FIFO of "write steps" (a function doing
the whole read-modify-write of one command, e.g. INCR's get + put):

  * inline on the loop when nothing is queued for the writer thread and the
    engine would not make this write wait: the memtable has room and level 0 is
    below its slowdown trigger;
  * on the single writer thread when it would wait (a full memtable, a level-0
    stall, appendfsync always) or for the everysec sync; the command's reply waits;
  * while a step runs on the writer thread, later write steps wait on the loop
    (each blocks only its own connection) and run inline once it is done: handing
    every write to the thread while one is busy would keep the server in that
    slow mode (~30 us of hand-off and GIL switching per write, measured).

Invariants:
  1. Write steps run one at a time in the order the server received them:
     inline steps run only while the writer queue and the waiting list are
     empty, the writer is one thread taking its queue in order, and waiting
     steps run in arrival order once it is idle. So INCR/SET NX/GETDEL/... are atomic
     with respect to every other client of this server (the server must be the
     only writer of the database, which its directory lock guarantees).
  2. appendfsync 'always': every write step writes with sync=True, on the writer
     thread. 'everysec': a sync step is queued once a second after writes.
     'no': the WAL is synced only when the engine decides (flush, close).

Thread safety: every method is called from the event loop thread; only the
functions handed to the executors run elsewhere.
"""
import collections
from concurrent.futures import ThreadPoolExecutor

from lsmkv.core.dbcore import write_room
from lsmkv.errors import ClosedError
from lsmkv.server.fast import StoreCore

FSYNC_POLICIES = ("always", "everysec", "no")


class Store(StoreCore):
    """The server's engine calls (see above). queued, waiting, sync, dirty and
    inline_writes are fast.pyx's StoreCore's fields: the compiled fast path reads
    them as C fields."""

    def __init__(self, db, loop, appendfsync="everysec"):
        if appendfsync not in FSYNC_POLICIES:
            raise ValueError(f"appendfsync must be one of {', '.join(FSYNC_POLICIES)}, got {appendfsync!r}")
        self.db = db
        self.loop = loop
        self.appendfsync = appendfsync
        self.sync = appendfsync == "always"      # passed to every engine write
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="lsmkv-serve-writer")
        self._reader = ThreadPoolExecutor(1, thread_name_prefix="lsmkv-serve-reader")
        self.queued = 0               # write steps handed to the writer thread, not yet done
        self.waiting = collections.deque()   # (future, fn, args, exclusive) of steps waiting for the thread
        self.waited_writes = 0
        self.dirty = False            # writes since the last everysec sync
        self.inline_writes = 0
        self.offloaded_writes = 0
        self.offloaded_reads = 0
        self.syncs = 0
        self.sync_errors = 0
        self.last_sync_error = None
        self._timer = None
        if appendfsync == "everysec":
            self._timer = loop.call_later(1.0, self._tick)

    def cheap(self):
        """True if the engine would not make a write wait now: the memtable has
        room and level 0 is below its slowdown trigger. (A background thread may
        hold the DB mutex for microseconds; the loop then waits that long.)"""
        return write_room(self.db) > 0           # the engine's fields, read in C

    def write(self, fn, *args):
        """Run the write step fn(*args): its result now, or an asyncio Future of it.

        Order (invariant 1): steps already waiting go first; with a step on the
        writer thread, later steps wait on the loop (one future per waiting
        connection) and run inline as soon as it is done; appendfsync always
        queues every step on the thread."""
        self.dirty = True
        if self.waiting:
            return self._wait(fn, args)
        if self.sync:
            return self.offload(fn, *args)
        if self.queued == 0:
            if self.cheap():
                self.inline_writes += 1
                return fn(*args)
            return self.offload(fn, *args)
        return self._wait(fn, args)

    def write_heavy(self, fn, *args):
        """A write step too long for the loop (a command with many keys, e.g. DEL of
        a million): on the writer thread, in order (later steps wait for it), so
        other clients are served while it runs. Invariant 1 holds: it is queued
        behind every step before it."""
        self.dirty = True
        if self.waiting or self.sync:
            return self._wait(fn, args) if self.waiting else self.offload(fn, *args)
        return self.offload(fn, *args)

    def exclusive(self, fn, *args):
        """A write step that must run alone (EXEC, multi.py): fn(*args) on the
        loop, which it does not yield, after every step before it; its result
        now, or a Future when steps are queued or running (it then runs on the
        loop as soon as the writer is idle, in order). Invariant 1 holds, and no
        read of another client runs while it does."""
        self.dirty = True
        if not self.waiting and self.queued == 0:
            self.inline_writes += 1
            return fn(*args)
        fut = self.loop.create_future()
        self.waiting.append((fut, fn, args, True))
        self.waited_writes += 1
        return fut

    def put(self, key, value):
        """A plain SET (the hottest write): write() without its generic call."""
        db = self.db
        if self.queued == 0 and not self.waiting and not self.sync and write_room(db) > 0:
            self.dirty = True
            self.inline_writes += 1
            db.put(key, value)
            return b"+OK\r\n"
        return self.write(_put, db, key, value, self.sync)

    def _wait(self, fn, args):
        fut = self.loop.create_future()
        self.waiting.append((fut, fn, args, False))
        self.waited_writes += 1
        return fut

    def _drain(self):
        """The writer thread is idle: run the waiting steps in order (inline while
        cheap; the first one that is not goes to the thread and the rest wait again)."""
        while self.waiting and self.queued == 0:
            fut, fn, args, alone = self.waiting.popleft()
            if alone or (self.cheap() and not self.sync):
                try:
                    r = fn(*args)
                except Exception as e:
                    fut.set_exception(e)
                    continue
                self.inline_writes += 1
                fut.set_result(r)
            else:
                self.offload(fn, *args).add_done_callback(
                    lambda f, fut=fut: fut.set_exception(f.exception()) if f.exception() is not None
                    else fut.set_result(f.result()))

    def offload(self, fn, *args):
        """fn(*args) on the writer thread, after every write step queued before it."""
        self.queued += 1
        self.offloaded_writes += 1
        fut = self.loop.run_in_executor(self._writer, fn, *args)
        fut.add_done_callback(self._done)
        return fut

    def _done(self, fut):
        self.queued -= 1
        if self.queued == 0 and self.waiting:
            self._drain()

    def read(self, fn, *args):
        """fn(*args) on the reader thread (long scans): an asyncio Future."""
        self.offloaded_reads += 1
        return self.loop.run_in_executor(self._reader, fn, *args)

    # -- everysec

    def _tick(self):
        self._timer = self.loop.call_later(1.0, self._tick)
        if self.dirty:
            self.dirty = False
            self.offload(self._sync_step)

    def _sync_step(self):
        """Make every acknowledged write durable (writer thread)."""
        db = self.db
        try:
            db.sync_wal()
            self.syncs += 1
        except ClosedError:             # SHUTDOWN closed the DB first: nothing to sync
            return
        except Exception as e:          # reported by INFO persistence, retried next second
            self.sync_errors += 1
            self.last_sync_error = f"{type(e).__name__}: {e}"
            self.dirty = True

    async def close(self):
        """Wait for queued steps, stop the threads (the DB stays open)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        await self.loop.run_in_executor(None, self._shutdown_pools)

    def _shutdown_pools(self):
        self._writer.shutdown(wait=True)
        self._reader.shutdown(wait=True)

    def stats(self):
        return {"appendfsync": self.appendfsync, "inline_writes": self.inline_writes,
                "offloaded_writes": self.offloaded_writes, "waited_writes": self.waited_writes,
                "offloaded_reads": self.offloaded_reads,
                "writer_queue": self.queued, "syncs": self.syncs, "sync_errors": self.sync_errors,
                "last_sync_error": self.last_sync_error}


def _put(db, key, value, sync):
    db.put(key, value, sync=sync)
    return b"+OK\r\n"
