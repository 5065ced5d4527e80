"""The shipped stubs type the public API: mypy --strict accepts a program that uses
DB, Snapshot and WriteBatch as users do, and reveals the element types a user relies
on (bytes, Optional[bytes], list[Optional[bytes]], tuple[bytes, bytes]).

mypy is in the project's test extras (pyproject.toml [project.optional-dependencies]
test), which .ci/run and the README's test command install; the test skips, saying
so, only where mypy cannot be imported.
"""
import os
import subprocess
import sys
import textwrap

import pytest

import lsmkv

pytest.importorskip("mypy", reason="mypy is not installed (pip install '.[test]' installs it)")

EXAMPLE = textwrap.dedent('''
    import tempfile
    from typing import Optional

    import lsmkv


    def main() -> None:
        d = tempfile.mkdtemp()
        db = lsmkv.DB(d, write_buffer_size=1 << 20)
        db.put(b"k", b"v", ttl=30)
        db[b"a"] = b"1"
        v: Optional[bytes] = db.get(b"k")
        w: bytes = db.get(b"k", b"")
        got: list[Optional[bytes]] = db.multi_get([b"k", b"a"])
        with_default: list[bytes] = db.multi_get([b"k"], b"-")
        for key, value in db.items(b"a", b"z", reverse=True):
            print(key.hex(), value.decode())
        keys: list[bytes] = list(db.keys()) + list(reversed(db)) + list(db)
        popped: bytes = db.pop(b"a")
        maybe: Optional[bytes] = db.pop(b"a", None)
        db.setdefault(b"s", b"x")
        db.update({b"m": b"1"})
        db.update([(b"n", b"2")])
        wb = db.write_batch()
        wb.put(b"b", b"2", ttl=5.0)
        wb.delete(b"c")
        other = lsmkv.WriteBatch()
        other.put(b"d", b"4", ttl=60)
        wb.append(other)
        db.write(wb, sync=True)
        with db.write_batch(sync=True) as wb2:
            wb2.put(b"e", b"5")
        with db.snapshot() as snap:
            s: Optional[bytes] = snap.get(b"k")
            sm: list[Optional[bytes]] = snap.multi_get([b"k"])
            sk: list[bytes] = list(snap)
            ttl: Optional[float] = snap.ttl(b"k")
        with db.transaction(sync=True) as txn:
            tv: Optional[bytes] = txn.get_for_update(b"k")
            td: bytes = txn.get(b"k", b"")
            txn.put(b"k", b"v2", ttl=10)
            txn.delete(b"a")
            txn.watch(b"w1", b"w2")
            titems: list[tuple[bytes, bytes]] = txn.items(b"a", prefix=b"k")
            with txn.iterator(prefix=b"k") as tit:
                tit.seek_for_prev(b"kz")
                first: tuple[bytes, bytes] = next(tit)
        try:
            db.transaction().commit()
        except lsmkv.ConflictError as conflict:
            print(conflict.key)
        users = db.create_column_family("users", default_ttl=3600.0)
        users.put(b"u", b"1", ttl=None)
        users.update({b"v": b"2"})
        fam_keys: int = users.estimate_num_keys() + users.approximate_size()
        uv: Optional[bytes] = users.get(b"u")
        print(users.name, users.stats()["default_ttl"], fam_keys, uv, db.list_column_families())
        size: int = db.approximate_size(b"a", b"z")
        n: int = db.estimate_num_keys()
        tables: int = db.checkpoint(d + "-copy")
        stats = db.stats()
        db.close()
        lsmkv.destroy(d + "-copy")
        report = lsmkv.repair(d)
        print(v, w, got, with_default, keys, popped, maybe, s, sm, sk, ttl, size, n, tables,
              stats["puts"], report.lost_anything, tv, td, titems, first)
        reveal_type(db.get(b"k"))
        reveal_type(db.multi_get([b"k"]))


    main()
''')


def mypy_env(root):
    """The environment mypy runs in: a source checkout is put on MYPYPATH; an
    installed lsmkv (CI) is found in site-packages, which mypy refuses on MYPYPATH."""
    if os.path.basename(root) in ("site-packages", "dist-packages"):
        return dict(os.environ)
    return dict(os.environ, MYPYPATH=root)


def test_mypy_strict_accepts_the_example(tmp_path):
    prog = tmp_path / "example.py"
    prog.write_text(EXAMPLE)
    root = os.path.dirname(os.path.dirname(os.path.abspath(lsmkv.__file__)))
    env = mypy_env(root)
    r = subprocess.run([sys.executable, "-m", "mypy", "--strict", "--follow-imports=silent",
                        "--no-incremental", "--cache-dir", os.devnull, "--python-version",
                        f"{sys.version_info.major}.{sys.version_info.minor}", str(prog)],
                       capture_output=True, text=True, env=env, cwd=str(tmp_path), timeout=600)
    out = r.stdout + r.stderr
    assert "error:" not in out.replace("note: Revealed type", ""), out
    # mypy spells a union "bytes | None" or "Union[builtins.bytes, None]" by version
    revealed = [line.split("Revealed type is ", 1)[1] for line in out.splitlines()
                if "Revealed type is " in line]
    norm = [t.replace("builtins.", "").replace("Union[bytes, None]", "bytes | None") for t in revealed]
    assert norm == ['"bytes | None"', '"list[bytes | None]"'], out


def test_mypy_strict_rejects_a_wrong_use(tmp_path):
    """The check can fail: str keys and a positional ttl are type errors."""
    prog = tmp_path / "wrong.py"
    prog.write_text("import lsmkv\n\ndef f(db: lsmkv.DB) -> None:\n    db.put('k', b'v')\n"
                    "    lsmkv.WriteBatch().put(b'k', b'v', 5)\n"
                    "    x: bytes = db.get(b'k')\n")
    root = os.path.dirname(os.path.dirname(os.path.abspath(lsmkv.__file__)))
    r = subprocess.run([sys.executable, "-m", "mypy", "--strict", "--follow-imports=silent",
                        "--no-incremental", "--cache-dir", os.devnull, str(prog)],
                       capture_output=True, text=True, env=mypy_env(root), cwd=str(tmp_path),
                       timeout=600)
    assert r.stdout.count("error:") >= 3, r.stdout
