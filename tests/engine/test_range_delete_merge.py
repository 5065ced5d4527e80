"""Range deletions and merge operands together (db.delete_range beside db.merge).

A range tombstone under a merge stack acts as a missing base: operands newer than
the tombstone fold over None, operands older than it are deleted. Checked for get,
multi_get, both iterators, the cursor, snapshots, and flush/compaction output
(covered operands dropped; a stack over a tombstone every snapshot sees folded
with no base), then against a dict model (seeded) with both operators, across
flush, compaction, reopen, snapshots, reverse iteration and seeks. Also the SST
format version of tables holding operands (docs/format.md, "Footer"). Replay a
model run with
    LSMKV_MODEL_SEED=<seed> pytest tests/engine/test_range_delete_merge.py -k <options-id>
"""
import os
import random
import struct

import pytest

import lsmkv
from lsmkv import testing
from lsmkv.core.table import FOOTER_SIZE, FORMAT_VERSION, FORMAT_VERSION_PLAIN
from conftest import FakeClock
from model_checks import check_cursor, compact_some, reopen

U = lambda n: n.to_bytes(8, "little")       # noqa: E731  (uint64add operands)


def _reads(db_or_snap, key):
    """Every read path's answer for key: get, multi_get, forward and reverse
    items, cursor seek and seek_for_prev."""
    out = {"get": db_or_snap.get(key), "multi_get": db_or_snap.multi_get([key])[0],
           "items": dict(db_or_snap.items()).get(key),
           "reverse": dict(db_or_snap.items(reverse=True)).get(key)}
    with db_or_snap.iterator() as it:
        it.seek(key)
        out["seek"] = it.value() if it.valid() and it.key() == key else None
        it.seek_for_prev(key)
        out["seek_for_prev"] = it.value() if it.valid() and it.key() == key else None
        it.seek_to_last()
        while it.valid() and it.key() > key:
            it.prev()
        out["prev"] = it.value() if it.valid() and it.key() == key else None
    return out


def _assert_reads(db_or_snap, key, want, ctx=""):
    got = _reads(db_or_snap, key)
    assert got == dict.fromkeys(got, want), f"{key!r} {ctx}"


STAGES = ["memtable", "flushed", "tombstone-flushed-only", "compacted"]


@pytest.mark.parametrize("stage", STAGES)
def test_operands_over_a_tombstone_fold_over_no_base(dbpath, stage):
    db = lsmkv.DB(dbpath, merge_operator=("append", b","))
    try:
        db.put(b"a", b"base"); db.merge(b"a", b"old1")
        db.put(b"b", b"base")
        db.merge(b"c", b"old")
        db.put(b"z", b"outside"); db.merge(b"z", b"z1")
        if stage == "tombstone-flushed-only":
            db.flush()
        db.delete_range(b"a", b"d")
        snap = db.snapshot()                          # sees the tombstone and nothing after it
        db.merge(b"a", b"new1"); db.merge(b"a", b"new2")
        db.merge(b"c", b"new")
        if stage in ("flushed", "compacted"):
            db.flush()
        if stage == "compacted":
            db.compact_range()
        for k, want in [(b"a", b"new1,new2"), (b"b", None), (b"c", b"new"), (b"z", b"outside,z1")]:
            _assert_reads(db, k, want, stage)
        for k, want in [(b"a", None), (b"b", None), (b"c", None), (b"z", b"outside,z1")]:
            _assert_reads(snap, k, want, f"snapshot {stage}")
        assert list(db.items()) == [(b"a", b"new1,new2"), (b"c", b"new"), (b"z", b"outside,z1")]
        snap.close()
        db.compact_range()                            # no snapshot: folded into puts, tombstone gone
        db.close()
        db = lsmkv.DB(dbpath, merge_operator=("append", b","))
        assert list(db.items(reverse=True)) == [(b"z", b"outside,z1"), (b"c", b"new"), (b"a", b"new1,new2")]
    finally:
        db.close()


def test_a_tombstone_between_operands_splits_the_stack(dbpath):
    db = lsmkv.DB(dbpath, merge_operator="uint64add")
    try:
        for _ in range(3):
            db.merge(b"n", U(1))
        s_before = db.snapshot()
        db.delete_range(b"m", b"o")
        s_at = db.snapshot()
        db.merge(b"n", U(10)); db.merge(b"n", U(100))
        for where in ("memtable", "L0", "bottom"):
            _assert_reads(db, b"n", U(110), where)
            _assert_reads(s_at, b"n", None, where)
            _assert_reads(s_before, b"n", U(3), where)
            if where == "memtable":
                db.flush()
            else:
                db.compact_range()                    # the snapshots keep every version they see
        s_before.close(); s_at.close()
        db.compact_range()
        _assert_reads(db, b"n", U(110), "no snapshots")
    finally:
        db.close()


def test_compaction_drops_covered_operands_and_folds_the_rest_without_base(dbpath):
    db = lsmkv.DB(dbpath, merge_operator=("append", b","))
    try:
        for i in range(200):
            db.put(b"k%03d" % i, b"b"); db.merge(b"k%03d" % i, b"x")
        db.flush()
        db.delete_range(b"k050", b"k150")
        db.merge(b"k100", b"y")
        db.flush()
        s = db.stats()
        db.compact_range(b"k000", b"k999")
        s2 = db.stats()
        assert s2["range_dropped"] > s.get("range_dropped", 0)
        assert db.get(b"k100") == b"y" and db.get(b"k099") is None and db.get(b"k049") == b"b,x"
        assert len(list(db.keys())) == 100 + 1
        testing.current_version(db).check()
    finally:
        db.close()


def test_a_covered_operand_without_operator_is_still_deleted(dbpath):
    db = lsmkv.DB(dbpath, merge_operator="uint64add")
    db.merge(b"k", U(5))
    db.delete_range(b"a", b"z")
    db.flush()
    db.close()
    db = lsmkv.DB(dbpath, merge_operator="uint64add")
    try:
        _assert_reads(db, b"k", None, "reopened")
        db.merge(b"k", U(2))
        _assert_reads(db, b"k", U(2), "after")
    finally:
        db.close()


# ---------------------------------------------------------------- format versions

def _versions(path):
    out = {}
    for name in sorted(os.listdir(path)):
        if name.endswith(".sst"):
            with open(os.path.join(path, name), "rb") as f:
                f.seek(-FOOTER_SIZE + 64, 2)
                out[name] = struct.unpack("<I", f.read(4))[0]
    return out


def test_tables_with_operands_are_version_2_and_plain_tables_stay_version_1(tmp_path):
    assert (FORMAT_VERSION, FORMAT_VERSION_PLAIN) == (2, 1)
    plain = str(tmp_path / "plain")
    db = lsmkv.DB(plain, merge_operator="uint64add")      # an operator, but no operand written
    db.put(b"a", b"1"); db.delete(b"b")
    db.flush()
    db.close()
    assert list(_versions(plain).values()) == [FORMAT_VERSION_PLAIN]

    p = str(tmp_path / "ops")
    db = lsmkv.DB(p, merge_operator="uint64add")
    snap = db.snapshot()
    db.merge(b"k", U(1)); db.merge(b"k", U(2))
    db.flush()
    assert list(_versions(p).values()) == [FORMAT_VERSION]
    snap.close()
    db.compact_range()                                    # folded into a put at the bottom: no operand left
    assert list(_versions(p).values()) == [FORMAT_VERSION_PLAIN]
    assert db.get(b"k") == U(3)
    db.merge(b"k", U(4))
    db.flush()
    vs = _versions(p)
    assert sorted(vs.values()) == [FORMAT_VERSION_PLAIN, FORMAT_VERSION]
    db.close()


# ---------------------------------------------------------------- the model

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
OPERATORS = {
    "append": (("append", b","), lambda base, ops: b",".join(([] if base is None else [base]) + ops)),
    "uint64add": ("uint64add", lambda base, ops: U((int.from_bytes(base or U(0), "little") +
                                                    sum(int.from_bytes(o, "little") for o in ops)) % (1 << 64))),
}

SEEDS = [int(os.environ["LSMKV_MODEL_SEED"])] if "LSMKV_MODEL_SEED" in os.environ else [1, 2]
STEPS = int(os.environ.get("LSMKV_MODEL_STEPS", "2500"))


def _key(rng):
    if rng.random() < 0.02:
        return b""
    return b"k%04d" % rng.randrange(400)


def _range(rng):
    a, b = sorted([_key(rng), _key(rng)])
    if rng.random() < 0.6:
        b = min(b, b"k%04d" % min(399, int(a[1:] or b"0") + rng.randrange(1, 30)))
        if b < a:
            a, b = b, a
    return a, b


class Model:
    """key -> [base value or None, base expiry (s) or None, operands oldest first]."""

    def __init__(self, fold):
        self.d = {}
        self.fold = fold

    def put(self, k, v, exp):
        self.d[k] = [v, exp, []]

    def delete(self, k):
        self.d.pop(k, None)

    def delete_range(self, a, b):
        for k in [k for k in self.d if a <= k < b]:
            del self.d[k]

    def merge(self, k, op):
        self.d.setdefault(k, [None, None, []])[2].append(op)

    def live(self, now):
        out = {}
        for k, (v, e, ops) in self.d.items():
            base = v if (v is not None and (e is None or e > now)) else None
            if ops:
                out[k] = self.fold(base, list(ops))
            elif base is not None:
                out[k] = base
        return out

    def copy(self):
        m = Model(self.fold)
        m.d = {k: [v, e, list(ops)] for k, (v, e, ops) in self.d.items()}
        return m


@pytest.mark.parametrize("op_id", list(OPERATORS))
@pytest.mark.parametrize("opts_id", list(OPTION_SETS))
@pytest.mark.parametrize("seed", SEEDS)
def test_range_deletes_and_merges_match_model(tmp_path, opts_id, op_id, seed):
    rng = random.Random(seed)
    clock = FakeClock()
    spec, fold = OPERATORS[op_id]
    opts = dict(OPTION_SETS[opts_id], clock=clock, merge_operator=spec)
    path = str(tmp_path / "db")
    db = lsmkv.DB(path, **opts)
    model = Model(fold)
    snaps = []          # (snapshot, frozen model)

    def operand():
        return U(rng.randrange(1, 1000)) if op_id == "uint64add" else b"o%d" % rng.randrange(100)

    def value():
        return U(rng.randrange(1000)) if op_id == "uint64add" else rng.randbytes(rng.choice([0, 5, 50, 200]))

    try:
        for step in range(STEPS):
            r = rng.random()
            ctx = f"seed={seed} opts={opts_id} op={op_id} step={step}"
            if r < 0.22:
                k, v = _key(rng), value()
                ttl = rng.choice([None] * 8 + [0.5, 5.0])
                db.put(k, v, ttl=ttl)
                model.put(k, v, None if ttl is None else clock() + ttl)
            elif r < 0.42:
                k, o = _key(rng), operand()
                db.merge(k, o)
                model.merge(k, o)
            elif r < 0.45:
                k = _key(rng)
                db.delete(k)
                model.delete(k)
            elif r < 0.50:
                a, b = _range(rng)
                db.delete_range(a, b)
                model.delete_range(a, b)
                if a < b and rng.random() < 0.5:     # an operand straight over the tombstone, read back
                    o = operand()
                    db.merge(a, o)
                    model.merge(a, o)
                    assert db.get(a) == model.live(clock()).get(a), f"get over a tombstone {a!r} {ctx}"
            elif r < 0.53:
                with db.write_batch() as wb:
                    for _ in range(rng.randrange(1, 10)):
                        x = rng.random()
                        if x < 0.35:
                            k, v = _key(rng), value()
                            wb.put(k, v)
                            model.put(k, v, None)
                        elif x < 0.7:
                            k, o = _key(rng), operand()
                            wb.merge(k, o)
                            model.merge(k, o)
                        elif x < 0.8:
                            k = _key(rng)
                            wb.delete(k)
                            model.delete(k)
                        else:
                            a, b = _range(rng)
                            wb.delete_range(a, b)
                            model.delete_range(a, b)
            elif r < 0.65:
                k = _key(rng)
                assert db.get(k) == model.live(clock()).get(k), f"get {k!r} {ctx}"
            elif r < 0.67:
                ks = [_key(rng) for _ in range(8)]
                live = model.live(clock())
                assert db.multi_get(ks) == [live.get(k) for k in ks], f"multi_get {ctx}"
            elif r < 0.71:
                live = model.live(clock())
                a, b = sorted([_key(rng), _key(rng)])
                lo, hi = rng.choice([None, a]), rng.choice([None, b])
                want = [(k, live[k]) for k in sorted(live) if (lo is None or k >= lo) and (hi is None or k < hi)]
                reverse = rng.random() < 0.5
                got = list(db.items(lo, hi, reverse=reverse))
                assert got == (want[::-1] if reverse else want), f"items {lo!r}..{hi!r} rev={reverse} {ctx}"
            elif r < 0.74:
                check_cursor(db, model.live(clock()), rng, _key, ctx)
            elif r < 0.76:
                snaps.append((db.snapshot(), model.copy()))
            elif r < 0.79 and snaps:
                snap, frozen = snaps.pop(rng.randrange(len(snaps)))
                want = frozen.live(clock())
                assert dict(snap.items()) == want, f"snapshot items {ctx}"
                assert list(snap.items(reverse=True)) == sorted(want.items(), reverse=True), \
                    f"snapshot reverse {ctx}"
                k = _key(rng)
                assert snap.get(k) == want.get(k), f"snapshot get {ctx}"
                ks = [_key(rng) for _ in range(6)]
                assert snap.multi_get(ks) == [want.get(x) for x in ks], f"snapshot multi_get {ctx}"
                check_cursor(snap, want, rng, _key, ctx)
                snap.close()
            elif r < 0.83:
                db.flush()
            elif r < 0.85:
                compact_some(db, rng, _key)
            elif r < 0.86:
                db = reopen(db, snaps, path, opts)
            elif r < 0.89:
                clock.advance(rng.choice([0.125, 1.0, 3.0]))
            else:
                k = _key(rng)
                assert (k in db) == (k in model.live(clock())), f"contains {ctx}"
        assert dict(db.items()) == model.live(clock())
        testing.current_version(db).check()
        for s, _ in snaps:
            s.close()
        snaps.clear()
        db.compact_range()
        assert dict(db.items()) == model.live(clock()), "after a full compaction"
        db.close()
        db = lsmkv.DB(path, **opts)
        live = model.live(clock())
        assert dict(db.items()) == live, "after final reopen"
        assert list(db.items(reverse=True)) == sorted(live.items(), reverse=True)
    finally:
        for s, _ in snaps:
            s.close()
        db.close()


def test_a_transaction_merges_over_a_tombstone_and_a_later_one_conflicts(dbpath):
    with lsmkv.DB(dbpath, merge_operator=("append", b",")) as db:
        db.put(b"k", b"base"); db.merge(b"k", b"a")
        db.delete_range(b"a", b"z")
        with db.transaction() as t:
            t.merge(b"k", b"x")
            assert t.get(b"k") == b"x"
            assert list(t.items()) == list(t.items(reverse=True)) == [(b"k", b"x")]
        assert db.get(b"k") == b"x"
        t = db.transaction()
        t.merge(b"k", b"y")
        db.delete_range(b"k", b"l")              # after begin: the merge's key was written
        with pytest.raises(lsmkv.ConflictError):
            t.commit()
        assert db.get(b"k") is None
