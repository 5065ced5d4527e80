"""Type stubs for lsmkv.core.rangedel (range tombstones, fragmented; see rangedel.pyx)."""
from typing import Iterable, Optional

_Tombstone = tuple[bytes, bytes, int]
_Fragment = tuple[bytes, bytes, tuple[int, ...]]

def fragment(tombstones: Iterable[_Tombstone]) -> list[_Fragment]:
    """The tombstones cut into non-overlapping fragments, each with its sequences newest first."""

def compact_fragments(fragments: Iterable[_Fragment], smallest_snapshot: int,
                      bottommost: bool) -> list[_Tombstone]:
    """The (start, end, seq) a compaction output keeps of fragments."""

class RangeDelSet:
    """A set of range tombstones, fragmented for binary search."""
    starts: list[bytes]
    ends: list[bytes]
    seqs: list[tuple[int, ...]]
    base: Optional["RangeDelSet"]
    def __init__(self, tombstones: Iterable[_Tombstone] = ..., base: Optional["RangeDelSet"] = ...) -> None: ...
    def __len__(self) -> int: ...
    def max_covering(self, key: bytes, seq: int) -> int: ...
    def covers(self, key: bytes, eseq: int, seq: int) -> bool: ...
    def cut_ok(self, key: bytes) -> bool: ...
    def fragments(self) -> list[_Fragment]: ...
