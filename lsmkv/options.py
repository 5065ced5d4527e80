"""DB options: names, defaults and validation.

Every option has a default; an unknown name raises TypeError and a bad value
ValueError (or TypeError for a wrong type), each naming the option.
"""
import os
import time
from dataclasses import dataclass, field, fields

KiB = 1024
MiB = 1024 * KiB
MAX_DEFAULT_TTL = 1e12     # seconds (~31,700 years): now + it stays far inside an expiry's int64 of ms


def _int(name, v, lo, hi=None):
    if isinstance(v, bool) or not isinstance(v, int):
        raise TypeError(f"option {name} must be an int, not {type(v).__name__}")
    if v < lo or (hi is not None and v > hi):
        rng = f">= {lo}" if hi is None else f"in [{lo}, {hi}]"
        raise ValueError(f"option {name} must be {rng}, got {v}")


@dataclass
class Options:
    """Tunable settings of a DB. See docs/tuning.md for what each one trades.

    Each field below has a default; pass an Options, keyword arguments, or both
    (keywords win) to DB(). Values are checked when the Options is built.

    >>> import lsmkv, tempfile
    >>> opts = lsmkv.Options(write_buffer_size=8 << 20, block_cache_size=16 << 20,
    ...                      compression="zstd", bloom_bits_per_key=10)
    >>> opts.block_size, opts.max_write_buffer_number     # defaults
    (4096, 2)
    >>> with lsmkv.DB(tempfile.mkdtemp(), opts, block_size=16 << 10) as db:
    ...     db.options.write_buffer_size, db.options.block_size
    (8388608, 16384)
    >>> with lsmkv.DB(tempfile.mkdtemp(), cache_index_and_filter_blocks=True,
    ...               pin_l0_index_and_filter=False) as db:    # index/filter blocks: cache blocks
    ...     db.put(b"k", b"v"); db.flush()
    ...     bc = db.stats()["block_cache"]
    ...     db.get(b"k"), db.memory_usage()["index_filter"], bc["index_filter_cached"] > 0
    (b'v', 0, True)
    >>> lsmkv.Options(block_size=100)
    Traceback (most recent call last):
      ...
    ValueError: option block_size must be in [256, 67108864], got 100
    >>> lsmkv.Options(compression="lz4")
    Traceback (most recent call last):
      ...
    ValueError: option compression must be 'zstd' or 'none', got 'lz4'
    >>> lsmkv.Options(bottommost_compression_level=23)
    Traceback (most recent call last):
      ...
    ValueError: option bottommost_compression_level must be in [-7, 22], got 23
    >>> lsmkv.Options(wal_mmap="yes")
    Traceback (most recent call last):
      ...
    TypeError: option wal_mmap must be a bool
    >>> lsmkv.DB(tempfile.mkdtemp(), write_buffer=1 << 20)
    Traceback (most recent call last):
      ...
    TypeError: unknown option 'write_buffer'
    """
    write_buffer_size: int = 64 * MiB          # memtable size that triggers a flush
    max_write_buffer_number: int = 2           # memtables (active + immutable) before writers wait
    block_size: int = 4 * KiB                  # uncompressed data block target
    block_restart_interval: int = 16
    compression: str = "zstd"                  # 'zstd' | 'none'
    compression_level: int = -1                # zstd level; negative levels decode ~3x faster (docs/tuning)
    compression_dict_bytes: int = 16 * KiB     # zstd dictionary per compaction output; 0 disables
    bottommost_compression_level: object = None  # zstd level of compaction outputs at the bottommost
                                               # level (most of the data, rewritten least); None:
                                               # compression_level. 3: ~13% smaller, a cache miss
                                               # decodes ~2.5x slower (docs/tuning "Smaller files")
    bloom_bits_per_key: int = 10               # 0 disables bloom filters
    block_cache_size: int = 32 * MiB           # bytes of uncompressed blocks cached (+ index/filter charged)
    block_cache: object = "slab"               # 'slab': slab pages, size classes, pinned views; 'lru': bytes LRU;
                                               # an lsmkv.Cache: shared with other DBs (block_cache_size unused)
    slab_page_size: int = 1 * MiB              # slab page (halved, down to 64 KiB, for caches under 256 pages)
    slab_growth_factor: float = 1.08           # size-class growth (classes then widen to fill their pages)
    cache_index_and_filter_blocks: bool = False  # True: index/filter blocks are slab-cache blocks
                                               # (evictable, reloaded on a miss); False: resident
                                               # per open table, charged to the cache. 'lru': resident
    pin_l0_index_and_filter: bool = True       # with the above: L0 tables' index/filter stay resident
    target_file_size_base: int = 64 * MiB      # compaction output file size
    level0_file_num_compaction_trigger: int = 4  # L0 files that start a background compaction
    read_triggered_compaction: bool = True     # also merge L0 into L1 once reads spent on its overlapping
                                               # runs what the merge costs (LevelDB's seek compaction;
                                               # lsmkv.engine.compaction.read_compaction_units)
    level0_slowdown_writes_trigger: int = 20   # L0 files at which writes are paced to delayed_write_rate
    level0_stop_writes_trigger: int = 36       # L0 files at which writes wait for compaction
    delayed_write_rate: int = 16 * MiB         # bytes/s allowed at the slowdown trigger (1/16 near stop)
    max_bytes_for_level_base: int = 256 * MiB  # target size of L1
    max_bytes_for_level_multiplier: int = 10   # each level's target is this many times the one above
    wal_preallocate: int = 0                   # a log file's first size (and largest step if > 1 MiB); 0: 64 KiB
    wal_mmap: bool = True                      # False: one write() per record instead of a memcpy
    mmap_reads: bool = False                   # True: read tables through a mapping (RSS then holds
                                               # the touched file pages); False: pread into pooled buffers
    db_write_buffer_size: int = 0              # with column families: bytes every family's active memtable
                                               # holds together before the largest is flushed (RocksDB's
                                               # db_write_buffer_size); 0: write_buffer_size
    memory_budget: int = 0                     # >0: memtables + block cache share this many bytes
    adaptive_memory: bool = False              # with memory_budget: move budget between memtables and
                                               # the cache by the load (lsmkv/engine/adaptive.py); the write
                                               # buffer starts at budget/64, not write_buffer_size
    adaptive_interval: float = 0.5             # seconds between two samples of the adaptive controller
    write_buffer_manager: object = None        # an lsmkv.WriteBufferManager: one memtable limit for several DBs
    background_cpus: object = None             # CPU ids for flush/compaction/janitor threads and workers
    numa_node: object = None                   # bind background work to this NUMA node's CPUs
    max_background_jobs: int = 2               # one flush job + (this - 1) compaction jobs (shared pool)
    compaction_worker: str = "process"         # 'process': merge in a child process; 'thread': in-process
    background_priority: str = "low"           # 'low': flush/compaction threads and worker at nice 19; 'normal'
    read_only: bool = False                    # True: no LOCK, nothing written; reads as of the open
    secondary: object = None                   # a directory of its own: read-only, db.catch_up() follows
                                               # the primary (lsmkv/engine/follower.py)
    catch_up_interval: float = 0.0             # with secondary: catch up every this many seconds (0: only
                                               # when db.catch_up() is called)
    create_if_missing: bool = True             # False: DatabaseNotFoundError unless CURRENT exists
    error_if_exists: bool = False              # True: DatabaseExistsError if CURRENT exists
    clock: object = field(default=time.time)   # seconds; used for TTL
    default_ttl: object = None                 # seconds: a put given no ttl expires this long after it
                                               # is written (per column family too, as RocksDB's TTL
                                               # column families); None: such a put never expires
    merge_operator: object = None              # db.merge()'s operator: 'uint64add', 'append', ('append', delim),
                                               # 'max', an lsmkv.MergeOperator or a named callable
                                               # f(key, existing, operands) -> bytes (lsmkv/core/merge.pyx)

    def __post_init__(self):
        self.validate()

    def validate(self):
        """Check every field; raise ValueError or TypeError naming the first bad one.
        Called when an Options is built; call it again after changing a field.

        >>> o = Options()
        >>> o.max_write_buffer_number = 1
        >>> o.validate()
        Traceback (most recent call last):
          ...
        ValueError: option max_write_buffer_number must be in [2, 64], got 1
        """
        _int("write_buffer_size", self.write_buffer_size, 64 * KiB)
        _int("max_write_buffer_number", self.max_write_buffer_number, 2, 64)
        _int("db_write_buffer_size", self.db_write_buffer_size, 0)
        _int("block_size", self.block_size, 256, 64 * MiB)
        _int("block_restart_interval", self.block_restart_interval, 1, 1024)
        if self.compression not in ("zstd", "none"):
            raise ValueError(f"option compression must be 'zstd' or 'none', got {self.compression!r}")
        _int("compression_level", self.compression_level, -7, 22)
        if self.bottommost_compression_level is not None:
            _int("bottommost_compression_level", self.bottommost_compression_level, -7, 22)
        _int("compression_dict_bytes", self.compression_dict_bytes, 0, 1 << 20)
        if 0 < self.compression_dict_bytes < 256:
            raise ValueError("option compression_dict_bytes must be 0 or >= 256")
        _int("bloom_bits_per_key", self.bloom_bits_per_key, 0, 64)
        _int("block_cache_size", self.block_cache_size, 0)
        from lsmkv.engine.sharedcache import Cache
        from lsmkv.engine.writebuffers import WriteBufferManager
        if self.write_buffer_manager is not None:
            if not isinstance(self.write_buffer_manager, WriteBufferManager):
                raise TypeError("option write_buffer_manager must be an lsmkv.WriteBufferManager or None")
            if self.adaptive_memory:
                raise ValueError("option adaptive_memory cannot be used with write_buffer_manager: "
                                 "both set the write buffer size")
        if isinstance(self.block_cache, Cache):
            if self.memory_budget:
                raise ValueError("option memory_budget needs a block cache of the DB's own, "
                                 "not a shared lsmkv.Cache (block_cache)")
        elif self.block_cache not in ("slab", "lru"):
            raise ValueError(f"option block_cache must be 'slab', 'lru' or an lsmkv.Cache, "
                             f"got {self.block_cache!r}")
        _int("slab_page_size", self.slab_page_size, 4 * KiB, 1 << 30)
        if isinstance(self.slab_growth_factor, bool) or not isinstance(self.slab_growth_factor, (int, float)):
            raise TypeError("option slab_growth_factor must be a number")
        if not 1.01 <= self.slab_growth_factor <= 4:
            raise ValueError(f"option slab_growth_factor must be in [1.01, 4], got {self.slab_growth_factor}")
        _int("target_file_size_base", self.target_file_size_base, 64 * KiB)
        _int("level0_file_num_compaction_trigger", self.level0_file_num_compaction_trigger, 1)
        _int("level0_slowdown_writes_trigger", self.level0_slowdown_writes_trigger, 1)
        _int("level0_stop_writes_trigger", self.level0_stop_writes_trigger, 1)
        _int("delayed_write_rate", self.delayed_write_rate, 1024)
        _int("max_bytes_for_level_base", self.max_bytes_for_level_base, 64 * KiB)
        _int("max_bytes_for_level_multiplier", self.max_bytes_for_level_multiplier, 2, 100)
        _int("wal_preallocate", self.wal_preallocate, 0)
        _int("memory_budget", self.memory_budget, 0)
        if self.memory_budget and self.memory_budget < 3 * self.write_buffer_size:
            raise ValueError(f"option memory_budget ({self.memory_budget}) must be 0 or at least "
                             f"3 x write_buffer_size ({3 * self.write_buffer_size}): two memtables "
                             f"and a cache share it")
        if not isinstance(self.adaptive_memory, bool):
            raise TypeError("option adaptive_memory must be a bool")
        if self.adaptive_memory and not self.memory_budget:
            raise ValueError("option adaptive_memory needs option memory_budget: it moves that "
                             "budget between memtables and the block cache")
        if self.adaptive_memory and self.block_cache_size == 0:
            raise ValueError("option adaptive_memory needs a block cache (block_cache_size > 0)")
        if (isinstance(self.adaptive_interval, bool) or not isinstance(self.adaptive_interval, (int, float))
                or not 0.01 <= self.adaptive_interval <= 3600):
            raise ValueError(f"option adaptive_interval must be a number of seconds in [0.01, 3600], "
                             f"got {self.adaptive_interval!r}")
        if self.background_cpus is not None:
            try:
                cpus = list(self.background_cpus)
            except TypeError:
                raise TypeError("option background_cpus must be an iterable of CPU ids") from None
            if not cpus or not all(isinstance(c, int) and not isinstance(c, bool) and c >= 0 for c in cpus):
                raise ValueError(f"option background_cpus must be a non-empty set of CPU ids >= 0, "
                                 f"got {self.background_cpus!r}")
        if self.numa_node is not None:
            _int("numa_node", self.numa_node, 0)
        _int("max_background_jobs", self.max_background_jobs, 2, 64)
        if self.compaction_worker not in ("process", "thread"):
            raise ValueError(f"option compaction_worker must be 'process' or 'thread', "
                             f"got {self.compaction_worker!r}")
        if self.background_priority not in ("low", "normal"):
            raise ValueError(f"option background_priority must be 'low' or 'normal', "
                             f"got {self.background_priority!r}")
        for name in ("create_if_missing", "error_if_exists", "wal_mmap", "mmap_reads", "read_triggered_compaction",
                     "cache_index_and_filter_blocks", "pin_l0_index_and_filter", "read_only"):
            if not isinstance(getattr(self, name), bool):
                raise TypeError(f"option {name} must be a bool")
        if self.secondary is not None and not isinstance(self.secondary, (str, bytes, os.PathLike)):
            raise TypeError(f"option secondary must be a directory path, got {self.secondary!r}")
        if not isinstance(self.catch_up_interval, (int, float)) or isinstance(self.catch_up_interval, bool) \
                or not 0 <= self.catch_up_interval <= 86400:
            raise ValueError(f"option catch_up_interval must be seconds in [0, 86400], "
                             f"got {self.catch_up_interval!r}")
        if self.catch_up_interval and self.secondary is None:
            raise ValueError("option catch_up_interval needs secondary=<directory>")
        if self.read_only and self.secondary is not None:
            raise ValueError("options read_only and secondary exclude each other (a secondary is "
                             "read-only already)")
        if self.default_ttl is not None:
            if isinstance(self.default_ttl, bool) or not isinstance(self.default_ttl, (int, float)):
                raise TypeError("option default_ttl must be a number of seconds or None")
            if not 0 < self.default_ttl <= MAX_DEFAULT_TTL:
                raise ValueError(f"option default_ttl must be seconds in (0, {MAX_DEFAULT_TTL:.0e}] "
                                 f"or None, got {self.default_ttl!r}")
        if self.merge_operator is not None:
            from lsmkv.core.merge import resolve
            resolve(self.merge_operator)       # TypeError or ValueError naming the option
        if not callable(self.clock):
            raise TypeError("option clock must be a callable returning seconds")

    @classmethod
    def names(cls):
        """Every option name, in declaration order.

        >>> Options.names()[:3]
        ['write_buffer_size', 'max_write_buffer_number', 'block_size']
        """
        return [f.name for f in fields(cls)]

    @classmethod
    def build(cls, options=None, **kwargs):
        """Options from an Options object and/or keyword overrides (what DB() calls).

        >>> base = Options(block_size=8192)
        >>> o = Options.build(base, bloom_bits_per_key=0)
        >>> o.block_size, o.bloom_bits_per_key, base.bloom_bits_per_key
        (8192, 0, 10)
        >>> Options.build(blocksize=8192)
        Traceback (most recent call last):
          ...
        TypeError: unknown option 'blocksize'
        """
        if options is not None and not isinstance(options, Options):
            raise TypeError(f"options must be an lsmkv.Options, not {type(options).__name__}")
        known = set(cls.names())
        for k in kwargs:
            if k not in known:
                raise TypeError(f"unknown option {k!r}")
        base = {f.name: getattr(options, f.name) for f in fields(cls)} if options else {}
        base.update(kwargs)
        return cls(**base)
