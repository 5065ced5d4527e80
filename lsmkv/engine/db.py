"""The DB handle (DB) and Snapshot: the public API. The engine behind a handle is
lsmkv.engine.engine.Engine.

DB is what users hold. Its per-operation paths (put, get, delete, write,
iteration) are compiled in lsmkv.core.dbcore.CoreDB, which DB subclasses, and call
straight into the engine's compiled Core. Everything else a DB method does is the
engine's (open, flush, compaction, stats, close).

Thread safety: any number of threads may call any method; see
lsmkv.engine.engine for the locks.

Invariants:
  1. The handle has no state of its own besides its engine (core): the public
     engine attributes it shows (ENGINE_ATTRIBUTES) read through, and nothing
     else of the engine is reachable from the handle.
  2. Nothing but the handle references the handle from the engine side, so when
     the last user reference goes, its finalizer closes the engine.
"""
from contextlib import contextmanager

from lsmkv.core.dbcore import CoreDB, cursor_at, iterate_at
from lsmkv.engine import checkpoint as _checkpoint
from lsmkv.engine import estimates as _estimates
from lsmkv.engine import stats as _stats
from lsmkv.engine.mapping import MappingMethods
from lsmkv.engine.engine import Engine
from lsmkv.engine.family import ColumnFamily
from lsmkv.errors import ClosedError, FollowerError

MODE_ITEMS, MODE_KEYS, MODE_VALUES = 0, 1, 2

# the engine attributes that are part of the DB API, read through the handle
ENGINE_ATTRIBUTES = frozenset({"path", "options", "closed", "clock", "write_buffer_size",
                               "sv", "last_seq", "bg_error", "l0_files", "l0_slowdown", "l0_stop"})


class Snapshot:
    """A consistent read-only view of the DB as of its creation.

    Reads through a snapshot see exactly the writes acknowledged before it was
    taken (expiry still follows the clock). Close it to let compaction drop
    the versions it keeps; it is also a context manager. Made by DB.snapshot().

    >>> import lsmkv, tempfile
    >>> db = lsmkv.DB(tempfile.mkdtemp())
    >>> db.put(b"a", b"1")
    >>> with db.snapshot() as snap:
    ...     db.put(b"a", b"2")
    ...     db.put(b"b", b"3")
    ...     snap.get(b"a"), b"b" in snap, db.get(b"a")
    (b'1', False, b'2')
    >>> db.close()
    """

    def __init__(self, db, seq):
        self._db = db                 # the DB handle: kept alive while the snapshot is
        self._state = db.core.state   # closed with the handle
        self._snapshots = db.core.snapshots
        self.sequence = seq
        self._closed = False

    def _check(self):
        if self._closed:
            raise ClosedError("the snapshot is closed")
        if self._state.closed:        # its DB was closed (or this is a fork() child)
            raise self._state.error()

    def _on(self, cf):
        """The handle a read with cf= reads: the DB (None) or that column family's
        (a snapshot reads every family at its one sequence)."""
        self._check()
        if cf is None:
            return self._db
        if not isinstance(cf, ColumnFamily) and cf is not self._db:
            raise TypeError(f"cf must be a column family handle, not {type(cf).__name__}")
        if cf.core.db is not self._db.core:
            raise ValueError("cf is a column family of another database")
        return cf

    def get(self, key, default=None, *, cf=None):
        """The value key had when the snapshot was taken, or default if it was
        absent then (or has expired since); cf: a column family (None: the default).

        >>> import lsmkv, tempfile
        >>> db = lsmkv.DB(tempfile.mkdtemp())
        >>> db.put(b"k", b"old")
        >>> snap = db.snapshot()
        >>> db.put(b"k", b"new"); db.delete(b"gone")
        >>> snap.get(b"k"), snap.get(b"gone", b"-"), snap[b"k"]
        (b'old', b'-', b'old')
        >>> snap.close(); db.close()
        """
        db = self._on(cf)
        return db.get_at(key, self.sequence, default)

    def __getitem__(self, key):
        v = self.get(key)
        if v is None:
            raise KeyError(key)
        return v

    def __contains__(self, key):
        return self.get(key) is not None

    def __iter__(self):
        return self.keys()

    def __reversed__(self):
        return self.keys(reverse=True)

    def multi_get(self, keys, default=None, *, cf=None):
        """The values keys had when the snapshot was taken, as a list in the order
        given (default where absent then, or expired since); see DB.multi_get().

        >>> import lsmkv, tempfile
        >>> db = lsmkv.DB(tempfile.mkdtemp())
        >>> db.put(b"a", b"1")
        >>> with db.snapshot() as snap:
        ...     db.put(b"a", b"2"); db.put(b"b", b"3")
        ...     snap.multi_get([b"b", b"a"]), list(snap), list(reversed(db))
        ([None, b'1'], [b'a'], [b'b', b'a'])
        >>> db.close()
        """
        db = self._on(cf)
        return db.multi_get_at(keys, self.sequence, default)

    def ttl(self, key, *, cf=None):
        """Seconds until key expires as this snapshot sees it (the expiry it had
        then, measured against the clock now), None if it never expires; KeyError
        if absent in the snapshot or expired.

        >>> import lsmkv, tempfile
        >>> now = [1000.0]                        # a clock the example controls
        >>> db = lsmkv.DB(tempfile.mkdtemp(), clock=lambda: now[0])
        >>> db.put(b"s", b"token", ttl=30); db.put(b"p", b"forever")
        >>> snap = db.snapshot()
        >>> db.put(b"s", b"token", ttl=300)       # the snapshot keeps the old expiry
        >>> now[0] += 10
        >>> snap.ttl(b"s"), db.ttl(b"s"), snap.ttl(b"p")
        (20.0, 290.0, None)
        >>> snap.ttl(b"missing")
        Traceback (most recent call last):
          ...
        KeyError: b'missing'
        >>> snap.close(); db.close()
        """
        db = self._on(cf)
        return db.ttl_at(key, self.sequence)

    def items(self, start=None, stop=None, *, reverse=False, prefix=None, cf=None):
        """(key, value) pairs for start <= key < stop (and starting with prefix)
        as of the snapshot, in key order (or reverse); see DB.items().

        >>> import lsmkv, tempfile
        >>> db = lsmkv.DB(tempfile.mkdtemp())
        >>> db.put(b"a", b"1"); db.put(b"b", b"2")
        >>> with db.snapshot() as snap:
        ...     db.put(b"c", b"3"); db.delete(b"a")
        ...     list(snap.items()), list(snap.items(b"b", reverse=True))
        ([(b'a', b'1'), (b'b', b'2')], [(b'b', b'2')])
        >>> db.close()
        """
        return iterate_at(self._on(cf), start, stop, reverse, MODE_ITEMS, self.sequence, prefix)

    def keys(self, start=None, stop=None, *, reverse=False, prefix=None, cf=None):
        """Like items(), yielding keys only.

        >>> import lsmkv, tempfile
        >>> db = lsmkv.DB(tempfile.mkdtemp())
        >>> db.put(b"a", b"1"); db.put(b"b", b"2")
        >>> with db.snapshot() as snap:
        ...     db.put(b"ab", b"3")
        ...     list(snap.keys(b"a", b"b")), list(db.keys(b"a", b"b"))
        ([b'a'], [b'a', b'ab'])
        >>> db.close()
        """
        return iterate_at(self._on(cf), start, stop, reverse, MODE_KEYS, self.sequence, prefix)

    def values(self, start=None, stop=None, *, reverse=False, prefix=None, cf=None):
        """Like items(), yielding values only.

        >>> import lsmkv, tempfile
        >>> db = lsmkv.DB(tempfile.mkdtemp())
        >>> db.put(b"a", b"1"); db.put(b"b", b"2")
        >>> with db.snapshot() as snap:
        ...     db.put(b"a", b"9")
        ...     list(snap.values(reverse=True))
        [b'2', b'1']
        >>> db.close()
        """
        return iterate_at(self._on(cf), start, stop, reverse, MODE_VALUES, self.sequence, prefix)

    def iterator(self, lower=None, upper=None, *, prefix=None, cf=None):
        """An lsmkv.Iterator over the snapshot (see DB.iterator()); cf: a column
        family (None: the default). It stays
        usable after the snapshot is closed: it holds its own sequence number and
        pins its own files, as RocksDB's iterators do.

        >>> import lsmkv, tempfile
        >>> db = lsmkv.DB(tempfile.mkdtemp())
        >>> db.put(b"a", b"1")
        >>> with db.snapshot() as snap:
        ...     db.put(b"b", b"2")
        ...     with snap.iterator() as it:
        ...         it.seek_to_last(); it.key()
        b'a'
        >>> db.close()
        """
        return cursor_at(self._on(cf), lower, upper, prefix, self.sequence)

    def close(self):
        """Release the snapshot (idempotent): compaction may then drop the versions
        only it kept. Reading a closed snapshot raises ClosedError.

        >>> import lsmkv, tempfile
        >>> db = lsmkv.DB(tempfile.mkdtemp())
        >>> snap = db.snapshot()
        >>> db.stats()["snapshots"]
        1
        >>> snap.close(); snap.close()
        >>> db.stats()["snapshots"]
        0
        >>> snap.get(b"k")
        Traceback (most recent call last):
          ...
        lsmkv.errors.ClosedError: the snapshot is closed
        >>> db.close()
        """
        if not self._closed:
            self._closed = True
            self._snapshots.release(self.sequence)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        # never block here: the garbage collector may run this while this very
        # thread holds the DB mutex
        if not self._closed:
            self._closed = True
            self._snapshots.release(self.sequence, blocking=False)



class DB(CoreDB, MappingMethods):
    """An LSM-tree key-value store in the directory `path`.

    Options come as an lsmkv.Options and/or keyword arguments (see Options).
    It works as a dict of bytes where a dict's meaning holds (get, [], in, del,
    pop, setdefault, update, iteration in key order, reversed()); it has no
    len(), which would be a full scan (lsmkv/engine/mapping.py says why).
    The directory is created if missing and locked while the DB is open; a DB
    is also a context manager that closes it. Keys and values are bytes (or
    any bytes-like object).

    Example:
        >>> import lsmkv, tempfile
        >>> d = tempfile.mkdtemp()
        >>> with lsmkv.DB(d, write_buffer_size=1 << 20) as db:
        ...     db[b"k"] = b"v"
        ...     db.get(b"k"), b"k" in db, list(db)
        (b'v', True, [b'k'])
        >>> with lsmkv.DB(d) as db:          # reopened: the data is still there
        ...     db[b"k"]
        b'v'
    """

    def __init__(self, path, options=None, **kwargs):
        super().__init__(Engine(path, options, **kwargs))

    def __getattr__(self, name):
        # the engine attributes that are part of the DB API (path, options, closed,
        # ...) read through the handle; nothing else of the engine does
        if name in ENGINE_ATTRIBUTES:
            return getattr(self.core, name)
        raise AttributeError(f"'DB' object has no attribute {name!r}")

    def __setattr__(self, name, value):
        raise AttributeError(f"'DB' object attribute {name!r} is read-only")   # no state of its own

    def __delattr__(self, name):
        raise AttributeError(f"'DB' object attribute {name!r} is read-only")

    def snapshot(self):
        """A Snapshot of the current state (see Snapshot). Close it when done.

        >>> import lsmkv, tempfile
        >>> db = lsmkv.DB(tempfile.mkdtemp())
        >>> db.put(b"k", b"1")
        >>> snap = db.snapshot()
        >>> db.put(b"k", b"2")
        >>> snap.get(b"k"), db.get(b"k")
        (b'1', b'2')
        >>> snap.close(); db.close()
        """
        core = self.core
        if core.follower is not None and core.follower.mode == "secondary":
            core.check_open()
            raise FollowerError(core.path, "a secondary has no snapshots: catch_up() replaces its "
                                "state, and the primary's compactions drop what a snapshot of it "
                                "would need; an iterator keeps the state it started with")
        return Snapshot(self, core.snapshots.new())

    # -- column families (lsmkv/engine/family.py)

    def create_column_family(self, name, **options):
        """Create a column family: a key space of this DB with its own memtables,
        tables and options (write_buffer_size, compression, compression_level,
        bloom_bits_per_key, merge_operator (a built-in one's name), block_size,
        level-0 triggers, target_file_size_base, max_bytes_for_level_base, ...;
        the rest are the DB's). It shares the DB's log and sequence numbers, so a
        batch spanning families is atomic, also across a crash. Returns its handle
        (lsmkv.engine.family.ColumnFamily), which has the DB's read and write API.

        >>> import lsmkv, tempfile
        >>> d = tempfile.mkdtemp()
        >>> db = lsmkv.DB(d)
        >>> users = db.create_column_family("users", bloom_bits_per_key=16)
        >>> users.put(b"k", b"u"); db.put(b"k", b"d")
        >>> users.get(b"k"), db.get(b"k")
        (b'u', b'd')
        >>> with db.write_batch() as wb:
        ...     wb.put(b"a", b"1", cf=users); wb.put(b"a", b"2")
        >>> db.close()
        >>> db = lsmkv.DB(d)
        >>> db.list_column_families(), db.column_family("users").get(b"a")
        (['default', 'users'], b'1')
        >>> db.close()
        """
        return ColumnFamily(self.core.families.create(name, options), self)

    def column_family(self, name):
        """The handle of column family name (ColumnFamilyError if there is none;
        "default" is this DB).

        >>> import lsmkv, tempfile
        >>> db = lsmkv.DB(tempfile.mkdtemp())
        >>> db.create_column_family("logs").put(b"k", b"v")
        >>> db.column_family("logs").get(b"k"), db.column_family("default") is db
        (b'v', True)
        >>> db.close()
        """
        if name == "default":
            return self
        self.core.check_open()
        return ColumnFamily(self.core.families.get(name), self)

    def list_column_families(self):
        """The names of the DB's column families, "default" first.

        >>> import lsmkv, tempfile
        >>> db = lsmkv.DB(tempfile.mkdtemp())
        >>> _ = db.create_column_family("a"); _ = db.create_column_family("b")
        >>> db.list_column_families()
        ['default', 'a', 'b']
        >>> db.close()
        """
        self.core.check_open()
        return ["default"] + self.core.families.names()

    def drop_column_family(self, name):
        """Drop column family name: its data is gone for every later read and its
        handles raise ClosedError; its files are deleted once no iterator pins
        them. Its name can then be reused by create_column_family.

        >>> import lsmkv, tempfile
        >>> db = lsmkv.DB(tempfile.mkdtemp())
        >>> db.create_column_family("tmp").put(b"k", b"v")
        >>> db.drop_column_family("tmp")
        >>> db.list_column_families(), db.create_column_family("tmp").get(b"k")
        (['default'], None)
        >>> db.close()
        """
        if name == "default":
            raise ValueError("the default column family cannot be dropped")
        self.core.families.drop(name)

    def catch_up(self):
        """On a DB opened with secondary=<directory>: make visible what the primary
        has written to its logs and tables since the open or the last catch_up() (a
        prefix of its writes: whole batches, in order). Returns how many sequence
        numbers became visible. docs/getting-started.md, "Several processes".

        >>> import lsmkv, tempfile
        >>> d, own = tempfile.mkdtemp(), tempfile.mkdtemp()
        >>> primary = lsmkv.DB(d)
        >>> primary.put(b"k", b"1")
        >>> follower = lsmkv.DB(d, secondary=own)
        >>> primary.put(b"k", b"2"); primary.put(b"j", b"3")
        >>> follower.get(b"k"), follower.catch_up(), follower.get(b"k")
        (b'1', 2, b'2')
        >>> follower.close(); primary.close()
        """
        return self.core.catch_up()

    def flush(self):
        """Write the memtable to a level-0 SST now, and wait until it is done.

        >>> import lsmkv, tempfile
        >>> db = lsmkv.DB(tempfile.mkdtemp())
        >>> db.put(b"k", b"v")
        >>> db.flush()
        >>> s = db.stats()
        >>> s["memtable_entries"], s["levels"][0]["files"], db.get(b"k")
        (0, 1, b'v')
        >>> db.close()
        """
        return self.core.flush()

    @contextmanager
    def no_background_compactions(self):
        """Within this block no background compaction runs or starts (the caller may
        run its own, or copy files knowing no compaction replaces them). Writes and
        flushes go on.

        >>> import lsmkv, tempfile
        >>> db = lsmkv.DB(tempfile.mkdtemp(), level0_file_num_compaction_trigger=1)
        >>> with db.no_background_compactions():
        ...     for i in range(2):
        ...         db.put(b"k", b"v%d" % i); db.flush()
        ...     [lv["files"] for lv in db.stats()["levels"][:2]]   # both stay in L0
        [2, 0]
        >>> db.close()
        """
        with self.core.compactions.no_background():
            yield

    def compact_range(self, start=None, stop=None):
        """Compact every file overlapping [start, stop] (None: unbounded) into one
        sorted run below level 0, dropping overwritten, deleted and expired data.
        Flushes the memtable first; returns when done.

        >>> import lsmkv, tempfile
        >>> db = lsmkv.DB(tempfile.mkdtemp())
        >>> for i in range(3):
        ...     db.put(b"k", b"v%d" % i); db.flush()
        >>> db.delete(b"k"); db.put(b"x", b"1")
        >>> db.compact_range()
        >>> [(lv["level"], lv["files"]) for lv in db.stats()["levels"] if lv["files"]]
        [(1, 1)]
        >>> list(db.items())
        [(b'x', b'1')]
        >>> db.close()
        """
        return self.core.compact_range(start, stop)

    def stats(self):
        """Counters and sizes, as a dict; docs/stats.md explains each field. A
        closed DB still reports its last counters; in a fork() child it raises
        ForkedError.

        >>> import lsmkv, tempfile
        >>> db = lsmkv.DB(tempfile.mkdtemp())
        >>> db.put(b"a", b"1"); db.put(b"b", b"2"); db.delete(b"a")
        >>> _ = db.get(b"b"), db.get(b"a")
        >>> s = db.stats()
        >>> s["puts"], s["deletes"], s["gets"], s["get_hits"], s["memtable_entries"]
        (2, 1, 2, 1, 3)
        >>> s["levels"][0]
        {'level': 0, 'files': 0, 'bytes': 0, 'score': 0.0}
        >>> db.close()
        """
        core = self.core
        if core.state.forked:
            raise core.state.error()
        return _stats.report(core)

    def memory_usage(self):
        """Where the engine's memory is, in bytes (docs/tuning.md, memory rows):

        memtable_active, memtable_immutable: arena chunks mapped, less the
        untouched pages at the end of the current chunk (immutable includes a
        flushed memtable until the flush thread drops it);
        cache_payload: block bytes in the cache; cache_overhead: slab bytes held
        beyond the payload plus the cache's bookkeeping; pinned: the part of the
        payload readers pin now (included in cache_payload); index_filter: index
        and filter blocks open tables hold resident (with
        cache_index_and_filter_blocks, those in the block cache are part of
        cache_payload instead: stats()["block_cache"]["index_filter_cached"]);
        wal_mapped: log pages mapped and populated for appends (a step
        ahead of the writer); sst_mapped: the 64 KiB windows of table mappings
        reads touched (what fault-around maps into the RSS while the files stay
        in the page cache, which the kernel may drop); read_buffers: pooled pread
        buffers. total is their sum without pinned.

        >>> db.memory_usage()["total"]          # doctest: +SKIP
        41943040
        """
        core = self.core
        if core.state.forked:
            raise core.state.error()
        return core.memory_usage()

    def close(self):
        """Wait for background work, sync the log and release the directory lock.
        Unflushed memtables stay in their logs and are replayed at the next open.
        Closing twice is harmless; any other use of a closed DB raises ClosedError.

        >>> import lsmkv, tempfile
        >>> d = tempfile.mkdtemp()
        >>> db = lsmkv.DB(d)
        >>> db.put(b"k", b"v")
        >>> db.close(); db.close()
        >>> db.closed, repr(db).endswith("closed>")
        (True, True)
        >>> with lsmkv.DB(d) as db2:          # the lock is free; the log is replayed
        ...     db2.get(b"k")
        b'v'
        """
        return self.core.close()

    def checkpoint(self, dest):
        """Make a consistent copy of the DB in dest (a new or empty directory) that
        opens as a DB with the same contents: the memtables are flushed, the live
        tables hard-linked (copied across file systems), CURRENT and the MANIFEST
        copied (lsmkv/engine/checkpoint.py). Returns the number of tables.

        >>> import lsmkv, tempfile, os
        >>> db = lsmkv.DB(tempfile.mkdtemp())
        >>> db.put(b"k", b"v")
        >>> dest = os.path.join(tempfile.mkdtemp(), "copy")
        >>> db.checkpoint(dest)
        1
        >>> db.put(b"k", b"changed")
        >>> with lsmkv.DB(dest) as copy:
        ...     copy.get(b"k")
        b'v'
        >>> db.close()
        """
        return _checkpoint.checkpoint(self, dest)

    def approximate_size(self, start=None, stop=None):
        """Bytes on disk of the tables' data for keys in [start, stop) (None:
        unbounded), from the index blocks, as LevelDB's GetApproximateSizes:
        whole data blocks, so a small range may count 0; memtables are not on
        disk and not counted (lsmkv/engine/estimates.py).

        >>> import lsmkv, tempfile
        >>> db = lsmkv.DB(tempfile.mkdtemp(), compression="none", block_size=4096)
        >>> for i in range(10000):
        ...     db.put(b"%08d" % i, b"x" * 100)
        >>> db.flush()
        >>> half = db.approximate_size(b"00005000")
        >>> 0.4 < half / db.approximate_size() < 0.6
        True
        >>> db.close()
        """
        return _estimates.approximate_size(self.core, start, stop)

    def estimate_num_keys(self):
        """An estimate of the number of live keys, from the tables' entry and
        deletion counts and the memtables' entries, without a scan (RocksDB's
        rocksdb.estimate-num-keys; lsmkv/engine/estimates.py says what it
        overcounts). The exact count is a scan: sum(1 for _ in db).

        >>> import lsmkv, tempfile
        >>> db = lsmkv.DB(tempfile.mkdtemp())
        >>> for i in range(100):
        ...     db.put(b"%03d" % i, b"v")
        >>> db.flush(); db.put(b"new", b"v")
        >>> db.estimate_num_keys()
        101
        >>> db.close()
        """
        return _estimates.estimate_num_keys(self.core)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self):
        return f"<lsmkv.DB {self.path!r}{' closed' if self.closed else ''}>"

    def __reduce__(self):
        raise TypeError("a lsmkv.DB cannot be pickled or sent to another process: open the "
                        "database by its path in that process (docs/getting-started.md, "
                        "\"Processes\")")

    def __del__(self):
        # the last reference to the handle went: close the engine as close() would
        dropped = getattr(self.core, "handle_dropped", None)   # None: the placeholder Core
        if dropped is not None:
            dropped()
