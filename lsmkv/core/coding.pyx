# cython: language_level=3
"""Checksums, hashes and varints shared by the WAL, SST and MANIFEST formats.

Thread safety: every function here is pure and may be called from any thread,
with or without the GIL (the CRC table is built once at import).

Invariants:
  1. crc32c() is CRC-32C (Castagnoli, reflected polynomial 0x82F63B78U), the
     checksum of every on-disk record and block; crc32c(b"123456789") == 0xE3069283.
  2. murmur3_128() is MurmurHash3_x64_128; its first 64-bit half equals
     mmh3.hash64(key, seed, signed=False)[0] (tests check this against mmh3).
"""
from libc.stdint cimport uint8_t, uint32_t, uint64_t

cdef extern from *:
    """
    #if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
    #include <nmmintrin.h>
    __attribute__((target("sse4.2")))
    static uint32_t lsmkv_crc32c_hw(const uint8_t* p, size_t n, uint32_t crc) {
        uint64_t c = crc ^ 0xFFFFFFFFu;
        while (n >= 8) { uint64_t v; memcpy(&v, p, 8); c = _mm_crc32_u64(c, v); p += 8; n -= 8; }
        uint32_t c32 = (uint32_t)c;
        while (n--) c32 = _mm_crc32_u8(c32, *p++);
        return c32 ^ 0xFFFFFFFFu;
    }
    static int lsmkv_have_hw_crc(void) { __builtin_cpu_init(); return __builtin_cpu_supports("sse4.2"); }
    #else
    static uint32_t lsmkv_crc32c_hw(const uint8_t* p, size_t n, uint32_t crc) { return 0; }
    static int lsmkv_have_hw_crc(void) { return 0; }
    #endif
    """
    uint32_t lsmkv_crc32c_hw(const uint8_t* p, size_t n, uint32_t crc) noexcept nogil
    int lsmkv_have_hw_crc() noexcept nogil

cdef uint32_t _table[8][256]
cdef bint _hw = lsmkv_have_hw_crc()

cdef void _build_tables() noexcept:
    cdef uint32_t crc
    cdef int i, j, t
    for i in range(256):
        crc = i
        for j in range(8):
            if crc & 1:
                crc = (crc >> 1) ^ 0x82F63B78U
            else:
                crc >>= 1
        _table[0][i] = crc
    for i in range(256):
        for t in range(1, 8):
            _table[t][i] = (_table[t - 1][i] >> 8) ^ _table[0][_table[t - 1][i] & 0xFF]

_build_tables()

cdef uint32_t crc32c(const uint8_t* p, size_t n, uint32_t crc) noexcept nogil:
    """Extend crc (0 to start) over n bytes at p: the SSE4.2 instruction where the
    CPU has it, else table-driven slicing-by-8 (both give the same value)."""
    if _hw:
        return lsmkv_crc32c_hw(p, n, crc)
    return crc32c_sw(p, n, crc)


cdef uint32_t crc32c_sw(const uint8_t* p, size_t n, uint32_t crc) noexcept nogil:
    crc = crc ^ 0xFFFFFFFFU
    cdef uint32_t lo, hi
    while n >= 8:
        lo = crc ^ ((<uint32_t>p[0]) | (<uint32_t>p[1] << 8) | (<uint32_t>p[2] << 16) | (<uint32_t>p[3] << 24))
        hi = (<uint32_t>p[4]) | (<uint32_t>p[5] << 8) | (<uint32_t>p[6] << 16) | (<uint32_t>p[7] << 24)
        crc = (_table[7][lo & 0xFF] ^ _table[6][(lo >> 8) & 0xFF] ^
               _table[5][(lo >> 16) & 0xFF] ^ _table[4][lo >> 24] ^
               _table[3][hi & 0xFF] ^ _table[2][(hi >> 8) & 0xFF] ^
               _table[1][(hi >> 16) & 0xFF] ^ _table[0][hi >> 24])
        p += 8
        n -= 8
    while n > 0:
        crc = (crc >> 8) ^ _table[0][(crc ^ p[0]) & 0xFF]
        p += 1
        n -= 1
    return crc ^ 0xFFFFFFFFU

cdef inline uint64_t _rotl64(uint64_t x, int r) noexcept nogil:
    return (x << r) | (x >> (64 - r))

cdef inline uint64_t _fmix64(uint64_t k) noexcept nogil:
    k ^= k >> 33
    k *= 0xff51afd7ed558ccdULL
    k ^= k >> 33
    k *= 0xc4ceb9fe1a85ec53ULL
    k ^= k >> 33
    return k

cdef void murmur3_128(const uint8_t* data, size_t n, uint32_t seed,
                      uint64_t* out1, uint64_t* out2) noexcept nogil:
    cdef size_t nblocks = n // 16
    cdef uint64_t h1 = seed, h2 = seed
    cdef uint64_t c1 = 0x87c37b91114253d5ULL, c2 = 0x4cf5ad432745937fULL
    cdef uint64_t k1, k2
    cdef size_t i
    cdef const uint8_t* tail
    for i in range(nblocks):
        k1 = load_u64(data + i * 16)
        k2 = load_u64(data + i * 16 + 8)
        k1 *= c1; k1 = _rotl64(k1, 31); k1 *= c2; h1 ^= k1
        h1 = _rotl64(h1, 27); h1 += h2; h1 = h1 * 5 + 0x52dce729
        k2 *= c2; k2 = _rotl64(k2, 33); k2 *= c1; h2 ^= k2
        h2 = _rotl64(h2, 31); h2 += h1; h2 = h2 * 5 + 0x38495ab5
    tail = data + nblocks * 16
    k1 = 0
    k2 = 0
    cdef size_t rem = n & 15
    if rem >= 9:
        for i in range(rem - 1, 7, -1):
            k2 ^= (<uint64_t>tail[i]) << ((i - 8) * 8)
        k2 *= c2; k2 = _rotl64(k2, 33); k2 *= c1; h2 ^= k2
    if rem > 0:
        for i in range((rem if rem < 8 else 8) - 1, -1, -1):
            k1 ^= (<uint64_t>tail[i]) << (i * 8)
        k1 *= c1; k1 = _rotl64(k1, 31); k1 *= c2; h1 ^= k1
    h1 ^= n
    h2 ^= n
    h1 += h2
    h2 += h1
    h1 = _fmix64(h1)
    h2 = _fmix64(h2)
    h1 += h2
    h2 += h1
    out1[0] = h1
    out2[0] = h2


def crc32c_software(data, unsigned int crc=0):
    """The table-driven CRC-32C (tests compare it with the hardware one)."""
    cdef const uint8_t[::1] v = data
    return crc32c_sw(&v[0] if v.shape[0] else NULL, v.shape[0], crc)


def has_hardware_crc():
    return bool(_hw)


def crc32c_py(data, unsigned int crc=0):
    """crc32c(data[, crc]) -> int. Python access to the record checksum (tools, tests)."""
    cdef const uint8_t[::1] v = data
    if v.shape[0] == 0:
        return crc32c(NULL, 0, crc)
    return crc32c(&v[0], v.shape[0], crc)


def murmur3_py(data, unsigned int seed=0):
    """(h1, h2) of MurmurHash3_x64_128 as unsigned 64-bit ints."""
    cdef const uint8_t[::1] v = data
    cdef uint64_t h1, h2
    murmur3_128(&v[0] if v.shape[0] else NULL, v.shape[0], seed, &h1, &h2)
    return h1, h2


def encode_varint(unsigned long long v):
    cdef uint8_t buf[10]
    cdef uint8_t* end = put_varint(buf, v)
    return bytes(buf[:end - buf])


def decode_varint(data, size_t pos=0):
    """-> (value, next_pos); raises ValueError if malformed."""
    cdef const uint8_t[::1] v = data
    cdef uint64_t out
    if pos >= <size_t>v.shape[0]:
        raise ValueError("truncated varint")
    cdef const uint8_t* p = get_varint(&v[pos], &v[0] + v.shape[0], &out)
    if p == NULL:
        raise ValueError("malformed varint")
    return out, p - &v[0]
