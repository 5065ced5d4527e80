"""Type stubs for lsmkv.core.zstd (direct calls into libzstd; see _zstd.pyx)."""
from typing import Optional, Union


def libzstd_info() -> dict[str, Union[bool, Optional[str]]]:
    """How block compression is done: {'loaded', 'library', 'version', 'reason'}."""
