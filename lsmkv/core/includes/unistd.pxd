# unistd.h: what Cython's posix.unistd does not declare.
cdef extern from "unistd.h" nogil:
    enum: SEEK_END
