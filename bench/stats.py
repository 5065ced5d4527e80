"""What db_bench measures besides time: the DB directory's size, the process's peak and
current RSS, allocations per operation (AllocCounter, below), and latency arrays turned
into percentiles, tails and a timeline.

Part of bench/db_bench.py (see its docstring for the method).
"""

import os
import resource
import shutil
import subprocess
import tempfile

# CPython keeps no running count of allocations: sys.getallocatedblocks() and
# tracemalloc's snapshots count the blocks that are *live*, so an op that allocates
# a value, returns it and has it freed by the caller counts 0 there. To count the
# allocations themselves, the pass installs a counting wrapper around the PyMem and
# PyObject allocators with PyMem_SetAllocator() (the hook tracemalloc uses): every
# malloc/calloc of those two domains bumps a thread-local counter and calls the
# allocator that was installed before. Only those two domains are wrapped, because
# pymalloc passes blocks over 512 bytes on to the RAW domain and wrapping that too
# would count them twice. The counter is per thread, so the writer of
# readwhilewriting and the engines' background threads do not add to it. It is a
# few lines of C compiled at run time with $CC (default cc) against Python.h; with
# no compiler, allocs/op is reported as n/a and why.


try:
    import psutil
except ImportError:          # optional: current RSS then comes from /proc
    psutil = None


def dir_bytes(path):
    """(apparent bytes = sum of st_size, allocated bytes = sum of st_blocks*512, files)."""
    size = alloc = files = 0
    for root, _, names in os.walk(path):
        for n in names:
            try:
                st = os.lstat(os.path.join(root, n))
            except FileNotFoundError:
                continue
            size += st.st_size
            alloc += st.st_blocks * 512
            files += 1
    return size, alloc, files


def peak_rss_bytes():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024   # KiB on Linux


def current_rss_bytes():
    if psutil is not None:
        return psutil.Process().memory_info().rss
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return 0


ALLOC_COUNTER_C = r"""
#include <Python.h>
typedef struct { PyMemAllocatorEx orig; int on; } Hook;
static Hook hooks[2];
static const PyMemAllocatorDomain doms[2] = {PYMEM_DOMAIN_MEM, PYMEM_DOMAIN_OBJ};
static __thread unsigned long long n_alloc, n_realloc;
static void *h_malloc(void *c, size_t n) { Hook *h = c; n_alloc++; return h->orig.malloc(h->orig.ctx, n); }
static void *h_calloc(void *c, size_t a, size_t b) { Hook *h = c; n_alloc++; return h->orig.calloc(h->orig.ctx, a, b); }
static void *h_realloc(void *c, void *p, size_t n) { Hook *h = c; n_realloc++; return h->orig.realloc(h->orig.ctx, p, n); }
static void h_free(void *c, void *p) { Hook *h = c; h->orig.free(h->orig.ctx, p); }
int ac_install(void) {
    for (int i = 0; i < 2; i++) {
        if (hooks[i].on) continue;
        PyMem_GetAllocator(doms[i], &hooks[i].orig);
        PyMemAllocatorEx a = {&hooks[i], h_malloc, h_calloc, h_realloc, h_free};
        PyMem_SetAllocator(doms[i], &a);
        hooks[i].on = 1;
    }
    return 0;
}
int ac_uninstall(void) {
    for (int i = 0; i < 2; i++) {
        if (!hooks[i].on) continue;
        PyMem_SetAllocator(doms[i], &hooks[i].orig);
        hooks[i].on = 0;
    }
    return 0;
}
unsigned long long ac_allocs(void) { return n_alloc; }
unsigned long long ac_reallocs(void) { return n_realloc; }
"""


class AllocCounter:
    """The compiled counting allocator hook (see above); AllocCounter.get() returns
    (counter or None, why not)."""
    _made = None

    @classmethod
    def get(cls):
        if cls._made is None:
            try:
                cls._made = (cls(), "")
            except Exception as ex:           # no compiler, no headers, ...
                cls._made = (None, f"{type(ex).__name__}: {str(ex).strip()[:200]}")
        return cls._made

    def __init__(self):
        import ctypes
        import sysconfig
        d = tempfile.mkdtemp(prefix="db_bench_alloc_")
        try:
            src, so = os.path.join(d, "alloc_counter.c"), os.path.join(d, "alloc_counter.so")
            with open(src, "w") as f:
                f.write(ALLOC_COUNTER_C)
            cc = os.environ.get("CC", "cc").split()
            r = subprocess.run(cc + ["-O2", "-shared", "-fPIC", "-I", sysconfig.get_paths()["include"],
                                     src, "-o", so], capture_output=True, text=True, timeout=60)
            if r.returncode != 0:
                raise RuntimeError(f"{' '.join(cc)} failed: {r.stderr}")
            self.lib = ctypes.PyDLL(so)        # PyDLL: called with the GIL held
        finally:
            shutil.rmtree(d, ignore_errors=True)   # the loaded library stays mapped
        for fn in ("ac_allocs", "ac_reallocs"):
            getattr(self.lib, fn).restype = ctypes.c_ulonglong

    def count(self, fn):
        """fn() with the hook installed: (allocations, reallocations) this thread made."""
        lib = self.lib
        lib.ac_install()
        try:
            a0, r0 = lib.ac_allocs(), lib.ac_reallocs()
            fn()
            a1, r1 = lib.ac_allocs(), lib.ac_reallocs()
        finally:
            lib.ac_uninstall()
        return a1 - a0, r1 - r0


def alloc_loop(get, ks):
    """The loop every allocation pass runs: one call per key, result dropped."""
    for k in ks:
        get(k)


def to_latencies(ts, n, starts, lo=0):
    """Turn the completion timestamps ts[lo:n] into per-op latencies, in place
    (lo must be the start of a chunk)."""
    first = {c: t for c, t in starts}
    for i in range(n - 1, lo - 1, -1):
        t = first.get(i)
        ts[i] -= t if t is not None else ts[i - 1]
    return ts


def latency_timeline(lat, n, starts, window_s=0.5):
    """For --plot: p50/p99/max latency (us) and ops per window_s window of wall time,
    from the per-op latencies lat[0:n] and the chunk starts (an op completes at its
    chunk's start plus the latencies of the chunk's ops up to it)."""
    if not n or not starts:
        return None
    w = int(window_s * 1e9)
    t_first = starts[0][1]
    bounds = sorted(starts) + [(n, None)]
    buckets = {}
    for (lo, t), (hi, _) in zip(bounds, bounds[1:]):
        hi = min(hi, n)
        for i in range(lo, hi):
            t += lat[i]
            buckets.setdefault((t - t_first) // w, []).append(lat[i])
    out = {"window_s": window_s, "t_s": [], "ops": [], "p50_us": [], "p99_us": [], "max_us": []}
    for b in sorted(buckets):
        xs = sorted(buckets[b])
        m = len(xs)
        out["t_s"].append((b + 1) * window_s)
        out["ops"].append(m)
        out["p50_us"].append(xs[min(m - 1, int(0.5 * m))] / 1000.0)
        out["p99_us"].append(xs[min(m - 1, int(0.99 * m))] / 1000.0)
        out["max_us"].append(xs[-1] / 1000.0)
    return out


def percentiles(lat, n):
    if n == 0:
        return {"p50": None, "p99": None, "p99.9": None, "max": None, "mean": None}
    s = sorted(lat[:n]) if n < len(lat) else sorted(lat)

    def q(p):
        return s[min(n - 1, int(p * n))] / 1000.0
    return {"p50": q(0.50), "p99": q(0.99), "p99.9": q(0.999), "max": s[-1] / 1000.0,
            "mean": sum(s) / n / 1000.0}


def latency_tail(lat, n, thresholds_us=(50, 100, 1000, 10000, 100000)):
    """How many ops took at least each threshold, and their summed time (seconds)."""
    lo = min(thresholds_us) * 1000
    big = [x for x in lat[:n] if x >= lo]
    out = []
    for th in thresholds_us:
        sel = [x for x in big if x >= th * 1000]
        out.append({"threshold_us": th, "ops": len(sel), "seconds": sum(sel) / 1e9})
    return out


def varint_len(n):
    k = 1
    while n >= 128:
        n >>= 7
        k += 1
    return k
