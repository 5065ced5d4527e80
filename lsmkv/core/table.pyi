"""Type stubs for lsmkv.core.table (SST writing, reading and iteration; see _table.pyx)."""
import os
from typing import Any, Callable, Optional, Union

from lsmkv.core.iterator import InternalIterator
from lsmkv.errors import CorruptionError as CorruptionError

_Path = Union[str, "os.PathLike[str]"]
_Buffer = Union[bytes, bytearray, memoryview]

MAGIC: bytes
DELETED: object


def bloom_hash_py(key: _Buffer) -> int: ...
def block_entries(data: bytes, path: str = ...) -> list[tuple[bytes, bytes]]:
    """All (key, value) pairs of a block, in order (tools, tests, properties)."""
def pread_nowait(enabled: Optional[bool] = ...) -> bool:
    """Whether block reads try preadv2(RWF_NOWAIT) with the GIL held first; with"""
def read_pool_stats() -> dict[str, int]:
    """Pooled read buffers: borrows, buffers ever created, buffers held and their bytes."""
def make_tag_py(seq: int, kind: int) -> int: ...
def write_tables(it: InternalIterator, new_table: Callable[[], "TableBuilder"], smallest_snapshot: int,
                 bottommost: bool, now: int, target_file_size: int,
                 stats: Optional[dict[str, int]] = ...) -> list[dict[str, Any]]:
    """Stream `it` (positioned by this function) into new tables."""


class BlockBuilder:
    """Python access to a BlockBuf, for the properties block and the tests."""
    def __init__(self, restart_interval: int = ...) -> None: ...
    def py_add(self, key: _Buffer, value: _Buffer) -> None: ...
    def py_finish(self) -> bytes: ...
    @property
    def entries(self) -> int: ...


class BlockIter(InternalIterator):
    """Iterator over one block's entries (data, index or properties block)."""
    def __init__(self) -> None: ...


class TableReader:
    """Opens an SST and answers point lookups; new_iterator() scans it."""
    number: int
    file_size: int
    path: str
    properties: dict[str, Union[int, bytes, str]]
    touched_bytes: int
    index_offset: int
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
    def py_get(self, key: _Buffer, seq: int = ..., now: int = ...) -> object: ...  # bytes, None (absent) or DELETED
    def new_iterator(self) -> "TableIterator": ...
    def verify(self) -> int:
        """Read every data block, checking checksums and key order. Returns entry count;"""


class TableIterator(InternalIterator):
    """Two-level iterator: the index block picks data blocks, read through the cache."""
    def __init__(self, table: TableReader) -> None: ...


class LevelIterator(InternalIterator):
    """Concatenation of a sorted run of non-overlapping tables; opens one at a time."""
    def __init__(self, tables: list[TableReader], largest: list[bytes]) -> None: ...


class TableBuilder:
    """Writes one SST. add() entries in strictly increasing internal-key order,"""
    path: str
    offset: int
    num_entries: int
    num_deletions: int
    num_ttl: int
    raw_key_bytes: int
    raw_value_bytes: int
    smallest_seq: int
    largest_seq: int
    num_data_blocks: int
    data_size: int
    min_expiry: int
    def __init__(self, path: _Path, block_size: int = ..., compression: str = ...,
                 compression_level: int = ..., bloom_bits_per_key: int = ...,
                 restart_interval: int = ..., dict_bytes: int = ...) -> None: ...
    def py_add(self, ikey: _Buffer, value: _Buffer) -> None: ...
    def finish(self) -> dict[str, Any]:
        """Write filter, index, properties and footer; fsync; close. Returns the"""
    def abandon(self) -> None:
        """Close and delete the partial file."""
    @property
    def file_size(self) -> int: ...
