"""The default_ttl option, of the DB and of a column family: a put that names no
ttl (db.put, a batch's, a transaction's) expires default_ttl seconds after it is
written; an explicit ttl wins; merges, deletes and range deletes are unchanged;
a family records its default in the MANIFEST; the expiry is in the log record,
so a reopen without the option still expires what was written with it."""
import pytest

import lsmkv


def _ttls(handle, keys):
    return [handle.ttl(k) for k in keys]


def test_db_default_ttl_covers_every_way_to_put(dbpath, clock):
    with lsmkv.DB(dbpath, clock=clock, default_ttl=10, merge_operator="uint64add") as db:
        db.put(b"p", b"1")
        db.put(b"own", b"1", ttl=100)
        db[b"item"] = b"1"
        wb = lsmkv.WriteBatch(clock=clock)          # made without the DB: the default applies at write()
        wb.put(b"b1", b"1")
        wb.put(b"b2", b"1", ttl=3)
        wb.delete(b"p-absent")
        db.write(wb)
        with db.write_batch() as wb2:
            wb2.put(b"w", b"1")
        with db.transaction() as txn:
            txn.put(b"t", b"1")
            assert txn.get(b"t") == b"1"
        db.merge(b"m", (5).to_bytes(8, "little"))
        assert _ttls(db, [b"p", b"own", b"item", b"b1", b"b2", b"w", b"t"]) == [
            10.0, 100.0, 10.0, 10.0, 3.0, 10.0, 10.0]
        assert db.ttl(b"m") is None                 # a merged value has no TTL
        assert len(wb) == 3                         # the batch given to write() is unchanged
        clock.advance(5)
        db.put(b"p", b"2")                          # a new version: ten seconds from now
        clock.advance(5.001)
        assert db.get(b"p") == b"2" and db.get(b"b1") is None and db.get(b"t") is None
        assert db.get(b"own") == b"1" and int.from_bytes(db.get(b"m"), "little") == 5


def test_family_default_ttl_is_recorded_and_others_keep_theirs(dbpath, clock):
    with lsmkv.DB(dbpath, clock=clock) as db:
        sess = db.create_column_family("sessions", default_ttl=60)
        plain = db.create_column_family("plain")
        with db.write_batch() as wb:                # one atomic batch over three families
            wb.put(b"s", b"1", cf=sess)
            wb.put(b"p", b"1", cf=plain)
            wb.put(b"d", b"1")
        sess.put(b"s2", b"1")
        assert _ttls(sess, [b"s", b"s2"]) == [60.0, 60.0]
        assert plain.ttl(b"p") is None and db.ttl(b"d") is None
        assert sess.stats()["default_ttl"] == 60 and plain.stats()["default_ttl"] is None
    # reopened with a DB default: the family keeps its recorded 60; one created without
    # its own takes the DB's; default_ttl=None at creation means never
    with lsmkv.DB(dbpath, clock=clock, default_ttl=5) as db:
        sess, plain = db.column_family("sessions"), db.column_family("plain")
        never = db.create_column_family("never", default_ttl=None)
        sess.put(b"s3", b"1")
        plain.put(b"p2", b"1")
        never.put(b"n", b"1")
        db.put(b"d2", b"1")
        assert [sess.ttl(b"s3"), plain.ttl(b"p2"), never.ttl(b"n"), db.ttl(b"d2")] == [60.0, 5.0, None, 5.0]
        assert sess.ttl(b"s") == 60.0               # written before: its expiry is in its record
        clock.advance(61)
        assert sess.get(b"s") is None and sess.get(b"s3") is None and never.get(b"n") == b"1"
        assert plain.get(b"p") == b"1"
        sess.put(b"live", b"1")
        sess.flush()
        sess.compact_range()                        # the expired entries are collected
        assert [k for k, _ in sess.items()] == [b"live"]
        assert sess.estimate_num_keys() == 1


def test_the_expiry_is_in_the_log_record(dbpath, clock):
    """Written with a default, replayed from the log by an open without it: it still expires."""
    db = lsmkv.DB(dbpath, clock=clock, default_ttl=30)
    db.put(b"k", b"v")
    db.put(b"keep", b"v", ttl=1000)
    db.close()
    with lsmkv.DB(dbpath, clock=clock) as db:
        assert db.ttl(b"k") == 30.0
        db.put(b"k2", b"v")
        assert db.ttl(b"k2") is None
        clock.advance(31)
        assert db.get(b"k") is None and db.get(b"keep") == b"v"


@pytest.mark.parametrize("bad, exc", [(0, ValueError), (-1, ValueError), (float("inf"), ValueError),
                                      (float("nan"), ValueError), (2e12, ValueError),
                                      ("60", TypeError), (True, TypeError)])
def test_bad_default_ttl_is_refused_naming_the_option(dbpath, bad, exc):
    with pytest.raises(exc, match="default_ttl"):
        lsmkv.DB(dbpath, default_ttl=bad)
    with lsmkv.DB(dbpath) as db:
        with pytest.raises(exc, match="default_ttl"):
            db.create_column_family("x", default_ttl=bad)
        assert db.list_column_families() == ["default"]
