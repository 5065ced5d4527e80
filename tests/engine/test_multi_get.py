"""db.multi_get / Snapshot.multi_get against get() and a dict model.

Seeded random puts (some with a TTL), deletes, batches, flushes, compactions and
clock advances under the option sets of test_model; at each check a random key
list (duplicates, absent and empty keys, any order) must give, in order, what
get() gives per key and what the model holds, and through each live snapshot
what that snapshot's get() gives.
"""
import os
import random

import pytest

import lsmkv
from lsmkv.core.dbcore import multi_get_views
from conftest import FakeClock
from test_model import OPTION_SETS


def _key(rng):
    r = rng.random()
    if r < 0.02:
        return b""
    if r < 0.04:
        return b"\xff" * rng.randrange(1, 200)
    return b"k%04d" % rng.randrange(800)


@pytest.mark.parametrize("seed", [1, 2])
@pytest.mark.parametrize("name", sorted(OPTION_SETS))
def test_multi_get_matches_get_and_model(tmp_path, name, seed):
    rng = random.Random(seed)
    clock = FakeClock()
    db = lsmkv.DB(str(tmp_path / "db"), clock=clock, **OPTION_SETS[name])
    model = {}                      # key -> (value, expiry seconds or None)
    snaps = []
    try:
        for step in range(1500):
            r = rng.random()
            k = _key(rng)
            if r < 0.55:
                v = b"v%d-" % step + b"x" * rng.randrange(0, 120)
                ttl = rng.choice([None, None, None, 5, 50])
                db.put(k, v, ttl=ttl)
                model[k] = (v, None if ttl is None else clock() + ttl)
            elif r < 0.7:
                db.delete(k)
                model.pop(k, None)
            elif r < 0.75:
                wb = db.write_batch()
                for _ in range(rng.randrange(1, 6)):
                    bk = _key(rng)
                    if rng.random() < 0.7:
                        wb.put(bk, b"b%d" % step)
                        model[bk] = (b"b%d" % step, None)
                    else:
                        wb.delete(bk)
                        model.pop(bk, None)
                db.write(wb)
            elif r < 0.77:
                db.flush()
            elif r < 0.775:
                db.compact_range()
            elif r < 0.79:
                clock.advance(rng.choice([1, 10, 30]))
            elif r < 0.8 and len(snaps) < 3:
                snaps.append(db.snapshot())
            if step % 50 == 49:
                keys = [_key(rng) for _ in range(rng.randrange(0, 150))]
                keys += keys[:5]                               # duplicates
                now = clock()
                expect = [v if (e is None or e > now) else None
                          for v, e in (model.get(k, (None, None)) for k in keys)]
                assert db.multi_get(keys) == [db.get(k) for k in keys] == expect, (name, seed, step)
                assert db.multi_get(keys, default=b"-") == [b"-" if v is None else v for v in expect]
                views = multi_get_views(db, keys)
                assert [None if v is None else bytes(v) for v in views] == expect
                for v in views:
                    if v is not None:
                        v.release()
                for snap in snaps:
                    assert snap.multi_get(keys) == [snap.get(k) for k in keys]
        for snap in snaps:
            snap.close()
    finally:
        db.close()


def test_multi_get_snapshot_sees_its_sequence(tmp_path):
    with lsmkv.DB(str(tmp_path / "db"), write_buffer_size=64 * 1024) as db:
        for i in range(2000):
            db.put(b"%05d" % i, b"old")
        db.flush()
        snap = db.snapshot()
        for i in range(0, 2000, 2):
            db.put(b"%05d" % i, b"new")
        for i in range(1, 2000, 4):
            db.delete(b"%05d" % i)
        db.flush()
        keys = [b"%05d" % i for i in range(0, 2000, 7)]
        assert snap.multi_get(keys) == [b"old"] * len(keys)
        assert db.multi_get(keys) == [b"new" if i % 2 == 0 else (None if i % 4 == 1 else b"old")
                                      for i in range(0, 2000, 7)]
        snap.close()


def test_multi_get_ttl_expires_in_tables(tmp_path, clock):
    with lsmkv.DB(str(tmp_path / "db"), clock=clock) as db:
        db.put(b"a", b"1", ttl=10)
        db.put(b"b", b"2")
        db.flush()
        assert db.multi_get([b"a", b"b"]) == [b"1", b"2"]
        clock.advance(11)
        assert db.multi_get([b"a", b"b"]) == [None, b"2"]


def test_multi_get_counts_gets_and_hits(tmp_path):
    with lsmkv.DB(str(tmp_path / "db")) as db:
        for i in range(1000):
            db.put(b"%05d" % i, b"v")
        db.flush()
        before = db.stats()
        out = db.multi_get([b"%05d" % i for i in range(0, 2000, 10)])
        after = db.stats()
        assert out.count(b"v") == 100 and out.count(None) == 100
        assert after["gets"] - before["gets"] == 200
        assert after["get_hits"] - before["get_hits"] == 100
        db.multi_get([b"%05d" % i for i in range(1000)])       # every block cached now
        assert db.memory_usage()["pinned"] == 0                 # each block's pin given back


@pytest.mark.parametrize("rdel", [False, True])
def test_multi_get_views_as_get_view(tmp_path, rdel):
    """multi_get_views gives per key what get_view gives (values, pinned or not) and
    counts the same gets, hits and pinned views; keys in the memtable, in tables,
    deleted, expired, merged, absent (and behind a range tombstone)."""
    clock = FakeClock()
    with lsmkv.DB(str(tmp_path / "db"), clock=clock, merge_operator="uint64add") as db:
        one = (1).to_bytes(8, "little")
        for i in range(300):
            db.put(b"t%03d" % i, b"table%d" % i * 20)
        db.put(b"gone", b"x")
        db.put(b"ttl", b"y", ttl=5)
        db.merge(b"m", one)
        db.flush()
        db.merge(b"m", one)
        db.delete(b"gone")
        db.put(b"mem", b"memtable value")
        if rdel:
            db.delete_range(b"t100", b"t110")
        clock.advance(10)
        keys = [b"t005", b"mem", b"gone", b"ttl", b"m", b"absent", b"t105", b"t250", b"t005", b""]
        before = db.stats()
        singles = [db.get_view(k) for k in keys]
        mid = db.stats()
        views = multi_get_views(db, keys)
        after = db.stats()
        assert [None if v is None else bytes(v) for v in views] == [
            None if v is None else bytes(v) for v in singles]
        assert [v is None or v.pinned for v in views] == [v is None or v.pinned for v in singles]
        assert any(v is not None and v.pinned for v in views)
        for name in ("gets", "get_hits", "view_pins"):
            assert after[name] - mid[name] == mid[name] - before[name], name
        for v in views + singles:
            if v is not None:
                v.release()
        assert db.memory_usage()["pinned"] == 0


def test_multi_get_arguments(tmp_path):
    db = lsmkv.DB(str(tmp_path / "db"))
    db.put(b"k", b"v")
    assert db.multi_get([]) == []
    assert db.multi_get(iter([bytearray(b"k"), memoryview(b"k")])) == [b"v", b"v"]
    with pytest.raises(TypeError, match="key must be bytes"):
        db.multi_get(["k"])
    with pytest.raises(TypeError, match="key must be bytes"):
        db.multi_get([None])
    db.close()
    with pytest.raises(lsmkv.ClosedError):
        db.multi_get([b"k"])


def test_multi_get_in_threads_during_flushes_and_compactions(tmp_path):
    """Readers call multi_get (which decompresses without the GIL) while a writer
    overwrites every key in rounds, flushing after each (level 0 compacts every two
    files): each value read is one a round wrote for that key, never absent."""
    import threading
    db = lsmkv.DB(str(tmp_path / "db"), write_buffer_size=64 * 1024, block_size=512,
                  block_cache_size=64 * 1024, level0_file_num_compaction_trigger=2)
    keys = [b"%05d" % i for i in range(2000)]
    for k in keys:
        db.put(k, b"r0:" + k)
    db.flush()
    stop = threading.Event()
    errors = []

    def reader(seed):
        rng = random.Random(seed)
        try:
            while not stop.is_set():
                ks = rng.sample(keys, 100)
                for k, v in zip(ks, db.multi_get(ks)):
                    if v is None or not (v.startswith(b"r") and v.endswith(b":" + k)):
                        errors.append((k, v))
                        return
        except Exception as e:          # pragma: no cover - reported below
            errors.append(e)
    threads = [threading.Thread(target=reader, args=(s,)) for s in range(2)]
    for t in threads:
        t.start()
    try:
        for r in range(1, 6):
            for k in keys:
                db.put(k, b"r%d:" % r + k)
            db.flush()
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert not errors, errors[:3]
    assert db.multi_get(keys) == [b"r5:" + k for k in keys]
    db.close()


def test_multi_get_from_memtables_with_many_versions(tmp_path):
    """The interleaved memtable search (more keys than its lanes, several versions
    of each key, keys longer than a node's first cache line) finds what get() finds,
    now and at a snapshot's sequence (immutable memtables: the model test above)."""
    rng = random.Random(7)
    with lsmkv.DB(str(tmp_path / "db"), write_buffer_size=8 << 20) as db:
        keys = [b"key:%06d:" % i + b"p" * rng.randrange(0, 200) for i in range(3000)]
        for k in keys:
            db.put(k, b"v1" + k[:8])
        snap = db.snapshot()
        for k in keys[::2]:
            db.put(k, b"v2" + k[:8])
        for k in keys[::3]:
            db.delete(k)
        ask = rng.sample(keys, 1000) + [b"key:", b"zzz", b""] + keys[:20]
        assert db.stats()["memtable_entries"] > 0 and db.stats()["levels"][0]["files"] == 0
        assert db.multi_get(ask) == [db.get(k) for k in ask]
        assert snap.multi_get(ask) == [snap.get(k) for k in ask]
        assert all(v is not None for v in snap.multi_get(keys))
        snap.close()


def test_multi_get_reports_a_damaged_block_and_leaks_no_pin(tmp_path):
    d = str(tmp_path / "db")
    with lsmkv.DB(d, compression="none", block_size=1024) as db:
        for i in range(3000):
            db.put(b"%05d" % i, b"v" * 50)
        db.flush()
    sst = [f for f in os.listdir(d) if f.endswith(".sst")][0]
    with open(os.path.join(d, sst), "r+b") as fh:
        fh.seek(100)                     # inside the first data block
        b = fh.read(1)
        fh.seek(100)
        fh.write(bytes([b[0] ^ 0xFF]))
    with lsmkv.DB(d) as db:
        keys = [b"%05d" % i for i in range(0, 3000, 50)]
        db.multi_get(keys[5:])           # blocks after the damaged one: cached and pinned on the way
        with pytest.raises(lsmkv.CorruptionError) as e:
            db.multi_get(keys)           # the first key's block is the damaged one
        assert sst in str(e.value)
        assert db.memory_usage()["pinned"] == 0


def test_multi_get_reads_its_sequence_after_its_view(tmp_path):
    """multi_get consumes its keys (an iterable may run any code meanwhile) before it
    reads the SuperVersion, then the sequence: a key overwritten and compacted while
    the keys were consumed reads as its newest value, never as a version the
    compaction dropped (reading the sequence first returned b"OLD0" here)."""
    import os
    import time
    from lsmkv import testing
    db = lsmkv.DB(str(tmp_path / "db"), max_bytes_for_level_base=64 << 10,
                  level0_file_num_compaction_trigger=2, write_buffer_size=1 << 20)
    try:
        for i in range(4000):
            db.put(b"k%05d" % i, os.urandom(100))
        db.put(b"k02000x", b"OLD0")
        db.flush()
        db.compact_range()
        db.put(b"k02000x", b"ONE")
        db.flush()

        def keys():
            yield b"k02000x"
            db.put(b"k02000x", b"TWO")
            db.flush()
            end = time.time() + 10
            while testing.level_files(db)[0] and time.time() < end:
                time.sleep(0.02)            # the background compaction of level 0
            yield b"k00001"
        got = db.multi_get(keys())
        assert got[0] in (b"ONE", b"TWO"), got[0]
        assert got[1] is not None
    finally:
        db.close()
