"""Type stubs for lsmkv.core.bloom (the tables' blocked bloom filter; see bloom.pyx)."""
from typing import Union

_Buffer = Union[bytes, bytearray, memoryview]

SEED: int


def bloom_hash_py(key: _Buffer) -> int:
    """The bloom hash of a user key (bytes-like)."""
