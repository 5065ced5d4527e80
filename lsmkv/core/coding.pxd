# Shared encodings used by every on-disk format (see docs/format.md).
from libc.stdint cimport uint8_t, uint32_t, uint64_t, int64_t
from libc.string cimport memcmp

# Value kinds stored in the low byte of an internal key's 8-byte tag.
cdef enum:
    KIND_DELETE = 0
    KIND_PUT = 1
    KIND_PUT_TTL = 2      # value region starts with an 8-byte LE expiry (ms)
    KIND_MERGE = 3        # a merge operand (lsmkv/core/merge.pyx): value region is the operand
    KIND_RANGE_DELETE = 4  # a range tombstone: user key = start, value = end (exclusive)
    KIND_MAX = 0xFF       # used only in seek targets
    TAG_SIZE = 8

cdef uint32_t crc32c(const uint8_t* p, size_t n, uint32_t crc) noexcept nogil
cdef uint32_t crc32c_sw(const uint8_t* p, size_t n, uint32_t crc) noexcept nogil
cdef void murmur3_128(const uint8_t* key, size_t n, uint32_t seed,
                      uint64_t* h1, uint64_t* h2) noexcept nogil

cdef inline uint64_t load_u64(const uint8_t* p) noexcept nogil:
    cdef uint64_t v = 0
    cdef int i
    for i in range(7, -1, -1):
        v = (v << 8) | p[i]
    return v

cdef inline uint32_t load_u32(const uint8_t* p) noexcept nogil:
    return (<uint32_t>p[0]) | (<uint32_t>p[1] << 8) | (<uint32_t>p[2] << 16) | (<uint32_t>p[3] << 24)

cdef inline void store_u64(uint8_t* p, uint64_t v) noexcept nogil:
    cdef int i
    for i in range(8):
        p[i] = <uint8_t>(v & 0xFF)
        v >>= 8

cdef inline void store_u32(uint8_t* p, uint32_t v) noexcept nogil:
    p[0] = <uint8_t>v
    p[1] = <uint8_t>(v >> 8)
    p[2] = <uint8_t>(v >> 16)
    p[3] = <uint8_t>(v >> 24)

cdef inline size_t varint_len(uint64_t v) noexcept nogil:
    cdef size_t n = 1
    while v >= 0x80:
        v >>= 7
        n += 1
    return n

cdef inline uint8_t* put_varint(uint8_t* p, uint64_t v) noexcept nogil:
    while v >= 0x80:
        p[0] = <uint8_t>(v | 0x80)
        v >>= 7
        p += 1
    p[0] = <uint8_t>v
    return p + 1

cdef inline const uint8_t* get_varint(const uint8_t* p, const uint8_t* limit,
                                      uint64_t* out) noexcept nogil:
    """Decode a varint at p; returns the byte after it, or NULL if malformed/truncated."""
    cdef uint64_t result = 0
    cdef int shift = 0
    cdef uint64_t b
    while shift <= 63 and p < limit:
        b = p[0]
        p += 1
        if shift == 63 and b > 1:
            return NULL          # more than 64 bits
        if b & 0x80:
            result |= (b & 0x7F) << shift
        else:
            result |= b << shift
            out[0] = result
            return p
        shift += 7
    return NULL

cdef extern from *:
    """
    static inline uint64_t lsmkv_load_be64(const uint8_t* p) {
        uint64_t v; memcpy(&v, p, 8); return __builtin_bswap64(v);
    }
    """
    uint64_t lsmkv_load_be64(const uint8_t* p) noexcept nogil

cdef inline int cmp_bytes(const uint8_t* a, size_t an, const uint8_t* b, size_t bn) noexcept nogil:
    """Bytewise comparison (memcmp order, a prefix first), inlined: 8-byte words
    compared as big-endian integers, so short keys cost no library call."""
    cdef size_t n = an if an < bn else bn
    cdef size_t i = 0
    cdef uint64_t x, y
    while i + 8 <= n:
        x = lsmkv_load_be64(a + i)
        y = lsmkv_load_be64(b + i)
        if x != y:
            return -1 if x < y else 1
        i += 8
    while i < n:
        if a[i] != b[i]:
            return -1 if a[i] < b[i] else 1
        i += 1
    if an < bn:
        return -1
    if an > bn:
        return 1
    return 0

cdef inline int cmp_ikey(const uint8_t* a, size_t an, const uint8_t* b, size_t bn) noexcept nogil:
    """Order of internal keys: user key ascending, then tag (sequence, kind) descending.
    Requires an >= 8 and bn >= 8."""
    cdef int r = cmp_bytes(a, an - TAG_SIZE, b, bn - TAG_SIZE)
    if r != 0:
        return r
    cdef uint64_t ta = load_u64(a + an - TAG_SIZE)
    cdef uint64_t tb = load_u64(b + bn - TAG_SIZE)
    if ta > tb:
        return -1
    if ta < tb:
        return 1
    return 0

cdef inline uint64_t make_tag(uint64_t seq, int kind) noexcept nogil:
    return (seq << 8) | <uint64_t>kind
