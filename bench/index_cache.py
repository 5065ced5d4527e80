"""Index and filter blocks resident vs in the block cache (options
cache_index_and_filter_blocks, pin_l0_index_and_filter): readrandom over a DB of many
small tables with a small block cache.

Builds one DB: --num keys (16 bytes, "%016d"), 100-byte values half random, put once
each in random order with small memtables and tables (--table_mib), compacted into
the deepest level; then 5% of the keys are overwritten into one L0 table. Then, for
--runs rounds, each configuration in turn (interleaved, so machine noise spreads over
all of them) reopens the DB with each --cache_mib cache, does --reads untimed gets of
random keys (warm-up) and --reads timed gets of other random keys, and prints (keys
drawn from the whole key space, or with --hot F from one contiguous F of it, so
that only the tables holding it are read):
ops/s; the data blocks' hit ratio; the index and filter hit ratios (a resident block
counts as a hit); memory_usage()["index_filter"] (index and filter bytes held
resident, charged to the cache's capacity) and stats()["block_cache"]
["index_filter_cached"] (their bytes in the cache's slabs); the cache payload.

    python bench/index_cache.py --num 1000000 --cache_mib 8,2 --runs 2
    python bench/index_cache.py --num 1000000 --cache_mib 8 --runs 2 --hot 0.1

Configurations: off (the default: resident, charged), on (in the cache, L0 pinned
resident), on_nopin (in the cache, L0 too).
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
import lsmkv.testing  # noqa: E402

MiB = 1 << 20
CONFIGS = {
    "off": dict(cache_index_and_filter_blocks=False),
    "on": dict(cache_index_and_filter_blocks=True, pin_l0_index_and_filter=True),
    "on_nopin": dict(cache_index_and_filter_blocks=True, pin_l0_index_and_filter=False),
}


def build(path, num, table_mib, seed):
    rng = random.Random(seed)
    vals = [rng.randbytes(50) + b"x" * 50 for _ in range(4096)]
    order = list(range(num))
    rng.shuffle(order)
    opts = dict(write_buffer_size=4 * MiB, target_file_size_base=table_mib * MiB)
    with lsmkv.DB(path, **opts) as db:
        for i in order:
            db.put(b"%016d" % i, vals[i % 4096])
        db.flush()
        db.compact_range()
        for i in rng.sample(range(num), num // 20):
            db.put(b"%016d" % i, vals[(i + 1) % 4096])
        db.flush()
        return [len(files) for files in lsmkv.testing.current_version(db).levels]


def run(path, config, cache_mib, num, reads, seed, hot):
    rng = random.Random(seed)
    span = max(1, int(num * hot))
    lo = random.Random(0).randrange(num - span + 1)       # the same hot range in every run
    warm = [b"%016d" % (lo + rng.randrange(span)) for _ in range(reads)]
    timed = [b"%016d" % (lo + rng.randrange(span)) for _ in range(reads)]
    with lsmkv.DB(path, block_cache_size=cache_mib * MiB, **CONFIGS[config]) as db:
        get = db.get
        for k in warm:
            get(k)
        a = db.stats()["block_cache"]
        t = time.perf_counter()
        for k in timed:
            get(k)
        secs = time.perf_counter() - t
        b = db.stats()["block_cache"]
        u = db.memory_usage()

    def ratio(h, m):
        dh, dm = b[h] - a[h], b[m] - a[m]
        return dh / (dh + dm) if dh + dm else float("nan")
    return {"ops": reads / secs, "data_hit": ratio("hits", "misses"),
            "index_hit": ratio("index_hits", "index_misses"),
            "filter_hit": ratio("filter_hits", "filter_misses"),
            "resident": u["index_filter"], "cached": b["index_filter_cached"],
            "payload": u["cache_payload"]}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--num", type=int, default=1000000)
    ap.add_argument("--reads", type=int, default=300000)
    ap.add_argument("--table_mib", type=int, default=2, help="target_file_size_base in MiB")
    ap.add_argument("--cache_mib", default="8", help="comma-separated block cache sizes in MiB")
    ap.add_argument("--runs", type=int, default=2)
    ap.add_argument("--configs", default=",".join(CONFIGS))
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--hot", type=float, default=1.0,
                    help="fraction of the key space the gets read (one contiguous range); 1: all of it")
    a = ap.parse_args()
    if not 0 < a.hot <= 1:
        ap.error(f"--hot must be in (0, 1], got {a.hot}")
    configs = a.configs.split(",")
    for c in configs:
        if c not in CONFIGS:
            ap.error(f"--configs: unknown configuration {c!r} (known: {', '.join(CONFIGS)})")
    caches = [int(x) for x in a.cache_mib.split(",")]
    d = tempfile.mkdtemp(prefix="index_cache_")
    try:
        path = os.path.join(d, "db")
        t = time.perf_counter()
        levels = build(path, a.num, a.table_mib, a.seed)
        print(f"lsmkv {lsmkv.__file__}; {a.num} keys, tables per level {levels} "
              f"(built in {time.perf_counter() - t:.1f} s); {a.reads} warm-up + {a.reads} timed gets "
              f"of {'all' if a.hot == 1 else f'a {a.hot:g} range'} of the keys")
        print(f"{'run':>3} {'cache':>6} {'config':>9} {'ops/s':>9} {'data hit':>8} {'index hit':>9} "
              f"{'filter hit':>10} {'resident':>10} {'in cache':>10} {'payload':>10}")
        for r in range(a.runs):
            for mib in caches:
                for c in configs:
                    x = run(path, c, mib, a.num, a.reads, a.seed + 100 * r + 1, a.hot)
                    print(f"{r + 1:>3} {mib:>4}Mi {c:>9} {x['ops']:>9,.0f} {x['data_hit']:>8.3f} "
                          f"{x['index_hit']:>9.3f} {x['filter_hit']:>10.3f} {x['resident']:>10,} "
                          f"{x['cached']:>10,} {x['payload']:>10,}", flush=True)
    finally:
        shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    main()
