# Core: the engine's state that the per-operation paths use, and those paths
# (included by dbcore.pyx; the cimports are there).
#
# Thread safety: writers serialize on `mutex` (a threading.Lock shared with the
# Python side). Readers take no lock: they read `sv` (one reference: the
# SuperVersion of memtables and tables) and `last_seq`, both replaced only
# while holding the GIL, so a reader sees a consistent pair. A SuperVersion is
# immutable once built.
#
# Invariants:
#   1. Every entry with sequence <= last_seq is in sv (a memtable or a table).
#   2. A write reaches the WAL before the memtable; last_seq moves only after
#      both, so a reader never sees half of a batch.
#   3. sv.imms is newest first; sv.l0 is newest first; each deeper level is
#      sorted by key with non-overlapping files.

DEF MAX_SEQUENCE = 0x00FFFFFFFFFFFFFF     # sequences are 56 bits (the tag's top bits)
DEF PUT_MANY_MAX = 32                    # _put_many's group at most (MemTable.add_many's)
DEF PUT_MANY_NODE_MAX = 136              # a memtable node's bytes at most besides key and value


cdef inline bint _table_newer(TableReader t, int64_t floor):
    """May t hold an entry with a sequence > floor (its largest_seq property)?"""
    s = t.properties.get("largest_seq")
    return s is None or <int64_t>s > floor


cdef class Core:
    """The engine's state that the per-operation paths use, and those paths (cdef).

    Shared by the DB handle (CoreDB, whose methods are thin compiled calls into
    these) and the background threads, through lsmkv.engine.engine.Engine, the Python subclass
    that opens, flushes, compacts and closes. The threads hold the Core, never the
    handle, so dropping the last reference to a handle finalizes it (its finalizer
    closes the engine) while they run. A Core made alone (CoreDB's placeholder) is
    closed.

    The Python side it calls, only on cold paths, through three components the
    engine binds at open (declared here and in dbcore.pyi):
      writes  (lsmkv.engine.writes.WriteController)
              make_room()           the memtable is full (mutex held)
              level0_stall(nbytes)  level 0 reached the slowdown trigger (mutex held)
      logs    (lsmkv.engine.logs.LogSet)
              sync_retired()        a sync write while older logs are unsynced (mutex held)
      files   (lsmkv.engine.files.Files)
              gc_pending            a pin was released while the mutex was busy
              gc_soon()             collect and purge what released pins held
              pins, current_version()  for Pin
    The per-operation paths (put, get, delete, write, iteration steps) make no
    Python call."""
    cdef public SuperVersion sv
    cdef public LogWriter wal
    cdef public uint64_t last_seq
    cdef public object mutex
    cdef public bint closed
    cdef public object bg_error
    cdef public bint read_only       # a read-only or secondary engine: writes raise ReadOnlyError
    cdef public str read_only_as     # how it was opened, for that error's message
    cdef public size_t write_buffer_size
    cdef public object clock
    cdef public unsigned long long n_puts, n_deletes, n_gets, n_get_hits, n_writes, n_syncs
    cdef public unsigned long long n_bloom_checks, n_bloom_useful, n_wal_bytes, n_batches, n_user_bytes
    cdef public unsigned long long n_view_pins       # get_view() results that pin a cache slot
    cdef public int l0_files, l0_slowdown, l0_stop       # level-0 file count and its stall triggers
    cdef public list retired_logs    # logs of immutable memtables not yet synced and closed
    cdef public HandleState state    # closed (or inherited by fork()) with this handle; iterators share it
    cdef public object writes        # lsmkv.engine.writes.WriteController: make_room(), level0_stall()
    cdef public object logs          # lsmkv.engine.logs.LogSet: sync_retired()
    cdef public object files         # lsmkv.engine.files.Files: gc_pending, gc_soon(), pins
    cdef public MergeOperator merge_op   # the merge_operator option's (lsmkv/core/merge.pyx), or None
    cdef public object default_ttl   # the default_ttl option's seconds, or None: what a put given
                                     # no ttl gets (_put; _write_batch through with_default_ttl)
    # column families (lsmkv/engine/family.py): the engine is the DB and its default
    # family; another family is a Core of its own (its sv, merge_op, write_buffer_size,
    # l0_files, counters, last_seq: the last sequence written to it) that writes
    # through `db`'s log, sequence and mutex
    cdef public Core db              # the DB-wide Core: self for the engine (the default family)
    cdef public uint32_t cf_id       # 0: the default family
    cdef public str cf_name
    cdef public dict cfs             # on the engine: id -> family Core, or None while it has none
    cdef public size_t cf_total_limit  # on the engine: db_write_buffer_size (what every family's
                                       # active memtable may hold together)
    cdef BlockIter spare_bi          # a point read's BlockIter, kept between reads (_lookup), or None
    cdef public ReadCharge read_charge   # what merging level 0 would have saved reads (ReadCharge);
                                         # its scheduler reads and restarts it (mutex held)

    def __cinit__(self, *args, **kwargs):
        self.mutex = threading.Lock()
        self.closed = True
        self.bg_error = None
        self.read_only = False
        self.read_only_as = "read-only"
        self.last_seq = 0
        self.n_puts = self.n_deletes = self.n_gets = self.n_get_hits = 0
        self.n_writes = self.n_syncs = self.n_bloom_checks = self.n_bloom_useful = 0
        self.n_wal_bytes = self.n_batches = self.n_user_bytes = 0
        self.n_view_pins = 0
        self.l0_files = 0
        self.l0_slowdown = self.l0_stop = 1 << 30
        self.retired_logs = []
        self.state = HandleState()
        self.db = self
        self.cf_id = 0
        self.cf_name = "default"
        self.cfs = None
        self.default_ttl = None
        self.read_charge = ReadCharge()

    cdef object _closed_error(self):
        """The error a use of a closed Core raises: a dropped family's, or the handle's."""
        # state.closed, not db.closed: the DB's close() marks its families closed first
        # and the engine closed last (threads using a family meanwhile: the DB is closed)
        if self.cf_id and not self.state.closed:
            return ClosedError(f"column family {self.cf_name!r} was dropped")
        return self.state.error()

    cdef int _writable(self, size_t nbytes) except -1:
        if self.closed:
            raise self._closed_error()
        if self.read_only:
            raise self.read_only_error("put, delete and write are refused")
        if self.db.bg_error is not None:
            raise BackgroundError(f"the database is read-only after a background error: {self.db.bg_error}")
        if self.l0_files >= self.l0_slowdown:
            self.writes.level0_stall(nbytes)
        if self.sv.mem.arena.used >= self.write_buffer_size:
            self.writes.make_room()
        # the sum is only looked at once this memtable holds its share of the limit (the
        # total may pass it by one share): a write pays a multiply, not a walk of the families
        if (self.db.cfs is not None
                and self.sv.mem.arena.used * (len(self.db.cfs) + 1) >= self.db.cf_total_limit
                and self._families_memtables() >= self.db.cf_total_limit):
            self.db.switch_largest_memtable()
        return 0

    cdef size_t _families_memtables(self):
        """Bytes the active memtables of every column family hold together (mutex held)."""
        cdef Core d = self.db
        cdef Core c
        cdef size_t n = d.sv.mem.arena.used
        for c in d.cfs.values():
            n += c.sv.mem.arena.used
        return n

    # -- writes

    cdef int _sync_logs(self) except -1:
        """Make every record written so far durable (mutex held): older logs not yet
        synced first, so a synced write never outlives an unsynced older one. A
        family's write syncs the DB's logs."""
        cdef Core d = self.db
        if d.retired_logs:
            d.logs.sync_retired()
        d.wal.sync_c()
        self.n_syncs += 1
        return 0

    cdef int _sync_wal(self) except -1:
        """See CoreDB.sync_wal."""
        with self.mutex:
            if self.closed:
                raise self._closed_error()
            if self.read_only:
                raise self.read_only_error("it has no log to sync")
            try:
                self._sync_logs()
            except OSError as e:
                self._sync_failed(e)
                raise
        return 0

    def write_through_db(self, WriteBatch batch, bint sync=False):
        """Write batch with the DB's write (its records name their families): how a
        family's handle writes a batch of its own (ColumnFamily.update)."""
        self.db._write_batch(batch, sync)

    def read_only_error(self, what):
        """The ReadOnlyError a write to a read-only or secondary engine raises."""
        return ReadOnlyError(f"the database is open {self.read_only_as}: {what}")

    cdef void _sync_failed(self, e):
        """A write's WAL sync failed (mutex held). Its record is in the log, where a
        reopen would replay it: the caller has applied it to the memtable and moved
        last_seq past it, so this process shows what a reopen would and the next
        write never reuses its sequence number. Whether the log's unsynced tail is on
        disk is unknown (Linux may drop dirty pages after a failed fsync), so the DB
        stops taking writes, as RocksDB does on a failed WAL sync: reads go on, and
        writes raise BackgroundError until the DB is reopened."""
        if self.bg_error is None:
            self.bg_error = e

    cdef int _write_one(self, int kind, const uint8_t* k, size_t kn, const uint8_t* v, size_t vn,
                        int64_t expiry, bint sync) except -1:
        cdef size_t n = BATCH_HEADER + record_size(kind, kn, vn)
        cdef uint64_t seq
        cdef uint8_t* p
        if self.cf_id:
            return self._write_one_cf(kind, k, kn, v, vn, expiry, sync)
        with self.mutex:
            self._writable(n)
            seq = self.last_seq + 1
            p = self.wal.begin(n)
            store_u64(p, seq)
            store_u32(p + 8, 1)
            encode_record(p + BATCH_HEADER, kind, k, kn, v, vn, expiry)
            self.wal.commit(n)
            if sync:
                try:
                    self._sync_logs()
                except OSError as e:
                    self.sv.mem.add(seq, kind, k, kn, v, vn, expiry)
                    self.last_seq = seq
                    self._sync_failed(e)
                    raise
            self.sv.mem.add(seq, kind, k, kn, v, vn, expiry)
            self.last_seq = seq
            self.n_wal_bytes += n + 8
            self.n_user_bytes += kn + vn
            self.n_writes += 1
        return 0

    cdef int _write_one_cf(self, int kind, const uint8_t* k, size_t kn, const uint8_t* v, size_t vn,
                           int64_t expiry, bint sync) except -1:
        """_write_one of a column family other than the default: the record names
        the family, and goes to the DB's log at the DB's next sequence."""
        cdef size_t n = BATCH_HEADER + record_size(kind, kn, vn) + varint_len(self.cf_id)
        cdef uint64_t seq
        cdef uint8_t* p
        cdef Core d = self.db
        with self.mutex:
            self._writable(n)
            seq = d.last_seq + 1
            p = d.wal.begin(n)
            store_u64(p, seq)
            store_u32(p + 8, 1)
            encode_record_cf(p + BATCH_HEADER, self.cf_id, kind, k, kn, v, vn, expiry)
            d.wal.commit(n)
            if sync:
                try:
                    self._sync_logs()
                except OSError as e:
                    self.sv.mem.add(seq, kind, k, kn, v, vn, expiry)
                    self.last_seq = d.last_seq = seq
                    d._sync_failed(e)
                    raise
            self.sv.mem.add(seq, kind, k, kn, v, vn, expiry)
            self.last_seq = seq
            d.last_seq = seq
            self.n_wal_bytes += n + 8
            self.n_user_bytes += kn + vn
            self.n_writes += 1
        return 0

    cdef int _put(self, key, value, ttl, bint sync) except -1:
        cdef Bytes kb, vb
        cdef int64_t expiry = 0
        if ttl is not None:
            expiry = expiry_from_ttl(self.clock, ttl)
        elif self.default_ttl is not None:
            expiry = expiry_from_ttl(self.clock, self.default_ttl)
        get_buffer(key, &kb, "key")
        try:
            get_buffer(value, &vb, "value")
            try:
                self._write_one(KIND_PUT_TTL if expiry else KIND_PUT, kb.p, kb.n,
                                vb.p, vb.n, expiry, sync)
            finally:
                release_buffer(&vb)
        finally:
            release_buffer(&kb)
        self.n_puts += 1
        return 0

    cdef int _put_many(self, list keys, list values) except -1:
        """_put(keys[j], values[j], None, False) for each j, in order: the same log
        records, sequences, counts and memtable entries. When the group cannot make
        a write wait (the default family, no default_ttl, the memtable has room for
        all of it with PUT_MANY_NODE_MAX bytes a node besides the key and value,
        level 0 below its slowdown trigger), its memtable inserts are searched
        together (MemTable.add_many); otherwise each is a _put."""
        cdef Py_ssize_t count = len(keys), j, nk = 0, nv = 0
        cdef Bytes kb[PUT_MANY_MAX]
        cdef Bytes vb[PUT_MANY_MAX]
        cdef const uint8_t* ks[PUT_MANY_MAX]
        cdef const uint8_t* vs[PUT_MANY_MAX]
        cdef size_t kns[PUT_MANY_MAX]
        cdef size_t vns[PUT_MANY_MAX]
        cdef size_t ns[PUT_MANY_MAX]
        cdef size_t need = 0, total = 0, user = 0
        cdef uint64_t seq
        cdef uint8_t* p
        cdef bint done = False
        if len(values) != count:
            raise ValueError("keys and values differ in length")
        if count < 2 or count > PUT_MANY_MAX or self.cf_id or self.default_ttl is not None:
            for j in range(count):
                self._put(keys[j], values[j], None, False)
            return 0
        try:
            for j in range(count):
                get_buffer(keys[j], &kb[j], "key")
                nk += 1
                get_buffer(values[j], &vb[j], "value")
                nv += 1
                ks[j] = kb[j].p
                kns[j] = kb[j].n
                vs[j] = vb[j].p
                vns[j] = vb[j].n
                ns[j] = BATCH_HEADER + record_size(KIND_PUT, kns[j], vns[j])
                total += ns[j]
                user += kns[j] + vns[j]
                need += PUT_MANY_NODE_MAX + kns[j] + vns[j]
            with self.mutex:
                if (self.db.cfs is None and self.l0_files < self.l0_slowdown
                        and self.sv.mem.arena.used + need < self.write_buffer_size):
                    self._writable(total)   # its checks; neither stall nor switch by the test above
                    seq = self.last_seq + 1
                    for j in range(count):
                        p = self.wal.begin(ns[j])
                        store_u64(p, seq + j)
                        store_u32(p + 8, 1)
                        encode_record(p + BATCH_HEADER, KIND_PUT, ks[j], kns[j], vs[j], vns[j], 0)
                        self.wal.commit(ns[j])
                    self.sv.mem.add_many(seq, KIND_PUT, ks, kns, vs, vns, count)
                    self.last_seq = seq + count - 1
                    self.n_wal_bytes += total + 8 * count
                    self.n_user_bytes += user
                    self.n_writes += count
                    done = True
        finally:
            for j in range(nk):
                release_buffer(&kb[j])
            for j in range(nv):
                release_buffer(&vb[j])
        if done:
            self.n_puts += count
            return 0
        for j in range(count):
            self._put(keys[j], values[j], None, False)
        return 0

    cdef int _merge(self, key, operand, bint sync) except -1:
        cdef Bytes kb, vb
        if self.merge_op is None:
            self._no_merge_operator()
        get_buffer(key, &kb, "key")
        try:
            get_buffer(operand, &vb, "operand")
            try:
                self._write_one(KIND_MERGE, kb.p, kb.n, vb.p, vb.n, 0, sync)
            finally:
                release_buffer(&vb)
        finally:
            release_buffer(&kb)
        self.n_puts += 1
        return 0

    cdef int _no_merge_operator(self) except -1:
        if self.closed:
            raise self._closed_error()
        raise MergeOperatorError("db.merge needs a merge operator: open the database with "
                                 "merge_operator=... (lsmkv.DB(path, merge_operator='uint64add'))")

    cdef int _delete(self, key, bint sync) except -1:
        cdef Bytes kb
        get_buffer(key, &kb, "key")
        try:
            self._write_one(KIND_DELETE, kb.p, kb.n, NULL, 0, 0, sync)
        finally:
            release_buffer(&kb)
        self.n_deletes += 1
        return 0

    cdef int _delete_range(self, start, stop, bint sync) except -1:
        cdef Bytes kb, vb
        get_buffer(start, &kb, "start")
        try:
            get_buffer(stop, &vb, "stop")
            try:
                if check_range(kb.p, kb.n, vb.p, vb.n, start, stop):
                    self._write_one(KIND_RANGE_DELETE, kb.p, kb.n, vb.p, vb.n, 0, sync)
            finally:
                release_buffer(&vb)
        finally:
            release_buffer(&kb)
        self.n_deletes += 1
        return 0

    cdef int _write_batch(self, WriteBatch batch, bint sync, list check=None,
                          uint64_t check_seq=0) except -1:
        """Append batch to the log and apply it. With check (a transaction's commit,
        lsmkv/engine/transaction.py): first, under the mutex and after any stall,
        raise ConflictError, writing nothing, if a key of check has an entry newer
        than check_seq (_check_unchanged)."""
        cdef uint64_t seq
        cdef uint8_t* p
        if self.closed:
            raise self._closed_error()
        if self.read_only:
            raise self.read_only_error("put, delete and write are refused")
        if batch.count == 0:
            if check is not None:
                with self.mutex:
                    if self.closed:
                        raise self._closed_error()
                    self._check_unchanged(check, check_seq)
            return 0
        if batch.has_merge and self.merge_op is None:
            self._no_merge_operator()
        if self.default_ttl is not None or (batch.cfs is not None and self._names_default_ttl(batch)):
            batch = with_default_ttl(batch, self)
        if batch.cfs is not None or self.cf_id:
            return self._write_batch_cf(batch, sync, check, check_seq)
        with self.mutex:
            self._writable(batch.b.len)
            if check is not None:      # no stall releases the mutex from here to last_seq's move
                self._check_unchanged(check, check_seq)
            seq = self.last_seq + 1
            store_u64(batch.b.p, seq)
            store_u32(batch.b.p + 8, batch.count)
            p = self.wal.begin(batch.b.len)
            memcpy(p, batch.b.p, batch.b.len)
            self.wal.commit(batch.b.len)
            if sync:
                try:
                    self._sync_logs()
                except OSError as e:
                    apply_batch(self.sv.mem, batch.b.p, batch.b.len, "<batch>", 0)
                    self.last_seq = seq + batch.count - 1
                    self._sync_failed(e)
                    raise
            apply_batch(self.sv.mem, batch.b.p, batch.b.len, "<batch>", 0)
            self.last_seq = seq + batch.count - 1
            self.n_wal_bytes += batch.b.len + 8
            self.n_user_bytes += batch.b.len - BATCH_HEADER
            self.n_writes += 1
            self.n_batches += 1
        return 0

    cdef bint _names_default_ttl(self, WriteBatch batch):
        """Whether a family that batch names has a default_ttl."""
        cdef Core fam
        for fam in batch.cfs.values():
            if fam.default_ttl is not None:
                return True
        return False

    cdef int _write_batch_cf(self, WriteBatch batch, bint sync, list check, uint64_t check_seq) except -1:
        """_write_batch of a batch whose records name column families (self is the
        DB's Core): one log record, applied to each family's memtable, visible in
        every family at once (each family's last_seq moves with the DB's in one
        hold of the mutex and the GIL)."""
        cdef uint64_t seq, last
        cdef uint8_t* p
        cdef Core fam
        if self.cf_id:
            raise TypeError("write a batch with the DB's write() (its records name their families)")
        for fam in batch.cfs.values():
            if fam.db is not self:
                raise ValueError(f"the batch names column family {fam.cf_name!r} of another database")
        with self.mutex:
            self._writable(batch.b.len)
            for fam in batch.cfs.values():
                if fam.closed:
                    raise fam._closed_error()
                fam._writable(0)        # room in its memtable, its level-0 stall
            if self.closed:             # a stall released the mutex: check again
                raise self._closed_error()
            for fam in batch.cfs.values():
                if fam.closed:
                    raise fam._closed_error()
            if check is not None:
                self._check_unchanged(check, check_seq)
            seq = self.last_seq + 1
            last = seq + batch.count - 1
            store_u64(batch.b.p, seq)
            store_u32(batch.b.p + 8, batch.count)
            p = self.wal.begin(batch.b.len)
            memcpy(p, batch.b.p, batch.b.len)
            self.wal.commit(batch.b.len)
            if sync:
                try:
                    self._sync_logs()
                except OSError as e:
                    self._apply_cf(batch, last)
                    self._sync_failed(e)
                    raise
            self._apply_cf(batch, last)
            self.n_wal_bytes += batch.b.len + 8
            self.n_user_bytes += batch.b.len - BATCH_HEADER
            self.n_writes += 1
            self.n_batches += 1
        return 0

    cdef int _apply_cf(self, WriteBatch batch, uint64_t last) except -1:
        """Insert a family-naming batch (mutex held), then move last_seq of the DB
        and of each family it names."""
        cdef dict mems = {}
        cdef Core fam
        for fam in batch.cfs.values():
            mems[fam.cf_id] = fam.sv.mem
        apply_batch_cf(mems, self.sv.mem, batch.b.p, batch.b.len, "<batch>", 0)
        self.last_seq = last
        for fam in batch.cfs.values():
            fam.last_seq = last
        return 0

    cdef int _check_unchanged(self, list keys, uint64_t seq) except -1:
        """ConflictError naming the first key of keys whose newest entry (of any
        kind) has a sequence > seq: another write reached it after seq (mutex held,
        so no write is in flight and the answer stays true until the caller's own
        write is applied)."""
        cdef Bytes kb
        cdef int64_t newest
        cdef Core c
        if self.last_seq <= seq:
            return 0          # nothing written since seq: with the mutex held no write is between
                              # its memtable insert and last_seq's move (invariant 2), so no entry is newer
        for key in keys:
            c = self
            if type(key) is tuple:        # (family Core, key): a column family's key (txn.pxi)
                c = <Core>(<tuple>key)[0]
                key = (<tuple>key)[1]
                if c.closed:
                    raise c._closed_error()
            get_buffer(key, &kb, "key")
            try:
                newest = c._newest_seq(kb.p, kb.n, <int64_t>seq)
            finally:
                release_buffer(&kb)
            if newest > <int64_t>seq:
                raise ConflictError(f"transaction conflict: key {bytes(key)!r} was written at sequence "
                                    f"{newest}, after the transaction's snapshot (sequence {seq}); "
                                    f"nothing was applied", bytes(key))
        return 0

    # -- reads

    cdef int64_t _newest_seq(self, const uint8_t* k, size_t kn, int64_t floor) except -2:
        """The sequence of the newest write of user key k: its newest entry of any
        kind (_newest_entry_seq), or the newest range tombstone covering k if that
        is newer (a delete_range writes k too: a transaction that read k conflicts
        with one after its snapshot), or -1 if neither exists. Exact whenever the
        answer is > floor, as _newest_entry_seq. Without range tombstones: one
        branch more than _newest_entry_seq."""
        cdef SuperVersion sv = self.sv
        cdef int64_t r = self._newest_entry_seq(sv, k, kn, floor)
        cdef int64_t cover
        if sv.static_range_dels is not None or sv.mem.range_dels is not None:
            cover = <int64_t>self._range_dels(sv).max_covering_c(k, kn, MAX_SEQUENCE)
            if cover > r:
                return cover
        return r

    cdef int64_t _newest_entry_seq(self, SuperVersion sv, const uint8_t* k, size_t kn,
                                   int64_t floor) except -2:
        """The sequence of the newest entry of user key k in sv, of any kind (a put,
        an expired put, a deletion: every write leaves one), or -1 if no source holds
        one. Exact whenever the answer is > floor: a source whose entries all have
        sequences <= floor (a memtable's last_seq, a table's largest_seq) is
        skipped, which can only hide entries <= floor (the sources are searched
        newest first, and a key's entries in a later source are older). Call with
        floor -1 for the exact answer (a table rewritten by compaction may have
        only sequences 0). Compaction may rewrite a sequence to 0 at the
        bottommost level (docs/format.md, "Sequence 0"): only for versions older
        than every live snapshot."""
        cdef MemTable m
        cdef Node* x
        cdef TableReader t
        cdef uint8_t stackbuf[128]
        cdef uint8_t* ik = stackbuf
        cdef size_t ikn = kn + TAG_SIZE
        cdef uint64_t h
        cdef int64_t r = -1
        cdef int i
        cdef tuple lv
        cdef bytes b
        if self.closed:
            raise self._closed_error()
        if ikn > 128:
            ik = <uint8_t*>malloc(ikn)
            if ik == NULL:
                raise MemoryError()
        try:
            if kn:
                memcpy(ik, k, kn)
            store_u64(ik + kn, make_tag(MAX_SEQUENCE, KIND_MAX))    # before every entry of k
            for m in sv.memtables():
                if m.entries == 0 or <int64_t>m.last_seq <= floor:
                    continue
                x = m.point_seek(ik, ikn)
                if x != NULL and x.klen == ikn and (kn == 0 or memcmp(node_key(x), k, kn) == 0):
                    return <int64_t>(load_u64(node_key(x) + kn) >> 8)
            h = bloom_hash(k, kn)
            for t in sv.l0:
                if t.in_range(k, kn) and _table_newer(t, floor):
                    r = self._table_newest(t, h, ik, ikn)
                    if r >= 0:
                        return r
            for lv in sv.levels:
                i = find_table(<list>lv[1], ik, ikn)
                if i == len(<list>lv[1]):
                    continue
                b = <bytes>(<list>lv[2])[i]
                if cmp_bytes(k, kn, <const uint8_t*>PyBytes_AS_STRING(b), PyBytes_GET_SIZE(b)) < 0:
                    continue
                t = <TableReader>(<tuple>lv[0])[i]
                if _table_newer(t, floor):
                    r = self._table_newest(t, h, ik, ikn)
                    if r >= 0:
                        return r
            return -1
        finally:
            if ik != stackbuf:
                free(ik)

    cdef int64_t _table_newest(self, TableReader t, uint64_t h, const uint8_t* ik, size_t ikn) except -2:
        """The sequence of t's newest entry of ik's user key (ik: that key with the
        largest tag), or -1 if t holds none; after t's bloom filter."""
        cdef TableIterator ti
        cdef size_t kn = ikn - TAG_SIZE
        if not t.may_contain(h):
            return -1
        ti = TableIterator(t)
        ti.seek(ik, ikn)
        if ti.valid and ti.key_len == ikn and (kn == 0 or memcmp(ti.key, ik, kn) == 0):
            return <int64_t>(load_u64(ti.key + kn) >> 8)
        return -1


    cdef object _lookup(self, const uint8_t* k, size_t kn, uint64_t seq, int64_t* expiry=NULL,
                        bint view=False, SuperVersion at_sv=None):
        """bytes, or None if absent (deleted, expired or never written). If expiry is
        given, it receives the found value's expiry in ms (left alone if none). With
        view, a value found in a table comes as a ValueView (no copy); memtable
        values still come as bytes. at_sv: the SuperVersion to read (None: the
        current one)."""
        cdef SuperVersion sv = self.sv if at_sv is None else at_sv
        cdef MemTable m
        cdef const uint8_t* vp
        cdef size_t vn
        cdef int kind, i
        cdef int64_t now = -1
        cdef TableReader t
        cdef uint8_t stackbuf[128]
        cdef uint8_t* ik = stackbuf
        cdef size_t ikn = kn + TAG_SIZE
        cdef uint64_t h
        cdef object r
        cdef tuple lv
        cdef bytes b
        cdef uint64_t cover = 0, fseq = 0
        cdef BlockIter bi = None
        cdef Py_ssize_t j
        cdef int asked = 0               # level-0 tables whose filter this read asked (ReadCharge)
        if self.closed:
            raise self._closed_error()
        if sv.static_range_dels is not None or sv.mem.range_dels is not None:   # tombstones somewhere
            # the newest tombstone covering k at seq: a version found older than it is deleted
            cover = self._range_dels(sv).max_covering_c(k, kn, seq)
        if sv.mem.lookup(k, kn, seq, &vp, &vn, &kind):
            if cover and (load_u64(vp - TAG_SIZE) >> 8) < cover:     # the tag ends the key, before the value
                return None
            if kind == KIND_MERGE:
                return self._merge_get(sv, k, kn, seq, cover)
            return self._mem_result(kind, vp, vn, expiry)
        for m in sv.imms:
            if m.lookup(k, kn, seq, &vp, &vn, &kind):
                if cover and (load_u64(vp - TAG_SIZE) >> 8) < cover:
                    return None
                if kind == KIND_MERGE:
                    return self._merge_get(sv, k, kn, seq, cover)
                return self._mem_result(kind, vp, vn, expiry)
        if not sv.l0 and not sv.levels:
            return None
        if ikn > 128:
            ik = <uint8_t*>malloc(ikn)
            if ik == NULL:
                raise MemoryError()
        try:
            if kn:
                memcpy(ik, k, kn)
            store_u64(ik + kn, make_tag(seq, KIND_MAX))
            h = bloom_hash(k, kn)
            for j in range(len(sv.l0)):     # the level-0 filters' lines, loaded together
                (<TableReader>sv.l0[j]).prefetch_filter(h)
            # taken at the first table read (a miss every bloom filter rules out takes none); every
            # probe reads with it, and after MERGED it stands on the operand
            for j in range(len(sv.l0)):
                t = <TableReader>sv.l0[j]
                # L0 files overlap, but most keys miss most ranges
                if not t.in_range(k, kn):
                    continue
                asked += 1
                if asked > 1:
                    self.read_charge.add(1)
                if self._bloom(t, h):
                    if bi is None:
                        bi = self._take_bi()
                    r = self._probe(t, ik, ikn, &now, expiry, view, &fseq, bi)
                    if r is not None:
                        if r is DELETED or (cover and fseq < cover):
                            return None
                        if r is MERGED:
                            return self._merge_get(sv, k, kn, seq, cover, t, bi, j + 1, 0)
                        return r
                    if asked > 1:
                        self.read_charge.add(SEEK_CHARGE - 1)
            for j in range(len(sv.levels)):
                lv = <tuple>sv.levels[j]
                i = find_table(<list>lv[1], ik, ikn)
                if i == len(<list>lv[1]):
                    continue
                b = <bytes>(<list>lv[2])[i]
                if cmp_bytes(k, kn, <const uint8_t*>PyBytes_AS_STRING(b), PyBytes_GET_SIZE(b)) < 0:
                    continue
                t = <TableReader>(<tuple>lv[0])[i]
                if not self._bloom(t, h):
                    continue
                if bi is None:
                    bi = self._take_bi()
                r = self._probe(t, ik, ikn, &now, expiry, view, &fseq, bi)
                if r is not None:
                    if r is DELETED or (cover and fseq < cover):
                        return None
                    if r is MERGED:
                        return self._merge_get(sv, k, kn, seq, cover, t, bi, len(sv.l0), j + 1)
                    return r
            return None
        finally:
            if ik != stackbuf:
                free(ik)
            if bi is not None and self.spare_bi is None:
                bi.release_pin()        # a value returned as a view took its pin already
                bi.data = None          # (or holds its own reference to the block's bytes)
                self.spare_bi = bi

    cdef BlockIter _take_bi(self):
        """A BlockIter for one point read: the spare one (_lookup gives it back,
        off its block, when the read ends), or a new one while another read has it
        (a merge operator or a pread without the GIL lets another thread in).
        Saves a get that reads a table one object allocation."""
        cdef BlockIter bi = self.spare_bi
        if bi is None:
            return BlockIter()
        self.spare_bi = None
        return bi

    cdef RangeDelSet _range_dels(self, SuperVersion sv):
        """A RangeDelSet of every range tombstone of sv (its memtable's as they are
        now), or None if it has none. Cached on sv and extended when the memtable
        has gained tombstones since (a tombstone newer than a read's sequence is
        ignored by the read, so a set with more of them serves older reads too).

        The tables' and immutable memtables' tombstones are fragmented once per
        SuperVersion; the active memtable's are kept in segments stacked on them
        (RangeDelSet.base), merged as a binary counter (a new segment of the
        tombstones added since, then the top two merged while the lower one is
        no larger), so a read after each of n tombstone writes costs O(log n)
        amortized fragmenting, not O(n), and a lookup asks O(log n) segments."""
        cdef list mrd = sv.mem.range_dels
        cdef Py_ssize_t n = 0 if mrd is None else len(mrd), have = 0
        cdef RangeDelSet base = None
        cdef list segs
        c = sv.rdel_cache
        if c is not None and (<tuple>c)[0] == n:
            return (<tuple>c)[1]
        if n == 0 and sv.static_range_dels is None:
            return None
        if sv.static_range_dels is not None:       # fragmented once per SuperVersion
            if sv.static_rdel is None:
                sv.static_rdel = RangeDelSet(sv.static_range_dels)
            base = sv.static_rdel
        segs = []                                   # [(tombstones, RangeDelSet over the ones below)]
        if c is not None and (<tuple>c)[0] < n:
            have = (<tuple>c)[0]
            segs = list((<tuple>c)[2])
        if n > have:
            segs.append((mrd[have:n], None))
            while len(segs) >= 2 and len(segs[len(segs) - 2][0]) <= len(segs[len(segs) - 1][0]):
                top = segs.pop()
                segs[len(segs) - 1] = (segs[len(segs) - 1][0] + top[0], None)
            below = base if len(segs) == 1 else segs[len(segs) - 2][1]
            segs[len(segs) - 1] = (segs[len(segs) - 1][0], RangeDelSet(segs[len(segs) - 1][0], below))
        rd = segs[len(segs) - 1][1] if segs else base
        sv.rdel_cache = (n, rd, tuple(segs))
        return rd

    cdef object _merge_get(self, SuperVersion sv, const uint8_t* k, size_t kn, uint64_t seq,
                           uint64_t cover=0, TableReader found=None, BlockIter at=None,
                           Py_ssize_t next_l0=0, Py_ssize_t next_level=0):
        """The value of user key k at seq when its newest visible entry is a merge
        operand (mergeget.pxi): the slow path of a point read, taken only for a key
        with operands on top. cover: the sequence of the newest range tombstone
        covering k at seq (0: none); entries older than it are deleted, so the
        operands newer than it fold over no base. found/at/next_l0/next_level:
        where the point read met the operand in a table (merge_lookup goes on from
        there)."""
        return merge_lookup(sv, self.merge_op, k, kn, seq, self._now_ms(), cover, found, at,
                            next_l0, next_level)

    cdef bint _bloom(self, TableReader t, uint64_t h):
        """May table t hold the key of hash h (its bloom filter; counted in stats)?"""
        self.n_bloom_checks += 1
        if t.may_contain(h):
            return True
        self.n_bloom_useful += 1
        return False

    cdef object _probe(self, TableReader t, const uint8_t* ik, size_t ikn, int64_t* now,
                       int64_t* expiry, bint view, uint64_t* seq_out, BlockIter bi):
        """One table's answer for ik (see TableReader.get), read with bi, after its
        bloom filter (_bloom). now is read from the clock the first time a table
        is searched."""
        if now[0] < 0:
            now[0] = self._now_ms()
        return t.get(ik, ikn, now[0], expiry, view, seq_out, bi)

    cdef int64_t _now_ms(self) except? -1:
        return clock_ms(self.clock)

    cdef object _mem_result(self, int kind, const uint8_t* vp, size_t vn, int64_t* expiry):
        """A memtable entry's answer: bytes, None (a deletion or expired), or
        MERGED (a merge operand: the caller folds)."""
        if kind == KIND_PUT:
            return PyBytes_FromStringAndSize(<char*>vp, vn)
        if kind == KIND_PUT_TTL:
            if <int64_t>load_u64(vp) <= self._now_ms():
                return None
            if expiry != NULL:
                expiry[0] = <int64_t>load_u64(vp)
            return PyBytes_FromStringAndSize(<char*>vp + 8, vn - 8)
        if kind == KIND_MERGE:
            return MERGED
        return None

    cdef object _get(self, object key, uint64_t seq, int64_t* expiry=NULL, bint view=False):
        """_lookup for a key object, counted in gets and get_hits."""
        cdef Bytes kb
        get_buffer(key, &kb, "key")
        try:
            r = self._lookup(kb.p, kb.n, seq, expiry, view)
        finally:
            release_buffer(&kb)
        self.n_gets += 1
        if r is not None:
            self.n_get_hits += 1
        return r

    cdef object _ttl_at(self, key, uint64_t seq):
        cdef Bytes kb
        cdef int64_t expiry = 0
        get_buffer(key, &kb, "key")
        try:
            r = self._lookup(kb.p, kb.n, seq, &expiry)
        finally:
            release_buffer(&kb)
        if r is None:
            raise KeyError(key)
        return self._seconds_left(expiry)

    cdef object _seconds_left(self, int64_t expiry):
        """Seconds from now until expiry (ms since the epoch), or None for 0 (never)."""
        if expiry == 0:
            return None
        return max(0.0, expiry / 1000.0 - self.clock())

    cdef object _get_view(self, key, default):
        r = self._get(key, self.last_seq, NULL, True)
        if r is None:
            return default
        if type(r) is bytes:
            return ValueView.of(r, <const uint8_t*>PyBytes_AS_STRING(r), PyBytes_GET_SIZE(r))
        if (<ValueView>r).cache is not None:
            self.n_view_pins += 1
        return r

    cdef object _get_with_ttl(self, key, default):
        cdef int64_t expiry = 0
        r = self._get(key, self.last_seq, &expiry)
        if r is None:
            return default
        return (r, self._seconds_left(expiry))

    cdef MergingIterator _merging(self, SuperVersion sv):
        """A MergingIterator over every source of sv: its memtables, L0 tables
        (newest first) and one LevelIterator per deeper level."""
        cdef MemTable m
        cdef TableReader t
        cdef list children = []
        cdef tuple lv
        cdef int run0
        if sv.mem.entries:       # an empty memtable holds nothing this read can see
            children.append(MemTableIterator(sv.mem))
        for m in sv.imms:
            children.append(MemTableIterator(m))
        run0 = len(children)
        for t in sv.l0:
            children.append(new_table_iterator(t))
        for lv in sv.levels:
            children.append(LevelIterator(<tuple>lv[0], lv[1]))
        return new_merging_iterator(children, self.read_charge, run0, run0 + len(sv.l0))

    cdef object _pin_current(self):
        """(the current SuperVersion, a Pin on its version) for a new iterator."""
        if self.closed:
            raise self._closed_error()
        if self.files.gc_pending:   # a pin was released while the mutex was busy
            self.files.gc_soon()
        sv = self.sv
        return sv, Pin(self.files, sv.version)

    cdef object _iterate(self, start, stop, bint reverse, int mode, seq, owner, prefix=None):
        """A DBIterator over [start, stop) (and keys starting with prefix) as of seq
        (None: now), pinning its version; it keeps owner (the DB handle) alive."""
        cdef SuperVersion sv
        start = check_bound("start", start)
        stop = check_bound("stop", stop)
        if prefix is not None:
            start, stop = prefix_bounds(check_bound("prefix", prefix), start, stop)
        sv, pin = self._pin_current()
        cdef uint64_t s = self.last_seq if seq is None else seq
        cdef RangeDelSet rd = None
        if sv.static_range_dels is not None or sv.mem.range_dels is not None:
            rd = self._range_dels(sv)
        return new_db_iterator(self._merging(sv), s, self._now_ms(), start, stop, reverse, mode, pin,
                               self.state, owner, rd, self.merge_op)

    cdef object _cursor(self, lower, upper, prefix, seq, owner):
        """An lsmkv.Iterator (lsmkv/core/cursor.pyx) as of seq (None: now), pinning
        its version; it keeps owner (the DB handle) alive."""
        cdef SuperVersion sv
        sv, pin = self._pin_current()
        cdef uint64_t s = self.last_seq if seq is None else seq
        cdef Iterator it = Iterator(self._merging(sv), s, lower, upper, prefix, pin, self.state, owner,
                                    self.clock)
        if sv.static_range_dels is not None or sv.mem.range_dels is not None:
            it.range_dels = self._range_dels(sv)
        it.merge_op = self.merge_op
        return it
