"""The deterministic operation stream shared by the crash test's writer and checker.

op(i) is a pure function of i: a put, a delete, a range delete (of up to 40
keys), a sync put, or a 5-key batch (some with a range delete).
apply(model, i) applies op i to a dict model; run(db, i) applies it to a DB.
"""
import random

KEYS = 3000


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
    if r < 0.25:
        return ("delete", b"k%05d" % rng.randrange(KEYS))
    val = (b"%d:" % i) + rng.randbytes(20) + b"x" * rng.choice([10, 100, 1000])
    return ("sync" if r < 0.27 else "put", b"k%05d" % rng.randrange(KEYS), val)


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
    else:
        db.put(o[1], o[2], sync=(o[0] == "sync"))
