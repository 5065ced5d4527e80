"""db_bench --plot: the comparison chart (matplotlib, imported only when asked for).

Part of bench/db_bench.py (see its docstring for the method).
"""

import importlib

from .report import table_rows


def plot_available():
    try:
        importlib.import_module("matplotlib")
        return True
    except ImportError:
        return False


def write_plot(args, docs, out_path):
    """--plot OUT.png: ops/sec per workload row (the compare table's rows) and engine
    as grouped bars on a log axis, then for each write workload whose results carry
    a latency timeline, put latency p99 per 0.5 s window of wall time, one line per
    engine (fillbatch: per batch)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    present = list(docs)
    rows = list(table_rows(args, present, docs))
    timelines, short = [], []
    for i, name in enumerate(args.benchmarks):
        per = {}
        for e in present:
            rs = docs[e].get("results", [])
            r = rs[i] if i < len(rs) else None
            if r and r.get("latency_timeline"):
                per[e] = r["latency_timeline"]
        if per and max(len(t["t_s"]) for t in per.values()) >= 2:
            timelines.append((name, per))
        elif per:
            short.append(name)          # shorter than two windows: nothing to draw over time
    n = 1 + len(timelines)
    fig, axes = plt.subplots(n, 1, figsize=(max(9.0, 0.35 * len(rows) * len(present) + 3), 4.2 * n),
                             squeeze=False)
    ax = axes[0][0]
    width = 0.8 / max(1, len(present))
    for k, e in enumerate(present):
        xs, ys = [], []
        for j, (_, cells) in enumerate(rows):
            r = cells.get(e)
            v = r.get("ops_per_sec") if r and not r.get("error") else None
            if v:
                xs.append(j + (k - (len(present) - 1) / 2) * width)
                ys.append(v)
        ax.bar(xs, ys, width, label=e)
    ax.set_xticks(range(len(rows)))
    ax.set_xticklabels(["rww writer" if label == "  writer" else label.strip() for label, _ in rows],
                       rotation=30, ha="right")
    ax.set_yscale("log")
    ax.set_ylabel("ops/sec (log scale)")
    ax.set_title(f"db_bench: num {args.num}, reads {args.reads}, value {args.value_size} B"
                 + (f", {args.threads} reader threads" if args.threads > 1 else ""))
    ax.grid(axis="y", which="both", alpha=0.3)
    ax.legend()
    for (name, per), row in zip(timelines, axes[1:]):
        ax = row[0]
        window = 0.5
        for e, t in per.items():
            window = t.get("window_s", window)
            ax.plot(t["t_s"], t["p99_us"], marker=".", label=e)
        ax.set_yscale("log")
        ax.set_xlabel("seconds since the workload started")
        ax.set_ylabel(f"p99 {'batch' if name == 'fillbatch' else 'put'} latency us (log)")
        ax.set_title(f"{name}: p99 latency per {window:g} s window")
        ax.grid(which="both", alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(out_path, dpi=100)
    plt.close(fig)
    print(f"plot: {out_path} (ops/sec bars for {len(rows)} rows; latency over time for "
          f"{', '.join(name for name, _ in timelines) or 'no write workload'}"
          + (f"; not drawn over time, shorter than two windows: {', '.join(short)}" if short else "") + ")")
