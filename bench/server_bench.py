#!/usr/bin/env python3
"""lsmkv serve against redis-server, with redis-benchmark, in one run.

    python bench/server_bench.py                    # -t set,get, -c 50, -P 1 and -P 16
    python bench/server_bench.py -n 200000 --rounds 3
    python bench/server_bench.py --connections 1000,10000    # + RSS per connection
    python bench/server_bench.py --help

Targets (each started fresh in its own temporary directory, on 127.0.0.1):
  redis-no-persist   redis-server --appendonly no --save ""
  redis-everysec     redis-server --appendonly yes --appendfsync everysec --save ""
  lsmkv-everysec     lsmkv serve --appendfsync everysec (uvloop when installed)
  lsmkv-asyncio      the same on asyncio's own loop (--loops uvloop,asyncio)

Method: for each round, each target in turn runs `redis-benchmark -t set,get
-n N -c C -P p -r R -d D --csv` for every pipeline depth p; the table shows the
median requests/s over the rounds and the ratio of lsmkv to redis-everysec
(issue 7's target: >= 0.5 at -P 1), then each server's CPU time per request
(utime + stime of its process, /proc/PID/stat, over each redis-benchmark run
of SET and GET: the steadier comparison on a shared machine, where rates move
by tens of percent between runs). redis-benchmark and the server share the
machine's cores, as they do for redis-server, so the comparison is like for
like; absolute numbers depend on the machine's load (say so when quoting them).

--connections N,...: after the throughput runs, a fresh lsmkv server holds N
connections from this process and the RSS above its baseline is reported per
idle connection and per connection holding half a request
(lsmkv/server/proc.py: measure_connections).
"""
import argparse
import csv
import io
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

if __package__ in (None, ""):
    # Run by its path (python bench/this_file.py): Python put bench/ first on sys.path. Drop
    # it and add the repository root, once, last: the package `bench` loads from there, and
    # lsmkv from PYTHONPATH or the environment if it is there, else from this source tree.
    _here = os.path.dirname(os.path.abspath(__file__))
    if sys.path and os.path.abspath(sys.path[0] or os.curdir) == _here:
        del sys.path[0]
    if os.path.dirname(_here) not in sys.path:
        sys.path.append(os.path.dirname(_here))

from lsmkv.server.proc import ServerProcess, free_port, measure_connections  # noqa: E402


def wait_ping(port, proc, timeout=20):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                s.sendall(b"PING\r\n")
                if s.recv(64).startswith(b"+PONG"):
                    return
        except OSError:
            pass
        time.sleep(0.05)
    raise RuntimeError("server did not answer PING")


class RedisTarget:
    def __init__(self, name, extra):
        self.name = name
        self.extra = extra

    def start(self, tmp):
        self.port = free_port()
        self.dir = tempfile.mkdtemp(dir=tmp)
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--dir", self.dir, "--daemonize", "no", "--protected-mode", "no", *self.extra],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_ping(self.port, self.proc)
        self.pid = self.proc.pid

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=60)


class LsmkvTarget:
    def __init__(self, name, extra):
        self.name = name
        self.extra = extra

    def start(self, tmp):
        self.server = ServerProcess(tempfile.mkdtemp(dir=tmp) + "/db", *self.extra)
        self.port = self.server.port
        self.pid = self.server.pid

    def stop(self):
        code, log = self.server.terminate(timeout=120)
        if code != 0:
            raise RuntimeError(f"lsmkv serve exited {code}: {log}")


def cpu_seconds(pid):
    """User + system CPU seconds of process pid so far (/proc/PID/stat)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_benchmark(port, args, pipeline):
    cmd = ["redis-benchmark", "-h", "127.0.0.1", "-p", str(port), "-t", "set,get",
           "-n", str(args.requests), "-c", str(args.clients), "-P", str(pipeline),
           "-r", str(args.keyspace), "-d", str(args.data_size), "--csv"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
    if r.returncode != 0:
        raise RuntimeError(f"redis-benchmark failed: {r.stderr}")
    out = {}
    for row in csv.reader(io.StringIO(r.stdout)):
        if row and row[0] in ("SET", "GET"):
            out[row[0]] = float(row[1])
    return out


def print_table(args, cols, results, cpu=None):
    print(f"\nredis-benchmark -c {args.clients} -n {args.requests} -r {args.keyspace} "
          f"-d {args.data_size}, median of {args.rounds} round(s), requests/s; "
          f"load average {os.getloadavg()[0]:.2f}")
    head = f"{'target':<20}" + "".join(f"{f'{t} -P {pl}':>14}" for t, pl in cols)
    print(head)
    med = {n: {c: statistics.median(v) for c, v in r.items()} for n, r in results.items()}
    for n in med:
        print(f"{n:<20}" + "".join(f"{med[n].get(c, 0):>14,.0f}" for c in cols))
    if "redis-everysec" in med:
        for n in med:
            if n.startswith("lsmkv"):
                ratio = "".join(f"{med[n][c] / med['redis-everysec'][c]:>13.2f}x" for c in cols)
                print(f"{n + ' / everysec':<20}" + ratio)
    if cpu:
        pls = sorted({pl for _, pl in cols})
        print(f"\nserver CPU per request (us, SET and GET together), median of {args.rounds} round(s)")
        print(f"{'target':<20}" + "".join(f"{f'-P {pl}':>14}" for pl in pls))
        for n, by in cpu.items():
            print(f"{n:<20}" + "".join(f"{statistics.median(by[pl]):>14.2f}" if pl in by else f"{'-':>14}"
                                       for pl in pls))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("-n", "--requests", type=int, default=100000, help="requests per test (default 100000)")
    p.add_argument("-c", "--clients", type=int, default=50, help="parallel connections (default 50)")
    p.add_argument("-P", "--pipelines", default="1,16", help="pipeline depths (default 1,16)")
    p.add_argument("-r", "--keyspace", type=int, default=100000, help="random keys (default 100000)")
    p.add_argument("-d", "--data-size", type=int, default=3, help="value bytes (default 3, as redis-benchmark)")
    p.add_argument("--rounds", type=int, default=1, help="repeat everything; the median is shown")
    p.add_argument("--loops", default="uvloop", help="lsmkv event loops: uvloop,asyncio (default uvloop)")
    p.add_argument("--targets", default="redis-no-persist,redis-everysec,lsmkv",
                   help="which targets (default all)")
    p.add_argument("--connections", default="", help="also measure RSS per connection at these counts")
    args = p.parse_args(argv)
    if shutil.which("redis-benchmark") is None:
        sys.exit("server_bench: redis-benchmark is not installed (Debian: apt-get install redis-tools)")
    pipelines = [int(x) for x in args.pipelines.split(",") if x]
    want = set(args.targets.split(","))
    targets = []
    if shutil.which("redis-server") is None:
        print("server_bench: redis-server is not installed (Debian: apt-get install redis-server); "
              "lsmkv alone", file=sys.stderr)
    else:
        if "redis-no-persist" in want:
            targets.append(RedisTarget("redis-no-persist", ["--appendonly", "no"]))
        if "redis-everysec" in want:
            targets.append(RedisTarget("redis-everysec", ["--appendonly", "yes", "--appendfsync", "everysec"]))
    if "lsmkv" in want:
        for loop in args.loops.split(","):
            extra = ["--appendfsync", "everysec"] + (["--no-uvloop"] if loop == "asyncio" else [])
            targets.append(LsmkvTarget(f"lsmkv-{loop}", extra))
    results = {t.name: {} for t in targets}       # name -> (test, P) -> [rps]
    cpu = {t.name: {} for t in targets}           # name -> P -> [us of server CPU per request]
    with tempfile.TemporaryDirectory(prefix="server_bench-") as tmp:
        for rnd in range(args.rounds):
            for t in targets:
                t.start(tmp)
                try:
                    for pl in pipelines:
                        c0 = cpu_seconds(t.pid)
                        rates = run_benchmark(t.port, args, pl)
                        used = cpu_seconds(t.pid) - c0
                        cpu[t.name].setdefault(pl, []).append(used / (len(rates) * args.requests) * 1e6)
                        for test, rps in rates.items():
                            results[t.name].setdefault((test, pl), []).append(rps)
                            print(f"round {rnd + 1} {t.name:<18} {test} -P {pl:<3} {rps:>12,.0f} rps",
                                  file=sys.stderr)
                finally:
                    t.stop()
        cols = [(test, pl) for pl in pipelines for test in ("SET", "GET")]
        if targets:
            print_table(args, cols, results, cpu)
        if args.connections:
            print("\nserver RSS per connection (bytes above the baseline)")
            print(f"{'loop':<10}{'connections':>12}{'per idle':>10}{'per active':>12}")
            for loop in args.loops.split(","):
                extra = ["--no-uvloop"] if loop == "asyncio" else []
                for n in [int(x) for x in args.connections.split(",")]:
                    with ServerProcess(tempfile.mkdtemp(dir=tmp) + "/db", "--maxclients", str(n + 100),
                                       *extra) as s:
                        m = measure_connections("127.0.0.1", s.port, s.pid, n)
                    print(f"{loop:<10}{n:>12}{m['per_idle']:>10.0f}{m['per_active']:>12.0f}")


if __name__ == "__main__":
    main()
