"""System calls grouped into one GIL release each (lsmkv.core.fileio)."""
import errno
import os

import pytest

from lsmkv.core.fileio import append_sync, fsync_dir


def test_fsync_dir_and_its_error_names_the_directory(tmp_path):
    fsync_dir(tmp_path)
    fsync_dir(str(tmp_path))
    missing = tmp_path / "nope"
    with pytest.raises(FileNotFoundError) as e:
        fsync_dir(missing)
    assert str(missing) in str(e.value) and e.value.errno == errno.ENOENT


def test_append_sync_appends_at_the_end(tmp_path):
    path = tmp_path / "MANIFEST-000001"
    fd = os.open(path, os.O_RDWR | os.O_CREAT)
    try:
        append_sync(fd, b"first", path)
        os.lseek(fd, 0, os.SEEK_SET)             # append_sync seeks to the end itself
        append_sync(fd, b"|second", path, sync_dir=tmp_path)
        append_sync(fd, b"", path)
    finally:
        os.close(fd)
    assert path.read_bytes() == b"first|second"


def test_append_sync_failures_leave_the_file_as_it_was(tmp_path):
    path = tmp_path / "MANIFEST-000002"
    path.write_bytes(b"kept")
    fd = os.open(path, os.O_RDONLY)              # write() fails with EBADF
    try:
        with pytest.raises(OSError) as e:
            append_sync(fd, b"lost", path)
        assert e.value.errno == errno.EBADF and "write failed" in str(e.value) and str(path) in str(e.value)
    finally:
        os.close(fd)
    fd = os.open(path, os.O_RDWR)
    try:
        with pytest.raises(FileNotFoundError) as e:   # the directory fsync comes first
            append_sync(fd, b"lost", path, sync_dir=tmp_path / "gone")
        assert "gone" in str(e.value)
    finally:
        os.close(fd)
    assert path.read_bytes() == b"kept"
