"""The data commands of `lsmkv serve`: strings, counters, expiry, SCAN, DBSIZE.

Each handler is handler(srv, conn, args) -> reply, where args are memoryviews
into the connection's read buffer (valid until the reply is produced) and the
reply is bytes, a list of byte pieces, or an asyncio Future of one of those (a
write step that runs on the writer thread, lsmkv/server/store.py). Errors are
Redis's words: a handler raises CommandError(text), or a write step returns
resp.error(text) (it may run on another thread).

Write steps (the functions named _w_*) do a command's whole read-modify-write;
the store runs them one at a time in arrival order, which is what makes INCR,
SET NX/XX/GET/KEEPTTL, GETDEL, DEL's count, EXPIRE and PERSIST atomic with
respect to every other client.

Expiry: the engine keeps a per-key expiry in milliseconds (rounded up), so PX,
PEXPIRE and PTTL are exact to 1 ms and TTL rounds to the nearest second as
Redis does.
"""
from lsmkv.server import expiry, resp
from lsmkv.server.args import INT64_MAX, INT64_MIN, NOT_INT, OVERFLOW, SYNTAX, CommandError, to_int
from lsmkv.server import hashes as hashmod
from lsmkv.server.hashes import HASH_COMMANDS
from lsmkv.server.keys import KEY_COMMANDS
from lsmkv.server.scan import compile_match, prefix_stop
from lsmkv.server.strings import STRING_COMMANDS
from lsmkv.server.dbsize import WALK_INLINE_MAX, estimate as dbsize_estimate, memtable_entries

SCAN_INLINE_MAX = 1000          # a SCAN with a larger COUNT runs on the reader thread
HEAVY_KEYS = 10000              # a multi-key command with more keys runs on a thread (store.py)
__all__ = ["CommandError", "to_int", "COMMANDS", "dbsize_estimate", "count_step", "HEAVY_KEYS"]


def _lookup(db, key):
    """(value or None, remaining seconds or None), in one engine lookup."""
    r = db.get_with_ttl(key)
    return (None, None) if r is None else r


# ---------------------------------------------------------------- strings

def c_get(srv, conn, a):
    # a value in a cached block comes as a pinned view: a large one is sent
    # straight from the cache (resp.bulk), the pin going with the reply
    return resp.bulk(conn.db.get_view(a[1]))


def _w_put(db, key, val, sync):
    db.put(key, val, sync=sync)
    return resp.OK


def _w_put_ttl(db, key, val, at_ms, sync):
    ttl = expiry.ttl_seconds(at_ms)
    if ttl <= 0:
        db.delete(key, sync=sync)           # already expired (EXAT/PXAT in the past)
    else:
        db.put(key, val, ttl=ttl, sync=sync)
    return resp.OK


def c_set(srv, conn, a):
    store = srv.store
    n = len(a)
    if n == 3:
        if conn.db is srv.db:               # database 0: the store's fast path
            return store.put(a[1], a[2])
        return store.write(_w_put, conn.db, a[1], a[2], store.sync)
    nx = xx = get = keepttl = False
    unit = targ = None
    at = None
    i = 3
    while i < n:
        opt = bytes(a[i]).upper()
        if opt == b"NX" and not xx:
            nx = True
        elif opt == b"XX" and not nx:
            xx = True
        elif opt == b"GET":
            get = True
        elif opt == b"KEEPTTL" and unit is None:
            keepttl = True
        elif opt in (b"EX", b"PX", b"EXAT", b"PXAT") and unit is None and not keepttl and i + 1 < n:
            unit = opt
            targ = a[i + 1]
            i += 1
        else:
            raise CommandError(SYNTAX)
        i += 1
    if unit is not None:
        # checked in integer ms before anything changes (expiry.py): the old value stays
        at = expiry.set_expire_ms(targ, unit, expiry.now_ms(), "set")
    if at is not None and not (nx or xx or get):
        return store.write(_w_put_ttl, conn.db, a[1], a[2], at, store.sync)
    return store.write(_w_set, conn.db, a[1], a[2], at, nx, xx, get, keepttl, store.sync)


def _w_set(db, key, val, at, nx, xx, get, keepttl, sync):
    old = None
    ttl = None
    if nx or xx or get or keepttl:
        old, ttl = _lookup(db, key)
        exists = old is not None
        if (nx and exists) or (xx and not exists):
            return resp.bulk(old) if get else resp.NULL
        if not (keepttl and exists):
            ttl = None
        elif ttl is not None:
            ttl = max(ttl, 0.001)
    if at is not None:
        ttl = expiry.ttl_seconds(at)
    if ttl is not None and ttl <= 0:
        db.delete(key, sync=sync)           # EXAT/PXAT in the past: set, then expired at once
    else:
        db.put(key, val, ttl=ttl, sync=sync)
    return resp.bulk(old) if get else resp.OK


def c_setnx(srv, conn, a):
    return srv.store.write(_w_setnx, conn.db, a[1], a[2], srv.store.sync)


def _w_setnx(db, key, val, sync):
    if db.get(key) is not None:
        return resp.integer(0)
    db.put(key, val, sync=sync)
    return resp.integer(1)


def _setex(srv, conn, a, unit, name):
    at = expiry.set_expire_ms(a[2], unit, expiry.now_ms(), name)
    return srv.store.write(_w_put_ttl, conn.db, a[1], a[3], at, srv.store.sync)


def c_setex(srv, conn, a):
    return _setex(srv, conn, a, b"EX", "setex")


def c_psetex(srv, conn, a):
    return _setex(srv, conn, a, b"PX", "psetex")


def c_getdel(srv, conn, a):
    return srv.store.write(_w_getdel, conn.db, a[1], srv.store.sync)


def _w_getdel(db, key, sync):
    v = db.get(key)
    if v is not None:
        db.delete(key, sync=sync)
    return resp.bulk(v)


def c_mget(srv, conn, a):
    # one batched lookup: each table is asked once about its keys, in key order
    if len(a) > HEAVY_KEYS:
        # a snapshot taken now (the reply is the state at arrival, as one atomic MGET),
        # read on the reader thread in chunks, so the loop gets the GIL between them
        return srv.store.read(mget_step, conn.db.snapshot(), a)
    return resp.array(conn.db.multi_get(a[1:]))


def mget_step(snap, a):
    """MGET's reply for a[1:] from snapshot snap, in chunks of HEAVY_KEYS keys; closes snap."""
    try:
        parts = [b"*%d\r\n" % (len(a) - 1)]
        for i in range(1, len(a), HEAVY_KEYS):
            for v in snap.multi_get(a[i:i + HEAVY_KEYS]):
                parts.append(resp.NULL if v is None else b"$%d\r\n%b\r\n" % (len(v), v))
        return b"".join(parts)
    finally:
        snap.close()


def c_mset(srv, conn, a):
    if len(a) % 2 == 0:
        raise CommandError("ERR wrong number of arguments for 'mset' command")
    if len(a) > HEAVY_KEYS:
        return srv.store.write_heavy(_w_mset, conn.db, a, srv.store.sync)
    return srv.store.write(_w_mset, conn.db, a, srv.store.sync)


def _w_mset(db, a, sync):
    wb = db.write_batch()
    for i in range(1, len(a), 2):
        wb.put(a[i], a[i + 1])
    db.write(wb, sync=sync)
    return resp.OK


def c_del(srv, conn, a):
    if len(a) > HEAVY_KEYS:
        return srv.store.write_heavy(_w_del, conn.db, a[1:], srv.store.sync, srv.hashes)
    return srv.store.write(_w_del, conn.db, a[1:], srv.store.sync, srv.hashes)


def _w_del(db, keys, sync, hashes=False):
    seen = set()
    wb = db.write_batch()
    for k in keys:
        kb = bytes(k)
        if kb in seen:
            continue
        if db.get(kb) is not None:
            seen.add(kb)
            wb.delete(kb)
        elif hashes and hashmod.delete_hash(db, wb, kb):
            seen.add(kb)
    if seen:
        db.write(wb, sync=sync)
    return resp.integer(len(seen))


def c_exists(srv, conn, a):
    if len(a) > HEAVY_KEYS:
        return srv.store.read(count_step, conn.db, a, srv.hashes)
    return count_step(conn.db, a, srv.hashes)


def count_step(db, a, hashes=False):
    """How many of the keys a[1:] exist (EXISTS, TOUCH; a key named twice counts twice)."""
    get = db.get
    if hashes:
        return resp.integer(sum(1 for k in a[1:] if get(k) is not None or hashmod.is_hash(db, k)))
    return resp.integer(sum(1 for k in a[1:] if get(k) is not None))


def c_type(srv, conn, a):
    if conn.db.get(a[1]) is not None:
        return b"+string\r\n"
    return b"+hash\r\n" if srv.hashes and hashmod.is_hash(conn.db, a[1]) else b"+none\r\n"


# ---------------------------------------------------------------- counters

def _incr(srv, conn, a, delta):
    return srv.store.write(_w_incr, conn.db, a[1], delta, srv.store.sync)


def _w_incr(db, key, delta, sync):
    old, ttl = _lookup(db, key)
    if old is None:
        v = 0
        ttl = None
    else:
        try:
            v = to_int(old)
        except CommandError:
            return resp.error(NOT_INT)
    v += delta
    if not INT64_MIN <= v <= INT64_MAX:
        return resp.error(OVERFLOW)
    db.put(key, b"%d" % v, ttl=None if ttl is None else max(ttl, 0.001), sync=sync)
    return resp.integer(v)


def c_incr(srv, conn, a):
    return _incr(srv, conn, a, 1)


def c_decr(srv, conn, a):
    return _incr(srv, conn, a, -1)


def c_incrby(srv, conn, a):
    return _incr(srv, conn, a, to_int(a[2]))


def c_decrby(srv, conn, a):
    d = to_int(a[2])
    if d == INT64_MIN:
        raise CommandError("ERR decrement would overflow")
    return _incr(srv, conn, a, -d)


# ---------------------------------------------------------------- expiry

def _expire(srv, conn, a, unit, name):
    t = to_int(a[2])
    flags = set()
    for x in a[3:]:
        f = bytes(x).upper()
        if f not in (b"NX", b"XX", b"GT", b"LT"):
            raise CommandError(f"ERR Unsupported option {bytes(x).decode('utf-8', 'replace')}")
        flags.add(f)
    if b"NX" in flags and len(flags) > 1:
        raise CommandError("ERR NX and XX, GT or LT options at the same time are not compatible")
    if b"GT" in flags and b"LT" in flags:
        raise CommandError("ERR GT and LT options at the same time are not compatible")
    # Redis's checks in integer ms, before the key is looked at (expiry.py)
    at = expiry.expire_at_ms(t, unit, expiry.now_ms(), name)
    return srv.store.write(_w_expire, conn.db, a[1], at, flags, srv.store.sync, srv.hashes)


def _w_expire(db, key, at, flags, sync, hashes=False):
    v, cur = _lookup(db, key)
    if v is None and hashes:                 # a hash's TTL is its metadata key's
        key = hashmod.meta_key(key)
        v, cur = _lookup(db, key)
    if v is None:
        return resp.integer(0)
    now = expiry.now_ms()
    if flags:
        cur_at = expiry.abs_ms(cur, now)
        if b"NX" in flags and cur_at is not None:
            return resp.integer(0)
        if b"XX" in flags and cur_at is None:
            return resp.integer(0)
        # a key without expiry counts as an infinite TTL (Redis)
        if b"GT" in flags and (cur_at is None or at <= cur_at):
            return resp.integer(0)
        if b"LT" in flags and cur_at is not None and at >= cur_at:
            return resp.integer(0)
    ttl = expiry.ttl_seconds(at, now)
    if ttl <= 0:
        if hashes and bytes(key).startswith(hashmod.META):
            wb = db.write_batch()
            hashmod.delete_hash(db, wb, bytes(key)[len(hashmod.META):])
            db.write(wb, sync=sync)
            return resp.integer(1)
        db.delete(key, sync=sync)
    else:
        db.put(key, v, ttl=ttl, sync=sync)
    return resp.integer(1)


def c_expire(srv, conn, a):
    return _expire(srv, conn, a, b"EX", "expire")


def c_pexpire(srv, conn, a):
    return _expire(srv, conn, a, b"PX", "pexpire")


def c_expireat(srv, conn, a):
    return _expire(srv, conn, a, b"EXAT", "expireat")


def c_pexpireat(srv, conn, a):
    return _expire(srv, conn, a, b"PXAT", "pexpireat")


def _pttl_ms(db, key, hashes=False):
    try:
        t = db.ttl(key)
    except KeyError:
        if hashes and hashmod.is_hash(db, key):
            return _pttl_ms(db, hashmod.meta_key(key))
        return -2
    if t is None:
        return -1
    return int(t * 1000.0)          # floor: never more than was set (the engine rounds expiry up)


def c_ttl(srv, conn, a):
    ms = _pttl_ms(conn.db, a[1], srv.hashes)
    return resp.integer(ms if ms < 0 else (ms + 500) // 1000)


def c_pttl(srv, conn, a):
    return resp.integer(_pttl_ms(conn.db, a[1], srv.hashes))


def c_persist(srv, conn, a):
    return srv.store.write(_w_persist, conn.db, a[1], srv.store.sync, srv.hashes)


def _w_persist(db, key, sync, hashes=False):
    v, t = _lookup(db, key)
    if v is None and hashes:
        key = hashmod.meta_key(key)
        v, t = _lookup(db, key)
    if v is None or t is None:
        return resp.integer(0)
    db.put(key, v, sync=sync)
    return resp.integer(1)


# ---------------------------------------------------------------- keyspace

def c_scan(srv, conn, a):
    start = srv.cursors.decode(a[1])
    if start is False:
        raise CommandError("ERR invalid cursor")
    count = 10
    match = None
    typ = None
    i = 2
    n = len(a)
    while i < n:
        opt = bytes(a[i]).upper()
        if i + 1 >= n:
            raise CommandError(SYNTAX)
        if opt == b"COUNT":
            count = to_int(a[i + 1])
            if count < 1:
                raise CommandError(SYNTAX)
        elif opt == b"MATCH":
            match = bytes(a[i + 1])
        elif opt == b"TYPE":
            typ = bytes(a[i + 1]).lower()
        else:
            raise CommandError(SYNTAX)
        i += 2
    if count > SCAN_INLINE_MAX:
        return srv.store.read(scan_step, srv.cursors, conn.db, start, count, match, typ, srv.hashes)
    return scan_step(srv.cursors, conn.db, start, count, match, typ, srv.hashes)


def scan_step(cursors, db, start, count, match, typ, hashes=False):
    """Up to `count` keys examined from `start` (None: the first key) in key order;
    the reply is [next cursor, matching keys]. MATCH's literal prefix bounds the
    range read, so a prefix scan never walks keys outside it."""
    regex, prefix = compile_match(match) if match is not None else (None, b"")
    lo = start
    if prefix and (lo is None or lo < prefix):
        lo = prefix
    hi = prefix_stop(prefix) if prefix else None
    keys = []
    nxt = None
    examined = 0
    it = hashmod.keyspace(db, lo, hi, hashes)
    try:
        for k, is_hash in it:
            if examined == count:
                nxt = k
                break
            examined += 1
            if (regex is None or regex.fullmatch(k)) and (
                    typ is None or typ == (b"hash" if is_hash else b"string")):
                keys.append(k)
    finally:
        it.close()
    cursor = b"0" if nxt is None else cursors.encode(nxt)
    return b"*2\r\n$%d\r\n%b\r\n" % (len(cursor), cursor) + resp.array(keys)


def c_dbsize(srv, conn, a):
    # the estimate walks memtable entries of the other databases (dbsize.py): a long walk
    # goes to the reader thread
    if memtable_entries(conn.db) > WALK_INLINE_MAX:
        return srv.store.read(dbsize_step, conn.db)
    return dbsize_step(conn.db)


def dbsize_step(db):
    return resp.integer(dbsize_estimate(db))


COMMANDS = {
    # name: (handler, arity, flags, first key, last key, step)  (Redis's COMMAND conventions)
    b"GET": (c_get, 2, ("readonly", "fast"), 1, 1, 1),
    b"SET": (c_set, -3, ("write", "denyoom"), 1, 1, 1),
    b"SETNX": (c_setnx, 3, ("write", "denyoom", "fast"), 1, 1, 1),
    b"SETEX": (c_setex, 4, ("write", "denyoom"), 1, 1, 1),
    b"PSETEX": (c_psetex, 4, ("write", "denyoom"), 1, 1, 1),
    b"GETDEL": (c_getdel, 2, ("write", "fast"), 1, 1, 1),
    b"MGET": (c_mget, -2, ("readonly", "fast"), 1, -1, 1),
    b"MSET": (c_mset, -3, ("write", "denyoom"), 1, -1, 2),
    b"DEL": (c_del, -2, ("write",), 1, -1, 1),
    b"EXISTS": (c_exists, -2, ("readonly", "fast"), 1, -1, 1),
    b"TYPE": (c_type, 2, ("readonly", "fast"), 1, 1, 1),
    b"INCR": (c_incr, 2, ("write", "denyoom", "fast"), 1, 1, 1),
    b"DECR": (c_decr, 2, ("write", "denyoom", "fast"), 1, 1, 1),
    b"INCRBY": (c_incrby, 3, ("write", "denyoom", "fast"), 1, 1, 1),
    b"DECRBY": (c_decrby, 3, ("write", "denyoom", "fast"), 1, 1, 1),
    b"EXPIRE": (c_expire, -3, ("write", "fast"), 1, 1, 1),
    b"PEXPIRE": (c_pexpire, -3, ("write", "fast"), 1, 1, 1),
    b"EXPIREAT": (c_expireat, -3, ("write", "fast"), 1, 1, 1),
    b"PEXPIREAT": (c_pexpireat, -3, ("write", "fast"), 1, 1, 1),
    b"TTL": (c_ttl, 2, ("readonly", "fast"), 1, 1, 1),
    b"PTTL": (c_pttl, 2, ("readonly", "fast"), 1, 1, 1),
    b"PERSIST": (c_persist, 2, ("write", "fast"), 1, 1, 1),
    b"SCAN": (c_scan, -2, ("readonly",), 0, 0, 0),
    b"DBSIZE": (c_dbsize, 1, ("readonly", "fast"), 0, 0, 0),
    **STRING_COMMANDS,
    **KEY_COMMANDS,
    **HASH_COMMANDS,
}

# commands on string values: with hashes in the database, a key argument holding a hash is
# WRONGTYPE (checked by Server.execute before the command runs; see hashes.py)
STRING_TYPED = [b"GET", b"SETNX", b"GETDEL", b"MSETNX",
                b"INCR", b"DECR", b"INCRBY", b"DECRBY", b"INCRBYFLOAT", b"GETEX", b"GETSET",
                b"STRLEN", b"GETRANGE", b"SUBSTR", b"SETRANGE", b"APPEND"]
# commands that replace a key of any type, as Redis (a hash is deleted first; SET NX/GET on one
# reply nil/WRONGTYPE): Server.execute
REPLACING = [b"SET", b"SETEX", b"PSETEX", b"MSET"]
