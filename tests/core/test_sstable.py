"""Sorted string tables: blocks, builder, reader, iterators, write_tables (lsmkv.core.table)."""
import bisect
import os
import random
import struct
import subprocess

from conftest import lsmkv_import_path, scan, scan_reverse
import sys

import pytest

from lsmkv.core.cache import LRUCache
from lsmkv.core.coding import crc32c_py, decode_varint
from lsmkv.core.memtable import MemTable, MemTableIterator
from lsmkv.core.iterator import MergingIterator
from lsmkv.core.table import (DELETED, BlockBuilder, TableBuilder, TableReader, block_entries,
                          make_tag_py, write_tables)
from lsmkv.errors import CorruptionError

DELETE, PUT, PUT_TTL, KIND_MAX = 0, 1, 2, 0xFF
MAX_SEQ = 0x00FFFFFFFFFFFFFF
FOOTER = 80
TRAILER = 5


def ikey(ukey, seq, kind):
    return ukey + make_tag_py(seq, kind).to_bytes(8, "little")


def order(e):
    """Internal-key order of an entry (ukey, seq, kind, ...): user key asc, tag desc."""
    return (e[0], -((e[1] << 8) | e[2]))


def make_entries(n_keys, seed, max_versions=4, value_size=(0, 60), ttl=True, key_prefix=b"key"):
    """Sorted model entries (ukey, seq, kind, value, expiry)."""
    rng = random.Random(seed)
    ukeys = sorted({key_prefix + b"%06d" % rng.randrange(10**6) for _ in range(n_keys)})
    seqs = iter(rng.sample(range(1, 10**7), len(ukeys) * max_versions))
    entries = []
    for k in ukeys:
        for _ in range(rng.randint(1, max_versions)):
            r = rng.random()
            kind = DELETE if r < 0.2 else (PUT_TTL if ttl and r < 0.35 else PUT)
            value = b"" if kind == DELETE else rng.randbytes(rng.randint(*value_size))
            expiry = rng.randint(1000, 2000) if kind == PUT_TTL else 0
            entries.append((k, next(seqs), kind, value, expiry))
    entries.sort(key=order)
    return entries


def value_region(e):
    return (e[4].to_bytes(8, "little") + e[3]) if e[2] == PUT_TTL else e[3]


def build_table(path, entries, block_size=256, compression="zstd", bits=10, restart=16):
    tb = TableBuilder(path, block_size, compression, 3, bits, restart)
    for e in entries:
        tb.py_add(ikey(e[0], e[1], e[2]), value_region(e))
    meta = tb.finish()
    return tb, meta


def model_get(entries, key, seq, now):
    for e in entries:                       # sorted: first match is the newest <= seq
        if e[0] == key and e[1] <= seq:
            if e[2] == PUT:
                return e[3]
            if e[2] == PUT_TTL:
                return DELETED if e[4] <= now else e[3]
            return DELETED
    return None


def layout(path):
    """Parse a table file: (footer handles, [(data block off, size)])."""
    data = open(path, "rb").read()
    h = struct.unpack("<8Q", data[-FOOTER:-FOOTER + 64])
    index = data[h[0]:h[0] + h[1]]          # index is never compressed
    blocks = []
    for _, v in block_entries(index):
        off, pos = decode_varint(v)
        size, _ = decode_varint(v, pos)
        blocks.append((off, size))
    return h, blocks


def flip(path, pos, mask=0x01):
    with open(path, "r+b") as fh:
        fh.seek(pos)
        b = fh.read(1)[0]
        fh.seek(pos)
        fh.write(bytes([b ^ mask]))


# ------------------------------------------------------------------ blocks

@pytest.mark.parametrize("restart", [1, 2, 16])
def test_block_builder_round_trip(restart):
    rng = random.Random(restart)
    keys = sorted({b"prefix/" + rng.randbytes(rng.randint(1, 12)) for _ in range(300)})
    pairs = [(ikey(k, i + 1, PUT), rng.randbytes(rng.randint(0, 30))) for i, k in enumerate(keys)]
    b = BlockBuilder(restart)
    for k, v in pairs:
        b.py_add(k, v)
    assert b.entries == len(pairs)
    blob = b.py_finish()
    nrestarts = struct.unpack("<I", blob[-4:])[0]
    assert nrestarts == (len(pairs) + restart - 1) // restart
    assert block_entries(blob) == pairs
    # the builder is reset by py_finish and reusable
    b.py_add(pairs[0][0], pairs[0][1])
    assert block_entries(b.py_finish()) == pairs[:1]


def test_empty_block():
    blob = BlockBuilder(16).py_finish()
    assert blob == bytes(4)                  # docs/format.md: just num_restarts = 0
    assert block_entries(blob) == []


def test_block_compressed_only_when_it_saves_an_eighth(tmp_path):
    rng = random.Random(12)
    compressible = [(b"c%04d" % i, i + 1, PUT, b"A" * 100, 0) for i in range(50)]
    random_vals = [(b"r%04d" % i, i + 1, PUT, rng.randbytes(100), 0) for i in range(50)]
    for name, entries, want in (("000030.sst", compressible, 1), ("000031.sst", random_vals, 0)):
        path = tmp_path / name
        build_table(path, entries, block_size=1024, compression="zstd")
        data = path.read_bytes()
        h, blocks = layout(path)
        assert {data[off + size] for off, size in blocks} == {want}
        assert scan(TableReader(path, 30).new_iterator()) == entries
    # compression 'none' never compresses
    path = tmp_path / "000032.sst"
    build_table(path, compressible, block_size=1024, compression="none")
    data = path.read_bytes()
    assert {data[off + size] for off, size in layout(path)[1]} == {0}


def test_block_entries_rejects_garbage():
    with pytest.raises(CorruptionError):
        block_entries(b"\x01\x02")
    with pytest.raises(CorruptionError):
        block_entries(b"\x00" * 4 + b"\xff\xff\x00\x00")       # restart count too large
    b = BlockBuilder(4)
    b.py_add(ikey(b"abc", 1, PUT), b"v")
    blob = bytearray(b.py_finish())
    blob[1] = 200                                              # non_shared runs past the block
    with pytest.raises(CorruptionError):
        block_entries(bytes(blob))


# ------------------------------------------------------------------ round trip

@pytest.mark.parametrize("compression", ["zstd", "none"])
def test_table_round_trip(tmp_path, compression):
    entries = make_entries(400, seed=1)
    path = tmp_path / "000005.sst"
    tb, meta = build_table(path, entries, block_size=256, compression=compression)
    assert meta["file_size"] == os.path.getsize(path) == tb.file_size
    r = TableReader(path, 5)
    assert r.path == str(path) and r.number == 5 and r.file_size == meta["file_size"]
    assert r.properties["num_data_blocks"] > 20            # many blocks
    assert r.properties["compression"] == compression
    assert r.verify() == len(entries)

    # iteration forward and backward yields exactly the entries
    it = r.new_iterator()
    assert scan(it) == entries
    assert scan_reverse(it) == entries[::-1]

    # point lookups with sequence and time semantics
    seqs_by_key = {}
    for e in entries:
        seqs_by_key.setdefault(e[0], []).append(e[1])
    for k, seqs in seqs_by_key.items():
        probes = {MAX_SEQ, min(seqs) - 1} | set(seqs) | {s + 1 for s in seqs}
        for seq in probes:
            for now in (0, 1500, 3000):
                got = r.py_get(k, seq, now)
                want = model_get(entries, k, seq, now)
                if want is DELETED or want is None:
                    assert got is want, (k, seq, now)
                else:
                    assert got == want, (k, seq, now)
    # missing keys
    for k in (b"", b"a", b"key", b"key0", b"zzz", entries[0][0] + b"\x00", entries[-1][0] + b"\x00"):
        assert r.py_get(k) is None
        assert r.py_get(k, 5, 10**9) is None
    r.close()


def test_deleted_sentinel_for_deletion_and_expired_ttl(tmp_path):
    path = tmp_path / "000001.sst"
    entries = sorted([
        (b"alive", 9, PUT_TTL, b"v-alive", 5000),
        (b"del", 8, DELETE, b"", 0),
        (b"del", 3, PUT, b"old", 0),
        (b"exp", 7, PUT_TTL, b"v-exp", 1000),
        (b"exp", 2, PUT, b"older", 0),
        (b"put", 6, PUT, b"v-put", 0),
    ], key=order)
    build_table(path, entries, compression="none")
    r = TableReader(path, 1)
    assert r.py_get(b"alive", now=4999) == b"v-alive"
    assert r.py_get(b"alive", now=5000) is DELETED
    assert r.py_get(b"del") is DELETED
    assert r.py_get(b"del", 7) == b"old"
    assert r.py_get(b"del", 2) is None
    assert r.py_get(b"exp", now=999) == b"v-exp"
    assert r.py_get(b"exp", now=1000) is DELETED
    assert r.py_get(b"exp", 6, now=10**9) == b"older"
    assert r.py_get(b"put") == b"v-put"
    assert r.py_get(b"put", 5) is None
    assert r.py_get(b"pu") is None and r.py_get(b"putt") is None
    p = r.properties
    assert p["num_entries"] == 6
    assert p["num_deletions"] == 1
    assert p["num_ttl_entries"] == 2
    assert p["min_expiry"] == 1000
    assert (p["smallest_seq"], p["largest_seq"]) == (2, 9)
    assert (p["smallest_key"], p["largest_key"]) == (b"alive", b"put")


def test_properties_and_builder_metadata(tmp_path):
    entries = make_entries(300, seed=2)
    path = tmp_path / "000002.sst"
    tb, meta = build_table(path, entries, block_size=512)
    r = TableReader(path, 2)
    p = r.properties
    seqs = [e[1] for e in entries]
    expiries = [e[4] for e in entries if e[2] == PUT_TTL]
    assert p["num_entries"] == meta["num_entries"] == len(entries)
    assert p["num_deletions"] == meta["num_deletions"] == sum(e[2] == DELETE for e in entries)
    assert p["num_ttl_entries"] == len(expiries)
    assert p["smallest_key"] == entries[0][0] and p["largest_key"] == entries[-1][0]
    assert meta["smallest"] == ikey(*entries[0][:3]) and meta["largest"] == ikey(*entries[-1][:3])
    assert p["smallest_seq"] == meta["smallest_seq"] == min(seqs)
    assert p["largest_seq"] == meta["largest_seq"] == max(seqs)
    assert p["min_expiry"] == meta["min_expiry"] == min(expiries)
    assert p["raw_key_bytes"] == sum(len(e[0]) + 8 for e in entries)
    assert p["raw_value_bytes"] == sum(len(value_region(e)) for e in entries)
    h, blocks = layout(path)
    assert p["num_data_blocks"] == len(blocks) == tb.num_data_blocks


def test_data_size_property_is_data_blocks_size(tmp_path):
    path = tmp_path / "000003.sst"
    tb, _ = build_table(path, make_entries(100, seed=3))
    h, blocks = layout(path)
    assert tb.data_size == h[2] == blocks[-1][0] + blocks[-1][1] + TRAILER
    assert TableReader(path, 3).properties["data_size"] == tb.data_size


def test_seek_lands_on_first_entry_ge_target(tmp_path):
    entries = make_entries(200, seed=4)
    path = tmp_path / "000004.sst"
    build_table(path, entries, block_size=200, compression="none", restart=4)
    r = TableReader(path, 4)
    it = r.new_iterator()
    keys = [order(e) for e in entries]
    rng = random.Random(4)
    targets = [(e[0], e[1], e[2]) for e in entries[::7]]
    targets += [(e[0], e[1] + 1, KIND_MAX) for e in entries[::5]]
    targets += [(e[0], max(e[1] - 1, 0), DELETE) for e in entries[::5]]
    targets += [(b"key%06d" % rng.randrange(10**6), rng.randrange(10**7), KIND_MAX) for _ in range(100)]
    targets += [(b"", 0, 0), (b"\xff", 0, 0), (entries[-1][0], 0, 0)]
    for uk, seq, kind in targets:
        it.py_seek(ikey(uk, seq, kind))
        i = bisect.bisect_left(keys, (uk, -((seq << 8) | kind)))
        if i == len(entries):
            assert not it.py_valid()
        else:
            assert it.py_entry() == entries[i]
            it.py_prev()
            assert it.py_entry() == (entries[i - 1] if i > 0 else None)
            it.py_next()
            if i > 0:
                assert it.py_entry() == entries[i]
    # seek then walk across block boundaries
    it.py_seek(ikey(entries[50][0], MAX_SEQ, KIND_MAX))
    walked = []
    while it.py_valid() and len(walked) < 60:
        walked.append(it.py_entry())
        it.py_next()
    start = min(i for i, e in enumerate(entries) if e[0] == entries[50][0])
    assert walked == entries[start:start + 60]


def test_reader_with_block_cache(tmp_path):
    entries = make_entries(300, seed=5, ttl=False)
    path = tmp_path / "000006.sst"
    build_table(path, entries, block_size=256)
    cache = LRUCache(1 << 20)
    r = TableReader(path, 6, cache)
    for _ in range(2):
        for e in entries[::3]:
            assert r.py_get(e[0], e[1]) == (e[3] if e[2] == PUT else DELETED)
    assert cache.hits > 0 and cache.misses > 0
    assert scan(r.new_iterator()) == entries
    assert cache.charge <= cache.capacity


def test_large_keys_and_values(tmp_path):
    rng = random.Random(6)
    entries = sorted([(b"k" * 5000 + b"%d" % i, i + 1, PUT, rng.randbytes(rng.choice([0, 10, 70000])), 0)
                      for i in range(20)], key=order)
    path = tmp_path / "000007.sst"
    build_table(path, entries, block_size=1024)
    r = TableReader(path, 7)
    assert r.verify() == 20
    for e in entries:
        assert r.py_get(e[0]) == e[3]
    assert scan_reverse(r.new_iterator()) == entries[::-1]


def test_empty_table_reads_back(tmp_path):
    """A table finished with no entries has an empty index block (num_restarts = 0)."""
    path = tmp_path / "000008.sst"
    meta = TableBuilder(path, 4096, "none", 3, 10).finish()
    assert meta["num_entries"] == 0
    r = TableReader(path, 8)
    assert r.properties["num_entries"] == 0
    assert r.py_get(b"x") is None
    assert scan(r.new_iterator()) == []
    assert r.verify() == 0


# ------------------------------------------------------------------ builder errors

def test_out_of_order_add_raises(tmp_path):
    tb = TableBuilder(tmp_path / "000009.sst", 4096, "none", 3, 10)
    tb.py_add(ikey(b"b", 5, PUT), b"1")
    with pytest.raises(ValueError):
        tb.py_add(ikey(b"a", 9, PUT), b"2")         # smaller user key
    with pytest.raises(ValueError):
        tb.py_add(ikey(b"b", 5, PUT), b"3")         # duplicate internal key
    with pytest.raises(ValueError):
        tb.py_add(ikey(b"b", 6, PUT), b"4")         # same user key, newer seq after older
    with pytest.raises(ValueError):
        tb.py_add(b"short", b"x")                    # shorter than a tag
    tb.py_add(ikey(b"b", 4, PUT), b"ok")
    tb.py_add(ikey(b"c", 9, PUT), b"ok2")
    tb.finish()
    r = TableReader(tmp_path / "000009.sst", 9)
    assert [e[:2] for e in scan(r.new_iterator())] == [(b"b", 5), (b"b", 4), (b"c", 9)]
    with pytest.raises(ValueError):
        tb.finish()


def test_builder_options_and_abandon(tmp_path):
    with pytest.raises(ValueError):
        TableBuilder(tmp_path / "000010.sst", 4096, "lz4", 3, 10)
    path = tmp_path / "000011.sst"
    tb = TableBuilder(path, 4096, "zstd", 3, 10)
    tb.py_add(ikey(b"a", 1, PUT), b"x")
    tb.abandon()
    assert not path.exists()
    path.write_bytes(b"existing")
    with pytest.raises(FileExistsError):
        TableBuilder(path, 4096, "zstd", 3, 10)
    assert path.read_bytes() == b"existing"


def test_ttl_entry_shorter_than_expiry_is_rejected(tmp_path):
    code = (
        "import sys\n"
        "from lsmkv.core.table import TableBuilder, make_tag_py\n"
        "tb = TableBuilder(sys.argv[1], 4096, 'none', 3, 10)\n"
        "try:\n"
        "    tb.py_add(b'k' + make_tag_py(1, 2).to_bytes(8, 'little'), b'')\n"
        "except ValueError:\n"
        "    sys.exit(0)\n"
        "sys.exit(3)\n"
    )
    # the child imports the same lsmkv as the tests (installed, or built in place)
    env = dict(os.environ, PYTHONPATH=lsmkv_import_path())
    proc = subprocess.run([sys.executable, "-c", code, str(tmp_path / "000012.sst")],
                          env=env, capture_output=True, timeout=60, cwd="/")
    assert proc.returncode == 0, (proc.returncode, proc.stderr[-500:])


# ------------------------------------------------------------------ corruption

def small_table(tmp_path, name="000020.sst", compression="none", n=40):
    entries = make_entries(n, seed=20, max_versions=2, value_size=(5, 20))
    path = tmp_path / name
    build_table(path, entries, block_size=200, compression=compression)
    return path, entries


def open_and_read_all(path, entries):
    r = TableReader(path, 20)
    r.verify()
    for e in entries:
        r.py_get(e[0], e[1])
    return r


@pytest.mark.parametrize("compression", ["none", "zstd"])
def test_every_single_byte_flip_is_detected(tmp_path, compression):
    path, entries = small_table(tmp_path, compression=compression)
    good = path.read_bytes()
    open_and_read_all(path, entries)
    h, blocks = layout(path)
    size = len(good)
    for pos in range(size):
        path.write_bytes(good)
        flip(path, pos, 0x20)
        with pytest.raises(CorruptionError) as ei:
            open_and_read_all(path, entries)
        err = ei.value
        assert err.path == str(path)
        assert isinstance(err.offset, int), (pos, err)
        assert 0 <= err.offset < size
        # the error names the damaged region
        block = next(((o, s) for o, s in blocks if o <= pos < o + s + TRAILER), None)
        if block is not None:
            assert err.offset == block[0], (pos, err)
        elif pos >= size - FOOTER:
            assert err.offset >= size - FOOTER, (pos, err)
        else:
            meta_blocks = [(h[0], h[1]), (h[2], h[3]), (h[4], h[5])]
            owner = next(o for o, s in meta_blocks if o <= pos < o + s + TRAILER)
            assert err.offset == owner, (pos, err)


def test_data_block_flip_opens_but_read_fails(tmp_path):
    path, entries = small_table(tmp_path, "000021.sst", compression="zstd", n=200)
    h, blocks = layout(path)
    off, size = blocks[len(blocks) // 2]
    flip(path, off + size // 2, 0xFF)
    r = TableReader(path, 21)                   # metadata blocks are intact
    with pytest.raises(CorruptionError) as ei:
        r.verify()
    assert ei.value.path == str(path) and ei.value.offset == off
    # keys outside the damaged block are still readable; keys inside it raise
    raised = 0
    for e in entries:
        try:
            r.py_get(e[0], e[1])
        except CorruptionError as exc:
            assert exc.offset == off
            raised += 1
    assert 0 < raised < len(entries)


def test_index_flip_fails_at_open(tmp_path):
    path, _ = small_table(tmp_path, "000022.sst")
    h, _ = layout(path)
    flip(path, h[0] + h[1] // 2)
    with pytest.raises(CorruptionError) as ei:
        TableReader(path, 22)
    assert ei.value.path == str(path) and ei.value.offset == h[0]


@pytest.mark.parametrize("where", ["handles", "version", "crc", "magic"])
def test_footer_flip_fails_at_open(tmp_path, where):
    path, _ = small_table(tmp_path, "000023.sst")
    size = os.path.getsize(path)
    pos = size - FOOTER + {"handles": 3, "version": 64, "crc": 69, "magic": 76}[where]
    flip(path, pos)
    with pytest.raises(CorruptionError) as ei:
        TableReader(path, 23)
    assert ei.value.path == str(path)
    assert isinstance(ei.value.offset, int) and size - FOOTER <= ei.value.offset < size


def test_malformed_index_entry_with_valid_checksum_names_index_offset(tmp_path):
    """A malformed index block (checksum recomputed) must be reported at the index's offset."""
    path, entries = small_table(tmp_path, "000024.sst")
    h, _ = layout(path)
    data = bytearray(path.read_bytes())
    data[h[0]] = 5                              # first entry: shared=5 with no previous key
    data[h[0] + h[1] + 1:h[0] + h[1] + 5] = struct.pack("<I", crc32c_py(bytes(data[h[0]:h[0] + h[1] + 1])))
    path.write_bytes(bytes(data))
    r = TableReader(path, 24)
    with pytest.raises(CorruptionError) as ei:
        r.py_get(entries[0][0])
    assert ei.value.path == str(path)
    assert ei.value.offset == h[0]


def test_malformed_data_entry_with_valid_checksum(tmp_path):
    path, entries = small_table(tmp_path, "000025.sst")
    h, blocks = layout(path)
    off, size = blocks[0]
    data = bytearray(path.read_bytes())
    data[off + 1] = 0x7F                        # non_shared runs past the block
    data[off + size + 1:off + size + 5] = struct.pack("<I", crc32c_py(bytes(data[off:off + size + 1])))
    path.write_bytes(bytes(data))
    r = TableReader(path, 25)
    with pytest.raises(CorruptionError) as ei:
        r.verify()
    assert ei.value.offset == off and ei.value.path == str(path)


@pytest.mark.parametrize("keep", [0, 10, 63, 64, 100, -64, -1])
def test_truncated_file_raises(tmp_path, keep):
    path, entries = small_table(tmp_path, "000026.sst")
    size = os.path.getsize(path)
    with open(path, "r+b") as fh:
        fh.truncate(keep if keep >= 0 else size + keep)
    with pytest.raises(CorruptionError) as ei:
        open_and_read_all(path, entries)
    assert ei.value.path == str(path)


def test_file_cut_in_the_middle_raises(tmp_path):
    """Footer intact but earlier bytes missing: block reads run past the end."""
    path, entries = small_table(tmp_path, "000027.sst")
    data = path.read_bytes()
    path.write_bytes(data[:200] + data[-FOOTER:])
    with pytest.raises(CorruptionError) as ei:
        open_and_read_all(path, entries)
    assert ei.value.path == str(path)


# ------------------------------------------------------------------ write_tables

class Outputs:
    def __init__(self, tmp_path, block_size=256, compression="none"):
        self.tmp_path = tmp_path
        self.number = 100
        self.block_size = block_size
        self.compression = compression
        self.builders = []

    def __call__(self):
        self.number += 1
        tb = TableBuilder(self.tmp_path / f"{self.number:06d}.sst", self.block_size, self.compression, 3, 10)
        self.builders.append(tb)
        return tb


def memtable_of(entries):
    m = MemTable(chunk_size=1 << 16)
    for k, seq, kind, value, expiry in entries:
        if kind == DELETE:
            m.delete(seq, k)
        else:
            m.put(seq, k, value, expiry)
    return m


def run_write_tables(tmp_path, entries, snapshot, bottommost, now, target=1 << 30, **kw):
    out = Outputs(tmp_path, **kw)
    stats = {}
    metas = write_tables(MemTableIterator(memtable_of(entries)), out, snapshot, bottommost, now, target, stats)
    tables = []
    for m in metas:
        assert m["builder"] in out.builders
        r = TableReader(m["path"], 0)
        tables.append(scan(r.new_iterator()))
        assert r.verify() == m["num_entries"] == len(tables[-1])
    return metas, tables, stats


def entries_of(tables):
    return [e for t in tables for e in t]


def by_user_key(entries):
    out = {}
    for e in sorted(entries, key=order):
        out.setdefault(e[0], []).append(e)
    return out


def visible(versions, seq, now):
    """Read semantics over one user key's versions (newest first)."""
    for e in versions:
        if e[1] <= seq:
            if e[2] == DELETE or (e[2] == PUT_TTL and e[4] <= now):
                return None
            return e[3]
    return None


def test_write_tables_scenarios(tmp_path):
    entries = [
        (b"a", 5, PUT, b"a5", 0), (b"a", 3, PUT, b"a3", 0), (b"a", 1, PUT, b"a1", 0),
        (b"d", 6, DELETE, b"", 0), (b"d", 2, PUT, b"d2", 0),
        (b"e", 7, PUT_TTL, b"e7", 100), (b"e", 4, PUT, b"e4", 0),
        (b"f", 8, PUT_TTL, b"f8", 300),
        (b"g", 12, DELETE, b"", 0), (b"g", 9, PUT, b"g9", 0), (b"g", 8, PUT, b"g8-hidden", 0),
    ]
    # no snapshot older than 10, not bottommost, now=200
    (tmp_path / "x").mkdir()
    metas, tables, stats = run_write_tables(tmp_path / "x", entries, 10, False, 200)
    got = [e[:4] for e in entries_of(tables)]
    assert got == [
        (b"a", 5, PUT, b"a5"),
        (b"d", 6, DELETE, b""),                 # deletion kept: older data may lie below
        (b"e", 7, DELETE, b""),                 # expired TTL became a deletion
        (b"f", 8, PUT_TTL, b"f8"),              # not expired: kept with its expiry
        (b"g", 12, DELETE, b""),                # newer than the snapshot
        (b"g", 9, PUT, b"g9"),                  # the version snapshot 10 sees
    ]
    assert entries_of(tables)[3][4] == 300
    assert stats["dropped_hidden"] == 5        # a3 a1 d2 e4 g8
    assert stats["dropped_deletes"] == 0
    assert stats["ttl_dropped"] == 1

    # bottommost: deletions (and expired entries) visible to every snapshot vanish, and
    # the version every snapshot sees is written with sequence 0
    (tmp_path / "y").mkdir()
    metas, tables, stats = run_write_tables(tmp_path / "y", entries, 10, True, 200)
    got = [e[:4] for e in entries_of(tables)]
    assert got == [
        (b"a", 0, PUT, b"a5"),
        (b"f", 0, PUT_TTL, b"f8"),
        (b"g", 12, DELETE, b""),                # seq 12 > snapshot 10: still needed
        (b"g", 0, PUT, b"g9"),
    ]
    assert entries_of(tables)[1][4] == 300     # the expiry stays
    assert stats["dropped_deletes"] == 2       # d@6 and the converted e@7

    # an old snapshot keeps the versions it can see; the one it sees of each key gets 0
    (tmp_path / "z").mkdir()
    metas, tables, stats = run_write_tables(tmp_path / "z", entries, 3, True, 200)
    got = [e[:2] for e in entries_of(tables)]
    assert got == [(b"a", 5), (b"a", 0), (b"d", 6), (b"d", 0), (b"e", 7), (b"e", 4), (b"f", 8),
                   (b"g", 12), (b"g", 9), (b"g", 8)]


@pytest.mark.parametrize("bottommost", [False, True])
@pytest.mark.parametrize("snapshot", [0, 50, 500, 10**8])
def test_write_tables_preserves_reads_at_and_after_snapshot(tmp_path, bottommost, snapshot):
    rng = random.Random(snapshot + bottommost)
    entries = []
    seqs = iter(rng.sample(range(1, 1000), 999))
    for i in range(60):
        k = b"k%03d" % i
        for _ in range(rng.randint(1, 6)):
            r = rng.random()
            s = next(seqs)
            if r < 0.25:
                entries.append((k, s, DELETE, b"", 0))
            elif r < 0.5:
                entries.append((k, s, PUT_TTL, b"t%d" % s, rng.choice([100, 300])))
            else:
                entries.append((k, s, PUT, b"p%d" % s, 0))
    now = 200
    metas, tables, stats = run_write_tables(tmp_path, entries, snapshot, bottommost, now)
    out = entries_of(tables)
    assert out == sorted(out, key=order)
    keys = sorted({e[0] for e in entries})
    read_seqs = sorted({s for s in range(snapshot, 1001, 37)} | {snapshot, MAX_SEQ} |
                       {e[1] for e in entries if e[1] >= snapshot})
    before, after = by_user_key(entries), by_user_key(out)
    for k in keys:
        for s in read_seqs:
            for t in (now, now + 1000):
                assert visible(after.get(k, []), s, t) == visible(before[k], s, t), (k, s, t)
    for k, vs in after.items():
        # at most one version visible to every snapshot survives
        assert sum(e[1] <= snapshot for e in vs) <= 1, vs
        # no expired TTL entries survive (they became deletions)
        assert not any(e[2] == PUT_TTL and e[4] <= now for e in vs)
        if bottommost:
            assert not any(e[2] == DELETE and e[1] <= snapshot for e in vs)
    total_in = len(entries)
    assert len(out) == total_in - stats["dropped_hidden"] - stats["dropped_deletes"]


def test_write_tables_splits_only_between_user_keys(tmp_path):
    rng = random.Random(30)
    entries = []
    seq = 1
    for i in range(300):
        nv = 40 if i % 50 == 7 else rng.randint(1, 3)       # a few keys with many versions
        for _ in range(nv):
            entries.append((b"user%04d" % i, seq, PUT, rng.randbytes(30), 0))
            seq += 1
    target = 2048
    metas, tables, stats = run_write_tables(tmp_path, entries, 0, False, 0, target=target, block_size=256)
    assert len(metas) > 5
    # nothing dropped: every version is newer than snapshot 0
    assert sorted(entries_of(tables), key=order) == sorted(entries, key=order)
    assert entries_of(tables) == sorted(entries, key=order)
    for i, (meta, t) in enumerate(zip(metas, tables)):
        assert meta["smallest"] == ikey(*t[0][:3]) and meta["largest"] == ikey(*t[-1][:3])
        assert meta["file_size"] == os.path.getsize(meta["path"])
        if i + 1 < len(metas):
            # cut only once the target is reached, and never inside a user key
            assert meta["file_size"] >= target
            assert t[-1][0] < tables[i + 1][0][0]
    for a, b in zip(tables, tables[1:]):
        assert {e[0] for e in a}.isdisjoint({e[0] for e in b})


def test_write_tables_empty_input_and_all_dropped(tmp_path):
    out = Outputs(tmp_path)
    assert write_tables(MemTableIterator(MemTable()), out, 10, True, 0, 1 << 20) == []
    assert out.builders == []
    entries = [(b"a", 1, DELETE, b"", 0), (b"b", 2, PUT_TTL, b"x", 5)]
    metas = write_tables(MemTableIterator(memtable_of(entries)), out, 10, True, 100, 1 << 20)
    assert metas == [] and out.builders == []


def test_write_tables_abandons_outputs_on_error(tmp_path):
    entries = [(b"k%04d" % i, i + 1, PUT, b"v" * 100, 0) for i in range(200)]
    made = []

    def new_table():
        if len(made) == 3:
            raise RuntimeError("disk full")
        tb = TableBuilder(tmp_path / f"{len(made) + 1:06d}.sst", 256, "none", 3, 10)
        made.append(tb)
        return tb

    with pytest.raises(RuntimeError):
        write_tables(MemTableIterator(memtable_of(entries)), new_table, 0, False, 0, 2048)
    assert len(made) == 3
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("compression", ["zstd", "none"])
@pytest.mark.parametrize("snapshot,bottommost", [(1 << 40, True), (150, False), (150, True)])
def test_memtable_path_writes_the_same_bytes_as_the_iterator_path(tmp_path, compression, snapshot, bottommost):
    """write_tables walks a memtable without the GIL and any other iterator with it;
    both must make the same decisions and byte-identical files (cuts included)."""
    entries = make_entries(400, seed=11, value_size=(0, 300))
    outs = {}
    for name, wrap in (("mem", lambda m: MemTableIterator(m)),
                       ("iter", lambda m: MergingIterator([MemTableIterator(m)]))):
        d = tmp_path / name
        d.mkdir()
        out = Outputs(d, block_size=512, compression=compression)
        stats = {}
        metas = write_tables(wrap(memtable_of(entries)), out, snapshot, bottommost, 250, 8192, stats)
        outs[name] = ([open(m["path"], "rb").read() for m in metas], stats)
    assert len(outs["mem"][0]) > 3, "the target size should cut several outputs"
    assert outs["mem"] == outs["iter"]


def test_fallback_compression_writes_tables_libzstd_reads(tmp_path):
    """Without libzstd (LSMKV_LIBZSTD=none) tables are compressed by python-zstandard,
    dictionary ones included; this process (libzstd loaded) reads them, and the
    reverse holds too."""
    from lsmkv.core.zstd import libzstd_info
    if not libzstd_info()["loaded"]:
        pytest.skip(f"needs libzstd in this process: {libzstd_info()['reason']}")
    code = """if 1:
        import sys, random
        sys.path.insert(0, sys.argv[1])
        from lsmkv.core.zstd import libzstd_info
        from lsmkv.core.table import TableBuilder, TableReader
        assert not libzstd_info()["loaded"] and "LSMKV_LIBZSTD" in libzstd_info()["reason"]
        d = sys.argv[2]
        for name, dict_bytes in (("000001.sst", 0), ("000002.sst", 1024)):
            tb = TableBuilder(d + "/" + name, 1024, "zstd", 3, 10, 16, dict_bytes)
            rng = random.Random(1)
            for i in range(5000):
                tb.py_add(b"k%06d" % i + (((i + 1) << 8) | 1).to_bytes(8, "little"),
                          b"value %d %s" % (i, rng.choice([b"red", b"green", b"blue"]) * 8))
            tb.finish()
        # and it reads what libzstd wrote
        t = TableReader(d + "/000003.sst", 3)
        assert t.verify() == 3000, t.verify()
    """
    tb = TableBuilder(str(tmp_path / "000003.sst"), 1024, "zstd", 3, 10, 16, 1024)
    for i in range(3000):
        tb.py_add(b"k%06d" % i + (((i + 1) << 8) | 1).to_bytes(8, "little"), b"x%d" % i * 10)
    tb.finish()
    env = dict(os.environ, LSMKV_LIBZSTD="none")
    r = subprocess.run([sys.executable, "-c", code, lsmkv_import_path(), str(tmp_path)], cwd="/",
                       env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    rng = random.Random(1)
    want = [b"value %d %s" % (i, rng.choice([b"red", b"green", b"blue"]) * 8) for i in range(5000)]
    for number in (1, 2):
        t = TableReader(str(tmp_path / f"{number:06d}.sst"), number)
        assert t.verify() == 5000
        assert [t.py_get(b"k%06d" % i) for i in range(0, 5000, 7)] == want[::7]
        h, blocks = layout(tmp_path / f"{number:06d}.sst")
        data = open(tmp_path / f"{number:06d}.sst", "rb").read()
        assert {data[off + size] for off, size in blocks} - {0} == ({2} if number == 2 else {1})


def test_unloadable_libzstd_is_reported(tmp_path):
    code = """if 1:
        import sys
        sys.path.insert(0, sys.argv[1])
        from lsmkv.core.zstd import libzstd_info
        i = libzstd_info()
        assert not i["loaded"] and "no-such-libzstd.so" in i["reason"], i
        import lsmkv
        with lsmkv.DB(sys.argv[2]) as db:
            db.put(b"a", b"b" * 1000)
            db.flush()
            assert db.get(b"a") == b"b" * 1000
    """
    env = dict(os.environ, LSMKV_LIBZSTD="no-such-libzstd.so")
    r = subprocess.run([sys.executable, "-c", code, lsmkv_import_path(), str(tmp_path / "db")], cwd="/",
                       env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr


# ------------------------------------------------------------------ zstd dictionary

def _dict_table(tmp_path, n=6000, dict_bytes=1024, name="000090.sst"):
    path = tmp_path / name
    tb = TableBuilder(str(path), 1024, "zstd", -1, 10, 16, dict_bytes)
    rng = random.Random(5)
    rows = []
    for i in range(n):
        k = b"user:%08d" % i
        # records with shared structure, as real values have: what a dictionary captures
        v = b'{"id": %d, "name": "user-%s", "plan": "%s", "active": true}' % (
            i, rng.randbytes(3).hex().encode(), rng.choice([b"free", b"team", b"enterprise"]))
        tb.py_add(k + (((i + 1) << 8) | 1).to_bytes(8, "little"), v)
        rows.append((k, v))
    meta = tb.finish()
    return path, rows, meta


def test_dictionary_tables_round_trip_and_use_block_type_2(tmp_path):
    path, rows, meta = _dict_table(tmp_path)
    h, blocks = layout(path)
    assert h[7] > 0, "a dictionary block is written"
    data = open(path, "rb").read()
    types = {data[off + size] for off, size in blocks}
    assert types <= {0, 2} and 2 in types
    t = TableReader(str(path), 90)
    for k, v in rows[::37]:
        assert t.py_get(k) == v
    assert t.verify() == len(rows)
    plain = TableBuilder(str(tmp_path / "000091.sst"), 1024, "zstd", -1, 10, 16, 0)
    for i, (k, v) in enumerate(rows):
        plain.py_add(k + (((i + 1) << 8) | 1).to_bytes(8, "little"), v)
    assert meta["file_size"] < plain.finish()["file_size"], "the dictionary should pay for itself"


def test_too_little_data_for_a_dictionary_falls_back(tmp_path):
    path, rows, _ = _dict_table(tmp_path, n=30, name="000092.sst")
    h, blocks = layout(path)
    assert h[6] == h[7] == 0
    t = TableReader(str(path), 92)
    assert [t.py_get(k) for k, _ in rows] == [v for _, v in rows]


def test_damaged_dictionary_block_is_corruption(tmp_path):
    path, _, _ = _dict_table(tmp_path, name="000093.sst")
    h, _ = layout(path)
    flip(path, h[6] + 20)
    with pytest.raises(CorruptionError) as ei:
        TableReader(str(path), 93)
    assert ei.value.offset == h[6]


def test_verify_names_the_block_where_keys_go_out_of_order(tmp_path):
    """A block whose checksum is right but whose keys are out of order (a bug, or a
    matching-CRC damage): verify() names that data block."""
    path = tmp_path / "000095.sst"
    tb = TableBuilder(str(path), 256, "none", 0, 10, 1, 0)   # restart interval 1: whole keys
    for i in range(100):
        tb.py_add(b"k%03d" % i + (((i + 1) << 8) | 1).to_bytes(8, "little"), b"v" * 20)
    tb.finish()
    _, blocks = layout(path)
    data = bytearray(open(path, "rb").read())
    hit = [(off, size) for off, size in blocks if b"k060" in data[off:off + size]]
    assert len(hit) == 1 and hit[0][0] > 0
    off, size = hit[0]
    pos = data.index(b"k060", off)
    data[pos:pos + 4] = b"k010"                              # now sorts before its neighbours
    data[off + size + 1:off + size + 5] = struct.pack("<I", crc32c_py(bytes(data[off:off + size + 1])))
    open(path, "wb").write(bytes(data))
    t = TableReader(str(path), 95)
    with pytest.raises(CorruptionError, match="out of order") as e:
        t.verify()
    assert e.value.offset == off, (e.value.offset, off)
