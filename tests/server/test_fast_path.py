"""The compiled GET/SET fast path of `lsmkv serve` (lsmkv/server/fast.pyx): the
same replies, order and counters as the Python path, for pipelines that mix
fast and slow commands, requests split across reads, expiry, binary keys,
errors, hashes, MULTI, AUTH, SELECT, RESP3 and a client that stops reading.
Replies are compared byte for byte with redis-server when it is on PATH, and
INFO's fast_path_commands shows the fast path did run."""
import os
import socket
import time

import pytest

from lsmkv.server import resp
from lsmkv.server.proc import ServerProcess
from conftest import recv_at_least

redis = pytest.importorskip("redis", reason="redis-py is not installed (pip install 'redis>=5')")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A server whose databases never hold a hash (a hash turns the fast path off)."""
    with ServerProcess(tmp_path_factory.mktemp("fast") / "db") as s:
        yield s
        assert s.alive(), "".join(s.log)


def stats(port, c=None):
    """INFO stats and commandstats (through c, or a new client: redis-py's
    connection setup sends two CLIENT SETINFO)."""
    own = c is None
    if own:
        c = redis.Redis(protocol=2, host="127.0.0.1", port=port, socket_timeout=10)
    try:
        return c.info("stats"), c.info("commandstats")
    finally:
        if own:
            c.close()


def exchange(port, parts, want_len=None, pause=0.05, quiet=0.3):
    """Send parts (each its own write, `pause` apart) on a fresh connection; the
    bytes read until want_len arrived or the server is quiet for `quiet` s."""
    s = socket.create_connection(("127.0.0.1", port), timeout=20)
    try:
        for i, p in enumerate(parts):
            if i:
                time.sleep(pause)
            s.sendall(p)
        out = b""
        s.settimeout(quiet if want_len is None else 20)
        while want_len is None or len(out) < want_len:
            try:
                chunk = s.recv(1 << 20)
            except socket.timeout:
                break
            if not chunk:
                break
            out += chunk
        return out
    finally:
        s.close()


def script(*cmds):
    return b"".join(resp.command(*c) for c in cmds)


BIN = bytes(range(256)) + b"\r\n$3\r\n*2\r\n"          # a key/value holding frame syntax

KEYS20 = ([("SET", "f:k%d" % i, "v%d" % i) for i in range(20)] + [("GET", "f:k%d" % i) for i in range(20)]
          + [("GET", "f:k%d" % (19 - i)) for i in range(20)])
MIXED = KEYS20 + [
    ("SET", "f:a", "1"), ("GET", "f:a"), ("INCR", "f:n"), ("GET", "f:n"), ("get", "f:a"),
    ("Set", "f:a", "2"), ("gEt", "f:a"), ("MGET", "f:a", "f:n", "f:none"), ("GET", "f:none"),
    ("SET", b"f:" + BIN, BIN), ("GET", b"f:" + BIN), ("SET", "", "empty key"), ("GET", ""),
    ("SET", "f:e", ""), ("GET", "f:e"), ("PING",), ("GET", "f:a", "extra"), ("SET", "f:a"),
    ("GET",), ("SET", "f:a", "3", "XX"), ("GET", "f:a"), ("SET", "f:a", "4", "NX"), ("GET", "f:a"),
    ("SET", "f:a", "x", "BADOPT"), ("GETS", "f:a"), ("SETX", "f:a", "1"), ("APPEND", "f:a", "z"),
    ("GET", "f:a"), ("INCR", "f:a"), ("SET", "f:n", "9"), ("INCR", "f:n"), ("GET", "f:n"),
    ("DEL", "f:a", "f:n", "f:e", b"f:" + BIN, ""), ("GET", "f:a"), ("DEL", *["f:k%d" % i for i in range(20)]),
]


def test_mixed_pipeline_same_bytes_as_redis(server, redis_port):
    """One write holding fast and slow commands, errors among them: every reply,
    in order, byte for byte as redis-server; then the same one command a write."""
    data = script(*MIXED)
    assert len(data) < 4096                       # one read into the shared buffer
    before = stats(server.port)[0]["fast_path_commands"]
    got = exchange(server.port, [data])
    assert got == exchange(redis_port, [data])
    assert got.count(b"\r\n") > len(MIXED)
    assert stats(server.port)[0]["fast_path_commands"] - before >= len(KEYS20)
    # one command a write: every GET and SET of plain form is the fast path's
    one = [resp.command(*c) for c in MIXED]
    before = stats(server.port)[0]["fast_path_commands"]
    assert exchange(server.port, one, pause=0.002) == exchange(redis_port, one, pause=0.002)
    plain = sum(1 for c in MIXED if c[0].upper() in ("GET", "SET") and len(c) == (2 if c[0].upper() == "GET" else 3))
    assert stats(server.port)[0]["fast_path_commands"] - before == plain


@pytest.mark.parametrize("cut", [1, 3, 9, 17, 30, 41, 60])
def test_request_split_across_reads(server, redis_port, cut):
    """A pipeline cut anywhere (inside a header, a key, a value, a CRLF): the
    whole frames before the cut are answered at once, the rest when it arrives."""
    data = script(("SET", "f:s1", "a" * 20), ("GET", "f:s1"), ("SET", "f:s2", "b" * 7), ("GET", "f:s2"),
                  ("GET", "f:s1"), ("DEL", "f:s1", "f:s2"))
    parts = [data[:cut], data[cut:]]
    got = exchange(server.port, parts, pause=0.1)
    assert got == exchange(redis_port, parts, pause=0.1)
    assert got.startswith(b"+OK\r\n$20\r\n" + b"a" * 20)


def test_expired_keys_read_as_absent(server):
    c = redis.Redis(protocol=2, host="127.0.0.1", port=server.port, socket_timeout=10)
    try:
        c.set(b"f:ttl", b"v", px=150)
        c.set(b"f:keep", b"w")
        data = script(("GET", "f:ttl"), ("GET", "f:keep"), ("GET", "f:ttl"))
        assert exchange(server.port, [data]) == b"$1\r\nv\r\n$1\r\nw\r\n$1\r\nv\r\n"
        time.sleep(0.3)
        assert exchange(server.port, [data]) == b"$-1\r\n$1\r\nw\r\n$-1\r\n"
        # a plain SET drops the TTL, as Redis
        c.set(b"f:ttl2", b"v", px=150)
        assert exchange(server.port, [script(("SET", "f:ttl2", "new"))]) == b"+OK\r\n"
        time.sleep(0.3)
        assert c.get(b"f:ttl2") == b"new" and c.ttl(b"f:ttl2") == -1
    finally:
        c.close()


def test_reserved_keys_take_the_python_path(server):
    ns = b"\xff\xfflsmkv"
    data = script(("SET", "f:r", "1"), ("SET", ns + b"x", "1"), ("GET", ns + b"x"), ("GET", "f:r"))
    got = exchange(server.port, [data])
    parts = got.split(b"\r\n")
    assert parts[0] == b"+OK" and parts[-2:] == [b"1", b""]
    assert got.count(b"-ERR keys starting with") in (0, 2)        # NS is the server's own prefix


def test_counters_match_the_python_path(server):
    """commandstats calls and failed calls, total_commands_processed and the
    keyspace hits and misses count each fast command once."""
    c = redis.Redis(protocol=2, host="127.0.0.1", port=server.port, socket_timeout=10)
    st0, cs0 = stats(server.port, c)
    n = 200
    data = b"".join(resp.command("SET", "f:c%d" % i, "x") + resp.command("GET", "f:c%d" % i)
                    + resp.command("GET", "f:cmiss%d" % i) for i in range(n))
    got = exchange(server.port, [data], want_len=n * (5 + 7 + 5))
    assert got == (b"+OK\r\n$1\r\nx\r\n$-1\r\n") * n
    st1, cs1 = stats(server.port, c)
    c.close()
    assert cs1["cmdstat_get"]["calls"] - cs0.get("cmdstat_get", {"calls": 0})["calls"] == 2 * n
    assert cs1["cmdstat_set"]["calls"] - cs0.get("cmdstat_set", {"calls": 0})["calls"] == n
    # + 2: the INFO commandstats of the first stats() and the INFO stats of the second
    assert st1["total_commands_processed"] - st0["total_commands_processed"] == 3 * n + 2
    assert st1["keyspace_hits"] - st0["keyspace_hits"] == n
    assert st1["keyspace_misses"] - st0["keyspace_misses"] == n
    assert st1["fast_path_commands"] - st0["fast_path_commands"] == 3 * n


def test_lastcmd_is_the_last_fast_command(server):
    s = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    c = redis.Redis(protocol=2, host="127.0.0.1", port=server.port, socket_timeout=10)
    try:
        s.sendall(script(("CLIENT", "SETNAME", "fastie"), ("GET", "f:l"), ("SET", "f:l", "1")))
        time.sleep(0.2)
        s.recv(1024)
        me = [x for x in c.client_list() if x["name"] == "fastie"]
        assert me and me[0]["cmd"] == "set"
        s.sendall(script(("SET", "f:l", "1"), ("GET", "f:l")))
        time.sleep(0.2)
        s.recv(1024)
        me = [x for x in c.client_list() if x["name"] == "fastie"]
        assert me[0]["cmd"] == "get"
    finally:
        c.close()
        s.close()


def test_multi_auth_select_resp3_and_reply_off_take_the_python_path(server, redis_port):
    """GET and SET of a client in MULTI are queued, in another database they
    stay there, after HELLO 3 a missing key is RESP3's null, with CLIENT REPLY
    OFF nothing is sent: as redis-server."""
    data = script(("SET", "f:m", "0"), ("MULTI",), ("SET", "f:m", "1"), ("GET", "f:m"), ("EXEC",),
                  ("SELECT", "3"), ("SET", "f:m", "db3"), ("GET", "f:m"), ("SELECT", "0"), ("GET", "f:m"),
                  ("SELECT", "3"), ("DEL", "f:m"), ("SELECT", "0"),
                  ("CLIENT", "REPLY", "OFF"), ("SET", "f:q", "1"), ("GET", "f:q"), ("CLIENT", "REPLY", "ON"),
                  ("GET", "f:q"), ("DEL", "f:q", "f:m"))
    got = exchange(server.port, [data])
    assert got == exchange(redis_port, [data])
    assert b"+QUEUED\r\n+QUEUED\r\n*2\r\n+OK\r\n$1\r\n1\r\n" in got
    r3 = script(("HELLO", "3")), script(("GET", "f:none"), ("SET", "f:r3", "1"), ("GET", "f:r3"), ("DEL", "f:r3"))
    assert exchange(server.port, r3).endswith(b"_\r\n+OK\r\n$1\r\n1\r\n:1\r\n")


def test_auth_is_required_before_fast_commands(tmp_path):
    with ServerProcess(tmp_path / "db", "--requirepass", "pw") as s:
        # the read holding AUTH is all the Python path's; the next one is the fast path's
        data = [script(("SET", "f:a", "1"), ("GET", "f:a"), ("AUTH", "pw")),
                script(("SET", "f:a", "1"), ("GET", "f:a"))]
        got = exchange(s.port, data, pause=0.2)
        assert got == (b"-NOAUTH Authentication required.\r\n" * 2 + b"+OK\r\n+OK\r\n$1\r\n1\r\n")
        assert stats_auth(s.port)["fast_path_commands"] == 2


def stats_auth(port):
    c = redis.Redis(protocol=2, host="127.0.0.1", port=port, password="pw", socket_timeout=10)
    try:
        return c.info("stats")
    finally:
        c.close()


def test_hash_keys_are_wrongtype(tmp_path, redis_port):
    """With a hash in the database GET and SET check types (the Python path)."""
    with ServerProcess(tmp_path / "db") as s:
        data = script(("SET", "f:w", "1"), ("GET", "f:w"), ("HSET", "f:h", "f", "v"), ("GET", "f:h"),
                      ("SET", "f:w", "2"), ("GET", "f:w"), ("SET", "f:h", "s"), ("GET", "f:h"),
                      ("DEL", "f:w", "f:h"))
        got = exchange(s.port, [data])
        assert got == exchange(redis_port, [data])
        assert b"-WRONGTYPE" in got


def test_a_client_that_stops_reading_gets_every_reply_in_order(server):
    """Pipelined GETs of large values (whole batches of them) mixed with SETs,
    and the client reads nothing for a while: the server stops after a few
    replies, then sends the rest in order; the engine counts each GET once."""
    c = redis.Redis(protocol=2, host="127.0.0.1", port=server.port, socket_timeout=30)
    vals = {b"f:big%d" % i: os.urandom(150000 + i) for i in range(4)}
    for k, v in vals.items():
        c.set(k, v)
    st0 = c.info("stats")
    frames = []
    want = []
    for i in range(60):
        k = b"f:big%d" % (i % 4)
        frames.append(resp.command("GET", k))
        want.append(b"$%d\r\n%b\r\n" % (len(vals[k]), vals[k]))
        if i >= 40 and i % 7 == 6:          # 40 GETs in a row, then SETs among them
            frames.append(resp.command("SET", b"f:small%d" % i, b"s"))
            want.append(b"+OK\r\n")
            frames.append(resp.command("GET", b"f:small%d" % i))
            want.append(b"$1\r\ns\r\n")
    want = b"".join(want)
    s = socket.create_connection(("127.0.0.1", server.port), timeout=30)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
    s.sendall(b"".join(frames))
    time.sleep(0.5)
    assert c.ping()
    got = recv_at_least(s, len(want))
    s.close()
    assert got == want
    st1 = c.info("stats")
    assert st1["keyspace_hits"] - st0["keyspace_hits"] == 60 + 3
    assert st1["keyspace_misses"] == st0["keyspace_misses"]
    c.close()


def test_random_pipelines_same_bytes_as_redis(server, redis_port):
    """Seeded random pipelines of GET/SET (plain and not) among other commands,
    cut at random points into several writes: every byte as redis-server's."""
    import random
    rng = random.Random(23)
    keys = [b"f:z%d" % i for i in range(6)] + [b"f:\r\n", b""]
    for round_ in range(20):
        cmds = []
        for _ in range(rng.randrange(1, 60)):
            k = rng.choice(keys)
            r = rng.random()
            if r < 0.35:
                cmds.append((rng.choice(["GET", "get"]), k))
            elif r < 0.65:
                v = bytes(rng.randrange(256) for _ in range(rng.choice([0, 1, 5, 300])))
                cmds.append((rng.choice(["SET", "set"]), k, v))
            elif r < 0.72:
                cmds.append(("SET", k, "1", rng.choice(["NX", "XX", "KEEPTTL"])))
            elif r < 0.8:
                cmds.append(("INCR", k))
            elif r < 0.85:
                cmds.append(("MGET", k, rng.choice(keys)))
            elif r < 0.9:
                cmds.append(("DEL", k))
            elif r < 0.95:
                cmds.append(rng.choice([("GET",), ("GET", k, k), ("SET", k), ("PING",)]))
            else:
                cmds.append(("APPEND", k, "x"))
        data = script(*cmds)
        cuts = sorted(rng.sample(range(1, len(data)), min(rng.randrange(0, 4), len(data) - 1)))
        parts = [data[a:b] for a, b in zip([0] + cuts, cuts + [len(data)])]
        want = exchange(redis_port, parts, pause=0.02, quiet=0.25)
        got = exchange(server.port, parts, want_len=len(want), pause=0.02)
        assert got == want, (round_, cmds)
    c = redis.Redis(protocol=2, host="127.0.0.1", port=server.port, socket_timeout=10)
    c.delete(*keys)
    c.close()
    r = redis.Redis(protocol=2, host="127.0.0.1", port=redis_port, socket_timeout=10)
    r.delete(*keys)
    r.close()


def test_set_groups_across_full_memtables(tmp_path):
    """Pipelined SETs into a 256 KiB memtable: groups that do not fit go to the
    Python path (the writer thread switches memtables), every reply in order and
    every value readable after; the store's inline and offloaded writes add up."""
    with ServerProcess(tmp_path / "db", "--db-option", "write_buffer_size=262144") as s:
        vals = [os.urandom(2000) + b"%d" % i for i in range(600)]
        data = b"".join(resp.command("SET", b"f:g%d" % (i % 450), v) for i, v in enumerate(vals))
        got = exchange(s.port, [data], want_len=5 * len(vals))
        assert got == b"+OK\r\n" * len(vals)
        last = {b"f:g%d" % (i % 450): v for i, v in enumerate(vals)}
        data = b"".join(resp.command("GET", k) for k in last)
        want = b"".join(b"$%d\r\n%b\r\n" % (len(v), v) for v in last.values())
        assert exchange(s.port, [data], want_len=len(want)) == want
        c = redis.Redis(protocol=2, host="127.0.0.1", port=s.port, socket_timeout=10)
        st = c.info("stats")
        c.close()
        assert st["inline_writes"] + st["offloaded_writes"] >= len(vals)
        assert st["offloaded_writes"] > 0 and st["fast_path_commands"] > 100
