import os
import sys

import pytest

# the tests live in folders by concern (core, engine, reliability, cli, server) and
# import these helpers as `from conftest import ...`
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import lsmkv


class FakeClock:
    """An injectable clock (seconds) for TTL tests."""

    def __init__(self, t=1_000_000.0):
        self.t = t

    def __call__(self):
        return self.t

    def advance(self, s):
        self.t += s


@pytest.fixture
def clock():
    return FakeClock()


@pytest.fixture
def dbpath(tmp_path):
    return str(tmp_path / "db")


@pytest.fixture
def small_opts():
    """Tiny sizes so flushes, block splits and file switches happen often."""
    return dict(write_buffer_size=64 * 1024, block_size=512, block_cache_size=64 * 1024,
                target_file_size_base=64 * 1024)


def run_child(code, *args, timeout=60, check=True):
    """Run python code in a fresh interpreter (cwd outside the source tree)."""
    import subprocess
    env = dict(os.environ)
    r = subprocess.run([sys.executable, "-c", code, *map(str, args)], cwd="/", env=env,
                       capture_output=True, text=True, timeout=timeout)
    if check and r.returncode != 0:
        raise AssertionError(f"child failed ({r.returncode}):\n{r.stdout}\n{r.stderr}")
    return r


def lsmkv_import_path():
    """Directory to put on sys.path so a child imports the same lsmkv as the tests."""
    return os.path.dirname(os.path.dirname(os.path.abspath(lsmkv.__file__)))


def scan(it):
    """Every entry of an internal iterator, first to last, as py_entry() tuples."""
    it.py_seek_to_first()
    out = []
    while it.py_valid():
        out.append(it.py_entry())
        it.py_next()
    return out


def scan_reverse(it):
    """Every entry of an internal iterator, last to first."""
    it.py_seek_to_last()
    out = []
    while it.py_valid():
        out.append(it.py_entry())
        it.py_prev()
    return out


def recv_at_least(sock, n):
    """Everything read from sock until at least n bytes came (AssertionError if it
    closes first); a reply longer than expected shows in the caller's comparison."""
    got = bytearray()
    while len(got) < n:
        chunk = sock.recv(1 << 20)
        assert chunk, f"the connection closed after {len(got)} of {n} bytes"
        got += chunk
    return bytes(got)


@pytest.fixture(scope="module")
def redis_port(tmp_path_factory):
    """A redis-server of the test module (persistence off) on 127.0.0.1, or skip:
    what the server tests' byte-for-byte comparisons run against."""
    import shutil
    import socket
    import subprocess
    import time
    from lsmkv.server.proc import free_port
    exe = shutil.which("redis-server")
    if exe is None:
        pytest.skip("redis-server is not on PATH")
    port = free_port()
    p = subprocess.Popen([exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                          "--appendonly", "no", "--dir", str(tmp_path_factory.mktemp("redis"))],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or p.poll() is not None:
                    pytest.skip("redis-server did not start")
                time.sleep(0.05)
        yield port
    finally:
        p.terminate()
        p.wait(10)
