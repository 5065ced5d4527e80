"""lsmkv.Cache: one block cache shared by several DBs (Options(block_cache=cache)).
File numbers repeat across DBs; the blocks of one DB must never answer another's read."""
import pytest

import lsmkv

SMALL = dict(write_buffer_size=64 * 1024, level0_file_num_compaction_trigger=2,
             target_file_size_base=64 * 1024)


def value(i, k):
    return b"db%d-%05d" % (i, k) * 5


@pytest.mark.parametrize("kind", ["slab", "lru"])
@pytest.mark.parametrize("meta_in_cache", [False, True])
def test_dbs_sharing_a_cache_read_their_own_blocks(tmp_path, kind, meta_in_cache):
    cache = lsmkv.Cache(2 << 20, kind=kind)
    dbs = [lsmkv.DB(str(tmp_path / f"db{i}"), block_cache=cache, cache_index_and_filter_blocks=meta_in_cache,
                    pin_l0_index_and_filter=False, **SMALL) for i in range(3)]
    try:
        for rnd in range(2):                 # the same keys, and the same file numbers, in each DB
            for i, db in enumerate(dbs):
                for k in range(3000):
                    db.put(b"k%05d" % k, value(i, k))
                db.flush()
        for db in dbs:
            db.compact_range()
        for _ in range(2):                   # the second pass reads from the cache
            for i, db in enumerate(dbs):
                for k in range(0, 3000, 7):
                    assert db.get(b"k%05d" % k) == value(i, k), (i, k)
        s = [db.stats()["block_cache"] for db in dbs]
        assert s[0]["shared"] and s[0]["capacity"] == 2 << 20
        assert s[0]["hits"] == s[2]["hits"] > 0            # one cache, seen by every DB
        assert s[0]["usage"] <= 2 << 20
        dbs[0].close()                       # its blocks leave the cache
        after = cache.stats()
        assert after["usage"] < s[0]["usage"]
        for i, db in enumerate(dbs[1:], 1):
            assert dict(db.items()) == {b"k%05d" % k: value(i, k) for k in range(3000)}
    finally:
        for db in dbs:
            db.close()
    with lsmkv.DB(str(tmp_path / "db0"), block_cache=cache) as db:   # reopened: same numbers, new ids
        assert db.get(b"k00007") == value(0, 7)


def test_shared_cache_options_are_checked(tmp_path):
    cache = lsmkv.Cache(1 << 20)
    with pytest.raises(ValueError, match="memory_budget"):
        lsmkv.Options(block_cache=cache, memory_budget=64 << 20)
    with pytest.raises(ValueError, match="block_cache"):
        lsmkv.Options(block_cache="fifo")
    with pytest.raises(ValueError, match="capacity"):
        lsmkv.Cache(0)
    with pytest.raises(ValueError, match="kind"):
        lsmkv.Cache(1 << 20, kind="fifo")
