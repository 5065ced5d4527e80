"""SELECT's numbered databases in `lsmkv serve` (lsmkv/server/databases.py):
errors as Redis 7's, the isolation of every kind of key between databases
(against a model), FLUSHDB/FLUSHALL, MOVE, COPY DB, SWAPDB, SELECT inside MULTI,
WATCH across databases, a restart, and a DB written without databases read
unchanged as database 0. Real server processes, redis-py and raw sockets.
(Byte-for-byte replies against redis-server: test_redis_compat.py's script.)"""
import random
import socket
import subprocess
import sys
import time

import pytest

import lsmkv
from lsmkv.server import hashes, resp
from lsmkv.server.proc import ServerProcess

redis = pytest.importorskip("redis", reason="redis-py is not installed (pip install 'redis>=5')")


def client(s, db=0):
    # single_connection_client: one connection, so its SELECT state is what we test
    return redis.Redis(protocol=2, host="127.0.0.1", port=s.port, socket_timeout=30, db=db,
                       single_connection_client=True)


class Raw:
    """One raw RESP connection: send a command, read its reply's bytes."""

    def __init__(self, s):
        self.sock = socket.create_connection(("127.0.0.1", s.port), timeout=20)
        self.f = self.sock.makefile("rb")

    def __call__(self, *args):
        self.sock.sendall(resp.command(*args))
        return self.read()

    def read(self):
        line = self.f.readline()
        t = line[:1]
        if t in (b"+", b"-", b":"):
            return line
        if t == b"$":
            n = int(line[1:])
            return line if n < 0 else line + self.f.read(n + 2)
        if t == b"*":
            n = int(line[1:])
            return line + b"".join(self.read() for _ in range(max(n, 0)))
        raise AssertionError(f"not a reply: {line!r}")

    def close(self):
        self.f.close()
        self.sock.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with ServerProcess(tmp_path_factory.mktemp("dbs") / "db") as s:
        yield s
        assert s.alive(), "".join(s.log)


def test_select_errors_and_config(server):
    c = Raw(server)
    try:
        assert c("SELECT", "16") == b"-ERR DB index is out of range\r\n"
        assert c("SELECT", "-1") == b"-ERR DB index is out of range\r\n"
        for bad in ("x", "1.5", "", " 1", "01", "9223372036854775808"):
            assert c("SELECT", bad) == b"-ERR value is not an integer or out of range\r\n", bad
        assert c("SELECT", "4294967296") == (b"-ERR value is out of range, value must between "
                                             b"-2147483648 and 2147483647\r\n")
        assert c("SELECT") == b"-ERR wrong number of arguments for 'select' command\r\n"
        assert c("SELECT", "15") == b"+OK\r\n"
        assert c("CONFIG", "GET", "databases") == b"*2\r\n$9\r\ndatabases\r\n$2\r\n16\r\n"
        assert b" db=15 " in c("CLIENT", "INFO")
        assert c("MOVE", "k", "16") == b"-ERR DB index is out of range\r\n"
        assert c("MOVE", "k", "x") == b"-ERR value is not an integer or out of range\r\n"
        assert c("MOVE", "k", "15") == b"-ERR source and destination objects are the same\r\n"
        assert c("COPY", "k", "k") == b"-ERR source and destination objects are the same\r\n"
        assert c("COPY", "k", "k", "DB", "16") == b"-ERR DB index is out of range\r\n"
        assert c("SWAPDB", "x", "0") == b"-ERR invalid first DB index\r\n"
        assert c("SWAPDB", "0", "x") == b"-ERR invalid second DB index\r\n"
        assert c("SWAPDB", "0", "16") == b"-ERR DB index is out of range\r\n"
        assert c("SWAPDB", "3", "3") == b"+OK\r\n"
    finally:
        c.close()


def test_databases_option(tmp_path):
    with ServerProcess(tmp_path / "db", "--databases", "4") as s:
        c = Raw(s)
        assert c("SELECT", "3") == b"+OK\r\n"
        assert c("SELECT", "4") == b"-ERR DB index is out of range\r\n"
        assert c("CONFIG", "GET", "databases") == b"*2\r\n$9\r\ndatabases\r\n$1\r\n4\r\n"
        c.close()
    for bad in ("0", "257", "-3"):
        p = subprocess.run([sys.executable, "-m", "lsmkv", "serve", str(tmp_path / "db2"),
                            "--port", "0", "--databases", bad], capture_output=True, text=True,
                           cwd="/", env={"PYTHONPATH": str(_pkg_root())}, timeout=60)
        assert p.returncode == 2 and "--databases must be in [1, 256]" in p.stderr, p.stderr


def _pkg_root():
    import os
    return os.path.dirname(os.path.dirname(os.path.abspath(lsmkv.__file__)))


def test_reset_returns_to_db0_and_hello_keeps_the_db(server):
    c = Raw(server)
    try:
        assert c("SELECT", "4") == b"+OK\r\n"
        assert c("SET", "rh:k", "four") == b"+OK\r\n"
        assert c("HELLO", "2").startswith(b"*14\r\n")
        assert c("GET", "rh:k") == b"$4\r\nfour\r\n"            # HELLO keeps the database (Redis)
        assert c("RESET") == b"+RESET\r\n"
        assert c("GET", "rh:k") == b"$-1\r\n" and b" db=0 " in c("CLIENT", "INFO")
    finally:
        c.close()


# ---------------------------------------------------------------- isolation against a model

DBS = (0, 1, 3, 15)


def _check_model(s, model, hmodel):
    for n in DBS:
        c = client(s, n)
        keys = sorted(set(model[n]) | set(hmodel[n]))
        assert sorted(c.keys("*")) == [k.encode() for k in keys], n
        scanned = []
        cur = 0
        while True:
            cur, part = c.scan(cur, count=7)
            scanned += part
            if cur == 0:
                break
        assert scanned == [k.encode() for k in keys], n
        assert sorted(c.scan(0, match="m:*", count=1000)[1]) == \
            [k.encode() for k in keys if k.startswith("m:")]
        for k, v in model[n].items():
            assert c.get(k) == v.encode(), (n, k)
            assert c.type(k) == b"string"
        for k, fields in hmodel[n].items():
            assert c.hgetall(k) == {f.encode(): v.encode() for f, v in fields.items()}, (n, k)
            assert c.hlen(k) == len(fields) and c.type(k) == b"hash"
        c.close()


def test_isolation_of_strings_hashes_ttl_scan_against_a_model(tmp_path):
    rnd = random.Random(7)
    model = {n: {} for n in DBS}
    hmodel = {n: {} for n in DBS}
    with ServerProcess(tmp_path / "db", "--db-option", "write_buffer_size=65536") as s:
        cs = {n: client(s, n) for n in DBS}
        names = [f"m:{i}" for i in range(40)] + [f"x{i}" for i in range(10)]
        for step in range(3000):
            n = rnd.choice(DBS)
            c = cs[n]
            k = rnd.choice(names)
            op = rnd.random()
            if op < 0.45:
                if k in hmodel[n]:
                    continue
                v = f"{n}:{step}"
                c.set(k, v)
                model[n][k] = v
            elif op < 0.65:
                if k in model[n]:
                    continue
                f, v = f"f{rnd.randrange(5)}", f"{n}:{step}"
                c.hset(k, f, v)
                hmodel[n].setdefault(k, {})[f] = v
            elif op < 0.8:
                assert c.delete(k) == int(k in model[n] or k in hmodel[n])
                model[n].pop(k, None)
                hmodel[n].pop(k, None)
            elif op < 0.9:
                assert c.exists(k) == int(k in model[n] or k in hmodel[n])
            elif k in hmodel[n]:
                with pytest.raises(redis.ResponseError, match="WRONGTYPE"):
                    c.get(k)
            else:
                want = model[n].get(k)
                assert c.get(k) == (None if want is None else want.encode())
        _check_model(s, model, hmodel)
        # TTLs are per database: the same name elsewhere keeps none
        cs[3].set("ttl:k", "3", ex=1000)
        cs[0].set("ttl:k", "0")
        model[3]["ttl:k"], model[0]["ttl:k"] = "3", "0"
        assert 990 <= cs[3].ttl("ttl:k") <= 1000 and cs[0].ttl("ttl:k") == -1
        assert cs[1].ttl("ttl:k") == -2 and cs[15].get("ttl:k") is None
        cs[3].set("ttl:gone", "x", px=50)
        time.sleep(0.2)
        assert cs[3].get("ttl:gone") is None
        for c in cs.values():
            c.close()
    # a restart (WAL replay and tables) changes nothing
    with ServerProcess(tmp_path / "db") as s:
        _check_model(s, model, hmodel)
        assert 980 <= client(s, 3).ttl("ttl:k") <= 1000


def test_dbsize_and_info_keyspace_per_database(tmp_path):
    with ServerProcess(tmp_path / "db") as s:
        c0, c3, c7 = client(s, 0), client(s, 3), client(s, 7)
        c0.mset({f"a:{i}": i for i in range(300)})
        c3.mset({f"a:{i}": i for i in range(120)})
        assert (c0.dbsize(), c3.dbsize(), c7.dbsize()) == (300, 120, 0)  # memtable: exact
        ks = c0.info("keyspace")
        assert ks["db0"]["keys"] == 300 and ks["db3"]["keys"] == 120 and "db7" not in ks
        c7.mset({f"big:{i}": i for i in range(25000)})  # a long memtable walk: the reader thread
        assert (c0.dbsize(), c3.dbsize(), c7.dbsize()) == (300, 120, 25000)
        c7.flushdb()
        assert c7.dbsize() == 0 and "db7" not in c0.info("keyspace")
        c3.flushdb()
        assert c3.keys("*") == [] and len(c0.keys("*")) == 300 and c0.dbsize() == 300
        c0.flushdb()
        c3.set("left", "1")
        assert c0.keys("*") == [] and c3.keys("*") == [b"left"]
        for c in (c0, c3, c7):
            c.close()
    # from tables: distinct keys, so the estimate is near the count
    with ServerProcess(tmp_path / "db2", "--db-option", "write_buffer_size=65536") as s:
        c0, c3 = client(s, 0), client(s, 3)
        for i in range(0, 6000, 500):
            c0.mset({f"b:{j:06d}": "v" * 20 for j in range(i, i + 500)})
            c3.mset({f"b:{j:06d}": "v" * 20 for j in range(i // 2, i // 2 + 250)})
        n0, n3 = c0.dbsize(), c3.dbsize()
        assert abs(n0 - 6000) <= 600 and abs(n3 - 3000) <= 300, (n0, n3)
        c0.close()
        c3.close()


def test_flushall_flushes_every_database(server):
    cs = [client(server, n) for n in (0, 2, 15)]
    for i, c in enumerate(cs):
        c.set("fa:k", i)
        c.hset("fa:h", "f", i)
    assert cs[1].flushall()
    for c in cs:
        assert c.keys("*") == [] and c.hgetall("fa:h") == {} and c.dbsize() >= 0
    cs[2].set("fa:after", "1")
    assert cs[2].keys("*") == [b"fa:after"] and cs[0].keys("*") == []
    for c in cs:
        c.close()


def test_move_and_copy_db(server):
    c0, c4 = client(server, 0), client(server, 4)
    c4.flushdb()
    c0.set("mv:s", "v", ex=500)
    c0.hset("mv:h", mapping={"a": "1", "b": "2"})
    c0.expire("mv:h", 400)
    assert c0.move("mv:s", 4) and c0.move("mv:h", 4)
    assert c0.get("mv:s") is None and c0.exists("mv:h") == 0
    assert c4.get("mv:s") == b"v" and 490 <= c4.ttl("mv:s") <= 500
    assert c4.hgetall("mv:h") == {b"a": b"1", b"b": b"2"} and 390 <= c4.ttl("mv:h") <= 400
    assert c0.move("mv:s", 4) == 0                                  # missing in the source
    c0.set("mv:s", "other")
    assert c0.move("mv:s", 4) == 0 and c0.get("mv:s") == b"other"   # exists in the target
    assert c4.get("mv:s") == b"v"
    # MOVE back from database 4 to database 0
    assert c4.move("mv:h", 0) and c0.hgetall("mv:h") == {b"a": b"1", b"b": b"2"}
    assert c4.exists("mv:h") == 0
    # COPY ... DB n: strings and hashes with their TTL; REPLACE; the same name in another db
    assert c0.copy("mv:h", "mv:h", destination_db=4) and c4.hlen("mv:h") == 2
    assert c0.copy("mv:s", "mv:s", destination_db=4) == 0
    assert c0.copy("mv:s", "mv:s", destination_db=4, replace=True) and c4.get("mv:s") == b"other"
    assert c4.ttl("mv:s") == -1 and c0.get("mv:s") == b"other"
    assert c4.copy("mv:s", "mv:s2", destination_db=4) and c4.get("mv:s2") == b"other"
    assert c4.execute_command("COPY", "mv:s", "mv:s3", "DB", "0") and c0.get("mv:s3") == b"other"
    assert c0.keys("mv:*") == sorted(c0.keys("mv:*")) and sorted(c0.keys("mv:*")) == \
        [b"mv:h", b"mv:s", b"mv:s3"]
    assert sorted(c4.keys("mv:*")) == [b"mv:h", b"mv:s", b"mv:s2"]
    c0.close()
    c4.close()


def test_swapdb(server):
    c0, c6 = client(server, 0), client(server, 6)
    c0.set("sw:a", "zero", ex=900)
    c0.hset("sw:h", "f", "zero")
    c6.set("sw:b", "six")
    c6.hset("sw:h", mapping={"g": "six", "h": "6"})
    before0, before6 = sorted(c0.keys("*")), sorted(c6.keys("*"))
    assert c0.swapdb(0, 6)
    assert sorted(c0.keys("*")) == before6 and sorted(c6.keys("*")) == before0
    assert c6.get("sw:a") == b"zero" and 890 <= c6.ttl("sw:a") <= 900
    assert c0.hgetall("sw:h") == {b"g": b"six", b"h": b"6"} and c6.hgetall("sw:h") == {b"f": b"zero"}
    assert c0.get("sw:b") == b"six" and c6.get("sw:b") is None
    assert c0.swapdb(6, 0)
    assert sorted(c0.keys("*")) == before0 and c0.hgetall("sw:h") == {b"f": b"zero"}
    c0.close()
    c6.close()


# ---------------------------------------------------------------- MULTI and WATCH

def test_select_inside_multi(server):
    c = Raw(server)
    try:
        c("SELECT", "0")
        c("DEL", "tx:a")
        for cmd in (("MULTI",), ("SET", "tx:a", "zero"), ("SELECT", "2"), ("SET", "tx:a", "two"),
                    ("GET", "tx:a"), ("SELECT", "99"), ("INCR", "tx:n"), ("MOVE", "tx:a", "5"),
                    ("EXISTS", "tx:a")):
            assert c(*cmd) in (b"+OK\r\n", b"+QUEUED\r\n")
        assert c("EXEC") == (b"*8\r\n+OK\r\n+OK\r\n+OK\r\n$3\r\ntwo\r\n"
                             b"-ERR DB index is out of range\r\n:1\r\n:1\r\n:0\r\n")
        assert b" db=2 " in c("CLIENT", "INFO")                  # the selection stays after EXEC
        assert c("GET", "tx:n") == b"$1\r\n1\r\n"
        assert c("SELECT", "5") == b"+OK\r\n" and c("GET", "tx:a") == b"$3\r\ntwo\r\n"
        assert c("SELECT", "0") == b"+OK\r\n" and c("GET", "tx:a") == b"$4\r\nzero\r\n"
        # a FLUSHDB and a SWAPDB inside an EXEC act on the EXEC's own writes too
        for cmd in (("MULTI",), ("SELECT", "8"), ("SET", "tx:f", "1"), ("FLUSHDB",),
                    ("SET", "tx:g", "1"), ("KEYS", "*"), ("SWAPDB", "8", "9"), ("SELECT", "9"),
                    ("KEYS", "*")):
            c(*cmd)
        assert c("EXEC") == (b"*8\r\n+OK\r\n+OK\r\n+OK\r\n+OK\r\n*1\r\n$4\r\ntx:g\r\n+OK\r\n+OK\r\n"
                             b"*1\r\n$4\r\ntx:g\r\n")
        assert c("KEYS", "*") == b"*1\r\n$4\r\ntx:g\r\n" and c("SELECT", "8") == b"+OK\r\n"
        assert c("KEYS", "*") == b"*0\r\n"
    finally:
        c.close()


def test_watch_is_of_the_database_selected_at_watch_time(server):
    a, b0, b3 = Raw(server), client(server, 0), client(server, 3)
    try:
        assert a("SELECT", "3") == b"+OK\r\n"
        assert a("WATCH", "w:k") == b"+OK\r\n"
        b0.set("w:k", "db0 write")                      # another database: no conflict
        b0.flushdb()                                    # nor a FLUSHDB of database 0
        a("MULTI")
        a("SET", "w:out", "1")
        assert a("EXEC") == b"*1\r\n+OK\r\n"
        assert a("WATCH", "w:k") == b"+OK\r\n"
        assert a("SELECT", "0") == b"+OK\r\n"           # still watches database 3's w:k
        b3.set("w:k", "db3 write")
        a("MULTI")
        a("SET", "w:out2", "1")
        assert a("EXEC") == b"*-1\r\n" and b0.get("w:out2") is None
        assert a("SELECT", "3") == b"+OK\r\n" and a("WATCH", "w:h") == b"+OK\r\n"
        b3.flushdb()                                    # FLUSHDB of the watched key's database
        a("MULTI")
        a("PING")
        assert a("EXEC") == b"*-1\r\n"
        assert a("WATCH", "w:h") == b"+OK\r\n"
        b3.hset("w:h", "f", "1")                        # a hash in database 3
        a("MULTI")
        a("PING")
        assert a("EXEC") == b"*-1\r\n"
    finally:
        a.close()
        b0.close()
        b3.close()


# ---------------------------------------------------------------- on disk

def test_a_db_written_without_databases_reads_unchanged_as_db0(tmp_path):
    """Database 0 is the DB's own keys: a DB written by the engine (as the server
    stored strings and hashes before databases existed) is read as database 0,
    and the server rewrites nothing of it."""
    path = str(tmp_path / "db")
    with lsmkv.DB(path) as db:
        for i in range(200):
            db.put(b"old:%03d" % i, b"v%d" % i)
        db.put(b"old:ttl", b"t", ttl=1000)
        db.put(hashes.meta_key(b"old:h"), (7).to_bytes(8, "big") + (2).to_bytes(8, "big"))
        db.put(hashes.field_prefix(b"old:h", 7) + b"a", b"1")
        db.put(hashes.field_prefix(b"old:h", 7) + b"b", b"2")
        db.flush()
        db.put(b"old:mem", b"in the WAL")
        before = list(db.items())
    with ServerProcess(path) as s:
        c0, c1 = client(s, 0), client(s, 1)
        assert len(c0.keys("*")) == 203 and c0.get("old:042") == b"v42"
        assert c0.hgetall("old:h") == {b"a": b"1", b"b": b"2"} and c0.type("old:h") == b"hash"
        assert 990 <= c0.ttl("old:ttl") <= 1000 and c0.get("old:mem") == b"in the WAL"
        assert c0.dbsize() == 205                         # 202 strings + the hash's 3 keys
        assert c1.keys("*") == [] and c1.dbsize() == 0 and c1.get("old:042") is None
        c0.close()
        c1.close()
    with lsmkv.DB(path) as db:
        assert list(db.items()) == before                 # byte for byte, nothing migrated


def test_dbsize_estimates_per_database_in_process(tmp_path):
    """dbsize.estimate/estimates against a model: exact while every key is in the
    memtables, near the count once tables hold them (tables across a database's
    edge count by their data blocks), and the same through both functions."""
    from lsmkv.server.databases import databases
    from lsmkv.server.dbsize import estimate, estimates
    rnd = random.Random(3)
    with lsmkv.DB(str(tmp_path / "db"), write_buffer_size=1 << 20) as db:
        dbs = databases(db, 16)
        model = [0] * 16
        for i in range(3000):
            n = rnd.choice((0, 1, 3, 15))
            dbs[n].put(b"k%07d" % i, b"v" * 20)
            model[n] += 1
        assert estimates(dbs) == [estimate(d) for d in dbs] == model
        for i in range(3000, 60000):
            n = rnd.choice((0, 1, 3, 15))
            dbs[n].put(b"k%07d" % i, b"v" * 20)
            model[n] += 1
        db.flush()
        got = estimates(dbs)
        assert got == [estimate(d) for d in dbs]
        for n in range(16):
            assert abs(got[n] - model[n]) <= 0.05 * model[n], (n, got, model)
        # range tombstones: a flushed database counts 0, in the memtables and in tables
        from lsmkv.server.databases import flush_batch
        for n in (3, 0):
            wb = db.write_batch()
            flush_batch(dbs[n], wb)
            db.write(wb)
            model[n] = 0
            got = estimates(dbs)
            assert got[n] == 0 and got == [estimate(d) for d in dbs], (n, got)
            assert all(abs(got[i] - model[i]) <= 0.05 * model[i] for i in range(16)), (got, model)
        dbs[3].put(b"new", b"1")
        db.put(b"new0", b"1")
        assert estimate(dbs[3]) == 1 and estimate(dbs[0]) == 1
        db.flush()          # one table, one data block across both databases: counted by one
        assert estimate(dbs[3]) + estimate(dbs[0]) == 2 and estimates(dbs)[2] == 0


@pytest.mark.parametrize("how", ["terminate", "kill"])
def test_database_5_survives_a_restart(tmp_path, how):
    """Strings, a hash and TTLs in database 5 after SIGTERM, and after kill -9 (the
    acknowledged writes are in the memory-mapped WAL)."""
    s = ServerProcess(tmp_path / "db")
    try:
        c5, c0 = client(s, 5), client(s, 0)
        c5.mset({f"r:{i}": f"five{i}" for i in range(500)})
        c5.hset("r:h", mapping={"a": "1", "b": "2"})
        c5.set("r:t", "x", ex=1000)
        c5.expire("r:h", 2000)
        c0.set("r:0", "zero")
        c5.close()
        c0.close()
    finally:
        s.terminate() if how == "terminate" else s.kill()
    with ServerProcess(tmp_path / "db") as s:
        c5, c0, c6 = client(s, 5), client(s, 5 - 5), client(s, 6)
        assert c5.mget([f"r:{i}" for i in range(500)]) == [f"five{i}".encode() for i in range(500)]
        assert c5.hgetall("r:h") == {b"a": b"1", b"b": b"2"} and 1990 <= c5.ttl("r:h") <= 2000
        # 500 strings, r:t, the hash's 2 fields and its metadata twice (EXPIRE rewrote it); once
        # in a table, the data block holding database 0's r:0 and database 5's first keys counts
        # for database 5 (dbsize.py: a block across an edge counts for the range above it)
        assert 990 <= c5.ttl("r:t") <= 1000 and 505 <= c5.dbsize() <= 506
        assert c0.keys("*") == [b"r:0"] and c6.keys("*") == [] and c0.get("r:1") is None
        assert len(c5.keys("*")) == 502
        for c in (c5, c0, c6):
            c.close()


def test_the_layout_on_disk(tmp_path):
    """Database 3's string k is NS + b"db\\x03" + k; its hash h keeps its metadata and
    fields under that prefix too; database 0's keys are the DB's own (docs/server.md)."""
    from lsmkv.server.databases import prefix
    with ServerProcess(tmp_path / "db") as s:
        c3, c0 = client(s, 3), client(s, 0)
        c3.set("k", "three")
        c3.hset("h", "f", "v")
        c0.set("k", "zero")
        c0.hset("h", "g", "w")
        c3.close()
        c0.close()
    p = prefix(3)
    assert p == hashes.NS + b"db\x03"
    with lsmkv.DB(str(tmp_path / "db")) as db:
        keys = list(db.keys())
        assert db.get(b"k") == b"zero" and db.get(p + b"k") == b"three"
        assert db.get(p + hashes.meta_key(b"h")) is not None and db.get(hashes.meta_key(b"h")) is not None
        assert len(keys) == 6 and sum(1 for k in keys if k.startswith(p)) == 3
        assert [k for k in keys if k.startswith(p + hashes.FIELD)][0].endswith(b"f")


def test_keys_in_the_reserved_prefix_are_refused(server):
    """A client on database 0 could otherwise write into database 3's (or a hash's)
    internal keys: hidden from database 0's KEYS and DBSIZE, not cleared by its FLUSHDB."""
    c = Raw(server)
    try:
        forged = hashes.NS + b"db\x03secret"
        for cmd in (("SET", forged, "x"), ("GET", forged), ("MSET", "a", "1", forged, "2"),
                    ("DEL", "a", forged), ("HSET", forged, "f", "v"), ("RENAME", "a", forged)):
            assert c(*cmd).startswith(b"-ERR keys starting with \\xff\\x00lsmkv\\x00 are reserved"), cmd
        assert c("EXISTS", "a") == b":0\r\n"                  # the MSET above wrote nothing
        assert c("SELECT", "3") == b"+OK\r\n" and c("EXISTS", "secret") == b":0\r\n"
        assert c("MULTI") == b"+OK\r\n" and c("SET", forged, "x").startswith(b"-ERR keys")
        assert c("EXEC").startswith(b"-EXECABORT")
        assert c("SET", b"\xffplain", "ok") == b"+OK\r\n"      # other keys starting with 0xff are fine
    finally:
        c.close()


def test_a_hash_made_by_hincrby_is_a_key(tmp_path):
    """HINCRBY alone may make the server's first hash: TYPE, EXISTS, KEYS and DEL see it."""
    with ServerProcess(tmp_path / "db") as s:
        r = client(s, db=3)
        try:
            assert r.hincrby("h", "f", 5) == 5
            assert r.type("h") == b"hash" and r.exists("h") == 1 and r.keys("*") == [b"h"]
            assert r.delete("h") == 1 and r.hget("h", "f") is None
        finally:
            r.close()


def test_swapdb_past_its_byte_budget_refuses_and_changes_nothing(tmp_path, monkeypatch):
    from lsmkv.server import keys
    from lsmkv.server.databases import databases
    with lsmkv.DB(str(tmp_path / "db")) as db:
        dbs = databases(db, 4)
        for i in range(3):
            dbs[1].put(b"a%d" % i, b"x" * 400)
        dbs[2].put(b"b", b"y")
        monkeypatch.setattr(keys, "SWAPDB_MAX_BYTES", 1000)
        r = keys.w_swapdb(dbs[1], dbs[2], False)
        assert r.startswith(b"-ERR SWAPDB copies both databases") and b"nothing changed" in r
        assert [k for k, _ in dbs[1].items()] == [b"a0", b"a1", b"a2"] and dbs[2].get(b"b") == b"y"
        monkeypatch.setattr(keys, "SWAPDB_MAX_BYTES", 2000)
        assert keys.w_swapdb(dbs[1], dbs[2], False) == resp.OK
        assert dbs[1].get(b"b") == b"y" and dbs[2].get(b"a1") == b"x" * 400


def test_sigterm_with_watches_and_queued_transactions_on_databases(tmp_path):
    """SIGTERM while clients of databases 3 and 7 hold WATCH transactions (engine
    transactions: snapshots), one has a MULTI queued and one is mid-SCAN: the server
    exits 0, promptly; what was acknowledged is there after a restart, the queued
    transaction is not."""
    s = ServerProcess(tmp_path / "db")
    raws = []
    try:
        for n in (3, 7, 7):
            c = Raw(s)
            raws.append(c)
            assert c("SELECT", str(n)) == b"+OK\r\n"
        w3, w7, q7 = raws
        for i in range(300):
            assert w3("SET", f"k{i}", f"three{i}") == b"+OK\r\n"
            assert w7("HSET", "h", f"f{i}", f"seven{i}") == b":1\r\n"
        assert w3("WATCH", "k1", "k2") == b"+OK\r\n" and w7("WATCH", "h") == b"+OK\r\n"
        assert q7("WATCH", "h") == b"+OK\r\n" and q7("MULTI") == b"+OK\r\n"
        assert q7("SET", "queued", "1") == b"+QUEUED\r\n"
        assert w3("SCAN", "0", "COUNT", "10").startswith(b"*2\r\n$")
        start = time.monotonic()
        code, log = s.terminate(timeout=60)
        assert code == 0, log
        assert time.monotonic() - start < 30, "shutdown waited on the open transactions"
    finally:
        for c in raws:
            c.close()
        s.kill()
    with ServerProcess(tmp_path / "db") as s:
        c3, c7 = client(s, 3), client(s, 7)
        assert c3.mget([f"k{i}" for i in range(300)]) == [f"three{i}".encode() for i in range(300)]
        assert len(c7.hgetall("h")) == 300 and c7.get("queued") is None
        assert len(c3.keys("*")) == 300 and c7.keys("*") == [b"h"]
        c3.close()
        c7.close()
