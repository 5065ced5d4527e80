"""db_bench's timed loops and their drivers: one engine call per op and one clock
read after it; the progress line; reader threads and the background writer of
readwhilewriting; the harness's own cost (timer_floor).

Part of bench/db_bench.py (see its docstring for the method).
"""

import array
import gc
import sys
import threading

from .common import perf_counter, perf_counter_ns
from .report import fmt_rate
from .stats import percentiles, to_latencies

# Each loop makes one engine call per op and then stores perf_counter_ns() into
# ts[i]: one clock read per op (a clock read costs ~0.1 us on this kind of VM, so two
# per op would double the harness cost). The latency of op i is ts[i] - ts[i-1]
# (for the first op of a chunk: minus the chunk's start time), computed after the
# run by to_latencies(); it includes the few bytecodes of loop overhead, which are
# the same for every engine (the header prints them as the empty-op floor).
# Everything the loops use is bound to a local (default arguments). They run in
# chunks so the driver can update the progress line between chunks.


def chunk_write(op, ks, vs, ts):
    def chunk(lo, hi, op=op, ks=ks, vs=vs, ts=ts, pc=perf_counter_ns):
        for i in range(lo, hi):
            op(ks[i], vs[i])
            ts[i] = pc()
        return hi - lo, 0
    return chunk


def chunk_delete(op, ks, ts):
    def chunk(lo, hi, op=op, ks=ks, ts=ts, pc=perf_counter_ns):
        for i in range(lo, hi):
            op(ks[i])
            ts[i] = pc()
        return hi - lo, 0
    return chunk


def chunk_get(op, ks, ts):
    def chunk(lo, hi, op=op, ks=ks, ts=ts, pc=perf_counter_ns):
        found = 0
        for i in range(lo, hi):
            r = op(ks[i])
            ts[i] = pc()
            if r is not None:
                found += 1
        return hi - lo, found
    return chunk


def chunk_multi_get(op, batches, ts):
    """multireadrandom: op(list of keys) -> list of values; one timestamp per batch;
    returns (batches done, keys found)."""
    def chunk(lo, hi, op=op, batches=batches, ts=ts, pc=perf_counter_ns):
        found = 0
        for i in range(lo, hi):
            vs = op(batches[i])
            ts[i] = pc()
            found += len(vs) - vs.count(None)
        return hi - lo, found
    return chunk


def chunk_seek(op, ks, ts):
    def chunk(lo, hi, op=op, ks=ks, ts=ts, pc=perf_counter_ns):
        found = 0
        for i in range(lo, hi):
            k = ks[i]
            r = op(k)
            ts[i] = pc()
            if r is not None and r[0] == k:
                found += 1
        return hi - lo, found
    return chunk


def chunk_scan(nxt, ts):
    def chunk(lo, hi, nxt=nxt, ts=ts, pc=perf_counter_ns):
        i = lo
        try:
            for i in range(lo, hi):
                nxt()
                ts[i] = pc()
        except StopIteration:
            return i - lo, i - lo
        return hi - lo, hi - lo
    return chunk


class Progress:
    def __init__(self, enabled, label, total):
        self.enabled = enabled
        self.label = label
        self.total = total
        self.t0 = perf_counter()
        self.last = self.t0
        self.width = 0

    def update(self, done, now):
        if not self.enabled or now - self.last < 0.25:
            return
        self.last = now
        el = now - self.t0
        rate = done / el if el > 0 else 0
        pct = 100.0 * done / self.total if self.total else 100.0
        line = f"  {self.label}: {done}/{self.total} ({pct:5.1f}%) {fmt_rate(rate)} ops/s  {el:6.1f}s"
        self.width = max(self.width, len(line))
        sys.stderr.write("\r" + line.ljust(self.width))
        sys.stderr.flush()

    def clear(self):
        if self.enabled and self.width:
            sys.stderr.write("\r" + " " * self.width + "\r")
            sys.stderr.flush()


def drive(chunk, n, progress, starts):
    """Run chunk(lo, hi) over [0, n) in growing chunks, appending (lo, start ns) of
    each chunk to starts. Returns (ops done, found)."""
    done = found = 0
    step = 16
    while done < n:
        hi = min(n, done + step)
        t_chunk = perf_counter()
        starts.append((done, perf_counter_ns()))
        k, f = chunk(done, hi)
        asked = hi - done
        done += k
        found += f
        if k < asked:
            break                    # iterator exhausted
        now = perf_counter()
        progress.update(done, now)
        if now - t_chunk < 0.02 and step < 65536:
            step *= 2
    return done, found


def chunk_churn(put, get, ks, vs, ts):
    """churn: op i is put(ks[i], vs[i]), or get(ks[i]) where vs[i] is None."""
    def chunk(lo, hi, put=put, get=get, ks=ks, vs=vs, ts=ts, pc=perf_counter_ns):
        found = 0
        for i in range(lo, hi):
            v = vs[i]
            if v is None:
                if get(ks[i]) is not None:
                    found += 1
            else:
                put(ks[i], v)
            ts[i] = pc()
        return hi - lo, found
    return chunk


class _DoneCounter:
    """The progress object drive() gets in a reader thread: it only records how far
    the thread is, for the main thread's progress line."""

    def __init__(self, counts, slot):
        self.counts, self.slot = counts, slot

    def update(self, done, now):
        self.counts[self.slot] = done


class BackgroundWriter:
    """readwhilewriting's writer: puts ks[i], vs[i] for i = 0, 1, ... (wrapping around)
    at full speed until stop is set, in chunks of CHUNK ops between checks of stop,
    with the same per-op timing as every other loop. total counts every put it made
    (over all its runs), for the model of what the DB holds."""
    CHUNK = 256

    def __init__(self, make_put, ks, vs, idx):
        self.make_put, self.ks, self.vs, self.idx = make_put, ks, vs, idx
        self.total = 0
        self.error = None

    def run(self, stop, barrier=None, record=True, first=None):
        """One run (in its own thread), with a fresh put from make_put (the caller
        calls the engine's finish_writes after it). Returns {ops, seconds, lat}
        (lat: the latencies as an array('q'), when record). first (an Event) is set
        once the first chunk of puts is done."""
        ks, vs, L = self.ks, self.vs, len(self.ks)
        ts = array.array("q", bytes(8 * L))
        chunk = chunk_write(self.make_put(), ks, vs, ts)
        lats = array.array("q")
        pos = seg_lo = self.total % L
        starts = []
        done = 0
        try:
            if barrier is not None:
                barrier.wait()
            t0 = perf_counter()
            while not stop.is_set():
                hi = min(L, pos + self.CHUNK)
                starts.append((pos, perf_counter_ns()))
                chunk(pos, hi)
                done += hi - pos
                self.total += hi - pos
                pos = hi
                if first is not None and not first.is_set():
                    first.set()
                if pos == L:                # a full pass: keep its latencies, start over
                    if record:
                        lats.extend(to_latencies(ts, L, starts, seg_lo)[seg_lo:L])
                    pos = seg_lo = 0
                    starts = []
            seconds = perf_counter() - t0
            if record and pos > seg_lo:
                lats.extend(to_latencies(ts, pos, starts, seg_lo)[seg_lo:pos])
        except BaseException as ex:
            self.error = ex
            if barrier is not None:
                barrier.abort()
            raise
        return {"ops": done, "seconds": seconds, "lat": lats if record else None}

    def run_quietly(self, stop):
        """run() without recording, its exception kept in self.error (for a pass
        that only needs the writes going on)."""
        try:
            self.run(stop, None, False)
        except BaseException:
            pass

    def apply_to(self, data):
        """Update data's model with every put made so far."""
        L = len(self.idx)
        if self.total >= L:
            data.apply_puts(self.idx)
        data.apply_puts(self.idx[:self.total % L])


def run_readers(engine, slices, renew_every, progress, writer=None):
    """The threaded reads of readrandom --threads and readwhilewriting: one thread per
    key slice, each with its own get (engine.thread_reader), its own latency array and
    the same chunk_get loop as the single-threaded readrandom, all released together
    by a barrier; with a writer, its thread starts at the same barrier and stops when
    the last reader is done. The garbage collector is off throughout. Returns
    ([per-reader (done, found, seconds)], merged latencies array('q'), reader wall
    seconds (first reader start to last reader end), writer run result or None)."""
    T = len(slices)
    parties = T + 1 + (1 if writer else 0)
    barrier = threading.Barrier(parties)
    stop = threading.Event()
    # readers start once the writer has written (with a small DB, readers could
    # otherwise finish inside one GIL switch interval before the writer ran at all)
    writing = threading.Event() if writer else None
    counts = [0] * T
    outs = [None] * T
    errors = []

    def reader(t):
        close = None
        try:
            get, close = engine.thread_reader(renew_every)
            ks = slices[t]
            ts = array.array("q", bytes(8 * len(ks)))
            chunk = chunk_get(get, ks, ts)
            starts = []
            barrier.wait()
            if writing is not None:
                writing.wait(30)
            t0 = perf_counter()
            done, found = drive(chunk, len(ks), _DoneCounter(counts, t), starts)
            t1 = perf_counter()
            outs[t] = (done, found, t0, t1, to_latencies(ts, done, starts))
        except threading.BrokenBarrierError:
            pass
        except BaseException as ex:
            errors.append(ex)
            barrier.abort()
        finally:
            if close is not None:
                close()

    wres = {}

    def writer_main():
        try:
            wres.update(writer.run(stop, barrier, first=writing))
        except threading.BrokenBarrierError:
            pass
        except BaseException as ex:
            errors.append(ex)

    threads = [threading.Thread(target=reader, args=(t,), name=f"db_bench-reader-{t}") for t in range(T)]
    wthread = threading.Thread(target=writer_main, name="db_bench-writer") if writer else None
    gc.collect()
    gc.disable()
    try:
        for th in threads + ([wthread] if wthread else []):
            th.start()
        try:
            barrier.wait()
        except threading.BrokenBarrierError:
            pass
        for th in threads:
            while th.is_alive():
                th.join(0.25 if progress.enabled else None)
                progress.update(sum(counts), perf_counter())
        stop.set()
        if wthread:
            wthread.join()
    finally:
        stop.set()
        gc.enable()
        progress.clear()
    if errors:
        raise errors[0]
    lat = array.array("q")
    for o in outs:
        lat.extend(o[4][:o[0]])
    wall = max(o[3] for o in outs) - min(o[2] for o in outs)
    return [(o[0], o[1], o[3] - o[2]) for o in outs], lat, wall, (wres if writer else None)


def timed_drive(chunk, n, progress, finish=None):
    """drive() with the collector off and the clock around it (finish(), e.g. an
    engine's finish_writes, inside the timing). Returns (done, found, seconds, starts)."""
    starts = []
    gc.collect()
    gc.disable()
    try:
        t0 = perf_counter()
        done, found = drive(chunk, n, progress, starts)
        if finish is not None:
            finish()
        seconds = perf_counter() - t0
    finally:
        gc.enable()
        progress.clear()
    return done, found, seconds, starts


def timer_floor(n=200000):
    """What the harness itself costs: the same loop around an empty op (a builtin
    that does nothing useful). Returns (latency p50 us, wall us per op)."""
    ts = array.array("q", bytes(8 * n))
    ks = [None] * n
    chunk = chunk_delete(id, ks, ts)
    _, _, secs, starts = timed_drive(chunk, n, Progress(False, "", n))
    p = percentiles(to_latencies(ts, n, starts), n)
    return p["p50"], secs / n * 1e6


class OffsetProgress:
    """drive()'s progress for a part of a run that starts at op lo."""

    def __init__(self, progress, lo):
        self.progress, self.lo = progress, lo

    def update(self, done, now):
        self.progress.update(self.lo + done, now)
