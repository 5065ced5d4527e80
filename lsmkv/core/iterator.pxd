from lsmkv.core.merge cimport MergeOperator
from lsmkv.core.rangedel cimport RangeDelSet
from libc.stdint cimport uint8_t, uint64_t, int64_t

cdef class InternalIterator:
    """Base of every iterator over internal entries (memtable, block, table, level, merge).

    After a positioning call, when `valid` is true: key/key_len is the internal key
    (user key + 8-byte tag), val/val_len is the value region as stored (for
    KIND_PUT_TTL it starts with the 8-byte expiry). Pointers stay valid until the
    next positioning call."""
    cdef bint valid
    cdef const uint8_t* key
    cdef size_t key_len
    cdef const uint8_t* val
    cdef size_t val_len
    cdef int seek(self, const uint8_t* target, size_t n) except -1
    cdef int seek_start(self, const uint8_t* target, size_t n) except -1
    cdef int seek_finish(self, const uint8_t* target, size_t n) except -1
    cdef int seek_to_first(self) except -1
    cdef int seek_to_last(self) except -1
    cdef int next(self) except -1
    cdef int prev(self) except -1
    cdef int may_hold(self, const uint8_t* ukey, size_t ukn, uint64_t h) except -1

cdef enum:
    SEEK_CHARGE = 16        # the read charge of a block read (a run a seek positions; ReadCharge)


cdef class ReadCharge:
    """What reads spent on sorted runs beyond their first while level 0 held a table,
    in units of one filter probe (lsmkv.engine.compaction.read_compaction_units)."""
    cdef public int64_t units
    cdef public int64_t epoch        # bumped when units restart (a merge, a new level 0)
    cdef public int64_t due_at       # units at which wake is called once (0: not to be)
    cdef public object wake          # the compaction job's wake, or None
    cdef void add(self, int64_t n) noexcept


cdef class MergingIterator(InternalIterator):
    cdef list children
    cdef int n
    cdef int current
    cdef int second              # runner-up child after the last pick, or -1
    cdef int* heap               # heap of valid child indices (n > HEAP_MIN_CHILDREN), or NULL
    cdef int heap_n
    cdef int heap_dir            # direction the heap is ordered for; 0 = not built
    cdef const uint8_t** hkey    # heap mode: each valid child's current key and length, so
    cdef size_t* hlen            #   heap comparisons touch no Python object
    cdef char* pending           # per child: left unpositioned by seek_lazy (surely no entry of its user key)
    cdef int npending
    cdef uint8_t* ptarget        # seek_lazy's target, to position the pending children later
    cdef size_t ptn, ptcap
    cdef ReadCharge charge       # charged for the level-0 tables its seeks position, or None
    cdef int64_t charge_epoch    # charge.epoch when it was made: charged only while they match
    cdef int run0, l0_end        # children [run0, n) are table runs, [run0, l0_end) level-0 tables
    cdef int seek_runs           # level-0 tables positioned since the last seek began
    cdef void _charge(self, int runs) noexcept
    cdef void _pick(self, int direction) noexcept
    cdef bint _before(self, int a, int b, int direction) noexcept
    cdef void _sift_down(self, int i, int direction) noexcept
    cdef int _step(self, int direction) except -1
    cdef void _set(self, int best, InternalIterator b) noexcept
    cdef int seek_for_prev(self, const uint8_t* target, size_t n) except -1
    cdef int seek_lazy(self, const uint8_t* target, size_t n) except -1
    cdef int _position_pending(self) except -1
    cdef int _seek_pending(self, const uint8_t* target, size_t n) except -1
    cdef void _clear_pending(self) noexcept
    cdef int _init(self, list children) except -1


cdef class HandleState:
    """Whether a DB handle may still be used, shared by the handle and every iterator
    it made, so that closing the handle (or forking) closes them at the cost of one
    C field check per step."""
    cdef public bint closed          # the handle was closed (or is inherited, below)
    cdef public bint forked          # this process is a fork() child of the one that opened it
    cdef public object path          # the database directory, for messages
    cdef public long pid             # the process that opened it


cdef object no_merge_operator(const uint8_t* k, size_t kn)
cdef MergingIterator new_merging_iterator(list children, ReadCharge charge=*, int run0=*, int l0_end=*)
cdef object new_db_iterator(MergingIterator it, uint64_t seq, int64_t now, object start, object stop,
                            bint reverse, int mode, object pin, HandleState state, object owner,
                            RangeDelSet range_dels, MergeOperator merge_op)
cdef object fold_forward(MergingIterator it, MergeOperator op, int64_t now, uint64_t cover)
