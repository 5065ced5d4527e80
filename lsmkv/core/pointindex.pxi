# pointindex.pxi: a memtable's point index, the hash table itself (PointIndex,
# memtable.pxd): open addressing over 8-byte slots, each a node's address with a
# 16-bit fingerprint of its user key's hash in the top bits (0: empty), at most 3/4
# full, doubled when an insert would pass that. It maps a user key to one node;
# which node (the key's newest) and when the index is built and kept is the
# MemTable's (invariant 6 of memtable.pyx; MemTable's docstring has the policy).
# A part of lsmkv/core/memtable.pyx (included there; not compiled on its own): its
# names are the memtable module's, its thread safety that module's docstring's
# (one writer, readers under the GIL).


cdef uint64_t* _map_slots(size_t n) noexcept:
    """n zeroed 8-byte slots in an anonymous mapping, or NULL if the mapping fails.
    On 4 KiB pages, not huge ones as the arena's: a build's first steps touch
    slots all over the table, and faulting in its huge pages at once made the
    lookup that started the build of a 434k-entry memtable take 22 ms (10 ms at
    200k) on this VM; on small pages the faults spread over the steps."""
    cdef void* c = mmap(NULL, n * 8, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)
    if c == MAP_FAILED:
        return NULL
    return <uint64_t*>c


cdef bint pidx_open(PointIndex* ix, size_t entries) noexcept:
    """Map an empty index sized for `entries` keys (at least INDEX_FIRST slots);
    False without memory for it."""
    cdef size_t cap = INDEX_FIRST
    while cap * 3 < entries * 4 + 4:
        cap *= 2
    ix.slots = _map_slots(cap)
    if ix.slots == NULL:
        return False
    ix.cap = cap
    ix.keys = 0
    return True


cdef void pidx_close(PointIndex* ix) noexcept:
    """Unmap the slots (none: nothing to do); the index is then empty, with no slots."""
    if ix.slots != NULL:
        munmap(ix.slots, ix.cap * 8)
    ix.slots = NULL
    ix.cap = ix.keys = 0


cdef bint _pidx_grow(PointIndex* ix) noexcept:
    """Double the slots and place every one again; False (the index unchanged)
    without memory for it."""
    cdef size_t cap = ix.cap * 2 if ix.cap else INDEX_FIRST
    cdef uint64_t* t = _map_slots(cap)
    cdef size_t i, j, mask = cap - 1
    cdef uint64_t s
    cdef Node* y
    if t == NULL:
        return False
    for i in range(ix.cap):
        s = ix.slots[i]
        if s:
            y = <Node*>(s & PTR_MASK)
            j = bloom_hash(node_key(y), y.klen - TAG_SIZE) & mask
            while t[j]:
                j = (j + 1) & mask
            t[j] = s
    if ix.slots != NULL:
        munmap(ix.slots, ix.cap * 8)
    ix.slots = t
    ix.cap = cap
    return True


cdef bint pidx_put(PointIndex* ix, Node* x, uint64_t h) noexcept:
    """Make x (h: its user key's bloom_hash) its user key's slot unless the slot
    holds a newer node of the key. False when the index cannot hold x (a node
    above 2^48, or no memory to grow): the caller then drops the index."""
    cdef size_t kn = x.klen - TAG_SIZE
    cdef uint64_t fp, s
    cdef size_t i, mask
    cdef Node* y
    if (<uint64_t>x) >> 48:
        return False
    if (ix.keys + 1) * 4 > ix.cap * 3 and not _pidx_grow(ix):
        return False
    fp = h & FP_MASK
    mask = ix.cap - 1
    i = h & mask
    while True:
        s = ix.slots[i]
        if s == 0:
            ix.slots[i] = <uint64_t>x | fp
            ix.keys += 1
            return True
        if (s & FP_MASK) == fp:
            y = <Node*>(s & PTR_MASK)
            if y.klen == x.klen and (kn == 0 or memcmp(node_key(y), node_key(x), kn) == 0):
                if _tag_of(x) > _tag_of(y):
                    ix.slots[i] = <uint64_t>x | fp
                return True
        i = (i + 1) & mask


cdef inline void pidx_prefetch(const PointIndex* ix, uint64_t h) noexcept:
    """Start loading the slot a probe for hash h looks at first."""
    prefetch(&ix.slots[h & (ix.cap - 1)])


cdef inline Node* pidx_probe(const PointIndex* ix, const uint8_t* k, size_t kn, uint64_t h) noexcept:
    """The node user key k (h: its bloom_hash) maps to, or NULL."""
    cdef uint64_t fp = h & FP_MASK, s
    cdef size_t mask = ix.cap - 1
    cdef size_t i = h & mask
    cdef Node* y
    while True:
        s = ix.slots[i]
        if s == 0:
            return NULL
        if (s & FP_MASK) == fp:
            y = <Node*>(s & PTR_MASK)
            if y.klen == kn + TAG_SIZE and (kn == 0 or memcmp(node_key(y), k, kn) == 0):
                return y
        i = (i + 1) & mask
