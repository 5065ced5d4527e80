"""One client connection of `lsmkv serve`: pooled read buffer, in-place parsing,
pipelining, ordered replies, flow control.

Buffer life cycle (lsmkv/server/bufpool.py has the ownership rule):
  * A read's leading plain GET/SET requests are answered by the compiled fast
    path (fast.pyx) straight from the buffer, on a connection in the plain state
    (see there); the Python path below takes the rest of the read.
  * A connection that holds no partial request reads into the server's one
    shared buffer (resp.SPLIT_MAX bytes), lent for the duration of one read
    callback: the loop runs one callback at a time, and the requests in it are
    parsed into bytes arguments (resp.parse copy=True), so nothing points into
    it once the callback returns. Most requests never touch the pool.
  * An incomplete request at the end of a read moves into a buffer borrowed
    from the size-class pool, as large as its headers say the whole request is
    (one copy, however it arrives); further reads go straight into that buffer,
    and its requests are parsed in place (memoryviews: a large value is not
    copied before the engine copies it). The start of a request of at most 3
    arguments that the fast path left stays there as it is (no Frame).
  * A buffer is never sized from an announced length beyond GROW_CHUNK past the
    bytes that arrived (a client announcing a 400 MB value and sending three
    bytes costs a small buffer, not 400 MB); it doubles as the bytes come.
  * The complete arguments of a request still arriving are copied out into a
    resp.Frame (allocated as they arrive, never re-parsed), so a request with a
    million arguments is parsed a read at a time and the buffer holds only the
    argument in progress. Each read is at most MAX_READ bytes: one callback never
    parses more than that, and other clients run between reads.
  * A client's query memory (its buffer and frame) is limited by
    srv.query_buffer_limit (Redis's client-query-buffer-limit), all clients'
    together by srv.maxmemory_clients (the largest client is disconnected first).
  * When every byte of the borrowed buffer was consumed and no command parsed
    from it is still running, it goes back to the pool at once: an idle
    connection holds no buffer at all. A leftover is moved to the smallest
    class that holds it, so a few stray bytes never pin a large buffer.

Invariants:
  1. Replies are written in request order. A command whose engine call was
     handed to a thread (store.py) blocks this connection only: reading
     pauses, the replies before it are written, and the rest of the parsed
     pipeline runs when it completes.
  2. The buffer is not released while a parsed command (its memoryviews) can
     still run.
  3. A malformed frame gets Redis's error reply, then this connection closes;
     the commands before it in the same read still run.
  4. When the socket's send buffer is full (the client does not read), reading
     pauses until it drains, and a pipeline already read stops after the reply
     that crossed the limit (replies are written every OUT_CHUNK bytes): a
     client cannot make the server queue more than about OUT_CHUNK plus one
     reply beyond the transport's high-water mark.
"""
import asyncio

from lsmkv.server import resp
from lsmkv.server.fast import ConnCore
from lsmkv.server.multi import release as release_multi
QUIT = object()           # a handler's result: write what is queued, then close
QUIT_OK = object()        # the same after one more +OK (the QUIT command)
OUT_CHUNK = 256 * 1024    # replies written at least this often within one pipeline
GROW_CHUNK = 256 * 1024   # a buffer is sized at most this far past the bytes that arrived
MAX_READ = 256 * 1024     # bytes taken by one read callback at most


class Connection(ConnCore, asyncio.BufferedProtocol):
    """A client connection. Its fields that the compiled read path uses (srv, tr,
    buf, start, end, need, blocked, closed, paused_w, authed, last, lastcmd,
    frame, reply_mode, multi, watches, proto, db, fast) are fast.pyx's ConnCore's,
    as are get_buffer and buffer_updated; the rest are here."""
    __slots__ = ("pending", "name", "id", "created", "lib", "wait_w", "acct", "dbnum")

    def __init__(self, srv):
        self.srv = srv
        self.tr = None
        self.buf = None
        self.start = self.end = self.need = 0
        self.pending = None        # parsed commands not yet run, while blocked
        self.blocked = False       # a command runs on a thread, or wait_w
        self.wait_w = False        # the rest of a pipeline waits for the client to read
        self.closed = False
        self.paused_w = False
        self.authed = not srv.requirepass
        self.name = b""
        self.lib = None
        self.id = 0
        self.created = self.last = 0.0
        self.lastcmd = b"NULL"
        self.frame = None          # a resp.Frame while a request's arguments are arriving
        self.acct = 0              # query memory counted in srv.clients_mem
        self.reply_mode = 0        # CLIENT REPLY: 0 on, 1 off, 2 skip the next reply
        self.multi = None          # a multi.MultiState while queueing after MULTI
        self.watches = None        # WATCH's engine transactions (multi.py)
        self.proto = 2             # RESP version, 3 after HELLO 3 (resp3.py)
        self.db = srv.db           # the database SELECTed (databases.py): the DB for number 0
        self.dbnum = 0
        self.fast = srv.fast

    # -- connection

    def connection_made(self, tr):
        self.tr = tr
        srv = self.srv
        srv.total_connections += 1
        if srv.closing or len(srv.conns) >= srv.maxclients:
            # reply, half-close, and discard what the client sends until it closes (or 1 s
            # passes): closing with its request unread would reset the connection, and the
            # client could lose the error reply
            srv.rejected_connections += 1
            self.closed = True
            tr.write(b"-ERR max number of clients reached\r\n")
            if tr.can_write_eof():
                tr.write_eof()
                srv.loop.call_later(1.0, tr.close)
            else:
                tr.close()
            return
        srv.next_id += 1
        self.id = srv.next_id
        self.created = self.last = srv.clock
        srv.conns[self.id] = self

    def connection_lost(self, exc):
        self.closed = True
        if self.multi is not None or self.watches:
            release_multi(self)
        self.srv.conns.pop(self.id, None)
        self.frame = None
        if not self.blocked:
            self._drop_buffer()
        self.account()
        self.pending = None
        self.tr = None

    def _drop_buffer(self):
        if self.buf is not None:
            self.srv.pool.release(self.buf)
            self.buf = None
            self.start = self.end = self.need = 0
            self.account()

    def query_memory(self):
        """Bytes this client's requests hold: its read buffer, the arguments of
        a request still arriving and the requests queued after MULTI (Redis's
        qbuf, argv-mem and multi-mem)."""
        return ((len(self.buf) if self.buf is not None else 0)
                + (self.frame.size if self.frame is not None else 0)
                + (self.multi.size if self.multi is not None else 0))

    def account(self):
        """Update srv.clients_mem (after the client's query memory changed); over
        srv.maxmemory_clients, evict the largest."""
        new = 0 if self.closed and self.buf is None else self.query_memory()
        srv = self.srv
        srv.clients_mem += new - self.acct
        self.acct = new
        if srv.maxmemory_clients and srv.clients_mem > srv.maxmemory_clients and new:
            # soon, not here: closing a transport inside its own get_buffer crashes uvloop
            srv.evict_soon()

    def evict(self):
        """Disconnect this client to free its query memory (maxmemory-clients)."""
        self.srv.clients_mem -= self.acct
        self.acct = 0
        self.frame = None
        self.close_connection()

    def _parse(self, buf, start, end, cmds, copy=False):
        """resp.parse with this client's frame and limits; (pos, need, error)."""
        srv = self.srv
        fr = self.frame
        if fr is None:
            fr = srv.spare_frame
        pos, need, err = resp.parse(buf, start, end, srv.max_bulk, cmds, copy, fr, not self.authed)
        if fr.args is not None:
            if self.frame is None:
                self.frame = fr
                srv.spare_frame = resp.Frame()
            if err is None and end - pos + fr.size > srv.query_buffer_limit:
                err = resp.ProtocolError("ERR Protocol error: query buffer limit exceeded")
        elif self.frame is not None:
            self.frame = None
        if err is None and need and end - pos > srv.query_buffer_limit:
            err = resp.ProtocolError("ERR Protocol error: query buffer limit exceeded")
        return pos, need, err
    # -- reading (asyncio.BufferedProtocol)

    def _get_buffer(self, sizehint):
        """get_buffer (ConnCore's) past its compiled case."""
        if self.closed:
            return self.srv.scratch             # a rejected connection: its bytes are dropped
        buf = self.buf
        if buf is None:
            return self.srv.shared              # lent for this one read (see top)
        if self.end == len(buf):
            have = self.end - self.start
            # grown as bytes arrive: an announced length is trusted GROW_CHUNK bytes at most
            buf = self._move(max(min(self.need, have + GROW_CHUNK), 2 * have, self.srv.read_size))
        return memoryview(buf)[self.end:self.end + MAX_READ]

    def _move(self, size):
        """Put the unconsumed bytes at the start of a fresh buffer of >= size bytes."""
        pool = self.srv.pool
        old = self.buf
        n = self.end - self.start
        buf = pool.acquire(size)
        buf[:n] = memoryview(old)[self.start:self.end]
        pool.release(old)
        self.buf = buf
        self.start, self.end = 0, n
        self.account()
        return buf

    def _buffer_updated(self, nbytes):
        """buffer_updated (ConnCore's, which checked closed and set last) past its
        compiled case."""
        srv = self.srv
        if self.buf is None:
            self._shared_read(nbytes)
            return
        end = self.end = self.end + nbytes
        if self.blocked:
            return
        if self.frame is None:                  # plain GET/SET first (fast.pyx)
            fast = self.fast
            pos = fast.run(self, self.buf, self.start, end)
            if pos < 0:                         # the client stopped reading (invariant 4)
                self.start = -pos - 1
                self._wait([], 0, False)
                self.wait_w = True
                return
            self.start = pos
            if fast.partial:
                # the start of a short request: it stays in the buffer, no Frame
                self._keep_partial(pos, end)
                return
        cmds = []
        pos, self.need, err = self._parse(self.buf, self.start, end, cmds)
        self.start = pos
        self.account()
        if self.closed:                         # evicted (maxmemory-clients)
            return
        if cmds:
            self._run(cmds, 0)
        if err is not None:
            self._protocol_error(err)
            return
        if not self.blocked:
            self._settle()

    def _keep_partial(self, pos, end):
        """buf[pos:end] is the start of a request of at most 3 arguments (fast.pyx):
        keep it in the buffer, with its size hint and the query buffer limit."""
        pos, self.need, err = resp.parse(self.buf, pos, end, self.srv.max_bulk, [])
        if err is None and self.need and end - pos > self.srv.query_buffer_limit:
            err = resp.ProtocolError("ERR Protocol error: query buffer limit exceeded")
        self.account()
        if self.closed:                         # evicted (maxmemory-clients)
            return
        if err is not None:
            self._protocol_error(err)
            return
        self._settle()

    def _shared_read(self, n):
        """A read that landed in the server's shared buffer: answer its leading
        plain GET/SET requests in compiled code (fast.pyx), parse the rest into
        bytes arguments (nothing may point into that buffer once this returns),
        keep an incomplete request in a pooled buffer of its own, run the commands."""
        pos = 0
        if self.frame is None:
            pos = self.fast.run(self, self.srv.shared, 0, n)
            if pos == n:
                return
        self._shared_read_rest(n, pos)

    def _shared_read_rest(self, n, pos):
        """_shared_read after the fast path took the requests before pos (or
        -(pos) - 1: the client stopped reading)."""
        srv = self.srv
        shared = srv.shared
        hold = False
        if pos < 0:                             # the client stopped reading (invariant 4)
            pos = -pos - 1
            hold = True
        cmds = []
        if self.frame is None and self.authed:
            pos, need, err = resp.parse(shared, pos, n, srv.max_bulk, cmds, True)
        else:
            pos, need, err = self._parse(shared, pos, n, cmds, True)
        if hold and err is None:
            hold = bool(cmds)
        else:
            hold = False
        if pos == n and err is None and self.frame is None and not hold:
            if len(cmds) == 1:                  # the common case: one whole request
                r = srv.execute(self, cmds[0])
                if r.__class__ is bytes:
                    self.tr.write(r)
                    return
                self._run([r], 0, done=True)
            else:
                self._run(cmds, 0)
            return
        if err is None and pos == n:            # every byte went into the frame
            self.account()
            if self.closed:
                return
        elif err is None:
            left = n - pos
            # the frame's size when known, but never more than GROW_CHUNK past what arrived
            buf = self.buf = srv.pool.acquire(max(min(need, left + GROW_CHUNK), 2 * left))
            buf[:left] = memoryview(shared)[pos:n]
            self.start, self.end, self.need = 0, left, need
            self.account()
            if self.closed:
                return
        if hold:                                # go on in resume_writing
            self._wait(cmds, 0, False)
            self.wait_w = True
            return
        if cmds:
            self._run(cmds, 0)
        if err is not None:
            self._protocol_error(err)

    def _protocol_error(self, err):
        self.srv.protocol_errors += 1
        if not self.closed:
            self.tr.write(resp.error(str(err)))
            self.close_connection()

    def _settle(self):
        """After a read's commands all ran: release or shrink the buffer (see top)."""
        if self.buf is None:
            return
        n = self.end - self.start
        if n == 0:
            self._drop_buffer()
            return
        pool = self.srv.pool
        want = pool.class_size(max(n, min(self.need, n + GROW_CHUNK)))
        if want < len(self.buf) or self.start > len(self.buf) // 2:
            self._move(want)

    # -- running

    def _run(self, cmds, i, done=False):
        """Run cmds[i:] in order, writing their replies; stops at a blocking one
        (invariant 1) or when the client stops reading (invariant 4).
        done=True: cmds are replies already computed (of one command)."""
        execute = self.srv.execute
        out = []
        size = 0
        n = len(cmds)
        while i < n:
            r = cmds[i] if done else execute(self, cmds[i])
            i += 1
            t = r.__class__
            if t is bytes:
                out.append(r)
                size += len(r)
            elif t is list:
                out.extend(r)
                size += len(r[1]) if len(r) == 3 else sum(map(len, r))
            elif r is QUIT or r is QUIT_OK:
                if r is QUIT_OK:
                    out.append(resp.OK)
                self._write(out)
                self.close_connection()
                return
            else:                                    # a Future: invariant 1
                self._write(out)
                self._wait(cmds, i, done)
                r.add_done_callback(self._resume)
                return
            if size >= OUT_CHUNK and i < n:
                self._write(out)
                out = []
                size = 0
                if self.paused_w and not self.closed:    # invariant 4: go on in resume_writing
                    self._wait(cmds, i, done)
                    self.wait_w = True
                    return
        self._write(out)

    def _wait(self, cmds, i, done):
        self.blocked = True
        self.pending = ([], 0) if done else (cmds, i)
        if not self.closed:
            self.tr.pause_reading()

    def _write(self, out):
        if not out or self.closed:
            return
        if len(out) == 1:
            self.tr.write(out[0])
        elif any(len(x) >= resp.GATHER_MIN for x in out):
            self.tr.writelines(out)
        else:
            self.tr.write(b"".join(out))

    def _resume(self, fut):
        """A command's Future is done: write its reply, go on with the pipeline."""
        self.blocked = False
        try:
            r = fut.result()
        except Exception as e:                      # an engine error on the thread
            r = self.srv.engine_error(e)
        if self.closed:
            self.pending = None
            self._drop_buffer()
            return
        if r is QUIT:
            self.pending = None
            self.close_connection()
            return
        self._write(r if r.__class__ is list else [r])
        self._continue()

    def _continue(self):
        """Run the rest of a paused pipeline, then what is still unparsed; then
        release or shrink the buffer and read again."""
        cmds, i = self.pending
        self.pending = None
        self._run(cmds, i)
        if self.blocked or self.closed:
            if self.closed and not self.blocked:
                self._drop_buffer()
            return
        # data that arrived with the blocked read but was not parsed yet
        if self.buf is not None and self.end > self.start:
            cmds = []
            pos, self.need, err = self._parse(self.buf, self.start, self.end, cmds)
            self.start = pos
            if cmds:
                self._run(cmds, 0)
            if err is not None:
                self._protocol_error(err)
                return
            if self.blocked:
                return
        self._settle()
        if not self.paused_w and not self.closed and not self.srv.closing:
            self.tr.resume_reading()

    def close_connection(self):
        """Close the transport once (queued replies are flushed first)."""
        if not self.closed:
            self.closed = True
            self.tr.close()

    # -- flow control (invariant 4)

    def pause_writing(self):
        self.paused_w = True
        if not self.closed:
            self.tr.pause_reading()

    def resume_writing(self):
        self.paused_w = False
        if self.closed:
            return
        if self.wait_w:
            self.wait_w = False
            self.blocked = False
            self._continue()
        elif not self.blocked and not self.srv.closing:
            self.tr.resume_reading()

    def eof_received(self):
        return False

    # -- shutdown

    def stop_reading(self):
        if not self.closed:
            try:
                self.tr.pause_reading()
            except Exception:
                pass
