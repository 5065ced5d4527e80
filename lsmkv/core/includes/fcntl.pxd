# fcntl.h: preallocation (the WAL's file is preallocated so writes into its mapping cannot fail).
cdef extern from "fcntl.h" nogil:
    int posix_fallocate(int fd, long offset, long len)
