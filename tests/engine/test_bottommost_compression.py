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
