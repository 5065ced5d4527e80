# SnapshotList: the sequences of the live snapshots (db.snapshot(), transactions)
# and the oldest one flush and compaction must keep (included by dbcore.pyx; the
# engine's `snapshots`, lsmkv/engine/snapshots.py).
#
# Layout: the distinct registered sequences ascend in seqs[head:n], each with its
# number of live registrations in counts[]. A snapshot registers at the engine's
# last_seq, which only grows, so a registration is almost always an increment of
# the last entry or an append; a release is a decrement (of the last entry for a
# short-lived transaction, found by binary search otherwise).
#
# Thread safety: no lock. Every method is C code that runs holding the GIL and,
# from its first read of the state to its last write, neither calls Python code
# nor allocates a Python object (realloc is C; an error is raised only before
# anything changed). So no other thread runs in the middle of one, and no
# garbage collector finalizer either (the collector runs only at a Python
# allocation): each call is atomic, for threads and for finalizers
# (Snapshot.__del__, a transaction collected while open) alike, and a release
# never blocks. dbcore does not declare itself free-threading compatible, so a
# free-threaded interpreter turns the GIL on when it loads it, unless told to
# keep it off (PYTHON_GIL=0, -X gil=0): then the import fails (the check below)
# rather than run these calls, and the engine's other GIL-atomic steps (core.pxi,
# txn.pxi's batch pool), unprotected.
#
# Invariants:
#   1. seqs[head:n] ascend strictly; counts[head] > 0 and counts[n-1] > 0 when
#      head < n; total is the sum of counts[head:n]; nzero is how many of them
#      are 0 (released entries in the middle, dropped when the arrays are full).
#   2. oldest() is at most the sequence of every registration not yet released:
#      seqs[head] (the smallest with a count > 0), or last_seq when none.
#   3. register() reads the engine's last_seq and records it in one atomic step.
#      A flush or compaction that called oldest() before it got X <= last_seq
#      then <= the new snapshot's sequence (last_seq only grows), so it keeps
#      every version that snapshot reads and rewrites to sequence 0 only
#      versions <= X; one that calls oldest() after it sees it. This is what the
#      engine mutex gave before, and all it gave: oldest() is called with the
#      mutex held only because its callers hold it anyway.

from libc.stdlib cimport realloc
from libc.string cimport memmove

import sys as _sys

if not getattr(_sys, "_is_gil_enabled", lambda: True)():
    raise ImportError("lsmkv's compiled core needs the GIL (its snapshot registry, transactions and "
                      "lock-free reads are atomic only under it), and this free-threaded interpreter "
                      "runs with the GIL forced off (PYTHON_GIL=0 or -X gil=0): run it without that "
                      "setting (it then turns the GIL on for lsmkv)")


cdef class SnapshotList:
    """The live snapshots' sequences (a multiset: several snapshots may share
    one) and oldest(); the engine's `snapshots`. See snaplist.pxi for why it
    needs no lock (tests/engine/test_snapshot_list.py exercises it)."""
    cdef Core core
    cdef uint64_t* seqs
    cdef uint64_t* counts
    cdef Py_ssize_t head, n, cap, nzero, total

    def __cinit__(self, Core core not None):
        self.core = core
        self.seqs = <uint64_t*>malloc(16 * sizeof(uint64_t))
        self.counts = <uint64_t*>malloc(16 * sizeof(uint64_t))
        if self.seqs == NULL or self.counts == NULL:
            free(self.seqs)
            free(self.counts)
            self.seqs = self.counts = NULL
            raise MemoryError()
        self.cap = 16
        self.head = self.n = self.nzero = self.total = 0

    def __dealloc__(self):
        free(self.seqs)
        free(self.counts)

    def __len__(self):
        return self.total

    cdef Py_ssize_t find(self, uint64_t seq) noexcept:
        """The first index in [head, n) whose sequence is >= seq (n if none)."""
        cdef Py_ssize_t lo = self.head, hi = self.n, mid
        while lo < hi:
            mid = (lo + hi) >> 1
            if self.seqs[mid] < seq:
                lo = mid + 1
            else:
                hi = mid
        return lo

    cdef int make_room(self) except -1:
        """Room for one more entry at n: drop the released entries and move the
        live ones to the front, or grow the arrays (only C calls)."""
        cdef Py_ssize_t i, j = 0
        cdef Py_ssize_t live = self.n - self.head - self.nzero
        cdef uint64_t* p
        if live < self.cap - self.cap // 4:
            for i in range(self.head, self.n):
                if self.counts[i]:
                    self.seqs[j] = self.seqs[i]
                    self.counts[j] = self.counts[i]
                    j += 1
            self.head, self.n, self.nzero = 0, j, 0
            return 0
        p = <uint64_t*>realloc(self.seqs, 2 * self.cap * sizeof(uint64_t))
        if p == NULL:
            raise MemoryError()
        self.seqs = p
        p = <uint64_t*>realloc(self.counts, 2 * self.cap * sizeof(uint64_t))
        if p == NULL:
            raise MemoryError()
        self.counts = p
        self.cap *= 2
        return 0

    cdef uint64_t register(self) except? 0xFFFFFFFFFFFFFFFF:
        """Register a snapshot at the engine's last_seq, now; returns that sequence."""
        cdef uint64_t seq = self.core.last_seq
        cdef Py_ssize_t i, n = self.n
        if n > self.head and self.seqs[n - 1] == seq:
            self.counts[n - 1] += 1
        elif n == self.head or self.seqs[n - 1] < seq:
            if n == self.cap:
                self.make_room()
                n = self.n
            self.seqs[n] = seq
            self.counts[n] = 1
            self.n = n + 1
        else:                     # older than a registered one: not made by this engine (last_seq grows)
            i = self.find(seq)
            if self.seqs[i] == seq:
                if self.counts[i] == 0:
                    self.nzero -= 1
                self.counts[i] += 1
            else:
                if self.n == self.cap:
                    self.make_room()
                    i = self.find(seq)
                memmove(self.seqs + i + 1, self.seqs + i, (self.n - i) * sizeof(uint64_t))
                memmove(self.counts + i + 1, self.counts + i, (self.n - i) * sizeof(uint64_t))
                self.seqs[i] = seq
                self.counts[i] = 1
                self.n += 1
        self.total += 1
        return seq

    cdef bint unregister(self, uint64_t seq) noexcept:
        """Release one registration of seq; False if there is none."""
        cdef Py_ssize_t i = self.n - 1
        if i < self.head:
            return False
        if self.seqs[i] != seq:
            i = self.find(seq)
            if i == self.n or self.seqs[i] != seq or self.counts[i] == 0:
                return False
        self.counts[i] -= 1
        self.total -= 1
        if self.counts[i] == 0:
            if i == self.n - 1:
                self.n -= 1
                while self.n > self.head and self.counts[self.n - 1] == 0:
                    self.n -= 1
                    self.nzero -= 1
            elif i == self.head:
                self.head += 1
                while self.counts[self.head] == 0:      # the last entry's count is > 0
                    self.head += 1
                    self.nzero -= 1
            else:
                self.nzero += 1
            if self.n == self.head:
                self.n = self.head = 0
        return True

    def new(self):
        """Register a snapshot at the engine's current last_seq (ClosedError if the
        engine is closed); returns that sequence. Release it with release()."""
        if self.core.closed:
            raise self.core.state.error()
        return self.register()

    def release(self, uint64_t seq, blocking=True):
        """Release one registration of seq (a no-op if there is none). Never blocks
        (`blocking` is accepted for older callers)."""
        self.unregister(seq)

    def oldest(self):
        """The oldest sequence a reader may still need: the smallest registered, or
        the engine's last_seq if none (flush and compaction call it, mutex held)."""
        return self.seqs[self.head] if self.total else self.core.last_seq

    def sequences(self):
        """The registered sequences, ascending, each as many times as registered
        (for tests and debugging: not atomic with concurrent releases)."""
        out = []
        for i in range(self.head, self.n):
            out.extend([self.seqs[i]] * self.counts[i])
        return out
