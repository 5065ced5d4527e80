"""The SST bloom filter (lsmkv.core.table): false-positive rate, no false negatives, layout."""
import random
import struct

import mmh3
import pytest

from lsmkv.core.coding import crc32c_py
from lsmkv.core.table import TableBuilder, TableReader, bloom_hash_py, make_tag_py
from lsmkv.errors import CorruptionError

PUT, DELETE = 1, 0
BLOOM_SEED = 0xBC9F1D34
N = 20000


def ikey(ukey, seq, kind=PUT):
    return ukey + make_tag_py(seq, kind).to_bytes(8, "little")


def build(path, ukeys, bits, versions=1):
    tb = TableBuilder(path, 4096, "none", 3, bits)
    seq = 10**6
    for k in sorted(ukeys):
        for v in range(versions):
            tb.py_add(ikey(k, seq - v, PUT if v % 2 == 0 else DELETE), b"" if v % 2 else b"v")
        seq -= versions
    tb.finish()
    return TableReader(path, 1)


def filter_block(path):
    data = open(path, "rb").read()
    off, size = struct.unpack_from("<QQ", data, len(data) - 80 + 16)
    return data[off:off + size]


def reference_filter(ukeys, bits_per_key):
    """The filter docs/format.md describes, built independently of lsmkv."""
    distinct = sorted(set(ukeys))
    nlines = (len(distinct) * bits_per_key + 511) // 512
    k = min(30, max(1, int(0.69 * bits_per_key + 0.5)))
    bits = bytearray(nlines * 64)
    for key in distinct:
        h = mmh3.hash64(key, BLOOM_SEED, signed=False)[0]
        line = ((h & 0xFFFFFFFF) * nlines >> 32) * 64
        g = h >> 32
        for _ in range(k):
            b = g >> 23
            bits[line + (b >> 3)] |= 1 << (b & 7)
            g = (g * 0x9E3779B9) & 0xFFFFFFFF
    return bytes(bits) + bytes([k])


@pytest.fixture(scope="module")
def big_table(tmp_path_factory):
    rng = random.Random(2024)
    keys = set()
    while len(keys) < 2 * N:
        keys.add(b"user:%d:%s" % (rng.randrange(10**9), rng.randbytes(4).hex().encode()))
    keys = sorted(keys)
    rng.shuffle(keys)
    present, absent = keys[:N], keys[N:]
    path = tmp_path_factory.mktemp("bloom") / "000001.sst"
    reader = build(path, present, 10)
    return reader, path, present, absent


def test_bloom_hash_is_murmur3_first_half():
    rng = random.Random(1)
    for n in list(range(0, 40)) + [100, 1000]:
        key = rng.randbytes(n)
        assert bloom_hash_py(key) == mmh3.hash64(key, BLOOM_SEED, signed=False)[0]


def test_no_false_negatives(big_table):
    reader, _, present, _ = big_table
    assert all(reader.py_may_contain(k) for k in present)
    for k in present[:500]:
        assert reader.py_get(k) == b"v"


def test_false_positive_rate(big_table):
    reader, _, _, absent = big_table
    fp = sum(1 for k in absent if reader.py_may_contain(k))
    rate = fp / len(absent)
    print(f"\nbloom 10 bits/key, {N} keys: false-positive rate {rate:.4%} ({fp}/{len(absent)})")
    assert rate <= 0.02
    # absent keys that pass the filter still read as missing
    for k in absent[:300]:
        assert reader.py_get(k) is None


def test_filter_layout_matches_format_doc(big_table):
    _, path, present, _ = big_table
    block = filter_block(path)
    assert len(block) == (N * 10 + 511) // 512 * 64 + 1
    assert block[-1] == 7                   # round(0.69 * 10)
    assert block == reference_filter(present, 10)


def test_one_hash_per_distinct_user_key(tmp_path):
    keys = [b"k%04d" % i for i in range(100)]
    reader = build(tmp_path / "000002.sst", keys, 10, versions=3)
    assert reader.properties["num_entries"] == 300
    block = filter_block(tmp_path / "000002.sst")
    assert len(block) == (100 * 10 + 511) // 512 * 64 + 1   # sized by distinct keys, not entries
    assert block == reference_filter(keys, 10)
    assert all(reader.py_may_contain(k) for k in keys)


@pytest.mark.parametrize("bits,k", [(1, 1), (2, 1), (5, 3), (10, 7), (20, 14), (50, 30)])
def test_probe_count_and_minimum_size(tmp_path, bits, k):
    keys = [b"a", b"b", b"c"]
    build(tmp_path / "000003.sst", keys, bits)
    block = filter_block(tmp_path / "000003.sst")
    assert block[-1] == k
    assert len(block) == (3 * bits + 511) // 512 * 64 + 1
    assert block == reference_filter(keys, bits)


def test_zero_bits_per_key_means_no_filter(tmp_path):
    rng = random.Random(3)
    present = sorted({rng.randbytes(8) for _ in range(2000)})
    reader = build(tmp_path / "000004.sst", present, 0)
    assert filter_block(tmp_path / "000004.sst") == b""
    absent = [rng.randbytes(9) for _ in range(2000)]
    assert all(reader.py_may_contain(k) for k in absent + present)
    assert reader.py_get(present[5]) == b"v"
    assert reader.py_get(absent[0]) is None


def test_empty_key_is_in_filter(tmp_path):
    reader = build(tmp_path / "000005.sst", [b"", b"x"], 10)
    assert reader.py_may_contain(b"")
    assert reader.py_get(b"") == b"v"


def test_bad_filter_parameters_are_corruption(tmp_path):
    path = tmp_path / "000006.sst"
    build(path, [b"a", b"b"], 10)
    data = bytearray(path.read_bytes())
    off, size = struct.unpack_from("<QQ", data, len(data) - 80 + 16)
    data[off + size - 1] = 0                         # k = 0, checksum recomputed
    data[off + size + 1:off + size + 5] = struct.pack("<I", crc32c_py(bytes(data[off:off + size + 1])))
    path.write_bytes(bytes(data))
    with pytest.raises(CorruptionError) as ei:
        TableReader(path, 6)
    assert ei.value.path == str(path) and ei.value.offset == off
