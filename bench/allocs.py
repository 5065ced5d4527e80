"""Runner's allocation passes (AllocPasses, a mixin of bench.workloads.Runner):
allocs/op, live blocks/op and tracemalloc's counts over untimed gets (see
bench.stats.AllocCounter).

Part of bench/db_bench.py (see its docstring for the method).
"""

import gc
import os
import sys
import threading
import tracemalloc

from .stats import alloc_loop, AllocCounter


class AllocPasses:
    """Allocation passes (methods of Runner)."""

    def measure_allocs(self, name, writer=None):
        """Allocations of a get, in separate untimed passes of --alloc_ops gets of random
        keys (drawn from the seed like the workload's, but other keys), after the timed
        loop, through the same engine get and the same loop shape (alloc_loop):

        A. allocs/op: the counting allocator hook (AllocCounter) around pass A: calls to
           the PyMem/PyObject malloc/calloc by this thread, minus those of the same loop
           around bool() (the floor, normally 0), per op. Reallocs are counted apart.
           Around the same pass, live blocks/op: the change of sys.getallocatedblocks()
           (gc.collect() before and after, the collector off during the pass) per op:
           the pymalloc blocks (<= 512 bytes) the pass left allocated, e.g. cache inserts;
           what an op allocates and frees again does not show in it.
        B. tracemalloc (started for pass B only, 1 frame, with other keys): the change in
           live traced blocks and bytes between snapshots before and after (all sizes,
           snapshots' own allocations filtered out), the three biggest sources, and the
           peak traced memory above the start (transient bytes).

        With a writer (readwhilewriting), pass A runs while the writer puts (the
        workload's conditions) and the reads use a thread_reader as the readers do; the
        thread-local count excludes the writer's allocations, but the process-wide live
        block counts would not, so they and pass B are left out."""
        a, e, d = self.args, self.engine, self.data
        n = a.alloc_ops
        rng = d.rng(name + ":allocs")
        ks_a = [d.keys[i] for i in d.random_indices(rng, n)]
        out = {"ops": n, "allocs_per_op": None, "reallocs_per_op": None, "live_blocks_per_op": None,
               "tracemalloc": None}
        counter, why = AllocCounter.get()
        if counter is None:
            out["allocs_unavailable"] = f"no allocation counter: {why}"
        stop, wthread = threading.Event(), None
        if writer is None:
            e.begin_reads()
            get, close = e.op_get(), e.end_reads
        else:
            get, close = e.thread_reader(1000)
            wthread = threading.Thread(target=writer.run_quietly, args=(stop,), name="db_bench-writer")
            wthread.start()
        try:
            gc.collect()
            b0 = sys.getallocatedblocks()
            gc.disable()
            try:
                if counter is not None:
                    floor, _ = counter.count(lambda: alloc_loop(bool, ks_a))
                    allocs, reallocs = counter.count(lambda: alloc_loop(get, ks_a))
                    out.update({"allocs_per_op": max(0, allocs - floor) / n, "reallocs_per_op": reallocs / n,
                                "allocs_floor": floor})
                else:
                    alloc_loop(get, ks_a)
            finally:
                gc.enable()
            gc.collect()
            b1 = sys.getallocatedblocks()
            if writer is not None:
                out["process_wide"] = "not measured: the writer's allocations would be counted too"
            else:
                out["live_blocks_per_op"] = (b1 - b0) / n
                out["tracemalloc"] = self._tracemalloc_pass(get, [d.keys[i] for i in d.random_indices(rng, n)])
        finally:
            stop.set()
            if wthread is not None:
                wthread.join()
                e.finish_writes()
            if close is not None:
                close()
        if writer is not None and writer.error is not None:
            raise writer.error
        return out

    @staticmethod
    def _tracemalloc_pass(get, ks):
        if tracemalloc.is_tracing():
            return {"skipped": "tracemalloc was already tracing"}
        n = len(ks)
        tracemalloc.start(1)
        try:
            gc.collect()
            s0 = tracemalloc.take_snapshot()
            cur0, _ = tracemalloc.get_traced_memory()
            tracemalloc.reset_peak()
            gc.disable()
            try:
                alloc_loop(get, ks)
            finally:
                gc.enable()
            _, peak = tracemalloc.get_traced_memory()
            gc.collect()
            s1 = tracemalloc.take_snapshot()
        finally:
            tracemalloc.stop()
        flt = [tracemalloc.Filter(False, tracemalloc.__file__), tracemalloc.Filter(False, "<unknown>")]
        diff = s1.filter_traces(flt).compare_to(s0.filter_traces(flt), "lineno")
        top = sorted((x for x in diff if x.count_diff), key=lambda x: -abs(x.count_diff))[:3]
        return {"retained_blocks_per_op": sum(x.count_diff for x in diff) / n,
                "retained_bytes_per_op": sum(x.size_diff for x in diff) / n,
                "transient_peak_bytes": peak - cur0,
                "top": [f"{os.path.basename(x.traceback[0].filename)}:{x.traceback[0].lineno} "
                        f"{x.count_diff:+d} blocks {x.size_diff:+d} B" for x in top]}

    @staticmethod
    def print_allocs(res):
        al = res.get("allocs")
        if not al:
            return

        def f(v, fmt="{:.2f}"):
            return "n/a" if v is None else fmt.format(v)
        line = (f"{'':16}allocs/op {f(al['allocs_per_op'])} (+ reallocs/op {f(al['reallocs_per_op'])}); "
                f"live blocks/op {f(al['live_blocks_per_op'], '{:+.3f}')}")
        tm = al.get("tracemalloc")
        if tm and "skipped" not in tm:
            line += (f"; tracemalloc: retained {tm['retained_blocks_per_op']:+.3f} blocks/op "
                     f"{tm['retained_bytes_per_op']:+.1f} B/op, transient peak {tm['transient_peak_bytes']} B")
        print(line + f"   ({al['ops']} untimed gets)")
        if al.get("allocs_unavailable"):
            print(f"{'':16}allocs/op n/a: {al['allocs_unavailable']}")
        if al.get("process_wide"):
            print(f"{'':16}live blocks/tracemalloc: {al['process_wide']}")
        if tm and tm.get("top"):
            print(f"{'':16}tracemalloc retained by: " + "; ".join(tm["top"]))
