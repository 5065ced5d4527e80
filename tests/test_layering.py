"""The package's layering (issue 17): no module reaches into another module's
underscore names, no import cycle among lsmkv's modules, and the DB handle shows
none of its engine's internals (tests use lsmkv.testing instead)."""
import os
import subprocess
import sys

import pytest

import lsmkv

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(lsmkv.__file__)))

# found by tools/check_private.py in files this change does not own; to be removed
# by their owners (repair.py's format code, the cli's argparse introspection)
KNOWN = set()      # findings accepted for now: none


def test_no_private_access_and_no_import_cycle():
    out = subprocess.run([sys.executable, os.path.join("tools", "check_private.py"), "lsmkv"],
                         cwd=ROOT, capture_output=True, text=True, check=True).stdout
    found = set(out.splitlines()) - KNOWN
    assert not found, "\n".join(sorted(found))


def test_the_handle_shows_no_engine_internals(tmp_path):
    with lsmkv.DB(str(tmp_path / "db")) as db:
        assert db.path == str(tmp_path / "db") and db.closed is False
        assert db.write_buffer_size == db.options.write_buffer_size
        for name in ("_versions", "_cache", "_spare_wal", "logs", "files", "writes", "mutex"):
            with pytest.raises(AttributeError):
                getattr(db, name)
        with pytest.raises(AttributeError):
            db._new_log = None
