# cython: language_level=3
"""Block caches: uncompressed blocks keyed by (file number << 40 | offset).

SlabCache (option block_cache='slab', the default) keeps blocks in slab memory:
capacity is cut into pages (slab_page_size, 1 MiB unless the cache is small), a
page is given to one size class, a block takes one slot of the smallest class
that fits. A class's slots fill its pages exactly, and a class of large slots
takes its pages in spans of 2, 4 or 8 contiguous pages (classes.pxi), so that
neither a page's tail nor coarse large classes waste memory. Each class runs its
own CLOCK. Pages move between classes (like memcached's slab automove) when one
class evicts far more per page than another; after erasures a class's sparse
pages hand their blocks to free slots of their class or of a slightly larger one
and go back to the OS (defrag.pxi). Readers get a pinned view of a slot, no
copy; a pinned slot is never evicted, moved or reused until its last pin goes.

LRUCache ('lru') is the plain LRU of bytes objects, kept for comparison.

This file holds SlabCache (its pages, CLOCK and page moves) and includes:
classes.pxi (the size classes and spans), defrag.pxi (giving sparse pages back
after erasures), report.pxi (SlabCache's metadata_bytes, stats and check),
views.pxi (BlockView, ValueView) and lru.pxi (LRUCache). Its key -> slot hash is
lsmkv/core/u64map.pxd.

Index and filter blocks (option cache_index_and_filter_blocks) are slab blocks
like data blocks, keyed the same way, evicted by the same CLOCK; a slot holding
one is marked (Slot.meta) so its bytes are reported apart (meta_payload), and
lookup_pin_meta finds them without counting in hits/misses, which stay the data
blocks' hit ratio. The tables count index/filter lookups in the cache's
MetaCounts. Otherwise index and filter blocks are held by their tables and only
charged here (reserve).

Thread safety: every method runs under the GIL and never releases it (no
Python code is called from inside a method), so each call is atomic with
respect to other threads. A slot being filled (alloc_pin .. publish) is pinned
and not in the hash, so no other reader can see it half-written.

Invariants (SlabCache.check() asserts them):
  1. payload == the sum of len over slots that are not FREE; payload never
     exceeds pages_held * page_size <= capacity - reserved, unless pinned slots
     kept pages from being released by a shrink (pages_over counts that).
  2. Every USED slot is in the hash exactly once and the hash holds nothing else;
     DETACHED and FILLING slots are pinned and not in the hash.
  3. A slot with refs > 0 is never evicted, moved, or handed to another key.
  4. A FREE slot is on its class's free stack exactly once.
  5. hits + misses == number of data-block lookups (lookup_pin, lookup).
  6. meta_payload == the sum of len over slots that are not FREE and have meta set.
  7. A held page spans its class's `units` pages of page_size (one mapping); the
     units of the held pages add up to pages_held.
  8. Class sizes strictly increase up to page_size, and a class's slots fill its
     span to less than 16 bytes a slot (classes.pxi).
  9. A block only moves (defrag.pxi) from an unpinned page into a FREE slot of a
     class at least as large; a slot's len never exceeds its class's size.
"""
from collections import OrderedDict

cimport cython

from libc.stdlib cimport calloc, realloc, free
from libc.string cimport memcpy
from libc.stdint cimport uint8_t, uint32_t, uint64_t
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE, PyBytes_FromStringAndSize
from cpython.buffer cimport PyBUF_WRITABLE

from lsmkv.core.u64map cimport (U64Map, u64map_init, u64map_free, u64map_find, u64map_insert,
                                 u64map_delete, u64map_delete_at)
from lsmkv.core.includes.mman cimport (mmap, munmap, PROT_READ, PROT_WRITE, MAP_PRIVATE, MAP_ANONYMOUS,
                                       MAP_FAILED)

cdef enum:
    FREE = 0
    USED = 1
    DETACHED = 2
    FILLING = 3

cdef uint64_t EMPTY = 0xFFFFFFFFFFFFFFFFULL
cdef uint32_t MIN_SLOT = 256
cdef size_t MIN_PAGE = 4096
cdef uint32_t CLOCK_PAGES = 32     # pages a donor search looks at (_clock_page)
cdef double SPILL = 1.5            # a block may move into a slot up to this many times larger (defrag.pxi)


cdef inline uint64_t sid_of(uint32_t page, uint32_t idx) noexcept:
    return (<uint64_t>page << 32) | idx


cdef inline uint32_t sid_page(uint64_t sid) noexcept:
    return <uint32_t>(sid >> 32)


cdef inline uint32_t sid_idx(uint64_t sid) noexcept:
    return <uint32_t>(sid & 0xFFFFFFFFU)


cdef inline void* grown(void* p, size_t n, size_t item) except NULL:
    """p reallocated to n items of `item` bytes (a class's page list or free stack);
    MemoryError if memory runs out (p is then left as it was)."""
    cdef void* g = realloc(p, n * item)
    if g == NULL:
        raise MemoryError()
    return g


cdef class SlabCache:
    """Slab-managed block cache (see the module docstring).

    >>> c = SlabCache(1 << 20)
    >>> c.insert(7, b"block")
    True
    >>> v = c.lookup(7); bytes(v)
    b'block'
    >>> v.release()
    """

    def __cinit__(self, size_t capacity, size_t page_size=1 << 20, double growth_factor=1.08):
        cdef size_t ps = page_size
        cdef list sizes
        if growth_factor <= 1.0 or growth_factor > 4.0:
            raise ValueError(f"slab growth factor must be in (1, 4], got {growth_factor}")
        if ps < MIN_PAGE:
            raise ValueError(f"slab page size must be >= {MIN_PAGE}, got {ps}")
        # pages >> classes: a class's partly filled page is the fragmentation a
        # workload of many block sizes sees, so a cache gets at least 256 pages
        # (down to 64 KiB pages; a block larger than a page is not cached)
        while ps > 64 * 1024 and capacity < 256 * ps:
            ps //= 2
        self.page_size = ps
        self.capacity = capacity
        self.growth_factor = growth_factor
        self.reserved = 0
        sizes = class_sizes(capacity, ps, growth_factor)
        self.nclasses = len(sizes)
        self.cls = <SizeClass*>calloc(self.nclasses, sizeof(SizeClass))
        if self.cls == NULL:
            raise MemoryError()
        for i, (s, units) in enumerate(sizes):
            self.cls[i].size = s
            self.cls[i].units = units
            self.cls[i].per_page = <uint32_t>(units * ps // s)
        for i in range(self.nclasses):
            self.cls[i].spill = i
            while (self.cls[i].spill + 1 < self.nclasses
                   and self.cls[self.cls[i].spill + 1].size <= self.cls[i].size * SPILL):
                self.cls[i].spill += 1
        self.pages = NULL
        self.npages_max_alloc = 0
        self.pages_held = 0
        u64map_init(&self.h, 10)
        self.payload = self.pinned_bytes = self.pinned_slots = 0
        self.meta_payload = 0
        self.meta.index_hits = self.meta.index_misses = 0
        self.meta.filter_hits = self.meta.filter_misses = 0
        self.hits = self.misses = self.inserts = self.evictions = self.slab_moves = 0
        self.too_large = self.insert_failures = self.pages_released = self.detached = 0
        self.pages_defragmented = self.relocated = self.class_starved = 0
        self.win_count = 0
        self.page_hand = 0
        self._set_pages_max()

    def __dealloc__(self):
        cdef uint32_t p
        if self.pages != NULL:
            for p in range(self.npages_max_alloc):
                if self.pages[p].mem != NULL:
                    munmap(self.pages[p].mem, self.pages[p].units * self.page_size)
                free(self.pages[p].slots)
            free(self.pages)
        if self.cls != NULL:
            for i in range(self.nclasses):
                free(self.cls[i].pages)
                free(self.cls[i].free)
            free(self.cls)
        u64map_free(&self.h)

    # ------------------------------------------------------------ pages and classes

    cdef inline Slot* _slot(self, uint64_t sid) noexcept:
        return &self.pages[sid_page(sid)].slots[sid_idx(sid)]

    cdef int _class_for(self, size_t n) noexcept:
        cdef int lo = 0, hi = self.nclasses, mid
        while lo < hi:
            mid = (lo + hi) // 2
            if self.cls[mid].size < n:
                lo = mid + 1
            else:
                hi = mid
        return lo if lo < self.nclasses else -1

    cdef int _push_free(self, SizeClass* c, uint64_t sid) except -1:
        if c.nfree == c.fcap:
            c.free = <uint64_t*>grown(c.free, c.fcap * 2 + 64, sizeof(uint64_t))
            c.fcap = c.fcap * 2 + 64
        c.free[c.nfree] = sid
        c.nfree += 1
        return 0

    cdef int _set_pages_max(self) except -1:
        cdef uint32_t want = <uint32_t>((self.capacity - self.reserved) // self.page_size
                                        if self.capacity > self.reserved else 0)
        cdef Page* np
        cdef uint32_t p
        if want > self.npages_max_alloc:
            np = <Page*>grown(self.pages, want, sizeof(Page))
            for p in range(self.npages_max_alloc, want):
                np[p].mem = NULL
                np[p].cls = -1
                np[p].nslots = np[p].live = np[p].pinned = np[p].units = 0
                np[p].slots = NULL
            self.pages = np
            self.npages_max_alloc = want
        self.pages_max = want
        self.rebalance_every = max(64, 2 * <unsigned long long>want)
        return self._shrink()

    cdef int _assign(self, uint32_t p, int ci) except -1:
        """Give held, unassigned page p to class ci; its slots go on the free stack."""
        cdef SizeClass* c = &self.cls[ci]
        cdef Page* pg = &self.pages[p]
        cdef long long i
        pg.slots = <Slot*>calloc(c.per_page, sizeof(Slot))
        if pg.slots == NULL:
            raise MemoryError()
        pg.cls = ci
        pg.nslots = c.per_page
        pg.live = pg.pinned = 0
        if c.npages == c.pcap:
            c.pages = <uint32_t*>grown(c.pages, c.pcap * 2 + 8, sizeof(uint32_t))
            c.pcap = c.pcap * 2 + 8
        c.pages[c.npages] = p
        c.npages += 1
        for i in range(<long long>c.per_page - 1, -1, -1):
            self._push_free(c, sid_of(p, <uint32_t>i))
        return 0

    cdef void _unassign(self, uint32_t p) noexcept:
        """Empty page p (which has no pinned slot) and take it from its class."""
        cdef Page* pg = &self.pages[p]
        cdef SizeClass* c = &self.cls[pg.cls]
        cdef Slot* s
        cdef uint32_t i
        cdef uint64_t j
        for i in range(pg.nslots):
            s = &pg.slots[i]
            if s.state == USED:
                u64map_delete(&self.h, s.key)
                self._clear_slot(pg, s, c)
                self.evictions += 1
        self._drop_free_of_page(c, p)
        for j in range(c.npages):
            if c.pages[j] == p:
                c.pages[j] = c.pages[c.npages - 1]
                c.npages -= 1
                break
        if c.hand_p >= c.npages:
            c.hand_p = 0
            c.hand_s = 0
        free(pg.slots)
        pg.slots = NULL
        pg.cls = -1
        pg.nslots = pg.live = pg.pinned = 0

    cdef inline void _clear_slot(self, Page* pg, Slot* s, SizeClass* c) noexcept:
        """Account a slot leaving use (its key is already out of the hash)."""
        self.payload -= s.len
        c.payload -= s.len
        c.items -= 1
        if s.meta:
            self.meta_payload -= s.len
            s.meta = 0
        s.state = FREE
        pg.live -= 1

    cdef void _drop_free_of_page(self, SizeClass* c, uint32_t p) noexcept:
        """Take page p's slots off class c's free stack."""
        cdef uint64_t j, k = 0
        for j in range(c.nfree):
            if sid_page(c.free[j]) != p:
                c.free[k] = c.free[j]
                k += 1
        c.nfree = k

    cdef bint _give_page(self, uint32_t p, int ci) except -1:
        """Move held page p (no slot pinned) to class ci: a slab move. When p spans
        another number of pages than ci's spans, p goes back to the OS, and so do
        donor pages (_donor_page) until a span of ci's size can be mapped.
        True if class ci got a page."""
        cdef uint32_t units = self.cls[ci].units
        cdef long long q
        self.slab_moves += 1
        if self.pages[p].units == units:
            if self.pages[p].cls >= 0:
                self._unassign(p)
            self._assign(p, ci)
            return True
        if units > self.pages_max:            # a shrunk cache: the span can never fit
            return False
        self._release_page(p)
        while self.pages_held + units > self.pages_max:
            q = self._donor_page(ci)
            if q < 0:
                return False
            self._release_page(<uint32_t>q)
        q = self._new_page(units)
        if q < 0:
            return False
        self._assign(<uint32_t>q, ci)
        return True

    cdef void _release_page(self, uint32_t p) noexcept:
        """Give held page p (no slot pinned) back to the OS."""
        if self.pages[p].cls >= 0:
            self._unassign(p)
        munmap(self.pages[p].mem, self.pages[p].units * self.page_size)
        self.pages[p].mem = NULL
        self.pages_held -= self.pages[p].units
        self.pages[p].units = 0

    cdef int _coldest_class(self, int exclude) noexcept:
        """The class with pages, other than exclude, with the fewest recent evictions
        per page; -1 if none."""
        cdef int ci, best = -1
        cdef double r, best_r = 0
        for ci in range(self.nclasses):
            if ci == exclude or self.cls[ci].npages == 0:
                continue
            r = <double>self.cls[ci].win_evictions / (self.cls[ci].npages * self.cls[ci].units)
            if best < 0 or r < best_r:
                best, best_r = ci, r
        return best

    cdef long long _unpinned_page_of(self, int ci) noexcept:
        """The first page of class ci, from its CLOCK hand on, with no pinned slot;
        -1 if all are pinned."""
        cdef SizeClass* c = &self.cls[ci]
        cdef uint32_t j, p
        for j in range(c.npages):
            p = c.pages[(c.hand_p + j) % c.npages]
            if self.pages[p].pinned == 0:
                return p
        return -1

    cdef long long _clock_page(self, int exclude, double below) noexcept:
        """CLOCK over pages, for a donor: from page_hand on, the first held page of
        a class other than exclude (and, if below >= 0, evicting fewer than `below`
        blocks per page recently) with no pinned slot and no block used since the
        hand last passed; the used blocks of a page passed over lose their reference
        bit (a second chance). A hot block in a class that rarely evicts (an index
        or filter block alone in its page) is kept this way, a cold one given up.
        Looks at most at min(2 x pages, CLOCK_PAGES) pages (twice round a small
        cache, so a page passed over once is found the second time; in a large one
        the hand goes on from there next time, so a call costs at most CLOCK_PAGES
        pages' slots); if every page it looked at was used, the first of them that
        qualifies otherwise; -1 if none qualifies."""
        cdef uint32_t n = self.npages_max_alloc, p, i
        cdef uint32_t budget
        cdef long long first = -1
        cdef Page* pg
        cdef Slot* s
        cdef SizeClass* c
        cdef bint used
        if n == 0:
            return -1
        budget = 2 * n if 2 * n < CLOCK_PAGES else CLOCK_PAGES
        while budget:
            budget -= 1
            if self.page_hand >= n:
                self.page_hand = 0
            p = self.page_hand
            self.page_hand += 1
            pg = &self.pages[p]
            if pg.mem == NULL or pg.cls < 0 or pg.cls == exclude or pg.pinned:
                continue
            c = &self.cls[pg.cls]
            if below >= 0 and <double>c.win_evictions / (c.npages * c.units) >= below:
                continue
            used = False
            for i in range(pg.nslots):
                s = &pg.slots[i]
                if s.state == USED and s.ref:
                    s.ref = 0
                    used = True
            if not used:
                return p
            if first < 0:
                first = p
        return first

    cdef long long _new_page(self, uint32_t units) except -2:
        """Map a span of `units` pages into an unheld entry; -1 if the capacity
        does not allow it."""
        cdef uint32_t p
        cdef void* m
        if self.pages_held + units > self.pages_max:
            return -1
        for p in range(self.pages_max):
            if self.pages[p].mem == NULL:
                # first touched by the thread that fills it (NUMA first-touch placement)
                m = mmap(NULL, units * self.page_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)
                if m == MAP_FAILED:
                    raise MemoryError(f"slab cache: cannot map a {units * self.page_size}-byte page")
                self.pages[p].mem = <uint8_t*>m
                self.pages[p].units = units
                self.pages_held += units
                return p
        return -1

    cdef long long _donor_page(self, int exclude) noexcept:
        """A held page no slot of which is pinned, from the class that needs its pages
        least: an empty page first, else a page none of whose blocks was used
        lately (_clock_page), else the page under the CLOCK hand of the class with
        the fewest recent evictions per page. -1 if every page is pinned."""
        cdef uint32_t p
        cdef int cold
        cdef long long q
        for p in range(self.npages_max_alloc):
            if self.pages[p].mem != NULL and self.pages[p].cls != exclude and self.pages[p].live == 0:
                return p
        q = self._clock_page(exclude, -1)
        if q >= 0:
            return q
        cold = self._coldest_class(exclude)
        return self._unpinned_page_of(cold) if cold >= 0 else -1

    cdef bint _move_page_to(self, int ci) except -1:
        cdef long long p = self._donor_page(ci)
        if p < 0:
            return False
        return self._give_page(<uint32_t>p, ci)

    cdef bint _rebalance(self, int ci) except -1:
        """Class ci must evict. Once it has evicted a page's worth of blocks since it
        last asked, it takes a page from a class evicting less than half as fast
        per page (hysteresis against ping-pong): a page of such a class none of
        whose blocks was used lately (_clock_page), else the page under the CLOCK
        hand of the class evicting the least. Every rebalance_every evictions all
        counts halve, so recent load counts most. True if class ci got a page."""
        cdef int k, cold
        cdef long long p = -1
        cdef SizeClass* c = &self.cls[ci]
        cdef double rate
        self.win_count += 1
        if self.win_count >= self.rebalance_every:
            self.win_count = 0
            for k in range(self.nclasses):
                self.cls[k].win_evictions //= 2
        if c.win_evictions < c.per_page:
            return False
        rate = <double>c.win_evictions / (c.npages * c.units)
        p = self._clock_page(ci, rate / 2)
        if p < 0:
            cold = self._coldest_class(ci)
            if cold >= 0 and rate > 2 * <double>self.cls[cold].win_evictions / (self.cls[cold].npages
                                                                             * self.cls[cold].units):
                p = self._unpinned_page_of(cold)
        c.win_evictions = 0
        return p >= 0 and self._give_page(<uint32_t>p, ci)

    cdef uint64_t _evict(self, int ci) noexcept:
        """CLOCK over class ci's slots: the first unpinned USED slot whose reference
        bit is clear is evicted and returned; EMPTY if every slot is pinned."""
        cdef SizeClass* c = &self.cls[ci]
        cdef uint64_t budget, sid
        cdef uint32_t p
        cdef Slot* s
        if c.npages == 0:
            return EMPTY
        budget = 2 * <uint64_t>c.npages * c.per_page + 1
        while budget:
            budget -= 1
            if c.hand_p >= c.npages:
                c.hand_p = 0
            p = c.pages[c.hand_p]
            sid = sid_of(p, c.hand_s)
            s = &self.pages[p].slots[c.hand_s]
            c.hand_s += 1
            if c.hand_s >= c.per_page:
                c.hand_s = 0
                c.hand_p = (c.hand_p + 1) % c.npages
            if s.state != USED or s.refs:
                continue
            if s.ref:
                s.ref = 0
                continue
            u64map_delete(&self.h, s.key)
            self._clear_slot(&self.pages[p], s, c)
            self.evictions += 1
            c.evictions += 1
            c.win_evictions += 1
            return sid
        return EMPTY

    cdef uint64_t _get_slot(self, int ci, bint quiet=False) except? 0xFFFFFFFFFFFFFFFE:
        """A FREE slot of class ci, taken off its stack, or EMPTY. In order: a free
        slot; a new page while the capacity allows; for a class without a page, a
        page moved to it once it has asked for a page's worth of slots (until then
        its blocks are not cached: a rare block size must not take a page from a
        busy class each time it shows up); a rebalance; a CLOCK eviction in the
        class; a page moved here when every slot of the class is pinned.
        quiet: a class without a page gets EMPTY, its demand not counted (a
        guess's slot, alloc_pin's quiet)."""
        cdef SizeClass* c = &self.cls[ci]
        cdef long long p
        cdef uint64_t sid
        if c.nfree == 0:
            p = self._new_page(c.units)
            if p >= 0:
                self._assign(<uint32_t>p, ci)
            elif c.npages == 0:
                if quiet:
                    return EMPTY
                c.win_evictions += 1          # unmet demand counts as evictions
                if c.win_evictions < c.per_page or not self._move_page_to(ci):
                    self.class_starved += 1
                    return EMPTY
                c.win_evictions = 0
            else:
                self._rebalance(ci)
            if c.nfree == 0:
                sid = self._evict(ci)
                if sid != EMPTY:
                    return sid
                if not self._move_page_to(ci):
                    return EMPTY
        c.nfree -= 1
        return c.free[c.nfree]

    cdef void _free_slot(self, uint64_t sid) noexcept:
        cdef Page* pg = &self.pages[sid_page(sid)]
        cdef Slot* s = &pg.slots[sid_idx(sid)]
        cdef SizeClass* c = &self.cls[pg.cls]
        self._clear_slot(pg, s, c)
        try:
            self._push_free(c, sid)
        except MemoryError:
            pass    # the slot stays FREE but unlisted until its page moves; nothing is lost

    cdef int _shrink(self) except -1:
        """Release pages until pages_held <= pages_max (pinned pages stay)."""
        cdef long long p
        cdef uint32_t q
        while self.pages_held > self.pages_max:
            p = -1
            for q in range(self.npages_max_alloc):       # pages beyond the new limit first
                if self.pages[q].mem != NULL and self.pages[q].pinned == 0 and q >= self.pages_max:
                    p = q
                    break
            if p < 0:
                p = self._donor_page(-1)
            if p < 0:
                break
            self._release_page(<uint32_t>p)
            self.pages_released += 1
        return 0

    # ------------------------------------------------------------ the interface _table uses

    cdef int _pin_entry(self, long long i, Pin* out) noexcept:
        """Pin the slot of hash entry i (a hit) and describe it in out; returns 1."""
        cdef uint64_t sid = self.h.vals[i]
        cdef Slot* s
        cdef Page* pg
        pg = &self.pages[sid_page(sid)]
        s = &pg.slots[sid_idx(sid)]
        if s.refs == 0:
            pg.pinned += 1
            self.pinned_bytes += s.len
            self.pinned_slots += 1
        s.refs += 1
        s.ref = 1
        self.cls[pg.cls].hits += 1
        out.slot = sid
        out.data = pg.mem + <size_t>sid_idx(sid) * self.cls[pg.cls].size
        out.len = s.len
        return 1

    cdef int lookup_pin(self, uint64_t key, Pin* out) except -1:
        """1 and a pinned slot in out if key is cached; 0 (a miss) otherwise.
        Counted in hits/misses (data blocks)."""
        cdef long long i = u64map_find(&self.h, key)
        if i < 0:
            self.misses += 1
            return 0
        self.hits += 1
        return self._pin_entry(i, out)

    cdef int lookup_pin_meta(self, uint64_t key, Pin* out) noexcept:
        """lookup_pin for an index or filter block: not counted in hits/misses
        (the table counts it in meta)."""
        cdef long long i = u64map_find(&self.h, key)
        if i < 0:
            return 0
        return self._pin_entry(i, out)

    cdef void mark_meta(self, Pin* p) noexcept:
        """Mark the slot p pins (filled by the caller) as an index or filter block."""
        cdef Slot* s = self._slot(p.slot)
        if not s.meta:
            s.meta = 1
            self.meta_payload += s.len

    cdef void discard(self, uint64_t key) noexcept:
        """Drop key from the cache (a block found bad after it was published); a
        pinned slot is detached and freed when its last pin goes."""
        cdef long long i = u64map_find(&self.h, key)
        cdef uint64_t sid
        if i < 0:
            return
        sid = self.h.vals[i]
        u64map_delete_at(&self.h, <uint64_t>i)
        self._unhashed(sid)

    cdef void _unhashed(self, uint64_t sid) noexcept:
        """A USED slot just taken out of the hash: freed now, or detached (and freed
        by its last unpin) while readers pin it."""
        cdef Slot* s = self._slot(sid)
        if s.refs:
            s.state = DETACHED
            self.detached += 1
        else:
            self._free_slot(sid)

    cdef int alloc_pin(self, uint64_t key, size_t n, Pin* out, bint quiet=False) except -1:
        """1 and a pinned slot of n bytes for key (FILLING: write it, then publish or
        abort); 0 if the block cannot be cached (too large, or every slot of its
        class pinned). quiet: for a length guessed before the block is read (a
        batch's reservation, refill): a failure is not counted (too_large,
        insert_failures, the class's unmet demand), since the block is counted
        when it is cached by its real length."""
        cdef int ci
        cdef uint64_t sid
        cdef Page* pg
        cdef Slot* s
        if n > self.page_size:
            if not quiet:
                self.too_large += 1
            return 0
        ci = self._class_for(n if n else 1)
        sid = self._get_slot(ci, quiet)
        if sid == EMPTY:
            if not quiet:
                self.insert_failures += 1
            return 0
        pg = &self.pages[sid_page(sid)]
        s = &pg.slots[sid_idx(sid)]
        s.key = key
        s.len = <uint32_t>n
        s.refs = 1
        s.ref = 1
        s.meta = 0
        s.state = FILLING
        pg.live += 1
        pg.pinned += 1
        self.payload += n
        self.cls[ci].payload += n
        self.cls[ci].items += 1
        self.pinned_bytes += n
        self.pinned_slots += 1
        out.slot = sid
        out.data = pg.mem + <size_t>sid_idx(sid) * self.cls[ci].size
        out.len = n
        return 1

    cdef size_t slot_size(self, Pin* p) noexcept:
        """The bytes the slot p pins can hold."""
        return self.cls[self.pages[sid_page(p.slot)].cls].size

    cdef bint same_class(self, size_t a, size_t b) noexcept:
        """Blocks of a and of b bytes take slots of one size class."""
        return self._class_for(a if a else 1) == self._class_for(b if b else 1)

    cdef bint refill(self, Pin* p, size_t n) noexcept:
        """Make the FILLING slot p (allocated for another length) hold n bytes, if n
        belongs to its size class (else nothing changes and 0 is returned): a batch
        reserves a slot by the length it expects and learns the real one after the
        read."""
        cdef Page* pg = &self.pages[sid_page(p.slot)]
        cdef Slot* s = &pg.slots[sid_idx(p.slot)]
        if s.state != FILLING or self._class_for(n if n else 1) != pg.cls:
            return 0
        self.payload += n - s.len
        self.cls[pg.cls].payload += n - s.len
        self.pinned_bytes += n - s.len
        s.len = <uint32_t>n
        p.len = n
        return 1

    cdef int publish(self, Pin* p) except -1:
        """Make a filled slot visible to lookups (it stays pinned by the caller)."""
        cdef Slot* s = self._slot(p.slot)
        if u64map_find(&self.h, s.key) >= 0:      # another reader cached it meanwhile
            s.state = DETACHED
            self.detached += 1
            return 0
        u64map_insert(&self.h, s.key, p.slot)
        s.state = USED
        self.inserts += 1
        return 0

    cdef void unpin(self, uint64_t sid) noexcept:
        cdef Page* pg = &self.pages[sid_page(sid)]
        cdef Slot* s = &pg.slots[sid_idx(sid)]
        s.refs -= 1
        if s.refs == 0:
            pg.pinned -= 1
            self.pinned_bytes -= s.len
            self.pinned_slots -= 1
            if s.state == DETACHED or s.state == FILLING:
                self._free_slot(sid)
                if self.pages_held > self.pages_max:
                    try:
                        self._shrink()
                    except BaseException:
                        pass

    cdef void abort(self, uint64_t sid) noexcept:
        """Give back a FILLING slot whose fill failed."""
        self.unpin(sid)

    # ------------------------------------------------------------ python interface

    def lookup(self, key):
        """A pinned BlockView of the cached block, or None."""
        cdef Pin p
        if not self.lookup_pin(key, &p):
            return None
        return BlockView.make(self, p)

    def insert(self, key, data):
        """Copy data into a slot under key, replacing what key held (a pinned old
        block stays readable by its holders); False if it cannot be cached."""
        cdef const uint8_t[::1] mv = data
        cdef Pin p
        self.discard(key)
        if not self.alloc_pin(key, mv.shape[0], &p):
            return False
        if mv.shape[0]:
            memcpy(<void*>p.data, &mv[0], mv.shape[0])
        self.publish(&p)
        self.unpin(p.slot)
        return True

    def erase_file(self, unsigned long long number):
        """Drop every block of one file (called when the file is deleted); a pinned
        block is detached and freed when its last pin goes. Then every class with a
        sparse page gives it back when its blocks fit elsewhere (defrag.pxi)."""
        cdef uint32_t p, i
        cdef int ci
        cdef Slot* s
        for p in range(self.npages_max_alloc):
            if self.pages[p].mem == NULL or self.pages[p].cls < 0:
                continue
            for i in range(self.pages[p].nslots):
                s = &self.pages[p].slots[i]
                if s.state == USED and (s.key >> 40) == number:
                    u64map_delete(&self.h, s.key)
                    self._unhashed(sid_of(p, i))
        for ci in range(self.nclasses - 1, -1, -1):    # larger classes first: a class
            slab_consolidate(self, ci)                # spills only into larger ones

    def set_capacity(self, size_t capacity):
        """Grow or shrink; shrinking releases pages (unpinned ones) to the OS now."""
        self.capacity = capacity
        self._set_pages_max()

    def reserve(self, long long nbytes):
        """Charge (or with a negative count, uncharge) bytes held outside the slabs
        (index and filter blocks) against the capacity."""
        if nbytes < 0 and <size_t>(-nbytes) > self.reserved:
            self.reserved = 0
        else:
            self.reserved += nbytes
        self._set_pages_max()

    def __len__(self):
        return self.h.count

    @property
    def charge(self):
        return self.payload

    def metadata_bytes(self):
        """Bytes of bookkeeping: slot tables, the hash, class stacks, the page table."""
        return slab_metadata_bytes(self)

    def stats(self):
        return slab_stats(self)

    def check(self):
        """Assert the invariants of the module docstring (tests call this)."""
        return slab_check(self)


include "classes.pxi"

include "defrag.pxi"

include "report.pxi"

include "views.pxi"

include "lru.pxi"
