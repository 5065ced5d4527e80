"""Version edits, versions and the MANIFEST (lsmkv.engine.version)."""
import os
import random

import pytest
from hypothesis import given, settings, strategies as st

from lsmkv.engine import filenames
from lsmkv.core.coding import encode_varint
from lsmkv.errors import CorruptionError
from lsmkv.engine.logformat import HEADER, frame, read_log
from lsmkv.engine.version import NUM_LEVELS, FileMeta, Version, VersionEdit, VersionSet

PUT = 1
PATH = "/db/MANIFEST-000009"


def ikey(ukey, seq, kind=PUT):
    return ukey + ((seq << 8) | kind).to_bytes(8, "little")


def meta(number, lo, hi, sseq=1, lseq=10, **kw):
    return FileMeta(number, kw.pop("file_size", 1000 + number), ikey(lo, lseq), ikey(hi, sseq),
                    sseq, lseq, kw.pop("num_entries", 7), kw.pop("num_deletions", 2),
                    kw.pop("min_expiry", 0))


def fm_tuple(f):
    return tuple(getattr(f, s) for s in FileMeta.__slots__)


def edit_tuple(e):
    return (e.log_number, e.next_file_number, e.last_sequence, list(e.deleted),
            [(lvl, fm_tuple(f)) for lvl, f in e.added])


def version_tuple(v):
    return [[fm_tuple(f) for f in files] for files in v.levels]


# ------------------------------------------------------------------ VersionEdit encoding

def test_edit_round_trip_all_fields():
    e = VersionEdit()
    e.log_number = 12
    e.next_file_number = 2**40
    e.last_sequence = 2**56 - 1
    e.delete_file(0, 3)
    e.delete_file(6, 2**33)
    e.add_file(0, meta(20, b"a", b"m", min_expiry=1234567890123))
    e.add_file(3, meta(21, b"", b"\xff" * 300, sseq=0, lseq=2**50))
    blob = e.encode()
    d = VersionEdit.decode(blob, PATH, 0)
    assert edit_tuple(d) == edit_tuple(e)
    assert d.marker is False
    m = VersionEdit.decode(e.encode(marker=True), PATH, 0)
    assert m.marker is True and edit_tuple(m) == edit_tuple(e)
    # decode accepts a memoryview (read_log hands out memoryviews)
    assert edit_tuple(VersionEdit.decode(memoryview(blob), PATH, 0)) == edit_tuple(e)


def test_empty_edit_round_trip():
    e = VersionEdit()
    assert e.encode() == b""
    d = VersionEdit.decode(b"", PATH, 0)
    assert edit_tuple(d) == (None, None, None, [], [])


def test_edit_field_layout():
    e = VersionEdit()
    e.log_number = 5
    e.delete_file(2, 300)
    assert e.encode() == b"\x01\x05" + b"\x04\x02" + encode_varint(300)
    assert e.encode(marker=True).startswith(b"\x06\x10lsmkv-manifest-1")


keys = st.binary(min_size=0, max_size=20)
metas = st.builds(lambda n, size, lo, hi, s, l, ne, nd, me: FileMeta(n, size, ikey(lo, l), ikey(hi, s), s, l, ne, nd, me),
                  st.integers(0, 2**64 - 1), st.integers(0, 2**40), keys, keys,
                  st.integers(0, 2**56 - 1), st.integers(0, 2**56 - 1), st.integers(0, 2**32),
                  st.integers(0, 2**32), st.integers(0, 2**63 - 1))


@settings(max_examples=100, deadline=None)
@given(st.one_of(st.none(), st.integers(0, 2**64 - 1)), st.one_of(st.none(), st.integers(0, 2**64 - 1)),
       st.one_of(st.none(), st.integers(0, 2**56 - 1)),
       st.lists(st.tuples(st.integers(0, NUM_LEVELS - 1), st.integers(0, 2**64 - 1)), max_size=5),
       st.lists(st.tuples(st.integers(0, NUM_LEVELS - 1), metas), max_size=5), st.booleans())
def test_edit_round_trip_property(log, nxt, seq, deleted, added, marker):
    e = VersionEdit()
    e.log_number, e.next_file_number, e.last_sequence = log, nxt, seq
    for lvl, n in deleted:
        e.delete_file(lvl, n)
    for lvl, f in added:
        e.add_file(lvl, f)
    d = VersionEdit.decode(e.encode(marker=marker), PATH, 0)
    assert edit_tuple(d) == edit_tuple(e)
    assert d.marker == marker


@pytest.mark.parametrize("blob", [
    b"\xff",                                        # truncated varint tag
    b"\x63\x01",                                    # unknown field tag 99
    b"\x00",                                        # field tag 0
    b"\x01",                                        # log_number without its value
    b"\x01\x80",                                    # truncated value
    b"\x04\x07\x01",                                # deleted file at level 7
    b"\x04\x01",                                    # deleted file without its number
    b"\x05\x09" + b"\x01" * 8 + b"\x00\x00",        # new file at level 9
    b"\x05\x01" + b"\x01" * 8 + b"\x20abc",         # smallest key runs past the record
    b"\x05\x01" + b"\x01" * 8 + b"\x03abc\x03abc",  # keys shorter than their tag
    b"\x06\x05hello",                               # wrong marker
    b"\x06\x50lsmkv-manifest-1",                    # marker length past the end
])
def test_decode_garbage_raises(blob):
    with pytest.raises(CorruptionError) as ei:
        VersionEdit.decode(blob, PATH, 77)
    assert ei.value.path == PATH and ei.value.offset == 77


def test_decode_random_garbage_only_raises_corruption():
    rng = random.Random(5)
    good = VersionEdit()
    good.log_number = 3
    good.add_file(1, meta(9, b"aa", b"zz"))
    blob = good.encode()
    for _ in range(2000):
        b = bytearray(blob if rng.random() < 0.7 else rng.randbytes(rng.randint(1, 60)))
        for _ in range(rng.randint(1, 3)):
            b[rng.randrange(len(b))] = rng.randrange(256)
        if rng.random() < 0.3:
            b = b[:rng.randrange(len(b))]
        try:
            VersionEdit.decode(bytes(b), PATH, 0)
        except CorruptionError as e:
            assert e.path == PATH
    # every strict prefix of a good record is detected, except on a field boundary
    boundaries = {0, 2}
    for cut in range(1, len(blob)):
        if cut in boundaries:
            continue
        with pytest.raises(CorruptionError):
            VersionEdit.decode(blob[:cut], PATH, 0)


# ------------------------------------------------------------------ Version.apply

def test_apply_adds_removes_and_orders():
    v0 = Version()
    e = VersionEdit()
    e.add_file(0, meta(5, b"a", b"z", lseq=50))
    e.add_file(0, meta(6, b"c", b"d", lseq=70))
    e.add_file(0, meta(4, b"b", b"y", lseq=70))
    e.add_file(0, meta(7, b"a", b"b", lseq=10))
    e.add_file(1, meta(10, b"m", b"p"))
    e.add_file(1, meta(11, b"a", b"c"))
    e.add_file(1, meta(12, b"x", b"z"))
    e.add_file(1, meta(13, b"d", b"l"))
    e.add_file(3, meta(14, b"q", b"r"))
    v1 = v0.apply(e)
    assert v0.levels == [[] for _ in range(NUM_LEVELS)]      # versions are immutable
    # L0 newest first: by largest_seq, then by number, descending
    assert [f.number for f in v1.levels[0]] == [6, 4, 5, 7]
    # L1+ sorted by smallest key
    assert [f.number for f in v1.levels[1]] == [11, 13, 10, 12]
    assert [f.number for f in v1.levels[3]] == [14]
    assert v1.numbers() == {4, 5, 6, 7, 10, 11, 12, 13, 14}
    assert sorted(n for _, f in v1.files() for n in [f.number]) == sorted(v1.numbers())
    assert v1.check()

    e2 = VersionEdit()
    e2.delete_file(0, 6)
    e2.delete_file(1, 13)
    e2.delete_file(3, 14)
    e2.delete_file(2, 10)            # wrong level: nothing removed
    e2.add_file(1, meta(15, b"e", b"k"))
    e2.add_file(0, meta(16, b"a", b"a", lseq=5))
    v2 = v1.apply(e2)
    assert [f.number for f in v2.levels[0]] == [4, 5, 7, 16]
    assert [f.number for f in v2.levels[1]] == [11, 15, 10, 12]
    assert v2.levels[3] == []
    assert [f.number for f in v1.levels[1]] == [11, 13, 10, 12]   # v1 untouched
    assert v2.check()


def test_check_detects_overlap():
    e = VersionEdit()
    e.add_file(2, meta(1, b"a", b"m"))
    e.add_file(2, meta(2, b"m", b"z"))           # shares user key "m"
    v = Version().apply(e)
    with pytest.raises(AssertionError):
        v.check()


def test_apply_orders_levels_by_user_key_not_raw_internal_key():
    e = VersionEdit()
    a = FileMeta(5, 100, ikey(b"ab", 3), ikey(b"ab", 2), 2, 3)
    b = FileMeta(6, 100, ikey(b"ab\x00", 4), ikey(b"zz", 1), 1, 4)
    e.add_file(1, a)
    e.add_file(1, b)
    v = Version().apply(e)
    assert [f.number for f in v.levels[1]] == [5, 6]
    assert v.check()


# ------------------------------------------------------------------ VersionSet and the MANIFEST

def populate(vs, rng, n_edits=6):
    """Apply a series of edits through log_and_apply; returns the expected (last) state."""
    for i in range(n_edits):
        e = VersionEdit()
        for _ in range(rng.randint(1, 3)):
            num = vs.new_file_number()
            lo = b"k%04d" % rng.randrange(5000)
            e.add_file(0, meta(num, lo, lo + b"~", lseq=rng.randrange(1, 10**6)))
        live = sorted(vs.current.numbers())
        if live and rng.random() < 0.5:
            victim = rng.choice(live)
            lvl = next(l for l, f in vs.current.files() if f.number == victim)
            e.delete_file(lvl, victim)
        if i % 2 == 0:
            e.log_number = vs.new_file_number()
        e.last_sequence = vs.last_sequence + rng.randint(0, 100)
        vs.log_and_apply(e)
    # non-overlapping files in L1 and L2
    e = VersionEdit()
    for lvl in (1, 2):
        for j in range(3):
            e.add_file(lvl, meta(vs.new_file_number(), b"%d-%d-a" % (lvl, j), b"%d-%d-z" % (lvl, j)))
    vs.log_and_apply(e)


def state(vs):
    return (version_tuple(vs.current), vs.next_file_number, vs.last_sequence, vs.log_number,
            vs.manifest_number)


def manifest_path(dbpath, vs):
    return filenames.manifest_name(dbpath, vs.manifest_number)


def test_snapshot_log_and_apply_recover(tmp_path):
    db = str(tmp_path)
    vs = VersionSet(db)
    old = vs.write_snapshot()
    assert old == 0 and vs.manifest_number == 2
    assert open(filenames.current_name(db), "rb").read() == b"MANIFEST-000002\n"
    populate(vs, random.Random(1))
    want = state(vs)
    assert vs.current.check()
    vs.close()

    vs2 = VersionSet(db)
    got = vs2.recover()
    assert version_tuple(got) == want[0]
    assert state(vs2) == want
    assert vs2.recovered_manifest_dropped == 0

    # a new snapshot (as at every open) replaces the manifest and keeps the state
    old = vs2.write_snapshot()
    assert old == want[4] and vs2.manifest_number != old
    populate(vs2, random.Random(2), n_edits=3)
    want2 = state(vs2)
    vs2.close()
    vs3 = VersionSet(db)
    vs3.recover()
    assert state(vs3) == want2
    vs3.close()


def test_write_snapshot_with_edit(tmp_path):
    db = str(tmp_path)
    vs = VersionSet(db)
    vs.write_snapshot()
    e = VersionEdit()
    e.add_file(1, meta(vs.new_file_number(), b"a", b"b"))
    e.log_number = 40
    e.last_sequence = 99
    vs.next_file_number = 41
    vs.write_snapshot(e)
    want = state(vs)
    assert vs.log_number == 40 and vs.last_sequence == 99
    vs.close()
    vs2 = VersionSet(db)
    vs2.recover()
    assert state(vs2) == want
    # the new manifest is a single record holding everything, with the marker
    data = open(manifest_path(db, vs2), "rb").read()
    res = read_log("m", data)
    assert len(res.records) == 1
    assert VersionEdit.decode(res.records[0][1], "m", 0).marker


def test_log_and_apply_keeps_last_sequence_monotonic(tmp_path):
    vs = VersionSet(str(tmp_path))
    vs.write_snapshot()
    e = VersionEdit()
    e.last_sequence = 500
    vs.log_and_apply(e)
    e = VersionEdit()
    e.last_sequence = 100
    vs.log_and_apply(e)
    assert vs.last_sequence == 500
    e = VersionEdit()                   # unset: inherits
    vs.log_and_apply(e)
    assert e.last_sequence == 500 and e.next_file_number == vs.next_file_number
    vs.close()


def test_recover_with_torn_last_record(tmp_path):
    db = str(tmp_path)
    vs = VersionSet(db)
    vs.write_snapshot()
    populate(vs, random.Random(3), n_edits=3)
    want = state(vs)
    e = VersionEdit()
    e.add_file(0, meta(vs.new_file_number(), b"q", b"r"))
    vs.log_and_apply(e)
    vs.close()
    path = manifest_path(db, vs)
    size = os.path.getsize(path)
    rec = len(frame(e.encode()))
    with open(path, "r+b") as fh:
        fh.truncate(size - rec // 2)     # the last edit's record was torn
    vs2 = VersionSet(db)
    vs2.recover()
    assert version_tuple(vs2.current) == want[0]
    assert vs2.recovered_manifest_dropped > 0


def _recover_with_flip(db, seed, n_edits, where):
    """Write a MANIFEST, flip the byte where(data, records) -> (offset, mask) names,
    and return (manifest path, the CorruptionError recovery raised)."""
    vs = VersionSet(db)
    vs.write_snapshot()
    populate(vs, random.Random(seed), n_edits=n_edits)
    vs.close()
    path = manifest_path(db, vs)
    data = bytearray(open(path, "rb").read())
    pos, mask = where(read_log(path, bytes(data)).records)
    data[pos] ^= mask
    open(path, "wb").write(bytes(data))
    with pytest.raises(CorruptionError) as ei:
        VersionSet(db).recover()
    return path, ei.value


@pytest.mark.parametrize("victim", [1, 2, 3])
def test_manifest_flipped_byte_in_middle_record(tmp_path, victim):
    flipped = {}

    def where(records):
        assert len(records) >= 5
        off, payload = records[victim]
        flipped["record"] = off
        return off + HEADER + len(payload) // 2, 0x04
    path, err = _recover_with_flip(str(tmp_path), 4, 5, where)
    assert err.path == path
    assert err.offset == flipped["record"]


def test_manifest_flipped_byte_in_first_record(tmp_path):
    path, err = _recover_with_flip(str(tmp_path), 5, 2, lambda records: (HEADER + 3, 0x80))
    assert err.path == path and err.offset == 0


@pytest.mark.parametrize("current", [
    b"garbage\n", b"", b"\n", b"MANIFEST-000002", b"MANIFEST-2\n", b"000002.log\n",
    b"000002.sst\n", b"\xff\xfe\x00\x01\n", b"MANIFEST-000002\nMANIFEST-000003\n",
    b"../MANIFEST-000002\n",
])
def test_current_with_garbage(tmp_path, current):
    db = str(tmp_path)
    vs = VersionSet(db)
    vs.write_snapshot()
    vs.close()
    with open(filenames.current_name(db), "wb") as fh:
        fh.write(current)
    with pytest.raises(CorruptionError) as ei:
        VersionSet(db).recover()
    assert ei.value.path == filenames.current_name(db)


def test_current_naming_missing_manifest(tmp_path):
    db = str(tmp_path)
    vs = VersionSet(db)
    vs.write_snapshot()
    vs.close()
    with open(filenames.current_name(db), "wb") as fh:
        fh.write(b"MANIFEST-000777\n")
    with pytest.raises(CorruptionError) as ei:
        VersionSet(db).recover()
    assert ei.value.path == filenames.manifest_name(db, 777)


def write_manifest(db, number, payloads):
    with open(filenames.manifest_name(db, number), "wb") as fh:
        for p in payloads:
            fh.write(frame(p))
    filenames.set_current(db, number)


def counters(log=1, nxt=100, seq=5):
    e = VersionEdit()
    e.log_number, e.next_file_number, e.last_sequence = log, nxt, seq
    return e


def test_manifest_content_checks(tmp_path):
    db = str(tmp_path)
    # empty manifest
    write_manifest(db, 3, [])
    with pytest.raises(CorruptionError):
        VersionSet(db).recover()
    # first record without the marker
    write_manifest(db, 4, [counters().encode()])
    with pytest.raises(CorruptionError):
        VersionSet(db).recover()
    # missing a counter
    e = counters()
    e.last_sequence = None
    write_manifest(db, 5, [e.encode(marker=True)])
    with pytest.raises(CorruptionError):
        VersionSet(db).recover()
    # deleting a file that does not exist
    d = VersionEdit()
    d.delete_file(1, 50)
    write_manifest(db, 6, [counters().encode(marker=True), d.encode()])
    with pytest.raises(CorruptionError):
        VersionSet(db).recover()
    # a file number at or beyond next_file_number
    e = counters(nxt=10)
    e.add_file(1, meta(10, b"a", b"b"))
    write_manifest(db, 7, [e.encode(marker=True)])
    with pytest.raises(CorruptionError):
        VersionSet(db).recover()
    # and a good one
    e = counters(nxt=11, seq=77, log=9)
    e.add_file(1, meta(10, b"a", b"b"))
    write_manifest(db, 8, [e.encode(marker=True)])
    vs = VersionSet(db)
    v = vs.recover()
    assert [f.number for f in v.levels[1]] == [10]
    assert (vs.next_file_number, vs.last_sequence, vs.log_number, vs.manifest_number) == (11, 77, 9, 8)


def test_snapshot_refuses_existing_manifest(tmp_path):
    db = str(tmp_path)
    open(filenames.manifest_name(db, 2), "wb").write(b"other")
    vs = VersionSet(db)
    with pytest.raises(FileExistsError):
        vs.write_snapshot()
    assert open(filenames.manifest_name(db, 2), "rb").read() == b"other"
    assert not os.path.exists(filenames.current_name(db))


def test_manifest_torn_append_rule():
    """Only what a crashed append can leave is a torn MANIFEST tail: a record cut
    short, or zeros from a sector boundary to the end. A complete record that fails
    its checksum, or one whose length field alone was damaged, is corruption."""
    from lsmkv.engine.logformat import frame
    from lsmkv.engine.version import torn_append
    head = frame(b"first edit" * 10)
    rec = frame(b"x" * 1500)
    off = len(head)
    whole = head + rec
    assert torn_append(whole[:-100], off)                      # cut short
    zeroed = bytearray(whole)
    zeroed[1024:] = bytes(len(whole) - 1024)                     # never reached the disk
    assert torn_append(bytes(zeroed), off)
    flipped = bytearray(whole)
    flipped[off + 200] ^= 0x10                                   # damage inside a durable record
    assert not torn_append(bytes(flipped), off)
    longer = bytearray(whole)
    longer[off + 5] ^= 0x01                                      # its length field, made longer
    assert not torn_append(bytes(longer), off)
