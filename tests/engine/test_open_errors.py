"""lsmkv.DB(path) on a bad path: each refusal is an lsmkv.OpenError that is also the
OSError it stands for (errno, filename set), names the path, and changes nothing on disk.
Permission checks run in a child process, which drops root's privileges if it has them."""
import errno
import json
import os
import pickle

import pytest

import lsmkv
from conftest import lsmkv_import_path, run_child


def _tree(path):
    """Every name under path, with file contents: to show nothing changed."""
    out = {}
    for root, dirs, files in os.walk(path):
        for d in dirs:
            out[os.path.relpath(os.path.join(root, d), path)] = None
        for f in files:
            with open(os.path.join(root, f), "rb") as fh:
                out[os.path.relpath(os.path.join(root, f), path)] = fh.read()
    return out


def _check(e, cls, oserror, code, path, filename=None):
    assert type(e) is cls
    assert isinstance(e, lsmkv.OpenError) and isinstance(e, lsmkv.LsmkvError)
    assert isinstance(e, oserror)
    assert e.errno == code and e.strerror == os.strerror(code)
    assert e.path == path and e.filename == (filename or path)
    assert path in str(e) and "Errno" not in str(e)
    back = pickle.loads(pickle.dumps(e))
    assert (type(back), str(back), back.path, back.filename, back.errno) == \
        (cls, str(e), e.path, e.filename, e.errno)


def test_missing_directory_without_create_if_missing(tmp_path):
    path = str(tmp_path / "a" / "db")
    with pytest.raises(lsmkv.DatabaseNotFoundError) as ei:
        lsmkv.DB(path, create_if_missing=False)
    _check(ei.value, lsmkv.DatabaseNotFoundError, FileNotFoundError, errno.ENOENT, path)
    assert str(ei.value) == f"{path} does not exist (create_if_missing is false)"
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("content", [{}, {"notes.txt": b"mine", "sub": None}])
def test_directory_without_a_database_is_left_as_it_was(tmp_path, content):
    path = str(tmp_path)
    for name, data in content.items():
        if data is None:
            os.mkdir(os.path.join(path, name))
        else:
            with open(os.path.join(path, name), "wb") as fh:
                fh.write(data)
    before = _tree(path)
    with pytest.raises(FileNotFoundError) as ei:
        lsmkv.DB(path, create_if_missing=False)
    current = os.path.join(path, "CURRENT")
    _check(ei.value, lsmkv.DatabaseNotFoundError, FileNotFoundError, errno.ENOENT, path, current)
    assert str(ei.value) == f"no database in {path}: CURRENT does not exist (create_if_missing is false)"
    assert _tree(path) == before                   # no LOCK either


def test_an_existing_database_opens_without_create_if_missing(dbpath):
    with lsmkv.DB(dbpath, compaction_worker="thread") as db:
        db.put(b"k", b"v")
    with lsmkv.DB(dbpath, create_if_missing=False, compaction_worker="thread") as db:
        assert db.get(b"k") == b"v"


@pytest.mark.parametrize("create", [True, False])
def test_database_files_without_current_stay_a_corruption(dbpath, create):
    with lsmkv.DB(dbpath, compaction_worker="thread") as db:
        db.put(b"k", b"v")
    os.unlink(os.path.join(dbpath, "CURRENT"))
    with pytest.raises(lsmkv.CorruptionError, match="CURRENT is missing"):
        lsmkv.DB(dbpath, create_if_missing=create)


def test_a_file_is_not_a_database(tmp_path):
    f = str(tmp_path / "file")
    with open(f, "wb") as fh:
        fh.write(b"data")
    for path in (f, os.path.join(f, "db")):      # the path itself, or a directory on the way
        for create in (True, False):
            with pytest.raises(NotADirectoryError) as ei:
                lsmkv.DB(path, create_if_missing=create)
            _check(ei.value, lsmkv.NotADatabaseError, NotADirectoryError, errno.ENOTDIR, path)
            assert str(ei.value).startswith(f"{path} is not a directory")
    assert os.listdir(tmp_path) == ["file"]


def test_error_if_exists(dbpath):
    lsmkv.DB(dbpath, compaction_worker="thread").close()
    with pytest.raises(FileExistsError) as ei:
        lsmkv.DB(dbpath, error_if_exists=True)
    _check(ei.value, lsmkv.DatabaseExistsError, FileExistsError, errno.EEXIST, dbpath,
           os.path.join(dbpath, "CURRENT"))
    assert str(ei.value) == f"a database already exists at {dbpath} (error_if_exists is true)"
    lsmkv.DB(dbpath, compaction_worker="thread").close()    # the failed open released the lock


# The child makes a database, takes a permission away, opens it, and prints what it got
# as JSON. Running as root (which permissions do not stop) it first becomes nobody, in a
# directory it owns under /tmp (pytest's tmp_path is private to root).
PERMISSIONS = """
import json, os, shutil, sys, tempfile
sys.path.insert(0, sys.argv[1])
import lsmkv, lsmkv.engine.compaction
what, create, base = sys.argv[2], sys.argv[3] == "create", sys.argv[4]
if os.geteuid() == 0:
    os.setgid(65534)
    os.setuid(65534)
    base = tempfile.mkdtemp(dir="/tmp")
path = os.path.join(base, "db")
with lsmkv.DB(path, compaction_worker="thread") as db:
    db.put(b"k", b"v")
victim = path if what == "dir" else os.path.join(path, min(n for n in os.listdir(path) if n.startswith(what)))
os.chmod(victim, 0)
try:
    lsmkv.DB(path, compaction_worker="thread", create_if_missing=create)
    out = {"opened": True}
except Exception as e:
    out = {"type": type(e).__name__, "message": str(e), "path": getattr(e, "path", None),
           "filename": getattr(e, "filename", None), "errno": getattr(e, "errno", None),
           "permission": isinstance(e, PermissionError), "lsmkv": isinstance(e, lsmkv.LsmkvError),
           "victim": victim, "dbpath": path}
os.chmod(victim, 0o755 if what == "dir" else 0o644)
if base != sys.argv[4]:
    shutil.rmtree(base)
print(json.dumps(out))
"""


@pytest.mark.parametrize("what,create", [("dir", "create"), ("dir", "no"), ("CURRENT", "create"),
                                         ("LOCK", "create"), ("MANIFEST", "no")])
def test_permission_denied_is_a_database_permission_error(tmp_path, what, create):
    r = run_child(PERMISSIONS, lsmkv_import_path(), what, create, str(tmp_path))
    out = json.loads(r.stdout)
    assert out.get("type") == "DatabasePermissionError", out
    assert out["permission"] and out["lsmkv"] and out["errno"] in (errno.EACCES, errno.EPERM)
    assert out["path"] == out["dbpath"]
    # the first name refused: the file, or for the directory the first file looked up in it
    first = "LOCK" if create == "create" else "CURRENT"
    assert out["filename"] == (os.path.join(out["victim"], first) if what == "dir" else out["victim"])
    assert out["message"] == (f"cannot open the database at {out['dbpath']}: "
                              f"permission denied on {out['filename']}")


def test_every_open_error_is_exported():
    names = {"OpenError", "DatabaseNotFoundError", "DatabaseExistsError", "NotADatabaseError",
             "DatabasePermissionError"}
    assert names <= set(lsmkv.__all__)
    for name in names - {"OpenError"}:
        assert issubclass(getattr(lsmkv, name), (lsmkv.OpenError, OSError))
