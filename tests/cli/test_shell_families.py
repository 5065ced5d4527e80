"""The shell on a DB with column families: --cf NAME on its commands, families /
create-family / drop-family, verify over every family, and manifest-dump and
wal-dump showing which family an edit or a record is about."""
import json
import os
import subprocess
import sys

import lsmkv
from conftest import lsmkv_import_path


def run(*args):
    env = dict(os.environ, PYTHONPATH=lsmkv_import_path())
    return subprocess.run([sys.executable, "-m", "lsmkv", *map(str, args)], capture_output=True,
                          text=True, cwd="/", env=env, timeout=60)


def test_shell_column_families(dbpath):
    with lsmkv.DB(dbpath) as db:
        users = db.create_column_family("users", compression="none")
        db.put(b"k", b"d")
        users.put(b"k", b"u")
        users.flush()
    r = run(dbpath, "families")
    assert (r.returncode, r.stdout) == (0, "default\nusers\n"), r.stderr
    assert run(dbpath, "get", "--cf", "users", "k").stdout == "u\n"
    assert run(dbpath, "get", "k").stdout == "d\n"
    assert run(dbpath, "put", "--cf", "users", "k2", "v2").returncode == 0
    r = run(dbpath, "scan", "--cf", "users", "--json")
    assert [json.loads(x)["key"] for x in r.stdout.splitlines()] == ["k", "k2"], r.stderr
    r = run(dbpath, "get", "--cf", "nope", "k")
    assert r.returncode == 2 and "no column family 'nope'" in r.stderr
    r = run(dbpath, "verify", "--json")
    assert r.returncode == 0 and json.loads(r.stdout.splitlines()[-1])["summary"]["ok"], r.stderr
    r = run(dbpath, "manifest-dump", "--json")
    edits = [json.loads(x) for x in r.stdout.splitlines() if x.startswith("{")]
    assert any(e["create_family"] and e["create_family"]["name"] == "users" for e in edits), r.stdout
    # a write left in the log: wal-dump names its family
    code = ("import lsmkv, os\n"
            f"db = lsmkv.DB({dbpath!r})\n"
            "db.column_family('users').put(b'in-log', b'1')\n"
            "os._exit(0)\n")
    subprocess.run([sys.executable, "-c", code], check=True, cwd="/",
                   env=dict(os.environ, PYTHONPATH=lsmkv_import_path()))
    r = run(dbpath, "wal-dump", "--json")
    ops = [op for rec in map(json.loads, r.stdout.splitlines()) for op in rec.get("ops", [])]
    assert {"op": "PUT", "key": "in-log", "value": "1", "family": 1} in ops, r.stdout
    assert run(dbpath, "drop-family", "users").returncode == 0
    assert run(dbpath, "families").stdout == "default\n"
    assert run(dbpath, "create-family", "users").returncode == 0
    assert run(dbpath, "count", "--cf", "users").stdout == "0\n"
