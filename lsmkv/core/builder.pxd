# The SST writer (lsmkv.core.builder): block building and TableBuilder.
from libc.stdint cimport uint8_t, uint64_t, int64_t
from lsmkv.core.bytebuf cimport Buf
from lsmkv.core.zstd cimport ZComp

# TableBuilder's error codes (add_c, flush_out_c) and its output threshold.
cdef enum:
    ERR_NOMEM = -1
    ERR_ZSTD = -2        # libzstd error code in self.zerr
    ERR_PY = -3          # exception (fallback compression, dictionary training) in self.pyexc
    ERR_ORDER = -4
    ERR_TTL_VALUE = -5
    ERR_IO = -6          # errno set
    OUT_FLUSH_BYTES = 1048576   # write `out` out once it holds this much

# One block of prefix-compressed entries with restart points, being built.
ctypedef struct BlockBuf:
    Buf buf
    Buf restarts        # u32 offsets
    Buf last
    int interval, counter
    size_t entries

cdef class BlockBuilder:
    cdef BlockBuf b

cdef class TableBuilder:
    cdef readonly object path
    cdef int fd
    cdef Buf out                     # pending output not yet written
    cdef readonly uint64_t offset    # bytes written to the file so far (incl. pending)
    cdef BlockBuf data_block, index_block
    cdef size_t block_size
    cdef ZComp zc                  # libzstd context (zc.cctx NULL: use the fallback cctx)
    cdef object cctx               # python-zstandard compressor, when libzstd is not loaded
    cdef object zobj               # the fallback's last compressed block (kept alive)
    cdef Buf zbuf                  # compressed form of the current block
    cdef int compress
    cdef int level
    cdef int block_type            # BLOCK_ZSTD or BLOCK_ZSTD_DICT, once chosen
    cdef size_t dict_bytes
    cdef bint training             # blocks are held back in `pending` to train a dictionary
    cdef list pending              # (contents, last key) of those blocks
    cdef size_t pending_bytes
    cdef bytes dict_data
    cdef Buf last_key
    cdef Buf first_key
    cdef Buf last_ukey_hashed
    cdef uint64_t* hashes
    cdef size_t nhashes, cap_hashes
    cdef int bits_per_key
    cdef size_t zerr
    cdef object pyexc
    # properties
    cdef readonly uint64_t num_entries, num_deletions, num_ttl, raw_key_bytes, raw_value_bytes
    cdef readonly uint64_t smallest_seq, largest_seq, num_data_blocks, data_size
    cdef readonly int64_t min_expiry
    cdef bint finished
    cdef uint64_t rd_offset, rd_size  # the range-del block's handle
    cdef list range_dels           # (start, end, seq) for the range-del block, sorted, or None
    cdef bint has_merges           # a merge operand was added (the table is FORMAT_VERSION)
    cdef public uint64_t column_family   # the column family's id (0: the default; property absent)
    cdef int _set_compressor(self, bytes dict_data) except -1
    cdef int _raise(self, int r) except -1
    cdef int flush_out_c(self) noexcept nogil
    cdef int flush_out(self) except -1
    cdef int _write_block_c(self, const uint8_t* p, size_t n, uint8_t btype,
                            uint64_t* off, uint64_t* size) noexcept nogil
    cdef int _write_block(self, bytes contents, uint64_t* off, uint64_t* size) except -1
    cdef int _compress_fallback(self, const uint8_t* p, size_t n, const uint8_t** zp,
                                size_t* zn) noexcept with gil
    cdef int _emit_data_block(self, const uint8_t* p, size_t n, const uint8_t* last,
                              size_t last_len) noexcept nogil
    cdef int _hold_for_training(self) noexcept with gil
    cdef int _finish_data_block_c(self) noexcept nogil
    cdef int _train(self) except -1
    cdef int add_c(self, const uint8_t* k, size_t kn, const uint8_t* v, size_t vn) noexcept nogil
    cdef int add(self, const uint8_t* k, size_t kn, const uint8_t* v, size_t vn) except -1
    cdef bytes _filter_block(self)
    cdef bytes _properties_block(self)
    cdef tuple _range_bounds(self)
    cdef bytes _range_del_block(self)
