"""The write controller: room for writes, level-0 slowdown and stop, the memory budget.

The compiled write path (lsmkv.core.dbcore.Core) calls make_room() when the
active memtable is full and level0_stall(nbytes) when level 0 reached the
slowdown trigger; everything else of a write is compiled.

Thread safety: both entry points run with the engine mutex held (level0_stall
releases it while a delayed write sleeps, and both wait on the engine's
condition). `pace` and `budget` are guarded by the mutex.

Invariants:
  1. A write never finds more than max_write_buffer_number memtables: it waits
     for a flush instead (a memtable stall).
  2. With memory_budget, a new memtable never pushes the block cache below
     budget_floor(): the writer waits for a flush (a budget stall).
  3. From the slowdown trigger, writes are paced to a rate that falls linearly
     from delayed_write_rate to 1/16 of it; at the stop trigger they wait until
     compaction brings level 0 down. A background error ends every wait with it.
  4. Every stall is counted once, in stall_count or slowdown_count/stop_count,
     by cause in stall_causes, and its duration in stall_seconds.
"""
import time

from lsmkv.errors import BackgroundError

DELAY_QUANTUM = 0.004     # seconds of pacing debt a delayed write sleeps off at once


class WriteController:
    def __init__(self, engine):
        self.engine = engine
        # -- guarded by the engine mutex
        self.pace = 0.0          # delayed writes: when the bytes written so far are paid for
        self.budget = dict(stalls=0, stall_seconds=0.0, cache_resizes=0, cache_capacity=0)

    # -- the memory budget

    def budget_floor(self):
        return self.engine.options.memory_budget // 8

    def memtable_charge(self):
        """Bytes the memory budget charges to memtables: the active one at its full
        write_buffer_size (it will grow to that before it is switched) or at what
        it holds if more (after adaptive_memory shrank the write buffer), the
        immutable ones at what they hold."""
        e = self.engine
        sv = e.sv
        return max(e.write_buffer_size, sv.mem.memory_usage) + sum(m.memory_usage for m in sv.imms)

    def apply_budget(self):
        """One memory budget (option memory_budget): the block cache gets what the
        memtables leave, never less than 1/8 of the budget (mutex held). Called at
        every memtable switch and flush install; shrinking releases cache pages now."""
        e = self.engine
        cap = max(e.options.memory_budget - self.memtable_charge(), self.budget_floor())
        cache = e.tables.cache
        if cache is not None and cap != cache.capacity:
            cache.set_capacity(cap)
            self.budget["cache_resizes"] += 1
        self.budget["cache_capacity"] = cap

    # -- called by the compiled write path (mutex held)

    def make_room(self):
        """The memtable is full: switch it, or wait until it may be."""
        e = self.engine
        st = e.stats
        opts = e.options
        stalled_at = None
        try:
            while True:
                if e.bg_error is not None:
                    raise BackgroundError(f"background work failed: {e.bg_error}")
                if e.shutting_down or e.closed:
                    e.check_open()                  # a dropped column family's error names it
                    raise e.state.error()
                if e.sv.mem.arena_used < e.write_buffer_size:
                    return
                if len(e.sv.imms) >= opts.max_write_buffer_number - 1:
                    if stalled_at is None:
                        stalled_at = time.monotonic()
                        st.stall_count += 1
                        st.stall_causes["memtables"] += 1
                    e.cv.wait(1.0)
                    continue
                if (opts.memory_budget and e.sv.imms and
                        self.memtable_charge() + e.write_buffer_size >
                        opts.memory_budget - self.budget_floor()):
                    # a new memtable would push the cache below its floor: wait for a flush
                    if stalled_at is None:
                        stalled_at = time.monotonic()
                        st.stall_count += 1
                        st.stall_causes["memory_budget"] += 1
                        self.budget["stalls"] += 1
                    t0 = time.monotonic()
                    e.cv.wait(1.0)
                    self.budget["stall_seconds"] += time.monotonic() - t0
                    continue
                e.switch_memtable()
                return
        finally:
            if stalled_at is not None:
                dt = time.monotonic() - stalled_at
                st.stall_seconds += dt
                st.memtable_stall_seconds += dt

    def level0_stall(self, nbytes):
        """Level 0 has too many files.

        From the slowdown trigger, writes are paced (as RocksDB's delayed_write_rate):
        the allowed rate falls linearly from options.delayed_write_rate at the
        slowdown trigger to 1/16 of it just below the stop trigger. Writes run free
        until they are DELAY_QUANTUM ahead of that pace, then one write sleeps the
        debt off: a slowdown delays one write in a few hundred by a few ms instead of
        every write (docs/tuning.md has the measured effect on put latency).
        At the stop trigger writes wait until compaction brings L0 down. A failed
        background job ends the wait with its error."""
        e = self.engine
        st = e.stats
        t0 = time.monotonic()
        if e.l0_files >= e.l0_stop:
            try:
                st.stop_count += 1
                st.stall_causes["level0_stop"] += 1
                while e.l0_files >= e.l0_stop:
                    if e.bg_error is not None:
                        raise BackgroundError(f"background work failed: {e.bg_error}")
                    e.check_open()
                    e.cv.notify_all()
                    e.cv.wait(1.0)
            finally:
                st.stall_seconds += time.monotonic() - t0
            return
        over = (e.l0_files - e.l0_slowdown) / max(1, e.l0_stop - e.l0_slowdown)
        rate = e.options.delayed_write_rate * (1.0 - over * 15 / 16)
        self.pace = max(self.pace, t0) + nbytes / rate
        wait = self.pace - t0
        if wait < DELAY_QUANTUM:
            return
        st.slowdown_count += 1
        st.stall_causes["level0_slowdown"] += 1
        e.mutex.release()
        try:
            time.sleep(wait)
        finally:
            e.mutex.acquire()
            st.stall_seconds += time.monotonic() - t0
