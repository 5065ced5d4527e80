"""Column families (lsmkv/engine/family.py) against a model: one dict per family.

The seeded test runs three families with different options (the default; "a":
no compression, no bloom filter, a small write buffer; "b": an append merge
operator, bloom 16 bits) through puts (some with a TTL), deletes, range deletes,
merges, batches across families, flushes and compactions of single families,
reopens, drop and re-create of "a", and snapshots, each checked later against
the model state it was taken at, reading every family at its one sequence; gets,
scans in both directions and cursor seeks are checked for every family. The
other tests: the log a family that never flushes needs is kept (and the DB
reopens with its data), dropped families' files go once unpinned, the formats
(a DB without families writes what it always did; a family record is refused
by the default-only replay), errors.
"""
import os
import random

import pytest

import lsmkv
from lsmkv import testing
from conftest import FakeClock, lsmkv_import_path
from model_checks import check_cursor

SEEDS = [int(os.environ["LSMKV_CF_SEED"])] if "LSMKV_CF_SEED" in os.environ else [1, 2, 3]
STEPS = int(os.environ.get("LSMKV_CF_STEPS", "3000"))

DB_OPTS = dict(write_buffer_size=64 * 1024, block_size=512, target_file_size_base=64 * 1024,
               max_bytes_for_level_base=128 * 1024, level0_file_num_compaction_trigger=2,
               compaction_worker="thread")
FAMILY_OPTS = {
    "a": dict(compression="none", bloom_bits_per_key=0, write_buffer_size=64 * 1024, block_size=256),
    "b": dict(merge_operator=("append", b","), bloom_bits_per_key=16, write_buffer_size=128 * 1024),
}


def _key(rng):
    r = rng.random()
    if r < 0.02:
        return b""
    return b"k%04d" % rng.randrange(400)


class Model:
    """key -> (value, expiry seconds or None) per family."""

    def __init__(self, clock):
        self.clock = clock
        self.fams = {"default": {}, "a": {}, "b": {}}

    def live(self, fam):
        now = self.clock()
        return {k: v for k, (v, e) in self.fams[fam].items() if e is None or e > now}

    def frozen(self):
        now = self.clock()
        return {f: {k: (v, e) for k, (v, e) in d.items() if e is None or e > now}
                for f, d in self.fams.items()}

    def put(self, fam, k, v, ttl=None):
        self.fams[fam][k] = (v, None if ttl is None else self.clock() + ttl)

    def delete(self, fam, k):
        self.fams[fam].pop(k, None)

    def delete_range(self, fam, a, b):
        for k in [k for k in self.fams[fam] if a <= k < b]:
            del self.fams[fam][k]

    def merge(self, fam, k, v):
        old = self.live(fam).get(k)
        self.fams[fam][k] = (v if old is None else old + b"," + v, None)


def handles(db):
    return {"default": db, "a": db.column_family("a"), "b": db.column_family("b")}


def check_family(h, live, rng, ctx):
    for _ in range(8):
        k = _key(rng)
        assert h.get(k) == live.get(k), f"get {k!r} {ctx}"
    keys = [_key(rng) for _ in range(10)]
    assert h.multi_get(keys) == [live.get(k) for k in keys], f"multi_get {ctx}"
    srt = sorted(live.items())
    assert list(h.items()) == srt, f"items {ctx}"
    assert list(h.items(reverse=True)) == srt[::-1], f"items reverse {ctx}"
    a, b = sorted([_key(rng), _key(rng)])
    assert list(h.keys(a, b)) == [k for k, _ in srt if a <= k < b], f"keys [{a!r}, {b!r}) {ctx}"
    check_cursor(h, live, rng, _key, ctx)


@pytest.mark.parametrize("seed", SEEDS)
def test_model_three_families(tmp_path, seed):
    rng = random.Random(seed)
    clock = FakeClock()
    path = str(tmp_path / "db")
    opts = dict(DB_OPTS, clock=clock)
    db = lsmkv.DB(path, **opts)
    db.create_column_family("a", **FAMILY_OPTS["a"])
    db.create_column_family("b", **FAMILY_OPTS["b"])
    h = handles(db)
    m = Model(clock)
    snaps = []
    fams = ["default", "a", "b"]
    deep = set()            # families seen with tables below level 0
    for step in range(STEPS):
        ctx = f"(seed {seed}, step {step})"
        r = rng.random()
        fam = rng.choice(fams)
        if r < 0.40:
            k, v = _key(rng), b"v%d-" % step + bytes(rng.randrange(60))
            # (no TTL under merge operands: a merged value outlives its base's expiry,
            # test_merge_model.py checks that)
            ttl = None if fam == "b" else rng.choice([None] * 6 + [5, 50])
            h[fam].put(k, v, ttl=ttl)
            m.put(fam, k, v, ttl)
        elif r < 0.50:
            k = _key(rng)
            h[fam].delete(k)
            m.delete(fam, k)
        elif r < 0.53:
            a, b = sorted([_key(rng), _key(rng)])
            h[fam].delete_range(a, b)
            m.delete_range(fam, a, b)
        elif r < 0.60:
            k, v = _key(rng), b"m%d" % step
            h["b"].merge(k, v)
            m.merge("b", k, v)
        elif r < 0.72:
            # a batch across the families, applied whole
            with db.write_batch() as wb:
                for _ in range(rng.randrange(1, 8)):
                    f = rng.choice(fams)
                    cf = None if f == "default" else h[f]
                    k = _key(rng)
                    x = rng.random()
                    if x < 0.6:
                        v = b"w%d" % step
                        wb.put(k, v, cf=cf)
                        m.put(f, k, v)
                    elif x < 0.8:
                        wb.delete(k, cf=cf)
                        m.delete(f, k)
                    elif f == "b":
                        wb.merge(k, b"bm", cf=cf)
                        m.merge(f, k, b"bm")
                    else:
                        a, b = sorted([k, _key(rng)])
                        wb.delete_range(a, b, cf=cf)
                        m.delete_range(f, a, b)
        elif r < 0.76:
            if len(snaps) < 4:
                snaps.append((db.snapshot(), m.frozen()))
        elif r < 0.78 and snaps:
            s, frozen = snaps.pop(rng.randrange(len(snaps)))
            now = clock()
            for f in fams:
                cf = None if f == "default" else h[f]
                # what the snapshot shows now: its versions, their expiry judged by the clock now
                want = {k: v for k, (v, e) in frozen[f].items() if e is None or e > now}
                for k in [_key(rng) for _ in range(6)]:
                    assert s.get(k, cf=cf) == want.get(k), f"snapshot get {f} {k!r} {ctx}"
                srt = sorted(want.items())
                assert list(s.items(cf=cf)) == srt, f"snapshot items {f} {ctx}"
                assert list(s.items(reverse=True, cf=cf)) == srt[::-1], f"snapshot items reverse {f} {ctx}"
                check_cursor(s.iterator(cf=cf) and _SnapCursor(s, cf), want, rng, _key,
                             f"snapshot {f} {ctx}")
            s.close()
        elif r < 0.80:
            h[fam].flush()
        elif r < 0.815:
            a, b = sorted([_key(rng), _key(rng)])
            h[fam].compact_range(rng.choice([None, a]), rng.choice([None, b]))
            if fam == "default":
                files = [len(x) for x in testing.current_version(db).levels]
            else:
                files = h[fam].stats()["files_per_level"]
            if sum(files[1:]):
                deep.add(fam)
        elif r < 0.825:
            for s, _ in snaps:
                s.close()
            snaps.clear()
            db.close()
            db = lsmkv.DB(path, **opts)
            assert sorted(db.list_column_families()) == ["a", "b", "default"]
            h = handles(db)
        elif r < 0.83:
            # drop "a" (its snapshots' view of it is gone with it) and create it again, empty
            for s, _ in snaps:
                s.close()
            snaps.clear()
            old = h["a"]
            db.drop_column_family("a")
            with pytest.raises(lsmkv.ClosedError):
                old.get(b"k0001")
            h["a"] = db.create_column_family("a", **FAMILY_OPTS["a"])
            m.fams["a"] = {}
        elif r < 0.85:
            clock.advance(rng.choice([1, 10, 60]))
        else:
            check_family(h[fam], m.live(fam), rng, f"{fam} {ctx}")
    for f in fams:
        check_family(h[f], m.live(f), rng, f"{f} end (seed {seed})")
    # the run went through flushes and compactions of every family
    assert deep == set(fams), f"families with no table below level 0 at any check: {set(fams) - deep}"
    for s, _ in snaps:
        s.close()
    db.close()
    db = lsmkv.DB(path, **opts)
    h = handles(db)
    for f in fams:
        check_family(h[f], m.live(f), rng, f"{f} reopened (seed {seed})")
    db.close()


class _SnapCursor:
    """A snapshot's family as check_cursor reads it (its iterator())."""

    def __init__(self, snap, cf):
        self.snap, self.cf = snap, cf

    def iterator(self):
        return self.snap.iterator(cf=self.cf)


def test_snapshot_reads_every_family_at_one_sequence(tmp_path):
    db = lsmkv.DB(str(tmp_path))
    a = db.create_column_family("a")
    with db.write_batch() as wb:
        wb.put(b"x", b"1"); wb.put(b"x", b"1a", cf=a)
    snap = db.snapshot()
    with db.write_batch() as wb:
        wb.put(b"x", b"2"); wb.put(b"x", b"2a", cf=a)
    a.flush()
    assert (snap.get(b"x"), snap.get(b"x", cf=a)) == (b"1", b"1a")
    assert (db.get(b"x"), a.get(b"x")) == (b"2", b"2a")
    with a.iterator(snapshot=snap) as it:
        it.seek_to_first()
        assert (it.key(), it.value()) == (b"x", b"1a")
    with db.iterator(cf=a) as it:
        it.seek_to_last()
        assert it.value() == b"2a"
    assert list(snap.items(cf=a)) == [(b"x", b"1a")]
    snap.close()
    db.close()


def test_a_family_that_never_flushes_holds_the_log(tmp_path):
    path = str(tmp_path)
    db = lsmkv.DB(path, write_buffer_size=64 * 1024)
    idle = db.create_column_family("idle")
    idle.put(b"keep", b"me")
    first_log = min(n for n in os.listdir(path) if n.endswith(".log"))
    for i in range(2500):            # the default family flushes several times (fewer than
        db.put(b"k%06d" % i, b"x" * 64)    # families.LOGS_PER_FAMILY per family: no forced flush)
    db.flush()
    assert db.stats()["flushes"] >= 3
    logs = sorted(n for n in os.listdir(path) if n.endswith(".log"))
    assert first_log in logs, "the log with the idle family's write was deleted"
    # once the idle family flushes, the old logs go
    idle.flush()
    db.flush()
    logs = sorted(n for n in os.listdir(path) if n.endswith(".log"))
    assert first_log not in logs
    idle.put(b"again", b"1")
    for i in range(2000):
        db.put(b"j%06d" % i, b"y" * 64)
    db.close()
    db = lsmkv.DB(path)
    idle = db.column_family("idle")
    assert idle.get(b"keep") == b"me" and idle.get(b"again") == b"1"
    assert db.get(b"k002499") == b"x" * 64 and db.get(b"j001999") == b"y" * 64
    db.close()


def test_exit_without_close_replays_into_each_family(tmp_path):
    """A DB never closed (its logs unsealed, no flush): reopen routes each record."""
    import subprocess
    import sys
    path = str(tmp_path)
    code = (
        "import lsmkv, os\n"
        f"db = lsmkv.DB({path!r})\n"
        "a = db.create_column_family('a'); b = db.create_column_family('b', merge_operator='uint64add')\n"
        "for i in range(500):\n"
        "    with db.write_batch() as wb:\n"
        "        wb.put(b'k%d' % i, b'd', cf=None); wb.put(b'k%d' % i, b'a', cf=a)\n"
        "        wb.merge(b'n', (1).to_bytes(8, 'little'), cf=b)\n"
        "a.flush()\n"
        "a.put(b'late', b'1')\n"
        "os._exit(0)\n")
    subprocess.run([sys.executable, "-c", code], check=True, cwd="/",   # "/": the installed lsmkv
                   env=dict(os.environ, PYTHONPATH=lsmkv_import_path()))
    db = lsmkv.DB(path)
    a, b = db.column_family("a"), db.column_family("b")
    assert len(list(db.keys())) == 500 and len(list(a.keys())) == 501
    assert int.from_bytes(b.get(b"n"), "little") == 500
    db.close()


def test_dropped_family_files_go_once_unpinned_and_name_is_reusable(tmp_path):
    path = str(tmp_path)
    db = lsmkv.DB(path)
    a = db.create_column_family("a")
    for i in range(100):
        a.put(b"k%03d" % i, b"v")
    a.flush()
    tables = {n for n in os.listdir(path) if n.endswith(".sst")}
    assert tables
    it = a.iterator()
    db.drop_column_family("a")
    assert tables <= set(os.listdir(path)), "a pinned table was deleted"
    it.seek_to_first()
    assert it.key() == b"k000"
    it.close()
    db.flush()
    assert not tables & set(os.listdir(path)), "the dropped family's tables stayed"
    a2 = db.create_column_family("a")
    assert a2.get(b"k000") is None
    db.close()
    db = lsmkv.DB(path)
    assert db.list_column_families() == ["default", "a"]
    assert list(db.column_family("a").items()) == []
    db.close()


def test_errors(tmp_path):
    db = lsmkv.DB(str(tmp_path))
    a = db.create_column_family("a")
    with pytest.raises(lsmkv.ColumnFamilyError):
        db.create_column_family("a")
    with pytest.raises(lsmkv.ColumnFamilyError):
        db.column_family("nope")
    with pytest.raises(ValueError):
        db.create_column_family("x", block_cache_size=1)       # the DB's option
    with pytest.raises(TypeError):
        db.create_column_family("x", no_such_option=1)
    with pytest.raises(lsmkv.MergeOperatorError):
        a.merge(b"k", b"v")
    wb = db.write_batch()
    with pytest.raises(TypeError):
        wb.put(b"k", b"v", cf="a")
    with pytest.raises(TypeError):
        a.write(lsmkv.WriteBatch())
    other = lsmkv.DB(str(tmp_path / "other"))
    o = other.create_column_family("o")
    wb = lsmkv.WriteBatch()
    wb.put(b"k", b"v", cf=o)
    with pytest.raises(ValueError):
        db.write(wb)
    other.close()
    assert db.column_family("default") is db
    db.close()
    with pytest.raises(lsmkv.ClosedError):
        a.get(b"k")


def test_db_without_families_writes_what_it_always_did(tmp_path):
    """No family ever created: the MANIFEST has no family field, the log no family record."""
    from lsmkv.core.dbcore import decode_batch
    from lsmkv.engine.logformat import read_log
    path = str(tmp_path)
    db = lsmkv.DB(path)
    db.put(b"a", b"1")
    with db.write_batch() as wb:
        wb.put(b"b", b"2"); wb.delete(b"c")
    db.flush()
    db.put(b"d", b"3")
    logs = [n for n in os.listdir(path) if n.endswith(".log")]
    for n in logs:
        data = open(os.path.join(path, n), "rb").read()
        for off, payload in read_log(n, data).records:
            for op in decode_batch(payload, n, off, True):
                pass
            assert all(op[4] == 0 for op in decode_batch(payload, n, off, True)[1])
    db.close()
    man = [n for n in os.listdir(path) if n.startswith("MANIFEST")]
    assert man
    from lsmkv.engine.version import VersionEdit, TAG_FAMILY
    data = open(os.path.join(path, man[0]), "rb").read()
    for off, payload in read_log(man[0], data, wal=False).records:
        e = VersionEdit.decode(payload, man[0], off)
        assert e.family == 0 and e.create_family is None
        assert bytes([TAG_FAMILY]) not in payload[:1]


def test_family_record_refused_by_default_only_replay(tmp_path):
    from lsmkv.core.dbcore import replay_batch, WriteBatch
    from lsmkv.core.memtable import MemTable
    db = lsmkv.DB(str(tmp_path))
    a = db.create_column_family("a")
    wb = WriteBatch()
    wb.put(b"k", b"v", cf=a)
    db.write(wb)
    db.close()
    from lsmkv.engine.logformat import read_log
    recs = []
    for n in sorted(os.listdir(str(tmp_path))):
        if n.endswith(".log"):
            recs += read_log(n, open(os.path.join(str(tmp_path), n), "rb").read()).records
    fam_recs = [p for _, p in recs if len(p) > 12 and p[12] & 0x80]
    assert fam_recs
    with pytest.raises(lsmkv.CorruptionError, match="column family"):
        replay_batch(MemTable(), fam_recs[0], "x.log", 0)


def test_transactions_across_families(tmp_path):
    db = lsmkv.DB(str(tmp_path))
    acc = db.create_column_family("accounts")
    log = db.create_column_family("log", merge_operator=("append", b","))
    acc.put(b"alice", b"100"); acc.put(b"bob", b"0")
    db.put(b"alice", b"default")
    with db.transaction() as txn:
        a = int(txn.get_for_update(b"alice", cf=acc))
        txn.put(b"alice", b"%d" % (a - 30), cf=acc)
        txn.put(b"bob", b"30", cf=acc)
        txn.merge(b"t", b"alice->bob", cf=log)
        txn.delete(b"alice")
        # its own writes, per family, over one snapshot
        assert txn.get(b"alice", cf=acc) == b"70" and txn.get(b"alice") is None
        assert txn.get(b"t", cf=log) == b"alice->bob"
        assert txn.items(cf=acc) == [(b"alice", b"70"), (b"bob", b"30")]
        assert txn.keys(reverse=True, cf=acc) == [b"bob", b"alice"]
        with txn.iterator(cf=acc) as it:
            it.seek(b"b")
            assert it.key() == b"bob"
        assert acc.get(b"alice") == b"100"          # nothing written before commit
    assert (acc.get(b"alice"), acc.get(b"bob"), log.get(b"t"), db.get(b"alice")) == \
        (b"70", b"30", b"alice->bob", None)
    # a conflict on a family's key: nothing of the transaction is written
    txn = db.transaction()
    txn.get_for_update(b"bob", cf=acc)
    txn.put(b"x", b"1")
    txn.put(b"y", b"1", cf=log)
    acc.put(b"bob", b"31")                     # another writer, after the snapshot
    with pytest.raises(lsmkv.ConflictError):
        txn.commit()
    assert db.get(b"x") is None and log.get(b"y") is None
    # the same key in another family is another key
    txn = db.transaction()
    txn.get_for_update(b"bob", cf=acc)
    db.put(b"bob", b"default")
    txn.put(b"z", b"1", cf=acc)
    txn.commit()
    assert acc.get(b"z") == b"1"
    # the transaction reads every family at its snapshot
    txn = db.transaction()
    acc.put(b"alice", b"0")
    assert txn.get(b"alice", cf=acc) == b"70"
    txn.rollback()
    with pytest.raises(lsmkv.MergeOperatorError):
        with db.transaction() as txn:
            txn.merge(b"k", b"v", cf=acc)
    db.close()


def test_checkpoint_holds_every_family(tmp_path):
    db = lsmkv.DB(str(tmp_path / "db"), write_buffer_size=64 * 1024)
    a = db.create_column_family("a", compression="none")
    for i in range(2000):
        with db.write_batch() as wb:
            wb.put(b"k%05d" % i, b"d" * 40)
            wb.put(b"k%05d" % i, b"a" * 40, cf=a)
    a.put(b"only-in-memtable", b"1")           # never flushed: in the logs the copy takes
    db.checkpoint(str(tmp_path / "copy"))
    a.put(b"after", b"1")
    db.close()
    cp = lsmkv.DB(str(tmp_path / "copy"))
    ca = cp.column_family("a")
    assert len(list(cp.keys())) == 2000 and len(list(ca.keys())) == 2001
    assert ca.get(b"only-in-memtable") == b"1" and ca.get(b"after") is None
    assert ca.get(b"k01999") == b"a" * 40
    cp.close()


def test_read_only_and_secondary_opens_read_families(tmp_path):
    path = str(tmp_path / "db")
    db = lsmkv.DB(path, write_buffer_size=64 * 1024)
    a = db.create_column_family("a")
    for i in range(1000):
        with db.write_batch() as wb:
            wb.put(b"k%04d" % i, b"d"); wb.put(b"k%04d" % i, b"a", cf=a)
    a.flush()
    a.put(b"in-log", b"1")
    ro = lsmkv.DB(path, read_only=True)
    ra = ro.column_family("a")
    assert len(list(ra.keys())) == 1001 and ra.get(b"in-log") == b"1" and ro.get(b"in-log") is None
    with pytest.raises(lsmkv.ReadOnlyError):
        ra.put(b"x", b"y")
    ro.close()
    sec = lsmkv.DB(path, secondary=str(tmp_path / "sec"))
    sa = sec.column_family("a")
    assert sa.get(b"in-log") == b"1"
    with db.write_batch() as wb:
        wb.put(b"new", b"d"); wb.put(b"new", b"a", cf=a)
    b = db.create_column_family("b")
    b.put(b"kb", b"1")
    a.flush()                      # a MANIFEST change: the secondary reloads
    sec.catch_up()
    assert (sec.get(b"new"), sa.get(b"new")) == (b"d", b"a")
    assert sec.column_family("b").get(b"kb") == b"1"
    a.put(b"tail", b"1")           # a log tail only
    sec.catch_up()
    assert sa.get(b"tail") == b"1"
    db.drop_column_family("b")
    db.flush()
    sec.catch_up()
    assert sec.list_column_families() == ["default", "a"]
    sec.close()
    db.close()


def test_repair_keeps_families(tmp_path):
    """repair (manifest mode) keeps each family's tables in it and replays each log
    record into its family; a damaged table of a family is salvaged in that family."""
    path = str(tmp_path)
    db = lsmkv.DB(path, write_buffer_size=64 * 1024)
    a = db.create_column_family("a")
    dropped = db.create_column_family("gone")
    for i in range(1500):
        with db.write_batch() as wb:
            wb.put(b"k%05d" % i, b"d" * 30)
            wb.put(b"k%05d" % i, b"a" * 30, cf=a)
            wb.put(b"k%05d" % i, b"g", cf=dropped)
    a.flush()
    a.put(b"in-log", b"1")
    db.put(b"in-log", b"d")
    db.drop_column_family("gone")
    # a crash: the DB is not closed (its logs keep the last writes)
    import subprocess
    import sys
    code = ("import lsmkv, os\n"
            f"db = lsmkv.DB({path!r})\n"
            "db.column_family('a').put(b'child', b'1')\n"
            "os._exit(0)\n")
    db.close()
    subprocess.run([sys.executable, "-c", code], check=True, cwd="/",   # "/": the installed lsmkv
                   env=dict(os.environ, PYTHONPATH=lsmkv_import_path()))
    report = lsmkv.repair(path)
    assert report.mode == "manifest" and not report.lost_anything, report.lines()
    db = lsmkv.DB(path)
    assert db.list_column_families() == ["default", "a"]
    a = db.column_family("a")
    assert len(list(db.keys())) == 1501 and len(list(a.keys())) == 1502
    assert a.get(b"k00007") == b"a" * 30 and db.get(b"k00007") == b"d" * 30
    assert a.get(b"child") == b"1" and a.get(b"in-log") == b"1" and db.get(b"in-log") == b"d"
    db.close()


def test_family_compactions_in_worker_processes(tmp_path):
    """compaction_worker='process' (the default): a family's compactions run with its
    own options and merge operator in the worker."""
    db = lsmkv.DB(str(tmp_path), write_buffer_size=64 * 1024, level0_file_num_compaction_trigger=2)
    c = db.create_column_family("counters", merge_operator="uint64add", compression="none",
                                write_buffer_size=64 * 1024)
    one = (1).to_bytes(8, "little")
    for r in range(6):
        for i in range(1500):
            c.merge(b"n%04d" % i, one)
        c.flush()
    c.compact_range()
    st = c.stats()
    assert st["files_per_level"][0] == 0 and sum(st["files_per_level"]) > 0, st
    assert all(int.from_bytes(v, "little") == 6 for v in c.values())
    assert len(list(c.keys())) == 1500 and list(db.keys()) == []
    db.close()


def test_family_is_dead_in_a_fork_child(tmp_path):
    db = lsmkv.DB(str(tmp_path))
    a = db.create_column_family("a")
    a.put(b"k", b"v")
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            try:
                a.put(b"child", b"x")
            except lsmkv.ClosedError:
                code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.WEXITSTATUS(status) == 0, "a family write in a fork() child was not refused"
    assert a.get(b"child") is None and a.get(b"k") == b"v"
    db.close()


def test_family_stats(tmp_path):
    db = lsmkv.DB(str(tmp_path))
    a = db.create_column_family("a", merge_operator="uint64add", bloom_bits_per_key=4)
    a.put(b"k", b"v"); a.get(b"k"); a.flush()
    st = a.stats()
    assert (st["name"], st["puts"], st["gets"], st["get_hits"]) == ("a", 1, 1, 1)
    assert st["levels"][0]["files"] == 1 and st["merge_operator"] == "uint64add"
    assert st["bloom_bits_per_key"] == 4 and db.stats()["puts"] == 0
    db.drop_column_family("a")
    with pytest.raises(lsmkv.ClosedError, match="dropped"):
        a.stats()
    db.close()


def test_logs_stay_bounded_with_an_idle_family(tmp_path):
    """A family written once and never flushed would keep every log after its write:
    past a few logs per family, the holders of the oldest log flush (its data safe)."""
    path = str(tmp_path)
    db = lsmkv.DB(path, write_buffer_size=64 * 1024)
    idle = db.create_column_family("idle")
    idle.put(b"keep", b"me")
    most = 0
    for i in range(30000):
        db.put(b"k%06d" % i, b"x" * 64)
        if i % 500 == 0:
            most = max(most, sum(1 for n in os.listdir(path) if n.endswith(".log")))
    assert most <= 16, f"{most} logs"
    assert sum(idle.stats()["files_per_level"]) == 1     # it was flushed once
    db.close()
    db = lsmkv.DB(path)
    assert db.column_family("idle").get(b"keep") == b"me" and db.get(b"k029999") == b"x" * 64
    db.close()


def test_repair_rebuild_mode_keeps_families(tmp_path):
    """No usable MANIFEST: repair merges each family's tables (a table names its
    family: the column_family property) and log records into that family, named as
    the readable MANIFEST records say; a dropped family stays dropped."""
    import subprocess
    import sys
    from lsmkv.engine.logformat import read_log
    path = str(tmp_path)
    db = lsmkv.DB(path, write_buffer_size=64 * 1024)
    users = db.create_column_family("users", compression="none")
    gone = db.create_column_family("gone")
    for i in range(1200):
        with db.write_batch() as wb:
            wb.put(b"k%05d" % i, b"d" * 30)
            wb.put(b"k%05d" % i, b"u" * 30, cf=users)
            wb.put(b"k%05d" % i, b"g", cf=gone)
    users.flush()
    gone.flush()
    db.drop_column_family("gone")
    db.close()
    code = ("import lsmkv, os\n"
            f"db = lsmkv.DB({path!r}, write_buffer_size=64 * 1024)\n"
            "u = db.column_family('users')\n"
            "u.put(b'flushed-late', b'1'); u.flush()\n"          # an edit after the snapshot records
            "u.put(b'in-log', b'1'); db.put(b'in-log', b'd')\n"
            "os._exit(0)\n")
    subprocess.run([sys.executable, "-c", code], check=True, cwd="/",   # "/": the installed lsmkv
                   env=dict(os.environ, PYTHONPATH=lsmkv_import_path()))
    man = [n for n in os.listdir(path) if n.startswith("MANIFEST")][0]
    data = bytearray(open(os.path.join(path, man), "rb").read())
    last_off = read_log(man, bytes(data), wal=False).records[-1][0]
    data[last_off + 10] ^= 0xFF                 # damage the last edit: no usable MANIFEST
    open(os.path.join(path, man), "wb").write(bytes(data))
    report = lsmkv.repair(path)
    assert report.mode == "rebuild" and not report.lost_anything, report.lines()
    db = lsmkv.DB(path)
    assert db.list_column_families() == ["default", "users"]
    u = db.column_family("users")
    assert len(list(db.keys())) == 1201 and len(list(u.keys())) == 1202
    assert u.get(b"k00005") == b"u" * 30 and db.get(b"k00005") == b"d" * 30
    assert u.get(b"in-log") == b"1" and db.get(b"in-log") == b"d" and u.get(b"flushed-late") == b"1"
    assert u.stats()["compression"] == "none"          # its options, from the MANIFEST's record
    db.close()


def test_the_memtable_budget_holds_while_flushes_lag(tmp_path):
    """With the flush thread busy, no family can switch (each already has an immutable
    memtable waiting): writers wait for a flush instead of filling every family's own
    write buffer (the total once reached ~10 MB of a 4 MB limit under load)."""
    import threading
    limit = 4 << 20
    n = 120000
    gate = threading.Event()
    with lsmkv.DB(str(tmp_path / "db"), write_buffer_size=32 << 20, db_write_buffer_size=limit) as db:
        hs = [db] + [db.create_column_family("c%d" % i) for i in range(7)]
        blocked = testing.run_in_pool(db, gate.wait, lane="flush")
        errors = []

        def writer():
            try:
                for i in range(n):
                    hs[i % 8].put(b"k%07d" % i, b"v" * 100)
            except BaseException as e:          # noqa: BLE001 - reported below
                errors.append(e)

        t = threading.Thread(target=writer)
        t.start()
        try:
            peak = 0
            while t.is_alive() and db.stats()["stall_causes"]["memtables"] == 0:
                peak = max(peak, db.memory_usage()["memtable_active"])
                t.join(0.01)
            assert t.is_alive(), "the writer never waited for a flush"
            for _ in range(20):
                peak = max(peak, db.memory_usage()["memtable_active"])
                t.join(0.01)
            assert t.is_alive() and peak < 2 * limit, peak
        finally:
            gate.set()
            t.join(120)
        assert blocked.is_set() and not errors and not t.is_alive()
        for i in range(0, n, 97):
            assert hs[i % 8].get(b"k%07d" % i) == b"v" * 100


def test_families_share_one_memtable_budget(tmp_path):
    """db_write_buffer_size bounds what every family's active memtable holds together:
    8 families written in turn flush the largest one when the total reaches it,
    instead of holding 8 write buffers; every write stays readable."""
    limit = 4 << 20
    n = 120000                                   # ~16 MB of entries: 4x the limit
    with lsmkv.DB(str(tmp_path / "db"), write_buffer_size=32 << 20, db_write_buffer_size=limit) as db:
        hs = [db] + [db.create_column_family("c%d" % i) for i in range(7)]
        peak = 0
        for i in range(n):
            hs[i % 8].put(b"k%07d" % i, b"v" * 100)
            if i % 1000 == 0:
                peak = max(peak, db.memory_usage()["memtable_active"])
        st = db.stats()
        assert st["family_memtable_switches"] >= 4, st["family_memtable_switches"]
        # the total passes the limit by one family's share at most (plus arena chunks)
        assert peak < 2 * limit, peak
        for i in range(0, n, 97):
            assert hs[i % 8].get(b"k%07d" % i) == b"v" * 100
    with lsmkv.DB(str(tmp_path / "db")) as db:
        hs = [db] + [db.column_family("c%d" % i) for i in range(7)]
        assert all(hs[i % 8].get(b"k%07d" % i) == b"v" * 100 for i in range(0, n, 89))
    with pytest.raises(ValueError, match="db_write_buffer_size"):
        lsmkv.DB(str(tmp_path / "db2"), db_write_buffer_size=-1)


def test_a_budget_switch_brings_the_families_down_to_half_the_limit(tmp_path):
    """When the families' active memtables reach db_write_buffer_size together, the
    largest ones switch until the rest hold at most half of it (not one per 1/8 of
    it): the total swings as one family's memtable does, between half and full.
    (max_write_buffer_number 8: a family whose last memtable still waits for its
    flush may not switch, and then the total rightly stays higher; with 8 slots
    no family waits here.)"""
    limit = 4 << 20
    with lsmkv.DB(str(tmp_path / "db"), write_buffer_size=32 << 20, db_write_buffer_size=limit,
                  max_write_buffer_number=8) as db:
        hs = [db] + [db.create_column_family("c%d" % i) for i in range(7)]
        full = switches = 0
        lows = []
        for i in range(90000):
            hs[i % 8].put(b"k%07d" % i, b"v" * 100)      # every entry the same size
            if i % 200 == 0:
                total = sum(h.stats()["memtable_entries"] for h in hs)
                now = db.stats()["family_memtable_switches"]
                if now == 0:
                    full = max(full, total)          # entries that fill the limit
                elif now != switches:
                    lows.append(total)
                switches = now
        assert len(lows) >= 3, lows
        # within 200 puts of a switch, the families hold at most half the limit
        assert max(lows) <= full // 2 + 200, (full, lows)


# ---- review findings: drop_column_family against concurrent work and kept handles

def test_two_concurrent_drops_of_one_family_leave_a_db_that_opens(tmp_path):
    import threading
    for attempt in range(5):
        path = str(tmp_path / ("db%d" % attempt))
        db = lsmkv.DB(path)
        db.create_column_family("a").put(b"k", b"v")
        bar = threading.Barrier(2)
        errors = []

        def drop():
            bar.wait()
            try:
                db.drop_column_family("a")
            except lsmkv.ColumnFamilyError as e:
                errors.append(str(e))
        ts = [threading.Thread(target=drop) for _ in range(2)]
        [t.start() for t in ts]
        [t.join() for t in ts]
        db.close()
        assert len(errors) == 1 and ("being dropped" in errors[0] or "no column family" in errors[0])
        with lsmkv.DB(path) as db:                 # the MANIFEST holds one drop: it opens
            assert db.list_column_families() == ["default"]


def test_drop_after_a_failed_flush_of_the_family_does_not_hang(tmp_path):
    import threading
    db = lsmkv.DB(str(tmp_path / "db"))
    try:
        a = db.create_column_family("a")

        def no_space(imm):
            raise OSError(28, "No space left on device (injected)")
        a.core.flusher.flush_memtable = no_space
        a.put(b"k", b"v")
        with pytest.raises(lsmkv.BackgroundError):
            a.flush()
        outcome = []

        def drop():
            try:
                db.drop_column_family("a")
                outcome.append("dropped")
            except lsmkv.LsmkvError as e:
                outcome.append(type(e).__name__)
        t = threading.Thread(target=drop, daemon=True)
        t.start()
        t.join(10)
        assert not t.is_alive(), "drop_column_family hung on the failed flush"
        assert outcome == ["dropped"] or outcome == ["BackgroundError"], outcome
    finally:
        db.close()


def test_a_compaction_that_meets_a_dropped_family_stops_without_failing_the_db(tmp_path):
    import threading
    import time
    db = lsmkv.DB(str(tmp_path / "db"))
    try:
        a = db.create_column_family("a")
        a.put(b"k", b"v")
        comp = a.core.compactions
        entered = threading.Event()
        run = comp.compact_auto
        comp.needs_compaction = lambda: True

        def delayed():                          # the gap between step()'s check and the lock
            entered.set()
            time.sleep(0.5)
            return run()
        comp.compact_auto = delayed
        with db.core.mutex:
            db.core.cv.notify_all()
        assert entered.wait(5)
        db.drop_column_family("a")
        time.sleep(1.0)
        db.put(b"x", b"y")                       # no BackgroundError: the DB is not read-only
        assert db.stats()["background_error"] is None
    finally:
        db.close()


def test_a_handle_kept_after_the_drop_holds_no_table_or_memtable(tmp_path):
    import time
    path = str(tmp_path / "db")
    db = lsmkv.DB(path)
    try:
        a = db.create_column_family("a")
        for i in range(5000):
            a.put(b"k%06d" % i, b"v" * 100)
        a.flush()
        a.put(b"unflushed", b"x" * 1000)
        db.drop_column_family("a")
        time.sleep(0.5)

        def deleted_open_files():
            out = []
            for fd in os.listdir("/proc/self/fd"):
                try:
                    target = os.readlink(f"/proc/self/fd/{fd}")
                except OSError:
                    continue
                if target.startswith(path) and "(deleted)" in target:
                    out.append(target)
            return out
        assert not [f for f in os.listdir(path) if f.endswith(".sst")]
        assert deleted_open_files() == []          # the disk space is free while `a` lives
        assert len(a.core.sv.mem) == 0
        with pytest.raises(lsmkv.ClosedError, match="dropped"):
            a.get(b"unflushed")
        for use in (lambda: list(a.items()), a.iterator, lambda: a.multi_get([b"k000001"])):
            with pytest.raises(lsmkv.ClosedError, match="column family 'a' was dropped"):
                use()
    finally:
        db.close()


def test_a_dropped_familys_id_is_never_given_again_across_reopens(tmp_path):
    """Each open writes a new MANIFEST from the live state; the next family id
    goes with it (a follower keys families by id: a reused id kept the old one's
    options there)."""
    path = str(tmp_path / "db")
    with lsmkv.DB(path) as db:
        db.create_column_family("a")
        b = db.create_column_family("b", merge_operator="append")
        assert b.id == 2
        db.drop_column_family("b")
    lsmkv.DB(path).close()
    with lsmkv.DB(path) as db:
        assert db.create_column_family("b", merge_operator="max").id == 3
    with lsmkv.DB(path) as db:
        assert db.column_family("b").id == 3 and db.create_column_family("c").id == 4


def test_repair_rebuild_does_not_guess_the_family_of_an_unreadable_table(tmp_path):
    """Rebuild mode with families: a table whose footer (so its column_family
    property) cannot be read goes to lost/, not into the default family."""
    from lsmkv.core.table import TableReader
    from lsmkv.engine.logformat import read_log
    path = str(tmp_path)
    db = lsmkv.DB(path, write_buffer_size=64 * 1024)
    users = db.create_column_family("users")
    for i in range(1000):
        with db.write_batch() as wb:
            wb.put(b"k%05d" % i, b"d" * 30)
            wb.put(b"k%05d" % i, b"u" * 30, cf=users)
    db.flush()
    users.flush()
    uid = users.id
    db.close()
    damaged = []
    for name in sorted(n for n in os.listdir(path) if n.endswith(".sst")):
        p = os.path.join(path, name)
        t = TableReader(p, int(name[:-4]), None, True)
        cf = t.properties.get("column_family", 0)
        t.close()
        if cf == uid:
            with open(p, "r+b") as f:
                f.seek(-16, os.SEEK_END)
                f.write(b"\xff" * 16)             # the footer: nothing of the table can be read
            damaged.append(name)
    assert damaged
    man = [n for n in os.listdir(path) if n.startswith("MANIFEST")][0]
    data = bytearray(open(os.path.join(path, man), "rb").read())
    last_off = read_log(man, bytes(data), wal=False).records[-1][0]
    data[last_off + 10] ^= 0xFF                   # no usable MANIFEST: rebuild mode
    open(os.path.join(path, man), "wb").write(bytes(data))
    report = lsmkv.repair(path)
    assert report.mode == "rebuild" and report.lost_anything, report.lines()
    assert set(damaged) <= set(os.listdir(os.path.join(path, "lost")))
    with lsmkv.DB(path) as db:
        assert all(v == b"d" * 30 for _, v in db.items())    # no value of users' in the default
        assert len(list(db.keys())) == 1000


def test_a_family_handle_has_the_dbs_mapping_and_estimates(tmp_path):
    """pop, setdefault, update (one atomic batch), reversed(), approximate_size and
    estimate_num_keys work on a family's key space, as on the DB's."""
    with lsmkv.DB(str(tmp_path / "db")) as db:
        fam = db.create_column_family("f", compression="none")
        fam.update({b"a": b"1", b"b": b"2"})
        fam.update([(b"c", b"3")])
        assert fam.setdefault(b"a", b"x") == b"1" and fam.setdefault(b"d", b"4") == b"4"
        assert fam.pop(b"d") == b"4" and fam.pop(b"d", None) is None
        with pytest.raises(KeyError):
            fam.pop(b"d")
        assert list(reversed(fam)) == [b"c", b"b", b"a"] and list(fam) == [b"a", b"b", b"c"]
        assert list(db.keys()) == []                # none of it went to the default family
        for i in range(2000):
            fam.put(b"k%05d" % i, b"v" * 100)
        fam.flush()
        whole = fam.approximate_size()
        assert whole > 150_000 and db.approximate_size() == 0
        assert 0.3 < fam.approximate_size(b"k00000", b"k01000") / whole < 0.7
        assert 1900 <= fam.estimate_num_keys() <= 2100 and db.estimate_num_keys() == 0
        assert db.stats()["batches"] == 2           # each update() was one batch
