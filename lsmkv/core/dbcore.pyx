# cython: language_level=3
"""The compiled per-operation path: put/delete/write-batch (WAL append + memtable
insert) and get (memtables, then L0 newest first, then one file per level).

lsmkv.engine.db.DB subclasses CoreDB and adds open/recovery, background flush and
everything that is not per-operation.

Thread safety: writers serialize on `mutex` (a threading.Lock shared with the
Python side). Readers take no lock: they read `sv` (one reference: the
SuperVersion of memtables and tables) and `last_seq`, both replaced only
while holding the GIL, so a reader sees a consistent pair. A SuperVersion is
immutable once built.

Invariants:
  1. Every entry with sequence <= last_seq is in sv (a memtable or a table).
  2. A write reaches the WAL before the memtable; last_seq moves only after
     both, so a reader never sees half of a batch.
  3. sv.imms is newest first; sv.l0 is newest first; each deeper level is
     sorted by key with non-overlapping files.
"""
import threading

from libc.stdlib cimport malloc, realloc, free
from libc.string cimport memcpy
from libc.math cimport ceil
from libc.stdint cimport uint8_t, uint32_t, uint64_t, int64_t
from cpython.bytes cimport PyBytes_FromStringAndSize, PyBytes_AS_STRING, PyBytes_GET_SIZE, PyBytes_CheckExact
from cpython.bytearray cimport PyByteArray_CheckExact
from cpython.buffer cimport PyObject_GetBuffer, PyBuffer_Release, PyBUF_SIMPLE
from lsmkv.core.coding cimport (load_u64, store_u64, load_u32, store_u32, put_varint, get_varint, varint_len,
                            make_tag, cmp_ikey, cmp_bytes, TAG_SIZE,
                            KIND_DELETE, KIND_PUT, KIND_PUT_TTL, KIND_MAX)
from lsmkv.core.memtable cimport MemTable
from lsmkv.core.table cimport TableReader
from lsmkv.core.cache cimport ValueView
from lsmkv.core.table import DELETED
from lsmkv.core.bloom cimport bloom_hash      # one definition of the hash (lsmkv/core/bloom.pxd)
from lsmkv.core.bloom import bloom_hash_py
from lsmkv.core.wal cimport LogWriter
from lsmkv.core.memtable cimport MemTableIterator
from lsmkv.core.table cimport TableIterator, LevelIterator, find_table
from lsmkv.core.iterator cimport MergingIterator, HandleState
from lsmkv.core.iterator import DBIterator
from lsmkv.errors import ClosedError, BackgroundError, CorruptionError

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


cdef int64_t expiry_from_ttl(object clock, object ttl) except -2:
    if ttl is None:
        return 0
    if isinstance(ttl, bool) or not isinstance(ttl, (int, float)):
        raise TypeError(f"ttl must be a number of seconds or None, not {type(ttl).__name__}")
    if not ttl > 0:
        raise ValueError(f"ttl must be > 0 seconds, got {ttl!r}")
    # rounded up: a key never expires before its ttl has passed (at most 1 ms after)
    cdef int64_t e = <int64_t>ceil((clock() + ttl) * 1000.0)
    return e if e > 0 else 1

# ------------------------------------------------------------------ super version

cdef class SuperVersion:
    """An immutable view of every source a read consults."""
    cdef readonly MemTable mem
    cdef readonly tuple imms            # newest first
    cdef readonly tuple l0              # TableReaders, newest first
    cdef readonly tuple levels          # per level >= 1: (tuple readers, list largest ikeys, list smallest ukeys)
    cdef readonly object version        # lsmkv.engine.version.Version the tables come from

    def __cinit__(self, MemTable mem, tuple imms, tuple l0, tuple levels, version):
        self.mem = mem
        self.imms = imms
        self.l0 = l0
        self.levels = levels
        self.version = version

    def memtables(self):
        return (self.mem,) + self.imms

# ------------------------------------------------------------------ batch encoding

cdef inline size_t record_size(int kind, size_t kn, size_t vn) noexcept:
    """Bytes encode_record() writes for one record."""
    cdef size_t n = 1 + varint_len(kn) + kn
    if kind != KIND_DELETE:
        n += varint_len(vn) + vn + (8 if kind == KIND_PUT_TTL else 0)
    return n


cdef inline uint8_t* encode_record(uint8_t* p, int kind, const uint8_t* k, size_t kn,
                                   const uint8_t* v, size_t vn, int64_t expiry) noexcept:
    """One batch record at p (see WriteBatch); returns the byte after it."""
    p[0] = kind
    p = put_varint(p + 1, kn)
    if kn:
        memcpy(p, k, kn)
    p += kn
    if kind != KIND_DELETE:
        if kind == KIND_PUT_TTL:
            store_u64(p, <uint64_t>expiry)
            p += 8
        p = put_varint(p, vn)
        if vn:
            memcpy(p, v, vn)
        p += vn
    return p


cdef class WriteBatch:
    """Puts and deletes applied atomically by DB.write(batch) or db.write_batch().

    Encoded as it is built (the WAL payload format, docs/format.md):
    seq u64 | count u32 | records; record = kind u8 | varint klen | key
    [| expiry u64 if kind == PUT_TTL] [| varint vlen | value if a put].
    `count` (read-only) is the number of operations added, as is len(batch).
    A WriteBatch made directly has no clock, so its puts take no ttl; one from
    db.batch() or db.write_batch() uses the DB's clock.

    >>> import lsmkv, tempfile
    >>> db = lsmkv.DB(tempfile.mkdtemp())
    >>> wb = lsmkv.WriteBatch()
    >>> wb.put(b"a", b"1"); wb.put(b"b", b"2"); wb.delete(b"c")
    >>> wb.count, len(wb)
    (3, 3)
    >>> db.write(wb)
    >>> list(db.items())
    [(b'a', b'1'), (b'b', b'2')]
    >>> db.close()
    """
    cdef uint8_t* buf
    cdef size_t len, cap
    cdef readonly uint32_t count
    cdef object clock

    def __cinit__(self, clock=None):
        self.buf = <uint8_t*>malloc(256)
        if self.buf == NULL:
            raise MemoryError()
        self.cap = 256
        self.len = BATCH_HEADER
        self.count = 0
        self.clock = clock

    def __dealloc__(self):
        free(self.buf)

    cdef int _reserve(self, size_t n) except -1:
        cdef size_t need = self.len + n
        cdef uint8_t* g
        if need > self.cap:
            if need < self.cap * 2:
                need = self.cap * 2
            g = <uint8_t*>realloc(self.buf, need)
            if g == NULL:
                raise MemoryError()
            self.buf = g
            self.cap = need
        return 0

    def put(self, key, value, ttl=None):
        """Add a put; ttl in seconds (None: never expires; needs a batch from
        db.batch() or db.write_batch(), which have the DB's clock).

        >>> import lsmkv, tempfile
        >>> db = lsmkv.DB(tempfile.mkdtemp(), clock=lambda: 1000.0)
        >>> wb = db.batch()
        >>> wb.put(b"k", b"v"); wb.put(b"tmp", b"x", ttl=5)
        >>> db.write(wb)
        >>> db.get(b"k"), db.ttl(b"tmp")
        (b'v', 5.0)
        >>> lsmkv.WriteBatch().put(b"k", b"v", ttl=5)
        Traceback (most recent call last):
          ...
        ValueError: this WriteBatch has no clock; create it with db.write_batch()
        >>> db.close()
        """
        cdef Bytes kb, vb
        cdef int64_t expiry = 0
        if ttl is not None:
            if self.clock is None:
                raise ValueError("this WriteBatch has no clock; create it with db.write_batch()")
            expiry = expiry_from_ttl(self.clock, ttl)
        get_buffer(key, &kb, "key")
        try:
            get_buffer(value, &vb, "value")
            try:
                self._add(KIND_PUT_TTL if expiry else KIND_PUT, kb.p, kb.n,
                          vb.p, vb.n, expiry)
            finally:
                release_buffer(&vb)
        finally:
            release_buffer(&kb)

    def delete(self, key):
        """Add a delete of key (applied in order: a later put of the same key in
        this batch wins).

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
        get_buffer(key, &kb, "key")
        try:
            self._add(KIND_DELETE, kb.p, kb.n, NULL, 0, 0)
        finally:
            release_buffer(&kb)

    cdef int _add(self, int kind, const uint8_t* k, size_t kn, const uint8_t* v, size_t vn,
                  int64_t expiry) except -1:
        self._reserve(record_size(kind, kn, vn))
        self.len = encode_record(self.buf + self.len, kind, k, kn, v, vn, expiry) - self.buf
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
        self.len = BATCH_HEADER
        self.count = 0

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
        return self.len


cdef struct BatchOp:
    int kind
    const uint8_t* key
    uint64_t kn
    const uint8_t* val
    uint64_t vn
    int64_t expiry


cdef const uint8_t* read_batch_op(const uint8_t* p, const uint8_t* end, BatchOp* op,
                                  object path, uint64_t offset) except NULL:
    """Decode the batch record at p into op; returns the position after it.
    Malformed input raises CorruptionError(path, offset). The one decoder of
    batch records: recovery (apply_batch) and tools (decode_batch) use it."""
    cdef uint64_t kn, vn = 0
    if p >= end:
        raise CorruptionError(path, offset, "batch count larger than its records")
    op.kind = p[0]
    p = get_varint(p + 1, end, &kn)
    if p == NULL or kn > <uint64_t>(end - p):
        raise CorruptionError(path, offset, "bad key length in batch")
    op.key = p
    op.kn = kn
    p += kn
    op.expiry = 0
    if op.kind == KIND_PUT_TTL:
        if end - p < 8:
            raise CorruptionError(path, offset, "truncated expiry in batch")
        op.expiry = <int64_t>load_u64(p)
        p += 8
    elif op.kind != KIND_PUT and op.kind != KIND_DELETE:
        raise CorruptionError(path, offset, f"unknown record kind {op.kind} in batch")
    if op.kind != KIND_DELETE:
        p = get_varint(p, end, &vn)
        if p == NULL or vn > <uint64_t>(end - p):
            raise CorruptionError(path, offset, "bad value length in batch")
    op.val = p
    op.vn = vn
    return p + vn


cdef int apply_batch(MemTable mem, const uint8_t* rep, size_t n, object path, uint64_t offset) except -1:
    """Insert a batch payload (header included) into mem. Returns its record count.
    Malformed input raises CorruptionError(path, offset)."""
    if n < BATCH_HEADER:
        raise CorruptionError(path, offset, "batch shorter than its header")
    cdef uint64_t seq = load_u64(rep)
    cdef uint32_t count = load_u32(rep + 8)
    cdef const uint8_t* p = rep + BATCH_HEADER
    cdef const uint8_t* end = rep + n
    cdef BatchOp op
    cdef uint32_t i
    for i in range(count):
        p = read_batch_op(p, end, &op, path, offset)
        mem.add(seq + i, op.kind, op.key, op.kn, op.val, op.vn, op.expiry)
    if p != end:
        raise CorruptionError(path, offset, "trailing bytes after batch records")
    return count


def replay_batch(MemTable mem, payload, path, uint64_t offset):
    """Apply one WAL record to mem; returns (first_seq, count)."""
    cdef const uint8_t[::1] v = payload
    if v.shape[0] < BATCH_HEADER:
        raise CorruptionError(path, offset, "batch shorter than its header")
    cdef uint32_t count = apply_batch(mem, &v[0], v.shape[0], path, offset)
    return load_u64(&v[0]), count


def decode_batch(payload, path, uint64_t offset):
    """(first sequence, [(kind, key, value, expiry_ms)]) of one WAL record, in
    record order (tools: the shell's wal-dump). Kinds: 0 delete, 1 put, 2 put
    with expiry. Malformed input raises CorruptionError(path, offset)."""
    cdef const uint8_t[::1] v = payload
    if v.shape[0] < BATCH_HEADER:
        raise CorruptionError(path, offset, "batch shorter than its header")
    cdef const uint8_t* p = &v[0] + BATCH_HEADER
    cdef const uint8_t* end = &v[0] + v.shape[0]
    cdef uint32_t count = load_u32(&v[0] + 8)
    cdef BatchOp op
    cdef uint32_t i
    ops = []
    for i in range(count):
        p = read_batch_op(p, end, &op, path, offset)
        ops.append((op.kind, PyBytes_FromStringAndSize(<char*>op.key, op.kn),
                    PyBytes_FromStringAndSize(<char*>op.val, op.vn), op.expiry))
    if p != end:
        raise CorruptionError(path, offset, "trailing bytes after batch records")
    return load_u64(&v[0]), ops

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


cpdef object check_bound(str name, object v):
    """v as bytes (or None) for a range bound; TypeError naming it otherwise."""
    if v is None or PyBytes_CheckExact(v):
        return v
    if isinstance(v, (bytearray, memoryview, bytes)):
        return bytes(v)
    raise TypeError(f"{name} must be bytes, bytearray, memoryview or None, not {type(v).__name__}")

# ------------------------------------------------------------------ the core

cdef class Core:
    """The engine's state that the per-operation paths use, and those paths (cdef).

    Shared by the DB handle (CoreDB, whose methods are thin compiled calls into
    these) and the background threads, through lsmkv.engine.engine.Engine, the Python subclass
    that opens, flushes, compacts and closes. The threads hold the Core, never the
    handle, so dropping the last reference to a handle finalizes it (its finalizer
    closes the engine) while they run. A Core made alone (CoreDB's placeholder) is
    closed.

    The Python side it calls, only on cold paths, through three components the
    engine binds at open (declared here and in dbcore.pyi):
      writes  (lsmkv.engine.writes.WriteController)
              make_room()           the memtable is full (mutex held)
              level0_stall(nbytes)  level 0 reached the slowdown trigger (mutex held)
      logs    (lsmkv.engine.logs.LogSet)
              sync_retired()        a sync write while older logs are unsynced (mutex held)
      files   (lsmkv.engine.files.Files)
              gc_pending            a pin was released while the mutex was busy
              gc_soon()             collect and purge what released pins held
              pins, current_version()  for Pin
    The per-operation paths (put, get, delete, write, iteration steps) make no
    Python call."""
    cdef public SuperVersion sv
    cdef public LogWriter wal
    cdef public uint64_t last_seq
    cdef public object mutex
    cdef public bint closed
    cdef public object bg_error
    cdef public size_t write_buffer_size
    cdef public object clock
    cdef public unsigned long long n_puts, n_deletes, n_gets, n_get_hits, n_writes, n_syncs
    cdef public unsigned long long n_bloom_checks, n_bloom_useful, n_wal_bytes, n_batches, n_user_bytes
    cdef public unsigned long long n_view_pins       # get_view() results that pin a cache slot
    cdef public int l0_files, l0_slowdown, l0_stop       # level-0 file count and its stall triggers
    cdef public list retired_logs    # logs of immutable memtables not yet synced and closed
    cdef public HandleState state    # closed (or inherited by fork()) with this handle; iterators share it
    cdef public object writes        # lsmkv.engine.writes.WriteController: make_room(), level0_stall()
    cdef public object logs          # lsmkv.engine.logs.LogSet: sync_retired()
    cdef public object files         # lsmkv.engine.files.Files: gc_pending, gc_soon(), pins

    def __cinit__(self, *args, **kwargs):
        self.mutex = threading.Lock()
        self.closed = True
        self.bg_error = None
        self.last_seq = 0
        self.n_puts = self.n_deletes = self.n_gets = self.n_get_hits = 0
        self.n_writes = self.n_syncs = self.n_bloom_checks = self.n_bloom_useful = 0
        self.n_wal_bytes = self.n_batches = self.n_user_bytes = 0
        self.n_view_pins = 0
        self.l0_files = 0
        self.l0_slowdown = self.l0_stop = 1 << 30
        self.retired_logs = []
        self.state = HandleState()

    cdef int _writable(self, size_t nbytes) except -1:
        if self.closed:
            raise self.state.error()
        if self.bg_error is not None:
            raise BackgroundError(f"the database is read-only after a background error: {self.bg_error}")
        if self.l0_files >= self.l0_slowdown:
            self.writes.level0_stall(nbytes)
        if self.sv.mem.arena.used >= self.write_buffer_size:
            self.writes.make_room()
        return 0

    # -- writes

    cdef int _sync_logs(self) except -1:
        """Make every record written so far durable (mutex held): older logs not yet
        synced first, so a synced write never outlives an unsynced older one."""
        if self.retired_logs:
            self.logs.sync_retired()
        self.wal.sync_c()
        self.n_syncs += 1
        return 0

    cdef int _sync_wal(self) except -1:
        """See CoreDB.sync_wal."""
        with self.mutex:
            if self.closed:
                raise self.state.error()
            try:
                self._sync_logs()
            except OSError as e:
                self._sync_failed(e)
                raise
        return 0

    cdef void _sync_failed(self, e):
        """A write's WAL sync failed (mutex held). Its record is in the log, where a
        reopen would replay it: the caller has applied it to the memtable and moved
        last_seq past it, so this process shows what a reopen would and the next
        write never reuses its sequence number. Whether the log's unsynced tail is on
        disk is unknown (Linux may drop dirty pages after a failed fsync), so the DB
        stops taking writes, as RocksDB does on a failed WAL sync: reads go on, and
        writes raise BackgroundError until the DB is reopened."""
        if self.bg_error is None:
            self.bg_error = e

    cdef int _write_one(self, int kind, const uint8_t* k, size_t kn, const uint8_t* v, size_t vn,
                        int64_t expiry, bint sync) except -1:
        cdef size_t n = BATCH_HEADER + record_size(kind, kn, vn)
        cdef uint64_t seq
        cdef uint8_t* p
        with self.mutex:
            self._writable(n)
            seq = self.last_seq + 1
            p = self.wal.begin(n)
            store_u64(p, seq)
            store_u32(p + 8, 1)
            encode_record(p + BATCH_HEADER, kind, k, kn, v, vn, expiry)
            self.wal.commit(n)
            if sync:
                try:
                    self._sync_logs()
                except OSError as e:
                    self.sv.mem.add(seq, kind, k, kn, v, vn, expiry)
                    self.last_seq = seq
                    self._sync_failed(e)
                    raise
            self.sv.mem.add(seq, kind, k, kn, v, vn, expiry)
            self.last_seq = seq
            self.n_wal_bytes += n + 8
            self.n_user_bytes += kn + vn
            self.n_writes += 1
        return 0

    cdef int _put(self, key, value, ttl, bint sync) except -1:
        cdef Bytes kb, vb
        cdef int64_t expiry = 0
        if ttl is not None:
            expiry = expiry_from_ttl(self.clock, ttl)
        get_buffer(key, &kb, "key")
        try:
            get_buffer(value, &vb, "value")
            try:
                self._write_one(KIND_PUT_TTL if expiry else KIND_PUT, kb.p, kb.n,
                                vb.p, vb.n, expiry, sync)
            finally:
                release_buffer(&vb)
        finally:
            release_buffer(&kb)
        self.n_puts += 1
        return 0

    cdef int _delete(self, key, bint sync) except -1:
        cdef Bytes kb
        get_buffer(key, &kb, "key")
        try:
            self._write_one(KIND_DELETE, kb.p, kb.n, NULL, 0, 0, sync)
        finally:
            release_buffer(&kb)
        self.n_deletes += 1
        return 0

    cdef int _write_batch(self, WriteBatch batch, bint sync) except -1:
        cdef uint64_t seq
        cdef uint8_t* p
        if self.closed:
            raise self.state.error()
        if batch.count == 0:
            return 0
        with self.mutex:
            self._writable(batch.len)
            seq = self.last_seq + 1
            store_u64(batch.buf, seq)
            store_u32(batch.buf + 8, batch.count)
            p = self.wal.begin(batch.len)
            memcpy(p, batch.buf, batch.len)
            self.wal.commit(batch.len)
            if sync:
                try:
                    self._sync_logs()
                except OSError as e:
                    apply_batch(self.sv.mem, batch.buf, batch.len, "<batch>", 0)
                    self.last_seq = seq + batch.count - 1
                    self._sync_failed(e)
                    raise
            apply_batch(self.sv.mem, batch.buf, batch.len, "<batch>", 0)
            self.last_seq = seq + batch.count - 1
            self.n_wal_bytes += batch.len + 8
            self.n_user_bytes += batch.len - BATCH_HEADER
            self.n_writes += 1
            self.n_batches += 1
        return 0

    # -- reads

    cdef object _lookup(self, const uint8_t* k, size_t kn, uint64_t seq, int64_t* expiry=NULL,
                        bint view=False):
        """bytes, or None if absent (deleted, expired or never written). If expiry is
        given, it receives the found value's expiry in ms (left alone if none). With
        view, a value found in a table comes as a ValueView (no copy); memtable
        values still come as bytes."""
        cdef SuperVersion sv = self.sv
        cdef MemTable m
        cdef const uint8_t* vp
        cdef size_t vn
        cdef int kind, i
        cdef int64_t now = -1
        cdef TableReader t
        cdef uint8_t stackbuf[128]
        cdef uint8_t* ik = stackbuf
        cdef size_t ikn = kn + TAG_SIZE
        cdef uint64_t h
        cdef object r
        cdef tuple lv
        cdef bytes b
        if self.closed:
            raise self.state.error()
        if sv.mem.lookup(k, kn, seq, &vp, &vn, &kind):
            return self._mem_result(kind, vp, vn, expiry)
        for m in sv.imms:
            if m.lookup(k, kn, seq, &vp, &vn, &kind):
                return self._mem_result(kind, vp, vn, expiry)
        if not sv.l0 and not sv.levels:
            return None
        if ikn > 128:
            ik = <uint8_t*>malloc(ikn)
            if ik == NULL:
                raise MemoryError()
        try:
            if kn:
                memcpy(ik, k, kn)
            store_u64(ik + kn, make_tag(seq, KIND_MAX))
            h = bloom_hash(k, kn)
            for t in sv.l0:
                if t.in_range(k, kn):      # L0 files overlap, but most keys miss most ranges
                    r = self._probe(t, h, ik, ikn, &now, expiry, view)
                    if r is not None:
                        return None if r is DELETED else r
            for lv in sv.levels:
                i = find_table(<list>lv[1], ik, ikn)
                if i == len(<list>lv[1]):
                    continue
                b = <bytes>(<list>lv[2])[i]
                if cmp_bytes(k, kn, <const uint8_t*>PyBytes_AS_STRING(b), PyBytes_GET_SIZE(b)) < 0:
                    continue
                r = self._probe(<TableReader>(<tuple>lv[0])[i], h, ik, ikn, &now, expiry, view)
                if r is not None:
                    return None if r is DELETED else r
            return None
        finally:
            if ik != stackbuf:
                free(ik)

    cdef object _probe(self, TableReader t, uint64_t h, const uint8_t* ik, size_t ikn,
                       int64_t* now, int64_t* expiry, bint view):
        """One table's answer for ik (see TableReader.get), after its bloom filter.
        now is read from the clock the first time a table is searched."""
        self.n_bloom_checks += 1
        if not t.may_contain(h):
            self.n_bloom_useful += 1
            return None
        if now[0] < 0:
            now[0] = self._now_ms()
        return t.get(ik, ikn, now[0], expiry, view)

    cdef int64_t _now_ms(self) except? -1:
        cdef timespec ts
        if self.clock is _time_time:
            # the default clock, read without a Python call: no float object per get
            clock_gettime(CLOCK_REALTIME, &ts)
            return <int64_t>ts.tv_sec * 1000 + ts.tv_nsec // 1000000
        return <int64_t>(self.clock() * 1000.0)

    cdef object _mem_result(self, int kind, const uint8_t* vp, size_t vn, int64_t* expiry):
        if kind == KIND_PUT:
            return PyBytes_FromStringAndSize(<char*>vp, vn)
        if kind == KIND_PUT_TTL:
            if <int64_t>load_u64(vp) <= self._now_ms():
                return None
            if expiry != NULL:
                expiry[0] = <int64_t>load_u64(vp)
            return PyBytes_FromStringAndSize(<char*>vp + 8, vn - 8)
        return None

    cdef object _get(self, object key, uint64_t seq, int64_t* expiry=NULL, bint view=False):
        """_lookup for a key object, counted in gets and get_hits."""
        cdef Bytes kb
        get_buffer(key, &kb, "key")
        try:
            r = self._lookup(kb.p, kb.n, seq, expiry, view)
        finally:
            release_buffer(&kb)
        self.n_gets += 1
        if r is not None:
            self.n_get_hits += 1
        return r

    cdef object _ttl_at(self, key, uint64_t seq):
        cdef Bytes kb
        cdef int64_t expiry = 0
        get_buffer(key, &kb, "key")
        try:
            r = self._lookup(kb.p, kb.n, seq, &expiry)
        finally:
            release_buffer(&kb)
        if r is None:
            raise KeyError(key)
        return self._seconds_left(expiry)

    cdef object _seconds_left(self, int64_t expiry):
        """Seconds from now until expiry (ms since the epoch), or None for 0 (never)."""
        if expiry == 0:
            return None
        return max(0.0, expiry / 1000.0 - self.clock())

    cdef object _get_view(self, key, default):
        r = self._get(key, self.last_seq, NULL, True)
        if r is None:
            return default
        if type(r) is bytes:
            return ValueView.of(r, <const uint8_t*>PyBytes_AS_STRING(r), PyBytes_GET_SIZE(r))
        if (<ValueView>r).cache is not None:
            self.n_view_pins += 1
        return r

    cdef object _get_with_ttl(self, key, default):
        cdef int64_t expiry = 0
        r = self._get(key, self.last_seq, &expiry)
        if r is None:
            return default
        return (r, self._seconds_left(expiry))

    cdef object _iterate(self, start, stop, bint reverse, int mode, seq, owner):
        """A DBIterator over [start, stop) as of seq (None: now), pinning its version;
        it keeps owner (the DB handle) alive."""
        cdef SuperVersion sv
        cdef MemTable m
        cdef TableReader t
        cdef list children = []
        cdef tuple lv
        start = check_bound("start", start)
        stop = check_bound("stop", stop)
        if self.closed:
            raise self.state.error()
        if self.files.gc_pending:   # a pin was released while the mutex was busy
            self.files.gc_soon()
        sv = self.sv
        cdef uint64_t s = self.last_seq if seq is None else seq
        pin = Pin(self.files, sv.version)
        children.append(MemTableIterator(sv.mem))
        for m in sv.imms:
            children.append(MemTableIterator(m))
        for t in sv.l0:
            children.append(TableIterator(t))
        for lv in sv.levels:
            children.append(LevelIterator(list(lv[0]), lv[1]))
        return DBIterator(MergingIterator(children), s, self._now_ms(), start, stop, reverse, mode, pin,
                          self.state, owner)


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

    def __delitem__(self, key):
        self.core._delete(key, False)

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

    def items(self, start=None, stop=None, *, bint reverse=False):
        """Iterator of (key, value) for start <= key < stop, in key order (or reverse).
        It sees the DB as of its creation and keeps the files it reads alive until it
        is exhausted or closed (or dropped). Complexity: O(log n) to position, then
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
        return self.core._iterate(start, stop, reverse, 0, None, self)

    def keys(self, start=None, stop=None, *, bint reverse=False):
        """Like items(), yielding keys only.

        >>> import lsmkv, tempfile
        >>> db = lsmkv.DB(tempfile.mkdtemp())
        >>> for k in (b"user:1", b"user:2", b"zone:1"):
        ...     db.put(k, b"")
        >>> list(db.keys(b"user:", b"user;"))       # a prefix scan
        [b'user:1', b'user:2']
        >>> db.close()
        """
        return self.core._iterate(start, stop, reverse, 1, None, self)

    def values(self, start=None, stop=None, *, bint reverse=False):
        """Like items(), yielding values only.

        >>> import lsmkv, tempfile
        >>> db = lsmkv.DB(tempfile.mkdtemp())
        >>> db.put(b"a", b"1"); db.put(b"b", b"2")
        >>> list(db.values()), list(db.values(reverse=True))
        ([b'1', b'2'], [b'2', b'1'])
        >>> db.close()
        """
        return self.core._iterate(start, stop, reverse, 2, None, self)


def iterate_at(CoreDB db, start, stop, bint reverse, int mode, seq):
    """A DBIterator of db over [start, stop) as of sequence seq (None: now),
    yielding items (mode 0), keys (1) or values (2); what Snapshot.items(),
    keys() and values() return (see CoreDB.items())."""
    return db.core._iterate(start, stop, reverse, mode, seq, db)
