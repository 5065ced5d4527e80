# A hash map from uint64 keys to uint64 values in C memory: open addressing,
# linear probing, backward-shift deletion (no tombstones). SlabCache's index from
# block key to slot id. All inline: each user compiles its own copy of one definition.
#
# Thread safety: none of its own; its owner (SlabCache) calls it under the GIL.
# Invariants: 1. mask + 1 == 1 << bits, a power of two; 2. count * 2 <= mask + 1
# (grown before an insert would pass half full), so a probe always meets an EMPTY
# slot; 3. keys[i] == U64MAP_EMPTY marks a free entry (that key is never stored);
# 4. every key lies on the probe run from its home slot without an EMPTY between.
from libc.stdint cimport uint64_t
from libc.stdlib cimport malloc, free

cdef extern from *:
    """
    #ifndef LSMKV_U64MAP_EMPTY
    #define LSMKV_U64MAP_EMPTY 0xFFFFFFFFFFFFFFFFULL
    #endif
    """
    const uint64_t U64MAP_EMPTY "LSMKV_U64MAP_EMPTY"

ctypedef struct U64Map:
    uint64_t* keys
    uint64_t* vals
    uint64_t mask
    uint64_t count
    int bits


cdef inline int u64map_init(U64Map* m, int bits) except -1:
    """An empty map of 1 << bits entries; MemoryError if memory runs out (the map
    may then hold one array: u64map_free releases what it holds)."""
    cdef uint64_t i
    m.bits = bits
    m.mask = (<uint64_t>1 << bits) - 1
    m.count = 0
    m.keys = <uint64_t*>malloc((m.mask + 1) * sizeof(uint64_t))
    m.vals = <uint64_t*>malloc((m.mask + 1) * sizeof(uint64_t))
    if m.keys == NULL or m.vals == NULL:
        raise MemoryError()
    for i in range(m.mask + 1):
        m.keys[i] = U64MAP_EMPTY
    return 0


cdef inline void u64map_free(U64Map* m) noexcept:
    free(m.keys)
    free(m.vals)
    m.keys = m.vals = NULL


cdef inline uint64_t u64map_home(U64Map* m, uint64_t key) noexcept:
    return (key * 0x9E3779B97F4A7C15ULL) >> (64 - m.bits)


cdef inline long long u64map_find(U64Map* m, uint64_t key) noexcept:
    """The entry index of key, or -1."""
    cdef uint64_t i = u64map_home(m, key)
    while True:
        if m.keys[i] == key:
            return <long long>i
        if m.keys[i] == U64MAP_EMPTY:
            return -1
        i = (i + 1) & m.mask


cdef inline int u64map_grow(U64Map* m) except -1:
    """Double the table (MemoryError leaves it as it was)."""
    cdef uint64_t* ok = m.keys
    cdef uint64_t* ov = m.vals
    cdef uint64_t n = m.mask + 1, i, j
    cdef uint64_t* nk = <uint64_t*>malloc(2 * n * sizeof(uint64_t))
    cdef uint64_t* nv = <uint64_t*>malloc(2 * n * sizeof(uint64_t))
    if nk == NULL or nv == NULL:
        free(nk)
        free(nv)
        raise MemoryError()
    for i in range(2 * n):
        nk[i] = U64MAP_EMPTY
    m.keys, m.vals = nk, nv
    m.bits += 1
    m.mask = 2 * n - 1
    for i in range(n):
        if ok[i] != U64MAP_EMPTY:
            j = u64map_home(m, ok[i])
            while nk[j] != U64MAP_EMPTY:
                j = (j + 1) & m.mask
            nk[j] = ok[i]
            nv[j] = ov[i]
    free(ok)
    free(ov)
    return 0


cdef inline int u64map_insert(U64Map* m, uint64_t key, uint64_t val) except -1:
    """Add key (not in the map) -> val."""
    cdef uint64_t i
    if (m.count + 1) * 2 > m.mask + 1:
        u64map_grow(m)
    i = u64map_home(m, key)
    while m.keys[i] != U64MAP_EMPTY:
        i = (i + 1) & m.mask
    m.keys[i] = key
    m.vals[i] = val
    m.count += 1
    return 0


cdef inline void u64map_delete_at(U64Map* m, uint64_t i) noexcept:
    """Remove entry i, shifting later entries of its probe run back (no tombstones)."""
    cdef uint64_t j = i, k
    while True:
        j = (j + 1) & m.mask
        if m.keys[j] == U64MAP_EMPTY:
            break
        k = u64map_home(m, m.keys[j])
        # entry j may move to i if i lies on its probe path from k to j
        if ((j - k) & m.mask) >= ((j - i) & m.mask):
            m.keys[i] = m.keys[j]
            m.vals[i] = m.vals[j]
            i = j
    m.keys[i] = U64MAP_EMPTY
    m.count -= 1


cdef inline void u64map_delete(U64Map* m, uint64_t key) noexcept:
    cdef long long i = u64map_find(m, key)
    if i >= 0:
        u64map_delete_at(m, <uint64_t>i)
