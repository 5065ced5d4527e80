"""Range tombstones: fragmentation and lookup (lsmkv.core.rangedel), the SST's
range-del block (written by TableBuilder, read by TableReader), the format
version it bumps, and the engine's use of them (write, recovery, flush,
compaction, disk reclaimed, checkpoint)."""
import os
import random
import shutil
import struct

import pytest

import lsmkv
from lsmkv import testing
from lsmkv.core.rangedel import RangeDelSet, compact_fragments, fragment
from lsmkv.core.table import (FOOTER_SIZE, FORMAT_VERSION, FORMAT_VERSION_PLAIN, TableBuilder, TableReader,
                              make_tag_py)
from lsmkv.errors import CorruptionError


def ikey(k, seq, kind=1):
    return k + make_tag_py(seq, kind).to_bytes(8, "little")


# ---------------------------------------------------------------- fragmentation

def _brute_max_covering(ts, k, seq):
    return max([q for s, e, q in ts if s <= k < e and q <= seq], default=0)


@pytest.mark.parametrize("seed", range(20))
def test_fragments_answer_as_the_tombstones_do(seed):
    rng = random.Random(seed)
    keys = [b"%02d" % i for i in range(30)]
    ts = []
    for q in rng.sample(range(1, 100), rng.randrange(0, 12)):
        a, b = sorted(rng.sample(keys, 2))
        ts.append((a, b, q))
    frags = fragment(ts)
    for i, (s, e, seqs) in enumerate(frags):          # invariants 1 and 2
        assert s < e and seqs and list(seqs) == sorted(set(seqs), reverse=True)
        if i:
            assert frags[i - 1][1] <= s
    rd = RangeDelSet(ts)
    half = len(ts) // 2
    stacked = RangeDelSet(ts[half:], base=RangeDelSet(ts[:half]))    # a memtable's over the tables'
    for k in keys + [b"", b"99", b"0", b"05x"]:
        for seq in (0, 1, 30, 50, 99, 1 << 40):
            want = _brute_max_covering(ts, k, seq)
            assert rd.max_covering(k, seq) == want == stacked.max_covering(k, seq), (ts, k, seq)


def test_fragment_ignores_empty_ranges_and_joins_neighbours():
    assert fragment([(b"b", b"b", 3), (b"c", b"a", 4)]) == []
    assert fragment([(b"a", b"c", 5), (b"c", b"e", 5)]) == [(b"a", b"e", (5,))]
    assert len(RangeDelSet([])) == 0 and RangeDelSet([]).max_covering(b"x", 10) == 0


def test_compact_fragments_keeps_what_snapshots_need():
    f = fragment([(b"a", b"c", 3), (b"a", b"c", 5), (b"a", b"c", 8), (b"b", b"d", 9)])
    # above the oldest snapshot (6): all kept; at or below it: the newest only, none at the bottom
    kept = compact_fragments(f, 6, False)
    assert kept == [(b"a", b"b", 8), (b"a", b"b", 5), (b"b", b"c", 9), (b"b", b"c", 8), (b"b", b"c", 5),
                    (b"c", b"d", 9)]
    assert compact_fragments(f, 6, True) == [(b"a", b"b", 8), (b"b", b"c", 9), (b"b", b"c", 8), (b"c", b"d", 9)]
    assert compact_fragments(f, 100, True) == []


# ---------------------------------------------------------------- the SST block

def _table(path, entries, tombstones):
    b = TableBuilder(path)
    for k, v in entries:
        b.py_add(k, v)
    if tombstones is not None:
        b.add_range_dels(tombstones)
    return b.finish()


def test_range_del_block_round_trips_and_widens_the_key_range(tmp_path):
    p = str(tmp_path / "000001.sst")
    meta = _table(p, [(ikey(b"m", 3), b"v")], [(b"a", b"c", 7), (b"k", b"z", 5)])
    t = TableReader(p, 1, None, True)
    assert t.range_dels == [(b"a", b"c", 7), (b"k", b"z", 5)]
    assert t.properties["num_range_deletions"] == 2
    assert t.properties["smallest_key"] == b"a" and t.properties["largest_key"] == b"z"
    assert meta["smallest"] == ikey(b"a", 7, 4)
    assert meta["largest"] == b"z" + b"\xff" * 8       # the end is exclusive: before every entry of z
    assert (meta["smallest_seq"], meta["largest_seq"]) == (3, 7)
    assert t.py_get(b"m") == b"v"
    with open(p, "rb") as f:
        f.seek(-FOOTER_SIZE + 64, 2)
        assert struct.unpack("<I", f.read(4))[0] == FORMAT_VERSION == 2


def test_a_table_of_tombstones_only(tmp_path):
    p = str(tmp_path / "000001.sst")
    meta = _table(p, [], [(b"b", b"d", 4)])
    t = TableReader(p, 1, None, True)
    assert t.range_dels == [(b"b", b"d", 4)] and meta["num_entries"] == 0
    assert (meta["smallest"], meta["largest"]) == (ikey(b"b", 4, 4), b"d" + b"\xff" * 8)


def test_tables_without_tombstones_keep_the_old_format_byte_for_byte(tmp_path):
    entries = [(ikey(b"k%03d" % i, i + 1), b"v" * i) for i in range(200)]
    a, b = str(tmp_path / "000001.sst"), str(tmp_path / "000002.sst")
    _table(a, entries, None)
    _table(b, entries, [])
    with open(a, "rb") as fa, open(b, "rb") as fb:
        da, db_ = fa.read(), fb.read()
    assert da == db_
    assert struct.unpack("<I", da[-FOOTER_SIZE + 64:-FOOTER_SIZE + 68])[0] == FORMAT_VERSION_PLAIN == 1
    assert TableReader(a, 1, None, True).range_dels is None


def _set_version(path, version):
    from lsmkv.core.coding import crc32c_py
    with open(path, "r+b") as f:
        f.seek(-FOOTER_SIZE, 2)
        footer = bytearray(f.read(FOOTER_SIZE))
        footer[64:68] = struct.pack("<I", version)
        footer[68:72] = struct.pack("<I", crc32c_py(bytes(footer[:68])))
        f.seek(-FOOTER_SIZE, 2)
        f.write(footer)


def test_a_newer_format_version_is_a_clear_error_naming_the_file(tmp_path):
    p = str(tmp_path / "000001.sst")
    _table(p, [(ikey(b"a", 1), b"v")], [(b"b", b"c", 2)])
    copy = str(tmp_path / "000002.sst")
    shutil.copy(p, copy)
    _set_version(copy, FORMAT_VERSION + 1)       # as a later lsmkv might write it
    with pytest.raises(CorruptionError) as ei:
        TableReader(copy, 2, None, True)
    msg = str(ei.value)
    assert copy in msg and f"version {FORMAT_VERSION + 1}" in msg and "newer" in msg


def test_a_db_holding_a_newer_table_does_not_open_and_names_it(tmp_path):
    path = str(tmp_path / "db")
    db = lsmkv.DB(path)
    db.put(b"a", b"1")
    db.delete_range(b"b", b"c")
    db.flush()
    (number,) = [f.number for files in testing.level_files(db) for f in files]
    db.close()
    sst = os.path.join(path, "%06d.sst" % number)
    _set_version(sst, FORMAT_VERSION + 1)
    with pytest.raises(CorruptionError) as ei:
        lsmkv.DB(path)
    assert sst in str(ei.value) and "newer" in str(ei.value)


# ---------------------------------------------------------------- the engine

def _du(path):
    return sum(os.path.getsize(os.path.join(path, n)) for n in os.listdir(path) if n.endswith(".sst"))


def test_delete_range_over_90_percent_reclaims_the_disk(tmp_path):
    path = str(tmp_path / "db")
    db = lsmkv.DB(path, compression="none")
    n = 100_000
    v = b"x" * 40
    for i in range(n):
        db.put(b"key%08d" % i, v)
    db.flush()
    db.compact_range()
    before = _du(path)
    db.delete_range(b"key%08d" % (n // 20), b"key%08d" % (n // 20 + n * 9 // 10))   # 90%, in the middle
    assert db.get(b"key%08d" % (n // 2)) is None and db.get(b"key%08d" % 0) == v
    db.flush()
    db.compact_range()
    after = _du(path)
    assert after <= 0.15 * before, (before, after)
    assert sum(1 for _ in db.keys()) == n - n * 9 // 10
    # dropped at the bottommost level once no snapshot needs it: reads are back on the plain path
    assert all(t.range_dels is None for t in testing.table_readers(db).values())
    db.close()


def test_tombstones_survive_recovery_flush_and_reopen(tmp_path):
    path = str(tmp_path / "db")
    db = lsmkv.DB(path)
    for i in range(100):
        db.put(b"k%03d" % i, b"v")
    db.flush()
    db.delete_range(b"k010", b"k020")
    db.close()                    # the tombstone is in the log only: replayed at open
    db = lsmkv.DB(path)
    assert db.get(b"k015") is None and db.get(b"k020") == b"v" and len(list(db.keys())) == 90
    db.flush()
    db.close()
    db = lsmkv.DB(path)
    assert db.get(b"k015") is None and len(list(db.keys())) == 90
    assert any(t.range_dels for t in testing.table_readers(db).values())
    db.close()


def test_compaction_keeps_keys_a_snapshot_needs(tmp_path):
    path = str(tmp_path / "db")
    db = lsmkv.DB(path)
    for i in range(50):
        db.put(b"k%03d" % i, b"old")
    snap = db.snapshot()
    db.delete_range(b"k000", b"k040")
    db.put(b"k005", b"new")
    db.flush()
    db.compact_range()
    assert snap.get(b"k010") == b"old" and db.get(b"k010") is None and db.get(b"k005") == b"new"
    assert len(dict(snap.items())) == 50 and len(list(db.keys())) == 11
    snap.close()
    db.compact_range()
    assert len(list(db.keys())) == 11 and db.get(b"k005") == b"new"
    db.close()


def test_ttl_keys_and_checkpoint(tmp_path):
    path = str(tmp_path / "db")
    db = lsmkv.DB(path)
    db.put(b"a", b"1", ttl=3600)
    db.put(b"b", b"2")
    db.delete_range(b"a", b"b")
    assert db.get(b"a") is None and db.ttl(b"b") is None
    with pytest.raises(KeyError):
        db.ttl(b"a")
    db.flush()
    cp = str(tmp_path / "cp")
    db.checkpoint(cp)
    db.close()
    db = lsmkv.DB(cp)
    assert list(db.items()) == [(b"b", b"2")]
    db.close()


def test_bad_ranges(tmp_path):
    db = lsmkv.DB(str(tmp_path / "db"))
    db.put(b"a", b"1")
    db.delete_range(b"a", b"a")        # empty: nothing written
    assert db.get(b"a") == b"1"
    with pytest.raises(ValueError, match="after stop"):
        db.delete_range(b"b", b"a")
    with pytest.raises(TypeError):
        db.delete_range("a", b"b")
    wb = db.write_batch()
    wb.delete_range(b"x", b"x")
    assert len(wb) == 0
    with pytest.raises(ValueError):
        wb.delete_range(b"z", b"a")
    db.close()


def test_files_a_tombstone_covers_whole_are_dropped_unread(tmp_path):
    path = str(tmp_path / "db")
    db = lsmkv.DB(path, compression="none", target_file_size_base=64 * 1024)
    for i in range(20_000):
        db.put(b"key%06d" % i, b"x" * 40)
    db.flush()
    db.compact_range()
    files = [f for files in testing.level_files(db) for f in files]
    assert len(files) > 5
    snap = db.snapshot()
    db.delete_range(b"key000100", b"key019900")
    db.put(b"key000050", b"new")
    db.flush()
    assert testing.covered_inputs_of(db, snap.sequence) == set()      # a snapshot older than the tombstone
    assert len(testing.covered_inputs_of(db)) >= len(files) - 3        # all but the files at the range's ends
    snap.close()
    db.compact_range()
    s = db.stats()
    assert s["range_files_dropped"] >= len(files) - 3      # all but the files at the range's ends
    assert [k for k in db.keys()] == [b"key%06d" % i for i in list(range(100)) + list(range(19900, 20000))]
    assert db.get(b"key000050") == b"new" and db.get(b"key010000") is None
    db.close()


def test_a_secondary_follows_range_deletes(tmp_path):
    d, own = str(tmp_path / "db"), str(tmp_path / "own")
    db = lsmkv.DB(d)
    for i in range(100):
        db.put(b"k%03d" % i, b"v")
    db.flush()
    sec = lsmkv.DB(d, secondary=own)
    db.delete_range(b"k010", b"k090")          # in the primary's log
    sec.catch_up()
    assert sec.get(b"k050") is None and len(list(sec.keys())) == 20
    db.flush()
    db.compact_range()                         # now in (and then out of) its tables
    sec.catch_up()
    assert sec.get(b"k050") is None and list(sec.keys(reverse=True))[0] == b"k099"
    assert len(list(sec.keys())) == 20
    sec.close()
    db.close()


def test_memtable_tombstones_count_toward_the_write_buffer(tmp_path):
    from lsmkv.core.memtable import MemTable
    m = MemTable()
    used = m.arena_used
    m.delete_range(5, b"a" * 100, b"b" * 100)
    assert m.arena_used >= used + 200 and len(m) == 1 and m.entries == 0 and m.range_dels == [(b"a" * 100, b"b" * 100, 5)]
    assert (m.first_seq, m.last_seq) == (5, 5)
    db = lsmkv.DB(str(tmp_path / "db"), write_buffer_size=64 * 1024)
    for i in range(2000):                       # tombstones alone fill memtables: they get flushed
        db.delete_range(b"r%06d" % i + b"x" * 50, b"r%06d" % i + b"y" * 50)
    db.flush()
    assert db.stats()["flushes"] >= 2
    db.close()


def test_cut_points_avoid_fragments():
    rd = RangeDelSet([(b"b", b"d", 3), (b"f", b"h", 4)])
    assert [k for k in (b"a", b"b", b"c", b"d", b"e", b"f", b"h", b"i") if rd.cut_ok(k)] == [b"a", b"e", b"i"]


def test_compaction_outputs_split_around_tombstones(tmp_path):
    """A compaction carrying tombstones still cuts its outputs at target_file_size,
    between fragments: each output holds the fragments starting in its range, the
    level's files do not overlap, and reads agree with the model."""
    path = str(tmp_path / "db")
    db = lsmkv.DB(path, compression="none", target_file_size_base=64 * 1024)
    model = {}
    for i in range(20_000):
        db.put(b"key%06d" % i, b"x" * 40)
        model[b"key%06d" % i] = b"x" * 40
    db.flush()
    db.compact_range()
    snap = db.snapshot()              # keeps the tombstones (and the keys) alive through compaction
    for a in range(0, 20_000, 1000):
        db.delete_range(b"key%06d" % (a + 100), b"key%06d" % (a + 400))
        for i in range(a + 100, a + 400):
            model.pop(b"key%06d" % i, None)
    db.flush()
    db.compact_range()
    files = [f for fs in testing.level_files(db) for f in fs]
    assert len(files) > 5
    testing.current_version(db).check()
    readers = testing.table_readers(db)
    n = 0
    for f in files:
        for s, e, q in readers[f.number].range_dels or ():
            assert f.smallest_user_key <= s and e <= f.largest_user_key
            n += 1
    assert n == 20                    # every tombstone kept (the snapshot needs them), none split
    assert dict(db.items()) == model and len(dict(snap.items())) == 20_000
    assert list(db.keys(reverse=True)) == sorted(model, reverse=True)
    snap.close()
    db.compact_range()
    assert dict(db.items()) == model
    assert all(readers.range_dels is None for readers in testing.table_readers(db).values())
    db.close()


def test_reads_between_many_memtable_tombstones(tmp_path):
    """A read after each delete_range: the memtable's tombstones are stacked in
    segments (Core._range_dels); every answer agrees with the model."""
    rng = random.Random(5)
    db = lsmkv.DB(str(tmp_path / "db"))
    model = {}
    for i in range(2000):
        db.put(b"k%05d" % i, b"v")
        model[b"k%05d" % i] = b"v"
    db.flush()
    snaps = []
    for step in range(400):
        a = rng.randrange(2000)
        lo, hi = b"k%05d" % a, b"k%05d" % (a + rng.randrange(1, 30))
        db.delete_range(lo, hi)
        for k in [k for k in model if lo <= k < hi]:
            del model[k]
        if rng.random() < 0.3:
            k = b"k%05d" % rng.randrange(2000)
            db.put(k, b"w%d" % step)
            model[k] = b"w%d" % step
        k = b"k%05d" % rng.randrange(2000)
        assert db.get(k) == model.get(k), step
        if step % 50 == 0:
            snaps.append((db.snapshot(), dict(model)))
            assert dict(db.items()) == model, step
    for snap, frozen in snaps:
        assert dict(snap.items()) == frozen
        k = b"k%05d" % rng.randrange(2000)
        assert snap.get(k) == frozen.get(k)
        snap.close()
    db.close()
