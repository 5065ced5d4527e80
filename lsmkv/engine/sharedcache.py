"""lsmkv.Cache: one block cache several DBs share (RocksDB passes one Cache to many DBs).

Options(block_cache=lsmkv.Cache(capacity)) makes a DB keep its blocks in that cache
instead of one of its own; every DB given the same Cache shares its capacity, and
its resident index and filter blocks are charged to it. A block's cache key is
(table id << 40 | offset); a DB's own cache uses the table's file number as the
id, but file numbers repeat across DBs, so a shared cache hands each table a
process-unique id when the table is opened (new_table_id), never reused.

Thread safety: the underlying cache is thread-safe itself (its methods run under
the GIL without releasing it); ids come from an itertools.count, whose next() the
GIL makes whole. No lock, so a fork() child can go on using the Cache it
inherited: its own copy, whose new ids follow the parent's (blocks the parent's
iterators had pinned stay pinned in the child's copy).

Invariants:
  1. No two tables opened through one Cache get the same id, so no DB ever reads
     another DB's block (nor a deleted table's: ids are not reused).
  2. Ids fit the key's 24 bits; past 2**24 - 1 tables opened, new tables are read
     without the cache (counted in uncached_tables) rather than risk a collision.
"""
import itertools

from lsmkv.core.cache import LRUCache, SlabCache

MiB = 1 << 20
MAX_TABLE_ID = (1 << 24) - 1


class Cache:
    """A block cache of `capacity` bytes to share between DBs:
    DB(path, block_cache=cache). kind: 'slab' (the default cache: slab pages,
    size classes, pinned views) or 'lru'. A DB with a shared cache cannot use
    memory_budget (which resizes a cache of the DB's own).

    >>> import lsmkv, tempfile
    >>> cache = lsmkv.Cache(8 << 20)
    >>> a = lsmkv.DB(tempfile.mkdtemp(), block_cache=cache)
    >>> b = lsmkv.DB(tempfile.mkdtemp(), block_cache=cache)
    >>> a.stats()["block_cache"]["capacity"] == b.stats()["block_cache"]["capacity"] == 8 << 20
    True
    >>> a.close(); b.close()
    """

    def __init__(self, capacity, kind="slab", slab_page_size=MiB, slab_growth_factor=1.08):
        if isinstance(capacity, bool) or not isinstance(capacity, int) or capacity <= 0:
            raise ValueError(f"lsmkv.Cache: capacity must be an int > 0, got {capacity!r}")
        if kind == "slab":
            self.cache = SlabCache(capacity, slab_page_size, float(slab_growth_factor))
        elif kind == "lru":
            self.cache = LRUCache(capacity)
        else:
            raise ValueError(f"lsmkv.Cache: kind must be 'slab' or 'lru', got {kind!r}")
        self.kind = kind
        self.ids = itertools.count(1)
        self.uncached_tables = 0         # tables opened past MAX_TABLE_ID (read uncached)

    def new_table_id(self):
        """A process-unique id for a table's blocks, or None when they are exhausted."""
        i = next(self.ids)
        if i > MAX_TABLE_ID:
            self.uncached_tables += 1
            return None
        return i

    @property
    def capacity(self):
        """Bytes the cache may hold (blocks, plus index and filter blocks charged)."""
        return self.cache.capacity

    def stats(self):
        """The cache's counters (as stats()["block_cache"] of every DB using it)."""
        return dict(self.cache.stats(), shared=True, uncached_tables=self.uncached_tables)
