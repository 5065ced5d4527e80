"""Obsolete-file collection and purge: which files are live, and deleting the rest.

collect() (mutex held, no I/O) queues the SSTs no live version references and the
logs already in SSTs; purge() (mutex not held) unlinks what is queued, so writers
never wait on an unlink. Pins (lsmkv.core.dbcore.Pin, one per open iterator) keep
their version's tables live; pending outputs keep the files being written live.

Thread safety: `pending_outputs` is guarded by the engine mutex. `pins`,
`gc_pending` and `obsolete` are changed by single atomic operations from any
thread (a Pin registers and releases itself without the mutex; readers copy them
in one call); `obsolete` is appended under the mutex and popped under
`purge_lock`, which is taken alone.

Invariants:
  1. A table is queued for deletion only when neither the current version, a
     pinned version nor a pending output names it.
  2. A log is queued only when its number is below the MANIFEST's log_number
     (its memtable is in an SST, durably); with column families, below the
     oldest log a memtable with data of any family needs (Families.log_bound).
  3. Nothing is collected or unlinked in a fork() child (the files are the
     parent's) nor after close; a read-only or secondary engine only lets go of
     its readers (the files are the primary's, lsmkv.engine.follower).
  4. A pin released while the mutex is busy, or while another thread purges,
     sets gc_pending; the next iterator creation or background step collects
     and purges.
"""
import collections
import os
import threading

from lsmkv.engine import filenames


class Files:
    """Live-file bookkeeping and deletion for one engine (see the module docstring)."""

    def __init__(self, engine):
        self.engine = engine
        # -- constant
        self.purge_lock = threading.Lock()    # unlinking obsolete files
        # -- guarded by the engine mutex
        self.pending_outputs = set()          # numbers of files being written
        # -- single atomic operations from any thread
        self.pins = {}                        # id(Pin) -> pinned version (lsmkv.core.dbcore.Pin)
        self.gc_pending = False               # a pin was released while the mutex was busy
        self.obsolete = collections.deque()   # (path, size or None for a log)

    def current_version(self):
        return self.engine.versions.current

    def reserve_numbers(self, count):
        """count fresh file numbers, held as pending outputs (mutex held)."""
        numbers = [self.engine.versions.new_file_number() for _ in range(count)]
        self.pending_outputs.update(numbers)
        return numbers

    def release_outputs(self, numbers):
        """Numbers no longer being written (mutex held)."""
        self.pending_outputs.difference_update(numbers)

    def gc_soon(self):
        """A pin was released: delete what it held, unless the mutex is busy (then
        the next read or background step does). Core calls this."""
        e = self.engine
        if e.state.forked:
            return          # the files are the parent's
        if e.mutex.acquire(blocking=False):
            try:
                self.collect()
            finally:
                e.mutex.release()
            self.purge(blocking=False)
        else:
            self.gc_pending = True

    def live_tables(self):
        """Numbers of every table a live version or a pending output claims (mutex held)."""
        live = self.engine.versions.live_numbers()       # every column family's
        for v in list(self.pins.values()):
            live |= v.numbers()
        return live | self.pending_outputs

    def collect(self):
        """Queue for deletion what nothing claims (mutex held; no I/O)."""
        e = self.engine
        self.gc_pending = False
        if e.closed and not e.holds_lock():
            return
        live = self.live_tables()
        dropped = e.tables.drop_unless(live)
        if e.read_only:
            return          # a read-only or secondary engine's files are the primary's
        for number, size in dropped:
            self.obsolete.append((filenames.table_name(e.path, number), size))
        for number in e.logs.take_obsolete(e.families.log_bound()):
            self.obsolete.append((filenames.log_name(e.path, number), None))

    def purge(self, blocking=True):
        """Unlink what collect() queued (mutex not held). Without blocking (a pin
        released by the garbage collector, maybe inside a purge of this very
        thread), a purge already running is left to take the new entries."""
        e = self.engine
        if e.state.forked:
            return          # the files are the parent's
        if not self.purge_lock.acquire(blocking=blocking):
            # the running purge may be past its loop already: the next iterator
            # creation or background step purges what is queued (invariant 4)
            self.gc_pending = True
            return
        logs = files = reclaimed = 0
        try:
            while self.obsolete:
                path, size = self.obsolete.popleft()
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
            self.purge_lock.release()
            if logs or files:
                e.stats.add(logs_deleted=logs, files_deleted=files, bytes_reclaimed=reclaimed)

    def fresh_locks(self):
        """In a fork() child: nothing is deleted there, and no lock may hang."""
        self.purge_lock = threading.Lock()
        self.obsolete.clear()
