"""db_bench's adapter for sqlite3.

Part of bench/db_bench.py (see its docstring for the method).
"""

import os

from .base import Engine


class SqliteEngine(Engine):
    name = "sqlite3"
    sustained_unsupported = "not an LSM tree: no write buffer, flushes or compactions"
    COMMIT_EVERY = 1000

    def __init__(self, args):
        super().__init__(args)
        import sqlite3
        self.mod = sqlite3
        self.conn = None
        self.pending = [0]

    def settings(self):
        return {"version": f"SQLite {self.mod.sqlite_version}",
                "compression": "none (SQLite has none)", "write_buffer_size": "n/a",
                "cache_size": self.args.cache_size if self.args.cache_size is not None
                else "default (2 MiB page cache)", "bloom_bits": "n/a",
                "schema": "t(k BLOB PRIMARY KEY, v BLOB) WITHOUT ROWID; journal_mode=WAL, "
                          "synchronous=NORMAL",
                "writes": f"one statement per op, committed every {self.COMMIT_EVERY} ops "
                          "(fillsync: a transaction per op with synchronous=FULL); reads in "
                          "one read transaction per workload"}

    def open(self, path):
        self.path = path
        os.makedirs(path, exist_ok=True)
        self.conn = c = self.mod.connect(os.path.join(path, "bench.sqlite"), isolation_level=None,
                                         check_same_thread=False)
        c.execute("PRAGMA journal_mode=WAL")
        c.execute("PRAGMA synchronous=NORMAL")
        if self.args.cache_size is not None:
            c.execute(f"PRAGMA cache_size=-{max(1, self.args.cache_size // 1024)}")
        c.execute("CREATE TABLE IF NOT EXISTS t (k BLOB PRIMARY KEY, v BLOB) WITHOUT ROWID")
        self.in_txn = False

    def close(self):
        if self.conn is not None:
            if self.conn.in_transaction:
                self.conn.execute("COMMIT")
            self.conn.close()
            self.conn = None

    def is_open(self):
        return self.conn is not None

    def flush(self):
        if self.conn.in_transaction:
            self.conn.execute("COMMIT")
        self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def begin_reads(self):
        self.conn.execute("BEGIN")

    def end_reads(self):
        if self.conn is not None and self.conn.in_transaction:
            self.conn.execute("COMMIT")

    def _batched(self, sql):
        ex, conn, pending, every = self.conn.execute, self.conn, self.pending, self.COMMIT_EVERY
        pending[0] = 0
        if not conn.in_transaction:
            ex("BEGIN")
        return ex, pending, every

    def finish_writes(self):
        if self.conn.in_transaction:
            self.conn.execute("COMMIT")
        self.conn.execute("PRAGMA synchronous=NORMAL")

    def op_put(self, sync=False):
        sql = "INSERT OR REPLACE INTO t (k, v) VALUES (?, ?)"
        if sync:
            ex = self.conn.execute
            ex("PRAGMA synchronous=FULL")

            def put_sync(k, v):
                ex(sql, (k, v))      # autocommit: one durable transaction per op
            return put_sync
        ex, pending, every = self._batched(sql)

        def put(k, v):
            ex(sql, (k, v))
            pending[0] += 1
            if pending[0] >= every:
                ex("COMMIT")
                ex("BEGIN")
                pending[0] = 0
        return put

    def op_delete(self):
        sql = "DELETE FROM t WHERE k = ?"
        ex, pending, every = self._batched(sql)

        def delete(k):
            ex(sql, (k,))
            pending[0] += 1
            if pending[0] >= every:
                ex("COMMIT")
                ex("BEGIN")
                pending[0] = 0
        return delete

    def op_batch(self):
        ex = self.conn.execute
        sql = "INSERT OR REPLACE INTO t (k, v) VALUES (?, ?)"

        def batch(ks, vs):
            ex("BEGIN")
            for k, v in zip(ks, vs):
                ex(sql, (k, v))
            ex("COMMIT")
        return batch

    def op_get(self):
        ex = self.conn.execute
        sql = "SELECT v FROM t WHERE k = ?"

        def get(k):
            row = ex(sql, (k,)).fetchone()
            return None if row is None else row[0]
        return get

    thread_note = ("a connection per reader thread (the fair setup for SQLite: in WAL mode readers on "
                   "their own connections run alongside the writer, while one shared connection behind "
                   "a lock would serialise everything), reading in one read transaction; with a writer "
                   "running, each reader commits and begins a new one every 1000 gets so that it sees "
                   "the writes and lets checkpoints complete; the writer uses the main connection, "
                   "committing every 1000 puts as in overwrite")

    def thread_reader(self, renew_every=0):
        c = self.mod.connect(os.path.join(self.path, "bench.sqlite"), isolation_level=None,
                             check_same_thread=False)
        if self.args.cache_size is not None:
            c.execute(f"PRAGMA cache_size=-{max(1, self.args.cache_size // 1024)}")
        ex = c.execute
        sql = "SELECT v FROM t WHERE k = ?"
        ex("BEGIN")
        n = [0]

        def get(k):
            row = ex(sql, (k,)).fetchone()
            return None if row is None else row[0]

        def get_renewing(k):
            n[0] += 1
            if n[0] >= renew_every:
                ex("COMMIT")
                ex("BEGIN")
                n[0] = 0
            row = ex(sql, (k,)).fetchone()
            return None if row is None else row[0]

        def close():
            if c.in_transaction:
                c.execute("COMMIT")
            c.close()
        return (get_renewing if renew_every else get), close

    def op_seek(self):
        ex = self.conn.execute
        sql = "SELECT k, v FROM t WHERE k >= ? ORDER BY k LIMIT 1"

        def seek(k):
            return ex(sql, (k,)).fetchone()
        return seek

    def op_seek_reuse(self, n):
        ex = self.conn.execute
        sql = f"SELECT k, v FROM t WHERE k >= ? ORDER BY k LIMIT {int(n)}"   # no cursor to re-seek: a query

        def seek_read(k):
            rows = ex(sql, (k,)).fetchall()
            return rows[0] if rows else None
        return seek_read, None

    def scan(self, reverse):
        cur = self.conn.execute(f"SELECT k, v FROM t ORDER BY k {'DESC' if reverse else 'ASC'}")
        return cur.__next__, cur.close

    def stats(self):
        return {"page_count": self.conn.execute("PRAGMA page_count").fetchone()[0]}

    def stats_summary(self, before, after):
        return f"pages {after.get('page_count')}"
