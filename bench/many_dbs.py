"""Many DBs in one process: threads, worker processes and RSS (docs/tuning.md,
`set_background_threads`). Not timed.

    python bench/many_dbs.py [--dbs 1,10,100] [--write_buffer_size BYTES] [--compact]
                             [--write_buffer_manager BYTES] [--shared_cache BYTES]

For each count, a fresh interpreter opens that many DBs and puts 10 keys into each;
with --compact, each DB instead writes three small memtables and waits until a
background compaction has run (so each has needed a compaction worker). It prints the
process's threads, its RSS growth since before the first open (VmRSS of
/proc/self/status), and the number and RSS of its child processes (compaction workers).
--write_buffer_manager and --shared_cache give every DB one lsmkv.WriteBufferManager
and one lsmkv.Cache of that many bytes.
"""
import argparse
import json
import os
import subprocess
import sys

if __package__ in (None, ""):
    # Run by its path (python bench/this_file.py): Python put bench/ first on sys.path. Drop
    # it and add the repository root, once, last: the package `bench` loads from there, and
    # lsmkv from PYTHONPATH or the environment if it is there, else from this source tree.
    _here = os.path.dirname(os.path.abspath(__file__))
    if sys.path and os.path.abspath(sys.path[0] or os.curdir) == _here:
        del sys.path[0]
    if os.path.dirname(_here) not in sys.path:
        sys.path.append(os.path.dirname(_here))

CHILD = r"""
import json, os, shutil, sys, tempfile, threading, time
import lsmkv

def rss_kib(pid="self"):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0

n, wbs, compact = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3] == "1"
wbm, shared = int(sys.argv[4]), int(sys.argv[5])
base = tempfile.mkdtemp(prefix="lsmkv-many-")
t0, r0 = threading.active_count(), rss_kib()
opts = dict(write_buffer_size=wbs)
if compact:
    opts.update(level0_file_num_compaction_trigger=2)
if wbm:
    opts.update(write_buffer_manager=lsmkv.WriteBufferManager(wbm))
if shared:
    opts.update(block_cache=lsmkv.Cache(shared))
dbs = [lsmkv.DB(os.path.join(base, str(i)), **opts) for i in range(n)]
for db in dbs:
    for rnd in range(3 if compact else 1):
        for k in range(200 if compact else 10):
            db.put(b"key%05d" % k, b"v" * (300 if compact else 20))
        if compact:
            db.flush()
deadline = time.monotonic() + 120
while compact and any(db.stats()["compactions"] == 0 for db in dbs) and time.monotonic() < deadline:
    time.sleep(0.1)
time.sleep(1.0)
me = str(os.getpid())
kids = []
for p in os.listdir("/proc"):
    try:
        if p.isdigit() and open(f"/proc/{p}/stat").read().split()[3] == me:
            kids.append(p)
    except OSError:
        pass
print(json.dumps({"dbs": n, "threads": threading.active_count(), "threads_added": threading.active_count() - t0,
                  "rss_mib": round(rss_kib() / 1024, 1), "rss_added_mib": round((rss_kib() - r0) / 1024, 1),
                  "workers": len(kids), "workers_rss_mib": round(sum(rss_kib(p) for p in kids) / 1024, 1)}))
for db in dbs:
    db.close()
shutil.rmtree(base)
"""


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dbs", default="1,10,100", help="comma-separated DB counts")
    ap.add_argument("--write_buffer_size", type=int, default=None,
                    help="each DB's write_buffer_size (default: the option's default; 65536 with --compact)")
    ap.add_argument("--compact", action="store_true", help="make every DB run a background compaction")
    ap.add_argument("--write_buffer_manager", type=int, default=0,
                    help="one lsmkv.WriteBufferManager of this many bytes for every DB (0: none)")
    ap.add_argument("--shared_cache", type=int, default=0,
                    help="one lsmkv.Cache of this many bytes for every DB (0: a cache each)")
    a = ap.parse_args(argv)
    wbs = a.write_buffer_size or (64 << 10 if a.compact else lsmkv_default_wbs())
    for n in (int(x) for x in a.dbs.split(",")):
        r = subprocess.run([sys.executable, "-c", CHILD, str(n), str(wbs), "1" if a.compact else "0",
                            str(a.write_buffer_manager), str(a.shared_cache)],
                           capture_output=True, text=True, check=True)
        row = json.loads(r.stdout.strip().splitlines()[-1])
        print("dbs={dbs:<4} threads={threads} (+{threads_added}) rss={rss_mib} MiB (+{rss_added_mib}) "
              "workers={workers} ({workers_rss_mib} MiB)".format(**row), flush=True)


def lsmkv_default_wbs():
    """The default write_buffer_size of the lsmkv this runs against."""
    import lsmkv
    return lsmkv.Options().write_buffer_size


if __name__ == "__main__":
    main()
