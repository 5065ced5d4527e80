# TransactionCore: the compiled half of lsmkv.Transaction (included by dbcore.pyx).
# lsmkv/engine/transaction.py subclasses it with the public, documented methods
# and states the transaction's guarantees; this part holds what an uncontended
# transaction's calls touch, so that begin, get_for_update, put and commit each
# cost one compiled call: the snapshot's registration (SnapshotList, no lock),
# the reads (Core._get at the snapshot's sequence), the batch of its writes and
# the checked write (Core._write_batch with the tracked keys).
#
# Thread safety: a transaction is used by one thread at a time (see
# transaction.py); the engine state it touches is the SnapshotList's (atomic
# calls) and the write path's (the mutex).
#
# Invariants:
#   1. While `outcome` is None the transaction holds exactly one registration of
#      `begin_sequence` in its engine's SnapshotList; it is released exactly once:
#      when the transaction ends (commit, whatever its result, or rollback), or
#      when an open transaction is deallocated (no_gc_clear keeps the reference
#      to the list until then, even in a garbage cycle).
#   2. `batch` (made at the first write) holds the writes in order; writes[key]
#      is the last write of key: (value bytes, expiry ms or 0), or None for a
#      delete. Every written key is in `tracked`, which holds each key once (as
#      bytes); `tracked_set` mirrors it once it has more than TRACKED_LIST keys.
#   3. Nothing else of the engine is changed before commit, so a transaction
#      dropped without ending writes nothing.

DEF TRACKED_LIST = 8          # tracked keys kept in a list (a linear `in`) up to this many

cimport cython
import weakref

cdef WriteBatch _NO_WRITES = WriteBatch()     # committed by a transaction that wrote nothing (never filled)
cdef list _NO_KEYS = []                       # checked by one that tracked nothing (never filled)
cdef object _ABSENT = object()


cdef bytes txn_key(object key):
    """key as bytes (bytes, bytearray, memoryview); TypeError naming it otherwise."""
    if PyBytes_CheckExact(key):
        return <bytes>key
    if isinstance(key, (bytes, bytearray, memoryview)):
        return bytes(key)
    raise TypeError(f"key must be bytes, bytearray or memoryview, not {type(key).__name__}")


@cython.no_gc_clear
cdef class TransactionCore:
    """The compiled half of lsmkv.Transaction (lsmkv/engine/transaction.py): its
    state and per-operation paths. Its methods are the transaction's internals;
    use db.transaction() and the lsmkv.Transaction methods."""
    cdef Core core
    cdef CoreDB db
    cdef SnapshotList snaps
    cdef readonly uint64_t begin_sequence
    cdef readonly object outcome          # None while open; "committed" / "rolled back"
    cdef WriteBatch batch
    cdef dict writes
    cdef list tracked
    cdef set tracked_set
    cdef object iterators                 # a WeakSet of its open iterators, made by the first
    cdef bint sync
    cdef bint registered

    def __cinit__(self, CoreDB db not None, sync=False):
        cdef Core core = db.core
        if core.read_only:
            (<object>core).check_open()
            raise core.read_only_error("transactions are refused")
        self.db = db
        self.core = core
        self.sync = bool(sync)
        self.snaps = <SnapshotList?>(<object>core).snapshots
        if core.closed:
            raise core.state.error()
        self.begin_sequence = self.snaps.register()
        self.registered = True

    def __dealloc__(self):
        if self.registered and self.snaps is not None:
            self.registered = False
            self.snaps.unregister(self.begin_sequence)

    cdef int check(self) except -1:
        if self.outcome is not None:
            raise ClosedError(f"the transaction is {self.outcome}: begin a new one with db.transaction()")
        if self.core.state.closed:
            raise self.core.state.error()
        return 0

    def check_open(self):
        """ClosedError if the transaction has ended or its DB is closed."""
        self.check()

    # -- reads

    cdef object lookup(self, bytes key, object default):
        cdef int64_t expiry
        if self.writes is not None:
            w = self.writes.get(key, _ABSENT)
            if w is not _ABSENT:
                if w is None:
                    return default
                expiry = (<tuple>w)[1]
                if expiry and expiry <= clock_ms(self.core.clock):
                    return default
                return (<tuple>w)[0]
        r = self.core._get(key, self.begin_sequence)
        return default if r is None else r

    cdef int track_one(self, bytes key) except -1:
        if self.tracked is None:
            self.tracked = [key]
        elif self.tracked_set is not None:
            if key not in self.tracked_set:
                self.tracked_set.add(key)
                self.tracked.append(key)
        elif key not in self.tracked:
            self.tracked.append(key)
            if len(self.tracked) > TRACKED_LIST:
                self.tracked_set = set(self.tracked)
        return 0

    def read(self, key, default=None):
        """Transaction.get."""
        self.check()
        return self.lookup(txn_key(key), default)

    def read_for_update(self, key, default=None):
        """Transaction.get_for_update."""
        self.check()
        k = txn_key(key)
        self.track_one(k)
        return self.lookup(k, default)

    def track(self, keys):
        """Transaction.watch (keys: an iterable; all are checked before any is tracked)."""
        self.check()
        ks = [txn_key(k) for k in keys]
        for k in ks:
            self.track_one(k)

    # -- writes

    cdef int add_write(self, int kind, key, value, ttl) except -1:
        cdef Bytes kb, vb
        cdef int64_t expiry = 0
        self.check()
        if ttl is not None:
            expiry = expiry_from_ttl(self.core.clock, ttl)
        if self.batch is None:
            self.batch = WriteBatch.__new__(WriteBatch, self.core.clock)   # tp_new: no type call
        get_buffer(key, &kb, "key")
        try:
            if kind == KIND_DELETE:
                self.batch._add(KIND_DELETE, kb.p, kb.n, NULL, 0, 0)
                w = None
            else:
                get_buffer(value, &vb, "value")
                try:
                    self.batch._add(KIND_PUT_TTL if expiry else KIND_PUT, kb.p, kb.n, vb.p, vb.n, expiry)
                    v = <bytes>value if PyBytes_CheckExact(value) else \
                        PyBytes_FromStringAndSize(<const char*>vb.p, vb.n)
                finally:
                    release_buffer(&vb)
                w = (v, expiry)
            k = <bytes>key if PyBytes_CheckExact(key) else PyBytes_FromStringAndSize(<const char*>kb.p, kb.n)
        finally:
            release_buffer(&kb)
        if self.writes is None:
            self.writes = {}
        self.writes[k] = w
        self.track_one(k)
        return 0

    def stage_put(self, key, value, ttl=None):
        """Transaction.put."""
        self.add_write(KIND_PUT, key, value, ttl)

    def stage_delete(self, key):
        """Transaction.delete."""
        self.add_write(KIND_DELETE, key, None, None)

    # -- what its iterators read

    def snapshot_iterator(self, lower, upper, prefix):
        """An lsmkv.Iterator of the DB at the transaction's snapshot (what
        Transaction.iterator merges its writes with; see add_iterator)."""
        self.check()
        return self.core._cursor(lower, upper, prefix, self.begin_sequence, self.db)

    def own_writes(self):
        """The transaction's writes: {key: (value, expiry ms or 0) or None (deleted)}
        (its own dict: read it, don't change it)."""
        return {} if self.writes is None else self.writes

    def add_iterator(self, it):
        """Close it when the transaction ends."""
        if self.iterators is None:
            self.iterators = weakref.WeakSet()
        self.iterators.add(it)

    def now_ms(self):
        """The DB's clock in whole ms (expiry decisions)."""
        return clock_ms(self.core.clock)

    # -- the end

    cdef int finish(self, str how) except -1:
        self.outcome = how
        if self.registered:
            self.registered = False
            self.snaps.unregister(self.begin_sequence)
        self.writes = None
        self.tracked = None
        self.tracked_set = None
        self.batch = None
        if self.iterators is not None:         # release the files their cursors pin now
            its, self.iterators = list(self.iterators), None
            for it in its:
                it.close()
        return 0

    cdef int commit_c(self) except -1:
        self.check()
        if self.batch is None and self.tracked is None:     # nothing to write or check
            self.finish("committed")
            return 0
        try:
            self.core._write_batch(_NO_WRITES if self.batch is None else self.batch, self.sync,
                                   _NO_KEYS if self.tracked is None else self.tracked,
                                   self.begin_sequence)
        finally:
            self.finish("committed")
        return 0

    cdef int rollback_c(self) except -1:
        if self.outcome == "rolled back":
            return 0
        if self.outcome is not None:
            raise ClosedError(f"the transaction is {self.outcome}: it cannot be rolled back")
        self.finish("rolled back")
        return 0

    def commit_writes(self):
        """Transaction.commit."""
        self.commit_c()

    def rollback_writes(self):
        """Transaction.rollback."""
        self.rollback_c()

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if self.outcome is not None:
            return False
        if exc_type is None:
            self.commit_c()
        else:
            self.rollback_c()
        return False

    def __repr__(self):
        return (f"<lsmkv.Transaction {self.outcome or 'open'} sequence={self.begin_sequence} "
                f"writes={0 if self.batch is None else self.batch.count}>")

