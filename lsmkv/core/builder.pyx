# cython: language_level=3
"""Writing an SST: the block builder (prefix-compressed entries with restart
points) and TableBuilder (data blocks, compression and the zstd dictionary, the
filter, index and properties blocks, the footer). The layout is in
lsmkv/core/table.pyx's docstring and docs/format.md; its constants in
lsmkv/core/sstformat.pxd.

Thread safety: a TableBuilder or a BlockBuilder is used by one thread. add_c()
runs without the GIL (a flush builds its table inside one nogil block); it takes
the GIL only to hold blocks back for dictionary training and for the
python-zstandard fallback.

Invariants:
  1. Entries are added in strictly increasing internal-key order (add() raises
     otherwise); a block's entries and the index's keys follow that order.
  2. Every block is written with its trailer (type, crc32c of the block as stored
     plus the type), so a reader verifies each block before parsing it.
  3. The filter holds the bloom hash of every distinct user key added.
  4. Nothing is durable until finish() returns: it writes the meta blocks and the
     footer, fsyncs and closes; abandon() (or an error) deletes the partial file.
  5. Output is buffered in `out` and written once it passes OUT_FLUSH_BYTES, so
     memory is bounded by one block (plus training blocks, at most dict_bytes * 100).
"""
import os

import zstandard

from libc.stdlib cimport malloc, calloc, realloc, free
from libc.string cimport memcpy, memcmp, memset
from libc.stdint cimport uint8_t, uint32_t, uint64_t, int64_t
from posix.unistd cimport write, close, fsync
from libc.errno cimport errno, EINTR
from cpython.bytes cimport (PyBytes_FromStringAndSize, PyBytes_AS_STRING, PyBytes_GET_SIZE)
from cpython.memoryview cimport PyMemoryView_FromMemory
from cpython.buffer cimport PyBUF_READ
from lsmkv.core.bloom cimport bloom_hash, build_filter
from lsmkv.core.bytebuf cimport Buf, buf_reserve_c, buf_append_c, buf_set_c, buf_append
from lsmkv.core.coding cimport (crc32c, cmp_ikey, cmp_bytes, load_u64, load_u32, store_u64, store_u32,
                            put_varint, varint_len, make_tag, KIND_DELETE, KIND_PUT, KIND_PUT_TTL,
                            KIND_MERGE, KIND_MAX, TAG_SIZE, KIND_RANGE_DELETE)
from lsmkv.core.sstformat cimport (FOOTER_SIZE, TRAILER_SIZE, FORMAT_VERSION, FORMAT_VERSION_PLAIN, BLOCK_RAW, BLOCK_ZSTD,
                               BLOCK_ZSTD_DICT, SST_MAGIC)
from lsmkv.core.zstd cimport (ZComp, zstd_loaded, zcomp_init, zcomp_free, zcomp_compress, zstd_bound,
                          zstd_is_error, zstd_error_name)

# ---------------------------------------------------------------- block builder

cdef void bb_init(BlockBuf* b, int interval) noexcept nogil:
    memset(b, 0, sizeof(BlockBuf))
    b.interval = interval

cdef void bb_free(BlockBuf* b) noexcept nogil:
    free(b.buf.p); free(b.restarts.p); free(b.last.p)
    memset(b, 0, sizeof(BlockBuf))

cdef void bb_reset(BlockBuf* b) noexcept nogil:
    b.buf.len = 0
    b.restarts.len = 0
    b.last.len = 0
    b.counter = 0
    b.entries = 0

cdef inline size_t bb_size(BlockBuf* b) noexcept nogil:
    return b.buf.len + b.restarts.len + 4 + 4

cdef int bb_add(BlockBuf* b, const uint8_t* k, size_t kn, const uint8_t* v, size_t vn) noexcept nogil:
    """Append an entry; -1 if out of memory."""
    cdef size_t shared = 0
    cdef uint8_t tmp[4]
    cdef uint8_t* e
    if b.counter == 0 or b.counter >= b.interval:
        store_u32(tmp, <uint32_t>b.buf.len)
        if buf_append_c(&b.restarts, tmp, 4) < 0:
            return -1
        b.counter = 0
    else:
        while shared < kn and shared < b.last.len and b.last.p[shared] == k[shared]:
            shared += 1
    if buf_reserve_c(&b.buf, 30 + kn - shared + vn) < 0:
        return -1
    e = put_varint(b.buf.p + b.buf.len, shared)
    e = put_varint(e, kn - shared)
    e = put_varint(e, vn)
    b.buf.len = e - b.buf.p
    buf_append_c(&b.buf, k + shared, kn - shared)    # reserved above: cannot fail
    buf_append_c(&b.buf, v, vn)
    if buf_set_c(&b.last, k, kn) < 0:
        return -1
    b.counter += 1
    b.entries += 1
    return 0

cdef int bb_finish(BlockBuf* b) noexcept nogil:
    """Append the restart array: b.buf then holds the block's contents. -1 if out of memory."""
    cdef uint8_t tmp[4]
    if buf_append_c(&b.buf, b.restarts.p, b.restarts.len) < 0:
        return -1
    store_u32(tmp, <uint32_t>(b.restarts.len // 4))
    return buf_append_c(&b.buf, tmp, 4)


cdef class BlockBuilder:
    """Python access to a BlockBuf, for the properties block and the tests."""

    def __cinit__(self, int restart_interval=16):
        bb_init(&self.b, restart_interval)

    def __dealloc__(self):
        bb_free(&self.b)

    def py_add(self, key, value):
        cdef const uint8_t[::1] kv = key
        cdef const uint8_t[::1] vv = value
        if bb_add(&self.b, &kv[0] if kv.shape[0] else NULL, kv.shape[0],
                  &vv[0] if vv.shape[0] else NULL, vv.shape[0]) < 0:
            raise MemoryError()

    def py_finish(self):
        if bb_finish(&self.b) < 0:
            raise MemoryError()
        r = PyBytes_FromStringAndSize(<char*>self.b.buf.p, self.b.buf.len)
        bb_reset(&self.b)
        return r

    @property
    def entries(self):
        return self.b.entries


# ---------------------------------------------------------------- table builder

cdef class TableBuilder:
    """Writes one SST. add() entries in strictly increasing internal-key order,
    then finish() (which fsyncs) or abandon().

    Data blocks are cut at block_size bytes (before compression); a block is
    stored zstd-compressed only when that saves at least 1/8 of its size.

    add_c() is the nogil core: it builds blocks, compresses them through libzstd
    (lsmkv.core.zstd) and queues them in `out`, and never does I/O; the caller
    writes `out` out (flush_out / flush_out_c) once it passes OUT_FLUSH_BYTES.
    Two cases take the GIL inside add_c: blocks held back to train a dictionary
    (compaction outputs) and compression when libzstd could not be loaded (the
    python-zstandard fallback)."""

    def __cinit__(self):
        self.fd = -1
        memset(&self.out, 0, sizeof(Buf))
        memset(&self.zbuf, 0, sizeof(Buf))
        memset(&self.last_key, 0, sizeof(Buf))
        memset(&self.first_key, 0, sizeof(Buf))
        memset(&self.last_ukey_hashed, 0, sizeof(Buf))
        bb_init(&self.data_block, 16)
        bb_init(&self.index_block, 1)       # binary search lands on the entry
        self.zc.cctx = self.zc.cdict = NULL
        self.hashes = NULL
        self.nhashes = self.cap_hashes = 0

    def __init__(self, path, size_t block_size=4096, compression="zstd", int compression_level=-1,
                 int bloom_bits_per_key=10, int restart_interval=16, size_t dict_bytes=0):
        self.path = str(path)
        self.block_size = block_size
        self.level = compression_level
        self.dict_bytes = dict_bytes
        self.training = False
        self.pending = None
        self.pending_bytes = 0
        self.dict_data = None
        self.block_type = BLOCK_ZSTD
        if compression == "zstd":
            self.compress = 1
            if dict_bytes:
                self.training = True     # trained from the first blocks; see _train()
                self.pending = []
            else:
                self._set_compressor(None)
        elif compression == "none":
            self.compress = 0
        else:
            raise ValueError(f"compression must be 'zstd' or 'none', not {compression!r}")
        self.bits_per_key = bloom_bits_per_key
        self.data_block.interval = restart_interval
        self.offset = 0
        self.num_entries = self.num_deletions = self.num_ttl = 0
        self.raw_key_bytes = self.raw_value_bytes = 0
        self.smallest_seq = <uint64_t>-1
        self.largest_seq = 0
        self.num_data_blocks = 0
        self.min_expiry = 0
        self.finished = False
        self.range_dels = None
        self.fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o644)

    def __dealloc__(self):
        if self.fd >= 0:
            close(self.fd)
        zcomp_free(&self.zc)
        bb_free(&self.data_block)
        bb_free(&self.index_block)
        free(self.out.p); free(self.zbuf.p); free(self.last_key.p); free(self.first_key.p)
        free(self.last_ukey_hashed.p); free(self.hashes)

    cdef int _set_compressor(self, bytes dict_data) except -1:
        """Compress with libzstd when it is loaded, else with python-zstandard."""
        cdef const char* d = NULL
        cdef size_t dn = 0
        if dict_data is not None:
            d = PyBytes_AS_STRING(dict_data)
            dn = PyBytes_GET_SIZE(dict_data)
        if zstd_loaded():
            if zcomp_init(&self.zc, self.level, d, dn) < 0:
                raise MemoryError("libzstd: cannot create a compression context")
        elif dict_data is not None:
            self.cctx = zstandard.ZstdCompressor(level=self.level, write_dict_id=False,
                                                 dict_data=zstandard.ZstdCompressionDict(dict_data))
        else:
            self.cctx = zstandard.ZstdCompressor(level=self.level)
        return 0

    cdef int _raise(self, int r) except -1:
        if r == ERR_NOMEM:
            raise MemoryError()
        if r == ERR_ZSTD:
            raise RuntimeError(f"zstd compression failed writing {self.path}: "
                               f"{zstd_error_name(self.zerr).decode()}")
        if r == ERR_PY:
            e, self.pyexc = self.pyexc, None
            raise e
        if r == ERR_ORDER:
            raise ValueError("TableBuilder.add: keys must be strictly increasing")
        if r == ERR_TTL_VALUE:
            raise ValueError("TableBuilder.add: a PUT_TTL value region needs its 8-byte expiry")
        raise SystemError(f"TableBuilder: error {r}")

    cdef int flush_out_c(self) noexcept nogil:
        """Write the pending output; -1 with errno set on failure."""
        cdef ssize_t w
        cdef size_t done = 0
        while done < self.out.len:
            w = write(self.fd, self.out.p + done, self.out.len - done)
            if w < 0:
                return -1
            done += w
        self.out.len = 0
        return 0

    cdef int flush_out(self) except -1:
        cdef int r
        with nogil:
            r = self.flush_out_c()
        if r < 0:
            raise OSError(errno, f"write failed: {self.path}: {os.strerror(errno)}")
        return 0

    cdef int _write_block_c(self, const uint8_t* p, size_t n, uint8_t btype,
                            uint64_t* off, uint64_t* size) noexcept nogil:
        """Queue a block as stored (p, n) and its trailer; its handle goes to off, size."""
        cdef uint8_t trailer[5]
        trailer[0] = btype
        store_u32(trailer + 1, crc32c(trailer, 1, crc32c(p, n, 0)))
        if buf_reserve_c(&self.out, n + 5) < 0:
            return ERR_NOMEM
        buf_append_c(&self.out, p, n)
        buf_append_c(&self.out, trailer, 5)
        off[0] = self.offset
        size[0] = n
        self.offset += n + 5
        return 0

    cdef int _write_block(self, bytes contents, uint64_t* off, uint64_t* size) except -1:
        """Queue an uncompressed meta block."""
        cdef int r = self._write_block_c(<const uint8_t*>PyBytes_AS_STRING(contents),
                                         PyBytes_GET_SIZE(contents), BLOCK_RAW, off, size)
        if r < 0:
            self._raise(r)
        return 0

    cdef int _compress_fallback(self, const uint8_t* p, size_t n, const uint8_t** zp,
                                size_t* zn) noexcept with gil:
        try:
            self.zobj = self.cctx.compress(PyMemoryView_FromMemory(<char*>p, n, PyBUF_READ))
        except BaseException as e:
            self.pyexc = e
            return ERR_PY
        zp[0] = <const uint8_t*>PyBytes_AS_STRING(self.zobj)
        zn[0] = PyBytes_GET_SIZE(self.zobj)
        return 0

    cdef int _emit_data_block(self, const uint8_t* p, size_t n, const uint8_t* last,
                              size_t last_len) noexcept nogil:
        """Compress (when that saves 1/8), queue, and index a data block under `last`."""
        cdef const uint8_t* zp = NULL
        cdef size_t zn = 0, cap
        cdef uint8_t btype = BLOCK_RAW
        cdef uint8_t h[20]
        cdef uint64_t off, size
        cdef int r
        if self.compress:
            if self.zc.cctx != NULL:
                cap = zstd_bound(n)
                self.zbuf.len = 0
                if buf_reserve_c(&self.zbuf, cap) < 0:
                    return ERR_NOMEM
                zn = zcomp_compress(&self.zc, self.zbuf.p, cap, p, n)
                if zstd_is_error(zn):
                    self.zerr = zn
                    return ERR_ZSTD
                zp = self.zbuf.p
            else:
                r = self._compress_fallback(p, n, &zp, &zn)
                if r < 0:
                    return r
            if zn < n - n // 8:
                p = zp
                n = zn
                btype = <uint8_t>self.block_type
        r = self._write_block_c(p, n, btype, &off, &size)
        if r < 0:
            return r
        cdef uint8_t* e = put_varint(h, off)
        e = put_varint(e, size)
        if bb_add(&self.index_block, last, last_len, h, e - h) < 0:
            return ERR_NOMEM
        return 0

    cdef int _hold_for_training(self) noexcept with gil:
        """Keep the finished data block back until enough are seen to train on."""
        try:
            self.pending.append((PyBytes_FromStringAndSize(<char*>self.data_block.buf.p, self.data_block.buf.len),
                                 PyBytes_FromStringAndSize(<char*>self.last_key.p, self.last_key.len)))
            self.pending_bytes += self.data_block.buf.len
            if self.pending_bytes >= self.dict_bytes * 100:
                self._train()
        except BaseException as e:
            self.pyexc = e
            return ERR_PY
        return 0

    cdef int _finish_data_block_c(self) noexcept nogil:
        cdef int r
        if self.data_block.entries == 0:
            return 0
        if bb_finish(&self.data_block) < 0:
            return ERR_NOMEM
        self.num_data_blocks += 1
        if self.training:
            r = self._hold_for_training()
        else:
            r = self._emit_data_block(self.data_block.buf.p, self.data_block.buf.len,
                                      self.last_key.p, self.last_key.len)
        bb_reset(&self.data_block)
        return r

    cdef int _train(self) except -1:
        """Train a zstd dictionary on the held-back blocks (RocksDB's max_dict_bytes
        idea: small blocks compress far better against a dictionary, and a trained
        dictionary's entropy tables are digested once per reader, not per block),
        then write those blocks. Too little data to train on: no dictionary."""
        cdef bytes contents, last
        cdef int r
        pending = self.pending
        self.pending = None
        self.training = False
        zd = None
        if len(pending) >= 16 and self.pending_bytes >= self.dict_bytes * 4:
            try:
                zd = zstandard.train_dictionary(self.dict_bytes, [c for c, _ in pending],
                                                k=64, d=8, level=self.level)
            except zstandard.ZstdError:
                zd = None
        if zd is not None:
            self.dict_data = zd.as_bytes()
            self._set_compressor(self.dict_data)
            self.block_type = BLOCK_ZSTD_DICT
        else:
            self._set_compressor(None)
        for contents, last in pending:
            r = self._emit_data_block(<const uint8_t*>PyBytes_AS_STRING(contents), PyBytes_GET_SIZE(contents),
                                      <const uint8_t*>PyBytes_AS_STRING(last), PyBytes_GET_SIZE(last))
            if r < 0:
                self._raise(r)
        return 0

    cdef int add_c(self, const uint8_t* k, size_t kn, const uint8_t* v, size_t vn) noexcept nogil:
        """Add an entry (kn >= 8). 0, or an ERR_* code (see _raise). No I/O."""
        cdef uint64_t tag = load_u64(k + kn - TAG_SIZE)
        cdef uint64_t seq = tag >> 8
        cdef int kind = tag & 0xFF
        cdef size_t ukn = kn - TAG_SIZE
        cdef uint64_t* grown
        cdef int64_t exp
        if self.num_entries and cmp_ikey(self.last_key.p, self.last_key.len, k, kn) >= 0:
            return ERR_ORDER
        if kind == KIND_PUT_TTL and vn < 8:
            return ERR_TTL_VALUE
        if self.num_entries == 0:
            if buf_set_c(&self.first_key, k, kn) < 0:
                return ERR_NOMEM
        # bloom: one hash per distinct user key
        if self.num_entries == 0 or cmp_bytes(self.last_ukey_hashed.p, self.last_ukey_hashed.len, k, ukn) != 0:
            if self.nhashes == self.cap_hashes:
                grown = <uint64_t*>realloc(self.hashes, (self.cap_hashes * 2 + 1024) * sizeof(uint64_t))
                if grown == NULL:
                    return ERR_NOMEM
                self.hashes = grown
                self.cap_hashes = self.cap_hashes * 2 + 1024
            self.hashes[self.nhashes] = bloom_hash(k, ukn)
            self.nhashes += 1
            if buf_set_c(&self.last_ukey_hashed, k, ukn) < 0:
                return ERR_NOMEM
        if bb_add(&self.data_block, k, kn, v, vn) < 0 or buf_set_c(&self.last_key, k, kn) < 0:
            return ERR_NOMEM
        self.num_entries += 1
        self.raw_key_bytes += kn
        self.raw_value_bytes += vn
        if seq < self.smallest_seq:
            self.smallest_seq = seq
        if seq > self.largest_seq:
            self.largest_seq = seq
        if kind == KIND_DELETE:
            self.num_deletions += 1
        elif kind == KIND_MERGE:
            self.has_merges = True
        elif kind == KIND_PUT_TTL:
            self.num_ttl += 1
            exp = <int64_t>load_u64(v)   # length checked above
            if self.min_expiry == 0 or exp < self.min_expiry:
                self.min_expiry = exp
        if bb_size(&self.data_block) >= self.block_size:
            return self._finish_data_block_c()
        return 0

    cdef int add(self, const uint8_t* k, size_t kn, const uint8_t* v, size_t vn) except -1:
        cdef int r = self.add_c(k, kn, v, vn)
        if r < 0:
            self._raise(r)
        if self.out.len >= OUT_FLUSH_BYTES:
            self.flush_out()
        return 0

    def py_add(self, ikey, value):
        cdef const uint8_t[::1] kv = ikey
        cdef const uint8_t[::1] vv = value
        if kv.shape[0] < TAG_SIZE:
            raise ValueError("internal key shorter than 8 bytes")
        self.add(&kv[0], kv.shape[0], &vv[0] if vv.shape[0] else NULL, vv.shape[0])

    def add_range_dels(self, tombstones):
        """Give the table these range tombstones ((start, end, seq), already
        fragmented: no two with the same start and seq), written to its range-del
        block by finish(); the table's key range grows to cover them."""
        ts = sorted(((bytes(s), bytes(e), int(q)) for s, e, q in tombstones), key=lambda t: (t[0], -t[2]))
        self.range_dels = ts or None

    cdef tuple _range_bounds(self):
        """(smallest, largest) internal keys of the table: its entries' and its
        range tombstones' (a tombstone [s, e) at q spans (s, q) .. (e, max tag):
        the end is exclusive, and the max tag sorts before every entry of e)."""
        sm = PyBytes_FromStringAndSize(<char*>self.first_key.p, self.first_key.len) if self.num_entries else None
        lg = PyBytes_FromStringAndSize(<char*>self.last_key.p, self.last_key.len) if self.num_entries else None
        if self.range_dels:
            s0, _, q0 = self.range_dels[0]
            tag = PyBytes_FromStringAndSize(NULL, TAG_SIZE)
            store_u64(<uint8_t*>PyBytes_AS_STRING(tag), make_tag(q0, KIND_RANGE_DELETE))
            cand = s0 + tag
            if sm is None or cmp_ikey(<const uint8_t*>PyBytes_AS_STRING(cand), len(cand),
                                      <const uint8_t*>PyBytes_AS_STRING(sm), len(sm)) < 0:
                sm = cand
            cand = max(e for _, e, _ in self.range_dels) + b"\xff" * TAG_SIZE
            if lg is None or cmp_ikey(<const uint8_t*>PyBytes_AS_STRING(cand), len(cand),
                                      <const uint8_t*>PyBytes_AS_STRING(lg), len(lg)) > 0:
                lg = cand
        return (sm if sm is not None else b""), (lg if lg is not None else b"")

    cdef bytes _range_del_block(self):
        """The range-del block: one entry per tombstone fragment, key = start +
        tag(seq, KIND_RANGE_DELETE), value = end; in internal-key order."""
        cdef BlockBuilder b = BlockBuilder(16)
        for s, e, q in self.range_dels:
            tag = PyBytes_FromStringAndSize(NULL, TAG_SIZE)
            store_u64(<uint8_t*>PyBytes_AS_STRING(tag), make_tag(q, KIND_RANGE_DELETE))
            b.py_add(s + tag, e)
        return b.py_finish()

    cdef bytes _filter_block(self):
        """The filter block: a blocked bloom filter of the distinct user keys added
        (lsmkv.core.bloom, docs/format.md)."""
        return build_filter(self.hashes, self.nhashes, self.bits_per_key)

    cdef bytes _properties_block(self):
        cdef BlockBuilder b = BlockBuilder(1)
        cdef uint8_t tmp[10]
        cdef uint8_t* e
        zero_tag = b"\0" * 8
        smallest = PyBytes_FromStringAndSize(<char*>self.first_key.p, self.first_key.len - TAG_SIZE) \
            if self.num_entries else b""
        largest = PyBytes_FromStringAndSize(<char*>self.last_key.p, self.last_key.len - TAG_SIZE) \
            if self.num_entries else b""
        if self.range_dels:
            sm, lg = self._range_bounds()
            smallest, largest = sm[:len(sm) - TAG_SIZE], lg[:len(lg) - TAG_SIZE]
        props = {
            "compression": b"zstd" if self.compress else b"none",
            "data_size": self.data_size,
            "largest_key": largest,
            "largest_seq": self.largest_seq,
            "min_expiry": <uint64_t>self.min_expiry,
            "num_data_blocks": self.num_data_blocks,
            "num_deletions": self.num_deletions,
            "num_entries": self.num_entries,
            "num_ttl_entries": self.num_ttl,
            "raw_key_bytes": self.raw_key_bytes,
            "raw_value_bytes": self.raw_value_bytes,
            "smallest_key": smallest,
            "smallest_seq": self.smallest_seq if (self.num_entries or self.range_dels) else 0,
        }
        if self.range_dels:
            props["num_range_deletions"] = len(self.range_dels)
            props["range_del_offset"] = self.rd_offset
            props["range_del_size"] = self.rd_size
        if self.column_family:     # a column family's table (lsmkv/engine/family.py; repair reads it)
            props["column_family"] = self.column_family
        if self.compress:      # the zstd level, zigzag-encoded (docs/format.md)
            props["compression_level"] = (self.level << 1) if self.level >= 0 else ((-self.level) << 1) - 1
        for name in sorted(props):
            value = props[name]
            if not isinstance(value, bytes):
                e = put_varint(tmp, <uint64_t>value)
                value = PyBytes_FromStringAndSize(<char*>tmp, e - tmp)
            b.py_add(name.encode() + zero_tag, value)
        return b.py_finish()

    def finish(self):
        """Write filter, index, properties and footer; fsync; close. Returns the
        table's metadata as a dict."""
        cdef uint64_t h[8]
        cdef uint8_t footer[FOOTER_SIZE]
        cdef int i
        if self.finished:
            raise ValueError("TableBuilder already finished")
        cdef int r = self._finish_data_block_c()
        if r < 0:
            self._raise(r)
        if self.training:
            self._train()
        self.data_size = self.offset
        h[6] = h[7] = 0
        if self.dict_data is not None:
            self._write_block(self.dict_data, &h[6], &h[7])
        if self.range_dels:
            for _, _, q in self.range_dels:
                if q < self.smallest_seq:
                    self.smallest_seq = q
                if q > self.largest_seq:
                    self.largest_seq = q
            self._write_block(self._range_del_block(), &self.rd_offset, &self.rd_size)
        self._write_block(self._filter_block(), &h[2], &h[3])
        if bb_finish(&self.index_block) < 0:
            raise MemoryError()
        self._write_block(PyBytes_FromStringAndSize(<char*>self.index_block.buf.p, self.index_block.buf.len),
                          &h[0], &h[1])
        self._write_block(self._properties_block(), &h[4], &h[5])
        for i in range(8):
            store_u64(footer + 8 * i, h[i])
        # version 2 only for what a reader of version 1 would misread (format.md, "Footer")
        store_u32(footer + 64, FORMAT_VERSION if (self.range_dels or self.has_merges) else FORMAT_VERSION_PLAIN)
        store_u32(footer + 68, crc32c(footer, 68, 0))
        memcpy(footer + 72, SST_MAGIC, 8)
        buf_append(&self.out, footer, FOOTER_SIZE)
        self.offset += FOOTER_SIZE
        cdef int stage = 0, err = 0
        with nogil:      # write the rest, fsync, close: one GIL release (see lsmkv.core.fileio)
            if self.flush_out_c() < 0:
                stage = 1
            elif fsync(self.fd) != 0:
                stage = 2
            err = errno
            if stage == 0:
                close(self.fd)
                self.fd = -1
        if stage:
            raise OSError(err, f"{'write' if stage == 1 else 'fsync'} failed: {self.path}: "
                               f"{os.strerror(err)}", self.path)
        self.finished = True
        smallest, largest = self._range_bounds()
        return {
            "file_size": self.offset,
            "smallest": smallest,
            "largest": largest,
            "num_range_deletions": len(self.range_dels) if self.range_dels else 0,
            "smallest_seq": self.smallest_seq if (self.num_entries or self.range_dels) else 0,
            "largest_seq": self.largest_seq,
            "num_entries": self.num_entries,
            "num_deletions": self.num_deletions,
            "min_expiry": self.min_expiry,
        }

    def abandon(self):
        """Close and delete the partial file."""
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
        if not self.finished:
            try:
                os.unlink(self.path)
            except FileNotFoundError:
                pass
        self.finished = True

    @property
    def file_size(self):
        return self.offset
