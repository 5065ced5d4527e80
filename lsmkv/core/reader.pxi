# reader.pxi: TableReader: opening a table (footer, index, filter, properties), point
# lookups, block reads through the cache or the mapping, verify().
# A part of lsmkv/core/table.pyx (included there; not compiled on its own): its
# names are the table module's, its thread safety and invariants that module's docstring's.

cdef MetaCounts _uncounted      # index/filter counters of readers without a cache (never read)

cdef class TableReader:
    """Opens an SST and answers point lookups; new_iterator() scans it.

    Opening reads the footer, the index, filter and properties blocks and
    verifies their checksums. The index and filter blocks stay in memory, charged
    to the cache (reserve), unless cache_index_and_filter is true and the cache
    is a SlabCache: then they are cache blocks like data blocks, evictable, read
    again (checksum verified) on a miss and pinned only while a lookup or an
    iterator uses them (a block larger than a slab page stays in memory). With
    an LRUCache or no cache they stay in memory either way.

    >>> import tempfile, os
    >>> from lsmkv.core.cache import SlabCache
    >>> p = os.path.join(tempfile.mkdtemp(), "000001.sst")
    >>> b = TableBuilder(p); b.py_add(b"k" + make_tag_py(1, 1).to_bytes(8, "little"), b"v")
    >>> _ = b.finish()
    >>> c = SlabCache(1 << 20)
    >>> t = TableReader(p, 1, c, False, cache_index_and_filter=True)
    >>> t.index_cached, t.memory_bytes(), t.py_get(b"k")
    (True, 0, b'v')
    >>> c.stats()["index_hits"], c.stats()["index_filter_cached"] > 0
    (1, True)
    """

    def __cinit__(self):
        self.fd = -1
        self.map = NULL
        self.map_len = 0
        self.touched = NULL
        self.touched_bytes = 0
        self.ddict = NULL

    def __init__(self, path, uint64_t number, cache=None, bint use_mmap=True,
                 bint cache_index_and_filter=False):
        self.path = str(path)
        self.number = number
        self.cache = cache
        self.slab = cache if isinstance(cache, SlabCache) else None
        if self.slab is not None:
            self.mc = &self.slab.meta
        elif isinstance(cache, LRUCache):
            self.mc = &(<LRUCache>cache).meta
        else:
            self.mc = &_uncounted
        self.charged = 0
        self.use_mmap = use_mmap
        self.fd = os.open(self.path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        try:
            self._open(cache_index_and_filter and self.slab is not None)
        except BaseException:
            os.close(self.fd)
            self.fd = -1
            raise

    def _open(self, bint cache_meta):
        cdef uint64_t size = os.fstat(self.fd).st_size
        self.file_size = size
        if size < FOOTER_SIZE:
            raise CorruptionError(self.path, 0, f"file too short for a footer ({size} bytes)")
        cdef void* m
        if self.use_mmap:
            # reads become memory accesses (as LevelDB reads tables on 64-bit systems);
            # if the mapping fails, reads fall back to pread
            m = mmap(NULL, size, PROT_READ, MAP_SHARED, self.fd, 0)
            if m != MAP_FAILED:
                self.map = <const uint8_t*>m
                self.map_len = size
                self.touched = <uint8_t*>calloc(((size + 65535) >> 16) // 8 + 1, 1)
        cdef bytes footer = pread_exact(self.fd, size - FOOTER_SIZE, FOOTER_SIZE, self.path)
        cdef const uint8_t* f = <const uint8_t*>PyBytes_AS_STRING(footer)
        if footer[72:80] != MAGIC:
            raise CorruptionError(self.path, size - 8, "bad magic number (not an lsmkv SST)")
        if crc32c(f, 68, 0) != load_u32(f + 68):
            raise CorruptionError(self.path, size - FOOTER_SIZE, "footer checksum mismatch")
        cdef uint32_t version = load_u32(f + 64)
        if version > FORMAT_VERSION:
            raise CorruptionError(self.path, size - FOOTER_SIZE + 64,
                                  f"table format version {version} is newer than this lsmkv reads "
                                  f"(up to {FORMAT_VERSION}): the table was written by a newer lsmkv; "
                                  f"open the database with that version")
        if version < FORMAT_VERSION_PLAIN:
            raise CorruptionError(self.path, size - FOOTER_SIZE + 64,
                                  f"unsupported table format version {version}")
        cdef uint64_t h[8]
        cdef int i
        for i in range(8):
            h[i] = load_u64(f + 8 * i)
            if i % 2 == 1 and (h[i - 1] + h[i] + TRAILER_SIZE > size - FOOTER_SIZE):
                raise CorruptionError(self.path, size - FOOTER_SIZE, "block handle out of range")
        self.ztls = threading.local()
        self.zdict = None
        if h[7]:
            dict_data = self.read_block(h[6], h[7])
            try:
                self.zdict = zstandard.ZstdCompressionDict(dict_data)
            except zstandard.ZstdError as e:
                raise CorruptionError(self.path, h[6], f"bad compression dictionary: {e}") from None
            if zstd_loaded():
                self.ddict = zddict_new(PyBytes_AS_STRING(dict_data), PyBytes_GET_SIZE(dict_data))
                if self.ddict == NULL:
                    raise CorruptionError(self.path, h[6], "bad compression dictionary (libzstd refused it)")
        self.index_offset, self.index_size = h[0], h[1]
        self.filter_offset, self.filter_size = h[2], h[3]
        cdef bytes index_data = self.read_block(h[0], h[1])
        cdef bytes filter_data = self.read_block(h[2], h[3])
        props = self.read_block(h[4], h[5])
        self.properties = decode_properties(props, self.path, h[4])
        self.range_dels = None
        if "range_del_offset" in self.properties:
            self.range_dels = self._read_range_dels(self.properties["range_del_offset"],
                                                    self.properties.get("range_del_size", 0))
        self.smallest_ukey = self.properties.get("smallest_key", b"")
        self.largest_ukey = self.properties.get("largest_key", b"")
        BlockIter().reset(index_data, self.path, h[0])   # validates the restart array
        cdef size_t fn = PyBytes_GET_SIZE(filter_data)
        self.index_len = PyBytes_GET_SIZE(index_data)
        self.filter_len = fn
        if fn == 0:
            self.fnlines = 0
            self.fk = 0
        else:
            self.fk = (<const uint8_t*>PyBytes_AS_STRING(filter_data))[fn - 1]
            self.fnlines = (fn - 1) // 64
            if self.fk < 1 or self.fk > 30 or self.fnlines == 0 or (fn - 1) % 64 != 0:
                raise CorruptionError(self.path, h[2], "bad bloom filter parameters")
        # cache_meta: index and filter become slab blocks (warmed now) unless larger than a page
        self.index_cached = cache_meta and self.index_len <= self.slab.page_size
        self.filter_cached = cache_meta and 0 < fn <= self.slab.page_size
        if self.index_cached:
            self._warm(h[0], index_data)
        else:
            self.index_data = index_data
        if self.filter_cached:
            self._warm(h[2], filter_data)
        else:
            self.filter_data = filter_data
            if fn:
                self.fbits = <const uint8_t*>PyBytes_AS_STRING(filter_data)
        if self.cache is not None:
            # resident index and filter stay in memory while the table is open: charged to the cache
            self.charged = self.memory_bytes()
            if self.charged:
                self.cache.reserve(self.charged)

    def _read_range_dels(self, uint64_t off, uint64_t size):
        """The range-del block's tombstones (docs/format.md) as (start, end, seq)."""
        if off + size + TRAILER_SIZE > self.file_size - FOOTER_SIZE:
            raise CorruptionError(self.path, off, "range-del block handle out of range")
        cdef BlockIter it = BlockIter()
        it.reset(self.read_block(off, size), self.path, off)
        cdef uint64_t tag
        out = []
        it.seek_to_first()
        while it.valid:
            if it.key_len < TAG_SIZE:
                raise CorruptionError(self.path, off, "range-del block: key shorter than its tag")
            tag = load_u64(it.key + it.key_len - TAG_SIZE)
            if (tag & 0xFF) != KIND_RANGE_DELETE:
                raise CorruptionError(self.path, off, f"range-del block: entry of kind {tag & 0xFF}")
            out.append((PyBytes_FromStringAndSize(<char*>it.key, it.key_len - TAG_SIZE),
                        PyBytes_FromStringAndSize(<char*>it.val, it.val_len), tag >> 8))
            it.next()
        return out or None

    cdef int _warm(self, uint64_t off, bytes data) except -1:
        """Put a meta block read at open into the slab cache (a failed insert is a
        later miss)."""
        cdef Pin p
        cdef size_t n = PyBytes_GET_SIZE(data)
        if not self.slab.alloc_pin((self.number << 40) | off, n, &p):
            return 0
        memcpy(<void*>p.data, PyBytes_AS_STRING(data), n)
        self.slab.mark_meta(&p)
        self.slab.publish(&p)
        self.slab.unpin(p.slot)
        return 0

    def __dealloc__(self):
        if self.charged and self.cache is not None:
            self.cache.reserve(-<long long>self.charged)
        free(self.touched)
        zddict_free(self.ddict)
        if self.map != NULL:
            munmap(<void*>self.map, self.map_len)
        if self.fd >= 0:
            close(self.fd)

    def close(self):
        """Release the file now (later reads raise ValueError). The DB never calls
        this on a table a reader may still hold; dropping the last reference does it."""
        if self.charged and self.cache is not None:
            self.cache.reserve(-<long long>self.charged)
            self.charged = 0
        if self.map != NULL:
            munmap(<void*>self.map, self.map_len)
            self.map = NULL
            free(self.touched)
            self.touched = NULL
            self.touched_bytes = 0
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    cdef bint in_range(self, const uint8_t* k, size_t kn) noexcept:
        """Is user key k within [smallest, largest] of this table?"""
        return (cmp_bytes(k, kn, <const uint8_t*>PyBytes_AS_STRING(self.smallest_ukey),
                          PyBytes_GET_SIZE(self.smallest_ukey)) >= 0 and
                cmp_bytes(k, kn, <const uint8_t*>PyBytes_AS_STRING(self.largest_ukey),
                          PyBytes_GET_SIZE(self.largest_ukey)) <= 0)

    cdef int may_contain(self, uint64_t h) except -1:
        """0 only if the user key with bloom hash h is surely absent, else 1.
        A resident filter is probed in place (counted as a filter hit); a cached
        one is pinned for the probe (and loaded on a miss, which may raise
        CorruptionError or OSError)."""
        if self.fbits != NULL:
            self.mc.filter_hits += 1
            return bloom_probe(self.fbits, self.fnlines, self.fk, h)
        if self.fnlines == 0:
            return 1
        return self._may_contain_cached(h)

    cdef void prefetch_filter(self, uint64_t h) noexcept:
        """Start loading the filter line may_contain(h) will read (a resident filter
        only), so that the probes of several tables wait for their misses at once."""
        if self.fbits != NULL:
            prefetch(self.fbits + ((h & 0xFFFFFFFFU) * self.fnlines >> 32) * 64)

    cdef int _may_contain_cached(self, uint64_t h) except -1:
        cdef Pin p
        cdef int r
        b = self._meta_block(self.filter_offset, self.filter_size, self.filter_len, True, &p)
        if b is not None:           # the cache could not take it: probe this copy
            return bloom_probe(<const uint8_t*>PyBytes_AS_STRING(b), self.fnlines, self.fk, h)
        r = bloom_probe(p.data, self.fnlines, self.fk, h)
        self.slab.unpin(p.slot)
        return r

    cdef object _meta_block(self, uint64_t off, uint64_t size, size_t expect, bint is_filter, Pin* p):
        """The cached index or filter block at off: None with its slot pinned in p
        (a hit, or loaded and verified on a miss), or the block as bytes when the
        cache cannot take it. A loaded block whose contents differ in length (or,
        for the filter, in probe count) from what open read raises CorruptionError."""
        cdef uint64_t key = (self.number << 40) | off
        if self.slab.lookup_pin_meta(key, p):
            if is_filter:
                self.mc.filter_hits += 1
            else:
                self.mc.index_hits += 1
            return None
        if is_filter:
            self.mc.filter_misses += 1
        else:
            self.mc.index_misses += 1
        b = self._fill_slab(key, off, size, p)
        cdef const uint8_t* data = p.data if b is None else <const uint8_t*>PyBytes_AS_STRING(b)
        cdef size_t n = p.len if b is None else <size_t>PyBytes_GET_SIZE(b)
        if n != expect or (is_filter and data[expect - 1] != self.fk):
            if b is None:
                self.slab.discard(key)
                self.slab.unpin(p.slot)
            raise CorruptionError(self.path, off, f"{'filter' if is_filter else 'index'} block "
                                                  f"differs from the one read at open")
        if b is None:
            self.slab.mark_meta(p)
        return b

    cdef int load_index(self, BlockIter it) except -1:
        """Point it at the index block: the resident bytes (an index hit), or the
        cached slot, pinned by it until its next reset."""
        if self.index_data is not None:
            self.mc.index_hits += 1
            return it.reset(self.index_data, self.path, self.index_offset)
        return self._load_index_cached(it)

    cdef int _load_index_cached(self, BlockIter it) except -1:
        cdef Pin p
        b = self._meta_block(self.index_offset, self.index_size, self.index_len, False, &p)
        if b is None:
            return it.reset_pinned(self.slab, &p, self.path, self.index_offset)
        return it.reset(b, self.path, self.index_offset)

    def memory_bytes(self):
        """Bytes this open table keeps in memory: its resident index and filter
        blocks (0 for those that live in the block cache)."""
        return ((PyBytes_GET_SIZE(self.index_data) if self.index_data is not None else 0) +
                (PyBytes_GET_SIZE(self.filter_data) if self.filter_data is not None else 0))

    def mapped_resident(self):
        """Bytes of this table's mapping that this process has touched, counted in
        64 KiB windows: on a fault the kernel maps the whole cached 64 KiB window
        around the page (fault-around), and that is what the mapping adds to the
        RSS while the file stays in the page cache. 0 with pread reads."""
        return self.touched_bytes

    def py_may_contain(self, key):
        return bool(self.may_contain(bloom_hash_py(key)))

    cdef bytes read_block(self, uint64_t off, uint64_t size):
        """A block's contents, checksum verified. The handle is checked against the
        file size first, so a damaged index can never read outside the file."""
        cdef char* buf
        cdef size_t cap
        self._check_handle(off, size)
        if self.map != NULL:
            self._touch(off, size + TRAILER_SIZE)
            return check_block(self.map + off, size + TRAILER_SIZE, self.path, off, self)
        buf = _pool_get(size + TRAILER_SIZE, &cap)
        try:
            _pread_full(self.fd, buf, off, size + TRAILER_SIZE, self.path)
            return check_block(<const uint8_t*>buf, size + TRAILER_SIZE, self.path, off, self)
        finally:
            _pool_put(buf, cap)

    cdef void _touch(self, uint64_t off, uint64_t n) noexcept:
        """Count the 64 KiB windows of the mapping a read of [off, off + n) touches."""
        cdef uint64_t w
        if self.touched == NULL or n == 0:
            return
        for w in range(off >> 16, ((off + n - 1) >> 16) + 1):
            if not (self.touched[w >> 3] & (1 << (w & 7))):
                self.touched[w >> 3] |= 1 << (w & 7)
                self.touched_bytes += min(<uint64_t>65536, self.map_len - (w << 16))

    cdef int _check_handle(self, uint64_t off, uint64_t size) except -1:
        if self.fd < 0:
            raise ValueError(f"table {self.path} is closed")
        if off > self.file_size or size + TRAILER_SIZE > self.file_size - off:
            raise CorruptionError(self.path, off, "block handle out of range")
        return 0

    cdef object _fill_slab(self, uint64_t key, uint64_t off, uint64_t size, Pin* p,
                           bint release_gil=False):
        """Read, verify and decompress a block straight into a new slab slot (no
        intermediate bytes object): None with the slot pinned in p and published,
        or the block as bytes when the cache cannot take it. With release_gil
        (multi_get, which reads many blocks per call), the decompression runs
        without the GIL: it writes only the FILLING slot this call owns (not in
        the cache's hash, so no other thread sees it) from the pinned source
        (the table's mapping or a borrowed pool buffer) with this thread's
        decompression context. A single get keeps the GIL: a release per block
        would cost more than it frees under contention."""
        cdef char* buf = NULL
        cdef size_t cap = 0
        cdef const uint8_t* sp
        cdef size_t n = size + TRAILER_SIZE, body = size
        cdef long long csize
        cdef int btype
        cdef size_t r
        cdef void* dctx = NULL
        cdef void* dd
        self._check_handle(off, size)
        if self.map != NULL:
            self._touch(off, n)
            sp = self.map + off
        else:
            buf = _pool_get(n, &cap)
            sp = <const uint8_t*>buf
        try:
            if buf != NULL:
                _pread_full(self.fd, buf, off, n, self.path)
            if crc32c(sp, body + 1, 0) != load_u32(sp + body + 1):
                raise CorruptionError(self.path, off, "block checksum mismatch")
            btype = sp[body]
            if btype == BLOCK_RAW:
                csize = body
            elif (btype == BLOCK_ZSTD or btype == BLOCK_ZSTD_DICT) and zstd_loaded() and \
                    not (btype == BLOCK_ZSTD_DICT and self.zdict is None):
                csize = zstd_content_size(sp, body)
            else:       # fallback decompressor, or a damaged type: the bytes path decides
                return check_block(sp, n, self.path, off, self)
            if csize < 0 or csize > MAX_BLOCK_CONTENT:
                return check_block(sp, n, self.path, off, self)    # raises the precise error
            if btype != BLOCK_RAW:
                dctx = _dctx()      # before the slot: a failure here leaves no slot FILLING
            if not self.slab.alloc_pin(key, csize, p):
                return check_block(sp, n, self.path, off, self)
            if btype == BLOCK_RAW:
                memcpy(<void*>p.data, sp, body)
            else:
                dd = self.ddict if btype == BLOCK_ZSTD_DICT else NULL
                _prefetch_fill(<void*>p.data, csize)
                if release_gil:
                    with nogil:
                        r = zstd_decompress(dctx, <void*>p.data, csize, sp, body, dd)
                else:
                    r = zstd_decompress(dctx, <void*>p.data, csize, sp, body, dd)
                if zstd_is_error(r) or r != <size_t>csize:
                    self.slab.abort(p.slot)
                    if zstd_is_error(r):
                        raise CorruptionError(self.path, off, f"zstd: {zstd_error_name(r).decode()}")
                    raise CorruptionError(self.path, off, f"zstd: frame holds {r} bytes, its header says {csize}")
            self.slab.publish(p)
            return None
        finally:
            if buf != NULL:
                _pool_put(buf, cap)

    cdef int load_into(self, BlockIter it, uint64_t off, uint64_t size, bint release_gil=False) except -1:
        """Point it at a data block: a pinned slab slot (hit, or filled on a miss),
        or a bytes object (the LRU cache, no cache, or a block the slab cannot take).
        release_gil: see _fill_slab."""
        cdef Pin p
        cdef uint64_t key
        if self.slab is None:
            return it.reset(self.block(off, size), self.path, off)
        key = (self.number << 40) | off
        if self.slab.lookup_pin(key, &p):
            _prefetch_block(p.data, p.len)
            return it.reset_pinned(self.slab, &p, self.path, off)
        b = self._fill_slab(key, off, size, &p, release_gil)
        if b is None:
            return it.reset_pinned(self.slab, &p, self.path, off)
        return it.reset(b, self.path, off)

    def _dict_decompressor(self):
        """This thread's decompressor for blocks compressed with the table's dictionary."""
        try:
            return self.ztls.d
        except AttributeError:
            self.ztls.d = zstandard.ZstdDecompressor(dict_data=self.zdict)
            return self.ztls.d

    cdef bytes block(self, uint64_t off, uint64_t size):
        """A data block's contents, through the block cache when there is one."""
        cdef bytes b
        if self.cache is None:
            return self.read_block(off, size)
        key = (self.number << 40) | off
        b = self.cache.lookup(key)
        if b is None:
            b = self.read_block(off, size)
            self.cache.insert(key, b)
        return b

    cdef int seek_in_block(self, BlockIter it, const uint8_t* ikey, size_t ikn) except -1:
        """Position it at the first entry >= ikey of the data block the index names
        for ikey, as a point read does: 1 if it is valid there, 0 if ikey is past
        the table's last entry. One block only: a key's entries may go on in the
        next block (a TableIterator reads across blocks). A cached index stays
        pinned by it until the data block replaces it."""
        cdef uint64_t off, size
        self.load_index(it)
        it.seek(ikey, ikn)
        if not it.valid:
            return 0
        if decode_handle(it.val, it.val_len, &off, &size) < 0:
            raise CorruptionError(self.path, self.index_offset, "bad block handle in index")
        self.load_into(it, off, size)
        it.seek(ikey, ikn)
        return 1 if it.valid else 0

    cdef object get(self, const uint8_t* ikey, size_t ikn, int64_t now, int64_t* expiry=NULL,
                    bint view=False, uint64_t* seq_out=NULL, BlockIter use=None):
        """The newest entry at or below ikey's sequence for ikey's user key:
        bytes (a live value; a ValueView if view), DELETED (a deletion or an
        expired value), MERGED (a merge operand: the caller folds), or None (no
        entry in this table). The caller checks the bloom filter first. seq_out
        (if given) receives the entry's sequence (range tombstones: Core._lookup).
        use: the BlockIter to read with (else a new one); after MERGED it stands
        on the operand, where the caller goes on reading the key's entries."""
        cdef BlockIter it = BlockIter() if use is None else use
        cdef uint64_t tag
        cdef size_t ukn = ikn - TAG_SIZE
        cdef int kind
        if not self.seek_in_block(it, ikey, ikn):
            return None
        if it.key_len != ikn or (ukn and memcmp(it.key, ikey, ukn) != 0):
            return None
        tag = load_u64(it.key + ukn)
        kind = tag & 0xFF
        if seq_out != NULL:
            seq_out[0] = tag >> 8
        if kind == KIND_PUT:
            if view:
                return value_view(it, it.val, it.val_len)
            return PyBytes_FromStringAndSize(<char*>it.val, it.val_len)
        if kind == KIND_PUT_TTL:
            if it.val_len < 8:
                raise CorruptionError(self.path, it.block_offset, "TTL entry shorter than its expiry")
            if <int64_t>load_u64(it.val) <= now:
                return DELETED
            if expiry != NULL:
                expiry[0] = <int64_t>load_u64(it.val)
            if view:
                return value_view(it, it.val + 8, it.val_len - 8)
            return PyBytes_FromStringAndSize(<char*>it.val + 8, it.val_len - 8)
        if kind == KIND_MERGE:
            return MERGED
        return DELETED

    def approximate_offset(self, key):
        """Bytes of this file before the entries of user key `key` (LevelDB's
        ApproximateOffsetOf): the offset of the data block the first entry >= key
        would be in; past the last data block, where the data blocks end (the
        lowest offset of the index and filter blocks). Reads only the index.

        >>> import tempfile, os
        >>> p = os.path.join(tempfile.mkdtemp(), "000001.sst")
        >>> b = TableBuilder(p); b.py_add(b"k" + make_tag_py(1, 1).to_bytes(8, "little"), b"v")
        >>> _ = b.finish()
        >>> t = TableReader(p, 1)
        >>> t.approximate_offset(b"a"), t.approximate_offset(b"z") > 0
        (0, True)
        """
        cdef BlockIter it = BlockIter()
        cdef uint64_t off, size
        cdef bytes ik = bytes(key) + make_tag(0x00FFFFFFFFFFFFFF, KIND_MAX).to_bytes(8, "little")
        self.load_index(it)
        it.seek(<const uint8_t*>PyBytes_AS_STRING(ik), PyBytes_GET_SIZE(ik))
        if it.valid:
            if decode_handle(it.val, it.val_len, &off, &size) < 0:
                raise CorruptionError(self.path, self.index_offset, "bad block handle in index")
            return off
        if self.filter_size and self.filter_offset < self.index_offset:
            return self.filter_offset
        return self.index_offset

    def py_get(self, key, uint64_t seq=0x00FFFFFFFFFFFFFF, int64_t now=0):
        ik = bytes(key) + make_tag(seq, KIND_MAX).to_bytes(8, "little")
        r = self.get(<const uint8_t*>PyBytes_AS_STRING(ik), len(ik), now)
        return r

    def new_iterator(self):
        return TableIterator(self)

    def verify(self):
        """Read every data block, checking checksums and key order. Returns entry count;
        a damaged block or keys out of order raise CorruptionError with the offset
        of the data block where it was found."""
        cdef TableIterator it = TableIterator(self)
        cdef bytes prev = None
        cdef size_t n = 0
        it.seek_to_first()
        while it.valid:
            cur = PyBytes_FromStringAndSize(<char*>it.key, it.key_len)
            if prev is not None and cmp_ikey(<const uint8_t*>PyBytes_AS_STRING(prev), len(prev),
                                             it.key, it.key_len) >= 0:
                # the offset of the data block holding the key that breaks the order
                raise CorruptionError(self.path, it.data.block_offset, "keys out of order")
            prev = cur
            n += 1
            it.next()
        return n


cdef inline void _prefetch_block(const uint8_t* p, size_t n) noexcept:
    """Start loading a cached block's cache lines, its restart array first: a
    seek's binary search and scan would otherwise wait for each miss in turn (a
    large cache's blocks are mostly out of the CPU caches; measured: all-cached
    gets +40%, multi_gets +50%). A block larger than BLOCK_PREFETCH_MAX gets its
    last line only."""
    if n >= 64:
        prefetch(p + n - 64)
    if n <= BLOCK_PREFETCH_MAX:
        prefetch_range(p, n)


cdef ValueView value_view(BlockIter it, const uint8_t* p, size_t n):
    """A view of n bytes at p inside the block `it` stands on, without a copy:
    the iterator's pin passes to the view (it is then off its block), or the view
    keeps the block's bytes object alive. Views may pin at most half the slab
    cache: past that the value is copied, so readers that hold views cannot
    starve the cache of evictable slots."""
    cdef SlabCache c = it.pcache
    if c is not None:
        if c.pinned_bytes <= c.capacity // 2:
            return ValueView.pinned_slot(c, it.take_pin(), p, n)
        b = PyBytes_FromStringAndSize(<char*>p, n)
        return ValueView.of(b, <const uint8_t*>PyBytes_AS_STRING(b), n)
    return ValueView.of(it.data, p, n)


def make_tag_py(uint64_t seq, int kind):
    return make_tag(seq, kind)


cdef dict decode_properties(bytes data, object path, uint64_t off):
    cdef BlockIter it = BlockIter()
    it.reset(data, path, off)
    props = {}
    cdef uint64_t v
    it.seek_to_first()
    while it.valid:
        name = PyBytes_FromStringAndSize(<char*>it.key, it.key_len - TAG_SIZE).decode("ascii", "replace")
        raw = PyBytes_FromStringAndSize(<char*>it.val, it.val_len)
        if name in ("smallest_key", "largest_key", "compression"):
            props[name] = raw
        else:
            if get_varint(it.val, it.val + it.val_len, &v) == NULL:
                raise CorruptionError(path, off, f"bad property {name}")
            props[name] = v
        it.next()
    if "compression" in props:
        props["compression"] = props["compression"].decode("ascii", "replace")
    if "compression_level" in props:        # zigzag: 0, -1, 1, -2, ... as 0, 1, 2, 3, ...
        z = props["compression_level"]        # a Python int (v is a C uint64 here)
        props["compression_level"] = (z >> 1) ^ -(z & 1)
    return props
