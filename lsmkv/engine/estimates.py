"""Size estimates from table metadata, without reading data blocks:
db.approximate_size(start, stop) (LevelDB's GetApproximateSizes) and
db.estimate_num_keys() (RocksDB's rocksdb.estimate-num-keys).

Thread safety: each call reads one SuperVersion and pins its version, so no
table it reads is deleted under it; the answer is for that moment.

Invariants:
  1. approximate_size counts bytes of table files only (memtables are not on
     disk), from index blocks: for each table, the offset of the data block
     where stop would be minus the one where start would be. Blocks are the
     unit, so a range inside one data block may count 0 bytes, and a range
     over part of a block counts all of it or none.
  2. estimate_num_keys is a sum of counts written at flush or compaction
     (per table, num_entries minus twice num_deletions, as RocksDB does: a
     tombstone and the entry it deletes) plus the memtables' entries (their
     deletions included), never below 0: overwrites not yet merged by
     compaction count once each, and a blind delete of an absent key takes one
     from the count.
"""
from lsmkv.core.dbcore import Pin, check_bound


def table_bytes(t, start=None, stop=None):
    """Bytes of table t's data blocks that hold keys in [start, stop) (None:
    unbounded), from its index block: where stop would be minus where start
    would be (invariant 1: blocks are the unit; the filter, index and footer never
    count)."""
    lo = 0 if start is None else t.approximate_offset(start)
    if stop is None:              # past the largest key: where approximate_offset puts the end
        large = t.properties.get("largest_key")
        if large is None:
            return max(0, t.index_offset - lo)
        stop = large + b"\x00"
    return max(0, t.approximate_offset(stop) - lo)


def live_tables(sv):
    """Every TableReader a SuperVersion reads: level 0, then each deeper level."""
    tables = list(sv.l0)
    for lv in sv.levels:
        tables.extend(lv[0])
    return tables


def approximate_size(core, start=None, stop=None):
    """Bytes of table files holding keys in [start, stop) (None: unbounded), from
    the index blocks: see the module docstring, invariant 1."""
    start = check_bound("start", start)
    stop = check_bound("stop", stop)
    if core.closed:
        raise core.state.error()
    sv = core.sv
    pin = Pin(core.files, sv.version)
    try:
        return sum(table_bytes(t, start, stop) for t in live_tables(sv))
    finally:
        pin.release()


def estimate_num_keys(core):
    """An estimate of the live keys: see the module docstring, invariant 2."""
    if core.closed:
        raise core.state.error()
    sv = core.sv
    n = sum(len(m) for m in sv.memtables())
    for t in live_tables(sv):
        p = t.properties
        n += p.get("num_entries", 0) - 2 * p.get("num_deletions", 0)
    return max(0, n)
