"""The database directory's LOCK: one holder at a time, across processes and
within this one. lsmkv.engine.db.DB holds it while open, lsmkv.engine.repair.repair while it runs.

  * Across processes: an exclusive POSIX record lock (fcntl F_SETLK, as
    fcntl.lockf takes it) on the file LOCK in the directory, opened O_CLOEXEC.
    When another process holds it, the LockError names that process's pid, read
    with fcntl F_GETLK. The holder also writes its pid into LOCK (and empties
    it at release), for people to read: the lock, not the content, is what counts.
  * Within this process: a registry of the directories' real paths. POSIX locks
    belong to a process (a second lock from the same process succeeds) and
    closing any descriptor of the file drops the process's lock, so the
    registry refuses a second holder before LOCK is opened again.

Fork: a forked child inherits the descriptors but none of the parent's POSIX
locks. A hook (os.register_at_fork) closes in the child every LOCK descriptor it
inherited and empties the registry: the child then gets a LockError naming the
parent while the parent holds the lock, and can take it itself once the parent
has released it. A DirLock inherited by a child is not held there, and its
release() closes nothing (the descriptor number may have been reused since).

Thread safety: acquire() and release() may be called from any thread; each runs
entirely under the registry lock (only non-blocking system calls: open, F_SETLK,
F_GETLK, a small write, close). A fork takes the registry lock first and releases
it in the parent, and the child starts with a new one, so the child never sees
the registry or a DirLock half-changed, nor a lock held by a thread it lacks.

Invariants:
  1. A real path is in the registry exactly while a DirLock of this process holds
     the fcntl lock on its LOCK (both change together under the registry lock).
  2. A lock's descriptor is closed once: by release() in the process that opened
     it, or by the fork hook in a child. lsmkv opens no other descriptor of a
     LOCK this process holds (closing it would drop the lock).
  3. acquire() creates nothing in the directory but LOCK, and the directory must exist.
  4. A lock is held on the file that is LOCK when acquire() returns: a lock taken
     on a LOCK that lsmkv.destroy() unlinked meanwhile is let go and taken again
     on the new one, so two openers never both think they hold the directory.
"""
import fcntl
import os
import struct
import sys
import threading

from lsmkv.engine import filenames
from lsmkv.errors import LockError

_registry = {}                  # real path -> the DirLock of this process holding it
_registry_lock = threading.RLock()   # reentrant: a finalizer the garbage collector runs
#                                     while this thread holds it may release another DB's lock

# struct flock for F_GETLK: l_type, l_whence, l_start, l_len, l_pid, padded to the
# alignment of off_t (Linux; 32 bytes on x86_64 and aarch64). Elsewhere the holder's
# pid is not read and the message says "another process" only.
_FLOCK = "hhqqi0q" if sys.platform.startswith("linux") else None


def holder_pid(fd):
    """The pid of a process whose lock on fd's file keeps an exclusive lock out
    (fcntl F_GETLK over the whole file): 0 when there is none, None when it cannot
    be told (not Linux, or a lock without a pid, such as an NFS lock). This
    process's own lock is never reported (a process does not conflict with itself).

    >>> import os, tempfile
    >>> fd = os.open(os.path.join(tempfile.mkdtemp(), "LOCK"), os.O_RDWR | os.O_CREAT)
    >>> holder_pid(fd)
    0
    >>> os.close(fd)
    """
    if _FLOCK is None:
        return None
    try:
        reply = fcntl.fcntl(fd, fcntl.F_GETLK, struct.pack(_FLOCK, fcntl.F_WRLCK, os.SEEK_SET, 0, 0, 0))
    except OSError:
        return None
    l_type, _, _, _, pid = struct.unpack(_FLOCK, reply)
    if l_type == fcntl.F_UNLCK:
        return 0
    return pid if pid > 0 else None


def _lock(fd, path):
    """Take the exclusive lock on fd or raise a LockError naming the holder."""
    for _ in range(3):            # a holder gone between F_SETLK and F_GETLK: try again
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except OSError:
            pid = holder_pid(fd)
        if pid != 0:
            break
    who = f" (pid {pid})" if pid else ""
    raise LockError(f"{path} is locked by another process{who}")


def _write_pid(fd, pid):
    try:
        os.ftruncate(fd, 0)
        if pid:
            os.pwrite(fd, b"%d\n" % pid, 0)
    except OSError:
        pass               # informational only


def _same_file(fd, path):
    """Whether the open file fd is the one at path now."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return False
    own = os.fstat(fd)
    return (own.st_ino, own.st_dev) == (st.st_ino, st.st_dev)


class DirLock:
    """The LOCK of a database directory, held by this process (see the module
    docstring). Made by DirLock.acquire(); released by release() or by leaving
    a `with` block.

    Never open LOCK otherwise in the holding process: closing that descriptor
    would drop the lock (POSIX locks belong to the process, not the descriptor).

    >>> import os, tempfile
    >>> from lsmkv.engine.dirlock import DirLock
    >>> d = tempfile.mkdtemp()
    >>> with DirLock.acquire(d, "an example") as lock:
    ...     lock.held, os.listdir(d)
    (True, ['LOCK'])
    >>> lock.held, open(os.path.join(d, "LOCK")).read()     # emptied at release
    (False, '')
    """

    def __init__(self, path, real, purpose, fd):
        self.path = path
        self.purpose = purpose
        self._real = real
        self._fd = fd
        self._pid = os.getpid()

    @classmethod
    def acquire(cls, path, purpose):
        """Lock the database directory `path` (which must exist; LOCK is created in
        it if missing) for `purpose`, a few words naming the holder that the
        LockError of a second acquire in this process shows. Raises LockError if
        this process or another one holds it, OSError if LOCK cannot be opened.

        >>> import tempfile
        >>> from lsmkv.engine.dirlock import DirLock
        >>> d = tempfile.mkdtemp()
        >>> lock = DirLock.acquire(d, "a backup")
        >>> DirLock.acquire(d, "a DB")
        Traceback (most recent call last):
          ...
        lsmkv.errors.LockError: ... is already open in this process (by a backup)
        >>> lock.release()
        >>> DirLock.acquire(d, "a DB").release()
        """
        path = os.path.abspath(os.fspath(path))
        real = os.path.realpath(path)
        with _registry_lock:
            holder = _registry.get(real)
            if holder is not None:
                if holder._pid == os.getpid():
                    raise LockError(f"{path} is already open in this process (by {holder.purpose})")
                del _registry[real]    # inherited through a fork the hook did not see: not ours
            for attempt in range(100):
                fd = os.open(filenames.lock_name(path), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
                try:
                    _lock(fd, path)
                except BaseException:
                    os.close(fd)       # this process holds no lock on the file: nothing dropped
                    raise
                # lsmkv.destroy() unlinks LOCK while holding it: a lock taken on the
                # file it unlinked (opened just before) locks nothing anyone checks
                if _same_file(fd, filenames.lock_name(path)):
                    break
                os.close(fd)
            else:
                raise LockError(f"{path}: its LOCK file keeps being replaced")
            _write_pid(fd, os.getpid())
            lock = _registry[real] = cls(path, real, purpose, fd)
            return lock

    @property
    def held(self):
        """Whether this process holds the lock through this DirLock (False once
        released, and in a forked child).

        >>> import os, tempfile
        >>> from lsmkv.engine.dirlock import DirLock
        >>> lock = DirLock.acquire(tempfile.mkdtemp(), "an example")
        >>> pid = os.fork()
        >>> if pid == 0:                        # the child: not held there
        ...     os._exit(1 if lock.held else 0)
        >>> lock.held, os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
        (True, 0)
        >>> lock.release(); lock.held
        False
        """
        return self._fd is not None and self._pid == os.getpid()

    def release(self):
        """Drop the lock (idempotent). In a process that did not take it (a forked
        child) it only forgets it: that process never held it.

        >>> import tempfile
        >>> from lsmkv.engine.dirlock import DirLock
        >>> lock = DirLock.acquire(tempfile.mkdtemp(), "an example")
        >>> lock.release(); lock.release()
        >>> lock
        <DirLock ... (an example) released>
        """
        with _registry_lock:
            fd, self._fd = self._fd, None
            if fd is None:
                return
            if _registry.get(self._real) is self:
                del _registry[self._real]
            if self._pid == os.getpid():
                _write_pid(fd, None)
                os.close(fd)          # drops the fcntl lock

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.release()

    def __repr__(self):
        return f"<DirLock {self.path!r} ({self.purpose}) {'held' if self.held else 'released'}>"


def _before_fork():
    _registry_lock.acquire()


def _after_fork_in_parent():
    _registry_lock.release()


def _after_fork_in_child():
    """In a forked child (one thread, the registry lock held by the forking one):
    close the inherited descriptors (the child holds none of the parent's locks)
    and forget the parent's holders; then a fresh registry lock."""
    global _registry_lock
    for lock in _registry.values():
        fd, lock._fd = lock._fd, None
        if fd is not None:
            try:
                os.close(fd)
            except OSError:
                pass
    _registry.clear()
    _registry_lock = threading.RLock()


os.register_at_fork(before=_before_fork, after_in_parent=_after_fork_in_parent,
                    after_in_child=_after_fork_in_child)
