# The zero-copy views of cached bytes (included by cache.pyx; the cimports are there):
# fill_readonly (one read-only buffer description), BlockView (a pinned slab block)
# and ValueView (what DB.get_view() returns: a pinned slot, or a bytes object).
#
# Thread safety: a view is used under the GIL; its pin is dropped once (release()
# or the view's finalizer), so a slot is unpinned exactly once per view.
# Invariants: 1. a view with an exported memoryview (exports > 0) cannot be released;
# 2. while a view holds a slot, the slot is pinned (SlabCache invariant 3).

cdef inline void fill_readonly(Py_buffer* buf, const uint8_t* p, size_t n, Py_ssize_t* shape) noexcept:
    """Describe n read-only bytes at p in buf (one dimension of unsigned bytes); the
    caller sets buf.obj. shape: one Py_ssize_t that lives as long as the exporter."""
    shape[0] = <Py_ssize_t>n
    buf.buf = <void*>p
    buf.len = <Py_ssize_t>n
    buf.readonly = 1
    buf.itemsize = 1
    buf.format = "B"
    buf.ndim = 1
    buf.shape = shape
    buf.strides = NULL
    buf.suboffsets = NULL
    buf.internal = NULL


cdef class BlockView:
    """A cached block, pinned until release() (or until the view is dropped).
    Supports the buffer protocol: memoryview(view), bytes(view)."""
    cdef SlabCache cache
    cdef Pin pin
    cdef bint released
    cdef int exports
    cdef Py_ssize_t shape[1]

    @staticmethod
    cdef BlockView make(SlabCache cache, Pin p):
        cdef BlockView v = BlockView.__new__(BlockView)
        v.cache = cache
        v.pin = p
        v.released = False
        v.exports = 0
        return v

    def __getbuffer__(self, Py_buffer* buf, int flags):
        if self.released:
            raise ValueError("BlockView is released")
        if flags & PyBUF_WRITABLE:
            raise BufferError("a cached block is read-only")
        buf.obj = self
        fill_readonly(buf, self.pin.data, self.pin.len, self.shape)
        self.exports += 1

    def __releasebuffer__(self, Py_buffer* buf):
        self.exports -= 1

    def __len__(self):
        return self.pin.len

    def release(self):
        """Unpin now (the block may then be evicted). Idempotent."""
        if self.exports:
            raise BufferError("release() while a memoryview of the block is alive")
        if not self.released:
            self.released = True
            self.cache.unpin(self.pin.slot)

    def __dealloc__(self):
        if not self.released and self.cache is not None:
            self.released = True
            self.cache.unpin(self.pin.slot)


cdef class ValueView:
    """A value read by DB.get_view(): a read-only buffer over the bytes that hold
    it, without a copy. When the value lies in a slab cache slot, the slot stays
    pinned (never evicted, moved or reused) until release(), the end of a with
    block, or until the view is dropped; a value from a memtable or an uncached
    block is held by a bytes object instead (`pinned` is then False). Supports
    the buffer protocol: memoryview(v), bytes(v), sock.send(v), f.write(v).

    >>> import lsmkv, tempfile
    >>> db = lsmkv.DB(tempfile.mkdtemp())
    >>> db.put(b"k", b"value")
    >>> with db.get_view(b"k") as v:
    ...     bytes(v), len(v), v == b"value"
    (b'value', 5, True)
    >>> v.release()                 # idempotent; the buffer is gone after it
    >>> db.close()
    """

    @staticmethod
    cdef ValueView pinned_slot(SlabCache cache, uint64_t slot, const uint8_t* p, size_t n):
        """A view taking over one pin of cache slot `slot` (the caller's)."""
        cdef ValueView v = ValueView.__new__(ValueView)
        v.cache = cache
        v.slot = slot
        v.p = p
        v.n = n
        return v

    @staticmethod
    cdef ValueView of(object owner, const uint8_t* p, size_t n):
        """A view of n bytes at p, which `owner` (a bytes object) keeps alive."""
        cdef ValueView v = ValueView.__new__(ValueView)
        v.owner = owner
        v.p = p
        v.n = n
        return v

    def __getbuffer__(self, Py_buffer* buf, int flags):
        if self.released:
            raise ValueError("ValueView is released")
        if flags & PyBUF_WRITABLE:
            raise BufferError("a value view is read-only")
        buf.obj = self
        fill_readonly(buf, self.p, self.n, self.shape)
        self.exports += 1

    def __releasebuffer__(self, Py_buffer* buf):
        self.exports -= 1

    def __len__(self):
        if self.released:
            raise ValueError("ValueView is released")
        return self.n

    def __bytes__(self):
        if self.released:
            raise ValueError("ValueView is released")
        return PyBytes_FromStringAndSize(<const char*>self.p, self.n)

    def __eq__(self, other):
        try:
            return memoryview(self) == other
        except TypeError:
            return NotImplemented

    __hash__ = None

    def __repr__(self):
        if self.released:
            return "<ValueView released>"
        return f"<ValueView {self.n} bytes{', pinned' if self.cache is not None else ''}>"

    @property
    def pinned(self):
        """True while the view pins a cache slot."""
        return self.cache is not None and not self.released

    def release(self):
        """Let go of the bytes now (unpin the slot). Idempotent. BufferError while a
        memoryview of this view is alive."""
        if self.exports:
            raise BufferError("release() while a memoryview of the value is alive")
        self._drop()

    cdef void _drop(self) noexcept:
        if not self.released:
            self.released = True
            if self.cache is not None:
                self.cache.unpin(self.slot)
            self.owner = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.release()

    def __dealloc__(self):
        if not self.released and self.cache is not None:
            self.released = True
            self.cache.unpin(self.slot)
