"""Runner's fillsustained workload (a mixin of bench.workloads.Runner): random puts
with flushes and compactions throughout, then the settle time.

Part of bench/db_bench.py (see its docstring for the method).
"""

import array
import os
import random

from .common import MiB, SUSTAINED_SETTLE_SECONDS
from .files import wipe_dir
from .loops import chunk_write, Progress, timed_drive
from .report import fmt_mb
from .stats import (
    current_rss_bytes, dir_bytes, latency_tail, latency_timeline, peak_rss_bytes, percentiles,
    to_latencies, varint_len,
)


class SustainedWorkload:
    """fillsustained (methods of Runner)."""

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
