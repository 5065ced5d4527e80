# Range tombstones (lsmkv.core.rangedel): a fragmented, immutable set of
# (start, end, seq) deletions of the user keys start <= k < end.
from libc.stdint cimport uint8_t, uint64_t

cdef class RangeDelSet:
    cdef readonly list starts       # fragment starts, ascending; fragments never overlap
    cdef readonly list ends         # fragment ends (exclusive), ends[i] <= starts[i + 1]
    cdef readonly list seqs         # per fragment: a tuple of sequences, descending
    cdef readonly RangeDelSet base  # a set this one extends (its answers count too), or None
    cdef Py_ssize_t _after(self, const uint8_t* k, size_t kn) noexcept
    cdef Py_ssize_t find(self, const uint8_t* k, size_t kn) noexcept
    cdef bint cut_ok_c(self, const uint8_t* k, size_t kn) noexcept
    cdef uint64_t max_covering_c(self, const uint8_t* k, size_t kn, uint64_t seq) noexcept
    cdef bint covers_c(self, const uint8_t* k, size_t kn, uint64_t eseq, uint64_t seq) noexcept
