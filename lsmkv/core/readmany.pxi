# readmany.pxi: batched point lookups (db.multi_get) over several tables at once,
# in stages, so that the memory accesses of different keys overlap and the blocks
# every table of a round lacks in the cache are read as one batch (fetch.pxi).
# A part of lsmkv/core/table.pyx (included there; not compiled on its own): its
# names are the table module's.
#
# The caller (lsmkv/core/multiget.pxi) gives each table of a round its keys (an
# MgTable) and calls, for every table:
#   mg_prepare  (1) the index block, pinned once, gives each key's data block;
#               (2) every block found in the slab cache is pinned and prefetched
#               whole (a block is a few cache lines of a large cache: a lookup
#               would otherwise wait for each of its misses in turn);
#   mg_jobs     the blocks not in the cache, described as FetchJobs of one array,
#               each with a slab slot reserved for its contents by the length of
#               the table's last fetched block (block_hint), unless that length
#               has lately been in another size class than the next block's more
#               often than not (hint_misses: a wrong guess would evict a block for
#               nothing);
# then mg_fetch once for all of them (read, verified and decompressed without the
# GIL, on helper threads too), then for every table:
#   mg_finish   each fetched block cached (its reserved slot when it fitted it,
#               else a new slot it is copied into; pinned), then (3) each key
#               sought in its block: a block the batch could not read is read as
#               a get reads it, which raises the error of a damaged block (file
#               and offset), in key order; a block the cache cannot take is read
#               from the fetched copy;
#   mg_release  (always, also after an error) unpins what is still pinned and
#               frees the table's arrays.
#
# Invariants:
#   1. Results are get()'s: results[key.i] becomes bytes (a live value), DELETED
#      (a deletion or an expired value) or MERGED (a merge operand) where the
#      table has an entry for the key at the read's sequence, and is left alone
#      where it has none.
#   2. Every pin taken in (2) or (mg_finish) is released by an iterator's next
#      reset or by mg_release: no pin outlives the call.
#   3. A job's out buffer is freed by the caller (multi_get), after every
#      table's mg_finish, unless it is the job's reserved slot: mg_finish hands a
#      used reservation to the table's pins, mg_release gives back the others
#      (and clears an out that points into one) before the caller frees.
#   4. A reservation is a FILLING slot: invisible to lookups until published.


DEF HINT_MISSES_MAX = 8
DEF HINT_MISSES_STOP = 4     # reserve while fewer: a guess right more often than not


cdef int mg_prepare(TableReader t, MgTable* st, BlockIter ix) except -1:
    """Stages (1) and (2) for st.keys[0..n) (st.table, keys and n set, the rest
    zeroed by the caller); ix is left on no block."""
    cdef Py_ssize_t n = st.n, j, m = 0, nb = 0
    st.offs = <uint64_t*>malloc(2 * n * sizeof(uint64_t))
    st.sizes = <uint64_t*>malloc(2 * n * sizeof(uint64_t))
    st.blk = <Py_ssize_t*>malloc(n * sizeof(Py_ssize_t))
    st.pins = <Pin*>calloc(n, sizeof(Pin))
    st.job = <FetchJob**>calloc(n, sizeof(FetchJob*))
    if st.offs == NULL or st.sizes == NULL or st.blk == NULL or st.pins == NULL or st.job == NULL:
        raise MemoryError()
    # (1) the index
    t.load_index(ix)
    try:
        for j in range(n):
            ix.seek(st.keys[j].p, st.keys[j].n)
            if not ix.valid:
                break           # past the last block: so are the keys after this one
            if decode_handle(ix.val, ix.val_len, &st.offs[m], &st.sizes[m]) < 0:
                raise CorruptionError(t.path, t.index_offset, "bad block handle in index")
            m += 1
    finally:
        ix.release_pin()
        ix.data = None
    st.m = m
    # (2) pin and prefetch the cached blocks
    for j in range(m):
        if j > 0 and st.offs[j] == st.offs[j - 1]:
            st.blk[j] = st.blk[j - 1]
            continue
        st.blk[j] = nb
        st.offs[n + nb] = st.offs[j]
        st.sizes[n + nb] = st.sizes[j]
        if t.slab is not None and t.slab.lookup_pin((t.number << 40) | st.offs[j], &st.pins[nb]):
            _prefetch_block(st.pins[nb].data, st.pins[nb].len)
        else:
            st.pins[nb].data = NULL
            st.nmiss += 1
        nb += 1
        st.nb = nb
    return 0


cdef Py_ssize_t mg_jobs(TableReader t, MgTable* st, FetchJob* jobs) except -1:
    """Describe st's blocks not in the cache as jobs[0..k) (zeroed by the caller)
    and return k; none when the batch cannot cache them (no slab cache, or no
    libzstd: mg_finish then reads them one by one). A block whose handle is out
    of the file gets no job (mg_finish's ordinary read raises)."""
    cdef Py_ssize_t b, k = 0
    cdef uint64_t off, size
    if t.slab is None or not zstd_loaded() or t.fd < 0:
        return 0
    for b in range(st.nb):
        if st.pins[b].data != NULL:
            continue
        off = st.offs[st.n + b]
        size = st.sizes[st.n + b]
        if off > t.file_size or t.file_size - off < TRAILER_SIZE or size > t.file_size - off - TRAILER_SIZE:
            continue
        jobs[k].fd = t.fd
        jobs[k].off = off
        jobs[k].n = size + TRAILER_SIZE
        jobs[k].ddict = t.ddict
        jobs[k].has_dict = t.zdict is not None
        if (t.block_hint and t.hint_misses < HINT_MISSES_STOP
                and t.slab.alloc_pin((t.number << 40) | off, t.block_hint, &jobs[k].resv, True)):
            jobs[k].dst = <uint8_t*>jobs[k].resv.data
            jobs[k].dst_cap = t.slab.slot_size(&jobs[k].resv)
        if t.map != NULL:
            t._touch(off, size + TRAILER_SIZE)
            jobs[k].src = t.map + off
        st.job[b] = &jobs[k]
        k += 1
    return k


cdef int mg_fetch(FetchJob* jobs, Py_ssize_t n) except -1:
    """Do jobs[0..n) (fetch_blocks), the reads into one buffer for the call."""
    cdef size_t rd = 0
    cdef Py_ssize_t k
    cdef char* arena
    if n == 0:
        return 0
    for k in range(n):
        if jobs[k].src == NULL:
            rd += jobs[k].n
    arena = <char*>malloc(rd + 1)
    if arena == NULL:
        raise MemoryError()
    try:
        rd = 0
        for k in range(n):
            if jobs[k].src == NULL:
                jobs[k].buf = arena + rd
                rd += jobs[k].n
        fetch_blocks(jobs, n)
    finally:
        free(arena)
        for k in range(n):
            jobs[k].buf = NULL
    return 0


cdef int mg_finish(TableReader t, MgTable* st, list results, int64_t now, BlockIter it) except -1:
    """Cache st's fetched blocks, then stage (3): each key in its block. it is left
    on no block."""
    cdef Py_ssize_t j, b, i
    cdef FetchJob* jb
    cdef Pin held
    global _fp_in_slot
    cdef const uint8_t* ik
    cdef size_t ikn, ukn
    cdef int kind
    for b in range(st.nb):
        jb = st.job[b]
        if jb == NULL or not jb.ok:
            continue
        if t.block_hint:
            if t.slab.same_class(jb.out_len, t.block_hint):
                t.hint_misses = max(0, t.hint_misses - 1)
            else:
                t.hint_misses = min(HINT_MISSES_MAX, t.hint_misses + 1)
        t.block_hint = jb.out_len
        if jb.out == jb.dst and t.slab.refill(&jb.resv, jb.out_len):     # in its reserved slot
            st.pins[b] = jb.resv
            jb.resv.data = NULL
            jb.out = jb.dst = NULL
            t.slab.publish(&st.pins[b])
            _fp_in_slot += 1
        elif t.slab.alloc_pin((t.number << 40) | jb.off, jb.out_len, &st.pins[b]):
            memcpy(<void*>st.pins[b].data, jb.out, jb.out_len)
            t.slab.publish(&st.pins[b])
    b = -1
    try:
        for j in range(st.m):
            if st.blk[j] != b:
                b = st.blk[j]
                if st.pins[b].data != NULL:
                    held = st.pins[b]
                    st.pins[b].data = NULL          # the iterator owns the pin now (even if
                    it.reset_pinned(t.slab, &held, t.path, st.offs[j])   # this raises)
                elif st.job[b] != NULL and st.job[b].ok:      # fetched, the cache full
                    it.reset(PyBytes_FromStringAndSize(<char*>st.job[b].out, st.job[b].out_len),
                             t.path, st.offs[j])
                else:
                    t.load_into(it, st.offs[j], st.sizes[j], True)
            i = st.keys[j].i
            ik = st.keys[j].p
            ikn = st.keys[j].n
            ukn = ikn - TAG_SIZE
            it.seek(ik, ikn)
            if not it.valid or it.key_len != ikn or (ukn and memcmp(it.key, ik, ukn) != 0):
                continue
            kind = load_u64(it.key + ukn) & 0xFF
            if kind == KIND_PUT:
                results[i] = PyBytes_FromStringAndSize(<char*>it.val, it.val_len)
            elif kind == KIND_PUT_TTL:
                if it.val_len < 8:
                    raise CorruptionError(t.path, st.offs[j], "TTL entry shorter than its expiry")
                if <int64_t>load_u64(it.val) <= now:
                    results[i] = DELETED
                else:
                    results[i] = PyBytes_FromStringAndSize(<char*>it.val + 8, it.val_len - 8)
            elif kind == KIND_MERGE:
                results[i] = MERGED
            else:
                results[i] = DELETED
    finally:
        it.release_pin()
        it.data = None
    return 0


cdef void mg_release(TableReader t, MgTable* st) noexcept:
    """Unpin st's blocks still pinned and free its arrays (safe on a partly
    prepared st, and twice)."""
    cdef Py_ssize_t b
    cdef FetchJob* jb
    if st.pins != NULL:
        for b in range(st.nb):
            if st.pins[b].data != NULL:
                t.slab.unpin(st.pins[b].slot)
                st.pins[b].data = NULL
    if st.job != NULL:
        for b in range(st.nb):
            jb = st.job[b]
            if jb != NULL and jb.resv.data != NULL:       # invariant 3: not used
                if jb.out == jb.dst:
                    jb.out = NULL
                t.slab.abort(jb.resv.slot)
                jb.resv.data = NULL
                jb.dst = NULL
    free(st.offs)
    free(st.sizes)
    free(st.blk)
    free(st.pins)
    free(st.job)
    st.offs = st.sizes = NULL
    st.blk = NULL
    st.pins = NULL
    st.job = NULL
    st.nb = 0
