"""Record framing and the log reader's torn-tail vs corruption rule (lsmkv.engine.logformat)."""
import random
import struct

import pytest
from hypothesis import given, settings, strategies as st

from lsmkv.core.coding import crc32c_py
from lsmkv.errors import CorruptionError, LsmkvError
from lsmkv.engine.logformat import HEADER, PAGE, frame, read_log

PATH = "/db/000007.log"


def build(payloads):
    """(bytes, offsets) of the framed payloads laid end to end."""
    out = bytearray()
    offsets = []
    for p in payloads:
        offsets.append(len(out))
        out += frame(p)
    return bytes(out), offsets


def payloads_of(res):
    return [bytes(p) for _, p in res.records]


def sample_payloads(n=50, seed=0):
    rng = random.Random(seed)
    return [rng.randbytes(rng.choice([0, 1, 7, 8, 9, 50, 300, 1000, 5000])) for _ in range(n)]


# ------------------------------------------------------------------ framing

def test_frame_layout():
    payload = b"hello"
    rec = frame(payload)
    assert len(rec) == HEADER + len(payload)
    crc, n = struct.unpack_from("<II", rec)
    assert n == 5
    assert crc == crc32c_py(struct.pack("<I", 5) + payload)
    assert rec[HEADER:] == payload
    # the empty payload still has a non-zero header (never mistaken for the end)
    assert frame(b"")[:8] != bytes(8)


def test_round_trip_many_records():
    payloads = sample_payloads(200)
    data, offsets = build(payloads)
    res = read_log(PATH, data)
    assert payloads_of(res) == payloads
    assert [off for off, _ in res.records] == offsets
    assert res.end == len(data)
    assert res.dropped_at is None and res.dropped_bytes == 0


def test_empty_and_all_zero_logs():
    for data in (b"", bytes(3), bytes(8), bytes(PAGE * 3)):
        res = read_log(PATH, data)
        assert res.records == [] and res.end == 0
        assert res.dropped_at is None and res.dropped_bytes == 0


def test_zero_tail_ends_the_log():
    payloads = sample_payloads(30, seed=1)
    data, _ = build(payloads)
    for pad in (1, 7, 8, 9, PAGE, 3 * PAGE + 5):
        res = read_log(PATH, data + bytes(pad))
        assert payloads_of(res) == payloads
        assert res.end == len(data)
        assert res.dropped_at is None and res.dropped_bytes == 0


def test_read_log_accepts_memoryview_and_bytearray():
    payloads = sample_payloads(10, seed=2)
    data, _ = build(payloads)
    for view in (memoryview(data), bytearray(data + bytes(100))):
        assert payloads_of(read_log(PATH, view)) == payloads


# ------------------------------------------------------------------ torn tails

@pytest.mark.parametrize("cut", [1, 4, 7, 8, 9, 50, -1])
def test_truncated_last_record_is_torn_tail(cut):
    payloads = [b"a" * 100, b"b" * 200, bytes(range(256)) * 2]
    data, offsets = build(payloads)
    last = offsets[-1]
    cut_at = last + cut if cut > 0 else len(data) + cut
    torn = data[:cut_at]
    res = read_log(PATH, torn)
    assert payloads_of(res) == payloads[:-1]
    assert res.end == last
    assert res.dropped_at == last
    tail = torn[last:]
    assert 0 < res.dropped_bytes <= len(tail)
    if len(tail) >= HEADER:
        assert res.dropped_bytes == len(tail) - tail.count(0)


def test_dropped_bytes_counts_nonzero_bytes_of_short_tail():
    data, _ = build([b"a" * 10])
    res = read_log(PATH, data + b"\x05\x00\x00\x00")
    assert res.dropped_at == len(data)
    assert res.dropped_bytes == 1


def test_truncated_record_followed_by_zero_fill_is_torn_tail():
    """A torn record whose length runs into zeroed preallocated space."""
    payloads = [b"x" * 50, b"y" * 300]
    data, offsets = build(payloads)
    torn = data[:offsets[1] + 100] + bytes(PAGE)
    res = read_log(PATH, torn)
    assert payloads_of(res) == payloads[:1]
    assert res.dropped_at == offsets[1]
    assert res.end == offsets[1]


def test_garbage_header_at_end_is_torn_tail():
    payloads = sample_payloads(20, seed=3)
    data, _ = build(payloads)
    rng = random.Random(4)
    for n in (1, 3, 8, 12, 100):
        garbage = rng.randbytes(n)
        if not any(garbage):
            continue
        res = read_log(PATH, data + garbage + bytes(64))
        assert payloads_of(res) == payloads
        assert res.dropped_at == len(data)
        assert res.end == len(data)
        assert res.dropped_bytes == n - garbage.count(0)


def test_header_with_zero_crc_is_torn_tail():
    """The writer stores the length before the CRC: a kill in between leaves a
    header with a length but a zero CRC, which must be dropped as a torn tail."""
    payloads = [b"first", b"second"]
    data, offsets = build(payloads)
    bad = bytearray(data)
    bad[offsets[1]:offsets[1] + 4] = bytes(4)
    res = read_log(PATH, bytes(bad) + bytes(32))
    assert payloads_of(res) == [b"first"]
    assert res.dropped_at == offsets[1]
    assert res.dropped_bytes > 0


def test_all_zero_header_ends_log_even_with_payload_bytes_after():
    """Documented rule: an all-zero header ends the log (the writer writes the
    payload first, so a record killed before its header is all-zero there)."""
    payloads = [b"first", b"second"]
    data, offsets = build(payloads)
    bad = bytearray(data)
    bad[offsets[1]:offsets[1] + HEADER] = bytes(HEADER)
    res = read_log(PATH, bytes(bad))
    assert payloads_of(res) == [b"first"]
    assert res.end == offsets[1]


def test_bad_crc_on_last_record_is_torn_tail():
    payloads = sample_payloads(5, seed=5) + [b"last record payload"]
    data, offsets = build(payloads)
    bad = bytearray(data + bytes(100))
    bad[offsets[-1] + HEADER + 3] ^= 0x40
    res = read_log(PATH, bytes(bad))
    assert payloads_of(res) == payloads[:-1]
    assert res.dropped_at == offsets[-1]


# ------------------------------------------------------------------ damage in the middle

@pytest.mark.parametrize("where", ["crc0", "crc3", "payload_first", "payload_mid", "payload_last"])
@pytest.mark.parametrize("victim", [0, 3, 8])
def test_flipped_byte_in_middle_record_raises(where, victim):
    payloads = [b"p%d-" % i + bytes([i]) * (40 + 10 * i) for i in range(10)]
    data, offsets = build(payloads)
    off = offsets[victim]
    n = len(payloads[victim])
    pos = {"crc0": off, "crc3": off + 3, "payload_first": off + HEADER,
           "payload_mid": off + HEADER + n // 2, "payload_last": off + HEADER + n - 1}[where]
    bad = bytearray(data + bytes(50))
    bad[pos] ^= 0x10
    with pytest.raises(CorruptionError) as ei:
        read_log(PATH, bytes(bad))
    assert ei.value.path == PATH
    assert ei.value.offset == off
    assert isinstance(ei.value, LsmkvError)


@pytest.mark.parametrize("byte", [4, 5, 6, 7])
def test_flipped_length_byte_in_middle_record_raises(byte):
    payloads = [b"x" * 10, b"y" * 100, b"z" * 20, b"w" * 30]
    data, offsets = build(payloads)
    bad = bytearray(data + bytes(100))
    bad[offsets[1] + byte] ^= 0x01
    with pytest.raises(CorruptionError) as ei:
        read_log(PATH, bytes(bad))
    assert ei.value.offset == offsets[1]


def test_lost_zero_page_inside_record_followed_by_valid_is_torn_tail():
    """A record containing a whole (page-aligned) zero page, followed by a valid
    record: a lost page at power failure, so a torn tail, not corruption."""
    first = b"a" * 100
    big = bytes(random.Random(6).randbytes(3 * PAGE))
    after = [b"after-1", b"after-2"]
    data, offsets = build([first, big] + after)
    start = offsets[1]
    page = (start + HEADER + PAGE - 1) // PAGE * PAGE   # first whole page inside the payload
    assert page + PAGE <= offsets[2]
    bad = bytearray(data)
    bad[page:page + PAGE] = bytes(PAGE)
    res = read_log(PATH, bytes(bad))
    assert payloads_of(res) == [first]
    assert res.dropped_at == start
    assert res.end == start
    assert res.dropped_bytes > 0


def test_partial_zero_run_inside_record_is_still_corruption():
    """Zeros that do not cover a whole aligned page are not a lost page."""
    first = b"a" * 100
    big = bytes(random.Random(7).randbytes(3 * PAGE))
    data, offsets = build([first, big, b"after"])
    start = offsets[1]
    page = (start + HEADER + PAGE - 1) // PAGE * PAGE
    bad = bytearray(data)
    bad[page + 1:page + PAGE + 1] = bytes(PAGE)       # PAGE zero bytes, but not aligned
    bad[page] = 0xAA
    bad[page + PAGE] = 0xAA
    with pytest.raises(CorruptionError) as ei:
        read_log(PATH, bytes(bad))
    assert ei.value.offset == start


@settings(max_examples=60, deadline=None)
@given(st.lists(st.binary(max_size=200), min_size=1, max_size=30), st.data())
def test_truncation_anywhere_never_raises_and_keeps_a_prefix(payloads, data):
    blob, offsets = build(payloads)
    cut = data.draw(st.integers(0, len(blob)))
    res = read_log(PATH, blob[:cut])
    whole = [i for i, off in enumerate(offsets) if off + HEADER + len(payloads[i]) <= cut]
    assert payloads_of(res) == payloads[:len(whole)]
    assert res.end == (offsets[len(whole)] if len(whole) < len(offsets) else len(blob))
    if res.end < cut and any(blob[res.end:cut]):
        assert res.dropped_at == res.end
    else:
        assert res.dropped_at is None
