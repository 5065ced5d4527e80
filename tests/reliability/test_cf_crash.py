"""Crash test with column families: SIGKILL a writer of batches across families.

The writer applies the deterministic stream cf_workload.op(i) to a DB with families "a"
(small write buffer: flushes often, and is flushed by hand) and "b" (a large one:
it never flushes while the writer runs, so it holds the logs) and prints each
index once acknowledged. After each kill the DB is reopened and every family's
contents must equal the model after exactly `acked` or `acked + 1` ops: every
acknowledged write is there, in its family, and a batch across families is there
whole or not at all (its three puts or deletes land together), and a
transaction moving an amount between an account of "a" and one of "b" (get_for_update
of both, two puts) is whole too: the accounts' sum stays 0. The next cycle resumes
where the recovered state ends.
"""
import os
import random
import signal
import subprocess
import sys
import time

import cf_workload
import lsmkv
from conftest import lsmkv_import_path

CYCLES = int(os.environ.get("LSMKV_CF_CRASH_CYCLES", "8"))
OPTS = cf_workload.OPTS


WRITER = r"""
import sys
sys.path[:0] = [sys.argv[3], sys.argv[4]]
import lsmkv, cf_workload
cf_workload.run(lsmkv, sys.argv[1], int(sys.argv[2]))
"""


def apply(model, i):
    ops = cf_workload.op(i)
    if ops[0] == "transfer":
        _, (sf, sk), (df, dk), amount = ops
        model[sf][sk] = b"%d" % (int(model[sf].get(sk, b"0")) - amount)
        model[df][dk] = b"%d" % (int(model[df].get(dk, b"0")) + amount)
        return
    for f, k, v in ops:
        if v is None:
            model[f].pop(k, None)
        else:
            model[f][k] = v


def contents(path):
    with lsmkv.DB(path, **OPTS) as db:
        assert db.list_column_families() in (["default"], ["default", "a"], ["default", "a", "b"])
        got = {"default": dict(db.items())}
        for name in ("a", "b"):
            got[name] = dict(db.column_family(name).items()) if name in db.list_column_families() else {}
        return got


def test_sigkill_cross_family_batches(tmp_path):
    path = str(tmp_path / "db")
    rng = random.Random(int(os.environ.get("LSMKV_CRASH_SEED", "2222")))
    model = {"default": {}, "a": {}, "b": {}}
    applied = 0
    for cycle in range(CYCLES):
        p = subprocess.Popen([sys.executable, "-c", WRITER, path, str(applied), lsmkv_import_path(), os.path.dirname(os.path.abspath(__file__))],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd="/", bufsize=0)
        first = p.stdout.readline()
        assert first == b"open\n", (first, p.stderr.read())
        time.sleep(rng.uniform(0.1, 1.0))
        p.send_signal(signal.SIGKILL)
        out, err = p.communicate(timeout=60)
        assert p.returncode == -signal.SIGKILL, err.decode()
        done = [int(x) for x in out.split(b"\n")[:-1]]
        acked = done[-1] + 1 if done else applied
        for i in range(applied, acked):
            apply(model, i)
        got = contents(path)
        if got != model:
            nxt = {f: dict(d) for f, d in model.items()}
            apply(nxt, acked)        # the op in flight may have landed, whole
            assert got == nxt, _diff(got, model, cycle, acked)
            model, acked = nxt, acked + 1
        # a transaction is whole: the accounts' sum is 0
        total = sum(int(v) for f in ("a", "b") for k, v in got[f].items() if k.startswith(b"acct"))
        assert total == 0, f"cycle {cycle}: a transfer was half-applied (sum {total})"
        # a batch is whole: every x key has the same value in the three families
        for k, v in got["default"].items():
            if k.startswith(b"x"):
                assert got["a"].get(k) == v == got["b"].get(k), f"cycle {cycle}: half a batch at {k!r}"
        applied = acked
    assert applied > 500, "the writer hardly ran"
    assert any(k.startswith(b"acct") for k in model["b"]), "no transfer ran"


def _diff(got, model, cycle, acked):
    lines = [f"cycle {cycle}, acked {acked}:"]
    for f in model:
        missing = sorted(set(model[f]) - set(got[f]))[:5]
        extra = sorted(set(got[f]) - set(model[f]))[:5]
        wrong = sorted(k for k in set(got[f]) & set(model[f]) if got[f][k] != model[f][k])[:5]
        lines.append(f"  {f}: missing {missing} extra {extra} wrong {wrong}")
    return "\n".join(lines)
