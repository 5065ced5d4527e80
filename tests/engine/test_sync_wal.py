"""DB.sync_wal(): every write acknowledged before it survives a power loss
(a real child process, SIGKILLed, then the fault shim's power-loss model, with
every unsynced page dropped); a failed sync makes the DB read-only."""
import os
import random
import shutil
import signal
import subprocess
import sys
import textwrap

import pytest

import lsmkv
from conftest import lsmkv_import_path

TOOLS = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "tools")
sys.path.insert(0, TOOLS)
import faultinject as fi  # noqa: E402

needs_cc = pytest.mark.skipif(shutil.which("gcc") is None and shutil.which("cc") is None,
                              reason="the fault-injection shim needs a C compiler (gcc)")

CHILD = textwrap.dedent("""
    import os, sys, time
    import lsmkv
    db = lsmkv.DB(sys.argv[1], write_buffer_size=256 * 1024, wal_mmap=sys.argv[2] == "1")
    v = b"v" * 200
    for i in range(6000):                 # several log switches: retired logs too
        db.put(b"a%06d" % i, v)
    db.sync_wal()
    os.write(1, b"synced\\n")
    for i in range(300):                  # acknowledged, never synced
        db.put(b"b%06d" % i, v)
    os.write(1, b"more\\n")
    time.sleep(60)
""")


def run_child(tmp_path, wal_mmap):
    fs = fi.FaultFS(str(tmp_path / "fs"))
    dbpath = os.path.join(fs.root, "db")
    os.makedirs(dbpath)
    fs.reset()
    env = fs.env()
    env["PYTHONPATH"] = lsmkv_import_path()
    p = subprocess.Popen([sys.executable, "-c", CHILD, dbpath, "1" if wal_mmap else "0"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd="/", env=env)
    try:
        assert p.stdout.readline() == b"synced\n", p.stderr.read().decode()[-2000:]
        assert p.stdout.readline() == b"more\n"
    finally:
        p.send_signal(signal.SIGKILL)
        p.wait(timeout=30)
    # the worst case the model allows: no page written since its last sync reaches the disk
    res = fs.power_loss(random.Random(3), tail="truncate", writeback=lambda names, page: False)
    return dbpath, res


@needs_cc
@pytest.mark.parametrize("wal_mmap", [True, False])
def test_sync_wal_makes_earlier_writes_survive_power_loss(tmp_path, wal_mmap):
    dbpath, res = run_child(tmp_path, wal_mmap)
    with lsmkv.DB(dbpath) as db:
        missing = [i for i in range(6000) if db.get(b"a%06d" % i) != b"v" * 200]
        after = sum(db.get(b"b%06d" % i) is not None for i in range(300))
    assert missing == []
    # the model did drop the unsynced tail: without sync_wal those writes are gone
    assert after < 300
    assert res.bytes_dropped + res.pages_lost > 0


def test_sync_wal_counts_and_refuses_a_closed_db(tmp_path):
    db = lsmkv.DB(str(tmp_path / "db"))
    db.put(b"k", b"v")
    s0 = db.stats()["syncs"]
    db.sync_wal()
    db.sync_wal()
    assert db.stats()["syncs"] == s0 + 2
    db.close()
    with pytest.raises(lsmkv.ClosedError):
        db.sync_wal()


@needs_cc
def test_failed_sync_wal_makes_the_db_read_only(tmp_path):
    fs = fi.FaultFS(str(tmp_path / "fs"))
    dbpath = os.path.join(fs.root, "db")
    os.makedirs(dbpath)
    fs.reset()
    code = textwrap.dedent("""
        import sys
        import lsmkv
        db = lsmkv.DB(sys.argv[1], wal_mmap=False)
        db.put(b"k", b"v")
        try:
            db.sync_wal()
        except OSError as e:
            print("sync failed", e.errno)
        try:
            db.put(b"k2", b"v")
        except lsmkv.BackgroundError:
            print("read-only")
        print("read", db.get(b"k"))
        db.close()
    """)
    env = fs.env(rules="op=fdatasync,path=*.log,nth=1,errno=EIO;op=fsync,path=*.log,nth=1,errno=EIO")
    env["PYTHONPATH"] = lsmkv_import_path()
    out = subprocess.run([sys.executable, "-c", code, dbpath], capture_output=True, cwd="/",
                         env=env, timeout=60)
    text = out.stdout.decode()
    assert out.returncode == 0, out.stderr.decode()[-2000:]
    assert "sync failed 5" in text and "read-only" in text and "read b'v'" in text
