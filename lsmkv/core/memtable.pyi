"""Type stubs for lsmkv.core.memtable (the arena-backed skiplist memtable; see memtable.pyx)."""
from typing import Optional, Union

from lsmkv.core.iterator import InternalIterator

_Buffer = Union[bytes, bytearray, memoryview]


class Arena:
    """Bump-pointer allocator over large chunks, freed all at once."""
    chunk_size: int
    allocated: int
    used: int
    def __init__(self, chunk_size: int = ...) -> None: ...
    def alloc(self, n: int) -> int:
        """Allocate n bytes (tests only); returns the address as an int."""


class MemTable:
    """A sorted, append-only table of internal entries."""
    entries: int
    first_seq: int
    last_seq: int
    min_expiry: int
    log_number: Optional[int]
    range_dels: Optional[list[tuple[bytes, bytes, int]]]
    def __init__(self, chunk_size: int = ..., log_number: Optional[int] = ...) -> None: ...
    def put(self, seq: int, key: _Buffer, value: _Buffer, expiry: int = ...) -> None: ...
    def delete(self, seq: int, key: _Buffer) -> None: ...
    def get(self, key: _Buffer, seq: int = ...) -> Optional[tuple[int, bytes, int]]:
        """-> None (no entry), (kind, value, expiry)."""
    @property
    def memory_usage(self) -> int:
        """Bytes mapped for this memtable (exact: arena chunks + chunk table + point index)."""
    @property
    def resident_bytes(self) -> int:
        """Bytes of the arena the process holds: memory_usage less the whole pages
        at the end of the current chunk that no allocation has reached yet."""
    @property
    def arena_used(self) -> int: ...
    @property
    def index_bytes(self) -> int:
        """Bytes the point index maps (in memory_usage and resident_bytes)."""
    @property
    def index_on(self) -> bool:
        """Whether point lookups use the hash index."""
    @property
    def index_keys(self) -> int:
        """User keys in the point index."""
    def delete_range(self, seq: int, start: _Buffer, stop: _Buffer) -> None: ...
    def __len__(self) -> int: ...
    def iterator(self) -> "MemTableIterator": ...
    def check(self) -> bool:
        """Assert the skiplist's invariants; True when they hold (O(n))."""


class MemTableIterator(InternalIterator):
    """Iterator over a memtable's entries in internal-key order. prev() is O(1)."""
    def __init__(self, mem: MemTable) -> None: ...
