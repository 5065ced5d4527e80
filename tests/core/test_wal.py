"""The mmap'd, preallocated write-ahead log writer (lsmkv.core.wal.LogWriter)."""
import os
import random

import pytest

from lsmkv.core.wal import LogWriter
from lsmkv.errors import CorruptionError
from lsmkv.engine.logformat import HEADER, PAGE, frame, read_log


def read(path):
    with open(path, "rb") as fh:
        return fh.read()


def payloads_of(res):
    return [bytes(p) for _, p in res.records]


def sample_payloads(n, seed):
    rng = random.Random(seed)
    return [rng.randbytes(rng.choice([0, 1, 5, 8, 100, 777, 4096, 5000])) for _ in range(n)]


def test_round_trip_many_records(tmp_path):
    path = tmp_path / "000007.log"
    payloads = sample_payloads(300, seed=1)
    w = LogWriter(path, 7, 1 << 16)
    assert w.path == str(path) and w.number == 7
    for p in payloads:
        w.append(p)
    w.sync()
    assert w.pos == sum(HEADER + len(p) for p in payloads)
    # the bytes on disk are exactly the framed records
    data = read(path)
    assert data[:w.pos] == b"".join(frame(p) for p in payloads)
    res = read_log(str(path), data)
    assert payloads_of(res) == payloads
    assert res.end == w.pos
    assert res.dropped_at is None and res.dropped_bytes == 0
    w.close()
    res = read_log(str(path), read(path))
    assert payloads_of(res) == payloads


def test_preallocation_and_zero_tail(tmp_path):
    path = tmp_path / "000001.log"
    w = LogWriter(path, 1, 10000)           # rounded up to whole pages
    assert w.capacity == 3 * PAGE
    assert os.path.getsize(path) == 3 * PAGE
    assert read(path) == bytes(3 * PAGE)
    w.append(b"one")
    w.append(b"two")
    data = read(path)                       # visible through the page cache before sync
    assert len(data) == 3 * PAGE
    assert not any(data[w.pos:])            # zeros after the last record
    res = read_log(str(path), data)
    assert payloads_of(res) == [b"one", b"two"]
    assert res.end == w.pos and res.dropped_at is None
    w.close()


def test_minimum_preallocation_is_one_page(tmp_path):
    w = LogWriter(tmp_path / "000002.log", 2, 0)
    assert w.capacity == PAGE
    w.append(b"x")
    w.close()
    assert payloads_of(read_log("p", read(tmp_path / "000002.log"))) == [b"x"]


def test_grows_past_preallocation(tmp_path):
    path = tmp_path / "000003.log"
    w = LogWriter(path, 3, PAGE)
    payloads = sample_payloads(200, seed=2)
    caps = {w.capacity}
    for p in payloads:
        w.append(p)
        caps.add(w.capacity)
        assert w.pos <= w.capacity
    assert len(caps) > 1 and w.capacity > PAGE
    # a single record much larger than twice the capacity
    huge = random.Random(3).randbytes(4 * w.capacity + 123)
    w.append(huge)
    payloads.append(huge)
    assert w.capacity >= w.pos and w.capacity % PAGE == 0
    w.append(b"after huge")
    payloads.append(b"after huge")
    data = read(path)
    assert len(data) == w.capacity
    assert not any(data[w.pos:])
    res = read_log(str(path), data)
    assert payloads_of(res) == payloads
    w.close()
    assert payloads_of(read_log(str(path), read(path))) == payloads


def mapping_rss(path):
    """Resident bytes of this process's mappings of `path` (/proc/self/smaps)."""
    total, ours = 0, False
    with open("/proc/self/smaps") as fh:
        for line in fh:
            first = line.split()[0]
            if "-" in first and not first.endswith(":"):
                ours = line.rstrip().endswith(str(path))
            elif ours and first == "Rss:":
                total += int(line.split()[1]) * 1024
    return total


def test_footprint_grows_with_the_data_not_the_reserve(tmp_path):
    """A log reserved for 64 MiB costs its first step until written; then disk and
    resident pages stay within a step or two of the data, however much is written,
    and every record reads back, including across the remap past the reserve and
    a sync that starts in pages already given back."""
    path = tmp_path / "000020.log"
    step = 256 * 1024
    w = LogWriter(path, 20, 16 * 1024, reserve=64 << 20, max_step=step)
    assert w.capacity == 16 * 1024 and os.path.getsize(path) == 16 * 1024
    assert os.stat(path).st_blocks * 512 <= 64 * 1024
    assert w.mapped_bytes == 16 * 1024 and mapping_rss(path) <= 16 * 1024
    rng = random.Random(20)
    payloads = []
    while w.pos < 3 * (1 << 20):
        payloads.append(rng.randbytes(rng.choice([10, 130, 1000, 4000])))
        w.append(payloads[-1])
        assert w.capacity - w.pos <= step + 4096
        assert w.mapped_bytes <= 2 * step + 4096
    assert mapping_rss(path) <= 2 * step + 4096, mapping_rss(path)
    w.sync()                                  # msync of a range whose start was given back
    data = read(path)
    assert len(data) == w.capacity and not any(data[w.pos:])
    assert payloads_of(read_log(str(path), data)) == payloads
    # past the reserve: the mapping moves, nothing written is lost
    w2 = LogWriter(tmp_path / "000021.log", 21, 4096, reserve=8192, max_step=8192)
    more = [rng.randbytes(3000) for _ in range(40)]
    for p in more:
        w2.append(p)
    w2.close()
    assert payloads_of(read_log("p", read(tmp_path / "000021.log"))) == more
    w.close()
    assert os.path.getsize(path) == w.pos
    assert payloads_of(read_log(str(path), read(path))) == payloads


def test_close_truncates_to_written_size(tmp_path):
    path = tmp_path / "000004.log"
    w = LogWriter(path, 4, 1 << 16)
    w.append(b"a" * 10)
    w.append(b"b" * 20)
    pos = w.pos
    assert pos == 2 * HEADER + 30
    w.close()
    assert os.path.getsize(path) == pos
    w.close()                               # second close is a no-op
    assert payloads_of(read_log(str(path), read(path))) == [b"a" * 10, b"b" * 20]


def test_close_without_truncate_keeps_preallocation(tmp_path):
    path = tmp_path / "000005.log"
    w = LogWriter(path, 5, 2 * PAGE)
    w.append(b"keep")
    w.close(truncate=False)
    assert os.path.getsize(path) == 2 * PAGE
    res = read_log(str(path), read(path))
    assert payloads_of(res) == [b"keep"] and res.dropped_at is None


def test_append_after_close_raises(tmp_path):
    w = LogWriter(tmp_path / "000006.log", 6, PAGE)
    w.close()
    with pytest.raises(ValueError):
        w.append(b"late")


def test_refuses_to_overwrite_existing_file(tmp_path):
    path = tmp_path / "000008.log"
    path.write_bytes(b"precious")
    with pytest.raises(FileExistsError):
        LogWriter(path, 8, PAGE)
    # the existing file is left exactly as it was (not truncated, not unlinked)
    assert path.read_bytes() == b"precious"
    # also refuses over a log written by a previous writer
    path2 = tmp_path / "000009.log"
    w = LogWriter(path2, 9, PAGE)
    w.append(b"data")
    w.close()
    before = read(path2)
    with pytest.raises(FileExistsError):
        LogWriter(path2, 9, PAGE)
    assert read(path2) == before


def test_abandon_keeps_unsynced_records_in_page_cache(tmp_path):
    """abandon() is a simulated process kill: MAP_SHARED writes survive it."""
    path = tmp_path / "000010.log"
    w = LogWriter(path, 10, PAGE)
    payloads = sample_payloads(20, seed=4)
    for p in payloads:
        w.append(p)
    pos, cap = w.pos, w.capacity
    w.abandon()
    w.abandon()
    data = read(path)
    assert len(data) == cap
    res = read_log(str(path), data)
    assert payloads_of(res) == payloads
    assert res.end == pos
    with pytest.raises(ValueError):
        w.append(b"x")


def test_torn_tail_of_written_log_is_dropped(tmp_path):
    path = tmp_path / "000011.log"
    w = LogWriter(path, 11, PAGE)
    payloads = [b"r%d" % i * 30 for i in range(10)]
    offsets = []
    for p in payloads:
        offsets.append(w.pos)
        w.append(p)
    w.close()
    data = read(path)
    cut = offsets[-1] + HEADER + 5
    with open(path, "r+b") as fh:
        fh.truncate(cut)
    res = read_log(str(path), read(path))
    assert payloads_of(res) == payloads[:-1]
    assert res.dropped_at == offsets[-1]
    # a flipped byte in a middle record of the same log is corruption
    bad = bytearray(data)
    bad[offsets[4] + HEADER + 1] ^= 0xFF
    with pytest.raises(CorruptionError) as ei:
        read_log(str(path), bytes(bad))
    assert ei.value.offset == offsets[4] and ei.value.path == str(path)


def test_sync_is_idempotent_and_records_stay_readable(tmp_path):
    path = tmp_path / "000012.log"
    w = LogWriter(path, 12, PAGE)
    w.sync()                                # nothing written yet
    for i in range(50):
        w.append(b"%d" % i * 100)
        if i % 7 == 0:
            w.sync()
            w.sync()
    w.sync()
    res = read_log(str(path), read(path))
    assert payloads_of(res) == [b"%d" % i * 100 for i in range(50)]
    w.close()


def test_append_accepts_bytes_like(tmp_path):
    path = tmp_path / "000013.log"
    w = LogWriter(path, 13, PAGE)
    w.append(bytearray(b"ba"))
    w.append(memoryview(b"mv"))
    w.append(b"")
    w.close()
    assert payloads_of(read_log(str(path), read(path))) == [b"ba", b"mv", b""]


@pytest.mark.parametrize("use_mmap", [True, False])
def test_close_without_sync_keeps_records_readable(tmp_path, use_mmap):
    """close(sync=False) (a log already flushed to an SST) unmaps and closes only;
    what was written stays in the page cache and reads back."""
    path = tmp_path / "000014.log"
    w = LogWriter(path, 14, PAGE, use_mmap, sync_dir=tmp_path)
    w.append(b"one")
    w.append(b"two")
    w.close(sync=False)
    w.close(sync=False)                     # a second close is a no-op
    assert payloads_of(read_log(str(path), read(path))) == [b"one", b"two"]
    with pytest.raises(ValueError):
        w.append(b"late")


@pytest.mark.parametrize("use_mmap", [True, False])
def test_failed_directory_sync_removes_the_new_log(tmp_path, use_mmap):
    path = tmp_path / "000015.log"
    with pytest.raises(FileNotFoundError) as e:
        LogWriter(path, 15, PAGE, use_mmap, sync_dir=tmp_path / "missing")
    assert "000015.log" in str(e.value) and "directory" in str(e.value)
    assert not path.exists()


def test_decode_batch_reads_back_what_the_db_logged(tmp_path, clock):
    """decode_batch (the tools' view of a WAL record) and recovery share one
    decoder; it returns the ops in record order."""
    import lsmkv
    from lsmkv import testing
    from lsmkv.core.dbcore import decode_batch
    path = str(tmp_path / "db")
    with lsmkv.DB(path, clock=clock) as db:
        with db.write_batch() as wb:
            wb.put(b"b", b"2")
            wb.delete(b"a")
            wb.put(b"c", b"", ttl=5)
        db.put(b"d", b"4")
        log = testing.wal(db).path
        data = read(log)
    res = read_log(log, data)
    decoded = [decode_batch(p, log, off) for off, p in res.records]
    first, ops = decoded[0]
    assert ops == [(1, b"b", b"2", 0), (0, b"a", b"", 0),
                   (2, b"c", b"", int((clock() + 5) * 1000))]
    assert decoded[1] == (first + 3, [(1, b"d", b"4", 0)])
    payload = bytes(res.records[0][1])
    for bad in (payload[:5], payload[:-1], payload + b"\x00", payload[:12] + b"\x07" + payload[13:]):
        with pytest.raises(CorruptionError) as e:
            decode_batch(bad, log, 123)
        assert e.value.offset == 123
