"""Hashes stored as one LSM key per field, as Kvrocks does: HSET, HSETNX, HMSET,
HGET, HMGET, HDEL, HGETALL, HKEYS, HVALS, HLEN, HEXISTS, HSTRLEN, HINCRBY,
HSCAN; and the keyspace's view of them (TYPE, DEL, EXISTS, expiry, SCAN, KEYS).

Key encoding (docs/server.md, "Hashes"): every internal key starts with NS, a
prefix reserved for the server (user keys must not start with it):

    metadata  NS + b"M" + key                                  -> version (8 bytes, big endian)
                                                                  + field count (8 bytes, big endian)
    field     NS + b"F" + len(key) (4 bytes, big endian) + key
                 + version (8 bytes) + field                   -> the field's value

The metadata key carries the hash's TTL (the engine's per-key expiry); fields
have none. A field belongs to the hash only if its version is the metadata's,
so a hash that expired or was deleted leaves its fields invisible at once, and
a new hash of the same name (a new version) never sees them. DEL deletes the
fields too; the fields of a hash that expired stay on disk until the key is
written again as a hash and deleted (Kvrocks drops them in a compaction filter,
which lsmkv does not have).

Write steps (w_*) run one at a time in arrival order (store.py), so HSET's
read-modify-write of the count, HINCRBY and HDEL are atomic.
"""
import heapq
import struct
import time

from lsmkv.server import resp
from lsmkv.server.args import INT64_MAX, INT64_MIN, OVERFLOW, SYNTAX, WRONGTYPE, CommandError, to_int
from lsmkv.server.scan import compile_match, prefix_stop

NS = b"\xff\x00lsmkv\x00"          # the reserved prefix of the server's internal keys
META = NS + b"M"
FIELD = NS + b"F"
NS_STOP = prefix_stop(NS)
_META = struct.Struct(">QQ")
_LEN = struct.Struct(">I")
_VER = struct.Struct(">Q")


def meta_key(key):
    """The metadata key of hash `key`."""
    return META + bytes(key)


def field_prefix(key, version):
    """The common prefix of every field key of hash `key` at `version`."""
    k = bytes(key)
    return FIELD + _LEN.pack(len(k)) + k + _VER.pack(version)


def read_meta(db, key):
    """(version, count, seconds left or None) of hash key, or None if it is not a hash."""
    r = db.get_with_ttl(META + bytes(key))
    if r is None:
        return None
    v, ttl = r
    version, count = _META.unpack(v)
    return version, count, ttl


def is_hash(db, key):
    """True if key holds a hash (one engine lookup)."""
    return db.get(META + bytes(key)) is not None


def any_hashes(db):
    """True if the database holds at least one hash (checked once at startup)."""
    it = db.keys(META, prefix_stop(META))
    try:
        return next(iter(it), None) is not None
    finally:
        it.close()


def _new_version():
    return time.time_ns()


def _put_meta(wb, key, version, count, ttl):
    wb.put(META + bytes(key), _META.pack(version, count),
           ttl=None if ttl is None else max(ttl, 0.001))


def _fields(db, key, version):
    """[(field, value)] of a hash, in field order."""
    p = field_prefix(key, version)
    n = len(p)
    it = db.items(p, prefix_stop(p))
    try:
        return [(k[n:], v) for k, v in it]
    finally:
        it.close()


def _check(db, key):
    """The hash's metadata (None: no such key); WRONGTYPE if key is a string."""
    m = read_meta(db, key)
    if m is None and db.get(key) is not None:
        raise CommandError(WRONGTYPE)
    return m


def _check_step(db, key):
    """_check for write steps, which return error replies instead of raising."""
    try:
        return _check(db, key), None
    except CommandError as e:
        return None, resp.error(str(e))


def _meta_or_new(m):
    """(version, count, ttl) of a hash's metadata m, or of a new hash if m is None."""
    return (_new_version(), 0, None) if m is None else m


# ---------------------------------------------------------------- writes

def c_hset(srv, conn, a):
    if len(a) % 2:
        raise CommandError(f"ERR wrong number of arguments for '{bytes(a[0]).decode().lower()}' command")
    srv.hashes = True
    hm = bytes(a[0]).upper() == b"HMSET"
    return srv.store.write(w_hset, conn.db, a[1], [bytes(x) for x in a[2:]], False, hm, srv.store.sync)


def c_hsetnx(srv, conn, a):
    srv.hashes = True
    return srv.store.write(w_hset, conn.db, a[1], [bytes(a[2]), bytes(a[3])], True, False, srv.store.sync)


def w_hset(db, key, pairs, nx, hmset, sync):
    """HSET/HMSET/HSETNX's write step: the number of new fields (HMSET: OK)."""
    m, err = _check_step(db, key)
    if err:
        return err
    version, count, ttl = _meta_or_new(m)
    p = field_prefix(key, version)
    wb = db.write_batch()
    added = 0
    seen = {}
    for i in range(0, len(pairs), 2):
        seen[pairs[i]] = pairs[i + 1]             # the last value of a field named twice wins
    for f, v in seen.items():
        exists = m is not None and db.get(p + f) is not None
        if exists and nx:
            return resp.integer(0)
        if not exists:
            added += 1
        wb.put(p + f, v)
    _put_meta(wb, key, version, count + added, ttl)
    db.write(wb, sync=sync)
    if hmset:
        return resp.OK
    return resp.integer(1 if nx else added)


def c_hdel(srv, conn, a):
    return srv.store.write(w_hdel, conn.db, a[1], [bytes(x) for x in a[2:]], srv.store.sync)


def w_hdel(db, key, fields, sync):
    """HDEL's write step: fields removed; the hash goes when its last field does."""
    m, err = _check_step(db, key)
    if err:
        return err
    if m is None:
        return resp.integer(0)
    version, count, ttl = m
    p = field_prefix(key, version)
    wb = db.write_batch()
    gone = 0
    for f in set(fields):
        if db.get(p + f) is not None:
            wb.delete(p + f)
            gone += 1
    if gone:
        if count - gone <= 0:
            wb.delete(META + bytes(key))
        else:
            _put_meta(wb, key, version, count - gone, ttl)
        db.write(wb, sync=sync)
    return resp.integer(gone)


def c_hincrby(srv, conn, a):
    srv.hashes = True                    # it may make the first hash: TYPE, EXISTS, DEL, KEYS look then
    return srv.store.write(w_hincrby, conn.db, a[1], bytes(a[2]), to_int(a[3]), srv.store.sync)


def w_hincrby(db, key, field, delta, sync):
    """HINCRBY's write step: the field's new value."""
    m, err = _check_step(db, key)
    if err:
        return err
    version, count, ttl = _meta_or_new(m)
    fk = field_prefix(key, version) + field
    old = db.get(fk) if m is not None else None
    cur = 0
    if old is not None:
        try:
            cur = to_int(old)
        except CommandError:
            return resp.error("ERR hash value is not an integer")
    v = cur + delta
    if not INT64_MIN <= v <= INT64_MAX:
        return resp.error(OVERFLOW)
    wb = db.write_batch()
    wb.put(fk, b"%d" % v)
    # the metadata key is written by every write of a hash, as HSET and HDEL do:
    # WATCH of a hash watches it (multi.py)
    _put_meta(wb, key, version, count + (old is None), ttl)
    db.write(wb, sync=sync)
    return resp.integer(v)


def delete_hash(db, wb, key):
    """Add the deletion of hash key (metadata and fields) to batch wb; False if not a hash."""
    m = read_meta(db, key)
    if m is None:
        return False
    for f, _ in _fields(db, key, m[0]):
        wb.delete(field_prefix(key, m[0]) + f)
    wb.delete(META + bytes(key))
    return True


def copy_hash(db, wb, src, dst):
    """Add a copy of hash src, under a new version and with src's TTL, as hash dst
    to batch wb (RENAME and COPY); False if src is not a hash. The caller deletes
    whatever dst held first, in the same batch."""
    m = read_meta(db, src)
    if m is None:
        return False
    version, _, ttl = m
    fields = _fields(db, src, version)
    new = _new_version()
    p = field_prefix(dst, new)
    for f, v in fields:
        wb.put(p + f, v)
    _put_meta(wb, dst, new, len(fields), ttl)
    return True


# ---------------------------------------------------------------- reads

def c_hget(srv, conn, a):
    m = _check(conn.db, a[1])
    if m is None:
        return resp.NULL
    return resp.bulk(conn.db.get(field_prefix(a[1], m[0]) + bytes(a[2])))


def c_hmget(srv, conn, a):
    m = _check(conn.db, a[1])
    if m is None:
        return resp.array([None] * (len(a) - 2))
    p = field_prefix(a[1], m[0])
    return resp.array(conn.db.multi_get([p + bytes(f) for f in a[2:]]))


def c_hexists(srv, conn, a):
    m = _check(conn.db, a[1])
    return resp.integer(int(m is not None and conn.db.get(field_prefix(a[1], m[0]) + bytes(a[2])) is not None))


def c_hstrlen(srv, conn, a):
    m = _check(conn.db, a[1])
    v = None if m is None else conn.db.get(field_prefix(a[1], m[0]) + bytes(a[2]))
    return resp.integer(0 if v is None else len(v))


def c_hlen(srv, conn, a):
    m = _check(conn.db, a[1])
    return resp.integer(0 if m is None else m[1])


def _all(srv, conn, a):
    m = _check(conn.db, a[1])
    return [] if m is None else _fields(conn.db, a[1], m[0])


def c_hgetall(srv, conn, a):
    return resp.array([x for fv in _all(srv, conn, a) for x in fv])


def c_hkeys(srv, conn, a):
    return resp.array([f for f, _ in _all(srv, conn, a)])


def c_hvals(srv, conn, a):
    return resp.array([v for _, v in _all(srv, conn, a)])


def c_hscan(srv, conn, a):
    start = srv.cursors.decode(a[2])
    if start is False:
        raise CommandError("ERR invalid cursor")
    count, match, novalues = 10, None, False
    i = 3
    while i < len(a):
        opt = bytes(a[i]).upper()
        if opt == b"NOVALUES":
            novalues = True
            i += 1
            continue
        if i + 1 >= len(a):
            raise CommandError(SYNTAX)
        if opt == b"COUNT":
            count = to_int(a[i + 1])
            if count < 1:
                raise CommandError(SYNTAX)
        elif opt == b"MATCH":
            match = bytes(a[i + 1])
        else:
            raise CommandError(SYNTAX)
        i += 2
    m = _check(conn.db, a[1])
    if m is None:
        return b"*2\r\n$1\r\n0\r\n*0\r\n"
    regex = compile_match(match)[0] if match is not None else None
    p = field_prefix(a[1], m[0])
    n = len(p)
    out = []
    nxt = None
    it = conn.db.items(p + (start or b""), prefix_stop(p))
    try:
        for k, v in it:
            if count == 0:
                nxt = k[n:]
                break
            count -= 1
            f = k[n:]
            if regex is None or regex.fullmatch(f):
                out.append(f)
                if not novalues:
                    out.append(v)
    finally:
        it.close()
    cursor = b"0" if nxt is None else srv.cursors.encode(nxt)
    return b"*2\r\n$%d\r\n%b\r\n" % (len(cursor), cursor) + resp.array(out)


HASH_COMMANDS = {
    b"HSET": (c_hset, -4, ("write", "denyoom", "fast"), 1, 1, 1),
    b"HMSET": (c_hset, -4, ("write", "denyoom", "fast"), 1, 1, 1),
    b"HSETNX": (c_hsetnx, 4, ("write", "denyoom", "fast"), 1, 1, 1),
    b"HGET": (c_hget, 3, ("readonly", "fast"), 1, 1, 1),
    b"HMGET": (c_hmget, -3, ("readonly", "fast"), 1, 1, 1),
    b"HDEL": (c_hdel, -3, ("write", "fast"), 1, 1, 1),
    b"HGETALL": (c_hgetall, 2, ("readonly",), 1, 1, 1),
    b"HKEYS": (c_hkeys, 2, ("readonly",), 1, 1, 1),
    b"HVALS": (c_hvals, 2, ("readonly",), 1, 1, 1),
    b"HLEN": (c_hlen, 2, ("readonly", "fast"), 1, 1, 1),
    b"HEXISTS": (c_hexists, 3, ("readonly", "fast"), 1, 1, 1),
    b"HSTRLEN": (c_hstrlen, 3, ("readonly", "fast"), 1, 1, 1),
    b"HINCRBY": (c_hincrby, 4, ("write", "denyoom", "fast"), 1, 1, 1),
    b"HSCAN": (c_hscan, -3, ("readonly",), 1, 1, 1),
}


# ---------------------------------------------------------------- the keyspace's view

def keyspace(db, lo, hi, hashes):
    """(key, is_hash) for every user key in [lo, hi) (None: unbounded) in key
    order: the strings (the reserved NS range skipped without being walked) merged
    with the hashes' names (from their metadata keys). A generator: close it."""
    its = []

    def rng(a, b):
        it = db.keys(a, b)
        its.append(it)
        return it

    try:
        parts = []
        if lo is None or lo < NS:
            parts.append(rng(lo, NS if hi is None or hi > NS else hi))
        if hi is None or hi > NS_STOP:
            parts.append(rng(NS_STOP if lo is None or lo < NS_STOP else lo, hi))
        strings = ((k, False) for p in parts for k in p)
        if not hashes:
            yield from strings
            return
        n = len(META)
        mhi = META + hi if hi is not None else prefix_stop(META)
        metas = ((k[n:], True) for k in rng(META + (lo or b""), mhi))
        yield from heapq.merge(strings, metas)
    finally:
        for it in its:
            it.close()


def hash_keys(db, a, first, last, step):
    """The key arguments of a command that hold a hash."""
    end = len(a) if last < 0 else last + 1
    return [bytes(a[i]) for i in range(first, end, step)
            if db.get(a[i]) is None and db.get(META + bytes(a[i])) is not None]


def w_drop_hashes(db, keys, sync):
    """The write step that deletes hashes before SET/SETEX/PSETEX/MSET replace them."""
    wb = db.write_batch()
    for k in keys:
        delete_hash(db, wb, k)
    db.write(wb, sync=sync)
    return resp.OK


def type_error_keys(db, a, first, last, step):
    """WRONGTYPE if any key argument of a string command holds a hash."""
    end = len(a) if last < 0 else last + 1
    for i in range(first, end, step):
        if db.get(a[i]) is None and db.get(META + bytes(a[i])) is not None:
            raise CommandError(WRONGTYPE)
