"""db_bench's adapter for rocksdict (RocksDB).

Part of bench/db_bench.py (see its docstring for the method).
"""

import os
import re

from .base import poll_idle, Engine


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
        secs, ok = poll_idle(idle, timeout)
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

    multi_get_note = "db.get(list_of_keys): RocksDB's MultiGet"

    def op_multi_get(self):
        return self.db.get          # a list argument is one MultiGet, values in order

    def op_seek(self):
        new_iter = self.db.iter

        def seek(k):
            it = new_iter()
            it.seek(k)
            if it.valid():
                return (it.key(), it.value())
            return None
        return seek

    def op_seek_reuse(self, n):
        it = self.db.iter()
        seek, valid, key, value, nxt = it.seek, it.valid, it.key, it.value, it.next
        rng = range(n)

        def seek_read(k):
            seek(k)
            out = []
            for _ in rng:
                if not valid():
                    break
                out.append((key(), value()))
                nxt()
            return out[0] if out else None
        return seek_read, None

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
