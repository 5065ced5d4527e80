"""Read-only opens and secondaries (lsmkv.engine.follower): in this process, and with
real processes (a writer under load, read-only readers and a secondary checked against
the writer's op stream; the writer killed with SIGKILL and restarted)."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest

import lsmkv
from conftest import lsmkv_import_path

HERE = os.path.dirname(os.path.abspath(__file__))
WORKLOAD = os.path.join(HERE, "follower_workload.py")


def listing(path):
    """Every file of a directory with its size and mtime."""
    return {n: (os.stat(os.path.join(path, n)).st_size, os.stat(os.path.join(path, n)).st_mtime_ns)
            for n in os.listdir(path)}


def fill(db, n, prefix=b"k", start=0):
    for i in range(start, start + n):
        db.put(prefix + b"%06d" % i, b"v%d" % i)


def test_read_only_reads_a_held_db_as_of_its_open_and_writes_nothing(tmp_path):
    d = str(tmp_path / "db")
    primary = lsmkv.DB(d, write_buffer_size=64 * 1024)
    fill(primary, 3000)
    primary.flush()
    fill(primary, 500, start=3000)                # these are only in the log
    with primary.snapshot():
        pass
    ro = lsmkv.DB(d, read_only=True)
    ro2 = lsmkv.DB(d, read_only=True)             # any number of them
    assert ro.get(b"k000001") == b"v1" and ro.get(b"k003499") == b"v3499"
    assert sum(1 for _ in ro.keys()) == 3500 == sum(1 for _ in ro2.keys())
    assert ro.stats()["mode"] == "read_only" and primary.stats()["mode"] == "primary"
    with ro.snapshot() as snap:
        assert snap.get(b"k000002") == b"v2"
    # later writes, flushes and a compaction that deletes every table it had open
    fill(primary, 1000, prefix=b"z")
    primary.delete(b"k000001")
    primary.compact_range()
    assert sum(1 for _ in ro.keys()) == 3500 and ro.get(b"k000001") == b"v1"
    assert ro.get(b"z000001") is None
    with pytest.raises(lsmkv.ReadOnlyError, match="checkpoint"):
        ro.checkpoint(str(tmp_path / "copy"))
    for call in (lambda: ro.put(b"a", b"b"), lambda: ro.delete(b"a"), lambda: ro.flush(),
                 lambda: ro.compact_range(), lambda: ro.sync_wal(), lambda: ro.write(ro.batch()),
                 lambda: ro.__setitem__(b"a", b"b")):
        with pytest.raises(lsmkv.ReadOnlyError, match="read-only"):
            call()
    with pytest.raises(lsmkv.ReadOnlyError, match="secondary"):
        ro.catch_up()
    ro.close()
    ro2.close()
    with pytest.raises(lsmkv.ClosedError):
        ro.get(b"k000002")
    primary.close()
    # with no writer at all; and it writes nothing (checked here, where no primary's
    # background job may create a file meanwhile): no LOCK, no MANIFEST, no log
    before = listing(d)
    with lsmkv.DB(d, read_only=True) as ro:
        assert ro.get(b"k000001") is None and ro.get(b"z000999") == b"v999"
        assert listing(d) == before
    assert listing(d) == before


def test_read_only_needs_a_database(tmp_path):
    with pytest.raises(lsmkv.DatabaseNotFoundError):
        lsmkv.DB(str(tmp_path / "nothing"), read_only=True)
    assert not os.path.exists(tmp_path / "nothing")
    with pytest.raises(ValueError, match="exclude"):
        lsmkv.Options(read_only=True, secondary=str(tmp_path / "s"))
    with pytest.raises(TypeError, match="secondary"):
        lsmkv.Options(secondary=3)


def test_secondary_catches_up_across_flushes_compactions_and_restarts(tmp_path):
    d, own = str(tmp_path / "db"), str(tmp_path / "secondary")
    primary = lsmkv.DB(d, write_buffer_size=64 * 1024, level0_file_num_compaction_trigger=2)
    fill(primary, 100)
    sec = lsmkv.DB(d, secondary=own)
    assert sum(1 for _ in sec.keys()) == 100
    with pytest.raises(lsmkv.LockError):
        lsmkv.DB(d, secondary=own)                 # its directory is its own
    with pytest.raises(ValueError, match="of its own"):
        lsmkv.DB(d, secondary=d)
    fill(primary, 50, start=100)                   # the log only: tailed from where it stopped
    assert sec.catch_up() == 50 and sec.get(b"k000149") == b"v149"
    st = sec.stats()["follower"]
    assert st["mode"] == "secondary" and st["behind_bytes"] == 0 and st["behind_sequences"] == 0
    fill(primary, 10, start=150)
    st = sec.stats()["follower"]
    assert st["behind_sequences"] == 10 and st["behind_bytes"] > 0
    it = sec.items()                               # an iterator keeps the state it started with
    fill(primary, 3000, start=160)                 # flushes and compactions: tables come and go
    primary.compact_range()
    assert sec.catch_up() == 3010
    assert sum(1 for _ in it) == 150
    assert sum(1 for _ in sec.keys()) == 3160 and sec.get(b"k003159") == b"v3159"
    primary.close()                                # a restart: a new MANIFEST, a new log
    primary = lsmkv.DB(d, write_buffer_size=64 * 1024)
    primary.delete(b"k000000")
    assert sec.catch_up() == 1 and sec.get(b"k000000") is None
    with pytest.raises(lsmkv.FollowerError, match="snapshot"):
        sec.snapshot()
    with pytest.raises(lsmkv.ReadOnlyError, match="secondary"):
        sec.put(b"a", b"b")
    sec.close()
    primary.close()
    assert "LOCK" in os.listdir(own)


def test_secondary_with_catch_up_interval_follows_by_itself(tmp_path):
    d, own = str(tmp_path / "db"), str(tmp_path / "secondary")
    with pytest.raises(ValueError, match="catch_up_interval"):
        lsmkv.Options(catch_up_interval=1)            # needs secondary=
    with pytest.raises(ValueError, match="catch_up_interval"):
        lsmkv.Options(secondary=own, catch_up_interval=-1)
    primary = lsmkv.DB(d)
    sec = lsmkv.DB(d, secondary=own, catch_up_interval=0.02)
    primary.put(b"k", b"v")
    end = time.time() + 10
    while sec.get(b"k") is None:
        assert time.time() < end, "the background catch-up never ran"
        time.sleep(0.01)
    assert sec.stats()["follower"]["catch_ups"] >= 1 and sec.stats()["follower"]["last_error"] is None
    assert sec.stats()["background_pool"] is not None
    sec.close()
    n = sec.stats()["follower"]["catch_ups"]
    time.sleep(0.1)
    assert sec.stats()["follower"]["catch_ups"] == n       # closed: no more steps
    primary.close()


ALONE = r"""
import sys
sys.path.insert(0, sys.argv[2])
import lsmkv
d, own, other = sys.argv[1] + "/db", sys.argv[1] + "/secondary", sys.argv[1] + "/other"
with lsmkv.DB(d) as p:
    p.put(b"k", b"v")
assert lsmkv.background_threads()["pools"] == 0
with lsmkv.DB(d, secondary=own, catch_up_interval=0.05) as sec:
    assert lsmkv.background_threads() == {"flush": 0, "compact": 0, "misc": 1, "pools": 1}, \
        lsmkv.background_threads()
    with lsmkv.DB(other):                          # a primary joins the same pool
        sizes = lsmkv.background_threads()
        assert sizes["flush"] == 1 and sizes["compact"] >= 1, sizes
    assert lsmkv.background_threads()["flush"] == 0
    assert sec.get(b"k") == b"v"
assert lsmkv.background_threads()["pools"] == 0
print("ok")
"""


def test_a_following_secondary_alone_runs_one_pool_thread(tmp_path):
    """In a process with no primary open, a secondary's catch-up job is all the pool
    runs: the misc lane, no flush or compaction thread (nor worker); a primary that
    opens beside it brings them, and takes them away when it closes."""
    r = subprocess.run([sys.executable, "-c", ALONE, str(tmp_path), lsmkv_import_path()],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr[-3000:]


def run_workload(role, db, acked, seconds, *extra):
    env = dict(os.environ, LSMKV_IMPORT_PATH=lsmkv_import_path())
    return subprocess.Popen([sys.executable, WORKLOAD, role, db, acked, str(seconds), *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def finish(p, timeout=120):
    out, err = p.communicate(timeout=timeout)
    assert p.returncode == 0, (p.returncode, out[-2000:], err[-3000:])
    return json.loads(out.strip().splitlines()[-1]) if out.strip() else None


def wait_for(path, timeout=30):
    end = time.time() + timeout
    while not os.path.exists(path):
        assert time.time() < end, f"{path} did not appear"
        time.sleep(0.02)


def test_processes_readers_see_only_states_the_writer_passed_through(tmp_path):
    """A writer under load (puts, batches, deletes, flushes, compactions); two
    read-only readers reopening in a loop and a secondary catching up in a loop,
    each in its own process: every state any of them sees is the state after a
    prefix of the writer's ops, and never behind what was acknowledged before."""
    d, acked = str(tmp_path / "db"), str(tmp_path / "acked")
    writer = run_workload("writer", d, acked, 8)
    wait_for(os.path.join(d, "CURRENT"))
    readers = [run_workload("readonly", d, acked, 6) for _ in range(2)]
    readers.append(run_workload("secondary", d, acked, 6, str(tmp_path / "sec")))
    results = [finish(r) for r in readers]
    finish(writer)
    assert all(r["checks"] >= 3 for r in results), results
    n = int(open(acked).read().split()[-1])
    assert n > 2000, n                   # enough ops for flushes and a compaction to have run


def test_secondary_follows_a_writer_killed_and_restarted(tmp_path):
    """SIGKILL the writer at random moments and restart it (it goes on after the last
    op the DB holds) while a secondary catches up in a loop: the secondary's states
    stay prefixes of the op stream and it follows each new writer."""
    import random
    rng = random.Random(20)
    d, acked = str(tmp_path / "db"), str(tmp_path / "acked")
    writer = run_workload("writer", d, acked, 60)
    wait_for(os.path.join(d, "CURRENT"))
    sec = run_workload("secondary", d, acked, 9, str(tmp_path / "sec"))
    end = time.time() + 7
    kills = 0
    while time.time() < end:
        time.sleep(rng.uniform(0.3, 1.2))
        writer.send_signal(signal.SIGKILL)
        writer.wait()
        kills += 1
        writer = run_workload("writer", d, acked, 60)
    r = finish(sec)
    writer.send_signal(signal.SIGKILL)
    writer.wait()
    assert kills >= 3 and r["checks"] >= 5, (kills, r)
    with lsmkv.DB(d, secondary=str(tmp_path / "sec")) as s:   # and a last look
        n = max(int(x[1:]) for x in s.keys() if x[:1] == b"k")
        assert n >= int(open(acked, "rb").read().split(b"\n")[-2])


def test_secondary_of_a_database_made_again_reads_the_new_one(tmp_path):
    """destroy() and a new database at the same path lay out the same file names
    (MANIFEST-000003, the same table numbers): the secondary sees another MANIFEST
    file, drops its readers and cached blocks, and reads the new data, while an
    iterator it made before keeps reading the old files."""
    d, own = str(tmp_path / "db"), str(tmp_path / "secondary")
    p = lsmkv.DB(d)
    for i in range(100):
        p.put(b"k%03d" % i, b"OLD")
    p.flush()
    sec = lsmkv.DB(d, secondary=own)
    it = sec.items()
    assert sec.get(b"k001") == b"OLD"
    p.close()
    # the secondary holds the MANIFEST it loaded open, so the new one cannot take its
    # inode number and pass for it (same name, size and sequences otherwise)
    manifest = os.path.realpath(os.path.join(d, "MANIFEST-000003"))
    assert any(os.path.realpath("/proc/self/fd/" + f) == manifest for f in os.listdir("/proc/self/fd"))
    lsmkv.destroy(d)
    p = lsmkv.DB(d)
    for i in range(100):
        p.put(b"k%03d" % i, b"NEW")
    p.flush()
    sec.catch_up()
    assert sec.get(b"k001") == b"NEW" and all(v == b"NEW" for _, v in sec.items())
    assert [v for _, v in it] == [b"OLD"] * 100
    sec.close()
    p.close()
    with pytest.raises(ValueError, match="of its own"):
        lsmkv.DB(d, secondary=os.path.join(d, "inside"))
    assert not os.path.exists(os.path.join(d, "inside"))
