"""Phase-shift benchmark for adaptive_memory (issue 4, item 5).

One memory budget, a load that shifts from write-heavy to read-heavy, under two
workloads (--workload):

  hotset (default): a DB of --keys keys (loaded once, in key order, fully compacted,
      untimed; each run starts from a copy), then
      phase 1 "write": --num puts on a hot set of --hot_keys keys spread over the key
                       space (5% of it by default), no reads;
      phase 2 "read":  --reads operations, --read_phase_writes of them puts on the hot
                       set (default 5%), the rest gets of keys drawn from the whole
                       key space.
      A memtable absorbs the overwrites of the hot keys it holds: a 64 MiB one holds
      ~3x the hot set, a 4 MiB one a fifth of it, so large memtables flush and compact
      far fewer bytes in phase 1, while phase 2 reads a data set that fits the cache
      of a small split and not that of a large one. Each fixed split wins one phase
      (docs/tuning.md): the premise of the target.
  uniform: the first version of this benchmark: phase 1 is --num puts of random keys
      (with replacement) from a space of --num keys on an empty DB; phase 2 reads
      and writes that same space. A larger memtable absorbs ~nothing there and its
      skiplist is slower per put; on a quiet machine the small split was near-best
      in both phases, on a loaded one the large split won phase 1 (fewer stalls).

The same load runs, each in its own fresh process and DB, in the same run, under
  fixed-large  write_buffer_size = --large_wb (the default write buffer, 64 MiB):
               the cache gets what two such memtables leave;
  fixed-small  write_buffer_size = budget/64 (the adaptive minimum, 4 MiB at 256):
               nearly the whole budget goes to the cache;
  adaptive     adaptive_memory=True (write_buffer_size --large_wb, as a default DB;
               the controller starts at the minimum, budget/64, all the same).
With --repeat N the configs run interleaved N times; it prints every run (per-phase
seconds, stalls, hit ratio, compaction debt at the shift, the controller's moves),
then the medians, which fixed split won each phase, and adaptive against the better
fixed split (target: adaptive's total <= the better fixed split's).

    python bench/phaseshift.py --repeat 5             # hotset: 2M keys, 3M puts on 100k, 2M ops
    python bench/phaseshift.py --workload uniform --repeat 5
    python bench/phaseshift.py --keys 300000 --hot_keys 15000 --num 500000 --reads 300000 \
        --budget_mb 32 --large_wb 4        # a quick look
"""
import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

if __package__ in (None, ""):
    # Run by its path (python bench/this_file.py): Python put bench/ first on sys.path. Drop
    # it and add the repository root, once, last: the package `bench` loads from there, and
    # lsmkv from PYTHONPATH or the environment if it is there, else from this source tree.
    _here = os.path.dirname(os.path.abspath(__file__))
    if sys.path and os.path.abspath(sys.path[0] or os.curdir) == _here:
        del sys.path[0]
    if os.path.dirname(_here) not in sys.path:
        sys.path.append(os.path.dirname(_here))

MiB = 1 << 20
CONFIGS = ("fixed-large", "fixed-small", "adaptive")


def _import_lsmkv():
    """The installed lsmkv, else the source tree's (built in place): see the path above."""
    import lsmkv
    return lsmkv


def config_options(name, a):
    budget = a.budget_mb * MiB
    base = dict(memory_budget=budget, block_cache_size=budget // 2)
    if name == "fixed-large":
        return dict(base, write_buffer_size=a.large_wb * MiB)
    if name == "fixed-small":
        return dict(base, write_buffer_size=max(MiB, budget // 64))
    if name == "adaptive":
        return dict(base, write_buffer_size=a.large_wb * MiB, adaptive_memory=True,
                    adaptive_interval=a.interval)
    raise SystemExit(f"phaseshift: unknown config {name!r} (one of {', '.join(CONFIGS)})")


def _values(rng, size, n=4096):
    """n values of size bytes, each half compressible (db_bench's: a random half,
    repeated); a put uses values[i % n], so blocks do not compress to nothing."""
    out = []
    for _ in range(n):
        half = rng.randbytes(size // 2 + 1)
        out.append((half * 2)[:size])
    return out


def _key(i):
    return b"%016d" % i


def workload(a):
    """(keys of phase 1, [(key, is_put)] of phase 2, values): the same for every config."""
    rng = random.Random(a.seed)
    values = _values(rng, a.value_size)
    if a.workload == "uniform":
        writes = [_key(rng.randrange(a.num)) for _ in range(a.num)]
        ops = [(_key(rng.randrange(a.num)), rng.random() < a.read_phase_writes) for _ in range(a.reads)]
        return writes, ops, values
    hot = rng.sample(range(a.keys), a.hot_keys)
    writes = [_key(hot[rng.randrange(a.hot_keys)]) for _ in range(a.num)]
    ops = []
    for _ in range(a.reads):
        if rng.random() < a.read_phase_writes:
            ops.append((_key(hot[rng.randrange(a.hot_keys)]), True))
        else:
            ops.append((_key(rng.randrange(a.keys)), False))
    return writes, ops, values


def preload(a, path):
    """hotset: the DB of --keys keys every run starts from (a copy of it): loaded in key
    order with default options, then compacted into one sorted run."""
    lsmkv = _import_lsmkv()
    values = _values(random.Random(a.seed + 1), a.value_size)
    t0 = time.perf_counter()
    with lsmkv.DB(path) as db:
        put = db.put
        for i in range(a.keys):
            put(_key(i), values[i & 4095])
        db.compact_range()
        sst = db.stats()["live_sst_bytes"]
    print(f"  preload: {a.keys} keys, {sst / MiB:.0f} MiB of SSTs, {time.perf_counter() - t0:.1f} s "
          f"(untimed)", file=sys.stderr, flush=True)


def _rss_peak_mb():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return 0.0


def run_one(name, a):
    """Child process: run both phases under one config; print one JSON line."""
    lsmkv = _import_lsmkv()
    opts = config_options(name, a)
    path = tempfile.mkdtemp(prefix=f"phaseshift-{name}-", dir=a.dir)
    writes, ops, values = workload(a)
    timeline = []
    result = {"config": name, "workload": a.workload, "options": dict(opts)}
    try:
        if a.template:
            shutil.rmtree(path)
            shutil.copytree(a.template, path)
        db = lsmkv.DB(path, **opts)

        def snap(phase, t0):
            s = db.stats()
            c = s["block_cache"]
            timeline.append({"phase": phase, "t": round(time.perf_counter() - t0, 2),
                             "write_buffer_size": db.write_buffer_size,
                             "cache_capacity": c["capacity"], "hits": c["hits"], "misses": c["misses"],
                             "pending_compaction_bytes": s["pending_compaction_bytes"]})
            return s

        start = time.perf_counter()
        put = db.put
        s0 = snap("write", start)
        t0 = time.perf_counter()
        next_snap = t0 + 0.5
        for i, k in enumerate(writes):
            put(k, values[i & 4095])
            if not i & 4095 and time.perf_counter() >= next_snap:
                snap("write", start)
                next_snap += 0.5
        t_write = time.perf_counter() - t0
        s1 = snap("read", start)
        get = db.get
        found = 0
        t0 = time.perf_counter()
        next_snap = t0 + 0.5
        for i, (k, is_put) in enumerate(ops):
            if is_put:
                put(k, values[i & 4095])
            elif get(k) is not None:
                found += 1
            if not i & 4095 and time.perf_counter() >= next_snap:
                snap("read", start)
                next_snap += 0.5
        t_read = time.perf_counter() - t0
        s2 = snap("end", start)
        c1, c2 = s1["block_cache"], s2["block_cache"]
        lookups = (c2["hits"] - c1["hits"]) + (c2["misses"] - c1["misses"])
        result.update(
            write_ops_per_sec=len(writes) / t_write, read_ops_per_sec=len(ops) / t_read,
            write_seconds=t_write, read_seconds=t_read, total_seconds=t_write + t_read,
            read_hit_ratio=(c2["hits"] - c1["hits"]) / lookups if lookups else 0.0,
            found=found,
            write_stall_seconds=s1["stall_seconds"] - s0["stall_seconds"],
            read_stall_seconds=s2["stall_seconds"] - s1["stall_seconds"],
            write_flushes=s1["flushes"] - s0["flushes"],
            write_flush_mb=(s1["flush_bytes"] - s0["flush_bytes"]) / MiB,
            write_compaction_mb=(s1["compaction_bytes_written"] - s0["compaction_bytes_written"]) / MiB,
            read_compaction_mb=(s2["compaction_bytes_written"] - s1["compaction_bytes_written"]) / MiB,
            pending_compaction_mb_at_shift=s1["pending_compaction_bytes"] / MiB,
            write_amplification=s2["write_amplification"],
            final_write_buffer_size=db.write_buffer_size,
            final_cache_capacity=c2["capacity"],
            adaptive=s2["adaptive_memory"], memory_budget=s2["memory_budget"],
            peak_rss_mb=_rss_peak_mb(), timeline=timeline)
        db.close()
    finally:
        shutil.rmtree(path, ignore_errors=True)
    print(json.dumps(result))


def run_child(name, a):
    cmd = [sys.executable, os.path.abspath(__file__), "--run", name] + a.passthrough
    if a.template:
        cmd += ["--template", a.template]
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode:
        raise SystemExit(f"phaseshift: the {name} run failed:\n{out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def fmt_k(x):
    return f"{x / 1000:.1f}k"


def run_line(r):
    ad = r["adaptive"] or {}
    return (f"write {r['write_seconds']:6.2f} s, read {r['read_seconds']:6.2f} s, total "
            f"{r['total_seconds']:6.2f} s; stalls {r['write_stall_seconds']:.2f}/{r['read_stall_seconds']:.2f} s, "
            f"flushed {r['write_flush_mb']:.0f} MiB, compacted {r['write_compaction_mb']:.0f}+"
            f"{r['read_compaction_mb']:.0f} MiB, debt at shift {r['pending_compaction_mb_at_shift']:.0f} MiB, "
            f"hit {r['read_hit_ratio']:.3f}"
            + (f", moves +{ad.get('grows', 0)}/-{ad.get('shrinks', 0)}" if ad else ""))


ROWS = [
    ("write phase s", "write_seconds", "{:.2f}"),
    ("read phase s", "read_seconds", "{:.2f}"),
    ("total s", "total_seconds", "{:.2f}"),
    ("read phase hit ratio", "read_hit_ratio", "{:.3f}"),
    ("write phase stall s", "write_stall_seconds", "{:.2f}"),
    ("write phase flushed MiB", "write_flush_mb", "{:.0f}"),
    ("write phase compacted MiB", "write_compaction_mb", "{:.0f}"),
    ("read phase compacted MiB", "read_compaction_mb", "{:.0f}"),
    ("debt at the shift MiB", "pending_compaction_mb_at_shift", "{:.0f}"),
    ("peak RSS MB", "peak_rss_mb", "{:.0f}"),
]


def report(runs, names, a):
    if a.workload == "hotset":
        print(f"phaseshift (hotset): a DB of {a.keys} keys; {a.num} puts on {a.hot_keys} hot keys, then "
              f"{a.reads} ops ({100 * a.read_phase_writes:.0f}% puts on the hot keys, the rest gets of any key); "
              f"key 16 B, value {a.value_size} B; memory_budget {a.budget_mb} MiB")
    else:
        print(f"phaseshift (uniform): {a.num} random puts, then {a.reads} ops ({100 * a.read_phase_writes:.0f}% "
              f"puts, the rest gets) on the same {a.num} keys; key 16 B, value {a.value_size} B; "
              f"memory_budget {a.budget_mb} MiB")
    by = {n: [r for r in runs if r["config"] == n] for n in names}
    reps = max(len(v) for v in by.values())
    w = 27
    print(f"total seconds per run (interleaved)")
    print(f"{'run':{w}}" + "".join(f"{n:>13}" for n in names))
    for i in range(reps):
        print(f"{i + 1:<{w}}" + "".join(f"{by[n][i]['total_seconds']:>13.2f}" if i < len(by[n]) else f"{'':>13}"
                                        for n in names))
    print(f"medians of {reps} runs")
    print(f"{'':{w}}" + "".join(f"{n:>13}" for n in names))
    print("-" * (w + 13 * len(names)))
    for label, key, f in ROWS:
        print(f"{label:{w}}" + "".join(f"{f.format(statistics.median(r[key] for r in by[n])):>13}"
                                        for n in names))
    fl, fs, ad = by.get("fixed-large"), by.get("fixed-small"), by.get("adaptive")
    if fl and fs:
        for phase in ("write", "read"):
            k = f"{phase}_seconds"
            wins = sum(1 for x, y in zip(fl, fs) if x[k] < y[k])
            ml, ms = statistics.median(r[k] for r in fl), statistics.median(r[k] for r in fs)
            print(f"{phase} phase: fixed-large faster in {wins} of {min(len(fl), len(fs))} runs "
                  f"(median {ml:.2f} vs {ms:.2f} s): {'fixed-large' if ml < ms else 'fixed-small'} wins it")
    if ad and (fl or fs):
        fixed = [x for x in (fl, fs) if x]
        med = {n: statistics.median(r["total_seconds"] for r in by[n]) for n in names}
        best_name = min((n for n in ("fixed-large", "fixed-small") if by.get(n)), key=lambda n: med[n])
        per_run = [min(x[i]["total_seconds"] for x in fixed) / ad[i]["total_seconds"]
                   for i in range(min(len(ad), *(len(x) for x in fixed)))]
        met = sum(1 for x in per_run if x >= 1.0)
        print(f"adaptive vs the better fixed split ({best_name}, by median total): "
              f"{med[best_name] / med['adaptive']:.2f}x in the median "
              f"({'met' if med['adaptive'] <= med[best_name] else 'NOT met'}); per run, vs the faster fixed split "
              f"of that run: {', '.join(f'{x:.2f}x' for x in per_run)} (met in {met} of {len(per_run)})")
        last = ad[-1]["adaptive"] or {}
        print(f"adaptive moves in its last run: {last.get('grows', 0)} grows, {last.get('shrinks', 0)} shrinks, "
              f"{last.get('early_switches', 0)} early memtable switches")
        for h in last.get("history", [])[-12:]:
            print(f"  sample {h['sample']:4d}: {h['from'] / MiB:6.1f} -> {h['to'] / MiB:6.1f} MiB  {h['reason']}")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--workload", default="hotset", choices=("hotset", "uniform"))
    p.add_argument("--num", type=int, default=3_000_000,
                   help="puts in the write phase (uniform: also the key space)")
    p.add_argument("--keys", type=int, default=2_000_000, help="hotset: keys in the DB (preloaded)")
    p.add_argument("--hot_keys", type=int, default=100_000, help="hotset: keys the puts go to")
    p.add_argument("--reads", type=int, default=2_000_000, help="operations in the read phase")
    p.add_argument("--read_phase_writes", type=float, default=0.05, help="fraction of puts in the read phase")
    p.add_argument("--value_size", type=int, default=100)
    p.add_argument("--budget_mb", type=int, default=256, help="memory_budget in MiB")
    p.add_argument("--large_wb", type=int, default=64, help="write buffer MiB of fixed-large and adaptive's option")
    p.add_argument("--interval", type=float, default=0.5, help="adaptive_interval seconds")
    p.add_argument("--configs", default=",".join(CONFIGS))
    p.add_argument("--repeat", type=int, default=1, help="runs of each config (interleaved)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--dir", default=None, help="parent directory for the DBs (default: the temp dir)")
    p.add_argument("--json", default=None, help="write every run (with timelines) to this file")
    p.add_argument("--run", default=None, help=argparse.SUPPRESS)
    p.add_argument("--template", default=None, help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.num <= 0 or a.reads <= 0 or a.keys <= 0 or a.repeat <= 0:
        p.error("--num, --reads, --keys and --repeat must be > 0")
    if not 0 < a.hot_keys <= a.keys:
        p.error(f"--hot_keys must be in [1, --keys={a.keys}], got {a.hot_keys}")
    if not 0 <= a.read_phase_writes <= 1:
        p.error("--read_phase_writes must be in [0, 1]")
    if a.run:
        run_one(a.run, a)
        return 0
    # the child gets the workload options, not the parent's own
    raw = argv if argv is not None else sys.argv[1:]
    own = ("--json", "--configs", "--repeat", "--template")
    a.passthrough = []
    skip = False
    for x in raw:
        if skip:
            skip = False
            continue
        if x in own:
            skip = True
            continue
        if x.split("=")[0] in own:
            continue
        a.passthrough.append(x)
    names = [n.strip() for n in a.configs.split(",") if n.strip()]
    for n in names:
        config_options(n, a)
    tmp = tempfile.mkdtemp(prefix="phaseshift-template-", dir=a.dir)
    a.template = None
    try:
        if a.workload == "hotset":
            a.template = os.path.join(tmp, "db")
            preload(a, a.template)
        runs = []
        for rep in range(a.repeat):
            for n in names:
                r = run_child(n, a)
                r["run"] = rep + 1
                runs.append(r)
                print(f"  run {rep + 1} {n:12s}: {run_line(r)}", file=sys.stderr, flush=True)
                if a.json:         # after every run: a long benchmark leaves what it measured
                    with open(a.json, "w") as f:
                        json.dump(runs, f, indent=1)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    report(runs, names, a)
    return 0


if __name__ == "__main__":
    sys.exit(main())
