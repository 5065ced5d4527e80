"""Table readers: one open lsmkv.core.table.TableReader per live SST, and the block cache.

The cache is the DB's own, or an lsmkv.Cache shared with other DBs
(lsmkv.engine.sharedcache): then each table's blocks are keyed by an id the
shared cache gives it at open, not by its file number (which other DBs use too),
and close() erases this DB's blocks from it.

Thread safety: `readers` is guarded by the engine mutex for changes; a reader
outside it copies it in one call (list(readers.values())). A reader is opened
(index and filter read) without the mutex by preopen(), then published under
it. The cache is thread-safe itself.

Invariants:
  1. Every table of the current version has a reader in `readers`; a reader
     leaves only when its table is obsolete (drop_unless), and its file closes
     when the last iterator or version holding it drops it.
  2. A reader's `number` is its blocks' id in the cache: the file number, or
     with a shared cache the id it gave (unique in the process).
  3. Whether a table keeps its index and filter in the block cache is decided
     once, at open, by its level (keeps_meta_in_cache): a table never changes
     level.
"""
import os

from lsmkv.core.cache import LRUCache, SlabCache
from lsmkv.core.table import TableReader
from lsmkv.engine import filenames
from lsmkv.engine.sharedcache import Cache


def make_cache(opts):
    """The block cache options ask for, or None."""
    if isinstance(opts.block_cache, Cache):
        return opts.block_cache.cache
    if opts.block_cache_size <= 0:
        return None
    if opts.block_cache == "lru":
        return LRUCache(opts.block_cache_size)
    return SlabCache(opts.block_cache_size, opts.slab_page_size, float(opts.slab_growth_factor))


class Tables:
    """The open tables of one engine and its block cache."""

    def __init__(self, engine):
        self.engine = engine
        self.cache = make_cache(engine.options)   # thread-safe itself
        shared = engine.options.block_cache
        self.shared = shared if isinstance(shared, Cache) else None     # an lsmkv.Cache, or None
        # -- guarded by the engine mutex
        self.readers = {}                          # number -> TableReader, for every SST not yet deleted

    def keeps_meta_in_cache(self, level):
        """Whether a table opened at level keeps its index and filter blocks in the
        block cache (evictable) rather than resident: option
        cache_index_and_filter_blocks, but not for L0 tables while
        pin_l0_index_and_filter (every get reads them)."""
        o = self.engine.options
        return o.cache_index_and_filter_blocks and not (level == 0 and o.pin_l0_index_and_filter)

    def new_reader(self, number, level):
        """A TableReader for table `number` of `level` (reads its index and filter)."""
        e = self.engine
        cache, key_id = self.cache, number
        if self.shared is not None:
            key_id = self.shared.new_table_id()
            if key_id is None:               # ids exhausted: read it uncached
                cache, key_id = None, number
        return TableReader(filenames.table_name(e.path, number), key_id, cache,
                           e.options.mmap_reads, self.keeps_meta_in_cache(level))

    def open(self, number, level):
        """The reader of table `number`, opened if needed (mutex held)."""
        t = self.readers.get(number)
        if t is None:
            t = self.readers[number] = self.new_reader(number, level)
        return t

    def forget_all(self):
        """A follower found its database replaced (destroyed and made again, or
        restored): the same file numbers now name other files. Drop every reader,
        and start a cache of its own afresh, so that a reader an old iterator still
        holds never meets a new file's block under its number (a shared cache's ids
        are never reused, so it is kept). Mutex held."""
        self.drop_unless(set())
        if self.shared is None:
            self.cache = make_cache(self.engine.options)

    def preopen(self, numbers, level):
        """Open new tables of level before the mutex is taken to install them."""
        opened = [(n, self.new_reader(n, level)) for n in numbers]
        with self.engine.mutex:
            for n, t in opened:
                self.readers.setdefault(n, t)

    def drop_unless(self, live):
        """Forget the readers of tables not in live (mutex held), dropping their
        cached blocks. Returns [(number, file size)] of those dropped."""
        out = []
        for number in [n for n in self.readers if n not in live]:
            t = self.readers.pop(number)   # its file closes when the last reader drops it
            out.append((number, t.file_size))
            if self.cache is not None:
                self.cache.erase_file(t.number)
        return out

    def close(self):
        """At close (mutex held): a shared cache forgets this DB's blocks (its own
        cache goes with the engine)."""
        if self.shared is not None and self.cache is not None:
            for t in list(self.readers.values()):
                self.cache.erase_file(t.number)

    def total_file_bytes(self):
        """Bytes on disk of every table not yet deleted."""
        total = 0
        for number in list(self.readers):
            try:
                total += os.path.getsize(filenames.table_name(self.engine.path, number))
            except OSError:
                pass
        return total

    def release_inherited(self):
        """close() in a fork() child: drop the readers and the cache inherited."""
        self.readers = {}
        self.cache = None
