"""Compaction: choosing input files and merging them into a new sorted run.

pick_auto() chooses the background compactions (leveled, as LevelDB and RocksDB:
scores per level, round-robin file choice, then garbage-driven compactions of
files with expired TTL data or mostly deletions). compact_range() is the manual
entry point (DB.compact_range). run_compaction()
is the reusable merge: a job (lsmkv.engine.worker) that streams the inputs through
lsmkv.core.table.write_tables, in the worker process or in the calling thread; bounded memory (one block per input, one output
block), outputs cut at target_file_size between user keys, then one MANIFEST
edit that removes the inputs and adds the outputs.

Thread safety: with max_background_jobs = N, N - 1 compaction threads may merge
at once. A background compaction is picked and registered in
db._running_compactions under db._compaction_lock and the mutex, then runs
without either; a manual compaction (compact_range) holds db._compaction_lock
throughout and first waits until no compaction is running. The mutex is taken
only to pick inputs and to install the result.

Invariants:
  1. Outputs become visible only through a durable MANIFEST edit; a crash
     before it leaves the DB as it was, and the partial outputs are orphans
     removed at the next open.
  2. Every input file of one level >= 1 that overlaps the compacted key range
     is an input, so the output level stays non-overlapping.
  3. Compactions running at once share no input file, at most one reads level 0,
     and no two write overlapping key ranges into the same level (conflicts()),
     so invariant 2 holds whatever order they finish in.
"""
from lsmkv.engine import filenames
from lsmkv.engine.version import NUM_LEVELS, FileMeta, VersionEdit
from lsmkv.engine.worker import make_job, numbers_needed


def _overlaps(f, lo, hi):
    """Does file f's user-key range meet [lo, hi] (None = unbounded)?"""
    return (hi is None or f.smallest_user_key <= hi) and (lo is None or f.largest_user_key >= lo)


def pick_range(version, start, stop):
    """Inputs {level: [FileMeta]} and the output level for compacting [start, stop].

    Walking down the levels, the key range only grows (the union of the range so
    far and every input's range), so every file of the output level that meets
    any input is an input too."""
    inputs = {}
    lo, hi = start, stop

    def widen(files):
        nonlocal lo, hi
        if lo is not None:
            lo = min([lo] + [f.smallest_user_key for f in files])
        if hi is not None:
            hi = max([hi] + [f.largest_user_key for f in files])

    l0 = list(version.levels[0])
    if l0:
        inputs[0] = l0     # all of L0: its files overlap, and older ones must not be skipped
        widen(l0)
    deepest = max((i for i in range(1, NUM_LEVELS) if version.levels[i]), default=1)
    output_level = max(1, deepest)
    for level in range(1, output_level + 1):
        files = [f for f in version.levels[level] if _overlaps(f, lo, hi)]
        if files:
            inputs[level] = files
            widen(files)
    return inputs, output_level


def run_compaction(db, inputs, output_level, bottommost):
    """Merge inputs ({level: [FileMeta]}) into output_level. Returns the edit applied.

    The merge is a job (lsmkv.engine.worker.run_job) run by db._run_job: in the worker
    process or in this thread. Its output numbers are reserved here and held as
    pending outputs until the edit is installed (or the job failed)."""
    if not inputs:
        return None
    with db.mutex:
        snapshot = db._oldest_snapshot()
        # L0 newest first, then by level: newer data first
        paths = [(f.number, filenames.table_name(db.path, f.number))
                 for level in sorted(inputs) for f in inputs[level]]
        in_bytes = sum(f.file_size for files in inputs.values() for f in files)
        numbers = db._reserve_numbers(numbers_needed(in_bytes, db.options.target_file_size_base))
        dict_bytes = output_dict_bytes(db.options, len(db._versions.current.levels[0]))
        job = make_job(paths, numbers, db.path, db.options, snapshot, bottommost, db._now_ms(),
                       dict_bytes=dict_bytes)
    try:
        result = db._run_job(job)
        edit = VersionEdit()
        for level, files in inputs.items():
            for f in files:
                edit.delete_file(level, f.number)
        for m in result["outputs"]:
            edit.add_file(output_level, FileMeta.from_meta(m["number"], m))
        db._preopen_tables([m["number"] for m in result["outputs"]], output_level)

        def installed():
            stats = db._stat
            for k, v in result["stats"].items():
                stats[k] = stats.get(k, 0) + v
            stats["compaction_bytes_read"] += in_bytes
            stats["compaction_bytes_written"] += sum(m["file_size"] for m in result["outputs"])
            stats["compactions"] += 1
            if dict_bytes < db.options.compression_dict_bytes:
                stats["compactions_without_dict"] += 1
            sv = db.sv
            db._install(sv.mem, sv.imms)
            db._collect_obsolete_files()    # the outputs are in the current version now

        db._log_and_apply(edit, installed)
        db._wake_janitor()        # the inputs are unlinked by the janitor thread
    finally:
        with db.mutex:
            db._pending_outputs.difference_update(numbers)
    return edit


def output_dict_bytes(options, l0_files):
    """The zstd dictionary size for a compaction's outputs: options.compression_dict_bytes,
    or 0 while compaction is behind (level 0 holds half of level0_slowdown_writes_trigger
    or more). Compressing 4 KiB blocks with a dictionary costs about 40% more CPU at
    level -1 and makes the merge about 30% slower, for outputs ~6% smaller that read
    ~8% faster (docs/tuning.md). Outputs made while L0 piles up are merged again
    by the next L0 compaction soon, so the dictionary would buy little, and the CPU
    it costs is what lets L0 reach the slowdown trigger: the merge adapts, as
    zstd --adapt lowers its level when it cannot keep up."""
    if 2 * l0_files >= options.level0_slowdown_writes_trigger:
        return 0
    return options.compression_dict_bytes


def level_max_bytes(options, level):
    """Target size of level >= 1: base * multiplier ** (level - 1)."""
    return options.max_bytes_for_level_base * options.max_bytes_for_level_multiplier ** (level - 1)


def level_scores(version, options):
    """Per level: L0 by file count against its trigger, L1..L5 by bytes against their
    targets; the last level is never a source, so it scores 0. A score >= 1 asks
    for a compaction."""
    scores = [len(version.levels[0]) / options.level0_file_num_compaction_trigger]
    for level in range(1, NUM_LEVELS - 1):
        scores.append(sum(f.file_size for f in version.levels[level]) / level_max_bytes(options, level))
    scores.append(0.0)
    return scores


def _with_next_level(version, level, files):
    """files of `level` plus every file of level + 1 they overlap."""
    lo = min(f.smallest_user_key for f in files)
    hi = max(f.largest_user_key for f in files)
    inputs = {level: list(files)}
    below = [f for f in version.levels[level + 1] if _overlaps(f, lo, hi)]
    if below:
        inputs[level + 1] = below
    return inputs


def _garbage_heavy(f, now_ms, oldest_snapshot):
    """A file worth rewriting for its garbage alone: some of its TTL data has expired,
    or half its entries are deletions that no snapshot still needs."""
    if f.min_expiry and f.min_expiry <= now_ms:
        return True
    return f.num_entries and 2 * f.num_deletions >= f.num_entries and f.largest_seq <= oldest_snapshot


class Pick:
    __slots__ = ("inputs", "output_level", "reason")

    def __init__(self, inputs, output_level, reason):
        self.inputs = inputs
        self.output_level = output_level
        self.reason = reason


class Running:
    """A compaction being merged (registered in db._running_compactions)."""
    __slots__ = ("numbers", "output_level", "lo", "hi", "reads_level0")

    def __init__(self, inputs, output_level):
        self.numbers = {f.number for files in inputs.values() for f in files}
        self.output_level = output_level
        self.lo, self.hi = _key_range(inputs)
        self.reads_level0 = 0 in inputs


def _key_range(inputs):
    files = [f for fs in inputs.values() for f in fs]
    return min(f.smallest_user_key for f in files), max(f.largest_user_key for f in files)


def conflicts(inputs, output_level, running):
    """Would merging `inputs` into output_level clash with a running compaction?
    Yes if they share an input file, if both read level 0 (L0 files overlap, so a
    second L0 compaction could put older data above newer), or if both write into
    the same level over overlapping key ranges (their outputs would overlap)."""
    if not running:
        return False
    candidate = Running(inputs, output_level)
    for r in running:
        if candidate.numbers & r.numbers:
            return True
        if candidate.reads_level0 and r.reads_level0:
            return True
        if (r.output_level == output_level
                and candidate.lo <= r.hi and r.lo <= candidate.hi):
            return True
    return False


def pick_auto(version, options, pointers, now_ms, oldest_snapshot, running=()):
    """The next background compaction that does not conflict with a running one
    (`running`: Running entries), or None.

    1. By level score, highest first, among scores >= 1: all of L0 into L1; or,
       for L1..L5, the first file from that level's compaction pointer on (round
       robin, as LevelDB does) with the files of the next level it overlaps.
    2. Else a file holding expired TTL data or mostly deletions ("garbage"): it is
       merged down a level (or rewritten in place at the last level), so expired
       data leaves the disk even when nobody writes.
    With nothing running this is exactly the highest-scoring level's compaction.
    """
    scores = level_scores(version, options)
    for best in sorted(range(NUM_LEVELS - 1), key=lambda i: -scores[i]):
        if scores[best] < 1:
            break
        if best == 0:
            inputs = _with_next_level(version, 0, version.levels[0])
            if not conflicts(inputs, 1, running):
                return Pick(inputs, 1, "level0")
            continue
        files = version.levels[best]
        ptr = pointers.get(best)
        start = next((i for i, f in enumerate(files) if ptr is None or f.smallest_user_key > ptr), 0)
        for f in files[start:] + files[:start]:
            inputs = _with_next_level(version, best, [f])
            if not conflicts(inputs, best + 1, running):
                return Pick(inputs, best + 1, f"level{best}-size")
    for level, files in enumerate(version.levels):
        for f in files:
            if not _garbage_heavy(f, now_ms, oldest_snapshot):
                continue
            if level == 0:
                pick = Pick(_with_next_level(version, 0, version.levels[0]), 1, "garbage")
            elif level == NUM_LEVELS - 1:
                pick = Pick({level: [f]}, level, "garbage")
            else:
                pick = Pick(_with_next_level(version, level, [f]), level + 1, "garbage")
            if not conflicts(pick.inputs, pick.output_level, running):
                return pick
    return None


def is_bottommost(version, inputs, output_level):
    """No level below the output holds a key in the inputs' range."""
    files = [f for fs in inputs.values() for f in fs]
    lo = min(f.smallest_user_key for f in files)
    hi = max(f.largest_user_key for f in files)
    return not any(_overlaps(f, lo, hi) for level in range(output_level + 1, NUM_LEVELS)
                   for f in version.levels[level])


def needs_compaction(db):
    """Cheap check (mutex held) for the background thread's wait loop."""
    with_garbage = db._garbage_check_due()
    return max(level_scores(db._versions.current, db.options)) >= 1 or with_garbage


def compact_auto(db):
    """Run one background compaction if one is due and does not conflict with the
    running ones. Returns the Pick run, or None."""
    with db._compaction_lock:            # not while a manual compaction holds it
        with db.mutex:
            version = db._versions.current
            running = db._running_compactions
            pick = pick_auto(version, db.options, db._compact_pointers, db._now_ms(),
                             db._oldest_snapshot(), running)
            if pick is None:
                db._garbage_checked(version)
                return None
            src = pick.output_level - 1
            if src > 0 and src in pick.inputs:      # round robin within levels >= 1
                db._compact_pointers[src] = max(f.largest_user_key for f in pick.inputs[src])
            entry = Running(pick.inputs, pick.output_level)
            running.append(entry)
            db._stat["max_compactions_running"] = max(db._stat["max_compactions_running"], len(running))
            bottommost = is_bottommost(version, pick.inputs, pick.output_level)
    try:
        run_compaction(db, pick.inputs, pick.output_level, bottommost)
    finally:
        with db.mutex:
            db._running_compactions.remove(entry)
            db._cv.notify_all()
    with db.mutex:
        db._stat["compactions_by_reason"][pick.reason] = db._stat["compactions_by_reason"].get(pick.reason, 0) + 1
    return pick


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
    return run_compaction(db, inputs, output_level, is_bottommost(version, inputs, output_level))
