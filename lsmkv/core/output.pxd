# Flush and compaction output (lsmkv.core.output): write_tables() and its rules.
from libc.stdint cimport uint8_t, uint64_t, int64_t
from lsmkv.core.bytebuf cimport Buf

# What write_tables() knows about the entries seen so far.
ctypedef struct WriteState:
    Buf cur_ukey                 # user key of the current run of versions
    bint has_cur
    uint64_t last_seq_for_key    # sequence of the newer version of cur_ukey just seen
    uint64_t smallest_snapshot
    bint bottommost
    int64_t now
    Buf kbuf                     # an expired entry's key rewritten as a deletion
    uint64_t dropped_hidden, dropped_deletes, expired
    uint64_t dropped_range       # entries a range tombstone every snapshot sees covers
    bint can_fold                # a merge operator was given: merge operands are folded
    uint64_t merges_folded       # merge operands folded into a put or a combined operand


cdef int classify(WriteState* s, const uint8_t* k, size_t kn, const uint8_t* v, size_t vn,
                  bint* first_of_key, const uint8_t** wk, size_t* wvn) noexcept nogil
