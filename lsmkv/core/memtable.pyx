# cython: language_level=3
"""Arena-backed skiplist memtable.

Thread safety: one writer at a time (the DB write mutex serializes add()); any
number of readers. Every method runs while holding the GIL without releasing
it, so a reader observes an insert either entirely or not at all. A node's
next[] pointers are set before the node is linked in, so even a reader without
the GIL would see a consistent list.

Invariants:
  1. All nodes, keys and values live in arena chunks; nothing is freed until the
     MemTable (and so its Arena) is deallocated. Node pointers held by iterators
     stay valid while the iterator holds a reference to the MemTable.
  2. The list is ordered by internal key: user key ascending (bytewise), then
     tag = (sequence << 8 | kind) descending. Tags are unique per table.
  3. arena.allocated is the exact number of bytes mapped (chunks) and malloc'd (the
     chunk tables) for this memtable's data; arena.used <= arena.allocated.
  4. An entry's value region is the stored value, prefixed by the 8-byte LE
     expiry (ms since the clock's epoch) when its kind is KIND_PUT_TTL.
  5. Range tombstones (KIND_RANGE_DELETE) are not in the skiplist: add() keeps
     them in range_dels, a list of (start, end, seq) (None until the first), so
     a read of a memtable without them pays one pointer test. len() counts them,
     `entries` does not; arena.used counts their bytes (so write_buffer_size does).
  6. Unless index_off, the point index maps every user key in the list to its
     first node (its newest entry) and holds nothing else; index.keys counts them.
     While it is built (build_at != NULL, index_off) it holds exactly that for the
     nodes up to build_at: each build step (taken by lookups and adds, under the
     GIL) indexes the next nodes, and an add indexes its node when it lands behind
     build_at. Once complete it is kept by add()/add_many(), after the node is
     linked, under the same rule as the list (one writer, readers hold the GIL).
     Once index_never it is off for good.
"""
from libc.stdlib cimport malloc, free, realloc
from libc.string cimport memcpy, memcmp
from libc.stdint cimport uint8_t, uint32_t, uint64_t, int64_t
from cpython.bytes cimport PyBytes_FromStringAndSize
from lsmkv.core.coding cimport (cmp_ikey, cmp_bytes, make_tag, store_u64, load_u64,
                            KIND_DELETE, KIND_PUT, KIND_PUT_TTL, KIND_MAX, TAG_SIZE,
                            KIND_RANGE_DELETE)

DEF ALIGN = 8
DEF SEEK_LANES = 8      # searches seek_ge_many interleaves
DEF MAX_ADD_MANY = 32   # entries add_many inserts with one interleaved search
DEF HUGE_CHUNK = 2 << 20        # one transparent huge page (x86-64 and arm64 with 4 KiB pages)
DEF HUGE_AFTER = 1 << 20        # bytes an arena maps in small chunks before its chunks turn huge
DEF INDEX_FIRST = 512           # slots of a memtable's first point index (4 KiB)
DEF INDEX_WALK = 8              # versions of a key point_seek steps over before it asks the skiplist
DEF INDEX_GROUP = 16            # keys point_seek_many hashes and prefetches together
DEF INDEX_AFTER = 8             # a memtable's index is built once it had 1/INDEX_AFTER of its
                                # entries in point lookups (at least INDEX_FIRST / 4 of them),
DEF INDEX_AFTER_OVERWRITES = 2  # or 1/2 of them in adds of a key it already held
DEF INDEX_STEP = 128            # nodes a build step indexes (each lookup and add takes one)
DEF BACK_WALK = 12              # back pointers an overwrite follows for its upper levels' predecessors
cdef extern from *:
    """
    #define LSMKV_PTR_MASK 0x0000FFFFFFFFFFFFULL
    #define LSMKV_FP_MASK 0xFFFF000000000000ULL
    """
    const uint64_t PTR_MASK "LSMKV_PTR_MASK"    # a slot's node address (user space is below 2^48)
    const uint64_t FP_MASK "LSMKV_FP_MASK"      # a slot's fingerprint: the top 16 bits of the key's hash

from lsmkv.core.includes.prefetch cimport prefetch
from lsmkv.core.bloom cimport bloom_hash
from lsmkv.core.includes.mman cimport (mmap, munmap, madvise, PROT_READ, PROT_WRITE, MAP_PRIVATE,
                                       MAP_ANONYMOUS, MAP_FAILED, MADV_HUGEPAGE)


include "arena.pxi"


cdef inline uint64_t _tag_of(Node* x) noexcept nogil:
    return load_u64(node_key(x) + x.klen - TAG_SIZE)


include "pointindex.pxi"


cdef class MemTable:
    """A sorted, append-only table of internal entries.

    Point index: a get looks a key up in an open-addressing hash table (user key ->
    its newest node; invariant 6) instead of searching the skiplist, whose search
    is a chain of cache misses (at 100k keys 30% of the server's CPU under
    GET -P 16). A slot is 8 bytes, the node's address with a 16-bit fingerprint of
    the key's hash in the top bits (user-space addresses are below 2^48; a node
    above turns the index off), at most 3/4 full: 11-21 bytes per distinct key,
    in memory_usage and resident_bytes, not in arena_used (write_buffer_size
    counts the data). A get at an older sequence steps from the newest node over
    at most INDEX_WALK newer versions, then searches the skiplist.

    The index is built only once the memtable is read (or overwritten): when its
    point lookups reach 1/INDEX_AFTER of its entries, a build starts, walking the
    list INDEX_STEP nodes per lookup or add (_index_step) until it is complete;
    from then on every add keeps it. Kept from the first put, it cost a
    write-only load a fifth of its puts/s (1M random puts into 64 MiB memtables:
    its slots, one random cache line per put, evict the skiplist's), and a
    write-only memtable (a fill, a bulk load, an immutable memtable being
    flushed) has no use for it. Once it is complete, an overwrite is linked
    right before its key's newest node, found in the index, with no search:
    its level-0 predecessor is that node's back pointer, and its predecessors
    in upper levels are found by walking back pointers (_preds_before; all of
    height 1, 3 adds in 4, and most of height 2; taller ones search).

    Complexity: add and seek are O(log n) expected; a point lookup O(1) expected.
    Example:
        >>> m = MemTable(); m.put(1, b"k", b"v"); m.get(b"k", 1)
        b'v'
    """

    def __cinit__(self, size_t chunk_size=1 << 20, log_number=None):
        self.arena = Arena(chunk_size)
        cdef size_t sz = sizeof(Node) + (MAX_HEIGHT - 1) * sizeof(Node*)
        self.head = <Node*>self.arena.allocate(sz)
        cdef int i
        self.head.klen = 0
        self.head.vlen = 0
        self.head.height = MAX_HEIGHT
        self.head.back = NULL
        for i in range(MAX_HEIGHT):
            self.head.next[i] = NULL
        self.max_height = 1
        self.rnd = 0x2545F4914F6CDD1DULL
        self.entries = 0
        self.first_seq = 0
        self.last_seq = 0
        self.min_expiry = 0
        self.log_number = log_number
        self.range_dels = None
        self.index_off = True

    cdef int _add_range_del(self, uint64_t seq, const uint8_t* k, size_t kn,
                            const uint8_t* v, size_t vn) except -1:
        """Record the range tombstone [k, v) at seq (invariant 5). Its size is taken
        from the arena too (unused), so tombstones count toward write_buffer_size
        and a memtable of many of them is flushed like one of many entries."""
        self.arena.allocate(kn + vn + 64)
        t = (PyBytes_FromStringAndSize(<char*>k, kn), PyBytes_FromStringAndSize(<char*>v, vn), seq)
        if self.range_dels is None:
            self.range_dels = [t]
        else:
            self.range_dels.append(t)
        if (self.entries == 0 and len(self.range_dels) == 1) or seq < self.first_seq:
            self.first_seq = seq
        if seq > self.last_seq:
            self.last_seq = seq
        return 0

    def __dealloc__(self):
        pidx_close(&self.index)

    # ----- point index (invariant 6) -----
    cdef void _index_drop(self) noexcept:
        pidx_close(&self.index)
        self.index_off = self.index_never = True
        self.build_at = NULL

    cdef bint _index_wanted(self, size_t n) noexcept:
        """Count n point lookups; start building the index when they make it worth
        it, and take a build step. True when the index is complete (after this call)."""
        if not self.index_off:
            return True
        if self.index_never:
            return False
        if self.index.slots == NULL:
            self.lookups += n
            if self.lookups * INDEX_AFTER < self.entries or self.lookups * 4 < INDEX_FIRST:
                return False
            self._index_start()
        self._index_step()
        return not self.index_off

    cdef void _count_overwrite(self) noexcept:
        """An add found its key already here (index not started): start building the
        index once such adds are half the entries, for the overwrite fast path (add())."""
        self.overwrites += 1
        if not self.index_never and self.overwrites * INDEX_AFTER_OVERWRITES >= self.entries \
                and self.overwrites * 4 >= INDEX_FIRST:
            self._index_start()

    cdef void _index_start(self) noexcept:
        """Map a table for the list's keys and start the build at the list's first
        node (index_never without memory for it)."""
        if not pidx_open(&self.index, self.entries):
            self.index_off = self.index_never = True
            return
        self.build_at = self.head

    cdef void _index_step(self) noexcept:
        """Index the next INDEX_STEP nodes after build_at (every node goes through
        _index_put, which keeps a key's newest); at the list's end the index is
        complete and point lookups use it. A build is spread over the lookups and
        adds that follow its start, not one pause: one pass over a 434k-entry
        memtable took 106 ms (with CI running); the slowest get while a 434k-entry
        memtable's index was built in steps took 0.5 ms, the first steps (they
        fault in the table's pages), the median 1.9 us."""
        cdef Node* x = self.build_at.next[0]
        cdef int i
        for i in range(INDEX_STEP):
            if x == NULL:
                self.build_at = NULL
                self.index_off = False
                return
            self._index_put(x, bloom_hash(node_key(x), x.klen - TAG_SIZE))
            if self.index.slots == NULL:    # dropped (a node above 2^48, or no memory)
                return
            self.build_at = x
            x = x.next[0]

    cdef inline bint _indexes(self, Node* x) noexcept:
        """Whether an add of x (just linked) must put it in the index: the index is
        complete, or being built and x is behind build_at (a step will not reach it)."""
        if self.index.slots == NULL:
            return False
        if self.build_at == NULL:
            return True
        return self.build_at != self.head and cmp_ikey(node_key(x), x.klen, node_key(self.build_at),
                                                       self.build_at.klen) < 0

    cdef void _index_put(self, Node* x, uint64_t h) noexcept:
        """Put x (linked; h: its user key's bloom_hash) in the index (pidx_put: it
        keeps a key's newest node); drop the index for good when it cannot hold x."""
        if self.index.slots != NULL and not pidx_put(&self.index, x, h):
            self._index_drop()

    cdef Node* index_find(self, const uint8_t* k, size_t kn) noexcept:
        """The newest node of user key k, or NULL if k has none (index kept)."""
        if self.index.slots == NULL:
            return NULL
        return pidx_probe(&self.index, k, kn, bloom_hash(k, kn))

    cdef Node* _versions_from(self, Node* y, const uint8_t* ikey, size_t n) noexcept:
        """From y, a key's newest node, the first of its nodes at or below ikey's tag:
        a node of another key or NULL when none is, the skiplist's answer when more
        than INDEX_WALK versions are newer."""
        cdef size_t kn = n - TAG_SIZE
        cdef uint64_t target = load_u64(ikey + kn)
        cdef int step
        for step in range(INDEX_WALK):
            if _tag_of(y) <= target:
                return y
            y = y.next[0]
            if y == NULL or y.klen != n or (kn and memcmp(node_key(y), ikey, kn) != 0):
                return y
        return self.seek_ge(ikey, n, NULL)

    cdef Node* point_seek(self, const uint8_t* ikey, size_t n) noexcept:
        """seek_ge(ikey) for a point lookup: the same node when it holds ikey's user
        key; else NULL or a node of another key, as seek_ge may give (its callers
        compare the user key)."""
        cdef Node* y
        if not self._index_wanted(1):
            return self.seek_ge(ikey, n, NULL)
        y = self.index_find(ikey, n - TAG_SIZE)
        if y == NULL:
            return NULL
        return self._versions_from(y, ikey, n)

    cdef void point_seek_many(self, const uint8_t** ikeys, const size_t* ns, Py_ssize_t count,
                              Node** out) noexcept:
        """out[j] = point_seek(ikeys[j], ns[j]) for each j < count (multi_get): the
        keys are hashed and their slots prefetched INDEX_GROUP at a time, then their
        nodes, so the cache misses of a group overlap."""
        cdef uint64_t hs[INDEX_GROUP]
        cdef Py_ssize_t g, j, m
        cdef Node* y
        if not self._index_wanted(count):
            self.seek_ge_many(ikeys, ns, count, out, NULL)
            return
        for g in range(0, count, INDEX_GROUP):
            m = min(INDEX_GROUP, count - g)
            for j in range(m):
                hs[j] = bloom_hash(ikeys[g + j], ns[g + j] - TAG_SIZE)
                pidx_prefetch(&self.index, hs[j])
            for j in range(m):
                y = pidx_probe(&self.index, ikeys[g + j], ns[g + j] - TAG_SIZE, hs[j])
                out[g + j] = y
                if y != NULL:
                    prefetch(y)
            for j in range(m):
                if out[g + j] != NULL:
                    out[g + j] = self._versions_from(out[g + j], ikeys[g + j], ns[g + j])

    cdef int _random_height(self) noexcept:
        cdef int h = 1
        cdef uint64_t x
        while h < MAX_HEIGHT:
            x = self.rnd
            x ^= x << 13
            x ^= x >> 7
            x ^= x << 17
            self.rnd = x
            if (x & 3) != 0:     # branching factor 4
                break
            h += 1
        return h

    cdef Node* seek_ge(self, const uint8_t* ikey, size_t n, Node** prev) noexcept:
        """First node >= ikey (NULL if none); fills prev[level] if prev != NULL.

        Each step also prefetches the node one level down from x (the one compared
        next if this one is past ikey), so that miss overlaps this compare; and a
        node already found past ikey one level up is not compared again (LevelDB's
        and RocksDB's last_bigger)."""
        cdef Node* x = self.head
        cdef Node* nxt
        cdef Node* bigger = NULL
        cdef int level = self.max_height - 1
        while True:
            nxt = x.next[level]
            if nxt != NULL and nxt != bigger:
                if level:
                    prefetch(x.next[level - 1])
                if cmp_ikey(node_key(nxt), nxt.klen, ikey, n) < 0:
                    x = nxt
                    continue
            bigger = nxt
            if prev != NULL:
                prev[level] = x
            if level == 0:
                return nxt
            level -= 1

    cdef void seek_ge_many(self, const uint8_t** ikeys, const size_t* ns, Py_ssize_t count,
                           Node** out, Node** prevs=NULL) noexcept:
        """out[j] = seek_ge(ikeys[j], ns[j], NULL) for each j < count (multi_get);
        with prevs, prevs[j * MAX_HEIGHT + level] is search j's last node before its
        key at each level below max_height (seek_ge's prev; add_many).

        The searches run interleaved, SEEK_LANES at a time (AMAC: asynchronous memory
        access chaining): each step of one search compares one node's key, then
        prefetches the node it will look at next and moves on to the next lane, so
        the cache misses of several searches overlap instead of each search waiting
        for its own, one after the other (a skiplist walk is a chain of misses)."""
        cdef Node* xs[SEEK_LANES]
        cdef int lv[SEEK_LANES]
        cdef Py_ssize_t js[SEEK_LANES]
        cdef Py_ssize_t nextj = 0
        cdef int s, active = 0, top = self.max_height - 1
        cdef Node* x
        cdef Node* nxt
        for s in range(SEEK_LANES):
            if nextj < count:
                xs[s] = self.head
                lv[s] = top
                js[s] = nextj
                nextj += 1
                active += 1
                prefetch(self.head.next[top])
            else:
                js[s] = -1
        while active:
            for s in range(SEEK_LANES):
                if js[s] < 0:
                    continue
                x = xs[s]
                nxt = x.next[lv[s]]
                if nxt != NULL and cmp_ikey(node_key(nxt), nxt.klen, ikeys[js[s]], ns[js[s]]) < 0:
                    xs[s] = nxt
                    nxt = nxt.next[lv[s]]
                elif lv[s] > 0:
                    if prevs != NULL:
                        prevs[js[s] * MAX_HEIGHT + lv[s]] = x
                    lv[s] -= 1
                    nxt = x.next[lv[s]]
                else:
                    if prevs != NULL:
                        prevs[js[s] * MAX_HEIGHT] = x
                    out[js[s]] = nxt
                    if nextj < count:           # the lane takes the next search
                        xs[s] = self.head
                        lv[s] = top
                        js[s] = nextj
                        nextj += 1
                        nxt = self.head.next[top]
                    else:
                        js[s] = -1
                        active -= 1
                        continue
                if nxt != NULL:
                    prefetch(nxt)
                    prefetch(<const char*>nxt + 64)

    cdef Node* find_last_lt(self, const uint8_t* ikey, size_t n) noexcept:
        """Last node < ikey, or NULL if none."""
        cdef Node* x = self.head
        cdef Node* nxt
        cdef int level = self.max_height - 1
        while True:
            nxt = x.next[level]
            if nxt != NULL and cmp_ikey(node_key(nxt), nxt.klen, ikey, n) < 0:
                x = nxt
            else:
                if level == 0:
                    return NULL if x == self.head else x
                level -= 1

    cdef Node* find_last(self) noexcept:
        cdef Node* x = self.head
        cdef Node* nxt
        cdef int level = self.max_height - 1
        while True:
            nxt = x.next[level]
            if nxt != NULL:
                x = nxt
            else:
                if level == 0:
                    return NULL if x == self.head else x
                level -= 1

    cdef void _link(self, Node* x, Node** prev, int h) noexcept:
        """Link x after prev[i] at each level i < h (prev[i] = head above max_height
        is filled in here), and its level-0 back pointers."""
        cdef int i
        if h > self.max_height:
            for i in range(self.max_height, h):
                prev[i] = self.head
            self.max_height = h
        for i in range(h):
            x.next[i] = prev[i].next[i]     # set before publishing (invariant)
        x.back = prev[0]
        for i in range(h):
            prev[i].next[i] = x
        if x.next[0] != NULL:
            x.next[0].back = x

    cdef bint _preds_before(self, Node* y, Node** prev, int h) noexcept:
        """prev[i] for a node of height h linked right before y (its key's newest
        node, which it overwrites), at each level i below h and max_height, found
        without a search: prev[0] is y.back, and prev[i] the nearest node at or
        before prev[i - 1] taller than i (the last node before the new one in
        level i's list), reached by back pointers. False if that takes more than
        BACK_WALK steps (a tall node: the caller searches). The expected walk is
        3 steps for height 2 (a node is taller than 1 with p = 1/4), which is 5 in 6
        of the overwrites taller than 1."""
        cdef Node* p = y.back
        cdef int i, steps = 0
        cdef int top = h if h < self.max_height else self.max_height
        prev[0] = p
        for i in range(1, top):
            while p.height <= <uint32_t>i:     # the head is taller than every level
                if steps == BACK_WALK:
                    return False
                p = p.back
                steps += 1
            prev[i] = p
        return True

    cdef int add(self, uint64_t seq, int kind, const uint8_t* k, size_t kn,
                 const uint8_t* v, size_t vn, int64_t expiry) except -1:
        """Insert (k, seq, kind) -> v. Requires seq larger than any seq already here
        for the same key with the same kind (the DB assigns increasing sequences)."""
        if kind == KIND_RANGE_DELETE:
            return self._add_range_del(seq, k, kn, v, vn)
        cdef Node* prev[MAX_HEIGHT]
        cdef int h = self._random_height()
        cdef int i
        cdef size_t vregion = vn + (8 if kind == KIND_PUT_TTL else 0)
        cdef size_t ikn = kn + TAG_SIZE
        if ikn > 0xFFFFFFFFU or vregion > 0xFFFFFFFFU:
            raise ValueError("key or value larger than 4 GiB")
        cdef Node* x = <Node*>self.arena.allocate(
            sizeof(Node) + (h - 1) * sizeof(Node*) + ikn + vregion)
        x.klen = <uint32_t>ikn
        x.vlen = <uint32_t>vregion
        x.height = h
        cdef uint8_t* p = <uint8_t*>&x.next[h]
        if kn:
            memcpy(p, k, kn)
        store_u64(p + kn, make_tag(seq, kind))
        p += ikn
        if kind == KIND_PUT_TTL:
            store_u64(p, <uint64_t>expiry)
            p += 8
            if self.min_expiry == 0 or expiry < self.min_expiry:
                self.min_expiry = expiry
        if vn:
            memcpy(p, v, vn)
        cdef uint64_t hash = 0
        cdef Node* y = NULL
        if not self.index_off:
            hash = bloom_hash(k, kn)
            y = pidx_probe(&self.index, k, kn, hash)
        if y != NULL and _tag_of(x) > _tag_of(y) and self._preds_before(y, prev, h):
            # overwrite fast path: x goes right before y, its key's newest node; its
            # predecessors above level 0 are found by back pointers, not a search
            pass
        else:
            self.seek_ge(node_key(x), ikn, prev)
            if self.index.slots == NULL:
                y = prev[0].next[0]
                if y != NULL and y.klen == ikn and (kn == 0 or memcmp(node_key(y), k, kn) == 0):
                    self._count_overwrite()       # may build the index: it then holds x's key
        self._link(x, prev, h)
        if self._indexes(x):
            self._index_put(x, hash if hash else bloom_hash(k, kn))
        if self.build_at != NULL:
            self._index_step()
        if (self.entries == 0 and self.range_dels is None) or seq < self.first_seq:
            self.first_seq = seq
        if seq > self.last_seq:
            self.last_seq = seq
        self.entries += 1
        return 0

    cdef int add_many(self, uint64_t seq, int kind, const uint8_t** ks, const size_t* kns,
                      const uint8_t** vs, const size_t* vns, Py_ssize_t count) except -1:
        """add(seq + j, kind, ks[j], vs[j]) for each j < count (KIND_PUT or KIND_DELETE:
        no expiry), the list the same as after count add()s. The insert positions
        are searched together (seek_ge_many: the searches interleaved, their cache
        misses overlapping); each insert then walks forward from its search's
        node at each level, past the nodes inserted before it (each of those
        nodes is before its key, so the walk ends at the node add() would find)."""
        cdef Node* nodes[MAX_ADD_MANY]
        cdef const uint8_t* ikeys[MAX_ADD_MANY]
        cdef size_t ikns[MAX_ADD_MANY]
        cdef Node* found[MAX_ADD_MANY]
        cdef Node* prevs[MAX_ADD_MANY * MAX_HEIGHT]
        cdef Node* x
        cdef Node* p
        cdef uint8_t* b
        cdef Py_ssize_t j
        cdef int i, h, top
        cdef size_t ikn
        if count > MAX_ADD_MANY or kind == KIND_RANGE_DELETE or kind == KIND_PUT_TTL:
            for j in range(count):
                self.add(seq + j, kind, ks[j], kns[j], vs[j], vns[j], 0)
            return 0
        for j in range(count):
            ikn = kns[j] + TAG_SIZE
            if ikn > 0xFFFFFFFFU or vns[j] > 0xFFFFFFFFU:
                raise ValueError("key or value larger than 4 GiB")
        for j in range(count):
            h = self._random_height()
            ikn = kns[j] + TAG_SIZE
            x = <Node*>self.arena.allocate(sizeof(Node) + (h - 1) * sizeof(Node*) + ikn + vns[j])
            x.klen = <uint32_t>ikn
            x.vlen = <uint32_t>vns[j]
            x.height = h
            b = <uint8_t*>&x.next[h]
            if kns[j]:
                memcpy(b, ks[j], kns[j])
            store_u64(b + kns[j], make_tag(seq + j, kind))
            if vns[j]:
                memcpy(b + ikn, vs[j], vns[j])
            nodes[j] = x
            ikeys[j] = node_key(x)
            ikns[j] = ikn
        top = self.max_height
        self.seek_ge_many(ikeys, ikns, count, found, prevs)
        for j in range(count):
            x = nodes[j]
            h = x.height
            if h > self.max_height:
                self.max_height = h
            for i in range(h):
                p = prevs[j * MAX_HEIGHT + i] if i < top else self.head
                while p.next[i] != NULL and cmp_ikey(node_key(p.next[i]), p.next[i].klen,
                                                      ikeys[j], ikns[j]) < 0:
                    p = p.next[i]
                prevs[j * MAX_HEIGHT + i] = p
            if self.index.slots == NULL:
                p = prevs[j * MAX_HEIGHT].next[0]
                if p != NULL and p.klen == ikns[j] and memcmp(node_key(p), ikeys[j], ikns[j] - TAG_SIZE) == 0:
                    self._count_overwrite()
            self._link(x, &prevs[j * MAX_HEIGHT], h)
            if self._indexes(x):
                self._index_put(x, bloom_hash(ikeys[j], ikns[j] - TAG_SIZE))
            if self.build_at != NULL:
                self._index_step()
            if (self.entries == 0 and self.range_dels is None) or seq + j < self.first_seq:
                self.first_seq = seq + j
            if seq + j > self.last_seq:
                self.last_seq = seq + j
            self.entries += 1
        return 0

    cdef int lookup(self, const uint8_t* k, size_t kn, uint64_t seq,
                    const uint8_t** vp, size_t* vn, int* kind) noexcept:
        """Newest entry for user key k with sequence <= seq.
        Returns 1 and fills vp/vn/kind (value region as stored) if found, else 0."""
        cdef uint8_t target[64]
        cdef uint8_t* t = target
        cdef Node* x
        cdef uint64_t tag
        if kn + TAG_SIZE > 64:
            t = <uint8_t*>malloc(kn + TAG_SIZE)
            if t == NULL:
                return 0
        if kn:
            memcpy(t, k, kn)
        store_u64(t + kn, make_tag(seq, KIND_MAX))
        x = self.point_seek(t, kn + TAG_SIZE)
        if t != target:
            free(t)
        if x == NULL or x.klen - TAG_SIZE != kn or (kn and memcmp(node_key(x), k, kn) != 0):
            return 0
        tag = load_u64(node_key(x) + kn)
        kind[0] = <int>(tag & 0xFF)
        vp[0] = node_val(x)
        vn[0] = x.vlen
        return 1

    # ----- Python-facing API (tests, tools) -----
    def put(self, uint64_t seq, key, value, int64_t expiry=0):
        cdef const uint8_t[::1] kv = key
        cdef const uint8_t[::1] vv = value
        self.add(seq, KIND_PUT_TTL if expiry else KIND_PUT,
                 &kv[0] if kv.shape[0] else NULL, kv.shape[0],
                 &vv[0] if vv.shape[0] else NULL, vv.shape[0], expiry)

    def delete(self, uint64_t seq, key):
        cdef const uint8_t[::1] kv = key
        self.add(seq, KIND_DELETE, &kv[0] if kv.shape[0] else NULL, kv.shape[0], NULL, 0, 0)

    def get(self, key, uint64_t seq=0x00FFFFFFFFFFFFFF):
        """-> None (no entry), (kind, value, expiry)."""
        cdef const uint8_t[::1] kv = key
        cdef const uint8_t* vp
        cdef size_t vn
        cdef int kind
        if not self.lookup(&kv[0] if kv.shape[0] else NULL, kv.shape[0], seq, &vp, &vn, &kind):
            return None
        if kind == KIND_PUT_TTL:
            return (kind, PyBytes_FromStringAndSize(<char*>vp + 8, vn - 8), <int64_t>load_u64(vp))
        return (kind, PyBytes_FromStringAndSize(<char*>vp, vn), 0)

    @property
    def memory_usage(self):
        """Bytes mapped for this memtable (exact: arena chunks + chunk table + point index)."""
        return self.arena.allocated + self.index.cap * 8

    @property
    def resident_bytes(self):
        """Bytes of the arena the process holds: memory_usage less the whole pages
        at the end of the current chunk that no allocation has reached yet (an
        empty memtable maps a 1 MiB chunk and touches one page of it); a huge
        chunk (Arena) is resident as a whole once touched."""
        if self.arena.cur_huge:
            return self.arena.allocated + self.index.cap * 8
        return self.arena.allocated - (self.arena.remaining & ~(<size_t>4095)) + self.index.cap * 8

    @property
    def arena_used(self):
        return self.arena.used

    def delete_range(self, uint64_t seq, start, stop):
        """Add the range tombstone [start, stop) at seq (tests, tools)."""
        cdef const uint8_t[::1] kv = start
        cdef const uint8_t[::1] vv = stop
        self.add(seq, KIND_RANGE_DELETE, &kv[0] if kv.shape[0] else NULL, kv.shape[0],
                 &vv[0] if vv.shape[0] else NULL, vv.shape[0], 0)

    def __len__(self):
        return self.entries + (len(self.range_dels) if self.range_dels is not None else 0)

    def iterator(self):
        return MemTableIterator(self)

    def check(self):
        """Assert the skiplist's invariants (every level sorted, level i exactly the
        nodes of level 0 taller than i, in order, the entry count, the arena's
        bounds, the back pointers, the point index); True when they hold. For
        tests and for debugging a damaged memtable; O(n)."""
        cdef Node* x
        cdef int level
        cdef size_t n0 = 0, count
        cdef Node* cur[MAX_HEIGHT]
        for level in range(self.max_height):
            x = self.head.next[level]
            count = 0
            while x != NULL:
                if x.next[level] != NULL:
                    assert cmp_ikey(node_key(x), x.klen, node_key(x.next[level]),
                                    x.next[level].klen) < 0, "skiplist out of order"
                assert <int>x.height > level
                count += 1
                x = x.next[level]
            if level == 0:
                n0 = count
            else:
                assert count <= n0
        assert n0 == self.entries, (n0, self.entries)
        assert self.arena.used <= self.arena.allocated
        cdef size_t keys = 0, kn
        cdef Node* first = NULL
        x = self.head
        while x.next[0] != NULL:
            assert x.next[0].back == x, "level-0 back pointer out of step"
            x = x.next[0]
        for level in range(MAX_HEIGHT):   # each level holds every node taller than it, none skipped
            cur[level] = self.head.next[level]
        x = self.head.next[0]
        while x != NULL:
            for level in range(1, <int>x.height):
                assert cur[level] == x, f"level {level} skips a node of height {x.height}"
                cur[level] = x.next[level]
            x = x.next[0]
        for level in range(1, MAX_HEIGHT):
            assert cur[level] == NULL, f"level {level} holds a node level 0 does not"
        if not self.index_off:          # complete (a build in progress is checked by its end)
            x = self.head.next[0]
            while x != NULL:
                kn = x.klen - TAG_SIZE
                if first == NULL or first.klen != x.klen or memcmp(node_key(first), node_key(x), kn) != 0:
                    first = x
                    keys += 1
                    assert self.index_find(node_key(x), kn) == x, "point index misses a key's newest node"
                x = x.next[0]
            assert keys == self.index.keys, (keys, self.index.keys)
            assert self.index.keys * 4 <= self.index.cap * 3
        return True

    @property
    def index_bytes(self):
        """Bytes the point index maps (in memory_usage and resident_bytes)."""
        return self.index.cap * 8

    @property
    def index_on(self):
        """Whether point lookups use the hash index (invariant 6)."""
        return not self.index_off

    @property
    def index_keys(self):
        """User keys in the point index."""
        return self.index.keys


cdef class MemTableIterator(InternalIterator):
    """Iterator over a memtable's entries in internal-key order. prev() is O(1)
    (the level-0 back pointer)."""

    def __cinit__(self, MemTable mem):
        self.mem = mem
        self.node = NULL
        self.valid = False

    cdef void _load(self) noexcept:
        if self.node == NULL:
            self.valid = False
            return
        self.valid = True
        self.key = node_key(self.node)
        self.key_len = self.node.klen
        self.val = node_val(self.node)
        self.val_len = self.node.vlen

    cdef int seek(self, const uint8_t* target, size_t n) except -1:
        self.node = self.mem.seek_ge(target, n, NULL)
        self._load()
        return 0

    cdef int seek_to_first(self) except -1:
        self.node = self.mem.head.next[0]
        self._load()
        return 0

    cdef int seek_to_last(self) except -1:
        self.node = self.mem.find_last()
        self._load()
        return 0

    cdef int next(self) except -1:
        self.node = self.node.next[0]
        self._load()
        return 0

    cdef int prev(self) except -1:
        cdef Node* b
        if self.node == NULL:
            self.node = self.mem.find_last_lt(self.key, self.key_len)
        else:
            b = self.node.back      # O(1): the level-0 back pointer
            self.node = NULL if b == self.mem.head else b
        self._load()
        return 0
