# cython: language_level=3
"""Sorted string tables (SST): reading and iterating over them.

The module is in parts, each one concern, included here (uvloop's layout):
  blockio.pxi    reading a stored block: pread and pooled buffers, trailer check,
                 decompression, block handles
  fetch.pxi      reading a batch of blocks (multi_get) without the GIL, on helper
                 threads too
  block.pxi      iterating over one block's entries (BlockIter, block_entries)
  reader.pxi     TableReader: open, point lookups, block reads, verify
  readmany.pxi   batched point lookups over several tables (multi_get), in stages
  iterators.pxi  TableIterator and LevelIterator
The writer, the flush/compaction output rules and the bloom filter are modules
of their own, re-exported here under their old names: lsmkv.core.builder
(BlockBuilder, TableBuilder), lsmkv.core.output (write_tables),
lsmkv.core.bloom (bloom_hash_py). The format's constants are defined once, in
lsmkv/core/sstformat.pxd, and exported here (FOOTER_SIZE, TRAILER_SIZE,
FORMAT_VERSION, BLOCK_*, MAGIC).

File layout (docs/format.md has field widths and edge cases):

    [data block 0][trailer] ... [data block n-1][trailer]
    [dictionary block][trailer] (only if the table has one)
    [filter block][trailer] [index block][trailer] [properties block][trailer]
    [footer: 80 bytes]

  block   = entries, then restart offsets (u32 LE each), then restart count (u32 LE)
  entry   = varint shared | varint non_shared | varint value_len | key_delta | value
  trailer = type (u8: 0 raw, 1 zstd, 2 zstd with the table's dictionary)
            | crc32c(block bytes as stored + type) (u32 LE)
  footer  = index (off u64, size u64) | filter (off, size) | properties (off, size)
            | dictionary (off, size; 0, 0 if none)
            | format_version u32 | crc32c(preceding 68 bytes) u32 | magic b"LSMKVSST"

Thread safety: TableBuilder is used by one thread. TableReader is immutable after
open and may be shared by any number of threads; get() is reentrant. Iterators
are used by one thread at a time.

Invariants:
  1. Entries in a table are strictly increasing in internal-key order; a user
     key's versions are never split across two files written by write_tables().
  2. Every block read is checksum-verified before it is parsed; a failed check,
     a failed decompression, or a malformed entry raises CorruptionError naming
     the file and the block's offset. Parsing never reads outside a block.
  3. The bloom filter holds every distinct user key of the table: may_contain()
     never answers False for a key that is in the table.
  4. A table's index and filter blocks are either resident (bytes held by the
     reader for its life, charged to the cache with reserve()) or, with
     cache_index_and_filter, slab-cache blocks keyed like data blocks: warmed at
     open, evictable, reloaded on a miss with the checksum verified and the
     contents' length (and the filter's probe count) compared with what open
     read, pinned only while a lookup or an iterator uses them. A block larger
     than a slab page cannot be cached and stays resident.
  5. An index entry's key is >= every key of its data block and < every key of
     the next block (the builder writes the block's last key), so a TableIterator
     standing on a block may re-seek inside it, with no index search, when the
     block's first key <= target <= that index key: the index would pick it.
"""
import os
import threading

cimport cython

import zstandard

from libc.stdlib cimport malloc, calloc, realloc, free
from libc.string cimport memcpy, memcmp, memset
from libc.stdint cimport uint8_t, uint32_t, uint64_t, int64_t
from posix.unistd cimport pread, close
from libc.errno cimport errno, EAGAIN, EINTR, EINVAL, ENOSYS, EOPNOTSUPP
from posix.uio cimport iovec
from cpython.memoryview cimport PyMemoryView_FromMemory
from cpython.buffer cimport PyBUF_READ
from cpython.bytes cimport (PyBytes_FromStringAndSize, PyBytes_AS_STRING, PyBytes_GET_SIZE)
from cpython.bytearray cimport PyByteArray_AS_STRING, PyByteArray_GET_SIZE
from lsmkv.core.bloom cimport bloom_probe
from lsmkv.core.cache cimport SlabCache, LRUCache, Pin, MetaCounts, ValueView
from lsmkv.core.coding cimport (crc32c, cmp_ikey, cmp_bytes, load_u64, load_u32,
                            store_u64, store_u32, put_varint, get_varint, varint_len, make_tag,
                            KIND_DELETE, KIND_PUT, KIND_PUT_TTL, KIND_MERGE, KIND_MAX, TAG_SIZE, KIND_RANGE_DELETE)
from lsmkv.core.includes.mman cimport mmap, munmap, PROT_READ, MAP_SHARED, MAP_FAILED
from lsmkv.core.includes.pthread cimport (pthread_key_t, pthread_key_create, pthread_getspecific,
                                          pthread_setspecific, pthread_t, pthread_create, pthread_detach,
                                          pthread_mutex_t, pthread_mutex_init, pthread_mutex_lock,
                                          pthread_mutex_unlock, pthread_cond_t, pthread_cond_init,
                                          pthread_cond_wait, pthread_cond_broadcast, sigset_t, sigfillset,
                                          pthread_sigmask, SIG_BLOCK, SIG_SETMASK)
from lsmkv.core.includes.uio cimport preadv2, RWF_NOWAIT
from lsmkv.core.includes.prefetch cimport prefetch, prefetch_range, prefetch_write_range
from lsmkv.core.iterator cimport InternalIterator, MergingIterator
from lsmkv.core.memtable cimport MemTable, MemTableIterator, Node, node_key, node_val
from lsmkv.core.sstformat cimport (FOOTER_SIZE, TRAILER_SIZE, FORMAT_VERSION, FORMAT_VERSION_PLAIN,
                               BLOCK_RAW, BLOCK_ZSTD,
                               BLOCK_ZSTD_DICT, SST_MAGIC)
from lsmkv.core.zstd cimport (zstd_loaded, zstd_is_error, zstd_error_name, zdctx_new, zdctx_free,
                          zddict_new, zddict_free, zstd_content_size, zstd_decompress)
from lsmkv.errors import CorruptionError

# re-exported: the writer, the output rules and the bloom hash, under their old names
from lsmkv.core.bloom import bloom_hash_py
from lsmkv.core.builder import BlockBuilder, TableBuilder
from lsmkv.core.output import write_tables

# the format's constants (lsmkv/core/sstformat.pxd), for Python (lsmkv.engine.repair, tools)
MAGIC = SST_MAGIC[:8]
globals().update(FOOTER_SIZE=FOOTER_SIZE, TRAILER_SIZE=TRAILER_SIZE, FORMAT_VERSION=FORMAT_VERSION,
                 FORMAT_VERSION_PLAIN=FORMAT_VERSION_PLAIN,
                 BLOCK_RAW=BLOCK_RAW, BLOCK_ZSTD=BLOCK_ZSTD, BLOCK_ZSTD_DICT=BLOCK_ZSTD_DICT)

cdef bint _nowait_ok = True     # cleared for good the first time preadv2(RWF_NOWAIT) is refused

# Sentinel returned by TableReader.get for a deletion or an expired entry.
DELETED = object()
MERGED = object()      # get(), mg_finish(): the entry found is a merge operand (the caller folds)

# a block up to this size is prefetched whole (reader.pxi's _prefetch_block; a slot
# about to be filled, _prefetch_fill); larger ones: their restart array's last line
DEF BLOCK_PREFETCH_MAX = 16384


cdef inline void _prefetch_fill(void* p, size_t n) noexcept nogil:
    """Start loading the lines of a slab slot about to be filled with n bytes of
    decompressed block (reader.pxi's _fill_slab, fetch.pxi's _fetch_one): the slot
    was an evicted block's, out of the CPU caches, and zstd's stores would wait
    for its lines one after another (measured: gets +12%, seeks +8%)."""
    if n <= BLOCK_PREFETCH_MAX:
        prefetch_write_range(p, n)

include "blockio.pxi"
include "fetch.pxi"
include "block.pxi"
include "reader.pxi"
include "readmany.pxi"
include "iterators.pxi"
