# cython: language_level=3
"""The compiled fast path of `lsmkv serve`: plain GET and SET requests read
into a connection's buffer (shared or pooled) are parsed, run and answered here, without a
Python frame per request. Everything else goes to the Python path
(lsmkv/server/conn.py, main.py's Server.execute) from the first request this
path does not take.

What it takes: a prefix of complete frames, each exactly
``*2\\r\\n$3\\r\\nGET\\r\\n$n\\r\\n<key>\\r\\n`` or
``*3\\r\\n$3\\r\\nSET\\r\\n$n\\r\\n<key>\\r\\n$m\\r\\n<value>\\r\\n`` (the name in any
case, lengths as Redis's string2ll accepts them, at most max_bulk), whose key
does not start with 0xff (the reserved prefix: the Python path decides), on a
connection in the plain state: authenticated, RESP2, replies on, database 0,
not in MULTI and watching nothing, in a server whose databases hold no hash
(with hashes, GET and SET check types first). SETs run here only while the
store would run them inline (Store.put's condition, for the whole group:
the memtable has room for all of it and level 0 is below its slowdown
trigger); otherwise they are left to the Python path, which queues them.
Anything else (another command, wrong arity, options, an error to report, an
incomplete frame) stops the fast path there.

Why: a pipelined GET/SET cost ~2 us of interpreter time per request on the
Python path (parse into lists, execute's dispatch and accounting, the
handler, the reply); and consecutive GETs are looked up together
(dbcore.multi_get_views), consecutive SETs inserted together
(dbcore.put_many): the memtable searches interleaved, so their cache misses
overlap, ~3x cheaper than one at a time in a large memtable.
docs/server.md ("Where the CPU goes") has the profile.

Invariants (each the Python path's, kept here):
  1. Replies are written in request order, before anything the Python path
     writes for the requests after them (run() writes its replies before it
     returns).
  2. Each command is accounted as Server.execute does: srv.commands, its
     commandstats entry (calls, ns on the loop, failed), conn.lastcmd; the
     engine counts GET hits and misses (keyspace_hits) itself. The first two are
     kept in Fast and added to the server's by Fast.fold(), which every reader
     of them calls first (INFO, CONFIG RESETSTAT).
  3. A GET run sees every SET before it in the pipeline: GETs and SETs are
     grouped only while consecutive, and a group runs before the next one.
  4. Flow control (conn.py invariant 4): replies are written at least every
     OUT_CHUNK bytes; when the client stops reading (conn.paused_w) after a
     write, run() stops and returns -(pos) - 1, where pos is the first request
     not answered: the caller keeps the rest until the socket drains. GETs of
     a batch not answered then hold nothing (their views are released and the
     engine's counts of their lookups taken back, uncount()): the Python path
     runs them once the client reads.
  5. A SET group goes to put_many only when the memtable has room for it by
     put_many's own bound (dbcore.PUT_MANY_NODE_BYTES a node besides key and
     value), so put_many never falls back to puts that could wait on the loop.

Thread safety: runs on the event loop thread only, like the rest of the
server; the engine calls it makes are the ones the Python path makes.
"""
from libc.stdint cimport int64_t
from libc.stdlib cimport malloc, realloc, free
from libc.string cimport memcpy
from posix.time cimport clock_gettime, timespec, CLOCK_MONOTONIC
from cpython.bytes cimport PyBytes_FromStringAndSize, PyBytes_AS_STRING, PyBytes_GET_SIZE
from cpython.bytearray cimport PyByteArray_AS_STRING, PyByteArray_GET_SIZE, PyByteArray_CheckExact
from cpython.list cimport PyList_GET_SIZE, PyList_GET_ITEM
from lsmkv.core.cache cimport ValueView
from lsmkv.core.dbcore import multi_get_views, put_many, write_room, PUT_MANY_NODE_BYTES

cdef class Fast

DEF GATHER_MIN = 16 * 1024      # as resp.GATHER_MIN: longer values are written as pieces
DEF SET_BATCH = 16              # SETs inserted together at most (dbcore.put_many)
DEF GET_BATCH = 16              # GETs looked up together at most (dbcore.multi_get_views)
DEF LEN_DIGITS = 18             # a length header's digits at most (string2ll's range)

cdef Py_ssize_t OUT_CHUNK = 256 * 1024   # as conn.OUT_CHUNK
cdef bytes NAME_GET = b"GET"
cdef bytes NAME_SET = b"SET"


cdef inline int64_t now_ns() noexcept nogil:
    cdef timespec ts
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return <int64_t>ts.tv_sec * 1000000000 + ts.tv_nsec


cdef Py_ssize_t bulk_at(const unsigned char* b, Py_ssize_t q, Py_ssize_t n, Py_ssize_t max_bulk,
                        Py_ssize_t* start, Py_ssize_t* ln) noexcept:
    """The bulk string at b[q:n]: its data's start and length, and the position
    after its CRLF; -2 if b[q:n] is a prefix of one (incomplete), -1 if it is not
    in the plain form (the Python parser then reads it, and reports any error)."""
    cdef Py_ssize_t p, v = 0, d
    if q >= n:
        return -2
    if b[q] != 36:                       # '$'
        return -1
    p = q + 1
    while p < n and 48 <= b[p] <= 57:
        v = v * 10 + (b[p] - 48)
        p += 1
        if p - q - 1 > LEN_DIGITS:
            return -1
    d = p - q - 1
    if (d > 1 and b[q + 1] == 48) or v > max_bulk:
        return -1
    if p >= n:
        return -2
    if d == 0 or b[p] != 13:
        return -1
    if p + 1 >= n:
        return -2
    if b[p + 1] != 10:
        return -1
    p += 2
    if p + v + 2 > n:
        if p + v < n and b[p + v] != 13 or p + v + 1 < n and b[p + v + 1] != 10:
            return -1
        return -2
    if b[p + v] != 13 or b[p + v + 1] != 10:
        return -1
    start[0] = p
    ln[0] = v
    return p + v + 2


cdef bint partial_at(const unsigned char* b, Py_ssize_t pos, Py_ssize_t n, Py_ssize_t max_bulk) noexcept:
    """b[pos:n] is the start of a plain frame of 1 to 3 arguments, not all of it:
    the connection may keep it in its buffer without a resp.Frame (its arguments
    are few) until the rest arrives."""
    cdef Py_ssize_t q, s, ln, i, argc
    if pos >= n or b[pos] != 42:         # '*'
        return False
    if pos + 1 >= n:
        return True
    argc = b[pos + 1] - 48
    if argc < 1 or argc > 3:
        return False
    if pos + 2 >= n:
        return True
    if b[pos + 2] != 13:
        return False
    if pos + 3 >= n:
        return True
    if b[pos + 3] != 10:
        return False
    q = pos + 4
    for i in range(argc):
        q = bulk_at(b, q, n, max_bulk, &s, &ln)
        if q == -2:
            return True
        if q < 0:
            return False
    return False                         # complete


cdef inline bint is_name(const unsigned char* b, Py_ssize_t s, Py_ssize_t ln, char first) noexcept:
    """b[s:s+ln] is first + 'ET' in any case (GET, SET)."""
    return (ln == 3 and (b[s] | 0x20) == first and (b[s + 1] | 0x20) == 101   # 'e'
            and (b[s + 2] | 0x20) == 116)                                    # 't'


cdef int count_calls(dict calls, bytes name, Py_ssize_t n, int64_t ns, Py_ssize_t failed) except -1:
    """Add n calls of name taking ns in all, failed of them, to the server's
    commandstats entry [calls, ns, failed, rejected] (as Server.execute counts)."""
    st = calls.get(name)
    if st is None:
        st = calls[name] = [0, 0, 0, 0]
    st[0] += n
    st[1] += ns
    if failed:
        st[2] += failed
    return 0


cdef struct Out:
    char* p
    Py_ssize_t n, cap
    Py_ssize_t big           # bytes of large values written as pieces since the last check


cdef int out_put(Out* o, const char* s, Py_ssize_t k) except -1:
    cdef Py_ssize_t cap
    cdef char* np
    if o.n + k > o.cap:
        cap = max(o.cap * 2, o.n + k, 1024)
        np = <char*>realloc(o.p, cap)
        if np == NULL:
            raise MemoryError()
        o.p = np
        o.cap = cap
    memcpy(o.p + o.n, s, k)
    o.n += k
    return 0


cdef Py_ssize_t bulk_header(char* hdr, Py_ssize_t m) noexcept:
    """Write "$<m>\\r\\n" at the end of hdr[0:32]; returns where it starts."""
    cdef Py_ssize_t k = 30
    hdr[30] = 13
    hdr[31] = 10
    while True:
        k -= 1
        hdr[k] = <char>(48 + m % 10)
        m //= 10
        if m == 0:
            break
    k -= 1
    hdr[k] = 36                       # '$'
    return k


cdef class ConnCore:
    """The state of a client connection that the compiled read path reads and
    writes, and that path: the base of conn.Connection (a Python subclass holds
    the rest; conn.py's docstring has the buffer life cycle and invariants).
    get_buffer and buffer_updated (asyncio.BufferedProtocol's) answer a read
    into the server's shared buffer that holds only plain GET/SET requests
    (the common case: one whole request per read) with no Python frame: the
    fast path (Fast.run) takes it all. Any other read goes to the subclass's
    _get_buffer, _buffer_updated and _shared_read_rest, in Python."""
    cdef public object srv, tr, buf, frame, multi, watches, db, lastcmd
    cdef public Fast fast              # srv.fast
    cdef public bint closed, authed, paused_w, blocked
    cdef public int proto, reply_mode  # RESP version; CLIENT REPLY (0 on, 1 off, 2 skip)
    cdef public Py_ssize_t start, end, need
    cdef public double last            # srv.clock at the last read

    def get_buffer(self, sizehint):
        if not self.closed and self.buf is None:
            return self.srv.shared            # lent for this one read (conn.py's top)
        return self._get_buffer(sizehint)

    def buffer_updated(self, Py_ssize_t nbytes):
        cdef Py_ssize_t pos
        if self.closed:
            return
        srv = self.srv
        self.last = srv.clock
        if self.buf is None and self.frame is None:
            pos = self.fast.run(self, srv.shared, 0, nbytes)
            if pos != nbytes:
                self._shared_read_rest(nbytes, pos)
            return
        self._buffer_updated(nbytes)


cdef class StoreCore:
    """The write-path state of the server's store.Store that the fast path reads
    per group of SETs (as C fields): the base of store.Store, which has the
    rest and the meaning of each (store.py)."""
    cdef public Py_ssize_t queued      # write steps handed to the writer thread, not yet done
    cdef public object waiting         # a deque of steps waiting for the writer thread
    cdef public bint sync              # appendfsync always: every write syncs
    cdef public bint dirty             # writes since the last everysec sync
    cdef public Py_ssize_t inline_writes


cdef class Fast:
    """The fast path of one server (its db, store and counters); run() per read.
    Its commands are counted here, in C, and added to the server's counters
    (srv.commands, srv.fast_commands, srv.calls) by fold(), which each reader
    or resetter of those counters calls first (INFO, CONFIG RESETSTAT)."""
    cdef object srv, db, core, put, get_view
    cdef StoreCore store
    cdef Py_ssize_t max_bulk
    cdef readonly bint partial      # run() stopped at the start of a short frame (partial_at)
    cdef Py_ssize_t n_gets, n_sets, n_get_failed, n_set_failed   # not yet folded
    cdef int64_t get_ns, set_ns

    def __init__(self, srv):
        self.srv = srv
        self.db = srv.db
        self.core = srv.db.core
        self.store = srv.store
        self.put = srv.db.put
        self.get_view = srv.db.get_view
        self.max_bulk = srv.max_bulk

    def fold(self):
        """Add the commands counted since the last fold to the server's counters
        (invariant 2)."""
        srv = self.srv
        if self.n_gets or self.n_sets:
            srv.commands += self.n_gets + self.n_sets
            srv.fast_commands += self.n_gets + self.n_sets
            if self.n_gets:
                count_calls(srv.calls, NAME_GET, self.n_gets, self.get_ns, self.n_get_failed)
            if self.n_sets:
                count_calls(srv.calls, NAME_SET, self.n_sets, self.set_ns, self.n_set_failed)
        self.n_gets = self.n_sets = self.n_get_failed = self.n_set_failed = 0
        self.get_ns = self.set_ns = 0

    cdef int reply(self, Out* o, tr, object v) except -1:
        """GET's reply for v (a ValueView or None), as resp.bulk and conn._write put
        it on the wire: a value of GATHER_MIN bytes or more is written as pieces,
        its view (and cache pin) held by the transport until sent."""
        cdef char hdr[32]
        cdef Py_ssize_t k
        cdef ValueView vv
        if v is None:
            return out_put(o, "$-1\r\n", 5)
        vv = <ValueView>v
        k = bulk_header(hdr, <Py_ssize_t>vv.n)
        if vv.n < GATHER_MIN:
            out_put(o, hdr + k, 32 - k)
            out_put(o, <const char*>vv.p, vv.n)
            out_put(o, "\r\n", 2)
            vv.release()
            return 0
        if o.n:
            tr.write(PyBytes_FromStringAndSize(o.p, o.n))
            o.n = 0
        tr.writelines([PyBytes_FromStringAndSize(hdr + k, 32 - k), memoryview(v), b"\r\n"])
        o.big += vv.n
        return 0

    cdef int uncount(self, list vals, Py_ssize_t first) except -1:
        """The lookups of vals[first:] will not be answered now (invariant 4): their
        views are released and the engine's counts of them (gets, hits, pinned
        views) taken back, so the Python path's later run of those GETs is
        counted once, as if they had waited unread."""
        cdef Py_ssize_t i, hits = 0, pins = 0
        cdef ValueView vv
        for i in range(first, len(vals)):
            v = vals[i]
            if v is not None:
                vv = <ValueView>v
                hits += 1
                if vv.cache is not None:
                    pins += 1
                vv.release()
        c = self.core
        c.n_gets -= len(vals) - first
        c.n_get_hits -= hits
        c.n_view_pins -= pins
        return 0

    def run(self, ConnCore conn, buf, Py_ssize_t start, Py_ssize_t n):
        """Answer the leading plain GET/SET requests of buf[start:n] (a bytearray) on
        conn. Returns the position of the first request not taken (the Python path
        goes on from there; start when the connection is not in the plain state),
        or -(that position) - 1 when the client stopped reading (invariant 4)."""
        srv = self.srv
        self.partial = False
        if not (conn.authed and conn.multi is None and not conn.watches and conn.proto == 2
                and conn.reply_mode == 0 and conn.db is self.db and not srv.hashes):
            return start
        if not PyByteArray_CheckExact(buf) or n > PyByteArray_GET_SIZE(buf) or start < 0:
            return start
        cdef StoreCore store = self.store
        cdef bint can_set = store.queued == 0 and not store.waiting and not store.sync
        cdef const unsigned char* b = <const unsigned char*>PyByteArray_AS_STRING(buf)
        cdef Py_ssize_t pos = start, q = 0, s0, l0, s1, l1, s2, l2, i
        cdef Py_ssize_t gets_at[GET_BATCH]
        cdef list keys = []
        cdef list skeys = []
        cdef list svals = []
        cdef Py_ssize_t room = -1, need = 0, cost
        cdef Py_ssize_t node_bytes = PUT_MANY_NODE_BYTES
        cdef bint took
        cdef Py_ssize_t ngets = 0, nsets = 0, gets_done = 0, gfail = 0, sfail = 0
        cdef int64_t gns = 0, sns = 0, t0
        cdef int stop = 0, argc
        cdef bint last_set = False
        cdef Out o
        o.p = NULL
        o.n = o.cap = o.big = 0
        tr = conn.tr
        try:
            while True:
                # -- the next frame, if it is a plain GET or SET
                argc = 0
                if pos + 4 <= n and b[pos] == 42 and b[pos + 2] == 13 and b[pos + 3] == 10:
                    argc = b[pos + 1] - 48
                if argc == 2 or argc == 3:
                    q = bulk_at(b, pos + 4, n, self.max_bulk, &s0, &l0)
                    if q >= 0:
                        q = bulk_at(b, q, n, self.max_bulk, &s1, &l1)
                    if q >= 0 and l1 and b[s1] == 0xff:
                        q = -1                       # the reserved prefix: Python decides
                    if q >= 0 and argc == 3:
                        q = bulk_at(b, q, n, self.max_bulk, &s2, &l2)
                    if q < 0:
                        argc = 0
                    elif argc == 2 and not is_name(b, s0, l0, 103):         # 'g'
                        argc = 0
                    elif argc == 3 and not (can_set and is_name(b, s0, l0, 115)):  # 's'
                        argc = 0
                else:
                    argc = 0
                took = False
                if argc == 2 and not skeys and len(keys) < GET_BATCH:
                    gets_at[len(keys)] = pos
                    keys.append(PyBytes_FromStringAndSize(<const char*>b + s1, l1))
                    took = True
                elif argc == 3 and not keys and len(skeys) < SET_BATCH:
                    if not skeys:                    # Store.put's condition, for the group
                        room = write_room(self.db)
                    cost = node_bytes + l1 + l2
                    if need + cost < room:
                        need += cost
                        skeys.append(PyBytes_FromStringAndSize(<const char*>b + s1, l1))
                        svals.append(PyBytes_FromStringAndSize(<const char*>b + s2, l2))
                        took = True
                if took:
                    pos = q
                    if pos < n:
                        continue
                # -- run the GETs or SETs gathered (invariant 3)
                if keys:
                    t0 = now_ns()
                    try:
                        if len(keys) == 1:
                            vals = [self.get_view(keys[0])]
                        else:
                            vals = multi_get_views(self.db, keys)
                    except Exception as e:
                        err = srv.engine_error(e)
                        vals = None
                    gns += now_ns() - t0
                    last_set = False
                    for i in range(len(keys)):
                        if vals is None:
                            out_put(&o, PyBytes_AS_STRING(err), PyBytes_GET_SIZE(err))
                            gfail += 1
                        else:
                            self.reply(&o, tr, <object>PyList_GET_ITEM(vals, i))
                        ngets += 1
                        if o.n + o.big >= OUT_CHUNK and (i + 1 < len(keys) or pos < n):
                            if o.n:
                                tr.write(PyBytes_FromStringAndSize(o.p, o.n))
                            o.n = o.big = 0
                            if conn.paused_w:
                                if i + 1 < len(keys):
                                    pos = gets_at[i + 1]
                                    self.uncount(vals, i + 1)
                                stop = 1
                                break
                    keys = []
                elif skeys:
                    t0 = now_ns()
                    k = len(skeys)
                    store.dirty = True               # as Store.put, for each
                    store.inline_writes += k
                    try:
                        if k == 1:
                            self.put(skeys[0], svals[0])
                        else:
                            put_many(self.db, skeys, svals)
                        for i in range(k):
                            out_put(&o, "+OK\r\n", 5)
                    except Exception as e:
                        err = srv.engine_error(e)
                        for i in range(k):
                            out_put(&o, PyBytes_AS_STRING(err), PyBytes_GET_SIZE(err))
                        sfail += k
                    sns += now_ns() - t0
                    nsets += k
                    last_set = True
                    skeys = []
                    svals = []
                    need = 0
                    if o.n + o.big >= OUT_CHUNK and pos < n:
                        if o.n:
                            tr.write(PyBytes_FromStringAndSize(o.p, o.n))
                        o.n = o.big = 0
                        if conn.paused_w:
                            stop = 1
                else:
                    break                            # nothing gathered: the Python path goes on
                if stop or took:
                    break                            # stopped, or every byte taken
                if argc != 2 and argc != 3:
                    break
            if o.n:
                tr.write(PyBytes_FromStringAndSize(o.p, o.n))
        finally:
            free(o.p)
        self.partial = not stop and partial_at(b, pos, n, self.max_bulk)
        # -- accounting, as Server.execute (invariant 2; fold() adds it to the server's)
        if ngets or nsets:
            self.n_gets += ngets
            self.n_sets += nsets
            self.n_get_failed += gfail
            self.n_set_failed += sfail
            self.get_ns += gns
            self.set_ns += sns
            conn.lastcmd = NAME_SET if last_set else NAME_GET
        return -pos - 1 if stop else pos
