"""Optimistic transactions (RocksDB's OptimisticTransactionDB): db.transaction().

A Transaction reads a snapshot taken when it begins, with its own writes laid
over it, and buffers its writes in one WriteBatch. Commit hands that batch to
the compiled write path with the keys to validate (Core._write_batch, as
CoreDB.write_if_unchanged does): under the write lock, after any stall, each
tracked key's newest sequence in the DB (Core._newest_seq: memtables, then
tables) is compared with the snapshot's (no lookup at all when the DB's last
sequence is still the snapshot's: nothing was written since begin); if any is
newer, lsmkv.ConflictError and nothing is written;
otherwise the batch is written as any batch is (one log record: atomic, durable
per `sync`). Nothing is locked before commit: plain get() reads are not
validated (optimistic semantics), get_for_update() reads and every write are.

The state and the per-operation work are compiled: Transaction subclasses
lsmkv.core.dbcore.TransactionCore (lsmkv/core/txn.pxi), and each of its methods
here is one call into it, so an uncontended transaction costs a few compiled
calls: register the snapshot (a lock-free SnapshotList, lsmkv/core/snaplist.pxi),
read, add to the batch, the checked write, release.

Thread safety: a Transaction (and its iterators) is used by one thread at a
time; any number of transactions and plain writers run at once. The only
shared state is the engine's (the snapshot registry, whose calls are atomic
under the GIL; the write lock).

Invariants:
  1. Until it ends, a transaction holds a registered snapshot at `sequence`
     (engine/snapshots.py; registered in the same atomic step that reads the
     DB's last sequence, released when it ends or, never ended, when it is
     collected): flush and compaction keep every version it reads,
     and keep, for each key, an entry with the sequence of its newest write
     after `sequence` (only older versions are dropped or merged).
  2. The commit check is exact: a tracked key was written by another commit
     after begin iff its newest entry has a sequence > `sequence`. Writes get
     sequences under the write lock, above every sequence before them, and the
     check runs under that lock after the last point where it may be released
     (stalls), so no write lands between the check and the transaction's own.
     Every entry's sequence is <= the DB's last sequence (a write applies its
     entries before moving it, under that lock), so when the last sequence is
     still `sequence` at the check, no tracked key can have a newer entry and
     the check passes without a lookup.
     Compaction at the bottommost level rewrites a sequence to 0 (docs/format.md,
     "Sequence 0") or drops a deletion only for versions with sequences <= the
     oldest live snapshot, which is <= `sequence` (invariant 1; a transaction
     registered after the compaction read oldest() has a sequence >= it, since
     oldest() is at most the last sequence then and sequences only grow): such
     a version was written
     before begin, and 0 <= `sequence` reads so too. A source skipped by the
     lookup (all its sequences <= `sequence`) holds no newer entry.
  3. A commit applies all of the transaction's writes or none (one batch record;
     a kill -9 leaves either the whole record in the log or a torn tail that
     recovery drops), and the transaction is over after commit() or rollback()
     whatever their outcome: its snapshot is released and every method but
     rollback() of an ended transaction raises ClosedError. A closed DB makes its
     open transactions raise ClosedError.
  4. The transaction's own view (get, iterators): a key it wrote shows its last
     write (None after its delete, or once its ttl has passed); other keys show
     the snapshot.
"""
import bisect

from lsmkv.core.dbcore import TransactionCore, check_bound
from lsmkv.errors import ClosedError, InvalidIteratorError

_DELETED = None          # the overlay's value for a key the transaction deleted


def _key(key, what="key"):
    """key as bytes (bytes, bytearray, memoryview); TypeError naming it otherwise."""
    if type(key) is bytes:
        return key
    if isinstance(key, (bytes, bytearray, memoryview)):
        return bytes(key)
    raise TypeError(f"{what} must be bytes, bytearray or memoryview, not {type(key).__name__}")


class Transaction(TransactionCore):
    """An optimistic transaction: made by db.transaction(); a context manager
    that commits when its block exits normally and rolls back when it raises.

    Reads see the DB as of begin (repeatable read) with the transaction's own
    writes over it. commit() writes all of its puts and deletes atomically, or
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

    # Made as TransactionCore(db, sync) (lsmkv/core/txn.pxi: the compiled half,
    # which holds the state and does the work; __enter__, __exit__ and __repr__
    # are its own). Each method here is one call into it.
    __slots__ = ()

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

    # -- reads

    def get(self, key, default=None):
        """key's value as the transaction sees it: its own last write of key, or
        the DB as of begin; default if absent (deleted, expired). Not validated
        at commit (use get_for_update for that).

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
        return self.read(key, default)

    def get_for_update(self, key, default=None):
        """get(), and the commit will fail with ConflictError if anyone else writes
        key after the transaction began (RocksDB's GetForUpdate, optimistic).

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
        return self.read_for_update(key, default)

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
        self.track(keys)

    # -- writes

    def put(self, key, value, *, ttl=None):
        """Store value under key when the transaction commits (ttl: seconds from
        now until it expires; None: never). The transaction sees it at once.

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
        self.stage_put(key, value, ttl)

    def delete(self, key):
        """Remove key when the transaction commits; the transaction sees it gone
        at once.

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
        self.stage_delete(key)

    # -- scans

    def iterator(self, lower=None, upper=None, *, prefix=None):
        """A cursor (the lsmkv.Iterator methods: seek, seek_for_prev,
        seek_to_first, seek_to_last, next, prev, valid, key, value, item, close,
        `for k, v in it`) over lower <= key < upper (and keys starting with
        prefix) as the transaction sees them: the snapshot with the writes the
        transaction made before the iterator was made laid over it (RocksDB's
        WriteBatchWithIndex::NewIteratorWithBase). It starts positioned nowhere.

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
        base = self.snapshot_iterator(lower, upper, prefix)
        lo, hi = base.lower, base.upper
        writes = self.own_writes()
        keys = sorted(k for k in writes if (lo is None or k >= lo) and (hi is None or k < hi))
        it = TransactionIterator(self, base, keys, [writes[k] for k in keys])
        self.add_iterator(it)
        return it

    def items(self, start=None, stop=None, *, reverse=False, prefix=None):
        """(key, value) for start <= key < stop (and starting with prefix) as the
        transaction sees them, in key order (or reverse): a list.

        >>> import lsmkv, tempfile
        >>> db = lsmkv.DB(tempfile.mkdtemp())
        >>> db.put(b"a", b"1"); db.put(b"c", b"3")
        >>> with db.transaction() as txn:
        ...     txn.put(b"b", b"2"); txn.delete(b"c")
        ...     txn.items(), txn.items(reverse=True, prefix=b"a")
        ([(b'a', b'1'), (b'b', b'2')], [(b'a', b'1')])
        >>> db.close()
        """
        with self.iterator(check_bound("start", start), check_bound("stop", stop), prefix=prefix) as it:
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

    def keys(self, start=None, stop=None, *, reverse=False, prefix=None):
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
        return [k for k, _ in self.items(start, stop, reverse=reverse, prefix=prefix)]

    # -- the end

    def commit(self):
        """Write every put and delete of the transaction atomically (with the
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
        self.commit_writes()

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
        self.rollback_writes()

    @property
    def ended(self):
        """None while the transaction is open; then "committed" or "rolled back"
        (a commit that raised ConflictError counts as committed: it is over).

        >>> import lsmkv, tempfile
        >>> db = lsmkv.DB(tempfile.mkdtemp())
        >>> with db.transaction() as txn:
        ...     txn.ended
        >>> txn.ended
        'committed'
        >>> db.close()
        """
        return self.outcome


class TransactionIterator:
    """A cursor over a transaction's view: its snapshot's lsmkv.Iterator (`base`)
    merged with the transaction's writes in the iterator's bounds, a sorted copy
    (`keys`, `vals`: (value, expiry) or _DELETED) taken when it was made.

    Positions: moving forward, base and the write index `oi` both stand past
    the shown key (on the next candidates); moving backward, both stand before
    it. A change of direction re-seeks both at the shown key. A key the
    transaction wrote hides the base's entry of that key.
    """

    def __init__(self, txn, base, keys, vals):
        self._txn = txn
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
        if self._txn.outcome is not None:
            self.close()
            raise ClosedError(f"the transaction is {self._txn.outcome}: its iterators are closed")
        if self._closed:
            raise ClosedError("the iterator is closed")

    def _live(self, w):
        return w is not _DELETED and (not w[1] or w[1] > self._now)

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
                w = self._vals[self._oi]
                self._oi += 1
                if self._live(w):
                    self._cur = (ok, w[0])
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
                w = self._vals[self._oi]
                self._oi -= 1
                if self._live(w):
                    self._cur = (ok, w[0])
                    return
                continue
            self._cur = (bk, base.value())
            base.prev()
            return

    def _start(self):
        self._positioned = True
        self._now = self._txn.now_ms()

    def seek(self, key):
        """Stand on the first key >= key (within the bounds)."""
        self._check()
        key = _key(key)
        self._start()
        self._base.seek(key)
        self._oi = bisect.bisect_left(self._keys, key)
        self._forward()

    def seek_for_prev(self, key):
        """Stand on the last key <= key (within the bounds)."""
        self._check()
        key = _key(key)
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
