# SlabCache's defragmentation after erasures (included by cache.pyx, which has the
# cimports): when a file's blocks go, free slots are left scattered over the pages
# of every class. slab_consolidate empties a class's sparsest page by moving its
# blocks into free slots elsewhere and gives the page back to the OS: free slots of
# the same class first, then free slots of the classes just above it (slots at most
# SPILL times as large), so that a class left with a few blocks in a page, or with
# less than a page's worth of free slots, can still give a page back. A move never
# grows the memory held: the slots a block moves to are held already.
#
# Thread safety: called by SlabCache.erase_file, under the GIL, which it never
# releases (like SlabCache's methods). Holds no state.
# Invariants: 1. only unpinned pages are emptied (a pinned slot never moves,
# SlabCache invariant 3); 2. a block moves to a FREE slot at least as large (a
# slot's len never exceeds its class's size); 3. each pass releases one page, and
# a block only moves to a class at least as large as its own, so the passes end.



cdef long long sparsest_page(SlabCache cache, int ci) noexcept:
    """The page of class ci with the fewest blocks and no pinned slot; -1 if none."""
    cdef SizeClass* c = &cache.cls[ci]
    cdef uint32_t j, p, best = 0xFFFFFFFFU
    cdef long long victim = -1
    for j in range(c.npages):
        p = c.pages[j]
        if cache.pages[p].pinned == 0 and cache.pages[p].live < best:
            victim, best = p, cache.pages[p].live
    return victim


cdef uint64_t listed_on_page(SizeClass* c, uint32_t p) noexcept:
    """How many slots of page p are on class c's free stack."""
    cdef uint64_t j, n = 0
    for j in range(c.nfree):
        if sid_page(c.free[j]) == p:
            n += 1
    return n


cdef void move_block(SlabCache cache, uint32_t p, uint32_t i, uint64_t dst, int cj) noexcept:
    """Move the USED, unpinned block in slot i of page p into FREE slot dst of class
    cj (already taken off cj's free stack): contents, hash entry, CLOCK bit, meta
    mark and the classes' counts follow it."""
    cdef Page* vp = &cache.pages[p]
    cdef SizeClass* c = &cache.cls[vp.cls]
    cdef SizeClass* d = &cache.cls[cj]
    cdef Slot* s = &vp.slots[i]
    cdef Page* dp = &cache.pages[sid_page(dst)]
    cdef Slot* t = &dp.slots[sid_idx(dst)]
    memcpy(dp.mem + <size_t>sid_idx(dst) * d.size, vp.mem + <size_t>i * c.size, s.len)
    t.key, t.len, t.refs, t.ref, t.state, t.meta = s.key, s.len, 0, s.ref, USED, s.meta
    dp.live += 1
    cache.h.vals[u64map_find(&cache.h, s.key)] = dst
    if d != c:
        c.items -= 1
        c.payload -= s.len
        d.items += 1
        d.payload += s.len
    s.state = FREE
    s.meta = 0
    vp.live -= 1
    cache.relocated += 1


cdef int slab_consolidate(SlabCache cache, int ci) except -1:
    """While the blocks of class ci's sparsest unpinned page fit in free slots of
    its other pages and of the classes up to SPILL times larger (c.spill), move
    them there (own class first, then the smallest larger class) and release the
    page to the OS. Returns the pages released."""
    cdef SizeClass* c = &cache.cls[ci]
    cdef int top = c.spill, cj, released = 0
    cdef long long victim
    cdef uint64_t room
    cdef uint32_t i
    cdef Page* vp
    while c.npages:
        victim = sparsest_page(cache, ci)
        if victim < 0:
            break
        vp = &cache.pages[victim]
        room = c.nfree - listed_on_page(c, <uint32_t>victim)   # own free slots elsewhere
        for cj in range(ci + 1, top + 1):
            room += cache.cls[cj].nfree
        if room < vp.live:
            break
        cache._drop_free_of_page(c, <uint32_t>victim)   # its own free slots are no targets
        cj = ci
        for i in range(vp.nslots):
            if vp.slots[i].state != USED:
                continue
            while cache.cls[cj].nfree == 0:       # room >= live: cj stays <= top
                cj += 1
            cache.cls[cj].nfree -= 1
            move_block(cache, <uint32_t>victim, i, cache.cls[cj].free[cache.cls[cj].nfree], cj)
        cache._release_page(<uint32_t>victim)      # empty now: back to the OS
        cache.pages_defragmented += 1
        released += 1
    return released
