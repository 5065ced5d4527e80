from libc.stdint cimport uint8_t, uint32_t, uint64_t, int64_t
from lsmkv.core.iterator cimport InternalIterator

cdef enum:
    MAX_HEIGHT = 12

ctypedef struct Node:
    uint32_t klen          # internal key length (user key + 8-byte tag)
    uint32_t vlen          # value region length
    uint32_t height
    uint32_t _pad
    Node* back             # the node before it at level 0 (the head for the first node)
    Node* next[1]          # `height` pointers; key then value bytes follow them

ctypedef struct PointIndex:   # a memtable's point index (memtable.pyx's pointindex.pxi)
    uint64_t* slots         # node address | fingerprint << 48 each, 0 empty (NULL: no index)
    size_t cap              # slots (a power of two; 0: none)
    size_t keys             # user keys in it

cdef inline const uint8_t* node_key(Node* x) noexcept nogil:
    return <const uint8_t*>&x.next[x.height]

cdef inline const uint8_t* node_val(Node* x) noexcept nogil:
    return <const uint8_t*>&x.next[x.height] + x.klen

cdef class Arena:
    cdef char** chunks
    cdef size_t* sizes          # each chunk's mapped length
    cdef size_t nchunks, cap_chunks
    cdef char* ptr
    cdef size_t remaining
    cdef bint cur_huge          # the current chunk asked for transparent huge pages
    cdef readonly size_t chunk_size
    cdef readonly size_t allocated   # bytes mapped for chunks (+ the chunk tables)
    cdef readonly size_t used        # bytes handed out
    cdef char* allocate(self, size_t n) except NULL
    cdef char* _new_chunk(self, size_t n, bint huge=*) except NULL

cdef class MemTable:
    cdef Arena arena
    cdef Node* head
    cdef int max_height
    cdef uint64_t rnd
    cdef readonly size_t entries
    cdef readonly uint64_t first_seq, last_seq
    cdef readonly int64_t min_expiry
    cdef readonly object log_number
    cdef public list range_dels    # (start, end, seq) range tombstones, or None (lsmkv.core.rangedel)
    cdef PointIndex index          # user key -> its newest node (invariant 6)
    cdef bint index_off            # the index is not kept (not built yet, or index_never)
    cdef bint index_never          # nor will it be (a node above 2^48, or no memory)
    cdef size_t lookups            # point lookups while index_off (to decide to build it)
    cdef size_t overwrites         # adds of a key already here while index_off (the same)
    cdef Node* build_at            # while the index is built: the last node it indexed (head: none)
    cdef void _index_start(self) noexcept
    cdef void _index_step(self) noexcept
    cdef bint _indexes(self, Node* x) noexcept
    cdef bint _index_wanted(self, size_t n) noexcept
    cdef void _index_drop(self) noexcept
    cdef void _index_put(self, Node* x, uint64_t h) noexcept
    cdef void _link(self, Node* x, Node** prev, int h) noexcept
    cdef bint _preds_before(self, Node* y, Node** prev, int h) noexcept
    cdef void _count_overwrite(self) noexcept
    cdef Node* _versions_from(self, Node* y, const uint8_t* ikey, size_t n) noexcept
    cdef Node* index_find(self, const uint8_t* k, size_t kn) noexcept
    cdef Node* point_seek(self, const uint8_t* ikey, size_t n) noexcept
    cdef void point_seek_many(self, const uint8_t** ikeys, const size_t* ns, Py_ssize_t count,
                              Node** out) noexcept
    cdef int add(self, uint64_t seq, int kind, const uint8_t* k, size_t kn,
                 const uint8_t* v, size_t vn, int64_t expiry) except -1
    cdef Node* seek_ge(self, const uint8_t* ikey, size_t n, Node** prev) noexcept
    cdef void seek_ge_many(self, const uint8_t** ikeys, const size_t* ns, Py_ssize_t count,
                           Node** out, Node** prevs=*) noexcept
    cdef int add_many(self, uint64_t seq, int kind, const uint8_t** ks, const size_t* kns,
                      const uint8_t** vs, const size_t* vns, Py_ssize_t count) except -1
    cdef int lookup(self, const uint8_t* k, size_t kn, uint64_t seq,
                    const uint8_t** vp, size_t* vn, int* kind) noexcept
    cdef Node* find_last_lt(self, const uint8_t* ikey, size_t n) noexcept
    cdef Node* find_last(self) noexcept
    cdef int _random_height(self) noexcept
    cdef int _add_range_del(self, uint64_t seq, const uint8_t* k, size_t kn,
                            const uint8_t* v, size_t vn) except -1

cdef class MemTableIterator(InternalIterator):
    cdef MemTable mem
    cdef Node* node
    cdef void _load(self) noexcept
