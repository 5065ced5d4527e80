"""db_bench's adapter for plyvel (LevelDB).

Part of bench/db_bench.py (see its docstring for the method).
"""

import os
import re
from itertools import islice

from ..common import MiB
from .base import poll_idle, Engine, PutGetBatchOps


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

    def op_seek_reuse(self, n):
        it = self.db.iterator()
        seek = it.seek

        def seek_read(k):
            seek(k)
            out = list(islice(it, n))    # plyvel's Iterator.seek, then next(it)
            return out[0] if out else None
        return seek_read, it.close

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
        secs, ok = poll_idle(idle, timeout, interval=0.5, confirm=1)
        return secs, ok, ("LOG: every started flush and compaction finished and nothing new "
                          "logged for 0.5 s (LevelDB has no 'compaction pending' property)")
