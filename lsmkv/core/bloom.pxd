# The bloom filter of a table (lsmkv.core.bloom): the hash, the probe, the builder.
# bloom_hash and bloom_probe are inline here, so the read path (TableReader's
# may_contain, Core's lookup) calls them without a cross-module call.
from libc.stdint cimport uint8_t, uint32_t, uint64_t
from lsmkv.core.coding cimport murmur3_128

cdef extern from *:
    """
    #define LSMKV_BLOOM_SEED 0xBC9F1D34U
    """
    const uint32_t BLOOM_SEED "LSMKV_BLOOM_SEED"   # docs/format.md, "Filter block"


cdef inline uint64_t bloom_hash(const uint8_t* k, size_t n) noexcept nogil:
    """The bloom hash of user key k: the first half of MurmurHash3 x64 128 with BLOOM_SEED."""
    cdef uint64_t h1, h2
    murmur3_128(k, n, BLOOM_SEED, &h1, &h2)
    return h1


cdef inline bint bloom_probe(const uint8_t* bits, uint64_t nlines, int k, uint64_t h) noexcept nogil:
    """The blocked bloom filter's answer for bloom hash h (False: surely absent).
    Every probe of one key falls in one 64-byte line (one cache miss)."""
    cdef uint32_t h2 = <uint32_t>(h >> 32)
    cdef const uint8_t* line = bits + ((h & 0xFFFFFFFFU) * nlines >> 32) * 64
    cdef uint32_t bit
    cdef int i
    for i in range(k):
        bit = h2 >> 23
        if not (line[bit >> 3] & (1 << (bit & 7))):
            return False
        h2 *= 0x9E3779B9U
    return True


cdef bytes build_filter(const uint64_t* hashes, size_t n, int bits_per_key)
