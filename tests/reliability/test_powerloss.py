"""Simulated power loss (tools/powerloss.py on the shim tools/faultinject.c;
docs/reliability.md): a writer child is SIGKILLed, everything it did not make
durable is dropped, the DB is reopened and checked.

LSMKV_POWERLOSS_CYCLES (per seed) and LSMKV_POWERLOSS_SEEDS change the run; the
long version is `python tools/powerloss.py --duration 600 --allow-holes`.
"""
import os
import random
import shutil
import signal
import subprocess
import sys
import textwrap

import pytest

from conftest import lsmkv_import_path

TOOLS = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "tools")
sys.path.insert(0, TOOLS)
import faultinject as fi  # noqa: E402
import powerloss  # noqa: E402

pytestmark = pytest.mark.skipif(shutil.which("gcc") is None and shutil.which("cc") is None,
                                reason="the fault-injection shim needs a C compiler (gcc)")

CYCLES = int(os.environ.get("LSMKV_POWERLOSS_CYCLES", "6"))
SEEDS = [int(x) for x in os.environ.get("LSMKV_POWERLOSS_SEEDS", "11,12,13").split(",")]


def test_power_loss_keeps_every_synced_write(tmp_path):
    """Every acknowledged sync write, flush() and compact_range() survives, the DB
    opens by itself, no batch is half applied, no value is wrong. Holes in the
    unsynced writes are counted, not failed: the known engine bug below."""
    total = {}
    for seed in SEEDS:
        s = powerloss.run(str(tmp_path / f"s{seed}"), seed=seed, cycles=CYCLES, max_delay=0.8,
                          allow_holes=True, log=None)
        print()
        print(powerloss.format_summary(s))
        assert not s["violations"], s["violations"]
        assert s["cycles"] == CYCLES
        for k in ("cycles", "ops_acked", "sync_acked", "flush_acked", "files_removed", "bytes_dropped",
                  "pages_lost", "pages_written_back", "files_restored", "holes", "hole_ops"):
            total[k] = total.get(k, 0) + s[k]
    print("TOTAL", total)
    assert total["sync_acked"] > 0 and total["ops_acked"] > 1000
    # the model dropped something real in these cycles (else the test proves nothing)
    assert total["files_removed"] + total["bytes_dropped"] + total["pages_lost"] > 0


def test_oracle_reports_a_lost_synced_write_and_a_half_batch():
    seed = 5
    model, ops = {}, [powerloss.op(seed, i) for i in range(300)]
    full = {}
    for o in ops:
        powerloss.apply(full, o)
    applied, unknown, problems = powerloss.classify(full, model, seed, 0, 300)
    assert problems == [] and applied[-1] == 299
    # drop the effect of one early op: a hole before the last applied op
    j = next(i for i, o in enumerate(ops) if o[0] == "put" and all(
        not (p[0] == "delete" and p[1] == o[1]) for p in ops))
    state = dict(full)
    del state[ops[j][1]]
    applied, _, problems = powerloss.classify(state, model, seed, 0, 300)
    assert problems == [] and j not in applied and applied[-1] == 299
    b = next(i for i, o in enumerate(ops) if o[0] == "batch")
    state = dict(full)
    del state[ops[b][1][0][0]]
    assert any("half applied" in p for p in powerloss.classify(state, model, seed, 0, 300)[2])
    state = dict(full)
    state[ops[j][1]] = b"something else"
    assert any("no op wrote" in p for p in powerloss.classify(state, model, seed, 0, 300)[2])


HOLE_CHILD = """
import os, sys
sys.path.insert(0, sys.argv[2])
import lsmkv
db = lsmkv.DB(sys.argv[1], write_buffer_size=64 * 1024, compaction_worker="thread", wal_mmap=True)
db.put(b"k%06d" % 0, b"v" * 1000, sync=True)
for i in range(1, 100000):        # killed at flush.after_table_write (LSMKV_KILL_POINTS)
    db.put(b"k%06d" % i, b"v" * 1000)
"""


# Regression test of an engine bug the power-loss runs found: the older log's unsynced tail
# lost while the newer log's records survived, a hole. DB._recover now stops replay where the
# sequence numbers jump from one log to the next (point-in-time recovery).
def test_unsynced_writes_survive_as_a_prefix_across_a_log_switch(tmp_path):
    fs = fi.FaultFS(str(tmp_path / "w"))
    db = os.path.join(fs.root, "db")
    os.makedirs(db)
    fs.reset()
    env = fs.env()
    env["LSMKV_KILL_POINTS"] = "flush.after_table_write"
    r = subprocess.run([sys.executable, "-c", textwrap.dedent(HOLE_CHILD), db, lsmkv_import_path()],
                       env=env, capture_output=True, text=True, cwd="/", timeout=60)
    assert r.returncode == -signal.SIGKILL, r.stderr
    logs = sorted(n for n in os.listdir(db) if n.endswith(".log"))
    # power loss: the unsynced pages of the first log are lost, those of the newer ones
    # (the log the writer switched to, the janitor's spare) reached the disk
    fs.power_loss(random.Random(1), writeback=lambda names, page: logs[0] not in names)
    import lsmkv
    if len(logs) < 2:
        pytest.skip("the writer did not reach a second log before the kill point")
    with lsmkv.DB(db, write_buffer_size=64 * 1024) as d:
        got = sorted(int(k[1:]) for k in d.keys())
        st = d.stats()
    assert got and got[0] == 0                  # the synced put
    assert got == list(range(len(got))), f"{len(got)} keys, last {got[-1]}: a hole"
    # the newer log's records were there, after the gap, and were dropped
    assert st["wal_recovery_dropped_logs"] >= 1, st["wal_recovery_gap"]
    assert st["wal_recovery_gap"]["found_sequence"] > st["wal_recovery_gap"]["expected_sequence"]


FAMILY_CHILD = """
import os, signal, sys
sys.path.insert(0, sys.argv[2])
import lsmkv
db = lsmkv.DB(sys.argv[1])
a = db.create_column_family("a")
for i in range(200):
    with db.write_batch() as wb:
        wb.put(b"k%04d" % i, b"A", cf=a)
        wb.put(b"k%04d" % i, b"D")
a.flush()          # returns once family a's table and MANIFEST edit are durable
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_a_family_flush_keeps_cross_family_batches_whole_across_a_power_loss(tmp_path):
    """A family's flush makes its part of batches that span families durable; the
    other family's part is only in the logs, which must be durable first, or a
    power loss keeps half of each batch (review finding: family a kept 200 keys,
    the default 0)."""
    fs = fi.FaultFS(str(tmp_path / "w"))
    db = os.path.join(fs.root, "db")
    os.makedirs(db)
    fs.reset()
    r = subprocess.run([sys.executable, "-c", FAMILY_CHILD, db, lsmkv_import_path()], env=fs.env(),
                       capture_output=True, text=True, cwd="/", timeout=60)
    assert r.returncode == -signal.SIGKILL, r.stderr
    fs.power_loss(random.Random(1), writeback=lambda names, page: False)   # no unsynced page survives
    import lsmkv
    with lsmkv.DB(db) as d:
        a = d.column_family("a")
        assert sorted(a.keys()) == sorted(d.keys())
        assert len(list(d.keys())) == 200
