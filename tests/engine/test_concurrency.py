"""Concurrency stress: many threads reading, writing, iterating and taking snapshots
while flushes and compactions run (issue 6, item 5; docs/reliability.md).

How it checks:
- Each *owner* thread has a key prefix (b"o03/") that only it writes, and keeps the
  expected state of its keys: the value and, for a TTL put, bounds on its expiry.
  Every read of its own keys must match that state: get, ttl, forward and reverse
  range scans (items, keys, values), an iterator held open across its own later
  writes (it must keep showing the state at its creation), and reads through
  snapshots it took earlier (they must not change while everyone writes on).
- *Cross* readers read the whole DB and ranges spanning owners, and check what holds
  under any interleaving: keys strictly ordered, every key inside an owner's key
  space, every value well-formed (it names its key, its CRC matches), each owner's
  group keys (always written together by one batch) of a single generation in any
  one view, no generation going back between successive views, and a snapshot
  showing the same entries when read again later (TTL entries may only vanish).
- The DB clock is a step clock (whole seconds, advanced by a ticker thread), so TTL
  entries expire during the run. A read done while the clock read r1..r2 (ms) must
  show a TTL entry whose expiry is surely > r2, must not show one whose expiry is
  surely <= r1, and may do either in between (the engine: expired iff expiry <= now).
- Each thread's exceptions are collected and re-raised in the main thread; every
  join and wait has a timeout, and faulthandler dumps every thread's stack and
  exits if the run hangs.
- At the end: every owner's state read back in full, the DB's invariants (no
  background error, no snapshot or pinned version left, the slab cache's check()
  and no pinned block), then close, reopen, and every owner's state again.

The op streams are seeded per thread; the checks are sound for every interleaving,
so the test passes or fails on what the engine returns, never on timing (only the
number of operations depends on timing, and a floor on it keeps the run meaningful).

    python tests/engine/test_concurrency.py --duration 300            # every config, 300 s each
    python tests/engine/test_concurrency.py --duration 60 --config jobs3 --seed 7 --owners 8
    LSMKV_CONCURRENCY_SECONDS=30 pytest tests/engine/test_concurrency.py
"""
import argparse
import faulthandler
import gc
import itertools
import os
import random
import shutil
import sys
import tempfile
import threading
import time
import traceback
import zlib

if __name__ == "__main__":     # run as a script: import the lsmkv of this source tree
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

import pytest

import lsmkv
from lsmkv import testing

KiB = 1024
KEYS_PER_OWNER = 400        # b"oNN/kNNNN"
GROUP_KEYS = 4              # b"oNN/gN": always written together, in one batch
TTLS = (1, 2, 3, 5, 1_000_000)   # seconds of DB clock; the ticker adds 1 s every TICK
TICK = 0.05
MIN_OPS_PER_OWNER = 50      # owners run past the duration until they have done this many
PROGRESS_LIMIT = 90         # ... but at most max(this, duration) seconds past it

# Every config: tiny memtables and levels, so flushes and compactions never stop.
BASE = dict(write_buffer_size=64 * KiB, max_write_buffer_number=3, block_size=1024,
            block_cache_size=256 * KiB, target_file_size_base=64 * KiB,
            level0_file_num_compaction_trigger=2, max_bytes_for_level_base=256 * KiB,
            max_bytes_for_level_multiplier=4)
CONFIGS = {
    # the defaults otherwise: slab cache, one compaction worker process, nice 19
    "slab": dict(BASE),
    # two compaction threads merging in-process (so their C code runs in this process)
    "jobs3": dict(BASE, max_background_jobs=3, compaction_worker="thread",
                  background_priority="normal", compression_dict_bytes=0),
    "lru": dict(BASE, block_cache="lru", block_cache_size=128 * KiB, wal_mmap=False,
                background_priority="normal"),
    # 12 slab pages of 4 KiB, mostly taken by index/filter charges: constant eviction,
    # and blocks pinned by open iterators; tables read through mappings
    "tiny_cache": dict(BASE, block_cache_size=48 * KiB, slab_page_size=4 * KiB,
                       mmap_reads=True, compaction_worker="thread",
                       background_priority="normal"),
}

_PAD = bytes(random.Random(1234).choice(b"abcdefghijklmnopqrstuvwxyz0123456789")
             for _ in range(2048))


# --------------------------------------------------------------------- values

def make_value(key, gen, flag, n):
    """key|gen|flag|pad + 8 hex digits of the CRC-32 of what precedes them.
    flag: b"p" plain put, b"t" TTL put, b"g" group key."""
    off = (gen * 7) % 1024
    body = b"%s|%d|%s|%s" % (key, gen, flag, _PAD[off:off + n])
    return body + b"%08x" % zlib.crc32(body)


def parse_value(key, v):
    """(gen, flag) of a value made by make_value for key; AssertionError if malformed."""
    assert isinstance(v, bytes), f"value of {key!r} is {type(v).__name__}, not bytes"
    body, crc = v[:-8], v[-8:]
    assert len(v) > 8 and b"%08x" % zlib.crc32(body) == crc, f"value of {key!r} fails its CRC: {v[:80]!r}"
    assert body.startswith(key + b"|"), f"value {v[:60]!r} was written for another key than {key!r}"
    gen, flag, _ = body[len(key) + 1:].split(b"|", 2)
    return int(gen), flag


def owner_prefix(i):
    return b"o%02d/" % i


def owner_keys(i):
    """All keys owner i may write, sorted (group keys b"g" sort before b"k")."""
    p = owner_prefix(i)
    return [p + b"g%d" % j for j in range(GROUP_KEYS)] + [p + b"k%04d" % j for j in range(KEYS_PER_OWNER)]


# --------------------------------------------------------------------- the oracle

class StepClock:
    """The DB clock: whole seconds (so expiries are exact in ms), advanced by a ticker."""

    def __init__(self, t=1_700_000_000):
        self.t = t

    def __call__(self):
        return float(self.t)

    def ms(self):
        return self.t * 1000


def visibility(entry, r1, r2):
    """'yes', 'no' or 'maybe': must a read made while the clock read r1..r2 (ms)
    see entry = (value, expiry_lo, expiry_hi)? None bounds: no TTL."""
    _, lo, hi = entry
    if lo is None or lo > r2:
        return "yes"
    if hi <= r1:
        return "no"
    return "maybe"


class Counts:
    def __init__(self):
        self.ops = 0
        self.checks = 0       # values, keys and absences compared with an expectation
        self.maybes = 0       # TTL entries read while their expiry was ambiguous

    def add(self, other):
        self.ops += other.ops
        self.checks += other.checks
        self.maybes += other.maybes


def check_get(counts, what, key, got, entry, r1, r2):
    """got = a get() of key; entry its expected (value, lo, hi) or None (absent)."""
    counts.checks += 1
    vis = "no" if entry is None else visibility(entry, r1, r2)
    if vis == "yes":
        assert got == entry[0], f"{what}: {key!r} is {got!r:.80}, expected {entry[0]!r:.80}"
    elif vis == "no":
        assert got is None, f"{what}: {key!r} should be absent (deleted, expired or never written), got {got!r:.80}"
    else:
        counts.maybes += 1
        assert got is None or got == entry[0], f"{what}: {key!r} is {got!r:.80}, expected {entry[0]!r:.80} or absent"


def check_ttl(counts, what, key, fn, entry, clock):
    """fn() = db.ttl(key) or snapshot.ttl(key), called here so the clock brackets it."""
    c1 = clock.t
    try:
        got = fn()
    except KeyError:
        got = KeyError
    c2 = clock.t
    counts.checks += 1
    vis = "no" if entry is None else visibility(entry, c1 * 1000, c2 * 1000)
    if vis == "maybe":
        counts.maybes += 1
    if vis == "no" or (vis == "maybe" and got is KeyError):
        assert got is KeyError, f"{what}: ttl({key!r}) should raise KeyError, got {got!r}"
        return
    _, lo, hi = entry
    if lo is None:
        assert got is None, f"{what}: ttl({key!r}) should be None (no TTL), got {got!r}"
        return
    assert isinstance(got, float), f"{what}: ttl({key!r}) should be a float, got {got!r}"
    assert max(0.0, lo / 1000 - c2) - 1e-6 <= got <= hi / 1000 - c1 + 1e-6, \
        f"{what}: ttl({key!r}) = {got}, expected within [{lo / 1000 - c2}, {hi / 1000 - c1}]"


def check_scan(counts, what, got, expected, start, stop, reverse, mode, r1, r2):
    """got = list(db.items/keys/values(start, stop, reverse=reverse)) (mode 'items',
    'keys' or 'values') over keys only one thread writes; expected: its state."""
    if reverse:
        got = got[::-1]
    want = sorted((k, e) for k, e in expected.items()
                  if (start is None or k >= start) and (stop is None or k < stop))
    i = 0
    for k, e in want:
        vis = visibility(e, r1, r2)
        if vis == "maybe":
            counts.maybes += 1
        if i < len(got):
            gk = got[i][0] if mode == "items" else (got[i] if mode == "keys" else None)
            gv = got[i][1] if mode == "items" else (got[i] if mode == "values" else None)
            # values() mode: the value names its key, so equal values mean the same key
            present = (gk == k) if gk is not None else (gv == e[0])
        else:
            present = False
        counts.checks += 1
        if present:
            if mode == "items":
                assert gv == e[0], f"{what}: {k!r} is {gv!r:.80}, expected {e[0]!r:.80}"
            assert vis != "no", f"{what}: {k!r} should have expired by {r1} ms (expiry <= {e[2]})"
            i += 1
        else:
            assert vis != "yes", (f"{what}: {k!r} is missing (expected {e[0]!r:.60}); "
                                  f"found {got[i] if i < len(got) else 'the end'!r:.80} there")
    assert i == len(got), f"{what}: unexpected entry {got[i]!r:.100} (not in the expected state, or out of order)"


class Invariants:
    """What a cross-thread reader checks in any view of the whole DB."""

    def __init__(self, n_owners):
        self.n_owners = n_owners
        self.valid = {}
        for i in range(n_owners):
            for k in owner_keys(i):
                self.valid[k] = i
        self.last_gen = [-1] * n_owners    # the newest group generation seen per owner

    def entries(self, counts, what, got, reverse, mode="items"):
        """Order, key space, and value form of a scan; returns {key: value} (items mode)."""
        prev = None
        for e in got:
            k = e[0] if mode == "items" else e
            if mode != "values":
                assert k in self.valid, f"{what}: key {k!r:.80} is outside every owner's key space"
                if prev is not None:
                    assert (k < prev) if reverse else (k > prev), \
                        f"{what}: {k!r} follows {prev!r} in a {'reverse' if reverse else 'forward'} scan"
                prev = k
            if mode == "items":
                parse_value(k, e[1])
            elif mode == "values":
                key = e.split(b"|", 1)[0]
                assert key in self.valid, f"{what}: value {e[:60]!r} names no valid key"
                parse_value(key, e)
                if prev is not None:
                    assert (key < prev) if reverse else (key > prev), f"{what}: values out of key order"
                prev = key
            counts.checks += 1
        return dict(got) if mode == "items" else None

    def groups(self, counts, what, view, monotonic):
        """Each owner's group keys in a whole-DB view: all absent or all one generation;
        with monotonic, never older than the last view this reader checked."""
        for i in range(self.n_owners):
            p = owner_prefix(i)
            gens = set()
            for j in range(GROUP_KEYS):
                v = view.get(p + b"g%d" % j)
                gens.add(-1 if v is None else parse_value(p + b"g%d" % j, v)[0])
            counts.checks += 1
            assert len(gens) == 1, f"{what}: owner {i}'s group keys show generations {sorted(gens)} (a batch half-applied)"
            g = gens.pop()
            if monotonic:
                assert g >= self.last_gen[i], f"{what}: owner {i}'s group went back from generation {self.last_gen[i]} to {g}"
                self.last_gen[i] = g


# --------------------------------------------------------------------- threads

class Owner:
    """Writes and reads its own key space, checking every read against its state."""

    def __init__(self, db, clock, i, seed, stop, allow_compact_range):
        self.db, self.clock, self.i, self.stop = db, clock, i, stop
        self.rng = random.Random(seed * 1000 + i)
        self.prefix = owner_prefix(i)
        self.keys = owner_keys(i)
        self.plain = self.keys[GROUP_KEYS:]
        self.bound_end = self.prefix[:-1] + b"0"     # b"/" + 1
        self.expected = {}
        self.gen = 0
        self.group_gen = 0
        self.snapshots = []      # (Snapshot, copy of expected when taken)
        self.counts = Counts()
        self.kinds = dict.fromkeys(("put", "ttl_put", "delete", "batch", "get", "ttl", "scan",
                                    "held_iterator", "snapshot_take", "snapshot_check",
                                    "snapshot_release", "flush", "compact_range"), 0)
        self.allow_compact_range = allow_compact_range

    def _value(self, key, flag):
        self.gen += 1
        return make_value(key, self.gen, flag, self.rng.choice((0, 8, 40, 120, 300, 900)))

    def _bracket(self):
        return self.clock.ms()

    def write_one(self):
        rng, key = self.rng, self.rng.choice(self.plain)
        sync = rng.random() < 0.02
        r = rng.random()
        if r < 0.62:
            v = self._value(key, b"p")
            self.db.put(key, v, sync=sync)
            self.expected[key] = (v, None, None)
            self.kinds["put"] += 1
        elif r < 0.80:
            ttl = rng.choice(TTLS)
            v = self._value(key, b"t")
            c1 = self.clock.ms()
            self.db.put(key, v, ttl=ttl, sync=sync)
            c2 = self.clock.ms()
            self.expected[key] = (v, c1 + ttl * 1000, c2 + ttl * 1000)
            self.kinds["ttl_put"] += 1
        else:
            self.db.delete(key, sync=sync)
            self.expected.pop(key, None)
            self.kinds["delete"] += 1

    def batch(self):
        rng = self.rng
        wb = self.db.batch()
        c1 = self.clock.ms()
        staged = []
        for _ in range(rng.randint(2, 8)):
            key = rng.choice(self.plain)
            r = rng.random()
            if r < 0.6:
                v = self._value(key, b"p")
                wb.put(key, v)
                staged.append((key, v, None))
            elif r < 0.8:
                ttl = rng.choice(TTLS)
                v = self._value(key, b"t")
                wb.put(key, v, ttl=ttl)
                staged.append((key, v, ttl))
            else:
                wb.delete(key)
                staged.append((key, None, None))
        if rng.random() < 0.5:
            self.group_gen = self.gen = self.gen + 1
            for j in range(GROUP_KEYS):
                key = self.prefix + b"g%d" % j
                v = make_value(key, self.group_gen, b"g", rng.choice((0, 30, 200)))
                wb.put(key, v)
                staged.append((key, v, None))
        self.db.write(wb, sync=rng.random() < 0.05)
        c2 = self.clock.ms()
        for key, v, ttl in staged:
            if v is None:
                self.expected.pop(key, None)
            elif ttl is None:
                self.expected[key] = (v, None, None)
            else:
                self.expected[key] = (v, c1 + ttl * 1000, c2 + ttl * 1000)
        self.kinds["batch"] += 1

    def get(self):
        key = self.rng.choice(self.keys)
        r1 = self.clock.ms()
        got = self.db.get(key)
        r2 = self.clock.ms()
        check_get(self.counts, f"owner {self.i} get", key, got, self.expected.get(key), r1, r2)
        self.kinds["get"] += 1
        if self.rng.random() < 0.3:
            check_ttl(self.counts, f"owner {self.i} ttl", key, lambda: self.db.ttl(key),
                      self.expected.get(key), self.clock)
            self.kinds["ttl"] += 1

    def _range(self):
        """A random [start, stop) inside the key space (None: the prefix's bounds)."""
        if self.rng.random() < 0.3:
            return self.prefix, self.bound_end
        a, b = sorted(self.rng.sample(range(len(self.keys) + 1), 2))
        return self.keys[a], (self.keys[b] if b < len(self.keys) else self.bound_end)

    def scan(self, source=None, expected=None, what=None):
        src = self.db if source is None else source
        exp = self.expected if expected is None else expected
        start, stop = self._range()
        reverse = self.rng.random() < 0.5
        mode = self.rng.choice(("items", "items", "keys", "values"))
        r1 = self.clock.ms()
        it = getattr(src, mode)(start, stop, reverse=reverse)
        r2 = self.clock.ms()
        got = list(it)
        check_scan(self.counts, what or f"owner {self.i} {mode} scan{' reverse' if reverse else ''}",
                   got, exp, start, stop, reverse, mode, r1, r2)
        if source is None:
            self.kinds["scan"] += 1

    def held_iterator(self):
        """An iterator consumed in two parts, with this owner's writes (and the
        flushes and compactions they cause) in between: it shows its creation state."""
        start, stop = self._range()
        reverse = self.rng.random() < 0.5
        frozen = dict(self.expected)
        r1 = self.clock.ms()
        it = self.db.items(start, stop, reverse=reverse)
        r2 = self.clock.ms()
        got = list(itertools.islice(it, self.rng.randint(0, 60)))
        for _ in range(self.rng.randint(5, 60)):
            if self.rng.random() < 0.2:
                self.batch()
            else:
                self.write_one()
        if self.rng.random() < 0.15:
            it.close()         # closing early must release the pin
            if got:            # what was read: the range up to the last key read
                last = got[-1][0]
                lo, hi = (last, stop) if reverse else (start, last + b"\x00")
                check_scan(self.counts, f"owner {self.i} held iterator (closed early)", got,
                           frozen, lo, hi, reverse, "items", r1, r2)
        else:
            got.extend(it)
            check_scan(self.counts, f"owner {self.i} held iterator", got, frozen,
                       start, stop, reverse, "items", r1, r2)
        self.kinds["held_iterator"] += 1

    def snapshot_op(self):
        rng = self.rng
        r = rng.random()
        if not self.snapshots or (r < 0.3 and len(self.snapshots) < 3):
            self.snapshots.append((self.db.snapshot(), dict(self.expected)))
            self.kinds["snapshot_take"] += 1
        elif r < 0.85:
            snap, exp = rng.choice(self.snapshots)
            what = f"owner {self.i} snapshot (seq {snap.sequence})"
            if rng.random() < 0.5:
                self.scan(snap, exp, what + " scan")
            else:
                for key in rng.sample(self.keys, 10):
                    r1 = self.clock.ms()
                    got = snap.get(key)
                    r2 = self.clock.ms()
                    check_get(self.counts, what + " get", key, got, exp.get(key), r1, r2)
                key = rng.choice(self.keys)
                check_ttl(self.counts, what + " ttl", key, lambda: snap.ttl(key), exp.get(key), self.clock)
            self.kinds["snapshot_check"] += 1
        else:
            snap, exp = self.snapshots.pop(rng.randrange(len(self.snapshots)))
            self.scan(snap, exp, f"owner {self.i} snapshot (seq {snap.sequence}) last scan")
            if rng.random() < 0.7:
                snap.close()
            # else: dropped unclosed; Snapshot.__del__ releases it without blocking
            del snap
            self.kinds["snapshot_release"] += 1

    def step(self):
        rng = self.rng
        r = rng.random()
        if r < 0.42:
            self.write_one()
        elif r < 0.52:
            self.batch()
        elif r < 0.76:
            self.get()
        elif r < 0.86:
            self.scan()
        elif r < 0.90:
            self.held_iterator()
        elif r < 0.996:
            self.snapshot_op()
        elif r < 0.9995 or not self.allow_compact_range:
            self.db.flush()
            self.kinds["flush"] += 1
        else:
            start, stop = self._range()
            self.db.compact_range(start, stop)
            self.kinds["compact_range"] += 1
        self.counts.ops += 1

    def run(self, deadline, hard_deadline):
        """Until deadline, and past it until MIN_OPS_PER_OWNER ops are done (a loaded
        machine starves the background threads, and writers wait for them), but never
        past hard_deadline."""
        while not self.stop.is_set():
            now = time.monotonic()
            if now >= hard_deadline or (now >= deadline and self.counts.ops >= MIN_OPS_PER_OWNER):
                break
            self.step()
        for snap, exp in self.snapshots:
            self.scan(snap, exp, f"owner {self.i} snapshot (seq {snap.sequence}) at the end")
            snap.close()
        self.snapshots = []

    def verify_all(self, db, what):
        """Every key by get, and the whole key space by a forward and a reverse scan."""
        r1 = self.clock.ms()
        for key in self.keys:
            check_get(self.counts, f"{what}: owner {self.i}", key, db.get(key), self.expected.get(key), r1, r1)
        for reverse in (False, True):
            got = list(db.items(self.prefix, self.bound_end, reverse=reverse))
            check_scan(self.counts, f"{what}: owner {self.i} scan", got, self.expected,
                       self.prefix, self.bound_end, reverse, "items", r1, self.clock.ms())


class CrossReader:
    """Reads across every owner's key space, checking only invariants."""

    def __init__(self, db, i, seed, n_owners, stop):
        self.db, self.i, self.stop = db, i, stop
        self.rng = random.Random(seed * 1000 + 500 + i)
        self.inv = Invariants(n_owners)
        self.all_keys = sorted(self.inv.valid)
        self.counts = Counts()
        self.kinds = dict.fromkeys(("full_scan", "range_scan", "keys_values", "snapshot_twice",
                                    "slow_scan", "gets", "stats"), 0)

    def step(self):
        rng, db, inv = self.rng, self.db, self.inv
        what = f"reader {self.i}"
        r = rng.random()
        if r < 0.25:
            reverse = rng.random() < 0.5
            view = inv.entries(self.counts, what + " full scan", list(db.items(reverse=reverse)), reverse)
            inv.groups(self.counts, what + " full scan", view, monotonic=True)
            self.kinds["full_scan"] += 1
        elif r < 0.45:
            a, b = sorted(rng.sample(range(len(self.all_keys)), 2))
            reverse = rng.random() < 0.5
            start, stop = self.all_keys[a], self.all_keys[b]
            got = list(db.items(start, stop, reverse=reverse))
            inv.entries(self.counts, what + " range scan", got, reverse)
            assert all(start <= k < stop for k, _ in got), f"{what}: range scan left [{start!r}, {stop!r})"
            self.kinds["range_scan"] += 1
        elif r < 0.55:
            mode = rng.choice(("keys", "values"))
            reverse = rng.random() < 0.5
            inv.entries(self.counts, f"{what} {mode} scan", list(getattr(db, mode)(reverse=reverse)),
                        reverse, mode)
            self.kinds["keys_values"] += 1
        elif r < 0.70:
            # a snapshot read twice, other work in between: the same entries both times
            with db.snapshot() as snap:
                first = inv.entries(self.counts, what + " snapshot", list(snap.items()), False)
                inv.groups(self.counts, what + " snapshot", first, monotonic=True)
                for k in rng.sample(self.all_keys, 50):
                    v = db.get(k)
                    if v is not None:
                        parse_value(k, v)
                time.sleep(rng.random() * 0.02)
                second = inv.entries(self.counts, what + " snapshot again",
                                     list(snap.items(reverse=True)), True)
                inv.groups(self.counts, what + " snapshot again", second, monotonic=False)
                for k, v in second.items():
                    self.counts.checks += 1
                    assert first.get(k) == v, f"{what}: snapshot {snap.sequence} read {k!r} as {first.get(k)!r:.60}, then {v!r:.60}"
                for k, v in first.items():
                    if k not in second:
                        assert parse_value(k, v)[1] == b"t", \
                            f"{what}: snapshot {snap.sequence} lost {k!r} (not a TTL entry) between two reads"
                for k in rng.sample(sorted(first), min(20, len(first))):
                    got = snap.get(k)
                    assert got is None and parse_value(k, first[k])[1] == b"t" or got == first[k], \
                        f"{what}: snapshot {snap.sequence} get({k!r}) is {got!r:.60}, its scan read {first[k]!r:.60}"
            self.kinds["snapshot_twice"] += 1
        elif r < 0.78:
            # an iterator consumed slowly: it pins its version (and cache blocks) while
            # flushes and compactions replace the files under it
            reverse = rng.random() < 0.5
            it = db.items(reverse=reverse)
            got = []
            for n, e in enumerate(it):
                got.append(e)
                if n % 100 == 99:
                    time.sleep(0.002)
                if self.stop.is_set():
                    break
            else:
                view = inv.entries(self.counts, what + " slow scan", got, reverse)
                inv.groups(self.counts, what + " slow scan", view, monotonic=True)
            it.close()
            self.kinds["slow_scan"] += 1
        elif r < 0.98:
            for k in rng.sample(self.all_keys, 40):
                v = db.get(k)
                self.counts.checks += 1
                if v is not None:
                    parse_value(k, v)
            self.kinds["gets"] += 1
        else:
            s = db.stats()
            assert s["background_error"] is None, f"{what}: background error {s['background_error']}"
            db.memory_usage()
            self.kinds["stats"] += 1
        self.counts.ops += 1

    def run(self, owners_done):
        while not self.stop.is_set() and not owners_done.is_set():
            self.step()


# --------------------------------------------------------------------- the run

class Failed(AssertionError):
    pass


def _join(threads, timeout, what):
    end = time.monotonic() + timeout
    for t in threads:
        t.join(max(0.0, end - time.monotonic()))
    alive = [t.name for t in threads if t.is_alive()]
    if alive:
        faulthandler.dump_traceback(all_threads=True)
        raise Failed(f"{what}: threads still running after {timeout:.0f} s (a deadlock?): {alive} "
                     f"(stacks on stderr)")


def _close(db, timeout=60):
    t = threading.Thread(target=db.close, name="close")
    t.start()
    _join([t], timeout, "DB.close")


def run_stress(path, config="slab", duration=5.0, seed=1, owners=6, readers=2, hang_timeout=None):
    """One run; returns its summary. Raises on the first violation or thread error."""
    opts = dict(CONFIGS[config])
    clock = StepClock()
    stop = threading.Event()
    errors = []
    hang = hang_timeout if hang_timeout is not None else 2 * duration + PROGRESS_LIMIT + 180
    faulthandler.dump_traceback_later(hang, exit=True)
    try:
        db = lsmkv.DB(path, clock=clock, **opts)
        try:
            ows = [Owner(db, clock, i, seed, stop, allow_compact_range=(i == 0)) for i in range(owners)]
            crs = [CrossReader(db, i, seed, owners, stop) for i in range(readers)]
            deadline = time.monotonic() + duration
            hard_deadline = deadline + max(PROGRESS_LIMIT, duration)
            owners_done = threading.Event()

            def guarded(name, fn):
                def body():
                    try:
                        fn()
                    except BaseException as e:     # re-raised in the main thread
                        errors.append((name, e, traceback.format_exc()))
                        stop.set()
                return threading.Thread(target=body, name=name, daemon=True)

            def tick():
                while not stop.wait(TICK):
                    clock.t += 1

            ticker = guarded("ticker", tick)
            owner_threads = [guarded(f"owner-{o.i}", lambda o=o: o.run(deadline, hard_deadline)) for o in ows]
            reader_threads = [guarded(f"reader-{r.i}", lambda r=r: r.run(owners_done)) for r in crs]
            t0 = time.monotonic()
            ticker.start()
            for t in owner_threads + reader_threads:
                t.start()
            _join(owner_threads, hard_deadline - time.monotonic() + 60, "owners")
            owners_done.set()
            _join(reader_threads, 60, "readers")
            stop.set()
            _join([ticker], 10, "ticker")
            elapsed = time.monotonic() - t0
            if errors:
                name, e, tb = errors[0]
                more = "".join(f"\n--- {n}:\n{t}" for n, _, t in errors[1:])
                raise Failed(f"{len(errors)} thread(s) failed; first {name}:\n{tb}{more}") from e

            for o in ows:
                assert o.counts.ops >= MIN_OPS_PER_OWNER, \
                    f"owner {o.i} did only {o.counts.ops} ops in {elapsed:.1f} s (no progress?)"
                o.verify_all(db, "after the run")
            gc.collect()
            s = db.stats()
            assert s["background_error"] is None, s["background_error"]
            assert s["snapshots"] == 0, f"{s['snapshots']} snapshots left after every thread closed its own"
            assert s["pinned_versions"] == 0, f"{s['pinned_versions']} versions still pinned with no iterator open"
            assert s["flushes"] > 0 and s["compactions"] > 0, \
                f"no background work happened (flushes {s['flushes']}, compactions {s['compactions']})"
            cache = testing.cache(db)
            if cache is not None and hasattr(cache, "check"):
                cache.check()
                assert s["block_cache"]["pinned_blocks"] == 0, f"{s['block_cache']['pinned_blocks']} cache blocks still pinned"
        finally:
            stop.set()
            if not db.closed:
                _close(db)
        db = lsmkv.DB(path, clock=clock, **opts)
        try:
            for o in ows:
                o.verify_all(db, "after reopening")
        finally:
            _close(db)
    finally:
        faulthandler.cancel_dump_traceback_later()

    total = Counts()
    for x in ows + crs:
        total.add(x.counts)
    kinds = {}
    for x in ows + crs:
        for k, n in x.kinds.items():
            kinds[k] = kinds.get(k, 0) + n
    bc = s["block_cache"] or {}
    return {"config": config, "seed": seed, "owners": owners, "readers": readers,
            "seconds": round(elapsed, 1), "ops": total.ops, "checks": total.checks,
            "ttl_ambiguous": total.maybes, "kinds": kinds,
            "flushes": s["flushes"], "compactions": s["compactions"], "stalls": s["stall_count"],
            "levels": [lv["files"] for lv in s["levels"]], "files_deleted": s["files_deleted"],
            "cache_evictions": bc.get("evictions"), "cache_hits": bc.get("hits"),
            "cache_misses": bc.get("misses"), "ttl_dropped": s["ttl_dropped"]}


# --------------------------------------------------------------------- pytest

SECONDS = float(os.environ.get("LSMKV_CONCURRENCY_SECONDS", "5"))


@pytest.mark.parametrize("config", sorted(CONFIGS))
def test_concurrent_stress(tmp_path, config):
    r = run_stress(str(tmp_path / "db"), config, duration=SECONDS, seed=11)
    print(r)


def test_oracle_rejects_wrong_results():
    """The checks are not vacuous: each kind of wrong answer is reported."""
    c = Counts()
    k1, k2 = b"o00/k0001", b"o00/k0002"
    v1, v2 = make_value(k1, 1, b"p", 10), make_value(k2, 2, b"p", 10)
    exp = {k1: (v1, None, None), k2: (v2, None, None)}
    check_scan(c, "ok", [(k1, v1), (k2, v2)], exp, None, None, False, "items", 0, 0)
    check_scan(c, "ok", [k2, k1], exp, None, None, True, "keys", 0, 0)
    check_scan(c, "ok", [v1, v2], exp, None, None, False, "values", 0, 0)
    for bad in ([(k2, v2), (k1, v1)], [(k1, v1)], [(k1, v1), (k2, v1)], [(k1, v1), (k2, v2), (b"o00/k0003", v2)]):
        with pytest.raises(AssertionError):
            check_scan(c, "bad", bad, exp, None, None, False, "items", 0, 0)
    with pytest.raises(AssertionError):      # a values() scan missing one
        check_scan(c, "bad", [v2], exp, None, None, False, "values", 0, 0)
    # TTL: expiry in [5000, 6000] ms
    t = (v1, 5000, 6000)
    check_get(c, "ok", k1, v1, t, 4000, 4999)
    check_get(c, "ok", k1, None, t, 6000, 6000)
    check_get(c, "ok", k1, None, t, 5500, 5500)
    check_get(c, "ok", k1, v1, t, 5500, 5500)
    with pytest.raises(AssertionError):
        check_get(c, "bad", k1, None, t, 4000, 4999)      # dropped before its expiry
    with pytest.raises(AssertionError):
        check_get(c, "bad", k1, v1, t, 6000, 6001)        # shown after its expiry
    with pytest.raises(AssertionError):
        check_get(c, "bad", k1, v1, None, 0, 0)           # a deleted key back
    # values: CRC, key
    with pytest.raises(AssertionError):
        parse_value(k1, v1[:-9] + b"x" + v1[-8:])
    with pytest.raises(AssertionError):
        parse_value(k2, v1)
    inv = Invariants(1)
    with pytest.raises(AssertionError):
        inv.entries(c, "bad", [(b"o01/k0001", make_value(b"o01/k0001", 1, b"p", 0))], False)
    with pytest.raises(AssertionError):
        inv.entries(c, "bad", [(k2, v2), (k1, v1)], False)
    g = {b"o00/g%d" % j: make_value(b"o00/g%d" % j, 7, b"g", 0) for j in range(GROUP_KEYS)}
    inv.groups(c, "ok", g, monotonic=True)
    half = dict(g)
    half[b"o00/g0"] = make_value(b"o00/g0", 9, b"g", 0)
    with pytest.raises(AssertionError):
        inv.groups(c, "bad", half, monotonic=False)
    older = {k: make_value(k, 5, b"g", 0) for k in g}
    with pytest.raises(AssertionError):
        inv.groups(c, "bad", older, monotonic=True)


# --------------------------------------------------------------------- command line

def main(argv=None):
    ap = argparse.ArgumentParser(description="lsmkv concurrency stress (tests/engine/test_concurrency.py)")
    ap.add_argument("--duration", type=float, default=30.0, help="seconds of stress per config")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--config", default="all", help=f"one of {sorted(CONFIGS)} or 'all'")
    ap.add_argument("--owners", type=int, default=6, help="writer threads, one key space each")
    ap.add_argument("--readers", type=int, default=2, help="cross-key-space reader threads")
    ap.add_argument("--dir", default=None, help="where to put the DB (default: a temporary directory)")
    a = ap.parse_args(argv)
    if a.config != "all" and a.config not in CONFIGS:
        ap.error(f"--config must be one of {sorted(CONFIGS)} or 'all', not {a.config!r}")
    if a.duration <= 0 or a.owners < 1 or a.readers < 0 or a.owners > 99:
        ap.error("--duration must be > 0, --owners in [1, 99], --readers >= 0")
    configs = sorted(CONFIGS) if a.config == "all" else [a.config]
    base = a.dir or tempfile.mkdtemp(prefix="lsmkv-concurrency-")
    failed = False
    try:
        for name in configs:
            path = os.path.join(base, name)
            shutil.rmtree(path, ignore_errors=True)
            try:
                r = run_stress(path, name, a.duration, a.seed, a.owners, a.readers)
            except AssertionError as e:
                print(f"{name}: FAILED\n{e}", flush=True)
                failed = True
                continue
            print(f"{name}: ok  {r}", flush=True)
    finally:
        if a.dir is None:
            shutil.rmtree(base, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
