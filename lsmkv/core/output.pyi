"""Type stubs for lsmkv.core.output (flush and compaction output; see output.pyx)."""
from typing import Any, Callable, Optional

from lsmkv.core.builder import TableBuilder
from lsmkv.core.iterator import InternalIterator
from lsmkv.errors import MergeOperatorError as MergeOperatorError


def write_tables(it: InternalIterator, new_table: Callable[[], TableBuilder], smallest_snapshot: int,
                 bottommost: bool, now: int, target_file_size: int,
                 stats: Optional[dict[str, Any]] = ..., merge_op: Any = ...) -> list[dict[str, Any]]:
    """Stream `it` (positioned by this function) into new tables."""
