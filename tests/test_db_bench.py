"""bench/db_bench.py: the threaded, TTL, cache, churn and allocation workloads and
their helpers (small sizes; the whole file runs in a few seconds); bench/ as a package
whose scripts run by their path and as modules."""
import array
import ast
import glob
import importlib
import importlib.util
import json
import os
import re
import subprocess
import sys

import pytest

from conftest import lsmkv_import_path

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "bench", "db_bench.py")
SCRIPTS = ("db_bench", "phaseshift", "server_bench", "index_cache", "gc_check", "idle_footprint",
           "many_dbs", "disk_footprint", "followers", "rangedel", "merges", "transactions",
           "families")   # runnable by path


def _child_env():
    # the lsmkv the tests import (installed in CI; the source tree has no compiled modules)
    return dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [lsmkv_import_path(),
                                                                     os.environ.get("PYTHONPATH")])))


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("db_bench_under_test", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_new_flags_parse_and_validate(bench):
    a = bench.parse_args(["--threads", "3", "--ttl", "60", "--cache_sizes", "1,8", "--churn_ops", "100",
                          "--benchmarks", "filluniquerandom,readwhilewriting,readrandom_cache,churn"])
    assert (a.threads, a.ttl, a.cache_sizes, a.churn_ops) == (3, 60, [1, 8], 100)
    assert a.alloc_ops == bench.ALLOC_OPS_DEFAULT and not a.latency_timeline
    assert bench.parse_args(["--plot", "x.png"]).latency_timeline
    assert bench.parse_args([]).benchmarks == bench.DEFAULT_BENCHMARKS.split(",")
    for bad in (["--threads", "0"], ["--ttl", "-1"], ["--cache_sizes", "x"], ["--cache_sizes", "0"],
                ["--churn_ops", "5"], ["--alloc_ops", "-1"]):
        with pytest.raises(SystemExit):
            bench.parse_args(bad)


def test_to_latencies_from_a_chunk_start(bench):
    ts = array.array("q", [0, 0, 110, 130, 170, 200])
    starts = [(2, 100), (4, 160)]
    bench.to_latencies(ts, 6, starts, lo=2)
    assert list(ts[2:]) == [10, 20, 10, 30]
    # completions at 110, 130 | 170 | 200 ns: windows of 50 ns from the first start (100)
    tl = bench.latency_timeline(array.array("q", [10, 20, 10, 30]), 4, [(0, 100), (2, 160)], window_s=50e-9)
    assert tl["ops"] == [2, 1, 1] and tl["max_us"] == [0.02, 0.01, 0.03]


def test_alloc_counter_counts_this_threads_allocations(bench):
    counter, why = bench.AllocCounter.get()
    if counter is None:
        pytest.skip(f"no C compiler for the counter: {why}")
    ks = [b"%016d" % i for i in range(1000)]
    floor, _ = counter.count(lambda: bench.alloc_loop(bool, ks))
    n, _ = counter.count(lambda: bench.alloc_loop(lambda k: k + b"x", ks))
    big, _ = counter.count(lambda: bench.alloc_loop(lambda k: k * 1000, ks))   # > 512 B: counted once
    assert floor <= 2
    assert 1000 <= n - floor <= 1002
    assert 1000 <= big - floor <= 1002


def test_small_run_of_the_new_workloads(tmp_path):
    out = tmp_path / "r.json"
    env = _child_env()
    r = subprocess.run([sys.executable, SCRIPT, "--num", "3000", "--benchmarks",
                        "filluniquerandom,readwhilewriting,readrandom,readrandom_cache,churn",
                        "--threads", "2", "--ttl", "3600", "--cache_sizes", "1,2", "--churn_ops", "2000",
                        "--alloc_ops", "500", "--progress", "never", "--db", str(tmp_path / "db"),
                        "--json", str(out)], capture_output=True, text=True, timeout=120, env=env)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    res = {x["name"]: x for x in json.loads(out.read_text())["results"]}
    assert not any(x.get("error") or x.get("verify_errors") for x in res.values()), r.stdout[-3000:]
    assert res["filluniquerandom"]["ops"] == 3000 and res["filluniquerandom"]["ttl"]["seconds"] == 3600
    rww = res["readwhilewriting"]
    assert rww["threads"] == 2 and rww["ops"] == 3000 and rww["writer"]["ops"] > 0
    assert rww["found"] >= rww["found_at_least"]
    rr = res["readrandom"]
    assert rr["found"] == rr["found_expected"] == 3000          # every key was put once
    assert rr["allocs"]["ops"] == 500
    assert [x["cache_mib"] for x in res["readrandom_cache"]["cache_runs"]] == [1, 2]
    assert all(x["found"] == 3000 for x in res["readrandom_cache"]["cache_runs"])
    variants = res["churn"]["churn"]["variants"]
    assert variants and all(v.get("churn") and len(v["churn"]["lines"]) == 20 for v in variants.values())
    assert "RSS mid" in r.stdout and "fragmentation_ratio at end" in r.stdout


def test_bench_is_a_package_without_path_edits():
    """Modules import each other relatively (or as bench.X); only the runnable scripts
    touch sys.path, once, in the shim that puts the repository root there."""
    if ROOT not in sys.path:
        sys.path.insert(0, ROOT)
    pkg = importlib.import_module("bench")
    assert os.path.dirname(pkg.__file__) == os.path.join(ROOT, "bench")
    engines = importlib.import_module("bench.engines")
    assert set(engines.ENGINE_CLASSES) == set(importlib.import_module("bench.common").ENGINES)
    assert importlib.import_module("bench.db_bench").main
    for path in glob.glob(os.path.join(ROOT, "bench", "**", "*.py"), recursive=True):
        name = os.path.splitext(os.path.basename(path))[0]
        with open(path, encoding="utf-8") as fh:
            src = fh.read()
        tree = ast.parse(src)
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                assert not node.module.startswith("bench_"), (path, node.module)
            if isinstance(node, ast.Import):
                assert not any(a.name.startswith("bench_") for a in node.names), path
        edits = src.count("sys.path.insert") + src.count("sys.path.append") + src.count("del sys.path[0]")
        if os.path.dirname(path) == os.path.join(ROOT, "bench") and name in SCRIPTS:
            assert edits == 2 and 'if __package__ in (None, ""):' in src, path
        elif path == os.path.join(ROOT, "bench", "__init__.py"):
            assert "_sys.path[:] =" in src, path       # only moves the root last (python -m)
        else:
            assert edits == 0, path


@pytest.mark.parametrize("how", ["path", "module"])
def test_scripts_run_by_path_and_as_modules(how):
    for name in SCRIPTS:
        argv = ([sys.executable, os.path.join("bench", name + ".py")] if how == "path"
                else [sys.executable, "-m", "bench." + name])
        r = subprocess.run(argv + ["--help"], cwd=ROOT, capture_output=True, text=True, timeout=60,
                           env=_child_env())
        assert r.returncode == 0 and "usage" in r.stdout.lower(), (name, r.stdout[-2000:], r.stderr[-2000:])


def test_footprint_reports_idle_dbs_per_engine(tmp_path):
    """bench/idle_footprint.py opens DBs in a child per engine and prints RSS, disk and
    threads; an idle lsmkv DB allocates well under 4 MiB of disk (issue 18's bound;
    it was 128 MiB when each log was preallocated to write_buffer_size)."""
    out = tmp_path / "f.json"
    r = subprocess.run([sys.executable, "-m", "bench.idle_footprint", "--dbs", "1,3", "--engines", "lsmkv,sqlite3",
                        "--settle", "0", "--json", str(out)],
                       cwd=ROOT, capture_output=True, text=True, timeout=300, env=_child_env())
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    rows = json.loads(out.read_text())
    assert [(x["engine"], x["dbs"]) for x in rows] == [("lsmkv", 1), ("lsmkv", 3), ("sqlite3", 1), ("sqlite3", 3)]
    for x in rows:
        assert 0 < x["disk"] and "RSS growth" in r.stdout
        if x["engine"] == "lsmkv":
            assert x["disk"] / x["dbs"] <= 1 << 20, x


def test_followers_bench_runs_writer_readers_and_a_secondary():
    """bench/followers.py: a writer alone and with reader processes on lsmkv, then
    the secondary's catch_up latency; the readers find every key they look up."""
    r = subprocess.run([sys.executable, "-m", "bench.followers", "--num", "3000", "--readers", "2",
                        "--seconds", "0.3", "--lat_ops", "50", "--engines", "lsmkv"],
                       cwd=ROOT, capture_output=True, text=True, timeout=300, env=_child_env())
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    line = next(x for x in r.stdout.splitlines() if x.startswith("lsmkv "))
    found, reads = re.search(r"found (\d+) of (\d+)", line).groups()
    assert found == reads and int(reads) > 0
    assert "catch_up latency over 50 writes: p50" in r.stdout


def test_compare_runs_each_engine_in_its_own_process(tmp_path):
    out = tmp_path / "c.json"
    r = subprocess.run([sys.executable, "-m", "bench.db_bench", "--num", "2000", "--compare",
                        "--compare_engines", "lsmkv,sqlite3", "--benchmarks", "fillrandom,readrandom",
                        "--progress", "never", "--json", str(out)],
                       cwd=ROOT, capture_output=True, text=True, timeout=300, env=_child_env())
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    doc = json.loads(out.read_text())
    assert doc["status"] == {"lsmkv": "ok", "sqlite3": "ok"}, doc["status"]
    assert "### sqlite3:" in r.stdout and os.path.join("bench", "db_bench.py") in r.stdout


def test_seek_workloads_run_and_verify_on_every_engine(tmp_path):
    """seekrandom (a fresh iterator per seek) and seekrandom_reuse (one cursor
    re-seeked, 10 entries read per seek) on every installed engine (the peers are
    bench extras; CI installs the test extras only): each finds the keys present."""
    engines = ["lsmkv", "sqlite3"] + [e for e in ("plyvel", "rocksdict", "lmdb") if importlib.util.find_spec(e)]
    out = tmp_path / "s.json"
    r = subprocess.run([sys.executable, "-m", "bench.db_bench", "--num", "2000", "--compare",
                        "--compare_engines", ",".join(engines),
                        "--benchmarks", "fillrandom,seekrandom,seekrandom_reuse",
                        "--progress", "never", "--json", str(out)],
                       cwd=ROOT, capture_output=True, text=True, timeout=300, env=_child_env())
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    doc = json.loads(out.read_text())
    assert set(doc["status"].values()) == {"ok"}, doc["status"]
    for engine, run in doc["engines"].items():
        res = {x["name"]: x for x in run["results"]}
        for name in ("seekrandom", "seekrandom_reuse"):
            x = res[name]
            assert not x.get("error") and not x.get("verify_errors"), (engine, name, x)
            assert x["found"] == x["found_expected"] > 0, (engine, name, x["found"], x["found_expected"])


def test_disk_footprint_reports_disk_per_engine(tmp_path):
    engines = "lsmkv,rocksdict" if importlib.util.find_spec("rocksdict") else "lsmkv"
    out = tmp_path / "d.json"
    r = subprocess.run([sys.executable, "-m", "bench.disk_footprint", "--num", "3000", "--engines", engines,
                        "--reads", "500", "--compact", "--json", str(out)],
                       cwd=ROOT, capture_output=True, text=True, timeout=300, env=_child_env())
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    doc = json.loads(out.read_text())
    lsm = doc["lsmkv"]
    assert lsm["disk_bytes"] > 0 and lsm["reads"]["ops"] == 500 and lsm["compacted_disk_bytes"] > 0
    assert sum(t["bytes"] for t in lsm["tables"]) == lsm["by_kind"]["tables"]
    assert all(sum(t["layout"].values()) == t["bytes"] for t in lsm["tables"])
    if "rocksdict" in doc:
        assert "lsmkv / rocksdict disk:" in r.stdout


def test_multireadrandom_reads_batches_with_each_engines_batched_read(tmp_path):
    """multireadrandom: ops count keys, latency is per batch, the found count is
    checked against the model, and each engine says how it reads a batch (lsmkv
    multi_get; sqlite3 a get() loop)."""
    out = tmp_path / "m.json"
    r = subprocess.run([sys.executable, "-m", "bench.db_bench", "--num", "3000", "--compare",
                        "--compare_engines", "lsmkv,sqlite3", "--benchmarks",
                        "fillrandom,multireadrandom", "--multiget_batch", "64",
                        "--progress", "never", "--json", str(out)],
                       cwd=ROOT, capture_output=True, text=True, timeout=300, env=_child_env())
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    doc = json.loads(out.read_text())
    assert doc["status"] == {"lsmkv": "ok", "sqlite3": "ok"}, doc["status"]
    for engine, how in (("lsmkv", "multi_get"), ("sqlite3", "get() loop")):
        res = {x["name"]: x for x in doc["engines"][engine]["results"]}["multireadrandom"]
        assert res["ops"] == 3000 and res["latency_unit"] == "per batch of 64"
        assert res["found"] == res["found_expected"] and not res.get("verify_errors")
        assert how in res["how"]
    assert "multireadrandom" in r.stdout


def test_rangedel_bench_runs_both_ways(tmp_path):
    r = subprocess.run([sys.executable, "-m", "bench.rangedel", "--num", "3000", "--reads", "100"],
                       capture_output=True, text=True, env=_child_env(), cwd=ROOT, timeout=120)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert [x.split(":")[0].strip() for x in lines] == ["delete_range", "delete"]
