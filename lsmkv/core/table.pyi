"""Type stubs for lsmkv.core.table (SST reading and iteration, and the names of lsmkv.core.builder, .output and .bloom it re-exports; see table.pyx)."""
import os
from typing import Any, Callable, Optional, Union

from lsmkv.core.iterator import InternalIterator
from lsmkv.core.bloom import bloom_hash_py as bloom_hash_py
from lsmkv.core.builder import BlockBuilder as BlockBuilder, TableBuilder as TableBuilder
from lsmkv.core.output import write_tables as write_tables
from lsmkv.errors import CorruptionError as CorruptionError

_Path = Union[str, "os.PathLike[str]"]
_Buffer = Union[bytes, bytearray, memoryview]

MAGIC: bytes
DELETED: object
MERGED: object
FOOTER_SIZE: int
TRAILER_SIZE: int
FORMAT_VERSION: int
FORMAT_VERSION_PLAIN: int
BLOCK_RAW: int
BLOCK_ZSTD: int
BLOCK_ZSTD_DICT: int


def block_entries(data: bytes, path: str = ...) -> list[tuple[bytes, bytes]]:
    """All (key, value) pairs of a block, in order (tools, tests, properties)."""
def pread_nowait(enabled: Optional[bool] = ...) -> bool:
    """Whether block reads try preadv2(RWF_NOWAIT) with the GIL held first; with"""
def read_pool_stats() -> dict[str, int]:
    """Pooled read buffers: borrows, buffers ever created, buffers held and their bytes."""
def make_tag_py(seq: int, kind: int) -> int: ...
def decompress_block(body: _Buffer, btype: int, zdict: Any = ..., path: str = ..., off: int = ...) -> bytes:
    """The contents of a block stored as `body` (bytes-like, without its trailer)"""

def parallel_reads(n: Optional[int] = ...) -> int:
    """Helper threads a multi_get's batch of block reads may use; with n, set it."""
    ...

def fetch_stats() -> dict[str, int]:
    """Batched block fetches: batches, blocks, helper_blocks, in_slot, helpers, linger_us."""
    ...


class BlockIter(InternalIterator):
    """Iterator over one block's entries (data, index or properties block)."""
    def __init__(self) -> None: ...


class TableReader:
    """Opens an SST and answers point lookups; new_iterator() scans it."""
    number: int
    file_size: int
    path: str
    properties: dict[str, Union[int, bytes, str]]
    range_dels: Optional[list[tuple[bytes, bytes, int]]]
    touched_bytes: int
    index_offset: int
    index_size: int
    index_cached: bool          # the index block lives in the slab cache (cache_index_and_filter)
    filter_cached: bool
    zdict: Any
    def __init__(self, path: _Path, number: int, cache: Any = ..., use_mmap: bool = ...,
                 cache_index_and_filter: bool = ...) -> None: ...
    def close(self) -> None:
        """Release the file now (later reads raise ValueError). The DB never calls"""
    def memory_bytes(self) -> int:
        """Bytes this open table keeps in memory: its resident index and filter"""
    def mapped_resident(self) -> int:
        """Bytes of this table's mapping that this process has touched, counted in"""
    def py_may_contain(self, key: _Buffer) -> bool: ...
    def approximate_offset(self, key: _Buffer) -> int: ...
    def py_get(self, key: _Buffer, seq: int = ..., now: int = ...) -> object: ...  # bytes, None (absent) or DELETED
    def new_iterator(self) -> "TableIterator": ...
    def verify(self) -> int:
        """Read every data block, checking checksums and key order. Returns entry count;"""


class TableIterator(InternalIterator):
    """Two-level iterator: the index block picks data blocks, read through the cache."""
    def __init__(self, table: TableReader) -> None: ...


class LevelIterator(InternalIterator):
    """Concatenation of a sorted run of non-overlapping tables; opens one at a time."""
    def __init__(self, tables: tuple[TableReader, ...], largest: list[bytes]) -> None: ...
