# cython: language_level=3
"""File-system calls grouped so that each group releases the GIL once.

Why: every os.open / os.fsync / os.write releases the GIL and takes it back.
When a background thread takes the GIL back from a busy writer thread, the
writer's current put waits for it (up to the 5 ms switch interval, then for as
long as the background thread runs Python). Measured on a 3M-put fill with
compaction off: creating the next log took 8 os.* calls and lined up with ~7.6
puts >= 30 us per flush; grouped into one release it lined up with ~2.8
(docs/tuning.md, row 1). So background paths do their I/O here, one
`with nogil:` block per step.

Errors are raised as OSError with errno and the file's path.
"""
import os

from libc.errno cimport errno
from posix.unistd cimport close, fsync, write, lseek, ftruncate
from posix.fcntl cimport open as c_open, O_RDONLY, O_CLOEXEC
from posix.types cimport off_t

from lsmkv.core.includes.unistd cimport SEEK_END


cdef int c_fsync_dir(const char* path) noexcept nogil:
    """fsync a directory; 0, or the errno value of the failure."""
    cdef int fd = c_open(path, O_RDONLY | O_CLOEXEC)
    cdef int err = 0
    if fd < 0:
        return errno
    if fsync(fd) != 0:
        err = errno
    close(fd)
    return err


def fsync_dir(path):
    """Make a directory's entries durable."""
    cdef bytes p = os.fsencode(path)
    cdef const char* cp = p
    cdef int err
    with nogil:
        err = c_fsync_dir(cp)
    if err:
        raise OSError(err, f"fsync of directory {os.fsdecode(p)} failed: {os.strerror(err)}",
                      os.fsdecode(p))


def append_sync(int fd, const unsigned char[::1] record, path, sync_dir=None):
    """Append record at the end of fd and fsync it, all in one GIL release; with
    sync_dir, that directory is fsynced first. A failed write is cut off again
    (ftruncate to the old end) so later appends never follow a torn record."""
    cdef bytes d = os.fsencode(sync_dir) if sync_dir is not None else None
    cdef const char* dp = NULL
    cdef const unsigned char* p = &record[0] if record.shape[0] else NULL
    cdef size_t n = record.shape[0], done = 0
    cdef ssize_t w
    cdef off_t start = -1
    cdef int stage = 0, err = 0
    if d is not None:
        dp = d
    with nogil:
        if dp != NULL:
            err = c_fsync_dir(dp)
            if err:
                stage = 1
        if stage == 0:
            start = lseek(fd, 0, SEEK_END)
            if start < 0:
                stage = 2
            while stage == 0 and done < n:
                w = write(fd, p + done, n - done)
                if w < 0:
                    stage = 3
                else:
                    done += w
            if stage == 0 and fsync(fd) != 0:
                stage = 4
            if stage >= 2:
                err = errno
        if stage >= 3:
            ftruncate(fd, start)
    if stage == 1:
        raise OSError(err, f"fsync of directory {sync_dir} failed: {os.strerror(err)}", str(sync_dir))
    if stage:
        what = {2: "seek", 3: "write", 4: "fsync"}[stage]
        raise OSError(err, f"{what} failed: {path}: {os.strerror(err)}", str(path))
