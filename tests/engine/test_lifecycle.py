"""Process lifecycles a user meets: fork() with an open DB, a DB nobody closed,
interpreter exit, iterators and snapshots outliving their DB.

Each scenario that could crash or corrupt runs in a child interpreter (a parent
killed by SIGBUS must not take pytest with it), with real os.fork and
multiprocessing children. The background-race stress test is at the end
(tests/engine/test_lifecycle.py can also be run as a script for a longer stress run).
"""
import gc
import os
import subprocess
import sys
import threading
import time

import pytest

if __name__ == "__main__":     # run as a script: conftest.py is one folder up
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import lsmkv  # noqa: E402
from conftest import lsmkv_import_path, run_child  # noqa: E402

# every child script starts with this: the lsmkv under test, the DB path in argv[2]
PRELUDE = """\
import gc, os, signal, sys, time
sys.path.insert(0, sys.argv[1])
import lsmkv
path = sys.argv[2]

def exit_status(pid):
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
"""


def run_script(body, dbpath, timeout=120):
    """Run PRELUDE + body in a fresh interpreter; its stdout, or an AssertionError
    with everything it said if it did not exit 0 (a SIGBUS shows as -7)."""
    r = run_child(PRELUDE + body, lsmkv_import_path(), dbpath, timeout=timeout, check=False)
    assert r.returncode == 0, f"child exited {r.returncode}:\n{r.stdout}\n{r.stderr}"
    return r.stdout


def lsmkv_threads():
    return [t.name for t in threading.enumerate() if t.name.startswith("lsmkv-")]


# ---------------------------------------------------------------- fork


# The parent writes across several log switches after the child is done: with the
# child's close() truncating the shared mapped log, the parent died of SIGBUS here.
PARENT_AFTER_CHILD = """
db = lsmkv.DB(path, write_buffer_size=256 * 1024)
for i in range(2000):
    db.put(b"before%05d" % i, b"x" * 100)
pid = os.fork()
if pid == 0:
    CHILD
    os._exit(0)
status = exit_status(pid)
print("child status", status)
for i in range(20000):
    db.put(b"after%05d" % i, b"y" * 100)
db.close()
with lsmkv.DB(path) as db:
    assert all(db.get(b"before%05d" % i) == b"x" * 100 for i in range(2000))
    assert all(db.get(b"after%05d" % i) == b"y" * 100 for i in range(20000))
    assert db.get(b"child") is None, "a child's write reached the parent's database"
print("parent intact")
"""


def child_body(code):
    return PARENT_AFTER_CHILD.replace("    CHILD", "\n".join("    " + line for line in code.splitlines()))


def test_fork_child_that_closes_leaves_the_parent_intact(dbpath):
    out = run_script(child_body(
        "try:\n    db.put(b'child', b'1')\n    os._exit(3)\nexcept lsmkv.ForkedError:\n    pass\n"
        "db.close()\ndb.close()"), dbpath)
    assert "child status 0" in out and "parent intact" in out


def test_fork_child_that_exits_through_atexit_leaves_the_parent_intact(dbpath):
    # sys.exit runs the child's atexit hooks, which close every DB this process has
    out = run_script(child_body("sys.exit(0)"), dbpath)
    assert "child status 0" in out and "parent intact" in out


def test_fork_child_that_drops_the_handle_leaves_the_parent_intact(dbpath):
    out = run_script(child_body("del db\ngc.collect()\nsys.exit(0)"), dbpath)
    assert "child status 0" in out and "parent intact" in out


def test_fork_child_every_operation_raises_forked_error(dbpath):
    body = """
db = lsmkv.DB(path)
db.put(b"k", b"v")
snap = db.snapshot()
it = db.items()
next(it)
cur = db.iterator()
cur.seek_to_first()
pid = os.fork()
if pid == 0:
    ops = {
        "iterator()": lambda: db.iterator(), "snapshot iterator()": lambda: snap.iterator(),
        "cursor seek": lambda: cur.seek(b"k"), "cursor key": lambda: cur.key(),
        "cursor next": lambda: cur.next(), "cursor valid": lambda: cur.valid(),
        "put": lambda: db.put(b"child", b"1"), "get": lambda: db.get(b"k"),
        "getitem": lambda: db[b"k"], "contains": lambda: b"k" in db,
        "delete": lambda: db.delete(b"k"), "write": lambda: db.write(db.batch()),
        "items": lambda: db.items(), "iterator next": lambda: next(it),
        "snapshot": lambda: db.snapshot(), "snapshot get": lambda: snap.get(b"k"),
        "snapshot items": lambda: list(snap.items()), "flush": lambda: db.flush(),
        "compact_range": lambda: db.compact_range(), "ttl": lambda: db.ttl(b"k"),
        "get_view": lambda: db.get_view(b"k"), "sync_wal": lambda: db.sync_wal(),
        "stats": lambda: db.stats(), "memory_usage": lambda: db.memory_usage(),
    }
    bad = []
    for name, op in ops.items():
        try:
            op()
            bad.append(name + ": no error")
        except lsmkv.ForkedError as e:
            if "fork" not in str(e) or str(os.getppid()) not in str(e):
                bad.append(name + ": unclear message " + str(e))
        except Exception as e:
            bad.append(name + ": " + repr(e))
    print("bad:", bad, flush=True)
    os._exit(0 if not bad else 5)
status = exit_status(pid)
assert status == 0, status
assert db.get(b"k") == b"v" and snap.get(b"k") == b"v"
assert next(it, None) is None      # the parent's iterator goes on (its only key was read)
assert cur.valid() and cur.item() == (b"k", b"v")
db.put(b"k2", b"v2")
db.close()
print("ok")
"""
    assert "ok" in run_script(body, dbpath)


def test_fork_child_can_open_only_after_the_parent_closed(dbpath):
    body = """
db = lsmkv.DB(path)
db.put(b"k", b"v")
r, w = os.pipe()
tried_r, tried_w = os.pipe()            # the child has tried while the parent holds it
pid = os.fork()
if pid == 0:
    os.close(w)
    try:
        lsmkv.DB(path)
        os._exit(3)
    except lsmkv.LockError as e:
        msg = str(e)
        if "in this process" in msg or str(os.getppid()) not in msg:
            print("unclear:", msg, flush=True)
            os._exit(4)
    os.write(tried_w, b"x")
    os.read(r, 1)                       # the parent has closed it
    with lsmkv.DB(path) as mine:
        ok = mine.get(b"k") == b"v"
        mine.put(b"from-child", b"1")
    os._exit(0 if ok else 5)
os.close(r)
os.close(tried_w)
os.read(tried_r, 1)                     # (b"" if the child exited early)
db.close()
os.write(w, b"x")
status = exit_status(pid)
assert status == 0, status
with lsmkv.DB(path) as db:
    assert db.get(b"from-child") == b"1"
print("ok")
"""
    assert "ok" in run_script(body, dbpath)


MP_SCRIPT = """
import multiprocessing as mp

def use_inherited(q):
    try:
        db.put(b"child", b"1")
        q.put("no error")
    except lsmkv.ForkedError:
        q.put("forked")

def open_own(q, path):
    try:
        lsmkv.DB(path)
        q.put("opened")
    except lsmkv.LockError as e:
        q.put("locked " + str(e))

def open_after_close(q, path):
    with lsmkv.DB(path) as mine:
        q.put(mine.get(b"k"))

if __name__ == "__main__":
    ctx = mp.get_context(METHOD)
    db = lsmkv.DB(path, write_buffer_size=256 * 1024)
    db.put(b"k", b"v")
    q = ctx.Queue()
    results = {}
    if METHOD == "fork":
        p = ctx.Process(target=use_inherited, args=(q,)); p.start(); p.join()
        results["inherited"] = q.get()
    else:
        try:
            ctx.Process(target=use_inherited, args=(db,)).start()
            results["inherited"] = "pickled"
        except TypeError as e:
            results["inherited"] = "not picklable" if "cannot be pickled" in str(e) else repr(e)
    p = ctx.Process(target=open_own, args=(q, path)); p.start(); p.join()
    results["own"] = q.get()
    for i in range(5000):                 # several log switches after the children
        db.put(b"after%d" % i, b"x" * 100)
    db.close()
    p = ctx.Process(target=open_after_close, args=(q, path)); p.start(); p.join()
    results["after close"] = q.get()
    with lsmkv.DB(path) as db:
        assert db.get(b"child") is None and db.get(b"after4999") == b"x" * 100
    print(results)
"""


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_multiprocessing(method, dbpath, tmp_path):
    script = tmp_path / "mp_script.py"      # spawn re-imports the main module from a file
    script.write_text(PRELUDE + MP_SCRIPT.replace("METHOD", repr(method)))
    r = subprocess.run([sys.executable, str(script), lsmkv_import_path(), dbpath], cwd="/",
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    results = eval(r.stdout.strip().splitlines()[-1])
    assert results["inherited"] == ("forked" if method == "fork" else "not picklable")
    assert results["own"].startswith("locked") and "in this process" not in results["own"]
    assert results["after close"] == b"v"


# ---------------------------------------------------------------- handles nobody closed


def test_dropped_handle_closes_the_db(dbpath):
    def f():
        db = lsmkv.DB(dbpath, write_buffer_size=64 * 1024)
        for i in range(3000):      # memtable switches: the background threads are busy
            db.put(b"k%05d" % i, b"v" * 50)

    with pytest.warns(ResourceWarning, match="was not closed"):
        f()
        gc.collect()
    assert not lsmkv_threads()
    with lsmkv.DB(dbpath) as db:            # the lock is free; nothing acknowledged is lost
        assert sum(1 for _ in db.keys()) == 3000


def test_dropped_handle_stops_its_worker_process(dbpath):
    db = lsmkv.DB(dbpath, write_buffer_size=64 * 1024, level0_file_num_compaction_trigger=2,
                  compaction_worker="process")
    for i in range(8000):
        db.put(b"k%05d" % (i % 3000), b"v" * 50)
    db.flush()
    deadline = time.monotonic() + 60
    while db.stats()["compaction_worker"].get("pid") is None and time.monotonic() < deadline:
        db.flush()
        time.sleep(0.05)
    pid = db.stats()["compaction_worker"]["pid"]
    assert pid is not None
    with pytest.warns(ResourceWarning):
        del db
        gc.collect()
    with pytest.raises(ProcessLookupError):
        for _ in range(100):               # reaped by close(): gone, not a zombie
            os.kill(pid, 0)
            time.sleep(0.05)
    assert not lsmkv_threads()


def test_handle_in_a_reference_cycle_is_closed_by_the_collector(dbpath):
    class Holder:
        pass

    h = Holder()
    h.self, h.db = h, lsmkv.DB(dbpath)
    h.db.put(b"k", b"v")
    with pytest.warns(ResourceWarning):
        del h
        gc.collect()
    with lsmkv.DB(dbpath) as db:
        assert db.get(b"k") == b"v"


def test_an_iterator_keeps_its_handle_open(dbpath):
    with lsmkv.DB(dbpath) as db:
        for i in range(100):
            db.put(b"k%03d" % i, b"v")
    # the handle is only referenced by the iterator: it must stay open while it runs
    keys = [k for k in lsmkv.DB(dbpath).keys()]
    assert len(keys) == 100
    gc.collect()
    lsmkv.DB(dbpath).close()


def test_dropped_handle_creates_nothing_in_a_deleted_directory(tmp_path):
    import shutil
    d = tmp_path / "db"
    db = lsmkv.DB(str(d), write_buffer_size=64 * 1024)
    for i in range(2000):
        db.put(b"k%05d" % i, b"v" * 50)
    del db
    gc.collect()
    shutil.rmtree(d)
    time.sleep(0.5)                 # a janitor still alive would make the next log here
    assert not d.exists()
    assert not lsmkv_threads()


def test_unclosed_db_is_closed_at_interpreter_exit(dbpath):
    body = """
db = lsmkv.DB(path, write_buffer_size=1 << 20, compaction_worker="process",
              level0_file_num_compaction_trigger=2)
for i in range(30000):
    db.put(b"k%06d" % i, b"v" * 100)
db.flush()
deadline = time.monotonic() + 60
while db.stats()["compaction_worker"].get("pid") is None and time.monotonic() < deadline:
    time.sleep(0.05)
db.put(b"last", b"1")
print("worker", db.stats()["compaction_worker"]["pid"], flush=True)
"""  # no close(): the script just ends
    out = run_script(body, dbpath)
    pid = int(out.split("worker ")[1].split()[0])
    with pytest.raises(ProcessLookupError):
        for _ in range(100):
            os.kill(pid, 0)
            time.sleep(0.05)
    logs = [f for f in os.listdir(dbpath) if f.endswith(".log")]
    # close() truncated the log to what it holds (an unclosed mapped log stays at its
    # preallocated size) and removed the spare log the janitor had made
    assert len(logs) == 1
    assert os.path.getsize(os.path.join(dbpath, logs[0])) < 64 * 1024
    with lsmkv.DB(dbpath) as db:
        assert db.get(b"last") == b"1" and db.get(b"k029999") == b"v" * 100


# ---------------------------------------------------------------- iterators and snapshots


def test_closed_iterator_raises_closed_error(dbpath):
    with lsmkv.DB(dbpath) as db:
        db.put(b"a", b"1")
        db.put(b"b", b"2")
        for reverse in (False, True):
            it = db.items(reverse=reverse)
            next(it)
            it.close()
            it.close()                      # idempotent
            with pytest.raises(lsmkv.ClosedError, match="iterator is closed"):
                next(it)
        it = db.keys()
        assert list(it) == [b"a", b"b"]
        with pytest.raises(StopIteration):   # exhausted, not closed: the usual protocol
            next(it)
        with db.values() as it:
            pass
        with pytest.raises(lsmkv.ClosedError):
            next(it)


def test_db_close_closes_its_iterators_and_snapshots(dbpath):
    db = lsmkv.DB(dbpath)
    for i in range(10):
        db.put(b"k%d" % i, b"v")
    fresh, started, backwards = db.items(), db.keys(), db.values(reverse=True)
    next(started)
    next(backwards)
    snap = db.snapshot()
    snap_it = snap.items()
    db.close()
    for it in (fresh, started, backwards, snap_it):
        with pytest.raises(lsmkv.ClosedError, match="database is closed"):
            next(it)
    for op in (lambda: snap.get(b"k1"), lambda: snap[b"k1"], lambda: snap.items(),
               lambda: snap.ttl(b"k1"), lambda: b"k1" in snap):
        with pytest.raises(lsmkv.ClosedError):
            op()
    snap.close()                             # still harmless


def test_iterator_of_a_closed_handle_never_yields_stale_data(dbpath):
    db = lsmkv.DB(dbpath, write_buffer_size=64 * 1024)
    for i in range(2000):
        db.put(b"k%05d" % i, b"old" * 20)
    db.flush()
    it = db.items()
    next(it)
    db.close()
    with lsmkv.DB(dbpath) as other:           # the keys are deleted and compacted away
        for i in range(2000):
            other.delete(b"k%05d" % i)
        other.compact_range()
        assert other.stats()["live_sst_bytes"] == 0
    with pytest.raises(lsmkv.ClosedError):
        next(it)


# ---------------------------------------------------------------- the background race


def stress(path, seconds, seed=1, switch_interval=5e-6):
    """Tiny write buffers (a memtable switch every few hundred puts), batches,
    iterators and snapshots opened and dropped in other threads, flushes and
    compactions all the while. Returns what went wrong (an empty list when fine)."""
    import random
    problems = []
    stop = threading.Event()
    db = lsmkv.DB(path, write_buffer_size=64 * 1024, max_write_buffer_number=3,
                  level0_file_num_compaction_trigger=2, target_file_size_base=64 * 1024,
                  max_background_jobs=3, compaction_worker="thread", block_cache_size=256 * 1024)
    expected = {}

    def writer(w):
        rnd = random.Random(seed * 100 + w)
        n = 0
        while not stop.is_set():
            k = b"w%d-%05d" % (w, rnd.randrange(3000))
            try:
                if rnd.random() < 0.2:
                    with db.write_batch() as wb:
                        wb.put(k, b"%d" % n)
                        wb.put(k + b"-pair", b"%d" % n)
                else:
                    db.put(k, b"%d" % n)
                expected[k] = b"%d" % n
            except Exception as e:          # noqa: BLE001 - every failure is reported
                problems.append(f"writer {w}: {e!r}")
                return
            n += 1

    def reader(r):
        rnd = random.Random(seed * 1000 + r)
        while not stop.is_set():
            try:
                if rnd.random() < 0.5:
                    with db.snapshot() as snap:
                        sum(1 for _ in snap.keys(b"w0", b"w1"))
                else:
                    it = db.items(b"w%d" % rnd.randrange(2))
                    for _ in range(rnd.randrange(50)):
                        if next(it, None) is None:
                            break
                    if rnd.random() < 0.5:
                        it.close()
                    del it                  # the rest are dropped half-read
            except Exception as e:          # noqa: BLE001
                problems.append(f"reader {r}: {e!r}")
                return

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(2)] + \
              [threading.Thread(target=reader, args=(r,)) for r in range(3)]
    # switch threads every few microseconds instead of every 5 ms: a thread is then
    # interrupted inside nearly every short Python-level loop over shared state
    interval = sys.getswitchinterval()
    sys.setswitchinterval(switch_interval)
    try:
        for t in threads:
            t.start()
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and not problems:
            err = db.stats()["background_error"]
            if err is not None:
                problems.append(f"background error: {err}")
            time.sleep(0.2)
        stop.set()
        for t in threads:
            t.join(60)
    finally:
        sys.setswitchinterval(interval)
    s = db.stats()
    if s["background_error"] is not None and not problems:
        problems.append(f"background error: {s['background_error']}")
    switches = s["flushes"]
    db.close()
    with lsmkv.DB(path) as db:
        wrong = [k for k, v in list(expected.items()) if db.get(k) != v]
    if wrong:
        problems.append(f"{len(wrong)} keys lost or wrong after reopen, e.g. {wrong[:3]}")
    return problems, switches


def test_log_numbers_are_only_touched_under_the_mutex(dbpath):
    """The race of item 6, deterministically: the janitor added a new log's number to
    the set without the mutex while other threads walked it. Every use of the set is
    recorded here when the mutex is free at that moment."""
    from lsmkv import testing
    with lsmkv.DB(dbpath, write_buffer_size=64 * 1024, compaction_worker="thread") as db:
        violations = testing.guard_log_numbers(db)
        for i in range(20000):        # ~30 memtable switches, each taking a spare log
            db.put(b"k%06d" % i, b"v" * 100)
        db.flush()
        assert db.stats()["flushes"] > 10
    assert not violations, violations[0][1]


def test_background_race_stress(dbpath):
    problems, flushes = stress(dbpath, float(os.environ.get("LSMKV_STRESS_SECONDS", "8")))
    assert not problems
    assert flushes > 20, "the stress run switched too few memtables to exercise anything"


if __name__ == "__main__":
    import argparse
    import tempfile
    ap = argparse.ArgumentParser(description="the lifecycle stress run, for longer than the suite's")
    ap.add_argument("--seconds", type=float, default=300)
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        problems, flushes = stress(os.path.join(d, "db"), a.seconds, a.seed)
    print(f"{flushes} flushes; problems: {problems or 'none'}")
    sys.exit(1 if problems else 0)
