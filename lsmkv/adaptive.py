"""Adaptive split of one memory budget between memtables and the block cache.

With options memory_budget and adaptive_memory=True, a controller thread of the DB
samples the load every adaptive_interval seconds and may change the write buffer
size (the size at which the active memtable is switched). The block cache gets what
the memtables leave (DB._apply_budget), so moving the write buffer size moves budget
between the two. This module is the policy alone: pure, clock-free, tested with
synthetic samples (tests/test_adaptive.py); the DB feeds it and applies its answers.

What more memory buys, measured on this engine (docs/tuning.md, "Adaptive split"):
- memtables: fewer, larger L0 files, so less compaction per byte written and fewer
  writer stalls. A larger skiplist is NOT faster per put: 3M random puts ran at
  317k/s with 4 MiB buffers (2.8 s of stalls), 347k/s with 16 MiB (0.4 s) and
  263k/s with 64 MiB (0.4 s; the skiplist outgrows the CPU caches). So memtables
  grow only while writers stall, never merely because the load is write-heavy.
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

Policy, one decision per sample (the smallest memtable that does not stall, and
all the rest to the cache):
  grow   (write buffer x2) when writers stalled for more than STALL_FRACTION of the
         interval and the load is not read-mostly: up to flush_max_size when they
         waited for a flush (memtables full), up to l0_max_size when L0 had too many
         files (the debt is compaction's; bigger memtables only postpone it).
         Waits for the budget itself are not counted. The size grown to becomes a
         floor that probing does not cross for FLOOR_SAMPLES samples.
  shrink (to min_size at once) for the cache: the load is read-mostly (smoothed
         write share below READ_MOSTLY), the cache is full (usage >= CACHE_FULL x
         capacity) and it misses (hit ratio below HIT_ENOUGH);
  shrink (probe) when writes go on, the load is not read-mostly and no writer
         stalled for QUIET_SAMPLES samples, down to the floor: a smaller skiplist
         is faster per put, and the cache gets the difference.
  hold   otherwise. Moves are at least HOLD_SAMPLES samples apart (hysteresis: a
         change must have time to show in the next samples).

Invariants: min_size <= write_buffer_size <= max_size at every step; max_size x
max_write_buffer_number plus the cache floor fit in the budget.
"""

import collections
from dataclasses import dataclass

STALL_FRACTION = 0.05   # writers stalled for > 5% of the interval: memtables are too small
READ_MOSTLY = 0.2       # < 20% of operations are writes: reads decide
CACHE_FULL = 0.9        # the cache holds >= 90% of its capacity
HIT_ENOUGH = 0.99       # a cache that hits 99% gains little from more memory
EWMA = 0.5              # weight of the newest sample in the smoothed write share
HOLD_SAMPLES = 2        # samples between two moves
QUIET_SAMPLES = 2       # samples without a stall before probing a smaller write buffer
FLOOR_SAMPLES = 60      # samples a size that was grown to stays the probing floor
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
        stalled = (flush_stalled or l0_stalled) and not read_mostly
        self._quiet = 0 if stalled else self._quiet + 1
        if self._quiet >= FLOOR_SAMPLES:
            self._floor = self.min_size
        lookups = s.cache_hits + s.cache_misses
        hit_ratio = s.cache_hits / lookups if lookups else 1.0
        cache_full = s.cache_capacity > 0 and s.cache_usage >= CACHE_FULL * s.cache_capacity
        if self._since_move < HOLD_SAMPLES:
            return self.size
        new, reason = self.size, None
        if stalled:
            top = self.flush_max_size if flush_stalled else self.l0_max_size
            if self.size < top:
                new = min(self.size * 2, top)
                self._floor = new
                what = "for a flush" if flush_stalled else "on L0's file count"
                reason = (f"grow: writers waited {what} "
                          f"{max(s.flush_stall_seconds, s.l0_stall_seconds):.2f} s of {s.seconds:.2f} s")
        elif self.size > self.min_size and s.reads and read_mostly and cache_full \
                and hit_ratio < HIT_ENOUGH:
            new = self.min_size
            reason = (f"shrink: {100 * (1 - self.write_share):.0f}% reads, cache full "
                      f"({s.cache_usage / s.cache_capacity:.2f}), hit ratio {hit_ratio:.3f}")
        elif s.writes and not read_mostly and self._quiet >= QUIET_SAMPLES \
                and self.size // 2 >= self._floor:
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
        return new

    def stats(self):
        return {"write_buffer_size": self.size, "min_write_buffer_size": self.min_size,
                "max_write_buffer_size": self.max_size,
                "l0_max_write_buffer_size": self.l0_max_size,
                "flush_max_write_buffer_size": self.flush_max_size, "samples": self.samples,
                "grows": self.grows, "shrinks": self.shrinks,
                "write_share": None if self.write_share is None else round(self.write_share, 3),
                "probe_floor": self._floor, "last_reason": self.last_reason, "history": list(self.history)}
