"""The engine interface db_bench drives (Engine) and the helpers its adapters share
(import_lsmkv, engine_available, poll_idle, PutGetBatchOps). The adapters are the
other modules of bench/engines/, one per engine; bench/engines/__init__.py names them.

Part of bench/db_bench.py (see its docstring for the method).
"""

import importlib
import time

from ..common import perf_counter

# Every engine exposes the same small interface. Each op_* returns a callable that
# does one operation through the engine's public API; the timed loops below are
# shared by every engine.


def import_lsmkv():
    """lsmkv from PYTHONPATH or the environment, else from the source tree this package
    sits in (on sys.path: whoever imported the package `bench` put its parent there)."""
    return importlib.import_module("lsmkv")


def engine_available(name):
    if name == "lsmkv":
        try:
            import_lsmkv()
            return True, ""
        except ImportError as e:
            return False, str(e)
    mod = {"sqlite3": "sqlite3"}.get(name, name)
    try:
        importlib.import_module(mod)
        return True, ""
    except ImportError as e:
        return False, str(e)


class Engine:
    name = "?"
    # multireadrandom: how the engine reads a batch of keys (shown beside the result)
    multi_get_note = "a get() loop: the binding has no batched read"

    def __init__(self, args):
        self.args = args
        self.path = None
        self.db = None

    def settings(self):
        return {}

    def open(self, path):
        raise NotImplementedError

    def close(self):
        raise NotImplementedError

    def is_open(self):
        return self.db is not None

    def op_multi_get(self):
        """A callable taking a list of keys and returning their values (None where
        absent), in order: a loop of op_get() unless the engine has a batched read."""
        get = self.op_get()

        def multi_get(ks):
            return [get(k) for k in ks]
        return multi_get

    def flush(self):
        """Make everything written so far live in the engine's table files (untimed)."""

    def begin_reads(self):
        pass

    def end_reads(self):
        pass

    def finish_writes(self):
        """Called inside the timed region after the last write op of a workload."""

    def stats(self):
        return {}

    def stats_summary(self, before, after):
        return ""

    # ---- fillsustained (see Runner.workload_sustained)
    # Why the engine cannot run fillsustained, or None if it can.
    sustained_unsupported = None
    # While set, open() uses this write buffer size (and whatever the engine needs
    # to count the workload's writes, e.g. RocksDB statistics).
    sustained_wbs = None

    def sustained_settings(self):
        """One line: the compaction-related settings in force (each engine's defaults)."""
        return ""

    def sustained_stats(self):
        """Cumulative counters since open, as a dict with the keys
        wal_bytes, flush_bytes, compaction_bytes (None: not available),
        flush_compaction_bytes (their sum, when only the sum is known), stall_seconds
        (None: not available), stall_detail (str), files_per_level (list), notes (dict)."""
        raise NotImplementedError

    def wait_idle(self, timeout):
        """Wait up to timeout seconds for background flushes and compactions to
        finish. Returns (seconds waited, True if idle, how idleness was judged)."""
        return 0.0, False, "not supported"

    # ---- threads (readrandom --threads N, readwhilewriting)
    def thread_reader(self, renew_every=0):
        """(get, close) for the calling thread only: get is the engine's get for
        that thread, close (or None) is called by the thread when it is done.
        renew_every > 0 (readwhilewriting): an engine that reads inside a
        transaction starts a new one every renew_every gets, so that its reads see
        the writer's puts. The engines whose handle is thread-safe share it."""
        return self.op_get(), None

    thread_note = "the DB handle is thread-safe: every thread calls the same get/put"

    # ---- filluniquerandom --ttl (see Runner.workload)
    ttl_unsupported = "the engine has no TTL"   # None: it has one
    ttl = None                                  # TTL (s) the engine opens its DB with, if DB-wide

    def op_put_ttl(self, ttl):
        raise NotImplementedError

    ttl_note = ""

    # ---- readrandom_cache (see Runner.workload_cache)
    cache_unsupported = "no block cache of its own"
    cache_override = None                       # block cache bytes for the next open()

    def cache_counters(self):
        """(hits, misses) of the block cache, cumulative, or None if not counted."""
        return None

    cache_counter_note = "n/a"

    # ---- churn (see Runner.workload_churn)
    churn_unsupported = "no block cache of its own"
    block_cache_kind = None                     # lsmkv's block_cache option for the next open()

    def churn_variants(self):
        """[(variant name, note)]: churn runs once per variant, each in a fresh process."""
        return [("default", "")]

    def cache_memory(self):
        """Block cache state for the churn lines: usage bytes, fragmentation_ratio,
        slab_moves (absent keys: not available)."""
        return {}


def poll_idle(check, timeout, interval=0.1, confirm=2):
    """Poll check() until it is true confirm times in a row, or timeout."""
    t0 = perf_counter()
    ok = 0
    while True:
        if check():
            ok += 1
            if ok >= confirm:
                return perf_counter() - t0, True
        else:
            ok = 0
        if perf_counter() - t0 >= timeout:
            return perf_counter() - t0, False
        time.sleep(interval)


class PutGetBatchOps:
    """op_put/op_get/op_delete/op_batch for bindings whose db has put(k, v, sync=),
    get(k), delete(k) and a write_batch() context manager (lsmkv and plyvel)."""

    def op_put(self, sync=False):
        if sync:
            put = self.db.put

            def put_sync(k, v):
                put(k, v, sync=True)
            return put_sync
        return self.db.put

    def op_get(self):
        return self.db.get

    def op_delete(self):
        return self.db.delete

    def op_batch(self):
        write_batch = self.db.write_batch

        def batch(ks, vs):
            with write_batch() as wb:
                put = wb.put
                for k, v in zip(ks, vs):
                    put(k, v)
        return batch
