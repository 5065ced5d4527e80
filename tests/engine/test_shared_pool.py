"""Many DBs in one process: every open DB's background work runs on one shared pool
(lsmkv.engine.pool), so threads do not grow with the number of DBs, and every
guarantee of a DB's own threads still holds: flushes and compactions of every DB,
close() of one DB while the others are busy, fork() children, handles nobody
closed, a flush never waiting behind a compaction."""
import gc
import os
import random
import threading
import time
import warnings

import pytest

import lsmkv
from lsmkv import testing
from conftest import lsmkv_import_path, run_child

SMALL = dict(write_buffer_size=64 * 1024, level0_file_num_compaction_trigger=2,
             target_file_size_base=64 * 1024, max_bytes_for_level_base=256 * 1024)


def lsmkv_threads():
    return sorted(t.name for t in threading.enumerate() if t.name.startswith("lsmkv-"))


def test_twenty_dbs_share_three_threads_and_all_flush_and_compact(tmp_path):
    base = threading.active_count()
    dbs = [lsmkv.DB(str(tmp_path / f"db{i}"), **SMALL) for i in range(20)]
    try:
        # flush, compact, misc: one thread each, whatever the number of DBs
        assert threading.active_count() <= base + 3, lsmkv_threads()
        assert lsmkv_threads() == ["lsmkv-compact-0", "lsmkv-flush-0", "lsmkv-misc-0"]
        assert dbs[0].stats()["background_pool"]["dbs"] == 20
        want = [{} for _ in dbs]

        def writer(w):
            rng = random.Random(w)
            for i in range(6000):
                d = rng.randrange(len(dbs))
                k, v = b"k%05d" % rng.randrange(1500), b"%d-%d" % (w, i) * 8
                with locks[d]:              # each DB's expected state follows its write order
                    dbs[d].put(k, v)
                    want[d][k] = v

        locks = [threading.Lock() for _ in dbs]
        writers = [threading.Thread(target=writer, args=(w,)) for w in range(4)]
        for t in writers:
            t.start()
        for t in writers:
            t.join()
        assert threading.active_count() <= base + 3, lsmkv_threads()
        for db, w in zip(dbs, want):
            db.flush()
        deadline = time.monotonic() + 60
        while (any(db.stats()["compactions"] == 0 for db in dbs) and time.monotonic() < deadline):
            time.sleep(0.05)
        for db, w in zip(dbs, want):
            s = db.stats()
            assert s["flushes"] >= 1 and s["compactions"] >= 1, s
            assert s["background_error"] is None
            testing.current_version(db).check()
            assert dict(db.items()) == w
        pids = {db.stats()["compaction_worker"]["pid"] for db in dbs}
        assert len(pids) == 1              # one worker process for the compact lane's one thread
    finally:
        for db in dbs:
            db.close()
    assert lsmkv_threads() == []           # the last DB closed stops the pool


def test_the_compact_lane_grows_to_what_a_db_asks_for_and_to_what_the_user_sets(tmp_path):
    a = lsmkv.DB(str(tmp_path / "a"))
    b = lsmkv.DB(str(tmp_path / "b"), max_background_jobs=4)
    try:
        assert lsmkv.background_threads()["compact"] == 3
        assert a.stats()["background_pool"]["compact"] == 3
        assert len(a.stats()["compaction_worker"]["pids"]) == 3
        b.close()
        assert lsmkv.background_threads()["compact"] == 1
        lsmkv.set_background_threads(2)
        lsmkv.set_background_threads(2, "flush")
        assert lsmkv.background_threads() == {"flush": 2, "compact": 2, "misc": 1, "pools": 1}
        deadline = time.monotonic() + 10
        while len(lsmkv_threads()) != 5 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert lsmkv_threads() == ["lsmkv-compact-0", "lsmkv-compact-1", "lsmkv-flush-0",
                                   "lsmkv-flush-1", "lsmkv-misc-0"]
    finally:
        lsmkv.set_background_threads(None)
        lsmkv.set_background_threads(None, "flush")
        a.close()
        b.close()
    with pytest.raises(ValueError, match="lane"):
        lsmkv.set_background_threads(1, "high")
    with pytest.raises(ValueError, match="int >= 1"):
        lsmkv.set_background_threads(0)


def test_dbs_with_different_background_priority_get_their_own_pool(tmp_path):
    a = lsmkv.DB(str(tmp_path / "a"), background_priority="low")
    b = lsmkv.DB(str(tmp_path / "b"), background_priority="normal")
    try:
        assert lsmkv.background_threads()["pools"] == 2
        ta = {t.native_id for t in testing.background_threads(a)}
        tb = {t.native_id for t in testing.background_threads(b)}
        assert ta and tb and not ta & tb
        assert all(os.getpriority(os.PRIO_PROCESS, t) == 19 for t in ta)
    finally:
        a.close()
        b.close()


def test_a_flush_does_not_wait_behind_the_compact_lane(tmp_path):
    db = lsmkv.DB(str(tmp_path / "db"), **SMALL)
    release = threading.Event()
    try:
        busy = testing.run_in_pool(db, release.wait, "compact")     # a "compaction" that never ends
        for i in range(2000):
            db.put(b"k%05d" % i, b"v" * 100)
        db.flush()                          # the flush lane runs it
        assert db.stats()["flushes"] >= 1
        assert not busy.is_set()
    finally:
        release.set()
        db.close()


def test_closing_one_db_while_the_others_are_busy(tmp_path):
    dbs = [lsmkv.DB(str(tmp_path / f"db{i}"), **SMALL) for i in range(4)]
    stop = threading.Event()
    errors = []

    def writer(db):
        i = 0
        try:
            while not stop.is_set():
                db.put(b"k%06d" % (i % 3000), b"v" * 100)
                i += 1
        except Exception as e:           # noqa: BLE001 - reported below
            errors.append(e)

    writers = [threading.Thread(target=writer, args=(db,)) for db in dbs[1:]]
    for t in writers:
        t.start()
    try:
        for i in range(3000):
            dbs[0].put(b"k%06d" % i, b"v" * 100)
        dbs[0].close()                      # returns with no step of it running
        jobs = testing.background_jobs(dbs[0])
        assert set(jobs.values()) == {"done"}, jobs
        assert testing.background_threads(dbs[0]) == []
        time.sleep(0.3)                     # the others go on
    finally:
        stop.set()
        for t in writers:
            t.join()
    assert not errors, errors
    for db in dbs[1:]:
        assert set(testing.background_jobs(db).values()) <= {"idle", "queued", "running"}
        db.flush()
        assert db.stats()["background_error"] is None
        db.close()
    with lsmkv.DB(str(tmp_path / "db0")) as db:
        assert sum(1 for _ in db.keys()) == 3000
    assert lsmkv_threads() == []


def test_unclosed_handles_are_closed_and_the_pool_goes_on(tmp_path):
    keep = lsmkv.DB(str(tmp_path / "keep"), **SMALL)
    try:
        def drop(name):
            db = lsmkv.DB(str(tmp_path / name), **SMALL)
            for i in range(2000):          # memtable switches: its jobs are busy
                db.put(b"k%05d" % i, b"v" * 50)

        with pytest.warns(ResourceWarning, match="was not closed"):
            drop("a")
            drop("b")
            gc.collect()
        assert keep.stats()["background_pool"]["dbs"] == 1
        for i in range(2000):
            keep.put(b"k%05d" % i, b"v" * 50)
        keep.flush()
        assert keep.stats()["flushes"] >= 1
        for name in ("a", "b"):
            with lsmkv.DB(str(tmp_path / name)) as db:     # the LOCK is free, nothing lost
                assert sum(1 for _ in db.keys()) == 2000
    finally:
        keep.close()
    assert lsmkv_threads() == []


def test_a_handle_finalized_in_a_pool_thread_is_closed_without_deadlock(tmp_path):
    """The collector may finalize a handle in a reference cycle inside any pool
    thread (while a step of another DB runs): its close must not wait for that lane."""
    keep = lsmkv.DB(str(tmp_path / "keep"))

    class Holder:
        pass

    try:
        h = Holder()
        h.self, h.db = h, lsmkv.DB(str(tmp_path / "cycle"))
        h.db.put(b"k", b"v")
        del h
        with pytest.warns(ResourceWarning):
            done = testing.run_in_pool(keep, gc.collect, "misc")
            assert done.wait(30)
            for t in threading.enumerate():
                if t.name.startswith("lsmkv-close:"):   # closes it outside the pool
                    t.join(30)
        assert keep.stats()["background_pool"]["dbs"] == 1
        with lsmkv.DB(str(tmp_path / "cycle")) as db:
            assert db.get(b"k") == b"v"
    finally:
        keep.close()


FORK_CHILD = """
import os, sys, threading
sys.path.insert(0, sys.argv[1])
import lsmkv
base = sys.argv[2]
dbs = [lsmkv.DB(os.path.join(base, "p%d" % i), write_buffer_size=64 * 1024) for i in range(3)]
for i in range(3000):
    for db in dbs:
        db.put(b"k%05d" % i, b"v" * 50)
pid = os.fork()
if pid == 0:
    try:
        names = [t.name for t in threading.enumerate() if t.name.startswith("lsmkv-")]
        assert names == [], names                      # threads do not survive fork
        assert lsmkv.background_threads()["pools"] == 0
        db = lsmkv.DB(os.path.join(base, "child"), write_buffer_size=64 * 1024)
        for i in range(3000):
            db.put(b"c%05d" % i, b"v" * 50)
        db.flush()
        assert db.stats()["flushes"] >= 1 and db.stats()["background_pool"]["dbs"] == 1
        db.close()
        for d in dbs:
            d.close()                                  # the parent's: released, not closed
        names = [t.name for t in threading.enumerate() if t.name.startswith("lsmkv-")]
        assert names == [], names
    except BaseException as e:
        print("child failed:", repr(e), flush=True)
        os._exit(1)
    os._exit(0)
status = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
assert status == 0, status
for i in range(3000, 6000):                            # the parent's pool goes on
    for db in dbs:
        db.put(b"k%05d" % i, b"v" * 50)
for db in dbs:
    db.flush()
    assert db.stats()["background_error"] is None
    assert sum(1 for _ in db.keys()) == 6000
    db.close()
print("ok")
"""


def test_fork_child_starts_with_no_pool_and_makes_its_own(tmp_path):
    r = run_child(FORK_CHILD, lsmkv_import_path(), str(tmp_path), timeout=120, check=False)
    assert r.returncode == 0 and "ok" in r.stdout, r.stdout + r.stderr


def test_dbs_opened_and_closed_from_many_threads_at_once(tmp_path):
    """Pools start and stop while other threads open, write, flush, compact and close
    DBs (or drop them unclosed): nothing hangs, nothing is lost, nothing is left."""
    errors = []

    def churn(w):
        try:
            rng = random.Random(w)
            for rnd in range(6):
                path = str(tmp_path / f"w{w}")
                db = lsmkv.DB(path, **SMALL, max_background_jobs=rng.choice([2, 3]),
                              background_priority=rng.choice(["low", "normal"]))
                for i in range(rng.randrange(200, 3000)):
                    db.put(b"k%05d" % i, b"%d" % rnd * 50)
                if rng.random() < 0.3:
                    db.compact_range()
                if rng.random() < 0.3:
                    del db                    # unclosed: its finalizer closes it
                    gc.collect()
                else:
                    db.close()
                with lsmkv.DB(path, **SMALL) as db:
                    assert db.get(b"k00000") == b"%d" % rnd * 50
        except BaseException as e:        # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=churn, args=(w,)) for w in range(6)]
    with warnings.catch_warnings():           # process-wide: not switched per thread
        warnings.simplefilter("ignore", ResourceWarning)
        for t in threads:
            t.start()
        for t in threads:
            t.join(300)
    assert not any(t.is_alive() for t in threads), "a thread hangs"
    assert not errors, errors
    for t in threading.enumerate():
        if t.name.startswith("lsmkv-close:"):
            t.join(30)
    assert lsmkv_threads() == []
    assert lsmkv.background_threads()["pools"] == 0


def test_a_compaction_due_at_open_does_not_race_the_janitor_job(tmp_path):
    """A DB reopened with level 0 at its compaction trigger compacts in the first
    step of its compaction job, which wakes the janitor's job when done: that job
    exists before any other is added (a compaction finishing first once failed the
    DB with "'NoneType' object has no attribute 'set'", seen in CI)."""
    import time
    d = str(tmp_path / "db")
    opts = dict(level0_file_num_compaction_trigger=2, compaction_worker="thread")
    with lsmkv.DB(d, **opts) as db:
        with db.no_background_compactions():
            for i in range(2):
                db.put(b"k%d" % i, b"v")
                db.flush()
    for round_ in range(20):
        with lsmkv.DB(d, **opts) as db:
            end = time.time() + 10
            while db.stats()["levels"][0]["files"] >= 2 and time.time() < end:
                time.sleep(0.002)
            assert db.stats()["background_error"] is None, (round_, db.stats()["background_error"])
            db.put(b"k", b"v%d" % round_)             # a write succeeds
            with db.no_background_compactions():
                for i in range(2):                    # level 0 at the trigger again for the reopen
                    db.put(b"r%d-%d" % (round_, i), b"v")
                    db.flush()
