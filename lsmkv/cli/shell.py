"""The `lsmkv` command-line shell: one-shot commands and an interactive REPL.

    lsmkv [--hex | --base64] DBPATH COMMAND [ARGS...]    run one command
    lsmkv DBPATH                                         interactive shell
    lsmkv sst-dump FILE                                  inspect a table file

docs/shell.md describes every command. What the shell guarantees:

  * Read-only commands (get, scan, count, ttl, stats, dump, verify,
    manifest-dump, wal-dump, sst-dump) never change the data. Opening a DB
    replays its write-ahead logs into a table and starts a new MANIFEST (as any
    open does); manifest-dump, wal-dump and sst-dump do not even open the DB:
    they read its files, take no lock, and never create a database.
  * Exit codes: 0 success, 1 key not found (get, ttl), 2 usage error, 3 database
    error (locked, corrupt, I/O), 130 interrupted.
  * An error is one line on stderr starting with "lsmkv: ", never a traceback
    (set LSMKV_DEBUG=1 to get the traceback of an unexpected error).
  * Output never garbles a terminal: in the default text encoding, bytes that are
    not printable UTF-8 are shown as Python-style escapes (\\xNN); --hex and
    --base64 show (and read) keys and values exactly.
"""
import os
import sys

from lsmkv.cli.commands import (  # noqa: F401 - prefix_end, scan_range: used through this module
    EXIT_DB_ERROR,
    EXIT_INTERRUPTED,
    EXIT_OK,
    STANDALONE_COMMANDS,
    Session,
    command_parser,
    describe_error,
    main_parser,
    one_line,
    prefix_end,
    run,
    scan_range,
)
from lsmkv.errors import LsmkvError


def main(argv=None):
    """Entry point of `lsmkv` and `python -m lsmkv`; returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["serve"]:                # `lsmkv serve DBPATH ...`: docs/server.md
        from lsmkv.server.main import main as serve_main
        return serve_main(argv[1:])
    try:
        return _main(argv)
    except KeyboardInterrupt:
        sys.stderr.write("\nlsmkv: interrupted\n")
        return EXIT_INTERRUPTED
    except BrokenPipeError:          # e.g. `lsmkv db scan | head`
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_OK
    except Exception as e:
        if os.environ.get("LSMKV_DEBUG"):
            raise
        sys.stderr.write(f"lsmkv: internal error: {type(e).__name__}: {one_line(str(e))}\n")
        return EXIT_DB_ERROR


def _main(argv):
    parser = main_parser()
    if not any(not a.startswith("-") for a in argv) and not {"-h", "--help"} & set(argv):
        parser.error("DBPATH is required")
    top = parser.parse_args(argv)
    if top.dbpath in STANDALONE_COMMANDS:
        return _run_one(None, top, [top.dbpath] + top.rest)
    session = Session(top.dbpath)
    try:
        if not top.rest:
            from lsmkv.cli.repl import Repl
            return Repl(session, top.encoding).run()
        return _run_one(session, top, top.rest)
    finally:
        _close(session)


def _run_one(session, top, words):
    args = command_parser().parse_args(words)
    if args.encoding == "text":
        args.encoding = top.encoding
    return run(session, args)


def _close(session):
    try:
        session.close()
    except (LsmkvError, OSError) as e:
        sys.stderr.write(f"lsmkv: {describe_error(e)}\n")


if __name__ == "__main__":
    sys.exit(main())
