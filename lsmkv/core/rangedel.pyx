# cython: language_level=3
"""Range tombstones: db.delete_range(start, stop) writes one record (kind
KIND_RANGE_DELETE = 4, user key = start, value = stop) that deletes every user
key k with start <= k < stop whose sequence is below the tombstone's.

A RangeDelSet is the read-side form of a set of tombstones (RocksDB's
FragmentedRangeTombstoneList): the tombstones cut into non-overlapping fragments
at every start and end, each fragment carrying the sequences of all the
tombstones that cover it, newest first. A lookup is a binary search over the
fragment starts, then a scan of that fragment's (few) sequences.

Where tombstones live: a memtable keeps its own in a list beside the skiplist
(MemTable.range_dels), a table in its range-del block (docs/format.md), read
into memory when the table opens (TableReader.range_dels). A read with
tombstones anywhere in its SuperVersion builds one RangeDelSet over all of them
(cached per SuperVersion); a read of a DB without tombstones never gets here.

Thread safety: a RangeDelSet is immutable once built; any thread may read it.

Invariants:
  1. starts is strictly ascending, starts[i] < ends[i] <= starts[i + 1].
  2. seqs[i] is non-empty and strictly descending.
  3. A key k is deleted at read sequence S for a version of sequence e iff some
     tombstone covering k has e < seq <= S (max_covering(k, S) > e).
"""
from libc.stdint cimport uint8_t, uint64_t
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE
from lsmkv.core.coding cimport cmp_bytes


cdef inline int _cmpb(const uint8_t* k, size_t kn, bytes b) noexcept:
    return cmp_bytes(k, kn, <const uint8_t*>PyBytes_AS_STRING(b), PyBytes_GET_SIZE(b))


def fragment(tombstones):
    """[(start, end, (seq, ...)), ...]: the tombstones (an iterable of (start, end,
    seq), possibly overlapping; empty ranges ignored) cut into non-overlapping
    fragments sorted by start, each with the covering sequences newest first.
    Adjacent fragments with the same sequences are joined.

    >>> fragment([(b"a", b"m", 5), (b"f", b"z", 9)])
    [(b'a', b'f', (5,)), (b'f', b'm', (9, 5)), (b'm', b'z', (9,))]
    """
    ts = [(bytes(s), bytes(e), int(q)) for s, e, q in tombstones if s < e]
    if not ts:
        return []
    bounds = sorted({s for s, _, _ in ts} | {e for _, e, _ in ts})
    by_start = sorted(ts, key=lambda t: t[0])
    by_end = sorted(ts, key=lambda t: t[1])
    active = {}
    out = []
    i = j = 0
    n = len(ts)
    for bi in range(len(bounds) - 1):
        b = bounds[bi]
        while j < n and by_end[j][1] <= b:
            q = by_end[j][2]
            active[q] -= 1
            if not active[q]:
                del active[q]
            j += 1
        while i < n and by_start[i][0] <= b:
            q = by_start[i][2]
            active[q] = active.get(q, 0) + 1
            i += 1
        if active:
            seqs = tuple(sorted(active, reverse=True))
            nb = bounds[bi + 1]
            if out and out[len(out) - 1][1] == b and out[len(out) - 1][2] == seqs:
                out[len(out) - 1] = (out[len(out) - 1][0], nb, seqs)
            else:
                out.append((b, nb, seqs))
    return out


def compact_fragments(fragments, uint64_t smallest_snapshot, bint bottommost):
    """The (start, end, seq) triples a compaction output keeps of fragments
    (fragment()'s form): every sequence above smallest_snapshot (some snapshot
    may read below it), and the newest one at or below it (it hides what every
    snapshot must not see), unless the output is the bottommost level (nothing
    older lies below: nothing left to hide). Sorted by start, then seq descending.

    >>> f = fragment([(b"a", b"c", 3), (b"a", b"c", 5), (b"a", b"c", 8)])
    >>> compact_fragments(f, 6, False), compact_fragments(f, 6, True)
    ([(b'a', b'c', 8), (b'a', b'c', 5)], [(b'a', b'c', 8)])
    """
    out = []
    for s, e, seqs in fragments:
        for q in seqs:
            if q > smallest_snapshot:
                out.append((s, e, q))
            else:
                if not bottommost:
                    out.append((s, e, q))
                break
    return out


cdef class RangeDelSet:
    """A set of range tombstones, fragmented for binary search (see the module doc).

    >>> rd = RangeDelSet([(b"b", b"d", 10), (b"c", b"f", 20)])
    >>> rd.max_covering(b"c", 100), rd.max_covering(b"c", 15), rd.max_covering(b"f", 100)
    (20, 10, 0)
    >>> rd.covers(b"b", 9, 100), rd.covers(b"b", 11, 100)
    (True, False)

    base: another set this one adds to (a memtable's tombstones over those of
    the tables, so the tables' are fragmented once per SuperVersion):
    >>> RangeDelSet([(b"a", b"c", 30)], base=rd).max_covering(b"c", 100)
    30
    """

    def __init__(self, tombstones=(), RangeDelSet base=None):
        self.base = base
        self.starts = []
        self.ends = []
        self.seqs = []
        for s, e, q in fragment(tombstones):
            self.starts.append(s)
            self.ends.append(e)
            self.seqs.append(q)

    def __len__(self):
        return len(self.starts)

    cdef Py_ssize_t _after(self, const uint8_t* k, size_t kn) noexcept:
        """Index of the first fragment starting after k (len(starts) if none)."""
        cdef Py_ssize_t lo = 0, hi = len(self.starts), mid
        while lo < hi:
            mid = (lo + hi) >> 1
            if _cmpb(k, kn, <bytes>self.starts[mid]) >= 0:
                lo = mid + 1
            else:
                hi = mid
        return lo

    cdef Py_ssize_t find(self, const uint8_t* k, size_t kn) noexcept:
        """Index of the fragment holding k, or -1."""
        cdef Py_ssize_t i = self._after(k, kn) - 1
        if i < 0 or _cmpb(k, kn, <bytes>self.ends[i]) >= 0:
            return -1
        return i

    cdef bint cut_ok_c(self, const uint8_t* k, size_t kn) noexcept:
        """May a compaction start a new output file at user key k? Only if no
        fragment of this set (its base aside) holds k or ends at k: then each
        fragment lies wholly before k or wholly after it, and the earlier file's
        key range (up to a fragment's exclusive end) stays below k."""
        cdef Py_ssize_t i = self._after(k, kn) - 1
        return i < 0 or _cmpb(k, kn, <bytes>self.ends[i]) > 0

    def cut_ok(self, bytes key):
        return self.cut_ok_c(<const uint8_t*>PyBytes_AS_STRING(key), PyBytes_GET_SIZE(key))

    cdef uint64_t max_covering_c(self, const uint8_t* k, size_t kn, uint64_t seq) noexcept:
        """The newest sequence <= seq of a tombstone covering k, or 0 if none."""
        cdef Py_ssize_t i = self.find(k, kn)
        cdef object q
        cdef uint64_t r = 0
        if self.base is not None:
            r = self.base.max_covering_c(k, kn, seq)
        if i < 0:
            return r
        for q in <tuple>self.seqs[i]:
            if <uint64_t>q <= seq:
                return <uint64_t>q if <uint64_t>q > r else r
        return r

    cdef bint covers_c(self, const uint8_t* k, size_t kn, uint64_t eseq, uint64_t seq) noexcept:
        """Is a version of k with sequence eseq deleted for a read at seq?"""
        return self.max_covering_c(k, kn, seq) > eseq

    def max_covering(self, bytes key, uint64_t seq):
        return self.max_covering_c(<const uint8_t*>PyBytes_AS_STRING(key), PyBytes_GET_SIZE(key), seq)

    def covers(self, bytes key, uint64_t eseq, uint64_t seq):
        return self.covers_c(<const uint8_t*>PyBytes_AS_STRING(key), PyBytes_GET_SIZE(key), eseq, seq)

    def fragments(self):
        """[(start, end, (seq, ...))] as fragment() gives them (of this set, not its base)."""
        return list(zip(self.starts, self.ends, self.seqs))
