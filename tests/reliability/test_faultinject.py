"""Unit tests of the fault-injection shim (tools/faultinject.c) and its driver
(tools/faultinject.py): what the journal records, what a simulated power loss
keeps and drops, and the injected errors. Each case runs a small Python child
under the shim; the file operations it does are those the engine does."""
import errno
import os
import random
import shutil
import subprocess
import sys
import textwrap

import pytest

TOOLS = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "tools")
sys.path.insert(0, TOOLS)
import faultinject as fi  # noqa: E402

pytestmark = pytest.mark.skipif(shutil.which("gcc") is None and shutil.which("cc") is None,
                                reason="the fault-injection shim needs a C compiler (gcc)")

PRELUDE = """
import ctypes, mmap, os, sys, errno
root = os.environ["LSMKV_FI_ROOT"]
def P(name): return os.path.join(root, name)
def fsync_dir(d=None):
    fd = os.open(d or root, os.O_RDONLY)
    os.fsync(fd)
    os.close(fd)
def write_file(name, data, sync=False):
    fd = os.open(P(name), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.write(fd, data)
    if sync:
        os.fsync(fd)
    os.close(fd)
"""


@pytest.fixture(scope="module")
def shim_cache(tmp_path_factory):
    return str(tmp_path_factory.mktemp("shim"))      # compiled once for the module


@pytest.fixture
def fs(tmp_path, shim_cache):
    return fi.FaultFS(str(tmp_path / "w"), cache_dir=shim_cache)


def child(fs, code, rules=None, check=True):
    r = subprocess.run([sys.executable, "-c", PRELUDE + textwrap.dedent(code)], env=fs.env(rules=rules),
                       capture_output=True, text=True, cwd="/", timeout=60)
    if check and r.returncode != 0:
        raise AssertionError(f"child failed ({r.returncode}):\n{r.stdout}\n{r.stderr}")
    return r


def read(fs, name):
    with open(os.path.join(fs.root, name), "rb") as fh:
        return fh.read()


def test_unsynced_new_file_disappears_synced_one_stays(fs):
    child(fs, """
        write_file("a", b"A" * 5000, sync=True)
        fsync_dir()
        write_file("b", b"B" * 100, sync=True)     # data synced, directory entry not
    """)
    res = fs.power_loss(random.Random(1))
    assert sorted(os.listdir(fs.root)) == ["a"]
    assert read(fs, "a") == b"A" * 5000
    assert [os.path.basename(p) for p in res.files_removed] == ["b"]


def test_unsynced_tail_is_cut_at_the_synced_size(fs):
    child(fs, """
        fd = os.open(P("log"), os.O_WRONLY | os.O_CREAT, 0o644)
        os.write(fd, b"x" * 3000)
        os.fsync(fd)
        fsync_dir()
        os.write(fd, b"y" * 9000)                  # never synced
    """)
    res = fs.power_loss(random.Random(1))
    assert read(fs, "log") == b"x" * 3000
    assert res.bytes_dropped == 9000


def test_pages_tail_keeps_a_page_prefix_of_the_unsynced_bytes(fs):
    sizes = set()
    for seed in range(12):
        child(fs, """
            fd = os.open(P("f"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            os.write(fd, b"x" * 1000)
            os.fsync(fd)
            fsync_dir()
            os.write(fd, b"y" * 20000)
        """)
        fs.power_loss(random.Random(seed), tail="pages")
        data = read(fs, "f")
        assert data == (b"x" * 1000 + b"y" * 20000)[:len(data)]
        assert len(data) == 1000 or len(data) % 4096 == 0 or len(data) == 21000
        sizes.add(len(data))
    assert len(sizes) > 2          # the cut point varies with the seed


def test_rename_without_directory_sync_is_undone(fs):
    child(fs, """
        write_file("CURRENT", b"old", sync=True)
        fsync_dir()
        write_file("CURRENT.tmp", b"new", sync=True)
        os.replace(P("CURRENT.tmp"), P("CURRENT"))
    """)
    res = fs.power_loss(random.Random(1))
    assert sorted(os.listdir(fs.root)) == ["CURRENT"]
    assert read(fs, "CURRENT") == b"old"
    assert len(res.files_restored) == 1


def test_rename_with_directory_sync_is_durable(fs):
    child(fs, """
        write_file("CURRENT", b"old", sync=True)
        fsync_dir()
        write_file("CURRENT.tmp", b"new", sync=True)
        os.replace(P("CURRENT.tmp"), P("CURRENT"))
        fsync_dir()
    """)
    fs.power_loss(random.Random(1))
    assert sorted(os.listdir(fs.root)) == ["CURRENT"]
    assert read(fs, "CURRENT") == b"new"


def test_unlink_without_directory_sync_comes_back(fs):
    child(fs, """
        write_file("t.sst", b"table" * 100, sync=True)
        fsync_dir()
        os.unlink(P("t.sst"))
        write_file("u.sst", b"gone", sync=True)
        os.unlink(P("u.sst"))
        fsync_dir()
    """)
    fs.power_loss(random.Random(1))
    assert sorted(os.listdir(fs.root)) == []
    child(fs, """
        write_file("t.sst", b"table" * 100, sync=True)
        fsync_dir()
        os.unlink(P("t.sst"))
    """)
    fs.power_loss(random.Random(1))
    assert read(fs, "t.sst") == b"table" * 100


def test_baseline_files_survive_untouched(fs):
    with open(os.path.join(fs.root, "old"), "wb") as fh:
        fh.write(b"o" * 777)
    fs.reset()
    child(fs, """
        fd = os.open(P("old"), os.O_WRONLY | os.O_APPEND)
        os.write(fd, b"more")                         # not synced
    """)
    fs.power_loss(random.Random(1))
    assert read(fs, "old") == b"o" * 777


MAPPED = """
libc = ctypes.CDLL(None, use_errno=True)
fd = os.open(P("000001.log"), os.O_RDWR | os.O_CREAT, 0o644)
assert libc.posix_fallocate(fd, ctypes.c_long(0), ctypes.c_long(8 * 4096)) == 0
m = mmap.mmap(fd, 8 * 4096, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
os.fsync(fd)
fsync_dir()
m[0:6000] = b"s" * 6000
m.flush(0, 8192)                                      # msync(MS_SYNC) of pages 0-1
m[6000:8 * 4096] = b"u" * (8 * 4096 - 6000)           # never synced
"""


def test_mapped_file_loses_unsynced_pages_page_by_page(fs):
    kept_pages = set()
    for seed in range(6):
        child(fs, MAPPED)
        ev = fs.events()
        assert any(e[0] == "M" for e in ev) and any(e[0] == "P" and e[5] is not None for e in ev)
        res = fs.power_loss(random.Random(seed))
        data = read(fs, "000001.log")
        assert len(data) == 8 * 4096
        assert data[:6000] == b"s" * 6000                  # synced
        # page 1 was synced with 6000-8191 zero; pages 2-7 never synced (zero)
        for p in range(1, 8):
            page = data[p * 4096:(p + 1) * 4096]
            new = (b"s" * 6000 + b"u" * (8 * 4096 - 6000))[p * 4096:(p + 1) * 4096]
            old = (b"s" * 6000 + bytes(8 * 4096 - 6000))[p * 4096:(p + 1) * 4096]
            assert page in (new, old), p
            if page == new:
                kept_pages.add(p)
        assert res.pages_lost + res.pages_written_back == 7
        os.unlink(os.path.join(fs.root, "000001.log"))
        fs.reset()
    assert 0 < len(kept_pages) <= 7                         # both outcomes occur


def test_writeback_policy_replaces_the_coin(fs):
    child(fs, MAPPED)
    fs.power_loss(random.Random(1), writeback=lambda names, page: page == 5)
    data = read(fs, "000001.log")
    assert data[5 * 4096:6 * 4096] == b"u" * 4096
    assert data[6000:5 * 4096] == bytes(5 * 4096 - 6000)
    assert data[6 * 4096:] == bytes(2 * 4096)


def test_files_outside_root_are_not_touched(fs, tmp_path):
    outside = tmp_path / "outside"
    child(fs, f"""
        with open({str(outside)!r}, "wb") as fh:
            fh.write(b"free")
        os.fsync(os.open({str(outside)!r}, os.O_RDONLY))
    """, rules="op=any,mode=persistent")
    assert outside.read_bytes() == b"free"
    assert [e for e in fs.events() if e[0] != "C"] == []
    assert fs.rule_counts() == {0: 0}          # the rule matched no call


def test_rule_counts_calibrate_nth(fs):
    child(fs, """
        fd = os.open(P("a.log"), os.O_WRONLY | os.O_CREAT, 0o644)
        for i in range(7):
            os.write(fd, b"x")
        os.fsync(fd)
    """, rules="op=write,path=*.log,nth=1000000;op=fsync,nth=1000000;op=write,path=*.sst,nth=5")
    assert fs.rule_counts() == {0: 7, 1: 1, 2: 0}
    assert fs.faults() == []


# ---------------------------------------------------------------- injected errors

def test_nth_fsync_fails_once_with_eio(fs):
    r = child(fs, """
        fd = os.open(P("f"), os.O_WRONLY | os.O_CREAT, 0o644)
        out = []
        for i in range(4):
            os.write(fd, b"x")
            try:
                os.fsync(fd)
                out.append("ok")
            except OSError as e:
                out.append(errno.errorcode[e.errno])
        print(",".join(out))
    """, rules="op=fsync,path=f,nth=2,errno=EIO")
    assert r.stdout.strip() == "ok,EIO,ok,ok"
    assert fs.faults() == [("fsync", errno.EIO, os.path.join(fs.root, "f"))]


def test_persistent_enospc_on_write_then_cleared_through_the_control_file(fs):
    fs.set_rules("op=write,path=*.sst,nth=3,errno=ENOSPC,mode=persistent")
    r = child(fs, f"""
        fd = os.open(P("a.sst"), os.O_WRONLY | os.O_CREAT, 0o644)
        other = os.open(P("a.log"), os.O_WRONLY | os.O_CREAT, 0o644)
        out = []
        for i in range(5):
            os.write(other, b"y")                      # does not match the glob
            try:
                os.write(fd, b"x")
                out.append("ok")
            except OSError as e:
                out.append(errno.errorcode[e.errno])
        tmp = {fs.control!r} + ".tmp"
        with open(tmp, "w") as fh:                     # what FaultFS.clear_rules() does
            fh.write("")
        os.replace(tmp, {fs.control!r})
        os.write(fd, b"z")
        out.append("cleared")
        print(",".join(out))
    """)
    assert r.stdout.strip() == "ok,ok,ENOSPC,ENOSPC,ENOSPC,cleared"
    assert len(fs.faults()) == 3


@pytest.mark.parametrize("op,code,expect", [
    ("pread", "os.pread(fd, 10, 0)", "EIO"),
    ("read", "os.read(fd, 10)", "EIO"),
    ("open", "os.open(P('f'), os.O_RDONLY)", "EIO"),     # the 3rd open (nth below)
    ("rename", "os.rename(P('f'), P('g'))", "EIO"),
    ("unlink", "os.unlink(P('f'))", "EIO"),
    ("ftruncate", "os.ftruncate(fd, 1)", "EIO"),
    ("fallocate", "os.posix_fallocate(fd, 0, 8192)", "ENOSPC"),
    ("fdatasync", "os.fdatasync(fd)", "EIO"),
])
def test_each_op_can_fail(fs, op, code, expect):
    r = child(fs, f"""
        write_file("f", b"0123456789abc")
        fd = os.open(P("f"), os.O_RDWR)
        try:
            {code}
            print("no error")
        except OSError as e:
            print(errno.errorcode[e.errno])
        print(sorted(os.listdir(root)))
    """, rules=f"op={op},errno={expect},nth={3 if op == 'open' else 1}")
    lines = r.stdout.split("\n")
    assert lines[0] == expect
    assert lines[1] == "['f']"          # the failed call did nothing
    assert [f[0] for f in fs.faults()] == [op]


def test_msync_fault_is_reported_and_not_journaled_as_durable(fs):
    r = child(fs, MAPPED.replace("m.flush(0, 8192)", """
try:
    m.flush(0, 8192)
    print("no error")
except OSError as e:
    print(errno.errorcode[e.errno])
"""), rules="op=msync,errno=EIO")
    assert r.stdout.strip() == "EIO"
    assert not any(e[0] == "P" and e[5] is not None for e in fs.events())
    fs.power_loss(random.Random(3), writeback=lambda names, page: False)
    assert read(fs, "000001.log") == bytes(8 * 4096)


def test_bad_rules_are_rejected_with_a_message():
    with pytest.raises(ValueError, match="op 'fsink'"):
        fi.parse_rules("op=fsink")
    with pytest.raises(ValueError, match="nth"):
        fi.parse_rules("op=fsync,nth=0")
    with pytest.raises(ValueError, match="errno"):
        fi.parse_rules("op=fsync,errno=EPERM")
    with pytest.raises(ValueError, match="no op="):
        fi.parse_rules("nth=3")
    with pytest.raises(ValueError, match="unknown fault rule key"):
        fi.parse_rules("op=write,count=2")
    assert fi.parse_rules("op=write,path=*.log,nth=3,errno=ENOSPC,mode=persistent; op=msync") == [
        {"op": "write", "path": "*.log", "nth": 3, "errno": "ENOSPC", "mode": "persistent"},
        {"op": "msync", "path": "*", "nth": 1, "errno": "EIO", "mode": "once"}]


def test_the_shim_aborts_on_a_rule_it_cannot_parse(fs):
    env = fs.env()
    env["LSMKV_FI_RULES"] = "op=fsync,nth=x"
    r = subprocess.run([sys.executable, "-c", "pass"], env=env, capture_output=True, text=True)
    assert r.returncode != 0
    assert "faultinject: nth must be an integer >= 1: x" in r.stderr
