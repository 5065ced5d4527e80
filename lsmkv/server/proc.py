"""Run `lsmkv serve` (or any server) as a child process: start it, wait until it
listens, read its resident memory, stop it. Used by the tests and
bench/server_bench.py; nothing in the server itself imports it.

The child imports the same lsmkv as the caller (its directory goes first on
PYTHONPATH) and runs with cwd "/" so a source tree without compiled modules is
never picked up by accident.
"""
import os
import re
import signal
import socket
import subprocess
import sys
import time

import lsmkv
from lsmkv.server.main import raise_fd_limit

_READY = re.compile(r"ready on (\S+?):(\d+)")


def free_port(host="127.0.0.1"):
    """A TCP port free now on host (the kernel's pick)."""
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def rss_bytes(pid):
    """VmRSS of process pid in bytes, read from /proc."""
    with open(f"/proc/{pid}/status", "rb") as f:
        for line in f:
            if line.startswith(b"VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS in /proc/{pid}/status")


def _settle_rss(pid, pause=0.3, tries=20):
    """RSS once it stops changing (two reads `pause` apart within 16 KiB)."""
    prev = rss_bytes(pid)
    for _ in range(tries):
        time.sleep(pause)
        cur = rss_bytes(pid)
        if abs(cur - prev) <= 16384:
            return cur
        prev = cur
    return prev


def _roundtrip(socks, payload, expect):
    """Send payload on every socket, then read `expect` from every one."""
    for s in socks:
        s.sendall(payload)
    for s in socks:
        got = b""
        while len(got) < len(expect):
            chunk = s.recv(len(expect) - len(got))
            if not chunk:
                raise RuntimeError("server closed a connection during the measurement")
            got += chunk
        if got != expect:
            raise RuntimeError(f"unexpected reply {got!r}")


def measure_connections(host, port, pid, n, value_size=100):
    """Resident memory of server `pid` per connection, from a client in this process.

    baseline: RSS with one warm connection. idle: n more connections that each
    did a PING round trip (the server holds them, nothing in flight). active:
    each of those connections then has half a SET request (header and
    value_size/2 bytes of its value) sitting in the server, which must keep it.
    Returns a dict of bytes: baseline, idle_total, active_total, per_idle,
    per_active (each above the baseline, divided by n)."""
    import socket as _socket
    raise_fd_limit(n + 256)
    warm = _socket.create_connection((host, port))
    _roundtrip([warm], b"PING\r\n", b"+PONG\r\n")
    base = _settle_rss(pid)
    socks = []
    try:
        for i in range(n):
            s = _socket.create_connection((host, port), timeout=30)
            socks.append(s)
            if len(socks) % 500 == 0:          # keep the accept backlog short
                _roundtrip(socks[-500:], b"PING\r\n", b"+PONG\r\n")
        _roundtrip(socks[len(socks) - len(socks) % 500:], b"PING\r\n", b"+PONG\r\n")
        _roundtrip(socks, b"PING\r\n", b"+PONG\r\n")
        idle = _settle_rss(pid)
        head = b"*3\r\n$3\r\nSET\r\n$6\r\nkey%03d\r\n$%d\r\n" % (0, value_size)
        half = head + b"v" * (value_size // 2)
        for s in socks:
            s.sendall(half)
        _roundtrip([warm], b"PING\r\n", b"+PONG\r\n")   # the server has read what came before
        time.sleep(0.2)
        active = _settle_rss(pid)
        rest = b"v" * (value_size - value_size // 2) + b"\r\n"
        _roundtrip(socks, rest, b"+OK\r\n")
        after = _settle_rss(pid)
    finally:
        for s in socks:
            s.close()
        warm.close()
    return {"connections": n, "baseline": base, "idle_total": idle - base,
            "active_total": active - base, "after_total": after - base,
            "per_idle": (idle - base) / n, "per_active": (active - base) / n}


class ServerProcess:
    """`python -m lsmkv serve DBPATH --port PORT ARGS...` as a child.

    >>> with ServerProcess("/tmp/db") as s:        # doctest: +SKIP
    ...     s.port, s.rss()
    """

    def __init__(self, dbpath, *args, port=None, host="127.0.0.1", env=None, timeout=30):
        self.dbpath = str(dbpath)
        self.host = host
        self.port = free_port(host) if port is None else port
        pkg_root = os.path.dirname(os.path.dirname(os.path.abspath(lsmkv.__file__)))
        e = dict(os.environ if env is None else env)
        e["PYTHONPATH"] = os.pathsep.join(filter(None, [pkg_root, e.get("PYTHONPATH")]))
        e.setdefault("PYTHONFAULTHANDLER", "1")
        self.argv = [sys.executable, "-m", "lsmkv", "serve", self.dbpath, "--host", host,
                     "--port", str(self.port), *map(str, args)]
        self.proc = subprocess.Popen(self.argv, cwd="/", env=e, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, text=True)
        self.log = []
        deadline = time.monotonic() + timeout
        while True:
            line = self.proc.stderr.readline()
            if not line:
                code = self.proc.wait(timeout=5)
                raise RuntimeError(f"lsmkv serve exited ({code}) before listening: {''.join(self.log)}")
            self.log.append(line)
            if _READY.search(line):
                break
            if time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(f"lsmkv serve not ready after {timeout}s: {''.join(self.log)}")

    @property
    def pid(self):
        return self.proc.pid

    def rss(self):
        return rss_bytes(self.proc.pid)

    def settled_rss(self):
        """RSS once it stops changing (the DB populates its next log just after open)."""
        return _settle_rss(self.proc.pid)

    def alive(self):
        return self.proc.poll() is None

    def terminate(self, timeout=60):
        """SIGTERM, then wait; returns (exit code, the rest of stderr)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            rest = self.proc.stderr.read()
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise
        self.log.append(rest or "")
        return code, "".join(self.log)

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self.proc.poll() is None:
            try:
                self.terminate(timeout=30)
            except Exception:
                self.kill()
        if self.proc.stderr:
            self.proc.stderr.close()
