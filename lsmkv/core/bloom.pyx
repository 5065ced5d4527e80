# cython: language_level=3
"""The bloom filter of a table: one blocked bloom filter per SST (docs/format.md,
"Filter block"). A key's hash is the first half of MurmurHash3 x64 128 of the
user key with seed BLOOM_SEED; a filter is nlines 64-byte lines and a final
probe-count byte k; a key's k probes all fall in line
((h & 0xFFFFFFFF) * nlines) >> 32, probe i testing bit (g_i >> 23) of it, with
g_0 = h >> 32 and g_{i+1} = g_i * 0x9E3779B9 mod 2**32.

bloom_hash and bloom_probe are inline functions of bloom.pxd (the read path of
TableReader and Core calls them with no cross-module call); build_filter is the
writer's side (TableBuilder.finish).

Thread safety: pure functions, no state.

Invariants:
  1. A filter built by build_filter() from the hashes of a set of keys answers
     True in bloom_probe() for every key of the set (no false negative).
  2. One definition of the hash: every table writer and reader, and the DB's
     lookup path, use bloom_hash from here.
"""
from libc.stdint cimport uint8_t, uint32_t, uint64_t
from libc.string cimport memset
from cpython.bytes cimport PyBytes_FromStringAndSize, PyBytes_AS_STRING

SEED = BLOOM_SEED


def bloom_hash_py(key):
    """The bloom hash of a user key (bytes-like)."""
    cdef const uint8_t[::1] v = key
    return bloom_hash(&v[0] if v.shape[0] else NULL, v.shape[0])


cdef bytes build_filter(const uint64_t* hashes, size_t n, int bits_per_key):
    """The filter block's contents for n key hashes at bits_per_key bits each
    (b"" when bits_per_key <= 0 or n == 0: no filter)."""
    cdef uint64_t nlines
    cdef int k
    cdef size_t i, j
    cdef uint32_t g, bit
    cdef uint8_t* line
    if bits_per_key <= 0 or n == 0:
        return b""
    nlines = (n * <uint64_t>bits_per_key + 511) // 512
    k = <int>(bits_per_key * 0.69 + 0.5)    # ln 2 * bits per key
    if k < 1:
        k = 1
    if k > 30:
        k = 30
    cdef bytes out = PyBytes_FromStringAndSize(NULL, nlines * 64 + 1)
    cdef uint8_t* bits = <uint8_t*>PyBytes_AS_STRING(out)
    memset(bits, 0, nlines * 64)
    for i in range(n):
        line = bits + ((hashes[i] & 0xFFFFFFFFU) * nlines >> 32) * 64
        g = <uint32_t>(hashes[i] >> 32)
        for j in range(k):
            bit = g >> 23
            line[bit >> 3] |= (1 << (bit & 7))
            g *= 0x9E3779B9U
    bits[nlines * 64] = k
    return out

