"""lsmkv.engine.repair: damage a small DB in one way at a time, repair it, reopen it and check
every key (docs/reliability.md, "Repair").

The DB has three generations: g1 compacted into the deeper levels (tables with zstd
dictionaries; every tenth key put with a TTL), g2 overwriting and deleting some of them in a level-0 table, g3 in the
WAL only (one record per operation). After a repair:
  * a key outside every range the report says was lost reads exactly as before
    (its newest value, or absent if deleted: no deleted key is back);
  * a key inside a lost range reads as absent or as one of its older values (the
    lost block may have held its newest version), never anything never written;
  * the report names the damaged file and the offset of the damage.
"""
import os
import subprocess
import sys

import pytest

import lsmkv
from lsmkv.engine import filenames
from lsmkv.core.table import TableReader
from lsmkv.errors import LockError, LsmkvError
from lsmkv.engine.logformat import read_log
from lsmkv.engine.repair import index_blocks, repair
from lsmkv.engine.version import VersionSet

from conftest import lsmkv_import_path

OPTS = dict(write_buffer_size=64 * 1024, block_size=512, compaction_worker="thread",
            level0_file_num_compaction_trigger=8, target_file_size_base=64 * 1024,
            compression_dict_bytes=1024)
N = 1500
YEAR = 365 * 86400


class Built:
    """The DB at path, its model, every value each key ever had, and the g3 ops."""

    def __init__(self, path):
        self.path = path
        self.model = {}
        self.history = {}
        self.g3 = []
        self.ttl_keys = set()       # g1 keys put with a TTL (a year) and never written again
        with lsmkv.DB(path, **OPTS) as db:
            for i in range(N):
                ttl = YEAR if i % 10 == 7 else None
                self._put(db, b"k%05d" % i, b"g1-%05d-" % i + b"x" * (i % 50), ttl)
                if ttl:
                    self.ttl_keys.add(b"k%05d" % i)
            db.compact_range()
            for i in range(0, N, 3):
                self._put(db, b"k%05d" % i, b"g2-%05d" % i)
            for i in range(0, N, 5):
                self._delete(db, b"k%05d" % i)
            db.flush()
            self.before_g3 = dict(self.model)
            for i in range(0, N, 37):
                if i % 2:
                    self._delete(db, b"k%05d" % i)
                    self.g3.append((b"k%05d" % i, None))
                else:
                    self._put(db, b"k%05d" % i, b"g3-%05d" % i)
                    self.g3.append((b"k%05d" % i, b"g3-%05d" % i))
        v = VersionSet(path)
        v.recover()
        self.levels = {f.number: lv for lv, f in v.current.files()}
        v.close()

    def _put(self, db, k, v, ttl=None):
        db.put(k, v, ttl=ttl)
        self.ttl_keys.discard(k)
        self.model[k] = v
        self.history.setdefault(k, set()).add(v)

    def _delete(self, db, k):
        db.delete(k)
        self.model.pop(k, None)

    def tables(self, level):
        return sorted(n for n, lv in self.levels.items() if lv == level)

    def sst(self, number):
        return filenames.table_name(self.path, number)

    def wal(self):
        """The log holding the g3 records (a spare log made ahead is all zeros)."""
        logs = [n for n in os.listdir(self.path) if n.endswith(".log")]
        return os.path.join(self.path, max(logs, key=lambda n: len(_records(os.path.join(self.path, n)))))


def _records(path):
    with open(path, "rb") as fh:
        return read_log(path, fh.read()).records


@pytest.fixture
def built(tmp_path):
    return Built(str(tmp_path / "db"))


def _flip(path, offset):
    with open(path, "r+b") as fh:
        fh.seek(offset)
        b = fh.read(1)
        fh.seek(offset)
        fh.write(bytes([b[0] ^ 0x5A]))


def _in_ranges(key, ranges):
    return any((r["after"] is None or key > r["after"]) and (r["through"] is None or key <= r["through"])
               for r in ranges)


def check(b, report, model=None):
    """Reopen and check every key written (see the module docstring). Returns the
    number of keys checked exactly."""
    model = b.model if model is None else model
    exact = 0
    with lsmkv.DB(b.path, **OPTS) as db:
        items = dict(db.items())
        assert list(db.keys()) == sorted(items)
        for k in b.history:
            got = db.get(k)
            assert items.get(k) == got
            if _in_ranges(k, report.lost_ranges):
                assert got is None or got in b.history[k], (k, got)
            else:
                assert got == model.get(k), (k, got, model.get(k))
                if k in b.ttl_keys and got is not None:      # the expiry came through
                    assert 0 < db.ttl(k) <= YEAR, k
                elif got is not None:
                    assert db.ttl(k) is None, k
                exact += 1
    # and the repaired DB passes the shell's verify
    r = _shell(b.path, "verify")
    assert r.returncode == 0, r.stdout + r.stderr
    return exact


def _shell(*args):
    # cwd "/": from the checkout's root, `python -m lsmkv` would import the source tree
    # (no compiled modules when lsmkv is installed, as in CI) instead of the lsmkv under test
    env = dict(os.environ, PYTHONPATH=lsmkv_import_path())
    return subprocess.run([sys.executable, "-m", "lsmkv", *args], capture_output=True, text=True,
                          timeout=120, cwd="/", env=env)


def test_clean_db_is_left_alone(built):
    before = sorted(n for n in os.listdir(built.path) if n.endswith(".sst"))
    report = repair(built.path)
    assert report.mode == "manifest"
    assert not report.lost_anything
    assert sorted(report.tables_kept) == before
    assert report.tables_rewritten == [] and report.blocks_lost == []
    assert report.wal_replayed and sum(w["records"] for w in report.wal_replayed) == len(built.g3)
    assert not os.path.exists(os.path.join(built.path, "lost"))
    assert check(built, report) == len(built.history)


def test_corrupt_block_in_a_deep_table(built):
    number = built.tables(max(built.levels.values()))[0]
    path = built.sst(number)
    t = TableReader(path, number, None, True)
    blocks = index_blocks(t)
    t.close()
    assert len(blocks) > 4
    bad_off = blocks[2][1]                       # the third data block
    _flip(path, bad_off + 20)
    report = repair(built.path)
    name = os.path.basename(path)
    assert report.mode == "manifest"
    assert report.blocks_lost == [{"file": name, "offset": bad_off, "detail": "block checksum mismatch"}]
    [rw] = report.tables_rewritten
    assert rw["file"] == name and rw["blocks_lost"] == 1 and rw["entries"] > 0
    assert report.lost_ranges == [{"file": name, "after": blocks[1][0][:-8], "through": blocks[2][0][:-8]}]
    assert os.path.exists(os.path.join(built.path, "lost", name))
    assert not os.path.exists(path)
    assert report.lost_anything
    exact = check(built, report)
    assert exact < len(built.history) and exact > len(built.history) - 40   # one 512-byte block


def test_corrupt_block_holding_deletions(built):
    """The level-0 table of g2 holds the deletions: a lost block of it may bring back
    its keys' g1 values (the report's lost range), every other deletion holds."""
    [number] = built.tables(0)
    path = built.sst(number)
    _flip(path, 30)                               # the first data block
    report = repair(built.path)
    assert report.blocks_lost[0]["file"] == os.path.basename(path)
    assert report.blocks_lost[0]["offset"] == 0
    assert report.lost_ranges[0]["after"] is None
    check(built, report)


def test_truncated_table(built):
    [number] = built.tables(0)
    path = built.sst(number)
    size = os.path.getsize(path)
    with open(path, "r+b") as fh:
        fh.truncate(size // 2)
    report = repair(built.path)
    name = os.path.basename(path)
    [rw] = report.tables_rewritten
    assert rw["file"] == name and rw["entries"] > 0
    [loss] = report.blocks_lost
    assert loss["file"] == name and 0 < loss["offset"] <= size // 2
    assert "file too short" in loss["detail"] or "magic" in loss["detail"]
    assert report.lost_ranges[0]["through"] is None
    check(built, report)


def test_damaged_footer_loses_nothing(built):
    """Only the footer is damaged: the blocks are found by their checksums (the table
    has a zstd dictionary: found too) and every entry is kept."""
    number = built.tables(max(built.levels.values()))[0]
    path = built.sst(number)
    assert TableReader(path, number, None, True).zdict is not None
    _flip(path, os.path.getsize(path) - 30)
    report = repair(built.path)
    [rw] = report.tables_rewritten
    assert rw["file"] == os.path.basename(path) and rw["blocks_lost"] == 0
    assert report.blocks_lost == [] and report.lost_ranges == []
    assert check(built, report) == len(built.history)


def test_unreadable_table_is_dropped(built):
    [number] = built.tables(0)
    path = built.sst(number)
    with open(path, "r+b") as fh:
        fh.write(b"\xff" * 64)                    # the first block, and nothing readable after it
        fh.truncate(400)
    report = repair(built.path)
    name = os.path.basename(path)
    assert report.tables_dropped and report.tables_dropped[0]["file"] == name
    assert report.tables_rewritten == []
    assert os.path.exists(os.path.join(built.path, "lost", name))
    check(built, report)


def test_missing_manifest(built):
    """No MANIFEST: every table and log merged by sequence number; nothing is lost."""
    with open(filenames.current_name(built.path)) as fh:
        os.unlink(os.path.join(built.path, fh.read().strip()))
    with pytest.raises(LsmkvError):
        lsmkv.DB(built.path, **OPTS).close()
    report = repair(built.path)
    assert report.mode == "rebuild"
    assert "missing" in report.manifest_problem
    assert report.tables_merged and report.blocks_lost == [] and report.wal_dropped == []
    assert not report.lost_anything and report.lines()[-1].startswith("REBUILT")
    assert check(built, report) == len(built.history)


def test_damaged_manifest_and_block(built):
    """Rebuild mode with a damaged table too."""
    with open(filenames.current_name(built.path)) as fh:
        manifest = os.path.join(built.path, fh.read().strip())
    _flip(manifest, 12)
    [number] = built.tables(0)
    _flip(built.sst(number), 30)
    report = repair(built.path)
    assert report.mode == "rebuild" and "MANIFEST" in report.manifest_problem
    assert report.blocks_lost[0]["file"] == os.path.basename(built.sst(number))
    assert os.path.basename(manifest) in os.listdir(os.path.join(built.path, "lost"))
    check(built, report)


def test_missing_current(built):
    os.unlink(filenames.current_name(built.path))
    with pytest.raises(LsmkvError):
        lsmkv.DB(built.path, **OPTS).close()
    report = repair(built.path)
    assert report.mode == "manifest" and not report.lost_anything
    assert report.lines()[-1].startswith("OK")
    assert check(built, report) == len(built.history)


def test_wal_damaged_mid_file(built):
    wal = built.wal()
    recs = _records(wal)
    assert len(recs) == len(built.g3)
    j = len(recs) // 2
    off, payload = recs[j]
    _flip(wal, off + 8 + len(payload) - 1)        # the last byte of record j
    report = repair(built.path)
    [d] = report.wal_dropped
    assert d["file"] == os.path.basename(wal) and d["offset"] == off
    assert d["records_dropped"] == len(recs) - j - 1
    assert d["detail"] == "log record checksum mismatch"
    assert sum(w["records"] for w in report.wal_replayed) == j
    assert os.path.exists(os.path.join(built.path, "lost", os.path.basename(wal)))
    model = dict(built.before_g3)
    for k, v in built.g3[:j]:
        if v is None:
            model.pop(k, None)
        else:
            model[k] = v
    assert check(built, report, model) == len(built.history)


def test_refuses_a_locked_db(built):
    with lsmkv.DB(built.path, **OPTS):
        with pytest.raises(LockError, match="open in this process"):
            repair(built.path)
    code = ("import sys, time, lsmkv; db = lsmkv.DB(sys.argv[1], compaction_worker='thread'); "
            "print('open', flush=True); time.sleep(30)")
    p = subprocess.Popen([sys.executable, "-c", code, built.path], stdout=subprocess.PIPE, text=True,
                         cwd="/", env=dict(os.environ, PYTHONPATH=lsmkv_import_path()))
    try:
        assert p.stdout.readline().strip() == "open"
        with pytest.raises(LockError, match="locked by another process"):
            repair(built.path)
        r = _shell(built.path, "repair")
        assert r.returncode == 3
        assert r.stderr.strip() == f"lsmkv: {built.path} is locked by another process (pid {p.pid})"
    finally:
        p.kill()
        p.wait()


def test_not_a_database(tmp_path):
    with pytest.raises(LsmkvError, match="no database"):
        repair(str(tmp_path))
    with pytest.raises(LsmkvError, match="no database"):
        repair(str(tmp_path / "absent"))


def test_progress_is_called(built):
    seen = []
    repair(built.path, progress=lambda done, total: seen.append((done, total)))
    assert seen and seen[-1][0] == seen[-1][1]


def test_repair_twice(built):
    [number] = built.tables(0)
    _flip(built.sst(number), 30)
    first = repair(built.path)
    second = repair(built.path)
    assert not second.lost_anything and second.tables_rewritten == []
    check(built, first)


def test_shell_repair(built):
    [number] = built.tables(0)
    name = os.path.basename(built.sst(number))
    _flip(built.sst(number), 30)
    r = _shell(built.path, "repair")
    assert r.returncode == 0, r.stderr
    assert f"{name}: rewritten" in r.stdout
    assert f"block lost: {name} at offset 0" in r.stdout
    r = _shell(built.path, "get", "k00001")
    assert r.returncode == 0 and r.stdout.startswith("g1-00001")
    r = _shell(built.path, "repair", "--json")
    assert r.returncode == 0, r.stderr
    import json
    doc = json.loads(r.stdout.splitlines()[-1])
    assert doc["mode"] == "manifest" and doc["blocks_lost"] == [] and doc["lost_anything"] is False
    r = _shell(str(built.path) + "-absent", "repair")
    assert r.returncode == 3 and "no database" in r.stderr
