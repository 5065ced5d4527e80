"""lsmkv.WriteBufferManager: one memtable limit for several DBs (Options(write_buffer_manager=)).
The limit is divided into one slot per memtable each DB may hold; every DB's write
buffer size is its slot, re-divided when a DB opens or closes."""
import os
import threading

import pytest

import lsmkv
from lsmkv import testing
from conftest import lsmkv_import_path, run_child

MiB = 1 << 20


def test_the_limit_is_divided_among_the_open_dbs(tmp_path):
    wbm = lsmkv.WriteBufferManager(16 * MiB)
    a = lsmkv.DB(str(tmp_path / "a"), write_buffer_manager=wbm)
    try:
        assert a.write_buffer_size == 8 * MiB                     # 16 MiB / 2 memtables
        b = lsmkv.DB(str(tmp_path / "b"), write_buffer_manager=wbm, max_write_buffer_number=6)
        assert a.write_buffer_size == b.write_buffer_size == 2 * MiB    # 16 MiB / (2 + 6)
        c = lsmkv.DB(str(tmp_path / "c"), write_buffer_manager=wbm, write_buffer_size=1 * MiB)
        assert c.write_buffer_size == 1 * MiB                     # never above its own option
        assert a.write_buffer_size == 16 * MiB // 10
        # the log is preallocated to the share, not to the option's 64 MiB
        assert os.path.getsize(testing.wal(c).path) <= 1 * MiB
        b.close()
        c.close()
        assert a.write_buffer_size == 8 * MiB
        s = a.stats()["write_buffer_manager"]
        assert s["limit"] == 16 * MiB and s["dbs"] == 1 and s["write_buffer_size"] == 8 * MiB
    finally:
        a.close()
    assert wbm.stats()["dbs"] == 0
    assert lsmkv.DB(str(tmp_path / "d")).stats()["write_buffer_manager"] is None


def test_busy_dbs_stay_within_the_limit(tmp_path):
    limit = 16 * MiB
    wbm = lsmkv.WriteBufferManager(limit)
    dbs = [lsmkv.DB(str(tmp_path / f"db{i}"), write_buffer_manager=wbm) for i in range(4)]
    stop = threading.Event()
    peak = [0]

    def sample():
        while not stop.is_set():
            peak[0] = max(peak[0], wbm.stats()["memtable_bytes"])
            stop.wait(0.002)

    def writer(i, db):
        for k in range(60000):
            db.put(b"k%07d" % k, b"%d" % i * 100)

    sampler = threading.Thread(target=sample)
    sampler.start()
    writers = [threading.Thread(target=writer, args=(i, db)) for i, db in enumerate(dbs)]
    try:
        for t in writers:
            t.start()
        for t in writers:
            t.join()
    finally:
        stop.set()
        sampler.join()
    try:
        # 8 memtables of a 2 MiB slot. Memory is counted in mapped 1 MiB arena chunks,
        # and a memtable is switched by the write that passes its size, which took a
        # third chunk (touched only by that write): one chunk each past the limit
        assert 0 < peak[0] <= limit + 8 * MiB + 64 * 1024, peak[0]
        for i, db in enumerate(dbs):
            assert db.stats()["flushes"] >= 3
            assert db.get(b"k%07d" % 59999) == b"%d" % i * 100
    finally:
        for db in dbs:
            db.close()


def test_write_buffer_manager_options_are_checked(tmp_path):
    with pytest.raises(ValueError, match="limit"):
        lsmkv.WriteBufferManager(1000)
    with pytest.raises(TypeError, match="write_buffer_manager"):
        lsmkv.Options(write_buffer_manager=64 * MiB)
    with pytest.raises(ValueError, match="adaptive_memory"):
        lsmkv.Options(write_buffer_manager=lsmkv.WriteBufferManager(64 * MiB), memory_budget=128 * MiB,
                      adaptive_memory=True)


def test_a_db_that_fails_to_open_leaves_the_manager(tmp_path):
    wbm = lsmkv.WriteBufferManager(16 * MiB)
    with lsmkv.DB(str(tmp_path / "a"), write_buffer_manager=wbm):
        with pytest.raises(lsmkv.LockError):
            lsmkv.DB(str(tmp_path / "a"), write_buffer_manager=wbm)
        assert wbm.stats()["dbs"] == 1


FORK_CHILD = """
import os, sys
sys.path.insert(0, sys.argv[1])
import lsmkv
base = sys.argv[2]
cache, wbm = lsmkv.Cache(4 << 20), lsmkv.WriteBufferManager(16 << 20)
dbs = [lsmkv.DB(os.path.join(base, "p%d" % i), block_cache=cache, write_buffer_manager=wbm) for i in range(2)]
for i, db in enumerate(dbs):
    for k in range(2000):
        db.put(b"k%05d" % k, b"parent%d" % i)
    db.flush()
    assert db.get(b"k00001") == b"parent%d" % i
pid = os.fork()
if pid == 0:
    try:
        assert wbm.stats()["dbs"] == 0                     # the parent's DBs are dead here
        db = lsmkv.DB(os.path.join(base, "child"), block_cache=cache, write_buffer_manager=wbm)
        assert db.write_buffer_size == 8 << 20
        for k in range(2000):
            db.put(b"k%05d" % k, b"child")
        db.flush()
        assert all(db.get(b"k%05d" % k) == b"child" for k in range(0, 2000, 3))
        db.close()
    except BaseException as e:
        print("child failed:", repr(e), flush=True)
        os._exit(1)
    os._exit(0)
assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0
assert wbm.stats()["dbs"] == 2
for i, db in enumerate(dbs):
    assert all(db.get(b"k%05d" % k) == b"parent%d" % i for k in range(0, 2000, 3))
    db.close()
print("ok")
"""


def test_fork_child_uses_an_inherited_cache_and_manager_for_its_own_dbs(tmp_path):
    r = run_child(FORK_CHILD, lsmkv_import_path(), str(tmp_path), timeout=120, check=False)
    assert r.returncode == 0 and "ok" in r.stdout, r.stdout + r.stderr
