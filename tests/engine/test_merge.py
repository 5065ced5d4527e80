"""Merge operators: each built-in, the option and its record, errors (reads,
flushes, compactions), TTL bases, snapshot boundaries, partial merges, and the
tools that copy or rebuild a DB (checkpoint, repair). The seeded model test is
tests/engine/test_merge_model.py."""
import os

import pytest

import lsmkv
from conftest import FakeClock


def u64(n):
    return (n % (1 << 64)).to_bytes(8, "little")


def val(b):
    return int.from_bytes(b, "little")


SMALL = dict(write_buffer_size=64 * 1024, block_size=512, target_file_size_base=64 * 1024)


# ---------------------------------------------------------------- built-ins

def test_uint64add_wraps_and_folds_over_a_put(dbpath):
    with lsmkv.DB(dbpath, merge_operator="uint64add") as db:
        db.merge(b"c", u64(5))
        db.merge(b"c", u64(7))
        assert val(db.get(b"c")) == 12
        db.put(b"w", u64((1 << 64) - 2))
        db.merge(b"w", u64(3))                 # wraps
        assert val(db.get(b"w")) == 1
        db.merge(bytearray(b"m"), memoryview(u64(2)))     # bytes-likes
        assert db.get(b"m") == u64(2)
        db.flush()
        db.merge(b"c", u64(1))
        assert val(db.get(b"c")) == 13
        db.compact_range()
        assert val(db.get(b"c")) == 13 and val(db.get(b"w")) == 1


def test_uint64add_rejects_values_that_are_not_8_bytes(dbpath):
    with lsmkv.DB(dbpath, merge_operator="uint64add") as db:
        db.put(b"k", b"not a number")
        db.merge(b"k", u64(1))
        with pytest.raises(lsmkv.MergeOperatorError, match=r"uint64add: the existing value of key b'k' is 12 bytes"):
            db.get(b"k")
        db.merge(b"j", b"abc")
        with pytest.raises(lsmkv.MergeOperatorError, match=r"merge operand of key b'j' is 3 bytes, not 8"):
            db.get(b"j")
        with pytest.raises(lsmkv.MergeOperatorError):
            list(db.items())
        db.merge(b"fine", u64(1))
        db.flush()                             # what cannot be folded is kept as it is
        db.compact_range()
        db.put(b"after", b"x")                 # no background error: still writable
        with pytest.raises(lsmkv.MergeOperatorError, match=r"existing value of key b'k'"):
            db.get(b"k")
        with pytest.raises(lsmkv.MergeOperatorError, match=r"operand of key b'j'"):
            db.get(b"j")
        assert val(db.get(b"fine")) == 1
    with lsmkv.DB(dbpath, merge_operator="uint64add") as db:
        with pytest.raises(lsmkv.MergeOperatorError):
            db.get(b"k")
        db.put(b"j", u64(4))                   # a put over the bad operand: readable again
        db.delete(b"k")
        db.merge(b"k", u64(2))
        assert val(db.get(b"j")) == 4 and val(db.get(b"k")) == 2
        db.compact_range()
        assert val(db.get(b"j")) == 4 and val(db.get(b"k")) == 2


def test_append_with_and_without_delimiter(tmp_path):
    for spec, want in [("append", b"abc"), (("append", b", "), b"a, b, c"),
                       (lsmkv.AppendOperator(b"/"), b"a/b/c")]:
        with lsmkv.DB(str(tmp_path / repr(spec)), merge_operator=spec) as db:
            db.put(b"k", b"a")
            db.merge(b"k", b"b")
            db.flush()
            db.merge(b"k", b"c")
            assert db.get(b"k") == want
            db.compact_range()
            assert db.get(b"k") == want
            db.merge(b"new", b"x")
            assert db.get(b"new") == b"x"


def test_max_is_bytewise(dbpath):
    with lsmkv.DB(dbpath, merge_operator="max") as db:
        db.put(b"k", b"b")
        for v in (b"a", b"ba", b"\xff", b"c"):
            db.merge(b"k", v)
        assert db.get(b"k") == b"\xff"
        db.delete(b"k")
        db.merge(b"k", b"a")
        assert db.get(b"k") == b"a"


def test_operators_directly():
    op = lsmkv.UInt64AddOperator()
    assert op.partial_merge(b"k", [u64(1), u64(2)]) == u64(3)
    assert lsmkv.AppendOperator(b"-").partial_merge(b"k", [b"a", b"b"]) == b"a-b"
    assert lsmkv.MaxOperator().full_merge(b"k", None, [b"a", b"c"]) == b"c"
    assert lsmkv.AppendOperator(b",").name != lsmkv.AppendOperator(b";").name


# ---------------------------------------------------------------- the option

def test_merge_without_an_operator_is_a_clear_error(dbpath):
    with lsmkv.DB(dbpath) as db:
        with pytest.raises(lsmkv.MergeOperatorError, match="merge_operator"):
            db.merge(b"k", b"v")
        wb = db.write_batch()
        wb.put(b"a", b"1")
        wb.merge(b"k", b"v")
        with pytest.raises(lsmkv.MergeOperatorError, match="merge_operator"):
            db.write(wb)
        assert db.get(b"a") is None and db.get(b"k") is None      # nothing of the batch


@pytest.mark.parametrize("spec, exc", [
    ("sum", ValueError), (("append",), ValueError), (("prepend", b","), ValueError),
    (42, TypeError), (lambda k, e, o: b"", TypeError), (("append", "str"), TypeError),
])
def test_bad_merge_operator_option(dbpath, spec, exc):
    with pytest.raises(exc, match="merge_operator|delimiter"):
        lsmkv.DB(dbpath, merge_operator=spec)
    assert not os.path.exists(os.path.join(dbpath, "MERGE_OPERATOR"))


def test_the_operator_is_recorded_and_checked_at_open(dbpath):
    with lsmkv.DB(dbpath, merge_operator="uint64add") as db:
        db.merge(b"k", u64(1))
    with open(os.path.join(dbpath, "MERGE_OPERATOR"), "rb") as fh:
        assert fh.read() == b"uint64add"
    with pytest.raises(lsmkv.MergeOperatorError, match="records merge operator 'uint64add', not 'max'"):
        lsmkv.DB(dbpath, merge_operator="max")
    with pytest.raises(lsmkv.MergeOperatorError, match="open it with merge_operator='uint64add'"):
        lsmkv.DB(dbpath)
    with pytest.raises(lsmkv.MergeOperatorError):
        lsmkv.DB(dbpath, read_only=True)
    with pytest.raises(lsmkv.MergeOperatorError, match="not 'append:2c'"):
        lsmkv.DB(dbpath, merge_operator=("append", b","))
    with lsmkv.DB(dbpath, merge_operator="uint64add", read_only=True) as db:
        assert val(db.get(b"k")) == 1
    with lsmkv.DB(dbpath, merge_operator="uint64add") as db:
        assert val(db.get(b"k")) == 1


def test_a_callable_is_recorded_by_its_name(dbpath):
    def concat(key, existing, operands):
        return (existing or b"") + b"".join(operands)

    class Named:
        name = "concat"

        def __call__(self, key, existing, operands):
            return (existing or b"") + b"".join(operands)

    with lsmkv.DB(dbpath, merge_operator=concat) as db:
        db.merge(b"k", b"a")
    with lsmkv.DB(dbpath, merge_operator=Named()) as db:     # same name: accepted
        db.merge(b"k", b"b")
        assert db.get(b"k") == b"ab"
    with pytest.raises(lsmkv.MergeOperatorError, match="'concat'"):
        lsmkv.DB(dbpath, merge_operator="append")


def test_a_db_opened_without_merges_can_take_an_operator_later(dbpath):
    with lsmkv.DB(dbpath) as db:
        db.put(b"k", b"a")
    with lsmkv.DB(dbpath, merge_operator="append") as db:
        db.merge(b"k", b"b")
        assert db.get(b"k") == b"ab"


# ---------------------------------------------------------------- read paths

def test_every_read_path_folds(dbpath):
    with lsmkv.DB(dbpath, merge_operator=("append", b",")) as db:
        db.put(b"a", b"1")
        db.merge(b"b", b"x")
        db.put(b"c", b"3")
        db.flush()
        db.merge(b"b", b"y")
        db.merge(b"a", b"2")
        want = [(b"a", b"1,2"), (b"b", b"x,y"), (b"c", b"3")]
        assert list(db.items()) == want
        assert list(db.items(reverse=True)) == want[::-1]
        assert list(db.keys()) == [k for k, _ in want]
        assert list(db.values(reverse=True)) == [v for _, v in want][::-1]
        assert db.multi_get([b"c", b"b", b"zz", b"a"]) == [b"3", b"x,y", None, b"1,2"]
        assert db[b"b"] == b"x,y" and b"b" in db
        assert db.get_with_ttl(b"b") == (b"x,y", None)
        v = db.get_view(b"a")
        assert bytes(memoryview(v)) == b"1,2"
        v.release()
        with db.iterator() as it:
            it.seek_to_last()
            assert it.item() == (b"c", b"3")
            it.prev()
            assert it.item() == (b"b", b"x,y")
            it.next()
            assert it.item() == (b"c", b"3")
            it.seek_for_prev(b"bz")
            assert it.item() == (b"b", b"x,y")
            it.prev()
            assert it.item() == (b"a", b"1,2")
            it.next()
            assert it.item() == (b"b", b"x,y")
            it.next()
            assert it.item() == (b"c", b"3")
            it.seek(b"b")
            assert list(it) == want[1:]


def test_a_delete_under_operands_is_a_missing_base(dbpath):
    seen = []

    def record(key, existing, operands):
        seen.append((key, existing, list(operands)))
        return (b"<none>" if existing is None else existing) + b"".join(operands)
    record.name = "record"
    with lsmkv.DB(dbpath, merge_operator=record) as db:
        db.put(b"k", b"old")
        db.delete(b"k")
        db.merge(b"k", b"a")
        db.merge(b"k", b"b")
        assert db.get(b"k") == b"<none>ab"
        assert seen[-1] == (b"k", None, [b"a", b"b"])
        db.flush()
        db.compact_range()
        assert db.get(b"k") == b"<none>ab"


def test_snapshots_see_only_their_operands_across_compactions(dbpath):
    with lsmkv.DB(dbpath, merge_operator=("append", b","), **SMALL) as db:
        db.merge(b"k", b"1")
        s1 = db.snapshot()
        db.merge(b"k", b"2")
        db.merge(b"k", b"3")
        s2 = db.snapshot()
        db.merge(b"k", b"4")
        for _ in range(2):
            assert s1.get(b"k") == b"1" and s2.get(b"k") == b"1,2,3" and db.get(b"k") == b"1,2,3,4"
            assert dict(s1.items()) == {b"k": b"1"} and list(s2.items(reverse=True)) == [(b"k", b"1,2,3")]
            assert s2.multi_get([b"k"]) == [b"1,2,3"]
            db.flush()
            db.compact_range()
        s1.close()
        s2.close()
        db.compact_range()
        assert db.get(b"k") == b"1,2,3,4"


def test_flush_partially_merges_where_the_operator_can(tmp_path):
    class NoPartial:
        name = "nopartial"

        def __call__(self, key, existing, operands):
            return (existing or b"") + b"".join(operands)

    for spec, folds in [("append", True), (NoPartial(), False)]:
        with lsmkv.DB(str(tmp_path / str(folds)), merge_operator=spec) as db:
            db.put(b"a", b"x")                 # a table below k's range: the flush is not at the
            db.put(b"z", b"x")                 # bottom (where it would merge fully, flush.py)
            db.flush()
            db.compact_range()
            for c in b"abcd":
                db.merge(b"k", bytes([c]))
            db.flush()
            assert (db.stats()["merges_folded"] > 0) == folds
            assert db.get(b"k") == b"abcd"
            db.compact_range()                 # the bottommost level: a full merge
            assert db.get(b"k") == b"abcd"


# ---------------------------------------------------------------- TTL bases

def test_a_ttl_base_under_operands(dbpath):
    clock = FakeClock()
    with lsmkv.DB(dbpath, merge_operator=("append", b","), clock=clock, **SMALL) as db:
        db.put(b"k", b"base", ttl=10)
        db.merge(b"k", b"m1")
        assert db.get(b"k") == b"base,m1"
        assert db.ttl(b"k") is None            # the merged value has no ttl
        db.flush()
        db.compact_range()                     # the base is live: it is not folded into a plain put
        db.merge(b"k", b"m2")
        assert db.get(b"k") == b"base,m1,m2"
        clock.advance(11)
        assert db.get(b"k") == b"m1,m2"        # the base expired: the operands remain
        assert list(db.items(reverse=True)) == [(b"k", b"m1,m2")]
        db.flush()
        db.compact_range()
        assert db.get(b"k") == b"m1,m2"
    with lsmkv.DB(dbpath, merge_operator=("append", b","), clock=clock) as db:
        assert db.get(b"k") == b"m1,m2"


# ---------------------------------------------------------------- operator errors

class Flaky:
    """Concatenates; raises on key b"bad" while armed."""
    name = "flaky"

    def __init__(self, armed=True):
        self.armed = armed

    def __call__(self, key, existing, operands):
        if self.armed and key == b"bad":
            raise RuntimeError("operator exploded")
        return (existing or b"") + b"".join(operands)


def test_an_operator_error_reaches_the_reader(dbpath):
    with lsmkv.DB(dbpath, merge_operator=Flaky()) as db:
        db.merge(b"bad", b"x")
        db.merge(b"good", b"y")
        for read in (lambda: db.get(b"bad"), lambda: db.multi_get([b"good", b"bad"]),
                     lambda: list(db.items()), lambda: list(db.items(reverse=True))):
            with pytest.raises(RuntimeError, match="operator exploded"):
                read()
        with db.iterator() as it:
            with pytest.raises(RuntimeError):
                it.seek(b"bad")
        assert db.get(b"good") == b"y"


def test_an_operator_error_in_a_flush_fails_it_and_loses_nothing(dbpath):
    op = Flaky()
    db = lsmkv.DB(dbpath, merge_operator=op)
    try:
        db.put(b"bad", b"base")
        db.merge(b"bad", b"+1")
        db.put(b"other", b"v")
        op.armed = True
        with pytest.raises(lsmkv.BackgroundError, match=r"b'bad'.*operator exploded"):
            db.flush()
        with pytest.raises(lsmkv.BackgroundError):
            db.put(b"x", b"y")
    finally:
        db.close()
    with lsmkv.DB(dbpath, merge_operator=Flaky(armed=False)) as db:
        assert db.get(b"bad") == b"base+1" and db.get(b"other") == b"v"


def test_an_operator_error_in_a_compaction_names_the_key_and_loses_nothing(dbpath):
    op = Flaky(armed=False)
    db = lsmkv.DB(dbpath, merge_operator=op, compaction_worker="process")
    try:
        db.merge(b"bad", b"a")
        db.merge(b"ok", b"1")
        db.flush()
        db.merge(b"bad", b"b")
        db.flush()
        op.armed = True
        with pytest.raises(lsmkv.LsmkvError, match=r"merge operator 'flaky' failed on key b'bad'"):
            db.compact_range()
    finally:
        db.close()
    with lsmkv.DB(dbpath, merge_operator=Flaky(armed=False)) as db:
        assert db.get(b"bad") == b"ab" and db.get(b"ok") == b"1"
        db.compact_range()
        assert db.get(b"bad") == b"ab"


def test_a_callable_compacts_in_process_with_process_workers(dbpath):
    calls = []

    def concat(key, existing, operands):
        calls.append(os.getpid())
        return (existing or b"") + b"".join(operands)
    with lsmkv.DB(dbpath, merge_operator=concat, compaction_worker="process", **SMALL) as db:
        for i in range(200):
            db.merge(b"k%d" % (i % 7), b"%d," % i)
            if i % 50 == 49:
                db.flush()
        db.compact_range()
        assert db.get(b"k3") == b"".join(b"%d," % i for i in range(3, 200, 7))
        assert calls and set(calls) == {os.getpid()}


# ---------------------------------------------------------------- tools

def test_checkpoint_carries_the_operator_and_repair_keeps_operands(tmp_path):
    src, dest = str(tmp_path / "src"), str(tmp_path / "cp")
    with lsmkv.DB(src, merge_operator="uint64add") as db:
        db.merge(b"k", u64(2))
        db.flush()
        db.merge(b"k", u64(3))
        db.checkpoint(dest)
    with pytest.raises(lsmkv.MergeOperatorError):
        lsmkv.DB(dest)
    with lsmkv.DB(dest, merge_operator="uint64add") as db:
        assert val(db.get(b"k")) == 5
    lsmkv.repair(src)
    with lsmkv.DB(src, merge_operator="uint64add") as db:
        assert val(db.get(b"k")) == 5
    lsmkv.destroy(src)
    assert not os.path.exists(src)


class Sum(lsmkv.MergeOperator):
    """A Python subclass with a partial merge: decimal text counters."""

    def __init__(self):
        self.name = "decimal-sum"
        self.can_partial = True

    def full_merge(self, key, existing, operands):
        return b"%d" % (int(existing or b"0") + sum(map(int, operands)))

    def partial_merge(self, key, operands):
        return b"%d" % sum(map(int, operands))


def test_a_python_subclass_of_merge_operator(dbpath):
    with lsmkv.DB(dbpath, merge_operator=Sum(), compaction_worker="process", **SMALL) as db:
        for i in range(300):
            db.merge(b"n%d" % (i % 3), b"%d" % i)
            if i % 100 == 99:
                db.flush()
        assert db.stats()["merges_folded"] > 0          # partial merges at flush
        db.compact_range()
        assert db.multi_get([b"n0", b"n1", b"n2"]) == [b"%d" % sum(range(j, 300, 3)) for j in range(3)]
    with pytest.raises(lsmkv.MergeOperatorError, match="'decimal-sum'"):
        lsmkv.DB(dbpath, merge_operator="uint64add")

    class Nameless(lsmkv.MergeOperator):
        def full_merge(self, key, existing, operands):
            return b""
    with pytest.raises(TypeError, match="needs a name"):
        lsmkv.DB(dbpath + "-2", merge_operator=Nameless())


def test_an_operator_error_in_a_background_compaction_sets_the_background_error(dbpath):
    import time
    op = Flaky(armed=True)                   # no partial merge: flushes never call it here
    db = lsmkv.DB(dbpath, merge_operator=op, level0_file_num_compaction_trigger=2,
                  compaction_worker="process")
    try:
        db.put(b"a", b"x")                   # a table below: the flushes are not at the bottom
        db.put(b"z", b"x")
        db.flush()
        db.compact_range()
        db.merge(b"bad", b"a")
        db.flush()
        db.merge(b"bad", b"b")
        db.flush()                           # two L0 files: a compaction starts, and fails
        deadline = time.monotonic() + 20
        while True:
            try:
                db.put(b"probe", b"x")
            except lsmkv.BackgroundError as e:
                assert "merge operator 'flaky' failed on key b'bad'" in str(e)
                break
            assert time.monotonic() < deadline, "the compaction did not fail"
            time.sleep(0.05)
    finally:
        db.close()
    with lsmkv.DB(dbpath, merge_operator=Flaky(armed=False)) as db:
        assert db.get(b"bad") == b"ab"


def test_a_secondary_folds_what_it_follows(tmp_path):
    path = str(tmp_path / "db")
    primary = lsmkv.DB(path, merge_operator=("append", b","))
    try:
        primary.put(b"k", b"a")
        primary.flush()
        primary.merge(b"k", b"b")
        with pytest.raises(lsmkv.MergeOperatorError):
            lsmkv.DB(path, secondary=str(tmp_path / "sec0"))
        with lsmkv.DB(path, secondary=str(tmp_path / "sec"), merge_operator=("append", b",")) as sec:
            assert sec.get(b"k") == b"a,b"
            primary.merge(b"k", b"c")
            primary.flush()
            primary.merge(b"k", b"d")
            sec.catch_up()
            assert sec.get(b"k") == b"a,b,c,d" and list(sec.items(reverse=True)) == [(b"k", b"a,b,c,d")]
    finally:
        primary.close()


def test_a_flush_with_nothing_below_writes_as_the_bottommost_level(tmp_path):
    """flush.py invariant 4: a memtable whose key range meets no table is written
    as compaction writes the bottommost level (operands fully merged into a put,
    deletions every snapshot sees dropped, sequences set to 0); with a table below
    its range, or a snapshot older than the entries, it is not."""
    with lsmkv.DB(str(tmp_path / "db"), merge_operator="uint64add") as db:
        for _ in range(3):
            db.merge(b"k", (1).to_bytes(8, "little"))
        db.put(b"d", b"v")
        db.delete(b"d")
        db.flush()
        assert db.get(b"k") == (3).to_bytes(8, "little")
        assert db.newest_sequence(b"k") == 0 and db.newest_sequence(b"d") is None
        # the table ([b"k", b"k"]: d is gone) lies below [b"j", b"l"]: a flush there keeps
        # sequences and deletions
        db.merge(b"j", (1).to_bytes(8, "little"))
        db.delete(b"l")
        seq = db.last_seq
        db.flush()
        assert db.newest_sequence(b"j") == seq - 1 and db.newest_sequence(b"l") == seq
    with lsmkv.DB(str(tmp_path / "snap"), merge_operator="uint64add") as db:
        snap = db.snapshot()                    # older than every entry: nothing is folded to 0
        db.merge(b"k", (1).to_bytes(8, "little"))
        db.delete(b"d")
        db.flush()
        assert db.newest_sequence(b"k") == 1 and db.newest_sequence(b"d") == 2
        assert snap.get(b"k") is None
        snap.close()


def test_a_stack_of_operands_across_data_blocks_folds_whole(tmp_path):
    """A point read takes a key's operands from the one data block the index
    names; a stack that goes on into the next blocks is read whole all the same
    (mergeget.pxi: the table iterator after the block's end)."""
    one = (1).to_bytes(8, "little")
    with lsmkv.DB(str(tmp_path / "db"), merge_operator="uint64add", block_size=256) as db:
        db.put(b"a", b"x")
        db.put(b"z", b"x")
        snap = db.snapshot()                  # older than the operands: the flush keeps each one
        db.put(b"k", (1000).to_bytes(8, "little"))
        for _ in range(300):
            db.merge(b"k", one)               # 300 entries of ~30 bytes: many 256-byte blocks
        db.flush()
        assert db.get(b"k") == (1300).to_bytes(8, "little")
        assert db.multi_get([b"k", b"a"]) == [(1300).to_bytes(8, "little"), b"x"]
        assert snap.get(b"k") is None
        snap.close()
