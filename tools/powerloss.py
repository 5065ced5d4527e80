#!/usr/bin/env python3
"""Power-loss and I/O-error test driver on the fault-injection shim
(tools/faultinject.c, tools/faultinject.py; docs/reliability.md).

    python tools/powerloss.py --duration 300 --seed 7 --allow-holes
    python tools/powerloss.py --cycles 40 --tail pages
    python tools/powerloss.py --faults --rounds 3 --seed 7

Power loss (default): a writer child runs under the shim, is SIGKILLed at a
random moment, everything it did not make durable is dropped, and the DB is
reopened and checked. The writer applies a deterministic stream op(seed, i):
puts of new keys (one key per op, "p%08d"), write batches of 2-5 new keys,
deletes of a key put a few ops earlier (in a batch that also puts a marker key,
so an applied delete is visible), ~4% of writes sync=True, a db.flush() every
701 ops and a db.compact_range() of the last 3,000 ops' keys every 2,503; tiny
options (64 KiB memtables) keep flushes and compactions running. After each
call returns it appends "<i>\\n" to an "acked" file outside the watched tree.
The check (classify()): the DB opens (any exception is a violation: the engine
must recover from a power loss by itself); every value is one an op wrote, no
batch half applied, and the contents equal the state after the ops found
applied; every op up to the last acknowledged durable one (sync write, flush,
compact_range) is applied; and the applied ops form a prefix of the write
order (a gap is a "hole": a violation, or counted with --allow-holes). The next
cycle continues the stream after the last applied op.

I/O errors (--faults, run_faults()): for each FAULT_SITES entry, a child does
the same stream plus reads with one fault rule armed (EIO or ENOSPC at a random
matching call, calibrated by a run that counts the calls); the parent then
clears the fault (sometimes after a power loss), reopens and checks that
nothing acknowledged was lost and no read returned wrong data.
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
sys.path.insert(0, HERE)
import faultinject  # noqa: E402
from crashtest import import_lsmkv  # noqa: E402 - the installed lsmkv, else this source tree's

FLUSH_EVERY, COMPACT_EVERY = 701, 2503
OPTIONS = dict(write_buffer_size=64 * 1024, max_write_buffer_number=3, block_size=1024,
               target_file_size_base=64 * 1024, level0_file_num_compaction_trigger=2,
               max_bytes_for_level_base=256 * 1024, max_bytes_for_level_multiplier=4,
               block_cache_size=256 * 1024)


# ---------------------------------------------------------------- the op stream

def _kind(seed, i):
    if i % COMPACT_EVERY == COMPACT_EVERY - 1:
        return "compact"
    if i % FLUSH_EVERY == FLUSH_EVERY - 1:
        return "flush"
    r = random.Random((seed * 1_000_003 + i) * 7919 + 5).random()
    return "batch" if r < 0.08 else "delete" if r < 0.16 else "put"


def _value(seed, i, j=0):
    rng = random.Random((seed * 1_000_003 + i) * 31 + j)
    n = rng.choice([10, 80, 300, 1200])
    return b"%d.%d:" % (i, j) + rng.randbytes(n // 2) + b"v" * (n - n // 2)


def op(seed, i):
    """Op i: ("put", key, value, sync) | ("batch", [(key, value)], sync) |
    ("delete", key, sync, marker) | ("flush",) | ("compact", start, stop). A pure function.
    A delete is a batch that also puts the key `marker` (value b"x"), so that
    whether it was applied can be seen."""
    kind = _kind(seed, i)
    if kind == "flush":
        return ("flush",)
    if kind == "compact":          # the keys of the last 3,000 ops: a bounded compaction
        return ("compact", b"p%08d" % max(0, i - 3000), b"p%08d" % i)
    rng = random.Random((seed * 1_000_003 + i) * 7919 + 17)
    sync = rng.random() < 0.04
    if kind == "batch":
        return ("batch", [(b"p%08d.%d" % (i, j), _value(seed, i, j)) for j in range(rng.randint(2, 5))], sync)
    if kind == "delete":
        j = i - rng.randint(1, 40)
        while j >= 0 and _kind(seed, j) != "put":
            j -= 1
        if j >= 0:
            return ("delete", b"p%08d" % j, sync, b"d%08d" % i)
    return ("put", b"p%08d" % i, _value(seed, i), sync)


def apply(model, o):
    """Apply op o to model; the keys it touched."""
    if o[0] == "put":
        model[o[1]] = o[2]
        return (o[1],)
    if o[0] == "batch":
        for k, v in o[1]:
            model[k] = v
        return tuple(k for k, _ in o[1])
    if o[0] == "delete":
        model.pop(o[1], None)
        model[o[3]] = b"x"
        return (o[1], o[3])
    return ()


def run_op(db, o):
    if o[0] == "put":
        db.put(o[1], o[2], sync=o[3])
    elif o[0] == "batch":
        with db.write_batch(sync=o[2]) as wb:
            for k, v in o[1]:
                wb.put(k, v)
    elif o[0] == "delete":
        with db.write_batch(sync=o[2]) as wb:
            wb.delete(o[1])
            wb.put(o[3], b"x")
    elif o[0] == "flush":
        db.flush()
    else:
        db.compact_range(o[1], o[2])


def durable_point(o):
    """Does acknowledging op o promise that it and every op before it survive a power
    loss? sync=True writes, flush() and compact_range() (which flushes first)."""
    return o[0] in ("flush", "compact") or (o[0] in ("put", "batch") and o[-1]) or \
        (o[0] == "delete" and o[2])


# ---------------------------------------------------------------- the writer (child)

def child_main(dbpath, start, seed, opts_json, acked_path):
    lsmkv = import_lsmkv()
    opts = dict(OPTIONS, **json.loads(opts_json))
    start, seed = int(start), int(seed)
    fd = os.open(acked_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    db = lsmkv.DB(dbpath, **opts)
    os.write(1, b"open\n")
    i = start
    while True:
        run_op(db, op(seed, i))
        os.write(fd, b"%d\n" % i)
        i += 1


# ---------------------------------------------------------------- the check

class Violation(Exception):
    pass


def classify(state, model, seed, start, stop):
    """Which of ops [start, stop) the DB contents `state` show applied, given `model`
    == the state after op start - 1. Returns (applied, unknown, problems): the op
    indices applied; the flushes/compactions after the last applied op (no visible
    effect); [str] of what is wrong (a value no op wrote, a batch half applied, a
    deleted key back, contents that equal the state after no set of ops).
    A put whose key is absent counts as applied if a delete of that key was (the
    two together leave the same contents)."""
    problems, seen = [], {}
    ops = {j: op(seed, j) for j in range(start, stop)}
    deletes_of = {}
    for j, o in ops.items():
        if o[0] == "delete":
            deletes_of.setdefault(o[1], []).append(j)
    for j, o in ops.items():
        if o[0] == "put":
            v = state.get(o[1])
            if v is not None and v != o[2]:
                problems.append(f"{o[1]!r} holds a value no op wrote")
            seen[j] = v == o[2] or (v is None and any(
                state.get(ops[d][3]) == b"x" for d in deletes_of.get(o[1], ()) if d > j))
        elif o[0] == "batch":
            got = [state.get(k) == v for k, v in o[1]]
            if any(got) and not all(got):
                problems.append(f"batch op {j} half applied: {sum(got)} of {len(got)} keys")
            seen[j] = all(got)
        elif o[0] == "delete":
            seen[j] = state.get(o[3]) == b"x"
            if seen[j] and o[1] in state:
                problems.append(f"{o[1]!r} is back after its delete (op {j}) was applied")
        else:
            seen[j] = None                          # flush / compact: no visible effect
    top = max((j for j, v in seen.items() if v), default=start - 1)
    applied = [j for j, v in seen.items() if v or (v is None and j < top)]
    unknown = [j for j, v in seen.items() if v is None and j > top]
    work = dict(model)
    for j in applied:
        apply(work, ops[j])
    if work != state:
        diff = sorted(k for k in set(work) | set(state) if work.get(k) != state.get(k))
        problems.append(f"the contents equal no set of ops: {len(diff)} keys differ from the "
                        f"applied ops' state, e.g. {diff[:5]}")
    return applied, unknown, problems


def log_ops(dbdir):
    """[(log name, first op, last op)] of the WAL files in dbdir: the op index of each
    record is the largest one its keys name (a delete's marker, not its target)."""
    import re
    from lsmkv.engine.logformat import read_log
    out = []
    for name in sorted(os.listdir(dbdir)):
        if name.endswith(".log"):
            with open(os.path.join(dbdir, name), "rb") as fh:
                data = fh.read()
            try:
                recs = read_log(name, data).records
            except Exception:          # noqa: BLE001 - a diagnosis only
                continue
            idx = [max(int(m) for m in re.findall(rb"[pd](\d{8})", bytes(p))) for _, p in recs
                   if re.search(rb"[pd]\d{8}", bytes(p))]
            if idx:
                out.append((name, min(idx), max(idx)))
    return out


def hole_site(logs, first, last):
    """Where a hole of ops [first, last] lies among the logs: between two logs, or inside one."""
    for (a, _, a_hi), (b, b_lo, _) in zip(logs, logs[1:]):
        if a_hi < first and b_lo > last:
            return f"between {a} (ends at op {a_hi}) and {b} (starts at op {b_lo})"
    for name, lo, hi in logs:
        if lo < first and hi > last:
            return f"inside {name}"
    return "not located in the logs (flushed?)"


def _read_acked(path, start):
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
    if done != list(range(start, start + len(done))):
        raise Violation(f"acked indices out of order: first {done[:3]}, expected from {start}")
    return done


# ---------------------------------------------------------------- the driver

def descendants(pid):
    """Pids of pid's descendants (from /proc), e.g. the engine's compaction workers."""
    parent = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/stat", "rb") as fh:
                    st = fh.read()
            except OSError:
                continue
            parent[int(name)] = int(st[st.rindex(b")") + 2:].split()[1])
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        kids = [c for c, pp in parent.items() if pp == p]
        out += kids
        todo += kids
    return out


def _gone(pid):
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            st = fh.read()
    except OSError:
        return True
    return st[st.rindex(b")") + 2:st.rindex(b")") + 3] in (b"Z", b"X")


def kill_writer(p, timeout=None):
    """Wait up to timeout for p, then SIGKILL it and its descendants (the engine's
    workers die with their parent, PR_SET_PDEATHSIG, but only asynchronously);
    returns once none of them can touch a file any more."""
    try:
        p.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        pass
    kids = descendants(p.pid) if p.poll() is None else []
    if p.poll() is None:
        p.kill()
    out, err = p.communicate(timeout=120)
    for k in kids:
        try:
            os.kill(k, signal.SIGKILL)
        except ProcessLookupError:
            pass
    t = time.monotonic() + 30
    while any(not _gone(k) for k in kids) and time.monotonic() < t:
        time.sleep(0.005)
    return out, err


def run(workdir=None, *, seed=1, duration=None, cycles=None, min_delay=0.1, max_delay=1.0,
        tail="random", allow_holes=False, log=print, keep=False):
    """Kill / power loss / reopen cycles until `cycles` are done or `duration`
    seconds have passed. Returns the summary (summary["violations"] must be empty)."""
    lsmkv = import_lsmkv()
    lsmkv_dir = os.path.dirname(os.path.dirname(os.path.abspath(lsmkv.__file__)))
    own = workdir is None
    if own:
        workdir = tempfile.mkdtemp(prefix="lsmkv-powerloss-")
    fs = faultinject.FaultFS(workdir)
    dbpath = os.path.join(fs.root, "db")
    os.makedirs(dbpath, exist_ok=True)
    fs.reset()
    acked_path = os.path.join(fs.workdir, "acked")
    rng = random.Random(seed)
    t_end = time.monotonic() + duration if duration is not None else None
    max_cycles = cycles if cycles is not None else 10 ** 9
    model, applied, boost = {}, 0, 1
    s = {"seed": seed, "cycles": 0, "ops_acked": 0, "sync_acked": 0, "flush_acked": 0,
         "acked_lost": 0, "in_flight_applied": 0, "stalled_cycles": 0, "killed_at_open": 0, "files_removed": 0,
         "files_restored": 0, "bytes_dropped": 0, "pages_lost": 0, "pages_written_back": 0,
         "syncs": 0, "dir_syncs": 0, "recovery_dropped_bytes": 0, "holes": 0, "hole_ops": 0,
         "hole_examples": [], "hole_sites": {}, "violations": [], "seconds": 0.0}
    t0 = time.monotonic()
    c = 0
    try:
        while c < max_cycles and (t_end is None or time.monotonic() < t_end):
            child_opts = {"wal_mmap": rng.random() < 0.7,
                          "compaction_worker": "process" if rng.random() < 0.4 else "thread",
                          "mmap_reads": rng.random() < 0.5,
                          "compression_dict_bytes": 0 if rng.random() < 0.5 else 16 * 1024}
            env = fs.env()
            env["PYTHONPATH"] = os.pathsep.join(filter(None, [lsmkv_dir, env.get("PYTHONPATH")]))
            p = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--child", dbpath,
                                  str(applied), str(seed), json.dumps(child_opts), acked_path],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd="/", env=env)
            first = b""
            if rng.random() < 0.15:               # the kill may land in recovery
                out, err = kill_writer(p, rng.uniform(0.05, 0.5))
            else:
                first = p.stdout.readline()
                # a cycle that acknowledged nothing (a long compact_range) gets more time next
                out, err = kill_writer(p, rng.uniform(min_delay, max_delay) * boost)
            if p.returncode != -signal.SIGKILL:
                raise Violation(f"cycle {c}: the writer exited with {p.returncode}, not by SIGKILL:\n"
                                f"{err.decode(errors='replace')[-3000:]}")
            if not (first == b"open\n" or out.startswith(b"open\n")):
                s["killed_at_open"] += 1
            done = _read_acked(acked_path, applied)
            if first == b"open\n" or out.startswith(b"open\n"):
                boost = 1 if done else min(boost * 2, 16)
                s["stalled_cycles"] += not done
            cycle_tail = tail if tail != "random" else rng.choice(["truncate", "pages"])
            res = fs.power_loss(random.Random(rng.randrange(1 << 30)), tail=cycle_tail)
            for k, v in res.as_dict().items():
                if k in s:
                    s[k] += v
            ops = [op(seed, i) for i in done]
            s["ops_acked"] += len(done)
            s["sync_acked"] += sum(1 for o in ops if o[0] not in ("flush", "compact") and durable_point(o))
            s["flush_acked"] += sum(1 for o in ops if o[0] in ("flush", "compact"))
            must = max([i + 1 for i, o in zip(done, ops) if durable_point(o)], default=applied)
            issued = applied + len(done) + 1           # the op in flight may have landed
            copy = os.path.join(fs.workdir, "after-power-loss")   # for a post-mortem
            shutil.rmtree(copy, ignore_errors=True)
            shutil.copytree(dbpath, copy)
            try:
                db = lsmkv.DB(dbpath, **OPTIONS)
            except Exception as e:                       # noqa: BLE001 - any failure is the finding
                raise Violation(f"cycle {c} ({cycle_tail}): the DB does not open after the power loss: "
                                f"{type(e).__name__}: {e}") from None
            with db:
                state = dict(db.items())
                s["recovery_dropped_bytes"] += db.stats().get("wal_recovery_dropped_bytes", 0) or 0
            applied_ops, unknown, problems = classify(state, model, seed, applied, issued)
            if problems:
                raise Violation(f"cycle {c} ({cycle_tail}): " + "; ".join(problems[:3]))
            m = applied_ops[-1] + 1 if applied_ops else applied
            gaps = [j for j in range(applied, m) if j not in set(applied_ops)]
            lost = [j for j in gaps if j < must]
            # an op with no visible effect past the last visible one may be durable too
            reach = max([m] + [j + 1 for j in unknown if all(i in unknown for i in range(m, j + 1))])
            if lost or reach < must:
                s["acked_lost"] += 1
                raise Violation(f"cycle {c} ({cycle_tail}): acknowledged durable op {must - 1} lost: "
                                f"ops {(lost or [reach])[:5]} not applied")
            if gaps:
                s["holes"] += 1
                s["hole_ops"] += len(gaps)
                where = hole_site(log_ops(copy), gaps[0], gaps[-1])
                s["hole_sites"][where.split(" ")[0]] = s["hole_sites"].get(where.split(" ")[0], 0) + 1
                s["hole_examples"].append(f"cycle {c}: ops {gaps[0]}..{gaps[-1]} ({len(gaps)}) lost, "
                                          f"op {m - 1} kept; last durable op {must - 1}; {where}")
                if not allow_holes:
                    raise Violation(f"cycle {c} ({cycle_tail}): a hole in the surviving writes: "
                                    + s["hole_examples"][-1])
            for j in applied_ops:
                apply(model, op(seed, j))
            if m == issued:
                s["in_flight_applied"] += 1
            c += 1
            s["cycles"] = c
            if log:
                log(f"cycle {c:4d} {cycle_tail:8s} acked {len(done):6d} kept {m - applied:6d} "
                    f"(must {must - applied:6d}){' HOLE' if gaps else ''} files -{res.as_dict()['files_removed']} "
                    f"+{res.as_dict()['files_restored']} pages lost {res.pages_lost}")
            applied = m
            fs.reset()       # the parent's reopen wrote files: all durable now
    except Violation as e:
        s["violations"].append(str(e))
    finally:
        s["seconds"] = round(time.monotonic() - t0, 1)
        s["ops_total"] = applied
        if own and not keep and not s["violations"]:
            shutil.rmtree(workdir, ignore_errors=True)
        elif s["violations"]:
            s["workdir"] = workdir
    return s


# ---------------------------------------------------------------- injected I/O errors

# (op, path glob, mode): where a fault lands in the engine (docs/reliability.md)
FAULT_SITES = [
    ("write", "*.sst", "once"),          # flush / compaction output
    ("write", "*.log", "once"),          # a WAL record (wal_mmap=False)
    ("write", "MANIFEST-*", "once"),     # a version edit
    ("write", "*", "persistent"),        # the disk is full from here on
    ("fsync", "*.sst", "once"),
    ("fsync", "*.log", "once"),          # sync write (wal_mmap=False), log creation
    ("fsync", "MANIFEST-*", "once"),
    ("fsync", "db", "once"),             # the directory
    ("msync", "*.log", "once"),          # sync write, log close (wal_mmap=True)
    ("fallocate", "*.log", "once"),      # log creation / growth
    ("open", "*.sst", "once"),
    ("open", "*.log", "once"),
    ("pread", "*.sst", "once"),          # table reads (mmap_reads=False)
    ("pread", "*.sst", "persistent"),
    ("read", "*", "once"),               # recovery reads CURRENT, MANIFEST, logs
    ("rename", "*", "once"),             # CURRENT replacement (at open)
    ("unlink", "*", "once"),             # obsolete files
    ("ftruncate", "*.log", "once"),      # log close (wal_mmap=True: drops the preallocated tail)
]
# not listed: fdatasync (the engine calls fsync only); failures of reads through a
# mapping (mmap_reads=True, the WAL's pages) cannot be injected: they raise SIGBUS
FAULT_OPTIONS = dict(OPTIONS, mmap_reads=False, compaction_worker="thread")


def faults_child_main(dbpath, start, count, seed, opts_json, out_path):
    """Run ops [start, start+count) and reads under the shim's fault rules; report
    each op's outcome and each read's to out_path ("A i", "E i Type: msg",
    "G key ok|err Type|WRONG", "BG msg", "OPEN Type: msg", "CLOSE Type: msg", and
    "BGCLOSE msg": a background job failed while close() waited for it, unreported)."""
    lsmkv = import_lsmkv()
    opts = dict(FAULT_OPTIONS, **json.loads(opts_json))
    start, count, seed = int(start), int(count), int(seed)
    fd = os.open(out_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)

    def say(line):
        os.write(fd, (line.replace("\n", " ")[:400] + "\n").encode("utf-8", "replace"))

    try:
        db = lsmkv.DB(dbpath, **opts)
    except Exception as e:                # noqa: BLE001 - reported to the parent
        say(f"OPEN {type(e).__name__}: {e}")
        return
    allowed = {}                          # key -> values a read may return (None: absent)
    rng = random.Random(seed + start)
    refused = 0
    for i in range(start, start + count):
        o = op(seed, i)
        effects = []
        if o[0] == "put":
            effects = [(o[1], o[2])]
        elif o[0] == "batch":
            effects = list(o[1])
        elif o[0] == "delete":
            effects = [(o[1], None), (o[3], b"x")]
        try:
            run_op(db, o)
        except Exception as e:            # noqa: BLE001 - the outcome is what is tested
            say(f"E {i} {type(e).__name__}: {e}")
            for k, v in effects:          # a failed write may or may not have landed
                allowed[k] = allowed.get(k, {None}) | {v}
            if isinstance(e, lsmkv.errors.BackgroundError):
                refused += 1
                if refused >= 3:
                    break
            continue
        say(f"A {i}")
        for k, v in effects:
            allowed[k] = {v}
        if i % 5 == 0 and allowed:
            k = rng.choice(list(allowed))
            try:
                got = db.get(k)
            except Exception as e:        # noqa: BLE001
                say(f"G {k.decode()} err {type(e).__name__}: {e}")
            else:
                say(f"G {k.decode()} {'ok' if got in allowed[k] else 'WRONG'}")
    bg = db.stats()["background_error"]
    if bg:
        say(f"BG {bg}")
    try:
        db.close()
    except Exception as e:                # noqa: BLE001
        say(f"CLOSE {type(e).__name__}: {e}")
    if db.bg_error is not None and not bg:   # background work close() waited for failed
        say(f"BGCLOSE {db.bg_error}")


def run_faults(workdir=None, *, seed=1, rounds=2, count=1500, sites=None, powerloss_share=0.3,
               log=print, keep=False):
    """For each fault site (FAULT_SITES), `rounds` runs of a child that does
    `count` ops with the fault armed at a random nth matching call (EIO or ENOSPC);
    then the parent reopens the DB without the fault (or first applies a
    simulated power loss, in a share of the runs) and checks it."""
    lsmkv = import_lsmkv()
    lsmkv_dir = os.path.dirname(os.path.dirname(os.path.abspath(lsmkv.__file__)))
    own = workdir is None
    if own:
        workdir = tempfile.mkdtemp(prefix="lsmkv-ioerrors-")
    fs = faultinject.FaultFS(workdir)
    rng = random.Random(seed)
    s = {"seed": seed, "runs": 0, "faults": 0, "runs_without_fault": [], "ops_acked": 0,
         "ops_failed": 0, "caller_errors": {}, "background_errors": 0, "open_errors": 0,
         "close_errors": 0, "bg_at_close": 0, "retries": 0, "reads": 0, "read_errors": 0, "wrong_reads": 0, "power_losses": 0,
         "acked_lost": 0, "violations": [], "by_site": {}, "seconds": 0.0}
    t0 = time.monotonic()
    out_path = os.path.join(fs.workdir, "outcomes")
    sites = sites or FAULT_SITES
    s["calls"] = {}

    def fresh_db():
        dbpath = os.path.join(fs.root, "db")
        shutil.rmtree(dbpath, ignore_errors=True)
        os.makedirs(dbpath)
        # a DB with some history: tables, a MANIFEST, a log to replay
        with lsmkv.DB(dbpath, **FAULT_OPTIONS) as db:
            for i in range(400):
                run_op(db, op(seed, i))
        fs.reset()
        return dbpath

    def start_child(dbpath, child_opts, env):
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [lsmkv_dir, env.get("PYTHONPATH")]))
        if os.path.exists(out_path):
            os.unlink(out_path)
        return subprocess.Popen([sys.executable, os.path.abspath(__file__), "--faults-child", dbpath,
                                 "400", str(count), str(seed), json.dumps(child_opts), out_path],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd="/", env=env)

    # calibration: how many calls each site matches in this workload (nothing fails)
    for wal_mmap in (True, False):
        dbpath = fresh_db()
        fs.clear_rules()
        rules = ";".join(faultinject.rule(o, g, 10 ** 9) for o, g, _ in sites)
        p = start_child(dbpath, {"wal_mmap": wal_mmap}, fs.env(rules=rules))
        _, err = p.communicate(timeout=120)
        if p.returncode != 0:
            raise RuntimeError(f"calibration run failed ({p.returncode}):\n{err.decode(errors='replace')}")
        counts = fs.rule_counts()
        for i, (o, g, _) in enumerate(sites):
            s["calls"][(o, g, wal_mmap)] = counts.get(i, 0)
    try:
        for site in sites:
            op_name, glob, mode = site
            for r in range(rounds):
                child_opts = {"wal_mmap": rng.random() < 0.5}
                if op_name == "msync":
                    child_opts["wal_mmap"] = True
                if op_name in ("write", "fsync") and glob == "*.log":
                    child_opts["wal_mmap"] = False
                if op_name in ("fallocate", "ftruncate"):
                    child_opts["wal_mmap"] = True
                calls = s["calls"][(op_name, glob, child_opts["wal_mmap"])]
                errno_name = "ENOSPC" if (r + len(op_name)) % 2 else "EIO"
                what = f"{op_name} {glob} {errno_name} {mode} wal_mmap={child_opts['wal_mmap']}"
                site_s = s["by_site"].setdefault(" ".join(site), {"runs": 0, "faults": 0, "calls": calls,
                                                                  "outcomes": {}})
                if calls == 0:
                    s["runs_without_fault"].append(what + " (no matching call)")
                    continue
                nth = rng.randint(1, calls)
                model = {}
                for i in range(400):
                    apply(model, op(seed, i))
                for attempt in range(3):      # the calls vary with timing: halve nth if none fired
                    dbpath = fresh_db()
                    fs.set_rules(faultinject.rule(op_name, glob, nth, errno_name, mode))
                    p = start_child(dbpath, child_opts, fs.env())
                    try:
                        _, err = p.communicate(timeout=90)
                    except subprocess.TimeoutExpired:
                        kill_writer(p, 0)
                        raise Violation(f"{what} nth={nth}: the child hung (no exit within 90 s)") from None
                    if p.returncode != 0:
                        raise Violation(f"{what} nth={nth}: the child died with {p.returncode}:\n"
                                        f"{err.decode(errors='replace')[-3000:]}")
                    if fs.faults() or nth == 1:
                        break
                    nth = max(1, nth // 2)
                    s["retries"] += 1
                what += f" nth={nth}/{calls}"
                with open(out_path, encoding="utf-8") as fh:
                    lines = fh.read().splitlines()
                faults = fs.faults()
                s["faults"] += len(faults)
                if not faults:
                    s["runs_without_fault"].append(what)
                site_s["runs"] += 1
                site_s["faults"] += len(faults)
                acked, failed = [], []
                for ln in lines:
                    tag, _, rest = ln.partition(" ")
                    if tag == "A":
                        acked.append(int(rest))
                    elif tag == "E":
                        i, _, msg = rest.partition(" ")
                        failed.append(int(i))
                        kind = msg.split(":")[0]
                        s["caller_errors"][kind] = s["caller_errors"].get(kind, 0) + 1
                        site_s["outcomes"][kind] = site_s["outcomes"].get(kind, 0) + 1
                        if kind not in ("OSError", "BackgroundError", "FileNotFoundError", "CorruptionError"):
                            raise Violation(f"{what}: op {i} raised {msg}, not an OSError or lsmkv error")
                        if kind == "BackgroundError" and "background" not in msg:
                            raise Violation(f"{what}: unclear background-error message: {msg}")
                    elif tag == "G":
                        s["reads"] += 1
                        if " err " in ln:
                            s["read_errors"] += 1
                            kind = ln.split(" err ", 1)[1].split(":")[0]
                            if kind not in ("OSError", "CorruptionError", "FileNotFoundError"):
                                raise Violation(f"{what}: a read raised {ln}")
                        elif ln.endswith("WRONG"):
                            s["wrong_reads"] += 1
                            raise Violation(f"{what}: a read returned wrong data: {ln}")
                    elif tag == "BG":
                        s["background_errors"] += 1
                        site_s["outcomes"]["background_error"] = site_s["outcomes"].get("background_error", 0) + 1
                    elif tag == "OPEN":
                        s["open_errors"] += 1
                        site_s["outcomes"]["open_error"] = site_s["outcomes"].get("open_error", 0) + 1
                    elif tag == "CLOSE":
                        s["close_errors"] += 1
                        site_s["outcomes"]["close_error"] = site_s["outcomes"].get("close_error", 0) + 1
                    elif tag == "BGCLOSE":
                        s["bg_at_close"] += 1
                        site_s["outcomes"]["bg_error_during_close"] = \
                            site_s["outcomes"].get("bg_error_during_close", 0) + 1
                s["ops_acked"] += len(acked)
                s["ops_failed"] += len(failed)
                last = max(acked + failed, default=399)
                lose_power = rng.random() < powerloss_share
                if lose_power:
                    fs.power_loss(random.Random(rng.randrange(1 << 30)), tail="pages")
                    s["power_losses"] += 1
                fs.clear_rules()
                try:
                    with lsmkv.DB(dbpath, **FAULT_OPTIONS) as db:
                        state = dict(db.items())       # every block read and checksummed
                except Exception as e:                   # noqa: BLE001
                    raise Violation(f"{what}: the DB does not open once the fault is cleared"
                                    f"{' (after a power loss)' if lose_power else ''}: "
                                    f"{type(e).__name__}: {e}") from None
                applied, unknown, problems = classify(state, model, seed, 400, last + 1)
                if problems:
                    raise Violation(f"{what}: " + "; ".join(problems[:3]))
                must = [i for i in acked if not lose_power or durable_point(op(seed, i))]
                need = max(must, default=-1)
                if lose_power:                 # a durable op promises every op before it
                    must = [i for i in acked if i <= need]
                applied = set(applied) | set(unknown)
                missing = [i for i in must if i not in applied]
                if missing:
                    s["acked_lost"] += len(missing)
                    raise Violation(f"{what}: acknowledged ops lost{' after a power loss' if lose_power else ''}: "
                                    f"{missing[:5]} ({len(missing)})")
                s["runs"] += 1
                if log:
                    log(f"{what:60s} faults {len(faults):3d} acked {len(acked):5d} failed {len(failed):5d} "
                        f"{','.join(sorted(set(os.path.basename(f[2]) for f in faults)))[:40]}"
                        f"{' +power loss' if lose_power else ''} {sorted(set(l.split(' ')[0] for l in lines))}")
    except Violation as e:
        s["violations"].append(str(e))
    finally:
        s["seconds"] = round(time.monotonic() - t0, 1)
        if own and not keep and not s["violations"]:
            shutil.rmtree(workdir, ignore_errors=True)
        elif s["violations"]:
            s["workdir"] = workdir
    return s


def format_faults_summary(s):
    lines = [f"ioerrors seed {s['seed']}: {s['runs']} runs (+{s['retries']} retried with a smaller nth), "
             f"{s['faults']} faults injected in {s['seconds']} s",
             f"  ops acknowledged {s['ops_acked']}, failed {s['ops_failed']} "
             f"({', '.join(f'{k} {v}' for k, v in sorted(s['caller_errors'].items()))}); "
             f"background-error state {s['background_errors']} runs; open failed {s['open_errors']}; "
             f"close failed {s['close_errors']}; background job failed during close (not reported "
             f"by close) {s['bg_at_close']}",
             f"  reads {s['reads']}: errors {s['read_errors']}, wrong data {s['wrong_reads']}; "
             f"power losses after the fault {s['power_losses']}",
             f"  acknowledged ops lost: {s['acked_lost']}   violations: {len(s['violations'])}"]
    for site, v in s["by_site"].items():
        lines.append(f"    {site:28s} calls {v['calls']:5d} runs {v['runs']} faults {v['faults']:3d} "
                     + ", ".join(f"{k} {n}" for k, n in sorted(v["outcomes"].items())))
    if s["runs_without_fault"]:
        lines.append(f"  runs whose fault never fired: {len(s['runs_without_fault'])}: "
                     + "; ".join(s["runs_without_fault"][:6]))
    for v in s["violations"]:
        lines.append("  VIOLATION: " + v)
    if s.get("workdir"):
        lines.append(f"  the files are kept in {s['workdir']}")
    return "\n".join(lines)


def format_summary(s):
    lines = [f"powerloss seed {s['seed']}: {s['cycles']} kill/power-loss/reopen cycles in {s['seconds']} s",
             f"  ops acknowledged: {s['ops_acked']} (sync writes {s['sync_acked']}, flushes and "
             f"compact_range calls {s['flush_acked']}); stream position {s.get('ops_total', 0)}; in-flight op found "
             f"applied: {s['in_flight_applied']}; killed while opening: {s['killed_at_open']}; "
             f"cycles with nothing acknowledged after the open: {s['stalled_cycles']}",
             f"  dropped by the power loss: {s['files_removed']} files, {s['bytes_dropped']} bytes of "
             f"write() files, {s['pages_lost']} WAL pages (and {s['pages_written_back']} unsynced "
             f"pages kept); {s['files_restored']} unlinked/renamed files back",
             f"  journal: {s['syncs']} file syncs, {s['dir_syncs']} directory syncs; WAL bytes "
             f"dropped at recovery: {s['recovery_dropped_bytes']}",
             f"  cycles with a hole (unsynced writes lost before a kept one): {s['holes']} "
             f"({s['hole_ops']} ops); where: {s['hole_sites']}",
             f"  acknowledged durable ops lost: {s['acked_lost']}   violations: {len(s['violations'])}"]
    for h in s["hole_examples"][:5]:
        lines.append("  hole: " + h)
    for v in s["violations"]:
        lines.append("  VIOLATION: " + v)
    if s.get("workdir"):
        lines.append(f"  the files are kept in {s['workdir']}")
    return "\n".join(lines)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "--child":
        child_main(*argv[1:6])
        return 0
    if argv and argv[0] == "--faults-child":
        faults_child_main(*argv[1:7])
        return 0
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=float, default=None, help="seconds to run (default 60 unless --cycles)")
    ap.add_argument("--cycles", type=int, default=None, help="stop after this many cycles")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--tail", choices=["random", "truncate", "pages"], default="random",
                    help="unsynced tails of write() files: cut at the synced size, keep a random "
                         "page prefix, or pick per cycle (default)")
    ap.add_argument("--max-delay", type=float, default=1.0, help="longest kill delay, seconds")
    ap.add_argument("--workdir", default=None, help="directory for the DB and the journal (default: temporary)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory")
    ap.add_argument("--allow-holes", action="store_true",
                    help="count holes in the surviving unsynced writes instead of stopping at the "
                         "first (the engine bug described in docs/reliability.md)")
    ap.add_argument("--quiet", action="store_true", help="no line per cycle")
    ap.add_argument("--faults", action="store_true",
                    help="inject I/O errors instead (each fault site --rounds times)")
    ap.add_argument("--rounds", type=int, default=2, help="--faults: runs per fault site")
    a = ap.parse_args(argv)
    if a.faults:
        s = run_faults(a.workdir, seed=a.seed, rounds=a.rounds, log=None if a.quiet else print,
                       keep=a.keep)
        print(format_faults_summary(s))
        return 1 if s["violations"] else 0
    duration = a.duration if a.duration is not None or a.cycles is not None else 60.0
    s = run(a.workdir, seed=a.seed, duration=duration, cycles=a.cycles, max_delay=a.max_delay,
            tail=a.tail, allow_holes=a.allow_holes, log=None if a.quiet else print, keep=a.keep)
    print(format_summary(s))
    return 1 if s["violations"] else 0


if __name__ == "__main__":
    sys.exit(main())
