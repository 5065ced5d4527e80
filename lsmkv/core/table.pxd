cimport cython
from libc.stdint cimport uint8_t, uint32_t, uint64_t, int64_t
from lsmkv.core.iterator cimport InternalIterator
from lsmkv.core.cache cimport SlabCache, Pin, MetaCounts

# One key of a batched point lookup (readmany.pxi, db.multi_get): its
# internal key (user key + the read's tag) in the caller's memory, its index in
# the caller's results, its bloom hash.
ctypedef struct KeyRef:
    const uint8_t* p
    size_t n
    Py_ssize_t i
    uint64_t h
    Py_ssize_t src      # the caller's: the next source to ask (multi_get)
    void* table         # the caller's: the table it asks next (a TableReader the caller holds)
    int asked           # the caller's: level-0 tables whose filter it asked (multi_get's ReadCharge)

# A block read of a batch (lsmkv/core/fetch.pxi): filled in by the caller, done
# without the GIL by any thread.
ctypedef struct FetchJob:
    int fd
    const uint8_t* src      # the stored block in the table's mapping, or NULL: read into buf
    char* buf               # n bytes for the read when src is NULL
    uint64_t off
    size_t n                # bytes stored, trailer included
    const void* ddict       # the table's digested dictionary, or NULL
    bint has_dict           # the table has a dictionary (BLOCK_ZSTD_DICT blocks decode)
    bint ok                 # out holds the block's contents
    uint8_t* out            # the contents (ok): dst, or malloc'd and freed by the caller
    size_t out_len
    uint8_t* dst            # where to decompress contents of up to dst_cap bytes (a slab
    size_t dst_cap          # slot the caller reserved, resv), or NULL: into a malloc'd out
    Pin resv

# One table's part of a batched point lookup (lsmkv/core/readmany.pxi).
ctypedef struct MgTable:
    void* table             # the TableReader (the caller holds it)
    const KeyRef* keys      # its keys, by ascending key
    Py_ssize_t n
    Py_ssize_t m            # the first m keys have a block (the others are past the table's end)
    Py_ssize_t nb           # distinct blocks
    Py_ssize_t nmiss        # blocks not in the cache
    uint64_t* offs          # [0, m): each key's block handle; [n, n + nb): each block's
    uint64_t* sizes
    Py_ssize_t* blk         # per key: its block
    Pin* pins               # per block: its pin (data NULL: none, or handed to an iterator)
    FetchJob** job          # per block: its job in the batch's fetch, or NULL

# A block iterator's current key. p points at inl (no allocation) until a key
# longer than inl arrives; then at a malloc'd buffer, freed with the iterator.
ctypedef struct KeyBuf:
    uint8_t* p
    size_t len
    size_t cap
    uint8_t inl[64]

@cython.final      # no subclass: its cdef methods are called directly, not through a vtable
cdef class BlockIter(InternalIterator):
    cdef bytes data             # the block, when it is not a pinned cache slot
    cdef SlabCache pcache       # the cache whose slot pslot this iterator pins, or None
    cdef uint64_t pslot
    cdef const uint8_t* base
    cdef size_t size
    cdef size_t restarts        # offset of the restart array
    cdef uint32_t nrestarts
    cdef size_t cur             # offset of the current entry
    cdef size_t nxt             # offset of the entry after it
    cdef KeyBuf kb
    cdef object path
    cdef uint64_t block_offset
    cdef int reset(self, bytes data, object path, uint64_t block_offset) except -1
    cdef int reset_pinned(self, SlabCache cache, Pin* p, object path, uint64_t block_offset) except -1
    cdef int _reset_mem(self, const uint8_t* base, size_t size, object path, uint64_t block_offset) except -1
    cdef void release_pin(self) noexcept
    cdef uint64_t take_pin(self) noexcept
    cdef int _decode_at(self, size_t off) except -1
    cdef int _corrupt(self, str what) except -1
    cdef int _seek_restart(self, uint32_t i) except -1
    cdef int _restart_key(self, uint32_t i, const uint8_t** key, size_t* n) except -1

@cython.final
cdef class TableReader:
    cdef readonly uint64_t number
    cdef readonly uint64_t file_size
    cdef readonly object path
    cdef readonly dict properties
    cdef int fd
    cdef const uint8_t* map         # the whole file mapped read-only, or NULL (pread)
    cdef size_t map_len
    cdef uint8_t* touched            # one bit per 64 KiB window of the mapping read so far
    cdef readonly uint64_t touched_bytes
    cdef bint use_mmap
    cdef bytes index_data            # the index block when resident, else None (in the slab cache)
    cdef readonly uint64_t index_offset
    cdef readonly uint64_t index_size  # stored size of the index block (its handle)
    cdef size_t index_len            # its contents' length, checked at open and on every load
    cdef bytes filter_data           # the filter block when resident, else None
    cdef uint64_t filter_offset, filter_size
    cdef size_t filter_len
    cdef readonly bint index_cached  # the index block lives in the slab cache (evictable)
    cdef readonly bint filter_cached
    cdef MetaCounts* mc              # index/filter hit and miss counters (the cache's, or a dummy)
    cdef readonly object zdict       # python-zstandard's form of the dictionary (fallback reads)
    cdef object ztls
    cdef void* ddict                 # libzstd's digested dictionary, or NULL
    cdef const uint8_t* fbits        # filter bits when resident, else NULL
    cdef uint64_t fnlines
    cdef int fk
    cdef object cache
    cdef SlabCache slab              # cache, when it is a SlabCache (pinned, copy-free reads)
    cdef size_t block_hint           # the last data block a batch fetched: its contents' length
    cdef int hint_misses             # of the hint's recent guesses, misses less hits (0..HINT_MISSES_MAX)
    cdef size_t charged              # index + filter bytes reserved in the cache
    cdef bytes smallest_ukey, largest_ukey
    cdef readonly list range_dels    # the range-del block's (start, end, seq), or None (lsmkv.core.rangedel)
    cdef bint in_range(self, const uint8_t* k, size_t kn) noexcept
    cdef int may_contain(self, uint64_t h) except -1
    cdef void prefetch_filter(self, uint64_t h) noexcept
    cdef int _may_contain_cached(self, uint64_t h) except -1
    cdef object _meta_block(self, uint64_t off, uint64_t size, size_t expect, bint is_filter, Pin* p)
    cdef int load_index(self, BlockIter it) except -1
    cdef int seek_in_block(self, BlockIter it, const uint8_t* ikey, size_t ikn) except -1
    cdef int _warm(self, uint64_t off, bytes data) except -1
    cdef int _load_index_cached(self, BlockIter it) except -1
    cdef bytes read_block(self, uint64_t off, uint64_t size)
    cdef bytes block(self, uint64_t off, uint64_t size)
    cdef void _touch(self, uint64_t off, uint64_t n) noexcept
    cdef int _check_handle(self, uint64_t off, uint64_t size) except -1
    cdef int load_into(self, BlockIter it, uint64_t off, uint64_t size, bint release_gil=*) except -1
    cdef object _fill_slab(self, uint64_t key, uint64_t off, uint64_t size, Pin* p, bint release_gil=*)
    cdef object get(self, const uint8_t* ikey, size_t ikn, int64_t now, int64_t* expiry=*,
                    bint view=*, uint64_t* seq_out=*, BlockIter use=*)

cdef class TableIterator(InternalIterator):
    cdef TableReader table
    cdef BlockIter index
    cdef BlockIter data
    cdef bint have_block
    cdef int _open_index(self) except -1
    cdef int _load_block(self) except -1
    cdef void _prefetch_block(self) noexcept
    cdef bint _in_block(self, const uint8_t* target, size_t n) except -1
    cdef int _skip_forward(self) except -1
    cdef int _skip_backward(self) except -1
    cdef void _copy(self) noexcept
    cdef int may_hold(self, const uint8_t* ukey, size_t ukn, uint64_t h) except -1

cdef class LevelIterator(InternalIterator):
    cdef tuple tables           # TableReaders sorted by key range, non-overlapping
    cdef list largest           # their largest internal keys (bytes)
    cdef int i
    cdef TableIterator cur
    cdef int _open(self, int i) except -1
    cdef int next_table(self) except -1
    cdef int prev_table(self) except -1
    cdef void _copy(self) noexcept
    cdef int may_hold(self, const uint8_t* ukey, size_t ukn, uint64_t h) except -1

cdef int find_table(list largest, const uint8_t* target, size_t n) except -1
cdef TableIterator new_table_iterator(TableReader table)

cdef int mg_prepare(TableReader t, MgTable* st, BlockIter ix) except -1
cdef Py_ssize_t mg_jobs(TableReader t, MgTable* st, FetchJob* jobs) except -1
cdef int mg_fetch(FetchJob* jobs, Py_ssize_t n) except -1
cdef int mg_finish(TableReader t, MgTable* st, list results, int64_t now, BlockIter it) except -1
cdef void mg_release(TableReader t, MgTable* st) noexcept
