# A growable byte buffer in C memory, for code that builds output without the GIL
# (TableBuilder's blocks and pending output, write_tables' key copies). All inline:
# each user compiles its own copy of one definition.
#
# Thread safety: a Buf belongs to one thread at a time (its owner's).
# Invariants: 1. len <= cap; 2. p is NULL exactly when cap is 0 (before the first
# growth); 3. the owner frees p with free().
from libc.stdint cimport uint8_t
from libc.stdlib cimport realloc
from libc.string cimport memcpy

ctypedef struct Buf:
    uint8_t* p
    size_t len
    size_t cap

# Buffer growth runs without the GIL (a memtable flush builds its table inside
# one nogil block): the *_c forms return -1 when memory runs out; the plain
# forms raise MemoryError.
cdef inline int buf_reserve_c(Buf* b, size_t extra) noexcept nogil:
    cdef size_t need = b.len + extra
    cdef uint8_t* grown
    if need > b.cap:
        if need < b.cap * 2:
            need = b.cap * 2
        grown = <uint8_t*>realloc(b.p, need)
        if grown == NULL:
            return -1
        b.p = grown
        b.cap = need
    return 0

cdef inline int buf_append_c(Buf* b, const void* src, size_t n) noexcept nogil:
    if buf_reserve_c(b, n) < 0:
        return -1
    if n:
        memcpy(b.p + b.len, src, n)
    b.len += n
    return 0

cdef inline int buf_set_c(Buf* b, const void* src, size_t n) noexcept nogil:
    b.len = 0
    return buf_append_c(b, src, n)

cdef inline int buf_append(Buf* b, const void* src, size_t n) except -1:
    if buf_append_c(b, src, n) < 0:
        raise MemoryError()
    return 0
