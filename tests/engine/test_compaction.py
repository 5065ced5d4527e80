"""Compaction choices that are not visible in the data: the outputs' dictionary."""
import os
import struct

import pytest

import lsmkv
from lsmkv import testing
from lsmkv.engine.compaction import Running, conflicts, output_dict_bytes, pick_auto
from lsmkv.engine.version import NUM_LEVELS, FileMeta, Version

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
                for lv in testing.current_version(db).levels for f in lv]
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


# ------------------------------------------------------------------ concurrent compactions



def _f(number, lo, hi, size=1 << 20):
    tag = (1 << 8 | 1).to_bytes(8, "little")
    return FileMeta(number, size, lo + tag, hi + tag)


def _version(levels):
    v = [[] for _ in range(NUM_LEVELS)]
    for level, files in levels.items():
        v[level] = files
    return Version(v)


def test_conflicts_rules():
    l0 = {0: [_f(1, b"a", b"z")], 1: [_f(2, b"a", b"m")]}
    running = [Running(l0, 1)]
    assert conflicts({1: [_f(2, b"a", b"m")], 2: []}, 2, running), "a shared input file"
    assert conflicts({0: [_f(3, b"x", b"y")]}, 1, running), "a second compaction reading L0"
    assert conflicts({1: [_f(4, b"p", b"q")]}, 1, running), "overlapping outputs into L1"
    assert not conflicts({2: [_f(5, b"p", b"q")]}, 3, running), "another level, other files"
    assert not conflicts({1: [_f(6, b"a", b"b")]}, 1, [Running({2: [_f(7, b"c", b"d")]}, 1)])
    assert not conflicts({0: [_f(1, b"a", b"z")]}, 1, []), "nothing running"


def test_pick_skips_what_running_compactions_hold():
    o = lsmkv.Options(max_bytes_for_level_base=1 << 20, max_bytes_for_level_multiplier=10,
                      level0_file_num_compaction_trigger=4)
    l1 = [_f(10 + i, b"k%d0" % i, b"k%d9" % i, 300 << 10) for i in range(4)]   # 1.2 MiB: over target
    l0 = [_f(20 + i, b"k00", b"k39") for i in range(8)]                      # score 2: L0 first
    v = _version({0: l0, 1: l1})
    first = pick_auto(v, o, {}, 0, 0)
    assert first.reason == "level0" and first.output_level == 1
    # while L0 -> L1 runs (holding every L1 file), nothing else in L0/L1 can go
    assert pick_auto(v, o, {}, 0, 0, [Running(first.inputs, 1)]) is None
    # with L0 small and L1 -> L2 running on one file, another L1 file is picked
    v = _version({1: l1, 2: [_f(30, b"k00", b"k05"), _f(31, b"k20", b"k25")]})
    a = pick_auto(v, o, {}, 0, 0)
    assert a.output_level == 2 and [f.number for f in a.inputs[1]] == [10]
    b = pick_auto(v, o, {}, 0, 0, [Running(a.inputs, 2)])
    assert b is not None and b.output_level == 2 and [f.number for f in b.inputs[1]] == [11]
    assert not conflicts(b.inputs, 2, [Running(a.inputs, 2)])


def test_parallel_compactions_keep_the_data_and_the_levels_sorted(tmp_path):
    """max_background_jobs=3: two compaction threads and two worker processes;
    whatever ran at once, every key reads back and no level >= 1 overlaps."""
    path = str(tmp_path / "db")
    opts = dict(write_buffer_size=64 << 10, target_file_size_base=64 << 10,
                max_bytes_for_level_base=256 << 10, max_bytes_for_level_multiplier=4,
                level0_file_num_compaction_trigger=2, max_background_jobs=3)
    with lsmkv.DB(path, **opts) as db:
        s = db.stats()
        assert s["background_jobs"] == {"flush": 1, "compaction": 2}
        assert len(s["compaction_worker"]["pids"]) == 2    # one worker per compaction thread
        import random
        rng = random.Random(7)
        want = {}
        for i in range(40000):
            k = b"%08d" % rng.randrange(20000)
            v = b"%d" % i * 10
            db.put(k, v)
            want[k] = v
        db.compact_range()
        s = db.stats()
        assert s["compactions"] >= 1 and s["compactions_running"] == 0
        testing.current_version(db).check()
        assert dict(db.items()) == want
    with lsmkv.DB(path, **opts) as db:
        assert dict(db.items()) == want
    with pytest.raises(ValueError, match="max_background_jobs"):
        lsmkv.Options(max_background_jobs=1)
