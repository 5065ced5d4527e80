"""txn.merge (lsmkv/core/txn.pxi): a transaction's merge operands are buffered in
its batch, checked at commit like a write, and visible to its own reads (get,
get_for_update, iterators both ways) folded over what it otherwise sees, against
a model (a Python fold of the same built-in); commit, rollback, conflicts with
another writer's merge, TTL bases, operator errors, no operator, and that a
pooled batch carries nothing of a merge into a later transaction."""
import random

import pytest

import lsmkv
from conftest import FakeClock


def u64(n):
    return (n % (1 << 64)).to_bytes(8, "little")


def fold_u64(existing, operands):
    s = 0 if existing is None else int.from_bytes(existing, "little")
    for o in operands:
        s += int.from_bytes(o, "little")
    return u64(s)


def fold_append(existing, operands):
    return b",".join(([] if existing is None else [existing]) + operands)


SMALL = dict(write_buffer_size=64 * 1024, block_size=512, target_file_size_base=64 * 1024)
OPS = {"uint64add": (fold_u64, lambda r: u64(r.randrange(1 << 64))),
       "append": (fold_append, lambda r: b"o%d" % r.randrange(1000))}


def model_items(m, reverse=False):
    return sorted(((k, v) for k, v in m.items() if v is not None), reverse=reverse)


@pytest.mark.parametrize("opname", sorted(OPS))
@pytest.mark.parametrize("seed", range(4))
def test_own_merges_against_a_model(tmp_path, opname, seed):
    fold, operand = OPS[opname]
    spec = opname if opname == "uint64add" else ("append", b",")
    r = random.Random(seed)
    keys = [b"k%02d" % i for i in range(24)]
    with lsmkv.DB(str(tmp_path / "db"), merge_operator=spec, **SMALL) as db:
        dbm = {}                                   # the DB's values (None: absent)
        for _ in range(300):                       # a history with operands in several sources
            k = r.choice(keys)
            c = r.random()
            if c < 0.35:
                v = operand(r); db.put(k, v); dbm[k] = v
            elif c < 0.5:
                db.delete(k); dbm[k] = None
            else:
                o = operand(r); db.merge(k, o); dbm[k] = fold(dbm.get(k), [o])
            if r.random() < 0.02:
                db.flush()
        if seed % 2:
            db.compact_range()
        for attempt in range(2):                   # roll back once, then commit
            txn = db.transaction()
            view = dict(dbm)
            snapshot_db = dict(dbm)
            for step in range(150):
                k = r.choice(keys)
                c = r.random()
                if c < 0.2:
                    v = operand(r); txn.put(k, v); view[k] = v
                elif c < 0.3:
                    txn.delete(k); view[k] = None
                elif c < 0.65:
                    o = operand(r); txn.merge(k, o); view[k] = fold(view.get(k), [o])
                elif c < 0.8:
                    assert txn.get(k) == view.get(k), (step, k)
                else:
                    assert txn.get_for_update(k, b"-") == (view.get(k) or b"-"), (step, k)
                if r.random() < 0.05:              # others write keys the transaction does not touch
                    db.put(b"other%d" % step, b"x"); dbm[b"other%d" % step] = b"x"
                if r.random() < 0.03:
                    db.flush()
                if r.random() < 0.06:
                    lo = r.choice([None, r.choice(keys)])
                    assert txn.items(lo) == [kv for kv in model_items(view) if lo is None or kv[0] >= lo]
                    assert txn.items(reverse=True) == model_items(view, reverse=True)
            assert txn.items() == model_items(view)
            assert txn.items(reverse=True) == model_items(view, reverse=True)
            if attempt == 0:
                txn.rollback()
                for k in keys:
                    assert db.get(k) == dbm.get(k)
            else:
                txn.commit()
                for k in keys:
                    assert db.get(k) == view.get(k), k
                for k, v in view.items():
                    dbm[k] = v
                snapshot_db.clear()
        db.flush(); db.compact_range()
        for k in keys:
            assert db.get(k) == dbm.get(k)
    with lsmkv.DB(str(tmp_path / "db"), merge_operator=spec, **SMALL) as db:
        for k in keys:
            assert db.get(k) == dbm.get(k)


def test_merges_over_own_put_delete_and_the_snapshot(dbpath):
    with lsmkv.DB(dbpath, merge_operator=("append", b",")) as db:
        db.put(b"s", b"snap"); db.merge(b"s", b"m")
        db.put(b"d", b"gone")
        with db.transaction() as txn:
            txn.merge(b"s", b"t1")
            db.merge(b"s", b"later")                  # after begin: not seen
            assert txn.get(b"s") == b"snap,m,t1"
            txn.delete(b"d"); txn.merge(b"d", b"fresh")
            assert txn.get(b"d") == b"fresh"
            txn.put(b"p", b"own"); txn.merge(b"p", b"x"); txn.merge(b"p", b"y")
            assert txn.get_for_update(b"p") == b"own,x,y"
            txn.merge(b"n", b"new")                   # absent in the snapshot
            assert txn.get(b"n") == b"new"
            txn.put(b"s2", b"a"); txn.merge(b"s2", b"b"); txn.put(b"s2", b"c")   # a put ends the merges
            assert txn.get(b"s2") == b"c"
            txn.merge(b"z", b"1"); txn.delete(b"z")
            assert txn.get(b"z", b"-") == b"-"
            assert db.get(b"d") == b"gone" and db.get(b"p") is None
            txn.rollback()
        assert db.get(b"s") == b"snap,m,later" and db.get(b"d") == b"gone"
        with db.transaction() as txn:
            txn.delete(b"d"); txn.merge(b"d", b"fresh")
            txn.put(b"p", b"own"); txn.merge(b"p", b"x")
            txn.merge(b"z", b"1"); txn.delete(b"z")
        assert (db.get(b"d"), db.get(b"p"), db.get(b"z")) == (b"fresh", b"own,x", None)


def test_a_ttl_put_under_own_merges(dbpath):
    clock = FakeClock()
    with lsmkv.DB(dbpath, merge_operator=("append", b","), clock=clock) as db:
        with db.transaction() as txn:
            txn.put(b"k", b"base", ttl=10); txn.merge(b"k", b"x")
            assert txn.get(b"k") == b"base,x"
            it = txn.iterator()
            it.seek_to_first()
            assert it.item() == (b"k", b"base,x")
            it.close()
            clock.advance(11)
            assert txn.get(b"k") == b"x"                      # the base expired: no base
            assert txn.items() == [(b"k", b"x")]
            clock.advance(-11)
        assert db.get(b"k") == b"base,x"
        clock.advance(11)
        assert db.get(b"k") == b"x"                           # what the DB shows the same way


def test_an_iterator_shows_the_merges_made_before_it(dbpath):
    with lsmkv.DB(dbpath, merge_operator=("append", b",")) as db:
        db.put(b"a", b"1"); db.put(b"b", b"2"); db.put(b"c", b"3")
        with db.transaction() as txn:
            txn.merge(b"b", b"x")
            it = txn.iterator()
            txn.merge(b"b", b"y")                   # after the iterator: not in it
            txn.merge(b"bb", b"new")
            it.seek(b"b")
            assert it.item() == (b"b", b"2,x")
            it.next(); assert it.item() == (b"c", b"3")
            it.prev(); assert it.item() == (b"b", b"2,x")
            it.prev(); assert it.item() == (b"a", b"1")
            it.close()
            assert txn.items() == [(b"a", b"1"), (b"b", b"2,x,y"), (b"bb", b"new"), (b"c", b"3")]
            assert txn.keys(reverse=True) == [b"c", b"bb", b"b", b"a"]
            assert txn.items(b"b", b"c", reverse=True) == [(b"bb", b"new"), (b"b", b"2,x,y")]


def test_merges_are_checked_at_commit(dbpath):
    with lsmkv.DB(dbpath, merge_operator="uint64add") as db:
        db.put(b"n", u64(1))
        txn = db.transaction()
        txn.merge(b"n", u64(10)); txn.put(b"log", b"x")
        db.merge(b"n", u64(100))                # another writer's merge of the same key
        with pytest.raises(lsmkv.ConflictError):
            txn.commit()
        assert db.get(b"n") == u64(101) and db.get(b"log") is None
        txn = db.transaction()                  # a merge conflicts with another's put too,
        txn.merge(b"m", u64(1))
        db.put(b"m", u64(5))
        with pytest.raises(lsmkv.ConflictError):
            txn.commit()
        txn = db.transaction()                  # and a get_for_update with another's merge
        txn.get_for_update(b"n")
        db.merge(b"n", u64(1))
        txn.put(b"other", b"y")
        with pytest.raises(lsmkv.ConflictError):
            txn.commit()
        txn = db.transaction()                  # others' merges of other keys: no conflict
        txn.merge(b"n", u64(1))
        db.merge(b"q", u64(1))
        txn.commit()
        assert db.get(b"n") == u64(103)


def test_merge_without_an_operator_is_refused_at_once(dbpath):
    with lsmkv.DB(dbpath) as db:
        txn = db.transaction()
        with pytest.raises(lsmkv.MergeOperatorError, match="merge_operator"):
            txn.merge(b"k", b"v")
        txn.put(b"k", b"v")
        txn.commit()                           # nothing of the refused merge was kept
        assert db.get(b"k") == b"v"


def test_an_operator_error_reaches_the_caller(dbpath):
    with lsmkv.DB(dbpath, merge_operator="uint64add") as db:
        db.put(b"k", b"not8")
        with db.transaction() as txn:
            txn.merge(b"k", u64(1))
            with pytest.raises(lsmkv.MergeOperatorError, match="8"):
                txn.get(b"k")
            with pytest.raises(lsmkv.MergeOperatorError):
                txn.items()
            txn.rollback()
        assert db.get(b"k") == b"not8"


def test_a_bad_operand_type_changes_nothing(dbpath):
    with lsmkv.DB(dbpath, merge_operator=("append", b",")) as db:
        with db.transaction() as txn:
            with pytest.raises(TypeError, match="operand"):
                txn.merge(b"k", 5)
            with pytest.raises(TypeError, match="key"):
                txn.merge(5, b"x")
            txn.merge(bytearray(b"k"), memoryview(b"ok"))
            assert txn.get(b"k") == b"ok"
        assert db.get(b"k") == b"ok"


@pytest.mark.parametrize("end", ["rollback", "commit", "conflict"])
def test_a_pooled_batch_carries_no_merge_into_the_next_transaction(tmp_path, end):
    with lsmkv.DB(str(tmp_path / "m"), merge_operator=("append", b",")) as dm, \
            lsmkv.DB(str(tmp_path / "plain")) as dp:
        for _ in range(10):                    # fill the pool with batches that held a merge
            txns = [dm.transaction() for _ in range(10)]
            for t in txns:
                t.merge(b"k", b"x")
            if end == "conflict":
                dm.put(b"k", b"w")
            for t in txns:
                if end == "rollback":
                    t.rollback()
                else:
                    try:
                        t.commit()
                    except lsmkv.ConflictError:
                        pass
            for _ in range(10):                 # a DB without an operator takes them: its puts commit
                with dp.transaction() as t:
                    t.put(b"p", b"v")
        assert dp.get(b"p") == b"v"


@pytest.mark.parametrize("seed", range(6))
def test_iterator_moves_over_merged_keys_against_a_model(dbpath, seed):
    # seek, seek_for_prev, next/prev walks changing direction, bounds and prefixes,
    # over a snapshot (flushed in part) with the transaction's puts, deletes and merges
    r = random.Random(seed)
    alpha = [b"a", b"ab", b"abc", b"b", b"ba", b"bb", b"c", b"\xff", b"\xff\xff", b""]
    with lsmkv.DB(dbpath, merge_operator=("append", b","), **SMALL) as db:
        m = {}
        for i in range(80):
            k = r.choice(alpha) + r.choice(alpha)
            c = r.random()
            if c < 0.5:
                db.put(k, b"v%d" % i); m[k] = b"v%d" % i
            elif c < 0.7:
                db.delete(k); m.pop(k, None)
            else:
                db.merge(k, b"d%d" % i); m[k] = fold_append(m.get(k), [b"d%d" % i])
            if i == 40:
                db.flush()
        txn = db.transaction()
        view = dict(m)
        for i in range(40):
            k = r.choice(alpha) + r.choice(alpha)
            c = r.random()
            if c < 0.3:
                txn.put(k, b"t%d" % i); view[k] = b"t%d" % i
            elif c < 0.5:
                txn.delete(k); view.pop(k, None)
            else:
                txn.merge(k, b"m%d" % i); view[k] = fold_append(view.get(k), [b"m%d" % i])
        db.put(b"zz", b"after begin")               # not seen by the transaction
        for _ in range(150):
            lo, hi = r.choice([None] + alpha), r.choice([None] + alpha)
            pre = r.choice([None, None] + alpha)
            exp = sorted((k, v) for k, v in view.items() if (lo is None or k >= lo)
                         and (hi is None or k < hi) and (pre is None or k.startswith(pre)))
            with txn.iterator(lo, hi, prefix=pre) as it:
                assert list(it) == exp
                it.seek_to_last()
                back = []
                while it.valid():
                    back.append(it.item()); it.prev()
                assert back == exp[::-1]
                s = r.choice(alpha) + r.choice(alpha)
                it.seek(s)
                ge = [kv for kv in exp if kv[0] >= s]
                assert (it.item() if it.valid() else None) == (ge[0] if ge else None)
                if it.valid():
                    idx = exp.index(it.item())
                    for _ in range(6):
                        if r.random() < 0.5:
                            it.prev(); idx -= 1
                        else:
                            it.next(); idx += 1
                        want = exp[idx] if 0 <= idx < len(exp) else None
                        assert (it.item() if it.valid() else None) == want
                        if want is None:
                            break
                it.seek_for_prev(s)
                le = [kv for kv in exp if kv[0] <= s]
                assert (it.item() if it.valid() else None) == (le[-1] if le else None)
        txn.commit()
        assert [kv for kv in db.items() if kv[0] != b"zz"] == sorted(view.items())
