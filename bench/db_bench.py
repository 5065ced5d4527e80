#!/usr/bin/env python3
"""db_bench for lsmkv: RocksDB/LevelDB db_bench workloads through lsmkv's public API,
optionally the same workloads through plyvel (LevelDB), rocksdict (RocksDB), lmdb and
sqlite3, each engine in its own process, with a side-by-side table of the results.

    python bench/db_bench.py                          # lsmkv alone, db_bench defaults
    python bench/db_bench.py --num 100000 --compare   # every installed engine, ratios
    python bench/db_bench.py --help
    python bench/db_bench.py --benchmarks fillsustained --compare --compare_engines lsmkv,rocksdict
                                                      # writes with flushes and compactions throughout:
                                                      # latency tail, stalls, write amplification
    python bench/db_bench.py --benchmarks fillrandom,readwhilewriting,readrandom --threads 2 --compare
                                                      # reader threads, with and without a writer
    python bench/db_bench.py --benchmarks fillrandom,readrandom_cache,churn --compare
                                                      # memory: hit ratio per cache size, RSS under churn
    python bench/db_bench.py --num 100000 --compare --plot out.png   # + a chart (needs matplotlib)

Method (docs/benchmarks.md has the long form):
  * keys are db_bench's: the index formatted "%016d" (zero-padded to --key_size);
    values are db_bench's RandomGenerator: a 1 MiB buffer of 100-byte pieces, each
    piece a random printable fragment of 100*--compression_ratio bytes repeated to
    100 bytes; a value is the next --value_size slice of that buffer.
  * keys, values and the random choices are made from --seed before each workload,
    outside the timed loop, so every engine gets exactly the same operations.
  * one public-API call of the engine per operation (a batch for fillbatch); after
    each call the loop stores time.perf_counter_ns() into a preallocated array('q'),
    and an op's latency is the gap since the previous op completed (one clock read
    per op, not two: a read costs ~0.1 us here). The same loop code drives every
    engine, and the garbage collector is off while it runs.
  * ops/sec = operations / wall time of the whole loop (timer overhead included,
    the same for every engine; the header prints that overhead).
  * a fill* workload starts from an empty DB (unless --use_existing_db); other
    workloads use the DB as the previous workload left it, like db_bench.
  * after every workload that writes, the engine is flushed (where its API has a
    flush) and closed, the DB directory is measured (sum of st_size and of
    st_blocks*512 over its files), and the DB is reopened.

Workloads not in the default list (all in ALL_BENCHMARKS):
  * readrandom --threads N (N > 1) and readwhilewriting: the --reads random keys
    (the draw single-threaded readrandom makes) are split into N slices, one per
    reader thread; each thread runs the same chunk_get loop with its own latency
    array, all released by one barrier, the collector off. ops/sec = all gets / wall
    time from the first reader's start to the last one's end; percentiles merge
    every thread's latencies (each a gap between that thread's completions, so a
    wait for the GIL counts: the header prints the switch interval). db_bench gives
    each thread --reads ops; here the total stays --reads, so found counts check
    the same way. readwhilewriting adds one writer thread, released by the same
    barrier, that puts random keys of [0, num) at full speed until the last reader
    is done; its puts are reported apart ("writer"), and readers must find at least
    the keys present before. Every engine runs it: lsmkv, plyvel and rocksdict share
    their thread-safe handle; lmdb gives each reader its own read transaction, and
    sqlite3 its own connection (WAL mode: readers do not block the writer, where a
    shared connection behind a lock would serialise everything); with the writer
    running, both renew the read transaction every 1000 gets so that reads see the
    writes, as the writer commits every 1000 puts (sqlite3) or every put (lmdb).
  * filluniquerandom: every key once, in random order, into a fresh DB. With --ttl S,
    lsmkv puts with db.put(k, v, ttl=S) (per key; expired keys read as absent);
    rocksdict opens a DBWithTTL, Rdict(..., access_type=AccessType.with_ttl(S)) (one
    TTL for the DB, a timestamp appended to each value, expired entries dropped only
    by compaction), and keeps opening that DB with the TTL; plyvel, lmdb and sqlite3
    have no TTL and skip it with the reason. Once S seconds have passed since the
    fill started, contents are no longer checked.
  * allocations per get (readrandom, readwhilewriting; --alloc_ops, 0 turns it off):
    separate untimed passes of --alloc_ops gets of other random keys after the timed
    loop. CPython has no running count of allocations: sys.getallocatedblocks() and
    tracemalloc's snapshots count live blocks, so a value that a get allocates and
    the caller frees counts 0 there. allocs/op therefore comes from a counting
    wrapper around the PyMem and PyObject allocators (PyMem_SetAllocator, the hook
    tracemalloc uses; a few lines of C compiled at run time, see AllocCounter):
    malloc+calloc calls made by the reading thread, minus those of the same loop
    around bool(). Freelist reuse (tuples, floats) and the libraries' own C/C++ heap
    allocations are not seen. Around the same pass, "live blocks/op" is the change
    of sys.getallocatedblocks() (pymalloc blocks left allocated, e.g. cache inserts);
    a second pass under tracemalloc gives the change in live traced blocks of every
    size, their top sources and the peak traced memory. For readwhilewriting the
    pass runs while the writer puts, and only the (per-thread) allocs/op is kept.
  * readrandom_cache: per --cache_sizes size, the DB is reopened with a block cache
    of that size (lsmkv block_cache_size, LevelDB lru_cache_size, a new RocksDB
    Cache), --reads untimed gets warm it, and --reads gets of other random keys are
    timed; the hit ratio is over the timed pass (lsmkv stats()['block_cache']
    hits/misses; RocksDB's rocksdb.block.cache.data.hit/miss tickers, statistics on
    for this workload; LevelDB counts none). LSM engines only.
  * churn: --churn_ops ops on max(num/10, 10000) keys, each put once first: 50% puts
    of one of 2048 values of log-uniform size in [100 B, 16 KiB], 50% gets, block
    cache --cache_size (default 64 MiB). Each variant runs in a fresh process of its
    own (lsmkv: block_cache='slab' and 'lru'), so that none inherits another's heap;
    every 5% a line gives elapsed time, RSS and the block cache's usage, held bytes,
    fragmentation_ratio and slab_moves (n/a when stats() lacks them). Reported: RSS
    at 50% and 100%, "RSS growth over second half" = (end - mid) / mid, and the
    fragmentation ratio at the end. LSM engines only.
  * --plot OUT.png (matplotlib, imported only then): grouped bars of ops/sec per
    table row and engine, and per write workload the p99 put latency per 0.5 s
    window of wall time (from the latency arrays, completion time = chunk start +
    latencies so far).
"""
import argparse
import array
import contextlib
import functools
import gc
import importlib
import json
import math
import os
import random
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import tracemalloc
import traceback

try:
    import psutil
except ImportError:          # optional: current RSS then comes from /proc
    psutil = None

perf_counter_ns = time.perf_counter_ns
perf_counter = time.perf_counter

DEFAULT_BENCHMARKS = "fillseq,fillrandom,overwrite,readrandom,readmissing,readseq,seekrandom,deleterandom"
ALL_BENCHMARKS = ("fillseq", "fillrandom", "overwrite", "fillsync", "fillbatch", "readrandom",
                  "readmissing", "readseq", "readreverse", "seekrandom", "deleterandom",
                  "fillsustained", "filluniquerandom", "readwhilewriting", "readrandom_cache", "churn")
ENGINES = ("lsmkv", "plyvel", "rocksdict", "lmdb", "sqlite3")
PEER_LSMS = ("plyvel", "rocksdict")
MiB = 1 << 20


# ---------------------------------------------------------------------------- helpers

def import_lsmkv():
    """lsmkv from the environment, else from the source tree this script sits in."""
    try:
        return importlib.import_module("lsmkv")
    except ImportError:
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        if os.path.isfile(os.path.join(root, "lsmkv", "__init__.py")):
            sys.path.insert(0, root)
            return importlib.import_module("lsmkv")
        raise


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


def dir_bytes(path):
    """(apparent bytes = sum of st_size, allocated bytes = sum of st_blocks*512, files)."""
    size = alloc = files = 0
    for root, _, names in os.walk(path):
        for n in names:
            try:
                st = os.lstat(os.path.join(root, n))
            except FileNotFoundError:
                continue
            size += st.st_size
            alloc += st.st_blocks * 512
            files += 1
    return size, alloc, files


def peak_rss_bytes():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024   # KiB on Linux


def current_rss_bytes():
    if psutil is not None:
        return psutil.Process().memory_info().rss
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return 0


# ---------------------------------------------------------------------------- allocations per op
#
# CPython keeps no running count of allocations: sys.getallocatedblocks() and
# tracemalloc's snapshots count the blocks that are *live*, so an op that allocates
# a value, returns it and has it freed by the caller counts 0 there. To count the
# allocations themselves, the pass installs a counting wrapper around the PyMem and
# PyObject allocators with PyMem_SetAllocator() (the hook tracemalloc uses): every
# malloc/calloc of those two domains bumps a thread-local counter and calls the
# allocator that was installed before. Only those two domains are wrapped, because
# pymalloc passes blocks over 512 bytes on to the RAW domain and wrapping that too
# would count them twice. The counter is per thread, so the writer of
# readwhilewriting and the engines' background threads do not add to it. It is a
# few lines of C compiled at run time with $CC (default cc) against Python.h; with
# no compiler, allocs/op is reported as n/a and why.

ALLOC_COUNTER_C = r"""
#include <Python.h>
typedef struct { PyMemAllocatorEx orig; int on; } Hook;
static Hook hooks[2];
static const PyMemAllocatorDomain doms[2] = {PYMEM_DOMAIN_MEM, PYMEM_DOMAIN_OBJ};
static __thread unsigned long long n_alloc, n_realloc;
static void *h_malloc(void *c, size_t n) { Hook *h = c; n_alloc++; return h->orig.malloc(h->orig.ctx, n); }
static void *h_calloc(void *c, size_t a, size_t b) { Hook *h = c; n_alloc++; return h->orig.calloc(h->orig.ctx, a, b); }
static void *h_realloc(void *c, void *p, size_t n) { Hook *h = c; n_realloc++; return h->orig.realloc(h->orig.ctx, p, n); }
static void h_free(void *c, void *p) { Hook *h = c; h->orig.free(h->orig.ctx, p); }
int ac_install(void) {
    for (int i = 0; i < 2; i++) {
        if (hooks[i].on) continue;
        PyMem_GetAllocator(doms[i], &hooks[i].orig);
        PyMemAllocatorEx a = {&hooks[i], h_malloc, h_calloc, h_realloc, h_free};
        PyMem_SetAllocator(doms[i], &a);
        hooks[i].on = 1;
    }
    return 0;
}
int ac_uninstall(void) {
    for (int i = 0; i < 2; i++) {
        if (!hooks[i].on) continue;
        PyMem_SetAllocator(doms[i], &hooks[i].orig);
        hooks[i].on = 0;
    }
    return 0;
}
unsigned long long ac_allocs(void) { return n_alloc; }
unsigned long long ac_reallocs(void) { return n_realloc; }
"""


class AllocCounter:
    """The compiled counting allocator hook (see above); AllocCounter.get() returns
    (counter or None, why not)."""
    _made = None

    @classmethod
    def get(cls):
        if cls._made is None:
            try:
                cls._made = (cls(), "")
            except Exception as ex:           # no compiler, no headers, ...
                cls._made = (None, f"{type(ex).__name__}: {str(ex).strip()[:200]}")
        return cls._made

    def __init__(self):
        import ctypes
        import sysconfig
        d = tempfile.mkdtemp(prefix="db_bench_alloc_")
        try:
            src, so = os.path.join(d, "alloc_counter.c"), os.path.join(d, "alloc_counter.so")
            with open(src, "w") as f:
                f.write(ALLOC_COUNTER_C)
            cc = os.environ.get("CC", "cc").split()
            r = subprocess.run(cc + ["-O2", "-shared", "-fPIC", "-I", sysconfig.get_paths()["include"],
                                     src, "-o", so], capture_output=True, text=True, timeout=60)
            if r.returncode != 0:
                raise RuntimeError(f"{' '.join(cc)} failed: {r.stderr}")
            self.lib = ctypes.PyDLL(so)        # PyDLL: called with the GIL held
        finally:
            shutil.rmtree(d, ignore_errors=True)   # the loaded library stays mapped
        for fn in ("ac_allocs", "ac_reallocs"):
            getattr(self.lib, fn).restype = ctypes.c_ulonglong

    def count(self, fn):
        """fn() with the hook installed: (allocations, reallocations) this thread made."""
        lib = self.lib
        lib.ac_install()
        try:
            a0, r0 = lib.ac_allocs(), lib.ac_reallocs()
            fn()
            a1, r1 = lib.ac_allocs(), lib.ac_reallocs()
        finally:
            lib.ac_uninstall()
        return a1 - a0, r1 - r0


def alloc_loop(get, ks):
    """The loop every allocation pass runs: one call per key, result dropped."""
    for k in ks:
        get(k)


def fmt_rate(x):
    if x is None:
        return "-"
    if x >= 1e6:
        return f"{x / 1e6:.2f}M"
    if x >= 1e3:
        return f"{x / 1e3:.1f}k"
    return f"{x:.0f}"


def fmt_mb(b):
    return "-" if b is None else f"{b / MiB:.1f}"


def looks_like_db(path):
    markers = ("CURRENT", "data.mdb", "bench.sqlite", "LOCK")
    return any(os.path.exists(os.path.join(path, m)) for m in markers)


def wipe_dir(path):
    """Remove a DB directory, refusing anything that does not look like one."""
    if os.path.isdir(path):
        if os.listdir(path) and not looks_like_db(path):
            raise SystemExit(f"db_bench: refusing to wipe {path}: it is not empty and does not "
                             "look like a database directory (no CURRENT/LOCK/data.mdb/bench.sqlite)")
        shutil.rmtree(path)
    elif os.path.exists(path):
        raise SystemExit(f"db_bench: {path} exists and is not a directory")


# ---------------------------------------------------------------------------- data

def random_generator_buffer(min_size, compression_ratio):
    """db_bench's RandomGenerator buffer: 100-byte compressible pieces, at least
    max(1 MiB, min_size) bytes."""
    rnd = random.Random(301)
    buf = bytearray()
    target = max(1 << 20, min_size)
    raw_len = max(1, int(100 * compression_ratio))
    while len(buf) < target:
        raw = bytes(32 + rnd.randrange(95) for _ in range(raw_len))   # ' ' + Uniform(95)
        piece = (raw * (100 // raw_len + 1))[:100]
        buf += piece
    return bytes(buf)


def make_value_pool(value_size, compression_ratio):
    """db_bench's RandomGenerator: 100-byte compressible pieces in a >= 1 MiB buffer,
    values are consecutive value_size slices (wrapping to the start). Returns the
    list of distinct values in generation order (the stream repeats with this period)."""
    data = random_generator_buffer(value_size, compression_ratio)
    pool, pos = [], 0
    while True:
        if pos + value_size > len(data):
            break
        pool.append(data[pos:pos + value_size])
        pos += value_size
    return pool


class Data:
    """Keys, values and the model of what the DB should hold (for verification)."""

    def __init__(self, args):
        self.args = args
        self.num = args.num
        width = args.key_size
        if len(str(args.num - 1)) > width:
            raise SystemExit(f"db_bench: --key_size {width} is too short for --num {args.num}")
        t = perf_counter()
        self.keys = [b"%0*d" % (width, i) for i in range(args.num)]
        self.pool = make_value_pool(args.value_size, args.compression_ratio)
        self.gen_seconds = perf_counter() - t
        self.model = None          # array('i'): value-pool index per key, -1 absent; None unknown
        self.occurrence = {}
        self.expires_at = None     # time.time() from which keys put with --ttl may have expired

    def reset_model(self, known):
        self.model = array.array("i", [-1]) * self.num if known else None
        self.expires_at = None

    def rng(self, name):
        k = self.occurrence.get(name, 0)
        self.occurrence[name] = k + 1
        return random.Random(f"{self.args.seed}:{name}:{k}")

    def values(self, n):
        p = self.pool
        reps = n // len(p) + 1
        return (p * reps)[:n]

    def random_indices(self, rng, n):
        return rng.choices(range(self.num), k=n)

    def apply_puts(self, idx_seq):
        m = self.model
        if m is None:
            return
        P = len(self.pool)
        for j, ki in enumerate(idx_seq):
            m[ki] = j % P

    def apply_deletes(self, idx_seq):
        m = self.model
        if m is None:
            return
        for ki in idx_seq:
            m[ki] = -1

    def present(self, idx_seq):
        m = self.model
        if m is None:
            return None
        return sum(1 for ki in idx_seq if m[ki] >= 0)

    def live(self):
        m = self.model
        return None if m is None else sum(1 for x in m if x >= 0)


# ---------------------------------------------------------------------------- engines
#
# Every engine exposes the same small interface. Each op_* returns a callable that
# does one operation through the engine's public API; the timed loops below are
# shared by every engine.

class Engine:
    name = "?"

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


def _poll_idle(check, timeout, interval=0.1, confirm=2):
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


class LsmkvEngine(PutGetBatchOps, Engine):
    name = "lsmkv"

    def __init__(self, args):
        super().__init__(args)
        self.mod = import_lsmkv()
        self.opts = {}
        if args.cache_size is not None:
            self.opts["block_cache_size"] = args.cache_size
        if args.write_buffer_size is not None:
            self.opts["write_buffer_size"] = args.write_buffer_size
        if args.bloom_bits is not None:
            self.opts["bloom_bits_per_key"] = args.bloom_bits

    def _git_describe(self):
        src = os.path.dirname(os.path.abspath(self.mod.__file__))
        try:
            rev = subprocess.run(["git", "-C", src, "rev-parse", "--short", "HEAD"], capture_output=True,
                                 text=True, timeout=5)
            if rev.returncode != 0:
                return ""
            dirty = subprocess.run(["git", "-C", src, "status", "--porcelain", "--", "."],
                                   capture_output=True, text=True, timeout=5).stdout.strip()
            return f", git {rev.stdout.strip()}{' + uncommitted changes' if dirty else ''}"
        except (OSError, subprocess.SubprocessError):
            return ""

    def settings(self):
        o = self.mod.Options.build(None, **self._open_opts())
        s = {"version": self.mod.__version__ + self._git_describe(), "compression": o.compression,
             "write_buffer_size": o.write_buffer_size, "cache_size": o.block_cache_size,
             "bloom_bits": o.bloom_bits_per_key, "source": os.path.dirname(self.mod.__file__)}
        if self._has_option("block_cache"):
            s["block_cache"] = o.block_cache
        if os.environ.get("LSMKV_BENCH_OPTIONS"):
            s["extra_options"] = os.environ["LSMKV_BENCH_OPTIONS"]
        return s

    def _has_option(self, name):
        return name in self.mod.Options.names()

    def _open_opts(self):
        opts = dict(self.opts)
        if self.sustained_wbs is not None:
            opts["write_buffer_size"] = self.sustained_wbs
        if self.cache_override is not None:
            opts["block_cache_size"] = self.cache_override
        if self.block_cache_kind is not None:
            opts["block_cache"] = self.block_cache_kind
        # extra lsmkv options for experiments, e.g. LSMKV_BENCH_OPTIONS='{"mmap_reads": true}'
        # (an environment variable, so every engine process of --compare sees it)
        opts.update(json.loads(os.environ.get("LSMKV_BENCH_OPTIONS", "{}")))
        return opts

    # ---- filluniquerandom --ttl: a TTL per put
    ttl_unsupported = None
    ttl_note = "db.put(k, v, ttl=S): per key; an expired key reads as absent"

    def op_put_ttl(self, ttl):
        return functools.partial(self.db.put, ttl=ttl)

    # ---- readrandom_cache, churn: stats()["block_cache"], whatever keys it has
    cache_unsupported = None
    churn_unsupported = None
    cache_counter_note = "stats()['block_cache'] hits/misses"

    def _block_cache_stats(self):
        try:
            return self.db.stats().get("block_cache") or {}
        except Exception:
            return {}

    def cache_counters(self):
        bc = self._block_cache_stats()
        if isinstance(bc.get("hits"), int) and isinstance(bc.get("misses"), int):
            return bc["hits"], bc["misses"]
        return None

    def churn_variants(self):
        if self._has_option("block_cache"):
            return [("slab", "block_cache='slab'"), ("lru", "block_cache='lru'")]
        return [("default", "lsmkv.Options has no block_cache field yet: one run with the "
                            "block cache lsmkv builds by default")]

    def cache_memory(self):
        bc = self._block_cache_stats()
        return {k: bc[k] for k in ("kind", "capacity", "usage", "held", "fragmentation_ratio", "slab_moves")
                if k in bc}

    def open(self, path):
        self.path = path
        self.db = self.mod.DB(path, **self._open_opts())

    def close(self):
        if self.db is not None:
            self.db.close()
            self.db = None

    def flush(self):
        self.db.flush()

    def op_seek(self):
        items = self.db.items

        def seek(k):
            return next(iter(items(start=k)), None)
        return seek

    def scan(self, reverse):
        it = self.db.items(reverse=reverse)
        return it.__next__, getattr(it, "close", None)

    def stats(self):
        return self.db.stats()

    def stats_summary(self, before, after):
        def d(k):
            return after.get(k, 0) - before.get(k, 0)
        parts = [f"flushes {d('flushes')}", f"stall_seconds {d('stall_seconds'):.2f}",
                 f"stall_count {d('stall_count')}"]
        cb, ca = before.get("block_cache") or {}, after.get("block_cache") or {}
        hits = ca.get("hits", 0) - cb.get("hits", 0)
        misses = ca.get("misses", 0) - cb.get("misses", 0)
        parts.append(f"block_cache hit ratio {hits / (hits + misses):.3f} ({hits}/{hits + misses})"
                     if hits + misses else "block_cache hit ratio - (no lookups)")
        checks, useful = d("bloom_checks"), d("bloom_useful")
        parts.append(f"bloom useful/checks {useful}/{checks}"
                     + (f" ({useful / checks:.3f})" if checks else ""))
        levels = after.get("levels") or []
        parts.append("files/level " + ",".join(str(lv["files"]) for lv in levels))
        if d("compactions"):
            parts.append(f"compactions {d('compactions')}")
        if after.get("background_error"):
            parts.append(f"BACKGROUND ERROR {after['background_error']}")
        return "; ".join(parts)

    def sustained_settings(self):
        o = self.mod.Options.build(None, **self._open_opts())
        return (f"write_buffer_size {o.write_buffer_size}, max_write_buffer_number "
                f"{o.max_write_buffer_number}, L0 compaction/slowdown/stop at "
                f"{o.level0_file_num_compaction_trigger}/{o.level0_slowdown_writes_trigger}/"
                f"{o.level0_stop_writes_trigger} files, target_file_size_base {o.target_file_size_base}, "
                f"max_bytes_for_level_base {o.max_bytes_for_level_base} x{o.max_bytes_for_level_multiplier}, "
                f"compression {o.compression}")

    def sustained_stats(self):
        s = self.db.stats()
        causes = s.get("stall_causes") or {}
        return {"wal_bytes": s["wal_bytes"], "flush_bytes": s["flush_bytes"],
                "compaction_bytes": s["compaction_bytes_written"], "flush_compaction_bytes": None,
                "user_bytes": s["user_bytes"], "stall_seconds": s["stall_seconds"],
                "stall_counts": {"stall_count": s["stall_count"], "slowdown_count": s["slowdown_count"],
                                 "stop_count": s["stop_count"]},
                "stall_detail": (f"stall_count {s['stall_count']} (memtables full: writer waited for a "
                                 f"flush), slowdown_count {s['slowdown_count']} (L0 >= slowdown trigger: "
                                 f"writes paced to delayed_write_rate: puts that slept off ~4 ms of pacing debt), stop_count {s['stop_count']} (L0 >= stop "
                                 f"trigger: writer waited for compaction); causes {causes}"),
                "files_per_level": [lv["files"] for lv in s.get("levels") or []],
                "notes": {"write_amplification (lsmkv's own)": s.get("write_amplification"),
                          "flushes": s.get("flushes"), "compactions": s.get("compactions"),
                          "compactions_by_reason": s.get("compactions_by_reason"),
                          "compaction_bytes_read": s.get("compaction_bytes_read"),
                          "pending_compaction_bytes": s.get("pending_compaction_bytes"),
                          "level_bytes": [lv["bytes"] for lv in s.get("levels") or []],
                          "level_scores": [lv["score"] for lv in s.get("levels") or []],
                          "background_error": s.get("background_error")}}

    def wait_idle(self, timeout):
        def idle():
            s = self.db.stats()
            if s.get("background_error"):
                return True
            return (s["immutable_memtables"] == 0
                    and max(lv["score"] for lv in s["levels"]) < 1)
        secs, ok = _poll_idle(idle, timeout)
        return secs, ok, ("stats(): no immutable memtable and every level score < 1, "
                          "twice 0.1 s apart")


class PlyvelEngine(PutGetBatchOps, Engine):
    name = "plyvel"

    def __init__(self, args):
        super().__init__(args)
        import plyvel
        self.mod = plyvel
        self.opts = {"create_if_missing": True}
        if args.cache_size is not None:
            self.opts["lru_cache_size"] = args.cache_size
        if args.write_buffer_size is not None:
            self.opts["write_buffer_size"] = args.write_buffer_size
        if args.bloom_bits:
            self.opts["bloom_filter_bits"] = args.bloom_bits

    def settings(self):
        return {"version": f"plyvel {self.mod.__version__}, LevelDB "
                           f"{getattr(self.mod, '__leveldb_version__', '?')}",
                "compression": "snappy (plyvel default)",
                "write_buffer_size": self.opts.get("write_buffer_size", "default (4 MiB)"),
                "cache_size": self.opts.get("lru_cache_size", "default (8 MiB)"),
                "bloom_bits": self.opts.get("bloom_filter_bits", 0)}

    def open(self, path):
        self.path = path
        opts = dict(self.opts)
        if self.sustained_wbs is not None:
            opts["write_buffer_size"] = self.sustained_wbs
        if self.cache_override is not None:
            opts["lru_cache_size"] = self.cache_override
        self.db = self.mod.DB(path, **opts)

    ttl_unsupported = "LevelDB has no TTL"
    cache_unsupported = None
    churn_unsupported = None
    cache_counter_note = "n/a: LevelDB counts no block cache hits"

    def cache_memory(self):
        v = self.db.get_property(b"leveldb.approximate-memory-usage")
        return {} if v is None else {"approximate_memory_usage": int(v)}

    def close(self):
        if self.db is not None:
            self.db.close()
            self.db = None

    def flush(self):
        # LevelDB has no flush call; reopening writes the log's memtable to a table.
        self.close()
        self.open(self.path)

    def op_seek(self):
        iterator = self.db.iterator

        def seek(k):
            return next(iterator(start=k), None)
        return seek

    def scan(self, reverse):
        it = self.db.iterator(reverse=reverse)
        return it.__next__, it.close

    def stats(self):
        files = []
        for i in range(7):
            v = self.db.get_property(b"leveldb.num-files-at-level%d" % i)
            files.append(int(v) if v is not None else 0)
        return {"files_per_level": files}

    def stats_summary(self, before, after):
        return "files/level " + ",".join(map(str, after.get("files_per_level", [])))

    def sustained_settings(self):
        wbs = self.opts.get("write_buffer_size", 4 * MiB)
        if self.sustained_wbs is not None:
            wbs = self.sustained_wbs
        return (f"write_buffer_size {wbs}; LevelDB's built-in constants: 1 immutable memtable, "
                f"L0 compaction/slowdown/stop at 4/8/12 files, 2 MiB table files (max_file_size), "
                f"L1 10 MiB x10; compression snappy")

    def _log(self):
        try:
            with open(os.path.join(self.path, "LOG"), errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    # LevelDB has no statistics API for these; its info LOG (which a fresh DB starts
    # anew) records every flush ("Level-0 table #N: B bytes OK"), every compaction
    # output ("Generated table #N@L: K keys, B bytes") and every writer wait.
    _RE_FLUSH = re.compile(r"Level-0 table #\d+: (\d+) bytes OK")
    _RE_COMPACT = re.compile(r"Generated table #\d+@\d+: \d+ keys, (\d+) bytes")

    def sustained_stats(self):
        log = self._log()
        flush = sum(int(x) for x in self._RE_FLUSH.findall(log))
        comp = sum(int(x) for x in self._RE_COMPACT.findall(log))
        mem_waits = log.count("Current memtable full; waiting...")
        l0_waits = log.count("Too many L0 files; waiting...")
        return {"wal_bytes": None, "flush_bytes": flush, "compaction_bytes": comp,
                "flush_compaction_bytes": None, "user_bytes": None, "stall_seconds": None,
                "stall_counts": {"memtable_full_waits": mem_waits, "l0_stop_waits": l0_waits},
                "stall_detail": (f"stall time n/a: LevelDB exposes no stall timer (its 1 ms L0 slowdown "
                                 f"sleeps are not even logged); LOG: 'Current memtable full; waiting' "
                                 f"{mem_waits}x, 'Too many L0 files; waiting' {l0_waits}x"),
                "files_per_level": self.stats()["files_per_level"],
                "notes": {"leveldb.stats": (self.db.get_property(b"leveldb.stats") or b"").decode()}}

    def wait_idle(self, timeout):
        state = {"size": -1}

        def idle():
            log = self._log()
            quiet = len(log) == state["size"]
            state["size"] = len(log)
            return (quiet and log.count("Compacting ") == log.count("compacted to:")
                    and log.count(": started") == len(self._RE_FLUSH.findall(log)))
        secs, ok = _poll_idle(idle, timeout, interval=0.5, confirm=1)
        return secs, ok, ("LOG: every started flush and compaction finished and nothing new "
                          "logged for 0.5 s (LevelDB has no 'compaction pending' property)")


class RocksdictEngine(Engine):
    name = "rocksdict"

    def __init__(self, args):
        super().__init__(args)
        import rocksdict
        self.mod = rocksdict
        self.cache = None
        self.opts_obj = None

    def _options(self):
        r = self.mod
        opts = r.Options(raw_mode=True)     # bytes in, bytes out: no pickling
        opts.create_if_missing(True)
        if self.args.write_buffer_size is not None:
            opts.set_write_buffer_size(self.args.write_buffer_size)
        if self.sustained_wbs is not None:
            opts.set_write_buffer_size(self.sustained_wbs)
            opts.enable_statistics()        # the tickers fillsustained reads
        if self.cache_override is not None:
            opts.enable_statistics()        # the block cache hit/miss tickers readrandom_cache reads
        if self.args.cache_size is not None or self.args.bloom_bits or self.cache_override is not None:
            bbo = r.BlockBasedOptions()
            if self.cache_override is not None:
                self.override_cache = r.Cache(self.cache_override)   # a cold one per open; outlives the DB
                bbo.set_block_cache(self.override_cache)
            elif self.args.cache_size is not None:
                if self.cache is None:
                    self.cache = r.Cache(self.args.cache_size)   # must outlive the DB
                bbo.set_block_cache(self.cache)
            if self.args.bloom_bits:
                bbo.set_bloom_filter(self.args.bloom_bits, False)
            opts.set_block_based_table_factory(bbo)
        return opts

    def settings(self):
        try:
            from importlib.metadata import version
            v = version("rocksdict")
        except Exception:
            v = "?"
        s = {"version": f"rocksdict {v}", "compression": getattr(self, "_compression", "?"),
             "write_buffer_size": self.args.write_buffer_size or "default (64 MiB)",
             "cache_size": self.args.cache_size if self.args.cache_size is not None
             else "default (32 MiB)", "bloom_bits": self.args.bloom_bits or 0}
        return s

    def open(self, path):
        self.path = path
        opts = self._options()
        # Rdict(path, opts) on an existing DB loads the column family options from its
        # OPTIONS file instead of opts: that drops the filter policy and uses an 8 MiB
        # block cache instead of the 32 MiB default. Passing the default column
        # family's options explicitly makes every open use opts.
        if self.ttl:
            # RocksDB's DBWithTTL: one TTL for the whole DB, a timestamp appended to
            # every value; such a DB must be opened with a TTL from then on.
            self.db = self.mod.Rdict(path, opts, column_families={"default": opts},
                                     access_type=self.mod.AccessType.with_ttl(int(self.ttl)))
        else:
            self.db = self.mod.Rdict(path, opts, column_families={"default": opts})
        self.opts_obj = opts                # holds the Statistics object
        self.wo = self.mod.WriteOptions()
        self.wo_sync = self.mod.WriteOptions()
        self.wo_sync.sync = True
        self.db.set_write_options(self.wo)
        self._compression = self._read_compression(path)

    @staticmethod
    def _read_compression(path):
        try:
            names = sorted(n for n in os.listdir(path) if n.startswith("OPTIONS-"))
            with open(os.path.join(path, names[-1])) as f:
                for line in f:
                    line = line.strip()
                    if line.startswith("compression="):
                        return line.split("=", 1)[1] + " (rocksdict default)"
        except (OSError, IndexError):
            pass
        return "?"

    @staticmethod
    def _read_options_file(path, keys):
        """The first value of each key in the newest OPTIONS file (what RocksDB uses)."""
        found = {}
        try:
            names = sorted((n for n in os.listdir(path) if n.startswith("OPTIONS-")),
                           key=lambda n: int(n.split("-")[1]) if n.split("-")[1].isdigit() else 0)
            with open(os.path.join(path, names[-1])) as f:
                for line in f:
                    k, _, v = line.strip().partition("=")
                    if k in keys and k not in found:
                        found[k] = v
        except (OSError, IndexError):
            pass
        return found

    SUSTAINED_OPTION_KEYS = ("write_buffer_size", "max_write_buffer_number", "level0_file_num_compaction_trigger",
                             "level0_slowdown_writes_trigger", "level0_stop_writes_trigger",
                             "target_file_size_base", "max_bytes_for_level_base",
                             "max_bytes_for_level_multiplier", "level_compaction_dynamic_level_bytes",
                             "max_background_jobs", "max_background_compactions", "max_background_flushes",
                             "delayed_write_rate", "soft_pending_compaction_bytes_limit",
                             "hard_pending_compaction_bytes_limit", "compression")

    def sustained_settings(self):
        o = self._read_options_file(self.path, self.SUSTAINED_OPTION_KEYS)
        return ", ".join(f"{k} {o[k]}" for k in self.SUSTAINED_OPTION_KEYS if k in o) + \
            " (from its OPTIONS file); statistics enabled for this workload"

    _RE_TICKER = re.compile(r"^(rocksdb\.[\w.]+) COUNT : (\d+)\s*$", re.M)

    def sustained_stats(self):
        text = self.opts_obj.get_statistics() if self.opts_obj is not None else None
        t = {k: int(v) for k, v in self._RE_TICKER.findall(text or "")}
        stats_text = self.db.property_value("rocksdb.stats") or ""
        counts = {}
        for line in stats_text.splitlines():
            if line.startswith("Write Stall (count):"):
                for part in line.split(":", 1)[1].split(","):
                    k, _, v = part.strip().rpartition(":")
                    if k and v.strip().isdigit():
                        counts[k.strip()] = int(v)
        stall_micros = t.get("rocksdb.stall.micros")
        nonzero = {k: v for k, v in counts.items() if v}
        return {"wal_bytes": t.get("rocksdb.wal.bytes"), "flush_bytes": t.get("rocksdb.flush.write.bytes"),
                "compaction_bytes": t.get("rocksdb.compact.write.bytes"), "flush_compaction_bytes": None,
                "user_bytes": None,
                "stall_seconds": None if stall_micros is None else stall_micros / 1e6,
                "stall_counts": counts,
                "stall_detail": (f"ticker rocksdb.stall.micros; rocksdb.stats 'Write Stall (count)': "
                                 f"{nonzero or 'all 0'}" if text else
                                 "n/a: statistics were not enabled"),
                "files_per_level": [self.db.property_int_value(f"rocksdb.num-files-at-level{i}") or 0
                                    for i in range(7)],
                "notes": {"tickers": {k: v for k, v in t.items() if k in (
                    "rocksdb.wal.bytes", "rocksdb.flush.write.bytes", "rocksdb.compact.write.bytes",
                    "rocksdb.bytes.written", "rocksdb.number.keys.written", "rocksdb.write.wal",
                    "rocksdb.stall.micros", "rocksdb.compact.read.bytes")},
                    "rocksdb.stats": stats_text}}

    def wait_idle(self, timeout):
        props = ("rocksdb.num-running-flushes", "rocksdb.num-running-compactions",
                 "rocksdb.mem-table-flush-pending", "rocksdb.compaction-pending")

        def idle():
            return all((self.db.property_int_value(p) or 0) == 0 for p in props)
        secs, ok = _poll_idle(idle, timeout)
        return secs, ok, "properties " + ", ".join(props) + " all 0, twice 0.1 s apart"

    def close(self):
        if self.db is not None:
            self.db.close()
            self.db = None

    def flush(self):
        self.db.flush(True)

    def op_put(self, sync=False):
        if sync:
            put, wo = self.db.put, self.wo_sync

            def put_sync(k, v):
                put(k, v, wo)
            return put_sync
        return self.db.put

    def op_get(self):
        return self.db.get

    def op_delete(self):
        return self.db.delete

    def op_batch(self):
        r, write = self.mod, self.db.write

        def batch(ks, vs):
            wb = r.WriteBatch(raw_mode=True)
            put = wb.put
            for k, v in zip(ks, vs):
                put(k, v)
            write(wb)
        return batch

    def op_seek(self):
        new_iter = self.db.iter

        def seek(k):
            it = new_iter()
            it.seek(k)
            if it.valid():
                return (it.key(), it.value())
            return None
        return seek

    def scan(self, reverse):
        it = self.db.items(backwards=reverse)
        return it.__next__, None

    def stats(self):
        files = [self.db.property_int_value(f"rocksdb.num-files-at-level{i}") or 0 for i in range(7)]
        return {"files_per_level": files,
                "block_cache_usage": self.db.property_int_value("rocksdb.block-cache-usage")}

    ttl_unsupported = None
    ttl_note = ("Rdict(..., access_type=AccessType.with_ttl(S)): RocksDB's DBWithTTL, one TTL for the "
                "whole DB (a 4-byte timestamp appended to each value); expired entries are dropped by "
                "compaction, and until then reads still return them")

    def op_put_ttl(self, ttl):
        return self.db.put                  # the TTL is the DB's (self.ttl, set before open)

    cache_unsupported = None
    churn_unsupported = None
    cache_counter_note = ("tickers rocksdb.block.cache.data.hit/miss: data block lookups, the ones lsmkv's "
                          "hits/misses count (statistics on for this workload; RocksDB's default keeps index "
                          "and filter blocks out of the cache, where lsmkv charges them to its capacity)")

    def cache_counters(self):
        text = self.opts_obj.get_statistics() if self.opts_obj is not None else None
        t = {k: int(v) for k, v in self._RE_TICKER.findall(text or "")}
        if "rocksdb.block.cache.data.hit" in t and "rocksdb.block.cache.data.miss" in t:
            return t["rocksdb.block.cache.data.hit"], t["rocksdb.block.cache.data.miss"]
        return None

    def cache_memory(self):
        return {"usage": self.db.property_int_value("rocksdb.block-cache-usage")}

    def stats_summary(self, before, after):
        return "files/level " + ",".join(map(str, after.get("files_per_level", [])))


class LmdbEngine(Engine):
    name = "lmdb"
    sustained_unsupported = "not an LSM tree: no write buffer, flushes or compactions"

    def __init__(self, args):
        super().__init__(args)
        import lmdb
        self.mod = lmdb
        data = args.num * (args.key_size + args.value_size)
        self.map_size = max(2 << 30, data * 10)
        self.env = None
        self.rtxn = None

    def settings(self):
        return {"version": f"py-lmdb {self.mod.__version__}, LMDB "
                           f"{'.'.join(map(str, self.mod.version()))}",
                "compression": "none (LMDB has none)", "write_buffer_size": "n/a",
                "cache_size": "n/a (OS page cache)", "bloom_bits": "n/a",
                "map_size": self.map_size,
                "writes": "one write txn per op, env opened sync=False (fillsync: env.sync(True) "
                          "after each commit)"}

    def open(self, path):
        self.path = path
        self.env = self.mod.open(path, map_size=self.map_size, sync=False, metasync=False)

    def close(self):
        self.end_reads()
        if self.env is not None:
            self.env.close()
            self.env = None

    def is_open(self):
        return self.env is not None

    def flush(self):
        self.env.sync(True)

    def begin_reads(self):
        self.rtxn = self.env.begin()

    def end_reads(self):
        if self.rtxn is not None:
            self.rtxn.abort()
            self.rtxn = None

    def op_put(self, sync=False):
        begin, env_sync = self.env.begin, self.env.sync

        def put(k, v):
            t = begin(write=True)
            t.put(k, v)
            t.commit()

        def put_sync(k, v):
            t = begin(write=True)
            t.put(k, v)
            t.commit()
            env_sync(True)
        return put_sync if sync else put

    def op_get(self):
        return self.rtxn.get

    thread_note = ("a read transaction per reader thread (LMDB binds one to its thread); with a "
                   "writer running, each reader starts a new one every 1000 gets so that it sees the "
                   "writes; the writer commits a write transaction per put")

    def thread_reader(self, renew_every=0):
        begin = self.env.begin
        state = [begin(), 0]
        if not renew_every:
            return state[0].get, lambda: state[0].abort()

        def get(k):
            state[1] += 1
            if state[1] >= renew_every:
                state[0].abort()
                state[0] = begin()
                state[1] = 0
            return state[0].get(k)
        return get, lambda: state[0].abort()

    def op_delete(self):
        begin = self.env.begin

        def delete(k):
            t = begin(write=True)
            t.delete(k)
            t.commit()
        return delete

    def op_batch(self):
        begin = self.env.begin

        def batch(ks, vs):
            t = begin(write=True)
            put = t.put
            for k, v in zip(ks, vs):
                put(k, v)
            t.commit()
        return batch

    def op_seek(self):
        cursor = self.rtxn.cursor

        def seek(k):
            c = cursor()
            if c.set_range(k):
                return c.item()
            return None
        return seek

    def scan(self, reverse):
        c = self.rtxn.cursor()
        if reverse:
            c.last()
            it = c.iterprev()
        else:
            c.first()
            it = c.iternext()
        return it.__next__, None

    def stats(self):
        st = self.env.stat()
        return {"depth": st["depth"], "entries": st["entries"],
                "pages": st["branch_pages"] + st["leaf_pages"] + st["overflow_pages"]}

    def stats_summary(self, before, after):
        return f"btree depth {after.get('depth')}, entries {after.get('entries')}, pages {after.get('pages')}"


class SqliteEngine(Engine):
    name = "sqlite3"
    sustained_unsupported = "not an LSM tree: no write buffer, flushes or compactions"
    COMMIT_EVERY = 1000

    def __init__(self, args):
        super().__init__(args)
        import sqlite3
        self.mod = sqlite3
        self.conn = None
        self.pending = [0]

    def settings(self):
        return {"version": f"SQLite {self.mod.sqlite_version}",
                "compression": "none (SQLite has none)", "write_buffer_size": "n/a",
                "cache_size": self.args.cache_size if self.args.cache_size is not None
                else "default (2 MiB page cache)", "bloom_bits": "n/a",
                "schema": "t(k BLOB PRIMARY KEY, v BLOB) WITHOUT ROWID; journal_mode=WAL, "
                          "synchronous=NORMAL",
                "writes": f"one statement per op, committed every {self.COMMIT_EVERY} ops "
                          "(fillsync: a transaction per op with synchronous=FULL); reads in "
                          "one read transaction per workload"}

    def open(self, path):
        self.path = path
        os.makedirs(path, exist_ok=True)
        self.conn = c = self.mod.connect(os.path.join(path, "bench.sqlite"), isolation_level=None,
                                         check_same_thread=False)
        c.execute("PRAGMA journal_mode=WAL")
        c.execute("PRAGMA synchronous=NORMAL")
        if self.args.cache_size is not None:
            c.execute(f"PRAGMA cache_size=-{max(1, self.args.cache_size // 1024)}")
        c.execute("CREATE TABLE IF NOT EXISTS t (k BLOB PRIMARY KEY, v BLOB) WITHOUT ROWID")
        self.in_txn = False

    def close(self):
        if self.conn is not None:
            if self.conn.in_transaction:
                self.conn.execute("COMMIT")
            self.conn.close()
            self.conn = None

    def is_open(self):
        return self.conn is not None

    def flush(self):
        if self.conn.in_transaction:
            self.conn.execute("COMMIT")
        self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def begin_reads(self):
        self.conn.execute("BEGIN")

    def end_reads(self):
        if self.conn is not None and self.conn.in_transaction:
            self.conn.execute("COMMIT")

    def _batched(self, sql):
        ex, conn, pending, every = self.conn.execute, self.conn, self.pending, self.COMMIT_EVERY
        pending[0] = 0
        if not conn.in_transaction:
            ex("BEGIN")
        return ex, pending, every

    def finish_writes(self):
        if self.conn.in_transaction:
            self.conn.execute("COMMIT")
        self.conn.execute("PRAGMA synchronous=NORMAL")

    def op_put(self, sync=False):
        sql = "INSERT OR REPLACE INTO t (k, v) VALUES (?, ?)"
        if sync:
            ex = self.conn.execute
            ex("PRAGMA synchronous=FULL")

            def put_sync(k, v):
                ex(sql, (k, v))      # autocommit: one durable transaction per op
            return put_sync
        ex, pending, every = self._batched(sql)

        def put(k, v):
            ex(sql, (k, v))
            pending[0] += 1
            if pending[0] >= every:
                ex("COMMIT")
                ex("BEGIN")
                pending[0] = 0
        return put

    def op_delete(self):
        sql = "DELETE FROM t WHERE k = ?"
        ex, pending, every = self._batched(sql)

        def delete(k):
            ex(sql, (k,))
            pending[0] += 1
            if pending[0] >= every:
                ex("COMMIT")
                ex("BEGIN")
                pending[0] = 0
        return delete

    def op_batch(self):
        ex = self.conn.execute
        sql = "INSERT OR REPLACE INTO t (k, v) VALUES (?, ?)"

        def batch(ks, vs):
            ex("BEGIN")
            for k, v in zip(ks, vs):
                ex(sql, (k, v))
            ex("COMMIT")
        return batch

    def op_get(self):
        ex = self.conn.execute
        sql = "SELECT v FROM t WHERE k = ?"

        def get(k):
            row = ex(sql, (k,)).fetchone()
            return None if row is None else row[0]
        return get

    thread_note = ("a connection per reader thread (the fair setup for SQLite: in WAL mode readers on "
                   "their own connections run alongside the writer, while one shared connection behind "
                   "a lock would serialise everything), reading in one read transaction; with a writer "
                   "running, each reader commits and begins a new one every 1000 gets so that it sees "
                   "the writes and lets checkpoints complete; the writer uses the main connection, "
                   "committing every 1000 puts as in overwrite")

    def thread_reader(self, renew_every=0):
        c = self.mod.connect(os.path.join(self.path, "bench.sqlite"), isolation_level=None,
                             check_same_thread=False)
        if self.args.cache_size is not None:
            c.execute(f"PRAGMA cache_size=-{max(1, self.args.cache_size // 1024)}")
        ex = c.execute
        sql = "SELECT v FROM t WHERE k = ?"
        ex("BEGIN")
        n = [0]

        def get(k):
            row = ex(sql, (k,)).fetchone()
            return None if row is None else row[0]

        def get_renewing(k):
            n[0] += 1
            if n[0] >= renew_every:
                ex("COMMIT")
                ex("BEGIN")
                n[0] = 0
            row = ex(sql, (k,)).fetchone()
            return None if row is None else row[0]

        def close():
            if c.in_transaction:
                c.execute("COMMIT")
            c.close()
        return (get_renewing if renew_every else get), close

    def op_seek(self):
        ex = self.conn.execute
        sql = "SELECT k, v FROM t WHERE k >= ? ORDER BY k LIMIT 1"

        def seek(k):
            return ex(sql, (k,)).fetchone()
        return seek

    def scan(self, reverse):
        cur = self.conn.execute(f"SELECT k, v FROM t ORDER BY k {'DESC' if reverse else 'ASC'}")
        return cur.__next__, cur.close

    def stats(self):
        return {"page_count": self.conn.execute("PRAGMA page_count").fetchone()[0]}

    def stats_summary(self, before, after):
        return f"pages {after.get('page_count')}"


ENGINE_CLASSES = {"lsmkv": LsmkvEngine, "plyvel": PlyvelEngine, "rocksdict": RocksdictEngine,
                  "lmdb": LmdbEngine, "sqlite3": SqliteEngine}


# ---------------------------------------------------------------------------- timed loops
#
# Each loop makes one engine call per op and then stores perf_counter_ns() into
# ts[i]: one clock read per op (a clock read costs ~0.1 us on this kind of VM, so two
# per op would double the harness cost). The latency of op i is ts[i] - ts[i-1]
# (for the first op of a chunk: minus the chunk's start time), computed after the
# run by to_latencies(); it includes the few bytecodes of loop overhead, which are
# the same for every engine (the header prints them as the empty-op floor).
# Everything the loops use is bound to a local (default arguments). They run in
# chunks so the driver can update the progress line between chunks.

def chunk_write(op, ks, vs, ts):
    def chunk(lo, hi, op=op, ks=ks, vs=vs, ts=ts, pc=perf_counter_ns):
        for i in range(lo, hi):
            op(ks[i], vs[i])
            ts[i] = pc()
        return hi - lo, 0
    return chunk


def chunk_delete(op, ks, ts):
    def chunk(lo, hi, op=op, ks=ks, ts=ts, pc=perf_counter_ns):
        for i in range(lo, hi):
            op(ks[i])
            ts[i] = pc()
        return hi - lo, 0
    return chunk


def chunk_get(op, ks, ts):
    def chunk(lo, hi, op=op, ks=ks, ts=ts, pc=perf_counter_ns):
        found = 0
        for i in range(lo, hi):
            r = op(ks[i])
            ts[i] = pc()
            if r is not None:
                found += 1
        return hi - lo, found
    return chunk


def chunk_seek(op, ks, ts):
    def chunk(lo, hi, op=op, ks=ks, ts=ts, pc=perf_counter_ns):
        found = 0
        for i in range(lo, hi):
            k = ks[i]
            r = op(k)
            ts[i] = pc()
            if r is not None and r[0] == k:
                found += 1
        return hi - lo, found
    return chunk


def chunk_scan(nxt, ts):
    def chunk(lo, hi, nxt=nxt, ts=ts, pc=perf_counter_ns):
        i = lo
        try:
            for i in range(lo, hi):
                nxt()
                ts[i] = pc()
        except StopIteration:
            return i - lo, i - lo
        return hi - lo, hi - lo
    return chunk


class Progress:
    def __init__(self, enabled, label, total):
        self.enabled = enabled
        self.label = label
        self.total = total
        self.t0 = perf_counter()
        self.last = self.t0
        self.width = 0

    def update(self, done, now):
        if not self.enabled or now - self.last < 0.25:
            return
        self.last = now
        el = now - self.t0
        rate = done / el if el > 0 else 0
        pct = 100.0 * done / self.total if self.total else 100.0
        line = f"  {self.label}: {done}/{self.total} ({pct:5.1f}%) {fmt_rate(rate)} ops/s  {el:6.1f}s"
        self.width = max(self.width, len(line))
        sys.stderr.write("\r" + line.ljust(self.width))
        sys.stderr.flush()

    def clear(self):
        if self.enabled and self.width:
            sys.stderr.write("\r" + " " * self.width + "\r")
            sys.stderr.flush()


def drive(chunk, n, progress, starts):
    """Run chunk(lo, hi) over [0, n) in growing chunks, appending (lo, start ns) of
    each chunk to starts. Returns (ops done, found)."""
    done = found = 0
    step = 16
    while done < n:
        hi = min(n, done + step)
        t_chunk = perf_counter()
        starts.append((done, perf_counter_ns()))
        k, f = chunk(done, hi)
        asked = hi - done
        done += k
        found += f
        if k < asked:
            break                    # iterator exhausted
        now = perf_counter()
        progress.update(done, now)
        if now - t_chunk < 0.02 and step < 65536:
            step *= 2
    return done, found


def to_latencies(ts, n, starts, lo=0):
    """Turn the completion timestamps ts[lo:n] into per-op latencies, in place
    (lo must be the start of a chunk)."""
    first = {c: t for c, t in starts}
    for i in range(n - 1, lo - 1, -1):
        t = first.get(i)
        ts[i] -= t if t is not None else ts[i - 1]
    return ts


def latency_timeline(lat, n, starts, window_s=0.5):
    """For --plot: p50/p99/max latency (us) and ops per window_s window of wall time,
    from the per-op latencies lat[0:n] and the chunk starts (an op completes at its
    chunk's start plus the latencies of the chunk's ops up to it)."""
    if not n or not starts:
        return None
    w = int(window_s * 1e9)
    t_first = starts[0][1]
    bounds = sorted(starts) + [(n, None)]
    buckets = {}
    for (lo, t), (hi, _) in zip(bounds, bounds[1:]):
        hi = min(hi, n)
        for i in range(lo, hi):
            t += lat[i]
            buckets.setdefault((t - t_first) // w, []).append(lat[i])
    out = {"window_s": window_s, "t_s": [], "ops": [], "p50_us": [], "p99_us": [], "max_us": []}
    for b in sorted(buckets):
        xs = sorted(buckets[b])
        m = len(xs)
        out["t_s"].append((b + 1) * window_s)
        out["ops"].append(m)
        out["p50_us"].append(xs[min(m - 1, int(0.5 * m))] / 1000.0)
        out["p99_us"].append(xs[min(m - 1, int(0.99 * m))] / 1000.0)
        out["max_us"].append(xs[-1] / 1000.0)
    return out


def chunk_churn(put, get, ks, vs, ts):
    """churn: op i is put(ks[i], vs[i]), or get(ks[i]) where vs[i] is None."""
    def chunk(lo, hi, put=put, get=get, ks=ks, vs=vs, ts=ts, pc=perf_counter_ns):
        found = 0
        for i in range(lo, hi):
            v = vs[i]
            if v is None:
                if get(ks[i]) is not None:
                    found += 1
            else:
                put(ks[i], v)
            ts[i] = pc()
        return hi - lo, found
    return chunk


class _DoneCounter:
    """The progress object drive() gets in a reader thread: it only records how far
    the thread is, for the main thread's progress line."""

    def __init__(self, counts, slot):
        self.counts, self.slot = counts, slot

    def update(self, done, now):
        self.counts[self.slot] = done


class BackgroundWriter:
    """readwhilewriting's writer: puts ks[i], vs[i] for i = 0, 1, ... (wrapping around)
    at full speed until stop is set, in chunks of CHUNK ops between checks of stop,
    with the same per-op timing as every other loop. total counts every put it made
    (over all its runs), for the model of what the DB holds."""
    CHUNK = 256

    def __init__(self, make_put, ks, vs, idx):
        self.make_put, self.ks, self.vs, self.idx = make_put, ks, vs, idx
        self.total = 0
        self.error = None

    def run(self, stop, barrier=None, record=True, first=None):
        """One run (in its own thread), with a fresh put from make_put (the caller
        calls the engine's finish_writes after it). Returns {ops, seconds, lat}
        (lat: the latencies as an array('q'), when record). first (an Event) is set
        once the first chunk of puts is done."""
        ks, vs, L = self.ks, self.vs, len(self.ks)
        ts = array.array("q", bytes(8 * L))
        chunk = chunk_write(self.make_put(), ks, vs, ts)
        lats = array.array("q")
        pos = seg_lo = self.total % L
        starts = []
        done = 0
        try:
            if barrier is not None:
                barrier.wait()
            t0 = perf_counter()
            while not stop.is_set():
                hi = min(L, pos + self.CHUNK)
                starts.append((pos, perf_counter_ns()))
                chunk(pos, hi)
                done += hi - pos
                self.total += hi - pos
                pos = hi
                if first is not None and not first.is_set():
                    first.set()
                if pos == L:                # a full pass: keep its latencies, start over
                    if record:
                        lats.extend(to_latencies(ts, L, starts, seg_lo)[seg_lo:L])
                    pos = seg_lo = 0
                    starts = []
            seconds = perf_counter() - t0
            if record and pos > seg_lo:
                lats.extend(to_latencies(ts, pos, starts, seg_lo)[seg_lo:pos])
        except BaseException as ex:
            self.error = ex
            if barrier is not None:
                barrier.abort()
            raise
        return {"ops": done, "seconds": seconds, "lat": lats if record else None}

    def run_quietly(self, stop):
        """run() without recording, its exception kept in self.error (for a pass
        that only needs the writes going on)."""
        try:
            self.run(stop, None, False)
        except BaseException:
            pass

    def apply_to(self, data):
        """Update data's model with every put made so far."""
        L = len(self.idx)
        if self.total >= L:
            data.apply_puts(self.idx)
        data.apply_puts(self.idx[:self.total % L])


def run_readers(engine, slices, renew_every, progress, writer=None):
    """The threaded reads of readrandom --threads and readwhilewriting: one thread per
    key slice, each with its own get (engine.thread_reader), its own latency array and
    the same chunk_get loop as the single-threaded readrandom, all released together
    by a barrier; with a writer, its thread starts at the same barrier and stops when
    the last reader is done. The garbage collector is off throughout. Returns
    ([per-reader (done, found, seconds)], merged latencies array('q'), reader wall
    seconds (first reader start to last reader end), writer run result or None)."""
    T = len(slices)
    parties = T + 1 + (1 if writer else 0)
    barrier = threading.Barrier(parties)
    stop = threading.Event()
    # readers start once the writer has written (with a small DB, readers could
    # otherwise finish inside one GIL switch interval before the writer ran at all)
    writing = threading.Event() if writer else None
    counts = [0] * T
    outs = [None] * T
    errors = []

    def reader(t):
        close = None
        try:
            get, close = engine.thread_reader(renew_every)
            ks = slices[t]
            ts = array.array("q", bytes(8 * len(ks)))
            chunk = chunk_get(get, ks, ts)
            starts = []
            barrier.wait()
            if writing is not None:
                writing.wait(30)
            t0 = perf_counter()
            done, found = drive(chunk, len(ks), _DoneCounter(counts, t), starts)
            t1 = perf_counter()
            outs[t] = (done, found, t0, t1, to_latencies(ts, done, starts))
        except threading.BrokenBarrierError:
            pass
        except BaseException as ex:
            errors.append(ex)
            barrier.abort()
        finally:
            if close is not None:
                close()

    wres = {}

    def writer_main():
        try:
            wres.update(writer.run(stop, barrier, first=writing))
        except threading.BrokenBarrierError:
            pass
        except BaseException as ex:
            errors.append(ex)

    threads = [threading.Thread(target=reader, args=(t,), name=f"db_bench-reader-{t}") for t in range(T)]
    wthread = threading.Thread(target=writer_main, name="db_bench-writer") if writer else None
    gc.collect()
    gc.disable()
    try:
        for th in threads + ([wthread] if wthread else []):
            th.start()
        try:
            barrier.wait()
        except threading.BrokenBarrierError:
            pass
        for th in threads:
            while th.is_alive():
                th.join(0.25 if progress.enabled else None)
                progress.update(sum(counts), perf_counter())
        stop.set()
        if wthread:
            wthread.join()
    finally:
        stop.set()
        gc.enable()
        progress.clear()
    if errors:
        raise errors[0]
    lat = array.array("q")
    for o in outs:
        lat.extend(o[4][:o[0]])
    wall = max(o[3] for o in outs) - min(o[2] for o in outs)
    return [(o[0], o[1], o[3] - o[2]) for o in outs], lat, wall, (wres if writer else None)


def percentiles(lat, n):
    if n == 0:
        return {"p50": None, "p99": None, "p99.9": None, "max": None, "mean": None}
    s = sorted(lat[:n]) if n < len(lat) else sorted(lat)

    def q(p):
        return s[min(n - 1, int(p * n))] / 1000.0
    return {"p50": q(0.50), "p99": q(0.99), "p99.9": q(0.999), "max": s[-1] / 1000.0,
            "mean": sum(s) / n / 1000.0}


def timed_drive(chunk, n, progress, finish=None):
    """drive() with the collector off and the clock around it (finish(), e.g. an
    engine's finish_writes, inside the timing). Returns (done, found, seconds, starts)."""
    starts = []
    gc.collect()
    gc.disable()
    try:
        t0 = perf_counter()
        done, found = drive(chunk, n, progress, starts)
        if finish is not None:
            finish()
        seconds = perf_counter() - t0
    finally:
        gc.enable()
        progress.clear()
    return done, found, seconds, starts


def timer_floor(n=200000):
    """What the harness itself costs: the same loop around an empty op (a builtin
    that does nothing useful). Returns (latency p50 us, wall us per op)."""
    ts = array.array("q", bytes(8 * n))
    ks = [None] * n
    chunk = chunk_delete(id, ks, ts)
    _, _, secs, starts = timed_drive(chunk, n, Progress(False, "", n))
    p = percentiles(to_latencies(ts, n, starts), n)
    return p["p50"], secs / n * 1e6


# ---------------------------------------------------------------------------- the runner

WRITE_WORKLOADS = ("fillseq", "fillrandom", "overwrite", "fillsync", "fillbatch", "deleterandom",
                   "fillsustained", "filluniquerandom", "readwhilewriting")
SUSTAINED_SETTLE_SECONDS = 30
CHURN_MIN_VALUE, CHURN_MAX_VALUE = 100, 16 * 1024   # churn value sizes, log-uniform between
CHURN_VALUES = 2048          # distinct churn values (about 6.5 MB of them)
CHURN_PUT_PCT = 50           # percent of churn ops that are puts (the rest are gets)
CHURN_PARTS = 20             # a line every 5%
CHURN_DEFAULT_CACHE = 64 * MiB
ALLOC_OPS_DEFAULT = 20000    # gets of each allocation pass


def churn_keyspace(args):
    return max(args.num // 10, 10000)


def churn_cache_size(args):
    return args.cache_size if args.cache_size is not None else CHURN_DEFAULT_CACHE


def churn_child_argv(args, engine, variant, cache_size, json_path, db_path):
    """The process that runs one churn variant (Runner.churn_run)."""
    argv = [sys.executable, os.path.abspath(__file__), "--engine", engine, "--json", json_path,
            "--benchmarks", "churn", "--churn_variant", variant, "--churn_ops", str(args.churn_ops),
            "--num", str(args.num), "--key_size", str(args.key_size), "--value_size", str(args.value_size),
            "--compression_ratio", str(args.compression_ratio), "--seed", str(args.seed),
            "--verify", str(args.verify), "--bloom_bits", str(args.bloom_bits), "--progress", args.progress,
            "--cache_size", str(cache_size), "--db", db_path]
    if args.write_buffer_size is not None:
        argv += ["--write_buffer_size", str(args.write_buffer_size)]
    return argv


class _OffsetProgress:
    """drive()'s progress for a part of a run that starts at op lo."""

    def __init__(self, progress, lo):
        self.progress, self.lo = progress, lo

    def update(self, done, now):
        self.progress.update(self.lo + done, now)


def fmt_num(v, fmt="{:.3f}"):
    return "n/a" if v is None else fmt.format(v)


def fmt_pct(v):
    return "n/a" if v is None else f"{v:+.1f}%"


def varint_len(n):
    k = 1
    while n >= 128:
        n >>= 7
        k += 1
    return k


def latency_tail(lat, n, thresholds_us=(50, 100, 1000, 10000, 100000)):
    """How many ops took at least each threshold, and their summed time (seconds)."""
    lo = min(thresholds_us) * 1000
    big = [x for x in lat[:n] if x >= lo]
    out = []
    for th in thresholds_us:
        sel = [x for x in big if x >= th * 1000]
        out.append({"threshold_us": th, "ops": len(sel), "seconds": sum(sel) / 1e9})
    return out


class Runner:
    def __init__(self, args, engine):
        self.args = args
        self.engine = engine
        self.data = None
        self.results = []
        self.meta = {}
        self.progress_on = (args.progress == "always" or
                            (args.progress == "auto" and sys.stderr.isatty()))

    def dump_json(self):
        if not self.args.json:
            return
        doc = dict(self.meta)
        doc["results"] = self.results
        doc["peak_rss_bytes"] = peak_rss_bytes()
        tmp = self.args.json + ".tmp"
        with open(tmp, "w") as f:
            json.dump(doc, f, indent=1, default=str)
        os.replace(tmp, self.args.json)

    def run(self):
        a, e = self.args, self.engine
        own_tmp = None
        if a.db:
            path = os.path.abspath(a.db)
        else:
            own_tmp = tempfile.mkdtemp(prefix="db_bench_")
            path = os.path.join(own_tmp, e.name)
        self.meta = {"engine": e.name, "argv": sys.argv, "db": path, "num": a.num, "reads": a.reads,
                     "key_size": a.key_size, "value_size": a.value_size,
                     "compression_ratio": a.compression_ratio, "seed": a.seed,
                     "date": time.strftime("%Y-%m-%d %H:%M:%S %z"), "cpus": os.cpu_count(),
                     "python": sys.version.split()[0]}
        try:
            self._run(path)
        finally:
            try:
                e.close()
            except Exception:
                traceback.print_exc()
            if own_tmp:
                shutil.rmtree(own_tmp, ignore_errors=True)
            self.dump_json()
        return 0 if not any(r.get("error") or r.get("verify_errors") for r in self.results) else 1

    def _run(self, path):
        a, e = self.args, self.engine
        floor_p50, floor_mean = timer_floor()
        self.data = Data(a)
        rss0 = current_rss_bytes()
        if not a.use_existing_db:
            wipe_dir(path)
        os.makedirs(path, exist_ok=True)
        e.open(path)
        self.data.reset_model(known=not a.use_existing_db)
        settings = e.settings()
        self.meta.update({"settings": settings, "timer_floor_us": floor_p50,
                          "timer_overhead_us_per_op": floor_mean, "baseline_rss_bytes": rss0})
        if a.churn_variant:     # a churn variant's own process prints its workload lines only
            with open(os.devnull, "w") as null, contextlib.redirect_stdout(null):
                self._print_header(e, settings, path, floor_p50, floor_mean, rss0)
        else:
            self._print_header(e, settings, path, floor_p50, floor_mean, rss0)
        sys.stdout.flush()
        self.dump_json()
        for name in a.benchmarks:
            res = {"name": name}
            try:
                self.workload(name, path, res)
            except Exception as ex:          # report it and go on with the next workload
                res["error"] = f"{type(ex).__name__}: {ex}"
                res["traceback"] = traceback.format_exc()
                print(f"{name:14}: ERROR {res['error']}")
                print(res["traceback"], end="")
                # what the DB holds is unknown now: stop checking contents
                self.data.reset_model(known=False)
                # the DB object may be unusable now; try to get a fresh handle
                try:
                    if not e.is_open():
                        e.open(path)
                except Exception:
                    traceback.print_exc()
            self.results.append(res)
            self.dump_json()
            sys.stdout.flush()

    def _print_header(self, e, settings, path, floor_p50, floor_mean, rss0):
        a = self.args
        print(f"engine:       {e.name}  ({settings.get('version')})")
        for k in ("compression", "write_buffer_size", "cache_size", "block_cache", "bloom_bits", "map_size",
                  "schema", "writes", "source"):
            if k in settings:
                print(f"{k + ':':13} {settings[k]}")
        print(f"keys:         {a.num} x {a.key_size} bytes (\"%0{a.key_size}d\")")
        print(f"values:       {a.value_size} bytes, compression_ratio {a.compression_ratio} "
              f"({len(self.data.pool)} distinct values, db_bench RandomGenerator)")
        print(f"reads:        {a.reads}    seed: {a.seed}    db: {path}")
        print(f"timing:       perf_counter_ns() after each call, latency = gap between completions; "
              f"harness alone (empty op): p50 {floor_p50:.3f} us, {floor_mean:.3f} us/op wall "
              f"(included for every engine)")
        print(f"rss:          {rss0 / MiB:.1f} MB after generating keys/values (baseline)")
        if a.threads > 1 or "readwhilewriting" in a.benchmarks:
            print(f"threads:      {a.threads} reader thread(s) for readrandom/readwhilewriting; "
                  f"{e.thread_note}; GIL switch interval {sys.getswitchinterval() * 1000:g} ms")
        print("-" * 100)

    def expiry_check(self):
        """After a fill with --ttl: once its first keys may have expired, what the DB
        holds is no longer known. Returns True if that happened now."""
        d = self.data
        if d.expires_at is not None and time.time() >= d.expires_at:
            d.reset_model(known=False)
            print(f"{'':16}note: keys put with --ttl {self.args.ttl} may have expired: "
                  "found counts and contents are no longer checked")
            return True
        return False

    def workload(self, name, path, res):
        if name == "fillsustained":
            return self.workload_sustained(path, res)
        self.expiry_check()
        if name == "readwhilewriting" or (name == "readrandom" and self.args.threads > 1):
            return self.workload_threaded(name, path, res)
        if name == "readrandom_cache":
            return self.workload_cache(path, res)
        if name == "churn":
            return self.workload_churn(path, res)
        a, e, d = self.args, self.engine, self.data
        ttl = a.ttl if name == "filluniquerandom" and a.ttl else None
        if ttl and e.ttl_unsupported:
            res["skipped"] = f"--ttl: {e.ttl_unsupported}"
            print(f"{name:14}: skipped for {e.name}: {res['skipped']}")
            return
        fresh = name.startswith("fill") and not a.use_existing_db
        if fresh:
            e.close()
            wipe_dir(path)
            os.makedirs(path, exist_ok=True)
            e.ttl = ttl                      # a DB-wide TTL (rocksdict) is chosen at open
            e.open(path)
            d.reset_model(known=True)
        elif ttl and e.ttl != ttl:
            e.close()
            e.ttl = ttl
            e.open(path)
        rng = d.rng(name)
        # ---- generate the operations (untimed)
        n = a.reads
        found_expected = None
        bytes_per_op = a.key_size + a.value_size
        after = None
        if name in ("fillseq", "fillbatch"):
            n = a.num
            idx = range(n)
            ks, vs = d.keys, d.values(n)
            after = ("put", idx)
        elif name in ("fillrandom", "overwrite"):
            n = a.num
            idx = d.random_indices(rng, n)
            ks, vs = [d.keys[i] for i in idx], d.values(n)
            after = ("put", idx)
        elif name == "filluniquerandom":
            n = a.num
            idx = list(range(n))
            rng.shuffle(idx)
            ks, vs = [d.keys[i] for i in idx], d.values(n)
            after = ("put", idx)
        elif name == "fillsync":
            n = a.fillsync_num
            idx = d.random_indices(rng, n)
            ks, vs = [d.keys[i] for i in idx], d.values(n)
            after = ("put", idx)
        elif name == "deleterandom":
            n = a.num
            idx = d.random_indices(rng, n)
            ks, vs = [d.keys[i] for i in idx], None
            bytes_per_op = a.key_size
            after = ("delete", idx)
        elif name in ("readrandom", "seekrandom"):
            idx = d.random_indices(rng, n)
            ks = [d.keys[i] for i in idx]
            found_expected = d.present(idx)
        elif name == "readmissing":
            idx = d.random_indices(rng, n)
            ks = [d.keys[i] + b"." for i in idx]     # sorts right after an existing key
            found_expected = 0
        elif name in ("readseq", "readreverse"):
            live = d.live()
            found_expected = None if live is None else min(n, live)
            ks = None
        else:
            raise ValueError(f"unknown benchmark {name!r}")
        lat = array.array("q", bytes(8 * n))
        # ---- the op callable and its loop
        cleanup = None
        reads = name.startswith("read") or name == "seekrandom"
        if reads:
            e.begin_reads()
        try:
            if name in ("fillseq", "fillrandom", "overwrite"):
                chunk = chunk_write(e.op_put(), ks, vs, lat)
            elif name == "filluniquerandom":
                chunk = chunk_write(e.op_put_ttl(ttl) if ttl else e.op_put(), ks, vs, lat)
            elif name == "fillsync":
                chunk = chunk_write(e.op_put(sync=True), ks, vs, lat)
            elif name == "fillbatch":
                B = a.batch_size
                nb = (n + B - 1) // B
                kb = [ks[i * B:(i + 1) * B] for i in range(nb)]
                vb = [vs[i * B:(i + 1) * B] for i in range(nb)]
                lat = array.array("q", bytes(8 * nb))
                chunk = chunk_write(e.op_batch(), kb, vb, lat)
            elif name == "deleterandom":
                chunk = chunk_delete(e.op_delete(), ks, lat)
            elif name in ("readrandom", "readmissing"):
                chunk = chunk_get(e.op_get(), ks, lat)
            elif name == "seekrandom":
                chunk = chunk_seek(e.op_seek(), ks, lat)
            else:
                nxt, cleanup = e.scan(reverse=(name == "readreverse"))
                chunk = chunk_scan(nxt, lat)
            total_ops = len(lat)
            stats_before = e.stats()
            progress = Progress(self.progress_on, f"[{e.name}] {name}", total_ops)
            fill_started = time.time()
            done, found, seconds, starts = timed_drive(chunk, total_ops, progress, e.finish_writes)
            if cleanup is not None:
                cleanup()
            chunk = cleanup = nxt = None
        finally:
            if reads:
                e.end_reads()
        # ---- after the timed loop
        entries = done * a.batch_size if name == "fillbatch" else done
        if name == "fillbatch":
            entries = min(entries, n)
        if after is not None:
            what, idx = after
            (d.apply_puts if what == "put" else d.apply_deletes)(idx)
        if ttl:
            d.expires_at = fill_started + ttl
            res["ttl"] = {"seconds": ttl, "how": e.ttl_note}
        if name in ("readrandom", "seekrandom", "readseq", "readreverse"):
            data_bytes = found * bytes_per_op
        elif name == "readmissing":
            data_bytes = 0
        else:
            data_bytes = entries * bytes_per_op
        p = percentiles(to_latencies(lat, done, starts), done)
        if a.latency_timeline and name in WRITE_WORKLOADS:
            res["latency_timeline"] = latency_timeline(lat, done, starts)
        res.update({"ops": entries, "seconds": seconds,
                    "ops_per_sec": entries / seconds if seconds > 0 else None,
                    "micros_per_op": seconds * 1e6 / entries if entries else None,
                    "mb_per_sec": data_bytes / MiB / seconds if seconds > 0 else None,
                    "latency_us": p,
                    "latency_unit": f"per batch of {a.batch_size}" if name == "fillbatch" else "per op"})
        if name.startswith("read") or name == "seekrandom":
            res["found"] = found
            res["found_expected"] = found_expected
        stats_after = e.stats()
        res["engine_stats"] = self._jsonable(stats_after)
        summary = e.stats_summary(stats_before, stats_after)
        if name == "readrandom" and a.alloc_ops:
            res["allocs"] = self.measure_allocs(name)
        if name in WRITE_WORKLOADS:
            e.flush()
            stats_flushed = e.stats()
            summary = e.stats_summary(stats_before, stats_flushed)
            res["engine_stats"] = self._jsonable(stats_flushed)
            e.close()
            size, alloc, files = dir_bytes(path)
            res.update({"disk_bytes": size, "disk_alloc_bytes": alloc, "disk_files": files})
            e.open(path)
        res["peak_rss_bytes"] = peak_rss_bytes()
        res["rss_bytes"] = current_rss_bytes()
        # ---- verify a sample against the model (untimed)
        problems = self.verify(name, res)
        # ---- report
        lat_unit = " per batch" if name == "fillbatch" else ""
        line = (f"{name:14}: {res['micros_per_op'] or 0:10.3f} micros/op {res['ops_per_sec'] or 0:12,.0f} ops/sec;"
                f" {res['mb_per_sec'] or 0:7.1f} MB/s")
        if "found" in res:
            line += f" ({found} of {done} found"
            found_expected = res.get("found_expected")      # None if --ttl keys expired meanwhile
            if found_expected is not None:
                line += "" if found == found_expected else f", EXPECTED {found_expected}"
            line += ")"
        print(line)
        print(f"{'':16}latency us{lat_unit}: p50 {p['p50'] or 0:.2f}  p99 {p['p99'] or 0:.2f}  "
              f"p99.9 {p['p99.9'] or 0:.2f}  max {p['max'] or 0:.2f}   ({entries} ops in {seconds:.2f} s)")
        self._print_tail(e, res, summary, problems, ttl)

    def _print_tail(self, e, res, summary, problems, ttl=0):
        """The lines every read/write workload report ends with: memory and disk,
        the engine's stats summary, the TTL note, allocations, verification."""
        extra = f"{'':16}peak RSS {res['peak_rss_bytes'] / MiB:.1f} MB, RSS now {res['rss_bytes'] / MiB:.1f} MB"
        if "disk_bytes" in res:
            extra += (f"; on disk after flush+close: {res['disk_bytes'] / MiB:.1f} MB in "
                      f"{res['disk_files']} files ({res['disk_alloc_bytes'] / MiB:.1f} MB allocated)")
        print(extra)
        if summary:
            print(f"{'':16}{e.name} stats: {summary}")
        if ttl:
            print(f"{'':16}ttl {ttl} s: {e.ttl_note}")
        self.print_allocs(res)
        for msg in problems:
            print(f"{'':16}VERIFY FAILED: {msg}")
        if problems:
            res["verify_errors"] = problems

    def workload_sustained(self, path, res):
        """fillsustained: --sustained_num random puts (with replacement, as fillrandom)
        into a fresh DB opened with --sustained_write_buffer_size, so that flushes and
        compactions run throughout. Reports put latency, stalls and write amplification
        (WAL + flush + compaction bytes) / user key+value bytes, read right after the
        last put and again after waiting up to SUSTAINED_SETTLE_SECONDS for background
        work to finish."""
        a, e, d = self.args, self.engine, self.data
        name = "fillsustained"
        if e.sustained_unsupported:
            res["skipped"] = e.sustained_unsupported
            print(f"{name:14}: skipped for {e.name}: {e.sustained_unsupported}")
            return
        n = a.sustained_num
        width = a.key_size
        if len(str(n - 1)) > width:
            raise ValueError(f"--key_size {width} is too short for --sustained_num {n}")
        # ---- the operations (untimed): keys drawn with replacement from [0, n)
        rng = d.rng(name)
        idx = rng.choices(range(n), k=n)
        ks = [b"%0*d" % (width, i) for i in idx]
        vs = d.values(n)
        P = len(d.pool)
        model = array.array("i", [-1]) * n      # value-pool index last put per key
        for j, ki in enumerate(idx):
            model[ki] = j % P
        del idx
        # ---- a fresh DB with the small write buffer
        e.close()
        if not a.use_existing_db:
            wipe_dir(path)
        os.makedirs(path, exist_ok=True)
        e.sustained_wbs = a.sustained_write_buffer_size
        try:
            e.open(path)
            settings = e.sustained_settings()
            lat = array.array("q", bytes(8 * n))
            chunk = chunk_write(e.op_put(), ks, vs, lat)
            before = e.sustained_stats()
            stats_before = e.stats()
            progress = Progress(self.progress_on, f"[{e.name}] {name}", n)
            done, _, seconds, starts = timed_drive(chunk, n, progress, e.finish_writes)
            at_end = e.sustained_stats()      # the same moment for every engine: right after the last put
            chunk = None
            waited, idle, idle_how = e.wait_idle(SUSTAINED_SETTLE_SECONDS)
            settled = e.sustained_stats()
            stats_after = e.stats()
            summary = e.stats_summary(stats_before, stats_after)
            # ---- write amplification, the same formula for every engine
            user_bytes = done * (a.key_size + a.value_size)
            wal_note = None

            def wa(snap):
                def delta(k):
                    if snap.get(k) is None or before.get(k) is None:
                        return None
                    return snap[k] - before[k]
                wal = delta("wal_bytes")
                if wal is None and e.name == "plyvel":
                    # LevelDB counts nothing: its WAL record payload is the write batch,
                    # 12-byte header + type byte + varint lengths + key + value (the bytes
                    # RocksDB's rocksdb.wal.bytes ticker counts), one per put.
                    wal = done * (12 + 1 + varint_len(a.key_size) + a.key_size
                                  + varint_len(a.value_size) + a.value_size)
                fl, co = delta("flush_bytes"), delta("compaction_bytes")
                parts = {"wal_bytes": wal, "flush_bytes": fl, "compaction_bytes": co}
                out = {"user_bytes": user_bytes, **parts}
                if user_bytes and None not in parts.values():
                    out["write_amp"] = (wal + fl + co) / user_bytes
                    out["wal_per_user"] = wal / user_bytes
                    out["flush_per_user"] = fl / user_bytes
                    out["compaction_per_user"] = co / user_bytes
                else:
                    out["write_amp"] = None
                return out

            if e.name == "plyvel":
                wal_note = ("WAL bytes computed from LevelDB's record format (LevelDB counts none): "
                            f"{12 + 1 + varint_len(a.key_size) + a.key_size + varint_len(a.value_size) + a.value_size}"
                            " bytes of write batch per put, log framing excluded")
            elif e.name == "rocksdict":
                wal_note = "rocksdb.wal.bytes ticker: write-batch bytes, excluding the 7-byte log record header"
            elif e.name == "lsmkv":
                wal_note = "stats()['wal_bytes']: batch bytes plus lsmkv's 8-byte log record header"
            wa_end, wa_settled = wa(at_end), wa(settled)
            engine_user = (None if at_end.get("user_bytes") is None
                           else at_end["user_bytes"] - (before.get("user_bytes") or 0))
            stall_s = (None if at_end.get("stall_seconds") is None
                       else at_end["stall_seconds"] - (before.get("stall_seconds") or 0))
            stall_counts = {k: v - (before.get("stall_counts") or {}).get(k, 0)
                            for k, v in (at_end.get("stall_counts") or {}).items()}
            p = percentiles(to_latencies(lat, done, starts), done)
            tail = latency_tail(lat, done)
            if a.latency_timeline:
                res["latency_timeline"] = latency_timeline(lat, done, starts)
            lat = None
            res.update({"ops": done, "seconds": seconds,
                        "ops_per_sec": done / seconds if seconds > 0 else None,
                        "micros_per_op": seconds * 1e6 / done if done else None,
                        "mb_per_sec": user_bytes / MiB / seconds if seconds > 0 else None,
                        "latency_us": p, "latency_unit": "per op"})
            res["sustained"] = {
                "num": n, "write_buffer_size": a.sustained_write_buffer_size, "settings": settings,
                "stall_seconds": stall_s, "stall_counts": stall_counts,
                "stall_detail": at_end.get("stall_detail"),
                "latency_tail": tail,
                "user_bytes": user_bytes, "engine_user_bytes": engine_user, "wal_note": wal_note,
                "at_fill_end": {"write_amp": wa_end, "files_per_level": at_end.get("files_per_level")},
                "settled": {"write_amp": wa_settled, "files_per_level": settled.get("files_per_level"),
                            "waited_seconds": waited, "idle": idle, "idle_check": idle_how},
                "raw_at_fill_end": self._jsonable(at_end), "raw_settled": self._jsonable(settled)}
            res["engine_stats"] = self._jsonable(stats_after)
            # ---- flush, close, measure, reopen with the engine's normal settings
            e.flush()
            e.close()
            size, alloc, files = dir_bytes(path)
            res.update({"disk_bytes": size, "disk_alloc_bytes": alloc, "disk_files": files})
        finally:
            e.sustained_wbs = None
            if e.is_open():
                e.close()
        e.open(path)
        res["peak_rss_bytes"] = peak_rss_bytes()
        res["rss_bytes"] = current_rss_bytes()
        # ---- verify a sample of the sustained key space (untimed)
        problems = []
        if a.verify > 0:
            vr = random.Random(f"{a.seed}:verify:{len(self.results)}")
            sample = [ki for ki in vr.sample(range(n), min(a.verify, n)) if model[ki] >= 0 or
                      not a.use_existing_db]
            problems += self.check_gets(name, [(b"%0*d" % (width, ki), model[ki]) for ki in sample])
        # what later workloads may expect: the model over [0, --num) when it covers it
        if not a.use_existing_db and n <= d.num:
            d.model = model + array.array("i", [-1]) * (d.num - n)
        else:
            d.reset_model(known=False)
        # ---- report
        su = res["sustained"]
        print(f"{name:14}: {res['micros_per_op'] or 0:10.3f} micros/op {res['ops_per_sec'] or 0:12,.0f} ops/sec;"
              f" {res['mb_per_sec'] or 0:7.1f} MB/s")
        print(f"{'':16}latency us: p50 {p['p50'] or 0:.2f}  p99 {p['p99'] or 0:.2f}  "
              f"p99.9 {p['p99.9'] or 0:.2f}  max {p['max'] or 0:.2f}   ({done} ops in {seconds:.2f} s)")
        print(f"{'':16}workload: {n} puts of random keys (with replacement) from [0, {n}), "
              f"{a.key_size} B keys, {a.value_size} B values; write buffer {a.sustained_write_buffer_size} "
              f"for this workload, every other setting the engine's default")
        print(f"{'':16}settings: {settings}")
        print(f"{'':16}tail: " + ", ".join(f"{t['ops']} ops >= {t['threshold_us'] / 1000:g} ms "
                                           f"({t['seconds']:.2f} s)" for t in tail))
        print(f"{'':16}stalls: " + ("n/a" if stall_s is None else f"{stall_s:.3f} s") +
              f"; {su['stall_detail']}")

        def wa_line(w):
            if w["write_amp"] is None:
                return "n/a (" + ", ".join(k for k in ("wal_bytes", "flush_bytes", "compaction_bytes")
                                           if w[k] is None) + " not available)"
            return (f"{w['write_amp']:.3f} = WAL {w['wal_per_user']:.3f} + flush {w['flush_per_user']:.3f}"
                    f" + compaction {w['compaction_per_user']:.3f}  (WAL {fmt_mb(w['wal_bytes'])} MB, "
                    f"flush {fmt_mb(w['flush_bytes'])} MB, compaction {fmt_mb(w['compaction_bytes'])} MB "
                    f"/ user {fmt_mb(w['user_bytes'])} MB)")
        print(f"{'':16}write amp at fill end: {wa_line(wa_end)}")
        st = su["settled"]
        print(f"{'':16}write amp settled:     {wa_line(wa_settled)}  "
              f"[after {st['waited_seconds']:.1f} s, {'idle' if st['idle'] else 'STILL BUSY at the limit'}]")
        if wal_note:
            print(f"{'':16}WAL bytes: {wal_note}")
        if engine_user is not None and engine_user != user_bytes:
            print(f"{'':16}note: the engine counted {engine_user} user bytes, the harness {user_bytes}")
        print(f"{'':16}files/level at fill end {','.join(map(str, su['at_fill_end']['files_per_level'] or []))}; "
              f"settled {','.join(map(str, st['files_per_level'] or []))}")
        print(f"{'':16}peak RSS {res['peak_rss_bytes'] / MiB:.1f} MB, RSS now {res['rss_bytes'] / MiB:.1f} MB; "
              f"on disk after flush+close: {res['disk_bytes'] / MiB:.1f} MB in {res['disk_files']} files "
              f"({res['disk_alloc_bytes'] / MiB:.1f} MB allocated)")
        if summary:
            print(f"{'':16}{e.name} stats: {summary}")
        for msg in problems:
            print(f"{'':16}VERIFY FAILED: {msg}")
        if problems:
            res["verify_errors"] = problems

    # ---------------------------------------------------------------- allocations per op

    def measure_allocs(self, name, writer=None):
        """Allocations of a get, in separate untimed passes of --alloc_ops gets of random
        keys (drawn from the seed like the workload's, but other keys), after the timed
        loop, through the same engine get and the same loop shape (alloc_loop):

        A. allocs/op: the counting allocator hook (AllocCounter) around pass A: calls to
           the PyMem/PyObject malloc/calloc by this thread, minus those of the same loop
           around bool() (the floor, normally 0), per op. Reallocs are counted apart.
           Around the same pass, live blocks/op: the change of sys.getallocatedblocks()
           (gc.collect() before and after, the collector off during the pass) per op:
           the pymalloc blocks (<= 512 bytes) the pass left allocated, e.g. cache inserts;
           what an op allocates and frees again does not show in it.
        B. tracemalloc (started for pass B only, 1 frame, with other keys): the change in
           live traced blocks and bytes between snapshots before and after (all sizes,
           snapshots' own allocations filtered out), the three biggest sources, and the
           peak traced memory above the start (transient bytes).

        With a writer (readwhilewriting), pass A runs while the writer puts (the
        workload's conditions) and the reads use a thread_reader as the readers do; the
        thread-local count excludes the writer's allocations, but the process-wide live
        block counts would not, so they and pass B are left out."""
        a, e, d = self.args, self.engine, self.data
        n = a.alloc_ops
        rng = d.rng(name + ":allocs")
        ks_a = [d.keys[i] for i in d.random_indices(rng, n)]
        out = {"ops": n, "allocs_per_op": None, "reallocs_per_op": None, "live_blocks_per_op": None,
               "tracemalloc": None}
        counter, why = AllocCounter.get()
        if counter is None:
            out["allocs_unavailable"] = f"no allocation counter: {why}"
        stop, wthread = threading.Event(), None
        if writer is None:
            e.begin_reads()
            get, close = e.op_get(), e.end_reads
        else:
            get, close = e.thread_reader(1000)
            wthread = threading.Thread(target=writer.run_quietly, args=(stop,), name="db_bench-writer")
            wthread.start()
        try:
            gc.collect()
            b0 = sys.getallocatedblocks()
            gc.disable()
            try:
                if counter is not None:
                    floor, _ = counter.count(lambda: alloc_loop(bool, ks_a))
                    allocs, reallocs = counter.count(lambda: alloc_loop(get, ks_a))
                    out.update({"allocs_per_op": max(0, allocs - floor) / n, "reallocs_per_op": reallocs / n,
                                "allocs_floor": floor})
                else:
                    alloc_loop(get, ks_a)
            finally:
                gc.enable()
            gc.collect()
            b1 = sys.getallocatedblocks()
            if writer is not None:
                out["process_wide"] = "not measured: the writer's allocations would be counted too"
            else:
                out["live_blocks_per_op"] = (b1 - b0) / n
                out["tracemalloc"] = self._tracemalloc_pass(get, [d.keys[i] for i in d.random_indices(rng, n)])
        finally:
            stop.set()
            if wthread is not None:
                wthread.join()
                e.finish_writes()
            if close is not None:
                close()
        if writer is not None and writer.error is not None:
            raise writer.error
        return out

    @staticmethod
    def _tracemalloc_pass(get, ks):
        if tracemalloc.is_tracing():
            return {"skipped": "tracemalloc was already tracing"}
        n = len(ks)
        tracemalloc.start(1)
        try:
            gc.collect()
            s0 = tracemalloc.take_snapshot()
            cur0, _ = tracemalloc.get_traced_memory()
            tracemalloc.reset_peak()
            gc.disable()
            try:
                alloc_loop(get, ks)
            finally:
                gc.enable()
            _, peak = tracemalloc.get_traced_memory()
            gc.collect()
            s1 = tracemalloc.take_snapshot()
        finally:
            tracemalloc.stop()
        flt = [tracemalloc.Filter(False, tracemalloc.__file__), tracemalloc.Filter(False, "<unknown>")]
        diff = s1.filter_traces(flt).compare_to(s0.filter_traces(flt), "lineno")
        top = sorted((x for x in diff if x.count_diff), key=lambda x: -abs(x.count_diff))[:3]
        return {"retained_blocks_per_op": sum(x.count_diff for x in diff) / n,
                "retained_bytes_per_op": sum(x.size_diff for x in diff) / n,
                "transient_peak_bytes": peak - cur0,
                "top": [f"{os.path.basename(x.traceback[0].filename)}:{x.traceback[0].lineno} "
                        f"{x.count_diff:+d} blocks {x.size_diff:+d} B" for x in top]}

    @staticmethod
    def print_allocs(res):
        al = res.get("allocs")
        if not al:
            return

        def f(v, fmt="{:.2f}"):
            return "n/a" if v is None else fmt.format(v)
        line = (f"{'':16}allocs/op {f(al['allocs_per_op'])} (+ reallocs/op {f(al['reallocs_per_op'])}); "
                f"live blocks/op {f(al['live_blocks_per_op'], '{:+.3f}')}")
        tm = al.get("tracemalloc")
        if tm and "skipped" not in tm:
            line += (f"; tracemalloc: retained {tm['retained_blocks_per_op']:+.3f} blocks/op "
                     f"{tm['retained_bytes_per_op']:+.1f} B/op, transient peak {tm['transient_peak_bytes']} B")
        print(line + f"   ({al['ops']} untimed gets)")
        if al.get("allocs_unavailable"):
            print(f"{'':16}allocs/op n/a: {al['allocs_unavailable']}")
        if al.get("process_wide"):
            print(f"{'':16}live blocks/tracemalloc: {al['process_wide']}")
        if tm and tm.get("top"):
            print(f"{'':16}tracemalloc retained by: " + "; ".join(tm["top"]))

    def _flush_measure(self, path, res):
        """What workload() does after a write workload (untimed): flush, stats, close,
        measure the directory, reopen. Returns the stats after the flush."""
        e = self.engine
        e.flush()
        st = e.stats()
        e.close()
        size, alloc, files = dir_bytes(path)
        res.update({"disk_bytes": size, "disk_alloc_bytes": alloc, "disk_files": files})
        e.open(path)
        return st

    def _print_rate_line(self, name, res, extra=""):
        print(f"{name:14}: {res['micros_per_op'] or 0:10.3f} micros/op {res['ops_per_sec'] or 0:12,.0f} ops/sec;"
              f" {res['mb_per_sec'] or 0:7.1f} MB/s" + extra)

    @staticmethod
    def _lat_line(p, label="latency us"):
        return (f"{label}: p50 {p['p50'] or 0:.2f}  p99 {p['p99'] or 0:.2f}  "
                f"p99.9 {p['p99.9'] or 0:.2f}  max {p['max'] or 0:.2f}")

    # ---------------------------------------------------------------- threads

    def workload_threaded(self, name, path, res):
        """readrandom with --threads > 1, and readwhilewriting (any --threads). The
        --reads random keys (the same draw as single-threaded readrandom's) are split
        into --threads contiguous slices, one per reader thread (db_bench gives each
        thread --reads ops instead; here the total stays --reads, so the found count is
        the same check). ops/sec = all readers' gets / wall time from the first reader's
        start to the last one's end; the latency percentiles merge every reader's gaps.
        readwhilewriting adds one writer thread that puts random keys of [0, num) with
        the workload's values at full speed until the last reader is done (run_readers);
        its puts are reported apart."""
        a, e, d = self.args, self.engine, self.data
        T = a.threads
        rng = d.rng(name)
        n = a.reads
        idx = d.random_indices(rng, n)
        ks = [d.keys[i] for i in idx]
        present = d.present(idx)
        del idx
        slices = [ks[n * t // T:n * (t + 1) // T] for t in range(T)]
        writer = None
        if name == "readwhilewriting":
            widx = d.random_indices(rng, d.num)
            writer = BackgroundWriter(e.op_put, [d.keys[i] for i in widx], d.values(d.num), widx)
        stats_before = e.stats()
        what = f"{T} reader{'s' if T > 1 else ''}" + (" + writer" if writer else "")
        progress = Progress(self.progress_on, f"[{e.name}] {name} ({what})", n)
        try:
            per, lat, seconds, wres = run_readers(e, slices, 1000 if writer else 0, progress, writer)
        finally:
            if writer is not None:
                e.finish_writes()
        done = sum(x[0] for x in per)
        found = sum(x[1] for x in per)
        p = percentiles(lat, len(lat))
        lat = None
        res.update({"ops": done, "seconds": seconds,
                    "ops_per_sec": done / seconds if seconds > 0 else None,
                    "micros_per_op": seconds * 1e6 / done if done else None,
                    "mb_per_sec": found * (a.key_size + a.value_size) / MiB / seconds if seconds > 0 else None,
                    "latency_us": p, "latency_unit": "per get, every reader thread's gaps merged",
                    "threads": T, "per_thread_ops_per_sec": [x[0] / x[2] if x[2] > 0 else None for x in per],
                    "thread_setup": e.thread_note, "gil_switch_interval_s": sys.getswitchinterval(),
                    "found": found})
        if writer is None:
            res["found_expected"] = present
        else:
            res["found_expected"] = None
            res["found_at_least"] = present
            wl = wres["lat"]
            res["writer"] = {"ops": wres["ops"], "seconds": wres["seconds"],
                             "ops_per_sec": wres["ops"] / wres["seconds"] if wres["seconds"] > 0 else None,
                             "latency_us": percentiles(wl, len(wl))}
        stats_after = e.stats()
        res["engine_stats"] = self._jsonable(stats_after)
        summary = e.stats_summary(stats_before, stats_after)
        try:
            if a.alloc_ops:
                res["allocs"] = self.measure_allocs(name, writer)
        finally:
            if writer is not None:
                writer.apply_to(d)
        if name in WRITE_WORKLOADS:
            stats_flushed = self._flush_measure(path, res)
            summary = e.stats_summary(stats_before, stats_flushed)
            res["engine_stats"] = self._jsonable(stats_flushed)
        res["peak_rss_bytes"] = peak_rss_bytes()
        res["rss_bytes"] = current_rss_bytes()
        problems = self.verify(name, res)
        # ---- report
        check = ""
        if res.get("found_expected") is not None and found != res["found_expected"]:
            check = f", EXPECTED {res['found_expected']}"
        elif res.get("found_at_least") is not None and found < res["found_at_least"]:
            check = f", EXPECTED at least {res['found_at_least']}"
        self._print_rate_line(name, res, f" ({found} of {done} found{check}) [{what}]")
        print(f"{'':16}{self._lat_line(p)}   ({done} gets in {seconds:.2f} s; per reader: "
              + ", ".join(fmt_rate(x) for x in res["per_thread_ops_per_sec"]) + " ops/s)")
        if writer is not None:
            w = res["writer"]
            print(f"{'':16}writer: {w['ops']} puts in {w['seconds']:.2f} s, {fmt_rate(w['ops_per_sec'])} ops/s; "
                  + self._lat_line(w["latency_us"], "put latency us"))
        print(f"{'':16}threads: {e.thread_note}; GIL switch interval {sys.getswitchinterval() * 1000:g} ms")
        self._print_tail(e, res, summary, problems)

    # ---------------------------------------------------------------- readrandom_cache

    def workload_cache(self, path, res):
        """readrandom_cache: for each --cache_sizes size, reopen the DB (as the previous
        workloads left it) with a block cache of that size (lsmkv block_cache_size,
        LevelDB lru_cache_size, a new RocksDB Cache), do --reads gets of random keys
        untimed to warm the cache, then --reads gets of other random keys timed as in
        readrandom. The hit ratio is over the timed pass: the change in the engine's
        block cache hits and misses (lsmkv: stats()['block_cache']; rocksdict: the
        rocksdb.block.cache.data.hit/miss tickers, statistics on for this workload;
        LevelDB counts none)."""
        a, e, d = self.args, self.engine, self.data
        name = "readrandom_cache"
        if e.cache_unsupported:
            res["skipped"] = e.cache_unsupported
            print(f"{name:14}: skipped for {e.name}: {e.cache_unsupported}")
            return
        if d.model is not None and d.live() == 0:
            print(f"{'':16}note: the DB is empty; put a fill (e.g. fillrandom) before {name}")
        rng = d.rng(name)
        n = a.reads
        warm_ks = [d.keys[i] for i in d.random_indices(rng, n)]
        idx = d.random_indices(rng, n)
        ks = [d.keys[i] for i in idx]
        found_expected = d.present(idx)
        del idx
        runs, problems = [], []
        res["cache_runs"] = runs
        res["hit_counters"] = e.cache_counter_note
        print(f"{name:14}: {n} untimed warm-up gets, then {n} timed gets of other random keys, "
              f"per block cache size; hit ratio from {e.cache_counter_note}")
        try:
            for mib in a.cache_sizes:
                e.close()
                e.cache_override = mib * MiB
                e.open(path)
                e.begin_reads()
                try:
                    get = e.op_get()
                    t = perf_counter()
                    alloc_loop(get, warm_ks)
                    warm_s = perf_counter() - t
                    c0 = e.cache_counters()
                    lat = array.array("q", bytes(8 * n))
                    chunk = chunk_get(get, ks, lat)
                    progress = Progress(self.progress_on, f"[{e.name}] {name} {mib} MiB", n)
                    done, found, seconds, starts = timed_drive(chunk, n, progress)
                    c1 = e.cache_counters()
                    chunk = get = None
                finally:
                    e.end_reads()
                p = percentiles(to_latencies(lat, done, starts), done)
                lat = None
                run = {"cache_mib": mib, "cache_bytes": mib * MiB, "ops": done, "seconds": seconds,
                       "ops_per_sec": done / seconds if seconds > 0 else None,
                       "micros_per_op": seconds * 1e6 / done if done else None,
                       "latency_us": p, "found": found, "found_expected": found_expected,
                       "warmup_seconds": warm_s, "hits": None, "misses": None, "hit_ratio": None,
                       "cache_memory": self._jsonable(e.cache_memory()), "rss_bytes": current_rss_bytes()}
                if c0 is not None and c1 is not None:
                    h, m = c1[0] - c0[0], c1[1] - c0[1]
                    run.update({"hits": h, "misses": m, "hit_ratio": h / (h + m) if h + m else None})
                runs.append(run)
                hr = ("n/a" if run["hit_ratio"] is None else
                      f"{run['hit_ratio']:.3f} ({run['hits']}/{run['hits'] + run['misses']})")
                usage = run["cache_memory"].get("usage") if isinstance(run["cache_memory"], dict) else None
                print(f"{'':16}cache {mib:>5} MiB: {run['micros_per_op'] or 0:8.3f} micros/op "
                      f"{run['ops_per_sec'] or 0:12,.0f} ops/sec; hit ratio {hr}; {found} of {done} found"
                      + (f", EXPECTED {found_expected}" if found_expected is not None and found != found_expected
                         else ""))
                print(f"{'':34}{self._lat_line(p)}; warm-up {warm_s:.2f} s; cache usage "
                      f"{fmt_mb(usage) if usage is not None else 'n/a'} MB; RSS now {fmt_mb(run['rss_bytes'])} MB")
                sys.stdout.flush()
        finally:
            e.close()
            e.cache_override = None
            e.open(path)
        res["ops"] = sum(r["ops"] for r in runs)
        res["seconds"] = sum(r["seconds"] for r in runs)
        res["peak_rss_bytes"] = peak_rss_bytes()
        res["rss_bytes"] = current_rss_bytes()
        problems += self.verify(name, res)
        problems += [f"{name} ({r['cache_mib']} MiB) found {r['found']} keys, expected {r['found_expected']}"
                     for r in runs if r["found_expected"] is not None and r["found"] != r["found_expected"]]
        for msg in problems:
            print(f"{'':16}VERIFY FAILED: {msg}")
        if problems:
            res["verify_errors"] = problems

    # ---------------------------------------------------------------- churn

    def workload_churn(self, path, res):
        """churn: see churn_run. Each variant (lsmkv: block_cache='slab' and 'lru')
        runs in a fresh process of its own (this script with --churn_variant), so that
        neither inherits the other's heap; this process collects their results."""
        a, e = self.args, self.engine
        name = "churn"
        if e.churn_unsupported:
            res["skipped"] = e.churn_unsupported
            print(f"{name:14}: skipped for {e.name}: {e.churn_unsupported}")
            return
        if a.churn_variant is not None:
            return self.churn_run(path, res)
        cache = churn_cache_size(a)
        keyspace = churn_keyspace(a)
        variants = e.churn_variants()
        print(f"{name:14}: {a.churn_ops} ops, {100 - CHURN_PUT_PCT}% gets / {CHURN_PUT_PCT}% puts of values "
              f"{CHURN_MIN_VALUE} B..{CHURN_MAX_VALUE // 1024} KiB (log-uniform), on {keyspace} keys put once "
              f"first; block cache {cache / MiB:g} MiB; each variant in its own process")
        ch = res["churn"] = {"variants": {}, "cache_size": cache, "keyspace": keyspace, "ops": a.churn_ops}
        env = dict(os.environ)
        if e.name == "lsmkv":      # the child imports the same lsmkv as this process
            env["PYTHONPATH"] = os.pathsep.join(filter(None, [os.path.dirname(os.path.dirname(e.mod.__file__)),
                                                              env.get("PYTHONPATH")]))
        problems = []
        for v, note in variants:
            tmp = tempfile.mkdtemp(prefix=f"db_bench_churn_{e.name}_{v}_", dir=os.path.dirname(path))
            try:
                jp = os.path.join(tmp, "result.json")
                print(f"{'':16}--- {e.name} [{v}]" + (f": {note}" if note else ""), flush=True)
                try:
                    rc = subprocess.call(churn_child_argv(a, e.name, v, cache, jp, os.path.join(tmp, "db")),
                                         env=env)
                except OSError as ex:
                    rc = f"could not start: {ex}"
                r = None
                try:
                    with open(jp) as f:
                        rs = json.load(f).get("results") or []
                    r = rs[0] if rs else None
                except (OSError, ValueError):
                    pass
                if r is None:
                    how = f"killed by signal {-rc}" if isinstance(rc, int) and rc < 0 else f"exit status {rc}"
                    r = {"error": f"the churn process for {v} failed ({how})"}
                    print(f"{'':16}[{v}] ERROR: {r['error']}")
                if note:
                    r["variant_note"] = note
                ch["variants"][v] = r
                problems += [f"[{v}] {m}" for m in r.get("verify_errors") or []]
                if r.get("error") and v == variants[0][0]:
                    res["error"] = f"[{v}] {r['error']}"
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
        first = ch["variants"].get(variants[0][0]) or {}
        for k in ("ops", "seconds", "ops_per_sec", "micros_per_op", "mb_per_sec", "latency_us"):
            if k in first:
                res[k] = first[k]
        # ---- summary, one line per variant
        for v, r in ch["variants"].items():
            c = r.get("churn")
            if not c:
                continue
            print(f"{'':16}[{v:>7}] {fmt_rate(r.get('ops_per_sec'))} ops/s; RSS mid {fmt_mb(c['rss_mid_bytes'])} MB,"
                  f" end {fmt_mb(c['rss_end_bytes'])} MB, growth over second half "
                  f"{fmt_pct(c['rss_growth_second_half_pct'])}; fragmentation_ratio at end "
                  f"{fmt_num(c['fragmentation_ratio_end'])}, slab_moves {fmt_num(c['slab_moves_end'], '{}')}")
        res["peak_rss_bytes"] = peak_rss_bytes()
        res["rss_bytes"] = current_rss_bytes()
        if problems:
            res["verify_errors"] = problems

    def churn_run(self, path, res):
        """One churn variant, in this (fresh) process. The operations, all from the seed
        and the same for every engine and variant:
          * keyspace = max(num / 10, 10,000) keys; CHURN_VALUES distinct values of
            log-uniform sizes in [CHURN_MIN_VALUE, CHURN_MAX_VALUE], slices of the
            db_bench RandomGenerator buffer (so --compression_ratio applies);
          * every key put once in random order (untimed), into a fresh DB opened with
            the variant's block cache (--cache_size, default 64 MiB);
          * --churn_ops ops, each a put of a random key with a random one of the values
            (CHURN_PUT_PCT %) or a get of a random key, in the timed loop (one call per
            op, as everywhere), run in 20 parts of 5%; after each part (untimed) a line
            with the elapsed time, current RSS, and the block cache's usage,
            fragmentation_ratio and slab_moves (lsmkv stats()['block_cache']; n/a
            when absent).
        Reports the RSS after 50% (midpoint) and 100% (end), the RSS growth over the
        second half ((end - mid) / mid) and the fragmentation ratio at the end."""
        a, e = self.args, self.engine
        name, variant = "churn", a.churn_variant
        K = churn_keyspace(a)
        width = a.key_size
        if len(str(K - 1)) > width:
            raise ValueError(f"--key_size {width} is too short for the churn keyspace {K}")
        keys = [b"%0*d" % (width, i) for i in range(K)]
        rng = random.Random(f"{a.seed}:churn")
        buf = random_generator_buffer(4 * CHURN_MAX_VALUE, a.compression_ratio)
        lo_ln, hi_ln = math.log(CHURN_MIN_VALUE), math.log(CHURN_MAX_VALUE)
        values = []
        for _ in range(CHURN_VALUES):
            size = max(CHURN_MIN_VALUE, min(CHURN_MAX_VALUE, int(math.exp(rng.uniform(lo_ln, hi_ln)))))
            off = rng.randrange(len(buf) - size + 1)
            values.append(buf[off:off + size])
        del buf
        n = a.churn_ops
        order = list(range(K))
        rng.shuffle(order)
        model = array.array("i", [-1]) * K
        pre = []
        for ki in order:
            vi = rng.randrange(CHURN_VALUES)
            pre.append((keys[ki], values[vi]))
            model[ki] = vi
        ks, vs = [], []
        for _ in range(n):
            ki = rng.randrange(K)
            ks.append(keys[ki])
            if rng.randrange(100) < CHURN_PUT_PCT:
                vi = rng.randrange(CHURN_VALUES)
                vs.append(values[vi])
                model[ki] = vi
            else:
                vs.append(None)
        puts = sum(1 for v in vs if v is not None)
        put_bytes = sum(len(k) + len(v) for k, v in zip(ks, vs) if v is not None)
        # ---- a fresh DB with the variant's block cache
        e.close()
        wipe_dir(path)
        os.makedirs(path, exist_ok=True)
        e.block_cache_kind = None if variant == "default" else variant
        e.open(path)
        settings = e.settings()
        t = perf_counter()
        put = e.op_put()
        for k, v in pre:
            put(k, v)
        e.finish_writes()
        prefill_s = perf_counter() - t
        pre = None
        rss_start = current_rss_bytes()
        lat = array.array("q", bytes(8 * n))
        e.begin_reads()
        chunk = chunk_churn(e.op_put(), e.op_get(), ks, vs, lat)
        label = f"{name} [{variant}]"
        print(f"{label:14}: block cache {settings.get('block_cache', 'default')}, {settings.get('cache_size')} B; "
              f"{K} keys put once in {prefill_s:.2f} s (untimed); RSS {fmt_mb(rss_start)} MB")
        progress = Progress(self.progress_on, f"[{e.name}] {label}", n)
        lines, starts = [], []
        found = 0
        timed = 0.0
        gc.collect()
        gc.disable()
        t_start = perf_counter()
        try:
            for part in range(CHURN_PARTS):
                lo, hi = n * part // CHURN_PARTS, n * (part + 1) // CHURN_PARTS
                part_starts = []
                t0 = perf_counter()
                _, f = drive(lambda x, y, lo=lo: chunk(lo + x, lo + y), hi - lo,
                             _OffsetProgress(progress, lo), part_starts)
                timed += perf_counter() - t0
                found += f
                starts += [(lo + x, ts_) for x, ts_ in part_starts]
                progress.clear()
                mem = e.cache_memory()
                line = {"pct": 100 * (part + 1) // CHURN_PARTS, "ops": hi, "elapsed_s": perf_counter() - t_start,
                        "rss_bytes": current_rss_bytes(), "ops_per_sec": (hi - lo) / (perf_counter() - t0),
                        **{k: mem.get(k) for k in ("usage", "held", "fragmentation_ratio", "slab_moves",
                                                   "approximate_memory_usage") if k in mem}}
                lines.append(line)
                print(f"{'':16}{line['pct']:3d}%  {line['elapsed_s']:6.1f} s  RSS {fmt_mb(line['rss_bytes']):>7} MB"
                      f"  cache usage {fmt_mb(mem['usage']) if mem.get('usage') is not None else 'n/a':>6} MB"
                      + (f" (held {fmt_mb(mem['held'])} MB)" if mem.get("held") is not None else "")
                      + f"  fragmentation_ratio {fmt_num(mem.get('fragmentation_ratio'))}"
                        f"  slab_moves {fmt_num(mem.get('slab_moves'), '{}')}"
                      + (f"  approx memory {fmt_mb(mem['approximate_memory_usage'])} MB"
                         if mem.get("approximate_memory_usage") is not None else "")
                      + f"  ({fmt_rate(line['ops_per_sec'])} ops/s)", flush=True)
            e.finish_writes()
        finally:
            gc.enable()
            e.end_reads()
            chunk = None
        to_latencies(lat, n, starts)
        p = percentiles(lat, n)
        put_lat = array.array("q", (lat[i] for i in range(n) if vs[i] is not None))
        get_lat = array.array("q", (lat[i] for i in range(n) if vs[i] is None))
        lat = None
        mid, end = lines[CHURN_PARTS // 2 - 1], lines[-1]
        growth = ((end["rss_bytes"] - mid["rss_bytes"]) / mid["rss_bytes"] * 100 if mid["rss_bytes"] else None)
        res.update({"ops": n, "seconds": timed, "ops_per_sec": n / timed if timed > 0 else None,
                    "micros_per_op": timed * 1e6 / n if n else None,
                    "mb_per_sec": put_bytes / MiB / timed if timed > 0 else None,
                    "latency_us": p, "latency_unit": "per op (puts and gets)"})
        res["churn"] = {
            "variant": variant, "settings": settings, "keyspace": K, "puts": puts, "gets": n - puts,
            "found": found, "put_bytes": put_bytes, "prefill_seconds": prefill_s,
            "values": {"count": CHURN_VALUES, "min": min(map(len, values)), "max": max(map(len, values)),
                       "mean": sum(map(len, values)) / len(values)},
            "put_latency_us": percentiles(put_lat, len(put_lat)),
            "get_latency_us": percentiles(get_lat, len(get_lat)),
            "rss_start_bytes": rss_start, "rss_mid_bytes": mid["rss_bytes"], "rss_end_bytes": end["rss_bytes"],
            "rss_growth_second_half_pct": growth,
            "fragmentation_ratio_end": end.get("fragmentation_ratio"), "slab_moves_end": end.get("slab_moves"),
            "cache_usage_end": end.get("usage"), "cache_held_end": end.get("held"), "lines": lines}
        res["engine_stats"] = self._jsonable(e.stats())
        # ---- verify a sample of the keyspace against the last value put (untimed)
        problems = []
        if a.verify > 0:
            vr = random.Random(f"{a.seed}:verify:churn")
            e.begin_reads()
            try:
                get, bad = e.op_get(), 0
                for ki in vr.sample(range(K), min(a.verify, K)):
                    if get(keys[ki]) != values[model[ki]]:
                        bad += 1
                if bad:
                    problems.append(f"after churn: {bad} of {min(a.verify, K)} sampled gets wrong")
            finally:
                e.end_reads()
        res["peak_rss_bytes"] = peak_rss_bytes()
        res["rss_bytes"] = current_rss_bytes()
        c = res["churn"]
        self._print_rate_line(label, res, f" ({found} of {n - puts} gets found; puts {puts})")
        print(f"{'':16}{self._lat_line(c['put_latency_us'], 'put latency us')}")
        print(f"{'':16}{self._lat_line(c['get_latency_us'], 'get latency us')}")
        print(f"{'':16}RSS mid {fmt_mb(c['rss_mid_bytes'])} MB, end {fmt_mb(c['rss_end_bytes'])} MB, growth over "
              f"second half {fmt_pct(growth)}; fragmentation_ratio at end {fmt_num(c['fragmentation_ratio_end'])}, "
              f"slab_moves {fmt_num(c['slab_moves_end'], '{}')}; peak RSS {fmt_mb(res['peak_rss_bytes'])} MB")
        for msg in problems:
            print(f"{'':16}VERIFY FAILED: {msg}")
        if problems:
            res["verify_errors"] = problems

    @staticmethod
    def _jsonable(s):
        try:
            json.dumps(s, default=str)
            return s
        except Exception:
            return str(s)

    def verify(self, name, res):
        """Check found counts and a sample of gets against the model (untimed)."""
        a, d = self.args, self.data
        problems = []
        if self.expiry_check():              # keys put with --ttl expired during the workload
            for k in ("found_expected", "found_at_least"):
                if res.get(k) is not None:
                    res[k] = None
            for r in res.get("cache_runs") or []:
                r["found_expected"] = None
        if "found" in res and res.get("found_expected") is not None and res["found"] != res["found_expected"]:
            problems.append(f"{name} found {res['found']} keys, expected {res['found_expected']}")
        if res.get("found_at_least") is not None and res.get("found", 0) < res["found_at_least"]:
            problems.append(f"{name} found {res['found']} keys, expected at least {res['found_at_least']} "
                            "(the writer only adds keys)")
        if d.model is None or a.verify <= 0:
            return problems
        rng = random.Random(f"{a.seed}:verify:{len(self.results)}")
        sample = rng.sample(range(d.num), min(a.verify, d.num))
        return problems + self.check_gets(name, [(d.keys[ki], d.model[ki]) for ki in sample])

    def check_gets(self, name, pairs):
        """get() each key of pairs ((key, model value index or -1 for absent)) and
        describe the wrong answers (the first three, then a count)."""
        e, pool = self.engine, self.data.pool
        problems, bad = [], 0
        e.begin_reads()
        try:
            get = e.op_get()
            for k, want in pairs:
                got = get(k)
                exp = None if want < 0 else pool[want]
                if got != exp:
                    bad += 1
                    if bad <= 3:
                        problems.append(f"after {name}: get({k!r}) returned "
                                        f"{'None' if got is None else repr(got[:20]) + '...'}, expected "
                                        f"{'None' if exp is None else repr(exp[:20]) + '...'}")
        finally:
            e.end_reads()
        if bad > 3:
            problems.append(f"after {name}: {bad} of {len(pairs)} sampled gets wrong")
        return problems


# ---------------------------------------------------------------------------- --compare

def child_argv(args, engine, json_path, db_path):
    argv = [sys.executable, os.path.abspath(__file__), "--engine", engine, "--json", json_path,
            "--benchmarks", ",".join(args.benchmarks), "--num", str(args.num),
            "--reads", str(args.reads), "--key_size", str(args.key_size),
            "--value_size", str(args.value_size), "--compression_ratio", str(args.compression_ratio),
            "--seed", str(args.seed), "--fillsync_num", str(args.fillsync_num),
            "--batch_size", str(args.batch_size), "--verify", str(args.verify),
            "--bloom_bits", str(args.bloom_bits), "--progress", args.progress, "--db", db_path]
    if "fillsustained" in args.benchmarks:
        argv += ["--sustained_num", str(args.sustained_num),
                 "--sustained_write_buffer_size", str(args.sustained_write_buffer_size)]
    if args.cache_size is not None:
        argv += ["--cache_size", str(args.cache_size)]
    if args.write_buffer_size is not None:
        argv += ["--write_buffer_size", str(args.write_buffer_size)]
    if args.use_existing_db:
        argv.append("--use_existing_db")
    if args.threads != 1:
        argv += ["--threads", str(args.threads)]
    if "filluniquerandom" in args.benchmarks and args.ttl:
        argv += ["--ttl", str(args.ttl)]
    if "readrandom_cache" in args.benchmarks:
        argv += ["--cache_sizes", ",".join(map(str, args.cache_sizes))]
    if "churn" in args.benchmarks:
        argv += ["--churn_ops", str(args.churn_ops)]
    if args.alloc_ops != ALLOC_OPS_DEFAULT:
        argv += ["--alloc_ops", str(args.alloc_ops)]
    if args.latency_timeline:
        argv.append("--latency_timeline")
    return argv


def run_compare(args):
    engines = [x.strip() for x in args.compare_engines.split(",") if x.strip()]
    base = os.path.abspath(args.db) if args.db else tempfile.mkdtemp(prefix="db_bench_cmp_")
    own = not args.db
    docs, status = {}, {}
    tmpjson = tempfile.mkdtemp(prefix="db_bench_json_")
    lsmkv_root = None
    if "lsmkv" in engines:
        try:
            lsmkv_root = os.path.dirname(import_lsmkv().__file__)
        except ImportError:
            lsmkv_root = None
    env = dict(os.environ)
    if lsmkv_root:     # the child imports the same lsmkv as this process
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [os.path.dirname(lsmkv_root),
                                                          env.get("PYTHONPATH")]))
    try:
        for name in engines:
            ok, why = engine_available(name)
            if not ok:
                print(f"### {name}: not installed ({why}); skipped", flush=True)
                status[name] = "not installed"
                continue
            jp = os.path.join(tmpjson, f"{name}.json")
            argv = child_argv(args, name, jp, os.path.join(base, name))
            print(f"\n### {name}: {' '.join(argv[1:])}", flush=True)
            t = perf_counter()
            try:
                rc = subprocess.call(argv, env=env)
            except OSError as ex:
                rc = f"could not start: {ex}"
            el = perf_counter() - t
            doc = None
            if os.path.exists(jp):
                try:
                    with open(jp) as f:
                        doc = json.load(f)
                except ValueError:
                    doc = None
            done = len(doc["results"]) if doc else 0
            if rc == 0:
                status[name] = "ok"
            elif rc == 1 and done == len(args.benchmarks):
                status[name] = "finished, with workload errors (see its output above)"
            else:
                how = (f"killed by signal {-rc}" if isinstance(rc, int) and rc < 0
                       else f"exit status {rc}")
                status[name] = f"CRASHED: {how} after {el:.1f}s ({done} workloads recorded)"
            if status[name] != "ok":
                print(f"### {name}: {status[name]}", flush=True)
            if doc is not None:
                docs[name] = doc
            if own:
                shutil.rmtree(os.path.join(base, name), ignore_errors=True)
    finally:
        shutil.rmtree(tmpjson, ignore_errors=True)
        if own:
            shutil.rmtree(base, ignore_errors=True)
    print()
    table = compare_table(args, engines, docs, status)
    print(table)
    if args.plot:
        write_plot(args, docs, args.plot)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"compare": True, "argv": sys.argv, "date": time.strftime("%Y-%m-%d %H:%M:%S %z"),
                       "cpus": os.cpu_count(), "status": status, "engines": docs, "table": table},
                      f, indent=1, default=str)
    return 0 if status.get("lsmkv") == "ok" else 1


def table_rows(args, present, docs):
    """The rows of the ops/sec and latency tables (and the --plot bars): (label,
    {engine: result dict or None}). A workload is one row, except readrandom_cache
    (a row per cache size), churn (a row per variant: lsmkv's block caches; the other
    engines run one, shown in the first row) and readwhilewriting (the readers' row,
    then its writer's)."""
    def res(e, i):
        rs = docs[e].get("results", [])
        return rs[i] if i < len(rs) else None

    def sub(r, x):
        """A row cell from part x of result r, keeping r's error/skip marks."""
        if r is None or r.get("error") or r.get("skipped"):
            return r
        return x if x is not None else {}

    for i, name in enumerate(args.benchmarks):
        rs = {e: res(e, i) for e in present}
        if name == "readrandom_cache":
            for j, mib in enumerate(args.cache_sizes):
                cells = {}
                for e, r in rs.items():
                    runs = (r or {}).get("cache_runs") or []
                    cells[e] = sub(r, runs[j] if j < len(runs) else None)
                yield f"rr_cache {mib}M", cells
        elif name == "churn":
            order = []
            for e, r in rs.items():
                for v in ((r or {}).get("churn") or {}).get("variants", {}):
                    if v not in order and e == "lsmkv":
                        order.append(v)
            order = order or ["default"]
            for j, v in enumerate(order):
                cells = {}
                for e, r in rs.items():
                    vs = ((r or {}).get("churn") or {}).get("variants", {})
                    if e == "lsmkv":
                        cells[e] = sub(r, vs.get(v))
                    else:
                        cells[e] = sub(r, next(iter(vs.values()), None)) if j == 0 else None
                yield (f"churn {v}" if v != "default" else "churn"), cells
        else:
            yield name, rs
            if name == "readwhilewriting":
                yield "  writer", {e: sub(r, (r or {}).get("writer")) for e, r in rs.items()}


def compare_table(args, engines, docs, status):
    present = [e for e in engines if e in docs]
    out = []
    date = time.strftime("%Y-%m-%d")
    out.append(f"db_bench --compare  ({date}, {os.cpu_count()} cpus, num {args.num}, reads {args.reads}, "
               f"key {args.key_size} B, value {args.value_size} B, compression_ratio {args.compression_ratio}, "
               f"seed {args.seed})")
    for e in engines:
        if e not in docs:
            out.append(f"  {e}: {status.get(e, 'not run')}")
        elif status.get(e) != "ok":
            out.append(f"  {e}: {status[e]} (partial results shown)")
    w = 11
    rows = list(table_rows(args, present, docs))
    lw = max([14] + [len(name) for name, _ in rows])       # label column (14 for the default workloads)
    peers = [e for e in present if e != "lsmkv"]
    has_best = "lsmkv" in present and any(p in present for p in PEER_LSMS)
    hdr = f"{'ops/sec':{lw}}" + "".join(f"{e:>{w}}" for e in present)
    if "lsmkv" in present:
        hdr += "  |" + "".join(f"{'/' + p:>{w}}" for p in peers)
        if has_best:
            hdr += f"{'/best LSM':>{w}}"
    out.append("")
    out.append(hdr)
    out.append("-" * len(hdr))

    def res(e, i):
        rs = docs[e].get("results", [])
        return rs[i] if i < len(rs) else None

    for name, cells in rows:
        row = f"{name:{lw}}"
        vals = {}
        for e in present:
            r = cells.get(e)
            v = r.get("ops_per_sec") if r and not r.get("error") else None
            vals[e] = v
            cell = fmt_rate(v) if v else ("ERR" if r and r.get("error") else
                                          "skip" if r and r.get("skipped") else "-")
            if r and r.get("verify_errors"):
                cell += "!"
            row += f"{cell:>{w}}"
        if "lsmkv" in present:
            row += "  |"
            mine = vals.get("lsmkv")
            for p in peers:
                row += f"{(f'{mine / vals[p]:.2f}x' if mine and vals.get(p) else '-'):>{w}}"
            if has_best:
                best = max((vals[p] for p in PEER_LSMS if vals.get(p)), default=None)
                row += f"{(f'{mine / best:.2f}x' if mine and best else '-'):>{w}}"
        out.append(row)
    out.append("(lsmkv/X = lsmkv ops/sec divided by X's: above 1 means lsmkv is faster; "
               "best LSM = the faster of plyvel and rocksdict; '!' = verification failed)")
    # latency
    out.append("")
    hdr2 = f"{'p99 latency us':{lw}}" + "".join(f"{e:>{w}}" for e in present)
    out.append(hdr2)
    out.append("-" * len(hdr2))
    for name, cells in rows:
        row = f"{name:{lw}}"
        for e in present:
            r = cells.get(e)
            v = (r.get("latency_us") or {}).get("p99") if r and not r.get("error") else None
            row += f"{(f'{v:.1f}' if v is not None else '-'):>{w}}"
        out.append(row)
    # disk
    out.append("")
    hdr3 = f"{'disk MB':{lw}}" + "".join(f"{e:>{w}}" for e in present)
    out.append(hdr3 + "   (after the workload, flushed and closed: sum of file sizes)")
    out.append("-" * len(hdr3))
    for i, name in enumerate(args.benchmarks):
        if name not in WRITE_WORKLOADS:
            continue
        row = f"{name:{lw}}"
        for e in present:
            r = res(e, i)
            row += f"{fmt_mb(r.get('disk_bytes') if r else None):>{w}}"
        out.append(row)
    out.append("")
    row = f"{'peak RSS MB':{lw}}"
    row0 = f"{'baseline MB':{lw}}"
    for e in present:
        row += f"{fmt_mb(docs[e].get('peak_rss_bytes')):>{w}}"
        row0 += f"{fmt_mb(docs[e].get('baseline_rss_bytes')):>{w}}"
    out.append(row + "   (ru_maxrss of the engine's process)")
    out.append(row0 + "   (RSS after generating keys/values, before the first workload)")
    out.append("")
    for e in present:
        s = docs[e].get("settings", {})
        out.append(f"{e:10} {s.get('version', '?')}; compression {s.get('compression', '?')}; "
                   f"write buffer {s.get('write_buffer_size', '?')}; cache {s.get('cache_size', '?')}; "
                   f"bloom bits {s.get('bloom_bits', '?')}")
    out.extend(extra_tables(args, present, docs))
    if "fillsustained" in args.benchmarks:
        out.append("")
        out.extend(sustained_table(args, present, docs))
    return "\n".join(out)


def extra_tables(args, present, docs):
    """The blocks of the --compare table for the workloads not in the default list:
    skips, allocations per get, readrandom_cache's hit ratios, churn's memory."""
    out = []
    w = 11

    def res(e, name):
        if name not in args.benchmarks:
            return None
        i = args.benchmarks.index(name)
        rs = docs[e].get("results", [])
        return rs[i] if i < len(rs) else None

    def block(title, rows, note=None):
        lw = max([22] + [len(label) + 1 for label, _ in rows])
        hdr = f"{title:{lw}}" + "".join(f"{e:>{w}}" for e in present)
        out.extend(["", hdr, "-" * len(hdr)])
        for label, get in rows:
            row = f"{label:{lw}}"
            for e in present:
                try:
                    cell = get(e)
                except (KeyError, TypeError, IndexError, ZeroDivisionError):
                    cell = None
                row += f"{'-' if cell is None else cell:>{w}}"
            out.append(row)
        if note:
            out.append(note)

    skips = [(name, e, (res(e, name) or {}).get("skipped")) for name in args.benchmarks for e in present
             if (res(e, name) or {}).get("skipped") and name != "fillsustained"]
    if skips:
        out.append("")
        out.extend(f"{name}: skipped for {e}: {why}" + (
            f" (so {e}'s later workloads ran on the DB as it was before {name}: compare them with care)"
            if name.startswith("fill") and args.benchmarks.index(name) < len(args.benchmarks) - 1 else "")
            for name, e, why in skips)
    if "filluniquerandom" in args.benchmarks and args.ttl:
        out.append(f"filluniquerandom --ttl {args.ttl}: " + "; ".join(
            f"{e}: {(res(e, 'filluniquerandom') or {}).get('ttl', {}).get('how')}" for e in present
            if (res(e, "filluniquerandom") or {}).get("ttl")))
    # ---- allocations per get
    al_names = [n for n in ("readrandom", "readwhilewriting") if n in args.benchmarks
                and any((res(e, n) or {}).get("allocs") for e in present)]
    if al_names:
        rows = []
        for n in al_names:
            def al(e, n=n):
                return res(e, n)["allocs"]
            rows.append((f"{n} allocs/op", lambda e, al=al: fmt_num(al(e)["allocs_per_op"], "{:.2f}")))
            if n == "readrandom":
                rows.append(("  live blocks/op", lambda e, al=al: fmt_num(al(e)["live_blocks_per_op"], "{:+.3f}")))
                rows.append(("  traced blocks/op", lambda e, al=al:
                             fmt_num(al(e)["tracemalloc"]["retained_blocks_per_op"], "{:+.3f}")))
                rows.append(("  traced peak KB", lambda e, al=al:
                             fmt_num(al(e)["tracemalloc"]["transient_peak_bytes"] / 1024, "{:.1f}")))
        why = {((res(e, n) or {}).get("allocs") or {}).get("allocs_unavailable") for e in present
               for n in al_names} - {None}
        block("allocations per get", rows,
              f"(untimed passes of {args.alloc_ops} gets after the timed loop: allocs/op = Python allocator "
              "calls (PyMem/PyObject malloc+calloc) by the reading thread, counted by a hook; live blocks/op = "
              "change of sys.getallocatedblocks(), pymalloc blocks left allocated; traced = tracemalloc's "
              "live blocks after/before a second pass, and its peak above the start. C/C++ heap allocations "
              "of the libraries themselves are not seen"
              + ("; readwhilewriting: the reader's count while the writer runs" if "readwhilewriting" in al_names
                 else "") + ")" + (f"\n  allocs/op n/a: {'; '.join(why)}" if why else ""))
    # ---- readrandom_cache
    if "readrandom_cache" in args.benchmarks:
        rows = []
        for j, mib in enumerate(args.cache_sizes):
            def run(e, j=j):
                return res(e, "readrandom_cache")["cache_runs"][j]
            rows.append((f"{mib} MiB ops/sec", lambda e, run=run: fmt_rate(run(e)["ops_per_sec"])))
            rows.append((f"{mib} MiB hit ratio", lambda e, run=run: fmt_num(run(e)["hit_ratio"])))
        block("readrandom_cache", rows,
              "(a warm-up pass of --reads gets, then --reads timed gets of other keys, per cache size; hit "
              "ratio over the timed pass: " + "; ".join(
                  f"{e}: {(res(e, 'readrandom_cache') or {}).get('hit_counters', 'n/a')}" for e in present
                  if (res(e, "readrandom_cache") or {}).get("hit_counters")) + ")")
    # ---- churn
    if "churn" in args.benchmarks:
        cols = []
        for e in present:
            for v, r in (((res(e, "churn") or {}).get("churn") or {}).get("variants") or {}).items():
                cols.append((f"{e}" if v == "default" else f"{e}:{v}", r))
        if cols:
            cw = max(w, max(len(c) for c, _ in cols) + 2)
            hdr = f"{'churn':22}" + "".join(f"{c:>{cw}}" for c, _ in cols)
            out.extend(["", hdr, "-" * len(hdr)])

            def c(r, k):
                return (r.get("churn") or {}).get(k)
            for label, get in (("ops/sec", lambda r: fmt_rate(r.get("ops_per_sec"))),
                               ("put p99 us", lambda r: fmt_num((c(r, "put_latency_us") or {}).get("p99"), "{:.1f}")),
                               ("get p99 us", lambda r: fmt_num((c(r, "get_latency_us") or {}).get("p99"), "{:.1f}")),
                               ("RSS mid MB", lambda r: fmt_mb(c(r, "rss_mid_bytes"))),
                               ("RSS end MB", lambda r: fmt_mb(c(r, "rss_end_bytes"))),
                               ("RSS growth 2nd half", lambda r: fmt_pct(c(r, "rss_growth_second_half_pct"))),
                               ("fragmentation end", lambda r: fmt_num(c(r, "fragmentation_ratio_end"))),
                               ("slab_moves end", lambda r: fmt_num(c(r, "slab_moves_end"), "{}")),
                               ("cache usage end MB", lambda r: fmt_mb(c(r, "cache_usage_end"))),
                               ("cache held end MB", lambda r: fmt_mb(c(r, "cache_held_end"))),
                               ("peak RSS MB", lambda r: fmt_mb(r.get("peak_rss_bytes")))):
                row = f"{label:22}"
                for _, r in cols:
                    row += f"{('ERR' if r.get('error') else get(r)):>{cw}}"
                out.append(row)
            out.append(f"(churn: {args.churn_ops} ops, {CHURN_PUT_PCT}% puts of {CHURN_MIN_VALUE} B..{CHURN_MAX_VALUE // 1024} "
                       f"KiB values (log-uniform), {100 - CHURN_PUT_PCT}% gets, on {churn_keyspace(args)} keys; "
                       f"block cache {churn_cache_size(args) / MiB:g} MiB; each column its own process. RSS mid/end: "
                       "current RSS after 50%/100% of the ops; growth = (end - mid) / mid; fragmentation_ratio "
                       "and slab_moves from lsmkv's stats()['block_cache'] (n/a: not there))")
            notes = {f"{e}:{v}": r.get("variant_note") for e in present for v, r in
                     (((res(e, "churn") or {}).get("churn") or {}).get("variants") or {}).items() if r.get("variant_note")}
            for k, v in notes.items():
                out.append(f"  {k}: {v}")
    return out


def sustained_table(args, present, docs):
    """The fillsustained block of the --compare table: one column per LSM engine that
    ran it, then lsmkv/X ratios."""
    out = []
    i = args.benchmarks.index("fillsustained")

    def res(e):
        rs = docs[e].get("results", [])
        r = rs[i] if i < len(rs) else None
        return r if r and not r.get("error") and not r.get("skipped") and "sustained" in r else None

    ran = [e for e in present if res(e)]
    skipped = {e: (docs[e]["results"][i].get("skipped") or docs[e]["results"][i].get("error") or "?")
               for e in present if e not in ran and i < len(docs[e].get("results", []))}
    out.append(f"fillsustained: {args.sustained_num} puts of random keys (with replacement), "
               f"key {args.key_size} B, value {args.value_size} B, write buffer "
               f"{args.sustained_write_buffer_size} B for every LSM engine; every other setting "
               f"(compaction triggers, file and level sizes, compression) is the engine's default")
    for e, why in skipped.items():
        out.append(f"  {e}: not run ({why})")
    if not ran:
        return out
    w = 11
    peers = [e for e in ran if e != "lsmkv"]
    ratios = "lsmkv" in ran and peers
    hdr = f"{'':22}" + "".join(f"{e:>{w}}" for e in ran)
    if ratios:
        hdr += "  |" + "".join(f"{'lsmkv/' + p:>{max(w, len(p) + 7)}}" for p in peers)
    out.append(hdr)
    out.append("-" * len(hdr))

    def get(e, path):
        x = res(e)
        for k in path:
            x = None if x is None else x.get(k)
        return x

    rows = [("ops/sec", ("ops_per_sec",), fmt_rate),
            ("put p50 us", ("latency_us", "p50"), lambda v: f"{v:.2f}"),
            ("put p99 us", ("latency_us", "p99"), lambda v: f"{v:.1f}"),
            ("put p99.9 us", ("latency_us", "p99.9"), lambda v: f"{v:.1f}"),
            ("put max us", ("latency_us", "max"), lambda v: f"{v:.0f}"),
            ("stall seconds", ("sustained", "stall_seconds"), lambda v: f"{v:.2f}"),
            ("write amp (fill end)", ("sustained", "at_fill_end", "write_amp", "write_amp"), lambda v: f"{v:.3f}"),
            ("  WAL", ("sustained", "at_fill_end", "write_amp", "wal_per_user"), lambda v: f"{v:.3f}"),
            ("  flush", ("sustained", "at_fill_end", "write_amp", "flush_per_user"), lambda v: f"{v:.3f}"),
            ("  compaction", ("sustained", "at_fill_end", "write_amp", "compaction_per_user"),
             lambda v: f"{v:.3f}"),
            ("write amp (settled)", ("sustained", "settled", "write_amp", "write_amp"), lambda v: f"{v:.3f}"),
            ("  compaction", ("sustained", "settled", "write_amp", "compaction_per_user"), lambda v: f"{v:.3f}"),
            ("settle wait s", ("sustained", "settled", "waited_seconds"), lambda v: f"{v:.1f}"),
            ("disk MB", ("disk_bytes",), fmt_mb)]
    for label, path, fmt in rows:
        row = f"{label:22}"
        vals = {}
        for e in ran:
            v = get(e, path)
            vals[e] = v
            row += f"{(fmt(v) if v is not None else 'n/a'):>{w}}"
        if ratios:
            row += "  |"
            mine = vals.get("lsmkv")
            for p in peers:
                other = vals.get(p)
                cell = f"{mine / other:.2f}x" if mine is not None and other else "-"
                if label == "settle wait s":
                    cell = ""
                row += f"{cell:>{max(w, len(p) + 7)}}"
        out.append(row)
    for label, key in (("files/level fill end", "at_fill_end"), ("files/level settled", "settled")):
        out.append(f"{label:22}" + "; ".join(
            f"{e} {','.join(map(str, get(e, ('sustained', key, 'files_per_level')) or [])) or '-'}"
            for e in ran))
    out.append("(lsmkv/X: for ops/sec above 1 means lsmkv is faster; for latency, stall seconds and "
               "write amp below 1 means lsmkv is lower. write amp = (WAL + flush + compaction bytes "
               "written) / user key+value bytes put; 'fill end' is read right after the last put, "
               "'settled' after waiting up to "
               f"{SUSTAINED_SETTLE_SECONDS} s for background flushes and compactions)")
    for e in ran:
        su = res(e)["sustained"]
        st = su["settled"]
        out.append(f"{e:10} stalls: {su.get('stall_detail')}")
        tail = su.get("latency_tail") or []
        out.append(f"{'':10} tail: " + ", ".join(f"{t['ops']} puts >= {t['threshold_us'] / 1000:g} ms "
                                               f"({t['seconds']:.2f} s)" for t in tail)
                   + f"; settle: {'idle' if st.get('idle') else 'STILL BUSY'} after "
                     f"{st.get('waited_seconds', 0):.1f} s")
        if su.get("wal_note"):
            out.append(f"{'':10} WAL bytes: {su['wal_note']}")
        out.append(f"{'':10} settings: {su.get('settings')}")
    if "lsmkv" in ran and "rocksdict" in ran:
        def target(label, path):
            m, r = get("lsmkv", path), get("rocksdict", path)
            if m is None or r is None:
                return f"{label}: n/a"
            return f"{label}: {'met' if m <= r else 'NOT met'} ({m:.3f} vs {r:.3f})"
        out.append("targets (lsmkv <= rocksdict): " + "; ".join([
            target("p99.9 put us", ("latency_us", "p99.9")),
            target("write amp at fill end", ("sustained", "at_fill_end", "write_amp", "write_amp")),
            target("write amp settled", ("sustained", "settled", "write_amp", "write_amp"))]))
    return out


# ---------------------------------------------------------------------------- --plot

def plot_available():
    try:
        importlib.import_module("matplotlib")
        return True
    except ImportError:
        return False


def write_plot(args, docs, out_path):
    """--plot OUT.png: ops/sec per workload row (the compare table's rows) and engine
    as grouped bars on a log axis, then for each write workload whose results carry
    a latency timeline, put latency p99 per 0.5 s window of wall time, one line per
    engine (fillbatch: per batch)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    present = list(docs)
    rows = list(table_rows(args, present, docs))
    timelines, short = [], []
    for i, name in enumerate(args.benchmarks):
        per = {}
        for e in present:
            rs = docs[e].get("results", [])
            r = rs[i] if i < len(rs) else None
            if r and r.get("latency_timeline"):
                per[e] = r["latency_timeline"]
        if per and max(len(t["t_s"]) for t in per.values()) >= 2:
            timelines.append((name, per))
        elif per:
            short.append(name)          # shorter than two windows: nothing to draw over time
    n = 1 + len(timelines)
    fig, axes = plt.subplots(n, 1, figsize=(max(9.0, 0.35 * len(rows) * len(present) + 3), 4.2 * n),
                             squeeze=False)
    ax = axes[0][0]
    width = 0.8 / max(1, len(present))
    for k, e in enumerate(present):
        xs, ys = [], []
        for j, (_, cells) in enumerate(rows):
            r = cells.get(e)
            v = r.get("ops_per_sec") if r and not r.get("error") else None
            if v:
                xs.append(j + (k - (len(present) - 1) / 2) * width)
                ys.append(v)
        ax.bar(xs, ys, width, label=e)
    ax.set_xticks(range(len(rows)))
    ax.set_xticklabels(["rww writer" if label == "  writer" else label.strip() for label, _ in rows],
                       rotation=30, ha="right")
    ax.set_yscale("log")
    ax.set_ylabel("ops/sec (log scale)")
    ax.set_title(f"db_bench: num {args.num}, reads {args.reads}, value {args.value_size} B"
                 + (f", {args.threads} reader threads" if args.threads > 1 else ""))
    ax.grid(axis="y", which="both", alpha=0.3)
    ax.legend()
    for (name, per), row in zip(timelines, axes[1:]):
        ax = row[0]
        window = 0.5
        for e, t in per.items():
            window = t.get("window_s", window)
            ax.plot(t["t_s"], t["p99_us"], marker=".", label=e)
        ax.set_yscale("log")
        ax.set_xlabel("seconds since the workload started")
        ax.set_ylabel(f"p99 {'batch' if name == 'fillbatch' else 'put'} latency us (log)")
        ax.set_title(f"{name}: p99 latency per {window:g} s window")
        ax.grid(which="both", alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(out_path, dpi=100)
    plt.close(fig)
    print(f"plot: {out_path} (ops/sec bars for {len(rows)} rows; latency over time for "
          f"{', '.join(name for name, _ in timelines) or 'no write workload'}"
          + (f"; not drawn over time, shorter than two windows: {', '.join(short)}" if short else "") + ")")


# ---------------------------------------------------------------------------- main

def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description="db_bench-style benchmark for lsmkv (and, with --compare, LevelDB, RocksDB, "
                    "LMDB and SQLite through their Python bindings). See docs/benchmarks.md.")
    p.add_argument("--benchmarks", default=DEFAULT_BENCHMARKS,
                   help=f"comma-separated, run in order on one DB (fill* start a fresh one). "
                        f"Known: {','.join(ALL_BENCHMARKS)}. Default: %(default)s. Not in the default "
                        f"list: fillsustained (LSM engines; see --sustained_*), filluniquerandom (every "
                        f"key once in random order; --ttl), readwhilewriting (--threads readers and one "
                        f"writer), readrandom_cache (per --cache_sizes size; LSM engines) and churn "
                        f"(RSS and block cache under overwrites of mixed-size values; --churn_ops; LSM "
                        f"engines). The module docstring describes each")
    p.add_argument("--num", type=int, default=1000000, help="number of keys (default %(default)s)")
    p.add_argument("--reads", type=int, default=-1,
                   help="ops of readrandom/readmissing/seekrandom, max entries of readseq/readreverse "
                        "(default: --num)")
    p.add_argument("--key_size", type=int, default=16, help="bytes per key (default %(default)s)")
    p.add_argument("--value_size", type=int, default=100, help="bytes per value (default %(default)s)")
    p.add_argument("--compression_ratio", type=float, default=0.5,
                   help="fraction of each 100-byte value piece that is random (default %(default)s)")
    p.add_argument("--cache_size", type=int, default=None,
                   help="block cache bytes (lsmkv block_cache_size, LevelDB lru_cache_size, RocksDB "
                        "block cache, SQLite cache_size); default: each engine's own default")
    p.add_argument("--write_buffer_size", type=int, default=None,
                   help="memtable bytes (lsmkv, LevelDB, RocksDB); default: each engine's own default")
    p.add_argument("--bloom_bits", type=int, default=10,
                   help="bloom filter bits per key for every LSM engine (lsmkv's default is 10; "
                        "LevelDB and RocksDB have none by default); 0 disables (default %(default)s)")
    p.add_argument("--fillsync_num", type=int, default=None, help="ops of fillsync (default: num/100)")
    p.add_argument("--batch_size", type=int, default=100, help="puts per fillbatch batch (default %(default)s)")
    p.add_argument("--sustained_num", type=int, default=3000000,
                   help="fillsustained: random puts (keys drawn with replacement from [0, this)) "
                        "(default %(default)s)")
    p.add_argument("--sustained_write_buffer_size", type=int, default=4 * MiB,
                   help="fillsustained: memtable bytes for every LSM engine during that workload, "
                        "so that flushes and compactions run throughout; every other setting stays "
                        "the engine's default (default %(default)s)")
    p.add_argument("--threads", type=int, default=1,
                   help="reader threads of readrandom and readwhilewriting: the --reads keys are split "
                        "into one slice per thread, ops/sec is all threads' gets over the wall time, "
                        "latency percentiles merge every thread's (default %(default)s; readrandom with 1 "
                        "is the plain single-threaded loop)")
    p.add_argument("--ttl", type=int, default=0, metavar="SECONDS",
                   help="filluniquerandom: put every key with this TTL (lsmkv put(..., ttl=S); rocksdict "
                        "opens a DBWithTTL, AccessType.with_ttl(S); engines without TTL skip it). "
                        "0: no TTL (default %(default)s)")
    p.add_argument("--cache_sizes", default="8,64,512", metavar="MIB,...",
                   help="readrandom_cache: the block cache sizes, in MiB (default %(default)s)")
    p.add_argument("--churn_ops", type=int, default=300000,
                   help="churn: operations (50%% puts of 100 B..16 KiB values, 50%% gets) on max(num/10, "
                        "10000) keys; block cache --cache_size or 64 MiB (default %(default)s)")
    p.add_argument("--alloc_ops", type=int, default=ALLOC_OPS_DEFAULT,
                   help="readrandom/readwhilewriting: gets of the untimed allocation passes that give "
                        "allocs/op, live blocks/op and tracemalloc's counts (0: skip them; "
                        "default %(default)s)")
    p.add_argument("--plot", metavar="OUT.png", default=None,
                   help="write a PNG: ops/sec per workload and engine (grouped bars) and, for the write "
                        "workloads, put latency p99 per 0.5 s window over time; needs matplotlib")
    p.add_argument("--churn_variant", default=None, help=argparse.SUPPRESS)     # one churn variant's process
    p.add_argument("--latency_timeline", action="store_true", help=argparse.SUPPRESS)   # set by --plot
    p.add_argument("--db", default=None,
                   help="DB directory (with --compare: a parent directory, one subdirectory per engine); "
                        "default: a temporary directory removed at the end")
    p.add_argument("--use_existing_db", action="store_true",
                   help="never wipe the DB: fill* write into it, reads read what is there")
    p.add_argument("--seed", type=int, default=301, help="seed of keys and choices (default %(default)s)")
    p.add_argument("--verify", type=int, default=1000,
                   help="after each workload check this many random keys against the expected "
                        "contents, untimed (0: off; default %(default)s)")
    p.add_argument("--json", metavar="OUT", default=None, help="write all results to OUT as JSON")
    p.add_argument("--engine", default="lsmkv", choices=ENGINES,
                   help="engine to run in this process (--compare spawns one process per engine)")
    p.add_argument("--compare", action="store_true",
                   help="run the same workloads through every installed engine, each in its own "
                        "process, and print a side-by-side table")
    p.add_argument("--compare_engines", default=",".join(ENGINES),
                   help="engines for --compare (default %(default)s)")
    p.add_argument("--progress", choices=("auto", "always", "never"), default="auto",
                   help="live progress line on stderr (auto: only if stderr is a terminal)")
    args = p.parse_args(argv)
    args.benchmarks = [b.strip() for b in args.benchmarks.split(",") if b.strip()]
    for b in args.benchmarks:
        if b not in ALL_BENCHMARKS:
            p.error(f"unknown benchmark {b!r}; known: {', '.join(ALL_BENCHMARKS)}")
    if args.num < 1:
        p.error("--num must be >= 1")
    if args.reads < 0:
        args.reads = args.num
    if args.fillsync_num is None:
        args.fillsync_num = max(1, args.num // 100)
    if args.batch_size < 1:
        p.error("--batch_size must be >= 1")
    if args.sustained_num < 1:
        p.error("--sustained_num must be >= 1")
    if args.sustained_write_buffer_size < 1:
        p.error("--sustained_write_buffer_size must be >= 1")
    if not 0 < args.compression_ratio <= 1:
        p.error("--compression_ratio must be in (0, 1]")
    if args.key_size < 1 or args.value_size < 0:
        p.error("bad --key_size/--value_size")
    if args.threads < 1:
        p.error("--threads must be >= 1")
    if args.ttl < 0:
        p.error("--ttl must be >= 0")
    try:
        args.cache_sizes = [int(x) for x in args.cache_sizes.split(",") if x.strip()]
    except ValueError:
        p.error("--cache_sizes must be comma-separated whole MiB, e.g. 8,64,512")
    if not args.cache_sizes or min(args.cache_sizes) < 1:
        p.error("--cache_sizes must list sizes >= 1 MiB")
    if args.churn_ops < CHURN_PARTS:
        p.error(f"--churn_ops must be >= {CHURN_PARTS}")
    if args.alloc_ops < 0:
        p.error("--alloc_ops must be >= 0")
    if args.plot:
        args.latency_timeline = True
    return args


def main(argv=None):
    args = parse_args(argv)
    if args.plot and not plot_available():
        print("db_bench: --plot needs matplotlib, which is not installed here "
              f"({sys.executable}); install it (pip install matplotlib) or drop --plot", file=sys.stderr)
        return 2
    if args.compare:
        return run_compare(args)
    ok, why = engine_available(args.engine)
    if not ok:
        print(f"db_bench: engine {args.engine} is not installed: {why}", file=sys.stderr)
        return 2
    engine = ENGINE_CLASSES[args.engine](args)
    runner = Runner(args, engine)
    rc = runner.run()
    if args.plot:
        write_plot(args, {engine.name: {"results": runner.results}}, args.plot)
    return rc


if __name__ == "__main__":
    sys.exit(main())
