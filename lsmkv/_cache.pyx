# cython: language_level=3
"""Block cache: uncompressed blocks keyed by (file number << 40 | offset).

This is the plain LRU of bytes objects (option block_cache='lru'); the
slab-managed cache of the memory issue will sit beside it behind the same
lookup()/insert() interface.

Thread safety: every method runs under the GIL without releasing it, so each
call is atomic with respect to other Python threads.

Invariants:
  1. charge (the sum of cached blocks' sizes) <= capacity after every insert.
  2. hits + misses == number of lookup() calls.
"""
from collections import OrderedDict


cdef class LRUCache:
    cdef object _map
    cdef readonly size_t capacity, charge
    cdef readonly unsigned long long hits, misses, inserts, evictions

    def __cinit__(self, size_t capacity):
        self._map = OrderedDict()
        self.capacity = capacity
        self.charge = 0
        self.hits = self.misses = self.inserts = self.evictions = 0

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
        while self.charge > self.capacity:
            _, victim = self._map.popitem(last=False)
            self.charge -= len(victim)
            self.evictions += 1

    def erase_file(self, unsigned long long number):
        """Drop every block of one file (called when the file is deleted)."""
        lo = number << 40
        hi = (number + 1) << 40
        for k in [k for k in self._map if lo <= k < hi]:
            self.charge -= len(self._map.pop(k))

    def __len__(self):
        return len(self._map)

    def stats(self):
        total = self.hits + self.misses
        return {
            "kind": "lru",
            "capacity": self.capacity,
            "usage": self.charge,
            "entries": len(self._map),
            "hits": self.hits,
            "misses": self.misses,
            "hit_ratio": (self.hits / total) if total else 0.0,
            "evictions": self.evictions,
        }
