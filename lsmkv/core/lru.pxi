# LRUCache (block_cache='lru'): the plain LRU of bytes objects, kept for comparison
# (included by cache.pyx).
#
# Thread safety: as SlabCache's: every method runs under the GIL without releasing it.
# Invariants: charge == the sum of the cached blocks' charges; charge + reserved stays
# at or below capacity after each insert (the oldest blocks are evicted).

cdef class LRUCache:
    """The plain LRU of bytes objects (block_cache='lru'), for comparison. Index and
    filter blocks are never in it: tables hold them resident and charge them here
    (reserve), also with cache_index_and_filter_blocks; they count as hits in
    index_hits and filter_hits."""

    def __cinit__(self, size_t capacity):
        self._map = OrderedDict()
        self.capacity = capacity
        self.charge = 0
        self.reserved = 0
        self.hits = self.misses = self.inserts = self.evictions = 0
        self.meta.index_hits = self.meta.index_misses = 0
        self.meta.filter_hits = self.meta.filter_misses = 0

    cpdef object lookup(self, object key):
        """The cached block or None; a hit becomes the most recently used."""
        b = self._map.get(key)
        if b is None:
            self.misses += 1
            return None
        self._map.move_to_end(key)
        self.hits += 1
        return b

    cpdef insert(self, object key, bytes block):
        cdef size_t n = len(block)
        if n > self.capacity:
            return
        old = self._map.pop(key, None)
        if old is not None:
            self.charge -= len(old)
        self._map[key] = block
        self.charge += n
        self.inserts += 1
        self._evict()

    cdef _evict(self):
        cdef size_t limit = self.capacity - self.reserved if self.capacity > self.reserved else 0
        while self.charge > limit and self._map:
            _, victim = self._map.popitem(last=False)
            self.charge -= len(victim)
            self.evictions += 1

    def erase_file(self, unsigned long long number):
        """Drop every block of one file (called when the file is deleted)."""
        lo = number << 40
        hi = (number + 1) << 40
        for k in [k for k in self._map if lo <= k < hi]:
            self.charge -= len(self._map.pop(k))

    def set_capacity(self, size_t capacity):
        self.capacity = capacity
        self._evict()

    def reserve(self, long long nbytes):
        if nbytes < 0 and <size_t>(-nbytes) > self.reserved:
            self.reserved = 0
        else:
            self.reserved += nbytes
        self._evict()

    def __len__(self):
        return len(self._map)

    def stats(self):
        total = self.hits + self.misses
        # a bytes object costs its payload plus ~33 bytes of header; the OrderedDict ~100 per entry
        meta = len(self._map) * (33 + 100)
        return {
            "kind": "lru",
            "capacity": self.capacity,
            "usage": self.charge,
            "held": self.charge,
            "reserved": self.reserved,
            "overhead": meta,
            "metadata": meta,
            "entries": len(self._map),
            "hits": self.hits,
            "misses": self.misses,
            "hit_ratio": (self.hits / total) if total else 0.0,
            "inserts": self.inserts,
            "evictions": self.evictions,
            "pinned_bytes": 0,
            "index_hits": self.meta.index_hits,
            "index_misses": self.meta.index_misses,
            "filter_hits": self.meta.filter_hits,
            "filter_misses": self.meta.filter_misses,
            "index_filter_cached": 0,
            "index_filter_resident": self.reserved,
            "fragmentation_ratio": None,
            "slab_moves": 0,
        }
