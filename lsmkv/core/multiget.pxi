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
#      source is asked about it: `pend` holds the undecided keys (KeyRef: the
#      internal key in one buffer, its index, its bloom hash computed once for
#      every table), by ascending key after the memtables, and shrinks after
#      each source.
#   3. Each memtable is searched once per call for all its undecided keys, the
#      lookups grouped (MemTable.point_seek_many).
#   4. The tables are read in rounds: in each, every undecided key asks the
#      first table, from the source after the one it asked last, whose key range
#      and bloom filter (one hash per key for every table) may hold it; a table
#      answers all of its keys of the round in ascending key order, so a data
#      block is found and decoded once for all the keys it holds, and the blocks
#      every table of the round lacks in the cache are read and decompressed as
#      one batch, without the GIL and on helper threads too (readmany.pxi,
#      fetch.pxi). A key found in no table is absent. (Most keys are decided in
#      the first round: a bloom filter passes a key it lacks 1% of the time.)
#   5. With view (multi_get_views): the memtables are searched as in 3; each key
#      they leave undecided is then read as get_view() reads it (Core._lookup
#      with view, the same SuperVersion and sequence), one key at a time, so a
#      value in a cached block comes as a pinned ValueView (counted in view_pins)
#      and every value as the ValueView get_view() would give.

from lsmkv.core.table cimport KeyRef, MgTable, FetchJob, mg_prepare, mg_jobs, mg_fetch, mg_finish, mg_release
from libc.stdlib cimport calloc

DEF ROUND_KEYS = 512    # keys read together (their blocks pinned, the missing ones fetched as one batch)


cdef inline int _kcmp(const KeyRef* x, const KeyRef* y) noexcept nogil:
    """Order of KeyRefs by user key (their tags are the same)."""
    return cmp_bytes(x.p, x.n - TAG_SIZE, y.p, y.n - TAG_SIZE)


cdef void _sort_keys(KeyRef* a, Py_ssize_t n) noexcept nogil:
    """Sort a[0..n) by user key: quicksort (median of three) down to insertion
    sort of short runs; the comparison inlined (libc's qsort calls it through a
    pointer, and sorted a batch in twice the time)."""
    cdef Py_ssize_t i, j, mid
    cdef KeyRef t, pv
    while n > 12:
        mid = n // 2
        if _kcmp(&a[mid], &a[0]) < 0:
            t = a[mid]; a[mid] = a[0]; a[0] = t
        if _kcmp(&a[n - 1], &a[0]) < 0:
            t = a[n - 1]; a[n - 1] = a[0]; a[0] = t
        if _kcmp(&a[n - 1], &a[mid]) < 0:
            t = a[n - 1]; a[n - 1] = a[mid]; a[mid] = t
        pv = a[mid]
        i = 0
        j = n - 1
        while i <= j:
            while _kcmp(&a[i], &pv) < 0:
                i += 1
            while _kcmp(&pv, &a[j]) < 0:
                j -= 1
            if i <= j:
                t = a[i]; a[i] = a[j]; a[j] = t
                i += 1
                j -= 1
        # recurse into the shorter side, loop on the longer (stack depth O(log n))
        if j + 1 < n - i:
            _sort_keys(a, j + 1)
            a += i
            n -= i
        else:
            _sort_keys(a + i, n - i)
            n = j + 1
    for i in range(1, n):
        t = a[i]
        j = i - 1
        while j >= 0 and _kcmp(&t, &a[j]) < 0:
            a[j + 1] = a[j]
            j -= 1
        a[j + 1] = t


cdef list core_multi_get(Core c, object keys, object at, object default, bint view=False):
    """The values of keys (any iterable of bytes-like keys) at sequence `at` (None:
    the latest, read after the SuperVersion), in the order given; default where a
    key is absent, deleted or expired. view: each value a ValueView, as
    get_view() gives it (invariant 5)."""
    cdef uint64_t seq, tag
    cdef SuperVersion sv
    cdef list ks = []           # the keys as bytes
    cdef list results
    cdef Py_ssize_t i, n, j, m, q, total = 0, nl0, nsrc
    cdef TableReader t
    cdef int64_t now
    cdef bytes k
    cdef unsigned long long hits = 0
    cdef uint8_t* buf = NULL    # the internal keys, one after another
    cdef KeyRef* pend = NULL    # the undecided keys (after the memtables: by ascending key)
    cdef KeyRef* sub = NULL     # the keys one table is asked about
    cdef BlockIter ix, it       # every table's reads: its index, its data blocks
    cdef uint8_t* p
    for key in keys:
        ks.append(_as_key(key))
    if c.closed:
        raise c._closed_error()
    sv = c.sv
    seq = c.last_seq if at is None else <uint64_t>at
    n = len(ks)
    if sv.static_range_dels is not None or sv.mem.range_dels is not None:
        # range tombstones somewhere: each key as a get sees it (Core._lookup)
        results = []
        for k in ks:
            r = c._lookup(<const uint8_t*>PyBytes_AS_STRING(k), PyBytes_GET_SIZE(k), seq, NULL, view, sv)
            if r is not None:
                hits += 1
                if view:
                    r = _as_view(c, r)
            results.append(default if r is None else r)
        c.n_gets += n
        c.n_get_hits += hits
        return results
    results = [None] * n
    if n == 0:
        return results
    for i in range(n):
        total += PyBytes_GET_SIZE(<bytes>ks[i]) + TAG_SIZE
    buf = <uint8_t*>malloc(total)
    pend = <KeyRef*>malloc(n * sizeof(KeyRef))
    sub = <KeyRef*>malloc(n * sizeof(KeyRef))
    try:
        if buf == NULL or pend == NULL or sub == NULL:
            raise MemoryError()
        tag = make_tag(seq, KIND_MAX)
        p = buf
        for i in range(n):
            k = <bytes>ks[i]
            q = PyBytes_GET_SIZE(k)
            memcpy(p, PyBytes_AS_STRING(k), q)
            store_u64(p + q, tag)
            pend[i].p = p
            pend[i].n = q + TAG_SIZE
            pend[i].i = i
            p += q + TAG_SIZE
        m = _memtables_pass(c, sv, pend, n, results)
        if m and view:
            for j in range(m):          # invariant 5: as get_view, at this sv and seq
                results[pend[j].i] = c._lookup(pend[j].p, pend[j].n - TAG_SIZE, seq, NULL, True, sv)
                if results[pend[j].i] is None:
                    results[pend[j].i] = DELETED
        elif m and (sv.l0 or sv.levels):
            _sort_keys(pend, m)
            for j in range(m):
                pend[j].h = bloom_hash(pend[j].p, pend[j].n - TAG_SIZE)
            now = c._now_ms()
            ix = BlockIter()
            it = BlockIter()
            nl0 = len(sv.l0)
            nsrc = nl0 + len(sv.levels)
            if m <= ROUND_KEYS:
                for t in sv.l0:         # every level-0 filter line of every key, loaded together
                    for j in range(m):
                        t.prefetch_filter(pend[j].h)
            for j in range(m):
                pend[j].src = 0
                pend[j].asked = 0
            while m:
                m = _next_tables(c, sv, pend, m, nl0, nsrc)
                for j in range(0, m, ROUND_KEYS):   # a round's pins and buffers stay bounded
                    _read_round(pend + j, min(ROUND_KEYS, m - j), sub, nsrc, results, now, ix, it)
                m = _undecided(c, pend, m, results, nl0)
    finally:
        free(buf)
        free(pend)
        free(sub)
    for i in range(n):
        r = results[i]
        if r is MERGED:         # a merge operand on top: fold it (the slow path, as _lookup)
            k = <bytes>ks[i]
            r = results[i] = c._merge_get(sv, <const uint8_t*>PyBytes_AS_STRING(k), PyBytes_GET_SIZE(k), seq)
        if r is None or r is DELETED:
            results[i] = default
        else:
            hits += 1
            if view:
                results[i] = _as_view(c, r)
    c.n_gets += n
    c.n_get_hits += hits
    return results


cdef object _as_view(Core c, object r):
    """A found value as get_view() returns it (Core._get_view): bytes wrapped, a
    pinned view counted."""
    if type(r) is bytes:
        return ValueView.of(r, <const uint8_t*>PyBytes_AS_STRING(r), PyBytes_GET_SIZE(r))
    if (<ValueView>r).cache is not None:
        c.n_view_pins += 1
    return r


cdef Py_ssize_t _undecided(Core c, KeyRef* pend, Py_ssize_t m, list results, Py_ssize_t nl0):
    """Keep the keys of pend[0..m) whose result is still None, in order, each to
    ask the source after the one it asked; their count. A key whose block read
    did not answer in a level-0 table past its first is charged that read
    (ReadCharge)."""
    cdef Py_ssize_t j, q = 0
    for j in range(m):
        if results[pend[j].i] is None:
            if pend[j].src < nl0 and pend[j].asked > 1:
                c.read_charge.add(SEEK_CHARGE - 1)
            pend[q] = pend[j]
            pend[q].src += 1
            q += 1
    return q


cdef Py_ssize_t _next_tables(Core c, SuperVersion sv, KeyRef* pend, Py_ssize_t m,
                             Py_ssize_t nl0, Py_ssize_t nsrc) except -1:
    """For each key of pend[0..m), the first table from its source src on (the
    level-0 tables newest first, then each level's one table for the key) whose
    key range and bloom filter may hold it: its src and table are set. Keys
    with none are dropped (absent); the others stay in order. Their count."""
    cdef Py_ssize_t j, q = 0, s, i
    cdef TableReader t
    cdef tuple lv
    cdef list largest
    cdef bytes b
    for j in range(m):
        s = pend[j].src
        t = None
        while s < nsrc:
            if s < nl0:
                t = <TableReader>sv.l0[s]
                if t.in_range(pend[j].p, pend[j].n - TAG_SIZE):
                    pend[j].asked += 1
                    if pend[j].asked > 1:       # a run past the key's first (ReadCharge)
                        c.read_charge.add(1)
                    if _bloom_passes(c, t, pend[j].h):
                        break
            else:
                lv = <tuple>sv.levels[s - nl0]
                largest = <list>lv[1]
                i = find_table(largest, pend[j].p, pend[j].n)
                if i < len(largest):
                    b = <bytes>(<list>lv[2])[i]
                    if cmp_bytes(pend[j].p, pend[j].n - TAG_SIZE,
                                 <const uint8_t*>PyBytes_AS_STRING(b), PyBytes_GET_SIZE(b)) >= 0:
                        t = <TableReader>(<tuple>lv[0])[i]
                        if _bloom_passes(c, t, pend[j].h):
                            break
            t = None
            s += 1
        if t is None:
            continue
        pend[q] = pend[j]
        pend[q].src = s
        pend[q].table = <void*>t
        q += 1
    return q


cdef int _read_round(KeyRef* pend, Py_ssize_t m, KeyRef* sub, Py_ssize_t nsrc, list results,
                     int64_t now, BlockIter ix, BlockIter it) except -1:
    """Ask each key of pend[0..m) its table (set by _next_tables): the keys grouped
    by table (sub: by source, then by key), every table's index and cached blocks
    first, then the blocks any of them lacks in the cache fetched as one batch,
    then every table's keys in their blocks (lsmkv/core/readmany.pxi)."""
    cdef Py_ssize_t s, j, q = 0, g, ng = 0, start, total = 0, nj = 0
    cdef MgTable* st
    cdef FetchJob* jobs = NULL
    for s in range(nsrc):
        for j in range(m):
            if pend[j].src == s:
                sub[q] = pend[j]
                q += 1
    st = <MgTable*>calloc(m, sizeof(MgTable))
    if st == NULL:
        raise MemoryError()
    start = 0
    for j in range(1, m + 1):
        if j == m or sub[j].table != sub[start].table:
            st[ng].table = sub[start].table
            st[ng].keys = sub + start
            st[ng].n = j - start
            ng += 1
            start = j
    try:
        for g in range(ng):
            mg_prepare(<TableReader>st[g].table, &st[g], ix)
            total += st[g].nmiss
        if total:
            jobs = <FetchJob*>calloc(total, sizeof(FetchJob))
            if jobs == NULL:
                raise MemoryError()
            for g in range(ng):
                nj += mg_jobs(<TableReader>st[g].table, &st[g], jobs + nj)
            mg_fetch(jobs, nj)
        for g in range(ng):
            mg_finish(<TableReader>st[g].table, &st[g], results, now, it)
        return 0
    finally:
        for g in range(ng):
            mg_release(<TableReader>st[g].table, &st[g])
        for j in range(nj):
            free(jobs[j].out)
        free(jobs)
        free(st)


cdef Py_ssize_t _memtables_pass(Core c, SuperVersion sv, KeyRef* pend, Py_ssize_t n, list results) except -1:
    """Search the memtables, newest first, for every key of pend[0..n); decided
    keys get their result (DELETED for a deletion or an expired value, MERGED for
    a merge operand). Leaves the undecided keys first in pend, in order, and
    returns their count. Each memtable looks its keys up together
    (MemTable.point_seek_many: its point index, the keys' cache misses
    overlapping)."""
    cdef Py_ssize_t m = n, j, q
    cdef MemTable mt
    cdef Node* x
    cdef size_t kn
    cdef const uint8_t** ptrs = <const uint8_t**>malloc(n * sizeof(uint8_t*) + 1)
    cdef size_t* lens = <size_t*>malloc(n * sizeof(size_t) + 1)
    cdef Node** found = <Node**>malloc(n * sizeof(Node*) + 1)
    try:
        if ptrs == NULL or lens == NULL or found == NULL:
            raise MemoryError()
        for mt in (sv.mem,) + sv.imms:
            if m == 0:
                break
            for j in range(m):
                ptrs[j] = pend[j].p
                lens[j] = pend[j].n
            mt.point_seek_many(ptrs, lens, m, found)
            q = 0
            for j in range(m):
                x = found[j]
                kn = lens[j] - TAG_SIZE
                if x == NULL or x.klen != lens[j] or (kn and memcmp(node_key(x), ptrs[j], kn) != 0):
                    pend[q] = pend[j]
                    q += 1
                    continue
                r = c._mem_result(<int>(load_u64(node_key(x) + kn) & 0xFF), node_val(x), x.vlen, NULL)
                results[pend[j].i] = DELETED if r is None else r
            m = q
        return m
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
