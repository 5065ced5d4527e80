"""`lsmkv serve DBPATH`: a Redis-protocol (RESP2) server over one lsmkv database.

    lsmkv serve DBPATH [--host 127.0.0.1] [--port 6380] [--unixsocket PATH]
                       [--maxclients N] [--requirepass PW] [--appendfsync everysec]
                       [--databases 16]

docs/server.md lists the commands, the memory design and the measurements.
Modules: resp.py (protocol), bufpool.py (read buffers), conn.py (one
connection), fast.pyx (plain GET/SET in compiled code), store.py (engine calls off the loop when they could block),
commands.py / strings.py / keys.py / admin.py (commands), args.py (argument
parsing), expiry.py (expire times as Redis computes them), scan.py (SCAN),
databases.py (SELECT's numbered databases: each connection's commands run on
conn.db), dbsize.py (DBSIZE per database).

Thread safety: everything here runs on the event loop thread; engine calls that
could wait run on the store's writer/reader threads (store.py).

Exit codes: 0 after SIGTERM/SIGINT/SHUTDOWN (the DB closed cleanly), 1 cannot
listen, 2 usage error, 3 database error (cannot open: locked, corrupt, I/O).
"""
import argparse
import asyncio
import os
import resource
import signal
import sys
import time
from time import perf_counter_ns

from lsmkv.server import resp
from lsmkv.server.bufpool import BufferPool
from lsmkv.errors import LsmkvError
from lsmkv.server.admin import ADMIN_COMMANDS, NO_AUTH
from lsmkv.server.commands import COMMANDS as DATA_COMMANDS
from lsmkv.server.args import WRONGTYPE
from lsmkv.server.commands import REPLACING, STRING_TYPED, CommandError
from lsmkv.server.hashes import NS, any_hashes, hash_keys, type_error_keys, w_drop_hashes
from lsmkv.server.conn import QUIT, QUIT_OK, Connection
from lsmkv.server.databases import DEFAULT_DATABASES, MAX_DATABASES, databases as make_databases
from lsmkv.server.store import FSYNC_POLICIES, Store
from lsmkv.server.scan import Cursors
from lsmkv.server.fast import Fast
from lsmkv.server.resp3 import to_resp3
from lsmkv.server.multi import CONTROL as MULTI_CONTROL, MULTI_COMMANDS, queue as queue_in_multi

DEFAULT_PORT = 6380
PROTO_MAX_BULK_LEN = 512 * 1024 * 1024      # Redis's default proto-max-bulk-len
QUERY_BUFFER_LIMIT = 1024 * 1024 * 1024     # Redis's client-query-buffer-limit
READ_SIZE = 16 * 1024                       # a read buffer borrowed for a socket with data
POOL_BYTES = 4 * 1024 * 1024                # idle read buffers the pool may keep


RESERVED_KEY = resp.error(f"ERR keys starting with {str(NS)[2:-1]} are reserved: lsmkv keeps its "
                          "own keys there (hashes' fields and metadata, databases 1 and up)")


def reserved_key(args, first, last, step):
    """Does a key argument of a command (its first, last (< 0: from the end) and step
    key positions) start with the server's reserved prefix NS? A client writing
    there would write into another database's or a hash's internal keys."""
    end = len(args) + last if last < 0 else min(last, len(args) - 1)
    for i in range(first, end + 1, step):
        k = args[i]
        if k[:1] == b"\xff" and bytes(k[:len(NS)]) == NS:
            return True
    return False


class Server:
    """The listening sockets, the connections, the command table, shutdown."""

    def __init__(self, db, loop, *, host="127.0.0.1", port=DEFAULT_PORT, unixsocket=None,
                 maxclients=10000, requirepass=None, max_bulk=PROTO_MAX_BULK_LEN,
                 appendfsync="everysec", read_size=READ_SIZE, pool_bytes=POOL_BYTES,
                 query_buffer_limit=QUERY_BUFFER_LIMIT, maxmemory_clients=0,
                 databases=DEFAULT_DATABASES):
        from lsmkv import __version__
        self.db = db
        self.dbs = make_databases(db, databases)   # SELECT's databases: [db, views] (databases.py)
        self.loop = loop
        self.loop_name = type(loop).__module__.split(".")[0]
        self.host, self.port, self.unixsocket = host, port, unixsocket
        self.maxclients = maxclients
        self.requirepass = requirepass.encode() if isinstance(requirepass, str) else requirepass
        self.max_bulk = max_bulk
        self.query_buffer_limit = query_buffer_limit
        self.maxmemory_clients = maxmemory_clients   # 0: no limit (Redis's default)
        self.clients_mem = 0                   # all clients' query memory (Connection.query_memory)
        self.evicted_clients = 0
        self.evict_pending = False
        self.spare_frame = resp.Frame()        # lent to a parse; kept by a client whose request is partial
        self.read_size = read_size
        self.pool = BufferPool(min_size=512, max_pooled=1 << 20, capacity=pool_bytes)
        self.store = Store(db, loop, appendfsync)
        self.fast = Fast(self)                 # plain GET/SET in compiled code (fast.pyx)
        self.cursors = Cursors()               # SCAN/HSCAN cursors of long keys (scan.py)
        self.scratch = bytearray(4096)         # where rejected connections' bytes are read and dropped
        self.shared = bytearray(resp.SPLIT_MAX)  # the read buffer lent to one read at a time
        self.version = __version__
        self.executable = os.path.abspath(sys.argv[0]) if sys.argv and sys.argv[0] else ""
        self.started = time.time()
        self.clock = time.monotonic()          # refreshed every 100 ms (connection idle times)
        self._clock_timer = loop.call_later(0.1, self._tick)
        self.conns = {}
        self.next_id = 0
        self.commands = self.total_connections = self.rejected_connections = 0
        self.fast_commands = 0                 # of them, answered by the compiled fast path (fast.pyx)
        self.calls = {}                        # command name -> calls (INFO commandstats)
        self.protocol_errors = self.internal_errors = 0
        self.closing = False
        self.servers = []
        self.done = loop.create_future()
        self.shutdown_reason = None
        # any hash in any database: string commands check types (one seek per database)
        self.hashes = any(any_hashes(d) for d in self.dbs)
        table = {**DATA_COMMANDS, **ADMIN_COMMANDS, **MULTI_COMMANDS}
        # string commands' key positions (first, last, step), for the WRONGTYPE check
        self.string_keys = {n: table[n][3:6] for n in STRING_TYPED}
        self.replacing = {n: table[n][3:6] for n in REPLACING}
        # name -> (handler, arity, allowed before AUTH, first key, last key, key step)
        self.table = {n: (s[0], s[1], n in NO_AUTH) + tuple(s[3:6]) for n, s in table.items()}

    # -- the command path

    def execute(self, conn, args):
        """One command's reply (bytes, pieces, QUIT or a Future); never raises."""
        name = args[0]
        if name.__class__ is not bytes:
            name = bytes(name)
        spec = self.table.get(name)
        if spec is None:
            name = name.upper()
            spec = self.table.get(name)
            if spec is None:
                if conn.multi is not None:
                    conn.multi.failed = True           # EXEC will reply EXECABORT
                return unknown_command(args)
        fn, arity, noauth, first, last, step = spec
        n = len(args)
        st = self.calls.get(name)
        if st is None:
            st = self.calls[name] = [0, 0, 0, 0]    # calls, ns, failed, rejected (commandstats)
        if n != arity and (arity > 0 or n < -arity):
            st[3] += 1
            if conn.multi is not None:
                conn.multi.failed = True
            return resp.error(f"ERR wrong number of arguments for '{name.decode().lower()}' command")
        if not conn.authed and not noauth:
            st[3] += 1
            if conn.multi is not None:
                conn.multi.failed = True
            return b"-NOAUTH Authentication required.\r\n"
        if first and (last != first or args[first][:1] == b"\xff") and reserved_key(args, first, last, step):
            st[3] += 1
            if conn.multi is not None:
                conn.multi.failed = True
            return RESERVED_KEY
        if conn.multi is not None and name not in MULTI_CONTROL:
            return queue_in_multi(self, conn, args)
        self.commands += 1
        st[0] += 1
        conn.lastcmd = name
        mode = conn.reply_mode
        t0 = perf_counter_ns()
        try:
            r = None
            if self.hashes:
                r, args = self.check_types(conn, name, args)
            if r is None:
                r = fn(self, conn, args)
        except CommandError as e:
            r = resp.error(str(e))
        except Exception as e:
            r = self.engine_error(e)
        # time on the loop (a write step run on the writer thread is not in it)
        st[1] += perf_counter_ns() - t0
        if r.__class__ is bytes and r[:1] == b"-":
            st[2] += 1
        if conn.proto != 2:
            r = self.as_resp3(name, args, r)
        if mode or conn.reply_mode:
            return self.quiet(conn, mode, r)
        return r

    def as_resp3(self, name, args, r):
        """r (a reply, QUIT or a Future of a reply) in RESP3 (resp3.py)."""
        if r.__class__ is bytes or r.__class__ is list:
            return to_resp3(name, args, r)
        if r is QUIT or r is QUIT_OK:
            return r
        fut = self.loop.create_future()

        def done(f):
            e = f.exception()
            if e is not None:
                fut.set_exception(e)
            else:
                res = f.result()
                fut.set_result(res if res is QUIT else to_resp3(name, args, res))
        r.add_done_callback(done)
        return fut

    def check_types(self, conn, name, args):
        """With hashes in the DB: WRONGTYPE for a string command on a hash; for a
        command that replaces a key (SET, SETEX, PSETEX, MSET), the hash is deleted
        first by a write step queued before the command's own (SET NX: nil, SET GET:
        WRONGTYPE, SET XX: replaced, as Redis). Returns (a reply to send instead or
        None to go on, the arguments to run)."""
        keys = self.string_keys.get(name)
        if keys is not None:
            if name in (b"SETNX", b"MSETNX"):  # a hash is a key that exists: 0, as Redis
                return (resp.integer(0) if hash_keys(conn.db, args, *keys) else None), args
            type_error_keys(conn.db, args, *keys)
            return None, args
        keys = self.replacing.get(name)
        if keys is None:
            return None, args
        found = hash_keys(conn.db, args, *keys)
        if not found:
            return None, args
        if name == b"SET":
            opts = {bytes(x).upper() for x in args[3:]}
            if b"GET" in opts:
                raise CommandError(WRONGTYPE)
            if b"NX" in opts:
                return resp.NULL, args
            if b"XX" in opts:                  # the key exists (as a hash): XX is met
                args = args[:3] + [x for x in args[3:] if bytes(x).upper() != b"XX"]
        self.store.write(w_drop_hashes, conn.db, found, self.store.sync)
        return None, args

    def quiet(self, conn, mode, r):
        """CLIENT REPLY: r, or nothing when replies are off (mode 1) or this one is
        skipped (mode 2, set by the command before)."""
        if mode == 0 or (mode == 1 and conn.reply_mode == 0):
            return r                               # CLIENT REPLY OFF/SKIP itself, or ON
        if mode == 2 and conn.reply_mode == 2:
            conn.reply_mode = 0                    # SKIP covers one command
        if r is QUIT or r is QUIT_OK:
            return QUIT
        if r.__class__ is bytes or r.__class__ is list:
            return b""
        fut = self.loop.create_future()            # a write step's Future: its reply dropped
        r.add_done_callback(lambda f: fut.set_result(b""))
        return fut

    def evict_soon(self):
        """Run evict_clients from the loop (once, however often it is asked)."""
        if not self.evict_pending:
            self.evict_pending = True
            self.loop.call_soon(self.evict_clients)

    def evict_clients(self):
        """All clients' query memory is over maxmemory_clients: disconnect the
        largest clients until it is not (Redis's client eviction)."""
        self.evict_pending = False
        while self.maxmemory_clients and self.clients_mem > self.maxmemory_clients:
            big = max((c for c in self.conns.values() if c.acct and not c.closed),
                      key=lambda c: c.acct, default=None)
            if big is None:
                return
            self.evicted_clients += 1
            big.evict()

    def engine_error(self, e):
        """The error reply for an exception from a command (never raises: one
        command's failure must not take the connection or the loop with it)."""
        if isinstance(e, CommandError):
            return resp.error(str(e))
        if not isinstance(e, (LsmkvError, TypeError, ValueError, OverflowError, KeyError, OSError)):
            self.internal_errors += 1
            import traceback
            sys.stderr.write("lsmkv serve: internal error in a command:\n" + "".join(
                traceback.format_exception(type(e), e, e.__traceback__)))
        return resp.error(f"ERR {type(e).__name__}: {e}")

    # -- listening

    async def start(self):
        factory = lambda: Connection(self)      # noqa: E731
        backlog = min(self.maxclients, 4096)
        if self.unixsocket:
            if os.path.exists(self.unixsocket):
                os.unlink(self.unixsocket)
            self.servers.append(await self.loop.create_unix_server(factory, self.unixsocket,
                                                                   backlog=backlog))
        if self.port or not self.unixsocket:
            srv = await self.loop.create_server(factory, self.host, self.port, backlog=backlog,
                                                reuse_address=True)
            self.servers.append(srv)
            self.port = srv.sockets[0].getsockname()[1]

    def _tick(self):
        self.clock = time.monotonic()
        self._clock_timer = self.loop.call_later(0.1, self._tick)

    # -- shutdown (SIGTERM, SIGINT, SHUTDOWN)

    def request_shutdown(self, reason):
        if self.closing:
            return
        self.closing = True
        self.shutdown_reason = reason
        self.loop.create_task(self._shutdown())

    async def _shutdown(self):
        try:
            for s in self.servers:
                s.close()                       # accept no more connections
            for c in list(self.conns.values()):
                c.stop_reading()                # read no more commands
            while any(c.blocked and not c.wait_w for c in self.conns.values()):
                await asyncio.sleep(0.005)      # in-flight commands finish and reply
            for c in list(self.conns.values()):
                c.close_connection()                    # queued replies are flushed, then closed
            await self.store.close()            # the writer thread's queue drains
            await self.loop.run_in_executor(None, self.db.close)
            if self.unixsocket and os.path.exists(self.unixsocket):
                os.unlink(self.unixsocket)
            self.done.set_result(0)
        except BaseException as e:               # still end the server
            if not self.done.done():
                self.done.set_exception(e)


def unknown_command(args):
    shown = ""
    for a in args[1:]:
        if len(shown) >= 128:
            break
        shown += "'%s' " % bytes(a[:128 - len(shown)]).decode("utf-8", "replace")
    name = bytes(args[0][:128]).decode("utf-8", "replace")
    return resp.error(f"ERR unknown command '{name}', with args beginning with: {shown}")


# ---------------------------------------------------------------- command line

def _option_value(text):
    low = text.lower()
    if low in ("true", "yes", "on"):
        return True
    if low in ("false", "no", "off"):
        return False
    if low == "none":
        return None
    for conv in (int, float):
        try:
            return conv(text)
        except ValueError:
            pass
    return text


def parser():
    p = argparse.ArgumentParser(prog="lsmkv serve",
                                description="Serve an lsmkv database over the Redis protocol (RESP2).")
    p.add_argument("dbpath", metavar="DBPATH", help="database directory (created if missing)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=DEFAULT_PORT,
                   help=f"TCP port (default {DEFAULT_PORT}; 0 picks a free one; with --unixsocket, "
                        f"0 means no TCP)")
    p.add_argument("--unixsocket", metavar="PATH", help="also listen on this Unix socket")
    p.add_argument("--maxclients", type=int, default=10000, help="connections at most (default 10000)")
    p.add_argument("--databases", type=int, default=DEFAULT_DATABASES, metavar="N",
                   help=f"number of databases SELECT can choose, 0..N-1 (default {DEFAULT_DATABASES}, "
                        f"at most {MAX_DATABASES}); database 0 is the DB's own keys, the others "
                        f"are stored under reserved key prefixes")
    p.add_argument("--requirepass", metavar="PW", help="clients must AUTH with this password")
    p.add_argument("--appendfsync", choices=FSYNC_POLICIES, default="everysec",
                   help="when the write-ahead log is synced: every write, every second "
                        "(default), or when the engine decides")
    p.add_argument("--proto-max-bulk-len", type=int, default=PROTO_MAX_BULK_LEN, metavar="BYTES",
                   help="longest bulk string accepted (default 512 MiB)")
    p.add_argument("--client-query-buffer-limit", type=int, default=QUERY_BUFFER_LIMIT, metavar="BYTES",
                   help="query memory one client may hold: its buffer and the arguments of a "
                        "request still arriving (default 1 GiB, as Redis)")
    p.add_argument("--maxmemory-clients", type=int, default=0, metavar="BYTES",
                   help="query memory all clients may hold together; over it the largest client "
                        "is disconnected (default 0: no limit, as Redis)")
    p.add_argument("--buffer-pool-bytes", type=int, default=POOL_BYTES, metavar="BYTES",
                   help="idle read buffers kept for reuse (default 4 MiB)")
    p.add_argument("--read-buffer", type=int, default=READ_SIZE, metavar="BYTES",
                   help="size of the read buffer borrowed per read (default 16 KiB)")
    p.add_argument("--no-uvloop", action="store_true", help="use asyncio's own loop even if "
                                                            "uvloop is installed")
    p.add_argument("--db-option", action="append", default=[], metavar="NAME=VALUE",
                   help="an lsmkv.Options field, e.g. write_buffer_size=8388608 (repeatable)")
    return p


def raise_fd_limit(want):
    """Raise the soft RLIMIT_NOFILE toward want (at most the hard limit); returns it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = want if hard == resource.RLIM_INFINITY else min(want, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = target
    return soft


def new_loop(no_uvloop=False):
    if not no_uvloop:
        try:
            import uvloop
            return uvloop.new_event_loop()
        except ImportError:
            pass
    return asyncio.new_event_loop()


def main(argv=None):
    """Entry point of `lsmkv serve`; returns the exit code."""
    try:
        args = parser().parse_args(argv)
    except SystemExit as e:
        return 0 if e.code == 0 else 2
    err = sys.stderr
    for name, v in (("--maxclients", args.maxclients), ("--proto-max-bulk-len", args.proto_max_bulk_len),
                    ("--read-buffer", args.read_buffer),
                    ("--client-query-buffer-limit", args.client_query_buffer_limit)):
        if v < 1:
            err.write(f"lsmkv serve: {name} must be >= 1, got {v}\n")
            return 2
    if not 1 <= args.databases <= MAX_DATABASES:
        err.write(f"lsmkv serve: --databases must be in [1, {MAX_DATABASES}] (a database's key "
                  f"prefix holds its number in one byte), got {args.databases}\n")
        return 2
    if not 0 <= args.port <= 65535:
        err.write(f"lsmkv serve: --port must be in [0, 65535], got {args.port}\n")
        return 2
    opts = {}
    for item in args.db_option:
        name, sep, value = item.partition("=")
        if not sep:
            err.write(f"lsmkv serve: --db-option wants NAME=VALUE, got {item!r}\n")
            return 2
        opts[name.strip()] = _option_value(value.strip())
    nofile = raise_fd_limit(args.maxclients + 64)
    if nofile < args.maxclients + 32:
        err.write(f"lsmkv serve: warning: the open-file limit ({nofile}) is below maxclients "
                  f"({args.maxclients}) + 32; connections past it will be refused by the system\n")
    import lsmkv
    try:
        db = lsmkv.DB(args.dbpath, **opts)
    except (TypeError, ValueError) as e:
        err.write(f"lsmkv serve: bad --db-option: {e}\n")
        return 2
    except (LsmkvError, OSError) as e:
        err.write(f"lsmkv serve: cannot open {args.dbpath}: {e}\n")
        return 3
    loop = new_loop(args.no_uvloop)
    asyncio.set_event_loop(loop)
    try:
        srv = Server(db, loop, host=args.host, port=args.port, unixsocket=args.unixsocket,
                     maxclients=args.maxclients, requirepass=args.requirepass,
                     max_bulk=args.proto_max_bulk_len, appendfsync=args.appendfsync,
                     read_size=args.read_buffer, pool_bytes=args.buffer_pool_bytes,
                     query_buffer_limit=args.client_query_buffer_limit,
                     maxmemory_clients=max(0, args.maxmemory_clients),
                     databases=args.databases)
        try:
            loop.run_until_complete(srv.start())
        except OSError as e:
            err.write(f"lsmkv serve: cannot listen: {e}\n")
            db.close()
            return 1
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, srv.request_shutdown, signal.Signals(sig).name)
        where = [f"{args.host}:{srv.port}"] if srv.port else []
        if args.unixsocket:
            where.append(args.unixsocket)
        err.write(f"lsmkv serve: ready on {' and '.join(where)} (pid {os.getpid()}, {srv.loop_name}, "
                  f"appendfsync {args.appendfsync}, db {db.path})\n")
        err.flush()
        code = loop.run_until_complete(srv.done)
        err.write(f"lsmkv serve: stopped ({srv.shutdown_reason}); database closed\n")
        return code
    finally:
        if not db.closed:
            db.close()
        loop.close()


if __name__ == "__main__":
    sys.exit(main())
