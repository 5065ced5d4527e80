# multiget.pxi: Core's batched point lookup (db.multi_get, Snapshot.multi_get).
# A part of lsmkv/core/dbcore.pyx (included there; its cimports are that module's).
#
# Thread safety: as a get (core.pxi): no lock; one SuperVersion and one sequence
# for the whole call, so the answers are one consistent view. The keys are
# converted first (an iterable may run Python code, and so let other threads
# run), then sv is read, then last_seq (db.multi_get): the order of every reader
# (a sequence read before sv could fall below what a compaction finished since
# has kept, and show an overwritten value).
#
# Invariants:
#   1. Every answer is what _lookup would give (a key whose first entry found is
#      a merge operand is answered by the same fold, Core._merge_get) for that key at the same sequence
#      and the same `now`: memtables newest first, then L0 tables newest first,
#      then one table per deeper level; the first entry found decides.
#   2. Once a key is decided (a value, a deletion or an expired value) no older
#      source is asked about it: `pending` holds the undecided keys, by ascending
#      key, and shrinks after each source.
#   3. Each memtable is searched once per call for all its undecided keys, the
#      searches interleaved (MemTable.seek_ge_many).
#   4. Each table is asked once per call, about its keys in ascending order
#      (TableReader.get_many), so a data block is found and decoded once for all
#      the keys it holds.

cdef list core_multi_get(Core c, object keys, object at, object default):
    """The values of keys (any iterable of bytes-like keys) at sequence `at` (None:
    the latest, read after the SuperVersion), in the order given; default where a
    key is absent, deleted or expired."""
    cdef uint64_t seq
    cdef SuperVersion sv
    cdef list ks = []           # the keys as bytes
    cdef list iks               # internal keys: key + tag(seq, KIND_MAX)
    cdef list hs                # bloom hashes
    cdef list results
    cdef list pending = []      # undecided indices, by ascending key
    cdef list sub
    cdef Py_ssize_t i, n, j, cur
    cdef TableReader t
    cdef tuple lv
    cdef list largest, smallest
    cdef tuple tables
    cdef int64_t now
    cdef bytes k, tag, ik, b
    cdef unsigned long long hits = 0
    for key in keys:
        ks.append(_as_key(key))
    if c.closed:
        raise c.state.error()
    sv = c.sv
    seq = c.last_seq if at is None else <uint64_t>at
    if sv.static_range_dels is not None or sv.mem.range_dels is not None:
        # range tombstones somewhere: each key as a get sees it (Core._lookup)
        results = []
        for k in ks:
            r = c._lookup(<const uint8_t*>PyBytes_AS_STRING(k), PyBytes_GET_SIZE(k), seq, NULL, False, sv)
            if r is not None:
                hits += 1
            results.append(default if r is None else r)
        c.n_gets += len(ks)
        c.n_get_hits += hits
        return results
    n = len(ks)
    results = [None] * n
    tag = PyBytes_FromStringAndSize(NULL, TAG_SIZE)
    store_u64(<uint8_t*>PyBytes_AS_STRING(tag), make_tag(seq, KIND_MAX))
    iks = [<bytes>k + tag for k in ks]
    pending = _memtables_pass(c, sv, ks, iks, results)
    if pending and (sv.l0 or sv.levels):
        pending.sort(key=ks.__getitem__)
        hs = [0] * n
        for i in pending:
            k = <bytes>ks[i]
            hs[i] = bloom_hash(<const uint8_t*>PyBytes_AS_STRING(k), PyBytes_GET_SIZE(k))
        now = c._now_ms()
        for t in sv.l0:
            sub = []
            for i in pending:
                k = <bytes>ks[i]
                if t.in_range(<const uint8_t*>PyBytes_AS_STRING(k), PyBytes_GET_SIZE(k)) and \
                        _bloom_passes(c, t, <uint64_t>hs[i]):
                    sub.append(i)
            if sub:
                t.get_many(iks, sub, results, now)
                pending = [i for i in pending if results[i] is None]
                if not pending:
                    break
        for lv in sv.levels:
            if not pending:
                break
            tables = <tuple>lv[0]
            largest = <list>lv[1]
            smallest = <list>lv[2]
            cur = -1
            sub = []
            for i in pending:       # ascending keys: their tables come in ascending order
                ik = <bytes>iks[i]
                j = find_table(largest, <const uint8_t*>PyBytes_AS_STRING(ik), PyBytes_GET_SIZE(ik))
                if j == len(largest):
                    break           # past the level's last table, as are the keys after it
                k = <bytes>ks[i]
                b = <bytes>smallest[j]
                if cmp_bytes(<const uint8_t*>PyBytes_AS_STRING(k), PyBytes_GET_SIZE(k),
                             <const uint8_t*>PyBytes_AS_STRING(b), PyBytes_GET_SIZE(b)) < 0:
                    continue        # in the gap before table j
                if j != cur:
                    if sub:
                        (<TableReader>tables[cur]).get_many(iks, sub, results, now)
                    cur = j
                    sub = []
                if _bloom_passes(c, <TableReader>tables[j], <uint64_t>hs[i]):
                    sub.append(i)
            if sub:
                (<TableReader>tables[cur]).get_many(iks, sub, results, now)
            pending = [i for i in pending if results[i] is None]
    for i in range(n):
        r = results[i]
        if r is MERGED:         # a merge operand on top: fold it (the slow path, as _lookup)
            k = <bytes>ks[i]
            r = results[i] = c._merge_get(sv, <const uint8_t*>PyBytes_AS_STRING(k), PyBytes_GET_SIZE(k), seq)
        if r is None or r is DELETED:
            results[i] = default
        else:
            hits += 1
    c.n_gets += n
    c.n_get_hits += hits
    return results


cdef list _memtables_pass(Core c, SuperVersion sv, list ks, list iks, list results):
    """Search the memtables, newest first, for every key (ikeys: the keys with the
    read's tag); decided keys get their result (DELETED for a deletion or an
    expired value). Returns the undecided indices. Each memtable searches its keys
    together (MemTable.seek_ge_many: the searches interleaved, their cache misses
    overlapping)."""
    cdef Py_ssize_t n = len(ks), m, j, i
    cdef list pending = list(range(n))
    cdef list rest
    cdef MemTable mt
    cdef Node* x
    cdef bytes k, ik
    cdef size_t kn
    cdef const uint8_t** ptrs = <const uint8_t**>malloc(n * sizeof(uint8_t*) + 1)
    cdef size_t* lens = <size_t*>malloc(n * sizeof(size_t) + 1)
    cdef Node** found = <Node**>malloc(n * sizeof(Node*) + 1)
    try:
        if ptrs == NULL or lens == NULL or found == NULL:
            raise MemoryError()
        for mt in (sv.mem,) + sv.imms:
            m = len(pending)
            if m == 0:
                break
            for j in range(m):
                ik = <bytes>iks[<Py_ssize_t>pending[j]]
                ptrs[j] = <const uint8_t*>PyBytes_AS_STRING(ik)
                lens[j] = PyBytes_GET_SIZE(ik)
            mt.seek_ge_many(ptrs, lens, m, found)
            rest = []
            for j in range(m):
                i = pending[j]
                x = found[j]
                kn = lens[j] - TAG_SIZE
                if x == NULL or x.klen != lens[j] or (kn and memcmp(node_key(x), ptrs[j], kn) != 0):
                    rest.append(i)
                    continue
                r = c._mem_result(<int>(load_u64(node_key(x) + kn) & 0xFF), node_val(x), x.vlen, NULL)
                results[i] = DELETED if r is None else r
            pending = rest
        return pending
    finally:
        free(ptrs)
        free(lens)
        free(found)


cdef inline bint _bloom_passes(Core c, TableReader t, uint64_t h) except -1:
    """The table's bloom filter may hold the key (counted as a get's probe is)."""
    c.n_bloom_checks += 1
    if not t.may_contain(h):
        c.n_bloom_useful += 1
        return False
    return True


cdef bytes _as_key(object key):
    """key as bytes (a copy of a bytearray or memoryview); TypeError as get() gives."""
    if PyBytes_CheckExact(key):
        return <bytes>key
    if isinstance(key, (bytearray, memoryview, bytes)):
        return bytes(key)
    raise TypeError(f"key must be bytes, bytearray or memoryview, not {type(key).__name__}")
