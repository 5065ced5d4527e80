"""multi_get's batched block fetch (lsmkv/core/fetch.pxi, readmany.pxi): the blocks
the tables of a round lack in the cache are read, verified and decompressed
together without the GIL, on helper threads too (parallel_reads). Without bloom
filters every key asks every table that may hold it by range, in several rounds. Every answer must be what get() gives, with
any number of helpers, through the mapping or pread, with a compression
dictionary, across flushes and compactions; a damaged block must be reported as
get() reports it (file and offset) and leave no pin; a forked child must read
with its own helpers.
"""
import os
import random

import pytest

import lsmkv
from lsmkv.core.table import fetch_stats, parallel_reads

# small blocks and a small cache: most blocks a batch needs miss the cache
BASE = dict(write_buffer_size=64 * 1024, block_size=512, block_cache_size=256 * 1024,
            target_file_size_base=64 * 1024, max_bytes_for_level_base=128 * 1024,
            max_bytes_for_level_multiplier=2, level0_file_num_compaction_trigger=3)


@pytest.fixture
def helpers():
    """Set parallel_reads for a test, restored after it."""
    prev = parallel_reads()
    yield parallel_reads
    parallel_reads(prev)


def _key(rng):
    r = rng.random()
    if r < 0.02:
        return b""
    if r < 0.05:
        return b"zz-missing-%d" % rng.randrange(50)      # never written
    return b"key%05d" % rng.randrange(3000)


@pytest.mark.parametrize("nhelpers", [0, 1, 3])
@pytest.mark.parametrize("extra", [dict(mmap_reads=False), dict(mmap_reads=True),
                                   dict(compression_dict_bytes=2048), dict(compression="none"),
                                   dict(block_cache_size=48 * 1024), dict(bloom_bits_per_key=0),
                                   dict(block_cache="lru"), dict(block_cache_size=0)],
                         ids=["pread", "mmap", "dict", "raw", "cache-takes-none", "nobloom", "lru", "nocache"])
def test_fetch_matches_get_and_model(tmp_path, helpers, nhelpers, extra):
    helpers(nhelpers)
    rng = random.Random(nhelpers * 7 + len(extra))
    model = {}
    before = fetch_stats()["blocks"]
    with lsmkv.DB(str(tmp_path / "db"), **dict(BASE, **extra)) as db:
        for step in range(12000):
            r = rng.random()
            k = _key(rng)
            if r < 0.8:
                v = b"v%d:" % step + bytes(rng.randrange(256) for _ in range(rng.randrange(0, 60)))
                db.put(k, v)
                model[k] = v
            elif r < 0.95:
                db.delete(k)
                model.pop(k, None)
            elif r < 0.951:
                db.flush()
            elif r < 0.9515:
                db.compact_range()
            if step % 1000 == 999:
                for _ in range(3):
                    keys = [_key(rng) for _ in range(rng.randrange(1, 400))]
                    keys += keys[:7]                                  # duplicates
                    rng.shuffle(keys)
                    got = db.multi_get(keys)
                    assert got == [db.get(k) for k in keys] == [model.get(k) for k in keys], step
        db.flush()
        keys = sorted(model) + [b"zz-missing-1"] * 3
        assert db.multi_get(keys) == [model.get(k) for k in keys]
        assert db.memory_usage()["pinned"] == 0
    if extra.get("block_cache", "slab") == "slab" and extra.get("block_cache_size", 1):
        assert fetch_stats()["blocks"] > before        # the batched path ran (with the slab cache)
    if nhelpers and fetch_stats()["blocks"] > before:
        assert fetch_stats()["helpers"] >= 1


def test_fetch_at_a_snapshot_across_compaction(tmp_path, helpers):
    helpers(2)
    with lsmkv.DB(str(tmp_path / "db"), **BASE) as db:
        keys = [b"key%05d" % i for i in range(3000)]
        for k in keys:
            db.put(k, b"old" + k)
        db.flush()
        snap = db.snapshot()
        for k in keys[::2]:
            db.put(k, b"new" + k)
        for k in keys[1::4]:
            db.delete(k)
        db.flush()
        db.compact_range()
        ask = keys[::3] + keys[:10]
        assert snap.multi_get(ask) == [b"old" + k for k in ask]
        assert db.multi_get(ask) == [db.get(k) for k in ask]
        snap.close()


def _damage(path, offset):
    with open(path, "r+b") as fh:
        fh.seek(offset)
        b = fh.read(1)
        fh.seek(offset)
        fh.write(bytes([b[0] ^ 0x55]))


@pytest.mark.parametrize("mmap_reads", [False, True])
@pytest.mark.parametrize("nhelpers", [0, 2])
def test_damaged_compressed_block_reported_as_get_does(tmp_path, helpers, nhelpers, mmap_reads):
    helpers(nhelpers)
    d = str(tmp_path / "db")
    keys = [b"key%05d" % i for i in range(4000)]
    with lsmkv.DB(d, block_size=1024) as db:          # zstd
        for k in keys:
            db.put(k, k * 4)
        db.flush()
    sst = [f for f in os.listdir(d) if f.endswith(".sst")][0]
    _damage(os.path.join(d, sst), 2000)               # inside the second data block or so
    with lsmkv.DB(d, block_cache_size=1 << 20, mmap_reads=mmap_reads) as db:
        with pytest.raises(lsmkv.CorruptionError) as ge:
            for k in keys:
                db.get(k)
        bad = next(k for k in keys if _raises(db, k))
        ask = keys[::97] + [bad] + keys[1::89]            # many blocks, one of them damaged
        with pytest.raises(lsmkv.CorruptionError) as me:
            db.multi_get(ask)
        assert me.value.path == ge.value.path and sst in me.value.path
        assert me.value.offset == ge.value.offset
        assert me.value.detail == ge.value.detail
        assert db.memory_usage()["pinned"] == 0
        good = [k for k in keys[::50] if not _raises(db, k)]
        assert db.multi_get(good) == [k * 4 for k in good]     # the others still read


def _raises(db, k):
    try:
        db.get(k)
    except lsmkv.CorruptionError:
        return True
    return False


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_forked_child_reads_with_its_own_helpers(tmp_path, helpers):
    helpers(1)
    d = str(tmp_path / "db")
    keys = [b"key%05d" % i for i in range(3000)]
    with lsmkv.DB(d, **BASE) as db:
        for k in keys:
            db.put(k, b"v" + k)
        db.flush()
        assert db.multi_get(keys[::7]) == [b"v" + k for k in keys[::7]]   # helpers started
    pid = os.fork()
    if pid == 0:                                       # the child: no helper threads inherited
        code = 1
        try:
            with lsmkv.DB(d, **BASE) as db:
                ok = db.multi_get(keys[::3]) == [b"v" + k for k in keys[::3]]
                code = 0 if ok and fetch_stats()["helpers"] >= 1 else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0


def test_parallel_reads_bounds(helpers):
    with pytest.raises(ValueError, match="parallel_reads"):
        parallel_reads(-1)
    prev = parallel_reads(2)
    assert parallel_reads() == 2
    parallel_reads(prev)


def test_parallel_reads_from_the_environment():
    import subprocess
    import sys
    env = dict(os.environ, LSMKV_PARALLEL_READS="0")
    out = subprocess.run([sys.executable, "-c", "from lsmkv.core.table import parallel_reads; "
                          "print(parallel_reads())"], env=env, capture_output=True, text=True, check=True,
                         cwd="/")      # not the checkout: an uncompiled source tree there would shadow lsmkv
    assert out.stdout.strip() == "0"


def _one_table(d):
    keys = [b"key%05d" % i for i in range(3000)]
    with lsmkv.DB(d, **BASE) as db:
        for k in keys:
            db.put(k, b"v" * 300 + k)
        db.compact_range()
    return keys


@pytest.mark.skipif(os.environ.get("LSMKV_FETCH_LINGER_US", "").strip() == "0", reason="the linger is off")
def test_helpers_linger_only_while_batches_come_close_together(tmp_path, helpers):
    """A helper polls for a next batch after one (the linger) when batches have
    been coming less than the linger apart, as a loop of multi_gets posts them,
    and sleeps at once when they come far apart."""
    import time
    helpers(1)
    d = str(tmp_path / "db")
    keys = _one_table(d)
    rng = random.Random(3)
    with lsmkv.DB(d, **BASE) as db:
        before = fetch_stats()["linger_us"]
        for _ in range(300):                           # close together
            ask = rng.sample(keys, 40)
            assert db.multi_get(ask) == [b"v" * 300 + k for k in ask]
        time.sleep(0.05)                               # any linger is over, and counted
        dense = fetch_stats()["linger_us"] - before
        assert fetch_stats()["helpers"] >= 1 and dense > 0
        before = fetch_stats()
        for _ in range(15):                            # far apart: each batch wakes a sleeping helper
            time.sleep(0.02)
            ask = rng.sample(keys, 40)
            assert db.multi_get(ask) == [b"v" * 300 + k for k in ask]
        time.sleep(0.05)
        after = fetch_stats()
        assert after["batches"] - before["batches"] >= 15
        assert after["linger_us"] == before["linger_us"]


def test_no_linger_when_the_environment_says_so(tmp_path):
    import subprocess
    import sys
    d = str(tmp_path / "db")
    _one_table(d)
    code = ("import random, lsmkv\n"
            "from lsmkv.core.table import fetch_stats, parallel_reads\n"
            "parallel_reads(1)\n"
            f"db = lsmkv.DB({d!r}, **{BASE!r})\n"
            "keys = [b'key%05d' % i for i in range(3000)]\n"
            "rng = random.Random(1)\n"
            "for _ in range(300):\n"
            "    ask = rng.sample(keys, 40)\n"
            "    assert db.multi_get(ask) == [b'v' * 300 + k for k in ask]\n"
            "db.close()\n"
            "s = fetch_stats()\n"
            "print(s['batches'] >= 300, s['helpers'], s['linger_us'])\n")
    out = subprocess.run([sys.executable, "-c", code], env=dict(os.environ, LSMKV_FETCH_LINGER_US="0"),
                         capture_output=True, text=True, check=True, cwd="/")
    assert out.stdout.split() == ["True", "1", "0"]


@pytest.mark.parametrize("nhelpers", [0, 1])
@pytest.mark.parametrize("sizes", ["even", "uneven"])
def test_fetched_blocks_fill_the_slots_reserved_for_them(tmp_path, helpers, nhelpers, sizes):
    """A batch reserves a cache slot for each block it fetches by the length of
    the table's last fetched block: even blocks land in their slot; where that
    length is mostly of another size class than the next block's, the batch
    stops guessing (a wrong guess evicts a block for nothing) and copies each
    block into a new slot. The cache's books stay right either way."""
    from lsmkv import testing
    helpers(nhelpers)
    rng = random.Random(len(sizes) + nhelpers)
    d = str(tmp_path / "db")
    keys = [b"key%05d" % i for i in range(3000)]
    if sizes == "even":
        vals = {k: b"v" * 300 + k for k in keys}
    else:
        vals = {k: bytes(rng.randrange(256) for _ in range(rng.choice([0, 5, 90, 700, 1500]))) for k in keys}
    with lsmkv.DB(d, **BASE) as db:
        for k in keys:
            db.put(k, vals[k])
        db.compact_range()
    with lsmkv.DB(d, **BASE) as db:
        before = fetch_stats()
        for _ in range(200):
            ask = rng.sample(keys, 60) + [b"zz-missing"]
            assert db.multi_get(ask) == [vals.get(k) for k in ask]
        after = fetch_stats()
        fetched = after["blocks"] - before["blocks"]
        in_slot = after["in_slot"] - before["in_slot"]
        assert fetched > 1000
        if sizes == "even":
            assert in_slot > fetched * 0.8
        else:                   # the last block's length is a poor guess: mostly no reservation
            assert in_slot < fetched * 0.2
        assert db.memory_usage()["pinned"] == 0
        testing.cache(db).check()
        assert db.multi_get(keys) == [vals[k] for k in keys]


@pytest.mark.parametrize("nhelpers", [0, 1])
def test_a_block_the_cache_cannot_take_is_counted_once(tmp_path, helpers, nhelpers):
    """A batch's reservation that fails is not counted: each fetched block the
    cache cannot take counts one insert failure, as a get's would."""
    from lsmkv import testing
    helpers(nhelpers)
    d = str(tmp_path / "db")
    keys = _one_table(d)
    rng = random.Random(9)
    with lsmkv.DB(d, **dict(BASE, block_cache_size=64 * 1024)) as db:     # no page for data blocks
        for _ in range(3):          # the table's block_hint is set by the first batch
            db.multi_get(rng.sample(keys, 60))
        before, cb = fetch_stats(), testing.cache(db).stats()
        for _ in range(50):
            ask = rng.sample(keys, 60)
            assert db.multi_get(ask) == [b"v" * 300 + k for k in ask]
        after, ca = fetch_stats(), testing.cache(db).stats()
        fetched = after["blocks"] - before["blocks"]
        assert fetched > 1000 and after["in_slot"] == before["in_slot"]
        assert ca["insert_failures"] - cb["insert_failures"] == fetched
        assert ca["too_large"] == cb["too_large"]
