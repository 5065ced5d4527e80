"""Compaction: choosing input files and merging them into a new sorted run.

compact_range() is the manual entry point (DB.compact_range). run_compaction()
is the reusable merge: a streaming merge of the inputs through
lsmkv._table.write_tables, bounded memory (one block per input, one output
block), outputs cut at target_file_size between user keys, then one MANIFEST
edit that removes the inputs and adds the outputs.

Thread safety: callers hold db._compaction_lock; the mutex is taken only to
pick inputs and to install the result.

Invariants:
  1. Outputs become visible only through a durable MANIFEST edit; a crash
     before it leaves the DB as it was, and the partial outputs are orphans
     removed at the next open.
  2. Every input file of one level >= 1 that overlaps the compacted key range
     is an input, so the output level stays non-overlapping.
"""
from lsmkv._iterator import MergingIterator
from lsmkv._table import TableIterator, write_tables
from lsmkv.version import NUM_LEVELS, FileMeta, VersionEdit


def _overlaps(f, lo, hi):
    """Does file f's user-key range meet [lo, hi] (None = unbounded)?"""
    return (hi is None or f.smallest_user_key <= hi) and (lo is None or f.largest_user_key >= lo)


def pick_range(version, start, stop):
    """Inputs {level: [FileMeta]} and the output level for compacting [start, stop]."""
    inputs = {}
    l0 = list(version.levels[0])
    lo, hi = start, stop
    if l0:
        inputs[0] = l0     # all of L0: its files overlap, and older ones must not be skipped
        lo = min([f.smallest_user_key for f in l0] + ([lo] if lo is not None else [])) if lo is not None else None
        hi = max([f.largest_user_key for f in l0] + ([hi] if hi is not None else [])) if hi is not None else None
    deepest = max((i for i in range(1, NUM_LEVELS) if version.levels[i]), default=1)
    output_level = max(1, deepest)
    for level in range(1, output_level + 1):
        files = [f for f in version.levels[level] if _overlaps(f, lo, hi)]
        if files:
            inputs[level] = files
            lo = min(f.smallest_user_key for f in files) if lo is not None else None
            hi = max(f.largest_user_key for f in files) if hi is not None else None
    return inputs, output_level


def run_compaction(db, inputs, output_level, bottommost):
    """Merge inputs ({level: [FileMeta]}) into output_level. Returns the edit applied."""
    if not inputs:
        return None
    with db.mutex:
        snapshot = db._oldest_snapshot()
        readers = []
        for level in sorted(inputs):
            for f in inputs[level]:     # L0 newest first, then by level: newer data first
                readers.append(db._open_table(f.number))
    it = MergingIterator([TableIterator(t) for t in readers])
    stats = db._stat
    metas = write_tables(it, db._new_builder, snapshot, bottommost, db._now_ms(),
                         db.options.target_file_size_base, stats)
    with db.mutex:
        edit = VersionEdit()
        for level, files in inputs.items():
            for f in files:
                edit.delete_file(level, f.number)
                stats["compaction_bytes_read"] += f.file_size
        for m in metas:
            number = db._number_of(m)
            edit.add_file(output_level, FileMeta.from_meta(number, m))
            stats["compaction_bytes_written"] += m["file_size"]
        db._log_and_apply(edit)
        for m in metas:
            db._pending_outputs.discard(db._number_of(m))
        sv = db.sv
        db._install(sv.mem, sv.imms)
        stats["compactions"] += 1
        db._delete_obsolete_files()
    return edit


def pick_l0(version, trigger):
    """The automatic compaction: when level 0 holds `trigger` files or more, all of
    them and the level-1 files they overlap, into level 1. None if not needed."""
    l0 = version.levels[0]
    if len(l0) < trigger:
        return None
    lo = min(f.smallest_user_key for f in l0)
    hi = max(f.largest_user_key for f in l0)
    inputs = {0: list(l0)}
    l1 = [f for f in version.levels[1] if _overlaps(f, lo, hi)]
    if l1:
        inputs[1] = l1
    return inputs


def needs_compaction(version, options):
    return len(version.levels[0]) >= options.level0_file_num_compaction_trigger


def compact_auto(db):
    """Run one automatic compaction if the current version needs it. Returns the edit."""
    with db.mutex:
        version = db._versions.current
        inputs = pick_l0(version, db.options.level0_file_num_compaction_trigger)
    if not inputs:
        return None
    bottommost = all(not version.levels[i] for i in range(2, NUM_LEVELS))
    return run_compaction(db, inputs, 1, bottommost)


def compact_range(db, start, stop):
    with db.mutex:
        version = db._versions.current
        inputs, output_level = pick_range(version, start, stop)
    nfiles = sum(len(v) for v in inputs.values())
    if nfiles == 0:
        return None
    if nfiles == 1 and output_level in inputs and not any(
            f.num_deletions or f.min_expiry for f in inputs[output_level]):
        return None   # a single file already at the bottom with nothing to drop
    bottommost = all(not version.levels[i] for i in range(output_level + 1, NUM_LEVELS))
    return run_compaction(db, inputs, output_level, bottommost)
