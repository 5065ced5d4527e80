"""lsmkv/server/bufpool.py: size classes, reuse, the bound on idle bytes."""
import pytest

from lsmkv.server.bufpool import BufferPool


def test_size_classes():
    p = BufferPool(min_size=512, max_pooled=1 << 16, capacity=1 << 20)
    assert p.class_size(1) == 512 and p.class_size(512) == 512
    assert p.class_size(513) == 1024 and p.class_size(1 << 16) == 1 << 16
    assert p.class_size((1 << 16) + 1) == (1 << 16) + 1           # unpooled: exact
    assert len(p.acquire(700)) == 1024


def test_reuse_and_counters():
    p = BufferPool(min_size=512, max_pooled=1 << 16, capacity=1 << 20)
    a = p.acquire(1000)
    assert p.stats()["out_bytes"] == 1024 and p.misses == 1
    p.release(a)
    assert p.held_bytes == 1024 and p.stats()["out_bytes"] == 0
    b = p.acquire(900)
    assert b is a and p.hits == 1 and p.held_bytes == 0


def test_idle_bytes_never_exceed_capacity():
    p = BufferPool(min_size=1024, max_pooled=1 << 16, capacity=3 * 1024)
    bufs = [p.acquire(1024) for _ in range(10)]
    assert p.peak_out_bytes == 10 * 1024
    for b in bufs:
        p.release(b)
        assert p.held_bytes <= p.capacity
    assert p.held_bytes == 3 * 1024 and p.dropped == 7


def test_unpooled_sizes_are_dropped_on_release():
    p = BufferPool(min_size=512, max_pooled=4096, capacity=1 << 20)
    b = p.acquire(10000)
    assert len(b) == 10000
    p.release(b)
    assert p.held_bytes == 0 and p.dropped == 1


def test_trim():
    p = BufferPool(min_size=512, max_pooled=4096, capacity=1 << 20)
    p.release(p.acquire(100))
    assert p.trim() == 512 and p.held_bytes == 0


@pytest.mark.parametrize("kw", [dict(min_size=100), dict(min_size=8), dict(max_pooled=3000),
                                dict(capacity=-1), dict(min_size=1024, max_pooled=512)])
def test_bad_arguments_name_what_was_wrong(kw):
    with pytest.raises(ValueError) as e:
        BufferPool(**kw)
    assert next(iter(kw)) in str(e.value) or "max_pooled" in str(e.value)
