"""MULTI/EXEC/DISCARD/WATCH in `lsmkv serve` (lsmkv/server/multi.py): WATCH
between clients, transfers keeping a sum, the queue's memory bound, and a kill -9
in the middle of EXECs never leaving half of one. (Byte-for-byte replies against
redis-server: tests/server/test_redis_compat.py's differential script.)"""
import random
import socket
import threading
import time

import pytest

from lsmkv.server import resp
from lsmkv.server.proc import ServerProcess

redis = pytest.importorskip("redis", reason="redis-py is not installed (pip install 'redis>=5')")


def client(s, **kw):
    return redis.Redis(protocol=2, host="127.0.0.1", port=s.port, socket_timeout=30, **kw)


def test_watch_sees_another_clients_write(tmp_path):
    with ServerProcess(tmp_path / "db") as s:
        c1, c2 = client(s), client(s)
        c1.set("k", "1")
        p = c1.pipeline()
        p.watch("k")
        assert p.get("k") == b"1"           # immediate mode after WATCH
        c2.set("k", "2")                    # another client changes the watched key
        p.multi()
        p.set("out", "x")
        with pytest.raises(redis.WatchError):
            p.execute()
        assert c1.get("out") is None        # nothing applied
        p = c1.pipeline()
        p.watch("k")
        p.multi()
        p.set("out", "y")
        p.incr("k")
        assert p.execute() == [True, 3]
        # a hash written under a watched name also counts
        p = c1.pipeline()
        p.watch("h")
        c2.hset("h", "f", "v")
        p.multi()
        p.set("out", "z")
        with pytest.raises(redis.WatchError):
            p.execute()
        assert c1.get("out") == b"y"
        c1.close()
        c2.close()


def test_transfers_with_watch_keep_the_sum(tmp_path):
    accounts = [f"acct:{i}" for i in range(10)]
    with ServerProcess(tmp_path / "db") as s:
        c = client(s)
        c.mset({a: 100 for a in accounts})
        done = [0]
        conflicts = [0]
        errors = []

        def worker(seed):
            rnd = random.Random(seed)
            cl = client(s)
            try:
                for _ in range(60):
                    x, y = rnd.sample(accounts, 2)
                    while True:
                        p = cl.pipeline()
                        try:
                            p.watch(x, y)
                            bx, by = int(p.get(x)), int(p.get(y))
                            p.multi()
                            p.set(x, bx - 1)
                            p.set(y, by + 1)
                            p.execute()
                            done[0] += 1
                            break
                        except redis.WatchError:
                            conflicts[0] += 1
                        finally:
                            p.reset()
            except Exception as e:              # pragma: no cover - reported below
                errors.append(e)
            finally:
                cl.close()

        threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors, errors
        assert done[0] == 240
        assert sum(int(v) for v in c.mget(accounts)) == 1000
        c.close()


def test_exec_waits_for_a_heavy_write_and_runs_alone(tmp_path):
    """FLUSHDB of many keys runs on the writer thread; an EXEC sent meanwhile
    runs after it (in order) and sees its result."""
    with ServerProcess(tmp_path / "db") as s:
        c1, c2 = client(s), client(s)
        c1.mset({f"f:{i}": i for i in range(30000)})
        t = threading.Thread(target=c2.flushdb)
        t.start()
        time.sleep(0.01)
        p = c1.pipeline()                       # MULTI ... EXEC
        p.set("after", "1")
        p.incr("after")
        p.dbsize()
        res = p.execute()
        t.join()
        assert res[:2] == [True, 2]
        assert c1.get("after") == b"2" and c1.get("f:5") is None
        c1.close()
        c2.close()


def test_the_queue_counts_against_the_query_buffer_limit(tmp_path):
    with ServerProcess(tmp_path / "db", "--client-query-buffer-limit", str(1 << 20)) as s:
        c = client(s)
        p = c.pipeline()
        for i in range(20):
            p.set(f"big:{i}", b"x" * 100_000)     # 2 MB queued in all
        with pytest.raises(redis.ResponseError, match="EXECABORT|client-query-buffer-limit"):
            p.execute()
        assert c.get("big:0") is None and c.ping()
        c.close()


def test_a_kill_in_the_middle_of_execs_never_leaves_half_of_one(tmp_path):
    """A client writes 50 keys to the same value i in each EXEC; the server is
    killed with SIGKILL at a random moment. After a restart all 50 keys hold one
    value, at least the last acknowledged one."""
    keys = [f"t:{j}" for j in range(50)]
    rnd = random.Random(7)
    for rounds in range(3):
        acked = [0]
        s = ServerProcess(tmp_path / "db")
        try:
            stop = threading.Event()

            def writer():
                cl = client(s)
                i = acked[0]
                try:
                    while not stop.is_set():
                        i += 1
                        p = cl.pipeline()
                        for k in keys:
                            p.set(k, i)
                        p.execute()
                        acked[0] = i
                except (redis.ConnectionError, redis.TimeoutError):
                    pass

            with client(s) as c0:
                base = int(c0.get("t:0") or 0)
            acked[0] = base
            t = threading.Thread(target=writer)
            t.start()
            time.sleep(0.3 + rnd.random() * 0.5)
            s.kill()
            stop.set()
            t.join()
        finally:
            s.kill()
        with ServerProcess(tmp_path / "db") as s2:
            c = client(s2)
            vals = {int(v) for v in c.mget(keys)}
            c.close()
        assert len(vals) == 1, (rounds, sorted(vals)[:5])
        assert vals.pop() >= acked[0] > base, (rounds, acked[0], base)


def test_the_queue_is_client_memory(tmp_path):
    """CLIENT LIST shows the queue (flags=x, multi=N, multi-mem), and it counts in
    maxmemory-clients: the client with the largest queue is evicted."""
    with ServerProcess(tmp_path / "db", "--maxmemory-clients", str(4 << 20)) as s:
        other = client(s)
        sock = socket.create_connection(("127.0.0.1", s.port), timeout=10)
        f = sock.makefile("rb")
        sock.sendall(resp.command("MULTI"))
        assert f.readline() == b"+OK\r\n"
        for i in range(3):
            sock.sendall(resp.command("SET", f"q:{i}", "v" * 1000))
            assert f.readline() == b"+QUEUED\r\n"
        line = next(x for x in other.client_list() if x["multi"] != "-1")
        assert line["flags"] == "x" and line["multi"] == "3" and int(line["multi-mem"]) > 3000
        try:
            for i in range(100):                # 10 MB queued: over maxmemory-clients
                sock.sendall(resp.command("SET", f"big:{i}", b"x" * 100_000))
                if f.readline() != b"+QUEUED\r\n":
                    break
        except OSError:
            pass
        assert f.read() == b""                  # evicted: the server closed the connection
        sock.close()
        assert other.ping() and other.get("q:0") is None
        assert all(x["multi"] == "-1" for x in other.client_list())
        other.close()


def test_flushdb_is_one_range_tombstone_and_counts_for_watch(tmp_path):
    with ServerProcess(tmp_path / "db") as s:
        c, c2 = client(s), client(s)
        c.mset({f"k:{i}": i for i in range(5000)})
        c.hset("h", mapping={"a": 1})
        p = c.pipeline()
        p.watch("k:1", "never-existed")
        c2.flushdb()                            # a write of every key, even absent ones
        p.multi()
        p.set("x", "1")
        with pytest.raises(redis.WatchError):
            p.execute()
        assert c.keys("*") == [] and c.hgetall("h") == {} and c.type("h") == b"none"
        c.mset({"a": 1, "b": 2})
        p = c.pipeline()                        # FLUSHDB inside MULTI: in the EXEC's one batch
        p.set("c", 3).flushdb().set("d", 4)
        assert p.execute() == [True, True, True]
        assert c.keys("*") == [b"d"]
        c.close()
        c2.close()


def test_watch_sees_hincrby_of_an_existing_field(tmp_path):
    """Every write of a hash writes its metadata key, which WATCH of the hash
    watches: an HINCRBY of an existing field between WATCH and EXEC aborts it."""
    with ServerProcess(tmp_path / "db") as s:
        c1, c2 = client(s), client(s)
        c1.hset("h", "f", 10)
        p = c1.pipeline()
        p.watch("h")
        assert p.hget("h", "f") == b"10"
        c2.hincrby("h", "f", 5)
        p.multi()
        p.hset("h", "f", 11)
        with pytest.raises(redis.WatchError):
            p.execute()
        assert c1.hget("h", "f") == b"15"
        c1.close()
        c2.close()


def test_client_reply_inside_multi_and_with_resp3(tmp_path):
    """CLIENT REPLY inside MULTI: EXEC's array still has an element per command
    and the mode takes effect after it; with RESP3, CLIENT REPLY OFF silences
    replies instead of failing the connection; a type-check early reply is RESP3."""
    with ServerProcess(tmp_path / "db") as s:
        sock = socket.create_connection(("127.0.0.1", s.port), timeout=10)
        f = sock.makefile("rb")
        sock.sendall(b"".join(resp.command(*c) for c in
                              [("MULTI",), ("CLIENT", "REPLY", "OFF"), ("SET", "a", "1"), ("EXEC",),
                               ("SET", "b", "2"), ("CLIENT", "REPLY", "ON"), ("GET", "b")]))
        want = [b"+OK\r\n", b"+QUEUED\r\n", b"+QUEUED\r\n", b"*2\r\n+OK\r\n+OK\r\n", b"+OK\r\n",
                b"$1\r\n2\r\n"]
        assert [read_reply(f) for _ in want] == want
        sock.sendall(b"".join(resp.command(*c) for c in
                              [("HELLO", "3"), ("HSET", "h", "f", "v"), ("SET", "h", "x", "NX"),
                               ("CLIENT", "REPLY", "OFF"), ("SET", "c", "3"), ("CLIENT", "REPLY", "ON"),
                               ("GET", "c")]))
        hello = read_reply(f)
        assert hello.startswith(b"%7\r\n")
        assert [read_reply(f) for _ in range(4)] == [b":1\r\n", b"_\r\n", b"+OK\r\n", b"$1\r\n3\r\n"]
        f.close()
        sock.close()


def read_reply(f):
    """One RESP2/RESP3 reply from a socket file, as the raw bytes."""
    line = f.readline()
    t = line[:1]
    if t in (b"$", b"="):
        n = int(line[1:])
        return line if n < 0 else line + f.read(n + 2)
    if t in (b"*", b"%", b"~"):
        n = int(line[1:]) * (2 if t == b"%" else 1)
        return line + b"".join(read_reply(f) for _ in range(max(n, 0)))
    return line
