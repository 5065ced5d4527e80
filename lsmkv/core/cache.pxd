cimport cython
from libc.stdint cimport uint8_t, int16_t, uint16_t, uint32_t, uint64_t
from lsmkv.core.u64map cimport U64Map

ctypedef struct Slot:
    uint64_t key
    uint32_t len        # payload bytes held (<= the class's slot size)
    uint32_t refs       # pins: views and block iterators standing on it
    uint8_t state       # FREE, USED (in the hash), DETACHED (erased while pinned), FILLING
    uint8_t ref         # CLOCK reference bit
    uint8_t meta        # 1: an index or filter block (counted in SlabCache.meta_payload)

ctypedef struct Page:    # 32 bytes: a lookup indexes pages[] by a shift
    uint8_t* mem        # units * page_size bytes (mmap'd), or NULL when the page is not held
    int16_t cls         # size class, -1 when unassigned (classes are < 32768)
    uint16_t units      # pages of page_size it spans (its class's units); 0 when not held
    uint32_t nslots
    uint32_t live       # slots not FREE
    uint32_t pinned     # slots with refs > 0
    Slot* slots

ctypedef struct SizeClass:   # padded to 128 bytes: a lookup indexes cls[] by a shift
    uint32_t size       # slot bytes
    uint32_t per_page   # slots per page (per span of `units` pages)
    uint32_t units      # pages of page_size a page of this class spans (1, 2, 4 or 8)
    int spill           # the largest class whose slots may take this class's blocks (SPILL)
    uint32_t* pages     # indexes of the pages given to this class
    uint32_t npages, pcap
    uint64_t* free      # stack of free slot ids
    uint64_t nfree, fcap
    uint32_t hand_p, hand_s   # CLOCK hand: position in pages[], slot index
    uint64_t items, payload
    unsigned long long hits, evictions, win_evictions
    uint8_t pad[24]     # (to 128 bytes)

# Lookups of index and filter blocks (TableReader counts them in its cache's
# struct; a resident block counts as a hit). Not part of hits/misses, which
# count data blocks only.
ctypedef struct MetaCounts:
    unsigned long long index_hits, index_misses, filter_hits, filter_misses

ctypedef struct Pin:
    uint64_t slot       # (page << 32) | index
    const uint8_t* data
    size_t len


@cython.final      # no subclass: its cdef methods are called directly, not through a vtable
cdef class SlabCache:
    cdef readonly size_t capacity, page_size, reserved
    cdef readonly double growth_factor
    cdef Page* pages
    cdef uint32_t npages_max_alloc   # length of the pages array
    cdef readonly uint32_t pages_held
    cdef int nclasses
    cdef SizeClass* cls
    cdef U64Map h                    # block key -> slot id (u64map.pxd)
    cdef readonly uint64_t payload, pinned_bytes, pinned_slots
    cdef readonly uint64_t meta_payload   # payload of index and filter blocks (Slot.meta)
    cdef MetaCounts meta
    cdef readonly unsigned long long hits, misses, inserts, evictions, slab_moves, too_large
    cdef readonly unsigned long long insert_failures, pages_released, detached
    cdef readonly unsigned long long pages_defragmented, relocated, class_starved
    cdef unsigned long long win_count, rebalance_every
    cdef uint32_t page_hand          # CLOCK hand over pages, for donors (_clock_page)
    cdef uint32_t pages_max          # pages allowed by capacity - reserved

    cdef Slot* _slot(self, uint64_t sid) noexcept
    cdef int _class_for(self, size_t n) noexcept
    cdef int _push_free(self, SizeClass* c, uint64_t sid) except -1
    cdef int _set_pages_max(self) except -1
    cdef int _assign(self, uint32_t p, int ci) except -1
    cdef void _unassign(self, uint32_t p) noexcept
    cdef void _clear_slot(self, Page* pg, Slot* s, SizeClass* c) noexcept
    cdef void _drop_free_of_page(self, SizeClass* c, uint32_t p) noexcept
    cdef bint _give_page(self, uint32_t p, int ci) except -1
    cdef void _release_page(self, uint32_t p) noexcept
    cdef int _coldest_class(self, int exclude) noexcept
    cdef long long _unpinned_page_of(self, int ci) noexcept
    cdef long long _clock_page(self, int exclude, double below) noexcept
    cdef long long _new_page(self, uint32_t units) except -2
    cdef long long _donor_page(self, int exclude) noexcept
    cdef bint _move_page_to(self, int ci) except -1
    cdef bint _rebalance(self, int ci) except -1
    cdef uint64_t _evict(self, int ci) noexcept
    cdef uint64_t _get_slot(self, int ci, bint quiet=*) except? 0xFFFFFFFFFFFFFFFE
    cdef void _free_slot(self, uint64_t sid) noexcept
    cdef int _shrink(self) except -1
    cdef int _pin_entry(self, long long i, Pin* out) noexcept
    cdef int lookup_pin(self, uint64_t key, Pin* out) except -1
    cdef int lookup_pin_meta(self, uint64_t key, Pin* out) noexcept
    cdef void mark_meta(self, Pin* p) noexcept
    cdef void discard(self, uint64_t key) noexcept
    cdef void _unhashed(self, uint64_t sid) noexcept
    cdef int alloc_pin(self, uint64_t key, size_t n, Pin* out, bint quiet=*) except -1
    cdef int publish(self, Pin* p) except -1
    cdef size_t slot_size(self, Pin* p) noexcept
    cdef bint same_class(self, size_t a, size_t b) noexcept
    cdef bint refill(self, Pin* p, size_t n) noexcept
    cdef void unpin(self, uint64_t slot) noexcept
    cdef void abort(self, uint64_t slot) noexcept


@cython.final
cdef class ValueView:
    cdef SlabCache cache        # the cache whose slot it pins, or None
    cdef uint64_t slot
    cdef object owner           # the bytes object holding the value, when not pinned
    cdef const uint8_t* p
    cdef size_t n
    cdef bint released
    cdef int exports
    cdef Py_ssize_t shape[1]
    @staticmethod
    cdef ValueView pinned_slot(SlabCache cache, uint64_t slot, const uint8_t* p, size_t n)
    @staticmethod
    cdef ValueView of(object owner, const uint8_t* p, size_t n)
    cdef void _drop(self) noexcept


cdef class LRUCache:
    cdef object _map
    cdef readonly size_t capacity, charge, reserved
    cdef readonly unsigned long long hits, misses, inserts, evictions
    cdef MetaCounts meta
    cpdef object lookup(self, object key)
    cpdef insert(self, object key, bytes block)
    cdef _evict(self)
