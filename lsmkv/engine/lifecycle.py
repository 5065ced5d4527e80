"""The process lifecycle of open engines: the live registry and the fork and exit hooks.

Every open engine is registered here (weakly) from the end of its open to its
close. At import, two hooks are installed for the whole process:
os.register_at_fork marks every inherited engine dead in a fork() child, and
atexit closes what the program left open.

Thread safety: register(), unregister() and live() may be called from any
thread, and from a finalizer the garbage collector runs inside one of them
(closing a DB handle that sat in a reference cycle). So the registry takes no
lock: it is a dict changed and copied only by single operations the GIL makes
whole (set an item, pop one, list() of its values), and a fork() happens
between two such operations, never inside one.

Invariants:
  1. An engine is in the registry from the end of a successful open until its
     close() has released the directory lock.
  2. In a fork() child every inherited engine is marked dead (inherited_by_fork)
     before any other code of the child runs, without taking a lock another
     thread of the parent might have held at the fork; then it lets go of the
     parent's files (its logs unmapped, its tables closed unless an iterator of
     the child still holds one).
  3. At interpreter exit every registered engine is closed, once; a failure to
     close one is reported as a RuntimeWarning and the others still close.
"""
import atexit
import os
import warnings
import weakref

_live = {}          # id(engine) -> weakref.ref(engine), for every open engine of this process


def register(engine):
    """Add an engine that has just opened."""
    _live[id(engine)] = weakref.ref(engine)


def unregister(engine):
    """Remove an engine that has closed."""
    _live.pop(id(engine), None)


def live():
    """The open engines of this process, as a list."""
    return [e for e in (r() for r in list(_live.values())) if e is not None]


def _after_fork_in_child():
    """Only the forking thread exists in the child, and any lock another thread held
    at the fork stays held: mark every inherited engine dead without taking one.
    Then let go of the parent's files each holds (release_inherited: what close()
    in the child does): a child that keeps its dead copy and never closes it (a pool
    worker with the handle in a module global) would otherwise hold the parent's
    tables and logs open, and their disk space used, as long as it lives."""
    engines = live()
    for engine in engines:
        engine.inherited_by_fork()
    for engine in engines:
        try:
            engine.release_inherited()
        except Exception as e:      # noqa: BLE001 - reported; it is dead either way
            warnings.warn(f"lsmkv: releasing {engine.path} in a fork() child failed: {e!r}",
                          RuntimeWarning, stacklevel=1)


def _close_at_exit():
    """atexit: close what the program left open, so that nothing acknowledged waits
    on a daemon thread and no compaction worker outlives the interpreter."""
    for engine in live():
        try:
            engine.close()
        except Exception as e:      # noqa: BLE001 - reported; the other DBs still close
            warnings.warn(f"lsmkv: closing {engine.path} at interpreter exit failed: {e!r}",
                          RuntimeWarning, stacklevel=1)


os.register_at_fork(after_in_child=_after_fork_in_child)
atexit.register(_close_at_exit)
