"""Optimistic transactions against plain puts (issue 22).

    python bench/transactions.py [--ops 200000] [--threads 8] [--hot_keys 100]
                                 [--transfers 20000] [--value_size 100]

uncontended: `--ops` transactions of one get_for_update and one put (distinct random keys)
against `--ops` plain puts of the same keys and values, each into a fresh DB.
contended: `--threads` threads each doing transfers between two of `--hot_keys` accounts
(get_for_update both, put both, commit; retry on ConflictError) until `--transfers`
commits in all: commits/s, conflicts per commit, and the sum of the accounts checked.
Times are wall clock on this machine; run with nothing else busy.
"""
import argparse
import os
import random
import shutil
import sys
import tempfile
import threading
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

START = 1000


def uncontended(a, base):
    rnd = random.Random(1)
    keys = [b"key%012d" % rnd.randrange(10 ** 12) for _ in range(a.ops)]
    v = b"v" * a.value_size
    rates = {}
    for kind in ("put", "transaction"):
        path = os.path.join(base, kind)
        with lsmkv.DB(path) as db:
            t0 = time.perf_counter()
            if kind == "put":
                put = db.put
                for k in keys:
                    put(k, v)
            else:
                for k in keys:
                    with db.transaction() as txn:
                        txn.get_for_update(k)
                        txn.put(k, v)
            rates[kind] = a.ops / (time.perf_counter() - t0)
        shutil.rmtree(path)
    print(f"## uncontended: {a.ops:,} transactions of 1 get_for_update + 1 put, against plain puts")
    print()
    print("| what | ops/s |")
    print("|---|---|")
    print(f"| plain put | {rates['put']:,.0f} |")
    print(f"| transaction (get_for_update + put + commit) | {rates['transaction']:,.0f} |")
    print(f"| transaction / put | {rates['transaction'] / rates['put']:.2f}x |")
    print()


def contended(a, base):
    path = os.path.join(base, "bank")
    accounts = [b"acct%04d" % i for i in range(a.hot_keys)]
    with lsmkv.DB(path) as db:
        for k in accounts:
            db.put(k, b"%d" % START)
        lock = threading.Lock()
        state = {"commits": 0, "conflicts": 0}

        def worker(seed):
            rnd = random.Random(seed)
            while True:
                with lock:
                    if state["commits"] >= a.transfers:
                        return
                x, y = rnd.sample(accounts, 2)
                amount = rnd.randrange(1, 10)
                while True:
                    try:
                        with db.transaction() as txn:
                            bx = int(txn.get_for_update(x))
                            by = int(txn.get_for_update(y))
                            txn.put(x, b"%d" % (bx - amount))
                            txn.put(y, b"%d" % (by + amount))
                        break
                    except lsmkv.ConflictError:
                        with lock:
                            state["conflicts"] += 1
                with lock:
                    state["commits"] += 1

        threads = [threading.Thread(target=worker, args=(i,)) for i in range(a.threads)]
        t0 = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        seconds = time.perf_counter() - t0
        total = sum(int(db.get(k)) for k in accounts)
        assert total == START * a.hot_keys, total
    shutil.rmtree(path)
    c = state["commits"]
    print(f"## contended: {a.threads} threads transferring between {a.hot_keys} hot accounts")
    print()
    print("| commits | seconds | commits/s | conflicts | conflicts per commit | sum held |")
    print("|---|---|---|---|---|---|")
    print(f"| {c:,} | {seconds:.2f} | {c / seconds:,.0f} | {state['conflicts']:,} | "
          f"{state['conflicts'] / c:.3f} | yes |")
    print()


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ops", type=int, default=200_000)
    ap.add_argument("--threads", type=int, default=8)
    ap.add_argument("--hot_keys", type=int, default=100)
    ap.add_argument("--transfers", type=int, default=20_000)
    ap.add_argument("--value_size", type=int, default=100)
    ap.add_argument("--dir", default=None, help="where the DBs go (default: a temporary directory)")
    a = ap.parse_args(argv)
    base = tempfile.mkdtemp(prefix="lsmkv-txn-", dir=a.dir)
    try:
        uncontended(a, base)
        contended(a, base)
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
