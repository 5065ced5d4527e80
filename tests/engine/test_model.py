"""Seeded randomized test: the engine against a plain dict model.

Operations: put (some with TTL), delete, write batches, get, forward and reverse
range scans, snapshots (checked later against the model state they were taken
at), optimistic transactions (their reads checked against the snapshot they
began at with their own writes laid over it; a write by someone else to a key
they track, possibly flushed before the commit, must make the commit raise
ConflictError and apply nothing; otherwise the commit applies them all),
flush, compact_range, close/reopen and clock advances. Several option sets
make flushes, block splits and file switches frequent. A failure prints the
seed and option set; replay one with
    LSMKV_MODEL_SEED=<seed> pytest tests/engine/test_model.py -k <options-id>
"""
import os
import random

import pytest

import lsmkv
from lsmkv import testing
from conftest import FakeClock
from model_checks import compact_some, reopen

OPTION_SETS = {
    "tiny-zstd": dict(write_buffer_size=64 * 1024, block_size=256, block_cache_size=32 * 1024,
                      target_file_size_base=64 * 1024, max_write_buffer_number=2),
    "tiny-none-nobloom": dict(write_buffer_size=64 * 1024, block_size=1024, compression="none",
                              bloom_bits_per_key=0, block_cache_size=0, max_write_buffer_number=3,
                              block_restart_interval=1, mmap_reads=False),
    "leveled-tiny": dict(write_buffer_size=64 * 1024, block_size=512, target_file_size_base=64 * 1024,
                         max_bytes_for_level_base=128 * 1024, max_bytes_for_level_multiplier=2,
                         level0_file_num_compaction_trigger=2, level0_slowdown_writes_trigger=3,
                         level0_stop_writes_trigger=5, compression_dict_bytes=1024),
    # three compactions at once (in threads, to keep the test quick), checked against the model
    "leveled-3jobs": dict(write_buffer_size=64 * 1024, block_size=512, target_file_size_base=64 * 1024,
                          max_bytes_for_level_base=128 * 1024, max_bytes_for_level_multiplier=2,
                          level0_file_num_compaction_trigger=2, max_background_jobs=4,
                          compaction_worker="thread"),
    "defaults": dict(),
}

SEEDS = [int(os.environ["LSMKV_MODEL_SEED"])] if "LSMKV_MODEL_SEED" in os.environ else [1, 2, 3]
STEPS = int(os.environ.get("LSMKV_MODEL_STEPS", "2500"))


class Model:
    def __init__(self, clock):
        self.clock = clock
        self.data = {}          # key -> (value, expiry seconds or None)

    def live(self):
        now = self.clock()
        return {k: v for k, (v, e) in self.data.items() if e is None or e > now}


def _key(rng):
    # a small key space so overwrites and deletes hit existing keys; some odd sizes
    r = rng.random()
    if r < 0.02:
        return b""
    if r < 0.04:
        return bytes([rng.randrange(256)]) * rng.randrange(1, 300)
    return b"k%04d" % rng.randrange(600)


def _value(rng):
    n = rng.choice([0, 1, 10, 100, 100, 100, 400, 3000])
    return rng.randbytes(n // 2) + b"v" * (n - n // 2)


def _transaction(db, model, rng, ctx):
    """One transaction against the model: reads checked against its view (the
    live state at begin, its own writes over it), perhaps a write by someone
    else (a conflict iff the transaction tracks that key) and a flush before the
    end, then commit, a rollback or the expected ConflictError."""
    begin = model.live()
    own = {}                 # key -> (value, expiry) or None: the transaction's writes
    tracked = set()          # written or read with get_for_update: validated at commit

    def view():
        v = dict(begin)
        for k, ve in own.items():
            if ve is None:
                v.pop(k, None)
            else:
                v[k] = ve[0]
        return v

    txn = db.transaction()
    outside = None
    for _ in range(rng.randrange(1, 12)):
        r = rng.random()
        k = _key(rng)
        if r < 0.3:
            v, ttl = _value(rng), rng.choice([None, None, None, 5.0])
            txn.put(k, v, ttl=ttl)
            own[k] = (v, None if ttl is None else model.clock() + ttl)
            tracked.add(k)
        elif r < 0.4:
            txn.delete(k)
            own[k] = None
            tracked.add(k)
        elif r < 0.6:
            assert txn.get(k) == view().get(k), f"txn get {k!r} {ctx}"
        elif r < 0.75:
            assert txn.get_for_update(k) == view().get(k), f"txn get_for_update {k!r} {ctx}"
            tracked.add(k)
        elif r < 0.8:
            want = sorted(view().items())
            assert list(txn.items()) == want, f"txn items {ctx}"
        elif r < 0.85 and outside is None:
            # someone else writes (a tracked key half the time); the transaction still reads its snapshot
            outside = rng.choice(sorted(tracked)) if tracked and rng.random() < 0.5 else _key(rng)
            v = _value(rng)
            db.put(outside, v)
            model.data[outside] = (v, None)
            assert txn.get(outside) == view().get(outside), f"txn repeatable read {outside!r} {ctx}"
        elif r < 0.9:
            db.flush()
    if rng.random() < 0.15:
        txn.rollback()
        return
    if outside is not None and outside in tracked:
        with pytest.raises(lsmkv.ConflictError):
            txn.commit()
        return
    txn.commit()
    for k, ve in own.items():
        if ve is None:
            model.data.pop(k, None)
        else:
            model.data[k] = ve


@pytest.mark.parametrize("opts_id", list(OPTION_SETS))
@pytest.mark.parametrize("seed", SEEDS)
def test_engine_matches_model(tmp_path, opts_id, seed):
    rng = random.Random(seed)
    clock = FakeClock()
    opts = dict(OPTION_SETS[opts_id], clock=clock)
    path = str(tmp_path / "db")
    db = lsmkv.DB(path, **opts)
    model = Model(clock)
    snaps = []       # (snapshot, frozen live dict at that time) -- expiry is re-evaluated on read
    try:
        for step in range(STEPS):
            r = rng.random()
            ctx = f"seed={seed} opts={opts_id} step={step}"
            if r < 0.40:
                k, v = _key(rng), _value(rng)
                ttl = rng.choice([None] * 8 + [0.5, 5.0])
                db.put(k, v, ttl=ttl)
                model.data[k] = (v, None if ttl is None else clock() + ttl)
            elif r < 0.50:
                k = _key(rng)
                db.delete(k)
                model.data.pop(k, None)
            elif r < 0.56:
                with db.write_batch() as wb:
                    for _ in range(rng.randrange(1, 20)):
                        k = _key(rng)
                        if rng.random() < 0.7:
                            v = _value(rng)
                            wb.put(k, v)
                            model.data[k] = (v, None)
                        else:
                            wb.delete(k)
                            model.data.pop(k, None)
            elif r < 0.76:
                k = _key(rng)
                assert db.get(k) == model.live().get(k), f"get {k!r} {ctx}"
            elif r < 0.80:
                live = model.live()
                srt = sorted(live)
                a, b = sorted([_key(rng), _key(rng)])
                lo = rng.choice([None, a])
                hi = rng.choice([None, b])
                want = [(k, live[k]) for k in srt if (lo is None or k >= lo) and (hi is None or k < hi)]
                reverse = rng.random() < 0.5
                got = list(db.items(lo, hi, reverse=reverse))
                assert got == (want[::-1] if reverse else want), f"items {lo!r}..{hi!r} rev={reverse} {ctx}"
            elif r < 0.82:
                snaps.append((db.snapshot(), {k: ve for k, ve in model.data.items()}))
            elif r < 0.85 and snaps:
                snap, frozen = snaps.pop(rng.randrange(len(snaps)))
                now = clock()
                want = {k: v for k, (v, e) in frozen.items() if e is None or e > now}
                assert dict(snap.items()) == want, f"snapshot items {ctx}"
                k = _key(rng)
                assert snap.get(k) == want.get(k), f"snapshot get {ctx}"
                snap.close()
            elif r < 0.87:
                db.flush()
            elif r < 0.88:
                compact_some(db, rng, _key)
            elif r < 0.89:
                db = reopen(db, snaps, path, opts)
            elif r < 0.905:
                _transaction(db, model, rng, ctx)
            elif r < 0.92:
                clock.advance(rng.choice([0.125, 1.0, 3.0]))   # exact in binary: no ms rounding
            else:
                k = _key(rng)
                assert (k in db) == (k in model.live()), f"contains {ctx}"
        assert dict(db.items()) == model.live()
        testing.current_version(db).check()
        db.close()
        db = lsmkv.DB(path, **opts)
        assert dict(db.items()) == model.live(), "after final reopen"
    finally:
        for s, _ in snaps:
            s.close()
        db.close()
