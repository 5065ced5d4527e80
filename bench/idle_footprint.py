"""The idle footprint of an open database, per engine: what one DB, and many DBs in one
process, cost before they hold any real data (docs/benchmarks.md, "Idle footprint").

    python bench/idle_footprint.py                     # 1 and 100 DBs, every installed engine
    python bench/idle_footprint.py --dbs 1,10 --engines lsmkv,rocksdict

For each engine and each count N, a fresh child process opens N databases (each in
its own directory, with db_bench's default options for that engine: the adapters of
bench/engines/), puts --keys small keys into each, waits --settle seconds for
background work, and reports, against its own numbers before the first open: the RSS
growth, the disk allocated under the DBs' directories (st_blocks, so sparse
and preallocated space count as what they are) and the threads added (the Threads
line of /proc/self/status: native threads too, not only Python's). A warm-up DB is
opened, written and closed before the baseline, so the library's code is loaded and
what is measured is the DBs alone. Then it closes them. Per DB figures are the
totals divided by N.
"""
import argparse
import json
import os
import shutil
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

from bench.common import ENGINES, MiB  # noqa: E402
from bench.engines import ENGINE_CLASSES, engine_available  # noqa: E402
from bench.stats import current_rss_bytes, dir_bytes  # noqa: E402


def threads():
    """Threads of this process, native ones too (the Threads line of /proc/self/status)."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("Threads:"):
                return int(line.split()[1])
    raise RuntimeError("no Threads line in /proc/self/status")


def child(engine_name, n, keys, settle, directory):
    """Open n DBs of one engine under directory and measure (module docstring)."""
    from bench.db_bench import parse_args
    args = parse_args([])
    cls = ENGINE_CLASSES[engine_name]

    def open_one(path):
        e = cls(args)
        e.open(path)
        put = e.op_put()
        for k in range(keys):
            put(b"key%013d" % k, b"v" * 100)
        e.finish_writes()
        return e

    # a warm-up DB, opened and closed first: the library's code and lazily imported
    # modules are loaded before the baseline, so what is measured is the DBs alone
    warm = os.path.join(directory, "warm-up")
    open_one(warm).close()
    shutil.rmtree(warm)
    time.sleep(settle)
    rss0, threads0 = current_rss_bytes(), threads()
    engines = [open_one(os.path.join(directory, f"db{i:03d}")) for i in range(n)]
    time.sleep(settle)
    out = {"rss": current_rss_bytes() - rss0, "disk": dir_bytes(directory)[1],
           "threads": threads() - threads0}
    for e in engines:
        e.close()
    return out


def measure(engine_name, n, keys, settle):
    """Run child() in a fresh interpreter; its result dict."""
    directory = tempfile.mkdtemp(prefix=f"lsmkv-footprint-{engine_name}-")
    try:
        r = subprocess.run([sys.executable, "-m", "bench.idle_footprint", "--child", engine_name, str(n),
                            str(keys), str(settle), directory],
                           capture_output=True, text=True, timeout=600,
                           cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        if r.returncode != 0:
            raise RuntimeError(f"{engine_name} x{n}: {r.stderr.strip()[-2000:]}")
        return json.loads(r.stdout.strip().splitlines()[-1])
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dbs", default="1,100", help="counts of DBs open at once (default %(default)s)")
    ap.add_argument("--engines", default=",".join(ENGINES), help="engines (default: all installed)")
    ap.add_argument("--keys", type=int, default=5, help="keys put into each DB (default %(default)s)")
    ap.add_argument("--settle", type=float, default=1.0,
                    help="seconds to wait before measuring (default %(default)s)")
    ap.add_argument("--json", metavar="OUT", default=None, help="write the results to OUT as JSON")
    ap.add_argument("--child", nargs=5, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        name, n, keys, settle, directory = args.child
        print(json.dumps(child(name, int(n), int(keys), float(settle), directory)))
        return 0
    counts = [int(x) for x in args.dbs.split(",") if x]
    names = [e for e in args.engines.split(",") if e]
    unknown = [e for e in names if e not in ENGINE_CLASSES]
    if unknown or not counts or min(counts) < 1:
        ap.error(f"unknown engines {unknown}" if unknown else "--dbs needs counts >= 1")
    results = []
    print(f"{'engine':<10} {'DBs':>5} {'RSS growth':>12} {'per DB':>10} {'disk':>12} {'per DB':>10} "
          f"{'threads':>8}")
    for name in names:
        ok, why = engine_available(name)
        if not ok:
            print(f"{name:<10} skipped: {why}")
            continue
        for n in counts:
            m = measure(name, n, args.keys, args.settle)
            results.append(dict(engine=name, dbs=n, **m))
            print(f"{name:<10} {n:>5} {m['rss'] / MiB:>9.1f} MiB {m['rss'] / n / MiB:>6.2f} MiB "
                  f"{m['disk'] / MiB:>8.2f} MiB {m['disk'] / n / MiB:>6.3f} MiB {m['threads']:>8}",
                  flush=True)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(results, fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
