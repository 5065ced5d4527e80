"""--compare: the same workloads through each engine, each in its own process (this
package's db_bench.py run by its path with --engine NAME --json FILE), then one
side-by-side table (bench/report.py) and, with --plot, the chart (bench/plot.py).

Part of bench/db_bench.py (see its docstring for the method).
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

from .common import ALLOC_OPS_DEFAULT, perf_counter, SCRIPT
from .engines import engine_available, import_lsmkv
from .plot import write_plot
from .report import compare_table


def child_argv(args, engine, json_path, db_path):
    argv = [sys.executable, SCRIPT, "--engine", engine, "--json", json_path,
            "--benchmarks", ",".join(args.benchmarks), "--num", str(args.num),
            "--reads", str(args.reads), "--key_size", str(args.key_size),
            "--value_size", str(args.value_size), "--compression_ratio", str(args.compression_ratio),
            "--seed", str(args.seed), "--fillsync_num", str(args.fillsync_num),
            "--batch_size", str(args.batch_size), "--multiget_batch", str(args.multiget_batch),
            "--verify", str(args.verify),
            "--bloom_bits", str(args.bloom_bits), "--progress", args.progress, "--db", db_path]
    if "fillsustained" in args.benchmarks:
        argv += ["--sustained_num", str(args.sustained_num),
                 "--sustained_write_buffer_size", str(args.sustained_write_buffer_size)]
    if args.cache_size is not None:
        argv += ["--cache_size", str(args.cache_size)]
    if args.write_buffer_size is not None:
        argv += ["--write_buffer_size", str(args.write_buffer_size)]
    if args.use_existing_db:
        argv.append("--use_existing_db")
    if args.threads != 1:
        argv += ["--threads", str(args.threads)]
    if "filluniquerandom" in args.benchmarks and args.ttl:
        argv += ["--ttl", str(args.ttl)]
    if "readrandom_cache" in args.benchmarks:
        argv += ["--cache_sizes", ",".join(map(str, args.cache_sizes))]
    if "churn" in args.benchmarks:
        argv += ["--churn_ops", str(args.churn_ops)]
    if args.alloc_ops != ALLOC_OPS_DEFAULT:
        argv += ["--alloc_ops", str(args.alloc_ops)]
    if args.latency_timeline:
        argv.append("--latency_timeline")
    return argv


def run_compare(args):
    engines = [x.strip() for x in args.compare_engines.split(",") if x.strip()]
    base = os.path.abspath(args.db) if args.db else tempfile.mkdtemp(prefix="db_bench_cmp_")
    own = not args.db
    docs, status = {}, {}
    tmpjson = tempfile.mkdtemp(prefix="db_bench_json_")
    lsmkv_root = None
    if "lsmkv" in engines:
        try:
            lsmkv_root = os.path.dirname(import_lsmkv().__file__)
        except ImportError:
            lsmkv_root = None
    env = dict(os.environ)
    if lsmkv_root:     # the child imports the same lsmkv as this process
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [os.path.dirname(lsmkv_root),
                                                          env.get("PYTHONPATH")]))
    try:
        for name in engines:
            ok, why = engine_available(name)
            if not ok:
                print(f"### {name}: not installed ({why}); skipped", flush=True)
                status[name] = "not installed"
                continue
            jp = os.path.join(tmpjson, f"{name}.json")
            argv = child_argv(args, name, jp, os.path.join(base, name))
            print(f"\n### {name}: {' '.join(argv[1:])}", flush=True)
            t = perf_counter()
            try:
                rc = subprocess.call(argv, env=env)
            except OSError as ex:
                rc = f"could not start: {ex}"
            el = perf_counter() - t
            doc = None
            if os.path.exists(jp):
                try:
                    with open(jp) as f:
                        doc = json.load(f)
                except ValueError:
                    doc = None
            done = len(doc["results"]) if doc else 0
            if rc == 0:
                status[name] = "ok"
            elif rc == 1 and done == len(args.benchmarks):
                status[name] = "finished, with workload errors (see its output above)"
            else:
                how = (f"killed by signal {-rc}" if isinstance(rc, int) and rc < 0
                       else f"exit status {rc}")
                status[name] = f"CRASHED: {how} after {el:.1f}s ({done} workloads recorded)"
            if status[name] != "ok":
                print(f"### {name}: {status[name]}", flush=True)
            if doc is not None:
                docs[name] = doc
            if own:
                shutil.rmtree(os.path.join(base, name), ignore_errors=True)
    finally:
        shutil.rmtree(tmpjson, ignore_errors=True)
        if own:
            shutil.rmtree(base, ignore_errors=True)
    print()
    table = compare_table(args, engines, docs, status)
    print(table)
    if args.plot:
        write_plot(args, docs, args.plot)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"compare": True, "argv": sys.argv, "date": time.strftime("%Y-%m-%d %H:%M:%S %z"),
                       "cpus": os.cpu_count(), "status": status, "engines": docs, "table": table},
                      f, indent=1, default=str)
    return 0 if status.get("lsmkv") == "ok" else 1
