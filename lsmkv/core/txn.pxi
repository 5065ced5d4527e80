# Transaction: lsmkv.Transaction, compiled (included by dbcore.pyx;
# lsmkv/engine/transaction.py states the transaction's guarantees and exports it).
# It holds what a transaction's calls touch, so that begin, get_for_update, put
# and commit each cost one compiled call: the snapshot's registration
# (SnapshotList, no lock), the reads (Core._get at the snapshot's sequence), the
# batch of its writes and the checked write (Core._write_batch with the tracked
# keys). Its iterator, TransactionIterator, merges a snapshot cursor with a
# sorted copy of the writes.
#
# Thread safety: a transaction (and its iterators) is used by one thread at a
# time (see transaction.py); the engine state it touches is the SnapshotList's
# (atomic calls) and the write path's (the mutex).
#
# Invariants:
#   1. While `outcome` is None the transaction holds exactly one registration of
#      `begin_sequence` in its engine's SnapshotList; it is released exactly once:
#      when the transaction ends (commit, whatever its result, or rollback), or
#      when an open transaction is deallocated (no_gc_clear keeps the reference
#      to the list until then, even in a garbage cycle).
#   2. `batch` (made at the first write) holds the writes in order; writes[key]
#      is the last write of key: (value bytes, expiry ms or 0), or None for a
#      delete, or, when its last writes are merges, a list [base, operand, ...]:
#      the operands in order over base, the write before them (such a tuple or
#      None) or _SNAPSHOT (none: the snapshot's value). The transaction shows
#      such a key as the DB's merge operator folding the operands over base's
#      value (fold_write), what the DB shows once the batch is written
#      (merge.pyx, invariant 2). A merge is added only with a merge operator,
#      and then batch.has_merge is set. Every written key is in `tracked`,
#      which holds each key once (as bytes); `tracked_set` mirrors it once it
#      has more than TRACKED_LIST keys. Column families (cf=): a family's writes
#      are in fams[id].writes (the same forms), its tracked keys in `tracked` as
#      (family Core, key) tuples (Core._check_unchanged asks that family), its
#      records in the one batch (naming their family).
#   3. Nothing else of the engine is changed before commit, so a transaction
#      dropped without ending writes nothing.
#   4. A transaction is tracked by the cyclic garbage collector: it references
#      its DB handle and its Core, and through the Core's clock or merge
#      operator user objects may reference it back (an object holding an open
#      transaction and the DB it made with clock=self.now): the collector must
#      see those edges to free such a cycle (and the DB's finalizer to close it).
#      no_gc_clear keeps its references while the collector breaks a cycle
#      elsewhere, so that its deallocation can release its registration.

DEF TRACKED_LIST = 8          # tracked keys kept in a list (a linear `in`) up to this many
DEF BATCH_POOL = 8            # emptied batches kept for the next transactions' writes
DEF POOLED_BATCH_BYTES = 4096 # a batch that grew larger is freed instead

cimport cython
import bisect
import weakref

from lsmkv.errors import InvalidIteratorError

cdef WriteBatch _NO_WRITES = WriteBatch()     # committed by a transaction that wrote nothing (never filled)
cdef list _NO_KEYS = []                       # checked by one that tracked nothing (never filled)
cdef object _ABSENT = object()
cdef object _SNAPSHOT = object()              # a merge list's base: no own write before the operands
_DELETED = None          # the overlay's value for a key the transaction deleted

# Ended transactions' batches, emptied, for the next ones (no object or buffer to
# allocate per transaction). Taken and given back by compiled code that runs no
# Python code in between, so under the GIL each is one atomic step; a batch in
# the pool is referenced by nothing else.
cdef list _batch_pool = []


cdef WriteBatch take_batch(object clock):
    cdef WriteBatch b
    if _batch_pool:
        b = <WriteBatch>_batch_pool.pop()
        b.clock = clock
        return b
    return WriteBatch.__new__(WriteBatch, clock)       # tp_new: no type call


cdef int give_batch(WriteBatch b) except -1:
    if len(_batch_pool) < BATCH_POOL and b.b.cap <= POOLED_BATCH_BYTES:
        b.b.len = BATCH_HEADER
        b.count = 0
        b.has_merge = False
        b.clock = None
        b.cfs = None
        _batch_pool.append(b)
    return 0


cdef object fold_write(Core core, uint64_t seq, bytes key, list w, int64_t now):
    """key's value as a transaction reading at seq sees it when its last writes of
    key are merges, w = [base, operand, ...] (invariant 2): the DB's merge
    operator folding the operands over base's value (None: a delete, a put
    whose expiry is <= now, or, for _SNAPSHOT, the key absent at seq); now < 0:
    the clock's now. Errors of the operator propagate."""
    cdef int64_t expiry
    cdef MergeOperator op = core.merge_op
    base = w[0]
    if base is _SNAPSHOT:
        existing = core._get(key, seq)
    elif base is None:
        existing = None
    else:
        expiry = (<tuple>base)[1]
        if expiry and now < 0:
            now = clock_ms(core.clock)
        existing = None if expiry and expiry <= now else (<tuple>base)[0]
    if op is None:
        core._no_merge_operator()
    return op.full_merge(key, existing, w[1:])


cdef class TxnFamily:
    """A transaction's writes to one column family (its overlay)."""
    cdef Core core
    cdef dict writes

    def __cinit__(self, Core core):
        self.core = core
        self.writes = {}


cdef bytes txn_key(object key):
    """key as bytes (bytes, bytearray, memoryview); TypeError naming it otherwise."""
    if PyBytes_CheckExact(key):
        return <bytes>key
    if isinstance(key, (bytes, bytearray, memoryview)):
        return bytes(key)
    raise TypeError(f"key must be bytes, bytearray or memoryview, not {type(key).__name__}")


@cython.no_gc_clear           # tracked, never cleared: see the invariants
cdef class Transaction:
    """An optimistic transaction: made by db.transaction(); a context manager
    that commits when its block exits normally and rolls back when it raises.

    Reads see the DB as of begin (repeatable read) with the transaction's own
    writes over it. commit() writes all of its puts, deletes and merges atomically, or
    raises lsmkv.ConflictError and writes nothing if a key it wrote or read with
    get_for_update() was written by anyone else after it began. Plain get()
    reads are not checked. Either way the transaction is then over.

    >>> import lsmkv, tempfile
    >>> db = lsmkv.DB(tempfile.mkdtemp())
    >>> db.put(b"alice", b"100"); db.put(b"bob", b"0")
    >>> with db.transaction() as txn:
    ...     a = int(txn.get_for_update(b"alice"))
    ...     b = int(txn.get_for_update(b"bob"))
    ...     txn.put(b"alice", b"%d" % (a - 30)); txn.put(b"bob", b"%d" % (b + 30))
    ...     txn.get(b"alice"), db.get(b"alice")      # its own write; the DB's
    (b'70', b'100')
    >>> db.get(b"alice"), db.get(b"bob")
    (b'70', b'30')
    >>> db.close()
    """
    cdef Core core
    cdef CoreDB db
    cdef SnapshotList snaps
    cdef uint64_t begin_sequence
    cdef object outcome                   # None while open; then "committed", "rolled back",
                                          # "conflicted" or "failed" (see ended)
    cdef WriteBatch batch
    cdef dict writes
    cdef list tracked
    cdef set tracked_set
    cdef object iterators                 # a WeakSet of its open iterators, made by the first
    cdef dict fams                        # column family id -> TxnFamily, made by the first cf= write
    cdef bint sync
    cdef bint registered
    cdef object __weakref__

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

    @property
    def sequence(self):
        """The sequence number of the snapshot the transaction reads.

        >>> import lsmkv, tempfile
        >>> db = lsmkv.DB(tempfile.mkdtemp())
        >>> db.put(b"k", b"v")
        >>> with db.transaction() as txn:
        ...     txn.sequence == db.last_seq
        True
        >>> db.close()
        """
        return self.begin_sequence

    cdef int check(self) except -1:
        if self.outcome is not None:
            raise ClosedError(f"the transaction is {self.outcome}: begin a new one with db.transaction()")
        if self.core.state.closed:
            raise self.core.state.error()
        return 0

    # -- reads

    cdef object lookup(self, bytes key, object default):
        return self.lookup_in(self.core, self.writes, key, default)

    cdef object lookup_in(self, Core core, dict writes, bytes key, object default):
        cdef int64_t expiry
        if writes is not None:
            w = writes.get(key, _ABSENT)
            if w is not _ABSENT:
                if w is None:
                    return default
                if type(w) is list:
                    r = fold_write(core, self.begin_sequence, key, <list>w, -1)
                    return default if r is None else r
                expiry = (<tuple>w)[1]
                if expiry and expiry <= clock_ms(core.clock):
                    return default
                return (<tuple>w)[0]
        r = core._get(key, self.begin_sequence)
        return default if r is None else r

    cdef Core family(self, object cf):
        """The family Core of a cf= argument (None: the default's, returned as None)."""
        if cf is None:
            return None
        if not isinstance(cf, CoreDB):
            raise TypeError(f"cf must be a column family handle, not {type(cf).__name__}")
        cdef Core c = (<CoreDB>cf).core
        if c.db is not self.core:
            raise ValueError("cf is a column family of another database")
        if c.cf_id == 0:
            return None
        if c.closed:
            raise c._closed_error()
        return c

    cdef dict family_writes(self, Core fam):
        """fam's overlay of writes, or None if the transaction wrote none to it."""
        if self.fams is None:
            return None
        tf = self.fams.get(fam.cf_id)
        return None if tf is None else (<TxnFamily>tf).writes

    cdef object lookup_cf(self, Core fam, bytes key, object default):
        return self.lookup_in(fam, self.family_writes(fam), key, default)

    cdef int track_one(self, object key) except -1:
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

    def get(self, key, default=None, *, cf=None):
        """key's value as the transaction sees it: its own last write of key, or
        the DB as of begin; default if absent (deleted, expired). Not validated
        at commit (use get_for_update for that). cf: a column family (None: the
        default); every family is read at the transaction's one sequence.

        >>> import lsmkv, tempfile
        >>> db = lsmkv.DB(tempfile.mkdtemp())
        >>> db.put(b"k", b"1")
        >>> with db.transaction() as txn:
        ...     db.put(b"k", b"2")                  # after begin: not seen
        ...     before = txn.get(b"k")
        ...     txn.put(b"j", b"x"); txn.delete(b"j")
        ...     before, txn.get(b"j"), txn.get(b"j", b"-")
        (b'1', None, b'-')
        >>> db.get(b"k"), db.get(b"j")      # committed: a plain read of k is not checked
        (b'2', None)
        >>> db.close()
        """
        self.check()
        if cf is not None:
            fam = self.family(cf)
            if fam is not None:
                return self.lookup_cf(fam, txn_key(key), default)
        return self.lookup(txn_key(key), default)

    def get_for_update(self, key, default=None, *, cf=None):
        """get(), and the commit will fail with ConflictError if anyone else writes
        key after the transaction began (RocksDB's GetForUpdate, optimistic); cf: a
        column family (None: the default).

        >>> import lsmkv, tempfile
        >>> db = lsmkv.DB(tempfile.mkdtemp())
        >>> db.put(b"stock", b"5")
        >>> txn = db.transaction()
        >>> txn.get_for_update(b"stock")
        b'5'
        >>> db.put(b"stock", b"4")
        >>> txn.put(b"log", b"sold one")
        >>> txn.commit()
        Traceback (most recent call last):
          ...
        lsmkv.errors.ConflictError: transaction conflict: key b'stock' was written at sequence 2, ...
        >>> db.get(b"log") is None
        True
        >>> db.close()
        """
        self.check()
        k = txn_key(key)
        if cf is not None:
            fam = self.family(cf)
            if fam is not None:
                self.track_one((fam, k))
                return self.lookup_cf(fam, k, default)
        self.track_one(k)
        return self.lookup(k, default)

    def watch(self, *keys):
        """Make the commit fail with ConflictError if anyone else writes one of
        keys after the transaction began, without reading them (get_for_update's
        check alone; what a server's WATCH needs).

        >>> import lsmkv, tempfile
        >>> db = lsmkv.DB(tempfile.mkdtemp())
        >>> txn = db.transaction()
        >>> txn.watch(b"a", b"b")
        >>> db.put(b"b", b"1")
        >>> txn.commit()
        Traceback (most recent call last):
          ...
        lsmkv.errors.ConflictError: transaction conflict: key b'b' was written at sequence 1, ...
        >>> db.close()
        """
        self.check()
        ks = [txn_key(k) for k in keys]          # all checked before any is tracked
        for k in ks:
            self.track_one(k)

    # -- writes

    cdef int add_write(self, int kind, key, value, ttl, object cf=None) except -1:
        cdef Bytes kb, vb
        cdef int64_t expiry = 0
        cdef Core fam = None
        cdef dict writes
        self.check()
        if cf is not None:
            fam = self.family(cf)
        if kind == KIND_MERGE and (self.core if fam is None else fam).merge_op is None:
            (self.core if fam is None else fam)._no_merge_operator()
        if ttl is not None:
            expiry = expiry_from_ttl(self.core.clock, ttl)
        if self.batch is None:
            self.batch = take_batch(self.core.clock)
        get_buffer(key, &kb, "key")
        try:
            if kind == KIND_DELETE:
                self.batch._add(KIND_DELETE, kb.p, kb.n, NULL, 0, 0, fam)
                w = None
            elif kind == KIND_MERGE:
                get_buffer(value, &vb, "operand")
                try:
                    self.batch._add(KIND_MERGE, kb.p, kb.n, vb.p, vb.n, 0, fam)
                    if fam is None:
                        self.batch.has_merge = True
                    v = <bytes>value if PyBytes_CheckExact(value) else \
                        PyBytes_FromStringAndSize(<const char*>vb.p, vb.n)
                finally:
                    release_buffer(&vb)
                w = v               # made into the key's merge list below
            else:
                get_buffer(value, &vb, "value")
                try:
                    self.batch._add(KIND_PUT_TTL if expiry else KIND_PUT, kb.p, kb.n, vb.p, vb.n, expiry, fam)
                    v = <bytes>value if PyBytes_CheckExact(value) else \
                        PyBytes_FromStringAndSize(<const char*>vb.p, vb.n)
                finally:
                    release_buffer(&vb)
                w = (v, expiry)
            k = <bytes>key if PyBytes_CheckExact(key) else PyBytes_FromStringAndSize(<const char*>kb.p, kb.n)
        finally:
            release_buffer(&kb)
        if fam is None:
            if self.writes is None:
                self.writes = {}
            writes = self.writes
        else:
            if self.fams is None:
                self.fams = {}
            tf = self.fams.get(fam.cf_id)
            if tf is None:
                tf = self.fams[fam.cf_id] = TxnFamily(fam)
            writes = (<TxnFamily>tf).writes
        if kind == KIND_MERGE:
            prev = writes.get(k, _SNAPSHOT)
            if type(prev) is list:
                (<list>prev).append(w)
                w = prev
            else:
                w = [prev, w]
        writes[k] = w
        self.track_one(k if fam is None else (fam, k))
        return 0

    def put(self, key, value, *, ttl=None, cf=None):
        """Store value under key when the transaction commits (ttl: seconds from
        now until it expires; None: never). The transaction sees it at once.
        cf: a column family (None: the default).

        >>> import lsmkv, tempfile
        >>> db = lsmkv.DB(tempfile.mkdtemp(), clock=lambda: 1000.0)
        >>> with db.transaction() as txn:
        ...     txn.put(b"session", b"token", ttl=30)
        ...     txn.get(b"session"), db.get(b"session")
        (b'token', None)
        >>> db.get(b"session"), db.ttl(b"session")
        (b'token', 30.0)
        >>> db.close()
        """
        self.add_write(KIND_PUT, key, value, ttl, cf)

    def delete(self, key, *, cf=None):
        """Remove key when the transaction commits; the transaction sees it gone
        at once. cf: a column family (None: the default).

        >>> import lsmkv, tempfile
        >>> db = lsmkv.DB(tempfile.mkdtemp())
        >>> db.put(b"k", b"v")
        >>> with db.transaction() as txn:
        ...     txn.delete(b"k")
        ...     txn.get(b"k"), db.get(b"k")
        (None, b'v')
        >>> db.get(b"k") is None
        True
        >>> db.close()
        """
        self.add_write(KIND_DELETE, key, None, None, cf)

    def merge(self, key, operand, *, cf=None):
        """Add operand to key's value through the DB's merge operator (cf: a column
        family's; None: the default) when the
        transaction commits (as db.merge()); the transaction sees it at once: its
        reads of key fold its merges of key, in order, over what it saw before
        them (its own put or delete, or the snapshot's value). Checked at commit
        like a put. MergeOperatorError, at once, if the DB has no merge operator.

        >>> import lsmkv, tempfile
        >>> db = lsmkv.DB(tempfile.mkdtemp(), merge_operator=("append", b","))
        >>> db.put(b"log", b"a")
        >>> with db.transaction() as txn:
        ...     txn.merge(b"log", b"b"); txn.merge(b"log", b"c")
        ...     txn.get(b"log"), db.get(b"log")
        (b'a,b,c', b'a')
        >>> db.get(b"log")
        b'a,b,c'
        >>> db.close()
        """
        self.add_write(KIND_MERGE, key, operand, None, cf)

    # -- scans

    def iterator(self, lower=None, upper=None, *, prefix=None, cf=None):
        """A cursor (the lsmkv.Iterator methods: seek, seek_for_prev,
        seek_to_first, seek_to_last, next, prev, valid, key, value, item, close,
        `for k, v in it`) over lower <= key < upper (and keys starting with
        prefix) as the transaction sees them: the snapshot with the writes the
        transaction made before the iterator was made laid over it (RocksDB's
        WriteBatchWithIndex::NewIteratorWithBase). It starts positioned nowhere.
        cf: a column family (None: the default).

        >>> import lsmkv, tempfile
        >>> db = lsmkv.DB(tempfile.mkdtemp())
        >>> for k in (b"a", b"b", b"c"):
        ...     db.put(k, b"db")
        >>> with db.transaction() as txn:
        ...     txn.delete(b"b"); txn.put(b"bb", b"txn")
        ...     with txn.iterator() as it:
        ...         it.seek_to_last(); it.prev()
        ...         print(it.key(), it.value(), list(txn.keys()))
        b'bb' b'txn' [b'a', b'bb', b'c']
        >>> db.close()
        """
        self.check()
        cdef Core fam = self.family(cf) if cf is not None else None
        cdef Core core = self.core if fam is None else fam
        cdef dict writes = self.writes if fam is None else self.family_writes(fam)
        base = core._cursor(lower, upper, prefix, self.begin_sequence, self.db if fam is None else cf)
        lo, hi = base.lower, base.upper
        writes = {} if writes is None else writes
        keys = sorted([k for k in writes if (lo is None or k >= lo) and (hi is None or k < hi)])
        vals = [writes[k] for k in keys]
        for i, w in enumerate(vals):
            if type(w) is list:           # later merges append to the transaction's list: copy
                vals[i] = list(<list>w)
        it = TransactionIterator(self, base, keys, vals, self.core.clock, core)
        if self.iterators is None:
            self.iterators = weakref.WeakSet()
        self.iterators.add(it)
        return it

    def items(self, start=None, stop=None, *, reverse=False, prefix=None, cf=None):
        """(key, value) for start <= key < stop (and starting with prefix) as the
        transaction sees them, in key order (or reverse): a list; cf: a column
        family (None: the default).

        >>> import lsmkv, tempfile
        >>> db = lsmkv.DB(tempfile.mkdtemp())
        >>> db.put(b"a", b"1"); db.put(b"c", b"3")
        >>> with db.transaction() as txn:
        ...     txn.put(b"b", b"2"); txn.delete(b"c")
        ...     txn.items(), txn.items(reverse=True, prefix=b"a")
        ([(b'a', b'1'), (b'b', b'2')], [(b'a', b'1')])
        >>> db.close()
        """
        with self.iterator(check_bound("start", start), check_bound("stop", stop), prefix=prefix,
                           cf=cf) as it:
            out = []
            if reverse:
                it.seek_to_last()
                while it.valid():
                    out.append(it.item())
                    it.prev()
            else:
                it.seek_to_first()
                while it.valid():
                    out.append(it.item())
                    it.next()
            return out

    def keys(self, start=None, stop=None, *, reverse=False, prefix=None, cf=None):
        """Like items(), the keys only.

        >>> import lsmkv, tempfile
        >>> db = lsmkv.DB(tempfile.mkdtemp())
        >>> db.put(b"a", b"1")
        >>> with db.transaction() as txn:
        ...     txn.put(b"b", b"2")
        ...     txn.keys(), txn.keys(reverse=True)
        ([b'a', b'b'], [b'b', b'a'])
        >>> db.close()
        """
        return [k for k, _ in self.items(start, stop, reverse=reverse, prefix=prefix, cf=cf)]

    # -- the end

    cdef int finish(self, str how) except -1:
        self.outcome = how
        if self.registered:
            self.registered = False
            self.snaps.unregister(self.begin_sequence)
        self.writes = None
        self.fams = None
        self.tracked = None
        self.tracked_set = None
        if self.batch is not None:
            give_batch(self.batch)
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
        how = "failed"            # the write raised: it may or may not be in the log (as any failed write)
        try:
            self.core._write_batch(_NO_WRITES if self.batch is None else self.batch, self.sync,
                                   _NO_KEYS if self.tracked is None else self.tracked,
                                   self.begin_sequence)
            how = "committed"
        except ConflictError:
            how = "conflicted"    # nothing was written
            raise
        finally:
            self.finish(how)
        return 0

    cdef int rollback_c(self) except -1:
        if self.outcome == "rolled back":
            return 0
        if self.outcome is not None:
            raise ClosedError(f"the transaction is {self.outcome}: it cannot be rolled back")
        self.finish("rolled back")
        return 0

    def commit(self):
        """Write every put, delete and merge of the transaction atomically (with the
        sync given to db.transaction()), or raise lsmkv.ConflictError and write
        nothing if a key it wrote or read with get_for_update() was written by
        anyone else after it began. The transaction is over either way.

        >>> import lsmkv, tempfile
        >>> db = lsmkv.DB(tempfile.mkdtemp())
        >>> txn = db.transaction(sync=True)
        >>> txn.put(b"a", b"1"); txn.put(b"b", b"2")
        >>> db.get(b"a") is None
        True
        >>> txn.commit()
        >>> db.get(b"a"), db.get(b"b")
        (b'1', b'2')
        >>> txn.get(b"a")
        Traceback (most recent call last):
          ...
        lsmkv.errors.ClosedError: the transaction is committed: begin a new one with db.transaction()
        >>> db.close()
        """
        self.commit_c()

    def rollback(self):
        """Drop every write of the transaction and end it (a no-op on a
        transaction already rolled back).

        >>> import lsmkv, tempfile
        >>> db = lsmkv.DB(tempfile.mkdtemp())
        >>> txn = db.transaction()
        >>> txn.put(b"a", b"1")
        >>> txn.rollback(); txn.rollback()
        >>> db.get(b"a") is None
        True
        >>> db.close()
        """
        self.rollback_c()

    @property
    def ended(self):
        """None while the transaction is open; then how it ended: "committed",
        "rolled back", "conflicted" (commit raised ConflictError: nothing was
        written) or "failed" (commit raised another error, as a write can: an
        I/O error, the DB closed).

        >>> import lsmkv, tempfile
        >>> db = lsmkv.DB(tempfile.mkdtemp())
        >>> with db.transaction() as txn:
        ...     txn.ended
        >>> txn.ended
        'committed'
        >>> db.close()
        """
        return self.outcome

    def __enter__(self):
        return self

    def __reduce__(self):
        raise TypeError("a lsmkv.Transaction cannot be pickled or sent to another process: "
                        "begin one there from that process's own DB handle "
                        "(docs/getting-started.md, \"Processes\")")

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


class TransactionIterator:
    """A cursor over a transaction's view: its snapshot's lsmkv.Iterator (`base`)
    merged with the transaction's writes in the iterator's bounds, a sorted copy
    (`keys`, `vals`: (value, expiry), _DELETED, or a merge list folded when
    shown, txn.pxi invariant 2) taken when it was made.

    Positions: moving forward, base and the write index `oi` both stand past
    the shown key (on the next candidates); moving backward, both stand before
    it. A change of direction re-seeks both at the shown key. A key the
    transaction wrote hides the base's entry of that key.
    """

    def __init__(self, txn, base, keys, vals, clock, core=None):
        self._txn = txn
        self._clock = clock
        self._core = core          # the Core it reads: the DB's or a column family's
        self._base = base
        self._keys = keys
        self._vals = vals
        self._oi = 0
        self._dir = 1
        self._cur = None            # (key, value) shown, or None
        self._positioned = False
        self._closed = False
        self._now = 0

    @property
    def lower(self):
        """The effective inclusive lower bound, as lsmkv.Iterator.lower."""
        return self._base.lower

    @property
    def upper(self):
        """The effective exclusive upper bound, as lsmkv.Iterator.upper."""
        return self._base.upper

    def _check(self):
        txn = <Transaction>self._txn
        if txn.outcome is not None:
            self.close()
            raise ClosedError(f"the transaction is {txn.outcome}: its iterators are closed")
        if self._closed:
            raise ClosedError("the iterator is closed")
        if txn.core.state.closed:          # as lsmkv.Iterator: nothing is read of a closed DB,
            raise txn.core.state.error()   # not even the position it stood on

    def _shown(self, key, w):
        """The value the write w of key shows, or _ABSENT."""
        if w is _DELETED:
            return _ABSENT
        if type(w) is list:
            txn = <Transaction>self._txn
            r = fold_write(self._core, txn.begin_sequence, key, w, self._now)
            return _ABSENT if r is None else r
        if w[1] and w[1] <= self._now:
            return _ABSENT
        return w[0]

    def _forward(self):
        base, keys = self._base, self._keys
        self._dir = 1
        while True:
            bk = base.key() if base.valid() else None
            ok = keys[self._oi] if self._oi < len(keys) else None
            if ok is None and bk is None:
                self._cur = None
                return
            if ok is not None and (bk is None or ok <= bk):
                if ok == bk:
                    base.next()             # the transaction's write hides it
                w = self._shown(ok, self._vals[self._oi])
                self._oi += 1
                if w is not _ABSENT:
                    self._cur = (ok, w)
                    return
                continue
            self._cur = (bk, base.value())
            base.next()
            return

    def _backward(self):
        base, keys = self._base, self._keys
        self._dir = -1
        while True:
            bk = base.key() if base.valid() else None
            ok = keys[self._oi] if self._oi >= 0 else None
            if ok is None and bk is None:
                self._cur = None
                return
            if ok is not None and (bk is None or ok >= bk):
                if ok == bk:
                    base.prev()
                w = self._shown(ok, self._vals[self._oi])
                self._oi -= 1
                if w is not _ABSENT:
                    self._cur = (ok, w)
                    return
                continue
            self._cur = (bk, base.value())
            base.prev()
            return

    def _start(self):
        self._positioned = True
        self._now = clock_ms(self._clock)

    def seek(self, key):
        """Stand on the first key >= key (within the bounds)."""
        self._check()
        key = txn_key(key)
        self._start()
        self._base.seek(key)
        self._oi = bisect.bisect_left(self._keys, key)
        self._forward()

    def seek_for_prev(self, key):
        """Stand on the last key <= key (within the bounds)."""
        self._check()
        key = txn_key(key)
        self._start()
        self._base.seek_for_prev(key)
        self._oi = bisect.bisect_right(self._keys, key) - 1
        self._backward()

    def seek_to_first(self):
        """Stand on the first key."""
        self._check()
        self._start()
        self._base.seek_to_first()
        self._oi = 0
        self._forward()

    def seek_to_last(self):
        """Stand on the last key."""
        self._check()
        self._start()
        self._base.seek_to_last()
        self._oi = len(self._keys) - 1
        self._backward()

    def _invalid(self, what):
        raise InvalidIteratorError(f"{what}(): the iterator is not on an entry (valid() is False)")

    def next(self):
        """Move to the next key; the iterator must be valid."""
        self._check()
        if self._cur is None:
            self._invalid("next")
        if self._dir < 0:                 # both stand before the shown key: re-seek past it
            k = self._cur[0]
            self._base.seek(k)
            if self._base.valid() and self._base.key() == k:
                self._base.next()
            self._oi = bisect.bisect_right(self._keys, k)
        self._forward()

    def prev(self):
        """Move to the previous key; the iterator must be valid."""
        self._check()
        if self._cur is None:
            self._invalid("prev")
        if self._dir > 0:                 # both stand past the shown key: re-seek before it
            k = self._cur[0]
            self._base.seek_for_prev(k)
            if self._base.valid() and self._base.key() == k:
                self._base.prev()
            self._oi = bisect.bisect_left(self._keys, k) - 1
        self._backward()

    def valid(self):
        """Whether the iterator stands on a key."""
        self._check()
        return self._cur is not None

    def key(self):
        """The key it stands on; InvalidIteratorError if not valid()."""
        self._check()
        if self._cur is None:
            self._invalid("key")
        return self._cur[0]

    def value(self):
        """The value of the key it stands on; InvalidIteratorError if not valid()."""
        self._check()
        if self._cur is None:
            self._invalid("value")
        return self._cur[1]

    def item(self):
        """(key, value) it stands on; InvalidIteratorError if not valid()."""
        self._check()
        if self._cur is None:
            self._invalid("item")
        return self._cur

    def close(self):
        """Release the snapshot cursor it reads (idempotent)."""
        self._closed = True
        self._cur = None
        self._base.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __reduce__(self):
        raise TypeError("a transaction's iterator cannot be pickled or sent to another process: "
                        "make it there from that process's own DB handle "
                        "(docs/getting-started.md, \"Processes\")")

    def __iter__(self):
        return self

    def __next__(self):
        self._check()
        if not self._positioned:
            self.seek_to_first()
        if self._cur is None:
            raise StopIteration
        r = self._cur
        self.next()
        return r
