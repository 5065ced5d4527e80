"""Crash test: SIGKILL a writer process at random moments, reopen, verify.

The writer applies the deterministic stream of crash_workload.op(i) from a
start index and prints each index after the call returns (acknowledged). The
parent kills it with SIGKILL after a random delay, reads every acknowledged
index, reopens the DB and checks that its whole contents equal the model after
exactly `acked` ops or `acked + 1` (the one op in flight): nothing acknowledged
is lost, nothing deleted comes back, no batch or transaction is half-applied
(the accounts' sum stays 0), no merge operand is lost or applied twice
(counters are compared whole). The next cycle
resumes the stream where the recovered state ends. Small buffers make flushes
(and so WAL switches and SST writes) happen during the kills.
"""
import os
import random
import signal
import subprocess
import sys
import time

import pytest

import lsmkv
import crash_workload
from conftest import lsmkv_import_path

CYCLES = int(os.environ.get("LSMKV_CRASH_CYCLES", "10"))
OPTS = dict(write_buffer_size=128 * 1024, block_size=1024, max_write_buffer_number=3,
            merge_operator=crash_workload.MERGE_OPERATOR)

WRITER = r"""
import sys
sys.path[:0] = [sys.argv[3], sys.argv[4]]
import lsmkv, crash_workload
db = lsmkv.DB(sys.argv[1], write_buffer_size=128 * 1024, block_size=1024, max_write_buffer_number=3,
              wal_mmap=(sys.argv[5] == "1"), merge_operator=crash_workload.MERGE_OPERATOR)
i = int(sys.argv[2])
out = sys.stdout
out.write("open\n"); out.flush()
while True:
    crash_workload.run(db, i)
    out.write("%d\n" % i)
    out.flush()
    i += 1
    if i % 997 == 0:
        db.flush() if i % 2 else db.compact_range()
"""


@pytest.mark.parametrize("wal_mmap", [True, False], ids=["mmap-wal", "write-wal"])
def test_sigkill_writer_loses_nothing_acknowledged(tmp_path, wal_mmap):
    path = str(tmp_path / "db")
    rng = random.Random(int(os.environ.get("LSMKV_CRASH_SEED", "4242")))
    here = os.path.dirname(os.path.abspath(__file__))
    model = {}
    applied = 0       # ops in the model
    total_acked = 0
    for cycle in range(CYCLES):
        p = subprocess.Popen([sys.executable, "-c", WRITER, path, str(applied), lsmkv_import_path(), here,
                              "1" if wal_mmap else "0"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd="/", bufsize=0)
        first = p.stdout.readline()
        assert first == b"open\n", (first, p.stderr.read())
        time.sleep(rng.uniform(0.05, 1.0))
        p.send_signal(signal.SIGKILL)
        out, err = p.communicate(timeout=60)
        assert p.returncode == -signal.SIGKILL, err.decode()
        lines = out.split(b"\n")
        done = [int(x) for x in lines[:-1]]         # the last piece may be a torn line
        acked = done[-1] + 1 if done else applied
        assert not done or done[0] == applied
        for i in range(applied, acked):
            crash_workload.apply(model, i)
        with lsmkv.DB(path, **OPTS) as db:
            got = dict(db.items())
            assert crash_workload.accounts_sum(got) == 0, f"cycle {cycle}: a transfer was half-applied"
            if got != model:
                nxt = dict(model)
                crash_workload.apply(nxt, acked)   # the op in flight may have landed
                assert got == nxt, _diff(got, model, cycle, acked)
                model = nxt
                acked += 1
            assert db.stats()["wal_recovery_dropped_bytes"] >= 0
        total_acked += acked - applied
        applied = acked
    assert total_acked > 100, "the writer made too little progress to test anything"


def _diff(got, want, cycle, acked):
    missing = [k for k in want if k not in got][:5]
    extra = [k for k in got if k not in want][:5]
    wrong = [k for k in want if k in got and got[k] != want[k]][:5]
    return f"cycle {cycle} acked {acked}: missing {missing} resurrected/extra {extra} wrong {wrong}"
