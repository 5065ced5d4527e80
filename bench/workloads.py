"""Runner: runs the workloads of --benchmarks on one engine in this process, in order
on one DB, and records and prints each one's results (the thread, TTL, cache, churn,
sustained and allocation workloads are in the mixins it inherits).

Part of bench/db_bench.py (see its docstring for the method).
"""

import array
import contextlib
import json
import os
import random
import shutil
import sys
import tempfile
import time
import traceback

from .allocs import AllocPasses
from .common import MiB, SEEK_READS, SEEK_WORKLOADS, WRITE_WORKLOADS
from .data import Data
from .files import wipe_dir
from .loops import (
    chunk_delete, chunk_get, chunk_multi_get, chunk_scan, chunk_seek, chunk_write, Progress, timed_drive,
    timer_floor,
)
from .memory import MemoryWorkloads
from .stats import (
    current_rss_bytes, dir_bytes, latency_timeline, peak_rss_bytes, percentiles, to_latencies,
)
from .sustained import SustainedWorkload
from .threaded import ThreadedWorkloads


class Runner(SustainedWorkload, ThreadedWorkloads, MemoryWorkloads, AllocPasses):
    """The workloads of args.benchmarks through one engine, in order on one DB."""

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
        elif name in ("readrandom", "multireadrandom") + SEEK_WORKLOADS:
            idx = d.random_indices(rng, n)      # multireadrandom: readrandom's draw, in batches
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
        reads = name.startswith("read") or name in ("multireadrandom",) + SEEK_WORKLOADS
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
            elif name == "multireadrandom":
                B = a.multiget_batch
                nb = (n + B - 1) // B
                lat = array.array("q", bytes(8 * nb))
                chunk = chunk_multi_get(e.op_multi_get(), [ks[i * B:(i + 1) * B] for i in range(nb)], lat)
            elif name == "seekrandom_reuse":
                op, cleanup = e.op_seek_reuse(SEEK_READS)
                chunk = chunk_seek(op, ks, lat)
                op = None
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
        if name == "multireadrandom":
            entries = done * a.multiget_batch
        if name in ("fillbatch", "multireadrandom"):
            entries = min(entries, n)
        if after is not None:
            what, idx = after
            (d.apply_puts if what == "put" else d.apply_deletes)(idx)
        if ttl:
            d.expires_at = fill_started + ttl
            res["ttl"] = {"seconds": ttl, "how": e.ttl_note}
        if name in ("readrandom", "readseq", "readreverse", "multireadrandom") + SEEK_WORKLOADS:
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
                    "latency_unit": f"per batch of {a.batch_size}" if name == "fillbatch" else
                    f"per batch of {a.multiget_batch}" if name == "multireadrandom" else "per op"})
        if reads:
            res["found"] = found
            res["found_expected"] = found_expected
        if name == "multireadrandom":
            res["how"] = e.multi_get_note
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
        lat_unit = " per batch" if name in ("fillbatch", "multireadrandom") else ""
        line = (f"{name:14}: {res['micros_per_op'] or 0:10.3f} micros/op {res['ops_per_sec'] or 0:12,.0f} ops/sec;"
                f" {res['mb_per_sec'] or 0:7.1f} MB/s")
        if "found" in res:
            line += f" ({found} of {entries if name == 'multireadrandom' else done} found"
            found_expected = res.get("found_expected")      # None if --ttl keys expired meanwhile
            if found_expected is not None:
                line += "" if found == found_expected else f", EXPECTED {found_expected}"
            line += ")"
        print(line)
        if name == "multireadrandom":
            print(f"{'':16}how: {e.multi_get_note}; ops/sec counts keys")
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
