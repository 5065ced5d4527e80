"""Runner's memory workloads (a mixin of bench.workloads.Runner): readrandom_cache (hit
ratio per cache size) and churn (RSS and block cache under overwrites of mixed-size
values, each variant in its own process).

Part of bench/db_bench.py (see its docstring for the method).
"""

import array
import gc
import json
import math
import os
import random
import shutil
import subprocess
import sys
import tempfile

from .common import (
    churn_cache_size, churn_keyspace, CHURN_MAX_VALUE, CHURN_MIN_VALUE, CHURN_PARTS, CHURN_PUT_PCT,
    CHURN_VALUES, MiB, perf_counter, SCRIPT,
)
from .data import random_generator_buffer
from .files import wipe_dir
from .loops import OffsetProgress, chunk_churn, chunk_get, drive, Progress, timed_drive
from .report import fmt_mb, fmt_num, fmt_pct, fmt_rate
from .stats import alloc_loop, current_rss_bytes, peak_rss_bytes, percentiles, to_latencies


def churn_child_argv(args, engine, variant, cache_size, json_path, db_path):
    """The process that runs one churn variant (Runner.churn_run)."""
    argv = [sys.executable, SCRIPT, "--engine", engine, "--json", json_path,
            "--benchmarks", "churn", "--churn_variant", variant, "--churn_ops", str(args.churn_ops),
            "--num", str(args.num), "--key_size", str(args.key_size), "--value_size", str(args.value_size),
            "--compression_ratio", str(args.compression_ratio), "--seed", str(args.seed),
            "--verify", str(args.verify), "--bloom_bits", str(args.bloom_bits), "--progress", args.progress,
            "--cache_size", str(cache_size), "--db", db_path]
    if args.write_buffer_size is not None:
        argv += ["--write_buffer_size", str(args.write_buffer_size)]
    return argv


class MemoryWorkloads:
    """readrandom_cache and churn (methods of Runner)."""

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
                             OffsetProgress(progress, lo), part_starts)
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
