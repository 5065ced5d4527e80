"""The block read path of lsmkv.core.table: pread (with RWF_NOWAIT first) into pooled
buffers, per-thread decompression contexts, in-place restart keys, key buffers."""
import random
import struct
import threading

import pytest

from lsmkv.core.cache import SlabCache
from lsmkv.core.coding import crc32c_py
from lsmkv.core.table import TableBuilder, TableReader, pread_nowait, read_pool_stats, make_tag_py
from lsmkv.errors import CorruptionError

MAX_SEQ = 0x00FFFFFFFFFFFFFF
FOOTER = 80


def ik(ukey, seq=1):
    return ukey + make_tag_py(seq, 1).to_bytes(8, "little")


def build(path, keys, value=lambda k: b"v" + k[::-1] * 3, block_size=512, dict_bytes=0):
    tb = TableBuilder(path, block_size, "zstd", -1, 10, 16, dict_bytes)
    for k in keys:
        tb.py_add(ik(k), value(k))
    tb.finish()


@pytest.fixture
def table(tmp_path):
    keys = sorted({b"key%08d" % i for i in random.Random(1).sample(range(10**8), 3000)})
    path = tmp_path / "000001.sst"
    build(path, keys)
    return path, keys


@pytest.mark.parametrize("nowait", [True, False])
def test_pread_paths_read_the_same(table, nowait):
    """Both read paths (preadv2 RWF_NOWAIT under the GIL, plain pread without it)
    return every value, through a slab cache too small to hold the table."""
    path, keys = table
    prev = pread_nowait(nowait)
    try:
        r = TableReader(path, 1, SlabCache(64 << 10), use_mmap=False)
        for k in keys + keys[::7]:
            assert r.py_get(k) == b"v" + k[::-1] * 3
        assert r.py_get(b"key-absent") is None
        assert r.verify() == len(keys)
    finally:
        pread_nowait(prev)


def test_read_pool_reuses_a_bounded_set_of_buffers(table):
    path, keys = table
    r = TableReader(path, 1, SlabCache(64 << 10), use_mmap=False)
    before = read_pool_stats()
    for k in keys:
        assert r.py_get(k) is not None
    after = read_pool_stats()
    assert after["borrowed"] - before["borrowed"] >= len(keys) // 2     # mostly misses
    assert after["created"] - before["created"] <= 1                    # one thread: one buffer at a time
    assert 1 <= after["held"] <= 16
    assert after["held_bytes"] >= 16384 * after["held"]


def test_pool_buffer_grows_for_a_block_larger_than_it(tmp_path):
    """A block larger than the pooled buffers gets a larger buffer, which then stays pooled."""
    path = tmp_path / "000002.sst"
    big = random.Random(2).randbytes(100_000)            # incompressible, > 16 KiB
    build(path, [b"a", b"b"], value=lambda k: big, block_size=4096)
    r = TableReader(path, 2, SlabCache(1 << 20), use_mmap=False)
    assert r.py_get(b"a") == big and r.py_get(b"b") == big
    s = read_pool_stats()
    assert s["held_bytes"] >= 100_000


@pytest.mark.parametrize("klen", [60, 64, 65, 200, 3000])
def test_keys_longer_than_the_inline_key_buffer(tmp_path, klen):
    """Keys around and beyond the iterator's 64-byte inline buffer (prefix compressed,
    so the move to the heap must keep the shared prefix)."""
    rng = random.Random(klen)
    base = rng.randbytes(klen)
    keys = sorted({base[:klen - 6] + b"%06d" % rng.randrange(10**6) for _ in range(400)})
    path = tmp_path / "000003.sst"
    build(path, keys, value=lambda k: k[-6:])
    r = TableReader(path, 3, SlabCache(1 << 20), use_mmap=False)
    for k in keys:
        assert r.py_get(k) == k[-6:]
    assert r.py_get(base[:klen - 6] + b"zzzzzz") is None
    assert r.verify() == len(keys)


def test_restart_entry_sharing_a_prefix_is_corruption(tmp_path):
    """The binary search reads restart keys in place; an entry at a restart point
    that claims a shared prefix (checksum recomputed) is reported, not misread."""
    path = tmp_path / "000004.sst"
    keys = [b"key%04d" % i for i in range(200)]
    tb = TableBuilder(path, 4096, "none", -1, 10, 4, 0)      # raw blocks, restart every 4
    for k in keys:
        tb.py_add(ik(k), b"x" * 10)
    tb.finish()
    data = bytearray(path.read_bytes())
    h = struct.unpack("<8Q", data[-FOOTER:-FOOTER + 64])
    blk_size = _first_block_size(bytes(data), h[0], h[1])     # the first data block, at offset 0
    nrest = struct.unpack("<I", data[blk_size - 4:blk_size])[0]
    second = struct.unpack("<I", data[blk_size - 4 - 4 * nrest + 4:blk_size - 4 - 4 * nrest + 8])[0]
    assert data[second] == 0                                # restart entries share nothing
    data[second] = 1
    data[blk_size + 1:blk_size + 5] = struct.pack("<I", crc32c_py(bytes(data[:blk_size + 1])))
    path.write_bytes(bytes(data))
    r = TableReader(path, 4)
    with pytest.raises(CorruptionError) as ei:
        r.py_get(keys[7])
    assert ei.value.offset == 0 and "bad block entry" in str(ei.value)


def _first_block_size(data, index_off, index_size):
    from lsmkv.core.coding import decode_varint
    from lsmkv.core.table import block_entries
    (_, v), *_ = block_entries(data[index_off:index_off + index_size])
    off, pos = decode_varint(v)
    size, _ = decode_varint(v, pos)
    assert off == 0
    return size


@pytest.mark.parametrize("dict_bytes", [0, 4096])
def test_threads_decompress_with_their_own_contexts(tmp_path, dict_bytes):
    """Readers in several threads (each with its own decompression context) and a
    cache small enough to evict all the time read every value right."""
    keys = sorted({b"key%08d" % i for i in random.Random(3).sample(range(10**8), 4000)})
    path = tmp_path / "000005.sst"
    build(path, keys, dict_bytes=dict_bytes)
    r = TableReader(path, 5, SlabCache(128 << 10), use_mmap=False)
    errors = []

    def reader(seed):
        try:
            for k in random.Random(seed).choices(keys, k=1500):
                v = r.py_get(k)
                if v != b"v" + k[::-1] * 3:
                    errors.append((k, v))
        except Exception as e:              # reported below
            errors.append(e)

    ts = [threading.Thread(target=reader, args=(s,)) for s in range(4)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert errors == []
