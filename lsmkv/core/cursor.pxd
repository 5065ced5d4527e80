cimport cython
from libc.stdint cimport uint8_t, uint64_t, int64_t
from lsmkv.core.merge cimport MergeOperator
from lsmkv.core.iterator cimport MergingIterator, HandleState
from lsmkv.core.rangedel cimport RangeDelSet

cpdef object prefix_successor(bytes prefix)
cpdef tuple prefix_bounds(bytes prefix, start, stop)

@cython.final      # no subclass: its cdef methods are called directly, not through a vtable
cdef class Iterator:
    """lsmkv.Iterator (see cursor.pyx): a seekable cursor over one MergingIterator."""
    cdef MergingIterator it
    cdef readonly uint64_t sequence   # the sequence number it reads as of
    cdef int64_t now
    cdef bytes lo, hi                 # effective bounds (prefix included), or None
    cdef object pin
    cdef HandleState state
    cdef object owner                 # the DB handle, kept alive while the iterator is
    cdef object clock
    cdef public RangeDelSet range_dels   # the read's range tombstones (Core sets it), or None
    cdef bint closed
    cdef bint valid_
    cdef bint positioned              # any positioning call so far (for __next__)
    cdef int dir
    cdef uint8_t* kbuf                # the shown user key (always a copy)
    cdef size_t klen, kcap
    cdef uint8_t* vbuf                # the shown value after a backward move (a copy)
    cdef size_t vcap
    cdef const uint8_t* vp            # the shown value: into the merging iterator's entry, or vbuf
    cdef size_t vn
    cdef uint8_t* tbuf                # seek targets (user key + tag)
    cdef size_t tcap
    cdef public MergeOperator merge_op   # the DB's (Core._cursor sets it), or None
    cdef int _set_value(self, bytes v) except -1
    cdef void _release(self)
    cdef int _check(self) except -1
    cdef int _raise_closed(self) except -1
    cdef int _grow(self, uint8_t** buf, size_t* cap, size_t n) except -1
    cdef int _save_key(self, const uint8_t* k, size_t n) except -1
    cdef int _target(self, const uint8_t* k, size_t n, bint succ) except -1
    cdef int _refresh_now(self) except -1
    cdef int _forward(self, bint skipping) except -1
    cdef int _backward(self) except -1
    cdef int _seek_c(self, const uint8_t* k, size_t n) except -1
    cdef int _seek_for_prev_c(self, const uint8_t* k, size_t n, bint inclusive) except -1
    cdef int _next_c(self) except -1
    cdef int _prev_c(self) except -1
