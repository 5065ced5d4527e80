"""Type stubs for lsmkv.core.builder (writing an SST; see builder.pyx)."""
import os
from typing import Any, Iterable, Union

_Path = Union[str, "os.PathLike[str]"]
_Buffer = Union[bytes, bytearray, memoryview]


class BlockBuilder:
    """Python access to a BlockBuf, for the properties block and the tests."""
    def __init__(self, restart_interval: int = ...) -> None: ...
    def py_add(self, key: _Buffer, value: _Buffer) -> None: ...
    def py_finish(self) -> bytes: ...
    @property
    def entries(self) -> int: ...


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
    column_family: int      # the column family id the table records (0: the default; no property)
    min_expiry: int
    def __init__(self, path: _Path, block_size: int = ..., compression: str = ...,
                 compression_level: int = ..., bloom_bits_per_key: int = ...,
                 restart_interval: int = ..., dict_bytes: int = ...) -> None: ...
    def py_add(self, ikey: _Buffer, value: _Buffer) -> None: ...
    def add_range_dels(self, tombstones: Iterable[tuple[bytes, bytes, int]]) -> None: ...
    def finish(self) -> dict[str, Any]:
        """Write filter, index, properties and footer; fsync; close. Returns the"""
    def abandon(self) -> None:
        """Close and delete the partial file."""
    @property
    def file_size(self) -> int: ...
