"""The public API contract of lsmkv.DB (issue: core engine)."""
import os
import threading
import time

import pytest

import lsmkv
from lsmkv import testing
from conftest import lsmkv_import_path, run_child


def test_put_get_delete_roundtrip(dbpath):
    with lsmkv.DB(dbpath) as db:
        db.put(b"a", b"1")
        db[b"b"] = b"2"
        assert db.get(b"a") == b"1"
        assert db[b"b"] == b"2"
        assert db.get(b"missing") is None
        assert db.get(b"missing", b"dflt") == b"dflt"
        assert b"a" in db and b"missing" not in db
        with pytest.raises(KeyError):
            db[b"missing"]
        db.delete(b"a")
        del db[b"b"]
        assert db.get(b"a") is None and b"b" not in db
        db.delete(b"never-written")     # a no-op, not an error
        s = db.stats()
        assert s["puts"] == 2 and s["deletes"] == 3


def test_buffer_types_accepted_and_wrong_types_rejected(dbpath):
    with lsmkv.DB(dbpath) as db:
        db.put(bytearray(b"k1"), memoryview(b"v1"))
        assert db.get(memoryview(b"k1")) == b"v1"
        assert db.get(bytearray(b"k1")) == b"v1"
        for bad in ("str", 1, None, 1.5):
            with pytest.raises(TypeError, match="key"):
                db.put(bad, b"v")
            with pytest.raises(TypeError, match="value"):
                db.put(b"k", bad)
            with pytest.raises(TypeError, match="key"):
                db.get(bad)
            with pytest.raises(TypeError, match="key"):
                db.delete(bad)
        with pytest.raises(TypeError, match="start"):
            db.items(start="a")
        with pytest.raises(TypeError, match="key"):
            with db.write_batch() as wb:
                wb.put("k", b"v")
        assert db.get(b"k") is None


def test_options_validation(dbpath):
    with pytest.raises(TypeError, match="no_such_option"):
        lsmkv.DB(dbpath, no_such_option=1)
    with pytest.raises(ValueError, match="write_buffer_size"):
        lsmkv.DB(dbpath, write_buffer_size=10)
    with pytest.raises(ValueError, match="compression"):
        lsmkv.DB(dbpath, compression="snappy")
    with pytest.raises(TypeError, match="block_size"):
        lsmkv.DB(dbpath, block_size="4k")
    with pytest.raises(TypeError, match="clock"):
        lsmkv.DB(dbpath, clock=5)
    opts = lsmkv.Options(write_buffer_size=1 << 20, compression="none")
    with lsmkv.DB(dbpath, options=opts) as db:
        assert db.options.compression == "none"
        db.put(b"k", b"v")
    with lsmkv.DB(dbpath, options=opts, bloom_bits_per_key=0) as db:
        assert db.options.bloom_bits_per_key == 0 and db.get(b"k") == b"v"


def test_closed_db_raises(dbpath):
    db = lsmkv.DB(dbpath)
    db.put(b"k", b"v")
    db.close()
    db.close()   # idempotent
    for call in (lambda: db.put(b"k", b"v"), lambda: db.get(b"k"), lambda: db.delete(b"k"),
                 lambda: db.items(), lambda: db.snapshot(), lambda: db.flush()):
        with pytest.raises(lsmkv.ClosedError):
            call()


def test_lock_same_process_and_other_process(dbpath):
    db = lsmkv.DB(dbpath)
    try:
        with pytest.raises(lsmkv.LockError):
            lsmkv.DB(dbpath)
        code = ("import sys; sys.path.insert(0, sys.argv[2]); import lsmkv\n"
                "try:\n    lsmkv.DB(sys.argv[1])\nexcept lsmkv.LockError as e:\n"
                "    print('LOCKED', e); sys.exit(0)\nsys.exit(3)")
        r = run_child(code, dbpath, lsmkv_import_path())
        assert "LOCKED" in r.stdout and "locked by another process" in r.stdout
    finally:
        db.close()
    with lsmkv.DB(dbpath) as db2:   # the lock is released by close
        assert db2.get(b"x") is None


def test_write_batch_atomic_and_discarded_on_error(dbpath):
    with lsmkv.DB(dbpath) as db:
        db.put(b"gone", b"x")
        with db.write_batch() as wb:
            wb.put(b"a", b"1")
            wb.put(b"b", b"2")
            wb.delete(b"gone")
            assert len(wb) == 3
        assert (db.get(b"a"), db.get(b"b"), db.get(b"gone")) == (b"1", b"2", None)
        with pytest.raises(RuntimeError):
            with db.write_batch() as wb:
                wb.put(b"c", b"3")
                raise RuntimeError("abort")
        assert db.get(b"c") is None
        wb = db.batch()
        wb.put(b"d", b"4")
        db.write(wb, sync=True)
        assert db.get(b"d") == b"4"
        seq = db.stats()["last_sequence"]
        with db.write_batch():
            pass   # an empty batch writes nothing
        assert db.stats()["last_sequence"] == seq


def test_batch_same_key_last_wins(dbpath):
    with lsmkv.DB(dbpath) as db:
        with db.write_batch() as wb:
            wb.put(b"k", b"1")
            wb.put(b"k", b"2")
            wb.delete(b"j")
            wb.put(b"j", b"3")
        assert db.get(b"k") == b"2" and db.get(b"j") == b"3"
        db.flush()
        assert db.get(b"k") == b"2" and db.get(b"j") == b"3"


def test_iteration_ranges_and_reverse(dbpath, small_opts):
    with lsmkv.DB(dbpath, **small_opts) as db:
        keys = [b"%04d" % i for i in range(0, 2000, 2)]
        for k in keys:
            db.put(k, k + b"v")
        db.flush()
        for k in keys[::3]:
            db.put(k, k + b"w")       # newer versions in the memtable
        for k in keys[1::7]:
            db.delete(k)
        model = {k: k + b"v" for k in keys}
        model.update({k: k + b"w" for k in keys[::3]})
        for k in keys[1::7]:
            del model[k]
        srt = sorted(model)
        assert list(db.items()) == [(k, model[k]) for k in srt]
        assert list(db.keys(reverse=True)) == srt[::-1]
        assert list(db.values()) == [model[k] for k in srt]
        for lo, hi in [(b"0100", b"0200"), (b"0101", b"0199"), (None, b"0010"), (b"1990", None),
                       (b"5", None), (None, b""), (b"0500", b"0500")]:
            want = [k for k in srt if (lo is None or k >= lo) and (hi is None or k < hi)]
            assert list(db.keys(lo, hi)) == want, (lo, hi)
            assert list(db.keys(lo, hi, reverse=True)) == want[::-1], (lo, hi)


def test_iterator_is_consistent_with_its_creation(dbpath, small_opts):
    with lsmkv.DB(dbpath, **small_opts) as db:
        for i in range(500):
            db.put(b"%03d" % i, b"old")
        it = db.items()
        first = next(it)
        for i in range(500):
            db.put(b"%03d" % i, b"new")
        db.put(b"zzz", b"later")
        db.flush()
        rest = list(it)
        assert first == (b"000", b"old")
        assert len(rest) == 499 and all(v == b"old" for _, v in rest)


def test_snapshot_reads_its_sequence(dbpath, small_opts):
    with lsmkv.DB(dbpath, **small_opts) as db:
        db.put(b"a", b"1")
        db.put(b"b", b"1")
        snap = db.snapshot()
        db.put(b"a", b"2")
        db.delete(b"b")
        db.put(b"c", b"new")
        for _ in range(3):     # survive flushes and compactions
            assert snap.get(b"a") == b"1" and snap[b"b"] == b"1" and snap.get(b"c") is None
            assert b"c" not in snap
            assert list(snap.items()) == [(b"a", b"1"), (b"b", b"1")]
            assert list(snap.keys(reverse=True)) == [b"b", b"a"]
            db.flush()
            db.compact_range()
        assert db.get(b"a") == b"2" and db.get(b"b") is None
        snap.close()
        with pytest.raises(lsmkv.ClosedError):
            snap.get(b"a")
        with db.snapshot() as s2:
            assert s2.get(b"a") == b"2"


def test_ttl_with_injected_clock(dbpath, clock, small_opts):
    with lsmkv.DB(dbpath, clock=clock, **small_opts) as db:
        db.put(b"t", b"v", ttl=10)
        db.put(b"forever", b"v")
        with db.write_batch() as wb:
            wb.put(b"bt", b"v", ttl=5)
        assert db.get(b"t") == b"v" and db.get(b"bt") == b"v"
        clock.advance(5)
        assert db.get(b"bt") is None and b"bt" not in db      # expiry is inclusive
        assert db.get(b"t") == b"v"
        db.flush()
        assert db.get(b"t") == b"v"
        clock.advance(5.001)
        assert db.get(b"t") is None and b"t" not in db
        assert list(db.keys()) == [b"forever"]
        snap = db.snapshot()
        assert snap.get(b"t") is None
        snap.close()
        db.compact_range()
        assert db.stats()["ttl_dropped"] >= 1
        assert db.get(b"t") is None and db.get(b"forever") == b"v"
        for bad, exc in ((0, ValueError), (-1, ValueError), ("5", TypeError), (True, TypeError)):
            with pytest.raises(exc, match="ttl"):
                db.put(b"x", b"y", ttl=bad)


def test_snapshot_ttl_is_the_expiry_the_snapshot_holds(dbpath, clock):
    with lsmkv.DB(dbpath, clock=clock) as db:
        db.put(b"k", b"v1", ttl=10)
        db.put(b"n", b"v")
        with db.snapshot() as snap:
            db.put(b"k", b"v2")                  # no expiry now
            db.delete(b"n")
            clock.advance(4)
            assert db.ttl(b"k") is None
            assert snap.ttl(b"k") == pytest.approx(6.0)
            assert snap.ttl(b"n") is None
            with pytest.raises(KeyError):
                db.ttl(b"n")
            with pytest.raises(KeyError):
                snap.ttl(b"absent")
            clock.advance(6)
            with pytest.raises(KeyError):        # expired as the snapshot sees it
                snap.ttl(b"k")
        with pytest.raises(lsmkv.ClosedError):
            snap.ttl(b"k")


def test_ttl_expired_value_hides_older_version_after_compaction(dbpath, clock, small_opts):
    with lsmkv.DB(dbpath, clock=clock, **small_opts) as db:
        db.put(b"k", b"old")
        db.compact_range()                      # "old" now at the bottom level
        db.put(b"k", b"new", ttl=1)
        db.flush()
        clock.advance(2)
        assert db.get(b"k") is None
        db.compact_range()
        assert db.get(b"k") is None and list(db.items()) == []


def test_key_and_value_size_extremes(dbpath):
    big_key = bytes(range(256)) * 256           # 64 KiB
    big_val = os.urandom(10 * 1024 * 1024)      # 10 MiB
    with lsmkv.DB(dbpath, write_buffer_size=1 << 20) as db:
        db.put(b"", b"empty-key")
        db.put(b"\x00", b"")
        db.put(big_key, b"big-key")
        db.put(b"bigval", big_val)
        for _ in range(2):
            assert db.get(b"") == b"empty-key"
            assert db.get(b"\x00") == b""
            assert db.get(big_key) == b"big-key"
            assert db.get(b"bigval") == big_val
            assert [k for k in db.keys()][:2] == [b"", b"\x00"]
            db.flush()
    with lsmkv.DB(dbpath) as db:
        assert db.get(big_key) == b"big-key" and db.get(b"bigval") == big_val and db.get(b"") == b"empty-key"


def test_reopen_recovers_unflushed_writes(dbpath):
    db = lsmkv.DB(dbpath)
    for i in range(1000):
        db.put(b"k%d" % i, b"v%d" % i)
    db.delete(b"k5")
    db.close()
    with lsmkv.DB(dbpath) as db:
        assert db.get(b"k999") == b"v999" and db.get(b"k5") is None
        assert db.stats()["recovered_records"] == 1001
        db.put(b"after", b"x")
    with lsmkv.DB(dbpath) as db:
        assert db.get(b"after") == b"x" and db.get(b"k0") == b"v0"


def test_flush_writes_l0_and_deletes_the_log(dbpath, small_opts):
    with lsmkv.DB(dbpath, level0_file_num_compaction_trigger=100, **small_opts) as db:
        for i in range(3000):
            db.put(b"%06d" % i, b"x" * 100)
        db.flush()
        s = db.stats()
        assert s["flushes"] >= 3 and s["immutable_memtables"] == 0
        assert s["levels"][0]["files"] == s["flushes"]
        logs = sorted(int(n.split(".")[0]) for n in os.listdir(dbpath) if n.endswith(".log"))
        # only the active memtable's log remains, and perhaps the spare made ahead for the next switch
        assert logs[0] == testing.wal(db).number and len(logs) <= 2, logs
        assert testing.spare_log(db) is None or logs == [testing.wal(db).number, testing.spare_log(db).number]
        assert s["bloom_checks"] == 0
        assert db.get(b"000000") == b"x" * 100
        before = db.stats()["bloom_checks"]
        assert db.get(b"zzz") is None            # outside every file's range: no filter probed
        assert db.stats()["bloom_checks"] == before
        for i in range(200):                     # inside the ranges, absent
            assert db.get(b"%06dx" % i) is None
        s = db.stats()
        assert s["bloom_checks"] >= 200 and s["bloom_useful"] >= 190


def test_open_iterator_pins_files_and_closing_frees_them(dbpath, small_opts):
    with lsmkv.DB(dbpath, level0_file_num_compaction_trigger=100, **small_opts) as db:
        for i in range(2000):
            db.put(b"%06d" % i, b"x" * 50)
        db.flush()
        before = {n for n in os.listdir(dbpath) if n.endswith(".sst")}
        it = db.items()
        next(it)
        db.compact_range()
        now = {n for n in os.listdir(dbpath) if n.endswith(".sst")}
        assert before <= now, "files of a version an iterator reads must stay"
        assert db.stats()["pinned_versions"] == 1
        assert sum(1 for _ in it) == 1999        # exhausting releases the pin
        after = {n for n in os.listdir(dbpath) if n.endswith(".sst")}
        assert not (before & after), "compaction inputs must go once unpinned"
        assert db.stats()["files_deleted"] == len(before)
        it2 = db.items()
        next(it2)
        del it2                                  # dropping an iterator also releases it
        assert db.stats()["pinned_versions"] == 0


def test_overwrites_compact_to_live_size(dbpath, small_opts):
    with lsmkv.DB(dbpath, **small_opts) as db:
        for rnd in range(5):
            for i in range(1000):
                db.put(b"%05d" % i, bytes([rnd]) * 100)
        db.compact_range()
        s = db.stats()
        assert s["levels"][0]["files"] == 0
        assert s["dropped_hidden"] >= 3000
        assert s["total_sst_bytes"] == s["live_sst_bytes"]
        assert all(v == bytes([4]) * 100 for v in db.values())


def test_stats_fields(dbpath):
    with lsmkv.DB(dbpath) as db:
        db.put(b"k", b"v")
        db.get(b"k")
        db.get(b"nope")
        s = db.stats()
        for f in ("puts", "deletes", "gets", "get_hits", "memtable_bytes", "immutable_memtables",
                  "flushes", "flush_bytes", "stall_seconds", "wal_bytes", "levels", "bloom_checks",
                  "bloom_useful"):
            assert f in s, f
        assert s["gets"] == 2 and s["get_hits"] == 1 and s["wal_bytes"] > 0
        assert s["memtable_bytes"] >= 1 << 20     # one arena chunk


def test_concurrent_readers_and_writer(dbpath, small_opts):
    with lsmkv.DB(dbpath, **small_opts) as db:
        errors = []
        stop = threading.Event()

        def writer():
            for i in range(5000):
                db.put(b"w%05d" % i, b"%d" % i)
            stop.set()

        def reader():
            try:
                while not stop.is_set():
                    for k, v in db.items(b"w", b"x"):
                        assert v == k[1:].lstrip(b"0") or v == b"0"
            except Exception as e:    # pragma: no cover - reported below
                errors.append(e)

        ts = [threading.Thread(target=writer)] + [threading.Thread(target=reader) for _ in range(2)]
        for t in ts:
            t.start()
        for t in ts:
            t.join(60)
        assert not errors, errors
        assert db.get(b"w04999") == b"4999"


def _one_table_with_a_flipped_byte(dbpath, opts, pos, mask):
    """Write one SST, flip byte pos (negative: from the end) of it; returns its name."""
    with lsmkv.DB(dbpath, **opts) as db:
        for i in range(500):
            db.put(b"%05d" % i, b"v" * 30)
        db.flush()
    sst = sorted(n for n in os.listdir(dbpath) if n.endswith(".sst"))[0]
    path = os.path.join(dbpath, sst)
    data = bytearray(open(path, "rb").read())
    data[pos] ^= mask
    open(path, "wb").write(bytes(data))
    return sst


def test_corrupt_sst_refuses_to_open(dbpath, small_opts):
    sst = _one_table_with_a_flipped_byte(dbpath, small_opts, -70, 0xFF)   # in the footer's handles
    with pytest.raises(lsmkv.CorruptionError) as ei:
        lsmkv.DB(dbpath, **small_opts)
    assert sst in str(ei.value) and ei.value.offset is not None


def test_corrupt_data_block_is_reported_not_returned(dbpath, small_opts):
    sst = _one_table_with_a_flipped_byte(dbpath, small_opts, 100, 0x01)   # in the first data block
    with lsmkv.DB(dbpath, **small_opts) as db:
        with pytest.raises(lsmkv.CorruptionError, match=sst):
            list(db.items())
        with pytest.raises(lsmkv.CorruptionError, match="offset 0"):
            db.get(b"00000")


def test_corrupt_manifest_refuses_to_open(dbpath):
    with lsmkv.DB(dbpath) as db:
        db.put(b"k", b"v")
        db.flush()
    man = [n for n in os.listdir(dbpath) if n.startswith("MANIFEST")][0]
    path = os.path.join(dbpath, man)
    data = bytearray(open(path, "rb").read())
    data[12] ^= 0x40
    open(path, "wb").write(bytes(data))
    with pytest.raises(lsmkv.CorruptionError, match=man):
        lsmkv.DB(dbpath)


def test_missing_current_with_files_refuses(dbpath):
    with lsmkv.DB(dbpath) as db:
        db.put(b"k", b"v")
    os.unlink(os.path.join(dbpath, "CURRENT"))
    with pytest.raises(lsmkv.CorruptionError, match="CURRENT"):
        lsmkv.DB(dbpath)


def test_orphan_files_removed_at_open(dbpath):
    with lsmkv.DB(dbpath) as db:
        db.put(b"k", b"v")
    for name in ("999990.sst", "999991.log", "CURRENT.000001.tmp"):
        open(os.path.join(dbpath, name), "wb").write(b"junk")
    with lsmkv.DB(dbpath) as db:
        assert db.get(b"k") == b"v"
    names = os.listdir(dbpath)
    assert not {"999990.sst", "999991.log", "CURRENT.000001.tmp"} & set(names)


def test_disk_full_raises_oserror_and_keeps_db_consistent(dbpath):
    """RLIMIT_FSIZE makes file growth fail with EFBIG, like a full disk."""
    code = r"""
import os, resource, signal, sys
sys.path.insert(0, sys.argv[2])
import lsmkv
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
db = lsmkv.DB(sys.argv[1], write_buffer_size=256 * 1024, wal_preallocate=64 * 1024)
resource.setrlimit(resource.RLIMIT_FSIZE, (100 * 1024, 100 * 1024))
acked = 0
try:
    for i in range(100000):
        db.put(b"%08d" % i, os.urandom(100))
        acked = i + 1
except OSError as e:
    print("ERROR", type(e).__name__, e)
else:
    print("NOERROR")
for i in range(acked):
    assert db.get(b"%08d" % i) is not None, i
print("ACKED", acked)
try:
    db.close()
except OSError:
    pass
"""
    r = run_child(code, dbpath, lsmkv_import_path())
    assert "ERROR" in r.stdout and "NOERROR" not in r.stdout, r.stdout
    acked = int(r.stdout.split("ACKED")[1].split()[0])
    assert acked > 100
    with lsmkv.DB(dbpath) as db:
        missing = [i for i in range(acked) if db.get(b"%08d" % i) is None]
        assert not missing, missing[:10]


@pytest.mark.parametrize("wal_mmap", [True, False])
def test_both_wal_modes_recover(dbpath, wal_mmap):
    db = lsmkv.DB(dbpath, wal_mmap=wal_mmap, write_buffer_size=128 * 1024)
    for i in range(3000):
        db.put(b"%05d" % i, b"v" * 50, sync=(i % 500 == 0))
    with db.write_batch() as wb:
        wb.delete(b"00007")
    db.close()
    with lsmkv.DB(dbpath, wal_mmap=not wal_mmap) as db:
        assert db.get(b"02999") == b"v" * 50 and db.get(b"00007") is None
        assert sum(1 for _ in db.keys()) == 2999


def test_level0_is_compacted_in_the_background(dbpath, small_opts):
    import time
    with lsmkv.DB(dbpath, level0_file_num_compaction_trigger=3, **small_opts) as db:
        for rnd in range(3):
            for i in range(2000):
                db.put(b"%05d" % i, b"%d-" % rnd + b"x" * 60)
        db.flush()
        deadline = time.monotonic() + 30
        while db.stats()["levels"][0]["files"] >= 3 and time.monotonic() < deadline:
            time.sleep(0.01)
        s = db.stats()
        assert s["levels"][0]["files"] < 3 and s["levels"][1]["files"] >= 1, s["levels"][:2]
        assert s["compactions"] >= 1 and s["dropped_hidden"] > 0
        testing.current_version(db).check()
        assert all(v.startswith(b"2-") for v in db.values())
        assert sum(1 for _ in db.keys()) == 2000


def test_snapshot_dropped_without_close_is_released(dbpath):
    import gc
    with lsmkv.DB(dbpath) as db:
        db.put(b"k", b"1")
        snap = db.snapshot()
        cycle = [snap]
        cycle.append(cycle)          # only the cyclic collector frees it
        del snap, cycle
        testing.mutex(db).acquire()           # collected while the mutex is held: must not block
        try:
            gc.collect()
        finally:
            testing.mutex(db).release()
        db.put(b"k", b"2")
        db.flush()                   # the flush's snapshot bound picks up the release
        assert db.stats()["snapshots"] == 0


def test_ttl_reports_remaining_seconds(dbpath, clock, small_opts):
    with lsmkv.DB(dbpath, clock=clock, **small_opts) as db:
        db.put(b"t", b"v", ttl=10)
        db.put(b"p", b"v")
        assert db.ttl(b"t") == pytest.approx(10, abs=0.002)
        assert db.ttl(b"p") is None
        with pytest.raises(KeyError):
            db.ttl(b"absent")
        clock.advance(4)
        db.flush()                                   # the same answer from an SST
        assert db.ttl(b"t") == pytest.approx(6, abs=0.002)
        assert db.ttl(b"p") is None
        db.put(b"p", b"w", ttl=3)                    # a newer version with a TTL
        assert db.ttl(b"p") == pytest.approx(3, abs=0.002)
        clock.advance(6)
        with pytest.raises(KeyError):
            db.ttl(b"t")
        with pytest.raises(TypeError, match="key"):
            db.ttl("t")


@pytest.mark.parametrize("ttl", [float("inf"), 1e300, 9.3e15, 2 ** 62, 2 ** 2000])
def test_a_ttl_past_the_largest_expiry_is_refused_and_keeps_the_old_value(dbpath, ttl):
    """An expiry is an int64 of ms: a ttl that leaves it was once cast to a past time,
    so the put was acknowledged and the key (and the value it replaced) vanished."""
    with lsmkv.DB(dbpath) as db:
        db.put(b"k", b"old")
        with pytest.raises(ValueError, match="ttl .* is too large"):
            db.put(b"k", b"new", ttl=ttl)
        wb = db.write_batch()
        with pytest.raises(ValueError, match="too large"):
            wb.put(b"k", b"new", ttl=ttl)
        assert len(wb) == 0
        with pytest.raises(ValueError, match="too large"):
            with db.transaction() as txn:
                txn.put(b"k", b"new", ttl=ttl)
        db.put(b"far", b"v", ttl=9.2e15)             # ~291 million years: still fits
        assert db.get(b"k") == b"old" and db.get(b"far") == b"v"
    with lsmkv.DB(dbpath) as db:
        assert db.get(b"k") == b"old" and db.ttl(b"k") is None
        assert db.ttl(b"far") > 9e15


def _wait(pred, timeout=60):
    import time
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, "background work did not finish in time"
        time.sleep(0.02)


def test_expired_data_leaves_the_disk_without_writes(dbpath, clock):
    """100k keys with ttl=10; the clock moves 11 s; background compaction alone
    must remove them: every key absent and disk < 5% of what it was."""
    with lsmkv.DB(dbpath, clock=clock, write_buffer_size=1 << 20) as db:
        for i in range(100_000):
            db.put(b"key%08d" % i, b"v" * 50, ttl=10)
        db.flush()
        _wait(lambda: db.stats()["levels"][0]["files"] < 4)
        before = db.stats()["total_sst_bytes"]
        assert before > 500_000
        clock.advance(11)
        assert db.get(b"key00000007") is None
        _wait(lambda: db.stats()["total_sst_bytes"] < 0.05 * before)
        s = db.stats()
        assert s["ttl_dropped"] >= 100_000 and s["compactions_by_reason"].get("garbage", 0) >= 1
        assert next(db.keys(), None) is None


def test_overwrites_keep_disk_near_live_size(tmp_path):
    """The same 100k keys written ten times: after compaction, disk <= 1.3x the live
    data, measured as the same final contents written once into a fresh DB."""
    opts = dict(write_buffer_size=1 << 20, target_file_size_base=1 << 20)

    def sst_bytes(path):
        return sum(os.path.getsize(os.path.join(path, n)) for n in os.listdir(path) if n.endswith(".sst"))

    with lsmkv.DB(str(tmp_path / "churn"), **opts) as db:
        for rnd in range(10):
            for i in range(100_000):
                db.put(b"key%08d" % i, b"%02d" % rnd + b"v" * 48)
        db.compact_range()
        s = db.stats()
        assert s["levels"][0]["files"] == 0 and s["dropped_hidden"] >= 800_000
        assert s["total_sst_bytes"] == s["live_sst_bytes"]
        assert db.get(b"key00000000").startswith(b"09")
    with lsmkv.DB(str(tmp_path / "once"), **opts) as db:
        for i in range(100_000):
            db.put(b"key%08d" % i, b"09" + b"v" * 48)
        db.compact_range()
    churn, once = sst_bytes(str(tmp_path / "churn")), sst_bytes(str(tmp_path / "once"))
    assert churn <= 1.3 * once, (churn, once)


def _l0_files_held(dbpath, n, **opts):
    """A DB with n L0 files and its compactions held off (the caller holds the lock)."""
    db = lsmkv.DB(dbpath, level0_file_num_compaction_trigger=1, compaction_worker="thread", **opts)
    testing.compaction_lock(db).acquire()
    for i in range(n):
        db.put(b"k%d" % i, b"v")
        db.flush()
    assert db.stats()["levels"][0]["files"] == n
    return db


def test_l0_slowdown_paces_writes_to_delayed_write_rate(dbpath):
    db = _l0_files_held(dbpath, 3, level0_slowdown_writes_trigger=3, level0_stop_writes_trigger=100,
                        delayed_write_rate=1 << 20)
    try:
        t0 = time.monotonic()
        for i in range(2000):                        # ~270 KB of log at <= 1 MiB/s
            db.put(b"p%06d" % i, b"x" * 120)
        took = time.monotonic() - t0
        s = db.stats()
        assert took >= 0.8 * (2000 * 120) / (1 << 20)
        # few writes slept, each paying off at least the 4 ms quantum
        assert 1 <= s["slowdown_count"] <= took / 0.004 + 1 and s["slowdown_count"] < 200
        assert s["stall_causes"]["level0_slowdown"] == s["slowdown_count"] and s["stall_seconds"] > 0
    finally:
        testing.compaction_lock(db).release()
        db.close()


def test_l0_stop_blocks_writes_until_compaction_catches_up(dbpath):
    db = _l0_files_held(dbpath, 3, level0_slowdown_writes_trigger=3, level0_stop_writes_trigger=3)
    held = True
    try:
        done = threading.Event()
        t = threading.Thread(target=lambda: (db.put(b"blocked", b"v"), done.set()))
        t.start()
        assert not done.wait(0.5), "a write went through at the stop trigger"
        testing.compaction_lock(db).release()                # compaction may run again: L0 drains
        held = False
        assert done.wait(30)
        t.join()
        s = db.stats()
        assert s["stop_count"] == 1 and s["stall_causes"]["level0_stop"] == 1
        assert s["stall_seconds"] >= 0.4 and db.get(b"blocked") == b"v"
    finally:
        if held:
            testing.compaction_lock(db).release()
        db.close()


def test_janitor_prepares_the_next_log_and_deletes_flushed_ones(dbpath, small_opts):
    """The memtable switch takes a log the janitor thread created ahead; the logs of
    flushed memtables are closed and deleted off the flush thread."""
    with lsmkv.DB(dbpath, level0_file_num_compaction_trigger=100, **small_opts) as db:
        deadline = time.monotonic() + 10
        while testing.spare_log(db) is None and time.monotonic() < deadline:
            time.sleep(0.01)
        spare = testing.spare_log(db)
        assert spare is not None, "the janitor creates a spare log at open"
        while db.stats()["immutable_memtables"] == 0 and testing.wal(db).number != spare.number:
            db.put(b"k%06d" % db.stats()["puts"], b"x" * 100)
        assert testing.wal(db).number == spare.number, "the switch took the spare"
        while (testing.spare_log(db) is None or testing.spare_log(db).number == spare.number) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert testing.spare_log(db) is not None and testing.spare_log(db).number > spare.number, "and the janitor made the next"
        db.flush()
        logs = sorted(int(n.split(".")[0]) for n in os.listdir(dbpath) if n.endswith(".log"))
        assert logs[0] == testing.wal(db).number, "flushed logs are gone when flush() returns"
        assert db.stats()["logs_deleted"] >= 1 and not testing.flushed_logs(db)


def test_a_file_that_cannot_be_deleted_is_counted_not_fatal(dbpath, small_opts):
    with lsmkv.DB(dbpath, **small_opts) as db:
        stuck = os.path.join(dbpath, "999999.sst")
        os.mkdir(stuck)                              # unlink() of a directory fails
        testing.queue_obsolete(db, stuck, 1)
        db.put(b"a", b"1")
        db.flush()
        s = db.stats()
        assert s["file_delete_errors"] == 1 and s["background_error"] is None
        db.put(b"b", b"2")
        assert db.get(b"a") == b"1" and db.get(b"b") == b"2"
    os.rmdir(stuck)


def test_spare_log_deleted_while_it_was_made_is_not_an_error(dbpath):
    """The janitor makes a spare log while a flush in another thread moves log_number
    past it and that thread's purge deletes it: the spare is dropped quietly."""
    with lsmkv.DB(dbpath) as db:
        db.put(b"a", b"1")
        deadline = time.monotonic() + 10         # the janitor's first pass is over
        while testing.spare_log(db) is None and time.monotonic() < deadline:
            time.sleep(0.01)
        spare = testing.take_spare_log(db)       # start without a spare
        if spare is not None:
            spare.abandon()
            os.unlink(spare.path)
            testing.forget_log_number(db, spare.number)
        raced = []

        def racing(number):
            wal = testing.new_log(db, number)
            if not raced:
                raced.append(number)
                db.flush()                       # switches to a newer log and flushes,
                if os.path.exists(wal.path):     # and its purge may already have deleted this one
                    os.unlink(wal.path)
            return wal
        with testing.new_log_hook(db, racing):
            testing.prepare_spare_log(db)
        assert raced and (testing.spare_log(db) is None or testing.spare_log(db).number != raced[0])
        db.put(b"b", b"2")
        assert db.stats()["background_error"] is None
        assert db.get(b"a") == b"1" and db.get(b"b") == b"2"
