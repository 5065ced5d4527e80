"""Optimistic transactions (RocksDB's OptimisticTransactionDB): db.transaction().

A Transaction reads a snapshot taken when it begins, with its own writes laid
over it, and buffers its writes in one WriteBatch. Commit hands that batch to
the compiled write path with the keys to validate (Core._write_batch, as
CoreDB.write_if_unchanged does): under the write lock, after any stall, each
tracked key's newest sequence in the DB (Core._newest_seq: memtables, then
tables) is compared with the snapshot's (no lookup at all when the DB's last
sequence is still the snapshot's: nothing was written since begin); if any is
newer, lsmkv.ConflictError and nothing is written;
otherwise the batch is written as any batch is (one log record: atomic, durable
per `sync`). Nothing is locked before commit: plain get() reads are not
validated (optimistic semantics), get_for_update() reads and every write
(put, delete, merge) are.

Transaction and its iterator are compiled (lsmkv/core/txn.pxi, part of
lsmkv.core.dbcore; their docstrings and examples are there), so an uncontended
transaction costs a few compiled calls: register the snapshot (a lock-free
SnapshotList, lsmkv/core/snaplist.pxi), read, add to the batch, the checked
write, release. This module states what they guarantee and exports them.

Thread safety: a Transaction (and its iterators) is used by one thread at a
time; any number of transactions and plain writers run at once. The only
shared state is the engine's (the snapshot registry, whose calls are atomic
under the GIL; the write lock).

Invariants:
  1. Until it ends, a transaction holds a registered snapshot at `sequence`
     (engine/snapshots.py; registered in the same atomic step that reads the
     DB's last sequence, released when it ends or, never ended, when it is
     collected): flush and compaction keep every version it reads,
     and keep, for each key, an entry with the sequence of its newest write
     after `sequence` (only older versions are dropped or merged).
  2. The commit check is exact: a tracked key was written by another commit
     after begin iff its newest entry has a sequence > `sequence`. Writes get
     sequences under the write lock, above every sequence before them, and the
     check runs under that lock after the last point where it may be released
     (stalls), so no write lands between the check and the transaction's own.
     Every entry's sequence is <= the DB's last sequence (a write applies its
     entries before moving it, under that lock), so when the last sequence is
     still `sequence` at the check, no tracked key can have a newer entry and
     the check passes without a lookup.
     Compaction at the bottommost level rewrites a sequence to 0 (docs/format.md,
     "Sequence 0") or drops a deletion only for versions with sequences <= the
     oldest live snapshot, which is <= `sequence` (invariant 1; a transaction
     registered after the compaction read oldest() has a sequence >= it, since
     oldest() is at most the last sequence then and sequences only grow): such
     a version was written
     before begin, and 0 <= `sequence` reads so too. A source skipped by the
     lookup (all its sequences <= `sequence`) holds no newer entry.
  3. A commit applies all of the transaction's writes or none (one batch record;
     a kill -9 leaves either the whole record in the log or a torn tail that
     recovery drops), and the transaction is over after commit() or rollback()
     whatever their outcome: its snapshot is released and every method but
     rollback() of an ended transaction raises ClosedError. A closed DB makes its
     open transactions raise ClosedError.
  4. The transaction's own view (get, iterators): a key it wrote shows its last
     write (None after its delete, or once its ttl has passed), or, when its last
     writes of the key are merges (txn.merge), the DB's merge operator folding
     them in order over what it showed before them; other keys show the
     snapshot. It is what the DB shows once the commit is applied.
"""
from lsmkv.core.dbcore import Transaction, TransactionIterator

__all__ = ["Transaction", "TransactionIterator"]
