"""The shell on a DB with merge operands: it opens a DB with the built-in operator
the DB records, its dumps name kind 3 MERGE, and a DB recording a callable's
operator is refused with one clear line."""
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


def test_shell_reads_and_dumps_merges(dbpath):
    with lsmkv.DB(dbpath, merge_operator=("append", b",")) as db:
        db.put(b"k", b"a")
        db.flush()
        db.merge(b"k", b"b")              # in the log only
    r = run(dbpath, "get", "k")
    assert (r.returncode, r.stdout) == (0, "a,b\n"), r.stderr
    r = run(dbpath, "wal-dump", "--json")
    assert r.returncode == 0, r.stderr
    ops = [op for rec in map(json.loads, r.stdout.splitlines()) for op in rec.get("ops", [])]
    assert {"op": "MERGE", "key": "k", "value": "b"} in ops, r.stdout
    r = run(dbpath, "put", "k2", "x")      # a writable open, with the recorded operator
    assert r.returncode == 0, r.stderr
    with lsmkv.DB(dbpath, merge_operator=("append", b",")) as db:
        assert db.get(b"k") == b"a,b" and db.get(b"k2") == b"x"


def test_shell_refuses_a_db_with_a_callables_operator(dbpath):
    def concat(key, existing, operands):
        return (existing or b"") + b"".join(operands)
    with lsmkv.DB(dbpath, merge_operator=concat) as db:
        db.merge(b"k", b"a")
    r = run(dbpath, "get", "k")
    assert r.returncode != 0 and "merge operator 'concat'" in r.stderr and "Traceback" not in r.stderr, r.stderr
