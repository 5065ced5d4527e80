"""Phase-shift benchmark for adaptive_memory (issue 4, item 5).

One memory budget, a load that shifts from write-heavy to read-heavy:
  phase 1 "write": --num puts of random keys (with replacement), no reads;
  phase 2 "read":  --reads operations on the same key space, --read_phase_writes of
                   them puts (default 5%), the rest gets.
The same load runs, each in its own fresh process and DB, in the same run, under
  fixed-large  write_buffer_size = --large_wb (the default write buffer, 64 MiB):
               the cache gets what two such memtables leave;
  fixed-small  write_buffer_size = --small_wb (the adaptive minimum, budget/64):
               nearly the whole budget goes to the cache;
  adaptive     adaptive_memory=True, starting at --large_wb like a default DB.
It prints ops/sec per phase, total seconds, the phase-2 hit ratio, stalls, and the
controller's moves, and the ratio of adaptive to the better fixed split (target >= 1).

    python bench/phaseshift.py                      # defaults: 3M puts, 2M ops, 256 MiB
    python bench/phaseshift.py --num 300000 --reads 200000 --budget_mb 32   # quick look
"""
import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time

MiB = 1 << 20
HERE = os.path.dirname(os.path.abspath(__file__))


def _import_lsmkv():
    """The installed lsmkv, else the source tree's (built in place)."""
    try:
        import lsmkv
    except ImportError:
        sys.path.insert(0, os.path.dirname(HERE))
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
    raise SystemExit(f"phaseshift: unknown config {name!r} (fixed-large, fixed-small, adaptive)")


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
    rng = random.Random(a.seed)
    space = a.num
    keys = [b"%016d" % rng.randrange(space) for _ in range(a.num)]
    half = bytes(rng.getrandbits(8) for _ in range(a.value_size // 2))
    value = (half * 2 + b"x")[:a.value_size]
    timeline = []
    result = {"config": name, "options": {k: v for k, v in opts.items()}}
    try:
        db = lsmkv.DB(path, **opts)

        def snap(phase, t0):
            s = db.stats()
            c = s["block_cache"]
            timeline.append({"phase": phase, "t": round(time.perf_counter() - t0, 2),
                             "write_buffer_size": db.write_buffer_size,
                             "cache_capacity": c["capacity"], "hits": c["hits"], "misses": c["misses"]})
            return s

        start = time.perf_counter()
        put = db.put
        s0 = snap("write", start)
        t0 = time.perf_counter()
        next_snap = t0 + 0.5
        for i, k in enumerate(keys):
            put(k, value)
            if not i & 4095 and time.perf_counter() >= next_snap:
                snap("write", start)
                next_snap += 0.5
        t_write = time.perf_counter() - t0
        s1 = snap("read", start)
        ops = [(b"%016d" % rng.randrange(space), rng.random() < a.read_phase_writes)
               for _ in range(a.reads)]
        get = db.get
        found = 0
        t0 = time.perf_counter()
        next_snap = t0 + 0.5
        for i, (k, is_put) in enumerate(ops):
            if is_put:
                put(k, value)
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
            write_ops_per_sec=a.num / t_write, read_ops_per_sec=a.reads / t_read,
            write_seconds=t_write, read_seconds=t_read, total_seconds=t_write + t_read,
            read_hit_ratio=(c2["hits"] - c1["hits"]) / lookups if lookups else 0.0,
            found=found,
            write_stall_seconds=s1["stall_seconds"] - s0["stall_seconds"],
            read_stall_seconds=s2["stall_seconds"] - s1["stall_seconds"],
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
    out = subprocess.run(cmd, check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def fmt_k(x):
    return f"{x / 1000:.1f}k"


def report(results, a):
    names = [r["config"] for r in results]
    rows = [
        ("write phase ops/sec", lambda r: fmt_k(r["write_ops_per_sec"])),
        ("read phase ops/sec", lambda r: fmt_k(r["read_ops_per_sec"])),
        ("total seconds", lambda r: f"{r['total_seconds']:.2f}"),
        ("read phase hit ratio", lambda r: f"{r['read_hit_ratio']:.3f}"),
        ("write phase stall s", lambda r: f"{r['write_stall_seconds']:.2f}"),
        ("write amp", lambda r: f"{r['write_amplification']:.3f}"),
        ("final write buffer MiB", lambda r: f"{r['final_write_buffer_size'] / MiB:.1f}"),
        ("final cache MiB", lambda r: f"{r['final_cache_capacity'] / MiB:.1f}"),
        ("peak RSS MB", lambda r: f"{r['peak_rss_mb']:.0f}"),
    ]
    print(f"phaseshift: {a.num} random puts, then {a.reads} ops ({100 * a.read_phase_writes:.0f}% puts, "
          f"the rest gets) on the same {a.num} keys; key 16 B, value {a.value_size} B; "
          f"memory_budget {a.budget_mb} MiB")
    w = 24
    print(f"{'':{w}}" + "".join(f"{n:>13}" for n in names))
    print("-" * (w + 13 * len(names)))
    for label, f in rows:
        print(f"{label:{w}}" + "".join(f"{f(r):>13}" for r in results))
    by = {r["config"]: r for r in results}
    ad = by.get("adaptive")
    fixed = [r for r in results if r["config"] != "adaptive"]
    if ad and fixed:
        best_w = max(r["write_ops_per_sec"] for r in fixed)
        best_r = max(r["read_ops_per_sec"] for r in fixed)
        best_t = min(r["total_seconds"] for r in fixed)
        print(f"adaptive / best fixed: write phase {ad['write_ops_per_sec'] / best_w:.2f}x, "
              f"read phase {ad['read_ops_per_sec'] / best_r:.2f}x, "
              f"total time {best_t / ad['total_seconds']:.2f}x (>= 1.00 is the target: "
              f"{'met' if ad['total_seconds'] <= best_t else 'NOT met'})")
        st = ad["adaptive"] or {}
        print(f"adaptive moves: {st.get('grows', 0)} grows, {st.get('shrinks', 0)} shrinks, "
              f"{st.get('early_switches', 0)} early memtable switches; last: {st.get('last_reason')}")
        for h in st.get("history", [])[-12:]:
            print(f"  sample {h['sample']:4d}: {h['from'] / MiB:6.1f} -> {h['to'] / MiB:6.1f} MiB  {h['reason']}")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--num", type=int, default=3_000_000, help="puts in the write phase (and key space)")
    p.add_argument("--reads", type=int, default=2_000_000, help="operations in the read phase")
    p.add_argument("--read_phase_writes", type=float, default=0.05, help="fraction of puts in the read phase")
    p.add_argument("--value_size", type=int, default=100)
    p.add_argument("--budget_mb", type=int, default=256, help="memory_budget in MiB")
    p.add_argument("--large_wb", type=int, default=64, help="write buffer MiB of fixed-large and adaptive's start")
    p.add_argument("--interval", type=float, default=0.5, help="adaptive_interval seconds")
    p.add_argument("--configs", default="fixed-large,fixed-small,adaptive")
    p.add_argument("--repeat", type=int, default=1, help="runs of each config (interleaved); the best total is kept")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--dir", default=None, help="parent directory for the DBs (default: the temp dir)")
    p.add_argument("--json", default=None, help="write the results (with timelines) to this file")
    p.add_argument("--run", default=None, help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.num <= 0 or a.reads <= 0:
        p.error("--num and --reads must be > 0")
    if not 0 <= a.read_phase_writes <= 1:
        p.error("--read_phase_writes must be in [0, 1]")
    if a.run:
        run_one(a.run, a)
        return 0
    # the child gets the workload options, not the parent's own
    raw = argv if argv is not None else sys.argv[1:]
    a.passthrough = []
    skip = False
    for x in raw:
        if skip:
            skip = False
            continue
        if x in ("--json", "--configs", "--repeat"):
            skip = True
            continue
        if x.split("=")[0] in ("--json", "--configs", "--repeat"):
            continue
        a.passthrough.append(x)
    names = [n.strip() for n in a.configs.split(",") if n.strip()]
    for n in names:
        config_options(n, a)
    best = {}
    for _ in range(a.repeat):
        for n in names:
            r = run_child(n, a)
            print(f"  {n}: write {fmt_k(r['write_ops_per_sec'])}/s, read {fmt_k(r['read_ops_per_sec'])}/s, "
                  f"total {r['total_seconds']:.2f} s", file=sys.stderr)
            if n not in best or r["total_seconds"] < best[n]["total_seconds"]:
                best[n] = r
    results = [best[n] for n in names]
    report(results, a)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(results, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
