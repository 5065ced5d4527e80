"""Seeded randomized test of lsmkv.Iterator against a sorted-list model.

Writes (puts, some with a TTL, deletes, batches), flushes, compactions, clock
advances and snapshots change the DB while several iterators stay open; each
iterator (random lower/upper/prefix bounds, prefixes full of 0xff bytes, some
on a snapshot) is driven by random seek, seek_for_prev, seek_to_first,
seek_to_last, next, prev and `for` steps, in any order of directions, and every
position is checked against the model: the view the iterator was made on,
bounded, with expiry judged at its last seek. Runs under test_model's option
sets. A failure prints the seed; replay one with
    LSMKV_MODEL_SEED=<seed> pytest tests/engine/test_iterator_model.py -k <options-id>
"""
import bisect
import itertools
import os
import random

import pytest

import lsmkv
from conftest import FakeClock
from test_model import OPTION_SETS

SEEDS = [int(os.environ["LSMKV_MODEL_SEED"])] if "LSMKV_MODEL_SEED" in os.environ else [1, 2]
STEPS = int(os.environ.get("LSMKV_MODEL_STEPS", "3000"))

PREFIXES = [b"", b"k", b"k1", b"k12", b"\xff", b"\xff\xff", b"p\xff", b"p\xff\xff", b"p", b"q", b"\x00"]


def _key(rng):
    r = rng.random()
    if r < 0.02:
        return b""
    if r < 0.12:
        return rng.choice([b"\xff", b"p\xff", b"p"]) + bytes(rng.choice([0, 1, 0xfe, 0xff])
                                                             for _ in range(rng.randrange(0, 3)))
    if r < 0.14:
        return bytes([rng.randrange(256)]) * rng.randrange(1, 200)
    return b"k%03d" % rng.randrange(300)


def _value(rng):
    n = rng.choice([0, 1, 10, 100, 100, 400, 3000])
    return rng.randbytes(n // 2) + b"v" * (n - n // 2)


class ModelCursor:
    """What an Iterator made on `frozen` (key -> (value, expiry)) with bounds must show."""

    def __init__(self, frozen, lo, hi, clock):
        self.frozen, self.lo, self.hi, self.clock = frozen, lo, hi, clock
        self.keys, self.pos = [], -1
        self.positioned = False

    def _view(self):
        self.positioned = True
        now = self.clock()
        self.keys = sorted(k for k, (v, e) in self.frozen.items()
                           if (e is None or e > now) and (self.lo is None or k >= self.lo)
                           and (self.hi is None or k < self.hi))

    def valid(self):
        return 0 <= self.pos < len(self.keys)

    def seek(self, k):
        self._view()
        self.pos = bisect.bisect_left(self.keys, k)

    def seek_for_prev(self, k):
        self._view()
        self.pos = bisect.bisect_right(self.keys, k) - 1

    def seek_to_first(self):
        self._view()
        self.pos = 0

    def seek_to_last(self):
        self._view()
        self.pos = len(self.keys) - 1

    def item(self):
        k = self.keys[self.pos]
        return k, self.frozen[k][0]


def _bounds(rng):
    lo = hi = prefix = None
    if rng.random() < 0.4:
        lo = _key(rng)
    if rng.random() < 0.4:
        hi = _key(rng)
    if rng.random() < 0.4:
        prefix = rng.choice(PREFIXES)
    elo, ehi = lo, hi
    if prefix is not None:
        elo = prefix if elo is None else max(elo, prefix)
        succ = prefix.rstrip(b"\xff")
        succ = None if not succ else succ[:-1] + bytes([succ[-1] + 1])
        if succ is not None:
            ehi = succ if ehi is None else min(ehi, succ)
    return lo, hi, prefix, elo, ehi


def _check(it, m, ctx):
    assert it.valid() == m.valid(), ctx
    if m.valid():
        assert (it.key(), it.value()) == m.item(), ctx
    else:
        with pytest.raises(lsmkv.InvalidIteratorError):
            it.key()


def _drive(rng, it, m, ctx):
    """A few random cursor steps on (it, m), checked after each."""
    for i in range(rng.randrange(1, 12)):
        r = rng.random()
        c = f"{ctx} op{i}"
        if r < 0.2:
            k = _key(rng)
            it.seek(k), m.seek(k)
            c += f" seek {k!r}"
        elif r < 0.35:
            k = _key(rng)
            it.seek_for_prev(k), m.seek_for_prev(k)
            c += f" seek_for_prev {k!r}"
        elif r < 0.42:
            it.seek_to_first(), m.seek_to_first()
            c += " seek_to_first"
        elif r < 0.49:
            it.seek_to_last(), m.seek_to_last()
            c += " seek_to_last"
        elif r < 0.92:
            step = "next" if rng.random() < 0.5 else "prev"
            c += " " + step
            if m.valid():
                for _ in range(rng.randrange(1, 4)):
                    if not m.valid():
                        break
                    getattr(it, step)()
                    m.pos += 1 if step == "next" else -1
                    _check(it, m, c)
            else:
                with pytest.raises(lsmkv.InvalidIteratorError):
                    getattr(it, step)()
        else:
            n = rng.randrange(0, 6)
            c += f" for x{n}"
            if n and not m.positioned:    # a fresh iterator iterates from the first key
                m.seek_to_first()
            got = list(itertools.islice(it, n))
            want = []
            while len(want) < n and m.valid():
                want.append(m.item())
                m.pos += 1
            assert got == want, c
        _check(it, m, c)


@pytest.mark.parametrize("opts_id", list(OPTION_SETS))
@pytest.mark.parametrize("seed", SEEDS)
def test_iterator_matches_model(tmp_path, opts_id, seed):
    rng = random.Random(seed)
    clock = FakeClock()
    opts = dict(OPTION_SETS[opts_id], clock=clock)
    path = str(tmp_path / "db")
    db = lsmkv.DB(path, **opts)
    data = {}                # key -> (value, expiry seconds or None)
    snaps = []               # (snapshot, frozen data)
    open_its = []            # (iterator, model cursor)
    try:
        for step in range(STEPS):
            r = rng.random()
            ctx = f"seed={seed} opts={opts_id} step={step}"
            if r < 0.45:
                k, v = _key(rng), _value(rng)
                ttl = rng.choice([None] * 8 + [0.5, 5.0])
                db.put(k, v, ttl=ttl)
                data[k] = (v, None if ttl is None else clock() + ttl)
            elif r < 0.55:
                k = _key(rng)
                db.delete(k)
                data.pop(k, None)
            elif r < 0.58:
                with db.write_batch() as wb:
                    for _ in range(rng.randrange(1, 20)):
                        k = _key(rng)
                        if rng.random() < 0.7:
                            v = _value(rng)
                            wb.put(k, v)
                            data[k] = (v, None)
                        else:
                            wb.delete(k)
                            data.pop(k, None)
            elif r < 0.66:
                lo, hi, prefix, elo, ehi = _bounds(rng)
                if snaps and rng.random() < 0.3:
                    snap, frozen = rng.choice(snaps)
                    it = (snap.iterator(lo, hi, prefix=prefix) if rng.random() < 0.5
                          else db.iterator(lo, hi, prefix=prefix, snapshot=snap))
                else:
                    frozen = dict(data)
                    it = db.iterator(lo, hi, prefix=prefix)
                assert (it.lower, it.upper) == (elo, ehi), ctx
                m = ModelCursor(frozen, elo, ehi, clock)
                assert not it.valid()
                _drive(rng, it, m, ctx + f" new lo={lo!r} hi={hi!r} prefix={prefix!r}")
                if rng.random() < 0.5 and len(open_its) < 4:
                    open_its.append((it, m))
                else:
                    it.close()
            elif r < 0.76 and open_its:
                it, m = rng.choice(open_its)
                _drive(rng, it, m, ctx + f" old lo={m.lo!r} hi={m.hi!r}")
                if rng.random() < 0.2:
                    open_its.remove((it, m))
                    it.close()
            elif r < 0.78:
                snaps.append((db.snapshot(), dict(data)))
            elif r < 0.79 and snaps:
                snap, _ = snaps.pop(rng.randrange(len(snaps)))
                snap.close()
            elif r < 0.84:
                db.flush()
            elif r < 0.86:
                a, b = sorted([_key(rng), _key(rng)])
                db.compact_range(rng.choice([None, a]), rng.choice([None, b]))
            elif r < 0.865:
                for s, _ in snaps:
                    s.close()
                snaps.clear()
                db.close()
                for it, _ in open_its:         # closed with their DB
                    with pytest.raises(lsmkv.ClosedError):
                        it.seek_to_first()
                open_its.clear()
                db = lsmkv.DB(path, **opts)
            elif r < 0.9:
                clock.advance(rng.choice([0.125, 1.0, 3.0]))
        m = ModelCursor(dict(data), None, None, clock)
        m.seek_to_first()
        with db.iterator() as it:
            assert list(it) == [(k, data[k][0]) for k in m.keys]
            it.seek_to_last()
            back = []
            while it.valid():
                back.append(it.key())
                it.prev()
            assert back == m.keys[::-1]
    finally:
        for it, _ in open_its:
            it.close()
        for s, _ in snaps:
            s.close()
        db.close()
