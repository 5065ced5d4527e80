"""The DB directory db_bench works in: recognising a database directory and wiping
one (never anything else).

Part of bench/db_bench.py (see its docstring for the method).
"""

import os
import shutil


def looks_like_db(path):
    markers = ("CURRENT", "data.mdb", "bench.sqlite", "LOCK")
    return any(os.path.exists(os.path.join(path, m)) for m in markers)


def wipe_dir(path):
    """Remove a DB directory, refusing anything that does not look like one."""
    if os.path.isdir(path):
        if os.listdir(path) and not looks_like_db(path):
            raise SystemExit(f"db_bench: refusing to wipe {path}: it is not empty and does not "
                             "look like a database directory (no CURRENT/LOCK/data.mdb/bench.sqlite)")
        shutil.rmtree(path)
    elif os.path.exists(path):
        raise SystemExit(f"db_bench: {path} exists and is not a directory")
