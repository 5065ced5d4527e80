"""Crash test for merges: SIGKILL a writer doing uint64add merges, reopen, verify.

The writer merges 1 into key i % KEYS for i = start, start + 1, ... (every
seventh op a batch of a merge and a put of a marker), printing i after each call
returns (acknowledged). The parent kills it after a random delay, reopens the
DB and checks that the counters sum to exactly `acked` or `acked + 1` (the op in
flight) and that each key's counter is what that count of ops gives: no
acknowledged merge is lost, none is applied twice, no batch half-applied. Small
buffers make flushes and compactions (with partial and full merges, in worker
processes) run during the kills. The next cycle resumes where the state ends.
"""
import os
import random
import signal
import subprocess
import sys
import time

import lsmkv
import lsmkv.testing
from conftest import lsmkv_import_path

CYCLES = int(os.environ.get("LSMKV_CRASH_CYCLES", "8"))
KEYS = 37
OPTS = dict(write_buffer_size=64 * 1024, block_size=512, max_write_buffer_number=3,
            target_file_size_base=64 * 1024, level0_file_num_compaction_trigger=2,
            merge_operator="uint64add")

WRITER = r"""
import sys
sys.path[:0] = [sys.argv[3]]
import lsmkv
KEYS = int(sys.argv[4])
db = lsmkv.DB(sys.argv[1], write_buffer_size=64 * 1024, block_size=512, max_write_buffer_number=3,
              target_file_size_base=64 * 1024, level0_file_num_compaction_trigger=2,
              merge_operator="uint64add")
one = (1).to_bytes(8, "little")
pad = b"p" * 200
i = int(sys.argv[2])
out = sys.stdout
out.write("open\n"); out.flush()
while True:
    k = b"c%03d" % (i % KEYS)
    if i % 7 == 0:
        with db.write_batch() as wb:
            wb.merge(k, one)
            wb.put(b"last", b"%d" % i + pad)
    else:
        db.merge(k, one)
    out.write("%d\n" % i)
    out.flush()
    i += 1
"""


def expected(n):
    """Each counter after ops 0..n-1."""
    return {b"c%03d" % j: len(range(j, n, KEYS)) for j in range(KEYS) if j < n}


def state(db):
    got = {k: int.from_bytes(v, "little") for k, v in db.items(prefix=b"c")}
    return got, sum(got.values())


def test_kill_9_while_merging(tmp_path):
    path = str(tmp_path / "db")
    rng = random.Random(21)
    done = 0
    for cycle in range(CYCLES):
        p = subprocess.Popen([sys.executable, "-c", WRITER, path, str(done), lsmkv_import_path(), str(KEYS)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd="/")
        assert p.stdout.readline() == "open\n", p.stderr.read()
        time.sleep(rng.uniform(0.05, 0.6))
        os.kill(p.pid, signal.SIGKILL)
        p.wait()
        acked = done - 1
        for line in p.stdout:
            acked = int(line)
        acked += 1                       # ops 0..acked-1 were acknowledged
        with lsmkv.DB(path, **OPTS) as db:
            got, total = state(db)
            assert total in (acked, acked + 1), f"cycle {cycle}: {total} merges, {acked} acknowledged"
            assert got == expected(total), f"cycle {cycle}: counters differ from {total} ops"
            last = db.get(b"last")
            want_last = max((i for i in range(total) if i % 7 == 0), default=None)
            assert (last is None and want_last is None) or int(last[:-200]) == want_last, cycle
            done = total
        assert done > 0 or cycle < 2
    with lsmkv.DB(path, **OPTS) as db:
        assert done > 500, "the writer barely ran: the kills tested little"
        assert any(lsmkv.testing.level_files(db)), "no table was written: no flush ran during the kills"
        db.compact_range()
        got, total = state(db)
        assert total == done and got == expected(done)
