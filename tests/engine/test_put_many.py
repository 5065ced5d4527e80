"""put_many(db, keys, values) (lsmkv/core/dbcore.pyx, MemTable.add_many): the same
database as a put() of each pair in order, in memory and after a reopen (the log
replayed), with the same counters; groups with repeated, empty and 0xff keys,
into memtables small and large; and the fallbacks (default_ttl, column families,
a full memtable) still right."""
import random

import pytest

import lsmkv
from lsmkv.core.dbcore import put_many


def _key(rng):
    r = rng.random()
    if r < 0.03:
        return b""
    if r < 0.06:
        return b"\xff" * rng.randrange(1, 40)
    return b"k%05d" % rng.randrange(3000)


def _same(a, b, keys):
    assert list(a.items()) == list(b.items())
    assert list(a.items(reverse=True)) == list(b.items(reverse=True))
    assert [a.get(k) for k in keys] == [b.get(k) for k in keys]
    for k in keys[:200]:                       # seeks use every level of the skiplist
        assert list(a.keys(k, None))[:3] == list(b.keys(k, None))[:3]
        assert list(a.keys(None, k, reverse=True))[:3] == list(b.keys(None, k, reverse=True))[:3]


@pytest.mark.parametrize("opts", [{}, {"write_buffer_size": 1 << 16}])
@pytest.mark.parametrize("seed", [1, 2])
def test_put_many_is_puts_in_order(tmp_path, opts, seed):
    rng = random.Random(seed)
    a = lsmkv.DB(str(tmp_path / "a"), **opts)
    b = lsmkv.DB(str(tmp_path / "b"), **opts)
    keys = []
    try:
        for step in range(400):
            n = rng.choice([1, 2, 5, 16, 32, 33])
            ks = [_key(rng) for _ in range(n)]
            if rng.random() < 0.2:
                ks[-1] = ks[0]                 # a key twice in one group: the last wins
            vs = [b"v%d-%d-" % (step, i) + b"x" * rng.randrange(0, 50) for i in range(n)]
            for k, v in zip(ks, vs):
                a.put(k, v)
            put_many(b, ks, vs)
            keys += ks
            if step % 97 == 96:
                a.delete(ks[0])
                b.delete(ks[0])
        _same(a, b, keys)
        sa, sb = a.stats(), b.stats()
        for name in ("puts", "writes", "deletes", "batches", "wal_bytes", "user_bytes"):
            assert sa.get(name) == sb.get(name), name
    finally:
        a.close()
        b.close()
    with lsmkv.DB(str(tmp_path / "a"), **opts) as a, lsmkv.DB(str(tmp_path / "b"), **opts) as b:
        _same(a, b, keys)


def test_put_many_fallbacks(tmp_path):
    with lsmkv.DB(str(tmp_path / "t"), default_ttl=100) as db:
        put_many(db, [b"a", b"b"], [b"1", b"2"])
        assert db.get(b"a") == b"1" and 99 < db.ttl(b"b") <= 100.01
    with lsmkv.DB(str(tmp_path / "c")) as db:
        cf = db.create_column_family("cf")
        put_many(cf, [b"a", b"b"], [b"1", b"2"])
        assert cf.get(b"b") == b"2" and db.get(b"b") is None
    with lsmkv.DB(str(tmp_path / "f"), write_buffer_size=1 << 16) as db:
        big = b"x" * 5000
        for i in range(40):                    # groups that do not fit: each a put
            put_many(db, [b"%03d-%d" % (i, j) for j in range(16)], [big] * 16)
        assert sum(1 for _ in db.keys()) == 640
    with lsmkv.DB(str(tmp_path / "e")) as db:
        with pytest.raises(TypeError):
            put_many(db, [b"a", "b"], [b"1", b"2"])
        with pytest.raises(ValueError):
            put_many(db, [b"a"], [b"1", b"2"])
        assert db.get(b"a") is None
