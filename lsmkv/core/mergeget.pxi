# mergeget.pxi: the point read of a key whose newest visible entry is a merge
# operand (get, multi_get; Core._merge_get). A part of lsmkv/core/dbcore.pyx
# (included there; its cimports are that module's).
#
# Thread safety: as a get (core.pxi): no lock, one SuperVersion for the call.
#
# Invariants:
#   1. The sources are read newest first, as _lookup reads them (memtables, then
#      L0 tables newest first, then one table per deeper level): every entry of
#      the key in a newer source has a larger sequence than any in an older one,
#      so the operands come newest first and the first other entry is the base.
#   2. A table is read only if its key range holds the key and its bloom filter
#      does not rule the key out, as _lookup does; only the key's entries at or
#      below seq are read.
#   3. Range tombstones: cover is the sequence of the newest tombstone covering
#      the key at seq (0: none; the caller finds it once). Every entry older than
#      cover is deleted, so the first one reached is the base None (as a DELETE):
#      the operands newer than the tombstone fold over no value.

cdef enum:
    MG_MORE = 0         # no base yet: ask the next source
    MG_DONE = 1         # a base was reached (or none is needed)


cdef inline int _mg_entry(uint64_t tag, const uint8_t* v, size_t vn, int64_t now, uint64_t cover,
                          list ops, list base) except -1:
    """One entry of the key (its tag), newest first: an operand joins ops; anything
    else, or any entry older than cover (a range tombstone deleted it), is the base
    (base[0]: its value, or None for a deletion or an expired TTL put)."""
    cdef int kind = <int>(tag & 0xFF)
    if cover and (tag >> 8) < cover:
        base.append(None)
        return MG_DONE
    if kind == KIND_MERGE:
        ops.append(PyBytes_FromStringAndSize(<char*>v, vn))
        return MG_MORE
    if kind == KIND_PUT:
        base.append(PyBytes_FromStringAndSize(<char*>v, vn))
    elif kind == KIND_PUT_TTL and vn >= 8 and <int64_t>load_u64(v) > now:
        base.append(PyBytes_FromStringAndSize(<char*>v + 8, vn - 8))
    else:
        base.append(None)
    return MG_DONE


cdef int _mg_memtable(MemTable m, const uint8_t* ik, size_t ikn, int64_t now, uint64_t cover, list ops,
                      list base) except -1:
    cdef Node* x = m.seek_ge(ik, ikn, NULL)
    cdef size_t ukn = ikn - TAG_SIZE
    while x != NULL and x.klen == ikn and (ukn == 0 or memcmp(node_key(x), ik, ukn) == 0):
        if _mg_entry(load_u64(node_key(x) + ukn), node_val(x), x.vlen, now, cover,
                     ops, base) == MG_DONE:
            return MG_DONE
        x = x.next[0]
    return MG_MORE


cdef int _mg_table(TableReader t, uint64_t h, const uint8_t* ik, size_t ikn, int64_t now, uint64_t cover,
                   list ops, list base) except -1:
    cdef BlockIter bi
    if not t.may_contain(h):
        return MG_MORE
    bi = BlockIter()
    if not t.seek_in_block(bi, ik, ikn):
        return MG_MORE                         # past the table's last entry
    return _mg_block(t, bi, ik, ikn, now, cover, ops, base)


cdef int _mg_block(TableReader t, BlockIter bi, const uint8_t* ik, size_t ikn, int64_t now,
                   uint64_t cover, list ops, list base) except -1:
    """Table t's entries of ik's key from bi on (bi stands at the first entry >=
    ik in the data block a point read reads). They are in that block almost
    always (no TableIterator to build); only if they reach the block's end are
    they read again with a TableIterator, which goes on into the next block."""
    cdef size_t ukn = ikn - TAG_SIZE
    cdef Py_ssize_t n0 = len(ops)
    cdef TableIterator it
    while bi.valid:
        if bi.key_len != ikn or (ukn and memcmp(bi.key, ik, ukn) != 0):
            return MG_MORE                     # past the key's entries in this table
        if _mg_entry(load_u64(bi.key + ukn), bi.val, bi.val_len, now, cover, ops, base) == MG_DONE:
            return MG_DONE
        bi.next()
    del ops[n0:]
    it = TableIterator(t)
    it.seek(ik, ikn)
    while it.valid and it.key_len == ikn and (ukn == 0 or memcmp(it.key, ik, ukn) == 0):
        if _mg_entry(load_u64(it.key + ukn), it.val, it.val_len, now, cover, ops, base) == MG_DONE:
            return MG_DONE
        it.next()
    return MG_MORE


cdef object merge_lookup(SuperVersion sv, MergeOperator op, const uint8_t* k, size_t kn, uint64_t seq,
                         int64_t now, uint64_t cover=0, TableReader found=None, BlockIter at=None,
                         Py_ssize_t next_l0=0, Py_ssize_t next_level=0):
    """The value of user key k at seq, its newest visible entry being a merge
    operand: the operands, newest first down to the base, folded by op (oldest
    first). cover: invariant 3. Errors of the operator propagate.

    found/at: the point read met the operand in table found, where at stands on
    it (TableReader.get's `use`): the read goes on from there (the memtables and
    the tables before found hold no entry of k at seq), then with sv.l0 from
    index next_l0 and sv.levels from index next_level."""
    cdef list ops = []
    cdef list base = []
    cdef MemTable m
    cdef TableReader t
    cdef tuple lv
    cdef Py_ssize_t i, li
    cdef bytes b
    cdef bytes ikb = PyBytes_FromStringAndSize(NULL, kn + TAG_SIZE)     # (k, seq, KIND_MAX)
    cdef const uint8_t* ik = <const uint8_t*>PyBytes_AS_STRING(ikb)
    cdef size_t ikn = kn + TAG_SIZE
    cdef uint64_t h
    if kn:
        memcpy(<uint8_t*>ik, k, kn)
    store_u64(<uint8_t*>ik + kn, make_tag(seq, KIND_MAX))
    if op is None:
        no_merge_operator(k, kn)
    while True:             # one pass over the sources, left at the first base
        if found is None:
            if _mg_memtable(sv.mem, ik, ikn, now, cover, ops, base) == MG_DONE:
                break
            for m in sv.imms:
                if _mg_memtable(m, ik, ikn, now, cover, ops, base) == MG_DONE:
                    break
        elif _mg_block(found, at, ik, ikn, now, cover, ops, base) == MG_DONE:
            break
        if base:
            break
        h = bloom_hash(k, kn)
        for i in range(next_l0, len(sv.l0)):
            t = <TableReader>sv.l0[i]
            if t.in_range(k, kn) and _mg_table(t, h, ik, ikn, now, cover, ops, base) == MG_DONE:
                break
        if base:
            break
        for li in range(next_level, len(sv.levels)):
            lv = <tuple>sv.levels[li]
            i = find_table(<list>lv[1], ik, ikn)
            if i == len(<list>lv[1]):
                continue
            b = <bytes>(<list>lv[2])[i]
            if cmp_bytes(k, kn, <const uint8_t*>PyBytes_AS_STRING(b), PyBytes_GET_SIZE(b)) < 0:
                continue
            if _mg_table(<TableReader>(<tuple>lv[0])[i], h, ik, ikn, now, cover, ops, base) == MG_DONE:
                break
        break
    ops.reverse()
    return op.full_merge(PyBytes_FromStringAndSize(<char*>k, kn), base[0] if base else None, ops)
