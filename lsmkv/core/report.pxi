# SlabCache's reports (included by cache.pyx, which has the cimports): the bytes of
# its bookkeeping (metadata_bytes), stats() and check(), which asserts the
# invariants listed in the module docstring. Cold paths: tests and DB.stats().
#
# Thread safety: each runs under the GIL without releasing it, like SlabCache's
# methods, so it sees the cache between two operations. Holds no state.

cdef size_t slab_metadata_bytes(SlabCache cache) noexcept:
    cdef int i
    cdef uint32_t p
    cdef size_t n = (cache.h.mask + 1) * 16 + cache.npages_max_alloc * sizeof(Page)
    n += cache.nclasses * sizeof(SizeClass)
    for i in range(cache.nclasses):
        n += cache.cls[i].pcap * 4 + cache.cls[i].fcap * 8
    for p in range(cache.npages_max_alloc):
        n += cache.pages[p].nslots * sizeof(Slot)
    return n


cdef dict slab_stats(SlabCache cache):
    cdef SizeClass* sc
    cdef int i
    total = cache.hits + cache.misses
    held = <unsigned long long>cache.pages_held * cache.page_size
    classes = []
    for i in range(cache.nclasses):
        sc = &cache.cls[i]
        if sc.npages == 0 and sc.items == 0:
            continue
        cap = <unsigned long long>sc.npages * sc.per_page
        classes.append({"size": sc.size, "pages": sc.npages, "span": sc.units, "items": sc.items, "slots": cap,
                        "fill": (sc.items / cap) if cap else 0.0,
                        "payload": sc.payload, "hits": sc.hits, "evictions": sc.evictions})
    meta = slab_metadata_bytes(cache)
    return {
        "kind": "slab",
        "capacity": cache.capacity,
        "usage": cache.payload,
        "held": held,
        "reserved": cache.reserved,
        "overhead": held - cache.payload + meta,
        "metadata": meta,
        "entries": cache.h.count,
        "hits": cache.hits,
        "misses": cache.misses,
        "hit_ratio": (cache.hits / total) if total else 0.0,
        "inserts": cache.inserts,
        "evictions": cache.evictions,
        "pinned_bytes": cache.pinned_bytes,
        "pinned_blocks": cache.pinned_slots,
        "index_hits": cache.meta.index_hits,
        "index_misses": cache.meta.index_misses,
        "filter_hits": cache.meta.filter_hits,
        "filter_misses": cache.meta.filter_misses,
        "index_filter_cached": cache.meta_payload,
        "index_filter_resident": cache.reserved,
        "page_size": cache.page_size,
        "pages": cache.pages_held,
        "pages_max": cache.pages_max,
        "pages_over": max(0, <long long>cache.pages_held - <long long>cache.pages_max),
        "pages_released": cache.pages_released,
        "slab_moves": cache.slab_moves,
        "pages_defragmented": cache.pages_defragmented,
        "blocks_relocated": cache.relocated,
        "growth_factor": cache.growth_factor,
        "fragmentation_ratio": (held / cache.payload) if cache.payload else None,
        "too_large": cache.too_large,
        "insert_failures": cache.insert_failures,
        "class_starved": cache.class_starved,
        "classes": classes,
    }


cdef bint slab_check(SlabCache cache) except -1:
    cdef uint64_t payload = 0, used = 0, pinned = 0, meta = 0, sid
    cdef SizeClass* sc
    cdef uint32_t p, i
    cdef Slot* s
    freeset = set()
    assert sizeof(Page) == 32 and sizeof(SizeClass) == 128, (sizeof(Page), sizeof(SizeClass))
    for ci in range(cache.nclasses):
        sc = &cache.cls[ci]
        assert ci == 0 or sc.size > cache.cls[ci - 1].size
        assert sc.per_page * sc.size <= sc.units * cache.page_size < sc.per_page * (sc.size + 16), ci
    assert cache.cls[cache.nclasses - 1].size == cache.page_size
    for ci in range(cache.nclasses):
        for j in range(cache.cls[ci].nfree):
            sid = cache.cls[ci].free[j]
            assert sid not in freeset, f"slot {sid:#x} twice on a free stack"
            freeset.add(sid)
            assert cache.pages[sid_page(sid)].cls == ci, f"slot {sid:#x} on the wrong class's stack"
    cdef uint64_t units = 0
    for p in range(cache.npages_max_alloc):
        if cache.pages[p].mem != NULL:
            units += cache.pages[p].units
        if cache.pages[p].cls < 0:
            continue
        assert cache.pages[p].mem != NULL
        assert cache.pages[p].units == cache.cls[cache.pages[p].cls].units
        for i in range(cache.pages[p].nslots):
            s = &cache.pages[p].slots[i]
            sid = sid_of(p, i)
            if s.state == FREE:
                assert sid in freeset, f"free slot {sid:#x} not on its free stack"
                continue
            assert sid not in freeset, f"slot {sid:#x} in use and on the free stack"
            payload += s.len
            if s.meta:
                meta += s.len
            if s.refs:
                pinned += s.len
            if s.state == USED:
                used += 1
                k = u64map_find(&cache.h, s.key)
                assert k >= 0 and cache.h.vals[k] == sid, f"slot {sid:#x} missing from the hash"
            else:
                assert s.refs > 0, f"detached or filling slot {sid:#x} without a pin"
            assert s.len <= cache.cls[cache.pages[p].cls].size
    assert payload == cache.payload, (payload, cache.payload)
    assert pinned == cache.pinned_bytes, (pinned, cache.pinned_bytes)
    assert meta == cache.meta_payload, (meta, cache.meta_payload)
    assert used == cache.h.count, (used, cache.h.count)
    assert units == cache.pages_held, (units, cache.pages_held)
    assert cache.payload <= <unsigned long long>cache.pages_held * cache.page_size
    assert cache.hits + cache.misses >= 0
    return True
