"""Type stubs for lsmkv.core.wal (the write-ahead log writer; see wal.pyx)."""
import os
from typing import Optional, Union

_Path = Union[str, "os.PathLike[str]"]
_Buffer = Union[bytes, bytearray, memoryview]

HEADER_SIZE: int


class LogWriter:
    """Appends framed records to a new log file `path`."""
    pos: int
    path: str
    number: int
    def __init__(self, path: _Path, number: int, prealloc: int = ..., use_mmap: bool = ...,
                 sync_dir: Optional[_Path] = ...) -> None:
        """Create the log (it must not exist). With sync_dir, that directory is"""
    @property
    def mapped_bytes(self) -> int:
        """Bytes of the file mapped (and populated) for appends; 0 for write() logs"""
    def append(self, payload: _Buffer) -> None:
        """Append one record (Python API; the DB writes in place via begin/commit)."""
    def sync(self) -> None: ...
    @property
    def capacity(self) -> int: ...
    def close(self, truncate: bool = ..., sync: bool = ...) -> None:
        """Sync, unmap, drop the unused preallocated tail, fsync and close, in one"""
    def abandon(self) -> None:
        """Unmap and close without syncing (simulated crash; tests)."""
