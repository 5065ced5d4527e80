# Direct calls into libzstd (see _zstd.pyx). Every function here runs without
# the GIL and allocates no Python object.

ctypedef struct ZComp:
    void* cctx        # ZSTD_CCtx*, NULL until zcomp_init succeeds
    void* cdict       # ZSTD_CDict* of the table's dictionary, or NULL

ctypedef struct ZDecomp:
    void* dctx        # ZSTD_DCtx*
    void* ddict       # ZSTD_DDict*, or NULL

cdef bint zstd_loaded() noexcept nogil
cdef int zcomp_init(ZComp* z, int level, const void* dict_data, size_t dict_len) noexcept nogil
cdef void zcomp_free(ZComp* z) noexcept nogil
cdef size_t zstd_bound(size_t n) noexcept nogil
cdef size_t zcomp_compress(ZComp* z, void* dst, size_t cap, const void* src, size_t n) noexcept nogil
cdef int zdecomp_init(ZDecomp* z, const void* dict_data, size_t dict_len) noexcept nogil
cdef void zdecomp_free(ZDecomp* z) noexcept nogil
cdef long long zstd_content_size(const void* src, size_t n) noexcept nogil
cdef size_t zdecomp_decompress(ZDecomp* z, void* dst, size_t cap, const void* src, size_t n) noexcept nogil
cdef bint zstd_is_error(size_t code) noexcept nogil
cdef const char* zstd_error_name(size_t code) noexcept nogil
