"""Adaptive memory split: the policy (lsmkv/adaptive.py) on synthetic samples, and
the DB applying it (write buffer size, cache capacity, early memtable switch)."""
import time

import pytest

import lsmkv
from lsmkv import adaptive
from lsmkv.adaptive import AdaptiveSplit, Sample

MiB = 1 << 20


def sample(**kw):
    base = dict(seconds=0.5, writes=0, reads=0, flush_stall_seconds=0.0, l0_stall_seconds=0.0, cache_hits=0, cache_misses=0,
                cache_usage=0, cache_capacity=100 * MiB)
    base.update(kw)
    return Sample(**base)


STALLING = dict(writes=100_000, flush_stall_seconds=0.2)
L0_STALLING = dict(writes=100_000, l0_stall_seconds=0.2)
READING = dict(reads=100_000, writes=1_000, cache_hits=50_000, cache_misses=50_000, cache_usage=99 * MiB)
WRITING = dict(writes=100_000)


def feed(p, n, **kw):
    return [p.decide(sample(**kw)) for _ in range(n)]


def test_bounds_leave_the_cache_its_floor():
    lo, l0, fl, hi = adaptive.bounds(256 * MiB, 2, 32 * MiB)
    assert (lo, l0, fl, hi) == (4 * MiB, 16 * MiB, 32 * MiB, 112 * MiB)
    lo, l0, fl, hi = adaptive.bounds(256 * MiB, 4, 32 * MiB)
    assert hi * 4 + 32 * MiB <= 256 * MiB
    with pytest.raises(ValueError, match="bad bounds"):
        AdaptiveSplit(8 * MiB, 16 * MiB, 16 * MiB, 16 * MiB, 8 * MiB)


def test_flush_stalls_grow_the_write_buffer_up_to_the_flush_limit():
    p = AdaptiveSplit(4 * MiB, 4 * MiB, 8 * MiB, 32 * MiB, 64 * MiB)
    sizes = feed(p, 12, **STALLING)
    assert sizes[-1] == 32 * MiB
    assert all(b >= a for a, b in zip(sizes, sizes[1:]))
    assert p.grows == 3 and p.shrinks == 0
    assert "for a flush" in p.last_reason


def test_l0_stalls_grow_only_to_the_l0_limit():
    p = AdaptiveSplit(4 * MiB, 4 * MiB, 16 * MiB, 64 * MiB, 64 * MiB)
    feed(p, 12, **L0_STALLING)
    assert p.size == 16 * MiB and p.grows == 2
    assert "L0" in p.last_reason


def test_moves_are_held_apart():
    p = AdaptiveSplit(4 * MiB, 4 * MiB, 64 * MiB, 64 * MiB, 64 * MiB)
    sizes = feed(p, 5, **STALLING)
    # a move, then HOLD_SAMPLES samples without one
    changes = [i for i in range(1, len(sizes)) if sizes[i] != sizes[i - 1]]
    assert all(b - a >= adaptive.HOLD_SAMPLES for a, b in zip(changes, changes[1:]))


def test_read_mostly_with_a_full_missing_cache_shrinks_to_the_min():
    p = AdaptiveSplit(32 * MiB, 4 * MiB, 64 * MiB, 64 * MiB, 64 * MiB)
    feed(p, 20, **READING)
    assert p.size == 4 * MiB
    assert "reads" in p.last_reason and p.shrinks == 1      # in one move


@pytest.mark.parametrize("change", [
    dict(cache_usage=50 * MiB),                        # the cache is not full: it needs nothing
    dict(cache_hits=99_900, cache_misses=100),         # it already hits
    dict(writes=60_000),                               # the load is not read-mostly
])
def test_reads_do_not_shrink_when_the_cache_would_not_gain(change):
    p = AdaptiveSplit(32 * MiB, 4 * MiB, 64 * MiB, 64 * MiB, 64 * MiB)
    kw = dict(READING, **change)
    if change.get("writes"):
        kw["flush_stall_seconds"] = 0.2       # and its writers stall: it grows instead
    feed(p, 4, **kw)
    assert p.shrinks == 0


def test_quiet_writes_probe_down_but_not_below_a_size_that_stalled():
    p = AdaptiveSplit(64 * MiB, 4 * MiB, 64 * MiB, 64 * MiB, 64 * MiB)
    feed(p, 30, **WRITING)
    assert p.size == 4 * MiB and "probe" in p.last_reason
    feed(p, 1, **STALLING)
    assert p.size == 8 * MiB                  # grew back, 8 MiB is now the floor
    feed(p, 40, **WRITING)
    assert p.size == 8 * MiB                  # probing stops at the floor...
    feed(p, adaptive.FLOOR_SAMPLES, **WRITING)
    assert p.size == 4 * MiB                  # ...until it expires


def test_a_read_mostly_load_never_grows():
    p = AdaptiveSplit(4 * MiB, 4 * MiB, 64 * MiB, 64 * MiB, 64 * MiB)
    feed(p, 20, **dict(READING, flush_stall_seconds=0.3))     # its few writes wait for a flush
    assert p.size == 4 * MiB and p.grows == 0


def test_idle_holds():
    p = AdaptiveSplit(16 * MiB, 4 * MiB, 64 * MiB, 64 * MiB, 64 * MiB)
    feed(p, 50)
    assert p.size == 16 * MiB and p.grows == p.shrinks == 0


def test_options_are_checked():
    with pytest.raises(ValueError, match="adaptive_memory needs option memory_budget"):
        lsmkv.Options(adaptive_memory=True)
    with pytest.raises(TypeError, match="adaptive_memory must be a bool"):
        lsmkv.Options(adaptive_memory=1, memory_budget=256 * MiB)
    with pytest.raises(ValueError, match="adaptive_interval"):
        lsmkv.Options(adaptive_memory=True, memory_budget=256 * MiB, adaptive_interval=0)


def _db(tmp_path, **kw):
    opts = dict(write_buffer_size=1 * MiB, memory_budget=16 * MiB, block_cache_size=8 * MiB,
                adaptive_memory=True, adaptive_interval=3600.0,   # ticks are driven by the test
                compaction_worker="thread", compression="none")
    opts.update(kw)
    return lsmkv.DB(str(tmp_path / "db"), **opts)


def test_db_grows_on_stalls_and_the_cache_gives_way(tmp_path):
    # L0 triggers of 1-2 files: nearly every flush makes writers slow down or stop
    db = _db(tmp_path, memory_budget=64 * MiB,      # L0 stalls may grow it to 64/16 = 4 MiB
             level0_file_num_compaction_trigger=1, level0_slowdown_writes_trigger=1,
             level0_stop_writes_trigger=2, delayed_write_rate=2 * MiB)
    try:
        t = 0.0
        db._adaptive_tick(t)
        cap0 = db.stats()["memory_budget"]["cache_capacity"]
        v = b"v" * 200
        for round_ in range(8):
            for i in range(8000):
                db.put(b"%08d-%04d" % (i, round_), v)
            t += 0.5
            db._adaptive_tick(t)
        st = db.stats()
        ad = st["adaptive_memory"]
        assert st["stall_seconds"] > 0
        assert ad["grows"] >= 1 and db.write_buffer_size > 1 * MiB, ad
        # L0 stalls grow it up to budget/16 (4 MiB); past that only waits for a flush
        # (a loaded machine's flush thread falling behind) may have grown it
        for h in ad["history"]:
            assert h["to"] <= 4 * MiB or "for a flush" in h["reason"], h
        assert st["memory_budget"]["cache_capacity"] < cap0
        assert db.get(b"00000000-0000") == v
    finally:
        db.close()


def test_db_read_phase_shrinks_and_switches_the_memtable_early(tmp_path):
    db = _db(tmp_path, write_buffer_size=4 * MiB, block_cache_size=2 * MiB)
    try:
        v = b"x" * 300
        n = 60_000                              # ~20 MB of data: more than the whole budget
        for i in range(n):
            db.put(b"%08d" % i, v)
        db.flush()
        for i in range(9000):                   # the active memtable holds ~3 MB
            db.put(b"m%07d" % i, v)
        t = 0.0
        db._adaptive_tick(t)
        size0 = db.write_buffer_size
        for _ in range(6):
            for i in range(0, n, 7):
                assert db.get(b"%08d" % i) == v
            t += 0.5
            db._adaptive_tick(t)
        db.flush()
        st = db.stats()
        ad = st["adaptive_memory"]
        assert ad["shrinks"] >= 1 and db.write_buffer_size < size0, ad
        assert "reads" in ad["history"][0]["reason"]
        assert ad["early_switches"] >= 1           # the 4 MiB memtable was switched to free it
        assert st["memory_budget"]["cache_capacity"] > 16 * MiB - size0
        assert db.get(b"m0008999") == v
    finally:
        db.close()


def test_db_adaptive_thread_runs_and_closes(tmp_path):
    db = _db(tmp_path, adaptive_interval=0.02)
    try:
        for i in range(20000):
            db.put(b"%08d" % i, b"v" * 50)
        deadline = time.monotonic() + 10
        while db.stats()["adaptive_memory"]["samples"] < 3 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert db.stats()["adaptive_memory"]["samples"] >= 3
    finally:
        db.close()
    assert not db._adaptive_thread.is_alive()
