"""Range tombstones through lsmkv.repair: a table whose footer is damaged keeps
its tombstones (its range-del block is found by its checksum), a lost MANIFEST
rebuilds with them, and a tombstone only in the WAL is replayed."""
import os
import subprocess
import sys

import lsmkv
from conftest import lsmkv_import_path
from lsmkv import testing
from lsmkv.engine import filenames
from lsmkv.engine.repair import repair


def _fill(path):
    db = lsmkv.DB(path)
    for i in range(300):
        db.put(b"k%04d" % i, b"v%d" % i)
    db.flush()
    db.compact_range()                        # the puts at the bottom
    db.delete_range(b"k0100", b"k0200")
    db.put(b"k0150", b"back")
    db.flush()                                # an L0 table holding the tombstone
    tomb = [f.number for f in testing.level_files(db)[0]]
    db.delete_range(b"k0250", b"k0260")       # in the WAL only
    db.close()
    return tomb


def _want():
    return {b"k%04d" % i: b"v%d" % i for i in range(300) if not (100 <= i < 200 or 250 <= i < 260)} | \
        {b"k0150": b"back"}


def _check(path):
    with lsmkv.DB(path) as db:
        assert dict(db.items()) == _want()
        assert db.get(b"k0120") is None and db.get(b"k0255") is None and db.get(b"k0150") == b"back"
    r = subprocess.run([sys.executable, "-m", "lsmkv", path, "verify"], capture_output=True, text=True,
                       env=dict(os.environ, PYTHONPATH=lsmkv_import_path()), timeout=60,
                       cwd="/")     # not the checkout: `-m` puts the cwd first on sys.path
    assert r.returncode == 0, r.stdout + r.stderr      # the shell's verify passes (key ranges included)


def test_damaged_footer_keeps_the_tombstones(tmp_path):
    path = str(tmp_path / "db")
    [number] = _fill(path)
    sst = filenames.table_name(path, number)
    with open(sst, "r+b") as fh:
        fh.seek(os.path.getsize(sst) - 30)
        b = fh.read(1)
        fh.seek(os.path.getsize(sst) - 30)
        fh.write(bytes([b[0] ^ 0x5A]))
    report = repair(path)
    assert [r["file"] for r in report.tables_rewritten] == [os.path.basename(sst)]
    assert report.blocks_lost == [] and report.lost_ranges == []
    _check(path)


def test_lost_manifest_rebuilds_with_the_tombstones(tmp_path):
    path = str(tmp_path / "db")
    _fill(path)
    with open(filenames.current_name(path)) as fh:
        os.unlink(os.path.join(path, fh.read().strip()))
    report = repair(path)
    assert report.mode == "rebuild"
    _check(path)
