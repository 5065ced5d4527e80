"""Runner's threaded workloads (a mixin of bench.workloads.Runner): readrandom with
--threads N and readwhilewriting.

Part of bench/db_bench.py (see its docstring for the method).
"""

import sys

from .common import MiB, WRITE_WORKLOADS
from .loops import BackgroundWriter, Progress, run_readers
from .report import fmt_rate
from .stats import current_rss_bytes, peak_rss_bytes, percentiles


class ThreadedWorkloads:
    """readrandom --threads N and readwhilewriting (methods of Runner)."""

    def workload_threaded(self, name, path, res):
        """readrandom with --threads > 1, and readwhilewriting (any --threads). The
        --reads random keys (the same draw as single-threaded readrandom's) are split
        into --threads contiguous slices, one per reader thread (db_bench gives each
        thread --reads ops instead; here the total stays --reads, so the found count is
        the same check). ops/sec = all readers' gets / wall time from the first reader's
        start to the last one's end; the latency percentiles merge every reader's gaps.
        readwhilewriting adds one writer thread that puts random keys of [0, num) with
        the workload's values at full speed until the last reader is done (run_readers);
        its puts are reported apart."""
        a, e, d = self.args, self.engine, self.data
        T = a.threads
        rng = d.rng(name)
        n = a.reads
        idx = d.random_indices(rng, n)
        ks = [d.keys[i] for i in idx]
        present = d.present(idx)
        del idx
        slices = [ks[n * t // T:n * (t + 1) // T] for t in range(T)]
        writer = None
        if name == "readwhilewriting":
            widx = d.random_indices(rng, d.num)
            writer = BackgroundWriter(e.op_put, [d.keys[i] for i in widx], d.values(d.num), widx)
        stats_before = e.stats()
        what = f"{T} reader{'s' if T > 1 else ''}" + (" + writer" if writer else "")
        progress = Progress(self.progress_on, f"[{e.name}] {name} ({what})", n)
        try:
            per, lat, seconds, wres = run_readers(e, slices, 1000 if writer else 0, progress, writer)
        finally:
            if writer is not None:
                e.finish_writes()
        done = sum(x[0] for x in per)
        found = sum(x[1] for x in per)
        p = percentiles(lat, len(lat))
        lat = None
        res.update({"ops": done, "seconds": seconds,
                    "ops_per_sec": done / seconds if seconds > 0 else None,
                    "micros_per_op": seconds * 1e6 / done if done else None,
                    "mb_per_sec": found * (a.key_size + a.value_size) / MiB / seconds if seconds > 0 else None,
                    "latency_us": p, "latency_unit": "per get, every reader thread's gaps merged",
                    "threads": T, "per_thread_ops_per_sec": [x[0] / x[2] if x[2] > 0 else None for x in per],
                    "thread_setup": e.thread_note, "gil_switch_interval_s": sys.getswitchinterval(),
                    "found": found})
        if writer is None:
            res["found_expected"] = present
        else:
            res["found_expected"] = None
            res["found_at_least"] = present
            wl = wres["lat"]
            res["writer"] = {"ops": wres["ops"], "seconds": wres["seconds"],
                             "ops_per_sec": wres["ops"] / wres["seconds"] if wres["seconds"] > 0 else None,
                             "latency_us": percentiles(wl, len(wl))}
        stats_after = e.stats()
        res["engine_stats"] = self._jsonable(stats_after)
        summary = e.stats_summary(stats_before, stats_after)
        try:
            if a.alloc_ops:
                res["allocs"] = self.measure_allocs(name, writer)
        finally:
            if writer is not None:
                writer.apply_to(d)
        if name in WRITE_WORKLOADS:
            stats_flushed = self._flush_measure(path, res)
            summary = e.stats_summary(stats_before, stats_flushed)
            res["engine_stats"] = self._jsonable(stats_flushed)
        res["peak_rss_bytes"] = peak_rss_bytes()
        res["rss_bytes"] = current_rss_bytes()
        problems = self.verify(name, res)
        # ---- report
        check = ""
        if res.get("found_expected") is not None and found != res["found_expected"]:
            check = f", EXPECTED {res['found_expected']}"
        elif res.get("found_at_least") is not None and found < res["found_at_least"]:
            check = f", EXPECTED at least {res['found_at_least']}"
        self._print_rate_line(name, res, f" ({found} of {done} found{check}) [{what}]")
        print(f"{'':16}{self._lat_line(p)}   ({done} gets in {seconds:.2f} s; per reader: "
              + ", ".join(fmt_rate(x) for x in res["per_thread_ops_per_sec"]) + " ops/s)")
        if writer is not None:
            w = res["writer"]
            print(f"{'':16}writer: {w['ops']} puts in {w['seconds']:.2f} s, {fmt_rate(w['ops_per_sec'])} ops/s; "
                  + self._lat_line(w["latency_us"], "put latency us"))
        print(f"{'':16}threads: {e.thread_note}; GIL switch interval {sys.getswitchinterval() * 1000:g} ms")
        self._print_tail(e, res, summary, problems)
