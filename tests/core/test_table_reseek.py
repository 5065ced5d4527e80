"""Re-seeks of one table iterator (and a level / merging iterator over tables).

A TableIterator that already stands on a data block searches only that block when
the target lies inside it (first key <= target <= the block's last key), and a
MergingIterator seeks its children in two halves (seek_start on every child, then
seek_finish). These tests drive one iterator through many seeks close to each
other (inside the current block, on its first and last keys, just past it, after
next/prev crossed a block boundary, after running off either end), checking every
position against bisect on the sorted entries: a fast path that kept the wrong
block would land on the wrong entry.
"""
import bisect
import random

import pytest

from lsmkv.core.cache import LRUCache, SlabCache
from lsmkv.core.iterator import MergingIterator
from lsmkv.core.table import LevelIterator, TableBuilder, TableReader, make_tag_py

PUT, KIND_MAX = 1, 0xFF
MAX_SEQ = 0x00FFFFFFFFFFFFFF


def ikey(uk, seq, kind):
    return uk + make_tag_py(seq, kind).to_bytes(8, "little")


def order(uk, seq, kind):
    return (uk, -((seq << 8) | kind))


def make_entries(n, seed, prefix=b"k"):
    """Sorted (ukey, seq, kind, value): user keys with 1-3 versions each."""
    rng = random.Random(seed)
    uks = sorted({prefix + b"%07d" % rng.randrange(10**7) for _ in range(n)})
    out = []
    seq = 1
    for uk in uks:
        for _ in range(rng.randint(1, 3)):
            out.append((uk, seq, PUT, rng.randbytes(rng.randint(5, 40))))
            seq += 1
    out.sort(key=lambda e: order(e[0], e[1], e[2]))
    return out


def build(path, entries, block_size=160, restart=4):
    tb = TableBuilder(str(path), block_size, "none", 3, 10, restart)
    for uk, seq, kind, v in entries:
        tb.py_add(ikey(uk, seq, kind), v)
    tb.finish()


class Model:
    def __init__(self, entries):
        self.entries = entries
        self.keys = [order(e[0], e[1], e[2]) for e in entries]

    def at(self, i):
        return self.entries[i] if 0 <= i < len(self.entries) else None

    def seek(self, uk, seq, kind):
        return bisect.bisect_left(self.keys, order(uk, seq, kind))


def entry(it):
    e = it.py_entry()
    return None if e is None else (e[0], e[1], e[2], e[3])


def targets_near(model, i, rng):
    """Seek targets around entry i: the same entry, its neighbours within a few
    entries both ways, between versions of one key, just before/after it."""
    es = model.entries
    out = []
    for d in (0, 1, -1, 2, -2, 3, -3, 5, -5, 9, -9):
        j = i + d
        if 0 <= j < len(es):
            uk, seq = es[j][0], es[j][1]
            out.append((uk, seq, PUT))                      # exactly that entry
            out.append((uk, MAX_SEQ, KIND_MAX))             # the first entry of its user key
            out.append((uk, max(seq - 1, 0), PUT))          # just after that entry
            out.append((uk + b"\x00", MAX_SEQ, KIND_MAX))   # just past its user key
    rng.shuffle(out)
    return out


def check_reseeks(it, model, seed, rounds=150, backward=True):
    """backward=False for a MergingIterator: it moves one way per positioning (prev
    follows seek_for_prev, not seek)."""
    rng = random.Random(seed)
    n = len(model.entries)
    for _ in range(rounds):
        i = rng.randrange(-2, n + 2)
        if i < 0:
            it.py_seek(ikey(b"", MAX_SEQ, KIND_MAX))
            i = 0
        elif i >= n:
            it.py_seek(ikey(b"\xff", MAX_SEQ, KIND_MAX))
            assert not it.py_valid()
            i = n - 1
        for uk, seq, kind in targets_near(model, i, rng):
            it.py_seek(ikey(uk, seq, kind))
            j = model.seek(uk, seq, kind)
            assert entry(it) == model.at(j), (uk, seq, kind)
            # move a few entries either way (across block boundaries), then re-seek
            steps = rng.choice([0, 1, 3, 7])
            back = backward and rng.random() < 0.5
            for _ in range(steps):
                if not it.py_valid():
                    break
                if back:
                    it.py_prev()
                    j -= 1
                else:
                    it.py_next()
                    j += 1
                assert entry(it) == model.at(j)
            if not it.py_valid() and rng.random() < 0.5:
                continue     # the next seek starts from an iterator that ran off an end


@pytest.mark.parametrize("cache", ["none", "lru", "slab"])
@pytest.mark.parametrize("restart", [1, 4, 16])
def test_table_iterator_reseeks(tmp_path, cache, restart):
    entries = make_entries(400, seed=restart)
    path = tmp_path / "000001.sst"
    build(path, entries, restart=restart)
    c = {"none": None, "lru": LRUCache(1 << 20), "slab": SlabCache(1 << 20)}[cache]
    r = TableReader(path, 1, c)
    it = r.new_iterator()
    check_reseeks(it, Model(entries), seed=restart)
    # seek_to_first / seek_to_last then a re-seek near them
    m = Model(entries)
    it.py_seek_to_last()
    assert entry(it) == entries[-1]
    uk, seq = entries[-2][0], entries[-2][1]
    it.py_seek(ikey(uk, seq, PUT))
    assert entry(it) == entries[-2]
    it.py_seek_to_first()
    assert entry(it) == entries[0]
    uk = entries[3][0]
    it.py_seek(ikey(uk, MAX_SEQ, KIND_MAX))
    assert entry(it) == m.at(m.seek(uk, MAX_SEQ, KIND_MAX))
    # every block's first and last key, each right after standing inside that block
    for i in range(len(entries)):
        it.py_seek(ikey(entries[i][0], entries[i][1], PUT))
        for j in (i - 1, i + 1, i):
            if 0 <= j < len(entries):
                it.py_seek(ikey(entries[j][0], entries[j][1], PUT))
                assert entry(it) == entries[j]
    r.close()


def test_level_and_merging_iterator_reseeks(tmp_path):
    """Three tables of one run (LevelIterator) and three overlapping tables merged
    (MergingIterator: two-half seeks), re-seeked near where they stand."""
    runs = [make_entries(150, seed=s, prefix=p) for s, p in ((1, b"a"), (2, b"b"), (3, b"c"))]
    readers = []
    for n, es in enumerate(runs, 1):
        build(tmp_path / ("%06d.sst" % n), es)
        readers.append(TableReader(tmp_path / ("%06d.sst" % n), n, SlabCache(1 << 20)))
    largest = [ikey(es[-1][0], es[-1][1], es[-1][2]) for es in runs]
    run = [e for es in runs for e in es]
    check_reseeks(LevelIterator(tuple(readers), largest), Model(run), seed=11)

    # overlapping tables: disjoint sequence numbers over the same user keys
    over = make_entries(450, seed=9)
    parts = [over[0::3], over[1::3], over[2::3]]
    tabs = []
    for n, es in enumerate(parts, 10):
        build(tmp_path / ("%06d.sst" % n), es)
        tabs.append(TableReader(tmp_path / ("%06d.sst" % n), n, SlabCache(1 << 20)))
    merged = MergingIterator([t.new_iterator() for t in tabs])
    check_reseeks(merged, Model(over), seed=12, backward=False)
    for t in readers + tabs:
        t.close()


def test_iterators_made_without_their_sources_are_refused():
    """DBIterator, MergingIterator and TableIterator are built by C factories
    (per items() call, without a Python-level constructor call); made from Python
    without their sources they raise TypeError instead of crashing at first use."""
    from lsmkv.core.iterator import DBIterator
    from lsmkv.core.table import TableIterator
    for make in (DBIterator, MergingIterator, TableIterator):
        with pytest.raises(TypeError):
            make()
    assert not MergingIterator([]).py_valid()
