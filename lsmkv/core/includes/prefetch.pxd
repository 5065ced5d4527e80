# The compiler's data prefetch (GCC and Clang: __builtin_prefetch; elsewhere a no-op):
# a hint that p will be read soon, so the batched lookups (multi_get) can start the
# cache misses of several keys before waiting on any of them.
cdef extern from *:
    """
    #if defined(__GNUC__) || defined(__clang__)
    #  define lsmkv_prefetch(p) __builtin_prefetch((const void*)(p), 0, 3)
    #else
    #  define lsmkv_prefetch(p) ((void)(p))
    #endif
    """
    void prefetch "lsmkv_prefetch" (const void* p) noexcept nogil
