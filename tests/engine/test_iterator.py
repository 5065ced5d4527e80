"""lsmkv.Iterator: the lifecycle (closed iterator, closed DB, pinned files),
argument checks, bounds and prefixes at the edges, and re-seeking a
long-lived iterator across writes, flushes and compactions. The randomized
model test is test_iterator_model.py; fork() is in test_lifecycle.py."""
import bisect
import gc
import itertools
import os
import time
import random

import pytest

import lsmkv


def _fill(db, n=1000, prefix=b""):
    for i in range(n):
        db.put(prefix + b"%06d" % i, b"v%d" % i)


def test_unpositioned_and_invalid_iterators_raise_clearly(dbpath):
    with lsmkv.DB(dbpath) as db:
        db.put(b"a", b"1")
        it = db.iterator()
        assert not it.valid()
        for name in ("key", "value", "item", "next", "prev"):
            with pytest.raises(lsmkv.InvalidIteratorError, match="valid"):
                getattr(it, name)()
        it.seek(b"b")
        assert not it.valid()
        with pytest.raises(ValueError):         # InvalidIteratorError is a ValueError too
            it.value()
        it.close()


def test_every_method_after_close_raises_closed_error(dbpath):
    with lsmkv.DB(dbpath) as db:
        db.put(b"a", b"1")
        it = db.iterator()
        it.seek_to_first()
        it.close()
        it.close()                              # idempotent
        calls = [lambda: it.seek(b"a"), lambda: it.seek_for_prev(b"a"), it.seek_to_first,
                 it.seek_to_last, it.next, it.prev, it.valid, it.key, it.value, it.item,
                 lambda: next(it)]
        for call in calls:
            with pytest.raises(lsmkv.ClosedError, match="iterator is closed"):
                call()


def test_db_close_closes_its_iterators(dbpath):
    db = lsmkv.DB(dbpath)
    db.put(b"a", b"1")
    it = db.iterator()
    it.seek_to_first()
    snap = db.snapshot()
    sit = snap.iterator()
    db.close()
    for i in (it, sit):
        with pytest.raises(lsmkv.ClosedError, match="database is closed"):
            i.valid()
        with pytest.raises(lsmkv.ClosedError):
            i.seek(b"a")
        i.close()
    with pytest.raises(lsmkv.ClosedError):
        db.iterator()


def test_iterator_pins_files_until_closed(dbpath, small_opts):
    with lsmkv.DB(dbpath, level0_file_num_compaction_trigger=100, **small_opts) as db:
        _fill(db, 2000)
        db.flush()
        before = {n for n in os.listdir(dbpath) if n.endswith(".sst")}
        it = db.iterator()
        it.seek(b"000100")
        db.delete(b"000101")
        db.compact_range()
        assert before <= {n for n in os.listdir(dbpath) if n.endswith(".sst")}
        assert db.stats()["pinned_versions"] == 1
        it.seek(b"000101")                      # re-seeked after the compaction: the old view
        assert it.key() == b"000101"
        it.close()
        assert db.stats()["pinned_versions"] == 0
        # the files go at the close, or, when a background step held the mutex or was
        # purging then, at the next iterator creation (lsmkv.engine.files, invariant 4)
        deadline = time.monotonic() + 10
        while before & {n for n in os.listdir(dbpath) if n.endswith(".sst")}:
            assert time.monotonic() < deadline, "the compacted-away tables were never deleted"
            db.iterator().close()
            time.sleep(0.01)
        it2 = db.iterator()
        it2.seek_to_first()
        del it2
        gc.collect()
        assert db.stats()["pinned_versions"] == 0


def test_bounds_are_lower_inclusive_upper_exclusive(dbpath):
    with lsmkv.DB(dbpath) as db:
        for k in (b"a", b"b", b"c", b"d"):
            db.put(k, k)
        with db.iterator(b"b", b"d") as it:
            it.seek_to_first(); assert it.key() == b"b"
            it.seek_to_last(); assert it.key() == b"c"
            it.seek(b"a"); assert it.key() == b"b"          # clamped to lower
            it.seek_for_prev(b"z"); assert it.key() == b"c"  # clamped below upper
            it.seek(b"d"); assert not it.valid()
            it.seek_for_prev(b"a"); assert not it.valid()
            assert [k for k, _ in (it.seek_to_first() or it)] == [b"b", b"c"]
        with db.iterator(b"c", b"b") as it:                  # an empty range
            it.seek_to_first(); assert not it.valid()
            it.seek_to_last(); assert not it.valid()


@pytest.mark.parametrize("prefix, want", [
    (b"\xff", [b"\xff", b"\xff\x00", b"\xff\xff", b"\xff\xff\x01"]),
    (b"\xff\xff", [b"\xff\xff", b"\xff\xff\x01"]),
    (b"a\xff", [b"a\xff", b"a\xff\xff"]),
    (b"a", [b"a", b"a\xff", b"a\xff\xff"]),
    (b"", [b"", b"a", b"a\xff", b"a\xff\xff", b"b", b"\xff", b"\xff\x00", b"\xff\xff", b"\xff\xff\x01"]),
])
def test_prefixes_with_0xff_bytes(dbpath, prefix, want):
    with lsmkv.DB(dbpath) as db:
        for k in (b"", b"a", b"a\xff", b"a\xff\xff", b"b", b"\xff", b"\xff\x00", b"\xff\xff", b"\xff\xff\x01"):
            db.put(k, b"v")
        with db.iterator(prefix=prefix) as it:
            assert [k for k, _ in it] == want
            it.seek_to_last()
            back = []
            while it.valid():
                back.append(it.key())
                it.prev()
            assert back == want[::-1]
        assert list(db.keys(prefix=prefix)) == want
        assert list(db.keys(prefix=prefix, reverse=True)) == want[::-1]
        with db.snapshot() as snap:
            assert list(snap.keys(prefix=prefix)) == want
            assert [v for v in snap.values(prefix=prefix)] == [b"v"] * len(want)
            assert [k for k, _ in snap.items(prefix=prefix)] == want


def test_items_prefix_combines_with_start_and_stop(dbpath):
    with lsmkv.DB(dbpath) as db:
        _fill(db, 30, b"p")
        _fill(db, 5, b"q")
        assert list(db.keys(b"p000010", b"p000013", prefix=b"p")) == [b"p000010", b"p000011", b"p000012"]
        assert list(db.keys(b"a", b"z", prefix=b"q")) == [b"q%06d" % i for i in range(5)]
        assert list(db.keys(b"q", prefix=b"p")) == []
        with pytest.raises(TypeError, match="prefix"):
            db.keys(prefix="p")


def test_arguments_are_checked(dbpath):
    with lsmkv.DB(dbpath) as db:
        with pytest.raises(TypeError, match="lower"):
            db.iterator("a")
        with pytest.raises(TypeError, match="prefix"):
            db.iterator(prefix=1)
        with db.iterator() as it:
            with pytest.raises(TypeError, match="key"):
                it.seek("a")
            with pytest.raises(TypeError, match="key"):
                it.seek_for_prev(None)
            it.seek(bytearray(b"a")); it.seek(memoryview(b"a"))


def test_direction_changes_over_deletes_and_versions(dbpath, small_opts):
    with lsmkv.DB(dbpath, **small_opts) as db:
        _fill(db, 100)
        db.flush()
        for i in range(0, 100, 2):
            db.delete(b"%06d" % i)                # every even key gone (newer than the table)
        db.put(b"000051", b"new")
        with db.iterator() as it:
            it.seek(b"000050")
            assert it.item() == (b"000051", b"new")
            it.prev(); assert it.key() == b"000049"
            it.next(); assert it.key() == b"000051"
            it.next(); assert it.key() == b"000053"
            it.prev(); it.prev(); assert it.key() == b"000049"
            it.seek_for_prev(b"000050"); assert it.key() == b"000049"
            it.next(); assert it.item() == (b"000051", b"new")


def test_a_reused_iterator_keeps_its_view_across_writes(dbpath, small_opts):
    with lsmkv.DB(dbpath, **small_opts) as db:
        _fill(db, 500)
        it = db.iterator()
        for rnd in range(3):
            _fill(db, 500, b"x%d" % rnd)          # later writes, flushes, compactions
            db.flush()
            db.compact_range()
            for i in range(0, 500, 37):
                it.seek(b"%06d" % i)
                assert it.item() == (b"%06d" % i, b"v%d" % i)
            it.seek_to_last()
            assert it.key() == b"000499"
        it.close()
        with db.iterator() as fresh:
            fresh.seek_to_last()
            assert fresh.key() == b"x2000499"


def test_snapshot_iterator_and_ttl(dbpath, clock):
    with lsmkv.DB(dbpath, clock=clock) as db:
        db.put(b"a", b"1"); db.put(b"t", b"tmp", ttl=10)
        snap = db.snapshot()
        db.put(b"a", b"2"); db.delete(b"t"); db.put(b"b", b"3")
        with snap.iterator() as it, db.iterator(snapshot=snap) as it2:
            assert list(it) == [(b"a", b"1"), (b"t", b"tmp")]
            assert it2.sequence == snap.sequence
            clock.advance(11)
            it2.seek_to_first()                   # expiry is judged at each seek
            assert list(it2) == [(b"a", b"1")]
        snap.close()
        with db.iterator() as it:
            assert list(it) == [(b"a", b"2"), (b"b", b"3")]
        with pytest.raises(lsmkv.ClosedError):
            snap.iterator()


def test_for_continues_from_where_it_stands(dbpath):
    with lsmkv.DB(dbpath) as db:
        _fill(db, 10)
        with db.iterator() as it:
            it.seek(b"000007")
            it.prev()
            assert [k for k, _ in it] == [b"000006", b"000007", b"000008", b"000009"]
            assert list(it) == []
            it.seek_to_first()
            assert next(it) == (b"000000", b"v0")
            assert it.key() == b"000001"
        assert len(list(db.iterator())) == 10      # never positioned: from the first key


@pytest.mark.parametrize("bloom", [10, 0])
@pytest.mark.parametrize("tables", [3, 12])        # 12 L0 tables: the merging iterator's heap
def test_lazy_seek_over_many_tables_matches_a_model(dbpath, bloom, tables):
    """A seek leaves alone the tables whose filter rules the target out (seek_lazy)
    and brings them in once the merge moves past the target: the results are the
    same as a plain merge's, for found and missing keys, deletes and versions."""
    rng = random.Random(tables * 100 + bloom)
    model = {}
    with lsmkv.DB(dbpath, bloom_bits_per_key=bloom, level0_file_num_compaction_trigger=100,
                  level0_slowdown_writes_trigger=200, level0_stop_writes_trigger=300) as db:
        with db.no_background_compactions():
            for t in range(tables):
                for _ in range(300):
                    k = b"%05d" % rng.randrange(3000)
                    if rng.random() < 0.2:
                        db.delete(k); model.pop(k, None)
                    else:
                        v = b"t%d" % t
                        db.put(k, v); model[k] = v
                db.flush()
            assert db.stats()["levels"][0]["files"] == tables
            srt = sorted(model)
            it = db.iterator()
            for _ in range(400):
                k = b"%05d" % rng.randrange(3000) + (b"" if rng.random() < 0.8 else b"x")
                i = bisect.bisect_left(srt, k)
                want = [(x, model[x]) for x in srt[i:i + 5]]
                assert list(itertools.islice(db.items(start=k), 5)) == want, k
                it.seek(k)
                got = []
                while it.valid() and len(got) < 5:
                    got.append(it.item())
                    it.next()
                assert got == want, k
                it.seek(k)
                if it.valid() and i > 0:
                    it.prev()
                    assert it.key() == srt[i - 1], k
            it.close()


def test_iterators_made_inside_a_collection_during_another_iterators_construction(tmp_path, small_opts):
    """A garbage collection can start inside the allocation of an iterator that a C
    factory is making, and its callbacks (or finalizers, which can also switch threads)
    can make iterators of their own. The construction in progress must not notice: it
    once relied on a module flag that the nested construction cleared, and raised
    "TableIterator(table): table is required" mid-scan (seen under thread load in CI)."""
    dbs = []
    for name in ("a", "b"):
        db = lsmkv.DB(str(tmp_path / name), **small_opts)
        rng = random.Random(name)
        for i in range(3000):
            db.put(b"%06d" % i, rng.randbytes(60))      # incompressible: several tables
        db.flush()
        assert db.stats()["levels"][0]["files"] >= 3   # a table iterator for each
        dbs.append(db)
    a, b = dbs
    nested = []

    def on_gc(phase, info):
        if phase == "start":
            nested.append(sum(1 for _ in itertools.islice(b.items(), 3)))

    old = gc.get_threshold()
    gc.callbacks.append(on_gc)
    gc.set_threshold(1, 1, 1)           # a collection at nearly every container allocation
    try:
        for _ in range(3):
            assert sum(1 for _ in a.items()) == 3000
            assert sum(1 for _ in a.items(reverse=True)) == 3000
            it = a.iterator()
            it.seek(b"001500")
            assert it.key() == b"001500"
            it.close()
    finally:
        gc.callbacks.remove(on_gc)
        gc.set_threshold(*old)
    assert nested and set(nested) == {3}
    for db in dbs:
        db.close()
    with pytest.raises(TypeError, match="table is required"):
        lsmkv.core.table.TableIterator()
    with pytest.raises(TypeError, match="children is required"):
        lsmkv.core.iterator.MergingIterator()
    with pytest.raises(TypeError, match="are made by"):
        lsmkv.core.iterator.DBIterator()
