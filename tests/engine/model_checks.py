"""Steps and checks the seeded model tests share (test_model.py,
test_merge_model.py, test_range_delete_model.py, test_range_delete_merge.py):
a cursor walked against the model's live keys, a random compact_range, and a
reopen that first closes the test's snapshots."""
import lsmkv
from lsmkv import testing


def check_cursor(db_or_snap, live, rng, key, ctx):
    """Seeks both ways from three random keys (key(rng)) of an lsmkv.Iterator of
    db_or_snap, each step's key and value checked against live (key -> value)."""
    srt = sorted(live)

    def at(it, want, what):
        assert (it.key() if it.valid() else None) == (want[0] if want else None), f"{what} {ctx}"
        if it.valid():
            assert it.value() == live[it.key()], f"{what} value {ctx}"

    with db_or_snap.iterator() as it:
        for _ in range(3):
            k = key(rng)
            it.seek(k)
            at(it, [x for x in srt if x >= k], f"seek {k!r}")
            if it.valid():
                it.prev()
                at(it, [x for x in srt if x < k][-1:], "prev")
            it.seek_for_prev(k)
            at(it, [x for x in srt if x <= k][-1:], f"seek_for_prev {k!r}")
            if it.valid():
                it.next()
                at(it, [x for x in srt if x > k], "next")
        it.seek_to_last()
        at(it, srt[-1:], "seek_to_last")


def compact_some(db, rng, key):
    """compact_range over a random range (either end may be open), then the
    version's invariants checked."""
    a, b = sorted([key(rng), key(rng)])
    db.compact_range(rng.choice([None, a]), rng.choice([None, b]))
    testing.current_version(db).check()


def reopen(db, snaps, path, opts):
    """Close the (snapshot, frozen model) pairs in snaps and db; the DB reopened."""
    for s, _ in snaps:
        s.close()
    snaps.clear()
    db.close()
    return lsmkv.DB(path, **opts)
