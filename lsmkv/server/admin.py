"""The connection and server commands of `lsmkv serve`: PING, ECHO, AUTH, SELECT,
QUIT, SHUTDOWN, INFO, COMMAND, CLIENT, CONFIG GET.

Handlers follow lsmkv/server/commands.py's convention (handler(srv, conn, args)
-> reply; CommandError for an error reply in Redis's words).
"""
import fnmatch
import hmac
import os
import resource
import time

from lsmkv.server import resp
from lsmkv.server.commands import COMMANDS as DATA_COMMANDS
from lsmkv.server.multi import MULTI_COMMANDS
from lsmkv.server.commands import CommandError, to_int
from lsmkv.server.dbsize import estimates as dbsize_estimates
from lsmkv.server.conn import QUIT, QUIT_OK
from lsmkv.server.databases import db_index

SYNTAX_ERR = "ERR syntax error"
REDIS_VERSION = "7.0.0"          # the Redis feature level the replies follow (INFO redis_version)


def c_ping(srv, conn, a):
    if len(a) == 1:
        return resp.PONG
    if len(a) == 2:
        return resp.bulk(bytes(a[1]))
    raise CommandError("ERR wrong number of arguments for 'ping' command")


def c_echo(srv, conn, a):
    return resp.bulk(bytes(a[1]))


def c_auth(srv, conn, a):
    if len(a) > 3:
        raise CommandError(SYNTAX_ERR)
    user = bytes(a[1]) if len(a) == 3 else b"default"
    pw = bytes(a[-1])
    if not srv.requirepass:
        if len(a) == 2:
            raise CommandError("ERR AUTH <password> called without any password configured for the "
                               "default user. Are you sure your configuration is correct?")
        if user == b"default":              # Redis 7: the default user is 'nopass'
            conn.authed = True
            return resp.OK
        raise CommandError("WRONGPASS invalid username-password pair or user is disabled.")
    if user == b"default" and hmac.compare_digest(pw, srv.requirepass):
        conn.authed = True
        return resp.OK
    conn.authed = False
    raise CommandError("WRONGPASS invalid username-password pair or user is disabled.")



def c_hello(srv, conn, a):
    """HELLO [protover [AUTH user pass] [SETNAME name]]: protover 2 or 3 (RESP3:
    resp3.py); the reply is in the protocol asked for."""
    ver = None
    if len(a) >= 2:
        try:
            ver = to_int(a[1])
        except CommandError:
            raise CommandError("ERR Protocol version is not an integer or out of range") from None
        if ver not in (2, 3):
            raise CommandError("NOPROTO unsupported protocol version")
    i = 2
    name = None
    while i < len(a):
        opt = bytes(a[i]).upper()
        if opt == b"AUTH" and i + 2 < len(a):
            c_auth(srv, conn, [b"AUTH", a[i + 1], a[i + 2]])
            i += 3
        elif opt == b"SETNAME" and i + 1 < len(a):
            name = bytes(a[i + 1])
            if not _valid_name(name):
                raise CommandError("ERR Client names cannot contain spaces, newlines or special characters.")
            i += 2
        else:
            raise CommandError(f"ERR Syntax error in HELLO option '{bytes(a[i]).decode('utf-8', 'replace')}'")
    if not conn.authed:
        raise CommandError("NOAUTH HELLO must be called with the client already authenticated, "
                           "otherwise the HELLO <proto> AUTH <user> <pass> option can be used to "
                           "authenticate the client and select the RESP protocol version at the same time")
    if name is not None:
        conn.name = name
    if ver is not None:
        conn.proto = ver                    # Server.execute sends this reply in it already
    return resp.encode([b"server", b"redis", b"version", REDIS_VERSION.encode(), b"proto", conn.proto,
                        b"id", conn.id, b"mode", b"standalone", b"role", b"master",
                        b"modules", []])


def c_time(srv, conn, a):
    us = time.time_ns() // 1000
    return resp.array([b"%d" % (us // 1000000), b"%d" % (us % 1000000)])


def c_select(srv, conn, a):
    """SELECT n: this connection's commands work on database n (databases.py).
    Inside EXEC, srv.dbs are the EXEC's views of the databases (multi.py)."""
    n = db_index(a[1], len(srv.dbs))
    conn.dbnum = n
    conn.db = srv.dbs[n]
    return resp.OK


def c_quit(srv, conn, a):
    return QUIT_OK


def c_shutdown(srv, conn, a):
    for x in a[1:]:
        if bytes(x).upper() not in (b"NOSAVE", b"SAVE", b"NOW", b"FORCE", b"ABORT"):
            raise CommandError(SYNTAX_ERR)
        if bytes(x).upper() == b"ABORT":
            raise CommandError("ERR There is no shutdown in progress to abort")
    srv.request_shutdown("SHUTDOWN command")
    return QUIT


# ---------------------------------------------------------------- INFO

def _rss_bytes():
    try:
        with open("/proc/self/status", "rb") as f:
            for line in f:
                if line.startswith(b"VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def info_sections(srv, keyspace=True):
    """{section: [(field, value)]} for INFO (docs/server.md lists the fields); the
    keyspace section only if asked for."""
    srv.fast.fold()                 # the fast path's command counts (fast.pyx, invariant 2)
    db = srv.db
    st = db.stats()
    mu = db.memory_usage()
    pool = srv.pool.stats()
    store = srv.store.stats()
    now = time.time()
    up = int(now - srv.started)
    rss = _rss_bytes()
    cache = st.get("block_cache") or {}
    sections = {}
    sections["server"] = [
        ("redis_version", REDIS_VERSION), ("lsmkv_version", srv.version),
        ("redis_mode", "standalone"), ("os", " ".join(os.uname()[::2])),
        ("arch_bits", 64), ("multiplexing_api", srv.loop_name),
        ("process_id", os.getpid()), ("tcp_port", srv.port or 0),
        ("server_time_usec", int(now * 1e6)), ("uptime_in_seconds", up),
        ("uptime_in_days", up // 86400), ("executable", srv.executable),
        ("db_path", db.path)]
    sections["clients"] = [
        ("connected_clients", len(srv.conns)), ("maxclients", srv.maxclients),
        ("blocked_clients", sum(1 for c in srv.conns.values() if c.blocked)),
        ("clients_holding_buffers", sum(1 for c in srv.conns.values() if c.buf is not None)),
        ("clients_query_memory", srv.clients_mem), ("maxmemory_clients", srv.maxmemory_clients),
        ("client_query_buffer_limit", srv.query_buffer_limit)]
    sections["memory"] = [
        ("used_memory", mu["total"] + pool["held_bytes"] + pool["out_bytes"]),
        ("used_memory_rss", rss), ("used_memory_engine", mu["total"]),
        ("mem_memtable_active", mu["memtable_active"]),
        ("mem_memtable_immutable", mu["memtable_immutable"]),
        ("mem_cache_payload", mu["cache_payload"]), ("mem_cache_overhead", mu["cache_overhead"]),
        ("mem_pinned", mu["pinned"]), ("mem_index_filter", mu["index_filter"]),
        ("mem_wal_mapped", mu["wal_mapped"]), ("mem_sst_mapped", mu["sst_mapped"]),
        ("mem_read_buffers", mu["read_buffers"]),
        ("bufpool_held_bytes", pool["held_bytes"]), ("bufpool_capacity", pool["capacity"]),
        ("bufpool_out_bytes", pool["out_bytes"]), ("bufpool_out_buffers", pool["out_buffers"]),
        ("bufpool_peak_out_bytes", pool["peak_out_bytes"]), ("bufpool_hits", pool["hits"]),
        ("bufpool_misses", pool["misses"]), ("bufpool_dropped", pool["dropped"]),
        ("maxmemory", 0), ("maxmemory_policy", "noeviction")]
    sections["persistence"] = [
        ("loading", 0), ("aof_enabled", 1), ("appendfsync", store["appendfsync"]),
        ("wal_syncs", st["syncs"] + store["syncs"]), ("everysec_syncs", store["syncs"]),
        ("sync_errors", store["sync_errors"]), ("last_sync_error", store["last_sync_error"] or ""),
        ("wal_bytes", st["wal_bytes"]), ("flushes", st["flushes"]),
        ("compactions", st["compactions"]), ("live_sst_bytes", st["live_sst_bytes"]),
        ("total_sst_bytes", st["total_sst_bytes"]),
        ("pending_compaction_bytes", st["pending_compaction_bytes"]),
        ("stall_seconds", round(st["stall_seconds"], 3)), ("stall_count", st["stall_count"]),
        ("background_error", st["background_error"] or "")]
    sections["stats"] = [
        ("total_connections_received", srv.total_connections),
        ("total_commands_processed", srv.commands),
        ("fast_path_commands", srv.fast_commands),
        ("rejected_connections", srv.rejected_connections),
        ("protocol_errors", srv.protocol_errors), ("internal_errors", srv.internal_errors),
        ("evicted_clients", srv.evicted_clients),
        ("keyspace_hits", st["get_hits"]), ("keyspace_misses", st["gets"] - st["get_hits"]),
        ("engine_puts", st["puts"]), ("engine_deletes", st["deletes"]),
        ("inline_writes", store["inline_writes"]), ("offloaded_writes", store["offloaded_writes"]),
        ("waited_writes", store["waited_writes"]),
        ("offloaded_reads", store["offloaded_reads"]),
        ("block_cache_hits", cache.get("hits", 0)), ("block_cache_misses", cache.get("misses", 0)),
        ("zero_copy_gets", st["view_pins"]),
        ("pinned_block_bytes", cache.get("pinned_bytes", 0))]
    ru = resource.getrusage(resource.RUSAGE_SELF)
    rc = resource.getrusage(resource.RUSAGE_CHILDREN)
    sections["cpu"] = [
        ("used_cpu_sys", f"{ru.ru_stime:.6f}"), ("used_cpu_user", f"{ru.ru_utime:.6f}"),
        ("used_cpu_sys_children", f"{rc.ru_stime:.6f}"), ("used_cpu_user_children", f"{rc.ru_utime:.6f}")]
    # usec is the time on the event loop (a write step run on the writer thread is not in it)
    sections["commandstats"] = [
        (f"cmdstat_{n.decode('latin-1').lower()}",
         f"calls={c},usec={ns // 1000},usec_per_call={ns / 1000 / c if c else 0:.2f},"
         f"rejected_calls={rej},failed_calls={fail}")
        for n, (c, ns, fail, rej) in sorted(srv.calls.items())]
    if keyspace:
        # DBSIZE is an estimate (docs/server.md: "DBSIZE is an estimate"): said here too
        # as Redis, a line per database that has keys (the estimate's: dbsize.py; it walks
        # the memtables' entries of databases 1..N-1, so only an INFO that shows it pays)
        sections["keyspace"] = [(f"db{n}", f"keys={k},expires=0,avg_ttl=0")
                                for n, k in enumerate(dbsize_estimates(srv.dbs)) if k] + [("keys_estimated", 1)]
    return sections


def info_text(srv, names):
    want = [n.lower() for n in names]
    every = any(n in ("all", "everything") for n in want)
    default = not want or "default" in want
    sections = info_sections(srv, keyspace=every or default or "keyspace" in want)
    if every:
        want = list(sections)
    elif default:
        want = [n for n in sections if n != "commandstats"]
    out = []
    for name in want:
        if name not in sections:
            continue
        out.append("# Commandstats" if name == "commandstats" else
                   "# CPU" if name == "cpu" else f"# {name.capitalize()}")
        out.extend(f"{k}:{v}" for k, v in sections[name])
        out.append("")
    return "\r\n".join(out).encode()


def c_info(srv, conn, a):
    return resp.bulk(info_text(srv, [bytes(x).decode("latin-1") for x in a[1:]]))


# ---------------------------------------------------------------- COMMAND

def command_table():
    return {**DATA_COMMANDS, **ADMIN_COMMANDS, **MULTI_COMMANDS}


def _command_info(name, spec):
    _, arity, flags, first, last, step = spec
    return [name.lower(), arity, [f.encode() for f in flags], first, last, step, [], [], [], []]


def c_command(srv, conn, a):
    table = command_table()
    if len(a) == 1:
        return resp.encode([_command_info(n, s) for n, s in table.items()])
    sub = bytes(a[1]).upper()
    if sub == b"COUNT":
        return resp.integer(len(table))
    if sub == b"INFO":
        return resp.encode([_command_info(bytes(x).upper(), table[bytes(x).upper()])
                            if bytes(x).upper() in table else None for x in a[2:]])
    if sub == b"LIST":
        return resp.encode(command_list(table, a[2:]))
    if sub == b"DOCS":
        return resp.EMPTY_ARRAY
    raise CommandError(f"ERR unknown subcommand '{bytes(a[1]).decode('utf-8', 'replace')}'. "
                       f"Try COMMAND HELP.")


def command_list(table, opts):
    """COMMAND LIST [FILTERBY MODULE name | ACLCAT cat | PATTERN pattern]."""
    names = [n.lower() for n in table]
    if not opts:
        return names
    if len(opts) != 3 or bytes(opts[0]).upper() != b"FILTERBY":
        raise CommandError(SYNTAX_ERR)
    kind = bytes(opts[1]).upper()
    arg = bytes(opts[2]).decode("utf-8", "replace")
    if kind == b"PATTERN":
        return [n for n in names if fnmatch.fnmatchcase(n.decode(), arg.lower())]
    if kind == b"MODULE":
        return []
    if kind == b"ACLCAT":
        test = ACL_CATEGORIES.get(arg.lower())
        if test is None:
            return []
        return [n.lower() for n, spec in table.items() if test(spec[2])]
    raise CommandError(SYNTAX_ERR)


ACL_CATEGORIES = {       # category -> its test on a command's flags (a subset of Redis's)
    "read": lambda f: "readonly" in f,
    "write": lambda f: "write" in f,
    "fast": lambda f: "fast" in f,
    "slow": lambda f: "fast" not in f,
    "admin": lambda f: "admin" in f,
}


# ---------------------------------------------------------------- CLIENT

def client_line(srv, c, now):
    qbuf = c.end - c.start if c.buf is not None else 0
    qfree = len(c.buf) - c.end if c.buf is not None else 0
    name = c.name.decode("utf-8", "replace")
    addr = laddr = ""
    fd = -1
    if c.tr is not None:        # looked up here, not kept per connection (memory)
        addr = _fmt_addr(c.tr.get_extra_info("peername"))
        laddr = _fmt_addr(c.tr.get_extra_info("sockname"))
        sock = c.tr.get_extra_info("socket")
        fd = sock.fileno() if sock is not None else -1
    argv = c.frame.size if c.frame is not None else 0
    omem = c.tr.get_write_buffer_size() if c.tr is not None else 0
    rbs = len(c.buf) if c.buf is not None else 0
    m = c.multi
    multi, mmem = (-1, 0) if m is None else (len(m.cmds), m.size)
    flags = "N" if m is None else "x"          # Redis's x: in a MULTI
    return (f"id={c.id} addr={addr} laddr={laddr} fd={fd} name={name} "
            f"age={int(now - c.created)} idle={int(now - c.last)} flags={flags} db={c.dbnum} sub=0 psub=0 "
            f"ssub=0 multi={multi} qbuf={qbuf} qbuf-free={qfree} argv-mem={argv} multi-mem={mmem} rbs="
            f"{rbs} rbp={c.end if c.buf is not None else 0} obl=0 oll=0 omem={omem} "
            f"tot-mem={rbs + argv + mmem + omem + CLIENT_BASE_MEM} events=r "
            f"cmd={c.lastcmd.decode('latin-1').lower()} user=default redir=-1 resp={c.proto}")


CLIENT_BASE_MEM = 512       # a connection object and its transport, about (docs/server.md)


def client_filter(srv, opts):
    """The connections CLIENT LIST [TYPE type] [ID id ...] selects."""
    conns = list(srv.conns.values())
    if not opts:
        return conns
    kind = bytes(opts[0]).upper()
    if kind == b"TYPE" and len(opts) == 2:
        t = bytes(opts[1]).lower()
        if t not in (b"normal", b"master", b"replica", b"slave", b"pubsub"):
            raise CommandError(f"ERR Unknown client type '{bytes(opts[1]).decode('utf-8', 'replace')}'")
        return conns if t == b"normal" else []
    if kind == b"ID" and len(opts) >= 2:
        ids = []
        for x in opts[1:]:
            n = to_int(x, "ERR Invalid client ID")
            if n <= 0:
                raise CommandError("ERR Invalid client ID")
            ids.append(n)
        return [srv.conns[i] for i in ids if i in srv.conns]
    raise CommandError(SYNTAX_ERR)


def client_kill(srv, conn, opts):
    """CLIENT KILL addr | CLIENT KILL [ID id] [ADDR addr] [LADDR addr] [SKIPME yes/no]."""
    if len(opts) == 1:                              # the old form: one address, an error if none
        addr = bytes(opts[0]).decode("utf-8", "replace")
        for c in list(srv.conns.values()):
            if c.tr is not None and _fmt_addr(c.tr.get_extra_info("peername")) == addr:
                _kill(c, conn)
                return resp.OK
        raise CommandError("ERR No such client")
    if not opts or len(opts) % 2:
        raise CommandError(SYNTAX_ERR)
    want_id = addr = laddr = None
    skipme = True
    for i in range(0, len(opts), 2):
        k, v = bytes(opts[i]).upper(), bytes(opts[i + 1])
        if k == b"ID":
            want_id = to_int(v, "ERR client-id should be greater than 0")
            if want_id <= 0:
                raise CommandError("ERR client-id should be greater than 0")
        elif k == b"ADDR":
            addr = v.decode("utf-8", "replace")
        elif k == b"LADDR":
            laddr = v.decode("utf-8", "replace")
        elif k == b"SKIPME":
            if v.lower() not in (b"yes", b"no"):
                raise CommandError(SYNTAX_ERR)
            skipme = v.lower() == b"yes"
        elif k == b"TYPE":
            if v.lower() != b"normal":
                return resp.integer(0)
        elif k == b"USER":
            if v != b"default":
                raise CommandError(f"ERR No such user '{v.decode('utf-8', 'replace')}'")
        else:
            raise CommandError(SYNTAX_ERR)
    killed = 0
    for c in list(srv.conns.values()):
        if want_id is not None and c.id != want_id:
            continue
        if c.tr is None:
            continue
        if addr is not None and _fmt_addr(c.tr.get_extra_info("peername")) != addr:
            continue
        if laddr is not None and _fmt_addr(c.tr.get_extra_info("sockname")) != laddr:
            continue
        if skipme and c is conn:
            continue
        _kill(c, conn)
        killed += 1
    return resp.integer(killed)


def _kill(c, me):
    """Close client c; the caller's own connection closes after its reply."""
    if c is me:
        me.srv.loop.call_soon(me.close_connection)
    else:
        c.close_connection()


def _fmt_addr(a):
    if isinstance(a, tuple) and len(a) >= 2:
        return f"{a[0]}:{a[1]}"
    return f"{a or ''}:0"


def _valid_name(b):
    return all(33 <= ch <= 126 for ch in b)


def c_client(srv, conn, a):
    sub = bytes(a[1]).upper()
    conn.lastcmd = b"CLIENT|" + sub          # shown as cmd=client|list, as Redis
    if sub == b"SETNAME" and len(a) == 3:
        name = bytes(a[2])
        if not _valid_name(name):
            raise CommandError("ERR Client names cannot contain spaces, newlines or special characters.")
        conn.name = name
        return resp.OK
    if sub == b"GETNAME" and len(a) == 2:
        return resp.bulk(conn.name or None)
    if sub == b"ID" and len(a) == 2:
        return resp.integer(conn.id)
    if sub == b"LIST":
        now = srv.clock
        conns = client_filter(srv, a[2:])
        lines = [client_line(srv, c, now) for c in conns]
        return resp.bulk("".join(x + "\n" for x in lines).encode())
    if sub == b"KILL":
        return client_kill(srv, conn, a[2:])
    if sub == b"REPLY" and len(a) == 3:
        mode = bytes(a[2]).upper()
        if mode == b"ON":
            conn.reply_mode = 0
            return resp.OK
        if mode == b"OFF":
            conn.reply_mode = 1
            return b""
        if mode == b"SKIP":
            conn.reply_mode = 2
            return b""
        raise CommandError(SYNTAX_ERR)
    if sub == b"INFO" and len(a) == 2:
        return resp.bulk((client_line(srv, conn, srv.clock) + "\n").encode())
    if sub == b"SETINFO" and len(a) == 4:
        attr = bytes(a[2]).upper()
        if attr not in (b"LIB-NAME", b"LIB-VER"):
            raise CommandError(f"ERR Unrecognized option '{bytes(a[2]).decode('utf-8', 'replace')}'")
        conn.lib = bytes(a[3])
        return resp.OK
    if sub in (b"SETNAME", b"GETNAME", b"ID", b"INFO", b"SETINFO"):
        raise CommandError(f"ERR wrong number of arguments for 'client|{sub.decode().lower()}' command")
    raise CommandError(f"ERR unknown subcommand '{bytes(a[1]).decode('utf-8', 'replace')}'. "
                       f"Try CLIENT HELP.")


# ---------------------------------------------------------------- CONFIG GET

def config_values(srv):
    return {
        "maxclients": str(srv.maxclients), "proto-max-bulk-len": str(srv.max_bulk),
        "appendonly": "yes", "appendfsync": srv.store.appendfsync, "save": "",
        "port": str(srv.port or 0), "bind": srv.host or "", "unixsocket": srv.unixsocket or "",
        "databases": str(len(srv.dbs)), "timeout": "0", "dir": srv.db.path,
        "client-query-buffer-limit": str(srv.query_buffer_limit),
        "maxmemory-clients": str(srv.maxmemory_clients),
    }


CONFIG_SET = {           # parameter -> (server attribute, smallest value)
    "maxclients": ("maxclients", 1),
    "proto-max-bulk-len": ("max_bulk", 1024 * 1024),
    "client-query-buffer-limit": ("query_buffer_limit", 1024 * 1024),
    "maxmemory-clients": ("maxmemory_clients", 0),
}


def config_set(srv, pairs):
    """CONFIG SET name value [name value ...]: all checked, then all applied."""
    new = {}
    for i in range(0, len(pairs), 2):
        name = bytes(pairs[i]).decode("utf-8", "replace").lower()
        if name not in CONFIG_SET:
            raise CommandError(f"ERR Unknown option or number of arguments for CONFIG SET - '{name}'")
        attr, low = CONFIG_SET[name]
        raw = bytes(pairs[i + 1])
        try:
            v = memory_value(raw)
        except ValueError:
            raise CommandError(f"ERR Invalid argument '{raw.decode('utf-8', 'replace')}' for "
                               f"CONFIG SET '{name}' - argument couldn't be parsed into an "
                               f"integer") from None
        if v < low:
            raise CommandError(f"ERR Invalid argument '{raw.decode('utf-8', 'replace')}' for "
                               f"CONFIG SET '{name}' - argument must be between {low} and "
                               f"9223372036854775807 inclusive")
        new[attr] = v
    for attr, v in new.items():
        setattr(srv, attr, v)
    if srv.maxmemory_clients and srv.clients_mem > srv.maxmemory_clients:
        srv.evict_soon()
    return resp.OK


def memory_value(b):
    """A CONFIG SET number with Redis's memory units (1k, 2mb, 1gb: k=1000, kb=1024)."""
    s = b.decode("ascii", "replace").lower()
    for unit, mul in (("kb", 1024), ("mb", 1024 ** 2), ("gb", 1024 ** 3),
                      ("k", 1000), ("m", 1000 ** 2), ("g", 1000 ** 3), ("b", 1)):
        if s.endswith(unit):
            return int(s[:-len(unit)]) * mul
    return int(s)


def c_config(srv, conn, a):
    sub = bytes(a[1]).upper()
    conn.lastcmd = b"CONFIG|" + sub
    if sub == b"SET":
        if len(a) < 4 or len(a) % 2:
            raise CommandError("ERR wrong number of arguments for 'config|set' command")
        return config_set(srv, a[2:])
    if sub == b"GET" and len(a) < 3:
        raise CommandError("ERR wrong number of arguments for 'config|get' command")
    if sub == b"GET" and len(a) >= 3:
        vals = config_values(srv)
        out = []
        for p in a[2:]:
            pat = bytes(p).decode("utf-8", "replace").lower()
            for k, v in vals.items():
                if fnmatch.fnmatchcase(k, pat) and k not in out[::2]:
                    out += [k, v]
        return resp.encode(out)
    if sub == b"RESETSTAT" and len(a) == 2:
        srv.fast.fold()
        srv.commands = srv.fast_commands = srv.protocol_errors = srv.rejected_connections = 0
        srv.calls.clear()
        return resp.OK
    raise CommandError(f"ERR unknown subcommand '{bytes(a[1]).decode('utf-8', 'replace')}'. "
                       f"Try CONFIG HELP.")


ADMIN_COMMANDS = {
    b"PING": (c_ping, -1, ("fast",), 0, 0, 0),
    b"ECHO": (c_echo, 2, ("fast",), 0, 0, 0),
    b"AUTH": (c_auth, -2, ("noscript", "loading", "stale", "fast", "no_auth"), 0, 0, 0),
    b"HELLO": (c_hello, -1, ("noscript", "loading", "stale", "fast", "no_auth"), 0, 0, 0),
    b"SELECT": (c_select, 2, ("loading", "stale", "fast"), 0, 0, 0),
    b"TIME": (c_time, 1, ("loading", "stale", "fast"), 0, 0, 0),
    b"QUIT": (c_quit, -1, ("fast", "no_auth"), 0, 0, 0),
    b"SHUTDOWN": (c_shutdown, -1, ("admin", "noscript", "loading", "stale"), 0, 0, 0),
    b"INFO": (c_info, -1, ("loading", "stale"), 0, 0, 0),
    b"COMMAND": (c_command, -1, ("loading", "stale"), 0, 0, 0),
    b"CLIENT": (c_client, -2, ("admin", "noscript", "loading", "stale"), 0, 0, 0),
    b"CONFIG": (c_config, -2, ("admin", "noscript", "loading", "stale"), 0, 0, 0),
}

NO_AUTH = {b"AUTH", b"QUIT", b"HELLO", b"RESET"}      # the only commands before AUTH when a password is set
