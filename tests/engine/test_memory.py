"""Memory: db.memory_usage() against the process RSS, the memory budget, NUMA and
CPU affinity of background work."""
import json
import os
import subprocess
import sys
import threading

import pytest

import lsmkv
from lsmkv import testing
from lsmkv.engine import numa
from conftest import lsmkv_import_path

KiB = 1024
MiB = 1024 * KiB

RSS_CHILD = r"""
import json, os, random, sys
sys.path.insert(0, sys.argv[2])
import lsmkv

def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

rng = random.Random(5)
vals = [bytes(rng.randrange(256) for _ in range(200)) for _ in range(64)]
# a warm-up DB first: the code a DB loads lazily (compiled modules) is in the RSS
# before the baseline, so the growth is the DBs' memory
with lsmkv.DB(sys.argv[1] + "-warm-up") as warm:
    warm.put(b"k", b"v")
    warm.flush()
    warm.get(b"k")
base = rss()
db = lsmkv.DB(sys.argv[1], write_buffer_size=8 << 20, block_cache_size=24 << 20)
out = []
for i in range(120000):
    db.put(b"%016d" % i, vals[i % 64])
db.flush()
u = db.memory_usage()
out.append(("after flush", u["total"], rss() - base))
for r in range(2):
    for i in range(60000):
        db.get(b"%016d" % rng.randrange(120000))
u = db.memory_usage()
out.append(("after reads", u["total"], rss() - base))
out.append(("usage", u))
out.append(("block_cache", db.stats()["block_cache"]))
db.close()
print(json.dumps(out))
"""


def run_rss_child(child, dbpath):
    """Run an RSS_CHILD-style script; check that memory_usage()["total"] is within
    10% of the RSS growth after the reads (the cache full), and within 10% plus
    2 MiB (the interpreter's own allocations) after the flush, when the engine
    holds little: a flushed memtable and a log that costs one step. Returns the
    final memory_usage() and stats()["block_cache"]."""
    r = subprocess.run([sys.executable, "-c", child, str(dbpath), lsmkv_import_path()],
                       capture_output=True, text=True, timeout=240)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    (_, total, grew), (what, total2, grew2) = out[:2]
    assert abs(total - grew) <= 0.10 * grew + 2 * MiB, ("after flush", total, grew, out[2])
    assert grew2 > 8 * MiB, (what, total2, grew2)
    assert abs(total2 - grew2) <= 0.10 * grew2, (what, total2, grew2, out[2])
    return out[2][1], out[3][1]


def test_memory_usage_total_matches_rss_growth(tmp_path):
    """In a fresh process: after a fill, a flush and random reads, the engine's own
    accounting is within 10% of how much the RSS grew since before open."""
    u, _ = run_rss_child(RSS_CHILD, tmp_path / "db")
    assert u["cache_payload"] > 0 and u["wal_mapped"] > 0 and u["index_filter"] > 0


def test_memory_usage_breakdown_sums(tmp_path):
    db = lsmkv.DB(str(tmp_path / "db"), write_buffer_size=1 * MiB)
    for i in range(20000):
        db.put(b"k%07d" % i, b"v" * 100)
    u = db.memory_usage()
    assert u["total"] == sum(v for k, v in u.items() if k not in ("total", "pinned"))
    assert u["memtable_active"] > 0
    db.close()


def test_memory_budget_moves_cache_capacity_and_counts_stalls(tmp_path):
    budget = 8 * MiB
    db = lsmkv.DB(str(tmp_path / "db"), memory_budget=budget, write_buffer_size=2 * MiB,
                  max_write_buffer_number=4, block_cache_size=64 * MiB)
    s = db.stats()["memory_budget"]
    assert s["budget"] == budget
    assert db.stats()["block_cache"]["capacity"] == budget - 2 * MiB   # the active memtable is charged
    for i in range(150000):
        db.put(b"k%07d" % i, b"v%07d" % i * 12)
    st = db.stats()
    mb = st["memory_budget"]
    assert mb["cache_resizes"] > 0
    # memtables + cache never exceeded the budget's promise at any install: the cache
    # got what the memtables left, at least the 1/8 floor
    assert budget // 8 <= st["block_cache"]["capacity"] <= budget - 2 * MiB
    assert mb["stalls"] == st["stall_causes"]["memory_budget"]
    db.flush()
    assert db.stats()["block_cache"]["capacity"] == budget - 2 * MiB
    for i in range(0, 150000, 997):
        assert db.get(b"k%07d" % i) == b"v%07d" % i * 12
    db.close()


def test_memory_budget_stall_waits_for_a_flush(tmp_path):
    """A budget too small for a third memtable: the writer waits for a flush (a
    counted stall) instead of growing past the budget."""
    db = lsmkv.DB(str(tmp_path / "db"), memory_budget=3 * MiB, write_buffer_size=1 * MiB,
                  max_write_buffer_number=6)
    for i in range(100000):
        db.put(b"k%07d" % i, b"x" * 100)
    st = db.stats()
    assert st["stall_causes"]["memory_budget"] > 0
    assert st["memory_budget"]["stalls"] == st["stall_causes"]["memory_budget"]
    assert db.get(b"k0099999") == b"x" * 100
    db.close()


def test_memory_budget_validation(tmp_path):
    with pytest.raises(ValueError, match="memory_budget"):
        lsmkv.DB(str(tmp_path / "db"), memory_budget=1 * MiB, write_buffer_size=1 * MiB)
    with pytest.raises(TypeError, match="memory_budget"):
        lsmkv.DB(str(tmp_path / "db"), memory_budget="big")


def test_parse_cpulist_and_topology(tmp_path):
    assert numa.parse_cpulist("0-3,8,10-11\n") == [0, 1, 2, 3, 8, 10, 11]
    assert numa.parse_cpulist("") == []
    root = tmp_path / "node"
    for n, cpus in ((0, "0-1"), (1, "2-3")):
        (root / f"node{n}").mkdir(parents=True)
        (root / f"node{n}" / "cpulist").write_text(cpus + "\n")
    (root / "possible").write_text("0-1\n")
    assert numa.topology(str(root)) == {0: [0, 1], 1: [2, 3]}
    assert numa.topology(str(tmp_path / "absent")) == {0: sorted(os.sched_getaffinity(0))}


def test_background_threads_bound_to_background_cpus(tmp_path):
    mine = os.sched_getaffinity(0)
    cpu = min(mine)
    db = lsmkv.DB(str(tmp_path / "db"), background_cpus={cpu}, max_background_jobs=3,
                  write_buffer_size=256 * KiB)
    for i in range(30000):
        db.put(b"k%07d" % i, b"v" * 100)
    db.flush()
    db.compact_range()
    applied = db.stats()["numa"]["applied"]
    assert {"lsmkv-flush-0", "lsmkv-misc-0", "lsmkv-compact-0", "lsmkv-compact-1"} <= set(applied)
    assert all(cpus == [cpu] for cpus in applied.values()), applied
    # read back from the kernel directly, by native thread id
    assert os.sched_getaffinity(testing.background_thread_ids(db)["lsmkv-flush-0"]) == {cpu}
    # the user's thread (which opened the DB and ran flush and compact_range) is not bound
    assert os.sched_getaffinity(threading.get_native_id()) == mine
    db.close()


def test_numa_node_binds_to_its_cpus(tmp_path):
    nodes = numa.topology()
    node, cpus = next(iter(nodes.items()))
    db = lsmkv.DB(str(tmp_path / "db"), numa_node=node)
    s = db.stats()["numa"]
    want = sorted(set(cpus) & os.sched_getaffinity(0))
    assert s["background_cpus"] == want
    assert s["nodes"] == nodes
    db.flush()
    assert all(c == want for c in db.stats()["numa"]["applied"].values())
    db.close()


def test_affinity_options_name_what_is_wrong(tmp_path):
    with pytest.raises(ValueError, match="background_cpus"):
        lsmkv.DB(str(tmp_path / "a"), background_cpus={100000})
    with pytest.raises(ValueError, match="numa_node"):
        lsmkv.DB(str(tmp_path / "b"), numa_node=4096)
    with pytest.raises(ValueError, match="background_cpus"):
        lsmkv.DB(str(tmp_path / "c"), background_cpus=[])
    with pytest.raises(TypeError, match="background_cpus"):
        lsmkv.DB(str(tmp_path / "d"), background_cpus=3)
    assert not os.path.exists(str(tmp_path / "a" / "CURRENT"))


SHARED_RSS_CHILD = RSS_CHILD.replace('''db = lsmkv.DB(sys.argv[1], write_buffer_size=8 << 20, block_cache_size=24 << 20)
out = []
for i in range(120000):
    db.put(b"%016d" % i, vals[i % 64])
db.flush()
u = db.memory_usage()''', '''cache = lsmkv.Cache(24 << 20)
dbs = [lsmkv.DB(os.path.join(sys.argv[1], str(n)), write_buffer_size=2 << 20, block_cache=cache)
       for n in range(10)]
out = []
for i in range(120000):
    dbs[i % 10].put(b"%016d" % i, vals[i % 64])
for d in dbs:
    d.flush()
db = dbs[3]
u = lsmkv.memory_usage()''').replace('''        db.get(b"%016d" % rng.randrange(120000))
u = db.memory_usage()''', '''        k = rng.randrange(120000)
        dbs[k % 10].get(b"%016d" % k)
u = lsmkv.memory_usage()''').replace("db.close()", "for d in dbs:\n    d.close()")


def test_process_memory_usage_matches_rss_growth_with_ten_dbs_sharing_a_cache(tmp_path):
    """The same check with 10 DBs on the shared background pool and one lsmkv.Cache:
    lsmkv.memory_usage() (the cache counted once) is within 10% of the RSS growth."""
    assert SHARED_RSS_CHILD.count("lsmkv.memory_usage()") == 2 and "d.close()" in SHARED_RSS_CHILD
    os.makedirs(tmp_path / "dbs")
    u, cache = run_rss_child(SHARED_RSS_CHILD, tmp_path / "dbs")
    assert u["dbs"] == 10 and u["caches"] == 1 and cache.get("shared")
    assert u["cache_payload"] == cache["usage"] > 0


def test_process_memory_usage_counts_a_shared_cache_once(tmp_path):
    before = lsmkv.memory_usage()          # DBs other tests left open, if any
    shared = lsmkv.Cache(4 * MiB)
    dbs = [lsmkv.DB(str(tmp_path / f"s{i}"), block_cache=shared) for i in range(2)]
    dbs.append(lsmkv.DB(str(tmp_path / "own"), block_cache_size=4 * MiB))
    try:
        for n, db in enumerate(dbs):
            for i in range(3000):
                db.put(b"%d-%06d" % (n, i), b"v" * 200)
            db.flush()
            for i in range(3000):
                assert db.get(b"%d-%06d" % (n, i)) == b"v" * 200
        per_db = [db.memory_usage() for db in dbs]
        u = lsmkv.memory_usage()
        assert u["dbs"] == before["dbs"] + 3 and u["caches"] == before["caches"] + 2
        own = per_db[2]["cache_payload"]
        assert per_db[0]["cache_payload"] == per_db[1]["cache_payload"] > 0    # each reports the whole cache
        # the shared cache once, not once per DB
        assert u["cache_payload"] - before["cache_payload"] == per_db[0]["cache_payload"] + own
        assert u["total"] == sum(v for k, v in u.items() if k not in ("total", "pinned", "dbs", "caches"))
    finally:
        for db in dbs:
            db.close()
    assert lsmkv.memory_usage()["dbs"] == before["dbs"]
