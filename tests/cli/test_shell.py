"""The lsmkv shell (lsmkv.cli.shell): one-shot commands run as `python -m lsmkv` in a
child process, the REPL through a pseudo-terminal (pexpect), and the pure
helpers (escaping, key ranges, the dump format) in process."""
import base64
import glob
import json
import os
import signal
import subprocess
import time
import sys

import pytest
from conftest import lsmkv_import_path

import lsmkv
from lsmkv.cli import shell
from lsmkv.cli.format import (
    Codec,
    DumpFormatError,
    DumpReader,
    Progress,
    dump_line,
    escape,
)


def run(*args, input=None, cwd=None, env_extra=None, timeout=30):
    """Run `python -m lsmkv ARGS` with this checkout's lsmkv; CompletedProcess (text).
    A child still running after timeout gets SIGABRT, so faulthandler prints where
    each of its threads was, and the test fails with that."""
    env = dict(os.environ, PYTHONPATH=lsmkv_import_path(), PYTHONFAULTHANDLER="1")
    env.pop("LSMKV_DEBUG", None)
    env.update(env_extra or {})
    argv = [sys.executable, "-m", "lsmkv", *map(str, args)]
    with subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True, cwd=cwd or "/", env=env) as p:
        try:
            out, err = p.communicate(input, timeout=timeout)
        except subprocess.TimeoutExpired:
            p.send_signal(signal.SIGABRT)
            out, err = p.communicate()
            pytest.fail(f"{argv} hung for {timeout} s; its threads:\n{err}")
    return subprocess.CompletedProcess(argv, p.returncode, out, err)


def ok(*args, **kw):
    r = run(*args, **kw)
    assert r.returncode == 0, (args, r.returncode, r.stdout, r.stderr)
    return r.stdout


def one_error_line(r, code, *needles):
    """r failed with code and one stderr line `lsmkv: ...` containing every needle."""
    assert r.returncode == code, (r.returncode, r.stdout, r.stderr)
    lines = r.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("lsmkv: "), r.stderr
    assert "Traceback" not in r.stderr
    for n in needles:
        assert n in lines[0], (n, lines[0])


def contents(path):
    """Every (key, value) and TTL presence of a DB, read in process."""
    with lsmkv.DB(path) as db:
        return [(k, v, db.ttl(k) is not None) for k, v in db.items()]


@pytest.fixture
def filled(dbpath):
    """A DB with a few text keys, a binary key and a TTL key, flushed to a table."""
    with lsmkv.DB(dbpath) as db:
        for k in ("a", "b", "c", "p/1", "p/2", "p/3", "z"):
            db.put(k.encode(), f"v-{k}".encode())
        db.put(b"\x00bin\xff", b"\x01\x02\x80")
        db.put(b"t", b"expiring", ttl=3600)
        db.flush()
    return dbpath


# ---------------------------------------------------------------- basic commands

def test_put_get_delete_roundtrip(dbpath):
    ok(dbpath, "put", "hello", "world")
    assert ok(dbpath, "get", "hello") == "world\n"
    ok(dbpath, "delete", "hello")
    one_error_line(run(dbpath, "get", "hello"), 1, "not found", "hello")
    assert ok(dbpath, "put", "k", "v") == ""
    assert json.loads(ok(dbpath, "get", "k", "--json")) == {"key": "k", "value": "v"}


def test_hex_and_base64_keys_and_values(dbpath):
    key, value = b"\xff\x00k\x80", b"\xc3\x28\x00\x1b"      # neither is valid UTF-8
    ok("--hex", dbpath, "put", key.hex(), value.hex())
    assert ok(dbpath, "get", "--hex", key.hex()) == value.hex() + "\n"
    b64 = base64.b64encode(key).decode()
    assert ok("--base64", dbpath, "get", b64) == base64.b64encode(value).decode() + "\n"
    ok(dbpath, "put", "--base64", base64.b64encode(b"k2").decode(), base64.b64encode(b"\xfe").decode())
    assert contents(dbpath) == [(b"k2", b"\xfe", False), (key, value, False)]
    one_error_line(run(dbpath, "get", "--hex", "zz"), 2, "not valid hex")
    one_error_line(run(dbpath, "get", "--base64", "@@@"), 2, "not valid base64")


def test_text_output_escapes_control_bytes(dbpath):
    ok("--hex", dbpath, "put", b"k\tey".hex(), b"\x1b[2J\n\x00\xff\\ok \xc3\xa9".hex())
    out = ok(dbpath, "scan")
    assert out == "k\\tey\t\\x1b[2J\\n\\x00\\xff\\\\ok \u00e9\n"
    assert "\x1b" not in out and "\x00" not in out
    assert ok(dbpath, "get", "k\tey") == "\\x1b[2J\\n\\x00\\xff\\\\ok \u00e9\n"


def test_scan_range_prefix_reverse_limit_keys_only(filled):
    def keys(*opts):
        return ok(filled, "scan", "--keys-only", *opts).splitlines()
    assert keys() == ["\\x00bin\\xff", "a", "b", "c", "p/1", "p/2", "p/3", "t", "z"]
    assert keys("--start", "b", "--stop", "p/2") == ["b", "c", "p/1"]
    assert keys("--prefix", "p/") == ["p/1", "p/2", "p/3"]
    assert keys("--prefix", "p/", "--start", "p/2") == ["p/2", "p/3"]
    assert keys("--prefix", "p/", "--reverse", "--limit", "2") == ["p/3", "p/2"]
    assert keys("--start", "zz") == []
    assert ok(filled, "scan", "--prefix", "p/", "--limit", "1") == "p/1\tv-p/1\n"
    rows = [json.loads(line) for line in ok(filled, "scan", "--json", "--start", "z").splitlines()]
    assert rows == [{"key": "z", "value": "v-z"}]
    one_error_line(run(filled, "scan", "--limit", "-1"), 2, "--limit")


def test_count(filled):
    assert ok(filled, "count") == "9\n"
    assert ok(filled, "count", "--prefix", "p/") == "3\n"
    assert ok(filled, "count", "--start", "b", "--stop", "d") == "2\n"
    assert json.loads(ok(filled, "count", "--json")) == {"count": 9}


def test_ttl(dbpath):
    t0 = time.monotonic()
    ok(dbpath, "put", "temp", "x", "--ttl", "100")
    ok(dbpath, "put", "perm", "y")
    left = float(ok(dbpath, "ttl", "temp"))
    # the TTL counts down from the put: by no more than the time the commands took
    assert 100 - (time.monotonic() - t0) - 0.01 <= left <= 100
    assert ok(dbpath, "ttl", "perm") == "none\n"
    one_error_line(run(dbpath, "ttl", "absent"), 1, "not found")
    one_error_line(run(dbpath, "put", "k", "v", "--ttl", "0"), 2, "--ttl")


def test_delete_range_is_one_range_tombstone(filled):
    assert ok(filled, "delete-range", "b", "p/3") == "deleted 4 keys\n"
    # wal-dump opens no DB (which would replay the log into a table), so the
    # log still holds the delete-range's write: one record of one range tombstone
    records = [json.loads(x) for x in ok(filled, "wal-dump", "--json").splitlines()]
    assert [r["count"] for r in records] == [1]
    assert [(op["op"], op["key"], op["value"]) for op in records[0]["ops"]] == [("RANGE_DELETE", "b", "p/3")]
    assert ok(filled, "scan", "--keys-only").split() == ["\\x00bin\\xff", "a", "p/3", "t", "z"]


# ---------------------------------------------------------------- dump, load, checkpoint

def test_dump_then_load_gives_identical_contents(filled, tmp_path):
    dump = tmp_path / "dump.txt"
    ok(filled, "dump", "--out", dump)
    text = dump.read_text()
    assert text.startswith("# lsmkv-dump 1 encoding=base64\n")
    assert len(text.splitlines()) == 10
    ttl_line = [line for line in text.splitlines() if line.startswith(base64.b64encode(b"t").decode() + "\t")]
    assert 3500 < float(ttl_line[0].split("\t")[2]) <= 3600
    assert ok(tmp_path / "copy", "load", dump) == "loaded 9 entries\n"
    assert contents(tmp_path / "copy") == contents(filled)
    # the JSON and hex forms load too
    (tmp_path / "d.json").write_text(ok(filled, "dump", "--json"))
    ok(tmp_path / "copy2", "load", tmp_path / "d.json")
    (tmp_path / "d.hex").write_text(ok("--hex", filled, "dump"))
    ok(tmp_path / "copy3", "load", tmp_path / "d.hex")
    assert contents(tmp_path / "copy2") == contents(tmp_path / "copy3") == contents(filled)


def test_load_rejects_a_malformed_dump(tmp_path, dbpath):
    bad = tmp_path / "bad.txt"
    bad.write_text("# lsmkv-dump 1 encoding=base64\nYQ==\tYg==\nnot base64!\tx\n")
    one_error_line(run(dbpath, "load", bad), 3, "line 3")
    one_error_line(run(dbpath, "load", tmp_path / "missing.txt"), 3, "missing.txt")


def test_checkpoint_opens_with_identical_contents(filled, tmp_path):
    ok(filled, "put", "unflushed", "in-the-log")          # only in the WAL: checkpoint flushes
    cp = tmp_path / "cp"
    assert "checkpoint of" in ok(filled, "checkpoint", cp)
    assert sorted(n for n in os.listdir(cp) if n.endswith(".sst")) == \
        sorted(n for n in os.listdir(filled) if n.endswith(".sst"))
    assert not glob.glob(str(cp / "*.log")) and not os.path.exists(cp / "LOCK")
    assert contents(cp) == contents(filled)
    assert (b"unflushed", b"in-the-log", False) in contents(cp)
    one_error_line(run(filled, "checkpoint", cp), 3, "not empty")


# ---------------------------------------------------------------- verify and the dumps

def _flip(path, offset):
    with open(path, "r+b") as fh:
        fh.seek(offset)
        b = fh.read(1)
        fh.seek(offset)
        fh.write(bytes([b[0] ^ 0xFF]))


def test_verify_passes_then_names_file_and_offset_of_damage(filled):
    out = ok(filled, "verify")
    assert out.splitlines()[-1] == "OK: 1 files, 9 entries, 0 problems"
    (sst,) = glob.glob(os.path.join(filled, "*.sst"))
    _flip(sst, 10)                         # inside data block 0, which starts at offset 0
    r = run(filled, "verify")
    one_error_line(r, 3, "corruption in", sst, "at offset 0")
    assert "CORRUPT" in r.stdout and r.stdout.splitlines()[-1].startswith("FAILED")


def test_sst_dump(filled):
    (sst,) = glob.glob(os.path.join(filled, "*.sst"))
    props = ok("sst-dump", sst, "--show-properties")
    assert "num_entries: 9" in props and "smallest_key: \\x00bin\\xff" in props
    scan = ok("sst-dump", sst, "--scan").splitlines()[1:]
    assert len(scan) == 9 and scan[1].startswith("a\tseq=") and scan[1].endswith("\tPUT\tv-a")
    assert any("\tPUT_TTL\texpiring\texpiry_ms=" in line for line in scan)
    doc = json.loads(ok("sst-dump", sst, "--verify", "--scan", "--json"))
    assert doc["verify"] == {"ok": True, "entries": 9} and len(doc["entries"]) == 9
    # in the DB's directory form, a table number is enough
    assert json.loads(ok(filled, "sst-dump", str(int(os.path.basename(sst)[:-4])), "--json"))["bytes"] > 0
    _flip(sst, 10)
    one_error_line(run("sst-dump", sst, "--verify"), 3, "corruption in", "at offset 0")
    one_error_line(run("sst-dump", os.path.join(filled, "CURRENT")), 3, "corruption", "CURRENT")


def test_sst_dump_layout(filled):
    """--layout: the bytes of each kind of block, summing to the file's size."""
    (sst,) = glob.glob(os.path.join(filled, "*.sst"))
    doc = json.loads(ok("sst-dump", sst, "--layout", "--json"))
    parts = doc["layout"]
    assert set(parts) == {"data", "dictionary", "filter", "index", "properties", "footer"}
    assert sum(parts.values()) == doc["bytes"] == os.path.getsize(sst)
    assert parts["data"] > 0 and parts["filter"] > 5 and parts["footer"] == 80 and "properties" not in doc
    text = ok("sst-dump", sst, "--layout")
    assert "  layout: data " in text and "num_entries" not in text


def test_sst_dump_shows_range_tombstones(filled):
    ok(filled, "delete-range", "b", "p/3")
    ok(filled, "flush")
    (sst,) = sorted(glob.glob(os.path.join(filled, "*.sst")))[-1:]
    doc = json.loads(ok("sst-dump", sst, "--scan", "--layout", "--json"))
    assert [(e["key"], e["kind"], e["value"]) for e in doc["entries"]] == [("b", "RANGE_DELETE", "p/3")]
    assert sum(doc["layout"].values()) == os.path.getsize(sst) and doc["layout"]["range_del"] > 5
    assert ok(filled, "verify").splitlines()[-1].startswith("OK: 2 files")
    assert ok(filled, "scan", "--keys-only").split() == ["\\x00bin\\xff", "a", "p/3", "t", "z"]


def test_manifest_dump_and_wal_dump(filled):
    edits = [json.loads(x) for x in ok(filled, "manifest-dump", "--json").splitlines()]
    assert edits[0]["marker"] is True
    added = [f for e in edits for f in e["added"]]
    (sst,) = glob.glob(os.path.join(filled, "*.sst"))
    assert [f["file"] for f in added] == [int(os.path.basename(sst)[:-4])]
    assert added[0]["entries"] == 9 and added[0]["smallest"] == "\\x00bin\\xff"
    assert "add L0" in ok(filled, "manifest-dump")
    # one REPL process writes both, so both stay in its log (the next open replays it)
    assert run(filled, input="delete a\nput w 1 --ttl 60\n").returncode == 0
    recs = [json.loads(x) for x in ok(filled, "wal-dump", "--json").splitlines()]
    ops = [op for r in recs for op in r["ops"]]
    assert [(o["op"], o["key"]) for o in ops] == [("DELETE", "a"), ("PUT_TTL", "w")]
    assert ops[1]["value"] == "1" and ops[1]["expiry_ms"] > 0
    assert recs[1]["sequence"] == recs[0]["sequence"] + 1
    text = ok(filled, "wal-dump")
    assert "DELETE\ta" in text and "seq=" in text


def test_file_dumps_on_a_missing_db_fail_cleanly(tmp_path):
    for cmd in ("manifest-dump", "wal-dump", "get k", "verify"):
        r = run(tmp_path / "nope", *cmd.split())
        one_error_line(r, 3, "no database")
    assert not os.path.exists(tmp_path / "nope")


# ---------------------------------------------------------------- errors, read-only

def test_locked_db_reads_but_a_write_exits_3_with_one_line(filled):
    """Read commands open read-only, so they work on a DB another process holds;
    a write command needs the LOCK."""
    with lsmkv.DB(filled) as db:
        db.put(b"held", b"by-the-holder")           # in the holder's log only
        assert ok(filled, "get", "a") == "v-a\n" and ok(filled, "get", "held") == "by-the-holder\n"
        assert ok(filled, "count").strip().isdigit()
        names = sorted(os.listdir(filled))
        r = run(filled, "put", "a", "b")
        one_error_line(r, 3, "locked")
        assert r.stderr == f"lsmkv: {filled} is locked by another process (pid {os.getpid()})\n"
        assert sorted(os.listdir(filled)) == names        # the reads wrote nothing


def test_usage_errors_exit_2(dbpath):
    r = run()
    assert r.returncode == 2 and "DBPATH" in r.stderr
    one_error_line(run(dbpath, "frobnicate"), 2, "frobnicate")
    one_error_line(run(dbpath, "get"), 2, "key")
    one_error_line(run(dbpath, "put", "k", "v", "--ttl", "soon"), 2, "--ttl")
    assert "delete-range" in ok("--help") and "range tombstone" in ok(dbpath, "delete-range", "--help")


def test_read_only_commands_do_not_change_the_data(filled, tmp_path):
    before = contents(filled)
    for cmd in ("get a", "scan", "count", "ttl t", "stats", "dump", "verify", "manifest-dump",
                "wal-dump"):
        assert run(filled, *cmd.split()).returncode == 0, cmd
    assert contents(filled) == before
    st = json.loads(ok(filled, "stats", "--json"))
    assert st["last_sequence"] >= 9 and sum(lv["files"] for lv in st["levels"]) == 1
    assert "level  files" in ok(filled, "stats")


def test_compact_and_flush(filled):
    ok(filled, "put", "new", "1")
    ok(filled, "flush")
    ok(filled, "compact", "--start", "a", "--stop", "zz")
    st = json.loads(ok(filled, "stats", "--json"))
    assert st["levels"][0]["files"] == 0 and sum(lv["files"] for lv in st["levels"]) >= 1
    assert ok(filled, "get", "new") == "1\n" and ok(filled, "count") == "10\n"


# ---------------------------------------------------------------- REPL

def test_repl_reads_commands_from_a_pipe(filled):
    r = run(filled, input="get a\nput q 7\n# a comment\n\nget q\nscan --prefix p/ --keys-only\nquit\nget b\n")
    assert r.returncode == 0, r.stderr
    assert r.stdout == "v-a\n7\np/1\np/2\np/3\n"
    r = run(filled, input="get missing\n")
    assert r.returncode == 1 and r.stderr == "lsmkv: key not found: missing\n"


def test_repl_interactive(filled, tmp_path):
    pexpect = pytest.importorskip("pexpect", reason="pexpect is needed to drive the REPL through a pty")
    home = tmp_path / "home"
    home.mkdir()
    env = dict(os.environ, PYTHONPATH=lsmkv_import_path(), HOME=str(home), TERM="dumb")
    child = pexpect.spawn(sys.executable, ["-m", "lsmkv", filled], env=env, cwd="/",
                          encoding="utf-8", timeout=20)
    try:
        child.expect_exact("lsmkv> ")
        child.sendline("put k1 hello")
        child.expect_exact("lsmkv> ")
        child.sendline("get k1")
        child.expect_exact("hello")
        child.expect_exact("lsmkv> ")
        child.sendline("help")
        child.expect_exact("delete-range")
        child.expect_exact("lsmkv> ")
        child.send("coun\t")                   # completes to "count "
        child.send("--prefix k\r")
        child.expect(r"count --prefix k\r?\n1\r?\n")
        child.expect_exact("lsmkv> ")
        child.sendline("quit")
        child.expect(pexpect.EOF)
    finally:
        child.close()
    assert child.exitstatus == 0
    assert "put k1 hello" in (home / ".lsmkv_history").read_text()
    # the DB stayed open across commands: the put is there after the REPL closed it
    assert (b"k1", b"hello", False) in contents(filled)


def test_repl_ctrl_d_leaves(filled, tmp_path):
    pexpect = pytest.importorskip("pexpect", reason="pexpect is needed to drive the REPL through a pty")
    env = dict(os.environ, PYTHONPATH=lsmkv_import_path(), HOME=str(tmp_path), TERM="dumb")
    child = pexpect.spawn(sys.executable, ["-m", "lsmkv", filled], env=env, cwd="/",
                          encoding="utf-8", timeout=20)
    child.expect_exact("lsmkv> ")
    child.sendeof()
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0


# ---------------------------------------------------------------- helpers, in process

@pytest.mark.parametrize("raw, shown", [
    (b"plain text", "plain text"),
    (b"caf\xc3\xa9", "caf\u00e9"),
    (b"\x00\x1f\x7f", "\\x00\\x1f\\x7f"),
    (b"a\\b", "a\\\\b"),
    (b"\xe2\x80\xa8", "\\u2028"),           # a line separator must not break the line
    (b"\xc2\x9b", "\\x9b"),                 # C1 control (CSI)
    (b"\xff\xfe", "\\xff\\xfe"),
])
def test_escape(raw, shown):
    assert escape(raw) == shown
    assert escape(raw).isprintable()


def test_prefix_end_and_scan_range():
    assert shell.prefix_end(b"p/") == b"p0"
    assert shell.prefix_end(b"a\xff\xff") == b"b"
    assert shell.prefix_end(b"\xff") is None
    c = Codec("text")
    assert shell.scan_range(c, "b", None, "a") == (b"b", b"b")
    assert shell.scan_range(c, None, "a5", "a") == (b"a", b"a5")


def test_dump_reader():
    r = DumpReader("d")
    assert r.parse(1, "# lsmkv-dump 1 encoding=hex\n") is None
    assert r.parse(2, dump_line(b"k", b"", 1.5, "hex")) == (b"k", b"", 1.5)
    for bad in ("zz\t00\n", "00\n", "00\t00\t-1\n", "00\t00\tx\n"):
        with pytest.raises(DumpFormatError):
            r.parse(3, bad)
    with pytest.raises(DumpFormatError):
        DumpReader("d").parse(1, "# lsmkv-dump 2 encoding=base64")


class _Stream:
    def __init__(self, tty):
        self.tty, self.data = tty, ""

    def isatty(self):
        return self.tty

    def write(self, s):
        self.data += s

    def flush(self):
        pass


def test_progress_only_on_a_tty():
    tty, pipe = _Stream(True), _Stream(False)
    for stream in (tty, pipe):
        with Progress("load", total=200, unit=" bytes", stream=stream) as p:
            p.update(50)
    assert tty.data.startswith("\rload: 50/200 bytes (25%)") and tty.data.endswith("\r\x1b[K")
    assert pipe.data == ""
