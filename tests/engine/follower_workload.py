"""Processes for tests/engine/test_followers.py: a writer under load, read-only
readers and a secondary, checking what the readers see against the writer's op
stream.

    python follower_workload.py writer    DB ACKED SECONDS
    python follower_workload.py readonly  DB ACKED SECONDS
    python follower_workload.py secondary DB ACKED SECONDS OWN_DIR

The op stream (a pure function of i): op i puts k<i> = value(i); when i % 7 == 3 it
is a batch that also puts b<i>-0 and b<i>-1; when i % 11 == 5 (i >= 5) it is a batch
that also deletes k<i-5>; when i % 13 == 7 it is a batch that also puts t<i> with a
one-hour TTL (the readers check its value and that ttl() is in (0, 3600]). The writer flushes every 500 ops and compacts every 2,000,
with 64 KiB memtables and level-0 compaction at 2 files, so tables and logs come and
go under the readers; after each op returns it appends "i\\n" to ACKED. A restarted
writer goes on after the last op the DB holds.

A reader's check: the state it sees must be exactly the state after ops 0..K, where
K is the largest i with k<i> present (every answer is a state the writer passed
through: no hole, no half batch, no later write without the earlier ones), and K
must be at least the last op acknowledged before it opened (read_only) or before
its catch_up() (secondary). A reader prints one JSON line {"checks", "reopens",
"violations"} and exits 1 on a violation.
"""
import json
import os
import random
import sys
import time

if os.environ.get("LSMKV_IMPORT_PATH"):       # the lsmkv the tests import (conftest)
    sys.path.insert(0, os.environ["LSMKV_IMPORT_PATH"])
import lsmkv  # noqa: E402

OPTIONS = dict(write_buffer_size=64 * 1024, level0_file_num_compaction_trigger=2,
               target_file_size_base=64 * 1024, max_bytes_for_level_base=256 * 1024,
               block_size=1024, compaction_worker="thread")


def kind(i):
    if i % 11 == 5 and i >= 5:
        return "delete"
    if i % 7 == 3:
        return "batch"
    if i % 13 == 7:
        return "ttl"
    return "put"


TTL = 3600


def k(i):
    return b"k%08d" % i


def value(i):
    return b"v%d:" % i + random.Random(i).randbytes(40)


def expected(n):
    """The state after ops 0..n."""
    out = {}
    for i in range(n + 1):
        out[k(i)] = value(i)
        if kind(i) == "batch":
            out[b"b%08d-0" % i] = out[b"b%08d-1" % i] = value(i)
        elif kind(i) == "delete":
            out.pop(k(i - 5), None)
        elif kind(i) == "ttl":
            out[b"t%08d" % i] = value(i)
    return out


def apply(db, i):
    kd = kind(i)
    if kd == "put":
        db.put(k(i), value(i))
        return
    wb = db.batch()
    wb.put(k(i), value(i))
    if kd == "batch":
        wb.put(b"b%08d-0" % i, value(i))
        wb.put(b"b%08d-1" % i, value(i))
    elif kd == "ttl":
        wb.put(b"t%08d" % i, value(i), ttl=TTL)
    else:
        wb.delete(k(i - 5))
    db.write(wb)


def last_op(items):
    ks = [int(key[1:]) for key in items if key[:1] == b"k"]
    return max(ks) if ks else -1


def read_acked(path):
    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except FileNotFoundError:
        return -1
    lines = data.split(b"\n")[:-1]          # a torn last line (a killed writer) is not counted
    return int(lines[-1]) if lines else -1


def writer(path, acked, seconds):
    db = lsmkv.DB(path, **OPTIONS)
    i = last_op(dict(db.items())) + 1
    fd = os.open(acked, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    end = time.time() + seconds
    while time.time() < end:
        apply(db, i)
        os.write(fd, b"%d\n" % i)
        if i % 500 == 499:
            db.flush()
        if i % 2000 == 1999:
            db.compact_range()
        i += 1
    db.close()


class Checker:
    def __init__(self):
        self.cache = {}
        self.violations = []
        self.checks = 0

    def check(self, db, floor, what):
        items = dict(db.items())
        n = last_op(items)
        if n not in self.cache:
            self.cache = {n: expected(n)}
        want = self.cache[n]
        self.checks += 1
        if n < floor:
            self.violations.append(f"{what}: sees ops up to {n}, but {floor} was acknowledged before")
        if items != want:
            extra = sorted(set(items) - set(want))[:3]
            missing = sorted(set(want) - set(items))[:3]
            wrong = sorted(x for x in set(items) & set(want) if items[x] != want[x])[:3]
            self.violations.append(f"{what}: not the state after op {n}: extra {extra} missing {missing} "
                                   f"wrong {wrong}")
        ttls = [x for x in want if x[:1] == b"t"][-5:]
        for key in ttls:                         # the TTL entries kept theirs
            t = db.ttl(key)
            if t is None or not 0 < t <= TTL:
                self.violations.append(f"{what}: ttl({key!r}) is {t!r}, not in (0, {TTL}]")
                break
        rng = random.Random(n)
        for _ in range(20):                      # point reads agree with the scan
            key = k(rng.randrange(n + 1)) if n >= 0 else k(0)
            if db.get(key) != want.get(key):
                self.violations.append(f"{what}: get({key!r}) disagrees with the state after op {n}")
                break


def readonly(path, acked, seconds):
    c = Checker()
    reopens = 0
    end = time.time() + seconds
    while time.time() < end:
        floor = read_acked(acked)
        try:
            db = lsmkv.DB(path, read_only=True, **OPTIONS)
        except lsmkv.FollowerError:
            continue                            # the writer moved under every attempt: try again
        reopens += 1
        with db:
            c.check(db, floor, f"read-only open #{reopens}")
    report(c, reopens)


def secondary(path, acked, seconds, own):
    c = Checker()
    end = time.time() + seconds
    db = lsmkv.DB(path, secondary=own, **OPTIONS)
    catch_ups = 0
    while time.time() < end:
        floor = read_acked(acked)
        try:
            db.catch_up()
        except lsmkv.FollowerError:
            continue
        catch_ups += 1
        c.check(db, floor, f"secondary after catch_up #{catch_ups}")
    db.close()
    report(c, catch_ups)


def report(c, reopens):
    print(json.dumps({"checks": c.checks, "reopens": reopens, "violations": c.violations[:10]}))
    sys.exit(1 if c.violations else 0)


if __name__ == "__main__":
    role, db_path, acked_path, secs = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
    if role == "writer":
        writer(db_path, acked_path, secs)
    elif role == "readonly":
        readonly(db_path, acked_path, secs)
    else:
        secondary(db_path, acked_path, secs, sys.argv[5])
