"""The connection and server commands of `lsmkv serve`: PING, ECHO, AUTH, SELECT,
QUIT, SHUTDOWN, INFO, COMMAND, CLIENT, CONFIG GET.

Handlers follow lsmkv/server/commands.py's convention (handler(srv, conn, args)
-> reply; CommandError for an error reply in Redis's words).
"""
import fnmatch
import hmac
import os
import time

from lsmkv.server import resp
from lsmkv.server.commands import COMMANDS as DATA_COMMANDS
from lsmkv.server.commands import CommandError, dbsize_estimate, to_int
from lsmkv.server.conn import QUIT, QUIT_OK

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
    if not srv.requirepass:
        raise CommandError("ERR AUTH <password> called without any password configured for the "
                           "default user. Are you sure your configuration is correct?")
    user = bytes(a[1]) if len(a) == 3 else b"default"
    pw = bytes(a[-1])
    if user == b"default" and hmac.compare_digest(pw, srv.requirepass):
        conn.authed = True
        return resp.OK
    conn.authed = False
    raise CommandError("WRONGPASS invalid username-password pair or user is disabled.")



def c_hello(srv, conn, a):
    """HELLO [protover [AUTH user pass] [SETNAME name]]: RESP2 only (RESP3 gets
    Redis's NOPROTO error, and clients such as redis-py must ask for protocol 2)."""
    if len(a) >= 2:
        try:
            ver = to_int(a[1])
        except CommandError:
            raise CommandError("ERR Protocol version is not an integer or out of range") from None
        if ver != 2:
            raise CommandError("NOPROTO sorry, this protocol version is not supported.")
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
    return resp.encode([b"server", b"redis", b"version", REDIS_VERSION.encode(), b"proto", 2,
                        b"id", conn.id, b"mode", b"standalone", b"role", b"master",
                        b"modules", []])


def c_select(srv, conn, a):
    n = to_int(a[1])
    if n != 0:
        raise CommandError("ERR DB index is out of range")
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


def info_sections(srv):
    """{section: [(field, value)]} for INFO (docs/server.md lists the fields)."""
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
    sections["keyspace"] = [("db0", f"keys={dbsize_estimate(db)},expires=0,avg_ttl=0")]
    return sections


def info_text(srv, names):
    sections = info_sections(srv)
    want = [n.lower() for n in names]
    if not want or any(n in ("all", "everything", "default") for n in want):
        want = list(sections)
    out = []
    for name in want:
        if name not in sections:
            continue
        out.append(f"# {name.capitalize()}")
        out.extend(f"{k}:{v}" for k, v in sections[name])
        out.append("")
    return "\r\n".join(out).encode()


def c_info(srv, conn, a):
    return resp.bulk(info_text(srv, [bytes(x).decode("latin-1") for x in a[1:]]))


# ---------------------------------------------------------------- COMMAND

def command_table():
    return {**DATA_COMMANDS, **ADMIN_COMMANDS}


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
        return resp.encode([n.lower() for n in table])
    if sub == b"DOCS":
        return resp.EMPTY_ARRAY
    raise CommandError(f"ERR unknown subcommand '{bytes(a[1]).decode('utf-8', 'replace')}'. "
                       f"Try COMMAND HELP.")


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
    return (f"id={c.id} addr={addr} laddr={laddr} fd={fd} name={name} "
            f"age={int(now - c.created)} idle={int(now - c.last)} flags=N db=0 sub=0 psub=0 "
            f"ssub=0 multi=-1 qbuf={qbuf} qbuf-free={qfree} argv-mem=0 multi-mem=0 rbs="
            f"{len(c.buf) if c.buf is not None else 0} rbp=0 obl=0 oll=0 omem="
            f"{c.tr.get_write_buffer_size() if c.tr is not None else 0} events=r "
            f"cmd={c.lastcmd.decode('latin-1').lower()} user=default redir=-1 resp=2")


def _fmt_addr(a):
    if isinstance(a, tuple) and len(a) >= 2:
        return f"{a[0]}:{a[1]}"
    return f"{a or ''}:0"


def _valid_name(b):
    return all(33 <= ch <= 126 for ch in b)


def c_client(srv, conn, a):
    sub = bytes(a[1]).upper()
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
        lines = [client_line(srv, c, now) for c in list(srv.conns.values())]
        return resp.bulk(("\n".join(lines) + "\n").encode())
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
        "databases": "1", "timeout": "0", "dir": srv.db.path,
    }


def c_config(srv, conn, a):
    sub = bytes(a[1]).upper()
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
        srv.commands = srv.protocol_errors = srv.rejected_connections = 0
        return resp.OK
    raise CommandError(f"ERR unknown subcommand '{bytes(a[1]).decode('utf-8', 'replace')}'. "
                       f"Try CONFIG HELP.")


ADMIN_COMMANDS = {
    b"PING": (c_ping, -1, ("fast",), 0, 0, 0),
    b"ECHO": (c_echo, 2, ("fast",), 0, 0, 0),
    b"AUTH": (c_auth, -2, ("noscript", "loading", "stale", "fast", "no_auth"), 0, 0, 0),
    b"HELLO": (c_hello, -1, ("noscript", "loading", "stale", "fast", "no_auth"), 0, 0, 0),
    b"SELECT": (c_select, 2, ("loading", "stale", "fast"), 0, 0, 0),
    b"QUIT": (c_quit, -1, ("fast", "no_auth"), 0, 0, 0),
    b"SHUTDOWN": (c_shutdown, -1, ("admin", "noscript", "loading", "stale"), 0, 0, 0),
    b"INFO": (c_info, -1, ("loading", "stale"), 0, 0, 0),
    b"COMMAND": (c_command, -1, ("loading", "stale"), 0, 0, 0),
    b"CLIENT": (c_client, -2, ("admin", "noscript", "loading", "stale"), 0, 0, 0),
    b"CONFIG": (c_config, -2, ("admin", "noscript", "loading", "stale"), 0, 0, 0),
}

NO_AUTH = {b"AUTH", b"QUIT", b"HELLO"}      # the only commands before AUTH when a password is set
