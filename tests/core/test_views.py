"""DB.get_view (ValueView: values read without a copy, their cache slot pinned)
and DB.get_with_ttl (value and TTL in one lookup)."""
import gc
import threading
import tracemalloc

import pytest

import lsmkv
from lsmkv import testing
from lsmkv.core.cache import ValueView

N = 3000
VALUE = 700


def value(i):
    return (b"%06d" % i) * (VALUE // 6) + b"e"


def filled(tmp_path, **opts):
    opts.setdefault("block_cache_size", 1 << 20)
    db = lsmkv.DB(str(tmp_path / "db"), **opts)
    for i in range(N):
        db.put(b"k%06d" % i, value(i))
    db.flush()
    return db


def test_view_from_a_table_is_pinned_and_reads_the_value(tmp_path):
    db = filled(tmp_path)
    cache = testing.cache(db)
    before = (cache.pinned_slots, cache.pinned_bytes)
    v = db.get_view(b"k000042")
    assert isinstance(v, ValueView) and v.pinned
    assert len(v) == len(value(42)) and bytes(v) == value(42) and v == value(42)
    assert memoryview(v).readonly and memoryview(v).tobytes() == value(42)
    assert cache.pinned_slots == before[0] + 1 and cache.pinned_bytes > before[1]
    assert db.stats()["view_pins"] == 1
    v.release()
    assert cache.pinned_slots == before[0] and cache.pinned_bytes == before[1]
    assert not v.pinned
    v.release()                                     # idempotent
    with pytest.raises(ValueError, match="released"):
        memoryview(v)
    with pytest.raises(ValueError, match="released"):
        bytes(v)
    assert db.get_view(b"absent") is None and db.get_view(b"absent", b"d") == b"d"
    db.close()


def test_a_pinned_view_survives_heavy_eviction_unchanged(tmp_path):
    db = filled(tmp_path)
    cache = testing.cache(db)
    v = db.get_view(b"k000007")
    m = memoryview(v)
    ev0 = cache.evictions
    for _ in range(3):                               # the whole table through a 1 MiB cache
        for i in range(0, N, 3):
            assert db.get(b"k%06d" % i) == value(i)
    assert cache.evictions - ev0 > 1000
    assert m.tobytes() == value(7) and bytes(v) == value(7)
    cache.check()
    with pytest.raises(BufferError):                # a memoryview of it is alive
        v.release()
    del m
    v.release()
    assert cache.pinned_slots == 0
    cache.check()
    db.close()


def test_dropping_a_view_unpins_it(tmp_path):
    db = filled(tmp_path)
    cache = testing.cache(db)
    views = [db.get_view(b"k%06d" % i) for i in range(0, 200)]
    assert cache.pinned_slots > 0
    assert all(bytes(v) == value(i) for i, v in enumerate(views))
    del views
    gc.collect()
    assert cache.pinned_slots == 0 and cache.pinned_bytes == 0
    cache.check()
    db.close()


def test_views_pin_at_most_half_the_cache_then_copy(tmp_path):
    db = filled(tmp_path)
    cache = testing.cache(db)
    views = [db.get_view(b"k%06d" % i) for i in range(N)]
    pinned = sum(v.pinned for v in views)
    assert 0 < pinned < N                           # past half the cache, views hold copies
    # the cap is checked before each view takes its pin: one block past half at most
    assert cache.pinned_bytes <= cache.capacity // 2 + 64 * 1024
    assert all(bytes(v) == value(i) for i, v in enumerate(views))
    assert db.stats()["view_pins"] == pinned
    for i in range(0, N, 7):                        # the cache still serves and evicts
        assert db.get(b"k%06d" % i) == value(i)
    cache.check()
    del views
    gc.collect()
    assert cache.pinned_slots == 0
    db.close()


def test_view_of_a_memtable_value_and_of_an_lru_cache_block(tmp_path):
    db = lsmkv.DB(str(tmp_path / "a"))
    db.put(b"m", b"in the memtable")
    v = db.get_view(b"m")
    assert not v.pinned and bytes(v) == b"in the memtable"
    db.close()
    db = filled(tmp_path, block_cache="lru")
    v = db.get_view(b"k000001")
    assert not v.pinned and bytes(v) == value(1)
    db.close()
    assert bytes(v) == value(1)                     # it holds the block's bytes itself


def test_view_outlives_the_db(tmp_path):
    db = filled(tmp_path)
    v = db.get_view(b"k000003")
    db.close()
    assert bytes(v) == value(3)
    v.release()


def test_view_skips_deleted_expired_and_respects_ttl(tmp_path):
    now = [1000.0]
    db = lsmkv.DB(str(tmp_path / "db"), clock=lambda: now[0], block_cache_size=1 << 20)
    db.put(b"gone", b"x" * 500)
    db.put(b"ttl", b"y" * 500, ttl=10)
    db.put(b"keep", b"z" * 500)
    db.flush()
    db.delete(b"gone")
    db.flush()
    assert db.get_view(b"gone") is None
    assert bytes(db.get_view(b"ttl")) == b"y" * 500
    now[0] += 11
    assert db.get_view(b"ttl") is None
    with db.get_view(b"keep") as v:
        assert v.pinned
    assert not v.pinned
    db.close()


def test_get_view_copies_no_value_bytes(tmp_path):
    big = 30000
    db = lsmkv.DB(str(tmp_path / "db"), block_cache_size=8 << 20, block_size=32 * 1024)
    for i in range(20):
        db.put(b"big%02d" % i, bytes([i]) * big)
    db.flush()
    for i in range(20):                             # warm the cache
        db.get(b"big%02d" % i)
    tracemalloc.start()
    try:
        s0 = tracemalloc.take_snapshot()
        vs = [db.get_view(b"big%02d" % i) for i in range(20)]
        s1 = tracemalloc.take_snapshot()
        gs = [db.get(b"big%02d" % i) for i in range(20)]
        s2 = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
    view_bytes = sum(d.size_diff for d in s1.compare_to(s0, "filename"))
    get_bytes = sum(d.size_diff for d in s2.compare_to(s1, "filename"))
    assert all(v.pinned for v in vs) and [bytes(v) for v in vs] == gs
    assert get_bytes >= 20 * big                    # get() copies each value
    assert view_bytes < 20 * 1024                   # views copy none of them
    db.close()


def test_views_under_threads_reading_while_others_evict(tmp_path):
    db = filled(tmp_path)
    errors = []
    stop = threading.Event()

    def viewer(seed):
        i = seed
        try:
            while not stop.is_set():
                k = (i * 7919) % N
                held = [db.get_view(b"k%06d" % ((k + j) % N)) for j in range(8)]
                for j, v in enumerate(held):
                    if bytes(v) != value((k + j) % N):
                        errors.append(((k + j) % N, bytes(v)[:12]))
                i += 1
        except Exception as e:          # noqa: BLE001 - reported below
            errors.append(e)

    def evictor():
        try:
            while not stop.is_set():
                for i in range(0, N, 5):
                    db.get(b"k%06d" % i)
        except Exception as e:          # noqa: BLE001
            errors.append(e)

    ts = [threading.Thread(target=viewer, args=(s,)) for s in range(3)] + \
         [threading.Thread(target=evictor) for _ in range(2)]
    for t in ts:
        t.start()
    stop.wait(2.0)
    stop.set()
    for t in ts:
        t.join(timeout=30)
        assert not t.is_alive()
    assert errors == []
    gc.collect()
    assert testing.cache(db).pinned_slots == 0
    testing.cache(db).check()
    db.close()


def test_get_with_ttl_is_one_consistent_lookup(tmp_path):
    now = [1000.0]
    db = lsmkv.DB(str(tmp_path / "db"), clock=lambda: now[0])
    db.put(b"s", b"t", ttl=30)
    db.put(b"p", b"v")
    assert db.get_with_ttl(b"s") == (b"t", 30.0)
    assert db.get_with_ttl(b"p") == (b"v", None)
    assert db.get_with_ttl(b"x") is None and db.get_with_ttl(b"x", 5) == 5
    db.flush()                                      # the same answers from a table
    now[0] += 10
    assert db.get_with_ttl(b"s") == (b"t", 20.0) and db.get_with_ttl(b"p") == (b"v", None)
    gets = db.stats()["gets"]
    db.get_with_ttl(b"s")
    assert db.stats()["gets"] == gets + 1           # one lookup
    now[0] += 21
    assert db.get_with_ttl(b"s") is None
    with pytest.raises(TypeError, match="key must be"):
        db.get_with_ttl("s")
    with pytest.raises(TypeError, match="key must be"):
        db.get_view(3)
    db.close()
    with pytest.raises(lsmkv.ClosedError):
        db.get_with_ttl(b"p")
    with pytest.raises(lsmkv.ClosedError):
        db.get_view(b"p")
