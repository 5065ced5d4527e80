"""Column families: puts written round-robin over 8 families against the same puts
into one (issue 22's target: >= 0.8x), then gets the same way.

    python bench/families.py [--num 1000000] [--families 8] [--rounds 3] [--value_size 100]

Each case runs in a fresh child process on a fresh DB (default options): `--num`
puts of distinct random 16-byte keys with db_bench's values, into the default
family alone ("1 family") or into `--families` families in turn (the default
family and `--families - 1` created ones: key i goes to family i % families),
then the same keys read back in another random order with get() on the family
that holds each. The puts are timed from the first put to the last (background
flushes and compactions run as they come); after the loop each family is
flushed, the DB closed and its directory measured. Reported: the median over
`--rounds` rounds (the cases alternate within a round), the ratio, the child's
peak RSS and the DB's size on disk. Wall-clock times: run with nothing else busy.
"""
import argparse
import json
import os
import random
import resource
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

from bench.data import make_value_pool  # noqa: E402


def child(path, num, families, value_size):
    """One case in this process: a JSON line of puts/s, gets/s, peak RSS and disk bytes."""
    import lsmkv
    rnd = random.Random(301)
    keys = [b"%016d" % k for k in rnd.sample(range(10 ** 15), num)]
    pool = make_value_pool(value_size, 0.5)
    values = [pool[i % len(pool)] for i in range(num)]
    reads = list(range(num))
    rnd.shuffle(reads)
    db = lsmkv.DB(path)
    handles = [db] + [db.create_column_family("cf%d" % i) for i in range(1, families)]
    puts = [handles[i % families].put for i in range(num)]
    t0 = time.perf_counter()
    for i in range(num):
        puts[i](keys[i], values[i])
    put_s = time.perf_counter() - t0
    gets = [handles[i % families].get for i in range(num)]
    t0 = time.perf_counter()
    found = 0
    for i in reads:
        if gets[i](keys[i]) is not None:
            found += 1
    get_s = time.perf_counter() - t0
    assert found == num, (found, num)
    for h in handles:
        h.flush()
    db.close()
    disk = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(path) for f in fs)
    print(json.dumps({"puts": num / put_s, "gets": num / get_s, "rss": resource.getrusage(
        resource.RUSAGE_SELF).ru_maxrss * 1024, "disk": disk}))


def run_case(base, num, families, value_size):
    path = os.path.join(base, "db%d" % families)
    shutil.rmtree(path, ignore_errors=True)
    out = subprocess.run([sys.executable, os.path.abspath(__file__), "--child", path, "--num", str(num),
                          "--families", str(families), "--value_size", str(value_size)],
                         capture_output=True, text=True, check=True)
    shutil.rmtree(path, ignore_errors=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--num", type=int, default=1_000_000)
    ap.add_argument("--families", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--value_size", type=int, default=100)
    ap.add_argument("--child", metavar="PATH", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.child:
        child(a.child, a.num, a.families, a.value_size)
        return
    base = tempfile.mkdtemp(prefix="lsmkv-families-")
    try:
        runs = {1: [], a.families: []}
        for r in range(a.rounds):
            for n in runs:
                runs[n].append(run_case(base, a.num, n, a.value_size))
    finally:
        shutil.rmtree(base, ignore_errors=True)
    med = {n: {k: statistics.median(x[k] for x in rs) for k in rs[0]} for n, rs in runs.items()}
    one, many = med[1], med[a.families]
    print(f"## {a.num:,} puts then {a.num:,} gets, one family against {a.families} round-robin "
          f"(median of {a.rounds} rounds)")
    print()
    print("| families | puts/s | gets/s | peak RSS MB | disk MB |")
    print("|---|---|---|---|---|")
    for n in runs:
        m = med[n]
        print(f"| {n} | {m['puts']:,.0f} | {m['gets']:,.0f} | {m['rss'] / 2**20:.0f} | {m['disk'] / 1e6:.1f} |")
    print(f"| {a.families} / 1 | {many['puts'] / one['puts']:.2f}x | {many['gets'] / one['gets']:.2f}x | | |")


if __name__ == "__main__":
    main()
