"""Kill points: named places in the engine where a crash test can make the
process die with SIGKILL (docs/reliability.md; tools/crashtest.py).

    LSMKV_KILL_POINTS="flush.after_table_write:0.3,current.before_rename"
    LSMKV_KILL_SEED=42

Each entry is a point name with an optional probability (default 1.0); when
execution reaches a listed point, the process writes "lsmkv-killpoint NAME" to
stderr (fd 2, unbuffered) and SIGKILLs itself with that probability. The
random draws come from one generator seeded with LSMKV_KILL_SEED (default 0).
"*" as a name matches every point. A call site that is a point only in some
cases passes "" otherwise: the empty name is never a point.

The variables are read once, at import. When LSMKV_KILL_POINTS is unset or
empty, `killpoint` is a function that does nothing (one Python call per flush,
compaction, memtable switch or manifest write: free next to the I/O around it).

The points (name: where, what state the crash leaves):
    flush.after_table_write       flush.Flusher.flush_memtable: the L0 table is written
                                  and synced, the MANIFEST does not name it yet
    compaction.before_install     engine.Engine.log_and_apply, for an edit that deletes
                                  files (only compactions do): outputs written,
                                  nothing installed, the MANIFEST unchanged
    manifest.after_append         version.VersionSet.log: the edit is appended
                                  (and fsynced: the append and the fsync are one
                                  call, lsmkv.core.fileio.append_sync), the in-memory
                                  version not yet switched, no log deleted
    manifest.snapshot_before_sync version.VersionSet.write_snapshot (at open):
                                  the new MANIFEST written, not fsynced, CURRENT
                                  still names the old one
    wal.switch                    engine.Engine.switch_memtable: the new log exists and
                                  is the writer's, the old memtable is not yet
                                  published as immutable
    current.before_rename         version.VersionSet.write_snapshot: before
                                  filenames.set_current (the temp file is not
                                  written yet)
    current.after_rename          version.VersionSet.write_snapshot: CURRENT names
                                  the new MANIFEST (directory synced), the old
                                  manifest and logs not yet deleted
"""
import os
import random
import signal
import threading

POINTS = (
    "flush.after_table_write",
    "compaction.before_install",
    "manifest.after_append",
    "manifest.snapshot_before_sync",
    "wal.switch",
    "current.before_rename",
    "current.after_rename",
)


def parse(spec):
    """{name: probability} from "name[:p],name[:p]..."; ValueError on a bad entry."""
    out = {}
    for item in (spec or "").split(","):
        item = item.strip()
        if not item:
            continue
        name, _, p = item.partition(":")
        name = name.strip()
        prob = float(p) if p.strip() else 1.0
        if not 0.0 <= prob <= 1.0:
            raise ValueError(f"kill point {name!r}: probability {prob} not in [0, 1]")
        if name != "*" and name not in POINTS:
            raise ValueError(f"unknown kill point {name!r} (known: {', '.join(POINTS)})")
        out[name] = prob
    return out


_SPEC = parse(os.environ.get("LSMKV_KILL_POINTS", ""))
ENABLED = bool(_SPEC)

if ENABLED:
    _rng = random.Random(int(os.environ.get("LSMKV_KILL_SEED", "0")))
    _rng_lock = threading.Lock()

    def killpoint(name):
        """SIGKILL this process here with the probability LSMKV_KILL_POINTS gives `name`."""
        prob = _SPEC.get(name, _SPEC.get("*")) if name else None
        if prob is None:
            return
        if prob < 1.0:
            with _rng_lock:
                if _rng.random() >= prob:
                    return
        try:
            os.write(2, f"lsmkv-killpoint {name}\n".encode())
        finally:
            os.kill(os.getpid(), signal.SIGKILL)
else:
    def killpoint(name):
        """Kill points are off (LSMKV_KILL_POINTS unset): does nothing."""
