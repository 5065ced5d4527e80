"""Type stubs for lsmkv.core.coding (checksums, hashes and varints; see _coding.pyx)."""
from typing import Union

_Buffer = Union[bytes, bytearray, memoryview]


def crc32c_software(data: _Buffer, crc: int = ...) -> int:
    """The table-driven CRC-32C (tests compare it with the hardware one)."""
def has_hardware_crc() -> bool: ...
def crc32c_py(data: _Buffer, crc: int = ...) -> int:
    """crc32c(data[, crc]) -> int. Python access to the record checksum (tools, tests)."""
def murmur3_py(data: _Buffer, seed: int = ...) -> tuple[int, int]:
    """(h1, h2) of MurmurHash3_x64_128 as unsigned 64-bit ints."""
def encode_varint(v: int) -> bytes: ...
def decode_varint(data: _Buffer, pos: int = ...) -> tuple[int, int]:
    """-> (value, next_pos); raises ValueError if malformed."""
