#!/usr/bin/env python3
"""db_bench for lsmkv: RocksDB/LevelDB db_bench workloads through lsmkv's public API,
optionally the same workloads through plyvel (LevelDB), rocksdict (RocksDB), lmdb and
sqlite3, each engine in its own process, with a side-by-side table of the results.

    python bench/db_bench.py                          # lsmkv alone, db_bench defaults
    python bench/db_bench.py --num 100000 --compare   # every installed engine, ratios
    python bench/db_bench.py --help
    python -m bench.db_bench --help                   # the same, as a module of the package bench
    python bench/db_bench.py --benchmarks fillsustained --compare --compare_engines lsmkv,rocksdict
                                                      # writes with flushes and compactions throughout:
                                                      # latency tail, stalls, write amplification
    python bench/db_bench.py --benchmarks fillrandom,readwhilewriting,readrandom --threads 2 --compare
                                                      # reader threads, with and without a writer
    python bench/db_bench.py --benchmarks fillrandom,readrandom_cache,churn --compare
                                                      # memory: hit ratio per cache size, RSS under churn
    python bench/db_bench.py --num 100000 --compare --plot out.png   # + a chart (needs matplotlib)

Method (docs/benchmarks.md has the long form):
  * keys are db_bench's: the index formatted "%016d" (zero-padded to --key_size);
    values are db_bench's RandomGenerator: a 1 MiB buffer of 100-byte pieces, each
    piece a random printable fragment of 100*--compression_ratio bytes repeated to
    100 bytes; a value is the next --value_size slice of that buffer.
  * keys, values and the random choices are made from --seed before each workload,
    outside the timed loop, so every engine gets exactly the same operations.
  * one public-API call of the engine per operation (a batch for fillbatch); after
    each call the loop stores time.perf_counter_ns() into a preallocated array('q'),
    and an op's latency is the gap since the previous op completed (one clock read
    per op, not two: a read costs ~0.1 us here). The same loop code drives every
    engine, and the garbage collector is off while it runs.
  * ops/sec = operations / wall time of the whole loop (timer overhead included,
    the same for every engine; the header prints that overhead).
  * a fill* workload starts from an empty DB (unless --use_existing_db); other
    workloads use the DB as the previous workload left it, like db_bench.
  * after every workload that writes, the engine is flushed (where its API has a
    flush) and closed, the DB directory is measured (sum of st_size and of
    st_blocks*512 over its files), and the DB is reopened.

Workloads not in the default list (all in ALL_BENCHMARKS):
  * readrandom --threads N (N > 1) and readwhilewriting: the --reads random keys
    (the draw single-threaded readrandom makes) are split into N slices, one per
    reader thread; each thread runs the same chunk_get loop with its own latency
    array, all released by one barrier, the collector off. ops/sec = all gets / wall
    time from the first reader's start to the last one's end; percentiles merge
    every thread's latencies (each a gap between that thread's completions, so a
    wait for the GIL counts: the header prints the switch interval). db_bench gives
    each thread --reads ops; here the total stays --reads, so found counts check
    the same way. readwhilewriting adds one writer thread, released by the same
    barrier, that puts random keys of [0, num) at full speed until the last reader
    is done; its puts are reported apart ("writer"), and readers must find at least
    the keys present before. Every engine runs it: lsmkv, plyvel and rocksdict share
    their thread-safe handle; lmdb gives each reader its own read transaction, and
    sqlite3 its own connection (WAL mode: readers do not block the writer, where a
    shared connection behind a lock would serialise everything); with the writer
    running, both renew the read transaction every 1000 gets so that reads see the
    writes, as the writer commits every 1000 puts (sqlite3) or every put (lmdb).
  * filluniquerandom: every key once, in random order, into a fresh DB. With --ttl S,
    lsmkv puts with db.put(k, v, ttl=S) (per key; expired keys read as absent);
    rocksdict opens a DBWithTTL, Rdict(..., access_type=AccessType.with_ttl(S)) (one
    TTL for the DB, a timestamp appended to each value, expired entries dropped only
    by compaction), and keeps opening that DB with the TTL; plyvel, lmdb and sqlite3
    have no TTL and skip it with the reason. Once S seconds have passed since the
    fill started, contents are no longer checked.
  * allocations per get (readrandom, readwhilewriting; --alloc_ops, 0 turns it off):
    separate untimed passes of --alloc_ops gets of other random keys after the timed
    loop. CPython has no running count of allocations: sys.getallocatedblocks() and
    tracemalloc's snapshots count live blocks, so a value that a get allocates and
    the caller frees counts 0 there. allocs/op therefore comes from a counting
    wrapper around the PyMem and PyObject allocators (PyMem_SetAllocator, the hook
    tracemalloc uses; a few lines of C compiled at run time, see AllocCounter):
    malloc+calloc calls made by the reading thread, minus those of the same loop
    around bool(). Freelist reuse (tuples, floats) and the libraries' own C/C++ heap
    allocations are not seen. Around the same pass, "live blocks/op" is the change
    of sys.getallocatedblocks() (pymalloc blocks left allocated, e.g. cache inserts);
    a second pass under tracemalloc gives the change in live traced blocks of every
    size, their top sources and the peak traced memory. For readwhilewriting the
    pass runs while the writer puts, and only the (per-thread) allocs/op is kept.
  * multireadrandom (RocksDB's db_bench name): the --reads random keys of readrandom's
    draw, read in batches of --multiget_batch (default 100): lsmkv db.multi_get(keys),
    rocksdict db.get(list_of_keys) (RocksDB's MultiGet); plyvel, lmdb and sqlite3 have
    no batched read in their bindings and run a get() loop per batch (the report says
    so). ops/sec counts keys; latency is per batch.
  * readrandom_cache: per --cache_sizes size, the DB is reopened with a block cache
    of that size (lsmkv block_cache_size, LevelDB lru_cache_size, a new RocksDB
    Cache), --reads untimed gets warm it, and --reads gets of other random keys are
    timed; the hit ratio is over the timed pass (lsmkv stats()['block_cache']
    hits/misses; RocksDB's rocksdb.block.cache.data.hit/miss tickers, statistics on
    for this workload; LevelDB counts none). LSM engines only.
  * churn: --churn_ops ops on max(num/10, 10000) keys, each put once first: 50% puts
    of one of 2048 values of log-uniform size in [100 B, 16 KiB], 50% gets, block
    cache --cache_size (default 64 MiB). Each variant runs in a fresh process of its
    own (lsmkv: block_cache='slab' and 'lru'), so that none inherits another's heap;
    every 5% a line gives elapsed time, RSS and the block cache's usage, held bytes,
    fragmentation_ratio and slab_moves (n/a when stats() lacks them). Reported: RSS
    at 50% and 100%, "RSS growth over second half" = (end - mid) / mid, and the
    fragmentation ratio at the end. LSM engines only.
  * --plot OUT.png (matplotlib, imported only then): grouped bars of ops/sec per
    table row and engine, and per write workload the p99 put latency per 0.5 s
    window of wall time (from the latency arrays, completion time = chunk start +
    latencies so far).
"""
import argparse
import os
import sys

if __package__ in (None, ""):
    # Run by its path (python bench/this_file.py): Python put bench/ first on sys.path. Drop
    # it and add the repository root, once, last: the package `bench` loads from there, and
    # lsmkv from PYTHONPATH or the environment if it is there, else from this source tree.
    _here = os.path.dirname(os.path.abspath(__file__))
    if sys.path and os.path.abspath(sys.path[0] or os.curdir) == _here:
        del sys.path[0]
    if os.path.dirname(_here) not in sys.path:
        sys.path.append(os.path.dirname(_here))

# The package's modules, one concern each (bench/__init__.py lists them; the method is
# in the docstring above). This file: the command line; bench/compare.py runs --compare.
from bench.common import ALL_BENCHMARKS, ALLOC_OPS_DEFAULT, CHURN_PARTS, DEFAULT_BENCHMARKS, ENGINES, MiB  # noqa: E402
from bench.compare import run_compare  # noqa: E402
from bench.engines import ENGINE_CLASSES, engine_available  # noqa: E402
from bench.plot import plot_available, write_plot  # noqa: E402
from bench.stats import AllocCounter, alloc_loop, latency_timeline, to_latencies  # noqa: E402, F401 (re-exported: tests)
from bench.workloads import Runner  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description="db_bench-style benchmark for lsmkv (and, with --compare, LevelDB, RocksDB, "
                    "LMDB and SQLite through their Python bindings). See docs/benchmarks.md.")
    p.add_argument("--benchmarks", default=DEFAULT_BENCHMARKS,
                   help=f"comma-separated, run in order on one DB (fill* start a fresh one). "
                        f"Known: {','.join(ALL_BENCHMARKS)}. Default: %(default)s. Not in the default "
                        f"list: fillsustained (LSM engines; see --sustained_*), filluniquerandom (every "
                        f"key once in random order; --ttl), readwhilewriting (--threads readers and one "
                        f"writer), multireadrandom (batched reads, --multiget_batch), readrandom_cache (per --cache_sizes size; "
                        f"LSM engines) and churn "
                        f"(RSS and block cache under overwrites of mixed-size values; --churn_ops; LSM "
                        f"engines). The module docstring describes each")
    p.add_argument("--num", type=int, default=1000000, help="number of keys (default %(default)s)")
    p.add_argument("--reads", type=int, default=-1,
                   help="ops of readrandom/readmissing/seekrandom/seekrandom_reuse (keys of multireadrandom), max entries of readseq/readreverse "
                        "(default: --num)")
    p.add_argument("--key_size", type=int, default=16, help="bytes per key (default %(default)s)")
    p.add_argument("--value_size", type=int, default=100, help="bytes per value (default %(default)s)")
    p.add_argument("--compression_ratio", type=float, default=0.5,
                   help="fraction of each 100-byte value piece that is random (default %(default)s)")
    p.add_argument("--cache_size", type=int, default=None,
                   help="block cache bytes (lsmkv block_cache_size, LevelDB lru_cache_size, RocksDB "
                        "block cache, SQLite cache_size); default: each engine's own default")
    p.add_argument("--write_buffer_size", type=int, default=None,
                   help="memtable bytes (lsmkv, LevelDB, RocksDB); default: each engine's own default")
    p.add_argument("--bloom_bits", type=int, default=10,
                   help="bloom filter bits per key for every LSM engine (lsmkv's default is 10; "
                        "LevelDB and RocksDB have none by default); 0 disables (default %(default)s)")
    p.add_argument("--fillsync_num", type=int, default=None, help="ops of fillsync (default: num/100)")
    p.add_argument("--batch_size", type=int, default=100, help="puts per fillbatch batch (default %(default)s)")
    p.add_argument("--multiget_batch", type=int, default=100,
                   help="keys per multireadrandom batch (default %(default)s)")
    p.add_argument("--sustained_num", type=int, default=3000000,
                   help="fillsustained: random puts (keys drawn with replacement from [0, this)) "
                        "(default %(default)s)")
    p.add_argument("--sustained_write_buffer_size", type=int, default=4 * MiB,
                   help="fillsustained: memtable bytes for every LSM engine during that workload, "
                        "so that flushes and compactions run throughout; every other setting stays "
                        "the engine's default (default %(default)s)")
    p.add_argument("--threads", type=int, default=1,
                   help="reader threads of readrandom and readwhilewriting: the --reads keys are split "
                        "into one slice per thread, ops/sec is all threads' gets over the wall time, "
                        "latency percentiles merge every thread's (default %(default)s; readrandom with 1 "
                        "is the plain single-threaded loop)")
    p.add_argument("--ttl", type=int, default=0, metavar="SECONDS",
                   help="filluniquerandom: put every key with this TTL (lsmkv put(..., ttl=S); rocksdict "
                        "opens a DBWithTTL, AccessType.with_ttl(S); engines without TTL skip it). "
                        "0: no TTL (default %(default)s)")
    p.add_argument("--cache_sizes", default="8,64,512", metavar="MIB,...",
                   help="readrandom_cache: the block cache sizes, in MiB (default %(default)s)")
    p.add_argument("--churn_ops", type=int, default=300000,
                   help="churn: operations (50%% puts of 100 B..16 KiB values, 50%% gets) on max(num/10, "
                        "10000) keys; block cache --cache_size or 64 MiB (default %(default)s)")
    p.add_argument("--alloc_ops", type=int, default=ALLOC_OPS_DEFAULT,
                   help="readrandom/readwhilewriting: gets of the untimed allocation passes that give "
                        "allocs/op, live blocks/op and tracemalloc's counts (0: skip them; "
                        "default %(default)s)")
    p.add_argument("--plot", metavar="OUT.png", default=None,
                   help="write a PNG: ops/sec per workload and engine (grouped bars) and, for the write "
                        "workloads, put latency p99 per 0.5 s window over time; needs matplotlib")
    p.add_argument("--churn_variant", default=None, help=argparse.SUPPRESS)     # one churn variant's process
    p.add_argument("--latency_timeline", action="store_true", help=argparse.SUPPRESS)   # set by --plot
    p.add_argument("--db", default=None,
                   help="DB directory (with --compare: a parent directory, one subdirectory per engine); "
                        "default: a temporary directory removed at the end")
    p.add_argument("--use_existing_db", action="store_true",
                   help="never wipe the DB: fill* write into it, reads read what is there")
    p.add_argument("--seed", type=int, default=301, help="seed of keys and choices (default %(default)s)")
    p.add_argument("--verify", type=int, default=1000,
                   help="after each workload check this many random keys against the expected "
                        "contents, untimed (0: off; default %(default)s)")
    p.add_argument("--json", metavar="OUT", default=None, help="write all results to OUT as JSON")
    p.add_argument("--engine", default="lsmkv", choices=ENGINES,
                   help="engine to run in this process (--compare spawns one process per engine)")
    p.add_argument("--compare", action="store_true",
                   help="run the same workloads through every installed engine, each in its own "
                        "process, and print a side-by-side table")
    p.add_argument("--compare_engines", default=",".join(ENGINES),
                   help="engines for --compare (default %(default)s)")
    p.add_argument("--progress", choices=("auto", "always", "never"), default="auto",
                   help="live progress line on stderr (auto: only if stderr is a terminal)")
    args = p.parse_args(argv)
    args.benchmarks = [b.strip() for b in args.benchmarks.split(",") if b.strip()]
    for b in args.benchmarks:
        if b not in ALL_BENCHMARKS:
            p.error(f"unknown benchmark {b!r}; known: {', '.join(ALL_BENCHMARKS)}")
    if args.num < 1:
        p.error("--num must be >= 1")
    if args.reads < 0:
        args.reads = args.num
    if args.fillsync_num is None:
        args.fillsync_num = max(1, args.num // 100)
    if args.batch_size < 1:
        p.error("--batch_size must be >= 1")
    if args.multiget_batch < 1:
        p.error("--multiget_batch must be >= 1")
    if args.sustained_num < 1:
        p.error("--sustained_num must be >= 1")
    if args.sustained_write_buffer_size < 1:
        p.error("--sustained_write_buffer_size must be >= 1")
    if not 0 < args.compression_ratio <= 1:
        p.error("--compression_ratio must be in (0, 1]")
    if args.key_size < 1 or args.value_size < 0:
        p.error("bad --key_size/--value_size")
    if args.threads < 1:
        p.error("--threads must be >= 1")
    if args.ttl < 0:
        p.error("--ttl must be >= 0")
    try:
        args.cache_sizes = [int(x) for x in args.cache_sizes.split(",") if x.strip()]
    except ValueError:
        p.error("--cache_sizes must be comma-separated whole MiB, e.g. 8,64,512")
    if not args.cache_sizes or min(args.cache_sizes) < 1:
        p.error("--cache_sizes must list sizes >= 1 MiB")
    if args.churn_ops < CHURN_PARTS:
        p.error(f"--churn_ops must be >= {CHURN_PARTS}")
    if args.alloc_ops < 0:
        p.error("--alloc_ops must be >= 0")
    if args.plot:
        args.latency_timeline = True
    return args


def main(argv=None):
    args = parse_args(argv)
    if args.plot and not plot_available():
        print("db_bench: --plot needs matplotlib, which is not installed here "
              f"({sys.executable}); install it (pip install matplotlib) or drop --plot", file=sys.stderr)
        return 2
    if args.compare:
        return run_compare(args)
    ok, why = engine_available(args.engine)
    if not ok:
        print(f"db_bench: engine {args.engine} is not installed: {why}", file=sys.stderr)
        return 2
    engine = ENGINE_CLASSES[args.engine](args)
    runner = Runner(args, engine)
    rc = runner.run()
    if args.plot:
        write_plot(args, {engine.name: {"results": runner.results}}, args.plot)
    return rc


if __name__ == "__main__":
    sys.exit(main())
