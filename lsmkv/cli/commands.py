"""The shell's commands, shared by the one-shot form (lsmkv.cli.shell) and the
interactive shell (lsmkv.cli.repl): the command table (COMMANDS), their argument
parsers, the Session holding the open DB, run() and the exit codes.

Neither lsmkv.cli.shell nor lsmkv.cli.repl is imported here, so the two front
ends depend on this module and not on each other.

Thread safety: a Session and an Output are used by one thread (the shell's).

Invariants:
  1. A Session opens its DB at most once, on the first command that needs it, and
     never creates a database unless the command asked to (load); close() closes
     it once.
  2. run() returns an EXIT_* code for every error it expects (key not found, usage,
     database and I/O errors), each reported as one line on stderr; anything else
     propagates to lsmkv.cli.shell.main, which reports it as an internal error.
"""
import argparse
import json
import os
import sys

from lsmkv.cli import tools
from lsmkv.errors import LsmkvError
from lsmkv.cli.format import (
    Codec,
    DumpReader,
    InputError,
    Progress,
    dump_header,
    dump_json_line,
    dump_line,
)

EXIT_OK, EXIT_NOT_FOUND, EXIT_USAGE, EXIT_DB_ERROR, EXIT_INTERRUPTED = 0, 1, 2, 3, 130

STANDALONE_COMMANDS = {"sst-dump"}     # given in place of DBPATH: `lsmkv sst-dump FILE`
LOAD_BATCH = 1000


class NotFound(Exception):
    """A key the command needs is absent (exit code 1)."""


class UsageError(Exception):
    """Bad arguments found after parsing (exit code 2)."""


# ---------------------------------------------------------------- output

class Output:
    """Where a command writes: text lines, or JSON Lines with --json."""

    def __init__(self, json_mode=False, stdout=None, stderr=None):
        self.json_mode = json_mode
        self.stdout = stdout or sys.stdout
        self.stderr = stderr or sys.stderr

    def text(self, s):
        if not self.json_mode:
            self.stdout.write(s + "\n")

    def json(self, obj):
        if self.json_mode:
            self.stdout.write(json.dumps(obj, ensure_ascii=False) + "\n")

    def emit(self, text, obj):
        """text without --json, obj as a JSON line with it."""
        if self.json_mode:
            self.json(obj)
        else:
            self.text(text)

    def warn(self, msg):
        self.stderr.write(f"lsmkv: warning: {msg}\n")

    def error(self, msg):
        self.stderr.write(f"lsmkv: {one_line(str(msg))}\n")


def one_line(s):
    return " ".join(s.split()) if "\n" in s else s


# ---------------------------------------------------------------- session

class Session:
    """The database commands run against: opened on first use, then kept open
    (the REPL runs many commands on one open DB). Read commands open it read-only
    (no LOCK: they work on a database a server or an application holds open);
    the first write command reopens it for writing."""

    def __init__(self, path):
        self.path = path
        self._db = None
        self._writable = False

    def exists(self):
        return os.path.exists(os.path.join(self.path, "CURRENT"))

    def db(self, create=False, write=None):
        """The open DB; write (default: create) asks for one that takes writes."""
        write = create if write is None else write
        if self._db is not None and write and not self._writable:
            self.close()
        if self._db is None:
            if not create and not self.exists():
                raise LsmkvError(f"no database at {self.path}")
            import lsmkv
            from lsmkv.engine.mergeop import builtin_recorded
            # a DB with a built-in merge operator opens with it (a callable's cannot be known here)
            op = builtin_recorded(self.path) if self.exists() else None
            if write:
                # a short-lived process: compactions run in a thread, no worker process is started
                self._db = lsmkv.DB(self.path, compaction_worker="thread", create_if_missing=create,
                                    merge_operator=op)
            else:
                self._db = lsmkv.DB(self.path, read_only=True, create_if_missing=False, merge_operator=op)
            self._writable = write
        return self._db

    def close(self):
        if self._db is not None:
            db, self._db = self._db, None
            db.close()


    def handle(self, cf, create=False, write=None):
        """The DB (cf None or "default") or its column family cf (--cf NAME)."""
        db = self.db(create, write)
        if cf is None or cf == "default":
            return db
        import lsmkv
        try:
            return db.column_family(cf)
        except lsmkv.ColumnFamilyError as e:
            raise UsageError(str(e)) from None


# ---------------------------------------------------------------- commands

def cmd_get(s, a, out, codec):
    key = codec.decode(a.key)
    value = s.handle(a.cf).get(key)
    if value is None:
        raise NotFound(f"key not found: {codec.encode(key)}")
    out.emit(codec.encode(value), {"key": codec.encode(key), "value": codec.encode(value)})


def cmd_put(s, a, out, codec):
    if a.ttl is not None and not a.ttl > 0:
        raise UsageError(f"--ttl must be > 0 seconds, got {a.ttl}")
    s.handle(a.cf, create=True).put(codec.decode(a.key), codec.decode(a.value, "value"), ttl=a.ttl)


def cmd_delete(s, a, out, codec):
    s.handle(a.cf, create=True).delete(codec.decode(a.key))


def cmd_delete_range(s, a, out, codec):
    db = s.handle(a.cf, create=True)
    start, stop = codec.decode(a.start, "start"), codec.decode(a.stop, "stop")
    if start > stop:
        raise UsageError(f"START must not be after STOP ({a.start!r} > {a.stop!r})")
    n = sum(1 for _ in db.keys(start, stop))      # for the report; the delete is one record
    db.delete_range(start, stop)
    out.emit(f"deleted {n} keys", {"deleted": n})


def cmd_scan(s, a, out, codec):
    if a.limit is not None and a.limit < 0:
        raise UsageError(f"--limit must be >= 0, got {a.limit}")
    for i, item in enumerate(_scan_items(s.handle(a.cf), a, codec)):
        if a.limit is not None and i >= a.limit:
            break
        _print_item(out, codec, item, a.keys_only)


def _print_item(out, codec, item, keys_only):
    if keys_only:
        k = codec.encode(item)
        out.emit(k, {"key": k})
    else:
        k, v = codec.encode(item[0]), codec.encode(item[1])
        out.emit(f"{k}\t{v}", {"key": k, "value": v})


def _scan_items(db, a, codec):
    start, stop = scan_range(codec, a.start, a.stop, a.prefix)
    if start is not None and stop is not None and start >= stop:
        return iter(())
    if a.keys_only:
        return db.keys(start, stop, reverse=a.reverse)
    return db.items(start, stop, reverse=a.reverse)


def scan_range(codec, start, stop, prefix):
    """[start, stop) as bytes (None: unbounded), narrowed to keys starting with prefix."""
    start = None if start is None else codec.decode(start, "start")
    stop = None if stop is None else codec.decode(stop, "stop")
    if prefix is not None:
        p = codec.decode(prefix, "prefix")
        end = prefix_end(p)
        start = p if start is None else max(start, p)
        stop = end if stop is None else (stop if end is None else min(stop, end))
    return start, stop


def prefix_end(p):
    """The smallest key greater than every key starting with p (None: no bound)."""
    p = p.rstrip(b"\xff")
    return p[:-1] + bytes([p[-1] + 1]) if p else None


def cmd_count(s, a, out, codec):
    a.keys_only, a.reverse = True, False
    n = sum(1 for _ in _scan_items(s.handle(a.cf), a, codec))
    out.emit(str(n), {"count": n})


def cmd_ttl(s, a, out, codec):
    key = codec.decode(a.key)
    try:
        t = s.handle(a.cf).ttl(key)
    except KeyError:
        raise NotFound(f"key not found: {codec.encode(key)}") from None
    out.emit("none" if t is None else f"{t:.3f}", {"key": codec.encode(key), "ttl": t})


def cmd_stats(s, a, out, codec):
    st = s.handle(a.cf).stats()
    if out.json_mode:
        out.json(st)
        return
    for line in format_stats(st):
        out.text(line)


def format_stats(st):
    """Readable lines for DB.stats(): the counters, then a table of the levels."""
    lines = []
    for name, value in sorted(st.items()):
        if name == "levels":
            continue
        if isinstance(value, dict):
            lines += [f"{name}.{k}: {v}" for k, v in sorted(value.items())]
        else:
            lines.append(f"{name}: {value}")
    lines.append(f"{'level':>5} {'files':>6} {'bytes':>14} {'score':>7}")
    for lv in st.get("levels", []):
        lines.append(f"{lv['level']:>5} {lv['files']:>6} {lv['bytes']:>14} {lv['score']:>7}")
    return lines


def cmd_flush(s, a, out, codec):
    s.handle(a.cf, create=True).flush()


def cmd_compact(s, a, out, codec):
    start = None if a.start is None else codec.decode(a.start, "start")
    stop = None if a.stop is None else codec.decode(a.stop, "stop")
    db = s.handle(a.cf, create=True)
    with Progress("compact", stream=out.stderr, spin=True):
        db.compact_range(start, stop)


def cmd_dump(s, a, out, codec):
    enc = "hex" if codec.name == "hex" else "base64"
    if a.out is None:
        n = write_dump(s.db(), out.stdout, enc, a.json, None, _cf_of(s, a))
    else:
        db, tmp = s.db(), a.out + ".tmp"
        try:
            with open(tmp, "w", encoding="ascii") as fh:
                n = write_dump(db, fh, enc, a.json, Progress("dump", unit=" entries", stream=out.stderr),
                               _cf_of(s, a))
            os.replace(tmp, a.out)
        except BaseException:
            _remove_quietly(tmp)
            raise
        out.stderr.write(f"dumped {n} entries to {a.out}\n")


def _remove_quietly(path):
    try:
        os.unlink(path)
    except OSError:
        pass


def _cf_of(s, a):
    """The column family handle of --cf (None: the default)."""
    h = s.handle(a.cf)
    return None if h is s.db() else h


def write_dump(db, fh, encoding, as_json, progress, cf=None):
    """Write every live entry of db (of its column family cf; None: the default)
    (with its remaining TTL) to fh; returns the count."""
    n = 0
    if not as_json:
        fh.write(dump_header(encoding))
    with db.snapshot() as snap:
        for key, value in snap.items(cf=cf):
            try:
                ttl = snap.ttl(key, cf=cf)        # the expiry the snapshot holds
            except KeyError:           # expired since the snapshot was read
                continue
            fh.write(dump_json_line(key, value, ttl) if as_json else dump_line(key, value, ttl, encoding))
            n += 1
            if progress is not None:
                progress.update(n)
    if progress is not None:
        progress.done()
    return n


def cmd_load(s, a, out, codec):
    db = s.handle(a.cf, create=True)
    if a.file == "-":
        n = load_dump(db, sys.stdin, "<stdin>", None)
    else:
        size = os.path.getsize(a.file)
        with open(a.file, "r", encoding="ascii", errors="replace") as fh:
            n = load_dump(db, fh, a.file, Progress("load", total=size or None, unit=" bytes",
                                                   stream=out.stderr))
    out.emit(f"loaded {n} entries", {"loaded": n})


def load_dump(db, fh, name, progress):
    """Put every entry of a dump into db, LOAD_BATCH entries per WriteBatch."""
    reader = DumpReader(name)
    batch = db.write_batch()
    n = done = 0
    for lineno, line in enumerate(fh, 1):
        done += len(line)
        entry = reader.parse(lineno, line)
        if entry is None:
            continue
        batch.put(entry[0], entry[1], ttl=entry[2])
        n += 1
        if len(batch) >= LOAD_BATCH:
            db.write(batch)
            batch = db.write_batch()
            if progress is not None:
                progress.update(done)
    db.write(batch)
    if progress is not None:
        progress.done()
    return n


def cmd_checkpoint(s, a, out, codec):
    n = s.db(write=True).checkpoint(a.dir)
    out.emit(f"checkpoint of {n} tables in {os.path.abspath(a.dir)}",
             {"dir": os.path.abspath(a.dir), "tables": n})


def cmd_verify(s, a, out, codec):
    tools.verify(s.db(), out, codec, a.cf)


def cmd_families(s, a, out, codec):
    names = s.db().list_column_families()
    for n in names:
        out.emit(n, {"name": n})


def cmd_create_family(s, a, out, codec):
    s.db(create=True).create_column_family(a.name)


def cmd_drop_family(s, a, out, codec):
    import lsmkv
    try:
        s.db(create=True).drop_column_family(a.name)
    except (lsmkv.ColumnFamilyError, ValueError) as e:
        raise UsageError(str(e)) from None


def cmd_repair(s, a, out, codec):
    """Salvage a damaged DB (lsmkv.repair). The session's own DB, if the REPL has
    it open, is closed first: repair needs the directory to itself."""
    from lsmkv import repair
    s.close()
    with Progress("repair", unit=" files", stream=out.stderr) as prog:
        def step(done, total):
            prog.total = total
            prog.update(done)
        report = repair(s.path, progress=step)
    for line in report.lines(codec.encode):
        out.text(line)
    out.json(report.to_dict(codec.encode))


def cmd_sst_dump(s, a, out, codec):
    path = tools.resolve_table(a.file, s.path if s is not None else None)
    tools.sst_dump(path, out, codec, a.show_properties, a.scan, a.verify, a.layout)


def cmd_manifest_dump(s, a, out, codec):
    tools.manifest_dump(s.path, out, codec, a.file)


def cmd_wal_dump(s, a, out, codec):
    tools.wal_dump(s.path, out, codec, a.file)


# ---------------------------------------------------------------- parsers

def _range_args(p, what="keys"):
    p.add_argument("--start", help=f"first key (inclusive) of the {what}")
    p.add_argument("--stop", help=f"end key (exclusive) of the {what}")


def _json_arg(p):
    p.add_argument("--json", action="store_true", help="print JSON Lines (one object per line)")


def _cf_arg(p):
    p.add_argument("--cf", metavar="NAME", help="the column family (default: the default one)")


def with_cf(add):
    """add's arguments and --cf."""
    def both(p):
        add(p)
        _cf_arg(p)
    return both


def _args_name(p):
    p.add_argument("name", help="the column family's name")


def _args_get(p):
    p.add_argument("key")
    _json_arg(p)


def _args_put(p):
    p.add_argument("key")
    p.add_argument("value")
    p.add_argument("--ttl", type=float, metavar="S", help="expire the entry after S seconds")


def _args_key(p):
    p.add_argument("key")


def _args_delete_range(p):
    p.add_argument("start", help="first key deleted")
    p.add_argument("stop", help="first key kept (exclusive end)")
    _json_arg(p)


def _args_scan(p):
    _range_args(p)
    p.add_argument("--prefix", help="only keys starting with this")
    p.add_argument("--reverse", action="store_true", help="descending key order")
    p.add_argument("--limit", type=int, metavar="N", help="print at most N entries")
    p.add_argument("--keys-only", action="store_true", help="print keys, not values")
    _json_arg(p)


def _args_count(p):
    _range_args(p)
    p.add_argument("--prefix", help="only keys starting with this")
    _json_arg(p)


def _args_ttl(p):
    p.add_argument("key")
    _json_arg(p)


def _args_dump(p):
    p.add_argument("--out", metavar="FILE", help="write to FILE (atomically) instead of stdout")
    p.add_argument("--json", action="store_true",
                   help="JSON Lines {key, value, ttl} (base64) instead of the tab format")


def _args_load(p):
    p.add_argument("file", help="a file written by dump ('-': stdin)")
    _json_arg(p)


def _args_checkpoint(p):
    p.add_argument("dir", help="new (or empty) directory for the copy")
    _json_arg(p)


def _args_sst_dump(p):
    p.add_argument("file", help="an .sst file (in the REPL also a table number)")
    p.add_argument("--verify", action="store_true", help="read every block, check checksums and order")
    p.add_argument("--show-properties", action="store_true", help="print the properties block (default)")
    p.add_argument("--scan", action="store_true", help="print every entry (internal keys)")
    p.add_argument("--layout", action="store_true",
                   help="bytes of data blocks, dictionary, filter, index, properties and footer")
    _json_arg(p)


def _args_log_file(what):
    def add(p):
        p.add_argument("--file", metavar="PATH", help=f"dump this {what} instead of the DB's")
        _json_arg(p)
    return add


def _no_args(p):
    pass


# name -> (handler, add_arguments, one-line help)
COMMANDS = {
    "get": (cmd_get, with_cf(_args_get), "print the value of KEY (exit 1 if absent)"),
    "put": (cmd_put, with_cf(_args_put), "set KEY to VALUE, optionally expiring after --ttl seconds"),
    "delete": (cmd_delete, with_cf(_args_key), "delete KEY"),
    "delete-range": (cmd_delete_range, with_cf(_args_delete_range),
                     "delete every key in [START, STOP) with one range tombstone "
                     "(one record, O(1) to write; counting the keys reads them)"),
    "scan": (cmd_scan, with_cf(_args_scan), "print the entries in key order"),
    "count": (cmd_count, with_cf(_args_count), "count the keys (in a range or with a prefix)"),
    "ttl": (cmd_ttl, with_cf(_args_ttl), "seconds until KEY expires ('none': never; exit 1 if absent)"),
    "stats": (cmd_stats, with_cf(_json_arg), "print the DB's counters and level sizes"),
    "flush": (cmd_flush, with_cf(_no_args), "write the memtable to a table"),
    "compact": (cmd_compact, with_cf(_range_args), "compact the tables overlapping [--start, --stop]"),
    "dump": (cmd_dump, with_cf(_args_dump), "print every live entry in the dump format (see load)"),
    "load": (cmd_load, with_cf(_args_load), "put every entry of a dump file"),
    "checkpoint": (cmd_checkpoint, _args_checkpoint, "make a consistent copy of the DB in DIR"),
    "verify": (cmd_verify, with_cf(_json_arg), "check every table's checksums and key order, of every "
               "column family or of --cf NAME (exit 3 on damage)"),
    "families": (cmd_families, _json_arg, "list the column families"),
    "create-family": (cmd_create_family, _args_name, "create column family NAME"),
    "drop-family": (cmd_drop_family, _args_name, "drop column family NAME"),
    "repair": (cmd_repair, _json_arg, "salvage what can be read from a damaged DB and report what was lost"),
    "sst-dump": (cmd_sst_dump, _args_sst_dump, "describe a table file (no DB needed)"),
    "manifest-dump": (cmd_manifest_dump, _args_log_file("MANIFEST"), "print the MANIFEST's version edits"),
    "wal-dump": (cmd_wal_dump, _args_log_file("log"), "print the records of each write-ahead log"),
}


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line: `lsmkv: MESSAGE (see PROG --help)`."""

    def error(self, message):
        prog = self.prog.strip()
        hint = f"see `{prog} --help`" if prog else "see `help`"
        self.exit(EXIT_USAGE, f"lsmkv: {message} ({hint})\n")


def _encoding_args(p, default):
    g = p.add_mutually_exclusive_group()
    g.add_argument("--hex", dest="encoding", action="store_const", const="hex", default=default,
                   help="keys and values are hex (input and output)")
    g.add_argument("--base64", dest="encoding", action="store_const", const="base64", default=default,
                   help="keys and values are base64 (input and output)")


def command_parser(prog="lsmkv DBPATH"):
    """Parses COMMAND [ARGS...] (what follows DBPATH, and a REPL line)."""
    p = _Parser(prog=prog, add_help=True,
                                description="Commands (`COMMAND --help` for each one's options).")
    _encoding_args(p, "text")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)
    p.commands = {}                      # name -> its parser (REPL help)
    p.options = {}                       # name -> its option strings (REPL completion)
    for name, (_, add_args, text) in COMMANDS.items():
        sp = p.commands[name] = sub.add_parser(name, help=text, description=text,
                                               prog=f"{prog} {name}".strip())
        rec = _Recorder(sp)
        _encoding_args(rec, argparse.SUPPRESS)
        add_args(rec)
        p.options[name] = rec.option_strings
    return p


class _Recorder:
    """Passes add_argument calls on to a parser (or a group of it) and keeps the
    option strings they add, which argparse does not list publicly."""

    def __init__(self, target, option_strings=None):
        self.target = target
        self.option_strings = [] if option_strings is None else option_strings

    def add_argument(self, *names, **kwargs):
        self.option_strings.extend(n for n in names if n.startswith("-"))
        return self.target.add_argument(*names, **kwargs)

    def add_mutually_exclusive_group(self, **kwargs):
        return _Recorder(self.target.add_mutually_exclusive_group(**kwargs), self.option_strings)


def main_parser():
    """Parses the global options and DBPATH; the rest goes to command_parser()."""
    lines = "\n".join(f"  {n:<14} {COMMANDS[n][2]}" for n in COMMANDS)
    p = _Parser(
        prog="lsmkv", usage="%(prog)s [--hex | --base64] DBPATH [COMMAND [ARGS ...]]",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Shell for lsmkv databases: run one COMMAND, or with no COMMAND "
                    "an interactive shell on DBPATH.",
        epilog=f"commands:\n{lines}\n\n`lsmkv DBPATH COMMAND --help` shows a command's options. "
               "Keys and values are UTF-8 text unless --hex or --base64.\n"
               "Exit codes: 0 ok, 1 key not found, 2 usage error, 3 database error.")
    _encoding_args(p, "text")
    p.add_argument("dbpath", metavar="DBPATH", help="database directory (or `sst-dump FILE`)")
    p.add_argument("rest", nargs=argparse.REMAINDER, metavar="COMMAND ...", help=argparse.SUPPRESS)
    return p


# ---------------------------------------------------------------- running

def run(session, args, out=None):
    """Run one parsed command; returns its exit code (errors reported on stderr)."""
    codec = Codec(args.encoding)
    out = out or Output(getattr(args, "json", False))
    handler = COMMANDS[args.command][0]
    try:
        handler(session, args, out, codec)
        out.stdout.flush()
        return EXIT_OK
    except NotFound as e:
        out.error(e)
        return EXIT_NOT_FOUND
    except (UsageError, InputError) as e:
        out.error(e)
        return EXIT_USAGE
    except tools.VerifyFailed:           # each problem is already reported
        return EXIT_DB_ERROR
    except BrokenPipeError:
        raise
    except (LsmkvError, OSError, ValueError, TypeError) as e:
        out.error(describe_error(e))
        return EXIT_DB_ERROR


def describe_error(e):
    """One line for an exception."""
    if isinstance(e, OSError) and not isinstance(e, LsmkvError) and e.filename is not None:
        return f"{e.filename}: {e.strerror or e}"
    return str(e) or type(e).__name__


