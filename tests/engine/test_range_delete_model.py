"""Seeded randomized test of range deletions (db.delete_range, wb.delete_range)
against a plain dict model: puts (some with TTL), deletes, range deletes alone
and in batches, gets, multi_gets, forward and reverse scans, cursor seeks both
ways, snapshots (checked later against the state they were taken at), flush,
compact_range, close/reopen and clock advances, under option sets that make
flushes, file switches and leveled compactions frequent. Replay one with
    LSMKV_MODEL_SEED=<seed> pytest tests/engine/test_range_delete_model.py -k <options-id>
"""
import os
import random

import pytest

import lsmkv
from lsmkv import testing
from conftest import FakeClock
from model_checks import check_cursor, compact_some, reopen

OPTION_SETS = {
    "tiny-zstd": dict(write_buffer_size=64 * 1024, block_size=256, block_cache_size=32 * 1024,
                      target_file_size_base=64 * 1024, max_write_buffer_number=2),
    "leveled-tiny": dict(write_buffer_size=64 * 1024, block_size=512, target_file_size_base=64 * 1024,
                         max_bytes_for_level_base=128 * 1024, max_bytes_for_level_multiplier=2,
                         level0_file_num_compaction_trigger=2, level0_slowdown_writes_trigger=3,
                         level0_stop_writes_trigger=5, compression="none", bloom_bits_per_key=0),
    "leveled-3jobs": dict(write_buffer_size=64 * 1024, block_size=512, target_file_size_base=64 * 1024,
                          max_bytes_for_level_base=128 * 1024, max_bytes_for_level_multiplier=2,
                          level0_file_num_compaction_trigger=2, max_background_jobs=4,
                          compaction_worker="thread"),
}

SEEDS = [int(os.environ["LSMKV_MODEL_SEED"])] if "LSMKV_MODEL_SEED" in os.environ else [1, 2]
STEPS = int(os.environ.get("LSMKV_MODEL_STEPS", "2500"))


def _key(rng):
    r = rng.random()
    if r < 0.02:
        return b""
    return b"k%04d" % rng.randrange(600)


def _value(rng):
    n = rng.choice([0, 10, 100, 100, 400])
    return rng.randbytes(n // 2) + b"v" * (n - n // 2)


def _range(rng):
    a, b = sorted([_key(rng), _key(rng)])
    if rng.random() < 0.5:       # mostly narrow ranges, some wide ones
        b = min(b, b"k%04d" % min(599, int(a[1:] or b"0") + rng.randrange(1, 40)))
        if b < a:
            a, b = b, a
    return a, b


def _live(data, now):
    return {k: v for k, (v, e) in data.items() if e is None or e > now}


def _delete_range(data, a, b):
    for k in [k for k in data if a <= k < b]:
        del data[k]


@pytest.mark.parametrize("opts_id", list(OPTION_SETS))
@pytest.mark.parametrize("seed", SEEDS)
def test_range_deletes_match_model(tmp_path, opts_id, seed):
    rng = random.Random(seed)
    clock = FakeClock()
    opts = dict(OPTION_SETS[opts_id], clock=clock)
    path = str(tmp_path / "db")
    db = lsmkv.DB(path, **opts)
    data = {}           # key -> (value, expiry seconds or None)
    snaps = []          # (snapshot, frozen data)
    try:
        for step in range(STEPS):
            r = rng.random()
            ctx = f"seed={seed} opts={opts_id} step={step}"
            if r < 0.40:
                k, v = _key(rng), _value(rng)
                ttl = rng.choice([None] * 8 + [0.5, 5.0])
                db.put(k, v, ttl=ttl)
                data[k] = (v, None if ttl is None else clock() + ttl)
            elif r < 0.45:
                k = _key(rng)
                db.delete(k)
                data.pop(k, None)
            elif r < 0.50:
                a, b = _range(rng)
                db.delete_range(a, b)
                _delete_range(data, a, b)
            elif r < 0.53:
                with db.write_batch() as wb:
                    for _ in range(rng.randrange(1, 10)):
                        x = rng.random()
                        if x < 0.6:
                            k, v = _key(rng), _value(rng)
                            wb.put(k, v)
                            data[k] = (v, None)
                        elif x < 0.8:
                            k = _key(rng)
                            wb.delete(k)
                            data.pop(k, None)
                        else:
                            a, b = _range(rng)
                            wb.delete_range(a, b)
                            _delete_range(data, a, b)
            elif r < 0.68:
                k = _key(rng)
                assert db.get(k) == _live(data, clock()).get(k), f"get {k!r} {ctx}"
            elif r < 0.70:
                ks = [_key(rng) for _ in range(8)]
                live = _live(data, clock())
                assert db.multi_get(ks) == [live.get(k) for k in ks], f"multi_get {ctx}"
            elif r < 0.74:
                live = _live(data, clock())
                a, b = sorted([_key(rng), _key(rng)])
                lo, hi = rng.choice([None, a]), rng.choice([None, b])
                want = [(k, live[k]) for k in sorted(live) if (lo is None or k >= lo) and (hi is None or k < hi)]
                reverse = rng.random() < 0.5
                got = list(db.items(lo, hi, reverse=reverse))
                assert got == (want[::-1] if reverse else want), f"items {lo!r}..{hi!r} rev={reverse} {ctx}"
            elif r < 0.76:
                check_cursor(db, _live(data, clock()), rng, _key, ctx)
            elif r < 0.78:
                snaps.append((db.snapshot(), dict(data)))
            elif r < 0.81 and snaps:
                snap, frozen = snaps.pop(rng.randrange(len(snaps)))
                want = _live(frozen, clock())
                assert dict(snap.items()) == want, f"snapshot items {ctx}"
                assert list(snap.keys(reverse=True)) == sorted(want, reverse=True), f"snapshot reverse {ctx}"
                k = _key(rng)
                assert snap.get(k) == want.get(k), f"snapshot get {ctx}"
                check_cursor(snap, want, rng, _key, ctx)
                snap.close()
            elif r < 0.84:
                db.flush()
            elif r < 0.86:
                compact_some(db, rng, _key)
            elif r < 0.87:
                db = reopen(db, snaps, path, opts)
            elif r < 0.90:
                clock.advance(rng.choice([0.125, 1.0, 3.0]))
            else:
                k = _key(rng)
                assert (k in db) == (k in _live(data, clock())), f"contains {ctx}"
        assert dict(db.items()) == _live(data, clock())
        testing.current_version(db).check()
        for s, _ in snaps:
            s.close()
        snaps.clear()
        db.compact_range()
        assert dict(db.items()) == _live(data, clock()), "after a full compaction"
        db.close()
        db = lsmkv.DB(path, **opts)
        assert dict(db.items()) == _live(data, clock()), "after final reopen"
        assert list(db.keys(reverse=True)) == sorted(_live(data, clock()), reverse=True)
    finally:
        for s, _ in snaps:
            s.close()
        db.close()
