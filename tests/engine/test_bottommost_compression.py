"""bottommost_compression_level: compaction outputs at the bottommost level are
compressed at that zstd level (recorded in each table's properties), other tables at
compression_level; the data reads back; bad values are rejected."""
import os

import pytest

import lsmkv
from lsmkv import testing
from lsmkv.core.table import TableReader
from lsmkv.engine.compaction import output_compression_level


def _value(i):
    return (b"%08d-" % i) * 3 + bytes((i * 7 + j) % 251 for j in range(40))


def _levels(db):
    """{level: [compression_level property of each table]}"""
    out = {}
    for level, files in enumerate(testing.current_version(db).levels):
        for f in files:
            t = TableReader(os.path.join(db.path, "%06d.sst" % f.number), f.number, None, True)
            try:
                out.setdefault(level, []).append(t.properties.get("compression_level"))
            finally:
                t.close()
    return out


@pytest.mark.parametrize("bottom", [5, -3, None])
def test_bottommost_outputs_use_the_level(tmp_path, bottom):
    path = str(tmp_path / "db")
    db = lsmkv.DB(path, write_buffer_size=256 << 10, compression_level=-1,
                  bottommost_compression_level=bottom, level0_file_num_compaction_trigger=100,
                  level0_slowdown_writes_trigger=100, level0_stop_writes_trigger=100)
    try:
        for i in range(6000):
            db.put(b"k%06d" % i, _value(i))
        db.compact_range()                     # everything into the bottommost level
        for i in range(0, 6000, 7):
            db.put(b"k%06d" % i, _value(i + 1))
        db.flush()                             # and one level-0 table above it
        levels = _levels(db)
        want = -1 if bottom is None else bottom
        assert levels[0] == [-1]
        deeper = [lv for lv in levels if lv > 0]
        assert deeper and all(c == want for lv in deeper for c in levels[lv])
        for i in range(6000):
            assert db.get(b"k%06d" % i) == _value(i + 1 if i % 7 == 0 else i)
    finally:
        db.close()
    with lsmkv.DB(path, bottommost_compression_level=None) as db:      # reopens with another level
        assert db.get(b"k%06d" % 1) == _value(1)
        assert sum(1 for _ in db.keys()) == 6000


def test_not_bottommost_outputs_use_compression_level():
    o = lsmkv.Options(compression_level=2, bottommost_compression_level=9)
    assert output_compression_level(o, True) == 9
    assert output_compression_level(o, False) == 2


def test_compression_none_writes_no_level(tmp_path):
    with lsmkv.DB(str(tmp_path / "db"), compression="none", bottommost_compression_level=7) as db:
        db.put(b"a", b"1")
        db.flush()
        db.compact_range()
        assert db.get(b"a") == b"1"
        assert all(c is None for cs in _levels(db).values() for c in cs)


@pytest.mark.parametrize("bad, exc", [(23, ValueError), (-8, ValueError), ("3", TypeError),
                                      (True, TypeError), (3.0, TypeError)])
def test_bad_values_rejected(tmp_path, bad, exc):
    with pytest.raises(exc, match="bottommost_compression_level"):
        lsmkv.Options(bottommost_compression_level=bad)
    with pytest.raises(exc, match="bottommost_compression_level"):
        lsmkv.DB(str(tmp_path / "db"), bottommost_compression_level=bad)
    assert not os.path.exists(str(tmp_path / "db" / "CURRENT"))


def _entries(db):
    """(user key, sequence, value) of every entry of every table below level 0."""
    from lsmkv.core.table import TableIterator
    out = []
    for level, files in enumerate(testing.current_version(db).levels):
        for f in files if level else ():
            t = TableReader(os.path.join(db.path, "%06d.sst" % f.number), f.number, None, True)
            try:
                it = TableIterator(t)
                it.py_seek_to_first()
                while it.py_valid():
                    ukey, seq, kind, value, expiry = it.py_entry()
                    out.append((ukey, seq, value))
                    it.py_next()
            finally:
                t.close()
    return out


def test_bottommost_versions_every_snapshot_sees_are_written_with_sequence_zero(tmp_path):
    """RocksDB's bottommost sequence zeroing: a key's version that every snapshot sees
    is written with sequence 0 at the bottommost level; a newer version a snapshot
    does not see keeps its sequence, and reads through the snapshot are unchanged."""
    with lsmkv.DB(str(tmp_path / "db")) as db:
        for i in range(100):
            db.put(b"k%03d" % i, b"old%d" % i)
        with db.snapshot() as snap:
            db.put(b"k007", b"new7")
            db.put(b"k100", b"new100")
            db.delete(b"k008")
            db.compact_range()
            entries = _entries(db)
            by_key = {}
            for ukey, seq, value in entries:
                by_key.setdefault(ukey, []).append((seq, value))
            assert by_key[b"k000"] == [(0, b"old0")]
            new_seq, new_value = by_key[b"k007"][0]
            assert new_seq > 0 and new_value == b"new7" and by_key[b"k007"][1] == (0, b"old7")
            assert by_key[b"k100"][0][0] > 0 and len(by_key[b"k100"]) == 1
            assert by_key[b"k008"][1] == (0, b"old8")     # the deletion above it keeps its sequence
            assert snap.get(b"k007") == b"old7" and snap.get(b"k008") == b"old8"
            assert snap.get(b"k100") is None
            assert db.get(b"k007") == b"new7" and db.get(b"k008") is None
        db.compact_range()                   # no snapshot now: every version is seen by all
        assert all(seq == 0 for _, seq, _ in _entries(db))
        assert db.get(b"k007") == b"new7" and db.get(b"k008") is None and db.get(b"k100") == b"new100"
        db.put(b"k000", b"newer")            # a write after zeroing is newer than every zeroed one
        assert db.get(b"k000") == b"newer"
        db.compact_range()
        assert db.get(b"k000") == b"newer" and db.get(b"k001") == b"old1"


def test_behind_compactions_use_compression_level():
    """While level 0 holds half the slowdown trigger or more, bottommost outputs get
    compression_level (and no dictionary): the CPU goes to catching up."""
    o = lsmkv.Options(compression_level=-1, bottommost_compression_level=5,
                      level0_slowdown_writes_trigger=8)
    assert output_compression_level(o, True, l0_files=3) == 5
    assert output_compression_level(o, True, l0_files=4) == -1
    assert output_compression_level(o, False, l0_files=0) == -1
