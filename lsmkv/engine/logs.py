"""The log set: the write-ahead logs of one engine besides the active one.

  active    engine.wal (compiled Core): the log of the active memtable.
  retired   engine.retired_logs (Core): logs of immutable memtables, not yet
            flushed; a sync write syncs them first (sync_retired).
  flushed   logs whose memtable is in an SST now, waiting for the janitor to
            close them unsynced (close_flushed).
  spare     the next log, created ahead by the janitor (prepare_spare), taken by
            the next memtable switch (take_next).
  numbers   every log number on disk this engine created or opened; numbers below
            the MANIFEST's log_number are obsolete (take_obsolete).

Thread safety: `spare`, `numbers` and engine.wal are guarded by the engine mutex.
`lock` guards removals from and syncs of retired_logs (appended under the mutex
only; each change is one list operation, every walk is over a copy) and appends to
`flushed`; `close_lock` guards closing flushed logs. `preparing` is written by the
janitor alone and read by memory_usage(). Lock order: mutex, then lock;
close_lock is taken alone.

Invariants:
  1. A log number is in `numbers` before its file exists, and leaves it only when
     the file is queued for deletion (or was never made), so a reopen's orphan rule
     and the obsolete-log rule agree.
  2. The spare's number is greater than the active log's: logs are replayed in
     number order.
  3. A log leaves `flushed` only once closed, so memory_usage() counts its mapping
     until it is gone, and no log is closed twice.
  4. A sync write returns only after every retired log is synced: a synced write
     never outlives an unsynced older one.
"""
import collections
import os
import threading

from lsmkv.core.wal import LogWriter
from lsmkv.engine import filenames
from lsmkv.engine.logformat import BATCH_HEADER

# A log file's first size and its largest growth step: what a log holds ahead of
# its data, on disk and in RSS (docs/tuning.md, "The write-ahead log's footprint").
WAL_START = 64 << 10
WAL_MAX_STEP = 1 << 20


# The seal: an empty batch (a batch header with count 0; docs/format.md, "Sealed logs");
# the reader's side is lsmkv.engine.logformat.is_seal.
SEAL = BATCH_HEADER


def seal(log, next_seq):
    """Append the seal to a log that is done being written (retired at a memtable
    switch, or the active one at a clean close): an empty batch carrying the next
    sequence number. Replay applies nothing for it (lsmkv before seals did the
    same), but it is a valid record after the log's last real one, so damage to
    that record is reported as corruption instead of being dropped as a torn tail
    (lsmkv.engine.logformat). A mapped log with no room left grows by a step for it;
    if it cannot (disk full), it stays unsealed, with the torn-tail rule of before.
    Returns whether sealed."""
    try:
        log.append(SEAL.pack(next_seq, 0))
    except OSError:
        return False
    return True


class LogSet:
    """The logs of one engine (see the module docstring)."""

    def __init__(self, engine):
        self.engine = engine
        # -- constant
        self.lock = threading.Lock()          # removing from / syncing retired_logs
        self.close_lock = threading.Lock()    # closing flushed logs
        # -- guarded by the engine mutex
        self.spare = None                     # the next log, created ahead by the janitor thread
        self.numbers = set()                  # logs on disk that this engine created or opened
        # -- appended under lock, closed and removed under close_lock
        self.flushed = collections.deque()
        # -- written by the janitor thread only (read by memory_usage())
        self.preparing = None                 # the spare log it is making

    def make(self, number, sync_dir=None):
        """A new log file: WAL_START bytes at first (option wal_preallocate), growing
        by steps of at most WAL_MAX_STEP (or wal_preallocate if larger), mapped with
        address space reserved for about a memtable's worth (lsmkv.core.wal)."""
        e = self.engine
        start = e.options.wal_preallocate or WAL_START
        return LogWriter(filenames.log_name(e.path, number), number, start, e.options.wal_mmap,
                         sync_dir=sync_dir, reserve=min(e.write_buffer_size, 256 << 20),
                         max_step=max(start, WAL_MAX_STEP))

    def open_first(self, number):
        """The log for new writes at open (mutex not needed: nothing runs yet)."""
        self.numbers.add(number)
        return self.make(number)

    def new_log(self, number):
        """A new, preallocated log whose directory entry is durable (one GIL release).
        The caller adds its number to `numbers`, under the mutex. A test may
        replace this attribute on the instance to force a race."""
        return self.make(number, sync_dir=self.engine.path)

    def take_next(self):
        """The log for a memtable switch (mutex held): the spare, else a new one."""
        wal, self.spare = self.spare, None
        if wal is None:
            number = self.engine.versions.new_file_number()
            wal = self.new_log(number)
            self.numbers.add(number)
        return wal

    def prepare_spare(self):
        """Janitor thread: create the next log ahead of the memtable switch. A failure
        (disk full) is left for the switch to meet and report."""
        e = self.engine
        with e.mutex:
            if self.spare is not None or e.shutting_down:
                return
            number = e.versions.new_file_number()
            # claimed before the file exists (invariant 1)
            self.numbers.add(number)
        try:
            wal = self.new_log(number)
        except OSError:
            with e.mutex:
                self.numbers.discard(number)
            return
        # mapped and populated: memory_usage() counts it from now on
        self.preparing = wal
        with e.mutex:
            self.preparing = None
            # a switch that created its own log meanwhile has a higher number (invariant 2)
            if self.spare is None and not e.shutting_down and number > e.wal.number:
                self.spare = wal
                return
            self.numbers.discard(number)
        wal.abandon()
        try:
            os.unlink(wal.path)
        except FileNotFoundError:
            # while it was being made, flushes moved log_number past it and a purge
            # in another thread (flush(), compact_range(), a released iterator)
            # deleted it as an obsolete log
            pass

    def sync_retired(self):
        """Write path of a sync write (mutex held): older logs become durable first,
        so a synced write never outlives an unsynced older one (Core calls this)."""
        with self.lock:
            for log in list(self.engine.retired_logs):
                log.sync()

    def retire_flushed(self, number):
        """Flush thread, once the flush's MANIFEST edit is durable: hand the log of
        the flushed memtable to the janitor, which closes it unsynced. With column
        families, the logs every family has flushed past (Families.log_bound): a log
        another family still needs stays retired (a sync write syncs it)."""
        e = self.engine
        retired = e.retired_logs
        if e.cfs:
            with e.mutex:
                bound = e.families.log_bound()
            with self.lock:
                for log in list(retired):
                    if log.number < bound:
                        retired.remove(log)
                        self.flushed.append(log)
            return
        with self.lock:
            for log in list(retired):
                # (below log_number: logs a dropped family's switches retired)
                if log.number == number or log.number < e.versions.log_number:
                    retired.remove(log)
                    self.flushed.append(log)

    def close_flushed(self):
        """Close the flushed logs (janitor, flush(), close()). Returns the number of
        failures (the log is dropped all the same: its data is in an SST)."""
        errors = 0
        with self.close_lock:
            while self.flushed:
                log = self.flushed[0]
                try:
                    log.close(sync=False)
                except OSError:
                    errors += 1
                self.flushed.popleft()
        return errors

    def take_obsolete(self, log_number):
        """Numbers of logs below log_number, forgotten here (mutex held)."""
        old = [n for n in self.numbers if n < log_number]
        self.numbers.difference_update(old)
        return old

    def mapped(self):
        """Every log object this engine holds (for memory_usage(); mutex held)."""
        e = self.engine
        return [e.wal, self.spare, self.preparing] + list(e.retired_logs) + list(self.flushed)

    def close(self):
        """At close (mutex held): close the retired logs, drop the spare, close the active."""
        e = self.engine
        for log in e.retired_logs:
            log.close()
        e.retired_logs = []
        if self.spare is not None:
            self.spare.abandon()
            os.unlink(self.spare.path)
            self.spare = None
        if e.wal is not None:
            seal(e.wal, e.last_seq + 1)
            e.wal.close()

    def release_inherited(self):
        """close() in a fork() child: unmap this process's view of every log (no
        sync, no truncation, no unlink)."""
        e = self.engine
        logs = self.mapped()
        e.wal = self.spare = self.preparing = None
        e.retired_logs = []
        self.flushed.clear()
        for log in logs:
            if log is not None:
                log.abandon()

    def fresh_locks(self):
        """In a fork() child: locks a vanished thread may hold are replaced."""
        self.lock = threading.Lock()
        self.close_lock = threading.Lock()
