# cython: language_level=3
"""lsmkv.Iterator: the public, seekable cursor (RocksDB's Iterator, plyvel's
RawIterator, LMDB's cursor) over one DB version as of one sequence number.

An Iterator owns one MergingIterator over every source of its version (memtables,
L0 tables, one LevelIterator per deeper level), built once by Core._cursor; every
seek re-positions those children, none is rebuilt.

Positions: an Iterator is valid (on a user key) or not. Moving forward (seek,
seek_to_first, next) leaves the merging iterator ON the entry whose key and value
it shows, so key()/value() read that entry in place; moving backward (prev,
seek_for_prev, seek_to_last) leaves it on the entry BEFORE the shown key's entries,
the shown key and value copied into owned buffers (RocksDB's DBIter does the
same). A change of direction re-seeks the merging iterator at the shown key.

Thread safety: an Iterator is used by one thread at a time. It holds a Pin (its
version's files are not deleted while it lives) and references to its sources.
HandleState is written by the DB (close, fork) and read here without a lock.

Invariants:
  1. When valid, key() is the smallest (forward) / largest (backward) user key in
     [lower, upper) past the previous position whose newest entry with sequence
     <= seq is a PUT (not a deletion, not expired at `now`, not deleted by a range
     tombstone of range_dels with a sequence in (its sequence, seq]) or a merge
     operand (the value then is the fold of the visible operands over their base,
     copied into vbuf; an entry under the newest covering tombstone is no base).
  2. `dir` is the direction the merging iterator was last moved in: 1 after a
     forward move (it stands on the shown entry), 2 after a forward move onto a
     merged key (it stands past the entries fold_forward folded), -1 after a
     backward one (it stands before the shown key's entries, or is invalid).
  3. `now` is the clock at the last seek (expiry is judged then), in ms.
  4. After close(), or once the DB handle is closed or inherited by fork(), every
     method but close() raises ClosedError (ForkedError); the pin and sources are
     released then.
  5. A move that raises (a block that fails to read) leaves the iterator not
     valid: it never shows an entry of a block the failed move let go.
"""
import time as _time

from libc.stdlib cimport realloc, free
from libc.string cimport memcpy, memset
from libc.stdint cimport uint8_t, uint64_t, int64_t
from cpython.bytes cimport (PyBytes_FromStringAndSize, PyBytes_AS_STRING, PyBytes_GET_SIZE,
                            PyBytes_CheckExact)
from posix.time cimport clock_gettime, timespec, CLOCK_REALTIME
from lsmkv.core.coding cimport cmp_bytes, load_u64, KIND_DELETE, KIND_PUT_TTL, KIND_MERGE, TAG_SIZE
from lsmkv.core.iterator cimport MergingIterator, HandleState, fold_forward, no_merge_operator
from lsmkv.core.merge cimport MergeOperator
from lsmkv.errors import ClosedError, InvalidIteratorError

cdef object _time_time = _time.time


cpdef object prefix_successor(bytes prefix):
    """The smallest key greater than every key starting with prefix, or None if
    there is none (prefix empty or all 0xff bytes): the exclusive upper bound of a
    prefix scan.

    >>> from lsmkv.core.cursor import prefix_successor
    >>> prefix_successor(b"user:"), prefix_successor(b"a\\xff\\xff"), prefix_successor(b"\\xff")
    (b'user;', b'b', None)
    """
    cdef Py_ssize_t n = PyBytes_GET_SIZE(prefix)
    cdef const uint8_t* p = <const uint8_t*>PyBytes_AS_STRING(prefix)
    while n > 0 and p[n - 1] == 0xFF:
        n -= 1
    if n == 0:
        return None
    cdef bytes r = PyBytes_FromStringAndSize(NULL, n)     # a new object (never a cached 1-byte one)
    cdef uint8_t* q = <uint8_t*>PyBytes_AS_STRING(r)
    memcpy(q, p, n)
    q[n - 1] += 1
    return r


cpdef tuple prefix_bounds(bytes prefix, start, stop):
    """(start, stop) narrowed to the keys that start with prefix: start at least
    prefix, stop at most prefix's successor (none when prefix is all 0xff bytes).

    >>> from lsmkv.core.cursor import prefix_bounds
    >>> prefix_bounds(b"ab", None, None), prefix_bounds(b"a\\xff", b"a\\xff\\x10", None)
    ((b'ab', b'ac'), (b'a\\xff\\x10', b'b'))
    """
    succ = prefix_successor(prefix)
    if start is None or start < prefix:
        start = prefix
    if succ is not None and (stop is None or stop > succ):
        stop = succ
    return start, stop

cdef inline int _cmp(const uint8_t* k, size_t kn, bytes b) noexcept:
    return cmp_bytes(k, kn, <const uint8_t*>PyBytes_AS_STRING(b), PyBytes_GET_SIZE(b))


cdef class Iterator:
    """A cursor over the DB (or a snapshot) as it was when the iterator was made,
    limited to lower <= key < upper (and to keys starting with prefix). Made by
    DB.iterator() and Snapshot.iterator(); it starts positioned nowhere.

    seek(key) goes to the first key >= key, seek_for_prev(key) to the last key <=
    key, seek_to_first()/seek_to_last() to the ends; next() and prev() move one key
    either way, in any order. While valid(), key() and value() are the entry it
    stands on. Re-seeking is cheap: the iterator keeps its sources. Iterating it
    (`for k, v in it`) yields (key, value) from where it stands, forward (from
    the first key if it was never positioned). It keeps the files it reads alive
    until closed (or dropped); it is a context manager.

    >>> import lsmkv, tempfile
    >>> db = lsmkv.DB(tempfile.mkdtemp())
    >>> for k in (b"a", b"b", b"c", b"d"):
    ...     db.put(k, k.upper())
    >>> with db.iterator() as it:
    ...     it.seek(b"bb"); print(it.key(), it.value())
    ...     it.prev(); print(it.key())
    ...     it.seek_for_prev(b"bb"); print(it.key())
    ...     it.seek_to_last(); it.next(); print(it.valid())
    b'c' b'C'
    b'b'
    b'b'
    False
    >>> db.close()
    """
    def __cinit__(self, MergingIterator it, uint64_t seq, lower, upper, prefix, pin,
                  HandleState state, owner, clock):
        self.it = it
        self.sequence = seq
        self.pin = pin
        self.state = state
        self.owner = owner
        self.clock = clock
        self.lo = _bound("lower", lower)
        self.hi = _bound("upper", upper)
        if prefix is not None:
            self.lo, self.hi = prefix_bounds(_bound("prefix", prefix), self.lo, self.hi)
        self.dir = 1

    def __dealloc__(self):
        free(self.kbuf)
        free(self.vbuf)
        free(self.tbuf)

    # ---------------------------------------------------------------- lifecycle

    cdef void _release(self):
        self.valid_ = False
        self.it = None
        pin, self.pin = self.pin, None
        if pin is not None:
            try:
                pin.release()
            except Exception:
                pass    # the DB is closed or gone: its pins went with it

    cdef int _check(self) except -1:
        if self.closed or self.state.closed:
            return self._raise_closed()
        return 0

    cdef int _raise_closed(self) except -1:
        self._release()
        if self.closed:
            raise ClosedError("the iterator is closed")
        raise self.state.error()

    def close(self):
        """Release the pinned files and sources now (idempotent); any later use
        but close() raises ClosedError.

        >>> import lsmkv, tempfile
        >>> db = lsmkv.DB(tempfile.mkdtemp())
        >>> it = db.iterator()
        >>> it.close(); it.close()
        >>> it.seek_to_first()
        Traceback (most recent call last):
          ...
        lsmkv.errors.ClosedError: the iterator is closed
        >>> db.close()
        """
        self.closed = True
        self._release()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # ---------------------------------------------------------------- buffers

    cdef int _grow(self, uint8_t** buf, size_t* cap, size_t n) except -1:
        cdef uint8_t* p
        if n > cap[0]:
            p = <uint8_t*>realloc(buf[0], n * 2 + 32)
            if p == NULL:
                raise MemoryError()
            buf[0] = p
            cap[0] = n * 2 + 32
        return 0

    cdef int _save_key(self, const uint8_t* k, size_t n) except -1:
        if n > self.kcap:
            self._grow(&self.kbuf, &self.kcap, n)
        if n:
            memcpy(self.kbuf, k, n)
        self.klen = n
        return 0

    cdef int _target(self, const uint8_t* k, size_t n, bint succ) except -1:
        """tbuf = (k [+ 0x00 if succ], the largest tag): the first internal key of
        user key k (of k's successor with succ)."""
        cdef size_t m = n + (1 if succ else 0)
        if m + TAG_SIZE > self.tcap:
            self._grow(&self.tbuf, &self.tcap, m + TAG_SIZE)
        if n:
            memcpy(self.tbuf, k, n)
        if succ:
            self.tbuf[n] = 0
        memset(self.tbuf + m, 0xFF, TAG_SIZE)
        return <int>(m + TAG_SIZE)

    cdef int _refresh_now(self) except -1:
        cdef timespec ts
        if self.clock is _time_time:
            clock_gettime(CLOCK_REALTIME, &ts)
            self.now = <int64_t>ts.tv_sec * 1000 + ts.tv_nsec // 1000000
        else:
            self.now = <int64_t>(self.clock() * 1000.0)
        return 0

    # ---------------------------------------------------------------- moves

    cdef int _forward(self, bint skipping) except -1:
        """From the merging iterator's entry on, stand on the first visible live key
        (skipping entries of the shown key kbuf if `skipping`)."""
        cdef MergingIterator it = self.it
        cdef size_t ukn
        cdef uint64_t tag
        cdef int kind
        cdef bytes upper = self.hi
        self.dir = 1
        while it.valid:
            ukn = it.key_len - TAG_SIZE
            if upper is not None and _cmp(it.key, ukn, upper) >= 0:
                break
            tag = load_u64(it.key + ukn)
            if (tag >> 8) > self.sequence or (skipping and cmp_bytes(it.key, ukn, self.kbuf, self.klen) == 0):
                it.next()
                continue
            kind = tag & 0xFF
            if kind == KIND_DELETE or (kind == KIND_PUT_TTL and <int64_t>load_u64(it.val) <= self.now) or \
                    (self.range_dels is not None and self.range_dels.covers_c(it.key, ukn, tag >> 8, self.sequence)):
                self._save_key(it.key, ukn)      # hides its older versions
                skipping = True
                it.next()
                continue
            self._save_key(it.key, ukn)
            if kind == KIND_PUT_TTL:
                self.vp = it.val + 8
                self.vn = it.val_len - 8
            elif kind == KIND_MERGE:
                self._set_value(fold_forward(it, self.merge_op, self.now,
                                             0 if self.range_dels is None else
                                             self.range_dels.max_covering_c(it.key, ukn, self.sequence)))
                self.dir = 2            # fold_forward moved the merging iterator past what it folded
            else:
                self.vp = it.val
                self.vn = it.val_len
            self.valid_ = True
            return 0
        self.valid_ = False
        return 0

    cdef int _backward(self) except -1:
        """From the merging iterator's entry backward, stand on the last visible
        live key, copying it and its value (the merging iterator moves past them)."""
        cdef MergingIterator it = self.it
        cdef size_t ukn
        cdef uint64_t tag
        cdef int kind
        cdef bint have = False, live = False
        cdef bytes lower = self.lo
        cdef const uint8_t* v
        cdef size_t vn
        cdef list mops = None                 # merge operands on top, oldest first (or None)
        cdef object mbase = None              # the base under them
        self.dir = -1
        while it.valid:
            ukn = it.key_len - TAG_SIZE
            if lower is not None and _cmp(it.key, ukn, lower) < 0:
                break
            if have and cmp_bytes(it.key, ukn, self.kbuf, self.klen) != 0:
                if live:
                    break
                have = False
            tag = load_u64(it.key + ukn)
            if (tag >> 8) <= self.sequence:       # entries of a key come oldest first: the last wins
                if not have:
                    self._save_key(it.key, ukn)
                    have = True
                kind = tag & 0xFF
                v = it.val
                vn = it.val_len
                if self.range_dels is not None and self.range_dels.covers_c(it.key, ukn, tag >> 8, self.sequence):
                    mops = None         # deleted by a range tombstone, as is all older: a newer
                    live = False        # operand folds over no base
                    it.prev()
                    continue
                if kind == KIND_MERGE:
                    if mops is None:
                        mops = []
                        mbase = PyBytes_FromStringAndSize(<char*>self.vbuf, self.vn) if live else None
                    mops.append(PyBytes_FromStringAndSize(<char*>v, vn))
                    live = True
                    it.prev()
                    continue
                mops = None
                if kind == KIND_DELETE or (kind == KIND_PUT_TTL and <int64_t>load_u64(v) <= self.now):
                    live = False
                else:
                    if kind == KIND_PUT_TTL:
                        v += 8
                        vn -= 8
                    if vn > self.vcap:
                        self._grow(&self.vbuf, &self.vcap, vn)
                    if vn:
                        memcpy(self.vbuf, v, vn)
                    self.vn = vn
                    live = True
            it.prev()
        self.valid_ = have and live
        if self.valid_ and mops is not None:
            key = PyBytes_FromStringAndSize(<char*>self.kbuf, self.klen)
            if self.merge_op is None:
                no_merge_operator(self.kbuf, self.klen)
            self._set_value(self.merge_op.full_merge(key, mbase, mops))
        self.vp = self.vbuf
        return 0

    cdef int _set_value(self, bytes v) except -1:
        """The shown value becomes a copy of v (in vbuf)."""
        cdef size_t n = PyBytes_GET_SIZE(v)
        if n > self.vcap:
            self._grow(&self.vbuf, &self.vcap, n)
        if n:
            memcpy(self.vbuf, PyBytes_AS_STRING(v), n)
        self.vn = n
        self.vp = self.vbuf
        return 0

    cdef int _seek_c(self, const uint8_t* k, size_t n) except -1:
        cdef int tn
        self._refresh_now()
        self.positioned = True
        self.valid_ = False     # until the move completes (a source's read may raise)
        if self.lo is not None and cmp_bytes(k, n, <const uint8_t*>PyBytes_AS_STRING(self.lo),
                                                PyBytes_GET_SIZE(self.lo)) < 0:
            k = <const uint8_t*>PyBytes_AS_STRING(self.lo)
            n = PyBytes_GET_SIZE(self.lo)
        tn = self._target(k, n, False)
        self.it.seek_lazy(self.tbuf, tn)
        return self._forward(False)

    cdef int _seek_for_prev_c(self, const uint8_t* k, size_t n, bint inclusive) except -1:
        """Stand on the last key <= k (< k unless inclusive), within the bounds."""
        cdef int tn
        self._refresh_now()
        self.positioned = True
        self.valid_ = False     # until the move completes (a source's read may raise)
        if self.hi is not None and cmp_bytes(k, n, <const uint8_t*>PyBytes_AS_STRING(self.hi),
                                                PyBytes_GET_SIZE(self.hi)) >= 0:
            k = <const uint8_t*>PyBytes_AS_STRING(self.hi)
            n = PyBytes_GET_SIZE(self.hi)
            inclusive = False
        tn = self._target(k, n, inclusive)
        self.it.seek_for_prev(self.tbuf, tn)
        return self._backward()

    def seek(self, key):
        """Stand on the first key >= key (within the bounds); valid() says
        whether there is one.

        >>> import lsmkv, tempfile
        >>> db = lsmkv.DB(tempfile.mkdtemp())
        >>> db.put(b"apple", b"1"); db.put(b"cherry", b"2")
        >>> it = db.iterator()
        >>> it.seek(b"b"); it.key()
        b'cherry'
        >>> it.seek(b"d"); it.valid()
        False
        >>> it.close(); db.close()
        """
        self._check()
        if PyBytes_CheckExact(key):
            self._seek_c(<const uint8_t*>PyBytes_AS_STRING(key), PyBytes_GET_SIZE(key))
            return
        key = _bound("key", key)
        if key is None:
            raise TypeError("key must be bytes, bytearray or memoryview, not None")
        self._seek_c(<const uint8_t*>PyBytes_AS_STRING(key), PyBytes_GET_SIZE(key))

    def seek_for_prev(self, key):
        """Stand on the last key <= key (within the bounds).

        >>> import lsmkv, tempfile
        >>> db = lsmkv.DB(tempfile.mkdtemp())
        >>> db.put(b"apple", b"1"); db.put(b"cherry", b"2")
        >>> it = db.iterator()
        >>> it.seek_for_prev(b"b"); it.key()
        b'apple'
        >>> it.seek_for_prev(b"cherry"); it.key()
        b'cherry'
        >>> it.close(); db.close()
        """
        self._check()
        key = _bound("key", key)
        if key is None:
            raise TypeError("key must be bytes, bytearray or memoryview, not None")
        self._seek_for_prev_c(<const uint8_t*>PyBytes_AS_STRING(key), PyBytes_GET_SIZE(key), True)

    def seek_to_first(self):
        """Stand on the first key (the first >= lower).

        >>> import lsmkv, tempfile
        >>> db = lsmkv.DB(tempfile.mkdtemp())
        >>> db.put(b"x", b"1"); db.put(b"y", b"2")
        >>> with db.iterator() as it:
        ...     it.seek_to_first(); it.key()
        b'x'
        >>> db.close()
        """
        self._check()
        self._refresh_now()
        self.positioned = True
        self.valid_ = False     # until the move completes (a source's read may raise)
        if self.lo is not None:
            self._seek_c(<const uint8_t*>PyBytes_AS_STRING(self.lo), PyBytes_GET_SIZE(self.lo))
            return
        self.it.seek_to_first()
        self._forward(False)

    def seek_to_last(self):
        """Stand on the last key (the last < upper).

        >>> import lsmkv, tempfile
        >>> db = lsmkv.DB(tempfile.mkdtemp())
        >>> db.put(b"x", b"1"); db.put(b"y", b"2")
        >>> with db.iterator(upper=b"y") as it:
        ...     it.seek_to_last(); it.key()
        b'x'
        >>> db.close()
        """
        self._check()
        self._refresh_now()
        self.positioned = True
        self.valid_ = False     # until the move completes (a source's read may raise)
        if self.hi is not None:
            self._seek_for_prev_c(<const uint8_t*>PyBytes_AS_STRING(self.hi),
                                  PyBytes_GET_SIZE(self.hi), False)
            return
        self.it.seek_to_last()
        self._backward()

    cdef int _next_c(self) except -1:
        cdef int tn
        self.valid_ = False         # until the move completes (a source's read may raise)
        if self.dir > 0:
            if self.dir == 1:       # on the shown entry (2: already past a folded key's entries)
                self.it.next()
            return self._forward(True)
        # the merging iterator stands before the shown key: go back to its first entry
        tn = self._target(self.kbuf, self.klen, False)
        self.it.seek(self.tbuf, tn)
        return self._forward(True)

    cdef int _prev_c(self) except -1:
        cdef int tn
        self.valid_ = False
        if self.dir < 0:
            return self._backward()
        # forward: the merging iterator stands on the shown key; go to the last entry before it
        tn = self._target(self.kbuf, self.klen, False)
        self.it.seek_for_prev(self.tbuf, tn)
        return self._backward()

    def next(self):
        """Move to the next key. The iterator must be valid.

        >>> import lsmkv, tempfile
        >>> db = lsmkv.DB(tempfile.mkdtemp())
        >>> db.put(b"a", b"1"); db.put(b"b", b"2")
        >>> it = db.iterator()
        >>> it.seek_to_first(); it.next(); it.key()
        b'b'
        >>> it.next(); it.valid()
        False
        >>> it.close(); db.close()
        """
        self._check()
        if not self.valid_:
            _invalid("next")
        self._next_c()

    def prev(self):
        """Move to the previous key. The iterator must be valid.

        >>> import lsmkv, tempfile
        >>> db = lsmkv.DB(tempfile.mkdtemp())
        >>> db.put(b"a", b"1"); db.put(b"b", b"2")
        >>> it = db.iterator()
        >>> it.seek(b"b"); it.prev(); it.key()
        b'a'
        >>> it.close(); db.close()
        """
        self._check()
        if not self.valid_:
            _invalid("prev")
        self._prev_c()

    def valid(self):
        """Whether the iterator stands on a key (False before the first
        positioning and after moving past either end).

        >>> import lsmkv, tempfile
        >>> db = lsmkv.DB(tempfile.mkdtemp())
        >>> it = db.iterator()
        >>> it.valid()
        False
        >>> it.close(); db.close()
        """
        self._check()
        return self.valid_

    def key(self):
        """The key the iterator stands on; InvalidIteratorError if not valid().

        >>> import lsmkv, tempfile
        >>> db = lsmkv.DB(tempfile.mkdtemp())
        >>> it = db.iterator()
        >>> it.key()
        Traceback (most recent call last):
          ...
        lsmkv.errors.InvalidIteratorError: key(): the iterator is not on an entry (valid() is False)
        >>> it.close(); db.close()
        """
        self._check()
        if not self.valid_:
            _invalid("key")
        return PyBytes_FromStringAndSize(<char*>self.kbuf, self.klen)

    def value(self):
        """The value of the key the iterator stands on; InvalidIteratorError if
        not valid().

        >>> import lsmkv, tempfile
        >>> db = lsmkv.DB(tempfile.mkdtemp())
        >>> db.put(b"k", b"v")
        >>> with db.iterator() as it:
        ...     it.seek(b"k"); it.value()
        b'v'
        >>> db.close()
        """
        self._check()
        if not self.valid_:
            _invalid("value")
        return PyBytes_FromStringAndSize(<char*>self.vp, self.vn)

    def item(self):
        """(key(), value()) in one call; InvalidIteratorError if not valid().

        >>> import lsmkv, tempfile
        >>> db = lsmkv.DB(tempfile.mkdtemp())
        >>> db.put(b"k", b"v")
        >>> with db.iterator() as it:
        ...     it.seek_to_first(); it.item()
        (b'k', b'v')
        >>> db.close()
        """
        self._check()
        if not self.valid_:
            _invalid("item")
        return (PyBytes_FromStringAndSize(<char*>self.kbuf, self.klen),
                PyBytes_FromStringAndSize(<char*>self.vp, self.vn))

    def __reduce__(self):
        raise TypeError("a lsmkv.Iterator cannot be pickled or sent to another process: "
                        "make it there from that process's own DB handle "
                        "(docs/getting-started.md, \"Processes\")")

    def __iter__(self):
        return self

    def __next__(self):
        self._check()
        if not self.positioned:
            self.seek_to_first()
        if not self.valid_:
            raise StopIteration
        r = (PyBytes_FromStringAndSize(<char*>self.kbuf, self.klen),
             PyBytes_FromStringAndSize(<char*>self.vp, self.vn))
        self._next_c()
        return r

    @property
    def lower(self):
        """The effective inclusive lower bound (lower and prefix combined), or None.

        >>> import lsmkv, tempfile
        >>> db = lsmkv.DB(tempfile.mkdtemp())
        >>> with db.iterator(b"a", prefix=b"user:") as it:
        ...     it.lower, it.upper
        (b'user:', b'user;')
        >>> db.close()
        """
        return self.lo

    @property
    def upper(self):
        """The effective exclusive upper bound (upper and prefix combined), or None
        (no bound: prefix all 0xff bytes and no upper).

        >>> import lsmkv, tempfile
        >>> db = lsmkv.DB(tempfile.mkdtemp())
        >>> with db.iterator(prefix=b"\\xff\\xff") as it:
        ...     it.lower, it.upper
        (b'\\xff\\xff', None)
        >>> db.close()
        """
        return self.hi

    def __repr__(self):
        state = "closed" if self.closed else ("valid" if self.valid_ else "invalid")
        return f"<lsmkv.Iterator {state} lower={self.lo!r} upper={self.hi!r}>"


cdef object _bound(str name, object v):
    """v as bytes (or None); TypeError naming it otherwise."""
    if v is None or PyBytes_CheckExact(v):
        return v
    if isinstance(v, (bytearray, memoryview, bytes)):
        return bytes(v)
    raise TypeError(f"{name} must be bytes, bytearray, memoryview or None, not {type(v).__name__}")


cdef int _invalid(str what) except -1:
    raise InvalidIteratorError(f"{what}(): the iterator is not on an entry (valid() is False)")
