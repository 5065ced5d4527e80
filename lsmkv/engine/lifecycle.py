"""The process lifecycle of open engines: the live registry and the fork and exit hooks.

Every open engine is registered here (weakly) from the end of its open to its
close. At import, two hooks are installed for the whole process:
os.register_at_fork marks every inherited engine dead in a fork() child, and
atexit closes what the program left open.

Thread safety: register(), unregister() and live() may be called from any
thread; they hold LIVE_LOCK, a module-level lock that the fork hook holds across
fork() and replaces in the child.

Invariants:
  1. An engine is in the registry from the end of a successful open until its
     close() has released the directory lock.
  2. In a fork() child every inherited engine is marked dead (inherited_by_fork)
     before any other code of the child runs, without taking a lock another
     thread of the parent might have held at the fork.
  3. At interpreter exit every registered engine is closed, once; a failure to
     close one is reported as a RuntimeWarning and the others still close.
"""
import atexit
import os
import threading
import warnings
import weakref

# -- guarded by _lock (replaced in a fork child)
_live = weakref.WeakSet()          # every open engine of this process
_lock = threading.Lock()


def register(engine):
    """Add an engine that has just opened."""
    with _lock:
        _live.add(engine)


def unregister(engine):
    """Remove an engine that has closed."""
    with _lock:
        _live.discard(engine)


def live():
    """The open engines of this process, as a list."""
    with _lock:
        return list(_live)


def _before_fork():
    _lock.acquire()       # the set is consistent in the child


def _after_fork_in_parent():
    _lock.release()


def _after_fork_in_child():
    """Only the forking thread exists in the child, and any lock another thread held
    at the fork stays held: mark every inherited engine dead without taking one."""
    global _lock
    _lock = threading.Lock()
    for engine in list(_live):
        engine.inherited_by_fork()


def _close_at_exit():
    """atexit: close what the program left open, so that nothing acknowledged waits
    on a daemon thread and no compaction worker outlives the interpreter."""
    for engine in live():
        try:
            engine.close()
        except Exception as e:      # noqa: BLE001 - reported; the other DBs still close
            warnings.warn(f"lsmkv: closing {engine.path} at interpreter exit failed: {e!r}",
                          RuntimeWarning, stacklevel=1)


os.register_at_fork(before=_before_fork, after_in_parent=_after_fork_in_parent,
                    after_in_child=_after_fork_in_child)
atexit.register(_close_at_exit)
