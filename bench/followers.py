"""One writer and several reader processes on one database: lsmkv (read-only readers)
beside LMDB (read transactions), and a secondary's catch_up() latency (issue 20;
docs/benchmarks.md, "Several processes").

    python bench/followers.py                    # 1M keys, 4 readers, 5 s phases
    python bench/followers.py --num 200000 --readers 2 --seconds 3

For each engine: a fresh database of --num random keys (16-byte keys, 100-byte
values, loaded and then flushed/synced), then two timed phases of --seconds each:
  alone     the writer process puts random keys (unsynced, one put per call; LMDB:
            one write transaction per put, sync=False as lsmkv's unsynced puts);
  shared    the same writer, with --readers reader processes doing random gets of
            loaded keys (lsmkv: one read_only handle each, opened at the start of
            the phase; LMDB: read transactions of 100 gets each).
It prints puts/s alone and shared, the readers' total gets/s, and the ratios, then
the CPU time each phase's processes used (user + system, getrusage): what the writer
kept of a core with the readers running beside it. --reader_options passes options
(JSON) to lsmkv's read-only readers, e.g. '{"mmap_reads": true}'.

Then the catch_up latency: a writer puts --lat_ops keys, one every millisecond, each
value the time.time_ns() of its put; a secondary process calls catch_up() in a loop
and, for each write that became visible, records now - that time; p50 and p99 are
printed (the time from an acknowledged write to its visibility in the secondary).
"""
import argparse
import json
import os
import random
import resource
import shutil
import struct
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

from bench.engines import engine_available  # noqa: E402

VALUE = random.Random(1).randbytes(50) * 2


def key(i):
    return b"%016d" % i


def cpu_seconds():
    """User + system CPU time this process has used."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def open_engine(name, path, readonly=False, options=None):
    """(put, get, close) for one engine in this process (options: lsmkv's, for readers)."""
    if name == "lsmkv":
        import lsmkv
        db = lsmkv.DB(path, read_only=True, **(options or {})) if readonly else lsmkv.DB(path)
        return db.put, db.get, db.close
    import lmdb
    env = lmdb.open(path, map_size=4 << 30, sync=False, metasync=False, readonly=readonly,
                    lock=True, max_readers=64)

    def put(k, v):
        with env.begin(write=True) as txn:
            txn.put(k, v)
    state = {"txn": None, "n": 0}

    def get(k):
        if state["n"] % 100 == 0:               # a read transaction per 100 gets
            if state["txn"] is not None:
                state["txn"].abort()
            state["txn"] = env.begin()
        state["n"] += 1
        return state["txn"].get(k)

    def close():
        if state["txn"] is not None:
            state["txn"].abort()
        env.close()
    return put, get, close


def load(name, path, num):
    if name == "lsmkv":
        import lsmkv
        with lsmkv.DB(path) as db:
            for i in random.Random(2).sample(range(num), num):
                db.put(key(i), VALUE)
            db.flush()
        return
    import lmdb
    env = lmdb.open(path, map_size=4 << 30, sync=False, metasync=False)
    with env.begin(write=True) as txn:
        for i in random.Random(2).sample(range(num), num):
            txn.put(key(i), VALUE)
    env.sync(True)
    env.close()


def timed(op, num, seconds, seed):
    """Call op(key) on random keys in rounds of 100 for `seconds`; returns (ops,
    seconds taken, how many calls returned something other than None)."""
    rng = random.Random(seed)
    n = hits = 0
    t0 = time.perf_counter()
    end = t0 + seconds
    while True:
        for _ in range(100):
            if op(key(rng.randrange(num))) is not None:
                hits += 1
        n += 100
        if time.perf_counter() >= end:
            return n, time.perf_counter() - t0, hits


def role_writer(name, path, num, seconds, out):
    put, _, close = open_engine(name, path)
    c0 = cpu_seconds()
    n, dt, _ = timed(lambda k: put(k, VALUE), num, seconds, 3)
    cpu = cpu_seconds() - c0
    close()
    with open(out, "w") as fh:
        json.dump({"ops": n, "seconds": dt, "cpu": cpu}, fh)


def role_reader(name, path, num, seconds, out, seed, options):
    _, get, close = open_engine(name, path, readonly=True, options=json.loads(options))
    c0 = cpu_seconds()
    n, dt, found = timed(get, num, seconds, seed)
    cpu = cpu_seconds() - c0
    close()
    with open(out, "w") as fh:
        json.dump({"ops": n, "seconds": dt, "found": found, "cpu": cpu}, fh)


def role_lat_writer(path, ops):
    import lsmkv
    with lsmkv.DB(path) as db:
        for i in range(ops):
            db.put(b"lat%08d" % i, struct.pack("<q", time.time_ns()))
            time.sleep(0.001)
        db.put(b"lat-done", b"1")


def role_lat_secondary(path, own, out):
    import lsmkv
    lat = []
    with lsmkv.DB(path, secondary=own) as db:
        nxt = 0
        while True:
            db.catch_up()
            now = time.time_ns()
            while True:
                v = db.get(b"lat%08d" % nxt)
                if v is None:
                    break
                lat.append(now - struct.unpack("<q", v)[0])
                nxt += 1
            if db.get(b"lat-done") is not None:
                break
    with open(out, "w") as fh:
        json.dump(lat, fh)


def spawn(*args):
    return subprocess.Popen([sys.executable, "-m", "bench.followers", "--role", *map(str, args)],
                            cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def result(path):
    with open(path) as fh:
        return json.load(fh)


def run_engine(name, a, work):
    path = os.path.join(work, name)
    os.makedirs(path)
    load(name, path, a.num)
    outs = os.path.join(work, name + "-out")
    os.makedirs(outs)
    w = spawn("writer", name, path, a.num, a.seconds, os.path.join(outs, "alone.json"))
    assert w.wait() == 0
    alone = result(os.path.join(outs, "alone.json"))
    opts = a.reader_options if name == "lsmkv" else "{}"
    readers = [spawn("reader", name, path, a.num, a.seconds, os.path.join(outs, f"r{i}.json"), i, opts)
               for i in range(a.readers)]
    w = spawn("writer", name, path, a.num, a.seconds, os.path.join(outs, "shared.json"))
    assert w.wait() == 0 and all(r.wait() == 0 for r in readers)
    shared = result(os.path.join(outs, "shared.json"))
    rs = [result(os.path.join(outs, f"r{i}.json")) for i in range(a.readers)]
    return {"puts_alone": alone["ops"] / alone["seconds"], "puts_shared": shared["ops"] / shared["seconds"],
            "gets": sum(r["ops"] / r["seconds"] for r in rs), "found": sum(r["found"] for r in rs),
            "reads": sum(r["ops"] for r in rs),
            "cpu_alone": alone["cpu"] / alone["seconds"], "cpu_shared": shared["cpu"] / shared["seconds"],
            "cpu_readers": sum(r["cpu"] / r["seconds"] for r in rs)}


def catch_up_latency(a, work):
    path, own = os.path.join(work, "lat"), os.path.join(work, "lat-secondary")
    import lsmkv
    lsmkv.DB(path).close()
    out = os.path.join(work, "lat.json")
    s = spawn("lat_secondary", path, own, out)
    w = spawn("lat_writer", path, a.lat_ops)
    assert w.wait() == 0 and s.wait() == 0
    lat = sorted(result(out))
    return lat


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--num", type=int, default=1000000, help="keys loaded (default %(default)s)")
    ap.add_argument("--readers", type=int, default=4, help="reader processes (default %(default)s)")
    ap.add_argument("--seconds", type=float, default=5.0, help="length of each phase (default %(default)s)")
    ap.add_argument("--lat_ops", type=int, default=2000, help="writes timed for catch_up latency")
    ap.add_argument("--engines", default="lsmkv,lmdb", help="engines (default %(default)s)")
    ap.add_argument("--reader_options", default="{}",
                    help="lsmkv options of the read-only readers, as JSON (default %(default)s)")
    ap.add_argument("--role", nargs="+", default=None, help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    try:
        if not isinstance(json.loads(a.reader_options), dict):
            raise ValueError("not an object")
    except ValueError as e:
        ap.error(f"--reader_options must be a JSON object of lsmkv options, got {a.reader_options!r} ({e})")
    if a.role:
        r = a.role
        if r[0] == "writer":
            role_writer(r[1], r[2], int(r[3]), float(r[4]), r[5])
        elif r[0] == "reader":
            role_reader(r[1], r[2], int(r[3]), float(r[4]), r[5], int(r[6]), r[7])
        elif r[0] == "lat_writer":
            role_lat_writer(r[1], int(r[2]))
        else:
            role_lat_secondary(r[1], r[2], r[3])
        return 0
    work = tempfile.mkdtemp(prefix="lsmkv-followers-")
    try:
        res = {}
        for name in a.engines.split(","):
            ok, why = engine_available(name)
            if not ok:
                print(f"{name}: skipped ({why})")
                continue
            res[name] = m = run_engine(name, a, work)
            print(f"{name:<6} puts/s alone {m['puts_alone']:>10,.0f}  with {a.readers} readers "
                  f"{m['puts_shared']:>10,.0f} ({m['puts_shared'] / m['puts_alone']:.2f}x)  "
                  f"readers' gets/s {m['gets']:>10,.0f} (found {m['found']} of {m['reads']})", flush=True)
            print(f"{'':<6} CPU (cores): writer alone {m['cpu_alone']:.2f}, with readers {m['cpu_shared']:.2f}; "
                  f"the {a.readers} readers together {m['cpu_readers']:.2f}", flush=True)
        if "lsmkv" in res and "lmdb" in res:
            print(f"lsmkv/lmdb readers' gets/s: {res['lsmkv']['gets'] / res['lmdb']['gets']:.2f}x")
        if "lsmkv" in a.engines.split(","):
            lat = catch_up_latency(a, work)
            if lat:
                p = lambda q: lat[min(len(lat) - 1, int(q * len(lat)))] / 1e3   # noqa: E731
                print(f"catch_up latency over {len(lat)} writes: p50 {p(0.5):.0f} us, p99 {p(0.99):.0f} us, "
                      f"max {lat[-1] / 1e3:.0f} us")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
