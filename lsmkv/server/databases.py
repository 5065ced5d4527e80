"""Redis's numbered databases (SELECT n) for `lsmkv serve`, as key prefixes.

Database 0 is the DB itself, unchanged on disk. Database n (1 <= n < 256) is a
PrefixedDB: a view of the same DB whose every key is stored under

    prefix(n) = NS + b"db" + one byte n          (NS = hashes.NS, the server's reserved prefix)

so a string key k of database 3 is NS + b"db\\x03" + k, and a hash of database
3 keeps its metadata and fields (hashes.py) under that prefix too. A view has
the DB's read/write API as the server's commands call it (get, get_view,
get_with_ttl, ttl, multi_get, put, delete, delete_range, write_batch, write,
keys, items, snapshot, transaction), so the commands run unchanged on a
connection's current database (conn.db); a column-family handle with the same
API could replace the view.

Invariants:
  1. Database n's keys, n >= 1, are exactly the DB's keys in [prefix(n),
     prefix_stop(prefix(n))); those ranges do not overlap, and none of them
     overlaps database 0's keys: user keys may not start with NS, and database
     0's own internal keys (NS + b"M", NS + b"F", hashes.py) sort below
     DB_NS = NS + b"db" ("M" and "F" < "d").
  2. Database 0's keyspace (hashes.keyspace: SCAN, KEYS) skips the
     whole NS range, so it never shows another database's keys; a view's keys
     are its own range with the prefix stripped.
  3. Database 0's path has no wrapper: conn.db is the DB itself, and a command
     pays one attribute read for it, as it paid for srv.db before.

Costs: a view adds one bytes concatenation per key and one Python call per
operation (and per key returned by a scan) on top of the DB's own.
"""
from lsmkv.server.args import NOT_INT, CommandError, to_int
from lsmkv.server.hashes import NS
from lsmkv.server.scan import prefix_stop

DB_NS = NS + b"db"
DB_NS_STOP = prefix_stop(DB_NS)
MAX_DATABASES = 256          # prefix(n) holds n in one byte
DEFAULT_DATABASES = 16       # as Redis


def prefix(n):
    """The key prefix of database n (1 <= n < MAX_DATABASES)."""
    if not 1 <= n < MAX_DATABASES:
        raise ValueError(f"database {n} has no prefix: databases 1..{MAX_DATABASES - 1} do")
    return DB_NS + bytes((n,))


def databases(db, count):
    """The server's databases: [db, PrefixedDB 1, ..., PrefixedDB count-1]."""
    if not 1 <= count <= MAX_DATABASES:
        raise ValueError(f"the number of databases must be in 1..{MAX_DATABASES}, got {count}")
    return [db] + [PrefixedDB(db, prefix(n)) for n in range(1, count)]


class PrefixedDB:
    """Database n >= 1: the DB base seen through prefix p (see the module docstring).
    base may be the DB or anything with its API (EXEC's multi.ExecDB)."""
    __slots__ = ("base", "prefix", "stop")

    def __init__(self, base, p):
        self.base = base
        self.prefix = p
        self.stop = prefix_stop(p)

    def __repr__(self):
        return f"<PrefixedDB {self.prefix!r} of {self.base!r}>"

    # -- point reads

    def get(self, key, default=None):
        return self.base.get(self.prefix + key, default)

    def get_view(self, key, default=None):
        return self.base.get_view(self.prefix + key, default)

    def get_with_ttl(self, key):
        return self.base.get_with_ttl(self.prefix + key)

    def ttl(self, key):
        try:
            return self.base.ttl(self.prefix + key)
        except KeyError:
            raise KeyError(key) from None

    def multi_get(self, keys, default=None):
        p = self.prefix
        if default is None:
            return self.base.multi_get([p + k for k in keys])
        return self.base.multi_get([p + k for k in keys], default)

    # -- writes

    def put(self, key, value, *, ttl=None, sync=False):
        self.base.put(self.prefix + key, value, ttl=ttl, sync=sync)

    def delete(self, key, *, sync=False):
        self.base.delete(self.prefix + key, sync=sync)

    def delete_range(self, start, stop, *, sync=False):
        """Delete [start, stop) of this database; stop None: to its end."""
        p = self.prefix
        self.base.delete_range(p + start, self.stop if stop is None else p + stop, sync=sync)

    def write_batch(self):
        return PrefixedBatch(self.base.write_batch(), self.prefix)

    def write(self, wb, *, sync=False):
        self.base.write(wb.batch, sync=sync)

    # -- scans

    def _bounds(self, start, stop, pre):
        p = self.prefix
        lo = p if start is None else p + start
        hi = self.stop if stop is None else p + stop
        if pre:
            lo = max(lo, p + pre)
            hi = min(hi, prefix_stop(p + pre))
        return lo, hi

    def keys(self, start=None, stop=None, *, reverse=False, prefix=None):
        lo, hi = self._bounds(start, stop, prefix)
        return _Stripped(self.base.keys(lo, hi, reverse=reverse), len(self.prefix), False)

    def items(self, start=None, stop=None, *, reverse=False, prefix=None):
        lo, hi = self._bounds(start, stop, prefix)
        it = self.base.items(lo, hi, reverse=reverse) if reverse else self.base.items(lo, hi)
        return _Stripped(it, len(self.prefix), True)

    def __iter__(self):
        return self.keys()

    # -- snapshots and transactions

    def snapshot(self):
        return _PrefixedReader(self.base.snapshot(), self.prefix)

    def transaction(self, *, sync=False):
        return _PrefixedTxn(self.base.transaction(sync=sync), self.prefix)


class PrefixedBatch:
    """A write batch of a PrefixedDB: the base's batch, keys prefixed. Several
    databases may share one base batch (shared_batch): one atomic write."""
    __slots__ = ("batch", "prefix")

    def __init__(self, batch, p):
        self.batch = batch
        self.prefix = p

    def __len__(self):
        return len(self.batch)

    def put(self, key, value, *, ttl=None):
        self.batch.put(self.prefix + key, value, ttl=ttl)

    def delete(self, key):
        self.batch.delete(self.prefix + key)

    def delete_range(self, start, stop):
        p = self.prefix
        self.batch.delete_range(p + start, prefix_stop(p) if stop is None else p + stop)


class _Stripped:
    """A base iterator's keys (or (key, value) pairs) with the prefix cut off."""
    __slots__ = ("src", "it", "n", "pairs")

    def __init__(self, it, n, pairs):
        self.src = it
        self.it = iter(it)
        self.n = n
        self.pairs = pairs

    def __iter__(self):
        return self

    def __next__(self):
        x = next(self.it)
        if self.pairs:
            return x[0][self.n:], x[1]
        return x[self.n:]

    def close(self):
        self.src.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class _PrefixedReader:
    """A snapshot of a PrefixedDB (what the commands read from one)."""
    __slots__ = ("snap", "prefix")

    def __init__(self, snap, p):
        self.snap = snap
        self.prefix = p

    def get(self, key, default=None):
        return self.snap.get(self.prefix + key, default)

    def multi_get(self, keys, default=None):
        p = self.prefix
        if default is None:
            return self.snap.multi_get([p + k for k in keys])
        return self.snap.multi_get([p + k for k in keys], default)

    def close(self):
        self.snap.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class _PrefixedTxn:
    """An engine transaction over a PrefixedDB's keys (WATCH uses watch, commit,
    rollback and ended)."""
    __slots__ = ("txn", "prefix")

    def __init__(self, txn, p):
        self.txn = txn
        self.prefix = p

    def watch(self, *keys):
        p = self.prefix
        self.txn.watch(*(p + k for k in keys))

    def get(self, key, default=None):
        return self.txn.get(self.prefix + key, default)

    def put(self, key, value, *, ttl=None):
        self.txn.put(self.prefix + key, value, ttl=ttl)

    def delete(self, key):
        self.txn.delete(self.prefix + key)

    def commit(self):
        self.txn.commit()

    def rollback(self):
        self.txn.rollback()

    @property
    def ended(self):
        return self.txn.ended


# ---------------------------------------------------------------- across databases

def base_of(db):
    """The DB (or EXEC's ExecDB) a database is stored in."""
    return db.base if db.__class__ is PrefixedDB else db


def batch_for(db, batch):
    """The view of the base batch `batch` that writes database db's keys."""
    return PrefixedBatch(batch, db.prefix) if db.__class__ is PrefixedDB else batch


def key_ranges(db):
    """The base's key ranges [(lo, hi)] (None: unbounded) that hold database db:
    its prefix range, or for database 0 everything outside [DB_NS, DB_NS_STOP)."""
    if db.__class__ is PrefixedDB:
        return [(db.prefix, db.stop)]
    return [(None, DB_NS), (DB_NS_STOP, None)]


def flush_batch(db, batch):
    """Add to base batch `batch` the deletion of every key of database db: one
    range tombstone per range of key_ranges(db) (the last key there is bounds an
    open range, as FLUSHDB always did). Returns the number of tombstones added."""
    base = base_of(db)
    added = 0
    for lo, hi in key_ranges(db):
        if hi is None:
            it = base.keys(lo, None, reverse=True)
            try:
                last = next(iter(it), None)
            finally:
                it.close()
            if last is None:
                continue
            hi = last + b"\x00"
        batch.delete_range(b"" if lo is None else lo, hi)
        added += 1
    return added


SWAPDB_MAX_BYTES = 64 << 20      # keys + values SWAPDB copies at most (it holds them all at once)


class TooLarge(Exception):
    """database_rows went past its byte budget."""


def database_rows(db, budget):
    """[(key, value, seconds left or None)] of every key of database db (its
    hashes' internal keys included), in key order: O(keys), for SWAPDB. Raises
    TooLarge once the keys and values read pass budget bytes."""
    out = []
    for lo, hi in ([(None, None)] if db.__class__ is PrefixedDB else key_ranges(db)):
        it = db.keys(lo, hi)
        try:
            for k in it:
                r = db.get_with_ttl(k)
                if r is not None:
                    budget -= len(k) + len(r[0])
                    if budget < 0:
                        raise TooLarge()
                    out.append((k, r[0], r[1]))
        finally:
            it.close()
    return out


def db_index(arg, count, not_int=None):
    """A database number argument as Redis 7 reads it (getIntFromObjectOrReply):
    not an integer is `not_int` (default Redis's NOT_INT); outside a C int, `not_int`
    or Redis's range error; outside 0..count-1, `ERR DB index is out of range`."""
    n = to_int(arg, not_int or NOT_INT)
    if not -(1 << 31) <= n < (1 << 31):
        raise CommandError(not_int or "ERR value is out of range, value must between "
                                      "-2147483648 and 2147483647")
    if not 0 <= n < count:
        raise CommandError("ERR DB index is out of range")
    return n
