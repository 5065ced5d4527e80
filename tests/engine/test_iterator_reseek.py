"""One lsmkv.Iterator re-seeked many times close to where it stands, against a
sorted model: the seeks that stay inside the data block a table iterator holds
(which search only that block), land on a block's first or last key, or just past
it, after next()/prev() crossed block boundaries and after direction changes; over
overlapping L0 tables plus a memtable, then over one compacted level, and on a
snapshot. Small blocks (512 B) so a few entries apart is often another block."""
import bisect
import random

import pytest

import lsmkv
from lsmkv import testing


def kf(i):
    return b"key%06d" % i


class Walker:
    """Drives one iterator and checks each position against srt (sorted live keys)."""

    def __init__(self, it, live):
        self.it = it
        self.live = live
        self.srt = sorted(live)

    def check(self, idx, what):
        want = self.srt[idx] if 0 <= idx < len(self.srt) else None
        got = self.it.key() if self.it.valid() else None
        assert got == want, what
        if want is not None:
            assert self.it.value() == self.live[want], what

    def seek(self, k):
        self.it.seek(k)
        i = bisect.bisect_left(self.srt, k)
        self.check(i, f"seek {k!r}")
        return i

    def seek_for_prev(self, k):
        self.it.seek_for_prev(k)
        i = bisect.bisect_right(self.srt, k) - 1
        self.check(i, f"seek_for_prev {k!r}")
        return i

    def moves(self, i, rng, n):
        for _ in range(n):
            if not self.it.valid():
                return
            if rng.random() < 0.5:
                self.it.next()
                i += 1
                self.check(i, "next")
            else:
                self.it.prev()
                i -= 1
                self.check(i, "prev")

    def near(self, rng, rounds):
        """Seeks at and around random keys: the same key again, neighbours a few
        keys either way (existing and absent), both seek kinds, with moves between."""
        top = int(self.srt[-1][3:]) + 3 if self.srt else 10
        for _ in range(rounds):
            c = rng.randrange(-2, top)
            for _ in range(12):
                k = kf(max(c + rng.randrange(-12, 13), 0))
                if rng.random() < 0.2:
                    k += b"\x00"                 # between two possible keys
                if rng.random() < 0.7:
                    i = self.seek(k)
                else:
                    i = self.seek_for_prev(k)
                self.moves(i, rng, rng.choice([0, 1, 2, 5]))
        self.it.seek_to_last()
        self.check(len(self.srt) - 1, "seek_to_last")
        self.it.seek_to_first()
        self.check(0, "seek_to_first")


@pytest.mark.parametrize("seed", [1, 2])
def test_reseek_near_over_tables_memtable_and_compaction(tmp_path, seed):
    rng = random.Random(seed)
    opts = dict(write_buffer_size=1 << 20, block_size=512, block_cache_size=256 << 10,
                level0_file_num_compaction_trigger=8, compaction_worker="thread")
    db = lsmkv.DB(str(tmp_path / "db"), **opts)
    live = {}
    for rnd in range(3):                      # three overlapping L0 tables
        for _ in range(700):
            k = kf(rng.randrange(2000))
            if rng.random() < 0.15:
                db.delete(k)
                live.pop(k, None)
            else:
                v = b"v%d-" % rnd + rng.randbytes(rng.randrange(1, 60))
                db.put(k, v)
                live[k] = v
        db.flush()
    assert len(testing.level_files(db)[0]) == 3
    for _ in range(200):                      # and a memtable on top
        k = kf(rng.randrange(2000))
        v = b"m" + rng.randbytes(8)
        db.put(k, v)
        live[k] = v
    with db.iterator() as it:
        Walker(it, dict(live)).near(rng, 60)
        frozen = dict(live)
        snap = db.snapshot()
        db.compact_range()                    # one sorted level: LevelIterator
        for k in list(live)[:300]:
            db.delete(k)
            del live[k]
        Walker(it, frozen).near(rng, 20)      # the old iterator keeps its version
    with db.iterator() as it:
        Walker(it, live).near(rng, 60)
    with snap.iterator() as it:
        Walker(it, frozen).near(rng, 30)
    snap.close()
    with db.iterator(lower=kf(500), upper=kf(1500)) as it:
        bounded = {k: v for k, v in live.items() if kf(500) <= k < kf(1500)}
        w = Walker(it, bounded)
        for _ in range(200):
            k = kf(rng.randrange(480, 1520))
            w.moves(w.seek(k) if rng.random() < 0.6 else w.seek_for_prev(k), rng, 3)
    db.close()


def test_seek_that_fails_to_read_leaves_the_iterator_invalid(tmp_path):
    """A seek whose block read fails (a corrupt block: checksum) raises, and the
    iterator is then not valid (not still on the entry it stood on before, whose
    block the failed seek already let go); later seeks elsewhere work."""
    path = str(tmp_path / "db")
    opts = dict(block_size=512, block_cache_size=64 << 10)
    db = lsmkv.DB(path, **opts)
    for gen in (b"a", b"b"):                    # two tables over the same keys
        for i in range(1000):
            db.put(kf(i), gen * 40)
        db.flush()
    newest = max(testing.live_table_numbers(db))
    db.close()
    sst = tmp_path / "db" / ("%06d.sst" % newest)
    data = bytearray(sst.read_bytes())
    data[100] ^= 0x40                           # inside the newest table's first data block
    sst.write_bytes(bytes(data))
    db = lsmkv.DB(path, **opts)
    with db.iterator() as it:
        it.seek(kf(900))
        assert it.key() == kf(900) and it.value() == b"b" * 40
        with pytest.raises(lsmkv.CorruptionError):
            it.seek(kf(0))
        assert not it.valid()
        with pytest.raises(lsmkv.InvalidIteratorError):
            it.value()
        it.seek(kf(950))
        assert it.key() == kf(950) and it.value() == b"b" * 40
        it.next()
        assert it.key() == kf(951)
    db.close()
