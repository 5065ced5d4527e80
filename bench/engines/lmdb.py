"""db_bench's adapter for lmdb.

Part of bench/db_bench.py (see its docstring for the method).
"""

from itertools import islice

from .base import Engine


class LmdbEngine(Engine):
    name = "lmdb"
    sustained_unsupported = "not an LSM tree: no write buffer, flushes or compactions"

    def __init__(self, args):
        super().__init__(args)
        import lmdb
        self.mod = lmdb
        data = args.num * (args.key_size + args.value_size)
        self.map_size = max(2 << 30, data * 10)
        self.env = None
        self.rtxn = None

    def settings(self):
        return {"version": f"py-lmdb {self.mod.__version__}, LMDB "
                           f"{'.'.join(map(str, self.mod.version()))}",
                "compression": "none (LMDB has none)", "write_buffer_size": "n/a",
                "cache_size": "n/a (OS page cache)", "bloom_bits": "n/a",
                "map_size": self.map_size,
                "writes": "one write txn per op, env opened sync=False (fillsync: env.sync(True) "
                          "after each commit)"}

    def open(self, path):
        self.path = path
        self.env = self.mod.open(path, map_size=self.map_size, sync=False, metasync=False)

    def close(self):
        self.end_reads()
        if self.env is not None:
            self.env.close()
            self.env = None

    def is_open(self):
        return self.env is not None

    def flush(self):
        self.env.sync(True)

    def begin_reads(self):
        self.rtxn = self.env.begin()

    def end_reads(self):
        if self.rtxn is not None:
            self.rtxn.abort()
            self.rtxn = None

    def op_put(self, sync=False):
        begin, env_sync = self.env.begin, self.env.sync

        def put(k, v):
            t = begin(write=True)
            t.put(k, v)
            t.commit()

        def put_sync(k, v):
            t = begin(write=True)
            t.put(k, v)
            t.commit()
            env_sync(True)
        return put_sync if sync else put

    def op_get(self):
        return self.rtxn.get

    thread_note = ("a read transaction per reader thread (LMDB binds one to its thread); with a "
                   "writer running, each reader starts a new one every 1000 gets so that it sees the "
                   "writes; the writer commits a write transaction per put")

    def thread_reader(self, renew_every=0):
        begin = self.env.begin
        state = [begin(), 0]
        if not renew_every:
            return state[0].get, lambda: state[0].abort()

        def get(k):
            state[1] += 1
            if state[1] >= renew_every:
                state[0].abort()
                state[0] = begin()
                state[1] = 0
            return state[0].get(k)
        return get, lambda: state[0].abort()

    def op_delete(self):
        begin = self.env.begin

        def delete(k):
            t = begin(write=True)
            t.delete(k)
            t.commit()
        return delete

    def op_batch(self):
        begin = self.env.begin

        def batch(ks, vs):
            t = begin(write=True)
            put = t.put
            for k, v in zip(ks, vs):
                put(k, v)
            t.commit()
        return batch

    def op_seek(self):
        cursor = self.rtxn.cursor

        def seek(k):
            c = cursor()
            if c.set_range(k):
                return c.item()
            return None
        return seek

    def op_seek_reuse(self, n):
        c = self.rtxn.cursor()
        set_range, iternext = c.set_range, c.iternext

        def seek_read(k):
            if not set_range(k):
                return None
            out = list(islice(iternext(), n))    # from the current entry on
            return out[0] if out else None
        return seek_read, c.close

    def scan(self, reverse):
        c = self.rtxn.cursor()
        if reverse:
            c.last()
            it = c.iterprev()
        else:
            c.first()
            it = c.iternext()
        return it.__next__, None

    def stats(self):
        st = self.env.stat()
        return {"depth": st["depth"], "entries": st["entries"],
                "pages": st["branch_pages"] + st["leaf_pages"] + st["overflow_pages"]}

    def stats_summary(self, before, after):
        return f"btree depth {after.get('depth')}, entries {after.get('entries')}, pages {after.get('pages')}"
