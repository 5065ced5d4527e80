# blockio.pxi: reading a stored block: pread (preadv2 RWF_NOWAIT first) into pooled
# buffers, trailer check, decompression (per-thread libzstd contexts), block handles.
# A part of lsmkv/core/table.pyx (included there; not compiled on its own): its
# names are the table module's, its thread safety and invariants that module's docstring's.

DEF MAX_BLOCK_CONTENT = 1 << 28   # a frame declaring more is corrupt (block_size is at most 64 MiB)

# A decompression context must not be used by two threads at once, so every
# thread gets its own: libzstd's (no GIL release, no Python object per block),
# or python-zstandard's when libzstd is not loaded.
_tls = threading.local()

# libzstd's contexts live in a pthread key: found with one pthread_getspecific
# (no Python attribute lookup per block) and freed by the key's destructor when
# the thread exits.
cdef void _dctx_destroy(void* p) noexcept nogil:
    zdctx_free(p)

cdef pthread_key_t _dctx_key
if pthread_key_create(&_dctx_key, _dctx_destroy) != 0:
    raise ImportError("lsmkv.core.table: pthread_key_create failed")

cdef void* _dctx() except NULL:
    """This thread's libzstd decompression context."""
    cdef void* d = pthread_getspecific(_dctx_key)
    if d != NULL:
        return d
    d = zdctx_new()
    if d == NULL:
        raise MemoryError("libzstd: cannot create a decompression context")
    if pthread_setspecific(_dctx_key, d) != 0:
        zdctx_free(d)
        raise MemoryError("cannot keep this thread's decompression context (pthread_setspecific)")
    return d

cdef object _decompressor():
    try:
        return _tls.d
    except AttributeError:
        _tls.d = zstandard.ZstdDecompressor()
        return _tls.d

# ---------------------------------------------------------------- handles and blocks

cdef inline int decode_handle(const uint8_t* p, size_t n, uint64_t* off, uint64_t* size) noexcept:
    cdef const uint8_t* q = get_varint(p, p + n, off)
    if q == NULL:
        return -1
    q = get_varint(q, p + n, size)
    if q == NULL:
        return -1
    return 0


cdef bytes _decompress(const uint8_t* p, size_t n, const void* ddict, object path, uint64_t off):
    """One zstd frame through libzstd into a new bytes object of its declared size."""
    cdef long long size = zstd_content_size(p, n)
    if size < 0 or size > MAX_BLOCK_CONTENT:
        raise CorruptionError(path, off, "zstd: bad frame header" if size == -2 else
                              f"zstd: frame declares {'no' if size == -1 else 'an impossible'} content size")
    cdef bytes out = PyBytes_FromStringAndSize(NULL, size)
    cdef size_t r = zstd_decompress(_dctx(), PyBytes_AS_STRING(out), size, p, n, ddict)
    if zstd_is_error(r):
        raise CorruptionError(path, off, f"zstd: {zstd_error_name(r).decode()}")
    if r != <size_t>size:
        raise CorruptionError(path, off, f"zstd: frame holds {r} bytes, its header says {size}")
    return out


cdef bytes check_block(const uint8_t* p, size_t n, object path, uint64_t off, TableReader table=None):
    """Verify the trailer of the n bytes at p (block as stored + trailer) and return
    the block's contents (a new bytes object; p is not kept)."""
    if n < TRAILER_SIZE:
        raise CorruptionError(path, off, "truncated block")
    cdef size_t body = n - TRAILER_SIZE
    cdef uint32_t expect = load_u32(p + body + 1)
    if crc32c(p, body + 1, 0) != expect:
        raise CorruptionError(path, off, "block checksum mismatch")
    cdef int btype = p[body]
    if btype == BLOCK_RAW:
        return PyBytes_FromStringAndSize(<char*>p, body)
    if btype == BLOCK_ZSTD or btype == BLOCK_ZSTD_DICT:
        if btype == BLOCK_ZSTD_DICT and (table is None or table.zdict is None):
            raise CorruptionError(path, off, "block needs the table's dictionary, which it lacks")
        if zstd_loaded():
            return _decompress(p, body, table.ddict if btype == BLOCK_ZSTD_DICT else NULL, path, off)
        if btype == BLOCK_ZSTD:
            d = _decompressor()
        else:
            d = table._dict_decompressor()
        try:   # decompress straight from p: no copy of the stored block
            return d.decompress(PyMemoryView_FromMemory(<char*>p, body, PyBUF_READ))
        except zstandard.ZstdError as e:
            raise CorruptionError(path, off, f"zstd: {e}") from None
    raise CorruptionError(path, off, f"unknown block type {btype}")


def decompress_block(body, int btype, zdict=None, path="<block>", uint64_t off=0):
    """The contents of a block stored as `body` (bytes-like, without its trailer)
    with block type btype: BLOCK_RAW, BLOCK_ZSTD, or BLOCK_ZSTD_DICT with zdict the
    table's dictionary (a zstandard.ZstdCompressionDict; None: not found).
    CorruptionError(path, off, ...) when it cannot be decoded. For tools that find
    blocks without a TableReader (lsmkv.engine.repair); the trailer is the caller's."""
    if btype == BLOCK_RAW:
        return bytes(body)
    if btype != BLOCK_ZSTD and btype != BLOCK_ZSTD_DICT:
        raise CorruptionError(path, off, f"unknown block type {btype}")
    if btype == BLOCK_ZSTD_DICT and zdict is None:
        raise CorruptionError(path, off, "block needs the table's dictionary, which was not found")
    d = _decompressor() if btype == BLOCK_ZSTD else zstandard.ZstdDecompressor(dict_data=zdict)
    try:
        return d.decompress(body)
    except zstandard.ZstdError as e:
        raise CorruptionError(path, off, f"zstd: {e}") from None


cdef int _pread_full(int fd, char* dst, uint64_t off, size_t n, object path) except -1:
    """Read exactly n bytes at off into dst. First one preadv2(RWF_NOWAIT) with the GIL
    held: it copies what the page cache holds and never waits for the disk, so a
    cached block (the common case) costs no GIL release and re-take, and no wait
    for a busy thread to hand the GIL back. The rest (a page not cached, or a
    kernel or file system without RWF_NOWAIT) is read with pread, the GIL
    released per call."""
    global _nowait_ok
    cdef ssize_t got
    cdef size_t done = 0
    cdef iovec iov
    if _nowait_ok and n:
        iov.iov_base = dst
        iov.iov_len = n
        got = preadv2(fd, &iov, 1, off, RWF_NOWAIT)
        if got > 0:
            done = got
        elif got < 0 and (errno == EOPNOTSUPP or errno == ENOSYS or errno == EINVAL):
            _nowait_ok = False        # not supported here: plain pread from now on
        elif got < 0 and errno != EAGAIN and errno != EINTR:
            raise OSError(errno, f"read failed: {path}: {os.strerror(errno)}")
        # EAGAIN (not cached), EINTR or 0 (end of file): the loop decides
    while done < n:
        with nogil:
            got = pread(fd, dst + done, n - done, off + done)
        if got < 0:
            raise OSError(errno, f"read failed: {path}: {os.strerror(errno)}")
        if got == 0:
            raise CorruptionError(path, off, f"file truncated (wanted {n} bytes)")
        done += got
    return 0


def pread_nowait(enabled=None):
    """Whether block reads try preadv2(RWF_NOWAIT) with the GIL held first; with
    enabled given, turn that on or off (tests compare both paths) and return the
    previous setting. It goes off by itself where the kernel refuses the flag."""
    global _nowait_ok
    cdef bint prev = _nowait_ok
    if enabled is not None:
        _nowait_ok = bool(enabled)
    return prev


cdef bytes pread_exact(int fd, uint64_t off, size_t n, object path):
    cdef bytes out = PyBytes_FromStringAndSize(NULL, n)
    _pread_full(fd, PyBytes_AS_STRING(out), off, n, path)
    return out


# Pooled read buffers for pread (mmap_reads=False): a block read borrows one and
# gives it back, so a read allocates no buffer. The pool is C arrays changed only
# with the GIL held and without releasing it (a borrowed buffer belongs to its
# borrower alone, also while it reads with the GIL released); at most POOL_MAX
# buffers are kept, each at least POOL_MIN bytes and grown to the largest read.
DEF POOL_MAX = 16
DEF POOL_MIN = 16384
cdef char* _pool_buf[POOL_MAX]
cdef size_t _pool_cap[POOL_MAX]
cdef int _pool_n = 0
cdef size_t _pool_bytes = 0
cdef unsigned long long _pool_borrowed = 0, _pool_created = 0


cdef char* _pool_get(size_t n, size_t* cap) except NULL:
    """A buffer of at least n bytes (its size in cap): give it back with _pool_put."""
    global _pool_borrowed, _pool_created, _pool_n, _pool_bytes
    cdef char* b
    _pool_borrowed += 1
    if _pool_n:
        _pool_n -= 1
        b = _pool_buf[_pool_n]
        cap[0] = _pool_cap[_pool_n]
        _pool_bytes -= cap[0]
        if cap[0] >= n:
            return b
        free(b)                     # too small for this read: replaced by a larger one
    cap[0] = n if n > POOL_MIN else POOL_MIN
    b = <char*>malloc(cap[0])
    if b == NULL:
        raise MemoryError(f"cannot allocate a {cap[0]}-byte read buffer")
    _pool_created += 1
    return b


cdef void _pool_put(char* b, size_t cap) noexcept:
    global _pool_n, _pool_bytes
    if _pool_n < POOL_MAX:
        _pool_buf[_pool_n] = b
        _pool_cap[_pool_n] = cap
        _pool_n += 1
        _pool_bytes += cap
    else:
        free(b)


def read_pool_stats():
    """Pooled read buffers: borrows, buffers ever created, buffers held and their bytes."""
    return {"borrowed": _pool_borrowed, "created": _pool_created, "held": _pool_n,
            "held_bytes": _pool_bytes}
