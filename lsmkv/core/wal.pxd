from libc.stdint cimport uint8_t, uint64_t

cdef class LogWriter:
    cdef int fd
    cdef bint use_mmap
    cdef uint8_t* base
    cdef size_t cap, map_len, dropped, max_step
    cdef readonly size_t pos
    cdef size_t synced
    cdef readonly object path
    cdef readonly uint64_t number
    cdef uint8_t* begin(self, size_t n) except NULL
    cdef int commit(self, size_t n) except -1
    cdef int sync_c(self) except -1
    cdef int _grow(self, size_t need) except -1
