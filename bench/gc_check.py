"""File garbage collection and TTL collection, measured (docs/tuning.md, row 2).

    python bench/gc_check.py [--dir DIR]

1. Overwrites 100k keys ten times with an iterator held open from the first pass: the
   pinned version keeps its files (total_sst_bytes vs live_sst_bytes); closing the
   iterator frees them at once. Then compact_range(), and compares the disk with the same
   final contents written once into a fresh DB.
2. Writes 100k keys with ttl=10 under an injected clock, advances it 11 s and, with no
   further writes, times how long background compaction takes to remove 95% of the bytes.
"""
import argparse
import os
import shutil
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

import lsmkv  # noqa: E402

ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
ap.add_argument("--dir", default=None, help="scratch directory (default: a temporary one)")
args = ap.parse_args()
base = args.dir or tempfile.mkdtemp(prefix="lsmkv-gc-")
os.makedirs(base, exist_ok=True)
def wait_idle(db, t=60):
    end = time.time() + t
    while time.time() < end:
        s = db.stats()
        if s["immutable_memtables"] == 0 and s["pending_compaction_bytes"] == 0 and max(l["score"] for l in s["levels"]) < 1:
            return
        time.sleep(0.1)
p = os.path.join(base, "overwrite"); shutil.rmtree(p, ignore_errors=True)
opts = dict(write_buffer_size=1 << 20, target_file_size_base=1 << 20, max_bytes_for_level_base=4 << 20)
vals = [os.urandom(50) * 2 for _ in range(64)]
with lsmkv.DB(p, **opts) as db:
    for i in range(100000):
        db.put(b"%08d" % i, vals[i % 64])
    it = db.items()     # an open iterator pins the version it reads
    next(it)
    for r in range(1, 10):
        for i in range(100000):
            db.put(b"%08d" % i, vals[(i + r) % 64])
    db.flush(); wait_idle(db)
    s = db.stats()
    print(f"pinned: total_sst {s['total_sst_bytes']/1e6:.1f} MB, live_sst {s['live_sst_bytes']/1e6:.1f} MB, pinned_versions {s['pinned_versions']}")
    it.close()
    s = db.stats()
    print(f"after closing: total_sst {s['total_sst_bytes']/1e6:.1f} MB, live_sst {s['live_sst_bytes']/1e6:.1f} MB, files_deleted {s['files_deleted']}, bytes_reclaimed {s['bytes_reclaimed']/1e6:.1f} MB")
    db.compact_range()
    s = db.stats()
    total = s['total_sst_bytes']
    print(f"compacted: total_sst {total/1e6:.2f} MB, space_amp {s['space_amplification']}")
q = os.path.join(base, "once"); shutil.rmtree(q, ignore_errors=True)
with lsmkv.DB(q, **opts) as db:
    for i in range(100000):
        db.put(b"%08d" % i, vals[(i + 9) % 64])
    db.compact_range()
    live = db.stats()["total_sst_bytes"]
print(f"same contents written once: {live/1e6:.2f} MB; ratio {total/live:.3f}")
class Clock:
    t = 1e6
    def __call__(self): return self.t
c = Clock()
r = os.path.join(base, "ttl"); shutil.rmtree(r, ignore_errors=True)
with lsmkv.DB(r, clock=c, **opts) as db:
    for i in range(100000):
        db.put(b"%08d" % i, vals[i % 64], ttl=10)
    db.flush(); wait_idle(db)
    before = db.stats()["total_sst_bytes"]
    c.t += 11
    t0 = time.time()
    while db.stats()["total_sst_bytes"] > 0.05 * before and time.time() - t0 < 60:
        time.sleep(0.1)
    s = db.stats()
    print(f"ttl: before {before/1e6:.2f} MB, after {s['total_sst_bytes']/1e6:.3f} MB in {time.time()-t0:.1f} s without writes; ttl_dropped {s['ttl_dropped']}, compactions_by_reason {s['compactions_by_reason']}")
if not args.dir:
    shutil.rmtree(base, ignore_errors=True)
