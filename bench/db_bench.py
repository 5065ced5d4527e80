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
"""
import argparse
import array
import gc
import importlib
import json
import os
import random
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
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
                  "fillsustained")
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

def make_value_pool(value_size, compression_ratio):
    """db_bench's RandomGenerator: 100-byte compressible pieces in a >= 1 MiB buffer,
    values are consecutive value_size slices (wrapping to the start). Returns the
    list of distinct values in generation order (the stream repeats with this period)."""
    rnd = random.Random(301)
    buf = bytearray()
    target = max(1 << 20, value_size)
    raw_len = max(1, int(100 * compression_ratio))
    while len(buf) < target:
        raw = bytes(32 + rnd.randrange(95) for _ in range(raw_len))   # ' ' + Uniform(95)
        piece = (raw * (100 // raw_len + 1))[:100]
        buf += piece
    data = bytes(buf)
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

    def reset_model(self, known):
        self.model = array.array("i", [-1]) * self.num if known else None

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
        o = self.mod.Options.build(None, **self.opts)
        return {"version": self.mod.__version__ + self._git_describe(), "compression": o.compression,
                "write_buffer_size": o.write_buffer_size, "cache_size": o.block_cache_size,
                "bloom_bits": o.bloom_bits_per_key, "source": os.path.dirname(self.mod.__file__)}

    def _open_opts(self):
        opts = dict(self.opts)
        if self.sustained_wbs is not None:
            opts["write_buffer_size"] = self.sustained_wbs
        return opts

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
        self.db = self.mod.DB(path, **opts)

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
        if self.args.cache_size is not None or self.args.bloom_bits:
            bbo = r.BlockBasedOptions()
            if self.args.cache_size is not None:
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


def to_latencies(ts, n, starts):
    """Turn the completion timestamps ts[0:n] into per-op latencies, in place."""
    first = {lo: t for lo, t in starts}
    for i in range(n - 1, -1, -1):
        t = first.get(i)
        ts[i] -= t if t is not None else ts[i - 1]
    return ts


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
                   "fillsustained")
SUSTAINED_SETTLE_SECONDS = 30


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
        print(f"engine:       {e.name}  ({settings.get('version')})")
        for k in ("compression", "write_buffer_size", "cache_size", "bloom_bits", "map_size",
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
        print("-" * 100)
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

    def workload(self, name, path, res):
        if name == "fillsustained":
            return self.workload_sustained(path, res)
        a, e, d = self.args, self.engine, self.data
        fresh = name.startswith("fill") and not a.use_existing_db
        if fresh:
            e.close()
            wipe_dir(path)
            os.makedirs(path, exist_ok=True)
            e.open(path)
            d.reset_model(known=True)
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
        if name in ("readrandom", "seekrandom", "readseq", "readreverse"):
            data_bytes = found * bytes_per_op
        elif name == "readmissing":
            data_bytes = 0
        else:
            data_bytes = entries * bytes_per_op
        p = percentiles(to_latencies(lat, done, starts), done)
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
            if found_expected is not None:
                line += "" if found == found_expected else f", EXPECTED {found_expected}"
            line += ")"
        print(line)
        print(f"{'':16}latency us{lat_unit}: p50 {p['p50'] or 0:.2f}  p99 {p['p99'] or 0:.2f}  "
              f"p99.9 {p['p99.9'] or 0:.2f}  max {p['max'] or 0:.2f}   ({entries} ops in {seconds:.2f} s)")
        extra = f"{'':16}peak RSS {res['peak_rss_bytes'] / MiB:.1f} MB, RSS now {res['rss_bytes'] / MiB:.1f} MB"
        if "disk_bytes" in res:
            extra += (f"; on disk after flush+close: {res['disk_bytes'] / MiB:.1f} MB in "
                      f"{res['disk_files']} files ({res['disk_alloc_bytes'] / MiB:.1f} MB allocated)")
        print(extra)
        if summary:
            print(f"{'':16}{e.name} stats: {summary}")
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
        if "found" in res and res.get("found_expected") is not None and res["found"] != res["found_expected"]:
            problems.append(f"{name} found {res['found']} keys, expected {res['found_expected']}")
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
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"compare": True, "argv": sys.argv, "date": time.strftime("%Y-%m-%d %H:%M:%S %z"),
                       "cpus": os.cpu_count(), "status": status, "engines": docs, "table": table},
                      f, indent=1, default=str)
    return 0 if status.get("lsmkv") == "ok" else 1


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
    peers = [e for e in present if e != "lsmkv"]
    has_best = "lsmkv" in present and any(p in present for p in PEER_LSMS)
    hdr = f"{'ops/sec':14}" + "".join(f"{e:>{w}}" for e in present)
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

    for i, name in enumerate(args.benchmarks):
        row = f"{name:14}"
        vals = {}
        for e in present:
            r = res(e, i)
            v = r.get("ops_per_sec") if r and not r.get("error") else None
            vals[e] = v
            cell = fmt_rate(v) if v else ("ERR" if r and r.get("error") else "-")
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
    hdr2 = f"{'p99 latency us':14}" + "".join(f"{e:>{w}}" for e in present)
    out.append(hdr2)
    out.append("-" * len(hdr2))
    for i, name in enumerate(args.benchmarks):
        row = f"{name:14}"
        for e in present:
            r = res(e, i)
            v = (r.get("latency_us") or {}).get("p99") if r and not r.get("error") else None
            row += f"{(f'{v:.1f}' if v is not None else '-'):>{w}}"
        out.append(row)
    # disk
    out.append("")
    hdr3 = f"{'disk MB':14}" + "".join(f"{e:>{w}}" for e in present)
    out.append(hdr3 + "   (after the workload, flushed and closed: sum of file sizes)")
    out.append("-" * len(hdr3))
    for i, name in enumerate(args.benchmarks):
        if name not in WRITE_WORKLOADS:
            continue
        row = f"{name:14}"
        for e in present:
            r = res(e, i)
            row += f"{fmt_mb(r.get('disk_bytes') if r else None):>{w}}"
        out.append(row)
    out.append("")
    row = f"{'peak RSS MB':14}"
    row0 = f"{'baseline MB':14}"
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
    if "fillsustained" in args.benchmarks:
        out.append("")
        out.extend(sustained_table(args, present, docs))
    return "\n".join(out)


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


# ---------------------------------------------------------------------------- main

def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description="db_bench-style benchmark for lsmkv (and, with --compare, LevelDB, RocksDB, "
                    "LMDB and SQLite through their Python bindings). See docs/benchmarks.md.")
    p.add_argument("--benchmarks", default=DEFAULT_BENCHMARKS,
                   help=f"comma-separated, run in order on one DB (fill* start a fresh one). "
                        f"Known: {','.join(ALL_BENCHMARKS)}. Default: %(default)s. fillsustained "
                        f"(not in the default list) runs only for the LSM engines; see --sustained_*")
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
    return args


def main(argv=None):
    args = parse_args(argv)
    if args.compare:
        return run_compare(args)
    ok, why = engine_available(args.engine)
    if not ok:
        print(f"db_bench: engine {args.engine} is not installed: {why}", file=sys.stderr)
        return 2
    engine = ENGINE_CLASSES[args.engine](args)
    return Runner(args, engine).run()


if __name__ == "__main__":
    sys.exit(main())
