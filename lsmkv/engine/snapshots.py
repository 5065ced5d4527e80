"""Snapshots: the sequences of the live snapshots, and the oldest one compaction must keep.

Thread safety: `live` is guarded by the engine mutex. A snapshot released by the
garbage collector (Snapshot.__del__, maybe while this very thread holds the
mutex) never blocks: its sequence goes to `released` (one deque append) and the
next mutex holder removes it (oldest()).

Invariants:
  1. oldest() is at most the sequence of every snapshot not yet released, so no
     compaction or flush drops a version a snapshot still reads.
  2. A released sequence leaves `live` at the latest at the next oldest() call.
"""
import collections

from sortedcontainers import SortedList


class Snapshots:
    def __init__(self, engine):
        self.engine = engine
        # -- guarded by the engine mutex
        self.live = SortedList()                     # sequences of live snapshots
        # -- single atomic operations from any thread
        self.released = collections.deque()          # drained into live under the mutex

    def __len__(self):
        return len(self.live)

    def new(self):
        """The sequence of a new snapshot, registered until released."""
        e = self.engine
        with e.mutex:
            if e.closed:
                raise e.state.error()
            seq = e.last_seq
            self.live.add(seq)
        return seq

    def release(self, seq, blocking=True):
        e = self.engine
        if not e.mutex.acquire(blocking=blocking):
            self.released.append(seq)    # removed by the next mutex holder
            return
        try:
            self.live.remove(seq)
        except ValueError:
            pass
        finally:
            e.mutex.release()

    def oldest(self):
        """The oldest sequence a reader may still need (mutex held)."""
        s = self.live
        while self.released:
            try:
                s.remove(self.released.popleft())
            except ValueError:
                pass
        return s[0] if s else self.engine.last_seq
