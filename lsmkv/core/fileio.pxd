cdef int c_fsync_dir(const char* path) noexcept nogil   # 0 or an errno value
