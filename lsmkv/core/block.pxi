# block.pxi: iterating over one block's entries (BlockIter, block_entries): the
# entry and restart-array parsing, every bound checked against the block.
# A part of lsmkv/core/table.pyx (included there; not compiled on its own): its
# names are the table module's, its thread safety and invariants that module's docstring's.

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
