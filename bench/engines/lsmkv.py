"""db_bench's adapter for lsmkv.

Part of bench/db_bench.py (see its docstring for the method).
"""

import functools
import json
import os
import subprocess
from itertools import islice

from .base import poll_idle, Engine, import_lsmkv, PutGetBatchOps


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
        return {k: bc[k] for k in ("kind", "capacity", "usage", "held", "fragmentation_ratio", "slab_moves",
                                   "index_hits", "index_misses", "filter_hits", "filter_misses",
                                   "index_filter_cached", "index_filter_resident")
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

    multi_get_note = "db.multi_get(keys): one compiled call per batch"

    def op_multi_get(self):
        return self.db.multi_get

    def op_seek(self):
        items = self.db.items

        def seek(k):
            return next(iter(items(start=k)), None)
        return seek

    def op_seek_reuse(self, n):
        it = self.db.iterator()
        seek = it.seek

        def seek_read(k):
            seek(k)
            out = list(islice(it, n))    # `for k, v in it` after a seek, n entries
            return out[0] if out else None
        return seek_read, it.close

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
        secs, ok = poll_idle(idle, timeout)
        return secs, ok, ("stats(): no immutable memtable and every level score < 1, "
                          "twice 0.1 s apart")
