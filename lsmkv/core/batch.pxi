# The batch record encoding (record_size, encode_record: the WAL payload format of
# docs/format.md, what WriteBatch and Core._write_one write) and its one decoder
# (read_batch_op) with the users apply_batch (writes, recovery), replay_batch and
# decode_batch (included by dbcore.pyx, which has the cimports).
#
# Thread safety: no state; each call works on the buffers it is given.
# Invariants: a payload is seq u64 | count u32 | exactly `count` records;
# decoding anything else raises CorruptionError(path, offset). A record of a
# column family other than the default has CF_FLAG set in its kind byte and the
# family's id (a varint > 0) after it (encode_record_cf); a default-family record
# is exactly as before families existed.

DEF CF_FLAG = 0x80          # kind byte: a family id follows (docs/format.md)

cdef inline size_t record_size(int kind, size_t kn, size_t vn) noexcept:
    """Bytes encode_record() writes for one record."""
    cdef size_t n = 1 + varint_len(kn) + kn
    if kind != KIND_DELETE:
        n += varint_len(vn) + vn + (8 if kind == KIND_PUT_TTL else 0)
    return n


cdef inline uint8_t* encode_body(uint8_t* p, int kind, const uint8_t* k, size_t kn,
                                 const uint8_t* v, size_t vn, int64_t expiry) noexcept:
    """A record's bytes after its kind byte (and family id) at p; returns the byte after."""
    p = put_varint(p, kn)
    if kn:
        memcpy(p, k, kn)
    p += kn
    if kind != KIND_DELETE:
        if kind == KIND_PUT_TTL:
            store_u64(p, <uint64_t>expiry)
            p += 8
        p = put_varint(p, vn)
        if vn:
            memcpy(p, v, vn)
        p += vn
    return p


cdef inline uint8_t* encode_record(uint8_t* p, int kind, const uint8_t* k, size_t kn,
                                   const uint8_t* v, size_t vn, int64_t expiry) noexcept:
    """One batch record at p (see WriteBatch); returns the byte after it."""
    p[0] = kind
    return encode_body(p + 1, kind, k, kn, v, vn, expiry)


cdef inline uint8_t* encode_record_cf(uint8_t* p, uint32_t cf, int kind, const uint8_t* k, size_t kn,
                                      const uint8_t* v, size_t vn, int64_t expiry) noexcept:
    """encode_record for column family cf > 0: the kind byte with CF_FLAG, then
    varint cf, then the record's key and value as encode_record writes them.
    Takes record_size(kind, kn, vn) + varint_len(cf) bytes."""
    p[0] = kind | CF_FLAG
    return encode_body(put_varint(p + 1, cf), kind, k, kn, v, vn, expiry)


cdef struct BatchOp:
    int kind
    uint32_t cf                  # the record's column family (0: the default)
    const uint8_t* key
    uint64_t kn
    const uint8_t* val
    uint64_t vn
    int64_t expiry


cdef const uint8_t* read_batch_op(const uint8_t* p, const uint8_t* end, BatchOp* op,
                                  object path, uint64_t offset) except NULL:
    """Decode the batch record at p into op; returns the position after it.
    Malformed input raises CorruptionError(path, offset). The one decoder of
    batch records: recovery (apply_batch) and tools (decode_batch) use it."""
    cdef uint64_t kn, vn = 0, cf = 0
    if p >= end:
        raise CorruptionError(path, offset, "batch count larger than its records")
    op.kind = p[0]
    p += 1
    if op.kind & CF_FLAG:
        op.kind &= ~CF_FLAG
        p = get_varint(p, end, &cf)
        if p == NULL or cf == 0 or cf > 0xFFFFFFFF:
            raise CorruptionError(path, offset, "bad column family id in batch")
    op.cf = <uint32_t>cf
    p = get_varint(p, end, &kn)
    if p == NULL or kn > <uint64_t>(end - p):
        raise CorruptionError(path, offset, "bad key length in batch")
    op.key = p
    op.kn = kn
    p += kn
    op.expiry = 0
    if op.kind == KIND_PUT_TTL:
        if end - p < 8:
            raise CorruptionError(path, offset, "truncated expiry in batch")
        op.expiry = <int64_t>load_u64(p)
        p += 8
    elif op.kind != KIND_PUT and op.kind != KIND_DELETE and op.kind != KIND_MERGE and op.kind != KIND_RANGE_DELETE:
        raise CorruptionError(path, offset, f"unknown record kind {op.kind} in batch")
    if op.kind != KIND_DELETE:
        p = get_varint(p, end, &vn)
        if p == NULL or vn > <uint64_t>(end - p):
            raise CorruptionError(path, offset, "bad value length in batch")
    op.val = p
    op.vn = vn
    return p + vn


cdef int apply_batch(MemTable mem, const uint8_t* rep, size_t n, object path, uint64_t offset) except -1:
    """Insert a batch payload (header included) into mem. Returns its record count.
    Malformed input raises CorruptionError(path, offset)."""
    if n < BATCH_HEADER:
        raise CorruptionError(path, offset, "batch shorter than its header")
    cdef uint64_t seq = load_u64(rep)
    cdef uint32_t count = load_u32(rep + 8)
    cdef const uint8_t* p = rep + BATCH_HEADER
    cdef const uint8_t* end = rep + n
    cdef BatchOp op
    cdef uint32_t i
    for i in range(count):
        p = read_batch_op(p, end, &op, path, offset)
        if op.cf:
            raise CorruptionError(path, offset, f"a record of column family {op.cf} where only the "
                                  f"default family is expected (a DB with column families: open it "
                                  f"with lsmkv.DB, which routes records to their families)")
        mem.add(seq + i, op.kind, op.key, op.kn, op.val, op.vn, op.expiry)
    if p != end:
        raise CorruptionError(path, offset, "trailing bytes after batch records")
    return count


cdef int apply_batch_cf(dict mems, MemTable dflt, const uint8_t* rep, size_t n, object path,
                        uint64_t offset) except -1:
    """Insert a batch payload whose records may name column families: a default
    record into dflt, one of family id into mems[id] (a MemTable), skipped if mems
    has no such id or dflt is None for a default one (recovery: a dropped family,
    or a family whose tables already hold this log). Returns the record count."""
    if n < BATCH_HEADER:
        raise CorruptionError(path, offset, "batch shorter than its header")
    cdef uint64_t seq = load_u64(rep)
    cdef uint32_t count = load_u32(rep + 8)
    cdef const uint8_t* p = rep + BATCH_HEADER
    cdef const uint8_t* end = rep + n
    cdef BatchOp op
    cdef uint32_t i
    cdef MemTable m
    for i in range(count):
        p = read_batch_op(p, end, &op, path, offset)
        if op.cf == 0:
            m = dflt
        else:
            m = mems.get(op.cf)
        if m is not None:
            m.add(seq + i, op.kind, op.key, op.kn, op.val, op.vn, op.expiry)
    if p != end:
        raise CorruptionError(path, offset, "trailing bytes after batch records")
    return count


def replay_batch_cf(dict mems, MemTable dflt, payload, path, uint64_t offset):
    """Recovery with column families: apply one WAL record, each of its records to
    its family's memtable (see apply_batch_cf); returns (first_seq, count)."""
    cdef const uint8_t[::1] v = payload
    if v.shape[0] < BATCH_HEADER:
        raise CorruptionError(path, offset, "batch shorter than its header")
    cdef uint32_t count = apply_batch_cf(mems, dflt, &v[0], v.shape[0], path, offset)
    return load_u64(&v[0]), count


def replay_batch(MemTable mem, payload, path, uint64_t offset):
    """Apply one WAL record to mem; returns (first_seq, count)."""
    cdef const uint8_t[::1] v = payload
    if v.shape[0] < BATCH_HEADER:
        raise CorruptionError(path, offset, "batch shorter than its header")
    cdef uint32_t count = apply_batch(mem, &v[0], v.shape[0], path, offset)
    return load_u64(&v[0]), count


def decode_batch(payload, path, uint64_t offset, bint families=False):
    """(first sequence, [(kind, key, value, expiry_ms)]) of one WAL record, in
    record order (tools: the shell's wal-dump). Kinds: 0 delete, 1 put, 2 put
    with expiry, 3 merge operand, 4 range delete (key = start, value = end). With
    families, each tuple ends with the record's column family id (0: the default).
    Malformed input raises CorruptionError(path, offset)."""
    cdef const uint8_t[::1] v = payload
    if v.shape[0] < BATCH_HEADER:
        raise CorruptionError(path, offset, "batch shorter than its header")
    cdef const uint8_t* p = &v[0] + BATCH_HEADER
    cdef const uint8_t* end = &v[0] + v.shape[0]
    cdef uint32_t count = load_u32(&v[0] + 8)
    cdef BatchOp op
    cdef uint32_t i
    ops = []
    for i in range(count):
        p = read_batch_op(p, end, &op, path, offset)
        t = (op.kind, PyBytes_FromStringAndSize(<char*>op.key, op.kn),
             PyBytes_FromStringAndSize(<char*>op.val, op.vn), op.expiry)
        ops.append(t + (op.cf,) if families else t)
    if p != end:
        raise CorruptionError(path, offset, "trailing bytes after batch records")
    return load_u64(&v[0]), ops
