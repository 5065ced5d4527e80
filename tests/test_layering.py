"""The package's layering (issue 17): no module reaches into another module's
underscore names, no import cycle among lsmkv's modules, and the DB handle shows
none of its engine's internals (tests use lsmkv.testing instead)."""
import os
import subprocess
import sys

import pytest

import lsmkv

# the checkout (the source tree is checked, wherever lsmkv is installed from)
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# the standard library's own underscore names that tests use as documented
STDLIB = ("os._exit", "sys._getframe")


def check_private(*trees):
    out = subprocess.run([sys.executable, os.path.join("tools", "check_private.py"), *trees],
                         cwd=REPO, capture_output=True, text=True, check=True).stdout
    return sorted(line for line in out.splitlines() if not line.endswith(STDLIB))


def test_no_private_access_and_no_import_cycle():
    found = check_private("lsmkv")
    assert not found, "\n".join(found)


def test_tests_tools_and_bench_use_no_private_names():
    found = check_private("tests", "tools", "bench")
    assert not found, "\n".join(found)


def test_the_handle_shows_no_engine_internals(tmp_path):
    with lsmkv.DB(str(tmp_path / "db")) as db:
        assert db.path == str(tmp_path / "db") and db.closed is False
        assert db.write_buffer_size == db.options.write_buffer_size
        for name in ("_versions", "_cache", "_spare_wal", "logs", "files", "writes", "mutex"):
            with pytest.raises(AttributeError):
                getattr(db, name)
        with pytest.raises(AttributeError):
            setattr(db, "_new_log", None)
