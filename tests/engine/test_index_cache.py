"""Index and filter blocks as block-cache citizens (options cache_index_and_filter_blocks,
pin_l0_index_and_filter): evicted under pressure and reloaded with the same answers as
resident ones, L0's kept resident, damage found on the reload, the counters in
stats()["block_cache"], memory_usage() and concurrent readers under eviction."""
import os
import random
import struct
import threading

import pytest

import lsmkv
from lsmkv import testing

KiB = 1024
MiB = 1024 * KiB

# Tables of 64 KiB with 1 KiB blocks: index and filter blocks of 1-2 KiB, so they fit
# the 4 KiB slab pages; the 128 KiB cache holds a fraction of the data and meta blocks.
# The L0 tables must stay L0 tables while the tests read: no read-triggered compaction.
BUILD = dict(write_buffer_size=64 * KiB, target_file_size_base=64 * KiB, block_size=1024,
             max_bytes_for_level_base=256 * KiB, max_bytes_for_level_multiplier=4,
             level0_file_num_compaction_trigger=50, level0_slowdown_writes_trigger=60,
             level0_stop_writes_trigger=70, mmap_reads=False, compression_dict_bytes=0,
             read_triggered_compaction=False)
SMALL = dict(BUILD, block_cache_size=128 * KiB, slab_page_size=4 * KiB)
CACHED = dict(SMALL, cache_index_and_filter_blocks=True, pin_l0_index_and_filter=False)


def _value(rng):
    return rng.randbytes(rng.randrange(60, 200))


def build_db(path, n=6000, seed=11):
    """n keys written, fully compacted (many 64 KiB tables in the deeper levels), then a
    third of them overwritten and a few deleted into L0 tables. Returns the model."""
    rng = random.Random(seed)
    model = {}
    with lsmkv.DB(path, **BUILD) as db:
        keys = [b"key%06d" % i for i in range(n)]
        rng.shuffle(keys)
        for k in keys:
            model[k] = _value(rng)
            db.put(k, model[k])
        db.flush()
        db.compact_range()
        for k in rng.sample(keys, n // 3):
            model[k] = _value(rng)
            db.put(k, model[k])
        for k in rng.sample(keys, n // 50):
            model.pop(k, None)
            db.delete(k)
        db.flush()
        levels = [len(f) for f in testing.current_version(db).levels]
    assert levels[0] >= 2 and sum(levels[1:]) >= 10, levels
    return model


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("icache") / "db")
    return path, build_db(path)


def read_all(db, model, seed=3):
    """Every answer a workload of gets (present and missing keys) and scans gives."""
    rng = random.Random(seed)
    keys = sorted(model) + [b"key%06dx" % i for i in range(0, 6000, 7)]
    rng.shuffle(keys)
    out = [db.get(k) for k in keys]
    out.append(list(db.items()))
    for _ in range(20):
        a = b"key%06d" % rng.randrange(6000)
        out.append(list(db.items(start=a, stop=a[:-2] + b"99", reverse=rng.random() < 0.5)))
    return keys, out


def test_evicted_blocks_reload_with_the_resident_answers(built):
    path, model = built
    with lsmkv.DB(path, **SMALL) as db:
        keys, resident = read_all(db, model)
        rs = db.stats()["block_cache"]
    with lsmkv.DB(path, **CACHED) as db:
        keys2, cached = read_all(db, model)
        cs = db.stats()["block_cache"]
        testing.cache(db).check()
        tables = list(testing.table_readers(db).values())
        assert all(t.index_cached and t.filter_cached and t.memory_bytes() == 0 for t in tables)
        assert db.memory_usage()["index_filter"] == 0 and cs["index_filter_resident"] == 0
    assert keys == keys2 and cached == resident
    assert resident[:len(keys)] == [model.get(k) for k in keys]
    # resident: every use is a hit; cached: evicted under pressure and loaded again
    assert rs["index_misses"] == rs["filter_misses"] == 0 and rs["filter_hits"] > len(keys)
    assert rs["index_filter_resident"] > 0 and rs["index_filter_cached"] == 0
    assert cs["index_misses"] > 50 and cs["filter_misses"] > 50, cs
    assert cs["index_hits"] > 0 and cs["filter_hits"] > 0 and cs["evictions"] > 0
    assert 0 < cs["index_filter_cached"] <= cs["usage"]
    # the data blocks' hit ratio does not count index or filter lookups
    assert cs["hits"] + cs["misses"] < cs["hits"] + cs["misses"] + cs["filter_hits"] + cs["filter_misses"]


def test_the_same_with_mmap_reads_and_the_lru_cache(built):
    path, model = built
    with lsmkv.DB(path, **SMALL) as db:
        _, want = read_all(db, model, seed=5)
    with lsmkv.DB(path, **dict(CACHED, mmap_reads=True)) as db:
        assert read_all(db, model, seed=5)[1] == want
        assert db.stats()["block_cache"]["filter_misses"] > 0
    with lsmkv.DB(path, **dict(CACHED, block_cache="lru")) as db:   # 'lru': stays resident
        assert read_all(db, model, seed=5)[1] == want
        bc = db.stats()["block_cache"]
        assert all(not t.index_cached and t.memory_bytes() > 0 for t in testing.table_readers(db).values())
        assert bc["index_misses"] == bc["filter_misses"] == 0 and bc["filter_hits"] > 0
        assert bc["index_filter_resident"] == db.memory_usage()["index_filter"] > 0


def test_pinned_l0_index_and_filter_are_never_evicted(built):
    path, model = built
    with lsmkv.DB(path, **dict(CACHED, pin_l0_index_and_filter=True)) as db:
        v = testing.current_version(db)
        l0 = [testing.table_readers(db)[f.number] for f in v.levels[0]]
        deeper = [testing.table_readers(db)[f.number] for files in v.levels[1:] for f in files]
        assert all(not t.index_cached and not t.filter_cached and t.memory_bytes() > 0 for t in l0)
        assert all(t.index_cached and t.filter_cached and t.memory_bytes() == 0 for t in deeper)
        resident = sum(t.memory_bytes() for t in l0)
        assert db.memory_usage()["index_filter"] == resident
        assert db.stats()["block_cache"]["index_filter_resident"] == resident
        # only keys the L0 tables hold: every get ends in L0 (each probes both L0 filters)
        l0_keys = [k for k in model if any(t.py_get(k) is not None for t in l0)]
        assert len(l0_keys) > 1000
        rng = random.Random(9)
        evictions = db.stats()["block_cache"]["evictions"]
        for _ in range(3):
            list(db.items())                 # every block of every table: the cache turns over
            before = db.stats()["block_cache"]
            for k in rng.sample(l0_keys, len(l0_keys)):
                assert db.get(k) == model[k]
            after = db.stats()["block_cache"]
            assert after["filter_misses"] == before["filter_misses"]
            assert after["index_misses"] == before["index_misses"]
            assert after["filter_hits"] - before["filter_hits"] >= len(l0_keys)
            assert after["index_hits"] - before["index_hits"] >= len(l0_keys)
        assert db.stats()["block_cache"]["evictions"] - evictions > 500
        assert sum(t.memory_bytes() for t in l0) == resident
    # the same reads with L0 not pinned do miss on L0's blocks
    with lsmkv.DB(path, **CACHED) as db:
        list(db.items())
        before = db.stats()["block_cache"]
        for k in rng.sample(l0_keys, len(l0_keys)):
            assert db.get(k) == model[k]
        after = db.stats()["block_cache"]
        assert after["filter_misses"] > before["filter_misses"]
        assert after["index_misses"] > before["index_misses"]


def test_flush_outputs_are_l0_and_compaction_outputs_are_not(tmp_path):
    """The DB passes the level when it opens a table: a flush output keeps its index
    and filter resident (pinned L0), a compaction output has them in the cache."""
    with lsmkv.DB(str(tmp_path / "db"), **dict(CACHED, pin_l0_index_and_filter=True)) as db:
        for i in range(1000):
            db.put(b"k%05d" % i, b"v" * 100)
        db.flush()
        l0 = [testing.table_readers(db)[f.number] for f in testing.current_version(db).levels[0]]
        assert l0 and all(not t.index_cached and t.memory_bytes() > 0 for t in l0)
        db.compact_range()
        v = testing.current_version(db)
        assert not v.levels[0]
        out = [testing.table_readers(db)[f.number] for files in v.levels[1:] for f in files]
        assert out and all(t.index_cached and t.filter_cached for t in out)
        assert db.memory_usage()["index_filter"] == 0
        assert db.get(b"k00123") == b"v" * 100


def deepest(db):
    """The FileMetas of the deepest non-empty level."""
    return [files for files in testing.current_version(db).levels if files][-1]


def _handles(path):
    """(index offset, size), (filter offset, size) from a table's footer."""
    with open(path, "rb") as f:
        f.seek(-80, os.SEEK_END)
        h = struct.unpack("<8Q", f.read(64))
    return (h[0], h[1]), (h[2], h[3])


def _flip(path, off):
    with open(path, "r+b") as f:
        f.seek(off)
        b = f.read(1)
        f.seek(off)
        f.write(bytes([b[0] ^ 0x40]))


def test_damaged_index_or_filter_is_found_on_the_miss_load(built, tmp_path):
    path, model = built
    import shutil
    copy = str(tmp_path / "db")
    shutil.copytree(path, copy)
    with lsmkv.DB(copy, **CACHED) as db:
        f = deepest(db)[3]
        sst = os.path.join(copy, "%06d.sst" % f.number)
        key = f.smallest_user_key
        assert db.get(key) == model[key]
        (ioff, isize), (foff, fsize) = _handles(sst)
        for off, size, what in ((foff, fsize, "filter"), (ioff, isize, "index")):
            _flip(sst, off + size // 2)
            # still cached: answers come from the copy verified when it was loaded
            assert db.get(key) == model[key]
            testing.cache(db).erase_file(f.number)      # the next use misses and reads the file
            for _ in range(2):                  # the bad block is never cached
                with pytest.raises(lsmkv.CorruptionError) as e:
                    db.get(key)
                assert e.value.path == sst and e.value.offset == off, (what, e.value)
                assert "checksum" in e.value.detail
            with pytest.raises(lsmkv.CorruptionError):  # a seek asks the filter too (seek_lazy)
                list(db.items(start=key, stop=key + b"\xff"))
            if what == "filter":                # a scan from the first key never reads it
                assert dict(db.items(stop=key + b"\x00"))[key] == model[key]
            _flip(sst, off + size // 2)         # repaired: read again, answers again
            assert db.get(key) == model[key]
        testing.cache(db).check()


def test_a_block_that_changed_since_open_is_corruption(built, tmp_path):
    """A reloaded filter with a valid checksum but other parameters than open read
    (the file replaced under the DB) is reported, not probed."""
    path, model = built
    import shutil
    from lsmkv.core.coding import crc32c_py
    copy = str(tmp_path / "db")
    shutil.copytree(path, copy)
    with lsmkv.DB(copy, **CACHED) as db:
        f = deepest(db)[2]
        sst = os.path.join(copy, "%06d.sst" % f.number)
        _, (foff, fsize) = _handles(sst)
        with open(sst, "r+b") as fh:
            fh.seek(foff)
            block = bytearray(fh.read(fsize + 5))
            block[fsize - 1] = block[fsize - 1] + 1          # the probe count k
            block[fsize + 1:fsize + 5] = struct.pack("<I", crc32c_py(bytes(block[:fsize + 1])))
            fh.seek(foff)
            fh.write(block)
        testing.cache(db).erase_file(f.number)
        with pytest.raises(lsmkv.CorruptionError) as e:
            db.get(f.smallest_user_key)
        assert e.value.offset == foff and "differs from the one read at open" in e.value.detail
        testing.cache(db).check()
        assert testing.cache(db).stats()["pinned_blocks"] == 0


def test_counters_move_as_expected(tmp_path):
    """Hits and misses of index and filter blocks, per lookup; pins only while used."""
    path = str(tmp_path / "db")
    with lsmkv.DB(path, **dict(CACHED, block_cache_size=1 * MiB)) as db:
        for i in range(2000):
            db.put(b"k%05d" % i, b"v%05d" % i)
        db.flush()
        db.compact_range()
        (n,) = [f.number for files in testing.current_version(db).levels[1:] for f in files]
        c = testing.cache(db)

        def delta(fn):
            a = c.stats()
            fn()
            b = c.stats()
            return tuple(b[k] - a[k] for k in ("filter_hits", "filter_misses", "index_hits",
                                                "index_misses"))

        # the open warmed both blocks into the cache: hits
        assert delta(lambda: db.get(b"k00010")) == (1, 0, 1, 0)
        c.erase_file(n)
        assert delta(lambda: db.get(b"k00011")) == (0, 1, 0, 1)     # loaded again
        assert delta(lambda: db.get(b"k00012")) == (1, 0, 1, 0)
        assert c.stats()["pinned_blocks"] == 0              # a get pins them only while it runs
        # a key the filter rules out never reads the index (a key outside the
        # table's range does not even probe the filter)
        missing = next(b"k%05dz" % i for i in range(2000) if not testing.table_readers(db)[n].py_may_contain(b"k%05dz" % i))
        assert delta(lambda: db.get(missing)) == (1, 0, 0, 0)
        assert delta(lambda: db.get(b"zzz")) == (0, 0, 0, 0)
        # an iterator uses the index once and keeps it pinned while it lives
        it = db.items()
        next(it)
        assert c.stats()["pinned_blocks"] == 2              # index + the data block under it
        it.close()
        assert c.stats()["pinned_blocks"] == 0
        assert c.stats()["index_filter_cached"] > 0
    # resident blocks (the default) count as hits
    with lsmkv.DB(path, **SMALL) as db:
        for i in range(50):
            db.get(b"k%05d" % i)
        bc = db.stats()["block_cache"]
        assert (bc["filter_hits"], bc["index_hits"], bc["filter_misses"], bc["index_misses"]) == (50, 50, 0, 0)


def test_a_block_larger_than_a_slab_page_stays_resident(tmp_path):
    with lsmkv.DB(str(tmp_path / "db"), **dict(CACHED, target_file_size_base=1 * MiB,
                                               block_cache_size=64 * KiB)) as db:
        for i in range(20000):
            db.put(b"k%06d" % i, b"v")
        db.flush()
        db.compact_range()
        (t,) = [testing.table_readers(db)[f.number] for files in testing.current_version(db).levels[1:] for f in files]
        # a 25 KB filter does not fit a 4 KiB page; the index (one entry per KiB) does not either
        assert not t.filter_cached and not t.index_cached and t.memory_bytes() > 16 * KiB
        assert db.stats()["block_cache"]["index_filter_resident"] == t.memory_bytes()
        assert db.get(b"k012345") == b"v" and db.get(b"k0123456") is None


def test_page_moves_take_cold_single_block_pages_before_a_hot_one():
    """Regression: page moves chose the donor class by its eviction rate alone, so of
    classes that never evict (index and filter blocks alone in their pages) the first
    one lost its page, hot or not. A CLOCK over pages takes the cold pages first."""
    from lsmkv.core.cache import SlabCache
    c = SlabCache(16 * 4096, 4096)

    def cold_left(hot_cached=False):   # the hot block shares the 4096-byte class
        return sum(x["items"] for x in c.stats()["classes"] if x["size"] >= 3000) - hot_cached

    assert c.insert(1, b"\1" * 2100)                # hot: alone in its page
    for k in range(2, 8):
        assert c.insert(k, bytes([k]) * 3000)       # cold: one per page
    hot_misses = []
    for i in range(3000):                           # data blocks turn the cache over
        c.insert(1000 + i, b"d" * 400)
        if i % 4 == 0:
            v = c.lookup(1)
            if v is None:
                hot_misses.append(cold_left())
                c.insert(1, b"\1" * 2100)
            else:
                v.release()
    c.check()
    v = c.lookup(1)
    assert cold_left(v is not None) == 0 and c.stats()["slab_moves"] > 100
    assert sum(1 for n in hot_misses if n > 0) <= 1, hot_misses[:20]  # 156 before


def test_memory_usage_matches_rss_growth_with_cached_index_and_filter(tmp_path):
    """tests/engine/test_memory.py's RSS check, with index and filter blocks in the cache."""
    import test_memory
    child = test_memory.RSS_CHILD.replace(
        "block_cache_size=24 << 20)",
        "block_cache_size=24 << 20, cache_index_and_filter_blocks=True, pin_l0_index_and_filter=False)")
    # wait for the janitor's spare log: memory_usage() cannot count one while its
    # mapping is being populated, a race this test is not about
    child = child.replace("db.flush()\n", "db.flush()\nimport time\nimport lsmkv.testing\nt = time.monotonic() + 10\n"
                          "while lsmkv.testing.spare_log(db) is None and time.monotonic() < t:\n"
                          "    time.sleep(0.01)\n")
    assert child.count("spare_log(") == 1 and "cache_index_and_filter_blocks" in child
    u, bc = test_memory.run_rss_child(child, tmp_path / "db")
    # meta blocks went through the cache (reloaded after eviction); one larger than a
    # slab page (here the filter) stays resident, and memory_usage counts just that
    assert bc["index_misses"] + bc["filter_misses"] > 0 and u["cache_payload"] > 0
    assert u["index_filter"] == bc["index_filter_resident"]


def test_readers_stay_correct_while_others_evict(tmp_path):
    """Readers check every value while other threads turn the cache over (full scans)
    and a writer rewrites keys (flushes, compactions: tables opened and deleted)."""
    path = str(tmp_path / "db")
    n = 3000

    def val(k):
        return (k * 7)[:40] + b"|" + k

    opts = dict(CACHED, block_cache_size=64 * KiB, level0_file_num_compaction_trigger=2,
                level0_slowdown_writes_trigger=20, level0_stop_writes_trigger=36,
                compaction_worker="thread")
    keys = [b"key%06d" % i for i in range(n)]
    errors = []
    with lsmkv.DB(path, **opts) as db:
        for k in keys:
            db.put(k, val(k))
        db.flush()
        stop = threading.Event()

        def reader(seed):
            rng = random.Random(seed)
            try:
                for i in range(6000):
                    k = keys[rng.randrange(n)]
                    got = db.get(k)
                    if got != val(k):
                        errors.append((k, got))
                    if db.get(k + b"-missing") is not None:
                        errors.append((k, "missing key found"))
                    if i % 100 == 0:
                        for kk, vv in db.items(start=k, stop=k[:-1] + b"\xff"):
                            if vv != val(kk):
                                errors.append((kk, vv))
            except Exception as e:       # reported below
                errors.append(repr(e))

        def scanner():
            try:
                while not stop.is_set():
                    for kk, vv in db.items():
                        if vv != val(kk):
                            errors.append((kk, vv))
            except Exception as e:
                errors.append(repr(e))

        def writer(seed):
            rng = random.Random(seed)
            try:
                while not stop.is_set():
                    for _ in range(500):
                        k = keys[rng.randrange(n)]
                        db.put(k, val(k))
                    db.flush()
            except Exception as e:
                errors.append(repr(e))

        readers = [threading.Thread(target=reader, args=(s,)) for s in range(3)]
        others = [threading.Thread(target=scanner), threading.Thread(target=writer, args=(7,))]
        for t in readers + others:
            t.start()
        for t in readers:
            t.join()
        stop.set()
        for t in others:
            t.join()
        assert errors == []
        bc = db.stats()["block_cache"]
        assert bc["index_misses"] > 100 and bc["filter_misses"] > 100 and bc["evictions"] > 1000
        assert bc["pinned_blocks"] == 0
        testing.cache(db).check()
        assert [db.get(k) for k in keys] == [val(k) for k in keys]


def test_the_options_must_be_bools(tmp_path):
    for name in ("cache_index_and_filter_blocks", "pin_l0_index_and_filter"):
        with pytest.raises(TypeError, match=f"option {name} must be a bool"):
            lsmkv.Options(**{name: "yes"})
