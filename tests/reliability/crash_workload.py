"""The deterministic operation stream shared by the crash test's writer and checker.

op(i) is a pure function of i: a put, a delete, a range delete (of up to 40
keys), a sync put, a 5-key batch (some with a range delete), a merge (uint64add)
into one of COUNTERS counters, a batch of merges with a counter's deletion, a
range delete over counters, or a transaction moving an amount between two of
ACCOUNTS accounts (read with get_for_update, both written at commit: the
accounts' sum stays 0 in every state a reopen may show). apply(model, i) applies op i to a dict model;
run(db, i) applies it to a DB, which must be open with MERGE_OPERATOR.
"""
import random

KEYS = 3000
COUNTERS = 200
ACCOUNTS = 50
MERGE_OPERATOR = "uint64add"


def _add(old, delta):
    """uint64add: 8-byte little-endian, wrapping; a missing base is 0."""
    n = int.from_bytes(old, "little") if old is not None else 0
    return ((n + delta) % (1 << 64)).to_bytes(8, "little")


def op(i):
    rng = random.Random(i * 7919 + 17)
    r = rng.random()
    if r < 0.10:
        return ("batch", [(b"b%06d-%d" % (i % 400, j), b"batch-%d-%d" % (i, j) * 3) for j in range(5)])
    if r < 0.11:              # a batch whose range delete clears what its first put set
        return ("batch", [(b"b%06d-0" % (i % 400), b"gone"), (b"b%06d-0" % (i % 400), b"b%06d-1" % (i % 400)),
                          (b"b%06d-9" % (i % 400), b"batch-%d" % i)])
    if r < 0.125:
        a = rng.randrange(KEYS)
        return ("range", b"k%05d" % a, b"k%05d" % (a + rng.randrange(1, 40)))
    if r < 0.13:              # counters' operands under a range tombstone: a missing base after
        a = rng.randrange(COUNTERS)
        return ("range", b"c%04d" % a, b"c%04d" % (a + rng.randrange(1, 20)))
    if r < 0.20:
        return ("merge", b"c%04d" % rng.randrange(COUNTERS), rng.randrange(1, 1 << 20))
    if r < 0.21:              # merges and a counter's deletion, atomically
        return ("mbatch", [(b"c%04d" % rng.randrange(COUNTERS), rng.randrange(1, 1 << 20)) for _ in range(4)]
                + [(b"c%04d" % rng.randrange(COUNTERS), None)])
    if r < 0.30:
        return ("delete", b"k%05d" % rng.randrange(KEYS))
    if r < 0.33:
        a, b = rng.sample(range(ACCOUNTS), 2)
        return ("txn", b"a%03d" % a, b"a%03d" % b, rng.randrange(1, 1000))
    val = (b"%d:" % i) + rng.randbytes(20) + b"x" * rng.choice([10, 100, 1000])
    return ("sync" if r < 0.35 else "put", b"k%05d" % rng.randrange(KEYS), val)


def _moved(src, dst, amount):
    """The two accounts' new values (decimal ASCII; a missing account is 0)."""
    return (b"%d" % (int(src or b"0") - amount), b"%d" % (int(dst or b"0") + amount))


def accounts_sum(state):
    """The sum of the accounts in a dict of the DB's contents (0 in every state)."""
    return sum(int(v) for k, v in state.items() if k.startswith(b"a") and len(k) == 4)


def _delete_range(model, start, stop):
    for k in [k for k in model if start <= k < stop]:
        del model[k]


def apply(model, i):
    o = op(i)
    if o[0] == "batch":
        for j, (k, v) in enumerate(o[1]):
            if len(o[1]) == 3 and j == 1:          # (start, stop) of a range delete
                _delete_range(model, k, v)
            else:
                model[k] = v
    elif o[0] == "range":
        _delete_range(model, o[1], o[2])
    elif o[0] == "delete":
        model.pop(o[1], None)
    elif o[0] == "txn":
        model[o[1]], model[o[2]] = _moved(model.get(o[1]), model.get(o[2]), o[3])
    elif o[0] == "merge":
        model[o[1]] = _add(model.get(o[1]), o[2])
    elif o[0] == "mbatch":
        for k, d in o[1]:
            if d is None:
                model.pop(k, None)
            else:
                model[k] = _add(model.get(k), d)
    else:
        model[o[1]] = o[2]


def run(db, i):
    o = op(i)
    if o[0] == "batch":
        with db.write_batch() as wb:
            for j, (k, v) in enumerate(o[1]):
                if len(o[1]) == 3 and j == 1:
                    wb.delete_range(k, v)
                else:
                    wb.put(k, v)
    elif o[0] == "range":
        db.delete_range(o[1], o[2])
    elif o[0] == "delete":
        db.delete(o[1])
    elif o[0] == "txn":
        with db.transaction() as txn:
            src, dst = _moved(txn.get_for_update(o[1]), txn.get_for_update(o[2]), o[3])
            txn.put(o[1], src)
            txn.put(o[2], dst)
    elif o[0] == "merge":
        db.merge(o[1], o[2].to_bytes(8, "little"))
    elif o[0] == "mbatch":
        with db.write_batch() as wb:
            for k, d in o[1]:
                if d is None:
                    wb.delete(k)
                else:
                    wb.merge(k, d.to_bytes(8, "little"))
    else:
        db.put(o[1], o[2], sync=(o[0] == "sync"))
