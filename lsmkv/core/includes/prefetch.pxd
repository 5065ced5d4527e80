# The compiler's data prefetch (GCC and Clang: __builtin_prefetch; elsewhere a no-op):
# a hint that p will be read soon, so the batched lookups (multi_get) can start the
# cache misses of several keys before waiting on any of them.
# prefetch_range: every 64-byte line of [p, p + n). The empty volatile asm after each
# prefetch keeps the loop: GCC -O3 may delete a loop whose only statements are
# prefetches (measured: it did, and cached reads lost a third of their speed).
# prefetch_write_range: the same, for lines about to be written, so the stores that
# follow do not wait for each line in turn (GCC emits PREFETCHW where the target
# enables it, else prefetcht0, as in the default x86-64 build; an explicit PREFETCHW
# measured the same there).
cdef extern from *:
    """
    #if defined(__GNUC__) || defined(__clang__)
    #  define lsmkv_prefetch(p) __builtin_prefetch((const void*)(p), 0, 3)
    static inline void lsmkv_prefetch_range(const void* p, size_t n) {
        const char* c = (const char*)p;
        size_t q;
        for (q = 0; q < n; q += 64) {
            __builtin_prefetch(c + q, 0, 3);
            __asm__ __volatile__("" : : "r"(c + q));
        }
    }
    static inline void lsmkv_prefetch_write_range(void* p, size_t n) {
        char* c = (char*)p;
        size_t q;
        for (q = 0; q < n; q += 64) {
            __builtin_prefetch(c + q, 1, 3);
            __asm__ __volatile__("" : : "r"(c + q));
        }
    }
    #else
    #  define lsmkv_prefetch(p) ((void)(p))
    #  define lsmkv_prefetch_range(p, n) ((void)(p), (void)(n))
    #  define lsmkv_prefetch_write_range(p, n) ((void)(p), (void)(n))
    #endif
    """
    void prefetch "lsmkv_prefetch" (const void* p) noexcept nogil
    void prefetch_range "lsmkv_prefetch_range" (const void* p, size_t n) noexcept nogil
    void prefetch_write_range "lsmkv_prefetch_write_range" (void* p, size_t n) noexcept nogil
