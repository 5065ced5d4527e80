"""Keyspace commands beyond DEL/EXISTS/TYPE/SCAN: RENAME, RENAMENX, COPY, KEYS,
TOUCH, EXPIRETIME, PEXPIRETIME, OBJECT (ENCODING, REFCOUNT, IDLETIME, FREQ,
HELP). Conventions as lsmkv/server/commands.py. RENAME and COPY carry the TTL,
as Redis, and move hashes too; each is one write step and one atomic write batch."""
from lsmkv.server import expiry, hashes, resp
from lsmkv.server.args import SYNTAX, CommandError
from lsmkv.server.databases import (SWAPDB_MAX_BYTES, TooLarge, base_of, batch_for, database_rows, db_index,
                                    flush_batch)
from lsmkv.server.scan import compile_match, prefix_stop


def lookup(db, key):
    """(value or None, seconds left or None) in one engine lookup."""
    r = db.get_with_ttl(key)
    return (None, None) if r is None else r


def exists(db, key, with_hashes):
    """True if key holds a string, or (with_hashes) a hash."""
    return db.get(key) is not None or (with_hashes and hashes.is_hash(db, key))


def move(sdb, swb, ddb, dwb, src, dst, v, ttl, delete_src):
    """Add to the batches: dst of database ddb (batch dwb) replaced by a copy of
    src of database sdb (batch swb; the same database and batch, or two views of
    one base batch: databases.batch_for), the string v with ttl or else the hash
    src; and src deleted if delete_src. False if src is missing."""
    hashes.delete_hash(ddb, dwb, dst)
    dwb.delete(dst)
    if v is not None:
        dwb.put(dst, v, ttl=None if ttl is None else max(ttl, 0.001))
    elif not hashes.copy_hash(sdb, dwb, src, dst):
        return False
    if delete_src:
        if v is None:
            hashes.delete_hash(sdb, swb, src)
        swb.delete(src)
    return True


def c_rename(srv, conn, a):
    return srv.store.write(w_rename, conn.db, a[1], a[2], False, srv.hashes, srv.store.sync)


def c_renamenx(srv, conn, a):
    return srv.store.write(w_rename, conn.db, a[1], a[2], True, srv.hashes, srv.store.sync)


def w_rename(db, src, dst, nx, with_hashes, sync):
    """RENAME/RENAMENX's write step: the value (a string or a hash) and its TTL
    move in one batch, replacing dst (a hash's fields are copied: O(fields))."""
    v, ttl = lookup(db, src)
    if v is None and not (with_hashes and hashes.is_hash(db, src)):
        return resp.error("ERR no such key")
    same = bytes(src) == bytes(dst)
    if nx:
        if same or exists(db, dst, with_hashes):
            return resp.integer(0)
    elif same:
        return resp.OK
    wb = db.write_batch()
    move(db, wb, db, wb, src, dst, v, ttl, True)
    db.write(wb, sync=sync)
    return resp.integer(1) if nx else resp.OK


def c_copy(srv, conn, a):
    replace = False
    dst_db = conn.db
    i = 3
    while i < len(a):
        opt = bytes(a[i]).upper()
        if opt == b"REPLACE":
            replace = True
            i += 1
        elif opt == b"DB" and i + 1 < len(a):
            dst_db = srv.dbs[db_index(a[i + 1], len(srv.dbs))]
            i += 2
        else:
            raise CommandError(SYNTAX)
    return srv.store.write(w_copy, conn.db, dst_db, a[1], a[2], replace, srv.hashes, srv.store.sync)


def w_copy(sdb, ddb, src, dst, replace, with_hashes, sync):
    """COPY's write step (dst in database ddb, which may be sdb): 1 if copied
    (with the TTL; a hash's fields under a new version), 0 if src is missing or
    dst exists and REPLACE was not given. One atomic write batch."""
    if sdb is ddb and bytes(src) == bytes(dst):
        return resp.error("ERR source and destination objects are the same")
    v, ttl = lookup(sdb, src)
    if v is None and not (with_hashes and hashes.is_hash(sdb, src)):
        return resp.integer(0)
    if not replace and exists(ddb, dst, with_hashes):
        return resp.integer(0)
    base = base_of(sdb)
    wb = base.write_batch()
    move(sdb, batch_for(sdb, wb), ddb, batch_for(ddb, wb), src, dst, v, ttl, False)
    base.write(wb, sync=sync)
    return resp.integer(1)


def c_move(srv, conn, a):
    n = db_index(a[2], len(srv.dbs))
    if n == conn.dbnum:
        raise CommandError("ERR source and destination objects are the same")
    return srv.store.write(w_move, conn.db, srv.dbs[n], a[1], srv.hashes, srv.store.sync)


def w_move(sdb, ddb, key, with_hashes, sync):
    """MOVE's write step: 1 if key (a string or a hash, with its TTL) moved from
    database sdb to ddb, 0 if it is missing or ddb has it. One atomic write batch
    over both databases (a hash's fields are copied under a new version, O(fields))."""
    v, ttl = lookup(sdb, key)
    if v is None and not (with_hashes and hashes.is_hash(sdb, key)):
        return resp.integer(0)
    if exists(ddb, key, with_hashes):
        return resp.integer(0)
    base = base_of(sdb)
    wb = base.write_batch()
    move(sdb, batch_for(sdb, wb), ddb, batch_for(ddb, wb), key, key, v, ttl, True)
    base.write(wb, sync=sync)
    return resp.integer(1)


def c_touch(srv, conn, a):
    if len(a) > 10000:                        # commands.HEAVY_KEYS: on the reader thread
        return srv.store.read(touch_step, conn.db, a, srv.hashes)
    return touch_step(conn.db, a, srv.hashes)


def touch_step(db, a, with_hashes=False):
    """How many of the keys a[1:] exist."""
    get = db.get
    return resp.integer(sum(1 for k in a[1:] if get(k) is not None
                            or (with_hashes and hashes.is_hash(db, k))))


def c_keys(srv, conn, a):
    return srv.store.read(keys_step, conn.db, bytes(a[1]), srv.hashes)


def keys_step(db, pattern, with_hashes=False):
    """Every live key matching pattern, in key order (its literal prefix bounds the range)."""
    regex, prefix = compile_match(pattern)
    it = hashes.keyspace(db, prefix or None, prefix_stop(prefix) if prefix else None, with_hashes)
    try:
        out = [k for k, _ in it if regex is None or regex.fullmatch(k)]
    finally:
        it.close()
    return resp.array(out)


def _expiretime(srv, conn, a, unit_ms):
    key = a[1]
    if srv.hashes and conn.db.get(key) is None and hashes.is_hash(conn.db, key):
        key = hashes.meta_key(key)
    try:
        t = conn.db.ttl(key)
    except KeyError:
        return resp.integer(-2)
    if t is None:
        return resp.integer(-1)
    at = expiry.abs_ms(t, expiry.now_ms())
    return resp.integer(at if unit_ms else (at + 500) // 1000)


def c_expiretime(srv, conn, a):
    return _expiretime(srv, conn, a, False)


def c_pexpiretime(srv, conn, a):
    return _expiretime(srv, conn, a, True)


OBJECT_HELP = [
    b"OBJECT <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    b"ENCODING <key>", b"    Return the kind of internal representation used in order to store the value",
    b"    associated with a <key>.",
    b"FREQ <key>", b"    Return the access logarithmic access frequency counter of a <key>.",
    b"IDLETIME <key>", b"    Return the idle time of a <key>, that is the approximated number of",
    b"    seconds elapsed since the last access to the key.",
    b"REFCOUNT <key>", b"    Return the number of references of the value associated with the specified",
    b"    <key>.",
    b"HELP", b"    Print this help."]


def encoding(v):
    """Redis's string encoding name for value v: int, embstr (<= 44 bytes) or raw."""
    if len(v) <= 20:
        try:
            n = int(v)
            if b"%d" % n == bytes(v) and -(1 << 63) <= n < (1 << 63):
                return b"int"
        except ValueError:
            pass
    return b"embstr" if len(v) <= 44 else b"raw"


def c_object(srv, conn, a):
    sub = bytes(a[1]).upper()
    if sub == b"HELP" and len(a) == 2:
        return resp.encode([x.decode() for x in OBJECT_HELP])
    if sub not in (b"ENCODING", b"REFCOUNT", b"IDLETIME", b"FREQ", b"HELP"):
        raise CommandError(f"ERR unknown subcommand '{bytes(a[1]).decode('utf-8', 'replace')}'. "
                           f"Try OBJECT HELP.")
    if len(a) != (2 if sub == b"HELP" else 3):
        raise CommandError(f"ERR wrong number of arguments for 'object|{sub.decode().lower()}' command")
    v = conn.db.get(a[2])
    if v is None and srv.hashes and hashes.is_hash(conn.db, a[2]):
        if sub == b"ENCODING":
            return resp.bulk(b"hashtable")
        v = b""
    if v is None:
        return resp.NULL
    if sub == b"ENCODING":
        return resp.bulk(encoding(v))
    if sub == b"REFCOUNT":
        return resp.integer(1)
    if sub == b"IDLETIME":
        return resp.integer(0)            # access times are not tracked
    raise CommandError("ERR An LFU maxmemory policy is not selected, access frequency not tracked. "
                       "Please note that when switching between policies at runtime LRU and LFU "
                       "data will take some time to adjust.")


def c_flushdb(srv, conn, a):
    for x in a[1:]:
        if bytes(x).upper() not in (b"ASYNC", b"SYNC"):
            raise CommandError(SYNTAX)
    if len(a) > 2:
        raise CommandError(SYNTAX)
    if bytes(a[0]).upper() == b"FLUSHALL":
        srv.hashes = False
        return srv.store.write(w_flushall, srv.db, srv.store.sync)
    return srv.store.write(w_flushdb, conn.db, srv.store.sync)


def w_flushdb(db, sync):
    """FLUSHDB's write step: range tombstones over database db's keys only
    (databases.flush_batch: one over a database n >= 1's prefix; two for
    database 0, around the other databases' range), in one write batch: O(1) to
    write whatever the database holds; compaction drops the covered keys."""
    base = base_of(db)
    wb = base.write_batch()
    if flush_batch(db, wb):
        base.write(wb, sync=sync)
    return resp.OK


def w_flushall(db, sync):
    """FLUSHALL's write step: one range tombstone (the engine's delete_range) from
    the empty key to just past the last key there is: every database, hashes'
    internal keys included (and databases past --databases, if an earlier run had
    more): O(1) to write whatever the DB holds."""
    it = db.keys(reverse=True)
    try:
        last = next(iter(it), None)
    finally:
        it.close()
    if last is not None:
        db.delete_range(b"", last + b"\x00", sync=sync)
    return resp.OK


def c_swapdb(srv, conn, a):
    n = db_index(a[1], len(srv.dbs), "ERR invalid first DB index")
    m = db_index(a[2], len(srv.dbs), "ERR invalid second DB index")
    if n == m:
        return resp.OK
    return srv.store.write_heavy(w_swapdb, srv.dbs[n], srv.dbs[m], srv.store.sync)


def w_swapdb(a, b, sync):
    """SWAPDB's write step (on the writer thread: O(keys of both databases)):
    every key of each database, hashes' internal keys included, read with its
    TTL and written into the other, after range tombstones over both, all in
    one write batch (atomic; it holds both databases' data in memory, so at most
    SWAPDB_MAX_BYTES of keys and values: past that it refuses, changing nothing)."""
    base = base_of(a)
    wb = base.write_batch()
    try:
        rows_a = database_rows(a, SWAPDB_MAX_BYTES)
        rows_b = database_rows(b, SWAPDB_MAX_BYTES - sum(len(k) + len(v) for k, v, _ in rows_a))
    except TooLarge:
        return resp.error(f"ERR SWAPDB copies both databases here (they are key ranges of one store, "
                          f"not tables to swap) and they hold over {SWAPDB_MAX_BYTES >> 20} MiB: "
                          f"refused, nothing changed")
    flush_batch(a, wb)
    flush_batch(b, wb)
    for rows, dst in ((rows_a, b), (rows_b, a)):
        dwb = batch_for(dst, wb)
        for k, v, ttl in rows:
            dwb.put(k, v, ttl=None if ttl is None else max(ttl, 0.001))
    base.write(wb, sync=sync)
    return resp.OK


KEY_COMMANDS = {
    b"FLUSHDB": (c_flushdb, -1, ("write",), 0, 0, 0),
    b"FLUSHALL": (c_flushdb, -1, ("write",), 0, 0, 0),
    b"MOVE": (c_move, 3, ("write", "fast"), 1, 1, 1),
    b"SWAPDB": (c_swapdb, 3, ("write",), 0, 0, 0),       # O(keys) here: not "fast"
    b"RENAME": (c_rename, 3, ("write",), 1, 2, 1),
    b"RENAMENX": (c_renamenx, 3, ("write", "fast"), 1, 2, 1),
    b"COPY": (c_copy, -3, ("write", "denyoom"), 1, 2, 1),
    b"TOUCH": (c_touch, -2, ("readonly", "fast"), 1, -1, 1),
    b"KEYS": (c_keys, 2, ("readonly",), 0, 0, 0),
    b"EXPIRETIME": (c_expiretime, 2, ("readonly", "fast"), 1, 1, 1),
    b"PEXPIRETIME": (c_pexpiretime, 2, ("readonly", "fast"), 1, 1, 1),
    b"OBJECT": (c_object, -2, ("readonly",), 2, 2, 1),
}
