"""Type stubs for lsmkv.core.fileio (file-system calls grouped into one GIL release; see _fileio.pyx)."""
import os
from typing import Optional, Union

_Path = Union[str, bytes, "os.PathLike[str]", "os.PathLike[bytes]"]
_Buffer = Union[bytes, bytearray, memoryview]


def fsync_dir(path: _Path) -> None:
    """Make a directory's entries durable."""
def append_sync(fd: int, record: _Buffer, path: _Path, sync_dir: Optional[_Path] = ...) -> None:
    """Append record at the end of fd and fsync it, all in one GIL release; with"""
