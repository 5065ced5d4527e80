"""Record framing shared by the WAL and the MANIFEST, and the reader for both.

    record = crc32c(length + payload) u32 LE | length u32 LE | payload

Recovery rule (docs/format.md, "Torn tails"):
  * an all-zero header ends the log (preallocated space never written);
  * a record that fails its check (bad CRC, or a length running past the end of
    the file) is a torn tail when nothing valid follows it: it and everything
    after it are dropped, and the reader reports how many bytes it dropped;
  * a bad record followed by a valid record (where its length says the next
    one starts, or, in case the length is what was damaged, at any offset in
    the next MiB) is damage in the middle of the log: CorruptionError naming
    the file and the bad record's offset. The exception
    is a bad record containing a whole zero page: a power loss that kept a
    later page but not this one. That too is a torn tail, since what follows
    were writes never synced (sync=True flushes everything before it).
  * a WAL that is done being written ends with its seal (an empty batch): a
    valid record after the last real one, so damage to that one is corruption,
    not a torn tail. read_log leaves the seal out of the records it returns.

Thread safety: pure functions.
"""
import struct

from lsmkv.core.coding import crc32c_py
from lsmkv.core.wal import HEADER_SIZE as HEADER     # one definition: the WAL writer's
from lsmkv.errors import CorruptionError

PAGE = 4096
_HDR = struct.Struct("<II")
_ZERO_PAGE = bytes(PAGE)


def frame(payload: bytes) -> bytes:
    """One framed record."""
    length = struct.pack("<I", len(payload))
    return struct.pack("<I", crc32c_py(length + payload)) + length + payload


def valid_at(data, off) -> bool:
    """Whether a whole record with a matching checksum starts at off (an all-zero
    header is not one)."""
    if off + HEADER > len(data):
        return False
    crc, n = _HDR.unpack_from(data, off)
    if crc == 0 and n == 0:
        return False
    end = off + HEADER + n
    return end <= len(data) and crc32c_py(data[off + 4:end]) == crc


SEARCH_LIMIT = 1 << 20


def next_valid(data, off, end):
    """Offset of a good record after the bad one at off, or None. Looks where the bad
    record's length says the next one starts, then (in case the length itself is
    damaged) at every offset in the following SEARCH_LIMIT bytes."""
    size = len(data)
    if end <= size and valid_at(data, end):
        return end
    limit = min(size - HEADER, off + SEARCH_LIMIT)
    for p in range(off + 1, limit + 1):
        crc, n = _HDR.unpack_from(data, p)
        if (crc or n) and p + HEADER + n <= size and valid_at(data, p):
            return p
    return None


def _has_zero_page(data, start, end) -> bool:
    first = (start + PAGE - 1) // PAGE * PAGE
    for p in range(first, end - PAGE + 1, PAGE):
        if data[p:p + PAGE] == _ZERO_PAGE:
            return True
    return False


# A WAL record's payload is a write batch, which starts with this header (docs/format.md,
# "WAL payload: a write batch"): its first sequence u64, its count of operations u32.
BATCH_HEADER = struct.Struct("<QI")

# A WAL's seal (lsmkv.engine.logs.seal; docs/format.md, "Sealed logs"): an empty batch,
# a batch header with count 0, as the log's last record.
SEAL_SIZE = BATCH_HEADER.size


def batch_header(path, off, payload):
    """(first sequence, count) of the batch in a WAL record at offset off of path;
    CorruptionError if the record is shorter than a batch header."""
    if len(payload) < BATCH_HEADER.size:
        raise CorruptionError(path, off, "batch shorter than its header")
    return BATCH_HEADER.unpack_from(payload)


def is_seal(payload) -> bool:
    """Whether a WAL record's payload is a seal (an empty batch)."""
    return len(payload) == SEAL_SIZE and bytes(payload[8:12]) == b"\0\0\0\0"


class LogReadResult:
    __slots__ = ("records", "end", "dropped_bytes", "dropped_at", "sealed_at")

    def __init__(self):
        self.records = []          # list of (offset, payload: memoryview)
        self.end = 0               # offset after the last good record
        self.dropped_bytes = 0     # non-zero bytes of a torn tail that were dropped
        self.dropped_at = None     # offset of the torn record, if any
        self.sealed_at = None      # wal=True: offset of the seal, taken out of records


def read_log(path, data, wal=True) -> LogReadResult:
    """Split `data` (the file's bytes; a memoryview over an mmap is fine) into records.
    wal: a write-ahead log, whose last record may be its seal: it is checked like
    any record (what makes damage before it detectable) and then left out of
    records (sealed_at says where it was). The MANIFEST passes wal=False."""
    res = LogReadResult()
    size = len(data)
    off = 0
    mv = memoryview(data)
    while off + HEADER <= size:
        crc, n = _HDR.unpack_from(data, off)
        if crc == 0 and n == 0:
            break
        end = off + HEADER + n
        if end <= size and crc32c_py(mv[off + 4:end]) == crc:
            res.records.append((off, mv[off + HEADER:end]))
            off = end
            continue
        # a bad record: torn tail or damage?
        nxt = next_valid(data, off, end)
        if nxt is not None and not _has_zero_page(data, off, nxt):
            raise CorruptionError(path, off, "log record checksum mismatch")
        res.dropped_at = off
        tail = bytes(mv[off:])
        res.dropped_bytes = len(tail) - tail.count(0) if len(tail) < (1 << 26) else len(tail)
        break
    else:
        if off < size and any(mv[off:]):
            res.dropped_at = off
            res.dropped_bytes = size - off - bytes(mv[off:]).count(0)
    if wal and res.records and res.dropped_at is None and is_seal(res.records[-1][1]):
        res.sealed_at = res.records.pop()[0]
    res.end = off
    return res
