"""Corruption: flip sampled bytes of a WAL, an SST, the MANIFEST and CURRENT of a
small DB, then open it and read everything (docs/reliability.md).

Every flip must end in one of:
  detected   CorruptionError naming the flipped file, with the offset of the
             damaged record, block or footer (at or before the flipped byte)
             where the format has one;
  torn tail  (a WAL only) the DB opens without the damaged record and everything
             after it, as docs/format.md's rule 4 says, and only when no good
             record follows it (rule 3);
  harmless   the DB opens and reads exactly the original contents.
Anything else (a value that differs, a key missing or back from the dead,
another exception) is wrong data and fails the test. (Until the fix in
VersionSet.recover, a damaged last MANIFEST record was taken for a torn tail and its
durable edit silently dropped: test_flipped_last_manifest_record_is_detected is its
regression test.) Each flip works on a fresh
copy of the pristine directory (opening a DB rewrites its MANIFEST and replays
its logs into tables). The counts per file type and outcome are printed
(pytest -s) and recorded in docs/reliability.md.

LSMKV_FLIP_SEED and LSMKV_FLIPS (flips per file type) change the sampling.
"""
import collections
import os
import random
import shutil
import signal
import subprocess
import sys

import pytest

import lsmkv
from lsmkv.errors import CorruptionError
from lsmkv.engine.logformat import read_log
from conftest import lsmkv_import_path

SEED = int(os.environ.get("LSMKV_FLIP_SEED", "2024"))
FLIPS = int(os.environ.get("LSMKV_FLIPS", "120"))
OPTS = dict(write_buffer_size=64 * 1024, block_size=1024, compaction_worker="thread",
            level0_file_num_compaction_trigger=8, target_file_size_base=64 * 1024)

BUILDER = r"""
import os, random, signal, sys
sys.path.insert(0, sys.argv[2])
import lsmkv
db = lsmkv.DB(sys.argv[1], write_buffer_size=64 * 1024, block_size=1024, compaction_worker="thread",
              level0_file_num_compaction_trigger=8, target_file_size_base=64 * 1024,
              compression_dict_bytes=1024)
rng = random.Random(5)
DAY = 86400 * 30

def val(i):
    return b"v%d-" % i + rng.randbytes(rng.choice([10, 80, 300])) + b"." * rng.choice([0, 200])

def ops(n, base):
    for i in range(base, base + n):
        k = b"key%04d" % rng.randrange(1200)
        r = rng.random()
        if r < 0.1:
            with db.write_batch() as wb:
                for j in range(4):
                    wb.put(b"bat%04d-%d" % (i % 300, j), val(i))
                wb.delete(b"key%04d" % rng.randrange(1200))
        elif r < 0.25:
            db.delete(k)
        elif r < 0.35:
            db.put(k, val(i), ttl=DAY)
        else:
            db.put(k, val(i))

ops(1500, 0)            # several flushes
db.compact_range()      # deeper tables, compressed with a dictionary
ops(400, 10000)
db.flush()              # an L0 table; the MANIFEST's last record adds it
ops(60, 20000)          # in the WAL only
db.put(b"last", b"synced", sync=True)
os.kill(os.getpid(), signal.SIGKILL)     # a crash: the WAL keeps its zero-filled tail
"""


# ---------------------------------------------------------------- the pristine DB and its contents

def read_all(path):
    """Open the DB at path and read everything: (items, ttls, gets, stats).
    Raises whatever the DB raises."""
    with lsmkv.DB(path, **OPTS) as db:
        items = []
        for kv in db.items():
            items.append(kv)
        keys = [k for k, _ in items]
        ttls = {k: db.ttl(k) is not None for k in keys}
        gets = {k: db.get(k) for k in keys}
        rev = list(db.keys(reverse=True))
        if rev != keys[::-1]:
            raise AssertionError("reverse scan differs from forward scan")
        st = db.stats()
    return dict(items), ttls, gets, st


class Pristine:
    def __init__(self, root):
        self.dir = os.path.join(root, "pristine")
        r = subprocess.run([sys.executable, "-c", BUILDER, self.dir, lsmkv_import_path()],
                           capture_output=True, text=True, timeout=120, cwd="/")
        assert r.returncode == -signal.SIGKILL, r.stderr
        self.root = root
        names = sorted(os.listdir(self.dir))
        self.ssts = [n for n in names if n.endswith(".sst")]
        logs = [n for n in names if n.endswith(".log")]
        # the log holding records (a spare log made ahead is all zeros)
        self.wal = max(logs, key=lambda n: len(read_log(n, self._bytes(n)).records))
        with open(os.path.join(self.dir, "CURRENT"), "rb") as fh:
            self.manifest = fh.read().decode().strip()
        self.n = 0
        base = self.copy()
        self.items, self.ttls, _, _ = read_all(base)
        assert self.items[b"last"] == b"synced"
        # the WAL's records, and the contents when its log ends before record k
        # (what rule 4 leaves when record k is torn)
        data = self._bytes(self.wal)
        res = read_log(self.wal, data)
        assert res.dropped_bytes == 0
        self.wal_records = [(off, off + 8 + len(p)) for off, p in res.records]
        self.wal_end = res.end
        self.torn_states = {}
        for k, (off, _) in enumerate(self.wal_records):
            d = self.copy()
            with open(os.path.join(d, self.wal), "r+b") as fh:
                fh.truncate(off)
            self.torn_states[k] = read_all(d)[0]
            shutil.rmtree(d)
        # the MANIFEST's records; the contents if its last record were dropped
        res = read_log(self.manifest, self._bytes(self.manifest))
        self.manifest_records = [(off, off + 8 + len(p)) for off, p in res.records]
        d = self.copy()
        with open(os.path.join(d, self.manifest), "r+b") as fh:
            fh.truncate(self.manifest_records[-1][0])
        self.without_last_edit = read_all(d)[0]
        shutil.rmtree(d)

    def _bytes(self, name):
        with open(os.path.join(self.dir, name), "rb") as fh:
            return fh.read()

    def copy(self):
        self.n += 1
        d = os.path.join(self.root, f"work{self.n}")
        shutil.copytree(self.dir, d)
        return d


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    return Pristine(str(tmp_path_factory.mktemp("corruption")))


# ---------------------------------------------------------------- one flip

def flip(pristine, name, pos, mask):
    """Open and read a copy with byte `pos` of file `name` xored with mask.
    Returns (outcome, detail); outcome "WRONG" fails the test."""
    d = pristine.copy()
    path = os.path.join(d, name)
    try:
        with open(path, "r+b") as fh:
            fh.seek(pos)
            b = fh.read(1)[0]
            fh.seek(pos)
            fh.write(bytes([b ^ mask]))
        try:
            items, ttls, gets, st = read_all(d)
        except CorruptionError as e:
            return _judge_error(pristine, d, name, pos, e)
        except Exception as e:      # noqa: BLE001 - anything but CorruptionError is a failure
            return "WRONG", f"{type(e).__name__}: {e}"
        if any(gets[k] != v for k, v in items.items()):
            return "WRONG", "get() disagrees with items()"
        if items == pristine.items and ttls == pristine.ttls:
            return "harmless", ""
        if name == pristine.manifest and pos >= pristine.manifest_records[-1][0] \
                and items == pristine.without_last_edit:
            # the fixed bug (test_flipped_last_manifest_record_is_detected): the damaged
            # last edit dropped as a torn tail, though its log is gone already
            return "WRONG", "last MANIFEST edit dropped as a torn tail"
        if name == pristine.wal:
            k = _record_of(pristine.wal_records, pos)
            if k is not None and items == pristine.torn_states[k] and st["wal_recovery_dropped_bytes"] > 0:
                if k != len(pristine.wal_records) - 1:
                    return "WRONG", f"record {k} of {len(pristine.wal_records)} dropped as a torn tail " \
                                    "although good records follow it"
                return "torn tail", ""
        missing = [k for k in pristine.items if k not in items]
        extra = [k for k in items if k not in pristine.items]
        diff = [k for k in items if k in pristine.items and items[k] != pristine.items[k]]
        return "WRONG", f"opened with wrong data: {len(missing)} missing {missing[:3]}, " \
                        f"{len(extra)} extra {extra[:3]}, {len(diff)} differ {diff[:3]}"
    finally:
        shutil.rmtree(d, ignore_errors=True)


def _record_of(records, pos):
    for k, (start, end) in enumerate(records):
        if start <= pos < end:
            return k
    return None


def _judge_error(pristine, d, name, pos, e):
    path = os.path.join(d, name)
    if name == "CURRENT":
        # CURRENT names no manifest, or one that does not exist
        if e.path == path or (os.path.basename(e.path).startswith("MANIFEST-")
                              and not os.path.exists(e.path)):
            return "detected", ""
        return "WRONG", f"error names {e.path}: {e}"
    if e.path != path:
        return "WRONG", f"error names {e.path}, not the flipped {name}: {e}"
    if e.offset is None:
        # whole-file properties of a MANIFEST have no offset ("lacks last_sequence")
        if name.startswith("MANIFEST-"):
            return "detected (no offset)", ""
        return "WRONG", f"no offset: {e}"
    if e.offset > pos:
        return "WRONG", f"offset {e.offset} is after the flipped byte {pos}: {e}"
    return "detected", ""


# ---------------------------------------------------------------- the sweep

def _positions(rng, size, n, must=()):
    pos = list(must) + [rng.randrange(size) for _ in range(max(0, n - len(must)))]
    return [(p, rng.randrange(1, 256)) for p in pos]


def test_flipped_bytes_are_detected_or_harmless(pristine):
    rng = random.Random(SEED)
    plan = []          # (kind, file name, pos, mask)
    # WAL: half in its records, half anywhere (most of a crashed WAL is its zero tail)
    wal_size = os.path.getsize(os.path.join(pristine.dir, pristine.wal))
    for p, m in _positions(rng, pristine.wal_end, FLIPS // 2, must=[0, pristine.wal_records[-1][0]]):
        plan.append(("wal", pristine.wal, p, m))
    for p, m in _positions(rng, wal_size, FLIPS - FLIPS // 2, must=[pristine.wal_end]):
        plan.append(("wal", pristine.wal, p, m))
    # SSTs: by size, plus the footer of each
    sizes = {n: os.path.getsize(os.path.join(pristine.dir, n)) for n in pristine.ssts}
    total = sum(sizes.values())
    for _ in range(FLIPS):
        r = rng.randrange(total)
        for n, s in sizes.items():
            if r < s:
                plan.append(("sst", n, r, rng.randrange(1, 256)))
                break
            r -= s
    for n, s in sizes.items():
        for p, m in _positions(rng, 80, 4):
            plan.append(("sst", n, s - 80 + p, m))
    msize = os.path.getsize(os.path.join(pristine.dir, pristine.manifest))
    for p, m in _positions(rng, msize, FLIPS, must=[0, msize - 1]):
        plan.append(("manifest", pristine.manifest, p, m))
    csize = os.path.getsize(os.path.join(pristine.dir, "CURRENT"))
    for p in range(csize):
        for m in (0x01, 0x80, rng.randrange(1, 256)):
            plan.append(("current", "CURRENT", p, m))

    counts = collections.defaultdict(collections.Counter)
    wrong = []
    for kind, name, pos, mask in plan:
        outcome, detail = flip(pristine, name, pos, mask)
        counts[kind][outcome] += 1
        if outcome == "WRONG":
            wrong.append(f"{kind} {name} byte {pos} ^ {mask:#04x}: {detail}")
    print()
    print(f"flips (seed {SEED}): files {len(pristine.ssts)} SSTs, WAL {pristine.wal} "
          f"({len(pristine.wal_records)} records, {pristine.wal_end} of {wal_size} bytes used), "
          f"{pristine.manifest} ({msize} bytes)")
    for kind in ("wal", "sst", "manifest", "current"):
        c = counts[kind]
        print(f"  {kind:9s} {sum(c.values()):4d} flips: " + ", ".join(f"{k} {v}" for k, v in sorted(c.items())))
    assert not wrong, "\n".join(wrong[:20])


# ---------------------------------------------------------------- lsmkv DBPATH verify

def _shell(*args):
    return subprocess.run([sys.executable, "-m", "lsmkv", *args], capture_output=True, text=True,
                          timeout=120, cwd="/",
                          env=dict(os.environ, PYTHONPATH=lsmkv_import_path()))


@pytest.mark.parametrize("where", ["data-block", "footer"])
def test_shell_verify_reports_flipped_sst(pristine, where):
    d = pristine.copy()
    try:
        name = max(pristine.ssts, key=lambda n: os.path.getsize(os.path.join(d, n)))
        path = os.path.join(d, name)
        size = os.path.getsize(path)
        pos = 3 if where == "data-block" else size - 80 + 70       # in block 0 / the footer CRC
        with open(path, "r+b") as fh:
            fh.seek(pos)
            b = fh.read(1)[0]
            fh.seek(pos)
            fh.write(bytes([b ^ 0x40]))
        r = _shell(d, "verify")
        assert r.returncode == 3, (r.returncode, r.stdout, r.stderr)
        out = r.stdout + r.stderr
        assert name in out, out
        want = "at offset 0" if where == "data-block" else f"at offset {size - 80}"
        assert want in out, out
    finally:
        shutil.rmtree(d, ignore_errors=True)


def test_shell_verify_clean_db(pristine):
    d = pristine.copy()
    try:
        r = _shell(d, "verify")
        assert r.returncode == 0, (r.stdout, r.stderr)
        assert "OK" in r.stdout
    finally:
        shutil.rmtree(d, ignore_errors=True)


# ---------------------------------------------------------------- the last MANIFEST record

@pytest.mark.parametrize("field", ["crc", "payload"])
def test_flipped_last_manifest_record_is_detected(pristine, field):
    """The MANIFEST is appended with write + fsync: its last record was durable,
    and the flush it records let the flushed memtable's log be deleted. A flip
    in it must be a CorruptionError, not a torn tail that silently drops the
    flushed table (the log that held the same data is gone)."""
    start, end = pristine.manifest_records[-1]
    pos = start + 1 if field == "crc" else (start + 8 + end) // 2
    d = pristine.copy()
    try:
        with open(os.path.join(d, pristine.manifest), "r+b") as fh:
            fh.seek(pos)
            b = fh.read(1)[0]
            fh.seek(pos)
            fh.write(bytes([b ^ 0x10]))
        try:
            items = read_all(d)[0]
        except CorruptionError as e:
            assert e.path == os.path.join(d, pristine.manifest)
            return
        missing = [k for k in pristine.items if k not in items]
        extra = [k for k in items if k not in pristine.items]
        assert items == pristine.items, f"{len(missing)} keys lost, {len(extra)} deleted keys back"
    finally:
        shutil.rmtree(d, ignore_errors=True)


# ---------------------------------------------------------------- a sealed log

def test_flipped_last_record_of_a_cleanly_closed_log_is_detected(tmp_path):
    """A log closed cleanly ends with its seal (an empty batch; docs/format.md,
    "Sealed logs"), so its last real record is not a tail a crash could have torn:
    every flip in that record is a CorruptionError naming the log, never a silently
    dropped acknowledged write (it was dropped as a torn tail before the seal)."""
    base = str(tmp_path / "closed")
    with lsmkv.DB(base, compaction_worker="thread") as db:
        for i in range(200):
            db.put(b"key%04d" % i, b"value-%04d" % i * 8)
    logs = [n for n in os.listdir(base) if n.endswith(".log")]
    assert len(logs) == 1
    name = logs[0]
    with open(os.path.join(base, name), "rb") as fh:
        data = fh.read()
    res = read_log(name, data)
    assert res.sealed_at is not None, "the log ends with its seal"
    seal = data[res.sealed_at + 8:res.sealed_at + 20]
    assert int.from_bytes(seal[:8], "little") == 201 and seal[8:] == bytes(4)   # next sequence, count 0
    start = res.records[-1][0]
    end = start + 8 + len(res.records[-1][1])
    assert end == res.sealed_at
    outcomes = {}
    for pos in range(start, end):
        d = str(tmp_path / f"flip{pos}")
        shutil.copytree(base, d)
        with open(os.path.join(d, name), "r+b") as fh:
            fh.seek(pos)
            b = fh.read(1)[0]
            fh.seek(pos)
            fh.write(bytes([b ^ 0x01]))
        try:
            with lsmkv.DB(d, compaction_worker="thread") as db:
                got = db.get(b"key0199")
            outcomes[pos] = "harmless" if got == b"value-0199" * 8 else f"WRONG: key0199 is {got!r}"
        except CorruptionError as e:
            ok = e.path == os.path.join(d, name) and e.offset is not None and e.offset <= pos
            outcomes[pos] = "detected" if ok else f"WRONG: {e}"
        shutil.rmtree(d)
    wrong = {p: o for p, o in outcomes.items() if o.startswith("WRONG")}
    assert not wrong, wrong
    assert sum(o == "detected" for o in outcomes.values()) == end - start   # no flip is harmless here


SWITCH_CHILD = r"""
import sys
sys.path.insert(0, sys.argv[2])
import lsmkv
db = lsmkv.DB(sys.argv[1], write_buffer_size=64 * 1024, compaction_worker="thread")
for i in range(100000):
    db.put(b"key%06d" % i, b"value-%06d" % i * 8)
"""


def test_log_retired_at_a_switch_is_sealed_and_a_flip_in_its_last_record_is_detected(tmp_path):
    """The log a memtable switch retires is sealed before the new one takes writes
    (lsmkv.engine.logs.seal): a process killed right at the switch (the wal.switch
    kill point: the old memtable is not even immutable yet, so nothing of it is in a
    table) leaves that log whole, sealed with the next sequence number; a byte
    flipped in its last real record is then a CorruptionError at the reopen, not an
    acknowledged write dropped as a torn tail."""
    base = str(tmp_path / "db")
    env = dict(os.environ, LSMKV_KILL_POINTS="wal.switch", LSMKV_KILL_SEED="1")
    r = subprocess.run([sys.executable, "-c", SWITCH_CHILD, base, lsmkv_import_path()],
                       env=env, capture_output=True, text=True, timeout=120, cwd="/")
    assert r.returncode == -signal.SIGKILL and "lsmkv-killpoint wal.switch" in r.stderr, r.stderr
    # the retired log, the new one, and the janitor's spare if it was made in time:
    # only the retired one holds records
    logs = sorted(n for n in os.listdir(base) if n.endswith(".log"))
    assert len(logs) in (2, 3), logs
    for other in logs[1:]:
        with open(os.path.join(base, other), "rb") as fh:
            assert not read_log(other, fh.read()).records, other
    name = logs[0]
    with open(os.path.join(base, name), "rb") as fh:
        data = fh.read()
    res = read_log(name, data)
    assert res.sealed_at is not None and res.records, "the retired log ends with its seal"
    last_seq = int.from_bytes(res.records[-1][1][:8], "little")
    seal = data[res.sealed_at + 8:res.sealed_at + 20]
    assert int.from_bytes(seal[:8], "little") == last_seq + 1 and seal[8:] == bytes(4)
    start = res.records[-1][0]
    end = start + 8 + len(res.records[-1][1])
    outcomes = {}
    for pos in range(start, end, 3):
        d = str(tmp_path / f"flip{pos}")
        shutil.copytree(base, d)
        with open(os.path.join(d, name), "r+b") as fh:
            fh.seek(pos)
            b = fh.read(1)[0]
            fh.seek(pos)
            fh.write(bytes([b ^ 0x01]))
        try:
            with lsmkv.DB(d, compaction_worker="thread"):
                pass
            outcomes[pos] = "WRONG: opened"
        except CorruptionError as e:
            outcomes[pos] = "detected" if e.path == os.path.join(d, name) else f"WRONG: {e}"
        shutil.rmtree(d)
    assert outcomes and all(o == "detected" for o in outcomes.values()), outcomes
    with lsmkv.DB(base, compaction_worker="thread") as db:     # undamaged, it replays whole
        n = last_seq
        assert db.get(b"key%06d" % (n - 1)) == b"value-%06d" % (n - 1) * 8


@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reverse"])
def test_a_scan_that_meets_a_damaged_block_ends_there(tmp_path, reverse):
    """items() raises CorruptionError at the damaged block, and then is finished: it
    never goes on from a stale position (a caller that catches the error must not
    get the rest of the scan as if the block were not there)."""
    from lsmkv import testing
    path = str(tmp_path / "db")
    opts = dict(block_size=512, block_cache_size=64 << 10)
    with lsmkv.DB(path, **opts) as db:
        for i in range(1000):
            db.put(b"key%06d" % i, b"v%05d" % i + b"x" * 30)
        db.flush()
        number = max(testing.live_table_numbers(db))
    sst = os.path.join(path, "%06d.sst" % number)
    with open(sst, "r+b") as f:
        f.seek(2000)                        # inside a data block, away from either end of the table
        b = f.read(1)
        f.seek(2000)
        f.write(bytes([b[0] ^ 0x40]))
    with lsmkv.DB(path, **opts) as db:
        it = db.items(reverse=reverse)
        got = []
        with pytest.raises(CorruptionError, match="checksum"):
            for kv in it:
                got.append(kv)
        assert got and next(it, None) is None and next(it, None) is None
