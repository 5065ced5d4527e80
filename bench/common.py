"""Names shared by every part of db_bench: the workload lists, the engines, the
constants of the churn and allocation passes, the clock functions the timed loops
bind, and the path of the db_bench script (which child processes run).

Part of bench/db_bench.py (see its docstring for the method).
"""

import os
import time


perf_counter_ns = time.perf_counter_ns
perf_counter = time.perf_counter
DEFAULT_BENCHMARKS = "fillseq,fillrandom,overwrite,readrandom,readmissing,readseq,seekrandom,deleterandom"
ALL_BENCHMARKS = ("fillseq", "fillrandom", "overwrite", "fillsync", "fillbatch", "readrandom",
                  "readmissing", "readseq", "readreverse", "seekrandom", "seekrandom_reuse", "deleterandom",
                  "fillsustained", "filluniquerandom", "readwhilewriting", "readrandom_cache", "churn",
                  "multireadrandom")
ENGINES = ("lsmkv", "plyvel", "rocksdict", "lmdb", "sqlite3")
PEER_LSMS = ("plyvel", "rocksdict")
MiB = 1 << 20
SEEK_READS = 10              # entries seekrandom_reuse reads after each seek (the found one first)
SEEK_WORKLOADS = ("seekrandom", "seekrandom_reuse")
WRITE_WORKLOADS = ("fillseq", "fillrandom", "overwrite", "fillsync", "fillbatch", "deleterandom",
                   "fillsustained", "filluniquerandom", "readwhilewriting")
SUSTAINED_SETTLE_SECONDS = 30
CHURN_MIN_VALUE, CHURN_MAX_VALUE = 100, 16 * 1024   # churn value sizes, log-uniform between
CHURN_VALUES = 2048          # distinct churn values (about 6.5 MB of them)
CHURN_PUT_PCT = 50           # percent of churn ops that are puts (the rest are gets)
CHURN_PARTS = 20             # a line every 5%
CHURN_DEFAULT_CACHE = 64 * MiB
ALLOC_OPS_DEFAULT = 20000    # gets of each allocation pass


def churn_keyspace(args):
    return max(args.num // 10, 10000)


def churn_cache_size(args):
    return args.cache_size if args.cache_size is not None else CHURN_DEFAULT_CACHE


SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "db_bench.py")   # what child processes run
