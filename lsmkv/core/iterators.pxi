# iterators.pxi: TableIterator (index block -> data blocks) and LevelIterator (a
# sorted run of non-overlapping tables, one open at a time).
# A part of lsmkv/core/table.pyx (included there; not compiled on its own): its
# names are the table module's, its thread safety and invariants that module's docstring's.
#
# Seeks come in two halves (InternalIterator.seek_start / seek_finish): seek_start
# finds the data block (index search and cache pin) and prefetches it, seek_finish
# searches it. A MergingIterator starts every child before it finishes any, so the
# cache misses of the children's blocks overlap instead of following one another.
# A seek whose target lies inside the block the iterator stands on (first key <=
# target <= the block's index key, the block's last key) searches that block
# only: no index search, no cache lookup (RocksDB's IndexBlockIter reseek check).

cdef extern from *:
    """
    #if defined(__GNUC__) || defined(__clang__)
    #  define lsmkv_prefetch_l2(p) __builtin_prefetch((const void*)(p), 0, 1)
    #else
    #  define lsmkv_prefetch_l2(p) ((void)(p))
    #endif
    """
    void prefetch_l2 "lsmkv_prefetch_l2" (const void* p) noexcept nogil

cdef enum:
    SEEK_PREFETCH_MAX = 8192    # a data block up to this size is prefetched whole when a seek loads it

cdef class TableIterator(InternalIterator):
    """Two-level iterator: the index block picks data blocks, read through the cache."""

    def __cinit__(self, TableReader table=None):
        self.table = table
        self.index = None                   # made at the first positioning (a lazy seek may never need it)
        self.data = None
        self.have_block = False

    def __init__(self, TableReader table=None):
        # Only a Python-level call runs __init__ (new_table_iterator's __new__ does not), so
        # the check needs no shared flag: a module flag set around __new__ was not safe, as a
        # garbage collection inside the allocation can run finalizers that switch threads.
        if table is None:
            raise TypeError("TableIterator(table): table is required")

    cdef int _open_index(self) except -1:
        """Load the index block; a cached index stays pinned while the iterator lives."""
        cdef BlockIter index = BlockIter.__new__(BlockIter)
        self.table.load_index(index)
        self.data = BlockIter.__new__(BlockIter)
        self.index = index
        return 0

    cdef int _load_block(self) except -1:
        cdef uint64_t off, size
        if not self.index.valid:
            self.have_block = False
            return 0
        if decode_handle(self.index.val, self.index.val_len, &off, &size) < 0:
            self.have_block = False
            raise CorruptionError(self.table.path, self.table.index_offset, "bad block handle in index")
        if self.have_block and self.data.base != NULL and self.data.block_offset == off:
            return 0             # a re-seek into the block it stands on (a cursor's next seek)
        self.have_block = False
        self.table.load_into(self.data, off, size)
        self.have_block = True
        return 0

    cdef void _prefetch_block(self) noexcept:
        """Start reading the whole data block into the cache hierarchy (a seek
        reads its restart keys and one restart interval: several lines that would
        otherwise miss one after another)."""
        cdef size_t i, n = self.data.size
        if n <= SEEK_PREFETCH_MAX:
            for i in range(0, n, 64):
                prefetch_l2(self.data.base + i)

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

    cdef bint _in_block(self, const uint8_t* target, size_t n) except -1:
        """Does the block it stands on hold target's seek position (its first key
        <= target <= its index key, which is the block's last key)? Then the index
        search would pick this block again."""
        cdef const uint8_t* fk
        cdef size_t fn
        if not self.have_block or not self.index.valid or self.data.nrestarts == 0:
            return False
        if cmp_ikey(target, n, self.index.key, self.index.key_len) > 0:
            return False
        self.data._restart_key(0, &fk, &fn)
        return cmp_ikey(fk, fn, target, n) <= 0

    cdef int seek_start(self, const uint8_t* target, size_t n) except -1:
        self.valid = False      # until seek_finish (a sibling's seek may raise in between)
        if self._in_block(target, n):
            return 0
        if self.index is None:
            self._open_index()
        self.index.seek(target, n)
        self._load_block()
        if self.have_block:
            self._prefetch_block()
        return 0

    cdef int seek_finish(self, const uint8_t* target, size_t n) except -1:
        if self.have_block:
            self.data.seek(target, n)
        return self._skip_forward()

    cdef int seek(self, const uint8_t* target, size_t n) except -1:
        self.seek_start(target, n)
        return self.seek_finish(target, n)

    cdef int seek_to_first(self) except -1:
        if self.index is None:
            self._open_index()
        self.index.seek_to_first()
        self._load_block()
        if self.have_block:
            self.data.seek_to_first()
        return self._skip_forward()

    cdef int seek_to_last(self) except -1:
        if self.index is None:
            self._open_index()
        self.index.seek_to_last()
        self._load_block()
        if self.have_block:
            self.data.seek_to_last()
        return self._skip_backward()

    cdef int next(self) except -1:
        self.data.next()
        return self._skip_forward()

    cdef int may_hold(self, const uint8_t* ukey, size_t ukn, uint64_t h) except -1:
        """0 if the table's key range or bloom filter rules ukey out."""
        if not self.table.in_range(ukey, ukn):
            return 0
        return self.table.may_contain(h)

    cdef int prev(self) except -1:
        self.data.prev()
        return self._skip_backward()


cdef TableIterator new_table_iterator(TableReader table):
    """TableIterator(table), built in C (no Python-level call): one per table per
    items() or iterator() call."""
    cdef TableIterator it = TableIterator.__new__(TableIterator)
    it.table = table
    return it

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


cdef int find_table_ukey(list largest, const uint8_t* ukey, size_t n) except -1:
    """Index of the first table (of a sorted, non-overlapping run) whose largest
    user key is >= ukey; len(largest) if none."""
    cdef int lo = 0, hi = len(largest), mid
    cdef bytes k
    while lo < hi:
        mid = (lo + hi) // 2
        k = <bytes>largest[mid]
        if cmp_bytes(<const uint8_t*>PyBytes_AS_STRING(k), PyBytes_GET_SIZE(k) - TAG_SIZE, ukey, n) < 0:
            lo = mid + 1
        else:
            hi = mid
    return lo


cdef class LevelIterator(InternalIterator):
    """Concatenation of a sorted run of non-overlapping tables; opens one at a time."""

    def __cinit__(self, tuple tables, list largest):
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
            self.cur = new_table_iterator(<TableReader>self.tables[i])
        return 0

    cdef void _copy(self) noexcept:
        self.valid = self.cur is not None and self.cur.valid
        if self.valid:
            self.key = self.cur.key
            self.key_len = self.cur.key_len
            self.val = self.cur.val
            self.val_len = self.cur.val_len

    cdef int seek_start(self, const uint8_t* target, size_t n) except -1:
        self.valid = False
        self._open(find_table(self.largest, target, n))
        if self.cur is not None:
            self.cur.seek_start(target, n)
        return 0

    cdef int seek_finish(self, const uint8_t* target, size_t n) except -1:
        if self.cur is not None:
            self.cur.seek_finish(target, n)
            if not self.cur.valid:
                return self.next_table()
        self._copy()
        return 0

    cdef int seek(self, const uint8_t* target, size_t n) except -1:
        self.seek_start(target, n)
        return self.seek_finish(target, n)

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

    cdef int may_hold(self, const uint8_t* ukey, size_t ukn, uint64_t h) except -1:
        """0 if no table of the run may hold ukey (the one whose range could
        holds it is ruled out by its range or bloom filter)."""
        cdef int i = find_table_ukey(self.largest, ukey, ukn)
        cdef TableReader t
        if i >= len(self.tables):
            return 0
        t = <TableReader>self.tables[i]
        if not t.in_range(ukey, ukn):
            return 0
        return t.may_contain(h)

    cdef int prev(self) except -1:
        self.cur.prev()
        return self.prev_table()
