"""`lsmkv serve` against Redis's own behaviour (issue 23): expiry overflow, protocol
edge cases and commands, driven by raw sockets and redis-py; and a differential
test that sends the same script to redis-server (when it is on PATH) and to lsmkv
serve and compares the replies byte for byte."""
import random
import socket
import time

import pytest

from lsmkv.server import resp
from lsmkv.server.proc import ServerProcess

redis = pytest.importorskip("redis", reason="redis-py is not installed (pip install 'redis>=5')")

INT64_MAX = (1 << 63) - 1


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    d = tmp_path_factory.mktemp("compat")
    with ServerProcess(d / "db") as s:
        yield s
        assert s.alive(), "".join(s.log)


@pytest.fixture
def r(server):
    c = redis.Redis(protocol=2, host="127.0.0.1", port=server.port, socket_timeout=20)
    yield c
    c.close()


def talk(port, data, quiet=0.3, timeout=10):
    """Send data on a fresh connection; everything read until the server closes
    (then b'<closed>' is appended) or is quiet for `quiet` seconds."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        s.sendall(data)
        out = b""
        s.settimeout(quiet)
        while True:
            try:
                chunk = s.recv(65536)
            except socket.timeout:
                return out
            except ConnectionResetError:
                return out + b"<closed>"
            if not chunk:
                return out + b"<closed>"
            out += chunk
    finally:
        s.close()


def script(*cmds):
    """A pipeline of request frames."""
    return b"".join(resp.command(*c) for c in cmds)


# ---------------------------------------------------------------- 1. expiry overflow

OVERFLOWS = [
    ("EXPIRE", 9223370399119966), ("EXPIRE", INT64_MAX // 1000 + 1), ("EXPIRE", INT64_MAX),
    ("EXPIRE", -(INT64_MAX // 1000) - 1), ("PEXPIRE", 9223372036854770000), ("PEXPIRE", INT64_MAX),
    ("EXPIREAT", INT64_MAX // 1000 + 1), ("EXPIREAT", -(INT64_MAX // 1000) - 1),
]


@pytest.mark.parametrize("cmd,t", OVERFLOWS)
def test_expire_overflow_is_refused_and_the_key_stays(r, cmd, t):
    key = f"ovf:{cmd}:{t}"
    r.set(key, "bar")
    with pytest.raises(redis.ResponseError, match=f"invalid expire time in '{cmd.lower()}' command"):
        r.execute_command(cmd, key, t)
    assert r.get(key) == b"bar" and r.ttl(key) == -1


@pytest.mark.parametrize("args,name", [
    (("EX", 9223370399119966), "set"), (("PX", INT64_MAX), "set"), (("PX", INT64_MAX - 1000), "set"),
    (("EX", INT64_MAX // 1000 + 1), "set"), (("EX", 0), "set"), (("PX", 0), "set"),
    (("EX", -1), "set"), (("EXAT", 0), "set"), (("PXAT", -5), "set"),
    (("EXAT", INT64_MAX // 1000 + 1), "set"),
])
def test_set_with_an_invalid_expire_keeps_the_old_value(r, args, name):
    key = f"setovf:{args}"
    r.set(key, "old", ex=1000)
    with pytest.raises(redis.ResponseError, match=f"invalid expire time in '{name}' command"):
        r.execute_command("SET", key, "new", *args)
    assert r.get(key) == b"old" and 990 <= r.ttl(key) <= 1000


@pytest.mark.parametrize("cmd,t", [("SETEX", 9223370399119966), ("SETEX", 0), ("SETEX", -3),
                                   ("PSETEX", INT64_MAX), ("PSETEX", 0),
                                   ("PSETEX", INT64_MAX - 100)])
def test_setex_psetex_overflow(r, cmd, t):
    key = f"setexovf:{cmd}:{t}"
    r.set(key, "old")
    with pytest.raises(redis.ResponseError, match=f"invalid expire time in '{cmd.lower()}' command"):
        r.execute_command(cmd, key, t, "new")
    assert r.get(key) == b"old"


def test_absolute_times_near_2_63_keep_the_key(r):
    for cmd, t in (("PEXPIREAT", INT64_MAX), ("PEXPIREAT", INT64_MAX - 300),
                   ("EXPIREAT", INT64_MAX // 1000), ("PEXPIRE", INT64_MAX // 2)):
        key = f"far:{cmd}:{t}"
        r.set(key, "v")
        assert r.execute_command(cmd, key, t) == 1
        assert r.get(key) == b"v" and r.pttl(key) > 10 ** 15
    for unit, t in (("PXAT", INT64_MAX), ("EXAT", INT64_MAX // 1000)):
        key = f"far:set:{unit}"
        assert r.execute_command("SET", key, "v", unit, t)
        assert r.get(key) == b"v" and r.pttl(key) > 10 ** 15


def test_expire_zero_and_negative_delete_the_key(r):
    for cmd, t in (("EXPIRE", 0), ("EXPIRE", -1), ("PEXPIRE", -10 ** 15), ("EXPIREAT", 1),
                   ("PEXPIREAT", -(1 << 62)), ("EXPIRE", -(INT64_MAX // 1000))):
        key = f"neg:{cmd}:{t}"
        r.set(key, "v")
        assert r.execute_command(cmd, key, t) == 1
        assert r.get(key) is None
        assert r.execute_command(cmd, key, t) == 0


def test_expire_boundary_fuzz(r):
    """Random values around every boundary: the reply is an error exactly when
    Redis's integer arithmetic overflows, and an error changes nothing."""
    rnd = random.Random(23)
    now = int(time.time() * 1000)
    r.set("fuzz", "v")
    for _ in range(300):
        cmd = rnd.choice(["EXPIRE", "PEXPIRE", "EXPIREAT", "PEXPIREAT"])
        edge = rnd.choice([INT64_MAX, INT64_MAX // 1000, INT64_MAX - now, (INT64_MAX - now) // 1000])
        t = edge + rnd.randint(-2000, 2000)
        if rnd.random() < 0.3:
            t = -t
        t = max(min(t, INT64_MAX), -INT64_MAX - 1)
        sec = cmd in ("EXPIRE", "EXPIREAT")
        base = 0 if cmd.endswith("AT") else int(time.time() * 1000)
        overflow = (sec and not -(INT64_MAX // 1000) <= t <= INT64_MAX // 1000)
        if not overflow:
            ms = t * 1000 if sec else t
            overflow = ms > INT64_MAX - base - 50 and ms <= INT64_MAX - base + 50   # skip the clock's edge
            if overflow:
                continue
            overflow = ms > INT64_MAX - base
        try:
            got = r.execute_command(cmd, "fuzz", t)
        except redis.ResponseError as e:
            assert overflow, (cmd, t, e)
            assert r.get("fuzz") == b"v"
            continue
        assert not overflow, (cmd, t, got)
        if r.get("fuzz") is None:
            r.set("fuzz", "v")
        else:
            r.persist("fuzz")


# ---------------------------------------------------------------- the differential test

# commands both servers support whose replies do not depend on time, ids or addresses
DIFF_SCRIPT = [
    ("SET", "d:a", "1"), ("SET", "d:a", "2"), ("GET", "d:a"), ("DEL", "d:a"), ("GET", "d:a"),
    ("SET", "d:s", "hello"), ("APPEND", "d:s", " world"), ("APPEND", "d:new", "x"), ("STRLEN", "d:s"),
    ("STRLEN", "d:none"), ("GETRANGE", "d:s", "0", "4"), ("GETRANGE", "d:s", "-5", "-1"),
    ("GETRANGE", "d:s", "-1", "-5"), ("GETRANGE", "d:s", "3", "100"), ("GETRANGE", "d:s", "20", "30"),
    ("GETRANGE", "d:none", "0", "-1"), ("SUBSTR", "d:s", "1", "2"),
    ("SETRANGE", "d:s", "6", "WORLD"), ("GET", "d:s"), ("SETRANGE", "d:pad", "5", "x"), ("GET", "d:pad"),
    ("SETRANGE", "d:s", "-1", "x"), ("SETRANGE", "d:none", "3", ""), ("SETRANGE", "d:s", "2", ""),
    ("SETRANGE", "d:big", "536870912", "x"),
    ("GETSET", "d:g", "1"), ("GETSET", "d:g", "2"), ("GET", "d:g"),
    ("GETEX", "d:g"), ("GETEX", "d:g", "PERSIST"), ("GETEX", "d:g", "EX", "0"), ("GETEX", "d:g", "EX", "x"),
    ("GETEX", "d:g", "FOO"), ("GETEX", "d:none", "EX", "10"), ("GETEX", "d:g", "EX", "100", "PX", "5"),
    ("GETEX", "d:g", "PX", "9223372036854775807"), ("TTL", "d:g"),
    ("SET", "d:f", "10.5"), ("INCRBYFLOAT", "d:f", "0.1"), ("INCRBYFLOAT", "d:f", "-5"),
    ("INCRBYFLOAT", "d:f", "1e3"), ("INCRBYFLOAT", "d:f", "abc"), ("INCRBYFLOAT", "d:s", "1"),
    ("INCRBYFLOAT", "d:fn", "3"), ("INCRBYFLOAT", "d:fn", "2.0e2"), ("INCRBYFLOAT", "d:fn", "-203"),
    ("MSETNX", "d:m1", "a", "d:m2", "b"), ("MSETNX", "d:m2", "c", "d:m3", "d"), ("MGET", "d:m1", "d:m2", "d:m3"),
    ("MSETNX", "d:m1"), ("MSET", "d:x", "1", "d:y"),
    ("RENAME", "d:m1", "d:r1"), ("GET", "d:m1"), ("GET", "d:r1"), ("RENAME", "d:none", "d:r2"),
    ("RENAME", "d:r1", "d:r1"), ("RENAMENX", "d:r1", "d:m2"), ("RENAMENX", "d:r1", "d:r3"),
    ("RENAMENX", "d:none", "d:r4"), ("RENAMENX", "d:r3", "d:r3"),
    ("COPY", "d:r3", "d:c1"), ("COPY", "d:r3", "d:c1"), ("COPY", "d:r3", "d:c1", "REPLACE"),
    ("COPY", "d:none", "d:c2"), ("COPY", "d:r3", "d:c3", "DB", "0"), ("COPY", "d:r3", "d:c4", "FOO"),
    ("GET", "d:c1"),
    ("TOUCH", "d:c1", "d:none", "d:r3"), ("EXISTS", "d:c1", "d:c1", "d:none"),
    ("KEYS", "d:c1*"), ("KEYS", "d:[rx]3"), ("KEYS", "nomatch*"),
    ("EXPIRETIME", "d:none"), ("EXPIRETIME", "d:c1"), ("PEXPIRETIME", "d:c1"),
    ("OBJECT", "ENCODING", "d:c1"), ("SET", "d:int", "12345"), ("OBJECT", "ENCODING", "d:int"),
    ("SET", "d:raw", "x" * 45), ("OBJECT", "ENCODING", "d:raw"), ("OBJECT", "ENCODING", "d:none"),
    ("OBJECT", "REFCOUNT", "d:int"), ("OBJECT", "FOO", "d:int"),
    ("INCR", "d:i"), ("INCRBY", "d:i", "9223372036854775806"), ("INCR", "d:i"), ("DECRBY", "d:i", "x"),
    ("SET", "d:e", "v"), ("EXPIRE", "d:e", "9223370399119966"), ("PEXPIRE", "d:e", "9223372036854770000"),
    ("SET", "d:e", "w", "EX", "9223370399119966"), ("SETEX", "d:e", "0", "x"), ("PSETEX", "d:e", "-1", "x"),
    ("GET", "d:e"), ("EXPIRE", "d:e", "-1"), ("GET", "d:e"), ("EXPIRE", "d:e", "10"),
    ("SET", "d:e", "v", "EX", "0"), ("SET", "d:e", "v", "PX", "100", "EX", "3"),
    ("SET", "d:nx", "1", "NX"), ("SET", "d:nx", "2", "NX"), ("SET", "d:nx", "3", "XX", "GET"),
    ("TYPE", "d:nx"), ("TYPE", "d:none"), ("GETDEL", "d:nx"), ("GETDEL", "d:nx"),
    ("HSET", "d:h", "a", "1", "b", "2"), ("HSET", "d:h", "b", "3", "c", "4"), ("HGET", "d:h", "b"),
    ("HGET", "d:h", "zz"), ("HGET", "d:none", "a"), ("HMGET", "d:h", "a", "zz", "c"), ("HLEN", "d:h"),
    ("HEXISTS", "d:h", "a"), ("HEXISTS", "d:h", "zz"), ("HSTRLEN", "d:h", "a"),
    ("HGETALL", "d:h"), ("HKEYS", "d:h"), ("HVALS", "d:h"), ("HGETALL", "d:none"),
    ("HINCRBY", "d:h", "a", "10"), ("HINCRBY", "d:h", "new", "-3"), ("HINCRBY", "d:h", "a", "x"),
    ("HSET", "d:h", "s", "str"), ("HINCRBY", "d:h", "s", "1"),
    ("HINCRBY", "d:h", "a", "9223372036854775807"), ("HSETNX", "d:h", "a", "9"), ("HSETNX", "d:h", "q", "9"),
    ("HMSET", "d:h", "m", "1"), ("HSET", "d:h", "a"), ("HSET", "d:h"),
    ("HDEL", "d:h", "a", "a", "zz"), ("HLEN", "d:h"), ("TYPE", "d:h"), ("EXISTS", "d:h"),
    ("GET", "d:h"), ("INCR", "d:h"), ("APPEND", "d:h", "x"), ("STRLEN", "d:h"), ("SET", "d:str", "v"),
    ("HSET", "d:str", "a", "1"), ("HGET", "d:str", "a"), ("HLEN", "d:str"), ("HGETALL", "d:str"),
    ("MGET", "d:h", "d:str"), ("TTL", "d:h"), ("EXPIRE", "d:h", "100"), ("TTL", "d:h"),
    ("PERSIST", "d:h"), ("TTL", "d:h"), ("KEYS", "d:h"),
    ("HSET", "d:h2", "x", "1"), ("HDEL", "d:h2", "x"), ("EXISTS", "d:h2"), ("TYPE", "d:h2"),
    ("HSET", "d:h3", "x", "1"), ("DEL", "d:h3"), ("HGET", "d:h3", "x"), ("HSET", "d:h3", "y", "2"),
    ("HGETALL", "d:h3"), ("EXPIRE", "d:h3", "-1"), ("EXISTS", "d:h3"), ("HGETALL", "d:h3"),
    ("HSET", "d:hx", "f", "1"), ("SET", "d:hx", "v"), ("GET", "d:hx"), ("TYPE", "d:hx"),
    ("HGET", "d:hx", "f"), ("HSET", "d:hy", "f", "1"), ("SET", "d:hy", "v", "NX"),
    ("SET", "d:hy", "v", "GET"), ("SET", "d:hy", "v", "XX"), ("GET", "d:hy"), ("HSET", "d:hz", "f", "1"),
    ("SETEX", "d:hz", "100", "v"), ("TYPE", "d:hz"), ("HSET", "d:hw", "f", "1"), ("MSET", "d:hw", "1"),
    ("GET", "d:hw"), ("HLEN", "d:hw"), ("HSET", "d:hv", "f", "1"), ("GETSET", "d:hv", "1"),
    ("SETNX", "d:hv", "1"), ("GETDEL", "d:hv"), ("SETRANGE", "d:hv", "0", "x"),
    ("CONFIG", "GET"), ("HELLO", "4"), ("AUTH", "x"), ("AUTH", "default", "x"), ("AUTH", "bob", "x"),
    ("COMMAND", "LIST", "FILTERBY"), ("COMMAND", "LIST", "x"), ("CLIENT", "LIST", "TYPE", "bad"),
    ("CLIENT", "LIST", "ID", "123456789"), ("CLIENT", "REPLY", "bad"),
    ("CONFIG", "SET", "nosuchparameter", "1"), ("ECHO", ""), ("PING", "x"),
    ("SELECT", "0"), ("GET",), ("SET", "a"), ("NOSUCH", "x", "y"),
    # MULTI/EXEC/DISCARD/WATCH (multi.py)
    ("MULTI",), ("SET", "d:t1", "1"), ("INCR", "d:t1"), ("GET", "d:t1"), ("HSET", "d:th", "f", "v"),
    ("HGETALL", "d:th"), ("GET", "d:th"), ("INCR", "d:s"), ("DEL", "d:t9"), ("EXEC",), ("GET", "d:t1"),
    ("EXEC",), ("DISCARD",), ("MULTI",), ("MULTI",), ("NOSUCH",), ("SET", "x"), ("EXEC",), ("GET", "x"),
    ("MULTI",), ("SET", "d:t2", "a"), ("DISCARD",), ("GET", "d:t2"),
    ("WATCH", "d:w"), ("SET", "d:w", "1"), ("MULTI",), ("SET", "d:w2", "x"), ("EXEC",), ("GET", "d:w2"),
    ("WATCH", "d:w", "d:wnone"), ("MULTI",), ("SET", "d:w2", "y"), ("EXEC",), ("GET", "d:w2"),
    ("WATCH", "d:wnone"), ("SET", "d:wnone", "1"), ("MULTI",), ("PING",), ("EXEC",),
    ("WATCH", "d:th"), ("HSET", "d:th", "g", "1"), ("MULTI",), ("PING",), ("EXEC",),
    ("WATCH", "d:w"), ("UNWATCH",), ("SET", "d:w", "2"), ("MULTI",), ("GET", "d:w"), ("EXEC",),
    ("MULTI",), ("WATCH", "d:w"), ("SET", "d:w", "3"), ("EXEC",), ("WATCH",), ("MULTI", "x"),
    ("MULTI",), ("EXEC",), ("MULTI",), ("RENAME", "d:t1", "d:t4"), ("TYPE", "d:t4"), ("EXEC",),
    # numbered databases (databases.py): SELECT, MOVE, COPY DB, FLUSHDB per database, SWAPDB
    ("SELECT", "16"), ("SELECT", "-1"), ("SELECT", "x"), ("SELECT", "4294967296"), ("SELECT", "01"),
    ("SELECT", "3"), ("FLUSHDB",), ("GET", "d:s"), ("SET", "d:a", "db3"), ("GET", "d:a"),
    ("HSET", "d:h", "only", "db3"), ("HGETALL", "d:h"), ("KEYS", "d:a"), ("EXISTS", "d:a", "d:h", "d:s"),
    ("SET", "d:t", "x", "EX", "100"), ("TTL", "d:t"), ("MOVE", "d:a", "0"), ("MOVE", "d:a", "0"),
    ("MOVE", "d:t", "3"), ("MOVE", "d:t", "16"), ("MOVE", "d:t", "x"), ("MOVE", "d:t", "4294967296"),
    ("MOVE", "d:h", "0"), ("MOVE", "d:t", "4"), ("KEYS", "*"), ("EXISTS", "d:t"),
    ("SELECT", "4"), ("FLUSHDB",), ("SET", "d:t", "mine"), ("SELECT", "3"), ("SET", "d:t", "x", "EX", "100"),
    ("MOVE", "d:t", "4"), ("MOVE", "d:t", "5"), ("SELECT", "5"), ("FLUSHDB",), ("SELECT", "3"),
    ("MOVE", "d:t", "5"), ("SELECT", "5"), ("TTL", "d:t"), ("GET", "d:t"), ("SELECT", "0"), ("GET", "d:a"),
    ("TYPE", "d:h"), ("COPY", "d:a", "d:a"), ("COPY", "d:a", "d:a", "DB", "16"),
    ("COPY", "d:a", "d:a", "DB", "x"), ("COPY", "d:a", "d:a", "DB", "6"), ("COPY", "d:a", "d:a", "DB", "6"),
    ("COPY", "d:a", "d:a", "DB", "6", "REPLACE"), ("COPY", "d:s", "d:a2", "DB", "6"),
    ("SELECT", "6"), ("EXISTS", "d:a", "d:a2"), ("GET", "d:a2"), ("DEL", "d:a", "d:a2"), ("SELECT", "5"),
    ("FLUSHDB",), ("KEYS", "*"), ("SELECT", "0"), ("GET", "d:a"), ("EXISTS", "d:s"),
    ("MULTI",), ("SELECT", "6"), ("SET", "d:m", "1"), ("SELECT", "99"), ("GET", "d:m"), ("EXEC",),
    ("GET", "d:m"), ("DEL", "d:m"), ("SELECT", "0"), ("GET", "d:m"),
    ("SELECT", "7"), ("SET", "d:r", "1"), ("RESET",), ("GET", "d:r"),
    ("SWAPDB", "x", "0"), ("SWAPDB", "0", "x"), ("SWAPDB", "0", "16"), ("SWAPDB", "7", "7"),
    ("SELECT", "8"), ("FLUSHDB",), ("SELECT", "9"), ("FLUSHDB",), ("SET", "d:sw", "nine"),
    ("SWAPDB", "8", "9"), ("GET", "d:sw"), ("SELECT", "8"), ("GET", "d:sw"), ("SELECT", "7"),
    ("FLUSHDB",), ("SELECT", "0"),
]

RAW_DIFF = [
    b"*1\r\n$3\r\nPINGX\r\n", b"*+1\r\n", b"*1\r\n$04\r\nPING\r\n", b"*01\r\n$4\r\nPING\r\n",
    b'set "d:a b" "c d"\r\nget "d:a b"\r\n', b'echo "a\\x00b"\r\n', b"echo 'it\\'s'\r\n",
    b'echo ""\r\n', b'echo "abc\r\n', b'echo "abc"x\r\n', b"*-5\r\nPING\r\n", b"*1\r\n$-1\r\n",
    b"*1\r\n$+3\r\nPING\r\n", b"*0\r\nPING\r\n", b"\r\nPING\r\n",
    b"CLIENT REPLY OFF\r\nPING\r\nCLIENT REPLY ON\r\nPING\r\nCLIENT REPLY SKIP\r\nPING\r\nPING\r\n",
]


def read_reply(f):
    """One RESP2 or RESP3 reply from a socket file, as the raw bytes received."""
    line = f.readline()
    t = line[:1]
    if t in (b"+", b"-", b":", b"_", b",", b"#", b"("):
        return line
    if t in (b"$", b"=", b"!"):
        n = int(line[1:])
        return line if n < 0 else line + f.read(n + 2)
    if t in (b"*", b"~", b"%", b">"):
        n = int(line[1:]) * (2 if t == b"%" else 1)
        return line + b"".join(read_reply(f) for _ in range(max(n, 0)))
    raise AssertionError(f"not a reply: {line!r}")


# after HELLO 3 (resp3.py): nulls, maps, and replies that hold them
RESP3_SCRIPT = [
    ("GET", "r3:none"), ("SET", "r3:a", "1"), ("GET", "r3:a"), ("MGET", "r3:a", "r3:none"),
    ("HSET", "r3:h", "f", "v", "g", "w"), ("HGETALL", "r3:h"), ("HGETALL", "r3:none"),
    ("HGET", "r3:h", "zz"), ("HMGET", "r3:h", "f", "zz"), ("GETDEL", "r3:none"), ("GETEX", "r3:none"),
    ("SET", "r3:a", "2", "NX"), ("SET", "r3:a", "3", "GET"), ("GETSET", "r3:new", "x"),
    ("CONFIG", "GET", "nosuchparameter"), ("INCR", "r3:i"), ("TTL", "r3:a"), ("EXISTS", "r3:a"),
    ("MULTI",), ("GET", "r3:none"), ("HGETALL", "r3:h"), ("INCR", "r3:i"), ("EXEC",),
    ("WATCH", "r3:w"), ("SET", "r3:w", "1"), ("MULTI",), ("PING",), ("EXEC",),
    ("HELLO", "4"), ("RESET",), ("GET", "r3:none"), ("HGETALL", "r3:h"),
]


@pytest.mark.parametrize("proto", [2, 3])
def test_same_replies_as_redis_server(server, redis_port, proto):
    """The script on one connection per server, each reply compared byte for byte;
    in RESP3 (after HELLO 3, whose reply names versions and ids) a script of the
    replies RESP3 changes."""
    socks = [socket.create_connection(("127.0.0.1", p), timeout=10) for p in (server.port, redis_port)]
    files = [s.makefile("rb") for s in socks]
    try:
        if proto == 3:
            for s, f in zip(socks, files):
                s.sendall(script(("HELLO", "3")))
                assert read_reply(f).startswith(b"%7\r\n")
        for cmd in DIFF_SCRIPT if proto == 2 else RESP3_SCRIPT:
            got = []
            for s, f in zip(socks, files):
                s.sendall(script(cmd))
                got.append(read_reply(f))
            assert got[0] == got[1], (cmd, got)
    finally:
        for f in files:
            f.close()
        for s in socks:
            s.close()


@pytest.mark.parametrize("data", RAW_DIFF)
def test_same_protocol_handling_as_redis_server(server, redis_port, data):
    assert talk(server.port, data) == talk(redis_port, data)


# ---------------------------------------------------------------- commands through redis-py

def test_string_commands_keep_or_drop_the_ttl(r):
    r.set("t:a", "abc", ex=1000)
    assert r.append("t:a", "def") == 6 and 990 <= r.ttl("t:a") <= 1000
    assert r.setrange("t:a", 1, "X") == 6 and r.get("t:a") == b"aXcdef" and r.ttl("t:a") > 990
    r.set("t:f", "1.5", ex=1000)
    assert r.incrbyfloat("t:f", 1) == 2.5 and r.ttl("t:f") > 990
    assert r.getset("t:a", "new") == b"aXcdef" and r.ttl("t:a") == -1
    assert r.getex("t:a", ex=500) == b"new" and 490 <= r.ttl("t:a") <= 500
    assert r.getex("t:a", persist=True) == b"new" and r.ttl("t:a") == -1
    assert r.getex("t:a", pxat=int(time.time() * 1000) - 1) == b"new" and r.get("t:a") is None
    r.set("t:r", "v", ex=1000)
    assert r.rename("t:r", "t:r2") and r.get("t:r") is None and r.ttl("t:r2") > 990
    assert r.copy("t:r2", "t:r3") and r.get("t:r3") == b"v" and r.ttl("t:r3") > 990
    at = r.expiretime("t:r3")
    assert abs(at - (time.time() + 1000)) < 5
    assert abs(r.pexpiretime("t:r3") - at * 1000) < 1500


def test_keys_and_touch(r):
    for i in range(20):
        r.set(f"kk:{i:02d}", i)
    assert r.keys("kk:1*") == [b"kk:%02d" % i for i in range(10, 20)]
    assert sorted(r.keys("kk:?5")) == [b"kk:05", b"kk:15"]
    assert r.touch("kk:01", "kk:02", "kk:none") == 2
    r.set("kk:exp", "v", px=1)
    time.sleep(0.01)
    assert r.keys("kk:exp") == []


def test_time_and_object(r):
    sec, us = r.time()
    assert abs(sec + us / 1e6 - time.time()) < 5
    r.set("ob:i", "123")
    r.set("ob:s", "abc")
    assert r.object("encoding", "ob:i") == b"int" and r.object("encoding", "ob:s") == b"embstr"
    assert r.object("refcount", "ob:s") == 1 and r.object("encoding", "ob:none") is None


def test_config_set_and_get(server):
    c = redis.Redis(protocol=2, host="127.0.0.1", port=server.port, socket_timeout=10)
    try:
        old = c.config_get("maxmemory-clients")["maxmemory-clients"]
        assert c.config_set("maxmemory-clients", "1gb")
        assert c.config_get("maxmemory-clients") == {"maxmemory-clients": str(1 << 30)}
        assert c.info("clients")["maxmemory_clients"] == 1 << 30
        c.config_set("maxmemory-clients", old)
        with pytest.raises(redis.ResponseError, match="Unknown option"):
            c.config_set("nosuch", "1")
        with pytest.raises(redis.ResponseError, match="argument couldn't be parsed"):
            c.config_set("maxclients", "abc")
    finally:
        c.close()


def test_client_kill_list_reply(server):
    a = redis.Redis(protocol=2, host="127.0.0.1", port=server.port, socket_timeout=10)
    b = redis.Redis(protocol=2, host="127.0.0.1", port=server.port, socket_timeout=10)
    try:
        bid = b.client_id()
        lines = a.client_list(client_id=[bid])
        assert len(lines) == 1 and lines[0]["id"] == str(bid)
        assert "tot-mem" in lines[0] and "argv-mem" in lines[0]
        assert " cmd=client|info " in a.execute_command("CLIENT", "INFO").decode()
        assert " cmd=client|list " in a.execute_command("CLIENT", "LIST").decode()
        assert a.client_kill_filter(_id=bid) == 1
        assert b.ping()                          # redis-py reconnects: a new id
        assert b.client_id() != bid
        assert a.client_kill_filter(_id=10 ** 9) == 0
    finally:
        a.close()
        b.close()


def test_info_cpu_and_commandstats(r):
    r.ping()
    info = r.info("everything")
    assert "used_cpu_user" in info and "used_cpu_sys" in info
    assert info["cmdstat_ping"]["calls"] >= 1 and info["cmdstat_ping"]["usec"] >= 0
    with pytest.raises(redis.ResponseError):
        r.execute_command("INCRBY", "cs:k", "x")
    with pytest.raises(redis.ResponseError):
        r.execute_command("INCRBY", "cs:k")
    st = r.info("commandstats")["cmdstat_incrby"]
    assert st["failed_calls"] >= 1 and st["rejected_calls"] >= 1
    assert "cmdstat_ping" not in r.info()             # default sections leave commandstats out
    assert r.info("keyspace")["keys_estimated"] == 1


def test_command_list_filterby(r):
    assert r.command_list(pattern="getr*") == [b"getrange"]
    assert b"get" in r.command_list(category="read") and b"set" not in r.command_list(category="read")
    assert r.command_list(module="x") == []


def test_auth_default_without_a_password(server):
    assert talk(server.port, script(("AUTH", "default", "anything"))) == b"+OK\r\n"
    assert talk(server.port, script(("AUTH", "bob", "x"))).startswith(b"-WRONGPASS")
    assert talk(server.port, script(("HELLO", "4"))) == b"-NOPROTO unsupported protocol version\r\n"


def test_hashes_through_redis_py(r):
    assert r.hset("hh:1", mapping={"b": "2", "a": "1"}) == 2
    assert r.hgetall("hh:1") == {b"a": b"1", b"b": b"2"}
    assert r.hincrby("hh:1", "c", 5) == 5 and r.hlen("hh:1") == 3
    cursor, seen = 0, {}
    while True:
        cursor, part = r.hscan("hh:1", cursor, count=1)
        seen.update(part)
        if cursor == 0:
            break
    assert seen == {b"a": b"1", b"b": b"2", b"c": b"5"}
    assert r.hscan("hh:1", 0, match="[ab]", count=100) == (0, {b"a": b"1", b"b": b"2"})
    r.set("hh:s", "v")
    assert sorted(k for k in r.scan_iter(match="hh:*")) == [b"hh:1", b"hh:s"]
    assert r.scan(0, match="hh:*", _type="hash", count=1000)[1] == [b"hh:1"]
    assert r.scan(0, match="hh:*", _type="string", count=1000)[1] == [b"hh:s"]
    assert r.keys("hh:*") == [b"hh:1", b"hh:s"]
    assert r.expire("hh:1", 100) and 99 <= r.ttl("hh:1") <= 100 and r.hget("hh:1", "a") == b"1"
    assert r.hset("hh:1", "d", "4") == 1 and r.ttl("hh:1") >= 99        # HSET keeps the TTL
    r.pexpire("hh:1", 1)
    time.sleep(0.01)
    assert r.exists("hh:1") == 0 and r.hgetall("hh:1") == {} and r.hlen("hh:1") == 0
    assert r.hset("hh:1", "z", "9") == 1 and r.hgetall("hh:1") == {b"z": b"9"}   # a new version
    assert r.delete("hh:1", "hh:s") == 2 and r.keys("hh:*") == []
    # no internal key is ever visible
    assert all(not k.startswith(b"\xff\x00lsmkv") for k in r.scan_iter(count=1000))


def test_rename_and_copy_move_hashes_with_their_ttl(r):
    r.hset("hm:a", mapping={"f1": "1", "f2": "2"})
    r.expire("hm:a", 100)
    r.set("hm:s", "str")
    r.hset("hm:old", mapping={"x": "9"})
    assert r.copy("hm:a", "hm:s") == 0                      # dst exists, no REPLACE
    assert r.copy("hm:a", "hm:s", replace=True) == 1        # a string replaced by a hash
    assert r.type("hm:s") == b"hash" and r.hgetall("hm:s") == {b"f1": b"1", b"f2": b"2"}
    assert 99 <= r.ttl("hm:s") <= 100 and r.hlen("hm:s") == 2
    r.hset("hm:s", "f1", "changed")                         # the copy is independent
    assert r.hget("hm:a", "f1") == b"1"
    assert r.renamenx("hm:a", "hm:old") == 0 and r.hgetall("hm:old") == {b"x": b"9"}
    assert r.rename("hm:a", "hm:old")                       # a hash replaced by a hash
    assert r.exists("hm:a") == 0 and r.hgetall("hm:a") == {} and r.hlen("hm:a") == 0
    assert r.hgetall("hm:old") == {b"f1": b"1", b"f2": b"2"} and r.ttl("hm:old") >= 99
    assert r.rename("hm:old", "hm:n")
    r.set("hm:str2", "v2")
    assert r.rename("hm:str2", "hm:n") and r.type("hm:n") == b"string" and r.get("hm:n") == b"v2"
    with pytest.raises(redis.ResponseError, match="WRONGTYPE"):
        r.hgetall("hm:n")                                   # the hash's fields went with it
    assert r.copy("hm:missing", "hm:x") == 0
    with pytest.raises(redis.ResponseError, match="no such key"):
        r.rename("hm:missing", "hm:x")
    assert sorted(r.keys("hm:*")) == [b"hm:n", b"hm:s"]
    r.delete("hm:n", "hm:s")
    assert all(not k.startswith(b"\xff\x00lsmkv") for k in r.scan_iter(count=1000))


def test_hashes_survive_a_restart_and_keep_types(tmp_path):
    with ServerProcess(tmp_path / "db") as s:
        c = redis.Redis(protocol=2, host="127.0.0.1", port=s.port, socket_timeout=10)
        c.hset("h", "f", "v")
        c.close()
    with ServerProcess(tmp_path / "db") as s:       # a fresh server finds the hashes at startup
        c = redis.Redis(protocol=2, host="127.0.0.1", port=s.port, socket_timeout=10)
        assert c.type("h") == b"hash" and c.hget("h", "f") == b"v"
        with pytest.raises(redis.ResponseError, match="WRONGTYPE"):
            c.get("h")
        c.close()


def test_flushdb(tmp_path):
    with ServerProcess(tmp_path / "db") as s:
        c = redis.Redis(protocol=2, host="127.0.0.1", port=s.port, socket_timeout=30)
        c.mset({f"f:{i}": i for i in range(25000)})
        c.hset("f:h", mapping={"a": 1, "b": 2})
        assert c.flushdb() and c.keys("*") == [] and c.hgetall("f:h") == {}
        assert c.execute_command("FLUSHALL", "ASYNC") and c.get("f:1") is None
        with pytest.raises(redis.ResponseError, match="syntax error"):
            c.execute_command("FLUSHDB", "NOW")
        c.set("after", "1")
        assert c.keys("*") == [b"after"]
        c.close()


def test_resp3_through_redis_py(server):
    """redis-py speaking RESP3 (HELLO 3): its RESP3 parser and callbacks get the
    types they expect (maps as dicts, nulls as None, verbatim INFO)."""
    c = redis.Redis(protocol=3, host="127.0.0.1", port=server.port, socket_timeout=20)
    try:
        assert c.set("p3:a", "1") and c.get("p3:a") == b"1" and c.get("p3:none") is None
        assert c.mget("p3:a", "p3:none") == [b"1", None]
        c.hset("p3:h", mapping={"f": "v", "g": "w"})
        assert c.hgetall("p3:h") == {b"f": b"v", b"g": b"w"} and c.hgetall("p3:none") == {}
        assert c.config_get("maxclients")["maxclients"].isdigit()
        assert c.info("server")["redis_version"] and c.client_info()["resp"] == "3"
        p = c.pipeline()
        p.incr("p3:i").get("p3:none").hgetall("p3:h")
        assert p.execute() == [1, None, {b"f": b"v", b"g": b"w"}]
        assert c.ttl("p3:a") == -1 and c.exists("p3:a", "p3:none") == 1
    finally:
        c.close()
