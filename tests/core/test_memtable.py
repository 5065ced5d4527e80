"""Arena-backed skiplist memtable (lsmkv.core.memtable)."""
import random

import pytest

from conftest import scan as _scan, scan_reverse as _scan_reverse
from hypothesis import given, settings, strategies as st

from lsmkv.core.memtable import Arena, MemTable

DELETE, PUT, PUT_TTL, KIND_MAX = 0, 1, 2, 0xFF
PTR = 8                       # sizeof(char*) / sizeof(Node*) on the 64-bit build
NODE_BASE = 24                # klen, vlen, height, _pad, back
HEAD_SIZE = NODE_BASE + 12 * PTR
TBL = 2 * PTR                 # chunk table entry: the chunk's address and its mapped length
PAGE = 4096                   # chunks are anonymous mappings: whole pages


def pages(n):
    return (n + PAGE - 1) // PAGE * PAGE


def align8(n):
    return (n + 7) & ~7


def ikey(ukey, seq, kind):
    return ukey + ((seq << 8) | kind).to_bytes(8, "little")


def scan(mem):
    return _scan(mem.iterator())


def scan_reverse(mem):
    return _scan_reverse(mem.iterator())


class Model:
    """Python model of a memtable: list of (ukey, seq, kind, value, expiry)."""

    def __init__(self):
        self.entries = []

    def put(self, mem, seq, key, value, expiry=0):
        mem.put(seq, key, value, expiry)
        self.entries.append((key, seq, PUT_TTL if expiry else PUT, value, expiry))

    def delete(self, mem, seq, key):
        mem.delete(seq, key)
        self.entries.append((key, seq, DELETE, b"", 0))

    def ordered(self):
        return sorted(self.entries, key=lambda e: (e[0], -((e[1] << 8) | e[2])))

    def get(self, key, seq):
        best = None
        for e in self.entries:
            if e[0] == key and e[1] <= seq and (best is None or e[1] > best[1]):
                best = e
        return None if best is None else (best[2], best[3], best[4])


def cap_for(nchunks):
    cap = 0
    while cap < nchunks:
        cap = cap * 2 + 8
    return cap


# ------------------------------------------------------------------ ordering and lookups

def test_empty_memtable():
    m = MemTable()
    assert len(m) == 0 and m.entries == 0
    assert m.get(b"x") is None
    assert m.get(b"") is None
    assert scan(m) == [] and scan_reverse(m) == []
    it = m.iterator()
    it.py_seek(ikey(b"a", 5, KIND_MAX))
    assert not it.py_valid() and it.py_entry() is None
    assert m.check()


def test_many_versions_order_and_get():
    rng = random.Random(1)
    m = MemTable(chunk_size=4096)
    model = Model()
    keys = [b"k%03d" % i for i in range(40)] + [b"", b"k", b"k0\x00", b"\xff" * 3]
    seqs = list(range(1, 2001))
    rng.shuffle(seqs)                       # insertion order must not matter
    for seq in seqs:
        k = rng.choice(keys)
        r = rng.random()
        if r < 0.2:
            model.delete(m, seq, k)
        elif r < 0.35:
            model.put(m, seq, k, rng.randbytes(rng.randrange(0, 30)), expiry=rng.randrange(1, 10**12))
        else:
            model.put(m, seq, k, rng.randbytes(rng.randrange(0, 30)))
    expected = model.ordered()
    assert scan(m) == expected
    assert scan_reverse(m) == expected[::-1]
    assert len(m) == 2000
    assert m.first_seq == 1 and m.last_seq == 2000
    ttl = [e[4] for e in model.entries if e[2] == PUT_TTL]
    assert m.min_expiry == min(ttl)
    assert m.check()
    for k in keys + [b"absent", b"k000\x00", b"j"]:
        for seq in [0, 1, 2, 17, 500, 999, 1000, 1001, 1999, 2000, 2001, 2**56 - 1]:
            assert m.get(k, seq) == model.get(k, seq), (k, seq)
        assert m.get(k) == model.get(k, 2**56 - 1)


def test_get_newest_version_at_or_below_seq():
    m = MemTable()
    m.put(10, b"a", b"v10")
    m.delete(20, b"a")
    m.put(30, b"a", b"v30", expiry=12345)
    m.put(40, b"a", b"v40")
    m.put(15, b"b", b"b15")
    assert m.get(b"a", 9) is None
    assert m.get(b"a", 10) == (PUT, b"v10", 0)
    assert m.get(b"a", 19) == (PUT, b"v10", 0)
    assert m.get(b"a", 20) == (DELETE, b"", 0)
    assert m.get(b"a", 29) == (DELETE, b"", 0)
    assert m.get(b"a", 30) == (PUT_TTL, b"v30", 12345)
    assert m.get(b"a", 40) == (PUT, b"v40", 0)
    assert m.get(b"a") == (PUT, b"v40", 0)
    assert m.get(b"b", 14) is None
    assert m.get(b"b", 15) == (PUT, b"b15", 0)
    # a user key that is a prefix / extension of another must not match
    assert m.get(b"", 100) is None
    assert m.get(b"a\x00", 100) is None
    assert m.get(b"ab", 100) is None


def test_same_seq_different_kind_ordered_by_tag():
    m = MemTable()
    m.put(5, b"k", b"put")
    m.delete(5, b"k")
    m.put(5, b"k", b"ttl", expiry=99)
    got = [(e[1], e[2]) for e in scan(m)]
    assert got == [(5, PUT_TTL), (5, PUT), (5, DELETE)]
    assert m.check()


def test_seek_lands_on_first_entry_ge_target():
    rng = random.Random(5)
    m = MemTable(chunk_size=4096)
    model = Model()
    for seq in range(1, 400):
        model.put(m, seq, b"key%02d" % rng.randrange(30), b"v%d" % seq)
    ordered = model.ordered()
    tags = [ikey(e[0], e[1], e[2]) for e in ordered]
    it = m.iterator()

    def sort_key(ik):
        return (ik[:-8], -int.from_bytes(ik[-8:], "little"))

    targets = [ikey(b"key%02d" % i, s, k) for i in range(-1, 32, 3) for s in (0, 50, 200, 1000)
               for k in (0, KIND_MAX)] + tags[::17] + [ikey(b"", 0, 0), ikey(b"\xff", 0, 0)]
    for t in targets:
        it.py_seek(t)
        idx = next((i for i, x in enumerate(tags) if sort_key(x) >= sort_key(t)), None)
        if idx is None:
            assert not it.py_valid()
        else:
            assert it.py_entry() == ordered[idx], t
            # walking on from a seek continues in order
            it.py_next()
            assert it.py_entry() == (ordered[idx + 1] if idx + 1 < len(ordered) else None)
            it.py_seek(t)
            it.py_prev()
            assert it.py_entry() == (ordered[idx - 1] if idx > 0 else None)


def test_check_after_many_random_inserts():
    rng = random.Random(11)
    m = MemTable(chunk_size=8192)
    n = 5000
    seqs = rng.sample(range(1, 10**9), n)
    for i, seq in enumerate(seqs):
        m.put(seq, rng.randbytes(rng.randrange(0, 12)), b"x" * rng.randrange(0, 8))
        if i % 1000 == 0:
            assert m.check()
    assert m.check()
    assert len(m) == n
    entries = scan(m)
    assert len(entries) == n
    keys = [(e[0], -e[1]) for e in entries]
    assert keys == sorted(keys)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.sampled_from([b"", b"a", b"ab", b"b", b"\x00", b"zz" * 40]),
                          st.sampled_from(["put", "del", "ttl"]),
                          st.binary(max_size=20),
                          st.integers(1, 2**40)),
                max_size=60),
       st.randoms(use_true_random=False))
def test_memtable_matches_model(ops, rnd):
    seqs = rnd.sample(range(1, 10**6), len(ops))
    m = MemTable(chunk_size=4096)
    model = Model()
    for (k, op, v, exp), seq in zip(ops, seqs):
        if op == "put":
            model.put(m, seq, k, v)
        elif op == "del":
            model.delete(m, seq, k)
        else:
            model.put(m, seq, k, v, expiry=exp)
    expected = model.ordered()
    assert scan(m) == expected
    assert scan_reverse(m) == expected[::-1]
    assert m.check()
    for k in [b"", b"a", b"ab", b"b", b"\x00", b"zz" * 40, b"c"]:
        for seq in [0] + seqs:
            assert m.get(k, seq) == model.get(k, seq)


# ------------------------------------------------------------------ large keys and values

def test_empty_key():
    m = MemTable()
    m.put(1, b"", b"empty")
    m.put(2, b"\x00", b"nul")
    m.delete(3, b"")
    assert m.get(b"", 1) == (PUT, b"empty", 0)
    assert m.get(b"", 3) == (DELETE, b"", 0)
    assert m.get(b"\x00") == (PUT, b"nul", 0)
    assert [(e[0], e[1]) for e in scan(m)] == [(b"", 3), (b"", 1), (b"\x00", 2)]
    assert m.check()


@pytest.mark.parametrize("klen", [55, 56, 57, 64 * 1024])
def test_long_keys(klen):
    """Keys around the 64-byte on-stack lookup buffer boundary and a 64 KiB key."""
    rng = random.Random(klen)
    m = MemTable(chunk_size=64 * 1024)
    big = rng.randbytes(klen)
    other = big[:-1] + bytes([(big[-1] + 1) % 256])
    m.put(1, big, b"v1")
    m.put(2, other, b"v2")
    m.put(3, big, b"v3")
    m.put(4, big[:-1], b"short")
    assert m.get(big, 2) == (PUT, b"v1", 0)
    assert m.get(big) == (PUT, b"v3", 0)
    assert m.get(other) == (PUT, b"v2", 0)
    assert m.get(big[:-1]) == (PUT, b"short", 0)
    assert m.get(big + b"\x00") is None
    assert m.check()
    expected = sorted([(big, 3), (big, 1), (other, 2), (big[:-1], 4)], key=lambda e: (e[0], -e[1]))
    assert [(e[0], e[1]) for e in scan(m)] == expected
    it = m.iterator()
    it.py_seek(ikey(big, 2, KIND_MAX))
    assert it.py_entry()[:2] == (big, 1)


def test_point_index_answers_as_the_skiplist_across_growth_and_old_versions():
    """Gets go through the point index (a key's newest node, then at most a few
    older versions, then the skiplist): across the index's doublings, for keys of
    many versions read at every sequence, for absent keys, empty and long keys."""
    rng = random.Random(7)
    m = MemTable(chunk_size=4096)
    versions = {}                             # key -> [(seq, expected get)], seq ascending

    def expect(k, s):
        best = None
        for vs, r in versions.get(k, ()):
            if vs <= s:
                best = r
        return best

    keys = [b"", b"\x00", b"x" * 100] + [b"k%05d" % i for i in range(3000)]
    seq = 0
    for k in rng.sample(keys, len(keys)):     # every key once, in random order
        seq += 1
        m.put(seq, k, b"first")
        versions[k] = [(seq, (PUT, b"first", 0))]
    assert not m.index_on and m.index_bytes == 0      # written, never read or overwritten: no index
    for i in range(1000):
        seq += 1
        k = rng.choice(keys)
        if rng.random() < 0.2:
            m.delete(seq, k)
            versions.setdefault(k, []).append((seq, (DELETE, b"", 0)))
        else:
            v = rng.randbytes(rng.randrange(12))
            m.put(seq, k, v)
            versions.setdefault(k, []).append((seq, (PUT, v, 0)))
    hot = b"hot"
    for _ in range(40):                       # more versions than the index steps over
        seq += 1
        m.put(seq, hot, b"%d" % seq)
        versions.setdefault(hot, []).append((seq, (PUT, b"%d" % seq, 0)))
    assert not m.index_on                     # 1000 overwrites of 4003 entries: not yet

    def check_reads():
        for k in keys + [hot, b"absent", b"k9", b"x" * 99]:
            for s in (0, 1, seq // 3, seq // 2, seq, seq + 5):
                assert m.get(k, s) == expect(k, s), (k, s)
        for s in range(seq - 45, seq + 1):    # every version of the hot key
            assert m.get(hot, s) == expect(hot, s), s

    check_reads()                             # its reads build the index (after 1/8 of the entries)
    assert m.index_on and m.index_keys == len(versions)
    assert m.index_bytes >= len(versions) * 8 * 4 // 3
    assert m.check()
    for i in range(6000):                     # kept by every put from then on, growing
        seq += 1
        k = b"n%05d" % rng.randrange(4000) if i % 2 else rng.choice(keys)
        v = rng.randbytes(rng.randrange(12))
        m.put(seq, k, v)
        versions.setdefault(k, []).append((seq, (PUT, v, 0)))
    assert m.index_keys == len(versions) and m.check()
    check_reads()
    for k in (b"n%05d" % i for i in range(4000)):
        assert m.get(k, seq) == expect(k, seq)


def test_overwrites_build_the_point_index_and_link_without_a_search():
    """A memtable whose adds are mostly of keys it holds (a server's SETs) builds its
    point index without any read; from then on an overwrite is linked right before
    the key's newest node (its back pointer; upper levels by walking back pointers),
    and the list (every level exactly the nodes taller than it), the back pointers,
    the index and every version read at every sequence stay right."""
    rng = random.Random(11)
    m = MemTable(chunk_size=4096)
    keys = [b"key:%06d" % i for i in range(500)] + [b""]
    versions = {}
    seq = 0
    for i in range(4000):
        seq += 1
        k = rng.choice(keys)
        if i % 500 == 0:
            assert m.check()
        if i % 7 == 3:
            m.delete(seq, k)
            versions.setdefault(k, []).append((seq, (DELETE, b"", 0)))
        elif i % 11 == 5:
            m.put(seq, k, b"t%d" % seq, expiry=10 ** 12 + seq)
            versions.setdefault(k, []).append((seq, (PUT_TTL, b"t%d" % seq, 10 ** 12 + seq)))
        else:
            m.put(seq, k, b"%d" % seq)
            versions.setdefault(k, []).append((seq, (PUT, b"%d" % seq, 0)))
        if i == 200:
            assert not m.index_on                 # few overwrites yet
    assert m.index_on and m.index_keys == len(versions)
    assert m.check()                              # order, back pointers, index
    for k, vs in versions.items():
        for s, want in vs:
            assert m.get(k, s) == want, (k, s)
        assert m.get(k, vs[0][0] - 1) is None
    expected = sorted(((k, s) for k, vs in versions.items() for s, _ in vs), key=lambda e: (e[0], -e[1]))
    got = [(e[0], e[1]) for e in scan(m)]
    assert got == expected
    assert [(e[0], e[1]) for e in scan_reverse(m)] == expected[::-1]     # prev() by back pointers


def test_point_index_build_is_spread_over_lookups_and_adds():
    """A build walks the list a step per lookup or add, so no single call pays for
    the whole memtable; adds during the build, behind and ahead of where it stands,
    end up in the index, and every read in between is right."""
    rng = random.Random(13)
    m = MemTable(chunk_size=1 << 16)
    latest = {}
    seq = 0
    for k in rng.sample(range(10 ** 9), 20000):
        seq += 1
        key = b"%010d" % k
        m.put(seq, key, b"a%d" % seq)
        latest[key] = b"a%d" % seq
    keys = sorted(latest)
    steps = 0
    building = None                           # lookups since the build started
    while not m.index_on:
        steps += 1
        if building is None and m.index_bytes:
            building = 0
        if building is not None:
            building += 1
            # a step is 128 nodes: a couple of hundred calls walk ~21k entries
            assert building < len(latest) // 128 + 10, "the build did not progress"
        assert steps < 10000, "the build never started"
        k = rng.choice(keys)
        assert m.get(k)[1] == latest[k]
        if steps % 3 == 0:                    # adds anywhere in the key order while it builds
            seq += 1
            nk = rng.choice(keys) if steps % 2 else b"%010d" % rng.randrange(10 ** 9)
            m.put(seq, nk, b"b%d" % seq)
            latest[nk] = b"b%d" % seq
            if nk not in keys:
                keys.append(nk)
    assert steps > 20000 // 8 and building > 10   # the threshold first, then more than one call builds
    assert m.index_keys == len(latest) and m.check()
    for k, v in latest.items():
        assert m.get(k)[1] == v


def test_ten_mib_value():
    m = MemTable(chunk_size=1 << 20)
    value = random.Random(2).randbytes(10 << 20)
    before_alloc, before_used = m.memory_usage, m.arena_used
    m.put(1, b"big", value)
    m.put(2, b"big2", value, expiry=777)
    assert m.get(b"big") == (PUT, value, 0)
    assert m.get(b"big2") == (PUT_TTL, value, 777)
    entries = scan(m)
    assert entries[0][3] == value and entries[1][3] == value
    assert m.memory_usage - before_alloc >= 2 * (10 << 20)
    # both went into chunks of their own (mappings: each rounded up to whole pages)
    extra = (m.memory_usage - before_alloc) - (m.arena_used - before_used) - m.index_bytes
    assert 0 <= extra < 2 * 4096
    assert m.index_bytes == 0                # two gets do not build a point index
    assert m.check()


# ------------------------------------------------------------------ arena accounting

def test_arena_basic_accounting():
    with pytest.raises(ValueError):
        Arena(4095)
    a = Arena(4096)
    assert (a.allocated, a.used, a.chunk_size) == (0, 0, 4096)
    p1 = a.alloc(1)                          # rounded up to 8, first chunk + pointer table
    assert p1 % 8 == 0
    assert (a.allocated, a.used) == (4096 + 8 * TBL, 8)
    p2 = a.alloc(2000)                       # > chunk/4 but fits the current chunk
    assert p2 == p1 + 8
    assert (a.allocated, a.used) == (4096 + 8 * TBL, 2008)
    p3 = a.alloc(3000)                       # > chunk/4 and does not fit: a chunk of its own
    assert (a.allocated, a.used) == (4096 + 8 * TBL + pages(3000), 5008)
    p4 = a.alloc(100)                        # back to the first chunk's tail (not wasted)
    assert p4 == p2 + 2000
    assert (a.allocated, a.used) == (4096 + 8 * TBL + pages(3000), 5112)
    assert not (p3 <= p4 < p3 + 3000)
    a.alloc(1900)                            # fits exactly what is left? 4096-2112=1984 -> fits
    assert a.allocated == 4096 + 8 * TBL + pages(3000)
    a.alloc(1000)                            # small, does not fit 84 bytes left: a new chunk
    assert a.allocated == 2 * 4096 + 8 * TBL + pages(3000)
    assert a.used == 5112 + 1904 + 1000
    assert a.used <= a.allocated


def test_arena_chunk_table_growth_is_counted():
    a = Arena(4096)
    for i in range(8 * 4):
        a.alloc(1024)                        # exactly a quarter chunk: 4 fill one chunk
    assert a.allocated == 8 * 4096 + 8 * TBL
    a.alloc(1024)                            # ninth chunk: pointer table 8 -> 24
    assert a.allocated == 9 * 4096 + 24 * TBL
    for i in range(3 + 16 * 4):
        a.alloc(1024)
    assert a.allocated == 25 * 4096 + 56 * TBL
    assert a.used == 25 * 4096
    a.alloc(4000)                            # own chunk of its size, in whole pages
    assert a.allocated == 25 * 4096 + pages(4000) + 56 * TBL


MiB = 1 << 20
HUGE = 2 * MiB                # a transparent huge page: the arena's chunks past its first MiB


def test_arena_chunks_turn_huge_after_the_first_mebibyte():
    a = Arena()                              # 1 MiB chunks
    for _ in range(4):
        a.alloc(MiB // 4)                    # exactly a quarter chunk: four fill the first
    assert a.allocated == MiB + 8 * TBL
    p = a.alloc(8)                           # the next chunk is a huge page, aligned to one
    assert p % HUGE == 0
    assert a.allocated == MiB + HUGE + 8 * TBL
    for _ in range(7):
        a.alloc(MiB // 4)
    a.alloc(MiB // 4 - 8)                    # fills the huge chunk to its last byte
    assert a.allocated == MiB + HUGE + 8 * TBL
    q = a.alloc(16)
    assert q % HUGE == 0 and q != p
    assert a.allocated == MiB + 2 * HUGE + 8 * TBL
    big = a.alloc(MiB)                       # fits the huge chunk's tail
    assert big == q + 16 and a.allocated == MiB + 2 * HUGE + 8 * TBL
    own = a.alloc(MiB)                       # does not fit, over a quarter chunk: a chunk of its own
    assert own % PAGE == 0 and a.allocated == 2 * MiB + 2 * HUGE + 8 * TBL
    assert a.alloc(8) == big + MiB           # the huge chunk's tail is still used


def test_memtable_resident_bytes_counts_a_huge_chunk_whole():
    m = MemTable()
    assert m.resident_bytes < 2 * PAGE + 8 * TBL       # an empty memtable: one page touched
    assert m.index_bytes == 0                          # and no point index yet
    seq, value = 0, b"v" * 200
    while m.memory_usage < 2 * MiB:                    # fill past the first chunk
        seq += 1
        m.put(seq, b"k%08d" % seq, value)
    assert m.memory_usage == MiB + HUGE + 8 * TBL + m.index_bytes
    assert m.resident_bytes == m.memory_usage          # the huge chunk is resident as a whole
    assert m.get(b"k%08d" % 1)[1] == value and m.get(b"k%08d" % seq)[1] == value
    assert m.check()


def _thp_mode():
    try:
        with open("/sys/kernel/mm/transparent_hugepage/enabled") as f:
            return f.read().split("[")[1].split("]")[0]
    except (OSError, IndexError):
        return None


def _vmstat(name):
    with open("/proc/vmstat") as f:
        for line in f:
            k, v = line.split()
            if k == name:
                return int(v)
    return 0


def _anon_huge_kb(addr):
    """AnonHugePages of the mapping that holds addr, from /proc/self/smaps."""
    inside = False
    with open("/proc/self/smaps") as f:
        for line in f:
            head = line.split()[0]
            if "-" in head and not head.endswith(":"):
                lo, hi = (int(x, 16) for x in head.split("-"))
                inside = lo <= addr < hi
            elif inside and head == "AnonHugePages:":
                return int(line.split()[1])
    raise AssertionError(f"no mapping holds {addr:#x}")


@pytest.mark.skipif(_thp_mode() not in ("madvise", "always"),
                    reason="transparent huge pages are off on this machine")
def test_arena_huge_chunk_is_backed_by_a_huge_page():
    import ctypes
    a = Arena()
    for _ in range(4):
        a.alloc(MiB // 4)
    fallbacks = _vmstat("thp_fault_fallback")
    p = a.alloc(8)
    assert p % HUGE == 0
    ctypes.memset(p, 1, 4096)                # first touch: the kernel faults the chunk in
    kb = _anon_huge_kb(p)
    if kb == 0 and _vmstat("thp_fault_fallback") > fallbacks:
        pytest.skip("the kernel had no free huge page (thp_fault_fallback)")
    assert kb >= HUGE // 1024


def test_memtable_memory_usage_grows_in_chunk_steps():
    chunk = 4096
    rng = random.Random(4)
    m = MemTable(chunk_size=chunk)
    assert m.memory_usage == chunk + 8 * TBL
    assert m.arena_used == HEAD_SIZE
    heights = []
    prev_usage = m.memory_usage
    for seq in range(1, 3001):
        key = b"key%06d" % rng.randrange(10**6)
        value = rng.randbytes(rng.randrange(0, 40))
        used0 = m.arena_used
        m.put(seq, key, value)
        node = m.arena_used - used0
        # node = header + height pointers + key + tag + value, 8-aligned
        extra = node - NODE_BASE - align8(len(key) + 8 + len(value))
        assert extra % PTR == 0 and 1 <= extra // PTR <= 12, node
        heights.append(extra // PTR)
        usage = m.memory_usage - m.index_bytes           # the arena's part
        nchunks = usage // chunk
        assert usage == nchunks * chunk + cap_for(nchunks) * TBL
        assert usage - prev_usage in (0, chunk, chunk + (cap_for(nchunks) - cap_for(nchunks - 1)) * TBL)
        assert m.arena_used <= usage
        prev_usage = usage
        # the point index: a power of two of 8-byte slots, at most 3/4 full
        assert m.index_keys * 4 <= m.index_bytes // 8 * 3 < m.index_keys * 8 + 512 * 8
    assert m.memory_usage > 20 * chunk
    # branching factor 4: about 3/4 of the nodes have height 1
    frac1 = heights.count(1) / len(heights)
    assert 0.65 < frac1 < 0.85, frac1
    assert max(heights) >= 3
    assert m.check()


def test_memtable_big_value_gets_own_chunk_counted_exactly():
    chunk = 64 * 1024
    m = MemTable(chunk_size=chunk)
    m.put(1, b"small", b"s" * 10)
    usage0, used0 = m.memory_usage, m.arena_used
    value = b"V" * (100 * 1024)              # > chunk/4 and bigger than what is left
    m.put(2, b"big", value)
    d_usage = m.memory_usage - usage0
    d_used = m.arena_used - used0
    assert d_usage == pages(d_used)
    extra = d_used - NODE_BASE - align8(3 + 8 + len(value))
    assert extra % PTR == 0 and 1 <= extra // PTR <= 12
    # small inserts keep going into the first chunk's tail
    usage1 = m.memory_usage
    for seq in range(3, 50):
        m.put(seq, b"s%d" % seq, b"x" * 20)
    assert m.memory_usage == usage1
    assert m.get(b"big") == (PUT, value, 0)
    # a TTL value's region includes the 8-byte expiry
    usage2, used2 = m.memory_usage, m.arena_used
    m.put(100, b"ttl", value, expiry=5)
    assert m.memory_usage - usage2 == pages(m.arena_used - used2)
    extra = (m.arena_used - used2) - NODE_BASE - align8(3 + 8 + 8 + len(value))
    assert extra % PTR == 0 and 1 <= extra // PTR <= 12
    assert m.check()


# ------------------------------------------------------------------ reverse iteration

def test_reverse_iteration_matches_forward():
    rng = random.Random(8)
    m = MemTable(chunk_size=4096)
    model = Model()
    for seq in rng.sample(range(1, 100000), 1500):
        k = b"%d" % rng.randrange(200)
        if rng.random() < 0.3:
            model.delete(m, seq, k)
        else:
            model.put(m, seq, k, b"%d" % seq)
    fwd = scan(m)
    assert fwd == model.ordered()
    assert scan_reverse(m) == fwd[::-1]
    # alternating directions from the middle
    it = m.iterator()
    it.py_seek_to_first()
    for _ in range(700):
        it.py_next()
    assert it.py_entry() == fwd[700]
    it.py_prev()
    assert it.py_entry() == fwd[699]
    it.py_next()
    it.py_next()
    assert it.py_entry() == fwd[701]
    # prev from the first entry ends the iteration
    it.py_seek_to_first()
    it.py_prev()
    assert not it.py_valid()
    it.py_seek_to_last()
    assert it.py_entry() == fwd[-1]
    it.py_next()
    assert not it.py_valid()


def test_iterator_keeps_memtable_alive():
    m = MemTable()
    m.put(1, b"a", b"1")
    m.put(2, b"b", b"2")
    it = m.iterator()
    del m
    it.py_seek_to_first()
    assert it.py_entry() == (b"a", 1, PUT, b"1", 0)
    it.py_next()
    assert it.py_entry() == (b"b", 2, PUT, b"2", 0)
