"""The dict methods of DB and Snapshot, and the one batch factory (issue 19 items 4, 7)."""
import collections.abc
import time

import pytest

import lsmkv


@pytest.fixture
def db(tmp_path):
    d = lsmkv.DB(str(tmp_path / "db"))
    yield d
    d.close()


# ---------------------------------------------------------------- mapping

def test_del_raises_keyerror_for_an_absent_key_as_a_dict(db):
    ref = {}
    for m in (db, ref):
        m[b"k"] = b"v"
        del m[b"k"]
        with pytest.raises(KeyError) as e:
            del m[b"k"]
        assert e.value.args == (b"k",)
    db.delete(b"never")                   # delete() stays blind
    assert db.stats()["deletes"] == 2     # the failed del wrote nothing


def test_del_of_an_expired_key_raises(tmp_path, clock):
    with lsmkv.DB(str(tmp_path / "db"), clock=clock) as d:
        d.put(b"k", b"v", ttl=1)
        clock.advance(2)
        with pytest.raises(KeyError):
            del d[b"k"]


def test_pop_setdefault_update_like_a_dict(db):
    ref = {}
    for m in (db, ref):
        m.update({b"a": b"1", b"b": b"2"})
        m.update([(b"c", b"3")])
        assert m.pop(b"a") == b"1"
        assert m.pop(b"a", b"dflt") == b"dflt"
        assert m.pop(b"a", None) is None
        with pytest.raises(KeyError):
            m.pop(b"a")
        assert m.setdefault(b"b", b"x") == b"2"
        assert m.setdefault(b"z", b"26") == b"26"
    assert dict(db.items()) == ref


def test_update_is_one_atomic_batch(db):
    before = db.stats()["batches"]
    db.update({b"%d" % i: b"v" for i in range(10)})
    assert db.stats()["batches"] == before + 1
    with pytest.raises(TypeError):
        db.update([(b"ok", b"1"), ("str-key", b"2")])   # nothing of it is written
    assert db.get(b"ok") is None


def test_iteration_both_ways(db):
    for k in (b"b", b"a", b"c"):
        db[k] = k
    assert list(db) == [b"a", b"b", b"c"]
    assert list(reversed(db)) == [b"c", b"b", b"a"]
    with db.snapshot() as snap:
        db[b"d"] = b"d"
        del db[b"a"]
        assert list(iter(snap)) == [b"a", b"b", b"c"]
        assert list(reversed(snap)) == [b"c", b"b", b"a"]
        assert b"a" in snap and b"d" not in snap


def test_no_len_and_not_a_mutable_mapping(db):
    """An exact len() is a scan: DB does not pretend to be a MutableMapping."""
    assert not hasattr(db, "__len__")
    with pytest.raises(TypeError):
        len(db)
    assert not isinstance(db, collections.abc.MutableMapping)
    assert bool(db) is True              # no len(): truth is not a scan
    db[b"k"] = b"v"
    assert sum(1 for _ in db) == db.estimate_num_keys() == 1


# ---------------------------------------------------------------- batches

def test_write_batch_both_ways(db):
    wb = db.write_batch()
    wb.put(b"a", b"1")
    db.write(wb)
    with db.write_batch(sync=True) as wb2:
        wb2.put(b"b", b"2")
        assert db.get(b"b") is None        # applied at the end of the block
    assert db.multi_get([b"a", b"b"]) == [b"1", b"2"]
    before = db.stats()["syncs"]
    with db.write_batch(sync=True) as wb3:
        wb3.put(b"c", b"3")
    assert db.stats()["syncs"] == before + 1
    with pytest.raises(ZeroDivisionError):
        with db.write_batch() as wb4:
            wb4.put(b"d", b"4")
            1 / 0
    assert db.get(b"d") is None
    assert type(db.batch()) is lsmkv.WriteBatch          # the older name


def test_a_batch_made_directly_is_not_a_context_manager(db):
    with pytest.raises(TypeError, match="db.write_batch"):
        with lsmkv.WriteBatch():
            pass


def test_ttl_is_keyword_only_everywhere(db):
    wb = lsmkv.WriteBatch()
    with pytest.raises(TypeError):
        wb.put(b"k", b"v", 5)
    with pytest.raises(TypeError):
        db.put(b"k", b"v", 5)


def test_a_direct_batch_takes_ttl_from_the_process_clock(db):
    wb = lsmkv.WriteBatch()
    wb.put(b"k", b"v", ttl=100)
    db.write(wb)
    assert 98 < db.ttl(b"k") <= 100.001          # expiry rounds up to the ms
    now = [time.time() + 1000]
    wb2 = lsmkv.WriteBatch(clock=lambda: now[0])           # or a clock of its own
    wb2.put(b"later", b"v", ttl=10)
    db.write(wb2)
    assert 1005 < db.ttl(b"later") <= 1010.001
    with pytest.raises(ValueError):
        wb.put(b"k", b"v", ttl=0)


def test_write_batch_uses_an_injected_clock(tmp_path, clock):
    with lsmkv.DB(str(tmp_path / "db"), clock=clock) as d:
        wb = d.write_batch()
        wb.put(b"k", b"v", ttl=30)
        d.write(wb)
        assert d.ttl(b"k") == 30.0
        clock.advance(31)
        assert d.get(b"k") is None


def test_append_joins_batches_in_order(db):
    a, b = db.write_batch(), lsmkv.WriteBatch()
    a.put(b"x", b"1")
    a.put(b"y", b"1")
    b.delete(b"x")
    b.put(b"z", b"3", ttl=60)
    size_b = b.data_size
    a.append(b)
    assert (len(a), len(b), b.data_size) == (4, 2, size_b)
    db.write(a)
    assert list(db.items()) == [(b"y", b"1"), (b"z", b"3")]
    assert db.ttl(b"z") > 50
    a.append(lsmkv.WriteBatch())          # an empty one adds nothing
    assert len(a) == 4
    with pytest.raises(ValueError):
        a.append(a)
    with pytest.raises(TypeError):
        a.append(None)
