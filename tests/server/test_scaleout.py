"""Scale-out (docs/scale-out.md): three `lsmkv serve` processes behind Debian's
nutcracker (twemproxy) with ketama hashing, all on 127.0.0.1. Keys written
through the proxy spread over the servers and read back through it."""
import shutil
import socket
import subprocess
import time

import pytest

from lsmkv.server.proc import ServerProcess, free_port

redis = pytest.importorskip("redis", reason="redis-py is not installed (pip install 'redis>=5')")

N_KEYS = 600


def _no_setinfo():
    """Client options that stop redis-py sending CLIENT SETINFO on connect
    (nutcracker does not forward CLIENT and closes the connection)."""
    import inspect
    if "driver_info" in inspect.signature(redis.Redis.__init__).parameters:
        return {"driver_info": None}
    return {"lib_name": None, "lib_version": None}


def _wait_listening(port, proc, timeout=20):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"nutcracker exited with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("nutcracker is not listening")


def nutcracker_conf(listen_port, server_ports):
    lines = ["lsmkv:", f"  listen: 127.0.0.1:{listen_port}", "  hash: md5",
             "  distribution: ketama", "  redis: true", "  auto_eject_hosts: false",
             "  timeout: 5000", "  servers:"]
    lines += [f"   - 127.0.0.1:{p}:1 lsmkv{i}" for i, p in enumerate(server_ports)]
    return "\n".join(lines) + "\n"


def test_three_servers_behind_nutcracker(tmp_path):
    exe = shutil.which("nutcracker") or shutil.which("nutcracker", path="/usr/sbin:/sbin")
    if exe is None:
        pytest.skip("nutcracker is not installed (Debian: apt-get install nutcracker)")
    servers = [ServerProcess(tmp_path / f"db{i}") for i in range(3)]
    proxy = None
    try:
        port = free_port()
        conf = tmp_path / "nutcracker.yml"
        conf.write_text(nutcracker_conf(port, [s.port for s in servers]))
        check = subprocess.run([exe, "-t", "-c", str(conf)], capture_output=True, text=True)
        assert check.returncode == 0, check.stderr
        proxy = subprocess.Popen([exe, "-c", str(conf), "-s", str(free_port()), "-a", "127.0.0.1",
                                  "-o", str(tmp_path / "nutcracker.log"),
                                  "-p", str(tmp_path / "nutcracker.pid")],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _wait_listening(port, proxy)
        c = redis.Redis(protocol=2, port=port, socket_timeout=10, **_no_setinfo())
        keys = [b"user:%05d" % i for i in range(N_KEYS)]
        for i, k in enumerate(keys):
            assert c.set(k, b"v%d" % i)
        for i, k in enumerate(keys):
            assert c.get(k) == b"v%d" % i
        assert c.mget(keys[:50]) == [b"v%d" % i for i in range(50)]      # split by the proxy
        assert c.incr(b"hits") == 1 and c.incr(b"hits") == 2
        assert c.delete(*keys[:10]) == 10
        assert c.get(keys[0]) is None
        c.close()
        # each server holds a share, together exactly the keys, none twice
        held = []
        for s in servers:
            d = redis.Redis(protocol=2, port=s.port)
            mine = [k for k in d.scan_iter(match=b"user:*", count=1000)]
            d.close()
            assert len(mine) > N_KEYS // 10, (s.port, len(mine))        # ketama spreads them
            held.append(set(mine))
        assert sum(len(h) for h in held) == N_KEYS - 10
        assert set().union(*held) == set(keys[10:])
    finally:
        if proxy is not None:
            proxy.terminate()
            proxy.wait(timeout=10)
        for s in servers:
            s.__exit__(None, None, None)
