"""lsmkv's benchmarks, as one package. The runnable scripts work by their path from the
repository root (python bench/db_bench.py; each puts the root on sys.path once) and as
modules (python -m bench.db_bench):

  db_bench.py      db_bench's workloads through lsmkv and, with --compare, plyvel
                   (LevelDB), rocksdict (RocksDB), lmdb and sqlite3 (docs/benchmarks.md)
  phaseshift.py    adaptive_memory against fixed memtable/cache splits (docs/tuning.md)
  index_cache.py   index and filter blocks resident vs in the block cache
  gc_check.py      file garbage collection and TTL collection
  idle_footprint.py  the idle footprint per open DB (RSS, disk, threads) beside the peers
  disk_footprint.py  disk after fillrandom + overwrite beside rocksdict, tables by level and kind
  many_dbs.py      threads, worker processes and RSS with many DBs open in one process
  followers.py     one writer and reader processes (lsmkv read_only vs LMDB), catch_up latency
  server_bench.py  lsmkv serve against redis-server with redis-benchmark (docs/server.md)

db_bench's modules, one concern each:

  common.py        workload lists, engine names, constants, the db_bench script's path
  data.py          keys and values (db_bench's RandomGenerator), Data
  files.py         recognising and wiping a DB directory
  engines/         the Engine interface and shared helpers (base.py), one adapter per
                   engine (lsmkv, plyvel, rocksdict, lmdb, sqlite), ENGINE_CLASSES by name
  loops.py         the timed loops, the progress line, reader and writer threads
  stats.py         RSS, directory size, allocation counting, latency percentiles
  workloads.py     Runner: the workloads on one engine; its mixins are sustained.py
                   (fillsustained), threaded.py (reader threads), memory.py (cache, churn)
                   and allocs.py (allocations per get)
  report.py        number formatting and the --compare table
  plot.py          the --plot chart (matplotlib, imported only then)
  compare.py       --compare: one child process per engine, then the table
"""
import os as _os
import sys as _sys


def _source_tree_last():
    """Run as `python -m bench.NAME`, Python put the current directory (the repository
    root) first on sys.path, so its unbuilt source tree of lsmkv would shadow the lsmkv
    installed in the environment. Move it last, as the scripts run by path do: lsmkv
    then comes from PYTHONPATH or the environment, else from this source tree."""
    root = _os.path.dirname(_os.path.dirname(_os.path.abspath(__file__)))
    here = [p for p in _sys.path if _os.path.abspath(p or _os.curdir) == root]
    if here and "lsmkv" not in _sys.modules:
        _sys.path[:] = [p for p in _sys.path if p not in here] + here


_source_tree_last()
