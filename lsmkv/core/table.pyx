# cython: language_level=3
"""Sorted string tables (SST): block format, bloom filter, builder, reader, iterators.

File layout (docs/format.md has field widths and edge cases):

    [data block 0][trailer] ... [data block n-1][trailer]
    [dictionary block][trailer] (only if the table has one)
    [filter block][trailer] [index block][trailer] [properties block][trailer]
    [footer: 80 bytes]

  block   = entries, then restart offsets (u32 LE each), then restart count (u32 LE)
  entry   = varint shared | varint non_shared | varint value_len | key_delta | value
  trailer = type (u8: 0 raw, 1 zstd, 2 zstd with the table's dictionary)
            | crc32c(block bytes as stored + type) (u32 LE)
  footer  = index (off u64, size u64) | filter (off, size) | properties (off, size)
            | dictionary (off, size; 0, 0 if none)
            | format_version u32 | crc32c(preceding 68 bytes) u32 | magic b"LSMKVSST"

Thread safety: TableBuilder is used by one thread. TableReader is immutable after
open and may be shared by any number of threads; get() is reentrant. Iterators
are used by one thread at a time.

Invariants:
  1. Entries in a table are strictly increasing in internal-key order; a user
     key's versions are never split across two files written by write_tables().
  2. Every block read is checksum-verified before it is parsed; a failed check,
     a failed decompression, or a malformed entry raises CorruptionError naming
     the file and the block's offset. Parsing never reads outside a block.
  3. The bloom filter holds every distinct user key of the table: may_contain()
     never answers False for a key that is in the table.
  4. A table's index and filter blocks are either resident (bytes held by the
     reader for its life, charged to the cache with reserve()) or, with
     cache_index_and_filter, slab-cache blocks keyed like data blocks: warmed at
     open, evictable, reloaded on a miss with the checksum verified and the
     contents' length (and the filter's probe count) compared with what open
     read, pinned only while a lookup or an iterator uses them. A block larger
     than a slab page cannot be cached and stays resident.
"""
import os
import threading

cimport cython

import zstandard

from libc.stdlib cimport malloc, calloc, realloc, free
from libc.string cimport memcpy, memcmp, memset
from libc.stdint cimport uint8_t, uint32_t, uint64_t, int64_t
from posix.unistd cimport pread, write, close, fsync
from libc.errno cimport errno, EAGAIN, EINTR, EINVAL, ENOSYS, EOPNOTSUPP
from posix.uio cimport iovec

cdef extern from *:
    """
    #include <sys/uio.h>
    #if defined(__linux__) && defined(__GLIBC__) && (__GLIBC__ > 2 || __GLIBC_MINOR__ >= 26)
    #  ifndef RWF_NOWAIT
    #    define RWF_NOWAIT 0x00000008
    #  endif
    #  define lsmkv_preadv2 preadv2
    #else   /* no preadv2: every read takes the plain pread path */
    #  include <errno.h>
    #  define RWF_NOWAIT 0
    static ssize_t lsmkv_preadv2(int fd, const struct iovec* iov, int n, off_t off, int flags) {
        (void)fd; (void)iov; (void)n; (void)off; (void)flags; errno = ENOSYS; return -1;
    }
    #endif
    """
    ssize_t preadv2 "lsmkv_preadv2" (int fd, const iovec* iov, int iovcnt, long offset, int flags) nogil
    int RWF_NOWAIT

cdef bint _nowait_ok = True     # cleared for good the first time preadv2(RWF_NOWAIT) is refused
from cpython.memoryview cimport PyMemoryView_FromMemory
from cpython.buffer cimport PyBUF_READ

cdef extern from "sys/mman.h" nogil:
    void* mmap(void* addr, size_t length, int prot, int flags, int fd, long offset)
    int munmap(void* addr, size_t length)
    int PROT_READ, MAP_SHARED
    void* MAP_FAILED
from cpython.bytes cimport (PyBytes_FromStringAndSize, PyBytes_AS_STRING, PyBytes_GET_SIZE)
from cpython.bytearray cimport PyByteArray_AS_STRING, PyByteArray_GET_SIZE
from lsmkv.core.cache cimport SlabCache, LRUCache, Pin, MetaCounts, ValueView
from lsmkv.core.coding cimport (crc32c, murmur3_128, cmp_ikey, cmp_bytes, load_u64, load_u32,
                            store_u64, store_u32, put_varint, get_varint, varint_len, make_tag,
                            KIND_DELETE, KIND_PUT, KIND_PUT_TTL, KIND_MAX, TAG_SIZE)
from lsmkv.core.iterator cimport InternalIterator, MergingIterator
from lsmkv.core.memtable cimport MemTable, MemTableIterator, Node, node_key, node_val
from lsmkv.core.zstd cimport (ZComp, zstd_loaded, zcomp_init, zcomp_free, zcomp_compress, zstd_bound,
                          zstd_is_error, zstd_error_name, zdctx_new, zdctx_free, zddict_new,
                          zddict_free, zstd_content_size, zstd_decompress)
from lsmkv.errors import CorruptionError

DEF FOOTER_SIZE = 80
DEF TRAILER_SIZE = 5
DEF FORMAT_VERSION = 1
MAGIC = b"LSMKVSST"
cdef enum:
    BLOCK_RAW = 0
    BLOCK_ZSTD = 1
    BLOCK_ZSTD_DICT = 2      # zstd with the table's own dictionary (the dictionary block)
cdef uint32_t BLOOM_SEED = 0xBC9F1D34U

# Sentinel returned by TableReader.get for a deletion or an expired entry.
DELETED = object()

# A decompression context must not be used by two threads at once, so every
# thread gets its own: libzstd's (no GIL release, no Python object per block),
# or python-zstandard's when libzstd is not loaded.
_tls = threading.local()

# libzstd's contexts live in a pthread key: found with one pthread_getspecific
# (no Python attribute lookup per block) and freed by the key's destructor when
# the thread exits.
cdef extern from "pthread.h" nogil:
    ctypedef unsigned int pthread_key_t
    int pthread_key_create(pthread_key_t* key, void (*destructor)(void*) noexcept nogil)
    void* pthread_getspecific(pthread_key_t key)
    int pthread_setspecific(pthread_key_t key, const void* value)

cdef void _dctx_destroy(void* p) noexcept nogil:
    zdctx_free(p)

cdef pthread_key_t _dctx_key
if pthread_key_create(&_dctx_key, _dctx_destroy) != 0:
    raise ImportError("lsmkv.core.table: pthread_key_create failed")

cdef void* _dctx() except NULL:
    """This thread's libzstd decompression context."""
    cdef void* d = pthread_getspecific(_dctx_key)
    if d != NULL:
        return d
    d = zdctx_new()
    if d == NULL:
        raise MemoryError("libzstd: cannot create a decompression context")
    if pthread_setspecific(_dctx_key, d) != 0:
        zdctx_free(d)
        raise MemoryError("cannot keep this thread's decompression context (pthread_setspecific)")
    return d

cdef object _decompressor():
    try:
        return _tls.d
    except AttributeError:
        _tls.d = zstandard.ZstdDecompressor()
        return _tls.d

DEF MAX_BLOCK_CONTENT = 1 << 28   # a frame declaring more is corrupt (block_size is at most 64 MiB)

cdef MetaCounts _uncounted      # index/filter counters of readers without a cache (never read)


cdef inline bint bloom_probe(const uint8_t* bits, uint64_t nlines, int k, uint64_t h) noexcept:
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


cdef uint64_t bloom_hash(const uint8_t* k, size_t n) noexcept nogil:
    cdef uint64_t h1, h2
    murmur3_128(k, n, BLOOM_SEED, &h1, &h2)
    return h1

def bloom_hash_py(key):
    cdef const uint8_t[::1] v = key
    return bloom_hash(&v[0] if v.shape[0] else NULL, v.shape[0])

# ---------------------------------------------------------------- buffers

ctypedef struct Buf:
    uint8_t* p
    size_t len
    size_t cap

# Buffer growth runs without the GIL (a memtable flush builds its table inside
# one nogil block): the *_c forms return -1 when memory runs out; the plain
# forms raise MemoryError.
cdef int buf_reserve_c(Buf* b, size_t extra) noexcept nogil:
    cdef size_t need = b.len + extra
    cdef uint8_t* grown
    if need > b.cap:
        if need < b.cap * 2:
            need = b.cap * 2
        grown = <uint8_t*>realloc(b.p, need)
        if grown == NULL:
            return -1
        b.p = grown
        b.cap = need
    return 0

cdef inline int buf_append_c(Buf* b, const void* src, size_t n) noexcept nogil:
    if buf_reserve_c(b, n) < 0:
        return -1
    if n:
        memcpy(b.p + b.len, src, n)
    b.len += n
    return 0

cdef inline int buf_set_c(Buf* b, const void* src, size_t n) noexcept nogil:
    b.len = 0
    return buf_append_c(b, src, n)

cdef inline int buf_append(Buf* b, const void* src, size_t n) except -1:
    if buf_append_c(b, src, n) < 0:
        raise MemoryError()
    return 0

cdef inline void kb_init(KeyBuf* kb) noexcept:
    kb.p = kb.inl
    kb.len = 0
    kb.cap = sizeof(kb.inl)


cdef inline void kb_free(KeyBuf* kb) noexcept:
    if kb.p != kb.inl:
        free(kb.p)
    kb_init(kb)


cdef inline int kb_set(KeyBuf* kb, size_t shared, const uint8_t* delta, size_t n) except -1:
    cdef uint8_t* grown
    cdef size_t need = shared + n
    if need > kb.cap:
        if kb.p == kb.inl:
            grown = <uint8_t*>malloc(need * 2 + 32)
            if grown != NULL:
                memcpy(grown, kb.inl, shared)
        else:
            grown = <uint8_t*>realloc(kb.p, need * 2 + 32)
        if grown == NULL:
            raise MemoryError()
        kb.p = grown
        kb.cap = need * 2 + 32
    if n:
        memcpy(kb.p + shared, delta, n)
    kb.len = need
    return 0

# ---------------------------------------------------------------- block builder

# One block of prefix-compressed entries with restart points, being built.
ctypedef struct BlockBuf:
    Buf buf
    Buf restarts        # u32 offsets
    Buf last
    int interval, counter
    size_t entries

cdef void bb_init(BlockBuf* b, int interval) noexcept nogil:
    memset(b, 0, sizeof(BlockBuf))
    b.interval = interval

cdef void bb_free(BlockBuf* b) noexcept nogil:
    free(b.buf.p); free(b.restarts.p); free(b.last.p)
    memset(b, 0, sizeof(BlockBuf))

cdef void bb_reset(BlockBuf* b) noexcept nogil:
    b.buf.len = 0
    b.restarts.len = 0
    b.last.len = 0
    b.counter = 0
    b.entries = 0

cdef inline size_t bb_size(BlockBuf* b) noexcept nogil:
    return b.buf.len + b.restarts.len + 4 + 4

cdef int bb_add(BlockBuf* b, const uint8_t* k, size_t kn, const uint8_t* v, size_t vn) noexcept nogil:
    """Append an entry; -1 if out of memory."""
    cdef size_t shared = 0
    cdef uint8_t tmp[4]
    cdef uint8_t* e
    if b.counter == 0 or b.counter >= b.interval:
        store_u32(tmp, <uint32_t>b.buf.len)
        if buf_append_c(&b.restarts, tmp, 4) < 0:
            return -1
        b.counter = 0
    else:
        while shared < kn and shared < b.last.len and b.last.p[shared] == k[shared]:
            shared += 1
    if buf_reserve_c(&b.buf, 30 + kn - shared + vn) < 0:
        return -1
    e = put_varint(b.buf.p + b.buf.len, shared)
    e = put_varint(e, kn - shared)
    e = put_varint(e, vn)
    b.buf.len = e - b.buf.p
    buf_append_c(&b.buf, k + shared, kn - shared)    # reserved above: cannot fail
    buf_append_c(&b.buf, v, vn)
    if buf_set_c(&b.last, k, kn) < 0:
        return -1
    b.counter += 1
    b.entries += 1
    return 0

cdef int bb_finish(BlockBuf* b) noexcept nogil:
    """Append the restart array: b.buf then holds the block's contents. -1 if out of memory."""
    cdef uint8_t tmp[4]
    if buf_append_c(&b.buf, b.restarts.p, b.restarts.len) < 0:
        return -1
    store_u32(tmp, <uint32_t>(b.restarts.len // 4))
    return buf_append_c(&b.buf, tmp, 4)


cdef class BlockBuilder:
    """Python access to a BlockBuf, for the properties block and the tests."""
    cdef BlockBuf b

    def __cinit__(self, int restart_interval=16):
        bb_init(&self.b, restart_interval)

    def __dealloc__(self):
        bb_free(&self.b)

    def py_add(self, key, value):
        cdef const uint8_t[::1] kv = key
        cdef const uint8_t[::1] vv = value
        if bb_add(&self.b, &kv[0] if kv.shape[0] else NULL, kv.shape[0],
                  &vv[0] if vv.shape[0] else NULL, vv.shape[0]) < 0:
            raise MemoryError()

    def py_finish(self):
        if bb_finish(&self.b) < 0:
            raise MemoryError()
        r = PyBytes_FromStringAndSize(<char*>self.b.buf.p, self.b.buf.len)
        bb_reset(&self.b)
        return r

    @property
    def entries(self):
        return self.b.entries

# ---------------------------------------------------------------- block reading

cdef inline const uint8_t* entry_header(const uint8_t* p, const uint8_t* limit, uint64_t* shared,
                                       uint64_t* non_shared, uint64_t* vlen) noexcept nogil:
    """Decode an entry's three varints at p; the byte after them, or NULL if one is
    malformed or runs past limit. Three one-byte varints (keys and values under
    128 bytes) take no loop."""
    if limit - p >= 3 and ((p[0] | p[1] | p[2]) & 0x80) == 0:
        shared[0] = p[0]
        non_shared[0] = p[1]
        vlen[0] = p[2]
        return p + 3
    p = get_varint(p, limit, shared)
    if p != NULL:
        p = get_varint(p, limit, non_shared)
    if p != NULL:
        p = get_varint(p, limit, vlen)
    return p


cdef class BlockIter(InternalIterator):
    """Iterator over one block's entries (data, index or properties block)."""

    def __cinit__(self):
        kb_init(&self.kb)
        self.data = None
        self.pcache = None
        self.nrestarts = 0
        self.size = 0

    def __dealloc__(self):
        kb_free(&self.kb)
        self.release_pin()

    cdef void release_pin(self) noexcept:
        """Unpin the cache slot this iterator stands on, if any."""
        cdef SlabCache c = self.pcache
        if c is not None:
            c.unpin(self.take_pin())

    cdef uint64_t take_pin(self) noexcept:
        """Hand the pin of the slot this iterator stands on to the caller (who must
        unpin it): the iterator is then off its block. pcache must be set."""
        self.pcache = None
        self.base = NULL
        self.size = 0
        self.valid = False
        return self.pslot

    cdef int reset(self, bytes data, object path, uint64_t block_offset) except -1:
        self.release_pin()
        self.data = data
        return self._reset_mem(<const uint8_t*>PyBytes_AS_STRING(data), PyBytes_GET_SIZE(data),
                               path, block_offset)

    cdef int reset_pinned(self, SlabCache cache, Pin* p, object path, uint64_t block_offset) except -1:
        """Stand on a cache slot the caller pinned; the pin passes to this iterator
        and is released by the next reset or when the iterator goes."""
        self.release_pin()
        self.data = None
        self.pcache = cache
        self.pslot = p.slot
        return self._reset_mem(p.data, p.len, path, block_offset)

    cdef int _reset_mem(self, const uint8_t* base, size_t size, object path, uint64_t block_offset) except -1:
        self.path = path
        self.block_offset = block_offset
        self.base = base
        self.size = size
        self.valid = False
        if self.size < 4:
            raise CorruptionError(path, block_offset, "block too short")
        self.nrestarts = load_u32(self.base + self.size - 4)
        if self.nrestarts > (self.size - 4) // 4:
            raise CorruptionError(path, block_offset, "bad restart count")
        self.restarts = self.size - 4 - 4 * <size_t>self.nrestarts
        self.cur = self.nxt = self.restarts
        return 0

    cdef int _corrupt(self, str what) except -1:
        self.valid = False
        raise CorruptionError(self.path, self.block_offset, what)

    cdef int _decode_at(self, size_t off) except -1:
        """Decode the entry at off, using the key buffer for its shared prefix."""
        cdef uint64_t shared, non_shared, vlen
        cdef const uint8_t* limit = self.base + self.restarts
        cdef const uint8_t* p = entry_header(self.base + off, limit, &shared, &non_shared, &vlen)
        if p == NULL or shared > self.kb.len or non_shared > <uint64_t>(limit - p) \
                or vlen > <uint64_t>(limit - p) - non_shared:
            return self._corrupt("bad block entry")
        kb_set(&self.kb, shared, p, non_shared)
        if self.kb.len < TAG_SIZE:
            return self._corrupt("block key shorter than its tag")
        self.cur = off
        self.key = self.kb.p
        self.key_len = self.kb.len
        self.val = p + non_shared
        self.val_len = vlen
        self.nxt = (p + non_shared + vlen) - self.base
        self.valid = True
        return 0

    cdef int _seek_restart(self, uint32_t i) except -1:
        cdef size_t off = load_u32(self.base + self.restarts + 4 * i)
        if off >= self.restarts:
            return self._corrupt("bad restart offset")
        self.kb.len = 0
        return self._decode_at(off)

    cdef int _restart_key(self, uint32_t i, const uint8_t** key, size_t* n) except -1:
        """The key of restart point i, read in place: an entry at a restart point
        shares no prefix, so its key is whole in the block and needs no copy."""
        cdef uint64_t shared, non_shared, vlen
        cdef size_t off = load_u32(self.base + self.restarts + 4 * i)
        cdef const uint8_t* limit = self.base + self.restarts
        cdef const uint8_t* p
        if off >= self.restarts:
            return self._corrupt("bad restart offset")
        p = entry_header(self.base + off, limit, &shared, &non_shared, &vlen)
        if p == NULL or shared != 0 or non_shared > <uint64_t>(limit - p) \
                or vlen > <uint64_t>(limit - p) - non_shared:
            return self._corrupt("bad block entry")
        if non_shared < TAG_SIZE:
            return self._corrupt("block key shorter than its tag")
        key[0] = p
        n[0] = non_shared
        return 0

    cdef int seek(self, const uint8_t* target, size_t n) except -1:
        cdef uint32_t lo = 0, hi, mid
        cdef const uint8_t* rk
        cdef size_t rn
        if self.nrestarts == 0:
            self.valid = False
            return 0
        hi = self.nrestarts - 1
        while lo < hi:      # the last restart point whose key is < target (or the first)
            mid = (lo + hi + 1) // 2
            self._restart_key(mid, &rk, &rn)
            if cmp_ikey(rk, rn, target, n) < 0:
                lo = mid
            else:
                hi = mid - 1
        self._seek_restart(lo)
        while self.valid and cmp_ikey(self.key, self.key_len, target, n) < 0:
            self.next()
        return 0

    cdef int seek_to_first(self) except -1:
        if self.nrestarts == 0:
            self.valid = False
            return 0
        return self._seek_restart(0)

    cdef int seek_to_last(self) except -1:
        if self.nrestarts == 0:
            self.valid = False
            return 0
        self._seek_restart(self.nrestarts - 1)
        while self.nxt < self.restarts:
            self._decode_at(self.nxt)
        return 0

    cdef int next(self) except -1:
        if self.nxt >= self.restarts:
            self.valid = False
            self.cur = self.restarts
            return 0
        return self._decode_at(self.nxt)

    cdef int prev(self) except -1:
        cdef size_t original = self.cur
        cdef uint32_t r = self.nrestarts
        # find the last restart point before the current entry
        while r > 0:
            r -= 1
            if load_u32(self.base + self.restarts + 4 * r) < original:
                break
        else:
            self.valid = False
            return 0
        if load_u32(self.base + self.restarts + 4 * r) >= original:
            self.valid = False
            return 0
        self._seek_restart(r)
        while self.nxt < original:
            self._decode_at(self.nxt)
        return 0


def block_entries(bytes data, path="<block>"):
    """All (key, value) pairs of a block, in order (tools, tests, properties)."""
    cdef BlockIter it = BlockIter()
    it.reset(data, path, 0)
    out = []
    it.seek_to_first()
    while it.valid:
        out.append((PyBytes_FromStringAndSize(<char*>it.key, it.key_len),
                    PyBytes_FromStringAndSize(<char*>it.val, it.val_len)))
        it.next()
    return out

# ---------------------------------------------------------------- handles and blocks

cdef inline int decode_handle(const uint8_t* p, size_t n, uint64_t* off, uint64_t* size) noexcept:
    cdef const uint8_t* q = get_varint(p, p + n, off)
    if q == NULL:
        return -1
    q = get_varint(q, p + n, size)
    if q == NULL:
        return -1
    return 0


cdef bytes _decompress(const uint8_t* p, size_t n, const void* ddict, object path, uint64_t off):
    """One zstd frame through libzstd into a new bytes object of its declared size."""
    cdef long long size = zstd_content_size(p, n)
    if size < 0 or size > MAX_BLOCK_CONTENT:
        raise CorruptionError(path, off, "zstd: bad frame header" if size == -2 else
                              f"zstd: frame declares {'no' if size == -1 else 'an impossible'} content size")
    cdef bytes out = PyBytes_FromStringAndSize(NULL, size)
    cdef size_t r = zstd_decompress(_dctx(), PyBytes_AS_STRING(out), size, p, n, ddict)
    if zstd_is_error(r):
        raise CorruptionError(path, off, f"zstd: {zstd_error_name(r).decode()}")
    if r != <size_t>size:
        raise CorruptionError(path, off, f"zstd: frame holds {r} bytes, its header says {size}")
    return out


cdef bytes check_block(const uint8_t* p, size_t n, object path, uint64_t off, TableReader table=None):
    """Verify the trailer of the n bytes at p (block as stored + trailer) and return
    the block's contents (a new bytes object; p is not kept)."""
    if n < TRAILER_SIZE:
        raise CorruptionError(path, off, "truncated block")
    cdef size_t body = n - TRAILER_SIZE
    cdef uint32_t expect = load_u32(p + body + 1)
    if crc32c(p, body + 1, 0) != expect:
        raise CorruptionError(path, off, "block checksum mismatch")
    cdef int btype = p[body]
    if btype == BLOCK_RAW:
        return PyBytes_FromStringAndSize(<char*>p, body)
    if btype == BLOCK_ZSTD or btype == BLOCK_ZSTD_DICT:
        if btype == BLOCK_ZSTD_DICT and (table is None or table.zdict is None):
            raise CorruptionError(path, off, "block needs the table's dictionary, which it lacks")
        if zstd_loaded():
            return _decompress(p, body, table.ddict if btype == BLOCK_ZSTD_DICT else NULL, path, off)
        if btype == BLOCK_ZSTD:
            d = _decompressor()
        else:
            d = table._dict_decompressor()
        try:   # decompress straight from p: no copy of the stored block
            return d.decompress(PyMemoryView_FromMemory(<char*>p, body, PyBUF_READ))
        except zstandard.ZstdError as e:
            raise CorruptionError(path, off, f"zstd: {e}") from None
    raise CorruptionError(path, off, f"unknown block type {btype}")


cdef int _pread_full(int fd, char* dst, uint64_t off, size_t n, object path) except -1:
    """Read exactly n bytes at off into dst. First one preadv2(RWF_NOWAIT) with the GIL
    held: it copies what the page cache holds and never waits for the disk, so a
    cached block (the common case) costs no GIL release and re-take, and no wait
    for a busy thread to hand the GIL back. The rest (a page not cached, or a
    kernel or file system without RWF_NOWAIT) is read with pread, the GIL
    released per call."""
    global _nowait_ok
    cdef ssize_t got
    cdef size_t done = 0
    cdef iovec iov
    if _nowait_ok and n:
        iov.iov_base = dst
        iov.iov_len = n
        got = preadv2(fd, &iov, 1, off, RWF_NOWAIT)
        if got > 0:
            done = got
        elif got < 0 and (errno == EOPNOTSUPP or errno == ENOSYS or errno == EINVAL):
            _nowait_ok = False        # not supported here: plain pread from now on
        elif got < 0 and errno != EAGAIN and errno != EINTR:
            raise OSError(errno, f"read failed: {path}: {os.strerror(errno)}")
        # EAGAIN (not cached), EINTR or 0 (end of file): the loop decides
    while done < n:
        with nogil:
            got = pread(fd, dst + done, n - done, off + done)
        if got < 0:
            raise OSError(errno, f"read failed: {path}: {os.strerror(errno)}")
        if got == 0:
            raise CorruptionError(path, off, f"file truncated (wanted {n} bytes)")
        done += got
    return 0


def pread_nowait(enabled=None):
    """Whether block reads try preadv2(RWF_NOWAIT) with the GIL held first; with
    enabled given, turn that on or off (tests compare both paths) and return the
    previous setting. It goes off by itself where the kernel refuses the flag."""
    global _nowait_ok
    cdef bint prev = _nowait_ok
    if enabled is not None:
        _nowait_ok = bool(enabled)
    return prev


cdef bytes pread_exact(int fd, uint64_t off, size_t n, object path):
    cdef bytes out = PyBytes_FromStringAndSize(NULL, n)
    _pread_full(fd, PyBytes_AS_STRING(out), off, n, path)
    return out


# Pooled read buffers for pread (mmap_reads=False): a block read borrows one and
# gives it back, so a read allocates no buffer. The pool is C arrays changed only
# with the GIL held and without releasing it (a borrowed buffer belongs to its
# borrower alone, also while it reads with the GIL released); at most POOL_MAX
# buffers are kept, each at least POOL_MIN bytes and grown to the largest read.
DEF POOL_MAX = 16
DEF POOL_MIN = 16384
cdef char* _pool_buf[POOL_MAX]
cdef size_t _pool_cap[POOL_MAX]
cdef int _pool_n = 0
cdef size_t _pool_bytes = 0
cdef unsigned long long _pool_borrowed = 0, _pool_created = 0


cdef char* _pool_get(size_t n, size_t* cap) except NULL:
    """A buffer of at least n bytes (its size in cap): give it back with _pool_put."""
    global _pool_borrowed, _pool_created, _pool_n, _pool_bytes
    cdef char* b
    _pool_borrowed += 1
    if _pool_n:
        _pool_n -= 1
        b = _pool_buf[_pool_n]
        cap[0] = _pool_cap[_pool_n]
        _pool_bytes -= cap[0]
        if cap[0] >= n:
            return b
        free(b)                     # too small for this read: replaced by a larger one
    cap[0] = n if n > POOL_MIN else POOL_MIN
    b = <char*>malloc(cap[0])
    if b == NULL:
        raise MemoryError(f"cannot allocate a {cap[0]}-byte read buffer")
    _pool_created += 1
    return b


cdef void _pool_put(char* b, size_t cap) noexcept:
    global _pool_n, _pool_bytes
    if _pool_n < POOL_MAX:
        _pool_buf[_pool_n] = b
        _pool_cap[_pool_n] = cap
        _pool_n += 1
        _pool_bytes += cap
    else:
        free(b)


def read_pool_stats():
    """Pooled read buffers: borrows, buffers ever created, buffers held and their bytes."""
    return {"borrowed": _pool_borrowed, "created": _pool_created, "held": _pool_n,
            "held_bytes": _pool_bytes}

# ---------------------------------------------------------------- table reader

cdef class TableReader:
    """Opens an SST and answers point lookups; new_iterator() scans it.

    Opening reads the footer, the index, filter and properties blocks and
    verifies their checksums. The index and filter blocks stay in memory, charged
    to the cache (reserve), unless cache_index_and_filter is true and the cache
    is a SlabCache: then they are cache blocks like data blocks, evictable, read
    again (checksum verified) on a miss and pinned only while a lookup or an
    iterator uses them (a block larger than a slab page stays in memory). With
    an LRUCache or no cache they stay in memory either way.

    >>> import tempfile, os
    >>> from lsmkv.core.cache import SlabCache
    >>> p = os.path.join(tempfile.mkdtemp(), "000001.sst")
    >>> b = TableBuilder(p); b.py_add(b"k" + make_tag_py(1, 1).to_bytes(8, "little"), b"v")
    >>> _ = b.finish()
    >>> c = SlabCache(1 << 20)
    >>> t = TableReader(p, 1, c, False, cache_index_and_filter=True)
    >>> t.index_cached, t.memory_bytes(), t.py_get(b"k")
    (True, 0, b'v')
    >>> c.stats()["index_hits"], c.stats()["index_filter_cached"] > 0
    (1, True)
    """

    def __cinit__(self):
        self.fd = -1
        self.map = NULL
        self.map_len = 0
        self.touched = NULL
        self.touched_bytes = 0
        self.ddict = NULL

    def __init__(self, path, uint64_t number, cache=None, bint use_mmap=True,
                 bint cache_index_and_filter=False):
        self.path = str(path)
        self.number = number
        self.cache = cache
        self.slab = cache if isinstance(cache, SlabCache) else None
        if self.slab is not None:
            self.mc = &self.slab.meta
        elif isinstance(cache, LRUCache):
            self.mc = &(<LRUCache>cache).meta
        else:
            self.mc = &_uncounted
        self.charged = 0
        self.use_mmap = use_mmap
        self.fd = os.open(self.path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        try:
            self._open(cache_index_and_filter and self.slab is not None)
        except BaseException:
            os.close(self.fd)
            self.fd = -1
            raise

    def _open(self, bint cache_meta):
        cdef uint64_t size = os.fstat(self.fd).st_size
        self.file_size = size
        if size < FOOTER_SIZE:
            raise CorruptionError(self.path, 0, f"file too short for a footer ({size} bytes)")
        cdef void* m
        if self.use_mmap:
            # reads become memory accesses (as LevelDB reads tables on 64-bit systems);
            # if the mapping fails, reads fall back to pread
            m = mmap(NULL, size, PROT_READ, MAP_SHARED, self.fd, 0)
            if m != MAP_FAILED:
                self.map = <const uint8_t*>m
                self.map_len = size
                self.touched = <uint8_t*>calloc(((size + 65535) >> 16) // 8 + 1, 1)
        cdef bytes footer = pread_exact(self.fd, size - FOOTER_SIZE, FOOTER_SIZE, self.path)
        cdef const uint8_t* f = <const uint8_t*>PyBytes_AS_STRING(footer)
        if footer[72:80] != MAGIC:
            raise CorruptionError(self.path, size - 8, "bad magic number (not an lsmkv SST)")
        if crc32c(f, 68, 0) != load_u32(f + 68):
            raise CorruptionError(self.path, size - FOOTER_SIZE, "footer checksum mismatch")
        if load_u32(f + 64) != FORMAT_VERSION:
            raise CorruptionError(self.path, size - FOOTER_SIZE + 64,
                                  f"unsupported format version {load_u32(f + 64)}")
        cdef uint64_t h[8]
        cdef int i
        for i in range(8):
            h[i] = load_u64(f + 8 * i)
            if i % 2 == 1 and (h[i - 1] + h[i] + TRAILER_SIZE > size - FOOTER_SIZE):
                raise CorruptionError(self.path, size - FOOTER_SIZE, "block handle out of range")
        self.ztls = threading.local()
        self.zdict = None
        if h[7]:
            dict_data = self.read_block(h[6], h[7])
            try:
                self.zdict = zstandard.ZstdCompressionDict(dict_data)
            except zstandard.ZstdError as e:
                raise CorruptionError(self.path, h[6], f"bad compression dictionary: {e}") from None
            if zstd_loaded():
                self.ddict = zddict_new(PyBytes_AS_STRING(dict_data), PyBytes_GET_SIZE(dict_data))
                if self.ddict == NULL:
                    raise CorruptionError(self.path, h[6], "bad compression dictionary (libzstd refused it)")
        self.index_offset, self.index_size = h[0], h[1]
        self.filter_offset, self.filter_size = h[2], h[3]
        cdef bytes index_data = self.read_block(h[0], h[1])
        cdef bytes filter_data = self.read_block(h[2], h[3])
        props = self.read_block(h[4], h[5])
        self.properties = decode_properties(props, self.path, h[4])
        self.smallest_ukey = self.properties.get("smallest_key", b"")
        self.largest_ukey = self.properties.get("largest_key", b"")
        BlockIter().reset(index_data, self.path, h[0])   # validates the restart array
        cdef size_t fn = PyBytes_GET_SIZE(filter_data)
        self.index_len = PyBytes_GET_SIZE(index_data)
        self.filter_len = fn
        if fn == 0:
            self.fnlines = 0
            self.fk = 0
        else:
            self.fk = (<const uint8_t*>PyBytes_AS_STRING(filter_data))[fn - 1]
            self.fnlines = (fn - 1) // 64
            if self.fk < 1 or self.fk > 30 or self.fnlines == 0 or (fn - 1) % 64 != 0:
                raise CorruptionError(self.path, h[2], "bad bloom filter parameters")
        # cache_meta: index and filter become slab blocks (warmed now) unless larger than a page
        self.index_cached = cache_meta and self.index_len <= self.slab.page_size
        self.filter_cached = cache_meta and 0 < fn <= self.slab.page_size
        if self.index_cached:
            self._warm(h[0], index_data)
        else:
            self.index_data = index_data
        if self.filter_cached:
            self._warm(h[2], filter_data)
        else:
            self.filter_data = filter_data
            if fn:
                self.fbits = <const uint8_t*>PyBytes_AS_STRING(filter_data)
        if self.cache is not None:
            # resident index and filter stay in memory while the table is open: charged to the cache
            self.charged = self.memory_bytes()
            if self.charged:
                self.cache.reserve(self.charged)

    cdef int _warm(self, uint64_t off, bytes data) except -1:
        """Put a meta block read at open into the slab cache (a failed insert is a
        later miss)."""
        cdef Pin p
        cdef size_t n = PyBytes_GET_SIZE(data)
        if not self.slab.alloc_pin((self.number << 40) | off, n, &p):
            return 0
        memcpy(<void*>p.data, PyBytes_AS_STRING(data), n)
        self.slab.mark_meta(&p)
        self.slab.publish(&p)
        self.slab.unpin(p.slot)
        return 0

    def __dealloc__(self):
        if self.charged and self.cache is not None:
            self.cache.reserve(-<long long>self.charged)
        free(self.touched)
        zddict_free(self.ddict)
        if self.map != NULL:
            munmap(<void*>self.map, self.map_len)
        if self.fd >= 0:
            close(self.fd)

    def close(self):
        """Release the file now (later reads raise ValueError). The DB never calls
        this on a table a reader may still hold; dropping the last reference does it."""
        if self.charged and self.cache is not None:
            self.cache.reserve(-<long long>self.charged)
            self.charged = 0
        if self.map != NULL:
            munmap(<void*>self.map, self.map_len)
            self.map = NULL
            free(self.touched)
            self.touched = NULL
            self.touched_bytes = 0
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    cdef bint in_range(self, const uint8_t* k, size_t kn) noexcept:
        """Is user key k within [smallest, largest] of this table?"""
        return (cmp_bytes(k, kn, <const uint8_t*>PyBytes_AS_STRING(self.smallest_ukey),
                          PyBytes_GET_SIZE(self.smallest_ukey)) >= 0 and
                cmp_bytes(k, kn, <const uint8_t*>PyBytes_AS_STRING(self.largest_ukey),
                          PyBytes_GET_SIZE(self.largest_ukey)) <= 0)

    cdef int may_contain(self, uint64_t h) except -1:
        """0 only if the user key with bloom hash h is surely absent, else 1.
        A resident filter is probed in place (counted as a filter hit); a cached
        one is pinned for the probe (and loaded on a miss, which may raise
        CorruptionError or OSError)."""
        if self.fbits != NULL:
            self.mc.filter_hits += 1
            return bloom_probe(self.fbits, self.fnlines, self.fk, h)
        if self.fnlines == 0:
            return 1
        return self._may_contain_cached(h)

    cdef int _may_contain_cached(self, uint64_t h) except -1:
        cdef Pin p
        cdef int r
        b = self._meta_block(self.filter_offset, self.filter_size, self.filter_len, True, &p)
        if b is not None:           # the cache could not take it: probe this copy
            return bloom_probe(<const uint8_t*>PyBytes_AS_STRING(b), self.fnlines, self.fk, h)
        r = bloom_probe(p.data, self.fnlines, self.fk, h)
        self.slab.unpin(p.slot)
        return r

    cdef object _meta_block(self, uint64_t off, uint64_t size, size_t expect, bint is_filter, Pin* p):
        """The cached index or filter block at off: None with its slot pinned in p
        (a hit, or loaded and verified on a miss), or the block as bytes when the
        cache cannot take it. A loaded block whose contents differ in length (or,
        for the filter, in probe count) from what open read raises CorruptionError."""
        cdef uint64_t key = (self.number << 40) | off
        if self.slab.lookup_pin_meta(key, p):
            if is_filter:
                self.mc.filter_hits += 1
            else:
                self.mc.index_hits += 1
            return None
        if is_filter:
            self.mc.filter_misses += 1
        else:
            self.mc.index_misses += 1
        b = self._fill_slab(key, off, size, p)
        cdef const uint8_t* data = p.data if b is None else <const uint8_t*>PyBytes_AS_STRING(b)
        cdef size_t n = p.len if b is None else <size_t>PyBytes_GET_SIZE(b)
        if n != expect or (is_filter and data[expect - 1] != self.fk):
            if b is None:
                self.slab.discard(key)
                self.slab.unpin(p.slot)
            raise CorruptionError(self.path, off, f"{'filter' if is_filter else 'index'} block "
                                                  f"differs from the one read at open")
        if b is None:
            self.slab.mark_meta(p)
        return b

    cdef int load_index(self, BlockIter it) except -1:
        """Point it at the index block: the resident bytes (an index hit), or the
        cached slot, pinned by it until its next reset."""
        if self.index_data is not None:
            self.mc.index_hits += 1
            return it.reset(self.index_data, self.path, self.index_offset)
        return self._load_index_cached(it)

    cdef int _load_index_cached(self, BlockIter it) except -1:
        cdef Pin p
        b = self._meta_block(self.index_offset, self.index_size, self.index_len, False, &p)
        if b is None:
            return it.reset_pinned(self.slab, &p, self.path, self.index_offset)
        return it.reset(b, self.path, self.index_offset)

    def memory_bytes(self):
        """Bytes this open table keeps in memory: its resident index and filter
        blocks (0 for those that live in the block cache)."""
        return ((PyBytes_GET_SIZE(self.index_data) if self.index_data is not None else 0) +
                (PyBytes_GET_SIZE(self.filter_data) if self.filter_data is not None else 0))

    def mapped_resident(self):
        """Bytes of this table's mapping that this process has touched, counted in
        64 KiB windows: on a fault the kernel maps the whole cached 64 KiB window
        around the page (fault-around), and that is what the mapping adds to the
        RSS while the file stays in the page cache. 0 with pread reads."""
        return self.touched_bytes

    def py_may_contain(self, key):
        return bool(self.may_contain(bloom_hash_py(key)))

    cdef bytes read_block(self, uint64_t off, uint64_t size):
        """A block's contents, checksum verified. The handle is checked against the
        file size first, so a damaged index can never read outside the file."""
        cdef char* buf
        cdef size_t cap
        self._check_handle(off, size)
        if self.map != NULL:
            self._touch(off, size + TRAILER_SIZE)
            return check_block(self.map + off, size + TRAILER_SIZE, self.path, off, self)
        buf = _pool_get(size + TRAILER_SIZE, &cap)
        try:
            _pread_full(self.fd, buf, off, size + TRAILER_SIZE, self.path)
            return check_block(<const uint8_t*>buf, size + TRAILER_SIZE, self.path, off, self)
        finally:
            _pool_put(buf, cap)

    cdef void _touch(self, uint64_t off, uint64_t n) noexcept:
        """Count the 64 KiB windows of the mapping a read of [off, off + n) touches."""
        cdef uint64_t w
        if self.touched == NULL or n == 0:
            return
        for w in range(off >> 16, ((off + n - 1) >> 16) + 1):
            if not (self.touched[w >> 3] & (1 << (w & 7))):
                self.touched[w >> 3] |= 1 << (w & 7)
                self.touched_bytes += min(<uint64_t>65536, self.map_len - (w << 16))

    cdef int _check_handle(self, uint64_t off, uint64_t size) except -1:
        if self.fd < 0:
            raise ValueError(f"table {self.path} is closed")
        if off > self.file_size or size + TRAILER_SIZE > self.file_size - off:
            raise CorruptionError(self.path, off, "block handle out of range")
        return 0

    cdef object _fill_slab(self, uint64_t key, uint64_t off, uint64_t size, Pin* p):
        """Read, verify and decompress a block straight into a new slab slot (no
        intermediate bytes object): None with the slot pinned in p and published,
        or the block as bytes when the cache cannot take it."""
        cdef char* buf = NULL
        cdef size_t cap = 0
        cdef const uint8_t* sp
        cdef size_t n = size + TRAILER_SIZE, body = size
        cdef long long csize
        cdef int btype
        cdef size_t r
        cdef void* dctx = NULL
        self._check_handle(off, size)
        if self.map != NULL:
            self._touch(off, n)
            sp = self.map + off
        else:
            buf = _pool_get(n, &cap)
            sp = <const uint8_t*>buf
        try:
            if buf != NULL:
                _pread_full(self.fd, buf, off, n, self.path)
            if crc32c(sp, body + 1, 0) != load_u32(sp + body + 1):
                raise CorruptionError(self.path, off, "block checksum mismatch")
            btype = sp[body]
            if btype == BLOCK_RAW:
                csize = body
            elif (btype == BLOCK_ZSTD or btype == BLOCK_ZSTD_DICT) and zstd_loaded() and \
                    not (btype == BLOCK_ZSTD_DICT and self.zdict is None):
                csize = zstd_content_size(sp, body)
            else:       # fallback decompressor, or a damaged type: the bytes path decides
                return check_block(sp, n, self.path, off, self)
            if csize < 0 or csize > MAX_BLOCK_CONTENT:
                return check_block(sp, n, self.path, off, self)    # raises the precise error
            if btype != BLOCK_RAW:
                dctx = _dctx()      # before the slot: a failure here leaves no slot FILLING
            if not self.slab.alloc_pin(key, csize, p):
                return check_block(sp, n, self.path, off, self)
            if btype == BLOCK_RAW:
                memcpy(<void*>p.data, sp, body)
            else:
                r = zstd_decompress(dctx, <void*>p.data, csize, sp, body,
                                    self.ddict if btype == BLOCK_ZSTD_DICT else NULL)
                if zstd_is_error(r) or r != <size_t>csize:
                    self.slab.abort(p.slot)
                    if zstd_is_error(r):
                        raise CorruptionError(self.path, off, f"zstd: {zstd_error_name(r).decode()}")
                    raise CorruptionError(self.path, off, f"zstd: frame holds {r} bytes, its header says {csize}")
            self.slab.publish(p)
            return None
        finally:
            if buf != NULL:
                _pool_put(buf, cap)

    cdef int load_into(self, BlockIter it, uint64_t off, uint64_t size) except -1:
        """Point it at a data block: a pinned slab slot (hit, or filled on a miss),
        or a bytes object (the LRU cache, no cache, or a block the slab cannot take)."""
        cdef Pin p
        cdef uint64_t key
        if self.slab is None:
            return it.reset(self.block(off, size), self.path, off)
        key = (self.number << 40) | off
        if self.slab.lookup_pin(key, &p):
            return it.reset_pinned(self.slab, &p, self.path, off)
        b = self._fill_slab(key, off, size, &p)
        if b is None:
            return it.reset_pinned(self.slab, &p, self.path, off)
        return it.reset(b, self.path, off)

    def _dict_decompressor(self):
        """This thread's decompressor for blocks compressed with the table's dictionary."""
        try:
            return self.ztls.d
        except AttributeError:
            self.ztls.d = zstandard.ZstdDecompressor(dict_data=self.zdict)
            return self.ztls.d

    cdef bytes block(self, uint64_t off, uint64_t size):
        """A data block's contents, through the block cache when there is one."""
        cdef bytes b
        if self.cache is None:
            return self.read_block(off, size)
        key = (self.number << 40) | off
        b = self.cache.lookup(key)
        if b is None:
            b = self.read_block(off, size)
            self.cache.insert(key, b)
        return b

    cdef object get(self, const uint8_t* ikey, size_t ikn, int64_t now, int64_t* expiry=NULL,
                    bint view=False):
        """The newest entry at or below ikey's sequence for ikey's user key:
        bytes (a live value; a ValueView if view), DELETED (a deletion or an
        expired value), or None (no entry in this table). The caller checks the
        bloom filter first."""
        cdef BlockIter it = BlockIter()
        cdef uint64_t off, size, tag
        cdef size_t ukn = ikn - TAG_SIZE
        cdef int kind
        self.load_index(it)         # a cached index stays pinned by it until the data block replaces it
        it.seek(ikey, ikn)
        if not it.valid:
            return None
        if decode_handle(it.val, it.val_len, &off, &size) < 0:
            raise CorruptionError(self.path, self.index_offset, "bad block handle in index")
        self.load_into(it, off, size)
        it.seek(ikey, ikn)
        if not it.valid or it.key_len != ikn or (ukn and memcmp(it.key, ikey, ukn) != 0):
            return None
        tag = load_u64(it.key + ukn)
        kind = tag & 0xFF
        if kind == KIND_PUT:
            if view:
                return value_view(it, it.val, it.val_len)
            return PyBytes_FromStringAndSize(<char*>it.val, it.val_len)
        if kind == KIND_PUT_TTL:
            if it.val_len < 8:
                raise CorruptionError(self.path, off, "TTL entry shorter than its expiry")
            if <int64_t>load_u64(it.val) <= now:
                return DELETED
            if expiry != NULL:
                expiry[0] = <int64_t>load_u64(it.val)
            if view:
                return value_view(it, it.val + 8, it.val_len - 8)
            return PyBytes_FromStringAndSize(<char*>it.val + 8, it.val_len - 8)
        return DELETED

    def py_get(self, key, uint64_t seq=0x00FFFFFFFFFFFFFF, int64_t now=0):
        ik = bytes(key) + make_tag(seq, KIND_MAX).to_bytes(8, "little")
        r = self.get(<const uint8_t*>PyBytes_AS_STRING(ik), len(ik), now)
        return r

    def new_iterator(self):
        return TableIterator(self)

    def verify(self):
        """Read every data block, checking checksums and key order. Returns entry count;
        a damaged block or keys out of order raise CorruptionError with the offset
        of the data block where it was found."""
        cdef TableIterator it = TableIterator(self)
        cdef bytes prev = None
        cdef size_t n = 0
        it.seek_to_first()
        while it.valid:
            cur = PyBytes_FromStringAndSize(<char*>it.key, it.key_len)
            if prev is not None and cmp_ikey(<const uint8_t*>PyBytes_AS_STRING(prev), len(prev),
                                             it.key, it.key_len) >= 0:
                # the offset of the data block holding the key that breaks the order
                raise CorruptionError(self.path, it.data.block_offset, "keys out of order")
            prev = cur
            n += 1
            it.next()
        return n


cdef ValueView value_view(BlockIter it, const uint8_t* p, size_t n):
    """A view of n bytes at p inside the block `it` stands on, without a copy:
    the iterator's pin passes to the view (it is then off its block), or the view
    keeps the block's bytes object alive. Views may pin at most half the slab
    cache: past that the value is copied, so readers that hold views cannot
    starve the cache of evictable slots."""
    cdef SlabCache c = it.pcache
    if c is not None:
        if c.pinned_bytes <= c.capacity // 2:
            return ValueView.pinned_slot(c, it.take_pin(), p, n)
        b = PyBytes_FromStringAndSize(<char*>p, n)
        return ValueView.of(b, <const uint8_t*>PyBytes_AS_STRING(b), n)
    return ValueView.of(it.data, p, n)


def make_tag_py(uint64_t seq, int kind):
    return make_tag(seq, kind)


cdef dict decode_properties(bytes data, object path, uint64_t off):
    cdef BlockIter it = BlockIter()
    it.reset(data, path, off)
    props = {}
    cdef uint64_t v
    it.seek_to_first()
    while it.valid:
        name = PyBytes_FromStringAndSize(<char*>it.key, it.key_len - TAG_SIZE).decode("ascii", "replace")
        raw = PyBytes_FromStringAndSize(<char*>it.val, it.val_len)
        if name in ("smallest_key", "largest_key", "compression"):
            props[name] = raw
        else:
            if get_varint(it.val, it.val + it.val_len, &v) == NULL:
                raise CorruptionError(path, off, f"bad property {name}")
            props[name] = v
        it.next()
    if "compression" in props:
        props["compression"] = props["compression"].decode("ascii", "replace")
    return props

# ---------------------------------------------------------------- table iterator

cdef class TableIterator(InternalIterator):
    """Two-level iterator: the index block picks data blocks, read through the cache."""

    def __cinit__(self, TableReader table):
        self.table = table
        self.index = BlockIter()
        table.load_index(self.index)        # a cached index stays pinned while the iterator lives
        self.data = BlockIter()
        self.have_block = False

    cdef int _load_block(self) except -1:
        cdef uint64_t off, size
        self.have_block = False
        if not self.index.valid:
            return 0
        if decode_handle(self.index.val, self.index.val_len, &off, &size) < 0:
            raise CorruptionError(self.table.path, self.table.index_offset, "bad block handle in index")
        self.table.load_into(self.data, off, size)
        self.have_block = True
        return 0

    cdef void _copy(self) noexcept:
        self.valid = self.have_block and self.data.valid
        if self.valid:
            self.key = self.data.key
            self.key_len = self.data.key_len
            self.val = self.data.val
            self.val_len = self.data.val_len

    cdef int _skip_forward(self) except -1:
        while self.have_block and not self.data.valid:
            self.index.next()
            self._load_block()
            if self.have_block:
                self.data.seek_to_first()
        self._copy()
        return 0

    cdef int _skip_backward(self) except -1:
        while self.have_block and not self.data.valid:
            self.index.prev()
            self._load_block()
            if self.have_block:
                self.data.seek_to_last()
        self._copy()
        return 0

    cdef int seek(self, const uint8_t* target, size_t n) except -1:
        self.index.seek(target, n)
        self._load_block()
        if self.have_block:
            self.data.seek(target, n)
        return self._skip_forward()

    cdef int seek_to_first(self) except -1:
        self.index.seek_to_first()
        self._load_block()
        if self.have_block:
            self.data.seek_to_first()
        return self._skip_forward()

    cdef int seek_to_last(self) except -1:
        self.index.seek_to_last()
        self._load_block()
        if self.have_block:
            self.data.seek_to_last()
        return self._skip_backward()

    cdef int next(self) except -1:
        self.data.next()
        return self._skip_forward()

    cdef int prev(self) except -1:
        self.data.prev()
        return self._skip_backward()

# ---------------------------------------------------------------- level iterator

cdef int find_table(list largest, const uint8_t* target, size_t n) except -1:
    """Index of the first table (of a sorted, non-overlapping run) whose largest
    internal key is >= target; len(largest) if none."""
    cdef int lo = 0, hi = len(largest), mid
    cdef bytes k
    while lo < hi:
        mid = (lo + hi) // 2
        k = <bytes>largest[mid]
        if cmp_ikey(<const uint8_t*>PyBytes_AS_STRING(k), PyBytes_GET_SIZE(k), target, n) < 0:
            lo = mid + 1
        else:
            hi = mid
    return lo


cdef class LevelIterator(InternalIterator):
    """Concatenation of a sorted run of non-overlapping tables; opens one at a time."""

    def __cinit__(self, list tables, list largest):
        self.tables = tables
        self.largest = largest
        self.i = -1
        self.cur = None

    cdef int _open(self, int i) except -1:
        if i < 0 or i >= len(self.tables):
            self.i = -1
            self.cur = None
            self.valid = False
            return 0
        if i != self.i or self.cur is None:
            self.i = i
            self.cur = TableIterator(self.tables[i])
        return 0

    cdef void _copy(self) noexcept:
        self.valid = self.cur is not None and self.cur.valid
        if self.valid:
            self.key = self.cur.key
            self.key_len = self.cur.key_len
            self.val = self.cur.val
            self.val_len = self.cur.val_len

    cdef int seek(self, const uint8_t* target, size_t n) except -1:
        cdef int lo = find_table(self.largest, target, n)
        self._open(lo)
        if self.cur is not None:
            self.cur.seek(target, n)
            if not self.cur.valid:
                return self.next_table()
        self._copy()
        return 0

    cdef int next_table(self) except -1:
        while self.cur is not None and not self.cur.valid:
            self._open(self.i + 1)
            if self.cur is not None:
                self.cur.seek_to_first()
        self._copy()
        return 0

    cdef int prev_table(self) except -1:
        while self.cur is not None and not self.cur.valid:
            self._open(self.i - 1)
            if self.cur is not None:
                self.cur.seek_to_last()
        self._copy()
        return 0

    cdef int seek_to_first(self) except -1:
        self._open(0)
        if self.cur is not None:
            self.cur.seek_to_first()
        return self.next_table()

    cdef int seek_to_last(self) except -1:
        self._open(len(self.tables) - 1)
        if self.cur is not None:
            self.cur.seek_to_last()
        return self.prev_table()

    cdef int next(self) except -1:
        self.cur.next()
        return self.next_table()

    cdef int prev(self) except -1:
        self.cur.prev()
        return self.prev_table()

# ---------------------------------------------------------------- table builder

DEF ERR_NOMEM = -1
DEF ERR_ZSTD = -2        # libzstd error code in self.zerr
DEF ERR_PY = -3          # exception (fallback compression, dictionary training) in self.pyexc
DEF ERR_ORDER = -4
DEF ERR_TTL_VALUE = -5
DEF ERR_IO = -6           # errno set
DEF OUT_FLUSH_BYTES = 1 << 20


cdef class TableBuilder:
    """Writes one SST. add() entries in strictly increasing internal-key order,
    then finish() (which fsyncs) or abandon().

    Data blocks are cut at block_size bytes (before compression); a block is
    stored zstd-compressed only when that saves at least 1/8 of its size.

    add_c() is the nogil core: it builds blocks, compresses them through libzstd
    (lsmkv.core.zstd) and queues them in `out`, and never does I/O; the caller
    writes `out` out (flush_out / flush_out_c) once it passes OUT_FLUSH_BYTES.
    Two cases take the GIL inside add_c: blocks held back to train a dictionary
    (compaction outputs) and compression when libzstd could not be loaded (the
    python-zstandard fallback)."""
    cdef readonly object path
    cdef int fd
    cdef Buf out                     # pending output not yet written
    cdef readonly uint64_t offset    # bytes written to the file so far (incl. pending)
    cdef BlockBuf data_block, index_block
    cdef size_t block_size
    cdef ZComp zc                  # libzstd context (zc.cctx NULL: use the fallback cctx)
    cdef object cctx               # python-zstandard compressor, when libzstd is not loaded
    cdef object zobj               # the fallback's last compressed block (kept alive)
    cdef Buf zbuf                  # compressed form of the current block
    cdef int compress
    cdef int level
    cdef int block_type            # BLOCK_ZSTD or BLOCK_ZSTD_DICT, once chosen
    cdef size_t dict_bytes
    cdef bint training             # blocks are held back in `pending` to train a dictionary
    cdef list pending              # (contents, last key) of those blocks
    cdef size_t pending_bytes
    cdef bytes dict_data
    cdef Buf last_key
    cdef Buf first_key
    cdef Buf last_ukey_hashed
    cdef uint64_t* hashes
    cdef size_t nhashes, cap_hashes
    cdef int bits_per_key
    cdef size_t zerr
    cdef object pyexc
    # properties
    cdef readonly uint64_t num_entries, num_deletions, num_ttl, raw_key_bytes, raw_value_bytes
    cdef readonly uint64_t smallest_seq, largest_seq, num_data_blocks, data_size
    cdef readonly int64_t min_expiry
    cdef bint finished

    def __cinit__(self):
        self.fd = -1
        memset(&self.out, 0, sizeof(Buf))
        memset(&self.zbuf, 0, sizeof(Buf))
        memset(&self.last_key, 0, sizeof(Buf))
        memset(&self.first_key, 0, sizeof(Buf))
        memset(&self.last_ukey_hashed, 0, sizeof(Buf))
        bb_init(&self.data_block, 16)
        bb_init(&self.index_block, 1)       # binary search lands on the entry
        self.zc.cctx = self.zc.cdict = NULL
        self.hashes = NULL
        self.nhashes = self.cap_hashes = 0

    def __init__(self, path, size_t block_size=4096, compression="zstd", int compression_level=-1,
                 int bloom_bits_per_key=10, int restart_interval=16, size_t dict_bytes=0):
        self.path = str(path)
        self.block_size = block_size
        self.level = compression_level
        self.dict_bytes = dict_bytes
        self.training = False
        self.pending = None
        self.pending_bytes = 0
        self.dict_data = None
        self.block_type = BLOCK_ZSTD
        if compression == "zstd":
            self.compress = 1
            if dict_bytes:
                self.training = True     # trained from the first blocks; see _train()
                self.pending = []
            else:
                self._set_compressor(None)
        elif compression == "none":
            self.compress = 0
        else:
            raise ValueError(f"compression must be 'zstd' or 'none', not {compression!r}")
        self.bits_per_key = bloom_bits_per_key
        self.data_block.interval = restart_interval
        self.offset = 0
        self.num_entries = self.num_deletions = self.num_ttl = 0
        self.raw_key_bytes = self.raw_value_bytes = 0
        self.smallest_seq = <uint64_t>-1
        self.largest_seq = 0
        self.num_data_blocks = 0
        self.min_expiry = 0
        self.finished = False
        self.fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o644)

    def __dealloc__(self):
        if self.fd >= 0:
            close(self.fd)
        zcomp_free(&self.zc)
        bb_free(&self.data_block)
        bb_free(&self.index_block)
        free(self.out.p); free(self.zbuf.p); free(self.last_key.p); free(self.first_key.p)
        free(self.last_ukey_hashed.p); free(self.hashes)

    cdef int _set_compressor(self, bytes dict_data) except -1:
        """Compress with libzstd when it is loaded, else with python-zstandard."""
        cdef const char* d = NULL
        cdef size_t dn = 0
        if dict_data is not None:
            d = PyBytes_AS_STRING(dict_data)
            dn = PyBytes_GET_SIZE(dict_data)
        if zstd_loaded():
            if zcomp_init(&self.zc, self.level, d, dn) < 0:
                raise MemoryError("libzstd: cannot create a compression context")
        elif dict_data is not None:
            self.cctx = zstandard.ZstdCompressor(level=self.level, write_dict_id=False,
                                                 dict_data=zstandard.ZstdCompressionDict(dict_data))
        else:
            self.cctx = zstandard.ZstdCompressor(level=self.level)
        return 0

    cdef int _raise(self, int r) except -1:
        if r == ERR_NOMEM:
            raise MemoryError()
        if r == ERR_ZSTD:
            raise RuntimeError(f"zstd compression failed writing {self.path}: "
                               f"{zstd_error_name(self.zerr).decode()}")
        if r == ERR_PY:
            e, self.pyexc = self.pyexc, None
            raise e
        if r == ERR_ORDER:
            raise ValueError("TableBuilder.add: keys must be strictly increasing")
        if r == ERR_TTL_VALUE:
            raise ValueError("TableBuilder.add: a PUT_TTL value region needs its 8-byte expiry")
        raise SystemError(f"TableBuilder: error {r}")

    cdef int flush_out_c(self) noexcept nogil:
        """Write the pending output; -1 with errno set on failure."""
        cdef ssize_t w
        cdef size_t done = 0
        while done < self.out.len:
            w = write(self.fd, self.out.p + done, self.out.len - done)
            if w < 0:
                return -1
            done += w
        self.out.len = 0
        return 0

    cdef int flush_out(self) except -1:
        cdef int r
        with nogil:
            r = self.flush_out_c()
        if r < 0:
            raise OSError(errno, f"write failed: {self.path}: {os.strerror(errno)}")
        return 0

    cdef int _write_block_c(self, const uint8_t* p, size_t n, uint8_t btype,
                            uint64_t* off, uint64_t* size) noexcept nogil:
        """Queue a block as stored (p, n) and its trailer; its handle goes to off, size."""
        cdef uint8_t trailer[5]
        trailer[0] = btype
        store_u32(trailer + 1, crc32c(trailer, 1, crc32c(p, n, 0)))
        if buf_reserve_c(&self.out, n + 5) < 0:
            return ERR_NOMEM
        buf_append_c(&self.out, p, n)
        buf_append_c(&self.out, trailer, 5)
        off[0] = self.offset
        size[0] = n
        self.offset += n + 5
        return 0

    cdef int _write_block(self, bytes contents, uint64_t* off, uint64_t* size) except -1:
        """Queue an uncompressed meta block."""
        cdef int r = self._write_block_c(<const uint8_t*>PyBytes_AS_STRING(contents),
                                         PyBytes_GET_SIZE(contents), BLOCK_RAW, off, size)
        if r < 0:
            self._raise(r)
        return 0

    cdef int _compress_fallback(self, const uint8_t* p, size_t n, const uint8_t** zp,
                                size_t* zn) noexcept with gil:
        try:
            self.zobj = self.cctx.compress(PyMemoryView_FromMemory(<char*>p, n, PyBUF_READ))
        except BaseException as e:
            self.pyexc = e
            return ERR_PY
        zp[0] = <const uint8_t*>PyBytes_AS_STRING(self.zobj)
        zn[0] = PyBytes_GET_SIZE(self.zobj)
        return 0

    cdef int _emit_data_block(self, const uint8_t* p, size_t n, const uint8_t* last,
                              size_t last_len) noexcept nogil:
        """Compress (when that saves 1/8), queue, and index a data block under `last`."""
        cdef const uint8_t* zp = NULL
        cdef size_t zn = 0, cap
        cdef uint8_t btype = BLOCK_RAW
        cdef uint8_t h[20]
        cdef uint64_t off, size
        cdef int r
        if self.compress:
            if self.zc.cctx != NULL:
                cap = zstd_bound(n)
                self.zbuf.len = 0
                if buf_reserve_c(&self.zbuf, cap) < 0:
                    return ERR_NOMEM
                zn = zcomp_compress(&self.zc, self.zbuf.p, cap, p, n)
                if zstd_is_error(zn):
                    self.zerr = zn
                    return ERR_ZSTD
                zp = self.zbuf.p
            else:
                r = self._compress_fallback(p, n, &zp, &zn)
                if r < 0:
                    return r
            if zn < n - n // 8:
                p = zp
                n = zn
                btype = <uint8_t>self.block_type
        r = self._write_block_c(p, n, btype, &off, &size)
        if r < 0:
            return r
        cdef uint8_t* e = put_varint(h, off)
        e = put_varint(e, size)
        if bb_add(&self.index_block, last, last_len, h, e - h) < 0:
            return ERR_NOMEM
        return 0

    cdef int _hold_for_training(self) noexcept with gil:
        """Keep the finished data block back until enough are seen to train on."""
        try:
            self.pending.append((PyBytes_FromStringAndSize(<char*>self.data_block.buf.p, self.data_block.buf.len),
                                 PyBytes_FromStringAndSize(<char*>self.last_key.p, self.last_key.len)))
            self.pending_bytes += self.data_block.buf.len
            if self.pending_bytes >= self.dict_bytes * 100:
                self._train()
        except BaseException as e:
            self.pyexc = e
            return ERR_PY
        return 0

    cdef int _finish_data_block_c(self) noexcept nogil:
        cdef int r
        if self.data_block.entries == 0:
            return 0
        if bb_finish(&self.data_block) < 0:
            return ERR_NOMEM
        self.num_data_blocks += 1
        if self.training:
            r = self._hold_for_training()
        else:
            r = self._emit_data_block(self.data_block.buf.p, self.data_block.buf.len,
                                      self.last_key.p, self.last_key.len)
        bb_reset(&self.data_block)
        return r

    cdef int _train(self) except -1:
        """Train a zstd dictionary on the held-back blocks (RocksDB's max_dict_bytes
        idea: small blocks compress far better against a dictionary, and a trained
        dictionary's entropy tables are digested once per reader, not per block),
        then write those blocks. Too little data to train on: no dictionary."""
        cdef bytes contents, last
        cdef int r
        pending = self.pending
        self.pending = None
        self.training = False
        zd = None
        if len(pending) >= 16 and self.pending_bytes >= self.dict_bytes * 4:
            try:
                zd = zstandard.train_dictionary(self.dict_bytes, [c for c, _ in pending],
                                                k=64, d=8, level=self.level)
            except zstandard.ZstdError:
                zd = None
        if zd is not None:
            self.dict_data = zd.as_bytes()
            self._set_compressor(self.dict_data)
            self.block_type = BLOCK_ZSTD_DICT
        else:
            self._set_compressor(None)
        for contents, last in pending:
            r = self._emit_data_block(<const uint8_t*>PyBytes_AS_STRING(contents), PyBytes_GET_SIZE(contents),
                                      <const uint8_t*>PyBytes_AS_STRING(last), PyBytes_GET_SIZE(last))
            if r < 0:
                self._raise(r)
        return 0

    cdef int add_c(self, const uint8_t* k, size_t kn, const uint8_t* v, size_t vn) noexcept nogil:
        """Add an entry (kn >= 8). 0, or an ERR_* code (see _raise). No I/O."""
        cdef uint64_t tag = load_u64(k + kn - TAG_SIZE)
        cdef uint64_t seq = tag >> 8
        cdef int kind = tag & 0xFF
        cdef size_t ukn = kn - TAG_SIZE
        cdef uint64_t* grown
        cdef int64_t exp
        if self.num_entries and cmp_ikey(self.last_key.p, self.last_key.len, k, kn) >= 0:
            return ERR_ORDER
        if kind == KIND_PUT_TTL and vn < 8:
            return ERR_TTL_VALUE
        if self.num_entries == 0:
            if buf_set_c(&self.first_key, k, kn) < 0:
                return ERR_NOMEM
        # bloom: one hash per distinct user key
        if self.num_entries == 0 or cmp_bytes(self.last_ukey_hashed.p, self.last_ukey_hashed.len, k, ukn) != 0:
            if self.nhashes == self.cap_hashes:
                grown = <uint64_t*>realloc(self.hashes, (self.cap_hashes * 2 + 1024) * sizeof(uint64_t))
                if grown == NULL:
                    return ERR_NOMEM
                self.hashes = grown
                self.cap_hashes = self.cap_hashes * 2 + 1024
            self.hashes[self.nhashes] = bloom_hash(k, ukn)
            self.nhashes += 1
            if buf_set_c(&self.last_ukey_hashed, k, ukn) < 0:
                return ERR_NOMEM
        if bb_add(&self.data_block, k, kn, v, vn) < 0 or buf_set_c(&self.last_key, k, kn) < 0:
            return ERR_NOMEM
        self.num_entries += 1
        self.raw_key_bytes += kn
        self.raw_value_bytes += vn
        if seq < self.smallest_seq:
            self.smallest_seq = seq
        if seq > self.largest_seq:
            self.largest_seq = seq
        if kind == KIND_DELETE:
            self.num_deletions += 1
        elif kind == KIND_PUT_TTL:
            self.num_ttl += 1
            exp = <int64_t>load_u64(v)   # length checked above
            if self.min_expiry == 0 or exp < self.min_expiry:
                self.min_expiry = exp
        if bb_size(&self.data_block) >= self.block_size:
            return self._finish_data_block_c()
        return 0

    cdef int add(self, const uint8_t* k, size_t kn, const uint8_t* v, size_t vn) except -1:
        cdef int r = self.add_c(k, kn, v, vn)
        if r < 0:
            self._raise(r)
        if self.out.len >= OUT_FLUSH_BYTES:
            self.flush_out()
        return 0

    def py_add(self, ikey, value):
        cdef const uint8_t[::1] kv = ikey
        cdef const uint8_t[::1] vv = value
        if kv.shape[0] < TAG_SIZE:
            raise ValueError("internal key shorter than 8 bytes")
        self.add(&kv[0], kv.shape[0], &vv[0] if vv.shape[0] else NULL, vv.shape[0])

    cdef bytes _filter_block(self):
        """A blocked bloom filter: 64-byte lines; a key's k probes all fall in the
        line ((h & 0xFFFFFFFF) * nlines) >> 32; probe i tests bit (g_i >> 23) of it,
        g_0 = h >> 32, g_{i+1} = g_i * 0x9E3779B9 mod 2**32 (docs/format.md)."""
        cdef uint64_t nlines
        cdef int k
        cdef size_t i, j
        cdef uint32_t g, bit
        cdef uint8_t* line
        if self.bits_per_key <= 0 or self.nhashes == 0:
            return b""
        nlines = (self.nhashes * <uint64_t>self.bits_per_key + 511) // 512
        k = <int>(self.bits_per_key * 0.69 + 0.5)    # ln 2 * bits per key
        if k < 1:
            k = 1
        if k > 30:
            k = 30
        cdef bytes out = PyBytes_FromStringAndSize(NULL, nlines * 64 + 1)
        cdef uint8_t* bits = <uint8_t*>PyBytes_AS_STRING(out)
        memset_zero(bits, nlines * 64)
        for i in range(self.nhashes):
            line = bits + ((self.hashes[i] & 0xFFFFFFFFU) * nlines >> 32) * 64
            g = <uint32_t>(self.hashes[i] >> 32)
            for j in range(k):
                bit = g >> 23
                line[bit >> 3] |= (1 << (bit & 7))
                g *= 0x9E3779B9U
        bits[nlines * 64] = k
        return out

    cdef bytes _properties_block(self):
        cdef BlockBuilder b = BlockBuilder(1)
        cdef uint8_t tmp[10]
        cdef uint8_t* e
        zero_tag = b"\0" * 8
        smallest = PyBytes_FromStringAndSize(<char*>self.first_key.p, self.first_key.len - TAG_SIZE) \
            if self.num_entries else b""
        largest = PyBytes_FromStringAndSize(<char*>self.last_key.p, self.last_key.len - TAG_SIZE) \
            if self.num_entries else b""
        props = {
            "compression": b"zstd" if self.compress else b"none",
            "data_size": self.data_size,
            "largest_key": largest,
            "largest_seq": self.largest_seq,
            "min_expiry": <uint64_t>self.min_expiry,
            "num_data_blocks": self.num_data_blocks,
            "num_deletions": self.num_deletions,
            "num_entries": self.num_entries,
            "num_ttl_entries": self.num_ttl,
            "raw_key_bytes": self.raw_key_bytes,
            "raw_value_bytes": self.raw_value_bytes,
            "smallest_key": smallest,
            "smallest_seq": self.smallest_seq if self.num_entries else 0,
        }
        for name in sorted(props):
            value = props[name]
            if not isinstance(value, bytes):
                e = put_varint(tmp, <uint64_t>value)
                value = PyBytes_FromStringAndSize(<char*>tmp, e - tmp)
            b.py_add(name.encode() + zero_tag, value)
        return b.py_finish()

    def finish(self):
        """Write filter, index, properties and footer; fsync; close. Returns the
        table's metadata as a dict."""
        cdef uint64_t h[8]
        cdef uint8_t footer[FOOTER_SIZE]
        cdef int i
        if self.finished:
            raise ValueError("TableBuilder already finished")
        cdef int r = self._finish_data_block_c()
        if r < 0:
            self._raise(r)
        if self.training:
            self._train()
        self.data_size = self.offset
        h[6] = h[7] = 0
        if self.dict_data is not None:
            self._write_block(self.dict_data, &h[6], &h[7])
        self._write_block(self._filter_block(), &h[2], &h[3])
        if bb_finish(&self.index_block) < 0:
            raise MemoryError()
        self._write_block(PyBytes_FromStringAndSize(<char*>self.index_block.buf.p, self.index_block.buf.len),
                          &h[0], &h[1])
        self._write_block(self._properties_block(), &h[4], &h[5])
        for i in range(8):
            store_u64(footer + 8 * i, h[i])
        store_u32(footer + 64, FORMAT_VERSION)
        store_u32(footer + 68, crc32c(footer, 68, 0))
        memcpy(footer + 72, <const char*>b"LSMKVSST", 8)
        buf_append(&self.out, footer, FOOTER_SIZE)
        self.offset += FOOTER_SIZE
        cdef int stage = 0, err = 0
        with nogil:      # write the rest, fsync, close: one GIL release (see lsmkv.core.fileio)
            if self.flush_out_c() < 0:
                stage = 1
            elif fsync(self.fd) != 0:
                stage = 2
            err = errno
            if stage == 0:
                close(self.fd)
                self.fd = -1
        if stage:
            raise OSError(err, f"{'write' if stage == 1 else 'fsync'} failed: {self.path}: "
                               f"{os.strerror(err)}", self.path)
        self.finished = True
        return {
            "file_size": self.offset,
            "smallest": PyBytes_FromStringAndSize(<char*>self.first_key.p, self.first_key.len),
            "largest": PyBytes_FromStringAndSize(<char*>self.last_key.p, self.last_key.len),
            "smallest_seq": self.smallest_seq if self.num_entries else 0,
            "largest_seq": self.largest_seq,
            "num_entries": self.num_entries,
            "num_deletions": self.num_deletions,
            "min_expiry": self.min_expiry,
        }

    def abandon(self):
        """Close and delete the partial file."""
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
        if not self.finished:
            try:
                os.unlink(self.path)
            except FileNotFoundError:
                pass
        self.finished = True

    @property
    def file_size(self):
        return self.offset


cdef inline void memset_zero(uint8_t* p, size_t n) noexcept:
    memset(p, 0, n)

# ---------------------------------------------------------------- flush / compaction output

# What write_tables() knows about the entries seen so far.
ctypedef struct WriteState:
    Buf cur_ukey                 # user key of the current run of versions
    bint has_cur
    uint64_t last_seq_for_key    # sequence of the newer version of cur_ukey just seen
    uint64_t smallest_snapshot
    bint bottommost
    int64_t now
    Buf kbuf                     # an expired entry's key rewritten as a deletion
    uint64_t dropped_hidden, dropped_deletes, expired


cdef int classify(WriteState* s, const uint8_t* k, size_t kn, const uint8_t* v, size_t vn,
                  bint* first_of_key, const uint8_t** wk, size_t* wvn) noexcept nogil:
    """Decide an entry's fate: 1 write (wk, kn, v, wvn), 0 drop, -1 out of memory.
    first_of_key: the entry starts a new user key (an output may be cut before it)."""
    cdef size_t ukn = kn - TAG_SIZE
    cdef uint64_t tag = load_u64(k + ukn)
    cdef uint64_t seq = tag >> 8
    cdef int kind = tag & 0xFF
    first_of_key[0] = not s.has_cur or cmp_bytes(s.cur_ukey.p, s.cur_ukey.len, k, ukn) != 0
    if first_of_key[0]:
        if buf_set_c(&s.cur_ukey, k, ukn) < 0:
            return -1
        s.has_cur = True
        s.last_seq_for_key = <uint64_t>-1
    wk[0] = k
    wvn[0] = vn
    if s.last_seq_for_key <= s.smallest_snapshot:
        # a newer version of this key is visible to every snapshot
        s.dropped_hidden += 1
        s.last_seq_for_key = seq
        return 0
    s.last_seq_for_key = seq
    if kind == KIND_PUT_TTL and vn >= 8 and <int64_t>load_u64(v) <= s.now:
        # expired: it must keep hiding older versions, so it becomes a deletion
        s.expired += 1
        kind = KIND_DELETE
        if buf_set_c(&s.kbuf, k, kn) < 0:
            return -1
        store_u64(s.kbuf.p + ukn, make_tag(seq, KIND_DELETE))
        wk[0] = s.kbuf.p
        wvn[0] = 0
    if kind == KIND_DELETE and s.bottommost and seq <= s.smallest_snapshot:
        s.dropped_deletes += 1
        return 0
    return 1


def write_tables(InternalIterator it, new_table, uint64_t smallest_snapshot, bint bottommost,
                 int64_t now, uint64_t target_file_size, stats=None):
    """Stream `it` (positioned by this function) into new tables.

    new_table() -> TableBuilder for the next output file. Drops an entry when a
    newer entry of the same user key is visible to every snapshot; turns an
    expired TTL entry into a deletion; drops a deletion visible to every
    snapshot when `bottommost` (nothing older can lie below). Outputs are cut
    at target_file_size, only between user keys. Memory is bounded by one block
    per input plus one output block. Returns the finished tables' metadata
    (with "builder" set to the TableBuilder); `stats` (a dict) gets counts of
    dropped entries.

    A MemTableIterator (a flush) is walked without the GIL: only opening and
    finishing an output file take it, so a flush running beside a busy writer
    thread never makes the writer wait for the GIL.
    """
    cdef TableBuilder tb = None
    cdef WriteState s
    memset(&s, 0, sizeof(WriteState))
    s.last_seq_for_key = <uint64_t>-1
    s.smallest_snapshot = smallest_snapshot
    s.bottommost = bottommost
    s.now = now
    outputs = []
    try:
        if isinstance(it, MemTableIterator):
            tb = _write_memtable(&s, (<MemTableIterator>it).mem, new_table, target_file_size, outputs)
        else:
            tb = _write_iterator(&s, it, new_table, target_file_size, outputs)
        if tb is not None:
            outputs.append(_finish(tb))
            tb = None
    except BaseException:
        if tb is not None:
            tb.abandon()
        for meta in outputs:
            meta["builder"].abandon()
            try:
                os.unlink(meta["builder"].path)
            except OSError:
                pass
        raise
    finally:
        free(s.cur_ukey.p)
        free(s.kbuf.p)
    if stats is not None:
        stats["dropped_hidden"] = stats.get("dropped_hidden", 0) + s.dropped_hidden
        stats["dropped_deletes"] = stats.get("dropped_deletes", 0) + s.dropped_deletes
        stats["ttl_dropped"] = stats.get("ttl_dropped", 0) + s.expired
    return outputs


cdef TableBuilder _write_iterator(WriteState* s, InternalIterator it, new_table,
                                 uint64_t target_file_size, list outputs):
    """write_tables() over any iterator (a compaction's merge), with the GIL.
    Returns the output still open (the caller finishes or abandons it)."""
    cdef TableBuilder tb = None
    cdef bint first_of_key
    cdef const uint8_t* wk
    cdef size_t wvn
    cdef int act
    try:
        it.seek_to_first()
        while it.valid:
            act = classify(s, it.key, it.key_len, it.val, it.val_len, &first_of_key, &wk, &wvn)
            if act < 0:
                raise MemoryError()
            if first_of_key and tb is not None and tb.offset >= target_file_size:
                outputs.append(_finish(tb))
                tb = None
            if act:
                if tb is None:
                    tb = new_table()
                tb.add(wk, it.key_len, it.val, wvn)
            it.next()
    except BaseException:
        if tb is not None:
            tb.abandon()
        raise
    return tb


cdef TableBuilder _write_memtable(WriteState* s, MemTable mem, new_table,
                                 uint64_t target_file_size, list outputs):
    """write_tables() over a memtable, the GIL released except to open or finish
    an output. The memtable is immutable here and `mem` keeps its arena alive."""
    cdef TableBuilder tb = None
    cdef bint have_tb = False, first_of_key = False, cut = False
    cdef const uint8_t* wk = NULL
    cdef size_t wvn = 0
    cdef int act = 0, r = 0
    cdef Node* node = mem.head.next[0]
    try:
        while node != NULL:
            with nogil:
                while node != NULL:
                    act = classify(s, node_key(node), node.klen, node_val(node), node.vlen,
                                   &first_of_key, &wk, &wvn)
                    if act < 0:
                        r = ERR_NOMEM
                        break
                    cut = first_of_key and have_tb and tb.offset >= target_file_size
                    if cut or (act and not have_tb):
                        break                       # needs the GIL; the entry is classified, not yet written
                    if act:
                        r = tb.add_c(wk, node.klen, node_val(node), wvn)
                        if r < 0:
                            break
                        if tb.out.len >= OUT_FLUSH_BYTES and tb.flush_out_c() < 0:
                            r = ERR_IO
                            break
                    node = node.next[0]
            if r == ERR_IO:
                raise OSError(errno, f"write failed: {tb.path}: {os.strerror(errno)}")
            if r < 0:
                if have_tb:
                    tb._raise(r)
                raise MemoryError()
            if node == NULL:
                break
            if cut:
                outputs.append(_finish(tb))
                tb = None
                have_tb = False
            if act:
                if not have_tb:
                    tb = new_table()
                    have_tb = True
                tb.add(wk, node.klen, node_val(node), wvn)
            node = node.next[0]
    except BaseException:
        if tb is not None:
            tb.abandon()
        raise
    return tb


cdef dict _finish(TableBuilder tb):
    meta = tb.finish()
    meta["builder"] = tb
    meta["path"] = tb.path
    return meta
