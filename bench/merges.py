"""mergerandom: merges against the puts they replace (issue 21; bench/rangedel.py
has delete_range).

    python bench/merges.py [--merges 1000000] [--merge_keys 10000] [--reads 200000] [--rounds 2]

`--merges` uint64add merges of 1 over `--merge_keys` random keys, against the same
number of plain puts of 8-byte values over the same keys (lsmkv's own put: rocksdict has no
merge operator to compare with); both DBs are then flushed and read (`--reads` random gets
of the merged keys against the same gets of the put keys). Twice: into an empty DB (the
flush fully merges each key's operands, nothing lying below), and into a DB where every key
already holds a base value, flushed and compacted (a get then folds the operands of the
flushed table over the base of the level below). The merged sum is checked.
Times are wall clock on this machine; run with nothing else busy.
"""
import argparse
import os
import random
import shutil
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

import lsmkv  # noqa: E402

ONE = (1).to_bytes(8, "little")


def timed(fn):
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def run(a, base, kind, keys, reads, below):
    """One DB: (writes/s, gets/s after a flush) of `kind` ("merge" or "put") of 1 to
    each of keys; below: every key first holds a base value, flushed and compacted."""
    path = os.path.join(base, kind)
    with lsmkv.DB(path, merge_operator="uint64add") as db:
        if below:
            for i in range(a.merge_keys):
                db.put(b"counter%08d" % i, ONE)
            db.flush()
            db.compact_range()
        op = db.merge if kind == "merge" else db.put

        def write():
            for k in keys:
                op(k, ONE)
        wt = timed(write)
        db.flush()
        get = db.get

        def read():
            for k in reads:
                get(k)
        get(reads[0])
        rt = timed(read)
        if kind == "merge":
            total = sum(int.from_bytes(v, "little") for _, v in db.items())
            assert total == a.merges + (a.merge_keys if below else 0), total
    shutil.rmtree(path)
    return a.merges / wt, a.reads / rt


def bench_merge(a, base):
    rnd = random.Random(1)
    keys = [b"counter%08d" % rnd.randrange(a.merge_keys) for _ in range(a.merges)]
    reads = [b"counter%08d" % rnd.randrange(a.merge_keys) for _ in range(a.reads)]
    print(f"## merge: {a.merges:,} uint64add merges over {a.merge_keys:,} keys against puts of the same keys, "
          f"then {a.reads:,} gets after a flush; best of {a.rounds} rounds, the order alternating")
    print()
    print("| keys before | write kind | writes/s | gets/s after flush |")
    print("|---|---|---|---|")
    for below in (False, True):
        best = {"merge": (0, 0), "put": (0, 0)}
        for r in range(a.rounds):
            for kind in (("merge", "put") if r % 2 == 0 else ("put", "merge")):
                w, g = run(a, base, kind, keys, reads, below)
                best[kind] = (max(best[kind][0], w), max(best[kind][1], g))
        what = "a flushed base each" if below else "none"
        for kind in ("merge", "put"):
            print(f"| {what} | {kind} | {best[kind][0]:,.0f} | {best[kind][1]:,.0f} |")
        print(f"| {what} | merge / put | {best['merge'][0] / best['put'][0]:.2f}x | "
              f"{best['merge'][1] / best['put'][1]:.2f}x |")
    print()


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--merges", type=int, default=1_000_000)
    ap.add_argument("--merge_keys", type=int, default=10_000)
    ap.add_argument("--reads", type=int, default=200_000)
    ap.add_argument("--rounds", type=int, default=2, help="rounds of each way (the best is shown)")
    ap.add_argument("--dir", default=None, help="where the DBs go (default: a temporary directory)")
    a = ap.parse_args(argv)
    base = tempfile.mkdtemp(prefix="lsmkv-merges-", dir=a.dir)
    try:
        bench_merge(a, base)
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
