"""Compaction jobs and the worker process (lsmkv.engine.worker)."""
import json
import os
import signal
import sys
import threading
import time

import pytest

import lsmkv
from lsmkv import testing
from lsmkv.engine import filenames
from lsmkv.engine.worker import (Worker, WorkerDied, WorkerUnavailable, interpreter_problem, make_job,
                          numbers_needed, run_job)
from conftest import lsmkv_import_path, run_child


def _l0_db(path, n=20000, files=6):
    """A DB with `files` overlapping L0 tables (each key written `files` times)."""
    opts = dict(write_buffer_size=1 << 20, level0_file_num_compaction_trigger=100,
                level0_slowdown_writes_trigger=100, level0_stop_writes_trigger=100,
                compaction_worker="thread")
    db = lsmkv.DB(path, **opts)
    for r in range(files):
        for i in range(n):
            db.put(b"%08d" % i, b"%d-%d" % (r, i) + b"v" * 60)
        db.flush()
    return db


def _job(db, out_dir, numbers):
    files = list(testing.current_version(db).levels[0])
    paths = [(f.number, filenames.table_name(db.path, f.number)) for f in files]
    return make_job(paths, numbers, out_dir, db.options, db.last_seq, True, 0)


def test_numbers_needed_reserves_twice_the_input_plus_a_margin():
    assert numbers_needed(0, 1 << 20) == 4
    assert numbers_needed(10 << 20, 1 << 20) == 24


def test_process_and_thread_jobs_write_the_same_tables(tmp_path):
    db = _l0_db(str(tmp_path / "db"))
    try:
        results = {}
        for mode in ("thread", "process"):
            out = tmp_path / mode
            out.mkdir()
            job = _job(db, str(out), range(1000, 1100))
            if mode == "thread":
                results[mode] = run_job(job)
            else:
                w = Worker()
                try:
                    results[mode] = w.run(job)
                    assert w.jobs == 1 and w.restarts == 0
                finally:
                    w.close()
        t, p = results["thread"], results["process"]
        assert t["stats"] == p["stats"]
        assert t["stats"]["dropped_hidden"] == 20000 * 5     # each key's five older versions
        assert [m["num_entries"] for m in t["outputs"]] == [m["num_entries"] for m in p["outputs"]]
        assert sum(m["num_entries"] for m in p["outputs"]) == 20000
        for m in p["outputs"]:
            a = open(filenames.table_name(str(tmp_path / "thread"), m["number"]), "rb").read()
            b = open(filenames.table_name(str(tmp_path / "process"), m["number"]), "rb").read()
            assert a == b                       # byte-identical: the same code ran
    finally:
        db.close()


def test_worker_killed_mid_job_is_restarted_and_the_job_retried(tmp_path):
    db = _l0_db(str(tmp_path / "db"), n=60000, files=8)
    out = tmp_path / "out"
    out.mkdir()
    job = _job(db, str(out), range(2000, 2100))
    job["target_file_size"] = 256 << 10          # many outputs, so the kill lands mid-job
    w = Worker()
    box = {}
    try:
        w.start()
        victim = w.pid
        t = threading.Thread(target=lambda: box.update(r=w.run(job)))
        t.start()
        deadline = time.monotonic() + 30
        while not any(n.endswith(".sst") for n in os.listdir(out)):
            assert time.monotonic() < deadline, "the worker wrote no output"
            time.sleep(0.005)
        os.kill(victim, signal.SIGKILL)
        t.join(60)
        assert not t.is_alive()
        assert w.pid != victim and w.restarts == 1 and w.jobs == 1
        outputs = box["r"]["outputs"]
        assert sum(m["num_entries"] for m in outputs) == 60000
        # the dead worker's partial outputs were removed: only the retry's tables remain
        assert sorted(os.listdir(out)) == sorted(os.path.basename(m["path"]) for m in outputs)
    finally:
        w.close()
        db.close()


def test_job_errors_reach_the_caller_with_file_and_offset(tmp_path):
    db = _l0_db(str(tmp_path / "db"), n=2000, files=2)
    try:
        job = _job(db, str(tmp_path), range(3000, 3010))
        victim = job["inputs"][0][1]
        data = bytearray(open(victim, "rb").read())
        data[100] ^= 0x01                              # inside the first data block
        open(victim, "wb").write(bytes(data))
        w = Worker()
        try:
            with pytest.raises(lsmkv.CorruptionError) as ei:
                w.run(job)
            assert ei.value.path == victim and ei.value.offset == 0
        finally:
            w.close()
    finally:
        db.close()


def test_db_compacts_in_the_worker_and_survives_its_death(dbpath):
    opts = dict(write_buffer_size=256 << 10, target_file_size_base=256 << 10)
    with lsmkv.DB(dbpath, **opts) as db:
        assert db.options.compaction_worker == "process"
        for i in range(30000):
            db.put(b"%06d" % (i % 10000), b"%d" % i)
        db.compact_range()
        s = db.stats()["compaction_worker"]
        assert s["mode"] == "process" and s["jobs"] >= 1
        os.kill(s["pid"], signal.SIGKILL)
        for i in range(30000, 40000):
            db.put(b"%06d" % (i % 10000), b"%d" % i)
        db.compact_range()
        assert db.stats()["compaction_worker"]["restarts"] == 1
        assert dict(db.items()) == {b"%06d" % k: b"%d" % (30000 + k) for k in range(10000)}
        assert db.stats()["levels"][0]["files"] == 0


def test_worker_exits_with_its_parent(tmp_path):
    code = """
import os, sys, time
sys.path.insert(0, sys.argv[1])
import lsmkv
db = lsmkv.DB(sys.argv[2], write_buffer_size=256 << 10)
for i in range(20000):
    db.put(b"%06d" % i, b"v" * 50)
db.compact_range()
print(db.stats()["compaction_worker"]["pid"], flush=True)
os.kill(os.getpid(), 9)
"""
    r = run_child(code, lsmkv_import_path(), str(tmp_path / "db"), check=False)
    pid = int(r.stdout.split()[0])
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{pid}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                    return            # dead, waiting for its new parent to reap it
        except FileNotFoundError:
            return
        time.sleep(0.05)
    pytest.fail(f"worker {pid} outlived its parent")


def test_compaction_worker_option_is_checked():
    with pytest.raises(ValueError, match="compaction_worker"):
        lsmkv.Options(compaction_worker="fork")


@pytest.mark.parametrize("priority", ["low", "normal"])
def test_background_work_runs_at_the_chosen_cpu_priority(dbpath, priority):
    """background_priority='low' puts the flush, compaction and janitor threads and the
    worker process at nice 19 (the writer keeps its own); 'normal' leaves them."""
    base = os.getpriority(os.PRIO_PROCESS, 0)
    want = 19 if priority == "low" else base
    with lsmkv.DB(dbpath, write_buffer_size=256 << 10, background_priority=priority) as db:
        for i in range(20000):
            db.put(b"%06d" % i, b"v" * 50)
        db.compact_range()
        assert db.stats()["background_nice"] == (19 if priority == "low" else 0)
        for t in testing.background_threads(db):
            assert os.getpriority(os.PRIO_PROCESS, t.native_id) == want, t.name
        assert os.getpriority(os.PRIO_PROCESS, db.stats()["compaction_worker"]["pid"]) == want
        assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == base
    with pytest.raises(ValueError, match="background_priority"):
        lsmkv.Options(background_priority="high")


# ---------------------------------------------------------------- no worker possible

@pytest.mark.parametrize("exe,problem", [
    (None, None),
    ("/bin/false", "is not a Python interpreter (its file is named 'false')"),
    ("/nonexistent/python3", "is not an executable file"),
    ("", "sys.executable is empty"),
])
def test_interpreter_problem(exe, problem):
    got = interpreter_problem(exe, frozen=False)
    assert got is None if problem is None else got.endswith(problem)
    assert interpreter_problem(exe, frozen=True).startswith("sys.frozen is set")


@pytest.mark.parametrize("name", ["python", "python3", "python3.11", "python3.13t", "python3.11d",
                                  "pypy3", "pypy3.10", "python.exe", "pythonw"])
def test_interpreter_names_pass(tmp_path, name):
    exe = tmp_path / name
    exe.write_text("#!/bin/sh\n")
    exe.chmod(0o755)
    assert interpreter_problem(str(exe), frozen=False) is None
    link = tmp_path / "uwsgi"
    link.symlink_to(exe)                  # judged by the file it names
    assert interpreter_problem(str(link), frozen=False) is None


def _fake_python(tmp_path, body):
    """An executable named python3 in tmp_path running the shell body."""
    d = tmp_path / "bin"
    d.mkdir(exist_ok=True)
    exe = d / "python3"
    exe.write_text("#!/bin/sh\n" + body + "\n")
    exe.chmod(0o755)
    return str(exe)


# A child that puts `executable` in sys.executable before lsmkv sees it, then fills a DB
# with compactions: L0 stops writes at 3 files, so the writes cannot all go through
# unless compactions run. Prints the stats as JSON.
FALLBACK = """
import json, sys
sys.path.insert(0, sys.argv[1])
sys.executable = sys.argv[3]
import lsmkv
db = lsmkv.DB(sys.argv[2], write_buffer_size=64 << 10, level0_file_num_compaction_trigger=2,
              level0_slowdown_writes_trigger=2, level0_stop_writes_trigger=3)
want = {}
for i in range(40000):
    k, v = b"%06d" % (i % 7000), b"%d" % i + b"x" * 60
    db.put(k, v)
    want[k] = v
ok = dict(db.items()) == want
s = db.stats()
db.close()
print(json.dumps({"ok": ok, "worker": s["compaction_worker"], "compactions": s["compactions"],
                  "flushes": s["flushes"], "error": s["background_error"]}))
"""


def _fill_with(tmp_path, exe):
    r = run_child(FALLBACK, lsmkv_import_path(), str(tmp_path / "db"), exe, timeout=300)
    return json.loads(r.stdout)


def test_a_host_that_is_not_python_compacts_in_threads(tmp_path):
    """sys.executable is not an interpreter (uWSGI, a frozen app): found at open, no worker tried."""
    out = _fill_with(tmp_path, "/bin/false")
    assert out["ok"] and out["error"] is None
    assert out["compactions"] >= 1 and out["flushes"] >= 3
    assert out["worker"] == {"mode": "thread", "requested": "process",
                             "reason": interpreter_problem("/bin/false", frozen=False)}


def test_a_worker_that_never_starts_falls_back_to_threads(tmp_path):
    """sys.executable looks like Python but the worker dies at once: found at the first compaction."""
    out = _fill_with(tmp_path, _fake_python(tmp_path, "exit 1"))
    assert out["ok"] and out["error"] is None
    assert out["compactions"] >= 1
    w = out["worker"]
    assert (w["mode"], w["requested"]) == ("thread", "process")
    assert w["reason"].startswith("the compaction worker died before answering any job, twice")
    assert "status 1" in w["reason"]


def test_the_default_reports_the_process_mode(dbpath):
    with lsmkv.DB(dbpath) as db:
        s = db.stats()["compaction_worker"]
        assert s["mode"] == "process" and s["requested"] == "process" and "reason" not in s
    with lsmkv.DB(dbpath, compaction_worker="thread") as db:
        assert db.stats()["compaction_worker"] == {"mode": "thread", "requested": "thread"}


def test_only_a_worker_that_never_answered_is_unavailable(tmp_path):
    """The job and its retry both die: WorkerUnavailable if the worker never answered a
    job, else WorkerDied as before (the DB then fails the job: a background error)."""
    db = _l0_db(str(tmp_path / "db"), n=2000, files=2)
    mark = tmp_path / "started"
    # a real interpreter the first time it is started, failing every time after
    exe = _fake_python(tmp_path, f'[ -e "{mark}" ] && exit 1\ntouch "{mark}"\nexec "{sys.executable}" "$@"')
    try:
        w = Worker(executable=exe)
        try:
            out = tmp_path / "out"
            out.mkdir()
            assert w.run(_job(db, str(out), range(4000, 4010)))["outputs"]
            os.kill(w.pid, signal.SIGKILL)
            with pytest.raises(WorkerDied) as ei:
                w.run(_job(db, str(out), range(4010, 4020)))
            assert not isinstance(ei.value, WorkerUnavailable)
        finally:
            w.close()
        w = Worker(executable=_fake_python(tmp_path, "exit 1"))
        with pytest.raises(WorkerUnavailable, match="before answering any job"):
            w.run(_job(db, str(tmp_path / "out"), range(5000, 5010)))
        w = Worker(executable=str(tmp_path / "missing" / "python3"))
        with pytest.raises(WorkerUnavailable, match="cannot start a compaction worker"):
            w.run(_job(db, str(tmp_path / "out"), range(5000, 5010)))
    finally:
        db.close()
