"""Fuzzing the decoders (docs/reliability.md): the block decoder, the WAL reader
and batch decoder, the MANIFEST decoder and the SST reader, fed random bytes
and mutations of valid bytes, must raise only CorruptionError: never another
exception, a crash or a hang.

Mutations are blind (flip, overwrite, insert, delete, truncate, splice) or
structure-aware: the damage is put inside a record or block whose checksum is
then recomputed, so the decoder behind the checksum sees it (blind damage
mostly stops at the CRC). A watchdog (faulthandler) turns a hang into a
failure with a traceback. LSMKV_FUZZ_EXAMPLES scales the example counts.
"""
import atexit
import faulthandler
import os
import random
import shutil
import struct
import tempfile

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from lsmkv.core.coding import crc32c_py, decode_varint, encode_varint
from lsmkv.core.dbcore import decode_batch, replay_batch
from lsmkv.core.memtable import MemTable
from lsmkv.core.table import BlockBuilder, TableBuilder, TableIterator, TableReader, block_entries, make_tag_py
from lsmkv.core.wal import LogWriter
from lsmkv.errors import CorruptionError
from lsmkv.engine.logformat import frame, read_log
from lsmkv.engine.version import FileMeta, VersionEdit, VersionSet

EXAMPLES = int(os.environ.get("LSMKV_FUZZ_EXAMPLES", "1000"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.filter_too_much])
WATCHDOG_SECONDS = 120
TMP = tempfile.mkdtemp(prefix="lsmkv-fuzz-")
atexit.register(shutil.rmtree, TMP, True)


@pytest.fixture(autouse=True)
def watchdog():
    """A hang anywhere (even in compiled code holding the GIL) dumps every thread's
    stack and exits the process instead of blocking the suite."""
    faulthandler.dump_traceback_later(WATCHDOG_SECONDS, exit=True)
    yield
    faulthandler.cancel_dump_traceback_later()


def ikey(ukey, seq, kind):
    return ukey + make_tag_py(seq, kind).to_bytes(8, "little")


# ---------------------------------------------------------------- mutations

@st.composite
def mutate(draw, data, keep_size=False):
    """data with 1-6 blind mutations (keep_size: only those that keep its length)."""
    b = bytearray(data)
    ops = ["flip", "set", "copy"] if keep_size else \
        ["flip", "set", "copy", "insert", "delete", "truncate", "splice", "dup"]
    for _ in range(draw(st.integers(1, 6))):
        op = draw(st.sampled_from(ops))
        n = len(b)
        pos = draw(st.integers(0, max(0, n - 1)))
        if op == "flip" and n:
            b[pos] ^= draw(st.integers(1, 255))
        elif op == "set" and n:
            v = draw(st.sampled_from([0, 0xFF, 0x7F, 0x80, 1]))
            for i in range(pos, min(n, pos + draw(st.integers(1, 8)))):
                b[i] = v
        elif op == "insert":
            b[pos:pos] = draw(st.binary(min_size=1, max_size=16))
        elif op == "delete" and n:
            del b[pos:pos + draw(st.integers(1, 16))]
        elif op == "truncate":
            del b[pos:]
        elif op == "splice" and n:
            src = draw(st.integers(0, max(0, n - 1)))
            ln = draw(st.integers(1, 32))
            b[pos:pos + ln] = b[src:src + ln]
        elif op == "copy" and n:
            src = draw(st.integers(0, n - 1))
            ln = min(draw(st.integers(1, 32)), n - pos, n - src)
            b[pos:pos + ln] = b[src:src + ln]
        elif op == "dup" and n:
            b[pos:pos] = b[pos:pos + draw(st.integers(1, 64))]
    return bytes(b)


def only_corruption(fn, *args):
    """Run fn; CorruptionError is fine, any other exception fails the test."""
    try:
        return fn(*args)
    except CorruptionError:
        return None


# ---------------------------------------------------------------- blocks

def _blocks():
    rng = random.Random(1)
    out = [b"\x00\x00\x00\x00"]
    for restart in (1, 4, 16):
        bb = BlockBuilder(restart)
        keys = sorted({b"k%05d" % rng.randrange(10**5) for _ in range(rng.randint(1, 60))})
        for i, k in enumerate(keys):
            bb.py_add(ikey(k, 1000 - i, 1), rng.randbytes(rng.randint(0, 40)))
        out.append(bb.py_finish())
    return out


BLOCKS = _blocks()


def _decode_block(data):
    entries = block_entries(data)
    for k, v in entries:
        assert len(k) >= 8, "a key shorter than its tag was returned"
    return entries


@FUZZ
@given(st.binary(max_size=600))
def test_block_decoder_random_bytes(data):
    only_corruption(_decode_block, data)


@FUZZ
@given(st.sampled_from(BLOCKS).flatmap(mutate))
def test_block_decoder_mutated_blocks(data):
    only_corruption(_decode_block, data)


# ---------------------------------------------------------------- WAL

def _encode_batch(seq, ops):
    """A WAL payload (docs/format.md, "WAL payload: a write batch")."""
    out = bytearray(struct.pack("<QI", seq, len(ops)))
    for kind, k, v, exp in ops:
        out += bytes([kind]) + encode_varint(len(k)) + k
        if kind == 2:
            out += struct.pack("<Q", exp)
        if kind != 0:
            out += encode_varint(len(v)) + v
    return bytes(out)


def _wal_bytes():
    """A log file as the DB leaves it after a crash: 25 batches (puts, TTL puts,
    deletes) written through LogWriter, then the preallocated zero tail."""
    path = os.path.join(TMP, "000007.log")
    w = LogWriter(path, 7, 16384, True)
    rng = random.Random(2)
    seq = 1
    for i in range(25):
        ops = [(rng.choice([0, 1, 1, 2]), b"key%03d" % rng.randrange(500),
                rng.randbytes(rng.randint(0, 60)), rng.randrange(1, 1 << 40))
               for _ in range(rng.randint(1, 5))]
        w.append(_encode_batch(seq, ops))
        seq += len(ops)
    w.sync()
    w.abandon()
    with open(path, "rb") as fh:
        data = fh.read()
    os.unlink(path)
    return data


WAL = _wal_bytes()
PAYLOADS = [bytes(p) for _, p in read_log("x", WAL).records]


def _read_wal(data):
    res = read_log("000007.log", data)
    mem = MemTable()
    for off, payload in res.records:
        decode_batch(payload, "000007.log", off)
        replay_batch(mem, payload, "000007.log", off)
    assert res.end <= len(data)
    return res


@FUZZ
@given(st.binary(max_size=2000))
def test_wal_reader_random_bytes(data):
    only_corruption(_read_wal, data)


@FUZZ
@given(mutate(WAL))
def test_wal_reader_mutated_log(data):
    only_corruption(_read_wal, data)


@FUZZ
@given(st.sampled_from(PAYLOADS).flatmap(mutate), st.integers(0, 3))
def test_wal_batch_decoder_mutated_payload_with_valid_crc(payload, where):
    """The damage sits inside a record whose CRC is right: only the batch decoder can
    catch it (docs/format.md: 'Malformed records inside a record whose CRC is good are
    reported as CorruptionError')."""
    data = frame(PAYLOADS[0]) * where + frame(payload) + frame(PAYLOADS[1])
    only_corruption(_read_wal, data)


# ---------------------------------------------------------------- MANIFEST

def _edits():
    e0 = VersionEdit()
    e0.log_number, e0.next_file_number, e0.last_sequence = 5, 20, 1000
    for n in range(6, 12):
        e0.add_file(n % 3, FileMeta(n, 4096 + n, ikey(b"a%d" % n, 10, 1), ikey(b"z%d" % n, 1, 1),
                                    1, 10, 100, 3, 0 if n % 2 else 123456))
    e1 = VersionEdit()
    e1.log_number, e1.next_file_number, e1.last_sequence = 14, 22, 2000
    e1.delete_file(0, 6)
    e1.add_file(1, FileMeta(21, 9999, ikey(b"b", 5, 1), ikey(b"c", 4, 0), 4, 5, 2, 1, 0))
    return [e0.encode(marker=True), e1.encode()]


EDITS = _edits()


def _decode_edit(payload):
    VersionEdit.decode(payload, "MANIFEST-000003", 0)


def _recover(manifest_bytes, current=b"MANIFEST-000003\n"):
    d = tempfile.mkdtemp(dir=TMP)
    try:
        with open(os.path.join(d, "CURRENT"), "wb") as fh:
            fh.write(current)
        with open(os.path.join(d, "MANIFEST-000003"), "wb") as fh:
            fh.write(manifest_bytes)
        vs = VersionSet(d)
        v = vs.recover()
        v.files()
        return v
    finally:
        for n in os.listdir(d):
            os.unlink(os.path.join(d, n))
        os.rmdir(d)


@FUZZ
@given(st.binary(max_size=400))
def test_manifest_decoder_random_bytes(data):
    only_corruption(_decode_edit, data)


@FUZZ
@given(st.sampled_from(EDITS).flatmap(mutate))
def test_manifest_decoder_mutated_edits(payload):
    only_corruption(_decode_edit, payload)


@settings(FUZZ, max_examples=max(20, EXAMPLES // 3))
@given(st.sampled_from(EDITS).flatmap(mutate), st.booleans())
def test_manifest_recovery_with_mutated_edit_and_valid_crc(payload, first):
    """A whole recovery (CURRENT -> MANIFEST replay) of a log whose damaged record
    has a valid CRC."""
    recs = [payload, EDITS[1]] if first else [EDITS[0], payload]
    only_corruption(_recover, b"".join(frame(p) for p in recs))


@settings(FUZZ, max_examples=max(20, EXAMPLES // 3))
@given(mutate(b"".join(frame(p) for p in EDITS)), mutate(b"MANIFEST-000003\n"))
def test_manifest_recovery_blind_mutations(manifest, current):
    only_corruption(_recover, manifest, current)


# ---------------------------------------------------------------- SST

def _sst(compression, dict_bytes, n=1500):
    path = os.path.join(TMP, f"000{9 + dict_bytes % 7}.sst")
    tb = TableBuilder(path, 512, compression, -1, 10, 8, dict_bytes)
    rng = random.Random(4)
    for i in range(n):
        k = b"user:%06d" % i
        kind = 0 if i % 11 == 0 else (2 if i % 7 == 0 else 1)
        v = b"" if kind == 0 else (struct.pack("<Q", 10**12) if kind == 2 else b"") + \
            b'{"id": %d, "v": "%s"}' % (i, rng.randbytes(4).hex().encode())
        tb.py_add(ikey(k, n - i + 5, kind), v)
    tb.finish()
    with open(path, "rb") as fh:
        data = fh.read()
    os.unlink(path)
    return data


SSTS = [_sst("none", 0), _sst("zstd", 0), _sst("zstd", 1024, n=6000)]


def _regions(data):
    """(offset, size) of every block the footer and index name, plus the footer."""
    h = struct.unpack("<8Q", data[-80:-16])
    regions = [(h[0], h[1]), (h[2], h[3]), (h[4], h[5])] + ([(h[6], h[7])] if h[7] else [])
    for _, v in block_entries(data[h[0]:h[0] + h[1]]):
        off, pos = decode_varint(v)
        size, _ = decode_varint(v, pos)
        regions.append((off, size))
    return regions


def _read_sst(data):
    path = os.path.join(TMP, "000042.sst")
    with open(path, "wb") as fh:
        fh.write(data)
    for use_mmap in (True, False):
        t = TableReader(path, 42, None, use_mmap)
        try:
            t.verify()
            it = TableIterator(t)
            it.py_seek_to_last()
            while it.py_valid():
                it.py_entry()
                it.py_prev()
            for k in (b"user:000000", b"user:000700", b"user:999999", b""):
                t.py_get(k)
                t.py_may_contain(k)
                it.py_seek(ikey(k, 1 << 40, 0xFF))
        finally:
            t.close()


@settings(FUZZ, max_examples=max(20, EXAMPLES // 3))
@given(st.sampled_from(SSTS).flatmap(mutate))
def test_sst_reader_blind_mutations(data):
    only_corruption(_read_sst, data)


@st.composite
def sst_with_fixed_crc(draw):
    """An SST with damage inside one block (or the footer) whose checksum is
    recomputed, so the reader's decoders behind the checksum meet it."""
    data = bytearray(draw(st.sampled_from(SSTS)))
    regions = _regions(bytes(data))
    which = draw(st.integers(0, len(regions)))
    if which == len(regions):            # the footer: handles, version
        foot = len(data) - 80
        for _ in range(draw(st.integers(1, 3))):
            p = draw(st.integers(0, 67))
            if draw(st.booleans()):
                data[foot + p] ^= draw(st.integers(1, 255))
            else:            # a plausible-looking handle value
                q = draw(st.integers(0, 7)) * 8
                data[foot + q:foot + q + 8] = struct.pack("<Q", draw(st.sampled_from(
                    [0, 1, 5, 80, len(data) - 85, len(data), 2**32, 2**63, 2**64 - 1, 2**64 - 5])))
        data[foot + 68:foot + 72] = struct.pack("<I", crc32c_py(bytes(data[foot:foot + 68])))
        return bytes(data)
    off, size = regions[which]
    block = bytes(data[off:off + size + 1])          # contents + type byte
    body = draw(mutate(block[:-1], keep_size=draw(st.integers(0, 4)) > 0))
    btype = block[-1] if draw(st.integers(0, 9)) else draw(st.integers(0, 3))
    stored = body + bytes([btype])
    new = stored + struct.pack("<I", crc32c_py(stored))
    # same size: the layout holds; another size: the handles after it point at the
    # wrong bytes (also worth feeding)
    data[off:off + size + 5] = new
    return bytes(data)


@settings(FUZZ, max_examples=max(30, EXAMPLES // 2))
@given(sst_with_fixed_crc())
def test_sst_reader_damage_behind_valid_checksums(data):
    only_corruption(_read_sst, data)


def test_fuzz_corpus_is_valid():
    """The seeds decode cleanly (so mutations start from real formats)."""
    for b in BLOCKS:
        block_entries(b)
    assert len(_read_wal(WAL).records) == 25
    for p in EDITS:
        VersionEdit.decode(p, "m", 0)
    _recover(b"".join(frame(p) for p in EDITS))
    for s in SSTS:
        _read_sst(s)
    assert any(struct.unpack("<Q", s[-32:-24])[0] for s in SSTS), "one SST has a dictionary"
