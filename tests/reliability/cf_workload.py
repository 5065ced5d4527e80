"""The deterministic operation stream of the column-family crash test
(test_cf_crash.py): op(i) is a pure function of i; run(lsmkv, path, start) is the
writer the test kills (it prints "open", then each index once acknowledged)."""
import sys

OPTS = dict(write_buffer_size=128 * 1024, block_size=1024, max_write_buffer_number=3)
# "a" flushes often (and is flushed by hand); "b" never flushes while the writer runs
FAMILIES = {"a": dict(write_buffer_size=64 * 1024), "b": dict(write_buffer_size=64 << 20)}


def op(i):
    """[(family, key, value or None for a deletion)] of op i: one batch; or
    ("transfer", (family, account), (family, account), amount): one transaction."""
    if i % 7 == 6:
        return ("transfer", ("a", b"acct%02d" % (i % 10)), ("b", b"acct%02d" % (i % 13)), i % 17 + 1)
    x = b"x%04d" % (i % 300)
    r = i % 5
    if r == 0 or r == 1:
        v = b"%d:" % i + b"." * (i % 200)
        return [("default", x, v), ("a", x, v), ("b", x, v)]
    if r == 2:
        return [("default", x, None), ("a", x, None), ("b", x, None)]
    if r == 3:
        return [("a", b"s%07d" % i, b"a" * 300)]
    return [("default", b"d%07d" % i, b"d" * 300)]


def run(lsmkv, path, start):
    """Open the DB at path with families "a" and "b" and apply op(start), op(start + 1),
    ... forever, printing each index once its write returned."""
    db = lsmkv.DB(path, **OPTS)
    fams = {"default": None}
    for name, o in FAMILIES.items():
        try:
            fams[name] = db.column_family(name)
        except lsmkv.ColumnFamilyError:
            fams[name] = db.create_column_family(name, **o)
    i = start
    out = sys.stdout
    out.write("open\n")
    out.flush()
    while True:
        ops = op(i)
        if ops[0] == "transfer":
            _, (sf, sk), (df, dk), amount = ops
            with db.transaction() as txn:
                s = int(txn.get_for_update(sk, b"0", cf=fams[sf]))
                d = int(txn.get_for_update(dk, b"0", cf=fams[df]))
                txn.put(sk, b"%d" % (s - amount), cf=fams[sf])
                txn.put(dk, b"%d" % (d + amount), cf=fams[df])
        elif len(ops) == 1:
            f, k, v = ops[0]
            (db if f == "default" else fams[f]).put(k, v)
        else:
            with db.write_batch() as wb:
                for f, k, v in ops:
                    if v is None:
                        wb.delete(k, cf=fams[f])
                    else:
                        wb.put(k, v, cf=fams[f])
        out.write("%d\n" % i)
        out.flush()
        i += 1
        if i % 997 == 0:
            fams["a"].flush()
