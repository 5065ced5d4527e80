"""`lsmkv serve` under load: redis-benchmark from a second process (bounded), and
the server's resident memory per idle and per active connection at 1,000 and
10,000 connections (RSS read from /proc, above a baseline)."""
import csv
import io
import resource
import shutil
import subprocess

import pytest

from lsmkv.server.proc import ServerProcess, measure_connections

IDLE_TARGET = 4096          # bytes of server RSS per idle connection (issue 7)
ACTIVE_TARGET = 8192        # per connection holding half a request (its pooled buffer included)


def test_redis_benchmark_bounded_load(tmp_path):
    if shutil.which("redis-benchmark") is None:
        pytest.skip("redis-benchmark is not installed (Debian: apt-get install redis-tools)")
    with ServerProcess(tmp_path / "db", "--db-option", "write_buffer_size=1048576") as s:
        r = subprocess.run(["redis-benchmark", "-h", "127.0.0.1", "-p", str(s.port), "-n", "3000",
                            "-c", "20", "-P", "4", "-r", "1000", "-d", "64", "-t", "set,get,incr,mset",
                            "--csv"], capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr
        rows = {row[0]: row for row in csv.reader(io.StringIO(r.stdout)) if row and row[0] != "test"}
        assert {"SET", "GET", "INCR"} <= set(rows) and any(k.startswith("MSET") for k in rows), r.stdout
        for name, row in rows.items():
            assert float(row[1]) > 0, (name, row)
        import redis
        c = redis.Redis(protocol=2, port=s.port)
        info = c.info()
        assert info["total_commands_processed"] >= 12000
        assert info["protocol_errors"] == 0
        counters = list(c.scan_iter(match="counter:*", count=500))
        assert sum(int(c.get(k)) for k in counters) == 3000          # every INCR counted once
        keys = list(c.scan_iter(match="key:*", count=500))
        assert 0 < len(keys) <= 1000 and keys == sorted(keys)
        assert all(len(c.get(k)) == 64 for k in keys[:50])
        c.close()
        code, log = s.terminate()
        assert code == 0, log


def _fd_room(n):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    return hard == resource.RLIM_INFINITY or hard >= n + 300


@pytest.mark.parametrize("loop,n", [("uvloop", 1000), ("uvloop", 10000), ("asyncio", 1000)])
def test_memory_per_connection(tmp_path, n, loop):
    """(asyncio's own loop at 10,000 too: bench/server_bench.py --connections; ~2 KiB each)"""
    if not _fd_room(n):
        pytest.skip(f"the hard open-file limit ({resource.getrlimit(resource.RLIMIT_NOFILE)[1]}) "
                    f"is below {n + 300}: cannot hold {n} connections on both ends")
    args = ["--maxclients", str(n + 100)]
    if loop == "asyncio":
        args.append("--no-uvloop")
    else:
        pytest.importorskip("uvloop", reason="uvloop is not installed (the server then uses asyncio)")
    with ServerProcess(tmp_path / "db", *args) as s:
        m = measure_connections("127.0.0.1", s.port, s.pid, n)
        assert s.alive()
        code, log = s.terminate()
        assert code == 0, log
    assert loop in log
    print(f"{loop} {n} connections: {m['per_idle']:.0f} B/idle, {m['per_active']:.0f} B/active")
    assert m["per_idle"] <= IDLE_TARGET, m
    assert m["per_active"] <= ACTIVE_TARGET, m
