"""The short version of tools/crashtest.py (docs/reliability.md), and the kill points.

LSMKV_CRASHTEST_CYCLES and LSMKV_CRASHTEST_SEED change the run; the long
version is `python tools/crashtest.py --duration 600`.
"""
import os
import signal
import subprocess
import sys

import pytest

import lsmkv
from lsmkv.engine import killpoint as kp
from conftest import lsmkv_import_path

TOOLS = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "tools")
sys.path.insert(0, TOOLS)
import crashtest  # noqa: E402

CYCLES = int(os.environ.get("LSMKV_CRASHTEST_CYCLES", "36"))
SEED = int(os.environ.get("LSMKV_CRASHTEST_SEED", "11"))


def test_kill_points_are_off_without_the_variable():
    assert os.environ.get("LSMKV_KILL_POINTS") is None
    assert not kp.ENABLED
    kp.killpoint("wal.switch")          # a no-op: we are still here


def test_parse_kill_point_spec():
    assert kp.parse("wal.switch:0.25, current.before_rename") == {"wal.switch": 0.25,
                                                                  "current.before_rename": 1.0}
    assert kp.parse("") == {}
    with pytest.raises(ValueError):
        kp.parse("no.such.point")
    with pytest.raises(ValueError):
        kp.parse("wal.switch:1.5")


def test_every_kill_point_is_in_the_engine():
    """Each name in killpoint.POINTS has a call site in the engine (engine.py, flush.py
    or version.py)."""
    src = ""
    for name in ("engine.py", "flush.py", "version.py"):
        with open(os.path.join(os.path.dirname(lsmkv.__file__), "engine", name)) as fh:
            src += fh.read()
    for name in kp.POINTS:
        assert f'"{name}"' in src, name


CHILD = r"""
import sys
sys.path.insert(0, sys.argv[2])
import lsmkv
db = lsmkv.DB(sys.argv[1], write_buffer_size=64 * 1024)
for i in range(100000):
    db.put(b"k%06d" % i, b"v" * 100)
print("not killed")
"""


def test_armed_kill_point_kills_the_process(tmp_path):
    env = dict(os.environ, LSMKV_KILL_POINTS="wal.switch", LSMKV_KILL_SEED="1")
    r = subprocess.run([sys.executable, "-c", CHILD, str(tmp_path / "db"), lsmkv_import_path()],
                       env=env, capture_output=True, text=True, timeout=60, cwd="/")
    assert r.returncode == -signal.SIGKILL, r.stderr
    assert "lsmkv-killpoint wal.switch" in r.stderr
    with lsmkv.DB(str(tmp_path / "db")) as db:     # the memtable that was switched out is there
        n = sum(1 for _ in db.keys())
    assert n > 0


def test_checker_detects_a_lost_write(tmp_path):
    """The oracle is not vacuous: a missing key, a resurrected key, a lost TTL are caught."""
    model = {}
    with lsmkv.DB(str(tmp_path / "db"), merge_operator=crashtest.MERGE_OPERATOR) as db:
        for i in range(300):
            crashtest.run_op(db, 3, i)
            crashtest.apply(model, 3, i)
        assert crashtest.check(db, model, "ok") is None
        k = next(iter(model))
        db.delete(k)
        assert "missing" in crashtest.check(db, model, "x")
        db.put(k, model[k][0])
        db.put(b"zz-resurrected", b"1")
        assert "extra" in crashtest.check(db, model, "x")
        db.delete(b"zz-resurrected")
        ttl_key = next((k for k, (v, t) in model.items() if t), None)
        if ttl_key is not None:
            db.put(ttl_key, model[ttl_key][0])          # same value, TTL dropped
            assert "TTL" in crashtest.check(db, model, "x")


def test_crashtest_short(tmp_path):
    lines = []
    s = crashtest.run(str(tmp_path / "db"), seed=SEED, cycles=CYCLES, kill_point_share=0.4,
                      max_delay=0.6, log=lines.append)
    print()
    print(crashtest.format_summary(s))
    assert not s["violations"], crashtest.format_summary(s)
    assert s["losses"] == 0
    assert s["cycles"] >= 30
    for name in kp.POINTS:
        assert s["kills"].get(name, 0) >= 1, (name, s["kills"])
    assert s["kills"].get("random", 0) >= 10
    assert s["ops_acked"] > 5000, "the writer made too little progress to test anything"
