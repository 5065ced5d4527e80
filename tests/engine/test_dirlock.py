"""The directory lock (lsmkv.engine.dirlock): one holder per directory, named when refused,
and fork-safe. Other processes here are real ones: a `python -c` child, or os.fork()."""
import os
import subprocess
import sys

import pytest

import lsmkv
from lsmkv.engine.dirlock import DirLock, holder_pid
from conftest import lsmkv_import_path

HOLD = """
import sys
sys.path.insert(0, sys.argv[1])
import lsmkv
db = lsmkv.DB(sys.argv[2], compaction_worker="thread")
print("open", flush=True)
sys.stdin.read()          # until the test closes our stdin
db.close()
"""


def _holder(path):
    """A child process holding the DB at path open; returns the Popen once it does."""
    p = subprocess.Popen([sys.executable, "-c", HOLD, lsmkv_import_path(), path], cwd="/",
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline() == "open\n"
    return p


def _stop(p):
    p.stdin.close()
    assert p.wait() == 0


def test_a_second_holder_in_this_process_is_refused_and_named(tmp_path):
    lock = DirLock.acquire(tmp_path, "a backup")
    try:
        assert lock.held
        with pytest.raises(lsmkv.LockError, match=r"already open in this process \(by a backup\)"):
            lsmkv.DB(tmp_path)
        with pytest.raises(lsmkv.LockError, match="open in this process"):
            DirLock.acquire(str(tmp_path) + "/.", "a DB")    # the same directory by another name
    finally:
        lock.release()
    lock.release()                       # idempotent
    assert not lock.held
    lsmkv.DB(tmp_path, compaction_worker="thread").close()


def test_another_process_holding_it_is_named_by_pid(dbpath):
    p = _holder(dbpath)
    try:
        with pytest.raises(lsmkv.LockError) as ei:
            lsmkv.DB(dbpath)
        assert str(ei.value) == f"{dbpath} is locked by another process (pid {p.pid})"
        with open(os.path.join(dbpath, "LOCK")) as fh:     # (this process holds no lock on it)
            assert fh.read() == f"{p.pid}\n"
            assert holder_pid(fh.fileno()) == p.pid
    finally:
        _stop(p)
    with open(os.path.join(dbpath, "LOCK")) as fh:
        assert fh.read() == ""                   # emptied at release
        assert holder_pid(fh.fileno()) == 0
    with lsmkv.DB(dbpath, compaction_worker="thread") as db:
        db.put(b"k", b"v")


def _in_child(body):
    """Run body() in an os.fork() child; returns its exit code (body's return value)."""
    pid = os.fork()
    if pid == 0:
        code = 99
        try:
            code = body()
        finally:
            os._exit(code)
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])


def test_a_forked_child_sees_the_parent_as_another_process(dbpath):
    db = lsmkv.DB(dbpath, compaction_worker="thread")
    db.put(b"k", b"v")
    r, w = os.pipe()
    go_r, go_w = os.pipe()
    pid = os.fork()
    if pid == 0:                                 # the child
        out = 1
        try:
            os.close(r)
            os.close(go_w)
            try:
                lsmkv.DB(dbpath, compaction_worker="thread")
                msg = "opened"
            except lsmkv.LockError as e:
                msg = str(e)
            os.write(w, msg.encode() + b"\n")
            os.read(go_r, 1)                     # the parent has closed its DB
            with lsmkv.DB(dbpath, compaction_worker="thread") as mine:
                out = 0 if mine.get(b"k") == b"v" else 2
        finally:
            os._exit(out)
    os.close(w)
    os.close(go_r)
    try:
        with os.fdopen(r) as fh:
            msg = fh.readline().strip()
        assert msg == f"{dbpath} is locked by another process (pid {os.getpid()})"
        # the child's closing its copy of the LOCK descriptor did not drop our lock
        code = "import sys, lsmkv\ntry:\n    lsmkv.DB(sys.argv[1])\nexcept lsmkv.LockError as e:\n    print(e)"
        r = subprocess.run([sys.executable, "-c", code, dbpath], cwd="/", capture_output=True, text=True,
                           env=dict(os.environ, PYTHONPATH=lsmkv_import_path()), check=True)
        assert r.stdout.strip() == f"{dbpath} is locked by another process (pid {os.getpid()})"
    finally:
        db.close()
        os.write(go_w, b"x")                     # the child may open it now
        os.close(go_w)
        status = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
    assert status == 0                           # and it did, and read the parent's data


def _fds_open_on(path):
    out = []
    for name in os.listdir("/proc/self/fd"):
        try:
            if os.readlink(f"/proc/self/fd/{name}") == path:
                out.append(int(name))
        except OSError:
            pass
    return out


def test_a_forked_child_closes_the_inherited_descriptor_and_leaves_its_number_alone(tmp_path):
    lock = DirLock.acquire(tmp_path, "a test")
    [number] = _fds_open_on(str(tmp_path / "LOCK"))

    def child():
        if _fds_open_on(str(tmp_path / "LOCK")) or lock.held:
            return 1
        fd = os.open(os.devnull, os.O_RDONLY)
        os.dup2(fd, number)                      # the number is reused...
        lock.release()                           # ...so this must not close it
        os.fstat(number)
        return 0

    try:
        assert _in_child(child) == 0
        assert lock.held
    finally:
        lock.release()
