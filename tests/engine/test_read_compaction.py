"""Read-triggered compaction: reads are charged what merging level 0 into level 1
would save them, the level-0 tables they consult past their first run
(lsmkv.core.iterator.ReadCharge), and once the charge pays for that merge
(lsmkv.engine.compaction.read_compaction_units) a background compaction does it,
with the reason "reads". The charge is against the current level 0 only."""
import random
import time

import lsmkv
from lsmkv import testing
from lsmkv.engine.compaction import READ_CHARGE_BYTES, read_compaction_units
from lsmkv.engine.version import FileMeta, Version

SEEK_CHARGE = 16     # a block read (lsmkv/core/iterator.pxd)


def _key(i):
    return b"key:%06d" % i


def _value(i, f):
    return b"v%d-%d" % (i, f) * 4


def _fill_three_tables(h):
    """Keys 0..2999 into three overlapping level-0 tables of h (a DB or a column
    family): table f holds the keys i with i % 3 == f. Returns the model."""
    model = {}
    for f in range(3):
        for i in range(f, 3000, 3):
            h.put(_key(i), _value(i, f))
            model[_key(i)] = _value(i, f)
        h.flush()
    assert h.stats()["levels"][0]["files"] == 3
    return model


def _three_level0_tables(path, **opts):
    """A DB whose keys sit in three overlapping level-0 tables (_fill_three_tables).
    Returns (db, model)."""
    db = lsmkv.DB(path, write_buffer_size=1 << 20, level0_file_num_compaction_trigger=8, **opts)
    return db, _fill_three_tables(db)


def _charge_of(h, op):
    """The read charge h (a DB or a column family) gained while op() ran."""
    before = h.stats()["read_charge"]
    op()
    return h.stats()["read_charge"] - before


def _seek_until_merged(db, seek, timeout=30):
    """Call seek(n) for n = 0, 1, ... until db has run a "reads" compaction; returns
    how many seeks that took."""
    deadline = time.monotonic() + timeout
    n = 0
    while db.stats()["compactions_by_reason"].get("reads", 0) == 0:
        assert time.monotonic() < deadline, db.stats()["read_charge"]
        seek(n)
        n += 1
    return n


def test_read_compaction_units_prices_the_merge_by_the_bytes_it_rewrites():
    def t(n, lo, hi, size):
        return FileMeta(n, size, lo + bytes(8), hi + bytes(8))
    empty = [[] for _ in range(5)]
    two = Version([[t(3, b"a", b"m", 1000), t(2, b"c", b"z", 3000)], [t(1, b"b", b"d", 800)]] + empty)
    assert read_compaction_units(two) == (1000 + 3000 + 800) // READ_CHARGE_BYTES
    below = Version([[t(3, b"a", b"m", 1000)], [t(1, b"b", b"d", 800), t(4, b"x", b"z", 9000)]] + empty)
    assert read_compaction_units(below) == (1000 + 800) // READ_CHARGE_BYTES   # only what it overlaps
    alone = Version([[t(3, b"a", b"m", 1000)], [t(4, b"x", b"z", 9000)]] + empty)
    assert read_compaction_units(alone) == 0       # one run before and after: nothing to buy
    assert read_compaction_units(Version()) == 0


def test_gets_charge_each_run_past_their_first(dbpath):
    db, model = _three_level0_tables(dbpath, read_triggered_compaction=False)
    try:
        def charge_of(op):
            return _charge_of(db, op)
        # the newest table (f = 2) answers: one run asked, nothing charged
        assert charge_of(lambda: db.get(_key(2))) == 0
        # f = 0 is the oldest: two filters passed over first, the third run answers
        assert charge_of(lambda: db.get(_key(3))) == 2
        # absent (in every table's range): three filters, the last two charged;
        # a filter that lets it through (a false positive) would add a block read
        c = charge_of(lambda: db.get(b"key:001500x"))
        assert c in (2, 2 + SEEK_CHARGE - 1, 2 + 2 * (SEEK_CHARGE - 1))
        # multi_get charges as get does
        assert charge_of(lambda: db.multi_get([_key(2), _key(3), _key(4)])) == 0 + 2 + 1
        assert db.stats()["compactions"] == 0
    finally:
        db.close()


def test_seeks_charge_a_block_read_for_each_run_past_the_first(dbpath):
    db, model = _three_level0_tables(dbpath, read_triggered_compaction=False)
    try:
        it = db.iterator()
        before = db.stats()["read_charge"]
        it.seek(b"key:0015")            # not a key: all three tables are positioned
        assert it.key() == _key(1500)
        assert db.stats()["read_charge"] - before == 2 * SEEK_CHARGE
        before = db.stats()["read_charge"]
        it.seek_to_first()
        it.seek_for_prev(b"key:0020")
        assert it.key() == _key(1999)
        assert db.stats()["read_charge"] - before == 4 * SEEK_CHARGE
        it.close()
        before = db.stats()["read_charge"]
        assert [k for k, _ in db.items(_key(2990))] == [_key(i) for i in range(2990, 3000)]
        assert db.stats()["read_charge"] - before == 2 * SEEK_CHARGE
    finally:
        db.close()


def test_seeks_that_pay_for_the_merge_compact_level0_and_reads_stay_right(dbpath):
    db, model = _three_level0_tables(dbpath)
    try:
        rng = random.Random(7)
        keys = sorted(model)
        need = read_compaction_units(testing.current_version(db))
        assert need > 0

        def seek(_):
            i = rng.randrange(3000)
            got = next(iter(db.items(_key(i) + b"!")), None)
            j = keys.index(_key(i)) + 1
            assert got == ((keys[j], model[keys[j]]) if j < len(keys) else None)
        seeks = _seek_until_merged(db, seek)
        st = db.stats()
        assert st["levels"][0]["files"] == 0 and st["levels"][1]["files"] >= 1
        assert st["read_charge"] < 2 * SEEK_CHARGE * 10      # reset by the merge
        assert seeks >= need // (2 * SEEK_CHARGE)     # each seek charged two runs past its first
        assert dict(db.items()) == model
    finally:
        db.close()


def test_without_the_option_reads_leave_level0_alone(dbpath):
    db, model = _three_level0_tables(dbpath, read_triggered_compaction=False)
    try:
        for _ in range(3):
            for i in range(0, 2999, 7):     # seeks between keys position every table
                assert next(iter(db.items(_key(i) + b"!"))) == (_key(i + 1), model[_key(i + 1)])
        assert db.stats()["read_charge"] * READ_CHARGE_BYTES > sum(
            lv["bytes"] for lv in db.stats()["levels"])       # paid for, many times over
        time.sleep(1.5)                                       # the compaction job's timeout passes
        st = db.stats()
        assert st["levels"][0]["files"] == 3 and st["compactions"] == 0
    finally:
        db.close()


def test_writes_alone_charge_nothing(dbpath):
    db, _ = _three_level0_tables(dbpath)
    try:
        for i in range(3000):
            db.put(_key(i), b"x")
        assert db.stats()["read_charge"] == 0
    finally:
        db.close()


def test_a_column_familys_seeks_compact_its_own_level0(dbpath):
    db = lsmkv.DB(dbpath)
    try:
        cf = db.create_column_family("events", write_buffer_size=1 << 20,
                                     level0_file_num_compaction_trigger=8)
        _fill_three_tables(cf)
        need = read_compaction_units(testing.current_version(cf))

        def seek(n):
            i = n % 2999
            assert next(iter(cf.items(_key(i) + b"!")))[0] == _key(i + 1)
        seeks = _seek_until_merged(db, seek)        # the counters are DB-wide
        assert seeks >= need // (2 * SEEK_CHARGE)
        assert cf.stats()["levels"][0]["files"] == 0
        assert db.stats()["read_charge"] == 0          # the default family read nothing
    finally:
        db.close()


def test_deeper_levels_are_not_charged_and_a_lone_level0_table_is_when_levels_lie_below(dbpath):
    """The merge removes level-0 tables only: a read is charged for those it consults
    past its first run; a seek for each level-0 table it positions, the first one
    too when a deeper level holds a table (the merge would fold it into that run)."""
    db = lsmkv.DB(dbpath, write_buffer_size=1 << 20, level0_file_num_compaction_trigger=8,
                  read_triggered_compaction=False)
    try:
        for i in range(0, 3000):
            db.put(_key(i), _value(i, 9))
        db.flush()
        db.compact_range()                      # every key in level 1
        for i in range(0, 3000, 2):
            db.put(_key(i), _value(i, 0))
        db.flush()                              # one level-0 table over it
        assert [lv["files"] for lv in db.stats()["levels"]][:2] == [1, 1]

        def charge_of(op):
            return _charge_of(db, op)
        assert charge_of(lambda: db.get(_key(1))) == 0          # one L0 filter, then L1: its first run
        assert charge_of(lambda: db.items(_key(1) + b"!").__next__()) == SEEK_CHARGE
        for i in range(1, 3000, 4):
            db.put(_key(i), _value(i, 1))
        db.flush()                              # two level-0 tables
        assert charge_of(lambda: db.get(_key(3))) == 1          # the second L0 filter only
        assert charge_of(lambda: db.items(_key(3) + b"!").__next__()) == 2 * SEEK_CHARGE
    finally:
        db.close()


def test_a_charge_the_merge_cannot_buy_back_does_not_carry_over(dbpath):
    """One level-0 table over no level-1 table: a merge would leave as many runs,
    so what seeks charge is dropped; a flush that then adds a level-0 table starts
    from nothing rather than from that charge (no merge for a one-key table)."""
    db = lsmkv.DB(dbpath, write_buffer_size=1 << 20, level0_file_num_compaction_trigger=8)
    try:
        for i in range(3000):
            db.put(b"b:%06d" % i, b"v" * 40)
        db.flush()
        db.compact_range()
        for i in range(3000):
            db.put(b"a:%06d" % i, b"w" * 40)
        db.flush()
        assert read_compaction_units(testing.current_version(db)) == 0
        for r in range(20000):
            next(iter(db.items(b"a:%06d!" % (r % 2999))))
        deadline = time.monotonic() + 10        # the compaction job looks within a second
        while db.stats()["read_charge"]:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        db.put(b"a:000001", b"z")
        db.flush()
        time.sleep(1.5)
        st = db.stats()
        assert st["compactions_by_reason"].get("reads", 0) == 0
        assert [lv["files"] for lv in st["levels"]][:2] == [2, 1]
    finally:
        db.close()


def test_an_iterator_from_before_the_merge_charges_no_more(dbpath):
    """A cursor reads the version it pinned, which no merge helps: once level 0 was
    merged (the charge restarted), its seeks charge nothing, and a later small
    flush does not bring a merge it paid for."""
    db, model = _three_level0_tables(dbpath)
    try:
        it = db.iterator()

        def seek(n):
            it.seek(_key(n % 2999) + b"!")
            assert it.key() == _key(n % 2999 + 1)
        _seek_until_merged(db, seek)
        while db.stats()["compactions_running"]:
            time.sleep(0.01)
        assert db.stats()["levels"][0]["files"] == 0
        for r in range(5000):
            it.seek(_key(r % 2999) + b"!")
        assert db.stats()["read_charge"] == 0
        it.close()
        db.put(_key(1), b"z")
        db.flush()
        time.sleep(1.5)
        assert db.stats()["compactions_by_reason"].get("reads", 0) == 1
    finally:
        db.close()
