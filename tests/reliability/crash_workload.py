"""The deterministic operation stream shared by the crash test's writer and checker.

op(i) is a pure function of i: a put, a delete, a sync put, or a 5-key batch.
apply(model, i) applies op i to a dict model; run(db, i) applies it to a DB.
"""
import random

KEYS = 3000


def op(i):
    rng = random.Random(i * 7919 + 17)
    r = rng.random()
    if r < 0.10:
        return ("batch", [(b"b%06d-%d" % (i % 400, j), b"batch-%d-%d" % (i, j) * 3) for j in range(5)])
    if r < 0.25:
        return ("delete", b"k%05d" % rng.randrange(KEYS))
    val = (b"%d:" % i) + rng.randbytes(20) + b"x" * rng.choice([10, 100, 1000])
    return ("sync" if r < 0.27 else "put", b"k%05d" % rng.randrange(KEYS), val)


def apply(model, i):
    o = op(i)
    if o[0] == "batch":
        for k, v in o[1]:
            model[k] = v
    elif o[0] == "delete":
        model.pop(o[1], None)
    else:
        model[o[1]] = o[2]


def run(db, i):
    o = op(i)
    if o[0] == "batch":
        with db.write_batch() as wb:
            for k, v in o[1]:
                wb.put(k, v)
    elif o[0] == "delete":
        db.delete(o[1])
    else:
        db.put(o[1], o[2], sync=(o[0] == "sync"))
