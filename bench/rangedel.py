"""delete_range against deleting key by key (issue 21): a DB of --num keys
(16-byte keys, 100-byte values), filled, flushed and compacted; then 90% of
its keys (a middle range) deleted either with one db.delete_range() or with one
db.delete() per key (in write batches of 1000), then compact_range(). Printed per
way: the seconds (and CPU seconds) of the delete and of the compaction, the
table bytes before and after, and gets/s of random keys (a tenth of them
live) before the compaction and after it.

Each way runs in a fresh directory, one after the other, in this process.

    python -m bench.rangedel                    # 1M keys
    python -m bench.rangedel --num 200000
"""
import argparse
import os
import random
import shutil
import sys
import tempfile
import time

if __package__ in (None, ""):
    _here = os.path.dirname(os.path.abspath(__file__))
    if sys.path and os.path.abspath(sys.path[0] or os.curdir) == _here:
        del sys.path[0]
    if os.path.dirname(_here) not in sys.path:
        sys.path.append(os.path.dirname(_here))

import lsmkv  # noqa: E402


def table_bytes(path):
    return sum(os.path.getsize(os.path.join(path, n)) for n in os.listdir(path) if n.endswith(".sst"))


def timed(fn):
    t0, c0 = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - t0, time.process_time() - c0


def gets_per_second(db, num, n, seed):
    rng = random.Random(seed)
    keys = [b"%016d" % rng.randrange(num) for _ in range(n)]
    t0 = time.perf_counter()
    for k in keys:
        db.get(k)
    return n / (time.perf_counter() - t0)


def run(way, num, reads, base):
    path = os.path.join(base, way)
    db = lsmkv.DB(path)
    value = os.urandom(50) + b"x" * 50
    wb = db.write_batch()
    for i in range(num):
        wb.put(b"%016d" % i, value)
        if len(wb) == 1000:
            db.write(wb)
            wb.clear()
    db.write(wb)
    db.flush()
    db.compact_range()
    before = table_bytes(path)
    lo, hi = num // 20, num // 20 + num * 9 // 10

    def by_range():
        db.delete_range(b"%016d" % lo, b"%016d" % hi)

    def by_key():
        b = db.write_batch()
        for i in range(lo, hi):
            b.delete(b"%016d" % i)
            if len(b) == 1000:
                db.write(b)
                b.clear()
        db.write(b)
    delete = timed(by_range if way == "delete_range" else by_key)
    gets_before = gets_per_second(db, num, reads, 1)
    compact = timed(lambda: (db.flush(), db.compact_range()))
    after = table_bytes(path)
    gets_after = gets_per_second(db, num, reads, 1)
    assert db.get(b"%016d" % (num // 2)) is None and db.get(b"%016d" % 0) == value
    db.close()
    shutil.rmtree(path)
    print(f"{way:>13}: delete {delete[0]:.3f} s ({delete[1]:.3f} CPU s), compact_range {compact[0]:.2f} s "
          f"({compact[1]:.2f} CPU s); tables {before / 1e6:.1f} MB -> {after / 1e6:.1f} MB "
          f"({100 * after / before:.1f}%); gets/s {gets_before:,.0f} before the compaction, "
          f"{gets_after:,.0f} after")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--num", type=int, default=1_000_000)
    p.add_argument("--reads", type=int, default=100_000)
    a = p.parse_args(argv)
    base = tempfile.mkdtemp(prefix="lsmkv-rangedel-")
    try:
        for way in ("delete_range", "delete"):
            run(way, a.num, a.reads, base)
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
