"""DBSIZE (and INFO keyspace's dbN:keys=) per database: an estimate from metadata.

The estimate of a key range is what DBSIZE always counted, restricted to the
range: the memtables' entries in it (range tombstones are not keys and do not
count) plus, per table file, the puts it records
(num_entries - num_deletions). A table wholly inside the range counts all of
them; a table across the range's edge counts the share of its data blocks the
range covers (TableReader.approximate_offset, index blocks only); a table
outside counts nothing.

Database n >= 1 is its prefix range (databases.py); database 0 is the whole DB
less the range of the other databases, [DB_NS, DB_NS_STOP): so with no data in
databases 1..N-1 database 0's estimate is the old whole-DB one, to the entry.

Cost: tables are counted from metadata (a table across the edge reads two
index entries); the memtables' entries in the counted range are walked,
bounded by the memtable size (a database that has no keys in the memtables
costs one seek per memtable). Every version of a key compaction has not
merged yet counts (docs/server.md, "DBSIZE is an estimate").
"""
from lsmkv.core.dbcore import Pin
from lsmkv.engine.estimates import live_tables
from lsmkv.server.databases import DB_NS, DB_NS_STOP, PrefixedDB, base_of

_SEEK_TAG = b"\xff" * 8          # the largest tag: a seek lands on the user key's first entry


def _mem_count(mem, lo, hi):
    """Entries of memtable mem with lo <= user key < hi."""
    it = mem.iterator()
    it.py_seek(lo + _SEEK_TAG)
    n = 0
    while it.py_valid():
        if it.py_entry()[0] >= hi:
            break
        n += 1
        it.py_next()
    return n


def _table_count(t, lo, hi):
    """Puts of table t estimated in [lo, hi) (see the module docstring)."""
    p = t.properties
    e = p.get("num_entries", 0) - p.get("num_deletions", 0)
    small, large = p.get("smallest_key", b""), p.get("largest_key", b"")
    if large < lo or small >= hi or e <= 0:
        return 0
    if lo <= small and large < hi:
        return e
    end = t.approximate_offset(large + b"\x00")
    if end <= 0:
        return 0
    share = t.approximate_offset(hi) - t.approximate_offset(lo)
    return round(e * max(0, share) / end)


def _total(core, sv):
    n = sum(m.entries for m in sv.memtables())
    for t in live_tables(sv):
        p = t.properties
        n += p.get("num_entries", 0) - p.get("num_deletions", 0)
    return n


def _range(core, sv, lo, hi):
    n = sum(_mem_count(m, lo, hi) for m in sv.memtables())
    for t in live_tables(sv):
        n += _table_count(t, lo, hi)
    return n


def estimate(db):
    """DBSIZE's estimate for database db (the DB itself, or a PrefixedDB)."""
    core = base_of(db).core
    if core.closed:
        raise core.state.error()
    sv = core.sv
    pin = Pin(core.files, sv.version)
    try:
        if db.__class__ is PrefixedDB:
            n = _range(core, sv, db.prefix, db.stop)
        else:
            n = _total(core, sv) - _range(core, sv, DB_NS, DB_NS_STOP)
    finally:
        pin.release()
    return max(0, n)
