"""Compaction picking: which input files to merge, and into which level. Pure.

pick_auto() chooses the background compactions (leveled, as LevelDB and RocksDB:
scores per level, round-robin file choice, then read-triggered compactions of
level 0 (read_compaction_units), then garbage-driven compactions of
files with expired TTL data, mostly deletions, or range tombstones over more
data below them than they weigh); pick_range() the inputs of a
manual compaction (DB.compact_range); conflicts() whether a pick clashes with a
running compaction. The scheduler and the merge runner are in
lsmkv.engine.scheduler.

Thread safety: every function here is pure: it reads the version, options and
running list it is given (the caller holds the engine mutex) and changes nothing.

Invariants:
  1. Every input file of one level >= 1 that overlaps the compacted key range
     is an input, so the output level stays non-overlapping.
  2. Compactions running at once share no input file, at most one reads level 0,
     and no two write overlapping key ranges into the same level (conflicts()),
     so invariant 1 holds whatever order they finish in.
  3. With nothing running, pick_auto() is exactly the highest-scoring level's
     compaction; the last level is never a source of a size compaction.
"""
from bisect import bisect_left

from lsmkv.engine.version import NUM_LEVELS

READ_CHARGE_BYTES = 16      # bytes of compaction input that cost what one unit of read charge does


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


def output_compression_level(options, bottommost, l0_files=0):
    """The zstd level of a compaction's outputs: options.bottommost_compression_level
    when the output is the bottommost level (no level below holds a key in its range)
    and that option is set, else options.compression_level. As RocksDB's
    bottommost_compression: the bottommost level holds most of the data and is
    rewritten least often, so a stronger level there costs compaction CPU once per
    byte kept for long, and is where most of the disk is saved (docs/tuning.md,
    "Smaller files"). While compaction is behind (level 0 holds l0_files, half of
    level0_slowdown_writes_trigger or more) the outputs get compression_level, as they
    get no dictionary then (output_dict_bytes): the CPU goes to catching up.

    >>> import lsmkv
    >>> o = lsmkv.Options(compression_level=-1, bottommost_compression_level=3)
    >>> output_compression_level(o, True), output_compression_level(o, False)
    (3, -1)
    >>> output_compression_level(o, True, l0_files=10)      # behind: 2 * 10 >= 20
    -1
    >>> output_compression_level(lsmkv.Options(bottommost_compression_level=None), True)
    -1
    """
    behind = 2 * l0_files >= options.level0_slowdown_writes_trigger
    if bottommost and not behind and options.bottommost_compression_level is not None:
        return options.bottommost_compression_level
    return options.compression_level


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


def read_compaction_units(version):
    """The read charge (lsmkv.core.iterator.ReadCharge: a filter probe 1 unit, a
    block read 16) at which reads have spent on level 0's overlapping runs what
    merging level 0 into level 1 would cost, or 0 if that merge would not leave
    fewer runs. The merge is bought once they have:
    the ski-rental rule, so a read-heavy load pays at most twice the better of
    never merging and merging at once, and a load that reads little never merges
    early. A unit is worth READ_CHARGE_BYTES of compaction input, as measured on
    this engine: a compaction merges about 6.9 ns per input byte of CPU, and a seek
    spends about 2 us per run it positions past its first (a block read: 16 units,
    ~290 bytes of compaction). LevelDB compacts a file after file_size / 16 KiB
    such seeks, its costs being disk seeks; here they are CPU. A merge leaves
    fewer runs when level 0 holds two tables or more, or one over level-1 tables
    it overlaps.

    >>> from lsmkv.engine.version import FileMeta, Version
    >>> t = lambda n, lo, hi: FileMeta(n, 1 << 20, lo + bytes(8), hi + bytes(8))
    >>> v = Version([[t(2, b"a", b"m"), t(1, b"c", b"z")]] + [[] for _ in range(6)])
    >>> read_compaction_units(v) == (2 << 20) // READ_CHARGE_BYTES
    True
    >>> one = Version([[t(2, b"a", b"m")], [t(1, b"n", b"z")]] + [[] for _ in range(5)])
    >>> read_compaction_units(one)      # no level-1 table under it: one run either way
    0
    """
    l0 = version.levels[0]
    if not l0:
        return 0
    inputs = _with_next_level(version, 0, l0)
    if len(l0) == 1 and 1 not in inputs:
        return 0
    return max(1, sum(f.file_size for fs in inputs.values() for f in fs) // READ_CHARGE_BYTES)


def _garbage_heavy(f, now_ms, oldest_snapshot):
    """A file worth rewriting for its garbage alone: some of its TTL data has expired,
    or half its entries are deletions that no snapshot still needs. (Range
    tombstones: _worth_for_tombstones.)"""
    if f.min_expiry and f.min_expiry <= now_ms:
        return True
    return f.num_entries and 2 * f.num_deletions >= f.num_entries and f.largest_seq <= oldest_snapshot


def _worth_for_tombstones(f, covered, inputs):
    """Is rewriting inputs (a pick that merges f down) worth it for the bytes f's
    range tombstones cover below it (covered)? They must outweigh f itself and
    half of what the compaction rewrites: a tombstone over a few keys of a large
    table below is left for the size-driven compactions."""
    return covered >= max(f.file_size, 1) and 2 * covered >= sum(g.file_size for fs in inputs.values() for g in fs)


def tombstone_coverage(version, level, f, tombstones, table_bytes):
    """Bytes of table data that f's range tombstones delete in the tables under it
    (deeper levels; at level 0 also the level-0 files older than f), estimated from
    index blocks as approximate_size is. tombstones: f's fragments [(start, end,
    seq)] that every snapshot sees; table_bytes(g, start, stop): the bytes of
    table g's data blocks holding keys in [start, stop) (None: unbounded;
    lsmkv.engine.estimates.table_bytes). A flush or compaction that leaves a range
    deletion in a table over data below it would otherwise leave that data on disk
    until writes make the levels full (a large delete_range, the server's
    FLUSHDB): this is what lets pick_auto collect it, as RocksDB counts the bytes
    under range tombstones in a file's compensated size. Levels >= 1 are sorted
    and disjoint: each span finds its first file there by bisection."""
    if not tombstones:
        return 0
    spans = []                                  # the fragments' union, sorted, disjoint
    for s, e, _ in sorted(tombstones):
        if spans and s <= spans[-1][1]:
            if e > spans[-1][1]:
                spans[-1][1] = e
        else:
            spans.append([s, e])

    def part(g, s, e):
        return table_bytes(g, None if s <= g.smallest_user_key else s, None if e > g.largest_user_key else e)

    total = 0
    if level == 0:
        oldest = min(q for _, _, q in tombstones)
        for g in version.levels[0]:
            if g.largest_seq < oldest:
                total += sum(part(g, s, e) for s, e in spans
                             if s <= g.largest_user_key and e > g.smallest_user_key)
    for lv in range(level + 1, NUM_LEVELS):
        files = version.levels[lv]
        if not files:
            continue
        largest = [g.largest_user_key for g in files]
        for s, e in spans:
            i = bisect_left(largest, s)         # the first file whose keys reach s
            while i < len(files) and files[i].smallest_user_key < e:
                total += part(files[i], s, e)
                i += 1
    return total


class Pick:
    __slots__ = ("inputs", "output_level", "reason")

    def __init__(self, inputs, output_level, reason):
        self.inputs = inputs
        self.output_level = output_level
        self.reason = reason


class Running:
    """A compaction being merged (registered in the scheduler's running list)."""
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


def pick_auto(version, options, pointers, now_ms, oldest_snapshot, running=(), coverage=None,
              reads_due=False):
    """The next background compaction that does not conflict with a running one
    (`running`: Running entries), or None.

    1. By level score, highest first, among scores >= 1: all of L0 into L1; or,
       for L1..L5, the first file from that level's compaction pointer on (round
       robin, as LevelDB does) with the files of the next level it overlaps.
    2. Else, if reads_due (read_compaction_units reached), all of L0 into L1 ("reads").
    3. Else a file holding expired TTL data, mostly deletions, or range
       tombstones over more data below than it holds and than half of what the
       compaction would rewrite (coverage(level, f): those bytes, asked only
       here; tombstone_coverage()) ("garbage"): it is merged down a level (or
       rewritten in place at the last level), so expired and deleted data leaves
       the disk even when nobody writes. A range tombstone moves down one level
       per such compaction, and is dropped at the bottommost level.
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
    if reads_due and version.levels[0]:
        inputs = _with_next_level(version, 0, version.levels[0])
        if not conflicts(inputs, 1, running):
            return Pick(inputs, 1, "reads")
    for level, files in enumerate(version.levels):
        for f in files:
            heavy = _garbage_heavy(f, now_ms, oldest_snapshot)
            covered = 0 if heavy or coverage is None else coverage(level, f)
            if not heavy and not covered:
                continue
            if level == 0:
                pick = Pick(_with_next_level(version, 0, version.levels[0]), 1, "garbage")
            elif level == NUM_LEVELS - 1:
                pick = Pick({level: [f]}, level, "garbage")
            else:
                pick = Pick(_with_next_level(version, level, [f]), level + 1, "garbage")
            if not heavy and not _worth_for_tombstones(f, covered, pick.inputs):
                continue
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
