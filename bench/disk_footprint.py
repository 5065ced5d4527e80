"""Disk footprint after db_bench's fillrandom + overwrite: lsmkv beside rocksdict.

Each engine runs in a process of its own (this script with --child NAME): a fresh DB,
db_bench's fillrandom then overwrite (the same keys, values and random choices as
bench/db_bench.py with the same --num and --seed: bench.data.Data and db_bench's
defaults, 16-byte keys, 100-byte values half compressible), each followed by a flush and
a close, the DB reopened between them, as db_bench runs them. Then:

  * disk: the bytes of every file in the directory (bench.stats.dir_bytes, what
    db_bench prints as "on disk after flush+close"), and by kind (tables, logs, other);
  * CPU seconds (user + system) of the fill, of the process and of its waited-for
    children (lsmkv's compaction worker process; rocksdict compacts in threads);
  * lsmkv: its tables by level and what their bytes are (data blocks, dictionary,
    filter, index, properties, footer: lsmkv.cli.tools.table_layout);
  * with --reads N: N random gets after a reopen (keys drawn as db_bench's readrandom),
    their CPU seconds (with --compact, after a full compaction into the last level, whose
    CPU seconds are reported too).

The disk bytes depend on how far background compaction got before the close (both
engines finish a running compaction at close and start none), so they vary a little
between runs; the ratio is what the script prints last. CPU seconds, not wall time:
the machines these run on are shared.

    python -m bench.disk_footprint                   # 1M keys, lsmkv and rocksdict
    python -m bench.disk_footprint --num 200000 --engines lsmkv --reads 200000
    LSMKV_BENCH_OPTIONS='{"bottommost_compression_level": 3}' python -m bench.disk_footprint
"""
import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile

if __package__ in (None, ""):
    # Run by its path: drop bench/ from sys.path, add the repository root last (see db_bench.py).
    _here = os.path.dirname(os.path.abspath(__file__))
    if sys.path and os.path.abspath(sys.path[0] or os.curdir) == _here:
        del sys.path[0]
    if os.path.dirname(_here) not in sys.path:
        sys.path.append(os.path.dirname(_here))

from bench.data import Data  # noqa: E402
from bench.db_bench import parse_args as db_bench_args  # noqa: E402
from bench.engines import ENGINE_CLASSES  # noqa: E402
from bench.stats import dir_bytes  # noqa: E402

MB = 1e6


def cpu_seconds():
    """(this process, its waited-for children): user + system CPU seconds."""
    s = resource.getrusage(resource.RUSAGE_SELF)
    c = resource.getrusage(resource.RUSAGE_CHILDREN)
    return s.ru_utime + s.ru_stime, c.ru_utime + c.ru_stime


def by_kind(path):
    """Bytes of the directory's files: tables, logs, the rest."""
    out = {"tables": 0, "logs": 0, "other": 0}
    for name in os.listdir(path):
        size = os.lstat(os.path.join(path, name)).st_size
        kind = "tables" if name.endswith(".sst") else "logs" if name.endswith(".log") else "other"
        out[kind] += size
    return out


def lsmkv_tables(path):
    """Per live table: level, size and layout (lsmkv only; reads the MANIFEST)."""
    from lsmkv.cli.tools import table_layout
    from lsmkv.core.table import TableReader
    from lsmkv.engine import filenames
    from lsmkv.engine.logformat import read_log
    from lsmkv.engine.version import VersionEdit
    with open(os.path.join(path, "CURRENT")) as fh:
        manifest = os.path.join(path, fh.read().strip())
    with open(manifest, "rb") as fh:
        data = fh.read()
    live = {}
    for off, payload in read_log(manifest, data, wal=False).records:
        e = VersionEdit.decode(payload, manifest, off)
        for _, number in e.deleted:
            live.pop(number, None)
        for level, f in e.added:
            live[f.number] = level
    tables = []
    for number, level in sorted(live.items()):
        t = TableReader(filenames.table_name(path, number), number, None, True)
        try:
            tables.append({"number": number, "level": level, "bytes": t.file_size,
                           "entries": t.properties.get("num_entries", 0),
                           "dictionary": t.zdict is not None, "layout": table_layout(t)})
        finally:
            t.close()
    return tables


def child(args):
    """One engine: fill, measure, optionally read. Prints one JSON line."""
    dba = db_bench_args(["--num", str(args.num), "--seed", str(args.seed)])
    engine = ENGINE_CLASSES[args.child](dba)
    data = Data(dba)
    path = args.db
    engine.open(path)
    res = {"engine": args.child, "settings": {k: str(v) for k, v in engine.settings().items()}}
    c0 = cpu_seconds()
    for name in ("fillrandom", "overwrite"):     # each as db_bench runs it: then flush, close, measure
        if name != "fillrandom":
            engine.open(path)
        idx = data.random_indices(data.rng(name), args.num)
        put = engine.op_put()
        keys = data.keys
        for i, v in zip(idx, data.values(args.num)):
            put(keys[i], v)
        engine.flush()
        engine.close()
        res[f"{name}_disk_bytes"] = dir_bytes(path)[0]
    c1 = cpu_seconds()
    res["fill_cpu"] = {"self": c1[0] - c0[0], "children": c1[1] - c0[1]}
    res["disk_bytes"], _, res["disk_files"] = dir_bytes(path)
    res["by_kind"] = by_kind(path)
    if args.child == "lsmkv":
        res["tables"] = lsmkv_tables(path)
    if args.reads:
        engine.open(path)
        if args.compact:
            c2 = cpu_seconds()
            engine.db.compact_range(None, None)
            engine.close()       # lsmkv: waits for its worker process, whose CPU time then counts
            c3 = cpu_seconds()
            res["compact_cpu"] = {"self": c3[0] - c2[0], "children": c3[1] - c2[1]}
            res["compacted_disk_bytes"] = dir_bytes(path)[0]
            engine.open(path)
            if args.child == "lsmkv":
                res["compacted_tables"] = lsmkv_tables(path)
        idx = data.random_indices(data.rng("readrandom"), args.reads)
        get = engine.op_get()
        keys = [data.keys[i] for i in idx]
        c2 = cpu_seconds()
        found = sum(get(k) is not None for k in keys)
        c3 = cpu_seconds()
        res["reads"] = {"ops": args.reads, "found": found, "cpu_self": c3[0] - c2[0]}
        engine.close()
    print(json.dumps(res))
    return 0


def summarize(tables):
    """Per level: files, bytes, entries, and the layout's parts summed."""
    levels = {}
    for t in tables:
        lv = levels.setdefault(t["level"], {"files": 0, "bytes": 0, "entries": 0, "dict_files": 0})
        lv["files"] += 1
        lv["bytes"] += t["bytes"]
        lv["entries"] += t["entries"]
        lv["dict_files"] += t["dictionary"]
        for k, v in t["layout"].items():
            lv[k] = lv.get(k, 0) + v
    return levels


def print_tables(title, tables):
    print(f"  {title}:")
    parts = ("data", "dictionary", "filter", "index", "properties", "footer")
    for level, lv in sorted(summarize(tables).items()):
        print(f"    L{level}: {lv['files']} files ({lv['dict_files']} with a dictionary), "
              f"{lv['bytes'] / MB:.2f} MB, {lv['entries']} entries; "
              + ", ".join(f"{p} {lv.get(p, 0) / MB:.3f}" for p in parts) + " MB")


def report(res):
    print(f"{res['engine']}: disk {res['disk_bytes'] / MB:.2f} MB in {res['disk_files']} files "
          f"(after fillrandom {res['fillrandom_disk_bytes'] / MB:.2f} MB) "
          f"({', '.join(f'{k} {v / MB:.2f}' for k, v in res['by_kind'].items())} MB); fill CPU "
          f"{res['fill_cpu']['self']:.1f} s + children {res['fill_cpu']['children']:.1f} s")
    if "tables" in res:
        print_tables("tables after the fill", res["tables"])
    if "compacted_disk_bytes" in res:
        cc = res["compact_cpu"]
        print(f"  after a full compaction: {res['compacted_disk_bytes'] / MB:.2f} MB; its CPU "
              f"{cc['self']:.1f} s + children {cc['children']:.1f} s")
        if "compacted_tables" in res:
            print_tables("tables after the full compaction", res["compacted_tables"])
    if "reads" in res:
        r = res["reads"]
        print(f"  readrandom: {r['ops']} gets ({r['found']} found): {r['cpu_self']:.2f} CPU s, "
              f"{r['cpu_self'] * 1e6 / r['ops']:.2f} CPU us per get")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--num", type=int, default=1000000, help="keys, and puts per phase (default %(default)s)")
    p.add_argument("--seed", type=int, default=301, help="db_bench's --seed (default %(default)s)")
    p.add_argument("--engines", default="lsmkv,rocksdict", help="comma-separated (default %(default)s)")
    p.add_argument("--reads", type=int, default=0, help="random gets after the fill (default none)")
    p.add_argument("--compact", action="store_true", help="compact everything before the gets")
    p.add_argument("--json", metavar="OUT", default=None, help="write the results to OUT")
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    p.add_argument("--db", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        return child(args)
    results = {}
    root = tempfile.mkdtemp(prefix="disk_footprint-")
    try:
        for name in args.engines.split(","):
            db = os.path.join(root, name)
            cmd = [sys.executable, "-m", "bench.disk_footprint", "--child", name, "--db", db,
                   "--num", str(args.num), "--seed", str(args.seed), "--reads", str(args.reads)]
            cmd += ["--compact"] if args.compact else []
            out = subprocess.run(cmd, check=True, stdout=subprocess.PIPE, text=True,
                                 cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__)))).stdout
            results[name] = json.loads(out.strip().splitlines()[-1])
            report(results[name])
            shutil.rmtree(db, ignore_errors=True)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    if "lsmkv" in results and "rocksdict" in results:
        print(f"lsmkv / rocksdict disk: {results['lsmkv']['disk_bytes'] / results['rocksdict']['disk_bytes']:.3f}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(results, fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
