# Direct calls into libzstd (see _zstd.pyx). Every function here runs without
# the GIL and allocates no Python object.

ctypedef struct ZComp:
    void* cctx        # ZSTD_CCtx*, NULL until zcomp_init succeeds
    void* cdict       # ZSTD_CDict* of the table's dictionary, or NULL

cdef bint zstd_loaded() noexcept nogil
cdef int zcomp_init(ZComp* z, int level, const void* dict_data, size_t dict_len) noexcept nogil
cdef void zcomp_free(ZComp* z) noexcept nogil
cdef size_t zstd_bound(size_t n) noexcept nogil
cdef size_t zcomp_compress(ZComp* z, void* dst, size_t cap, const void* src, size_t n) noexcept nogil
cdef void* zdctx_new() noexcept nogil                 # ZSTD_DCtx*, one thread at a time; NULL: no memory
cdef void zdctx_free(void* dctx) noexcept nogil
cdef void* zddict_new(const void* dict_data, size_t dict_len) noexcept nogil   # shareable by threads
cdef void zddict_free(void* ddict) noexcept nogil
cdef long long zstd_content_size(const void* src, size_t n) noexcept nogil
cdef size_t zstd_decompress(void* dctx, void* dst, size_t cap, const void* src, size_t n,
                            const void* ddict) noexcept nogil
cdef bint zstd_is_error(size_t code) noexcept nogil
cdef const char* zstd_error_name(size_t code) noexcept nogil
