"""Seeded randomized test of merge operators: the engine against a dict model.

Beside test_model.py: puts (some with TTL), deletes, merges, write batches with
merges, get, multi_get, forward and reverse range scans, lsmkv.Iterator walks in
both directions, snapshots (checked later against the model state they were
taken at), flush, compact_range, close/reopen and clock advances, for each
built-in operator and for callables with and without a partial merge. The model
keeps each key's base (value, expiry) and the operands written since; a read
folds them with the operator's reference definition below, an expired base
counting as none (the documented semantics). Replay one failure with
    LSMKV_MODEL_SEED=<seed> pytest tests/engine/test_merge_model.py -k <ids>
"""
import os
import random

import pytest

import lsmkv
from lsmkv import testing
from conftest import FakeClock
from model_checks import compact_some, reopen

OPTION_SETS = {
    "tiny-zstd": dict(write_buffer_size=64 * 1024, block_size=256, block_cache_size=64 * 1024,
                      target_file_size_base=64 * 1024, max_write_buffer_number=2),
    # leveled, compactions in worker processes (built-ins) or in-process (callables)
    "leveled-tiny": dict(write_buffer_size=64 * 1024, block_size=512, target_file_size_base=64 * 1024,
                         max_bytes_for_level_base=128 * 1024, max_bytes_for_level_multiplier=2,
                         level0_file_num_compaction_trigger=2, level0_slowdown_writes_trigger=3,
                         level0_stop_writes_trigger=5),
}

SEEDS = [int(os.environ["LSMKV_MODEL_SEED"])] if "LSMKV_MODEL_SEED" in os.environ else [1, 2]
STEPS = int(os.environ.get("LSMKV_MODEL_STEPS", "1500"))


def tagged(key, existing, operands):
    """Order-sensitive, marks a missing base, and composes as the contract asks
    (full(full(e, a), b) == full(e, a + b)): a wrong order or base shows."""
    return (b"-" if existing is None else existing) + b"".join(b"(" + o + b")" for o in operands)


class Joiner:
    """A callable with a partial merge: '|'-joined, as ('append', b'|')."""
    name = "joiner"

    def __call__(self, key, existing, operands):
        return b"|".join(([] if existing is None else [existing]) + operands)

    def partial_merge(self, key, operands):
        return b"|".join(operands)


def _u64(b):
    return int.from_bytes(b, "little")


REFERENCE = {
    "uint64add": lambda e, ops: ((0 if e is None else _u64(e)) + sum(map(_u64, ops))) % (1 << 64),
    "append": lambda e, ops: b",".join(([] if e is None else [e]) + ops),
    "max": lambda e, ops: max(([] if e is None else [e]) + ops),
    "tagged": lambda e, ops: tagged(None, e, ops),
    "joiner": lambda e, ops: Joiner()(None, e, ops),
}
OPERATORS = {"uint64add": "uint64add", "append": ("append", b","), "max": "max",
             "tagged": tagged, "joiner": Joiner()}


def fold(name, entry, now):
    """A model entry's value at `now`: (base, expiry, operands) -> bytes or None."""
    base, expiry, ops = entry
    if base is not None and expiry is not None and expiry <= now:
        base = None
    if not ops:
        return base
    r = REFERENCE[name](base, ops)
    return r.to_bytes(8, "little") if name == "uint64add" else r


def _key(rng):
    r = rng.random()
    if r < 0.02:
        return b""
    return b"k%03d" % rng.randrange(120)


def _value(rng, name):
    if name == "uint64add":
        return rng.choice([1, 2, 1000, (1 << 64) - 1, rng.randrange(1 << 64)]).to_bytes(8, "little")
    n = rng.choice([0, 1, 3, 8, 20])
    return bytes(rng.randrange(97, 123) for _ in range(n))


@pytest.mark.parametrize("opts_id", list(OPTION_SETS))
@pytest.mark.parametrize("op_name", list(OPERATORS))
@pytest.mark.parametrize("seed", SEEDS)
def test_merge_matches_model(tmp_path, opts_id, op_name, seed):
    rng = random.Random(seed * 1000 + len(op_name))
    clock = FakeClock()
    opts = dict(OPTION_SETS[opts_id], clock=clock, merge_operator=OPERATORS[op_name])
    path = str(tmp_path / "db")
    db = lsmkv.DB(path, **opts)
    data = {}            # key -> (base or None, expiry or None, [operands])
    snaps = []           # (snapshot, frozen copy of data)

    def live(d):
        now = clock()
        out = {}
        for k, entry in d.items():
            v = fold(op_name, entry, now)
            if v is not None:
                out[k] = v
        return out

    def merge(k, v):
        base, expiry, ops = data.get(k, (None, None, []))
        data[k] = (base, expiry, ops + [v])

    try:
        for step in range(STEPS):
            r = rng.random()
            ctx = f"seed={seed} op={op_name} opts={opts_id} step={step}"
            if r < 0.20:
                k, v = _key(rng), _value(rng, op_name)
                ttl = rng.choice([None] * 6 + [0.5, 5.0])
                db.put(k, v, ttl=ttl)
                data[k] = (v, None if ttl is None else clock() + ttl, [])
            elif r < 0.26:
                k = _key(rng)
                db.delete(k)
                data.pop(k, None)
            elif r < 0.50:
                k, v = _key(rng), _value(rng, op_name)
                db.merge(k, v)
                merge(k, v)
            elif r < 0.54:
                with db.write_batch() as wb:
                    for _ in range(rng.randrange(1, 12)):
                        k, v = _key(rng), _value(rng, op_name)
                        x = rng.random()
                        if x < 0.5:
                            wb.merge(k, v)
                            merge(k, v)
                        elif x < 0.8:
                            wb.put(k, v)
                            data[k] = (v, None, [])
                        else:
                            wb.delete(k)
                            data.pop(k, None)
            elif r < 0.66:
                k = _key(rng)
                assert db.get(k) == live(data).get(k), f"get {k!r} {ctx}"
            elif r < 0.69:
                ks = [_key(rng) for _ in range(rng.randrange(1, 12))]
                want = live(data)
                assert db.multi_get(ks) == [want.get(k) for k in ks], f"multi_get {ctx}"
            elif r < 0.73:
                want_d = live(data)
                srt = sorted(want_d)
                a, b = sorted([_key(rng), _key(rng)])
                lo, hi = rng.choice([None, a]), rng.choice([None, b])
                want = [(k, want_d[k]) for k in srt if (lo is None or k >= lo) and (hi is None or k < hi)]
                reverse = rng.random() < 0.5
                got = list(db.items(lo, hi, reverse=reverse))
                assert got == (want[::-1] if reverse else want), f"items {lo!r}..{hi!r} rev={reverse} {ctx}"
            elif r < 0.76:
                # a cursor: seek somewhere, then a random walk both ways
                want_d = live(data)
                srt = sorted(want_d)
                with db.iterator() as it:
                    k = _key(rng)
                    it.seek(k)
                    pos = next((i for i, x in enumerate(srt) if x >= k), len(srt))
                    for _ in range(rng.randrange(1, 12)):
                        if pos < 0 or pos >= len(srt):
                            assert not it.valid(), f"cursor past the end {ctx}"
                            break
                        assert it.item() == (srt[pos], want_d[srt[pos]]), f"cursor at {pos} {ctx}"
                        if rng.random() < 0.5:
                            it.next()
                            pos += 1
                        else:
                            it.prev()
                            pos -= 1
            elif r < 0.79:
                snaps.append((db.snapshot(), {k: (b, e, list(o)) for k, (b, e, o) in data.items()}))
            elif r < 0.82 and snaps:
                snap, frozen = snaps.pop(rng.randrange(len(snaps)))
                want = live(frozen)
                assert dict(snap.items()) == want, f"snapshot items {ctx}"
                assert list(snap.items(reverse=True)) == sorted(want.items(), reverse=True), \
                    f"snapshot reverse items {ctx}"
                ks = [_key(rng) for _ in range(4)]
                assert [snap.get(k) for k in ks] == [want.get(k) for k in ks], f"snapshot get {ctx}"
                assert snap.multi_get(ks) == [want.get(k) for k in ks], f"snapshot multi_get {ctx}"
                snap.close()
            elif r < 0.86:
                db.flush()
            elif r < 0.88:
                compact_some(db, rng, _key)
            elif r < 0.89:
                db = reopen(db, snaps, path, opts)
            elif r < 0.93:
                clock.advance(rng.choice([0.125, 1.0, 3.0]))
            else:
                k = _key(rng)
                assert (k in db) == (k in live(data)), f"contains {ctx}"
        assert dict(db.items()) == live(data)
        for s, frozen in snaps:
            assert dict(s.items()) == live(frozen), "open snapshot at the end"
        db.compact_range()
        assert dict(db.items()) == live(data), "after a full compaction"
        assert list(db.items(reverse=True)) == sorted(live(data).items(), reverse=True)
        for s, frozen in snaps:
            assert dict(s.items()) == live(frozen), "open snapshot after a full compaction"
        testing.current_version(db).check()
        db = reopen(db, snaps, path, opts)
        assert dict(db.items()) == live(data), "after final reopen"
    finally:
        for s, _ in snaps:
            s.close()
        db.close()
