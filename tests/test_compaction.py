"""Compaction choices that are not visible in the data: the outputs' dictionary."""
import os
import struct

import lsmkv
from lsmkv.compaction import output_dict_bytes

FOOTER = 80   # docs/format.md: the footer; its first 8 u64 are the block handles


def _dictionary_block_size(path):
    with open(path, "rb") as f:
        data = f.read()
    return struct.unpack("<8Q", data[-FOOTER:-FOOTER + 64])[7]


def test_dictionary_is_skipped_while_level0_piles_up():
    o = lsmkv.Options(compression_dict_bytes=4096, level0_slowdown_writes_trigger=20)
    assert output_dict_bytes(o, 4) == 4096
    assert output_dict_bytes(o, 9) == 4096
    assert output_dict_bytes(o, 10) == 0
    assert output_dict_bytes(o, 30) == 0
    assert output_dict_bytes(lsmkv.Options(compression_dict_bytes=0), 1) == 0


def _compact_with_l0_files(path, n_files):
    """n_files flushes, then one compaction of them all; returns (stats, output paths)."""
    db = lsmkv.DB(path, write_buffer_size=1 << 20, compression_dict_bytes=1024,
                  level0_file_num_compaction_trigger=100, level0_slowdown_writes_trigger=8,
                  level0_stop_writes_trigger=100)
    try:
        for f in range(n_files):
            for i in range(2000):
                k = b"user:%08d" % (i * 7 + f)
                db.put(k, b'{"id": %d, "plan": "team", "active": true, "file": %d}' % (i, f))
            db.flush()
        assert db.stats()["levels"][0]["files"] == n_files
        db.compact_range()
        s = db.stats()
        assert s["levels"][0]["files"] == 0 and s["compactions"] == 1
        outs = [os.path.join(path, "%06d.sst" % f.number)
                for lv in db._versions.current.levels for f in lv]
        assert db.get(b"user:%08d" % 7) is not None
    finally:
        db.close()
    return s, outs


def test_compaction_behind_writes_outputs_without_dictionary(tmp_path):
    s, outs = _compact_with_l0_files(str(tmp_path / "behind"), 4)    # 2 * 4 >= 8: behind
    assert s["compactions_without_dict"] == 1
    assert outs and all(_dictionary_block_size(p) == 0 for p in outs)


def test_compaction_keeping_up_writes_outputs_with_dictionary(tmp_path):
    s, outs = _compact_with_l0_files(str(tmp_path / "keeping-up"), 3)
    assert s["compactions_without_dict"] == 0
    assert outs and all(_dictionary_block_size(p) > 0 for p in outs)
