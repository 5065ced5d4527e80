"""db_bench's output: number formatting, and the side-by-side tables --compare prints
(the main table of ops/sec and ratios, the thread/TTL/cache/churn/allocation tables,
the sustained-write table).

Part of bench/db_bench.py (see its docstring for the method).
"""

import os
import time

from .common import (
    churn_cache_size, churn_keyspace, CHURN_MAX_VALUE, CHURN_MIN_VALUE, CHURN_PUT_PCT, MiB,
    PEER_LSMS, SUSTAINED_SETTLE_SECONDS, WRITE_WORKLOADS,
)


def fmt_rate(x):
    if x is None:
        return "-"
    if x >= 1e6:
        return f"{x / 1e6:.2f}M"
    if x >= 1e3:
        return f"{x / 1e3:.1f}k"
    return f"{x:.0f}"


def fmt_mb(b):
    return "-" if b is None else f"{b / MiB:.1f}"


def fmt_num(v, fmt="{:.3f}"):
    return "n/a" if v is None else fmt.format(v)


def fmt_pct(v):
    return "n/a" if v is None else f"{v:+.1f}%"


def table_rows(args, present, docs):
    """The rows of the ops/sec and latency tables (and the --plot bars): (label,
    {engine: result dict or None}). A workload is one row, except readrandom_cache
    (a row per cache size), churn (a row per variant: lsmkv's block caches; the other
    engines run one, shown in the first row) and readwhilewriting (the readers' row,
    then its writer's)."""
    def res(e, i):
        rs = docs[e].get("results", [])
        return rs[i] if i < len(rs) else None

    def sub(r, x):
        """A row cell from part x of result r, keeping r's error/skip marks."""
        if r is None or r.get("error") or r.get("skipped"):
            return r
        return x if x is not None else {}

    for i, name in enumerate(args.benchmarks):
        rs = {e: res(e, i) for e in present}
        if name == "readrandom_cache":
            for j, mib in enumerate(args.cache_sizes):
                cells = {}
                for e, r in rs.items():
                    runs = (r or {}).get("cache_runs") or []
                    cells[e] = sub(r, runs[j] if j < len(runs) else None)
                yield f"rr_cache {mib}M", cells
        elif name == "churn":
            order = []
            for e, r in rs.items():
                for v in ((r or {}).get("churn") or {}).get("variants", {}):
                    if v not in order and e == "lsmkv":
                        order.append(v)
            order = order or ["default"]
            for j, v in enumerate(order):
                cells = {}
                for e, r in rs.items():
                    vs = ((r or {}).get("churn") or {}).get("variants", {})
                    if e == "lsmkv":
                        cells[e] = sub(r, vs.get(v))
                    else:
                        cells[e] = sub(r, next(iter(vs.values()), None)) if j == 0 else None
                yield (f"churn {v}" if v != "default" else "churn"), cells
        else:
            yield name, rs
            if name == "readwhilewriting":
                yield "  writer", {e: sub(r, (r or {}).get("writer")) for e, r in rs.items()}


def compare_table(args, engines, docs, status):
    present = [e for e in engines if e in docs]
    out = []
    date = time.strftime("%Y-%m-%d")
    out.append(f"db_bench --compare  ({date}, {os.cpu_count()} cpus, num {args.num}, reads {args.reads}, "
               f"key {args.key_size} B, value {args.value_size} B, compression_ratio {args.compression_ratio}, "
               f"seed {args.seed})")
    for e in engines:
        if e not in docs:
            out.append(f"  {e}: {status.get(e, 'not run')}")
        elif status.get(e) != "ok":
            out.append(f"  {e}: {status[e]} (partial results shown)")
    w = 11
    rows = list(table_rows(args, present, docs))
    lw = max([14] + [len(name) for name, _ in rows])       # label column (14 for the default workloads)
    peers = [e for e in present if e != "lsmkv"]
    has_best = "lsmkv" in present and any(p in present for p in PEER_LSMS)
    hdr = f"{'ops/sec':{lw}}" + "".join(f"{e:>{w}}" for e in present)
    if "lsmkv" in present:
        hdr += "  |" + "".join(f"{'/' + p:>{w}}" for p in peers)
        if has_best:
            hdr += f"{'/best LSM':>{w}}"
    out.append("")
    out.append(hdr)
    out.append("-" * len(hdr))

    def res(e, i):
        rs = docs[e].get("results", [])
        return rs[i] if i < len(rs) else None

    for name, cells in rows:
        row = f"{name:{lw}}"
        vals = {}
        for e in present:
            r = cells.get(e)
            v = r.get("ops_per_sec") if r and not r.get("error") else None
            vals[e] = v
            cell = fmt_rate(v) if v else ("ERR" if r and r.get("error") else
                                          "skip" if r and r.get("skipped") else "-")
            if r and r.get("verify_errors"):
                cell += "!"
            row += f"{cell:>{w}}"
        if "lsmkv" in present:
            row += "  |"
            mine = vals.get("lsmkv")
            for p in peers:
                row += f"{(f'{mine / vals[p]:.2f}x' if mine and vals.get(p) else '-'):>{w}}"
            if has_best:
                best = max((vals[p] for p in PEER_LSMS if vals.get(p)), default=None)
                row += f"{(f'{mine / best:.2f}x' if mine and best else '-'):>{w}}"
        out.append(row)
    out.append("(lsmkv/X = lsmkv ops/sec divided by X's: above 1 means lsmkv is faster; "
               "best LSM = the faster of plyvel and rocksdict; '!' = verification failed)")
    # latency
    out.append("")
    hdr2 = f"{'p99 latency us':{lw}}" + "".join(f"{e:>{w}}" for e in present)
    out.append(hdr2)
    out.append("-" * len(hdr2))
    for name, cells in rows:
        row = f"{name:{lw}}"
        for e in present:
            r = cells.get(e)
            v = (r.get("latency_us") or {}).get("p99") if r and not r.get("error") else None
            row += f"{(f'{v:.1f}' if v is not None else '-'):>{w}}"
        out.append(row)
    # disk
    out.append("")
    hdr3 = f"{'disk MB':{lw}}" + "".join(f"{e:>{w}}" for e in present)
    out.append(hdr3 + "   (after the workload, flushed and closed: sum of file sizes)")
    out.append("-" * len(hdr3))
    for i, name in enumerate(args.benchmarks):
        if name not in WRITE_WORKLOADS:
            continue
        row = f"{name:{lw}}"
        for e in present:
            r = res(e, i)
            row += f"{fmt_mb(r.get('disk_bytes') if r else None):>{w}}"
        out.append(row)
    out.append("")
    row = f"{'peak RSS MB':{lw}}"
    row0 = f"{'baseline MB':{lw}}"
    for e in present:
        row += f"{fmt_mb(docs[e].get('peak_rss_bytes')):>{w}}"
        row0 += f"{fmt_mb(docs[e].get('baseline_rss_bytes')):>{w}}"
    out.append(row + "   (ru_maxrss of the engine's process)")
    out.append(row0 + "   (RSS after generating keys/values, before the first workload)")
    out.append("")
    for e in present:
        s = docs[e].get("settings", {})
        out.append(f"{e:10} {s.get('version', '?')}; compression {s.get('compression', '?')}; "
                   f"write buffer {s.get('write_buffer_size', '?')}; cache {s.get('cache_size', '?')}; "
                   f"bloom bits {s.get('bloom_bits', '?')}")
    out.extend(extra_tables(args, present, docs))
    if "fillsustained" in args.benchmarks:
        out.append("")
        out.extend(sustained_table(args, present, docs))
    return "\n".join(out)


def extra_tables(args, present, docs):
    """The blocks of the --compare table for the workloads not in the default list:
    skips, allocations per get, readrandom_cache's hit ratios, churn's memory."""
    out = []
    w = 11

    def res(e, name):
        if name not in args.benchmarks:
            return None
        i = args.benchmarks.index(name)
        rs = docs[e].get("results", [])
        return rs[i] if i < len(rs) else None

    def block(title, rows, note=None):
        lw = max([22] + [len(label) + 1 for label, _ in rows])
        hdr = f"{title:{lw}}" + "".join(f"{e:>{w}}" for e in present)
        out.extend(["", hdr, "-" * len(hdr)])
        for label, get in rows:
            row = f"{label:{lw}}"
            for e in present:
                try:
                    cell = get(e)
                except (KeyError, TypeError, IndexError, ZeroDivisionError):
                    cell = None
                row += f"{'-' if cell is None else cell:>{w}}"
            out.append(row)
        if note:
            out.append(note)

    skips = [(name, e, (res(e, name) or {}).get("skipped")) for name in args.benchmarks for e in present
             if (res(e, name) or {}).get("skipped") and name != "fillsustained"]
    if skips:
        out.append("")
        out.extend(f"{name}: skipped for {e}: {why}" + (
            f" (so {e}'s later workloads ran on the DB as it was before {name}: compare them with care)"
            if name.startswith("fill") and args.benchmarks.index(name) < len(args.benchmarks) - 1 else "")
            for name, e, why in skips)
    if "filluniquerandom" in args.benchmarks and args.ttl:
        out.append(f"filluniquerandom --ttl {args.ttl}: " + "; ".join(
            f"{e}: {(res(e, 'filluniquerandom') or {}).get('ttl', {}).get('how')}" for e in present
            if (res(e, "filluniquerandom") or {}).get("ttl")))
    # ---- allocations per get
    al_names = [n for n in ("readrandom", "readwhilewriting") if n in args.benchmarks
                and any((res(e, n) or {}).get("allocs") for e in present)]
    if al_names:
        rows = []
        for n in al_names:
            def al(e, n=n):
                return res(e, n)["allocs"]
            rows.append((f"{n} allocs/op", lambda e, al=al: fmt_num(al(e)["allocs_per_op"], "{:.2f}")))
            if n == "readrandom":
                rows.append(("  live blocks/op", lambda e, al=al: fmt_num(al(e)["live_blocks_per_op"], "{:+.3f}")))
                rows.append(("  traced blocks/op", lambda e, al=al:
                             fmt_num(al(e)["tracemalloc"]["retained_blocks_per_op"], "{:+.3f}")))
                rows.append(("  traced peak KB", lambda e, al=al:
                             fmt_num(al(e)["tracemalloc"]["transient_peak_bytes"] / 1024, "{:.1f}")))
        why = {((res(e, n) or {}).get("allocs") or {}).get("allocs_unavailable") for e in present
               for n in al_names} - {None}
        block("allocations per get", rows,
              f"(untimed passes of {args.alloc_ops} gets after the timed loop: allocs/op = Python allocator "
              "calls (PyMem/PyObject malloc+calloc) by the reading thread, counted by a hook; live blocks/op = "
              "change of sys.getallocatedblocks(), pymalloc blocks left allocated; traced = tracemalloc's "
              "live blocks after/before a second pass, and its peak above the start. C/C++ heap allocations "
              "of the libraries themselves are not seen"
              + ("; readwhilewriting: the reader's count while the writer runs" if "readwhilewriting" in al_names
                 else "") + ")" + (f"\n  allocs/op n/a: {'; '.join(why)}" if why else ""))
    # ---- readrandom_cache
    if "readrandom_cache" in args.benchmarks:
        rows = []
        for j, mib in enumerate(args.cache_sizes):
            def run(e, j=j):
                return res(e, "readrandom_cache")["cache_runs"][j]
            rows.append((f"{mib} MiB ops/sec", lambda e, run=run: fmt_rate(run(e)["ops_per_sec"])))
            rows.append((f"{mib} MiB hit ratio", lambda e, run=run: fmt_num(run(e)["hit_ratio"])))
        block("readrandom_cache", rows,
              "(a warm-up pass of --reads gets, then --reads timed gets of other keys, per cache size; hit "
              "ratio over the timed pass: " + "; ".join(
                  f"{e}: {(res(e, 'readrandom_cache') or {}).get('hit_counters', 'n/a')}" for e in present
                  if (res(e, "readrandom_cache") or {}).get("hit_counters")) + ")")
    # ---- churn
    if "churn" in args.benchmarks:
        cols = []
        for e in present:
            for v, r in (((res(e, "churn") or {}).get("churn") or {}).get("variants") or {}).items():
                cols.append((f"{e}" if v == "default" else f"{e}:{v}", r))
        if cols:
            cw = max(w, max(len(c) for c, _ in cols) + 2)
            hdr = f"{'churn':22}" + "".join(f"{c:>{cw}}" for c, _ in cols)
            out.extend(["", hdr, "-" * len(hdr)])

            def c(r, k):
                return (r.get("churn") or {}).get(k)
            for label, get in (("ops/sec", lambda r: fmt_rate(r.get("ops_per_sec"))),
                               ("put p99 us", lambda r: fmt_num((c(r, "put_latency_us") or {}).get("p99"), "{:.1f}")),
                               ("get p99 us", lambda r: fmt_num((c(r, "get_latency_us") or {}).get("p99"), "{:.1f}")),
                               ("RSS mid MB", lambda r: fmt_mb(c(r, "rss_mid_bytes"))),
                               ("RSS end MB", lambda r: fmt_mb(c(r, "rss_end_bytes"))),
                               ("RSS growth 2nd half", lambda r: fmt_pct(c(r, "rss_growth_second_half_pct"))),
                               ("fragmentation end", lambda r: fmt_num(c(r, "fragmentation_ratio_end"))),
                               ("slab_moves end", lambda r: fmt_num(c(r, "slab_moves_end"), "{}")),
                               ("cache usage end MB", lambda r: fmt_mb(c(r, "cache_usage_end"))),
                               ("cache held end MB", lambda r: fmt_mb(c(r, "cache_held_end"))),
                               ("peak RSS MB", lambda r: fmt_mb(r.get("peak_rss_bytes")))):
                row = f"{label:22}"
                for _, r in cols:
                    row += f"{('ERR' if r.get('error') else get(r)):>{cw}}"
                out.append(row)
            out.append(f"(churn: {args.churn_ops} ops, {CHURN_PUT_PCT}% puts of {CHURN_MIN_VALUE} B..{CHURN_MAX_VALUE // 1024} "
                       f"KiB values (log-uniform), {100 - CHURN_PUT_PCT}% gets, on {churn_keyspace(args)} keys; "
                       f"block cache {churn_cache_size(args) / MiB:g} MiB; each column its own process. RSS mid/end: "
                       "current RSS after 50%/100% of the ops; growth = (end - mid) / mid; fragmentation_ratio "
                       "and slab_moves from lsmkv's stats()['block_cache'] (n/a: not there))")
            notes = {f"{e}:{v}": r.get("variant_note") for e in present for v, r in
                     (((res(e, "churn") or {}).get("churn") or {}).get("variants") or {}).items() if r.get("variant_note")}
            for k, v in notes.items():
                out.append(f"  {k}: {v}")
    return out


def sustained_table(args, present, docs):
    """The fillsustained block of the --compare table: one column per LSM engine that
    ran it, then lsmkv/X ratios."""
    out = []
    i = args.benchmarks.index("fillsustained")

    def res(e):
        rs = docs[e].get("results", [])
        r = rs[i] if i < len(rs) else None
        return r if r and not r.get("error") and not r.get("skipped") and "sustained" in r else None

    ran = [e for e in present if res(e)]
    skipped = {e: (docs[e]["results"][i].get("skipped") or docs[e]["results"][i].get("error") or "?")
               for e in present if e not in ran and i < len(docs[e].get("results", []))}
    out.append(f"fillsustained: {args.sustained_num} puts of random keys (with replacement), "
               f"key {args.key_size} B, value {args.value_size} B, write buffer "
               f"{args.sustained_write_buffer_size} B for every LSM engine; every other setting "
               f"(compaction triggers, file and level sizes, compression) is the engine's default")
    for e, why in skipped.items():
        out.append(f"  {e}: not run ({why})")
    if not ran:
        return out
    w = 11
    peers = [e for e in ran if e != "lsmkv"]
    ratios = "lsmkv" in ran and peers
    hdr = f"{'':22}" + "".join(f"{e:>{w}}" for e in ran)
    if ratios:
        hdr += "  |" + "".join(f"{'lsmkv/' + p:>{max(w, len(p) + 7)}}" for p in peers)
    out.append(hdr)
    out.append("-" * len(hdr))

    def get(e, path):
        x = res(e)
        for k in path:
            x = None if x is None else x.get(k)
        return x

    rows = [("ops/sec", ("ops_per_sec",), fmt_rate),
            ("put p50 us", ("latency_us", "p50"), lambda v: f"{v:.2f}"),
            ("put p99 us", ("latency_us", "p99"), lambda v: f"{v:.1f}"),
            ("put p99.9 us", ("latency_us", "p99.9"), lambda v: f"{v:.1f}"),
            ("put max us", ("latency_us", "max"), lambda v: f"{v:.0f}"),
            ("stall seconds", ("sustained", "stall_seconds"), lambda v: f"{v:.2f}"),
            ("write amp (fill end)", ("sustained", "at_fill_end", "write_amp", "write_amp"), lambda v: f"{v:.3f}"),
            ("  WAL", ("sustained", "at_fill_end", "write_amp", "wal_per_user"), lambda v: f"{v:.3f}"),
            ("  flush", ("sustained", "at_fill_end", "write_amp", "flush_per_user"), lambda v: f"{v:.3f}"),
            ("  compaction", ("sustained", "at_fill_end", "write_amp", "compaction_per_user"),
             lambda v: f"{v:.3f}"),
            ("write amp (settled)", ("sustained", "settled", "write_amp", "write_amp"), lambda v: f"{v:.3f}"),
            ("  compaction", ("sustained", "settled", "write_amp", "compaction_per_user"), lambda v: f"{v:.3f}"),
            ("settle wait s", ("sustained", "settled", "waited_seconds"), lambda v: f"{v:.1f}"),
            ("disk MB", ("disk_bytes",), fmt_mb)]
    for label, path, fmt in rows:
        row = f"{label:22}"
        vals = {}
        for e in ran:
            v = get(e, path)
            vals[e] = v
            row += f"{(fmt(v) if v is not None else 'n/a'):>{w}}"
        if ratios:
            row += "  |"
            mine = vals.get("lsmkv")
            for p in peers:
                other = vals.get(p)
                cell = f"{mine / other:.2f}x" if mine is not None and other else "-"
                if label == "settle wait s":
                    cell = ""
                row += f"{cell:>{max(w, len(p) + 7)}}"
        out.append(row)
    for label, key in (("files/level fill end", "at_fill_end"), ("files/level settled", "settled")):
        out.append(f"{label:22}" + "; ".join(
            f"{e} {','.join(map(str, get(e, ('sustained', key, 'files_per_level')) or [])) or '-'}"
            for e in ran))
    out.append("(lsmkv/X: for ops/sec above 1 means lsmkv is faster; for latency, stall seconds and "
               "write amp below 1 means lsmkv is lower. write amp = (WAL + flush + compaction bytes "
               "written) / user key+value bytes put; 'fill end' is read right after the last put, "
               "'settled' after waiting up to "
               f"{SUSTAINED_SETTLE_SECONDS} s for background flushes and compactions)")
    for e in ran:
        su = res(e)["sustained"]
        st = su["settled"]
        out.append(f"{e:10} stalls: {su.get('stall_detail')}")
        tail = su.get("latency_tail") or []
        out.append(f"{'':10} tail: " + ", ".join(f"{t['ops']} puts >= {t['threshold_us'] / 1000:g} ms "
                                               f"({t['seconds']:.2f} s)" for t in tail)
                   + f"; settle: {'idle' if st.get('idle') else 'STILL BUSY'} after "
                     f"{st.get('waited_seconds', 0):.1f} s")
        if su.get("wal_note"):
            out.append(f"{'':10} WAL bytes: {su['wal_note']}")
        out.append(f"{'':10} settings: {su.get('settings')}")
    if "lsmkv" in ran and "rocksdict" in ran:
        def target(label, path):
            m, r = get("lsmkv", path), get("rocksdict", path)
            if m is None or r is None:
                return f"{label}: n/a"
            return f"{label}: {'met' if m <= r else 'NOT met'} ({m:.3f} vs {r:.3f})"
        out.append("targets (lsmkv <= rocksdict): " + "; ".join([
            target("p99.9 put us", ("latency_us", "p99.9")),
            target("write amp at fill end", ("sustained", "at_fill_end", "write_amp", "write_amp")),
            target("write amp settled", ("sustained", "settled", "write_amp", "write_amp"))]))
    return out
