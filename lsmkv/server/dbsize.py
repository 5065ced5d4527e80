"""DBSIZE (and INFO keyspace's dbN:keys=) per database: an estimate from metadata.

The estimate of a database is what DBSIZE always counted, restricted to the
database's key ranges (databases.key_ranges): the memtables' entries in them
plus, per table file, the puts it records (num_entries - num_deletions). A
table wholly inside a range counts all of them; a table across a range's edge
counts the share of its data blocks the range covers
(lsmkv.engine.estimates.table_bytes, index blocks only: a data block across an
edge counts for the range above the edge, so an estimate may be off by a data
block's entries at each edge); a table outside counts nothing. Entries under a newer range tombstone do not count: a memtable entry
whose key a newer tombstone covers, a table whose part in the range one newer
tombstone covers whole (so DBSIZE is 0 after FLUSHDB, FLUSHALL or SWAPDB's
tombstones). Range tombstones themselves are not keys.

Database 0 is the whole DB less the range of the other databases, [DB_NS,
DB_NS_STOP): with no data in databases 1..N-1 and no range tombstone, its
estimate is the whole-DB one DBSIZE always gave, to the entry.

Cost: tables are counted from metadata (a table across an edge reads two
index entries); the memtables' entries in the range of databases 1..N-1 are
walked (about 150 ns an entry: database n's own entries, or for database 0
those of every other database; none there costs one seek per memtable), and
database 0's own memtable entries only while a range tombstone in the
memtables covers part of them: all bounded by the memtable size. DBSIZE runs
on the reader thread when the memtables hold more than WALK_INLINE_MAX
entries; INFO keyspace counts every database in one walk. Every version of a
key compaction has not merged yet counts (docs/server.md, "DBSIZE is an
estimate").
"""
from lsmkv.core.dbcore import Pin
from lsmkv.engine.estimates import live_tables, table_bytes
from lsmkv.server.databases import DB_NS, DB_NS_STOP, PrefixedDB, base_of

WALK_INLINE_MAX = 20000          # more memtable entries: DBSIZE on the reader thread
_SEEK_TAG = b"\xff" * 8          # the largest tag: a seek lands on the user key's first entry
_AT = len(DB_NS)                 # where a key of the databases' range has its database's number


def _overlapping(dels, lo, hi):
    """The range tombstones (start, end, seq) of dels that meet [lo, hi) (hi None: unbounded)."""
    return [d for d in dels if d[1] > lo and (hi is None or d[0] < hi)]


def _entries(mem, lo, hi):
    """(key, seq) of memtable mem's entries with lo <= key < hi (hi None: to the end)."""
    it = mem.iterator()
    it.py_seek(lo + _SEEK_TAG)
    while it.py_valid():
        e = it.py_entry()
        if hi is not None and e[0] >= hi:
            return
        yield e[0], e[1]
        it.py_next()


def _covered(k, seq, dels):
    return any(s <= k < t and dseq > seq for s, t, dseq in dels)


def _puts(t):
    p = t.properties
    return p.get("num_entries", 0) - p.get("num_deletions", 0)


def _table_count(t, lo, hi, dels, largest_seq):
    """Puts of table t estimated in [lo, hi) (hi None: unbounded); 0 when one
    range tombstone newer than the table covers its part of the range."""
    e = _puts(t)
    if e <= 0:
        return 0
    p = t.properties
    small, large = p.get("smallest_key", b""), p.get("largest_key", b"")
    if large < lo or (hi is not None and small >= hi):
        return 0
    first = max(small, lo)
    for s, end, seq in dels:             # one newer tombstone over the table's part of [lo, hi)
        if (s <= first and (large < end or (hi is not None and hi <= end))
                and seq > largest_seq.get(t.number, seq)):
            return 0
    if lo <= small and (hi is None or large < hi):
        return e
    end = table_bytes(t)
    if end <= 0:
        return 0
    return round(e * table_bytes(t, lo, hi) / end)


def memtable_entries(db):
    """Entries in the memtables of database db's DB (what a DBSIZE may walk)."""
    return sum(m.entries for m in base_of(db).core.sv.memtables())


def estimates(dbs):
    """DBSIZE's estimate of every database of dbs (the server's list: the DB,
    then PrefixedDB views), for INFO keyspace: one walk of the memtables over
    the range of databases 1..N-1."""
    return _estimates(dbs, range(len(dbs)))


def estimate(db):
    """DBSIZE's estimate for database db (the DB itself, or a PrefixedDB)."""
    n = db.prefix[-1] if db.__class__ is PrefixedDB else 0
    return _estimates({n: db}, (n,))[0]


def _estimates(dbs, wanted):
    """[estimate of dbs[n] for n in wanted] (see the module docstring)."""
    core = base_of(dbs[wanted[0]]).core
    if core.closed:
        raise core.state.error()
    sv = core.sv
    pin = Pin(core.files, sv.version)
    try:
        tables = live_tables(sv)
        largest_seq = {f.number: f.largest_seq for files in sv.version.levels for f in files}
        dels = [d for m in sv.memtables() for d in (m.range_dels or ())]
        mem_dels = list(dels)
        for t in tables:
            dels.extend(t.range_dels or ())
        if len(wanted) == 1 and wanted[0] != 0:           # one database >= 1: its range only
            d = dbs[wanted[0]]
            lo, hi = d.prefix, d.stop
        else:                                             # every database >= 1, by its number
            lo, hi = DB_NS, DB_NS_STOP
        walk_dels = _overlapping(mem_dels, lo, hi)
        mem = {}                                          # database number -> live memtable entries
        walked = 0
        for m in sv.memtables():
            for k, seq in _entries(m, lo, hi):
                walked += 1
                if not (walk_dels and _covered(k, seq, walk_dels)):
                    i = k[_AT] if len(k) > _AT else -1
                    mem[i] = mem.get(i, 0) + 1
        out = []
        for n in wanted:
            if n == 0:
                k = 0
                for rlo, rhi in ((b"", DB_NS), (DB_NS_STOP, None)):
                    rdels = _overlapping(dels, rlo, rhi)
                    k += sum(_table_count(t, rlo, rhi, rdels, largest_seq) for t in tables)
                # the memtables: every entry less the other databases' (walked above), less
                # database 0's own under a memtable tombstone (walked only if there is one)
                k += sum(m.entries for m in sv.memtables()) - walked
                for rlo, rhi in ((b"", DB_NS), (DB_NS_STOP, None)):
                    rdels = _overlapping(mem_dels, rlo, rhi)
                    if rdels:
                        k -= sum(1 for m in sv.memtables() for key, seq in _entries(m, rlo, rhi)
                                 if _covered(key, seq, rdels))
            else:
                d = dbs[n]
                rdels = _overlapping(dels, d.prefix, d.stop)
                k = mem.get(n, 0) + sum(_table_count(t, d.prefix, d.stop, rdels, largest_seq)
                                        for t in tables)
            out.append(max(0, k))
        return out
    finally:
        pin.release()
