"""Adaptive split of one memory budget between memtables and the block cache.

With options memory_budget and adaptive_memory=True, a controller job of the DB (on the background pool)
samples the load every adaptive_interval seconds and may change the write buffer
size (the size at which the active memtable is switched). The block cache gets what
the memtables leave (WriteController.apply_budget), so moving the write buffer size
moves budget between the two. The policy (AdaptiveSplit) is pure, clock-free, tested
with synthetic samples (tests/engine/test_adaptive.py); AdaptiveController, at the end, is
the engine's component that feeds it and applies its answers (its thread's step).

What more memory buys, measured on this engine (docs/tuning.md, "Adaptive split"):
- memtables: fewer, larger L0 files, so less compaction per byte written and fewer
  writer stalls; where keys are overwritten, more overwrites absorbed before the
  flush (only the newest version of a key reaches L0). A larger skiplist is NOT
  faster per put: 3M random puts ran at 317k/s with 4 MiB buffers (2.8 s of
  stalls), 347k/s with 16 MiB (0.4 s) and 263k/s with 64 MiB (0.4 s; the skiplist
  outgrows the CPU caches). So memtables grow only while writers stall or while
  they absorb overwrites, never merely because the load is write-heavy.
- block cache: hits instead of reads and decompression, which matters only when the
  cache is full and still missing.

The first phase-shift runs (bench/phaseshift.py) showed two more things. Growing
the memtables on L0 stalls up to the budget's limit (112 MiB of 256) let L0 carry
more compaction debt into the read phase, where the merges then replaced cached
blocks: the read phase ran at 101k ops/s against 264k with 4 MiB memtables. And
halving one step per move took 4 s to hand the memory back. Hence the two limits
below: L0 stalls grow the memtables only up to l0_max_size (budget/16), and reads
take the memory back in one move. A third run still grew them to 112 MiB on waits
for a flush (the flush thread shares 2 cores with the writer and a compaction, so a
bigger memtable does not flush sooner; it only takes longer to hand back) and then,
in the read phase, answered the 5% of writes waiting for that 112 MiB flush with
more growth. Hence: flush waits grow the memtables up to flush_max_size (budget/8),
and a read-mostly load never grows them.

The fourth round (bench/phaseshift.py --repeat 3, uniform random puts) had adaptive
tie the small split in the median and lose best-of-3: it started at the user's 64 MiB
and spent the first seconds probing down, and a uniform write phase gives a larger
memtable nothing to do. Hence: with adaptive_memory the write buffer starts at
min_size (DB.__init__), and a second reason to grow, the one RocksDB users raise
write_buffer_size for: overwrites that a bigger memtable absorbs. Flushes report
how many of a memtable's entries reached L0 (kept); absorb_gain predicts from kept
what doubling would save, and growth and probing both follow that prediction.

The fifth round (hotset workload, docs/tuning.md) grew the memtables to max_size (112
MiB of 256) on absorbed overwrites and met the target in 4 runs of 5. In its worst run
the cache got its memory back only after two ~100 MiB memtables had been flushed one
after the other (13 s of the read phase with a 152 MiB cache). A sixth round capped
that growth at flush_max_size (32 MiB) to hand memory back sooner, and lost more in
the read phase instead: 32 MiB memtables leave ~80 MiB of L0 files at the shift,
L0->L1 compaction takes ~15 s on a loaded machine, and until it ends every L0 file's
stale versions enlarge what the reads need cached (hit ratio ~0.73 with a 252 MiB
cache, ~0.9 once the compaction ended). Few big L0 files, from memtables that absorbed
the overwrites, cost the read phase less than a fast hand-back gains, so the cap is
max_size again. Kept from the sixth round: a shift to reads that shows in one sample
(under READ_NOW writes) shrinks the memtables without waiting ~1 s for the smoothed
share.

The last change: the overwrite rule goes before the stall rule. With it after,
stalls doubled 4 -> 8 -> 16 -> 32 MiB first and each move waited for two flushes at
the new size, so overwrites reached 112 MiB only 4-5.5 s into the write phase; first,
it moved 4 -> 112 MiB at the first sample (hotset: 1.04x -> 1.14x the better fixed
split in the median).

Policy, one decision per sample (the smallest memtable that neither stalls nor
loses absorbed overwrites, and all the rest to the cache), in this order:
  grow   (in one move, up to max_size) to absorb overwrites: the load is not
         read-mostly, the cache is not starved (full and missing while read), at
         least ABSORB_FLUSHES flushes since the last move, and absorb_target finds
         a doubling that flushes ABSORB_GAIN fewer of the bytes written (compaction
         then rewrites each byte not flushed less often, too); it grows to the
         largest size whose doubling step still saves that much;
  grow   (write buffer x2) when writers stalled for more than STALL_FRACTION of the
         interval and the load is not read-mostly: up to flush_max_size when they
         waited for a flush (memtables full), up to l0_max_size when L0 had too many
         files (the debt is compaction's; bigger memtables only postpone it).
         Waits for the budget itself are not counted. The size grown to becomes a
         floor that probing does not cross for FLOOR_SAMPLES samples.
  shrink (to min_size at once) for the cache: the load is read-mostly (smoothed
         write share below READ_MOSTLY, or the last sample's below READ_NOW), the
         cache is full (usage >= CACHE_FULL x capacity) and it misses (hit ratio
         below HIT_ENOUGH);
  shrink (probe) when writes go on, the load is not read-mostly, no writer stalled
         for QUIET_SAMPLES samples and ABSORB_FLUSHES flushes at this size showed
         that half of it would lose less than ABSORB_GAIN, down to the floor: a
         smaller skiplist is faster per put, and the cache gets the difference.
  hold   otherwise. Moves are at least HOLD_SAMPLES samples apart (hysteresis: a
         change must have time to show in the next samples).

Thread safety: AdaptiveSplit is not thread-safe; its one caller is
AdaptiveController.tick(), which runs under the engine mutex (see its docstring).

Invariants:
  1. min_size <= write_buffer_size <= max_size at every step.
  2. max_size x max_write_buffer_number plus the cache floor fit in the budget.
"""

import collections
import math
import time
from dataclasses import dataclass

STALL_FRACTION = 0.05   # writers stalled for > 5% of the interval: memtables are too small
READ_MOSTLY = 0.2       # < 20% of operations are writes: reads decide
READ_NOW = 0.1          # < 10% writes in the last sample alone: reads may take the memory
CACHE_FULL = 0.9        # the cache holds >= 90% of its capacity
HIT_ENOUGH = 0.99       # a cache that hits 99% gains little from more memory
EWMA = 0.5              # weight of the newest sample in the smoothed write share
HOLD_SAMPLES = 2        # samples between two moves
QUIET_SAMPLES = 2       # samples without a stall before probing a smaller write buffer
FLOOR_SAMPLES = 60      # samples a size that was grown to stays the probing floor
ABSORB_GAIN = 0.1       # grow when doubling would flush >= 10% fewer of the bytes written
ABSORB_FLUSHES = 2      # flushes since the last move before their overwrites are judged
MIN_WRITE_BUFFER = 1 << 20
HISTORY = 32


@dataclass
class Sample:
    """Counter deltas over one interval, read by the DB under its mutex."""
    seconds: float          # length of the interval
    writes: int             # puts + deletes (a batch counts each entry)
    reads: int              # gets
    flush_stall_seconds: float   # writers waiting for a flush (memtables full)
    l0_stall_seconds: float      # writers slowed down or stopped by L0's file count
    cache_hits: int
    cache_misses: int
    cache_usage: int        # payload + reserved (index/filter) bytes held now
    cache_capacity: int
    flushes: int = 0        # memtables flushed in the interval
    flushed_entries: int = 0     # entries those memtables held
    flush_output_entries: int = 0   # entries their L0 files got (overwritten ones dropped)


def _kept(x):
    """Flush output / memtable entries for x = memtable puts / hot keys (see absorb_gain)."""
    return (1 - math.exp(-x)) / x


def overwrite_depth(kept):
    """x = memtable puts / hot-set keys that explains kept = flush output entries /
    memtable entries, solved by bisection ((1 - e^-x)/x falls from 1 at x=0 to 0).

    >>> round(overwrite_depth(0.5), 3), overwrite_depth(1.0)
    (1.594, 0.0)
    """
    if not 0 < kept < 1:
        return 0.0 if kept >= 1 else math.inf
    lo, hi = 0.0, 1e6
    for _ in range(100):
        x = (lo + hi) / 2
        if _kept(x) > kept:
            lo = x
        else:
            hi = x
    return (lo + hi) / 2


def absorb_gain(kept, scale=1.0):
    """Fraction of the bytes written that doubling the write buffer would stop
    flushing, predicted from kept = flush output entries / memtable entries
    measured at the current size (1.0: no overwrite absorbed); scale=0.5 predicts
    it for the doubling from half the current size (what a halving would lose).

    Model: puts spread evenly over a hot set of H keys; a memtable of n puts keeps
    H(1 - e^-x) distinct keys, x = n/H, so kept = (1 - e^-x)/x. Doubling keeps
    (1 - e^-2x)/2x = kept (1 + e^-x)/2, a saving of kept (1 - e^-x)/2 per byte
    written. Uniform random keys over a large space give kept ~ 1 and a gain ~ 0;
    a hot set a few times larger than the memtable gives the most.

    >>> round(absorb_gain(1.0), 3), round(absorb_gain(0.6), 2), round(absorb_gain(0.05), 3)
    (0.0, 0.2, 0.025)
    >>> round(absorb_gain(0.23, scale=0.5), 2)       # 64 MiB keeps 23%: 32 -> 64 saved 18%
    0.18
    """
    x = overwrite_depth(kept) * scale
    if x <= 0 or math.isinf(x):
        return 0.0
    k = _kept(x)
    return k * (1 - math.exp(-x)) / 2


def absorb_target(kept, size, max_size):
    """The write buffer the overwrites measured at size call for: the largest
    size x 2^j (capped at max_size) whose doubling step into it still saves
    ABSORB_GAIN of the bytes written (absorb_gain's model, looking ahead: the
    saving of one doubling is small when a memtable holds a small part of the hot
    set and grows with it, so a myopic step-by-step rule would stop too early or
    take many samples). Returns size when no step pays.

    >>> MiB = 1 << 20
    >>> absorb_target(0.876, 4 * MiB, 112 * MiB) // MiB     # a hot set ~4x a 4 MiB memtable
    112
    >>> absorb_target(0.995, 4 * MiB, 112 * MiB) // MiB     # uniform keys: nothing to absorb
    4
    """
    best = size
    s = size
    while s < max_size:
        if absorb_gain(kept, s / size) >= ABSORB_GAIN:
            best = min(s * 2, max_size)
        s *= 2
    return best


def bounds(budget, max_write_buffer_number, floor):
    """(min_size, l0_max_size, flush_max_size, max_size) of the write buffer for a
    budget: at most max_write_buffer_number memtables of max_size leave the cache
    its floor; a user's write_buffer_size above flush_max_size is kept until the
    policy moves it."""
    hi = max(MIN_WRITE_BUFFER, (budget - floor) // max(1, max_write_buffer_number))
    lo = min(hi, max(MIN_WRITE_BUFFER, budget // 64))
    l0 = min(hi, max(lo, budget // 16))
    return lo, l0, min(hi, max(l0, budget // 8)), hi


class AdaptiveSplit:
    """Decides the write buffer size from samples; keeps a history of its moves."""

    def __init__(self, write_buffer_size, min_size, l0_max_size, flush_max_size, max_size):
        if not 0 < min_size <= l0_max_size <= flush_max_size <= max_size:
            raise ValueError(f"adaptive memory: bad bounds min {min_size}, l0 max {l0_max_size}, "
                             f"flush max {flush_max_size}, max {max_size}")
        self.min_size = min_size
        self.l0_max_size = l0_max_size
        self.flush_max_size = flush_max_size
        self.max_size = max_size
        self.size = min(max(write_buffer_size, min_size), max_size)
        self.write_share = None      # smoothed fraction of operations that are writes
        self.samples = 0
        self.grows = 0
        self.shrinks = 0
        self.last_reason = "start"
        self._since_move = HOLD_SAMPLES
        self._quiet = 0              # samples since a writer last stalled
        self._floor = self.min_size  # probing does not shrink below this
        self._flushes = 0            # flushes since the last move
        self.kept = None             # flush output / memtable entries, smoothed since the last move
        self.history = collections.deque(maxlen=HISTORY)

    def decide(self, s):
        """Feed one Sample; returns the new write buffer size (the same if held)."""
        self.samples += 1
        self._since_move += 1
        ops = s.writes + s.reads
        if ops:
            share = s.writes / ops
            self.write_share = share if self.write_share is None else \
                EWMA * share + (1 - EWMA) * self.write_share
        limit = STALL_FRACTION * s.seconds
        flush_stalled = s.seconds > 0 and s.flush_stall_seconds > limit
        l0_stalled = s.seconds > 0 and s.l0_stall_seconds > limit
        read_mostly = self.write_share is not None and self.write_share < READ_MOSTLY
        # a shift to reads shows in one sample before the smoothed share follows: the
        # cache may take the memory one second sooner (never for growth decisions)
        reads_now = ops > 0 and s.writes < READ_NOW * ops
        stalled = (flush_stalled or l0_stalled) and not read_mostly
        self._quiet = 0 if stalled else self._quiet + 1
        if self._quiet >= FLOOR_SAMPLES:
            self._floor = self.min_size
        lookups = s.cache_hits + s.cache_misses
        hit_ratio = s.cache_hits / lookups if lookups else 1.0
        cache_full = s.cache_capacity > 0 and s.cache_usage >= CACHE_FULL * s.cache_capacity
        cache_starved = bool(s.reads) and cache_full and hit_ratio < HIT_ENOUGH
        if s.flushes and s.flushed_entries:
            kept = min(1.0, s.flush_output_entries / s.flushed_entries)
            self.kept = kept if not self._flushes else EWMA * kept + (1 - EWMA) * self.kept
            self._flushes += s.flushes
        judged = self._flushes >= ABSORB_FLUSHES
        if self._since_move < HOLD_SAMPLES:
            return self.size
        new, reason = self.size, None
        target = absorb_target(self.kept, self.size, self.max_size) if judged else self.size
        if s.writes and not read_mostly and not cache_starved and target > self.size:
            # before the stall rule: where overwrites call for a bigger memtable, one
            # move there beats doubling on stalls and waiting for flushes at each size
            new = target
            reason = (f"grow: flushes kept {100 * self.kept:.0f}% of the memtables' entries "
                      f"(overwrites absorbed); each doubling up to {target >> 20} MiB flushes "
                      f">= {100 * ABSORB_GAIN:.0f}% fewer of the bytes written")
        elif stalled:
            top = self.flush_max_size if flush_stalled else self.l0_max_size
            if self.size < top:
                new = min(self.size * 2, top)
                self._floor = new
                what = "for a flush" if flush_stalled else "on L0's file count"
                reason = (f"grow: writers waited {what} "
                          f"{max(s.flush_stall_seconds, s.l0_stall_seconds):.2f} s of {s.seconds:.2f} s")
        elif self.size > self.min_size and s.reads and (read_mostly or reads_now) and cache_full \
                and hit_ratio < HIT_ENOUGH:
            new = self.min_size
            reason = (f"shrink: {100 * s.reads / ops:.0f}% reads, cache full "
                      f"({s.cache_usage / s.cache_capacity:.2f}), hit ratio {hit_ratio:.3f}")
        elif s.writes and not read_mostly and self._quiet >= QUIET_SAMPLES \
                and self.size // 2 >= self._floor and judged \
                and absorb_gain(self.kept, 0.5) < ABSORB_GAIN:
            new = max(self.size // 2, self.min_size)
            reason = f"probe: no writer stall for {self._quiet} samples"
        if reason is None or new == self.size:
            return self.size
        if new > self.size:
            self.grows += 1
        else:
            self.shrinks += 1
        self.history.append({"sample": self.samples, "from": self.size, "to": new, "reason": reason})
        self.size = new
        self.last_reason = reason
        self._since_move = 0
        self._flushes = 0            # judge the new size by its own flushes
        return new

    def stats(self):
        return {"write_buffer_size": self.size, "min_write_buffer_size": self.min_size,
                "max_write_buffer_size": self.max_size,
                "l0_max_write_buffer_size": self.l0_max_size,
                "flush_max_write_buffer_size": self.flush_max_size, "samples": self.samples,
                "grows": self.grows, "shrinks": self.shrinks,
                "write_share": None if self.write_share is None else round(self.write_share, 3),
                "probe_floor": self._floor,
                "flush_kept": None if self.kept is None else round(self.kept, 3),
                "last_reason": self.last_reason, "history": list(self.history)}


class AdaptiveController:
    """The engine's adaptive_memory component: its controller thread samples the
    engine's counters every adaptive_interval, asks the policy (AdaptiveSplit) and
    applies the answer: the write buffer size, and the cache capacity through the
    memory budget.

    Thread safety: tick() runs under the engine mutex (the thread's step, or a
    test through lsmkv.testing.adaptive_tick). `prev` and `switches` are guarded
    by the mutex; `armed` is written by the controller thread alone.

    Invariants:
      1. The write buffer size stays within the policy's bounds.
      2. A smaller write buffer that the active memtable already exceeds switches
         it at once, but only while a memtable slot is free (no tick stalls).
    """

    def __init__(self, engine):
        self.engine = engine
        opts = engine.options
        # it starts at the smallest write buffer (the cache gets the rest): stalls
        # and absorbed overwrites grow it within a few samples, while a start at
        # write_buffer_size took seconds of probing to give the cache its share
        lo, l0, fl, hi = bounds(opts.memory_budget, opts.max_write_buffer_number, opts.memory_budget // 8)
        self.policy = AdaptiveSplit(lo, lo, l0, fl, hi)
        # -- guarded by the engine mutex
        self.prev = None          # (counters, monotonic time) of the last sample
        self.switches = 0         # memtables switched early to hand memory to the cache
        # -- written by the controller thread only
        self.armed = False        # its first step only waits

    def step(self):
        """Controller thread: one sample every adaptive_interval (the first one an
        interval after the open)."""
        from lsmkv.engine import background
        e = self.engine
        if e.shutting_down:
            return background.STOP
        if not self.armed:
            self.armed = True
            return background.IDLE
        try:
            self.tick()
        except BaseException as ex:   # noqa: BLE001 - a bug here must not pass silently
            e.fail_background(ex)
            return background.STOP
        return background.IDLE

    def counters(self):
        """(writes, reads, flush stall s, L0 stall s, cache hits, misses, usage,
        capacity, flushes, flushed entries, flush output entries) now. Budget stalls
        are left out: memtables that wait for budget must not be answered with
        bigger memtables."""
        e = self.engine
        c = e.tables.cache.stats()
        st = e.stats
        flush_wait = st.memtable_stall_seconds - e.writes.budget["stall_seconds"]
        return (e.n_puts + e.n_deletes, e.n_gets, flush_wait,
                st.stall_seconds - st.memtable_stall_seconds,
                c["hits"], c["misses"], c["usage"] + c["reserved"], c["capacity"],
                st.flushes, st.flushed_entries, st.flush_output_entries)

    def tick(self, now=None):
        """Sample the counters, let the policy decide, apply its answer. A smaller
        write buffer that the active memtable already exceeds switches it now (if a
        memtable slot is free), so its memory reaches the cache after the flush even
        when no write comes to switch it. Returns the write buffer size."""
        e = self.engine
        now = time.monotonic() if now is None else now
        with e.mutex:
            if e.closed or e.shutting_down:
                return e.write_buffer_size
            cur = self.counters()
            prev = self.prev
            self.prev = (cur, now)
            if prev is None or now <= prev[1]:
                return e.write_buffer_size
            p, t0 = prev
            sample = Sample(seconds=now - t0, writes=cur[0] - p[0], reads=cur[1] - p[1],
                            flush_stall_seconds=cur[2] - p[2], l0_stall_seconds=cur[3] - p[3],
                            cache_hits=cur[4] - p[4], cache_misses=cur[5] - p[5],
                            cache_usage=cur[6], cache_capacity=cur[7], flushes=cur[8] - p[8],
                            flushed_entries=cur[9] - p[9], flush_output_entries=cur[10] - p[10])
            old = e.write_buffer_size
            new = self.policy.decide(sample)
            if new == old:
                return old
            e.write_buffer_size = new
            sv = e.sv
            if (new < old and len(sv.mem) and sv.mem.arena_used >= new
                    and len(sv.imms) < e.options.max_write_buffer_number - 1):
                e.switch_memtable()        # installs, which applies the budget
                self.switches += 1
            else:
                e.writes.apply_budget()
            return new

    def stats(self):
        return dict(self.policy.stats(), early_switches=self.switches,
                    cache_capacity=self.engine.writes.budget["cache_capacity"])
