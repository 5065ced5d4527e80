# sys/mman.h: memory mappings (the memtable arena, the slab cache, the WAL, table reads).
cdef extern from "sys/mman.h" nogil:
    void* mmap(void* addr, size_t length, int prot, int flags, int fd, long offset)
    void* mremap(void* old_address, size_t old_size, size_t new_size, int flags)
    int munmap(void* addr, size_t length)
    int msync(void* addr, size_t length, int flags)
    int madvise(void* addr, size_t length, int advice)
    int PROT_READ, PROT_WRITE
    int MAP_SHARED, MAP_PRIVATE, MAP_ANONYMOUS, MAP_POPULATE
    int MS_SYNC, MREMAP_MAYMOVE
    int MADV_DONTNEED, MADV_WILLNEED, MADV_RANDOM, MADV_SEQUENTIAL, MADV_POPULATE_WRITE, MADV_HUGEPAGE
    void* MAP_FAILED
