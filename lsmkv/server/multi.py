"""MULTI, EXEC, DISCARD, WATCH and UNWATCH on the engine's optimistic
transactions (lsmkv/engine/transaction.py). Conventions as
lsmkv/server/commands.py.

  * MULTI starts queueing: every command but EXEC, DISCARD, MULTI, WATCH, QUIT
    and RESET replies +QUEUED (its arguments copied: the read buffer is reused).
    An unknown command or a wrong argument count while queueing replies its
    error and marks the transaction, which EXEC then discards (EXECABORT), as
    Redis does. The queued requests count against client-query-buffer-limit.
  * WATCH k... begins an engine transaction that only watches k (and the
    metadata key of a hash named k): one per WATCH call, each with its own
    snapshot, so a key is checked from the moment it was watched.
  * EXEC runs as one exclusive write step (Store.exclusive): on the event loop,
    after every write step queued before it, with nothing else running until it
    is done. First each WATCH transaction commits with nothing to write, which
    checks its keys (lsmkv.ConflictError: a watched key changed, EXEC replies a
    nil array and applies nothing). Then the queued commands run in order
    against an ExecDB: a fresh transaction whose writes gather in one batch and
    whose reads see them. The batch is committed at the end: every command's
    writes land at once or (a kill -9 in the middle) none do, which Redis's AOF
    gives only after redis-check-aof.

Invariants:
  1. Between EXEC's WATCH checks and its commit no other write reaches the
     database: the server is its only writer (directory lock), write steps run
     one at a time (store.py invariant 1), and EXEC's step does not yield.
  2. The queued commands see the database as of EXEC with the writes of the
     commands before them (the transaction's overlay), as in Redis.
  3. A connection's WATCH transactions hold snapshots until EXEC, DISCARD,
     UNWATCH, RESET or the connection's end releases them (release()).
"""
import types

from lsmkv.errors import ConflictError
from lsmkv.server import hashes, resp
from lsmkv.server.args import CommandError
from lsmkv.server.databases import PrefixedDB

QUEUED = b"+QUEUED\r\n"
NULL_ARRAY = b"*-1\r\n"
EXECABORT = b"-EXECABORT Transaction discarded because of previous errors.\r\n"
# commands that act at once inside MULTI instead of being queued
CONTROL = frozenset((b"EXEC", b"DISCARD", b"MULTI", b"WATCH", b"QUIT", b"RESET"))


class MultiState:
    """A connection's MULTI queue (conn.multi while queueing)."""
    __slots__ = ("cmds", "failed", "size")

    def __init__(self):
        self.cmds = []
        self.failed = False
        self.size = 0


def queue(srv, conn, args):
    """Queue one request of a connection in MULTI: +QUEUED, or an error (that
    marks the transaction) when the queue would pass client-query-buffer-limit."""
    m = conn.multi
    if m.failed:
        return QUEUED                   # EXEC will abort: nothing more is kept (as Redis)
    cmd = [bytes(x) for x in args]
    m.size += sum(map(len, cmd)) + 16 * len(cmd)
    if m.size > srv.query_buffer_limit:
        m.failed = True
        m.cmds = []
        m.size = 0
        conn.account()
        return resp.error("ERR MULTI queue exceeds client-query-buffer-limit: the transaction "
                          "will be discarded")
    m.cmds.append(cmd)
    conn.account()                      # maxmemory-clients counts the queue (query_memory)
    return QUEUED


def release(conn):
    """End a connection's MULTI and WATCH state (EXEC, DISCARD, UNWATCH, RESET, close)."""
    if conn.multi is not None:
        conn.multi = None
        conn.account()
    w = conn.watches
    if w:
        conn.watches = None
        for txn in w:
            txn.rollback()


def c_multi(srv, conn, a):
    if conn.multi is not None:
        raise CommandError("ERR MULTI calls can not be nested")
    conn.multi = MultiState()
    return resp.OK


def c_discard(srv, conn, a):
    if conn.multi is None:
        raise CommandError("ERR DISCARD without MULTI")
    release(conn)
    return resp.OK


def c_watch(srv, conn, a):
    if conn.multi is not None:
        raise CommandError("ERR WATCH inside MULTI is not allowed")
    txn = conn.db.transaction()         # the database selected now (databases.py)
    keys = [bytes(k) for k in a[1:]]
    try:
        txn.watch(*keys, *(hashes.meta_key(k) for k in keys))
    except BaseException:
        txn.rollback()                  # its snapshot now, not at garbage collection
        raise
    if conn.watches is None:
        conn.watches = []
    conn.watches.append(txn)
    return resp.OK


def c_unwatch(srv, conn, a):
    release(conn)                   # inside MULTI it is queued (as Redis) and runs in EXEC
    return resp.OK


def c_reset(srv, conn, a):
    """RESET: MULTI discarded, keys unwatched, replies on, RESP2, and (with a
    password) the connection unauthenticated."""
    release(conn)
    conn.reply_mode = 0
    conn.proto = 2
    conn.authed = not srv.requirepass
    conn.dbnum = 0                      # back to database 0, as Redis
    conn.db = srv.dbs[0]
    return b"+RESET\r\n"


def c_exec(srv, conn, a):
    m = conn.multi
    if m is None:
        raise CommandError("ERR EXEC without MULTI")
    watches = conn.watches
    conn.multi = conn.watches = None
    conn.account()
    if m.failed:
        for txn in watches or ():
            txn.rollback()               # never committed: WATCH transactions end at EXEC
        return EXECABORT
    return srv.store.exclusive(run_exec, srv, conn, m.cmds, watches or [])


def run_exec(srv, conn, cmds, watches):
    """EXEC's write step (invariant 1): the reply, a nil array if a watched key changed."""
    try:
        for txn in watches:
            txn.commit()                 # nothing to write: checks the watched keys
    except ConflictError:
        return NULL_ARRAY
    finally:
        for txn in watches:
            if txn.ended is None:        # those after a conflict
                txn.rollback()
    txn = srv.db.transaction(sync=srv.store.sync)
    try:
        xdb = ExecDB(srv.db, txn)
        dbs = ExecDatabases(xdb, srv.dbs)
        proxy = ExecServer(srv, xdb, ExecStore(srv.store, xdb), dbs)
        conn.db = dbs[conn.dbnum]          # a SELECT among the commands changes both
        execute = type(srv).execute
        out = [b"*%d\r\n" % len(cmds)]
        mode = conn.reply_mode             # every command in the EXEC replies (one array); a
        conn.reply_mode = 0                # CLIENT REPLY among them takes effect after it
        try:
            for args in cmds:
                r = execute(proxy, conn, args)
                if r.__class__ is list:
                    r = b"".join(bytes(x) for x in r)
                elif r.__class__ is not bytes:   # QUIT inside MULTI: queued as Redis does, ignored
                    r = resp.OK
                out.append(r or resp.OK)         # CLIENT REPLY OFF/SKIP's own (empty) reply
        finally:
            if conn.reply_mode == 0:
                conn.reply_mode = mode
            conn.db = srv.dbs[conn.dbnum]  # the selection stays after EXEC, as Redis
        txn.commit()
    finally:
        if txn.ended is None:            # a command or the commit raised
            txn.rollback()
    return b"".join(out)


class ExecServer:
    """The server as EXEC's commands see it: its db is an ExecDB and its store
    runs write steps at once; the server's methods run bound to this proxy (so
    they see both); every other attribute is the server's, read and written."""
    __slots__ = ("_srv", "db", "store", "dbs")

    def __init__(self, srv, db, store, dbs):
        object.__setattr__(self, "_srv", srv)
        object.__setattr__(self, "db", db)
        object.__setattr__(self, "store", store)
        object.__setattr__(self, "dbs", dbs)

    def __getattr__(self, name):
        f = getattr(type(self._srv), name, None)
        if isinstance(f, types.FunctionType):
            return f.__get__(self)
        return getattr(self._srv, name)

    def __setattr__(self, name, value):
        setattr(self._srv, name, value)


class ExecDatabases:
    """The databases as EXEC's commands see them: database 0 is the ExecDB, n >= 1
    a PrefixedDB over it with database n's prefix (made when first selected)."""
    __slots__ = ("xdb", "dbs", "views")

    def __init__(self, xdb, dbs):
        self.xdb = xdb
        self.dbs = dbs
        self.views = {0: xdb}

    def __len__(self):
        return len(self.dbs)

    def __getitem__(self, n):
        v = self.views.get(n)
        if v is None:
            v = self.views[n] = PrefixedDB(self.xdb, self.dbs[n].prefix)
        return v


class ExecStore:
    """Store for EXEC's commands: every step runs at once, in the EXEC step."""

    def __init__(self, store, xdb):
        self.sync = store.sync
        self.xdb = xdb

    def write(self, fn, *args):
        return fn(*args)

    write_heavy = read = write

    def put(self, key, value):
        self.xdb.put(key, value)
        return resp.OK


class ExecDB:
    """The database as EXEC's commands see it (invariant 2): writes go to the
    transaction txn; reads of keys it wrote come from it, others from db (which
    nothing else writes meanwhile, invariant 1); scans come from txn's overlay."""

    def __init__(self, db, txn):
        self.db = db
        self.txn = txn
        self.clock = db.core.clock
        self.own = {}                   # key -> (value, expiry time or None) or None (deleted)

    def __getattr__(self, name):        # stats, sv, path, ...: the database's
        return getattr(self.db, name)

    def _own(self, key):
        """(True, (value, seconds left or None) or None) for a key EXEC wrote, else (False, None)."""
        w = self.own.get(bytes(key), self)
        if w is self:
            return False, None
        if w is None:
            return True, None
        v, at = w
        if at is None:
            return True, (v, None)
        left = at - self.clock()
        return True, ((v, left) if left > 0 else None)

    def get(self, key, default=None):
        own, r = self._own(key)
        if own:
            return default if r is None else r[0]
        return self.db.get(key, default)

    get_view = get

    def get_with_ttl(self, key):
        own, r = self._own(key)
        return r if own else self.db.get_with_ttl(key)

    def ttl(self, key):
        own, r = self._own(key)
        if own:
            return r[1] if r is not None else None
        return self.db.ttl(key)

    def multi_get(self, keys):
        return [self.get(k) for k in keys]

    def snapshot(self):
        return _View(self)

    def put(self, key, value, *, ttl=None, sync=False):
        self.txn.put(key, value, ttl=ttl)
        self.own[bytes(key)] = (bytes(value), None if ttl is None else self.clock() + ttl)

    def delete(self, key, *, sync=False):
        self.txn.delete(key)
        self.own[bytes(key)] = None

    def write_batch(self):
        return _Batch()

    def write(self, wb, *, sync=False):
        for op in wb.ops:
            if op[0] is None:
                self.delete(op[1])
            elif op[0] is _RANGE:
                self.delete_range(op[1], op[2])
            else:
                self.put(op[1], op[0], ttl=op[2])

    def delete_range(self, start, stop, *, sync=False):
        for k in self.txn.keys(start, stop):   # the transaction has no range tombstones
            self.delete(k)

    def keys(self, start=None, stop=None, *, reverse=False):
        return _ListIter(self.txn.keys(start, stop, reverse=reverse))

    def items(self, start=None, stop=None):
        return _ListIter(self.txn.items(start, stop))


class _Batch:
    """A write batch of EXEC's commands, applied to the ExecDB by its write()."""

    def __init__(self):
        self.ops = []

    def __len__(self):
        return len(self.ops)

    def put(self, key, value, ttl=None):
        self.ops.append((value, key, ttl))

    def delete(self, key):
        self.ops.append((None, key, None))

    def delete_range(self, start, stop):
        self.ops.append((_RANGE, start, stop))


_RANGE = object()                       # a _Batch op: delete_range


class _View:
    """What MGET's snapshot path needs of ExecDB."""

    def __init__(self, xdb):
        self.multi_get = xdb.multi_get
        self.get = xdb.get

    def close(self):
        pass


class _ListIter:
    """A scan's list as the iterator the commands expect (iterable, close())."""

    def __init__(self, rows):
        self._it = iter(rows)

    def __iter__(self):
        return self._it

    def close(self):
        pass


MULTI_COMMANDS = {
    b"MULTI": (c_multi, 1, ("noscript", "loading", "stale", "fast"), 0, 0, 0),
    b"EXEC": (c_exec, 1, ("noscript", "loading", "stale", "skip_slowlog"), 0, 0, 0),
    b"DISCARD": (c_discard, 1, ("noscript", "loading", "stale", "fast"), 0, 0, 0),
    b"WATCH": (c_watch, -2, ("noscript", "loading", "stale", "fast"), 1, -1, 1),
    b"UNWATCH": (c_unwatch, 1, ("noscript", "loading", "stale", "fast"), 0, 0, 0),
    b"RESET": (c_reset, 1, ("noscript", "loading", "stale", "fast", "no_auth"), 0, 0, 0),
}
