"""lsmkv.WriteBufferManager: one memtable memory limit shared by several DBs
(RocksDB's WriteBufferManager passed to many DBs).

Options(write_buffer_manager=wbm) makes a DB's memtables count against wbm.limit.
The split is static and exact: each attached DB may hold max_write_buffer_number
memtables, so the limit is divided into that many slots per DB, and every DB's
write buffer size (where its active memtable is switched) becomes
min(its write_buffer_size option, one slot), never
below MIN_WRITE_BUFFER. Opening or closing a DB re-divides it. A DB that shrinks
switches its active memtable at its next write once that is over the new size.
So the memtables of all the DBs stay within the limit (plus a last write's
overshoot each), whatever their load; an idle DB's share is not lent to a busy
one (RocksDB's manager is dynamic: it flushes the largest memtable when the sum
passes the limit).

Thread safety: `lock` guards `engines`; it is taken before an engine mutex, never
under one (attach and detach run at open and close, outside the mutex). Reentrant:
a finalizer the collector runs while it is held may close a DB, which detaches.

Invariants:
  1. Every attached, open engine's write_buffer_size is share(its
     max_write_buffer_number) of the current set of engines, set under its mutex.
  2. In a fork() child a manager starts empty with a fresh lock (the parent's
     engines are dead there).
"""
import os
import threading
import weakref

MIN_WRITE_BUFFER = 64 << 10        # the write_buffer_size option's own minimum

_managers = weakref.WeakSet()      # every manager, for the fork hook


class WriteBufferManager:
    """A memtable memory limit of `limit` bytes for every DB given it:
    DB(path, write_buffer_manager=wbm). Not with adaptive_memory (which moves a
    DB's write buffer size itself).

    >>> import lsmkv, tempfile
    >>> wbm = lsmkv.WriteBufferManager(8 << 20)
    >>> dbs = [lsmkv.DB(tempfile.mkdtemp(), write_buffer_manager=wbm) for _ in range(4)]
    >>> [db.write_buffer_size for db in dbs] == [1 << 20] * 4     # 8 MiB / (4 DBs x 2 memtables)
    True
    >>> for db in dbs: db.close()
    """

    def __init__(self, limit):
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 2 * MIN_WRITE_BUFFER:
            raise ValueError(f"lsmkv.WriteBufferManager: limit must be an int >= {2 * MIN_WRITE_BUFFER}, "
                             f"got {limit!r}")
        self.limit = limit
        self.lock = threading.RLock()
        # -- guarded by lock
        self.engines = {}             # id(engine) -> weakref.ref(engine), attached and open
        _managers.add(self)

    def slot(self):
        """Bytes of one memtable slot: the limit over every attached DB's
        max_write_buffer_number (lock held)."""
        slots = sum(e.options.max_write_buffer_number for e in self.live())
        return max(MIN_WRITE_BUFFER, self.limit // max(1, slots))

    def live(self):
        """The attached engines still alive (lock held)."""
        return [e for e in (r() for r in list(self.engines.values())) if e is not None]

    def attach(self, engine):
        """A DB opens with this manager: re-divide the limit."""
        with self.lock:
            self.engines[id(engine)] = weakref.ref(engine)
            self.apply()

    def detach(self, engine):
        """A DB closes: re-divide the limit among the others."""
        with self.lock:
            if self.engines.pop(id(engine), None) is not None:
                self.apply()

    def apply(self):
        """Set every attached DB's write buffer size to its share (lock held)."""
        slot = self.slot()
        for e in self.live():
            with e.mutex:
                e.write_buffer_size = min(e.options.write_buffer_size, slot)

    def stats(self):
        """stats()["write_buffer_manager"]: the limit, the DBs sharing it, one slot's
        bytes and the memtable bytes they hold now."""
        with self.lock:
            engines = self.live()
            slot = self.slot()
        held = 0
        for e in engines:
            sv = e.sv
            if sv is not None:
                held += sv.mem.memory_usage + sum(m.memory_usage for m in sv.imms)
        return {"limit": self.limit, "dbs": len(engines), "write_buffer_size": slot,
                "memtable_bytes": held}


def _after_fork_in_child():
    """The parent's engines are dead in a child, and a lock held at the fork stays
    held: every manager starts over, empty."""
    for m in list(_managers):
        m.lock = threading.RLock()
        m.engines = {}


os.register_at_fork(after_in_child=_after_fork_in_child)
