# cython: language_level=3
"""Flush and compaction output: write_tables() streams an iterator (a memtable, or
a compaction's merge of tables) into new tables, deciding which entries survive.
Where entries are dropped is the LSM's rule, not the table format's:

  * an entry is dropped when a newer entry of the same user key is visible to
    every snapshot (its sequence <= smallest_snapshot);
  * an expired TTL entry becomes a deletion (it must keep hiding older versions);
  * a deletion visible to every snapshot is dropped when the output is the
    bottommost level (nothing older can lie below);
  * at the bottommost level, the version every snapshot sees is written with
    sequence number 0 (it is the oldest version of its key there will ever be);
  * outputs are cut at target_file_size, only between user keys;
  * range tombstones (lsmkv.core.rangedel) of the inputs, fragmented, go to the
    range-del blocks of the outputs (each fragment to the output its start falls
    in; an output is cut only at a user key no fragment holds or ends at, so no
    fragment is split and each output's key range ends below the next one's
    start); an entry that a tombstone visible to every snapshot covers is
    dropped, and at the bottommost level such a tombstone is dropped too
    (compact_fragments).
  * merge operands (KIND_MERGE) visible to every snapshot are folded, newest
    first down to their base (fold_operands): with the base (a put; a deletion
    or an expired TTL put is a missing base), or at the bottommost level, into
    one put (op.full_merge); else, where the operator can (op.can_partial), into
    one operand (op.partial_merge); a live TTL put under them stays, as does
    every operand newer than the oldest snapshot (no fold across a snapshot).
    Without a merge operator (repair) operands and what lies under them are
    kept as they are, as are the operands and base a built-in cannot fold
    (uint64add given a value that is not 8 bytes: reads report it). A callable's
    error fails the flush or compaction (MergeOperatorError naming the key; the
    inputs stay).
  * range tombstones and merge operands: an operand a tombstone visible to every
    snapshot covers is dropped like a covered put; a stack of operands visible to
    every snapshot that lies over such a tombstone stops there (the entries under
    it are no base) and is folded into one put with no base (op.full_merge over
    None), as over a deletion at the bottommost level.

Thread safety: one write_tables() call per iterator; it uses only its own
WriteState and TableBuilders. A memtable is walked without the GIL (the memtable
is immutable then and the caller keeps it alive).

Invariants:
  1. The versions of one user key are never split across two output files.
  2. Every read at or after smallest_snapshot sees the same result in the
     outputs as in the input.
  3. On any error every output written so far is abandoned and deleted: the
     caller gets the exception and no files.
"""
import os

from libc.stdlib cimport free
from libc.string cimport memset
from libc.stdint cimport uint8_t, uint64_t, int64_t
from libc.errno cimport errno
from lsmkv.core.builder cimport TableBuilder, ERR_NOMEM, ERR_IO, OUT_FLUSH_BYTES
from lsmkv.core.bytebuf cimport Buf, buf_set_c
from cpython.bytes cimport PyBytes_FromStringAndSize, PyBytes_AS_STRING, PyBytes_GET_SIZE
from lsmkv.core.coding cimport (cmp_bytes, load_u64, store_u64, make_tag, KIND_DELETE, KIND_PUT, KIND_PUT_TTL,
                            KIND_MERGE, TAG_SIZE)
from lsmkv.core.merge cimport MergeOperator
from lsmkv.errors import MergeOperatorError
from lsmkv.core.iterator cimport InternalIterator
from lsmkv.core.memtable cimport MemTable, MemTableIterator, Node, node_key, node_val
from lsmkv.core.iterator cimport MergingIterator
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE
from lsmkv.core.table cimport TableIterator, LevelIterator, TableReader
from lsmkv.core.rangedel cimport RangeDelSet
from lsmkv.core.rangedel import compact_fragments as _compact_fragments


cdef list _range_dels_of(InternalIterator it):
    """The range tombstones of the sources under it (a memtable's, tables'), or None."""
    cdef list out = []
    cdef TableReader t
    if isinstance(it, MemTableIterator):
        if (<MemTableIterator>it).mem.range_dels is not None:
            out.extend((<MemTableIterator>it).mem.range_dels)
    elif isinstance(it, TableIterator):
        t = (<TableIterator>it).table
        if t.range_dels is not None:
            out.extend(t.range_dels)
    elif isinstance(it, LevelIterator):
        for t in (<LevelIterator>it).tables:
            if t.range_dels is not None:
                out.extend(t.range_dels)
    elif isinstance(it, MergingIterator):
        for child in (<MergingIterator>it).children:
            r = _range_dels_of(child)
            if r:
                out.extend(r)
    return out or None


cdef int classify(WriteState* s, const uint8_t* k, size_t kn, const uint8_t* v, size_t vn,
                  bint* first_of_key, const uint8_t** wk, size_t* wvn) noexcept nogil:
    """Decide an entry's fate: 1 write (wk, kn, v, wvn), 0 drop, -1 out of memory,
    2 a merge operand to fold from here (fold_operands; not written yet).
    first_of_key: the entry starts a new user key (an output may be cut before it)."""
    cdef size_t ukn = kn - TAG_SIZE
    cdef uint64_t tag = load_u64(k + ukn)
    cdef uint64_t seq = tag >> 8
    cdef int kind = tag & 0xFF
    first_of_key[0] = not s.has_cur or cmp_bytes(s.cur_ukey.p, s.cur_ukey.len, k, ukn) != 0
    if first_of_key[0]:
        if buf_set_c(&s.cur_ukey, k, ukn) < 0:
            return -1
        s.has_cur = True
        s.last_seq_for_key = <uint64_t>-1
    wk[0] = k
    wvn[0] = vn
    if s.last_seq_for_key <= s.smallest_snapshot:
        # a newer version of this key is visible to every snapshot
        s.dropped_hidden += 1
        s.last_seq_for_key = seq
        return 0
    if kind == KIND_MERGE:
        if seq <= s.smallest_snapshot:
            if s.can_fold:
                return 2        # the newest operand every snapshot sees: fold_operands (needs the GIL)
            s.last_seq_for_key = <uint64_t>-1    # no operator: keep it and what lies under it
            return 1
        s.last_seq_for_key = seq
        return 1
    s.last_seq_for_key = seq
    if kind == KIND_PUT_TTL and vn >= 8 and <int64_t>load_u64(v) <= s.now:
        # expired: it must keep hiding older versions, so it becomes a deletion
        s.expired += 1
        kind = KIND_DELETE
        if buf_set_c(&s.kbuf, k, kn) < 0:
            return -1
        store_u64(s.kbuf.p + ukn, make_tag(seq, KIND_DELETE))
        wk[0] = s.kbuf.p
        wvn[0] = 0
    if kind == KIND_DELETE and s.bottommost and seq <= s.smallest_snapshot:
        s.dropped_deletes += 1
        return 0
    if s.bottommost and seq <= s.smallest_snapshot and seq != 0:
        # the key's one version every snapshot sees, and nothing older lies below: its
        # sequence number says nothing any more, so it is written as 0 (RocksDB does the
        # same at the bottommost level); eight bytes of zeros compress to almost nothing
        if wk[0] != s.kbuf.p and buf_set_c(&s.kbuf, k, kn) < 0:
            return -1
        store_u64(s.kbuf.p + ukn, make_tag(0, kind))
        wk[0] = s.kbuf.p
    return 1


def write_tables(InternalIterator it, new_table, uint64_t smallest_snapshot, bint bottommost,
                 int64_t now, uint64_t target_file_size, stats=None, MergeOperator merge_op=None):
    """Stream `it` (positioned by this function) into new tables.

    new_table() -> TableBuilder for the next output file. Drops an entry when a
    newer entry of the same user key is visible to every snapshot; turns an
    expired TTL entry into a deletion; drops a deletion visible to every
    snapshot when `bottommost` (nothing older can lie below), and there writes
    the version every snapshot sees with sequence number 0. Outputs are cut
    at target_file_size, only between user keys. Memory is bounded by one block
    per input plus one output block. Returns the finished tables' metadata
    (with "builder" set to the TableBuilder); `stats` (a dict) gets counts of
    dropped entries. merge_op folds merge operands (see the module docstring);
    an error it raises becomes a MergeOperatorError naming the key, and no
    output is kept.

    A MemTableIterator (a flush) is walked without the GIL: only opening and
    finishing an output file take it, so a flush running beside a busy writer
    thread never makes the writer wait for the GIL.
    """
    cdef TableBuilder tb = None
    cdef WriteState s
    memset(&s, 0, sizeof(WriteState))
    s.last_seq_for_key = <uint64_t>-1
    s.smallest_snapshot = smallest_snapshot
    s.bottommost = bottommost
    s.now = now
    s.can_fold = merge_op is not None
    outputs = []
    cdef RangeDelSet rd = None
    cdef list keep = None
    cdef Py_ssize_t nkeep = 0
    rds = _range_dels_of(it)
    if rds:
        rd = RangeDelSet(rds)
        keep = _compact_fragments(rd.fragments(), smallest_snapshot, bottommost)
        nkeep = len(keep)
    try:
        if rd is None and isinstance(it, MemTableIterator):
            tb = _write_memtable(&s, (<MemTableIterator>it).mem, new_table, target_file_size, outputs,
                                 merge_op)
        else:
            tb = _write_iterator(&s, it, new_table, target_file_size, outputs, rd, keep, merge_op)
        if keep:                # the fragments after the last cut
            if tb is None:
                tb = new_table()
            tb.add_range_dels(keep)
        if tb is not None:
            outputs.append(_finish(tb))
            tb = None
    except BaseException:
        if tb is not None:
            tb.abandon()
        for meta in outputs:
            meta["builder"].abandon()
            try:
                os.unlink(meta["builder"].path)
            except OSError:
                pass
        raise
    finally:
        free(s.cur_ukey.p)
        free(s.kbuf.p)
    if stats is not None:
        stats["dropped_hidden"] = stats.get("dropped_hidden", 0) + s.dropped_hidden
        stats["dropped_deletes"] = stats.get("dropped_deletes", 0) + s.dropped_deletes
        stats["ttl_dropped"] = stats.get("ttl_dropped", 0) + s.expired
        if rd is not None:
            stats["range_dropped"] = stats.get("range_dropped", 0) + s.dropped_range
            stats["range_tombstones_dropped"] = stats.get("range_tombstones_dropped", 0) + \
                sum(len(q) for _, _, q in rd.fragments()) - nkeep
        if s.merges_folded:
            stats["merges_folded"] = stats.get("merges_folded", 0) + s.merges_folded
    return outputs


cdef int fold_operands(WriteState* s, InternalIterator it, MergeOperator op, TableBuilder tb,
                       uint64_t cover) except -1:
    """`it` stands on a merge operand every snapshot sees, the newest such entry of
    its key (classify returned 2), not covered by a range tombstone every snapshot
    sees. Reads the operands under it down to a base and writes their fold to tb
    (see the module docstring); leaves `it` on the first entry not consumed: a
    live TTL base (kept, written by the caller's loop), an older entry of the key
    (dropped as hidden) or the next key. cover: the sequence of the newest range
    tombstone every snapshot sees covering the key (0: none): an entry older than
    it is deleted, so the fold stops there with no base, and is a full one even
    where the key's entries end (what lies below is deleted too)."""
    cdef size_t kn = it.key_len, ukn = kn - TAG_SIZE
    cdef bytes ik0 = PyBytes_FromStringAndSize(<char*>it.key, kn)
    cdef const uint8_t* kp = <const uint8_t*>PyBytes_AS_STRING(ik0)
    cdef uint64_t seq0 = load_u64(kp + ukn) >> 8
    cdef list iks = []          # the operands' internal keys and values, newest first
    cdef list vals = []
    cdef object base = None
    cdef int state = 0          # 0 end of key, 1 a base (None: deleted or expired), 2 a live TTL put
    cdef int kind
    cdef bytes key, out, nk
    cdef bytes base_ik = None, base_raw = None
    while it.valid and it.key_len == kn and cmp_bytes(it.key, ukn, kp, ukn) == 0:
        if cover and (load_u64(it.key + ukn) >> 8) < cover:
            state = 1               # deleted by the tombstone: no base (the caller drops it as hidden)
            break
        kind = load_u64(it.key + ukn) & 0xFF
        if kind == KIND_MERGE:
            iks.append(PyBytes_FromStringAndSize(<char*>it.key, kn))
            vals.append(PyBytes_FromStringAndSize(<char*>it.val, it.val_len))
            it.next()
            continue
        if kind == KIND_PUT_TTL and it.val_len >= 8 and <int64_t>load_u64(it.val) > s.now:
            state = 2
            break
        state = 1
        base_ik = PyBytes_FromStringAndSize(<char*>it.key, kn)        # kept as it is if a built-in fails
        base_raw = PyBytes_FromStringAndSize(<char*>it.val, it.val_len)
        if kind == KIND_PUT:
            base = PyBytes_FromStringAndSize(<char*>it.val, it.val_len)
        elif kind == KIND_PUT_TTL:
            s.expired += 1
        s.dropped_hidden += 1       # the base is folded into the put written
        it.next()
        break
    key = PyBytes_FromStringAndSize(<char*>kp, ukn)
    vals.reverse()                  # oldest first
    cdef bint full = state == 1 or (state == 0 and (s.bottommost or cover != 0))
    try:
        if full:
            out = op.full_merge(key, base, vals)
        else:
            out = op.partial_merge(key, vals) if op.can_partial and len(vals) > 1 else None
    except MergeOperatorError as e:
        if op.builtin:
            # bad data (uint64add given a value that is not 8 bytes): no operator
            # can fold it, so the entries stay as they are, for reads to report
            vals.reverse()
            _write_unfolded(s, tb, kn, iks, vals, base_ik, base_raw)
            return 0
        raise MergeOperatorError(f"merge operator {op.name!r} failed on key {key!r}: {e}") from e
    except Exception as e:
        raise MergeOperatorError(f"merge operator {op.name!r} failed on key {key!r}: "
                                 f"{type(e).__name__}: {e}") from e
    if full:
        nk = PyBytes_FromStringAndSize(<char*>kp, kn)
        store_u64(<uint8_t*>PyBytes_AS_STRING(nk) + ukn, make_tag(0 if s.bottommost else seq0, KIND_PUT))
        tb.add(<const uint8_t*>PyBytes_AS_STRING(nk), kn, <const uint8_t*>PyBytes_AS_STRING(out),
               PyBytes_GET_SIZE(out))
        s.merges_folded += len(vals)
        s.last_seq_for_key = seq0       # what lies under it is hidden
        return 0
    if out is not None:
        tb.add(kp, kn, <const uint8_t*>PyBytes_AS_STRING(out), PyBytes_GET_SIZE(out))
        s.merges_folded += len(vals) - 1
    else:
        vals.reverse()
        _write_unfolded(s, tb, kn, iks, vals, None, None)
    s.last_seq_for_key = <uint64_t>-1       # a live TTL base under them stays
    return 0


cdef int _write_unfolded(WriteState* s, TableBuilder tb, size_t kn, list iks, list vals,
                         bytes base_ik, bytes base_raw) except -1:
    """Write the operands (newest first) and the base (if consumed) as they were."""
    cdef bytes nk, v
    for nk, v in zip(iks, vals):
        tb.add(<const uint8_t*>PyBytes_AS_STRING(nk), kn, <const uint8_t*>PyBytes_AS_STRING(v),
               PyBytes_GET_SIZE(v))
    if base_ik is not None:
        tb.add(<const uint8_t*>PyBytes_AS_STRING(base_ik), kn, <const uint8_t*>PyBytes_AS_STRING(base_raw),
               PyBytes_GET_SIZE(base_raw))
        s.last_seq_for_key = load_u64(<const uint8_t*>PyBytes_AS_STRING(base_ik) + kn - TAG_SIZE) >> 8
    else:
        s.last_seq_for_key = <uint64_t>-1
    return 0


cdef TableBuilder _write_iterator(WriteState* s, InternalIterator it, new_table,
                                 uint64_t target_file_size, list outputs, RangeDelSet rd, list keep,
                                 MergeOperator op):
    """write_tables() over any iterator (a compaction's merge), with the GIL.
    Returns the output still open (the caller finishes or abandons it). rd: the
    inputs' range tombstones, or None; keep: the (start, end, seq) of them the
    outputs get, sorted by start: each finished output takes (and removes from
    keep) those starting before the key that starts the next."""
    cdef TableBuilder tb = None
    cdef bint first_of_key
    cdef const uint8_t* wk
    cdef size_t wvn
    cdef int act
    try:
        it.seek_to_first()
        while it.valid:
            act = classify(s, it.key, it.key_len, it.val, it.val_len, &first_of_key, &wk, &wvn)
            if act < 0:
                raise MemoryError()
            if act and rd is not None and rd.max_covering_c(it.key, it.key_len - TAG_SIZE, s.smallest_snapshot) > \
                    (load_u64(it.key + it.key_len - TAG_SIZE) >> 8):
                s.dropped_range += 1        # deleted by a tombstone every snapshot sees
                act = 0
            if first_of_key and tb is not None and tb.offset >= target_file_size and \
                    (rd is None or rd.cut_ok_c(it.key, it.key_len - TAG_SIZE)):
                if keep:
                    _give_range_dels(tb, keep, it.key, it.key_len - TAG_SIZE)
                outputs.append(_finish(tb))
                tb = None
            if act == 2:
                if tb is None:
                    tb = new_table()
                fold_operands(s, it, op, tb, 0 if rd is None else
                              rd.max_covering_c(it.key, it.key_len - TAG_SIZE, s.smallest_snapshot))
                continue
            if act:
                if tb is None:
                    tb = new_table()
                tb.add(wk, it.key_len, it.val, wvn)
            it.next()
    except BaseException:
        if tb is not None:
            tb.abandon()
        raise
    return tb


cdef TableBuilder _write_memtable(WriteState* s, MemTable mem, new_table,
                                 uint64_t target_file_size, list outputs, MergeOperator op):
    """write_tables() over a memtable, the GIL released except to open or finish
    an output. The memtable is immutable here and `mem` keeps its arena alive."""
    cdef TableBuilder tb = None
    cdef bint have_tb = False, first_of_key = False, cut = False
    cdef const uint8_t* wk = NULL
    cdef size_t wvn = 0
    cdef int act = 0, r = 0
    cdef Node* node = mem.head.next[0]
    cdef MemTableIterator mi
    try:
        while node != NULL:
            with nogil:
                while node != NULL:
                    act = classify(s, node_key(node), node.klen, node_val(node), node.vlen,
                                   &first_of_key, &wk, &wvn)
                    if act < 0:
                        r = ERR_NOMEM
                        break
                    cut = first_of_key and have_tb and tb.offset >= target_file_size
                    if cut or (act and not have_tb) or act == 2:
                        break                       # needs the GIL; the entry is classified, not yet written
                    if act:
                        r = tb.add_c(wk, node.klen, node_val(node), wvn)
                        if r < 0:
                            break
                        if tb.out.len >= OUT_FLUSH_BYTES and tb.flush_out_c() < 0:
                            r = ERR_IO
                            break
                    node = node.next[0]
            if r == ERR_IO:
                raise OSError(errno, f"write failed: {tb.path}: {os.strerror(errno)}")
            if r < 0:
                if have_tb:
                    tb._raise(r)
                raise MemoryError()
            if node == NULL:
                break
            if cut:
                outputs.append(_finish(tb))
                tb = None
                have_tb = False
            if act:
                if not have_tb:
                    tb = new_table()
                    have_tb = True
            if act == 2:
                mi = MemTableIterator(mem)
                mi.node = node
                mi._load()
                fold_operands(s, mi, op, tb, 0)       # no range tombstones here (write_tables)
                node = mi.node
                continue
            if act:
                tb.add(wk, node.klen, node_val(node), wvn)
            node = node.next[0]
    except BaseException:
        if tb is not None:
            tb.abandon()
        raise
    return tb


cdef int _give_range_dels(TableBuilder tb, list keep, const uint8_t* k, size_t kn) except -1:
    """Move the fragments of keep (sorted by start) that start before user key k
    to tb, the output about to be finished."""
    cdef Py_ssize_t j = 0, n = len(keep)
    while j < n and cmp_bytes(<const uint8_t*>PyBytes_AS_STRING(<bytes>keep[j][0]),
                              PyBytes_GET_SIZE(<bytes>keep[j][0]), k, kn) < 0:
        j += 1
    if j:
        tb.add_range_dels(keep[:j])
        del keep[:j]
    return 0


cdef dict _finish(TableBuilder tb):
    meta = tb.finish()
    meta["builder"] = tb
    meta["path"] = tb.path
    return meta

