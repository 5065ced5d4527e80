"""Snapshots: the sequences of the live snapshots, and the oldest one compaction must keep.

The registry is compiled: lsmkv.core.dbcore.SnapshotList (lsmkv/core/snaplist.pxi),
so that a transaction registers and releases its snapshot in a few C steps.

Thread safety: no lock. Each SnapshotList call is atomic under the GIL (it calls
no Python code and allocates no Python object while it reads and changes its
state), so register (new), release (from any thread, from a garbage collector
finalizer too: it never blocks) and oldest() never interleave.

Invariants (snaplist.pxi proves them):
  1. oldest() is at most the sequence of every snapshot not yet released, so no
     compaction or flush drops a version a snapshot still reads.
  2. A snapshot registers at the engine's last_seq in the same atomic step that
     reads it: a flush or compaction whose oldest() came first has an oldest
     <= that sequence, so it keeps what the new snapshot reads.
  3. A released sequence leaves the registry at once.
"""
from lsmkv.core.dbcore import SnapshotList


class Snapshots(SnapshotList):
    """The engine's registry: SnapshotList(engine); new(), release(seq), oldest(),
    len() (stats' "snapshots"), sequences()."""
    __slots__ = ()
