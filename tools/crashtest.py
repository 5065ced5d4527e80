#!/usr/bin/env python3
"""Crash test driver: SIGKILL a stress writer at random moments and at the
engine's kill points (lsmkv/engine/killpoint.py), reopen, and check the DB against
the state the driver expects (docs/reliability.md).

    python tools/crashtest.py --duration 600 --seed 7
    python tools/crashtest.py --cycles 40 --kill-points "wal.switch,current.before_rename"
    python tools/crashtest.py --duration 60 --kill-points none      # random kills only

The writer (a child process, `crashtest.py --child ...`) applies a
deterministic stream of operations, op(seed, i): puts, sync puts, deletes,
puts with a long TTL, range deletes, merges (uint64add) into counters, write
batches (some synced) mixing them, transactions moving an amount between two
accounts (get_for_update of both, two puts, one commit), and now and then
db.flush() or db.compact_range(); the options are tiny (64 KiB
memtables, L0 compaction at 2 files, 256 KiB L1) so background flushes and
compactions run all the time. After each call returns, it appends the op's
index to an "acked" file with one write(2) (a SIGKILL cannot lose or tear it).

Each cycle the driver starts the writer at the first op not yet in its model,
lets it run, and kills it: either after a random delay (SIGKILL from outside;
a few cycles start the clock at spawn so the kill may land during recovery),
or by arming one kill point through LSMKV_KILL_POINTS so the engine kills
itself there (the driver SIGKILLs it at a deadline if the point is not
reached). Then the driver opens the DB itself and checks that its whole
contents equal the model after exactly `acked` ops, or after `acked + 1` (the
one op in flight when the kill came): nothing acknowledged is lost, nothing
deleted comes back, no batch or transaction is half-applied, no merge operand
is lost or applied twice (counters compare whole), and every key with a TTL still
has one (and every key without has none). Any difference, a failure to open,
or a writer that dies any other way is a violation: the summary lists it and
the exit status is 1.
"""
import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

KEYS = 2000
COUNTERS = 100                        # c0000..: merged into (uint64add), never given a TTL
ACCOUNTS = 40                         # a000..: moved between by transactions, sum 0
MERGE_OPERATOR = "uint64add"
TTL_SECONDS = 30 * 24 * 3600          # long: nothing expires during a run
FLUSH_EVERY, COMPACT_EVERY = 509, 1999

# the tiny options of the writer (and of the driver's reopen)
OPTIONS = dict(write_buffer_size=64 * 1024, max_write_buffer_number=3, block_size=1024,
               target_file_size_base=64 * 1024, level0_file_num_compaction_trigger=2,
               max_bytes_for_level_base=256 * 1024, max_bytes_for_level_multiplier=4,
               block_cache_size=256 * 1024, merge_operator=MERGE_OPERATOR)

# default probabilities: frequent points fire after a few occurrences, the
# open-time points (write_snapshot runs once per open) at once
DEFAULT_KILL_POINTS = ("flush.after_table_write:0.3,compaction.before_install:0.5,"
                       "manifest.after_append:0.2,manifest.snapshot_before_sync:1,"
                       "wal.switch:0.15,current.before_rename:1,current.after_rename:1")

MARKER = "lsmkv-killpoint "


# ---------------------------------------------------------------- the op stream

def _key(n):
    return b"k%05d" % n


def _counter(rng):
    return b"c%04d" % rng.randrange(COUNTERS)


def _add(old, delta):
    """uint64add: 8-byte little-endian, wrapping; a missing base is 0."""
    n = int.from_bytes(old, "little") if old is not None else 0
    return ((n + delta) % (1 << 64)).to_bytes(8, "little")


def _moved(src, dst, amount):
    """Two accounts' new values (decimal ASCII; a missing account is 0)."""
    return b"%d" % (int(src or b"0") - amount), b"%d" % (int(dst or b"0") + amount)


def _value(rng, i, tag):
    n = rng.choice([8, 60, 400, 1500])
    return b"%d:%s:" % (i, tag) + rng.randbytes(n // 2) + b"v" * (n - n // 2)   # compresses to ~1/2


def op(seed, i):
    """Op i of the stream for `seed` (a pure function). Forms:
    ("put", key, value, ttl, sync) with ttl None or TTL_SECONDS; ("delete", key, sync);
    ("range", start, stop, sync) (db.delete_range: up to 40 keys);
    ("merge", counter, delta, sync) (db.merge: uint64add of delta);
    ("txn", account, account, amount, sync) (a transfer in one transaction);
    ("batch", [("put", key, value, ttl) | ("delete", key) | ("range", start, stop)
               | ("merge", counter, delta)], sync);
    ("flush",); ("compact",)."""
    if i % COMPACT_EVERY == COMPACT_EVERY - 1:
        return ("compact",)
    if i % FLUSH_EVERY == FLUSH_EVERY - 1:
        return ("flush",)
    rng = random.Random((seed * 1_000_003 + i) * 7919 + 17)
    r = rng.random()
    if r < 0.10:
        ops = []
        for j in range(rng.randint(2, 8)):
            k = _key(rng.randrange(KEYS))
            s = rng.random()
            if s < 0.03:
                a = rng.randrange(KEYS)
                ops.append(("range", _key(a), _key(a + rng.randint(1, 40))))
            elif s < 0.10:
                ops.append(("merge", _counter(rng), rng.randrange(1, 1 << 20)))
            elif s < 0.25:
                ops.append(("delete", k))
            else:
                ops.append(("put", k, _value(rng, i, b"b%d" % j), TTL_SECONDS if s < 0.4 else None))
        return ("batch", ops, rng.random() < 0.2)
    if r < 0.16:
        return ("merge", _counter(rng), rng.randrange(1, 1 << 20), rng.random() < 0.05)
    if r < 0.19:
        a, b = rng.sample(range(ACCOUNTS), 2)
        return ("txn", b"a%03d" % a, b"a%03d" % b, rng.randrange(1, 1000), rng.random() < 0.1)
    k = _key(rng.randrange(KEYS))
    if r < 0.205:
        return ("range", k, _key(int(k[1:]) + rng.randint(1, 40)), rng.random() < 0.05)
    if r < 0.30:
        return ("delete", k, rng.random() < 0.05)
    if r < 0.37:
        return ("put", k, _value(rng, i, b"t"), TTL_SECONDS, rng.random() < 0.05)
    return ("put", k, _value(rng, i, b"p"), None, r < 0.40)


def apply(model, seed, i):
    """Apply op i to the model: {key: (value, has_ttl)}."""
    o = op(seed, i)
    if o[0] == "put":
        model[o[1]] = (o[2], o[3] is not None)
    elif o[0] == "delete":
        model.pop(o[1], None)
    elif o[0] == "range":
        _delete_range(model, o[1], o[2])
    elif o[0] == "merge":
        _merge(model, o[1], o[2])
    elif o[0] == "txn":
        src, dst = _moved(model.get(o[1], (None,))[0], model.get(o[2], (None,))[0], o[3])
        model[o[1]], model[o[2]] = (src, False), (dst, False)
    elif o[0] == "batch":
        for b in o[1]:
            if b[0] == "put":
                model[b[1]] = (b[2], b[3] is not None)
            elif b[0] == "range":
                _delete_range(model, b[1], b[2])
            elif b[0] == "merge":
                _merge(model, b[1], b[2])
            else:
                model.pop(b[1], None)


def _merge(model, key, delta):
    model[key] = (_add(model.get(key, (None,))[0], delta), False)


def _delete_range(model, start, stop):
    for k in [k for k in model if start <= k < stop]:
        del model[k]


def run_op(db, seed, i):
    o = op(seed, i)
    kind = o[0]
    if kind == "put":
        db.put(o[1], o[2], ttl=o[3], sync=o[4])
    elif kind == "delete":
        db.delete(o[1], sync=o[2])
    elif kind == "range":
        db.delete_range(o[1], o[2], sync=o[3])
    elif kind == "merge":
        db.merge(o[1], o[2].to_bytes(8, "little"), sync=o[3])
    elif kind == "txn":
        with db.transaction(sync=o[4]) as txn:
            src, dst = _moved(txn.get_for_update(o[1]), txn.get_for_update(o[2]), o[3])
            txn.put(o[1], src)
            txn.put(o[2], dst)
    elif kind == "batch":
        with db.write_batch(sync=o[2]) as wb:
            for b in o[1]:
                if b[0] == "put":
                    wb.put(b[1], b[2], ttl=b[3])
                elif b[0] == "range":
                    wb.delete_range(b[1], b[2])
                elif b[0] == "merge":
                    wb.merge(b[1], b[2].to_bytes(8, "little"))
                else:
                    wb.delete(b[1])
    elif kind == "flush":
        db.flush()
    else:
        db.compact_range()


# ---------------------------------------------------------------- the writer (child)

def import_lsmkv():
    """lsmkv as installed (or as the parent found it, via PYTHONPATH), else the
    source tree this script sits in (built in place)."""
    try:
        import lsmkv
        import lsmkv.core.dbcore  # noqa: F401 - a source tree without built modules fails here
    except ImportError:
        sys.path.insert(0, ROOT)
        for name in [m for m in sys.modules if m == "lsmkv" or m.startswith("lsmkv.")]:
            del sys.modules[name]
        import lsmkv
    return lsmkv


def child_main(dbpath, start, seed, opts_json, acked_path):
    lsmkv = import_lsmkv()
    opts = dict(OPTIONS, **json.loads(opts_json))
    start, seed = int(start), int(seed)
    fd = os.open(acked_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    db = lsmkv.DB(dbpath, **opts)
    os.write(1, b"open\n")
    i = start
    while True:
        run_op(db, seed, i)
        os.write(fd, b"%d\n" % i)
        i += 1


# ---------------------------------------------------------------- the driver

class Violation(Exception):
    pass


def check(db, model, what):
    """Compare the whole DB with model; a description of the first differences or None."""
    got = {}
    for k, v in db.items():
        got[k] = v
    want = {k: v for k, (v, _) in model.items()}
    if got != want:
        missing = [k for k in want if k not in got]
        extra = [k for k in got if k not in want]
        wrong = [k for k in want if k in got and got[k] != want[k]]
        return (f"{what}: {len(missing)} missing {missing[:5]}, {len(extra)} resurrected/extra "
                f"{extra[:5]}, {len(wrong)} wrong {wrong[:5]}")
    for k, (_, has_ttl) in model.items():
        t = db.ttl(k)
        if has_ttl and (t is None or t <= 0):
            return f"{what}: {k!r} lost its TTL (ttl() = {t})"
        if not has_ttl and t is not None:
            return f"{what}: {k!r} has a TTL it was never given ({t})"
    return None


def _read_acked(path, applied):
    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except FileNotFoundError:
        return []
    os.unlink(path)
    lines = data.split(b"\n")
    if lines[-1] != b"":
        raise Violation(f"torn line in the acked file: {lines[-1]!r}")
    done = [int(x) for x in lines[:-1]]
    if done and (done[0] != applied or done != list(range(applied, applied + len(done)))):
        raise Violation(f"acked indices out of order: first {done[:3]}, expected from {applied}")
    return done


def _schedule(cycles, share, points, rng):
    """For each cycle: None (a random-time kill) or the kill point entry to arm.
    Kill-point cycles are spread evenly (share of them), points round robin."""
    order = list(points)
    rng.shuffle(order)
    out, n = [], 0
    for c in range(cycles):
        if points and int((c + 1) * share) > int(c * share):
            out.append(order[n % len(order)])
            n += 1
        else:
            out.append(None)
    return out


def run(dbpath=None, *, seed=1, duration=None, cycles=None, kill_points=DEFAULT_KILL_POINTS,
        kill_point_share=0.5, min_delay=0.05, max_delay=1.0, deadline=4.0, log=print, keep=False):
    """Run kill/reopen cycles until `cycles` are done or `duration` seconds have
    passed. Returns the summary dict (summary["violations"] must be empty)."""
    lsmkv = import_lsmkv()
    from lsmkv.engine import killpoint as kp
    lsmkv_dir = os.path.dirname(os.path.dirname(os.path.abspath(lsmkv.__file__)))

    points = [] if kill_points in (None, "", "none") else \
        [f"{n}:{p}" for n, p in kp.parse(kill_points).items()]
    own_dir = dbpath is None
    if own_dir:
        tmp = tempfile.mkdtemp(prefix="lsmkv-crashtest-")
        dbpath = os.path.join(tmp, "db")
    rng = random.Random(seed)
    max_cycles = cycles if cycles is not None else 10 ** 9
    plan = _schedule(min(max_cycles, 100_000), kill_point_share, points, random.Random(seed + 1))
    t_end = time.monotonic() + duration if duration is not None else None
    acked_path = dbpath.rstrip("/") + ".acked"
    model = {}
    applied = 0
    summary = {"seed": seed, "cycles": 0, "kills": {}, "ops_acked": 0, "in_flight_applied": 0,
               "killed_at_open": 0, "violations": [], "losses": 0, "max_levels": [],
               "flushes_at_check": 0, "seconds": 0.0}
    kills = summary["kills"]
    t0 = time.monotonic()
    c = 0
    try:
        while c < max_cycles and (t_end is None or time.monotonic() < t_end):
            armed = plan[c % len(plan)]
            child_opts = {"wal_mmap": rng.random() < 0.7,
                          "compaction_worker": "process" if rng.random() < 0.6 else "thread",
                          "mmap_reads": rng.random() < 0.8,
                          # a dictionary holds an output's first blocks back (up to 100 x its
                          # size), so without one outputs are cut at the 64 KiB target
                          "compression_dict_bytes": 0 if rng.random() < 0.5 else 16 * 1024}
            env = dict(os.environ)
            # the child imports the lsmkv this process uses (installed, or the source tree)
            env["PYTHONPATH"] = os.pathsep.join(filter(None, [lsmkv_dir, env.get("PYTHONPATH")]))
            env.pop("LSMKV_KILL_POINTS", None)
            if armed:
                env["LSMKV_KILL_POINTS"] = armed
                env["LSMKV_KILL_SEED"] = str(rng.randrange(1 << 30))
            p = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--child", dbpath,
                                  str(applied), str(seed), json.dumps(child_opts), acked_path],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd="/", env=env)
            from_spawn = armed is None and rng.random() < 0.15
            delay = rng.uniform(min_delay, max_delay)
            first = b""
            if from_spawn:
                try:
                    p.wait(timeout=rng.uniform(0.05, 0.4))
                except subprocess.TimeoutExpired:
                    p.kill()
            else:
                first = p.stdout.readline()       # b"" if it died while opening
                if first == b"open\n":
                    try:
                        p.wait(timeout=deadline if armed else delay)
                    except subprocess.TimeoutExpired:
                        p.kill()
            out, err = p.communicate(timeout=120)
            err = err.decode(errors="replace")
            opened = first == b"open\n" or out.startswith(b"open\n")
            if p.returncode != -signal.SIGKILL:
                raise Violation(f"cycle {c}: the writer exited with {p.returncode}, not by SIGKILL:\n{err[-3000:]}")
            point = next((ln[len(MARKER):].strip() for ln in err.splitlines() if ln.startswith(MARKER)), None)
            cause = point if point else ("deadline" if armed else "random")
            kills[cause] = kills.get(cause, 0) + 1
            if not opened:
                summary["killed_at_open"] += 1
            done = _read_acked(acked_path, applied)
            for i in done:
                apply(model, seed, i)
            acked = applied + len(done)
            summary["ops_acked"] += len(done)
            with lsmkv.DB(dbpath, **OPTIONS) as db:
                problem = check(db, model, f"cycle {c} ({cause}), {acked} ops acked")
                if problem is not None:
                    nxt = dict(model)
                    apply(nxt, seed, acked)          # the op in flight may have landed
                    if check(db, nxt, "") is None:
                        model = nxt
                        acked += 1
                        summary["in_flight_applied"] += 1
                    else:
                        summary["losses"] += 1
                        raise Violation(problem)
                st = db.stats()
                if st["background_error"]:
                    raise Violation(f"cycle {c}: background error after reopen: {st['background_error']}")
                levels = [lv["files"] for lv in st["levels"]]
                summary["flushes_at_check"] += st["flushes"]
                if sum(1 for n in levels if n) > sum(1 for n in summary["max_levels"] if n):
                    summary["max_levels"] = levels
            applied = acked
            c += 1
            summary["cycles"] = c
            if log:
                log(f"cycle {c:4d} {cause:30s} acked {len(done):6d} total {applied:8d} keys {len(model)}")
    except Violation as e:
        summary["violations"].append(str(e))
    finally:
        summary["seconds"] = round(time.monotonic() - t0, 1)
        summary["ops_total"] = applied
        if own_dir and not keep and not summary["violations"]:
            shutil.rmtree(os.path.dirname(dbpath), ignore_errors=True)
        elif summary["violations"]:
            summary["dbpath"] = dbpath
    return summary


def format_summary(s):
    lines = [f"crashtest seed {s['seed']}: {s['cycles']} kill/reopen cycles in {s['seconds']} s",
             f"  ops acknowledged: {s['ops_acked']} (stream position {s.get('ops_total', 0)}); "
             f"in-flight op found applied: {s['in_flight_applied']}; killed while opening: "
             f"{s['killed_at_open']}",
             "  kills by cause: " + ", ".join(f"{k}={v}" for k, v in sorted(s["kills"].items())),
             f"  deepest shape seen (files per level): {s['max_levels']}",
             f"  losses: {s['losses']}   violations: {len(s['violations'])}"]
    for v in s["violations"]:
        lines.append("  VIOLATION: " + v)
    if s.get("dbpath"):
        lines.append(f"  the database is kept at {s['dbpath']}")
    return "\n".join(lines)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "--child":
        child_main(*argv[1:6])
        return 0
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=float, default=None, help="seconds to run (default 60 unless --cycles)")
    ap.add_argument("--cycles", type=int, default=None, help="stop after this many cycles")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--kill-points", default=DEFAULT_KILL_POINTS,
                    help="comma list of point[:probability] to arm, one per kill-point cycle; "
                         "'none' for random kills only (default: every point)")
    ap.add_argument("--kill-point-share", type=float, default=0.5,
                    help="fraction of cycles that arm a kill point (default 0.5)")
    ap.add_argument("--max-delay", type=float, default=1.0, help="longest random kill delay, seconds")
    ap.add_argument("--db", default=None, help="database directory (default: a temporary one)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary database")
    ap.add_argument("--quiet", action="store_true", help="no line per cycle")
    a = ap.parse_args(argv)
    duration = a.duration if a.duration is not None or a.cycles is not None else 60.0
    s = run(a.db, seed=a.seed, duration=duration, cycles=a.cycles, kill_points=a.kill_points,
            kill_point_share=a.kill_point_share, max_delay=a.max_delay,
            log=None if a.quiet else print, keep=a.keep)
    print(format_summary(s))
    return 1 if s["violations"] or s["losses"] else 0


if __name__ == "__main__":
    sys.exit(main())
