"""Flush: the oldest immutable memtable becomes level-0 tables.

The flush thread runs Flusher.step: one memtable at a time, oldest first, and
nothing else (the janitor thread does the housekeeping), so that a writer that
finds the memtables full waits for one flush only.

Thread safety: one thread flushes (the flush thread; at open, the opening thread
through flush_at_open before any thread starts). The table is written without
the mutex; the install (MANIFEST edit applied, superversion published, counters)
runs under it, through engine.log_and_apply. `flushing` is written by the flush
thread alone and read by memory_usage().

Invariants:
  1. A memtable leaves the superversion only in the same mutex hold that makes
     the current version hold its tables, after the MANIFEST edit is durable.
  2. The edit's log_number is that of the oldest memtable still unflushed, so a
     log is obsolete only once every memtable it holds is in a table.
  3. The flushed memtable's log is handed to the janitor only after the edit is
     durable (logs.retire_flushed), and closed unsynced.
  4. A flush whose memtable's key range meets no table (nothing_below, read
     under the mutex with the oldest snapshot) writes as compaction does at the
     bottommost level: merge stacks fully merged, deletions and expired puts
     every snapshot sees dropped, sequences every snapshot sees set to 0. It
     stays true until the output is installed: the memtable is the oldest one
     not in a table, one thread flushes, and a compaction's outputs hold only
     keys of its inputs, which do not meet the range either.
"""
import os
import time

from lsmkv.core.memtable import MemTableIterator
from lsmkv.core.table import TableBuilder, write_tables
from lsmkv.engine import background, filenames
from lsmkv.engine.killpoint import killpoint
from lsmkv.engine.version import FileMeta, VersionEdit

NO_LIMIT = (1 << 63) - 1


def _find_malloc_trim():
    try:
        import ctypes
        return ctypes.CDLL(None).malloc_trim     # glibc only
    except (OSError, AttributeError, ImportError):
        return None


_malloc_trim = _find_malloc_trim()


def number_of(meta):
    """The file number of a table write_tables made."""
    return filenames.parse(os.path.basename(meta["path"]))[1]


def nothing_below(imm, version):
    """True if no table of version holds a key in the range of memtable imm (its
    entries' and its range tombstones' user keys): imm's output is then at the
    bottom for its keys, as a compaction's at the bottommost level (invariant 4).
    False for an empty memtable."""
    it = MemTableIterator(imm)
    it.py_seek_to_first()
    lo = hi = None
    if it.py_valid():
        lo = it.py_entry()[0]
        it.py_seek_to_last()
        hi = it.py_entry()[0]
    for start, end, _ in imm.range_dels or ():
        lo = start if lo is None or start < lo else lo
        hi = end if hi is None or end > hi else hi        # the exclusive end: a bound all the same
    if lo is None:
        return False
    return not any(f.smallest_user_key <= hi and f.largest_user_key >= lo
                   for files in version.levels for f in files)


class Flusher:
    def __init__(self, engine):
        self.engine = engine
        # -- written by the flush thread only
        self.flushing = None            # the memtable it holds, for memory_usage()

    def new_builder_locked(self):
        """A TableBuilder for a flush output (mutex held). Flushes train no zstd
        dictionary: training doubled the time of a measured flush, and L0
        files are rewritten soon; compaction outputs get one (lsmkv.engine.worker)."""
        e = self.engine
        (number,) = e.files.reserve_numbers(1)
        o = e.options
        b = TableBuilder(filenames.table_name(e.path, number), o.block_size, o.compression,
                         o.compression_level, o.bloom_bits_per_key, o.block_restart_interval, 0)
        b.column_family = e.cf_id          # a column family's tables say whose they are
        return b

    def new_builder(self):
        with self.engine.mutex:
            return self.new_builder_locked()

    def flush_at_open(self, mem, edit):
        """Recovery: write a replayed memtable to level 0 (nothing else runs yet)."""
        e = self.engine
        counts = {}
        metas = write_tables(MemTableIterator(mem), self.new_builder_locked,
                             e.snapshots.oldest(), False, e.now_ms(), NO_LIMIT, counts, e.merge_op)
        e.stats.add_locked(**counts)
        for m in metas:
            number = number_of(m)
            e.tables.open(number, 0)
            edit.add_file(0, FileMeta.from_meta(number, m))
            e.files.release_outputs([number])
            e.stats.flushes += 1
            e.stats.flush_bytes += m["file_size"]

    def step(self):
        """The flush thread's step: flush the oldest immutable memtable."""
        e = self.engine
        with e.mutex:
            if e.shutting_down or e.bg_error is not None:
                return background.STOP
            if not e.sv.imms:
                return background.IDLE
            imm = self.flushing = e.sv.imms[-1]
        try:
            self.flush_memtable(imm)
        except BaseException as ex:   # noqa: BLE001 - surfaced to writers via bg_error
            with e.mutex:
                self.flushing = None  # nothing is being flushed (a drop waits on this)
            e.fail_background(ex)
            return background.STOP
        # drop the flushed memtable now: a reference kept here would keep its whole
        # arena (write_buffer_size bytes) alive (found by comparing memory_usage() with RSS)
        del imm
        self.flushing = None
        self.trim_heap()
        return background.AGAIN

    def trim_heap(self):
        """Give the heap pages a flush freed (its block and filter buffers) back to
        the OS (glibc malloc_trim; the GIL is released during the call). Without it
        ~2 MB per flushing thread stayed in the RSS unaccounted (tests/engine/test_memory.py)."""
        if _malloc_trim is None:
            return
        t0 = time.monotonic()
        _malloc_trim(0)
        self.engine.stats.add(heap_trims=1, heap_trim_seconds=time.monotonic() - t0)

    def flush_memtable(self, imm):
        e = self.engine
        t0 = time.monotonic()
        with e.mutex:
            snapshot = e.snapshots.oldest()
            bottom = nothing_below(imm, e.sv.version)
        counts = {}
        metas = write_tables(MemTableIterator(imm), self.new_builder, snapshot,
                             bottom, e.now_ms(), NO_LIMIT, counts, e.merge_op)
        numbers = [number_of(m) for m in metas]
        killpoint("flush.after_table_write")
        edit = VersionEdit()
        for number, m in zip(numbers, metas):
            edit.add_file(0, FileMeta.from_meta(number, m))
        e.tables.preopen(numbers, 0)
        with e.mutex:
            sv = e.sv
            remaining = tuple(m for m in sv.imms if m is not imm)
            # memtables switched in meanwhile are newer: the oldest unflushed one stays the same
            oldest = remaining[-1] if remaining else sv.mem
            edit.log_number = oldest.log_number

        def installed():
            sv = e.sv
            st = e.stats
            e.files.release_outputs(numbers)
            e.install(sv.mem, tuple(m for m in sv.imms if m is not imm))
            st.add_locked(**counts)
            st.flush_bytes += sum(m["file_size"] for m in metas)
            st.flushes += 1
            st.flushed_entries += len(imm)       # adaptive_memory: overwrites absorbed
            st.flush_output_entries += sum(m["num_entries"] for m in metas)
            took = time.monotonic() - t0
            st.flush_seconds += took
            st.flush_max_seconds = max(st.flush_max_seconds, took)
            e.files.collect()
            e.cv.notify_all()

        if e.db.cfs:
            # with column families the flushed memtable's batches may hold other
            # families' writes, which live only in these logs: make them durable before
            # the edit that makes this family's part durable, or a power loss could
            # keep one family's half of a batch (RocksDB syncs closed logs likewise)
            e.db.logs.sync_retired()
        e.log_and_apply(edit, installed)
        e.logs.retire_flushed(imm.log_number)
        e.threads.janitor_wake.set()


def flush_and_wait(f, janitor_pass):
    """DB.flush and a column family's flush: f's (the engine's or a Family's) active
    memtable made immutable (waiting while max_write_buffer_number are) and every
    immutable one written to a level-0 table, waited for; then janitor_pass(), so
    the flushed logs are gone when it returns. A memtable holding only range
    tombstones counts (len() counts them)."""
    if f.read_only:
        f.check_open()
        raise f.read_only_error("flush() writes a table")
    with f.mutex:
        f.check_open()
        if len(f.sv.mem):
            while len(f.sv.imms) >= f.options.max_write_buffer_number - 1:
                f.wait_bg()
            f.switch_memtable()
        while f.sv.imms:
            f.wait_bg()
    janitor_pass()
