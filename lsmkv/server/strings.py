"""String commands beyond GET/SET: GETEX, GETSET, GETRANGE, SETRANGE, APPEND,
STRLEN, INCRBYFLOAT, MSETNX. Conventions as lsmkv/server/commands.py: handlers
handler(srv, conn, args) -> reply; write steps (w_*) do the whole
read-modify-write and run one at a time in arrival order (store.py), so each
command is atomic with respect to every other client. A value's TTL is kept by
the commands that modify it in place (SETRANGE, APPEND, INCRBYFLOAT), as Redis.
"""
from fractions import Fraction

from lsmkv.server import expiry, resp
from lsmkv.server.args import SYNTAX, CommandError, to_float, to_int

MAX_STRING = 512 * 1024 * 1024     # Redis's proto-max-bulk-len default: SETRANGE/APPEND's limit


def lookup(db, key):
    """(value or None, seconds left or None) in one engine lookup."""
    r = db.get_with_ttl(key)
    return (None, None) if r is None else r


def keep_ttl(ttl):
    """The ttl to write back for a key that had `ttl` seconds left (None: none)."""
    return None if ttl is None else max(ttl, 0.001)


# ---------------------------------------------------------------- GETEX, GETSET

def c_getex(srv, conn, a):
    n = len(a)
    at = None
    persist = False
    i = 2
    while i < n:
        opt = bytes(a[i]).upper()
        if opt in (b"EX", b"PX", b"EXAT", b"PXAT") and at is None and not persist and i + 1 < n:
            at = expiry.set_expire_ms(a[i + 1], opt, expiry.now_ms(), "getex")
            i += 2
        elif opt == b"PERSIST" and at is None and not persist:
            persist = True
            i += 1
        else:
            raise CommandError(SYNTAX)
    if at is None and not persist:
        return resp.bulk(conn.db.get(a[1]))
    return srv.store.write(w_getex, conn.db, a[1], at, persist, srv.store.sync)


def w_getex(db, key, at, persist, sync):
    """GETEX's write step: the value, its expiry changed (or removed)."""
    v, ttl = lookup(db, key)
    if v is None:
        return resp.NULL
    if persist:
        if ttl is not None:
            db.put(key, v, sync=sync)
    else:
        t = expiry.ttl_seconds(at)
        if t <= 0:
            db.delete(key, sync=sync)
        else:
            db.put(key, v, ttl=t, sync=sync)
    return resp.bulk(v)


def c_getset(srv, conn, a):
    return srv.store.write(w_getset, conn.db, a[1], a[2], srv.store.sync)


def w_getset(db, key, val, sync):
    """GETSET's write step: the old value; the new one without a TTL."""
    old = db.get(key)
    db.put(key, val, sync=sync)
    return resp.bulk(old)


# ---------------------------------------------------------------- ranges, lengths

def c_strlen(srv, conn, a):
    v = conn.db.get(a[1])
    return resp.integer(0 if v is None else len(v))


def c_getrange(srv, conn, a):
    start = to_int(a[2])
    end = to_int(a[3])
    v = conn.db.get(a[1])
    return resp.bulk(getrange(v or b"", start, end))


def getrange(v, start, end):
    """Redis's GETRANGE of v (negative offsets count from the end, both inclusive)."""
    n = len(v)
    if start < 0 and end < 0 and start > end:
        return b""
    if start < 0:
        start = max(n + start, 0)
    if end < 0:
        end = max(n + end, 0)
    if end >= n:
        end = n - 1
    if start > end or n == 0:
        return b""
    return v[start:end + 1]


def c_setrange(srv, conn, a):
    off = to_int(a[2])
    if off < 0:
        raise CommandError("ERR offset is out of range")
    return srv.store.write(w_setrange, conn.db, a[1], off, bytes(a[3]), srv.max_bulk, srv.store.sync)


def w_setrange(db, key, off, val, limit, sync):
    """SETRANGE's write step: the new length (zero-padded; the TTL kept)."""
    old, ttl = lookup(db, key)
    if not val:
        return resp.integer(0 if old is None else len(old))
    if off + len(val) > limit:
        return resp.error("ERR string exceeds maximum allowed size (proto-max-bulk-len)")
    cur = bytearray(old or b"")
    if len(cur) < off:
        cur.extend(bytes(off - len(cur)))
    cur[off:off + len(val)] = val
    db.put(key, cur, ttl=keep_ttl(ttl), sync=sync)
    return resp.integer(len(cur))


def c_append(srv, conn, a):
    return srv.store.write(w_append, conn.db, a[1], bytes(a[2]), srv.max_bulk, srv.store.sync)


def w_append(db, key, val, limit, sync):
    """APPEND's write step: the new length (the TTL kept)."""
    old, ttl = lookup(db, key)
    n = (0 if old is None else len(old)) + len(val)
    if n > limit:
        return resp.error("ERR string exceeds maximum allowed size (proto-max-bulk-len)")
    db.put(key, val if old is None else old + val, ttl=keep_ttl(ttl), sync=sync)
    return resp.integer(n)


# ---------------------------------------------------------------- INCRBYFLOAT, MSETNX

# INCRBYFLOAT computes in x86's 80-bit long double as Redis does (a 64-bit significand),
# emulated exactly with fractions, so its replies match Redis's digit for digit.
LD_BITS = 64
INF_NAN = "ERR increment would produce NaN or Infinity"


def long_double(x):
    """The Fraction x rounded to the nearest long double (64-bit significand, ties to even)."""
    if x == 0:
        return Fraction(0)
    ax = abs(x)
    e = ax.numerator.bit_length() - ax.denominator.bit_length()
    if Fraction(2) ** e > ax:
        e -= 1                                    # now 2**e <= |x| < 2**(e+1)
    scale = Fraction(2) ** (LD_BITS - 1 - e)
    return Fraction(round(x * scale)) / scale


def parse_long_double(v):
    """A request argument or stored value as strtold reads it (None if not a finite number)."""
    x = to_float(v)                               # Redis's format checks (raises CommandError)
    if x in (float("inf"), float("-inf")):
        return None
    try:
        return long_double(Fraction(bytes(v).decode("ascii")))
    except (ValueError, UnicodeDecodeError):
        return long_double(Fraction(x))


def format_long_double(x):
    """Redis's ld2string(LD_STR_HUMAN): %.17Lf (rounded half to even on the exact
    value), then trailing zeros and the point removed; -0 is 0."""
    q = round(x * 10 ** 17)
    sign = "-" if q < 0 else ""
    whole, frac = divmod(abs(q), 10 ** 17)
    s = f"{sign}{whole}.{frac:017d}".rstrip("0").rstrip(".")
    return "0" if s == "-0" else s


def c_incrbyfloat(srv, conn, a):
    incr = parse_long_double(a[2])
    if incr is None:
        raise CommandError(INF_NAN)
    return srv.store.write(w_incrbyfloat, conn.db, a[1], incr, srv.store.sync)


def w_incrbyfloat(db, key, incr, sync):
    """INCRBYFLOAT's write step: the new value as a bulk string (the TTL kept)."""
    old, ttl = lookup(db, key)
    try:
        cur = Fraction(0) if old is None else parse_long_double(old)
    except CommandError as e:
        return resp.error(str(e))
    if cur is None:
        return resp.error(INF_NAN)
    x = long_double(cur + incr)
    if abs(x) >= LD_MAX:
        return resp.error(INF_NAN)
    out = format_long_double(x).encode()
    db.put(key, out, ttl=keep_ttl(ttl), sync=sync)
    return resp.bulk(out)


LD_MAX = Fraction(2) ** 16384                     # past the largest long double: infinity


def c_msetnx(srv, conn, a):
    if len(a) % 2 == 0:
        raise CommandError("ERR wrong number of arguments for 'msetnx' command")
    return srv.store.write(w_msetnx, conn.db, a, srv.store.sync)


def w_msetnx(db, a, sync):
    """MSETNX's write step: every pair in one batch if no key exists (1), else 0."""
    for i in range(1, len(a), 2):
        if db.get(a[i]) is not None:
            return resp.integer(0)
    wb = db.write_batch()
    for i in range(1, len(a), 2):
        wb.put(a[i], a[i + 1])
    db.write(wb, sync=sync)
    return resp.integer(1)


STRING_COMMANDS = {
    b"GETEX": (c_getex, -2, ("write", "fast"), 1, 1, 1),
    b"GETSET": (c_getset, 3, ("write", "denyoom", "fast"), 1, 1, 1),
    b"STRLEN": (c_strlen, 2, ("readonly", "fast"), 1, 1, 1),
    b"GETRANGE": (c_getrange, 4, ("readonly",), 1, 1, 1),
    b"SUBSTR": (c_getrange, 4, ("readonly",), 1, 1, 1),
    b"SETRANGE": (c_setrange, 4, ("write", "denyoom"), 1, 1, 1),
    b"APPEND": (c_append, 3, ("write", "denyoom", "fast"), 1, 1, 1),
    b"INCRBYFLOAT": (c_incrbyfloat, 3, ("write", "denyoom", "fast"), 1, 1, 1),
    b"MSETNX": (c_msetnx, -3, ("write", "denyoom"), 1, -1, 2),
}
