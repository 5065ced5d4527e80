from typing import Any, Callable, Iterable, Iterator, Optional, Protocol, TypeVar, Union, overload

from lsmkv.core.cursor import Iterator as Cursor
from lsmkv.core.iterator import DBIterator as DBIterator
from lsmkv.core.iterator import HandleState, ReadCharge
from lsmkv.core.memtable import MemTable
from lsmkv.core.wal import LogWriter
from lsmkv.errors import BackgroundError as BackgroundError
from lsmkv.errors import ClosedError as ClosedError
from lsmkv.errors import CorruptionError as CorruptionError
from lsmkv.errors import ReadOnlyError as ReadOnlyError
from lsmkv.errors import MergeOperatorError as MergeOperatorError
from lsmkv.errors import ConflictError as ConflictError
from lsmkv.errors import InvalidIteratorError as InvalidIteratorError

_Buffer = Union[bytes, bytearray, memoryview]
_T = TypeVar("_T")
_T_co = TypeVar("_T_co", covariant=True)


class _ScanIterator(Protocol[_T_co]):
    """What items(), keys() and values() return (a DBIterator): a one-shot
    iterator that can be closed early and used in a `with` block. The seekable
    cursor (lsmkv.Iterator, db.iterator()) is typed by lsmkv/core/cursor.pyi."""
    def __iter__(self) -> Iterator[_T_co]: ...
    def __next__(self) -> _T_co: ...
    def close(self) -> None: ...
    def __enter__(self) -> "_ScanIterator[_T_co]": ...
    def __exit__(self, *exc: object) -> None: ...

DELETED: object
MERGED: object


def bloom_hash_py(key: _Buffer) -> int: ...
def check_bound(name: str, v: object) -> Optional[bytes]:
    """v as bytes (or None) for a range bound; TypeError naming it otherwise."""

class WriteBatch:
    """Puts and deletes applied atomically by DB.write(batch) or db.write_batch().

    Encoded as it is built (the WAL payload format, docs/format.md):
    seq u64 | count u32 | records; record = kind u8 | varint klen | key
    [| expiry u64 if kind == PUT_TTL] [| varint vlen | value if a put].
    `count` (read-only) is the number of operations added, as is len(batch).

    A put's ttl becomes an absolute expiry when it is added, read from the
    batch's clock: db.write_batch() gives the DB's clock (an injected one
    included); lsmkv.WriteBatch() uses the process clock, time.time, or the
    clock it is given, so with a DB on an injected clock, make its batches with
    db.write_batch() (or WriteBatch(clock=...)).

    A batch from db.write_batch() is also a context manager that writes itself
    to its DB when the block exits without an error (nothing of it if the block
    raises); one made directly is not.

    >>> import lsmkv, tempfile
    >>> db = lsmkv.DB(tempfile.mkdtemp())
    >>> wb = lsmkv.WriteBatch()
    >>> wb.put(b"a", b"1"); wb.put(b"b", b"2", ttl=3600); wb.delete(b"c")
    >>> wb.count, len(wb)
    (3, 3)
    >>> db.write(wb)
    >>> list(db.items())
    [(b'a', b'1'), (b'b', b'2')]
    >>> db.close()
    """
    count: int
    has_merge: bool
    def __init__(self, clock: Optional[Callable[[], float]] = ...) -> None: ...
    def put(self, key: _Buffer, value: _Buffer, *, ttl: Optional[float] = ..., cf: Any = ...) -> None:
        """Add a put; ttl: seconds until it expires, from the batch's clock now
        (None: never expires); cf: the column family (a handle of
        db.create_column_family() or db.column_family(); None: the default).

        >>> import lsmkv, tempfile
        >>> db = lsmkv.DB(tempfile.mkdtemp(), clock=lambda: 1000.0)
        >>> wb = db.write_batch()                 # the DB's clock
        >>> wb.put(b"k", b"v"); wb.put(b"tmp", b"x", ttl=5)
        >>> db.write(wb)
        >>> db.get(b"k"), db.ttl(b"tmp")
        (b'v', 5.0)
        >>> db.close()
        """
    def append(self, other: "WriteBatch") -> None: ...
    def __enter__(self) -> "WriteBatch": ...
    def __exit__(self, exc_type: object, exc: object, tb: object) -> bool: ...
    def delete_range(self, start: _Buffer, stop: _Buffer, *, cf: Any = ...) -> None: ...
    def delete(self, key: _Buffer, *, cf: Any = ...) -> None:
        """Add a delete of key (applied in order: a later put of the same key in
        this batch wins); cf: the column family (None: the default).

        >>> import lsmkv, tempfile
        >>> db = lsmkv.DB(tempfile.mkdtemp())
        >>> db.put(b"a", b"1"); db.put(b"b", b"2")
        >>> with db.write_batch() as wb:
        ...     wb.delete(b"a"); wb.delete(b"b"); wb.put(b"b", b"3")
        >>> db.get(b"a"), db.get(b"b")
        (None, b'3')
        >>> db.close()
        """
    def merge(self, key: _Buffer, operand: _Buffer, *, cf: Any = ...) -> None:
        """Add a merge operand for key (db.merge(), applied in order with the batch's
        other operations); cf: the column family (None: the default). Writing the
        batch raises MergeOperatorError if that family has no merge operator.

        >>> import lsmkv, tempfile
        >>> db = lsmkv.DB(tempfile.mkdtemp(), merge_operator=("append", b","))
        >>> with db.write_batch() as wb:
        ...     wb.put(b"k", b"a"); wb.merge(b"k", b"b"); wb.merge(b"k", b"c")
        >>> db.get(b"k")
        b'a,b,c'
        >>> db.close()
        """
    def clear(self) -> None:
        """Drop every operation added so far, so the batch can be reused.

        >>> import lsmkv
        >>> wb = lsmkv.WriteBatch()
        >>> wb.put(b"k", b"v")
        >>> wb.clear()
        >>> wb.count, wb.data_size
        (0, 12)
        """
    def __len__(self) -> int: ...
    @property
    def data_size(self) -> int:
        """Bytes of the encoded batch: a 12-byte header plus each record (what
        write() appends to the log).

        >>> import lsmkv
        >>> wb = lsmkv.WriteBatch()
        >>> wb.data_size
        12
        >>> wb.put(b"key", b"value")      # kind, klen, key, vlen, value
        >>> wb.data_size
        23
        """

class SuperVersion:
    """An immutable view of every source a read consults."""
    mem: MemTable
    imms: tuple[MemTable, ...]
    l0: tuple[Any, ...]
    levels: tuple[tuple[tuple[Any, ...], list[bytes], list[bytes]], ...]
    version: Any
    static_range_dels: Optional[list[tuple[bytes, bytes, int]]]
    def __init__(self, mem: MemTable, imms: tuple[MemTable, ...], l0: tuple[Any, ...],
                 levels: tuple[Any, ...], version: Any) -> None: ...
    def memtables(self) -> tuple[MemTable, ...]: ...


class Pin:
    """Keeps one version's files alive while an iterator reads them."""
    version: Any
    def __init__(self, files: Any, version: Any) -> None: ...
    def release(self) -> None: ...

class SnapshotList:
    """The live snapshots' sequences (a multiset) and oldest(); the engine's
    `snapshots` (lsmkv/core/snaplist.pxi: no lock, each call atomic under the GIL)."""
    def __init__(self, core: "Core") -> None: ...
    def __len__(self) -> int: ...
    def new(self) -> int: ...
    def release(self, seq: int, blocking: bool = ...) -> None: ...
    def oldest(self) -> int: ...
    def sequences(self) -> list[int]: ...


class Core:
    """The engine's state the per-operation paths use (see lsmkv.engine.engine.Engine).

    The Python side it calls, only on cold paths, through the components the engine
    binds at open: writes.make_room() and writes.level0_stall(nbytes)
    (lsmkv.engine.writes.WriteController), logs.sync_retired() (lsmkv.engine.logs.LogSet),
    files.gc_pending, files.gc_soon(), files.pins and files.current_version()
    (lsmkv.engine.files.Files)."""
    sv: SuperVersion
    wal: LogWriter
    last_seq: int
    db: "Core"           # the DB-wide Core (itself for the engine; column families: lsmkv/engine/family.py)
    cf_id: int
    cf_name: str
    cfs: Optional[dict[int, "Core"]]
    cf_total_limit: int         # db_write_buffer_size: what every family's active memtable may hold together
    mutex: Any
    closed: bool
    bg_error: Optional[BaseException]
    read_only: bool
    read_only_as: str
    read_charge: ReadCharge
    write_buffer_size: int
    clock: Callable[[], float]
    n_puts: int
    n_deletes: int
    n_gets: int
    n_get_hits: int
    n_writes: int
    n_syncs: int
    n_bloom_checks: int
    n_bloom_useful: int
    n_wal_bytes: int
    n_batches: int
    n_user_bytes: int
    n_view_pins: int
    l0_files: int
    l0_slowdown: int
    l0_stop: int
    retired_logs: list[LogWriter]
    state: HandleState
    writes: Any
    logs: Any
    files: Any
    merge_op: Any
    default_ttl: Optional[float]     # the default_ttl option's seconds, or None
    def write_through_db(self, batch: WriteBatch, sync: bool = ...) -> None:
        """Write batch with the DB's write (its records name their families)."""
    def read_only_error(self, what: str) -> Exception:
        """The ReadOnlyError a write to a read-only or secondary engine raises."""

class CoreDB:
    core: Core
    def put(self, key: _Buffer, value: _Buffer, *, ttl: Optional[float] = ..., sync: bool = ...) -> None:
        """Store value under key. ttl: seconds until it expires (None: never).
        sync=True returns only once the write is on stable storage.

        >>> import lsmkv, tempfile
        >>> now = [1000.0]
        >>> db = lsmkv.DB(tempfile.mkdtemp(), clock=lambda: now[0])
        >>> db.put(b"k", b"v")
        >>> db.put(b"session", b"token", ttl=30, sync=True)
        >>> db.get(b"k"), db.get(b"session")
        (b'v', b'token')
        >>> now[0] += 31                       # 31 s later
        >>> db.get(b"session") is None
        True
        >>> db.put("k", b"v")
        Traceback (most recent call last):
          ...
        TypeError: key must be bytes, bytearray or memoryview, not str
        >>> db.close()
        """
    def delete_range(self, start: _Buffer, stop: _Buffer, *, sync: bool = ...) -> None: ...
    def merge(self, key: _Buffer, operand: _Buffer, *, sync: bool = ...) -> None:
        """Add operand to key's value through the DB's merge operator (the
        merge_operator option): a read folds the key's operands, oldest first,
        into its base value (None when the key is absent, deleted or expired).
        One log record, no read: as fast as put(). The result has no ttl.
        sync=True returns only once the write is on stable storage.

        >>> import lsmkv, tempfile
        >>> db = lsmkv.DB(tempfile.mkdtemp(), merge_operator="uint64add")
        >>> one = (1).to_bytes(8, "little")
        >>> db.merge(b"hits", one); db.merge(b"hits", one, sync=True)
        >>> int.from_bytes(db.get(b"hits"), "little")
        2
        >>> db.close()
        """
    def delete(self, key: _Buffer, *, sync: bool = ...) -> None:
        """Remove key (a no-op if absent).

        >>> import lsmkv, tempfile
        >>> db = lsmkv.DB(tempfile.mkdtemp())
        >>> db.put(b"k", b"v")
        >>> db.delete(b"k"); db.delete(b"never-written")
        >>> db.get(b"k") is None, b"k" in db
        (True, False)
        >>> db.close()
        """
    def write_if_unchanged(self, batch: WriteBatch, keys: Iterable[_Buffer], seq: int, *,
                           sync: bool = ...) -> None: ...
    def transaction(self, *, sync: bool = ..., pessimistic: bool = ...) -> Transaction: ...
    def newest_sequence(self, key: _Buffer) -> Optional[int]: ...
    def write(self, batch: WriteBatch, *, sync: bool = ...) -> None:
        """Apply every operation of batch atomically: a reader sees all of it or
        none of it. sync=True returns once it is on stable storage.

        >>> import lsmkv, tempfile
        >>> db = lsmkv.DB(tempfile.mkdtemp())
        >>> db.put(b"from", b"100")
        >>> wb = db.batch()
        >>> wb.put(b"from", b"70"); wb.put(b"to", b"30")
        >>> db.write(wb, sync=True)
        >>> db.get(b"from"), db.get(b"to"), db.stats()["batches"]
        (b'70', b'30', 1)
        >>> db.close()
        """
    @overload
    def get(self, key: _Buffer) -> Optional[bytes]: ...
    @overload
    def get(self, key: _Buffer, default: _T) -> Union[bytes, _T]:
        """The value stored under key, or default if it is absent or expired.
        db[key] raises KeyError instead.

        >>> import lsmkv, tempfile
        >>> db = lsmkv.DB(tempfile.mkdtemp())
        >>> db.put(b"k", b"v")
        >>> db.get(b"k"), db.get(b"nope"), db.get(b"nope", b"fallback")
        (b'v', None, b'fallback')
        >>> db.close()
        """
    @overload
    def get_at(self, key: _Buffer, seq: int) -> Optional[bytes]: ...
    @overload
    def get_at(self, key: _Buffer, seq: int, default: _T) -> Union[bytes, _T]:
        """get() as of sequence number seq (snapshots). Without a snapshot holding
        seq, compaction may drop the older versions it would see; prefer
        db.snapshot(), which uses this.

        >>> import lsmkv, tempfile
        >>> db = lsmkv.DB(tempfile.mkdtemp())
        >>> db.put(b"k", b"1")
        >>> snap = db.snapshot()
        >>> db.put(b"k", b"2")
        >>> db.get_at(b"k", snap.sequence), db.get_at(b"new", snap.sequence, b"-")
        (b'1', b'-')
        >>> snap.close(); db.close()
        """
    @overload
    def multi_get(self, keys: Iterable[_Buffer]) -> list[Optional[bytes]]: ...
    @overload
    def multi_get(self, keys: Iterable[_Buffer], default: _T) -> list[Union[bytes, _T]]: ...
    @overload
    def multi_get_at(self, keys: Iterable[_Buffer], seq: int) -> list[Optional[bytes]]: ...
    @overload
    def multi_get_at(self, keys: Iterable[_Buffer], seq: int, default: _T) -> list[Union[bytes, _T]]: ...
    def write_batch(self, *, sync: bool = ...) -> WriteBatch: ...
    def batch(self) -> WriteBatch: ...
    def __getitem__(self, key: _Buffer) -> bytes: ...
    def __setitem__(self, key: _Buffer, value: _Buffer) -> None: ...
    def __delitem__(self, key: _Buffer) -> None: ...
    def __contains__(self, key: object) -> bool: ...
    def ttl(self, key: _Buffer) -> Optional[float]:
        """Seconds until key expires (a float), or None if it never expires.
        KeyError if the key is absent or already expired.

        >>> import lsmkv, tempfile
        >>> now = [1000.0]
        >>> db = lsmkv.DB(tempfile.mkdtemp(), clock=lambda: now[0])
        >>> db.put(b"s", b"t", ttl=30); db.put(b"p", b"v")
        >>> now[0] += 10
        >>> db.ttl(b"s"), db.ttl(b"p")
        (20.0, None)
        >>> now[0] += 20
        >>> db.ttl(b"s")
        Traceback (most recent call last):
          ...
        KeyError: b's'
        >>> db.close()
        """
    def sync_wal(self) -> None: ...
    def get_view(self, key: _Buffer, default: Any = ...) -> Any:
        """Like get(), but the value comes as a ValueView: a read-only buffer over
        the cached block that holds it, without a copy (a value in a memtable is
        copied once, as get() does). The block stays pinned in the cache until the
        view is released or dropped, so release views soon: a server sends them
        straight to a socket. Views may pin at most half the slab cache; past that,
        and with block_cache='lru', the view holds a copy or the block's bytes.

        >>> import lsmkv, tempfile
        >>> db = lsmkv.DB(tempfile.mkdtemp())
        >>> db.put(b"k", b"v" * 1000)
        >>> db.flush()                          # the value now lives in a table
        >>> v = db.get_view(b"k")
        >>> len(v), bytes(memoryview(v)[:3]), v.pinned
        (1000, b'vvv', True)
        >>> v.release(); db.get_view(b"nope") is None
        True
        >>> db.close()
        """
    @overload
    def get_with_ttl(self, key: _Buffer) -> Optional[tuple[bytes, Optional[float]]]: ...
    @overload
    def get_with_ttl(self, key: _Buffer, default: _T) -> Union[tuple[bytes, Optional[float]], _T]:
        """(value, seconds until it expires or None) in one lookup, or default if
        the key is absent or expired: get() and ttl() together, consistent with
        each other (a write between two separate calls cannot split them).

        >>> import lsmkv, tempfile
        >>> now = [1000.0]
        >>> db = lsmkv.DB(tempfile.mkdtemp(), clock=lambda: now[0])
        >>> db.put(b"s", b"t", ttl=30); db.put(b"p", b"v")
        >>> now[0] += 10
        >>> db.get_with_ttl(b"s"), db.get_with_ttl(b"p"), db.get_with_ttl(b"x")
        ((b't', 20.0), (b'v', None), None)
        >>> db.close()
        """
    def ttl_at(self, key: _Buffer, seq: int) -> Optional[float]:
        """ttl() as of sequence `seq` (what a snapshot taken then sees).

        >>> import lsmkv, tempfile
        >>> db = lsmkv.DB(tempfile.mkdtemp(), clock=lambda: 1000.0)
        >>> db.put(b"s", b"t", ttl=30)
        >>> snap = db.snapshot()
        >>> db.put(b"s", b"t")                  # no expiry from now on
        >>> db.ttl_at(b"s", snap.sequence), db.ttl(b"s")
        (30.0, None)
        >>> snap.close(); db.close()
        """
    def items(self, start: Optional[_Buffer] = ..., stop: Optional[_Buffer] = ..., *, reverse: bool = ...,
              prefix: Optional[_Buffer] = ...) -> _ScanIterator[tuple[bytes, bytes]]:
        """Iterator of (key, value) for start <= key < stop, in key order (or reverse);
        with prefix, only keys starting with it (any bytes, 0xff included). It sees
        the DB as of its creation and keeps the files it reads alive until it is
        exhausted or closed (or dropped). Complexity: O(log n) to position, then
        amortized O(1) per item for a few sources.

        >>> import lsmkv, tempfile
        >>> db = lsmkv.DB(tempfile.mkdtemp())
        >>> for k in (b"apple", b"banana", b"cherry"):
        ...     db.put(k, k.upper())
        >>> list(db.items(b"b"))
        [(b'banana', b'BANANA'), (b'cherry', b'CHERRY')]
        >>> list(db.items(None, b"c", reverse=True))
        [(b'banana', b'BANANA'), (b'apple', b'APPLE')]
        >>> db.close()
        """
    def keys(self, start: Optional[_Buffer] = ..., stop: Optional[_Buffer] = ..., *, reverse: bool = ...,
             prefix: Optional[_Buffer] = ...) -> _ScanIterator[bytes]:
        """Like items(), yielding keys only.

        >>> import lsmkv, tempfile
        >>> db = lsmkv.DB(tempfile.mkdtemp())
        >>> for k in (b"user:1", b"user:2", b"zone:1"):
        ...     db.put(k, b"")
        >>> list(db.keys(b"user:", b"user;"))       # a range scan
        [b'user:1', b'user:2']
        >>> list(db.keys(prefix=b"user:"))          # the same, as a prefix scan
        [b'user:1', b'user:2']
        >>> db.close()
        """
    def values(self, start: Optional[_Buffer] = ..., stop: Optional[_Buffer] = ..., *, reverse: bool = ...,
               prefix: Optional[_Buffer] = ...) -> _ScanIterator[bytes]:
        """Like items(), yielding values only.

        >>> import lsmkv, tempfile
        >>> db = lsmkv.DB(tempfile.mkdtemp())
        >>> db.put(b"a", b"1"); db.put(b"b", b"2")
        >>> list(db.values()), list(db.values(reverse=True))
        ([b'1', b'2'], [b'2', b'1'])
        >>> db.close()
        """
    def iterator(self, lower: Optional[_Buffer] = ..., upper: Optional[_Buffer] = ..., *,
                 prefix: Optional[_Buffer] = ..., snapshot: Optional[Any] = ...,
                 cf: Optional[Any] = ...) -> Cursor:
        """An lsmkv.Iterator: a cursor that can seek, move both ways and re-seek,
        over lower <= key < upper (None: unbounded) and, with prefix, keys starting
        with it; as of snapshot (a Snapshot of this DB) or now; over column family
        cf (a handle; None: this one). It starts
        positioned nowhere: call seek(), seek_for_prev(), seek_to_first() or
        seek_to_last(). Close it (or use it in a with block) to release the files
        it pins.

        >>> import lsmkv, tempfile
        >>> db = lsmkv.DB(tempfile.mkdtemp())
        >>> for k in (b"user:1", b"user:2", b"zone:1"):
        ...     db.put(k, b"v" + k[-1:])
        >>> with db.iterator(prefix=b"user:") as it:
        ...     it.seek_to_last(); print(it.key(), it.value())
        ...     print(list(it))                  # from where it stands, forward
        b'user:2' b'v2'
        [(b'user:2', b'v2')]
        >>> db.close()
        """

def multi_get_views(db: CoreDB, keys: Iterable[_Buffer]) -> list[Any]:
    """get_view() of each key from one consistent view (the memtables searched
    together); what `lsmkv serve` uses for pipelined GETs."""

PUT_MANY_NODE_BYTES: int

def write_room(db: CoreDB) -> int:
    """Bytes a write may add to db's memtable before it is full (0 or less: it
    is), or -1 while level 0 is at its slowdown trigger."""
def put_many(db: CoreDB, keys: list[_Buffer], values: list[_Buffer]) -> None:
    """db.put() of each pair in order, the memtable inserts searched together;
    what `lsmkv serve` uses for pipelined SETs."""

def iterate_at(db: CoreDB, start: Optional[bytes], stop: Optional[bytes], reverse: bool, mode: int,
               seq: Optional[int], prefix: Optional[bytes] = ...) -> Any: ...
def cursor_at(db: CoreDB, lower: Optional[_Buffer], upper: Optional[_Buffer], prefix: Optional[_Buffer],
              seq: Optional[int]) -> Cursor:
    """An lsmkv.Iterator of db as of sequence seq (see CoreDB.iterator())."""
def now_ms(clock: Callable[[], float]) -> int:
    """clock() in whole ms (see clock_ms): the engine's time for expiry decisions."""
def replay_batch(mem: Any, payload: _Buffer, path: str, offset: int) -> tuple[int, int]: ...
def replay_batch_cf(mems: dict[int, Any], dflt: Any, payload: _Buffer, path: str,
                    offset: int) -> tuple[int, int]: ...
def decode_batch(payload: _Buffer, path: str, offset: int,
                 families: bool = ...) -> tuple[int, list[tuple[Any, ...]]]: ...


# core/txn.pxi (exported as lsmkv.Transaction by lsmkv/engine/transaction.py)
class TransactionIterator(Iterator[tuple[bytes, bytes]]):
    @property
    def lower(self) -> Optional[bytes]: ...
    @property
    def upper(self) -> Optional[bytes]: ...
    def seek(self, key: _Buffer) -> None: ...
    def seek_for_prev(self, key: _Buffer) -> None: ...
    def seek_to_first(self) -> None: ...
    def seek_to_last(self) -> None: ...
    def next(self) -> None: ...
    def prev(self) -> None: ...
    def valid(self) -> bool: ...
    def key(self) -> bytes: ...
    def value(self) -> bytes: ...
    def item(self) -> tuple[bytes, bytes]: ...
    def close(self) -> None: ...
    def __enter__(self) -> "TransactionIterator": ...
    def __exit__(self, *exc: object) -> None: ...
    def __iter__(self) -> "TransactionIterator": ...
    def __next__(self) -> tuple[bytes, bytes]: ...


class TxnFamily:
    def __init__(self, core: Core) -> None: ...

class Transaction:
    def __init__(self, db: Any, sync: bool = ...) -> None: ...
    @property
    def sequence(self) -> int: ...
    @property
    def ended(self) -> Optional[str]: ...
    @overload
    def get(self, key: _Buffer, *, cf: Any = ...) -> Optional[bytes]: ...
    @overload
    def get(self, key: _Buffer, default: _T, *, cf: Any = ...) -> Union[bytes, _T]: ...
    @overload
    def get_for_update(self, key: _Buffer, *, cf: Any = ...) -> Optional[bytes]: ...
    @overload
    def get_for_update(self, key: _Buffer, default: _T, *, cf: Any = ...) -> Union[bytes, _T]: ...
    def watch(self, *keys: _Buffer) -> None: ...
    def put(self, key: _Buffer, value: _Buffer, *, ttl: Optional[float] = ..., cf: Any = ...) -> None: ...
    def delete(self, key: _Buffer, *, cf: Any = ...) -> None: ...
    def merge(self, key: _Buffer, operand: _Buffer, *, cf: Any = ...) -> None: ...
    def iterator(self, lower: Optional[_Buffer] = ..., upper: Optional[_Buffer] = ..., *,
                 prefix: Optional[_Buffer] = ..., cf: Any = ...) -> TransactionIterator: ...
    def items(self, start: Optional[_Buffer] = ..., stop: Optional[_Buffer] = ..., *,
              reverse: bool = ..., prefix: Optional[_Buffer] = ..., cf: Any = ...) -> list[tuple[bytes, bytes]]: ...
    def keys(self, start: Optional[_Buffer] = ..., stop: Optional[_Buffer] = ..., *,
             reverse: bool = ..., prefix: Optional[_Buffer] = ..., cf: Any = ...) -> list[bytes]: ...
    def commit(self) -> None: ...
    def rollback(self) -> None: ...
    def __enter__(self) -> "Transaction": ...
    def __exit__(self, *exc: object) -> bool: ...
