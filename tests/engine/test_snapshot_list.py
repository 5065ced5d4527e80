"""The snapshot registry (lsmkv/core/snaplist.pxi: SnapshotList, the engine's
`snapshots`), which takes no lock.

Against a Counter model under seeded random registers, releases and last_seq
moves (growing, compacting and the out-of-order insert included); oldest() seen
by every thread at most its own live registration while other threads register
and release and the garbage collector releases snapshots and transactions left
in cycles; through a DB: abandoned transactions and snapshots release their
registration, and compaction with transactions running keeps what they read
and finds every conflict.
"""
import collections
import gc
import random
import threading
import time

import pytest

import lsmkv
from lsmkv import testing
from lsmkv.core.dbcore import Core, SnapshotList


def _registry(last_seq=0):
    core = Core()
    core.closed = False
    core.last_seq = last_seq
    return core, SnapshotList(core)


def _check(snaps, core, model):
    live = sorted(model.elements())
    assert snaps.sequences() == live
    assert len(snaps) == len(live)
    assert snaps.oldest() == (live[0] if live else core.last_seq)


@pytest.mark.parametrize("seed", range(6))
def test_against_a_counter_model(seed):
    rng = random.Random(seed)
    core, snaps = _registry(rng.randrange(100))
    model = collections.Counter()
    for step in range(4000):
        op = rng.random()
        if op < 0.45:
            if rng.random() < 0.3:
                core.last_seq += rng.randrange(1, 5)
            elif rng.random() < 0.03 and core.last_seq > 0:      # older than a registered one
                core.last_seq = rng.randrange(core.last_seq)
            s = snaps.new()
            assert s == core.last_seq
            model[s] += 1
        elif model:
            s = rng.choice(list(model.elements())) if rng.random() < 0.9 else max(model)
            snaps.release(s)
            model[s] -= 1
            if not model[s]:
                del model[s]
        else:
            snaps.release(rng.randrange(1000))                  # none registered: a no-op
        if rng.random() < 0.01:                                 # release all but a few long ones
            for s in list(model.elements())[3:]:
                snaps.release(s)
                model[s] -= 1
                if not model[s]:
                    del model[s]
        if step % 7 == 0:
            _check(snaps, core, model)
    _check(snaps, core, model)
    for s in list(model.elements()):
        snaps.release(s)
    assert len(snaps) == 0 and snaps.oldest() == core.last_seq


def test_one_old_snapshot_and_many_short_ones_stay_small_and_exact():
    core, snaps = _registry(1)
    old = snaps.new()
    held = []
    for i in range(20000):
        core.last_seq += 1
        held.append(snaps.new())
        if len(held) > 5:
            snaps.release(held.pop(random.Random(i).randrange(len(held))))
        assert snaps.oldest() == old
    assert len(snaps) == 1 + len(held)
    snaps.release(old)
    assert snaps.oldest() == min(held)


def test_a_closed_engine_refuses_a_new_snapshot():
    core, snaps = _registry(3)
    core.closed = True
    with pytest.raises(lsmkv.ClosedError):
        snaps.new()
    assert len(snaps) == 0


def test_threads_and_the_collector_never_see_oldest_above_a_live_snapshot():
    """Each thread registers at the current last_seq (which another thread keeps
    moving), checks that oldest() is at most its sequence while it holds it, and
    releases; objects in garbage cycles release from the collector meanwhile."""
    core, snaps = _registry(10)
    stop = threading.Event()
    errors = []

    class Held:                              # released by its finalizer, from the collector
        def __init__(self):
            self.seq = snaps.new()
            self.me = self                   # a cycle: only the collector frees it

        def __del__(self):
            snaps.release(self.seq)

    def mover():
        while not stop.is_set():
            core.last_seq += 1

    def user(seed):
        rng = random.Random(seed)
        try:
            for _ in range(3000):
                s = snaps.new()
                for _ in range(rng.randrange(3)):
                    o = snaps.oldest()
                    if o > s:
                        errors.append((o, s))
                if rng.random() < 0.2:
                    Held()
                snaps.release(s)
        except BaseException as e:           # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=mover)] + [threading.Thread(target=user, args=(i,)) for i in range(4)]
    old_threshold = gc.get_threshold()
    gc.set_threshold(50)                     # collections run often, in the middle of everything
    try:
        for t in threads:
            t.start()
        for t in threads[1:]:
            t.join()
    finally:
        stop.set()
        threads[0].join()
        gc.set_threshold(*old_threshold)
    gc.collect()
    assert errors == []
    assert len(snaps) == 0 and snaps.sequences() == []


# ------------------------------------------------------------------ through a DB

@pytest.fixture
def db(dbpath, small_opts):
    d = lsmkv.DB(dbpath, **small_opts)
    yield d
    d.close()


def test_abandoned_transactions_and_snapshots_release_their_registration(db):
    db.put(b"k", b"v")
    txns = [db.transaction() for _ in range(5)]
    for txn in txns:
        txn.get_for_update(b"k")
    del txn
    snap = db.snapshot()
    assert db.stats()["snapshots"] == 6
    cyc = db.transaction()
    cyc.put(b"c", b"1")
    holder = [cyc]
    holder.append(holder)                    # the transaction is in a garbage cycle
    del txns, snap, cyc, holder
    gc.collect()
    assert db.stats()["snapshots"] == 0
    assert testing.engine(db).snapshots.oldest() == db.last_seq
    assert db.get(b"c") is None


def test_many_tracked_keys_each_conflicts_once(db):
    keys = [b"k%02d" % i for i in range(40)]
    for i in (0, 7, 8, 9, 25, 39):           # in the list, at the switch to a set, in the set
        txn = db.transaction()
        txn.watch(*keys[:20])
        for k in keys:
            txn.get_for_update(k)
            txn.put(k, b"t")
        txn.watch(*keys)                     # tracked again: each key is checked once
        db.put(keys[i], b"other")
        with pytest.raises(lsmkv.ConflictError) as ei:
            txn.commit()
        assert keys[i] in str(ei.value).encode()
        assert db.get(keys[i]) == b"other"
        assert not any(db.get(k) == b"t" for k in keys)      # nothing of it was applied
    with db.transaction() as txn:
        for k in keys:
            txn.get_for_update(k)
            txn.put(k, b"done")
    assert all(db.get(k) == b"done" for k in keys)


def test_transactions_while_compactions_run_read_their_snapshot_and_find_conflicts(db):
    """Writers rewrite keys (flushes and compactions run, rewriting old versions
    to sequence 0 at the bottom) while transactions, each on a fresh snapshot,
    read every key twice (the same value: repeatable read) and commit only when
    no key they read changed; a commit that passes had no newer write."""
    keys = [b"key%03d" % i for i in range(60)]
    for k in keys:
        db.put(k, b"0" * 50)
    stop = threading.Event()
    errors = []
    outcomes = collections.Counter()

    def writer():
        rng = random.Random(1)
        n = 0
        while not stop.is_set():
            n += 1
            db.put(rng.choice(keys), b"%d" % n * 20)
            if n % 100 == 0:
                db.flush()
            if n % 400 == 0:
                db.compact_range()

    def reader(seed):
        rng = random.Random(seed)
        try:
            for i in range(400):
                if i % 50 == 0:
                    db.put(b"key000", b"x")          # at least some conflicts, whatever the scheduling
                txn = db.transaction()
                ks = rng.sample(keys, 5)
                first = [txn.get_for_update(k) for k in ks]
                if rng.random() < 0.5:
                    time.sleep(0.0002)               # let the writer in: a conflict, maybe
                seqs = [db.newest_sequence(k) for k in ks]
                second = [txn.get(k) for k in ks]
                if first != second:
                    errors.append(("not repeatable", first, second))
                txn.put(ks[0], first[0])
                changed = any(s is not None and s > txn.sequence for s in seqs)
                try:
                    txn.commit()
                except lsmkv.ConflictError:
                    outcomes["conflict"] += 1
                    continue
                outcomes["committed"] += 1
                if changed:
                    errors.append(("a conflict was missed", ks, seqs, txn.sequence))
        except BaseException as e:           # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=writer)] + [threading.Thread(target=reader, args=(i,))
                                                   for i in range(3)]
    for t in threads:
        t.start()
    for t in threads[1:]:
        t.join()
    stop.set()
    threads[0].join()
    assert errors == []
    assert db.stats()["snapshots"] == 0
    assert outcomes["conflict"] > 0 and outcomes["committed"] > 0, outcomes
    assert db.stats()["compactions"] > 0
