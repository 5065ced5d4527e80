"""RESP3 for connections that ask for it (`HELLO 3`): every command builds its
RESP2 reply, and to_resp3() rewrites it where RESP3 differs for the commands
lsmkv serves, as redis-server 7 replies:

  * a null bulk string (`$-1`) or null array (`*-1`), at any depth: `_`;
  * HGETALL, CONFIG GET, HELLO and COMMAND DOCS: the top-level array of
    alternating keys and values is a map (`%n`, n pairs);
  * INFO, CLIENT INFO and CLIENT LIST: the bulk string is a verbatim string
    (`=`, "txt:" then the text).

Everything else (simple strings, errors, integers, bulk strings, arrays) is the
same in both. RESP2 connections pay one comparison per command (Server.execute);
a RESP3 reply is rewritten in one pass over its bytes, with a fast path for the
replies that contain no null (a simple string, an integer, an error, one bulk).
RESP3 types already in a reply (an EXEC's elements, rewritten as they ran) are
kept as they are.
"""
from lsmkv.server.resp import NULL, NULL_ARRAY

R3_NULL = b"_\r\n"
MAPS = frozenset((b"HGETALL", b"HELLO"))
SUB_MAPS = {b"CONFIG": b"GET", b"COMMAND": b"DOCS"}
VERBATIM = frozenset((b"INFO",))
SUB_VERBATIM = {b"CLIENT": (b"INFO", b"LIST")}


def to_resp3(name, args, r):
    """The RESP3 form of command `name`'s RESP2 reply r (bytes, or a list of pieces)."""
    if r.__class__ is list:
        r = b"".join(bytes(x) for x in r)
    if not r:
        return r                        # no reply at all (CLIENT REPLY OFF or SKIP)
    t = r[:1]
    if t in (b"+", b"-", b":"):
        return r
    if r == NULL or r == NULL_ARRAY:
        return R3_NULL
    sub = bytes(args[1]).upper() if len(args) > 1 else b""
    if t == b"$":
        if name in VERBATIM or sub in SUB_VERBATIM.get(name, ()):
            head = r.index(b"\r\n")
            n = int(r[1:head])
            return b"=%d\r\ntxt:" % (n + 4) + r[head + 2:]
        return r
    out = []
    _copy(r, 0, out)
    if t == b"*" and (name in MAPS or SUB_MAPS.get(name) == sub):
        head = out[0]
        out[0] = b"%%%d\r\n" % (int(head[1:-2]) // 2)
    return b"".join(out)


def _copy(r, i, out):
    """Append reply r[i:...] to out, nulls rewritten; the index after it."""
    e = r.index(b"\r\n", i)
    t = r[i:i + 1]
    if t == b"$" or t == b"=":
        n = int(r[i + 1:e])
        if n < 0:
            out.append(R3_NULL)
            return e + 2
        end = e + 2 + n + 2
        out.append(r[i:end])
        return end
    if t in (b"*", b"%", b"~", b">"):
        n = int(r[i + 1:e])
        if n < 0:
            out.append(R3_NULL)
            return e + 2
        out.append(r[i:e + 2])
        i = e + 2
        for _ in range(n * 2 if t == b"%" else n):
            i = _copy(r, i, out)
        return i
    out.append(r[i:e + 2])            # + - : _ , # ( and the like: one line
    return e + 2
