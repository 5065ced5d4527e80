"""`lsmkv serve`: every command through redis-py, protocol errors, pipelining,
fuzzing, limits and SIGTERM, against a real server process on 127.0.0.1."""
import os
import random
import shutil
import socket
import subprocess
import threading
import time

import pytest

import lsmkv
from lsmkv.server import resp
from lsmkv.server.proc import ServerProcess
from conftest import recv_at_least

redis = pytest.importorskip("redis", reason="redis-py is not installed (pip install 'redis>=5')")
# the server speaks RESP2; redis-py 8 asks for RESP3 unless told (every client here says protocol=2)

from redis.backoff import NoBackoff  # noqa: E402
from redis.retry import Retry  # noqa: E402

SMALL_WB = "write_buffer_size=262144"
NO_RETRY = dict(retry=Retry(NoBackoff(), 0))   # an expected refusal is not retried for seconds     # flushes (and writes handed to the writer thread) happen


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    d = tmp_path_factory.mktemp("serve")
    with ServerProcess(d / "db", "--db-option", SMALL_WB) as s:
        yield s
        assert s.alive(), "".join(s.log)


@pytest.fixture
def r(server):
    c = redis.Redis(protocol=2, host="127.0.0.1", port=server.port, socket_timeout=20)
    yield c
    c.close()


@pytest.fixture
def k(request):
    """A key prefix of this test's own."""
    return request.node.name.encode() + b":"


def raw(port, data, read=True, timeout=5):
    """Send bytes on a fresh socket; return everything read until the server closes or goes quiet."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        s.sendall(data)
        if not read:
            return b""
        out = b""
        s.settimeout(0.5)
        while True:
            try:
                chunk = s.recv(65536)
            except socket.timeout:
                return out
            if not chunk:
                return out + b"<closed>"
            out += chunk
    finally:
        s.close()


# ---------------------------------------------------------------- SCAN's cursor and MATCH (no server)

def test_scan_cursor_round_trip_and_order():
    from lsmkv.server.scan import decode_cursor, encode_cursor
    rnd = random.Random(3)
    keys = [bytes(rnd.randrange(256) for _ in range(rnd.randrange(0, 40))) for _ in range(500)]
    for key in keys:
        c = encode_cursor(key)
        assert c.isdigit() and c != b"0" and decode_cursor(c) == key
    # ordered like the keys for keys of one length (what a client never needs, but cheap to keep)
    same = sorted(k for k in keys if len(k) == 5)
    assert [encode_cursor(k) for k in same] == sorted(encode_cursor(k) for k in same)
    assert decode_cursor(b"0") is None
    for bad in (b"12", b"2000", b"1256", b"1x00", b"", b"-1"):
        assert decode_cursor(bad) is False, bad


def test_scan_cursors_fit_in_64_bits_and_hold_long_keys():
    """Every cursor is an unsigned 64-bit integer, as redis-cli and go-redis parse it:
    up to 6 bytes the key is in the cursor, past that the server holds it (the newest
    MAX_HELD / MAX_HELD_BYTES); a cursor it no longer holds, or never made, is invalid."""
    from lsmkv.server.scan import Cursors, HELD_BASE
    rnd = random.Random(5)
    cs = Cursors(max_held=100, max_bytes=10_000)
    made = []
    for n in list(range(0, 12)) + [40, 1000]:
        key = bytes(rnd.randrange(256) for _ in range(n))
        c = cs.encode(key)
        assert c.isdigit() and int(c) < 2 ** 64 and c != b"0"
        assert cs.decode(c) == key
        assert (len(c) == 20) == (n > 6)
        made.append((c, key))
    assert all(cs.decode(c) == k for c, k in made)
    for i in range(100):                               # 100 newer long keys push the old ones out
        cs.encode(b"long-key-%05d" % i)
    assert all(cs.decode(c) is False for c, k in made if len(k) > 6)
    assert all(cs.decode(c) == k for c, k in made if len(k) <= 6)
    big = cs.encode(b"x" * 20_000)                     # over max_bytes alone: kept, the rest go
    assert cs.decode(big) == b"x" * 20_000 and len(cs.held) == 1
    for bad in (b"%d" % (HELD_BASE - 1), b"%d" % 2 ** 64, b"1" * 21, b"1000000000000000000x"):
        assert cs.decode(bad) is False, bad
    assert Cursors().decode(big) is False              # another server (a restart) does not know it


@pytest.mark.parametrize("pattern,yes,no,prefix", [
    (b"user:*", [b"user:", b"user:1", b"user:\n"], [b"use", b"xuser:1"], b"user:"),
    (b"a?c", [b"abc", b"a\x00c"], [b"ac", b"abbc"], b"a"),
    (b"k[0-2]x", [b"k0x", b"k2x"], [b"k3x", b"kx"], b"k"),
    (b"k[^0-2]", [b"k3", b"ka"], [b"k0", b"k"], b"k"),
    (b"k[2-0]", [b"k1"], [b"k3"], b"k"),
    (b"a\\*b", [b"a*b"], [b"axb"], b"a*b"),
    (b"*", [b"", b"anything"], [], b""),
    (b"x.y+", [b"x.y+"], [b"xzy+", b"x.yy"], b"x.y+"),
])
def test_match_follows_redis_globs(pattern, yes, no, prefix):
    from lsmkv.server.scan import compile_match
    rx, p = compile_match(pattern)
    assert p == prefix
    for k in yes:
        assert rx.fullmatch(k), k
    for k in no:
        assert not rx.fullmatch(k), k


def test_prefix_stop():
    from lsmkv.server.scan import prefix_stop
    assert prefix_stop(b"ab") == b"ac"
    assert prefix_stop(b"a\xff\xff") == b"b"
    assert prefix_stop(b"\xff") is None


# ---------------------------------------------------------------- strings

def test_ping_echo(r, server):
    assert r.ping() is True
    assert r.echo(b"hello") == b"hello"
    assert raw(server.port, resp.command("PING", "x") + b"PING\r\n") == b"$1\r\nx\r\n+PONG\r\n"
    with pytest.raises(redis.ResponseError, match="wrong number of arguments for 'ping'"):
        r.execute_command("PING", "a", "b")


def test_set_get_binary_and_large(r, k):
    assert r.set(k + b"a", b"1") is True
    assert r.get(k + b"a") == b"1"
    assert r.get(k + b"missing") is None
    v = bytes(range(256)) * 4096 + b"\r\n"                 # 1 MiB + CRLF inside
    assert r.set(k + b"big", v)
    assert r.get(k + b"big") == v
    assert r.set(k + b"\x00\xff", b"")
    assert r.get(k + b"\x00\xff") == b""


@pytest.mark.parametrize("loop", ["uvloop", "asyncio"])
def test_large_gets_are_sent_from_pinned_cache_blocks(tmp_path, loop):
    """GETs of values in cached blocks go out as pinned views (no copy): every
    byte right under eviction and pipelining, the pins gone once sent."""
    if loop == "uvloop":
        pytest.importorskip("uvloop", reason="uvloop is not installed")
    args = ["--db-option", SMALL_WB, "--db-option", "block_cache_size=2097152"]
    with ServerProcess(tmp_path / "db", *args, *(["--no-uvloop"] if loop == "asyncio" else [])) as s:
        c = redis.Redis(protocol=2, host="127.0.0.1", port=s.port, socket_timeout=20)
        vals = {b"z%04d" % i: bytes([i % 251]) * (17000 + 37 * i) for i in range(240)}
        items = list(vals.items())
        for i in range(0, len(items), 12):      # ~5 MB through 256 KiB memtables: tables
            c.mset(dict(items[i:i + 12]))
        deadline = time.monotonic() + 20        # until the first keys' flush is done
        while c.info("stats")["zero_copy_gets"] == 0 and time.monotonic() < deadline:
            c.get(b"z0000")
            time.sleep(0.05)
        rng = random.Random(5)
        keys = list(vals) * 3
        rng.shuffle(keys)
        for i in range(0, len(keys), 40):
            p = c.pipeline(transaction=False)
            for key in keys[i:i + 40]:
                p.get(key)
            got = p.execute()
            assert got == [vals[key] for key in keys[i:i + 40]]
        st = c.info("stats")
        assert st["zero_copy_gets"] > len(keys) // 2
        assert st["block_cache_misses"] > 0
        deadline = time.monotonic() + 5
        while c.info("stats")["pinned_block_bytes"] and time.monotonic() < deadline:
            time.sleep(0.05)                    # replies still in flight hold their pins
        assert c.info("stats")["pinned_block_bytes"] == 0
        c.close()
        assert s.alive(), "".join(s.log)


def test_set_options(r, k):
    assert r.set(k + b"nx", b"1", nx=True) is True
    assert r.set(k + b"nx", b"2", nx=True) is None
    assert r.get(k + b"nx") == b"1"
    assert r.set(k + b"xx", b"1", xx=True) is None
    assert r.get(k + b"xx") is None
    assert r.set(k + b"nx", b"3", xx=True) is True
    assert r.get(k + b"nx") == b"3"
    assert r.set(k + b"nx", b"4", get=True) == b"3"
    assert r.set(k + b"ex", b"v", ex=100)
    assert 99 <= r.ttl(k + b"ex") <= 100
    assert r.set(k + b"px", b"v", px=50000)
    assert 49000 <= r.pttl(k + b"px") <= 50000
    assert r.set(k + b"ex", b"w", keepttl=True)
    assert r.get(k + b"ex") == b"w" and 98 <= r.ttl(k + b"ex") <= 100
    assert r.set(k + b"ex", b"z")                           # a plain SET drops the TTL
    assert r.ttl(k + b"ex") == -1
    at = int(time.time()) + 1000
    assert r.set(k + b"exat", b"v", exat=at)
    assert 998 <= r.ttl(k + b"exat") <= 1000
    assert r.set(k + b"pxat", b"v", pxat=int(time.time() * 1000) - 10)   # already past
    assert r.get(k + b"pxat") is None


@pytest.mark.parametrize("args,msg", [
    (("SET", "a", "b", "EX", "0"), "invalid expire time in 'set' command"),
    (("SET", "a", "b", "PX", "-5"), "invalid expire time in 'set' command"),
    (("SET", "a", "b", "EX", "x"), "value is not an integer or out of range"),
    (("SET", "a", "b", "NX", "XX"), "syntax error"),
    (("SET", "a", "b", "EX", "10", "PX", "10"), "syntax error"),
    (("SET", "a", "b", "FOO"), "syntax error"),
    (("SETEX", "a", "0", "b"), "invalid expire time in 'setex' command"),
    (("PSETEX", "a", "-1", "b"), "invalid expire time in 'psetex' command"),
    (("GET",), "wrong number of arguments for 'get' command"),
    (("SET", "a"), "wrong number of arguments for 'set' command"),
    (("MSET", "a", "1", "b"), "wrong number of arguments for 'mset' command"),
    (("SELECT", "16"), "DB index is out of range"),
    (("NOSUCH", "x", "y"), "unknown command 'NOSUCH', with args beginning with: 'x' 'y' "),
    (("CLIENT", "SETNAME", "a b"), "Client names cannot contain spaces"),
    (("CLIENT", "NOPE"), "unknown subcommand 'NOPE'. Try CLIENT HELP."),
    (("SCAN", "12"), "invalid cursor"),
    (("SCAN", "0", "COUNT", "0"), "syntax error"),
])
def test_errors_in_redis_words(r, args, msg):
    with pytest.raises(redis.RedisError) as e:      # the AUTH one is an AuthenticationError
        r.execute_command(*args)
    assert msg in str(e.value)


def test_auth_without_a_password_configured(server):
    assert raw(server.port, resp.command("AUTH", "pw")) == (
        b"-ERR AUTH <password> called without any password configured for the default user. "
        b"Are you sure your configuration is correct?\r\n")


def test_setex_psetex_setnx_getdel(r, k):
    assert r.execute_command("SETEX", k + b"a", 100, b"v") is True
    assert 99 <= r.ttl(k + b"a") <= 100
    assert r.psetex(k + b"b", 100000, b"v")
    assert 99000 <= r.pttl(k + b"b") <= 100000
    assert r.setnx(k + b"c", b"1") is True and r.setnx(k + b"c", b"2") is False
    assert r.getdel(k + b"c") == b"1"
    assert r.getdel(k + b"c") is None and r.get(k + b"c") is None


def test_del_exists_type(r, k):
    r.mset({k + b"1": b"a", k + b"2": b"b"})
    assert r.exists(k + b"1", k + b"2", k + b"3", k + b"1") == 3
    assert r.type(k + b"1") == b"string" and r.type(k + b"3") == b"none"
    assert r.delete(k + b"1", k + b"1", k + b"3") == 1
    assert r.exists(k + b"1") == 0
    assert r.delete(k + b"nothing") == 0


def test_mget_mset(r, k):
    assert r.mset({k + b"x": b"1", k + b"y": b"2"}) is True
    assert r.mget([k + b"x", k + b"nope", k + b"y"]) == [b"1", None, b"2"]


# ---------------------------------------------------------------- counters

def test_incr_family(r, k):
    assert r.incr(k + b"n") == 1
    assert r.incrby(k + b"n", 10) == 11
    assert r.decr(k + b"n") == 10
    assert r.decrby(k + b"n", 20) == -10
    assert r.get(k + b"n") == b"-10"
    r.set(k + b"s", b"abc")
    with pytest.raises(redis.ResponseError, match="value is not an integer or out of range"):
        r.incr(k + b"s")
    r.set(k + b"s", b" 1")
    with pytest.raises(redis.ResponseError, match="value is not an integer or out of range"):
        r.incr(k + b"s")
    r.set(k + b"max", str(2 ** 63 - 1))
    with pytest.raises(redis.ResponseError, match="increment or decrement would overflow"):
        r.incr(k + b"max")
    with pytest.raises(redis.ResponseError, match="value is not an integer or out of range"):
        r.incrby(k + b"n", "1.5")


def test_incr_keeps_the_ttl(r, k):
    r.set(k + b"t", b"5", ex=100)
    assert r.incr(k + b"t") == 6
    assert 98 <= r.ttl(k + b"t") <= 100


def test_incr_is_atomic_across_clients(server, k):
    """8 clients x 300 INCR on one key, while a writer of large values keeps
    pushing the small memtable into flushes (so some INCRs run on the writer thread)."""
    key = k + b"counter"
    stop = threading.Event()
    errors = []

    def churn():
        c = redis.Redis(protocol=2, port=server.port)
        i = 0
        while not stop.is_set():
            c.set(k + b"churn%d" % (i % 50), b"x" * 20000)
            i += 1
        c.close()

    def incr():
        try:
            c = redis.Redis(protocol=2, port=server.port, socket_timeout=30)
            for _ in range(300):
                c.incr(key)
            c.close()
        except Exception as e:            # pragma: no cover - reported below
            errors.append(e)

    t = threading.Thread(target=churn)
    t.start()
    ts = [threading.Thread(target=incr) for _ in range(8)]
    for x in ts:
        x.start()
    for x in ts:
        x.join()
    stop.set()
    t.join()
    assert not errors
    c = redis.Redis(protocol=2, port=server.port)
    assert c.get(key) == b"2400"
    info = c.info("stats")
    assert info["offloaded_writes"] > 0 and info["inline_writes"] > 0
    c.close()


# ---------------------------------------------------------------- expiry

def test_expire_ttl_persist(r, k):
    key = k + b"e"
    assert r.expire(key, 10) is False                    # absent
    assert r.ttl(key) == -2 and r.pttl(key) == -2
    r.set(key, b"v")
    assert r.ttl(key) == -1
    assert r.expire(key, 100) is True
    assert 99 <= r.ttl(key) <= 100
    assert r.pexpire(key, 200000) is True
    assert 199000 <= r.pttl(key) <= 200000
    assert r.persist(key) is True and r.ttl(key) == -1
    assert r.persist(key) is False
    assert r.expire(key, 50, nx=True) is True
    assert r.expire(key, 60, nx=True) is False
    assert r.expire(key, 40, gt=True) is False
    assert r.expire(key, 70, gt=True) is True
    assert r.expire(key, 80, lt=True) is False
    assert r.expireat(key, int(time.time()) + 30) is True
    assert 28 <= r.ttl(key) <= 30
    assert r.pexpireat(key, int(time.time() * 1000) + 30000) is True
    assert r.expire(key, 0) is True and r.get(key) is None     # non-positive: deleted now


def test_keys_really_expire(r, k):
    r.set(k + b"a", b"v", px=100)
    r.execute_command("SETEX", k + b"b", 1, b"v")
    r.set(k + b"c", b"v")
    r.pexpire(k + b"c", 100)
    assert r.get(k + b"a") == b"v"
    time.sleep(0.3)
    assert r.get(k + b"a") is None and r.get(k + b"c") is None
    assert r.exists(k + b"a") == 0 and r.ttl(k + b"a") == -2
    time.sleep(0.9)
    assert r.get(k + b"b") is None


# ---------------------------------------------------------------- keyspace

def test_scan_in_key_order_with_cursor(r, k):
    keys = [k + b"s%04d" % i for i in range(300)]
    r.mset({key: b"v" for key in keys})
    got = []
    cursor = 0
    rounds = 0
    while True:
        cursor, batch = r.scan(cursor, match=k + b"s*", count=17)
        got += batch
        rounds += 1
        if cursor == 0:
            break
    assert got == sorted(keys)                             # all, in order, once
    assert rounds >= 300 // 17
    assert list(r.scan_iter(match=k + b"s00[1-2]?", count=5)) == [k + b"s%04d" % i for i in range(10, 30)]
    assert list(r.scan_iter(match=k + b"s\\*")) == []


@pytest.mark.skipif(shutil.which("redis-cli") is None, reason="redis-cli is not installed (Debian: redis-tools)")
def test_redis_cli_scan_walks_long_keys(server, r, k):
    """redis-cli --scan parses the cursor with strtoull: with keys longer than a
    64-bit cursor can carry (here 60 bytes), it walks every key (the stateless
    cursor of such a key was over 2^64: 'ERR invalid cursor' after the first page)."""
    keys = sorted(k + b"long-%04d-" % i + b"x" * 40 for i in range(120))
    r.mset({key: b"v" for key in keys})
    out = subprocess.run(["redis-cli", "-p", str(server.port), "--scan", "--pattern", (k + b"long-*").decode()],
                         capture_output=True, timeout=60)
    assert out.returncode == 0 and b"ERR" not in out.stdout + out.stderr, out
    assert out.stdout.split() == keys
    got, cursor = [], 0
    while True:                                            # redis-py, HSCAN too, with long fields
        cursor, batch = r.scan(cursor, match=k + b"long-*", count=9)
        assert cursor < 2 ** 64
        got += batch
        if cursor == 0:
            break
    assert got == keys
    fields = {b"field-%03d-" % i + b"y" * 30: b"%d" % i for i in range(50)}
    r.hset(k + b"h", mapping=fields)
    assert dict(r.hscan_iter(k + b"h", count=4)) == fields
    r.delete(k + b"h")                                     # the module's server has no hash after this test


def test_scan_whole_keyspace_and_type(r, k):
    r.set(k + b"one", b"1")
    allkeys = list(r.scan_iter(count=1000))
    assert k + b"one" in allkeys and allkeys == sorted(allkeys)
    assert r.scan(0, _type="hash", count=1000)[1] == []
    c, keys = r.execute_command("SCAN", "0", "COUNT", "5000")          # a long scan: reader thread
    assert c == 0 and len(keys) == len(allkeys)


def test_dbsize_estimate(r, k):
    # the estimate counts versions: a compaction between two calls may lower it (the
    # server is shared by the module's tests), so only the new keys are a lower bound
    r.mset({k + b"%d" % i: b"v" for i in range(20)})
    assert r.dbsize() >= 20


# ---------------------------------------------------------------- server and connection

def test_info_sections(r):
    info = r.info()
    for field in ("redis_version", "connected_clients", "used_memory", "used_memory_rss",
                  "total_commands_processed", "keyspace_hits", "appendfsync", "bufpool_held_bytes",
                  "mem_memtable_active", "wal_bytes", "db0"):
        assert field in info, field
    assert info["appendfsync"] == "everysec"
    assert set(r.info("memory")) >= {"used_memory", "bufpool_capacity"}
    assert "connected_clients" in r.info("clients") and "used_memory" not in r.info("clients")


def test_command_and_config(r, server):
    table = r.command()                       # redis-py parses COMMAND's reply into a dict
    assert table["get"]["arity"] == 2 and table["set"]["arity"] == -3
    assert table["mset"]["step_count"] == 2 and table["mget"]["last_key_pos"] == -1
    assert {"scan", "incrby", "client", "info", "shutdown"} <= set(table)
    n = len(table)
    assert raw(server.port, resp.command("COMMAND", "COUNT")) == b":%d\r\n" % n
    info = raw(server.port, resp.command("COMMAND", "INFO", "get", "nosuch"))
    assert info.startswith(b"*2\r\n*10\r\n$3\r\nget\r\n:2\r\n") and info.endswith(b"$-1\r\n")
    assert raw(server.port, resp.command("COMMAND", "DOCS")) == b"*0\r\n"
    assert r.config_get("maxclients") == {"maxclients": "10000"}
    assert r.config_get("appendonly") == {"appendonly": "yes"}


def test_client_commands(r):
    assert r.client_setname("worker-1") is True
    assert r.client_getname() == "worker-1"
    cid = r.client_id()
    lines = r.client_list()
    me = [c for c in lines if c["name"] == "worker-1"]
    assert len(me) == 1 and int(me[0]["id"]) == cid and me[0]["addr"].startswith("127.0.0.1:")


def test_select_and_quit(server):
    c = redis.Redis(protocol=2, port=server.port)
    assert c.execute_command("SELECT", "0") is True
    c.close()
    assert raw(server.port, resp.command("QUIT") + resp.command("PING")) == b"+OK\r\n<closed>"
    assert raw(server.port, resp.command("PING") + b"QUIT\r\n") == b"+PONG\r\n+OK\r\n<closed>"


def test_unknown_command_exact_text(server):
    assert raw(server.port, resp.command("FOO", "a" * 200)) == (
        b"-ERR unknown command 'FOO', with args beginning with: '" + b"a" * 128 + b"' \r\n")
    assert raw(server.port, b"nosuch\r\n") == b"-ERR unknown command 'nosuch', with args beginning with: \r\n"


def test_pipelining_keeps_order(r, k):
    p = r.pipeline(transaction=False)
    for i in range(500):
        p.set(k + b"%d" % i, b"%d" % i)
        p.incr(k + b"n")
        p.get(k + b"%d" % i)
    out = p.execute()
    assert out[0::3] == [True] * 500
    assert out[1::3] == list(range(1, 501))
    assert out[2::3] == [b"%d" % i for i in range(500)]


def test_pipeline_through_the_writer_thread_keeps_order(server, k):
    """Large values fill the 256 KiB memtable every few commands, so writes in the
    middle of one read are handed to the writer thread; replies stay in order."""
    frames = []
    expect = []
    for i in range(60):
        frames.append(resp.command("SET", k + b"%d" % i, b"%d" % i * 10000))
        expect.append(b"+OK\r\n")
        frames.append(resp.command("STRLEN_IS_UNKNOWN"))
        expect.append(b"-ERR unknown command 'STRLEN_IS_UNKNOWN', with args beginning with: \r\n")
        frames.append(resp.command("GET", k + b"%d" % i))
        v = b"%d" % i * 10000
        expect.append(b"$%d\r\n%b\r\n" % (len(v), v))
    want = b"".join(expect)
    s = socket.create_connection(("127.0.0.1", server.port), timeout=20)
    s.sendall(b"".join(frames))
    got = recv_at_least(s, len(want))
    s.close()
    assert got == want


def test_value_arriving_in_small_pieces(server, k):
    v = os.urandom(200000)
    frame = resp.command("SET", k + b"slow", v) + resp.command("GET", k + b"slow")
    s = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    for i in range(0, len(frame), 7001):
        s.sendall(frame[i:i + 7001])
    want = b"+OK\r\n" + b"$%d\r\n%b\r\n" % (len(v), v)
    got = recv_at_least(s, len(want))
    s.close()
    assert got == want


def test_a_client_that_does_not_read_cannot_grow_the_server(server, r, k):
    """100 pipelined GETs of a 1 MiB value, and the client reads nothing for a
    while: the server stops after a few replies instead of holding 100 MiB."""
    v = os.urandom(1 << 20)
    r.set(k + b"big", v)
    s = socket.create_connection(("127.0.0.1", server.port), timeout=30)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
    before = server.rss()
    s.sendall(resp.command("GET", k + b"big") * 100)
    time.sleep(1.0)
    grown = server.rss() - before
    assert r.ping()                                   # other clients are served meanwhile
    want = (b"$%d\r\n" % len(v) + v + b"\r\n") * 100
    got = recv_at_least(s, len(want))
    s.close()
    assert got == want
    assert grown < 16 << 20, grown            # measured: 2 MB; 53 MB without the limit


def test_malformed_frame_closes_only_that_connection(server, r, k):
    r.set(k + b"alive", b"1")
    out = raw(server.port, resp.command("PING") + b"*1\r\n:12\r\n" + resp.command("PING"))
    assert out == b"+PONG\r\n-ERR Protocol error: expected '$', got ':'\r\n<closed>"
    assert r.get(k + b"alive") == b"1"


def test_protocol_fuzz_server_survives(server, k):
    """Random bytes, truncated and corrupted frames from many sockets while a
    regular client keeps reading and writing; nothing it acknowledged is lost."""
    rnd = random.Random(1234)
    good = [resp.command("SET", "fz%d" % i, "v" * rnd.randrange(50)) for i in range(20)]
    stop = threading.Event()
    checked = []

    def regular():
        c = redis.Redis(protocol=2, port=server.port, socket_timeout=20)
        i = 0
        while not stop.is_set():
            c.set(k + b"%d" % i, b"%d" % i)
            assert c.get(k + b"%d" % i) == b"%d" % i
            i += 1
        checked.append(i)
        c.close()

    t = threading.Thread(target=regular)
    t.start()
    try:
        for n in range(300):
            kind = n % 4
            if kind == 0:
                data = bytes(rnd.randrange(256) for _ in range(rnd.randrange(1, 200)))
            elif kind == 1:
                f = rnd.choice(good)
                data = f[:rnd.randrange(1, len(f))]
            elif kind == 2:
                f = bytearray(rnd.choice(good))
                for _ in range(3):
                    f[rnd.randrange(len(f))] = rnd.randrange(256)
                data = bytes(f)
            else:
                data = b"".join(rnd.choice(good) for _ in range(5)) + b"*2\r\n$99999999999\r\n"
            s = socket.create_connection(("127.0.0.1", server.port), timeout=5)
            s.sendall(data)
            if rnd.random() < 0.5:
                s.shutdown(socket.SHUT_WR)
            s.close()
    finally:
        stop.set()
        t.join()
    assert checked and checked[0] > 0
    c = redis.Redis(protocol=2, port=server.port)
    assert c.ping() and c.get(k + b"0") == b"0"
    stats = c.info("stats")
    assert stats["protocol_errors"] > 0 and stats["internal_errors"] == 0
    c.close()
    assert server.alive()


def test_redis_cli_talks_to_it(server):
    if shutil.which("redis-cli") is None:
        pytest.skip("redis-cli is not installed (Debian: apt-get install redis-tools)")
    cli = ["redis-cli", "-p", str(server.port)]
    assert subprocess.run(cli + ["SET", "cli", "hello"], capture_output=True, text=True).stdout == "OK\n"
    assert subprocess.run(cli + ["GET", "cli"], capture_output=True, text=True).stdout == "hello\n"
    assert subprocess.run(cli + ["DBSIZE"], capture_output=True, text=True).returncode == 0
    out = subprocess.run(cli + ["INFO", "server"], capture_output=True, text=True).stdout
    assert "redis_version:" in out


# ---------------------------------------------------------------- limits, auth, lifecycle

def test_proto_max_bulk_len_refused_before_allocation(tmp_path):
    with ServerProcess(tmp_path / "db", "--proto-max-bulk-len", "1000") as s:
        # the DB's janitor maps and populates the next log (64 MiB) just after the open:
        # measure from when the RSS has settled
        before = s.settled_rss()
        out = raw(s.port, b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$400000000\r\n")   # a 400 MB value announced
        assert out == b"-ERR Protocol error: invalid bulk length\r\n<closed>"
        assert s.rss() - before < 4 << 20                  # nothing was sized for it
        assert raw(s.port, resp.command("SET", "k", "x" * 1000)) == b"+OK\r\n"
        assert raw(s.port, resp.command("SET", "k", "x" * 1001)).startswith(b"-ERR Protocol error")


def test_requirepass(tmp_path):
    with ServerProcess(tmp_path / "db", "--requirepass", "s3cret") as s:
        c = redis.Redis(protocol=2, port=s.port, **NO_RETRY)
        with pytest.raises(redis.AuthenticationError):
            c.get("a")
        with pytest.raises(redis.AuthenticationError):
            redis.Redis(protocol=2, port=s.port, password="wrong", **NO_RETRY).ping()
        ok = redis.Redis(protocol=2, port=s.port, password="s3cret")
        assert ok.ping() and ok.set("a", "1") and ok.get("a") == b"1"
        assert raw(s.port, resp.command("GET", "a")) == b"-NOAUTH Authentication required.\r\n"
        assert raw(s.port, resp.command("AUTH", "default", "s3cret") + resp.command("GET", "a")) == \
            b"+OK\r\n$1\r\n1\r\n"
        ok.close()
        c.close()


def test_maxclients(tmp_path):
    with ServerProcess(tmp_path / "db", "--maxclients", "2") as s:
        a = redis.Redis(protocol=2, port=s.port)
        b = redis.Redis(protocol=2, port=s.port)
        assert a.ping() and b.ping()
        assert raw(s.port, resp.command("PING")) == b"-ERR max number of clients reached\r\n<closed>"
        a.close()
        time.sleep(0.2)
        assert raw(s.port, resp.command("PING")) == b"+PONG\r\n"
        b.close()


def test_unix_socket(tmp_path):
    path = str(tmp_path / "s.sock")
    with ServerProcess(tmp_path / "db", "--unixsocket", path) as s:
        c = redis.Redis(protocol=2, unix_socket_path=path)
        assert c.set("u", "1") and c.get("u") == b"1"
        c.close()
        code, log = s.terminate()
        assert code == 0 and not os.path.exists(path)


def test_sigterm_finishes_in_flight_and_closes_the_db(tmp_path):
    """Pipelined writes are in flight when SIGTERM arrives: the server stops
    accepting, answers what it has read, closes the DB, exits 0; every
    acknowledged write is in the database afterwards."""
    with ServerProcess(tmp_path / "db", "--db-option", SMALL_WB) as s:
        sock = socket.create_connection(("127.0.0.1", s.port), timeout=30)
        frames = b"".join(resp.command("SET", "t%05d" % i, b"v" * 3000) for i in range(2000))
        sock.sendall(frames[:len(frames) // 2])
        got = sock.recv(5)                       # the server is working through them
        s.proc.send_signal(15)
        sock.settimeout(30)
        try:
            sock.sendall(frames[len(frames) // 2:])
        except OSError:
            pass
        while True:
            try:
                chunk = sock.recv(65536)
            except OSError:
                break
            if not chunk:
                break
            got += chunk
        sock.close()
        code, log = s.terminate()
        assert code == 0, log
        assert "database closed" in log
        acked = got.count(b"+OK\r\n")
        assert got == b"+OK\r\n" * acked and acked >= 1
        with pytest.raises(ConnectionError):
            socket.create_connection(("127.0.0.1", s.port), timeout=2).close()
    with lsmkv.DB(tmp_path / "db") as db:
        for i in range(acked):
            assert db.get(b"t%05d" % i) == b"v" * 3000, i


def test_shutdown_command(tmp_path):
    with ServerProcess(tmp_path / "db") as s:
        c = redis.Redis(protocol=2, port=s.port, **NO_RETRY)
        c.set("x", "1")
        try:
            c.shutdown()                 # redis-py expects the connection to drop, as Redis does
        except redis.ConnectionError:
            pass
        assert s.proc.wait(timeout=60) == 0
    with lsmkv.DB(tmp_path / "db") as db:
        assert db.get(b"x") == b"1"


def test_appendfsync_always(tmp_path):
    with ServerProcess(tmp_path / "db", "--appendfsync", "always") as s:
        c = redis.Redis(protocol=2, port=s.port)
        for i in range(20):
            c.set("a%d" % i, "v")
        assert c.info("persistence")["wal_syncs"] >= 20
        assert c.info("stats")["inline_writes"] == 0
        c.close()


def test_command_line_errors(tmp_path):
    env = dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(lsmkv.__file__)))

    def run(*args):
        return subprocess.run([os.sys.executable, "-m", "lsmkv", "serve", *args], cwd="/", env=env,
                              capture_output=True, text=True, timeout=60)
    r = run(str(tmp_path / "db"), "--db-option", "nosuch=1", "--port", "0")
    assert r.returncode == 2 and "nosuch" in r.stderr
    r = run(str(tmp_path / "db"), "--port", "70000")
    assert r.returncode == 2 and "--port" in r.stderr
    with lsmkv.DB(tmp_path / "locked"):
        pass
    held = subprocess.Popen([os.sys.executable, "-c", "import lsmkv, sys, time; db = lsmkv.DB(sys.argv[1]); "
                             "print('open', flush=True); time.sleep(60)", str(tmp_path / "locked")],
                            cwd="/", env=env, stdout=subprocess.PIPE, text=True)
    try:
        assert held.stdout.readline().strip() == "open"
        r = run(str(tmp_path / "locked"), "--port", "0")
        assert r.returncode == 3 and "locked" in r.stderr
    finally:
        held.kill()
        held.wait()
