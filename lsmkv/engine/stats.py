"""The engine's counters: named attributes, reported by DB.stats().

Thread safety: every counter is guarded by the engine mutex. Code that holds it
changes them directly (`stats.flushes += 1`) or with add_locked(); a thread that
does not hold it uses add(), which takes it (a `+=` from two threads at once
loses one).

Invariants:
  1. as_dict() returns exactly the keys of FIELDS, in that order, with
     stall_causes and compactions_by_reason copied (what DB.stats() reports).
  2. Counters only grow, except flush_max_seconds (a maximum) and
     wal_recovery_gap (set once, at open).
"""

FIELDS = ("flushes", "flush_bytes", "flush_seconds", "flush_max_seconds",
          "compactions", "compactions_without_dict", "max_compactions_running",
          "compaction_bytes_read", "compaction_bytes_written", "stall_seconds", "stall_count",
          "slowdown_count", "stop_count", "memtable_stall_seconds", "stall_causes",
          "compactions_by_reason", "files_deleted", "bytes_reclaimed",
          "wal_recovery_dropped_bytes", "wal_recovery_dropped_logs", "wal_recovery_gap",
          "recovered_records", "dropped_hidden", "dropped_deletes", "ttl_dropped", "merges_folded",
          "logs_deleted", "file_delete_errors", "heap_trims", "heap_trim_seconds",
          "flushed_entries", "flush_output_entries", "range_dropped", "range_tombstones_dropped",
          "range_files_dropped", "family_memtable_switches")

_FLOATS = {"flush_seconds", "flush_max_seconds", "stall_seconds", "memtable_stall_seconds",
           "heap_trim_seconds"}


class Stats:
    """The counters of DB.stats() (see docs/architecture.md for each)."""

    def __init__(self, mutex):
        self.mutex = mutex
        # -- guarded by mutex
        for name in FIELDS:
            setattr(self, name, 0.0 if name in _FLOATS else 0)
        self.wal_recovery_gap = None
        self.stall_causes = {"memtables": 0, "level0_slowdown": 0, "level0_stop": 0,
                             "memory_budget": 0}
        self.compactions_by_reason = {}

    def add_locked(self, **deltas):
        """Add to counters (mutex held)."""
        for k, v in deltas.items():
            setattr(self, k, getattr(self, k) + v)

    def add(self, **deltas):
        """Add to counters from a thread that does not hold the mutex."""
        with self.mutex:
            self.add_locked(**deltas)

    def as_dict(self):
        d = {name: getattr(self, name) for name in FIELDS}
        d["stall_causes"] = dict(self.stall_causes)
        d["compactions_by_reason"] = dict(self.compactions_by_reason)
        return d


def _numa_stats(engine):
    """The topology, the CPU set asked for, and each background thread's and
    worker's affinity read back from the kernel."""
    from lsmkv.engine import numa
    th = engine.threads
    applied = {name: numa.thread_affinity(tid) for name, tid in list(th.tids.items())}
    for i, w in enumerate(engine.compactions.workers()):
        if w.pid is not None:
            applied[f"lsmkv-worker-{i}"] = numa.thread_affinity(w.pid)
    return {"nodes": numa.topology(),
            "background_cpus": sorted(th.cpus) if th.cpus is not None else None,
            "numa_node": engine.options.numa_node,
            "applied": applied}


def report(engine):
    """DB.stats(): counters and sizes (docs/architecture.md lists each field)."""
    from lsmkv.engine.compaction import level_max_bytes, level_scores
    e = engine
    opts = e.options
    sv = e.sv
    s = {
        "puts": e.n_puts, "deletes": e.n_deletes, "gets": e.n_gets,
        "get_hits": e.n_get_hits, "view_pins": e.n_view_pins,
        "writes": e.n_writes, "batches": e.n_batches,
        "syncs": e.n_syncs, "wal_bytes": e.n_wal_bytes, "user_bytes": e.n_user_bytes,
        "bloom_checks": e.n_bloom_checks, "bloom_useful": e.n_bloom_useful,
        "last_sequence": e.last_seq,
        "memtable_bytes": sv.mem.memory_usage,
        "memtable_entries": len(sv.mem),
        "immutable_memtables": len(sv.imms),
        "immutable_memtable_bytes": sum(m.memory_usage for m in sv.imms),
        "snapshots": len(e.snapshots),
        "pinned_versions": len(e.files.pins),
        "background_error": None if e.bg_error is None else str(e.bg_error),
    }
    s.update(e.stats.as_dict())
    scores = level_scores(sv.version, opts)
    levels = []
    live_bytes = 0
    pending = 0
    for i, files in enumerate(sv.version.levels):
        b = sum(f.file_size for f in files)
        live_bytes += b
        levels.append({"level": i, "files": len(files), "bytes": b, "score": round(scores[i], 3)})
        if 0 < i < len(sv.version.levels) - 1:
            pending += max(0, b - level_max_bytes(opts, i))
    if scores[0] >= 1:
        pending += levels[0]["bytes"]
    s["levels"] = levels
    s["live_sst_bytes"] = live_bytes
    s["pending_compaction_bytes"] = pending
    s["read_charge"] = e.read_charge.units
    written = e.n_wal_bytes + s["flush_bytes"] + s["compaction_bytes_written"]
    s["write_amplification"] = round(written / e.n_user_bytes, 3) if e.n_user_bytes else 0.0
    # live data estimate: the deepest non-empty level (where most of the data
    # of a leveled tree lives once compacted), as RocksDB estimates it
    deepest = next((lv["bytes"] for lv in reversed(levels) if lv["bytes"]), 0)
    s["space_amplification"] = round(live_bytes / deepest, 3) if deepest else 0.0
    s["total_sst_bytes"] = e.tables.total_file_bytes()
    cache = e.tables.cache
    s["block_cache"] = (e.tables.shared.stats() if e.tables.shared is not None and cache is not None
                        else cache.stats() if cache is not None else None)
    s["compaction_worker"] = e.compactions.stats()
    s["compactions_running"] = len(e.compactions.running)
    s["background_jobs"] = {"flush": 1, "compaction": e.threads.n_compactions}
    s["background_pool"] = e.threads.pool.stats() if e.threads.pool is not None else None
    s["background_nice"] = e.threads.nice
    s["memory_budget"] = (dict(e.writes.budget, budget=opts.memory_budget,
                               memtable_charge=e.writes.memtable_charge())
                          if opts.memory_budget else None)
    s["adaptive_memory"] = e.adaptive.stats() if e.adaptive is not None else None
    wbm = opts.write_buffer_manager
    s["write_buffer_manager"] = wbm.stats() if wbm is not None else None
    s["numa"] = _numa_stats(e)
    s["mode"] = e.follower.mode if e.follower is not None else "primary"
    s["follower"] = e.follower.report() if e.follower is not None else None
    return s
