"""Memory accounting across the DBs of one process: lsmkv.memory_usage().

A DB's memory_usage() counts what it holds, and also what it shares: the whole of
an lsmkv.Cache that several DBs were given, and the read buffer pool every DB of
the process draws from. Summing DBs' figures would count those once per DB. This
module sums the DBs' own parts and counts each shared part once, so the total can
be put beside the process's RSS (RocksDB's MemoryUtil::GetApproximateMemoryUsageByType
does the same for a list of DBs and caches).

Thread safety: reads the live registry (lsmkv.engine.lifecycle) as a copy and
asks each engine for its memory_usage(), which takes that engine's mutex. An
engine closed (or, in a fork() child, inherited) by then is skipped.

Invariants:
  1. A cache counts once, however many DBs use it (by the identity of the cache
     object their tables read through); the read buffers count once.
  2. total is the sum of every field but pinned (pinned bytes are cache payload
     too), as in a DB's memory_usage().
"""
from lsmkv.engine import lifecycle

CACHE_FIELDS = ("cache_payload", "cache_overhead", "pinned")     # the cache's, shared or not
PROCESS_FIELDS = ("read_buffers",)                                # one pool per process


def memory_usage():
    """The memory of every open DB of this process, by kind, each shared cache and
    the read buffers counted once: the keys of DB.memory_usage() plus `dbs` (open
    DBs counted) and `caches` (distinct block caches).

    >>> import lsmkv, tempfile
    >>> cache = lsmkv.Cache(8 << 20)
    >>> dbs = [lsmkv.DB(tempfile.mkdtemp(), block_cache=cache) for _ in range(3)]
    >>> u = lsmkv.memory_usage()
    >>> u["dbs"] >= 3 and u["total"] == sum(v for k, v in u.items() if k not in ("total", "pinned", "dbs", "caches"))
    True
    >>> for db in dbs: db.close()
    """
    out = None
    caches = set()
    dbs = 0
    for engine in lifecycle.live():
        if engine.state.closed:
            continue
        u = engine.memory_usage()
        u.pop("total")
        cache = engine.tables.cache
        if cache is not None:
            if id(cache) in caches:
                for k in CACHE_FIELDS:
                    u[k] = 0
            caches.add(id(cache))
        if out is None:
            out = u
        else:
            for k, v in u.items():
                out[k] = v if k in PROCESS_FIELDS else out[k] + v
        dbs += 1
    if out is None:
        out = dict.fromkeys(("memtable_active", "memtable_immutable", *CACHE_FIELDS, "index_filter",
                             "wal_mapped", "sst_mapped", *PROCESS_FIELDS), 0)
    out["total"] = sum(v for k, v in out.items() if k != "pinned")
    out["dbs"] = dbs
    out["caches"] = len(caches)
    return out
