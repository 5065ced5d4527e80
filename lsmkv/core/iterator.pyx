# cython: language_level=3
"""Iterators over internal entries, and the user-facing DB iterator.

Thread safety: an iterator object is used by one thread at a time. It holds
references to every source it reads (memtables, table readers) and to a pin
object that keeps the files of its version from being deleted. HandleState is
written by the DB (close, fork) and read by the iterators without a lock: a
flag that only ever goes from open to closed.

Invariants:
  1. MergingIterator yields the union of its children in internal-key order; it
     is used in one direction per positioning (seek/next forward, seek_for_prev/
     prev backward), as DBIterator does. After seek_lazy, a child marked pending
     holds no entry of the target's user key, so until the merge moves past that
     user key it cannot come first; next() seeks every pending child to the
     target before it picks an entry of another user key.
  2. DBIterator yields, for each user key in [start, stop), the newest entry with
     sequence <= its snapshot, and only if that entry is a live PUT (not a
     deletion, not expired at the iterator's creation time, not deleted by a
     range tombstone in range_dels with a sequence in (its sequence, snapshot]),
     or a merge operand: then the fold of the visible operands over the base
     under them (fold_forward forward, the same fold collected oldest first
     backward); an entry under the newest covering tombstone is no base (None).
  3. A DBIterator yields nothing once it was closed or its DB handle was closed
     (or inherited by fork()): every later call raises ClosedError (ForkedError),
     and its sources and pin are released then if they were not already.
"""
import os

from lsmkv.errors import ClosedError, ForkedError
from libc.stdlib cimport malloc, calloc, realloc, free
from libc.string cimport memcpy, memcmp, memset
from libc.stdint cimport uint8_t, uint64_t, int64_t
from cpython.bytes cimport PyBytes_FromStringAndSize, PyBytes_AS_STRING, PyBytes_GET_SIZE
from lsmkv.core.coding cimport (cmp_ikey, cmp_bytes, load_u64, store_u64, make_tag,
                            KIND_DELETE, KIND_PUT, KIND_PUT_TTL, KIND_MERGE, KIND_MAX, TAG_SIZE)
from lsmkv.core.bloom cimport bloom_hash
from lsmkv.core.rangedel cimport RangeDelSet
from lsmkv.core.merge cimport MergeOperator
from lsmkv.errors import MergeOperatorError


cdef class HandleState:
    """See _iterator.pxd. error() is the exception a use of the closed handle raises."""

    def __cinit__(self, path=None):
        self.closed = False
        self.forked = False
        self.path = path
        self.pid = os.getpid()

    def error(self):
        """The exception for a use of the handle in its current state."""
        if self.forked:
            return ForkedError(f"the database {self.path} was opened in process {self.pid} and this "
                               f"is process {os.getpid()}, a fork() child: a DB handle cannot be used "
                               f"across fork(); open the database again in this process")
        return ClosedError("the database is closed")


cdef class InternalIterator:
    # No __cinit__: Cython zero-fills the C fields (valid = False, NULL pointers), and
    # a base __cinit__ would have to take *args/**kwargs, packing them on every
    # iterator construction (several per seek).

    cdef int seek(self, const uint8_t* target, size_t n) except -1:
        raise NotImplementedError
    cdef int seek_start(self, const uint8_t* target, size_t n) except -1:
        """The first half of seek(target): find (and start reading) what the seek
        will read, leaving the position undefined until seek_finish(target) with the
        same target. A MergingIterator starts every child before it finishes any, so
        their memory misses overlap. Here: the whole seek."""
        return self.seek(target, n)
    cdef int seek_finish(self, const uint8_t* target, size_t n) except -1:
        """The second half of seek(target), after seek_start(target)."""
        return 0
    cdef int seek_to_first(self) except -1:
        raise NotImplementedError
    cdef int seek_to_last(self) except -1:
        raise NotImplementedError
    cdef int next(self) except -1:
        raise NotImplementedError
    cdef int prev(self) except -1:
        raise NotImplementedError
    cdef int may_hold(self, const uint8_t* ukey, size_t ukn, uint64_t h) except -1:
        """0 only if this source surely holds no entry of user key ukey (bloom hash
        h): MergingIterator.seek_lazy may then leave it unpositioned. 1 here (a
        memtable's skiplist seek costs less than the question)."""
        return 1

    # Python-facing helpers (tests and tools; not on any hot path)
    def py_seek(self, bytes ikey):
        self.seek(<const uint8_t*>PyBytes_AS_STRING(ikey), PyBytes_GET_SIZE(ikey))
    def py_seek_to_first(self):
        self.seek_to_first()
    def py_seek_to_last(self):
        self.seek_to_last()
    def py_next(self):
        self.next()
    def py_prev(self):
        self.prev()
    def py_valid(self):
        return self.valid
    def py_entry(self):
        """(user_key, seq, kind, value, expiry) at the current position."""
        if not self.valid:
            return None
        cdef uint64_t tag = load_u64(self.key + self.key_len - TAG_SIZE)
        cdef int kind = tag & 0xFF
        ukey = PyBytes_FromStringAndSize(<char*>self.key, self.key_len - TAG_SIZE)
        if kind == KIND_PUT_TTL:
            return (ukey, tag >> 8, kind,
                    PyBytes_FromStringAndSize(<char*>self.val + 8, self.val_len - 8),
                    <int64_t>load_u64(self.val))
        return (ukey, tag >> 8, kind, PyBytes_FromStringAndSize(<char*>self.val, self.val_len), 0)


cdef enum:
    HEAP_MIN_CHILDREN = 8   # above this many children a heap beats the linear scan (measured)


cdef class ReadCharge:
    """The read work that level 0 costs, the input of read-triggered compaction
    (lsmkv.engine.compaction.read_compaction_units): what merging level 0 into
    level 1 would have saved the reads since level 0 took its current shape. A
    get (or multi_get's key) adds, for each level-0 table it asks past its first
    run, 1 unit for the filter probe and 16 in all when it also read a block there
    that did not answer; a seek adds SEEK_CHARGE (16: a block read) for each
    level-0 table it positions, less one when no level below holds a table (the
    merge then leaves one run, not none). Levels >= 1 are not charged: the merge
    does not remove them. A unit is about what compacting 16 bytes costs
    (docs/tuning.md, "Read-triggered compaction"). One per Core (Core.read_charge),
    charged with the GIL held. Its compaction scheduler restarts it (units 0,
    epoch + 1) when a merge of level 0 starts and ends and when level 0 changes,
    so a charge is always against the level 0 that is current; an iterator made
    before a restart (it reads the version it pinned, which no merge will help)
    charges nothing more. The scheduler sets due_at to the charge that pays for
    the merge; reaching it calls wake() once, so the merge starts at once rather
    than at the job's next timeout."""

    cdef void add(self, int64_t n) noexcept:
        self.units += n
        if self.due_at and self.units >= self.due_at:
            self.due_at = 0
            w = self.wake
            if w is not None:
                try:
                    w()
                except Exception:       # a hint only: the job's timeout looks again within a second
                    pass

    def __repr__(self):
        return f"ReadCharge(units={self.units}, epoch={self.epoch}, due_at={self.due_at})"


cdef class MergingIterator(InternalIterator):
    """Union of children (newest source first) in internal-key order.

    Complexity per step: with up to HEAP_MIN_CHILDREN children, a linear scan
    with the runner-up remembered (O(1) while one child keeps winning, as in a
    read that merges a memtable and a few tables); with more (a compaction of
    many L0 files), a binary heap of the children, O(log k)."""

    def __cinit__(self, children=None):
        self.current = -1
        self.second = -1
        if children is not None:
            self._init(list(children))

    def __init__(self, children=None):
        # Only a Python-level call runs __init__; new_merging_iterator's __new__ does not
        # (and then sets the children with _init).
        if children is None:
            raise TypeError("MergingIterator(children): children is required")

    cdef int _init(self, list children) except -1:
        """Take children (a list this iterator keeps) and size the per-child arrays."""
        self.children = children
        self.n = len(children)
        self.pending = <char*>calloc(self.n if self.n else 1, 1)
        if self.pending == NULL:
            raise MemoryError()
        if self.n > HEAP_MIN_CHILDREN:
            self.heap = <int*>malloc(self.n * sizeof(int))
            self.hkey = <const uint8_t**>malloc(self.n * sizeof(uint8_t*))
            self.hlen = <size_t*>malloc(self.n * sizeof(size_t))
            if self.heap == NULL or self.hkey == NULL or self.hlen == NULL:
                raise MemoryError()
        return 0

    def __dealloc__(self):
        free(self.heap)
        free(self.hkey)
        free(self.hlen)
        free(self.pending)
        free(self.ptarget)

    cdef bint _before(self, int a, int b, int direction) noexcept:
        """Does child a come before child b in `direction`? (heap mode: keys cached)"""
        return cmp_ikey(self.hkey[a], self.hlen[a], self.hkey[b], self.hlen[b]) * direction < 0

    cdef void _sift_down(self, int i, int direction) noexcept:
        cdef int* h = self.heap
        cdef int n = self.heap_n, l, m, t
        while True:
            l = 2 * i + 1
            if l >= n:
                return
            m = l
            if l + 1 < n and self._before(h[l + 1], h[l], direction):
                m = l + 1
            if not self._before(h[m], h[i], direction):
                return
            t = h[i]; h[i] = h[m]; h[m] = t
            i = m

    cdef void _pick(self, int direction) noexcept:
        """Current = the child first in `direction` (1: smallest key, -1: largest);
        second = the runner-up (scan), or the heap rebuilt for `direction`."""
        cdef int i, best = -1, second = -1
        cdef InternalIterator c, b = None, r = None
        if self.heap != NULL:
            self.heap_n = 0
            for i in range(self.n):
                c = <InternalIterator>self.children[i]
                if c.valid:
                    self.heap[self.heap_n] = i
                    self.heap_n += 1
                    self.hkey[i] = c.key
                    self.hlen[i] = c.key_len
            for i in range(self.heap_n // 2 - 1, -1, -1):
                self._sift_down(i, direction)
            self.heap_dir = direction
            if self.heap_n:
                self._set(self.heap[0], <InternalIterator>self.children[self.heap[0]])
            else:
                self._set(-1, None)
            return
        for i in range(self.n):
            c = <InternalIterator>self.children[i]
            if not c.valid:
                continue
            if b is None or cmp_ikey(c.key, c.key_len, b.key, b.key_len) * direction < 0:
                second, r = best, b
                best, b = i, c
            elif r is None or cmp_ikey(c.key, c.key_len, r.key, r.key_len) * direction < 0:
                second, r = i, c
        self.second = second
        self._set(best, b)

    cdef int _step(self, int direction) except -1:
        cdef InternalIterator c = <InternalIterator>self.children[self.current]
        cdef InternalIterator r
        if direction > 0:
            c.next()
        else:
            c.prev()
        if self.heap != NULL:
            if self.heap_dir != direction:
                self._pick(direction)
                return 0
            if not c.valid:          # the top child is done: the last one takes its place
                self.heap_n -= 1
                self.heap[0] = self.heap[self.heap_n]
            else:
                self.hkey[self.current] = c.key
                self.hlen[self.current] = c.key_len
            self._sift_down(0, direction)
            if self.heap_n:
                self._set(self.heap[0], <InternalIterator>self.children[self.heap[0]])
            else:
                self._set(-1, None)
            return 0
        # the others did not move, so the runner-up is still first among them:
        # while the moved child stays ahead of it, no scan is needed
        if c.valid:
            if self.second < 0:
                self._set(self.current, c)
                return 0
            r = <InternalIterator>self.children[self.second]
            if cmp_ikey(c.key, c.key_len, r.key, r.key_len) * direction < 0:
                self._set(self.current, c)
                return 0
        self._pick(direction)
        return 0

    cdef void _set(self, int best, InternalIterator b) noexcept:
        self.current = best
        if best < 0:
            self.valid = False
            return
        self.valid = True
        self.key = b.key
        self.key_len = b.key_len
        self.val = b.val
        self.val_len = b.val_len

    cdef void _clear_pending(self) noexcept:
        cdef int i
        if self.npending:
            for i in range(self.n):
                self.pending[i] = 0
            self.npending = 0

    cdef void _charge(self, int runs) noexcept:
        """runs more level-0 tables were positioned for the current seek: charge
        each, less the seek's first when no level below holds a table (ReadCharge),
        while the charge is on the epoch this iterator was made in."""
        if runs <= 0 or self.charge is None or self.charge.epoch != self.charge_epoch:
            return
        self.charge.add(SEEK_CHARGE * (runs - (self.seek_runs == 0 and self.l0_end == self.n)))
        self.seek_runs += runs

    cdef int seek(self, const uint8_t* target, size_t n) except -1:
        cdef InternalIterator c
        self._clear_pending()
        self.valid = False      # until _pick (a child's seek may raise)
        self.seek_runs = 0
        self._charge(self.l0_end - self.run0)
        for c in self.children:
            c.seek_start(target, n)
        for c in self.children:
            c.seek_finish(target, n)
        self._pick(1)
        return 0

    cdef int seek_lazy(self, const uint8_t* target, size_t n) except -1:
        """seek(target), leaving unpositioned the children that surely hold no entry
        of target's user key (their bloom filter or key range says so) when another
        child stands on that user key: until the merge moves past it (next()), none
        of theirs can come first. A seek to an existing key then reads the blocks of
        the sources that hold it, not one block per source. (A source positioned
        later is seeked to target, as it would have been here.)"""
        cdef InternalIterator c
        cdef size_t ukn = n - TAG_SIZE
        cdef uint64_t h = bloom_hash(target, ukn)
        cdef int i, runs = 0
        cdef void* p
        self._clear_pending()
        self.valid = False      # until _pick (a child's seek may raise)
        self.seek_runs = 0
        for i in range(self.n):
            c = <InternalIterator>self.children[i]
            if c.may_hold(target, ukn, h):
                c.seek_start(target, n)
                runs += self.run0 <= i < self.l0_end
            else:
                c.valid = False
                self.pending[i] = 1
                self.npending += 1
        self._charge(runs)
        for i in range(self.n):
            if not self.pending[i]:
                (<InternalIterator>self.children[i]).seek_finish(target, n)
        self._pick(1)
        if self.npending:
            if self.valid and cmp_bytes(self.key, self.key_len - TAG_SIZE, target, ukn) == 0:
                if n > self.ptcap:
                    p = <uint8_t*>realloc(self.ptarget, n * 2)
                    if p == NULL:
                        raise MemoryError()
                    self.ptarget = <uint8_t*>p
                    self.ptcap = n * 2
                memcpy(self.ptarget, target, n)
                self.ptn = n
                return 0
            self._seek_pending(target, n)
        return 0

    cdef int _seek_pending(self, const uint8_t* target, size_t n) except -1:
        """Seek the children seek_lazy left alone to target, and merge them in."""
        cdef int i, runs = 0
        for i in range(self.n):
            if self.pending[i]:
                (<InternalIterator>self.children[i]).seek_start(target, n)
                runs += self.run0 <= i < self.l0_end
        self._charge(runs)
        for i in range(self.n):
            if self.pending[i]:
                (<InternalIterator>self.children[i]).seek_finish(target, n)
        self._clear_pending()
        self._pick(1)
        return 0

    cdef int _position_pending(self) except -1:
        """Seek the children seek_lazy left alone to its target, and merge them in."""
        return self._seek_pending(self.ptarget, self.ptn)

    cdef int seek_to_first(self) except -1:
        cdef InternalIterator c
        self._clear_pending()
        self.seek_runs = 0
        self._charge(self.l0_end - self.run0)
        for c in self.children:
            c.seek_to_first()
        self._pick(1)
        return 0

    cdef int seek_to_last(self) except -1:
        cdef InternalIterator c
        self._clear_pending()
        self.seek_runs = 0
        self._charge(self.l0_end - self.run0)
        for c in self.children:
            c.seek_to_last()
        self._pick(-1)
        return 0

    cdef int seek_for_prev(self, const uint8_t* target, size_t n) except -1:
        """Position at the last entry < target (backward iteration)."""
        cdef InternalIterator c
        self._clear_pending()
        self.valid = False      # until _pick (a child's seek may raise)
        self.seek_runs = 0
        self._charge(self.l0_end - self.run0)
        for c in self.children:
            c.seek_start(target, n)
        for c in self.children:
            c.seek_finish(target, n)
            if c.valid:
                c.prev()
            else:
                c.seek_to_last()
        self._pick(-1)
        return 0

    cdef int next(self) except -1:
        self._step(1)
        if self.npending and (not self.valid or cmp_bytes(self.key, self.key_len - TAG_SIZE, self.ptarget,
                                                          self.ptn - TAG_SIZE) != 0):
            self._position_pending()      # past the target's user key: the others may come first now
        return 0

    cdef int prev(self) except -1:
        if self.npending:                 # (not used so: backward moves start with seek_for_prev)
            self._position_pending()
        return self._step(-1)


cdef enum:
    MODE_ITEMS = 0
    MODE_KEYS = 1
    MODE_VALUES = 2


cdef object no_merge_operator(const uint8_t* k, size_t kn):
    raise MergeOperatorError(f"key {PyBytes_FromStringAndSize(<char*>k, kn)!r} holds merge operands but "
                             f"the database was opened without a merge_operator")


cdef object fold_forward(MergingIterator it, MergeOperator op, int64_t now, uint64_t cover):
    """The value of the user key `it` stands on, whose entry there is a merge
    operand visible to the read (its newest visible entry): the operands from
    there on, down to the first base (a put; a deletion, an expired TTL put or
    an entry older than cover, the sequence of the newest range tombstone
    covering the key at the read's sequence (0: none), is no base: None),
    folded by op.full_merge, oldest first. Leaves `it` past the entries
    consumed (on the key's entries under the base, or the next key). Errors of
    the operator propagate to the caller."""
    cdef uint64_t tag
    cdef size_t ukn = it.key_len - TAG_SIZE
    cdef bytes key = PyBytes_FromStringAndSize(<char*>it.key, ukn)
    cdef const uint8_t* kp = <const uint8_t*>PyBytes_AS_STRING(key)
    cdef list ops = []
    cdef object base = None
    cdef int kind
    if op is None:
        no_merge_operator(it.key, ukn)
    while it.valid and it.key_len - TAG_SIZE == ukn and cmp_bytes(it.key, ukn, kp, ukn) == 0:
        tag = load_u64(it.key + ukn)
        kind = tag & 0xFF
        if cover and (tag >> 8) < cover:        # deleted by the tombstone: no base
            it.next()
            break
        if kind == KIND_MERGE:
            ops.append(PyBytes_FromStringAndSize(<char*>it.val, it.val_len))
            it.next()
            continue
        if kind == KIND_PUT:
            base = PyBytes_FromStringAndSize(<char*>it.val, it.val_len)
        elif kind == KIND_PUT_TTL and <int64_t>load_u64(it.val) > now:
            base = PyBytes_FromStringAndSize(<char*>it.val + 8, it.val_len - 8)
        it.next()
        break
    ops.reverse()
    return op.full_merge(key, base, ops)


cdef class DBIterator:
    """Iterator of (key, value) over [start, stop) as of one sequence number.

    Holds `pin` (an object whose lifetime keeps the version's files alive) until
    exhausted or closed. Complexity: amortized O(k) per step for k sources, plus
    the versions and deletions it skips.
    """
    cdef MergingIterator it
    cdef uint64_t seq
    cdef int64_t now
    cdef bytes start, stop
    cdef bint reverse, started, done
    cdef bint advance            # forward: the merging iterator still stands on the last item returned
    cdef int mode
    cdef object pin
    cdef HandleState state       # the DB handle's: closed with it
    cdef object owner            # the DB handle, kept alive while the iterator is
    cdef bint closed             # close() was called (exhaustion alone keeps next() at StopIteration)
    cdef uint8_t* skip
    cdef size_t skip_len, skip_cap
    cdef bint has_skip
    cdef public RangeDelSet range_dels   # the read's range tombstones (Core sets it), or None
    cdef public MergeOperator merge_op   # the DB's (Core._iterate sets it), or None

    def __init__(self, *args, **kwargs):
        # Made only by new_db_iterator (Core._iterate, per items()/keys()/values() call),
        # which sets the fields in C (its __new__ does not run __init__).
        raise TypeError("DBIterator objects are made by DB.items(), keys() and values()")

    def __dealloc__(self):
        free(self.skip)

    def __reduce__(self):
        # also keeps Cython from generating a pickling that reads the C fields (the
        # skip pointer as a C string: multiprocessing's spawn crashed with SIGSEGV)
        raise TypeError("a lsmkv iterator cannot be pickled or sent to another process: make it "
                        "there from that process's own DB handle (docs/getting-started.md, \"Processes\")")

    def __iter__(self):
        return self

    def close(self):
        """Release the iterator's sources and pinned files now; using it afterwards
        raises ClosedError. Idempotent."""
        self.closed = True
        self._release()

    cdef void _release(self):
        self.done = True
        self.it = None
        pin, self.pin = self.pin, None
        if pin is not None:
            try:
                pin.release()
            except Exception:
                pass    # the DB is closed or gone: its pins went with it

    cdef int _check(self) except -1:
        """Raise if the iterator or its DB handle is closed (releasing what it holds)."""
        if self.closed:
            self._release()
            raise ClosedError("the iterator is closed")
        if self.state.closed:
            e = self.state.error()
            self._release()
            raise e
        return 0

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    cdef int _start(self) except -1:
        cdef bytes bound
        cdef size_t n
        cdef uint8_t* grown
        self.started = True
        bound = self.stop if self.reverse else self.start
        if bound is None:
            if self.reverse:
                self.it.seek_to_last()
            else:
                self.it.seek_to_first()
            return 0
        # the target (bound, MAX tag): the first internal key of user key bound
        n = PyBytes_GET_SIZE(bound)
        if n + TAG_SIZE > self.skip_cap:     # the skip buffer is free until the first item
            grown = <uint8_t*>realloc(self.skip, n + TAG_SIZE + 16)
            if grown == NULL:
                raise MemoryError()
            self.skip = grown
            self.skip_cap = n + TAG_SIZE + 16
        if n:
            memcpy(self.skip, PyBytes_AS_STRING(bound), n)
        memset(self.skip + n, 0xFF, TAG_SIZE)
        if self.reverse:
            self.it.seek_for_prev(self.skip, n + TAG_SIZE)
        else:
            self.it.seek_lazy(self.skip, n + TAG_SIZE)
        return 0

    cdef object _emit(self, const uint8_t* k, size_t kn, const uint8_t* v, size_t vn):
        if self.mode == MODE_KEYS:
            return PyBytes_FromStringAndSize(<char*>k, kn)
        if self.mode == MODE_VALUES:
            return PyBytes_FromStringAndSize(<char*>v, vn)
        return (PyBytes_FromStringAndSize(<char*>k, kn), PyBytes_FromStringAndSize(<char*>v, vn))

    cdef int _remember(self, const uint8_t* k, size_t kn) except -1:
        cdef uint8_t* grown
        if kn > self.skip_cap:
            grown = <uint8_t*>realloc(self.skip, kn * 2 + 16)
            if grown == NULL:
                raise MemoryError()
            self.skip = grown
            self.skip_cap = kn * 2 + 16
        if kn:
            memcpy(self.skip, k, kn)
        self.skip_len = kn
        self.has_skip = True
        return 0

    cdef object _finish(self):
        self._release()
        raise StopIteration

    cdef object _emit_merged(self, MergingIterator it):
        """Forward: the item of the key `it` stands on, a merge operand on top
        (fold_forward moves `it` past the entries it folds; the skip key set by
        the caller hides the rest)."""
        cdef bytes k = PyBytes_FromStringAndSize(<char*>it.key, it.key_len - TAG_SIZE)
        cdef uint64_t cover = 0
        if self.range_dels is not None:
            cover = self.range_dels.max_covering_c(it.key, it.key_len - TAG_SIZE, self.seq)
        cdef bytes v = fold_forward(it, self.merge_op, self.now, cover)
        if self.mode == MODE_KEYS:
            return k
        if self.mode == MODE_VALUES:
            return v
        return (k, v)

    def __next__(self):
        if self.closed or self.state.closed:
            self._check()
        if self.done:
            raise StopIteration
        if not self.started:
            self._start()
        # finished until this call returns an item: a move that raises (a damaged
        # block) ends the iteration instead of leaving a stale position to resume from
        self.done = True
        if self.reverse:
            return self._next_reverse()
        cdef MergingIterator it = self.it
        cdef size_t ukn
        cdef uint64_t tag
        cdef int kind
        cdef const uint8_t* v
        cdef size_t vn
        cdef object result
        if self.advance:
            self.advance = False
            it.next()
        while it.valid:
            ukn = it.key_len - TAG_SIZE
            tag = load_u64(it.key + ukn)
            if (tag >> 8) > self.seq or (self.has_skip and cmp_bytes(it.key, ukn, self.skip, self.skip_len) == 0):
                it.next()
                continue
            if self.stop is not None and cmp_bytes(it.key, ukn, <const uint8_t*>PyBytes_AS_STRING(self.stop),
                                                   PyBytes_GET_SIZE(self.stop)) >= 0:
                break
            self._remember(it.key, ukn)
            kind = tag & 0xFF
            v = it.val
            vn = it.val_len
            if kind == KIND_DELETE:
                it.next()
                continue
            if self.range_dels is not None and self.range_dels.covers_c(it.key, ukn, tag >> 8, self.seq):
                it.next()             # deleted by a range tombstone, as is all under it
                continue
            if kind == KIND_PUT_TTL:
                if <int64_t>load_u64(v) <= self.now:
                    it.next()
                    continue
                v += 8
                vn -= 8
            elif kind == KIND_MERGE:
                result = self._emit_merged(it)
                self.done = False
                return result
            result = self._emit(it.key, ukn, v, vn)
            self.advance = True       # step past it at the next call: a caller that stops here
            self.done = False         # (next(iter(db.items(start=k)))) never pays for it
            return result
        return self._finish()

    cdef bytes _fold_reverse(self, bytes key, object base, list ops):
        if self.merge_op is None:
            no_merge_operator(<const uint8_t*>PyBytes_AS_STRING(key), PyBytes_GET_SIZE(key))
        return self.merge_op.full_merge(key, base, ops)

    cdef object _next_reverse(self):
        cdef MergingIterator it = self.it
        cdef size_t ukn
        cdef uint64_t tag
        cdef int kind
        cdef const uint8_t* v
        cdef size_t vn
        cdef bytes skey = None, sval = None   # newest visible version so far of the current user key
        cdef int skind = -1
        cdef bytes start = self.start
        cdef list mops = None                 # merge operands on top of it, oldest first (or None)
        cdef object mbase = None              # the base under them (None: none)
        while it.valid:
            ukn = it.key_len - TAG_SIZE
            if start is not None and cmp_bytes(it.key, ukn, <const uint8_t*>PyBytes_AS_STRING(start),
                                               PyBytes_GET_SIZE(start)) < 0:
                break
            if skey is not None and cmp_bytes(it.key, ukn, <const uint8_t*>PyBytes_AS_STRING(skey),
                                              PyBytes_GET_SIZE(skey)) != 0:
                if mops is not None:
                    sval = self._fold_reverse(skey, mbase, mops)
                if skind >= 0:
                    self.done = False
                    return self._emit(<const uint8_t*>PyBytes_AS_STRING(skey), PyBytes_GET_SIZE(skey),
                                      <const uint8_t*>PyBytes_AS_STRING(sval), PyBytes_GET_SIZE(sval))
                skey = None
            tag = load_u64(it.key + ukn)
            if (tag >> 8) <= self.seq:
                kind = tag & 0xFF
                v = it.val
                vn = it.val_len
                if skey is None:
                    skey = PyBytes_FromStringAndSize(<char*>it.key, ukn)
                if self.range_dels is not None and self.range_dels.covers_c(it.key, ukn, tag >> 8, self.seq):
                    mops = None       # deleted by a range tombstone, as is all older: a newer
                    skind = -1        # operand folds over no base
                    it.prev()
                    continue
                if kind == KIND_MERGE:
                    if mops is None:
                        mops = []
                        mbase = sval if skind >= 0 else None
                    mops.append(PyBytes_FromStringAndSize(<char*>v, vn))
                    skind = kind
                    it.prev()
                    continue
                mops = None
                if kind == KIND_DELETE or (kind == KIND_PUT_TTL and <int64_t>load_u64(v) <= self.now):
                    skind = -1
                else:
                    if kind == KIND_PUT_TTL:
                        v += 8
                        vn -= 8
                    skind = kind
                    sval = PyBytes_FromStringAndSize(<char*>v, vn)
            it.prev()
        if skey is not None and mops is not None:
            sval = self._fold_reverse(skey, mbase, mops)
        if skey is not None and skind >= 0:
            self.done = True   # emit the last one, then finish on the following call
            result = self._emit(<const uint8_t*>PyBytes_AS_STRING(skey), PyBytes_GET_SIZE(skey),
                                <const uint8_t*>PyBytes_AS_STRING(sval), PyBytes_GET_SIZE(sval))
            self._release()
            return result
        return self._finish()


cdef object new_db_iterator(MergingIterator it, uint64_t seq, int64_t now, object start, object stop,
                            bint reverse, int mode, object pin, HandleState state, object owner,
                            RangeDelSet range_dels, MergeOperator merge_op):
    """A DBIterator of `it` over [start, stop) (bytes or None) as of seq, yielding
    items (mode 0), keys (1) or values (2); it holds pin and owner (the DB handle)
    and closes with state. Built in C: one per items() call, so no Python-level
    constructor call."""
    cdef DBIterator d = DBIterator.__new__(DBIterator)
    d.it = it
    d.seq = seq
    d.now = now
    d.start = start if start is None or type(start) is bytes else bytes(start)
    d.stop = stop if stop is None or type(stop) is bytes else bytes(stop)
    d.reverse = reverse
    d.mode = mode
    d.pin = pin
    d.state = state
    d.owner = owner
    d.range_dels = range_dels
    d.merge_op = merge_op
    return d


cdef MergingIterator new_merging_iterator(list children, ReadCharge charge=None, int run0=-1,
                                          int l0_end=-1):
    """A MergingIterator over children (newest source first), keeping that list
    (the caller's, not copied): built in C, one per items() or iterator() call.
    With charge, children[run0:] are the table runs (children[run0:l0_end] level-0
    tables) and its seeks charge it (ReadCharge) while its epoch stays."""
    cdef MergingIterator m = MergingIterator.__new__(MergingIterator)
    m._init(children)
    m.charge = charge
    if charge is not None:
        m.charge_epoch = charge.epoch
    m.run0 = m.n if run0 < 0 else run0
    m.l0_end = m.run0 if l0_end < 0 else l0_end
    return m
