"""Checksums, hashes and varints (lsmkv.core.coding)."""
import random

import mmh3
import pytest
from hypothesis import given, settings, strategies as st

from lsmkv.core.coding import crc32c_py, decode_varint, encode_varint, murmur3_py


# ------------------------------------------------------------------ crc32c

def crc32c_reference(data, crc=0):
    """Bit-at-a-time CRC-32C (Castagnoli, reflected polynomial 0x82F63B78)."""
    crc ^= 0xFFFFFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
    return crc ^ 0xFFFFFFFF


def test_crc32c_known_vectors():
    assert crc32c_py(b"123456789") == 0xE3069283
    assert crc32c_py(b"") == 0
    # RFC 3720 (iSCSI) appendix B.4 test vectors
    assert crc32c_py(bytes(32)) == 0x8A9136AA
    assert crc32c_py(b"\xff" * 32) == 0x62A8AB43
    assert crc32c_py(bytes(range(32))) == 0x46DD794E
    assert crc32c_py(bytes(range(31, -1, -1))) == 0x113FDB5C


def test_crc32c_reference_self_check():
    # the reference itself must agree with the published check value
    assert crc32c_reference(b"123456789") == 0xE3069283


def test_crc32c_accepts_bytes_like():
    data = b"hello, world"
    assert crc32c_py(bytearray(data)) == crc32c_py(data)
    assert crc32c_py(memoryview(data)) == crc32c_py(data)


@pytest.mark.parametrize("n", list(range(0, 21)) + [63, 64, 65, 255, 256, 1000, 4096, 4099, 65537])
def test_crc32c_matches_bitwise_reference(n):
    rng = random.Random(n)
    for _ in range(3 if n < 5000 else 1):
        data = rng.randbytes(n)
        assert crc32c_py(data) == crc32c_reference(data), n


@pytest.mark.parametrize("n", [0, 1, 7, 8, 9, 15, 16, 17, 100, 1027])
def test_crc32c_unaligned_views(n):
    """Slicing-by-8 must not depend on the buffer's alignment."""
    rng = random.Random(1000 + n)
    buf = rng.randbytes(n + 8)
    mv = memoryview(buf)
    for start in range(8):
        piece = mv[start:start + n]
        assert crc32c_py(piece) == crc32c_reference(bytes(piece))


def test_crc32c_incremental_extension():
    rng = random.Random(7)
    data = rng.randbytes(3001)
    whole = crc32c_py(data)
    for cut in (0, 1, 5, 8, 13, 1500, 3000, 3001):
        assert crc32c_py(data[cut:], crc32c_py(data[:cut])) == whole
    assert crc32c_py(b"", whole) == whole


def test_crc32c_detects_every_single_byte_flip():
    data = bytes(random.Random(3).randbytes(200))
    good = crc32c_py(data)
    for i in range(len(data)):
        bad = bytearray(data)
        bad[i] ^= 0x01
        assert crc32c_py(bad) != good


# ------------------------------------------------------------------ murmur3

@pytest.mark.parametrize("seed", [0, 1, 0xBC9F1D34, 0xFFFFFFFF])
def test_murmur3_matches_mmh3(seed):
    rng = random.Random(seed)
    for n in range(0, 101):
        for _ in range(3):
            data = rng.randbytes(n)
            h1, h2 = murmur3_py(data, seed)
            e1, e2 = mmh3.hash64(data, seed, signed=False)
            assert h1 == e1, (n, seed)
            assert h2 == e2, (n, seed)


def test_murmur3_known_values():
    # mmh3 is the reference; also pin a couple of values so a broken mmh3 cannot hide a change
    assert murmur3_py(b"", 0) == (0, 0)
    assert murmur3_py(b"hello", 0) == mmh3.hash64(b"hello", 0, signed=False)
    assert murmur3_py(b"hello", 0)[0] == 0xCBD8A7B341BD9B02


def test_murmur3_large_input_and_default_seed():
    data = random.Random(99).randbytes(10_000 + 13)
    assert murmur3_py(data) == mmh3.hash64(data, 0, signed=False)
    assert murmur3_py(data, 12345) == mmh3.hash64(data, 12345, signed=False)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300), st.integers(0, 2**32 - 1))
def test_murmur3_property(data, seed):
    assert murmur3_py(data, seed) == mmh3.hash64(data, seed, signed=False)


# ------------------------------------------------------------------ varints

EDGE_VALUES = [0, 1, 127, 128, 255, 256, 16383, 16384, 2**21 - 1, 2**21, 2**32 - 1, 2**32,
               2**35, 2**56 - 1, 2**56, 2**63 - 1, 2**63, 2**64 - 2, 2**64 - 1]


@pytest.mark.parametrize("v", EDGE_VALUES)
def test_varint_round_trip_edges(v):
    enc = encode_varint(v)
    assert len(enc) == max(1, (v.bit_length() + 6) // 7)
    assert all(b & 0x80 for b in enc[:-1]) and not enc[-1] & 0x80
    assert decode_varint(enc) == (v, len(enc))
    # trailing data is left alone
    assert decode_varint(enc + b"\x05\x06") == (v, len(enc))
    # decoding at an offset
    assert decode_varint(b"\x01\x02" + enc, 2) == (v, 2 + len(enc))


def test_varint_exact_encodings():
    assert encode_varint(0) == b"\x00"
    assert encode_varint(127) == b"\x7f"
    assert encode_varint(128) == b"\x80\x01"
    assert encode_varint(300) == b"\xac\x02"
    assert encode_varint(2**63) == b"\x80" * 9 + b"\x01"
    assert encode_varint(2**64 - 1) == b"\xff" * 9 + b"\x01"


def test_varint_encode_out_of_range():
    with pytest.raises(OverflowError):
        encode_varint(2**64)
    with pytest.raises(OverflowError):
        encode_varint(-1)


@pytest.mark.parametrize("data,pos", [
    (b"", 0),                       # empty
    (b"\x80", 0),                   # continuation with nothing after
    (b"\xff\xff", 0),
    (b"\x80" * 9, 0),               # 9 continuation bytes, truncated
    (b"\x80" * 10 + b"\x01", 0),    # 11 bytes: longer than any 64-bit varint
    (b"\xff" * 20, 0),
    (b"\x01\x02", 2),               # position at end
    (b"\x01\x02", 5),               # position past end
    (b"\x05\x80", 1),               # truncated after an offset
])
def test_varint_malformed_or_truncated_raises(data, pos):
    with pytest.raises(ValueError):
        decode_varint(data, pos)


@pytest.mark.parametrize("v", [128, 300, 2**40, 2**64 - 1])
def test_varint_every_truncation_raises(v):
    enc = encode_varint(v)
    for cut in range(len(enc)):
        with pytest.raises(ValueError):
            decode_varint(enc[:cut])


@pytest.mark.parametrize("data", [b"\xff" * 9 + b"\x7f", b"\x80" * 9 + b"\x02"])
def test_varint_overflowing_tenth_byte_raises(data):
    with pytest.raises(ValueError):
        decode_varint(data)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(0, 2**64 - 1), max_size=20))
def test_varint_sequence_round_trip(values):
    blob = b"".join(encode_varint(v) for v in values)
    pos = 0
    out = []
    while pos < len(blob):
        v, pos = decode_varint(blob, pos)
        out.append(v)
    assert out == values
    assert pos == len(blob)


def test_hardware_and_software_crc32c_agree():
    from lsmkv.core.coding import crc32c_software, has_hardware_crc
    rng = random.Random(99)
    for n in list(range(0, 40)) + [4095, 4096, 100_000]:
        data = rng.randbytes(n)
        for seed in (0, 0xDEADBEEF):
            assert crc32c_py(data, seed) == crc32c_software(data, seed), (n, seed)
    assert crc32c_software(b"123456789") == 0xE3069283
    print("hardware crc32c:", has_hardware_crc())
