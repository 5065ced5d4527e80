# cython: language_level=3
"""The compiled per-operation path: put/delete/write-batch (WAL append + memtable
insert) and get (memtables, then L0 newest first, then one file per level).

lsmkv.engine.db.DB subclasses CoreDB and adds open/recovery, background flush and
everything that is not per-operation.

This file holds the public, doctested surface (WriteBatch, CoreDB: the handle's
thin methods, iterate_at; tests/test_docstrings.py counts the examples in this
file) and the shared helpers (borrowed buffers, the clock, SuperVersion, Pin,
check_bound). It includes one part per concern:
  batch.pxi   the batch record encoding and decoding: apply_batch, replay_batch,
              decode_batch
  core.pxi    Core: the engine's per-operation state and paths (thread safety and
              invariants of the write and read paths are stated there)
  multiget.pxi  core_multi_get: the batched point lookup (one pass over the
              memtables, then each table asked once about its keys in order)
  mergeget.pxi  merge_lookup: the point read of a key with merge operands on top
  snaplist.pxi  SnapshotList: the live snapshots' sequences and the oldest
              (no lock: why is stated there)
  txn.pxi     Transaction (lsmkv.Transaction) and its overlay iterator
"""
import threading

from libc.stdlib cimport malloc, free
from libc.string cimport memcpy, memcmp
from libc.math cimport ceil, INFINITY
from libc.stdint cimport uint8_t, uint32_t, uint64_t, int64_t
from cpython.bytes cimport PyBytes_FromStringAndSize, PyBytes_AS_STRING, PyBytes_GET_SIZE, PyBytes_CheckExact
from cpython.bytearray cimport PyByteArray_CheckExact
from cpython.buffer cimport PyObject_GetBuffer, PyBuffer_Release, PyBUF_SIMPLE
from lsmkv.core.coding cimport (load_u64, store_u64, load_u32, store_u32, put_varint, get_varint, varint_len,
                            make_tag, cmp_ikey, cmp_bytes, TAG_SIZE,
                            KIND_DELETE, KIND_PUT, KIND_PUT_TTL, KIND_MERGE, KIND_MAX, KIND_RANGE_DELETE)
from lsmkv.core.rangedel cimport RangeDelSet
from lsmkv.core.merge cimport MergeOperator
from lsmkv.core.memtable cimport MemTable, Node, node_key, node_val
from lsmkv.core.table cimport TableReader
from lsmkv.core.cache cimport ValueView
from lsmkv.core.table import DELETED, MERGED
from lsmkv.core.bloom cimport bloom_hash      # one definition of the hash (lsmkv/core/bloom.pxd)
from lsmkv.core.bloom import bloom_hash_py
from lsmkv.core.wal cimport LogWriter
from lsmkv.core.bytebuf cimport Buf, buf_reserve_c
from lsmkv.core.memtable cimport MemTableIterator
from lsmkv.core.table cimport TableIterator, LevelIterator, BlockIter, find_table, new_table_iterator
from lsmkv.core.iterator cimport (MergingIterator, HandleState, ReadCharge, SEEK_CHARGE,
                                  no_merge_operator, new_db_iterator, new_merging_iterator)
from lsmkv.core.iterator import DBIterator
from lsmkv.core.cursor cimport Iterator, prefix_bounds
from lsmkv.errors import ClosedError, BackgroundError, ConflictError, CorruptionError, ReadOnlyError, MergeOperatorError

cdef extern from *:
    """
    #include "Python.h"
    """
    bint PyMemoryView_Check(object o)

DEF BATCH_HEADER = 12

# ------------------------------------------------------------------ buffers

ctypedef struct Bytes:
    const uint8_t* p
    size_t n
    bint owned
    Py_buffer view

cdef int get_buffer(object o, Bytes* b, str what) except -1:
    """Borrow the bytes of a bytes/bytearray/memoryview; TypeError otherwise."""
    if PyBytes_CheckExact(o):
        b.p = <const uint8_t*>PyBytes_AS_STRING(o)
        b.n = PyBytes_GET_SIZE(o)
        b.owned = False
        return 0
    if PyByteArray_CheckExact(o) or PyMemoryView_Check(o) or isinstance(o, bytes):
        PyObject_GetBuffer(o, &b.view, PyBUF_SIMPLE)
        b.p = <const uint8_t*>b.view.buf
        b.n = b.view.len
        b.owned = True
        return 0
    raise TypeError(f"{what} must be bytes, bytearray or memoryview, not {type(o).__name__}")

cdef inline void release_buffer(Bytes* b) noexcept:
    if b.owned:
        PyBuffer_Release(&b.view)
        b.owned = False


from posix.time cimport clock_gettime, timespec, CLOCK_REALTIME
import time as _time
cdef object _time_time = _time.time


cdef inline int64_t clock_ms(object clock) except? -1:
    """clock() (seconds since the epoch) in whole ms, truncated. The one definition:
    Core reads it per get (a C call), the engine through now_ms()."""
    cdef timespec ts
    if clock is _time_time:
        # the default clock, read without a Python call: no float object per get
        clock_gettime(CLOCK_REALTIME, &ts)
        return <int64_t>ts.tv_sec * 1000 + ts.tv_nsec // 1000000
    return <int64_t>(clock() * 1000.0)


def now_ms(clock):
    """clock() in whole ms (see clock_ms): the engine's time for expiry decisions."""
    return clock_ms(clock)


cdef double EXPIRY_LIMIT_MS = 9223372036854775808.0    # 2**63: an expiry in ms is an int64


cdef int64_t expiry_from_ttl(object clock, object ttl) except -2:
    if ttl is None:
        return 0
    if isinstance(ttl, bool) or not isinstance(ttl, (int, float)):
        raise TypeError(f"ttl must be a number of seconds or None, not {type(ttl).__name__}")
    if not ttl > 0:
        raise ValueError(f"ttl must be > 0 seconds, got {ttl!r}")
    cdef double t
    try:
        t = ttl
    except OverflowError:
        t = INFINITY
    # rounded up: a key never expires before its ttl has passed (at most 1 ms after)
    cdef double e = ceil((<double>clock() + t) * 1000.0)
    if not e < EXPIRY_LIMIT_MS:
        # the cast below would be undefined, and gave a past expiry: the put said yes
        # and the key (and the value it replaced) was gone
        r = repr(ttl)
        raise ValueError(f"ttl {r if len(r) <= 40 else r[:37] + '...'} s is too large: the expiry must come before "
                         f"2**63 ms after the epoch (about 292 million years)")
    return <int64_t>e if e > 0 else 1

# ------------------------------------------------------------------ super version

cdef class SuperVersion:
    """An immutable view of every source a read consults."""
    cdef readonly MemTable mem
    cdef readonly tuple imms            # newest first
    cdef readonly tuple l0              # TableReaders, newest first
    cdef readonly tuple levels          # per level >= 1: (tuple readers, list largest ikeys, list smallest ukeys)
    cdef readonly object version        # lsmkv.engine.version.Version the tables come from
    cdef readonly list static_range_dels  # range tombstones of imms and tables, or None (none there)
    cdef object rdel_cache              # (mem tombstones counted, RangeDelSet of all), see Core._range_dels
    cdef RangeDelSet static_rdel        # static_range_dels fragmented, once (Core._range_dels)

    def __cinit__(self, MemTable mem, tuple imms, tuple l0, tuple levels, version):
        self.mem = mem
        self.imms = imms
        self.l0 = l0
        self.levels = levels
        self.version = version
        self.rdel_cache = None
        cdef list rd = []
        cdef MemTable m
        cdef TableReader t
        for m in imms:
            if m.range_dels is not None:
                rd.extend(m.range_dels)
        for t in l0:
            if t.range_dels is not None:
                rd.extend(t.range_dels)
        for lv in levels:
            for t in lv[0]:
                if t.range_dels is not None:
                    rd.extend(t.range_dels)
        self.static_range_dels = rd if rd else None

    def memtables(self):
        return (self.mem,) + self.imms

include "batch.pxi"

cdef class Core          # core.pxi
cdef class CoreDB        # below


# ------------------------------------------------------------------ write batch
# Thread safety: a WriteBatch belongs to one thread while it is built; Core reads it
# under its mutex in write(). Invariants: 1. BATCH_HEADER <= b.len <= b.cap;
# 2. b.p[BATCH_HEADER:b.len] is exactly `count` encoded records; Core fills in the
# header when it writes the batch.

cdef class WriteBatch:
    """Puts and deletes applied atomically by DB.write(batch) or db.write_batch().

    Encoded as it is built (the WAL payload format, docs/format.md):
    seq u64 | count u32 | records; record = kind u8 | varint klen | key
    [| expiry u64 if kind == PUT_TTL] [| varint vlen | value if a put].
    `count` (read-only) is the number of operations added, as is len(batch).

    A put's ttl becomes an absolute expiry when it is added, read from the
    batch's clock: db.write_batch() gives the DB's clock (an injected one
    included); lsmkv.WriteBatch() uses the process clock, time.time, or the
    clock it is given, so with a DB on an injected clock, make its batches with
    db.write_batch() (or WriteBatch(clock=...)).

    A batch from db.write_batch() is also a context manager that writes itself
    to its DB when the block exits without an error (nothing of it if the block
    raises); one made directly is not.

    >>> import lsmkv, tempfile
    >>> db = lsmkv.DB(tempfile.mkdtemp())
    >>> wb = lsmkv.WriteBatch()
    >>> wb.put(b"a", b"1"); wb.put(b"b", b"2", ttl=3600); wb.delete(b"c")
    >>> wb.count, len(wb)
    (3, 3)
    >>> db.write(wb)
    >>> list(db.items())
    [(b'a', b'1'), (b'b', b'2')]
    >>> db.close()
    """
    cdef Buf b                     # the encoded batch: header, then the records (bytebuf.pxd)
    cdef readonly uint32_t count
    cdef object clock              # what ttl is measured from: time.time unless given
    cdef object target             # the DB handle a `with` block writes to (db.write_batch()), or None
    cdef bint sync                 # that write's sync
    cdef readonly bint has_merge   # a merge() was added (the DB then needs a merge operator)
    cdef dict cfs                  # column families its records name: id -> family Core; None if none

    def __cinit__(self, clock=None):
        self.b.p = <uint8_t*>malloc(256)
        if self.b.p == NULL:
            raise MemoryError()
        self.b.cap = 256
        self.b.len = BATCH_HEADER
        self.count = 0
        self.clock = _time_time if clock is None else clock
        self.target = None
        self.sync = False
        self.cfs = None

    def __dealloc__(self):
        free(self.b.p)

    def put(self, key, value, *, ttl=None, cf=None):
        """Add a put; ttl: seconds until it expires, from the batch's clock now
        (None: never expires); cf: the column family (a handle of
        db.create_column_family() or db.column_family(); None: the default).

        >>> import lsmkv, tempfile
        >>> db = lsmkv.DB(tempfile.mkdtemp(), clock=lambda: 1000.0)
        >>> wb = db.write_batch()                 # the DB's clock
        >>> wb.put(b"k", b"v"); wb.put(b"tmp", b"x", ttl=5)
        >>> db.write(wb)
        >>> db.get(b"k"), db.ttl(b"tmp")
        (b'v', 5.0)
        >>> db.close()
        """
        cdef Bytes kb, vb
        cdef int64_t expiry = 0
        cdef Core fam = None if cf is None else self._family(cf)
        if ttl is not None:
            expiry = expiry_from_ttl(self.clock, ttl)
        get_buffer(key, &kb, "key")
        try:
            get_buffer(value, &vb, "value")
            try:
                self._add(KIND_PUT_TTL if expiry else KIND_PUT, kb.p, kb.n,
                          vb.p, vb.n, expiry, fam)
            finally:
                release_buffer(&vb)
        finally:
            release_buffer(&kb)

    def append(self, WriteBatch other not None):
        """Add every operation of other, in its order, after this batch's own
        (other is unchanged; a ttl keeps the expiry it got when it was added).

        >>> import lsmkv
        >>> a, b = lsmkv.WriteBatch(), lsmkv.WriteBatch()
        >>> a.put(b"x", b"1"); b.delete(b"x"); b.put(b"y", b"2")
        >>> a.append(b)
        >>> len(a), len(b), a.data_size == 12 + (b.data_size - 12) + 5
        (3, 2, True)
        """
        cdef size_t n = other.b.len - BATCH_HEADER
        if other is self:
            raise ValueError("a batch cannot be appended to itself")
        if buf_reserve_c(&self.b, n) < 0:
            raise MemoryError()
        memcpy(self.b.p + self.b.len, other.b.p + BATCH_HEADER, n)
        self.b.len += n
        self.count += other.count
        self.has_merge = self.has_merge or other.has_merge
        if other.cfs is not None:
            if self.cfs is None:
                self.cfs = {}
            self.cfs.update(other.cfs)

    def __enter__(self):
        if self.target is None:
            raise TypeError("only a batch from db.write_batch() is a context manager "
                            "(it knows its DB); pass this one to db.write()")
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self.target.write(self, sync=self.sync)
        return False

    def delete(self, key, *, cf=None):
        """Add a delete of key (applied in order: a later put of the same key in
        this batch wins); cf: the column family (None: the default).

        >>> import lsmkv, tempfile
        >>> db = lsmkv.DB(tempfile.mkdtemp())
        >>> db.put(b"a", b"1"); db.put(b"b", b"2")
        >>> with db.write_batch() as wb:
        ...     wb.delete(b"a"); wb.delete(b"b"); wb.put(b"b", b"3")
        >>> db.get(b"a"), db.get(b"b")
        (None, b'3')
        >>> db.close()
        """
        cdef Bytes kb
        cdef Core fam = None if cf is None else self._family(cf)
        get_buffer(key, &kb, "key")
        try:
            self._add(KIND_DELETE, kb.p, kb.n, NULL, 0, 0, fam)
        finally:
            release_buffer(&kb)

    def delete_range(self, start, stop, *, cf=None):
        """Add a deletion of every key k with start <= k < stop: one record,
        whatever the range holds (a range tombstone). start == stop adds nothing
        (an empty range, as RocksDB allows); start > stop raises ValueError.
        cf: the column family (None: the default).

        >>> import lsmkv, tempfile
        >>> db = lsmkv.DB(tempfile.mkdtemp())
        >>> for k in (b"a", b"b", b"c"):
        ...     db.put(k, b"1")
        >>> with db.write_batch() as wb:
        ...     wb.delete_range(b"a", b"c"); wb.put(b"b", b"2")
        >>> list(db.keys()), db.get(b"b")
        ([b'b', b'c'], b'2')
        >>> db.close()
        """
        cdef Bytes kb, vb
        cdef Core fam = None if cf is None else self._family(cf)
        get_buffer(start, &kb, "start")
        try:
            get_buffer(stop, &vb, "stop")
            try:
                if check_range(kb.p, kb.n, vb.p, vb.n, start, stop):
                    self._add(KIND_RANGE_DELETE, kb.p, kb.n, vb.p, vb.n, 0, fam)
            finally:
                release_buffer(&vb)
        finally:
            release_buffer(&kb)

    def merge(self, key, operand, *, cf=None):
        """Add a merge operand for key (db.merge(), applied in order with the batch's
        other operations); cf: the column family (None: the default). Writing the
        batch raises MergeOperatorError if that family has no merge operator.

        >>> import lsmkv, tempfile
        >>> db = lsmkv.DB(tempfile.mkdtemp(), merge_operator=("append", b","))
        >>> with db.write_batch() as wb:
        ...     wb.put(b"k", b"a"); wb.merge(b"k", b"b"); wb.merge(b"k", b"c")
        >>> db.get(b"k")
        b'a,b,c'
        >>> db.close()
        """
        cdef Bytes kb, vb
        cdef Core fam = None if cf is None else self._family(cf)
        if fam is not None and fam.merge_op is None:
            fam._no_merge_operator()
        get_buffer(key, &kb, "key")
        try:
            get_buffer(operand, &vb, "operand")
            try:
                self._add(KIND_MERGE, kb.p, kb.n, vb.p, vb.n, 0, fam)
            finally:
                release_buffer(&vb)
        finally:
            release_buffer(&kb)
        if fam is None:
            self.has_merge = True

    cdef Core _family(self, object cf):
        """The family Core of a cf= argument: a column family handle, or None for the
        default (a DB handle is the default family too)."""
        if not isinstance(cf, CoreDB):
            raise TypeError(f"cf must be a column family handle (db.column_family(name)), "
                            f"not {type(cf).__name__}")
        cdef Core c = (<CoreDB>cf).core
        if c.cf_id == 0:
            return None
        if c.closed:
            raise c._closed_error()
        return c

    cdef int _add(self, int kind, const uint8_t* k, size_t kn, const uint8_t* v, size_t vn,
                  int64_t expiry, Core fam=None) except -1:
        cdef size_t rn = record_size(kind, kn, vn)
        if fam is None:
            if buf_reserve_c(&self.b, rn) < 0:
                raise MemoryError()
            self.b.len = encode_record(self.b.p + self.b.len, kind, k, kn, v, vn, expiry) - self.b.p
        else:
            if buf_reserve_c(&self.b, rn + varint_len(fam.cf_id)) < 0:
                raise MemoryError()
            self.b.len = encode_record_cf(self.b.p + self.b.len, fam.cf_id, kind, k, kn, v, vn,
                                          expiry) - self.b.p
            if self.cfs is None:
                self.cfs = {}
            self.cfs[fam.cf_id] = fam
        self.count += 1
        return 0

    def clear(self):
        """Drop every operation added so far, so the batch can be reused.

        >>> import lsmkv
        >>> wb = lsmkv.WriteBatch()
        >>> wb.put(b"k", b"v")
        >>> wb.clear()
        >>> wb.count, wb.data_size
        (0, 12)
        """
        self.b.len = BATCH_HEADER
        self.count = 0
        self.has_merge = False
        self.cfs = None

    def __len__(self):
        return self.count

    @property
    def data_size(self):
        """Bytes of the encoded batch: a 12-byte header plus each record (what
        write() appends to the log).

        >>> import lsmkv
        >>> wb = lsmkv.WriteBatch()
        >>> wb.data_size
        12
        >>> wb.put(b"key", b"value")      # kind, klen, key, vlen, value
        >>> wb.data_size
        23
        """
        return self.b.len


cdef WriteBatch with_default_ttl(WriteBatch batch, Core db):
    """A copy of batch in which each put given no ttl, to a family (db, the DB's
    Core, for the default one) with a default_ttl, expires that long from now: the
    default applies when the batch is written, as a put's does (Core._put). Other
    records are copied as they are; batch itself is unchanged."""
    cdef WriteBatch out = WriteBatch.__new__(WriteBatch, batch.clock)
    cdef const uint8_t* p = batch.b.p + BATCH_HEADER
    cdef const uint8_t* end = batch.b.p + batch.b.len
    cdef BatchOp op
    cdef Core fam
    cdef int kind
    cdef int64_t expiry
    cdef dict expiries = {}         # family id -> the expiry its puts get (computed once)
    cdef uint32_t i
    for i in range(batch.count):
        p = read_batch_op(p, end, &op, "<batch>", 0)
        fam = db if op.cf == 0 else <Core>batch.cfs[op.cf]
        kind = op.kind
        expiry = op.expiry
        if kind == KIND_PUT and fam.default_ttl is not None:
            if op.cf not in expiries:
                expiries[op.cf] = expiry_from_ttl(db.clock, fam.default_ttl)
            kind = KIND_PUT_TTL
            expiry = expiries[op.cf]
        out._add(kind, op.key, op.kn, op.val, op.vn, expiry, None if op.cf == 0 else fam)
    out.has_merge = batch.has_merge
    return out

# ------------------------------------------------------------------ version pins

cdef class Pin:
    """Keeps one version's files alive while an iterator reads them.

    Registered in files.pins (id -> version) until release(); dropping the last
    reference releases it too. Releasing a pin on a version that is no longer
    current asks the file collector (lsmkv.engine.files.Files: pins,
    current_version(), gc_soon()) to delete files nothing references any more."""
    cdef object files
    cdef readonly object version

    def __cinit__(self, files, version):
        self.files = files
        self.version = version
        files.pins[id(self)] = version

    cpdef release(self):
        files = self.files
        if files is None:
            return
        self.files = None
        files.pins.pop(id(self), None)
        if self.version is not files.current_version():   # else it frees nothing
            files.gc_soon()

    def __dealloc__(self):
        if self.files is not None:
            try:
                self.release()
            except Exception:
                pass


cdef bint check_range(const uint8_t* s, size_t sn, const uint8_t* e, size_t en,
                      object start, object stop) except -1:
    """Is [start, stop) a range to delete? False when empty (start == stop);
    ValueError naming both when start > stop."""
    cdef int c = cmp_bytes(s, sn, e, en)
    if c > 0:
        raise ValueError(f"delete_range: start {bytes(start)!r} is after stop {bytes(stop)!r}")
    return c < 0


cpdef object check_bound(str name, object v):
    """v as bytes (or None) for a range bound; TypeError naming it otherwise."""
    if v is None or PyBytes_CheckExact(v):
        return v
    if isinstance(v, (bytearray, memoryview, bytes)):
        return bytes(v)
    raise TypeError(f"{name} must be bytes, bytearray, memoryview or None, not {type(v).__name__}")

include "mergeget.pxi"
include "core.pxi"
include "multiget.pxi"

# ------------------------------------------------------------------ the handle

cdef class CoreDB:
    """The DB handle's per-operation fast paths, each a thin compiled call into its
    Core. Not used directly: see lsmkv.DB, which subclasses it.

    The handle owns the engine and nothing else references the handle (the
    background threads hold the Core; iterators and snapshots hold the handle), so
    when the last reference to it goes, lsmkv.DB's finalizer closes the engine."""
    cdef readonly Core core

    def __cinit__(self, *args, **kwargs):
        self.core = Core()     # a closed placeholder until __init__ binds the engine

    def __init__(self, Core core):
        self.core = core

    def sync_wal(self):
        """Make every write acknowledged so far durable, as if each had been written
        with sync=True: fsync the current log and any older log not yet synced (like
        RocksDB's SyncWAL). Cheaper than sync=True on every write when a caller can
        group them (a server syncing once a second). A failed sync leaves the DB
        read-only until it is reopened, as a failed sync write does.

        >>> import lsmkv, tempfile
        >>> db = lsmkv.DB(tempfile.mkdtemp())
        >>> db.put(b"a", b"1"); db.put(b"b", b"2")
        >>> before = db.stats()["syncs"]
        >>> db.sync_wal()                       # both puts are on stable storage now
        >>> db.stats()["syncs"] - before
        1
        >>> db.close()
        """
        self.core._sync_wal()

    def put(self, key, value, *, ttl=None, bint sync=False):
        """Store value under key. ttl: seconds until it expires (None: never).
        sync=True returns only once the write is on stable storage.

        >>> import lsmkv, tempfile
        >>> now = [1000.0]
        >>> db = lsmkv.DB(tempfile.mkdtemp(), clock=lambda: now[0])
        >>> db.put(b"k", b"v")
        >>> db.put(b"session", b"token", ttl=30, sync=True)
        >>> db.get(b"k"), db.get(b"session")
        (b'v', b'token')
        >>> now[0] += 31                       # 31 s later
        >>> db.get(b"session") is None
        True
        >>> db.put("k", b"v")
        Traceback (most recent call last):
          ...
        TypeError: key must be bytes, bytearray or memoryview, not str
        >>> db.close()
        """
        self.core._put(key, value, ttl, sync)

    def __setitem__(self, key, value):
        self.core._put(key, value, None, False)

    def merge(self, key, operand, *, bint sync=False):
        """Add operand to key's value through the DB's merge operator (the
        merge_operator option): a read folds the key's operands, oldest first,
        into its base value (None when the key is absent, deleted or expired).
        One log record, no read: as fast as put(). The result has no ttl.
        sync=True returns only once the write is on stable storage.

        >>> import lsmkv, tempfile
        >>> db = lsmkv.DB(tempfile.mkdtemp(), merge_operator="uint64add")
        >>> one = (1).to_bytes(8, "little")
        >>> db.merge(b"hits", one); db.merge(b"hits", one, sync=True)
        >>> int.from_bytes(db.get(b"hits"), "little")
        2
        >>> db.close()
        """
        self.core._merge(key, operand, sync)

    def delete(self, key, *, bint sync=False):
        """Remove key (a no-op if absent).

        >>> import lsmkv, tempfile
        >>> db = lsmkv.DB(tempfile.mkdtemp())
        >>> db.put(b"k", b"v")
        >>> db.delete(b"k"); db.delete(b"never-written")
        >>> db.get(b"k") is None, b"k" in db
        (True, False)
        >>> db.close()
        """
        self.core._delete(key, sync)

    def delete_range(self, start, stop, *, bint sync=False):
        """Remove every key k with start <= k < stop, with one record whatever the
        range holds (a range tombstone, RocksDB's DeleteRange): O(1) to write;
        reads skip the keys it covers at once, and compaction drops them and
        reclaims their space. start == stop deletes nothing (an empty range);
        start > stop raises ValueError. Snapshots taken before still see the keys.

        >>> import lsmkv, tempfile
        >>> db = lsmkv.DB(tempfile.mkdtemp())
        >>> for k in (b"a", b"b", b"c", b"d"):
        ...     db.put(k, k)
        >>> snap = db.snapshot()
        >>> db.delete_range(b"b", b"d")
        >>> list(db.keys()), snap.get(b"c")
        ([b'a', b'd'], b'c')
        >>> db.put(b"c", b"new"); db.get(b"c")
        b'new'
        >>> snap.close(); db.close()
        """
        self.core._delete_range(start, stop, sync)

    def __delitem__(self, key):
        # as a dict: KeyError for an absent key, which costs a get() before the
        # delete (db.delete() is blind); not atomic with a concurrent writer
        cdef Core c = self.core
        if c._get(key, c.last_seq) is None:
            raise KeyError(key)
        c._delete(key, False)

    def write_batch(self, *, bint sync=False):
        """A new, empty WriteBatch with the DB's clock (its puts may have a ttl),
        usable both ways: filled and passed to write(), or as a context manager
        that writes it when the block exits without an error (with this sync;
        nothing of it if the block raises). It can be cleared and reused.

        >>> import lsmkv, tempfile
        >>> db = lsmkv.DB(tempfile.mkdtemp())
        >>> db.put(b"b", b"old")
        >>> with db.write_batch(sync=True) as wb:
        ...     wb.put(b"a", b"1"); wb.delete(b"b")
        >>> db.get(b"a"), db.get(b"b")
        (b'1', None)
        >>> try:
        ...     with db.write_batch() as wb:
        ...         wb.put(b"c", b"3")
        ...         raise RuntimeError("changed my mind")
        ... except RuntimeError:
        ...     pass
        >>> db.get(b"c") is None
        True
        >>> wb = db.write_batch()
        >>> wb.put(b"c", b"3", ttl=60)
        >>> db.write(wb)
        >>> db.get(b"c")
        b'3'
        >>> db.close()
        """
        cdef WriteBatch wb = WriteBatch(self.core.clock)
        wb.target = self
        wb.sync = sync
        return wb

    def batch(self):
        """An alias of write_batch() (the older name), kept for existing code.

        >>> import lsmkv, tempfile
        >>> db = lsmkv.DB(tempfile.mkdtemp())
        >>> wb = db.batch(); wb.put(b"a", b"1"); db.write(wb)
        >>> db.get(b"a")
        b'1'
        >>> db.close()
        """
        return self.write_batch()

    def write(self, WriteBatch batch, *, bint sync=False):
        """Apply every operation of batch atomically: a reader sees all of it or
        none of it. sync=True returns once it is on stable storage.

        >>> import lsmkv, tempfile
        >>> db = lsmkv.DB(tempfile.mkdtemp())
        >>> db.put(b"from", b"100")
        >>> wb = db.batch()
        >>> wb.put(b"from", b"70"); wb.put(b"to", b"30")
        >>> db.write(wb, sync=True)
        >>> db.get(b"from"), db.get(b"to"), db.stats()["batches"]
        (b'70', b'30', 1)
        >>> db.close()
        """
        self.core._write_batch(batch, sync)

    def write_if_unchanged(self, WriteBatch batch, keys, uint64_t seq, *, bint sync=False):
        """Internal (a transaction's commit, lsmkv/engine/transaction.py; the
        server's EXEC after WATCH): write(batch) only if no key of keys has been
        written since sequence seq (a snapshot's, which the caller holds: the
        check is exact only while versions newer than seq are kept). Checked and
        written under the write lock, after any stall, so no write comes between;
        otherwise raise lsmkv.ConflictError and write nothing. An empty batch only
        checks. Prefer db.transaction().

        >>> import lsmkv, tempfile
        >>> db = lsmkv.DB(tempfile.mkdtemp())
        >>> db.put(b"a", b"1")
        >>> snap = db.snapshot()
        >>> wb = db.write_batch(); wb.put(b"b", b"2")
        >>> db.write_if_unchanged(wb, [b"a", b"b"], snap.sequence)
        >>> db.put(b"a", b"changed")
        >>> db.write_if_unchanged(wb, [b"a"], snap.sequence)
        Traceback (most recent call last):
          ...
        lsmkv.errors.ConflictError: transaction conflict: key b'a' was written at sequence 3, ...
        >>> snap.close(); db.close()
        """
        self.core._write_batch(batch, sync, list(keys), seq)

    def transaction(self, *, sync=False, pessimistic=False):
        """Begin an optimistic transaction (lsmkv.Transaction, as RocksDB's
        OptimisticTransactionDB): it reads a snapshot taken now with its own
        writes over it, and its commit (sync: as write()'s) writes them all
        atomically or raises lsmkv.ConflictError, writing nothing, if a key it
        wrote or read with get_for_update() was written by anyone else since.
        Use it as a context manager: it commits when the block exits normally
        and rolls back when the block raises. docs/getting-started.md,
        "Transactions". pessimistic=True (locks taken as keys are read) is not
        implemented: it raises NotImplementedError.

        >>> import lsmkv, tempfile
        >>> db = lsmkv.DB(tempfile.mkdtemp())
        >>> db.put(b"counter", b"0")
        >>> for attempt in range(10):               # the retry loop of optimistic concurrency
        ...     try:
        ...         with db.transaction() as txn:
        ...             n = int(txn.get_for_update(b"counter"))
        ...             txn.put(b"counter", b"%d" % (n + 1))
        ...         break
        ...     except lsmkv.ConflictError:
        ...         continue
        >>> db.get(b"counter")
        b'1'
        >>> db.transaction(pessimistic=True)
        Traceback (most recent call last):
          ...
        NotImplementedError: only optimistic transactions exist: db.transaction() checks for conflicts at commit; pessimistic=True (locks with timeouts) is not implemented
        >>> db.close()
        """
        if pessimistic:
            raise NotImplementedError("only optimistic transactions exist: db.transaction() checks for "
                                      "conflicts at commit; pessimistic=True (locks with timeouts) is "
                                      "not implemented")
        return Transaction(self, sync)     # lsmkv/core/txn.pxi

    def newest_sequence(self, key):
        """Internal: the sequence number of key's newest entry of any kind (a put,
        an expired put, a deletion, a merge operand) or of the newest range
        tombstone covering key if newer, or None if the DB holds none (never
        written, or its deletion was dropped by compaction or a flush). Compaction at
        the bottommost level, and a flush with no table below its key range, may
        report 0 for a version older than every live snapshot (docs/format.md,
        "Sequence 0"): compare sequences only while holding a snapshot older than
        the writes to detect (as transactions do).

        >>> import lsmkv, tempfile
        >>> db = lsmkv.DB(tempfile.mkdtemp())
        >>> db.put(b"a", b"1"); db.put(b"b", b"2"); db.delete(b"a")
        >>> db.newest_sequence(b"a"), db.newest_sequence(b"b"), db.newest_sequence(b"c")
        (3, 2, None)
        >>> db.compact_range()      # the bottommost level: b's put gets sequence 0, a's deletion goes
        >>> db.newest_sequence(b"a"), db.newest_sequence(b"b")
        (None, 0)
        >>> db.close()
        """
        cdef Bytes kb
        cdef int64_t r
        get_buffer(key, &kb, "key")
        try:
            r = self.core._newest_seq(kb.p, kb.n, -1)
        finally:
            release_buffer(&kb)
        return None if r < 0 else r

    def get(self, key, default=None):
        """The value stored under key, or default if it is absent or expired.
        db[key] raises KeyError instead.

        >>> import lsmkv, tempfile
        >>> db = lsmkv.DB(tempfile.mkdtemp())
        >>> db.put(b"k", b"v")
        >>> db.get(b"k"), db.get(b"nope"), db.get(b"nope", b"fallback")
        (b'v', None, b'fallback')
        >>> db.close()
        """
        cdef Core c = self.core
        r = c._get(key, c.last_seq)
        return default if r is None else r

    def get_at(self, key, uint64_t seq, default=None):
        """get() as of sequence number seq (snapshots). Without a snapshot holding
        seq, compaction may drop the older versions it would see; prefer
        db.snapshot(), which uses this.

        >>> import lsmkv, tempfile
        >>> db = lsmkv.DB(tempfile.mkdtemp())
        >>> db.put(b"k", b"1")
        >>> snap = db.snapshot()
        >>> db.put(b"k", b"2")
        >>> db.get_at(b"k", snap.sequence), db.get_at(b"new", snap.sequence, b"-")
        (b'1', b'-')
        >>> snap.close(); db.close()
        """
        r = self.core._get(key, seq)
        return default if r is None else r

    def multi_get(self, keys, default=None):
        """The values of several keys in one call, as a list in the order given:
        default where a key is absent, deleted or expired (as get() for each, all
        from one consistent view). Faster than a get() per key: the memtables are
        searched once per key, then each table is asked once about all its keys
        in key order, so a data block is found and decompressed once for every
        key it holds; the blocks missing from the cache are read and decompressed
        together, without the GIL and on helper threads too (lsmkv/core/fetch.pxi).

        >>> import lsmkv, tempfile
        >>> db = lsmkv.DB(tempfile.mkdtemp())
        >>> db.put(b"a", b"1"); db.put(b"c", b"3")
        >>> db.flush(); db.put(b"b", b"2"); db.delete(b"c")
        >>> db.multi_get([b"c", b"a", b"x", b"b"])
        [None, b'1', None, b'2']
        >>> db.multi_get([b"x", b"a"], default=b"-")
        [b'-', b'1']
        >>> db.close()
        """
        return core_multi_get(self.core, keys, None, default)

    def multi_get_at(self, keys, uint64_t seq, default=None):
        """multi_get() as of sequence number seq (what Snapshot.multi_get uses; see
        get_at about snapshots).

        >>> import lsmkv, tempfile
        >>> db = lsmkv.DB(tempfile.mkdtemp())
        >>> db.put(b"k", b"1")
        >>> snap = db.snapshot()
        >>> db.put(b"k", b"2"); db.put(b"n", b"3")
        >>> db.multi_get_at([b"k", b"n"], snap.sequence)
        [b'1', None]
        >>> snap.close(); db.close()
        """
        return core_multi_get(self.core, keys, seq, default)

    def __getitem__(self, key):
        cdef Core c = self.core
        r = c._get(key, c.last_seq)
        if r is None:
            raise KeyError(key)
        return r

    def __contains__(self, key):
        cdef Core c = self.core
        return c._get(key, c.last_seq) is not None

    def ttl(self, key):
        """Seconds until key expires (a float), or None if it never expires.
        KeyError if the key is absent or already expired.

        >>> import lsmkv, tempfile
        >>> now = [1000.0]
        >>> db = lsmkv.DB(tempfile.mkdtemp(), clock=lambda: now[0])
        >>> db.put(b"s", b"t", ttl=30); db.put(b"p", b"v")
        >>> now[0] += 10
        >>> db.ttl(b"s"), db.ttl(b"p")
        (20.0, None)
        >>> now[0] += 20
        >>> db.ttl(b"s")
        Traceback (most recent call last):
          ...
        KeyError: b's'
        >>> db.close()
        """
        cdef Core c = self.core
        return c._ttl_at(key, c.last_seq)

    def ttl_at(self, key, uint64_t seq):
        """ttl() as of sequence `seq` (what a snapshot taken then sees).

        >>> import lsmkv, tempfile
        >>> db = lsmkv.DB(tempfile.mkdtemp(), clock=lambda: 1000.0)
        >>> db.put(b"s", b"t", ttl=30)
        >>> snap = db.snapshot()
        >>> db.put(b"s", b"t")                  # no expiry from now on
        >>> db.ttl_at(b"s", snap.sequence), db.ttl(b"s")
        (30.0, None)
        >>> snap.close(); db.close()
        """
        return self.core._ttl_at(key, seq)

    def get_view(self, key, default=None):
        """Like get(), but the value comes as a ValueView: a read-only buffer over
        the cached block that holds it, without a copy (a value in a memtable is
        copied once, as get() does). The block stays pinned in the cache until the
        view is released or dropped, so release views soon: a server sends them
        straight to a socket. Views may pin at most half the slab cache; past that,
        and with block_cache='lru', the view holds a copy or the block's bytes.

        >>> import lsmkv, tempfile
        >>> db = lsmkv.DB(tempfile.mkdtemp())
        >>> db.put(b"k", b"v" * 1000)
        >>> db.flush()                          # the value now lives in a table
        >>> v = db.get_view(b"k")
        >>> len(v), bytes(memoryview(v)[:3]), v.pinned
        (1000, b'vvv', True)
        >>> v.release(); db.get_view(b"nope") is None
        True
        >>> db.close()
        """
        return self.core._get_view(key, default)

    def get_with_ttl(self, key, default=None):
        """(value, seconds until it expires or None) in one lookup, or default if
        the key is absent or expired: get() and ttl() together, consistent with
        each other (a write between two separate calls cannot split them).

        >>> import lsmkv, tempfile
        >>> now = [1000.0]
        >>> db = lsmkv.DB(tempfile.mkdtemp(), clock=lambda: now[0])
        >>> db.put(b"s", b"t", ttl=30); db.put(b"p", b"v")
        >>> now[0] += 10
        >>> db.get_with_ttl(b"s"), db.get_with_ttl(b"p"), db.get_with_ttl(b"x")
        ((b't', 20.0), (b'v', None), None)
        >>> db.close()
        """
        return self.core._get_with_ttl(key, default)

    def items(self, start=None, stop=None, *, bint reverse=False, prefix=None):
        """Iterator of (key, value) for start <= key < stop, in key order (or reverse);
        with prefix, only keys starting with it (any bytes, 0xff included). It sees
        the DB as of its creation and keeps the files it reads alive until it is
        exhausted or closed (or dropped). Complexity: O(log n) to position, then
        amortized O(1) per item for a few sources.

        >>> import lsmkv, tempfile
        >>> db = lsmkv.DB(tempfile.mkdtemp())
        >>> for k in (b"apple", b"banana", b"cherry"):
        ...     db.put(k, k.upper())
        >>> list(db.items(b"b"))
        [(b'banana', b'BANANA'), (b'cherry', b'CHERRY')]
        >>> list(db.items(None, b"c", reverse=True))
        [(b'banana', b'BANANA'), (b'apple', b'APPLE')]
        >>> db.close()
        """
        return self.core._iterate(start, stop, reverse, 0, None, self, prefix)

    def keys(self, start=None, stop=None, *, bint reverse=False, prefix=None):
        """Like items(), yielding keys only.

        >>> import lsmkv, tempfile
        >>> db = lsmkv.DB(tempfile.mkdtemp())
        >>> for k in (b"user:1", b"user:2", b"zone:1"):
        ...     db.put(k, b"")
        >>> list(db.keys(b"user:", b"user;"))       # a range scan
        [b'user:1', b'user:2']
        >>> list(db.keys(prefix=b"user:"))          # the same, as a prefix scan
        [b'user:1', b'user:2']
        >>> db.close()
        """
        return self.core._iterate(start, stop, reverse, 1, None, self, prefix)

    def values(self, start=None, stop=None, *, bint reverse=False, prefix=None):
        """Like items(), yielding values only.

        >>> import lsmkv, tempfile
        >>> db = lsmkv.DB(tempfile.mkdtemp())
        >>> db.put(b"a", b"1"); db.put(b"b", b"2")
        >>> list(db.values()), list(db.values(reverse=True))
        ([b'1', b'2'], [b'2', b'1'])
        >>> db.close()
        """
        return self.core._iterate(start, stop, reverse, 2, None, self, prefix)

    def iterator(self, lower=None, upper=None, *, prefix=None, snapshot=None, cf=None):
        """An lsmkv.Iterator: a cursor that can seek, move both ways and re-seek,
        over lower <= key < upper (None: unbounded) and, with prefix, keys starting
        with it; as of snapshot (a Snapshot of this DB) or now; over column family
        cf (a handle; None: this one). It starts
        positioned nowhere: call seek(), seek_for_prev(), seek_to_first() or
        seek_to_last(). Close it (or use it in a with block) to release the files
        it pins.

        >>> import lsmkv, tempfile
        >>> db = lsmkv.DB(tempfile.mkdtemp())
        >>> for k in (b"user:1", b"user:2", b"zone:1"):
        ...     db.put(k, b"v" + k[-1:])
        >>> with db.iterator(prefix=b"user:") as it:
        ...     it.seek_to_last(); print(it.key(), it.value())
        ...     print(list(it))                  # from where it stands, forward
        b'user:2' b'v2'
        [(b'user:2', b'v2')]
        >>> db.close()
        """
        if cf is not None and cf is not self:
            if not isinstance(cf, CoreDB) or (<CoreDB>cf).core.db is not self.core.db:
                raise TypeError("cf must be a column family handle of this database")
            return cf.iterator(lower, upper, prefix=prefix, snapshot=snapshot)
        if snapshot is not None:
            return snapshot.iterator(lower, upper, prefix=prefix, cf=self if self.core.cf_id else None)
        return self.core._cursor(lower, upper, prefix, None, self)


def iterate_at(CoreDB db, start, stop, bint reverse, int mode, seq, prefix=None):
    """A DBIterator of db over [start, stop) (keys starting with prefix) as of
    sequence seq (None: now), yielding items (mode 0), keys (1) or values (2);
    what Snapshot.items(), keys() and values() return (see CoreDB.items())."""
    return db.core._iterate(start, stop, reverse, mode, seq, db, prefix)


def multi_get_views(CoreDB db, keys):
    """The values of keys as get_view() gives them (a ValueView each, None where a
    key is absent, deleted or expired), in the order given, from one consistent
    view: the memtables are searched once for all the keys, the searches
    interleaved as multi_get() does; a key they do not hold is then read as
    get_view() reads it, so a value in a cached block comes pinned, without a
    copy. What `lsmkv serve` uses for pipelined GETs (lsmkv/server/fast.pyx).

    >>> import lsmkv, tempfile
    >>> from lsmkv.core.dbcore import multi_get_views
    >>> db = lsmkv.DB(tempfile.mkdtemp())
    >>> db.put(b"a", b"1" * 1000); db.flush(); db.put(b"b", b"2")
    >>> va, vb, vx = multi_get_views(db, [b"a", b"b", b"x"])
    >>> bytes(va) == b"1" * 1000, va.pinned, bytes(vb), vx
    (True, True, b'2', None)
    >>> va.release(); vb.release(); db.close()
    """
    return core_multi_get(db.core, keys, None, None, True)


PUT_MANY_NODE_BYTES = PUT_MANY_NODE_MAX   # put_many's bound of a memtable node's bytes besides key and value


def put_many(CoreDB db, list keys, list values):
    """db.put(keys[j], values[j]) for each j, in order (no ttl, no sync): the same
    log records, sequences, counts and entries as that many puts, faster for a
    group of up to 32 into a large memtable: their memtable inserts are searched
    together, the searches interleaved as multi_get's (each insert into a large
    skiplist is a chain of cache misses). What `lsmkv serve` uses for pipelined
    SETs (lsmkv/server/fast.pyx).

    >>> import lsmkv, tempfile
    >>> from lsmkv.core.dbcore import put_many
    >>> db = lsmkv.DB(tempfile.mkdtemp())
    >>> put_many(db, [b"b", b"a", b"b"], [b"1", b"2", b"3"])
    >>> db.get(b"a"), db.get(b"b"), db.stats()["puts"]
    (b'2', b'3', 3)
    >>> db.close()
    """
    db.core._put_many(keys, values)


def write_room(CoreDB db):
    """Bytes a write may add to db's memtable before it is full (0 or less: it
    is), or -1 while level 0 is at its slowdown trigger: what decides whether
    `lsmkv serve` writes inline (lsmkv/server/store.py's Store.cheap; fast.pyx
    reads it once per group of SETs), read as C fields.

    >>> import lsmkv, tempfile
    >>> from lsmkv.core.dbcore import write_room
    >>> db = lsmkv.DB(tempfile.mkdtemp(), write_buffer_size=1 << 20)
    >>> 0 < write_room(db) <= 1 << 20
    True
    >>> db.close()
    """
    cdef Core c = db.core
    if c.l0_files >= c.l0_slowdown:
        return -1
    return <Py_ssize_t>c.write_buffer_size - <Py_ssize_t>c.sv.mem.arena.used


def cursor_at(CoreDB db, lower, upper, prefix, seq):
    """An lsmkv.Iterator of db as of sequence seq (see CoreDB.iterator()); what
    Snapshot.iterator() returns."""
    return db.core._cursor(lower, upper, prefix, seq, db)


include "snaplist.pxi"
include "txn.pxi"
