# fetch.pxi: reading several data blocks at once (readmany.pxi's mg_fetch, for
# multi_get): the reads, checksums and decompressions of a batch of blocks run
# without the GIL, shared between the calling thread and helper threads, as
# RocksDB's MultiGet reads a batch's blocks in parallel.
# A part of lsmkv/core/table.pyx (included there; not compiled on its own): its
# names are the table module's.
#
# How: the caller describes each block (FetchJob: file, offset, length, the
# table's mapping or a read buffer), releases the GIL and posts the batch to the
# helpers; it and every helper that wakes in time claim jobs one at a time
# (an atomic counter) until none is left, and the caller waits for the
# helpers still working on a job they claimed. A helper that wakes late finds
# nothing left: a busy machine costs the batch nothing but the wake-up. A
# helper that finishes a batch polls for the next one for a while (the linger,
# FP_LINGER_US) before it sleeps, when batches have been coming that close
# together: a sleeping helper takes tens of microseconds to wake, most of a
# batch's reads, so a loop of multi_gets would otherwise find it asleep at the
# start of every batch (measured: +12-17% keys/s, for 22-30% more CPU, the polling). The
# polling yields the core every ~5 us (sched_yield), so that other runnable
# threads, such as a nice 19 compaction, still get it. Each
# job reads the stored block (pread; the mapping needs none), verifies its
# CRC32C and decompresses it with the thread's own libzstd context: into the
# slab cache slot the caller reserved for it by the length it expected (the
# table's last fetched block), which the caller then publishes; into a malloc'd
# buffer when there is none or the block is larger, which the caller copies
# into a new slot.
#
# Thread safety and invariants:
#   1. Helper threads touch no Python object and never take the GIL: a job is C
#      memory the caller owns until every helper that joined its batch is done.
#      They block every signal (a signal goes to a Python thread).
#   2. The pool's state (the posted batch, the helpers on it, the idle count)
#      changes only under _fp_mu; jobs are claimed with an atomic counter. A
#      helper joins a batch only under _fp_mu while it is posted, and the caller
#      unposts it and waits, under _fp_mu, until every helper that joined has
#      left before it reads the results. One batch is posted at a time; a caller
#      that finds another's batch posted works through its own alone.
#   3. A job that fails in any way (read error, short file, checksum, zstd
#      error, a block type or size it does not handle) only leaves ok = 0: the
#      caller then reads that block again the ordinary way (load_into), which
#      raises the precise CorruptionError or OSError naming the file and the
#      offset, in key order as before.
#   4. After fork() the child has no helpers: the pool is reset in the child
#      (os.register_at_fork) and starts new helpers when next used.
#   5. A lingering helper reads only _fp_gen (atomically) without _fp_mu, and
#      looks at a batch only after taking _fp_mu again: a batch it saw posted
#      may be gone by then (it lives on its caller's stack).

# FetchJob: lsmkv/core/table.pxd

ctypedef struct FetchBatch:
    FetchJob* jobs
    Py_ssize_t n
    Py_ssize_t next         # the next job to claim (atomic)
    Py_ssize_t done         # jobs finished (atomic)
    int helpers             # helpers that joined it and have not left (under _fp_mu)
    bint waiting            # the caller waits for them on _fp_done (under _fp_mu)

cdef extern from *:
    """
    #include <time.h>
    #include <sched.h>
    static inline Py_ssize_t lsmkv_fp_claim(Py_ssize_t* p) {
        return __atomic_fetch_add(p, 1, __ATOMIC_RELAXED);
    }
    static inline void lsmkv_fp_finish(Py_ssize_t* p) {
        __atomic_fetch_add(p, 1, __ATOMIC_RELEASE);
    }
    static inline Py_ssize_t lsmkv_fp_load(Py_ssize_t* p) {
        return __atomic_load_n(p, __ATOMIC_ACQUIRE);
    }
    static inline unsigned long long lsmkv_fp_gen(unsigned long long* p) {
        return __atomic_load_n(p, __ATOMIC_ACQUIRE);
    }
    static inline void lsmkv_fp_gen_next(unsigned long long* p) {
        __atomic_add_fetch(p, 1, __ATOMIC_RELEASE);
    }
    static inline long long lsmkv_fp_now_ns(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
    }
    static inline void lsmkv_fp_pause(void) {
    #if defined(__x86_64__) || defined(__i386__)
        __builtin_ia32_pause();
    #endif
    }
    """
    Py_ssize_t lsmkv_fp_claim(Py_ssize_t* p) nogil
    void lsmkv_fp_finish(Py_ssize_t* p) nogil
    Py_ssize_t lsmkv_fp_load(Py_ssize_t* p) nogil
    void lsmkv_fp_pause() nogil
    int sched_yield() nogil
    unsigned long long lsmkv_fp_gen(unsigned long long* p) nogil
    void lsmkv_fp_gen_next(unsigned long long* p) nogil
    long long lsmkv_fp_now_ns() nogil

DEF FP_SPIN = 256         # pause loops (~2-15 us) the caller waits for a helper's last job before sleeping
DEF FP_LINGER_US = 200    # the linger's default (LSMKV_FETCH_LINGER_US; 0: none): it spans the gap
                          # between a loop's multi_gets of 100 keys (measured: 50 us gave +3-4%)

cdef pthread_mutex_t _fp_mu
cdef pthread_cond_t _fp_work         # a batch was posted
cdef pthread_cond_t _fp_done         # a helper left a batch
cdef FetchBatch* _fp_batch = NULL    # the posted batch, or NULL
cdef int _fp_started = 0             # helper threads running
cdef int _fp_want = 0                # helper threads wanted (parallel_reads)
cdef int _fp_idle = 0                # helpers waiting on _fp_work
cdef unsigned long long _fp_batches = 0, _fp_jobs = 0, _fp_helper_jobs = 0
cdef unsigned long long _fp_in_slot = 0   # blocks decompressed into their reserved slot (readmany.pxi, with the GIL)
cdef unsigned long long _fp_gen = 0    # batches posted (atomic; bumped under _fp_mu): what a lingering helper polls
cdef long long _fp_linger_ns = FP_LINGER_US * 1000
cdef long long _fp_unposted_ns = 0     # when the last posted batch was unposted (under _fp_mu)
cdef long long _fp_gap_ns = -1         # the time from then to the newest post (under _fp_mu; -1: none yet)
cdef unsigned long long _fp_linger_total = 0   # ns helpers spent lingering (under _fp_mu)


cdef void _fp_init() noexcept:
    global _fp_batch, _fp_started, _fp_idle, _fp_unposted_ns, _fp_gap_ns
    pthread_mutex_init(&_fp_mu, NULL)
    pthread_cond_init(&_fp_work, NULL)
    pthread_cond_init(&_fp_done, NULL)
    _fp_batch = NULL
    _fp_started = 0
    _fp_idle = 0
    _fp_unposted_ns = 0
    _fp_gap_ns = -1


def _fp_after_fork():
    _fp_init()


_fp_init()
_fp_want = max(0, min(3, (os.cpu_count() or 1) - 1))
if os.environ.get("LSMKV_PARALLEL_READS", "").strip().isdigit():
    _fp_want = min(64, int(os.environ["LSMKV_PARALLEL_READS"]))
if os.environ.get("LSMKV_FETCH_LINGER_US", "").strip().isdigit():
    _fp_linger_ns = min(10 ** 6, int(os.environ["LSMKV_FETCH_LINGER_US"])) * 1000
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_fp_after_fork)


cdef void _fetch_one(FetchJob* j, void* dctx) noexcept nogil:
    """Read, verify and decompress one block (invariant 3: any failure leaves ok 0)."""
    cdef const uint8_t* src = j.src
    cdef size_t done = 0, body
    cdef ssize_t got
    cdef int btype
    cdef long long csize
    cdef size_t r
    if src == NULL:
        while done < j.n:
            got = pread(j.fd, j.buf + done, j.n - done, j.off + done)
            if got < 0 and errno == EINTR:
                continue
            if got <= 0:
                return
            done += got
        src = <const uint8_t*>j.buf
    body = j.n - TRAILER_SIZE
    if crc32c(src, body + 1, 0) != load_u32(src + body + 1):
        return
    btype = src[body]
    if btype == BLOCK_RAW:
        j.out = j.dst if j.dst != NULL and body <= j.dst_cap else <uint8_t*>malloc(body + 1)
        if j.out == NULL:
            return
        memcpy(j.out, src, body)
        j.out_len = body
        j.ok = True
        return
    if dctx == NULL or not (btype == BLOCK_ZSTD or (btype == BLOCK_ZSTD_DICT and j.has_dict)):
        return
    csize = zstd_content_size(src, body)
    if csize < 0 or csize > MAX_BLOCK_CONTENT:
        return
    if j.dst != NULL and <size_t>csize <= j.dst_cap:
        j.out = j.dst
        _prefetch_fill(j.out, <size_t>csize)
    else:
        j.out = <uint8_t*>malloc(<size_t>csize + 1)
        if j.out == NULL:
            return
    r = zstd_decompress(dctx, j.out, <size_t>csize, src, body,
                        j.ddict if btype == BLOCK_ZSTD_DICT else NULL)
    if zstd_is_error(r) or r != <size_t>csize:
        if j.out != j.dst:
            free(j.out)
        j.out = NULL
        return
    j.out_len = <size_t>csize
    j.ok = True


cdef Py_ssize_t _fp_work_on(FetchBatch* b, void* dctx) noexcept nogil:
    """Claim and do b's jobs until none is left (without _fp_mu); returns how many it did."""
    cdef Py_ssize_t i, k = 0
    while True:
        i = lsmkv_fp_claim(&b.next)
        if i >= b.n:
            return k
        _fetch_one(&b.jobs[i], dctx)
        lsmkv_fp_finish(&b.done)
        k += 1


cdef void* _fp_main(void* arg) noexcept nogil:
    """A helper thread: works on posted batches, for the life of the process."""
    global _fp_idle, _fp_helper_jobs, _fp_linger_total
    cdef void* dctx = zdctx_new()       # NULL (no memory): its zstd jobs fail, and are redone
    cdef FetchBatch* b
    cdef Py_ssize_t k
    cdef unsigned long long seen
    cdef long long t0, t
    cdef int spins
    cdef sigset_t every
    sigfillset(&every)                  # signals go to Python's threads, never to a helper
    pthread_sigmask(SIG_BLOCK, &every, NULL)
    pthread_mutex_lock(&_fp_mu)
    while True:
        b = _fp_batch
        if b == NULL or lsmkv_fp_load(&b.next) >= b.n:
            if _fp_linger_ns > 0 and 0 <= _fp_gap_ns <= _fp_linger_ns:    # batches come close: linger
                seen = _fp_gen
                pthread_mutex_unlock(&_fp_mu)
                t0 = t = lsmkv_fp_now_ns()
                spins = 0
                while lsmkv_fp_gen(&_fp_gen) == seen:  # invariant 5
                    lsmkv_fp_pause()
                    spins += 1
                    if spins % 32 == 0:
                        t = lsmkv_fp_now_ns()
                        if t - t0 > _fp_linger_ns:
                            break
                        if spins % 512 == 0:
                            sched_yield()
                pthread_mutex_lock(&_fp_mu)
                _fp_linger_total += t - t0
                if _fp_gen != seen:
                    continue
            _fp_idle += 1
            pthread_cond_wait(&_fp_work, &_fp_mu)
            _fp_idle -= 1
            continue
        b.helpers += 1
        pthread_mutex_unlock(&_fp_mu)
        k = _fp_work_on(b, dctx)
        pthread_mutex_lock(&_fp_mu)
        _fp_helper_jobs += k
        b.helpers -= 1
        if b.helpers == 0 and b.waiting:
            pthread_cond_broadcast(&_fp_done)
    return NULL


cdef int _fp_start() except -1:
    """Start helpers up to _fp_want (with the GIL: one caller at a time)."""
    global _fp_started, _fp_want
    cdef pthread_t t
    cdef sigset_t every, old
    if _fp_started >= _fp_want:
        return 0
    # a new thread inherits the creator's mask: created with every signal blocked, a
    # helper can never be the thread a signal is delivered to (not even before its
    # own pthread_sigmask); the caller's mask is put back at once
    sigfillset(&every)
    pthread_sigmask(SIG_BLOCK, &every, &old)
    try:
        while _fp_started < _fp_want:
            if pthread_create(&t, NULL, _fp_main, NULL) != 0:
                _fp_want = _fp_started          # no more threads: work with those there are
                break
            pthread_detach(t)
            _fp_started += 1
    finally:
        pthread_sigmask(SIG_SETMASK, &old, NULL)
    return 0


cdef void _fetch_all(FetchBatch* b, void* dctx, bint post) noexcept nogil:
    """Do every job of b (without the GIL), with the helpers if post and none is busy."""
    global _fp_batch, _fp_batches, _fp_jobs, _fp_gap_ns, _fp_unposted_ns
    cdef bint posted = False
    cdef int spin = 0
    pthread_mutex_lock(&_fp_mu)
    _fp_batches += 1
    _fp_jobs += b.n
    if post and _fp_batch == NULL:
        _fp_gap_ns = lsmkv_fp_now_ns() - _fp_unposted_ns if _fp_unposted_ns else -1
        _fp_batch = b
        lsmkv_fp_gen_next(&_fp_gen)
        posted = True
        if _fp_idle:
            pthread_cond_broadcast(&_fp_work)
    pthread_mutex_unlock(&_fp_mu)
    _fp_work_on(b, dctx)
    if not posted:
        return
    while lsmkv_fp_load(&b.done) < b.n and spin < FP_SPIN:     # a helper's last job: briefly
        lsmkv_fp_pause()
        spin += 1
    pthread_mutex_lock(&_fp_mu)
    _fp_batch = NULL
    _fp_unposted_ns = lsmkv_fp_now_ns()
    b.waiting = True
    while b.helpers > 0:
        pthread_cond_wait(&_fp_done, &_fp_mu)
    pthread_mutex_unlock(&_fp_mu)


cdef int fetch_blocks(FetchJob* jobs, Py_ssize_t n) except -1:
    """Do the n jobs (filled in by the caller: fd, src or buf, off, n, ddict,
    has_dict; ok and out zeroed), the GIL released, on helper threads too when
    there are several and parallel_reads() allows."""
    cdef FetchBatch b
    cdef void* dctx = _dctx()
    cdef bint post = n >= 2 and _fp_want > 0
    if post and _fp_started < _fp_want:
        _fp_start()
    b.jobs = jobs
    b.n = n
    b.next = 0
    b.done = 0
    b.helpers = 0
    b.waiting = False
    with nogil:
        _fetch_all(&b, dctx, post and _fp_started > 0)
    return 0


def parallel_reads(n=None):
    """Helper threads a multi_get's batch of block reads may use besides the
    calling thread (default: the CPU count - 1, at most 3, or the environment
    variable LSMKV_PARALLEL_READS at import); with n given, set it
    (0: the calling thread reads alone, still without the GIL) and return the
    previous value. Helpers already started stay, idle, when it is lowered."""
    global _fp_want
    cdef int prev = _fp_want
    if n is not None:
        if not 0 <= n <= 64:
            raise ValueError(f"parallel_reads must be in [0, 64], got {n}")
        _fp_want = n
    return prev


def fetch_stats():
    """Batched block fetches: batches, blocks, blocks a helper thread fetched,
    blocks decompressed straight into the cache slot reserved for them
    (in_slot; the others were copied into one), helper threads started, and
    the microseconds helpers spent lingering (polling for a next batch: CPU
    time spent waiting, not reading)."""
    return {"batches": _fp_batches, "blocks": _fp_jobs, "helper_blocks": _fp_helper_jobs,
            "in_slot": _fp_in_slot, "helpers": _fp_started, "linger_us": _fp_linger_total // 1000}
